/* test_gemm.c: the OpenBLAS seam, its split over a team and the plain-loop reference
 * agree for every transpose combination, odd sizes, alpha/beta, and matrix-vector products. */
#include "gemm.h"
#include "rng.h"
#include "testutil.h"

#include <string.h>

static void fill(PrunusRng *r, float *a, size_t n) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(2.0 * prunus_rng_uniform(r) - 1.0);
}

static void test_sgemm_matches_reference(void) {
  PrunusRng r;
  prunus_rng_seed(&r, 7);
  /* 40 x 37 and 17 x 33: blocks of 16-wide tiles with a tail, split by rows and columns */
  const int sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {64, 31, 1}, {128, 300, 784}, {5, 9, 0},
                          {40, 37, 9}, {37, 17, 5}};
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  int threads = prunus_get_threads();
  for (size_t s = 0; s < G_N_ELEMENTS(sizes); s++) {
    int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
    for (int ta = 0; ta < 2; ta++) {
      for (int tb = 0; tb < 2; tb++) {
        size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        float *A = g_new(float, na + 1), *B = g_new(float, nb + 1);
        float *C1 = g_new(float, nc), *C2 = g_new(float, nc);
        fill(&r, A, na);
        fill(&r, B, nb);
        fill(&r, C1, nc);
        memcpy(C2, C1, sizeof(float) * nc);
        float *C3_init = g_memdup2(C1, sizeof(float) * nc);
        int lda = ta ? M : K, ldb = tb ? K : N;
        if (lda == 0) lda = 1;
        if (ldb == 0) ldb = 1;
        prunus_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, N);
        prunus_sgemm_ref(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C2, N);
        char label[64];
        g_snprintf(label, sizeof label, "sgemm %dx%dx%d ta=%d tb=%d", M, N, K, ta, tb);
        /* float accumulation against the double reference: error grows with K */
        g_assert_cmpfloat(testutil_max_rel_diff(C1, C2, nc, label), <, 1e-4);
        /* split over a team of 2 (column or row blocks, OpenBLAS at one thread) */
        memcpy(C1, C3_init, sizeof(float) * nc);
        prunus_set_threads(1);
        prunus_sgemm_team(team, ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, N);
        prunus_set_threads(threads);
        g_snprintf(label, sizeof label, "sgemm team %dx%dx%d ta=%d tb=%d", M, N, K, ta, tb);
        g_assert_cmpfloat(testutil_max_rel_diff(C1, C2, nc, label), <, 1e-4);
        g_free(A), g_free(B), g_free(C1), g_free(C2), g_free(C3_init);
      }
    }
  }
  prunus_team_free(team);
}

static void test_sgemv_matches_reference(void) {
  PrunusRng r;
  prunus_rng_seed(&r, 11);
  int M = 37, N = 53;
  float *A = g_new(float, M * N), *x = g_new(float, MAX(M, N));
  float *y1 = g_new(float, MAX(M, N)), *y2 = g_new(float, MAX(M, N));
  fill(&r, A, (size_t)M * N);
  fill(&r, x, MAX(M, N));
  for (int ta = 0; ta < 2; ta++) {
    int out = ta ? N : M;
    fill(&r, y1, out);
    memcpy(y2, y1, sizeof(float) * out);
    prunus_sgemv(ta, M, N, 1.5f, A, N, x, 1.0f, y1);
    prunus_gemm_force_reference(true);
    prunus_sgemv(ta, M, N, 1.5f, A, N, x, 1.0f, y2);
    prunus_gemm_force_reference(false);
    g_assert_cmpfloat(testutil_max_rel_diff(y1, y2, out, ta ? "sgemv^T" : "sgemv"), <, 1e-5);
  }
  /* a hand-computed case: [[1,2],[3,4]] [1,1] = [3,7] */
  float a[] = {1, 2, 3, 4}, v[] = {1, 1}, out[2] = {0, 0};
  prunus_sgemv(false, 2, 2, 1.0f, a, 2, v, 0.0f, out);
  g_assert_cmpfloat(out[0], ==, 3.0f);
  g_assert_cmpfloat(out[1], ==, 7.0f);
  g_free(A), g_free(x), g_free(y1), g_free(y2);
}

static void test_threads_setting(void) {
  prunus_set_threads(1);
  g_assert_cmpint(prunus_get_threads(), ==, 1);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/gemm/sgemm-matches-reference", test_sgemm_matches_reference);
  g_test_add_func("/gemm/sgemv-matches-reference", test_sgemv_matches_reference);
  g_test_add_func("/gemm/threads", test_threads_setting);
  return g_test_run();
}
