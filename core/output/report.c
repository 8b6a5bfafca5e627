/* report.c: reads summary.json into per-experiment, per-round statistics over
 * seeds, writes summary.csv and summary.md, and drives the plots and report.html
 * (`prunus report RUN_DIR` and the end of `prunus run`). */
#include "report.h"
#include "json.h"
#include "report_html.h"
#include "report_plot.h"
#include "rundir.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// Metric columns

static const struct {
  const char *key, *title;
  int digits;
} fixed_metrics[PRUNUS_REPORT_N_FIXED] = {
    [PRUNUS_REPORT_SPARSITY] = {"sparsity", "sparsity", 4},
    [PRUNUS_REPORT_PARAMS] = {"params_remaining", "params nonzero", 0},
    [PRUNUS_REPORT_COMPRESSION] = {"compression", "compression", 2},
    [PRUNUS_REPORT_SPEEDUP] = {"speedup_theoretical", "speedup (theor.)", 2},
    [PRUNUS_REPORT_TEST_ACCURACY] = {"test_accuracy", "test acc", 4},
};

/* "<engine>_b<batch>" -> batch and an engine rank (dense, shrunk, sparse, other). */
static int latency_batch(const char *key) {
  const char *b = strstr(key, "_b");
  if (!b || !g_ascii_isdigit(b[2])) return INT_MAX;
  char *end = NULL;
  long v = strtol(b + 2, &end, 10);
  return *end || v > INT_MAX ? INT_MAX : (int)v;
}

static int engine_rank(const char *key) {
  static const char *order[] = {"dense_", "shrunk_", "sparse_"};
  for (int i = 0; i < 3; i++)
    if (g_str_has_prefix(key, order[i])) return i;
  return 3;
}

static gint latency_key_cmp(gconstpointer a, gconstpointer b) {
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  int bx = latency_batch(x), by = latency_batch(y);
  if (bx != by) return bx < by ? -1 : 1;
  int rx = engine_rank(x), ry = engine_rank(y);
  if (rx != ry) return rx - ry;
  return strcmp(x, y);
}

static void metrics_build(PrunusReport *r, GPtrArray *latency_keys) {
  g_ptr_array_sort(latency_keys, latency_key_cmp);
  r->n_metrics = PRUNUS_REPORT_N_FIXED + (int)latency_keys->len;
  r->metrics = g_new0(PrunusReportMetric, r->n_metrics);
  for (int i = 0; i < PRUNUS_REPORT_N_FIXED; i++) {
    r->metrics[i] = (PrunusReportMetric){.key = g_strdup(fixed_metrics[i].key),
                                         .csv = g_strdup(fixed_metrics[i].key),
                                         .title = g_strdup(fixed_metrics[i].title),
                                         .digits = fixed_metrics[i].digits};
  }
  for (guint i = 0; i < latency_keys->len; i++) {
    const char *k = g_ptr_array_index(latency_keys, i);
    char *spaced = g_strdup(k);
    g_strdelimit(spaced, "_", ' ');
    r->metrics[PRUNUS_REPORT_N_FIXED + i] =
        (PrunusReportMetric){.key = g_strdup(k),
                             .latency = TRUE,
                             .csv = g_strdup_printf("latency_%s_us", k),
                             .title = g_strdup_printf("%s (µs)", spaced),
                             .digits = 1};
    g_free(spaced);
  }
}

static double number_of(const PrunusJson *o, const char *key) {
  const PrunusJson *v = o ? prunus_json_get(o, key) : NULL;
  return v && prunus_json_type(v) == PRUNUS_JSON_NUMBER ? prunus_json_number(v) : NAN;
}

static const char *string_of(const PrunusJson *o, const char *key) {
  const PrunusJson *v = prunus_json_get(o, key);
  return v && prunus_json_type(v) == PRUNUS_JSON_STRING ? prunus_json_string(v) : NULL;
}

static double metric_of(const PrunusReportMetric *m, const PrunusJson *round) {
  if (!m->latency) return number_of(round, m->key);
  const PrunusJson *lat = prunus_json_get(round, "latency_us");
  return lat && prunus_json_type(lat) == PRUNUS_JSON_OBJECT ? number_of(lat, m->key) : NAN;
}

// ----------------------------------------------------------------------------
// Loading summary.json

/* Check the shape the report relies on; collect the latency keys. */
static gboolean check_summary(const PrunusJson *root, const char *path, GPtrArray *latency_keys,
                              GError **error) {
  const PrunusJson *exps =
      prunus_json_type(root) == PRUNUS_JSON_OBJECT ? prunus_json_get(root, "experiments") : NULL;
  if (!exps || prunus_json_type(exps) != PRUNUS_JSON_ARRAY) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: expected an object with an \"experiments\" array (is this a prunus run "
                "folder?)",
                path);
    return FALSE;
  }
  GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
  gboolean ok = FALSE;
  for (size_t i = 0; i < prunus_json_length(exps); i++) {
    const PrunusJson *e = prunus_json_index(exps, i);
    const PrunusJson *rounds =
        prunus_json_type(e) == PRUNUS_JSON_OBJECT ? prunus_json_get(e, "rounds") : NULL;
    if (prunus_json_type(e) != PRUNUS_JSON_OBJECT || !string_of(e, "name")) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: experiments[%zu] is not an object with a \"name\" string", path, i);
      goto out;
    }
    if (!rounds || prunus_json_type(rounds) != PRUNUS_JSON_ARRAY) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: experiments[%zu] (\"%s\") has no \"rounds\" array", path, i,
                  string_of(e, "name"));
      goto out;
    }
    /* the same experiment twice would count as two seeds */
    for (size_t k = 0; k < i; k++) {
      const PrunusJson *o = prunus_json_index(exps, k);
      if (!strcmp(string_of(o, "name"), string_of(e, "name")) &&
          number_of(o, "seed") == number_of(e, "seed")) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                    "%s: experiments[%zu] repeats the name \"%s\" and seed of experiments[%zu]",
                    path, i, string_of(e, "name"), k);
        goto out;
      }
    }
    for (size_t j = 0; j < prunus_json_length(rounds); j++) {
      const PrunusJson *rd = prunus_json_index(rounds, j);
      if (prunus_json_type(rd) != PRUNUS_JSON_OBJECT || !isfinite(number_of(rd, "round"))) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                    "%s: experiments[%zu].rounds[%zu] is not an object with a \"round\" number",
                    path, i, j);
        goto out;
      }
      /* prunus lists rounds 0, 1, ... in order: anything else would merge or drop rows */
      if (number_of(rd, "round") != (double)j) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                    "%s: experiments[%zu].rounds[%zu].round = %g, expected %zu (rounds are "
                    "listed in order from 0)",
                    path, i, j, number_of(rd, "round"), j);
        goto out;
      }
      /* the table's numbers: a number, or null where a round has none */
      for (int m = 0; m < PRUNUS_REPORT_N_FIXED; m++) {
        const PrunusJson *v = prunus_json_get(rd, fixed_metrics[m].key);
        double x = v && prunus_json_type(v) == PRUNUS_JSON_NUMBER ? prunus_json_number(v) : NAN;
        gboolean bad = v && prunus_json_type(v) != PRUNUS_JSON_NUMBER &&
                       prunus_json_type(v) != PRUNUS_JSON_NULL;
        gboolean fraction = m == PRUNUS_REPORT_SPARSITY || m == PRUNUS_REPORT_TEST_ACCURACY;
        if (!bad && !isnan(x)) bad = fraction ? !(x >= 0.0 && x <= 1.0) : !(x >= 0.0 && x <= 1e15);
        if (bad) {
          g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                      "%s: experiments[%zu].rounds[%zu].%s: expected %s or null", path, i, j,
                      fixed_metrics[m].key,
                      fraction ? "a number in [0, 1]" : "a number in [0, 1e15]");
          goto out;
        }
      }
      const PrunusJson *lat = prunus_json_get(rd, "latency_us");
      if (!lat || prunus_json_type(lat) != PRUNUS_JSON_OBJECT) continue;
      for (size_t k = 0; k < prunus_json_length(lat); k++) {
        const char *key = prunus_json_key(lat, k);
        if (!g_hash_table_contains(seen, key)) {
          g_hash_table_add(seen, (char *)key);
          g_ptr_array_add(latency_keys, (char *)key);
        }
      }
    }
  }
  ok = TRUE;
out:
  g_hash_table_destroy(seen);
  return ok;
}

static gint int_cmp(gconstpointer a, gconstpointer b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static const PrunusJson *round_with(const PrunusJson *rounds, int round) {
  for (size_t j = 0; j < prunus_json_length(rounds); j++) {
    const PrunusJson *rd = prunus_json_index(rounds, j);
    if ((int)number_of(rd, "round") == round) return rd;
  }
  return NULL;
}

static char *dup_string_of(const PrunusJson *o, const char *key) {
  return g_strdup(string_of(o, key));
}

static void checkpoint_clear(PrunusReportCheckpoint *c) {
  g_clear_pointer(&c->path, g_free);
  g_clear_pointer(&c->hash, g_free);
}

/* c = round rd's checkpoint and its hash, as recorded. */
static void checkpoint_set(PrunusReportCheckpoint *c, const PrunusJson *rd) {
  checkpoint_clear(c);
  c->path = dup_string_of(rd, "checkpoint");
  c->hash = dup_string_of(rd, "checkpoint_hash");
}

/* The rows of one experiment from its runs (the JSON objects of each seed). */
static void experiment_build(PrunusReport *r, PrunusReportExperiment *e, GPtrArray *runs) {
  GArray *round_ids = g_array_new(FALSE, FALSE, sizeof(int));
  for (guint i = 0; i < runs->len; i++) {
    const PrunusJson *run = g_ptr_array_index(runs, i);
    const PrunusJson *rounds = prunus_json_get(run, "rounds");
    PrunusReportRun rr = {.seed = number_of(run, "seed"), .final_round = -1};
    for (size_t j = 0; j < prunus_json_length(rounds); j++) {
      const PrunusJson *rd = prunus_json_index(rounds, j);
      int id = (int)number_of(rd, "round");
      gboolean known = FALSE;
      for (guint k = 0; k < round_ids->len && !known; k++)
        known = g_array_index(round_ids, int, k) == id;
      if (!known) g_array_append_val(round_ids, id);
      if (id >= rr.final_round) {
        rr.final_round = id;
        checkpoint_set(&rr.final, rd);
      }
      if (id == 0 && !rr.dense.path) checkpoint_set(&rr.dense, rd);
    }
    g_array_append_val(e->runs, rr);
  }
  g_array_sort(round_ids, int_cmp);
  e->n_rows = (int)round_ids->len;
  e->rows = g_new0(PrunusReportRow, e->n_rows);
  double *x = g_new(double, runs->len);
  for (int k = 0; k < e->n_rows; k++) {
    PrunusReportRow *row = &e->rows[k];
    row->round = g_array_index(round_ids, int, k);
    row->values = g_new(PrunusStat, r->n_metrics);
    for (int m = 0; m < r->n_metrics; m++) {
      int n = 0;
      for (guint i = 0; i < runs->len; i++) {
        const PrunusJson *rd =
            round_with(prunus_json_get(g_ptr_array_index(runs, i), "rounds"), row->round);
        if (rd) x[n++] = metric_of(&r->metrics[m], rd);
      }
      row->n_seeds = n;
      row->values[m] = prunus_stat_of(x, n);
    }
  }
  g_free(x);
  g_array_free(round_ids, TRUE);
}

static void run_clear(gpointer p) {
  PrunusReportRun *rr = p;
  checkpoint_clear(&rr->final);
  checkpoint_clear(&rr->dense);
}

/* How an unfinished run stands, from its status (and the folder's lock while it says
 * "running"); NULL when it finished or its summary predates the status. (transfer full) */
static char *unfinished_text(const PrunusJson *root, const char *run_dir) {
  const char *message = NULL;
  const char *status = prunus_rundir_summary_status(root, &message);
  if (!status || !strcmp(status, PRUNUS_RUN_FINISHED)) return NULL;
  if (!strcmp(status, PRUNUS_RUN_RUNNING)) {
    int pid = prunus_rundir_lock_holder(run_dir);
    if (pid > 0) return g_strdup_printf("prunus (process %d) is still running it.", pid);
    if (pid < 0) return g_strdup("a prunus process is still running it.");
    return g_strdup(
        "the process that ran it stopped without recording why (killed, or its disk filled "
        "up); rerunning the same command resumes after the last finished round.");
  }
  if (!strcmp(status, PRUNUS_RUN_FAILED))
    return g_strdup_printf(
        "it failed: %s. Rerunning the same command resumes after the last "
        "finished round.",
        message ? message : "(no message recorded)");
  if (!strcmp(status, PRUNUS_RUN_INTERRUPTED))
    return g_strdup_printf(
        "it was %s. Rerunning the same command resumes after the last "
        "finished round.",
        message ? message : "interrupted");
  return g_strdup_printf("its status is \"%s\".", status);
}

/* (transfer full) The report data of run_dir; errors name summary.json. */
static PrunusReport *report_load(const char *run_dir, GError **error) {
  char *path = g_build_filename(run_dir, "summary.json", NULL);
  char *text = NULL;
  size_t len = 0;
  GError *local = NULL;
  PrunusReport *r = NULL;
  PrunusJson *root = NULL;
  if (!g_file_get_contents(path, &text, &len, &local)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO,
                "%s (is %s a folder written by `prunus run`?)", local->message, run_dir);
    g_error_free(local);
    goto out_free_path;
  }
  root = prunus_json_parse(text, len, &local);
  if (!root) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT, "%s: %s", path, local->message);
    g_error_free(local);
    goto out_free_text;
  }
  GPtrArray *latency_keys = g_ptr_array_new();
  if (!check_summary(root, path, latency_keys, error)) {
    g_ptr_array_free(latency_keys, TRUE);
    goto out_free_root;
  }
  r = g_new0(PrunusReport, 1);
  r->run_dir = g_strdup(run_dir);
  r->version = dup_string_of(root, "prunus_version");
  r->config_path = dup_string_of(root, "config");
  r->notes = g_ptr_array_new_with_free_func(g_free);
  r->unfinished = unfinished_text(root, run_dir);
  char *cfg_path = g_build_filename(run_dir, "config.cfg", NULL);
  if (!g_file_get_contents(cfg_path, &r->config_text, NULL, NULL)) r->config_text = NULL;
  g_free(cfg_path);
  metrics_build(r, latency_keys);
  g_ptr_array_free(latency_keys, TRUE);

  /* group the runs by experiment name, in order of first appearance */
  const PrunusJson *exps = prunus_json_get(root, "experiments");
  GPtrArray *names = g_ptr_array_new();
  GHashTable *groups =
      g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
  for (size_t i = 0; i < prunus_json_length(exps); i++) {
    const PrunusJson *e = prunus_json_index(exps, i);
    const char *name = string_of(e, "name");
    GPtrArray *runs = g_hash_table_lookup(groups, name);
    if (!runs) {
      runs = g_ptr_array_new();
      g_hash_table_insert(groups, (char *)name, runs);
      g_ptr_array_add(names, (char *)name);
    }
    g_ptr_array_add(runs, (gpointer)e);
  }
  r->n_exps = (int)names->len;
  r->exps = g_new0(PrunusReportExperiment, r->n_exps);
  r->layers = g_new0(GArray *, r->n_exps);
  for (int k = 0; k < r->n_exps; k++) {
    GPtrArray *runs = g_hash_table_lookup(groups, g_ptr_array_index(names, k));
    const PrunusJson *first = g_ptr_array_index(runs, 0);
    PrunusReportExperiment *e = &r->exps[k];
    e->name = dup_string_of(first, "name");
    e->criterion = dup_string_of(first, "criterion");
    e->granularity = dup_string_of(first, "granularity");
    e->retrain = dup_string_of(first, "retrain");
    e->masks_from = dup_string_of(first, "masks_from");
    e->latency_method = dup_string_of(first, "latency_method");
    e->runs = g_array_new(FALSE, TRUE, sizeof(PrunusReportRun));
    g_array_set_clear_func(e->runs, run_clear);
    experiment_build(r, e, runs);
  }
  g_hash_table_destroy(groups);
  g_ptr_array_free(names, TRUE);

out_free_root:
  prunus_json_free(root);
out_free_text:
  g_free(text);
out_free_path:
  g_free(path);
  return r;
}

static void layer_clear(gpointer p) {
  PrunusReportLayer *l = p;
  g_free(l->name);
  g_free(l->type);
}

static void report_free(PrunusReport *r) {
  if (!r) return;
  for (int k = 0; k < r->n_exps; k++) {
    PrunusReportExperiment *e = &r->exps[k];
    for (int i = 0; i < e->n_rows; i++) g_free(e->rows[i].values);
    g_free(e->rows);
    g_array_free(e->runs, TRUE);
    g_free(e->name), g_free(e->criterion), g_free(e->granularity), g_free(e->retrain);
    g_free(e->masks_from), g_free(e->latency_method);
    if (r->layers[k]) {
      g_array_set_clear_func(r->layers[k], layer_clear);
      g_array_free(r->layers[k], TRUE);
    }
  }
  g_free(r->exps);
  g_free(r->layers);
  for (int m = 0; m < r->n_metrics; m++)
    g_free(r->metrics[m].key), g_free(r->metrics[m].csv), g_free(r->metrics[m].title);
  g_free(r->metrics);
  g_ptr_array_free(r->notes, TRUE);
  g_free(r->config_text);
  g_free(r->unfinished);
  g_free(r->version);
  g_free(r->config_path);
  g_free(r->run_dir);
  g_free(r);
}

// ----------------------------------------------------------------------------
// summary.csv and summary.md

static void csv_field(GString *out, const char *s) {
  if (!s) s = "";
  if (!strpbrk(s, ",\"\r\n")) {
    g_string_append(out, s);
    return;
  }
  g_string_append_c(out, '"');
  for (const char *c = s; *c; c++) {
    if (*c == '"') g_string_append_c(out, '"');
    g_string_append_c(out, *c);
  }
  g_string_append_c(out, '"');
}

static GString *summary_csv(const PrunusReport *r) {
  GString *s = g_string_new("experiment,criterion,granularity,retrain,round,seeds");
  for (int m = 0; m < r->n_metrics; m++)
    g_string_append_printf(s, ",%s_mean,%s_std", r->metrics[m].csv, r->metrics[m].csv);
  g_string_append_c(s, '\n');
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    for (int i = 0; i < e->n_rows; i++) {
      const PrunusReportRow *row = &e->rows[i];
      csv_field(s, e->name), g_string_append_c(s, ',');
      csv_field(s, e->criterion), g_string_append_c(s, ',');
      csv_field(s, e->granularity), g_string_append_c(s, ',');
      csv_field(s, e->retrain);
      g_string_append_printf(s, ",%d,%d", row->round, row->n_seeds);
      for (int m = 0; m < r->n_metrics; m++) {
        g_string_append_c(s, ',');
        prunus_report_append_number(s, row->values[m].mean);
        g_string_append_c(s, ',');
        if (row->values[m].n >= 2) prunus_report_append_number(s, row->values[m].std);
      }
      g_string_append_c(s, '\n');
    }
  }
  return s;
}

static void md_text(GString *out, const char *s) {
  for (const char *c = s ? s : ""; *c; c++) {
    if (strchr("|\\`*_<>[]", *c)) g_string_append_c(out, '\\');
    g_string_append_c(out, *c == '\n' ? ' ' : *c);
  }
}

static void append_seeds(GString *out, const PrunusReportExperiment *e) {
  for (guint i = 0; i < e->runs->len; i++) {
    g_string_append(out, i ? ", " : "");
    prunus_report_append_number(out, g_array_index(e->runs, PrunusReportRun, i).seed);
  }
}

static GString *summary_md(const PrunusReport *r, const PrunusReportPlot *plots) {
  GString *s = g_string_new("# prunus report");
  if (r->config_path) g_string_append(s, ": "), md_text(s, r->config_path);
  g_string_append_printf(s,
                         "\n\nprunus %s. Each cell is the mean ± sample standard deviation over "
                         "the seeds (a bare value: one seed). Latency is the median forward time "
                         "in microseconds: *dense* keeps the unpruned layout with zeros in place, "
                         "*shrunk* runs with the dead units removed.\n\n",
                         r->version ? r->version : "(unknown version)");
  if (r->unfinished)
    g_string_append(s, "> **Unfinished run**: "), md_text(s, r->unfinished),
        g_string_append(s, "\n\n");
  const char *method = prunus_report_common_latency_method(r);
  if (method)
    g_string_append(s, "Latency measurement: "), md_text(s, method), g_string_append(s, ".\n\n");
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    g_string_append(s, "- **"), md_text(s, e->name), g_string_append(s, "**: ");
    if (e->masks_from) {
      g_string_append(s, "the masks of "), md_text(s, e->masks_from);
      g_string_append(s, ", retrain "), md_text(s, e->retrain ? e->retrain : "?");
    } else if (e->criterion) {
      g_string_append(s, "criterion "), md_text(s, e->criterion);
      g_string_append(s, ", granularity "), md_text(s, e->granularity ? e->granularity : "?");
      g_string_append(s, ", retrain "), md_text(s, e->retrain ? e->retrain : "?");
    } else {
      g_string_append(s, "trained, not pruned");
    }
    g_string_append(s, "; seeds ");
    append_seeds(s, e);
    if (e->latency_method && !prunus_report_common_latency_method(r))
      g_string_append(s, "; latency "), md_text(s, e->latency_method);
    g_string_append_c(s, '\n');
  }
  g_string_append(s, "\n| experiment | round | seeds |");
  for (int m = 0; m < r->n_metrics; m++) g_string_append_printf(s, " %s |", r->metrics[m].title);
  g_string_append(s, "\n|---|--:|--:|");
  for (int m = 0; m < r->n_metrics; m++) g_string_append(s, "--:|");
  g_string_append_c(s, '\n');
  for (int k = 0; k < r->n_exps; k++) {
    const PrunusReportExperiment *e = &r->exps[k];
    for (int i = 0; i < e->n_rows; i++) {
      g_string_append(s, "| "), md_text(s, e->name);
      g_string_append_printf(s, " | %d | %d |", e->rows[i].round, e->rows[i].n_seeds);
      for (int m = 0; m < r->n_metrics; m++) {
        char *cell = prunus_stat_format(e->rows[i].values[m], r->metrics[m].digits);
        g_string_append_printf(s, " %s |", cell);
        g_free(cell);
      }
      g_string_append_c(s, '\n');
    }
  }
  g_string_append(s, "\n## Plots\n\n");
  for (int p = 0; p < PRUNUS_REPORT_N_PLOTS; p++) {
    if (plots[p].rendered)
      g_string_append_printf(s, "![%s](plots/%s.svg)\n\n", plots[p].title, plots[p].name);
    else if (plots[p].written)
      g_string_append_printf(s,
                             "- %s: not rendered; data `plots/%s.csv`, script `plots/%s.gp` "
                             "(`cd plots && gnuplot %s.gp`)\n",
                             plots[p].title, plots[p].name, plots[p].name, plots[p].name);
    else
      g_string_append_printf(s, "- %s: skipped (%s)\n", plots[p].title, plots[p].skipped);
  }
  if (r->notes->len) g_string_append(s, "\n## Notes\n\n");
  for (guint i = 0; i < r->notes->len; i++)
    g_string_append_printf(s, "- %s\n", (const char *)g_ptr_array_index(r->notes, i));
  return s;
}

// ----------------------------------------------------------------------------
// Entry points

/* Whether a file can be made in dir (made when missing), tried with a temporary file
 * removed at once: the outputs are written one after another, and a folder that refuses
 * the later ones (read-only plots/) would leave them out of step with the first. */
static gboolean can_write_in(const char *dir, GError **error) {
  char *tmpl = g_build_filename(dir, ".prunus-report-XXXXXX", NULL);
  int fd = g_mkdir_with_parents(dir, 0755) == 0 ? g_mkstemp(tmpl) : -1;
  int e = errno;
  if (fd >= 0) {
    close(fd);
    g_unlink(tmpl);
  } else {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write in %s: %s; nothing was changed",
                dir, g_strerror(e));
  }
  g_free(tmpl);
  return fd >= 0;
}

gboolean prunus_report_write(const char *run_dir, GError **error) {
  PrunusReport *r = report_load(run_dir, error);
  if (!r) return FALSE;
  char *plots_dir = g_build_filename(run_dir, "plots", NULL);
  gboolean writable = can_write_in(run_dir, error) && can_write_in(plots_dir, error);
  g_free(plots_dir);
  if (!writable) {
    report_free(r);
    return FALSE;
  }
  PrunusReportPlot plots[PRUNUS_REPORT_N_PLOTS] = {{0}};
  gboolean gnuplot_found = FALSE;
  prunus_report_load_layers(r);
  GString *csv = summary_csv(r), *md = NULL;
  gboolean ok = prunus_report_write_file(run_dir, "summary.csv", csv, error) &&
                prunus_report_write_plots(r, plots, &gnuplot_found, error);
  if (ok) {
    md = summary_md(r, plots);
    ok = prunus_report_write_file(run_dir, "summary.md", md, error) &&
         prunus_report_write_html(r, plots, gnuplot_found, error);
  }
  if (ok) {
    if (!gnuplot_found)
      g_printerr(
          "prunus: note: gnuplot is not installed, so the plots were not rendered; their "
          "data and scripts are in %s/plots (install gnuplot-nox and run `prunus report "
          "%s`)\n",
          run_dir, run_dir);
    for (guint i = 0; i < r->notes->len; i++)
      g_printerr("prunus: note: %s\n", (const char *)g_ptr_array_index(r->notes, i));
    if (r->unfinished) g_printerr("prunus: note: unfinished run: %s\n", r->unfinished);
  }
  for (int p = 0; p < PRUNUS_REPORT_N_PLOTS; p++) g_free(plots[p].skipped);
  if (md) g_string_free(md, TRUE);
  g_string_free(csv, TRUE);
  report_free(r);
  return ok;
}

gboolean prunus_job_report(const char *run_dir, GError **error) {
  g_return_val_if_fail(run_dir != NULL, FALSE);
  if (!prunus_report_write(run_dir, error)) return FALSE;
  char *html = g_build_filename(run_dir, "report.html", NULL);
  printf("report: %s (summary.md, summary.csv, plots/)\n", html);
  g_free(html);
  return TRUE;
}
