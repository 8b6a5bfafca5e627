/* test_engine.c: the CSR kernels against plain loops, and every inference engine
 * (dense, masked, sparse, shrunk, auto) against prunus_model_forward with masks, on
 * odd sizes, empty and full rows, batches 1/3/17/256, the AVX-512, AVX2 and scalar
 * kernels, one thread and a team of helpers; the padded BLAS layout against the plain
 * one; graphs (resnet8, resnet20, vgg-bn, a concat net) against the model's evaluation
 * forward, and sequences against their folded model's forward bit for bit. */
#include "config.h"
#include "csr.h"
#include "engine.h"
#include "gemm.h"
#include "groups.h"
#include "rng.h"
#include "shrink.h"
#include "shrink_graph.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* CSR kernels */

/* A (rows, cols) random matrix: row 0 all zero, row 1 full, others ~70% zero. */
static float *random_sparse(int rows, int cols, uint64_t seed) {
  PrunusRng rng;
  prunus_rng_seed(&rng, seed);
  float *W = g_new(float, (size_t)rows *cols);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      float v = (float)prunus_rng_normal(&rng);
      gboolean keep = r == 1 || (r != 0 && prunus_rng_uniform(&rng) < 0.3);
      W[(size_t)r * cols + c] = keep ? v : 0.0f;
    }
  return W;
}

/* Shapes with full 64x64 tiles, 16x16 and 8x8 blocks at the edges and scalar
 * leftovers. */
static void check_transpose(void) {
  static const int shapes[][2] = {{256, 784}, {128, 300}, {300, 128}, {97, 333}, {40, 7}, {1, 9}};
  for (size_t s = 0; s < G_N_ELEMENTS(shapes); s++) {
    int R = shapes[s][0], C = shapes[s][1];
    float *src = g_new(float, (size_t)R *C), *ref = g_new(float, (size_t)R *C),
          *dst = g_new(float, (size_t)R *C);
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++) {
        src[(size_t)r * C + c] = (float)(r * 1000 + c);
        ref[(size_t)c * R + r] = src[(size_t)r * C + c];
      }
    prunus_transpose(src, R, C, dst);
    g_assert_cmpmem(dst, sizeof(float) * R * C, ref, sizeof(float) * R * C);
    g_free(src), g_free(ref), g_free(dst);
  }
}

static void check_kernels(PrunusCsrLevel level) {
  PrunusCsrLevel old = prunus_csr_cap_level(level);
  g_assert_cmpint(prunus_csr_level(), ==, level);
  int rows = 37, cols = 53;
  float *W = random_sparse(rows, cols, 1);
  PrunusCsr *a = prunus_csr_from_dense(W, NULL, rows, cols);
  g_assert_cmpint(a->len[0], ==, 0);
  g_assert_cmpint(a->ptr[1] - a->ptr[0], ==, 0);
  g_assert_cmpint(a->len[1], ==, cols);
  g_assert_cmpint(a->ptr[2] - a->ptr[1], ==, 56); /* padded to 8 */
  g_assert_cmpint(a->ptr[rows] % 8, ==, 0);
  float bias[37];
  for (int r = 0; r < rows; r++) bias[r] = 0.1f * r;
  /* every column block and tail of the AVX2 (64/32/16/8 + scalar) and AVX-512
   * (128/64/32 + masked) SpMM kernels */
  static const int Ns[] = {1, 3, 17, 32, 64, 73, 175, 256};
  PrunusRng rng;
  prunus_rng_seed(&rng, 2);
  for (size_t t = 0; t < G_N_ELEMENTS(Ns); t++) {
    int N = Ns[t];
    float *xT = g_new(float, (size_t)cols *N);
    float *yT = g_new(float, (size_t)rows *N);
    float *ref = g_new(float, (size_t)rows *N);
    for (size_t i = 0; i < (size_t)cols * N; i++) xT[i] = (float)prunus_rng_normal(&rng);
    for (int r = 0; r < rows; r++)
      for (int n = 0; n < N; n++) {
        double acc = bias[r];
        for (int c = 0; c < cols; c++)
          acc += (double)W[(size_t)r * cols + c] * xT[(size_t)c * N + n];
        ref[(size_t)r * N + n] = (float)acc;
      }
    memset(yT, 0xff, sizeof(float) * rows * N);
    prunus_csr_spmm_t(a, xT, N, bias, yT, NULL);
    g_assert_cmpfloat(testutil_max_rel_diff(yT, ref, (size_t)rows * N, "spmm_t"), <, 1e-5);
    if (N == 1) {
      /* the SpMV by rows, then over slices (built on AVX-512 only: a short last row
       * group, a short last column chunk, an empty row and a full one, 32 entries in a
       * chunk); in both an infinite input reaches the rows that use it and no other (a
       * row's padding reads its own last column, a slice's empty places add nothing) */
      size_t bytes = prunus_csr_bytes(a);
      for (int sliced = 0; sliced < 2; sliced++) {
        if (sliced) {
          prunus_csr_slices_build(a);
          g_assert_cmpint(a->slices != NULL, ==, level >= PRUNUS_CSR_AVX512);
          g_assert_cmpuint(prunus_csr_bytes(a) > bytes, ==, a->slices != NULL);
        }
        memset(yT, 0xff, sizeof(float) * rows);
        prunus_csr_spmv(a, xT, bias, yT, NULL);
        g_assert_cmpfloat(testutil_max_rel_diff(yT, ref, rows, sliced ? "spmv slices" : "spmv"), <,
                          1e-5);
        float keep = xT[0];
        xT[0] = INFINITY;
        prunus_csr_spmv(a, xT, bias, yT, NULL);
        for (int r = 0; r < rows; r++)
          g_assert_cmpint(isfinite(yT[r]), ==, W[(size_t)r * cols] == 0.0f);
        xT[0] = keep;
      }
      prunus_csr_slices_drop(a);
      g_assert_null(a->slices);
      g_assert_cmpuint(prunus_csr_bytes(a), ==, bytes);
    }
    g_free(xT), g_free(yT), g_free(ref);
  }
  prunus_csr_free(a);
  /* new values through prunus_csr_gather drop the slices, which hold the old ones */
  int32_t *src = NULL;
  PrunusCsr *t = prunus_csr_from_mask(W, rows, cols, false, &src);
  prunus_csr_gather(t, src, W);
  prunus_csr_slices_build(t);
  prunus_csr_gather(t, src, W);
  g_assert_null(t->slices);
  prunus_csr_free(t);
  g_free(src);
  g_free(W);
  check_transpose();
  prunus_csr_cap_level(old);
}

/* TRUE when the CPU has the kernels of `level` (else the test is skipped). */
static gboolean cpu_has(PrunusCsrLevel level) {
  if (prunus_csr_level() >= level) return TRUE;
  g_test_skip("this CPU lacks the kernels");
  return FALSE;
}

static void test_kernels_avx512(void) {
  if (cpu_has(PRUNUS_CSR_AVX512)) check_kernels(PRUNUS_CSR_AVX512);
}

static void test_kernels_avx2(void) {
  if (cpu_has(PRUNUS_CSR_AVX2)) check_kernels(PRUNUS_CSR_AVX2);
}

static void test_kernels_scalar(void) { check_kernels(PRUNUS_CSR_SCALAR); }

/* Large enough for the team split to run, with many rows: teams of 2 and 3 give
 * exactly what one thread gives, for SpMV (by rows, or by slices) and SpMM, over many
 * calls, some after the helpers have gone to sleep. */
static void check_team(PrunusTeam *team, gboolean slices) {
  int rows = 301, cols = 785, N = 256;
  float *W = random_sparse(rows, cols, 3);
  PrunusCsr *a = prunus_csr_from_dense(W, NULL, rows, cols);
  if (slices) prunus_csr_slices_build(a); /* the SpMV's groups of rows split instead */
  float *xT = g_new(float, (size_t)cols *N), *y1 = g_new(float, (size_t)rows *N),
        *y2 = g_new(float, (size_t)rows *N);
  PrunusRng rng;
  prunus_rng_seed(&rng, 4);
  for (size_t i = 0; i < (size_t)cols * N; i++) xT[i] = (float)prunus_rng_normal(&rng);
  for (int call = 0; call < 50; call++) {
    if (call % 10 == 9) g_usleep(2000); /* longer than the helpers spin */
    prunus_csr_spmm_t(a, xT, N, NULL, y1, NULL);
    memset(y2, 0xff, sizeof(float) * rows * N);
    prunus_csr_spmm_t(a, xT, N, NULL, y2, team);
    g_assert_cmpfloat(testutil_max_rel_diff(y1, y2, (size_t)rows * N, "spmm_t team"), ==, 0.0);
    prunus_csr_spmv(a, xT + call, NULL, y1, NULL);
    memset(y2, 0xff, sizeof(float) * rows);
    prunus_csr_spmv(a, xT + call, NULL, y2, team);
    g_assert_cmpfloat(testutil_max_rel_diff(y1, y2, rows, "spmv team"), ==, 0.0);
  }
  prunus_csr_free(a);
  g_free(W), g_free(xT), g_free(y1), g_free(y2);
}

static void test_kernels_team(void) {
  for (int threads = 2; threads <= 3; threads++) {
    PrunusTeam *team = prunus_team_new(threads);
    g_assert_nonnull(team);
    g_assert_cmpint(prunus_team_threads(team), ==, threads);
    PrunusCsrLevel best = prunus_csr_level();
    for (int level = 0; level <= (int)best; level++) {
      prunus_csr_cap_level((PrunusCsrLevel)level);
      check_team(team, FALSE);
      if (level == PRUNUS_CSR_AVX512) check_team(team, TRUE);
    }
    prunus_csr_cap_level(PRUNUS_CSR_N_LEVELS - 1);
    prunus_team_free(team);
  }
  g_assert_cmpint(prunus_team_threads(NULL), ==, 1);
}

/* ------------------------------------------------------------------------ */
/* engines */

/* A model of arch with random biases and masks (~sparsity zeros), a fully dead unit
 * in every hidden param layer, and a fully alive one. */
static PrunusModel *masked_model(const char *arch_text, double sparsity, uint64_t seed) {
  PrunusArch arch;
  GError *error = NULL;
  g_assert_true(prunus_arch_from_string(arch_text, &arch, &error));
  g_assert_no_error(error);
  PrunusModel *m = prunus_model_new(&arch, 4, seed, &error);
  g_assert_no_error(error);
  prunus_arch_clear(&arch);
  PrunusRng rng;
  prunus_rng_seed(&rng, seed + 100);
  int last = -1;
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params) last = i;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    for (size_t j = 0; j < l->b_len; j++)
      m->params[l->b_off + j] = (float)(0.3 * prunus_rng_normal(&rng));
    int fan = l->fan_in;
    for (int u = 0; u < l->out.c; u++) {
      for (int k = 0; k < fan; k++) {
        float keep = prunus_rng_uniform(&rng) >= sparsity;
        if (u == 1 && i != last) keep = 0.0f; /* a dead unit */
        if (u == 0) keep = 1.0f;              /* a full row */
        m->mask[l->w_off + (size_t)u * fan + k] = keep;
      }
    }
  }
  prunus_model_apply_mask(m);
  return m;
}

static void check_engines(PrunusModel *m, const char *label) {
  static const int batches[] = {1, 3, 17, 256};
  size_t in = prunus_model_input_size(m);
  int K = prunus_model_n_classes(m);
  PrunusRng rng;
  prunus_rng_seed(&rng, 9);
  for (int kind = 0; kind < PRUNUS_ENGINE_N_KINDS; kind++) {
    GError *error = NULL;
    PrunusEngine *e = prunus_engine_new(m, (PrunusEngineKind)kind, 32, &error);
    g_assert_no_error(error);
    g_assert_nonnull(e);
    for (int threads = 1; threads <= 2; threads++) {
      prunus_engine_set_threads(e, threads);
      for (size_t t = 0; t < G_N_ELEMENTS(batches); t++) {
        int B = batches[t];
        float *x = g_new(float, (size_t)B *in), *y = g_new(float, (size_t)B *K);
        for (size_t i = 0; i < (size_t)B * in; i++) x[i] = (float)prunus_rng_normal(&rng);
        prunus_model_forward(m, x, B);
        prunus_engine_forward(e, x, B, y);
        char *what = g_strdup_printf("%s %s B=%d threads=%d", label,
                                     prunus_engine_kind_name((PrunusEngineKind)kind), B, threads);
        g_assert_cmpfloat(testutil_max_rel_diff(y, m->acts[m->n_layers], (size_t)B * K, what), <,
                          1e-4);
        g_free(what);
        g_free(x), g_free(y);
      }
    }
    if (kind == PRUNUS_ENGINE_SHRUNK) g_assert_cmpint(prunus_engine_n_layers(e), ==, m->n_layers);
    g_assert_cmpuint(prunus_engine_weight_bytes(e), >, 0);
    prunus_engine_free(e);
  }
}

/* Every kernel level the CPU has. */
static void run_all_levels(PrunusModel *m, const char *label) {
  PrunusCsrLevel best = prunus_csr_level();
  for (int level = 0; level <= (int)best; level++) {
    prunus_csr_cap_level((PrunusCsrLevel)level);
    check_engines(m, label);
  }
  prunus_csr_cap_level(PRUNUS_CSR_N_LEVELS - 1);
}

static void test_engines_dense_model(void) {
  static const double sparsities[] = {0.0, 0.7, 0.97};
  for (size_t s = 0; s < G_N_ELEMENTS(sparsities); s++) {
    PrunusModel *m =
        masked_model("1x5x11|flatten|dense:37|relu|dense:53|relu|dense:10", sparsities[s], 11 + s);
    run_all_levels(m, "mlp");
    prunus_model_free(m);
  }
}

static void test_engines_conv_model(void) {
  PrunusModel *m = masked_model(
      "2x9x9|conv2d:5:3:1:1|relu|maxpool2d:2:2|conv2d:7:3:1:0|relu|flatten|dense:10", 0.6, 21);
  /* conv -> conv: a dead channel with a positive bias reaches the next conv unevenly
   * through its zero padding: the shrunk engine must keep it (and stay exact). */
  m->params[m->layers[0].b_off + 1] = 0.5f;
  run_all_levels(m, "conv");
  prunus_model_free(m);
}

/* The shrunk engine really removes the dead units; sparse holds fewer bytes. */
static void test_engine_sizes(void) {
  PrunusModel *m = masked_model("1x5x11|flatten|dense:37|relu|dense:53|relu|dense:10", 0.9, 5);
  GError *error = NULL;
  PrunusEngine *dense = prunus_engine_new(m, PRUNUS_ENGINE_DENSE, 1, &error);
  PrunusEngine *shrunk = prunus_engine_new(m, PRUNUS_ENGINE_SHRUNK, 1, &error);
  PrunusEngine *sparse = prunus_engine_new(m, PRUNUS_ENGINE_SPARSE, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(prunus_engine_layer(shrunk, 1)->out.c, <, 37);
  g_assert_cmpint(prunus_engine_layer(shrunk, 3)->out.c, <, 53);
  g_assert_cmpuint(prunus_engine_weight_bytes(shrunk), <, prunus_engine_weight_bytes(dense));
  g_assert_cmpuint(prunus_engine_weight_bytes(sparse), <, prunus_engine_weight_bytes(dense) / 2);
  g_assert_cmpstr(prunus_engine_layer_choice(sparse, 1, 1), ==, "sparse");
  g_assert_cmpstr(prunus_engine_layer_choice(dense, 1, 1), ==, "dense");
  g_assert_null(prunus_engine_layer_choice(dense, 0, 1));
  g_assert_cmpfloat(prunus_engine_layer_sparsity(dense, 1), >, 0.8);
  g_assert_cmpuint(prunus_engine_flops(sparse), ==, prunus_model_flops(m, TRUE));
  PrunusEngineKind k;
  g_assert_true(prunus_engine_kind_from_name("auto", &k));
  g_assert_cmpint(k, ==, PRUNUS_ENGINE_AUTO);
  g_assert_false(prunus_engine_kind_from_name("fast", &k));
  prunus_engine_free(dense);
  prunus_engine_free(shrunk);
  prunus_engine_free(sparse);
  prunus_model_free(m);
}

/* Padding: DENSE and SHRUNK laid out with every hidden dense layer padded to a
 * multiple of 16 (zero rows, zero columns in the next layer) compute what the
 * unpadded layout and prunus_model_forward compute, at batch 1 (sgemv) and larger
 * (sgemm), with 1 and 2 BLAS threads; the queries report the network, not the
 * padding (but for the bytes in memory). Widths: 38 and 54 (dense), 37 and 53
 * after the shrunk engine drops a dead unit per layer. */
static void test_engine_padding(void) {
  static const int batches[] = {1, 2, 5, 33, 256};
  static const PrunusEngineKind kinds[] = {PRUNUS_ENGINE_DENSE, PRUNUS_ENGINE_SHRUNK};
  PrunusModel *m = masked_model("1x5x11|flatten|dense:38|relu|dense:54|relu|dense:10", 0.5, 31);
  size_t in = prunus_model_input_size(m);
  int K = prunus_model_n_classes(m);
  PrunusRng rng;
  prunus_rng_seed(&rng, 32);
  for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
    GError *error = NULL;
    PrunusEngine *padded = prunus_engine_new(m, kinds[k], 256, &error);
    PrunusEngine *plain = prunus_engine_new(m, kinds[k], 256, &error);
    PrunusEngine *measured = prunus_engine_new(m, kinds[k], 256, &error);
    g_assert_no_error(error);
    prunus_engine_set_padding(padded, PRUNUS_ENGINE_PAD_ALL);
    prunus_engine_set_padding(plain, PRUNUS_ENGINE_PAD_NONE);
    for (int i = 1; i <= 3; i += 2) { /* the two hidden dense layers */
      int w = prunus_engine_layer(padded, i)->out.c;
      g_assert_cmpint(w % 16, !=, 0);
      g_assert_cmpint(w, ==, prunus_engine_layer(plain, i)->out.c);
      g_assert_cmpint(prunus_engine_layer_padding(padded, i), ==, (w + 15) / 16 * 16 - w);
      g_assert_cmpint(prunus_engine_layer_padding(plain, i), ==, 0);
      g_assert_cmpfloat(prunus_engine_layer_sparsity(padded, i), ==,
                        prunus_engine_layer_sparsity(plain, i));
    }
    g_assert_cmpint(prunus_engine_layer_padding(padded, 5), ==, 0); /* the logits */
    /* padding given per layer, not measured: the first hidden layer only */
    static const gboolean first_only[6] = {FALSE, TRUE, FALSE, FALSE, FALSE, FALSE};
    PrunusEngine *given = prunus_engine_new_padded(m, kinds[k], 256, first_only, &error);
    g_assert_no_error(error);
    g_assert_cmpint(prunus_engine_layer_padding(given, 1), ==,
                    prunus_engine_layer_padding(padded, 1));
    g_assert_cmpint(prunus_engine_layer_padding(given, 3), ==, 0);
    {
      float *x = g_new(float, 7 * in), *yg = g_new(float, 7 * K), *yn = g_new(float, 7 * K);
      for (size_t i = 0; i < 7 * in; i++) x[i] = (float)prunus_rng_normal(&rng);
      prunus_engine_forward(given, x, 7, yg);
      prunus_engine_forward(plain, x, 7, yn);
      g_assert_cmpfloat(testutil_max_rel_diff(yg, yn, 7 * K, "padded as given"), <, 1e-5);
      g_free(x), g_free(yg), g_free(yn);
    }
    prunus_engine_free(given);
    g_assert_cmpuint(prunus_engine_flops(padded), ==, prunus_engine_flops(plain));
    g_assert_cmpuint(prunus_engine_weight_bytes(padded), >, prunus_engine_weight_bytes(plain));
    if (kinds[k] == PRUNUS_ENGINE_DENSE)
      g_assert_cmpuint(prunus_engine_flops(plain), ==, prunus_model_flops(m, TRUE));
    for (int threads = 1; threads <= 2; threads++) {
      prunus_set_threads(threads);
      prunus_engine_set_threads(padded, threads);
      prunus_engine_set_threads(plain, threads);
      prunus_engine_set_threads(measured, threads); /* measures again: BLAS threads changed */
      for (size_t t = 0; t < G_N_ELEMENTS(batches); t++) {
        int B = batches[t];
        float *x = g_new(float, (size_t)B *in), *yp = g_new(float, (size_t)B *K),
              *yn = g_new(float, (size_t)B *K), *ym = g_new(float, (size_t)B *K);
        for (size_t i = 0; i < (size_t)B * in; i++) x[i] = (float)prunus_rng_normal(&rng);
        prunus_model_forward(m, x, B);
        prunus_engine_forward(padded, x, B, yp);
        prunus_engine_forward(plain, x, B, yn);
        prunus_engine_forward(measured, x, B, ym);
        char *what = g_strdup_printf("%s padded B=%d threads=%d", prunus_engine_kind_name(kinds[k]),
                                     B, threads);
        g_assert_cmpfloat(testutil_max_rel_diff(yp, yn, (size_t)B * K, what), <, 1e-5);
        g_assert_cmpfloat(testutil_max_rel_diff(yp, m->acts[m->n_layers], (size_t)B * K, what), <,
                          1e-4);
        g_assert_cmpfloat(testutil_max_rel_diff(ym, yn, (size_t)B * K, what), <, 1e-5);
        g_free(what);
        g_free(x), g_free(yp), g_free(yn), g_free(ym);
      }
    }
    prunus_set_threads(1);
    prunus_engine_free(padded);
    prunus_engine_free(plain);
    prunus_engine_free(measured);
  }
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* graphs and shipped configs */

/* The model of a config (a path under the source root) with random masks (~sparsity
 * zeros), biases, and batchnorm scales, shifts and running statistics far from their
 * initial 1, 0, 0, 1, so a wrong fold shows; in evaluation mode. */
static PrunusModel *config_model(const char *rel_path, double sparsity, uint64_t seed) {
  char *path = g_build_filename(PRUNUS_SOURCE_ROOT, rel_path, NULL);
  PrunusModel *m = testutil_config_model(path, 4, seed);
  g_free(path);
  PrunusRng rng;
  prunus_rng_seed(&rng, seed + 1);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
      int C = l->in.c;
      for (int ch = 0; ch < C; ch++) {
        m->params[l->b_off + ch] = (float)(1.0 + 0.3 * prunus_rng_normal(&rng));
        m->params[l->b_off + C + ch] = (float)(0.3 * prunus_rng_normal(&rng));
        m->params[l->buf_off + ch] = (float)(0.5 * prunus_rng_normal(&rng));
        m->params[l->buf_off + C + ch] = (float)(0.5 + prunus_rng_uniform(&rng));
      }
    }
    if (!l->ops->has_params) continue;
    for (size_t j = 0; j < l->b_len; j++)
      m->params[l->b_off + j] = (float)(0.2 * prunus_rng_normal(&rng));
    for (size_t j = 0; j < l->w_len; j++)
      m->mask[l->w_off + j] = prunus_rng_uniform(&rng) >= sparsity;
  }
  prunus_model_apply_mask(m);
  prunus_model_set_training(m, FALSE);
  return m;
}

/* Every engine, at 1 and 2 threads, on batches 1, 3 and B (above a graph's chunk of
 * 16: several chunks and a short one), against m's evaluation forward (batchnorm
 * unfolded). */
static void check_graph_engines(PrunusModel *m, const char *label, int B_max) {
  const int batches[] = {1, 3, B_max};
  size_t in = prunus_model_input_size(m);
  int K = prunus_model_n_classes(m);
  PrunusRng rng;
  prunus_rng_seed(&rng, 19);
  float *x = g_new(float, B_max *in), *y = g_new(float, B_max *(size_t)K);
  for (size_t i = 0; i < B_max * in; i++) x[i] = (float)prunus_rng_normal(&rng);
  for (int kind = 0; kind < PRUNUS_ENGINE_N_KINDS; kind++) {
    GError *error = NULL;
    PrunusEngine *e = prunus_engine_new(m, (PrunusEngineKind)kind, B_max, &error);
    g_assert_no_error(error);
    for (int threads = 1; threads <= 2; threads++) {
      prunus_engine_set_threads(e, threads);
      for (size_t t = 0; t < G_N_ELEMENTS(batches); t++) {
        int B = batches[t];
        prunus_model_forward(m, x, B);
        memset(y, 0xff, sizeof(float) * B * K);
        prunus_engine_forward(e, x, B, y);
        char *what = g_strdup_printf("%s %s B=%d threads=%d", label,
                                     prunus_engine_kind_name((PrunusEngineKind)kind), B, threads);
        g_assert_cmpfloat(testutil_max_rel_diff(y, m->acts[m->n_layers], (size_t)B * K, what), <,
                          1e-4);
        g_free(what);
      }
    }
    prunus_engine_free(e);
  }
  g_free(x), g_free(y);
}

static void test_engines_resnet8(void) {
  PrunusModel *m = config_model("configs/resnet8.cfg", 0.7, 41);
  check_graph_engines(m, "resnet8", 40);
  /* every batchnorm folded: 9 of them; 3 activation buffers of the widest map (16x28x28)
   * by liveness, where a buffer per layer would take 21 */
  GError *error = NULL;
  PrunusEngine *e = prunus_engine_new(m, PRUNUS_ENGINE_DENSE, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(prunus_engine_n_layers(e), ==, m->n_layers - 9);
  g_assert_cmpuint(prunus_engine_activation_floats(e), ==, 3 * 16 * 28 * 28);
  g_assert_cmpuint(prunus_engine_flops(e), ==, prunus_model_flops(m, TRUE));
  prunus_engine_free(e);
  prunus_model_free(m);
}

static void test_engines_resnet20(void) {
  PrunusModel *m = config_model("configs/resnet20.cfg", 0.5, 42);
  check_graph_engines(m, "resnet20", 17);
  GError *error = NULL;
  PrunusEngine *e = prunus_engine_new(m, PRUNUS_ENGINE_SPARSE, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(prunus_engine_n_layers(e), ==, m->n_layers - 21);
  g_assert_cmpuint(prunus_engine_activation_floats(e), ==, 3 * 16 * 28 * 28);
  prunus_engine_free(e);
  prunus_model_free(m);
}

/* SHRUNK on a graph masked by whole channel groups (prunus_model_mask_units, as the
 * pipeline masks them): those groups are gone from its network (fewer channels and
 * weight bytes than DENSE's), its logits the masked model's. */
static void test_engine_shrunk_graph(void) {
  PrunusModel *m = config_model("configs/resnet8.cfg", 0.0, 44);
  PrunusGroups *g = prunus_groups_build(m);
  uint8_t **rm = g_new0(uint8_t *, m->n_layers);
  const int groups[] = {2, 20, 40, 70, 100, 130, 170, 200};
  for (size_t k = 0; k < G_N_ELEMENTS(groups); k++) {
    const PrunusGroup *gr = &g->groups[groups[k]];
    for (int p = 0; p < gr->n_producers; p++) {
      int i = gr->producers[p].layer;
      if (!rm[i]) rm[i] = g_new0(uint8_t, m->layers[i].out.c);
      rm[i][gr->producers[p].channel] = 1;
    }
  }
  GError *error = NULL;
  g_assert_true(prunus_model_mask_units(m, (const uint8_t *const *)rm, &error));
  g_assert_no_error(error);
  check_graph_engines(m, "resnet8 groups masked", 20);
  PrunusEngine *d = prunus_engine_new(m, PRUNUS_ENGINE_DENSE, 1, &error);
  PrunusEngine *s = prunus_engine_new(m, PRUNUS_ENGINE_SHRUNK, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(prunus_engine_n_layers(s), ==, prunus_engine_n_layers(d));
  int fewer = 0;
  for (int i = 0; i < prunus_engine_n_layers(s); i++) {
    const PrunusLayer *ls = prunus_engine_layer(s, i), *ld = prunus_engine_layer(d, i);
    int lost = 0;
    for (int j = 0; j < m->n_layers; j++)
      if (rm[j] && !strcmp(m->layers[j].name, ld->name))
        for (int u = 0; u < m->layers[j].out.c; u++) lost += rm[j][u];
    if (ld->ops->has_params) /* adds, relus, pooling shrink with what they read */
      g_assert_cmpint(ls->out.c, ==, ld->out.c - lost);
    fewer += lost;
  }
  g_assert_cmpint(fewer, >=, (int)G_N_ELEMENTS(groups));
  g_assert_cmpuint(prunus_engine_weight_bytes(s), <, prunus_engine_weight_bytes(d));
  /* FLOPs count nonzero weights: the removed ones were all masked */
  g_assert_cmpuint(prunus_engine_flops(s), ==, prunus_engine_flops(d));
  prunus_engine_free(s), prunus_engine_free(d);
  for (int i = 0; i < m->n_layers; i++) g_free(rm[i]);
  g_free(rm);
  prunus_groups_free(g);
  prunus_model_free(m);
}

/* concat, a batchnorm kept (its conv is read by an add too), avgpool2d, a conv with a
 * bias: the kept batchnorm's statistics and scale come along. */
static void test_engines_concat(void) {
  PrunusModel *m = config_model("tests/infer/concat.cfg", 0.3, 43);
  check_graph_engines(m, "concat", 40);
  GError *error = NULL;
  PrunusEngine *e = prunus_engine_new(m, PRUNUS_ENGINE_DENSE, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(prunus_engine_n_layers(e), ==, m->n_layers - 2); /* stem_bn, a_bn */
  int kept = -1;
  for (int i = 0; i < prunus_engine_n_layers(e); i++)
    if (!strcmp(prunus_engine_layer(e, i)->name, "mix_bn")) kept = i;
  g_assert_cmpint(kept, >=, 0);
  g_assert_cmpint(prunus_engine_layer(e, kept)->spec.type, ==, PRUNUS_LAYER_BATCHNORM);
  prunus_engine_free(e);
  prunus_model_free(m);
}

/* A sequence runs as it did before graphs: the dense and masked engines (no padding)
 * give the folded model's own forward bit for bit, on the shipped sequence configs. */
static void test_engines_sequence_bits(void) {
  static const char *const configs[] = {"configs/lenet300.cfg", "configs/lenet5.cfg",
                                        "configs/vgg-bn.cfg"};
  static const PrunusEngineKind kinds[] = {PRUNUS_ENGINE_DENSE, PRUNUS_ENGINE_MASKED};
  for (size_t c = 0; c < G_N_ELEMENTS(configs); c++) {
    PrunusModel *m = config_model(configs[c], 0.6, 44);
    GError *error = NULL;
    PrunusModel *plain = prunus_model_to_plain(m, "test", &error);
    g_assert_no_error(error);
    g_assert_true(prunus_model_check_plain(plain, FALSE, "test", NULL));
    size_t in = prunus_model_input_size(m);
    PrunusRng rng;
    prunus_rng_seed(&rng, 45);
    float *x = g_new(float, 17 * in), y[17 * 10];
    for (size_t i = 0; i < 17 * in; i++) x[i] = (float)prunus_rng_normal(&rng);
    for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
      PrunusEngine *e = prunus_engine_new(m, kinds[k], 17, &error);
      g_assert_no_error(error);
      prunus_engine_set_padding(e, PRUNUS_ENGINE_PAD_NONE);
      for (int B = 1; B <= 17; B += 16) {
        prunus_model_forward(plain, x, B);
        prunus_engine_forward(e, x, B, y);
        g_assert_cmpmem(y, sizeof(float) * B * 10, plain->acts[plain->n_layers],
                        sizeof(float) * B * 10);
      }
      prunus_engine_free(e);
    }
    g_free(x);
    prunus_model_free(plain);
    prunus_model_free(m);
  }
}

static void test_engines_vgg_bn(void) {
  PrunusModel *m = config_model("configs/vgg-bn.cfg", 0.7, 46);
  check_graph_engines(m, "vgg-bn", 17);
  prunus_model_free(m);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/csr/kernels-avx512", test_kernels_avx512);
  g_test_add_func("/csr/kernels-avx2", test_kernels_avx2);
  g_test_add_func("/csr/kernels-scalar", test_kernels_scalar);
  g_test_add_func("/csr/kernels-team", test_kernels_team);
  g_test_add_func("/engine/dense-model", test_engines_dense_model);
  g_test_add_func("/engine/conv-model", test_engines_conv_model);
  g_test_add_func("/engine/sizes", test_engine_sizes);
  g_test_add_func("/engine/padding", test_engine_padding);
  g_test_add_func("/engine/graph/resnet8", test_engines_resnet8);
  g_test_add_func("/engine/graph/resnet20", test_engines_resnet20);
  g_test_add_func("/engine/graph/concat", test_engines_concat);
  g_test_add_func("/engine/graph/shrunk", test_engine_shrunk_graph);
  g_test_add_func("/engine/sequence/vgg-bn", test_engines_vgg_bn);
  g_test_add_func("/engine/sequence/bits", test_engines_sequence_bits);
  return g_test_run();
}
