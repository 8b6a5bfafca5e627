/* csr.h: compressed sparse row matrices built from a masked weight matrix, and the
 * inference kernels over them (SpMV, SpMM on a transposed operand), AVX2 with a
 * scalar fallback chosen at run time, split over at most a few pthreads. */
#ifndef PRUNUS_CSR_H
#define PRUNUS_CSR_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* A (rows, cols) matrix by rows: row r holds values val[ptr[r]..ptr[r]+len[r]) at
 * columns col[...], then zeros up to ptr[r+1] so SIMD kernels need no row tails. */
typedef struct {
  int rows, cols;
  int64_t nnz;    /* nonzeros */
  int64_t stored; /* entries held: every row is padded with (col 0, value 0) to a multiple of 8 */
  int32_t *ptr;   /* (rows+1) row starts in the padded arrays (multiples of 8) */
  int32_t *len;   /* (rows) nonzeros of each row (the padding follows them) */
  int32_t *col;   /* (stored) */
  float *val;     /* (stored) */
} PrunusCsr;

/* (transfer full) The CSR form of W (rows, cols) row-major, keeping entries where
 * mask != 0 (mask may be NULL: keep W != 0). Exact zeros in W are dropped too. */
PrunusCsr *prunus_csr_from_dense(const float *W, const float *mask, int rows, int cols);
void prunus_csr_free(PrunusCsr *a);
/* Bytes the matrix holds in memory (values, column indices, row pointers and lengths). */
size_t prunus_csr_bytes(const PrunusCsr *a);

/* y (rows) = A x (cols) + bias (bias may be NULL). */
void prunus_csr_spmv(const PrunusCsr *a, const float *x, const float *bias, float *y);
/* yT (rows, N) = A xT (cols, N) + bias broadcast along N (bias may be NULL); the
 * operand and result are "transposed" (one row per input/output feature, N columns
 * for the samples or positions). Uses up to `threads` pthreads when the work is large. */
void prunus_csr_spmm_t(const PrunusCsr *a, const float *xT, int N, const float *bias, float *yT,
                       int threads);

/* Use the scalar kernels even when the CPU has AVX2 (tests); returns the old value. */
bool prunus_csr_force_scalar(bool on);
/* TRUE when the AVX2 kernels are in use (CPU support and not forced off). */
bool prunus_csr_uses_avx2(void);

/* Transpose a (rows, cols) row-major block into (cols, rows). */
void prunus_transpose(const float *src, int rows, int cols, float *dst);

G_END_DECLS

#endif
