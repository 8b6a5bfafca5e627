/* test_plugins.c: unit tests for the built-in plugins (plugins/), loaded with
 * dlopen from PRUNUS_TEST_PLUGIN_DIR and driven through a fake host against
 * hand-computed values; also checks the broken loader fixtures are what they claim. */
#include "fakehost.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

// ----------------------------------------------------------------------------
// Loading plugins from the build tree

typedef struct {
  void *dl;
  const PrunusPluginDesc *desc;
} Loaded;

/* (transfer full) The path of file name under dir or its sub-folders, or NULL. */
static char *find_file(const char *dir, const char *name) {
  char *direct = g_build_filename(dir, name, NULL);
  if (g_file_test(direct, G_FILE_TEST_IS_REGULAR)) return direct;
  g_free(direct);
  GDir *d = g_dir_open(dir, 0, NULL);
  if (!d) return NULL;
  char *found = NULL;
  const char *entry;
  while (!found && (entry = g_dir_read_name(d))) {
    char *child = g_build_filename(dir, entry, NULL);
    if (g_file_test(child, G_FILE_TEST_IS_DIR) && !g_file_test(child, G_FILE_TEST_IS_SYMLINK))
      found = find_file(child, name);
    g_free(child);
  }
  g_dir_close(d);
  return found;
}

static char *plugin_path(const char *env, const char *name) {
  const char *dir = g_getenv(env);
  if (!dir) g_error("%s is not set (run through meson test)", env);
  char *file = g_strdup_printf("prunus-%s.so", name);
  char *path = find_file(dir, file);
  if (!path) g_error("%s not found under %s", file, dir);
  g_free(file);
  return path;
}

static gboolean name_is_valid(const char *name) {
  if (!name || !*name) return FALSE;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) return FALSE;
  return TRUE;
}

/* Load prunus-<name>.so and check its descriptor is well-formed and of kind. */
static Loaded plugin_load(const char *name, PrunusPluginKind kind) {
  char *path = plugin_path("PRUNUS_TEST_PLUGIN_DIR", name);
  Loaded l = {0};
  l.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!l.dl) g_error("dlopen %s: %s", path, dlerror());
  PrunusPluginDescribeFn describe = (PrunusPluginDescribeFn)dlsym(l.dl, PRUNUS_PLUGIN_ENTRY_SYMBOL);
  g_assert_nonnull(describe);
  l.desc = describe(0);
  g_assert_nonnull(l.desc);
  g_assert_null(describe(1));
  g_assert_cmpuint(l.desc->abi_version, ==, PRUNUS_PLUGIN_ABI_VERSION);
  g_assert_cmpuint(l.desc->size, ==, sizeof(PrunusPluginDesc));
  /* the retrain plugins and the post-training ones (obd, wanda, sparsegpt, nm) set
   * ops_size with PRUNUS_PLUGIN_OPS; the other criteria and granularities keep
   * their revision-1 sources (0 = revision 1's table size) */
  if (kind == PRUNUS_PLUGIN_RETRAIN)
    g_assert_cmpuint(l.desc->ops_size, ==, sizeof(PrunusRetrainOps));
  else if (l.desc->ops_size != 0)
    g_assert_cmpuint(l.desc->ops_size, ==,
                     kind == PRUNUS_PLUGIN_CRITERION ? sizeof(PrunusCriterionOps)
                                                     : sizeof(PrunusGranularityOps));
  g_assert_cmpint(l.desc->kind, ==, kind);
  g_assert_cmpstr(l.desc->name, ==, name);
  g_assert_true(name_is_valid(l.desc->name));
  g_assert_nonnull(l.desc->version);
  g_assert_nonnull(l.desc->summary);
  g_assert_nonnull(l.desc->create);
  g_assert_true((l.desc->criterion != NULL) == (kind == PRUNUS_PLUGIN_CRITERION));
  g_assert_true((l.desc->granularity != NULL) == (kind == PRUNUS_PLUGIN_GRANULARITY));
  g_assert_true((l.desc->retrain != NULL) == (kind == PRUNUS_PLUGIN_RETRAIN));
  g_free(path);
  return l;
}

static void plugin_unload(Loaded *l) {
  g_assert_cmpint(dlclose(l->dl), ==, 0);
  l->dl = NULL;
}

/* create() must succeed and read every key it was given. */
static void *plugin_create_ok(const Loaded *l, PrunusHost *host) {
  void *state = NULL;
  const int rc = l->desc->create(host, fakehost_services(host), &state);
  if (rc != 0) g_error("%s create failed: %s", l->desc->name, fakehost_error(host));
  g_assert_null(fakehost_error(host));
  g_assert_null(fakehost_unread_key(host));
  return state;
}

static void plugin_destroy(const Loaded *l, void *state) {
  if (l->desc->destroy) l->desc->destroy(state);
}

/* create() must fail with a message holding every needle. */
static void plugin_create_fails(const Loaded *l, PrunusHost *host, const char *needle1,
                                const char *needle2) {
  void *state = NULL;
  const int rc = l->desc->create(host, fakehost_services(host), &state);
  g_assert_cmpint(rc, !=, 0);
  const char *msg = fakehost_error(host);
  g_assert_nonnull(msg);
  g_test_message("%s: %s", l->desc->name, msg);
  g_assert_nonnull(strstr(msg, needle1));
  if (needle2) g_assert_nonnull(strstr(msg, needle2));
}

/* create() with key = value must fail with exactly `message`. */
static void plugin_create_fails_exactly(const char *name, PrunusPluginKind kind, const char *key,
                                        const char *value, const char *message) {
  Loaded l = plugin_load(name, kind);
  PrunusHost *h = fakehost_new(1, kind == PRUNUS_PLUGIN_RETRAIN);
  fakehost_set(h, key, value);
  plugin_create_fails(&l, h, message, NULL);
  g_assert_cmpstr(fakehost_error(h), ==, message);
  fakehost_free(h);
  plugin_unload(&l);
}

static void plugin_create_fails_with(const char *name, PrunusPluginKind kind, const char *key,
                                     const char *value, const char *needle2) {
  Loaded l = plugin_load(name, kind);
  PrunusHost *h = fakehost_new(1, kind == PRUNUS_PLUGIN_RETRAIN);
  fakehost_set(h, key, value);
  plugin_create_fails(&l, h, key, needle2);
  fakehost_free(h);
  plugin_unload(&l);
}

// ----------------------------------------------------------------------------
// A hand-made model: up to 3 layers of at most 8 x 8 weights

#define MAX_LAYERS 3
#define MAX_W 64

typedef struct {
  PrunusLayerView layers[MAX_LAYERS];
  PrunusModelView view;
  char names[MAX_LAYERS][8];
  float w[MAX_LAYERS][MAX_W];
  float b[MAX_LAYERS][8];
  float mask[MAX_LAYERS][MAX_W];
  /* scores and plan buffers the host would allocate */
  float ws[MAX_LAYERS][MAX_W];
  float us[MAX_LAYERS][8];
  uint8_t rw[MAX_LAYERS][MAX_W];
  uint8_t ru[MAX_LAYERS][8];
  float *ws_ptr[MAX_LAYERS];
  float *us_ptr[MAX_LAYERS];
  uint8_t *rw_ptr[MAX_LAYERS];
  uint8_t *ru_ptr[MAX_LAYERS];
} Model;

/* Layers l of n_units x fan_in, dense, prunable, the last one the output; all
 * masks 1; names "1", "3", "5" (positions in a sequence with ReLUs between). */
static void model_init(Model *m, int n_layers, const int *units, const int *fan_in) {
  memset(m, 0, sizeof *m);
  g_assert_cmpint(n_layers, <=, MAX_LAYERS);
  for (int l = 0; l < n_layers; l++) {
    g_assert_cmpint(units[l] * fan_in[l], <=, MAX_W);
    g_snprintf(m->names[l], sizeof m->names[l], "%d", 2 * l + 1);
    for (int i = 0; i < MAX_W; i++) m->mask[l][i] = 1.0f;
    m->layers[l] = (PrunusLayerView){.name = m->names[l],
                                     .type = "dense",
                                     .index = 2 * l + 1,
                                     .n_units = units[l],
                                     .fan_in = fan_in[l],
                                     .n_weights = (size_t)units[l] * (size_t)fan_in[l],
                                     .positions = 1,
                                     .prunable = 1,
                                     .is_output = l == n_layers - 1,
                                     .weights = m->w[l],
                                     .bias = m->b[l],
                                     .mask = m->mask[l]};
    m->ws_ptr[l] = m->ws[l];
    m->us_ptr[l] = m->us[l];
    m->rw_ptr[l] = m->rw[l];
    m->ru_ptr[l] = m->ru[l];
  }
  m->view.n_layers = n_layers;
  m->view.layers = m->layers;
}

static PrunusScores model_scores(Model *m, gboolean with_units) {
  return (PrunusScores){.weight_scores = m->ws_ptr, .unit_scores = with_units ? m->us_ptr : NULL};
}

static PrunusPlan model_plan(Model *m) {
  memset(m->rw, 0, sizeof m->rw);
  memset(m->ru, 0, sizeof m->ru);
  return (PrunusPlan){.remove_weights = m->rw_ptr, .remove_units = m->ru_ptr};
}

/* The removed indices of layer l as "i,j,k" for readable assertions. */
static char *removed_weights(const Model *m, int l) {
  GString *s = g_string_new(NULL);
  for (size_t i = 0; i < m->layers[l].n_weights; i++)
    if (m->rw[l][i]) g_string_append_printf(s, "%s%zu", s->len ? "," : "", i);
  return g_string_free(s, FALSE);
}

static char *removed_units(const Model *m, int l) {
  GString *s = g_string_new(NULL);
  for (int u = 0; u < m->layers[l].n_units; u++)
    if (m->ru[l][u]) g_string_append_printf(s, "%s%d", s->len ? "," : "", u);
  return g_string_free(s, FALSE);
}

#define assert_removed(fn, m, l, expected) \
  do {                                     \
    char *got_ = fn(m, l);                 \
    g_assert_cmpstr(got_, ==, expected);   \
    g_free(got_);                          \
  } while (0)

// ----------------------------------------------------------------------------
// Criterion: magnitude

/* Layer "1": 2 units x 3 inputs, weight 2 pruned; layer "3" (output): 2 x 2. */
static void magnitude_model(Model *m) {
  static const int units[] = {2, 2}, fan_in[] = {3, 2};
  model_init(m, 2, units, fan_in);
  static const float w0[] = {1, -2, 3, -0.5f, 0.5f, 4}, w1[] = {3, -4, 0, 1};
  memcpy(m->w[0], w0, sizeof w0);
  memcpy(m->w[1], w1, sizeof w1);
  m->mask[0][2] = 0.0f;
}

static void run_magnitude(Model *m, const char *unit_norm) {
  Loaded l = plugin_load("magnitude", PRUNUS_PLUGIN_CRITERION);
  PrunusHost *h = fakehost_new(1, FALSE);
  if (unit_norm) fakehost_set(h, "unit_norm", unit_norm);
  void *state = plugin_create_ok(&l, h);
  g_assert_cmpuint(l.desc->criterion->needs(state), ==, PRUNUS_NEED_WEIGHTS);
  g_assert_cmpuint(l.desc->criterion->produces(state), ==,
                   PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT);
  PrunusScores scores = model_scores(m, TRUE);
  g_assert_cmpint(l.desc->criterion->score(state, &m->view, &scores), ==, 0);
  plugin_destroy(&l, state);
  fakehost_free(h);
  plugin_unload(&l);
}

static void test_magnitude_weight_scores(void) {
  Model m;
  magnitude_model(&m);
  run_magnitude(&m, NULL);
  static const float e0[] = {1, 2, 3, 0.5f, 0.5f, 4}, e1[] = {3, 4, 0, 1};
  for (int i = 0; i < 6; i++) g_assert_cmpfloat_with_epsilon(m.ws[0][i], e0[i], 1e-6);
  for (int i = 0; i < 4; i++) g_assert_cmpfloat_with_epsilon(m.ws[1][i], e1[i], 1e-6);
}

static void test_magnitude_unit_l2(void) {
  Model m;
  magnitude_model(&m);
  run_magnitude(&m, NULL); /* l2 is the default */
  /* unit 0 of layer "1": sqrt(1 + 4), the pruned 3 left out */
  g_assert_cmpfloat_with_epsilon(m.us[0][0], sqrt(5.0), 1e-6);
  g_assert_cmpfloat_with_epsilon(m.us[0][1], sqrt(16.5), 1e-6);
  g_assert_cmpfloat_with_epsilon(m.us[1][0], 5.0, 1e-6);
  g_assert_cmpfloat_with_epsilon(m.us[1][1], 1.0, 1e-6);
  magnitude_model(&m);
  run_magnitude(&m, "l2");
  g_assert_cmpfloat_with_epsilon(m.us[0][0], sqrt(5.0), 1e-6);
}

static void test_magnitude_unit_l1(void) {
  Model m;
  magnitude_model(&m);
  run_magnitude(&m, "l1");
  g_assert_cmpfloat_with_epsilon(m.us[0][0], 3.0, 1e-6);
  g_assert_cmpfloat_with_epsilon(m.us[0][1], 5.0, 1e-6);
  g_assert_cmpfloat_with_epsilon(m.us[1][0], 7.0, 1e-6);
  g_assert_cmpfloat_with_epsilon(m.us[1][1], 1.0, 1e-6);
}

static void test_magnitude_bad_norm(void) {
  plugin_create_fails_with("magnitude", PRUNUS_PLUGIN_CRITERION, "unit_norm", "l3", "l3");
}

// ----------------------------------------------------------------------------
// Criterion: random

static void run_random(Model *m, uint64_t seed) {
  Loaded l = plugin_load("random", PRUNUS_PLUGIN_CRITERION);
  PrunusHost *h = fakehost_new(seed, FALSE);
  void *state = plugin_create_ok(&l, h);
  g_assert_cmpuint(l.desc->criterion->needs(state), ==, PRUNUS_NEED_WEIGHTS);
  g_assert_cmpuint(l.desc->criterion->produces(state), ==,
                   PRUNUS_SCORES_WEIGHT | PRUNUS_SCORES_UNIT);
  PrunusScores scores = model_scores(m, TRUE);
  g_assert_cmpint(l.desc->criterion->score(state, &m->view, &scores), ==, 0);
  plugin_destroy(&l, state);
  fakehost_free(h);
  plugin_unload(&l);
}

static void test_random_range_and_seed(void) {
  Model a, b, c;
  magnitude_model(&a);
  magnitude_model(&b);
  magnitude_model(&c);
  run_random(&a, 42);
  run_random(&b, 42);
  run_random(&c, 43);
  g_assert_cmpmem(a.ws, sizeof a.ws, b.ws, sizeof b.ws);
  g_assert_cmpmem(a.us, sizeof a.us, b.us, sizeof b.us);
  int differ = 0, distinct = 0;
  for (int l = 0; l < 2; l++) {
    for (size_t i = 0; i < a.layers[l].n_weights; i++) {
      g_assert_cmpfloat(a.ws[l][i], >=, 0.0f);
      g_assert_cmpfloat(a.ws[l][i], <, 1.0f);
      differ += a.ws[l][i] != c.ws[l][i];
      distinct += i > 0 && a.ws[l][i] != a.ws[l][i - 1];
    }
    for (int u = 0; u < a.layers[l].n_units; u++) {
      g_assert_cmpfloat(a.us[l][u], >=, 0.0f);
      g_assert_cmpfloat(a.us[l][u], <, 1.0f);
    }
  }
  g_assert_cmpint(differ, >, 0);   /* another seed, other scores */
  g_assert_cmpint(distinct, >, 0); /* not one constant */
  /* the first weight score is the stream's first draw */
  uint64_t s = 42;
  const double first = (double)(fakehost_splitmix64(&s) >> 11) * 0x1.0p-53;
  g_assert_cmpfloat_with_epsilon(a.ws[0][0], first, 1e-7);
}

// ----------------------------------------------------------------------------
// Granularity: weight

/* Layer "1": 2 x 3, weight 4 already pruned (its score 0 must not count);
 * layer "3" (output): 2 x 2. Alive scores, low to high:
 * 0.1 (1:1) 0.2 (3:0) 0.3 (1:3) 0.4 (3:2) 0.5 (1:2) 0.6 (3:3) 0.7 (1:5) 0.8 (3:1) 0.9 (1:0) */
static void weight_model(Model *m) {
  static const int units[] = {2, 2}, fan_in[] = {3, 2};
  model_init(m, 2, units, fan_in);
  static const float s0[] = {0.9f, 0.1f, 0.5f, 0.3f, 0.0f, 0.7f}, s1[] = {0.2f, 0.8f, 0.4f, 0.6f};
  memcpy(m->ws[0], s0, sizeof s0);
  memcpy(m->ws[1], s1, sizeof s1);
  m->mask[0][4] = 0.0f;
}

typedef struct {
  Loaded l;
  PrunusHost *h;
  void *state;
} Instance;

static Instance instance_new(const char *name, PrunusPluginKind kind) {
  Instance in;
  in.l = plugin_load(name, kind);
  in.h = fakehost_new(7, kind == PRUNUS_PLUGIN_RETRAIN);
  in.state = NULL;
  return in;
}

static void instance_create(Instance *in) { in->state = plugin_create_ok(&in->l, in->h); }

static void instance_free(Instance *in) {
  plugin_destroy(&in->l, in->state);
  fakehost_free(in->h);
  plugin_unload(&in->l);
}

static int weight_plan(Instance *in, Model *m, PrunusScope scope, double amount,
                       const double *layer_amount, const double *max_sparsity) {
  PrunusScores scores = model_scores(m, FALSE);
  PrunusPlan plan = model_plan(m);
  const PrunusPlanRequest req = {
      .scope = scope, .layer_amount = layer_amount, .amount = amount, .max_sparsity = max_sparsity};
  return in->l.desc->granularity->plan(in->state, &m->view, &scores, &req, &plan);
}

static void test_weight_global(void) {
  Instance in = instance_new("weight", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  g_assert_cmpuint(in.l.desc->granularity->accepts(in.state), ==, PRUNUS_SCORES_WEIGHT);
  Model m;
  weight_model(&m);
  const double la[] = {1, 1}, ms[] = {1, 1};
  /* 9 alive weights: round(0.5 * 9) = 5 lowest, the masked one not counted */
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "1,2,3");
  assert_removed(removed_weights, &m, 1, "0,2");
  /* the host may leave layer_amount and max_sparsity out: the same plan */
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.5, NULL, NULL), ==, 0);
  assert_removed(removed_weights, &m, 0, "1,2,3");
  assert_removed(removed_weights, &m, 1, "0,2");
  /* amount 0: nothing */
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.0, la, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "");
  assert_removed(removed_weights, &m, 1, "");
  instance_free(&in);
}

static void test_weight_layer_amount(void) {
  Instance in = instance_new("weight", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  weight_model(&m);
  /* output layer at half rate (lottery ticket): layer "1" alone at 0.5 of 5 alive
   * = round(2.5) = 3; layer "3" at 0.25 of 4 = 1 */
  const double half[] = {1, 0.5}, ms[] = {1, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.5, half, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "1,2,3");
  assert_removed(removed_weights, &m, 1, "0");
  /* layer_amount 0 skips the layer */
  const double skip[] = {1, 0};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.5, skip, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "1,2,3");
  assert_removed(removed_weights, &m, 1, "");
  /* not prunable: skipped whatever layer_amount says */
  m.layers[0].prunable = 0;
  const double all[] = {1, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.5, all, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "");
  assert_removed(removed_weights, &m, 1, "0,2");
  instance_free(&in);
}

static void test_weight_layer_scope(void) {
  Instance in = instance_new("weight", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  weight_model(&m);
  /* round(0.4 * 5) = 2 of layer "1"; round(0.5 * 4) = 2 of layer "3" */
  const double la[] = {0.4, 0.5}, ms[] = {1, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_LAYER, 0.9, la, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "1,3");
  assert_removed(removed_weights, &m, 1, "0,2");
  instance_free(&in);
}

static void test_weight_max_sparsity(void) {
  Instance in = instance_new("weight", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  weight_model(&m);
  /* layer "1" may reach 50% of its 6 weights: 3 must stay alive, so of its 5
   * alive only 2 go; the 5th removal moves on to layer "3"'s next lowest */
  const double la[] = {1, 1}, ms[] = {0.5, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "1,3");
  assert_removed(removed_weights, &m, 1, "0,2,3");
  /* a layer already at its cap loses nothing (layer scope) */
  const double la2[] = {0.5, 0}, cap[] = {1.0 / 6.0, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_LAYER, 0.5, la2, cap), ==, 0);
  assert_removed(removed_weights, &m, 0, "");
  instance_free(&in);
}

static void test_weight_ties(void) {
  Instance in = instance_new("weight", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  weight_model(&m);
  for (int i = 0; i < 6; i++) m.ws[0][i] = 0.25f;
  /* all equal: the lowest alive indices go first (4 is masked) */
  const double la[] = {0.8, 0}, ms[] = {1, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_LAYER, 0, la, ms), ==, 0);
  assert_removed(removed_weights, &m, 0, "0,1,2,3");
  instance_free(&in);
}

static void test_weight_refuses_empty(void) {
  Instance in = instance_new("weight", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  weight_model(&m);
  const double la[] = {1, 1}, ms[] = {1, 1};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_GLOBAL, 1.0, la, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(in.h), "layer 1"));
  fakehost_clear_error(in.h);
  const double la2[] = {0.5, 1.0};
  g_assert_cmpint(weight_plan(&in, &m, PRUNUS_SCOPE_LAYER, 0, la2, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(in.h), "layer 3"));
  instance_free(&in);
}

// ----------------------------------------------------------------------------
// Granularity: neuron

/* Layer "1": 4 units x 2 inputs, layer "3": 2 units x 4, output "5": 2 x 2. Unit
 * scores "1" = 4 1 3 2 (mean 2.5 -> 1.6 0.4 1.2 0.8), "3" = 10 30 (mean 20 ->
 * 0.5 1.5); the output's 0 0 must never be used. */
static void neuron_model(Model *m) {
  static const int units[] = {4, 2, 2}, fan_in[] = {2, 4, 2};
  model_init(m, 3, units, fan_in);
  static const float u0[] = {4, 1, 3, 2}, u1[] = {10, 30};
  memcpy(m->us[0], u0, sizeof u0);
  memcpy(m->us[1], u1, sizeof u1);
}

static int neuron_plan(Instance *in, Model *m, gboolean with_units, PrunusScope scope,
                       double amount, const double *layer_amount, const double *max_sparsity) {
  PrunusScores scores = model_scores(m, with_units);
  PrunusPlan plan = model_plan(m);
  const PrunusPlanRequest req = {
      .scope = scope, .layer_amount = layer_amount, .amount = amount, .max_sparsity = max_sparsity};
  return in->l.desc->granularity->plan(in->state, &m->view, &scores, &req, &plan);
}

static void test_neuron_unit_scores_global(void) {
  Instance in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  g_assert_cmpuint(in.l.desc->granularity->accepts(in.state), ==,
                   PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT);
  Model m;
  neuron_model(&m);
  const double la[] = {1, 1, 1}, ms[] = {1, 1, 1};
  /* 6 hidden units, round(0.5 * 6) = 3; normalized: 0.4 (1:1) 0.5 (3:0) 0.8 (1:3) */
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "1,3");
  assert_removed(removed_units, &m, 1, "0");
  assert_removed(removed_units, &m, 2, "");
  assert_removed(removed_weights, &m, 0, ""); /* units only */
  instance_free(&in);

  /* normalize = false: raw scores, so the narrow-fan-in layer "1" loses all 3 */
  in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
  fakehost_set(in.h, "normalize", "false");
  instance_create(&in);
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "1,2,3");
  assert_removed(removed_units, &m, 1, "");
  assert_removed(removed_units, &m, 2, "");
  instance_free(&in);
}

static void test_neuron_never_output(void) {
  Instance in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  neuron_model(&m);
  /* layer scope asks for half of every layer, the output included */
  const double la[] = {0.5, 0.5, 0.5}, ms[] = {1, 1, 1};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_LAYER, 0, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "1,3");
  assert_removed(removed_units, &m, 1, "0");
  assert_removed(removed_units, &m, 2, "");
  instance_free(&in);
}

/* Layer "1" weight scores: unit 0 = 2, [5 pruned]; 1 = 1.2 1.2; 2 = 0.5 0.5; 3 = 3 3.
 * l1: 2 2.4 1 6; l2: 2 1.697 0.707 4.243. */
static void neuron_weight_scores(Model *m) {
  static const float s0[] = {2, 5, 1.2f, 1.2f, 0.5f, 0.5f, 3, 3};
  memcpy(m->ws[0], s0, sizeof s0);
  m->mask[0][1] = 0.0f;
}

static void test_neuron_aggregate(void) {
  const double la[] = {0.5, 0, 1}, ms[] = {1, 1, 1};
  Model m;
  neuron_model(&m);
  neuron_weight_scores(&m);
  for (int agg = 0; agg < 3; agg++) {
    Instance in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
    if (agg < 2) fakehost_set(in.h, "aggregate", agg == 0 ? "l1" : "l2");
    instance_create(&in);
    /* unit_scores NULL: aggregate the weight scores of the alive weights */
    g_assert_cmpint(neuron_plan(&in, &m, FALSE, PRUNUS_SCOPE_LAYER, 0, la, ms), ==, 0);
    assert_removed(removed_units, &m, 0, agg == 0 ? "0,2" : "1,2"); /* l2 is the default */
    assert_removed(removed_units, &m, 1, "");
    assert_removed(removed_units, &m, 2, "");
    instance_free(&in);
  }
}

static void test_neuron_max_sparsity(void) {
  Instance in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  neuron_model(&m);
  /* layer "3" may lose none: its share goes to layer "1"'s next lowest */
  const double la[] = {1, 1, 1}, ms[] = {1, 0, 1};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 0.5, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "1,2,3");
  assert_removed(removed_units, &m, 1, "");
  /* layer "1" capped at 25%: at least 3 of its 4 units stay */
  const double la2[] = {0.75, 0, 0}, ms2[] = {0.25, 1, 1};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_LAYER, 0, la2, ms2), ==, 0);
  assert_removed(removed_units, &m, 0, "1");
  instance_free(&in);
}

static void test_neuron_refuses_empty(void) {
  Instance in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
  instance_create(&in);
  Model m;
  neuron_model(&m);
  const double ms[] = {1, 1, 1};
  /* all units of layer "3" */
  const double all[] = {0, 1, 0};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_LAYER, 0, all, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(in.h), "layer 3"));
  fakehost_clear_error(in.h);
  /* layer "3" keeps unit 1, but its only alive weight reads unit 1 of layer "1",
   * which goes: layer "3" would be left with no alive weight */
  for (int k = 0; k < 4; k++) m.mask[1][4 + k] = k == 1 ? 1.0f : 0.0f;
  const double la[] = {0.25, 0.5, 0};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_LAYER, 0, la, ms), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(in.h), "layer 3"));
  instance_free(&in);
}

/* round_to = 2, normalize off. Layer "1": 5 units scored 1 2 3 4 5, layer "3": 4 units
 * 1.5 1.6 10 11. Chunks by hand: "1" {0} (5 % 2 = 1 unit, mean 1), then {1,2} (2.5),
 * {3,4} never (its last); "3" {0,1} (1.55), {2,3} never. */
static void round_to_model(Model *m) {
  static const int units[] = {5, 4, 2}, fan_in[] = {2, 5, 4};
  model_init(m, 3, units, fan_in);
  static const float u0[] = {1, 2, 3, 4, 5}, u1[] = {1.5f, 1.6f, 10, 11};
  memcpy(m->us[0], u0, sizeof u0);
  memcpy(m->us[1], u1, sizeof u1);
}

static void test_neuron_round_to(void) {
  Instance in = instance_new("neuron", PRUNUS_PLUGIN_GRANULARITY);
  fakehost_set(in.h, "normalize", "false");
  fakehost_set(in.h, "round_to", "2");
  instance_create(&in);
  Model m;
  round_to_model(&m);
  const double la[] = {1, 1, 1}, ms[] = {1, 1, 1};
  /* 9 hidden units, want 4. Unit by unit: 1 1.5 1.6 2, "1" left with 3 units. In chunks:
   * {0} of "1" (1 removed), {0,1} of "3" (3); {1,2} of "1" would make 5, no nearer to 4 */
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 4.0 / 9.0, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "0");
  assert_removed(removed_units, &m, 1, "0,1");
  /* want 5: {1,2} of "1" then reaches it exactly */
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 5.0 / 9.0, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "0,1,2");
  assert_removed(removed_units, &m, 1, "0,1");
  /* want 8: every chunk but the last of each family, 5 in all */
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 8.0 / 9.0, la, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "0,1,2");
  assert_removed(removed_units, &m, 1, "0,1");
  /* "3" capped at 25% (3 of 4 units stay): its chunk of 2 does not fit */
  const double capped[] = {1, 0.25, 1};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_GLOBAL, 4.0 / 9.0, la, capped), ==, 0);
  assert_removed(removed_units, &m, 0, "0,1,2");
  assert_removed(removed_units, &m, 1, "");
  /* layer scope: "1" alone at 0.5, round(2.5) = 3: {0} then {1,2} */
  const double half[] = {0.5, 0, 0};
  g_assert_cmpint(neuron_plan(&in, &m, TRUE, PRUNUS_SCOPE_LAYER, 0, half, ms), ==, 0);
  assert_removed(removed_units, &m, 0, "0,1,2");
  assert_removed(removed_units, &m, 1, "");
  instance_free(&in);
  plugin_create_fails_with("channel", PRUNUS_PLUGIN_GRANULARITY, "round_to", "0", "in [1, 4096]");
  /* a revision-1 host has no get_int_range: the plugin checks the range itself */
  Loaded l = plugin_load("neuron", PRUNUS_PLUGIN_GRANULARITY);
  PrunusHost *h = fakehost_new(1, FALSE);
  fakehost_set_revision1(h);
  fakehost_set(h, "round_to", "5000");
  plugin_create_fails(&l, h, "round_to: expected an integer in [1, 4096], found 5000", NULL);
  fakehost_free(h);
  plugin_unload(&l);
}

static void test_neuron_bad_aggregate(void) {
  plugin_create_fails_with("neuron", PRUNUS_PLUGIN_GRANULARITY, "aggregate", "l3", "l3");
  plugin_create_fails_with("neuron", PRUNUS_PLUGIN_GRANULARITY, "normalize", "sometimes",
                           "sometimes");
}

// ----------------------------------------------------------------------------
// Retrain plugins: the service calls they make

static void assert_train(PrunusHost *h, guint i, int epochs, double lr, double offset, int total) {
  const FakeHostCall *c = fakehost_call(h, i);
  g_assert_cmpint(c->kind, ==, FAKEHOST_CALL_TRAIN);
  g_assert_cmpint(c->epochs, ==, epochs);
  g_assert_cmpfloat(c->lr, ==, lr);
  g_assert_cmpfloat(c->schedule_offset, ==, offset);
  g_assert_cmpint(c->schedule_epochs, ==, total);
}

/* Create name with settings (key, value pairs, NULL-terminated), run one round. */
static Instance retrain_round(const char *name, int pretrain, ...) {
  Instance in = instance_new(name, PRUNUS_PLUGIN_RETRAIN);
  fakehost_set_pretrain(in.h, pretrain, 0.1);
  va_list ap;
  va_start(ap, pretrain);
  const char *key;
  while ((key = va_arg(ap, const char *))) fakehost_set(in.h, key, va_arg(ap, const char *));
  va_end(ap);
  instance_create(&in);
  g_assert_cmpint(in.l.desc->retrain->retrain(in.state, 1), ==, 0);
  return in;
}

static void test_finetune(void) {
  Instance in = retrain_round("finetune", 10, NULL);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 1);
  assert_train(in.h, 0, 1, 0.0, 0, 0);
  instance_free(&in);
  in = retrain_round("finetune", 10, "epochs", "4", "lr", "0.01", NULL);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 1);
  assert_train(in.h, 0, 4, 0.01, 0, 0);
  instance_free(&in);
  in = retrain_round("finetune", 10, "epochs", "0", NULL);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 0);
  instance_free(&in);
  /* ranges through the host's get_int_range / get_double_range */
  plugin_create_fails_exactly("finetune", PRUNUS_PLUGIN_RETRAIN, "epochs", "-1",
                              "key 'epochs' = -1 is out of range: must be in [0, 2147483647]");
  plugin_create_fails_exactly("finetune", PRUNUS_PLUGIN_RETRAIN, "lr", "-0.5",
                              "key 'lr' = -0.5 is out of range: must be >= 0");
  plugin_create_fails_with("finetune", PRUNUS_PLUGIN_RETRAIN, "epochs", "many", "many");
}

/* A host of revision 1 has no range-checked getters: every retrain plugin says
 * so instead of calling past the end of the services table (plugin.h, G2). */
static void test_retrain_needs_revision2(void) {
  static const char *const names[] = {"finetune", "rewind", "reinit", "lr-rewind"};
  for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
    Loaded l = plugin_load(names[i], PRUNUS_PLUGIN_RETRAIN);
    PrunusHost *h = fakehost_new(1, TRUE);
    fakehost_set_revision1(h);
    g_assert_cmpuint(PRUNUS_HOST_REVISION(fakehost_services(h)), ==, 1);
    g_assert_false(PRUNUS_HOST_HAS(fakehost_services(h), get_int_range));
    plugin_create_fails(&l, h,
                        "this plugin needs the services get_int_range and "
                        "get_double_range of plugin revision 2; this prunus's host is revision 1",
                        NULL);
    fakehost_free(h);
    plugin_unload(&l);
  }
  /* and the fake host's own revision otherwise: 2 (it has no revision-3 services) */
  PrunusHost *h = fakehost_new(1, TRUE);
  g_assert_cmpuint(PRUNUS_HOST_REVISION(fakehost_services(h)), ==, 2);
  g_assert_true(PRUNUS_HOST_HAS(fakehost_services(h), get_double_range));
  g_assert_false(PRUNUS_HOST_HAS(fakehost_services(h), plan_request));
  fakehost_free(h);
}

/* wanda and sparsegpt need the layer inputs of revision 3 and say so on an older
 * host (plugin.h, G2); obd and nm ask for nothing newer than revision 2 and run. */
static void test_posttrain_needs_revision3(void) {
  static const char *const needy[] = {"wanda", "sparsegpt"};
  for (size_t i = 0; i < G_N_ELEMENTS(needy); i++) {
    Loaded l = plugin_load(needy[i], PRUNUS_PLUGIN_CRITERION);
    PrunusHost *h = fakehost_new(1, FALSE);
    plugin_create_fails(&l, h, "plugin ABI revision 3", "this prunus has revision 2");
    fakehost_free(h);
    plugin_unload(&l);
  }
  Loaded l = plugin_load("obd", PRUNUS_PLUGIN_CRITERION);
  PrunusHost *h = fakehost_new(1, FALSE);
  void *state = plugin_create_ok(&l, h);
  g_assert_cmpuint(l.desc->criterion->needs(state), ==, PRUNUS_NEED_LOSS_GRAD_SAMPLE);
  plugin_destroy(&l, state);
  fakehost_free(h);
  plugin_unload(&l);
  l = plugin_load("nm", PRUNUS_PLUGIN_GRANULARITY);
  h = fakehost_new(1, FALSE);
  fakehost_set(h, "m", "8");
  state = plugin_create_ok(&l, h);
  int n = 0, m = 0;
  l.desc->granularity->pattern(state, &n, &m);
  g_assert_cmpint(n, ==, 4); /* the default: m / 2 */
  g_assert_cmpint(m, ==, 8);
  plugin_destroy(&l, state);
  fakehost_free(h);
  plugin_unload(&l);
}

/* sparsegpt's target "original" needs revision 5's cross products: on a revision-4 host
 * its default falls back to the paper's target (a config that worked there still does),
 * and asking for "original" is refused naming the revision; on revision 5 it is the
 * default with sequential. */
static void test_sparsegpt_target_by_revision(void) {
  Loaded l = plugin_load("sparsegpt", PRUNUS_PLUGIN_CRITERION);
  PrunusHost *h = fakehost_new(1, FALSE);
  fakehost_set_revision(h, 4);
  void *state = plugin_create_ok(&l, h);
  g_assert_cmpuint(l.desc->criterion->needs(state), ==,
                   PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_LAYERWISE);
  plugin_destroy(&l, state);
  fakehost_free(h);
  h = fakehost_new(1, FALSE);
  fakehost_set_revision(h, 4);
  fakehost_set(h, "target", "original");
  plugin_create_fails(&l, h, "target = \"original\" needs the inputs' cross products",
                      "this prunus has revision 4");
  fakehost_free(h);
  h = fakehost_new(1, FALSE);
  fakehost_set_revision(h, 5);
  state = plugin_create_ok(&l, h);
  g_assert_cmpuint(l.desc->criterion->needs(state), ==,
                   PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_LAYERWISE | PRUNUS_NEED_INPUT_CROSS);
  plugin_destroy(&l, state);
  fakehost_free(h);
  plugin_unload(&l);
}

/* sparsegpt's check() (revision 6): a granularity that ranks units, or a pattern over
 * 64 columns, is refused before any data; weight-level granularities pass. */
static void test_sparsegpt_check(void) {
  Loaded l = plugin_load("sparsegpt", PRUNUS_PLUGIN_CRITERION);
  PrunusHost *h = fakehost_new(1, FALSE);
  fakehost_set_revision(h, 6);
  void *state = plugin_create_ok(&l, h);
  g_assert_nonnull(l.desc->criterion->check);
  const PrunusModelView empty = {0};
  PrunusCheckInfo info = {.scope = PRUNUS_SCOPE_LAYER,
                          .accepts = PRUNUS_SCORES_WEIGHT,
                          .criterion = "sparsegpt",
                          .granularity = "weight"};
  g_assert_cmpint(l.desc->criterion->check(state, &empty, &info), ==, 0);
  info.pattern_n = 2, info.pattern_m = 4, info.granularity = "nm";
  g_assert_cmpint(l.desc->criterion->check(state, &empty, &info), ==, 0);
  info.pattern_n = 2, info.pattern_m = 128;
  g_assert_cmpint(l.desc->criterion->check(state, &empty, &info), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(h), "2:128"));
  info.pattern_n = info.pattern_m = 0, info.granularity = "neuron";
  info.accepts = PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT;
  g_assert_cmpint(l.desc->criterion->check(state, &empty, &info), !=, 0);
  g_assert_nonnull(strstr(fakehost_error(h), "'neuron' removes whole units"));
  plugin_destroy(&l, state);
  fakehost_free(h);
  plugin_unload(&l);
}

static void test_rewind(void) {
  /* defaults: θ0, then train.epochs epochs at the config's rate */
  Instance in = retrain_round("rewind", 10, NULL);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 2);
  g_assert_cmpint(fakehost_call(in.h, 0)->kind, ==, FAKEHOST_CALL_REWIND);
  g_assert_cmpint(fakehost_call(in.h, 0)->epoch, ==, 0);
  assert_train(in.h, 1, 10, 0.0, 0, 0);
  instance_free(&in);
  in = retrain_round("rewind", 10, "to", "init", "epochs", "6", NULL);
  g_assert_cmpint(fakehost_call(in.h, 0)->epoch, ==, 0);
  assert_train(in.h, 1, 6, 0.0, 0, 0);
  instance_free(&in);
  /* late rewinding to θ2 */
  in = retrain_round("rewind", 10, "to", "epoch", "epoch", "2", "epochs", "5", "lr", "0.05", NULL);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 2);
  g_assert_cmpint(fakehost_call(in.h, 0)->kind, ==, FAKEHOST_CALL_REWIND);
  g_assert_cmpint(fakehost_call(in.h, 0)->epoch, ==, 2);
  assert_train(in.h, 1, 5, 0.05, 0, 0);
  instance_free(&in);
  plugin_create_fails_with("rewind", PRUNUS_PLUGIN_RETRAIN, "to", "middle", "middle");
  plugin_create_fails_exactly("rewind", PRUNUS_PLUGIN_RETRAIN, "epochs", "-1",
                              "key 'epochs' = -1 is out of range: must be in [0, 2147483647]");
  /* epoch with to = "init" */
  plugin_create_fails_with("rewind", PRUNUS_PLUGIN_RETRAIN, "epoch", "3", "init");
  Instance bad = instance_new("rewind", PRUNUS_PLUGIN_RETRAIN);
  fakehost_set(bad.h, "to", "epoch");
  plugin_create_fails(&bad.l, bad.h, "epoch", "none");
  instance_free(&bad);
  bad = instance_new("rewind", PRUNUS_PLUGIN_RETRAIN);
  fakehost_set(bad.h, "to", "epoch");
  fakehost_set(bad.h, "epoch", "11");
  plugin_create_fails(&bad.l, bad.h, "key 'epoch' = 11 is out of range: must be in [1, 10]", NULL);
  instance_free(&bad);
}

static void test_reinit(void) {
  Instance in = retrain_round("reinit", 10, "seed", "7", NULL);
  g_assert_cmpint(in.l.desc->retrain->retrain(in.state, 2), ==, 0);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 4);
  for (guint r = 0; r < 2; r++) {
    g_assert_cmpint(fakehost_call(in.h, 2 * r)->kind, ==, FAKEHOST_CALL_REINIT);
    g_assert_cmpuint(fakehost_call(in.h, 2 * r)->seed, ==, 7);
    assert_train(in.h, 2 * r + 1, 10, 0.0, 0, 0);
  }
  instance_free(&in);
  /* no seed: the host stream's draws, one per round */
  in = retrain_round("reinit", 8, "epochs", "3", "lr", "0.2", NULL);
  g_assert_cmpint(in.l.desc->retrain->retrain(in.state, 2), ==, 0);
  uint64_t s = 7; /* instance_new seeds the host with 7 */
  const uint64_t d0 = fakehost_splitmix64(&s), d1 = fakehost_splitmix64(&s);
  g_assert_cmpuint(fakehost_call(in.h, 0)->seed, ==, d0);
  g_assert_cmpuint(fakehost_call(in.h, 2)->seed, ==, d1);
  assert_train(in.h, 1, 3, 0.2, 0, 0);
  assert_train(in.h, 3, 3, 0.2, 0, 0);
  instance_free(&in);
  plugin_create_fails_exactly("reinit", PRUNUS_PLUGIN_RETRAIN, "seed", "-3",
                              "key 'seed' = -3 is out of range: must be >= 0");
  plugin_create_fails_exactly("reinit", PRUNUS_PLUGIN_RETRAIN, "lr", "-1",
                              "key 'lr' = -1 is out of range: must be >= 0");
  plugin_create_fails_with("reinit", PRUNUS_PLUGIN_RETRAIN, "epochs", "-1", "-1");
}

static void test_lr_rewind(void) {
  /* replay the last 3 of 10 epochs: train(3, lr 0, offset 7, total 10) */
  Instance in = retrain_round("lr-rewind", 10, "epochs", "3", NULL);
  g_assert_cmpuint(fakehost_n_calls(in.h), ==, 1);
  assert_train(in.h, 0, 3, 0.0, 7, 10);
  instance_free(&in);
  /* default: the whole schedule again */
  in = retrain_round("lr-rewind", 10, NULL);
  assert_train(in.h, 0, 10, 0.0, 0, 10);
  instance_free(&in);
  /* at most train.epochs (10 in the fake host) */
  plugin_create_fails_exactly("lr-rewind", PRUNUS_PLUGIN_RETRAIN, "epochs", "11",
                              "key 'epochs' = 11 is out of range: must be in [0, 10]");
  plugin_create_fails_exactly("lr-rewind", PRUNUS_PLUGIN_RETRAIN, "epochs", "-1",
                              "key 'epochs' = -1 is out of range: must be in [0, 10]");
  in = retrain_round("lr-rewind", 10, "epochs", "10", NULL);
  assert_train(in.h, 0, 10, 0.0, 0, 10);
  instance_free(&in);
}

// ----------------------------------------------------------------------------
// The broken loader fixtures are what they claim to be

static void *broken_open(const char *name) {
  char *path = plugin_path("PRUNUS_TEST_BROKEN_PLUGIN_DIR", name);
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) g_error("dlopen %s: %s", path, dlerror());
  g_free(path);
  return dl;
}

static const PrunusPluginDesc *broken_desc(void *dl) {
  PrunusPluginDescribeFn describe = (PrunusPluginDescribeFn)dlsym(dl, PRUNUS_PLUGIN_ENTRY_SYMBOL);
  g_assert_nonnull(describe);
  return describe(0);
}

static void test_broken_fixtures(void) {
  void *dl = broken_open("broken-no-entry");
  g_assert_null(dlsym(dl, PRUNUS_PLUGIN_ENTRY_SYMBOL));
  dlclose(dl);

  dl = broken_open("broken-abi");
  g_assert_cmpuint(broken_desc(dl)->abi_version, ==, PRUNUS_PLUGIN_ABI_VERSION + 41);
  dlclose(dl);

  dl = broken_open("broken-kind");
  g_assert_cmpint(broken_desc(dl)->kind, ==, PRUNUS_PLUGIN_GRANULARITY);
  g_assert_cmpstr(broken_desc(dl)->name, ==, "not-a-criterion");
  dlclose(dl);

  dl = broken_open("broken-field");
  g_assert_cmpstr(broken_desc(dl)->name, ==, "Bad Name!");
  g_assert_cmpint(broken_desc(dl)->kind, ==, PRUNUS_PLUGIN_CRITERION);
  g_assert_null(broken_desc(dl)->criterion);
  dlclose(dl);

  dl = broken_open("broken-create");
  PrunusHost *h = fakehost_new(1, FALSE);
  void *state = NULL;
  g_assert_cmpint(broken_desc(dl)->create(h, fakehost_services(h), &state), ==, -1);
  g_assert_cmpstr(fakehost_error(h), ==, "deliberate failure: the model has no conv layers");
  fakehost_free(h);
  dlclose(dl);

  dl = broken_open("broken-size");
  g_assert_cmpuint(broken_desc(dl)->size, ==, 8);
  dlclose(dl);

  dl = broken_open("broken-ops-size");
  g_assert_cmpint(broken_desc(dl)->kind, ==, PRUNUS_PLUGIN_GRANULARITY);
  g_assert_cmpuint(broken_desc(dl)->ops_size, ==, 8);
  dlclose(dl);

  /* one member appended to each of descriptor and ops table */
  dl = broken_open("future-plugin");
  g_assert_cmpuint(broken_desc(dl)->size, ==, sizeof(PrunusPluginDesc) + sizeof(uint64_t));
  g_assert_cmpuint(broken_desc(dl)->ops_size, ==, sizeof(PrunusCriterionOps) + sizeof(void *));
  dlclose(dl);

  /* exported although its definition has no PRUNUS_PLUGIN_EXPORT */
  dl = broken_open("no-export-macro");
  g_assert_cmpstr(broken_desc(dl)->name, ==, "no-export-macro");
  g_assert_cmpuint(broken_desc(dl)->ops_size, ==, sizeof(PrunusRetrainOps));
  dlclose(dl);

  char *path = plugin_path("PRUNUS_TEST_BROKEN_PLUGIN_DIR", "broken-undefined");
  g_assert_null(dlopen(path, RTLD_NOW | RTLD_LOCAL));
  const char *err = dlerror();
  g_assert_nonnull(err);
  g_assert_nonnull(strstr(err, "prunus_symbol_that_does_not_exist"));
  g_free(path);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/plugins/magnitude/weight-scores", test_magnitude_weight_scores);
  g_test_add_func("/plugins/magnitude/unit-l2", test_magnitude_unit_l2);
  g_test_add_func("/plugins/magnitude/unit-l1", test_magnitude_unit_l1);
  g_test_add_func("/plugins/magnitude/bad-unit-norm", test_magnitude_bad_norm);
  g_test_add_func("/plugins/random/range-and-seed", test_random_range_and_seed);
  g_test_add_func("/plugins/weight/global", test_weight_global);
  g_test_add_func("/plugins/weight/layer-amount", test_weight_layer_amount);
  g_test_add_func("/plugins/weight/layer-scope", test_weight_layer_scope);
  g_test_add_func("/plugins/weight/max-sparsity", test_weight_max_sparsity);
  g_test_add_func("/plugins/weight/ties", test_weight_ties);
  g_test_add_func("/plugins/weight/refuses-empty", test_weight_refuses_empty);
  g_test_add_func("/plugins/neuron/unit-scores-global", test_neuron_unit_scores_global);
  g_test_add_func("/plugins/neuron/never-output", test_neuron_never_output);
  g_test_add_func("/plugins/neuron/aggregate", test_neuron_aggregate);
  g_test_add_func("/plugins/neuron/max-sparsity", test_neuron_max_sparsity);
  g_test_add_func("/plugins/neuron/refuses-empty", test_neuron_refuses_empty);
  g_test_add_func("/plugins/neuron/bad-settings", test_neuron_bad_aggregate);
  g_test_add_func("/plugins/neuron/round-to", test_neuron_round_to);
  g_test_add_func("/plugins/retrain/finetune", test_finetune);
  g_test_add_func("/plugins/retrain/rewind", test_rewind);
  g_test_add_func("/plugins/retrain/reinit", test_reinit);
  g_test_add_func("/plugins/retrain/lr-rewind", test_lr_rewind);
  g_test_add_func("/plugins/retrain/needs-revision-2", test_retrain_needs_revision2);
  g_test_add_func("/plugins/posttrain/needs-revision-3", test_posttrain_needs_revision3);
  g_test_add_func("/plugins/posttrain/sparsegpt-check", test_sparsegpt_check);
  g_test_add_func("/plugins/posttrain/sparsegpt-target-by-revision",
                  test_sparsegpt_target_by_revision);
  g_test_add_func("/plugins/broken-fixtures", test_broken_fixtures);
  return g_test_run();
}
