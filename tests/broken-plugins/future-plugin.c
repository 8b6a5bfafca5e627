/* future-plugin.c: loader-test fixture. A criterion "future-criterion" as a
 * plugin built against a later revision of plugin.h would be: its descriptor and
 * its ops table are larger than this host's (each with one member appended). The
 * host must load it, read only the members it knows (plugin.h, rules G1 and G4)
 * and never call the op it does not know. Its score is |w|. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

typedef struct {
  PrunusCriterionOps base;
  /* what a later revision might append; this host MUST NOT call it */
  void (*future_op)(void *state);
} FutureOps;

typedef struct {
  PrunusPluginDesc base;
  uint64_t future_field;
} FutureDesc;

static uint32_t future_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t future_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int future_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  (void)state;
  for (int k = 0; k < model->n_layers; k++)
    for (size_t i = 0; i < model->layers[k].n_weights; i++)
      scores->weight_scores[k][i] = fabsf(model->layers[k].weights[i]);
  return 0;
}

static void future_op(void *state) {
  (void)state;
  abort();
}

static int future_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)host, (void)services;
  *state = NULL;
  return 0;
}

static const FutureOps future_ops = {
    .base = {.needs = future_needs, .produces = future_produces, .score = future_score},
    .future_op = future_op,
};

static const FutureDesc future_desc = {
    .base =
        {
            .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
            .size = sizeof(FutureDesc),
            .kind = PRUNUS_PLUGIN_CRITERION,
            .name = "future-criterion",
            .version = "1.0.0",
            .summary = "fixture: descriptor and ops table larger than this host's",
            .create = future_create,
            .criterion = &future_ops.base,
            .ops_size = sizeof(FutureOps),
        },
    .future_field = 0xfeedfacecafebeefull,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &future_desc.base : NULL;
}
