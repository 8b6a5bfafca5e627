/* report.h: the reports of a run directory (docs/architecture.md, "Run directory contract"):
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

G_END_DECLS

#endif
