/* mas.c: Memory Aware Synapses (Aljundi et al. 2018): b_i = the mean over
 * calibration samples of |d||f(x)||^2 / dθ_i|, how much the squared l2 norm of the
 * network's output (the logits) moves with θ_i. Needs no labels. Scores weights,
 * and units as the sum over their alive weights. */
#include <prunus/plugin.h>

#include "../common/sums.h"

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  Sums sums; /* w: per weight, the sum over samples of |g| */
} Mas;

static int mas_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Mas *m = calloc(1, sizeof *m);
  if (!m) {
    services->set_error(host, "out of memory");
    return -1;
  }
  m->host = host;
  m->services = services;
  *state = m;
  return 0;
}

static void mas_destroy(void *state) {
  Mas *m = state;
  sums_clear(&m->sums);
  free(m);
}

// ----------------------------------------------------------------------------
// Calibration

/* Per-sample output-norm gradients: the host runs one forward per sample and
 * back-propagates d||f(x)||^2 / d logits = 2 f(x) (batch = 1, no labels), so the
 * |.| is taken per sample as in the paper. */
static uint32_t mas_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_OUTNORM_GRAD_SAMPLE;
}

static uint32_t mas_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT;
}

static int mas_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Mas *m = state;
  if (step->kind != PRUNUS_NEED_OUTNORM_GRAD_SAMPLE || !step->grads || step->batch != 1) {
    m->services->set_error(m->host,
                           "observe(): expected a per-sample output-norm gradient step "
                           "(kind %u, batch 1), found kind %u, batch %d%s",
                           (unsigned)PRUNUS_NEED_OUTNORM_GRAD_SAMPLE, (unsigned)step->kind,
                           step->batch, step->grads ? "" : ", no gradients");
    return -1;
  }
  if (sums_begin(&m->sums, model, 1, 0, m->host, m->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    const float *g = step->grads[l];
    double *ws = m->sums.w[l];
    for (size_t i = 0; i < model->layers[l].n_weights; i++) ws[i] += fabs((double)g[i]);
  }
  m->sums.steps++;
  return 0;
}

// ----------------------------------------------------------------------------
// Scoring

/* Weight score: the mean over samples; unit score: the sum over the unit's alive
 * weights. The sums are dropped afterwards so the next round calibrates afresh. */
static int mas_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Mas *m = state;
  if (sums_check_observed(&m->sums, model, m->host, m->services) != 0) return -1;
  const double inv = 1.0 / (double)m->sums.steps;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *ws = scores->weight_scores ? scores->weight_scores[l] : NULL;
    for (size_t i = 0; ws && i < layer->n_weights; i++) ws[i] = (float)(m->sums.w[l][i] * inv);
    if (scores->unit_scores && scores->unit_scores[l])
      sums_unit_total(layer, m->sums.w[l], inv, scores->unit_scores[l]);
  }
  sums_clear(&m->sums);
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps mas_ops = {
    .needs = mas_needs,
    .produces = mas_produces,
    .observe = mas_observe,
    .score = mas_score,
};

static const PrunusPluginDesc mas_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "mas",
    .version = "1.0.0",
    .summary = "Memory Aware Synapses: mean |d||f(x)||^2/dw| over samples (no labels)",
    .create = mas_create,
    .destroy = mas_destroy,
    .criterion = &mas_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &mas_desc : NULL;
}
