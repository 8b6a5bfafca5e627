/* test_cli.c: runs the built `prunus` binary (its path is argv[1] after the GTest
 * options) in a temp folder: usage and exit codes, config errors naming file:line
 * and key (`run` refusing a typo in any experiment before it trains), and a full
 * train + eval on a tiny IDX dataset written here, checking the run directory
 * contract (docs/architecture.md) and byte-identical reruns; eval and export of
 * checkpoints with and without their input normalisation; `run`'s pretraining cache
 * following the dataset's content; a graph model trained, evaluated and refused by
 * bench and export, and bad graph configs. */
#include "checkpoint.h"
#include "json.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static const char *prunus_exe;

// ----------------------------------------------------------------------------
// Running the binary

typedef struct {
  int status; /* exit code */
  char *out;  /* stdout (owned) */
  char *err;  /* stderr (owned) */
} Run;

static void run_clear(Run *r) {
  g_free(r->out);
  g_free(r->err);
}

/* Run prunus with the NULL-terminated args in cwd; asserts it exited (no signal). */
static Run run_prunus(const char *cwd, const char *arg1, ...) G_GNUC_NULL_TERMINATED;
static Run run_prunus(const char *cwd, const char *arg1, ...) {
  GPtrArray *argv = g_ptr_array_new();
  g_ptr_array_add(argv, (char *)prunus_exe);
  va_list ap;
  va_start(ap, arg1);
  for (const char *a = arg1; a; a = va_arg(ap, const char *)) g_ptr_array_add(argv, (char *)a);
  va_end(ap);
  g_ptr_array_add(argv, NULL);
  char **env = g_get_environ();
  env = g_environ_setenv(env, "LC_ALL", "C", TRUE);
  env = g_environ_setenv(env, "OPENBLAS_NUM_THREADS", "1", TRUE);
  Run r = {0};
  int wait_status = 0;
  GError *error = NULL;
  g_spawn_sync(cwd, (char **)argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err,
               &wait_status, &error);
  g_assert_no_error(error);
  g_strfreev(env);
  char *cmd = g_strjoinv(" ", (char **)argv->pdata);
  g_ptr_array_free(argv, TRUE);
  if (!WIFEXITED(wait_status))
    g_error("%s: did not exit normally (wait status %d)\nstderr: %s", cmd, wait_status, r.err);
  r.status = WEXITSTATUS(wait_status);
  g_test_message("$ %s\n-> exit %d\n[stdout]\n%s[stderr]\n%s", cmd, r.status, r.out, r.err);
  g_free(cmd);
  return r;
}

static void assert_contains(const char *text, const char *needle) {
  if (!strstr(text, needle)) g_error("expected '%s' in: %s", needle, text);
}

// ----------------------------------------------------------------------------
// A tiny dataset and config

#define SIDE 8

/* IDX bytes: magic, big-endian dims, payload. */
static GByteArray *idx_bytes(uint32_t magic, const uint32_t *dims, int ndims, const uint8_t *data,
                             size_t len) {
  GByteArray *a = g_byte_array_new();
  uint32_t be = GUINT32_TO_BE(magic);
  g_byte_array_append(a, (const guint8 *)&be, 4);
  for (int i = 0; i < ndims; i++) {
    be = GUINT32_TO_BE(dims[i]);
    g_byte_array_append(a, (const guint8 *)&be, 4);
  }
  g_byte_array_append(a, data, (guint)len);
  return a;
}

/* Write PREFIX-images-idx3-ubyte / PREFIX-labels-idx1-ubyte holding n quadrant
 * images (class k = quadrant k bright, mean 170 on 70, Gaussian noise sd 45). */
static void write_quadrant_idx(const char *dir, const char *prefix, uint32_t n, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  size_t row = SIDE * SIDE;
  uint8_t *img = g_new(uint8_t, n * row), *lab = g_new(uint8_t, n);
  for (uint32_t i = 0; i < n; i++) {
    int k = (int)prunus_rng_below(&r, 4);
    lab[i] = (uint8_t)k;
    for (int y = 0; y < SIDE; y++)
      for (int x = 0; x < SIDE; x++) {
        int q = (y >= SIDE / 2) * 2 + (x >= SIDE / 2);
        double v = (q == k ? 170.0 : 70.0) + 45.0 * prunus_rng_normal(&r);
        img[i * row + (size_t)y * SIDE + x] = (uint8_t)CLAMP(lround(v), 0, 255);
      }
  }
  const uint32_t dims[3] = {n, SIDE, SIDE};
  GByteArray *ia = idx_bytes(0x00000803u, dims, 3, img, n * row);
  GByteArray *la = idx_bytes(0x00000801u, &n, 1, lab, n);
  char *name = g_strdup_printf("%s-images-idx3-ubyte", prefix);
  g_free(testutil_write_file(dir, name, ia->data, ia->len));
  g_free(name);
  name = g_strdup_printf("%s-labels-idx1-ubyte", prefix);
  g_free(testutil_write_file(dir, name, la->data, la->len));
  g_free(name);
  g_byte_array_unref(ia);
  g_byte_array_unref(la);
  g_free(img);
  g_free(lab);
}

/* The tiny config; epochs is the text after "epochs = ", extra goes at the end of
 * the train group. Dataset paths are relative to the config's folder. */
#define CONFIG_TEMPLATE                                            \
  "# tiny: a 64-32-4 MLP on 8x8 quadrant images\n"                 \
  "name = \"tiny\";\n"                                             \
  "seed = 3;\n"                                                    \
  "dataset = {\n"                                                  \
  "  format = \"idx\";\n"                                          \
  "  train_images = \"train-images-idx3-ubyte\";\n"                \
  "  train_labels = \"train-labels-idx1-ubyte\";\n"                \
  "  test_images = \"t10k-images-idx3-ubyte\";\n"                  \
  "  test_labels = \"t10k-labels-idx1-ubyte\";\n"                  \
  "  validation = 100;\n"                                          \
  "  normalize = \"standard\";\n"                                  \
  "};\n"                                                           \
  "model = {\n"                                                    \
  "  input = [1, 8, 8];\n"                                         \
  "  layers = (\n"                                                 \
  "    { type = \"flatten\"; },\n"                                 \
  "    { type = \"dense\"; units = 32; }, { type = \"relu\"; },\n" \
  "    { type = \"dense\"; units = 4; }\n"                         \
  "  );\n"                                                         \
  "};\n"                                                           \
  "train = {\n"                                                    \
  "  epochs = %s;\n"                                               \
  "  batch = 32;\n"                                                \
  "  optimizer = \"sgd\";\n"                                       \
  "  lr = 0.05;\n"                                                 \
  "  momentum = 0.9;\n"                                            \
  "  lr_schedule = \"cosine\";\n"                                  \
  "%s"                                                             \
  "};\n"

#define TINY_EPOCHS 3
#define TINY_PARAMS (64 * 32 + 32 + 32 * 4 + 4)
#define TINY_FLOPS (2 * (64 * 32 + 32 * 4))

/* 1-based line of the first line of text containing needle. */
static int line_of(const char *text, const char *needle) {
  const char *at = strstr(text, needle);
  g_assert_nonnull(at);
  int line = 1;
  for (const char *p = text; p < at; p++) line += *p == '\n';
  return line;
}

/* Write dir/name from the template; returns the path (transfer full) and, when
 * text_out != NULL, the config text. */
static char *write_config(const char *dir, const char *name, const char *epochs, const char *extra,
                          char **text_out) {
  char *text = g_strdup_printf(CONFIG_TEMPLATE, epochs, extra);
  char *path = testutil_write_file(dir, name, text, strlen(text));
  if (text_out)
    *text_out = text;
  else
    g_free(text);
  return path;
}

/* dir/name: the tiny config with one round of magnitude weight pruning at 0.5 and one
 * epoch of fine-tuning; returns the path and the text (transfer full each). */
static char *write_run_config(const char *dir, const char *name, const char *epochs,
                              char **text_out) {
  char *base = g_strdup_printf(CONFIG_TEMPLATE, epochs, "");
  *text_out = g_strconcat(base,
                          "prune = {\n"
                          "  schedule = { rounds = 1; amount = 0.5; };\n"
                          "  criterion = { plugin = \"magnitude\"; };\n"
                          "  granularity = { plugin = \"weight\"; };\n"
                          "  retrain = { plugin = \"finetune\"; epochs = 1; };\n"
                          "};\n",
                          NULL);
  g_free(base);
  return testutil_write_file(dir, name, *text_out, strlen(*text_out));
}

/* A temp folder with the tiny dataset (600 train, 200 test) and tiny.cfg. */
typedef struct {
  char *dir;
  char *config;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data) {
  (void)data;
  f->dir = testutil_mkdtemp();
  write_quadrant_idx(f->dir, "train", 600, 1);
  write_quadrant_idx(f->dir, "t10k", 200, 2);
  f->config = write_config(f->dir, "tiny.cfg", G_STRINGIFY(TINY_EPOCHS), "", NULL);
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
  (void)data;
  testutil_rmtree(f->dir);
  g_free(f->dir);
  g_free(f->config);
}

static PrunusJson *parse_json_file(const char *path) {
  char *text = NULL;
  gsize len = 0;
  GError *error = NULL;
  g_file_get_contents(path, &text, &len, &error);
  g_assert_no_error(error);
  PrunusJson *v = prunus_json_parse(text, len, &error);
  g_assert_no_error(error);
  g_free(text);
  return v;
}

static const PrunusJson *get_typed(const PrunusJson *o, const char *key, PrunusJsonType type) {
  const PrunusJson *v = prunus_json_get(o, key);
  if (!v) g_error("missing key '%s'", key);
  if (prunus_json_type(v) != type)
    g_error("key '%s' has JSON type %d, expected %d", key, prunus_json_type(v), type);
  return v;
}

static double get_number(const PrunusJson *o, const char *key) {
  return prunus_json_number(get_typed(o, key, PRUNUS_JSON_NUMBER));
}

// ----------------------------------------------------------------------------
// Usage

static void test_help(void) {
  Run r = run_prunus(NULL, "--help", NULL);
  g_assert_cmpint(r.status, ==, 0);
  assert_contains(r.out, "prunus train CONFIG");
  assert_contains(r.out, "prunus eval CHECKPOINT CONFIG");
  g_assert_cmpstr(r.err, ==, "");
  run_clear(&r);

  r = run_prunus(NULL, "frobnicate", NULL);
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "prunus: unknown command 'frobnicate'");
  assert_contains(r.err, "prunus train CONFIG"); /* the usage follows */
  g_assert_cmpstr(r.out, ==, "");
  run_clear(&r);

  r = run_prunus(NULL, "help", "frobnicate", NULL);
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "prunus: help: unknown command 'frobnicate'");
  g_assert_cmpstr(r.out, ==, "");
  run_clear(&r);

  r = run_prunus(NULL, "plugins", "--frobnicate", NULL); /* an option, not a config path */
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "prunus plugins: unknown option --frobnicate");
  run_clear(&r);

  r = run_prunus(NULL, NULL, NULL); /* no arguments at all */
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "Usage:");
  run_clear(&r);

  r = run_prunus(NULL, "train", NULL); /* no CONFIG */
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "prunus train: expected CONFIG");
  run_clear(&r);

  r = run_prunus(NULL, "train", "a.cfg", "--no-such-option", NULL);
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "--no-such-option");
  run_clear(&r);

  /* a command lists (and takes) only the options it honours: eval and groups write no
   * run folder, so -o and --quiet would do nothing there */
  r = run_prunus(NULL, "eval", "--help", NULL);
  g_assert_cmpint(r.status, ==, 0);
  assert_contains(r.out, "--set=KEY=VALUE");
  assert_contains(r.out, "--threads=N");
  g_assert_null(strstr(r.out, "--output"));
  g_assert_null(strstr(r.out, "--quiet"));
  run_clear(&r);
  r = run_prunus(NULL, "groups", "a.cfg", "-o", "somewhere", NULL);
  g_assert_cmpint(r.status, ==, 2);
  assert_contains(r.err, "Unknown option -o");
  run_clear(&r);
}

// ----------------------------------------------------------------------------
// Config errors: exit 1, the message names what to fix

static void test_config_unknown_key(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = NULL;
  char *cfg = write_config(f->dir, "unknown.cfg", "3", "  lr_decay = 0.5;\n", &text);
  char *run = g_build_filename(f->dir, "run-unknown", NULL);
  Run r = run_prunus(f->dir, "train", cfg, "-o", run, "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *want = g_strdup_printf("prunus: error: %s:%d: unknown key 'train.lr_decay'\n", cfg,
                               line_of(text, "lr_decay"));
  g_assert_cmpint(line_of(text, "lr_decay"), ==, 28);
  g_assert_cmpstr(r.err, ==, want);
  g_assert_false(g_file_test(run, G_FILE_TEST_EXISTS)); /* nothing written */
  g_free(want);
  run_clear(&r);
  g_free(run);
  g_free(text);
  g_free(cfg);
}

static void test_config_wrong_type(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = NULL;
  char *cfg = write_config(f->dir, "type.cfg", "\"three\"", "", &text);
  Run r = run_prunus(f->dir, "train", cfg, "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *want = g_strdup_printf(
      "prunus: error: %s:%d: key 'train.epochs': expected an integer, "
      "found a string\n",
      cfg, line_of(text, "epochs"));
  g_assert_cmpstr(r.err, ==, want);
  g_free(want);
  run_clear(&r);
  g_free(text);
  g_free(cfg);
}

static void test_config_missing_file(Fixture *f, gconstpointer data) {
  (void)data;
  char *cfg = g_build_filename(f->dir, "no-such.cfg", NULL);
  Run r = run_prunus(f->dir, "train", cfg, NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *want = g_strdup_printf(
      "prunus: error: cannot read config file '%s': No such file or "
      "directory\n",
      cfg);
  g_assert_cmpstr(r.err, ==, want);
  g_free(want);
  run_clear(&r);
  /* eval reads the config too */
  r = run_prunus(f->dir, "eval", "x.safetensors", cfg, NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, cfg);
  run_clear(&r);
  g_free(cfg);
  /* an output layer narrower than the labels: the message names the model's key too */
  r = run_prunus(f->dir, "train", f->config, "--set", "model.layers[3].units=3", NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "train-labels-idx1-ubyte: label at index ");
  assert_contains(r.err,
                  "has value 3, but the model outputs 3 classes (the units of the last "
                  "layer in model.layers): labels must be < 3\n");
  run_clear(&r);
  /* a model that flattens its input first takes any shape of the images' size */
  r = run_prunus(f->dir, "train", f->config, "--set", "model.input=[64, 1, 1]", "--set",
                 "train.epochs=1", "-o", "flat-input", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  /* eval checks the keys as train does (only run's own groups go unread) */
  r = run_prunus(f->dir, "eval", "x.safetensors", f->config, "--set", "bogus=1", NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "prunus: error: --set bogus: unknown key 'bogus'");
  run_clear(&r);
  /* a device would never end (and a pipe cannot be read twice): files only */
  r = run_prunus(f->dir, "train", "/dev/zero", NULL);
  g_assert_cmpint(r.status, ==, 1);
  g_assert_cmpstr(
      r.err, ==,
      "prunus: error: cannot read config file '/dev/zero': it is a device, not a file (write "
      "it to a file)\n");
  run_clear(&r);
}

static void test_config_bad_set(Fixture *f, gconstpointer data) {
  (void)data;
  Run r = run_prunus(f->dir, "train", f->config, "--set", "train.epochs=x", NULL);
  g_assert_cmpint(r.status, ==, 1);
  g_assert_cmpstr(r.err, ==,
                  "prunus: error: --set train.epochs=x: key 'train.epochs' expects an integer, "
                  "found 'x'\n");
  run_clear(&r);
  /* A value out of range is named with where it came from. */
  r = run_prunus(f->dir, "train", f->config, "--set", "train.epochs=0", NULL);
  g_assert_cmpint(r.status, ==, 1);
  g_assert_cmpstr(r.err, ==,
                  "prunus: error: --set train.epochs: key 'train.epochs' = 0 is out of range: "
                  "must be >= 1\n");
  run_clear(&r);
}

static void test_missing_dataset(Fixture *f, gconstpointer data) {
  (void)data;
  char *run = g_build_filename(f->dir, "run-nodata", NULL);
  Run r = run_prunus(f->dir, "train", f->config, "-o", run, "--set",
                     "dataset.test_images=\"gone-idx3-ubyte\"", NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *missing = g_build_filename(f->dir, "gone-idx3-ubyte", NULL);
  /* The path is resolved against the config's folder. */
  char *want =
      g_strdup_printf("prunus: error: %s: cannot open: No such file or directory\n", missing);
  g_assert_cmpstr(r.err, ==, want);
  g_free(want);
  g_assert_false(g_file_test(run, G_FILE_TEST_EXISTS));
  g_free(missing);
  run_clear(&r);
  g_free(run);
}

/* `prunus run` into the folder of a `prunus train` is refused naming the command that
 * wrote it, and the folder is left as it was. */
static void test_run_into_train_folder(Fixture *f, gconstpointer data) {
  (void)data;
  char *run = g_build_filename(f->dir, "run-train", NULL);
  Run r = run_prunus(f->dir, "train", f->config, "-o", run, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *summary = g_build_filename(run, "summary.json", NULL);
  char *before = NULL;
  g_assert_true(g_file_get_contents(summary, &before, NULL, NULL));
  char *text = NULL;
  char *cfg = write_run_config(f->dir, "tiny-run.cfg", G_STRINGIFY(TINY_EPOCHS), &text);
  r = run_prunus(f->dir, "run", cfg, "-o", run, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *want = g_strdup_printf(
      "prunus: error: %s holds the results of `prunus train`, not of "
      "`prunus run`; choose another -o RUN_DIR",
      summary);
  if (!g_str_has_prefix(r.err, want)) g_error("expected '%s...' in: %s", want, r.err);
  run_clear(&r);
  char *after = NULL;
  g_assert_true(g_file_get_contents(summary, &after, NULL, NULL));
  g_assert_cmpstr(after, ==, before);
  g_free(after);
  g_free(want);
  g_free(before);
  g_free(summary);
  /* and the other way round: `prunus train` into a run's folder would overwrite its
   * summary.json and metrics.jsonl; refused, the folder as it was */
  char *run2 = g_build_filename(f->dir, "run-run", NULL);
  r = run_prunus(f->dir, "run", cfg, "-o", run2, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  summary = g_build_filename(run2, "summary.json", NULL);
  char *metrics = g_build_filename(run2, "metrics.jsonl", NULL);
  char *metrics_before = NULL;
  g_assert_true(g_file_get_contents(summary, &before, NULL, NULL));
  g_assert_true(g_file_get_contents(metrics, &metrics_before, NULL, NULL));
  r = run_prunus(f->dir, "train", f->config, "-o", run2, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 1);
  want = g_strdup_printf(
      "prunus: error: %s holds the results of `prunus run`, not of "
      "`prunus train`; choose another -o RUN_DIR",
      summary);
  if (!g_str_has_prefix(r.err, want)) g_error("expected '%s...' in: %s", want, r.err);
  run_clear(&r);
  g_assert_true(g_file_get_contents(summary, &after, NULL, NULL));
  g_assert_cmpstr(after, ==, before);
  g_free(after);
  g_assert_true(g_file_get_contents(metrics, &after, NULL, NULL));
  g_assert_cmpstr(after, ==, metrics_before);
  g_free(after);
  g_free(metrics_before);
  g_free(metrics);
  g_free(want);
  g_free(before);
  g_free(summary);
  g_free(run2);
  g_free(cfg);
  g_free(text);
  g_free(run);
}

/* `prunus run` checks every experiment before it reads the dataset: a typo in the
 * last one is refused at once, with nothing written (here the dataset is missing as
 * well, and it is the typo that is reported). */
/* The tiny config with a 2-round magnitude schedule and two experiments, "a" as the
 * base and "b" with b_prune inside its prune group (transfer full). */
static char *two_experiments_text(const char *b_prune) {
  char *base = g_strdup_printf(CONFIG_TEMPLATE, "1", "");
  char *text = g_strdup_printf(
      "%s"
      "prune = {\n"
      "  schedule = { rounds = 2; amount = 0.5; };\n"
      "  criterion = { plugin = \"magnitude\"; };\n"
      "  granularity = { plugin = \"weight\"; };\n"
      "  retrain = { plugin = \"finetune\"; epochs = 1; };\n"
      "};\n"
      "experiments = (\n"
      "  { name = \"a\"; },\n"
      "  { name = \"b\"; prune = { %s }; }\n"
      ");\n",
      base, b_prune);
  g_free(base);
  return text;
}

static void test_run_refused_before_training(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = two_experiments_text("criterion = { plugin = \"magnitud\"; };");
  char *cfg = testutil_write_file(f->dir, "typo.cfg", text, strlen(text));
  char *run = g_build_filename(f->dir, "run-typo", NULL);
  char *cache = g_build_filename(f->dir, "cache-typo", NULL);
  Run r = run_prunus(f->dir, "run", cfg, "-o", run, "--cache", cache, "--threads", "1", "--set",
                     "dataset.train_images=\"gone-idx3-ubyte\"", NULL);
  g_assert_cmpint(r.status, ==, 1);
  g_assert_cmpint(line_of(text, "magnitud\""), ==, 37);
  char *want = g_strdup_printf(
      "prunus: error: experiment 'b': %s:%d: prune.criterion: no "
      "criterion plugin named 'magnitud'; did you mean 'magnitude'? (available: ",
      cfg, line_of(text, "magnitud\""));
  if (!g_str_has_prefix(r.err, want)) g_error("expected '%s...' in: %s", want, r.err);
  assert_contains(r.err, "magnitude"); /* the list of those that exist */
  g_assert_cmpstr(r.out, ==, "");
  g_assert_false(g_file_test(run, G_FILE_TEST_EXISTS));
  g_assert_false(g_file_test(cache, G_FILE_TEST_EXISTS));
  g_free(want);
  run_clear(&r);
  /* with the typo mended, a --cache folder that cannot be made is refused before
   * anything trains or is written */
  char *nowhere = g_build_filename(cfg, "cache", NULL); /* under a file */
  r = run_prunus(f->dir, "run", cfg, "-o", run, "--cache", nowhere, "--threads", "1", "--set",
                 "experiments.[1].prune.criterion.plugin=\"magnitude\"", NULL);
  g_assert_cmpint(r.status, ==, 1);
  want = g_strdup_printf("prunus: error: --cache %s: cannot create the folder: ", nowhere);
  if (!g_str_has_prefix(r.err, want)) g_error("expected '%s...' in: %s", want, r.err);
  g_assert_false(g_file_test(run, G_FILE_TEST_EXISTS));
  g_free(want);
  g_free(nowhere);
  run_clear(&r);
  g_free(cache);
  g_free(run);
  g_free(cfg);
  g_free(text);
}

/* A --set of a base key that an experiment's entry sets too does not reach that
 * experiment: said once on stderr, naming the entry's line and the key to set instead. */
static void test_run_set_replaced(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = two_experiments_text("retrain = { epochs = 2; };");
  char *cfg = testutil_write_file(f->dir, "replaced.cfg", text, strlen(text));
  char *run = g_build_filename(f->dir, "run-replaced", NULL);
  Run r =
      run_prunus(f->dir, "run", cfg, "-o", run, "--threads", "1", "--set", "prune.retrain.epochs=3",
                 "--set", "dataset.train_images=\"gone-idx3-ubyte\"", NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *want = g_strdup_printf(
      "prunus: warning: --set prune.retrain.epochs does not reach the experiment whose entry "
      "sets it too (%s:%d): its own value wins there; --set experiments[N].prune.retrain.epochs "
      "changes that one\n",
      cfg, line_of(text, "epochs = 2"));
  if (!g_str_has_prefix(r.err, want)) g_error("expected '%s...' in: %s", want, r.err);
  g_assert_null(strstr(r.err + strlen(want), "warning")); /* once */
  assert_contains(r.err, "gone-idx3-ubyte");
  g_free(want);
  run_clear(&r);
  g_free(cfg), g_free(text);

  /* an element of a list the experiment replaces whole (its own model.layers) */
  text = two_experiments_text("");
  GString *edited = g_string_new(text);
  g_assert_cmpuint(g_string_replace(edited, "prune = {  };",
                                    "model = { layers = ( { type = \"flatten\"; },\n"
                                    "    { type = \"dense\"; units = 4; } ); };",
                                    0),
                   ==, 1);
  cfg = testutil_write_file(f->dir, "replaced-list.cfg", edited->str, edited->len);
  r = run_prunus(f->dir, "run", cfg, "-o", run, "--threads", "1", "--set",
                 "model.layers[1].units=16", "--set", "dataset.train_images=\"gone-idx3-ubyte\"",
                 NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err,
                  "prunus: warning: --set model.layers[1].units does not reach the "
                  "experiment whose entry sets it too");
  run_clear(&r);
  g_string_free(edited, TRUE);
  g_free(run), g_free(cfg), g_free(text);
}

/* Caps on every layer hold a global schedule below its target: the run goes to the end,
 * and its start says on stderr how far the caps let it go. */
static void test_run_caps_warning(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = NULL;
  char *cfg = write_run_config(f->dir, "capped.cfg", "1", &text);
  char *run = g_build_filename(f->dir, "run-capped", NULL);
  Run r = run_prunus(f->dir, "run", cfg, "-o", run, "--threads", "1", "--quiet", "--set",
                     "prune.schedule.max_sparsity=0.25", NULL);
  g_assert_cmpint(r.status, ==, 0);
  assert_contains(r.err,
                  "warning: tiny: the schedule asks for sparsity 0.5000, but the "
                  "max_sparsity caps hold the layers it prunes to at most 0.2500: the "
                  "rounds that would pass it remove less, or nothing\n");
  run_clear(&r);
  g_free(run), g_free(cfg), g_free(text);
}

/* `prunus run` into run_name with the pretraining cache `cache`; returns its stdout
 * (transfer full), asserting it succeeded. */
static char *run_with_cache(Fixture *f, const char *cfg, const char *run_name, const char *cache) {
  char *run = g_build_filename(f->dir, run_name, NULL);
  Run r = run_prunus(f->dir, "run", cfg, "-o", run, "--cache", cache, "--threads", "1", NULL);
  g_assert_cmpint(r.status, ==, 0);
  char *out = g_steal_pointer(&r.out);
  run_clear(&r);
  g_free(run);
  return out;
}

/* The pretraining cache follows what the dataset files hold, not their paths: a run
 * folder shares a cache entry with another run of the same files, misses it once the
 * training images are rewritten with other images under the same path (and pretrains
 * again), and hits it again once the original images are back (a new file, same bytes). */
static void test_run_cache_follows_content(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = NULL;
  char *cfg = write_run_config(f->dir, "cached.cfg", "1", &text);
  char *cache = g_build_filename(f->dir, "shared-cache", NULL);
  char *reused = g_strdup_printf("pretrained network reused from %s/", cache);
  static const char pretraining[] = "pretraining 1 epochs";

  char *out = run_with_cache(f, cfg, "run-1", cache);
  assert_contains(out, pretraining);
  g_assert_null(strstr(out, reused));
  g_free(out);

  out = run_with_cache(f, cfg, "run-2", cache); /* same files: another folder reuses it */
  assert_contains(out, reused);
  g_assert_null(strstr(out, pretraining));
  g_free(out);

  write_quadrant_idx(f->dir, "train", 600, 7); /* same path and size, other images */
  out = run_with_cache(f, cfg, "run-3", cache);
  assert_contains(out, pretraining);
  g_assert_null(strstr(out, reused));
  g_free(out);

  write_quadrant_idx(f->dir, "train", 600, 1); /* the first images again, a new file */
  out = run_with_cache(f, cfg, "run-4", cache);
  assert_contains(out, reused);
  g_assert_null(strstr(out, pretraining));
  g_free(out);

  GDir *entries = g_dir_open(cache, 0, NULL);
  g_assert_nonnull(entries);
  int n_entries = 0;
  while (g_dir_read_name(entries)) n_entries++;
  g_dir_close(entries);
  g_assert_cmpint(n_entries, ==, 2); /* one per training-image content */

  g_free(reused);
  g_free(cache);
  g_free(cfg);
  g_free(text);
}

// ----------------------------------------------------------------------------
// Train, eval, determinism

/* The run directory contract (docs/architecture.md). */
static const char *const metrics_keys[] = {
    "experiment", "seed",         "round", "epoch",   "train_loss",        "train_accuracy",
    "val_loss",   "val_accuracy", "lr",    "seconds", "samples_per_second"};

static const char *const round_keys[] = {"round",
                                         "sparsity",
                                         "params_total",
                                         "params_remaining",
                                         "compression",
                                         "flops",
                                         "speedup_theoretical",
                                         "test_accuracy",
                                         "test_loss",
                                         "val_accuracy",
                                         "val_loss",
                                         "latency_us",
                                         "checkpoint",
                                         "checkpoint_bytes",
                                         "seconds"};

/* Parse "...: test_accuracy 0.9850  test_loss ..." from a result line. */
static double printed_accuracy(const char *out) {
  const char *at = strstr(out, "test_accuracy ");
  if (!at) g_error("no test_accuracy in: %s", out);
  char *end = NULL;
  double v = g_ascii_strtod(at + strlen("test_accuracy "), &end);
  g_assert_true(end != at + strlen("test_accuracy "));
  return v;
}

static void test_train_eval(Fixture *f, gconstpointer data) {
  (void)data;
  char *run = g_build_filename(f->dir, "run", NULL);
  Run r = run_prunus(f->dir, "train", f->config, "-o", run, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpstr(r.err, ==, "");
  assert_contains(r.out, "tiny: test_accuracy ");
  double printed_train = printed_accuracy(r.out);
  run_clear(&r);

  char *ckpt = g_build_filename(run, "model.safetensors", NULL);
  char *metrics = g_build_filename(run, "metrics.jsonl", NULL);
  char *summary_path = g_build_filename(run, "summary.json", NULL);
  char *resolved = g_build_filename(run, "config.cfg", NULL);
  g_assert_true(g_file_test(ckpt, G_FILE_TEST_IS_REGULAR));
  g_assert_true(g_file_test(resolved, G_FILE_TEST_IS_REGULAR));

  /* metrics.jsonl: one object per epoch with the contract keys. */
  char *text = NULL;
  GError *error = NULL;
  g_file_get_contents(metrics, &text, NULL, &error);
  g_assert_no_error(error);
  char **lines = g_strsplit(text, "\n", -1);
  guint n_lines = g_strv_length(lines);
  g_assert_cmpuint(n_lines, ==, TINY_EPOCHS + 1); /* the last "" follows the final newline */
  g_assert_cmpstr(lines[TINY_EPOCHS], ==, "");
  double last_val_accuracy = NAN, first_train_loss = NAN, last_train_loss = NAN;
  for (int e = 0; e < TINY_EPOCHS; e++) {
    PrunusJson *o = prunus_json_parse(lines[e], strlen(lines[e]), &error);
    g_assert_no_error(error);
    for (size_t k = 0; k < G_N_ELEMENTS(metrics_keys); k++)
      if (!prunus_json_get(o, metrics_keys[k]))
        g_error("metrics line %d lacks '%s'", e + 1, metrics_keys[k]);
    g_assert_cmpstr(prunus_json_string(get_typed(o, "experiment", PRUNUS_JSON_STRING)), ==, "tiny");
    g_assert_cmpfloat(get_number(o, "seed"), ==, 3);
    g_assert_cmpfloat(get_number(o, "round"), ==, 0);
    g_assert_cmpfloat(get_number(o, "epoch"), ==, e + 1);
    g_assert_cmpfloat(get_number(o, "train_loss"), >, 0);
    g_assert_cmpfloat(get_number(o, "val_loss"), >, 0);
    g_assert_cmpfloat(get_number(o, "seconds"), >, 0);
    g_assert_cmpfloat(get_number(o, "samples_per_second"), >, 0);
    double va = get_number(o, "val_accuracy");
    g_assert_cmpfloat(va, >=, 0);
    g_assert_cmpfloat(va, <=, 1);
    if (e == 0) first_train_loss = get_number(o, "train_loss");
    last_train_loss = get_number(o, "train_loss");
    last_val_accuracy = va;
    prunus_json_free(o);
  }
  g_assert_cmpfloat(last_train_loss, <, first_train_loss);
  g_strfreev(lines);
  g_free(text);

  /* summary.json: experiments[0].rounds[0] with the contract keys. */
  PrunusJson *summary = parse_json_file(summary_path);
  g_assert_nonnull(get_typed(summary, "prunus_version", PRUNUS_JSON_STRING));
  g_assert_cmpstr(prunus_json_string(get_typed(summary, "config", PRUNUS_JSON_STRING)), ==,
                  f->config);
  const PrunusJson *exps = get_typed(summary, "experiments", PRUNUS_JSON_ARRAY);
  g_assert_cmpuint(prunus_json_length(exps), ==, 1);
  const PrunusJson *exp = prunus_json_index(exps, 0);
  g_assert_cmpstr(prunus_json_string(get_typed(exp, "name", PRUNUS_JSON_STRING)), ==, "tiny");
  g_assert_cmpfloat(get_number(exp, "seed"), ==, 3);
  const PrunusJson *rounds = get_typed(exp, "rounds", PRUNUS_JSON_ARRAY);
  g_assert_cmpuint(prunus_json_length(rounds), ==, 1);
  const PrunusJson *r0 = prunus_json_index(rounds, 0);
  for (size_t k = 0; k < G_N_ELEMENTS(round_keys); k++)
    if (!prunus_json_get(r0, round_keys[k])) g_error("summary round 0 lacks '%s'", round_keys[k]);
  g_assert_cmpfloat(get_number(r0, "round"), ==, 0);
  g_assert_cmpfloat(get_number(r0, "sparsity"), ==, 0);
  g_assert_cmpfloat(get_number(r0, "params_total"), ==, TINY_PARAMS);
  g_assert_cmpfloat(get_number(r0, "params_remaining"), ==, TINY_PARAMS);
  g_assert_cmpfloat(get_number(r0, "compression"), ==, 1);
  g_assert_cmpfloat(get_number(r0, "flops"), ==, TINY_FLOPS);
  g_assert_cmpfloat(get_number(r0, "speedup_theoretical"), ==, 1);
  g_assert_nonnull(get_typed(r0, "latency_us", PRUNUS_JSON_OBJECT));
  g_assert_cmpstr(prunus_json_string(get_typed(r0, "checkpoint", PRUNUS_JSON_STRING)), ==,
                  "model.safetensors");
  char *ckpt_bytes = NULL;
  gsize ckpt_len = 0;
  g_file_get_contents(ckpt, &ckpt_bytes, &ckpt_len, &error);
  g_assert_no_error(error);
  g_assert_cmpfloat(get_number(r0, "checkpoint_bytes"), ==, (double)ckpt_len);
  g_assert_cmpfloat(get_number(r0, "seconds"), >, 0);
  double test_accuracy = get_number(r0, "test_accuracy");
  double val_accuracy = get_number(r0, "val_accuracy");
  g_test_message("tiny: test_accuracy %.4f val_accuracy %.4f test_loss %.4f", test_accuracy,
                 val_accuracy, get_number(r0, "test_loss"));
  /* 4 quadrant classes at noise sd 45 are nearly separable: measured 1.000. */
  g_assert_cmpfloat(test_accuracy, >=, 0.95);
  g_assert_cmpfloat(get_number(r0, "test_loss"), <, 0.3);
  g_assert_cmpfloat(val_accuracy, ==, last_val_accuracy); /* same model, same data */
  g_assert_cmpfloat(fabs(printed_train - test_accuracy), <=, 5e-5);
  prunus_json_free(summary);

  /* eval prints the same test accuracy. */
  r = run_prunus(f->dir, "eval", ckpt, f->config, "--threads", "1", NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpstr(r.err, ==, "");
  assert_contains(r.out, ckpt);
  g_assert_cmpfloat(fabs(printed_accuracy(r.out) - test_accuracy), <=, 5e-5);
  run_clear(&r);
  /* so does the run folder's config.cfg, read from elsewhere: the config's relative
   * dataset paths were written resolved */
  r = run_prunus("/", "eval", ckpt, resolved, "--threads", "1", NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpstr(r.err, ==, "");
  g_assert_cmpfloat(fabs(printed_accuracy(r.out) - test_accuracy), <=, 5e-5);
  run_clear(&r);
  char *resolved_text = NULL;
  g_file_get_contents(resolved, &resolved_text, NULL, &error);
  g_assert_no_error(error);
  char *abs_images = g_build_filename(f->dir, "t10k-images-idx3-ubyte", NULL);
  assert_contains(resolved_text, abs_images);
  g_free(abs_images);
  g_free(resolved_text);

  /* Training again with one thread gives the same bytes. */
  char *run2 = g_build_filename(f->dir, "run2", NULL);
  r = run_prunus(f->dir, "train", f->config, "-o", run2, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *ckpt2 = g_build_filename(run2, "model.safetensors", NULL);
  char *bytes2 = NULL;
  gsize len2 = 0;
  g_file_get_contents(ckpt2, &bytes2, &len2, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(len2, ==, ckpt_len);
  g_assert_cmpint(memcmp(bytes2, ckpt_bytes, ckpt_len), ==, 0);

  /* A different seed gives a different model. */
  char *run3 = g_build_filename(f->dir, "run3", NULL);
  r = run_prunus(f->dir, "train", f->config, "-o", run3, "--threads", "1", "--quiet", "--set",
                 "seed=4", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *ckpt3 = g_build_filename(run3, "model.safetensors", NULL);
  char *bytes3 = NULL;
  gsize len3 = 0;
  g_file_get_contents(ckpt3, &bytes3, &len3, &error);
  g_assert_no_error(error);
  g_assert_true(len3 != ckpt_len || memcmp(bytes3, ckpt_bytes, ckpt_len) != 0);

  /* Truncated checkpoints: exit 1 naming the path, never a crash. */
  const gsize cuts[] = {0, 4, 8, 8 + 20, ckpt_len / 2, ckpt_len - 1};
  for (size_t i = 0; i < G_N_ELEMENTS(cuts); i++) {
    char *name = g_strdup_printf("cut-%zu.safetensors", (size_t)cuts[i]);
    char *cut = testutil_write_file(f->dir, name, ckpt_bytes, cuts[i]);
    r = run_prunus(f->dir, "eval", cut, f->config, NULL);
    g_assert_cmpint(r.status, ==, 1);
    char *want = g_strdup_printf("prunus: error: %s", cut);
    assert_contains(r.err, want);
    g_assert_cmpstr(r.out, ==, "");
    g_free(want);
    run_clear(&r);
    g_free(cut);
    g_free(name);
  }
  /* A checkpoint that does not exist. */
  char *nowhere = g_build_filename(f->dir, "nowhere.safetensors", NULL);
  r = run_prunus(f->dir, "eval", nowhere, f->config, NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, nowhere);
  run_clear(&r);

  g_free(nowhere);
  g_free(bytes3);
  g_free(ckpt3);
  g_free(run3);
  g_free(bytes2);
  g_free(ckpt2);
  g_free(run2);
  g_free(ckpt_bytes);
  g_free(resolved);
  g_free(summary_path);
  g_free(metrics);
  g_free(ckpt);
  g_free(run);
}

/* Checkpoints carry their input normalisation: eval reads only the test files and
 * export needs no config; older checkpoints (without it) fall back to fitting it on
 * the config's training split, to the same numbers and the same C. */
static void test_checkpoint_norm(Fixture *f, gconstpointer data) {
  (void)data;
  char *run = g_build_filename(f->dir, "run", NULL);
  Run r = run_prunus(f->dir, "train", f->config, "-o", run, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *ckpt = g_build_filename(run, "model.safetensors", NULL);
  r = run_prunus(f->dir, "eval", ckpt, f->config, "--threads", "1", NULL);
  g_assert_cmpint(r.status, ==, 0);
  char *want = g_strdup(r.out);
  assert_contains(want, "test_loss ");
  run_clear(&r);

  /* The training images are not read: a missing file changes nothing, nor does the
   * config's normalize (the model was trained with the checkpoint's). */
  const char *const gone = "dataset.train_images=\"gone-idx3-ubyte\"";
  r = run_prunus(f->dir, "eval", ckpt, f->config, "--threads", "1", "--set", gone, NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpstr(r.err, ==, "");
  g_assert_cmpstr(r.out, ==, want);
  run_clear(&r);
  r = run_prunus(f->dir, "eval", ckpt, f->config, "--threads", "1", "--set", gone, "--set",
                 "dataset.normalize=\"unit\"", NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpstr(r.out, ==, want);
  char *note = g_strdup_printf(
      "prunus: note: %s was trained with dataset.normalize = "
      "\"standard\", which is used; %s's \"unit\" is not\n",
      ckpt, f->config);
  g_assert_cmpstr(r.err, ==, note); /* said, since the config says otherwise */
  g_free(note);
  run_clear(&r);

  /* An older checkpoint: the same file without the three entries. */
  GError *error = NULL;
  GHashTable *md = NULL;
  PrunusModel *m = prunus_checkpoint_load(ckpt, 1, NULL, &md, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(g_hash_table_lookup(md, "input_normalize"), ==, "standard");
  g_assert_true(g_hash_table_remove(md, "input_normalize") &&
                g_hash_table_remove(md, "input_mean") && g_hash_table_remove(md, "input_std"));
  char *old = g_build_filename(f->dir, "old.safetensors", NULL);
  g_assert_true(prunus_checkpoint_save(m, old, md, &error));
  g_hash_table_unref(md);
  prunus_model_free(m);
  r = run_prunus(f->dir, "eval", old, f->config, "--threads", "1", NULL);
  g_assert_cmpint(r.status, ==, 0);
  char **parts = g_strsplit(r.out, old, -1);
  char *as_new = g_strjoinv(ckpt, parts);
  g_assert_cmpstr(as_new, ==, want); /* refitted on the training split: the same numbers */
  g_free(as_new);
  g_strfreev(parts);
  run_clear(&r);
  /* which shows the numbers tell normalisations apart: refitted as unit, they move */
  r = run_prunus(f->dir, "eval", old, f->config, "--threads", "1", "--set",
                 "dataset.normalize=\"unit\"", NULL);
  g_assert_cmpint(r.status, ==, 0);
  parts = g_strsplit(r.out, old, -1);
  as_new = g_strjoinv(ckpt, parts);
  g_assert_cmpstr(as_new, !=, want);
  g_free(as_new);
  g_strfreev(parts);
  run_clear(&r);
  r = run_prunus(f->dir, "eval", old, f->config, "--set", gone, NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "gone-idx3-ubyte: cannot open: No such file or directory");
  run_clear(&r);

  /* export --format c: no config needed; the older checkpoint needs it, and both
   * give the same C (the comments name each checkpoint). */
  r = run_prunus(f->dir, "export", ckpt, "--format", "c", "-o", "c-new", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  r = run_prunus(f->dir, "export", old, "--format", "c", "-o", "c-old", NULL);
  g_assert_cmpint(r.status, ==, 1);
  char *err = g_strdup_printf(
      "prunus: error: %s carries no input normalisation (it predates "
      "checkpoints that do): exporting C needs the config it was "
      "trained with, whose training split gives it\n",
      old);
  g_assert_cmpstr(r.err, ==, err);
  g_free(err);
  run_clear(&r);
  r = run_prunus(f->dir, "export", old, f->config, "--format", "c", "-o", "c-old", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *c_new = g_build_filename(f->dir, "c-new", "prunus_model.c", NULL);
  char *c_old = g_build_filename(f->dir, "c-old", "prunus_model.c", NULL);
  char *text_new = NULL, *text_old = NULL;
  g_assert_true(g_file_get_contents(c_new, &text_new, NULL, &error));
  g_assert_true(g_file_get_contents(c_old, &text_old, NULL, &error));
  parts = g_strsplit(text_old, old, -1);
  g_assert_cmpuint(g_strv_length(parts), ==, 2);
  as_new = g_strjoinv(ckpt, parts);
  g_assert_cmpstr(as_new, ==, text_new);
  assert_contains(text_new, "static const float norm_lut[256]");

  /* the PyTorch export never replaces a prunus checkpoint, its own input least of all:
   * refused with the file as it was; over an earlier export of its own it writes */
  char *ckpt_before = NULL, *ckpt_after = NULL;
  gsize len_before = 0, len_after = 0;
  g_assert_true(g_file_get_contents(ckpt, &ckpt_before, &len_before, &error));
  r = run_prunus(f->dir, "export", ckpt, "--format", "safetensors", "-o", ckpt, NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "is the checkpoint being exported; choose another path");
  run_clear(&r);
  r = run_prunus(f->dir, "export", ckpt, "--format", "safetensors", "-o", old, NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "is a prunus checkpoint, which the PyTorch state_dict would replace");
  run_clear(&r);
  g_assert_true(g_file_get_contents(ckpt, &ckpt_after, &len_after, &error));
  g_assert_cmpmem(ckpt_after, len_after, ckpt_before, len_before);
  for (int i = 0; i < 2; i++) {
    r = run_prunus(f->dir, "export", ckpt, "--format", "safetensors", "-o", "pt.safetensors", NULL);
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
  }
  g_free(ckpt_before), g_free(ckpt_after);
  /* an -o that does not name what the format writes: refused before anything is read */
  static const char *const bad_out[][3] = {
      {"c", "", "-o \"\" is empty"},
      {"c", "model.c", "-o model.c ends like a C file, but --format c writes a folder"},
      {"safetensors", ".", "-o . is a folder; --format safetensors writes a file"}};
  for (size_t i = 0; i < G_N_ELEMENTS(bad_out); i++) {
    r = run_prunus(f->dir, "export", ckpt, "--format", bad_out[i][0], "-o", bad_out[i][1], NULL);
    g_assert_cmpint(r.status, ==, 1);
    assert_contains(r.err, bad_out[i][2]);
    assert_contains(r.err, "(nothing was written)");
    run_clear(&r);
  }
  char *model_c = g_build_filename(f->dir, "model.c", NULL);
  g_assert_false(g_file_test(model_c, G_FILE_TEST_EXISTS));
  g_free(model_c);

  g_free(as_new);
  g_strfreev(parts);
  g_free(text_old), g_free(text_new), g_free(c_old), g_free(c_new);
  g_free(old), g_free(want), g_free(ckpt), g_free(run);
}

// ----------------------------------------------------------------------------
// Graph models: train, eval, what refuses them

static const char GRAPH_MODEL[] =
    "model = {\n"
    "  input = [1, 8, 8];\n"
    "  blocks = {\n"
    "    res = (\n"
    "      { name = \"conv\"; type = \"conv2d\"; channels = \"$c\"; kernel = 3; padding = 1; bias = false; },\n"
    "      { name = \"bn\"; type = \"batchnorm\"; },\n"
    "      { name = \"add\"; type = \"add\"; input = [\"bn\", \"$in\"]; },\n"
    "      { name = \"relu\"; type = \"relu\"; }\n"
    "    );\n"
    "  };\n"
    "  layers = (\n"
    "    { name = \"stem\"; type = \"conv2d\"; channels = 4; kernel = 3; padding = 1; },\n"
    "    { name = \"stem_relu\"; type = \"relu\"; },\n"
    "    { block = \"res\"; name = \"res\"; repeat = 2; c = 4; },\n"
    "    { name = \"pool\"; type = \"maxpool2d\"; kernel = 4; },\n"
    "    { name = \"flat\"; type = \"flatten\"; },\n"
    "    { name = \"fc\"; type = \"dense\"; units = 4; }\n"
    "  );\n"
    "};\n";

/* The tiny config with its model replaced by model. (transfer full) */
static char *write_graph_config(const char *dir, const char *name, const char *model,
                                char **text_out) {
  char *base = g_strdup_printf(CONFIG_TEMPLATE, G_STRINGIFY(TINY_EPOCHS), "");
  const char *a = strstr(base, "model = {"), *b = strstr(base, "train = {");
  char *text = g_strdup_printf("%.*s%s%s", (int)(a - base), base, model, b);
  char *path = testutil_write_file(dir, name, text, strlen(text));
  g_free(base);
  if (text_out)
    *text_out = text;
  else
    g_free(text);
  return path;
}

/* "test_accuracy A  test_loss L" of a result line. (transfer full) */
static char *accuracy_part(const char *out) {
  const char *a = strstr(out, "test_accuracy");
  g_assert_nonnull(a);
  const char *b = strstr(a, "test_loss");
  g_assert_nonnull(b);
  const char *e = b + strlen("test_loss");
  while (*e == ' ') e++;
  while (*e && *e != ' ' && *e != '\n') e++;
  return g_strndup(a, (gsize)(e - a));
}

static void test_graph_model(Fixture *f, gconstpointer data) {
  (void)data;
  char *cfg = write_graph_config(f->dir, "graph.cfg", GRAPH_MODEL, NULL);
  char *run = g_build_filename(f->dir, "run-graph", NULL);
  Run r = run_prunus(f->dir, "train", cfg, "-o", run, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  char *trained = accuracy_part(r.out);
  run_clear(&r);
  char *ckpt = g_build_filename(run, "model.safetensors", NULL);
  GError *error = NULL;
  PrunusModel *m = prunus_checkpoint_load(ckpt, 1, NULL, NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(m->layers[7].name, ==, "res.1.bn");
  g_assert_cmpint(m->n_layers, ==, 13);
  g_assert_cmpuint(m->n_buffers, ==, 2 * 2 * 4);
  const float *rvar = m->params + m->layers[7].buf_off + 4;
  g_assert_cmpfloat(rvar[0], !=, 1.0f); /* trained running statistics were saved */
  prunus_model_free(m);
  /* a conv takes the images' shape, not only their size ([4, 4, 4] would cut the 8x8
   * images into four planes) */
  r = run_prunus(f->dir, "train", cfg, "--set", "model.input=[4, 4, 4]", NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "model.input is [4, 4, 4] but ");
  assert_contains(r.err, "train-images-idx3-ubyte holds 1x8x8 images");
  run_clear(&r);
  /* eval reads them back: the numbers train printed */
  r = run_prunus(f->dir, "eval", ckpt, cfg, "--threads", "1", NULL);
  g_assert_cmpint(r.status, ==, 0);
  char *evaluated = accuracy_part(r.out);
  g_assert_cmpstr(evaluated, ==, trained);
  run_clear(&r);
  /* bench and the C export run it (batchnorm folded) */
  r = run_prunus(f->dir, "bench", ckpt, "--batch", "1,4", "--seconds", "0.02", NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_nonnull(strstr(r.out, "\ndense         4 "));
  g_assert_nonnull(strstr(r.out, "\nauto          4 "));
  run_clear(&r);
  /* its options are checked before it measures: each refused with exit 2, no JSON left */
  static const char *const bad_bench[][2] = {
      {"--threads", "0"},  {"--threads", "-4"},       {"--seconds", "-1"}, {"--seconds", "nan"},
      {"--seconds", "1x"}, {"--json", "gone/b.json"}, {"--json", "."},     {"--batch", "100000"},
      {"--batch", ""},     {"--batch", "2,2"},        {"--batch", "1,,2"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad_bench); i++) {
    r = run_prunus(f->dir, "bench", ckpt, bad_bench[i][0], bad_bench[i][1], NULL);
    g_test_message("bench %s %s: %s", bad_bench[i][0], bad_bench[i][1], r.err);
    g_assert_cmpint(r.status, ==, 2);
    char *named = g_strdup_printf("prunus bench: %s", bad_bench[i][0]);
    assert_contains(r.err, named);
    g_free(named);
    run_clear(&r);
  }
  r = run_prunus(f->dir, "export", ckpt, "--format", "c", "-o", "c-graph", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *out = g_build_filename(f->dir, "c-graph", "prunus_model.c", NULL);
  g_assert_true(g_file_test(out, G_FILE_TEST_EXISTS));
  g_free(out);
  g_free(evaluated), g_free(trained), g_free(ckpt), g_free(run), g_free(cfg);
}

static void test_graph_config_errors(Fixture *f, gconstpointer data) {
  (void)data;
  static const struct {
    const char *from, *to, *line_needle, *message;
  } cases[] = {
      {"{ name = \"stem_relu\"; type = \"relu\"; },",
       "{ name = \"stem_relu\"; type = \"relu\"; input = \"pool\"; },", "input = \"pool\"",
       "the model's layers form a cycle: stem_relu <- pool <- res.1.relu <- res.1.add <- "
       "res.1.bn <- res.1.conv <- res.0.relu <- res.0.add <- res.0.bn <- res.0.conv <- stem_relu "
       "(each takes the output of the one after it); no layer may depend on its own output"},
      {"input = [\"bn\", \"$in\"]", "input = [\"bn\", \"stem_rel\"]", "stem_rel\"]",
       "key 'model.blocks.res[2].input': no layer is named 'stem_rel' (a layer is named by its "
       "`name` key, else by its index in the expanded list; \"input\" is the model's input) "
       "(block 'res' used at "},
      {"input = [\"bn\", \"$in\"]", "input = [\"bn\", \"input\"]", "\"input\"]",
       "model layer res.0.add (add): add needs inputs of one shape, but 'res.0.bn' is 4x8x8 and "
       "'input' is 1x8x8 (block 'res' used at "},
      {"{ name = \"flat\"; type = \"flatten\"; },",
       "{ name = \"flat\"; type = \"flatten\"; }, { name = \"norm\"; type = \"batchnorm\"; },",
       "\"norm\"",
       "model layer norm (batchnorm): batchnorm must follow a conv2d or dense layer, "
       "whose outputs it normalises; its input 'flat' is a flatten layer"},
  };
  for (size_t k = 0; k < G_N_ELEMENTS(cases); k++) {
    const char *at = strstr(GRAPH_MODEL, cases[k].from);
    g_assert_nonnull(at);
    char *model = g_strdup_printf("%.*s%s%s", (int)(at - GRAPH_MODEL), GRAPH_MODEL, cases[k].to,
                                  at + strlen(cases[k].from));
    char *text = NULL;
    char *cfg = write_graph_config(f->dir, "bad-graph.cfg", model, &text);
    char *run = g_build_filename(f->dir, "run-bad-graph", NULL);
    Run r = run_prunus(f->dir, "train", cfg, "-o", run, "--quiet", NULL);
    g_assert_cmpint(r.status, ==, 1);
    char *want = g_strdup_printf("prunus: error: %s:%d: %s", cfg,
                                 line_of(text, cases[k].line_needle), cases[k].message);
    if (!g_str_has_prefix(r.err, want)) g_error("expected '%s...' in: %s", want, r.err);
    g_assert_false(g_file_test(run, G_FILE_TEST_EXISTS)); /* nothing written */
    g_free(want);
    run_clear(&r);
    g_free(run), g_free(cfg), g_free(text), g_free(model);
  }
}

/* Structured pruning of a graph removes whole channel groups: the stem and both residual
 * convs share their 4 channels (the adds), so half of them go from all three at once. */
static void test_graph_structured(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = NULL;
  char *cfg = write_graph_config(f->dir, "graph-prune.cfg", GRAPH_MODEL, &text);
  static const char prune[] =
      "prune = {\n"
      "  schedule = { rounds = 1; amount = 0.5; };\n"
      "  criterion = { plugin = \"weight-norm\"; };\n"
      "  granularity = { plugin = \"channel\"; };\n"
      "  retrain = { plugin = \"finetune\"; epochs = 1; };\n"
      "};\n";
  char *full = g_strconcat(text, prune, NULL);
  g_free(testutil_write_file(f->dir, "graph-prune.cfg", full, strlen(full)));
  Run r = run_prunus(f->dir, "run", cfg, "-o", "run-prune", "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpstr(r.out, ==, "report: run-prune/report.html\n"); /* --quiet: the result alone */
  run_clear(&r);
  r = run_prunus(f->dir, "groups", cfg, NULL);
  g_assert_cmpint(r.status, ==, 0);
  assert_contains(r.out, "tiny: 4 groups over 16 units of conv2d/dense layers");
  assert_contains(r.out,
                  "group 1: out stem[1] res.0.conv[1] res.1.conv[1]; bn res.0.bn[1] "
                  "res.1.bn[1]; in res.0.conv[in 1] res.1.conv[in 1] fc[in 4-7]\n");
  assert_contains(r.out, "never removed: 4 units tied to the network's input or output: fc (4)");
  run_clear(&r);
  char *ckpt = g_build_filename(f->dir, "run-prune", "tiny", "round-01.safetensors", NULL);
  GError *error = NULL;
  PrunusModel *m = prunus_checkpoint_load(ckpt, 1, NULL, NULL, &error);
  g_assert_no_error(error);
  static const char *const convs[] = {"stem", "res.0.conv", "res.1.conv"};
  for (int i = 0, found = 0; i < m->n_layers; i++) {
    for (size_t k = 0; k < G_N_ELEMENTS(convs); k++)
      if (!strcmp(m->layers[i].name, convs[k])) g_assert_cmpint(m->layers[i].out.c, ==, 2);
    if (!strcmp(m->layers[i].name, "fc")) g_assert_cmpint(m->layers[i].in.c, ==, 2 * 4);
    found += !strcmp(m->layers[i].name, "fc");
    if (i == m->n_layers - 1) g_assert_cmpint(found, ==, 1);
  }
  prunus_model_free(m);
  g_free(ckpt), g_free(full), g_free(text), g_free(cfg);
}

/* A granularity whose plan splits a channel group, or empties a layer by whole groups
 * (tests/group-plugins/ "bad-groups"): refused naming the group, and nothing of the plan
 * applied (it also masks every weight of that layer): no round-1 checkpoint is written. */
static void check_bad_groups(Fixture *f, const char *mode, const char *want) {
  char *text = NULL;
  char *name = g_strdup_printf("graph-%s.cfg", mode);
  char *cfg = write_graph_config(f->dir, name, GRAPH_MODEL, &text);
  char *prune = g_strdup_printf(
      "plugin_path = \"%s\";\n"
      "prune = {\n"
      "  schedule = { rounds = 1; amount = 0.5; };\n"
      "  criterion = { plugin = \"weight-norm\"; };\n"
      "  granularity = { plugin = \"bad-groups\"; mode = \"%s\"; };\n"
      "  retrain = { plugin = \"finetune\"; epochs = 1; };\n"
      "};\n",
      g_getenv("PRUNUS_TEST_GROUP_PLUGIN_DIR"), mode);
  char *full = g_strconcat(text, prune, NULL);
  g_free(testutil_write_file(f->dir, name, full, strlen(full)));
  char *run = g_strdup_printf("run-%s", mode);
  Run r = run_prunus(f->dir, "run", cfg, "-o", run, "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 1);
  assert_contains(r.err, "prune.granularity plugin 'bad-groups', round 1: ");
  assert_contains(r.err, want);
  char *ckpt = g_build_filename(f->dir, run, "tiny", "round-01.safetensors", NULL);
  g_assert_false(g_file_test(ckpt, G_FILE_TEST_EXISTS));
  run_clear(&r);
  g_free(ckpt), g_free(run), g_free(full), g_free(prune), g_free(text), g_free(cfg), g_free(name);
}

static void test_graph_bad_groups(Fixture *f, gconstpointer data) {
  (void)data;
  check_bad_groups(f, "split",
                   "the plan splits coupled group 0: it removes unit 0 of layer stem but keeps "
                   "unit 0 of layer res.0.conv, whose channels are tied to it (group 0: out "
                   "stem[0] res.0.conv[0] res.1.conv[0];");
  check_bad_groups(f, "empty",
                   "the plan removes all 4 units of layer stem (conv2d), the last with group 3; "
                   "refusing to empty a layer");
}

/* Channels removed layer by layer by a criterion that reads the inputs' cross products
 * with the round's unpruned network (tests/group-plugins/ "cross-units"): removing the
 * first conv's channels shrinks the network before the second conv is calibrated, and
 * the round's copy of the network must shrink with it, or the second conv's inputs X
 * and X0 would not have the same columns. */
static void test_layerwise_cross_channels(Fixture *f, gconstpointer data) {
  (void)data;
  static const char model[] =
      "model = {\n"
      "  input = [1, 8, 8];\n"
      "  layers = (\n"
      "    { name = \"c1\"; type = \"conv2d\"; channels = 4; kernel = 3; padding = 1; bias = false; },\n"
      "    { type = \"batchnorm\"; }, { type = \"relu\"; },\n"
      "    { name = \"c2\"; type = \"conv2d\"; channels = 6; kernel = 3; padding = 1; bias = false; },\n"
      "    { type = \"batchnorm\"; }, { type = \"relu\"; }, { type = \"flatten\"; },\n"
      "    { name = \"fc\"; type = \"dense\"; units = 4; }\n"
      "  );\n"
      "};\n";
  char *text = NULL;
  char *cfg = write_graph_config(f->dir, "cross-channels.cfg", model, &text);
  char *prune = g_strdup_printf(
      "plugin_path = \"%s\";\n"
      "prune = {\n"
      "  schedule = { rounds = 1; amount = 0.5; scope = \"layer\"; };\n"
      "  criterion = { plugin = \"cross-units\"; calib_batches = 2; calib_batch = 16; };\n"
      "  granularity = { plugin = \"channel\"; };\n"
      "  retrain = { plugin = \"finetune\"; epochs = 0; };\n"
      "  recalibrate_bn = true;\n"
      "};\n",
      g_getenv("PRUNUS_TEST_GROUP_PLUGIN_DIR"));
  char *full = g_strconcat(text, prune, NULL);
  g_free(testutil_write_file(f->dir, "cross-channels.cfg", full, strlen(full)));
  Run r = run_prunus(f->dir, "run", cfg, "-o", "run-cross", "--threads", "1", "--quiet", NULL);
  if (r.status != 0) g_error("prunus run: %s", r.err);
  run_clear(&r);
  char *ckpt = g_build_filename(f->dir, "run-cross", "tiny", "round-01.safetensors", NULL);
  GError *error = NULL;
  PrunusModel *m = prunus_checkpoint_load(ckpt, 1, NULL, NULL, &error);
  g_assert_no_error(error);
  for (int i = 0; i < m->n_layers; i++) {
    if (!strcmp(m->layers[i].name, "c1")) g_assert_cmpint(m->layers[i].out.c, ==, 2);
    if (!strcmp(m->layers[i].name, "c2")) {
      g_assert_cmpint(m->layers[i].out.c, ==, 3);
      g_assert_cmpint(m->layers[i].fan_in, ==, 2 * 9);
    }
  }
  prunus_model_free(m);
  g_free(ckpt), g_free(full), g_free(prune), g_free(text), g_free(cfg);
}

/* Weight pruning works on graphs: masks on the conv and dense weights, batchnorm
 * untouched, the checkpoints of every round loadable. */
static void test_graph_weight_pruning(Fixture *f, gconstpointer data) {
  (void)data;
  char *text = NULL;
  char *cfg = write_graph_config(f->dir, "graph-weights.cfg", GRAPH_MODEL, &text);
  static const char prune[] =
      "prune = {\n"
      "  schedule = { rounds = 2; amount = 0.5; };\n"
      "  criterion = { plugin = \"magnitude\"; };\n"
      "  granularity = { plugin = \"weight\"; };\n"
      "  retrain = { plugin = \"finetune\"; epochs = 1; };\n"
      "};\n";
  char *full = g_strconcat(text, prune, NULL);
  g_free(testutil_write_file(f->dir, "graph-weights.cfg", full, strlen(full)));
  Run r = run_prunus(f->dir, "run", cfg, "-o", "run-weights", "--threads", "1", "--quiet", NULL);
  g_assert_cmpint(r.status, ==, 0);
  run_clear(&r);
  char *path = g_build_filename(f->dir, "run-weights", "summary.json", NULL);
  PrunusJson *summary = parse_json_file(path);
  const PrunusJson *exp =
      prunus_json_index(get_typed(summary, "experiments", PRUNUS_JSON_ARRAY), 0);
  const PrunusJson *rounds = get_typed(exp, "rounds", PRUNUS_JSON_ARRAY);
  g_assert_cmpuint(prunus_json_length(rounds), ==, 3);
  const PrunusJson *last = prunus_json_index(rounds, 2);
  /* half of the 388 weights of the convs and fc, then half of the rest: 291 gone */
  g_assert_cmpfloat(fabs(get_number(last, "sparsity") - 291.0 / 388.0), <, 1e-6);
  g_assert_cmpfloat(get_number(last, "params_total"), ==, 412); /* batchnorm's 16 included */
  g_assert_cmpfloat(get_number(last, "params_remaining"), ==, 412 - 291);
  /* the engines run graphs: dense, shrunk and sparse at the default batches 1 and 256 */
  const PrunusJson *latency = get_typed(last, "latency_us", PRUNUS_JSON_OBJECT);
  g_assert_cmpuint(prunus_json_length(latency), ==, 6);
  g_assert_cmpfloat(get_number(latency, "dense_b1"), >, 0.0);
  g_assert_cmpfloat(get_number(latency, "sparse_b256"), >, 0.0);
  const char *rel = prunus_json_string(get_typed(last, "checkpoint", PRUNUS_JSON_STRING));
  char *ckpt = g_build_filename(f->dir, "run-weights", rel, NULL);
  GError *error = NULL;
  PrunusModel *m = prunus_checkpoint_load(ckpt, 1, NULL, NULL, &error);
  g_assert_no_error(error);
  size_t zeros = 0, weights = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    weights += l->w_len;
    for (size_t j = 0; j < l->w_len; j++) zeros += m->mask[l->w_off + j] == 0.0f;
    for (size_t j = 0; j < l->b_len; j++) g_assert_cmpfloat(m->mask[l->b_off + j], ==, 1.0f);
  }
  g_assert_cmpuint(weights, ==, 388);
  g_assert_cmpuint(zeros, ==, 291);
  prunus_model_free(m);
  prunus_json_free(summary);
  g_free(ckpt), g_free(path), g_free(full), g_free(text), g_free(cfg);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  if (argc < 2) {
    fprintf(stderr, "usage: %s [GTest options] PATH/TO/prunus\n", argv[0]);
    return 2;
  }
  prunus_exe = argv[1];
  g_assert_true(g_file_test(prunus_exe, G_FILE_TEST_IS_EXECUTABLE));
  g_test_add_func("/cli/help", test_help);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD("/cli/config/unknown-key", test_config_unknown_key);
  ADD("/cli/config/wrong-type", test_config_wrong_type);
  ADD("/cli/config/missing-file", test_config_missing_file);
  ADD("/cli/config/bad-set", test_config_bad_set);
  ADD("/cli/dataset/missing", test_missing_dataset);
  ADD("/cli/run/into-train-folder", test_run_into_train_folder);
  ADD("/cli/run/refused-before-training", test_run_refused_before_training);
  ADD("/cli/run/cache-follows-content", test_run_cache_follows_content);
  ADD("/cli/run/set-replaced", test_run_set_replaced);
  ADD("/cli/run/caps-warning", test_run_caps_warning);
  ADD("/cli/train-eval", test_train_eval);
  ADD("/cli/checkpoint-norm", test_checkpoint_norm);
  ADD("/cli/graph/train-eval", test_graph_model);
  ADD("/cli/graph/config-errors", test_graph_config_errors);
  ADD("/cli/graph/structured", test_graph_structured);
  ADD("/cli/graph/bad-groups", test_graph_bad_groups);
  ADD("/cli/layerwise-cross-channels", test_layerwise_cross_channels);
  ADD("/cli/graph/weight-pruning", test_graph_weight_pruning);
#undef ADD
  return g_test_run();
}
