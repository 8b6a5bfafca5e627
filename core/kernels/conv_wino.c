/* conv_wino.c: 3x3 stride-1 convolution by Winograd F(m x m, 3x3), m = 4 or 2: each
 * m x m block of outputs (a tile) costs (m + 2)^2 multiplies per channel pair instead
 * of 9 m^2. Inputs and weights go through small fixed transforms and the multiplies
 * become (m + 2)^2 independent products (tiles x C) (C x cout), channels interleaved VL
 * to a vector. The input gradient of such a layer is again one (dy against the
 * flipped, transposed weights), so it runs through the forward code. Other convs
 * (cl_*) reuse the same products tap by tap. The vector code is conv_wino-impl.h,
 * compiled here once for AVX-512 and once for AVX2. */
#include "conv_wino.h"
#include "conv_direct.h"
#include "gemm.h"

#include <glib.h>
#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VL 16 /* floats per vector of the widest version (scratch sizes) */
/* At least this many tiles per product call: small images are taken a few at a time
 * so the products run long. */
#define TILES_PER_GROUP 64

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* ------------------------------------------------------------------------ */
/* geometry and scratch */

/* One stride-1 3x3 convolution as the kernels see it (the layer's forward, its weight
 * gradient, or its input gradient: dy in, dx out), for vectors of vl floats, in tiles
 * of m x m outputs: F(4x4, 3x3) (36 products per 16 outputs) or F(2x2, 3x3), as
 * tile_side picks for the output size. F(4x4)'s larger transform constants round to
 * ~1e-5 of the outputs' scale (F(2x2): ~1e-6); tests/kernels/test_conv.c bounds it. */
typedef struct {
  int C, H, W, K, p, Ho, Wo;
  int m, E;        /* outputs per tile side (2 or 4); products per tile, (m + 2)^2 */
  int nth, ntw, T; /* tiles down, across, per image */
  int Hq, Wq;      /* the zero-padded input as tiles read it */
  int Cs, Ks;      /* C and K rounded up to vl */
  int G, Tg;       /* images per group, tiles per group */
  size_t vs, ms;   /* floats between two elements e of v and of m (plane_stride) */
  size_t part;     /* floats of one part's buffers (WinoBufs) */
} WinoPlan;

/* One part's buffers, in this order in its scratch. */
typedef struct {
  float *xh; /* (Hq, Wq, Cs) one padded input image, channels interleaved */
  float *v;  /* (E, Tg, Cs) transformed input tiles, planes e vs apart */
  float *m;  /* (E, Tg, Ks) the products (the weight gradient: transformed dy), ms apart */
  float *yh; /* (m nth, m ntw, Ks) one output image; the weight gradient: its dy */
  float *du; /* (E, C, Ks) the weight gradient of this part's images, transformed */
  float *db; /* (Ks) the bias gradient of this part's images */
} WinoBufs;

/* Floats between two planes e of n floats each: n rounded up to an odd number of
 * 64-byte lines. A tile's transform touches the same position in every plane; at a
 * multiple of 4 KiB apart (64 x 64 channels, 64 tiles) the 36 planes of F(4x4) all map
 * to one set of the L1 cache (eight ways) and evict each other, where an odd number of
 * lines puts each in a set of its own. */
static size_t plane_stride(size_t n) {
  size_t lines = (n + 15) / 16;
  return (lines | 1) * 16;
}

static WinoPlan wino_plan(int C, int H, int W, int K, int p, int vl, int m) {
  WinoPlan pl = {.C = C, .H = H, .W = W, .K = K, .p = p, .m = m, .E = (m + 2) * (m + 2)};
  pl.Ho = H + 2 * p - 2, pl.Wo = W + 2 * p - 2;
  pl.nth = (pl.Ho + m - 1) / m, pl.ntw = (pl.Wo + m - 1) / m;
  pl.T = pl.nth * pl.ntw;
  pl.Hq = m * pl.nth + 2, pl.Wq = m * pl.ntw + 2;
  pl.Cs = (int)round_up((size_t)C, (size_t)vl), pl.Ks = (int)round_up((size_t)K, (size_t)vl);
  pl.G = MAX(1, (TILES_PER_GROUP + pl.T - 1) / pl.T);
  pl.Tg = pl.G * pl.T;
  pl.vs = plane_stride((size_t)pl.Tg * pl.Cs), pl.ms = plane_stride((size_t)pl.Tg * pl.Ks);
  pl.part = round_up((size_t)pl.Hq * pl.Wq * pl.Cs, MAX_VL) + (size_t)pl.E * pl.vs +
            (size_t)pl.E * pl.ms + round_up((size_t)m * m * pl.nth * pl.ntw * pl.Ks, MAX_VL) +
            round_up((size_t)pl.E * C * pl.Ks, MAX_VL) + round_up((size_t)pl.Ks, MAX_VL);
  return pl;
}

static WinoBufs wino_bufs(const WinoPlan *pl, float *at) {
  WinoBufs b;
  b.xh = at, at += round_up((size_t)pl->Hq * pl->Wq * pl->Cs, MAX_VL);
  b.v = at, at += (size_t)pl->E * pl->vs;
  b.m = at, at += (size_t)pl->E * pl->ms;
  b.yh = at, at += round_up((size_t)pl->m * pl->m * pl->nth * pl->ntw * pl->Ks, MAX_VL);
  b.du = at, at += round_up((size_t)pl->E * pl->C * pl->Ks, MAX_VL);
  b.db = at;
  return b;
}

/* The tile side for outputs Ho x Wo: 4 (2.25 products per output, against 4 with
 * 2) unless its tiles overhang the outputs much more than 2x2 tiles do (14 x 14: 16 x
 * 16, where the larger transforms and the overhang cancel the fewer products). */
static int tile_side(int Ho, int Wo) {
  int area2 = (Ho + 1) / 2 * ((Wo + 1) / 2) * 4, area4 = (Ho + 3) / 4 * ((Wo + 3) / 4) * 16;
  return area4 * 100 <= area2 * 115 ? 4 : 2;
}

/* The layer's forward; its weight gradient; its input gradient as a forward: dy (K
 * channels, Ho x Wo) padded by 2 - p gives dx (C channels, H x W). */
static WinoPlan forward_plan(const PrunusConvGeom *g, int vl) {
  return wino_plan(g->C, g->H, g->W, g->cout, g->p, vl, tile_side(g->Ho, g->Wo));
}
static WinoPlan weight_grad_plan(const PrunusConvGeom *g, int vl) {
  return wino_plan(g->C, g->H, g->W, g->cout, g->p, vl, tile_side(g->Ho, g->Wo));
}
static WinoPlan input_grad_plan(const PrunusConvGeom *g, int vl) {
  return wino_plan(g->cout, g->Ho, g->Wo, g->C, 2 - g->p, vl, tile_side(g->H, g->W));
}

/* Floats before the parts: the transformed weights (E, C, Ks) of either forward plan. */
static size_t shared_floats(const PrunusConvGeom *g, int vl) {
  WinoPlan f = forward_plan(g, vl), d = input_grad_plan(g, vl);
  return round_up(MAX((size_t)f.E * f.C * f.Ks, (size_t)d.E * d.C * d.Ks), MAX_VL);
}

static size_t part_floats(const PrunusConvGeom *g, int vl) {
  return MAX(MAX(forward_plan(g, vl).part, input_grad_plan(g, vl).part),
             weight_grad_plan(g, vl).part);
}

size_t prunus_conv_wino_scratch(const PrunusConvGeom *g, int parts) {
  if (g->k != 3 || g->s != 1 || g->p > 2) return 0;
  size_t most = 0;
  for (int vl = 8; vl <= MAX_VL; vl *= 2)
    most = MAX(most, shared_floats(g, vl) + (size_t)parts * part_floats(g, vl));
  return most;
}

/* ------------------------------------------------------------------------ */
/* weights */

/* F(2x2, 3x3)'s G (4x3) and F(4x4, 3x3)'s (6x3). */
static const float G2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float G4[6][3] = {{1.0f / 4, 0, 0},
                               {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                               {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                               {1.0f / 24, 1.0f / 12, 1.0f / 6},
                               {1.0f / 24, -1.0f / 12, 1.0f / 6},
                               {0, 0, 1}};

/* The weight transforms of one call, split over a team by input channel; each works
 * on vl output channels at once (the lanes of U and dU), loops the compiler vectorizes. */
typedef struct {
  const WinoPlan *pl;
  const float *Wt;
  gboolean flip;
  int vl;
  float *U;         /* transform_part: the transformed weights */
  float *const *du; /* reduce_part: each part's dU */
  int parts;        /* reduce_part: how many */
  float *dW;        /* reduce_part: the weight gradient */
} WeightCall;

/* U (E, Ks/vl, C, vl) = G g G^T for each (out, in) pair of the plan's K outputs and C
 * inputs (lanes past K are 0), for the part's inputs. g[o][i] = Wt[o][i] (the forward)
 * or, when flip, the input gradient's Wt[i][o] turned by 180 degrees. */
static void transform_part(void *arg, int part, int n_parts) {
  const WeightCall *c = arg;
  const WinoPlan *pl = c->pl;
  const int a = pl->m + 2, vl = c->vl;
  const float(*G)[3] = pl->m == 4 ? G4 : G2;
  size_t es = (size_t)pl->C * pl->Ks;
  for (int i = prunus_team_share(pl->C, part, n_parts);
       i < prunus_team_share(pl->C, part + 1, n_parts); i++)
    for (int ob = 0; ob < pl->Ks / vl; ob++) {
      float g[3][3][MAX_VL], t[6][3][MAX_VL];
      for (int l = 0; l < vl; l++) {
        int o = ob * vl + l;
        for (int u = 0; u < 3; u++)
          for (int v = 0; v < 3; v++)
            g[u][v][l] = o >= pl->K ? 0.0f
                         : c->flip  ? c->Wt[((size_t)i * pl->K + o) * 9 + (2 - u) * 3 + (2 - v)]
                                    : c->Wt[((size_t)o * pl->C + i) * 9 + u * 3 + v];
      }
      for (int r = 0; r < a; r++) /* G g */
        for (int v = 0; v < 3; v++)
          for (int l = 0; l < vl; l++)
            t[r][v][l] = G[r][0] * g[0][v][l] + G[r][1] * g[1][v][l] + G[r][2] * g[2][v][l];
      float *dst = c->U + ((size_t)ob * pl->C + i) * vl;
      for (int r = 0; r < a; r++) /* (G g) G^T */
        for (int s = 0; s < a; s++)
          for (int l = 0; l < vl; l++)
            dst[(r * a + s) * es + l] =
                t[r][0][l] * G[s][0] + t[r][1][l] * G[s][1] + t[r][2][l] * G[s][2];
    }
}

static void transform_weights(const WinoPlan *pl, const float *Wt, gboolean flip, int vl, float *U,
                              PrunusTeam *team) {
  WeightCall c = {.pl = pl, .Wt = Wt, .flip = flip, .vl = vl, .U = U};
  prunus_team_run(team, transform_part, &c);
}

/* dW (K, C, 3, 3) = G^T dU G for the part's inputs, dU (E, C, Ks) summed over the
 * parts' in part order. */
static void reduce_part(void *arg, int part, int n_parts) {
  const WeightCall *c = arg;
  const WinoPlan *pl = c->pl;
  const int a = pl->m + 2, vl = c->vl;
  const float(*G)[3] = pl->m == 4 ? G4 : G2;
  size_t es = (size_t)pl->C * pl->Ks;
  for (int i = prunus_team_share(pl->C, part, n_parts);
       i < prunus_team_share(pl->C, part + 1, n_parts); i++)
    for (int ob = 0; ob < pl->Ks / vl; ob++) {
      float m[36][MAX_VL], t[3][6][MAX_VL];
      for (int e = 0; e < pl->E; e++) {
        for (int l = 0; l < vl; l++) m[e][l] = 0.0f;
        for (int p = 0; p < c->parts; p++) {
          const float *src = c->du[p] + e * es + (size_t)i * pl->Ks + ob * vl;
          for (int l = 0; l < vl; l++) m[e][l] += src[l];
        }
      }
      for (int u = 0; u < 3; u++) /* G^T dU */
        for (int b = 0; b < a; b++)
          for (int l = 0; l < vl; l++) {
            float s = 0.0f;
            for (int r = 0; r < a; r++) s += G[r][u] * m[r * a + b][l];
            t[u][b][l] = s;
          }
      for (int l = 0; l < vl && ob * vl + l < pl->K; l++) {
        float *dst = c->dW + ((size_t)(ob * vl + l) * pl->C + i) * 9;
        for (int u = 0; u < 3; u++) /* (G^T dU) G */
          for (int v = 0; v < 3; v++) {
            float s = 0.0f;
            for (int b = 0; b < a; b++) s += t[u][b][l] * G[b][v];
            dst[u * 3 + v] = s;
          }
      }
    }
}

static void reduce_weight_grad(const WinoPlan *pl, float *const *du, int parts, int vl, float *dW,
                               PrunusTeam *team) {
  WeightCall c = {.pl = pl, .vl = vl, .du = du, .parts = parts, .dW = dW};
  prunus_team_run(team, reduce_part, &c);
}

/* ------------------------------------------------------------------------ */
/* the vector code, once per instruction set */

/* Any other conv with channels interleaved (conv_wino-impl.h's cl_*): one part's
 * buffers. */
typedef struct {
  int Cs, Ks;        /* C and cout rounded up to vl */
  int Hs, Ws;        /* the zero-padded input, H + 2p by W + 2p */
  size_t xh, yh, du; /* floats of those buffers (ClBufs), rounded */
  size_t part;       /* floats of ClBufs */
} ClPlan;

typedef struct {
  float *xh;  /* (Hs, Ws, Cs) one padded input image */
  float *dxh; /* (Hs, Ws, Cs) one padded input gradient */
  float *yh;  /* (Ho * Wo, Ks) one output image, or its dy */
  float *du;  /* (k*k, C, Ks) the weight gradient of this part's images, by tap */
  float *db;  /* (Ks) the bias gradient of this part's images */
} ClBufs;

static ClPlan cl_plan(const PrunusConvGeom *g, int vl) {
  ClPlan cp;
  cp.Cs = (int)round_up((size_t)g->C, (size_t)vl);
  cp.Ks = (int)round_up((size_t)g->cout, (size_t)vl);
  cp.Hs = g->H + 2 * g->p, cp.Ws = g->W + 2 * g->p;
  cp.xh = round_up((size_t)cp.Hs * cp.Ws * cp.Cs, MAX_VL);
  cp.yh = round_up((size_t)g->Ho * g->Wo * cp.Ks, MAX_VL);
  cp.du = round_up((size_t)g->k * g->k * g->C * cp.Ks, MAX_VL);
  cp.part = 2 * cp.xh + cp.yh + cp.du + round_up((size_t)cp.Ks, MAX_VL);
  return cp;
}

static ClBufs cl_bufs(const ClPlan *cp, float *at) {
  ClBufs b;
  b.xh = at, at += cp->xh;
  b.dxh = at, at += cp->xh;
  b.yh = at, at += cp->yh;
  b.du = at, at += cp->du;
  b.db = at;
  return b;
}

/* One cl_* call split over a team: W the weights prepared for it (forward: by tap with
 * output channels as lanes; backward: input channels as lanes), then part p's buffers
 * at parts + p * part_floats. */
typedef struct {
  const PrunusConvGeom *g;
  const float *x, *W, *bias, *dy;
  float *y, *dx, *parts;
  size_t part_floats;
  int B;
  gboolean want_db;
} ClCall;

/* One call split over a team: part p's buffers at parts + p * part_floats. */
typedef struct {
  const WinoPlan *pl;
  const float *x, *U, *bias, *dy;
  float *y, *parts;
  size_t part_floats;
  int B;
  gboolean want_db;
} WinoCall;

#pragma GCC push_options
#pragma GCC target("avx512f")
#define ISA(name) name##_avx512
#define VL 16
#define VEC __m512
#define RMAX1 24 /* tiles per block with one output vector: 24 accumulators */
#define RMAX2 12 /* with two */
#define RMAX3 8  /* with three */
#define RMAX4 6  /* with four */
// clang-format off
#define BLOCKS_1(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) \
  M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24)
#define BLOCKS_2(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12)
#define BLOCKS_3(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8)
#define BLOCKS_4(M) M(1) M(2) M(3) M(4) M(5) M(6)
// clang-format on
static inline __mmask16 lanes_mask(int n) { return (__mmask16)prunus_lanes_mask(n); }
static inline VEC vzero(void) { return _mm512_setzero_ps(); }
static inline VEC vld(const float *p) { return _mm512_loadu_ps(p); }
static inline void vst(float *p, VEC v) { _mm512_storeu_ps(p, v); }
static inline VEC vld_n(const float *p, int n) {
  return n >= VL ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes_mask(n), p);
}
static inline void vst_n(float *p, VEC v, int n) {
  if (n >= VL)
    _mm512_storeu_ps(p, v);
  else
    _mm512_mask_storeu_ps(p, lanes_mask(n), v);
}
static inline VEC vset1(float a) { return _mm512_set1_ps(a); }
static inline VEC vadd(VEC a, VEC b) { return _mm512_add_ps(a, b); }
static inline VEC vsub(VEC a, VEC b) { return _mm512_sub_ps(a, b); }
static inline VEC vmul(VEC a, VEC b) { return _mm512_mul_ps(a, b); }
static inline VEC vfma(VEC a, VEC b, VEC c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vsum(VEC a) { return _mm512_reduce_add_ps(a); }
/* r[i][j] -> r[j][i] for a 16x16 block */
static inline void vtranspose(VEC r[16]) {
  VEC t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) { /* u[i + q], lane L: column 4L + q of rows i .. i+3 */
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int q = 0; q < 4; q++) {
    VEC v0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x88),
        v1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xDD);
    VEC w0 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x88),
        w1 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xDD);
    t[q] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    t[8 + q] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    t[4 + q] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    t[12 + q] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}
#include "conv_wino-impl.h"
#undef ISA
#undef VL
#undef VEC
#undef RMAX1
#undef RMAX2
#undef RMAX3
#undef RMAX4
#undef BLOCKS_1
#undef BLOCKS_2
#undef BLOCKS_3
#undef BLOCKS_4
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ISA(name) name##_avx2
#define VL 8
#define VEC __m256
#define RMAX1 12 /* 16 registers: 12 accumulators, a weight vector, a broadcast */
#define RMAX2 6
#define RMAX3 4
#define RMAX4 2
#define BLOCKS_1(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12)
#define BLOCKS_2(M) M(1) M(2) M(3) M(4) M(5) M(6)
#define BLOCKS_3(M) M(1) M(2) M(3) M(4)
#define BLOCKS_4(M) M(1) M(2)
/* maskload/maskstore take the lanes to touch as the sign bits of a vector */
static inline __m256i lanes_mask256(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline VEC vzero_avx2(void) { return _mm256_setzero_ps(); }
static inline VEC vld_avx2(const float *p) { return _mm256_loadu_ps(p); }
static inline void vst_avx2(float *p, VEC v) { _mm256_storeu_ps(p, v); }
static inline VEC vld_n_avx2(const float *p, int n) {
  return n >= VL ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes_mask256(n));
}
static inline void vst_n_avx2(float *p, VEC v, int n) {
  if (n >= VL)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, lanes_mask256(n), v);
}
static inline VEC vset1_avx2(float a) { return _mm256_set1_ps(a); }
static inline VEC vadd_avx2(VEC a, VEC b) { return _mm256_add_ps(a, b); }
static inline VEC vsub_avx2(VEC a, VEC b) { return _mm256_sub_ps(a, b); }
static inline VEC vmul_avx2(VEC a, VEC b) { return _mm256_mul_ps(a, b); }
static inline VEC vfma_avx2(VEC a, VEC b, VEC c) { return _mm256_fmadd_ps(a, b, c); }
static inline float vsum_avx2(VEC a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
/* r[i][j] -> r[j][i] for an 8x8 block */
static inline void vtranspose_avx2(VEC r[8]) {
  VEC t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) { /* u[i + q], lane L: column 4L + q of rows i .. i+3 */
    u[i] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t[i]), _mm256_castps_pd(t[i + 2])));
    u[i + 1] =
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t[i]), _mm256_castps_pd(t[i + 2])));
    u[i + 2] = _mm256_castpd_ps(
        _mm256_unpacklo_pd(_mm256_castps_pd(t[i + 1]), _mm256_castps_pd(t[i + 3])));
    u[i + 3] = _mm256_castpd_ps(
        _mm256_unpackhi_pd(_mm256_castps_pd(t[i + 1]), _mm256_castps_pd(t[i + 3])));
  }
  for (int q = 0; q < 4; q++) {
    r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
    r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
  }
}
#define vzero vzero_avx2
#define vld vld_avx2
#define vst vst_avx2
#define vld_n vld_n_avx2
#define vst_n vst_n_avx2
#define vset1 vset1_avx2
#define vadd vadd_avx2
#define vsub vsub_avx2
#define vmul vmul_avx2
#define vfma vfma_avx2
#define vsum vsum_avx2
#define vtranspose vtranspose_avx2
#include "conv_wino-impl.h"
#pragma GCC pop_options

/* The AVX-512 CPU's 8-lane version of the forwards: the AVX2 code's 256-bit vectors,
 * but with AVX-512VL's 32 registers, so its register blocks are as large as the
 * 16-lane version's. A layer with 20 output channels then fills 24 lanes, not 32 (see
 * forward_lanes). Its gradients are compiled too but never called (training keeps the
 * 16-lane code), hence the unused-function pragma. */
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl")
#undef ISA
#undef RMAX1
#undef RMAX2
#undef RMAX3
#undef RMAX4
#undef BLOCKS_1
#undef BLOCKS_2
#undef BLOCKS_3
#undef BLOCKS_4
#define ISA(name) name##_avx512y
#define RMAX1 24
#define RMAX2 12
#define RMAX3 8
#define RMAX4 6
// clang-format off
#define BLOCKS_1(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) \
  M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24)
#define BLOCKS_2(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12)
#define BLOCKS_3(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8)
#define BLOCKS_4(M) M(1) M(2) M(3) M(4) M(5) M(6)
// clang-format on
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "conv_wino-impl.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options

/* ------------------------------------------------------------------------ */
/* run-time choice */

static PrunusConvIsa isa_limit = PRUNUS_CONV_ISA_AVX512;

static PrunusConvIsa cpu_isa(void) {
  /* atomic: team threads may race to the first call (each stores the same value) */
  static atomic_int isa = -1;
  int v = atomic_load_explicit(&isa, memory_order_relaxed);
  if (v < 0) {
    __builtin_cpu_init();
    v = __builtin_cpu_supports("avx512f")                                 ? PRUNUS_CONV_ISA_AVX512
        : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? PRUNUS_CONV_ISA_AVX2
                                                                          : PRUNUS_CONV_ISA_NONE;
    atomic_store_explicit(&isa, v, memory_order_relaxed);
  }
  return (PrunusConvIsa)v;
}

PrunusConvIsa prunus_conv_wino_isa(void) {
  if (prunus_gemm_reference_forced()) return PRUNUS_CONV_ISA_NONE;
  return MIN(cpu_isa(), isa_limit);
}

void prunus_conv_wino_limit_isa(PrunusConvIsa limit) { isa_limit = limit; }

const char *prunus_conv_isa_name(PrunusConvIsa isa) {
  return isa == PRUNUS_CONV_ISA_AVX512 ? "avx512" : isa == PRUNUS_CONV_ISA_AVX2 ? "avx2" : "none";
}

static bool cpu_has_avx512vl(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vl");
}

/* AMD's AVX-512 cores (Zen 4) run a 512-bit operation as two 256-bit halves: there a
 * 256-bit vector costs half of a 512-bit one, lane for lane the same. */
static bool cpu_splits_512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_is("amd");
}

static PrunusConvLanes lanes_forced = PRUNUS_CONV_LANES_AUTO;

void prunus_conv_force_lanes(PrunusConvLanes lanes) { lanes_forced = lanes; }

/* Vector width of the forward of g under `isa`: 16 on AVX-512, or 8 (the avx512y
 * version) where 8-lane vectors leave fewer padding lanes and are not more costly for
 * it: on CPUs that split 512-bit operations, where either side pads less (cout or C mod
 * 16 in 1..8: the products and output transforms run over cout rounded up, the input
 * transforms and layout changes over C rounded up), or elsewhere where it needs no more
 * vectors (cout <= 8). A channel-pruned layer has such counts (20, 39, 54). Both widths
 * compute every output with the same operations in the same order, so the bits are
 * the same (tests/kernels/test_conv.c checks it). */
static int forward_lanes(PrunusConvIsa isa, const PrunusConvGeom *g) {
  if (isa != PRUNUS_CONV_ISA_AVX512) return 8;
  if (lanes_forced != PRUNUS_CONV_LANES_AUTO || !cpu_has_avx512vl())
    return lanes_forced == PRUNUS_CONV_LANES_8 && cpu_has_avx512vl() ? 8 : 16;
  bool k_pads_less = round_up((size_t)g->cout, 8) < round_up((size_t)g->cout, 16);
  bool c_pads_less = round_up((size_t)g->C, 8) < round_up((size_t)g->C, 16);
  if (cpu_splits_512()) return k_pads_less || c_pads_less ? 8 : 16;
  return g->cout <= 8 ? 8 : 16;
}

int prunus_conv_forward_lanes(const PrunusConvGeom *g) {
  PrunusConvIsa isa = prunus_conv_wino_isa();
  return isa == PRUNUS_CONV_ISA_NONE ? 0 : forward_lanes(isa, g);
}

bool prunus_conv_wino_covers(const PrunusConvGeom *g) {
  return g->k == 3 && g->s == 1 && g->p <= 2 && prunus_conv_wino_isa() != PRUNUS_CONV_ISA_NONE;
}

/* ------------------------------------------------------------------------ */
/* any other conv, channel-interleaved */

bool prunus_conv_cl_covers(const PrunusConvGeom *g) {
  return (g->s >= 2 || g->k == 1) && prunus_conv_wino_isa() != PRUNUS_CONV_ISA_NONE;
}

/* Floats of the prepared weights: (k*k, Ks, C) or (k*k, Cs, cout). */
static size_t cl_weights(const PrunusConvGeom *g, int vl) {
  ClPlan cp = cl_plan(g, vl);
  return round_up((size_t)g->k * g->k * MAX((size_t)cp.Ks * g->C, (size_t)cp.Cs * g->cout), MAX_VL);
}

size_t prunus_conv_cl_scratch(const PrunusConvGeom *g, int parts) {
  size_t most = 0;
  for (int vl = 8; vl <= MAX_VL; vl *= 2)
    most = MAX(most, cl_weights(g, vl) + (size_t)parts * cl_plan(g, vl).part);
  return most;
}

/* W by tap with n_lanes channels as lanes: dst[t][lb][n_red][vl] = Wt[o][i][t] for lane
 * channel lb * vl + l (0 past n_lanes) and reduction channel r, where (o, i) is (lane,
 * r) for the forward and (r, lane) for the input gradient (transposed). */
static void cl_prepare_weights(const PrunusConvGeom *g, const float *Wt, gboolean transposed,
                               int vl, float *dst) {
  int kk = g->k * g->k, n_lanes = transposed ? g->C : g->cout, n_red = transposed ? g->cout : g->C;
  int lbs = (int)round_up((size_t)n_lanes, (size_t)vl) / vl;
  for (int t = 0; t < kk; t++)
    for (int lb = 0; lb < lbs; lb++)
      for (int r = 0; r < n_red; r++)
        for (int l = 0; l < vl; l++) {
          int lane = lb * vl + l;
          size_t o = transposed ? (size_t)r : (size_t)lane,
                 i = transposed ? (size_t)lane : (size_t)r;
          dst[(((size_t)t * lbs + lb) * n_red + r) * vl + l] =
              lane < n_lanes ? Wt[(o * g->C + i) * kk + t] : 0.0f;
        }
}

/* The channel-interleaved forward with weights W laid out for vl lanes, each part's
 * scratch from `parts`, on the kernels of isa and vl. */
static void run_cl_forward(const PrunusConvGeom *g, PrunusConvIsa isa, int vl, const float *x,
                           const float *W, const float *bias, float *y, float *parts, int B,
                           PrunusTeam *team) {
  ClCall c = {.g = g,
              .x = x,
              .W = W,
              .bias = bias,
              .y = y,
              .parts = parts,
              .part_floats = cl_plan(g, vl).part,
              .B = B};
  prunus_team_run(team,
                  isa != PRUNUS_CONV_ISA_AVX512 ? cl_forward_part_avx2
                  : vl == 8                     ? cl_forward_part_avx512y
                                                : cl_forward_part_avx512,
                  &c);
}

void prunus_conv_cl_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                            const float *bias, float *y, float *scratch, int B, PrunusTeam *team) {
  PrunusConvIsa isa = prunus_conv_wino_isa();
  g_assert(isa != PRUNUS_CONV_ISA_NONE);
  int vl = forward_lanes(isa, g);
  cl_prepare_weights(g, Wt, FALSE, vl, scratch);
  run_cl_forward(g, isa, vl, x, scratch, bias, y, scratch + cl_weights(g, vl), B, team);
}

void prunus_conv_cl_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                             const float *dy, float *dW, float *db, float *dx, float *scratch,
                             int B, PrunusTeam *team) {
  PrunusConvIsa isa = prunus_conv_wino_isa();
  g_assert(isa != PRUNUS_CONV_ISA_NONE);
  int vl = isa == PRUNUS_CONV_ISA_AVX512 ? 16 : 8;
  ClPlan cp = cl_plan(g, vl);
  if (dx) cl_prepare_weights(g, Wt, TRUE, vl, scratch);
  ClCall c = {.g = g,
              .x = x,
              .W = scratch,
              .dy = dy,
              .dx = dx,
              .parts = scratch + cl_weights(g, vl),
              .part_floats = cp.part,
              .B = B,
              .want_db = db != NULL};
  prunus_team_run(
      team, isa == PRUNUS_CONV_ISA_AVX512 ? cl_backward_part_avx512 : cl_backward_part_avx2, &c);
  /* the parts' sums, added in part order: dW[o][i][t] from dU[t][i][o] */
  int kk = g->k * g->k, parts = prunus_team_threads(team);
  memset(dW, 0, sizeof(float) * g->cout * g->C * kk);
  for (int p = 0; p < parts; p++) {
    ClBufs b = cl_bufs(&cp, c.parts + (size_t)p * cp.part);
    for (int t = 0; t < kk; t++)
      for (int i = 0; i < g->C; i++)
        for (int o = 0; o < g->cout; o++)
          dW[((size_t)o * g->C + i) * kk + t] += b.du[((size_t)t * g->C + i) * cp.Ks + o];
  }
  if (db) {
    memset(db, 0, sizeof(float) * g->cout);
    for (int p = 0; p < parts; p++) {
      const float *src = cl_bufs(&cp, c.parts + (size_t)p * cp.part).db;
      for (int o = 0; o < g->cout; o++) db[o] += src[o];
    }
  }
}

/* ------------------------------------------------------------------------ */
/* calls */

/* A forward-shaped run (the forward, or the input gradient) of plan pl with weights U
 * already transformed, the parts' buffers at `parts`, in vectors of pl's width (vl: 8
 * on AVX-512 is the avx512y version). */
static void run_forward(const WinoPlan *pl, PrunusConvIsa isa, int vl, const float *x,
                        const float *U, const float *bias, float *y, float *parts, size_t part,
                        int B, PrunusTeam *team) {
  WinoCall c = {
      .pl = pl, .x = x, .U = U, .bias = bias, .y = y, .parts = parts, .part_floats = part, .B = B};
  prunus_team_run(team,
                  isa != PRUNUS_CONV_ISA_AVX512 ? forward_part_avx2
                  : vl == 8                     ? forward_part_avx512y
                                                : forward_part_avx512,
                  &c);
}

void prunus_conv_wino_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                              const float *bias, float *y, float *scratch, int B,
                              PrunusTeam *team) {
  PrunusConvIsa isa = prunus_conv_wino_isa();
  g_assert(prunus_conv_wino_covers(g));
  int vl = forward_lanes(isa, g);
  WinoPlan pl = forward_plan(g, vl);
  transform_weights(&pl, Wt, FALSE, vl, scratch, team);
  run_forward(&pl, isa, vl, x, scratch, bias, y, scratch + shared_floats(g, vl), part_floats(g, vl),
              B, team);
}

void prunus_conv_wino_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                               const float *dy, float *dW, float *db, float *dx, float *scratch,
                               int B, PrunusTeam *team) {
  PrunusConvIsa isa = prunus_conv_wino_isa();
  g_assert(prunus_conv_wino_covers(g));
  int vl = isa == PRUNUS_CONV_ISA_AVX512 ? 16 : 8;
  size_t shared = shared_floats(g, vl), part = part_floats(g, vl);
  WinoPlan pl = weight_grad_plan(g, vl);
  WinoCall c = {.pl = &pl,
                .x = x,
                .dy = dy,
                .parts = scratch + shared,
                .part_floats = part,
                .B = B,
                .want_db = db != NULL};
  prunus_team_run(
      team, isa == PRUNUS_CONV_ISA_AVX512 ? weight_grad_part_avx512 : weight_grad_part_avx2, &c);
  int parts = prunus_team_threads(team);
  float *du[PRUNUS_TEAM_MAX_THREADS];
  for (int p = 0; p < parts; p++) du[p] = wino_bufs(&pl, c.parts + (size_t)p * part).du;
  reduce_weight_grad(&pl, du, parts, vl, dW, team);
  if (db) {
    memset(db, 0, sizeof(float) * g->cout);
    for (int p = 0; p < parts; p++) {
      const float *src = wino_bufs(&pl, c.parts + (size_t)p * part).db;
      for (int o = 0; o < g->cout; o++) db[o] += src[o];
    }
  }
  if (dx) {
    WinoPlan dp = input_grad_plan(g, vl);
    transform_weights(&dp, Wt, TRUE, vl, scratch, team);
    run_forward(&dp, isa, vl, dy, scratch, NULL, dx, scratch + shared, part, B, team);
  }
}

/* ------------------------------------------------------------------------ */
/* prepared weights (inference) */

/* The few-channel direct forward for g: on the layers it covers, when the Winograd
 * kernels' AVX-512 version would run (not limited, lanes not forced by a test), and its
 * scratch fits in theirs (what callers hold for g). */
static bool prepared_direct(const PrunusConvGeom *g) {
  return prunus_conv_direct_few_covers(g) && prunus_conv_wino_covers(g) &&
         prunus_conv_wino_isa() == PRUNUS_CONV_ISA_AVX512 &&
         lanes_forced == PRUNUS_CONV_LANES_AUTO &&
         prunus_conv_direct_few_scratch(g, 1) <= prunus_conv_wino_scratch(g, 1);
}

bool prunus_conv_prepare(const PrunusConvGeom *g, const float *Wt, PrunusConvPrepared *out) {
  *out = (PrunusConvPrepared){0};
  PrunusConvIsa isa = prunus_conv_wino_isa();
  if (prepared_direct(g)) {
    size_t n = prunus_conv_direct_few_weights(g);
    void *w = NULL;
    if (posix_memalign(&w, 64, sizeof(float) * MAX(n, 1)) != 0) g_error("out of memory");
    prunus_conv_direct_few_prepare(g, Wt, w);
    *out = (PrunusConvPrepared){.direct = true, .isa = isa, .w = w, .n_floats = n};
    return true;
  }
  bool wino = prunus_conv_wino_covers(g);
  if (!wino && !prunus_conv_cl_covers(g)) return false;
  int vl = forward_lanes(isa, g);
  size_t n = wino ? shared_floats(g, vl) : cl_weights(g, vl);
  void *w = NULL;
  if (posix_memalign(&w, 64, sizeof(float) * MAX(n, 1)) != 0) g_error("out of memory");
  if (wino) {
    WinoPlan pl = forward_plan(g, vl);
    transform_weights(&pl, Wt, FALSE, vl, w, NULL);
  } else {
    cl_prepare_weights(g, Wt, FALSE, vl, w);
  }
  *out = (PrunusConvPrepared){.wino = wino, .isa = isa, .lanes = vl, .w = w, .n_floats = n};
  return true;
}

void prunus_conv_prepared_clear(PrunusConvPrepared *p) {
  free(p->w);
  *p = (PrunusConvPrepared){0};
}

bool prunus_conv_forward_prepared(const PrunusConvGeom *g, const PrunusConvPrepared *p,
                                  const float *x, const float *bias, float *y, float *scratch,
                                  int B, PrunusTeam *team) {
  PrunusConvIsa isa = prunus_conv_wino_isa();
  if (p->direct) {
    if (!p->w || !prepared_direct(g)) return false;
    prunus_conv_direct_few_forward(g, x, p->w, bias, y, scratch, B, team);
    return true;
  }
  if (!p->w || isa != p->isa || forward_lanes(isa, g) != p->lanes) return false;
  int vl = p->lanes;
  if (p->wino) {
    WinoPlan pl = forward_plan(g, vl);
    run_forward(&pl, isa, vl, x, p->w, bias, y, scratch, part_floats(g, vl), B, team);
    return true;
  }
  run_cl_forward(g, isa, vl, x, p->w, bias, y, scratch, B, team);
  return true;
}
