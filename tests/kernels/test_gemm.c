/* test_gemm.c: the OpenBLAS seam, its split over a team and the plain-loop reference
 * agree for every transpose combination, odd sizes, alpha/beta, and matrix-vector products. */
#include "gemm.h"
#include "rng.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void fill(PrunusRng *r, float *a, size_t n) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(2.0 * prunus_rng_uniform(r) - 1.0);
}

static void test_sgemm_matches_reference(void) {
  PrunusRng r;
  prunus_rng_seed(&r, 7);
  /* 40 x 37 and 17 x 33: blocks of 16-wide tiles with a tail, split by rows and columns */
  const int sizes[][3] = {{1, 1, 1},       {3, 5, 7}, {17, 1, 33}, {64, 31, 1},
                          {128, 300, 784}, {5, 9, 0}, {40, 37, 9}, {37, 17, 5}};
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

/* part's block of C for an (M,N,K) product with C at c (row stride ldc) */
static PrunusSgemmBlock block_of(int M, int N, int K, float *c, int ldc, int part) {
  PrunusSgemmArgs g = {false, false, M, N, K, 1.0f, NULL, K, NULL, N, 0.0f, c, ldc};
  return prunus_sgemm_block(&g, part, 2);
}

static void assert_block(PrunusSgemmBlock k, int row0, int row1, int col0, int col1) {
  g_assert_cmpint(k.row0, ==, row0);
  g_assert_cmpint(k.row1, ==, row1);
  g_assert_cmpint(k.col0, ==, col0);
  g_assert_cmpint(k.col1, ==, col1);
}

/* The team split, by hand: LeNet-300's forward (128,300,784) shares x (128x784 floats)
 * rather than W (300x784): columns, in 8-wide strips (19 + 18.5 strips); its weight
 * gradient (300,784,128) would share dy^T (300x128 plus 300 half-written lines) against
 * x (784x128): rows; with line-aligned rows a column split costs no shared lines and
 * goes in 16-wide strips. Then that aligned split computes the right product. */
static void test_sgemm_team_split(void) {
  float *c = NULL;
  g_assert_cmpint(posix_memalign((void **)&c, 64, sizeof(float) * 300 * 784), ==, 0);
  assert_block(block_of(128, 300, 784, c + 1, 300, 0), 0, 128, 0, 152);
  assert_block(block_of(128, 300, 784, c + 1, 300, 1), 0, 128, 152, 300);
  assert_block(block_of(300, 784, 128, c + 1, 784, 0), 0, 152, 0, 784);
  assert_block(block_of(300, 784, 128, c + 1, 784, 1), 152, 300, 0, 784);
  /* 8 x 96 x 64: columns cost 8*64 floats, rows 96*64; aligned: 3 lines each */
  assert_block(block_of(8, 96, 64, c, 96, 0), 0, 8, 0, 48);
  assert_block(block_of(8, 96, 64, c, 96, 1), 0, 8, 48, 96);
  /* not aligned (stride 100): 8 strips of 8 then the tail, 13 strips in all */
  assert_block(block_of(8, 100, 64, c, 100, 0), 0, 8, 0, 48);

  PrunusRng r;
  prunus_rng_seed(&r, 5);
  float *A = g_new(float, 8 * 64), *B = g_new(float, 64 * 96), *ref = g_new(float, 8 * 96);
  fill(&r, A, 8 * 64);
  fill(&r, B, 64 * 96);
  prunus_sgemm_ref(false, false, 8, 96, 64, 1.0f, A, 64, B, 96, 0.0f, ref, 96);
  PrunusTeam *team = prunus_team_new(2);
  int threads = prunus_get_threads();
  prunus_set_threads(1);
  prunus_sgemm_team(team, false, false, 8, 96, 64, 1.0f, A, 64, B, 96, 0.0f, c, 96);
  prunus_set_threads(threads);
  g_assert_cmpfloat(testutil_max_rel_diff(c, ref, 8 * 96, "aligned team split"), <, 1e-4);
  prunus_team_free(team);
  g_free(A), g_free(B), g_free(ref);
  free(c);
}

static void test_sgemv_matches_reference(void) {
  PrunusRng r;
  prunus_rng_seed(&r, 11);
  int M = 37, N = 53;
  float *A = g_new(float, M *N), *x = g_new(float, MAX(M, N));
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
  g_test_add_func("/gemm/sgemm-team-split", test_sgemm_team_split);
  g_test_add_func("/gemm/sgemv-matches-reference", test_sgemv_matches_reference);
  g_test_add_func("/gemm/threads", test_threads_setting);
  return g_test_run();
}
