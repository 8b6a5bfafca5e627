/* latency.c: times the forward pass at a batch size and returns the median of
 * many runs after warm-up; inputs are seeded random data. */
#include "latency.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double prunus_latency_forward_us(PrunusModel *m, int B, double budget_seconds, int min_runs) {
  size_t n = (size_t)B * prunus_model_input_size(m);
  float *x = g_new(float, n); /* (B, input) */
  PrunusRng rng;
  prunus_rng_seed(&rng, 12345);
  for (size_t i = 0; i < n; i++) x[i] = (float)prunus_rng_normal(&rng);
  for (int i = 0; i < 3; i++) prunus_model_forward(m, x, B);
  /* Three windows of a third of the budget each; the lowest window median wins,
   * so a burst of load from another process spoils one window, not the figure. */
  enum { MAX_RUNS = 2000, WINDOWS = 3 };
  double *t = g_new(double, MAX_RUNS);
  double best = INFINITY;
  for (int w = 0; w < WINDOWS; w++) {
    int runs = 0;
    double start = now_us();
    while (runs < MAX_RUNS) {
      double t0 = now_us();
      prunus_model_forward(m, x, B);
      double t1 = now_us();
      t[runs++] = t1 - t0;
      if (runs >= min_runs && (t1 - start) / 1e6 >= budget_seconds / WINDOWS) break;
    }
    qsort(t, runs, sizeof(double), compare_double);
    double median = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    if (median < best) best = median;
  }
  g_free(t);
  g_free(x);
  return best;
}
