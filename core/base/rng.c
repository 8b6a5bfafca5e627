/* rng.c: xoshiro256** with splitmix64 seeding; uniform, normal, shuffle and
 * named seed derivation, identical on every platform. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void prunus_rng_seed(PrunusRng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t prunus_rng_next(PrunusRng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double prunus_rng_uniform(PrunusRng *r) { return (double)(prunus_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t prunus_rng_below(PrunusRng *r, uint64_t n) {
  if (n == 0) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
  uint64_t x;
  do x = prunus_rng_next(r);
  while (x >= limit);
  return x % n;
}

double prunus_rng_normal(PrunusRng *r) {
  double u1 = prunus_rng_uniform(r), u2 = prunus_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void prunus_rng_shuffle(PrunusRng *r, int *idx, int n) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)prunus_rng_below(r, (uint64_t)i + 1);
    int t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

uint64_t prunus_seed_derive(uint64_t seed, const char *purpose) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a over the purpose */
  for (const char *p = purpose; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  uint64_t x = seed ^ h;
  return splitmix64(&x);
}
