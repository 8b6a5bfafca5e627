/* magnitude.c: the magnitude criterion. A weight scores |w|; a unit (neuron or
 * conv channel) scores the l1 or l2 norm of its alive weights (setting
 * unit_norm = "l1" | "l2", default "l2"). Needs nothing but the model view. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State and settings

typedef enum {
  MAGNITUDE_NORM_L1 = 0,
  MAGNITUDE_NORM_L2 = 1,
} MagnitudeNorm;

static const char *const magnitude_norm_names[] = {"l1", "l2", NULL};

typedef struct {
  MagnitudeNorm unit_norm;
} Magnitude;

static int magnitude_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int norm;
  if (services->get_choice(host, "unit_norm", magnitude_norm_names, MAGNITUDE_NORM_L2, &norm) != 0)
    return -1; /* the host recorded the key, the choices and the value found */
  if (norm != MAGNITUDE_NORM_L1 && norm != MAGNITUDE_NORM_L2) {
    services->set_error(host, "unit_norm: expected \"l1\" or \"l2\", found choice index %d", norm);
    return -1;
  }
  Magnitude *m = malloc(sizeof *m);
  if (!m) {
    services->set_error(host, "out of memory");
    return -1;
  }
  m->unit_norm = (MagnitudeNorm)norm;
  *state = m;
  return 0;
}

static void magnitude_destroy(void *state) { free(state); }

// ----------------------------------------------------------------------------
// Scoring

static uint32_t magnitude_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t magnitude_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT;
}

static int magnitude_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  const Magnitude *m = state;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *ws = scores->weight_scores ? scores->weight_scores[l] : NULL;
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    for (int u = 0; u < layer->n_units; u++) {
      const size_t row = (size_t)u * (size_t)layer->fan_in;
      double norm = 0.0;
      for (int k = 0; k < layer->fan_in; k++) {
        const size_t i = row + (size_t)k;
        const double a = fabs((double)layer->weights[i]);
        if (ws) ws[i] = (float)a;
        if (layer->mask && layer->mask[i] == 0.0f)
          continue; /* pruned weights do not count towards the unit's norm */
        norm += m->unit_norm == MAGNITUDE_NORM_L1 ? a : a * a;
      }
      if (us) us[u] = (float)(m->unit_norm == MAGNITUDE_NORM_L1 ? norm : sqrt(norm));
    }
  }
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps magnitude_ops = {
    .needs = magnitude_needs,
    .produces = magnitude_produces,
    .observe = NULL,
    .score = magnitude_score,
};

static const PrunusPluginDesc magnitude_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "magnitude",
    .version = "1.0.0",
    .summary = "weight score |w|; unit score the l1/l2 norm of its alive weights",
    .create = magnitude_create,
    .destroy = magnitude_destroy,
    .criterion = &magnitude_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &magnitude_desc : NULL;
}
