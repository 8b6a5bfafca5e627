/* broken-create.c: loader-test fixture. A valid criterion named "broken-create"
 * whose create() fails after set_error("deliberate failure: the model has no conv
 * layers"), so the host must report that message naming the plugin. */
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
  *state = NULL;
  services->set_error(host, "deliberate failure: the model has no conv layers");
  return -1;
}

static const PrunusCriterionOps broken_ops = {
    .needs = broken_needs, .produces = broken_produces, .score = broken_score};

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "broken-create",
    .version = "1.0.0",
    .summary = "fixture: create() always fails",
    .create = broken_create,
    .criterion = &broken_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
