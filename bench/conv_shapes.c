/* conv_shapes.c: the inference engines' conv forward (weights prepared once) on one
 * thread for given layer shapes, 16 images a call (the graph engine's chunk): time per
 * call and multiply-adds per nanosecond (of a direct convolution), to see how channel
 * counts that are not a multiple of the vector width fare against 16/32/64; the
 * lanes column says "direct" for layers the few-channel direct forward takes.
 * Usage: conv_shapes [--lanes 8|16] [--isa avx2] [--images 16] C:K:side[:stride] ...
 * (default shapes: channel-pruned ResNet-20's 3x3 layers and the dense ones) */
#include "conv_wino.h"
#include "rng.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* Lowest mean over 5 rounds of calls lasting ~0.1 s each, in microseconds; *direct:
 * whether the prepared weights took the few-channel direct forward. */
static double time_shape(const PrunusConvGeom *g, int B, PrunusRng *rng, bool *direct) {
  size_t nx = (size_t)B * g->C * g->H * g->W, ny = (size_t)B * g->cout * g->Ho * g->Wo;
  size_t nw = (size_t)g->cout * g->C * g->k * g->k;
  float *x = g_new(float, nx), *y = g_new(float, ny), *W = g_new(float, nw);
  for (size_t i = 0; i < nx; i++) x[i] = (float)prunus_rng_normal(rng);
  for (size_t i = 0; i < nw; i++) W[i] = (float)prunus_rng_normal(rng);
  PrunusConvPrepared p;
  if (!prunus_conv_prepare(g, W, &p)) {
    g_free(x), g_free(y), g_free(W);
    return -1.0;
  }
  *direct = p.direct;
  size_t ns = MAX(prunus_conv_wino_scratch(g, 1), prunus_conv_cl_scratch(g, 1));
  float *scratch = g_new0(float, ns);
  prunus_conv_forward_prepared(g, &p, x, NULL, y, scratch, B, NULL);
  double t0 = cpu_us();
  prunus_conv_forward_prepared(g, &p, x, NULL, y, scratch, B, NULL);
  int calls = (int)CLAMP(1e5 / MAX(cpu_us() - t0, 1.0), 1, 100000);
  double best = G_MAXDOUBLE;
  for (int r = 0; r < 5; r++) {
    t0 = cpu_us();
    for (int c = 0; c < calls; c++)
      prunus_conv_forward_prepared(g, &p, x, NULL, y, scratch, B, NULL);
    best = MIN(best, (cpu_us() - t0) / calls);
  }
  prunus_conv_prepared_clear(&p);
  g_free(x), g_free(y), g_free(W), g_free(scratch);
  return best;
}

int main(int argc, char **argv) {
  static const char *const defaults[] = {"16:16:28", "32:32:14", "26:24:14",  "24:26:14",
                                         "64:64:7",  "53:56:7",  "56:48:7",   "48:56:7",
                                         "56:33:7",  "33:56:7",  "26:53:14:2"};
  int B = 16, n_shapes = 0;
  const char *shapes[64];
  for (int a = 1; a < argc; a++) {
    if (!strcmp(argv[a], "--lanes") && a + 1 < argc) {
      int l = atoi(argv[++a]);
      prunus_conv_force_lanes(l == 8 ? PRUNUS_CONV_LANES_8 : PRUNUS_CONV_LANES_16);
    } else if (!strcmp(argv[a], "--isa") && a + 1 < argc) {
      if (!strcmp(argv[++a], "avx2")) prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX2);
    } else if (!strcmp(argv[a], "--images") && a + 1 < argc) {
      B = atoi(argv[++a]);
    } else if (n_shapes < (int)G_N_ELEMENTS(shapes)) {
      shapes[n_shapes++] = argv[a];
    }
  }
  if (n_shapes == 0)
    for (size_t i = 0; i < G_N_ELEMENTS(defaults); i++) shapes[n_shapes++] = defaults[i];
  PrunusRng rng;
  prunus_rng_seed(&rng, 5);
  printf("%-12s %6s %10s %10s\n", "C:K:side", "lanes", "us/call", "madds/ns");
  for (int i = 0; i < n_shapes; i++) {
    int C = 0, K = 0, side = 0, s = 1;
    if (sscanf(shapes[i], "%d:%d:%d:%d", &C, &K, &side, &s) < 3 || C < 1 || K < 1 || side < 3 ||
        s < 1) {
      fprintf(stderr, "conv_shapes: %s is not C:K:side[:stride]\n", shapes[i]);
      return 2;
    }
    PrunusConvGeom g = {.C = C, .H = side, .W = side, .k = 3, .s = s, .p = 1, .cout = K};
    g.Ho = (side + 2 - 3) / s + 1, g.Wo = g.Ho;
    bool direct = false;
    double us = time_shape(&g, B, &rng, &direct);
    double madds = (double)B * C * K * 9 * g.Ho * g.Wo;
    char lanes[16];
    g_snprintf(lanes, sizeof lanes, "%d", prunus_conv_forward_lanes(&g));
    printf("%-12s %6s %10.1f %10.2f\n", shapes[i], direct ? "direct" : lanes, us,
           us > 0 ? madds / (us * 1e3) : 0.0);
  }
  return 0;
}
