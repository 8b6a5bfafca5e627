/* gemm.c: the single seam to OpenBLAS (sgemm/sgemv) and the plain-loop
 * reference with the same contract; also owns the BLAS thread count. */
#include "gemm.h"

#include <cblas.h>
#include <glib.h>

static bool force_reference = false;

void prunus_gemm_force_reference(bool on) { force_reference = on; }

bool prunus_avx512_in_use(void) {
  static int cpu = -1;
  if (cpu < 0) {
    __builtin_cpu_init();
    cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  }
  return cpu && !force_reference;
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

typedef struct {
  bool ta, tb;
  int M, N, K;
  float alpha, beta;
  const float *A, *B;
  int lda, ldb, ldc;
  float *C;
} SgemmCall;

/* Part p's block of C: columns (or rows) in whole 16-wide tiles. */
static void sgemm_part(void *arg, int part, int n_parts) {
  const SgemmCall *g = arg;
  bool by_cols = g->N >= g->M;
  size_t a, b;
  prunus_team_block_share((size_t)(by_cols ? g->N : g->M), 16, part, n_parts, &a, &b);
  if (b <= a) return;
  if (by_cols) /* C[:, a:b] = op(A) op(B)[:, a:b] */
    prunus_sgemm(g->ta, g->tb, g->M, (int)(b - a), g->K, g->alpha, g->A, g->lda,
                 g->tb ? g->B + (size_t)a * g->ldb : g->B + a, g->ldb, g->beta, g->C + a, g->ldc);
  else /* C[a:b, :] = op(A)[a:b, :] op(B) */
    prunus_sgemm(g->ta, g->tb, (int)(b - a), g->N, g->K, g->alpha,
                 g->ta ? g->A + a : g->A + (size_t)a * g->lda, g->lda, g->B, g->ldb, g->beta,
                 g->C + (size_t)a * g->ldc, g->ldc);
}

void prunus_sgemm_team(PrunusTeam *team, bool ta, bool tb, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
  if (!team) {
    prunus_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  SgemmCall g = {ta, tb, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C};
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
