/* model.c: builds a model from an architecture (shapes, slab offsets, workspace),
 * runs forward/backward through the layer table, initialises and masks parameters. */
#include "model.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* architecture */

PrunusArch prunus_arch_copy(const PrunusArch *a) {
  PrunusArch c = *a;
  c.layers = g_memdup2(a->layers, sizeof(PrunusLayerSpec) * (size_t)a->n_layers);
  return c;
}

void prunus_arch_clear(PrunusArch *a) {
  g_clear_pointer(&a->layers, g_free);
  a->n_layers = 0;
}

char *prunus_arch_to_string(const PrunusArch *a) {
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "%dx%dx%d", a->input.c, a->input.h, a->input.w);
  for (int i = 0; i < a->n_layers; i++) {
    const PrunusLayerSpec *l = &a->layers[i];
    g_string_append_printf(s, "|%s", prunus_layer_ops(l->type)->type_name);
    switch (l->type) {
    case PRUNUS_LAYER_DENSE:
      g_string_append_printf(s, ":%d", l->units);
      break;
    case PRUNUS_LAYER_CONV2D:
      g_string_append_printf(s, ":%d:%d:%d:%d", l->channels, l->kernel, l->stride, l->padding);
      break;
    case PRUNUS_LAYER_MAXPOOL2D:
      g_string_append_printf(s, ":%d:%d", l->kernel, l->stride > 0 ? l->stride : l->kernel);
      break;
    default:
      break;
    }
  }
  return g_string_free(s, FALSE);
}

static gboolean parse_ints(const char *text, int *out, int n) {
  char **parts = g_strsplit(text, ":", -1);
  gboolean ok = (int)g_strv_length(parts) == n;
  for (int i = 0; ok && i < n; i++) {
    char *end = NULL;
    long v = strtol(parts[i], &end, 10);
    ok = end != parts[i] && *end == '\0' && v >= 0 && v <= 1000000;
    out[i] = (int)v;
  }
  g_strfreev(parts);
  return ok;
}

gboolean prunus_arch_from_string(const char *s, PrunusArch *out, GError **error) {
  char **parts = g_strsplit(s, "|", -1);
  int n = (int)g_strv_length(parts);
  gboolean ok = FALSE;
  int dims[3];
  PrunusArch a = {0};
  char **shape = NULL;
  if (n < 2) goto out_free_parts;
  shape = g_strsplit(parts[0], "x", -1);
  {
    char *joined = g_strjoinv(":", shape);
    gboolean shape_ok = parse_ints(joined, dims, 3);
    g_free(joined);
    if (!shape_ok) goto out_free_parts;
  }
  a.input = (PrunusShape){dims[0], dims[1], dims[2]};
  a.n_layers = n - 1;
  a.layers = g_new0(PrunusLayerSpec, a.n_layers);
  for (int i = 0; i < a.n_layers; i++) {
    PrunusLayerSpec *l = &a.layers[i];
    const char *part = parts[i + 1];
    const char *colon = strchr(part, ':');
    char *type = g_strndup(part, colon ? (size_t)(colon - part) : strlen(part));
    gboolean known = prunus_layer_type_from_name(type, &l->type);
    g_free(type);
    if (!known) goto out_free_parts;
    const char *args = colon ? colon + 1 : "";
    int v[4];
    switch (l->type) {
    case PRUNUS_LAYER_DENSE:
      if (!parse_ints(args, v, 1)) goto out_free_parts;
      l->units = v[0];
      break;
    case PRUNUS_LAYER_CONV2D:
      if (!parse_ints(args, v, 4)) goto out_free_parts;
      l->channels = v[0], l->kernel = v[1], l->stride = v[2], l->padding = v[3];
      break;
    case PRUNUS_LAYER_MAXPOOL2D:
      if (!parse_ints(args, v, 2)) goto out_free_parts;
      l->kernel = v[0], l->stride = v[1];
      break;
    default:
      if (colon) goto out_free_parts;
      break;
    }
  }
  for (int i = a.n_layers - 1; i >= 0; i--) {
    if (a.layers[i].type == PRUNUS_LAYER_DENSE) {
      a.n_classes = a.layers[i].units;
      break;
    }
  }
  ok = a.n_classes > 0;

out_free_parts:
  g_strfreev(shape);
  g_strfreev(parts);
  if (!ok) {
    prunus_arch_clear(&a);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "cannot parse architecture string '%s' (expected e.g. "
                "'1x28x28|flatten|dense:300|relu|dense:10')",
                s);
    return FALSE;
  }
  *out = a;
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* building and freeing */

static float *slab_new(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, sizeof(float) * (n ? n : 1)) != 0) g_error("out of memory");
  memset(p, 0, sizeof(float) * (n ? n : 1));
  return p;
}

/* A flatten layer's output is its input, reinterpreted: acts[i + 1] (and the gradient
 * dacts[i + 1]) share the buffer of slot i instead of holding a copy. */
static gboolean slot_is_alias(const PrunusModel *m, int slot) {
  return slot > 0 && slot <= m->n_layers && m->layers[slot - 1].spec.type == PRUNUS_LAYER_FLATTEN;
}

static void workspace_free(PrunusModel *m) {
  if (m->acts)
    for (int i = 0; i <= m->n_layers; i++)
      if (!slot_is_alias(m, i)) free(m->acts[i]);
  if (m->dacts)
    for (int i = 0; i <= m->n_layers; i++)
      if (!slot_is_alias(m, i)) free(m->dacts[i]);
  if (m->scratch)
    for (int i = 0; i < m->n_layers; i++) free(m->scratch[i]);
  g_clear_pointer(&m->acts, g_free);
  g_clear_pointer(&m->dacts, g_free);
  g_clear_pointer(&m->scratch, g_free);
  g_clear_pointer(&m->scratch_len, g_free);
  m->max_batch = 0;
}

static size_t act_size(const PrunusModel *m, int i) {
  return i < m->n_layers ? prunus_shape_size(m->layers[i].in)
                         : prunus_shape_size(m->layers[m->n_layers - 1].out);
}

void prunus_model_reserve_batch(PrunusModel *m, int B) {
  g_return_if_fail(B > 0);
  if (B <= m->max_batch) return;
  workspace_free(m);
  m->max_batch = B;
  m->acts = g_new0(float *, m->n_layers + 1);
  m->dacts = g_new0(float *, m->n_layers + 1);
  m->scratch = g_new0(float *, m->n_layers);
  m->scratch_len = g_new0(size_t, m->n_layers);
  for (int i = 0; i <= m->n_layers; i++) {
    gboolean alias = slot_is_alias(m, i);
    m->acts[i] = alias ? m->acts[i - 1] : slab_new((size_t)B * act_size(m, i));
    m->dacts[i] = alias ? m->dacts[i - 1] : slab_new((size_t)B * act_size(m, i));
  }
  for (int i = 0; i < m->n_layers; i++) {
    size_t n = m->layers[i].ops->scratch_size(&m->layers[i], B);
    m->scratch_len[i] = n;
    m->scratch[i] = n ? slab_new(n) : NULL;
  }
}

PrunusModel *prunus_model_new(const PrunusArch *arch, int max_batch, uint64_t seed,
                              GError **error) {
  if (arch->n_layers <= 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "the model has no layers");
    return NULL;
  }
  if (arch->input.c <= 0 || arch->input.h <= 0 || arch->input.w <= 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "model input must be three positive sizes [c, h, w], found [%d, %d, %d]",
                arch->input.c, arch->input.h, arch->input.w);
    return NULL;
  }
  PrunusModel *m = g_new0(PrunusModel, 1);
  m->arch = prunus_arch_copy(arch);
  m->n_layers = arch->n_layers;
  m->layers = g_new0(PrunusLayer, m->n_layers);
  PrunusShape shape = arch->input;
  size_t off = 0;
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayer *l = &m->layers[i];
    l->spec = arch->layers[i];
    l->ops = prunus_layer_ops(l->spec.type);
    g_snprintf(l->name, sizeof l->name, "%d", i);
    l->in = shape;
    GError *local = NULL;
    if (!l->ops->infer(&l->spec, shape, &l->out, &l->w_len, &l->b_len, &l->fan_in, &l->fan_out,
                       &local)) {
      g_propagate_prefixed_error(error, local, "model layer %d (%s): ", i, l->ops->type_name);
      prunus_model_free(m);
      return NULL;
    }
    l->w_off = off;
    off += l->w_len;
    l->b_off = off;
    off += l->b_len;
    shape = l->out;
  }
  size_t out_size = prunus_shape_size(shape);
  if (arch->n_classes > 0 && out_size != (size_t)arch->n_classes) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "the model ends with %zu outputs but %d classes are expected", out_size,
                arch->n_classes);
    prunus_model_free(m);
    return NULL;
  }
  m->arch.n_classes = (int)out_size;
  m->n_params = off;
  m->params = slab_new(off);
  m->grads = slab_new(off);
  m->mask = slab_new(off);
  m->opt_m = slab_new(off);
  m->opt_v = slab_new(off);
  for (size_t i = 0; i < off; i++) m->mask[i] = 1.0f;
  prunus_model_init_params(m, seed);
  prunus_model_reserve_batch(m, max_batch > 0 ? max_batch : 1);
  return m;
}

void prunus_model_free(PrunusModel *m) {
  if (!m) return;
  workspace_free(m);
  free(m->params);
  free(m->grads);
  free(m->mask);
  free(m->opt_m);
  free(m->opt_v);
  g_free(m->layers);
  prunus_arch_clear(&m->arch);
  g_free(m);
}

void prunus_model_init_params(PrunusModel *m, uint64_t seed) {
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "init"));
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    float *w = m->params + l->w_off;
    if (m->arch.init == PRUNUS_INIT_GLOROT) {
      double a = sqrt(6.0 / (l->fan_in + l->fan_out));
      for (size_t j = 0; j < l->w_len; j++)
        w[j] = (float)((2.0 * prunus_rng_uniform(&rng) - 1.0) * a);
    } else if (m->arch.init == PRUNUS_INIT_UNIFORM_FAN_IN) {
      /* the layer's weights, then its biases, from one stream (PyTorch's order) */
      double a = 1.0 / sqrt(l->fan_in);
      float *b = m->params + l->b_off;
      for (size_t j = 0; j < l->w_len; j++)
        w[j] = (float)((2.0 * prunus_rng_uniform(&rng) - 1.0) * a);
      for (size_t j = 0; j < l->b_len; j++)
        b[j] = (float)((2.0 * prunus_rng_uniform(&rng) - 1.0) * a);
    } else {
      double sd = sqrt(2.0 / l->fan_in);
      for (size_t j = 0; j < l->w_len; j++) w[j] = (float)(prunus_rng_normal(&rng) * sd);
    }
    if (m->arch.init != PRUNUS_INIT_UNIFORM_FAN_IN)
      memset(m->params + l->b_off, 0, sizeof(float) * l->b_len);
  }
  prunus_model_apply_mask(m);
}

/* ------------------------------------------------------------------------ */
/* running */

void prunus_model_forward(PrunusModel *m, const float *x, int B) {
  prunus_model_reserve_batch(m, B);
  if (x != m->acts[0]) /* callers may fill the input slot in place */
    memcpy(m->acts[0], x, sizeof(float) * (size_t)B * act_size(m, 0));
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    l->ops->forward(l, m->params, m->acts[i], m->acts[i + 1], m->scratch[i], B);
  }
}

int prunus_model_first_param_layer(const PrunusModel *m) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params) return i;
  return -1;
}

void prunus_model_backward(PrunusModel *m, const float *dlogits, int B) {
  prunus_model_backward_each(m, dlogits, B, NULL, NULL);
}

void prunus_model_backward_each(PrunusModel *m, const float *dlogits, int B,
                                PrunusLayerGradsDone done, void *user) {
  g_return_if_fail(B <= m->max_batch);
  /* Nothing below the first layer with parameters needs a gradient: stop there
   * (its input gradient would be a full (B, in) product that nobody reads). */
  int first = prunus_model_first_param_layer(m);
  if (first < 0) first = m->n_layers - 1; /* no parameters: only the last layer */
  const float *dy = dlogits;
  for (int i = m->n_layers - 1; i >= first; i--) {
    const PrunusLayer *l = &m->layers[i];
    float *dx = i > first ? m->dacts[i] : NULL;
    l->ops->backward(l, m->params, m->grads, m->acts[i], m->acts[i + 1], dy, dx, m->scratch[i], B);
    if (done && l->ops->has_params) done(m, i, user);
    dy = dx;
  }
}

void prunus_model_zero_grads(PrunusModel *m) { memset(m->grads, 0, sizeof(float) * m->n_params); }

void prunus_model_apply_mask(PrunusModel *m) {
  float *p = m->params;
  const float *mk = m->mask;
  for (size_t i = 0; i < m->n_params; i++) p[i] *= mk[i];
}

void prunus_model_set_team(PrunusModel *m, PrunusTeam *team) {
  for (int i = 0; i < m->n_layers; i++) m->layers[i].team = team;
}

size_t prunus_model_input_size(const PrunusModel *m) { return prunus_shape_size(m->arch.input); }

int prunus_model_n_classes(const PrunusModel *m) { return m->arch.n_classes; }

uint64_t prunus_model_flops(const PrunusModel *m, gboolean masked) {
  uint64_t total = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    uint64_t w = l->w_len;
    if (masked) {
      w = 0;
      for (size_t j = 0; j < l->w_len; j++) w += m->mask[l->w_off + j] != 0.0f;
    }
    uint64_t positions = l->spec.type == PRUNUS_LAYER_CONV2D ? (uint64_t)l->out.h * l->out.w : 1;
    total += 2 * w * positions;
  }
  return total;
}
