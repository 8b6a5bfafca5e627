/* test_groups.c: channel dependency groups of graph models (groups.c) and removing them
 * (shrink_graph.c): the groups of ResNet-8, ResNet-20 and a hand-made net with a concat
 * feeding an add (channel offsets) and a flatten; random group removals whose physically
 * shrunk network must compute the masked one's logits, with every channel of a removed
 * group exactly 0 in the masked network; removals that split a group or empty a layer. */
#include "config.h"
#include "groups.h"
#include "rng.h"
#include "shrink.h"
#include "shrink_graph.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

#define ARCH(c, h, w, ...)                                                                \
  ({                                                                                      \
    static PrunusLayerSpec specs_[] = {__VA_ARGS__};                                      \
    (PrunusArch){.input = {c, h, w}, .n_layers = G_N_ELEMENTS(specs_), .layers = specs_}; \
  })

#define BATCH 3

/* ------------------------------------------------------------------------ */
/* models */

static PrunusModel *config_model(const char *file) {
  char *path = g_build_filename(PRUNUS_SOURCE_ROOT, "configs", file, NULL);
  PrunusModel *m = testutil_config_model(path, BATCH, 3);
  g_free(path);
  return m;
}

/* conv a (3) -bn-relu-> conv b (2, bias, no bn); concat [a, b] (b at offset 3) + bn(conv d (5)
 * of the input) -> relu -> conv c (4) -> relu -> maxpool 2 -> flatten (4 x 16) -> dense 6 ->
 * relu -> dense 3. */
static PrunusModel *concat_model(void) {
  PrunusArch a =
      ARCH(1, 8, 8,
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "a",
            .channels = 3,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           {.type = PRUNUS_LAYER_BATCHNORM, .name = "a_bn", .momentum = 0.1f, .eps = 1e-5f},
           {.type = PRUNUS_LAYER_RELU, .name = "a_relu"},
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "b",
            .channels = 2,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           {.type = PRUNUS_LAYER_CONCAT, .name = "cat", .n_inputs = 2, .inputs = {2, 3}},
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "d",
            .channels = 5,
            .kernel = 1,
            .stride = 1,
            .no_bias = TRUE,
            .n_inputs = 1,
            .inputs = {PRUNUS_LAYER_INPUT}},
           {.type = PRUNUS_LAYER_BATCHNORM, .name = "d_bn", .momentum = 0.1f, .eps = 1e-5f},
           {.type = PRUNUS_LAYER_ADD, .name = "sum", .n_inputs = 2, .inputs = {4, 6}},
           {.type = PRUNUS_LAYER_RELU},
           {.type = PRUNUS_LAYER_CONV2D,
            .name = "c",
            .channels = 4,
            .kernel = 3,
            .stride = 1,
            .padding = 1},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2, .stride = 2},
           {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 6},
           {.type = PRUNUS_LAYER_RELU}, {.type = PRUNUS_LAYER_DENSE, .units = 3});
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&a, BATCH, 5, &error);
  g_assert_no_error(error);
  return m;
}

/* Biases, batchnorm scales, shifts and running statistics drawn away from their initial
 * 0 / 1, so that a removed channel whose shift were left alive would not output 0. */
static void randomise(PrunusModel *m, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    float *b = m->params + l->b_off;
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
      int C = l->out.c;
      float *mean = m->params + l->buf_off, *var = mean + C;
      for (int c = 0; c < C; c++) {
        b[c] = (float)(0.5 + prunus_rng_uniform(&r));          /* scale */
        b[C + c] = (float)(0.3 * prunus_rng_normal(&r) + 0.1); /* shift */
        mean[c] = (float)(0.2 * prunus_rng_normal(&r));
        var[c] = (float)(0.5 + prunus_rng_uniform(&r));
      }
    } else {
      for (size_t j = 0; j < l->b_len; j++) b[j] = (float)(0.2 * prunus_rng_normal(&r) + 0.05);
    }
  }
}

static float *random_input(const PrunusModel *m, uint64_t seed) {
  size_t n = (size_t)BATCH * prunus_model_input_size(m);
  float *x = g_new(float, n);
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = (float)prunus_rng_normal(&r);
  return x;
}

/* ------------------------------------------------------------------------ */
/* structure */

static char *describe(const PrunusGroups *g, const PrunusModel *m, int k) {
  return prunus_groups_describe_one(g, m, k);
}

static int find_layer(const PrunusModel *m, const char *name) {
  for (int i = 0; i < m->n_layers; i++)
    if (!strcmp(m->layers[i].name, name)) return i;
  g_error("no layer %s", name);
}

static void test_resnet8_groups(void) {
  PrunusModel *m = config_model("resnet8.cfg");
  PrunusGroups *g = prunus_groups_build(m);
  /* stem + layer1 residual 16, layer1 inner 16, layer2 inner 32, layer2 residual with its
   * projection 32, layer3 inner 64, layer3 residual 64 */
  g_assert_cmpint(g->n_groups, ==, 16 + 16 + 32 + 32 + 64 + 64);
  char *s = describe(g, m, 0);
  g_assert_cmpstr(s, ==,
                  "group 0: out conv1[0] layer1.0.conv2[0]; bn bn1[0] layer1.0.bn2[0]; in "
                  "layer1.0.conv1[in 0] layer2.0.conv1[in 0] layer2.0.shortcut[in 0]");
  g_free(s);
  s = describe(g, m, 16 + 5);
  g_assert_cmpstr(s, ==,
                  "group 21: out layer1.0.conv1[5]; bn layer1.0.bn1[5]; in layer1.0.conv2[in 5]");
  g_free(s);
  int stage2 = prunus_groups_unit(g, find_layer(m, "layer2.0.shortcut"), 7);
  g_assert_cmpint(stage2, ==, prunus_groups_unit(g, find_layer(m, "layer2.0.conv2"), 7));
  s = describe(g, m, stage2);
  g_assert_nonnull(strstr(s,
                          "out layer2.0.conv2[7] layer2.0.shortcut[7]; bn layer2.0.bn2[7] "
                          "layer2.0.shortcut_bn[7]; in layer3.0.conv1[in 7] "
                          "layer3.0.shortcut[in 7]"));
  g_free(s);
  s = describe(g, m, prunus_groups_unit(g, find_layer(m, "layer3.0.conv2"), 63));
  g_assert_nonnull(strstr(s, "out layer3.0.conv2[63] layer3.0.shortcut[63];"));
  g_assert_nonnull(strstr(s, "; in fc[in 63]"));
  g_free(s);
  for (int u = 0; u < 10; u++)
    g_assert_cmpint(prunus_groups_unit(g, find_layer(m, "fc"), u), ==, -1);
  prunus_groups_free(g);
  prunus_model_free(m);
}

static void test_resnet20_groups(void) {
  PrunusModel *m = config_model("resnet20.cfg");
  PrunusGroups *g = prunus_groups_build(m);
  /* per stage: one residual family shared by its 3 blocks (and the stem or projection),
   * 3 inner families */
  g_assert_cmpint(g->n_groups, ==, 4 * 16 + 4 * 32 + 4 * 64);
  char *s = describe(g, m, 3);
  g_assert_cmpstr(s, ==,
                  "group 3: out conv1[3] layer1.0.conv2[3] layer1.1.conv2[3] layer1.2.conv2[3]; "
                  "bn bn1[3] layer1.0.bn2[3] layer1.1.bn2[3] layer1.2.bn2[3]; in "
                  "layer1.0.conv1[in 3] layer1.1.conv1[in 3] layer1.2.conv1[in 3] "
                  "layer2.0.conv1[in 3] layer2.0.shortcut[in 3]");
  g_free(s);
  prunus_groups_free(g);
  prunus_model_free(m);
}

static void test_concat_groups(void) {
  PrunusModel *m = concat_model();
  PrunusGroups *g = prunus_groups_build(m);
  g_assert_cmpint(g->n_groups, ==, 3 + 2 + 4 + 6);
  static const char *const want[] = {
      "group 0: out a[0] d[0]; bn a_bn[0] d_bn[0]; in b[in 0] c[in 0]",
      "group 2: out a[2] d[2]; bn a_bn[2] d_bn[2]; in b[in 2] c[in 2]",
      /* b's channels sit at 3 and 4 of the concat, so they are d's 3 and 4 */
      "group 3: out b[0] d[3]; bn d_bn[3]; in c[in 3]",
      "group 4: out b[1] d[4]; bn d_bn[4]; in c[in 4]",
      /* after a 2x2 max-pool of 8x8 and a flatten: 16 columns per channel */
      "group 6: out c[1]; in 13[in 16-31]",
      "group 14: out 13[5]; in 15[in 5]",
  };
  static const int which[] = {0, 2, 3, 4, 6, 14};
  for (size_t k = 0; k < G_N_ELEMENTS(want); k++) {
    char *s = describe(g, m, which[k]);
    g_assert_cmpstr(s, ==, want[k]);
    g_free(s);
  }
  prunus_groups_free(g);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* random removals: shrunk = masked */

typedef struct {
  uint8_t **rm; /* [layer] (out.c) for conv2d / dense layers */
  uint8_t *group;
  int n_removed, n_coupled, n_offset;
} Removal;

/* Draw whole groups (each with probability 0.35, plus the forced ones) without emptying
 * a layer. */
static Removal draw_removal(const PrunusModel *m, const PrunusGroups *g, uint64_t seed,
                            const int *force, int n_force) {
  Removal r = {.rm = g_new0(uint8_t *, m->n_layers), .group = g_new0(uint8_t, g->n_groups)};
  int *left = g_new0(int, m->n_layers);
  for (int i = 0; i < m->n_layers; i++) {
    if (!m->layers[i].ops->has_params) continue;
    r.rm[i] = g_new0(uint8_t, m->layers[i].out.c);
    left[i] = m->layers[i].out.c;
  }
  PrunusRng rng;
  prunus_rng_seed(&rng, seed);
  for (int k = 0; k < g->n_groups; k++) {
    gboolean want = prunus_rng_uniform(&rng) < 0.35;
    for (int f = 0; f < n_force; f++) want |= force[f] == k;
    const PrunusGroup *gr = &g->groups[k];
    for (int j = 0; want && j < gr->n_producers; j++) want = left[gr->producers[j].layer] > 1;
    if (!want) continue;
    r.group[k] = 1;
    r.n_removed++;
    r.n_coupled += gr->n_producers > 1;
    for (int j = 0; j < gr->n_producers; j++) {
      left[gr->producers[j].layer]--;
      r.rm[gr->producers[j].layer][gr->producers[j].channel] = 1;
      r.n_offset += gr->producers[j].channel != gr->producers[0].channel;
    }
  }
  g_free(left);
  return r;
}

static void removal_clear(Removal *r, int n_layers) {
  for (int i = 0; i < n_layers; i++) g_free(r->rm[i]);
  g_free(r->rm);
  g_free(r->group);
}

/* Shrunk logits against masked logits; every channel of a removed group exactly 0 in the
 * masked model. Returns the max |difference| of the logits. */
static double check_removal(PrunusModel *m, const PrunusGroups *g, const Removal *r, const float *x,
                            const char *label) {
  GError *error = NULL;
  PrunusModel *masked = prunus_model_shrink(m, NULL, NULL, NULL, 0, &error); /* a copy */
  g_assert_no_error(error);
  g_assert_true(prunus_model_mask_units(masked, (const uint8_t *const *)r->rm, &error));
  g_assert_no_error(error);
  const float *extra_in[1] = {m->params};
  float *extra_out[1] = {NULL};
  PrunusModel *shrunk =
      prunus_model_shrink(m, (const uint8_t *const *)r->rm, extra_in, extra_out, 1, &error);
  g_assert_no_error(error);
  /* an extra slab moves as the parameters do */
  g_assert_cmpint(memcmp(extra_out[0], shrunk->params, sizeof(float) * shrunk->n_params), ==, 0);
  g_free(extra_out[0]);
  g_assert_cmpuint(shrunk->n_params, <, m->n_params);

  prunus_model_forward(masked, x, BATCH);
  prunus_model_forward(shrunk, x, BATCH);
  int K = prunus_model_n_classes(m);
  const float *a = masked->acts[masked->n_layers], *b = shrunk->acts[shrunk->n_layers];
  double worst = 0.0, scale = 0.0;
  for (int i = 0; i < BATCH * K; i++) {
    worst = fmax(worst, fabs((double)a[i] - b[i]));
    scale = fmax(scale, fabs((double)a[i]));
  }
  g_test_message(
      "%s: %d groups removed (%d coupled across layers), params %zu -> %zu, "
      "max |shrunk - masked| logit %.3e (logits up to %.3g)",
      label, r->n_removed, r->n_coupled, m->n_params, shrunk->n_params, worst, scale);
  g_assert_cmpfloat(scale, >, 0.1);
  g_assert_cmpfloat(worst, <=, 1e-5);

  /* every activation channel of a removed group is exactly 0 in the masked model */
  size_t zeros = 0;
  for (int s = 1; s < g->n_slots; s++) {
    const PrunusLayer *l = &masked->layers[s - 1];
    size_t plane = (size_t)l->out.h * l->out.w, per = prunus_shape_size(l->out);
    for (int c = 0; c < l->out.c; c++) {
      int gr = g->slot_group[g->slot_base[s] + (size_t)c];
      if (gr < 0 || !r->group[gr]) continue;
      for (int bb = 0; bb < BATCH; bb++)
        for (size_t p = 0; p < plane; p++) {
          float v = masked->acts[s][(size_t)bb * per + (size_t)c * plane + p];
          if (v != 0.0f)
            g_error("%s: slot of %s channel %d (group %d) is %g, not 0", label, l->name, c, gr, v);
          zeros++;
        }
    }
  }
  g_assert_cmpuint(zeros, >, 0);
  prunus_model_free(shrunk);
  prunus_model_free(masked);
  return worst;
}

/* want_offset: some removed group must tie channels at different indices (a concat). */
static void check_random_removals(PrunusModel *m, const char *label, const int *force, int n_force,
                                  gboolean want_offset) {
  randomise(m, 11);
  PrunusGroups *g = prunus_groups_build(m);
  float *x = random_input(m, 12);
  double worst = 0.0;
  int coupled = 0, offset = 0;
  for (uint64_t trial = 0; trial < 4; trial++) {
    Removal r = draw_removal(m, g, 100 + trial, force, n_force);
    char *what = g_strdup_printf("%s trial %d", label, (int)trial);
    worst = fmax(worst, check_removal(m, g, &r, x, what));
    coupled += r.n_coupled, offset += r.n_offset;
    g_free(what);
    removal_clear(&r, m->n_layers);
  }
  g_test_message("%s: worst max-abs over 4 trials %.3e", label, worst);
  g_assert_cmpint(coupled, >, 0);
  if (want_offset) g_assert_cmpint(offset, >, 0);
  g_free(x);
  prunus_groups_free(g);
}

/* The group of unit `unit` of the layer named `layer`. */
static int group_of(const PrunusModel *m, const PrunusGroups *g, const char *layer, int unit) {
  return prunus_groups_unit(g, find_layer(m, layer), unit);
}

static void test_resnet8_shrink(void) {
  PrunusModel *m = config_model("resnet8.cfg");
  PrunusGroups *g = prunus_groups_build(m);
  /* the stem's residual family, both projection-coupled families */
  int force[] = {group_of(m, g, "conv1", 2), group_of(m, g, "layer2.0.shortcut", 5),
                 group_of(m, g, "layer3.0.shortcut", 40)};
  prunus_groups_free(g);
  check_random_removals(m, "resnet8", force, G_N_ELEMENTS(force), FALSE);
  prunus_model_free(m);
}

static void test_resnet20_shrink(void) {
  PrunusModel *m = config_model("resnet20.cfg");
  PrunusGroups *g = prunus_groups_build(m);
  int force[] = {group_of(m, g, "layer1.2.conv2", 9), group_of(m, g, "layer2.0.shortcut", 1),
                 group_of(m, g, "layer3.2.conv2", 63)};
  prunus_groups_free(g);
  check_random_removals(m, "resnet20", force, G_N_ELEMENTS(force), FALSE);
  prunus_model_free(m);
}

static void test_concat_shrink(void) {
  PrunusModel *m = concat_model();
  /* a[1] with d[1]; b[1] with d[4] (offset 3 in the concat); c[2] before the flatten */
  int force[] = {1, 4, 7};
  check_random_removals(m, "concat", force, G_N_ELEMENTS(force), TRUE);
  prunus_model_free(m);
}

/* Max |a - b| over the logits of two models' last forwards, checking they are not all
 * near 0. */
static double logit_diff(const PrunusModel *a, const PrunusModel *b) {
  const float *la = a->acts[a->n_layers], *lb = b->acts[b->n_layers];
  double worst = 0.0, scale = 0.0;
  for (int i = 0; i < BATCH * prunus_model_n_classes(a); i++) {
    worst = fmax(worst, fabs((double)la[i] - lb[i]));
    scale = fmax(scale, fabs((double)la[i]));
  }
  g_assert_cmpfloat(scale, >, 0.1);
  return worst;
}

/* prunus_model_shrink_dead on a graph masked by whole groups (prunus_model_mask_units):
 * exactly those groups go (the same parameters as prunus_model_shrink of the removal),
 * the logits are the masked model's; a group with one live batchnorm shift stays. */
static void test_shrink_dead_graph(void) {
  PrunusModel *m = config_model("resnet8.cfg");
  randomise(m, 21);
  PrunusGroups *g = prunus_groups_build(m);
  float *x = random_input(m, 22);
  int force[] = {group_of(m, g, "conv1", 3), group_of(m, g, "layer2.0.shortcut", 7),
                 group_of(m, g, "layer3.0.conv1", 11)};
  Removal r = draw_removal(m, g, 23, force, G_N_ELEMENTS(force));
  GError *error = NULL;
  PrunusModel *masked = prunus_model_shrink(m, NULL, NULL, NULL, 0, &error);
  g_assert_true(prunus_model_mask_units(masked, (const uint8_t *const *)r.rm, &error));
  PrunusModel *want = prunus_model_shrink(m, (const uint8_t *const *)r.rm, NULL, NULL, 0, &error);
  g_assert_no_error(error);
  PrunusModel *dead = prunus_model_shrink_dead(masked, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(dead->n_params, ==, want->n_params);
  g_assert_cmpuint(dead->n_params, <, m->n_params);
  for (int i = 0; i < dead->n_layers; i++)
    g_assert_cmpint(dead->layers[i].out.c, ==, want->layers[i].out.c);
  prunus_model_forward(masked, x, BATCH);
  prunus_model_forward(dead, x, BATCH);
  double d1 = logit_diff(masked, dead);
  g_test_message("resnet8: %d groups dead, params %zu -> %zu, max |shrunk - masked| %.3e",
                 r.n_removed, masked->n_params, dead->n_params, d1);
  g_assert_cmpfloat(d1, <=, 1e-5);

  /* the stem's group 3 with a live shift in bn1: its channel outputs relu(beta), so it
   * stays, as do its coupled layers' channels */
  int bn1 = find_layer(m, "bn1");
  const PrunusLayer *bn = &masked->layers[bn1];
  masked->mask[bn->b_off + bn->out.c + 3] = 1.0f;
  masked->params[bn->b_off + bn->out.c + 3] = 0.5f;
  PrunusModel *kept = prunus_model_shrink_dead(masked, &error);
  g_assert_no_error(error);
  g_assert_cmpint(kept->layers[0].out.c, ==, want->layers[0].out.c + 1);
  g_assert_cmpuint(kept->n_params, >, want->n_params);
  prunus_model_forward(masked, x, BATCH);
  prunus_model_forward(kept, x, BATCH);
  double d2 = logit_diff(masked, kept);
  g_test_message("resnet8, one live shift: params %zu, max |shrunk - masked| %.3e", kept->n_params,
                 d2);
  g_assert_cmpfloat(d2, <=, 1e-5);

  /* nothing dead: a copy of the same size */
  PrunusModel *same = prunus_model_shrink_dead(m, &error);
  g_assert_cmpuint(same->n_params, ==, m->n_params);
  prunus_model_free(same), prunus_model_free(kept), prunus_model_free(dead);
  prunus_model_free(want), prunus_model_free(masked);
  removal_clear(&r, m->n_layers);
  g_free(x);
  prunus_groups_free(g);
  prunus_model_free(m);
}

/* A zero scale alone is not a removal: the shift still comes out (the reason the shift is
 * masked too). */
static void test_shift_matters(void) {
  PrunusModel *m = concat_model();
  randomise(m, 11);
  float *x = random_input(m, 12);
  int a_bn = find_layer(m, "a_bn");
  const PrunusLayer *bn = &m->layers[a_bn];
  m->params[bn->b_off + 1] = 0.0f; /* scale of channel 1 only */
  prunus_model_forward(m, x, BATCH);
  float beta = m->params[bn->b_off + bn->out.c + 1];
  g_assert_cmpfloat(fabsf(beta), >, 0.0f);
  g_assert_cmpfloat(m->acts[a_bn + 1][64], ==, beta); /* sample 0, channel 1, pixel 0 */
  /* the mask of a removed group holds both */
  PrunusGroups *g = prunus_groups_build(m);
  uint8_t *rm[16] = {NULL};
  uint8_t a_rm[3] = {0, 1, 0}, d_rm[5] = {0, 1, 0, 0, 0};
  rm[0] = a_rm, rm[5] = d_rm;
  GError *error = NULL;
  g_assert_true(prunus_model_mask_units(m, (const uint8_t *const *)rm, &error));
  g_assert_no_error(error);
  g_assert_cmpfloat(m->mask[bn->b_off + 1], ==, 0.0f);
  g_assert_cmpfloat(m->mask[bn->b_off + bn->out.c + 1], ==, 0.0f);
  g_assert_cmpfloat(m->mask[bn->b_off + bn->out.c + 0], ==, 1.0f);
  g_assert_cmpfloat(m->mask[m->layers[0].b_off + 1], ==, 0.0f); /* a's bias */
  prunus_model_forward(m, x, BATCH);
  g_assert_cmpfloat(m->acts[a_bn + 1][64], ==, 0.0f);
  prunus_groups_free(g);
  g_free(x);
  prunus_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* bad removals */

static void test_bad_removals(void) {
  PrunusModel *m = config_model("resnet8.cfg");
  uint8_t **rm = g_new0(uint8_t *, m->n_layers);
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params) rm[i] = g_new0(uint8_t, m->layers[i].out.c);
  GError *error = NULL;
  /* the stem's channel 4 without layer1.0.conv2's */
  rm[find_layer(m, "conv1")][4] = 1;
  PrunusModel *s = prunus_model_shrink(m, (const uint8_t *const *)rm, NULL, NULL, 0, &error);
  g_assert_null(s);
  testutil_assert_error_contains(error, "splits coupled group 4",
                                 "removes unit 4 of layer conv1 but keeps unit 4 of layer "
                                 "layer1.0.conv2",
                                 NULL);
  g_clear_error(&error);
  float before = m->mask[m->layers[0].w_off + 4 * 9];
  g_assert_false(prunus_model_mask_units(m, (const uint8_t *const *)rm, &error));
  g_assert_cmpfloat(m->mask[m->layers[0].w_off + 4 * 9], ==, before); /* nothing applied */
  g_clear_error(&error);
  /* every unit of layer1.0.conv1 */
  rm[find_layer(m, "conv1")][4] = 0;
  int inner = find_layer(m, "layer1.0.conv1");
  memset(rm[inner], 1, 16);
  g_assert_null(prunus_model_shrink(m, (const uint8_t *const *)rm, NULL, NULL, 0, &error));
  testutil_assert_error_contains(error, "removes all 16 units of layer layer1.0.conv1",
                                 "the last with group 31", "refusing to empty", NULL);
  g_clear_error(&error);
  memset(rm[inner], 0, 16);
  /* a class output */
  rm[find_layer(m, "fc")][3] = 1;
  g_assert_null(prunus_model_shrink(m, (const uint8_t *const *)rm, NULL, NULL, 0, &error));
  testutil_assert_error_contains(error, "unit 3 of layer fc", "output", NULL);
  g_clear_error(&error);
  for (int i = 0; i < m->n_layers; i++) g_free(rm[i]);
  g_free(rm);
  prunus_model_free(m);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/groups/resnet8", test_resnet8_groups);
  g_test_add_func("/groups/resnet20", test_resnet20_groups);
  g_test_add_func("/groups/concat-offsets", test_concat_groups);
  g_test_add_func("/groups/shrink/resnet8", test_resnet8_shrink);
  g_test_add_func("/groups/shrink/resnet20", test_resnet20_shrink);
  g_test_add_func("/groups/shrink/concat", test_concat_shrink);
  g_test_add_func("/groups/shift-matters", test_shift_matters);
  g_test_add_func("/groups/shrink-dead", test_shrink_dead_graph);
  g_test_add_func("/groups/bad-removals", test_bad_removals);
  return g_test_run();
}
