/* broken-field.c: loader-test fixture. A criterion descriptor with a name that
 * breaks [a-z0-9-]+ ("Bad Name!") and a NULL criterion ops table, so the loader
 * must report the bad field. */
#include <prunus/plugin.h>

static int broken_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  (void)host, (void)services;
  *state = NULL;
  return 0;
}

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "Bad Name!",
    .version = "1.0.0",
    .summary = "fixture: invalid name and no ops table for its kind",
    .create = broken_create,
    .criterion = NULL,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
