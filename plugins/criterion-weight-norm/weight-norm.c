/* weight-norm.c: unit score = the l1 or l2 norm of a unit's incoming alive
 * weights (a dense neuron's row, a conv filter's cin*k*k weights), as in Li et
 * al. 2017 "Pruning Filters for Efficient ConvNets". Setting norm = "l1" | "l2"
 * (default "l2"). Needs only the weights; units only. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State and settings

typedef enum {
  WEIGHT_NORM_L1 = 0,
  WEIGHT_NORM_L2 = 1,
} WeightNormKind;

static const char *const weight_norm_names[] = {"l1", "l2", NULL};

typedef struct {
  WeightNormKind norm;
} WeightNorm;

static int weight_norm_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int norm;
  if (services->get_choice(host, "norm", weight_norm_names, WEIGHT_NORM_L2, &norm) != 0)
    return -1; /* the host recorded the key, the choices and the value found */
  if (norm != WEIGHT_NORM_L1 && norm != WEIGHT_NORM_L2) {
    services->set_error(host, "norm: expected \"l1\" or \"l2\", found choice index %d", norm);
    return -1;
  }
  WeightNorm *w = malloc(sizeof *w);
  if (!w) {
    services->set_error(host, "out of memory");
    return -1;
  }
  w->norm = (WeightNormKind)norm;
  *state = w;
  return 0;
}

static void weight_norm_destroy(void *state) { free(state); }

// ----------------------------------------------------------------------------
// Scoring

static uint32_t weight_norm_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t weight_norm_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_UNIT;
}

static int weight_norm_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  const WeightNorm *w = state;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    for (int u = 0; us && u < layer->n_units; u++) {
      const size_t row = (size_t)u * (size_t)layer->fan_in;
      double acc = 0.0;
      for (int k = 0; k < layer->fan_in; k++) {
        const size_t i = row + (size_t)k;
        if (layer->mask && layer->mask[i] == 0.0f) continue; /* pruned weights do not count */
        const double a = fabs((double)layer->weights[i]);
        acc += w->norm == WEIGHT_NORM_L1 ? a : a * a;
      }
      us[u] = (float)(w->norm == WEIGHT_NORM_L1 ? acc : sqrt(acc));
    }
  }
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps weight_norm_ops = {
    .needs = weight_norm_needs,
    .produces = weight_norm_produces,
    .observe = NULL,
    .score = weight_norm_score,
};

static const PrunusPluginDesc weight_norm_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "weight-norm",
    .version = "1.0.0",
    .summary = "unit score: l1/l2 norm of a neuron's / filter's incoming alive weights",
    .create = weight_norm_create,
    .destroy = weight_norm_destroy,
    .criterion = &weight_norm_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &weight_norm_desc : NULL;
}
