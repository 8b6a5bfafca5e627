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

G_END_DECLS

#endif
