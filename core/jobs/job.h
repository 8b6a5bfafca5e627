/* job.h: what every command that reads a config does first: load it, apply
 * --set overrides, parse the shared groups, set threads, pick the run folder. */
#ifndef PRUNUS_JOB_H
#define PRUNUS_JOB_H

#include "config.h"
#include "data.h"

G_BEGIN_DECLS

typedef struct {
  PrunusConfig *cfg;
  PrunusRunConfig rc;
  char *run_dir; /* options' run_dir, or runs/<name> */
  int threads;   /* training's (PrunusTrainOptions.threads): --threads, else OpenBLAS's default */
  gboolean quiet;
} PrunusJob;

/* Load, override, parse name/seed/dataset/model/train; --threads N > 0 goes to OpenBLAS
 * (what runs outside training uses it) and to job->threads. The caller parses its own
 * groups, then calls prunus_config_check_unread. */
gboolean prunus_job_open(PrunusJob *job, const PrunusJobOptions *o, GError **error);
/* The same, calling prepare(cfg) after the --set overrides and before parsing
 * (experiments merge their overrides there). */
typedef gboolean (*PrunusJobPrepareFn)(PrunusConfig *cfg, void *user, GError **error);
gboolean prunus_job_open_with(PrunusJob *job, const PrunusJobOptions *o, PrunusJobPrepareFn prepare,
                              void *user, GError **error);
void prunus_job_close(PrunusJob *job);

/* Open o's config for reading a checkpoint (eval, export): groups other than
 * name/seed/dataset/model/train are ignored. */
gboolean prunus_job_open_shared(PrunusJob *job, const PrunusJobOptions *o, GError **error);
/* The job's data for a model loaded from checkpoint with its metadata (may be NULL):
 * the config's input must have the size of the model's (the error names both),
 * classes are the model's. When the metadata holds the input normalisation the model
 * was trained with, data->norm is that one and only the test split is read (train and
 * val stay NULL). Checkpoints written before prunus stored it fall back to every split
 * and the normalisation fitted on the config's training split, as in training. */
gboolean prunus_job_load_data_for(PrunusJob *job, const char *checkpoint, const PrunusModel *m,
                                  GHashTable *metadata, PrunusData *data, GError **error);

/* The commands that train (train, run) say once when --threads asks for more threads
 * than training splits its work over. */
void prunus_job_warn_threads(int threads);

G_END_DECLS

#endif
