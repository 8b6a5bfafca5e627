/* test_checkpoint.c: unit tests of core/checkpoint.c: bit-exact save/load of
 * parameters and masks (dense and conv models), the names and shapes in the file,
 * the errors for every kind of corrupt or mismatched checkpoint, and the input
 * normalisation in the metadata (bit-exact, absent in older files, malformed). */
#include "checkpoint.h"
#include "rng.h"
#include "safetensors.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define DENSE_ARCH "1x2x2|flatten|dense:5|relu|dense:3"

/* flatten, dense 5, relu, dense 3 on a 1x2x2 input. */
static PrunusArch dense_arch(int hidden) {
  PrunusArch a = {.input = {1, 2, 2}, .n_classes = 3, .n_layers = 4};
  a.layers = g_new0(PrunusLayerSpec, 4);
  a.layers[0].type = PRUNUS_LAYER_FLATTEN;
  a.layers[1] = (PrunusLayerSpec){.type = PRUNUS_LAYER_DENSE, .units = hidden};
  a.layers[2].type = PRUNUS_LAYER_RELU;
  a.layers[3] = (PrunusLayerSpec){.type = PRUNUS_LAYER_DENSE, .units = 3};
  return a;
}

/* conv 2x3x3 (pad 1), relu, maxpool 2, flatten, dense 3 on a 1x4x4 input. */
static PrunusArch conv_arch(void) {
  PrunusArch a = {.input = {1, 4, 4}, .n_classes = 3, .n_layers = 5};
  a.layers = g_new0(PrunusLayerSpec, 5);
  a.layers[0] = (PrunusLayerSpec){
      .type = PRUNUS_LAYER_CONV2D, .channels = 2, .kernel = 3, .stride = 1, .padding = 1};
  a.layers[1].type = PRUNUS_LAYER_RELU;
  a.layers[2] = (PrunusLayerSpec){.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2, .stride = 2};
  a.layers[3].type = PRUNUS_LAYER_FLATTEN;
  a.layers[4] = (PrunusLayerSpec){.type = PRUNUS_LAYER_DENSE, .units = 3};
  return a;
}

/* A model with a mask: every third weight pruned, biases set to non-zero values. */
static PrunusModel *masked_model(const PrunusArch *a, uint64_t seed) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(a, 4, seed, &error);
  g_assert_no_error(error);
  g_assert_nonnull(m);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    for (size_t j = 0; j < l->w_len; j++)
      if (j % 3 == 1) m->mask[l->w_off + j] = 0.0f;
    for (size_t j = 0; j < l->b_len; j++) m->params[l->b_off + j] = 0.01f * (float)(j + 1);
  }
  prunus_model_apply_mask(m);
  return m;
}

static void assert_same_model(const PrunusModel *a, const PrunusModel *b) {
  g_assert_cmpuint(a->n_params, ==, b->n_params);
  g_assert_cmpint(a->n_layers, ==, b->n_layers);
  g_assert_cmpmem(a->params, a->n_params * 4, b->params, b->n_params * 4);
  g_assert_cmpmem(a->mask, a->n_params * 4, b->mask, b->n_params * 4);
  char *sa = prunus_arch_to_string(&a->arch), *sb = prunus_arch_to_string(&b->arch);
  g_assert_cmpstr(sa, ==, sb);
  g_free(sa);
  g_free(sb);
}

/* Load path and expect an error in code whose message holds the path and needles. */
static void load_fails(const char *path, const PrunusArch *expected, int code, const char *needle1,
                       const char *needle2) {
  GError *error = NULL;
  GHashTable *meta = (GHashTable *)0x1;
  PrunusModel *m = prunus_checkpoint_load(path, 1, expected, &meta, &error);
  g_assert_null(m);
  g_assert_null(meta);
  g_assert_error(error, PRUNUS_ERROR, code);
  testutil_assert_error_contains(error, path, needle1, needle2, NULL);
  g_error_free(error);
}

/* ------------------------------------------------------------------------- */

static void test_round_trip_dense(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "round-01.safetensors", NULL);
  PrunusArch arch = dense_arch(5);
  PrunusModel *m = masked_model(&arch, 7);

  GHashTable *extra = g_hash_table_new(g_str_hash, g_str_equal);
  g_hash_table_insert(extra, "round", "1");
  g_hash_table_insert(extra, "config_hash", "abc123");
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, path, extra, &error));
  g_assert_no_error(error);

  GHashTable *meta = NULL;
  PrunusModel *back = prunus_checkpoint_load(path, 8, &arch, &meta, &error);
  g_assert_no_error(error);
  g_assert_nonnull(back);
  assert_same_model(m, back);
  g_assert_cmpint(back->max_batch, >=, 8);
  g_assert_cmpint(prunus_model_n_classes(back), ==, 3);
  g_assert_cmpstr(g_hash_table_lookup(meta, "format"), ==, "prunus");
  g_assert_cmpstr(g_hash_table_lookup(meta, "prunus_version"), ==, prunus_version());
  g_assert_cmpstr(g_hash_table_lookup(meta, "architecture"), ==, DENSE_ARCH);
  g_assert_cmpstr(g_hash_table_lookup(meta, "round"), ==, "1");
  g_assert_cmpstr(g_hash_table_lookup(meta, "config_hash"), ==, "abc123");
  g_assert_cmpuint(g_hash_table_size(meta), ==, 5);

  /* Saving the loaded model with its own metadata as extra gives the same file. */
  char *path2 = g_build_filename(dir, "again.safetensors", NULL);
  g_assert_true(prunus_checkpoint_save(back, path2, meta, &error));
  g_assert_no_error(error);
  char *b1 = NULL, *b2 = NULL;
  size_t n1, n2;
  g_assert_true(g_file_get_contents(path, &b1, &n1, NULL));
  g_assert_true(g_file_get_contents(path2, &b2, &n2, NULL));
  g_assert_cmpmem(b1, n1, b2, n2);
  g_free(b1);
  g_free(b2);
  g_free(path2);
  g_hash_table_destroy(meta);
  prunus_model_free(back);

  /* Without an expected architecture, and without asking for metadata. */
  back = prunus_checkpoint_load(path, 1, NULL, NULL, &error);
  g_assert_no_error(error);
  assert_same_model(m, back);
  prunus_model_free(back);

  /* The forward pass of the loaded model matches the original exactly. */
  back = prunus_checkpoint_load(path, 2, &arch, NULL, &error);
  g_assert_no_error(error);
  const float x[8] = {0.5f, -1.0f, 2.0f, 0.25f, 1.0f, 1.0f, -0.5f, 3.0f};
  prunus_model_forward(m, x, 2);
  prunus_model_forward(back, x, 2);
  g_assert_cmpmem(m->acts[m->n_layers], 6 * 4, back->acts[back->n_layers], 6 * 4);
  prunus_model_free(back);

  g_hash_table_destroy(extra);
  prunus_model_free(m);
  prunus_arch_clear(&arch);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_file_contents(void) {
  /* Names and PyTorch shapes as any safetensors reader sees them. */
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "c.safetensors", NULL);
  PrunusArch arch = conv_arch();
  PrunusModel *m = masked_model(&arch, 3);
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, path, NULL, &error));
  g_assert_no_error(error);

  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  const struct {
    const char *name;
    int ndim;
    int64_t shape[4];
  } want[] = {
      {"0.weight", 4, {2, 1, 3, 3}}, {"0.bias", 1, {2}}, {"0.mask", 4, {2, 1, 3, 3}},
      {"4.weight", 2, {3, 8}},       {"4.bias", 1, {3}}, {"4.mask", 2, {3, 8}},
  };
  g_assert_cmpint(f->n_tensors, ==, G_N_ELEMENTS(want));
  for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
    const PrunusTensor *t = &f->tensors[i];
    g_assert_cmpstr(t->name, ==, want[i].name);
    g_assert_cmpint(t->ndim, ==, want[i].ndim);
    for (int d = 0; d < t->ndim; d++) g_assert_cmpint(t->shape[d], ==, want[i].shape[d]);
  }
  /* Row-major (cout, cin, k, k) is the slab layout: the file holds it as is. */
  g_assert_cmpmem(f->tensors[0].data, 18 * 4, m->params + m->layers[0].w_off, 18 * 4);
  g_assert_cmpmem(f->tensors[5].data, 24 * 4, m->mask + m->layers[4].w_off, 24 * 4);
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "architecture"), ==,
                  "1x4x4|conv2d:2:3:1:1|relu|maxpool2d:2:2|flatten|dense:3");
  prunus_tensor_file_free(f);

  PrunusModel *back = prunus_checkpoint_load(path, 1, &arch, NULL, &error);
  g_assert_no_error(error);
  assert_same_model(m, back);
  prunus_model_free(back);

  char *names = NULL;
  GDir *d = g_dir_open(dir, 0, NULL);
  names = g_strdup(g_dir_read_name(d));
  g_assert_null(g_dir_read_name(d)); /* no temp files left */
  g_dir_close(d);
  g_assert_cmpstr(names, ==, "c.safetensors");
  g_free(names);

  prunus_model_free(m);
  prunus_arch_clear(&arch);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

/* A corrupt copy of a good checkpoint: its tensors with one edit. */
typedef struct {
  const char *dir;
  PrunusTensorFile *good;
} Fixture;

static char *write_variant(const Fixture *fx, const char *name, const PrunusTensor *tensors, int n,
                           GHashTable *meta) {
  char *path = g_build_filename(fx->dir, name, NULL);
  GError *error = NULL;
  g_assert_true(prunus_safetensors_write(path, tensors, n, meta, &error));
  g_assert_no_error(error);
  return path;
}

static PrunusTensor *tensor_by_name(PrunusTensor *ts, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(ts[i].name, name) == 0) return &ts[i];
  g_assert_not_reached();
  return NULL;
}

static void test_corrupt(void) {
  char *dir = testutil_mkdtemp();
  char *good_path = g_build_filename(dir, "good.safetensors", NULL);
  PrunusArch arch = dense_arch(5);
  PrunusModel *m = masked_model(&arch, 11);
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, good_path, NULL, &error));
  g_assert_no_error(error);
  Fixture fx = {.dir = dir, .good = prunus_safetensors_read(good_path, &error)};
  g_assert_no_error(error);
  int n = fx.good->n_tensors;
  g_assert_cmpint(n, ==, 6);
  /* Shallow copies of the tensor records; data edits are undone after each case. */
  PrunusTensor *ts = g_memdup2(fx.good->tensors, sizeof(PrunusTensor) * (size_t)n);
  GHashTable *meta = fx.good->metadata;
  char *path;

  /* Truncated inside the data section: the last tensor runs past the end. */
  {
    char *bytes;
    size_t len;
    g_assert_true(g_file_get_contents(good_path, &bytes, &len, NULL));
    path = testutil_write_file(dir, "cut.safetensors", bytes, len - 4);
    load_fails(path, &arch, PRUNUS_ERROR_FORMAT, "tensor \"3.mask\"", "outside the data section");
    g_free(path);
    path = testutil_write_file(dir, "cut2.safetensors", bytes, 20);
    load_fails(path, &arch, PRUNUS_ERROR_FORMAT, "runs past the end of the file", NULL);
    g_free(path);
    g_free(bytes);
  }

  /* Wrong shape: (in, out) instead of (out, in). */
  PrunusTensor *w1 = tensor_by_name(ts, n, "1.weight");
  w1->shape[0] = 4, w1->shape[1] = 5;
  path = write_variant(&fx, "shape.safetensors", ts, n, meta);
  load_fails(path, &arch, PRUNUS_ERROR_MISMATCH,
             "tensor \"1.weight\" has shape [4, 5] but the architecture needs [5, 4]", NULL);
  g_free(path);
  w1->shape[0] = 5, w1->shape[1] = 4;
  PrunusTensor *m3 = tensor_by_name(ts, n, "3.mask");
  PrunusTensor saved = *m3;
  m3->ndim = 1, m3->shape[0] = 15;
  path = write_variant(&fx, "shape2.safetensors", ts, n, meta);
  load_fails(path, &arch, PRUNUS_ERROR_MISMATCH, "tensor \"3.mask\" has shape [15]", "[3, 5]");
  g_free(path);
  *m3 = saved;

  /* Missing tensor: 3.bias dropped (swap it to the end, write n-1). */
  {
    PrunusTensor *copy = g_memdup2(ts, sizeof(PrunusTensor) * (size_t)n);
    PrunusTensor *b3 = tensor_by_name(copy, n, "3.bias");
    PrunusTensor tmp = *b3;
    *b3 = copy[n - 1];
    copy[n - 1] = tmp;
    path = write_variant(&fx, "missing.safetensors", copy, n - 1, meta);
    load_fails(path, &arch, PRUNUS_ERROR_FORMAT, "tensor \"3.bias\" is missing", "needs shape [3]");
    g_free(path);
    g_free(copy);
  }

  /* Extra tensor. */
  {
    PrunusTensor *copy = g_new0(PrunusTensor, (size_t)n + 1);
    memcpy(copy, ts, sizeof(PrunusTensor) * (size_t)n);
    float one = 1.0f;
    copy[n] = (PrunusTensor){.name = "2.weight", .ndim = 1, .shape = {1}, .data = &one};
    path = write_variant(&fx, "extra.safetensors", copy, n + 1, meta);
    load_fails(path, &arch, PRUNUS_ERROR_FORMAT, "unknown tensor \"2.weight\"", DENSE_ARCH);
    g_free(path);
    g_free(copy);
  }

  /* Mask not 0/1. */
  PrunusTensor *m1 = tensor_by_name(ts, n, "1.mask");
  float keep = m1->data[2];
  m1->data[2] = 0.5f;
  path = write_variant(&fx, "mask.safetensors", ts, n, meta);
  load_fails(path, &arch, PRUNUS_ERROR_FORMAT, "tensor \"1.mask\" element 2 is 0.5", "only 0 or 1");
  g_free(path);
  m1->data[2] = keep;

  /* A masked weight that is not zero (element 1 is pruned by masked_model). */
  g_assert_cmpfloat(m1->data[1], ==, 0.0f);
  w1->data[1] = 0.25f;
  path = write_variant(&fx, "masked.safetensors", ts, n, meta);
  load_fails(path, &arch, PRUNUS_ERROR_FORMAT, "tensor \"1.weight\" element 1 is 0.25",
             "\"1.mask\" prunes it");
  g_free(path);
  w1->data[1] = 0.0f;

  /* Non-finite parameters. */
  PrunusTensor *b1 = tensor_by_name(ts, n, "1.bias");
  keep = b1->data[4];
  b1->data[4] = NAN;
  path = write_variant(&fx, "nan.safetensors", ts, n, meta);
  load_fails(path, &arch, PRUNUS_ERROR_NUMERIC, "tensor \"1.bias\" element 4 is nan", NULL);
  g_free(path);
  b1->data[4] = keep;
  keep = w1->data[0];
  w1->data[0] = -INFINITY;
  path = write_variant(&fx, "inf.safetensors", ts, n, meta);
  load_fails(path, &arch, PRUNUS_ERROR_NUMERIC, "tensor \"1.weight\" element 0 is -inf", NULL);
  g_free(path);
  w1->data[0] = keep;

  /* Architecture mismatch names both strings. */
  PrunusArch other = dense_arch(6);
  load_fails(good_path, &other, PRUNUS_ERROR_MISMATCH, "architecture \"" DENSE_ARCH "\"",
             "expected \"1x2x2|flatten|dense:6|relu|dense:3\"");
  prunus_arch_clear(&other);

  /* Architecture metadata missing, unparseable, inconsistent; foreign format. */
  {
    GHashTable *bad = g_hash_table_new(g_str_hash, g_str_equal);
    g_hash_table_insert(bad, "format", "prunus");
    path = write_variant(&fx, "noarch.safetensors", ts, n, bad);
    load_fails(path, NULL, PRUNUS_ERROR_FORMAT, "metadata has no \"architecture\"", NULL);
    g_free(path);
    g_hash_table_insert(bad, "architecture", "banana");
    path = write_variant(&fx, "badarch.safetensors", ts, n, bad);
    load_fails(path, NULL, PRUNUS_ERROR_FORMAT, "metadata \"architecture\"", "banana");
    g_free(path);
    g_hash_table_insert(bad, "architecture", "1x2x2|dense:5|relu|dense:3"); /* no flatten */
    path = write_variant(&fx, "nobuild.safetensors", ts, n, bad);
    load_fails(path, NULL, PRUNUS_ERROR_FORMAT, "cannot build its architecture", "flatten");
    g_free(path);
    g_hash_table_insert(bad, "architecture", DENSE_ARCH);
    g_hash_table_insert(bad, "format", "pt");
    path = write_variant(&fx, "pt.safetensors", ts, n, bad);
    load_fails(path, NULL, PRUNUS_ERROR_FORMAT, "metadata \"format\" is \"pt\"", NULL);
    g_free(path);
    g_hash_table_destroy(bad);
  }

  /* After all the edits the good file still loads. */
  PrunusModel *back = prunus_checkpoint_load(good_path, 1, &arch, NULL, &error);
  g_assert_no_error(error);
  assert_same_model(m, back);
  prunus_model_free(back);

  /* A missing file is an I/O error naming it. */
  char *none = g_build_filename(dir, "none.safetensors", NULL);
  load_fails(none, NULL, PRUNUS_ERROR_IO, "cannot open", NULL);
  g_free(none);

  g_free(ts);
  prunus_tensor_file_free(fx.good);
  prunus_model_free(m);
  prunus_arch_clear(&arch);
  g_free(good_path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_save_rejects(void) {
  /* What load would reject is not written; an existing file stays as it was. */
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "s.safetensors", NULL);
  PrunusArch arch = dense_arch(5);
  PrunusModel *m = masked_model(&arch, 5);
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, path, NULL, &error));
  g_assert_no_error(error);
  char *before;
  size_t before_len;
  g_assert_true(g_file_get_contents(path, &before, &before_len, NULL));

  const PrunusLayer *l3 = &m->layers[3];
  m->params[l3->w_off + 4] = NAN;
  g_assert_false(prunus_checkpoint_save(m, path, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC);
  testutil_assert_error_contains(error, path, "tensor \"3.weight\" element 4 is nan", NULL);
  g_clear_error(&error);
  m->params[l3->w_off + 4] = 0.0f; /* element 4 is pruned (4 % 3 == 1) */
  m->params[l3->w_off + 1] = 2.0f; /* but so is element 1: pruned and non-zero */
  g_assert_false(prunus_checkpoint_save(m, path, NULL, &error));
  testutil_assert_error_contains(error, path, "tensor \"3.weight\" element 1 is 2", NULL);
  g_clear_error(&error);

  char *after;
  size_t after_len;
  g_assert_true(g_file_get_contents(path, &after, &after_len, NULL));
  g_assert_cmpmem(before, before_len, after, after_len);
  g_free(before);
  g_free(after);

  /* A path in a missing folder: an I/O error, nothing written. */
  char *missing = g_build_filename(dir, "no", "x.safetensors", NULL);
  m->params[l3->w_off + 1] = 0.0f;
  g_assert_false(prunus_checkpoint_save(m, missing, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, missing, NULL);
  g_clear_error(&error);
  g_free(missing);

  prunus_model_free(m);
  prunus_arch_clear(&arch);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

/* ------------------------------------------------------------------------- */
/* input normalisation in the metadata */

/* Metadata as prunus_checkpoint_load hands it back: keys and values g_free'd. */
static GHashTable *metadata_new(void) {
  return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}

/* Save m with norm in its metadata, load it back, read the normalisation. */
static PrunusNorm norm_round_trip(const PrunusModel *m, const char *path, PrunusNorm norm) {
  GHashTable *md = metadata_new();
  prunus_checkpoint_metadata_set_norm(md, &norm);
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, path, md, &error));
  g_assert_no_error(error);
  g_hash_table_unref(md);
  PrunusModel *back = prunus_checkpoint_load(path, 1, NULL, &md, &error);
  g_assert_no_error(error);
  PrunusNorm got = {0};
  gboolean found = FALSE;
  g_assert_true(prunus_checkpoint_metadata_norm(md, path, &got, &found, &error));
  g_assert_no_error(error);
  g_assert_true(found);
  g_hash_table_unref(md);
  prunus_model_free(back);
  return got;
}

static void test_norm_round_trip(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "model.safetensors", NULL);
  PrunusArch arch = dense_arch(5);
  PrunusModel *m = masked_model(&arch, 7);

  /* Fashion-MNIST's training split (as prunus_norm_fit gives it) and extremes. */
  const PrunusNorm norms[] = {
      {PRUNUS_NORM_STANDARD, 0.2860402f, 0.35302424f},
      {PRUNUS_NORM_STANDARD, -1.17549435e-38f, 1.40129846e-45f},
      {PRUNUS_NORM_STANDARD, 3.40282347e38f, 0.1f},
      {PRUNUS_NORM_UNIT, 0.0f, 1.0f},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(norms); i++) {
    PrunusNorm got = norm_round_trip(m, path, norms[i]);
    g_assert_cmpint(got.kind, ==, norms[i].kind);
    g_assert_cmpmem(&got.mean, sizeof(float), &norms[i].mean, sizeof(float));
    g_assert_cmpmem(&got.std, sizeof(float), &norms[i].std, sizeof(float));
  }

  /* The entries as written: the config's spelling, short decimal text. */
  GHashTable *md = metadata_new();
  prunus_checkpoint_metadata_set_norm(md, &(PrunusNorm){PRUNUS_NORM_STANDARD, 0.5f, 0.25f});
  g_assert_cmpstr(g_hash_table_lookup(md, "input_normalize"), ==, "standard");
  g_assert_cmpstr(g_hash_table_lookup(md, "input_mean"), ==, "0.5");
  g_assert_cmpstr(g_hash_table_lookup(md, "input_std"), ==, "0.25");
  g_assert_cmpuint(g_hash_table_size(md), ==, 3);
  g_hash_table_unref(md);

  /* Every float reads back to its bits: 20000 random finite bit patterns. */
  PrunusRng rng;
  prunus_rng_seed(&rng, 99);
  int checked = 0;
  while (checked < 20000) {
    uint32_t bits = (uint32_t)prunus_rng_next(&rng);
    float v;
    memcpy(&v, &bits, sizeof v);
    if (!isfinite(v) || v <= 0.0f) continue;
    md = metadata_new();
    prunus_checkpoint_metadata_set_norm(md, &(PrunusNorm){PRUNUS_NORM_STANDARD, -v, v});
    PrunusNorm got = {0};
    gboolean found = FALSE;
    GError *error = NULL;
    g_assert_true(prunus_checkpoint_metadata_norm(md, path, &got, &found, &error));
    g_assert_no_error(error);
    g_assert_true(found);
    float neg = -v;
    g_assert_cmpmem(&got.mean, sizeof(float), &neg, sizeof(float));
    g_assert_cmpmem(&got.std, sizeof(float), &v, sizeof(float));
    g_hash_table_unref(md);
    checked++;
  }

  prunus_model_free(m);
  prunus_arch_clear(&arch);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Checkpoints from before the normalisation was stored: found = FALSE, no error. */
static void test_norm_absent(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "old.safetensors", NULL);
  PrunusArch arch = dense_arch(5);
  PrunusModel *m = masked_model(&arch, 7);
  GError *error = NULL;
  g_assert_true(prunus_checkpoint_save(m, path, NULL, &error));
  GHashTable *md = NULL;
  PrunusModel *back = prunus_checkpoint_load(path, 1, NULL, &md, &error);
  g_assert_no_error(error);
  PrunusNorm got = {PRUNUS_NORM_UNIT, 7.0f, 7.0f};
  gboolean found = TRUE;
  g_assert_true(prunus_checkpoint_metadata_norm(md, path, &got, &found, &error));
  g_assert_no_error(error);
  g_assert_false(found);
  g_assert_cmpfloat(got.mean, ==, 7.0f); /* left as it was */
  found = TRUE;
  g_assert_true(prunus_checkpoint_metadata_norm(NULL, path, &got, &found, &error));
  g_assert_false(found);
  g_hash_table_unref(md);
  prunus_model_free(back);
  prunus_model_free(m);
  prunus_arch_clear(&arch);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Set key to value (NULL: remove it) in a table holding a valid normalisation, and
 * expect reading it to fail naming the path and the needles. */
static void norm_fails(const char *key, const char *value, const char *needle1,
                       const char *needle2) {
  GHashTable *md = metadata_new();
  prunus_checkpoint_metadata_set_norm(md, &(PrunusNorm){PRUNUS_NORM_STANDARD, 0.5f, 0.25f});
  if (value)
    g_hash_table_insert(md, g_strdup(key), g_strdup(value));
  else
    g_hash_table_remove(md, key);
  PrunusNorm got;
  gboolean found = TRUE;
  GError *error = NULL;
  g_assert_false(prunus_checkpoint_metadata_norm(md, "/x/model.safetensors", &got, &found, &error));
  g_assert_false(found);
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
  testutil_assert_error_contains(error, "/x/model.safetensors: ", needle1, needle2, NULL);
  g_error_free(error);
  g_hash_table_unref(md);
}

static void test_norm_malformed(void) {
  norm_fails("input_normalize", "zscore", "metadata \"input_normalize\" is \"zscore\"",
             "expected \"unit\" or \"standard\"");
  norm_fails("input_mean", "abc", "metadata \"input_mean\" is \"abc\"", "expected a finite number");
  norm_fails("input_mean", "0.5x", "metadata \"input_mean\" is \"0.5x\"", "finite number");
  norm_fails("input_std", "nan", "metadata \"input_std\" is \"nan\"", "finite number");
  norm_fails("input_std", "1e39", "metadata \"input_std\" is \"1e39\"", "finite number");
  norm_fails("input_std", "0", "metadata \"input_std\" is \"0\"",
             "a standard deviation must be > 0");
  norm_fails("input_std", "-0.25", "metadata \"input_std\" is \"-0.25\"", "must be > 0");
  norm_fails("input_std", NULL, "metadata has \"input_normalize\" but no \"input_std\" entry",
             NULL);
  norm_fails("input_normalize", NULL,
             "metadata has \"input_mean\" and \"input_std\" but no \"input_normalize\" entry",
             NULL);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/checkpoint/round-trip-dense", test_round_trip_dense);
  g_test_add_func("/checkpoint/file-contents-conv", test_file_contents);
  g_test_add_func("/checkpoint/corrupt", test_corrupt);
  g_test_add_func("/checkpoint/save-rejects", test_save_rejects);
  g_test_add_func("/checkpoint/norm/round-trip", test_norm_round_trip);
  g_test_add_func("/checkpoint/norm/absent", test_norm_absent);
  g_test_add_func("/checkpoint/norm/malformed", test_norm_malformed);
  return g_test_run();
}
