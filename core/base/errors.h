/* errors.h: the one helper that formats "<path>: <message>" errors in the
 * PRUNUS_ERROR domain, shared by the readers and writers of files. */
#ifndef PRUNUS_ERRORS_H
#define PRUNUS_ERRORS_H

#include <prunus/prunus.h>

/* Set "<path>: <message>" with code in the PRUNUS_ERROR domain; returns FALSE. */
gboolean prunus_fail_path(GError **error, int code, const char *path, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

#endif
