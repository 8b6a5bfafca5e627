/* test_limits.c: absurd sizes are refused before any large allocation, with the key
 * (or file) and the limit: config keys (units, batch, layer count, parameters,
 * workspace, also through --set), a checkpoint whose architecture its file cannot
 * hold, a safetensors header claiming 100 GB, IDX dimensions claiming billions of
 * samples. The process's peak RSS must not grow by more than a few MB meanwhile. */
#include "checkpoint.h"
#include "config.h"
#include "dataset.h"
#include "safetensors.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/resource.h>

static const char BASE[] =
    "name = \"limits\";\n"
    "dataset = { train_images = \"a\"; train_labels = \"b\";\n"
    "            test_images = \"c\"; test_labels = \"d\"; };\n"
    "model = {\n"
    "  input = [1, 28, 28];\n"
    "  layers = ( { type = \"flatten\"; },\n"
    "             { type = \"dense\"; units = 300; },\n"
    "             { type = \"dense\"; units = 10; } );\n"
    "};\n"
    "train = { epochs = 1; lr = 0.1; batch = 64; };\n";

static char *dir;

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* BASE with from replaced by to, loaded and parsed with the --set assignments in sets
 * (NULL-terminated, may be NULL): must fail, at load or parse, with an error
 * containing every needle. */
static void refused(const char *from, const char *to, const char *const *sets, const char *needle1,
                    const char *needle2) {
  const char *at = strstr(BASE, from);
  g_assert_nonnull(at);
  char *text = g_strdup_printf("%.*s%s%s", (int)(at - BASE), BASE, to, at + strlen(from));
  char *path = testutil_write_file(dir, "limits.cfg", text, strlen(text));
  GError *error = NULL;
  PrunusConfig *c = prunus_config_load(path, &error); /* NULL: refused at load */
  if (c) {
    gboolean ok = TRUE;
    for (const char *const *s = sets; ok && s && *s; s++)
      ok = prunus_config_apply_set(c, *s, &error);
    g_assert_true(ok);
    PrunusRunConfig rc;
    g_assert_false(prunus_run_config_parse(c, &rc, &error));
  }
  g_test_message("%s", error->message);
  testutil_assert_error_contains(error, needle1, needle2, NULL);
  g_error_free(error);
  prunus_config_free(c);
  g_free(path);
  g_free(text);
}

static void test_config_keys(void) {
  long before = peak_rss_kb();
  refused("units = 300;", "units = 1000000000;", NULL,
          "limits.cfg:7: key 'model.layers[1].units' = 1000000000 is out of range",
          "must be in [1, 1048576]");
  refused("batch = 64;", "batch = 1000000000;", NULL,
          "limits.cfg:10: key 'train.batch' = 1000000000 is out of range", "must be in [1, 65536]");
  const char *const set_units[] = {"model.layers[1].units=1000000000", NULL};
  refused("units = 300;", "units = 300;", set_units,
          "--set model.layers[1].units: key 'model.layers[1].units' = 1000000000 is out of range",
          "must be in [1, 1048576]");
  /* a number beyond a double: libconfig reads it as infinity (--set refuses one) */
  refused("batch = 64;", "batch = 64; weight_decay = 1e99999;", NULL,
          "limits.cfg:10: key 'train.weight_decay' = inf is not a finite number", NULL);
  /* also where only a plugin reads it: refused at load (the dump, config.cfg, could
   * not be read back with an infinity in it; found by the config harness) */
  refused("batch = 64; };",
          "batch = 64; };\nprune = { retrain = { plugin = \"finetune\"; lr = 0.1e901; }; };", NULL,
          "limits.cfg:11: key 'prune.retrain.lr' = inf is not a finite number", NULL);
  refused("input = [1, 28, 28];", "input = [1, 28, 100000000];", NULL,
          "key 'model.input[2]' = 100000000 is out of range", "must be in [1, 1048576]");
  /* each key within its limit, the whole over one: named at the layer that crosses it */
  refused("input = [1, 28, 28];", "input = [1, 1024, 1024];",
          (const char *const[]){"model.layers[1].units=1048576", NULL},
          "model.layers[1] (with train.batch = 64): model layer 1: the parameters up to it is "
          "1099512676352",
          "more than the limit of 268435456");
  refused("input = [1, 28, 28];", "input = [3, 224, 224];",
          (const char *const[]){"train.batch=65536", NULL},
          "model.layers[0] (with train.batch = 65536): model layer 0: the workspace floats for a "
          "batch of 65536 is",
          "more than the limit of 1073741824");
  /* a block used 2e9 times: refused from its counts, before any layer is expanded */
  refused("  layers = ( { type = \"flatten\"; },\n",
          "  blocks = { two = ( { type = \"dense\"; units = 8; }, { type = \"relu\"; } ); };\n"
          "  layers = ( { type = \"flatten\"; },\n"
          "             { block = \"two\"; name = \"b\"; repeat = 2000000000; },\n",
          NULL, "key 'model.layers[1].repeat' = 2000000000: block 'two' has 2 layers",
          "more than the limit of 1024");
  long grew = peak_rss_kb() - before;
  g_test_message("peak RSS grew by %ld kB", grew);
  g_assert_cmpint(grew, <, 16 * 1024); /* none of them built anything */
  /* 100000 layers: the list is counted before anything is built for it (a million
   * work the same, but libconfig's own tree of them takes 450 MB) */
  GString *many = g_string_new("layers = ( { type = \"flatten\"; }");
  for (int i = 0; i < 100000; i++) g_string_append(many, ", { type = \"relu\"; }");
  g_string_append(many, ", { type = \"dense\"; units = 10; } );");
  refused(
      "layers = ( { type = \"flatten\"; },\n"
      "             { type = \"dense\"; units = 300; },\n"
      "             { type = \"dense\"; units = 10; } );",
      many->str, NULL, "key 'model.layers' has 100002 layers", "more than the limit of 1024");
  g_string_free(many, TRUE);
}

/* A safetensors file with the given header (JSON text) and no data. */
static char *write_st(const char *name, uint64_t header_len, const char *header) {
  GByteArray *a = g_byte_array_new();
  uint64_t le = GUINT64_TO_LE(header_len);
  g_byte_array_append(a, (const guint8 *)&le, 8);
  g_byte_array_append(a, (const guint8 *)header, (guint)strlen(header));
  char *path = testutil_write_file(dir, name, a->data, a->len);
  g_byte_array_unref(a);
  return path;
}

static void test_files(void) {
  long before = peak_rss_kb();
  GError *error = NULL;
  /* a header length of 100 GB */
  char *path = write_st("huge-header.safetensors", 100000000000ull, "{}");
  g_assert_null(prunus_safetensors_read(path, &error));
  testutil_assert_error_contains(error, path, "header length 100000000000 exceeds the limit of",
                                 "104857600 bytes", NULL);
  g_clear_error(&error);
  g_free(path);
  /* a tensor claiming 100 GB of data in a file of a few bytes */
  const char *big =
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[25000000000],"
      "\"data_offsets\":[0,100000000000]}}";
  path = write_st("huge-tensor.safetensors", strlen(big), big);
  g_assert_null(prunus_safetensors_read(path, &error));
  testutil_assert_error_contains(error, path, "\"w\"", NULL);
  g_test_message("%s", error->message);
  g_clear_error(&error);
  g_free(path);
  /* checkpoints whose architecture is over the limits, or larger than the file */
  const char *over =
      "{\"__metadata__\":{\"format\":\"prunus\",\"architecture\":"
      "\"1x1024x1024|flatten|dense:1000000|dense:10\"}}";
  path = write_st("over.safetensors", strlen(over), over);
  g_assert_null(prunus_checkpoint_load(path, 1, NULL, NULL, &error));
  testutil_assert_error_contains(error, path, "metadata \"architecture\": model layer 1",
                                 "more than the limit of 268435456", NULL);
  g_clear_error(&error);
  g_free(path);
  const char *bigger =
      "{\"__metadata__\":{\"format\":\"prunus\",\"architecture\":"
      "\"1x64x64|flatten|dense:1000|dense:10\"}}";
  path = write_st("bigger.safetensors", strlen(bigger), bigger);
  g_assert_null(prunus_checkpoint_load(path, 1, NULL, NULL, &error));
  testutil_assert_error_contains(error, path, "needs 4107010 parameters",
                                 "the file holds 0 floats in all", NULL);
  g_clear_error(&error);
  g_free(path);
  /* a checkpoint whose architecture has a million layers (a 5 MB string) */
  GString *arch = g_string_new("{\"__metadata__\":{\"format\":\"prunus\",\"architecture\":\"1x1x1");
  for (int i = 0; i < 1000000; i++) g_string_append(arch, "|relu");
  g_string_append(arch, "|dense:2\"}}");
  path = write_st("layers.safetensors", arch->len, arch->str);
  g_string_free(arch, TRUE);
  g_assert_null(prunus_checkpoint_load(path, 1, NULL, NULL, &error));
  testutil_assert_error_contains(error, path, "architecture string has 1000001 layers",
                                 "more than the limit of 1024", NULL);
  g_clear_error(&error);
  g_free(path);
  /* IDX files claiming 2^31 - 1 images of 65535 x 65535 */
  const guint8 images[] = {0, 0, 8, 3, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff};
  const guint8 labels[] = {0, 0, 8, 1, 0x7f, 0xff, 0xff, 0xff};
  char *ip = testutil_write_file(dir, "images", images, sizeof images);
  char *lp = testutil_write_file(dir, "labels", labels, sizeof labels);
  g_assert_null(prunus_dataset_load_idx(ip, lp, 0, &error));
  testutil_assert_error_contains(error, ip, NULL);
  g_test_message("%s", error->message);
  g_clear_error(&error);
  g_free(ip);
  g_free(lp);
  long grew = peak_rss_kb() - before;
  g_test_message("peak RSS grew by %ld kB", grew);
  g_assert_cmpint(grew, <, 64 * 1024); /* the 5 MB file, its JSON header and their copies */
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  dir = testutil_mkdtemp();
  g_test_add_func("/limits/files", test_files);
  g_test_add_func("/limits/config-keys", test_config_keys);
  int rc = g_test_run();
  testutil_rmtree(dir);
  g_free(dir);
  return rc;
}
