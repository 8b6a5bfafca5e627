/* layer_normalized.c: an example criterion plugin written outside prunus.
 * Score = |w| / mean |w| of the weight's layer, so that one global ranking does
 * not simply empty the layers whose weights are small by construction. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  double power; /* score = (|w| / mean|w|) ^ power; any power > 0 ranks alike */
} State;

static int create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  State *s = calloc(1, sizeof *s);
  if (!s) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  if (svc->get_double(host, "power", 1.0, &s->power) != 0) {
    free(s);
    return -1;
  }
  if (!(s->power > 0.0)) {
    svc->set_error(host, "key 'power' must be > 0, found %g", s->power);
    free(s);
    return -1;
  }
  *state = s;
  return 0;
}

static void destroy(void *state) { free(state); }

static uint32_t needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  const State *s = state;
  for (int k = 0; k < model->n_layers; k++) {
    const PrunusLayerView *l = &model->layers[k];
    double sum = 0.0;
    size_t alive = 0;
    for (size_t i = 0; i < l->n_weights; i++) {
      if (l->mask[i] == 0.0f) continue;
      sum += fabs(l->weights[i]);
      alive++;
    }
    double mean = alive ? sum / (double)alive : 1.0;
    if (mean == 0.0) mean = 1.0;
    for (size_t i = 0; i < l->n_weights; i++)
      scores->weight_scores[k][i] = (float)pow(fabs(l->weights[i]) / mean, s->power);
  }
  return 0;
}

static const PrunusCriterionOps ops = {
    .needs = needs,
    .produces = produces,
    .observe = NULL,
    .score = score,
};

static const PrunusPluginDesc desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "layer-normalized",
    .version = "1.0.0",
    .summary = "|w| divided by the mean |w| of its layer (fair global ranking)",
    .create = create,
    .destroy = destroy,
    .criterion = &ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &desc : NULL;
}
