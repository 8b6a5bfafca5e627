/* conv_gemm.c: multi-channel convolution as an implicit GEMM on AVX-512: products read
 * the (zero-padded) input plane in place through a table of offsets instead of an
 * im2col buffer, 16 output channels per vector, one image at a time so it stays in cache. */
#include "conv_gemm.h"
#include "gemm.h"
#include "team.h"

#include <glib.h>
#include <immintrin.h>
#include <string.h>

#define LANES 16   /* floats per AVX-512 vector: output channels per block */
#define MAX_POS 16 /* output positions per forward micro-kernel */
/* reduction indices per weight-gradient micro-kernel: their offsets must fit in general
 * registers (16 spilled to vector registers) */
#define MAX_K 10
#define MAX_CHUNKS 8   /* vectors of the reduction per input-gradient micro-kernel */
#define MAX_DIRECT_K 8 /* largest kernel whose input gradient skips the lowering */

bool prunus_conv_gemm_available(void) { return prunus_avx512_in_use(); }

/* ------------------------------------------------------------------------ */
/* geometry and scratch */

static size_t round_lanes(size_t n) { return (n + LANES - 1) / LANES * LANES; }

/* Sizes derived from the geometry, and where each buffer sits in the scratch. */
typedef struct {
  int Hp, Wp; /* the zero-padded input plane */
  int K, Kp;  /* C*k*k, the reduction length, and K rounded up to LANES */
  int blocks; /* ceil(cout / LANES) */
  int HWo;
  int32_t *off; /* (K) where reduction index (c, kh, kw) sits in a padded image */
  float *wt;    /* (blocks, K, LANES) forward: W transposed; backward: dW transposed */
  float *wc;    /* (cout, Kp) backward: W with rows padded to Kp (input gradient) */
  float *xp;    /* (C, Hp, Wp) one padded input image */
  float *dyt;   /* (HWo, LANES) one block of one image's dy, position-major */
  float *dcol;  /* (Wo, Kp) one output row's gradient with respect to its im2col rows */
  float *dxp;   /* (C, Hp, Wp) one padded input-gradient image; (C, Hp, LANES) when
                 * a padded row fits one vector (rows summed in registers) */
  float *db;    /* (cout) this part's bias gradient */
  float *dys;   /* (cout, k, LANES) one dy row per channel, shifted by each kw */
} Plan;

/* Reserves n floats at *at (rounded to LANES: every buffer starts 64-byte aligned). */
static size_t take(size_t *at, size_t n) {
  size_t start = *at;
  *at += round_lanes(n);
  return start;
}

/* The plan of one part; its buffers in scratch (NULL: sizes only). *floats (may be
 * NULL) receives the part's scratch length. */
static Plan plan_of(const PrunusConvGeom *g, float *scratch, size_t *floats) {
  Plan pl = {0};
  pl.Hp = g->H + 2 * g->p, pl.Wp = g->W + 2 * g->p;
  pl.K = g->C * g->k * g->k;
  pl.Kp = (int)round_lanes(pl.K);
  pl.blocks = (g->cout + LANES - 1) / LANES;
  pl.HWo = g->Ho * g->Wo;
  size_t plane = (size_t)g->C * pl.Hp * pl.Wp, at = 0;
  size_t off = take(&at, pl.K), wt = take(&at, (size_t)pl.blocks * pl.K * LANES),
         wc = take(&at, (size_t)g->cout * pl.Kp), xp = take(&at, plane),
         dyt = take(&at, (size_t)pl.HWo * LANES), dcol = take(&at, (size_t)g->Wo * pl.Kp),
         dxp = take(&at, MAX(plane, (size_t)g->C * pl.Hp * LANES)), db = take(&at, g->cout),
         dys = take(&at, (size_t)g->cout * g->k * LANES);
  if (floats) *floats = at;
  if (!scratch) return pl;
  pl.off = (int32_t *)(scratch + off), pl.wt = scratch + wt, pl.wc = scratch + wc;
  pl.xp = scratch + xp, pl.dyt = scratch + dyt, pl.dcol = scratch + dcol;
  pl.dxp = scratch + dxp, pl.db = scratch + db, pl.dys = scratch + dys;
  for (int c = 0, kk = 0; c < g->C; c++)
    for (int kh = 0; kh < g->k; kh++)
      for (int kw = 0; kw < g->k; kw++) pl.off[kk++] = (c * pl.Hp + kh) * pl.Wp + kw;
  return pl;
}

/* Floats of one part's scratch. */
static size_t part_scratch(const PrunusConvGeom *g) {
  size_t floats;
  plan_of(g, NULL, &floats);
  return floats;
}

size_t prunus_conv_gemm_scratch(const PrunusConvGeom *g, int parts) {
  return (size_t)parts * part_scratch(g);
}

/* The image b of x, zero-padded when the layer pads (xp's border is zeroed once per
 * call by the caller; only the interior is written here). */
static const float *padded_image(const PrunusConvGeom *g, const Plan *pl, const float *x, int b) {
  const float *xb = x + (size_t)b * g->C * g->H * g->W; /* (C, H, W) */
  if (g->p == 0) return xb;
  for (int c = 0; c < g->C; c++)
    for (int h = 0; h < g->H; h++)
      memcpy(pl->xp + ((size_t)c * pl->Hp + h + g->p) * pl->Wp + g->p,
             xb + ((size_t)c * g->H + h) * g->W, sizeof(float) * g->W);
  return pl->xp;
}

/* ------------------------------------------------------------------------ */
/* micro-kernels, one per block size so the accumulators live in registers */

/* out (NP, LANES) = sum over kk of row[off[kk] + j*s] * wt[kk] for positions j < NP
 * of one output row (row = the padded image at the first position's window). */
#define FWD_KERNEL(NP)                                                                            \
  __attribute__((target("avx512f"))) static void fwd_##NP(                                        \
      const float *row, int s, const int32_t *off, int K, const float *wt, float *out) {          \
    __m512 acc[NP];                                                                               \
    for (int j = 0; j < NP; j++) acc[j] = _mm512_setzero_ps();                                    \
    for (int kk = 0; kk < K; kk++) {                                                              \
      __m512 w = _mm512_load_ps(wt + (size_t)kk * LANES);                                         \
      const float *q = row + off[kk];                                                             \
      for (int j = 0; j < NP; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(q[j * s]), w, acc[j]); \
    }                                                                                             \
    for (int j = 0; j < NP; j++) _mm512_store_ps(out + j * LANES, acc[j]);                        \
  }

/* The same for a block of at most 8 channels in 256-bit vectors (the lower half of
 * wt's rows): a CPU that executes a 512-bit FMA as two 256-bit halves (AMD Zen 4) runs
 * two of these per cycle against one 512-bit FMA, so a layer with half the channels
 * (after channel pruning) takes half the time instead of the same. */
#define FWD8_KERNEL(NP)                                                                           \
  __attribute__((target("avx512f,avx512vl,fma"))) static void fwd8_##NP(                          \
      const float *row, int s, const int32_t *off, int K, const float *wt, float *out) {          \
    __m256 acc[NP];                                                                               \
    for (int j = 0; j < NP; j++) acc[j] = _mm256_setzero_ps();                                    \
    for (int kk = 0; kk < K; kk++) {                                                              \
      __m256 w = _mm256_load_ps(wt + (size_t)kk * LANES);                                         \
      const float *q = row + off[kk];                                                             \
      for (int j = 0; j < NP; j++) acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(q[j * s]), w, acc[j]); \
    }                                                                                             \
    for (int j = 0; j < NP; j++) _mm256_store_ps(out + j * LANES, acc[j]);                        \
  }

/* acc (KB, LANES) += sum over positions of img[pos + off[j]] * dyt[pos] (dW transposed). */
#define DW_KERNEL(KB)                                                                          \
  __attribute__((target("avx512f"))) static void dw_##KB(const PrunusConvGeom *g, int Wp,      \
                                                         const float *img, const int32_t *off, \
                                                         const float *dyt, float *accm) {      \
    __m512 acc[KB];                                                                            \
    for (int j = 0; j < KB; j++) acc[j] = _mm512_load_ps(accm + j * LANES);                    \
    for (int oh = 0; oh < g->Ho; oh++) {                                                       \
      const float *row = img + (size_t)oh * g->s * Wp;                                         \
      for (int ow = 0; ow < g->Wo; ow++) {                                                     \
        const float *q = row + (size_t)ow * g->s;                                              \
        __m512 d = _mm512_load_ps(dyt + ((size_t)oh * g->Wo + ow) * LANES);                    \
        for (int j = 0; j < KB; j++)                                                           \
          acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(q[off[j]]), d, acc[j]);                      \
      }                                                                                        \
    }                                                                                          \
    for (int j = 0; j < KB; j++) _mm512_store_ps(accm + j * LANES, acc[j]);                    \
  }

/* dcol[pos, 0:NC*LANES] = sum over co of dy[co*dy_stride + pos] * wc[co, 0:NC*LANES],
 * pos < npos (the positions of one output row). */
#define DCOL_KERNEL(NC)                                                                           \
  __attribute__((target("avx512f"))) static void dcol_##NC(                                       \
      const float *dy, int cout, int dy_stride, int npos, const float *wc, int Kp, float *dcol) { \
    for (int pos = 0; pos < npos; pos++) {                                                        \
      __m512 acc[NC];                                                                             \
      for (int j = 0; j < NC; j++) acc[j] = _mm512_setzero_ps();                                  \
      for (int co = 0; co < cout; co++) {                                                         \
        __m512 a = _mm512_set1_ps(dy[(size_t)co * dy_stride + pos]);                              \
        const float *w = wc + (size_t)co * Kp;                                                    \
        for (int j = 0; j < NC; j++)                                                              \
          acc[j] = _mm512_fmadd_ps(a, _mm512_load_ps(w + j * LANES), acc[j]);                     \
      }                                                                                           \
      for (int j = 0; j < NC; j++) _mm512_store_ps(dcol + (size_t)pos * Kp + j * LANES, acc[j]);  \
    }                                                                                             \
  }

#define INSTANTIATE_1_TO_8(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8)
#define INSTANTIATE_9_TO_16(M) M(9) M(10) M(11) M(12) M(13) M(14) M(15) M(16)
// clang-format off: one kernel instance a line (no semicolons for the formatter to see)
INSTANTIATE_1_TO_8(FWD_KERNEL)
INSTANTIATE_9_TO_16(FWD_KERNEL)
INSTANTIATE_1_TO_8(FWD8_KERNEL)
INSTANTIATE_9_TO_16(FWD8_KERNEL)
INSTANTIATE_1_TO_8(DW_KERNEL)
DW_KERNEL(9)
DW_KERNEL(10)
INSTANTIATE_1_TO_8(DCOL_KERNEL)
// clang-format on

typedef void (*FwdKernel)(const float *, int, const int32_t *, int, const float *, float *);
typedef void (*DwKernel)(const PrunusConvGeom *, int, const float *, const int32_t *, const float *,
                         float *);
typedef void (*DcolKernel)(const float *, int, int, int, const float *, int, float *);
#define LIST(NAME, N) NAME##_##N,
#define FWD_LIST(N) LIST(fwd, N)
#define FWD8_LIST(N) LIST(fwd8, N)
#define DW_LIST(N) LIST(dw, N)
#define DCOL_LIST(N) LIST(dcol, N)
static const FwdKernel fwd_kernel[MAX_POS + 1] = {
    NULL, INSTANTIATE_1_TO_8(FWD_LIST) INSTANTIATE_9_TO_16(FWD_LIST)};
static const FwdKernel fwd8_kernel[MAX_POS + 1] = {
    NULL, INSTANTIATE_1_TO_8(FWD8_LIST) INSTANTIATE_9_TO_16(FWD8_LIST)};
static const DwKernel dw_kernel[MAX_K + 1] = {NULL, INSTANTIATE_1_TO_8(DW_LIST) dw_9, dw_10};
static const DcolKernel dcol_kernel[MAX_CHUNKS + 1] = {NULL, INSTANTIATE_1_TO_8(DCOL_LIST)};

/* ------------------------------------------------------------------------ */
/* forward */

static void forward_part(void *arg, int part, int n_parts) {
  const PrunusConvCall *c = arg;
  const PrunusConvGeom *g = c->g;
  Plan pl = plan_of(g, c->scratch + (size_t)part * c->part_floats, NULL);
  /* wt (blocks, K, LANES): lane l of block bl is output channel bl*LANES + l (0 past cout) */
  for (int bl = 0; bl < pl.blocks; bl++)
    for (int kk = 0; kk < pl.K; kk++)
      for (int l = 0; l < LANES; l++) {
        int co = bl * LANES + l;
        pl.wt[((size_t)bl * pl.K + kk) * LANES + l] =
            co < g->cout ? c->Wt[(size_t)co * pl.K + kk] : 0.0f;
      }
  if (g->p > 0) memset(pl.xp, 0, sizeof(float) * g->C * pl.Hp * pl.Wp);
  float out[MAX_POS * LANES] __attribute__((aligned(64))); /* (positions, LANES) */
  for (int b = prunus_team_share(c->B, part, n_parts);
       b < prunus_team_share(c->B, part + 1, n_parts); b++) {
    const float *img = padded_image(g, &pl, c->x, b);
    float *yb = c->y + (size_t)b * g->cout * pl.HWo; /* (cout, Ho, Wo) */
    for (int bl = 0; bl < pl.blocks; bl++) {
      int c0 = bl * LANES, cn = MIN(LANES, g->cout - c0);
      const float *wt = pl.wt + (size_t)bl * pl.K * LANES;
      const FwdKernel *kernel = cn <= LANES / 2 ? fwd8_kernel : fwd_kernel;
      for (int oh = 0; oh < g->Ho; oh++) {
        const float *row = img + (size_t)oh * g->s * pl.Wp;
        for (int ow0 = 0; ow0 < g->Wo;) {
          int np = MIN(MAX_POS, g->Wo - ow0);
          kernel[np](row + (size_t)ow0 * g->s, g->s, pl.off, pl.K, wt, out);
          for (int co = 0; co < cn; co++) {
            float *yr = yb + (size_t)(c0 + co) * pl.HWo + (size_t)oh * g->Wo + ow0;
            const float bc = c->bias ? c->bias[c0 + co] : 0.0f;
            for (int j = 0; j < np; j++) yr[j] = out[j * LANES + co] + bc;
          }
          ow0 += np;
        }
      }
    }
  }
}

void prunus_conv_gemm_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
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

/* ------------------------------------------------------------------------ */
/* backward */

/* dyt (HWo, LANES) = one block of dy (cn, HWo) transposed (lanes past cn keep what
 * they held: they only feed dW lanes past cout, never read). Adds channel sums to db. */
static void transpose_block(const float *dyc, int cn, int HWo, float *dyt, float *db) {
  for (int c = 0; c < cn; c++) {
    const float *src = dyc + (size_t)c * HWo;
    float sum = 0.0f;
    for (int pos = 0; pos < HWo; pos++) {
      dyt[(size_t)pos * LANES + c] = src[pos];
      sum += src[pos];
    }
    db[c] += sum;
  }
}

/* dcol (Wo, Kp) = the im2col-row gradients of output row oh of one image (dyb). */
static void dcol_row(const PrunusConvGeom *g, const Plan *pl, const float *dyb, int oh) {
  /* the Kp/LANES vectors of a row in equal groups of at most MAX_CHUNKS (10 as 5 + 5,
   * not 8 + 2: a group of 2 leaves the FMA pipes waiting on latency) */
  int chunks = pl->Kp / LANES, groups = (chunks + MAX_CHUNKS - 1) / MAX_CHUNKS;
  for (int c0 = 0; c0 < chunks;) {
    int nc = MIN((chunks + groups - 1) / groups, chunks - c0);
    dcol_kernel[nc](dyb + (size_t)oh * g->Wo, g->cout, pl->HWo, g->Wo, pl->wc + c0 * LANES, pl->Kp,
                    pl->dcol + c0 * LANES);
    c0 += nc;
  }
}

/* dxp (C, Hp, Wp) += output row oh's dcol put back (any width; element by element). */
static void col2im_row_scalar(const PrunusConvGeom *g, const Plan *pl, int oh, float *dxp) {
  const int k = g->k;
  for (int ow = 0; ow < g->Wo; ow++) {
    const float *dc = pl->dcol + (size_t)ow * pl->Kp;
    float *base = dxp + (size_t)oh * g->s * pl->Wp + (size_t)ow * g->s;
    for (int ckh = 0; ckh < g->C * k; ckh++) { /* (c, kh): one row of the window */
      float *dst = base + pl->off[ckh * k];
      const float *src = dc + (size_t)ckh * k;
      for (int kw = 0; kw < k; kw++) dst[kw] += src[kw];
    }
  }
}

/* The input gradient without lowering, for stride 1 when a padded row fits a vector:
 * output row oh of dy, shifted right by kw lanes (dys[co][kw]), times W[co, c, kh, kw]
 * lands on padded input row oh + kh of channel c. Per (oh, c) the k rows it touches
 * are summed in registers (KH = k accumulators), then added to dxp once. */
static gboolean input_grad_is_direct(const PrunusConvGeom *g, const Plan *pl) {
  return g->s == 1 && pl->Wp <= LANES && g->k <= MAX_DIRECT_K;
}

/* dys (cout, k, LANES): row oh of each dy channel at lanes kw .. kw+Wo-1, 0 elsewhere. */
__attribute__((target("avx512f"))) static void shifted_dy_rows(const PrunusConvGeom *g,
                                                               const Plan *pl, const float *dyb,
                                                               int oh) {
  const __mmask16 row = (__mmask16)((1u << g->Wo) - 1u);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int co = 0; co < g->cout; co++) {
    __m512 v = _mm512_maskz_loadu_ps(row, dyb + (size_t)co * pl->HWo + (size_t)oh * g->Wo);
    for (int kw = 0; kw < g->k; kw++) /* lane i takes lane i - kw */
      _mm512_store_ps(
          pl->dys + ((size_t)co * g->k + kw) * LANES,
          _mm512_maskz_permutexvar_ps((__mmask16)(row << kw),
                                      _mm512_sub_epi32(lane, _mm512_set1_epi32(kw)), v));
  }
}

#define DX_KERNEL(KH)                                                                    \
  __attribute__((target("avx512f"))) static void dx_##KH(                                \
      const PrunusConvGeom *g, const float *dys, const float *Wt, int c, float *rows) {  \
    __m512 acc[KH];                                                                      \
    for (int kh = 0; kh < KH; kh++) acc[kh] = _mm512_setzero_ps();                       \
    for (int co = 0; co < g->cout; co++) {                                               \
      const float *w = Wt + ((size_t)co * g->C + c) * KH * KH; /* (kh, kw) of (co, c) */ \
      for (int kw = 0; kw < KH; kw++) {                                                  \
        __m512 v = _mm512_load_ps(dys + ((size_t)co * KH + kw) * LANES);                 \
        for (int kh = 0; kh < KH; kh++)                                                  \
          acc[kh] = _mm512_fmadd_ps(_mm512_set1_ps(w[kh * KH + kw]), v, acc[kh]);        \
      }                                                                                  \
    }                                                                                    \
    for (int kh = 0; kh < KH; kh++)                                                      \
      _mm512_store_ps(rows + kh * LANES,                                                 \
                      _mm512_add_ps(_mm512_load_ps(rows + kh * LANES), acc[kh]));        \
  }
// clang-format off
DX_KERNEL(1) DX_KERNEL(2) DX_KERNEL(3) DX_KERNEL(4) DX_KERNEL(5) DX_KERNEL(6) DX_KERNEL(7)
DX_KERNEL(8)
typedef void (*DxKernel)(const PrunusConvGeom *, const float *, const float *, int, float *);
// clang-format on
static const DxKernel dx_kernel[MAX_DIRECT_K + 1] = {NULL, dx_1, dx_2, dx_3, dx_4,
                                                     dx_5, dx_6, dx_7, dx_8};

/* dxb (C, H, W) = the input gradient of one image from its dy (cout, HWo), an output
 * row at a time: directly (above) or through that row's dcol, kept in L1. */
static void input_grad(const PrunusConvGeom *g, const Plan *pl, const float *Wt, const float *dyb,
                       float *dxb) {
  gboolean direct = input_grad_is_direct(g, pl);
  int row_stride = direct ? LANES : pl->Wp; /* of the padded gradient dxp */
  memset(pl->dxp, 0, sizeof(float) * g->C * pl->Hp * row_stride);
  for (int oh = 0; oh < g->Ho; oh++) {
    if (direct) {
      shifted_dy_rows(g, pl, dyb, oh);
      for (int c = 0; c < g->C; c++)
        dx_kernel[g->k](g, pl->dys, Wt, c, pl->dxp + ((size_t)c * pl->Hp + oh) * LANES);
    } else {
      dcol_row(g, pl, dyb, oh);
      col2im_row_scalar(g, pl, oh, pl->dxp);
    }
  }
  for (int c = 0; c < g->C; c++)
    for (int h = 0; h < g->H; h++)
      memcpy(dxb + ((size_t)c * g->H + h) * g->W,
             pl->dxp + ((size_t)c * pl->Hp + h + g->p) * row_stride + g->p, sizeof(float) * g->W);
}

/* Part p's share of the backward: dW transposed and db summed over its images into
 * its own scratch (wt, db), and dx of those images. */
static void backward_part(void *arg, int part, int n_parts) {
  const PrunusConvCall *c = arg;
  const PrunusConvGeom *g = c->g;
  Plan pl = plan_of(g, c->scratch + (size_t)part * c->part_floats, NULL);
  memset(pl.wt, 0, sizeof(float) * pl.blocks * pl.K * LANES);
  memset(pl.dyt, 0, sizeof(float) * pl.HWo * LANES);
  memset(pl.db, 0, sizeof(float) * g->cout);
  if (g->p > 0) memset(pl.xp, 0, sizeof(float) * g->C * pl.Hp * pl.Wp);
  if (c->dx && !input_grad_is_direct(g, &pl)) { /* wc (cout, Kp): W's rows, zero-padded, for dcol */
    memset(pl.wc, 0, sizeof(float) * g->cout * pl.Kp);
    for (int co = 0; co < g->cout; co++)
      memcpy(pl.wc + (size_t)co * pl.Kp, c->Wt + (size_t)co * pl.K, sizeof(float) * pl.K);
  }
  for (int b = prunus_team_share(c->B, part, n_parts);
       b < prunus_team_share(c->B, part + 1, n_parts); b++) {
    const float *img = padded_image(g, &pl, c->x, b);
    const float *dyb = c->dy + (size_t)b * g->cout * pl.HWo; /* (cout, Ho, Wo) */
    for (int bl = 0; bl < pl.blocks; bl++) {
      int c0 = bl * LANES, cn = MIN(LANES, g->cout - c0);
      transpose_block(dyb + (size_t)c0 * pl.HWo, cn, pl.HWo, pl.dyt, pl.db + c0);
      float *acc = pl.wt + (size_t)bl * pl.K * LANES;
      for (int k0 = 0; k0 < pl.K; k0 += MAX_K) {
        int kb = MIN(MAX_K, pl.K - k0);
        dw_kernel[kb](g, pl.Wp, img, pl.off + k0, pl.dyt, acc + (size_t)k0 * LANES);
      }
    }
    if (c->dx) input_grad(g, &pl, c->Wt, dyb, c->dx + (size_t)b * g->C * g->H * g->W);
  }
}

void prunus_conv_gemm_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
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
  /* the parts' sums, added in part order (the same result however they were run) */
  int K = g->C * g->k * g->k;
  memset(dW, 0, sizeof(float) * g->cout * K);
  if (db) memset(db, 0, sizeof(float) * g->cout);
  for (int p = 0; p < prunus_team_threads(team); p++) {
    Plan pl = plan_of(g, scratch + (size_t)p * c.part_floats, NULL);
    for (int co = 0; co < g->cout; co++) {
      const float *src = pl.wt + (size_t)(co / LANES) * K * LANES + co % LANES; /* dW^T */
      for (int kk = 0; kk < K; kk++) dW[(size_t)co * K + kk] += src[(size_t)kk * LANES];
      if (db) db[co] += pl.db[co];
    }
  }
}
