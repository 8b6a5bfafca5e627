/* convert.h: image bytes to the floats a batch holds (the batch fill's inner loop). */
#ifndef PRUNUS_CONVERT_H
#define PRUNUS_CONVERT_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* dst[j] = (float)src[j] / divisor for j < n, each quotient rounded once, so every
 * level gives the same bits: AVX-512F or AVX2 where the CPU has them and
 * prunus_csr_level() allows, plain C otherwise. streaming: non-temporal stores, for a
 * destination other cores read last (prunus_dataset_fill_batch says why); the caller
 * fences before anyone reads it. */
void prunus_bytes_over(const uint8_t *src, float divisor, float *dst, size_t n, bool streaming);

G_END_DECLS

#endif
