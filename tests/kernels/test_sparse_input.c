/* test_sparse_input.c: the sparse-input kernels (sparse_input.h): the densities they are
 * chosen by, counted by hand; the forward's grouping of samples, by hand and against
 * its own count; dW and y against double-precision references for shapes
 * that hit every tail (a short last group or block of samples, outputs past a multiple
 * of 16 and of 64, batches past a multiple of 16), over part of the groups or blocks;
 * and a dense layer's outputs and gradients with them against the same layer on sgemm. */
#include "csr.h"
#include "model.h"
#include "rng.h"
#include "sparse_input.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* x (B, in) whose zeros come in runs, as an image's background: each sample is nonzero
 * on one window of features [lo, lo + len), len about `keep` of in; inside the window
 * one value in five is zero too (dark pixels on the object). */
static float *runs_input(int B, int in, double keep, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  float *x = g_new0(float, (size_t)B *in);
  int len = MAX(1, (int)(keep * in));
  for (int b = 0; b < B; b++) {
    int lo = (int)(prunus_rng_uniform(&r) * (in - len + 1));
    for (int j = lo; j < lo + len && j < in; j++)
      x[(size_t)b * in + j] = prunus_rng_uniform(&r) < 0.2 ? 0.0f : (float)prunus_rng_uniform(&r);
  }
  return x;
}

static void test_density(void) {
  /* in = 10: groups [0,4) [4,8) [8,10); row 0 nonzero at 1 and 9 (groups 0, 2), row 1 at
   * 4..7 (group 1), row 2 nowhere: 3 of 9 pairs */
  float x[3 * 10] = {0};
  x[1] = 0.5f, x[9] = -2.0f;
  for (int j = 4; j < 8; j++) x[10 + j] = 1.0f;
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++) {
    PrunusCsrLevel old = prunus_csr_cap_level(level);
    g_assert_cmpfloat(prunus_sparse_input_density(x, 3, 10), ==, 3.0 / 9.0);
    g_assert_cmpfloat(prunus_sparse_input_density(x, 0, 10), ==, 0.0);
    /* -0.0 is a zero, as the kernel's comparison has it */
    x[20] = -0.0f;
    g_assert_cmpfloat(prunus_sparse_input_density(x, 3, 10), ==, 3.0 / 9.0);
    prunus_csr_cap_level(old);
  }
  /* vector tails: 37 features, a group cut at 37, against the scalar count */
  float *big = runs_input(19, 37, 0.4, 5);
  PrunusCsrLevel old = prunus_csr_cap_level(PRUNUS_CSR_SCALAR);
  double want = prunus_sparse_input_density(big, 19, 37);
  prunus_csr_cap_level(old);
  g_assert_cmpfloat(prunus_sparse_input_density(big, 19, 37), ==, want);
  g_assert_cmpfloat(want, >, 0.2);
  g_assert_cmpfloat(want, <, 0.8);
  g_free(big);
}

/* dW over groups [g0, g1) against a double reference; every other entry keeps its
 * starting value. */
static void check_wgrad(int B, int in, int out, gboolean accumulate, int g0, int g1) {
  float *x = runs_input(B, in, 0.5, 100 + (uint64_t)B + (uint64_t)in);
  float *xT = g_new(float, (size_t)in *B);
  prunus_transpose(x, B, in, xT);
  PrunusRng r;
  prunus_rng_seed(&r, 7);
  float *dy = g_new(float, (size_t)B *out), *dW = g_new(float, (size_t)out *in);
  for (size_t i = 0; i < (size_t)B * out; i++) dy[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < (size_t)out * in; i++) dW[i] = (float)prunus_rng_normal(&r);
  float *start = g_memdup2(dW, sizeof(float) * (size_t)out * in);
  prunus_sparse_input_wgrad(xT, dy, B, in, out, dW, accumulate, g0, g1);
  int j0 = g0 * PRUNUS_SPARSE_INPUT_GROUP, j1 = MIN(g1 * PRUNUS_SPARSE_INPUT_GROUP, in);
  double worst = 0.0;
  for (int i = 0; i < out; i++)
    for (int j = 0; j < in; j++) {
      size_t at = (size_t)i * in + j;
      if (j < j0 || j >= j1) {
        g_assert_cmpfloat(dW[at], ==, start[at]);
        continue;
      }
      double want = accumulate ? start[at] : 0.0;
      for (int b = 0; b < B; b++) want += (double)dy[(size_t)b * out + i] * x[(size_t)b * in + j];
      worst = fmax(worst, fabs(dW[at] - want) / sqrt((double)B + 1.0));
    }
  g_test_message(
      "wgrad B=%d in=%d out=%d accumulate=%d groups [%d, %d): max |error| / "
      "sqrt(B) = %.3g",
      B, in, out, accumulate, g0, g1, worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(x), g_free(xT), g_free(dy), g_free(dW), g_free(start);
}

static void test_wgrad(void) {
  if (!prunus_sparse_input_available()) {
    g_test_skip("no AVX-512 on this CPU: dense layers keep sgemm");
    return;
  }
  static const int outs[] = {1, 15, 16, 33, 64, 70, 300};
  static const int Bs[] = {1, 17, 128};
  for (size_t o = 0; o < G_N_ELEMENTS(outs); o++)
    for (size_t b = 0; b < G_N_ELEMENTS(Bs); b++)
      for (int acc = 0; acc < 2; acc++) {
        check_wgrad(Bs[b], 37, outs[o], acc, 0, 10); /* the last group has 1 feature */
        check_wgrad(Bs[b], 64, outs[o], acc, 0, 16);
      }
  check_wgrad(PRUNUS_SPARSE_INPUT_MAX_BATCH, 784, 70, TRUE, 0, 196);
  check_wgrad(128, 784, 300, FALSE, 50, 101); /* one thread's share */
  check_wgrad(128, 37, 20, TRUE, 9, 10);      /* the short group alone */
  check_wgrad(128, 37, 20, FALSE, 3, 3);      /* no group: nothing written */
  /* refused where it does not run */
  PrunusCsrLevel old = prunus_csr_cap_level(PRUNUS_CSR_AVX2);
  g_assert_false(prunus_sparse_input_available());
  prunus_csr_cap_level(old);
  g_assert_true(prunus_sparse_input_available());
}

static void test_sample_density(void) {
  /* in = 3, B = 6: blocks of samples [0,4) and [4,6); block 0 nonzero at features 0 and 2,
   * block 1 at feature 1: 3 of 6 pairs */
  float x[6 * 3] = {0};
  x[0 * 3 + 0] = 1.0f, x[3 * 3 + 2] = -1.0f, x[3 * 3 + 0] = 2.0f, x[5 * 3 + 1] = 0.5f;
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++) {
    PrunusCsrLevel old = prunus_csr_cap_level(level);
    g_assert_cmpfloat(prunus_sparse_input_sample_density(x, NULL, 6, 3), ==, 3.0 / 6.0);
    g_assert_cmpfloat(prunus_sparse_input_sample_density(x, NULL, 0, 3), ==, 0.0);
    /* blocks {0, 3, 1, 2} and {4, 5}: 2 + 1 pairs as well; blocks {5, 1, 2, 4} and
     * {0, 3}: features 1 and 0, 2: 3 of 6 pairs; {5, 3, 1, 2}, {0, 4}: 4 of 6 */
    const int32_t same[6] = {0, 3, 1, 2, 4, 5}, other[6] = {5, 1, 2, 4, 0, 3};
    const int32_t worse[6] = {5, 3, 1, 2, 0, 4};
    g_assert_cmpfloat(prunus_sparse_input_sample_density(x, same, 6, 3), ==, 3.0 / 6.0);
    g_assert_cmpfloat(prunus_sparse_input_sample_density(x, other, 6, 3), ==, 3.0 / 6.0);
    g_assert_cmpfloat(prunus_sparse_input_sample_density(x, worse, 6, 3), ==, 4.0 / 6.0);
    prunus_csr_cap_level(old);
  }
  float *big = runs_input(19, 37, 0.4, 6);
  PrunusCsrLevel old = prunus_csr_cap_level(PRUNUS_CSR_SCALAR);
  double want = prunus_sparse_input_sample_density(big, NULL, 19, 37);
  prunus_csr_cap_level(old);
  g_assert_cmpfloat(prunus_sparse_input_sample_density(big, NULL, 19, 37), ==, want);
  g_free(big);
}

/* An order of B samples that keeps each window of 128 to itself. */
static void assert_window_permutation(const int32_t *order, int B) {
  gboolean *seen = g_new0(gboolean, B);
  for (int i = 0; i < B; i++) {
    g_assert_cmpint(order[i], >=, 0);
    g_assert_cmpint(order[i], <, B);
    g_assert_false(seen[order[i]]);
    seen[order[i]] = TRUE;
    g_assert_cmpint(order[i] / 128, ==, i / 128);
  }
  g_free(seen);
}

static void test_group_samples(void) {
  /* two kinds of sample in turn: even ones nonzero at features 0 and 1, odd ones at 2.
   * Consecutive blocks mix them (all 6 pairs nonzero); grouped, each block holds one
   * kind: 2 + 1 of 6 pairs. */
  float x[8 * 3] = {0};
  for (int b = 0; b < 8; b++) {
    if (b % 2 == 0)
      x[b * 3 + 0] = 1.0f, x[b * 3 + 1] = -0.5f;
    else
      x[b * 3 + 2] = 2.0f;
  }
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++) {
    PrunusCsrLevel old = prunus_csr_cap_level(level);
    int32_t order[8];
    g_assert_cmpfloat(prunus_sparse_input_sample_density(x, NULL, 8, 3), ==, 1.0);
    g_assert_cmpfloat(prunus_sparse_input_group_samples(x, 8, 3, order), ==, 0.5);
    static const int32_t want[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int i = 0; i < 8; i++) g_assert_cmpint(order[i], ==, want[i]);
    /* no zero: the samples keep their order */
    float full[5 * 3];
    for (int i = 0; i < 15; i++) full[i] = (float)(i + 1);
    g_assert_cmpfloat(prunus_sparse_input_group_samples(full, 5, 3, order), ==, 1.0);
    for (int i = 0; i < 5; i++) g_assert_cmpint(order[i], ==, i);
    prunus_csr_cap_level(old);
  }
  /* runs of zeros at random places: the share returned is the one the order gives,
   * lower than consecutive blocks', the same at every level; batches past a window and
   * a multiple of 4 */
  static const int Bs[] = {1, 7, 128, 131, 300, PRUNUS_SPARSE_INPUT_MAX_BATCH};
  for (size_t i = 0; i < G_N_ELEMENTS(Bs); i++) {
    int B = Bs[i], in = 97;
    float *xr = runs_input(B, in, 0.4, 40 + (uint64_t)B);
    int32_t *order = g_new(int32_t, B), *scalar_order = g_new(int32_t, B);
    double got = prunus_sparse_input_group_samples(xr, B, in, order);
    assert_window_permutation(order, B);
    g_assert_cmpfloat(got, ==, prunus_sparse_input_sample_density(xr, order, B, in));
    double consecutive = prunus_sparse_input_sample_density(xr, NULL, B, in);
    g_test_message("B=%d: share %.3f grouped, %.3f consecutive", B, got, consecutive);
    if (B >= 128) g_assert_cmpfloat(got, <, 0.85 * consecutive);
    PrunusCsrLevel old = prunus_csr_cap_level(PRUNUS_CSR_SCALAR);
    g_assert_cmpfloat(prunus_sparse_input_group_samples(xr, B, in, scalar_order), ==, got);
    prunus_csr_cap_level(old);
    g_assert_cmpmem(order, sizeof(int32_t) * B, scalar_order, sizeof(int32_t) * B);
    g_free(xr), g_free(order), g_free(scalar_order);
  }
}

/* y over sample blocks [s0, s1) against a double reference, with the samples in
 * consecutive blocks and in the blocks prunus_sparse_input_group_samples forms; every
 * other row keeps its starting value. Over all blocks the two give the same y, to the
 * bit: the blocks change which zero terms are added. */
static void check_forward(int B, int in, int out, int s0, int s1) {
  float *x = runs_input(B, in, 0.5, 300 + (uint64_t)B + (uint64_t)in);
  PrunusRng r;
  prunus_rng_seed(&r, 8);
  float *W = g_new(float, (size_t)out *in), *Wt = g_new(float, (size_t)in *out);
  float *bias = g_new(float, out), *start = g_new(float, (size_t)B *out);
  for (size_t i = 0; i < (size_t)out * in; i++) W[i] = (float)prunus_rng_normal(&r);
  for (int i = 0; i < out; i++) bias[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < (size_t)B * out; i++) start[i] = (float)prunus_rng_normal(&r);
  prunus_transpose(W, out, in, Wt);
  int32_t *order = g_new(int32_t, B);
  prunus_sparse_input_group_samples(x, B, in, order);
  float *y[2];
  for (int grouped = 0; grouped < 2; grouped++) {
    const int32_t *o = grouped ? order : NULL;
    y[grouped] = g_memdup2(start, sizeof(float) * (size_t)B * out);
    prunus_sparse_input_forward(x, o, Wt, bias, B, in, out, y[grouped], s0, s1);
    gboolean *written = g_new0(gboolean, B);
    for (int p = s0 * PRUNUS_SPARSE_INPUT_GROUP; p < MIN(s1 * PRUNUS_SPARSE_INPUT_GROUP, B); p++)
      written[o ? o[p] : p] = TRUE;
    double worst = 0.0;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < out; i++) {
        size_t at = (size_t)b * out + i;
        if (!written[b]) {
          g_assert_cmpfloat(y[grouped][at], ==, start[at]);
          continue;
        }
        double want = bias[i];
        for (int j = 0; j < in; j++) want += (double)W[(size_t)i * in + j] * x[(size_t)b * in + j];
        worst = fmax(worst, fabs(y[grouped][at] - want) / sqrt((double)in + 1.0));
      }
    g_test_message("forward B=%d in=%d out=%d blocks [%d, %d)%s: max |error| / sqrt(in) = %.3g", B,
                   in, out, s0, s1, grouped ? " grouped" : "", worst);
    g_assert_cmpfloat(worst, <, 1e-5);
    g_free(written);
  }
  if (s0 == 0 && s1 == (B + PRUNUS_SPARSE_INPUT_GROUP - 1) / PRUNUS_SPARSE_INPUT_GROUP)
    for (size_t i = 0; i < (size_t)B * out; i++) g_assert_cmpfloat(y[1][i], ==, y[0][i]);
  g_free(x), g_free(W), g_free(Wt), g_free(bias), g_free(start), g_free(order);
  g_free(y[0]), g_free(y[1]);
}

static void test_forward(void) {
  if (!prunus_sparse_input_available()) {
    g_test_skip("no AVX-512 on this CPU: dense layers keep sgemm");
    return;
  }
  static const int outs[] = {1, 15, 16, 33, 64, 70, 300};
  static const int Bs[] = {1, 6, 17, 128};
  for (size_t o = 0; o < G_N_ELEMENTS(outs); o++)
    for (size_t b = 0; b < G_N_ELEMENTS(Bs); b++) {
      int blocks = (Bs[b] + 3) / 4;
      check_forward(Bs[b], 37, outs[o], 0, blocks);
      check_forward(Bs[b], 784, outs[o], 0, blocks);
    }
  check_forward(128, 784, 300, 10, 21); /* one thread's share */
  check_forward(17, 37, 20, 4, 5);      /* the short last block alone */
  check_forward(17, 37, 20, 2, 2);      /* no block: nothing written */
}

/* A dense layer fed mostly-zero runs (the kernels' case) gives the outputs and gradients
 * of the same layer on sgemm (CSR kernels capped below AVX-512), and with inputs that
 * have no zero (density 1: sgemm either way) exactly those. The second layer's input has
 * no zeros, so only the first can take the kernels. */
static void check_dense_layer(int B, int in, double keep) {
  PrunusLayerSpec specs[] = {{.type = PRUNUS_LAYER_FLATTEN},
                             {.type = PRUNUS_LAYER_DENSE, .units = 70},
                             {.type = PRUNUS_LAYER_DENSE, .units = 10}};
  PrunusArch arch = {.input = {1, 1, in}, .n_layers = G_N_ELEMENTS(specs), .layers = specs};
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, B, 3, &error);
  g_assert_no_error(error);
  float *x = runs_input(B, in, keep, 11);
  if (keep >= 1.0)
    for (size_t i = 0; i < (size_t)B * in; i++) x[i] = x[i] == 0.0f ? 0.25f : x[i];
  double density = prunus_sparse_input_density(x, B, in);
  g_assert_cmpint(density <= PRUNUS_SPARSE_INPUT_MAX_DENSITY, ==, keep < 1.0);
  /* both kernels are taken (or neither) */
  int32_t *order = g_new(int32_t, B);
  double sample_density = prunus_sparse_input_group_samples(x, B, in, order);
  g_free(order);
  g_assert_cmpint(sample_density <= PRUNUS_SPARSE_INPUT_MAX_SAMPLE_DENSITY, ==, keep < 1.0);
  PrunusRng r;
  prunus_rng_seed(&r, 12);
  float *dl = g_new(float, (size_t)B * 10);
  for (size_t i = 0; i < (size_t)B * 10; i++) dl[i] = (float)prunus_rng_normal(&r);
  /* the room prunus_train gives a dense layer while it trains (evaluation and the
   * engines have none, and keep sgemm) */
  float *room = g_new(float, prunus_dense_sparse_input_floats(&m->layers[1], B));
  m->layers[1].sparse_input = room;
  float *grads[2], *logits[2];
  for (int pass = 0; pass < 2; pass++) {
    PrunusCsrLevel old = prunus_csr_cap_level(pass == 0 ? prunus_csr_level() : PRUNUS_CSR_AVX2);
    memset(m->grads, 0, sizeof(float) * m->n_params);
    prunus_model_forward(m, x, B);
    logits[pass] = g_memdup2(m->acts[m->n_layers], sizeof(float) * (size_t)B * 10);
    prunus_model_backward(m, dl, B);
    grads[pass] = g_memdup2(m->grads, sizeof(float) * m->n_params);
    prunus_csr_cap_level(old);
  }
  char label[112];
  g_snprintf(label, sizeof label, "dense layer B=%d in=%d sample density %.2f: logits", B, in,
             sample_density);
  double ldiff = testutil_max_rel_diff(logits[0], logits[1], (size_t)B * 10, label);
  g_assert_cmpfloat(ldiff, <, 1e-5);
  gboolean sgemm_only = keep >= 1.0 || B < PRUNUS_SPARSE_INPUT_MIN_BATCH;
  if (sgemm_only) g_assert_cmpfloat(ldiff, ==, 0.0);
  g_snprintf(label, sizeof label, "dense layer B=%d in=%d group density %.2f: kernel vs sgemm", B,
             in, density);
  double diff = testutil_max_rel_diff(grads[0], grads[1], m->n_params, label);
  /* the forward's sums run in another order than sgemm's: float reassociation only */
  g_assert_cmpfloat(diff, <, 1e-5);
  if (sgemm_only) g_assert_cmpfloat(diff, ==, 0.0);
  g_free(grads[0]), g_free(grads[1]), g_free(logits[0]), g_free(logits[1]), g_free(dl), g_free(x);
  m->layers[1].sparse_input = NULL;
  g_free(room);
  prunus_model_free(m);
}

static void test_dense_layer(void) {
  check_dense_layer(128, 784, 0.3);
  check_dense_layer(33, 50, 0.4);
  check_dense_layer(33, 50, 1.0);
  check_dense_layer(16, 784, 0.3); /* below PRUNUS_SPARSE_INPUT_MIN_BATCH: sgemm */
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/sparse-input/density", test_density);
  g_test_add_func("/sparse-input/wgrad", test_wgrad);
  g_test_add_func("/sparse-input/sample-density", test_sample_density);
  g_test_add_func("/sparse-input/group-samples", test_group_samples);
  g_test_add_func("/sparse-input/forward", test_forward);
  g_test_add_func("/sparse-input/dense-layer", test_dense_layer);
  return g_test_run();
}
