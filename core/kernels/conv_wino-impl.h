/* conv_wino-impl.h: the vector code of conv_wino.c, written once for VL channels per
 * vector and compiled once per instruction set: conv_wino.c defines the vector
 * operations and ISA(name) (the suffix), then includes this file. */

/* ------------------------------------------------------------------------ */
/* moving between channels-first planes and channel-interleaved (position, VL) rows */

/* The register blocks below are arrays indexed by loop counters: unrolled completely,
 * they live in registers (GCC stops unrolling by itself at 16). */
#define UNROLL _Pragma("GCC unroll 32")

/* Both directions take the plane's positions VL at a time in its own (row-major)
 * order, across row ends: a 7x7 image is 4 blocks of positions, not 7 rows of 7. */

/* hwc (rows, cols, cs) at row r0, column c0, channel c0 + ..: the n channels of plane
 * (n, rows_in, cols_in) put at positions (r0 + h, col0 + w); lanes past n get 0. */
static void ISA(to_hwc)(const float *plane, int n, int rows_in, int cols_in, float *hwc,
                        int hwc_cols, int cs, int r0, int col0) {
  int hw = rows_in * cols_in;
  for (int cb = 0; cb < n; cb += VL) {
    int nr = MIN(VL, n - cb);
    for (int p0 = 0; p0 < hw; p0 += VL) {
      int np = MIN(VL, hw - p0);
      VEC r[VL];
      UNROLL for (int i = 0; i < VL; i++) r[i] =
          i < nr ? vld_n(plane + (size_t)(cb + i) * hw + p0, np) : vzero();
      vtranspose(r);
      int h = p0 / cols_in, w = p0 % cols_in;
      UNROLL for (int j = 0; j < VL; j++) {
        if (j < np) vst(hwc + ((size_t)(r0 + h) * hwc_cols + col0 + w) * cs + cb, r[j]);
        if (++w == cols_in) w = 0, h++;
      }
    }
  }
}

/* plane (n, rows, cols) = channels [0, n) of hwc (.., hwc_cols, cs) at rows < rows and
 * columns < cols. */
static void ISA(from_hwc)(const float *hwc, int hwc_cols, int cs, float *plane, int n, int rows,
                          int cols) {
  int hw = rows * cols;
  for (int cb = 0; cb < n; cb += VL) {
    int nk = MIN(VL, n - cb);
    for (int p0 = 0; p0 < hw; p0 += VL) {
      int np = MIN(VL, hw - p0), h = p0 / cols, w = p0 % cols;
      VEC r[VL];
      UNROLL for (int j = 0; j < VL; j++) {
        r[j] = j < np ? vld(hwc + ((size_t)h * hwc_cols + w) * cs + cb) : vzero();
        if (++w == cols) w = 0, h++;
      }
      vtranspose(r);
      UNROLL for (int k = 0; k < VL; k++) if (k < nk)
          vst_n(plane + (size_t)(cb + k) * hw + p0, r[k], np);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* the Winograd transforms, VL channels at a time */

/* F(2x2, 3x3): V[e][t0 + tile] = B^T d B for every tile of the image in xh (Hq, Wq, Cs). */
static void ISA(input_transform2)(const WinoPlan *pl, const float *xh, float *V, int t0) {
  size_t es = pl->vs; /* floats between two elements e */
  for (int th = 0; th < pl->nth; th++)
    for (int tw = 0; tw < pl->ntw; tw++) {
      float *out = V + (size_t)(t0 + th * pl->ntw + tw) * pl->Cs;
      for (int cb = 0; cb < pl->Cs; cb += VL) {
        const float *in = xh + ((size_t)2 * th * pl->Wq + 2 * tw) * pl->Cs + cb;
        VEC d[4][4], r[4][4];
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) d[i][j] = vld(in + ((size_t)i * pl->Wq + j) * pl->Cs);
        for (int j = 0; j < 4; j++) { /* B^T d */
          r[0][j] = vsub(d[0][j], d[2][j]);
          r[1][j] = vadd(d[1][j], d[2][j]);
          r[2][j] = vsub(d[2][j], d[1][j]);
          r[3][j] = vsub(d[1][j], d[3][j]);
        }
        for (int i = 0; i < 4; i++) { /* (B^T d) B */
          float *o = out + (size_t)i * 4 * es + cb;
          vst(o, vsub(r[i][0], r[i][2]));
          vst(o + es, vadd(r[i][1], r[i][2]));
          vst(o + 2 * es, vsub(r[i][2], r[i][1]));
          vst(o + 3 * es, vsub(r[i][1], r[i][3]));
        }
      }
    }
}

/* F(2x2, 3x3): yh (2 nth, 2 ntw, Ks) = A^T M A (+ bias) for every tile of one image. */
static void ISA(output_transform2)(const WinoPlan *pl, const float *M, int t0, const float *bias,
                                   float *yh) {
  size_t es = pl->ms;
  int yw = 2 * pl->ntw;
  for (int th = 0; th < pl->nth; th++)
    for (int tw = 0; tw < pl->ntw; tw++)
      for (int kb = 0; kb < pl->Ks; kb += VL) {
        VEC b = bias ? vld_n(bias + kb, MIN(VL, pl->K - kb)) : vzero();
        const float *in = M + (size_t)(t0 + th * pl->ntw + tw) * pl->Ks + kb;
        VEC m[4][4], r[2][4];
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) m[i][j] = vld(in + (size_t)(i * 4 + j) * es);
        for (int j = 0; j < 4; j++) { /* A^T m */
          r[0][j] = vadd(vadd(m[0][j], m[1][j]), m[2][j]);
          r[1][j] = vsub(vsub(m[1][j], m[2][j]), m[3][j]);
        }
        for (int i = 0; i < 2; i++) { /* (A^T m) A */
          float *o = yh + ((size_t)(2 * th + i) * yw + 2 * tw) * pl->Ks + kb;
          vst(o, vadd(b, vadd(vadd(r[i][0], r[i][1]), r[i][2])));
          vst(o + pl->Ks, vadd(b, vsub(vsub(r[i][1], r[i][2]), r[i][3])));
        }
      }
}

/* F(4x4, 3x3) (the B^T, G, A^T of Lavin & Gray): 6x6 input tiles, 36 products for 16
 * outputs. r = B^T d for one column d of a tile. */
static inline void ISA(bt6)(const VEC d[6], VEC r[6]) {
  const VEC two = vset1(2.0f), four = vset1(4.0f), five = vset1(5.0f);
  VEC d42 = vsub(d[4], d[2]), d31 = vsub(d[3], d[1]);
  r[0] = vsub(vfma(four, d[0], d[4]), vmul(five, d[2]));
  r[1] = vsub(vadd(d[3], d[4]), vmul(four, vadd(d[1], d[2])));
  r[2] = vfma(four, vsub(d[1], d[2]), vsub(d[4], d[3]));
  r[3] = vfma(two, d31, d42);
  r[4] = vsub(d42, vmul(two, d31));
  r[5] = vsub(vfma(four, d[1], d[5]), vmul(five, d[3]));
}

/* o = A^T m for one column m of a tile's products. */
static inline void ISA(at6)(const VEC m[6], VEC o[4]) {
  VEC s12 = vadd(m[1], m[2]), d12 = vsub(m[1], m[2]);
  VEC s34 = vadd(m[3], m[4]), d34 = vsub(m[3], m[4]);
  o[0] = vadd(vadd(m[0], s12), s34);
  o[1] = vfma(vset1(2.0f), d34, d12);
  o[2] = vfma(vset1(4.0f), s34, s12);
  o[3] = vadd(vfma(vset1(8.0f), d34, d12), m[5]);
}

/* F(4x4, 3x3): V[e][t0 + tile] = B^T d B for every tile of the image in xh. */
static void ISA(input_transform4)(const WinoPlan *pl, const float *xh, float *V, int t0) {
  size_t es = pl->vs;
  for (int th = 0; th < pl->nth; th++)
    for (int tw = 0; tw < pl->ntw; tw++) {
      float *out = V + (size_t)(t0 + th * pl->ntw + tw) * pl->Cs;
      for (int cb = 0; cb < pl->Cs; cb += VL) {
        const float *in = xh + ((size_t)4 * th * pl->Wq + 4 * tw) * pl->Cs + cb;
        VEC r[6][6]; /* r[i][j] = (B^T d)[i][j] */
        for (int j = 0; j < 6; j++) {
          VEC d[6], c[6];
          for (int i = 0; i < 6; i++) d[i] = vld(in + ((size_t)i * pl->Wq + j) * pl->Cs);
          ISA(bt6)(d, c);
          for (int i = 0; i < 6; i++) r[i][j] = c[i];
        }
        for (int i = 0; i < 6; i++) { /* (B^T d) B */
          VEC v[6];
          ISA(bt6)(r[i], v);
          for (int j = 0; j < 6; j++) vst(out + (size_t)(i * 6 + j) * es + cb, v[j]);
        }
      }
    }
}

/* F(4x4, 3x3): yh (4 nth, 4 ntw, Ks) = A^T M A (+ bias) for every tile of one image. */
static void ISA(output_transform4)(const WinoPlan *pl, const float *M, int t0, const float *bias,
                                   float *yh) {
  size_t es = pl->ms;
  int yw = 4 * pl->ntw;
  for (int th = 0; th < pl->nth; th++)
    for (int tw = 0; tw < pl->ntw; tw++)
      for (int kb = 0; kb < pl->Ks; kb += VL) {
        VEC b = bias ? vld_n(bias + kb, MIN(VL, pl->K - kb)) : vzero();
        const float *in = M + (size_t)(t0 + th * pl->ntw + tw) * pl->Ks + kb;
        VEC r[4][6]; /* r[i][j] = (A^T m)[i][j] */
        for (int j = 0; j < 6; j++) {
          VEC m[6], o[4];
          for (int i = 0; i < 6; i++) m[i] = vld(in + (size_t)(i * 6 + j) * es);
          ISA(at6)(m, o);
          for (int i = 0; i < 4; i++) r[i][j] = o[i];
        }
        for (int i = 0; i < 4; i++) { /* (A^T m) A */
          VEC o[4];
          ISA(at6)(r[i], o);
          float *dst = yh + ((size_t)(4 * th + i) * yw + 4 * tw) * pl->Ks + kb;
          for (int j = 0; j < 4; j++) vst(dst + (size_t)j * pl->Ks, vadd(b, o[j]));
        }
      }
}

static void ISA(input_transform)(const WinoPlan *pl, const float *xh, float *V, int t0) {
  if (pl->m == 4)
    ISA(input_transform4)(pl, xh, V, t0);
  else
    ISA(input_transform2)(pl, xh, V, t0);
}

static void ISA(output_transform)(const WinoPlan *pl, const float *M, int t0, const float *bias,
                                  float *yh) {
  if (pl->m == 4)
    ISA(output_transform4)(pl, M, t0, bias, yh);
  else
    ISA(output_transform2)(pl, M, t0, bias, yh);
}

/* F(2x2, 3x3): Z[e][t0 + tile] = A dY A^T for every 2x2 tile of one image's dy in dh
 * (2 nth, 2 ntw, Ks), zero past the output's edge. */
static void ISA(grad_transform2)(const WinoPlan *pl, const float *dh, float *Z, int t0) {
  size_t es = pl->ms;
  int yw = 2 * pl->ntw;
  for (int th = 0; th < pl->nth; th++)
    for (int tw = 0; tw < pl->ntw; tw++) {
      float *out = Z + (size_t)(t0 + th * pl->ntw + tw) * pl->Ks;
      for (int kb = 0; kb < pl->Ks; kb += VL) {
        const float *in = dh + ((size_t)2 * th * yw + 2 * tw) * pl->Ks + kb;
        VEC y[2][2], r[4][2];
        for (int i = 0; i < 2; i++)
          for (int j = 0; j < 2; j++) y[i][j] = vld(in + ((size_t)i * yw + j) * pl->Ks);
        for (int j = 0; j < 2; j++) { /* A dY */
          r[0][j] = y[0][j];
          r[1][j] = vadd(y[0][j], y[1][j]);
          r[2][j] = vsub(y[0][j], y[1][j]);
          r[3][j] = vsub(vzero(), y[1][j]);
        }
        for (int i = 0; i < 4; i++) { /* (A dY) A^T */
          float *o = out + (size_t)i * 4 * es + kb;
          vst(o, r[i][0]);
          vst(o + es, vadd(r[i][0], r[i][1]));
          vst(o + 2 * es, vsub(r[i][0], r[i][1]));
          vst(o + 3 * es, vsub(vzero(), r[i][1]));
        }
      }
    }
}

/* z = A y for one column y (4 values) of a 4x4 dy tile: F(4x4, 3x3)'s A = (A^T)^T. */
static inline void ISA(a6)(const VEC y[4], VEC z[6]) {
  VEC s02 = vadd(y[0], y[2]), s13 = vadd(y[1], y[3]);
  VEC f = vfma(vset1(4.0f), y[2], y[0]), h = vfma(vset1(8.0f), y[3], vmul(vset1(2.0f), y[1]));
  z[0] = y[0];
  z[1] = vadd(s02, s13);
  z[2] = vsub(s02, s13);
  z[3] = vadd(f, h);
  z[4] = vsub(f, h);
  z[5] = y[3];
}

/* F(4x4, 3x3): Z[e][t0 + tile] = A dY A^T for every 4x4 tile of one image's dy in dh
 * (4 nth, 4 ntw, Ks), zero past the output's edge. */
static void ISA(grad_transform4)(const WinoPlan *pl, const float *dh, float *Z, int t0) {
  size_t es = pl->ms;
  int yw = 4 * pl->ntw;
  for (int th = 0; th < pl->nth; th++)
    for (int tw = 0; tw < pl->ntw; tw++) {
      float *out = Z + (size_t)(t0 + th * pl->ntw + tw) * pl->Ks;
      for (int kb = 0; kb < pl->Ks; kb += VL) {
        const float *in = dh + ((size_t)4 * th * yw + 4 * tw) * pl->Ks + kb;
        VEC r[6][4]; /* r[i][j] = (A dY)[i][j] */
        for (int j = 0; j < 4; j++) {
          VEC y[4], z[6];
          for (int i = 0; i < 4; i++) y[i] = vld(in + ((size_t)i * yw + j) * pl->Ks);
          ISA(a6)(y, z);
          for (int i = 0; i < 6; i++) r[i][j] = z[i];
        }
        for (int i = 0; i < 6; i++) { /* (A dY) A^T */
          VEC z[6];
          ISA(a6)(r[i], z);
          for (int j = 0; j < 6; j++) vst(out + (size_t)(i * 6 + j) * es + kb, z[j]);
        }
      }
    }
}

static void ISA(grad_transform)(const WinoPlan *pl, const float *dh, float *Z, int t0) {
  if (pl->m == 4)
    ISA(grad_transform4)(pl, dh, Z, t0);
  else
    ISA(grad_transform2)(pl, dh, Z, t0);
}

/* ------------------------------------------------------------------------ */
/* the products, one per element e of the transformed tile: register blocks of R
 * tiles (or R input channels, or R output positions) by NK vectors of channels */

/* m[r][j] = (when add: m[r][j] +) sum over c < C of v[r][c] * u[j][c] for R rows: v (R,
 * vs) rows of transformed input (or dy), u (NK, C, VL) at stride us, m (R, ms) at
 * vector j. */
#define WINO_FWD(R, NK)                                                                         \
  static void ISA(fwd_##R##_##NK)(const float *v, int vs, int C, const float *u, size_t us,     \
                                  float *m, int ms, int add) {                                  \
    VEC acc[R][NK];                                                                             \
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int j = 0; j < NK; j++) acc[r][j] = vzero(); \
    for (int c = 0; c < C; c++) {                                                               \
      VEC w[NK];                                                                                \
      UNROLL for (int j = 0; j < NK; j++) w[j] = vld(u + j * us + (size_t)c * VL);              \
      UNROLL for (int r = 0; r < R; r++) {                                                      \
        VEC a = vset1(v[(size_t)r * vs + c]);                                                   \
        UNROLL for (int j = 0; j < NK; j++) acc[r][j] = vfma(a, w[j], acc[r][j]);               \
      }                                                                                         \
    }                                                                                           \
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int j = 0; j < NK; j++) {                    \
      float *o = m + (size_t)r * ms + j * VL;                                                   \
      vst(o, add ? vadd(vld(o), acc[r][j]) : acc[r][j]);                                        \
    }                                                                                           \
  }

/* du[r][j] += sum over rows and t < n of v[row][t][r] * z[row][t][j] for R input
 * channels: v (rows, n) at strides (vrow, vs), the (transformed) input at the first
 * channel; z (rows, n) at strides (zrow, zs), the (transformed) dy at vector 0; du (R, ds).
 * Winograd's products take one row of n tiles. */
#define WINO_DW(R, NK)                                                                        \
  static void ISA(dw_##R##_##NK)(const float *v, int vs, size_t vrow, const float *z, int zs, \
                                 size_t zrow, int rows, int n, float *du, int ds) {           \
    VEC acc[R][NK];                                                                           \
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int j = 0; j < NK; j++) acc[r][j] =        \
        vld(du + (size_t)r * ds + j * VL);                                                    \
    for (int row = 0; row < rows; row++, v += vrow, z += zrow)                                \
      for (int t = 0; t < n; t++) {                                                           \
        VEC w[NK];                                                                            \
        UNROLL for (int j = 0; j < NK; j++) w[j] = vld(z + (size_t)t * zs + j * VL);          \
        UNROLL for (int r = 0; r < R; r++) {                                                  \
          VEC a = vset1(v[(size_t)t * vs + r]);                                               \
          UNROLL for (int j = 0; j < NK; j++) acc[r][j] = vfma(a, w[j], acc[r][j]);           \
        }                                                                                     \
      }                                                                                       \
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int j = 0; j < NK; j++)                    \
        vst(du + (size_t)r * ds + j * VL, acc[r][j]);                                         \
  }

typedef void (*ISA(FwdKernel))(const float *, int, int, const float *, size_t, float *, int, int);
typedef void (*ISA(DwKernel))(const float *, int, size_t, const float *, int, size_t, int, int,
                              float *, int);

#define ISA_FWD3(R) WINO_FWD(R, 3)
#define ISA_FWD4(R) WINO_FWD(R, 4)
#define ISA_FWD3_NAME(R) ISA(fwd_##R##_3),
#define ISA_FWD4_NAME(R) ISA(fwd_##R##_4),
BLOCKS_3(ISA_FWD3)
BLOCKS_4(ISA_FWD4)
static const ISA(FwdKernel) ISA(fwd3_kernel)[RMAX3 + 1] = {NULL, BLOCKS_3(ISA_FWD3_NAME)};
static const ISA(FwdKernel) ISA(fwd4_kernel)[RMAX4 + 1] = {NULL, BLOCKS_4(ISA_FWD4_NAME)};
#undef ISA_FWD3
#undef ISA_FWD4
#undef ISA_FWD3_NAME
#undef ISA_FWD4_NAME
#define ISA_FWD1(R) WINO_FWD(R, 1)
#define ISA_FWD2(R) WINO_FWD(R, 2)
#define ISA_DW1(R) WINO_DW(R, 1)
#define ISA_DW2(R) WINO_DW(R, 2)
#define ISA_FWD1_NAME(R) ISA(fwd_##R##_1),
#define ISA_FWD2_NAME(R) ISA(fwd_##R##_2),
#define ISA_DW1_NAME(R) ISA(dw_##R##_1),
#define ISA_DW2_NAME(R) ISA(dw_##R##_2),
BLOCKS_1(ISA_FWD1)
BLOCKS_2(ISA_FWD2)
BLOCKS_1(ISA_DW1)
BLOCKS_2(ISA_DW2)
static const ISA(FwdKernel) ISA(fwd_kernel)[2][RMAX1 + 1] = {{NULL, BLOCKS_1(ISA_FWD1_NAME)},
                                                             {NULL, BLOCKS_2(ISA_FWD2_NAME)}};
static const ISA(DwKernel)
    ISA(dw_kernel)[2][RMAX1 + 1] = {{NULL, BLOCKS_1(ISA_DW1_NAME)}, {NULL, BLOCKS_2(ISA_DW2_NAME)}};
#undef ISA_FWD1
#undef ISA_FWD2
#undef ISA_DW1
#undef ISA_DW2
#undef ISA_FWD1_NAME
#undef ISA_FWD2_NAME
#undef ISA_DW1_NAME
#undef ISA_DW2_NAME

/* Blocks of at most rmax splitting n evenly: the size of the first ones. */
static int ISA(block_of)(int n, int rmax) {
  int blocks = (n + rmax - 1) / rmax;
  return (n + blocks - 1) / blocks;
}

/* Output vectors a product pass takes when `left` of them remain: wider passes load a
 * weight vector per NK products and a broadcast per R, so passes of 1 (a load per
 * product) are avoided: 3 = 3, 5 = 3 + 2, 6 = 3 + 3, 7 = 4 + 3 (channel-pruned widths:
 * 24, 40, 48, 56 channels at 8 lanes). 4 stays 2 + 2 unless the call has few rows
 * (RMAX4 at most: a small image at batch 1), where R is small anyway. */
static int ISA(pass_vectors)(int left, int rows) {
  if (left >= 4 && (rows <= RMAX4 || left == 7)) return 4;
  if (left == 3 || left == 5 || left == 6) return 3;
  return left >= 2 ? 2 : 1;
}

/* The kernel for a block of r rows by nk vectors. */
static ISA(FwdKernel) ISA(fwd_block)(int nk, int r) {
  return nk == 4 ? ISA(fwd4_kernel)[r] : nk == 3 ? ISA(fwd3_kernel)[r] : ISA(fwd_kernel)[nk - 1][r];
}

static int ISA(rmax_of)(int nk) {
  return nk == 4 ? RMAX4 : nk == 3 ? RMAX3 : nk == 2 ? RMAX2 : RMAX1;
}

/* M[e] (n tiles, Ks) = V[e] (n, C) U[e] (C, Ks) for the E elements e. */
static void ISA(products)(const WinoPlan *pl, const float *V, const float *U, float *M, int n) {
  int kvs = pl->Ks / VL;
  for (int e = 0; e < pl->E; e++) {
    const float *ve = V + (size_t)e * pl->vs;
    const float *ue = U + (size_t)e * pl->C * pl->Ks;
    float *me = M + (size_t)e * pl->ms;
    for (int kv = 0; kv < kvs;) {
      int nk = ISA(pass_vectors)(kvs - kv, n);
      int rb = ISA(block_of)(n, ISA(rmax_of)(nk));
      for (int t = 0; t < n; t += rb) {
        int r = MIN(rb, n - t);
        ISA(fwd_block)
        (nk, r)(ve + (size_t)t * pl->Cs, pl->Cs, pl->C, ue + (size_t)kv * pl->C * VL,
                (size_t)pl->C * VL, me + (size_t)t * pl->Ks + kv * VL, pl->Ks, 0);
      }
      kv += nk;
    }
  }
}

/* dU[e] (C, Ks) += V[e]^T (C, n tiles) Z[e] (n, Ks) for the E elements e. */
static void ISA(weight_products)(const WinoPlan *pl, const float *V, const float *Z, float *dU,
                                 int n) {
  int kvs = pl->Ks / VL;
  for (int e = 0; e < pl->E; e++) {
    const float *ve = V + (size_t)e * pl->vs;
    const float *ze = Z + (size_t)e * pl->ms;
    float *de = dU + (size_t)e * pl->C * pl->Ks;
    for (int kv = 0; kv < kvs;) {
      int nk = kvs - kv >= 2 ? 2 : 1;
      int rb = ISA(block_of)(pl->C, nk == 2 ? RMAX2 : RMAX1);
      for (int c = 0; c < pl->C; c += rb) {
        int r = MIN(rb, pl->C - c);
        const ISA(DwKernel) kernel = ISA(dw_kernel)[nk - 1][r];
        kernel(ve + c, pl->Cs, 0, ze + kv * VL, pl->Ks, 0, 1, n, de + (size_t)c * pl->Ks + kv * VL,
               pl->Ks);
      }
      kv += nk;
    }
  }
}

/* Sum of each of the n channels of plane (n, hw), added to db. */
static void ISA(channel_sums)(const float *plane, int n, size_t hw, float *db) {
  for (int c = 0; c < n; c++) {
    const float *row = plane + (size_t)c * hw;
    VEC s = vzero();
    for (size_t i = 0; i < hw; i += VL) s = vadd(s, vld_n(row + i, (int)MIN((size_t)VL, hw - i)));
    db[c] += vsum(s);
  }
}

/* ------------------------------------------------------------------------ */
/* a team's parts */

static void ISA(forward_part)(void *arg, int part, int n_parts) {
  const WinoCall *c = arg;
  const WinoPlan *pl = c->pl;
  WinoBufs b = wino_bufs(pl, c->parts + (size_t)part * c->part_floats);
  memset(b.xh, 0, sizeof(float) * pl->Hq * pl->Wq * pl->Cs); /* the padding, once */
  int end = prunus_team_share(c->B, part + 1, n_parts);
  size_t in_img = (size_t)pl->C * pl->H * pl->W, out_img = (size_t)pl->K * pl->Ho * pl->Wo;
  for (int i0 = prunus_team_share(c->B, part, n_parts); i0 < end; i0 += pl->G) {
    int ng = MIN(pl->G, end - i0);
    for (int i = 0; i < ng; i++) {
      ISA(to_hwc)
      (c->x + (i0 + i) * in_img, pl->C, pl->H, pl->W, b.xh, pl->Wq, pl->Cs, pl->p, pl->p);
      ISA(input_transform)(pl, b.xh, b.v, i * pl->T);
    }
    ISA(products)(pl, b.v, c->U, b.m, ng * pl->T);
    for (int i = 0; i < ng; i++) {
      ISA(output_transform)(pl, b.m, i * pl->T, c->bias, b.yh);
      ISA(from_hwc)
      (b.yh, pl->m * pl->ntw, pl->Ks, c->y + (i0 + i) * out_img, pl->K, pl->Ho, pl->Wo);
    }
  }
}

static void ISA(weight_grad_part)(void *arg, int part, int n_parts) {
  const WinoCall *c = arg;
  const WinoPlan *pl = c->pl;
  WinoBufs b = wino_bufs(pl, c->parts + (size_t)part * c->part_floats);
  memset(b.xh, 0, sizeof(float) * pl->Hq * pl->Wq * pl->Cs);
  memset(b.yh, 0, sizeof(float) * pl->m * pl->m * pl->nth * pl->ntw * pl->Ks); /* past the edge */
  memset(b.du, 0, sizeof(float) * pl->E * pl->C * pl->Ks);
  memset(b.db, 0, sizeof(float) * pl->Ks);
  int end = prunus_team_share(c->B, part + 1, n_parts);
  size_t in_img = (size_t)pl->C * pl->H * pl->W, out_img = (size_t)pl->K * pl->Ho * pl->Wo;
  for (int i0 = prunus_team_share(c->B, part, n_parts); i0 < end; i0 += pl->G) {
    int ng = MIN(pl->G, end - i0);
    for (int i = 0; i < ng; i++) {
      const float *dyi = c->dy + (i0 + i) * out_img;
      ISA(to_hwc)
      (c->x + (i0 + i) * in_img, pl->C, pl->H, pl->W, b.xh, pl->Wq, pl->Cs, pl->p, pl->p);
      ISA(input_transform)(pl, b.xh, b.v, i * pl->T);
      ISA(to_hwc)(dyi, pl->K, pl->Ho, pl->Wo, b.yh, pl->m * pl->ntw, pl->Ks, 0, 0);
      ISA(grad_transform)(pl, b.yh, b.m, i * pl->T);
      if (c->want_db) ISA(channel_sums)(dyi, pl->K, (size_t)pl->Ho * pl->Wo, b.db);
    }
    ISA(weight_products)(pl, b.v, b.m, b.du, ng * pl->T);
  }
}

/* ------------------------------------------------------------------------ */
/* any other conv, directly on channel-interleaved images: every tap (kh, kw) of the
 * kernel is a product of the padded input's window rows (stride s) with that tap's
 * weights, added up in the output rows */

/* yh (Ho * Wo, Ks) = conv of one image in xh (Hs, Ws, Cs), Wf (k*k, Ks/VL, C, VL). */
static void ISA(cl_products)(const PrunusConvGeom *g, const ClPlan *cp, const float *xh,
                             const float *Wf, float *yh) {
  int kvs = cp->Ks / VL, kk = g->k * g->k;
  for (int oh = 0; oh < g->Ho; oh++)
    for (int kv = 0; kv < kvs;) {
      /* 3 for 3, 5, 7 vectors; never 4, which leaves rows of 7 in blocks of 4 and 3 */
      int left = kvs - kv, nk = left == 3 || left == 5 || left == 7 ? 3 : left >= 2 ? 2 : 1;
      int rb = ISA(block_of)(g->Wo, ISA(rmax_of)(nk));
      for (int ow = 0; ow < g->Wo; ow += rb) {
        int r = MIN(rb, g->Wo - ow);
        const ISA(FwdKernel) kernel = ISA(fwd_block)(nk, r);
        for (int t = 0; t < kk; t++) {
          const float *v =
              xh +
              ((size_t)(oh * g->s + t / g->k) * cp->Ws + (size_t)ow * g->s + t % g->k) * cp->Cs;
          kernel(v, g->s * cp->Cs, g->C, Wf + ((size_t)t * kvs + kv) * g->C * VL, (size_t)g->C * VL,
                 yh + ((size_t)oh * g->Wo + ow) * cp->Ks + kv * VL, cp->Ks, t > 0);
        }
      }
      kv += nk;
    }
}

static void ISA(cl_forward_part)(void *arg, int part, int n_parts) {
  const ClCall *c = arg;
  const PrunusConvGeom *g = c->g;
  ClPlan cp = cl_plan(g, VL);
  ClBufs b = cl_bufs(&cp, c->parts + (size_t)part * c->part_floats);
  size_t in_img = (size_t)g->C * g->H * g->W, out_img = (size_t)g->cout * g->Ho * g->Wo;
  memset(b.xh, 0, sizeof(float) * cp.Hs * cp.Ws * cp.Cs); /* the padding, once */
  for (int i = prunus_team_share(c->B, part, n_parts);
       i < prunus_team_share(c->B, part + 1, n_parts); i++) {
    ISA(to_hwc)(c->x + i * in_img, g->C, g->H, g->W, b.xh, cp.Ws, cp.Cs, g->p, g->p);
    ISA(cl_products)(g, &cp, b.xh, c->W, b.yh);
    if (c->bias)
      for (int kb = 0; kb < cp.Ks; kb += VL) {
        VEC bv = vld_n(c->bias + kb, MIN(VL, g->cout - kb));
        for (int o = 0; o < g->Ho * g->Wo; o++) {
          float *at = b.yh + (size_t)o * cp.Ks + kb;
          vst(at, vadd(vld(at), bv));
        }
      }
    ISA(from_hwc)(b.yh, g->Wo, cp.Ks, c->y + i * out_img, g->cout, g->Ho, g->Wo);
  }
}

/* dU (k*k, C, Ks) += each tap's window rows of one image in xh times its dy in dyh. */
static void ISA(cl_weight_products)(const PrunusConvGeom *g, const ClPlan *cp, const float *xh,
                                    const float *dyh, float *dU) {
  int kvs = cp->Ks / VL, kk = g->k * g->k;
  for (int t = 0; t < kk; t++)
    for (int kv = 0; kv < kvs;) {
      int nk = kvs - kv >= 2 ? 2 : 1;
      int rb = ISA(block_of)(g->C, nk == 2 ? RMAX2 : RMAX1);
      for (int c0 = 0; c0 < g->C; c0 += rb) {
        int r = MIN(rb, g->C - c0);
        const ISA(DwKernel) kernel = ISA(dw_kernel)[nk - 1][r];
        kernel(xh + ((size_t)(t / g->k) * cp->Ws + t % g->k) * cp->Cs + c0, g->s * cp->Cs,
               (size_t)g->s * cp->Ws * cp->Cs, dyh + kv * VL, cp->Ks, (size_t)g->Wo * cp->Ks, g->Ho,
               g->Wo, dU + ((size_t)t * g->C + c0) * cp->Ks + kv * VL, cp->Ks);
      }
      kv += nk;
    }
}

/* dxh (Hs, Ws, Cs) = each output position's dy (dyh) times W^T (Wr (k*k, Cs/VL, cout,
 * VL)), added onto the padded input's window at stride s. */
static void ISA(cl_scatter)(const PrunusConvGeom *g, const ClPlan *cp, const float *dyh,
                            const float *Wr, float *dxh) {
  int cvs = cp->Cs / VL, kk = g->k * g->k;
  memset(dxh, 0, sizeof(float) * cp->Hs * cp->Ws * cp->Cs);
  for (int oh = 0; oh < g->Ho; oh++)
    for (int cv = 0; cv < cvs;) {
      int nk = cvs - cv >= 2 ? 2 : 1;
      int rb = ISA(block_of)(g->Wo, nk == 2 ? RMAX2 : RMAX1);
      for (int ow = 0; ow < g->Wo; ow += rb) {
        int r = MIN(rb, g->Wo - ow);
        const ISA(FwdKernel) kernel = ISA(fwd_kernel)[nk - 1][r];
        for (int t = 0; t < kk; t++) {
          float *dst =
              dxh +
              ((size_t)(oh * g->s + t / g->k) * cp->Ws + (size_t)ow * g->s + t % g->k) * cp->Cs +
              cv * VL;
          kernel(dyh + ((size_t)oh * g->Wo + ow) * cp->Ks, cp->Ks, g->cout,
                 Wr + ((size_t)t * cvs + cv) * g->cout * VL, (size_t)g->cout * VL, dst,
                 g->s * cp->Cs, 1);
        }
      }
      cv += nk;
    }
}

/* The part's images: dU and db summed over them; dx of each (dy goes channel-interleaved
 * once for both). */
static void ISA(cl_backward_part)(void *arg, int part, int n_parts) {
  const ClCall *c = arg;
  const PrunusConvGeom *g = c->g;
  ClPlan cp = cl_plan(g, VL);
  ClBufs b = cl_bufs(&cp, c->parts + (size_t)part * c->part_floats);
  size_t in_img = (size_t)g->C * g->H * g->W, out_img = (size_t)g->cout * g->Ho * g->Wo;
  memset(b.xh, 0, sizeof(float) * cp.Hs * cp.Ws * cp.Cs);
  memset(b.du, 0, sizeof(float) * g->k * g->k * g->C * cp.Ks);
  memset(b.db, 0, sizeof(float) * cp.Ks);
  for (int i = prunus_team_share(c->B, part, n_parts);
       i < prunus_team_share(c->B, part + 1, n_parts); i++) {
    const float *dyi = c->dy + i * out_img;
    ISA(to_hwc)(c->x + i * in_img, g->C, g->H, g->W, b.xh, cp.Ws, cp.Cs, g->p, g->p);
    ISA(to_hwc)(dyi, g->cout, g->Ho, g->Wo, b.yh, g->Wo, cp.Ks, 0, 0);
    if (c->want_db) ISA(channel_sums)(dyi, g->cout, (size_t)g->Ho * g->Wo, b.db);
    ISA(cl_weight_products)(g, &cp, b.xh, b.yh, b.du);
    if (c->dx) {
      ISA(cl_scatter)(g, &cp, b.yh, c->W, b.dxh);
      ISA(from_hwc)
      (b.dxh + ((size_t)g->p * cp.Ws + g->p) * cp.Cs, cp.Ws, cp.Cs, c->dx + i * in_img, g->C, g->H,
       g->W);
    }
  }
}
