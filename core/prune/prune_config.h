/* prune_config.h: the config's `prune` group parsed: the schedule, per-layer rates
 * and caps, rewinding, calibration and latency settings, the three plugin slots. */
#ifndef PRUNUS_PRUNE_CONFIG_H
#define PRUNUS_PRUNE_CONFIG_H

#include "config.h"

G_BEGIN_DECLS

/* The prune group, parsed. Per-layer arrays are indexed by model layer. */
typedef struct {
  int rounds;
  double amount;        /* per round, fraction of what remains */
  double *round_amount; /* (rounds) per-round amounts from schedule.levels, or NULL */
  double target;        /* > 0: amount derived so rounds reach it geometrically */
  double final_target;  /* the sparsity the schedule asks for after its last round */
  double tolerance;     /* schedule.tolerance: a round whose plan misses its requested
                         * sparsity by more is warned about */
  int scope;            /* PrunusScope */
  double *layer_rate;   /* (n_layers) 1 = the round's rate, 0 = excluded */
  double *layer_cap;    /* (n_layers) max_sparsity */
  int rewind_epoch;     /* keep θk at this pretraining epoch (0 = only θ0) */
  char *pretrained;     /* resolved path or NULL */
  int calib_batches, calib_batch;
  int latency_batches[4];
  int n_latency_batches;
  double latency_budget;                               /* seconds per measurement */
  config_setting_t *criterion, *granularity, *retrain; /* plugin groups */
  const char *criterion_name, *granularity_name, *retrain_name;
} PrunusPruneConfig;

/* Parse cfg's prune group for a run of rc (its model's layers, train.epochs). Errors
 * name file:line and the key. */
gboolean prunus_prune_config_parse(PrunusConfig *cfg, const PrunusRunConfig *rc,
                                   PrunusPruneConfig *out, GError **error);
void prunus_prune_config_clear(PrunusPruneConfig *pc);

G_END_DECLS

#endif
