/* broken-undefined.c: loader-test fixture. Calls a function no library defines
 * (linked with unresolved symbols ignored), so dlopen(RTLD_NOW) fails and the
 * loader must report dlerror() naming the symbol. */
#include <prunus/plugin.h>

extern void prunus_symbol_that_does_not_exist(void);

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
  prunus_symbol_that_does_not_exist();
  *state = NULL;
  return 0;
}

static const PrunusCriterionOps broken_ops = {
    .needs = broken_needs, .produces = broken_produces, .score = broken_score};

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "broken-undefined",
    .version = "1.0.0",
    .summary = "fixture: references an undefined symbol",
    .create = broken_create,
    .criterion = &broken_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
