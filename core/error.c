/* error.c: the PRUNUS_ERROR domain quark and the library version string;
 * owns nothing else. */
#include <prunus/prunus.h>

#ifndef PRUNUS_VERSION
#error "PRUNUS_VERSION must be defined by the build (core/meson.build c_args)"
#endif

G_DEFINE_QUARK(prunus-error-quark, prunus_error)

const char *prunus_version(void) { return PRUNUS_VERSION; }
