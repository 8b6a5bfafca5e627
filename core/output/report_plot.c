/* report_plot.c: the plots of a report: per plot a CSV and a gnuplot script that
 * reads it (both in RUN_DIR/plots/, so users can restyle and rerun them), rendered
 * to SVG and PNG when gnuplot is on PATH; and the per-layer remaining fractions
 * read from the final-round checkpoints. */
#include "report_plot.h"
#include "checkpoint.h"
#include "hash.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

// ----------------------------------------------------------------------------
// Per-layer remaining weights from the checkpoints

typedef struct {
  char *name, *type;
  uint64_t weights_total;
  GArray *remaining, *fraction; /* double, one per run */
} LayerAcc;

static void layer_acc_clear(gpointer p) {
  LayerAcc *a = p;
  g_free(a->name), g_free(a->type);
  g_array_free(a->remaining, TRUE), g_array_free(a->fraction, TRUE);
}

static PrunusModel *load_checkpoint(const PrunusReport *r, const PrunusReportCheckpoint *c,
                                    GError **error) {
  const char *rel = c->path, *hash = c->hash;
  /* summary.json names files inside the run folder; a path out of it is an edit */
  gboolean outside = g_path_is_absolute(rel);
  char **parts = g_strsplit(rel, "/", -1);
  for (char **p = parts; *p && !outside; p++) outside = !strcmp(*p, "..");
  g_strfreev(parts);
  if (outside) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "summary.json names the checkpoint '%s', outside the run folder: not read", rel);
    return NULL;
  }
  char *path = g_build_filename(r->run_dir, rel, NULL);
  /* the file the round wrote, not one put in its place since (another network's) */
  char now[17];
  if (hash && hash[0] && prunus_file_hash64(path, now) && strcmp(now, hash)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: its content hash is not the one summary.json recorded: not read", path);
    g_free(path);
    return NULL;
  }
  PrunusModel *m = prunus_checkpoint_load(path, 1, NULL, NULL, error);
  g_free(path);
  return m;
}

/* Add one run's final model to the accumulators (dense: its round-0 model, may be NULL). */
static void layers_add_run(GArray *acc, const PrunusModel *m, const PrunusModel *dense) {
  gboolean same_layers = dense && dense->n_layers == m->n_layers;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->w_len == 0) continue;
    uint64_t alive = 0;
    for (size_t j = 0; j < l->w_len; j++) alive += m->mask[l->w_off + j] != 0.0f;
    uint64_t total =
        same_layers && dense->layers[i].w_len >= l->w_len ? dense->layers[i].w_len : l->w_len;
    LayerAcc *a = NULL;
    for (guint k = 0; k < acc->len && !a; k++)
      if (!strcmp(g_array_index(acc, LayerAcc, k).name, l->name))
        a = &g_array_index(acc, LayerAcc, k);
    if (!a) {
      LayerAcc fresh = {.name = g_strdup(l->name),
                        .type = g_strdup(l->ops->type_name),
                        .weights_total = total,
                        .remaining = g_array_new(FALSE, FALSE, sizeof(double)),
                        .fraction = g_array_new(FALSE, FALSE, sizeof(double))};
      g_array_append_val(acc, fresh);
      a = &g_array_index(acc, LayerAcc, acc->len - 1);
    }
    double rem = (double)alive, frac = total ? (double)alive / (double)total : NAN;
    g_array_append_val(a->remaining, rem);
    g_array_append_val(a->fraction, frac);
  }
}

void prunus_report_load_layers(PrunusReport *r) {
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    GArray *acc = g_array_new(FALSE, TRUE, sizeof(LayerAcc));
    g_array_set_clear_func(acc, layer_acc_clear);
    int used = 0;
    for (guint i = 0; i < e->runs->len; i++) {
      const PrunusReportRun *run = &g_array_index(e->runs, PrunusReportRun, i);
      GError *err = NULL;
      if (!run->final.path && run->final_round < 0) {
        g_ptr_array_add(r->notes, g_strdup_printf("experiment %s, seed %g: no round recorded, "
                                                  "left out of the per-layer plot",
                                                  e->name, run->seed));
        continue;
      }
      if (!run->final.path) {
        g_ptr_array_add(r->notes, g_strdup_printf("experiment %s, seed %g: no checkpoint for round "
                                                  "%d, left out of the per-layer plot",
                                                  e->name, run->seed, run->final_round));
        continue;
      }
      PrunusModel *m = load_checkpoint(r, &run->final, &err);
      if (!m) {
        g_ptr_array_add(r->notes,
                        g_strdup_printf("experiment %s, seed %g left out of the per-layer "
                                        "plot: %s",
                                        e->name, run->seed, err->message));
        g_error_free(err);
        continue;
      }
      PrunusModel *dense = NULL;
      if (run->dense.path && strcmp(run->dense.path, run->final.path)) {
        dense = load_checkpoint(r, &run->dense, &err);
        if (!dense) {
          g_ptr_array_add(r->notes, g_strdup_printf("experiment %s, seed %g: the per-layer plot "
                                                    "counts the final model's own weights as the "
                                                    "total: %s",
                                                    e->name, run->seed, err->message));
          g_error_free(err);
        }
      }
      layers_add_run(acc, m, dense);
      used++;
      prunus_model_free(dense);
      prunus_model_free(m);
    }
    if (used > 0) {
      r->layers[k] = g_array_new(FALSE, TRUE, sizeof(PrunusReportLayer));
      for (guint i = 0; i < acc->len; i++) {
        LayerAcc *a = &g_array_index(acc, LayerAcc, i);
        PrunusReportLayer l = {
            .name = g_strdup(a->name),
            .type = g_strdup(a->type),
            .weights_total = a->weights_total,
            .remaining =
                prunus_stat_of((double *)(void *)a->remaining->data, (int)a->remaining->len),
            .fraction = prunus_stat_of((double *)(void *)a->fraction->data, (int)a->fraction->len)};
        g_array_append_val(r->layers[k], l);
      }
    }
    g_array_free(acc, TRUE);
  }
}

// ----------------------------------------------------------------------------
// CSV and gnuplot helpers

static void csv_text(GString *out, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    g_string_append(out, s);
    return;
  }
  g_string_append_c(out, '"');
  for (const char *c = s; *c; c++) {
    if (*c == '"') g_string_append_c(out, '"');
    g_string_append_c(out, *c == '\n' || *c == '\r' ? ' ' : *c);
  }
  g_string_append_c(out, '"');
}

/* ",mean,std"; std 0 for one seed so gnuplot keeps the point (empty = missing). */
static void csv_stat(GString *out, PrunusStat s) {
  g_string_append_c(out, ',');
  prunus_report_append_number(out, s.mean);
  g_string_append_c(out, ',');
  if (isfinite(s.mean)) prunus_report_append_number(out, s.n >= 2 && isfinite(s.std) ? s.std : 0.0);
}

/* A gnuplot string expression of single-quoted literals: gnuplot substitutes `command`
 * (runs it) and @macros anywhere but inside single quotes, so text from summary.json (an
 * edited or received run folder) goes there, its quotes doubled; single quotes take no
 * escapes, so a line break is joined in as "\n" ('a'."\n".'b'), a carriage return is a
 * space. */
static void gp_string(GString *out, const char *s) {
  g_string_append_c(out, '\'');
  for (const char *c = s; *c; c++) {
    if (*c == '\n') {
      g_string_append(out, "'.\"\\n\".'");
      continue;
    }
    if (*c == '\'') g_string_append_c(out, '\'');
    g_string_append_c(out, *c == '\r' ? ' ' : *c);
  }
  g_string_append_c(out, '\'');
}

/* Script header: reading the CSV, and the loop that writes name.svg and name.png. */
static void gp_begin(GString *gp, const PrunusReport *r, const char *name, const char *what,
                     int width, int height) {
  g_string_append_printf(
      gp,
      "# %s.gp: %s.\n"
      "# Written by prunus %s from ../summary.json; reads %s.csv next to it.\n"
      "# Render: cd plots && gnuplot %s.gp   (writes %s.svg and %s.png)\n"
      "# `prunus report` rewrites this file: copy it before restyling.\n\n"
      "set datafile separator comma\n"
      "set datafile columnheaders\n"
      "set grid\n"
      "set bmargin %d\n"
      "set offsets 0, 0, graph 0.05, graph 0.05\n"
      "set key outside bottom center horizontal noenhanced box\n\n"
      "do for [fmt in \"svg png\"] {\n"
      "  if (fmt eq \"svg\") {\n"
      "    set terminal svg size %d,%d dynamic noenhanced font \"DejaVu Sans,12\" background \"white\"\n"
      "  } else {\n"
      "    if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
      "      set terminal pngcairo size %d,%d noenhanced font \"DejaVu Sans,11\" background \"white\"\n"
      "    } else {\n"
      "      set terminal png size %d,%d noenhanced background \"white\"\n"
      "    }\n"
      "  }\n"
      "  set output \"%s.\".fmt\n",
      name, what, r->version ? r->version : "?", name, name, name, name,
      /* room for the key below the plot: up to 3 entries per experiment, 2 per row */
      5 + (3 * r->n_exps + 1) / 2, width, height + 20 * r->n_exps, width, height + 20 * r->n_exps,
      width, height + 20 * r->n_exps, name);
}

static void gp_end(GString *gp) { g_string_append(gp, "  unset output\n}\n"); }

static void plot_skip(PrunusReportPlot *p, const char *why) { p->skipped = g_strdup(why); }

// ----------------------------------------------------------------------------
// The plots

enum { PLOT_ACC_COMPRESSION, PLOT_ACC_LATENCY, PLOT_LAYERS };

/* Test accuracy vs compression ratio: a line per experiment, error bars over seeds. */
static void plot_acc_compression(const PrunusReport *r, GString *csv, GString *gp,
                                 PrunusReportPlot *p) {
  g_string_append(csv,
                  "experiment_index,experiment,round,seeds,compression_mean,compression_std,"
                  "test_accuracy_mean,test_accuracy_std\n");
  gp_begin(gp, r, p->name, "test accuracy vs compression ratio (mean ± std over seeds)", 960, 600);
  g_string_append(
      gp,
      "  set title \"Test accuracy vs compression (mean ± std over seeds)\"\n"
      "  set xlabel \"compression ratio: params total / params remaining (log₂ scale)\"\n"
      "  set ylabel \"test accuracy\"\n"
      "  set logscale x 2\n"
      "  set format x \"%g\"\n"
      "  plot \\\n");
  int n_series = 0;
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    int valid = 0;
    for (int i = 0; i < e->n_rows; i++) {
      PrunusStat c = e->rows[i].values[PRUNUS_REPORT_COMPRESSION];
      PrunusStat a = e->rows[i].values[PRUNUS_REPORT_TEST_ACCURACY];
      g_string_append_printf(csv, "%d,", k + 1);
      csv_text(csv, e->name);
      g_string_append_printf(csv, ",%d,%d", e->rows[i].round, e->rows[i].n_seeds);
      csv_stat(csv, c), csv_stat(csv, a);
      g_string_append_c(csv, '\n');
      valid += isfinite(c.mean) && c.mean > 0 && isfinite(a.mean);
    }
    if (!valid) continue;
    g_string_append_printf(gp,
                           "%s    \"%s.csv\" using (column(\"experiment_index\") == %d ? "
                           "column(\"compression_mean\") : NaN):\"test_accuracy_mean\":"
                           "\"test_accuracy_std\" with yerrorlines lw 2 pt 7 ps 0.8 lc %d title ",
                           n_series ? ", \\\n" : "", p->name, k + 1, k + 1);
    gp_string(gp, e->name);
    n_series++;
  }
  g_string_append(gp, "\n");
  gp_end(gp);
  if (!n_series) plot_skip(p, "no round has both a test accuracy and a compression ratio");
}

/* Test accuracy vs measured latency: a panel per batch size, a line per experiment
 * and engine (shrunk solid, dense-with-zeros dashed, sparse dotted). */
static void plot_acc_latency(const PrunusReport *r, GString *csv, GString *gp,
                             PrunusReportPlot *p) {
  g_string_append(csv,
                  "experiment_index,experiment,round,engine,batch,seeds,latency_us_mean,"
                  "latency_us_std,test_accuracy_mean,test_accuracy_std\n");
  GArray *batches = g_array_new(FALSE, FALSE, sizeof(int));
  for (int m = PRUNUS_REPORT_N_FIXED; m < r->n_metrics; m++) {
    const char *b = strstr(r->metrics[m].key, "_b");
    int batch = b ? atoi(b + 2) : 0;
    if (batch <= 0) continue;
    gboolean known = FALSE;
    for (guint i = 0; i < batches->len && !known; i++)
      known = g_array_index(batches, int, i) == batch;
    if (!known) g_array_append_val(batches, batch);
  }
  int n_panels = (int)batches->len;
  gp_begin(gp, r, p->name, "test accuracy vs measured forward latency (mean ± std over seeds)",
           n_panels > 1 ? 640 * n_panels : 960, 600);
  g_string_append_printf(gp,
                         "  set multiplot layout 1,%d title \"Test accuracy vs measured "
                         "latency (shrunk: solid, dense with zeros: dashed, sparse: dotted)\"\n"
                         "  set xrange [0:*]\n"
                         "  set ylabel \"test accuracy\"\n",
                         n_panels > 0 ? n_panels : 1);
  int n_series = 0;
  for (int bi = 0; bi < n_panels; bi++) {
    int batch = g_array_index(batches, int, bi);
    int panel_series = 0;
    g_string_append_printf(gp,
                           "  set title \"batch %d\"\n"
                           "  set xlabel \"median forward latency, batch %d (µs)\"\n"
                           "  plot \\\n",
                           batch, batch);
    for (int m = PRUNUS_REPORT_N_FIXED; m < r->n_metrics; m++) {
      const char *key = r->metrics[m].key;
      const char *b = strstr(key, "_b");
      if (!b || atoi(b + 2) != batch) continue;
      char *engine = g_strndup(key, (size_t)(b - key));
      int dt = !strcmp(engine, "shrunk")   ? 1
               : !strcmp(engine, "dense")  ? 2
               : !strcmp(engine, "sparse") ? 3
                                           : 4;
      int pt = dt == 1 ? 7 : dt == 2 ? 6 : dt == 3 ? 5 : 9;
      for (int k = 0; k < r->n_exps; k++) {
        const PrunusReportExperiment *e = &r->exps[k];
        int valid = 0;
        for (int i = 0; i < e->n_rows; i++) {
          PrunusStat l = e->rows[i].values[m], a = e->rows[i].values[PRUNUS_REPORT_TEST_ACCURACY];
          g_string_append_printf(csv, "%d,", k + 1);
          csv_text(csv, e->name);
          g_string_append_printf(csv, ",%d,", e->rows[i].round);
          csv_text(csv, engine);
          g_string_append_printf(csv, ",%d,%d", batch, e->rows[i].n_seeds);
          csv_stat(csv, l), csv_stat(csv, a);
          g_string_append_c(csv, '\n');
          valid += isfinite(l.mean) && l.mean > 0 && isfinite(a.mean);
        }
        if (!valid) continue;
        g_string_append_printf(gp,
                               "%s    \"%s.csv\" using (column(\"experiment_index\") == %d && "
                               "strcol(\"engine\") eq ",
                               panel_series ? ", \\\n" : "", p->name, k + 1);
        gp_string(gp, engine);
        g_string_append_printf(gp,
                               " && column(\"batch\") == %d ? column(\"latency_us_mean\") : NaN):"
                               "\"test_accuracy_mean\":\"latency_us_std\":\"test_accuracy_std\" "
                               "with xyerrorlines lw 2 dt %d pt %d ps 0.8 lc %d title ",
                               batch, dt, pt, k + 1);
        char *title = g_strdup_printf("%s, %s", e->name, engine);
        gp_string(gp, title);
        g_free(title);
        panel_series++;
      }
      g_free(engine);
    }
    if (!panel_series) g_string_append(gp, "    NaN notitle");
    g_string_append(gp, "\n");
    n_series += panel_series;
  }
  g_string_append(gp, "  unset multiplot\n");
  gp_end(gp);
  g_array_free(batches, TRUE);
  if (!n_series) plot_skip(p, "summary.json holds no measured latency with a test accuracy");
}

/* Remaining-weight fraction per layer in the final round: grouped bars, one colour
 * per experiment, error bars over seeds. */
static void plot_layers(const PrunusReport *r, GString *csv, GString *gp, PrunusReportPlot *p) {
  g_string_append(csv,
                  "experiment_index,experiment,final_round,seeds,layer_position,layer,type,"
                  "weights_total,weights_remaining_mean,weights_remaining_std,"
                  "fraction_mean,fraction_std\n");
  /* x positions: the union of layer names in order of appearance */
  GPtrArray *names = g_ptr_array_new(), *labels = g_ptr_array_new_with_free_func(g_free);
  int n_with = 0;
  for (int k = 0; k < r->n_exps; k++) {
    if (!r->layers[k]) continue;
    n_with++;
    for (guint i = 0; i < r->layers[k]->len; i++) {
      const PrunusReportLayer *l = &g_array_index(r->layers[k], PrunusReportLayer, i);
      gboolean known = FALSE;
      for (guint j = 0; j < names->len && !known; j++)
        known = !strcmp(g_ptr_array_index(names, j), l->name);
      if (known) continue;
      g_ptr_array_add(names, l->name);
      g_ptr_array_add(labels, g_strdup_printf("layer %s: %s\n%" G_GUINT64_FORMAT " weights",
                                              l->name, l->type, l->weights_total));
    }
  }
  gp_begin(gp, r, p->name, "remaining-weight fraction per layer, final round of each experiment",
           960, 600);
  g_string_append_printf(gp,
                         "  n_exp = %d\n"
                         "  bw = 0.8 / n_exp\n"
                         "  set title \"Remaining weights per layer after the final round "
                         "(mean ± std over seeds)\"\n"
                         "  set ylabel \"fraction of the dense layer's weights remaining\"\n"
                         "  set yrange [0:1.05]\n"
                         "  set xrange [-0.5:%g]\n"
                         "  set boxwidth bw absolute\n"
                         "  set style fill solid 0.7 border -1\n"
                         "  set grid noxtics ytics\n"
                         "  set xtics nomirror\n"
                         "  set xtics (",
                         n_with > 0 ? n_with : 1, names->len - 0.5);
  for (guint j = 0; j < labels->len; j++) {
    g_string_append(gp, j ? ", " : "");
    gp_string(gp, (const char *)g_ptr_array_index(labels, j));
    g_string_append_printf(gp, " %u", j);
  }
  g_string_append(gp, ")\n  plot \\\n");
  int series = 0;
  for (int k = 0; k < r->n_exps; k++) {
    if (!r->layers[k]) continue;
    const PrunusReportExperiment *e = &r->exps[k];
    int final_round = -1;
    for (guint i = 0; i < e->runs->len; i++)
      final_round = MAX(final_round, g_array_index(e->runs, PrunusReportRun, i).final_round);
    for (guint i = 0; i < r->layers[k]->len; i++) {
      const PrunusReportLayer *l = &g_array_index(r->layers[k], PrunusReportLayer, i);
      guint pos = 0;
      while (strcmp(g_ptr_array_index(names, pos), l->name)) pos++;
      g_string_append_printf(csv, "%d,", k + 1);
      csv_text(csv, e->name);
      g_string_append_printf(csv, ",%d,%d,%u,", final_round, l->fraction.n, pos);
      csv_text(csv, l->name);
      g_string_append_c(csv, ',');
      csv_text(csv, l->type);
      g_string_append_printf(csv, ",%" G_GUINT64_FORMAT, l->weights_total);
      csv_stat(csv, l->remaining), csv_stat(csv, l->fraction);
      g_string_append_c(csv, '\n');
    }
    g_string_append_printf(gp,
                           "%s    \"%s.csv\" using (column(\"experiment_index\") == %d ? "
                           "column(\"layer_position\") + (%d - (n_exp + 1) / 2.0) * bw : NaN):"
                           "\"fraction_mean\":\"fraction_std\" with boxerrorbars lc %d title ",
                           series ? ", \\\n" : "", p->name, k + 1, series + 1, k + 1);
    char *title = g_strdup_printf("%s (round %d)", e->name, final_round);
    gp_string(gp, title);
    g_free(title);
    series++;
  }
  g_string_append(gp, "\n");
  gp_end(gp);
  g_ptr_array_free(labels, TRUE);
  g_ptr_array_free(names, TRUE);
  if (!series) plot_skip(p, "no final-round checkpoint could be read");
}

// ----------------------------------------------------------------------------
// Rendering

static gboolean file_nonempty(const char *dir, const char *name, const char *ext) {
  char *file = g_strdup_printf("%s.%s", name, ext);
  char *path = g_build_filename(dir, file, NULL);
  GStatBuf st;
  gboolean ok = g_stat(path, &st) == 0 && st.st_size > 0;
  g_free(path);
  g_free(file);
  return ok;
}

static void remove_output(const char *dir, const char *name, const char *ext) {
  char *file = g_strdup_printf("%s.%s", name, ext);
  char *path = g_build_filename(dir, file, NULL);
  g_unlink(path);
  g_free(path);
  g_free(file);
}

static gboolean render(const char *gnuplot, const char *dir, const char *name, GError **error) {
  char *script = g_strdup_printf("%s.gp", name);
  char *argv[] = {(char *)gnuplot, script, NULL};
  char *out = NULL, *err = NULL;
  int status = 0;
  GError *local = NULL;
  gboolean ok =
      g_spawn_sync(dir, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &local);
  if (!ok) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot run %s on %s/%s: %s", gnuplot, dir,
                script, local->message);
    g_error_free(local);
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s failed on %s/%s (wait status %d): %s",
                gnuplot, dir, script, status, err && *err ? g_strstrip(err) : "no message");
    ok = FALSE;
  }
  g_free(out);
  g_free(err);
  g_free(script);
  return ok;
}

gboolean prunus_report_write_plots(PrunusReport *r, PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS],
                                   gboolean *gnuplot_found, GError **error) {
  static const struct {
    const char *name, *title;
    void (*build)(const PrunusReport *, GString *, GString *, PrunusReportPlot *);
  } table[PRUNUS_REPORT_N_PLOTS] = {
      [PLOT_ACC_COMPRESSION] = {"acc_vs_compression", "Test accuracy vs compression ratio",
                                plot_acc_compression},
      [PLOT_ACC_LATENCY] = {"acc_vs_latency", "Test accuracy vs measured latency",
                            plot_acc_latency},
      [PLOT_LAYERS] = {"layers_final", "Remaining weights per layer, final round", plot_layers},
  };
  char *dir = g_build_filename(r->run_dir, "plots", NULL);
  char *gnuplot = g_find_program_in_path("gnuplot");
  *gnuplot_found = gnuplot != NULL;
  gboolean ok = TRUE;
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot create %s: %s", dir,
                g_strerror(errno));
    ok = FALSE;
  }
  for (int i = 0; ok && i < PRUNUS_REPORT_N_PLOTS; i++) {
    PrunusReportPlot *p = &plots[i];
    *p = (PrunusReportPlot){.name = table[i].name, .title = table[i].title};
    GString *csv = g_string_new(NULL), *gp = g_string_new(NULL);
    table[i].build(r, csv, gp, p);
    remove_output(dir, p->name, "svg");
    remove_output(dir, p->name, "png");
    if (!p->skipped) {
      char *csv_name = g_strdup_printf("plots/%s.csv", p->name);
      char *gp_name = g_strdup_printf("plots/%s.gp", p->name);
      ok = prunus_report_write_file(r->run_dir, csv_name, csv, error) &&
           prunus_report_write_file(r->run_dir, gp_name, gp, error);
      g_free(gp_name);
      g_free(csv_name);
      p->written = ok;
      if (ok && gnuplot) ok = render(gnuplot, dir, p->name, error);
      p->rendered =
          ok && (file_nonempty(dir, p->name, "svg") || file_nonempty(dir, p->name, "png"));
    } else {
      remove_output(dir, p->name, "csv");
      remove_output(dir, p->name, "gp");
      g_ptr_array_add(r->notes, g_strdup_printf("plot %s skipped: %s", p->name, p->skipped));
    }
    g_string_free(gp, TRUE);
    g_string_free(csv, TRUE);
  }
  g_free(gnuplot);
  g_free(dir);
  return ok;
}
