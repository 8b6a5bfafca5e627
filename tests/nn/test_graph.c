/* test_graph.c: models as graphs and the layers graphs brought: finite-difference
 * gradients of batchnorm (training and evaluation), add and concat with fan-in and
 * fan-out, avgpool2d, globalavgpool and conv2d without bias; batchnorm's running
 * statistics against a hand computation; a sequence written as a graph trains bit for
 * bit like the plain one; arch strings, build errors, shrinking, checkpoints with
 * buffers, batchnorm folded for the engines, and their refusal of graphs. */
#include "checkpoint.h"
#include "conv_wino.h"
#include "engine.h"
#include "export.h"
#include "gemm.h"
#include "rng.h"
#include "safetensors.h"
#include "shrink.h"
#include "testutil.h"
#include "train.h"

#include <math.h>
#include <string.h>

#define ARCH(c, h, w, ...)                                                                \
  ({                                                                                      \
    static PrunusLayerSpec specs_[] = {__VA_ARGS__};                                      \
    (PrunusArch){.input = {c, h, w}, .n_layers = G_N_ELEMENTS(specs_), .layers = specs_}; \
  })

#define BN(...) \
  { .type = PRUNUS_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-5f, __VA_ARGS__ }

/* ------------------------------------------------------------------------ */
/* finite differences over a graph */

/* L = sum_i c_i * logits_i in double, after a forward of x. */
static double readout(PrunusModel *m, const float *x, const float *c, int B) {
  prunus_model_forward(m, x, B);
  size_t n = (size_t)B * m->arch.n_classes;
  double L = 0.0;
  for (size_t i = 0; i < n; i++) L += (double)c[i] * m->acts[m->n_layers][i];
  return L;
}

/* The piecewise-linear region the last forward landed in: each ReLU input's sign and
 * each max-pool argmax (a central difference across a kink compares nothing). */
static uint64_t kink_pattern(const PrunusModel *m, int B) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    const float *x = m->acts[l->from[0] + 1];
    if (l->spec.type == PRUNUS_LAYER_RELU) {
      size_t n = (size_t)B * prunus_shape_size(l->in);
      for (size_t j = 0; j < n; j++) h = (h ^ (x[j] > 0.0f)) * 1099511628211ULL;
    } else if (l->spec.type == PRUNUS_LAYER_MAXPOOL2D) {
      const int32_t *arg = (const int32_t *)m->scratch[i];
      size_t n = (size_t)B * prunus_shape_size(l->out);
      for (size_t j = 0; j < n; j++) h = (h ^ (uint64_t)arg[j]) * 1099511628211ULL;
    }
  }
  return h;
}

/* Analytic dL/dparams (prunus_model_backward) against central differences, every
 * parameter, in training or evaluation mode; batchnorm's running statistics drawn
 * at random (variance in [0.5, 1.5]). Returns the max relative difference. */
static double check_graph_gradients(const PrunusArch *arch, int B, gboolean training,
                                    const char *label) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(arch, B, 3, &error);
  g_assert_no_error(error);
  prunus_model_set_training(m, training);
  PrunusRng r;
  prunus_rng_seed(&r, 99);
  for (size_t i = 0; i < m->n_params; i++) m->params[i] = (float)(prunus_rng_normal(&r) * 0.5);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type != PRUNUS_LAYER_BATCHNORM) continue;
    for (int c = 0; c < l->in.c; c++) {
      m->params[l->b_off + c] = (float)(1.0 + 0.3 * prunus_rng_normal(&r)); /* gamma */
      m->params[l->buf_off + c] = (float)(0.5 * prunus_rng_normal(&r));
      m->params[l->buf_off + l->in.c + c] = (float)(0.5 + prunus_rng_uniform(&r));
    }
  }
  size_t nin = (size_t)B * prunus_model_input_size(m), nout = (size_t)B * m->arch.n_classes;
  float *x = g_new(float, nin), *c = g_new(float, nout);
  for (size_t i = 0; i < nin; i++) x[i] = (float)prunus_rng_normal(&r);
  for (size_t i = 0; i < nout; i++) c[i] = (float)prunus_rng_normal(&r);
  prunus_model_forward(m, x, B);
  uint64_t base = kink_pattern(m, B);
  prunus_model_zero_grads(m);
  prunus_model_backward(m, c, B);
  float *analytic = g_memdup2(m->grads, sizeof(float) * m->n_params);
  float *numeric = g_new(float, m->n_params);
  const float eps = 2e-3f;
  int skipped = 0;
  for (size_t i = 0; i < m->n_params; i++) {
    float keep = m->params[i];
    m->params[i] = keep + eps;
    double lp = readout(m, x, c, B);
    uint64_t hp = kink_pattern(m, B);
    m->params[i] = keep - eps;
    double lm = readout(m, x, c, B);
    uint64_t hm = kink_pattern(m, B);
    m->params[i] = keep;
    numeric[i] = (float)((lp - lm) / (2.0 * eps));
    if (hp != base || hm != base) {
      numeric[i] = analytic[i];
      skipped++;
    }
  }
  g_test_message("%s: %d of %zu parameters skipped (a ReLU/max-pool kink within eps)", label,
                 skipped, m->n_params);
  g_assert_cmpint(skipped, <=, (int)(m->n_params / 20));
  double err = testutil_max_rel_diff(analytic, numeric, m->n_params, label);
  g_assert_cmpfloat(err, <, 5e-3);
  g_free(numeric), g_free(analytic), g_free(x), g_free(c);
  prunus_model_free(m);
  return err;
}

/* conv 3x3 -> batchnorm -> relu -> flatten -> dense 4, and the same after a dense. */
static void test_grad_batchnorm_train(void) {
  PrunusArch conv = ARCH(
      2, 5, 5, {.type = PRUNUS_LAYER_CONV2D, .channels = 3, .kernel = 3, .stride = 1, .padding = 1},
      BN(.name = "bn"), {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 4});
  check_graph_gradients(&conv, 4, TRUE, "batchnorm (train) after conv2d");
  PrunusArch dense =
      ARCH(1, 3, 3, {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 6}, BN(),
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_graph_gradients(&dense, 5, TRUE, "batchnorm (train) after dense");
}

static void test_grad_batchnorm_eval(void) {
  PrunusArch conv = ARCH(
      2, 5, 5, {.type = PRUNUS_LAYER_CONV2D, .channels = 3, .kernel = 3, .stride = 1, .padding = 1},
      BN(), {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 4});
  check_graph_gradients(&conv, 3, FALSE, "batchnorm (eval) after conv2d");
}

/* A graph with every join: relu "r" feeds four layers (fan-out 4, one of them twice),
 * "s" adds a batchnorm branch to r, "d" adds r to itself, concat stacks s, c, d. */
static void test_grad_add_concat_fan(void) {
  PrunusArch a =
      ARCH(2, 6, 6,
           /* 0 */
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "a",
            .channels = 3,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           /* 1 */ {.type = PRUNUS_LAYER_RELU, .name = "r"},
           /* 2 */
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "b",
            .channels = 3,
            .kernel = 3,
            .stride = 1,
            .padding = 1,
            .no_bias = TRUE},
           /* 3 */ BN(.name = "bn"),
           /* 4 */ {.type = PRUNUS_LAYER_ADD, .name = "s", .n_inputs = 2, .inputs = {3, 1}},
           /* 5 */
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "c",
            .channels = 2,
            .kernel = 1,
            .stride = 1,
            .n_inputs = 1,
            .inputs = {1}},
           /* 6 */ {.type = PRUNUS_LAYER_ADD, .name = "d", .n_inputs = 2, .inputs = {1, 1}},
           /* 7 */ {.type = PRUNUS_LAYER_CONCAT, .name = "cat", .n_inputs = 3, .inputs = {4, 5, 6}},
           /* 8 */ {.type = PRUNUS_LAYER_AVGPOOL2D, .kernel = 2, .stride = 2},
           /* 9 */ {.type = PRUNUS_LAYER_GLOBALAVGPOOL},
           /* 10 */ {.type = PRUNUS_LAYER_DENSE, .units = 3});
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 2, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(m->layers[7].out.c, ==, 3 + 2 + 3);
  g_assert_cmpint(m->n_uses[2], ==, 5); /* r: b, s, c and d twice */
  g_assert_false(prunus_model_is_sequence(m));
  prunus_model_free(m);
  check_graph_gradients(&a, 3, TRUE, "add + concat, fan-out 5 (train)");
  check_graph_gradients(&a, 3, FALSE, "add + concat, fan-out 5 (eval)");
}

static void test_grad_avgpool(void) {
  PrunusArch overlap = ARCH(
      1, 6, 6, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_AVGPOOL2D, .kernel = 3, .stride = 2}, {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_graph_gradients(&overlap, 2, TRUE, "avgpool2d k3 s2 (overlapping)");
  PrunusArch tiles = ARCH(
      1, 6, 6, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_AVGPOOL2D, .kernel = 2}, {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_graph_gradients(&tiles, 2, TRUE, "avgpool2d k2 (stride = kernel)");
}

static void test_grad_global_pool(void) {
  PrunusArch a = ARCH(
      2, 5, 4, {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 3, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_GLOBALAVGPOOL}, {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_graph_gradients(&a, 3, TRUE, "globalavgpool");
}

/* Both conv paths: one input channel, stride 1 (direct kernels) and several (GEMM). */
static void test_grad_conv_no_bias(void) {
  PrunusArch one = ARCH(1, 6, 6,
                        {.type = PRUNUS_LAYER_CONV2D,
                         .channels = 3,
                         .kernel = 3,
                         .stride = 1,
                         .padding = 1,
                         .no_bias = TRUE},
                        {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
                        {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_graph_gradients(&one, 2, TRUE, "conv2d without bias, 1 channel");
  PrunusArch many = ARCH(3, 6, 6,
                         {.type = PRUNUS_LAYER_CONV2D,
                          .channels = 4,
                          .kernel = 3,
                          .stride = 2,
                          .padding = 1,
                          .no_bias = TRUE},
                         {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
                         {.type = PRUNUS_LAYER_DENSE, .units = 3});
  check_graph_gradients(&many, 2, TRUE, "conv2d without bias, 3 channels, stride 2");
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&many, 1, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(m->layers[0].b_len, ==, 0);
  g_assert_cmpuint(m->n_params, ==, 4 * 3 * 9 + 3 * (4 * 3 * 3) + 3);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* batchnorm's statistics by hand */

/* A 1x1 conv with identity weights and no bias feeds batchnorm, so batchnorm sees x. */
static PrunusModel *identity_bn_model(int C, int H, int W, float momentum, float eps, int B) {
  static PrunusLayerSpec specs[2];
  specs[0] = (PrunusLayerSpec){
      .type = PRUNUS_LAYER_CONV2D, .channels = C, .kernel = 1, .stride = 1, .no_bias = TRUE};
  specs[1] = (PrunusLayerSpec){.type = PRUNUS_LAYER_BATCHNORM, .momentum = momentum, .eps = eps};
  PrunusArch a = {.input = {C, H, W}, .n_layers = 2, .layers = specs};
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, B, 0, &error);
  g_assert_no_error(error);
  for (int o = 0; o < C; o++)
    for (int i = 0; i < C; i++) m->params[m->layers[0].w_off + (size_t)o * C + i] = o == i;
  return m;
}

static void test_batchnorm_running_stats(void) {
  const int C = 3, H = 2, W = 3, B = 4, HW = H * W, N = B * HW;
  const float mom = 0.25f, eps = 1e-3f;
  PrunusModel *m = identity_bn_model(C, H, W, mom, eps, B);
  const PrunusLayer *bn = &m->layers[1];
  float *gamma = m->params + bn->b_off, *beta = gamma + C;
  const float *rmean = m->params + bn->buf_off, *rvar = rmean + C;
  for (int c = 0; c < C; c++) {
    g_assert_cmpfloat(gamma[c], ==, 1.0f); /* the initial values */
    g_assert_cmpfloat(beta[c], ==, 0.0f);
    g_assert_cmpfloat(rmean[c], ==, 0.0f);
    g_assert_cmpfloat(rvar[c], ==, 1.0f);
    gamma[c] = 0.5f + (float)c, beta[c] = -0.25f * (float)c;
  }
  PrunusRng r;
  prunus_rng_seed(&r, 5);
  float *x = g_new(float, (size_t)B *C *HW);
  double want_mean[3] = {0, 0, 0}, want_var[3] = {1, 1, 1};
  prunus_model_set_training(m, TRUE);
  for (int step = 0; step < 2; step++) {
    for (int i = 0; i < B * C * HW; i++) x[i] = (float)(2.0 + 3.0 * prunus_rng_normal(&r));
    prunus_model_forward(m, x, B);
    const float *y = m->acts[2];
    for (int c = 0; c < C; c++) {
      double s = 0, sq = 0;
      for (int b = 0; b < B; b++)
        for (int i = 0; i < HW; i++) s += x[((size_t)b * C + c) * HW + i];
      double mean = s / N;
      for (int b = 0; b < B; b++)
        for (int i = 0; i < HW; i++) {
          double d = x[((size_t)b * C + c) * HW + i] - mean;
          sq += d * d;
        }
      double biased = sq / N, unbiased = sq / (N - 1);
      want_mean[c] = (1 - mom) * want_mean[c] + mom * mean;
      want_var[c] = (1 - mom) * want_var[c] + mom * unbiased;
      g_assert_cmpfloat(fabs(rmean[c] - want_mean[c]), <=, 1e-6 * fmax(1, fabs(want_mean[c])));
      g_assert_cmpfloat(fabs(rvar[c] - want_var[c]), <=, 1e-6 * fmax(1, fabs(want_var[c])));
      for (int b = 0; b < B; b++)
        for (int i = 0; i < HW; i++) { /* normalised with the biased variance */
          size_t j = ((size_t)b * C + c) * HW + i;
          double want = (x[j] - mean) / sqrt(biased + eps) * gamma[c] + beta[c];
          g_assert_cmpfloat(fabs(y[j] - want), <=, 2e-5 * fmax(1, fabs(want)));
        }
    }
    g_test_message("step %d: running_mean %.6f %.6f %.6f running_var %.6f %.6f %.6f", step + 1,
                   rmean[0], rmean[1], rmean[2], rvar[0], rvar[1], rvar[2]);
  }
  /* evaluation: the running statistics normalise, and nothing changes */
  float *before = g_memdup2(rmean, sizeof(float) * 2 * C);
  prunus_model_set_training(m, FALSE);
  prunus_model_forward(m, x, B);
  g_assert_cmpmem(before, sizeof(float) * 2 * C, rmean, sizeof(float) * 2 * C);
  for (int c = 0; c < C; c++)
    for (int b = 0; b < B; b++)
      for (int i = 0; i < HW; i++) {
        size_t j = ((size_t)b * C + c) * HW + i;
        double want = (x[j] - rmean[c]) / sqrt((double)rvar[c] + eps) * gamma[c] + beta[c];
        g_assert_cmpfloat(fabs(m->acts[2][j] - want), <=, 2e-5 * fmax(1, fabs(want)));
      }
  g_free(before);
  g_free(x);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* training: modes, and a sequence written as a graph */

/* 1 x 6 x 6 images of 3 classes: class k brightens row band k. */
static PrunusDataset *band_dataset(int n, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  uint8_t *img = g_new(uint8_t, (size_t)n * 36), *lab = g_new(uint8_t, n);
  for (int i = 0; i < n; i++) {
    int k = (int)prunus_rng_below(&r, 3);
    lab[i] = (uint8_t)k;
    for (int p = 0; p < 36; p++) {
      double v = (p / 12 == k ? 180.0 : 60.0) + 40.0 * prunus_rng_normal(&r);
      img[(size_t)i * 36 + p] = (uint8_t)CLAMP(lround(v), 0, 255);
    }
  }
  PrunusDataset *d = prunus_dataset_new_from_data(n, 1, 6, 6, 3, img, lab);
  g_free(img), g_free(lab);
  return d;
}

static PrunusTrainConfig small_train(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.epochs = 2, tc.batch = 16, tc.lr = 0.05, tc.momentum = 0.9, tc.weight_decay = 1e-4;
  return tc;
}

/* batchnorm's passes in each version (AVX-512, AVX2, plain C) against a double-precision
 * computation, on planes whose size is and is not a multiple of the vector width; the
 * two vector versions share lanes and operations, so they must agree bit for bit. */
typedef struct {
  float *y, *dx, *dgb; /* forward output, input gradient, dgamma then dbeta */
} BnRun;

static BnRun bn_run(PrunusModel *m, const float *x, const float *dy, int B, gboolean training) {
  const PrunusLayer *bn = &m->layers[1];
  size_t n = (size_t)B * prunus_shape_size(bn->in);
  int C = bn->in.c;
  BnRun r = {g_new(float, n), g_new(float, n), g_new(float, 2 * (size_t)C)};
  prunus_model_set_training(m, training);
  bn->ops->forward(bn, m->params, x, r.y, m->scratch[1], B);
  memset(m->grads, 0, sizeof(float) * m->n_params);
  bn->ops->backward(bn, m->params, m->grads, x, r.y, dy, r.dx, m->scratch[1], B);
  memcpy(r.dgb, m->grads + bn->b_off, sizeof(float) * 2 * C);
  return r;
}

static void bn_run_free(BnRun *r) { g_free(r->y), g_free(r->dx), g_free(r->dgb); }

static void test_batchnorm_isa_paths(void) {
  static const int sides[][2] = {{7, 7}, {6, 6}, {1, 1}, {2, 20}};
  const int C = 3, B = 5;
  for (size_t t = 0; t < G_N_ELEMENTS(sides); t++) {
    const int H = sides[t][0], W = sides[t][1], HW = H * W, N = B * HW;
    size_t n = (size_t)B * C * HW;
    PrunusModel *m = identity_bn_model(C, H, W, 0.1f, 1e-5f, B);
    const PrunusLayer *bn = &m->layers[1];
    PrunusRng r;
    prunus_rng_seed(&r, 17 + t);
    float *gamma = m->params + bn->b_off, *beta = gamma + C;
    for (int c = 0; c < C; c++) {
      gamma[c] = (float)(1.0 + 0.5 * prunus_rng_normal(&r));
      beta[c] = (float)prunus_rng_normal(&r);
      m->params[bn->buf_off + c] = (float)prunus_rng_normal(&r);
      m->params[bn->buf_off + C + c] = (float)(0.5 + prunus_rng_uniform(&r));
    }
    float *x = g_new(float, n), *dy = g_new(float, n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 + 3.0 * prunus_rng_normal(&r));
    for (size_t i = 0; i < n; i++) dy[i] = (float)prunus_rng_normal(&r);
    for (int training = 0; training <= 1; training++) {
      /* the reference, in double */
      double *y = g_new(double, n), *dx = g_new(double, n), *dgb = g_new0(double, 2 * C);
      for (int c = 0; c < C; c++) {
        double mean = m->params[bn->buf_off + c], var = m->params[bn->buf_off + C + c];
        if (training) {
          double s = 0, sq = 0;
          for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) s += x[((size_t)b * C + c) * HW + i];
          mean = s / N;
          for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) sq += pow(x[((size_t)b * C + c) * HW + i] - mean, 2);
          var = sq / N;
        }
        double istd = 1.0 / sqrt(var + 1e-5), sdy = 0, sdyx = 0;
        for (int b = 0; b < B; b++)
          for (int i = 0; i < HW; i++) {
            size_t j = ((size_t)b * C + c) * HW + i;
            double xh = (x[j] - mean) * istd;
            y[j] = gamma[c] * xh + beta[c];
            sdy += dy[j], sdyx += dy[j] * xh;
          }
        dgb[c] = sdyx, dgb[C + c] = sdy;
        for (int b = 0; b < B; b++)
          for (int i = 0; i < HW; i++) {
            size_t j = ((size_t)b * C + c) * HW + i;
            double xh = (x[j] - mean) * istd;
            dx[j] = gamma[c] * istd * (training ? dy[j] - sdy / N - xh * sdyx / N : dy[j]);
          }
      }
      BnRun vec[2] = {{0}};
      const PrunusConvIsa isas[] = {PRUNUS_CONV_ISA_AVX512, PRUNUS_CONV_ISA_AVX2,
                                    PRUNUS_CONV_ISA_NONE};
      for (int v = 0; v < 3; v++) {
        prunus_conv_wino_limit_isa(isas[v]);
        prunus_gemm_force_reference(isas[v] == PRUNUS_CONV_ISA_NONE);
        PrunusConvIsa got = prunus_conv_wino_isa();
        if (got != isas[v]) { /* this CPU lacks the version */
          prunus_gemm_force_reference(false);
          continue;
        }
        BnRun run = bn_run(m, x, dy, B, training);
        prunus_gemm_force_reference(false);
        double ey = 0, edx = 0, eg = 0;
        for (size_t i = 0; i < n; i++) {
          ey = fmax(ey, fabs(run.y[i] - y[i]) / fmax(1.0, fabs(y[i])));
          edx = fmax(edx, fabs(run.dx[i] - dx[i]) / fmax(1.0, fabs(dx[i])));
        }
        for (int i = 0; i < 2 * C; i++)
          eg = fmax(eg, fabs(run.dgb[i] - dgb[i]) / fmax(1.0, fabs(dgb[i])));
        g_test_message("batchnorm %dx%d %s, %s: max rel err y %.2e dx %.2e dgamma/dbeta %.2e", H, W,
                       training ? "train" : "eval", prunus_conv_isa_name(got), ey, edx, eg);
        g_assert_cmpfloat(ey, <, 1e-6);
        g_assert_cmpfloat(edx, <, 1e-6);
        g_assert_cmpfloat(eg, <, 1e-5); /* sums of B*H*W float products */
        if (v < 2) {
          vec[v] = run;
        } else {
          bn_run_free(&run);
        }
      }
      prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
      if (vec[0].y && vec[1].y) {
        g_assert_cmpmem(vec[0].y, sizeof(float) * n, vec[1].y, sizeof(float) * n);
        g_assert_cmpmem(vec[0].dx, sizeof(float) * n, vec[1].dx, sizeof(float) * n);
        g_assert_cmpmem(vec[0].dgb, sizeof(float) * 2 * C, vec[1].dgb, sizeof(float) * 2 * C);
      }
      for (int v = 0; v < 2; v++)
        if (vec[v].y) bn_run_free(&vec[v]);
      g_free(y), g_free(dx), g_free(dgb);
    }
    g_free(x), g_free(dy);
    prunus_model_free(m);
  }
}

/* prunus_train leaves the model in evaluation mode with its running statistics moved;
 * prunus_evaluate neither changes them nor the mode. */
static void test_train_modes(void) {
  PrunusArch a = ARCH(1, 6, 6,
                      {.type = PRUNUS_LAYER_CONV2D,
                       .channels = 4,
                       .kernel = 3,
                       .stride = 1,
                       .padding = 1,
                       .no_bias = TRUE},
                      BN(), {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
                      {.type = PRUNUS_LAYER_DENSE, .units = 3});
  PrunusDataset *d = band_dataset(200, 1);
  PrunusNorm norm = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 16, 1, &error);
  g_assert_no_error(error);
  PrunusTrainConfig tc = small_train();
  g_assert_true(prunus_train(m, &tc, d, NULL, &norm, 1, NULL, &error));
  g_assert_no_error(error);
  g_assert_false(m->training);
  const float *rmean = m->params + m->layers[1].buf_off;
  g_assert_cmpfloat(rmean[0], !=, 0.0f);
  float *before = g_memdup2(m->buffers, sizeof(float) * m->n_buffers);
  g_assert_cmpuint(m->n_buffers, ==, 2 * 4);
  prunus_model_set_training(m, TRUE);
  PrunusEvalResult e = prunus_evaluate(m, d, &norm, 32);
  g_assert_true(m->training);
  g_assert_cmpmem(before, sizeof(float) * m->n_buffers, m->buffers, sizeof(float) * m->n_buffers);
  g_test_message("conv-bn-relu-dense on bands: accuracy %.3f", e.accuracy);
  g_assert_cmpfloat(e.accuracy, >, 0.6);
  g_free(before);
  prunus_model_free(m);
  prunus_dataset_free(d);
}

static PrunusModel *train_arch(const PrunusArch *a, const PrunusDataset *d,
                               const PrunusNorm *norm) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(a, 16, 7, &error);
  g_assert_no_error(error);
  PrunusTrainConfig tc = small_train();
  g_assert_true(prunus_train(m, &tc, d, NULL, norm, 7, NULL, &error));
  g_assert_no_error(error);
  return m;
}

/* LeNet-5's shape as a plain sequence and as a graph (every layer named, every input
 * listed): the same weights bit for bit after training at one thread. */
static void test_sequence_as_graph_bit_identical(void) {
  PrunusArch plain = ARCH(
      1, 6, 6, {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 3, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2, .stride = 2},
      {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 8},
      {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 3});
  PrunusArch graph =
      ARCH(1, 6, 6,
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "conv",
            .n_inputs = 1,
            .inputs = {PRUNUS_LAYER_INPUT},
            .channels = 4,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           {.type = PRUNUS_LAYER_RELU, .name = "r1", .n_inputs = 1, .inputs = {0}},
           {.type = PRUNUS_LAYER_MAXPOOL2D,
            .name = "pool",
            .n_inputs = 1,
            .inputs = {1},
            .kernel = 2,
            .stride = 2},
           {.type = PRUNUS_LAYER_FLATTEN, .name = "flat", .n_inputs = 1, .inputs = {2}},
           {.type = PRUNUS_LAYER_DENSE, .name = "fc1", .n_inputs = 1, .inputs = {3}, .units = 8},
           {.type = PRUNUS_LAYER_RELU, .name = "r2", .n_inputs = 1, .inputs = {4}},
           {.type = PRUNUS_LAYER_DENSE, .name = "fc2", .n_inputs = 1, .inputs = {5}, .units = 3});
  PrunusDataset *d = band_dataset(160, 2);
  PrunusNorm norm = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  prunus_set_threads(1);
  PrunusModel *a = train_arch(&plain, d, &norm), *b = train_arch(&graph, d, &norm);
  g_assert_true(prunus_model_is_sequence(b));
  g_assert_cmpuint(a->n_params, ==, b->n_params);
  g_assert_cmpmem(a->params, sizeof(float) * a->n_params, b->params, sizeof(float) * b->n_params);
  char *s = prunus_arch_to_string(&b->arch);
  g_assert_cmpstr(s, ==,
                  "1x6x6|conv2d:4:3:1:1@conv|relu@r1|maxpool2d:2:2@pool|flatten@flat|dense:8@fc1|"
                  "relu@r2|dense:3@fc2");
  g_free(s);
  prunus_model_free(a), prunus_model_free(b);
  prunus_dataset_free(d);
}

/* prunus_model_backward_each over a sequence equals the plain loop it replaced (each
 * layer from the last to the first one with parameters, dx into the slot below) bit
 * for bit, and calls done for the same layers in the same order. */
static void record_done(PrunusModel *m, int layer, void *user) {
  (void)m;
  g_array_append_val((GArray *)user, layer);
}

static void test_backward_matches_plain_loop(void) {
  PrunusArch a = ARCH(
      1, 8, 8, {.type = PRUNUS_LAYER_CONV2D, .channels = 3, .kernel = 3, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2, .stride = 2},
      {.type = PRUNUS_LAYER_CONV2D, .channels = 5, .kernel = 3, .stride = 1},
      {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 7}, {.type = PRUNUS_LAYER_RELU},
      {.type = PRUNUS_LAYER_DENSE, .units = 4});
  GError *error = NULL;
  const int B = 5;
  PrunusModel *m = prunus_model_new(&a, B, 11, &error);
  g_assert_no_error(error);
  PrunusRng r;
  prunus_rng_seed(&r, 4);
  float *x = g_new(float, (size_t)B * 64), *dl = g_new(float, (size_t)B * 4);
  for (int i = 0; i < B * 64; i++) x[i] = (float)prunus_rng_normal(&r);
  for (int i = 0; i < B * 4; i++) dl[i] = (float)prunus_rng_normal(&r);
  prunus_model_forward(m, x, B);
  prunus_model_zero_grads(m);
  GArray *order = g_array_new(FALSE, FALSE, sizeof(int));
  prunus_model_backward_each(m, dl, B, record_done, order);
  float *graph = g_memdup2(m->grads, sizeof(float) * m->n_params);
  prunus_model_zero_grads(m);
  const float *dy = dl;
  int expect[] = {8, 6, 3, 0}, k = 0;
  for (int i = m->n_layers - 1; i >= 0; i--) { /* the plain loop */
    const PrunusLayer *l = &m->layers[i];
    float *dx = i > 0 ? m->dacts[i] : NULL;
    l->ops->backward(l, m->params, m->grads, m->acts[i], m->acts[i + 1], dy, dx, m->scratch[i], B);
    dy = dx;
  }
  g_assert_cmpmem(graph, sizeof(float) * m->n_params, m->grads, sizeof(float) * m->n_params);
  g_assert_cmpuint(order->len, ==, G_N_ELEMENTS(expect));
  for (k = 0; k < (int)order->len; k++)
    g_assert_cmpint(g_array_index(order, int, k), ==, expect[k]);
  g_array_free(order, TRUE);
  g_free(graph), g_free(x), g_free(dl);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* arch strings and build errors */

static PrunusArch resnet_like(void) {
  return ARCH(1, 8, 8,
              {.type = PRUNUS_LAYER_CONV2D,
               .name = "stem",
               .channels = 4,
               .kernel = 3,
               .stride = 1,
               .padding = 1,
               .no_bias = TRUE},
              BN(.name = "stem_bn"), {.type = PRUNUS_LAYER_RELU, .name = "stem_relu"},
              {.type = PRUNUS_LAYER_CONV2D,
               .name = "b.conv1",
               .channels = 4,
               .kernel = 3,
               .stride = 1,
               .padding = 1,
               .no_bias = TRUE},
              {.type = PRUNUS_LAYER_BATCHNORM, .name = "b.bn1", .momentum = 0.3f, .eps = 1e-3f},
              {.type = PRUNUS_LAYER_ADD, .name = "b.add", .n_inputs = 2, .inputs = {4, 2}},
              {.type = PRUNUS_LAYER_RELU},
              {.type = PRUNUS_LAYER_CONCAT, .n_inputs = 2, .inputs = {6, 2}},
              {.type = PRUNUS_LAYER_AVGPOOL2D, .kernel = 2, .stride = 2},
              {.type = PRUNUS_LAYER_GLOBALAVGPOOL, .name = "pool"},
              {.type = PRUNUS_LAYER_DENSE, .name = "fc", .units = 5});
}

static void test_arch_string_graph(void) {
  PrunusArch a = resnet_like();
  char *s = prunus_arch_to_string(&a);
  g_assert_cmpstr(
      s, ==,
      "1x8x8|conv2d:4:3:1:1:nobias@stem|batchnorm:0.1:1e-05@stem_bn|relu@stem_relu|"
      "conv2d:4:3:1:1:nobias@b.conv1|batchnorm:0.3:0.001@b.bn1|add@b.add<b.bn1,stem_relu|"
      "relu|concat<6,stem_relu|avgpool2d:2:2|globalavgpool@pool|dense:5@fc");
  PrunusArch b;
  GError *error = NULL;
  g_assert_true(prunus_arch_from_string(s, &b, &error));
  g_assert_no_error(error);
  char *s2 = prunus_arch_to_string(&b);
  g_assert_cmpstr(s, ==, s2);
  g_assert_cmpint(b.n_classes, ==, 5);
  g_assert_cmpfloat(b.layers[4].momentum, ==, 0.3f);
  g_assert_cmpfloat(b.layers[4].eps, ==, 1e-3f);
  g_assert_true(b.layers[3].no_bias);
  g_assert_cmpint(b.layers[7].n_inputs, ==, 2);
  g_assert_cmpint(b.layers[7].inputs[1], ==, 2);
  prunus_arch_clear(&b);
  const char *bad[] = {
      "1x8x8|dense:4<nowhere|dense:2",          /* unknown input */
      "1x8x8|flatten@a|dense:4@a|dense:2",      /* a name twice */
      "1x8x8|flatten<1|dense:4|dense:2",        /* an input that comes later */
      "1x8x8|flatten@input|dense:2",            /* the reserved name */
      "1x8x8|batchnorm:x:1e-5|flatten|dense:2", /* not a float */
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_assert_false(prunus_arch_from_string(bad[i], &b, &error));
    testutil_assert_error_contains(error, "cannot parse architecture string", bad[i], NULL);
    g_clear_error(&error);
  }
  g_free(s), g_free(s2);
}

static void expect_build_error(const PrunusArch *a, int bad_layer, const char *n1, const char *n2) {
  GError *error = NULL;
  int bad = 99;
  g_assert_false(prunus_arch_check(a, &bad, &error));
  g_assert_cmpint(bad, ==, bad_layer);
  testutil_assert_error_contains(error, n1, n2, NULL);
  g_clear_error(&error);
  g_assert_null(prunus_model_new(a, 1, 0, &error));
  testutil_assert_error_contains(error, n1, n2, NULL);
  g_clear_error(&error);
}

static void test_build_errors(void) {
  PrunusArch after_relu =
      ARCH(1, 4, 4, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1},
           {.type = PRUNUS_LAYER_RELU, .name = "r"}, BN(.name = "bn"),
           {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&after_relu, 2,
                     "model layer bn (batchnorm): batchnorm must follow a conv2d or "
                     "dense layer, whose outputs it normalises; its input 'r' is a relu layer",
                     NULL);
  PrunusArch on_input =
      ARCH(1, 4, 4, BN(), {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&on_input, 0, "model layer 0 (batchnorm)", "its input is the model's input");
  PrunusArch add_shapes =
      ARCH(1, 6, 6,
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "a",
            .channels = 2,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           {.type = PRUNUS_LAYER_CONV2D, .name = "b", .channels = 2, .kernel = 3, .stride = 1},
           {.type = PRUNUS_LAYER_ADD, .name = "sum", .n_inputs = 2, .inputs = {0, 1}},
           {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&add_shapes, 2,
                     "model layer sum (add): add needs inputs of one shape, but 'a' "
                     "is 2x6x6 and 'b' is 2x4x4",
                     NULL);
  PrunusArch concat_hw =
      ARCH(1, 6, 6,
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "a",
            .channels = 2,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           {.type = PRUNUS_LAYER_CONCAT,
            .name = "cat",
            .n_inputs = 2,
            .inputs = {0, PRUNUS_LAYER_INPUT}},
           {.type = PRUNUS_LAYER_CONV2D, .name = "b", .channels = 2, .kernel = 3, .stride = 1},
           {.type = PRUNUS_LAYER_CONCAT, .name = "cat2", .n_inputs = 2, .inputs = {1, 2}},
           {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&concat_hw, 3,
                     "model layer cat2 (concat): concat stacks channels of inputs of "
                     "one height and width, but 'cat' is 3x6x6 and 'b' is 2x4x4",
                     NULL);
  PrunusArch one_input = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN, .name = "f"},
                              {.type = PRUNUS_LAYER_ADD, .n_inputs = 1, .inputs = {0}},
                              {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&one_input, 1, "model layer 1 (add): add needs 2 or more inputs, found 1",
                     NULL);
  PrunusArch two_into_relu = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN},
                                  {.type = PRUNUS_LAYER_RELU, .n_inputs = 2, .inputs = {0, 0}},
                                  {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&two_into_relu, 1, "model layer 1 (relu): takes one input, found 2", NULL);
  PrunusArch later = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN, .n_inputs = 1, .inputs = {1}},
                          {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&later, 0,
                     "model layer 0 (flatten): input 0 is layer 1, which does not come "
                     "before it",
                     "without cycles");
  PrunusArch dangling =
      ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN, .name = "f"},
           {.type = PRUNUS_LAYER_DENSE, .name = "lost", .units = 3},
           {.type = PRUNUS_LAYER_DENSE, .units = 2, .n_inputs = 1, .inputs = {0}});
  expect_build_error(&dangling, 1, "model layer lost (dense): its output is never used", NULL);
  PrunusArch twins = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN, .name = "x"},
                          {.type = PRUNUS_LAYER_DENSE, .name = "x", .units = 2});
  expect_build_error(&twins, 1, "model layer x (dense): layer 0 has the same name", NULL);
  PrunusArch bad_name = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN, .name = "a b"},
                             {.type = PRUNUS_LAYER_DENSE, .units = 2});
  expect_build_error(&bad_name, 0, "name 'a b' is not valid", NULL);
}

/* ------------------------------------------------------------------------ */
/* shrinking, checkpoints, engines */

/* conv -> batchnorm -> relu -> conv -> batchnorm -> relu -> flatten -> dense: removing
 * channel 1 of the first conv removes it from its batchnorm (scale, shift, running
 * statistics) and the second conv's inputs; the result computes what the original
 * computes with the second conv's input channel 1 zeroed (evaluation mode). */
static void test_shrink_batchnorm_sequence(void) {
  PrunusArch a =
      ARCH(1, 5, 5,
           {.type = PRUNUS_LAYER_CONV2D,
            .channels = 3,
            .kernel = 3,
            .stride = 1,
            .padding = 1,
            .no_bias = TRUE},
           BN(), {.type = PRUNUS_LAYER_RELU},
           {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1, .padding = 1},
           BN(), {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
           {.type = PRUNUS_LAYER_DENSE, .units = 3});
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 4, 3, &error);
  g_assert_no_error(error);
  PrunusRng r;
  prunus_rng_seed(&r, 8);
  for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = (float)(0.5 + prunus_rng_uniform(&r));
  for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(0.1 * prunus_rng_normal(&r));
  uint8_t rm0[3] = {0, 1, 0};
  const uint8_t *remove[8] = {rm0};
  PrunusModel *s = prunus_model_shrink(m, remove, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  const PrunusLayer *bo = &m->layers[1], *bs = &s->layers[1];
  g_assert_cmpint(bs->in.c, ==, 2);
  g_assert_cmpint(s->layers[3].in.c, ==, 2);
  g_assert_cmpuint(s->n_buffers, ==, m->n_buffers - 2);
  int kept[2] = {0, 2};
  for (int k = 0; k < 2; k++) {
    g_assert_cmpfloat(s->params[bs->b_off + k], ==, m->params[bo->b_off + kept[k]]);
    g_assert_cmpfloat(s->params[bs->b_off + 2 + k], ==, m->params[bo->b_off + 3 + kept[k]]);
    g_assert_cmpfloat(s->params[bs->buf_off + k], ==, m->params[bo->buf_off + kept[k]]);
    g_assert_cmpfloat(s->params[bs->buf_off + 2 + k], ==, m->params[bo->buf_off + 3 + kept[k]]);
  }
  const PrunusLayer *c2 = &m->layers[3];
  for (int o = 0; o < 2; o++) /* the reference: channel 1 feeds nothing */
    memset(m->params + c2->w_off + ((size_t)o * 3 + 1) * 9, 0, sizeof(float) * 9);
  float x[4 * 25];
  for (int i = 0; i < 100; i++) x[i] = (float)prunus_rng_normal(&r);
  prunus_model_forward(m, x, 4);
  prunus_model_forward(s, x, 4);
  double err =
      testutil_max_rel_diff(m->acts[m->n_layers], s->acts[s->n_layers], 12, "shrunk vs zeroed");
  g_assert_cmpfloat(err, <, 1e-5);
  /* copies keep the buffers and the mode */
  prunus_model_set_training(m, TRUE);
  PrunusModel *copy = prunus_model_shrink(m, NULL, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  g_assert_true(copy->training);
  g_assert_cmpmem(copy->buffers, sizeof(float) * copy->n_buffers, m->buffers,
                  sizeof(float) * m->n_buffers);
  prunus_model_free(copy), prunus_model_free(s), prunus_model_free(m);
}

static void test_shrink_graph(void) {
  PrunusArch a = resnet_like();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 2, 1, &error);
  g_assert_no_error(error);
  for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = 0.25f * (float)(i + 1);
  uint8_t rm[4] = {0, 0, 1, 0};
  const uint8_t *remove[11] = {NULL, NULL, NULL, rm};
  g_assert_null(prunus_model_shrink(m, remove, NULL, NULL, 0, &error));
  /* b.conv1's channels are the stem's (the add): only together (tests/nn/test_groups.c) */
  testutil_assert_error_contains(error, "splits coupled group 2",
                                 "removes unit 2 of layer b.conv1 but keeps unit 2 of layer stem",
                                 NULL);
  g_clear_error(&error);
  PrunusModel *copy = prunus_model_shrink_dead(m, &error);
  g_assert_no_error(error);
  g_assert_cmpmem(copy->params, sizeof(float) * (m->n_params + m->n_buffers), m->params,
                  sizeof(float) * (m->n_params + m->n_buffers));
  prunus_model_free(copy), prunus_model_free(m);
}

static void test_checkpoint_buffers(void) {
  PrunusArch a = resnet_like();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 2, 1, &error);
  g_assert_no_error(error);
  for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = 0.5f + 0.125f * (float)i;
  char *dir = testutil_mkdtemp(), *path = g_build_filename(dir, "m.safetensors", NULL);
  g_assert_true(prunus_checkpoint_save(m, path, NULL, &error));
  g_assert_no_error(error);
  PrunusModel *back = prunus_checkpoint_load(path, 2, NULL, NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(back->n_buffers, ==, m->n_buffers);
  g_assert_cmpmem(back->params, sizeof(float) * (m->n_params + m->n_buffers), m->params,
                  sizeof(float) * (m->n_params + m->n_buffers));
  g_assert_false(back->training);
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_nonnull(prunus_tensor_file_find(f, "stem.weight"));
  g_assert_null(prunus_tensor_file_find(f, "stem.bias")); /* no bias */
  const PrunusTensor *rv = prunus_tensor_file_find(f, "b.bn1.running_var");
  g_assert_nonnull(rv);
  g_assert_cmpint(rv->ndim, ==, 1);
  g_assert_cmpint(rv->shape[0], ==, 4);
  g_assert_nonnull(prunus_tensor_file_find(f, "stem_bn.bias"));
  g_assert_null(prunus_tensor_file_find(f, "stem_bn.mask"));
  /* the same file without one buffer, with one of the wrong shape, with a negative variance */
  char *bad = g_build_filename(dir, "bad.safetensors", NULL);
  for (int variant = 0; variant < 3; variant++) {
    PrunusTensor *t = g_new0(PrunusTensor, f->n_tensors);
    int n = 0;
    float neg[4] = {1, -1, 1, 1};
    for (int i = 0; i < f->n_tensors; i++) {
      if (variant == 0 && !strcmp(f->tensors[i].name, "b.bn1.running_var")) continue;
      t[n] = f->tensors[i];
      if (variant == 1 && !strcmp(t[n].name, "b.bn1.running_mean")) t[n].shape[0] = 3;
      if (variant == 2 && !strcmp(t[n].name, "b.bn1.running_var")) t[n].data = neg;
      n++;
    }
    g_assert_true(prunus_safetensors_write(bad, t, n, f->metadata, &error));
    g_assert_null(prunus_checkpoint_load(bad, 1, NULL, NULL, &error));
    if (variant == 0)
      testutil_assert_error_contains(error, bad,
                                     "tensor \"b.bn1.running_var\" is missing (the "
                                     "architecture needs shape [4])",
                                     NULL);
    else if (variant == 1)
      testutil_assert_error_contains(error, bad,
                                     "tensor \"b.bn1.running_mean\" has shape [3] but "
                                     "the architecture needs [4]",
                                     NULL);
    else
      testutil_assert_error_contains(error, bad,
                                     "tensor \"b.bn1.running_var\" element 1 is -1; a "
                                     "variance is >= 0",
                                     NULL);
    g_clear_error(&error);
    g_free(t);
  }
  prunus_tensor_file_free(f);
  g_free(bad);
  prunus_model_free(back), prunus_model_free(m);
  testutil_rmtree(dir);
  g_free(path), g_free(dir);
}

/* Graphs (and sequences with average pooling) run in every engine and export to C
 * (tests/infer has the numbers); the safetensors export, named for nn.Sequential,
 * still refuses them, writing nothing. */
static void test_engine_export_graphs(void) {
  PrunusArch a = resnet_like();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 2, 1, &error);
  g_assert_no_error(error);
  g_assert_false(prunus_model_check_plain(m, TRUE, "x", NULL));
  for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
    PrunusEngine *e = prunus_engine_new(m, (PrunusEngineKind)k, 4, &error);
    g_assert_no_error(error);
    g_assert_cmpint(prunus_engine_n_layers(e), ==, m->n_layers - 2); /* 2 batchnorms folded */
    prunus_engine_free(e);
  }
  char *dir = testutil_mkdtemp(), *out = g_build_filename(dir, "c", NULL);
  g_assert_true(prunus_export_c(m, NULL, out, "test", TRUE, NULL, &error));
  g_assert_no_error(error);
  testutil_rmtree(out);
  g_assert_false(prunus_export_safetensors(m, out, TRUE, &error));
  testutil_assert_error_contains(error, "prunus export: only sequences", "b.add", NULL);
  g_clear_error(&error);
  g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
  prunus_model_free(m);
  /* a sequence ending in global average pooling; a graph of plain layers */
  PrunusArch gap =
      ARCH(1, 4, 4, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1},
           {.type = PRUNUS_LAYER_GLOBALAVGPOOL, .name = "gap"},
           {.type = PRUNUS_LAYER_DENSE, .units = 2});
  PrunusArch skip = ARCH(1, 4, 4, {.type = PRUNUS_LAYER_FLATTEN, .name = "f"},
                         {.type = PRUNUS_LAYER_DENSE, .units = 16, .name = "d"},
                         {.type = PRUNUS_LAYER_ADD, .n_inputs = 2, .inputs = {0, 1}},
                         {.type = PRUNUS_LAYER_DENSE, .units = 2});
  const PrunusArch *archs[] = {&gap, &skip};
  for (size_t t = 0; t < G_N_ELEMENTS(archs); t++) {
    m = prunus_model_new(archs[t], 1, 0, &error);
    g_assert_no_error(error);
    PrunusEngine *e = prunus_engine_new(m, PRUNUS_ENGINE_SPARSE, 1, &error);
    g_assert_no_error(error);
    prunus_engine_free(e);
    prunus_model_free(m);
  }
  testutil_rmtree(dir);
  g_free(out), g_free(dir);
}

/* A sequence with batchnorm after a conv without bias and after a dense layer, pruned
 * in part: prunus_model_to_plain folds the batchnorms away, and every engine computes
 * what the model computes in evaluation mode. */
static void test_engine_batchnorm_folded(void) {
  PrunusArch a = ARCH(
      2, 8, 8,
      {.type = PRUNUS_LAYER_CONV2D,
       .channels = 6,
       .kernel = 3,
       .stride = 1,
       .padding = 1,
       .no_bias = TRUE},
      BN(.name = "bn1"), {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2},
      {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 3, .stride = 1},
      {.type = PRUNUS_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-3f}, {.type = PRUNUS_LAYER_RELU},
      {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 9}, BN(),
      {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 3});
  GError *error = NULL;
  const int B = 5;
  PrunusModel *m = prunus_model_new(&a, B, 2, &error);
  g_assert_no_error(error);
  PrunusRng r;
  prunus_rng_seed(&r, 12);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM)
      for (int c = 0; c < l->in.c; c++) {
        m->params[l->b_off + c] = (float)(1.0 + 0.3 * prunus_rng_normal(&r));
        m->params[l->b_off + l->in.c + c] = (float)(0.3 * prunus_rng_normal(&r));
        m->params[l->buf_off + c] = (float)(0.5 * prunus_rng_normal(&r));
        m->params[l->buf_off + l->in.c + c] = (float)(0.5 + prunus_rng_uniform(&r));
      }
    for (size_t j = 0; j < l->w_len; j++) m->mask[l->w_off + j] = prunus_rng_uniform(&r) >= 0.4;
  }
  prunus_model_apply_mask(m);
  g_assert_true(prunus_model_check_plain(m, TRUE, "x", NULL));
  g_assert_false(prunus_model_check_plain(m, FALSE, "x", &error));
  testutil_assert_error_contains(error,
                                 "x: only sequences of dense, conv2d, maxpool2d, relu and "
                                 "flatten layers are supported; model layer 0 is a conv2d "
                                 "without bias",
                                 NULL);
  g_clear_error(&error);
  PrunusModel *p = prunus_model_to_plain(m, "x", &error);
  g_assert_no_error(error);
  g_assert_cmpint(p->n_layers, ==, m->n_layers - 3);
  g_assert_cmpstr(p->layers[1].name, ==, "2"); /* the relu keeps the name it had */
  g_assert_cmpuint(p->layers[0].b_len, ==, 6);
  g_assert_cmpuint(p->n_buffers, ==, 0);
  size_t pruned_m = 0, pruned_p = 0;
  for (size_t j = 0; j < m->n_params; j++) pruned_m += m->mask[j] == 0.0f;
  for (size_t j = 0; j < p->n_params; j++) pruned_p += p->mask[j] == 0.0f;
  g_assert_cmpuint(pruned_m, ==, pruned_p); /* the same weights pruned */
  float x[5 * 128], logits[5 * 3];
  for (int i = 0; i < B * 128; i++) x[i] = (float)prunus_rng_normal(&r);
  prunus_model_forward(m, x, B);
  const float *want = m->acts[m->n_layers];
  prunus_model_forward(p, x, B);
  char label[64];
  g_assert_cmpfloat(testutil_max_rel_diff(p->acts[p->n_layers], want, 15, "folded model"), <, 1e-5);
  for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
    PrunusEngine *e = prunus_engine_new(m, (PrunusEngineKind)k, B, &error);
    g_assert_no_error(error);
    prunus_engine_forward(e, x, B, logits);
    g_snprintf(label, sizeof label, "%s engine", prunus_engine_kind_name((PrunusEngineKind)k));
    g_assert_cmpfloat(testutil_max_rel_diff(logits, want, 15, label), <, 1e-5);
    prunus_engine_free(e);
  }
  prunus_model_free(p), prunus_model_free(m);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  prunus_set_threads(1);
  g_test_add_func("/graph/grad/batchnorm-train", test_grad_batchnorm_train);
  g_test_add_func("/graph/grad/batchnorm-eval", test_grad_batchnorm_eval);
  g_test_add_func("/graph/grad/add-concat-fan", test_grad_add_concat_fan);
  g_test_add_func("/graph/grad/avgpool", test_grad_avgpool);
  g_test_add_func("/graph/grad/global-pool", test_grad_global_pool);
  g_test_add_func("/graph/grad/conv-no-bias", test_grad_conv_no_bias);
  g_test_add_func("/graph/batchnorm/running-stats", test_batchnorm_running_stats);
  g_test_add_func("/graph/batchnorm/isa-paths", test_batchnorm_isa_paths);
  g_test_add_func("/graph/train/modes", test_train_modes);
  g_test_add_func("/graph/train/sequence-as-graph", test_sequence_as_graph_bit_identical);
  g_test_add_func("/graph/backward/plain-loop", test_backward_matches_plain_loop);
  g_test_add_func("/graph/arch-string", test_arch_string_graph);
  g_test_add_func("/graph/build-errors", test_build_errors);
  g_test_add_func("/graph/shrink/batchnorm-sequence", test_shrink_batchnorm_sequence);
  g_test_add_func("/graph/shrink/graph", test_shrink_graph);
  g_test_add_func("/graph/checkpoint/buffers", test_checkpoint_buffers);
  g_test_add_func("/graph/engine-export-graphs", test_engine_export_graphs);
  g_test_add_func("/graph/engine/batchnorm-folded", test_engine_batchnorm_folded);
  return g_test_run();
}
