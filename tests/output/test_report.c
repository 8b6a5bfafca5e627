/* test_report.c: the reports of a run directory from a synthetic summary.json
 * (2 experiments x 3 seeds x 4 rounds, known values) and real checkpoints:
 * summary.csv means and stds, summary.md, plots/ CSV + gnuplot scripts (rendered
 * when gnuplot is installed), report.html (checked in headless Chromium when it
 * is installed), and the errors for a missing or malformed summary.json. */
#include "checkpoint.h"
#include "json.h"
#include "report.h"
#include "report_common.h"
#include "rundir.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

// ----------------------------------------------------------------------------
// The synthetic run

#define N_EXPS 2
#define N_ROUNDS 4

static const char *exp_names[N_EXPS] = {"imp", "neurons"};
static const char *config_text = "name = \"a<b & c>\";\nseed = 0;\n";

/* Seeds of experiment e that reached round r: "neurons" seed 2 stopped after round 2. */
static gboolean reached(int e, int seed, int r) { return !(e == 1 && seed == 2 && r == 3); }

enum { M_SPARSITY, M_PARAMS, M_COMPRESSION, M_SPEEDUP, M_ACC, M_DB1, M_SB1, M_DB256, M_SB256, N_M };

static const char *csv_stems[N_M] = {"sparsity",
                                     "params_remaining",
                                     "compression",
                                     "speedup_theoretical",
                                     "test_accuracy",
                                     "latency_dense_b1_us",
                                     "latency_shrunk_b1_us",
                                     "latency_dense_b256_us",
                                     "latency_shrunk_b256_us"};

static double value(int e, int seed, int r, int m) {
  double params = round(1000.0 * pow(0.8, r)) - 10.0 * seed * r - 50.0 * e * r;
  switch (m) {
  case M_SPARSITY:
    return 1.0 - pow(0.8, r);
  case M_PARAMS:
    return params;
  case M_COMPRESSION:
    return 1000.0 / params;
  case M_SPEEDUP:
    return 1.0 + 0.5 * r + 0.1 * seed;
  case M_ACC:
    return 0.9 - 0.01 * r - 0.005 * seed * (e + 1);
  case M_DB1:
    return 100.0 + seed;
  case M_SB1:
    return 100.0 - 10.0 * r + seed + e;
  case M_DB256:
    return 5000.0 + 10.0 * seed;
  case M_SB256:
    return 5000.0 - 500.0 * r + 7.0 * seed * seed;
  }
  g_assert_not_reached();
}

/* The expected mean and sample std over the seeds that reached the round. */
static void expected(int e, int r, int m, int n_seeds, double *mean, double *std, int *n) {
  double x[8], s = 0.0, ss = 0.0;
  *n = 0;
  for (int seed = 0; seed < n_seeds; seed++)
    if (reached(e, seed, r)) x[(*n)++] = value(e, seed, r, m);
  for (int i = 0; i < *n; i++) s += x[i];
  *mean = s / *n;
  for (int i = 0; i < *n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
  *std = *n > 1 ? sqrt(ss / (*n - 1)) : NAN;
}

/* 16 -> 8 -> 3 MLP; hidden units = 8 (dense) or 6 (after removing neurons). */
static PrunusModel *mlp(int hidden) {
  PrunusArch a = {.input = {1, 4, 4}, .n_classes = 3, .n_layers = 4};
  a.layers = g_new0(PrunusLayerSpec, 4);
  a.layers[0].type = PRUNUS_LAYER_FLATTEN;
  a.layers[1] = (PrunusLayerSpec){.type = PRUNUS_LAYER_DENSE, .units = hidden};
  a.layers[2].type = PRUNUS_LAYER_RELU;
  a.layers[3] = (PrunusLayerSpec){.type = PRUNUS_LAYER_DENSE, .units = 3};
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 1, 7, &error);
  g_assert_no_error(error);
  prunus_arch_clear(&a);
  return m;
}

/* Keep only the first `keep` weights of layer i alive. */
static void keep_first(PrunusModel *m, int i, size_t keep) {
  const PrunusLayer *l = &m->layers[i];
  for (size_t j = keep; j < l->w_len; j++) m->mask[l->w_off + j] = 0.0f;
  prunus_model_apply_mask(m);
}

/* Alive weights in the final round: layer "1" and layer "3". */
static size_t final_alive(int e, int seed, int layer) {
  if (e == 0) return layer == 1 ? 64 - 8 * (size_t)seed : 12 + (size_t)seed;
  return layer == 1 ? 96 - 6 * (size_t)seed : 18; /* shrunk to 6 hidden units */
}

static void save(PrunusModel *m, const char *dir, const char *rel) {
  char *path = g_build_filename(dir, rel, NULL);
  char *parent = g_path_get_dirname(path);
  g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, path, NULL, &error));
  g_assert_no_error(error);
  g_free(parent);
  g_free(path);
}

static int final_round(int e, int seed) { return reached(e, seed, 3) ? 3 : 2; }

/* Write summary.json, config.cfg and the round-0 and final checkpoints into a new
 * temp folder. The latency keys come in a scrambled order on purpose. */
static char *make_run(int n_seeds) {
  char *dir = testutil_mkdtemp();
  PrunusJson *root = prunus_json_new_object();
  prunus_json_object_set(root, "prunus_version", prunus_json_new_string("0.1.0"));
  prunus_json_object_set(root, "config", prunus_json_new_string("configs/test.cfg"));
  PrunusJson *exps = prunus_json_new_array();
  for (int seed = 0; seed < n_seeds; seed++) {
    for (int e = 0; e < N_EXPS; e++) {
      PrunusJson *x = prunus_json_new_object();
      prunus_json_object_set(x, "name", prunus_json_new_string(exp_names[e]));
      prunus_json_object_set(x, "seed", prunus_json_new_number(seed));
      prunus_json_object_set(x, "criterion", prunus_json_new_string("magnitude"));
      prunus_json_object_set(x, "granularity", prunus_json_new_string(e ? "neuron" : "weight"));
      prunus_json_object_set(x, "retrain", prunus_json_new_string("finetune"));
      /* the first experiment measured latency another way than the others */
      prunus_json_object_set(x, "latency_method",
                             prunus_json_new_string(e ? "adaptive: a" : "fixed: b"));
      PrunusJson *rounds = prunus_json_new_array();
      for (int r = 0; r < N_ROUNDS && reached(e, seed, r); r++) {
        PrunusJson *o = prunus_json_new_object();
        prunus_json_object_set(o, "round", prunus_json_new_number(r));
        prunus_json_object_set(o, "sparsity",
                               prunus_json_new_number(value(e, seed, r, M_SPARSITY)));
        prunus_json_object_set(o, "params_total", prunus_json_new_number(1000));
        prunus_json_object_set(o, "params_remaining",
                               prunus_json_new_number(value(e, seed, r, M_PARAMS)));
        prunus_json_object_set(o, "compression",
                               prunus_json_new_number(value(e, seed, r, M_COMPRESSION)));
        prunus_json_object_set(o, "flops", prunus_json_new_number(2000));
        prunus_json_object_set(o, "speedup_theoretical",
                               prunus_json_new_number(value(e, seed, r, M_SPEEDUP)));
        prunus_json_object_set(o, "test_accuracy",
                               prunus_json_new_number(value(e, seed, r, M_ACC)));
        prunus_json_object_set(o, "test_loss", prunus_json_new_number(0.3));
        prunus_json_object_set(o, "val_accuracy", prunus_json_new_null());
        PrunusJson *lat = prunus_json_new_object();
        prunus_json_object_set(lat, "shrunk_b256",
                               prunus_json_new_number(value(e, seed, r, M_SB256)));
        prunus_json_object_set(lat, "dense_b1", prunus_json_new_number(value(e, seed, r, M_DB1)));
        prunus_json_object_set(lat, "dense_b256",
                               prunus_json_new_number(value(e, seed, r, M_DB256)));
        prunus_json_object_set(lat, "shrunk_b1", prunus_json_new_number(value(e, seed, r, M_SB1)));
        prunus_json_object_set(o, "latency_us", lat);
        char *ckpt = g_strdup_printf("%s/seed-%d/round-%02d.safetensors", exp_names[e], seed, r);
        prunus_json_object_set(o, "checkpoint", prunus_json_new_string(ckpt));
        if (r == 0) {
          PrunusModel *m = mlp(8);
          save(m, dir, ckpt);
          prunus_model_free(m);
        } else if (r == final_round(e, seed)) {
          PrunusModel *m = mlp(e == 0 ? 8 : 6);
          keep_first(m, 1, final_alive(e, seed, 1));
          keep_first(m, 3, final_alive(e, seed, 3));
          save(m, dir, ckpt);
          prunus_model_free(m);
        }
        g_free(ckpt);
        prunus_json_array_add(rounds, o);
      }
      prunus_json_object_set(x, "rounds", rounds);
      prunus_json_array_add(exps, x);
    }
  }
  prunus_json_object_set(root, "experiments", exps);
  char *text = prunus_json_to_string(root, 2);
  g_free(testutil_write_file(dir, "summary.json", text, strlen(text)));
  g_free(testutil_write_file(dir, "config.cfg", config_text, strlen(config_text)));
  g_free(text);
  prunus_json_free(root);
  return dir;
}

static char *read_file(const char *dir, const char *name) {
  char *path = g_build_filename(dir, name, NULL), *text = NULL;
  GError *error = NULL;
  g_file_get_contents(path, &text, NULL, &error);
  g_assert_no_error(error);
  g_free(path);
  return text;
}

static gboolean exists_nonempty(const char *dir, const char *name) {
  char *path = g_build_filename(dir, name, NULL);
  GStatBuf st;
  gboolean ok = g_stat(path, &st) == 0 && st.st_size > 0;
  g_free(path);
  return ok;
}

static void assert_contains(const char *text, const char *needle) {
  if (!strstr(text, needle)) g_error("expected '%s' in:\n%.3000s", needle, text);
}

static int count_of(const char *text, const char *needle) {
  int n = 0;
  size_t len = strlen(needle);
  for (size_t i = 0; text[i]; i++) n += !strncmp(text + i, needle, len);
  return n;
}

static void write_report(const char *dir) {
  GError *error = NULL;
  g_assert_true(prunus_report_write(dir, &error));
  g_assert_no_error(error);
}

static void check_number(const char *field, double want, const char *what) {
  if (isnan(want)) {
    if (*field) g_error("%s: expected an empty field, found '%s'", what, field);
    return;
  }
  char *end = NULL;
  double got = g_ascii_strtod(field, &end);
  if (!*field || *end) g_error("%s: expected %.10g, found '%s'", what, want, field);
  if (fabs(got - want) > 1e-7 * fmax(1.0, fabs(want)))
    g_error("%s: expected %.10g, found %.10g", what, want, got);
}

// ----------------------------------------------------------------------------
// Tests

static void check_summary_csv(const char *dir, int n_seeds) {
  char *csv = read_file(dir, "summary.csv");
  char **lines = g_strsplit(csv, "\n", -1);
  GString *header = g_string_new("experiment,criterion,granularity,retrain,round,seeds");
  for (int m = 0; m < N_M; m++)
    g_string_append_printf(header, ",%s_mean,%s_std", csv_stems[m], csv_stems[m]);
  g_assert_cmpstr(lines[0], ==, header->str);
  g_assert_cmpuint(g_strv_length(lines), ==, 1 + N_EXPS * N_ROUNDS + 1); /* trailing "" */
  int line = 1;
  for (int e = 0; e < N_EXPS; e++) {
    for (int r = 0; r < N_ROUNDS; r++, line++) {
      char **f = g_strsplit(lines[line], ",", -1);
      g_assert_cmpuint(g_strv_length(f), ==, 6 + 2 * N_M);
      g_assert_cmpstr(f[0], ==, exp_names[e]);
      g_assert_cmpstr(f[2], ==, e ? "neuron" : "weight");
      g_assert_cmpint(atoi(f[4]), ==, r);
      for (int m = 0; m < N_M; m++) {
        double mean, std;
        int n;
        expected(e, r, m, n_seeds, &mean, &std, &n);
        g_assert_cmpint(atoi(f[5]), ==, n);
        char *what = g_strdup_printf("%s round %d %s", exp_names[e], r, csv_stems[m]);
        check_number(f[6 + 2 * m], mean, what);
        check_number(f[7 + 2 * m], std, what);
        g_free(what);
      }
      g_strfreev(f);
    }
  }
  g_string_free(header, TRUE);
  g_strfreev(lines);
  g_free(csv);
}

static void test_tables(void) {
  char *dir = make_run(3);
  write_report(dir);
  check_summary_csv(dir, 3);
  char *md = read_file(dir, "summary.md");
  assert_contains(md, "| experiment | round | seeds |");
  assert_contains(md, "| imp | 0 | 3 |");
  assert_contains(md, "| neurons | 3 | 2 |"); /* seed 2 stopped after round 2 */
  assert_contains(md, " ± ");
  /* imp round 1 test accuracy: 0.89 - 0.005 * seed -> 0.8850 ± 0.0050 */
  assert_contains(md, "| 0.8850 ± 0.0050 |");
  assert_contains(md, "dense b256 (µs)");
  /* latency methods that differ are said per experiment */
  assert_contains(md,
                  "- **imp**: criterion magnitude, granularity weight, retrain finetune; "
                  "seeds 0, 1, 2; latency fixed: b\n");
  assert_contains(md, "retrain finetune; seeds 0, 1, 2; latency adaptive: a\n");
  g_assert_null(strstr(md, "Latency measurement:"));
  char *html = read_file(dir, "report.html");
  assert_contains(html, "; latency fixed: b</li>");
  g_free(html);
  g_free(md);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_one_seed(void) {
  char *dir = make_run(1);
  write_report(dir);
  check_summary_csv(dir, 1);
  char *md = read_file(dir, "summary.md");
  assert_contains(md, "| imp | 1 | 1 | 0.2000 | 800 | 1.25 | 1.50 | 0.8900 |");
  g_free(md);
  testutil_rmtree(dir);
  g_free(dir);
}

/* layers_final.csv rows: name of the experiment, layer -> fraction mean/std. */
static void check_layers_csv(const char *dir) {
  char *csv = read_file(dir, "plots/layers_final.csv");
  char **lines = g_strsplit(csv, "\n", -1);
  g_assert_cmpstr(lines[0], ==,
                  "experiment_index,experiment,final_round,seeds,layer_position,"
                  "layer,type,weights_total,weights_remaining_mean,"
                  "weights_remaining_std,fraction_mean,fraction_std");
  int checked = 0;
  for (int i = 1; lines[i] && *lines[i]; i++) {
    char **f = g_strsplit(lines[i], ",", -1);
    int e = atoi(f[0]) - 1, layer = atoi(f[5]);
    g_assert_cmpstr(f[1], ==, exp_names[e]);
    g_assert_cmpstr(f[6], ==, "dense");
    int total = layer == 1 ? 128 : 24; /* the dense (round-0) layer, also when shrunk */
    g_assert_cmpint(atoi(f[7]), ==, total);
    g_assert_cmpint(atoi(f[2]), ==, 3);
    double x[3];
    for (int s = 0; s < 3; s++) x[s] = (double)final_alive(e, s, layer) / total;
    PrunusStat st = prunus_stat_of(x, 3);
    check_number(f[10], st.mean, "fraction_mean");
    check_number(f[11], st.std, "fraction_std");
    checked++;
    g_strfreev(f);
  }
  g_assert_cmpint(checked, ==, N_EXPS * 2);
  g_strfreev(lines);
  g_free(csv);
}

/* A name in summary.json (an edited or received run folder) never reaches gnuplot as a
 * command: gnuplot runs `backquoted` text and expands @macros except inside single
 * quotes, where the name goes with its own quotes doubled. */
static void test_plot_names_quoted(void) {
  char *dir = make_run(1);
  char *marker = g_build_filename(dir, "ran", NULL);
  char *path = g_build_filename(dir, "summary.json", NULL);
  char *text = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  GString *edited = g_string_new(text);
  char *evil = g_strdup_printf("\"it's `touch %s` @x\"", marker);
  g_assert_cmpuint(g_string_replace(edited, "\"imp\"", evil, 0), >, 0);
  g_assert_true(g_file_set_contents(path, edited->str, (gssize)edited->len, NULL));
  write_report(dir);
  char *gp = read_file(dir, "plots/acc_vs_compression.gp");
  char *want = g_strdup_printf("title 'it''s `touch %s` @x'", marker);
  assert_contains(gp, want);
  g_assert_false(g_file_test(marker, G_FILE_TEST_EXISTS)); /* with gnuplot or without */
  g_free(want), g_free(gp), g_free(evil), g_free(text), g_free(path), g_free(marker);
  g_string_free(edited, TRUE);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_plots(void) {
  char *dir = make_run(3);
  write_report(dir);
  static const char *plots[] = {"acc_vs_compression", "acc_vs_latency", "layers_final"};
  for (size_t i = 0; i < G_N_ELEMENTS(plots); i++) {
    char *csv = g_strdup_printf("plots/%s.csv", plots[i]),
         *gp = g_strdup_printf("plots/%s.gp", plots[i]);
    g_assert_true(exists_nonempty(dir, csv));
    g_assert_true(exists_nonempty(dir, gp));
    char *script = read_file(dir, gp);
    char *ref = g_strdup_printf("\"%s.csv\"", plots[i]);
    assert_contains(script, ref); /* relative to plots/ */
    g_free(ref);
    g_free(script);
    g_free(gp);
    g_free(csv);
  }
  char *layers_gp = read_file(dir, "plots/layers_final.gp");
  assert_contains(layers_gp, ": dense'.\"\\n\".'");
  g_free(layers_gp);
  char *gp = read_file(dir, "plots/acc_vs_compression.gp");
  assert_contains(gp, "set logscale x 2");
  assert_contains(gp, "title 'imp'");
  assert_contains(gp, "title 'neurons'");
  g_free(gp);
  check_layers_csv(dir);
  char *gnuplot = g_find_program_in_path("gnuplot");
  if (gnuplot) {
    for (size_t i = 0; i < G_N_ELEMENTS(plots); i++) {
      char *svg = g_strdup_printf("plots/%s.svg", plots[i]),
           *png = g_strdup_printf("plots/%s.png", plots[i]);
      g_assert_true(exists_nonempty(dir, svg));
      g_assert_true(exists_nonempty(dir, png));
      char *text = read_file(dir, svg);
      assert_contains(text, "<svg");
      /* a label's line break is a break, not a backslash and an n (single quotes take no
       * escapes: the script joins "\n" in) */
      g_assert_null(strstr(text, "\\n"));
      g_free(text);
      g_free(png);
      g_free(svg);
    }
  } else {
    g_test_message("gnuplot is not installed: rendering not checked");
  }
  g_free(gnuplot);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Run a command with a time limit; returns its stdout (transfer full) or fails. */
static char *run_browser(char **argv) {
  char *out = NULL, *err = NULL;
  int status = 0;
  GError *error = NULL;
  g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status, &error);
  g_assert_no_error(error);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char *cmd = g_strjoinv(" ", argv);
    g_error("%s: wait status %d\nstderr: %s", cmd, status, err);
  }
  g_free(err);
  return out;
}

static void check_in_chromium(const char *dir) {
  const char *chromium = "/usr/bin/chromium";
  if (!g_file_test(chromium, G_FILE_TEST_IS_EXECUTABLE)) {
    g_test_skip("chromium is not installed");
    return;
  }
  char *profile = testutil_mkdtemp();
  char *html = g_build_filename(dir, "report.html", NULL);
  char *uri = g_filename_to_uri(html, NULL, NULL);
  char *user_dir = g_strdup_printf("--user-data-dir=%s", profile);
  char *shot = g_build_filename(profile, "shot.png", NULL);
  char *shot_arg = g_strdup_printf("--screenshot=%s", shot);
  char *dump[] = {"timeout",
                  "120",
                  (char *)chromium,
                  "--headless",
                  "--no-sandbox",
                  "--disable-gpu",
                  "--disable-quic",
                  "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update",
                  "--disable-sync",
                  user_dir,
                  "--dump-dom",
                  uri,
                  NULL};
  char *dom = run_browser(dump);
  assert_contains(dom, "<table id=\"summary\">");
  assert_contains(dom, "<td>neurons</td>");
  g_assert_cmpint(count_of(dom, "<tr"), ==, 1 + N_EXPS * N_ROUNDS);
  g_assert_cmpint(count_of(dom, "<img "), >=, 3);
  assert_contains(dom, "a&lt;b &amp; c&gt;");
  char *snap[] = {"timeout",
                  "120",
                  (char *)chromium,
                  "--headless",
                  "--no-sandbox",
                  "--disable-gpu",
                  "--disable-quic",
                  "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update",
                  "--disable-sync",
                  user_dir,
                  "--hide-scrollbars",
                  "--window-size=1200,2000",
                  shot_arg,
                  uri,
                  NULL};
  g_free(run_browser(snap));
  char *png = NULL;
  size_t len = 0;
  g_assert_true(g_file_get_contents(shot, &png, &len, NULL));
  g_assert_cmpuint(len, >, 10000);
  g_assert_cmpmem(png, 8, "\x89PNG\r\n\x1a\n", 8);
  g_free(png);
  g_free(dom);
  g_free(shot_arg);
  g_free(shot);
  g_free(user_dir);
  g_free(uri);
  g_free(html);
  testutil_rmtree(profile);
  g_free(profile);
}

static void test_html(void) {
  char *dir = make_run(3);
  write_report(dir);
  char *html = read_file(dir, "report.html");
  assert_contains(html, "<!DOCTYPE html>");
  assert_contains(html, "<table id=\"summary\">");
  g_assert_cmpint(count_of(html, "<tr"), ==, 1 + N_EXPS * N_ROUNDS);
  assert_contains(html, "<td>imp</td>");
  assert_contains(html, "<td class=\"num\">0.8850 ± 0.0050</td>");
  assert_contains(html, "a&lt;b &amp; c&gt;"); /* the config, escaped */
  g_assert_null(strstr(html, "a<b & c>"));
  /* self-contained: no external resources */
  g_assert_null(strstr(html, "src=\"http"));
  g_assert_null(strstr(html, "<link"));
  g_assert_null(strstr(html, "<script"));
  char *gnuplot = g_find_program_in_path("gnuplot");
  if (gnuplot) {
    g_assert_cmpint(count_of(html, "<img "), ==, 3);
    g_assert_cmpint(count_of(html, "src=\"data:image/svg+xml;base64,"), ==, 3);
  }
  g_free(html);
  if (gnuplot)
    check_in_chromium(dir);
  else
    g_test_skip("gnuplot is not installed: no images to check in a browser");
  g_free(gnuplot);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Without gnuplot on PATH: data and scripts, no images, a note in the page. */
static void test_no_gnuplot(void) {
  char *dir = make_run(3);
  char *empty = testutil_mkdtemp();
  char *old_path = g_strdup(g_getenv("PATH"));
  g_setenv("PATH", empty, TRUE);
  write_report(dir);
  g_setenv("PATH", old_path, TRUE);
  g_assert_true(exists_nonempty(dir, "plots/acc_vs_compression.csv"));
  g_assert_true(exists_nonempty(dir, "plots/acc_vs_compression.gp"));
  g_assert_false(exists_nonempty(dir, "plots/acc_vs_compression.svg"));
  g_assert_false(exists_nonempty(dir, "plots/acc_vs_compression.png"));
  char *html = read_file(dir, "report.html");
  assert_contains(html, "The plots were not rendered: gnuplot is not installed.");
  assert_contains(html, "<table id=\"summary\">");
  g_assert_null(strstr(html, "<img "));
  g_free(html);
  char *md = read_file(dir, "summary.md");
  assert_contains(md, "not rendered");
  g_free(md);
  g_free(old_path);
  testutil_rmtree(empty);
  g_free(empty);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Checkpoints deleted: the per-layer plot is skipped with a note, the rest stays. */
static void test_no_checkpoints(void) {
  char *dir = make_run(1);
  for (int e = 0; e < N_EXPS; e++) {
    char *sub = g_build_filename(dir, exp_names[e], NULL);
    testutil_rmtree(sub);
    g_free(sub);
  }
  write_report(dir);
  g_assert_false(exists_nonempty(dir, "plots/layers_final.csv"));
  g_assert_true(exists_nonempty(dir, "plots/acc_vs_latency.csv"));
  char *html = read_file(dir, "report.html");
  assert_contains(html, "skipped: no final-round checkpoint could be read");
  g_free(html);
  testutil_rmtree(dir);
  g_free(dir);

  /* checkpoints that summary.json names outside the run folder are not read, even whole */
  dir = make_run(1);
  char *outside = testutil_mkdtemp();
  char *base = g_path_get_basename(outside);
  for (int e = 0; e < N_EXPS; e++) {
    char *from = g_build_filename(dir, exp_names[e], NULL);
    char *to = g_build_filename(outside, exp_names[e], NULL);
    g_assert_cmpint(g_rename(from, to), ==, 0);
    g_free(from), g_free(to);
  }
  char *path = g_build_filename(dir, "summary.json", NULL);
  char *text = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  GString *edited = g_string_new(text);
  for (int e = 0; e < N_EXPS; e++) {
    char *was = g_strdup_printf("\"%s/", exp_names[e]);
    char *now = g_strdup_printf("\"../%s/%s/", base, exp_names[e]);
    g_assert_cmpuint(g_string_replace(edited, was, now, 0), >, 0);
    g_free(was), g_free(now);
  }
  g_assert_true(g_file_set_contents(path, edited->str, (gssize)edited->len, NULL));
  write_report(dir);
  g_assert_false(exists_nonempty(dir, "plots/layers_final.csv"));
  g_string_free(edited, TRUE);
  g_free(text), g_free(path), g_free(base);
  testutil_rmtree(outside);
  g_free(outside);
  testutil_rmtree(dir);
  g_free(dir);

  /* nor ones whose content is not what the round recorded (another file put there) */
  dir = make_run(1);
  path = g_build_filename(dir, "summary.json", NULL);
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  edited = g_string_new(text);
  g_assert_cmpuint(
      g_string_replace(edited, "\"checkpoint\":",
                       "\"checkpoint_hash\": \"0123456789abcdef\", \"checkpoint\":", 0),
      >, 0);
  g_assert_true(g_file_set_contents(path, edited->str, (gssize)edited->len, NULL));
  write_report(dir);
  g_assert_false(exists_nonempty(dir, "plots/layers_final.csv"));
  g_string_free(edited, TRUE);
  g_free(text), g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

/* An output folder that cannot be written is found before anything is written: the
 * earlier report stays whole, not half replaced. */
static void test_unwritable_keeps_report(void) {
  char *dir = make_run(1);
  write_report(dir);
  char *before = read_file(dir, "summary.csv");
  char *plots = g_build_filename(dir, "plots", NULL);
  testutil_rmtree(plots);
  g_free(testutil_write_file(dir, "plots", "a file", 6)); /* plots/ cannot be made */
  char *path = g_build_filename(dir, "summary.json", NULL);
  char *text = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  GString *edited = g_string_new(text);
  g_assert_cmpuint(g_string_replace(edited, "\"imp\"", "\"renamed\"", 0), >, 0);
  g_assert_true(g_file_set_contents(path, edited->str, (gssize)edited->len, NULL));
  GError *error = NULL;
  g_assert_false(prunus_report_write(dir, &error));
  testutil_assert_error_contains(error, plots, "nothing was changed", NULL);
  g_clear_error(&error);
  char *after = read_file(dir, "summary.csv");
  g_assert_cmpstr(after, ==, before);
  g_free(after), g_free(text), g_free(path), g_free(plots), g_free(before);
  g_string_free(edited, TRUE);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_errors(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "summary.json", NULL);
  GError *error = NULL;
  g_assert_false(prunus_report_write(dir, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, path, NULL);
  g_clear_error(&error);

  g_free(testutil_write_file(dir, "summary.json", "{ \"experiments\": [", 18));
  g_assert_false(prunus_report_write(dir, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
  testutil_assert_error_contains(error, path, NULL);
  g_clear_error(&error);

  g_free(testutil_write_file(dir, "summary.json", "{\"config\": \"x\"}", 15));
  g_assert_false(prunus_report_write(dir, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
  testutil_assert_error_contains(error, path, "\"experiments\"", NULL);
  g_clear_error(&error);

  const char *bad_round = "{\"experiments\": [{\"name\": \"x\", \"rounds\": [{\"sparsity\": 0}]}]}";
  g_free(testutil_write_file(dir, "summary.json", bad_round, strlen(bad_round)));
  g_assert_false(prunus_report_write(dir, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
  testutil_assert_error_contains(error, path, "experiments[0].rounds[0]", NULL);
  g_clear_error(&error);
  /* hand edits that would merge, drop or garble rows: refused naming the place */
  static const char *const edited[][2] = {
      {"{\"experiments\": [{\"name\": \"x\", \"rounds\": [{\"round\": 0}, {\"round\": "
       "1099511627776}]}]}",
       "experiments[0].rounds[1].round = 1.09951e+12, expected 1"},
      {"{\"experiments\": [{\"name\": \"x\", \"rounds\": [{\"round\": 0}, {\"round\": "
       "0}]}]}",
       "experiments[0].rounds[1].round = 0, expected 1"},
      {"{\"experiments\": [{\"name\": \"x\", \"rounds\": [{\"round\": 0, \"sparsity\": "
       "\"abc\"}]}]}",
       "experiments[0].rounds[0].sparsity: expected a number in [0, 1] or null"},
      {"{\"experiments\": [{\"name\": \"x\", \"rounds\": [{\"round\": 0, "
       "\"params_remaining\": 1e300}]}]}",
       "experiments[0].rounds[0].params_remaining: expected a number in [0, 1e15] or null"},
      {"{\"experiments\": [{\"name\": \"x\", \"seed\": 0, \"rounds\": []}, {\"name\": "
       "\"x\", \"seed\": 0, \"rounds\": []}]}",
       "experiments[1] repeats the name \"x\" and seed of experiments[0]"}};
  for (size_t i = 0; i < G_N_ELEMENTS(edited); i++) {
    g_free(testutil_write_file(dir, "summary.json", edited[i][0], strlen(edited[i][0])));
    g_assert_false(prunus_report_write(dir, &error));
    g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
    testutil_assert_error_contains(error, path, edited[i][1], NULL);
    g_clear_error(&error);
  }
  g_assert_false(exists_nonempty(dir, "report.html"));
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

/* metrics.jsonl after a stopped run: prunus_rundir_forget_epochs drops the lines of one
 * experiment and seed from a round on, keeps every other line byte for byte (other
 * experiments, other seeds, lines that are not prunus's), and leaves a missing file
 * and a file with nothing to drop alone. */
static void test_forget_epochs(void) {
  char *dir = testutil_mkdtemp();
  GError *error = NULL;
  g_assert_true(prunus_rundir_forget_epochs(dir, "imp", 0, 1, &error)); /* no file */
  g_assert_no_error(error);
  char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
  const char *lines[] = {
      "{\"experiment\":\"imp\",\"seed\":0,\"round\":0,\"epoch\":1}\n",     /* kept */
      "{\"experiment\":\"imp\",\"seed\":0,\"round\":1,\"epoch\":1}\n",     /* kept */
      "{\"experiment\":\"imp\",\"seed\":1,\"round\":2,\"epoch\":1}\n",     /* other seed */
      "{\"experiment\":\"neurons\",\"seed\":0,\"round\":2,\"epoch\":1}\n", /* other exp */
      "not json\n",                                                        /* not ours */
      "{\"experiment\":\"imp\",\"seed\":0,\"round\":2,\"epoch\":1}\n",     /* dropped */
      "{\"experiment\":\"imp\",\"seed\":0,\"round\":2,\"epoch\":2}\n",     /* dropped */
      "{\"experiment\":\"imp\",\"seed\":0,\"round\":3,\"epoch\":1}",       /* dropped, no \\n */
  };
  GString *all = g_string_new(NULL), *want = g_string_new(NULL);
  for (size_t i = 0; i < G_N_ELEMENTS(lines); i++) {
    g_string_append(all, lines[i]);
    if (i < 5) g_string_append(want, lines[i]);
  }
  g_assert_true(g_file_set_contents(path, all->str, (gssize)all->len, NULL));
  g_assert_true(prunus_rundir_forget_epochs(dir, "imp", 0, 2, &error));
  g_assert_no_error(error);
  char *got = NULL;
  g_assert_true(g_file_get_contents(path, &got, NULL, NULL));
  g_assert_cmpstr(got, ==, want->str);
  g_free(got);
  /* nothing from round 5 on: the file is not rewritten (same inode, same bytes) */
  GStatBuf before, after;
  g_assert_cmpint(g_stat(path, &before), ==, 0);
  g_assert_true(prunus_rundir_forget_epochs(dir, "imp", 0, 5, &error));
  g_assert_cmpint(g_stat(path, &after), ==, 0);
  g_assert_cmpuint(before.st_ino, ==, after.st_ino);
  g_assert_true(g_file_get_contents(path, &got, NULL, NULL));
  g_assert_cmpstr(got, ==, want->str);
  g_free(got);
  g_string_free(all, TRUE), g_string_free(want, TRUE);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/report/tables", test_tables);
  g_test_add_func("/report/one-seed", test_one_seed);
  g_test_add_func("/report/plots", test_plots);
  g_test_add_func("/report/plot-names-quoted", test_plot_names_quoted);
  g_test_add_func("/report/html", test_html);
  g_test_add_func("/report/no-gnuplot", test_no_gnuplot);
  g_test_add_func("/report/no-checkpoints", test_no_checkpoints);
  g_test_add_func("/report/errors", test_errors);
  g_test_add_func("/report/unwritable-keeps-report", test_unwritable_keeps_report);
  g_test_add_func("/report/forget-epochs", test_forget_epochs);
  return g_test_run();
}
