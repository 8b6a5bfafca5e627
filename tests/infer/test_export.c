/* test_export.c: `prunus export`: the generated C file compiled with `cc -std=c99
 * -O2 -Wall -Werror` alone must give prunus's logits (random dense, conv and graph
 * models: add, concat, pooling, batchnorm folded and kept) and, for a LeNet-300-100
 * trained briefly and magnitude-pruned to 95%, prunus's predictions on all 10,000
 * Fashion-MNIST test images in <= 12% of the dense weights' bytes, the same C from the
 * normalisation in its metadata as from the config; so must a ResNet-8 trained one
 * epoch; the safetensors export holds shrunk, masked weights and no masks. */
#include "checkpoint.h"
#include "data.h"
#include "export.h"
#include "job.h"
#include "rng.h"
#include "safetensors.h"
#include "train.h"
#include "testutil.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef PRUNUS_SOURCE_ROOT
#define PRUNUS_SOURCE_ROOT "."
#endif

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* The driver the test compiles with the export: `drv float IN OUT N` reads N float
 * inputs and writes N x K logits; `drv pixels IN OUT N` reads N uint8 images,
 * normalises them and writes N predictions (one byte each). */
static const char driver_src[] =
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"prunus_model.h\"\n"
    "int main(int argc, char **argv) {\n"
    "  if (argc != 5) return 2;\n"
    "  int n = atoi(argv[4]), pixels = !strcmp(argv[1], \"pixels\");\n"
    "  FILE *in = fopen(argv[2], \"rb\"), *out = fopen(argv[3], \"wb\");\n"
    "  if (!in || !out) return 3;\n"
    "  static float x[PRUNUS_MODEL_INPUT_SIZE], logits[PRUNUS_MODEL_N_CLASSES];\n"
    "  static uint8_t u[PRUNUS_MODEL_INPUT_SIZE];\n"
    "  for (int i = 0; i < n; i++) {\n"
    "    if (pixels) {\n"
    "      if (fread(u, 1, sizeof u, in) != sizeof u) return 4;\n"
    "      prunus_model_normalize(u, x);\n"
    "      unsigned char p = (unsigned char)prunus_model_predict(x);\n"
    "      fwrite(&p, 1, 1, out);\n"
    "    } else {\n"
    "      if (fread(x, sizeof(float), PRUNUS_MODEL_INPUT_SIZE, in) != PRUNUS_MODEL_INPUT_SIZE) return 4;\n"
    "      prunus_model_logits(x, logits);\n"
    "      fwrite(logits, sizeof(float), PRUNUS_MODEL_N_CLASSES, out);\n"
    "    }\n"
    "  }\n"
    "  return fclose(out) == 0 ? 0 : 5;\n"
    "}\n";

/* Compile dir/prunus_model.c with the driver using `cc -std=c99 -O2 -Wall -Werror`
 * only. */
static void compile_export(const char *dir) {
  char *drv = testutil_write_file(dir, "driver.c", driver_src, strlen(driver_src));
  char *cmd = g_strdup_printf(
      "cd '%s' && cc -std=c99 -O2 -Wall -Werror -o drv driver.c prunus_model.c", dir);
  char *out = NULL, *err = NULL;
  int status = 0;
  GError *error = NULL;
  char *argv[] = {"sh", "-c", cmd, NULL};
  g_assert_true(
      g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status, &error));
  g_assert_no_error(error);
  if (!g_spawn_check_wait_status(status, NULL)) g_printerr("cc failed:\n%s%s", out, err);
  g_assert_true(g_spawn_check_wait_status(status, NULL));
  g_free(out), g_free(err), g_free(cmd), g_free(drv);
}

static void run_driver(const char *dir, const char *mode, int n) {
  char *cmd = g_strdup_printf("cd '%s' && ./drv %s in.bin out.bin %d", dir, mode, n);
  char *argv[] = {"sh", "-c", cmd, NULL};
  int status = 0;
  GError *error = NULL;
  g_assert_true(
      g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, &status, &error));
  g_assert_no_error(error);
  g_assert_true(g_spawn_check_wait_status(status, NULL));
  g_free(cmd);
}

static PrunusModel *random_masked_model(const char *arch_text, double sparsity, uint64_t seed) {
  PrunusArch arch;
  GError *error = NULL;
  g_assert_true(prunus_arch_from_string(arch_text, &arch, &error));
  PrunusModel *m = prunus_model_new(&arch, 64, seed, &error);
  g_assert_no_error(error);
  prunus_arch_clear(&arch);
  PrunusRng rng;
  prunus_rng_seed(&rng, seed + 1);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
      int C = l->in.c;
      float *gamma = m->params + l->b_off, *beta = gamma + C;
      float *mean = m->params + l->buf_off, *var = mean + C;
      for (int c = 0; c < C; c++) {
        gamma[c] = (float)(1.0 + 0.3 * prunus_rng_normal(&rng));
        beta[c] = (float)(0.3 * prunus_rng_normal(&rng));
        mean[c] = (float)(0.5 * prunus_rng_normal(&rng));
        var[c] = (float)(0.5 + prunus_rng_uniform(&rng));
      }
    }
    if (!l->ops->has_params) continue;
    for (size_t j = 0; j < l->b_len; j++)
      m->params[l->b_off + j] = (float)(0.2 * prunus_rng_normal(&rng));
    for (size_t j = 0; j < l->w_len; j++)
      m->mask[l->w_off + j] = prunus_rng_uniform(&rng) >= sparsity;
    /* unit 1 of every layer but the last is dead */
    if (i + 2 < m->n_layers)
      for (int k = 0; k < l->fan_in; k++) m->mask[l->w_off + (size_t)l->fan_in + k] = 0.0f;
  }
  prunus_model_apply_mask(m);
  return m;
}

static void check_roundtrip(const char *arch, double sparsity) {
  PrunusModel *m = random_masked_model(arch, sparsity, 3);
  char *dir = testutil_mkdtemp();
  GError *error = NULL;
  size_t flash = 0;
  g_assert_true(prunus_export_c(m, NULL, dir, "test", TRUE, &flash, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(flash, >, 0);
  compile_export(dir);
  int N = 50;
  size_t in = prunus_model_input_size(m);
  int K = prunus_model_n_classes(m);
  float *x = g_new(float, (size_t)N *in);
  PrunusRng rng;
  prunus_rng_seed(&rng, 5);
  for (size_t i = 0; i < (size_t)N * in; i++) x[i] = (float)prunus_rng_normal(&rng);
  g_free(testutil_write_file(dir, "in.bin", x, sizeof(float) * N * in));
  run_driver(dir, "float", N);
  char *out_path = g_build_filename(dir, "out.bin", NULL);
  char *got = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(out_path, &got, &len, &error));
  g_assert_cmpuint(len, ==, sizeof(float) * N * K);
  prunus_model_forward(m, x, N);
  const float *want = m->acts[m->n_layers];
  g_assert_cmpfloat(testutil_max_rel_diff((const float *)got, want, (size_t)N * K, arch), <, 1e-4);
  for (int b = 0; b < N; b++) {
    int am = 0, bm = 0;
    for (int k = 1; k < K; k++) {
      if (((const float *)got)[b * K + k] > ((const float *)got)[b * K + am]) am = k;
      if (want[b * K + k] > want[b * K + bm]) bm = k;
    }
    g_assert_cmpint(am, ==, bm);
  }
  g_free(got), g_free(out_path), g_free(x);
  testutil_rmtree(dir);
  g_free(dir);
  prunus_model_free(m);
}

static void test_roundtrip_mlp(void) {
  check_roundtrip("1x6x7|flatten|dense:37|relu|dense:23|relu|dense:10", 0.9);
  check_roundtrip("1x6x7|flatten|dense:37|relu|dense:23|relu|dense:10", 0.0);
}

static void test_roundtrip_conv(void) {
  check_roundtrip("2x11x11|conv2d:6:3:1:1|relu|maxpool2d:2:2|conv2d:5:3:2:0|relu|flatten|dense:7",
                  0.7);
}

/* batchnorm (after convs without bias and after a dense layer) folded into the layer
 * before it: the C computes what the model computes in evaluation mode. */
static void test_roundtrip_batchnorm(void) {
  check_roundtrip(
      "2x11x11|conv2d:6:3:1:1:nobias|batchnorm:0.1:1e-05|relu|maxpool2d:2:2|"
      "conv2d:5:3:2:0|batchnorm:0.1:0.001|relu|flatten|dense:9|batchnorm:0.1:1e-05|"
      "relu|dense:4",
      0.5);
}

/* Graphs: a residual block (add) whose batchnorms fold, branches stacked by concat, a
 * batchnorm kept (its conv is read by an add too), average pooling of both kinds, a
 * relu fused into the conv before it; sparse enough for CSR convs, and dense. */
static void test_roundtrip_graph(void) {
  static const char arch[] =
      "2x12x12|conv2d:6:3:1:1:nobias@s|batchnorm:0.1:1e-05@s_bn|relu@sr|"
      "conv2d:6:3:1:1:nobias@c1|batchnorm:0.1:1e-05|relu|conv2d:6:3:1:1:nobias@c2|"
      "batchnorm:0.1:0.001@c2_bn|add@res<c2_bn,sr|relu@rr|conv2d:4:1:1:0@a|relu@ar|"
      "concat@cat<ar,rr,sr|avgpool2d:2:2|conv2d:7:3:2:1:nobias@mix|batchnorm:0.1:1e-05@mix_bn|"
      "add@sum<mix_bn,mix|relu|globalavgpool|dense:5";
  check_roundtrip(arch, 0.8);
  check_roundtrip(arch, 0.0);
}

/* safetensors: dead units gone, masks applied, no mask tensors, PyTorch names. */
static void test_safetensors(void) {
  PrunusModel *m =
      random_masked_model("1x6x7|flatten|dense:37|relu|dense:23|relu|dense:10", 0.5, 9);
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "pruned.safetensors", NULL);
  GError *error = NULL;
  g_assert_true(prunus_export_safetensors(m, path, TRUE, &error));
  g_assert_no_error(error);
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(f->n_tensors, ==, 6);
  const PrunusTensor *w1 = prunus_tensor_file_find(f, "1.weight");
  const PrunusTensor *w3 = prunus_tensor_file_find(f, "3.weight");
  const PrunusTensor *b5 = prunus_tensor_file_find(f, "5.bias");
  g_assert_nonnull(w1);
  g_assert_nonnull(w3);
  g_assert_nonnull(b5);
  g_assert_null(prunus_tensor_file_find(f, "1.mask"));
  g_assert_cmpint(w1->shape[0], ==, 36); /* unit 1 was dead */
  g_assert_cmpint(w1->shape[1], ==, 42);
  g_assert_cmpint(w3->shape[0], ==, 22);
  g_assert_cmpint(w3->shape[1], ==, 36);
  g_assert_cmpint(b5->shape[0], ==, 10);
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "architecture"), ==,
                  "1x6x7|flatten|dense:36|relu|dense:22|relu|dense:10");
  /* the unit kept first is unit 0 of the original; its weights are the masked ones */
  for (int k = 0; k < 42; k++)
    g_assert_cmpfloat(w1->data[k], ==, m->params[m->layers[1].w_off + k]);
  prunus_tensor_file_free(f);
  testutil_rmtree(dir);
  g_free(path), g_free(dir);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* Fashion-MNIST: LeNet-300-100, 1 epoch, 95% magnitude-pruned per layer */

static int compare_abs(const void *a, const void *b) {
  float x = fabsf(*(const float *)a), y = fabsf(*(const float *)b);
  return (x > y) - (x < y);
}

static void magnitude_prune(PrunusModel *m, double amount) {
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    float *w = m->params + l->w_off;
    float *sorted = g_memdup2(w, sizeof(float) * l->w_len);
    qsort(sorted, l->w_len, sizeof(float), compare_abs);
    size_t cut = (size_t)(amount * (double)l->w_len);
    float thr = fabsf(sorted[cut]); /* keep |w| >= thr: about 1 - amount of them */
    for (size_t j = 0; j < l->w_len; j++) m->mask[l->w_off + j] = fabsf(w[j]) >= thr;
    g_free(sorted);
  }
  prunus_model_apply_mask(m);
}

/* The test images the Fashion-MNIST subtests evaluate: memcheck runs them about 250
 * times slower, and the job's own test evaluation and check_test_set's each go over all
 * of them. */
#define TEST_LIMIT \
  (testutil_under_memcheck() ? "dataset.test_limit=1000" : "dataset.test_limit=10000")

/* m's predictions (evaluation mode) on data's test images (all 10,000; the first 1,000
 * under memcheck: TEST_LIMIT) = those of the C exported into cdir, compiled there and
 * fed the raw pixels: none may differ. Returns m's accuracy on them. */
static double check_test_set(PrunusModel *m, const PrunusData *data, const char *cdir) {
  const PrunusDataset *t = data->test;
  int n = t->n;
  g_assert_cmpint(n, ==, testutil_under_memcheck() ? 1000 : 10000);
  prunus_model_set_training(m, FALSE);
  size_t in = (size_t)t->c * t->h * t->w;
  uint8_t *want = g_new(uint8_t, n);
  float *x = g_new(float, 256 * in);
  uint8_t y[256];
  int idx[256], correct = 0;
  for (int s = 0; s < n; s += 256) {
    int B = MIN(256, n - s);
    for (int b = 0; b < B; b++) idx[b] = s + b;
    prunus_dataset_fill_batch(t, &data->norm, idx, B, x, y);
    prunus_model_forward(m, x, B);
    const float *lg = m->acts[m->n_layers];
    for (int b = 0; b < B; b++) {
      int best = 0;
      for (int k = 1; k < 10; k++)
        if (lg[b * 10 + k] > lg[b * 10 + best]) best = k;
      want[s + b] = (uint8_t)best;
      correct += best == y[b];
    }
  }
  double accuracy = correct / (double)n;
  g_test_message("prunus accuracy %.4f on %d test images", accuracy, n);
  g_free(testutil_write_file(cdir, "in.bin", t->images, in * n));
  compile_export(cdir);
  run_driver(cdir, "pixels", n);
  GError *error = NULL;
  char *out_path = g_build_filename(cdir, "out.bin", NULL), *got = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(out_path, &got, &len, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(len, ==, (gsize)n);
  int differ = 0;
  for (int i = 0; i < n; i++) differ += (uint8_t)got[i] != want[i];
  g_test_message("exported C vs prunus: %d of %d predictions differ", differ, n);
  g_assert_cmpint(differ, ==, 0);
  g_free(got), g_free(out_path), g_free(x), g_free(want);
  return accuracy;
}

/* prunus_job_train, its result line kept off TAP's stdout. */
static void train_quietly(const PrunusJobOptions *o) {
  GError *error = NULL;
  fflush(stdout);
  int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
  dup2(devnull, 1);
  gboolean trained = prunus_job_train(o, &error);
  fflush(stdout);
  dup2(saved, 1);
  close(saved), close(devnull);
  g_assert_no_error(error);
  g_assert_true(trained);
}

static void test_fashion_lenet300(void) {
  if (!g_file_test(FASHION_DIR "/t10k-images-idx3-ubyte.gz", G_FILE_TEST_EXISTS)) {
    g_test_skip("no Fashion-MNIST in " FASHION_DIR);
    return;
  }
  char *dir = testutil_mkdtemp();
  char *run = g_build_filename(dir, "run", NULL);
  char *cdir = g_build_filename(dir, "c", NULL);
  const char *const overrides[] = {"train.epochs=1", "dataset.train_limit=10000", TEST_LIMIT, NULL};
  PrunusJobOptions o = {.config_path = PRUNUS_SOURCE_ROOT "/configs/lenet300.cfg",
                        .overrides = overrides,
                        .run_dir = run,
                        .threads = 1,
                        .quiet = TRUE};
  GError *error = NULL;
  train_quietly(&o);
  char *ckpt = g_build_filename(run, "model.safetensors", NULL);
  PrunusModel *m = prunus_checkpoint_load(ckpt, 256, NULL, NULL, &error);
  g_assert_no_error(error);
  magnitude_prune(m, 0.95);
  /* three masked epochs of retraining, so the pruned net is a real classifier */
  PrunusJob job;
  g_assert_true(prunus_job_open(&job, &o, &error));
  PrunusData data = {0};
  g_assert_true(prunus_data_load(&job.rc, &data, &error));
  g_assert_no_error(error);
  PrunusTrainConfig tc = job.rc.train;
  tc.epochs = 3;
  g_assert_true(prunus_train(m, &tc, data.train, NULL, &data.norm, 1, NULL, &error));
  g_assert_no_error(error);
  char *pruned = g_build_filename(dir, "pruned.safetensors", NULL);
  g_assert_true(prunus_checkpoint_save(m, pruned, NULL, &error));
  g_assert_true(prunus_job_export(pruned, &o, PRUNUS_EXPORT_C, cdir, &error));
  g_assert_no_error(error);

  /* flash: <= 12% of the dense weights' bytes */
  char *hpath = g_build_filename(cdir, "prunus_model.h", NULL), *htext = NULL;
  g_assert_true(g_file_get_contents(hpath, &htext, NULL, &error));
  const char *def = strstr(htext, "#define PRUNUS_MODEL_FLASH_BYTES ");
  g_assert_nonnull(def);
  double flash = g_ascii_strtod(def + strlen("#define PRUNUS_MODEL_FLASH_BYTES "), NULL);
  double dense = 4.0 * (double)m->n_params;
  g_test_message("flash %.0f bytes, dense %.0f bytes (%.2f%%)", flash, dense,
                 100.0 * flash / dense);
  g_assert_cmpfloat(flash, <=, 0.12 * dense);

  /* prunus's predictions on the whole test set */
  double accuracy = check_test_set(m, &data, cdir);
  if (!testutil_under_memcheck()) g_assert_cmpfloat(accuracy, >, 0.6);

  /* pruned.safetensors has no normalisation in its metadata (as checkpoints before it
   * was stored): without the config there is nothing to fit it on. */
  char *cdir2 = g_build_filename(dir, "c2", NULL);
  PrunusJobOptions no_config = {.quiet = TRUE};
  g_assert_false(prunus_job_export(pruned, &no_config, PRUNUS_EXPORT_C, cdir2, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID);
  testutil_assert_error_contains(error, pruned, "carries no input normalisation",
                                 "exporting C needs the config it was trained with", NULL);
  g_clear_error(&error);
  g_assert_false(g_file_test(cdir2, G_FILE_TEST_EXISTS));
  /* The same net saved with it, as train and run save theirs, exports without the
   * config to the same C: the metadata holds what the training split gives. */
  char *carrying = g_build_filename(dir, "carrying.safetensors", NULL);
  GHashTable *md = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  prunus_checkpoint_metadata_set_norm(md, &data.norm);
  g_assert_true(prunus_checkpoint_save(m, carrying, md, &error));
  g_hash_table_unref(md);
  g_assert_true(prunus_job_export(carrying, &no_config, PRUNUS_EXPORT_C, cdir2, &error));
  g_assert_no_error(error);
  const char *const files[] = {"prunus_model.c", "prunus_model.h"};
  for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
    char *p1 = g_build_filename(cdir, files[i], NULL),
         *p2 = g_build_filename(cdir2, files[i], NULL);
    char *t1 = NULL, *t2 = NULL;
    g_assert_true(g_file_get_contents(p1, &t1, NULL, &error));
    g_assert_true(g_file_get_contents(p2, &t2, NULL, &error));
    char **parts = g_strsplit(t2, carrying, -1); /* the comments name the checkpoint */
    char *t2_as_pruned = g_strjoinv(pruned, parts);
    g_assert_cmpuint(g_strv_length(parts), ==, 2);
    g_assert_cmpstr(t1, ==, t2_as_pruned);
    g_strfreev(parts);
    g_free(t2_as_pruned), g_free(t1), g_free(t2), g_free(p1), g_free(p2);
  }

  /* a full disk (a file size limit here) leaves neither file, no temporary one, and a
   * message naming the file that could not be written */
  char *cdir3 = g_build_filename(dir, "c-full", NULL);
  g_assert_cmpint(g_mkdir(cdir3, 0755), ==, 0);
  struct rlimit was;
  g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &was), ==, 0);
  void (*old_xfsz)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG, not a signal */
  struct rlimit small = {4096, was.rlim_max};
  g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &small), ==, 0);
  gboolean exported = prunus_job_export(carrying, &no_config, PRUNUS_EXPORT_C, cdir3, &error);
  g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &was), ==, 0);
  signal(SIGXFSZ, old_xfsz);
  g_assert_false(exported);
  char *c3 = g_build_filename(cdir3, "prunus_model.c", NULL);
  char *want3 = g_strdup_printf("cannot write %s: ", c3);
  testutil_assert_error_contains(error, want3, NULL);
  g_clear_error(&error);
  GDir *d3 = g_dir_open(cdir3, 0, NULL);
  g_assert_null(g_dir_read_name(d3)); /* the folder is as it was: empty */
  g_dir_close(d3);
  g_free(want3), g_free(c3), g_free(cdir3);

  g_free(carrying), g_free(cdir2);
  prunus_data_clear(&data);
  prunus_job_close(&job);
  g_free(htext), g_free(hpath);
  prunus_model_free(m);
  testutil_rmtree(dir);
  g_free(pruned), g_free(ckpt), g_free(cdir), g_free(run), g_free(dir);
}

/* ResNet-8 (configs/resnet8.cfg: every batchnorm folded into its conv, residual adds,
 * global average pooling) trained one epoch on part of the training set (6,000 images;
 * under memcheck 600 in batches of 32, enough steps for predictions that are not all one
 * class): the C gives prunus's predictions on all 10,000 test images (1,000 under
 * memcheck), in 3 activation buffers. */
static void test_fashion_resnet8(void) {
  if (!g_file_test(FASHION_DIR "/t10k-images-idx3-ubyte.gz", G_FILE_TEST_EXISTS)) {
    g_test_skip("no Fashion-MNIST in " FASHION_DIR);
    return;
  }
  char *dir = testutil_mkdtemp();
  char *run = g_build_filename(dir, "run", NULL);
  char *cdir = g_build_filename(dir, "c", NULL);
  gboolean small = testutil_under_memcheck();
  const char *const overrides[] = {"train.epochs=1",
                                   small ? "dataset.train_limit=600" : "dataset.train_limit=6000",
                                   small ? "dataset.validation=100" : "dataset.validation=1000",
                                   small ? "train.batch=32" : "train.batch=128",
                                   TEST_LIMIT,
                                   NULL};
  PrunusJobOptions o = {.config_path = PRUNUS_SOURCE_ROOT "/configs/resnet8.cfg",
                        .overrides = overrides,
                        .run_dir = run,
                        .threads = 1,
                        .quiet = TRUE};
  train_quietly(&o);
  GError *error = NULL;
  char *ckpt = g_build_filename(run, "model.safetensors", NULL);
  g_assert_true(prunus_job_export(ckpt, &o, PRUNUS_EXPORT_C, cdir, &error));
  g_assert_no_error(error);
  char *cpath = g_build_filename(cdir, "prunus_model.c", NULL), *ctext = NULL;
  g_assert_true(g_file_get_contents(cpath, &ctext, NULL, &error));
  g_assert_null(strstr(ctext, "batchnorm")); /* all 9 folded */
  g_assert_nonnull(strstr(ctext, "static float buf2[12544];\n"));
  g_assert_null(strstr(ctext, "static float buf3["));
  PrunusModel *m = prunus_checkpoint_load(ckpt, 256, NULL, NULL, &error);
  g_assert_no_error(error);
  PrunusJob job;
  g_assert_true(prunus_job_open(&job, &o, &error));
  PrunusData data = {0};
  g_assert_true(prunus_data_load(&job.rc, &data, &error));
  g_assert_no_error(error);
  double accuracy = check_test_set(m, &data, cdir);
  if (!small) g_assert_cmpfloat(accuracy, >, 0.5);
  prunus_data_clear(&data);
  prunus_job_close(&job);
  prunus_model_free(m);
  testutil_rmtree(dir);
  g_free(ctext), g_free(cpath), g_free(ckpt), g_free(cdir), g_free(run), g_free(dir);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/export/c-roundtrip-mlp", test_roundtrip_mlp);
  g_test_add_func("/export/c-roundtrip-conv", test_roundtrip_conv);
  g_test_add_func("/export/c-roundtrip-batchnorm", test_roundtrip_batchnorm);
  g_test_add_func("/export/c-roundtrip-graph", test_roundtrip_graph);
  g_test_add_func("/export/safetensors", test_safetensors);
  g_test_add_func("/export/fashion-lenet300-95", test_fashion_lenet300);
  g_test_add_func("/export/fashion-resnet8", test_fashion_resnet8);
  return g_test_run();
}
