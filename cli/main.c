/* main.c: the `prunus` command: parses the subcommand and its options with
 * GOption and calls the library's job API; the only place that picks exit codes. */
#include <prunus/prunus.h>

#include <glib/gstdio.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  const char *name;
  const char *args;
  const char *summary;
  int (*run)(int argc, char **argv);
} Command;

static char *opt_output = NULL;
static char **opt_set = NULL;
static int opt_threads = 0;
static gboolean opt_quiet = FALSE;
static char *opt_only = NULL;
static char *opt_cache = NULL;

/* The options of the commands that read a config: --set for all of them, --threads
 * for those that compute (train, eval, run), -o and --quiet for those that write a run
 * folder (train, run). */
static const GOptionEntry set_entries[] = {{"set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &opt_set,
                                            "Override a config key (repeatable)", "KEY=VALUE"},
                                           {NULL}};

static const GOptionEntry threads_entries[] = {
    {"threads", 't', 0, G_OPTION_ARG_INT, &opt_threads,
     "Threads: training splits its work over N (OpenBLAS at 1 meanwhile); evaluation and the rest give N to OpenBLAS (default: OpenBLAS's count)",
     "N"},
    {NULL}};

static const GOptionEntry run_dir_entries[] = {
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &opt_output, "Run folder (default runs/NAME)",
     "RUN_DIR"},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet, "Print only the result line", NULL},
    {NULL}};

static const GOptionEntry run_entries[] = {
    {"only", 0, 0, G_OPTION_ARG_STRING, &opt_only, "Run only the experiment of this name", "NAME"},
    {"cache", 0, 0, G_OPTION_ARG_FILENAME, &opt_cache,
     "Pretraining cache folder (default RUN_DIR/cache)", "DIR"},
    {NULL}};

static int fail(GError *error) {
  fprintf(stderr, "prunus: error: %s\n", error->message);
  g_error_free(error);
  return 1;
}

/* Parse argv with the job options; expects n_positional positional args after
 * the command name. Returns FALSE after printing a usage error. */
static gboolean parse_job_args(const char *cmd, const char *positional, int n_positional, int *argc,
                               char ***argv) {
  char *param = g_strdup_printf("%s %s", cmd, positional);
  GOptionContext *ctx = g_option_context_new(param);
  g_free(param);
  gboolean writes_run = !strcmp(cmd, "train") || !strcmp(cmd, "run");
  g_option_context_add_main_entries(ctx, set_entries, NULL);
  if (writes_run || !strcmp(cmd, "eval"))
    g_option_context_add_main_entries(ctx, threads_entries, NULL);
  if (writes_run) g_option_context_add_main_entries(ctx, run_dir_entries, NULL);
  if (!strcmp(cmd, "run")) g_option_context_add_main_entries(ctx, run_entries, NULL);
  GError *error = NULL;
  gboolean ok = g_option_context_parse(ctx, argc, argv, &error);
  if (!ok) {
    fprintf(stderr, "prunus %s: %s\n", cmd, error->message);
    g_error_free(error);
  } else if (*argc != n_positional + 2) {
    char *help = g_option_context_get_help(ctx, TRUE, NULL);
    fprintf(stderr, "prunus %s: expected %s\n\n%s", cmd, positional, help);
    g_free(help);
    ok = FALSE;
  }
  g_option_context_free(ctx);
  return ok;
}

static PrunusJobOptions job_options(const char *config) {
  return (PrunusJobOptions){.config_path = config,
                            .overrides = (const char *const *)opt_set,
                            .run_dir = opt_output,
                            .threads = opt_threads,
                            .quiet = opt_quiet,
                            .only = opt_only,
                            .cache_dir = opt_cache};
}

static int cmd_train(int argc, char **argv) {
  if (!parse_job_args("train", "CONFIG", 1, &argc, &argv)) return 2;
  PrunusJobOptions o = job_options(argv[2]);
  GError *error = NULL;
  if (!prunus_job_train(&o, &error)) return fail(error);
  return 0;
}

static int cmd_eval(int argc, char **argv) {
  if (!parse_job_args("eval", "CHECKPOINT CONFIG", 2, &argc, &argv)) return 2;
  PrunusJobOptions o = job_options(argv[3]);
  GError *error = NULL;
  double acc = 0.0, loss = 0.0;
  if (!prunus_job_eval(argv[2], &o, &acc, &loss, &error)) return fail(error);
  printf("%s: test_accuracy %.4f  test_loss %.4f\n", argv[2], acc, loss);
  return 0;
}

static int cmd_run(int argc, char **argv) {
  if (!parse_job_args("run", "CONFIG", 1, &argc, &argv)) return 2;
  PrunusJobOptions o = job_options(argv[2]);
  GError *error = NULL;
  if (!prunus_job_run(&o, &error)) return fail(error);
  return 0;
}

static int cmd_groups(int argc, char **argv) {
  if (!parse_job_args("groups", "CONFIG", 1, &argc, &argv)) return 2;
  PrunusJobOptions o = job_options(argv[2]);
  GError *error = NULL;
  if (!prunus_job_groups(&o, &error)) return fail(error);
  return 0;
}

static int cmd_plugins(int argc, char **argv) {
  if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
    printf(
        "Usage: prunus plugins [CONFIG]\n  List every plugin on the search path (the config's "
        "plugin_path first, then $PRUNUS_PLUGIN_PATH, the folder of the plugins shipped with this prunus: installed or in its build tree).\n");
    return 0;
  }
  const char *config = argc >= 3 ? argv[2] : NULL;
  if (argc > 3) {
    fprintf(stderr, "prunus plugins: expected at most one CONFIG\n");
    return 2;
  }
  if (config && config[0] == '-') {
    fprintf(stderr, "prunus plugins: unknown option %s (usage: prunus plugins [CONFIG])\n", config);
    return 2;
  }
  PrunusJobOptions o = {.config_path = config};
  GError *error = NULL;
  if (!prunus_job_list_plugins(&o, &error)) return fail(error);
  return 0;
}

static int cmd_report(int argc, char **argv) {
  if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
    printf(
        "Usage: prunus report RUN_DIR\n  Rebuild summary.md, summary.csv, plots/ and report.html "
        "of a run folder written by `prunus run` (finished or interrupted), without training.\n");
    return 0;
  }
  if (argc != 3 || argv[2][0] == '-') {
    fprintf(stderr, "prunus report: expected RUN_DIR (a folder written by `prunus run`)\n");
    return 2;
  }
  GError *error = NULL;
  if (!prunus_job_report(argv[2], &error)) return fail(error);
  return 0;
}

/* `prunus bench CHECKPOINT [--batch 1,32,256] [--threads N] [--seconds S] [--json FILE]` */
static int cmd_bench(int argc, char **argv) {
  char *batch_text = NULL, *json_path = NULL;
  int threads = 1;
  double seconds = 0.0;
  char *seconds_text = NULL;
  const GOptionEntry entries[] = {
      {"batch", 'b', 0, G_OPTION_ARG_STRING, &batch_text,
       "Batch sizes, 1 to " G_STRINGIFY(PRUNUS_BENCH_MAX_BATCH) " each (default 1,32,256)",
       "B1,B2,..."},
      {"threads", 't', 0, G_OPTION_ARG_INT, &threads,
       "Threads: sparse kernels and OpenBLAS (1 or 2)", "N"},
      {"seconds", 0, 0, G_OPTION_ARG_STRING, &seconds_text, "Time per measurement (default 0.3)",
       "S"},
      {"json", 0, 0, G_OPTION_ARG_FILENAME, &json_path, "Also write the results as JSON", "FILE"},
      {NULL}};
  GOptionContext *ctx = g_option_context_new("bench CHECKPOINT");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  int rc = 2;
  GArray *batches = g_array_new(FALSE, FALSE, sizeof(int));
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "prunus bench: %s\n", error->message);
    g_clear_error(&error);
    goto out;
  }
  if (argc != 3) {
    fprintf(stderr, "prunus bench: expected CHECKPOINT\n");
    goto out;
  }
  if (threads < 1) {
    fprintf(stderr, "prunus bench: --threads must be 1 or 2, found %d\n", threads);
    goto out;
  }
  if (seconds_text) {
    char *end = NULL;
    seconds = g_ascii_strtod(seconds_text, &end);
    if (end == seconds_text || *end != '\0' || !(seconds > 0.0 && seconds <= 3600.0)) {
      fprintf(stderr, "prunus bench: --seconds expects a time in (0, 3600], found '%s'\n",
              seconds_text);
      goto out;
    }
  }
  /* the JSON is written after every measurement: a path it cannot go to is refused now */
  if (json_path) {
    char *dir = g_path_get_dirname(json_path);
    gboolean folder = g_file_test(json_path, G_FILE_TEST_IS_DIR);
    gboolean writable = g_file_test(dir, G_FILE_TEST_IS_DIR) && g_access(dir, W_OK) == 0;
    if (folder || !writable)
      fprintf(stderr, "prunus bench: --json %s: %s\n", json_path,
              folder ? "is a folder; give a file name"
                     : "its folder does not exist or cannot be written to");
    g_free(dir);
    if (folder || !writable) goto out;
  }
  if (batch_text) {
    char **parts = g_strsplit(batch_text, ",", -1);
    if (!parts[0]) {
      fprintf(stderr, "prunus bench: --batch expects sizes like 1,32,256, found nothing\n");
      g_strfreev(parts);
      goto out;
    }
    for (char **p = parts; *p; p++) {
      char *end = NULL;
      long v = strtol(*p, &end, 10);
      if (end == *p || *end != '\0' || v < 1 || v > PRUNUS_BENCH_MAX_BATCH) {
        fprintf(stderr,
                "prunus bench: --batch expects sizes from 1 to %d like 1,32,256, found '%s'\n",
                PRUNUS_BENCH_MAX_BATCH, *p);
        g_strfreev(parts);
        goto out;
      }
      int b = (int)v;
      for (guint k = 0; k < batches->len; k++)
        if (g_array_index(batches, int, k) == b) {
          fprintf(stderr, "prunus bench: --batch lists %d twice; list each size once\n", b);
          g_strfreev(parts);
          goto out;
        }
      g_array_append_val(batches, b);
    }
    g_strfreev(parts);
  }
  PrunusBenchOptions o = {.batches = (const int *)batches->data,
                          .n_batches = (int)batches->len,
                          .threads = threads,
                          .seconds = seconds,
                          .json_path = json_path};
  rc = prunus_job_bench(argv[2], &o, &error) ? 0 : fail(error);
out:
  g_array_free(batches, TRUE);
  g_free(batch_text);
  g_free(seconds_text);
  g_free(json_path);
  g_option_context_free(ctx);
  return rc;
}

/* `prunus export CHECKPOINT [CONFIG] --format c|safetensors -o OUT` */
static int cmd_export(int argc, char **argv) {
  char *format = NULL, *out_path = NULL;
  const GOptionEntry entries[] = {{"format", 'f', 0, G_OPTION_ARG_STRING, &format,
                                   "c (a folder with a .c and .h) or safetensors", "FORMAT"},
                                  {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out_path,
                                   "Output folder (c) or file (safetensors)", "OUT"},
                                  {NULL}};
  GOptionContext *ctx = g_option_context_new("export CHECKPOINT [CONFIG]");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  int rc = 2;
  PrunusExportFormat f = PRUNUS_EXPORT_C;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "prunus export: %s\n", error->message);
    g_clear_error(&error);
    goto out;
  }
  if (!format || !out_path || argc < 3 || argc > 4) {
    fprintf(stderr, "prunus export: expected CHECKPOINT [CONFIG] --format c|safetensors -o OUT\n");
    goto out;
  }
  if (!strcmp(format, "c")) {
    f = PRUNUS_EXPORT_C; /* CONFIG only for checkpoints without their normalisation */
  } else if (!strcmp(format, "safetensors")) {
    f = PRUNUS_EXPORT_SAFETENSORS;
  } else {
    fprintf(stderr, "prunus export: --format must be c or safetensors, found '%s'\n", format);
    goto out;
  }
  PrunusJobOptions o = {.config_path = argc == 4 ? argv[3] : NULL};
  rc = prunus_job_export(argv[2], &o, f, out_path, &error) ? 0 : fail(error);
out:
  g_free(format);
  g_free(out_path);
  g_option_context_free(ctx);
  return rc;
}

static const Command commands[] = {
    {"train", "CONFIG [-o RUN_DIR] [--set K=V]... [--threads N] [--quiet]",
     "train the config's network and write the run folder", cmd_train},
    {"eval", "CHECKPOINT CONFIG [--set K=V]... [--threads N]",
     "test accuracy and loss of a checkpoint", cmd_eval},
    {"run",
     "CONFIG [-o RUN_DIR] [--set K=V]... [--threads N] [--only NAME] [--cache DIR] [--quiet]",
     "pretrain, then prune and retrain round by round; writes the run folder", cmd_run},
    {"report", "RUN_DIR", "rebuild summary.md/.csv, plots/ and report.html of a run, no training",
     cmd_report},
    {"groups", "CONFIG [--set K=V]...",
     "the channel groups structured pruning removes together (add, concat, batchnorm)", cmd_groups},
    {"plugins", "[CONFIG]", "list the plugins found on the search path", cmd_plugins},
    {"bench", "CHECKPOINT [--batch 1,32,256] [--threads N] [--seconds S] [--json FILE]",
     "latency of every inference engine (dense, masked, sparse, shrunk, auto)", cmd_bench},
    {"export", "CHECKPOINT [CONFIG] --format c|safetensors -o OUT",
     "a dependency-free C file or pruned safetensors for PyTorch", cmd_export},
};

static void usage(FILE *to) {
  fprintf(to, "prunus %s: neural-network pruning\n\nUsage:\n", prunus_version());
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(to, "  prunus %s %s\n      %s\n", commands[i].name, commands[i].args,
            commands[i].summary);
  fprintf(to, "\n`prunus COMMAND --help` lists a command's options.\n");
}

int main(int argc, char **argv) {
  /* line by line even into a file or a pipe: the lines printed before a crash or a kill
   * are then on disk, not lost in a buffer */
  setvbuf(stdout, NULL, _IOLBF, 0);
  setlocale(LC_ALL, "");
  setlocale(LC_NUMERIC, "C");
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "help") && argc == 3) { /* `prunus help run` = `prunus run --help` */
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
      if (!strcmp(argv[2], commands[i].name)) {
        char *args[] = {argv[0], argv[2], "--help", NULL};
        return commands[i].run(3, args);
      }
    fprintf(stderr, "prunus: help: unknown command '%s'\n\n", argv[2]);
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("prunus %s\n", prunus_version());
    return 0;
  }
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc, argv);
  fprintf(stderr, "prunus: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
