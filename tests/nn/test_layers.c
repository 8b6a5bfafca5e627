/* test_layers.c: finite-difference gradient checks for every layer type and the
 * softmax cross-entropy loss, plus forward values computed by hand. */
#include "conv_wino.h"
#include "model.h"
#include "spdense.h"
#include "train.h"
#include "gemm.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* L = sum_i c_i * out_i for the model's output; returns L in double. */
static double readout(PrunusModel *m, const float *x, const float *c, int B) {
  prunus_model_forward(m, x, B);
  size_t n = (size_t)B * m->arch.n_classes;
  double L = 0.0;
  for (size_t i = 0; i < n; i++) L += (double)c[i] * m->acts[m->n_layers][i];
  return L;
}

/* A fingerprint of the piecewise-linear regions the last forward landed in: the
 * sign pattern of every ReLU input and every max-pool argmax. Central differences
 * are only valid where +eps and -eps give the same fingerprint (no kink crossed). */
static uint64_t kink_pattern(const PrunusModel *m, int B) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_RELU) {
      size_t n = (size_t)B * prunus_shape_size(l->in);
      for (size_t j = 0; j < n; j++) h = (h ^ (m->acts[i][j] > 0.0f)) * 1099511628211ULL;
    } else if (l->spec.type == PRUNUS_LAYER_MAXPOOL2D) {
      const int32_t *arg = (const int32_t *)m->scratch[i];
      size_t n = (size_t)B * prunus_shape_size(l->out);
      for (size_t j = 0; j < n; j++) h = (h ^ (uint64_t)arg[j]) * 1099511628211ULL;
    }
  }
  return h;
}

/* Backward through every layer, including dx of layer 0 into dx0. */
static void backward_with_input_grad(PrunusModel *m, const float *c, int B, float *dx0) {
  prunus_model_zero_grads(m);
  const float *dy = c;
  for (int i = m->n_layers - 1; i >= 0; i--) {
    const PrunusLayer *l = &m->layers[i];
    float *dx = i > 0 ? m->dacts[i] : dx0;
    l->ops->backward(l, m->params, m->grads, m->acts[i], m->acts[i + 1], dy, dx, m->scratch[i], B);
    dy = dx;
  }
}

/* Compare analytic gradients (params and input) with central differences of step eps. */
static void check_gradients_step(PrunusArch *arch, int B, const char *label, float eps) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(arch, B, 3, &error);
  g_assert_no_error(error);
  PrunusRng r;
  prunus_rng_seed(&r, 99);
  for (size_t i = 0; i < m->n_params; i++) m->params[i] = (float)(prunus_rng_normal(&r) * 0.5);
  size_t nin = (size_t)B * prunus_model_input_size(m), nout = (size_t)B * m->arch.n_classes;
  float *x = g_new(float, nin), *c = g_new(float, nout), *dx = g_new(float, nin);
  for (size_t i = 0; i < nin; i++) x[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < nout; i++) c[i] = (float)prunus_rng_normal(&r);
  float *x_numeric = NULL;
  prunus_model_forward(m, x, B);
  backward_with_input_grad(m, c, B, dx);
  uint64_t base = kink_pattern(m, B);
  float *analytic = g_memdup2(m->grads, sizeof(float) * m->n_params);
  float *numeric = g_new(float, m->n_params);
  int skipped = 0;
  for (int pass = 0; pass < 2; pass++) {
    float *v = pass == 0 ? m->params : x;
    float *num = pass == 0 ? numeric : g_new(float, nin);
    float *ana = pass == 0 ? analytic : dx;
    size_t n = pass == 0 ? m->n_params : nin;
    for (size_t i = 0; i < n; i++) {
      float keep = v[i];
      v[i] = keep + eps;
      double lp = readout(m, x, c, B);
      uint64_t hp = kink_pattern(m, B);
      v[i] = keep - eps;
      double lm = readout(m, x, c, B);
      uint64_t hm = kink_pattern(m, B);
      v[i] = keep;
      num[i] = (float)((lp - lm) / (2.0 * eps));
      if (hp != base || hm != base) { /* a kink lies within eps: compare nothing here */
        num[i] = ana[i];
        skipped++;
      }
    }
    if (pass == 1) x_numeric = num;
  }
  float *numeric_dx = x_numeric;
  g_test_message("%s: %d of %zu coordinates skipped (a ReLU/max-pool kink within eps)", label,
                 skipped, m->n_params + nin);
  g_assert_cmpint(skipped, <=, (int)((m->n_params + nin) / 20));
  char buf[128];
  g_snprintf(buf, sizeof buf, "%s dparams", label);
  if (m->n_params)
    g_assert_cmpfloat(testutil_max_rel_diff(analytic, numeric, m->n_params, buf), <, 5e-3);
  g_snprintf(buf, sizeof buf, "%s dx", label);
  g_assert_cmpfloat(testutil_max_rel_diff(dx, numeric_dx, nin, buf), <, 5e-3);
  g_free(numeric_dx), g_free(numeric), g_free(analytic);
  g_free(x), g_free(c), g_free(dx);
  prunus_model_free(m);
}

static void check_gradients(PrunusArch *arch, int B, const char *label) {
  check_gradients_step(arch, B, label, 2e-3f);
}

#define ARCH(c, h, w, ...)                                                                \
  ({                                                                                      \
    static PrunusLayerSpec specs_[] = {__VA_ARGS__};                                      \
    (PrunusArch){.input = {c, h, w}, .n_layers = G_N_ELEMENTS(specs_), .layers = specs_}; \
  })

/* Dense layers on sparse kernels (spdense.h), every layer's input gradient included:
 * against central differences (alive weights, biases, the input) and against the dense
 * kernels on the same masked weights, at each CSR kernel level, for batch sizes that
 * hit the kernels' vector tails and their 128-sample blocks. */
static void check_sparse_gradients(int B, PrunusCsrLevel level) {
  PrunusArch arch =
      ARCH(1, 1, 37, {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 23},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 9});
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, B, 3, &error);
  g_assert_no_error(error);
  PrunusRng r;
  prunus_rng_seed(&r, 17);
  for (size_t i = 0; i < m->n_params; i++) m->params[i] = (float)(prunus_rng_normal(&r) * 0.5);
  int dense[] = {1, 3};
  for (int k = 0; k < 2; k++) {
    const PrunusLayer *l = &m->layers[dense[k]];
    for (size_t j = 0; j < l->w_len; j++)
      m->mask[l->w_off + j] = prunus_rng_uniform(&r) < 0.3 ? 1.0f : 0.0f;
  }
  prunus_model_apply_mask(m);
  size_t nin = (size_t)B * prunus_model_input_size(m), nout = (size_t)B * m->arch.n_classes;
  float *x = g_new(float, nin), *c = g_new(float, nout), *dx_dense = g_new(float, nin),
        *dx = g_new(float, nin);
  for (size_t i = 0; i < nin; i++) x[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < nout; i++) c[i] = (float)prunus_rng_normal(&r);
  /* the dense kernels on the masked weights: the reference for values */
  double L_dense = readout(m, x, c, B);
  float *y_dense = g_memdup2(m->acts[m->n_layers], sizeof(float) * nout);
  backward_with_input_grad(m, c, B, dx_dense);
  float *g_dense = g_memdup2(m->grads, sizeof(float) * m->n_params);
  for (size_t i = 0; i < m->n_params; i++) g_dense[i] *= m->mask[i]; /* alive places only */
  PrunusCsrLevel old = prunus_csr_cap_level(level);
  for (int k = 0; k < 2; k++) {
    PrunusLayer *l = &m->layers[dense[k]];
    l->sparse = prunus_spdense_new(l, m->params, m->mask + l->w_off, TRUE, B);
  }
  double L = readout(m, x, c, B);
  char label[64];
  g_snprintf(label, sizeof label, "sparse %s B=%d logits", prunus_csr_level_name(level), B);
  g_assert_cmpfloat(testutil_max_rel_diff(m->acts[m->n_layers], y_dense, nout, label), <, 1e-5);
  g_assert_cmpfloat(fabs(L - L_dense), <=, 1e-5 * fmax(1.0, fabs(L_dense)));
  backward_with_input_grad(m, c, B, dx);
  /* the gradient as the optimizer sees it: weights from sparse->grad, biases in m->grads */
  float *analytic = g_memdup2(m->grads, sizeof(float) * m->n_params);
  for (int k = 0; k < 2; k++) {
    const PrunusLayer *l = &m->layers[dense[k]];
    const PrunusSpDense *sp = l->sparse;
    for (size_t j = 0; j < l->w_len; j++) /* the dense backward leaves these alone */
      g_assert_cmpfloat(m->grads[l->w_off + j], ==, 0.0f);
    for (int64_t e = 0; e < sp->w->stored; e++)
      if (sp->w_src[e] >= 0) analytic[l->w_off + sp->w_src[e]] = sp->grad[e];
  }
  g_snprintf(label, sizeof label, "sparse %s B=%d dparams vs dense", prunus_csr_level_name(level),
             B);
  g_assert_cmpfloat(testutil_max_rel_diff(analytic, g_dense, m->n_params, label), <, 1e-5);
  g_snprintf(label, sizeof label, "sparse %s B=%d dx vs dense", prunus_csr_level_name(level), B);
  g_assert_cmpfloat(testutil_max_rel_diff(dx, dx_dense, nin, label), <, 1e-5);
  /* central differences over the alive weights, the biases and the input */
  uint64_t base = kink_pattern(m, B);
  const float eps = 2e-3f;
  int checked = 0, skipped = 0;
  for (int pass = 0; pass < 2; pass++) {
    float *v = pass == 0 ? m->params : x;
    const float *ana = pass == 0 ? analytic : dx;
    size_t n = pass == 0 ? m->n_params : nin;
    float *num = g_new(float, n), *want = g_new(float, n);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
      if (pass == 0 && m->mask[i] == 0.0f) continue;
      float keep = v[i];
      v[i] = keep + eps;
      double lp = readout(m, x, c, B);
      uint64_t hp = kink_pattern(m, B);
      v[i] = keep - eps;
      double lm = readout(m, x, c, B);
      uint64_t hm = kink_pattern(m, B);
      v[i] = keep;
      if (hp != base || hm != base) {
        skipped++;
        continue;
      }
      num[used] = (float)((lp - lm) / (2.0 * eps)), want[used] = ana[i];
      used++;
    }
    checked += (int)used;
    g_snprintf(label, sizeof label, "sparse %s B=%d %s vs differences",
               prunus_csr_level_name(level), B, pass ? "dx" : "dparams");
    g_assert_cmpfloat(testutil_max_rel_diff(want, num, used, label), <, 5e-3);
    g_free(num), g_free(want);
  }
  g_assert_cmpint(skipped, <=, (checked + skipped) / 20);
  prunus_csr_cap_level(old);
  for (int k = 0; k < 2; k++) g_clear_pointer(&m->layers[dense[k]].sparse, prunus_spdense_free);
  g_free(analytic), g_free(g_dense), g_free(y_dense);
  g_free(x), g_free(c), g_free(dx), g_free(dx_dense);
  prunus_model_free(m);
}

static void test_grad_sparse_dense(void) {
  static const int Bs[] = {1, 5, 17, 130};
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++)
    for (size_t i = 0; i < G_N_ELEMENTS(Bs); i++) check_sparse_gradients(Bs[i], level);
}

static void test_grad_dense(void) {
  PrunusArch a =
      ARCH(1, 1, 7, {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 5});
  check_gradients(&a, 3, "dense B=3");
  check_gradients(&a, 1, "dense B=1 (sgemv)");
}

static void test_grad_conv(void) {
  PrunusArch a =
      ARCH(2, 6, 5, {.type = PRUNUS_LAYER_CONV2D, .channels = 3, .kernel = 3, .stride = 1});
  check_gradients(&a, 2, "conv k3 s1 p0");
  PrunusArch b =
      ARCH(2, 7, 6,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 3, .stride = 2, .padding = 1});
  check_gradients(&b, 2, "conv k3 s2 p1");
  /* 18 output channels (two vector blocks), rows wider than a vector (19 positions):
   * Winograd F(4x4, 3x3) where the CPU has AVX2 or AVX-512. Its forward rounds to ~1e-5
   * of the outputs' scale, which central differences divide by 2 eps: a conv alone is
   * linear, so a larger step costs no truncation error and keeps that noise small */
  PrunusArch c =
      ARCH(3, 4, 19,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 18, .kernel = 3, .stride = 1, .padding = 1});
  check_gradients_step(&c, 2, "conv k3 s1 p1 wide", 2e-2f);
  prunus_gemm_force_reference(true);
  check_gradients(&c, 2, "conv k3 s1 p1 wide (im2col, reference gemm)");
  prunus_gemm_force_reference(false);
  /* one input channel, stride 1: the direct kernels. 7 channels (a forward block of 6
   * and one of 2; weight-gradient blocks of 3 with one left over), Wo = 37 (a
   * two-vector strip, then a short one); k3: 9 taps (blocks of 5 with one left over),
   * Wo = 9 (one vector); 4 channels (the forward block of 4); then the plain loops */
  PrunusArch d =
      ARCH(1, 7, 37,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 7, .kernel = 5, .stride = 1, .padding = 2});
  PrunusArch e =
      ARCH(1, 9, 11, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1});
  PrunusArch f =
      ARCH(1, 8, 20,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 5, .stride = 1, .padding = 2});
  check_gradients(&d, 3, "conv 1ch k5 s1 p2 (direct)");
  check_gradients(&e, 2, "conv 1ch k3 s1 p0 (direct)");
  check_gradients(&f, 2, "conv 1ch k5 s1 p2 4 channels (direct)");
  prunus_gemm_force_reference(true);
  check_gradients(&d, 3, "conv 1ch k5 s1 p2 (direct, plain loops)");
  check_gradients(&e, 2, "conv 1ch k3 s1 p0 (direct, plain loops)");
  prunus_gemm_force_reference(false);
}

static void test_grad_pool_relu_flatten(void) {
  PrunusArch a = ARCH(2, 6, 6, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2});
  check_gradients(&a, 2, "maxpool k2");
  PrunusArch b = ARCH(1, 7, 7, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 3, .stride = 2});
  check_gradients(&b, 1, "maxpool k3 s2");
  PrunusArch c = ARCH(3, 2, 2, {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN});
  check_gradients(&c, 4, "relu+flatten");
}

static void test_grad_lenet_like(void) {
  PrunusArch a =
      ARCH(1, 10, 10,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 3, .kernel = 3, .stride = 1, .padding = 1},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2},
           {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 3, .stride = 1},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
           {.type = PRUNUS_LAYER_DENSE, .units = 6}, {.type = PRUNUS_LAYER_RELU},
           {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_gradients(&a, 2, "lenet-like");
  prunus_gemm_force_reference(true);
  check_gradients(&a, 2, "lenet-like (reference gemm)");
  prunus_gemm_force_reference(false);
}

/* One forward and backward of a one-layer model on given x and dy, the parameters
 * seeded; returns y, the scratch (a max-pool's argmax), dx and the gradients, each a
 * fresh copy (transfer full, free with layer_pass_free). */
typedef struct {
  float *y, *scratch, *dx, *grads;
  size_t n_y, n_x, n_params;
} LayerPass;

static LayerPass layer_pass_on(PrunusArch *arch, int B, const float *x, const float *dy,
                               PrunusTeam *team) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(arch, B, 11, &error);
  g_assert_no_error(error);
  prunus_model_set_team(m, team);
  const PrunusLayer *l = &m->layers[0];
  LayerPass p = {.n_y = (size_t)B * prunus_shape_size(l->out),
                 .n_x = (size_t)B * prunus_shape_size(l->in),
                 .n_params = m->n_params};
  prunus_model_forward(m, x, B);
  p.dx = g_new(float, p.n_x);
  prunus_model_zero_grads(m);
  l->ops->backward(l, m->params, m->grads, m->acts[0], m->acts[1], dy, p.dx, m->scratch[0], B);
  p.y = g_memdup2(m->acts[1], sizeof(float) * p.n_y);
  p.scratch = g_memdup2(m->scratch[0], sizeof(float) * MIN(p.n_y, m->scratch_len[0]));
  p.grads = g_memdup2(m->grads, sizeof(float) * MAX(p.n_params, 1));
  prunus_model_free(m);
  return p;
}

static LayerPass layer_pass(PrunusArch *arch, int B, const float *x, const float *dy) {
  return layer_pass_on(arch, B, x, dy, NULL);
}

static void layer_pass_free(LayerPass *p) {
  g_free(p->y), g_free(p->scratch), g_free(p->dx), g_free(p->grads);
}

/* Values that stress max: many ties (a few small integers), signed zeros,
 * infinities and NaN. */
static void fill_awkward(float *v, size_t n, PrunusRng *r) {
  static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN};
  for (size_t i = 0; i < n; i++) {
    uint64_t u = prunus_rng_next(r);
    v[i] =
        u % 7 == 0 ? special[(u >> 8) % G_N_ELEMENTS(special)] : (float)((int)((u >> 16) % 5) - 2);
  }
}

/* The AVX-512 pooling kernels against the plain loops (forced through the
 * reference switch): bit for bit, argmax included, on odd sizes and awkward values. */
static void check_pool_simd_exact(PrunusArch *a, int B, const char *label) {
  PrunusRng r;
  prunus_rng_seed(&r, 21);
  size_t nin = (size_t)B * prunus_shape_size(a->input);
  float *x = g_new(float, nin), *dy = g_new(float, nin);
  fill_awkward(x, nin, &r);
  fill_awkward(dy, nin, &r); /* at least as long as any output */
  LayerPass fast = layer_pass(a, B, x, dy);
  prunus_gemm_force_reference(true);
  LayerPass plain = layer_pass(a, B, x, dy);
  prunus_gemm_force_reference(false);
  g_test_message("%s: %zu outputs, %zu inputs", label, fast.n_y, fast.n_x);
  g_assert_cmpmem(fast.y, sizeof(float) * fast.n_y, plain.y, sizeof(float) * plain.n_y);
  g_assert_cmpmem(fast.scratch, sizeof(float) * fast.n_y, plain.scratch, sizeof(float) * plain.n_y);
  g_assert_cmpmem(fast.dx, sizeof(float) * fast.n_x, plain.dx, sizeof(float) * plain.n_x);
  layer_pass_free(&fast), layer_pass_free(&plain);
  g_free(x), g_free(dy);
}

static void test_simd_pool_exact(void) {
  /* odd H and W (a row and a column no window reads), Wo = 18 (two vectors) */
  PrunusArch a = ARCH(3, 7, 37, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2});
  check_pool_simd_exact(&a, 2, "maxpool k2 7x37");
  PrunusArch b = ARCH(16, 10, 10, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2, .stride = 2});
  check_pool_simd_exact(&b, 3, "maxpool k2 10x10");
  PrunusArch c = ARCH(2, 9, 17, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2});
  check_pool_simd_exact(&c, 2, "maxpool k2 9x17 (Wo 8)");
}

/* The AVX-512 single-channel conv against the plain loops on LeNet-5's first layer:
 * the same up to float rounding (FMA and another summation order). */
static void test_simd_conv_direct_close(void) {
  PrunusArch a =
      ARCH(1, 28, 28,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 6, .kernel = 5, .stride = 1, .padding = 2});
  enum { B = 3 };
  PrunusRng r;
  prunus_rng_seed(&r, 8);
  float *x = g_new(float, B * 28 * 28), *dy = g_new(float, B * 6 * 28 * 28);
  for (int i = 0; i < B * 28 * 28; i++) x[i] = (float)prunus_rng_normal(&r);
  for (int i = 0; i < B * 6 * 28 * 28; i++) dy[i] = (float)prunus_rng_normal(&r);
  LayerPass fast = layer_pass(&a, B, x, dy);
  prunus_gemm_force_reference(true);
  LayerPass plain = layer_pass(&a, B, x, dy);
  prunus_gemm_force_reference(false);
  g_assert_cmpfloat(testutil_max_rel_diff(fast.y, plain.y, fast.n_y, "conv1 y"), <, 1e-5);
  g_assert_cmpfloat(testutil_max_rel_diff(fast.grads, plain.grads, fast.n_params, "conv1 dW db"), <,
                    1e-4);
  g_assert_cmpfloat(testutil_max_rel_diff(fast.dx, plain.dx, fast.n_x, "conv1 dx"), <, 1e-5);
  layer_pass_free(&fast), layer_pass_free(&plain);
  g_free(x), g_free(dy);
}

/* A 3x3 conv the Winograd kernels take gets their scratch, not the batch's lowering
 * (col and yt: 16 M floats at batch 128); built while the reference is forced, it gets
 * the lowering its forward then runs. */
static void test_conv_scratch_by_path(void) {
  PrunusArch a =
      ARCH(16, 28, 28,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 16, .kernel = 3, .stride = 1, .padding = 1});
  enum { B = 128 };
  size_t lowering = (size_t)B * 28 * 28 * (16 * 9 + 16);
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, B, 1, &error);
  g_assert_no_error(error);
  g_test_message("scratch %zu floats; the lowering %zu", m->scratch_len[0], lowering);
  if (prunus_conv_wino_isa() != PRUNUS_CONV_ISA_NONE)
    g_assert_cmpuint(m->scratch_len[0], <, lowering / 4);
  else
    g_assert_cmpuint(m->scratch_len[0], >=, lowering);
  prunus_model_free(m);
  prunus_gemm_force_reference(true);
  m = prunus_model_new(&a, B, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(m->scratch_len[0], >=, lowering);
  prunus_model_free(m);
  prunus_gemm_force_reference(false);
}

/* The output shape of a one-layer arch. */
static PrunusShape conv_out_shape(PrunusArch *a) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(a, 1, 1, &error);
  g_assert_no_error(error);
  PrunusShape out = m->layers[0].out;
  prunus_model_free(m);
  return out;
}

/* A conv split over a team of 2 threads against one thread: each image
 * is computed the same way (y and dx equal bit for bit); dW and db are summed per
 * part and then added, so they may differ by rounding only. */
static void check_conv_team(int c, int h, int w, PrunusLayerSpec conv, const char *label) {
  PrunusLayerSpec specs[] = {conv};
  PrunusArch a = {.input = {c, h, w}, .n_layers = 1, .layers = specs};
  enum { B = 5 };
  PrunusRng r;
  prunus_rng_seed(&r, 13);
  size_t nx = (size_t)B * c * h * w, ny = (size_t)B * prunus_shape_size(conv_out_shape(&a));
  float *x = g_new(float, nx), *dy = g_new(float, ny);
  for (size_t i = 0; i < nx; i++) x[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < ny; i++) dy[i] = (float)prunus_rng_normal(&r);
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  LayerPass split = layer_pass_on(&a, B, x, dy, team);
  LayerPass one = layer_pass(&a, B, x, dy);
  prunus_team_free(team);
  g_assert_cmpmem(split.y, sizeof(float) * split.n_y, one.y, sizeof(float) * one.n_y);
  g_assert_cmpmem(split.dx, sizeof(float) * split.n_x, one.dx, sizeof(float) * one.n_x);
  g_assert_cmpfloat(testutil_max_rel_diff(split.grads, one.grads, one.n_params, label), <, 1e-4);
  layer_pass_free(&split), layer_pass_free(&one);
  g_free(x), g_free(dy);
}

/* ReLU split over a team of 2: elementwise, so bit for bit the one-thread result. */
static void check_relu_team(void) {
  PrunusArch a = ARCH(3, 7, 13, {.type = PRUNUS_LAYER_RELU});
  enum { B = 5, N = B * 3 * 7 * 13 }; /* 1365: not a multiple of 16 */
  PrunusRng r;
  prunus_rng_seed(&r, 17);
  float *x = g_new(float, N), *dy = g_new(float, N);
  for (int i = 0; i < N; i++)
    x[i] = (float)prunus_rng_normal(&r), dy[i] = (float)prunus_rng_normal(&r);
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  LayerPass split = layer_pass_on(&a, B, x, dy, team), one = layer_pass(&a, B, x, dy);
  prunus_team_free(team);
  g_assert_cmpmem(split.y, sizeof(float) * N, one.y, sizeof(float) * N);
  g_assert_cmpmem(split.dx, sizeof(float) * N, one.dx, sizeof(float) * N);
  layer_pass_free(&split), layer_pass_free(&one);
  g_free(x), g_free(dy);
}

/* A dense layer split over a team of 2 (LeNet-300's 784 -> 300 columns split, and
 * 300 -> 100 rows split, at a batch with a tail): db sums each column in the same
 * order (bit for bit); the products match within float rounding (OpenBLAS may pick
 * other tail kernels for a block). Then the same backward onto zeroed gradients
 * (grads_zeroed: beta 1) gives the same gradients. */
static void check_dense_team(int in, int units, int B) {
  PrunusLayerSpec spec = {.type = PRUNUS_LAYER_DENSE, .units = units};
  PrunusArch a = {.input = {in, 1, 1}, .n_layers = 1, .layers = &spec};
  PrunusRng r;
  prunus_rng_seed(&r, 19);
  size_t nx = (size_t)B * in, ny = (size_t)B * units;
  float *x = g_new(float, nx), *dy = g_new(float, ny);
  for (size_t i = 0; i < nx; i++) x[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < ny; i++) dy[i] = (float)prunus_rng_normal(&r);
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  int threads = prunus_get_threads();
  prunus_set_threads(1);
  LayerPass split = layer_pass_on(&a, B, x, dy, team);
  prunus_set_threads(threads);
  LayerPass one = layer_pass(&a, B, x, dy);
  prunus_team_free(team);
  char label[64];
  g_snprintf(label, sizeof label, "dense %d->%d team y", in, units);
  g_assert_cmpfloat(testutil_max_rel_diff(split.y, one.y, ny, label), <, 1e-5);
  g_snprintf(label, sizeof label, "dense %d->%d team dx", in, units);
  g_assert_cmpfloat(testutil_max_rel_diff(split.dx, one.dx, nx, label), <, 1e-5);
  size_t w_len = (size_t)in * units;
  g_snprintf(label, sizeof label, "dense %d->%d team dW", in, units);
  g_assert_cmpfloat(testutil_max_rel_diff(split.grads, one.grads, w_len, label), <, 1e-5);
  g_assert_cmpmem(split.grads + w_len, sizeof(float) * units, one.grads + w_len,
                  sizeof(float) * units);

  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, B, 11, &error);
  g_assert_no_error(error);
  prunus_model_forward(m, x, B);
  prunus_model_zero_grads(m);
  m->layers[0].grads_zeroed = TRUE;
  float *dx = g_new(float, nx);
  const PrunusLayer *l = &m->layers[0];
  l->ops->backward(l, m->params, m->grads, m->acts[0], m->acts[1], dy, dx, m->scratch[0], B);
  g_assert_cmpmem(m->grads, sizeof(float) * m->n_params, one.grads, sizeof(float) * m->n_params);
  prunus_model_free(m);
  g_free(dx);
  layer_pass_free(&split), layer_pass_free(&one);
  g_free(x), g_free(dy);
}

/* The loss split over a team of 2: the gradient and the count bit for bit, the mean
 * loss within rounding (summed per part). */
static void check_xent_team(void) {
  enum { B = 37, K = 10 };
  PrunusRng r;
  prunus_rng_seed(&r, 23);
  float z[B * K], d1[B * K], d2[B * K];
  uint8_t y[B];
  for (int i = 0; i < B * K; i++) z[i] = (float)(3.0 * prunus_rng_normal(&r));
  for (int b = 0; b < B; b++) y[b] = (uint8_t)(prunus_rng_next(&r) % K);
  int c1 = 0, c2 = 0;
  double l1 = prunus_softmax_xent(z, y, B, K, d1, &c1);
  PrunusTeam *team = prunus_team_new(2);
  double l2 = prunus_softmax_xent_team(team, z, y, B, K, d2, &c2);
  prunus_team_free(team);
  g_assert_cmpmem(d1, sizeof d1, d2, sizeof d2);
  g_assert_cmpint(c1, ==, c2);
  g_assert_cmpfloat(fabs(l1 - l2), <, 1e-12 * fabs(l1));
}

static void test_conv_team(void) {
  /* LeNet-5's second layer (implicit GEMM) and its first (one input channel, direct) */
  check_conv_team(
      6, 14, 14,
      (PrunusLayerSpec){.type = PRUNUS_LAYER_CONV2D, .channels = 16, .kernel = 5, .stride = 1},
      "conv 6->16");
  check_conv_team(
      1, 28, 28,
      (PrunusLayerSpec){
          .type = PRUNUS_LAYER_CONV2D, .channels = 6, .kernel = 5, .stride = 1, .padding = 2},
      "conv 1->6 p2");
  check_relu_team();
  check_dense_team(784, 300, 37);
  check_dense_team(300, 100, 37);
  check_xent_team();
}

static void test_loss_gradient_and_value(void) {
  /* hand value: logits [0, ln 3] label 1 -> p = [1/4, 3/4], loss = -ln(3/4) */
  float z[] = {0.0f, (float)log(3.0)};
  uint8_t y[] = {1};
  float d[2];
  int correct = 0;
  double loss = prunus_softmax_xent(z, y, 1, 2, d, &correct);
  g_assert_cmpfloat(fabs(loss - (-log(0.75))), <, 1e-6);
  g_assert_cmpfloat(fabs(d[0] - 0.25f), <, 1e-6);
  g_assert_cmpfloat(fabs(d[1] + 0.25f), <, 1e-6);
  g_assert_cmpint(correct, ==, 1);
  /* finite differences on a random batch */
  PrunusRng r;
  prunus_rng_seed(&r, 5);
  enum { B = 4, K = 5 };
  float logits[B * K], grad[B * K], num[B * K];
  uint8_t labels[B] = {0, 4, 2, 2};
  for (int i = 0; i < B * K; i++) logits[i] = (float)(3.0 * prunus_rng_normal(&r));
  prunus_softmax_xent(logits, labels, B, K, grad, NULL);
  for (int i = 0; i < B * K; i++) {
    float keep = logits[i];
    logits[i] = keep + 1e-3f;
    double lp = prunus_softmax_xent(logits, labels, B, K, NULL, NULL);
    logits[i] = keep - 1e-3f;
    double lm = prunus_softmax_xent(logits, labels, B, K, NULL, NULL);
    logits[i] = keep;
    num[i] = (float)((lp - lm) / 2e-3);
  }
  g_assert_cmpfloat(testutil_max_rel_diff(grad, num, B * K, "softmax xent"), <, 1e-3);
  /* large logits stay finite */
  float big[] = {1000.0f, -1000.0f};
  uint8_t y0[] = {1};
  g_assert_true(isfinite(prunus_softmax_xent(big, y0, 1, 2, d, NULL)));
}

static void test_forward_by_hand(void) {
  /* conv 1x3x3 input, one 2x2 filter of ones, bias 0.5: sums of each 2x2 window + 0.5 */
  PrunusArch a =
      ARCH(1, 3, 3, {.type = PRUNUS_LAYER_CONV2D, .channels = 1, .kernel = 2, .stride = 1});
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 1, 0, &error);
  g_assert_no_error(error);
  for (int i = 0; i < 4; i++) m->params[i] = 1.0f;
  m->params[4] = 0.5f;
  float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  prunus_model_forward(m, x, 1);
  float want[] = {12.5f, 16.5f, 24.5f, 28.5f};
  for (int i = 0; i < 4; i++) g_assert_cmpfloat(m->acts[1][i], ==, want[i]);
  g_assert_cmpuint(prunus_model_flops(m, FALSE), ==, 2 * 4 * 4);
  prunus_model_free(m);
  /* maxpool picks the max of each window */
  PrunusArch p = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2});
  m = prunus_model_new(&p, 1, 0, &error);
  float xp[16];
  for (int i = 0; i < 16; i++) xp[i] = (float)((i * 7) % 16);
  prunus_model_forward(m, xp, 1);
  /* rows 0 7 14 5 | 12 3 10 1 | 8 15 6 13 | 4 11 2 9: window maxima 12 14 15 13 */
  float wp[] = {12, 14, 15, 13};
  for (int i = 0; i < 4; i++) g_assert_cmpfloat(m->acts[1][i], ==, wp[i]);
  prunus_model_free(m);
}

static void test_init_seeded_and_masks(void) {
  PrunusArch a =
      ARCH(1, 1, 20, {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 50});
  GError *error = NULL;
  PrunusModel *m1 = prunus_model_new(&a, 1, 42, &error);
  PrunusModel *m2 = prunus_model_new(&a, 1, 42, &error);
  PrunusModel *m3 = prunus_model_new(&a, 1, 43, &error);
  g_assert_no_error(error);
  g_assert_cmpmem(m1->params, sizeof(float) * m1->n_params, m2->params,
                  sizeof(float) * m2->n_params);
  g_assert_true(memcmp(m1->params, m3->params, sizeof(float) * m1->n_params) != 0);
  /* Kaiming normal: std close to sqrt(2/20) over 1000 weights */
  double s2 = 0.0;
  for (size_t i = 0; i < 1000; i++) s2 += m1->params[i] * m1->params[i];
  g_assert_cmpfloat(fabs(sqrt(s2 / 1000) - sqrt(0.1)), <, 0.03);
  /* a masked weight stays exactly zero through optimizer steps */
  m1->mask[3] = 0.0f;
  prunus_model_apply_mask(m1);
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.momentum = 0.9;
  tc.weight_decay = 1e-4;
  for (size_t i = 0; i < m1->n_params; i++) m1->grads[i] = 1.0f;
  for (int s = 1; s <= 3; s++) prunus_optim_step(m1, &tc, 0.1, s);
  g_assert_cmpfloat(m1->params[3], ==, 0.0f);
  tc.optimizer = PRUNUS_OPT_ADAM;
  for (int s = 1; s <= 3; s++) prunus_optim_step(m1, &tc, 0.1, s);
  g_assert_cmpfloat(m1->params[3], ==, 0.0f);
  g_assert_cmpfloat(m1->params[4], !=, m2->params[4]);
  prunus_model_free(m1), prunus_model_free(m2), prunus_model_free(m3);
}

/* uniform-fan-in: weights and biases U(±1/sqrt(fan_in)) from one stream, layer by layer;
 * the other schemes keep zero biases. */
static void test_init_uniform_fan_in(void) {
  PrunusArch a =
      ARCH(1, 1, 400, {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 300},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 100});
  a.init = PRUNUS_INIT_UNIFORM_FAN_IN;
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 1, 7, &error);
  g_assert_no_error(error);
  int fan_in[] = {400, 300};
  int dense[] = {1, 3};
  for (int k = 0; k < 2; k++) {
    const PrunusLayer *l = &m->layers[dense[k]];
    double bound = 1.0 / sqrt(fan_in[k]);
    const float *parts[] = {m->params + l->w_off, m->params + l->b_off};
    size_t lens[] = {l->w_len, l->b_len};
    for (int part = 0; part < 2; part++) {
      double sum = 0.0, sum2 = 0.0, most = 0.0;
      for (size_t j = 0; j < lens[part]; j++) {
        double v = parts[part][j];
        sum += v, sum2 += v * v, most = fmax(most, fabs(v));
      }
      double n = (double)lens[part];
      g_assert_cmpfloat(most, <=, bound);
      g_assert_cmpfloat(most, >, 0.9 * bound); /* biases too: not zero */
      /* U(-a, a): mean 0, variance a^2/3 (120000 and 30000 weights; 300 and 100 biases) */
      g_assert_cmpfloat(fabs(sum / n), <, 4.0 * bound / sqrt(3.0 * n));
      g_assert_cmpfloat(fabs(sum2 / n / (bound * bound / 3.0) - 1.0), <, part ? 0.25 : 0.02);
    }
  }
  /* a re-draw with the same seed gives the same bits */
  float *first = g_memdup2(m->params, sizeof(float) * m->n_params);
  prunus_model_init_params(m, 7);
  g_assert_cmpmem(first, sizeof(float) * m->n_params, m->params, sizeof(float) * m->n_params);
  g_free(first);
  prunus_model_free(m);
  a.init = PRUNUS_INIT_GLOROT;
  m = prunus_model_new(&a, 1, 7, &error);
  g_assert_no_error(error);
  for (size_t j = 0; j < m->layers[1].b_len; j++)
    g_assert_cmpfloat(m->params[m->layers[1].b_off + j], ==, 0.0f);
  prunus_model_free(m);
}

static void test_arch_string_round_trip(void) {
  PrunusArch a =
      ARCH(1, 28, 28,
           {.type = PRUNUS_LAYER_CONV2D, .channels = 6, .kernel = 5, .stride = 1, .padding = 2},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2, .stride = 2},
           {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 10});
  char *s = prunus_arch_to_string(&a);
  g_assert_cmpstr(s, ==, "1x28x28|conv2d:6:5:1:2|relu|maxpool2d:2:2|flatten|dense:10");
  PrunusArch b;
  GError *error = NULL;
  g_assert_true(prunus_arch_from_string(s, &b, &error));
  char *s2 = prunus_arch_to_string(&b);
  g_assert_cmpstr(s, ==, s2);
  g_assert_cmpint(b.n_classes, ==, 10);
  prunus_arch_clear(&b);
  g_assert_false(prunus_arch_from_string("1x28|dense:x", &b, &error));
  testutil_assert_error_contains(error, "1x28|dense:x", NULL);
  g_clear_error(&error);
  g_free(s), g_free(s2);
}

static void test_bad_arch_errors(void) {
  GError *error = NULL;
  PrunusArch a = ARCH(1, 28, 28, {.type = PRUNUS_LAYER_DENSE, .units = 10});
  g_assert_null(prunus_model_new(&a, 1, 0, &error));
  testutil_assert_error_contains(error, "layer 0", "flatten", NULL);
  g_clear_error(&error);
  PrunusArch b =
      ARCH(1, 4, 4, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 5, .stride = 1});
  g_assert_null(prunus_model_new(&b, 1, 0, &error));
  testutil_assert_error_contains(error, "kernel 5", NULL);
  g_clear_error(&error);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/layers/grad/dense", test_grad_dense);
  g_test_add_func("/layers/grad/conv2d", test_grad_conv);
  g_test_add_func("/layers/grad/pool-relu-flatten", test_grad_pool_relu_flatten);
  g_test_add_func("/layers/grad/lenet-like", test_grad_lenet_like);
  g_test_add_func("/layers/simd/pool-exact", test_simd_pool_exact);
  g_test_add_func("/layers/simd/conv-direct-close", test_simd_conv_direct_close);
  g_test_add_func("/layers/team", test_conv_team);
  g_test_add_func("/layers/conv-scratch", test_conv_scratch_by_path);
  g_test_add_func("/layers/loss", test_loss_gradient_and_value);
  g_test_add_func("/layers/forward-by-hand", test_forward_by_hand);
  g_test_add_func("/layers/init-and-masks", test_init_seeded_and_masks);
  g_test_add_func("/layers/grad-sparse-dense", test_grad_sparse_dense);
  g_test_add_func("/layers/init-uniform-fan-in", test_init_uniform_fan_in);
  g_test_add_func("/layers/arch-string", test_arch_string_round_trip);
  g_test_add_func("/layers/bad-arch", test_bad_arch_errors);
  return g_test_run();
}
