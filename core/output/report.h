/* report.h: the reports of a run directory (DESIGN.md "Run directory contract"):
 * summary.md, summary.csv, plots/ (CSV + gnuplot script + SVG/PNG) and a
 * self-contained report.html, all rebuilt from summary.json and the checkpoints. */
#ifndef PRUNUS_REPORT_H
#define PRUNUS_REPORT_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

/* Read RUN_DIR/summary.json (and config.cfg, the checkpoints when present) and
 * write the reports next to it. Errors name the file: a missing or malformed
 * summary.json, an unwritable output, gnuplot failing on a script. A missing
 * gnuplot is not an error: the CSVs and scripts are written, a one-line note goes
 * to stderr and report.html says how to render the plots. */
gboolean prunus_report_write(const char *run_dir, GError **error);

/* ------------------------------------------------------------------------ */
/* internal: shared by report.c, report_plot.c and report_html.c */

/* mean ± sample standard deviation of the finite values among n seeds. */
typedef struct {
  double mean;   /* NaN when no value */
  double std;    /* NaN when fewer than two values */
  int n;         /* values that were finite numbers */
} PrunusStat;

/* One metric column: a round key of summary.json or a latency_us key. */
typedef struct {
  char *key;        /* "test_accuracy", or "dense_b1" inside latency_us */
  gboolean latency;
  char *csv;        /* column stem in summary.csv: "test_accuracy", "latency_dense_b1_us" */
  char *title;      /* table header: "test acc", "dense b1 (µs)" */
  int digits;       /* decimals in the tables */
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
  int n_seeds;          /* runs of the experiment that reached this round */
  PrunusStat *values;   /* (n_metrics) */
} PrunusReportRow;

/* One run (one seed) of an experiment. */
typedef struct {
  double seed;
  int final_round;
  char *final_checkpoint;   /* relative to the run dir; NULL when none */
  char *dense_checkpoint;   /* round 0; NULL when none */
} PrunusReportRun;

typedef struct {
  char *name, *criterion, *granularity, *retrain;   /* the last three may be NULL */
  GArray *runs;         /* PrunusReportRun, in summary.json order */
  int n_rows;
  PrunusReportRow *rows;  /* by round, ascending */
} PrunusReportExperiment;

/* Remaining-weight fraction of one layer in the final round, over seeds. */
typedef struct {
  char *name;            /* layer name as in checkpoints: its index "1" */
  char *type;            /* "dense", "conv2d" */
  uint64_t weights_total;  /* the dense layer's weights */
  PrunusStat remaining;    /* weights alive (not masked, not removed) */
  PrunusStat fraction;     /* remaining / weights_total */
} PrunusReportLayer;

typedef struct {
  char *run_dir;
  char *version, *config_path;   /* from summary.json; may be NULL */
  char *config_text;             /* config.cfg, NULL when absent */
  int n_metrics;
  PrunusReportMetric *metrics;   /* (n_metrics): PRUNUS_REPORT_N_FIXED fixed, then latencies */
  int n_exps;
  PrunusReportExperiment *exps;
  /* per experiment: the final round's layers (NULL = not available) */
  GArray **layers;               /* (n_exps) of PrunusReportLayer */
  GPtrArray *notes;              /* char*: things the reader should know (skipped plots) */
} PrunusReport;

/* (transfer full) The report data of run_dir; errors name summary.json. */
PrunusReport *prunus_report_load(const char *run_dir, GError **error);
void prunus_report_free(PrunusReport *r);
/* mean ± std (n - 1) of the finite values in x[0..n). */
PrunusStat prunus_stat_of(const double *x, int n);
/* "0.8812 ± 0.0031", "0.8812" (one seed) or "" (no value). (transfer full) */
char *prunus_stat_format(PrunusStat s, int digits);

/* One plot of plots/: its files are <name>.csv, <name>.gp, <name>.svg, <name>.png. */
typedef struct {
  const char *name;
  const char *title;
  gboolean written;     /* csv + gp exist */
  gboolean rendered;    /* svg and/or png exist */
  char *skipped;        /* why not written (transfer full), NULL otherwise */
} PrunusReportPlot;

#define PRUNUS_REPORT_N_PLOTS 3

/* Fill r->layers from the final-round and round-0 checkpoints; a run without
 * readable checkpoints adds a note and leaves its experiment's layers NULL. */
void prunus_report_load_layers(PrunusReport *r);
/* Write plots/ (CSV + scripts) and render them when gnuplot is on PATH;
 * *gnuplot_found tells which. */
gboolean prunus_report_write_plots(PrunusReport *r, PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS],
                                   gboolean *gnuplot_found, GError **error);
/* Write report.html from the loaded data and the plots written. */
gboolean prunus_report_write_html(const PrunusReport *r,
                                  const PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS],
                                  gboolean gnuplot_found, GError **error);
/* Atomically write run_dir/name (name may contain a folder). */
gboolean prunus_report_write_file(const char *run_dir, const char *name, const GString *text,
                                  GError **error);
/* Append a number with up to 10 significant digits in the C locale; NaN -> "". */
void prunus_report_append_number(GString *out, double x);

G_END_DECLS

#endif
