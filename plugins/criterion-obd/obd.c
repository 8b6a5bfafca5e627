/* obd.c: Optimal Brain Damage (LeCun et al. 1990): the loss increase of removing a
 * weight under a diagonal quadratic model, s_i = 1/2 F_ii w_i^2, with F the
 * empirical Fisher diagonal (the mean over calibration samples of (dL/dw_i)^2,
 * what the host's per-sample loss gradients give) in place of the Hessian.
 * Scores weights, and units as the sum over their alive weights. No settings. */
#include <prunus/plugin.h>

#include "../common/sums.h"

#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  Sums sums; /* w: per weight, the sum over samples of g^2 */
} Obd;

static int obd_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Obd *o = calloc(1, sizeof *o);
  if (!o) {
    services->set_error(host, "out of memory");
    return -1;
  }
  o->host = host;
  o->services = services;
  *state = o;
  return 0;
}

static void obd_destroy(void *state) {
  Obd *o = state;
  sums_clear(&o->sums);
  free(o);
}

/* The Fisher diagonal is the mean of per-sample squares, so one step per sample. */
static uint32_t obd_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_LOSS_GRAD_SAMPLE;
}

static uint32_t obd_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT;
}

static int obd_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Obd *o = state;
  if (step->kind != PRUNUS_NEED_LOSS_GRAD_SAMPLE || !step->grads || step->batch != 1) {
    o->services->set_error(o->host,
                           "observe(): expected a per-sample loss-gradient step (kind %u, batch "
                           "1), found kind %u, batch %d",
                           (unsigned)PRUNUS_NEED_LOSS_GRAD_SAMPLE, (unsigned)step->kind,
                           step->batch);
    return -1;
  }
  if (sums_begin(&o->sums, model, 1, 0, o->host, o->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    const float *g = step->grads[l];
    double *ws = o->sums.w[l];
    for (size_t i = 0; i < model->layers[l].n_weights; i++) ws[i] += (double)g[i] * (double)g[i];
  }
  o->sums.steps++;
  return 0;
}

/* s_i = 1/2 F_ii w_i^2; a unit's score is the sum of its alive weights' scores. The
 * sums are dropped afterwards so the next round calibrates afresh. */
static int obd_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Obd *o = state;
  if (sums_check_observed(&o->sums, model, o->host, o->services) != 0) return -1;
  const double inv = 1.0 / (double)o->sums.steps;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    double *s = o->sums.w[l];
    for (size_t i = 0; i < layer->n_weights; i++) {
      const double w = layer->weights[i];
      s[i] = 0.5 * (s[i] * inv) * w * w;
    }
    float *ws = scores->weight_scores ? scores->weight_scores[l] : NULL;
    for (size_t i = 0; ws && i < layer->n_weights; i++) ws[i] = (float)s[i];
    if (scores->unit_scores && scores->unit_scores[l])
      sums_unit_total(layer, s, 1.0, scores->unit_scores[l]);
  }
  sums_clear(&o->sums);
  return 0;
}

static const PrunusCriterionOps obd_ops = {
    .needs = obd_needs,
    .produces = obd_produces,
    .observe = obd_observe,
    .score = obd_score,
};

static const PrunusPluginDesc obd_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "obd",
    .version = "1.0.0",
    .summary = "Optimal Brain Damage: 1/2 F_ii w^2 with the empirical Fisher diagonal",
    .create = obd_create,
    .destroy = obd_destroy,
    PRUNUS_PLUGIN_OPS(criterion, obd_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &obd_desc : NULL;
}
