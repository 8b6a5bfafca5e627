/* test_faults.c: the `prunus` binary under injected faults (tests/fault-plugins/ and
 * docs/reliability.md): a plugin that crashes, aborts or calls exit() in each of its
 * calls is named in one message and in summary.json, and the same command resumes;
 * an interrupt, a second run into a locked folder, a killed run's stale lock, a
 * plugin rebuilt between two runs, and a file size limit hit in the middle of a
 * run (EFBIG, as a full disk gives ENOSPC), with every earlier round left intact.
 * Usage: test-faults PRUNUS_BINARY (meson passes it). */
#include "checkpoint.h"
#include "fatal.h"
#include "json.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define HINT                                                                                   \
  "rerunning the same command resumes after the last of them (or starts again, when none had " \
  "finished)"

static const char *prunus_bin;
static const char *fault_dir;  /* the fault fixtures' build folder */
static const char *plugin_dir; /* the shipped plugins' build folder */
static char *data_dir;         /* the dataset, the configs and the run folders */

// ----------------------------------------------------------------------------
// The dataset (8x8 images: class k = quadrant k bright) and the config

static void write_idx(const char *name, uint32_t magic, const uint32_t *dims, int ndims,
                      const uint8_t *data, size_t len) {
  GByteArray *a = g_byte_array_new();
  for (int i = -1; i < ndims; i++) {
    uint32_t be = GUINT32_TO_BE(i < 0 ? magic : dims[i]);
    g_byte_array_append(a, (const guint8 *)&be, 4);
  }
  g_byte_array_append(a, data, (guint)len);
  g_free(testutil_write_file(data_dir, name, a->data, a->len));
  g_byte_array_unref(a);
}

static void write_quadrants(const char *prefix, uint32_t n, uint32_t seed) {
  GRand *r = g_rand_new_with_seed(seed);
  uint8_t *img = g_new(uint8_t, n * 64), *lab = g_new(uint8_t, n);
  for (uint32_t i = 0; i < n; i++) {
    int k = g_rand_int_range(r, 0, 4);
    lab[i] = (uint8_t)k;
    for (int p = 0; p < 64; p++) {
      int q = (p / 8 >= 4) * 2 + (p % 8 >= 4);
      img[i * 64 + p] = (uint8_t)CLAMP((q == k ? 150 : 100) + g_rand_int_range(r, -60, 61), 0, 255);
    }
  }
  const uint32_t dims[3] = {n, 8, 8};
  char *name = g_strdup_printf("%s-images", prefix);
  write_idx(name, 0x803, dims, 3, img, n * 64);
  g_free(name);
  name = g_strdup_printf("%s-labels", prefix);
  write_idx(name, 0x801, &n, 1, lab, n);
  g_free(name);
  g_free(img);
  g_free(lab);
  g_rand_free(r);
}

/* data_dir/<name>.cfg with the three fault fixtures and `rounds` rounds. */
static char *write_config(const char *name, int rounds) {
  char *text = g_strdup_printf(
      "name = \"tiny\";\nseed = 3;\n"
      "dataset = { train_images = \"train-images\"; train_labels = \"train-labels\";\n"
      "  test_images = \"test-images\"; test_labels = \"test-labels\"; validation = 100; };\n"
      "model = { input = [1, 8, 8]; layers = ( { type = \"flatten\"; },\n"
      "  { type = \"dense\"; units = 16; }, { type = \"relu\"; }, { type = \"dense\"; units = 4; } "
      "); };\n"
      "train = { epochs = 2; batch = 32; lr = 0.05; };\n"
      "prune = {\n"
      "  schedule = { rounds = %d; amount = 0.5; };\n"
      "  latency = { batches = [1]; seconds = 0.001; };\n"
      "  criterion = { plugin = \"fault\"; calib_batches = 2; calib_batch = 16; };\n"
      "  granularity = { plugin = \"fault-plan\"; };\n"
      "  retrain = { plugin = \"fault-retrain\"; };\n"
      "};\n",
      rounds);
  char *file = g_strdup_printf("%s.cfg", name);
  char *path = testutil_write_file(data_dir, file, text, strlen(text));
  g_free(file);
  g_free(text);
  return path;
}

// ----------------------------------------------------------------------------
// Running prunus

typedef struct {
  int status; /* as waitpid gives it */
  char *out, *err;
} Result;

static void result_clear(Result *r) {
  g_free(r->out);
  g_free(r->err);
}

static rlim_t file_size_limit; /* 0 = none; set in the child before exec */

static void child_setup(gpointer user) {
  (void)user;
  if (file_size_limit) {
    struct rlimit rl = {file_size_limit, file_size_limit};
    setrlimit(RLIMIT_FSIZE, &rl);
  }
}

/* The environment of a run: the plugin path (plugins_first first), the fault (NULL:
 * none). (transfer full) */
static char **run_env(const char *fault, const char *plugins_first) {
  char **env = g_get_environ();
  char *path = g_strdup_printf("%s:%s", plugins_first ? plugins_first : fault_dir, plugin_dir);
  env = g_environ_setenv(env, "PRUNUS_PLUGIN_PATH", path, TRUE);
  env = g_environ_setenv(env, "OPENBLAS_NUM_THREADS", "1", TRUE);
  env = fault ? g_environ_setenv(env, "PRUNUS_TEST_FAULT", fault, TRUE)
              : g_environ_unsetenv(env, "PRUNUS_TEST_FAULT");
  g_free(path);
  return env;
}

/* `prunus run CONFIG -o RUN_DIR --threads 1` (or `prunus report RUN_DIR` when config
 * is NULL), waited for. */
static Result run(const char *config, const char *run_dir, const char *fault,
                  const char *plugins_first) {
  const char *argv_run[] = {prunus_bin, "run", config, "-o", run_dir, "--threads", "1", NULL};
  const char *argv_report[] = {prunus_bin, "report", run_dir, NULL};
  char **env = run_env(fault, plugins_first);
  Result r = {0};
  GError *error = NULL;
  g_assert_true(g_spawn_sync(data_dir, (char **)(config ? argv_run : argv_report), env, 0,
                             child_setup, NULL, &r.out, &r.err, &r.status, &error));
  g_assert_no_error(error);
  g_strfreev(env);
  return r;
}

/* The same, started and not waited for; its stdout and stderr are discarded. */
static GPid start(const char *config, const char *run_dir, const char *fault) {
  const char *argv[] = {prunus_bin, "run", config, "-o", run_dir, "--threads", "1", "-q", NULL};
  char **env = run_env(fault, NULL);
  GPid pid = 0;
  GError *error = NULL;
  g_assert_true(g_spawn_async(
      data_dir, (char **)argv, env,
      G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
      NULL, &pid, &error));
  g_assert_no_error(error);
  g_strfreev(env);
  return pid;
}

static char *run_path(const char *name) { return g_build_filename(data_dir, name, NULL); }

static PrunusJson *read_summary(const char *run_dir) {
  char *path = g_build_filename(run_dir, "summary.json", NULL);
  char *text = NULL;
  gsize len = 0;
  PrunusJson *v = NULL;
  if (g_file_get_contents(path, &text, &len, NULL)) v = prunus_json_parse(text, len, NULL);
  g_free(text);
  g_free(path);
  return v;
}

static const char *str_of(const PrunusJson *o, const char *key) {
  const PrunusJson *v = prunus_json_get(o, key);
  return v && prunus_json_type(v) == PRUNUS_JSON_STRING ? prunus_json_string(v) : NULL;
}

static const PrunusJson *rounds_of(const PrunusJson *summary) {
  const PrunusJson *exps = prunus_json_get(summary, "experiments");
  if (!exps || prunus_json_length(exps) == 0) return NULL;
  return prunus_json_get(prunus_json_index(exps, 0), "rounds");
}

static size_t finished_rounds(const char *run_dir) {
  PrunusJson *s = read_summary(run_dir);
  const PrunusJson *r = s ? rounds_of(s) : NULL;
  size_t n = r ? prunus_json_length(r) : 0;
  prunus_json_free(s);
  return n;
}

static void wait_for_rounds(const char *run_dir, size_t n) {
  for (int i = 0; i < 120000 && finished_rounds(run_dir) < n; i++) g_usleep(1000);
  g_assert_cmpuint(finished_rounds(run_dir), >=, n);
  g_usleep(200000); /* into the next round's calls */
}

static void assert_status(const char *run_dir, const char *status, const char *message_part) {
  PrunusJson *s = read_summary(run_dir);
  g_assert_nonnull(s);
  g_assert_cmpstr(str_of(s, "status"), ==, status);
  if (message_part) {
    g_assert_nonnull(str_of(s, "status_message"));
    g_assert_nonnull(strstr(str_of(s, "status_message"), message_part));
  }
  prunus_json_free(s);
}

static void assert_contains(const char *text, const char *needle) {
  if (!strstr(text, needle)) g_error("expected '%s' in:\n%s", needle, text);
}

static char *read_file(const char *dir, const char *name) {
  char *path = g_build_filename(dir, name, NULL);
  char *text = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  g_free(path);
  return text;
}

/* The finished reference run every resumed run must equal (made once). */
static const char *reference(void) {
  static char *dir;
  if (!dir) {
    char *cfg = write_config("faults", 3);
    dir = run_path("ref");
    Result r = run(cfg, dir, NULL, NULL);
    g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    result_clear(&r);
    g_free(cfg);
  }
  return dir;
}

/* The resumed run ended like the uninterrupted one: its last checkpoint is the same
 * file, byte for byte, and every round's test accuracy matches. */
static void assert_same_file(const char *dir_a, const char *dir_b, const char *name) {
  char *pa = g_build_filename(dir_a, name, NULL), *pb = g_build_filename(dir_b, name, NULL);
  char *a = NULL, *b = NULL;
  gsize la = 0, lb = 0;
  g_assert_true(g_file_get_contents(pa, &a, &la, NULL));
  g_assert_true(g_file_get_contents(pb, &b, &lb, NULL));
  g_assert_cmpmem(a, la, b, lb);
  g_free(a), g_free(b), g_free(pa), g_free(pb);
}

/* metrics.jsonl of run_dir holds the lines of ref's, in order, without their timings
 * (seconds, samples_per_second): the first n of them, or all when n is -1. A round that
 * was stopped and run again is logged once. */
static void assert_same_metrics(const char *run_dir, const char *ref, int n) {
  char *texts[2] = {read_file(run_dir, "metrics.jsonl"), read_file(ref, "metrics.jsonl")};
  GPtrArray *lines[2];
  for (int k = 0; k < 2; k++) {
    lines[k] = g_ptr_array_new_with_free_func(g_free);
    char **split = g_strsplit(texts[k], "\n", -1);
    for (char **l = split; *l && **l; l++) {
      PrunusJson *v = prunus_json_parse(*l, strlen(*l), NULL);
      g_assert_nonnull(v); /* every line whole */
      prunus_json_object_set(v, "seconds", prunus_json_new_null());
      prunus_json_object_set(v, "samples_per_second", prunus_json_new_null());
      g_ptr_array_add(lines[k], prunus_json_to_string(v, 0));
      prunus_json_free(v);
    }
    g_strfreev(split);
  }
  guint want = n < 0 ? lines[1]->len : (guint)n;
  g_assert_cmpuint(lines[0]->len, ==, want);
  g_assert_cmpuint(lines[1]->len, >=, want);
  for (guint i = 0; i < want; i++)
    g_assert_cmpstr(g_ptr_array_index(lines[0], i), ==, g_ptr_array_index(lines[1], i));
  for (int k = 0; k < 2; k++) g_ptr_array_unref(lines[k]), g_free(texts[k]);
}

static void assert_same_as(const char *run_dir, const char *ref) {
  assert_same_file(run_dir, ref, "tiny/round-03.safetensors");
  assert_same_metrics(run_dir, ref, -1);
  PrunusJson *x = read_summary(run_dir), *y = read_summary(ref);
  const PrunusJson *rx = rounds_of(x), *ry = rounds_of(y);
  g_assert_cmpuint(prunus_json_length(rx), ==, 4);
  g_assert_cmpuint(prunus_json_length(ry), ==, 4);
  for (size_t i = 0; i < 4; i++)
    g_assert_cmpfloat(
        prunus_json_number(prunus_json_get(prunus_json_index(rx, i), "test_accuracy")), ==,
        prunus_json_number(prunus_json_get(prunus_json_index(ry, i), "test_accuracy")));
  prunus_json_free(x), prunus_json_free(y);
}

// ----------------------------------------------------------------------------
// Faults in each plugin call

typedef struct {
  const char *fault;  /* PRUNUS_TEST_FAULT */
  int signal;         /* the signal it ends with (without a sanitizer in the way) */
  const char *event;  /* "fatal signal SIGSEGV" */
  const char *call;   /* "score() of prune.criterion plugin 'fault' (" */
  const char *where;  /* "experiment 'tiny', round 2" */
  size_t kept_rounds; /* rounds on disk afterwards; -1: no run folder at all */
} Fault;

static const Fault fatal_faults[] = {
    {"segv:score:2", SIGSEGV, "fatal signal SIGSEGV (invalid memory access)",
     "in score() of prune.criterion plugin 'fault' (", "experiment 'tiny', round 2", 2},
    {"bus:observe:1", SIGBUS, "fatal signal SIGBUS",
     "in observe() of prune.criterion plugin 'fault' (", "experiment 'tiny', round 1", 1},
    {"fpe:plan:2", SIGFPE, "fatal signal SIGFPE",
     "in plan() of prune.granularity plugin 'fault-plan' (", "experiment 'tiny', round 2", 2},
    {"ill:retrain:3", SIGILL, "fatal signal SIGILL (illegal instruction)",
     "in retrain() of prune.retrain plugin 'fault-retrain' (", "experiment 'tiny', round 3", 3},
    {"abort:create:0", SIGABRT, "fatal signal SIGABRT (abort)",
     "in create() of prune.criterion plugin 'fault' (", "experiment 'tiny', before round 0",
     (size_t)-1},
    {"stack:score:1", SIGSEGV, "fatal signal SIGSEGV",
     "in score() of prune.criterion plugin 'fault' (", "experiment 'tiny', round 1", 1},
    {"exit0:score:2", 0, "exit(0) called", "in score() of prune.criterion plugin 'fault' (",
     "experiment 'tiny', round 2", 2},
    {"exit3:retrain:1", 0, "exit(3) called",
     "in retrain() of prune.retrain plugin 'fault-retrain' (", "experiment 'tiny', round 1", 1},
};

static void test_plugin_faults(void) {
  char *cfg = write_config("faults", 3);
  char *so = g_build_filename(fault_dir, "prunus-fault-plugins.so", NULL);
  for (size_t i = 0; i < G_N_ELEMENTS(fatal_faults); i++) {
    const Fault *f = &fatal_faults[i];
    char *name = g_strdup_printf("fault-%zu", i);
    char *dir = run_path(name);
    Result r = run(cfg, dir, f->fault, NULL);
    g_test_message("%s: status 0x%x\n%s", f->fault, r.status, r.err);
    /* never a clean exit; the signal's own status where no sanitizer catches it first */
    g_assert_false(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    /* (a sanitizer's handler, chained after prunus's message, may end it its own way) */
    if (f->signal && !strstr(r.err, "Sanitizer")) {
      g_assert_true(WIFSIGNALED(r.status));
      g_assert_cmpint(WTERMSIG(r.status), ==, f->signal);
    }
    if (!f->signal) {
      g_assert_true(WIFEXITED(r.status));
      g_assert_cmpint(WEXITSTATUS(r.status), ==, strstr(f->fault, "exit3") ? 3 : 1);
    }
    /* one message naming the event, the call, the plugin, its path, where; the hint */
    char *event = g_strdup_printf("prunus: %s", f->event);
    char *line = g_strdup_printf("%s%s), %s\n", f->call, so, f->where);
    assert_contains(r.err, event);
    assert_contains(r.err, line);
    g_free(event);
    assert_contains(r.err, "prunus: rounds that finished are kept: " HINT "\n");
    if (f->kept_rounds == (size_t)-1) {
      g_assert_false(g_file_test(dir, G_FILE_TEST_EXISTS)); /* create() runs before writing */
    } else {
      char *message = g_strdup_printf("%s%s), %s", f->call, so, f->where);
      assert_status(dir, "failed", message);
      assert_status(dir, "failed", f->event);
      g_free(message);
      g_assert_cmpuint(finished_rounds(dir), ==, f->kept_rounds);
    }
    g_free(line);
    result_clear(&r);
    g_free(dir);
    g_free(name);
  }
  g_free(so);
  g_free(cfg);
}

/* Calls the host refuses (a plan that empties a layer, before any of it is applied; a
 * train() offset past its schedule): one message naming the plugin, the round and what
 * is wrong, exit 1; the finished rounds stay, and the same command without the fault
 * resumes and ends as the uninterrupted run. */
static void test_refused_calls(void) {
  static const struct {
    const char *fault, *message;
  } refused[] = {
      {"empty:plan:2",
       "prune.granularity plugin 'fault-plan', round 2: the plan removes all "
       "1024 remaining weights of layer 1; refusing to empty a layer"},
      {"offset:retrain:2",
       "train(epochs=1, lr=0, offset=5, total=2): the schedule offset must "
       "be in [0, total)"},
      {"write:score:2", "score() failed: set_weights(layer 1 = '3') was called outside update()"},
  };
  const char *ref = reference();
  char *cfg = write_config("faults", 3);
  for (size_t i = 0; i < G_N_ELEMENTS(refused); i++) {
    char *name = g_strdup_printf("refused-%zu", i);
    char *dir = run_path(name);
    Result r = run(cfg, dir, refused[i].fault, NULL);
    g_test_message("%s: status 0x%x\n%s", refused[i].fault, r.status, r.err);
    g_assert_true(WIFEXITED(r.status));
    g_assert_cmpint(WEXITSTATUS(r.status), ==, 1);
    assert_contains(r.err, refused[i].message);
    assert_status(dir, "failed", refused[i].message);
    g_assert_cmpuint(finished_rounds(dir), ==, 2); /* rounds 0 and 1 */
    result_clear(&r);
    r = run(cfg, dir, NULL, NULL);
    g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    assert_contains(r.out, "tiny: resuming after round 1 of 3");
    assert_status(dir, "finished", NULL);
    assert_same_as(dir, ref);
    result_clear(&r);
    g_free(dir);
    g_free(name);
  }
  g_free(cfg);
}

static void test_crash_then_resume(void) {
  const char *ref = reference();
  char *cfg = write_config("faults", 3);
  char *dir = run_path("crash-resume");
  Result r = run(cfg, dir, "segv:score:2", NULL);
  g_assert_false(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  /* stdout was a pipe: the lines printed before the crash were not lost in a buffer */
  assert_contains(r.out, "tiny round 1: sparsity");
  result_clear(&r);
  /* the report marks the run unfinished */
  r = run(NULL, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.err, "prunus: note: unfinished run: it failed: fatal signal SIGSEGV");
  char *md = read_file(dir, "summary.md");
  assert_contains(md, "> **Unfinished run**: it failed: fatal signal SIGSEGV");
  g_free(md);
  char *html = read_file(dir, "report.html");
  assert_contains(html, "<p class=\"unfinished\"><strong>Unfinished run</strong>: it failed:");
  g_free(html);
  result_clear(&r);
  /* a training file rewritten since: refused before anything is written, naming both
   * digests; restored, the same command resumes */
  char *before = read_file(dir, "summary.json");
  write_quadrants("train", 500, 7);
  r = run(cfg, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1);
  char *expected = g_strdup_printf(
      "prunus: error: %s/summary.json: the run's rounds were trained "
      "on other data (digest ",
      dir);
  assert_contains(r.err, expected);
  assert_contains(r.err, "a dataset file changed since the run began");
  g_free(expected);
  char *after = read_file(dir, "summary.json");
  g_assert_cmpstr(after, ==, before);
  g_free(after), g_free(before);
  result_clear(&r);
  write_quadrants("train", 500, 1);
  /* the same command resumes after round 1 and ends as the uninterrupted run */
  r = run(cfg, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.out, "(it had stopped: failed: fatal signal SIGSEGV");
  assert_contains(r.out, "tiny: resuming after round 1 of 3");
  assert_status(dir, "finished", NULL);
  assert_same_as(dir, ref);
  md = read_file(dir, "summary.md");
  g_assert_null(strstr(md, "Unfinished"));
  g_free(md);
  result_clear(&r);
  /* the run folder's own config.cfg (its paths absolute) is the same run */
  char *saved = g_build_filename(dir, "config.cfg", NULL);
  r = run(saved, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.out, "tiny: already complete, skipped");
  assert_same_as(dir, ref);
  result_clear(&r);
  g_free(saved);
  g_free(dir);
  g_free(cfg);
}

static void test_interrupt(void) {
  const char *ref = reference();
  char *cfg = write_config("faults", 3);
  char *dir = run_path("interrupt");
  char **env = run_env("hang:score:2", NULL);
  const char *argv[] = {prunus_bin, "run", cfg, "-o", dir, "--threads", "1", "-q", NULL};
  GPid pid = 0;
  int err_fd = -1;
  GError *error = NULL;
  g_assert_true(g_spawn_async_with_pipes(data_dir, (char **)argv, env,
                                         G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                                         NULL, NULL, &pid, NULL, NULL, &err_fd, &error));
  g_assert_no_error(error);
  g_strfreev(env);
  wait_for_rounds(dir, 2); /* hanging in round 2's score() */
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  g_spawn_close_pid(pid);
  GIOChannel *ch = g_io_channel_unix_new(err_fd);
  char *err = NULL;
  g_io_channel_read_to_end(ch, &err, NULL, NULL);
  g_io_channel_unref(ch);
  close(err_fd);
  g_test_message("%s", err);
  g_assert_true(WIFSIGNALED(status));
  g_assert_cmpint(WTERMSIG(status), ==, SIGINT);
  assert_contains(err,
                  "prunus: interrupted by SIGINT in score() of prune.criterion plugin "
                  "'fault' (");
  assert_contains(err, "experiment 'tiny', round 2\n");
  assert_status(dir, "interrupted", "interrupted by SIGINT in score()");
  g_assert_cmpuint(finished_rounds(dir), ==, 2);
  g_free(err);
  Result r = run(cfg, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.out, "(it had stopped: interrupted: interrupted by SIGINT");
  assert_same_as(dir, ref);
  result_clear(&r);
  g_free(dir);
  g_free(cfg);
}

/* Wall-clock bounds are multiplied by PRUNUS_TEST_TIME_FACTOR when it is set (at least
 * 1): scripts/valgrind.sh sets it to its timeout multiplier, because a process under
 * memcheck starts tens of times slower and the bound is about the order of the steps,
 * not the speed of the machine. */
static double time_factor(void) {
  const char *s = g_getenv("PRUNUS_TEST_TIME_FACTOR");
  double f = s ? g_ascii_strtod(s, NULL) : 1.0;
  return f >= 1.0 ? f : 1.0;
}

static void test_lock(void) {
  const char *ref = reference();
  char *cfg = write_config("faults", 3);
  char *dir = run_path("locked");
  GPid pid = start(cfg, dir, "hang:score:2");
  wait_for_rounds(dir, 2);
  char *before = read_file(dir, "summary.json");
  char *metrics_before = read_file(dir, "metrics.jsonl");
  /* a second run into the folder is refused at once, naming the folder and the PID */
  gint64 t0 = g_get_monotonic_time();
  Result r = run(cfg, dir, NULL, NULL);
  double took = (g_get_monotonic_time() - t0) / 1e6;
  g_test_message("refused after %.2f s: %s", took, r.err);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1);
  /* at once: the lock is taken before the data is read (0.02 s measured; the bound
   * leaves room for a loaded machine and the sanitizers) */
  g_assert_cmpfloat(took, <, 5.0 * time_factor());
  char *expected = g_strdup_printf(
      "prunus: error: the run folder %s is in use: process %d is "
      "running `prunus run` into it",
      dir, (int)pid);
  assert_contains(r.err, expected);
  g_free(expected);
  char *after = read_file(dir, "summary.json");
  g_assert_cmpstr(after, ==, before); /* and changed nothing */
  g_free(after);
  after = read_file(dir, "metrics.jsonl");
  g_assert_cmpstr(after, ==, metrics_before);
  g_free(after);
  g_free(metrics_before);
  result_clear(&r);
  /* the report says it is still running */
  r = run(NULL, dir, NULL, NULL);
  expected = g_strdup_printf("unfinished run: prunus (process %d) is still running it.", (int)pid);
  assert_contains(r.err, expected);
  g_free(expected);
  result_clear(&r);
  /* killed without a word: its lock does not block, the report says what is known */
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  g_spawn_close_pid(pid);
  assert_status(dir, "running", NULL);
  r = run(NULL, dir, NULL, NULL);
  assert_contains(r.err, "unfinished run: the process that ran it stopped without recording why");
  result_clear(&r);
  r = run(cfg, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.out, "(it had stopped: killed or crashed without a word)");
  assert_same_as(dir, ref);
  result_clear(&r);
  g_free(before);
  g_free(dir);
  g_free(cfg);
}

static void test_plugin_rebuilt(void) {
  char *cfg = write_config("faults", 3);
  char *dir = run_path("rebuilt");
  char *mine = run_path("my-plugins");
  g_assert_cmpint(g_mkdir_with_parents(mine, 0755), ==, 0);
  char *src = g_build_filename(fault_dir, "prunus-fault-plugins.so", NULL);
  char *so = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(src, &so, &len, NULL));
  char *dst = g_build_filename(mine, "prunus-fault-plugins.so", NULL);
  g_assert_true(g_file_set_contents(dst, so, (gssize)len, NULL));
  Result r = run(cfg, dir, "segv:score:2", mine);
  result_clear(&r);
  /* another build of the same plugin: a byte more at the end (still loads) */
  char *longer = g_malloc(len + 1);
  memcpy(longer, so, len);
  longer[len] = '\n';
  g_assert_true(g_file_set_contents(dst, longer, (gssize)len + 1, NULL));
  r = run(cfg, dir, NULL, mine);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.err,
                  "prunus: warning: tiny: prune.criterion plugin 'fault' is not the build "
                  "that produced the earlier rounds: 'fault' 1.0.0, sha256 ");
  result_clear(&r);
  /* each round records the build that produced it */
  char *old_sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)so, len);
  char *new_sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)longer, len + 1);
  PrunusJson *s = read_summary(dir);
  const PrunusJson *rounds = rounds_of(s);
  g_assert_cmpuint(prunus_json_length(rounds), ==, 4);
  for (size_t i = 0; i < 4; i++) {
    const PrunusJson *sha = prunus_json_get(prunus_json_index(rounds, i), "plugins_sha256");
    g_assert_cmpstr(str_of(sha, "criterion"), ==, i < 2 ? old_sha : new_sha);
  }
  const PrunusJson *rec = prunus_json_get(
      prunus_json_get(prunus_json_index(prunus_json_get(s, "experiments"), 0), "plugins"),
      "criterion");
  g_assert_cmpstr(str_of(rec, "name"), ==, "fault");
  g_assert_cmpstr(str_of(rec, "version"), ==, "1.0.0");
  g_assert_cmpstr(str_of(rec, "path"), ==, dst);
  g_assert_cmpstr(str_of(rec, "sha256"), ==, new_sha);
  prunus_json_free(s);
  g_free(old_sha), g_free(new_sha);
  g_free(longer), g_free(so);
  g_free(dst), g_free(src), g_free(mine), g_free(dir), g_free(cfg);
}

// ----------------------------------------------------------------------------
// A file size limit hit in the middle of a run

static uint64_t size_of(const char *dir, const char *name) {
  char *path = g_build_filename(dir, name, NULL);
  GStatBuf st;
  uint64_t n = g_stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
  g_free(path);
  return n;
}

/* No temporary file left anywhere under dir (atomic writes clean up after a failure). */
static void assert_no_temp_files(const char *dir) {
  GDir *d = g_dir_open(dir, 0, NULL);
  g_assert_nonnull(d);
  for (const char *n; (n = g_dir_read_name(d));) {
    char *path = g_build_filename(dir, n, NULL);
    if (g_file_test(path, G_FILE_TEST_IS_DIR))
      assert_no_temp_files(path);
    else if (strstr(n, ".tmp-") || strstr(n, ".last-words") ||
             (g_str_has_prefix(n, "summary.json.") && strlen(n) > 13))
      g_error("temporary file left: %s", path);
    g_free(path);
  }
  g_dir_close(d);
}

static void test_file_size_limit(void) {
  /* 20 rounds: summary.json grows past the largest other file before the end */
  char *cfg = write_config("fsize", 20);
  char *ref = run_path("fsize-ref");
  Result r = run(cfg, ref, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  result_clear(&r);
  uint64_t largest = MAX(size_of(ref, "tiny/round-20.safetensors"),
                         size_of(ref, "tiny/round-20.theta.safetensors"));
  g_assert_cmpuint(size_of(ref, "summary.json"), >, largest + 4096);
  char *dir = run_path("fsize");
  file_size_limit = largest + 1024;
  r = run(cfg, dir, NULL, NULL);
  file_size_limit = 0;
  g_test_message("limit %" G_GUINT64_FORMAT " bytes: status 0x%x\n%s", largest + 1024, r.status,
                 r.err);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1);
  assert_contains(r.err, "prunus: error: experiment 'tiny', round ");
  char *expected = g_strdup_printf(": cannot write %s/", dir);
  assert_contains(r.err, expected);
  assert_contains(r.err, "File too large");
  g_free(expected);
  result_clear(&r);
  /* what was written before is whole: summary.json of the last finished round, its
   * checkpoints, every metrics line, no temporary file */
  size_t kept = finished_rounds(dir);
  g_test_message("%zu rounds kept", kept);
  g_assert_cmpuint(kept, >, 2);
  g_assert_cmpuint(kept, <, 21);
  for (size_t i = 0; i < kept; i++) {
    char *name = g_strdup_printf("tiny/round-%02zu.safetensors", i);
    char *path = g_build_filename(dir, name, NULL);
    GError *error = NULL;
    PrunusModel *m = prunus_checkpoint_load(path, 1, NULL, NULL, &error);
    g_assert_no_error(error);
    prunus_model_free(m);
    /* byte for byte the unlimited run's, its θ sidecar too */
    assert_same_file(dir, ref, name);
    char *theta = g_strdup_printf("tiny/round-%02zu.theta.safetensors", i);
    assert_same_file(dir, ref, theta);
    g_free(theta), g_free(path), g_free(name);
  }
  /* every line whole and the unlimited run's: pretraining's 2 epochs, then the epochs
   * of rounds 1 to kept at most (the round that failed may have logged its own) */
  char *metrics = read_file(dir, "metrics.jsonl");
  int n_lines = 0;
  for (const char *c = metrics; *c; c++) n_lines += *c == '\n';
  g_free(metrics);
  g_assert_cmpint(n_lines, >=, (int)kept + 1);
  assert_same_metrics(dir, ref, n_lines);
  assert_no_temp_files(dir);
  /* with the limit lifted, the same command resumes and ends as the run without it */
  r = run(cfg, dir, NULL, NULL);
  g_assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
  assert_contains(r.out, "resuming the run in");
  assert_same_file(dir, ref, "tiny/round-20.safetensors");
  assert_same_metrics(dir, ref, -1);
  assert_status(dir, "finished", NULL);
  result_clear(&r);
  g_free(dir);
  g_free(ref);
  g_free(cfg);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  if (argc < 2) g_error("usage: test-faults PRUNUS_BINARY");
  prunus_bin = argv[1];
  fault_dir = g_getenv("PRUNUS_TEST_FAULT_PLUGIN_DIR");
  plugin_dir = g_getenv("PRUNUS_TEST_PLUGIN_DIR");
  if (!fault_dir || !plugin_dir) g_error("run through meson test (plugin folders unset)");
  data_dir = testutil_mkdtemp();
  write_quadrants("train", 500, 1);
  write_quadrants("test", 200, 2);
  g_test_add_func("/faults/plugin-faults", test_plugin_faults);
  g_test_add_func("/faults/crash-then-resume", test_crash_then_resume);
  g_test_add_func("/faults/refused-calls", test_refused_calls);
  g_test_add_func("/faults/interrupt", test_interrupt);
  g_test_add_func("/faults/lock", test_lock);
  g_test_add_func("/faults/plugin-rebuilt", test_plugin_rebuilt);
  g_test_add_func("/faults/file-size-limit", test_file_size_limit);
  int rc = g_test_run();
  testutil_rmtree(data_dir);
  g_free(data_dir);
  return rc;
}
