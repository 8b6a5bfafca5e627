/* activation-mean.c: unit score = the mean |activation| of a neuron / conv
 * channel over the calibration samples and its output positions, taken after the
 * ReLU that follows the layer (the raw outputs for the output layer). Units only. */
#include <prunus/plugin.h>

#include "../common/sums.h"

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  /* u: per unit, the sum of |activation|; count: per layer, samples * positions */
  Sums sums;
} ActMean;

static int actmean_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  ActMean *a = calloc(1, sizeof *a);
  if (!a) {
    services->set_error(host, "out of memory");
    return -1;
  }
  a->host = host;
  a->services = services;
  *state = a;
  return 0;
}

static void actmean_destroy(void *state) {
  ActMean *a = state;
  sums_clear(&a->sums);
  free(a);
}

// ----------------------------------------------------------------------------
// Calibration

static uint32_t actmean_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_ACTIVATIONS;
}

static uint32_t actmean_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_UNIT;
}

static int actmean_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  ActMean *a = state;
  if (sums_check_activations(step, a->host, a->services) != 0) return -1;
  if (sums_begin(&a->sums, model, 0, 1, a->host, a->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    const int P = layer->positions > 0 ? layer->positions : 1;
    const float *act = step->activations[l]; /* (batch, n_units, positions) */
    double *sum = a->sums.u[l];
    for (int b = 0; b < step->batch; b++) {
      for (int u = 0; u < layer->n_units; u++) {
        const float *y = act + ((size_t)b * (size_t)layer->n_units + (size_t)u) * (size_t)P;
        double s = 0.0;
        for (int p = 0; p < P; p++) s += fabs((double)y[p]);
        sum[u] += s;
      }
    }
    a->sums.count[l] += (double)step->batch * P;
  }
  a->sums.steps++;
  return 0;
}

// ----------------------------------------------------------------------------
// Scoring

static int actmean_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  ActMean *a = state;
  if (sums_check_observed(&a->sums, model, a->host, a->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    for (int u = 0; us && u < model->layers[l].n_units; u++)
      us[u] = (float)(a->sums.u[l][u] / a->sums.count[l]);
  }
  sums_clear(&a->sums);
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps actmean_ops = {
    .needs = actmean_needs,
    .produces = actmean_produces,
    .observe = actmean_observe,
    .score = actmean_score,
};

static const PrunusPluginDesc actmean_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "activation-mean",
    .version = "1.0.0",
    .summary = "unit score: mean |activation| over calibration samples and positions",
    .create = actmean_create,
    .destroy = actmean_destroy,
    .criterion = &actmean_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &actmean_desc : NULL;
}
