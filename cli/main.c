/* main.c: the `prunus` command: parses the subcommand and its options with
 * GOption and calls the library's job API; the only place that picks exit codes. */
#include <prunus/prunus.h>

#include <locale.h>
#include <stdio.h>
#include <string.h>

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

static const GOptionEntry job_entries[] = {
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &opt_output, "Run folder (default runs/NAME)", "RUN_DIR"},
    {"set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &opt_set, "Override a config key (repeatable)", "KEY=VALUE"},
    {"threads", 't', 0, G_OPTION_ARG_INT, &opt_threads, "OpenBLAS threads (default: OpenBLAS's)", "N"},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet, "Print only the result line", NULL},
    {NULL}};

static int fail(GError *error) {
  fprintf(stderr, "prunus: error: %s\n", error->message);
  g_error_free(error);
  return 1;
}

/* Parse argv with the job options; expects n_positional positional args after
 * the command name. Returns FALSE after printing a usage error. */
static gboolean parse_job_args(const char *cmd, const char *positional, int n_positional,
                               int *argc, char ***argv) {
  char *param = g_strdup_printf("%s %s", cmd, positional);
  GOptionContext *ctx = g_option_context_new(param);
  g_free(param);
  g_option_context_add_main_entries(ctx, job_entries, NULL);
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
                            .quiet = opt_quiet};
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

static int cmd_plugins(int argc, char **argv) {
  const char *config = argc >= 3 ? argv[2] : NULL;
  if (argc > 3) {
    fprintf(stderr, "prunus plugins: expected at most one CONFIG\n");
    return 2;
  }
  PrunusJobOptions o = {.config_path = config};
  GError *error = NULL;
  if (!prunus_job_list_plugins(&o, &error)) return fail(error);
  return 0;
}

static const Command commands[] = {
    {"train", "CONFIG [-o RUN_DIR] [--set K=V]... [--threads N] [--quiet]",
     "train the config's network and write the run folder", cmd_train},
    {"eval", "CHECKPOINT CONFIG", "test accuracy and loss of a checkpoint", cmd_eval},
    {"run", "CONFIG [-o RUN_DIR] [--set K=V]... [--threads N] [--quiet]",
     "pretrain, then prune and retrain round by round; writes the run folder", cmd_run},
    {"plugins", "[CONFIG]", "list the plugins found on the search path", cmd_plugins},
};

static void usage(FILE *to) {
  fprintf(to, "prunus %s: neural-network pruning\n\nUsage:\n", prunus_version());
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(to, "  prunus %s %s\n      %s\n", commands[i].name, commands[i].args, commands[i].summary);
  fprintf(to, "\n`prunus COMMAND --help` lists a command's options.\n");
}

int main(int argc, char **argv) {
  setlocale(LC_ALL, "");
  setlocale(LC_NUMERIC, "C");
  if (argc < 2) {
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
