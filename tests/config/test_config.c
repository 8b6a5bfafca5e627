/* test_config.c: unit tests of core/config.c: exact parsed values and defaults,
 * every error class with its file:line and key path, --set, paths and the hash. */
#include "config.h"
#include "model.h"
#include "prune_config.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <string.h>

/* A small valid run; tests edit single lines of it. */
static const char BASE[] =
    "# a small valid run\n"
    "name = \"base\";\n"
    "dataset = {\n"
    "  train_images = \"data/train-images.gz\";\n"
    "  train_labels = \"data/train-labels.gz\";\n"
    "  test_images = \"/srv/fmnist/test-images.gz\";\n"
    "  test_labels = \"labels/test.gz\";\n"
    "};\n"
    "model = {\n"
    "  input = [1, 28, 28];\n"
    "  layers = (\n"
    "    { type = \"flatten\"; },\n"
    "    { type = \"dense\"; units = 300; },\n"
    "    { type = \"relu\"; },\n"
    "    { type = \"dense\"; units = 10; }\n"
    "  );\n"
    "};\n"
    "train = {\n"
    "  epochs = 10;\n"
    "  lr = 0.05;\n"
    "};\n";

/* Every key set, away from its default, plus groups owned by someone else. */
static const char FULL[] =
    "name = \"full\";\n"
    "seed = 12345678901L;\n"
    "dataset = {\n"
    "  format = \"idx\";\n"
    "  train_images = \"/data/train-images.gz\";\n"
    "  train_labels = \"data/train-labels.gz\";\n"
    "  test_images = \"data/test-images.gz\";\n"
    "  test_labels = \"data/test-labels.gz\";\n"
    "  validation = 5000;\n"
    "  train_limit = 20000;\n"
    "  test_limit = 1000;\n"
    "  normalize = \"unit\";\n"
    "};\n"
    "model = {\n"
    "  input = [3, 32, 30];\n"
    "  init = \"glorot\";\n"
    "  layers = (\n"
    "    { type = \"conv2d\"; channels = 16; kernel = 5; stride = 2; padding = 1; },\n"
    "    { type = \"relu\"; },\n"
    "    { type = \"maxpool2d\"; kernel = 2; },\n"
    "    { type = \"conv2d\"; channels = 8; kernel = 3; },\n"
    "    { type = \"maxpool2d\"; kernel = 3; stride = 1; },\n"
    "    { type = \"flatten\"; },\n"
    "    { type = \"dense\"; units = 64; },\n"
    "    { type = \"relu\"; },\n"
    "    { type = \"dense\"; units = 7; },\n"
    "    { type = \"relu\"; }\n"
    "  );\n"
    "};\n"
    "train = {\n"
    "  epochs = 3; batch = 64; optimizer = \"adam\"; lr = 0.001;\n"
    "  weight_decay = 5e-4;\n"
    "  beta1 = 0.8; beta2 = 0.99; eps = 1e-7;\n"
    "  lr_schedule = \"step\"; step_size = 2; gamma = 0.5; warmup_epochs = 1.5;\n"
    "};\n"
    "prune = { schedule = { rounds = 3; amount = 0.2; }; };\n"
    "experiments = ( { name = \"a\"; }, { name = \"b\"; } );\n";

/* ------------------------------------------------------------------------- */
/* helpers */

/* base with the one occurrence of from replaced by to. (transfer full) */
static char *edit(const char *base, const char *from, const char *to) {
  const char *at = strstr(base, from);
  g_assert_nonnull(at);
  g_assert_null(strstr(at + 1, from));
  return g_strdup_printf("%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
}

/* 1-based line of the first occurrence of needle in text. */
static int line_of(const char *text, const char *needle) {
  const char *at = strstr(text, needle);
  g_assert_nonnull(at);
  int line = 1;
  for (const char *p = text; p < at; p++) line += *p == '\n';
  return line;
}

/* "path:line:" (transfer full) */
static char *loc(const char *path, int line) { return g_strdup_printf("%s:%d:", path, line); }

static PrunusConfig *load_ok(const char *path) {
  GError *error = NULL;
  PrunusConfig *c = prunus_config_load(path, &error);
  g_assert_no_error(error);
  g_assert_nonnull(c);
  return c;
}

static void set_ok(PrunusConfig *c, const char *assignment) {
  GError *error = NULL;
  g_assert_true(prunus_config_apply_set(c, assignment, &error));
  g_assert_no_error(error);
}

static void set_fails(PrunusConfig *c, const char *assignment, const char *needle1,
                      const char *needle2) {
  GError *error = NULL;
  g_assert_false(prunus_config_apply_set(c, assignment, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG);
  char *prefix = g_strdup_printf("--set %s: ", assignment);
  testutil_assert_error_contains(error, prefix, needle1, needle2, NULL);
  g_free(prefix);
  g_error_free(error);
}

/* Write text as dir/name, parse it and expect an error: the message must name
 * name:line (the line of line_needle in text) and hold every needle. */
static void parse_fails_at(const char *text, const char *line_needle, const char *needle1,
                           const char *needle2) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "bad.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_false(prunus_run_config_parse(c, &rc, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG);
  char *where = loc(path, line_of(text, line_needle));
  testutil_assert_error_contains(error, where, needle1, needle2, NULL);
  g_assert_true(g_str_has_prefix(error->message, where));
  g_assert_null(rc.name); /* cleared on failure */
  g_assert_null(rc.arch.layers);
  g_free(where);
  g_error_free(error);
  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(path);
  g_free(dir);
}

/* base edited (from -> to), expected to fail at the line of line_needle. */
static void edit_fails_at(const char *from, const char *to, const char *line_needle,
                          const char *needle1, const char *needle2) {
  char *text = edit(BASE, from, to);
  parse_fails_at(text, line_needle, needle1, needle2);
  g_free(text);
}

/* ------------------------------------------------------------------------- */
/* good configs */

static void test_parse_full(void) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "full.cfg", FULL, strlen(FULL));
  PrunusConfig *c = load_ok(path);
  g_assert_cmpstr(prunus_config_path(c), ==, path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);

  g_assert_cmpstr(rc.name, ==, "full");
  g_assert_cmpuint(rc.seed, ==, 12345678901ull);
  char *expect = g_build_filename(dir, "data/train-labels.gz", NULL);
  g_assert_cmpstr(rc.train_images, ==, "/data/train-images.gz");
  g_assert_cmpstr(rc.train_labels, ==, expect);
  g_free(expect);
  expect = g_build_filename(dir, "data/test-images.gz", NULL);
  g_assert_cmpstr(rc.test_images, ==, expect);
  g_free(expect);
  expect = g_build_filename(dir, "data/test-labels.gz", NULL);
  g_assert_cmpstr(rc.test_labels, ==, expect);
  g_free(expect);
  g_assert_cmpint(rc.validation, ==, 5000);
  g_assert_cmpint(rc.train_limit, ==, 20000);
  g_assert_cmpint(rc.test_limit, ==, 1000);
  g_assert_cmpint(rc.normalize, ==, PRUNUS_NORM_UNIT);

  g_assert_cmpint(rc.arch.input.c, ==, 3);
  g_assert_cmpint(rc.arch.input.h, ==, 32);
  g_assert_cmpint(rc.arch.input.w, ==, 30);
  g_assert_cmpint(rc.arch.init, ==, PRUNUS_INIT_GLOROT);
  g_assert_cmpint(rc.arch.n_layers, ==, 10);
  g_assert_cmpint(rc.arch.n_classes, ==, 7);
  const PrunusLayerSpec *l = rc.arch.layers;
  g_assert_cmpint(l[0].type, ==, PRUNUS_LAYER_CONV2D);
  g_assert_cmpint(l[0].channels, ==, 16);
  g_assert_cmpint(l[0].kernel, ==, 5);
  g_assert_cmpint(l[0].stride, ==, 2);
  g_assert_cmpint(l[0].padding, ==, 1);
  g_assert_cmpint(l[1].type, ==, PRUNUS_LAYER_RELU);
  g_assert_cmpint(l[2].type, ==, PRUNUS_LAYER_MAXPOOL2D);
  g_assert_cmpint(l[2].kernel, ==, 2);
  g_assert_cmpint(l[2].stride, ==, 2); /* defaults to the kernel */
  g_assert_cmpint(l[3].type, ==, PRUNUS_LAYER_CONV2D);
  g_assert_cmpint(l[3].channels, ==, 8);
  g_assert_cmpint(l[3].kernel, ==, 3);
  g_assert_cmpint(l[3].stride, ==, 1);
  g_assert_cmpint(l[3].padding, ==, 0);
  g_assert_cmpint(l[4].kernel, ==, 3);
  g_assert_cmpint(l[4].stride, ==, 1);
  g_assert_cmpint(l[5].type, ==, PRUNUS_LAYER_FLATTEN);
  g_assert_cmpint(l[6].type, ==, PRUNUS_LAYER_DENSE);
  g_assert_cmpint(l[6].units, ==, 64);
  g_assert_cmpint(l[8].units, ==, 7);
  g_assert_cmpint(l[9].type, ==, PRUNUS_LAYER_RELU);

  const PrunusTrainConfig *t = &rc.train;
  g_assert_cmpint(t->epochs, ==, 3);
  g_assert_cmpint(t->batch, ==, 64);
  g_assert_cmpint(t->optimizer, ==, PRUNUS_OPT_ADAM);
  g_assert_cmpfloat(t->lr, ==, 0.001);
  g_assert_cmpfloat(t->momentum, ==, 0.0); /* Adam reads neither (refused when given) */
  g_assert_false(t->nesterov);
  g_assert_cmpfloat(t->weight_decay, ==, 5e-4);
  g_assert_cmpfloat(t->beta1, ==, 0.8);
  g_assert_cmpfloat(t->beta2, ==, 0.99);
  g_assert_cmpfloat(t->eps, ==, 1e-7);
  g_assert_cmpint(t->lr_schedule, ==, PRUNUS_LR_STEP);
  g_assert_cmpint(t->step_size, ==, 2);
  g_assert_cmpfloat(t->gamma, ==, 0.5);
  g_assert_cmpfloat(t->warmup_epochs, ==, 1.5);

  /* prune and experiments are left for their owners: unread until they read them. */
  g_assert_false(prunus_config_check_unread(c, &error));
  char *at_prune = loc(path, line_of(FULL, "prune ="));
  char *at_exp = loc(path, line_of(FULL, "experiments ="));
  testutil_assert_error_contains(error, at_prune, "unknown key 'prune'", at_exp,
                                 "unknown key 'experiments'", NULL);
  g_clear_error(&error);
  config_setting_t *root = prunus_config_root(c);
  prunus_config_mark_read_tree(c, config_setting_get_member(root, "prune"));
  prunus_config_mark_read_tree(c, config_setting_get_member(root, "experiments"));
  g_assert_true(prunus_config_check_unread(c, &error));
  g_assert_no_error(error);

  prunus_run_config_clear(&rc);
  g_assert_null(rc.name);
  g_assert_null(rc.arch.layers);
  prunus_run_config_clear(&rc); /* twice is harmless */
  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(at_prune);
  g_free(at_exp);
  g_free(path);
  g_free(dir);
}

static void test_parse_defaults(void) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "base.cfg", BASE, strlen(BASE));
  PrunusConfig *c = load_ok(path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_true(prunus_config_check_unread(c, &error));
  g_assert_no_error(error);

  g_assert_cmpstr(rc.name, ==, "base");
  g_assert_cmpuint(rc.seed, ==, 0);
  char *expect = g_build_filename(dir, "data", "train-images.gz", NULL);
  g_assert_cmpstr(rc.train_images, ==, expect);
  g_free(expect);
  expect = g_build_filename(dir, "labels", "test.gz", NULL);
  g_assert_cmpstr(rc.test_labels, ==, expect);
  g_free(expect);
  g_assert_cmpstr(rc.test_images, ==, "/srv/fmnist/test-images.gz");
  g_assert_cmpint(rc.validation, ==, 0);
  g_assert_cmpint(rc.train_limit, ==, 0);
  g_assert_cmpint(rc.test_limit, ==, 0);
  g_assert_cmpint(rc.normalize, ==, PRUNUS_NORM_STANDARD);

  g_assert_cmpint(rc.arch.input.c, ==, 1);
  g_assert_cmpint(rc.arch.input.h, ==, 28);
  g_assert_cmpint(rc.arch.input.w, ==, 28);
  g_assert_cmpint(rc.arch.init, ==, PRUNUS_INIT_KAIMING);
  g_assert_cmpint(rc.arch.n_layers, ==, 4);
  g_assert_cmpint(rc.arch.n_classes, ==, 10);
  static const PrunusLayerType types[] = {PRUNUS_LAYER_FLATTEN, PRUNUS_LAYER_DENSE,
                                          PRUNUS_LAYER_RELU, PRUNUS_LAYER_DENSE};
  static const int units[] = {0, 300, 0, 10};
  for (int i = 0; i < 4; i++) {
    g_assert_cmpint(rc.arch.layers[i].type, ==, types[i]);
    g_assert_cmpint(rc.arch.layers[i].units, ==, units[i]);
  }

  const PrunusTrainConfig *t = &rc.train;
  g_assert_cmpint(t->epochs, ==, 10);
  g_assert_cmpfloat(t->lr, ==, 0.05);
  g_assert_cmpint(t->batch, ==, 128);
  g_assert_cmpint(t->optimizer, ==, PRUNUS_OPT_SGD);
  g_assert_cmpfloat(t->momentum, ==, 0.0);
  g_assert_false(t->nesterov);
  g_assert_cmpfloat(t->weight_decay, ==, 0.0);
  g_assert_cmpfloat(t->beta1, ==, 0.9);
  g_assert_cmpfloat(t->beta2, ==, 0.999);
  g_assert_cmpfloat(t->eps, ==, 1e-8);
  g_assert_cmpint(t->lr_schedule, ==, PRUNUS_LR_CONSTANT);
  g_assert_cmpint(t->step_size, ==, 1);
  g_assert_cmpfloat(t->gamma, ==, 0.1);
  g_assert_cmpfloat(t->warmup_epochs, ==, 0.0);

  prunus_run_config_clear(&rc);
  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(path);
  g_free(dir);
}

/* Integer literals libconfig would wrap (its scanner reads them through atoi) are
 * refused at load with file:line, in an @include'd file too; those that fit, floats,
 * names with digits, strings and comments holding big numbers are not. */
static void test_int_literals(void) {
  char *dir = testutil_mkdtemp();
  GError *error = NULL;
  const struct {
    const char *literal, *message;
  } bad[] = {
      {"4294967328", "the integer 4294967328 does not fit in a 32-bit integer"},
      {"3000000000", "the integer 3000000000 does not fit in a 32-bit integer"},
      {"-2147483649", "the integer -2147483649 does not fit"},
      {"0x80000000", "the integer 0x80000000 does not fit"},
      {"99999999999999999999L", "the integer 99999999999999999999L does not fit in 64 bits"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    char *units = g_strdup_printf("units = %s;", bad[i].literal);
    char *t = edit(BASE, "units = 300;", units);
    char *p = testutil_write_file(dir, "wrap.cfg", t, strlen(t));
    g_assert_null(prunus_config_load(p, &error));
    char *at = loc(p, line_of(t, units));
    testutil_assert_error_contains(error, at, bad[i].message, NULL);
    g_clear_error(&error);
    g_free(at), g_free(p), g_free(t), g_free(units);
  }
  /* fine: the extremes that fit, a 64-bit L literal, floats, names, strings, comments */
  const char *fine =
      "name = \"x\"; a = 2147483647; b = -2147483648; c = 0x7fffffff;\n"
      "d = 4294967328L; e = 1e300; f = 30000000000.5; g-300000000000 = 1;\n"
      "h = \"4294967328\"; # 4294967328\n/* 4294967328 */ i = 5; // 9999999999\n"
      "j = .3333333333; k = -.3333333333; l = [1.5, 2e10, 1.];\n";
  char *p = testutil_write_file(dir, "fine.cfg", fine, strlen(fine));
  PrunusConfig *c = prunus_config_load(p, &error);
  g_assert_no_error(error);
  prunus_config_free(c);
  g_free(p);
  /* a byte-order mark, which libconfig reads as a bare syntax error, is named as such */
  const char *bom = "\xEF\xBB\xBFname = \"x\";\n";
  p = testutil_write_file(dir, "bom.cfg", bom, strlen(bom));
  g_assert_null(prunus_config_load(p, &error));
  char *bom_at = loc(p, 1);
  testutil_assert_error_contains(error, bom_at, "starts with a UTF-8 byte-order mark", NULL);
  g_clear_error(&error);
  g_free(bom_at), g_free(p);
  /* a signed hex number is libconfig's own syntax error, not a number that does not fit */
  const char *neg_hex = "name = \"x\"; a = -0x80000000;\n";
  p = testutil_write_file(dir, "neghex.cfg", neg_hex, strlen(neg_hex));
  g_assert_null(prunus_config_load(p, &error));
  testutil_assert_error_contains(error, "syntax error", NULL);
  g_assert_null(strstr(error->message, "does not fit"));
  g_clear_error(&error);
  g_free(p);
  /* inside an @include'd file, named with its own line */
  const char *inc = "x = 1;\ny = 5000000000;\n";
  g_free(testutil_write_file(dir, "inc.cfg", inc, strlen(inc)));
  const char *top = "name = \"x\";\n@include \"inc.cfg\"\n";
  p = testutil_write_file(dir, "top.cfg", top, strlen(top));
  g_assert_null(prunus_config_load(p, &error));
  char *inc_path = g_build_filename(dir, "inc.cfg", NULL);
  char *at = loc(inc_path, 2);
  testutil_assert_error_contains(error, at, "the integer 5000000000 does not fit", NULL);
  g_clear_error(&error);
  g_free(at), g_free(inc_path), g_free(p);
  testutil_rmtree(dir);
  g_free(dir);
}

/* prune.layers names a layer by index, by its name, or "output" (the last layer with
 * weights); "output" is refused as ambiguous when another layer has that name. */
static void test_prune_layer_names(void) {
  char *dir = testutil_mkdtemp();
  const struct {
    const char *hidden_name, *entry; /* the first dense layer's name, prune.layers[0] */
    int want;                        /* the layer given rate 0.5; -1: refused */
    const char *message;
  } cases[] = {
      {"hidden", "{ layer = \"hidden\"; rate = 0.5; }", 1, NULL},
      {"hidden", "{ layer = 1; rate = 0.5; }", 1, NULL},
      {"hidden", "{ layer = \"output\"; rate = 0.5; }", 3, NULL},
      {"output", "{ layer = \"output\"; rate = 0.5; }", -1,
       "prune.layers[0].layer = \"output\" is ambiguous: it names the last layer with weights "
       "(3), and layer 1 is named \"output\" too"},
      {"hidden", "{ layer = \"hiden\"; rate = 0.5; }", -1,
       "prune.layers[0].layer = \"hiden\" names no layer of the model"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    char *named =
        g_strdup_printf("{ name = \"%s\"; type = \"dense\"; units = 300; }", cases[i].hidden_name);
    char *t0 = edit(BASE, "{ type = \"dense\"; units = 300; }", named);
    char *prune = g_strdup_printf(
        "prune = { schedule = { rounds = 1; amount = 0.5; };\n"
        "  criterion = { plugin = \"magnitude\"; };\n"
        "  granularity = { plugin = \"weight\"; };\n"
        "  retrain = { plugin = \"finetune\"; };\n"
        "  layers = ( %s ); };\ntrain = {\n",
        cases[i].entry);
    char *t = edit(t0, "train = {\n", prune);
    char *p = testutil_write_file(dir, "names.cfg", t, strlen(t));
    PrunusConfig *c = load_ok(p);
    PrunusRunConfig rc;
    PrunusPruneConfig pc;
    GError *error = NULL;
    g_assert_true(prunus_run_config_parse(c, &rc, &error));
    gboolean ok = prunus_prune_config_parse(c, &rc, &pc, &error);
    if (cases[i].want >= 0) {
      g_assert_no_error(error);
      g_assert_true(ok);
      for (int l = 0; l < rc.arch.n_layers; l++)
        g_assert_cmpfloat(pc.layer_rate[l], ==, l == cases[i].want ? 0.5 : 1.0);
      prunus_prune_config_clear(&pc);
    } else {
      g_assert_false(ok);
      char *at = loc(p, line_of(t, cases[i].entry));
      testutil_assert_error_contains(error, at, cases[i].message, NULL);
      g_free(at);
      g_clear_error(&error);
    }
    prunus_run_config_clear(&rc);
    prunus_config_free(c);
    g_free(p), g_free(t), g_free(prune), g_free(t0), g_free(named);
  }
  /* amount = 0 beside a target is how an experiment switches the base's kind of
   * schedule (merging cannot remove a key): accepted, the target rules */
  char *t = edit(BASE, "train = {\n",
                 "prune = { schedule = { rounds = 2; amount = 0.0; target = 0.6; };\n"
                 "  criterion = { plugin = \"magnitude\"; }; granularity = { plugin = \"weight\"; "
                 "};\n  retrain = { plugin = \"finetune\"; }; };\ntrain = {\n");
  char *p = testutil_write_file(dir, "switch.cfg", t, strlen(t));
  PrunusConfig *c = load_ok(p);
  PrunusRunConfig rc;
  PrunusPruneConfig pc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_true(prunus_prune_config_parse(c, &rc, &pc, &error));
  g_assert_no_error(error);
  g_assert_cmpfloat(pc.target, ==, 0.6);
  prunus_prune_config_clear(&pc);
  prunus_run_config_clear(&rc);
  prunus_config_free(c);
  g_free(p), g_free(t);
  testutil_rmtree(dir);
  g_free(dir);
}

/* @include is resolved against the config's folder, whatever the working folder;
 * an error inside the included file names that file; a target that is not a file, or
 * an absolute path, is refused. */
static void test_include(void) {
  char *dir = testutil_mkdtemp();
  char *sub = g_build_filename(dir, "parts", NULL);
  g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
  const char *train = "train = {\n  epochs = 4;\n  lr = 0.2;\n};\n";
  char *inc = testutil_write_file(sub, "train.cfg", train, strlen(train));
  char *text =
      edit(BASE, "train = {\n  epochs = 10;\n  lr = 0.05;\n};\n", "@include \"parts/train.cfg\"\n");
  char *path = testutil_write_file(dir, "main.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_cmpint(rc.train.epochs, ==, 4);
  g_assert_cmpfloat(rc.train.lr, ==, 0.2);
  prunus_run_config_clear(&rc);
  prunus_config_free(c);

  const char *bad = "train = {\n  epochs = 4;\n  lr = \"fast\";\n};\n";
  g_free(testutil_write_file(sub, "train.cfg", bad, strlen(bad)));
  c = load_ok(path);
  g_assert_false(prunus_run_config_parse(c, &rc, &error));
  testutil_assert_error_contains(error, "parts/train.cfg:3:", "key 'train.lr'",
                                 "expected a float, found a string", NULL);
  g_clear_error(&error);
  prunus_config_free(c);

  g_assert_cmpint(g_unlink(inc), ==, 0);
  g_assert_null(prunus_config_load(path, &error));
  char *where = loc(path, line_of(text, "@include"));
  testutil_assert_error_contains(error, where, "include", NULL);
  g_clear_error(&error);

  /* a folder, or "" (the config's folder): libconfig 1.5 would exit() the process on
   * either ("input in flex scanner failed"); they are refused first */
  const char *const folders[] = {"parts", ""};
  for (size_t i = 0; i < G_N_ELEMENTS(folders); i++) {
    char *line = g_strdup_printf("@include \"%s\"\n", folders[i]);
    char *t = edit(BASE, "train = {\n  epochs = 10;\n  lr = 0.05;\n};\n", line);
    char *p = testutil_write_file(dir, "folder.cfg", t, strlen(t));
    g_assert_null(prunus_config_load(p, &error));
    char *at = loc(p, line_of(t, "@include"));
    char *what = g_strdup_printf("@include \"%s\": %s%s%s is not a file", folders[i], dir,
                                 folders[i][0] ? "/" : "", folders[i]);
    testutil_assert_error_contains(error, at, what, NULL);
    g_clear_error(&error);
    g_free(what), g_free(at), g_free(p), g_free(t), g_free(line);
  }

  /* an absolute path, to a file that exists: libconfig would read folder + "/" + it and
   * fail with its own bare message; refused first, saying so */
  g_free(testutil_write_file(sub, "train.cfg", train, strlen(train)));
  char *line = g_strdup_printf("@include \"%s\"\n", inc);
  char *t = edit(BASE, "train = {\n  epochs = 10;\n  lr = 0.05;\n};\n", line);
  char *p = testutil_write_file(dir, "absolute.cfg", t, strlen(t));
  g_assert_null(prunus_config_load(p, &error));
  char *at = loc(p, line_of(t, "@include"));
  testutil_assert_error_contains(error, at, inc, "an absolute path",
                                 "write the path relative to it", NULL);
  g_clear_error(&error);
  g_free(at), g_free(p), g_free(t), g_free(line);

  testutil_rmtree(dir);
  g_free(where);
  g_free(path);
  g_free(text);
  g_free(inc);
  g_free(sub);
  g_free(dir);
}

/* ------------------------------------------------------------------------- */
/* errors */

static void test_syntax_error(void) {
  char *dir = testutil_mkdtemp();
  char *text = edit(BASE, "lr = 0.05;", "lr = = 0.05;");
  char *path = testutil_write_file(dir, "syntax.cfg", text, strlen(text));
  GError *error = NULL;
  g_assert_null(prunus_config_load(path, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG);
  char *where = loc(path, line_of(text, "lr = ="));
  testutil_assert_error_contains(error, where, "syntax error", NULL);
  g_assert_true(g_str_has_prefix(error->message, where));
  g_clear_error(&error);
  testutil_rmtree(dir);
  g_free(where);
  g_free(path);
  g_free(text);
  g_free(dir);
}

static void test_missing_file(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "nope.cfg", NULL);
  GError *error = NULL;
  g_assert_null(prunus_config_load(path, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, path, "No such file", NULL);
  g_clear_error(&error);
  g_assert_null(prunus_config_load(dir, &error)); /* a folder */
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, dir, "folder", NULL);
  g_clear_error(&error);
  testutil_rmtree(dir);
  g_free(path);
  g_free(dir);
}

/* check_unread on text (parsed first) fails with every needle. */
static void unread_fails(const char *text, const char *needle1, const char *needle2,
                         const char *needle3) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "unread.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_false(prunus_config_check_unread(c, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG);
  testutil_assert_error_contains(error, path, needle1, needle2, needle3, NULL);
  g_clear_error(&error);
  prunus_run_config_clear(&rc);
  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(path);
  g_free(dir);
}

static void test_unknown_keys(void) {
  /* top level, with a hint */
  char *text = g_strconcat(BASE, "nmae = \"typo\";\n", NULL);
  char *where = g_strdup_printf("unread.cfg:%d: unknown key 'nmae'", line_of(text, "nmae"));
  unread_fails(text, where, "(did you mean 'name'?)", NULL);
  g_free(where);
  g_free(text);

  /* inside a group: the full path, hinted from a key the parser asked for */
  text = edit(BASE, "  lr = 0.05;\n", "  lr = 0.05;\n  momentun = 0.9;\n");
  where = g_strdup_printf("unread.cfg:%d: unknown key 'train.momentun'", line_of(text, "momentun"));
  unread_fails(text, where, "(did you mean 'momentum'?)", NULL);
  g_free(where);
  g_free(text);

  /* a whole unknown group is one key; no hint when nothing is close */
  text = g_strconcat(BASE, "\nextras = {\n  a = 1;\n  b = 2;\n};\n", NULL);
  where = g_strdup_printf("unread.cfg:%d: unknown key 'extras'", line_of(text, "extras"));
  unread_fails(text, where, NULL, NULL);
  g_free(where);
  g_free(text);

  /* many: the first five are listed, the rest counted */
  text = g_strconcat(BASE, "k1 = 1;\nk2 = 2;\nk3 = 3;\nk4 = 4;\nk5 = 5;\nk6 = 6;\nk7 = 7;\n", NULL);
  where = g_strdup_printf("unread.cfg:%d: unknown key 'k5'", line_of(text, "k5"));
  unread_fails(text, "unknown key 'k1'", where, "(and 2 more unknown keys)");
  g_free(where);
  g_free(text);
}

static void test_unknown_layer_key(void) {
  edit_fails_at("{ type = \"dense\"; units = 300; }",
                "{ type = \"dense\"; units = 300; kernel = 3; }", "kernel = 3",
                "unknown key 'model.layers[1].kernel' in a dense layer",
                "(allowed keys: type, name, input, units)");
  edit_fails_at("{ type = \"relu\"; }", "{ type = \"relu\";\n      unit = 3; }", "unit = 3",
                "unknown key 'model.layers[2].unit' in a relu layer",
                "(allowed keys: type, name, input)");
  edit_fails_at("{ type = \"dense\"; units = 10; }", "{ type = \"dense\"; unitz = 10; }", "unitz",
                "group 'model.layers[3]' is missing the required key 'units'", NULL);
  edit_fails_at("{ type = \"dense\"; units = 10; }", "{ type = \"dense\"; units = 10; unitz = 1; }",
                "unitz", "unknown key 'model.layers[3].unitz'", "(did you mean 'units'?)");
}

static void test_wrong_type(void) {
  edit_fails_at("lr = 0.05;", "lr = \"0.05\";", "lr =", "key 'train.lr'",
                "expected a float, found a string");
  edit_fails_at("epochs = 10;", "epochs = 2.5;", "epochs", "key 'train.epochs'",
                "expected an integer, found a float");
  edit_fails_at("name = \"base\";", "name = 7;", "name", "key 'name'",
                "expected a string, found an integer");
  edit_fails_at("input = [1, 28, 28];", "input = (1, 28.0, 28);", "input", "key 'model.input[1]'",
                "expected an integer, found a float");
  edit_fails_at("input = [1, 28, 28];", "input = [28, 28];", "input", "key 'model.input'",
                "[channels, height, width], found 2 elements");
  edit_fails_at("train = {\n  epochs = 10;\n  lr = 0.05;\n};\n", "train = 3;\n", "train = 3",
                "key 'train'", "expected a group, found an integer");
  edit_fails_at("{ type = \"relu\"; },", "\"relu\",", "\"relu\",",
                "model.layers[2] must be a group", "found a string");
  char *text = edit(BASE, "train = {\n", "seed = true;\ntrain = {\n");
  parse_fails_at(text, "seed", "key 'seed'", "expected an integer, found a boolean");
  g_free(text);
}

static void test_missing_required(void) {
  edit_fails_at("  epochs = 10;\n", "", "train = {",
                "group 'train' is missing the required key 'epochs'", NULL);
  edit_fails_at("  lr = 0.05;\n", "", "train = {", "group 'train' is missing the required key 'lr'",
                NULL);
  edit_fails_at("  test_labels = \"labels/test.gz\";\n", "", "dataset = {",
                "group 'dataset' is missing the required key 'test_labels'", NULL);
  edit_fails_at("{ type = \"dense\"; units = 300; }", "{ units = 300; }", "{ units = 300; }",
                "group 'model.layers[1]' is missing the required key 'type'", NULL);

  /* the top level has no line: the file is named */
  char *dir = testutil_mkdtemp();
  char *text = edit(BASE, "name = \"base\";\n", "");
  char *path = testutil_write_file(dir, "noname.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_false(prunus_run_config_parse(c, &rc, &error));
  char *msg = g_strdup_printf("%s: the top level is missing the required key 'name'", path);
  g_assert_cmpstr(error->message, ==, msg);
  g_clear_error(&error);
  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(msg);
  g_free(path);
  g_free(text);
  g_free(dir);
}

static void test_bad_enum(void) {
  char *text = edit(BASE, "  lr = 0.05;\n", "  lr = 0.05;\n  optimizer = \"adamw\";\n");
  parse_fails_at(text, "optimizer", "key 'train.optimizer': unknown value 'adamw'",
                 "(expected one of: sgd, adam)");
  g_free(text);
  text = edit(BASE, "  lr = 0.05;\n", "  lr = 0.05;\n  lr_schedule = \"linear\";\n");
  parse_fails_at(text, "lr_schedule", "key 'train.lr_schedule': unknown value 'linear'",
                 "(expected one of: constant, step, cosine)");
  g_free(text);
  text = edit(BASE, "  test_labels", "  normalize = \"minmax\";\n  test_labels");
  parse_fails_at(text, "normalize", "key 'dataset.normalize': unknown value 'minmax'",
                 "(expected one of: unit, standard)");
  g_free(text);
  text = edit(BASE, "  test_labels", "  format = \"csv\";\n  test_labels");
  parse_fails_at(text, "format", "key 'dataset.format': unknown value 'csv'",
                 "(expected one of: idx)");
  g_free(text);
  text = edit(BASE, "input = [1, 28, 28];", "input = [1, 28, 28]; init = \"he\";");
  parse_fails_at(text, "init", "key 'model.init': unknown value 'he'",
                 "(expected one of: kaiming, glorot, uniform-fan-in)");
  g_free(text);
  edit_fails_at(
      "{ type = \"relu\"; }", "{ type = \"softmax\"; }", "softmax",
      "key 'model.layers[2].type': unknown layer type 'softmax'",
      "(expected one of: dense, conv2d, maxpool2d, relu, flatten, batchnorm, add, concat, avgpool2d, globalavgpool)");
}

static void test_out_of_range(void) {
  edit_fails_at("epochs = 10;", "epochs = 0;", "epochs",
                "key 'train.epochs' = 0 is out of range: must be >= 1", NULL);
  edit_fails_at("lr = 0.05;", "lr = -0.1;", "lr =", "key 'train.lr' = -0.1 is out of range",
                "must be > 0");
  edit_fails_at("lr = 0.05;", "lr = 0.05; beta2 = 1.0;", "beta2",
                "key 'train.beta2' = 1 is out of range", "must be in [0, 1)");
  edit_fails_at("lr = 0.05;", "lr = 0.05; momentum = -0.5;", "momentum",
                "key 'train.momentum' = -0.5 is out of range", "must be in [0, 1)");
  edit_fails_at("lr = 0.05;", "lr = 0.05; batch = 0;", "batch",
                "key 'train.batch' = 0 is out of range", "must be in [1, 65536]");
  edit_fails_at("lr = 0.05;", "lr = 0.05; lr_schedule = \"step\"; step_size = 0;", "step_size",
                "key 'train.step_size' = 0 is out of range", ">= 1");
  edit_fails_at("lr = 0.05;", "lr = 0.05; nesterov = true;", "nesterov",
                "key 'train.nesterov' = true needs momentum > 0", NULL);
  /* keys the optimizer or schedule never reads, and a warm-up that never ends */
  edit_fails_at("lr = 0.05;", "lr = 0.05; optimizer = \"adam\"; momentum = 0.9;", "momentum",
                "key 'train.momentum': optimizer = \"adam\" never reads it (only \"sgd\" does); "
                "remove it",
                NULL);
  edit_fails_at("lr = 0.05;", "lr = 0.05; beta1 = 0.8;", "beta1",
                "key 'train.beta1': optimizer = \"sgd\" never reads it (only \"adam\" does)", NULL);
  edit_fails_at("lr = 0.05;", "lr = 0.05; lr_schedule = \"cosine\"; gamma = 0.5;", "gamma",
                "key 'train.gamma': lr_schedule = \"cosine\" never reads it (only \"step\" does)",
                NULL);
  edit_fails_at("lr = 0.05;", "lr = 0.05; warmup_epochs = 10;", "warmup_epochs",
                "key 'train.warmup_epochs' = 10 is not below train.epochs = 10: the learning rate "
                "would never reach lr",
                NULL);
  edit_fails_at("lr = 0.05;", "lr = 0.05; bn_l1 = 0.0001;", "bn_l1",
                "key 'train.bn_l1' = 0.0001, but the model has no batchnorm layer", NULL);
  edit_fails_at("input = [1, 28, 28];", "input = [1, 0, 28];", "input",
                "key 'model.input[1]' = 0 is out of range: must be in [1, 1048576]", NULL);
  edit_fails_at("units = 300;", "units = 0;", "units = 0",
                "key 'model.layers[1].units' = 0 is out of range", "must be in [1, 1048576]");
  edit_fails_at("  test_labels", "  validation = -5;\n  test_labels", "validation",
                "key 'dataset.validation' = -5 is out of range: must be >= 0", NULL);
  char *text = edit(BASE, "train = {\n", "seed = -1;\ntrain = {\n");
  parse_fails_at(text, "seed", "key 'seed' = -1 is out of range",
                 "must be in [0, 2^53 = 9007199254740992]");
  g_free(text);
  /* summary.json holds the seed as a double: past 2^53 a resume would read another */
  text = edit(BASE, "train = {\n", "seed = 9007199254740993L;\ntrain = {\n");
  parse_fails_at(text, "seed", "key 'seed' = 9007199254740993 is out of range", NULL);
  g_free(text);
  /* written below the level that chose the optimizer (the file's momentum, --set's
   * Adam) it cannot be removed there, and other experiments may read it: accepted */
  {
    char *dir = testutil_mkdtemp();
    char *t = edit(BASE, "lr = 0.05;", "lr = 0.05; momentum = 0.9;");
    char *path = testutil_write_file(dir, "inherit.cfg", t, strlen(t));
    PrunusConfig *c = load_ok(path);
    set_ok(c, "train.optimizer=\"adam\"");
    PrunusRunConfig rc;
    GError *error = NULL;
    g_assert_true(prunus_run_config_parse(c, &rc, &error));
    g_assert_no_error(error);
    g_assert_cmpint(rc.train.optimizer, ==, PRUNUS_OPT_ADAM);
    prunus_run_config_clear(&rc);
    prunus_config_free(c);
    testutil_rmtree(dir);
    g_free(path), g_free(t), g_free(dir);
  }
  /* step_size is read by the step schedule only: with another it is refused as unused
   * (not as out of range) */
  edit_fails_at("lr = 0.05;", "lr = 0.05; step_size = 0;", "step_size",
                "key 'train.step_size': lr_schedule = \"constant\" never reads it", NULL);
}

/* ------------------------------------------------------------------------- */
/* graphs: names, inputs, blocks */

/* BASE's model replaced by layers (and blocks) text. (transfer full) */
static char *with_model(const char *model) {
  const char *from = "model = {";
  const char *a = strstr(BASE, from), *b = strstr(BASE, "train = {");
  return g_strdup_printf("%.*smodel = {\n  input = [1, 8, 8];\n%s};\n%s", (int)(a - BASE), BASE,
                         model, b);
}

static PrunusArch parse_arch_ok(const char *text, char **arch_string) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "graph.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_true(prunus_config_check_unread(c, &error));
  g_assert_no_error(error);
  PrunusArch a = prunus_arch_copy(&rc.arch);
  *arch_string = prunus_arch_to_string(&a);
  prunus_run_config_clear(&rc);
  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(path), g_free(dir);
  return a;
}

static const char GRAPH_MODEL[] =
    "  blocks = {\n"
    "    res = (\n"
    "      { name = \"conv\"; type = \"conv2d\"; channels = \"$c\"; kernel = 3; padding = 1; bias = false; },\n"
    "      { name = \"bn\"; type = \"batchnorm\"; momentum = 0.2; eps = 0.001; },\n"
    "      { name = \"add\"; type = \"add\"; input = [\"bn\", \"$in\"]; },\n"
    "      { type = \"relu\"; }\n"
    "    );\n"
    "  };\n"
    "  layers = (\n"
    "    { name = \"stem\"; type = \"conv2d\"; channels = 4; kernel = 3; padding = 1; },\n"
    "    { block = \"res\"; name = \"s1\"; repeat = 2; c = 4; },\n"
    "    { name = \"side\"; type = \"avgpool2d\"; kernel = 2; input = \"late\"; },\n"
    "    { name = \"late\"; type = \"conv2d\"; channels = 2; kernel = 1; input = \"stem\"; },\n"
    "    { name = \"cat\"; type = \"concat\"; input = (\"main\", \"side\"); },\n"
    "    { name = \"gap\"; type = \"globalavgpool\"; },\n"
    "    { type = \"dense\"; units = 10; },\n"
    "    { name = \"main\"; type = \"maxpool2d\"; kernel = 2; input = \"8\"; }\n"
    "  );\n";

static void test_graph_model(void) {
  /* main takes "8", the unnamed relu of s1.1: unnamed layers go by their index */
  char *text = with_model(GRAPH_MODEL);
  char *s;
  PrunusArch a = parse_arch_ok(text, &s);
  /* config order: stem 0, s1.0.{conv,bn,add} 1-3, relu 4, s1.1.{conv,bn,add} 5-7,
   * relu 8, side 9, late 10, cat 11, gap 12, dense 13, main 14; sorted so that
   * late (10) comes before side (9) and main (14) before cat (11) */
  g_assert_cmpstr(s, ==,
                  "1x8x8|conv2d:4:3:1:1@stem|conv2d:4:3:1:1:nobias@s1.0.conv|"
                  "batchnorm:0.2:0.001@s1.0.bn|add@s1.0.add<s1.0.bn,stem|relu|"
                  "conv2d:4:3:1:1:nobias@s1.1.conv|batchnorm:0.2:0.001@s1.1.bn|"
                  "add@s1.1.add<s1.1.bn,4|relu|conv2d:2:1:1:0@late<stem|avgpool2d:2:2@side|"
                  "maxpool2d:2:2@main<8|concat@cat<main,side|globalavgpool@gap|dense:10@13");
  g_assert_cmpint(a.n_layers, ==, 15);
  g_assert_cmpint(a.n_classes, ==, 10);
  g_assert_false(prunus_arch_is_sequence(&a));
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, 1, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(m->layers[12].out.c, ==, 4 + 2);
  prunus_model_free(m);
  prunus_arch_clear(&a);
  g_free(s), g_free(text);
}

/* The shipped model configs: the sequences read as they always did (the checkpoints'
 * architecture strings of before), the graphs with the sizes of their papers. */
static void test_shipped_models(void) {
  static const struct {
    const char *file, *arch;
    int n_layers;
    size_t params, buffers;
    gboolean sequence;
  } cases[] = {
      {"lenet300.cfg", "1x28x28|flatten|dense:300|relu|dense:100|relu|dense:10", 6, 266610, 0,
       TRUE},
      {"lenet5.cfg",
       "1x28x28|conv2d:6:5:1:2|relu|maxpool2d:2:2|conv2d:16:5:1:0|relu|maxpool2d:2:2|flatten|"
       "dense:120|relu|dense:84|relu|dense:10",
       12, 61706, 0, TRUE},
      /* stem 144 + 32; 3 stages: 2 convs of c*c*9 (the first of stages 2, 3 from c/2) + 2 BN;
       * projections 16*32 + 32*64 with their BN; fc 64*10 + 10 */
      {"resnet8.cfg", NULL, 30,
       144 + 32 + (2 * 2304 + 64) + (4608 + 9216 + 128 + 512 + 64) +
           (18432 + 36864 + 256 + 2048 + 128) + 650,
       2 * (16 + 16 + 16 + 32 + 32 + 32 + 64 + 64 + 64), FALSE},
      {"resnet20.cfg", NULL, 72, 272186, 0, FALSE},
      {"vgg-bn.cfg", NULL, 25, 147162, 2 * 2 * (16 + 32 + 64), TRUE},
  };
  for (size_t k = 0; k < G_N_ELEMENTS(cases); k++) {
    char *path = g_build_filename(PRUNUS_SOURCE_ROOT, "configs", cases[k].file, NULL);
    PrunusConfig *c = load_ok(path);
    PrunusRunConfig rc;
    GError *error = NULL;
    g_assert_true(prunus_run_config_parse(c, &rc, &error));
    g_assert_no_error(error);
    g_assert_cmpint(rc.arch.n_layers, ==, cases[k].n_layers);
    g_assert_cmpint(prunus_arch_is_sequence(&rc.arch), ==, cases[k].sequence);
    char *s = prunus_arch_to_string(&rc.arch);
    if (cases[k].arch) g_assert_cmpstr(s, ==, cases[k].arch);
    PrunusModel *m = prunus_model_new(&rc.arch, 1, 0, &error);
    g_assert_no_error(error);
    g_test_message("%s: %d layers, %zu parameters, %zu buffers", cases[k].file, m->n_layers,
                   m->n_params, m->n_buffers);
    g_assert_cmpuint(m->n_params, ==, cases[k].params);
    if (cases[k].buffers) g_assert_cmpuint(m->n_buffers, ==, cases[k].buffers);
    g_assert_cmpint(m->arch.n_classes, ==, 10);
    prunus_model_free(m);
    g_free(s);
    prunus_run_config_clear(&rc);
    prunus_config_free(c);
    g_free(path);
  }
}

/* GRAPH_MODEL edited (from -> to), expected to fail at the line of line_needle. */
static void graph_fails_at(const char *from, const char *to, const char *line_needle,
                           const char *needle1, const char *needle2) {
  char *model = edit(GRAPH_MODEL, from, to);
  char *text = with_model(model);
  parse_fails_at(text, line_needle, needle1, needle2);
  g_free(text), g_free(model);
}

static void test_graph_errors(void) {
  /* unknown input */
  graph_fails_at("input = \"late\"; }", "input = \"nope\"; }", "input = \"nope\"",
                 "key 'model.layers[2].input': no layer is named 'nope'",
                 "\"input\" is the model's input");
  /* a cycle: late <- side <- late */
  graph_fails_at("input = \"stem\"; }", "input = \"side\"; }", "input = \"late\"",
                 "the model's layers form a cycle: side <- late <- side",
                 "no layer may depend on its own output");
  graph_fails_at("input = \"late\"; }", "input = \"side\"; }", "input = \"side\"",
                 "key 'model.layers[2].input': layer 'side' takes its own output, a cycle", NULL);
  /* shapes: concat of 4x4x4 and 2x3x3, add of 2x8x8 and 4x8x8 */
  graph_fails_at("kernel = 2; input = \"8\"", "input = \"8\"; kernel = 3; stride = 1",
                 "type = \"concat\"",
                 "model layer cat (concat): concat stacks channels of inputs of one height and "
                 "width, but 'main' is 4x6x6 and 'side' is 2x4x4",
                 NULL);
  graph_fails_at("{ name = \"cat\"; type = \"concat\"; input = (\"main\", \"side\"); },",
                 "{ name = \"cat\"; type = \"add\"; input = (\"stem\", \"late\"); },",
                 "(\"stem\", \"late\")",
                 "model layer cat (add): add needs inputs of one shape, but 'stem' is 4x8x8 and "
                 "'late' is 2x8x8",
                 NULL);
  /* a batchnorm after a relu */
  graph_fails_at(
      "{ name = \"gap\"; type = \"globalavgpool\"; },",
      "{ name = \"gap\"; type = \"globalavgpool\"; }, { name = \"gap_bn\"; type = \"batchnorm\"; },",
      "gap_bn",
      "model layer gap_bn (batchnorm): batchnorm must follow a conv2d or dense "
      "layer, whose outputs it normalises; its input 'gap' is a globalavgpool layer",
      NULL);
  /* names */
  graph_fails_at("{ name = \"gap\";", "{ name = \"late\";", "type = \"globalavgpool\"",
                 "layer name 'late' is already taken by the layer at", NULL);
  graph_fails_at("{ name = \"gap\";", "{ name = \"g a p\";", "g a p",
                 "key 'model.layers[5].name' = \"g a p\" is not a valid layer name", NULL);
  graph_fails_at("{ name = \"gap\";", "{ name = \"input\";", "name = \"input\"",
                 "is not a valid layer name", "(\"input\" is the model's input)");
  graph_fails_at("input = (\"main\", \"side\")", "input = (\"main\", 3)", "(\"main\", 3)",
                 "key 'model.layers[4].input' must list layer names, found an integer", NULL);
  /* blocks: a layer inside one names its use */
  graph_fails_at("{ name = \"bn\"; type = \"batchnorm\"; momentum = 0.2;",
                 "{ name = \"bn\"; type = \"batchnorm\"; momentum = 1.2;", "momentum = 1.2",
                 "key 'model.blocks.res[1].momentum' = 1.2 is out of range: must be in [0, 1]",
                 "(block 'res' used at ");
  graph_fails_at(
      "channels = \"$c\"", "channels = \"$width\"", "$width",
      "key 'model.blocks.res[0].channels' = \"$width\": the use of block 'res' sets no 'width'",
      "(block 'res' used at ");
  graph_fails_at("repeat = 2; c = 4; }", "repeat = 2; c = 4; d = 1; }", "d = 1",
                 "key 'model.layers[1].d': block 'res' has no layer that reads \"$d\"", NULL);
  graph_fails_at("{ block = \"res\";", "{ block = \"rez\";", "\"rez\"",
                 "key 'model.layers[1].block': no block 'rez' in model.blocks (defined: res)",
                 NULL);
  graph_fails_at("{ block = \"res\"; name = \"s1\"; repeat = 2; c = 4; },",
                 "{ name = \"s1\"; type = \"relu\"; },", "res = (",
                 "model.blocks.res' is never used", NULL);
  graph_fails_at("{ block = \"res\"; name = \"s1\";", "{ block = \"res\";", "block = \"res\"",
                 "group 'model.layers[1]' is missing the required key 'name'", NULL);
  graph_fails_at(
      "channels = 4; kernel = 3; padding = 1; },", "channels = \"$c\"; kernel = 3; padding = 1; },",
      "$c\"; kernel = 3; padding = 1; }",
      "key 'model.layers[0].channels' must be an integer, found the string \"$c\"", NULL);
  graph_fails_at("{ type = \"relu\"; }\n    );", "{ block = \"res\"; name = \"x\"; }\n    );",
                 "name = \"x\"", "a block's layers cannot use blocks (block 'res')", NULL);
  graph_fails_at("bias = false; }", "bias = \"no\"; }", "\"no\"", "key 'model.blocks.res[0].bias'",
                 "expected a boolean, found a string");
}

static void test_last_param_layer(void) {
  edit_fails_at("    { type = \"dense\"; units = 10; }\n",
                "    { type = \"dense\"; units = 10; },\n    { type = \"conv2d\"; channels = 4; "
                "kernel = 1; }\n",
                "conv2d", "model.layers[4] is a conv2d layer",
                "the last layer with parameters must be dense");
  char *text = edit(BASE,
                    "    { type = \"dense\"; units = 300; },\n    { type = \"relu\"; },\n"
                    "    { type = \"dense\"; units = 10; }\n",
                    "    { type = \"relu\"; }\n");
  parse_fails_at(text, "layers =", "key 'model.layers' has no dense layer", NULL);
  g_free(text);
  edit_fails_at(
      "layers = (\n    { type = \"flatten\"; },\n    { type = \"dense\"; units = 300; },\n"
      "    { type = \"relu\"; },\n    { type = \"dense\"; units = 10; }\n  );",
      "layers = ( );", "layers", "key 'model.layers' is empty", NULL);
}

/* ------------------------------------------------------------------------- */
/* --set */

static void test_set_overrides(void) {
  char *dir = testutil_mkdtemp();
  char *text =
      edit(BASE, "  lr = 0.05;\n", "  lr = 0.05;\n  nesterov = false;\n  momentum = 0.5;\n");
  char *t2 = edit(text, "train = {\n", "seed = 0;\ntrain = {\n");
  char *path = testutil_write_file(dir, "set.cfg", t2, strlen(t2));
  PrunusConfig *c = load_ok(path);
  set_ok(c, "train.epochs=3");   /* int */
  set_ok(c, "train.lr = 0.125"); /* float, spaces around '=' */
  set_ok(c, "train.momentum=1"); /* an int into a float key */
  set_ok(c, "train.momentum=0.75");
  set_ok(c, "train.nesterov=TRUE");            /* bool */
  set_ok(c, "name=\"renamed run\"");           /* string, quoted */
  set_ok(c, "dataset.test_images=other/t.gz"); /* string, bare */
  set_ok(c, "model.layers[1].units=200");      /* list element */
  set_ok(c, "model.layers.[3].units=12");      /* libconfig's form of the same */
  set_ok(c, "model.input=[3, 32, 32]");        /* a whole array */
  set_ok(c, "model.input[2]=30");              /* an array element */
  set_ok(c, "seed=10000000000");               /* an int widened to int64 */
  set_ok(c, "train.lr_schedule=cosine");       /* new keys: types inferred */
  set_ok(c, "train.weight_decay=1e-4");
  set_ok(c, "dataset.validation=100");
  set_ok(c, "train.warmup_epochs=0.5");
  set_ok(c, "prune.schedule.rounds=4"); /* new groups on the way */
  set_ok(c, "prune.schedule.amounts=[0.5, 1, 0.25]");
  set_ok(c, "prune.schedule.scope=\"global\"");
  set_ok(c, "prune.schedule.rewind=false");
  set_ok(c, "prune.schedule.big=5000000000");
  set_ok(c, "prune.schedule.tolerance=0"); /* a key --set added, set again: the new type */
  set_ok(c, "prune.schedule.tolerance=0.5");

  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(rc.name, ==, "renamed run");
  g_assert_cmpuint(rc.seed, ==, 10000000000ull);
  char *expect = g_build_filename(dir, "other", "t.gz", NULL);
  g_assert_cmpstr(rc.test_images, ==, expect);
  g_free(expect);
  g_assert_cmpint(rc.validation, ==, 100);
  g_assert_cmpint(rc.arch.input.c, ==, 3);
  g_assert_cmpint(rc.arch.input.h, ==, 32);
  g_assert_cmpint(rc.arch.input.w, ==, 30);
  g_assert_cmpint(rc.arch.layers[1].units, ==, 200);
  g_assert_cmpint(rc.arch.layers[3].units, ==, 12);
  g_assert_cmpint(rc.arch.n_classes, ==, 12);
  g_assert_cmpint(rc.train.epochs, ==, 3);
  g_assert_cmpfloat(rc.train.lr, ==, 0.125);
  g_assert_cmpfloat(rc.train.momentum, ==, 0.75);
  g_assert_true(rc.train.nesterov);
  g_assert_cmpint(rc.train.lr_schedule, ==, PRUNUS_LR_COSINE);
  g_assert_cmpfloat(rc.train.weight_decay, ==, 1e-4);
  g_assert_cmpfloat(rc.train.warmup_epochs, ==, 0.5);
  prunus_run_config_clear(&rc);

  /* the new groups read back through the typed getters */
  config_setting_t *root = prunus_config_root(c);
  config_setting_t *prune = prunus_config_get_group(c, root, "prune", TRUE, &error);
  g_assert_no_error(error);
  config_setting_t *sched = prunus_config_get_group(c, prune, "schedule", TRUE, &error);
  g_assert_no_error(error);
  int rounds;
  int64_t big;
  gboolean rewind = TRUE;
  const char *scope;
  g_assert_true(prunus_config_get_int(c, sched, "rounds", TRUE, 0, &rounds, &error));
  g_assert_true(prunus_config_get_int64(c, sched, "big", TRUE, 0, &big, &error));
  g_assert_true(prunus_config_get_bool(c, sched, "rewind", TRUE, TRUE, &rewind, &error));
  g_assert_true(prunus_config_get_string(c, sched, "scope", TRUE, NULL, &scope, &error));
  g_assert_no_error(error);
  double tolerance = 0.0;
  g_assert_true(prunus_config_get_double(c, sched, "tolerance", TRUE, 0.0, &tolerance, &error));
  g_assert_cmpfloat(tolerance, ==, 0.5);
  g_assert_cmpint(rounds, ==, 4);
  g_assert_cmpint(big, ==, 5000000000ll);
  g_assert_false(rewind);
  g_assert_cmpstr(scope, ==, "global");
  config_setting_t *amounts = prunus_config_get_list(c, sched, "amounts", TRUE, &error);
  g_assert_no_error(error);
  g_assert_cmpint(config_setting_length(amounts), ==, 3);
  g_assert_cmpint(config_setting_type(config_setting_get_elem(amounts, 1)), ==, CONFIG_TYPE_FLOAT);
  g_assert_cmpfloat(config_setting_get_float_elem(amounts, 0), ==, 0.5);
  g_assert_cmpfloat(config_setting_get_float_elem(amounts, 1), ==, 1.0);
  g_assert_cmpfloat(config_setting_get_float_elem(amounts, 2), ==, 0.25);
  g_assert_true(prunus_config_check_unread(c, &error));
  g_assert_no_error(error);

  /* the dump carries the overrides and parses back to the same values */
  char *dump = prunus_config_dump(c);
  g_assert_nonnull(strstr(dump, "epochs = 3;"));
  g_assert_nonnull(strstr(dump, "units = 200;"));
  g_assert_nonnull(strstr(dump, "10000000000L"));
  char *dumped = testutil_write_file(dir, "dumped.cfg", dump, strlen(dump));
  PrunusConfig *c2 = load_ok(dumped);
  char *h1 = prunus_config_hash(c), *h2 = prunus_config_hash(c2);
  g_assert_cmpstr(h1, ==, h2);
  g_assert_true(prunus_run_config_parse(c2, &rc, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(rc.seed, ==, 10000000000ull);
  g_assert_cmpfloat(rc.train.lr, ==, 0.125);
  prunus_run_config_clear(&rc);
  prunus_config_free(c2);

  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(h1);
  g_free(h2);
  g_free(dumped);
  g_free(dump);
  g_free(path);
  g_free(t2);
  g_free(text);
  g_free(dir);
}

static void test_set_errors(void) {
  char *dir = testutil_mkdtemp();
  char *text = edit(BASE, "  lr = 0.05;\n", "  lr = 0.05;\n  nesterov = false;\n");
  char *path = testutil_write_file(dir, "set.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  char *before = prunus_config_dump(c);

  set_fails(c, "train.epochs=abc", "key 'train.epochs' expects an integer, found 'abc'", NULL);
  set_fails(c, "train.epochs=0.5", "key 'train.epochs' expects an integer, found '0.5'", NULL);
  set_fails(c, "train.lr=fast", "key 'train.lr' expects a float, found 'fast'", NULL);
  set_fails(c, "train.nesterov=maybe", "key 'train.nesterov' expects a boolean, found 'maybe'",
            NULL);
  set_fails(c, "name=\"unterminated", "key 'name' expects a string", NULL);
  set_fails(c, "model.input=[1, 2.5, 3]", "key 'model.input' is a list of integer values",
            "found '[1, 2.5, 3]'");
  set_fails(c, "model.input=7", "key 'model.input' expects a list, found '7'", NULL);
  set_fails(c, "model.input[1]=99999999999", "key 'model.input[1]'",
            "does not fit in a 32-bit integer");
  set_fails(c, "model.layers=[1]", "key 'model.layers' holds groups", "model.layers[0].KEY=VALUE");
  set_fails(c, "model.layers[7].units=3", "index 7 is out of range: 'model.layers' has 4 elements",
            NULL);
  /* a list --set would have to create: the message says so, not "a group, not a list" */
  set_fails(c, "prune.layers[0].rate=0.5",
            "the config has no list 'prune.layers' to index: --set adds keys, not lists", NULL);
  set_fails(c, "train.lr.x=1", "'train.lr' is a float, not a group", NULL);
  set_fails(c, "train[0]=1", "'train' is a group, not a list", NULL);
  set_fails(c, "train=3", "key 'train' is a group; set one of its keys", NULL);
  set_fails(c, "train.epochs", "expected KEY=VALUE", NULL);
  set_fails(c, "=3", "expected KEY=VALUE", NULL);
  set_fails(c, "train..epochs=1", "empty component", NULL);
  set_fails(c, "train.9lives=1", "'9lives' is not a valid key name", NULL);
  set_fails(c, "model.layers[x].units=1", "cannot read the list index", NULL);
  set_fails(c, "extra.list=[1, true]", "must all be numbers", NULL);
  set_fails(c, "extra.list=[[1], [2]]", "nested lists", NULL);
  set_fails(c, "extra.a.b[0]=1", "the config has no list 'extra.a.b' to index", NULL);

  /* a failed --set leaves no trace, groups it made included */
  char *after = prunus_config_dump(c);
  g_assert_cmpstr(after, ==, before);
  g_assert_null(strstr(after, "extra"));
  GError *error = NULL;
  g_assert_true(prunus_config_check_unread(c, &error) == FALSE);
  g_clear_error(&error);
  PrunusRunConfig rc;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_cmpint(rc.train.epochs, ==, 10);
  g_assert_true(prunus_config_check_unread(c, &error));
  g_assert_no_error(error);
  prunus_run_config_clear(&rc);

  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(after);
  g_free(before);
  g_free(path);
  g_free(text);
  g_free(dir);
}

/* Values that came from --set are located as "--set key" in later errors. */
static void test_set_located(void) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "base.cfg", BASE, strlen(BASE));
  PrunusConfig *c = load_ok(path);
  set_ok(c, "train.epochz=5");
  set_ok(c, "extra=1");
  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  g_assert_cmpint(rc.train.epochs, ==, 10);
  g_assert_false(prunus_config_check_unread(c, &error));
  testutil_assert_error_contains(error, "--set train.epochz: unknown key 'train.epochz'",
                                 "(did you mean 'epochs'?)", "--set extra: unknown key 'extra'",
                                 NULL);
  g_clear_error(&error);
  prunus_run_config_clear(&rc);
  prunus_config_free(c);

  c = load_ok(path);
  set_ok(c, "train.epochs=0");
  g_assert_false(prunus_run_config_parse(c, &rc, &error));
  testutil_assert_error_contains(
      error, "--set train.epochs: key 'train.epochs' = 0 is out of range", NULL);
  g_clear_error(&error);
  prunus_config_free(c);

  c = load_ok(path);
  set_ok(c, "model.layers[1].units=0");
  g_assert_false(prunus_run_config_parse(c, &rc, &error));
  testutil_assert_error_contains(
      error, "--set model.layers[1].units: key 'model.layers[1].units' = 0", NULL);
  g_clear_error(&error);
  prunus_config_free(c);

  /* a group made by --set that lacks a required key */
  const char *no_train = "name = \"x\";\n";
  char *p2 = testutil_write_file(dir, "notrain.cfg", no_train, strlen(no_train));
  c = load_ok(p2);
  set_ok(c, "model.init=glorot");
  config_setting_t *model =
      prunus_config_get_group(c, prunus_config_root(c), "model", TRUE, &error);
  g_assert_no_error(error);
  g_assert_null(prunus_config_get_list(c, model, "layers", TRUE, &error));
  testutil_assert_error_contains(
      error, "--set model: group 'model' is missing the required key 'layers'", NULL);
  g_clear_error(&error);
  prunus_config_free(c);

  testutil_rmtree(dir);
  g_free(p2);
  g_free(path);
  g_free(dir);
}

/* ------------------------------------------------------------------------- */
/* getters, paths, hash */

static void test_getters(void) {
  char *dir = testutil_mkdtemp();
  const char *text =
      "i = 7;\nbig = 5000000000L;\nf = 2.5;\nb = true;\ns = \"str\";\n"
      "g = { x = 1; };\nl = (1, \"two\");\na = [1, 2];\n";
  char *path = testutil_write_file(dir, "get.cfg", text, strlen(text));
  PrunusConfig *c = load_ok(path);
  config_setting_t *root = prunus_config_root(c);
  GError *error = NULL;
  int i;
  int64_t i64;
  double d;
  gboolean b;
  const char *s;
  int e;
  static const char *const names[] = {"alpha", "str", NULL};

  g_assert_true(prunus_config_get_int64(c, root, "i", TRUE, 0, &i64, &error));
  g_assert_cmpint(i64, ==, 7);
  g_assert_true(prunus_config_get_int64(c, root, "big", TRUE, 0, &i64, &error));
  g_assert_cmpint(i64, ==, 5000000000ll);
  g_assert_true(prunus_config_get_double(c, root, "i", TRUE, 0, &d, &error));
  g_assert_cmpfloat(d, ==, 7.0);
  g_assert_true(prunus_config_get_double(c, root, "f", TRUE, 0, &d, &error));
  g_assert_cmpfloat(d, ==, 2.5);
  g_assert_true(prunus_config_get_bool(c, root, "b", TRUE, FALSE, &b, &error));
  g_assert_true(b);
  g_assert_true(prunus_config_get_enum(c, root, "s", TRUE, 0, names, &e, &error));
  g_assert_cmpint(e, ==, 1);
  g_assert_no_error(error);

  /* absent, not required: the default, no error */
  g_assert_true(prunus_config_get_int(c, root, "none", FALSE, 42, &i, &error));
  g_assert_cmpint(i, ==, 42);
  g_assert_true(prunus_config_get_string(c, root, "none", FALSE, "dflt", &s, &error));
  g_assert_cmpstr(s, ==, "dflt");
  g_assert_true(prunus_config_get_enum(c, root, "none", FALSE, 1, names, &e, &error));
  g_assert_cmpint(e, ==, 1);
  g_assert_null(prunus_config_get_group(c, root, "none", FALSE, &error));
  g_assert_null(prunus_config_get_list(c, root, "none", FALSE, &error));
  g_assert_no_error(error);

  g_assert_false(prunus_config_get_int(c, root, "big", TRUE, 0, &i, &error));
  testutil_assert_error_contains(error, "get.cfg:2: key 'big': 5000000000 does not fit", NULL);
  g_clear_error(&error);
  g_assert_false(prunus_config_get_bool(c, root, "i", TRUE, FALSE, &b, &error));
  testutil_assert_error_contains(error, "get.cfg:1: key 'i': expected a boolean, found an integer",
                                 NULL);
  g_clear_error(&error);
  g_assert_false(prunus_config_get_double(c, root, "s", TRUE, 0, &d, &error));
  testutil_assert_error_contains(error, "get.cfg:5: key 's': expected a float, found a string",
                                 NULL);
  g_clear_error(&error);
  g_assert_null(prunus_config_get_group(c, root, "l", TRUE, &error));
  testutil_assert_error_contains(error, "get.cfg:7: key 'l': expected a group, found a list", NULL);
  g_clear_error(&error);
  g_assert_null(prunus_config_get_list(c, root, "g", TRUE, &error));
  testutil_assert_error_contains(error, "get.cfg:6: key 'g': expected a list, found a group", NULL);
  g_clear_error(&error);
  g_assert_nonnull(prunus_config_get_list(c, root, "a", TRUE, &error));
  g_assert_no_error(error);

  /* g.x was never read; l's elements are values of a read list, not keys */
  g_assert_false(prunus_config_check_unread(c, &error));
  testutil_assert_error_contains(error, "get.cfg:6: unknown key 'g.x'", NULL);
  g_assert_null(strstr(error->message, "'l"));
  g_clear_error(&error);
  config_setting_t *g = config_setting_get_member(root, "g");
  prunus_config_mark_read(c, config_setting_get_member(g, "x"));
  g_assert_true(prunus_config_check_unread(c, &error));
  g_assert_no_error(error);

  char *where =
      prunus_config_where(c, config_setting_get_elem(config_setting_get_member(root, "a"), 1));
  char *expect = g_strdup_printf("%s:8", path);
  g_assert_cmpstr(where, ==, expect);
  g_free(expect);
  g_free(where);
  where = prunus_config_where(c, root);
  g_assert_cmpstr(where, ==, path);
  g_free(where);

  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(path);
  g_free(dir);
}

static void test_resolve_path(void) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "run.cfg", BASE, strlen(BASE));
  /* loaded by a relative path: the result is still absolute */
  char *cwd = g_get_current_dir();
  char *parent = g_path_get_dirname(dir);
  char *base = g_path_get_basename(dir);
  char *rel = g_build_filename(base, "run.cfg", NULL);
  g_assert_cmpint(g_chdir(parent), ==, 0);
  PrunusConfig *c = load_ok(rel);
  g_assert_cmpint(g_chdir(cwd), ==, 0);

  char *r = prunus_config_resolve_path(c, "data/x.gz");
  char *expect = g_build_filename(dir, "data", "x.gz", NULL);
  g_assert_true(g_path_is_absolute(r));
  g_assert_cmpstr(r, ==, expect);
  g_free(r);
  g_free(expect);
  r = prunus_config_resolve_path(c, "/abs/../y.gz");
  g_assert_cmpstr(r, ==, "/abs/../y.gz");
  g_free(r);

  PrunusRunConfig rc;
  GError *error = NULL;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  expect = g_build_filename(dir, "data", "train-labels.gz", NULL);
  g_assert_cmpstr(rc.train_labels, ==, expect);
  g_free(expect);
  prunus_run_config_clear(&rc);

  prunus_config_free(c);
  testutil_rmtree(dir);
  g_free(rel);
  g_free(base);
  g_free(parent);
  g_free(cwd);
  g_free(path);
  g_free(dir);
}

static void test_hash(void) {
  char *dir = testutil_mkdtemp();
  char *path = testutil_write_file(dir, "a.cfg", BASE, strlen(BASE));
  /* the same settings written differently: comments, layout */
  char *text = edit(BASE, "train = {\n  epochs = 10;\n  lr = 0.05;\n};\n",
                    "train = { epochs = 10;   # ten\n  lr = 0.05; };\n");
  char *path2 = testutil_write_file(dir, "b.cfg", text, strlen(text));
  PrunusConfig *a = load_ok(path), *a2 = load_ok(path), *b = load_ok(path2);
  char *ha = prunus_config_hash(a), *ha2 = prunus_config_hash(a2), *hb = prunus_config_hash(b);
  g_assert_cmpuint(strlen(ha), ==, 64);
  for (const char *p = ha; *p; p++) g_assert_true(g_ascii_isxdigit(*p));
  g_assert_cmpstr(ha, ==, ha2);
  g_assert_cmpstr(ha, ==, hb);
  char *dump = prunus_config_dump(a);
  char *expect = g_compute_checksum_for_string(G_CHECKSUM_SHA256, dump, -1);
  g_assert_cmpstr(ha, ==, expect);

  set_ok(a2, "train.epochs=10"); /* the same value: the same hash */
  char *h = prunus_config_hash(a2);
  g_assert_cmpstr(h, ==, ha);
  g_free(h);
  set_ok(a2, "train.epochs=11");
  h = prunus_config_hash(a2);
  g_assert_cmpstr(h, !=, ha);
  g_free(h);
  set_ok(b, "train.lr=0.050000001"); /* a small change still shows */
  h = prunus_config_hash(b);
  g_assert_cmpstr(h, !=, ha);
  g_free(h);

  /* a key --set adds, set again with a value of its type, stays where the first put it:
   * the same settings give the same hash (a rerun with the --set once resumes) */
  static const char *const twice_sets[][4] = {
      {"train.tolerance=0.0", "train.extra=1.0", "train.tolerance=0.5", "train.tolerance=0.5"},
      {"train.tolerance=0", "train.extra=1.0", "train.tolerance=0.5", "train.tolerance=0.5"},
      {"train.cap=0.5", "train.extra=1.0", "train.cap=1", "train.cap=1"},
      {"train.tag=7", "train.extra=1.0", "train.tag=\"seven\"", "train.tag=\"seven\""},
      {"train.tag=\"seven\"", "train.extra=1.0", "train.tag=true", "train.tag=true"}};
  for (size_t i = 0; i < G_N_ELEMENTS(twice_sets); i++) {
    PrunusConfig *twice = load_ok(path), *once = load_ok(path);
    set_ok(twice, twice_sets[i][0]);
    set_ok(twice, twice_sets[i][1]);
    set_ok(twice, twice_sets[i][2]);
    set_ok(once, twice_sets[i][3]);
    set_ok(once, twice_sets[i][1]);
    char *h_twice = prunus_config_hash(twice), *h_once = prunus_config_hash(once);
    if (strcmp(h_twice, h_once)) {
      char *a = prunus_config_dump(twice), *b = prunus_config_dump(once);
      g_error("case %zu: the configs differ:\n%s\n--- against ---\n%s", i, a, b);
    }
    g_free(h_twice), g_free(h_once);
    prunus_config_free(twice), prunus_config_free(once);
  }

  prunus_config_free(a);
  prunus_config_free(a2);
  prunus_config_free(b);
  testutil_rmtree(dir);
  g_free(expect);
  g_free(dump);
  g_free(ha);
  g_free(ha2);
  g_free(hb);
  g_free(path2);
  g_free(text);
  g_free(path);
  g_free(dir);
}

/* Run and experiment names become folders and labels: what may not be one, and why. */
static void test_names(void) {
  static const char *const good[] = {"a", "lottery-study", "weight-norm-r16", "v1.2_b+c",
                                     "renamed run"};
  for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
    g_assert_null(prunus_config_name_problem(good[i], FALSE));
    g_assert_null(prunus_config_name_problem(good[i], TRUE));
  }
  static const struct {
    const char *name;
    gboolean experiment;
    const char *why;
  } bad[] = {
      {"", FALSE, "must not be empty"},
      {"..", TRUE, "'..' starts with '.'"},
      {".", FALSE, "'.' starts with '.'"},
      {".hidden", TRUE, "'.hidden' starts with '.'"},
      {"a/b", FALSE,
       "'a/b' holds the byte 0x2f at 1: use letters, digits, spaces and . _ + - "
       "(-o RUN_DIR chooses the run's folder)"},
      {"tab\there", FALSE, "holds the byte 0x09 at 3"},
      {"t\xff\xfe", TRUE, "is not UTF-8 (byte 0xff at 1)"},
      {"caf\xc3\xa9", TRUE, "'caf\xc3\xa9' holds a non-ASCII character (byte 0xc3 at 3)"},
      {"cache", TRUE, "'cache' is the name of an entry the run folder has already"},
      {"plots", TRUE, "an entry the run folder has already"},
      {"report.html", TRUE, "an entry the run folder has already"},
      {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", FALSE,
       "is 65 bytes long, at most 64 allowed"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    char *why = prunus_config_name_problem(bad[i].name, bad[i].experiment);
    if (!why || !strstr(why, bad[i].why))
      g_error("name '%s': expected '%s', found '%s'", bad[i].name, bad[i].why, why ? why : "(ok)");
    g_free(why);
  }
  /* the run may be called cache: runs/cache is not inside a run folder */
  g_assert_null(prunus_config_name_problem("cache", FALSE));
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/config/parse-full", test_parse_full);
  g_test_add_func("/config/parse-defaults", test_parse_defaults);
  g_test_add_func("/config/include", test_include);
  g_test_add_func("/config/int-literals", test_int_literals);
  g_test_add_func("/config/prune-layer-names", test_prune_layer_names);
  g_test_add_func("/config/syntax-error", test_syntax_error);
  g_test_add_func("/config/missing-file", test_missing_file);
  g_test_add_func("/config/unknown-keys", test_unknown_keys);
  g_test_add_func("/config/unknown-layer-key", test_unknown_layer_key);
  g_test_add_func("/config/wrong-type", test_wrong_type);
  g_test_add_func("/config/missing-required", test_missing_required);
  g_test_add_func("/config/bad-enum", test_bad_enum);
  g_test_add_func("/config/out-of-range", test_out_of_range);
  g_test_add_func("/config/last-param-layer", test_last_param_layer);
  g_test_add_func("/config/graph/model", test_graph_model);
  g_test_add_func("/config/graph/shipped-models", test_shipped_models);
  g_test_add_func("/config/graph/errors", test_graph_errors);
  g_test_add_func("/config/set-overrides", test_set_overrides);
  g_test_add_func("/config/set-errors", test_set_errors);
  g_test_add_func("/config/set-located", test_set_located);
  g_test_add_func("/config/getters", test_getters);
  g_test_add_func("/config/resolve-path", test_resolve_path);
  g_test_add_func("/config/hash", test_hash);
  g_test_add_func("/config/names", test_names);
  return g_test_run();
}
