/* nan-criterion.c: pipeline-test fixture. A criterion named "nan-criterion" that
 * scores |w| on its first score() call (round 1) and NaN for every weight from the
 * second call (round 2) on, so the host must stop the pipeline with an error naming
 * the plugin, the layer and "finite", and keep the earlier rounds on disk. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

typedef struct {
  int calls; /* score() calls so far */
} NanState;

static int nan_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  NanState *s = calloc(1, sizeof *s);
  if (!s) {
    services->set_error(host, "out of memory");
    return -1;
  }
  *state = s;
  return 0;
}

static void nan_destroy(void *state) { free(state); }

static uint32_t nan_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t nan_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int nan_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  NanState *s = state;
  s->calls++;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    for (size_t i = 0; i < layer->n_weights; i++) {
      const float w = layer->weights[i];
      scores->weight_scores[l][i] = s->calls >= 2 ? NAN : (w < 0.0f ? -w : w);
    }
  }
  return 0;
}

static const PrunusCriterionOps nan_ops = {
    .needs = nan_needs, .produces = nan_produces, .score = nan_score};

static const PrunusPluginDesc nan_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "nan-criterion",
    .version = "1.0.0",
    .summary = "fixture: |w| in round 1, NaN scores from round 2 on",
    .create = nan_create,
    .destroy = nan_destroy,
    .criterion = &nan_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &nan_desc : NULL;
}
