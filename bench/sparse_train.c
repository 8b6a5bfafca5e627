/* sparse_train.c: training on sparse kernels (train.sparse_from) against dense kernels.
 * Two measurements, one thread:
 *  --layers: one dense layer's training step (forward, weight and bias gradients, the
 *   input gradient where the layer has one, the optimizer step) at LeNet-300-100's
 *   three shapes and batch 128, dense sgemm against the sparse kernels, over a sweep
 *   of sparsities: where the sparse step starts to win (the crossover that
 *   PRUNUS_SPARSE_FROM_DEFAULT is set from).
 *  --epochs (default): a fine-tuning epoch of LeNet-300-100 on Fashion-MNIST (60000
 *   images, batch 128, SGD) with every layer pruned to a sparsity of the sweep, as
 *   `prunus run` retrains it: sparse_from at its default, and dense kernels throughout
 *   for comparison; samples/s and the speed-up over the unpruned epoch.
 * Each figure is the median of --reps runs taken in turn. Prints a table, then JSON.
 * Usage: sparse_train [--layers] [--reps 3] [--data DIR] [--profile SPARSITY] */
#include "gemm.h"
#include "json.h"
#include "latency.h"
#include "rng.h"
#include "spdense.h"
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const double sweep[] = {0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98};

/* Mask a random `sparsity` fraction of each dense layer's weights (seeded). */
static void random_masks(PrunusModel *m, double sparsity, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    for (size_t j = 0; j < l->w_len; j++)
      m->mask[l->w_off + j] = prunus_rng_uniform(&r) < sparsity ? 0.0f : 1.0f;
  }
  prunus_model_apply_mask(m);
}

/* This thread's CPU time, microseconds: on a machine other processes share, the time a
 * step took while it ran, not while it waited for a CPU. */
static double cpu_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), compare_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------------------ */
/* one layer's step */

typedef struct {
  int in, out;
  gboolean dx; /* the layer computes an input gradient (not the first layer) */
} Shape;

/* CPU microseconds of one training step of a dense (in -> out) layer at batch B, masked
 * to `sparsity`, on sparse kernels or dense ones: the lowest of 3 windows of about
 * 20 ms. */
static double layer_step_us(Shape s, double sparsity, gboolean sparse, int B) {
  PrunusLayerSpec specs[] = {{.type = PRUNUS_LAYER_FLATTEN},
                             {.type = PRUNUS_LAYER_DENSE, .units = s.out}};
  PrunusArch arch = {.input = {1, 1, s.in}, .n_classes = s.out, .n_layers = 2, .layers = specs};
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, B, 1, &error);
  if (!m) g_error("%s", error->message);
  random_masks(m, sparsity, 2);
  PrunusLayer *l = &m->layers[1];
  PrunusRng r;
  prunus_rng_seed(&r, 3);
  float *x = g_new(float, (size_t)B *s.in), *dy = g_new(float, (size_t)B *s.out),
        *y = g_new(float, (size_t)B *s.out), *dx = g_new(float, (size_t)B *s.in);
  for (size_t i = 0; i < (size_t)B * s.in; i++) x[i] = (float)fabs(prunus_rng_normal(&r));
  for (size_t i = 0; i < (size_t)B * s.out; i++) dy[i] = (float)prunus_rng_normal(&r) * 1e-3f;
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 1e-3;
  if (sparse) {
    l->sparse = prunus_spdense_new(l, m->params, m->mask + l->w_off, s.dx, B);
    prunus_spdense_keep_values(l->sparse, l, m->opt_m, m->opt_v); /* as prunus_train runs it */
  }
  l->grads_zeroed = TRUE;
  double best = INFINITY;
  int runs = 0;
  for (int w = 0; w < 4; w++) { /* window 0: warm-up and sizing */
    double t0 = cpu_now_us();
    int n = w == 0 ? 20 : runs;
    for (int k = 0; k < n; k++) {
      l->ops->forward(l, m->params, x, y, NULL, B);
      l->ops->backward(l, m->params, m->grads, x, y, dy, s.dx ? dx : NULL, NULL, B);
      if (sparse) {
        const PrunusSpDense *sp = l->sparse;
        prunus_optim_step_arrays(&tc, tc.lr, 1, sp->w->val, sp->m1, sp->m2, sp->grad,
                                 (size_t)sp->w->stored);
        prunus_optim_step_span(m, &tc, tc.lr, 1, l->b_off, l->b_len, PRUNUS_OPTIM_CLEAR_GRADS);
      } else {
        prunus_optim_step_span(m, &tc, tc.lr, 1, l->w_off, l->w_len + l->b_len,
                               PRUNUS_OPTIM_MASKED | PRUNUS_OPTIM_CLEAR_GRADS);
      }
    }
    double per = (cpu_now_us() - t0) / n;
    if (w == 0)
      runs = (int)CLAMP(20000.0 / per, 5, 2000); /* windows of about 20 ms */
    else
      best = MIN(best, per);
  }
  g_clear_pointer(&l->sparse, prunus_spdense_free);
  g_free(x), g_free(dy), g_free(y), g_free(dx);
  prunus_model_free(m);
  return best;
}

static void run_layers(int reps, PrunusJson *out) {
  static const Shape shapes[] = {{784, 300, FALSE}, {300, 100, TRUE}, {100, 10, TRUE}};
  const int B = 128;
  printf(
      "one dense layer's training step at batch %d, 1 thread (median of %d): dense sgemm vs "
      "sparse kernels, microseconds\n",
      B, reps);
  printf("%-16s", "sparsity");
  for (size_t k = 0; k < G_N_ELEMENTS(sweep); k++) printf(" %7.2f", sweep[k]);
  printf("   crossover\n");
  PrunusJson *layers = prunus_json_new_array();
  for (size_t s = 0; s < G_N_ELEMENTS(shapes); s++) {
    double dense[G_N_ELEMENTS(sweep)], sparse[G_N_ELEMENTS(sweep)];
    for (size_t k = 0; k < G_N_ELEMENTS(sweep); k++) {
      double d[16], q[16];
      for (int rep = 0; rep < reps; rep++) {
        d[rep] = layer_step_us(shapes[s], sweep[k], FALSE, B);
        q[rep] = layer_step_us(shapes[s], sweep[k], TRUE, B);
      }
      dense[k] = median_of(d, reps), sparse[k] = median_of(q, reps);
    }
    double cross = NAN; /* the first sparsity from which sparse stays faster */
    for (int k = (int)G_N_ELEMENTS(sweep) - 1; k >= 0 && sparse[k] < dense[k]; k--)
      cross = sweep[k];
    char name[32];
    g_snprintf(name, sizeof name, "%dx%d%s", shapes[s].out, shapes[s].in,
               shapes[s].dx ? "+dx" : "");
    for (int row = 0; row < 2; row++) {
      printf("%-10s %-5s", row ? "" : name, row ? "sparse" : "dense");
      for (size_t k = 0; k < G_N_ELEMENTS(sweep); k++) printf(" %7.1f", row ? sparse[k] : dense[k]);
      if (row) printf("   %.2f", cross);
      printf("\n");
    }
    PrunusJson *o = prunus_json_new_object(), *a = prunus_json_new_array(),
               *b = prunus_json_new_array();
    for (size_t k = 0; k < G_N_ELEMENTS(sweep); k++)
      prunus_json_array_add(a, prunus_json_new_number(dense[k])),
          prunus_json_array_add(b, prunus_json_new_number(sparse[k]));
    prunus_json_object_set(o, "layer", prunus_json_new_string(name));
    prunus_json_object_set(o, "dense_us", a);
    prunus_json_object_set(o, "sparse_us", b);
    prunus_json_object_set(o, "crossover", prunus_json_new_number(cross));
    prunus_json_array_add(layers, o);
  }
  prunus_json_object_set(out, "layers", layers);
}

/* ------------------------------------------------------------------------ */
/* whole epochs */

/* Samples per CPU second of one fine-tuning epoch of LeNet-300-100 pruned to `sparsity`
 * (the whole prunus_train call: setting the sparse layers up included). */
static double epoch_sps(const PrunusDataset *train, const PrunusNorm *norm, double sparsity,
                        double sparse_from) {
  static PrunusLayerSpec specs[] = {
      {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 300},
      {.type = PRUNUS_LAYER_RELU},    {.type = PRUNUS_LAYER_DENSE, .units = 100},
      {.type = PRUNUS_LAYER_RELU},    {.type = PRUNUS_LAYER_DENSE, .units = 10}};
  PrunusArch arch = {.input = {1, 28, 28},
                     .n_classes = 10,
                     .n_layers = 6,
                     .layers = specs,
                     .init = PRUNUS_INIT_UNIFORM_FAN_IN};
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, 128, 4, &error);
  if (!m) g_error("%s", error->message);
  random_masks(m, sparsity, 5);
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.epochs = 1, tc.batch = 128, tc.lr = 0.1, tc.sparse_from = sparse_from;
  PrunusTrainOptions opt = {.threads = 1};
  double t0 = cpu_now_us();
  if (!prunus_train(m, &tc, train, NULL, norm, 6, &opt, &error)) g_error("%s", error->message);
  double seconds = (cpu_now_us() - t0) / 1e6;
  prunus_model_free(m);
  return train->n / seconds;
}

static PrunusDataset *load_train(const char *dir) {
  char *images = g_build_filename(dir, "train-images-idx3-ubyte.gz", NULL);
  char *labels = g_build_filename(dir, "train-labels-idx1-ubyte.gz", NULL);
  GError *error = NULL;
  PrunusDataset *train = prunus_dataset_load_idx(images, labels, 10, &error);
  if (!train) g_error("%s", error->message);
  g_free(images), g_free(labels);
  return train;
}

/* --profile S: only epochs at sparsity S on the default kernels (for perf record). */
static void run_profile(const char *dir, int reps, double sparsity) {
  PrunusDataset *train = load_train(dir);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_UNIT);
  for (int rep = 0; rep < reps; rep++)
    printf("sparsity %.2f: %.0f samples/s\n", sparsity,
           epoch_sps(train, &norm, sparsity, PRUNUS_SPARSE_FROM_DEFAULT));
  prunus_dataset_free(train);
}

static void run_epochs(const char *dir, int reps, PrunusJson *out) {
  PrunusDataset *train = load_train(dir);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_UNIT);
  static const double epochs_sweep[] = {0.0, 0.5, 0.7, 0.8, 0.9, 0.95};
  enum { N = G_N_ELEMENTS(epochs_sweep) };
  double sp[N][16], dn[N][16];
  epoch_sps(train, &norm, 0.0, 1.0); /* warm-up */
  for (int rep = 0; rep < reps; rep++)
    for (int k = 0; k < N; k++) {
      sp[k][rep] = epoch_sps(train, &norm, epochs_sweep[k], PRUNUS_SPARSE_FROM_DEFAULT);
      dn[k][rep] = epoch_sps(train, &norm, epochs_sweep[k], 1.0);
    }
  double base = 0.0;
  printf(
      "\nfine-tuning epoch of LeNet-300-100, 60000 images, batch 128, 1 thread, samples per CPU "
      "second (median of %d)\n",
      reps);
  printf("%8s %16s %12s %16s %12s\n", "sparsity", "default kernels", "vs 0%", "dense kernels",
         "vs 0%");
  PrunusJson *rows = prunus_json_new_array();
  for (int k = 0; k < N; k++) {
    double s = median_of(sp[k], reps), d = median_of(dn[k], reps);
    if (k == 0) base = s;
    printf("%8.2f %14.0f/s %11.2fx %14.0f/s %11.2fx\n", epochs_sweep[k], s, s / base, d, d / base);
    PrunusJson *o = prunus_json_new_object();
    prunus_json_object_set(o, "sparsity", prunus_json_new_number(epochs_sweep[k]));
    prunus_json_object_set(o, "samples_per_second", prunus_json_new_number(s));
    prunus_json_object_set(o, "dense_kernels_samples_per_second", prunus_json_new_number(d));
    prunus_json_object_set(o, "speedup_vs_unpruned", prunus_json_new_number(s / base));
    prunus_json_array_add(rows, o);
  }
  prunus_json_object_set(out, "epochs", rows);
  prunus_dataset_free(train);
}

int main(int argc, char **argv) {
  gboolean layers = FALSE;
  int reps = 3;
  double profile = -1.0;
  char *data = NULL;
  GOptionEntry entries[] = {
      {"layers", 0, 0, G_OPTION_ARG_NONE, &layers, "one layer's step per shape (the crossover)",
       NULL},
      {"profile", 0, 0, G_OPTION_ARG_DOUBLE, &profile,
       "only --reps epochs at this sparsity, default kernels (to profile)", "S"},
      {"reps", 'r', 0, G_OPTION_ARG_INT, &reps, "runs per figure, median (default 3)", "N"},
      {"data", 'd', 0, G_OPTION_ARG_FILENAME, &data,
       "Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)", "DIR"},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *ctx = g_option_context_new("- sparse against dense training kernels");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "sparse_train: %s\n", error->message);
    return 1;
  }
  g_option_context_free(ctx);
  reps = CLAMP(reps, 1, 16);
  prunus_set_threads(1);
  if (profile >= 0.0) {
    run_profile(data ? data : "/usr/share/datasets/fashion-mnist", reps, profile);
    g_free(data);
    return 0;
  }
  PrunusJson *out = prunus_json_new_object();
  if (layers)
    run_layers(reps, out);
  else
    run_epochs(data ? data : "/usr/share/datasets/fashion-mnist", reps, out);
  char *text = prunus_json_to_string(out, 0);
  printf("%s\n", text);
  g_free(text);
  prunus_json_free(out);
  g_free(data);
  return 0;
}
