/* group-plugins.c: fixtures for channel groups (plugin ABI revision 4), never installed.
 * criterion "group-score" scores every channel group directly (PRUNUS_SCORES_GROUP):
 * group g scores (g * 37) mod n_groups, a fixed permutation the tests rank by hand.
 * granularity "bad-groups" returns a plan the host must refuse before applying any of it:
 * mode = "split" removes unit 0 of the first prunable hidden layer alone (splitting its
 * group when other layers share it), "empty" the whole group of every unit of that layer;
 * both also remove every weight of that layer, which the host must not apply either.
 * criterion "cross-units" (revision 5) scores units layer by layer from the inputs'
 * cross products with the round's unpruned network: unit u of layer l scores
 * sum_j |W_uj| sqrt(|C_jj| / rows), C = input_cross[l]; observe() fails unless each
 * pass brings its layer's Gram step and then its cross step, of the view's fan_in. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// criterion "group-score"

static int gs_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)state;
  if (PRUNUS_HOST_REVISION(services) < 4) {
    services->set_error(host, "needs channel groups (plugin ABI revision 4)");
    return -1;
  }
  return 0;
}

static uint32_t gs_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t gs_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_GROUP;
}

static int gs_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  (void)state;
  for (int g = 0; g < model->n_groups; g++)
    scores->group_scores[g] = (float)((g * 37) % model->n_groups);
  return 0;
}

static const PrunusCriterionOps gs_ops = {
    .needs = gs_needs, .produces = gs_produces, .score = gs_score};

// ----------------------------------------------------------------------------
// criterion "cross-units"

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  int layer;    /* the layer of the pass in progress, -1 before its Gram step */
  int n;        /* its fan_in */
  double *diag; /* (n) C_jj / rows, after the cross step */
} CrossUnits;

static int cu_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  if (PRUNUS_HOST_REVISION(services) < 5) {
    services->set_error(host, "needs the inputs' cross products (plugin ABI revision 5)");
    return -1;
  }
  CrossUnits *c = calloc(1, sizeof *c);
  if (!c) return -1;
  *c = (CrossUnits){.host = host, .svc = services, .layer = -1};
  *state = c;
  return 0;
}

static void cu_destroy(void *state) {
  CrossUnits *c = state;
  free(c->diag);
  free(c);
}

static uint32_t cu_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_INPUT_CROSS | PRUNUS_NEED_LAYERWISE;
}

static uint32_t cu_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_UNIT;
}

static int cu_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  CrossUnits *c = state;
  const int l = step->layer;
  if (l < 0 || l >= model->n_layers) {
    c->svc->set_error(c->host, "a pass for layer %d: expected one layer at a time", l);
    return -1;
  }
  const int n = model->layers[l].fan_in;
  if (step->kind == PRUNUS_NEED_INPUT_GRAM && step->input_gram && step->input_gram[l]) {
    c->layer = l, c->n = n;
    return 0;
  }
  if (step->kind != PRUNUS_NEED_INPUT_CROSS || !step->input_cross || !step->input_cross[l] ||
      c->layer != l || c->n != n || !step->input_rows || step->input_rows[l] <= 0) {
    c->svc->set_error(c->host, "layer %d: expected its Gram step, then its cross step", l);
    return -1;
  }
  free(c->diag);
  if (!(c->diag = malloc((size_t)n * sizeof(double)))) return -1;
  for (int j = 0; j < n; j++)
    c->diag[j] = fabs(step->input_cross[l][(size_t)j * n + j]) / (double)step->input_rows[l];
  return 0;
}

static int cu_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  CrossUnits *c = state;
  const int l = scores->layer;
  if (l < 0 || l != c->layer || !c->diag || model->layers[l].fan_in != c->n) {
    c->svc->set_error(c->host, "score(): layer %d was not calibrated", l);
    return -1;
  }
  const PrunusLayerView *v = &model->layers[l];
  for (int u = 0; u < v->n_units; u++) {
    double s = 0.0;
    for (int j = 0; j < v->fan_in; j++)
      s += fabs((double)v->weights[(size_t)u * v->fan_in + j]) * sqrt(c->diag[j]);
    scores->unit_scores[l][u] = (float)s;
  }
  c->layer = -1;
  return 0;
}

static const PrunusCriterionOps cu_ops = {
    .needs = cu_needs, .produces = cu_produces, .observe = cu_observe, .score = cu_score};

// ----------------------------------------------------------------------------
// granularity "bad-groups"

typedef struct {
  int empty; /* 0: split a group, 1: empty a layer */
} BadGroups;

static const char *const modes[] = {"split", "empty", NULL};

static int bg_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int mode;
  if (services->get_choice(host, "mode", modes, 0, &mode) != 0) return -1;
  BadGroups *b = malloc(sizeof *b);
  if (!b) return -1;
  b->empty = mode == 1;
  *state = b;
  return 0;
}

static void bg_destroy(void *state) { free(state); }

static uint32_t bg_accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_GROUP;
}

static int bg_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                   const PrunusPlanRequest *req, PrunusPlan *plan) {
  const BadGroups *b = state;
  (void)scores, (void)req;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    if (!layer->prunable || layer->is_output) continue;
    for (size_t i = 0; i < layer->n_weights; i++) plan->remove_weights[l][i] = 1;
    if (!b->empty) {
      plan->remove_units[l][0] = 1;
      return 0;
    }
    for (int u = 0; u < layer->n_units; u++) { /* whole groups */
      const int g = model->unit_group[l][u];
      for (int i = 0; g >= 0 && i < model->group_n_units[g]; i++)
        plan->remove_units[model->group_unit_layer[g][i]][model->group_unit[g][i]] = 1;
    }
    return 0;
  }
  return 0;
}

static const PrunusGranularityOps bg_ops = {.accepts = bg_accepts, .plan = bg_plan};

// ----------------------------------------------------------------------------
// Descriptors

static const PrunusPluginDesc descs[] = {
    {.abi_version = PRUNUS_PLUGIN_ABI_VERSION,
     .size = sizeof(PrunusPluginDesc),
     .kind = PRUNUS_PLUGIN_CRITERION,
     .name = "group-score",
     .version = "1.0.0",
     .summary = "fixture: group g scores (37 g) mod n_groups (PRUNUS_SCORES_GROUP)",
     .create = gs_create,
     PRUNUS_PLUGIN_OPS(criterion, gs_ops)},
    {.abi_version = PRUNUS_PLUGIN_ABI_VERSION,
     .size = sizeof(PrunusPluginDesc),
     .kind = PRUNUS_PLUGIN_GRANULARITY,
     .name = "bad-groups",
     .version = "1.0.0",
     .summary = "fixture: a plan that splits a channel group or empties a layer",
     .create = bg_create,
     .destroy = bg_destroy,
     PRUNUS_PLUGIN_OPS(granularity, bg_ops)},
    {.abi_version = PRUNUS_PLUGIN_ABI_VERSION,
     .size = sizeof(PrunusPluginDesc),
     .kind = PRUNUS_PLUGIN_CRITERION,
     .name = "cross-units",
     .version = "1.0.0",
     .summary = "fixture: units scored layer by layer from the inputs' cross products",
     .create = cu_create,
     .destroy = cu_destroy,
     PRUNUS_PLUGIN_OPS(criterion, cu_ops)},
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index < sizeof descs / sizeof descs[0] ? &descs[index] : NULL;
}
