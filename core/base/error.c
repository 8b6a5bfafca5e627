/* error.c: the PRUNUS_ERROR domain quark, the library version string and the
 * "<path>: <message>" error helper (errors.h). */
#include "errors.h"

#include <stdarg.h>

#ifndef PRUNUS_VERSION
#error "PRUNUS_VERSION must be defined by the build (core/meson.build c_args)"
#endif

/* The macro stringifies its first argument, spaces and all. */
// clang-format off
G_DEFINE_QUARK(prunus-error-quark, prunus_error)
// clang-format on

const char *prunus_version(void) { return PRUNUS_VERSION; }

gboolean prunus_fail_path(GError **error, int code, const char *path, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *what = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(error, PRUNUS_ERROR, code, "%s: %s", path, what);
  g_free(what);
  return FALSE;
}
