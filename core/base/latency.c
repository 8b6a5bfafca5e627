/* latency.c: times a call (e.g. an engine's forward at a batch size) and returns
 * the lowest of window medians after warm-up: three windows of a fixed budget, or as
 * many windows as it takes for two medians to agree. */
#include "latency.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

double prunus_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double prunus_median(double *t, int n) {
  qsort(t, (size_t)n, sizeof(double), compare_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

double prunus_latency_us(void (*run)(void *ctx), void *ctx, double budget_seconds, int min_runs) {
  for (int i = 0; i < 3; i++) run(ctx);
  enum { MAX_RUNS = 5000, WINDOWS = 3 };
  double *t = g_new(double, MAX_RUNS);
  double best = INFINITY;
  for (int w = 0; w < WINDOWS; w++) {
    int runs = 0;
    double start = prunus_now_us();
    while (runs < MAX_RUNS) {
      double t0 = prunus_now_us();
      run(ctx);
      double t1 = prunus_now_us();
      t[runs++] = t1 - t0;
      if (runs >= min_runs && (t1 - start) / 1e6 >= budget_seconds / WINDOWS) break;
    }
    best = MIN(best, prunus_median(t, runs));
  }
  g_free(t);
  return best;
}

PrunusLatency prunus_latency_adaptive(void (*run)(void *ctx), void *ctx,
                                      const PrunusLatencyPlan *plan) {
  enum { MAX_RUNS = 5000, MIN_WINDOWS = 3 };
  PrunusLatency r = {.us = INFINITY};
  double start = prunus_now_us();
  run(ctx);
  double w0 = prunus_now_us();
  run(ctx);
  double one = MAX(prunus_now_us() - w0, 0.01); /* a warm call, for the window size */
  int n = (int)CLAMP(ceil(plan->window_us / one), MAX(plan->min_runs, 1), MAX_RUNS);
  double *t = g_new(double, n);
  double second = INFINITY; /* the second-lowest window median */
  double windows_start = prunus_now_us();
  for (;;) {
    for (int i = 0; i < n; i++) {
      double t0 = prunus_now_us();
      run(ctx);
      t[i] = prunus_now_us() - t0;
    }
    double m = prunus_median(t, n);
    if (m < r.us)
      second = r.us, r.us = m;
    else if (m < second)
      second = m;
    r.windows++;
    r.runs += n;
    if (r.windows >= MIN_WINDOWS && second - r.us <= plan->tolerance * r.us) {
      r.stable = TRUE;
      break;
    }
    if (r.windows >= MIN_WINDOWS && (prunus_now_us() - windows_start) / 1e6 >= plan->max_seconds)
      break;
  }
  g_free(t);
  r.seconds = (prunus_now_us() - start) / 1e6;
  return r;
}
