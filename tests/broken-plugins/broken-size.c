/* broken-size.c: loader-test fixture. A criterion descriptor whose size is 8, too
 * small to hold even kind and name, so the loader must refuse it naming the size. */
#include <prunus/plugin.h>

static const PrunusPluginDesc broken_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = 8,
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "broken-size",
    .version = "1.0.0",
    .summary = "fixture: descriptor size 8",
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &broken_desc : NULL;
}
