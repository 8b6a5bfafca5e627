/* broken-no-entry.c: loader-test fixture. A shared object that exports no
 * prunus_plugin_describe (only a misspelt look-alike), so the loader must report
 * the missing entry symbol with dlerror(). */
#include <prunus/plugin.h>

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_descibe(uint32_t index);

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_descibe(uint32_t index) {
  (void)index;
  return NULL;
}
