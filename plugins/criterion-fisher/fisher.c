/* fisher.c: the EWC importance (Kirkpatrick et al. 2017): b_i = the mean over
 * calibration samples of (dL/dθ_i)^2, the diagonal of the empirical Fisher
 * information. Scores weights, and units as the sum over their alive weights. */
#include <prunus/plugin.h>

#include "../common/sums.h"

#include <stdlib.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  Sums sums; /* w: per weight, the sum over samples of g^2 */
} Fisher;

static int fisher_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Fisher *f = calloc(1, sizeof *f);
  if (!f) {
    services->set_error(host, "out of memory");
    return -1;
  }
  f->host = host;
  f->services = services;
  *state = f;
  return 0;
}

static void fisher_destroy(void *state) {
  Fisher *f = state;
  sums_clear(&f->sums);
  free(f);
}

// ----------------------------------------------------------------------------
// Calibration

/* Per-sample gradients: the square must be taken per sample (the mean of g^2,
 * not the square of the batch-mean g), so the host runs one forward + backward
 * per calibration sample, batch = 1, and calls observe() once per sample. */
static uint32_t fisher_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_LOSS_GRAD_SAMPLE;
}

static uint32_t fisher_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT;
}

static int fisher_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Fisher *f = state;
  if (step->kind != PRUNUS_NEED_LOSS_GRAD_SAMPLE || !step->grads || step->batch != 1) {
    f->services->set_error(f->host,
                           "observe(): expected a per-sample loss-gradient step (kind "
                           "%u, batch 1), found kind %u, batch %d%s",
                           (unsigned)PRUNUS_NEED_LOSS_GRAD_SAMPLE, (unsigned)step->kind,
                           step->batch, step->grads ? "" : ", no gradients");
    return -1;
  }
  if (sums_begin(&f->sums, model, 1, 0, f->host, f->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    const float *g = step->grads[l];
    double *ws = f->sums.w[l];
    for (size_t i = 0; i < model->layers[l].n_weights; i++) ws[i] += (double)g[i] * (double)g[i];
  }
  f->sums.steps++;
  return 0;
}

// ----------------------------------------------------------------------------
// Scoring

/* Weight score: the mean over samples; unit score: the sum over the unit's alive
 * weights. The sums are dropped afterwards so the next round calibrates afresh. */
static int fisher_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Fisher *f = state;
  if (sums_check_observed(&f->sums, model, f->host, f->services) != 0) return -1;
  const double inv = 1.0 / (double)f->sums.steps;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *ws = scores->weight_scores ? scores->weight_scores[l] : NULL;
    for (size_t i = 0; ws && i < layer->n_weights; i++) ws[i] = (float)(f->sums.w[l][i] * inv);
    if (scores->unit_scores && scores->unit_scores[l])
      sums_unit_total(layer, f->sums.w[l], inv, scores->unit_scores[l]);
  }
  sums_clear(&f->sums);
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps fisher_ops = {
    .needs = fisher_needs,
    .produces = fisher_produces,
    .observe = fisher_observe,
    .score = fisher_score,
};

static const PrunusPluginDesc fisher_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "fisher",
    .version = "1.0.0",
    .summary = "EWC importance: diagonal empirical Fisher, mean of (dL/dw)^2 over samples",
    .create = fisher_create,
    .destroy = fisher_destroy,
    .criterion = &fisher_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &fisher_desc : NULL;
}
