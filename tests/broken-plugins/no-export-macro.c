/* no-export-macro.c: loader-test fixture. A valid retrain plugin "no-export-macro"
 * whose entry point is defined without PRUNUS_PLUGIN_EXPORT in a library built
 * with hidden visibility: plugin.h's prototype carries the visibility, so the
 * symbol is still exported and the plugin loads. It sets its ops with
 * PRUNUS_PLUGIN_OPS (ops_size = sizeof the table). */
#include <prunus/plugin.h>

static int nothing_retrain(void *state, int round) {
  (void)state, (void)round;
  return 0;
}

static int nothing_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)host, (void)services;
  *state = NULL;
  return 0;
}

static const PrunusRetrainOps nothing_ops = {.retrain = nothing_retrain};

static const PrunusPluginDesc nothing_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "no-export-macro",
    .version = "1.0.0",
    .summary = "fixture: entry point defined without PRUNUS_PLUGIN_EXPORT",
    .create = nothing_create,
    PRUNUS_PLUGIN_OPS(retrain, nothing_ops),
};

const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &nothing_desc : NULL;
}
