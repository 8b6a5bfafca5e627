/* rng.h: a small seeded PRNG (xoshiro256** seeded by splitmix64) whose stream
 * is the same on every platform and GLib version, so seeds reproduce runs. */
#ifndef PRUNUS_RNG_H
#define PRUNUS_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} PrunusRng;

void prunus_rng_seed(PrunusRng *r, uint64_t seed);
uint64_t prunus_rng_next(PrunusRng *r);
/* Uniform in [0, 1). */
double prunus_rng_uniform(PrunusRng *r);
/* Uniform integer in [0, n). */
uint64_t prunus_rng_below(PrunusRng *r, uint64_t n);
/* Standard normal (Box-Muller). */
double prunus_rng_normal(PrunusRng *r);
/* Fisher-Yates shuffle of idx (n). */
void prunus_rng_shuffle(PrunusRng *r, int *idx, int n);
/* Derive an independent seed for a purpose (e.g. "init", "shuffle") from a base seed. */
uint64_t prunus_seed_derive(uint64_t seed, const char *purpose);

#endif
