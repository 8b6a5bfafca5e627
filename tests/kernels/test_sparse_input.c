/* test_sparse_input.c: the sparse-input weight gradient (sparse_input.h): the density it
 * is chosen by, counted by hand; dW against a double-precision reference for shapes that
 * hit every tail (a short last group, outputs past a multiple of 16 and of 64, batches
 * past a multiple of 16), written and accumulated, over part of the groups; and a dense
 * layer's gradients with it against the same layer on sgemm. */
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

/* A dense layer fed mostly-zero runs (the kernel's case) gives the gradients of the
 * same layer on sgemm (CSR kernels capped below AVX-512), and with random dense inputs
 * (density 1: sgemm either way) exactly those. */
static void check_dense_layer(int B, int in, double keep) {
  PrunusLayerSpec specs[] = {{.type = PRUNUS_LAYER_FLATTEN},
                             {.type = PRUNUS_LAYER_DENSE, .units = 70},
                             {.type = PRUNUS_LAYER_RELU},
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
  PrunusRng r;
  prunus_rng_seed(&r, 12);
  float *dl = g_new(float, (size_t)B * 10);
  for (size_t i = 0; i < (size_t)B * 10; i++) dl[i] = (float)prunus_rng_normal(&r);
  float *grads[2];
  for (int pass = 0; pass < 2; pass++) {
    PrunusCsrLevel old = prunus_csr_cap_level(pass == 0 ? prunus_csr_level() : PRUNUS_CSR_AVX2);
    memset(m->grads, 0, sizeof(float) * m->n_params);
    prunus_model_forward(m, x, B);
    prunus_model_backward(m, dl, B);
    grads[pass] = g_memdup2(m->grads, sizeof(float) * m->n_params);
    prunus_csr_cap_level(old);
  }
  char label[96];
  g_snprintf(label, sizeof label, "dense layer B=%d in=%d group density %.2f: kernel vs sgemm", B,
             in, density);
  double diff = testutil_max_rel_diff(grads[0], grads[1], m->n_params, label);
  g_assert_cmpfloat(diff, <, 1e-6);
  if (keep >= 1.0) g_assert_cmpfloat(diff, ==, 0.0);
  g_free(grads[0]), g_free(grads[1]), g_free(dl), g_free(x);
  prunus_model_free(m);
}

static void test_dense_layer(void) {
  check_dense_layer(128, 784, 0.3);
  check_dense_layer(33, 50, 0.4);
  check_dense_layer(33, 50, 1.0);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/sparse-input/density", test_density);
  g_test_add_func("/sparse-input/wgrad", test_wgrad);
  g_test_add_func("/sparse-input/dense-layer", test_dense_layer);
  return g_test_run();
}
