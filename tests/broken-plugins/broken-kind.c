/* broken-kind.c: loader-test fixture. A valid granularity plugin named
 * "not-a-criterion": configured in a criterion slot, the loader must report the
 * wrong kind (expected criterion, found granularity). */
#include <prunus/plugin.h>

static uint32_t broken_accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int broken_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                       const PrunusPlanRequest *req, PrunusPlan *plan) {
  (void)state, (void)model, (void)scores, (void)req, (void)plan;
  return 0;
}

static int broken_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)host, (void)services;
  *state = NULL;
  return 0;
}

static const PrunusGranularityOps broken_ops = {.accepts = broken_accepts, .plan = broken_plan};

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_GRANULARITY,
    .name = "not-a-criterion",
    .version = "1.0.0",
    .summary = "fixture: a granularity plugin, for the wrong-kind check",
    .create = broken_create,
    .granularity = &broken_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
