/* test_csr_train.c: the CSR kernels sparse training uses (csr.h): patterns built from a
 * mask (by rows and transposed) with their index maps, value gathering, and the SDDMM
 * against a plain double-precision reference, at every kernel level the CPU has and
 * for sample counts that hit each vector tail. */
#include "csr.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* A (rows, cols) mask with about `density` of its entries 1, seeded; row `empty` has
 * none (a row of padding only). */
static float *random_mask(int rows, int cols, double density, int empty, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  float *m = g_new(float, (size_t)rows *cols);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++)
      m[(size_t)i * cols + j] = i != empty && prunus_rng_uniform(&r) < density ? 1.0f : 0.0f;
  return m;
}

static float *random_floats(size_t n, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  float *v = g_new(float, n);
  for (size_t i = 0; i < n; i++) v[i] = (float)prunus_rng_normal(&r);
  return v;
}

/* Every mask entry appears once, in its row, in column order; padding fills each row
 * to a multiple of 8 with (col 0, src -1); gather copies the values. */
static void check_pattern(const float *mask, const float *W, int rows, int cols, bool transposed) {
  int32_t *src = NULL;
  PrunusCsr *a = prunus_csr_from_mask(mask, rows, cols, transposed, &src);
  int R = transposed ? cols : rows, C = transposed ? rows : cols;
  g_assert_cmpint(a->rows, ==, R);
  g_assert_cmpint(a->cols, ==, C);
  int64_t nnz = 0;
  for (size_t i = 0; i < (size_t)rows * cols; i++) nnz += mask[i] != 0.0f;
  g_assert_cmpint(a->nnz, ==, nnz);
  prunus_csr_gather(a, src, W);
  int64_t seen = 0;
  for (int r = 0; r < R; r++) {
    g_assert_cmpint(a->ptr[r] % 8, ==, 0);
    g_assert_cmpint(a->ptr[r + 1] - a->ptr[r], ==, (a->len[r] + 7) / 8 * 8);
    int prev = -1;
    for (int32_t k = a->ptr[r]; k < a->ptr[r + 1]; k++) {
      if (k >= a->ptr[r] + a->len[r]) { /* padding */
        g_assert_cmpint(src[k], ==, -1);
        g_assert_cmpint(a->col[k], ==, 0);
        g_assert_cmpfloat(a->val[k], ==, 0.0f);
        continue;
      }
      int c = a->col[k];
      g_assert_cmpint(c, >, prev);
      prev = c;
      size_t at = transposed ? (size_t)c * cols + r : (size_t)r * cols + c;
      g_assert_cmpint(src[k], ==, (int32_t)at);
      g_assert_cmpfloat(mask[at], !=, 0.0f);
      g_assert_cmpfloat(a->val[k], ==, W[at]);
      seen++;
    }
  }
  g_assert_cmpint(seen, ==, nnz);
  g_free(src);
  prunus_csr_free(a);
}

static void test_pattern(void) {
  const int rows = 13, cols = 29;
  float *mask = random_mask(rows, cols, 0.3, 4, 1);
  float *W = random_floats((size_t)rows * cols, 2);
  W[0] = 0.0f, mask[0] = 1.0f; /* an alive weight that happens to be 0 stays in the pattern */
  check_pattern(mask, W, rows, cols, false);
  check_pattern(mask, W, rows, cols, true);
  g_free(W), g_free(mask);
}

/* Column blocks: every row's entries of block b are those with columns in
 * [b * width, (b + 1) * width), in order, and the blocks cover the row. */
static void test_blocks(void) {
  float *mask = random_mask(9, 70, 0.3, 2, 9);
  int32_t *src = NULL;
  PrunusCsr *a = prunus_csr_from_mask(mask, 9, 70, false, &src);
  for (int width = 1; width <= 80; width += 13) {
    PrunusCsrBlocks *b = prunus_csr_blocks_new(a, width);
    g_assert_cmpint(b->n_blocks, ==, (70 + width - 1) / width);
    for (int r = 0; r < 9; r++) {
      g_assert_cmpint(b->start[r], ==, a->ptr[r]);
      g_assert_cmpint(b->start[(size_t)b->n_blocks * 9 + r], ==, a->ptr[r] + a->len[r]);
      for (int blk = 0; blk < b->n_blocks; blk++)
        for (int32_t k = b->start[(size_t)blk * 9 + r]; k < b->start[(size_t)(blk + 1) * 9 + r];
             k++)
          g_assert_cmpint(a->col[k] / width, ==, blk);
    }
    prunus_csr_blocks_free(b);
  }
  g_free(src), g_free(mask);
  prunus_csr_free(a);
}

/* yT = A xT + bias by column blocks against a double reference, and against the
 * unblocked kernel (the same sums in another order). */
static void check_spmm_blocked(int rows, int cols, int N, double density, int width,
                               PrunusCsrLevel level) {
  float *mask = random_mask(rows, cols, density, rows / 2, 13);
  float *W = random_floats((size_t)rows * cols, 14), *bias = random_floats((size_t)rows, 15);
  int32_t *src = NULL;
  PrunusCsr *a = prunus_csr_from_mask(mask, rows, cols, false, &src);
  prunus_csr_gather(a, src, W);
  PrunusCsrBlocks *b = prunus_csr_blocks_new(a, width);
  float *xT = random_floats((size_t)cols * N, 16);
  float *y = g_new(float, (size_t)rows *N), *want = g_new(float, (size_t)rows *N);
  PrunusCsrLevel old = prunus_csr_cap_level(level);
  prunus_csr_spmm_t_blocked(a, b, xT, N, bias, y, NULL);
  prunus_csr_cap_level(old);
  for (int r = 0; r < rows; r++)
    for (int n = 0; n < N; n++) {
      double acc = bias[r];
      for (int c = 0; c < cols; c++)
        if (mask[(size_t)r * cols + c] != 0.0f)
          acc += (double)W[(size_t)r * cols + c] * xT[(size_t)c * N + n];
      want[(size_t)r * N + n] = (float)acc;
    }
  double worst = 0.0;
  for (size_t i = 0; i < (size_t)rows * N; i++)
    worst = fmax(worst, fabs((double)y[i] - want[i]) / sqrt((double)cols * density + 1.0));
  g_test_message("spmm blocked %s width %d N=%d: max |error| / sqrt(terms) = %.3g",
                 prunus_csr_level_name(level), width, N, worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(y), g_free(want), g_free(xT), g_free(W), g_free(bias), g_free(src), g_free(mask);
  prunus_csr_blocks_free(b);
  prunus_csr_free(a);
}

static void test_spmm_blocked(void) {
  static const int Ns[] = {1, 7, 16, 33, 96, 128, 129, 200};
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++)
    for (size_t i = 0; i < G_N_ELEMENTS(Ns); i++) {
      check_spmm_blocked(11, 150, Ns[i], 0.3, 64, level);
      check_spmm_blocked(11, 150, Ns[i], 0.05, 16, level);
    }
}

/* g[k] = sum_n dyT[r, n] xT[col[k], n] in double, for the entries (not the padding);
 * width 0: unblocked. */
static void check_sddmm(int rows, int cols, int N, double density, PrunusCsrLevel level,
                        int width) {
  float *mask = random_mask(rows, cols, density, rows / 2, 3);
  int32_t *src = NULL;
  PrunusCsr *a = prunus_csr_from_mask(mask, rows, cols, false, &src);
  PrunusCsrBlocks *blocks = width ? prunus_csr_blocks_new(a, width) : NULL;
  float *dyT = random_floats((size_t)rows * N, 4), *xT = random_floats((size_t)cols * N, 5);
  float *g = g_new0(float, MAX(a->stored, 1));
  float *want = g_new0(float, MAX(a->stored, 1));
  PrunusCsrLevel old = prunus_csr_cap_level(level);
  prunus_csr_sddmm_t(a, blocks, dyT, xT, N, g, NULL);
  prunus_csr_cap_level(old);
  prunus_csr_blocks_free(blocks);
  for (int r = 0; r < rows; r++)
    for (int32_t k = a->ptr[r]; k < a->ptr[r] + a->len[r]; k++) {
      double s = 0.0;
      for (int n = 0; n < N; n++)
        s += (double)dyT[(size_t)r * N + n] * xT[(size_t)a->col[k] * N + n];
      want[k] = (float)s;
    }
  for (int64_t k = 0; k < a->stored; k++) /* padding: 0 unblocked, untouched blocked */
    if (src[k] < 0) g_assert_cmpfloat(g[k], ==, 0.0f);
  char label[96];
  g_snprintf(label, sizeof label, "sddmm %s width %d N=%d", prunus_csr_level_name(level), width, N);
  /* sums of N products of N(0,1) values: relative to their scale sqrt(N) */
  double worst = 0.0;
  for (int64_t k = 0; k < a->stored; k++)
    worst = fmax(worst, fabs((double)g[k] - want[k]) / sqrt((double)N));
  g_test_message("%s: max |error| / sqrt(N) = %.3g", label, worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(g), g_free(want), g_free(dyT), g_free(xT), g_free(src), g_free(mask);
  prunus_csr_free(a);
}

static void test_sddmm(void) {
  static const int Ns[] = {1, 3, 8, 15, 16, 17, 31, 33, 64, 96, 127, 128, 129, 200, 256};
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++)
    for (size_t i = 0; i < G_N_ELEMENTS(Ns); i++) {
      check_sddmm(11, 37, Ns[i], 0.25, level, 0);
      check_sddmm(11, 150, Ns[i], 0.4, level, 64); /* segments of 8, 4 and single entries */
      check_sddmm(11, 150, Ns[i], 0.1, level, 16);
    }
  /* a wide layer at training sparsity, split over a team gives the same bits */
  float *mask = random_mask(300, 784, 0.1, -1, 6);
  int32_t *src = NULL;
  PrunusCsr *a = prunus_csr_from_mask(mask, 300, 784, false, &src);
  float *dyT = random_floats(300 * 128, 7), *xT = random_floats(784 * 128, 8);
  float *g1 = g_new(float, a->stored), *g2 = g_new(float, a->stored);
  prunus_csr_sddmm_t(a, NULL, dyT, xT, 128, g1, NULL);
  PrunusTeam *team = prunus_team_new(2);
  prunus_csr_sddmm_t(a, NULL, dyT, xT, 128, g2, team);
  prunus_team_free(team);
  g_assert_cmpmem(g1, sizeof(float) * a->stored, g2, sizeof(float) * a->stored);
  g_free(g1), g_free(g2), g_free(dyT), g_free(xT), g_free(src), g_free(mask);
  prunus_csr_free(a);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/csr-train/pattern", test_pattern);
  g_test_add_func("/csr-train/blocks", test_blocks);
  g_test_add_func("/csr-train/spmm-blocked", test_spmm_blocked);
  g_test_add_func("/csr-train/sddmm", test_sddmm);
  return g_test_run();
}
