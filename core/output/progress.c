/* progress.c: the per-epoch progress bar (batch, loss, throughput, ETA) on a
 * terminal, the plain per-epoch line without one, and the epoch logger. */
#include "progress.h"
#include "rundir.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

void prunus_progress_init(PrunusProgress *p, const char *label, gboolean quiet) {
  p->tty = isatty(STDOUT_FILENO);
  p->quiet = quiet;
  p->label = label;
  p->last_draw = 0;
}

void prunus_progress_batch(int epoch, int batch_index, int n_batches, double loss,
                           double samples_per_second, double elapsed, void *user) {
  PrunusProgress *p = user;
  if (p->quiet || !p->tty) return;
  gint64 now = g_get_monotonic_time();
  if (batch_index != n_batches && now - p->last_draw < 100000) return;
  p->last_draw = now;
  enum { WIDTH = 24 };
  int filled = (int)((double)batch_index / n_batches * WIDTH);
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  double eta = batch_index > 0 ? elapsed / batch_index * (n_batches - batch_index) : 0.0;
  printf("\r\033[K%s epoch %d [%s] %d/%d loss %.4f %.0f samples/s ETA %.1fs", p->label, epoch, bar,
         batch_index, n_batches, loss, samples_per_second, eta);
  fflush(stdout);
}

void prunus_progress_epoch(PrunusProgress *p, const PrunusEpochReport *r) {
  if (p->quiet) return;
  if (p->tty) printf("\r\033[K");
  printf("%s epoch %d/%d  train_loss %.4f  train_acc %.4f", p->label, r->epoch, r->epochs,
         r->train_loss, r->train_accuracy);
  if (!isnan(r->val_accuracy))
    printf("  val_loss %.4f  val_acc %.4f", r->val_loss, r->val_accuracy);
  printf("  %.1fs  %.0f samples/s  lr %.4g\n", r->seconds, r->samples_per_second, r->lr);
  fflush(stdout);
}

void prunus_epoch_log_init(PrunusEpochLog *log, const char *run_dir, const char *experiment,
                           uint64_t seed, const char *label, gboolean quiet) {
  *log = (PrunusEpochLog){.run_dir = run_dir, .experiment = experiment, .seed = seed};
  prunus_progress_init(&log->progress, label, quiet);
}

/* PrunusEpochFn: the progress line, then the metrics.jsonl line. */
static gboolean epoch_log_epoch(const PrunusEpochReport *r, void *user, GError **error) {
  PrunusEpochLog *log = user;
  prunus_progress_epoch(&log->progress, r);
  /* the first line of this process for the experiment: lines a stopped run left for
   * this round or later go first, so a resumed run's file equals an uninterrupted one's */
  if (!log->forgot) {
    if (!prunus_rundir_forget_epochs(log->run_dir, log->experiment, log->seed, log->round, error))
      return FALSE;
    log->forgot = TRUE;
  }
  return prunus_rundir_append_epoch(log->run_dir, log->experiment, log->seed, log->round, r, error);
}

/* PrunusBatchFn: the progress bar. */
static void epoch_log_batch(int epoch, int batch_index, int n_batches, double loss,
                            double samples_per_second, double elapsed, void *user) {
  PrunusEpochLog *log = user;
  prunus_progress_batch(epoch, batch_index, n_batches, loss, samples_per_second, elapsed,
                        &log->progress);
}

void prunus_epoch_log_attach(PrunusEpochLog *log, PrunusTrainOptions *opt) {
  opt->on_batch = epoch_log_batch;
  opt->on_epoch = epoch_log_epoch;
  opt->user = log;
}
