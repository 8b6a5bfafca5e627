/* hash.c: the 64-bit content hash of hash.h. */
#include "hash.h"

#include <string.h>

uint64_t prunus_hash64(const void *data, size_t n) {
  const uint8_t *p = data;
  const uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full;
  uint64_t lane[4] = {P1 + P2, P2, 0, (uint64_t)0 - P1};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; k++) {
      uint64_t v;
      memcpy(&v, p + i + 8 * k, 8);
      lane[k] += v * P2;
      lane[k] = ((lane[k] << 31) | (lane[k] >> 33)) * P1;
    }
  uint64_t h = (uint64_t)n;
  for (int k = 0; k < 4; k++) h = (h ^ lane[k]) * P1 + P2;
  for (; i < n; i++) h = (h ^ p[i]) * P1;
  h ^= h >> 33, h *= P2, h ^= h >> 29;
  return h;
}

gboolean prunus_file_hash64(const char *path, char out[17]) {
  out[0] = '\0';
  GMappedFile *f = g_mapped_file_new(path, FALSE, NULL);
  if (!f) return FALSE;
  uint64_t h = prunus_hash64(g_mapped_file_get_contents(f), g_mapped_file_get_length(f));
  g_mapped_file_unref(f);
  g_snprintf(out, 17, "%016" G_GINT64_MODIFIER "x", h);
  return TRUE;
}
