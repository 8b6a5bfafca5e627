/* test_structured.c: structured pruning of graphs through the plugin ABI (revision 4):
 * the channel groups of the view on ResNet-8; the channel granularity ranking whole
 * groups from weight-norm, taylor and bn-scale unit scores against references this test
 * computes from the members (per-layer normalised, summed / averaged / maxed), and from a
 * criterion that scores groups directly; bn-scale against hand-set scales; the L1
 * penalty on batchnorm scales (train.bn_l1) by hand and through prunus_train. */
#include "calib.h"
#include "config.h"
#include "gemm.h"
#include "groups.h"
#include "loss.h"
#include "optim.h"
#include "plugin_host.h"
#include "plugin_loader.h"
#include "rng.h"
#include "testutil.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CALIB_SEED 42u

/* ------------------------------------------------------------------------ */
/* models and data */

static PrunusModel *config_model(const char *file, int batch) {
  char *path = g_build_filename(PRUNUS_SOURCE_ROOT, "configs", file, NULL);
  PrunusModel *m = testutil_config_model(path, batch, 3);
  g_free(path);
  return m;
}

static int find_layer(const PrunusModel *m, const char *name) {
  for (int i = 0; i < m->n_layers; i++)
    if (!strcmp(m->layers[i].name, name)) return i;
  g_error("no layer %s", name);
}

/* The view index of model layer i. */
static int view_of(const PrunusViewSet *vs, int i) {
  for (int k = 0; k < vs->view.n_layers; k++)
    if (vs->layer_index[k] == i) return k;
  g_error("layer %d has no view", i);
}

/* n random c x side x side images, labels i % 10. */
static PrunusDataset *random_dataset(int n, int c, int side, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  size_t row = (size_t)c * side * side;
  uint8_t *img = g_new(uint8_t, n * row), *lab = g_new(uint8_t, n);
  for (int i = 0; i < n; i++) {
    lab[i] = (uint8_t)(i % 10);
    for (size_t j = 0; j < row; j++) img[i * row + j] = (uint8_t)prunus_rng_below(&r, 256);
  }
  PrunusDataset *d = prunus_dataset_new_from_data(n, c, side, side, 10, img, lab);
  g_free(img), g_free(lab);
  return d;
}

/* ------------------------------------------------------------------------ */
/* plugin instances through the real host */

typedef struct {
  PrunusPluginRegistry *reg;
  PrunusConfig *cfg;
  char *dir;
  PrunusHost *host;
  const PrunusPluginDesc *desc;
  const PrunusViewSet *vs;
} Inst;

static const PrunusModelView *cb_model(void *user) {
  const Inst *in = user;
  return &in->vs->view;
}

/* `slot = { text };` from a temp file, instantiated on vs; NULL host + *error when refused. */
static Inst *inst_new(PrunusPluginKind kind, const char *text, const PrunusViewSet *vs,
                      GError **error) {
  Inst *in = g_new0(Inst, 1);
  in->vs = vs;
  in->dir = testutil_mkdtemp();
  const char *slot = kind == PRUNUS_PLUGIN_CRITERION ? "criterion" : "granularity";
  char *body = g_strdup_printf("%s = { %s };\n", slot, text);
  char *path = testutil_write_file(in->dir, "slot.cfg", body, strlen(body));
  GError *local = NULL;
  in->cfg = prunus_config_load(path, &local);
  g_assert_no_error(local);
  config_setting_t *g =
      prunus_config_get_group(in->cfg, prunus_config_root(in->cfg), slot, TRUE, &local);
  g_assert_no_error(local);
  const char *name = NULL;
  g_assert_true(prunus_config_get_string(in->cfg, g, "plugin", TRUE, NULL, &name, &local));
  const char *dirs[] = {g_getenv("PRUNUS_TEST_GROUP_PLUGIN_DIR"), NULL};
  in->reg = prunus_plugin_registry_new(dirs);
  char *slot_name = g_strdup_printf("prune.%s", slot);
  const PrunusPluginEntry *e = prunus_plugin_registry_find(in->reg, kind, name, slot_name, &local);
  g_assert_no_error(local);
  in->desc = e->desc;
  PrunusHostCallbacks cb = {.user = in, .model = cb_model};
  in->host = prunus_host_instantiate(e, in->cfg, g, slot_name, 7, &cb, error);
  if (in->host && !prunus_config_check_unread(in->cfg, error))
    g_clear_pointer(&in->host, prunus_host_free);
  g_free(slot_name), g_free(path), g_free(body);
  return in;
}

static void inst_free(Inst *in) {
  if (in->host) prunus_host_free(in->host);
  prunus_plugin_registry_free(in->reg);
  prunus_config_free(in->cfg);
  testutil_rmtree(in->dir);
  g_free(in->dir);
  g_free(in);
}

/* Per view layer score and plan buffers. */
typedef struct {
  int nl;
  float **w, **u;
  float *group;
  uint8_t **rw, **ru;
} Bufs;

static Bufs bufs_new(const PrunusModelView *v, uint32_t produces) {
  Bufs b = {.nl = v->n_layers};
  b.w = g_new0(float *, b.nl), b.u = g_new0(float *, b.nl);
  b.rw = g_new0(uint8_t *, b.nl), b.ru = g_new0(uint8_t *, b.nl);
  for (int k = 0; k < b.nl; k++) {
    if (produces & PRUNUS_SCORES_WEIGHT) b.w[k] = g_new0(float, v->layers[k].n_weights);
    if (produces & PRUNUS_SCORES_UNIT) b.u[k] = g_new0(float, v->layers[k].n_units);
    b.rw[k] = g_new0(uint8_t, v->layers[k].n_weights);
    b.ru[k] = g_new0(uint8_t, v->layers[k].n_units);
  }
  if (produces & PRUNUS_SCORES_GROUP) b.group = g_new0(float, v->n_groups);
  return b;
}

static void bufs_free(Bufs *b) {
  for (int k = 0; k < b->nl; k++)
    g_free(b->w[k]), g_free(b->u[k]), g_free(b->rw[k]), g_free(b->ru[k]);
  g_free(b->w), g_free(b->u), g_free(b->rw), g_free(b->ru), g_free(b->group);
}

typedef struct {
  Inst *in;
  int steps;
} Observer;

static int observe(void *user, const PrunusModelView *view, const PrunusCalibStep *step) {
  Observer *o = user;
  o->steps++;
  return o->in->desc->criterion->observe(prunus_host_state(o->in->host), view, step);
}

/* Calibrate (n_batches of batch from d) and score into b. */
static void crit_score(Inst *c, PrunusModel *m, PrunusViewSet *vs, const PrunusDataset *d,
                       int n_batches, int batch, Bufs *b) {
  void *st = prunus_host_state(c->host);
  uint32_t needs = c->desc->criterion->needs(st) & ~(uint32_t)PRUNUS_NEED_WEIGHTS;
  if (needs) {
    const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
    Observer o = {c, 0};
    g_assert_true(
        prunus_calibrate(m, vs, d, &norm, needs, n_batches, batch, CALIB_SEED, -1, observe, &o));
    g_assert_cmpint(o.steps, >=, n_batches); /* per-sample needs: a step per sample */
  }
  PrunusScores scores = {
      .weight_scores = b->w, .unit_scores = b->u, .layer = -1, .group_scores = b->group};
  if (c->desc->criterion->score(st, &vs->view, &scores) != 0) {
    GError *e = NULL;
    prunus_host_set_failure(c->host, "score() failed", &e);
    g_error("%s", e->message);
  }
}

/* The granularity's plan: global scope removing k groups (layer_amount 1, max_sparsity
 * cap, or 1 when cap is NULL), or layer scope at rate for every layer when k < 0. */
static int gran_plan_req(Inst *g, const PrunusViewSet *vs, Bufs *b, int k, double rate,
                         const double *cap) {
  int nl = vs->view.n_layers;
  double *la = g_new(double, nl), *ms = g_new(double, nl);
  for (int l = 0; l < nl; l++) la[l] = k < 0 ? rate : 1.0, ms[l] = cap ? cap[l] : 1.0;
  for (int l = 0; l < nl; l++) {
    memset(b->rw[l], 0, vs->layers[l].n_weights);
    memset(b->ru[l], 0, (size_t)vs->layers[l].n_units);
  }
  PrunusScores scores = {.weight_scores = b->w[0] ? b->w : NULL,
                         .unit_scores = b->u[0] ? b->u : NULL,
                         .layer = -1,
                         .group_scores = b->group};
  PrunusPlan plan = {.remove_weights = b->rw, .remove_units = b->ru};
  PrunusPlanRequest req = {.scope = k < 0 ? PRUNUS_SCOPE_LAYER : PRUNUS_SCOPE_GLOBAL,
                           .layer_amount = la,
                           .amount = k < 0 ? rate : (double)k / vs->view.n_groups,
                           .max_sparsity = ms,
                           .round = 1,
                           .rounds = 1,
                           .layer = -1};
  int rc = g->desc->granularity->plan(prunus_host_state(g->host), &vs->view, &scores, &req, &plan);
  g_free(la), g_free(ms);
  return rc;
}

static int gran_plan(Inst *g, const PrunusViewSet *vs, Bufs *b, int k) {
  return gran_plan_req(g, vs, b, k, 1.0, NULL);
}

/* The groups a plan removes, as a sorted list "3,17,..."; every unit of each removed
 * group must be removed with it. (transfer full) */
static char *removed_groups(const PrunusModelView *v, const Bufs *b) {
  GString *s = g_string_new(NULL);
  for (int g = 0; g < v->n_groups; g++) {
    int n = 0;
    for (int i = 0; i < v->group_n_units[g]; i++)
      n += b->ru[v->group_unit_layer[g][i]][v->group_unit[g][i]];
    g_assert_true(n == 0 || n == v->group_n_units[g]); /* whole or not at all */
    if (n) g_string_append_printf(s, "%s%d", s->len ? "," : "", g);
  }
  for (int k = 0; k < b->nl; k++)
    for (int u = 0; u < v->layers[k].n_units; u++)
      if (b->ru[k][u]) g_assert_cmpint(v->unit_group[k][u], >=, 0);
  return g_string_free(s, FALSE);
}

/* The k lowest of score (n), ties to the lower index, as a sorted list. */
static int cmp_by_score(const void *a, const void *b, void *user) {
  const double *s = user;
  int x = *(const int *)a, y = *(const int *)b;
  if (s[x] != s[y]) return s[x] < s[y] ? -1 : 1;
  return (x > y) - (x < y);
}

static char *lowest(const double *score, int n, int k) {
  int *idx = g_new(int, n);
  for (int i = 0; i < n; i++) idx[i] = i;
  g_qsort_with_data(idx, n, sizeof *idx, cmp_by_score, (gpointer)score);
  uint8_t *take = g_new0(uint8_t, n);
  for (int i = 0; i < k; i++) take[idx[i]] = 1;
  GString *s = g_string_new(NULL);
  for (int i = 0; i < n; i++)
    if (take[i]) g_string_append_printf(s, "%s%d", s->len ? "," : "", i);
  g_free(take), g_free(idx);
  return g_string_free(s, FALSE);
}

/* Group scores from per-view-layer unit scores us[k] (double), each layer divided by its
 * mean |score|, then reduced over the group's members: 0 sum, 1 mean, 2 max. */
static double *ref_group_scores(const PrunusModelView *v, double *const *us, int reduce) {
  double *norm = g_new(double, v->n_layers);
  for (int k = 0; k < v->n_layers; k++) {
    double mean = 0.0;
    for (int u = 0; u < v->layers[k].n_units; u++) mean += fabs(us[k][u]);
    mean /= v->layers[k].n_units;
    norm[k] = mean > 0.0 ? mean : 1.0;
  }
  double *gs = g_new(double, v->n_groups);
  for (int g = 0; g < v->n_groups; g++) {
    double acc = reduce == 2 ? -INFINITY : 0.0;
    for (int i = 0; i < v->group_n_units[g]; i++) {
      int k = v->group_unit_layer[g][i];
      double s = us[k][v->group_unit[g][i]] / norm[k];
      acc = reduce == 2 ? fmax(acc, s) : acc + s;
    }
    gs[g] = reduce == 1 ? acc / v->group_n_units[g] : acc;
  }
  g_free(norm);
  return gs;
}

/* Plans of the channel granularity (group_aggregate = names[reduce]) at several k
 * against the reference ranking of the unit scores us. */
static void check_ranking(const PrunusViewSet *vs, Bufs *b, double *const *us, const char *label) {
  static const char *const names[] = {"sum", "mean", "max"};
  static const int ks[] = {1, 9, 40};
  for (int reduce = 0; reduce < 3; reduce++) {
    char *text = g_strdup_printf("plugin = \"channel\"; group_aggregate = \"%s\";", names[reduce]);
    GError *error = NULL;
    Inst *g = inst_new(PRUNUS_PLUGIN_GRANULARITY, text, vs, &error);
    g_assert_no_error(error);
    double *ref = ref_group_scores(&vs->view, us, reduce);
    for (size_t j = 0; j < G_N_ELEMENTS(ks); j++) {
      g_assert_cmpint(gran_plan(g, vs, b, ks[j]), ==, 0);
      char *got = removed_groups(&vs->view, b), *want = lowest(ref, vs->view.n_groups, ks[j]);
      g_test_message("%s, %s, %d groups: %s", label, names[reduce], ks[j], got);
      g_assert_cmpstr(got, ==, want);
      g_free(got), g_free(want);
    }
    g_free(ref);
    inst_free(g);
    g_free(text);
  }
}

/* Layer scope: each family (the groups of one set of layers) loses round(rate x its
 * groups), its lowest by the mean aggregate; a max_sparsity cap on one layer of a family
 * holds the whole family back in global scope. */
static void check_scope_and_caps(const PrunusViewSet *vs, Bufs *b, double *const *us,
                                 const PrunusModel *m) {
  const PrunusModelView *v = &vs->view;
  GError *error = NULL;
  Inst *g = inst_new(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"channel\";", vs, &error);
  g_assert_no_error(error);
  double *ref = ref_group_scores(v, us, 1);
  g_assert_cmpint(gran_plan_req(g, vs, b, -1, 0.25, NULL), ==, 0);
  /* families of ResNet-8 by their first unit's layer: 16, 16, 32, 32, 64, 64 groups */
  int fam_first[6], fam_n[6], n_fam = 0, removed = 0;
  for (int gr = 0; gr < v->n_groups; gr++) {
    int f = 0;
    while (f < n_fam && !(v->group_n_units[fam_first[f]] == v->group_n_units[gr] &&
                          !memcmp(v->group_unit_layer[fam_first[f]], v->group_unit_layer[gr],
                                  sizeof(int) * (size_t)v->group_n_units[gr])))
      f++;
    if (f == n_fam) {
      g_assert_cmpint(n_fam, <, 6);
      fam_first[n_fam] = gr, fam_n[n_fam++] = 0;
    }
    fam_n[f]++;
  }
  g_assert_cmpint(n_fam, ==, 6);
  char *got = removed_groups(v, b);
  for (int f = 0; f < n_fam; f++) {
    /* the family's lowest round(0.25 n) by the reference */
    double *fs = g_new(double, v->n_groups);
    for (int gr = 0; gr < v->n_groups; gr++) {
      gboolean in = v->group_n_units[gr] == v->group_n_units[fam_first[f]] &&
                    !memcmp(v->group_unit_layer[fam_first[f]], v->group_unit_layer[gr],
                            sizeof(int) * (size_t)v->group_n_units[gr]);
      fs[gr] = in ? ref[gr] : INFINITY;
    }
    char *want = lowest(fs, v->n_groups, fam_n[f] / 4);
    char **ids = g_strsplit(want, ",", -1);
    for (char **id = ids; *id && **id; id++) {
      char *needle = g_strdup_printf(",%s,", *id), *hay = g_strdup_printf(",%s,", got);
      if (!strstr(hay, needle)) g_error("layer scope: group %s of family %d not removed", *id, f);
      g_free(needle), g_free(hay);
      removed++;
    }
    g_strfreev(ids);
    g_free(want), g_free(fs);
  }
  g_assert_cmpint(removed, ==, 4 + 4 + 8 + 8 + 16 + 16);
  char **all = g_strsplit(got, ",", -1);
  g_assert_cmpint(g_strv_length(all), ==, (guint)removed);
  g_strfreev(all);
  g_free(got);
  /* global, 100 groups, but conv1 may lose at most 2 of its 16 channels: the stem's
   * residual family loses exactly 2, the lowest two of it */
  double *cap = g_new(double, v->n_layers);
  for (int l = 0; l < v->n_layers; l++) cap[l] = 1.0;
  cap[view_of(vs, find_layer(m, "conv1"))] = 0.125;
  g_assert_cmpint(gran_plan_req(g, vs, b, 100, 1.0, cap), ==, 0);
  int stem = 0, total = 0;
  for (int gr = 0; gr < v->n_groups; gr++) {
    int on = b->ru[v->group_unit_layer[gr][0]][v->group_unit[gr][0]];
    total += on;
    stem += on && gr < 16;
  }
  g_assert_cmpint(stem, ==, 2);
  g_assert_cmpint(total, ==, 100);
  g_free(cap);
  g_free(ref);
  inst_free(g);
}

/* ------------------------------------------------------------------------ */
/* the view */

static void test_view_groups(void) {
  PrunusModel *m = config_model("resnet8.cfg", 4);
  PrunusViewSet vs;
  prunus_view_build(&vs, m, NULL);
  const PrunusModelView *v = &vs.view;
  g_assert_cmpint(v->is_sequence, ==, 0);
  g_assert_cmpint(v->n_groups, ==, 224);
  int conv1 = view_of(&vs, find_layer(m, "conv1")),
      l1c2 = view_of(&vs, find_layer(m, "layer1.0.conv2")),
      l1c1 = view_of(&vs, find_layer(m, "layer1.0.conv1")),
      l2c1 = view_of(&vs, find_layer(m, "layer2.0.conv1")),
      l2sc = view_of(&vs, find_layer(m, "layer2.0.shortcut")),
      l3c2 = view_of(&vs, find_layer(m, "layer3.0.conv2")), fc = view_of(&vs, find_layer(m, "fc"));
  /* group 5: the stem's channel 5 and layer1.0.conv2's (the add) */
  g_assert_cmpint(v->group_n_units[5], ==, 2);
  g_assert_cmpint(v->group_unit_layer[5][0], ==, conv1);
  g_assert_cmpint(v->group_unit[5][0], ==, 5);
  g_assert_cmpint(v->group_unit_layer[5][1], ==, l1c2);
  g_assert_cmpint(v->group_unit[5][1], ==, 5);
  /* its columns: 9 per input channel of a 3x3 conv, 1 of the 1x1 projection */
  g_assert_cmpint(v->group_n_inputs[5], ==, 3);
  const int want_layer[] = {l1c1, l2c1, l2sc}, want_col[] = {45, 45, 5}, want_cols[] = {9, 9, 1};
  for (int i = 0; i < 3; i++) {
    g_assert_cmpint(v->group_input_layer[5][i], ==, want_layer[i]);
    g_assert_cmpint(v->group_input_column[5][i], ==, want_col[i]);
    g_assert_cmpint(v->group_input_columns[5][i], ==, want_cols[i]);
  }
  /* layer3's residual channel 60 goes into fc's column 60 */
  int g60 = v->unit_group[l3c2][60];
  g_assert_cmpint(v->group_input_layer[g60][0], ==, fc);
  g_assert_cmpint(v->group_input_column[g60][0], ==, 60);
  for (int u = 0; u < 10; u++) g_assert_cmpint(v->unit_group[fc][u], ==, -1);
  /* batchnorm: conv1's is node bn1, its scale and shift the model's */
  int bn1 = find_layer(m, "bn1");
  g_assert_cmpint(v->layer_norm_node[conv1], ==, bn1);
  g_assert_cmpint(v->layer_norm_node[fc], ==, -1);
  g_assert_true(v->node_norm_scale[bn1] == m->params + m->layers[bn1].b_off);
  g_assert_true(v->node_norm_shift[bn1] == m->params + m->layers[bn1].b_off + 16);
  g_assert_null(v->node_norm_scale[conv1]);
  /* a conv2d without bias (before its batchnorm) has none in the view; fc has its own */
  g_assert_true(m->layers[find_layer(m, "conv1")].spec.no_bias);
  g_assert_null(vs.layers[conv1].bias);
  g_assert_true(vs.layers[fc].bias == m->params + m->layers[find_layer(m, "fc")].b_off);
  prunus_view_clear(&vs);
  prunus_model_free(m);
  /* a sequence: one group per hidden unit */
  m = config_model("lenet5.cfg", 4);
  prunus_view_build(&vs, m, NULL);
  g_assert_cmpint(vs.view.is_sequence, ==, 1);
  g_assert_cmpint(vs.view.n_groups, ==, 6 + 16 + 120 + 84);
  prunus_view_clear(&vs);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* criteria aggregated over groups */

static void test_weight_norm_groups(void) {
  PrunusModel *m = config_model("resnet8.cfg", 4);
  PrunusViewSet vs;
  prunus_view_build(&vs, m, NULL);
  GError *error = NULL;
  Inst *c = inst_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"weight-norm\";", &vs, &error);
  g_assert_no_error(error);
  Bufs b = bufs_new(&vs.view, PRUNUS_SCORES_UNIT);
  crit_score(c, m, &vs, NULL, 0, 0, &b);
  /* the reference: each unit's l2 norm, computed here from the member's weights */
  double **us = g_new0(double *, vs.view.n_layers);
  double worst = 0.0;
  for (int k = 0; k < vs.view.n_layers; k++) {
    const PrunusLayerView *l = &vs.layers[k];
    us[k] = g_new(double, l->n_units);
    for (int u = 0; u < l->n_units; u++) {
      double acc = 0.0;
      for (int j = 0; j < l->fan_in; j++) acc += pow(l->weights[(size_t)u * l->fan_in + j], 2);
      us[k][u] = sqrt(acc);
      worst = fmax(worst, fabs(b.u[k][u] - us[k][u]) / us[k][u]);
    }
  }
  g_test_message("weight-norm unit scores: max relative difference %.3e", worst);
  g_assert_cmpfloat(worst, <, 1e-6);
  check_ranking(&vs, &b, us, "weight-norm");
  check_scope_and_caps(&vs, &b, us, m);
  for (int k = 0; k < vs.view.n_layers; k++) g_free(us[k]);
  g_free(us);
  bufs_free(&b);
  inst_free(c);
  prunus_view_clear(&vs);
  prunus_model_free(m);
}

static void test_taylor_groups(void) {
  const int n_batches = 2, batch = 6;
  PrunusModel *m = config_model("resnet8.cfg", batch);
  PrunusDataset *d = random_dataset(12, 1, 28, 9);
  PrunusViewSet vs;
  prunus_view_build(&vs, m, NULL);
  GError *error = NULL;
  Inst *c = inst_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"taylor\";", &vs, &error);
  g_assert_no_error(error);
  Bufs b = bufs_new(&vs.view, PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT);
  crit_score(c, m, &vs, d, n_batches, batch, &b);
  /* the reference: the same batches in the host's order, each unit the mean over batches
   * of sum |w g| over its weights */
  int nl = vs.view.n_layers, K = 10;
  double **us = g_new0(double *, nl);
  for (int k = 0; k < nl; k++) us[k] = g_new0(double, vs.layers[k].n_units);
  int idx[12];
  for (int i = 0; i < 12; i++) idx[i] = i;
  PrunusRng r;
  prunus_rng_seed(&r, prunus_seed_derive(CALIB_SEED, "calibration"));
  prunus_rng_shuffle(&r, idx, 12);
  const PrunusNorm norm = {.kind = PRUNUS_NORM_UNIT};
  float *x = g_new(float, batch * 784), *dl = g_new(float, batch *K);
  uint8_t y[6];
  for (int s = 0; s < n_batches; s++) {
    prunus_dataset_fill_batch(d, &norm, idx + s * batch, batch, x, y);
    prunus_model_forward(m, x, batch);
    prunus_softmax_xent(m->acts[m->n_layers], y, batch, K, dl, NULL);
    prunus_model_zero_grads(m);
    prunus_model_backward(m, dl, batch);
    for (int k = 0; k < nl; k++) {
      const PrunusLayer *l = &m->layers[vs.layer_index[k]];
      const float *w = m->params + l->w_off, *g = m->grads + l->w_off;
      size_t row = l->w_len / (size_t)l->out.c;
      for (int u = 0; u < l->out.c; u++)
        for (size_t j = 0; j < row; j++)
          us[k][u] += fabs((double)w[u * row + j] * g[u * row + j]) / n_batches;
    }
  }
  prunus_model_zero_grads(m);
  double worst = 0.0;
  for (int k = 0; k < nl; k++)
    for (int u = 0; u < vs.layers[k].n_units; u++)
      worst = fmax(worst, fabs(b.u[k][u] - us[k][u]) / fmax(us[k][u], 1e-12));
  g_test_message("taylor unit scores: max relative difference %.3e", worst);
  g_assert_cmpfloat(worst, <, 1e-4);
  check_ranking(&vs, &b, us, "taylor");
  for (int k = 0; k < nl; k++) g_free(us[k]);
  g_free(us), g_free(x), g_free(dl);
  bufs_free(&b);
  inst_free(c);
  prunus_view_clear(&vs);
  prunus_dataset_free(d);
  prunus_model_free(m);
}

/* fisher, apoz, activation-mean and mas on ResNet-8 through the real calibration pass:
 * the channel granularity removes exactly the k groups lowest by the mean of their
 * members' (layer-normalised) unit scores, whole. */
static void test_other_criteria_groups(void) {
  const int n_batches = 2, batch = 4;
  static const char *const crits[] = {"fisher", "apoz", "activation-mean", "mas"};
  PrunusDataset *d = random_dataset(8, 1, 28, 13);
  for (size_t c = 0; c < G_N_ELEMENTS(crits); c++) {
    PrunusModel *m = config_model("resnet8.cfg", batch);
    PrunusViewSet vs;
    prunus_view_build(&vs, m, NULL);
    char *text = g_strdup_printf("plugin = \"%s\";", crits[c]);
    GError *error = NULL;
    Inst *in = inst_new(PRUNUS_PLUGIN_CRITERION, text, &vs, &error);
    g_assert_no_error(error);
    uint32_t produces = in->desc->criterion->produces(prunus_host_state(in->host));
    Bufs b = bufs_new(&vs.view, produces | PRUNUS_SCORES_UNIT);
    crit_score(in, m, &vs, d, n_batches, batch, &b);
    double **us = g_new0(double *, vs.view.n_layers);
    for (int k = 0; k < vs.view.n_layers; k++) {
      us[k] = g_new(double, vs.layers[k].n_units);
      for (int u = 0; u < vs.layers[k].n_units; u++) us[k][u] = b.u[k][u];
    }
    Inst *g = inst_new(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"channel\";", &vs, &error);
    g_assert_no_error(error);
    double *ref = ref_group_scores(&vs.view, us, 1);
    g_assert_cmpint(gran_plan(g, &vs, &b, 20), ==, 0);
    char *got = removed_groups(&vs.view, &b), *want = lowest(ref, vs.view.n_groups, 20);
    g_test_message("%s, mean, 20 groups: %s", crits[c], got);
    g_assert_cmpstr(got, ==, want);
    g_free(got), g_free(want), g_free(ref);
    for (int k = 0; k < vs.view.n_layers; k++) g_free(us[k]);
    g_free(us);
    inst_free(g);
    bufs_free(&b);
    inst_free(in);
    g_free(text);
    prunus_view_clear(&vs);
    prunus_model_free(m);
  }
  prunus_dataset_free(d);
}

/* A criterion that scores groups: ranked as it scored them, no aggregation. */
static void test_group_scores(void) {
  PrunusModel *m = config_model("resnet8.cfg", 4);
  PrunusViewSet vs;
  prunus_view_build(&vs, m, NULL);
  GError *error = NULL;
  Inst *c = inst_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"group-score\";", &vs, &error);
  g_assert_no_error(error);
  Inst *g = inst_new(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"channel\";", &vs, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(g->desc->granularity->accepts(prunus_host_state(g->host)) & PRUNUS_SCORES_GROUP,
                   ==, PRUNUS_SCORES_GROUP);
  Bufs b = bufs_new(&vs.view, PRUNUS_SCORES_GROUP);
  crit_score(c, m, &vs, NULL, 0, 0, &b);
  /* scores (37 g) mod 224: 0 (g = 0), 1 (g = 109), 2 (g = 218), 3 (g = 103) */
  g_assert_cmpint(gran_plan(g, &vs, &b, 4), ==, 0);
  char *got = removed_groups(&vs.view, &b);
  g_assert_cmpstr(got, ==, "0,103,109,218");
  g_free(got);
  bufs_free(&b);
  inst_free(g), inst_free(c);
  prunus_view_clear(&vs);
  prunus_model_free(m);
}

/* round_to = 8 on ResNet-8's 224 groups (families: residual and inner channels of each
 * stage, 16 / 32 / 64 groups), scores (37 g) mod 224: every family keeps a multiple of 8
 * (at least 8), loses its own lowest-scored groups, and the plan removes within half a
 * chunk of what was asked; unrounded, the same request leaves odd counts. */
static void test_round_to(void) {
  PrunusModel *m = config_model("resnet8.cfg", 4);
  PrunusViewSet vs;
  prunus_view_build(&vs, m, NULL);
  const PrunusModelView *v = &vs.view;
  GError *error = NULL;
  Inst *c = inst_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"group-score\";", &vs, &error);
  g_assert_no_error(error);
  Inst *plain = inst_new(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"channel\";", &vs, &error);
  g_assert_no_error(error);
  Inst *g = inst_new(PRUNUS_PLUGIN_GRANULARITY, "plugin = \"channel\"; round_to = 8;", &vs, &error);
  g_assert_no_error(error);
  Bufs b = bufs_new(v, PRUNUS_SCORES_GROUP);
  crit_score(c, m, &vs, NULL, 0, 0, &b);
  int *family = g_new(int, v->n_groups); /* the lowest group with the same layers */
  for (int x = 0; x < v->n_groups; x++) {
    family[x] = x;
    for (int y = 0; y < x && family[x] == x; y++) {
      int same = v->group_n_units[x] == v->group_n_units[y];
      for (int i = 0; same && i < v->group_n_units[x]; i++)
        same = v->group_unit_layer[x][i] == v->group_unit_layer[y][i];
      if (same) family[x] = family[y];
    }
  }
  static const int ks[] = {20, 40, 100, 150};
  for (size_t j = 0; j < G_N_ELEMENTS(ks); j++) {
    g_assert_cmpint(gran_plan(plain, &vs, &b, ks[j]), ==, 0);
    int odd = 0; /* families the unrounded plan leaves at no multiple of 8 */
    int *size = g_new0(int, v->n_groups), *gone = g_new0(int, v->n_groups);
    uint8_t *removed = g_new0(uint8_t, v->n_groups);
    for (int pass = 0; pass < 2; pass++) {
      memset(size, 0, (size_t)v->n_groups * sizeof *size);
      memset(gone, 0, (size_t)v->n_groups * sizeof *gone);
      if (pass == 1) g_assert_cmpint(gran_plan(g, &vs, &b, ks[j]), ==, 0);
      char *list = removed_groups(v, &b); /* also: whole groups only */
      g_free(list);
      for (int x = 0; x < v->n_groups; x++) {
        removed[x] = b.ru[v->group_unit_layer[x][0]][v->group_unit[x][0]];
        size[family[x]]++;
        gone[family[x]] += removed[x];
      }
      int total = 0;
      for (int f = 0; f < v->n_groups; f++) {
        if (!size[f]) continue;
        total += gone[f];
        const int kept = size[f] - gone[f];
        if (pass == 0) {
          odd += kept % 8 != 0;
          continue;
        }
        g_test_message("k %d: family of group %d keeps %d of %d", ks[j], f, kept, size[f]);
        g_assert_cmpint(kept % 8, ==, 0);
        g_assert_cmpint(kept, >=, 8);
        for (int x = 0; x < v->n_groups; x++) /* a kept group never scores below a removed one */
          for (int y = 0; y < v->n_groups; y++)
            if (family[x] == f && family[y] == f && removed[x] && !removed[y])
              g_assert_cmpfloat(b.group[x], <, b.group[y]);
      }
      if (pass == 1) g_assert_cmpint(abs(total - ks[j]), <=, 4);
    }
    g_assert_cmpint(odd, >, 0);
    g_free(size), g_free(gone), g_free(removed);
  }
  g_free(family);
  bufs_free(&b);
  inst_free(g), inst_free(plain), inst_free(c);
  prunus_view_clear(&vs);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* bn-scale */

static void test_bn_scale(void) {
  PrunusModel *m = config_model("resnet8.cfg", 4);
  /* every scale 1 + c / 100 of its channel c, but for three groups by hand: the stem's
   * channel 5 (bn1 0.02, layer1.0.bn2 -0.01), layer2.0.conv1's 3 (0.001), layer3's
   * residual 60 (layer3.0.bn2 0.05, shortcut_bn -0.03) */
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type != PRUNUS_LAYER_BATCHNORM) continue;
    for (int ch = 0; ch < l->out.c; ch++) m->params[l->b_off + ch] = 1.0f + (float)ch / 100.0f;
  }
  struct {
    const char *bn;
    int c;
    float gamma;
  } set[] = {{"bn1", 5, 0.02f},
             {"layer1.0.bn2", 5, -0.01f},
             {"layer2.0.bn1", 3, 0.001f},
             {"layer3.0.bn2", 60, 0.05f},
             {"layer3.0.shortcut_bn", 60, -0.03f}};
  for (size_t j = 0; j < G_N_ELEMENTS(set); j++)
    m->params[m->layers[find_layer(m, set[j].bn)].b_off + set[j].c] = set[j].gamma;
  PrunusViewSet vs;
  prunus_view_build(&vs, m, NULL);
  GError *error = NULL;
  Inst *c = inst_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"bn-scale\";", &vs, &error);
  g_assert_no_error(error);
  const PrunusCheckInfo ok_info = {.accepts = PRUNUS_SCORES_UNIT, .criterion = "bn-scale"};
  g_assert_cmpint(c->desc->criterion->check(prunus_host_state(c->host), &vs.view, &ok_info), ==, 0);
  Bufs b = bufs_new(&vs.view, PRUNUS_SCORES_UNIT);
  crit_score(c, m, &vs, NULL, 0, 0, &b);
  int conv1 = view_of(&vs, find_layer(m, "conv1")),
      l1c2 = view_of(&vs, find_layer(m, "layer1.0.conv2")), fc = view_of(&vs, find_layer(m, "fc"));
  g_assert_cmpfloat(b.u[conv1][5], ==, 0.02f);
  g_assert_cmpfloat(b.u[l1c2][5], ==, 0.01f); /* |-0.01| */
  g_assert_cmpfloat(b.u[conv1][7], ==, 1.07f);
  for (int u = 0; u < 10; u++) g_assert_cmpfloat(b.u[fc][u], ==, 0.0f); /* the output */
  /* the three hand-set groups are the three lowest, whatever the aggregate */
  int g5 = vs.view.unit_group[conv1][5],
      g3 = vs.view.unit_group[view_of(&vs, find_layer(m, "layer2.0.conv1"))][3],
      g60 = vs.view.unit_group[view_of(&vs, find_layer(m, "layer3.0.conv2"))][60];
  char *want = g_strdup_printf("%d,%d,%d", g5, g3, g60);
  static const char *const aggs[] = {"sum", "mean", "max"};
  for (size_t a = 0; a < G_N_ELEMENTS(aggs); a++) {
    char *text = g_strdup_printf("plugin = \"channel\"; group_aggregate = \"%s\";", aggs[a]);
    Inst *g = inst_new(PRUNUS_PLUGIN_GRANULARITY, text, &vs, &error);
    g_assert_no_error(error);
    g_assert_cmpint(gran_plan(g, &vs, &b, 3), ==, 0);
    char *got = removed_groups(&vs.view, &b);
    g_assert_cmpstr(got, ==, want);
    g_free(got), g_free(text);
    inst_free(g);
  }
  g_free(want);
  bufs_free(&b);
  inst_free(c);
  prunus_view_clear(&vs);
  prunus_model_free(m);
  /* a prunable conv with no batchnorm after it */
  m = config_model("lenet5.cfg", 4);
  prunus_view_build(&vs, m, NULL);
  c = inst_new(PRUNUS_PLUGIN_CRITERION, "plugin = \"bn-scale\";", &vs, &error);
  g_assert_no_error(error);
  b = bufs_new(&vs.view, PRUNUS_SCORES_UNIT);
  PrunusScores scores = {.unit_scores = b.u, .layer = -1};
  g_assert_cmpint(c->desc->criterion->score(prunus_host_state(c->host), &vs.view, &scores), !=, 0);
  prunus_host_set_failure(c->host, "score() failed", &error);
  testutil_assert_error_contains(error, "bn-scale", "layer 0 (conv2d) has no batchnorm after it",
                                 "prune.layers", NULL);
  g_clear_error(&error);
  /* the same before any data, from check() (revision 6) */
  const PrunusCheckInfo info = {.accepts = PRUNUS_SCORES_UNIT, .criterion = "bn-scale"};
  g_assert_nonnull(c->desc->criterion->check);
  g_assert_cmpint(c->desc->criterion->check(prunus_host_state(c->host), &vs.view, &info), !=, 0);
  prunus_host_set_failure(c->host, "check() failed", &error);
  testutil_assert_error_contains(error, "bn-scale", "check() failed",
                                 "layer 0 (conv2d) has no batchnorm after it", NULL);
  g_clear_error(&error);
  bufs_free(&b);
  inst_free(c);
  prunus_view_clear(&vs);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* train.bn_l1 */

static PrunusArch bn_arch(void) {
  static PrunusLayerSpec layers[] = {
      {.type = PRUNUS_LAYER_CONV2D,
       .channels = 3,
       .kernel = 3,
       .stride = 1,
       .padding = 1,
       .no_bias = TRUE},
      {.type = PRUNUS_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-5f},
      {.type = PRUNUS_LAYER_RELU},
      {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 10}};
  return (PrunusArch){.input = {1, 4, 4}, .n_layers = G_N_ELEMENTS(layers), .layers = layers};
}

/* One plain SGD step (lr 1, no momentum, no decay) with zero loss gradients: only the
 * penalty moves the scales, by 0.1 towards 0; 0 stays 0; nothing else moves. */
static void test_bn_l1_by_hand(void) {
  PrunusArch a = bn_arch();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 2, 1, &error);
  g_assert_no_error(error);
  float *gamma = m->params + m->layers[1].b_off;
  gamma[0] = 0.5f, gamma[1] = -0.3f, gamma[2] = 0.0f;
  float *before = g_memdup2(m->params, sizeof(float) * m->n_params);
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 1.0, tc.momentum = 0.0, tc.weight_decay = 0.0, tc.bn_l1 = 0.1;
  prunus_model_zero_grads(m);
  prunus_optim_step(m, &tc, 1.0, 1);
  g_assert_cmpfloat(gamma[0], ==, 0.5f - 0.1f);
  g_assert_cmpfloat(gamma[1], ==, -0.3f + 0.1f);
  g_assert_cmpfloat(gamma[2], ==, 0.0f);
  for (size_t i = 0; i < m->n_params; i++)
    if (i < m->layers[1].b_off || i >= m->layers[1].b_off + 3)
      g_assert_cmpfloat(m->params[i], ==, before[i]);
  g_free(before);
  prunus_model_free(m);
}

/* The plain loop (whole-slab step) and prunus_train (per-layer updates) agree bit for bit
 * with the penalty on, and the penalty shrinks the scales. */
static void plain_train(PrunusModel *m, const PrunusTrainConfig *tc, const PrunusDataset *train,
                        const PrunusNorm *norm, uint64_t seed) {
  int K = prunus_model_n_classes(m), B = MIN(tc->batch, train->n);
  int steps = (train->n + B - 1) / B;
  uint8_t *y = g_new(uint8_t, B);
  float *dlogits = g_new(float, (size_t)B *K);
  int *order = g_new(int, train->n);
  for (int i = 0; i < train->n; i++) order[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "shuffle"));
  prunus_model_reserve_batch(m, B);
  prunus_model_set_training(m, TRUE);
  long step = 0;
  for (int epoch = 1; epoch <= tc->epochs; epoch++) {
    prunus_rng_shuffle(&rng, order, train->n);
    for (int s = 0; s < steps; s++) {
      int start = s * B, nb = MIN(B, train->n - start);
      prunus_dataset_fill_batch(train, norm, order + start, nb, m->acts[0], y);
      prunus_model_forward(m, m->acts[0], nb);
      prunus_softmax_xent(m->acts[m->n_layers], y, nb, K, dlogits, NULL);
      prunus_model_backward(m, dlogits, nb);
      prunus_optim_step(m, tc, prunus_lr_at(tc, (epoch - 1) + (double)s / steps), ++step);
    }
  }
  prunus_model_set_training(m, FALSE);
  g_free(order), g_free(dlogits), g_free(y);
}

static double sum_abs_gamma(const PrunusModel *m) {
  const float *gamma = m->params + m->layers[1].b_off;
  return fabs(gamma[0]) + fabs(gamma[1]) + fabs(gamma[2]);
}

static void test_bn_l1_training(void) {
  PrunusArch a = bn_arch();
  PrunusDataset *train = random_dataset(40, 1, 4, 5);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.epochs = 3, tc.batch = 8, tc.lr = 0.05, tc.momentum = 0.9, tc.bn_l1 = 0.02;
  GError *error = NULL;
  PrunusModel *p = prunus_model_new(&a, 8, 3, &error), *q = prunus_model_new(&a, 8, 3, &error),
              *off = prunus_model_new(&a, 8, 3, &error);
  g_assert_no_error(error);
  prunus_set_threads(1);
  plain_train(p, &tc, train, &norm, 42);
  g_assert_true(prunus_train(q, &tc, train, NULL, &norm, 42, NULL, &error));
  g_assert_no_error(error);
  g_assert_cmpmem(p->params, sizeof(float) * p->n_params, q->params, sizeof(float) * q->n_params);
  tc.bn_l1 = 0.0;
  g_assert_true(prunus_train(off, &tc, train, NULL, &norm, 42, NULL, &error));
  double with = sum_abs_gamma(q), without = sum_abs_gamma(off);
  g_test_message("sum |gamma| after 3 epochs: %.4f with bn_l1 = 0.02, %.4f without", with, without);
  g_assert_cmpfloat(with, <, without - 0.05);
  prunus_model_free(p), prunus_model_free(q), prunus_model_free(off);
  prunus_dataset_free(train);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  if (!g_getenv("PRUNUS_PLUGIN_PATH") || !g_getenv("PRUNUS_TEST_GROUP_PLUGIN_DIR"))
    g_error(
        "PRUNUS_PLUGIN_PATH or PRUNUS_TEST_GROUP_PLUGIN_DIR is not set (run through meson "
        "test)");
  g_test_add_func("/structured/view-groups", test_view_groups);
  g_test_add_func("/structured/weight-norm", test_weight_norm_groups);
  g_test_add_func("/structured/taylor", test_taylor_groups);
  g_test_add_func("/structured/other-criteria", test_other_criteria_groups);
  g_test_add_func("/structured/group-scores", test_group_scores);
  g_test_add_func("/structured/round-to", test_round_to);
  g_test_add_func("/structured/bn-scale", test_bn_scale);
  g_test_add_func("/structured/bn-l1/by-hand", test_bn_l1_by_hand);
  g_test_add_func("/structured/bn-l1/training", test_bn_l1_training);
  return g_test_run();
}
