/* wrong-signature.c: compile-time fixture, never built into a library. Its entry
 * point takes an int index: plugin.h declares the real prototype, so compiling
 * this MUST fail with "conflicting types for 'prunus_plugin_describe'" (the test
 * plugin-abi/wrong-signature runs the compiler on it and checks that). */
#include <prunus/plugin.h>

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(int index) {
  (void)index;
  return NULL;
}
