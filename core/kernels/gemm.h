/* gemm.h: the one seam through which every matrix product goes (OpenBLAS
 * cblas_sgemm/sgemv), with a plain-loop reference used by tests. */
#ifndef PRUNUS_GEMM_H
#define PRUNUS_GEMM_H

#include "team.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Row-major C(M,N) = alpha * op(A) op(B) + beta * C, op = transpose when ta/tb.
 * A is (M,K) or (K,M) when ta; B is (K,N) or (N,K) when tb; lda/ldb/ldc are row strides. */
void prunus_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
/* The arguments of one prunus_sgemm call, for splitting it by hand. */
typedef struct {
  bool ta, tb;
  int M, N, K;
  float alpha;
  const float *A;
  int lda;
  const float *B;
  int ldb;
  float beta;
  float *C;
  int ldc;
} PrunusSgemmArgs;
/* A block of C: rows [row0, row1) x columns [col0, col1). */
typedef struct {
  int row0, row1, col0, col1;
} PrunusSgemmBlock;
/* The block of C that part `part` of n_parts computes in prunus_sgemm_team, so that a
 * layer can prepare or use that block on the same thread (it may be empty). */
PrunusSgemmBlock prunus_sgemm_block(const PrunusSgemmArgs *g, int part, int n_parts);
/* Computes one block of g's C with a one-thread-style prunus_sgemm call. */
void prunus_sgemm_run_block(const PrunusSgemmArgs *g, PrunusSgemmBlock block);
/* The same contract in plain loops (the reference). */
void prunus_sgemm_ref(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc);
/* y(M) = alpha * op(A) x + beta * y, A (M,N) row-major (op = transpose when ta). */
void prunus_sgemv(bool ta, int M, int N, float alpha, const float *A, int lda, const float *x,
                  float beta, float *y);
/* TRUE while prunus_gemm_force_reference (below) is on: kernels with plain paths take
 * them. */
bool prunus_gemm_reference_forced(void);
/* TRUE when prunus's own AVX-512 kernels (convolutions, pooling) run: the CPU has
 * AVX-512F and VL, and the reference loops are not forced (then those layers take
 * their plain paths: im2col through this seam, plain loops). */
bool prunus_avx512_in_use(void);
/* The first n of an AVX-512 vector's 16 lanes as a mask (n may be <= 0 or above 16). */
static inline uint16_t prunus_lanes_mask(int n) {
  return n <= 0 ? 0 : n >= 16 ? 0xFFFF : (uint16_t)((1u << n) - 1);
}
/* OpenBLAS's thread count: the threads its sgemm calls use (evaluation, the inference
 * engines, benches). Training does not read it: its thread count is a parameter
 * (PrunusTrainOptions.threads), and it holds OpenBLAS at one thread while it runs. */
void prunus_set_threads(int n);
/* OpenBLAS's current count: its default (OPENBLAS_NUM_THREADS, else the CPUs) until
 * prunus_set_threads. */
int prunus_get_threads(void);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: nothing in core/ outside gemm.c calls these (layers split their
 * products with prunus_sgemm_block) */

/* prunus_sgemm split over a team (NULL: prunus_sgemm): each thread computes a block of
 * C's columns or rows (whichever costs less, prunus_sgemm_block) with a one-thread
 * sgemm, so every element is summed exactly as by one thread. OpenBLAS should run one
 * thread meanwhile. */
void prunus_sgemm_team(PrunusTeam *team, bool ta, bool tb, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc);
/* Use the reference loops instead of BLAS everywhere (tests). Set it before building
 * the models it should apply to: a conv layer sizes its scratch for the kernels it
 * takes when built (core/nn/layers.c conv_scratch). */
void prunus_gemm_force_reference(bool on);

#endif
