/* report_common.h: what the report writers share (report.c, report_plot.c,
 * report_html.c): the report data read from a run's summary.json, per-seed
 * statistics, and number and file output (report_common.c). */
#ifndef PRUNUS_REPORT_COMMON_H
#define PRUNUS_REPORT_COMMON_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

/* mean ± sample standard deviation of the finite values among n seeds. */
typedef struct {
  double mean; /* NaN when no value */
  double std;  /* NaN when fewer than two values */
  int n;       /* values that were finite numbers */
} PrunusStat;

/* One metric column: a round key of summary.json or a latency_us key. */
typedef struct {
  char *key; /* "test_accuracy", or "dense_b1" inside latency_us */
  gboolean latency;
  char *csv;   /* column stem in summary.csv: "test_accuracy", "latency_dense_b1_us" */
  char *title; /* table header: "test acc", "dense b1 (µs)" */
  int digits;  /* decimals in the tables */
} PrunusReportMetric;

/* Fixed metrics, in table order; latency columns follow. */
typedef enum {
  PRUNUS_REPORT_SPARSITY,
  PRUNUS_REPORT_PARAMS,
  PRUNUS_REPORT_COMPRESSION,
  PRUNUS_REPORT_SPEEDUP,
  PRUNUS_REPORT_TEST_ACCURACY,
  PRUNUS_REPORT_N_FIXED
} PrunusReportFixedMetric;

typedef struct {
  int round;
  int n_seeds;        /* runs of the experiment that reached this round */
  PrunusStat *values; /* (n_metrics) */
} PrunusReportRow;

/* One run (one seed) of an experiment. */
/* A round's checkpoint as summary.json records it. */
typedef struct {
  char *path; /* relative to the run dir; NULL when none */
  char *hash; /* its checkpoint_hash; NULL when none recorded */
} PrunusReportCheckpoint;

typedef struct {
  double seed;
  int final_round;
  PrunusReportCheckpoint final, dense; /* the last round's and round 0's */
} PrunusReportRun;

typedef struct {
  char *name, *criterion, *granularity, *retrain; /* the last three may be NULL */
  char *masks_from;                               /* the experiment whose masks it took, or NULL */
  char *latency_method; /* how its latency was measured (summary.json), or NULL */
  GArray *runs;         /* PrunusReportRun, in summary.json order */
  int n_rows;
  PrunusReportRow *rows; /* by round, ascending */
} PrunusReportExperiment;

/* Remaining-weight fraction of one layer in the final round, over seeds. */
typedef struct {
  char *name;             /* layer name as in checkpoints: its index "1" */
  char *type;             /* "dense", "conv2d" */
  uint64_t weights_total; /* the dense layer's weights */
  PrunusStat remaining;   /* weights alive (not masked, not removed) */
  PrunusStat fraction;    /* remaining / weights_total */
} PrunusReportLayer;

typedef struct {
  char *run_dir;
  char *version, *config_path; /* from summary.json; may be NULL */
  char *config_text;           /* config.cfg, NULL when absent */
  int n_metrics;
  PrunusReportMetric *metrics; /* (n_metrics): PRUNUS_REPORT_N_FIXED fixed, then latencies */
  int n_exps;
  PrunusReportExperiment *exps;
  /* per experiment: the final round's layers (NULL = not available) */
  GArray **layers;  /* (n_exps) of PrunusReportLayer */
  GPtrArray *notes; /* char*: things the reader should know (skipped plots) */
  /* NULL when summary.json says the run finished (or predates the status); else how
   * the unfinished run stands, one sentence for the top of every report */
  char *unfinished;
} PrunusReport;

/* The latency method every experiment of r shares (transfer none), or NULL when they
 * differ or say none: the reports then state it per experiment. */
const char *prunus_report_common_latency_method(const PrunusReport *r);
/* mean ± std (n - 1) of the finite values in x[0..n). */
PrunusStat prunus_stat_of(const double *x, int n);
/* "0.8812 ± 0.0031", "0.8812" (one seed) or "" (no value). (transfer full) */
char *prunus_stat_format(PrunusStat s, int digits);

/* Atomically write run_dir/name (name may contain a folder). */
gboolean prunus_report_write_file(const char *run_dir, const char *name, const GString *text,
                                  GError **error);
/* Append a number with up to 10 significant digits in the C locale; NaN -> "". */
void prunus_report_append_number(GString *out, double x);

G_END_DECLS

#endif
