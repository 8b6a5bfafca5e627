/* strdist.c: the edit distance behind the "did you mean" hints (strdist.h). */
#include "strdist.h"

#include <string.h>

guint prunus_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return G_MAXUINT;
  guint rows[3][65]; /* row i of the distance matrix lives in rows[i % 3] */
  for (size_t j = 0; j <= lb; j++) rows[0][j] = (guint)j;
  for (size_t i = 1; i <= la; i++) {
    guint *prev2 = rows[(i + 1) % 3], *prev = rows[(i + 2) % 3], *cur = rows[i % 3];
    cur[0] = (guint)i;
    for (size_t j = 1; j <= lb; j++) {
      guint cost = a[i - 1] == b[j - 1] ? 0u : 1u;
      guint d = MIN(MIN(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d = MIN(d, prev2[j - 2] + 1);
      cur[j] = d;
    }
  }
  return rows[la % 3][lb];
}

guint prunus_edit_distance_hint_limit(const char *name) {
  return MAX(1u, MIN(2u, (guint)strlen(name) / 3));
}
