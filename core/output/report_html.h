/* report_html.h: report.html, one self-contained page built from the report data
 * and the plots written. */
#ifndef PRUNUS_REPORT_HTML_H
#define PRUNUS_REPORT_HTML_H

#include "report_plot.h"

G_BEGIN_DECLS

/* Write report.html from the loaded data and the plots written. */
gboolean prunus_report_write_html(const PrunusReport *r,
                                  const PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS],
                                  gboolean gnuplot_found, GError **error);
G_END_DECLS

#endif
