/* strdist.h: how near two short names are, for the "did you mean" hints on config
 * keys and plugin names. */
#ifndef PRUNUS_STRDIST_H
#define PRUNUS_STRDIST_H

#include <glib.h>

G_BEGIN_DECLS

/* Edit distance counting a swap of neighbours as one edit (optimal string alignment);
 * G_MAXUINT for strings over 64 bytes (names are short; longer ones get no hint). */
guint prunus_edit_distance(const char *a, const char *b);
/* The largest distance worth suggesting for a mistyped name: 1 edit for names under
 * 6 characters, 2 from 6 on (a short name is a different name after 2 edits). */
guint prunus_edit_distance_hint_limit(const char *name);

G_END_DECLS

#endif
