/* broken-ops-size.c: loader-test fixture. A granularity "broken-ops-size" whose
 * descriptor claims an ops table of 8 bytes, smaller than revision 1's
 * PrunusGranularityOps, so the loader must refuse it naming ops_size and both
 * sizes. */
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
    .name = "broken-ops-size",
    .version = "1.0.0",
    .summary = "fixture: ops_size 8",
    .create = broken_create,
    .granularity = &broken_ops,
    .ops_size = 8,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
