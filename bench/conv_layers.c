/* conv_layers.c: prunus's convolution kernels on the conv layer types of ResNet-20 on
 * 28x28x1 Fashion-MNIST (batch 128, no bias), forward and backward timed apart, and the
 * FMA peak of this CPU measured with a tight loop; prints one JSON line (conv_bench.py). */
#include "conv_direct.h"
#include "conv_gemm.h"
#include "conv_wino.h"
#include "gemm.h"
#include "rng.h"
#include "team.h"

#include <glib.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One layer type: the same table as bench/conv_torch.py. */
typedef struct {
  const char *name;
  int cin, cout, k, s, p, side, count;
} LayerType;

static const LayerType layer_types[] = {
    {"stem", 1, 16, 3, 1, 1, 28, 1},
    {"s1", 16, 16, 3, 1, 1, 28, 6},
    {"s2_down", 16, 32, 3, 2, 1, 28, 1},
    {"s2_proj", 16, 32, 1, 2, 0, 28, 1},
    {"s2", 32, 32, 3, 1, 1, 14, 5},
    {"s3_down", 32, 64, 3, 2, 1, 14, 1},
    {"s3_proj", 32, 64, 1, 2, 0, 14, 1},
    {"s3", 64, 64, 3, 1, 1, 7, 5},
    /* channel-pruned variants (count 0: not in the network's sum) */
    {"s1_p11", 11, 11, 3, 1, 1, 28, 0},
    {"s2d_p23", 11, 23, 3, 2, 1, 28, 0},
    {"s3_p45", 45, 45, 3, 1, 1, 7, 0},
};

/* ------------------------------------------------------------------------ */
/* the FMA peak: independent multiply-adds in registers, no loads */

#define PEAK_ACC 12 /* independent accumulators: more than latency x FMA units */
#define PEAK_ITERS 5000000L

typedef struct {
  int width; /* 512 or 256 bits */
  double gflops[PRUNUS_TEAM_MAX_THREADS];
} PeakCall;

__attribute__((target("avx512f"))) static float fma_loop_512(long iters) {
  __m512 acc[PEAK_ACC];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int j = 0; j < PEAK_ACC; j++) acc[j] = _mm512_set1_ps((float)j);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < PEAK_ACC; j++) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < PEAK_ACC; j++) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(long iters) {
  __m256 acc[PEAK_ACC];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int j = 0; j < PEAK_ACC; j++) acc[j] = _mm256_set1_ps((float)j);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < PEAK_ACC; j++) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 s = acc[0];
  for (int j = 1; j < PEAK_ACC; j++) s = _mm256_add_ps(s, acc[j]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

static volatile float peak_sink;

static void peak_part(void *arg, int part, int n_parts) {
  (void)n_parts;
  PeakCall *c = arg;
  long iters = PEAK_ITERS;
  /* the thread's own CPU time: the rate while it runs, whatever else the machine does */
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  peak_sink = c->width == 512 ? fma_loop_512(iters) : fma_loop_256(iters);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  int lanes = c->width / 32;
  c->gflops[part] = (double)iters * PEAK_ACC * lanes * 2 / s * 1e-9;
}

/* The best of a few runs of the loop on every thread of the team, summed over them. */
static double fma_peak(PrunusTeam *team, int width) {
  double best = 0.0;
  for (int r = 0; r < 3; r++) {
    PeakCall c = {.width = width};
    prunus_team_run(team, peak_part, &c);
    double sum = 0.0;
    for (int p = 0; p < prunus_team_threads(team); p++) sum += c.gflops[p];
    best = MAX(best, sum);
  }
  return best;
}

/* ------------------------------------------------------------------------ */
/* the layers */

typedef struct {
  PrunusConvGeom g;
  int B;
  float *x, *W, *y, *dy, *dx, *dW, *scratch;
  PrunusTeam *team;
  gboolean need_dx;
} Bench;

/* The kernels a conv2d layer of this geometry runs (the choice in core/nn/layers.c). */
typedef enum { PATH_DIRECT, PATH_WINO, PATH_CL, PATH_GEMM } Path;

static Path path_of(const PrunusConvGeom *g) {
  if (prunus_conv_direct_covers(g)) return PATH_DIRECT;
  if (prunus_conv_wino_covers(g)) return PATH_WINO;
  if (prunus_conv_cl_covers(g)) return PATH_CL;
  return PATH_GEMM;
}

static const char *path_name(const PrunusConvGeom *g) {
  static const char *const names[] = {"direct", "wino", "cl", "gemm"};
  return names[path_of(g)];
}

static size_t path_scratch(const PrunusConvGeom *g, int parts) {
  switch (path_of(g)) {
  case PATH_DIRECT:
    return prunus_conv_direct_scratch(g, parts);
  case PATH_WINO:
    return prunus_conv_wino_scratch(g, parts);
  case PATH_CL:
    return prunus_conv_cl_scratch(g, parts);
  default:
    return prunus_conv_gemm_scratch(g, parts);
  }
}

/* ResNet's convs have no bias (batch norm follows): bias and db are NULL. */
static void run_forward(Bench *b) {
  switch (path_of(&b->g)) {
  case PATH_DIRECT:
    prunus_conv_direct_forward(&b->g, b->x, b->W, NULL, b->y, b->scratch, b->B, b->team);
    break;
  case PATH_WINO:
    prunus_conv_wino_forward(&b->g, b->x, b->W, NULL, b->y, b->scratch, b->B, b->team);
    break;
  case PATH_CL:
    prunus_conv_cl_forward(&b->g, b->x, b->W, NULL, b->y, b->scratch, b->B, b->team);
    break;
  default:
    prunus_conv_gemm_forward(&b->g, b->x, b->W, NULL, b->y, b->scratch, b->B, b->team);
  }
}

static void run_backward(Bench *b) {
  float *dx = b->need_dx ? b->dx : NULL;
  switch (path_of(&b->g)) {
  case PATH_DIRECT:
    prunus_conv_direct_backward(&b->g, b->x, b->W, b->dy, b->dW, NULL, dx, b->scratch, b->B,
                                b->team);
    break;
  case PATH_WINO:
    prunus_conv_wino_backward(&b->g, b->x, b->W, b->dy, b->dW, NULL, dx, b->scratch, b->B, b->team);
    break;
  case PATH_CL:
    prunus_conv_cl_backward(&b->g, b->x, b->W, b->dy, b->dW, NULL, dx, b->scratch, b->B, b->team);
    break;
  default:
    prunus_conv_gemm_backward(&b->g, b->x, b->W, b->dy, b->dW, NULL, dx, b->scratch, b->B, b->team);
  }
}

/* The weight gradient alone (dx not asked for). */
static void run_backward_weights(Bench *b) {
  gboolean need_dx = b->need_dx;
  b->need_dx = FALSE;
  run_backward(b);
  b->need_dx = need_dx;
}

static float *random_floats(PrunusRng *rng, size_t n) {
  float *a = g_malloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++) a[i] = (float)(prunus_rng_uniform(rng) * 2.0 - 1.0);
  return a;
}

static gboolean cpu_clock = FALSE; /* --cpu-clock: the process's CPU time, not wall time */

static double now_us(void) {
  struct timespec ts;
  clock_gettime(cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* Microseconds per call in the best of `reps` rounds of `iters` calls (two calls
 * first): other processes on the machine only ever add time. */
static double best_us(Bench *b, void (*fn)(Bench *), int reps, int iters) {
  fn(b), fn(b);
  double best = G_MAXDOUBLE;
  for (int r = 0; r < reps; r++) {
    double t0 = now_us();
    for (int i = 0; i < iters; i++) fn(b);
    best = MIN(best, (now_us() - t0) / iters);
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = 1, reps = 5, iters = 20, batch = 128;
  gboolean peak_only = FALSE;
  gchar *only = NULL, *isa = NULL;
  GOptionEntry entries[] = {
      {"threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads of the layer's team (default 1)",
       "N"},
      {"reps", 0, 0, G_OPTION_ARG_INT, &reps, "timed rounds per pass (the best counts; default 5)",
       "N"},
      {"iters", 0, 0, G_OPTION_ARG_INT, &iters, "calls per round (default 20)", "N"},
      {"batch", 0, 0, G_OPTION_ARG_INT, &batch, "images per call (default 128)", "N"},
      {"only", 0, 0, G_OPTION_ARG_STRING, &only, "comma-separated layer names (default all)", "L"},
      {"peak-only", 0, 0, G_OPTION_ARG_NONE, &peak_only, "measure only the FMA peak", NULL},
      {"isa", 0, 0, G_OPTION_ARG_STRING, &isa,
       "widest instruction set the Winograd kernels may use: avx512 (default) or avx2", "ISA"},
      {"cpu-clock", 0, 0, G_OPTION_ARG_NONE, &cpu_clock,
       "time layers by the process's CPU time (1 thread on a busy machine), not wall time", NULL},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *ctx = g_option_context_new("- prunus conv kernels on ResNet-20's layers");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "conv_layers: %s\n", error->message);
    return 2;
  }
  g_option_context_free(ctx);
  if (threads < 1 || threads > PRUNUS_TEAM_MAX_THREADS || reps < 1 || iters < 1 || batch < 1) {
    fprintf(stderr, "conv_layers: --threads must be 1..%d; --reps, --iters, --batch >= 1\n",
            PRUNUS_TEAM_MAX_THREADS);
    return 2;
  }
  if (isa && strcmp(isa, "avx2") != 0 && strcmp(isa, "avx512") != 0) {
    fprintf(stderr, "conv_layers: --isa must be avx512 or avx2, found '%s'\n", isa);
    return 2;
  }
  if (isa && strcmp(isa, "avx2") == 0) prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX2);
  prunus_set_threads(1);
  PrunusTeam *team = NULL;
  if (threads > 1) {
    team = prunus_team_new(threads);
    if (!team) {
      fprintf(stderr, "conv_layers: cannot start a team of %d threads\n", threads);
      return 1;
    }
    prunus_team_pin_caller(team);
  }
  __builtin_cpu_init();
  gboolean has512 = __builtin_cpu_supports("avx512f");
  double peak512 = has512 ? fma_peak(team, 512) : 0.0, peak256 = fma_peak(team, 256);
  printf(
      "{\"bench\":\"conv_layers\",\"threads\":%d,\"batch\":%d,\"wino_isa\":\"%s\","
      "\"fma_peak_gflops\":{\"avx512\":%.2f,\"avx2\":%.2f}",
      threads, batch, prunus_conv_isa_name(prunus_conv_wino_isa()), peak512, peak256);
  if (peak_only) {
    printf("}\n");
    prunus_team_free(team);
    return 0;
  }
  printf(",\"layers\":[");
  gchar **names = only ? g_strsplit(only, ",", -1) : NULL;
  PrunusRng rng;
  prunus_rng_seed(&rng, 1);
  gboolean first = TRUE;
  for (size_t t = 0; t < G_N_ELEMENTS(layer_types); t++) {
    const LayerType *lt = &layer_types[t];
    if (names && !g_strv_contains((const gchar *const *)names, lt->name)) continue;
    int ho = (lt->side + 2 * lt->p - lt->k) / lt->s + 1;
    Bench b = {.g = {.C = lt->cin,
                     .H = lt->side,
                     .W = lt->side,
                     .k = lt->k,
                     .s = lt->s,
                     .p = lt->p,
                     .cout = lt->cout,
                     .Ho = ho,
                     .Wo = ho},
               .B = batch,
               .team = team,
               .need_dx = strcmp(lt->name, "stem") != 0};
    size_t nx = (size_t)batch * lt->cin * lt->side * lt->side;
    size_t ny = (size_t)batch * lt->cout * ho * ho, nw = (size_t)lt->cout * lt->cin * lt->k * lt->k;
    size_t ns = path_scratch(&b.g, threads);
    b.x = random_floats(&rng, nx), b.dy = random_floats(&rng, ny), b.W = random_floats(&rng, nw);
    b.y = g_malloc0(sizeof(float) * ny), b.dx = g_malloc0(sizeof(float) * nx);
    b.dW = g_malloc0(sizeof(float) * nw);
    b.scratch = g_aligned_alloc0(ns + 16, sizeof(float), 64);
    double fwd = best_us(&b, run_forward, reps, iters);
    double bwd = best_us(&b, run_backward, reps, iters);
    double bwd_w = b.need_dx ? best_us(&b, run_backward_weights, reps, iters) : bwd;
    double macs = (double)batch * ho * ho * lt->cout * lt->cin * lt->k * lt->k;
    printf(
        "%s{\"name\":\"%s\",\"count\":%d,\"path\":\"%s\",\"fwd_us\":%.1f,\"bwd_us\":%.1f,"
        "\"bwd_w_us\":%.1f,\"fwd_flops\":%.0f,\"bwd_flops\":%.0f}",
        first ? "" : ",", lt->name, lt->count, path_name(&b.g), fwd, bwd, bwd_w, 2 * macs,
        (b.need_dx ? 4 : 2) * macs);
    first = FALSE;
    g_free(b.x), g_free(b.dy), g_free(b.W), g_free(b.y);
    g_free(b.dx), g_free(b.dW), g_aligned_free(b.scratch);
  }
  printf("]}\n");
  g_strfreev(names);
  g_free(only);
  g_free(isa);
  prunus_team_free(team);
  return 0;
}
