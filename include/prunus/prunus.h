/* prunus.h: the public API of libprunus, used by the `prunus` CLI and by
 * programs that embed prunus. Internal contracts live in core/ headers. */
#ifndef PRUNUS_H
#define PRUNUS_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

#if defined(PRUNUS_BUILDING)
#define PRUNUS_API __attribute__((visibility("default")))
#else
#define PRUNUS_API
#endif

#define PRUNUS_ERROR (prunus_error_quark())

/* Error codes of the PRUNUS_ERROR domain. */
typedef enum {
  PRUNUS_ERROR_IO,       /* a file could not be opened, read or written */
  PRUNUS_ERROR_FORMAT,   /* a data file or checkpoint is malformed */
  PRUNUS_ERROR_CONFIG,   /* a config file or --set override is invalid */
  PRUNUS_ERROR_MISMATCH, /* two inputs disagree (shapes, counts, architectures) */
  PRUNUS_ERROR_PLUGIN,   /* a plugin failed to load or returned an error */
  PRUNUS_ERROR_NUMERIC,  /* NaN/Inf where a number was required */
  PRUNUS_ERROR_INVALID,  /* an argument out of range */
} PrunusErrorCode;

PRUNUS_API GQuark prunus_error_quark(void);
PRUNUS_API const char *prunus_version(void);

/* What every command that reads a config shares. */
typedef struct {
  const char *config_path;      /* libconfig file */
  const char *const *overrides; /* NULL-terminated "path.to.key=value" list; may be NULL */
  const char *run_dir;          /* output folder; NULL = runs/<config name> */
  /* Threads: training (train, and run's pretraining and retraining) splits its work
   * over a team of N, with OpenBLAS at one thread meanwhile; everything else
   * (evaluation, latency, eval) gives N to OpenBLAS. 0 = OpenBLAS's default count. */
  int threads;
  gboolean quiet;        /* only errors and the final result line */
  const char *only;      /* run: only the experiment of this name (NULL = all) */
  const char *cache_dir; /* run: pretraining cache folder (NULL = RUN_DIR/cache) */
} PrunusJobOptions;

/* `prunus train`: train the config's model; writes RUN_DIR/model.safetensors,
 * metrics.jsonl (a line per epoch), summary.json and config.cfg (resolved). */
PRUNUS_API gboolean prunus_job_train(const PrunusJobOptions *o, GError **error);

/* `prunus eval`: test loss and accuracy of a checkpoint on the config's test set.
 * The checkpoint's own (possibly shrunk) architecture is used, and its input
 * normalisation; one written before prunus stored it gets the normalisation fitted
 * on the config's training split, which is then read too. */
PRUNUS_API gboolean prunus_job_eval(const char *checkpoint, const PrunusJobOptions *o,
                                    double *accuracy, double *loss, GError **error);

/* `prunus run`: the whole pipeline of the config (pretrain, then rounds of
 * score -> plan -> apply -> retrain -> evaluate); writes the run folder: per-round
 * checkpoints, metrics.jsonl, summary.json (rewritten after every round). Every
 * experiment x seed is checked first (config keys, plugin names and settings, the
 * criterion/granularity pairing), before the dataset is read: a config with a mistake
 * anywhere is refused with nothing trained and nothing written. A second run into a
 * folder in use is refused (its lock, prunus.lock). The first call installs, for the
 * rest of the process, handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGINT,
 * SIGTERM and SIGHUP (chaining to those installed before), an exit hook, and ignores
 * SIGXFSZ: a crash, an interrupt or a plugin's exit() during a run is then reported
 * naming what ran, and recorded in summary.json (docs/reliability.md). */
PRUNUS_API gboolean prunus_job_run(const PrunusJobOptions *o, GError **error);

/* `prunus report`: rebuild RUN_DIR's reports (summary.md, summary.csv, plots/,
 * report.html) from its summary.json and checkpoints, without training; works on
 * interrupted runs. Without gnuplot the plots' data and scripts are written and a
 * note says how to render them. */
PRUNUS_API gboolean prunus_job_report(const char *run_dir, GError **error);

/* `prunus groups`: print the channel groups of the config's model: for each, the
 * conv2d / dense units that structured pruning (granularity neuron / channel) removes
 * together because add, concat, batchnorm or flatten tie their channels, their batchnorm
 * channels and the input channels of the layers that read them; then the units tied to
 * the network's input or output, which are never removed. Reads only name, seed,
 * dataset (not the data), model and train. */
PRUNUS_API gboolean prunus_job_groups(const PrunusJobOptions *o, GError **error);

/* `prunus plugins`: print every plugin on the search path (o may be NULL; with a
 * config, its plugin_path comes first). */
PRUNUS_API gboolean prunus_job_list_plugins(const PrunusJobOptions *o, GError **error);

/* `prunus bench`: every inference engine (dense, masked, sparse, shrunk, auto) on a
 * checkpoint, per batch size: median latency, throughput, the ratio to dense, weight
 * bytes, FLOPs; per layer the sparsity and what auto picked. Printed; also written as
 * JSON to json_path when set. */
/* The largest batch size prunus_job_bench takes (a model's own limit). */
#define PRUNUS_BENCH_MAX_BATCH 65536
typedef struct {
  const int *batches; /* batch sizes in [1, PRUNUS_BENCH_MAX_BATCH]; NULL / 0 = {1, 32, 256} */
  int n_batches;
  int threads;           /* sparse kernels and OpenBLAS (1 or 2); 0 = 1 */
  double seconds;        /* time spent per measurement; 0 = 0.3 */
  const char *json_path; /* may be NULL */
} PrunusBenchOptions;

PRUNUS_API gboolean prunus_job_bench(const char *checkpoint, const PrunusBenchOptions *o,
                                     GError **error);

/* `prunus export`: what a checkpoint becomes outside prunus. */
typedef enum {
  PRUNUS_EXPORT_C,           /* out = a folder: prunus_model.c + prunus_model.h, no deps */
  PRUNUS_EXPORT_SAFETENSORS, /* out = a file: masks applied, dead units removed, no masks */
} PrunusExportFormat;

/* Export checkpoint to out. The C format takes the input normalisation from the
 * checkpoint's metadata; for a checkpoint written before prunus stored it there, it
 * is fitted again on the training split of the config o->config_path. Otherwise o
 * is read only for quiet and may be NULL. */
PRUNUS_API gboolean prunus_job_export(const char *checkpoint, const PrunusJobOptions *o,
                                      PrunusExportFormat format, const char *out, GError **error);

G_END_DECLS

#endif /* PRUNUS_H */
