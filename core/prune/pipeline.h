/* pipeline.h: the iterative prune -> retrain schedule of one experiment, in two steps:
 * prepare (plugins found, created and checked against the config; nothing trained,
 * nothing written) and run (pretrain keeping θ0/θk, then rounds of score, plan, apply,
 * retrain, evaluate, checkpoint). */
#ifndef PRUNUS_PIPELINE_H
#define PRUNUS_PIPELINE_H

#include "data.h"
#include "json.h"
#include "plugin_loader.h"
#include "prune_config.h"

G_BEGIN_DECLS

/* What the experiments of one run share to keep latency measurement within
 * prune.latency.max_share of the run's wall time: when the run began, the seconds
 * its measurements took so far, and the measurements themselves, so that a layout two
 * experiments share (the pretrained network, the masks prune.masks_from copies) is
 * measured once. */
typedef struct {
  double start_us;        /* prunus_now_us() at the run's start */
  double latency_seconds; /* measurements so far, every experiment's */
  /* layout key -> (double *) µs, or "pad|" + architecture -> the dense engine's padding
   * choices (int count, then one int per layer); NULL: each experiment keeps its own */
  GHashTable *latency;
} PrunusRunClock;

/* One experiment x seed of a run: what the command above hands the pipeline. Every
 * pointer is borrowed and must outlive the pipeline. */
typedef struct {
  const char *name;            /* experiment name */
  PrunusConfig *cfg;           /* its config: the experiment merged over the base, seed set */
  const PrunusRunConfig *rc;   /* cfg's shared groups, parsed */
  const PrunusPruneConfig *pc; /* cfg's prune group, parsed */
  const char *run_dir;         /* the run folder */
  const char *subdir;          /* its checkpoints, relative to run_dir: "imp" or "imp/seed-1" */
  const char *masks_subdir;    /* prune.masks_from's subdir (same seed), or NULL */
  const char *cache_dir;       /* pretraining cache (shared by experiments with equal settings) */
  int threads;                 /* training threads (PrunusTrainOptions.threads) */
  gboolean quiet;
  PrunusRunClock *clock; /* the run's, shared by its experiments; NULL: the experiment's own */
} PrunusExperiment;

typedef struct PrunusPipeline PrunusPipeline;

/* Check one experiment before anything trains: find its three plugins, create each
 * instance on a model view of the configured architecture (create() reads and checks
 * the plugin's settings), refuse keys no one read and a granularity that takes no
 * score the criterion produces; then destroy the instances and the model again, so a
 * run of many prepared experiments holds one experiment's memory at a time. Reads no
 * data and writes nothing. Errors name the config's file:line and the slot or key.
 * (transfer full) */
PrunusPipeline *prunus_pipeline_prepare(const PrunusExperiment *exp, PrunusPluginRegistry *reg,
                                        GError **error);
/* Run a prepared experiment (once) on data, into exp->run_dir, with plugin instances
 * created anew from reg (which must still be open). Its entry in summary's
 * experiments list is found or created by name and seed. Each finished round is on
 * disk (θ sidecar, checkpoint, then summary.json) before the next starts; an entry
 * with finished rounds resumes after the last one (all done: nothing runs). The
 * instances and models are freed before it returns. */
gboolean prunus_pipeline_run(PrunusPipeline *p, const PrunusData *data, PrunusJson *summary,
                             GError **error);
void prunus_pipeline_free(PrunusPipeline *p);

/* Seconds a pipeline's run spent, by kind of work (zero before it runs). */
typedef struct {
  double train;      /* pretraining (or reading it from the cache), each round's prune + retrain */
  double evaluate;   /* the test and validation passes after each round */
  double latency;    /* the latency measurements */
  double checkpoint; /* θ sidecars, checkpoints and summary.json */
} PrunusPipelineTiming;
PrunusPipelineTiming prunus_pipeline_timing(const PrunusPipeline *p);
/* TRUE when the experiment's granularity ranks whole units (it accepts unit or group
 * scores): its rounds shrink the network, so no other experiment can take its masks. */
gboolean prunus_pipeline_removes_units(const PrunusPipeline *p);

/* The pretraining cache key: a hash of everything pretraining depends on: the model,
 * the training settings, the seed, the dataset paths and settings, and what the
 * dataset files hold (data_digest, PrunusData.digest: a file rewritten under the same
 * path gives another key). (transfer full) */
char *prunus_pretrain_key(const PrunusRunConfig *rc, const char *data_digest, int rewind_epoch);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: nothing outside pipeline.c calls these */

/* The shuffle seed of the call-th prunus_train call (from 0) of a round: round 0
 * (pretraining) trains with the config's seed, round r > 0 with a seed derived from it
 * and r; every later call of the same round derives its own, so a retrain plugin that
 * trains an epoch per call does not see one sample order every epoch, while a round
 * trained in one call shuffles as it always did. */
uint64_t prunus_pipeline_train_seed(uint64_t config_seed, int round, int call);

G_END_DECLS

#endif
