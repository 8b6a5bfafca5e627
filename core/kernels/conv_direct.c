/* conv_direct.c: single-input-channel stride-1 convolution, one image at a time, over k
 * column-shifted copies of its zero-padded plane: AVX-512 forward and weight gradient
 * picked at run time, plain C fallback (also while the GEMM reference is forced). */
#include "conv_direct.h"
#include "gemm.h"

#include <glib.h>
#include <immintrin.h>
#include <string.h>

#define LANES 16  /* floats per AVX-512 vector */
#define WG_CO 3   /* weight gradient: output channels per register block */
#define WG_TAPS 5 /* weight gradient: kernel taps (kh, kw) per register block */

bool prunus_conv_direct_covers(const PrunusConvGeom *g) { return g->C == 1 && g->s == 1; }

/* ------------------------------------------------------------------------ */
/* geometry and scratch */

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* Sizes derived from the geometry, and where each buffer sits in the scratch.
 *
 * xs holds, for each kw, the padded plane shifted left by kw columns and cut to Wo
 * columns: xs[kw][r][c] = xpad[r][c + kw]. Output position o = oh*Wo + ow then reads
 * tap (kh, kw) at xs[kw] + kh*Wo + o: every tap is one flat run of Ho*Wo floats, like
 * y and dy, so the kernels work on whole vectors with no row ends (only a tail). */
typedef struct {
  int Hp, Wp;    /* the zero-padded plane */
  int HWo;       /* output positions per channel */
  int kk;        /* taps per kernel, k*k */
  int co_pad;    /* cout rounded up to WG_CO */
  int taps_pad;  /* kk rounded up to WG_TAPS */
  size_t shift;  /* floats between two shifted planes, Hp*Wo */
  float *xs;     /* (k, Hp, Wo) one image's shifted planes; the input gradient's
                  * padded plane (Hp, Wp) when that is computed */
  float *dw_acc; /* (co_pad, taps_pad, LANES) weight-gradient partial sums */
  float *db_acc; /* (co_pad, LANES) bias-gradient partial sums */
} Plan;

static Plan plan_of(const PrunusConvGeom *g, float *scratch) {
  g_assert(prunus_conv_direct_covers(g));
  Plan pl = {0};
  pl.Hp = g->H + 2 * g->p, pl.Wp = g->W + 2 * g->p;
  pl.HWo = g->Ho * g->Wo;
  pl.kk = g->k * g->k;
  pl.co_pad = (int)round_up((size_t)g->cout, WG_CO);
  pl.taps_pad = (int)round_up((size_t)pl.kk, WG_TAPS);
  pl.shift = (size_t)pl.Hp * g->Wo;
  if (!scratch) return pl;
  pl.xs = scratch;
  pl.dw_acc = pl.xs + round_up(MAX((size_t)g->k * pl.shift, (size_t)pl.Hp * pl.Wp), LANES);
  pl.db_acc = pl.dw_acc + (size_t)pl.co_pad * pl.taps_pad * LANES;
  return pl;
}

/* Floats of one part's scratch (a multiple of LANES: the next part stays aligned). */
static size_t part_scratch(const PrunusConvGeom *g) {
  Plan pl = plan_of(g, NULL);
  return round_up(MAX((size_t)g->k * pl.shift, (size_t)pl.Hp * pl.Wp), LANES) +
         ((size_t)pl.co_pad * pl.taps_pad + pl.co_pad) * LANES;
}

size_t prunus_conv_direct_scratch(const PrunusConvGeom *g, int parts) {
  return (size_t)parts * part_scratch(g);
}

/* Where tap t = kh*k + kw starts in xs. */
static size_t tap_offset(const PrunusConvGeom *g, const Plan *pl, int t) {
  return (size_t)(t % g->k) * pl->shift + (size_t)(t / g->k) * g->Wo;
}

/* Copies n floats from each of rows rows of src (row stride ls) to dst (stride ld). */
typedef void (*CopyRows)(float *dst, size_t ld, const float *src, size_t ls, int rows, int n);

static void copy_rows_plain(float *dst, size_t ld, const float *src, size_t ls, int rows, int n) {
  for (int r = 0; r < rows; r++) memcpy(dst + r * ld, src + r * ls, sizeof(float) * n);
}

/* Copies plane (H, W) into the k shifted planes at xs, shift floats apart. The padding
 * is the same zeros for every image: the caller zeroes xs once per call, only data is
 * written. */
static void shift_plane(const PrunusConvGeom *g, size_t shift, float *xs, const float *plane,
                        CopyRows copy) {
  for (int kw = 0; kw < g->k; kw++) {
    int c0 = MAX(0, g->p - kw), c1 = MIN(g->Wo, g->W + g->p - kw); /* columns with data */
    if (c1 > c0)
      copy(xs + kw * shift + (size_t)g->p * g->Wo + c0, (size_t)g->Wo, plane + (c0 + kw - g->p),
           (size_t)g->W, g->H, c1 - c0);
  }
}

/* Copies image b of x (B, 1, H, W) into the shifted planes. */
static void shift_image(const PrunusConvGeom *g, const Plan *pl, const float *x, int b,
                        CopyRows copy) {
  shift_plane(g, pl->shift, pl->xs, x + (size_t)b * g->H * g->W, copy);
}

/* Where the LANES partial sums of channel co, tap t sit in dw_acc: each register block
 * of the AVX-512 kernel, (WG_CO, WG_TAPS, LANES), is one contiguous slab. */
static size_t acc_at(const Plan *pl, int co, int t) {
  int co0 = co / WG_CO * WG_CO, t0 = t / WG_TAPS * WG_TAPS;
  return ((size_t)co0 * pl->taps_pad + (size_t)t0 * WG_CO + (size_t)(co - co0) * WG_TAPS +
          (size_t)(t - t0)) *
         LANES;
}

static float lanes_total(const float *a) {
  float s = 0.0f;
  for (int l = 0; l < LANES; l++) s += a[l];
  return s;
}

/* dW (cout, k*k), db (cout) += the totals of one part's partial sums. */
static void wgrad_reduce(const PrunusConvGeom *g, const Plan *pl, float *dW, float *db) {
  for (int co = 0; co < g->cout; co++) {
    for (int t = 0; t < pl->kk; t++)
      dW[(size_t)co * pl->kk + t] += lanes_total(pl->dw_acc + acc_at(pl, co, t));
    if (db) db[co] += lanes_total(pl->db_acc + (size_t)co * LANES);
  }
}

/* ------------------------------------------------------------------------ */
/* AVX-512 */

/* copy_rows_plain for the short rows of shift_image: a libc call per row of a few
 * dozen floats costs several times the copy. */
__attribute__((target("avx512f"))) static void copy_rows_avx512(float *dst, size_t ld,
                                                                const float *src, size_t ls,
                                                                int rows, int n) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < n; c += LANES) {
      __mmask16 m = prunus_lanes_mask(n - c);
      _mm512_mask_storeu_ps(dst + r * ld + c, m, _mm512_maskz_loadu_ps(m, src + r * ls + c));
    }
}

/* y[c][o0 + v*LANES + lane] for the CO channels of a block and V vectors of positions,
 * the lanes in m[v]; w[c] (k*k) is the block's channel c, of which the first nco are
 * stored. One function per (CO, V), all with CO*V = 12 accumulators in registers:
 * blocks of fewer channels take more positions instead of computing unused channels
 * (a channel-pruned layer then really does less work). */
/* Fully unrolled loops with constant bounds: the accumulators stay in registers. */
#define UNROLL _Pragma("GCC unroll 16")
#define FWD_BLOCK(CO, V)                                                                          \
  __attribute__((target("avx512f"))) static void fwd_block_##CO##x##V(                            \
      const PrunusConvGeom *g, const Plan *pl, const float *const *w, const float *bias, int nco, \
      float *yb, int o0, const __mmask16 *m) {                                                    \
    __m512 acc[CO][V];                                                                            \
    UNROLL for (int c = 0; c < CO; c++) UNROLL for (int v = 0; v < V; v++) acc[c][v] =            \
        _mm512_set1_ps(bias[c]);                                                                  \
    const int k = g->k, Wo = g->Wo;                                                               \
    const size_t shift = pl->shift;                                                               \
    for (int kw = 0; kw < k; kw++) {                                                              \
      for (int kh = 0; kh < k; kh++) {                                                            \
        const float *xt = pl->xs + kw * shift + (size_t)kh * Wo + o0; /* tap (kh, kw) */          \
        __m512 xv[V];                                                                             \
        UNROLL for (int v = 0; v < V; v++) xv[v] = _mm512_maskz_loadu_ps(m[v], xt + v * LANES);   \
        UNROLL for (int c = 0; c < CO; c++) {                                                     \
          __m512 wv = _mm512_set1_ps(w[c][kh * k + kw]);                                          \
          UNROLL for (int v = 0; v < V; v++) acc[c][v] = _mm512_fmadd_ps(wv, xv[v], acc[c][v]);   \
        }                                                                                         \
      }                                                                                           \
    }                                                                                             \
    UNROLL for (int c = 0; c < CO; c++) UNROLL for (int v = 0; v < V; v++) if (c < nco)           \
        _mm512_mask_storeu_ps(yb + (size_t)c * pl->HWo + o0 + v * LANES, m[v], acc[c][v]);        \
  }                                                                                               \
                                                                                                  \
  /* channels [co0, co0 + nco) (nco <= CO) of one image, every position */                        \
  __attribute__((target("avx512f"))) static void fwd_channels_##CO##x##V(                         \
      const PrunusConvGeom *g, const Plan *pl, const float *Wt, const float *bias, float *y,      \
      int co0, int nco) {                                                                         \
    const float *w[CO];                                                                           \
    float bv[CO];                                                                                 \
    for (int c = 0; c < CO; c++) { /* channels past nco repeat the last one, unstored */          \
      int co = co0 + MIN(c, nco - 1);                                                             \
      w[c] = Wt + (size_t)co * pl->kk;                                                            \
      bv[c] = bias ? bias[co] : 0.0f;                                                             \
    }                                                                                             \
    float *yb = y + (size_t)co0 * pl->HWo;                                                        \
    __mmask16 full[V];                                                                            \
    for (int v = 0; v < V; v++) full[v] = 0xFFFF;                                                 \
    int o0 = 0;                                                                                   \
    for (; o0 + V * LANES <= pl->HWo; o0 += V * LANES)                                            \
      fwd_block_##CO##x##V(g, pl, w, bv, nco, yb, o0, full);                                      \
    if (o0 < pl->HWo) {                                                                           \
      __mmask16 m[V];                                                                             \
      for (int v = 0; v < V; v++) m[v] = prunus_lanes_mask(pl->HWo - o0 - v * LANES);             \
      fwd_block_##CO##x##V(g, pl, w, bv, nco, yb, o0, m);                                         \
    }                                                                                             \
  }
FWD_BLOCK(6, 2)
FWD_BLOCK(4, 3)
FWD_BLOCK(2, 6)

/* y (cout, Ho*Wo) of one image from its shifted planes, in blocks of 6 channels (4
 * or 2 for what is left). */
__attribute__((target("avx512f"))) static void forward_avx512(const PrunusConvGeom *g,
                                                              const Plan *pl, const float *Wt,
                                                              const float *bias, float *y) {
  for (int co0 = 0; co0 < g->cout;) {
    int left = g->cout - co0;
    if (left > 4) {
      fwd_channels_6x2(g, pl, Wt, bias, y, co0, MIN(6, left));
      co0 += MIN(6, left);
    } else if (left > 2) {
      fwd_channels_4x3(g, pl, Wt, bias, y, co0, left);
      co0 += left;
    } else {
      fwd_channels_2x6(g, pl, Wt, bias, y, co0, left);
      co0 += left;
    }
  }
}

/* acc[c][j] += d[c][i : i+LANES] * x[off[j] + i : ...], the lanes in m. */
__attribute__((target("avx512f"), always_inline)) static inline void wgrad_step(
    const float *x, const float *const *d, const size_t *off, int i, __mmask16 m,
    __m512 acc[WG_CO][WG_TAPS]) {
  __m512 dv[WG_CO];
#pragma GCC unroll 8
  for (int c = 0; c < WG_CO; c++) dv[c] = _mm512_maskz_loadu_ps(m, d[c] + i);
#pragma GCC unroll 8
  for (int j = 0; j < WG_TAPS; j++) {
    __m512 xv = _mm512_maskz_loadu_ps(m, x + off[j] + i);
#pragma GCC unroll 8
    for (int c = 0; c < WG_CO; c++) acc[c][j] = _mm512_fmadd_ps(dv[c], xv, acc[c][j]);
  }
}

/* accm (WG_CO, WG_TAPS, LANES) += over the n positions of one image, dy of channel c
 * (d[c]) times the shifted planes at tap j (x + off[j]). */
__attribute__((target("avx512f"))) static void wgrad_block(int n, const float *x,
                                                           const float *const *d, const size_t *off,
                                                           float *accm) {
  __m512 acc[WG_CO][WG_TAPS];
#pragma GCC unroll 8
  for (int c = 0; c < WG_CO; c++)
#pragma GCC unroll 8
    for (int j = 0; j < WG_TAPS; j++) acc[c][j] = _mm512_loadu_ps(accm + (c * WG_TAPS + j) * LANES);
  int i = 0;
  for (; i + LANES <= n; i += LANES) wgrad_step(x, d, off, i, 0xFFFF, acc);
  if (i < n) wgrad_step(x, d, off, i, prunus_lanes_mask(n - i), acc);
#pragma GCC unroll 8
  for (int c = 0; c < WG_CO; c++)
#pragma GCC unroll 8
    for (int j = 0; j < WG_TAPS; j++) _mm512_storeu_ps(accm + (c * WG_TAPS + j) * LANES, acc[c][j]);
}

/* db_acc (cout, LANES) += dy of one image (cout, Ho*Wo), lane-wise; four sums in
 * flight, as one add waits for the last. */
__attribute__((target("avx512f"))) static void bias_grad_avx512(const Plan *pl, int cout,
                                                                const float *dyb) {
  int n = pl->HWo;
  for (int co = 0; co < cout; co++) {
    const float *d = dyb + (size_t)co * n;
    __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
    int i = 0;
    for (; i + 4 * LANES <= n; i += 4 * LANES)
      for (int u = 0; u < 4; u++) s[u] = _mm512_add_ps(s[u], _mm512_loadu_ps(d + i + u * LANES));
    for (; i < n; i += LANES)
      s[0] = _mm512_add_ps(s[0], _mm512_maskz_loadu_ps(prunus_lanes_mask(n - i), d + i));
    __m512 total = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
    float *a = pl->db_acc + (size_t)co * LANES;
    _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), total));
  }
}

/* The partial sums of one image: dy (cout, Ho*Wo) against its shifted planes. */
static void wgrad_image(const PrunusConvGeom *g, const Plan *pl, const float *dyb) {
  for (int co0 = 0; co0 < g->cout; co0 += WG_CO) {
    const float *d[WG_CO];
    for (int c = 0; c < WG_CO; c++) /* channels past cout repeat the last one, unread */
      d[c] = dyb + (size_t)MIN(co0 + c, g->cout - 1) * pl->HWo;
    for (int t0 = 0; t0 < pl->kk; t0 += WG_TAPS) {
      size_t off[WG_TAPS];
      for (int j = 0; j < WG_TAPS; j++) /* taps past k*k read tap 0, unread */
        off[j] = tap_offset(g, pl, t0 + j < pl->kk ? t0 + j : 0);
      wgrad_block(pl->HWo, pl->xs, d, off, pl->dw_acc + acc_at(pl, co0, t0));
    }
  }
  bias_grad_avx512(pl, g->cout, dyb);
}

/* ------------------------------------------------------------------------ */
/* plain C */

/* y (cout, Ho*Wo) of one image: each channel accumulates k*k shifted runs. */
static void forward_plain(const PrunusConvGeom *g, const Plan *pl, const float *Wt,
                          const float *bias, float *y) {
  for (int co = 0; co < g->cout; co++) {
    const float *w = Wt + (size_t)co * pl->kk;
    float *restrict yc = y + (size_t)co * pl->HWo;
    for (int o = 0; o < pl->HWo; o++) yc[o] = bias ? bias[co] : 0.0f;
    for (int t = 0; t < pl->kk; t++) {
      const float wv = w[t];
      const float *restrict xt = pl->xs + tap_offset(g, pl, t);
      for (int o = 0; o < pl->HWo; o++) yc[o] += wv * xt[o];
    }
  }
}

/* acc (LANES) += a[i] * b[i] for i < n, lane i % LANES (the lane loop vectorises; a
 * plain dot product would not, being a float sum whose order C fixes). */
static void lanes_fma(float *restrict acc, const float *restrict a, const float *restrict b,
                      size_t n) {
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i + l < n; l++) acc[l] += a[i + l] * b[i + l];
}

static void lanes_add(float *restrict acc, const float *restrict a, size_t n) {
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += a[i + l];
  for (int l = 0; i + l < n; l++) acc[l] += a[i + l];
}

/* The partial sums of one image, as wgrad_image (lane for lane, without FMA). */
static void wgrad_plain(const PrunusConvGeom *g, const Plan *pl, const float *dyb) {
  for (int co = 0; co < g->cout; co++) {
    const float *d = dyb + (size_t)co * pl->HWo;
    for (int t = 0; t < pl->kk; t++)
      lanes_fma(pl->dw_acc + acc_at(pl, co, t), d, pl->xs + tap_offset(g, pl, t), pl->HWo);
    lanes_add(pl->db_acc + (size_t)co * LANES, d, pl->HWo);
  }
}

/* dx (H, W) of one image: dy (cout, Ho, Wo) scattered through the kernels into a
 * padded plane (Hp, Wp) over xs, whose interior is then copied out. */
static void input_grad_plain(const PrunusConvGeom *g, const Plan *pl, const float *Wt,
                             const float *dyb, float *dxb) {
  int k = g->k;
  float *xp = pl->xs;
  memset(xp, 0, sizeof(float) * (size_t)pl->Hp * pl->Wp);
  for (int co = 0; co < g->cout; co++) {
    const float *w = Wt + (size_t)co * pl->kk;
    for (int oh = 0; oh < g->Ho; oh++) {
      const float *restrict d = dyb + ((size_t)co * g->Ho + oh) * g->Wo;
      for (int kh = 0; kh < k; kh++) {
        for (int kw = 0; kw < k; kw++) {
          const float wv = w[kh * k + kw];
          float *restrict xr = xp + (size_t)(oh + kh) * pl->Wp + kw;
          for (int ow = 0; ow < g->Wo; ow++) xr[ow] += wv * d[ow];
        }
      }
    }
  }
  for (int h = 0; h < g->H; h++)
    memcpy(dxb + (size_t)h * g->W, xp + (size_t)(h + g->p) * pl->Wp + g->p, sizeof(float) * g->W);
}

/* ------------------------------------------------------------------------ */
/* entry points */

static void forward_part(void *arg, int part, int n_parts) {
  const PrunusConvCall *c = arg;
  const PrunusConvGeom *g = c->g;
  Plan pl = plan_of(g, c->scratch + (size_t)part * c->part_floats);
  bool simd = prunus_avx512_in_use();
  size_t y_image = (size_t)g->cout * pl.HWo;
  memset(pl.xs, 0, sizeof(float) * g->k * pl.shift);
  for (int b = prunus_team_share(c->B, part, n_parts);
       b < prunus_team_share(c->B, part + 1, n_parts); b++) {
    shift_image(g, &pl, c->x, b, simd ? copy_rows_avx512 : copy_rows_plain);
    if (simd)
      forward_avx512(g, &pl, c->Wt, c->bias, c->y + b * y_image);
    else
      forward_plain(g, &pl, c->Wt, c->bias, c->y + b * y_image);
  }
}

void prunus_conv_direct_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                                const float *bias, float *y, float *scratch, int B,
                                PrunusTeam *team) {
  PrunusConvCall c = {.g = g,
                      .x = x,
                      .Wt = Wt,
                      .bias = bias,
                      .y = y,
                      .scratch = scratch,
                      .B = B,
                      .part_floats = part_scratch(g)};
  prunus_team_run(team, forward_part, &c);
}

/* Part p's weight-gradient partial sums over its images, then dx of those images. */
static void backward_part(void *arg, int part, int n_parts) {
  const PrunusConvCall *c = arg;
  const PrunusConvGeom *g = c->g;
  Plan pl = plan_of(g, c->scratch + (size_t)part * c->part_floats);
  bool simd = prunus_avx512_in_use();
  size_t dy_image = (size_t)g->cout * pl.HWo;
  int b0 = prunus_team_share(c->B, part, n_parts), b1 = prunus_team_share(c->B, part + 1, n_parts);
  memset(pl.xs, 0, sizeof(float) * g->k * pl.shift);
  memset(pl.dw_acc, 0, sizeof(float) * ((size_t)pl.co_pad * pl.taps_pad + pl.co_pad) * LANES);
  for (int b = b0; b < b1; b++) {
    shift_image(g, &pl, c->x, b, simd ? copy_rows_avx512 : copy_rows_plain);
    if (simd)
      wgrad_image(g, &pl, c->dy + b * dy_image);
    else
      wgrad_plain(g, &pl, c->dy + b * dy_image);
  }
  if (c->dx)
    for (int b = b0; b < b1; b++)
      input_grad_plain(g, &pl, c->Wt, c->dy + b * dy_image, c->dx + (size_t)b * g->H * g->W);
}

void prunus_conv_direct_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                                 const float *dy, float *dW, float *db, float *dx, float *scratch,
                                 int B, PrunusTeam *team) {
  PrunusConvCall c = {.g = g,
                      .x = x,
                      .Wt = Wt,
                      .dy = dy,
                      .dx = dx,
                      .scratch = scratch,
                      .B = B,
                      .part_floats = part_scratch(g)};
  prunus_team_run(team, backward_part, &c);
  /* the parts' totals, added in part order (the same result however they were run) */
  memset(dW, 0, sizeof(float) * g->cout * g->k * g->k);
  if (db) memset(db, 0, sizeof(float) * g->cout);
  for (int p = 0; p < prunus_team_threads(team); p++) {
    Plan pl = plan_of(g, scratch + (size_t)p * c.part_floats);
    wgrad_reduce(g, &pl, dW, db);
  }
}

/* ------------------------------------------------------------------------ */
/* few channels (the inference engines) */

/* Few input and output channels: the Winograd kernels put channels in the lanes of a
 * vector and would leave most of them padding; here the lanes are output positions of
 * one channel and every input channel adds its k*k shifted runs, as above. */
#define FEW_MAX 8 /* input and output channels at most */
/* ... and their product: 7 -> 3 and 5 -> 7 at 28x28 take half and 3/4 of the
 * Winograd forward's time, 8 -> 8 1.2x it (bench/conv_shapes) */
#define FEW_PAIRS 40

bool prunus_conv_direct_few_covers(const PrunusConvGeom *g) {
  return g->s == 1 && g->C <= FEW_MAX && g->cout <= FEW_MAX && g->C * g->cout <= FEW_PAIRS &&
         prunus_avx512_in_use();
}

/* Floats between two input channels' shifted planes, and of one part's scratch. */
static size_t few_channel(const PrunusConvGeom *g) {
  return round_up((size_t)g->k * (g->H + 2 * g->p) * g->Wo, LANES);
}

size_t prunus_conv_direct_few_scratch(const PrunusConvGeom *g, int parts) {
  return (size_t)parts * g->C * few_channel(g);
}

size_t prunus_conv_direct_few_weights(const PrunusConvGeom *g) {
  return (size_t)g->C * g->k * g->k * g->cout;
}

void prunus_conv_direct_few_prepare(const PrunusConvGeom *g, const float *Wt, float *w) {
  int kk = g->k * g->k;
  for (int c = 0; c < g->C; c++)
    for (int t = 0; t < kk; t++)
      for (int o = 0; o < g->cout; o++)
        w[((size_t)c * kk + t) * g->cout + o] = Wt[((size_t)o * g->C + c) * kk + t];
}

/* y[co][o0 + v*LANES + lane] for all CO (= cout) channels and V vectors of positions,
 * the lanes in m[v]: per input channel c and tap, V loads and CO broadcasts for CO*V
 * multiply-adds, the accumulators in registers. */
#define FEW_BLOCK(CO, V)                                                                          \
  __attribute__((target("avx512f"))) static void few_block_##CO(                                  \
      const PrunusConvGeom *g, const float *xs, size_t shift, size_t chan, const float *w,        \
      const float *bias, float *y, size_t HWo, int o0, int n) {                                   \
    __mmask16 m[V];                                                                               \
    UNROLL for (int v = 0; v < V; v++) m[v] = prunus_lanes_mask(n - o0 - v * LANES);              \
    __m512 acc[CO][V];                                                                            \
    UNROLL for (int o = 0; o < CO; o++) UNROLL for (int v = 0; v < V; v++) acc[o][v] =            \
        _mm512_set1_ps(bias ? bias[o] : 0.0f);                                                    \
    const int k = g->k, Wo = g->Wo;                                                               \
    for (int c = 0; c < g->C; c++)                                                                \
      for (int kh = 0; kh < k; kh++)                                                              \
        for (int kw = 0; kw < k; kw++) {                                                          \
          const float *xt = xs + c * chan + kw * shift + (size_t)kh * Wo + o0;                    \
          const float *wt = w + ((size_t)c * k * k + kh * k + kw) * CO;                           \
          __m512 xv[V];                                                                           \
          UNROLL for (int v = 0; v < V; v++) xv[v] = _mm512_maskz_loadu_ps(m[v], xt + v * LANES); \
          UNROLL for (int o = 0; o < CO; o++) {                                                   \
            __m512 wv = _mm512_set1_ps(wt[o]);                                                    \
            UNROLL for (int v = 0; v < V; v++) acc[o][v] = _mm512_fmadd_ps(wv, xv[v], acc[o][v]); \
          }                                                                                       \
        }                                                                                         \
    UNROLL for (int o = 0; o < CO; o++) UNROLL for (int v = 0; v < V; v++)                        \
        _mm512_mask_storeu_ps(y + (size_t)o * HWo + o0 + v * LANES, m[v], acc[o][v]);             \
  }
/* V: as many positions as the 32 registers hold beside the loads and a broadcast */
FEW_BLOCK(1, 8)
FEW_BLOCK(2, 8)
FEW_BLOCK(3, 7)
FEW_BLOCK(4, 5)
FEW_BLOCK(5, 5)
FEW_BLOCK(6, 4)
FEW_BLOCK(7, 3)
FEW_BLOCK(8, 3)

typedef void (*FewBlock)(const PrunusConvGeom *, const float *, size_t, size_t, const float *,
                         const float *, float *, size_t, int, int);
static const FewBlock few_blocks[FEW_MAX + 1] = {NULL,        few_block_1, few_block_2,
                                                 few_block_3, few_block_4, few_block_5,
                                                 few_block_6, few_block_7, few_block_8};
static const int few_vectors[FEW_MAX + 1] = {0, 8, 8, 7, 5, 5, 4, 3, 3};

typedef struct {
  const PrunusConvGeom *g;
  const float *x, *w, *bias;
  float *y, *scratch;
  int B;
} FewCall;

static void few_part(void *arg, int part, int n_parts) {
  const FewCall *c = arg;
  const PrunusConvGeom *g = c->g;
  size_t chan = few_channel(g), shift = (size_t)(g->H + 2 * g->p) * g->Wo;
  size_t HWo = (size_t)g->Ho * g->Wo, in_img = (size_t)g->C * g->H * g->W;
  float *xs = c->scratch + (size_t)part * g->C * chan;
  memset(xs, 0, sizeof(float) * g->C * chan);
  FewBlock block = few_blocks[g->cout];
  int step = few_vectors[g->cout] * LANES;
  for (int b = prunus_team_share(c->B, part, n_parts);
       b < prunus_team_share(c->B, part + 1, n_parts); b++) {
    for (int ch = 0; ch < g->C; ch++)
      shift_plane(g, shift, xs + ch * chan, c->x + b * in_img + (size_t)ch * g->H * g->W,
                  copy_rows_avx512);
    float *yb = c->y + (size_t)b * g->cout * HWo;
    for (int o0 = 0; o0 < (int)HWo; o0 += step)
      block(g, xs, shift, chan, c->w, c->bias, yb, HWo, o0, (int)HWo);
  }
}

void prunus_conv_direct_few_forward(const PrunusConvGeom *g, const float *x, const float *w,
                                    const float *bias, float *y, float *scratch, int B,
                                    PrunusTeam *team) {
  g_assert(prunus_conv_direct_few_covers(g));
  FewCall c = {.g = g, .x = x, .w = w, .bias = bias, .y = y, .scratch = scratch, .B = B};
  prunus_team_run(team, few_part, &c);
}
