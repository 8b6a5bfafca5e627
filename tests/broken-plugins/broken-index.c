/* broken-index.c: loader-test fixture. An entry point that ignores its index and
 * returns the same descriptor for every call, so the loader must refuse the library
 * instead of listing one plugin 256 times. */
#include <prunus/plugin.h>

static int index_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)host, (void)services;
  *state = NULL;
  return 0;
}

static int index_retrain(void *state, int round) {
  (void)state, (void)round;
  return 0;
}

static const PrunusRetrainOps index_ops = {.retrain = index_retrain};

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "broken-index",
    .version = "1.0.0",
    .summary = "fixture: describe() ignores its index",
    .create = index_create,
    PRUNUS_PLUGIN_OPS(retrain, index_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  (void)index;
  return &broken_desc;
}
