/* gemm.c: the single seam to OpenBLAS (sgemm/sgemv) and the plain-loop
 * reference with the same contract; also owns the BLAS thread count. */
#include "gemm.h"

#include <cblas.h>
#include <glib.h>
#include <stdatomic.h>

static bool force_reference = false;

void prunus_gemm_force_reference(bool on) { force_reference = on; }

bool prunus_gemm_reference_forced(void) { return force_reference; }

bool prunus_avx512_in_use(void) {
  /* found on first use, by whichever team thread gets there first: atomic, so threads
   * that race to it each store the same value without a data race */
  static atomic_int cpu = -1;
  int v = atomic_load_explicit(&cpu, memory_order_relaxed);
  if (v < 0) {
    __builtin_cpu_init();
    v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    atomic_store_explicit(&cpu, v, memory_order_relaxed);
  }
  return v && !force_reference;
}

void prunus_set_threads(int n) {
  g_return_if_fail(n >= 1);
  openblas_set_num_threads(n);
}

int prunus_get_threads(void) { return openblas_get_num_threads(); }

void prunus_sgemm_ref(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) {
      double acc = 0.0;
      for (int k = 0; k < K; k++) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        acc += (double)a * b;
      }
      float *c = &C[(size_t)i * ldc + j];
      *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
    }
  }
}

void prunus_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
  if (M == 0 || N == 0) return;
  if (force_reference) {
    prunus_sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (K == 0) { /* BLAS leaves C untouched only when beta == 1; make it explicit */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] *= beta;
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Split C's columns or its rows? Each thread packs the whole operand it shares: op(A)
 * (M x K) in a column split, op(B) (N x K) in a row split. A column split also leaves
 * one cache line per row of C written by both threads (unless rows start on lines):
 * when the two cores share no cache, each write takes such a line back from the other
 * core, which costs about as much as packing 256 more floats (the weight that made the
 * rule choose right on LeNet-300's products; docs/perf-log.md). */
#define FALSE_SHARING_FLOATS 256

static bool rows_start_on_lines(const PrunusSgemmArgs *g) {
  return g->ldc % 16 == 0 && (uintptr_t)g->C % 64 == 0;
}

static bool split_by_cols(const PrunusSgemmArgs *g) {
  double shared_cols = (double)g->M * (g->K + (rows_start_on_lines(g) ? 0 : FALSE_SHARING_FLOATS));
  return shared_cols < (double)g->N * g->K;
}

/* Part p's block of C: whole strips of columns or rows. Strips are 8 wide, the
 * micro-kernel's narrower tail width (16-wide ones left the two threads 144 and 156 of
 * LeNet-300's 300 columns), or 16 (a cache line) for columns of line-aligned rows. */
PrunusSgemmBlock prunus_sgemm_block(const PrunusSgemmArgs *g, int part, int n_parts) {
  bool by_cols = split_by_cols(g);
  size_t strip = by_cols && rows_start_on_lines(g) ? 16 : 8;
  size_t a, b;
  prunus_team_block_share((size_t)(by_cols ? g->N : g->M), strip, part, n_parts, &a, &b);
  if (by_cols) return (PrunusSgemmBlock){0, g->M, (int)a, (int)b};
  return (PrunusSgemmBlock){(int)a, (int)b, 0, g->N};
}

void prunus_sgemm_run_block(const PrunusSgemmArgs *g, PrunusSgemmBlock k) {
  if (k.row1 <= k.row0 || k.col1 <= k.col0) return;
  /* C[r0:r1, c0:c1] = op(A)[r0:r1, :] op(B)[:, c0:c1] */
  const float *A = g->ta ? g->A + k.row0 : g->A + (size_t)k.row0 * g->lda;
  const float *B = g->tb ? g->B + (size_t)k.col0 * g->ldb : g->B + k.col0;
  prunus_sgemm(g->ta, g->tb, k.row1 - k.row0, k.col1 - k.col0, g->K, g->alpha, A, g->lda, B, g->ldb,
               g->beta, g->C + (size_t)k.row0 * g->ldc + k.col0, g->ldc);
}

static void sgemm_part(void *arg, int part, int n_parts) {
  const PrunusSgemmArgs *g = arg;
  prunus_sgemm_run_block(g, prunus_sgemm_block(g, part, n_parts));
}

void prunus_sgemm_team(PrunusTeam *team, bool ta, bool tb, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
  if (!team) {
    prunus_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  PrunusSgemmArgs g = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  prunus_team_run(team, sgemm_part, &g);
}

void prunus_sgemv(bool ta, int M, int N, float alpha, const float *A, int lda, const float *x,
                  float beta, float *y) {
  int out_len = ta ? N : M;
  if (out_len == 0) return;
  if (force_reference) {
    /* y as a column: (out_len, 1) = op(A) (in_len, 1) */
    if (ta)
      prunus_sgemm_ref(true, false, N, 1, M, alpha, A, lda, x, 1, beta, y, 1);
    else
      prunus_sgemm_ref(false, false, M, 1, N, alpha, A, lda, x, 1, beta, y, 1);
    return;
  }
  cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, M, N, alpha, A, lda, x, 1, beta, y, 1);
}
