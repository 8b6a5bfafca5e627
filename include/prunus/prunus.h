/* prunus.h: the public API of libprunus, used by the `prunus` CLI and by
 * programs that embed prunus. Internal contracts live in core/ headers. */
#ifndef PRUNUS_H
#define PRUNUS_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

#if defined(PRUNUS_BUILDING)
#define PRUNUS_API __attribute__((visibility("default")))
#else
#define PRUNUS_API
#endif

#define PRUNUS_ERROR (prunus_error_quark())

/* Error codes of the PRUNUS_ERROR domain. */
typedef enum {
  PRUNUS_ERROR_IO,         /* a file could not be opened, read or written */
  PRUNUS_ERROR_FORMAT,     /* a data file or checkpoint is malformed */
  PRUNUS_ERROR_CONFIG,     /* a config file or --set override is invalid */
  PRUNUS_ERROR_MISMATCH,   /* two inputs disagree (shapes, counts, architectures) */
  PRUNUS_ERROR_PLUGIN,     /* a plugin failed to load or returned an error */
  PRUNUS_ERROR_NUMERIC,    /* NaN/Inf where a number was required */
  PRUNUS_ERROR_INVALID,    /* an argument out of range */
} PrunusErrorCode;

PRUNUS_API GQuark prunus_error_quark(void);
PRUNUS_API const char *prunus_version(void);

G_END_DECLS

#endif /* PRUNUS_H */
