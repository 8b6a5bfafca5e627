/* progress.h: what a training run shows and logs while it works: a live progress bar
 * on a terminal (one plain line per epoch otherwise) and the epoch logger that also
 * appends each epoch's metrics.jsonl line. */
#ifndef PRUNUS_PROGRESS_H
#define PRUNUS_PROGRESS_H

#include "train.h"

G_BEGIN_DECLS

typedef struct {
  gboolean tty;      /* stdout is a terminal: redraw a bar in place */
  gboolean quiet;    /* print nothing */
  const char *label; /* shown before each line, e.g. "pretrain" or "round 3" */
  gint64 last_draw;  /* monotonic us of the last redraw (throttle) */
} PrunusProgress;

void prunus_progress_init(PrunusProgress *p, const char *label, gboolean quiet);
/* PrunusBatchFn: redraws the bar (terminal only, at most 10 times a second). */
void prunus_progress_batch(int epoch, int batch_index, int n_batches, double loss,
                           double samples_per_second, double elapsed, void *user);
/* One line for a finished epoch (clears the bar first on a terminal). */
void prunus_progress_epoch(PrunusProgress *p, const PrunusEpochReport *r);

/* The one epoch logger of the commands that train (`train`, and `run` for pretraining
 * and every retraining): per epoch a progress line and a metrics.jsonl line in run_dir
 * labelled with experiment, seed and round. The strings are borrowed. */
typedef struct {
  PrunusProgress progress;
  const char *run_dir;
  const char *experiment;
  uint64_t seed;
  int round; /* 0 = (pre)training; set by the caller as rounds advance */
  /* whether metrics.jsonl's lines of this round and later, left by a run that stopped,
   * were dropped (before the first line this log appends) */
  gboolean forgot;
} PrunusEpochLog;

void prunus_epoch_log_init(PrunusEpochLog *log, const char *run_dir, const char *experiment,
                           uint64_t seed, const char *label, gboolean quiet);
/* Point opt's logging callbacks (on_batch, on_epoch, user) at log. */
void prunus_epoch_log_attach(PrunusEpochLog *log, PrunusTrainOptions *opt);

G_END_DECLS

#endif
