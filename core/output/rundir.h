/* rundir.h: the run directory contract (docs/architecture.md): metrics.jsonl lines, the
 * per-round metrics record and summary.json, written atomically. */
#ifndef PRUNUS_RUNDIR_H
#define PRUNUS_RUNDIR_H

#include "json.h"
#include "config.h"
#include "model.h"
#include "train.h"

G_BEGIN_DECLS

#define PRUNUS_MAX_LATENCIES 12 /* 4 batch sizes x dense, shrunk, sparse */

/* What summary.json says about one round (round 0 = the dense network). */
typedef struct {
  int round;
  double sparsity;            /* fraction of prunable weights zeroed or removed */
  uint64_t params_total;      /* all parameters of the dense network */
  uint64_t params_remaining;  /* not masked and not removed */
  double compression;         /* params_total / params_remaining */
  uint64_t flops;             /* 2 x multiply-adds per sample, remaining network */
  double speedup_theoretical; /* dense flops / flops */
  double test_accuracy, test_loss, val_accuracy, val_loss; /* NaN = not measured */
  int n_latency;
  char latency_key[PRUNUS_MAX_LATENCIES][32]; /* "<engine>_b<batch>" */
  double latency_us[PRUNUS_MAX_LATENCIES];
  char *checkpoint; /* path relative to the run dir (owned) */
  uint64_t checkpoint_bytes;
  double seconds;
  /* where the rest of the round's time went (NaN: not recorded, as in older
   * summaries): the test and validation passes, the latency measurements, writing
   * the θ sidecar and the checkpoint */
  double seconds_evaluate, seconds_latency, seconds_checkpoint;
} PrunusRoundMetrics;

void prunus_round_metrics_clear(PrunusRoundMetrics *r);
/* (transfer full) the round as its summary.json object. */
PrunusJson *prunus_round_metrics_to_json(const PrunusRoundMetrics *r);
/* Read a round back from its summary.json object (for resuming). FALSE when a
 * contract key is missing. */
gboolean prunus_round_metrics_from_json(const PrunusJson *o, PrunusRoundMetrics *r);
/* Fill sparsity/params/flops fields from a model whose dense ancestor had
 * params_total parameters, prunable_total prunable weights and dense_flops FLOPs. */
void prunus_round_metrics_measure(PrunusRoundMetrics *r, const PrunusModel *m,
                                  uint64_t params_total, uint64_t prunable_total,
                                  uint64_t dense_flops);

/* dir/config.cfg: the config as it ran (after --set), written atomically. */
gboolean prunus_rundir_write_config(const char *dir, PrunusConfig *cfg, GError **error);
/* Bytes in the file at path, 0 when it cannot be read. */
uint64_t prunus_rundir_file_size(const char *path);

/* Create path (and parents). */
gboolean prunus_rundir_ensure(const char *path, GError **error);
/* Append one JSON object as a line to dir/name and flush it to disk. */
gboolean prunus_rundir_append_line(const char *dir, const char *name, const PrunusJson *obj,
                                   GError **error);
/* One metrics.jsonl line for a finished epoch (the contract keys and a few more). */
gboolean prunus_rundir_append_epoch(const char *dir, const char *experiment, uint64_t seed,
                                    int round, const PrunusEpochReport *r, GError **error);
/* summary.json's header, the one every command that trains writes: prunus_version,
 * command ("train" or "run"), config (its path), config_hash, threads (training's),
 * and an empty experiments list. (transfer full) */
PrunusJson *prunus_rundir_summary_new(const char *command, const char *config_path,
                                      const char *config_hash, int threads);
/* The entry of experiment name at seed in summary's experiments list; a new entry
 * holding only those two keys when there is none yet. (transfer none) */
PrunusJson *prunus_rundir_summary_experiment(PrunusJson *summary, const char *name, uint64_t seed);
/* The metadata every checkpoint of a run carries: config_hash, name, seed and the input
 * normalisation the model is trained with (so eval and export need no training data).
 * (transfer full) */
GHashTable *prunus_rundir_checkpoint_metadata(PrunusConfig *cfg, const PrunusRunConfig *rc,
                                              const PrunusNorm *norm);

/* Write dir/name atomically (temp + rename) with the pretty-printed JSON. */
gboolean prunus_rundir_write_json(const char *dir, const char *name, const PrunusJson *v,
                                  GError **error);

G_END_DECLS

#endif
