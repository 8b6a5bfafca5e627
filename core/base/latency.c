/* latency.c: times a call (e.g. an engine's forward at a batch size) and returns
 * the lowest of three window medians after warm-up. */
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
