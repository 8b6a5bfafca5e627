/* sparse_input.c: a dense layer's weight gradient and forward over the nonzero part of
 * its input, by blocks of 4 features or 4 samples, and the grouping of samples that
 * share their zeros (sparse_input.h); AVX-512. */
#include "sparse_input.h"

#include "csr.h"
#include "gemm.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

enum { GROUP = PRUNUS_SPARSE_INPUT_GROUP };

bool prunus_sparse_input_available(void) {
  return prunus_csr_level() >= PRUNUS_CSR_AVX512 && !prunus_gemm_reference_forced();
}

/* ------------------------------------------------------------------------ */
/* density */

/* In a matrix of `lines` lines of `len` values (line l, value i at l * line_step +
 * i * step), the (block of 4 consecutive lines, position i) pairs where one of the
 * block's values is nonzero, counted: the weight gradient's groups are blocks of 4
 * features of each sample (lines: features), the forward's blocks of 4 samples. With
 * `order`, line p of the matrix is line order[p]. */
static size_t nonzero_blocks_scalar(const float *x, int lines, size_t line_step, int len,
                                    size_t step, const int32_t *order) {
  size_t n = 0;
  for (int l = 0; l < lines; l += GROUP)
    for (int i = 0; i < len; i++)
      for (int p = l; p < MIN(l + GROUP, lines); p++)
        if (x[(size_t)(order ? order[p] : p) * line_step + (size_t)i * step] != 0.0f) {
          n++;
          break;
        }
  return n;
}

/* 16 features at a time: their nonzero bits, folded so that bit 4q says whether group q
 * of the 4 has a nonzero (16 is a multiple of GROUP, so groups never straddle). */
__attribute__((target("avx512f"))) static size_t nonzero_groups_avx512(const float *x, int B,
                                                                       int in) {
  size_t n = 0;
  for (int b = 0; b < B; b++) {
    const float *row = x + (size_t)b * in;
    for (int j = 0; j < in; j += 16) {
      __mmask16 lanes = prunus_lanes_mask(in - j);
      __m512 v = _mm512_maskz_loadu_ps(lanes, row + j);
      unsigned m = _mm512_mask_cmpneq_ps_mask(lanes, v, _mm512_setzero_ps());
      n += (size_t)__builtin_popcount((m | m >> 1 | m >> 2 | m >> 3) & 0x1111u);
    }
  }
  return n;
}

__attribute__((target("avx512f"))) static size_t nonzero_blocks_avx512(const float *x,
                                                                       const int32_t *order, int B,
                                                                       int in) {
  size_t n = 0;
  for (int b = 0; b < B; b += GROUP)
    for (int j = 0; j < in; j += 16) {
      __mmask16 lanes = prunus_lanes_mask(in - j);
      unsigned any = 0;
      for (int p = b; p < MIN(b + GROUP, B); p++) {
        const float *row = x + (size_t)(order ? order[p] : p) * in;
        any |= _mm512_mask_cmpneq_ps_mask(lanes, _mm512_maskz_loadu_ps(lanes, row + j),
                                          _mm512_setzero_ps());
      }
      n += (size_t)__builtin_popcount(any);
    }
  return n;
}

double prunus_sparse_input_sample_density(const float *x, const int32_t *order, int B, int in) {
  g_return_val_if_fail(x != NULL || B == 0 || in == 0, 1.0);
  size_t pairs = (size_t)((B + GROUP - 1) / GROUP) * (size_t)in;
  if (pairs == 0) return 0.0;
  size_t n = prunus_csr_level() >= PRUNUS_CSR_AVX512
                 ? nonzero_blocks_avx512(x, order, B, in)
                 : nonzero_blocks_scalar(x, B, (size_t)in, in, 1, order);
  return (double)n / (double)pairs;
}

double prunus_sparse_input_density(const float *x, int B, int in) {
  g_return_val_if_fail(x != NULL || B == 0 || in == 0, 1.0);
  size_t pairs = (size_t)B * (size_t)((in + GROUP - 1) / GROUP);
  if (pairs == 0) return 0.0;
  size_t n = prunus_csr_level() >= PRUNUS_CSR_AVX512
                 ? nonzero_groups_avx512(x, B, in)
                 : nonzero_blocks_scalar(x, in, 1, B, (size_t)in, NULL);
  return (double)n / (double)pairs;
}

/* ------------------------------------------------------------------------ */
/* the forward's groups of samples */

/* The greedy grouping looks at the samples this many at a time (a multiple of GROUP):
 * its cost grows with the window times the batch, not with the batch squared. */
enum { GROUP_WINDOW = 128 };

/* bits[b * words + w], bit t: whether x[b][64 w + t] is nonzero (bits past `in` stay 0;
 * bits comes zeroed). */
static void nonzero_bits_scalar(const float *x, int B, int in, int words, uint64_t *bits) {
  for (int b = 0; b < B; b++)
    for (int j = 0; j < in; j++)
      if (x[(size_t)b * in + j] != 0.0f) bits[(size_t)b * words + j / 64] |= 1ull << (j % 64);
}

__attribute__((target("avx512f"))) static void nonzero_bits_avx512(const float *x, int B, int in,
                                                                   int words, uint64_t *bits) {
  for (int b = 0; b < B; b++) {
    const float *row = x + (size_t)b * in;
    for (int j = 0; j < in; j += 16) { /* 16 divides 64: a mask never straddles two words */
      __mmask16 lanes = prunus_lanes_mask(in - j);
      unsigned m = _mm512_mask_cmpneq_ps_mask(lanes, _mm512_maskz_loadu_ps(lanes, row + j),
                                              _mm512_setzero_ps());
      bits[(size_t)b * words + j / 64] |= (uint64_t)m << (j % 64);
    }
  }
}

/* The grouping proper, over the samples' nonzero bits: written once, compiled twice
 * (below), so that where the CPU has it each __builtin_popcountll is one instruction. */
__attribute__((always_inline)) static inline size_t group_by_bits(const uint64_t *bits, int B,
                                                                  int in, int words,
                                                                  int32_t *order) {
  /* A group has at least the nonzero features of its densest sample: where single
   * values are nonzero more often than the forward's bound, no grouping brings the
   * share under it, and the samples keep their order. */
  size_t alive = 0;
  for (size_t i = 0; i < (size_t)B * words; i++) alive += (size_t)__builtin_popcountll(bits[i]);
  bool greedy = (double)alive <= PRUNUS_SPARSE_INPUT_MAX_SAMPLE_DENSITY * (double)B * in;
  bool used[PRUNUS_SPARSE_INPUT_MAX_BATCH] = {false};
  int n = 0;
  for (int w0 = 0; w0 < B; w0 += GROUP_WINDOW) {
    int w1 = MIN(B, w0 + GROUP_WINDOW);
    for (int a = w0; a < w1; a++) {
      if (used[a]) continue;
      used[a] = true;
      order[n++] = a;
      if (!greedy) continue;
      /* the GROUP - 1 unused samples of the window nearest to a (fewest features where
       * one of the two is zero and the other not), the lowest index first on ties */
      int best[GROUP - 1], dist[GROUP - 1], found = 0;
      const uint64_t *ba = bits + (size_t)a * words;
      for (int b = a + 1; b < w1; b++) {
        if (used[b]) continue;
        const uint64_t *bb = bits + (size_t)b * words;
        int d = 0;
        for (int w = 0; w < words; w++) d += __builtin_popcountll(ba[w] ^ bb[w]);
        if (found == GROUP - 1 && d >= dist[GROUP - 2]) continue;
        int k = found < GROUP - 1 ? found++ : GROUP - 2;
        for (; k > 0 && dist[k - 1] > d; k--) best[k] = best[k - 1], dist[k] = dist[k - 1];
        best[k] = b, dist[k] = d;
      }
      for (int k = 0; k < found; k++) used[best[k]] = true, order[n++] = best[k];
    }
  }
  /* the (group, feature) pairs with a nonzero, in the groups just formed */
  size_t pairs = 0;
  for (int s = 0; s < B; s += GROUP)
    for (int w = 0; w < words; w++) {
      uint64_t any = 0;
      for (int p = s; p < MIN(s + GROUP, B); p++) any |= bits[(size_t)order[p] * words + w];
      pairs += (size_t)__builtin_popcountll(any);
    }
  return pairs;
}

__attribute__((target("popcnt"))) static size_t group_by_bits_popcnt(const uint64_t *bits, int B,
                                                                     int in, int words,
                                                                     int32_t *order) {
  return group_by_bits(bits, B, in, words, order);
}

static size_t group_by_bits_generic(const uint64_t *bits, int B, int in, int words,
                                    int32_t *order) {
  return group_by_bits(bits, B, in, words, order);
}

double prunus_sparse_input_group_samples(const float *x, int B, int in, int32_t *order) {
  g_return_val_if_fail(B >= 0 && B <= PRUNUS_SPARSE_INPUT_MAX_BATCH && in >= 0, 1.0);
  g_return_val_if_fail(B == 0 || (order != NULL && (x != NULL || in == 0)), 1.0);
  size_t cells = (size_t)((B + GROUP - 1) / GROUP) * (size_t)in;
  if (cells == 0) {
    for (int b = 0; b < B; b++) order[b] = b;
    return 0.0;
  }
  int words = (in + 63) / 64;
  uint64_t *bits = g_new0(uint64_t, (size_t)B * words);
  bool avx512 = prunus_csr_level() >= PRUNUS_CSR_AVX512;
  if (avx512)
    nonzero_bits_avx512(x, B, in, words, bits);
  else
    nonzero_bits_scalar(x, B, in, words, bits);
  size_t pairs = avx512 ? group_by_bits_popcnt(bits, B, in, words, order)
                        : group_by_bits_generic(bits, B, in, words, order);
  g_free(bits);
  return (double)pairs / (double)cells;
}

/* ------------------------------------------------------------------------ */
/* weight gradient */

/* The positions where one of the rows row[0 .. nrows) (nrows <= 4, len floats each) is
 * nonzero, in increasing order: their indices in idx and each row's value in val[p]
 * (zero for p >= nrows); returns how many. The arrays hold len + 16 (whole vectors are
 * stored). The weight gradient reads 4 features' rows of x^T (positions: samples), the
 * forward 4 samples' rows of x (positions: features). */
__attribute__((target("avx512f"))) static int gather_rows(const float *const row[GROUP], int len,
                                                          int nrows, int32_t *idx,
                                                          float *const val[GROUP]) {
  int n = 0;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int i = 0; i < len; i += 16) {
    __mmask16 lanes = prunus_lanes_mask(len - i);
    __m512 v[GROUP];
    __mmask16 any = 0;
    for (int p = 0; p < GROUP; p++) {
      v[p] = p < nrows ? _mm512_maskz_loadu_ps(lanes, row[p] + i) : _mm512_setzero_ps();
      any |= _mm512_cmpneq_ps_mask(v[p], _mm512_setzero_ps());
    }
    /* compress into a register, then store it whole: a compressing store to memory is
     * microcoded on some CPUs (docs/perf-log.md) */
    _mm512_storeu_si512(
        idx + n, _mm512_maskz_compress_epi32(any, _mm512_add_epi32(_mm512_set1_epi32(i), lane)));
    for (int p = 0; p < GROUP; p++)
      _mm512_storeu_ps(val[p] + n, _mm512_maskz_compress_ps(any, v[p]));
    n += __builtin_popcount(any);
  }
  return n;
}

/* res[p][k] = init[c0 + 16k ..] (zero without init) + the sum over the n listed
 * positions e of val[p][e] * src[idx[e]][c0 + 16k ..]: columns c0 .. c0 + 16 NV of src
 * (rows of ld floats; the last vector cut by `last`) for the 4 rows. NV is a constant
 * where this is inlined, and the accumulators are touched only by loops of NV steps, so
 * they stay in registers (used elsewhere, GCC keeps them on the stack). */
__attribute__((target("avx512f"), always_inline)) static inline void four_sums(
    const int32_t *idx, float *const val[GROUP], int n, const float *src, int ld, int c0, int NV,
    __mmask16 last, const float *init, __m512 res[GROUP][4]) {
  __m512 a0[4], a1[4], a2[4], a3[4];
  for (int k = 0; k < NV; k++)
    a0[k] = a1[k] = a2[k] = a3[k] =
        init ? _mm512_maskz_loadu_ps(k == NV - 1 ? last : 0xFFFF, init + c0 + 16 * k)
             : _mm512_setzero_ps();
  for (int e = 0; e < n; e++) {
    const float *r = src + (size_t)idx[e] * ld + c0;
    __m512 s0 = _mm512_set1_ps(val[0][e]), s1 = _mm512_set1_ps(val[1][e]);
    __m512 s2 = _mm512_set1_ps(val[2][e]), s3 = _mm512_set1_ps(val[3][e]);
    for (int k = 0; k < NV; k++) {
      __m512 d = _mm512_maskz_loadu_ps(k == NV - 1 ? last : 0xFFFF, r + 16 * k);
      a0[k] = _mm512_fmadd_ps(s0, d, a0[k]);
      a1[k] = _mm512_fmadd_ps(s1, d, a1[k]);
      a2[k] = _mm512_fmadd_ps(s2, d, a2[k]);
      a3[k] = _mm512_fmadd_ps(s3, d, a3[k]);
    }
  }
  for (int k = 0; k < NV; k++) {
    res[0][k] = a0[k];
    res[1][k] = a1[k];
    res[2][k] = a2[k];
    res[3][k] = a3[k];
  }
}

/* four_sums over the 64 columns c0 .. c0 + 64 (cut at ld, the row width) with NV fixed
 * per case, so that each case keeps its accumulators in registers; returns NV. 64
 * columns are 16 accumulators, and 256 bytes of each listed row of src. */
__attribute__((target("avx512f"))) static int chunk_sums(const int32_t *idx,
                                                         float *const val[GROUP], int n,
                                                         const float *src, int ld, int c0,
                                                         const float *init, __m512 res[GROUP][4],
                                                         __mmask16 *last_out) {
  int w = MIN(64, ld - c0);
  int NV = (w + 15) / 16;
  __mmask16 last = prunus_lanes_mask(w - 16 * (NV - 1));
  switch (NV) {
  case 4:
    four_sums(idx, val, n, src, ld, c0, 4, last, init, res);
    break;
  case 3:
    four_sums(idx, val, n, src, ld, c0, 3, last, init, res);
    break;
  case 2:
    four_sums(idx, val, n, src, ld, c0, 2, last, init, res);
    break;
  default:
    four_sums(idx, val, n, src, ld, c0, 1, last, init, res);
    break;
  }
  *last_out = last;
  return NV;
}

/* Write (or add) res into dW (out, in) at rows c0 .. c0 + 16 NV (cut at out), columns
 * j .. j + nj. A full group is transposed in registers: 16 outputs x 4 features become
 * four vectors whose 128-bit lanes are one output's 4 consecutive dW entries. */
__attribute__((target("avx512f"))) static void store_group(__m512 res[GROUP][4], int NV, int c0,
                                                           int j, int nj, int out, int in,
                                                           float *dW, bool accumulate) {
  for (int k = 0; k < NV; k++) {
    int i0 = c0 + 16 * k;
    if (nj == GROUP) {
      __m512 t0 = _mm512_unpacklo_ps(res[0][k], res[1][k]);
      __m512 t1 = _mm512_unpackhi_ps(res[0][k], res[1][k]);
      __m512 t2 = _mm512_unpacklo_ps(res[2][k], res[3][k]);
      __m512 t3 = _mm512_unpackhi_ps(res[2][k], res[3][k]);
      /* u[r]'s lane q: output i0 + 4q + r, features j .. j + 3 */
      __m512 u[4] = {_mm512_shuffle_ps(t0, t2, 0x44), _mm512_shuffle_ps(t0, t2, 0xEE),
                     _mm512_shuffle_ps(t1, t3, 0x44), _mm512_shuffle_ps(t1, t3, 0xEE)};
      for (int r = 0; r < 4; r++) {
#define PRUNUS_STORE_LANE(q)                                                 \
  do {                                                                       \
    int i = i0 + 4 * (q) + r;                                                \
    if (i < out) {                                                           \
      float *dst = dW + (size_t)i * in + j;                                  \
      __m128 v = _mm512_extractf32x4_ps(u[r], q);                            \
      _mm_storeu_ps(dst, accumulate ? _mm_add_ps(_mm_loadu_ps(dst), v) : v); \
    }                                                                        \
  } while (0)
        PRUNUS_STORE_LANE(0);
        PRUNUS_STORE_LANE(1);
        PRUNUS_STORE_LANE(2);
        PRUNUS_STORE_LANE(3);
#undef PRUNUS_STORE_LANE
      }
    } else {
      float cols[GROUP][16];
      for (int p = 0; p < GROUP; p++) _mm512_storeu_ps(cols[p], res[p][k]);
      for (int l = 0; l < 16 && i0 + l < out; l++)
        for (int p = 0; p < nj; p++) {
          float *dst = dW + (size_t)(i0 + l) * in + j + p;
          *dst = accumulate ? *dst + cols[p][l] : cols[p][l];
        }
    }
  }
}

__attribute__((target("avx512f"))) static void wgrad_avx512(const float *xT, const float *dy, int B,
                                                            int in, int out, float *dW,
                                                            bool accumulate, int g0, int g1) {
  int32_t idx[PRUNUS_SPARSE_INPUT_MAX_BATCH + 16];
  float vals[GROUP][PRUNUS_SPARSE_INPUT_MAX_BATCH + 16];
  float *const val[GROUP] = {vals[0], vals[1], vals[2], vals[3]};
  __m512 res[GROUP][4];
  for (int g = g0; g < g1; g++) {
    int j = g * GROUP, nj = MIN(GROUP, in - j);
    const float *rows[GROUP];
    for (int p = 0; p < nj; p++) rows[p] = xT + (size_t)(j + p) * B;
    int n = gather_rows(rows, B, nj, idx, val);
    /* the dy rows' 256 bytes of all B samples (32 KB at B = 128) stay in L1 across the
     * group */
    for (int c0 = 0; c0 < out; c0 += 64) {
      __mmask16 last;
      int NV = chunk_sums(idx, val, n, dy, out, c0, NULL, res, &last);
      store_group(res, NV, c0, j, nj, out, in, dW, accumulate);
    }
  }
}

void prunus_sparse_input_wgrad(const float *xT, const float *dy, int B, int in, int out, float *dW,
                               bool accumulate, int g0, int g1) {
  g_return_if_fail(B >= 1 && B <= PRUNUS_SPARSE_INPUT_MAX_BATCH && in >= 1 && out >= 1);
  g_return_if_fail(g0 >= 0 && g0 <= g1 && g1 <= (in + GROUP - 1) / GROUP);
  g_return_if_fail(prunus_sparse_input_available());
  wgrad_avx512(xT, dy, B, in, out, dW, accumulate, g0, g1);
}

/* ------------------------------------------------------------------------ */
/* forward */

__attribute__((target("avx512f"))) static void forward_avx512(const float *x, const int32_t *order,
                                                              const float *Wt, const float *bias,
                                                              int B, int in, int out, float *y,
                                                              int s0, int s1) {
  const size_t stride = (size_t)in + 16;
  int32_t *idx = g_new(int32_t, stride);
  float *vals = g_new(float, GROUP *stride);
  float *const val[GROUP] = {vals, vals + stride, vals + 2 * stride, vals + 3 * stride};
  __m512 res[GROUP][4];
  for (int s = s0; s < s1; s++) {
    int b = s * GROUP, nb = MIN(GROUP, B - b);
    int sample[GROUP];
    const float *rows[GROUP];
    for (int p = 0; p < nb; p++) {
      sample[p] = order ? order[b + p] : b + p;
      rows[p] = x + (size_t)sample[p] * in;
    }
    int n = gather_rows(rows, in, nb, idx, val);
    for (int c0 = 0; c0 < out; c0 += 64) {
      __mmask16 last;
      int NV = chunk_sums(idx, val, n, Wt, out, c0, bias, res, &last);
      for (int p = 0; p < nb; p++)
        for (int k = 0; k < NV; k++)
          _mm512_mask_storeu_ps(y + (size_t)sample[p] * out + c0 + 16 * k,
                                k == NV - 1 ? last : 0xFFFF, res[p][k]);
    }
  }
  g_free(vals);
  g_free(idx);
}

void prunus_sparse_input_forward(const float *x, const int32_t *order, const float *Wt,
                                 const float *bias, int B, int in, int out, float *y, int s0,
                                 int s1) {
  g_return_if_fail(B >= 1 && in >= 1 && out >= 1);
  g_return_if_fail(s0 >= 0 && s0 <= s1 && s1 <= (B + GROUP - 1) / GROUP);
  g_return_if_fail(prunus_sparse_input_available());
  forward_avx512(x, order, Wt, bias, B, in, out, y, s0, s1);
}
