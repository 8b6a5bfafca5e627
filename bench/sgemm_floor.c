/* sgemm_floor.c: the throughput floor of LeNet-300-100 training: only the sgemm
 * calls one training step makes (through prunus_sgemm, same shapes, transposes and
 * beta as core/nn/layers.c), looped over an epoch's worth of steps; prints JSON. */
#include "gemm.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LeNet-300-100: 784 -> 300 -> 100 -> 10. */
#define N_DENSE 3
static const int widths[N_DENSE + 1] = {784, 300, 100, 10};

typedef struct {
  float *params, *grads;    /* slabs laid out as prunus's model: W then b per layer */
  float *W[N_DENSE];        /* (out, in) views into params */
  float *dW[N_DENSE];       /* (out, in) views into grads */
  float *act[N_DENSE + 1];  /* (B, widths[i]); act[0] is the input batch */
  float *dact[N_DENSE + 1]; /* (B, widths[i]); dact[N_DENSE] is dlogits */
} Floor;

/* 64-byte aligned, as the model's slabs and activations (alignment decides how a
 * team splits a product, core/kernels/gemm.c) */
static float *aligned_new(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, sizeof(float) * n) != 0) g_error("out of memory");
  memset(p, 0, sizeof(float) * n);
  return p;
}

static float *filled(size_t n, GRand *r, float scale) {
  float *p = aligned_new(n);
  for (size_t i = 0; i < n; i++) p[i] = (float)g_rand_double_range(r, -scale, scale);
  return p;
}

static void floor_init(Floor *f, int B) {
  GRand *r = g_rand_new_with_seed(0);
  size_t n_params = 0;
  for (int i = 0; i < N_DENSE; i++) n_params += (size_t)(widths[i] + 1) * widths[i + 1];
  f->params = filled(n_params, r, 0.05f);
  f->grads = aligned_new(n_params);
  size_t off = 0;
  for (int i = 0; i < N_DENSE; i++) {
    f->W[i] = f->params + off;
    f->dW[i] = f->grads + off;
    off += (size_t)(widths[i] + 1) * widths[i + 1];
  }
  for (int i = 0; i <= N_DENSE; i++) {
    f->act[i] = filled((size_t)B * widths[i], r, 1.0f);
    f->dact[i] = filled((size_t)B * widths[i], r, 0.01f);
  }
  g_rand_free(r);
}

static void floor_clear(Floor *f) {
  free(f->params), free(f->grads);
  for (int i = 0; i <= N_DENSE; i++) free(f->act[i]), free(f->dact[i]);
}

/* Per-call clocks (--calls): 0..2 forward of layer i, 3..5 dW of layer i, 6..7 dx of
 * layer i (1, 2). */
#define N_CALLS 8
static const char *const call_names[N_CALLS] = {
    "fwd 1 (B,300,784) NT", "fwd 2 (B,100,300) NT", "fwd 3 (B,10,100) NT", "dW 1 (300,784,B) TN",
    "dW 2 (100,300,B) TN",  "dW 3 (10,100,B) TN",   "dx 2 (B,300,100) NN", "dx 3 (B,100,10) NN"};
static bool clock_calls = false;
static PrunusTeam *team = NULL; /* --team: products split by prunus_sgemm_team */
static double call_us[N_CALLS];

static gint64 tick(void) { return clock_calls ? g_get_monotonic_time() : 0; }
static void tock(int call, gint64 t0) {
  if (clock_calls) call_us[call] += (double)(g_get_monotonic_time() - t0);
}

/* The sgemm calls of one step at batch nb, as dense_forward / dense_backward make them:
 * forward y = x W^T (beta 1 onto the bias rows); backward dW += dy^T x, dx = dy W
 * (no dx for the first layer). */
static void floor_step(Floor *f, int nb) {
  for (int i = 0; i < N_DENSE; i++) {
    int in = widths[i], out = widths[i + 1];
    gint64 t0 = tick();
    prunus_sgemm_team(team, false, true, nb, out, in, 1.0f, f->act[i], in, f->W[i], in, 1.0f,
                      f->act[i + 1], out);
    tock(i, t0);
  }
  for (int i = N_DENSE - 1; i >= 0; i--) {
    int in = widths[i], out = widths[i + 1];
    gint64 t0 = tick();
    prunus_sgemm_team(team, true, false, out, in, nb, 1.0f, f->dact[i + 1], out, f->act[i], in,
                      1.0f, f->dW[i], in);
    tock(N_DENSE + i, t0);
    if (i > 0) {
      t0 = tick();
      prunus_sgemm_team(team, false, false, nb, in, out, 1.0f, f->dact[i + 1], out, f->W[i], in,
                        0.0f, f->dact[i], in);
      tock(2 * N_DENSE + i - 1, t0);
    }
  }
}

/* Seconds for one epoch of n samples at batch B (the last step takes the rest). */
static double floor_epoch(Floor *f, int n, int B) {
  gint64 t0 = g_get_monotonic_time();
  for (int start = 0; start < n; start += B) floor_step(f, MIN(B, n - start));
  return (g_get_monotonic_time() - t0) / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int threads = 1, batch = 128, n = 55000, epochs = 3;
  gboolean use_team = FALSE;
  GOptionEntry entries[] = {
      {"threads", 't', 0, G_OPTION_ARG_INT, &threads, "BLAS threads (default 1)", "N"},
      {"batch", 'b', 0, G_OPTION_ARG_INT, &batch, "batch size (default 128)", "B"},
      {"samples", 'n', 0, G_OPTION_ARG_INT, &n, "samples per epoch (default 55000)", "N"},
      {"epochs", 'e', 0, G_OPTION_ARG_INT, &epochs, "timed epochs after one warm-up (default 3)",
       "E"},
      {"calls", 0, 0, G_OPTION_ARG_NONE, &clock_calls,
       "also print microseconds per step of each call (to stderr)", NULL},
      {"team", 0, 0, G_OPTION_ARG_NONE, &use_team,
       "split each product over a prunus team (OpenBLAS one thread), as prunus train does", NULL},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *ctx = g_option_context_new("- LeNet-300-100 sgemm-only throughput floor");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "sgemm_floor: %s\n", error->message);
    g_error_free(error);
    g_option_context_free(ctx);
    return 2;
  }
  g_option_context_free(ctx);
  if (threads < 1 || batch < 1 || n < 1 || epochs < 1) {
    fprintf(stderr, "sgemm_floor: --threads, --batch, --samples and --epochs must be >= 1\n");
    return 2;
  }

  prunus_set_threads(threads);
  if (use_team && threads > 1) {
    team = prunus_team_new(threads);
    prunus_set_threads(1);
  }
  Floor f;
  floor_init(&f, batch);
  floor_epoch(&f, n, batch); /* warm-up: page faults, BLAS thread start */
  memset(call_us, 0, sizeof call_us);
  double *secs = g_new(double, epochs);
  for (int e = 0; e < epochs; e++) secs[e] = floor_epoch(&f, n, batch);
  qsort(secs, epochs, sizeof *secs, cmp_double);
  double median = secs[epochs / 2];
  /* 3 forward + 3 dW + 2 dx products, 2*M*N*K flops each */
  double flops_per_sample = 0.0;
  for (int i = 0; i < N_DENSE; i++)
    flops_per_sample += 2.0 * widths[i] * widths[i + 1] * (i > 0 ? 3 : 2);
  printf(
      "{\"bench\":\"sgemm_floor\",\"model\":\"lenet300\",\"threads\":%d,\"batch\":%d,"
      "\"samples\":%d,\"epochs\":%d,\"seconds\":%.6f,\"samples_per_second\":%.1f,"
      "\"gflops\":%.3f}\n",
      team ? prunus_team_threads(team) : prunus_get_threads(), batch, n, epochs, median, n / median,
      flops_per_sample * n / median / 1e9);
  if (clock_calls) {
    int steps = (n + batch - 1) / batch;
    for (int c = 0; c < N_CALLS; c++)
      fprintf(stderr, "%-22s %8.1f us/step\n", call_names[c], call_us[c] / steps / epochs);
  }
  g_free(secs);
  floor_clear(&f);
  return 0;
}
