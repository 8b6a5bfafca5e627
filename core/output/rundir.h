/* rundir.h: the run directory contract (docs/architecture.md): metrics.jsonl lines, the
 * per-round metrics record and summary.json, written atomically. */
#ifndef PRUNUS_RUNDIR_H
#define PRUNUS_RUNDIR_H

#include "json.h"
#include "config.h"
#include "model.h"
#include "plugin_host.h"
#include "train.h"

G_BEGIN_DECLS

#define PRUNUS_MAX_LATENCIES 12 /* 4 batch sizes x dense, shrunk, sparse */

/* The plugin slots of an experiment, as summary.json names them ("plugins",
 * "plugins_sha256"), in the order of PrunusRoundMetrics.plugin_sha256. */
#define PRUNUS_RUNDIR_N_SLOTS 3
extern const char *const prunus_rundir_slots[PRUNUS_RUNDIR_N_SLOTS];

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
  /* prunus_file_hash64 of the checkpoint and of its θ sidecar as written, so that a
   * resume can tell a file changed since (a disk fault, another round's or run's file
   * copied over it); "" = not recorded (older summaries, `prunus train`) */
  char checkpoint_hash[17], theta_hash[17];
  double seconds;
  /* run rounds >= 1: the sparsity the round's plan request asked for (what a plan
   * removing exactly the requested amount reaches), NaN when the plan removed units
   * (their amount counts units, not weights); written as requested_sparsity */
  gboolean has_request;
  double requested_sparsity;
  /* SHA-256 (hex) of the plugin files that produced the round, by slot; "" = not
   * recorded (rounds written before prunus recorded them) */
  char plugin_sha256[PRUNUS_RUNDIR_N_SLOTS][65];
  /* where the rest of the round's time went (NaN: not recorded, as in older
   * summaries): the test and validation passes, the latency measurements, writing
   * the θ sidecar and the checkpoint */
  double seconds_evaluate, seconds_latency, seconds_checkpoint;
} PrunusRoundMetrics;

void prunus_round_metrics_clear(PrunusRoundMetrics *r);
/* The SHA-256 (64 lower-case hex digits) of the file at path into out; FALSE (out "")
 * when it cannot be read. */
gboolean prunus_rundir_file_sha256(const char *path, char out[65]);
/* (transfer full) the round as its summary.json object. */
PrunusJson *prunus_round_metrics_to_json(const PrunusRoundMetrics *r);
/* Read a round back from its summary.json object (for resuming). FALSE when a
 * contract key is missing. */
gboolean prunus_round_metrics_from_json(const PrunusJson *o, PrunusRoundMetrics *r);
/* Copy the sha256 of each plugin recorded in exp_json's "plugins" into r. */
void prunus_round_metrics_stamp_plugins(PrunusRoundMetrics *r, const PrunusJson *exp_json);
/* Fill sparsity/params/flops fields from a model whose dense ancestor had
 * params_total parameters, prunable_total prunable weights and dense_flops FLOPs. */
void prunus_round_metrics_measure(PrunusRoundMetrics *r, const PrunusModel *m,
                                  uint64_t params_total, uint64_t prunable_total,
                                  uint64_t dense_flops);

/* dir/config.cfg: the config as it ran (after --set; relative paths resolved, so that
 * it means the same read from the run folder), written atomically. */
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
/* Drop the metrics.jsonl lines of experiment at seed from round from_round on: the
 * epochs of a round that did not finish (a crash, a full disk, an interrupt after the
 * line was written) are logged again when the round is run again. Other lines, and a
 * missing file, are left as they are. */
gboolean prunus_rundir_forget_epochs(const char *dir, const char *experiment, uint64_t seed,
                                     int from_round, GError **error);
/* summary.json's header, the one every command that trains writes: prunus_version,
 * command ("train" or "run"), config (its path), config_hash, threads (training's),
 * status "running" with status_message null, and an empty experiments list.
 * (transfer full) */
PrunusJson *prunus_rundir_summary_new(const char *command, const char *config_path,
                                      const char *config_hash, int threads);
/* The entry of experiment name at seed in summary's experiments list, or NULL.
 * (transfer none) */
const PrunusJson *prunus_rundir_summary_find(const PrunusJson *summary, const char *name,
                                             uint64_t seed);
/* The same entry, or a new one holding only those two keys when there is none yet.
 * (transfer none) */
PrunusJson *prunus_rundir_summary_experiment(PrunusJson *summary, const char *name, uint64_t seed);
/* The metadata every checkpoint of a run carries: config_hash, name, seed and the input
 * normalisation the model is trained with (so eval and export need no training data).
 * (transfer full) */
GHashTable *prunus_rundir_checkpoint_metadata(PrunusConfig *cfg, const PrunusRunConfig *rc,
                                              const PrunusNorm *norm);

/* Write dir/name atomically (temp + rename) with the pretty-printed JSON. */
gboolean prunus_rundir_write_json(const char *dir, const char *name, const PrunusJson *v,
                                  GError **error);

/* ------------------------------------------------------------------------ */
/* run status, plugin builds, resuming */

/* summary.json's "status": what became of the run. */
#define PRUNUS_RUN_RUNNING "running"         /* a process is working on it (or died silently) */
#define PRUNUS_RUN_FINISHED "finished"       /* every selected experiment ran to its end */
#define PRUNUS_RUN_FAILED "failed"           /* stopped by an error: status_message says which */
#define PRUNUS_RUN_INTERRUPTED "interrupted" /* stopped by SIGINT, SIGTERM or SIGHUP */

/* Set "status" and "status_message" (message NULL: null). */
void prunus_rundir_summary_set_status(PrunusJson *summary, const char *status, const char *message);
/* The recorded "status" (NULL when absent: written before prunus recorded it);
 * *message (may be NULL) gets status_message or NULL. (transfer none) */
const char *prunus_rundir_summary_status(const PrunusJson *summary, const char **message);

/* Write dir/summary.json atomically. While its status is "running", also hand
 * base/fatal.c the same text with the status left open, so a fatal signal, an
 * interrupt or a plugin's exit() rewrites it as "failed" or "interrupted" with the
 * message; any other status withdraws that. */
gboolean prunus_rundir_write_summary(const char *dir, PrunusJson *summary, GError **error);

/* summary.json read back for resuming a `command` run of the config whose hash is
 * hash: text (len bytes, read from path) must be a JSON object recording that command
 * and hash, or (hash_resolved not NULL) recording config_hash_resolved =
 * hash_resolved, the hash of the config with its paths made absolute (what the run
 * folder's config.cfg holds, so that it resumes its own run). Errors name path and say
 * that nothing was changed. (transfer full) */
PrunusJson *prunus_rundir_summary_parse(const char *path, const char *text, size_t len,
                                        const char *command, const char *hash,
                                        const char *hash_resolved, GError **error);

/* TRUE when summary.json's text (len bytes) is that of a `run` that recorded no round
 * in any experiment (it stopped before pretraining ended: a bad pretrained file, a
 * divergence): a folder holding no result, which another config may start afresh in.
 * FALSE for anything else, text that does not parse included. */
gboolean prunus_rundir_summary_holds_no_round(const char *text, size_t len);

/* One plugin build as summary.json records it: {"name", "version", "path", "sha256"}
 * with the SHA-256 of the file at path ("" when it cannot be read). (transfer full) */
PrunusJson *prunus_rundir_plugin_record(const char *name, const char *version, const char *path);
/* Compare the "plugins" objects of two runs of an experiment, slot by slot: NULL when
 * every slot recorded in both has the same name, version and sha256, else one line
 * per difference ("prune.criterion plugin 'x' is another build than the one that
 * produced the earlier rounds: sha256 ab12… (path) then, cd34… (path) now").
 * (transfer full) */
char *prunus_rundir_plugins_compare(const PrunusJson *before, const PrunusJson *now);
/* Record the builds of the three instances (criterion, granularity, retrain) as
 * exp_json's "plugins"; returns prunus_rundir_plugins_compare's text against what
 * exp_json recorded before, or NULL. (transfer full) */
char *prunus_rundir_summary_set_plugins(PrunusJson *exp_json, PrunusHost *const hosts[3]);

/* The run folder's lock (dir/prunus.lock): one `prunus run` per folder. */
typedef struct PrunusRunLock PrunusRunLock;
/* Take the lock without waiting and write this process's PID into the file. When a
 * live process holds it, an error naming dir and that PID. A lock left by a killed
 * process is free again: the kernel drops it with the process. (transfer full) */
PrunusRunLock *prunus_rundir_lock(const char *dir, GError **error);
void prunus_rundir_unlock(PrunusRunLock *lock);
/* The PID recorded by the live process that holds dir's lock; 0 when none holds it,
 * -1 when one does but its PID cannot be read. */
int prunus_rundir_lock_holder(const char *dir);

G_END_DECLS

#endif
