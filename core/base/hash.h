/* hash.h: a fast 64-bit hash of bytes and of files, for telling content that changed
 * (a dataset behind a cache entry, a checkpoint behind a summary, a mask behind a
 * latency measurement) from content that did not. Not for adversaries. */
#ifndef PRUNUS_HASH_H
#define PRUNUS_HASH_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* A 64-bit hash of n bytes in four independent lanes (xxHash64's round and merge
 * constants): ~10x cheaper than SHA-256, the same on every platform. */
uint64_t prunus_hash64(const void *p, size_t n);

/* prunus_hash64 of the file at path, as 16 lower-case hex digits into out; FALSE (out
 * "") when it cannot be read. */
gboolean prunus_file_hash64(const char *path, char out[17]);

G_END_DECLS

#endif
