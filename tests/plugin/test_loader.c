/* test_loader.c: the plugin loader and host (core/plugin_loader.c, plugin_host.c)
 * against the built plugins and the broken fixtures: every load failure is a
 * GError naming the path and the cause, "did you mean", plugins by path, the
 * search order, the ABI's growth (plugins built against the revision-1 header
 * load and run a whole pipeline; larger, newer descriptors load), the host's
 * range-checked settings, `prunus plugins` (the binary's path is argv[1] after
 * the GTest options) and an unknown key in a plugin's config group. */
#include "checkpoint.h"
#include "json.h"
#include "plugin_host.h"
#include "rng.h"
#include "testutil.h"

#include <dlfcn.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *prunus_exe;

// ----------------------------------------------------------------------------
// Helpers

static const char *env_dir(const char *name) {
  const char *dir = g_getenv(name);
  if (!dir) g_error("%s is not set (run through meson test)", name);
  return dir;
}

static const char *plugin_dir(void) { return env_dir("PRUNUS_TEST_PLUGIN_DIR"); }
static const char *broken_dir(void) { return env_dir("PRUNUS_TEST_BROKEN_PLUGIN_DIR"); }
static const char *r1_dir(void) { return env_dir("PRUNUS_TEST_R1_PLUGIN_DIR"); }

/* (transfer full) dir/prunus-<name>.so, asserted to exist. */
static char *so_path(const char *dir, const char *name) {
  char *file = g_strdup_printf("prunus-%s.so", name);
  char *path = g_build_filename(dir, file, NULL);
  g_free(file);
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) g_error("%s is missing (not built?)", path);
  return path;
}

/* Look up name for kind in a fresh registry over extra_dir (may be NULL) with
 * PRUNUS_PLUGIN_PATH = env_path (NULL = unset); the lookup must fail in the
 * plugin domain. Returns the error (transfer full). */
static GError *find_fails(const char *extra_dir, const char *env_path, PrunusPluginKind kind,
                          const char *name, const char *slot) {
  if (env_path)
    g_setenv("PRUNUS_PLUGIN_PATH", env_path, TRUE);
  else
    g_unsetenv("PRUNUS_PLUGIN_PATH");
  const char *extra[] = {extra_dir, NULL};
  PrunusPluginRegistry *r = prunus_plugin_registry_new(extra_dir ? extra : NULL);
  GError *error = NULL;
  const PrunusPluginEntry *e = prunus_plugin_registry_find(r, kind, name, slot, &error);
  g_assert_null(e);
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN);
  g_test_message("%s -> %s", name, error->message);
  prunus_plugin_registry_free(r);
  g_unsetenv("PRUNUS_PLUGIN_PATH");
  return error;
}

static void copy_file(const char *from, const char *to) {
  char *data = NULL;
  gsize len = 0;
  GError *error = NULL;
  g_file_get_contents(from, &data, &len, &error);
  g_assert_no_error(error);
  g_file_set_contents(to, data, (gssize)len, &error);
  g_assert_no_error(error);
  g_free(data);
}

// ----------------------------------------------------------------------------
// Load failures

static void test_no_such_plugin(void) {
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, "magnitud", "prune.criterion");
  testutil_assert_error_contains(error, "prune.criterion",
                                 "no criterion plugin named 'magnitud'; did you mean 'magnitude'? "
                                 "(available: ",
                                 "magnitude", "random", plugin_dir(), NULL);
  /* only plugins of the slot's kind are offered */
  g_assert_null(strstr(error->message, "neuron"));
  g_assert_null(strstr(error->message, "finetune"));
  g_error_free(error);

  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_RETRAIN, "rewnd", "prune.retrain");
  testutil_assert_error_contains(error, "no retrain plugin named 'rewnd'; did you mean 'rewind'? ",
                                 "finetune", "rewind", "reinit", "lr-rewind", NULL);
  g_assert_null(strstr(error->message, "magnitude"));
  g_error_free(error);

  /* a swap of neighbours is one edit */
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, "tyalor", "prune.criterion");
  testutil_assert_error_contains(error,
                                 "no criterion plugin named 'tyalor'; did you mean "
                                 "'taylor'? ",
                                 NULL);
  g_error_free(error);
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_RETRAIN, "reinti", "prune.retrain");
  testutil_assert_error_contains(error,
                                 "no retrain plugin named 'reinti'; did you mean "
                                 "'reinit'? ",
                                 NULL);
  g_error_free(error);
  error =
      find_fails(broken_dir(), NULL, PRUNUS_PLUGIN_CRITERION, "broken-creat", "prune.criterion");
  testutil_assert_error_contains(error, "did you mean 'broken-create'? ", NULL);
  g_error_free(error);
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_GRANULARITY, "neutron", "prune.granularity");
  testutil_assert_error_contains(error,
                                 "no granularity plugin named 'neutron'; did you mean "
                                 "'neuron'? ",
                                 NULL);
  g_error_free(error);
  /* nothing near: no suggestion; a near name of another kind is not offered */
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, "gradient", "prune.criterion");
  testutil_assert_error_contains(error, "no criterion plugin named 'gradient' (available: ", NULL);
  g_assert_null(strstr(error->message, "did you mean"));
  g_error_free(error);
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, "neurons", "prune.criterion");
  g_assert_null(strstr(error->message, "did you mean"));
  g_error_free(error);

  /* a path to a file that does not exist: dlopen's reason and the path */
  char *missing = g_build_filename(plugin_dir(), "prunus-nope.so", NULL);
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, missing, "prune.criterion");
  testutil_assert_error_contains(error, "prune.criterion", missing, "cannot load", "No such file",
                                 NULL);
  g_error_free(error);
  g_free(missing);
}

static void test_no_entry_symbol(void) {
  char *path = so_path(broken_dir(), "broken-no-entry");
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion");
  testutil_assert_error_contains(error, "prune.criterion", path,
                                 "no entry symbol 'prunus_plugin_describe'", NULL);
  g_error_free(error);
  /* by name through PRUNUS_PLUGIN_PATH (prunus-NAME.so holds NAME by convention) */
  error =
      find_fails(NULL, broken_dir(), PRUNUS_PLUGIN_CRITERION, "broken-no-entry", "prune.criterion");
  testutil_assert_error_contains(error, "prune.criterion = \"broken-no-entry\"", path,
                                 "prunus_plugin_describe", NULL);
  g_error_free(error);
  g_free(path);
}

static void test_dlopen_failure(void) {
  char *path = so_path(broken_dir(), "broken-undefined");
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion");
  testutil_assert_error_contains(error, path, "cannot load", "prunus_symbol_that_does_not_exist",
                                 NULL);
  g_error_free(error);
  g_free(path);
}

static void test_abi_mismatch(void) {
  char *path = so_path(broken_dir(), "broken-abi");
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion");
  char *theirs = g_strdup_printf("ABI %u", PRUNUS_PLUGIN_ABI_VERSION + 41);
  char *ours = g_strdup_printf("ABI %u", PRUNUS_PLUGIN_ABI_VERSION);
  g_assert_cmpstr(theirs, ==, "ABI 42");
  testutil_assert_error_contains(error, path, "ABI version mismatch", theirs, ours,
                                 prunus_version(), NULL);
  g_error_free(error);
  g_free(theirs);
  g_free(ours);
  g_free(path);
}

static void test_bad_size(void) {
  char *path = so_path(broken_dir(), "broken-size");
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion");
  /* the smallest is revision 1's: 10 pointers' worth after three 32-bit fields */
  g_assert_cmpuint(prunus_plugin_sizes_r1.desc, ==,
                   2 * sizeof(uint32_t) + 8 * sizeof(void *) + (sizeof(void *) == 8 ? 8 : 4));
  char *expected = g_strdup_printf(
      "descriptor 0: field 'size' = 8 is smaller than the %zu bytes "
      "of a revision-1 descriptor, the smallest this prunus (ABI 1, "
      "revision %u) loads",
      prunus_plugin_sizes_r1.desc, PRUNUS_PLUGIN_REVISION);
  testutil_assert_error_contains(error, path, expected, NULL);
  g_error_free(error);
  g_free(expected);
  g_free(path);

  /* an entry point that ignores its index */
  path = so_path(broken_dir(), "broken-index");
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_RETRAIN, path, "prune.retrain");
  testutil_assert_error_contains(error, path,
                                 "prunus_plugin_describe(1) returned the same descriptor as "
                                 "prunus_plugin_describe(0); it must return each descriptor once, "
                                 "then NULL past the last",
                                 NULL);
  g_error_free(error);
  g_free(path);

  /* an ops table smaller than revision 1's */
  path = so_path(broken_dir(), "broken-ops-size");
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_GRANULARITY, path, "prune.granularity");
  expected = g_strdup_printf(
      "descriptor 0: plugin 'broken-ops-size': field 'ops_size' = 8 is "
      "smaller than the %zu bytes of a revision-1 PrunusGranularityOps",
      2 * sizeof(void *));
  testutil_assert_error_contains(error, "prune.granularity: ", path, expected, NULL);
  g_error_free(error);
  g_free(expected);
  g_free(path);
}

static void test_invalid_field(void) {
  char *path = so_path(broken_dir(), "broken-field");
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion");
  testutil_assert_error_contains(error, path, "descriptor 0", "field 'name'", "'Bad Name!'",
                                 "is invalid", NULL);
  g_error_free(error);
  g_free(path);
}

static void test_wrong_kind(void) {
  char *path = so_path(broken_dir(), "broken-kind");
  /* by path */
  GError *error = find_fails(NULL, NULL, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion");
  testutil_assert_error_contains(error, path, "prune.criterion", "'not-a-criterion'",
                                 "is a granularity plugin", "needs a criterion plugin", NULL);
  g_error_free(error);
  /* by name, found by scanning the search path (the other fixtures fail to load) */
  error =
      find_fails(broken_dir(), NULL, PRUNUS_PLUGIN_CRITERION, "not-a-criterion", "prune.criterion");
  testutil_assert_error_contains(error, path, "prune.criterion", "is a granularity plugin",
                                 "needs a criterion plugin", NULL);
  g_error_free(error);
  /* a built-in one in the wrong slot */
  char *weight = so_path(plugin_dir(), "weight");
  error = find_fails(NULL, NULL, PRUNUS_PLUGIN_RETRAIN, "weight", "prune.retrain");
  testutil_assert_error_contains(error, weight, "prune.retrain: plugin 'weight'",
                                 "is a granularity plugin", "needs a retrain plugin", NULL);
  g_error_free(error);
  g_free(weight);
  g_free(path);
}

/* A library that failed once fails the same way when asked again. */
static void test_failure_remembered(void) {
  char *path = so_path(broken_dir(), "broken-abi");
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  GError *e1 = NULL, *e2 = NULL;
  g_assert_null(
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion", &e1));
  g_assert_null(
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion", &e2));
  g_assert_error(e2, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN);
  g_assert_cmpstr(e1->message, ==, e2->message);
  g_error_free(e1);
  g_error_free(e2);
  prunus_plugin_registry_free(r);
  g_free(path);
}

// ----------------------------------------------------------------------------
// create() through the host

static PrunusLayerView dummy_layer = {.name = "1",
                                      .type = "dense",
                                      .index = 1,
                                      .n_units = 1,
                                      .fan_in = 1,
                                      .n_weights = 1,
                                      .positions = 1,
                                      .prunable = 1};
static PrunusModelView dummy_view = {.n_layers = 1, .layers = &dummy_layer};

static const PrunusModelView *dummy_model(void *user) {
  (void)user;
  return &dummy_view;
}

/* Instantiate entry with prune.<slot_key> of a config holding group_body (its
 * first line is line 3); returns the host or NULL with *error set. */
static PrunusHost *instantiate_in(const PrunusPluginEntry *entry, const char *slot_key,
                                  const char *group_body, char **config_path,
                                  PrunusConfig **cfg_out, GError **error) {
  char *dir = testutil_mkdtemp();
  char *text = g_strdup_printf("prune = {\n  %s = {\n%s  };\n};\n", slot_key, group_body);
  *config_path = testutil_write_file(dir, "c.cfg", text, strlen(text));
  g_free(text);
  GError *local = NULL;
  PrunusConfig *cfg = prunus_config_load(*config_path, &local);
  g_assert_no_error(local);
  g_unlink(*config_path);
  g_rmdir(dir);
  g_free(dir);
  config_setting_t *prune =
      prunus_config_get_group(cfg, prunus_config_root(cfg), "prune", TRUE, &local);
  g_assert_no_error(local);
  config_setting_t *group = prunus_config_get_group(cfg, prune, slot_key, TRUE, &local);
  g_assert_no_error(local);
  PrunusHostCallbacks cb = {.model = dummy_model, .pretrain_epochs = 10, .pretrain_lr = 0.1};
  *cfg_out = cfg;
  char *slot = g_strdup_printf("prune.%s", slot_key);
  PrunusHost *h = prunus_host_instantiate(entry, cfg, group, slot, 0, &cb, error);
  g_free(slot);
  return h;
}

static PrunusHost *instantiate(const PrunusPluginEntry *entry, const char *group_body,
                               char **config_path, PrunusConfig **cfg_out, GError **error) {
  return instantiate_in(entry, "criterion", group_body, config_path, cfg_out, error);
}

/* create() of the retrain plugin name with group_body must fail with the host's
 * range message: "<file>:<line>: key 'prune.retrain.<rest>". */
static void retrain_range_fails(PrunusPluginRegistry *r, const char *name, const char *group_body,
                                int line, const char *rest) {
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_RETRAIN, name, "prune.retrain", &error);
  g_assert_no_error(error);
  char *cfg_path = NULL;
  PrunusConfig *cfg = NULL;
  g_assert_null(instantiate_in(e, "retrain", group_body, &cfg_path, &cfg, &error));
  char *expected = g_strdup_printf("%s:%d: key 'prune.retrain.%s", cfg_path, line, rest);
  char *plugin = g_strdup_printf("prune.retrain plugin '%s'", name);
  testutil_assert_error_contains(error, plugin, "create() failed", expected, NULL);
  g_clear_error(&error);
  g_free(plugin);
  g_free(expected);
  prunus_config_free(cfg);
  g_free(cfg_path);
}

/* get_int_range / get_double_range of the real host, through the retrain
 * plugins: the key's file:line, its full name, the value, the range. */
static void test_settings_range(void) {
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  retrain_range_fails(r, "finetune", "    plugin = \"finetune\";\n    epochs = -1;\n", 4,
                      "epochs' = -1 is out of range: must be in [0, 2147483647]");
  retrain_range_fails(r, "finetune", "    plugin = \"finetune\";\n    lr = -0.25;\n", 4,
                      "lr' = -0.25 is out of range: must be >= 0");
  /* lr-rewind replays the end of train.epochs (10 here) */
  retrain_range_fails(r, "lr-rewind", "    plugin = \"lr-rewind\";\n\n    epochs = 11;\n", 5,
                      "epochs' = 11 is out of range: must be in [0, 10]");
  retrain_range_fails(r, "rewind",
                      "    plugin = \"rewind\";\n    to = \"epoch\";\n    epoch = 0;\n", 5,
                      "epoch' = 0 is out of range: must be in [1, 10]");
  retrain_range_fails(r, "reinit", "    plugin = \"reinit\";\n    seed = -3;\n", 4,
                      "seed' = -3 is out of range: must be >= 0");
  /* a wrong type is still the typed getter's error */
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_RETRAIN, "finetune", "prune.retrain", &error);
  char *cfg_path = NULL;
  PrunusConfig *cfg = NULL;
  g_assert_null(instantiate_in(e, "retrain", "    plugin = \"finetune\";\n    epochs = \"two\";\n",
                               &cfg_path, &cfg, &error));
  testutil_assert_error_contains(error,
                                 ":4: key 'prune.retrain.epochs': expected an integer, "
                                 "found a string",
                                 NULL);
  g_clear_error(&error);
  prunus_config_free(cfg);
  g_free(cfg_path);
  /* in range, and the edges */
  PrunusHost *h = instantiate_in(e, "retrain",
                                 "    plugin = \"finetune\";\n    epochs = 0;\n"
                                 "    lr = 0.0;\n",
                                 &cfg_path, &cfg, &error);
  g_assert_no_error(error);
  prunus_host_free(h);
  prunus_config_free(cfg);
  g_free(cfg_path);
  prunus_plugin_registry_free(r);
}

static void test_create_fails(void) {
  char *path = so_path(broken_dir(), "broken-create");
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion", &error);
  g_assert_no_error(error);
  g_assert_nonnull(e);
  g_assert_cmpstr(e->desc->name, ==, "broken-create");
  char *cfg_path = NULL;
  PrunusConfig *cfg = NULL;
  PrunusHost *h = instantiate(e, "    plugin = \"broken-create\";\n", &cfg_path, &cfg, &error);
  g_assert_null(h);
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN);
  testutil_assert_error_contains(error, "prune.criterion plugin 'broken-create'", path,
                                 "create() failed",
                                 "deliberate failure: the model has no conv layers", NULL);
  g_clear_error(&error);
  prunus_config_free(cfg);
  g_free(cfg_path);

  /* a bad setting: create() fails with the host's message naming file:line and key */
  e = prunus_plugin_registry_find(r, PRUNUS_PLUGIN_CRITERION, "magnitude", "prune.criterion",
                                  &error);
  g_assert_no_error(error);
  h = instantiate(e, "    plugin = \"magnitude\";\n    unit_norm = \"l3\";\n", &cfg_path, &cfg,
                  &error);
  g_assert_null(h);
  char *where = g_strdup_printf("%s:4", cfg_path);
  testutil_assert_error_contains(error, "prune.criterion plugin 'magnitude'", "create() failed",
                                 where, "unit_norm", "'l3'", "l1", "l2", NULL);
  g_clear_error(&error);
  g_free(where);
  prunus_config_free(cfg);
  g_free(cfg_path);

  /* and a good one succeeds; destroy() runs in prunus_host_free */
  h = instantiate(e, "    plugin = \"magnitude\";\n    unit_norm = \"l1\";\n", &cfg_path, &cfg,
                  &error);
  g_assert_no_error(error);
  g_assert_nonnull(h);
  g_assert_true(prunus_host_desc(h) == e->desc);
  g_assert_nonnull(prunus_host_state(h));
  prunus_host_free(h);
  prunus_config_free(cfg);
  g_free(cfg_path);

  prunus_plugin_registry_free(r);
  g_free(path);
}

// ----------------------------------------------------------------------------
// Finding plugins

static void test_by_path(void) {
  char *path = so_path(plugin_dir(), "neuron");
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_GRANULARITY, path, "prune.granularity", &error);
  g_assert_no_error(error);
  g_assert_nonnull(e);
  g_assert_cmpstr(e->path, ==, path);
  g_assert_cmpstr(e->desc->name, ==, "neuron");
  g_assert_cmpint(e->desc->kind, ==, PRUNUS_PLUGIN_GRANULARITY);
  g_assert_cmpuint(e->desc->abi_version, ==, PRUNUS_PLUGIN_ABI_VERSION);
  /* the same library by name is the same entry (loaded once) */
  const PrunusPluginEntry *again = prunus_plugin_registry_find(
      r, PRUNUS_PLUGIN_GRANULARITY, "neuron", "prune.granularity", &error);
  g_assert_no_error(error);
  g_assert_true(again == e);
  prunus_plugin_registry_free(r);
  g_free(path);
}

static const char *find_path(const char *extra_dir, const char *env_path, const char *name,
                             PrunusPluginRegistry **r) {
  if (env_path)
    g_setenv("PRUNUS_PLUGIN_PATH", env_path, TRUE);
  else
    g_unsetenv("PRUNUS_PLUGIN_PATH");
  const char *extra[] = {extra_dir, NULL};
  *r = prunus_plugin_registry_new(extra_dir ? extra : NULL);
  g_unsetenv("PRUNUS_PLUGIN_PATH");
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(*r, PRUNUS_PLUGIN_CRITERION, name, "prune.criterion", &error);
  g_assert_no_error(error);
  g_assert_nonnull(e);
  g_assert_cmpstr(e->desc->name, ==, name);
  return e->path;
}

static void test_search_order(void) {
  char *tmp = testutil_mkdtemp();
  char *a = g_build_filename(tmp, "a", NULL), *b = g_build_filename(tmp, "b", NULL);
  g_assert_cmpint(g_mkdir(a, 0755), ==, 0);
  g_assert_cmpint(g_mkdir(b, 0755), ==, 0);
  char *built = so_path(plugin_dir(), "magnitude");
  char *in_a = g_build_filename(a, "prunus-magnitude.so", NULL);
  char *in_b = g_build_filename(b, "prunus-magnitude.so", NULL);
  copy_file(built, in_a);
  copy_file(built, in_b);

  /* extra_dirs (the config's plugin_path) first, then PRUNUS_PLUGIN_PATH */
  PrunusPluginRegistry *r = NULL;
  char *env = g_strdup_printf("%s:/nonexistent-prunus-dir", b);
  g_assert_cmpstr(find_path(a, env, "magnitude", &r), ==, in_a);
  const char *const *dirs = prunus_plugin_registry_dirs(r);
  g_assert_cmpstr(dirs[0], ==, a);
  g_assert_cmpstr(dirs[1], ==, b);
  g_assert_cmpstr(dirs[2], ==, "/nonexistent-prunus-dir");
  /* this test runs from the build tree: the build tree's plugins, not the install dir's */
  g_assert_cmpstr(dirs[3], ==, plugin_dir());
  g_assert_null(dirs[4]);
  prunus_plugin_registry_free(r);

  /* PRUNUS_PLUGIN_PATH before the build tree */
  g_assert_cmpstr(find_path(NULL, env, "magnitude", &r), ==, in_b);
  prunus_plugin_registry_free(r);

  /* nothing given: the build tree only */
  g_assert_cmpstr(find_path(NULL, NULL, "magnitude", &r), ==, built);
  g_assert_cmpstr(prunus_plugin_registry_dirs(r)[0], ==, plugin_dir());
  g_assert_null(prunus_plugin_registry_dirs(r)[1]);
  prunus_plugin_registry_free(r);

  /* a second copy in a subfolder of the same search folder: which one is meant would be
   * the sort order's choice, so it is refused naming both */
  char *sub = g_build_filename(a, "old", NULL);
  char *in_sub = g_build_filename(sub, "prunus-magnitude.so", NULL);
  g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
  copy_file(built, in_sub);
  const char *const extra[] = {a, NULL};
  r = prunus_plugin_registry_new(extra);
  GError *error = NULL;
  g_assert_null(prunus_plugin_registry_find(r, PRUNUS_PLUGIN_CRITERION, "magnitude",
                                            "prune.criterion", &error));
  /* in sorted order: "a/old/..." before "a/prunus-..." */
  char *both =
      g_strdup_printf("holds 2 libraries named prunus-magnitude.so (%s and %s)", in_sub, in_a);
  testutil_assert_error_contains(error, "prune.criterion = \"magnitude\": ", both,
                                 "name the one you mean by its path", NULL);
  g_clear_error(&error);
  g_free(both);
  prunus_plugin_registry_free(r);
  g_free(in_sub);
  g_free(sub);

  g_free(env);
  g_free(in_a);
  g_free(in_b);
  g_free(built);
  g_free(a);
  g_free(b);
  testutil_rmtree(tmp);
  g_free(tmp);
}

/* The build tree is searched only by code that runs from it (the installed
 * side is checked by tests/jobs/test_install.sh: each plugin listed once). */
static void test_shipped_dir(void) {
  g_assert_cmpstr(prunus_plugin_shipped_dir(), ==, plugin_dir());
  char *tmp = testutil_mkdtemp();
  char *build = g_build_filename(tmp, "build", NULL), *sub = g_build_filename(build, "core", NULL);
  char *other = g_build_filename(tmp, "build2", NULL);
  char *via_dots = g_build_filename(build, "core", "..", "core", NULL);
  char *link = g_build_filename(tmp, "link", NULL);
  g_assert_cmpint(g_mkdir_with_parents(sub, 0755), ==, 0);
  g_assert_cmpint(g_mkdir(other, 0755), ==, 0);
  g_assert_cmpint(symlink(sub, link), ==, 0);
  g_assert_true(prunus_plugin_path_within(sub, build));
  g_assert_true(prunus_plugin_path_within(build, build));
  g_assert_true(prunus_plugin_path_within(via_dots, build));
  g_assert_true(prunus_plugin_path_within(link, build));   /* resolved: it is build/core */
  g_assert_false(prunus_plugin_path_within(other, build)); /* a prefix of the name only */
  g_assert_false(prunus_plugin_path_within(build, sub));
  g_assert_false(prunus_plugin_path_within("/nonexistent-prunus-dir", "/"));
  g_assert_true(prunus_plugin_path_within(sub, "/"));
  g_free(via_dots);
  g_free(link);
  g_free(other);
  g_free(sub);
  g_free(build);
  testutil_rmtree(tmp);
  g_free(tmp);
}

// ----------------------------------------------------------------------------
// The ABI grows: older and newer descriptors

/* A plugin built against the frozen revision-1 plugin.h: loaded with its smaller
 * descriptor and ops tables, copied into full-size ones with the rest zero. */
static void test_r1_plugins_load(void) {
  char *path = so_path(r1_dir(), "r1-plugins");
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  GError *error = NULL;
  static const struct {
    PrunusPluginKind kind;
    const char *name;
  } r1[] = {{PRUNUS_PLUGIN_CRITERION, "r1-index"},
            {PRUNUS_PLUGIN_GRANULARITY, "r1-lowest"},
            {PRUNUS_PLUGIN_RETRAIN, "r1-finetune"}};
  const PrunusPluginEntry *e = NULL;
  for (size_t i = 0; i < G_N_ELEMENTS(r1); i++) {
    e = prunus_plugin_registry_find(r, r1[i].kind, path, "prune.x", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(e->desc->name, ==, r1[i].name);
    g_assert_cmpuint(e->desc_size, ==, prunus_plugin_sizes_r1.desc);
    g_assert_cmpuint(e->desc_size, <, sizeof(PrunusPluginDesc));
    g_assert_cmpuint(e->ops_size, ==, prunus_plugin_sizes_r1.ops[r1[i].kind]);
    g_assert_cmpuint(e->desc->ops_size, ==, 0); /* beyond its descriptor: zero */
  }
  /* the host's idea of revision 1's sizes is what the revision-1 header compiles to */
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  g_assert_nonnull(dl);
  const size_t *sizes = dlsym(dl, "prunus_r1_sizes");
  g_assert_nonnull(sizes);
  g_assert_cmpuint(sizes[0], ==, prunus_plugin_sizes_r1.desc);
  for (int k = PRUNUS_PLUGIN_CRITERION; k <= PRUNUS_PLUGIN_RETRAIN; k++)
    g_assert_cmpuint(sizes[k], ==, prunus_plugin_sizes_r1.ops[k]);
  dlclose(dl);
  prunus_plugin_registry_free(r);
  g_free(path);
}

/* A plugin of a later revision (descriptor and ops table larger than ours):
 * loaded; the host reads what it knows, and it runs. */
static void test_future_plugin(void) {
  char *path = so_path(broken_dir(), "future-plugin");
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_CRITERION, path, "prune.criterion", &error);
  g_assert_no_error(error);
  g_assert_cmpstr(e->desc->name, ==, "future-criterion");
  g_assert_cmpuint(e->desc_size, ==, sizeof(PrunusPluginDesc) + sizeof(uint64_t));
  g_assert_cmpuint(e->ops_size, ==, sizeof(PrunusCriterionOps) + sizeof(void *));
  g_assert_cmpuint(e->desc->ops_size, ==, e->ops_size);
  g_assert_null(e->desc->criterion->observe);
  float w[3] = {0.5f, -2.0f, 1.0f}, b[3] = {0}, mask[3] = {1, 1, 1}, out[3] = {0};
  PrunusLayerView layer = {.name = "1",
                           .type = "dense",
                           .index = 1,
                           .n_units = 3,
                           .fan_in = 1,
                           .n_weights = 3,
                           .positions = 1,
                           .prunable = 1,
                           .weights = w,
                           .bias = b,
                           .mask = mask};
  PrunusModelView view = {.n_layers = 1, .layers = &layer};
  float *const weight_scores[1] = {out};
  PrunusScores scores = {.weight_scores = weight_scores};
  g_assert_cmpuint(e->desc->criterion->needs(NULL), ==, PRUNUS_NEED_WEIGHTS);
  g_assert_cmpint(e->desc->criterion->score(NULL, &view, &scores), ==, 0);
  g_assert_cmpfloat(out[0], ==, 0.5f);
  g_assert_cmpfloat(out[1], ==, 2.0f);
  g_assert_cmpfloat(out[2], ==, 1.0f);
  prunus_plugin_registry_free(r);
  g_free(path);
}

/* The entry point defined without PRUNUS_PLUGIN_EXPORT: still found. */
static void test_no_export_macro(void) {
  char *path = so_path(broken_dir(), "no-export-macro");
  PrunusPluginRegistry *r = prunus_plugin_registry_new(NULL);
  GError *error = NULL;
  const PrunusPluginEntry *e =
      prunus_plugin_registry_find(r, PRUNUS_PLUGIN_RETRAIN, path, "prune.retrain", &error);
  g_assert_no_error(error);
  g_assert_cmpstr(e->desc->name, ==, "no-export-macro");
  g_assert_cmpuint(e->ops_size, ==, sizeof(PrunusRetrainOps));
  g_assert_cmpint(e->desc->retrain->retrain(NULL, 1), ==, 0);
  prunus_plugin_registry_free(r);
  g_free(path);
}

// ----------------------------------------------------------------------------
// `prunus plugins`

typedef struct {
  int status;
  char *out, *err;
} Run;

static Run run_prunus(const char *env_path, const char *const *args) {
  GPtrArray *argv = g_ptr_array_new();
  g_ptr_array_add(argv, (char *)prunus_exe);
  for (const char *const *a = args; *a; a++) g_ptr_array_add(argv, (char *)*a);
  g_ptr_array_add(argv, NULL);
  char **env = g_get_environ();
  env = g_environ_setenv(env, "LC_ALL", "C", TRUE);
  env = g_environ_setenv(env, "OPENBLAS_NUM_THREADS", "1", TRUE);
  env = env_path ? g_environ_setenv(env, "PRUNUS_PLUGIN_PATH", env_path, TRUE)
                 : g_environ_unsetenv(env, "PRUNUS_PLUGIN_PATH");
  Run r = {0};
  int wait_status = 0;
  GError *error = NULL;
  g_spawn_sync(NULL, (char **)argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err,
               &wait_status, &error);
  g_assert_no_error(error);
  g_strfreev(env);
  char *cmd = g_strjoinv(" ", (char **)argv->pdata);
  g_ptr_array_free(argv, TRUE);
  g_assert_true(WIFEXITED(wait_status));
  r.status = WEXITSTATUS(wait_status);
  g_test_message("$ %s\n-> exit %d\n[stdout]\n%s[stderr]\n%s", cmd, r.status, r.out, r.err);
  g_free(cmd);
  return r;
}

static void run_clear(Run *r) {
  g_free(r->out);
  g_free(r->err);
}

/* The line of out listing kind and name, split into fields (transfer full). */
static char **listing_of(const char *out, const char *kind, const char *name) {
  char **lines = g_strsplit(out, "\n", -1);
  char **found = NULL;
  for (char **l = lines; *l && !found; l++) {
    char **f = g_strsplit_set(*l, " ", -1);
    GPtrArray *words = g_ptr_array_new();
    for (char **w = f; *w; w++)
      if (**w) g_ptr_array_add(words, g_strdup(*w));
    g_ptr_array_add(words, NULL);
    g_strfreev(f);
    char **ws = (char **)g_ptr_array_free(words, FALSE);
    if (g_strv_length(ws) >= 4 && !strcmp(ws[0], kind) && !strcmp(ws[1], name))
      found = ws;
    else
      g_strfreev(ws);
  }
  g_strfreev(lines);
  if (!found) g_error("'prunus plugins' does not list %s %s:\n%s", kind, name, out);
  return found;
}

/* How many lines of out list kind and name. */
static int listings_of(const char *out, const char *kind, const char *name) {
  char *prefix = g_strdup_printf("%s ", kind), *word = g_strdup_printf(" %s ", name);
  char **lines = g_strsplit(out, "\n", -1);
  int n = 0;
  for (char **l = lines; *l; l++) {
    if (!g_str_has_prefix(*l, prefix)) continue;
    const char *rest = *l + strlen(prefix);
    while (*rest == ' ') rest++;
    n += g_str_has_prefix(rest - 1, word);
  }
  g_strfreev(lines);
  g_free(word);
  g_free(prefix);
  return n;
}

static void test_cli_plugins(void) {
  static const char *const expected[][3] = {
      {"criterion", "magnitude", "1.0.0"}, {"criterion", "random", "1.0.0"},
      {"granularity", "weight", "1.0.0"},  {"granularity", "neuron", "1.1.0"},
      {"retrain", "finetune", "1.0.0"},    {"retrain", "rewind", "1.1.0"},
      {"retrain", "reinit", "1.0.0"},      {"retrain", "lr-rewind", "1.0.0"},
  };
  const char *args[] = {"plugins", NULL};
  Run r = run_prunus(NULL, args);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_true(g_str_has_prefix(r.out, "KIND"));
  for (size_t i = 0; i < G_N_ELEMENTS(expected); i++) {
    char **f = listing_of(r.out, expected[i][0], expected[i][1]);
    g_assert_cmpstr(f[2], ==, expected[i][2]);
    g_strfreev(f);
    /* once: the build tree is the only folder searched */
    g_assert_cmpint(listings_of(r.out, expected[i][0], expected[i][1]), ==, 1);
    char *path = so_path(plugin_dir(), expected[i][1]);
    g_assert_nonnull(strstr(r.out, path));
    g_free(path);
  }
  /* and every plugin the build made */
  GDir *d = g_dir_open(plugin_dir(), 0, NULL);
  g_assert_nonnull(d);
  int n_built = 0;
  for (const char *n; (n = g_dir_read_name(d));) {
    if (!g_str_has_prefix(n, "prunus-") || !g_str_has_suffix(n, ".so")) continue;
    char *name = g_strndup(n + strlen("prunus-"), strlen(n) - strlen("prunus-") - strlen(".so"));
    char *listed = g_strdup_printf(" %s ", name);
    if (!strstr(r.out, listed)) g_error("'prunus plugins' does not list %s:\n%s", n, r.out);
    g_free(listed);
    g_free(name);
    n_built++;
  }
  g_dir_close(d);
  g_assert_cmpint(n_built, >=, (int)G_N_ELEMENTS(expected));
  /* criteria first, then granularities, then retrains */
  g_assert_true(strstr(r.out, "criterion ") < strstr(r.out, "granularity "));
  g_assert_true(strstr(r.out, "granularity ") < strstr(r.out, "retrain "));
  g_assert_nonnull(strstr(r.out, "searched:"));
  g_assert_nonnull(strstr(r.out, plugin_dir()));
  g_assert_null(strstr(r.out, "failed to load"));
  run_clear(&r);

  /* with the fixtures on PRUNUS_PLUGIN_PATH: the good ones listed, the broken reported */
  r = run_prunus(broken_dir(), args);
  g_assert_cmpint(r.status, ==, 0);
  char **f = listing_of(r.out, "granularity", "not-a-criterion");
  g_strfreev(f);
  f = listing_of(r.out, "criterion", "broken-create");
  g_strfreev(f);
  char *abi = so_path(broken_dir(), "broken-abi");
  char *line = g_strdup_printf("failed to load: %s: descriptor 0: ABI version mismatch", abi);
  g_assert_nonnull(strstr(r.out, line));
  g_assert_nonnull(strstr(r.out, "prunus_symbol_that_does_not_exist"));
  g_assert_nonnull(strstr(r.out, "no entry symbol"));
  g_free(line);
  g_free(abi);
  run_clear(&r);
}

// ----------------------------------------------------------------------------
// An unknown key in a plugin's group

#define SIDE 8

static void write_idx(const char *dir, const char *name, uint32_t magic, const uint32_t *dims,
                      int ndims, const uint8_t *data, size_t len) {
  GByteArray *a = g_byte_array_new();
  uint32_t be = GUINT32_TO_BE(magic);
  g_byte_array_append(a, (const guint8 *)&be, 4);
  for (int i = 0; i < ndims; i++) {
    be = GUINT32_TO_BE(dims[i]);
    g_byte_array_append(a, (const guint8 *)&be, 4);
  }
  g_byte_array_append(a, data, (guint)len);
  g_free(testutil_write_file(dir, name, a->data, a->len));
  g_byte_array_unref(a);
}

/* n 8x8 images, class = the bright quadrant. */
static void write_quadrants(const char *dir, const char *prefix, uint32_t n, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  uint8_t *img = g_new(uint8_t, n * SIDE * SIDE), *lab = g_new(uint8_t, n);
  for (uint32_t i = 0; i < n; i++) {
    int k = (int)prunus_rng_below(&r, 4);
    lab[i] = (uint8_t)k;
    for (int p = 0; p < SIDE * SIDE; p++) {
      int q = (p / SIDE >= SIDE / 2) * 2 + (p % SIDE >= SIDE / 2);
      double v = (q == k ? 170.0 : 70.0) + 40.0 * prunus_rng_normal(&r);
      img[i * SIDE * SIDE + p] = (uint8_t)CLAMP(lround(v), 0, 255);
    }
  }
  const uint32_t dims[3] = {n, SIDE, SIDE};
  char *name = g_strdup_printf("%s-images-idx3-ubyte", prefix);
  write_idx(dir, name, 0x803, dims, 3, img, (size_t)n * SIDE * SIDE);
  g_free(name);
  name = g_strdup_printf("%s-labels-idx1-ubyte", prefix);
  write_idx(dir, name, 0x801, &n, 1, lab, n);
  g_free(name);
  g_free(img);
  g_free(lab);
}

static const char unknown_key_config[] =
    "name = \"typo\";\n"
    "dataset = {\n"
    "  format = \"idx\";\n"
    "  train_images = \"train-images-idx3-ubyte\";\n"
    "  train_labels = \"train-labels-idx1-ubyte\";\n"
    "  test_images = \"test-images-idx3-ubyte\";\n"
    "  test_labels = \"test-labels-idx1-ubyte\";\n"
    "  validation = 10;\n"
    "};\n"
    "model = { input = [1, 8, 8];\n"
    "  layers = ( { type = \"flatten\"; }, { type = \"dense\"; units = 4; } ); };\n"
    "train = { epochs = 1; batch = 16; lr = 0.1; };\n"
    "prune = {\n"
    "  schedule = { rounds = 1; amount = 0.5; };\n"
    "  criterion = {\n"
    "    plugin = \"magnitude\";\n"
    "    unit_nrom = \"l1\";\n"
    "  };\n"
    "  granularity = { plugin = \"weight\"; };\n"
    "  retrain = { plugin = \"finetune\"; epochs = 0; };\n"
    "};\n";

static void test_unknown_plugin_key(void) {
  char *dir = testutil_mkdtemp();
  write_quadrants(dir, "train", 60, 1);
  write_quadrants(dir, "test", 20, 2);
  char *cfg = testutil_write_file(dir, "typo.cfg", unknown_key_config, strlen(unknown_key_config));
  char *run_dir = g_build_filename(dir, "run", NULL);
  PrunusJobOptions o = {.config_path = cfg, .run_dir = run_dir, .threads = 1, .quiet = TRUE};
  GError *error = NULL;
  g_assert_false(testutil_job_run(&o, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG);
  char *where = g_strdup_printf("%s:17: unknown key 'prune.criterion.unit_nrom'", cfg);
  testutil_assert_error_contains(error, where, "did you mean 'unit_norm'", NULL);
  g_clear_error(&error);
  g_free(where);
  /* nothing was trained: no checkpoint */
  char *ckpt = g_build_filename(run_dir, "typo", "round-00.safetensors", NULL);
  g_assert_false(g_file_test(ckpt, G_FILE_TEST_EXISTS));
  g_free(ckpt);

  /* the same through the CLI: exit 1 and the message on stderr */
  const char *args[] = {"run", cfg, "-o", run_dir, "--quiet", NULL};
  Run r = run_prunus(plugin_dir(), args);
  g_assert_cmpint(r.status, ==, 1);
  g_assert_nonnull(strstr(r.err, "prunus: error: "));
  g_assert_nonnull(strstr(r.err, ":17: unknown key 'prune.criterion.unit_nrom'"));
  run_clear(&r);

  g_free(run_dir);
  g_free(cfg);
  testutil_rmtree(dir);
  g_free(dir);
}

// ----------------------------------------------------------------------------
// Revision-1 plugins through a whole pipeline

/* r1-index scores every weight by its index in its layer, r1-lowest prunes each
 * layer's lowest-scored alive weights, r1-finetune evaluates and trains: all
 * built against the revision-1 header (tests/plugin-abi-r1). */
static const char r1_config[] =
    "name = \"r1\";\n"
    "seed = 3;\n"
    "plugin_path = \"%s\";\n"
    "dataset = {\n"
    "  format = \"idx\";\n"
    "  train_images = \"train-images-idx3-ubyte\";\n"
    "  train_labels = \"train-labels-idx1-ubyte\";\n"
    "  test_images = \"test-images-idx3-ubyte\";\n"
    "  test_labels = \"test-labels-idx1-ubyte\";\n"
    "  validation = 40;\n"
    "};\n"
    "model = { input = [1, 8, 8];\n"
    "  layers = ( { type = \"flatten\"; }, { type = \"dense\"; units = 12; }, { type = \"relu\"; },\n"
    "             { type = \"dense\"; units = 4; } ); };\n"
    "train = { epochs = 1; batch = 16; lr = 0.05; };\n"
    "prune = {\n"
    "  schedule = { rounds = 2; amount = 0.5; scope = \"layer\"; };\n"
    "  latency = { batches = [1]; seconds = 0.001; };\n"
    "  criterion = { plugin = \"r1-index\"; calib_batches = 3; calib_batch = 8; "
    "expect_steps = 3; };\n"
    "  granularity = { plugin = \"r1-lowest\"; };\n"
    "  retrain = { plugin = \"r1-finetune\"; epochs = 2; };\n"
    "};\n";

static void test_r1_plugins_run(void) {
  char *dir = testutil_mkdtemp();
  write_quadrants(dir, "train", 200, 5);
  write_quadrants(dir, "test", 40, 6);
  char *text = g_strdup_printf(r1_config, r1_dir());
  char *cfg = testutil_write_file(dir, "r1.cfg", text, strlen(text));
  g_free(text);
  char *run_dir = g_build_filename(dir, "run", NULL);
  PrunusJobOptions o = {.config_path = cfg, .run_dir = run_dir, .threads = 1, .quiet = TRUE};
  GError *error = NULL;
  gboolean ok = testutil_job_run(&o, &error);
  g_assert_no_error(error);
  g_assert_true(ok);

  /* the masks only these plugins make: round r leaves layer k alive exactly from
   * index removed_r on, where each round removes round(0.5 * alive) */
  const size_t n_weights[2] = {64 * 12, 12 * 4};
  for (int round = 1; round <= 2; round++) {
    char *file = g_strdup_printf("round-%02d.safetensors", round);
    char *path = g_build_filename(run_dir, "r1", file, NULL);
    PrunusModel *m = prunus_checkpoint_load(path, 1, NULL, NULL, &error);
    g_assert_no_error(error);
    int k = 0;
    for (int i = 0; i < m->n_layers; i++) {
      const PrunusLayer *l = &m->layers[i];
      if (!l->ops->has_params) continue;
      g_assert_cmpuint(l->w_len, ==, n_weights[k]);
      size_t alive = n_weights[k], removed = 0;
      for (int r = 0; r < round; r++) {
        size_t n = (size_t)floor(0.5 * (double)alive + 0.5);
        removed += n;
        alive -= n;
      }
      for (size_t j = 0; j < l->w_len; j++)
        if ((m->mask[l->w_off + j] == 0.0f) != (j < removed))
          g_error("round %d layer %s weight %zu: mask %g, expected %s", round, l->name, j,
                  m->mask[l->w_off + j], j < removed ? "pruned" : "alive");
      g_test_message("round %d layer %s: %zu of %zu pruned", round, l->name, removed, n_weights[k]);
      k++;
    }
    g_assert_cmpint(k, ==, 2);
    prunus_model_free(m);
    g_free(path);
    g_free(file);
  }

  /* r1-finetune trained 2 epochs after each of the 2 prunes (after 1 of pretraining) */
  char *metrics_path = g_build_filename(run_dir, "metrics.jsonl", NULL);
  char *metrics = NULL;
  g_assert_true(g_file_get_contents(metrics_path, &metrics, NULL, NULL));
  int per_round[3] = {0, 0, 0};
  char **lines = g_strsplit(metrics, "\n", -1);
  for (char **l = lines; *l; l++) {
    if (!**l) continue;
    PrunusJson *j = prunus_json_parse(*l, strlen(*l), &error);
    g_assert_no_error(error);
    int round = (int)prunus_json_number(prunus_json_get(j, "round"));
    g_assert_cmpint(round, >=, 0);
    g_assert_cmpint(round, <=, 2);
    per_round[round]++;
    prunus_json_free(j);
  }
  g_assert_cmpint(per_round[0], ==, 1);
  g_assert_cmpint(per_round[1], ==, 2);
  g_assert_cmpint(per_round[2], ==, 2);
  g_strfreev(lines);
  g_free(metrics);
  g_free(metrics_path);

  g_free(run_dir);
  g_free(cfg);
  testutil_rmtree(dir);
  g_free(dir);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  if (argc < 2) g_error("usage: test-loader [GTest options] PRUNUS_EXE");
  prunus_exe = argv[1];
  g_unsetenv("PRUNUS_PLUGIN_PATH");
  g_test_add_func("/loader/no-such-plugin", test_no_such_plugin);
  g_test_add_func("/loader/no-entry-symbol", test_no_entry_symbol);
  g_test_add_func("/loader/dlopen-failure", test_dlopen_failure);
  g_test_add_func("/loader/abi-mismatch", test_abi_mismatch);
  g_test_add_func("/loader/bad-size", test_bad_size);
  g_test_add_func("/loader/invalid-field", test_invalid_field);
  g_test_add_func("/loader/wrong-kind", test_wrong_kind);
  g_test_add_func("/loader/failure-remembered", test_failure_remembered);
  g_test_add_func("/loader/create-fails", test_create_fails);
  g_test_add_func("/loader/by-path", test_by_path);
  g_test_add_func("/loader/search-order", test_search_order);
  g_test_add_func("/loader/shipped-dir", test_shipped_dir);
  g_test_add_func("/loader/abi/r1-plugins-load", test_r1_plugins_load);
  g_test_add_func("/loader/abi/r1-plugins-run", test_r1_plugins_run);
  g_test_add_func("/loader/abi/future-plugin", test_future_plugin);
  g_test_add_func("/loader/abi/no-export-macro", test_no_export_macro);
  g_test_add_func("/loader/settings-range", test_settings_range);
  g_test_add_func("/loader/cli-plugins", test_cli_plugins);
  g_test_add_func("/loader/unknown-plugin-key", test_unknown_plugin_key);
  return g_test_run();
}
