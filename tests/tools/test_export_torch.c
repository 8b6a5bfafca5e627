/* test_export_torch.c: prunus_export_torch without PyTorch: a plain sequence exports the
 * tensors the older safetensors export wrote (dead units removed); a graph with
 * batchnorm keeps its shapes, its running statistics and zeros where masked; the
 * generated .py names every layer; errors leave no file. (test_torch.py loads the
 * output into PyTorch itself.) */
#include "export.h"
#include "export_torch.h"
#include "rng.h"
#include "safetensors.h"
#include "../testutil.h"

#include <glib/gstdio.h>
#include <string.h>

/* A model of arch_text with random parameters, masks of the given sparsity and random
 * running statistics; unit 1 of the first dense or conv layer entirely masked. */
static PrunusModel *masked_model(const char *arch_text, double sparsity, uint64_t seed) {
  PrunusArch arch;
  GError *error = NULL;
  g_assert_true(prunus_arch_from_string(arch_text, &arch, &error));
  PrunusModel *m = prunus_model_new(&arch, 4, seed, &error);
  g_assert_no_error(error);
  prunus_arch_clear(&arch);
  PrunusRng rng;
  prunus_rng_seed(&rng, seed + 1);
  gboolean first = TRUE;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
      float *mean = m->params + l->buf_off, *var = mean + l->in.c;
      for (int c = 0; c < l->in.c; c++)
        mean[c] = (float)prunus_rng_normal(&rng), var[c] = 0.5f + (float)prunus_rng_uniform(&rng);
    }
    if (!l->ops->has_params) continue;
    for (size_t j = 0; j < l->w_len; j++) {
      gboolean dead = first && j / l->fan_in == 1;
      m->mask[l->w_off + j] = dead || prunus_rng_uniform(&rng) < sparsity ? 0.0f : 1.0f;
    }
    first = FALSE;
  }
  prunus_model_apply_mask(m);
  return m;
}

static void test_plain_matches_older_export(void) {
  PrunusModel *m = masked_model("1x6x7|flatten|dense:37|relu|dense:23|relu|dense:10", 0.5, 9);
  char *dir = testutil_mkdtemp();
  char *a = g_build_filename(dir, "old.safetensors", NULL);
  char *b = g_build_filename(dir, "new.safetensors", NULL);
  GError *error = NULL;
  g_assert_true(prunus_export_safetensors(m, a, TRUE, &error));
  g_assert_true(prunus_export_torch(m, NULL, b, "test", TRUE, &error));
  g_assert_no_error(error);
  PrunusTensorFile *fa = prunus_safetensors_read(a, &error),
                   *fb = prunus_safetensors_read(b, &error);
  g_assert_no_error(error);
  g_assert_cmpint(fa->n_tensors, ==, fb->n_tensors);
  for (int i = 0; i < fa->n_tensors; i++) {
    const PrunusTensor *ta = &fa->tensors[i], *tb = prunus_tensor_file_find(fb, ta->name);
    g_assert_nonnull(tb);
    g_assert_cmpint(ta->ndim, ==, tb->ndim);
    for (int d = 0; d < ta->ndim; d++) g_assert_cmpint(ta->shape[d], ==, tb->shape[d]);
    g_assert_cmpmem(ta->data, 4 * prunus_tensor_numel(ta), tb->data, 4 * prunus_tensor_numel(tb));
  }
  g_assert_cmpint(prunus_tensor_file_find(fb, "1.weight")->shape[0], ==, 36); /* unit 1: dead */
  g_assert_cmpstr(g_hash_table_lookup(fb->metadata, "architecture"), ==,
                  "1x6x7|flatten|dense:36|relu|dense:23|relu|dense:10");
  g_assert_cmpstr(g_hash_table_lookup(fb->metadata, "module"), ==, "new.py");
  char *py = g_build_filename(dir, "new.py", NULL), *text = NULL;
  g_assert_true(g_file_get_contents(py, &text, NULL, NULL));
  g_assert_nonnull(strstr(text, "        _put(self, \"1\", nn.Linear(42, 36))\n"));
  g_assert_nonnull(strstr(text, "        v1 = m(\"1\")(v0)  # 1: dense\n"));
  g_assert_nonnull(strstr(text, "        return v5\n"));
  g_assert_nonnull(strstr(text, "INPUT_NORMALIZE = None\n"));
  g_free(text), g_free(py);
  prunus_tensor_file_free(fa), prunus_tensor_file_free(fb);
  testutil_rmtree(dir);
  g_free(a), g_free(b), g_free(dir);
  prunus_model_free(m);
}

static void test_graph_batchnorm(void) {
  PrunusModel *m = masked_model(
      "1x8x8|conv2d:4:3:1:1:nobias@c|batchnorm:0.1:1e-05@c.bn|relu@r|"
      "conv2d:4:1:1:0@s<r|add@sum<s,r|globalavgpool@gap|dense:6@fc|"
      "batchnorm:0.2:0.001@fc.bn|relu|dense:3@out",
      0.3, 4);
  GHashTable *md = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_hash_table_insert(md, g_strdup("input_normalize"), g_strdup("standard"));
  g_hash_table_insert(md, g_strdup("input_mean"), g_strdup("0.25"));
  g_hash_table_insert(md, g_strdup("input_std"), g_strdup("0.5"));
  char *dir = testutil_mkdtemp(), *path = g_build_filename(dir, "g", NULL);
  GError *error = NULL;
  g_assert_true(prunus_export_torch(m, md, path, "graph", TRUE, &error));
  g_assert_no_error(error);
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(f->n_tensors, ==, 1 + 4 + 2 + 2 + 4 + 2); /* c, c.bn, s, fc, fc.bn, out */
  g_assert_null(prunus_tensor_file_find(f, "c.bias"));
  g_assert_null(prunus_tensor_file_find(f, "c.mask"));
  const PrunusLayer *c = &m->layers[0], *bn = &m->layers[1];
  const PrunusTensor *w = prunus_tensor_file_find(f, "c.weight");
  g_assert_cmpint(w->shape[0], ==, 4); /* a graph keeps its dead channel 1 */
  for (size_t j = 0; j < c->w_len; j++)
    g_assert_cmpfloat(w->data[j], ==, m->params[c->w_off + j] * m->mask[c->w_off + j]);
  for (size_t j = c->fan_in; j < 2 * (size_t)c->fan_in; j++)
    g_assert_cmpfloat(w->data[j], ==, 0.0f);
  const PrunusTensor *var = prunus_tensor_file_find(f, "c.bn.running_var");
  g_assert_cmpmem(var->data, 16, m->params + bn->buf_off + 4, 16);
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "input_normalize"), ==, "standard");
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "input_std"), ==, "0.5");
  char *py = g_build_filename(dir, "g.py", NULL), *text = NULL;
  g_assert_true(g_file_get_contents(py, &text, NULL, NULL));
  static const char *const lines[] = {
      "_put(self, \"c\", nn.Conv2d(1, 4, 3, stride=1, padding=1, bias=False))",
      "_put(self, \"c.bn\", nn.BatchNorm2d(4, eps=1e-05, momentum=0.1))",
      "_put(self, \"fc.bn\", nn.BatchNorm1d(6, eps=0.001, momentum=0.2))",
      "v3 = m(\"s\")(v2)  # s: conv2d",
      "v4 = v3 + v2  # sum: add",
      "v5 = v4.mean((2, 3), keepdim=True)  # gap: globalavgpool",
      "v6 = m(\"fc\")(torch.flatten(v5, 1))  # fc: dense",
      "INPUT_NORMALIZE = \"standard\"\nINPUT_MEAN = 0.25\nINPUT_STD = 0.5\n",
  };
  for (size_t k = 0; k < G_N_ELEMENTS(lines); k++) {
    if (!strstr(text, lines[k])) g_error("%s lacks: %s\n%s", py, lines[k], text);
  }
  g_free(text), g_free(py);
  prunus_tensor_file_free(f);
  testutil_rmtree(dir);
  g_free(path), g_free(dir);
  g_hash_table_unref(md);
  prunus_model_free(m);
}

/* -o x.py and an unwritable .py: an error, and neither file is left. */
static void test_errors_write_nothing(void) {
  PrunusModel *m = masked_model("1x4x4|flatten|dense:5|relu|dense:2", 0.0, 1);
  char *dir = testutil_mkdtemp(), *py = g_build_filename(dir, "x.py", NULL);
  GError *error = NULL;
  g_assert_false(prunus_export_torch(m, NULL, py, "t", TRUE, &error));
  testutil_assert_error_contains(error, "x.py: the safetensors file cannot end in .py", NULL);
  g_clear_error(&error);
  g_assert_false(g_file_test(py, G_FILE_TEST_EXISTS));
  /* a folder where the .py should go */
  char *st = g_build_filename(dir, "y.safetensors", NULL),
       *blocker = g_build_filename(dir, "y.py", NULL);
  g_assert_cmpint(g_mkdir(blocker, 0700), ==, 0);
  g_assert_false(prunus_export_torch(m, NULL, st, "t", TRUE, &error));
  testutil_assert_error_contains(error, "cannot write ", "y.py", NULL);
  g_clear_error(&error);
  g_assert_false(g_file_test(st, G_FILE_TEST_EXISTS));
  char *p = prunus_export_torch_py_path("out/model.v2.safetensors");
  g_assert_cmpstr(p, ==, "out/model.v2.py");
  g_free(p);
  p = prunus_export_torch_py_path("model");
  g_assert_cmpstr(p, ==, "model.py");
  g_free(p);
  testutil_rmtree(dir);
  g_free(st), g_free(blocker), g_free(py), g_free(dir);
  prunus_model_free(m);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/export-torch/plain-matches-older-export", test_plain_matches_older_export);
  g_test_add_func("/export-torch/graph-batchnorm", test_graph_batchnorm);
  g_test_add_func("/export-torch/errors-write-nothing", test_errors_write_nothing);
  return g_test_run();
}
