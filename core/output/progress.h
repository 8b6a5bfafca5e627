/* progress.h: what a training run shows while it works: a live progress bar on
 * a terminal, one plain line per epoch otherwise. */
#ifndef PRUNUS_PROGRESS_H
#define PRUNUS_PROGRESS_H

#include "train.h"

typedef struct {
  gboolean tty;       /* stdout is a terminal: redraw a bar in place */
  gboolean quiet;     /* print nothing */
  const char *label;  /* shown before each line, e.g. "pretrain" or "round 3" */
  gint64 last_draw;   /* monotonic us of the last redraw (throttle) */
} PrunusProgress;

void prunus_progress_init(PrunusProgress *p, const char *label, gboolean quiet);
/* PrunusBatchFn: redraws the bar (terminal only, at most 10 times a second). */
void prunus_progress_batch(int epoch, int batch_index, int n_batches, double loss,
                           double samples_per_second, double elapsed, void *user);
/* One line for a finished epoch (clears the bar first on a terminal). */
void prunus_progress_epoch(PrunusProgress *p, const PrunusEpochReport *r);

#endif
