/* taylor.c: the first-order Taylor criterion (Molchanov et al. 2017): the loss
 * change from removing weight i is about |w_i * dL/dw_i|. Scores weights and units
 * from the loss gradients of the calibration batches. Setting squared (default
 * false): the Molchanov et al. 2019 form, (w*g)^2 per weight and (sum w*g)^2 per unit. */
#include <prunus/plugin.h>

#include "../common/sums.h"

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State and settings

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int squared;
  /* w: per weight, the sum over steps of |w g| (or (w g)^2 when squared);
   * u: per unit, squared only, the sum over steps of (sum_i w_i g_i)^2 */
  Sums sums;
} Taylor;

static int taylor_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int squared;
  if (services->get_bool(host, "squared", 0, &squared) != 0)
    return -1; /* the host recorded the key and the value found */
  Taylor *t = calloc(1, sizeof *t);
  if (!t) {
    services->set_error(host, "out of memory");
    return -1;
  }
  t->host = host;
  t->services = services;
  t->squared = squared != 0;
  *state = t;
  return 0;
}

static void taylor_destroy(void *state) {
  Taylor *t = state;
  sums_clear(&t->sums);
  free(t);
}

// ----------------------------------------------------------------------------
// Calibration

static uint32_t taylor_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_LOSS_GRAD;
}

static uint32_t taylor_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT;
}

/* One step = one calibration batch, g = the batch-mean gradient dL/dw. This is
 * the per-batch form of the paper: |w * g| is taken per mini-batch and averaged
 * over batches (not |w * g| per sample, which would need a backward per sample),
 * so within a batch the gradients of the samples may cancel before the |.|. */
static int taylor_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Taylor *t = state;
  if (step->kind != PRUNUS_NEED_LOSS_GRAD || !step->grads) {
    t->services->set_error(t->host,
                           "observe(): expected a loss-gradient step (kind %u), found "
                           "kind %u%s",
                           (unsigned)PRUNUS_NEED_LOSS_GRAD, (unsigned)step->kind,
                           step->grads ? "" : " without gradients");
    return -1;
  }
  if (sums_begin(&t->sums, model, 1, t->squared, t->host, t->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    const float *g = step->grads[l];
    double *ws = t->sums.w[l];
    for (int u = 0; u < layer->n_units; u++) {
      const size_t row = (size_t)u * (size_t)layer->fan_in;
      double unit = 0.0;
      for (int k = 0; k < layer->fan_in; k++) {
        const size_t i = row + (size_t)k;
        const double wg = (double)layer->weights[i] * (double)g[i];
        ws[i] += t->squared ? wg * wg : fabs(wg);
        if (!layer->mask || layer->mask[i] != 0.0f) unit += wg;
      }
      if (t->squared) t->sums.u[l][u] += unit * unit;
    }
  }
  t->sums.steps++;
  return 0;
}

// ----------------------------------------------------------------------------
// Scoring

/* Weight score: the mean over steps. Unit score: the sum of the unit's alive
 * weight scores (plain form), or the mean over steps of (sum_i w_i g_i)^2 over the
 * unit's alive weights (squared form; the bias is not part of it). The sums are
 * dropped afterwards so the next round calibrates afresh. */
static int taylor_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Taylor *t = state;
  if (sums_check_observed(&t->sums, model, t->host, t->services) != 0) return -1;
  const double inv = 1.0 / (double)t->sums.steps;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *ws = scores->weight_scores ? scores->weight_scores[l] : NULL;
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    for (size_t i = 0; ws && i < layer->n_weights; i++) ws[i] = (float)(t->sums.w[l][i] * inv);
    if (us && t->squared)
      for (int u = 0; u < layer->n_units; u++) us[u] = (float)(t->sums.u[l][u] * inv);
    else if (us)
      sums_unit_total(layer, t->sums.w[l], inv, us);
  }
  sums_clear(&t->sums);
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps taylor_ops = {
    .needs = taylor_needs,
    .produces = taylor_produces,
    .observe = taylor_observe,
    .score = taylor_score,
};

static const PrunusPluginDesc taylor_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "taylor",
    .version = "1.0.0",
    .summary = "first-order Taylor |w * dL/dw| per weight, mean over calibration batches",
    .create = taylor_create,
    .destroy = taylor_destroy,
    .criterion = &taylor_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &taylor_desc : NULL;
}
