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
  double *round_amount;     /* (rounds) per-round amounts from schedule.levels, or NULL */
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

/* One experiment x seed of a run. */
typedef struct {
  const char *name;        /* experiment name */
  const char *subdir;      /* its checkpoints, relative to the run dir: "imp" or "imp/seed-1" */
  const char *cache_dir;   /* pretraining cache (shared by experiments with equal settings) */
  PrunusJson *entry;       /* (transfer none) its object in summary's experiments[]: an empty
                              object for a fresh run, or the entry of an interrupted run to resume */
} PrunusExperimentSpec;

/* Run one experiment into job->run_dir, seed job->rc.seed. Each finished round
 * is on disk (θ sidecar, checkpoint, then summary.json) before the next starts; an
 * entry with finished rounds resumes after the last one (all done: nothing runs). */
gboolean prunus_pipeline_run(PrunusJob *job, PrunusData *data, PrunusPluginRegistry *reg,
                             const PrunusPruneConfig *pc, const PrunusExperimentSpec *spec,
                             PrunusJson *summary, GError **error);

/* The pretraining cache key: a hash of everything pretraining depends on. (transfer full) */
char *prunus_pretrain_key(const PrunusRunConfig *rc, int rewind_epoch);

G_END_DECLS

#endif
