/* layers_norm.c: batchnorm, as PyTorch's BatchNorm1d/2d: per channel (per unit after a
 * dense layer) scale and shift parameters, running mean/variance buffers, batch statistics
 * in training; its passes run in AVX-512, AVX2 or plain C, chosen at run time. */
#include "conv_wino.h"
#include "layer.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* x (B, C, H, W) -> y (B, C, H, W); statistics over the N = B*H*W values of a channel.
 * params + b_off: gamma (C) then beta (C); params + buf_off: running_mean (C) then
 * running_var (C). Training scratch: the batch's mean (C), biased variance (C) and
 * 1/sqrt(var + eps) (C), written by forward for backward and update_buffers. */

static gboolean bn_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                         GError **error) {
  (void)in_names;
  const PrunusLayerSpec *spec = &l->spec;
  if (!(spec->eps > 0.0f) || !(spec->momentum >= 0.0f && spec->momentum <= 1.0f)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "batchnorm needs eps > 0 and momentum in [0, 1], found eps=%g momentum=%g",
                (double)spec->eps, (double)spec->momentum);
    return FALSE;
  }
  l->out = ins[0];
  l->b_len = (size_t)2 * ins[0].c;
  l->buf_len = (size_t)2 * ins[0].c;
  return TRUE;
}

static size_t bn_scratch(const PrunusLayer *l, int B) {
  (void)B;
  return (size_t)3 * l->in.c;
}

/* ------------------------------------------------------------------------ */
/* row kernels: one image's plane of a channel (n floats), AVX-512, AVX2 or plain C,
 * chosen per call by prunus_conv_wino_isa (tests lower it to reach each version).
 *
 * Sums go in BN_LANES float lanes, element i of a row into lane i mod BN_LANES, and
 * each row's lanes are added into BN_LANES double lanes (acc), which bn_fold adds up
 * in lane order once per channel: rows stay short enough for float, the channel's
 * total (up to B*H*W values) is kept in double, and the order is fixed, so every call
 * and every team split gives the same bits. The vector versions share the lane layout
 * and the operations (FMA), so AVX-512 and AVX2 give the same bits too; plain C rounds
 * the products before adding (no FMA in the baseline ISA). */
#define BN_LANES 32

static double bn_fold(const double *acc) {
  double s = 0.0;
  for (int j = 0; j < BN_LANES; j++) s += acc[j];
  return s;
}

/* The five row operations of one version. */
typedef struct {
  /* acc += lanes of x */
  void (*sum)(const float *x, size_t n, double *acc);
  /* acc += lanes of (x - mu)^2 */
  void (*sq_dev)(const float *x, size_t n, float mu, double *acc);
  /* acc_dy += lanes of dy, acc_dyx += lanes of dy (x - mu) */
  void (*dy_sums)(const float *dy, const float *x, size_t n, float mu, double *acc_dy,
                  double *acc_dyx);
  /* y = x a + s */
  void (*affine)(const float *x, size_t n, float a, float s, float *y);
  /* dx = dy a + (x k1 + k0) */
  void (*affine2)(const float *dy, const float *x, size_t n, float a, float k1, float k0,
                  float *dx);
} BnRowOps;

static void sum_c(const float *restrict x, size_t n, double *acc) {
  float s[BN_LANES] = {0};
  for (size_t i = 0; i < n; i++) s[i % BN_LANES] += x[i];
  for (int j = 0; j < BN_LANES; j++) acc[j] += s[j];
}

static void sq_dev_c(const float *restrict x, size_t n, float mu, double *acc) {
  float s[BN_LANES] = {0};
  for (size_t i = 0; i < n; i++) {
    float d = x[i] - mu;
    s[i % BN_LANES] += d * d;
  }
  for (int j = 0; j < BN_LANES; j++) acc[j] += s[j];
}

static void dy_sums_c(const float *restrict dy, const float *restrict x, size_t n, float mu,
                      double *acc_dy, double *acc_dyx) {
  float a[BN_LANES] = {0}, b[BN_LANES] = {0};
  for (size_t i = 0; i < n; i++) {
    a[i % BN_LANES] += dy[i];
    b[i % BN_LANES] += dy[i] * (x[i] - mu);
  }
  for (int j = 0; j < BN_LANES; j++) acc_dy[j] += a[j], acc_dyx[j] += b[j];
}

static void affine_c(const float *restrict x, size_t n, float a, float s, float *restrict y) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] * a + s;
}

static void affine2_c(const float *restrict dy, const float *restrict x, size_t n, float a,
                      float k1, float k0, float *restrict dx) {
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * a + (x[i] * k1 + k0);
}

static const BnRowOps bn_ops_c = {sum_c, sq_dev_c, dy_sums_c, affine_c, affine2_c};

/* AVX-512: lanes 0-15 and 16-31 in two registers; a row's last n mod 32 values
 * through masked loads (the masked-off lanes add exact zeros). */
#pragma GCC push_options
#pragma GCC target("avx512f")

static inline void tail_masks512(size_t r, __mmask16 *k0, __mmask16 *k1) {
  *k0 = (__mmask16)(r >= 16 ? 0xffffu : (1u << r) - 1u);
  *k1 = (__mmask16)(r > 16 ? (1u << (r - 16)) - 1u : 0u);
}

static inline void fold512(__m512 lo, __m512 hi, double *acc) {
  const __m512 v[2] = {lo, hi};
  for (int h = 0; h < 2; h++) {
    __m256 a = _mm512_castps512_ps256(v[h]);
    __m256 b = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[h]), 1));
    double *d = acc + 16 * h;
    _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), _mm512_cvtps_pd(a)));
    _mm512_storeu_pd(d + 8, _mm512_add_pd(_mm512_loadu_pd(d + 8), _mm512_cvtps_pd(b)));
  }
}

static void sum_512(const float *x, size_t n, double *acc) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
  }
  if (i < n) {
    __mmask16 k0, k1;
    tail_masks512(n - i, &k0, &k1);
    s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(k0, x + i));
    s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(k1, x + i + 16));
  }
  fold512(s0, s1, acc);
}

static void sq_dev_512(const float *x, size_t n, float mu, double *acc) {
  const __m512 m = _mm512_set1_ps(mu);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), m);
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  if (i < n) {
    __mmask16 k0, k1;
    tail_masks512(n - i, &k0, &k1);
    __m512 d0 = _mm512_maskz_sub_ps(k0, _mm512_maskz_loadu_ps(k0, x + i), m);
    __m512 d1 = _mm512_maskz_sub_ps(k1, _mm512_maskz_loadu_ps(k1, x + i + 16), m);
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  fold512(s0, s1, acc);
}

static void dy_sums_512(const float *dy, const float *x, size_t n, float mu, double *acc_dy,
                        double *acc_dyx) {
  const __m512 m = _mm512_set1_ps(mu);
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 g0 = _mm512_loadu_ps(dy + i), g1 = _mm512_loadu_ps(dy + i + 16);
    a0 = _mm512_add_ps(a0, g0), a1 = _mm512_add_ps(a1, g1);
    b0 = _mm512_fmadd_ps(g0, _mm512_sub_ps(_mm512_loadu_ps(x + i), m), b0);
    b1 = _mm512_fmadd_ps(g1, _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), m), b1);
  }
  if (i < n) {
    __mmask16 k0, k1;
    tail_masks512(n - i, &k0, &k1);
    __m512 g0 = _mm512_maskz_loadu_ps(k0, dy + i), g1 = _mm512_maskz_loadu_ps(k1, dy + i + 16);
    a0 = _mm512_add_ps(a0, g0), a1 = _mm512_add_ps(a1, g1);
    b0 = _mm512_fmadd_ps(g0, _mm512_maskz_sub_ps(k0, _mm512_maskz_loadu_ps(k0, x + i), m), b0);
    b1 = _mm512_fmadd_ps(g1, _mm512_maskz_sub_ps(k1, _mm512_maskz_loadu_ps(k1, x + i + 16), m), b1);
  }
  fold512(a0, a1, acc_dy);
  fold512(b0, b1, acc_dyx);
}

static void affine_512(const float *x, size_t n, float a, float s, float *y) {
  const __m512 va = _mm512_set1_ps(a), vs = _mm512_set1_ps(s);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(x + i), va, vs));
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), va, vs));
  }
}

static void affine2_512(const float *dy, const float *x, size_t n, float a, float k1, float k0,
                        float *dx) {
  const __m512 va = _mm512_set1_ps(a), v1 = _mm512_set1_ps(k1), v0 = _mm512_set1_ps(k0);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dx + i, _mm512_fmadd_ps(_mm512_loadu_ps(dy + i), va,
                                             _mm512_fmadd_ps(_mm512_loadu_ps(x + i), v1, v0)));
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
    __m512 t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), v1, v0);
    _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dy + i), va, t));
  }
}

#pragma GCC pop_options

static const BnRowOps bn_ops_512 = {sum_512, sq_dev_512, dy_sums_512, affine_512, affine2_512};

/* AVX2: the same 32 lanes in four registers, the tail through masked loads. */
#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* Lanes j of 8 with j < r (r may be <= 0: none). */
static inline __m256i mask256(long r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)MAX(MIN(r, 8), 0)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline void fold256(const __m256 *v, double *acc) {
  for (int q = 0; q < 4; q++) {
    double *d = acc + 8 * q;
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v[q]));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v[q], 1));
    _mm256_storeu_pd(d, _mm256_add_pd(_mm256_loadu_pd(d), lo));
    _mm256_storeu_pd(d + 4, _mm256_add_pd(_mm256_loadu_pd(d + 4), hi));
  }
}

static void sum_256(const float *x, size_t n, double *acc) {
  __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                 _mm256_setzero_ps()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int q = 0; q < 4; q++) s[q] = _mm256_add_ps(s[q], _mm256_loadu_ps(x + i + 8 * q));
  if (i < n)
    for (int q = 0; q < 4; q++)
      s[q] = _mm256_add_ps(s[q], _mm256_maskload_ps(x + i + 8 * q, mask256((long)(n - i) - 8 * q)));
  fold256(s, acc);
}

static void sq_dev_256(const float *x, size_t n, float mu, double *acc) {
  const __m256 m = _mm256_set1_ps(mu);
  __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                 _mm256_setzero_ps()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int q = 0; q < 4; q++) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * q), m);
      s[q] = _mm256_fmadd_ps(d, d, s[q]);
    }
  if (i < n)
    for (int q = 0; q < 4; q++) {
      __m256i k = mask256((long)(n - i) - 8 * q);
      __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i + 8 * q, k), m),
                               _mm256_castsi256_ps(k));
      s[q] = _mm256_fmadd_ps(d, d, s[q]);
    }
  fold256(s, acc);
}

static void dy_sums_256(const float *dy, const float *x, size_t n, float mu, double *acc_dy,
                        double *acc_dyx) {
  const __m256 m = _mm256_set1_ps(mu);
  __m256 a[4], b[4];
  for (int q = 0; q < 4; q++) a[q] = b[q] = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int q = 0; q < 4; q++) {
      __m256 g = _mm256_loadu_ps(dy + i + 8 * q);
      a[q] = _mm256_add_ps(a[q], g);
      b[q] = _mm256_fmadd_ps(g, _mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * q), m), b[q]);
    }
  if (i < n)
    for (int q = 0; q < 4; q++) {
      __m256i k = mask256((long)(n - i) - 8 * q);
      __m256 g = _mm256_maskload_ps(dy + i + 8 * q, k);
      __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i + 8 * q, k), m),
                               _mm256_castsi256_ps(k));
      a[q] = _mm256_add_ps(a[q], g);
      b[q] = _mm256_fmadd_ps(g, d, b[q]);
    }
  fold256(a, acc_dy);
  fold256(b, acc_dyx);
}

static void affine_256(const float *x, size_t n, float a, float s, float *y) {
  const __m256 va = _mm256_set1_ps(a), vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vs));
  if (i < n) {
    __m256i k = mask256((long)(n - i));
    _mm256_maskstore_ps(y + i, k, _mm256_fmadd_ps(_mm256_maskload_ps(x + i, k), va, vs));
  }
}

static void affine2_256(const float *dy, const float *x, size_t n, float a, float k1, float k0,
                        float *dx) {
  const __m256 va = _mm256_set1_ps(a), v1 = _mm256_set1_ps(k1), v0 = _mm256_set1_ps(k0);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(_mm256_loadu_ps(dy + i), va,
                                             _mm256_fmadd_ps(_mm256_loadu_ps(x + i), v1, v0)));
  if (i < n) {
    __m256i k = mask256((long)(n - i));
    __m256 t = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, k), v1, v0);
    _mm256_maskstore_ps(dx + i, k, _mm256_fmadd_ps(_mm256_maskload_ps(dy + i, k), va, t));
  }
}

#pragma GCC pop_options

static const BnRowOps bn_ops_256 = {sum_256, sq_dev_256, dy_sums_256, affine_256, affine2_256};

static const BnRowOps *bn_row_ops(void) {
  switch (prunus_conv_wino_isa()) {
  case PRUNUS_CONV_ISA_AVX512:
    return &bn_ops_512;
  case PRUNUS_CONV_ISA_AVX2:
    return &bn_ops_256;
  default:
    return &bn_ops_c;
  }
}

/* ------------------------------------------------------------------------ */
/* the layer */

/* One pass split over the layer's team by channels: every channel's sums are taken
 * by one thread in one order, so any split gives the same bits. */
typedef struct {
  const PrunusLayer *l;
  const BnRowOps *ops;
  const float *params;
  const float *x, *dy;
  float *y, *dx, *grads, *scratch;
  int B;
} BnCall;

/* The per-channel affine map y = x * a[c] + s[c] of a channel, from its statistics. */
static void bn_affine(const BnCall *k, int c, float mean, float invstd, float *a, float *s) {
  const float *gamma = k->params + k->l->b_off, *beta = gamma + k->l->in.c;
  *a = gamma[c] * invstd;
  *s = beta[c] - mean * *a;
}

static void bn_forward_part(void *arg, int part, int n_parts) {
  const BnCall *k = arg;
  const PrunusLayer *l = k->l;
  const BnRowOps *ops = k->ops;
  int C = l->in.c, B = k->B;
  size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
  const float *running = k->params + l->buf_off; /* mean (C), var (C) */
  float *mean = k->scratch, *var = mean + C, *inv = var + C;
  size_t c0, c1;
  prunus_team_block_share((size_t)C, 1, part, n_parts, &c0, &c1);
  for (size_t c = c0; c < c1; c++) {
    float mu, istd;
    if (l->training) {
      double acc[BN_LANES] = {0};
      for (int b = 0; b < B; b++) ops->sum(k->x + ((size_t)b * C + c) * HW, HW, acc);
      mu = (float)(bn_fold(acc) / (double)N);
      double acc2[BN_LANES] = {0}; /* two passes: no cancellation when the mean is large */
      for (int b = 0; b < B; b++) ops->sq_dev(k->x + ((size_t)b * C + c) * HW, HW, mu, acc2);
      double v = bn_fold(acc2) / (double)N; /* biased: what normalises, as PyTorch */
      istd = (float)(1.0 / sqrt(v + (double)l->spec.eps));
      mean[c] = mu, var[c] = (float)v, inv[c] = istd;
    } else {
      mu = running[c];
      istd = (float)(1.0 / sqrt((double)running[C + c] + (double)l->spec.eps));
    }
    float a, s;
    bn_affine(k, (int)c, mu, istd, &a, &s);
    for (int b = 0; b < B; b++)
      ops->affine(k->x + ((size_t)b * C + c) * HW, HW, a, s, k->y + ((size_t)b * C + c) * HW);
  }
}

static void bn_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                       float *scratch, int B) {
  BnCall k = {
      .l = l, .ops = bn_row_ops(), .params = params, .x = x, .y = y, .scratch = scratch, .B = B};
  prunus_team_run(l->team, bn_forward_part, &k);
}

/* Training: y = gamma xhat + beta with xhat = (x - mean) invstd of the batch, so
 *   dbeta = sum dy, dgamma = sum dy xhat,
 *   dx = gamma invstd (dy - dbeta/N - xhat dgamma/N)
 *      = dy a + (x k1 + k0), a = gamma invstd, k1 = -a invstd dgamma/N,
 *        k0 = -a dbeta/N - mean k1 (one pass of two FMAs per value).
 * Evaluation: mean and invstd are constants (the running ones): dx = gamma invstd dy. */
static void bn_backward_part(void *arg, int part, int n_parts) {
  const BnCall *k = arg;
  const PrunusLayer *l = k->l;
  const BnRowOps *ops = k->ops;
  int C = l->in.c, B = k->B;
  size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
  const float *gamma = k->params + l->b_off;
  const float *running = k->params + l->buf_off;
  float *dgamma = k->grads + l->b_off, *dbeta = dgamma + C;
  size_t c0, c1;
  prunus_team_block_share((size_t)C, 1, part, n_parts, &c0, &c1);
  for (size_t c = c0; c < c1; c++) {
    float mu = l->training ? k->scratch[c] : running[c];
    float istd = l->training ? k->scratch[2 * C + c]
                             : (float)(1.0 / sqrt((double)running[C + c] + (double)l->spec.eps));
    double acc_dy[BN_LANES] = {0}, acc_dyx[BN_LANES] = {0}; /* sum dy, sum dy (x - mean) */
    for (int b = 0; b < B; b++)
      ops->dy_sums(k->dy + ((size_t)b * C + c) * HW, k->x + ((size_t)b * C + c) * HW, HW, mu,
                   acc_dy, acc_dyx);
    double sdy = bn_fold(acc_dy), sdyx = bn_fold(acc_dyx) * istd;
    dbeta[c] = (float)sdy;
    dgamma[c] = (float)sdyx;
    if (!k->dx) continue;
    double a = (double)gamma[c] * istd, k1 = 0.0, k0 = 0.0;
    if (l->training) {
      k1 = -a * istd * (sdyx / (double)N);
      k0 = -a * (sdy / (double)N) - (double)mu * k1;
    }
    for (int b = 0; b < B; b++)
      ops->affine2(k->dy + ((size_t)b * C + c) * HW, k->x + ((size_t)b * C + c) * HW, HW, (float)a,
                   (float)k1, (float)k0, k->dx + ((size_t)b * C + c) * HW);
  }
}

static void bn_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                        const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)y;
  BnCall k = {.l = l,
              .ops = bn_row_ops(),
              .params = params,
              .x = x,
              .dy = dy,
              .dx = dx,
              .grads = grads,
              .scratch = scratch,
              .B = B};
  prunus_team_run(l->team, bn_backward_part, &k);
}

/* running = (1 - momentum) running + momentum batch, the variance unbiased (N / (N-1)
 * times the one that normalised), as PyTorch. With a single value per channel (N = 1)
 * the unbiased variance is undefined: running_var is left as it is. */
static void bn_update_buffers(const PrunusLayer *l, float *buffers, const float *scratch, int B) {
  int C = l->in.c;
  size_t N = (size_t)B * l->in.h * l->in.w;
  float mom = l->spec.momentum;
  float *rmean = buffers, *rvar = buffers + C;
  const float *mean = scratch, *var = scratch + C;
  for (int c = 0; c < C; c++) {
    rmean[c] = (1.0f - mom) * rmean[c] + mom * mean[c];
    if (N > 1)
      rvar[c] =
          (1.0f - mom) * rvar[c] + mom * (float)((double)var[c] * (double)N / (double)(N - 1));
  }
}

static void bn_reset(const PrunusLayer *l, float *params) {
  int C = l->in.c;
  for (int c = 0; c < C; c++) {
    params[l->b_off + c] = 1.0f, params[l->b_off + C + c] = 0.0f;
    params[l->buf_off + c] = 0.0f, params[l->buf_off + C + c] = 1.0f;
  }
}

const PrunusLayerOps prunus_layer_ops_batchnorm = {
    .type_name = "batchnorm",
    .infer = bn_infer,
    .scratch_size = bn_scratch,
    .forward = bn_forward,
    .backward = bn_backward,
    .update_buffers = bn_update_buffers,
    .reset = bn_reset,
};
