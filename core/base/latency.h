/* latency.h: the measured latency of any call (median of repeated runs after
 * warm-up), the number behind every latency column; one monotonic clock. */
#ifndef PRUNUS_LATENCY_H
#define PRUNUS_LATENCY_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

/* Monotonic clock, microseconds. */
double prunus_now_us(void);
/* The median of t[0..n) (n >= 1; the mean of the middle two when n is even); sorts t. */
double prunus_median(double *t, int n);

/* Microseconds of one call of run(ctx): 3 warm-up calls, then three windows of
 * budget_seconds/3 (at least min_runs calls each, at most 5000); the lowest of the
 * three window medians, so a burst of load from another process spoils one window,
 * not the figure. */
double prunus_latency_us(void (*run)(void *ctx), void *ctx, double budget_seconds, int min_runs);

/* How prunus_latency_adaptive repeats a call. */
typedef struct {
  int min_runs;       /* calls per window, at least */
  double window_us;   /* and at least this long: fast calls get more calls per window */
  double tolerance;   /* stop once the two lowest window medians agree this closely
                       * (relative to the lowest), after at least 3 windows */
  double max_seconds; /* or once this much time went into the windows (the first 3
                       * windows always run: one burst of other work spoils one) */
} PrunusLatencyPlan;

/* What one measurement found and cost. */
typedef struct {
  double us;       /* the lowest window median */
  int windows;     /* windows run */
  int runs;        /* timed calls in all (warm-up not counted) */
  double seconds;  /* wall time of the whole measurement, warm-up included */
  gboolean stable; /* stopped because two window medians agreed (FALSE: out of time) */
} PrunusLatency;

/* The same estimator as prunus_latency_us (the lowest of window medians after
 * warm-up), with as many windows as it takes for two of them to agree: 2 warm-up
 * calls, then windows of max(min_runs, window_us / one call) calls, at least 3, until
 * the two lowest medians are within plan->tolerance or plan->max_seconds is spent. A
 * call whose time does not vary stops after 3 windows; one disturbed by other
 * processes runs more windows, up to the cap. */
PrunusLatency prunus_latency_adaptive(void (*run)(void *ctx), void *ctx,
                                      const PrunusLatencyPlan *plan);

G_END_DECLS

#endif
