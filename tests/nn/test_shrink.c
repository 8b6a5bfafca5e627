/* test_shrink.c: structured removal of units. A shrunk model must compute what the
 * original computes with the removed rows and biases zeroed; every slab (params,
 * mask, optimizer state, extra snapshots) must land at the matching new index; the
 * inference copy without dead units must compute what the original computes. */
#include "shrink.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

#define ARCH(c, h, w, ...)                                                                \
  ({                                                                                      \
    static PrunusLayerSpec specs_[] = {__VA_ARGS__};                                      \
    (PrunusArch){.input = {c, h, w}, .n_layers = G_N_ELEMENTS(specs_), .layers = specs_}; \
  })

#define DENSE(n) \
  { .type = PRUNUS_LAYER_DENSE, .units = (n) }
#define CONV(ch, k, pad) \
  { .type = PRUNUS_LAYER_CONV2D, .channels = (ch), .kernel = (k), .stride = 1, .padding = (pad) }
#define RELU \
  { .type = PRUNUS_LAYER_RELU }
#define POOL(k) \
  { .type = PRUNUS_LAYER_MAXPOOL2D, .kernel = (k) }
#define FLATTEN \
  { .type = PRUNUS_LAYER_FLATTEN }

/* A model with every parameter (biases too) drawn from N(0, 0.5²) + a positive shift
 * on biases so that most ReLUs are active and removals matter. */
static PrunusModel *random_model(const PrunusArch *a, int B, uint64_t seed) {
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(a, B, seed, &error);
  g_assert_no_error(error);
  PrunusRng r;
  prunus_rng_seed(&r, seed + 17);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    for (size_t j = 0; j < l->w_len; j++)
      m->params[l->w_off + j] = (float)(prunus_rng_normal(&r) * 0.5);
    for (size_t j = 0; j < l->b_len; j++)
      m->params[l->b_off + j] = (float)(0.2 + prunus_rng_normal(&r) * 0.3);
  }
  return m;
}

static float *random_input(const PrunusModel *m, int B, uint64_t seed) {
  size_t n = (size_t)B * prunus_model_input_size(m);
  float *x = g_new(float, n);
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = (float)prunus_rng_normal(&r);
  return x;
}

/* A copy of m's parameters with the removed units' rows and biases set to zero. */
static PrunusModel *zeroed_reference(const PrunusModel *m, uint8_t **remove) {
  GError *error = NULL;
  PrunusModel *z = prunus_model_new(&m->arch, m->max_batch, 0, &error);
  g_assert_no_error(error);
  memcpy(z->params, m->params, sizeof(float) * m->n_params);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!remove[i]) continue;
    size_t row = l->w_len / (size_t)l->out.c;
    for (int u = 0; u < l->out.c; u++) {
      if (!remove[i][u]) continue;
      memset(z->params + l->w_off + (size_t)u * row, 0, sizeof(float) * row);
      z->params[l->b_off + u] = 0.0f;
    }
  }
  return z;
}

/* Both models' outputs on the same batch agree within 1e-5 (relative, floor 1). */
static void assert_same_outputs(PrunusModel *a, PrunusModel *b, int B, const char *label) {
  float *x = random_input(a, B, 5);
  prunus_model_forward(a, x, B);
  prunus_model_forward(b, x, B);
  size_t n = (size_t)B * a->arch.n_classes;
  g_assert_cmpint(a->arch.n_classes, ==, b->arch.n_classes);
  double nonzero = 0.0;
  for (size_t i = 0; i < n; i++) nonzero += fabsf(a->acts[a->n_layers][i]);
  g_assert_cmpfloat(nonzero, >, 0.1); /* the comparison is not between two zero vectors */
  double diff = testutil_max_rel_diff(a->acts[a->n_layers], b->acts[b->n_layers], n, label);
  g_assert_cmpfloat(diff, <, 1e-5);
  g_free(x);
}

/* Every extra/params pair: value k of the extra slab is its old index, so the new
 * params at k must equal the old params at that index. */
static float *index_slab(size_t n) {
  float *s = g_new(float, n);
  for (size_t i = 0; i < n; i++) s[i] = (float)i;
  return s;
}

static void assert_follows_index(const PrunusModel *m, const PrunusModel *s, const float *idx,
                                 const float *old_slab, const float *new_slab) {
  for (size_t k = 0; k < s->n_params; k++) {
    size_t o = (size_t)idx[k];
    g_assert_cmpuint(o, <, m->n_params);
    g_assert_cmpfloat(new_slab[k], ==, old_slab[o]);
  }
}

static void free_remove(uint8_t **r, int n) {
  for (int i = 0; i < n; i++) g_free(r[i]);
  g_free(r);
}

/* ------------------------------------------------------------------------ */

static PrunusArch mlp_arch(void) {
  return ARCH(1, 2, 4, FLATTEN, DENSE(6), RELU, DENSE(5), RELU, DENSE(3));
}

static void test_dense_mlp(void) {
  PrunusArch a = mlp_arch();
  PrunusModel *m = random_model(&a, 4, 1);
  g_assert_cmpuint(m->n_params, ==, 8 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3); /* 107 */
  uint8_t r1[6] = {0, 1, 0, 0, 1, 0}, r3[5] = {1, 0, 0, 0, 0};
  const uint8_t *remove[6] = {NULL, r1, NULL, r3, NULL, NULL};
  float *idx = index_slab(m->n_params);
  const float *extra_in[1] = {idx};
  float *extra_out[1] = {NULL};
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink(m, remove, extra_in, extra_out, 1, &error);
  g_assert_no_error(error);
  g_assert_nonnull(s);
  /* shapes */
  g_assert_cmpint(s->arch.layers[1].units, ==, 4);
  g_assert_cmpint(s->arch.layers[3].units, ==, 4);
  g_assert_cmpint(s->arch.layers[5].units, ==, 3);
  g_assert_cmpint(s->arch.n_classes, ==, 3);
  g_assert_cmpint(s->arch.init, ==, m->arch.init);
  g_assert_cmpint(s->layers[1].in.c, ==, 8);
  g_assert_cmpint(s->layers[1].out.c, ==, 4);
  g_assert_cmpint(s->layers[3].in.c, ==, 4);
  g_assert_cmpint(s->layers[3].out.c, ==, 4);
  g_assert_cmpint(s->layers[5].in.c, ==, 4);
  g_assert_cmpint(s->layers[5].fan_in, ==, 4);
  g_assert_cmpuint(s->n_params, ==, 8 * 4 + 4 + 4 * 4 + 4 + 4 * 3 + 3); /* 71 */
  /* the extra slab: old layout W1 @0, b1 @48, W3 @54, b3 @84, W5 @89, b5 @104;
   * new layout W1 @0, b1 @32, W3 @36, b3 @52, W5 @56, b5 @68 */
  const float *e = extra_out[0];
  g_assert_cmpfloat(e[0], ==, 0.0f);           /* W1[0,0] */
  g_assert_cmpfloat(e[8], ==, 16.0f);          /* W1 row 1 = old row 2 */
  g_assert_cmpfloat(e[3 * 8 + 7], ==, 47.0f);  /* W1 row 3 = old row 5, col 7 */
  g_assert_cmpfloat(e[32], ==, 48.0f);         /* b1[0] */
  g_assert_cmpfloat(e[33], ==, 50.0f);         /* b1[1] = old b1[2] */
  g_assert_cmpfloat(e[35], ==, 53.0f);         /* b1[3] = old b1[5] */
  g_assert_cmpfloat(e[36], ==, 54.0f + 6 + 0); /* W3[0,0] = old W3[1,0] */
  g_assert_cmpfloat(e[37], ==, 54.0f + 6 + 2); /* W3[0,1] = old W3[1,2] (col 1 removed) */
  g_assert_cmpfloat(e[39], ==, 54.0f + 6 + 5); /* W3[0,3] = old W3[1,5] */
  g_assert_cmpfloat(e[36 + 3 * 4 + 3], ==, 54.0f + 4 * 6 + 5); /* W3[3,3] = old W3[4,5] */
  g_assert_cmpfloat(e[52], ==, 85.0f);                         /* b3[0] = old b3[1] */
  g_assert_cmpfloat(e[56], ==, 89.0f + 1);                     /* W5[0,0] = old W5[0,1] */
  g_assert_cmpfloat(e[56 + 2 * 4 + 3], ==, 89.0f + 2 * 5 + 4); /* W5[2,3] = old W5[2,4] */
  g_assert_cmpfloat(e[68], ==, 104.0f);                        /* b5 unchanged */
  g_assert_cmpfloat(e[70], ==, 106.0f);
  assert_follows_index(m, s, e, m->params, s->params);
  /* outputs */
  PrunusModel *z = zeroed_reference(m, (uint8_t *[]){NULL, r1, NULL, r3, NULL, NULL});
  assert_same_outputs(z, s, 4, "mlp shrunk vs zeroed");
  assert_same_outputs(z, s, 1, "mlp shrunk vs zeroed B=1");
  /* and the shrunk model trains: backward runs on the new shapes */
  prunus_model_zero_grads(s);
  float *dl = g_new0(float, 4 * 3);
  dl[0] = 1.0f;
  float *x = random_input(s, 4, 9);
  prunus_model_forward(s, x, 4);
  prunus_model_backward(s, dl, 4);
  double gsum = 0.0;
  for (size_t i = 0; i < s->n_params; i++) gsum += fabsf(s->grads[i]);
  g_assert_cmpfloat(gsum, >, 0.0);
  g_free(x), g_free(dl);
  prunus_model_free(z);
  prunus_model_free(s);
  g_free(extra_out[0]);
  g_free(idx);
  prunus_model_free(m);
}

static void test_no_removal_is_copy(void) {
  PrunusArch a = mlp_arch();
  PrunusModel *m = random_model(&a, 2, 2);
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink(m, NULL, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(s->n_params, ==, m->n_params);
  g_assert_cmpmem(s->params, sizeof(float) * s->n_params, m->params, sizeof(float) * m->n_params);
  prunus_model_free(s);
  prunus_model_free(m);
}

static void test_conv_conv(void) {
  PrunusArch a =
      ARCH(1, 8, 8, CONV(3, 3, 1), RELU, POOL(2), CONV(4, 3, 0), RELU, FLATTEN, DENSE(3));
  PrunusModel *m = random_model(&a, 3, 3);
  g_assert_cmpint(m->layers[3].in.c, ==, 3);
  g_assert_cmpint(m->layers[3].out.h, ==, 2);
  uint8_t r0[3] = {0, 1, 0}, r3[4] = {0, 0, 1, 0};
  const uint8_t *remove[7] = {r0, NULL, NULL, r3, NULL, NULL, NULL};
  float *idx = index_slab(m->n_params);
  const float *extra_in[1] = {idx};
  float *extra_out[1] = {NULL};
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink(m, remove, extra_in, extra_out, 1, &error);
  g_assert_no_error(error);
  g_assert_cmpint(s->arch.layers[0].channels, ==, 2);
  g_assert_cmpint(s->arch.layers[3].channels, ==, 3);
  g_assert_cmpint(s->layers[0].w_len, ==, 2 * 1 * 9);
  g_assert_cmpint(s->layers[3].in.c, ==, 2);
  g_assert_cmpint(s->layers[3].w_len, ==, 3 * 2 * 9);
  g_assert_cmpint(s->layers[3].fan_in, ==, 2 * 9);
  g_assert_cmpint(s->layers[6].in.c, ==, 3 * 2 * 2);
  g_assert_cmpint(s->layers[6].w_len, ==, 3 * 12);
  g_assert_cmpuint(s->n_params, ==, 18 + 2 + 54 + 3 + 36 + 3);
  /* new conv3 filter 2, input channel 1 = old filter 3, cin 2: whole 3x3 block */
  size_t nw = s->layers[3].w_off + (2 * 2 + 1) * 9, ow = m->layers[3].w_off + (3 * 3 + 2) * 9;
  for (int t = 0; t < 9; t++) g_assert_cmpfloat(extra_out[0][nw + t], ==, (float)(ow + t));
  /* new dense column 8 = old column of channel 3, position 0 = old column 12 */
  g_assert_cmpfloat(extra_out[0][s->layers[6].w_off + 8], ==, (float)(m->layers[6].w_off + 12));
  assert_follows_index(m, s, extra_out[0], m->params, s->params);
  PrunusModel *z = zeroed_reference(m, (uint8_t *[]){r0, NULL, NULL, r3, NULL, NULL, NULL});
  assert_same_outputs(z, s, 3, "conv->conv shrunk vs zeroed");
  prunus_model_free(z);
  prunus_model_free(s);
  g_free(extra_out[0]);
  g_free(idx);
  prunus_model_free(m);
}

static void test_conv_flatten_dense(void) {
  PrunusArch a = ARCH(2, 6, 6, CONV(4, 3, 0), RELU, POOL(2), FLATTEN, DENSE(5), RELU, DENSE(2));
  PrunusModel *m = random_model(&a, 2, 4);
  g_assert_cmpint(m->layers[4].fan_in, ==, 4 * 2 * 2);
  uint8_t r0[4] = {1, 0, 1, 0};
  const uint8_t *remove[7] = {r0, NULL, NULL, NULL, NULL, NULL, NULL};
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink(m, remove, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(s->arch.layers[0].channels, ==, 2);
  g_assert_cmpint(s->layers[0].w_len, ==, 2 * 2 * 9);
  g_assert_cmpint(s->layers[4].fan_in, ==, 16 - 2 * 2 * 2);
  g_assert_cmpint(s->layers[4].in.c, ==, 8);
  g_assert_cmpint(s->layers[4].w_len, ==, 5 * 8);
  g_assert_cmpint(s->layers[4].out.c, ==, 5);
  /* dense row 3: new columns 0..3 = old 4..7 (channel 1), 4..7 = old 12..15 (channel 3) */
  const float *nw = s->params + s->layers[4].w_off + 3 * 8;
  const float *ow = m->params + m->layers[4].w_off + 3 * 16;
  for (int t = 0; t < 4; t++) {
    g_assert_cmpfloat(nw[t], ==, ow[4 + t]);
    g_assert_cmpfloat(nw[4 + t], ==, ow[12 + t]);
  }
  /* conv filter 1 = old filter 3 */
  g_assert_cmpmem(s->params + s->layers[0].w_off + 18, 18 * sizeof(float),
                  m->params + m->layers[0].w_off + 3 * 18, 18 * sizeof(float));
  g_assert_cmpfloat(s->params[s->layers[0].b_off + 1], ==, m->params[m->layers[0].b_off + 3]);
  PrunusModel *z = zeroed_reference(m, (uint8_t *[]){r0, NULL, NULL, NULL, NULL, NULL, NULL});
  assert_same_outputs(z, s, 2, "conv->flatten->dense shrunk vs zeroed");
  prunus_model_free(z);
  prunus_model_free(s);
  prunus_model_free(m);
}

static void test_masks_and_opt_state_move(void) {
  PrunusArch a = mlp_arch();
  PrunusModel *m = random_model(&a, 2, 5);
  for (size_t i = 0; i < m->n_params; i++) {
    m->mask[i] = (i % 3 == 0) ? 0.0f : 1.0f;
    m->opt_m[i] = (float)i;
    m->opt_v[i] = 0.5f * (float)i;
    m->grads[i] = 1.0f;
  }
  uint8_t r1[6] = {0, 1, 0, 0, 1, 0}, r3[5] = {1, 0, 0, 0, 0};
  const uint8_t *remove[6] = {NULL, r1, NULL, r3, NULL, NULL};
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink(m, remove, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  /* specific indices (layouts as in test_dense_mlp) */
  g_assert_cmpfloat(s->opt_m[8], ==, 16.0f); /* W1 row 1 = old row 2 */
  g_assert_cmpfloat(s->mask[8], ==, 1.0f);   /* 16 % 3 != 0 */
  g_assert_cmpfloat(s->opt_m[9], ==, 17.0f);
  g_assert_cmpfloat(s->mask[10], ==, 0.0f);   /* old 18 */
  g_assert_cmpfloat(s->opt_m[36], ==, 60.0f); /* W3[0,0] = old W3[1,0] */
  g_assert_cmpfloat(s->mask[36], ==, 0.0f);   /* 60 % 3 == 0 */
  g_assert_cmpfloat(s->opt_m[37], ==, 62.0f); /* old W3[1,2] */
  g_assert_cmpfloat(s->mask[37], ==, 1.0f);
  g_assert_cmpfloat(s->opt_m[56], ==, 90.0f); /* W5[0,0] = old W5[0,1] */
  g_assert_cmpfloat(s->mask[56], ==, 0.0f);
  g_assert_cmpfloat(s->opt_v[56], ==, 45.0f);
  g_assert_cmpfloat(s->opt_m[52], ==, 85.0f); /* b3[0] = old b3[1] */
  for (size_t k = 0; k < s->n_params; k++) {
    size_t o = (size_t)s->opt_m[k];
    g_assert_cmpfloat(s->mask[k], ==, m->mask[o]);
    g_assert_cmpfloat(s->opt_v[k], ==, m->opt_v[o]);
    g_assert_cmpfloat(s->params[k], ==, m->params[o]);
    g_assert_cmpfloat(s->grads[k], ==, 0.0f);
  }
  prunus_model_free(s);
  prunus_model_free(m);
}

static void test_errors(void) {
  PrunusArch a = mlp_arch();
  PrunusModel *m = random_model(&a, 1, 6);
  GError *error = NULL;
  float sentinel = 0.0f;
  float *extra_out[1] = {&sentinel}; /* must stay untouched on error */

  uint8_t r5[3] = {0, 1, 0};
  const uint8_t *out_remove[6] = {NULL, NULL, NULL, NULL, NULL, r5};
  const float *extra_in[1] = {m->params};
  g_assert_null(prunus_model_shrink(m, out_remove, extra_in, extra_out, 1, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID);
  testutil_assert_error_contains(error, "layer 5", "class outputs", NULL);
  g_assert_true(extra_out[0] == &sentinel);
  g_clear_error(&error);

  uint8_t all[5] = {1, 1, 1, 1, 1};
  const uint8_t *all_remove[6] = {NULL, NULL, NULL, all, NULL, NULL};
  g_assert_null(prunus_model_shrink(m, all_remove, NULL, NULL, 0, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID);
  testutil_assert_error_contains(error, "layer 3", "all 5 units", NULL);
  g_clear_error(&error);

  uint8_t relu[6] = {1, 0, 0, 0, 0, 0};
  const uint8_t *relu_remove[6] = {NULL, NULL, relu, NULL, NULL, NULL};
  g_assert_null(prunus_model_shrink(m, relu_remove, NULL, NULL, 0, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID);
  testutil_assert_error_contains(error, "layer 2", "relu", "no weights", NULL);
  g_clear_error(&error);
  prunus_model_free(m);
}

static void test_dead_units(void) {
  PrunusArch a = mlp_arch();
  PrunusModel *m = random_model(&a, 2, 7);
  const PrunusLayer *l1 = &m->layers[1], *l3 = &m->layers[3], *l5 = &m->layers[5];
  memset(m->mask + l1->w_off + 2 * 8, 0, 8 * sizeof(float)); /* unit 2 of layer 1: dead */
  memset(m->mask + l1->w_off + 4 * 8, 0, 7 * sizeof(float)); /* unit 4: one weight left */
  memset(m->mask + l3->w_off + 0 * 6, 0, 6 * sizeof(float)); /* unit 0 of layer 3: dead */
  memset(m->mask + l5->w_off + 1 * 5, 0, 5 * sizeof(float)); /* an output unit: not counted */
  prunus_model_apply_mask(m);
  uint8_t **dead = g_new0(uint8_t *, m->n_layers);
  int n = prunus_model_dead_units(m, dead);
  g_assert_cmpint(n, ==, 2);
  g_assert_null(dead[0]);
  g_assert_null(dead[2]);
  g_assert_null(dead[4]);
  const uint8_t want1[6] = {0, 0, 1, 0, 0, 0}, want3[5] = {1, 0, 0, 0, 0}, want5[3] = {0, 0, 0};
  g_assert_cmpmem(dead[1], 6, want1, 6);
  g_assert_cmpmem(dead[3], 5, want3, 5);
  g_assert_cmpmem(dead[5], 3, want5, 3);
  /* the result feeds prunus_model_shrink directly */
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink(m, (const uint8_t *const *)dead, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(s->arch.layers[1].units, ==, 5);
  g_assert_cmpint(s->arch.layers[3].units, ==, 4);
  PrunusModel *z = zeroed_reference(m, dead);
  assert_same_outputs(z, s, 2, "dead units removed vs zeroed");
  prunus_model_free(z);
  prunus_model_free(s);
  free_remove(dead, m->n_layers);
  prunus_model_free(m);
}

/* prunus_model_shrink_dead: dead units go; the constant a dead unit still outputs
 * (act(bias)) is folded into the next dense layer's bias, so the copy computes what
 * m computes; a dead conv channel feeding a conv (its constant meets zero padding
 * unevenly) stays. */
static void test_shrink_dead(void) {
  PrunusArch a = mlp_arch();
  PrunusModel *m = random_model(&a, 3, 8);
  const PrunusLayer *l1 = &m->layers[1], *l3 = &m->layers[3];
  memset(m->mask + l1->w_off + 2 * 8, 0, 8 * sizeof(float));
  m->params[l1->b_off + 2] = 0.7f; /* relu(0.7) reaches layer 3: folded */
  memset(m->mask + l1->w_off + 4 * 8, 0, 8 * sizeof(float));
  m->params[l1->b_off + 4] = -0.4f; /* relu(-0.4) = 0: removed as is */
  memset(m->mask + l3->w_off + 0 * 6, 0, 6 * sizeof(float));
  m->params[l3->b_off + 0] = 0.3f;
  prunus_model_apply_mask(m);
  GError *error = NULL;
  PrunusModel *s = prunus_model_shrink_dead(m, &error);
  g_assert_no_error(error);
  g_assert_cmpint(s->arch.layers[1].units, ==, 4);
  g_assert_cmpint(s->arch.layers[3].units, ==, 4);
  g_assert_cmpuint(s->n_params, ==, 8 * 4 + 4 + 4 * 4 + 4 + 4 * 3 + 3);
  assert_same_outputs(m, s, 3, "mlp: dead units folded and removed");
  /* without the folding the outputs move: the test above can tell */
  uint8_t **dead = g_new0(uint8_t *, m->n_layers);
  g_assert_cmpint(prunus_model_dead_units(m, dead), ==, 3);
  PrunusModel *plain = prunus_model_shrink(m, (const uint8_t *const *)dead, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  float *x = random_input(m, 3, 5);
  prunus_model_forward(m, x, 3);
  prunus_model_forward(plain, x, 3);
  g_assert_cmpfloat(testutil_max_rel_diff(m->acts[m->n_layers], plain->acts[plain->n_layers], 9,
                                          "mlp: dead units dropped, not folded"),
                    >, 1e-3);
  g_free(x);
  prunus_model_free(plain);
  free_remove(dead, m->n_layers);
  prunus_model_free(s);
  prunus_model_free(m);

  PrunusArch c = ARCH(1, 6, 6, CONV(3, 3, 1), RELU, CONV(2, 3, 1), RELU, FLATTEN, DENSE(3));
  m = random_model(&c, 2, 9);
  const PrunusLayer *c0 = &m->layers[0], *c2 = &m->layers[2];
  memset(m->mask + c0->w_off + 1 * 9, 0, 9 * sizeof(float));
  m->params[c0->b_off + 1] = 0.5f; /* into a padded conv: kept */
  memset(m->mask + c2->w_off + 0 * 27, 0, 27 * sizeof(float));
  m->params[c2->b_off + 0] = 0.6f; /* through relu and flatten into dense: folded */
  prunus_model_apply_mask(m);
  s = prunus_model_shrink_dead(m, &error);
  g_assert_no_error(error);
  g_assert_cmpint(s->arch.layers[0].channels, ==, 3);
  g_assert_cmpint(s->arch.layers[2].channels, ==, 1);
  g_assert_cmpint(s->layers[5].in.c, ==, 36);
  assert_same_outputs(m, s, 2, "conv: dead channel folded, padded one kept");
  prunus_model_free(s);
  prunus_model_free(m);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/shrink/dense-mlp", test_dense_mlp);
  g_test_add_func("/shrink/no-removal-is-copy", test_no_removal_is_copy);
  g_test_add_func("/shrink/conv-conv", test_conv_conv);
  g_test_add_func("/shrink/conv-flatten-dense", test_conv_flatten_dense);
  g_test_add_func("/shrink/masks-and-opt-state", test_masks_and_opt_state_move);
  g_test_add_func("/shrink/errors", test_errors);
  g_test_add_func("/shrink/dead-units", test_dead_units);
  g_test_add_func("/shrink/dead-folded", test_shrink_dead);
  return g_test_run();
}
