/* random.c: the random criterion, the baseline every other criterion must beat.
 * Each weight and each unit scores a uniform draw in [0, 1) from the host's
 * seeded stream, so a run is reproducible from the config seed. No settings. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
} Random;

static int random_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Random *r = malloc(sizeof *r);
  if (!r) {
    services->set_error(host, "out of memory");
    return -1;
  }
  r->host = host;
  r->services = services;
  *state = r;
  return 0;
}

static void random_destroy(void *state) { free(state); }

// ----------------------------------------------------------------------------
// Scoring

static uint32_t random_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t random_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT;
}

/* One draw in [0, 1) as a float: a double just below 1 rounds up to 1.0f, so
 * clamp it to the largest float below 1. */
static float random_draw(const Random *r) {
  const float f = (float)r->services->rng_uniform(r->host);
  return f < 1.0f ? f : nextafterf(1.0f, 0.0f);
}

/* Draws in a fixed order (layer by layer, weights then units) so the scores
 * depend on the seed only. */
static int random_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  const Random *r = state;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *ws = scores->weight_scores ? scores->weight_scores[l] : NULL;
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    if (ws)
      for (size_t i = 0; i < layer->n_weights; i++) ws[i] = random_draw(r);
    if (us)
      for (int u = 0; u < layer->n_units; u++) us[u] = random_draw(r);
  }
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps random_ops = {
    .needs = random_needs,
    .produces = random_produces,
    .observe = NULL,
    .score = random_score,
};

static const PrunusPluginDesc random_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "random",
    .version = "1.0.0",
    .summary = "uniform random scores from the seeded host stream (the baseline)",
    .create = random_create,
    .destroy = random_destroy,
    .criterion = &random_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &random_desc : NULL;
}
