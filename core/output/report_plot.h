/* report_plot.h: the plots of a report (plots/: CSV, gnuplot script, SVG/PNG) and
 * the per-layer remaining weights read from the final-round checkpoints. */
#ifndef PRUNUS_REPORT_PLOT_H
#define PRUNUS_REPORT_PLOT_H

#include "report_common.h"

G_BEGIN_DECLS

/* One plot of plots/: its files are <name>.csv, <name>.gp, <name>.svg, <name>.png. */
typedef struct {
  const char *name;
  const char *title;
  gboolean written;  /* csv + gp exist */
  gboolean rendered; /* svg and/or png exist */
  char *skipped;     /* why not written (transfer full), NULL otherwise */
} PrunusReportPlot;

#define PRUNUS_REPORT_N_PLOTS 3

/* Fill r->layers from the final-round and round-0 checkpoints; a run without
 * readable checkpoints adds a note and leaves its experiment's layers NULL. */
void prunus_report_load_layers(PrunusReport *r);
/* Write plots/ (CSV + scripts) and render them when gnuplot is on PATH;
 * *gnuplot_found tells which. */
gboolean prunus_report_write_plots(PrunusReport *r, PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS],
                                   gboolean *gnuplot_found, GError **error);
G_END_DECLS

#endif
