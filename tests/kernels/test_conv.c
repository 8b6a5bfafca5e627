/* test_conv.c: the convolution kernels (conv_wino.c) against plain double-precision
 * loops on random geometries (odd channel counts, tails, every padding they take), in
 * every instruction-set version this CPU runs (AVX-512 at 16 and 8 lanes), alone and
 * split over a team; forwards the same bits at every width; prepared (inference)
 * weights; the plain loops' gradients against finite differences. */
#include "conv_direct.h"
#include "conv_wino.h"
#include "gemm.h"
#include "rng.h"
#include "team.h"
#include "testutil.h"

#include <glib.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the reference: plain loops in double */

typedef struct {
  PrunusConvGeom g;
  int B;
} Case;

static PrunusConvGeom geom(int C, int H, int W, int cout, int k, int s, int p) {
  return (PrunusConvGeom){.C = C,
                          .H = H,
                          .W = W,
                          .k = k,
                          .s = s,
                          .p = p,
                          .cout = cout,
                          .Ho = (H + 2 * p - k) / s + 1,
                          .Wo = (W + 2 * p - k) / s + 1};
}

static size_t x_len(const PrunusConvGeom *g, int B) { return (size_t)B * g->C * g->H * g->W; }
static size_t y_len(const PrunusConvGeom *g, int B) { return (size_t)B * g->cout * g->Ho * g->Wo; }
static size_t w_len(const PrunusConvGeom *g) { return (size_t)g->cout * g->C * g->k * g->k; }

/* Calls f(b, co, oh, ow, c, kh, kw, xi, wi, yi) for every product of the convolution
 * whose input lies inside the image (padding contributes nothing). */
#define FOR_EACH_PRODUCT(g, B, BODY)                                                      \
  for (int b = 0; b < (B); b++)                                                           \
    for (int co = 0; co < (g)->cout; co++)                                                \
      for (int oh = 0; oh < (g)->Ho; oh++)                                                \
        for (int ow = 0; ow < (g)->Wo; ow++)                                              \
          for (int c = 0; c < (g)->C; c++)                                                \
            for (int kh = 0; kh < (g)->k; kh++)                                           \
              for (int kw = 0; kw < (g)->k; kw++) {                                       \
                int ih = oh * (g)->s - (g)->p + kh, iw = ow * (g)->s - (g)->p + kw;       \
                if (ih < 0 || ih >= (g)->H || iw < 0 || iw >= (g)->W) continue;           \
                size_t xi = (((size_t)b * (g)->C + c) * (g)->H + ih) * (g)->W + iw;       \
                size_t wi = (((size_t)co * (g)->C + c) * (g)->k + kh) * (g)->k + kw;      \
                size_t yi = (((size_t)b * (g)->cout + co) * (g)->Ho + oh) * (g)->Wo + ow; \
                BODY;                                                                     \
              }

static void ref_forward(const PrunusConvGeom *g, int B, const double *x, const double *W,
                        const double *bias, double *y) {
  for (size_t i = 0; i < y_len(g, B); i++)
    y[i] = bias ? bias[(i / ((size_t)g->Ho * g->Wo)) % g->cout] : 0.0;
  FOR_EACH_PRODUCT(g, B, y[yi] += x[xi] * W[wi]);
}

static void ref_backward(const PrunusConvGeom *g, int B, const double *x, const double *W,
                         const double *dy, double *dW, double *db, double *dx) {
  memset(dW, 0, sizeof(double) * w_len(g));
  memset(dx, 0, sizeof(double) * x_len(g, B));
  memset(db, 0, sizeof(double) * g->cout);
  for (size_t i = 0; i < y_len(g, B); i++) db[(i / ((size_t)g->Ho * g->Wo)) % g->cout] += dy[i];
  FOR_EACH_PRODUCT(g, B, {
    dW[wi] += x[xi] * dy[yi];
    dx[xi] += W[wi] * dy[yi];
  });
}

/* ------------------------------------------------------------------------ */
/* data */

typedef struct {
  PrunusConvGeom g;
  int B;
  float *x, *W, *bias, *dy;      /* inputs */
  double *xd, *Wd, *biasd, *dyd; /* the same values in double */
  double *y_ref, *dW_ref, *db_ref, *dx_ref;
} Data;

static float *random_floats(PrunusRng *rng, size_t n, double **as_double) {
  float *a = g_new(float, n);
  *as_double = g_new(double, n);
  for (size_t i = 0; i < n; i++) {
    a[i] = (float)(prunus_rng_uniform(rng) * 2.0 - 1.0);
    (*as_double)[i] = a[i];
  }
  return a;
}

static Data data_new(PrunusConvGeom g, int B, guint64 seed) {
  PrunusRng rng;
  prunus_rng_seed(&rng, seed);
  Data d = {.g = g, .B = B};
  d.x = random_floats(&rng, x_len(&g, B), &d.xd);
  d.W = random_floats(&rng, w_len(&g), &d.Wd);
  d.bias = random_floats(&rng, g.cout, &d.biasd);
  d.dy = random_floats(&rng, y_len(&g, B), &d.dyd);
  d.y_ref = g_new(double, y_len(&g, B));
  d.dW_ref = g_new(double, w_len(&g));
  d.db_ref = g_new(double, g.cout);
  d.dx_ref = g_new(double, x_len(&g, B));
  ref_forward(&g, B, d.xd, d.Wd, d.biasd, d.y_ref);
  ref_backward(&g, B, d.xd, d.Wd, d.dyd, d.dW_ref, d.db_ref, d.dx_ref);
  return d;
}

static void data_free(Data *d) {
  g_free(d->x), g_free(d->W), g_free(d->bias), g_free(d->dy);
  g_free(d->xd), g_free(d->Wd), g_free(d->biasd), g_free(d->dyd);
  g_free(d->y_ref), g_free(d->dW_ref), g_free(d->db_ref), g_free(d->dx_ref);
}

/* Max |a - ref| / (1 + max |ref|) over n values, printed with the label. */
static double rel_err(const float *a, const double *ref, size_t n, const char *label) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < n; i++) {
    diff = MAX(diff, fabs((double)a[i] - ref[i]));
    scale = MAX(scale, fabs(ref[i]));
  }
  double e = diff / (1.0 + scale);
  g_test_message("%s: max |diff| %.3g, scale %.3g, relative %.3g", label, diff, scale, e);
  return e;
}

/* Max |a - b| / (1 + max |b|) over n floats, printed with the label. */
static double scaled_diff(const float *a, const float *b, size_t n, const char *label) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < n; i++) {
    diff = MAX(diff, fabs((double)a[i] - b[i]));
    scale = MAX(scale, fabs((double)b[i]));
  }
  g_test_message("%s: max |diff| %.3g, scale %.3g", label, diff, scale);
  return diff / (1.0 + scale);
}

/* The kernels' outputs for one case. */
typedef struct {
  float *y, *dW, *db, *dx;
} Out;

static Out run_wino(const Data *d, PrunusTeam *team, gboolean with_bias) {
  const PrunusConvGeom *g = &d->g;
  Out o = {g_new0(float, y_len(g, d->B)), g_new0(float, w_len(g)), g_new0(float, g->cout),
           g_new0(float, x_len(g, d->B))};
  float *scratch = g_new0(float, prunus_conv_wino_scratch(g, prunus_team_threads(team)));
  prunus_conv_wino_forward(g, d->x, d->W, with_bias ? d->bias : NULL, o.y, scratch, d->B, team);
  prunus_conv_wino_backward(g, d->x, d->W, d->dy, o.dW, with_bias ? o.db : NULL, o.dx, scratch,
                            d->B, team);
  g_free(scratch);
  return o;
}

static void out_free(Out *o) { g_free(o->y), g_free(o->dW), g_free(o->db), g_free(o->dx); }

/* ------------------------------------------------------------------------ */
/* tests */

/* The plain loops' dW, db and dx against central differences of their own forward
 * (double precision: they must agree to rounding). */
static void test_reference_finite_differences(void) {
  const PrunusConvGeom cases[] = {geom(3, 5, 6, 4, 3, 1, 1), geom(2, 7, 5, 3, 3, 2, 1),
                                  geom(3, 6, 6, 2, 1, 2, 0), geom(2, 5, 5, 3, 3, 1, 2)};
  for (size_t ci = 0; ci < G_N_ELEMENTS(cases); ci++) {
    const PrunusConvGeom *g = &cases[ci];
    int B = 2;
    Data d = data_new(*g, B, 100 + ci);
    size_t ny = y_len(g, B);
    double *y = g_new(double, ny);
    /* L = sum y * dy, so dL/dparam is what backward computes from dy */
    double h = 1e-6, worst = 0.0;
    double *params[] = {d.Wd, d.biasd, d.xd};
    const double *grads[] = {d.dW_ref, d.db_ref, d.dx_ref};
    size_t lens[] = {w_len(g), (size_t)g->cout, x_len(g, B)};
    for (int which = 0; which < 3; which++)
      for (size_t i = 0; i < lens[which]; i++) {
        double keep = params[which][i], loss[2];
        for (int side = 0; side < 2; side++) {
          params[which][i] = keep + (side ? -h : h);
          ref_forward(g, B, d.xd, d.Wd, d.biasd, y);
          loss[side] = 0.0;
          for (size_t j = 0; j < ny; j++) loss[side] += y[j] * d.dyd[j];
        }
        params[which][i] = keep;
        worst = MAX(worst, fabs((loss[0] - loss[1]) / (2 * h) - grads[which][i]));
      }
    g_test_message("case %zu: worst |finite difference - backward| %.3g", ci, worst);
    g_assert_cmpfloat(worst, <, 1e-6);
    g_free(y);
    data_free(&d);
  }
}

/* Geometries the Winograd kernels take: odd and pruned channel counts (lanes left
 * over), odd sides (a last tile half outside), 1-pixel outputs, paddings 0..2, calls
 * of 1 and 4 tiles. */
static const struct {
  int C, H, W, cout, p, B;
} wino_cases[] = {
    {16, 28, 28, 16, 1, 3},
    {32, 14, 14, 32, 1, 2},
    {64, 7, 7, 64, 1, 5},
    {11, 9, 13, 45, 1, 3},
    {45, 7, 5, 11, 1, 2},
    {1, 6, 6, 3, 1, 2},
    {3, 5, 8, 17, 0, 3},
    {5, 4, 4, 7, 2, 2},
    {17, 3, 3, 9, 0, 4},
    {2, 31, 19, 33, 1, 1},
    {24, 1, 1, 8, 1, 2},
    /* one image of few tiles, many output vectors: the products' 4-vector blocks */
    {9, 3, 3, 70, 1, 1},
    {20, 7, 7, 70, 1, 1},
    {9, 3, 3, 56, 1, 1},
    /* channel-pruned widths, many tiles: passes of 3 output vectors (24 at 8 lanes, 48
     * at 16), 3 + 2 (33 at 8), 3 + 3 (48 at 8), 4 + 3 (53, 56 at 8) */
    {26, 14, 14, 24, 1, 2},
    {56, 7, 7, 33, 1, 2},
    {7, 10, 10, 48, 1, 2},
    {53, 7, 7, 56, 1, 3},
};

/* Every case in the ISA version `isa`, with and without bias, against the plain loops. */
static void check_wino_isa(PrunusConvIsa isa) {
  if (MIN(prunus_conv_wino_isa(), isa) != isa) {
    g_test_skip("this CPU has no such version");
    return;
  }
  prunus_conv_wino_limit_isa(isa);
  g_assert_cmpint(prunus_conv_wino_isa(), ==, isa);
  for (size_t ci = 0; ci < G_N_ELEMENTS(wino_cases); ci++) {
    PrunusConvGeom g = geom(wino_cases[ci].C, wino_cases[ci].H, wino_cases[ci].W,
                            wino_cases[ci].cout, 3, 1, wino_cases[ci].p);
    g_assert_true(prunus_conv_wino_covers(&g));
    int B = wino_cases[ci].B;
    Data d = data_new(g, B, ci + 1);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      Out o = run_wino(&d, NULL, with_bias);
      char *label = g_strdup_printf("%s %dx%dx%d -> %d p%d B%d%s", prunus_conv_isa_name(isa), g.C,
                                    g.H, g.W, g.cout, g.p, B, with_bias ? " bias" : "");
      double *y_ref = g_new(double, y_len(&g, B));
      ref_forward(&g, B, d.xd, d.Wd, with_bias ? d.biasd : NULL, y_ref);
      /* float rounding through the transforms: F(4x4, 3x3) reaches ~1e-5 of the scale */
      g_assert_cmpfloat(rel_err(o.y, y_ref, y_len(&g, B), label), <, 3e-5);
      g_assert_cmpfloat(rel_err(o.dW, d.dW_ref, w_len(&g), label), <, 3e-5);
      g_assert_cmpfloat(rel_err(o.dx, d.dx_ref, x_len(&g, B), label), <, 3e-5);
      if (with_bias)
        g_assert_cmpfloat(rel_err(o.db, d.db_ref, g.cout, label), <, 1e-5);
      else
        for (int i = 0; i < g.cout; i++) g_assert_cmpfloat(o.db[i], ==, 0.0f); /* untouched */
      g_free(label);
      g_free(y_ref);
      out_free(&o);
    }
    data_free(&d);
  }
  prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
}

static void test_wino_avx512(void) {
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_16);
  check_wino_isa(PRUNUS_CONV_ISA_AVX512);
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
}

/* AVX-512's 8-lane forwards (AVX-512VL) where the CPU has them; skipped otherwise. */
static gboolean force_lanes_8(void) {
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_8);
  PrunusConvGeom g = geom(16, 8, 8, 16, 3, 1, 1);
  if (prunus_conv_wino_isa() != PRUNUS_CONV_ISA_AVX512 || prunus_conv_forward_lanes(&g) != 8) {
    prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
    g_test_skip("this CPU has no AVX-512VL");
    return FALSE;
  }
  return TRUE;
}

static void test_wino_avx512_lanes8(void) {
  if (!force_lanes_8()) return;
  check_wino_isa(PRUNUS_CONV_ISA_AVX512);
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
}
static void test_wino_avx2(void) { check_wino_isa(PRUNUS_CONV_ISA_AVX2); }

/* A team of 2 against one thread: the images are split, so y and dx are the same bits;
 * dW and db are two partial sums added, so they are close, and the same bits from run
 * to run. */
static void test_wino_team(void) {
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  const PrunusConvGeom cases[] = {geom(16, 28, 28, 16, 3, 1, 1), geom(45, 7, 7, 11, 3, 1, 1)};
  for (size_t ci = 0; ci < G_N_ELEMENTS(cases); ci++) {
    const PrunusConvGeom *g = &cases[ci];
    int B = 7;
    Data d = data_new(*g, B, 40 + ci);
    Out one = run_wino(&d, NULL, TRUE), two = run_wino(&d, team, TRUE),
        again = run_wino(&d, team, TRUE);
    g_assert_cmpmem(one.y, sizeof(float) * y_len(g, B), two.y, sizeof(float) * y_len(g, B));
    g_assert_cmpmem(one.dx, sizeof(float) * x_len(g, B), two.dx, sizeof(float) * x_len(g, B));
    g_assert_cmpfloat(scaled_diff(two.dW, one.dW, w_len(g), "dW 1 vs 2 threads"), <, 3e-5);
    g_assert_cmpfloat(scaled_diff(two.db, one.db, g->cout, "db 1 vs 2 threads"), <, 1e-5);
    g_assert_cmpmem(two.dW, sizeof(float) * w_len(g), again.dW, sizeof(float) * w_len(g));
    g_assert_cmpmem(two.db, sizeof(float) * g->cout, again.db, sizeof(float) * g->cout);
    out_free(&one), out_free(&two), out_free(&again);
    data_free(&d);
  }
  prunus_team_free(team);
}

/* The channel-interleaved kernels on strided, 1x1, even and large kernels, odd channel
 * counts, every padding, in each version, with and without bias, against the plain
 * loops; a team of 2 gives the same y and dx bits as one thread (each image is one
 * part's) and dW within rounding. */
static const struct {
  int C, H, W, cout, k, s, p, B;
} cl_cases[] = {
    {16, 28, 28, 32, 3, 2, 1, 3},
    {16, 28, 28, 32, 1, 2, 0, 2},
    {32, 14, 14, 64, 3, 2, 1, 2},
    {32, 14, 14, 64, 1, 2, 0, 3},
    {11, 9, 13, 45, 3, 2, 1, 3},
    {45, 8, 7, 11, 1, 1, 0, 2},
    {3, 11, 10, 17, 5, 3, 2, 2},
    {1, 7, 7, 5, 2, 2, 0, 3},
    {20, 33, 5, 9, 3, 2, 0, 1},
    {6, 14, 14, 16, 5, 1, 0, 2},
    /* passes of 3 output vectors: 24 (8 lanes) or 48 (16), 40 = 3 + 2, 56 = 3 + 2 + 2 */
    {7, 28, 28, 24, 3, 2, 1, 2},
    {9, 10, 10, 40, 3, 2, 1, 1},
    {26, 14, 14, 53, 3, 2, 1, 2},
    {5, 9, 9, 48, 3, 2, 1, 1},
};

static void check_cl_isa(PrunusConvIsa isa) {
  if (MIN(prunus_conv_wino_isa(), isa) != isa) {
    g_test_skip("this CPU has no such version");
    return;
  }
  prunus_conv_wino_limit_isa(isa);
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  for (size_t ci = 0; ci < G_N_ELEMENTS(cl_cases); ci++) {
    PrunusConvGeom g = geom(cl_cases[ci].C, cl_cases[ci].H, cl_cases[ci].W, cl_cases[ci].cout,
                            cl_cases[ci].k, cl_cases[ci].s, cl_cases[ci].p);
    int B = cl_cases[ci].B;
    gboolean with_bias = ci % 2 == 0;
    Data d = data_new(g, B, 200 + ci);
    size_t nx = x_len(&g, B), ny = y_len(&g, B), nw = w_len(&g);
    float *scratch = g_new0(float, prunus_conv_cl_scratch(&g, 2));
    Out o[2];
    for (int t = 0; t < 2; t++) {
      o[t] = (Out){g_new(float, ny), g_new(float, nw), g_new0(float, g.cout), g_new(float, nx)};
      memset(o[t].y, 0xff, sizeof(float) * ny); /* NaN: every value must be written */
      memset(o[t].dx, 0xff, sizeof(float) * nx);
      PrunusTeam *use = t ? team : NULL;
      prunus_conv_cl_forward(&g, d.x, d.W, with_bias ? d.bias : NULL, o[t].y, scratch, B, use);
      prunus_conv_cl_backward(&g, d.x, d.W, d.dy, o[t].dW, with_bias ? o[t].db : NULL, o[t].dx,
                              scratch, B, use);
    }
    char *label =
        g_strdup_printf("%s %dx%dx%d -> %d k%d s%d p%d B%d%s", prunus_conv_isa_name(isa), g.C, g.H,
                        g.W, g.cout, g.k, g.s, g.p, B, with_bias ? " bias" : "");
    double *y_ref = g_new(double, ny);
    ref_forward(&g, B, d.xd, d.Wd, with_bias ? d.biasd : NULL, y_ref);
    g_assert_cmpfloat(rel_err(o[0].y, y_ref, ny, label), <, 1e-5);
    g_assert_cmpfloat(rel_err(o[0].dW, d.dW_ref, nw, label), <, 1e-5);
    g_assert_cmpfloat(rel_err(o[0].dx, d.dx_ref, nx, label), <, 1e-5);
    if (with_bias) g_assert_cmpfloat(rel_err(o[0].db, d.db_ref, g.cout, label), <, 1e-5);
    for (int i = 0; i < g.cout && !with_bias; i++) g_assert_cmpfloat(o[0].db[i], ==, 0.0f);
    g_assert_cmpmem(o[0].y, sizeof(float) * ny, o[1].y, sizeof(float) * ny);
    g_assert_cmpmem(o[0].dx, sizeof(float) * nx, o[1].dx, sizeof(float) * nx);
    g_assert_cmpfloat(scaled_diff(o[1].dW, o[0].dW, nw, "dW 1 vs 2 threads"), <, 1e-5);
    g_free(label), g_free(y_ref), g_free(scratch);
    out_free(&o[0]), out_free(&o[1]);
    data_free(&d);
  }
  prunus_team_free(team);
  prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
}

static void test_cl_avx512(void) {
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_16);
  check_cl_isa(PRUNUS_CONV_ISA_AVX512);
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
}

static void test_cl_avx512_lanes8(void) {
  if (!force_lanes_8()) return;
  check_cl_isa(PRUNUS_CONV_ISA_AVX512);
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
}

/* One forward of d, Winograd or channel-interleaved as g is, into a fresh y. */
static float *forward_of(const Data *d, gboolean with_bias) {
  const PrunusConvGeom *g = &d->g;
  float *y = g_new(float, y_len(g, d->B));
  memset(y, 0xff, sizeof(float) * y_len(g, d->B));
  gboolean wino = prunus_conv_wino_covers(g);
  float *scratch =
      g_new0(float, wino ? prunus_conv_wino_scratch(g, 1) : prunus_conv_cl_scratch(g, 1));
  if (wino)
    prunus_conv_wino_forward(g, d->x, d->W, with_bias ? d->bias : NULL, y, scratch, d->B, NULL);
  else
    prunus_conv_cl_forward(g, d->x, d->W, with_bias ? d->bias : NULL, y, scratch, d->B, NULL);
  g_free(scratch);
  return y;
}

/* Odd (pruned) channel counts, Winograd and channel-interleaved geometries. */
static const PrunusConvGeom *lanes_cases(size_t *n) {
  static PrunusConvGeom cases[8];
  cases[0] = geom(6, 28, 28, 9, 3, 1, 1), cases[1] = geom(18, 14, 14, 20, 3, 1, 1);
  cases[2] = geom(39, 7, 7, 54, 3, 1, 1), cases[3] = geom(11, 9, 13, 45, 3, 1, 1);
  cases[4] = geom(6, 28, 28, 18, 3, 2, 1), cases[5] = geom(20, 14, 14, 39, 1, 2, 0);
  cases[6] = geom(20, 7, 7, 70, 3, 1, 1), cases[7] = geom(5, 9, 9, 3, 3, 2, 0);
  *n = G_N_ELEMENTS(cases);
  return cases;
}

/* The forward is the same bits at 16 and 8 lanes (AVX-512) and in the AVX2 version:
 * every output is the same operations in the same order, only the number of channels
 * a vector holds differs. This is what lets the per-layer choice of lanes (AUTO) stand
 * in training without changing a trained weight. */
static void test_lanes_same_bits(void) {
  if (!force_lanes_8()) return;
  size_t n;
  const PrunusConvGeom *cases = lanes_cases(&n);
  for (size_t ci = 0; ci < n; ci++) {
    const PrunusConvGeom *g = &cases[ci];
    Data d = data_new(*g, 2, 300 + ci);
    size_t ny = y_len(g, 2);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      prunus_conv_force_lanes(PRUNUS_CONV_LANES_8);
      g_assert_cmpint(prunus_conv_forward_lanes(g), ==, 8);
      float *y8 = forward_of(&d, with_bias);
      prunus_conv_force_lanes(PRUNUS_CONV_LANES_16);
      g_assert_cmpint(prunus_conv_forward_lanes(g), ==, 16);
      float *y16 = forward_of(&d, with_bias);
      prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX2);
      g_assert_cmpint(prunus_conv_forward_lanes(g), ==, 8);
      float *y2 = forward_of(&d, with_bias);
      prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
      if (with_bias) g_assert_cmpfloat(rel_err(y16, d.y_ref, ny, "16 lanes"), <, 3e-5);
      g_assert_cmpmem(y8, sizeof(float) * ny, y16, sizeof(float) * ny);
      g_assert_cmpmem(y2, sizeof(float) * ny, y16, sizeof(float) * ny);
      g_free(y8), g_free(y16), g_free(y2);
    }
    data_free(&d);
  }
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
}

/* The default choice: 16 lanes for whole vectors of 16, 8 for up to 8 output channels,
 * and for 9..15 channels past a multiple of 16 on either side (outputs or inputs) only
 * where 8 lanes cost half (AMD). */
static void test_lanes_auto(void) {
  if (!force_lanes_8()) return;
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
  __builtin_cpu_init();
  int halves = __builtin_cpu_is("amd") ? 8 : 16;
  const struct {
    int cin, cout, lanes;
  } want[] = {{16, 16, 16}, {32, 32, 16},     {64, 64, 16},     {16, 6, 8},       {16, 8, 8},
              {16, 9, 16},  {16, 15, 16},     {16, 20, halves}, {32, 39, halves}, {64, 54, halves},
              {48, 45, 16}, {32, 24, halves}, {7, 16, halves},  {24, 32, halves}, {53, 64, halves},
              {9, 48, 16},  {26, 24, halves}, {48, 56, halves}, {56, 48, halves}, {7, 3, 8}};
  for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
    PrunusConvGeom g = geom(want[i].cin, 9, 9, want[i].cout, 3, 1, 1);
    g_assert_cmpint(prunus_conv_forward_lanes(&g), ==, want[i].lanes);
  }
}

/* Prepared weights give the bits of the plain forward, in every version and width
 * here; a prepared layout is refused (FALSE, y untouched) once another version runs. */
static void test_prepared(void) {
  if (prunus_conv_wino_isa() == PRUNUS_CONV_ISA_NONE) {
    g_test_skip("no vector version here");
    return;
  }
  const PrunusConvLanes widths[] = {PRUNUS_CONV_LANES_AUTO, PRUNUS_CONV_LANES_16,
                                    PRUNUS_CONV_LANES_8};
  const PrunusConvIsa isas[] = {PRUNUS_CONV_ISA_AVX512, PRUNUS_CONV_ISA_AVX2};
  size_t n;
  const PrunusConvGeom *cases = lanes_cases(&n);
  for (size_t ii = 0; ii < G_N_ELEMENTS(isas); ii++) {
    if (MIN(prunus_conv_wino_isa(), isas[ii]) != isas[ii]) continue;
    prunus_conv_wino_limit_isa(isas[ii]);
    for (size_t wi = 0; wi < G_N_ELEMENTS(widths); wi++) {
      prunus_conv_force_lanes(widths[wi]);
      for (size_t ci = 0; ci < n; ci++) {
        const PrunusConvGeom *g = &cases[ci];
        Data d = data_new(*g, 3, 400 + ci);
        size_t ny = y_len(g, 3);
        float *want = forward_of(&d, TRUE);
        PrunusConvPrepared p;
        g_assert_true(prunus_conv_prepare(g, d.W, &p));
        g_assert_cmpint(p.wino, ==, prunus_conv_wino_covers(g));
        g_assert_cmpint(p.lanes, ==, prunus_conv_forward_lanes(g));
        float *y = g_new(float, ny);
        float *scratch =
            g_new0(float, MAX(prunus_conv_wino_scratch(g, 1), prunus_conv_cl_scratch(g, 1)));
        g_assert_true(prunus_conv_forward_prepared(g, &p, d.x, d.bias, y, scratch, 3, NULL));
        g_assert_cmpmem(y, sizeof(float) * ny, want, sizeof(float) * ny);
        if (isas[ii] == PRUNUS_CONV_ISA_AVX512) { /* laid out for AVX-512: not for AVX2 */
          prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX2);
          memset(y, 0, sizeof(float) * ny);
          g_assert_false(prunus_conv_forward_prepared(g, &p, d.x, d.bias, y, scratch, 3, NULL));
          g_assert_cmpfloat(y[0], ==, 0.0f);
          prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
        }
        prunus_conv_prepared_clear(&p);
        g_assert_null(p.w);
        g_free(y), g_free(scratch), g_free(want);
        data_free(&d);
      }
    }
  }
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
  prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
  PrunusConvGeom k5 = geom(6, 14, 14, 16, 5, 1, 0);
  PrunusConvPrepared none;
  float w[6 * 16 * 25] = {0};
  g_assert_false(prunus_conv_prepare(&k5, w, &none)); /* the implicit GEMM's */
  g_assert_null(none.w);
}
static void test_cl_avx2(void) { check_cl_isa(PRUNUS_CONV_ISA_AVX2); }

/* Which geometries the kernels take, and that the forced reference turns them off. */
static void test_wino_covers(void) {
  PrunusConvGeom k3 = geom(16, 28, 28, 16, 3, 1, 1);
  PrunusConvGeom s2 = geom(16, 28, 28, 32, 3, 2, 1), k5 = geom(6, 14, 14, 16, 5, 1, 0),
                 p3 = geom(4, 8, 8, 4, 3, 1, 3);
  gboolean runs = prunus_conv_wino_isa() != PRUNUS_CONV_ISA_NONE;
  g_assert_cmpint(prunus_conv_wino_covers(&k3), ==, runs);
  g_assert_false(prunus_conv_wino_covers(&s2));
  g_assert_false(prunus_conv_wino_covers(&k5));
  g_assert_false(prunus_conv_wino_covers(&p3));
  PrunusConvGeom s1 = geom(16, 28, 28, 32, 1, 2, 0);
  g_assert_cmpint(prunus_conv_cl_covers(&s2), ==, runs);
  g_assert_cmpint(prunus_conv_cl_covers(&s1), ==, runs);
  g_assert_false(prunus_conv_cl_covers(&k3)); /* stride 1, 3x3: Winograd's */
  prunus_gemm_force_reference(true);
  g_assert_cmpint(prunus_conv_wino_isa(), ==, PRUNUS_CONV_ISA_NONE);
  g_assert_false(prunus_conv_wino_covers(&k3));
  g_assert_false(prunus_conv_cl_covers(&s2));
  prunus_gemm_force_reference(false);
  g_assert_cmpstr(prunus_conv_isa_name(PRUNUS_CONV_ISA_AVX2), ==, "avx2");
}

/* The few-channel direct forward (the engines' prepared layers of up to 8 x 8 channels,
 * 40 pairs) against the plain loops, with and without bias, odd sides, paddings 0..2, a
 * 5x5 kernel; prunus_conv_prepare picks it for such layers only, the prepared forward
 * gives its bits, and a team of 2 the same bits as one thread. */
static void test_direct_few(void) {
  if (!prunus_avx512_in_use() || prunus_conv_wino_isa() != PRUNUS_CONV_ISA_AVX512) {
    g_test_skip("no AVX-512 here");
    return;
  }
  const PrunusConvGeom cases[] = {geom(7, 28, 28, 3, 3, 1, 1), geom(3, 28, 28, 7, 3, 1, 1),
                                  geom(5, 9, 13, 7, 3, 1, 0),  geom(8, 5, 5, 5, 3, 1, 2),
                                  geom(2, 6, 6, 8, 3, 1, 1),   geom(4, 7, 7, 1, 3, 1, 1),
                                  geom(6, 10, 10, 6, 3, 1, 1), geom(2, 12, 11, 2, 5, 1, 2)};
  PrunusTeam *team = prunus_team_new(2);
  g_assert_nonnull(team);
  for (size_t ci = 0; ci < G_N_ELEMENTS(cases); ci++) {
    const PrunusConvGeom *g = &cases[ci];
    g_assert_true(prunus_conv_direct_few_covers(g));
    int B = 3;
    Data d = data_new(*g, B, 500 + ci);
    size_t ny = y_len(g, B);
    float *w = g_new(float, prunus_conv_direct_few_weights(g));
    prunus_conv_direct_few_prepare(g, d.W, w);
    float *scratch = g_new0(float, prunus_conv_direct_few_scratch(g, 2));
    float *y = g_new(float, ny), *y2 = g_new(float, ny), *yp = g_new(float, ny);
    double *y_ref = g_new(double, ny);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      const float *bias = with_bias ? d.bias : NULL;
      memset(y, 0xff, sizeof(float) * ny); /* NaN: every value must be written */
      prunus_conv_direct_few_forward(g, d.x, w, bias, y, scratch, B, NULL);
      ref_forward(g, B, d.xd, d.Wd, with_bias ? d.biasd : NULL, y_ref);
      char *label = g_strdup_printf("direct few %dx%dx%d -> %d k%d p%d%s", g->C, g->H, g->W,
                                    g->cout, g->k, g->p, with_bias ? " bias" : "");
      g_assert_cmpfloat(rel_err(y, y_ref, ny, label), <, 1e-6);
      g_free(label);
      prunus_conv_direct_few_forward(g, d.x, w, bias, y2, scratch, B, team);
      g_assert_cmpmem(y, sizeof(float) * ny, y2, sizeof(float) * ny);
    }
    if (g->k == 3) { /* the engines' route: prepared, where the Winograd kernels take g */
      PrunusConvPrepared p;
      g_assert_true(prunus_conv_prepare(g, d.W, &p));
      g_assert_true(p.direct);
      float *ws = g_new0(float, prunus_conv_wino_scratch(g, 1));
      g_assert_true(prunus_conv_forward_prepared(g, &p, d.x, d.bias, yp, ws, B, NULL));
      g_assert_cmpmem(yp, sizeof(float) * ny, y, sizeof(float) * ny);
      prunus_conv_prepared_clear(&p);
      g_free(ws);
    }
    g_free(w), g_free(scratch), g_free(y), g_free(y2), g_free(yp), g_free(y_ref);
    data_free(&d);
  }
  prunus_team_free(team);
  /* more pairs, a stride, or lanes forced by a test: the Winograd or interleaved kernels */
  const PrunusConvGeom others[] = {geom(8, 9, 9, 8, 3, 1, 1), geom(9, 9, 9, 3, 3, 1, 1),
                                   geom(5, 9, 9, 3, 3, 2, 1)};
  for (size_t ci = 0; ci < G_N_ELEMENTS(others); ci++) {
    g_assert_false(prunus_conv_direct_few_covers(&others[ci]));
    float *W = g_new0(float, w_len(&others[ci]));
    PrunusConvPrepared p;
    g_assert_true(prunus_conv_prepare(&others[ci], W, &p));
    g_assert_false(p.direct);
    prunus_conv_prepared_clear(&p);
    g_free(W);
  }
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_16);
  PrunusConvPrepared p;
  float W[7 * 3 * 9] = {0};
  g_assert_true(prunus_conv_prepare(&cases[0], W, &p));
  g_assert_false(p.direct);
  g_assert_true(p.wino);
  prunus_conv_prepared_clear(&p);
  prunus_conv_force_lanes(PRUNUS_CONV_LANES_AUTO);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/conv/reference/finite-differences", test_reference_finite_differences);
  g_test_add_func("/conv/wino/covers", test_wino_covers);
  g_test_add_func("/conv/wino/avx512", test_wino_avx512);
  g_test_add_func("/conv/wino/avx2", test_wino_avx2);
  g_test_add_func("/conv/wino/team", test_wino_team);
  g_test_add_func("/conv/cl/avx512", test_cl_avx512);
  g_test_add_func("/conv/cl/avx2", test_cl_avx2);
  g_test_add_func("/conv/wino/avx512-lanes8", test_wino_avx512_lanes8);
  g_test_add_func("/conv/cl/avx512-lanes8", test_cl_avx512_lanes8);
  g_test_add_func("/conv/lanes/same-bits", test_lanes_same_bits);
  g_test_add_func("/conv/lanes/auto", test_lanes_auto);
  g_test_add_func("/conv/prepared", test_prepared);
  g_test_add_func("/conv/direct-few", test_direct_few);
  return g_test_run();
}
