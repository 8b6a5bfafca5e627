/* pipeline.h: the iterative prune -> retrain schedule of one experiment:
 * pretrain, keep θ0/θk, then rounds of score, plan, apply, retrain, evaluate. */
#ifndef PRUNUS_PIPELINE_H
#define PRUNUS_PIPELINE_H

#include "job.h"
#include "plugin_loader.h"
#include "rundir.h"

G_BEGIN_DECLS

/* The prune group, parsed. Per-layer arrays are indexed by model layer. */
typedef struct {
  int rounds;
  double amount;            /* per round, fraction of what remains */
  double target;            /* > 0: amount derived so rounds reach it geometrically */
  int scope;                /* PrunusScope */
  double *layer_rate;       /* (n_layers) 1 = the round's rate, 0 = excluded */
  double *layer_cap;        /* (n_layers) max_sparsity */
  int rewind_epoch;         /* keep θk at this pretraining epoch (0 = only θ0) */
  char *pretrained;         /* resolved path or NULL */
  int calib_batches, calib_batch;
  int latency_batches[4];
  int n_latency_batches;
  double latency_budget;    /* seconds per measurement */
  config_setting_t *criterion, *granularity, *retrain;  /* plugin groups */
  const char *criterion_name, *granularity_name, *retrain_name;
} PrunusPruneConfig;

gboolean prunus_prune_config_parse(PrunusConfig *cfg, const PrunusArch *arch,
                                   PrunusPruneConfig *out, GError **error);
void prunus_prune_config_clear(PrunusPruneConfig *pc);

/* Run one experiment named exp_name into job->run_dir; on success *summary_exp
 * gets its summary.json object (transfer full). Each finished round is on disk
 * (checkpoint, metrics.jsonl, summary.json) before the next starts. */
gboolean prunus_pipeline_run(PrunusJob *job, PrunusData *data, PrunusPluginRegistry *reg,
                             const PrunusPruneConfig *pc, const char *exp_name,
                             PrunusJson *summary, GError **error);

G_END_DECLS

#endif
