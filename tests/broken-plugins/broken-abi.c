/* broken-abi.c: loader-test fixture. A well-formed criterion whose abi_version is
 * PRUNUS_PLUGIN_ABI_VERSION + 41, so the loader must refuse it naming both versions. */
#include <prunus/plugin.h>

static uint32_t broken_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t broken_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int broken_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  (void)state, (void)model, (void)scores;
  return 0;
}

static int broken_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)host, (void)services;
  *state = NULL;
  return 0;
}

static const PrunusCriterionOps broken_ops = {
    .needs = broken_needs, .produces = broken_produces, .score = broken_score};

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION + 41,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "broken-abi",
    .version = "1.0.0",
    .summary = "fixture: ABI version from the future",
    .create = broken_create,
    .criterion = &broken_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
