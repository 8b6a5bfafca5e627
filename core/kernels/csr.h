/* csr.h: compressed sparse row matrices built from a masked weight matrix, and the
 * inference kernels over them (SpMV, SpMM on a transposed operand), AVX-512 / AVX2
 * / scalar chosen at run time, split over the threads of a PrunusTeam. */
#ifndef PRUNUS_CSR_H
#define PRUNUS_CSR_H

#include "team.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* A (rows, cols) matrix by rows: row r holds values val[ptr[r]..ptr[r]+len[r]) at
 * columns col[...], then zeros up to ptr[r+1] so SIMD kernels need no row tails (at
 * column 0, or from prunus_csr_from_dense at the row's last column, which the row
 * reads anyway: an infinite x then spoils no other row through 0 x Inf). */
typedef struct {
  int rows, cols;
  int64_t nnz;    /* nonzeros */
  int64_t stored; /* entries held: every row is padded with value 0 to a multiple of 8 */
  int32_t *ptr;   /* (rows+1) row starts in the padded arrays (multiples of 8) */
  int32_t *len;   /* (rows) nonzeros of each row (the padding follows them) */
  int32_t *col;   /* (stored) */
  float *val;     /* (stored) */
  struct PrunusCsrSlices *slices; /* NULL, or the SpMV layout of prunus_csr_slices_build */
} PrunusCsr;

/* (transfer full) The CSR form of W (rows, cols) row-major, keeping entries where
 * mask != 0 (mask may be NULL: keep W != 0). Exact zeros in W are dropped too. */
PrunusCsr *prunus_csr_from_dense(const float *W, const float *mask, int rows, int cols);
void prunus_csr_free(PrunusCsr *a);
/* Bytes the matrix holds in memory (values, column indices, row pointers and lengths;
 * the SpMV slices where prunus_csr_slices_build built them). */
size_t prunus_csr_bytes(const PrunusCsr *a);

/* The kernels split their rows over the threads of `team` (NULL: the calling thread
 * only) when the product is large enough to pay for waking a helper: in chunks of
 * about equal stored entries, which the threads take in turn. Results do not depend
 * on the split. */

/* y (rows) = A x (cols) + bias (bias may be NULL). */
void prunus_csr_spmv(const PrunusCsr *a, const float *x, const float *bias, float *y,
                     PrunusTeam *team);
/* Builds a second copy of a's values for prunus_csr_spmv on AVX-512 CPUs (elsewhere it
 * does nothing): rows in groups of 16, one output vector, columns in chunks of 32, two
 * vectors of x from which one permute picks each row's entry, so that a slice of 16
 * entries costs a permute and an FMA instead of 16 scalar loads. A chunk takes as many
 * slices as the group's fullest row there: at 90-95% sparsity about 3 slots per entry,
 * 80 bytes a slice, 2-3 times the CSR's bytes (prunus_csr_bytes counts them), so the
 * caller keeps them where they measured faster (the `auto` engine, batches under 4).
 * prunus_csr_gather drops them: build them once the values are final. */
void prunus_csr_slices_build(PrunusCsr *a);
/* Frees what prunus_csr_slices_build built; prunus_csr_spmv goes back to the rows. */
void prunus_csr_slices_drop(PrunusCsr *a);
/* yT (rows, N) = A xT (cols, N) + bias broadcast along N (bias may be NULL); the
 * operand and result are "transposed" (one row per input/output feature, N columns
 * for the samples or positions). */
void prunus_csr_spmm_t(const PrunusCsr *a, const float *xT, int N, const float *bias, float *yT,
                       PrunusTeam *team);

/* Training on a fixed pattern: while a layer's mask does not change, its alive
 * weights keep their places, so the CSR structure is built once and only the values
 * are copied in from the dense weights before each use. */

/* (transfer full) The pattern of mask (rows, cols) row-major (entries != 0), by rows of
 * the matrix itself or (transposed) of its transpose (cols, rows), values 0. src gets
 * (transfer full) one index per stored entry: where its value lives in the (rows, cols)
 * matrix (row * cols + col), -1 for the padding entries. */
PrunusCsr *prunus_csr_from_mask(const float *mask, int rows, int cols, bool transposed,
                                int32_t **src);
/* a->val[k] = W[src[k]] (0 for padding), W the row-major matrix src indexes. */
void prunus_csr_gather(PrunusCsr *a, const int32_t *src, const float *W);
/* Column blocks of a CSR matrix: each row's entries cut where the columns cross a
 * multiple of `width`, so that a kernel runs every row over one block of its operand's
 * rows while that block sits in L1 (64 rows of 128 samples fill its 32 KB), instead of
 * fetching an operand row from L2 for every entry. */
typedef struct {
  int width, n_blocks, rows;
  int32_t *start; /* ((n_blocks + 1) * rows) row r's first entry with a column in block b at
                   * start[b * rows + r]; block n_blocks holds the row's end (before padding) */
} PrunusCsrBlocks;

/* (transfer full) a's column blocks of `width` columns. */
PrunusCsrBlocks *prunus_csr_blocks_new(const PrunusCsr *a, int width);
void prunus_csr_blocks_free(PrunusCsrBlocks *b);
/* The width training uses: 64 columns of 128 samples are the 32 KB of an L1. */
#define PRUNUS_CSR_BLOCK_WIDTH 64

/* prunus_csr_spmm_t over a's column blocks (blocks of a; NULL: unblocked), the same
 * result up to the order of additions. */
void prunus_csr_spmm_t_blocked(const PrunusCsr *a, const PrunusCsrBlocks *blocks, const float *xT,
                               int N, const float *bias, float *yT, PrunusTeam *team);
/* The sampled product (SDDMM) over a's pattern: for each stored entry k of row r,
 * g[k] = sum_n dyT[r, n] xT[col[k], n] (dyT (rows, N), xT (cols, N)); padding entries
 * get 0 (unblocked) or are left as they are (blocked). With dyT the output gradient and xT the
 * input of y = x W^T, g is dL/dW at the pattern's places. blocks: a's column blocks, used where
 * they pay (NULL: none). Rows split over team as the products are; the result does not
 * depend on the split. */
void prunus_csr_sddmm_t(const PrunusCsr *a, const PrunusCsrBlocks *blocks, const float *dyT,
                        const float *xT, int N, float *g, PrunusTeam *team);

/* Kernel sets, each level adding to the one before. */
typedef enum {
  PRUNUS_CSR_SCALAR, /* plain C */
  PRUNUS_CSR_AVX2,   /* AVX2+FMA: SpMV, SpMM (64 columns in ymm registers), transpose */
  PRUNUS_CSR_AVX512, /* AVX-512F: SpMM with 128 columns in zmm registers, masked tails */
  PRUNUS_CSR_N_LEVELS
} PrunusCsrLevel;

/* The level in use: the best the CPU supports, at most the cap. */
PrunusCsrLevel prunus_csr_level(void);

/* Transpose a (rows, cols) row-major block into (cols, rows). One thread: split over
 * two, the helper would read the source from the other core's cache, which measured
 * slower than doing it all here (docs/perf-log.md). */
void prunus_transpose(const float *src, int rows, int cols, float *dst);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: nothing in core/ outside csr.c calls these */

/* Cap the kernels at `cap` even when the CPU has more (tests); returns the old cap. */
PrunusCsrLevel prunus_csr_cap_level(PrunusCsrLevel cap);
const char *prunus_csr_level_name(PrunusCsrLevel level);

G_END_DECLS

#endif
