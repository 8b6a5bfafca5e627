/* test_posttrain.c: post-training pruning (plugin ABI revision 3) through the real
 * host path (config file, loader, host instance, prunus_calibrate): the layer
 * inputs the host hands out (dense rows, conv im2col patches, sums of squares,
 * Gram matrices, layerwise passes) and the graph view against hand-written forward
 * loops; the host's Cholesky services against plain loops; and the obd, wanda,
 * sparsegpt and nm plugins against references computed here on tiny layers:
 * hand-derived gradients for obd, explicit submatrix inverses and one-column-at-a-
 * time OBS updates for sparsegpt, group-by-group selection for nm. */
#include "calib.h"
#include "config.h"
#include "linalg.h"
#include "plugin_host.h"
#include "plugin_loader.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CALIB_SEED 42u
#define N_SAMPLES 5

// ----------------------------------------------------------------------------
// Tiny networks with fixed weights and data

#define ARCH(c, h, w, ...)                                                                \
  ({                                                                                      \
    static PrunusLayerSpec specs_[] = {__VA_ARGS__};                                      \
    (PrunusArch){.input = {c, h, w}, .n_layers = G_N_ELEMENTS(specs_), .layers = specs_}; \
  })

/* MLP "flatten, dense 3 ("1"), relu, dense 2 ("3")" on a 1x1x4 input. */
static const uint8_t mlp_images[N_SAMPLES * 4] = {200, 30,  90,  10, 15,  240, 60, 120, 100, 100,
                                                  5,   250, 255, 0,  180, 40,  70, 160, 220, 90};
static const uint8_t mlp_labels[N_SAMPLES] = {0, 1, 1, 0, 1};
static const float mlp_w1[3 * 4] = {0.5f, -0.3f, 0.8f, 0.1f, -0.6f, 0.9f,
                                    0.2f, -0.4f, 0.3f, 0.3f, -0.7f, 0.6f};
static const float mlp_b1[3] = {0.05f, 0.1f, -0.2f};
static const float mlp_w2[2 * 3] = {0.7f, -0.5f, 0.4f, -0.3f, 0.8f, 0.6f};
static const float mlp_b2[2] = {0.0f, 0.1f};

/* Conv net "conv 2x2, 2 channels, padding 1 ("0"), relu, flatten, dense 2 ("3")" on a
 * 2x3x3 input: conv out 2x4x4 (16 positions, fan_in 2*2*2 = 8), dense fan_in 32. */
#define CV_IN 18
static uint8_t conv_images[N_SAMPLES * CV_IN];
static const uint8_t conv_labels[N_SAMPLES] = {1, 0, 0, 1, 1};
static float conv_w0[2 * 8], conv_w3[2 * 32];
static const float conv_b0[2] = {-0.1f, 0.05f}, conv_b3[2] = {0.1f, -0.05f};

static void conv_data_init(void) {
  for (int i = 0; i < N_SAMPLES * CV_IN; i++) conv_images[i] = (uint8_t)((i * 97 + 31) % 256);
  for (int i = 0; i < 16; i++) conv_w0[i] = (float)(0.6 * sin(1.7 * i + 0.3));
  for (int i = 0; i < 64; i++) conv_w3[i] = (float)(0.4 * cos(0.9 * i + 0.1));
}

typedef struct {
  PrunusModel *m;
  PrunusDataset *d;
  int n_in;
} Net;

static void set_layer(PrunusModel *m, int i, const float *w, const float *b) {
  const PrunusLayer *l = &m->layers[i];
  memcpy(m->params + l->w_off, w, sizeof(float) * l->w_len);
  memcpy(m->params + l->b_off, b, sizeof(float) * l->b_len);
}

static Net mlp_net(void) {
  PrunusArch a =
      ARCH(1, 1, 4, {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 3},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 2});
  GError *error = NULL;
  Net n = {.m = prunus_model_new(&a, 8, 0, &error), .n_in = 4};
  g_assert_no_error(error);
  set_layer(n.m, 1, mlp_w1, mlp_b1);
  set_layer(n.m, 3, mlp_w2, mlp_b2);
  n.d = prunus_dataset_new_from_data(N_SAMPLES, 1, 1, 4, 2, mlp_images, mlp_labels);
  return n;
}

static Net conv_net(void) {
  conv_data_init();
  PrunusArch a = ARCH(
      2, 3, 3, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 2, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 2});
  GError *error = NULL;
  Net n = {.m = prunus_model_new(&a, 8, 0, &error), .n_in = CV_IN};
  g_assert_no_error(error);
  set_layer(n.m, 0, conv_w0, conv_b0);
  set_layer(n.m, 3, conv_w3, conv_b3);
  n.d = prunus_dataset_new_from_data(N_SAMPLES, 2, 3, 3, 2, conv_images, conv_labels);
  return n;
}

static void net_free(Net *n) {
  prunus_model_free(n->m);
  prunus_dataset_free(n->d);
}

/* The host's sample order (a seeded shuffle) and normalisation (unit: x / 255). */
static void calib_order(int *idx) {
  for (int i = 0; i < N_SAMPLES; i++) idx[i] = i;
  PrunusRng r;
  prunus_rng_seed(&r, prunus_seed_derive(CALIB_SEED, "calibration"));
  prunus_rng_shuffle(&r, idx, N_SAMPLES);
}

static void sample_input(const Net *n, int s, double *x) {
  for (int j = 0; j < n->n_in; j++) x[j] = n->d->images[s * n->n_in + j] / 255.0;
}

// ----------------------------------------------------------------------------
// Reference layer inputs, from hand-written forward loops

/* MLP: x (4) is layer "1"'s input, h = relu(W1 x + b1) (3) layer "3"'s. */
static void mlp_ref_inputs(const Net *n, int s, double *x, double *h) {
  sample_input(n, s, x);
  for (int u = 0; u < 3; u++) {
    double z = mlp_b1[u];
    for (int j = 0; j < 4; j++) z += mlp_w1[u * 4 + j] * x[j];
    h[u] = z > 0 ? z : 0;
  }
}

/* Conv: the patches (16, 8) of sample s, rows (oh, ow), columns (c, kh, kw), padding
 * 1 reading as 0; and layer "3"'s input, relu of the conv output flattened (c, oh, ow). */
static void conv_ref_inputs(const Net *n, int s, double patches[16][8], double flat[32]) {
  double x[CV_IN];
  sample_input(n, s, x);
  for (int oh = 0; oh < 4; oh++)
    for (int ow = 0; ow < 4; ow++)
      for (int c = 0; c < 2; c++)
        for (int kh = 0; kh < 2; kh++)
          for (int kw = 0; kw < 2; kw++) {
            const int ih = oh - 1 + kh, iw = ow - 1 + kw;
            patches[oh * 4 + ow][c * 4 + kh * 2 + kw] =
                ih >= 0 && ih < 3 && iw >= 0 && iw < 3 ? x[c * 9 + ih * 3 + iw] : 0.0;
          }
  for (int co = 0; co < 2; co++)
    for (int p = 0; p < 16; p++) {
      double z = conv_b0[co];
      for (int k = 0; k < 8; k++) z += conv_w0[co * 8 + k] * patches[p][k];
      flat[co * 16 + p] = z > 0 ? z : 0;
    }
}

/* Every calibration row of both layers of net (mlp or conv) in the host's order:
 * rows[l] (n_rows[l], fan_in[l]). */
typedef struct {
  int n_rows[2], fan_in[2];
  double *rows[2];
} RefInputs;

static RefInputs ref_inputs(const Net *n, gboolean conv) {
  int idx[N_SAMPLES];
  calib_order(idx);
  RefInputs r = {.fan_in = {conv ? 8 : 4, conv ? 32 : 3}};
  r.n_rows[0] = N_SAMPLES * (conv ? 16 : 1), r.n_rows[1] = N_SAMPLES;
  for (int l = 0; l < 2; l++) r.rows[l] = g_new0(double, (size_t)r.n_rows[l] * r.fan_in[l]);
  for (int s = 0; s < N_SAMPLES; s++) {
    if (conv) {
      double patches[16][8], flat[32];
      conv_ref_inputs(n, idx[s], patches, flat);
      memcpy(r.rows[0] + (size_t)s * 16 * 8, patches, sizeof patches);
      memcpy(r.rows[1] + (size_t)s * 32, flat, sizeof flat);
    } else {
      mlp_ref_inputs(n, idx[s], r.rows[0] + s * 4, r.rows[1] + s * 3);
    }
  }
  return r;
}

static void ref_inputs_free(RefInputs *r) {
  for (int l = 0; l < 2; l++) g_free(r->rows[l]);
}

static double ref_sumsq(const RefInputs *r, int l, int j) {
  double s = 0.0;
  for (int i = 0; i < r->n_rows[l]; i++) {
    const double v = r->rows[l][(size_t)i * r->fan_in[l] + j];
    s += v * v;
  }
  return s;
}

static double ref_gram(const RefInputs *r, int l, int a, int b) {
  double s = 0.0;
  for (int i = 0; i < r->n_rows[l]; i++)
    s += r->rows[l][(size_t)i * r->fan_in[l] + a] * r->rows[l][(size_t)i * r->fan_in[l] + b];
  return s;
}

/* |got - want| <= tol * max(1, |want|) */
static void assert_near(double got, double want, double tol, const char *what) {
  if (fabs(got - want) > tol * fmax(1.0, fabs(want)))
    g_error("%s: got %.9g, want %.9g (tolerance %g)", what, got, want, tol);
}

// ----------------------------------------------------------------------------
// prune.recalibrate_bn: batchnorm statistics re-estimated on the calibration sample

/* One batchnorm channel over n values in training mode: y = g (z - mu) / sqrt(var + eps)
 * + b with the batch's mean and biased variance; *mu and *var get them. */
static void ref_bn(double *z, int n, int stride, double g, double b, double *mu, double *var) {
  double m = 0.0, v = 0.0;
  for (int i = 0; i < n; i++) m += z[i * stride];
  m /= n;
  for (int i = 0; i < n; i++) v += (z[i * stride] - m) * (z[i * stride] - m);
  v /= n;
  for (int i = 0; i < n; i++) z[i * stride] = g * (z[i * stride] - m) / sqrt(v + 1e-5) + b;
  *mu = m, *var = v;
}

/* "conv 2x2 ("0"), batchnorm ("1"), relu, flatten, dense 3 ("4"), batchnorm ("5"), relu,
 * dense 2" on the conv net's data, buffers set to values far from the data's: after
 * re-estimation on 2 batches of 2 samples, each batchnorm's running mean is the mean of
 * its two batch means and its running variance the mean of the two unbiased batch
 * variances (N = 2 x 16 positions for "1", 2 for "5"), the second batchnorm fed by the
 * first normalising with batch statistics, as in PyTorch's update_bn. */
static void test_recalibrate_bn(void) {
  conv_data_init();
  PrunusArch a = ARCH(
      2, 3, 3, {.type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 2, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-5f}, {.type = PRUNUS_LAYER_RELU},
      {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 3},
      {.type = PRUNUS_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-5f}, {.type = PRUNUS_LAYER_RELU},
      {.type = PRUNUS_LAYER_DENSE, .units = 2});
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 8, 0, &error);
  g_assert_no_error(error);
  float w4[3 * 32], b4[3] = {0.2f, -0.1f, 0.05f};
  for (int i = 0; i < 3 * 32; i++) w4[i] = (float)(0.3 * sin(0.7 * i + 0.2));
  set_layer(m, 0, conv_w0, conv_b0);
  set_layer(m, 4, w4, b4);
  const double g1[2] = {1.3, 0.7}, be1[2] = {0.1, -0.2}, g5[3] = {0.9, 1.2, 1.1},
               be5[3] = {0.0, 0.3, -0.1};
  const int bn[2] = {1, 5}, C[2] = {2, 3};
  for (int k = 0; k < 2; k++) {
    const PrunusLayer *l = &m->layers[bn[k]];
    for (int c = 0; c < C[k]; c++) {
      m->params[l->b_off + c] = (float)(k ? g5[c] : g1[c]);
      m->params[l->b_off + C[k] + c] = (float)(k ? be5[c] : be1[c]);
      m->params[l->buf_off + c] = 5.0f, m->params[l->buf_off + C[k] + c] = 7.0f;
    }
  }
  PrunusDataset *d = prunus_dataset_new_from_data(N_SAMPLES, 2, 3, 3, 2, conv_images, conv_labels);
  float *before = g_memdup2(m->params, sizeof(float) * m->n_params);

  /* the reference: batches {idx[0], idx[1]} and {idx[2], idx[3]} */
  int idx[N_SAMPLES];
  calib_order(idx);
  double mean1[2] = {0}, var1[2] = {0}, mean5[3] = {0}, var5[3] = {0};
  const Net n = {.d = d, .n_in = CV_IN};
  for (int b = 0; b < 2; b++) {
    double z[2][2][16], flat[2][32], h[2][3]; /* z (sample, channel, position) */
    for (int s = 0; s < 2; s++) {
      double patches[16][8], unused[32];
      conv_ref_inputs(&n, idx[2 * b + s], patches, unused);
      for (int co = 0; co < 2; co++)
        for (int p = 0; p < 16; p++) {
          z[s][co][p] = conv_b0[co];
          for (int k = 0; k < 8; k++) z[s][co][p] += conv_w0[co * 8 + k] * patches[p][k];
        }
    }
    for (int co = 0; co < 2; co++) {
      double all[32], mu, var;
      for (int s = 0; s < 2; s++) memcpy(all + 16 * s, z[s][co], sizeof z[s][co]);
      ref_bn(all, 32, 1, g1[co], be1[co], &mu, &var);
      mean1[co] += mu / 2, var1[co] += var * 32.0 / 31.0 / 2;
      for (int s = 0; s < 2; s++)
        for (int p = 0; p < 16; p++) flat[s][co * 16 + p] = fmax(all[16 * s + p], 0.0);
    }
    for (int s = 0; s < 2; s++)
      for (int u = 0; u < 3; u++) {
        h[s][u] = b4[u];
        for (int j = 0; j < 32; j++) h[s][u] += w4[u * 32 + j] * flat[s][j];
      }
    for (int u = 0; u < 3; u++) {
      double mu, var;
      ref_bn(&h[0][u], 2, 3, g5[u], be5[u], &mu, &var);
      mean5[u] += mu / 2, var5[u] += var * 2.0 / 1.0 / 2;
    }
  }

  const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
  /* layers 0 .. 3 only: the first batchnorm re-estimated, the second left as it was */
  g_assert_cmpint(prunus_calib_recalibrate_bn(m, d, &norm, 2, 2, CALIB_SEED, 4), ==, 1);
  const float *buf1 = m->params + m->layers[1].buf_off, *buf5 = m->params + m->layers[5].buf_off;
  for (int c = 0; c < 2; c++) {
    assert_near(buf1[c], mean1[c], 1e-5, "partial: batchnorm 1 mean");
    assert_near(buf1[2 + c], var1[c], 1e-5, "partial: batchnorm 1 variance");
  }
  for (int c = 0; c < 3; c++) {
    g_assert_cmpfloat(buf5[c], ==, 5.0f);
    g_assert_cmpfloat(buf5[3 + c], ==, 7.0f);
  }
  g_assert_cmpint(prunus_calib_recalibrate_bn(m, d, &norm, 2, 2, CALIB_SEED, m->n_layers), ==, 2);
  double worst = 0.0;
  for (int k = 0; k < 2; k++) {
    const float *buf = m->params + m->layers[bn[k]].buf_off;
    for (int c = 0; c < C[k]; c++) {
      const double want_mean = k ? mean5[c] : mean1[c], want_var = k ? var5[c] : var1[c];
      g_test_message("batchnorm %d channel %d: mean %.7g (want %.7g), var %.7g (want %.7g)", bn[k],
                     c, buf[c], want_mean, buf[C[k] + c], want_var);
      worst = fmax(worst, fabs(buf[c] - want_mean) / fmax(1.0, fabs(want_mean)));
      worst = fmax(worst, fabs(buf[C[k] + c] - want_var) / fmax(1.0, fabs(want_var)));
    }
  }
  g_test_message("recalibrated statistics: max relative difference %.3e", worst);
  g_assert_cmpfloat(worst, <=, 1e-5);
  /* nothing else moves: parameters, each layer's momentum, the evaluation mode */
  g_assert_cmpmem(m->params, sizeof(float) * m->n_params, before, sizeof(float) * m->n_params);
  g_assert_cmpfloat(m->layers[1].spec.momentum, ==, 0.1f);
  g_assert_cmpfloat(m->layers[5].spec.momentum, ==, 0.1f);
  g_assert_false(m->training);
  g_assert_false(m->layers[1].training);

  /* a model without batchnorm: nothing to do */
  Net plain = mlp_net();
  float *p0 = g_memdup2(plain.m->params, sizeof(float) * plain.m->n_params);
  g_assert_cmpint(
      prunus_calib_recalibrate_bn(plain.m, plain.d, &norm, 2, 2, CALIB_SEED, plain.m->n_layers), ==,
      0);
  g_assert_cmpmem(plain.m->params, sizeof(float) * plain.m->n_params, p0,
                  sizeof(float) * plain.m->n_params);
  g_free(p0);
  net_free(&plain);
  g_free(before);
  prunus_dataset_free(d);
  prunus_model_free(m);
}

// ----------------------------------------------------------------------------
// The calibration pass: inputs as the layers multiply them

typedef struct {
  int n_steps[10];      /* by need bit index */
  int64_t rows_seen[2]; /* INPUTS rows per layer over the pass */
  double worst;         /* max relative difference of any value checked */
  const RefInputs *ref;
  int layer_seen;        /* step->layer of the last step */
  gboolean saw_input[2]; /* a non-NULL inputs / sumsq / gram entry per layer */
} InputCheck;

static int bit_index(uint32_t v) {
  int i = 0;
  while (v > 1) v >>= 1, i++;
  return i;
}

static void note(InputCheck *c, double got, double want) {
  const double d = fabs(got - want) / fmax(1.0, fabs(want));
  c->worst = fmax(c->worst, isnan(d) ? INFINITY : d);
}

static int check_step(void *user, const PrunusModelView *view, const PrunusCalibStep *step) {
  InputCheck *c = user;
  const RefInputs *r = c->ref;
  c->n_steps[bit_index(step->kind)]++;
  c->layer_seen = step->layer;
  for (int l = 0; l < view->n_layers; l++) {
    g_assert_cmpint(view->layers[l].fan_in, ==, r->fan_in[l]);
    const int fi = r->fan_in[l];
    if (step->kind == PRUNUS_NEED_INPUTS && step->inputs[l]) {
      c->saw_input[l] = TRUE;
      const int64_t rows = step->input_rows[l];
      for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < fi; j++)
          note(c, step->inputs[l][i * fi + j], r->rows[l][(c->rows_seen[l] + i) * fi + j]);
      c->rows_seen[l] += rows;
    }
    if (step->kind == PRUNUS_NEED_INPUT_SUMSQ && step->input_sumsq[l]) {
      c->saw_input[l] = TRUE;
      g_assert_cmpint(step->input_rows[l], ==, r->n_rows[l]);
      for (int j = 0; j < fi; j++) note(c, step->input_sumsq[l][j], ref_sumsq(r, l, j));
    }
    if (step->kind == PRUNUS_NEED_INPUT_GRAM && step->input_gram[l]) {
      c->saw_input[l] = TRUE;
      g_assert_cmpint(step->input_rows[l], ==, r->n_rows[l]);
      for (int a = 0; a < fi; a++)
        for (int b = 0; b < fi; b++) note(c, step->input_gram[l][a * fi + b], ref_gram(r, l, a, b));
    }
  }
  return 0;
}

static void check_inputs(gboolean conv) {
  Net n = conv ? conv_net() : mlp_net();
  RefInputs ref = ref_inputs(&n, conv);
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
  const uint32_t all = PRUNUS_NEED_INPUTS | PRUNUS_NEED_INPUT_SUMSQ | PRUNUS_NEED_INPUT_GRAM;
  InputCheck c = {.ref = &ref};
  /* 3 batches of 2: 2, 2 and 1 samples */
  g_assert_true(prunus_calibrate(n.m, &vs, n.d, &norm, all, 3, 2, CALIB_SEED, -1, check_step, &c));
  g_assert_cmpint(c.n_steps[bit_index(PRUNUS_NEED_INPUTS)], ==, 3);
  g_assert_cmpint(c.n_steps[bit_index(PRUNUS_NEED_INPUT_SUMSQ)], ==, 1);
  g_assert_cmpint(c.n_steps[bit_index(PRUNUS_NEED_INPUT_GRAM)], ==, 1);
  g_assert_cmpint(c.rows_seen[0], ==, ref.n_rows[0]);
  g_assert_cmpint(c.rows_seen[1], ==, ref.n_rows[1]);
  g_assert_cmpint(c.layer_seen, ==, -1);
  g_test_message("%s inputs: max relative difference %.3e", conv ? "conv" : "dense", c.worst);
  g_assert_cmpfloat(c.worst, <=, 1e-6);

  /* layerwise, layer 1 alone: only its entries are set */
  InputCheck c1 = {.ref = &ref};
  g_assert_true(prunus_calibrate(n.m, &vs, n.d, &norm, all, 3, 2, CALIB_SEED, 1, check_step, &c1));
  g_assert_cmpint(c1.layer_seen, ==, 1);
  g_assert_false(c1.saw_input[0]);
  g_assert_true(c1.saw_input[1]);
  g_assert_cmpint(c1.rows_seen[1], ==, ref.n_rows[1]);
  g_assert_cmpfloat(c1.worst, <=, 1e-6);

  /* a layer excluded from pruning gets no inputs */
  vs.layers[0].prunable = 0;
  InputCheck c2 = {.ref = &ref};
  g_assert_true(prunus_calibrate(n.m, &vs, n.d, &norm, all, 3, 2, CALIB_SEED, -1, check_step, &c2));
  g_assert_false(c2.saw_input[0]);
  g_assert_true(c2.saw_input[1]);

  prunus_view_clear(&vs);
  ref_inputs_free(&ref);
  net_free(&n);
}

static void test_inputs_dense(void) { check_inputs(FALSE); }
static void test_inputs_conv(void) { check_inputs(TRUE); }

/* INPUT_CROSS: the network as it is (first layer's unit 0 switched off: weights and
 * bias 0, so its relu output is 0) against a reference holding the original weights,
 * whose inputs are the hand loops'. Layer 0's inputs are the same in both (the
 * network input): X^T X0 = the reference Gram. Layer 1's columns of unit 0 are 0 in
 * X, not in X0: their rows of X^T X0 are 0, the other rows the reference Gram's. */
typedef struct {
  const RefInputs *ref;
  int killed; /* columns of layer 1 fed by unit 0 of layer 0 */
  int n_cross, n_gram;
  double worst;
} CrossCheck;

static int check_cross_step(void *user, const PrunusModelView *view, const PrunusCalibStep *step) {
  CrossCheck *c = user;
  const RefInputs *r = c->ref;
  if (step->kind == PRUNUS_NEED_INPUT_GRAM) {
    g_assert_null(step->input_cross);
    c->n_gram++;
    return 0;
  }
  g_assert_cmpuint(step->kind, ==, PRUNUS_NEED_INPUT_CROSS);
  g_assert_cmpint(c->n_gram, ==, 1); /* after the Gram step of the same pass */
  g_assert_null(step->input_gram);
  c->n_cross++;
  for (int l = 0; l < view->n_layers; l++) {
    const int fi = r->fan_in[l];
    g_assert_nonnull(step->input_cross[l]);
    g_assert_cmpint(step->input_rows[l], ==, r->n_rows[l]);
    for (int a = 0; a < fi; a++)
      for (int b = 0; b < fi; b++) {
        const double want = l == 1 && a < c->killed ? 0.0 : ref_gram(r, l, a, b);
        const double got = step->input_cross[l][a * fi + b];
        c->worst = fmax(c->worst, fabs(got - want) / fmax(1.0, fabs(want)));
      }
  }
  return 0;
}

static void check_cross(gboolean conv) {
  Net n = conv ? conv_net() : mlp_net();
  RefInputs ref = ref_inputs(&n, conv);
  GError *error = NULL;
  PrunusModel *original = prunus_model_clone(n.m, &error);
  g_assert_no_error(error);
  const PrunusLayer *l0 = &n.m->layers[conv ? 0 : 1];
  const int fan_in = l0->fan_in;
  for (int j = 0; j < fan_in; j++) n.m->params[l0->w_off + j] = 0.0f;
  n.m->params[l0->b_off] = 0.0f;
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
  CrossCheck c = {.ref = &ref, .killed = conv ? 16 : 1};
  g_assert_true(prunus_calibrate_ref(n.m, original, &vs, n.d, &norm,
                                     PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_INPUT_CROSS, 3, 2,
                                     CALIB_SEED, -1, check_cross_step, &c));
  g_assert_cmpint(c.n_cross, ==, 1);
  g_test_message("%s cross products: max relative difference %.3e", conv ? "conv" : "dense",
                 c.worst);
  g_assert_cmpfloat(c.worst, <=, 1e-6);
  prunus_view_clear(&vs);
  prunus_model_free(original);
  ref_inputs_free(&ref);
  net_free(&n);
}

static void test_inputs_cross(void) {
  check_cross(FALSE);
  check_cross(TRUE);
}

static void test_graph_view(void) {
  Net n = conv_net();
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  const PrunusModelView *v = &vs.view;
  g_assert_cmpint(v->n_nodes, ==, 4);
  static const char *const names[] = {"0", "1", "2", "3"};
  static const char *const types[] = {"conv2d", "relu", "flatten", "dense"};
  static const char *const inputs[] = {"input", "0", "1", "2"};
  static const int shapes[] = {2, 4, 4, 2, 4, 4, 32, 1, 1, 2, 1, 1};
  static const int kernel[] = {2, 0, 0, 0}, stride[] = {1, 0, 0, 0}, padding[] = {1, 0, 0, 0};
  for (int i = 0; i < 4; i++) {
    g_assert_cmpstr(v->node_name[i], ==, names[i]);
    g_assert_cmpstr(v->node_type[i], ==, types[i]);
    g_assert_cmpint(v->node_n_inputs[i], ==, 1);
    g_assert_cmpstr(v->node_inputs[i][0], ==, inputs[i]);
    for (int d = 0; d < 3; d++) g_assert_cmpint(v->node_shape[3 * i + d], ==, shapes[3 * i + d]);
    g_assert_cmpint(v->node_kernel[i], ==, kernel[i]);
    g_assert_cmpint(v->node_stride[i], ==, stride[i]);
    g_assert_cmpint(v->node_padding[i], ==, padding[i]);
  }
  g_assert_cmpint(v->n_layers, ==, 2);
  g_assert_cmpint(v->layer_node[0], ==, 0);
  g_assert_cmpint(v->layer_node[1], ==, 3);
  g_assert_cmpint(v->input_shape[0], ==, 2);
  g_assert_cmpint(v->input_shape[1], ==, 3);
  g_assert_cmpint(v->input_shape[2], ==, 3);
  prunus_view_clear(&vs);
  net_free(&n);
}

/* A view whose second layer has a type without an input form (as a graph model may
 * bring): refused for input needs, naming the layer and its type, unless excluded. */
static void test_check_needs(void) {
  float w[4] = {1, 2, 3, 4}, mask[4] = {1, 1, 1, 1};
  PrunusLayerView layers[2] = {
      {.name = "fc",
       .type = "dense",
       .n_units = 2,
       .fan_in = 2,
       .n_weights = 4,
       .prunable = 1,
       .weights = w,
       .mask = mask},
      {.name = "gate",
       .type = "gated",
       .n_units = 2,
       .fan_in = 2,
       .n_weights = 4,
       .prunable = 1,
       .weights = w,
       .mask = mask},
  };
  PrunusModelView v = {.n_layers = 2, .layers = layers};
  GError *error = NULL;
  g_assert_true(prunus_calib_check_needs(&v, PRUNUS_NEED_ACTIVATIONS, "crit", &error));
  g_assert_false(prunus_calib_check_needs(&v, PRUNUS_NEED_INPUT_GRAM, "crit", &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG);
  testutil_assert_error_contains(error,
                                 "crit needs layer inputs, but layer gate is a 'gated' layer",
                                 "exclude it from pruning with prune.layers", NULL);
  g_clear_error(&error);
  layers[1].prunable = 0;
  g_assert_true(
      prunus_calib_check_needs(&v, PRUNUS_NEED_INPUTS | PRUNUS_NEED_LAYERWISE, "crit", &error));
  g_assert_false(prunus_calib_check_needs(&v, 1u << 20, "crit", &error));
  testutil_assert_error_contains(error, "crit: needs() asks for 0x100000", "PRUNUS_HOST_REVISION",
                                 NULL);
  g_clear_error(&error);
}

// ----------------------------------------------------------------------------
// The host's linear algebra against plain loops

static void test_linalg(void) {
  enum { N = 7 };
  double a[N * N], u[N * N], inv[N * N];
  /* A = B^T B + I, B fixed */
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = i == j;
      for (int k = 0; k < N; k++) s += sin(1.1 * k + 0.7 * i) * sin(1.1 * k + 0.7 * j);
      a[i * N + j] = s;
    }
  memcpy(u, a, sizeof a);
  g_assert_cmpint(prunus_cholesky_upper(N, u), ==, 0);
  double worst = 0.0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      if (i > j) g_assert_cmpfloat(u[i * N + j], ==, 0.0);
      double s = 0.0; /* (U^T U)_ij */
      for (int k = 0; k < N; k++) s += u[k * N + i] * u[k * N + j];
      worst = fmax(worst, fabs(s - a[i * N + j]));
    }
  g_assert_cmpfloat(worst, <, 1e-12);
  memcpy(inv, a, sizeof a);
  g_assert_cmpint(prunus_spd_inverse(N, inv), ==, 0);
  worst = 0.0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = 0.0;
      for (int k = 0; k < N; k++) s += a[i * N + k] * inv[k * N + j];
      worst = fmax(worst, fabs(s - (i == j)));
      g_assert_cmpfloat(inv[i * N + j], ==, inv[j * N + i]);
    }
  g_assert_cmpfloat(worst, <, 1e-12);
  /* not positive definite at the third leading minor */
  double bad[9] = {1, 0, 0, 0, 1, 0, 0, 0, -1};
  g_assert_cmpint(prunus_cholesky_upper(3, bad), ==, 3);
}

// ----------------------------------------------------------------------------
// A plugin instance on the real host, with a plan request and set_weights recorded

typedef struct {
  PrunusPluginRegistry *reg;
  PrunusConfig *cfg;
  char *dir;
  const PrunusModelView *view;
  PrunusHost *host;
  const PrunusPluginDesc *desc;
  void *state;
  PrunusPlanRequest req;
  double amount[2], cap[2];
  int set_calls, set_layer;
  float set_w[64]; /* the last set_weights() */
} Run;

static const PrunusModelView *run_model(void *user) { return ((Run *)user)->view; }
static const PrunusPlanRequest *run_request(void *user) { return &((Run *)user)->req; }

static gboolean run_set_weights(void *user, int layer, const float *w, GError **error) {
  Run *r = user;
  (void)error;
  const PrunusLayerView *l = &r->view->layers[layer];
  g_assert_cmpuint(l->n_weights, <=, G_N_ELEMENTS(r->set_w));
  memcpy(r->set_w, w, sizeof(float) * l->n_weights);
  r->set_layer = layer;
  r->set_calls++;
  return TRUE;
}

/* Layer scope at amount for every layer; no pattern unless set. */
static void run_request_layer(Run *r, double amount) {
  r->amount[0] = r->amount[1] = amount;
  r->cap[0] = r->cap[1] = 1.0;
  r->req = (PrunusPlanRequest){.scope = PRUNUS_SCOPE_LAYER,
                               .layer_amount = r->amount,
                               .amount = amount,
                               .max_sparsity = r->cap,
                               .round = 1,
                               .rounds = 1,
                               .target = amount,
                               .layer = -1};
}

/* `g = { <group> };` instantiated as a plugin of kind on view, the request in layer
 * scope at amount (global: scope global); r->host NULL (and error) when create() or
 * the unread-key check refuses it. */
static Run *run_new(PrunusPluginKind kind, const char *group, const PrunusModelView *view,
                    double amount, gboolean global, GError **error) {
  Run *r = g_new0(Run, 1);
  r->dir = testutil_mkdtemp();
  r->view = view;
  run_request_layer(r, amount);
  if (global) r->req.scope = PRUNUS_SCOPE_GLOBAL;
  char *text = g_strdup_printf("g = { %s };\n", group);
  char *path = testutil_write_file(r->dir, "g.cfg", text, strlen(text));
  GError *local = NULL;
  r->cfg = prunus_config_load(path, &local);
  g_assert_no_error(local);
  g_free(path), g_free(text);
  config_setting_t *g =
      prunus_config_get_group(r->cfg, prunus_config_root(r->cfg), "g", TRUE, &local);
  g_assert_no_error(local);
  const char *name = NULL;
  g_assert_true(prunus_config_get_string(r->cfg, g, "plugin", TRUE, NULL, &name, &local));
  r->reg = prunus_plugin_registry_new(NULL);
  const PrunusPluginEntry *e = prunus_plugin_registry_find(r->reg, kind, name, "g", &local);
  g_assert_no_error(local);
  PrunusHostCallbacks cb = {
      .user = r, .model = run_model, .plan_request = run_request, .set_weights = run_set_weights};
  r->host = prunus_host_instantiate(e, r->cfg, g, "g", 7, &cb, error);
  if (r->host && !prunus_config_check_unread(r->cfg, error))
    g_clear_pointer(&r->host, prunus_host_free);
  if (r->host) {
    r->desc = e->desc;
    r->state = prunus_host_state(r->host);
  }
  return r;
}

static Run *run_ok(PrunusPluginKind kind, const char *group, const PrunusModelView *view,
                   double amount) {
  GError *error = NULL;
  Run *r = run_new(kind, group, view, amount, FALSE, &error);
  g_assert_no_error(error);
  return r;
}

static void run_free(Run *r) {
  prunus_host_free(r->host);
  prunus_plugin_registry_free(r->reg);
  prunus_config_free(r->cfg);
  testutil_rmtree(r->dir);
  g_free(r->dir);
  g_free(r);
}

/* The plugin's last failure as a message. */
static char *run_failure(Run *r) {
  GError *error = NULL;
  prunus_host_set_failure(r->host, "call", &error);
  char *msg = g_strdup(error->message);
  g_error_free(error);
  return msg;
}

static int forward_step(void *user, const PrunusModelView *view, const PrunusCalibStep *step) {
  Run *r = user;
  return r->desc->criterion->observe(r->state, view, step);
}

/* Calibrate (layer -1 or one layer) with the criterion's needs, then score into w
 * (weight scores of both layers). */
static int run_score(Run *r, Net *n, PrunusViewSet *vs, int layer, float *w[2]) {
  const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
  uint32_t needs = r->desc->criterion->needs(r->state) & ~(uint32_t)PRUNUS_NEED_LAYERWISE;
  g_assert_true(
      prunus_calibrate(n->m, vs, n->d, &norm, needs, 3, 2, CALIB_SEED, layer, forward_step, r));
  PrunusScores scores = {.weight_scores = w, .layer = layer};
  return r->desc->criterion->score(r->state, &vs->view, &scores);
}

// ----------------------------------------------------------------------------
// obd: 1/2 F_ii w^2, with per-sample gradients derived by hand for the MLP

static void test_obd(void) {
  Net n = mlp_net();
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  /* F = mean over the 5 samples of g^2: softmax cross-entropy through relu by hand */
  double f1[12] = {0}, f2[6] = {0};
  for (int s = 0; s < N_SAMPLES; s++) {
    double x[4], h[3], z1[3], z2[2], p[2];
    sample_input(&n, s, x);
    for (int u = 0; u < 3; u++) {
      z1[u] = mlp_b1[u];
      for (int j = 0; j < 4; j++) z1[u] += mlp_w1[u * 4 + j] * x[j];
      h[u] = z1[u] > 0 ? z1[u] : 0;
    }
    for (int k = 0; k < 2; k++) {
      z2[k] = mlp_b2[k];
      for (int u = 0; u < 3; u++) z2[k] += mlp_w2[k * 3 + u] * h[u];
    }
    const double mx = fmax(z2[0], z2[1]), e0 = exp(z2[0] - mx), e1 = exp(z2[1] - mx);
    p[0] = e0 / (e0 + e1), p[1] = e1 / (e0 + e1);
    double d2[2] = {p[0] - (mlp_labels[s] == 0), p[1] - (mlp_labels[s] == 1)};
    for (int k = 0; k < 2; k++)
      for (int u = 0; u < 3; u++) f2[k * 3 + u] += pow(d2[k] * h[u], 2) / N_SAMPLES;
    for (int u = 0; u < 3; u++) {
      const double d1 = z1[u] > 0 ? d2[0] * mlp_w2[u] + d2[1] * mlp_w2[3 + u] : 0.0;
      for (int j = 0; j < 4; j++) f1[u * 4 + j] += pow(d1 * x[j], 2) / N_SAMPLES;
    }
  }
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION, "plugin = \"obd\";", &vs.view, 0.5);
  g_assert_cmpuint(r->desc->criterion->needs(r->state), ==, PRUNUS_NEED_LOSS_GRAD_SAMPLE);
  float s1[12], s2[6], *w[2] = {s1, s2};
  float u1[3], u2[2], *u[2] = {u1, u2};
  const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
  g_assert_true(prunus_calibrate(n.m, &vs, n.d, &norm, PRUNUS_NEED_LOSS_GRAD_SAMPLE, 3, 2,
                                 CALIB_SEED, -1, forward_step, r));
  PrunusScores scores = {.weight_scores = w, .unit_scores = u, .layer = -1};
  g_assert_cmpint(r->desc->criterion->score(r->state, &vs.view, &scores), ==, 0);
  for (int i = 0; i < 12; i++)
    assert_near(s1[i], 0.5 * f1[i] * mlp_w1[i] * mlp_w1[i], 1e-5, "obd layer 1");
  for (int i = 0; i < 6; i++)
    assert_near(s2[i], 0.5 * f2[i] * mlp_w2[i] * mlp_w2[i], 1e-5, "obd layer 3");
  for (int k = 0; k < 2; k++) {
    double sum = 0.0;
    for (int j = 0; j < 3; j++) sum += 0.5 * f2[k * 3 + j] * mlp_w2[k * 3 + j] * mlp_w2[k * 3 + j];
    assert_near(u2[k], sum, 1e-5, "obd unit score");
  }
  /* a hand check of one value: weight (0, 0) of layer 3 */
  g_test_message("obd: layer 3 weight 0: F = %.6g, score %.6g", f2[0], s2[0]);
  run_free(r);
  prunus_view_clear(&vs);
  net_free(&n);
}

// ----------------------------------------------------------------------------
// wanda: |W_ij| ||X_j||_2, per layer or per output row

static void check_wanda_layer(gboolean conv) {
  Net n = conv ? conv_net() : mlp_net();
  RefInputs ref = ref_inputs(&n, conv);
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION, "plugin = \"wanda\";", &vs.view, 0.5);
  /* one calibration pass by default (sequential = false) */
  g_assert_cmpuint(r->desc->criterion->needs(r->state), ==, PRUNUS_NEED_INPUT_SUMSQ);
  float s0[64], s1[64], *w[2] = {s0, s1};
  g_assert_cmpint(run_score(r, &n, &vs, -1, w), ==, 0);
  for (int l = 0; l < 2; l++) {
    const PrunusLayerView *v = &vs.layers[l];
    for (int u = 0; u < v->n_units; u++)
      for (int j = 0; j < v->fan_in; j++) {
        const size_t i = (size_t)u * v->fan_in + j;
        assert_near(w[l][i], fabs(v->weights[i]) * sqrt(ref_sumsq(&ref, l, j)), 1e-5, "wanda");
      }
  }
  run_free(r);
  prunus_view_clear(&vs);
  ref_inputs_free(&ref);
  net_free(&n);
}

static void test_wanda_layer(void) {
  check_wanda_layer(FALSE);
  check_wanda_layer(TRUE);
}

/* compare = row: each row loses its share of round(0.5 x alive) (split by cumulative
 * rounding over rows), its lowest |W| ||X||; layerwise calls score one layer. */
static void test_wanda_row(void) {
  Net n = conv_net();
  RefInputs ref = ref_inputs(&n, TRUE);
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION,
                  "plugin = \"wanda\"; compare = \"row\"; sequential = true;", &vs.view, 0.5);
  g_assert_cmpuint(r->desc->criterion->needs(r->state), ==,
                   PRUNUS_NEED_INPUT_SUMSQ | PRUNUS_NEED_LAYERWISE);
  r->amount[0] = 0.0, r->amount[1] = 0.4, r->req.layer = 1;
  float s0[64] = {0}, s1[64], *w[2] = {s0, s1};
  g_assert_cmpint(run_score(r, &n, &vs, 1, w), ==, 0);
  for (int i = 0; i < 16; i++) g_assert_cmpfloat(s0[i], ==, 0.0f); /* not this layer's turn */
  /* layer 3: 2 rows x 32, round(0.4 x 64) = 26: rows take 13 and 13 */
  for (int u = 0; u < 2; u++) {
    double plain[32];
    int order[32];
    for (int j = 0; j < 32; j++) {
      plain[j] = fabs(conv_w3[u * 32 + j]) * sqrt(ref_sumsq(&ref, 1, j));
      order[j] = j;
    }
    for (int a = 0; a < 32; a++) /* selection sort by plain score */
      for (int b = a + 1; b < 32; b++)
        if (plain[order[b]] < plain[order[a]]) {
          int t = order[a];
          order[a] = order[b], order[b] = t;
        }
    for (int t = 0; t < 32; t++) {
      const float got = s1[u * 32 + order[t]];
      const double p = plain[order[t]], enc = p / (1.0 + p);
      assert_near(got, t < 13 ? enc : 2.0 + enc, 1e-6, "wanda row score");
    }
  }
  run_free(r);
  /* row comparison in global scope is refused in create() */
  GError *error = NULL;
  Run *bad = run_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"wanda\"; compare = \"row\";", &vs.view,
                     0.5, TRUE, &error);
  g_assert_null(bad->host);
  testutil_assert_error_contains(error,
                                 "compare = \"row\" removes the same share of every output "
                                 "row, which needs prune.schedule.scope = \"layer\"",
                                 NULL);
  g_clear_error(&error);
  run_free(bad);
  prunus_view_clear(&vs);
  ref_inputs_free(&ref);
  net_free(&n);
}

// ----------------------------------------------------------------------------
// sparsegpt against explicit OBS: for column j, the inverse of H restricted to the
// columns j.. (Gauss-Jordan), pruned weights' errors applied one column at a time

/* a (k, k) = a^-1 by Gauss-Jordan with partial pivoting. */
static void gj_inverse(int k, double *a) {
  double *aug = g_new0(double, (size_t)k * 2 * k);
  for (int i = 0; i < k; i++) {
    for (int j = 0; j < k; j++) aug[i * 2 * k + j] = a[i * k + j];
    aug[i * 2 * k + k + i] = 1.0;
  }
  for (int c = 0; c < k; c++) {
    int p = c;
    for (int i = c + 1; i < k; i++)
      if (fabs(aug[i * 2 * k + c]) > fabs(aug[p * 2 * k + c])) p = i;
    for (int j = 0; j < 2 * k; j++) {
      double t = aug[c * 2 * k + j];
      aug[c * 2 * k + j] = aug[p * 2 * k + j], aug[p * 2 * k + j] = t;
    }
    const double d = aug[c * 2 * k + c];
    for (int j = 0; j < 2 * k; j++) aug[c * 2 * k + j] /= d;
    for (int i = 0; i < k; i++) {
      if (i == c) continue;
      const double f = aug[i * 2 * k + c];
      for (int j = 0; j < 2 * k; j++) aug[i * 2 * k + j] -= f * aug[c * 2 * k + j];
    }
  }
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) a[i * k + j] = aug[i * 2 * k + k + j];
  g_free(aug);
}

typedef struct {
  int rows, n, blocksize;
  double damp;  /* fraction of the mean diagonal */
  size_t total; /* removals to pick (unstructured) */
  int pn, pm;   /* N:M, pm = 0: none */
} RefSg;

/* h (n, n) = H dampened as the plugin does: gram / samples, dead inputs' diagonal set
 * to 1, then damp x the mean diagonal added to it. (transfer full) */
static double *ref_damped_h(const RefSg *p, const double *gram, int64_t samples) {
  const int n = p->n;
  double *h = g_new(double, (size_t)n *n);
  double mean = 0.0;
  for (int i = 0; i < n * n; i++) h[i] = gram[i] / (double)samples;
  for (int j = 0; j < n; j++) {
    if (h[j * n + j] == 0.0) h[j * n + j] = 1.0;
    mean += h[j * n + j] / n;
  }
  for (int j = 0; j < n; j++) h[j * n + j] += p->damp * mean;
  return h;
}

/* hinv[j][c] (c >= j) = row j of (H_F)^-1, F = {j, .., n-1}, H = ref_damped_h. */
static double *ref_hinv_rows(const RefSg *p, const double *gram, int64_t samples) {
  const int n = p->n;
  double *h = ref_damped_h(p, gram, samples), *rows = g_new0(double, (size_t)n *n);
  for (int j = 0; j < n; j++) {
    const int k = n - j;
    double *sub = g_new(double, (size_t)k *k);
    for (int a = 0; a < k; a++)
      for (int b = 0; b < k; b++) sub[a * k + b] = h[(j + a) * n + j + b];
    gj_inverse(k, sub);
    for (int c = j; c < n; c++) rows[j * n + c] = sub[c - j];
    g_free(sub);
  }
  g_free(h);
  return rows;
}

/* Sweep W (rows, n) column by column. With pick, choose removals into pruned at each
 * block start (the block's share of total, lowest w^2 / hinv_jj) or N:M group. */
static void ref_sweep(const RefSg *p, const double *hinv, double *W, uint8_t *pruned,
                      gboolean pick) {
  const int n = p->n, R = p->rows;
  size_t all = 0, before = 0;
  for (int i = 0; i < R * n; i++) all += !pruned[i];
  for (int j = 0; j < n; j++) {
    if (pick && p->pm == 0 && j % p->blocksize == 0) {
      const int j2 = MIN(j + p->blocksize, n);
      size_t k = 0;
      int *cand = g_new(int, R *(j2 - j));
      for (int r = 0; r < R; r++) /* flat index order, as the ties break */
        for (int c = j; c < j2; c++)
          if (!pruned[r * n + c]) cand[k++] = r * n + c;
      const size_t hi = (size_t)floor((double)p->total * (before + k) / all + 0.5 + 1e-9);
      const size_t lo = (size_t)floor((double)p->total * before / all + 0.5 + 1e-9);
      before += k;
      for (size_t t = 0; t < hi - lo; t++) { /* the lowest remaining, ties to the lower index */
        int best = -1;
        double bs = INFINITY;
        for (size_t q = 0; q < k; q++) {
          const int i = cand[q], c = i % n;
          if (pruned[i]) continue;
          const double s = W[i] * W[i] / hinv[c * n + c];
          if (s < bs) bs = s, best = i;
        }
        pruned[best] = 1;
      }
      g_free(cand);
    }
    if (pick && p->pm > 0 && j % p->pm == 0) {
      const int size = MIN(p->pm, n - j), keep = MIN(p->pn, size);
      for (int r = 0; r < R; r++) {
        int gone = 0;
        for (int c = j; c < j + size; c++) gone += pruned[r * n + c];
        for (int t = 0; t < size - keep - gone; t++) {
          int best = -1;
          double bs = INFINITY;
          for (int c = j; c < j + size; c++) {
            if (pruned[r * n + c]) continue;
            const double s = W[r * n + c] * W[r * n + c] / hinv[c * n + c];
            if (s < bs) bs = s, best = r * n + c;
          }
          pruned[best] = 1;
        }
      }
    }
    for (int r = 0; r < R; r++) {
      if (!pruned[r * n + j]) continue;
      const double e =
          W[r * n + j] / hinv[j * n + j]; /* OBS: delta = -w_j H^-1[j, :] / H^-1[j, j] */
      for (int c = j + 1; c < n; c++) W[r * n + c] -= e * hinv[j * n + c];
      W[r * n + j] = 0.0;
    }
  }
}

/* A one-layer view of (rows, n) weights w and mask. */
typedef struct {
  PrunusLayerView layer;
  PrunusModelView view;
} OneLayer;

static void one_layer(OneLayer *o, int rows, int n, const float *w, const float *mask) {
  o->layer = (PrunusLayerView){.name = "5",
                               .type = "dense",
                               .n_units = rows,
                               .fan_in = n,
                               .n_weights = (size_t)rows * n,
                               .positions = 1,
                               .prunable = 1,
                               .weights = w,
                               .mask = mask};
  o->view = (PrunusModelView){.n_layers = 1, .layers = &o->layer};
}

/* The calibration data of the dense test layer: 12 rows of 6 inputs, input 5 a copy of
 * input 4 (so X^T X is singular and only the dampening makes it invertible). */
static void sg_rows(double x[12][6]) {
  for (int i = 0; i < 12; i++) {
    for (int j = 0; j < 5; j++) x[i][j] = sin(0.37 * i * (j + 1) + j) + 0.2 * j;
    x[i][5] = x[i][4];
  }
}

static void sg_gram(double gram[36]) {
  double x[12][6];
  sg_rows(x);
  for (int a = 0; a < 6; a++)
    for (int b = 0; b < 6; b++) {
      gram[a * 6 + b] = 0.0;
      for (int i = 0; i < 12; i++) gram[a * 6 + b] += x[i][a] * x[i][b];
    }
}

static const float sg_w[18] = {0.9f, -0.2f, 0.45f, -0.7f, 0.12f, 0.3f,  -0.35f, 0.8f,  0.05f,
                               0.6f, -0.5f, 0.25f, 0.15f, -0.9f, 0.66f, 0.4f,   -0.1f, 0.55f};

/* Hand sparsegpt the one-layer view's 12 calibration rows reduced, as a pass for
 * layer (-1: the whole model): the Gram step, then the cross step (cross: X^T X0) when
 * given and the plugin asks for one; then score() into s. Without one the plugin
 * keeps the layer's own output, as with target = "current". */
static void sg_observe_score(Run *r, const OneLayer *o, int layer, const double *gram,
                             const double *cross, float *s) {
  const double *grams[1] = {gram}, *crosses[1] = {cross};
  const int64_t rows[1] = {12};
  PrunusCalibStep step = {.batch = 12,
                          .kind = PRUNUS_NEED_INPUT_GRAM,
                          .layer = layer,
                          .input_rows = rows,
                          .input_gram = grams};
  g_assert_cmpint(r->desc->criterion->observe(r->state, &o->view, &step), ==, 0);
  if (cross && (r->desc->criterion->needs(r->state) & PRUNUS_NEED_INPUT_CROSS)) {
    PrunusCalibStep cstep = {.batch = 12,
                             .kind = PRUNUS_NEED_INPUT_CROSS,
                             .layer = layer,
                             .input_rows = rows,
                             .input_cross = crosses};
    g_assert_cmpint(r->desc->criterion->observe(r->state, &o->view, &cstep), ==, 0);
  }
  float *sp[1] = {s};
  PrunusScores scores = {.weight_scores = sp, .layer = layer};
  g_assert_cmpint(r->desc->criterion->score(r->state, &o->view, &scores), ==, 0);
}

/* score() then update() of sparsegpt on the one-layer view against the reference:
 * the picked set (scores in [0, 1]) and the reconstructed weights. mask0 holds
 * weights pruned before the round. */
static void check_sparsegpt(const char *group, const RefSg *p, const float *mask0) {
  double gram[36];
  sg_gram(gram);
  float w[18], mask[18];
  memcpy(w, sg_w, sizeof w);
  memcpy(mask, mask0, sizeof mask);
  for (int i = 0; i < 18; i++) w[i] *= mask[i];
  OneLayer o;
  one_layer(&o, 3, 6, w, mask);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION, group, &o.view, 0.5);
  r->req.pattern_n = p->pn, r->req.pattern_m = p->pm;
  float s[18];
  sg_observe_score(r, &o, -1, gram, NULL, s);

  double *hinv = ref_hinv_rows(p, gram, 12), W[18];
  uint8_t pruned[18];
  for (int i = 0; i < 18; i++) W[i] = w[i], pruned[i] = mask[i] == 0.0f;
  ref_sweep(p, hinv, W, pruned, TRUE);
  GString *picked = g_string_new("");
  for (int i = 0; i < 18; i++) {
    if (mask[i] == 0.0f) continue;
    g_assert_cmpint(s[i] <= 1.0f, ==, pruned[i]); /* picked: [0, 1], kept: [2, 3] */
    if (pruned[i]) g_string_append_printf(picked, " %d", i);
  }
  g_test_message("sparsegpt picked:%s", picked->str);
  g_string_free(picked, TRUE);

  /* the plan takes exactly the picked weights: update() writes the sweep's result */
  for (int i = 0; i < 18; i++)
    if (pruned[i]) mask[i] = 0.0f, w[i] = 0.0f;
  g_assert_cmpint(r->desc->criterion->update(r->state, &o.view, 0), ==, 0);
  g_assert_cmpint(r->set_calls, ==, 1);
  double worst = 0.0;
  for (int i = 0; i < 18; i++) worst = fmax(worst, fabs(r->set_w[i] - W[i]));
  g_test_message("sparsegpt weights: max difference %.3e", worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(hinv);
  run_free(r);
}

static void test_sparsegpt_dense(void) {
  float mask[18];
  for (int i = 0; i < 18; i++) mask[i] = 1.0f;
  /* blocksize 4: blocks of columns 0-3 and 4-5; 9 of 18 removed */
  RefSg p = {.rows = 3, .n = 6, .blocksize = 4, .damp = 0.01, .total = 9};
  check_sparsegpt("plugin = \"sparsegpt\"; blocksize = 4; sequential = false;", &p, mask);
  /* weight 7 pruned before: 17 alive, round(0.5 x 17) = 9 more */
  mask[7] = 0.0f;
  check_sparsegpt("plugin = \"sparsegpt\"; blocksize = 4; sequential = false;", &p, mask);
  /* one block over all columns, heavier dampening */
  RefSg q = {.rows = 3, .n = 6, .blocksize = 6, .damp = 0.5, .total = 9};
  check_sparsegpt("plugin = \"sparsegpt\"; blocksize = 64; dampening = 0.5;", &q, mask);
}

static void test_sparsegpt_nm(void) {
  float mask[18];
  for (int i = 0; i < 18; i++) mask[i] = 1.0f;
  /* 2:4 over 6 columns: group 0-3 keeps 2, the short group 4-5 keeps both */
  RefSg p = {.rows = 3, .n = 6, .blocksize = 4, .damp = 0.01, .pn = 2, .pm = 4};
  check_sparsegpt("plugin = \"sparsegpt\"; blocksize = 4;", &p, mask);
  /* 1:3: two groups of 3, each keeps 1 */
  RefSg q = {.rows = 3, .n = 6, .blocksize = 2, .damp = 0.01, .pn = 1, .pm = 3};
  check_sparsegpt("plugin = \"sparsegpt\"; blocksize = 2;", &q, mask);
}

/* A plan other than the picked one (magnitude's): update() reconstructs for it. */
static void test_sparsegpt_other_mask(void) {
  double gram[36];
  sg_gram(gram);
  float w[18], mask[18];
  memcpy(w, sg_w, sizeof w);
  for (int i = 0; i < 18; i++) mask[i] = 1.0f;
  OneLayer o;
  one_layer(&o, 3, 6, w, mask);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION, "plugin = \"sparsegpt\"; blocksize = 4;", &o.view, 0.5);
  float s[18];
  sg_observe_score(r, &o, 0, gram, NULL, s);
  /* prune the 9 smallest |w| instead */
  const int small[9] = {2, 4, 5, 8, 9, 11, 12, 15, 16}; /* |w| <= 0.45 */
  for (int t = 0; t < 9; t++) mask[small[t]] = 0.0f;
  RefSg p = {.rows = 3, .n = 6, .blocksize = 4, .damp = 0.01};
  double *hinv = ref_hinv_rows(&p, gram, 12), W[18];
  uint8_t pruned[18];
  for (int i = 0; i < 18; i++) W[i] = sg_w[i], pruned[i] = mask[i] == 0.0f;
  ref_sweep(&p, hinv, W, pruned, FALSE);
  for (int i = 0; i < 18; i++) w[i] *= mask[i];
  g_assert_cmpint(r->desc->criterion->update(r->state, &o.view, 0), ==, 0);
  double worst = 0.0;
  for (int i = 0; i < 18; i++) worst = fmax(worst, fabs(r->set_w[i] - W[i]));
  g_test_message("sparsegpt, magnitude's mask: max difference %.3e", worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(hinv);
  run_free(r);
}

/* target = "original": the layer's inputs X moved away from X0, those the unpruned
 * network gave it (as if a layer before it had been pruned). The plugin must start
 * its sweep from W* = W C^T (G / rows + damp I)^-1 / rows, C = X^T X0 and G = X^T X
 * (computed here by Gauss-Jordan), then pick and reconstruct as for any W;
 * and its result must give X0 W^T from X more closely than target = "current" does. */
static void sg_rows0(double x0[12][6]) {
  sg_rows(x0);
  for (int i = 0; i < 12; i++)
    for (int j = 0; j < 6; j++)
      x0[i][j] = x0[i][j] * (1.0 + 0.3 * sin(i + 2.0 * j)) + 0.2 * cos(i * j);
}

/* sum over rows and outputs of (x0 . w_r - x . v_r)^2 */
static double sg_output_error(const float *w, const float *v) {
  double x[12][6], x0[12][6], e = 0.0;
  sg_rows(x), sg_rows0(x0);
  for (int i = 0; i < 12; i++)
    for (int r = 0; r < 3; r++) {
      double d = 0.0;
      for (int j = 0; j < 6; j++) d += x0[i][j] * w[r * 6 + j] - x[i][j] * v[r * 6 + j];
      e += d * d;
    }
  return e;
}

/* observe() the Gram and cross steps, score() at 50%, update() for the picked mask;
 * the survivors written go to out, the picks to picked. */
static void sg_run_target(const char *group, const double *gram, const double *cross, float *out,
                          uint8_t *picked) {
  float w[18], mask[18];
  memcpy(w, sg_w, sizeof w);
  for (int i = 0; i < 18; i++) mask[i] = 1.0f;
  OneLayer o;
  one_layer(&o, 3, 6, w, mask);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION, group, &o.view, 0.5);
  float s[18];
  sg_observe_score(r, &o, 0, gram, cross, s);
  for (int i = 0; i < 18; i++) {
    picked[i] = s[i] <= 1.0f;
    if (picked[i]) mask[i] = 0.0f, w[i] = 0.0f;
  }
  g_assert_cmpint(r->desc->criterion->update(r->state, &o.view, 0), ==, 0);
  g_assert_cmpint(r->set_calls, ==, 1);
  memcpy(out, r->set_w, sizeof(float) * 18);
  run_free(r);
}

/* The reference for target = "original": W* = W C^T (G / 12 + damp * mean diag I)^-1
 * / 12 (Gauss-Jordan), then the OBS sweep from W*; the plugin's picks and weights must
 * match it. */
static void check_sparsegpt_original(const double *gram, const double *cross, float *got) {
  RefSg p = {.rows = 3, .n = 6, .blocksize = 4, .damp = 0.01, .total = 9};
  double *hd = ref_damped_h(&p, gram, 12);
  gj_inverse(6, hd);
  double W[18];
  for (int r = 0; r < 3; r++)
    for (int k = 0; k < 6; k++) {
      double d = 0.0;
      for (int j = 0; j < 6; j++)
        for (int i = 0; i < 6; i++) d += sg_w[r * 6 + i] * cross[j * 6 + i] / 12.0 * hd[j * 6 + k];
      W[r * 6 + k] = d;
    }
  double *hinv = ref_hinv_rows(&p, gram, 12);
  uint8_t pruned[18] = {0}, picked[18];
  ref_sweep(&p, hinv, W, pruned, TRUE);
  sg_run_target("plugin = \"sparsegpt\"; blocksize = 4; target = \"original\";", gram, cross, got,
                picked);
  double worst = 0.0;
  for (int i = 0; i < 18; i++) {
    g_assert_cmpint(picked[i], ==, pruned[i]);
    worst = fmax(worst, fabs(got[i] - W[i]));
  }
  g_test_message("sparsegpt target original: max difference %.3e", worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(hinv), g_free(hd);
}

static void test_sparsegpt_original(void) {
  double x[12][6], x0[12][6], gram[36] = {0}, cross[36] = {0};
  sg_rows(x), sg_rows0(x0);
  for (int a = 0; a < 6; a++)
    for (int b = 0; b < 6; b++)
      for (int i = 0; i < 12; i++) {
        gram[a * 6 + b] += x[i][a] * x[i][b];
        cross[a * 6 + b] += x[i][a] * x0[i][b];
      }
  float got[18], cur[18];
  check_sparsegpt_original(gram, cross, got);

  /* what it is for: the original output, X0 W^T, is rebuilt more closely */
  uint8_t picked[18];
  sg_run_target("plugin = \"sparsegpt\"; blocksize = 4; target = \"current\";", gram, cross, cur,
                picked);
  const double e_original = sg_output_error(sg_w, got), e_current = sg_output_error(sg_w, cur);
  g_test_message("||X0 W^T - X W'^T||^2: original %.4f, current %.4f", e_original, e_current);
  g_assert_cmpfloat(e_original, <, 0.8 * e_current);

  /* X0 = X: the same formula, W G (G + damp I)^-1, the dampening's shrinkage alone */
  check_sparsegpt_original(gram, gram, got);

  /* original needs the layerwise order */
  GError *error = NULL;
  OneLayer o;
  float w[18], mask[18];
  memcpy(w, sg_w, sizeof w);
  for (int i = 0; i < 18; i++) mask[i] = 1.0f;
  one_layer(&o, 3, 6, w, mask);
  Run *bad = run_new(PRUNUS_PLUGIN_CRITERION,
                     "plugin = \"sparsegpt\"; target = \"original\"; sequential = false;", &o.view,
                     0.5, FALSE, &error);
  g_assert_null(bad->host);
  testutil_assert_error_contains(error, "target = \"original\" rebuilds what the layers pruned",
                                 "sequential = true", NULL);
  g_clear_error(&error);
  run_free(bad);
}

/* Conv layer: the Gram of the im2col patches through the real calibration pass, and
 * the paper's sweep over them (target = "current"; the cross products of the same
 * pass are checked by /posttrain/inputs-cross). */
static void test_sparsegpt_conv(void) {
  Net n = conv_net();
  RefInputs ref = ref_inputs(&n, TRUE);
  PrunusViewSet vs;
  prunus_view_build(&vs, n.m, NULL);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION,
                  "plugin = \"sparsegpt\"; blocksize = 3; target = \"current\";", &vs.view, 0.5);
  r->amount[1] = 0.0, r->req.layer = 0;
  float s0[16], s1[64], *w[2] = {s0, s1};
  g_assert_cmpint(run_score(r, &n, &vs, 0, w), ==, 0);
  double gram[64];
  for (int a = 0; a < 8; a++)
    for (int b = 0; b < 8; b++) gram[a * 8 + b] = ref_gram(&ref, 0, a, b);
  RefSg p = {.rows = 2, .n = 8, .blocksize = 3, .damp = 0.01, .total = 8};
  double *hinv = ref_hinv_rows(&p, gram, 80), W[16];
  uint8_t pruned[16] = {0};
  for (int i = 0; i < 16; i++) W[i] = conv_w0[i];
  ref_sweep(&p, hinv, W, pruned, TRUE);
  for (int i = 0; i < 16; i++) g_assert_cmpint(s0[i] <= 1.0f, ==, pruned[i]);
  /* apply the picked plan to the model, then update() */
  float *mw = n.m->params + n.m->layers[0].w_off, *mm = n.m->mask + n.m->layers[0].w_off;
  for (int i = 0; i < 16; i++)
    if (pruned[i]) mw[i] = mm[i] = 0.0f;
  g_assert_cmpint(r->desc->criterion->update(r->state, &vs.view, 0), ==, 0);
  g_assert_cmpint(r->set_layer, ==, 0);
  double worst = 0.0;
  for (int i = 0; i < 16; i++) worst = fmax(worst, fabs(r->set_w[i] - W[i]));
  g_test_message("sparsegpt conv: max difference %.3e", worst);
  g_assert_cmpfloat(worst, <, 1e-5);
  g_free(hinv);
  run_free(r);
  prunus_view_clear(&vs);
  ref_inputs_free(&ref);
  net_free(&n);
}

/* An indefinite Gram: dampening 0 fails, the plugin raises it (1e-4 of the mean
 * diagonal) and goes on; a Gram holding NaN fails naming the layer. */
static void test_sparsegpt_ill_conditioned(void) {
  float w[4] = {0.5f, -0.2f, 0.3f, 0.8f}, mask[4] = {1, 1, 1, 1};
  OneLayer o;
  one_layer(&o, 2, 2, w, mask);
  Run *r = run_ok(PRUNUS_PLUGIN_CRITERION, "plugin = \"sparsegpt\"; dampening = 0;", &o.view, 0.5);
  double gram[4] = {1.0, 1.00001, 1.00001, 1.0}; /* eigenvalues 2.00001 and -1e-5 */
  const double *grams[1] = {gram};
  const int64_t rows[1] = {1};
  PrunusCalibStep step = {.batch = 1,
                          .kind = PRUNUS_NEED_INPUT_GRAM,
                          .layer = -1,
                          .input_rows = rows,
                          .input_gram = grams};
  float s[4], *sp[1] = {s};
  PrunusScores scores = {.weight_scores = sp, .layer = -1};
  g_assert_cmpint(r->desc->criterion->observe(r->state, &o.view, &step), ==, 0);
  g_assert_cmpint(r->desc->criterion->score(r->state, &o.view, &scores), ==, 0);
  int picked = 0;
  for (int i = 0; i < 4; i++) picked += s[i] <= 1.0f;
  g_assert_cmpint(picked, ==, 2);
  gram[3] = NAN;
  g_assert_cmpint(r->desc->criterion->observe(r->state, &o.view, &step), ==, 0);
  g_assert_cmpint(r->desc->criterion->score(r->state, &o.view, &scores), !=, 0);
  char *msg = run_failure(r);
  g_assert_nonnull(strstr(msg,
                          "layer 5: the Gram matrix of its inputs (2x2 over 1 rows) is not "
                          "positive definite even with dampening"));
  g_free(msg);
  run_free(r);
}

// ----------------------------------------------------------------------------
// nm: at most n alive of every m consecutive weights of a row

/* Plan on a one- or two-layer view; returns the removals as "layer:index ..." */
static char *nm_plan(Run *r, const PrunusModelView *v, float *const *scores, PrunusScope scope,
                     double amount) {
  uint8_t rm0[64] = {0}, rm1[64] = {0};
  uint8_t *rmw[2] = {rm0, rm1}, *rmu[2] = {NULL, NULL};
  r->req.scope = scope, r->req.amount = amount;
  r->amount[0] = r->amount[1] = scope == PRUNUS_SCOPE_LAYER ? amount : 1.0;
  PrunusScores s = {.weight_scores = scores, .layer = -1};
  PrunusPlan plan = {.remove_weights = rmw, .remove_units = rmu};
  g_assert_cmpint(r->desc->granularity->plan(r->state, v, &s, &r->req, &plan), ==, 0);
  GString *out = g_string_new("");
  for (int l = 0; l < v->n_layers; l++)
    for (size_t i = 0; i < v->layers[l].n_weights; i++)
      if (rmw[l][i]) g_string_append_printf(out, "%s%d:%zu", out->len ? " " : "", l, i);
  return g_string_free(out, FALSE);
}

static void test_nm(void) {
  /* layer 0: 2 x 8 (two groups of 4 per row); layer 1: 1 x 10 (groups 4, 4, 2) */
  float w0[16], w1[10], m0[16], m1[10];
  for (int i = 0; i < 16; i++) w0[i] = 1.0f, m0[i] = 1.0f;
  for (int i = 0; i < 10; i++) w1[i] = 1.0f, m1[i] = 1.0f;
  PrunusLayerView layers[2] = {
      {.name = "a",
       .type = "dense",
       .n_units = 2,
       .fan_in = 8,
       .n_weights = 16,
       .positions = 1,
       .prunable = 1,
       .weights = w0,
       .mask = m0},
      {.name = "b",
       .type = "dense",
       .n_units = 1,
       .fan_in = 10,
       .n_weights = 10,
       .positions = 1,
       .prunable = 1,
       .weights = w1,
       .mask = m1},
  };
  PrunusModelView v = {.n_layers = 2, .layers = layers};
  float s0[16] = {5, 1, 2, 8, 3, 9, 7, 4, 6, 2, 1, 3, 8, 7, 5, 9};
  float s1[10] = {4, 3, 2, 1, 1, 2, 3, 4, 0.5f, 0.1f};
  float *scores[2] = {s0, s1};
  Run *r = run_ok(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"nm\";", &v, 0.5);
  int n = 0, m = 0;
  r->desc->granularity->pattern(r->state, &n, &m);
  g_assert_cmpint(n, ==, 2);
  g_assert_cmpint(m, ==, 4);
  /* layer scope 0.5: layer a 8 of 16 = exactly 2 per group; layer b round(5) = 5 but
   * the groups allow 2 + 2 + 0 (the short group keeps min(2, 2)) */
  char *got = nm_plan(r, &v, scores, PRUNUS_SCOPE_LAYER, 0.5);
  g_assert_cmpstr(got, ==, "0:1 0:2 0:4 0:7 0:9 0:10 0:13 0:14 1:2 1:3 1:4 1:5");
  g_free(got);
  /* 0.25: the 4 lowest of layer a that fit (1, 1, 2, 2); layer b round(2.5) = 3 */
  got = nm_plan(r, &v, scores, PRUNUS_SCOPE_LAYER, 0.25);
  g_assert_cmpstr(got, ==, "0:1 0:2 0:9 0:10 1:2 1:3 1:4");
  g_free(got);
  /* a group already at 2 alive loses nothing more: layer a gets 6 of the 7 asked */
  m0[1] = m0[2] = 0.0f;
  got = nm_plan(r, &v, scores, PRUNUS_SCOPE_LAYER, 0.5);
  g_assert_cmpstr(got, ==, "0:4 0:7 0:9 0:10 0:13 0:14 1:2 1:3 1:4 1:5");
  g_free(got);
  m0[1] = m0[2] = 1.0f;
  run_free(r);
  /* 1:4 (n = 1, m = 4), global scope at 0.75 of 26: 20 asked, the groups allow 19:
   * all but the highest of each group of 4, the lower of the short pair */
  r = run_ok(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"nm\"; n = 1;", &v, 0.5);
  got = nm_plan(r, &v, scores, PRUNUS_SCOPE_GLOBAL, 0.75);
  g_assert_cmpstr(got, ==,
                  "0:0 0:1 0:2 0:4 0:6 0:7 0:9 0:10 0:11 0:12 0:13 0:14 1:1 1:2 1:3 1:4 1:5 1:6 "
                  "1:9");
  g_free(got);
  run_free(r);
  /* n must stay below m */
  GError *error = NULL;
  r = run_new(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"nm\"; n = 4; m = 4;", &v, 0.5, FALSE, &error);
  g_assert_null(r->host);
  testutil_assert_error_contains(error, "key 'g.n' = 4 is out of range: must be in [1, 3]", NULL);
  g_clear_error(&error);
  run_free(r);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  if (!g_getenv("PRUNUS_PLUGIN_PATH"))
    g_error("PRUNUS_PLUGIN_PATH is not set (run through meson test)");
  g_test_add_func("/posttrain/inputs-dense", test_inputs_dense);
  g_test_add_func("/posttrain/inputs-conv", test_inputs_conv);
  g_test_add_func("/posttrain/inputs-cross", test_inputs_cross);
  g_test_add_func("/posttrain/graph-view", test_graph_view);
  g_test_add_func("/posttrain/check-needs", test_check_needs);
  g_test_add_func("/posttrain/linalg", test_linalg);
  g_test_add_func("/posttrain/obd", test_obd);
  g_test_add_func("/posttrain/wanda-layer", test_wanda_layer);
  g_test_add_func("/posttrain/wanda-row", test_wanda_row);
  g_test_add_func("/posttrain/sparsegpt-dense", test_sparsegpt_dense);
  g_test_add_func("/posttrain/sparsegpt-nm", test_sparsegpt_nm);
  g_test_add_func("/posttrain/sparsegpt-other-mask", test_sparsegpt_other_mask);
  g_test_add_func("/posttrain/sparsegpt-conv", test_sparsegpt_conv);
  g_test_add_func("/posttrain/sparsegpt-original", test_sparsegpt_original);
  g_test_add_func("/posttrain/sparsegpt-ill-conditioned", test_sparsegpt_ill_conditioned);
  g_test_add_func("/posttrain/nm", test_nm);
  g_test_add_func("/posttrain/recalibrate-bn", test_recalibrate_bn);
  return g_test_run();
}
