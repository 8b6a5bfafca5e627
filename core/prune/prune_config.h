/* prune_config.h: the config's `prune` group parsed: the schedule, per-layer rates
 * and caps, rewinding, calibration and latency settings, the three plugin slots. */
#ifndef PRUNUS_PRUNE_CONFIG_H
#define PRUNUS_PRUNE_CONFIG_H

#include "config.h"

G_BEGIN_DECLS

/* prune.latency.mode: how each round's latency is measured. */
typedef enum {
  /* every engine at every batch size, every round: three windows of `seconds`/3 each */
  PRUNUS_LATENCY_FIXED,
  /* windows until two medians agree (prunus_latency_adaptive), within `seconds` and
   * within `max_share` of the experiment's wall time; dense layouts (the dense engine,
   * the shrunk one) measured once per architecture, since masking changes their values
   * and not their work */
  PRUNUS_LATENCY_ADAPTIVE,
} PrunusLatencyMode;

/* prune.schedule.allocation: how a layer-scope round splits its amount over layers. */
typedef enum {
  PRUNUS_ALLOCATION_UNIFORM,          /* every layer loses the round's amount (x its rate) */
  PRUNUS_ALLOCATION_GLOBAL_MAGNITUDE, /* each layer loses the share of its alive weights a
                                       * global magnitude ranking would remove */
} PrunusAllocation;

/* The prune group, parsed. Per-layer arrays are indexed by model layer. */
typedef struct {
  int rounds;
  double amount;                    /* per round, fraction of what remains */
  double *round_amount;             /* (rounds) per-round amounts from schedule.levels, or NULL */
  double target;                    /* > 0: amount derived so rounds reach it geometrically */
  double final_target;              /* the sparsity the schedule asks for after its last round */
  double tolerance;                 /* schedule.tolerance: a round whose plan misses its requested
                                     * sparsity by more is warned about */
  int scope;                        /* PrunusScope */
  int allocation;                   /* PrunusAllocation (layer scope only) */
  int output_layer;                 /* the last layer with weights: its units are the classes */
  double *layer_rate;               /* (n_layers) 1 = the round's rate, 0 = excluded */
  double *layer_cap;                /* (n_layers) max_sparsity */
  config_setting_t **layer_cap_key; /* (n_layers) where each cap is written; NULL: none */
  int rewind_epoch;                 /* keep θk at this pretraining epoch (0 = only θ0) */
  char *pretrained;                 /* resolved path or NULL */
  /* masks_from = "name": each round takes its masks from that experiment's checkpoint
   * of the same round (same seed) instead of scoring and planning; NULL: none */
  const char *masks_from;
  config_setting_t *masks_from_key; /* its setting, for errors */
  /* with masks_from: the source's criterion and granularity, which made the masks and
   * label this experiment in the summary (its own are never called); NULL otherwise */
  const char *masks_criterion_name, *masks_granularity_name;
  int calib_batches, calib_batch;
  gboolean recalibrate_bn; /* re-estimate batchnorm statistics on the calibration sample
                            * after each round's pruning, before the retrain */
  int latency_batches[4];
  int n_latency_batches;
  int latency_mode;         /* PrunusLatencyMode */
  double latency_budget;    /* seconds: fixed, each measurement; adaptive, at most each */
  double latency_tolerance; /* adaptive: two window medians this close end a measurement */
  double latency_share;     /* adaptive: the measurements' most share of the wall time */
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
