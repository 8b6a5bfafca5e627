/* latency.h: measured inference latency of a model's forward pass (median of
 * repeated runs after warm-up), the number behind every latency column. */
#ifndef PRUNUS_LATENCY_H
#define PRUNUS_LATENCY_H

#include "model.h"

G_BEGIN_DECLS

/* Microseconds of one forward of B random samples: 3 warm-up runs, then three
 * windows of budget_seconds/3 (at least min_runs runs each); the lowest of the
 * three window medians. */
double prunus_latency_forward_us(PrunusModel *m, int B, double budget_seconds, int min_runs);

G_END_DECLS

#endif
