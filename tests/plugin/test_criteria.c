/* test_criteria.c: the criteria taylor, fisher, mas, apoz, activation-mean and
 * weight-norm run through the real host path (plugin loader, host instance with
 * settings from a config file, prunus_calibrate, score()) on tiny networks with
 * fixed weights and data, against references this test computes on its own from
 * per-sample forward/backward passes and hand-written forward loops; and the
 * channel granularity through the fake host. */
#include "calib.h"
#include "config.h"
#include "fakehost.h"
#include "plugin_host.h"
#include "plugin_loader.h"
#include "rng.h"
#include "testutil.h"
#include "train.h"

#include <dlfcn.h>
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
#define DENSE(n) \
  { .type = PRUNUS_LAYER_DENSE, .units = (n) }
#define CONV(ch, k) \
  { .type = PRUNUS_LAYER_CONV2D, .channels = (ch), .kernel = (k), .stride = 1 }
#define RELU \
  { .type = PRUNUS_LAYER_RELU }
#define FLATTEN \
  { .type = PRUNUS_LAYER_FLATTEN }

/* MLP: flatten, dense 3 ("1"), relu, dense 2 ("3") on a 1x1x4 input. Over the 5
 * samples hidden unit 0 is always on, units 1 and 2 on for 2 samples each. */
static const uint8_t mlp_images[N_SAMPLES * 4] = {200, 30,  90,  10, 15,  240, 60, 120, 100, 100,
                                                  5,   250, 255, 0,  180, 40,  70, 160, 220, 90};
static const uint8_t mlp_labels[N_SAMPLES] = {0, 1, 1, 0, 1};
static const float mlp_w1[3 * 4] = {0.5f, -0.3f, 0.8f, 0.1f, -0.6f, 0.9f,
                                    0.2f, -0.4f, 0.3f, 0.3f, -0.7f, 0.6f};
static const float mlp_b1[3] = {0.05f, 0.1f, -0.2f};
static const float mlp_w2[2 * 3] = {0.7f, -0.5f, 0.4f, -0.3f, 0.8f, 0.6f};
static const float mlp_b2[2] = {0.0f, 0.1f};
#define MLP_MASKED 6 /* weight (1, 2) of layer "1" is pruned */

/* Conv net: conv 2x2 with 2 channels ("0", 3x3 -> 2x2, 4 positions), relu,
 * flatten, dense 2 ("3"). The weights make channels active at only some
 * positions, so the apoz and frequency forms differ. */
static const uint8_t conv_images[N_SAMPLES * 9] = {
    10,  200, 30,  90, 250, 60,  120, 15,  180, 240, 20,  70, 5,   160, 220,
    90,  35,  130, 60, 60,  200, 210, 10,  100, 30,  250, 80, 170, 90,  10,
    140, 30,  225, 80, 190, 5,   50,  110, 250, 20,  180, 60, 235, 15,  140};
static const uint8_t conv_labels[N_SAMPLES] = {1, 0, 0, 1, 1};
static const float conv_w0[2 * 4] = {0.5f, -0.4f, 0.3f, 0.2f, -0.3f, 0.6f, 0.4f, -0.5f};
static const float conv_b0[2] = {-0.1f, 0.05f};
static const float conv_w3[2 * 8] = {0.2f,  -0.1f, 0.4f, 0.3f, -0.2f, 0.5f,  0.1f, -0.3f,
                                     -0.4f, 0.3f,  0.1f, 0.2f, 0.6f,  -0.2f, 0.3f, 0.1f};
static const float conv_b3[2] = {0.1f, -0.05f};

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
  PrunusArch a = ARCH(1, 1, 4, FLATTEN, DENSE(3), RELU, DENSE(2));
  GError *error = NULL;
  Net n = {.m = prunus_model_new(&a, 8, 0, &error), .n_in = 4};
  g_assert_no_error(error);
  set_layer(n.m, 1, mlp_w1, mlp_b1);
  set_layer(n.m, 3, mlp_w2, mlp_b2);
  n.m->mask[n.m->layers[1].w_off + MLP_MASKED] = 0.0f;
  prunus_model_apply_mask(n.m);
  n.d = prunus_dataset_new_from_data(N_SAMPLES, 1, 1, 4, 2, mlp_images, mlp_labels);
  return n;
}

static Net conv_net(void) {
  PrunusArch a = ARCH(1, 3, 3, CONV(2, 2), RELU, FLATTEN, DENSE(2));
  GError *error = NULL;
  Net n = {.m = prunus_model_new(&a, 8, 0, &error), .n_in = 9};
  g_assert_no_error(error);
  set_layer(n.m, 0, conv_w0, conv_b0);
  set_layer(n.m, 3, conv_w3, conv_b3);
  n.d = prunus_dataset_new_from_data(N_SAMPLES, 1, 3, 3, 2, conv_images, conv_labels);
  return n;
}

static void net_free(Net *n) {
  prunus_model_free(n->m);
  prunus_dataset_free(n->d);
}

/* The input of sample s as the host normalises it (PRUNUS_NORM_UNIT). */
static void sample_input(const Net *n, int s, float *x) {
  for (int j = 0; j < n->n_in; j++) x[j] = (float)(n->d->images[s * n->n_in + j] / 255.0);
}

/* The order the host draws calibration samples in (a seeded shuffle). */
static void calib_order(int *idx) {
  for (int i = 0; i < N_SAMPLES; i++) idx[i] = i;
  PrunusRng r;
  prunus_rng_seed(&r, prunus_seed_derive(CALIB_SEED, "calibration"));
  prunus_rng_shuffle(&r, idx, N_SAMPLES);
}

// ----------------------------------------------------------------------------
// References: per-sample weight gradients, one forward/backward per sample

#define MAX_PL 2 /* layers with parameters in both nets */

typedef struct {
  int nl;
  size_t n[MAX_PL];  /* weights per param layer */
  double *v[MAX_PL]; /* (n) */
} PerWeight;

static PerWeight per_weight_new(const PrunusModel *m) {
  PerWeight p = {0};
  for (int i = 0; i < m->n_layers; i++) {
    if (!m->layers[i].ops->has_params) continue;
    g_assert_cmpint(p.nl, <, MAX_PL);
    p.n[p.nl] = m->layers[i].w_len;
    p.v[p.nl] = g_new0(double, p.n[p.nl]);
    p.nl++;
  }
  return p;
}

static void per_weight_free(PerWeight *p) {
  for (int l = 0; l < p->nl; l++) g_free(p->v[l]);
}

/* g (per param layer, as floats) = dL/dw of sample s alone, or d||f(x)||^2/dw. */
static void sample_grad(const Net *n, int s, gboolean outnorm, PerWeight *g) {
  PrunusModel *m = n->m;
  float x[9], dl[2];
  sample_input(n, s, x);
  prunus_model_forward(m, x, 1);
  const float *logits = m->acts[m->n_layers];
  if (outnorm) {
    for (int k = 0; k < 2; k++) dl[k] = 2.0f * logits[k];
  } else {
    prunus_softmax_xent(logits, &n->d->labels[s], 1, 2, dl, NULL);
  }
  prunus_model_zero_grads(m);
  prunus_model_backward(m, dl, 1);
  int k = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    for (size_t j = 0; j < l->w_len; j++) g->v[k][j] = m->grads[l->w_off + j];
    k++;
  }
  prunus_model_zero_grads(m);
}

/* The weights of view layer k (as the host holds them: pruned ones are 0). */
static const float *param_weights(const PrunusModel *m, int k) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params && k-- == 0) return m->params + m->layers[i].w_off;
  g_assert_not_reached();
  return NULL;
}

static const float *param_mask(const PrunusModel *m, int k) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params && k-- == 0) return m->mask + m->layers[i].w_off;
  g_assert_not_reached();
  return NULL;
}

static int param_units(const PrunusModel *m, int k) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params && k-- == 0) return m->layers[i].out.c;
  g_assert_not_reached();
  return 0;
}

static int param_fan_in(const PrunusModel *m, int k) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params && k-- == 0) return m->layers[i].fan_in;
  g_assert_not_reached();
  return 0;
}

/* out[u] = the sum of w over unit u's alive weights (view layer k) */
static void unit_sum_alive(const PrunusModel *m, int k, const double *w, double *out) {
  const int units = param_units(m, k);
  const size_t fan_in = (size_t)param_fan_in(m, k);
  const float *mask = param_mask(m, k);
  for (int u = 0; u < units; u++) {
    out[u] = 0.0;
    for (size_t j = 0; j < fan_in; j++)
      if (mask[(size_t)u * fan_in + j] != 0.0f) out[u] += w[(size_t)u * fan_in + j];
  }
}

// ----------------------------------------------------------------------------
// The real host path: config -> registry -> instance -> calibrate -> score

typedef struct {
  PrunusPluginRegistry *reg;
  PrunusConfig *cfg;
  char *dir;
  PrunusViewSet vs;
  PrunusHost *host;
  const PrunusCriterionOps *ops;
  int steps;        /* observe() calls in the last pass */
  int batch_total;  /* samples behind them */
  float *w[MAX_PL]; /* weight scores of the last pass, NULL when not produced */
  float *u[MAX_PL]; /* unit scores */
} CritRun;

static const PrunusModelView *cb_model(void *user) {
  CritRun *r = user;
  return &r->vs.view;
}

static int observe_fwd(void *user, const PrunusModelView *view, const PrunusCalibStep *step) {
  CritRun *r = user;
  r->steps++;
  r->batch_total += step->batch;
  return r->ops->observe(prunus_host_state(r->host), view, step);
}

/* Load `criterion = { <group> };` from a temp file and instantiate its plugin.
 * Returns NULL with *error set when the host refuses it. */
static CritRun *crit_new(const char *group, PrunusModel *m, GError **error) {
  CritRun *r = g_new0(CritRun, 1);
  r->dir = testutil_mkdtemp();
  char *text = g_strdup_printf("criterion = { %s };\n", group);
  char *path = testutil_write_file(r->dir, "criterion.cfg", text, strlen(text));
  GError *local = NULL;
  r->cfg = prunus_config_load(path, &local);
  g_assert_no_error(local);
  g_free(path);
  g_free(text);
  config_setting_t *g =
      prunus_config_get_group(r->cfg, prunus_config_root(r->cfg), "criterion", TRUE, &local);
  g_assert_no_error(local);
  const char *name = NULL;
  g_assert_true(prunus_config_get_string(r->cfg, g, "plugin", TRUE, NULL, &name, &local));
  r->reg = prunus_plugin_registry_new(NULL);
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r->reg, PRUNUS_PLUGIN_CRITERION, name, "prune.criterion", &local);
  g_assert_no_error(local);
  g_assert_cmpstr(e->desc->name, ==, name);
  prunus_view_build(&r->vs, m, NULL);
  PrunusHostCallbacks cb = {.user = r, .model = cb_model};
  r->host = prunus_host_instantiate(e, r->cfg, g, "prune.criterion", 7, &cb, error);
  if (r->host) {
    r->ops = e->desc->criterion;
    /* the plugin read every key of its group */
    if (!prunus_config_check_unread(r->cfg, error)) {
      prunus_host_free(r->host);
      r->host = NULL;
    }
  }
  return r;
}

static void crit_free(CritRun *r) {
  for (int l = 0; l < MAX_PL; l++) g_free(r->w[l]), g_free(r->u[l]);
  prunus_host_free(r->host);
  prunus_view_clear(&r->vs);
  prunus_plugin_registry_free(r->reg);
  prunus_config_free(r->cfg);
  testutil_rmtree(r->dir);
  g_free(r->dir);
  g_free(r);
}

/* One round: calibrate over n_batches batches of batch samples, then score(). */
static void crit_pass(CritRun *r, PrunusModel *m, const PrunusDataset *d, int n_batches,
                      int batch) {
  void *state = prunus_host_state(r->host);
  const uint32_t needs = r->ops->needs(state) & ~(uint32_t)PRUNUS_NEED_WEIGHTS;
  const uint32_t produces = r->ops->produces(state);
  r->steps = r->batch_total = 0;
  if (needs) {
    const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
    g_assert_true(prunus_calibrate(m, &r->vs, d, &norm, needs, n_batches, batch, CALIB_SEED, -1,
                                   observe_fwd, r));
  }
  const int nl = r->vs.view.n_layers;
  g_assert_cmpint(nl, <=, MAX_PL);
  for (int l = 0; l < nl; l++) {
    g_clear_pointer(&r->w[l], g_free);
    g_clear_pointer(&r->u[l], g_free);
    if (produces & PRUNUS_SCORES_WEIGHT) r->w[l] = g_new0(float, r->vs.layers[l].n_weights);
    if (produces & PRUNUS_SCORES_UNIT) r->u[l] = g_new0(float, r->vs.layers[l].n_units);
  }
  PrunusScores scores = {.weight_scores = r->w, .unit_scores = r->u};
  g_assert_cmpint(r->ops->score(state, &r->vs.view, &scores), ==, 0);
}

static CritRun *crit_run(const char *group, const Net *n, int n_batches, int batch) {
  GError *error = NULL;
  CritRun *r = crit_new(group, n->m, &error);
  g_assert_no_error(error);
  crit_pass(r, n->m, n->d, n_batches, batch);
  return r;
}

/* max |got - want| / max(|want|, 1e-3 * max|want|) must stay below 1e-5 */
static void check_close(const float *got, const double *want, size_t n, const char *label) {
  double scale = 0.0, worst = 0.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  g_assert_cmpfloat(scale, >, 0.0);
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), 1e-3 * scale);
    worst = fmax(worst, isnan(d) ? INFINITY : d);
  }
  g_test_message("%s: max relative difference %.3e over %zu values", label, worst, n);
  if (worst > 1e-5) {
    for (size_t i = 0; i < n; i++)
      g_test_message("  %s[%zu]: got %.9g want %.9g", label, i, got[i], want[i]);
  }
  g_assert_cmpfloat(worst, <=, 1e-5);
}

// ----------------------------------------------------------------------------
// taylor

/* Expected: batches of the host's sample order; per batch the mean gradient g;
 * per weight mean over batches of |w g| (or (w g)^2), per unit the sum of the
 * alive per-weight scores (or the mean of (sum_i w_i g_i)^2). */
static void taylor_expected(const Net *n, int batch, gboolean squared, PerWeight *ew,
                            double eu[][4]) {
  int idx[N_SAMPLES];
  calib_order(idx);
  PerWeight g = per_weight_new(n->m), gb = per_weight_new(n->m);
  int n_batches = 0;
  for (int l = 0; l < ew->nl; l++)
    for (int u = 0; u < 4; u++) eu[l][u] = 0.0;
  for (int start = 0; start < N_SAMPLES; start += batch) {
    const int nb = MIN(batch, N_SAMPLES - start);
    for (int l = 0; l < gb.nl; l++) memset(gb.v[l], 0, sizeof(double) * gb.n[l]);
    for (int s = 0; s < nb; s++) {
      sample_grad(n, idx[start + s], FALSE, &g);
      for (int l = 0; l < g.nl; l++)
        for (size_t j = 0; j < g.n[l]; j++) gb.v[l][j] += g.v[l][j] / nb;
    }
    for (int l = 0; l < ew->nl; l++) {
      const float *w = param_weights(n->m, l);
      const float *mask = param_mask(n->m, l);
      const int units = param_units(n->m, l);
      const size_t fan_in = ew->n[l] / (size_t)units;
      for (int u = 0; u < units; u++) {
        double dot = 0.0;
        for (size_t k = 0; k < fan_in; k++) {
          const size_t j = (size_t)u * fan_in + k;
          const double wg = (double)w[j] * gb.v[l][j];
          ew->v[l][j] += squared ? wg * wg : fabs(wg);
          if (mask[j] != 0.0f) dot += wg;
        }
        eu[l][u] += dot * dot;
      }
    }
    n_batches++;
  }
  for (int l = 0; l < ew->nl; l++) {
    for (size_t j = 0; j < ew->n[l]; j++) ew->v[l][j] /= n_batches;
    for (int u = 0; u < 4; u++) eu[l][u] /= n_batches;
    if (!squared) unit_sum_alive(n->m, l, ew->v[l], eu[l]);
  }
  per_weight_free(&g);
  per_weight_free(&gb);
}

static void check_taylor(gboolean squared) {
  Net n = mlp_net();
  PerWeight ew = per_weight_new(n.m);
  double eu[MAX_PL][4];
  taylor_expected(&n, 2, squared, &ew, eu);
  CritRun *r =
      crit_run(squared ? "plugin = \"taylor\"; squared = true;" : "plugin = \"taylor\";", &n, 3, 2);
  g_assert_cmpuint(r->ops->needs(prunus_host_state(r->host)), ==, PRUNUS_NEED_LOSS_GRAD);
  g_assert_cmpuint(r->ops->produces(prunus_host_state(r->host)), ==,
                   PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT);
  g_assert_cmpint(r->steps, ==, 3); /* batches of 2, 2, 1 */
  g_assert_cmpint(r->batch_total, ==, N_SAMPLES);
  for (int l = 0; l < 2; l++) {
    check_close(r->w[l], ew.v[l], ew.n[l], "taylor weight scores");
    check_close(r->u[l], eu[l], (size_t)param_units(n.m, l), "taylor unit scores");
  }
  /* the pruned weight (w = 0) scores 0 */
  g_assert_cmpfloat(r->w[0][MLP_MASKED], ==, 0.0f);
  crit_free(r);
  per_weight_free(&ew);
  net_free(&n);
}

static void test_taylor(void) { check_taylor(FALSE); }
static void test_taylor_squared(void) { check_taylor(TRUE); }

// ----------------------------------------------------------------------------
// fisher and mas: means over samples of per-sample gradients

/* Over the first n_samples of the host's order: mean of g^2 (fisher) or |g| (mas). */
static void per_sample_expected(const Net *n, int n_samples, gboolean mas, PerWeight *ew,
                                double eu[][4]) {
  int idx[N_SAMPLES];
  calib_order(idx);
  PerWeight g = per_weight_new(n->m);
  for (int s = 0; s < n_samples; s++) {
    sample_grad(n, idx[s], mas, &g);
    for (int l = 0; l < g.nl; l++)
      for (size_t j = 0; j < g.n[l]; j++)
        ew->v[l][j] += (mas ? fabs(g.v[l][j]) : g.v[l][j] * g.v[l][j]) / n_samples;
  }
  for (int l = 0; l < ew->nl; l++) unit_sum_alive(n->m, l, ew->v[l], eu[l]);
  per_weight_free(&g);
}

static void check_per_sample(const char *name, gboolean mas, int n_batches, int batch) {
  Net n = mlp_net();
  const int n_samples = MIN(n_batches * batch, N_SAMPLES);
  PerWeight ew = per_weight_new(n.m);
  double eu[MAX_PL][4];
  per_sample_expected(&n, n_samples, mas, &ew, eu);
  char *group = g_strdup_printf("plugin = \"%s\";", name);
  CritRun *r = crit_run(group, &n, n_batches, batch);
  g_assert_cmpuint(r->ops->needs(prunus_host_state(r->host)), ==,
                   mas ? PRUNUS_NEED_OUTNORM_GRAD_SAMPLE : PRUNUS_NEED_LOSS_GRAD_SAMPLE);
  g_assert_cmpuint(r->ops->produces(prunus_host_state(r->host)), ==,
                   PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT);
  g_assert_cmpint(r->steps, ==, n_samples); /* one step per sample */
  g_assert_cmpint(r->batch_total, ==, n_samples);
  for (int l = 0; l < 2; l++) {
    check_close(r->w[l], ew.v[l], ew.n[l], name);
    check_close(r->u[l], eu[l], (size_t)param_units(n.m, l), name);
  }
  /* the pruned weight still has a gradient, but does not count towards its unit */
  g_assert_cmpfloat(r->w[0][MLP_MASKED], >, 0.0f);
  /* a second round on the same instance starts afresh (not twice the sums) */
  crit_pass(r, n.m, n.d, n_batches, batch);
  for (int l = 0; l < 2; l++) {
    check_close(r->w[l], ew.v[l], ew.n[l], name);
    check_close(r->u[l], eu[l], (size_t)param_units(n.m, l), name);
  }
  crit_free(r);
  g_free(group);
  per_weight_free(&ew);
  net_free(&n);
}

static void test_fisher(void) {
  check_per_sample("fisher", FALSE, 3, 2); /* all 5 samples */
  check_per_sample("fisher", FALSE, 1, 3); /* the first 3 of the host's order */
}

static void test_mas(void) {
  check_per_sample("mas", TRUE, 3, 2);
  check_per_sample("mas", TRUE, 1, 3);
}

// ----------------------------------------------------------------------------
// apoz and activation-mean: activations computed by hand

/* acts[k] (N_SAMPLES, units, positions) of the two param layers, after the ReLU
 * that follows them (the raw output for the last one), by plain loops. */
typedef struct {
  int units[MAX_PL], positions[MAX_PL];
  double a[MAX_PL][N_SAMPLES][3][4]; /* [layer][sample][unit][position] */
} Acts;

/* A value this close to 0 would make > 0 depend on rounding: keep the data clear of it. */
static double clear_of_zero(double z) {
  g_assert_cmpfloat(fabs(z), >, 1e-4);
  return z;
}

static Acts mlp_acts(const Net *n) {
  Acts a = {.units = {3, 2}, .positions = {1, 1}};
  double mlp_a[N_SAMPLES][3];
  for (int s = 0; s < N_SAMPLES; s++) {
    float x[4];
    sample_input(n, s, x);
    for (int u = 0; u < 3; u++) {
      double z = mlp_b1[u];
      for (int k = 0; k < 4; k++)
        if (u * 4 + k != MLP_MASKED) z += (double)mlp_w1[u * 4 + k] * x[k];
      mlp_a[s][u] = fmax(0.0, clear_of_zero(z));
      a.a[0][s][u][0] = mlp_a[s][u];
    }
    for (int o = 0; o < 2; o++) {
      double z = mlp_b2[o];
      for (int u = 0; u < 3; u++) z += (double)mlp_w2[o * 3 + u] * mlp_a[s][u];
      a.a[1][s][o][0] = clear_of_zero(z);
    }
  }
  return a;
}

static Acts conv_acts(const Net *n) {
  Acts a = {.units = {2, 2}, .positions = {4, 1}};
  for (int s = 0; s < N_SAMPLES; s++) {
    float x[9];
    sample_input(n, s, x);
    for (int c = 0; c < 2; c++)
      for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 2; ox++) {
          double z = conv_b0[c];
          for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
              z += (double)conv_w0[c * 4 + dy * 2 + dx] * x[(oy + dy) * 3 + ox + dx];
          a.a[0][s][c][oy * 2 + ox] = fmax(0.0, clear_of_zero(z));
        }
    for (int o = 0; o < 2; o++) {
      double z = conv_b3[o];
      for (int c = 0; c < 2; c++) /* flatten is channel-major: c * 4 + position */
        for (int p = 0; p < 4; p++) z += (double)conv_w3[o * 8 + c * 4 + p] * a.a[0][s][c][p];
      a.a[1][s][o][0] = clear_of_zero(z);
    }
  }
  return a;
}

/* form 0 = apoz (fraction of outputs > 0), 1 = frequency (fraction of samples
 * with any output > 0), 2 = mean |activation|. */
static void act_expected(const Acts *a, int form, double out[][4]) {
  for (int l = 0; l < MAX_PL; l++)
    for (int u = 0; u < a->units[l]; u++) {
      double acc = 0.0;
      for (int s = 0; s < N_SAMPLES; s++) {
        int on = 0;
        double abs_sum = 0.0;
        for (int p = 0; p < a->positions[l]; p++) {
          on += a->a[l][s][u][p] > 0.0;
          abs_sum += fabs(a->a[l][s][u][p]);
        }
        acc += form == 0 ? on : form == 1 ? (on > 0) : abs_sum;
      }
      out[l][u] = acc / (form == 1 ? N_SAMPLES : N_SAMPLES * a->positions[l]);
    }
}

static void check_act(const Net *n, const Acts *a, const char *group, int form) {
  double eu[MAX_PL][4];
  act_expected(a, form, eu);
  CritRun *r = crit_run(group, n, 3, 2);
  g_assert_cmpuint(r->ops->needs(prunus_host_state(r->host)), ==, PRUNUS_NEED_ACTIVATIONS);
  g_assert_cmpuint(r->ops->produces(prunus_host_state(r->host)), ==, PRUNUS_SCORES_UNIT);
  g_assert_cmpint(r->steps, ==, 3);
  g_assert_null(r->w[0]);
  for (int l = 0; l < 2; l++) check_close(r->u[l], eu[l], (size_t)a->units[l], group);
  crit_free(r);
}

static void test_apoz_dense(void) {
  Net n = mlp_net();
  Acts a = mlp_acts(&n);
  double e[MAX_PL][4];
  act_expected(&a, 0, e);
  /* hidden unit 0 always on, units 1 and 2 on for 2 of the 5 samples */
  g_assert_cmpfloat(e[0][0], ==, 1.0);
  g_assert_cmpfloat(e[0][1], ==, 0.4);
  g_assert_cmpfloat(e[0][2], ==, 0.4);
  check_act(&n, &a, "plugin = \"apoz\";", 0); /* the default form */
  check_act(&n, &a, "plugin = \"apoz\"; form = \"apoz\";", 0);
  /* dense layers: the per-sample frequency is the same thing */
  check_act(&n, &a, "plugin = \"apoz\"; form = \"frequency\";", 0);
  net_free(&n);
}

static void test_apoz_conv(void) {
  Net n = conv_net();
  Acts a = conv_acts(&n);
  double ea[MAX_PL][4], ef[MAX_PL][4];
  act_expected(&a, 0, ea);
  act_expected(&a, 1, ef);
  /* the data make the forms differ on the conv layer (4 positions) */
  int differ = 0;
  for (int c = 0; c < 2; c++) {
    g_assert_cmpfloat(ef[0][c], >=, ea[0][c]);
    differ += ef[0][c] != ea[0][c];
    g_assert_cmpfloat(ea[0][c], >, 0.0);
  }
  g_assert_cmpint(differ, >, 0);
  check_act(&n, &a, "plugin = \"apoz\";", 0);
  check_act(&n, &a, "plugin = \"apoz\"; form = \"frequency\";", 1);
  net_free(&n);
}

static void test_activation_mean(void) {
  Net n = mlp_net();
  Acts a = mlp_acts(&n);
  check_act(&n, &a, "plugin = \"activation-mean\";", 2);
  net_free(&n);
  n = conv_net();
  a = conv_acts(&n);
  check_act(&n, &a, "plugin = \"activation-mean\";", 2);
  net_free(&n);
}

// ----------------------------------------------------------------------------
// weight-norm

static void check_weight_norm(const Net *n, const char *group, gboolean l1) {
  CritRun *r = crit_run(group, n, 1, 1);
  g_assert_cmpuint(r->ops->needs(prunus_host_state(r->host)), ==, PRUNUS_NEED_WEIGHTS);
  g_assert_cmpuint(r->ops->produces(prunus_host_state(r->host)), ==, PRUNUS_SCORES_UNIT);
  g_assert_cmpint(r->steps, ==, 0); /* no calibration pass */
  for (int l = 0; l < 2; l++) {
    const int units = param_units(n->m, l);
    const float *w = param_weights(n->m, l), *mask = param_mask(n->m, l);
    const size_t fan_in = r->vs.layers[l].n_weights / (size_t)units;
    double e[4];
    for (int u = 0; u < units; u++) {
      double acc = 0.0;
      for (size_t k = 0; k < fan_in; k++) {
        const size_t j = (size_t)u * fan_in + k;
        if (mask[j] != 0.0f) acc += l1 ? fabs(w[j]) : (double)w[j] * w[j];
      }
      e[u] = l1 ? acc : sqrt(acc);
    }
    check_close(r->u[l], e, (size_t)units, group);
  }
  crit_free(r);
}

static void test_weight_norm(void) {
  Net n = mlp_net();
  /* the masked weight (1, 2) is left out: by hand, unit 1 l1 = 0.6 + 0.9 + 0.4 */
  CritRun *r = crit_run("plugin = \"weight-norm\"; norm = \"l1\";", &n, 1, 1);
  g_assert_cmpfloat_with_epsilon(r->u[0][1], 1.9, 1e-6);
  g_assert_cmpfloat_with_epsilon(r->u[0][0], 1.7, 1e-6);
  crit_free(r);
  r = crit_run("plugin = \"weight-norm\";", &n, 1, 1); /* l2 is the default */
  g_assert_cmpfloat_with_epsilon(r->u[0][1], sqrt(0.36 + 0.81 + 0.16), 1e-6);
  crit_free(r);
  check_weight_norm(&n, "plugin = \"weight-norm\"; norm = \"l1\";", TRUE);
  check_weight_norm(&n, "plugin = \"weight-norm\"; norm = \"l2\";", FALSE);
  net_free(&n);
  n = conv_net(); /* per filter */
  check_weight_norm(&n, "plugin = \"weight-norm\"; norm = \"l1\";", TRUE);
  check_weight_norm(&n, "plugin = \"weight-norm\";", FALSE);
  net_free(&n);
}

// ----------------------------------------------------------------------------
// Settings errors through the host

static void create_fails(const char *group, const char *needle1, const char *needle2) {
  Net n = mlp_net();
  GError *error = NULL;
  CritRun *r = crit_new(group, n.m, &error);
  g_assert_null(r->host);
  testutil_assert_error_contains(error, needle1, needle2, NULL);
  g_error_free(error);
  crit_free(r);
  net_free(&n);
}

static void test_bad_settings(void) {
  create_fails("plugin = \"taylor\"; squared = \"yes\";", "squared", NULL);
  create_fails("plugin = \"apoz\"; form = \"median\";", "form", "median");
  create_fails("plugin = \"weight-norm\"; norm = \"l3\";", "norm", "l3");
  /* a key no plugin reads */
  create_fails("plugin = \"fisher\"; samples = 3;", "samples", NULL);
  /* score() with nothing observed is refused, not zeros */
  Net n = mlp_net();
  GError *error = NULL;
  CritRun *r = crit_new("plugin = \"fisher\";", n.m, &error);
  g_assert_no_error(error);
  float w0[12], w1[6], u0[3], u1[2];
  float *w[] = {w0, w1}, *u[] = {u0, u1};
  PrunusScores scores = {.weight_scores = w, .unit_scores = u};
  g_assert_cmpint(r->ops->score(prunus_host_state(r->host), &r->vs.view, &scores), !=, 0);
  GError *failure = NULL;
  prunus_host_set_failure(r->host, "score() failed", &failure);
  testutil_assert_error_contains(failure, "fisher", "calibration", NULL);
  g_error_free(failure);
  crit_free(r);
  net_free(&n);
}

// ----------------------------------------------------------------------------
// Granularity: channel, through the fake host

/* Conv "0": 4 channels of 1x2x2 (fan_in 4); conv "3": 3 channels of 4x2x2
 * (fan_in 16: a 2x2 block per input channel); flatten to 3x2x2; dense "6": 4 units
 * of 12 inputs (a block of 4 columns per conv "3" channel); output "8": 2 x 4.
 * Unit scores: "0" = 4 1 3 2 (normalized 1.6 0.4 1.2 0.8), "3" = 10 30 20
 * (0.5 1.5 1.0), the dense "6" = 0.1 .. 0.4, lowest of all, never to be used. */
#define CN_LAYERS 4
#define CN_MAX_W 48

typedef struct {
  PrunusLayerView layers[CN_LAYERS];
  PrunusModelView view;
  float w[CN_LAYERS][CN_MAX_W], b[CN_LAYERS][4], mask[CN_LAYERS][CN_MAX_W];
  float ws[CN_LAYERS][CN_MAX_W], us[CN_LAYERS][4];
  uint8_t rw[CN_LAYERS][CN_MAX_W], ru[CN_LAYERS][4];
  float *ws_ptr[CN_LAYERS], *us_ptr[CN_LAYERS];
  uint8_t *rw_ptr[CN_LAYERS], *ru_ptr[CN_LAYERS];
} ConvView;

static void conv_view_init(ConvView *v, gboolean with_conv) {
  static const char *const names[] = {"0", "3", "6", "8"};
  static const int units[] = {4, 3, 4, 2}, fan_in[] = {4, 16, 12, 4}, positions[] = {9, 4, 1, 1};
  static const float scores[CN_LAYERS][4] = {{4, 1, 3, 2}, {10, 30, 20}, {0.1f, 0.2f, 0.3f, 0.4f}};
  memset(v, 0, sizeof *v);
  for (int l = 0; l < CN_LAYERS; l++) {
    for (int i = 0; i < CN_MAX_W; i++) v->mask[l][i] = 1.0f, v->w[l][i] = 0.1f * (float)(i % 7 + 1);
    memcpy(v->us[l], scores[l], sizeof scores[l]);
    const gboolean conv = with_conv && l < 2;
    v->layers[l] = (PrunusLayerView){.name = names[l],
                                     .type = conv ? "conv2d" : "dense",
                                     .index = atoi(names[l]),
                                     .n_units = units[l],
                                     .fan_in = fan_in[l],
                                     .n_weights = (size_t)units[l] * (size_t)fan_in[l],
                                     .positions = conv ? positions[l] : 1,
                                     .prunable = 1,
                                     .is_output = l == CN_LAYERS - 1,
                                     .weights = v->w[l],
                                     .bias = v->b[l],
                                     .mask = v->mask[l]};
    v->ws_ptr[l] = v->ws[l];
    v->us_ptr[l] = v->us[l];
    v->rw_ptr[l] = v->rw[l];
    v->ru_ptr[l] = v->ru[l];
  }
  v->view.n_layers = CN_LAYERS;
  v->view.layers = v->layers;
}

static char *cv_removed_units(const ConvView *v, int l) {
  GString *s = g_string_new(NULL);
  for (int u = 0; u < v->layers[l].n_units; u++)
    if (v->ru[l][u]) g_string_append_printf(s, "%s%d", s->len ? "," : "", u);
  return g_string_free(s, FALSE);
}

#define assert_units(v, l, expected)     \
  do {                                   \
    char *got_ = cv_removed_units(v, l); \
    g_assert_cmpstr(got_, ==, expected); \
    g_free(got_);                        \
  } while (0)

typedef struct {
  void *dl;
  const PrunusPluginDesc *desc;
  PrunusHost *h;
  void *state;
} Gran;

static Gran channel_new(const char *key, const char *value) {
  Gran g = {0};
  char *path = g_build_filename(g_getenv("PRUNUS_PLUGIN_PATH"), "prunus-channel.so", NULL);
  g.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!g.dl) g_error("dlopen %s: %s", path, dlerror());
  g_free(path);
  PrunusPluginDescribeFn describe = (PrunusPluginDescribeFn)dlsym(g.dl, PRUNUS_PLUGIN_ENTRY_SYMBOL);
  g_assert_nonnull(describe);
  g.desc = describe(0);
  g_assert_null(describe(1));
  g_assert_cmpuint(g.desc->abi_version, ==, PRUNUS_PLUGIN_ABI_VERSION);
  g_assert_cmpint(g.desc->kind, ==, PRUNUS_PLUGIN_GRANULARITY);
  g_assert_cmpstr(g.desc->name, ==, "channel");
  g.h = fakehost_new(7, FALSE);
  if (key) fakehost_set(g.h, key, value);
  return g;
}

static void channel_create_ok(Gran *g) {
  if (g->desc->create(g->h, fakehost_services(g->h), &g->state) != 0)
    g_error("channel create failed: %s", fakehost_error(g->h));
  g_assert_null(fakehost_unread_key(g->h));
}

static void channel_free(Gran *g) {
  if (g->desc->destroy && g->state) g->desc->destroy(g->state);
  fakehost_free(g->h);
  g_assert_cmpint(dlclose(g->dl), ==, 0);
}

static int channel_plan(Gran *g, ConvView *v, PrunusScope scope, double amount,
                        const double *layer_amount, const double *max_sparsity) {
  memset(v->rw, 0, sizeof v->rw);
  memset(v->ru, 0, sizeof v->ru);
  PrunusScores scores = {.weight_scores = v->ws_ptr, .unit_scores = v->us_ptr};
  PrunusPlan plan = {.remove_weights = v->rw_ptr, .remove_units = v->ru_ptr};
  const PrunusPlanRequest req = {
      .scope = scope, .layer_amount = layer_amount, .amount = amount, .max_sparsity = max_sparsity};
  fakehost_clear_error(g->h);
  return g->desc->granularity->plan(g->state, &v->view, &scores, &req, &plan);
}

static void test_channel_lowest(void) {
  Gran g = channel_new(NULL, NULL);
  channel_create_ok(&g);
  g_assert_cmpuint(g.desc->granularity->accepts(g.state), ==,
                   PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT);
  ConvView v;
  conv_view_init(&v, TRUE);
  const double la[] = {1, 1, 1, 1}, ms[] = {1, 1, 1, 1};
  /* 7 conv channels, round(0.5 * 7) = 4 lowest normalized: 0.4 (0:1) 0.5 (3:0)
   * 0.8 (0:3) 1.0 (3:2); the dense layer's lower scores are never looked at */
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_units(&v, 0, "1,3");
  assert_units(&v, 1, "0,2");
  assert_units(&v, 2, "");
  assert_units(&v, 3, "");
  for (int l = 0; l < CN_LAYERS; l++)
    for (int i = 0; i < CN_MAX_W; i++)
      g_assert_cmpint(v.rw[l][i], ==, 0); /* channels only, no single weights */
  /* layer scope asks for half of every layer, dense and output included */
  const double half[] = {0.5, 0.5, 0.5, 0.5};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_LAYER, 0, half, ms), ==, 0);
  assert_units(&v, 0, "1,3");
  assert_units(&v, 1, "0,2"); /* round(1.5) = 2 */
  assert_units(&v, 2, "");
  assert_units(&v, 3, "");
  /* a conv layer at rate 0 (excluded) keeps everything; the other ranks alone */
  const double only3[] = {0, 1, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.34, only3, ms), ==, 0);
  assert_units(&v, 0, "");
  assert_units(&v, 1, "0");
  channel_free(&g);
}

static void test_channel_caps(void) {
  Gran g = channel_new(NULL, NULL);
  channel_create_ok(&g);
  ConvView v;
  conv_view_init(&v, TRUE);
  const double la[] = {1, 1, 1, 1};
  /* "0" keeps >= 3 of 4 (cap 1 removal), "3" keeps >= 1 of 3 (cap 2): the 4th
   * removal finds no layer under its cap and is dropped */
  const double ms[] = {0.25, 0.67, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_units(&v, 0, "1");
  assert_units(&v, 1, "0,2");
  assert_units(&v, 2, "");
  /* layer scope, 75% of "0" capped at 25% */
  const double la2[] = {0.75, 0, 0, 0}, ms2[] = {0.25, 1, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_LAYER, 0, la2, ms2), ==, 0);
  assert_units(&v, 0, "1");
  assert_units(&v, 1, "");
  channel_free(&g);
}

static void test_channel_refuses_empty(void) {
  Gran g = channel_new(NULL, NULL);
  channel_create_ok(&g);
  ConvView v;
  conv_view_init(&v, TRUE);
  const double ms[] = {1, 1, 1, 1};
  /* every channel of "0" */
  const double all0[] = {1, 0, 0, 0};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_LAYER, 0, all0, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "layer 0"));
  g_assert_nonnull(strstr(fakehost_error(g.h), "refusing"));
  /* "0" capped at one removal pushes the global ranking into emptying "3" */
  const double la[] = {1, 1, 1, 1}, cap0[] = {0.25, 1, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.5, la, cap0), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "layer 3"));
  /* the dense "6" reads only channel 0 of "3" (its other columns pruned): removing
   * that channel would leave "6" with no alive weight */
  for (int u = 0; u < 4; u++)
    for (int k = 4; k < 12; k++) v.mask[2][u * 12 + k] = 0.0f;
  const double one3[] = {0, 0.34, 0, 0};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_LAYER, 0, one3, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "layer 6"));
  channel_free(&g);
}

/* check() (revision 6, before any data) and plan() (older hosts) both refuse a model
 * with no prunable conv2d layer. */
static int channel_check(Gran *g, ConvView *v) {
  const PrunusCheckInfo info = {.scope = PRUNUS_SCOPE_GLOBAL,
                                .rounds = 1,
                                .target = 0.5,
                                .accepts = PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT,
                                .criterion = "magnitude",
                                .granularity = "channel",
                                .retrain = "finetune"};
  fakehost_clear_error(g->h);
  g_assert_nonnull(g->desc->granularity->check);
  return g->desc->granularity->check(g->state, &v->view, &info);
}

static void test_channel_no_conv(void) {
  Gran g = channel_new(NULL, NULL);
  channel_create_ok(&g);
  ConvView v;
  conv_view_init(&v, TRUE);
  g_assert_cmpint(channel_check(&g, &v), ==, 0);
  conv_view_init(&v, FALSE); /* all dense */
  g_assert_cmpint(channel_check(&g, &v), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "no conv2d layer to prune: the model has none"));
  const double la[] = {1, 1, 1, 1}, ms[] = {1, 1, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "no conv2d layer to prune"));
  conv_view_init(&v, TRUE); /* conv layers, all excluded */
  v.layers[0].prunable = v.layers[1].prunable = 0;
  g_assert_cmpint(channel_check(&g, &v), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "excludes all 2 of them"));
  const double la0[] = {0, 0, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.5, la0, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "no conv2d layer to prune"));
  g_assert_nonnull(strstr(fakehost_error(g.h), "excludes"));
  channel_free(&g);
}

static void test_channel_settings(void) {
  /* normalize = false: raw scores, "0" (1 2 3 4) would lose all four: refused */
  Gran g = channel_new("normalize", "false");
  channel_create_ok(&g);
  ConvView v;
  conv_view_init(&v, TRUE);
  const double la[] = {1, 1, 1, 1}, ms[] = {1, 1, 1, 1};
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "layer 0"));
  g_assert_cmpint(channel_plan(&g, &v, PRUNUS_SCOPE_GLOBAL, 0.3, la, ms), ==, 0);
  assert_units(&v, 0, "1,3"); /* round(2.1) = 2: raw 1 and 2 */
  assert_units(&v, 1, "");
  channel_free(&g);
  g = channel_new("aggregate", "l3");
  g_assert_cmpint(g.desc->create(g.h, fakehost_services(g.h), &g.state), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(g.h), "aggregate"));
  g.state = NULL;
  channel_free(&g);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  if (!g_getenv("PRUNUS_PLUGIN_PATH"))
    g_error("PRUNUS_PLUGIN_PATH is not set (run through meson test)");
  g_test_add_func("/criteria/taylor", test_taylor);
  g_test_add_func("/criteria/taylor-squared", test_taylor_squared);
  g_test_add_func("/criteria/fisher", test_fisher);
  g_test_add_func("/criteria/mas", test_mas);
  g_test_add_func("/criteria/apoz-dense", test_apoz_dense);
  g_test_add_func("/criteria/apoz-conv", test_apoz_conv);
  g_test_add_func("/criteria/activation-mean", test_activation_mean);
  g_test_add_func("/criteria/weight-norm", test_weight_norm);
  g_test_add_func("/criteria/bad-settings", test_bad_settings);
  g_test_add_func("/granularity/channel/lowest", test_channel_lowest);
  g_test_add_func("/granularity/channel/caps", test_channel_caps);
  g_test_add_func("/granularity/channel/refuses-empty", test_channel_refuses_empty);
  g_test_add_func("/granularity/channel/no-conv", test_channel_no_conv);
  g_test_add_func("/granularity/channel/settings", test_channel_settings);
  return g_test_run();
}
