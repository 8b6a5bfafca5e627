/* report_html.c: report.html, one self-contained page (inline CSS, plots embedded
 * as data: URIs, no scripts, no external resources) with the summary table, the
 * plots and the resolved config; it opens from disk in any browser. */
#include "report_html.h"

#include <string.h>

static void html_text(GString *out, const char *s) {
  char *valid = g_utf8_make_valid(s ? s : "", -1);
  char *esc = g_markup_escape_text(valid, -1);
  g_string_append(out, esc);
  g_free(esc);
  g_free(valid);
}

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
    "margin:2em auto;max-width:1400px;padding:0 1em;color:#1b1b1b;background:#fff;line-height:1.45}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;"
    "border-bottom:1px solid #ddd;padding-bottom:.2em}"
    ".meta{color:#555}"
    ".unfinished{background:#fdecea;border-left:4px solid #c62828;padding:.5em 1em}"
    "table{border-collapse:collapse;font-size:.88em;margin:1em 0;display:block;overflow-x:auto}"
    "th,td{border:1px solid #d0d0d0;padding:.3em .6em;white-space:nowrap}"
    "th{background:#f1f3f5;position:sticky;top:0}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tbody tr:nth-child(even){background:#fafafa}"
    "tr.first td{border-top:2px solid #999}"
    "figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}"
    "figcaption{color:#555;font-size:.9em}"
    ".note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}"
    "pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:1em;overflow-x:auto;font-size:.85em}"
    "code{font-family:'DejaVu Sans Mono',monospace}";

static void html_table(GString *h, const PrunusReport *r) {
  g_string_append(
      h, "<table id=\"summary\">\n<thead><tr><th>experiment</th><th>round</th><th>seeds</th>");
  for (int m = 0; m < r->n_metrics; m++) {
    g_string_append(h, "<th>");
    html_text(h, r->metrics[m].title);
    g_string_append(h, "</th>");
  }
  g_string_append(h, "</tr></thead>\n<tbody>\n");
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    for (int i = 0; i < e->n_rows; i++) {
      g_string_append_printf(h, "<tr%s><td>", i == 0 ? " class=\"first\"" : "");
      html_text(h, e->name);
      g_string_append_printf(h, "</td><td class=\"num\">%d</td><td class=\"num\">%d</td>",
                             e->rows[i].round, e->rows[i].n_seeds);
      for (int m = 0; m < r->n_metrics; m++) {
        char *cell = prunus_stat_format(e->rows[i].values[m], r->metrics[m].digits);
        g_string_append_printf(h, "<td class=\"num\">%s</td>", cell);
        g_free(cell);
      }
      g_string_append(h, "</tr>\n");
    }
  }
  g_string_append(h, "</tbody>\n</table>\n");
}

/* <img> with the SVG (or else the PNG) as a base64 data: URI; FALSE when neither exists. */
static gboolean html_image(GString *h, const PrunusReport *r, const PrunusReportPlot *p) {
  static const struct {
    const char *ext, *mime;
  } kinds[] = {{"svg", "image/svg+xml"}, {"png", "image/png"}};
  for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
    char *file = g_strdup_printf("%s.%s", p->name, kinds[i].ext);
    char *path = g_build_filename(r->run_dir, "plots", file, NULL);
    char *data = NULL;
    size_t len = 0;
    gboolean have = g_file_get_contents(path, &data, &len, NULL) && len > 0;
    if (have) {
      char *b64 = g_base64_encode((const guchar *)data, len);
      g_string_append_printf(h, "<img alt=\"%s\" src=\"data:%s;base64,%s\">\n", p->title,
                             kinds[i].mime, b64);
      g_free(b64);
    }
    g_free(data);
    g_free(path);
    g_free(file);
    if (have) return TRUE;
  }
  return FALSE;
}

static void html_plots(GString *h, const PrunusReport *r, const PrunusReportPlot *plots,
                       gboolean gnuplot_found) {
  g_string_append(h, "<h2>Plots</h2>\n");
  gboolean any_unrendered = FALSE;
  for (int i = 0; i < PRUNUS_REPORT_N_PLOTS; i++)
    any_unrendered |= plots[i].written && !plots[i].rendered;
  if (any_unrendered) {
    g_string_append(h, "<p class=\"note\">The plots were not rendered");
    g_string_append(h, gnuplot_found ? "." : ": gnuplot is not installed.");
    g_string_append(h, " Their data and gnuplot scripts are in <code>");
    html_text(h, r->run_dir);
    g_string_append(h,
                    "/plots/</code>. Install gnuplot (Debian: <code>apt-get install gnuplot-nox"
                    "</code>) and run <code>prunus report ");
    html_text(h, r->run_dir);
    g_string_append(h,
                    "</code>, or render one by hand: <code>cd plots &amp;&amp; gnuplot "
                    "acc_vs_compression.gp</code>.</p>\n");
  }
  for (int i = 0; i < PRUNUS_REPORT_N_PLOTS; i++) {
    const PrunusReportPlot *p = &plots[i];
    g_string_append(h, "<figure>\n");
    if (!p->written || !html_image(h, r, p)) {
      g_string_append_printf(h, "<p class=\"note\">%s: ", p->title);
      if (p->skipped) {
        g_string_append(h, "skipped: ");
        html_text(h, p->skipped);
      } else {
        g_string_append(h, "not rendered");
      }
      g_string_append(h, ".</p>\n");
    }
    g_string_append_printf(h, "<figcaption>%s", p->title);
    if (p->written)
      g_string_append_printf(h,
                             " — data <code>plots/%s.csv</code>, gnuplot script "
                             "<code>plots/%s.gp</code>",
                             p->name, p->name);
    g_string_append(h, "</figcaption>\n</figure>\n");
  }
}

gboolean prunus_report_write_html(const PrunusReport *r,
                                  const PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS],
                                  gboolean gnuplot_found, GError **error) {
  GString *h = g_string_new(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>prunus report");
  if (r->config_path) g_string_append(h, ": "), html_text(h, r->config_path);
  g_string_append_printf(h,
                         "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>prunus report</h1>\n"
                         "<p class=\"meta\">",
                         css);
  if (r->config_path)
    g_string_append(h, "config <code>"), html_text(h, r->config_path),
        g_string_append(h, "</code> · ");
  g_string_append(h, "run folder <code>");
  html_text(h, r->run_dir);
  g_string_append(h, "</code> · prunus ");
  html_text(h, r->version ? r->version : "?");
  g_string_append(h, "</p>\n");
  if (r->unfinished)
    g_string_append(h, "<p class=\"unfinished\"><strong>Unfinished run</strong>: "),
        html_text(h, r->unfinished), g_string_append(h, "</p>\n");
  if (prunus_report_common_latency_method(r)) {
    g_string_append(h, "<p>Latency measurement: ");
    html_text(h, prunus_report_common_latency_method(r));
    g_string_append(h, ".</p>\n");
  }
  g_string_append(h, "<h2>Experiments</h2>\n<ul>\n");
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    g_string_append(h, "<li><strong>");
    html_text(h, e->name);
    g_string_append(h, "</strong>: ");
    if (e->masks_from) {
      g_string_append(h, "the masks of <code>");
      html_text(h, e->masks_from);
      g_string_append(h, "</code>, retrain <code>");
      html_text(h, e->retrain ? e->retrain : "?");
      g_string_append(h, "</code>");
    } else if (e->criterion) {
      g_string_append(h, "criterion <code>");
      html_text(h, e->criterion);
      g_string_append(h, "</code>, granularity <code>");
      html_text(h, e->granularity ? e->granularity : "?");
      g_string_append(h, "</code>, retrain <code>");
      html_text(h, e->retrain ? e->retrain : "?");
      g_string_append(h, "</code>");
    } else {
      g_string_append(h, "trained, not pruned");
    }
    g_string_append(h, "; seeds ");
    for (guint i = 0; i < e->runs->len; i++) {
      g_string_append(h, i ? ", " : "");
      prunus_report_append_number(h, g_array_index(e->runs, PrunusReportRun, i).seed);
    }
    if (e->latency_method && !prunus_report_common_latency_method(r)) {
      g_string_append(h, "; latency ");
      html_text(h, e->latency_method);
    }
    g_string_append(h, "</li>\n");
  }
  g_string_append(h,
                  "</ul>\n<h2>Summary</h2>\n<p>Each cell is the mean ± sample standard deviation "
                  "over the seeds (a bare value: one seed). Latency is the median forward time "
                  "in µs: <em>dense</em> keeps the unpruned layout with zeros in place, "
                  "<em>shrunk</em> runs with the dead units removed. The same table is in "
                  "<code>summary.csv</code> and <code>summary.md</code>.</p>\n");
  html_table(h, r);
  html_plots(h, r, plots, gnuplot_found);
  if (r->notes->len) {
    g_string_append(h, "<h2>Notes</h2>\n<ul>\n");
    for (guint i = 0; i < r->notes->len; i++) {
      g_string_append(h, "<li>");
      html_text(h, g_ptr_array_index(r->notes, i));
      g_string_append(h, "</li>\n");
    }
    g_string_append(h, "</ul>\n");
  }
  g_string_append(h, "<h2>Resolved config</h2>\n");
  if (r->config_text) {
    g_string_append(h, "<pre id=\"config\">");
    html_text(h, r->config_text);
    g_string_append(h, "</pre>\n");
  } else {
    g_string_append(h, "<p class=\"note\">config.cfg is missing from the run folder.</p>\n");
  }
  g_string_append(h, "</body>\n</html>\n");
  gboolean ok = prunus_report_write_file(r->run_dir, "report.html", h, error);
  g_string_free(h, TRUE);
  return ok;
}
