/* model.c: builds a model from an architecture (names, inputs, shapes, slab offsets,
 * workspace), runs forward/backward over its graph through the layer table (gradients
 * summed where an output feeds several layers), initialises and masks parameters. */
#include "model.h"
#include "rng.h"
#include "spdense.h"

#include <math.h>
#include <stdarg.h>
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

/* Layer i's inputs as listed: the spec's, or the previous layer (the model's input
 * for layer 0). Returns their count. */
static int spec_inputs(const PrunusArch *a, int i, int *from) {
  const PrunusLayerSpec *l = &a->layers[i];
  if (l->n_inputs == 0) {
    from[0] = i - 1; /* layer 0: PRUNUS_LAYER_INPUT */
    return 1;
  }
  memcpy(from, l->inputs, sizeof(int) * (size_t)l->n_inputs);
  return l->n_inputs;
}

gboolean prunus_arch_is_sequence(const PrunusArch *a) {
  for (int i = 0; i < a->n_layers; i++) {
    int from[PRUNUS_LAYER_MAX_INPUTS];
    if (spec_inputs(a, i, from) != 1 || from[0] != i - 1) return FALSE;
  }
  return TRUE;
}

gboolean prunus_layer_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n >= PRUNUS_LAYER_NAME_MAX || !strcmp(name, "input")) return FALSE;
  for (size_t i = 0; i < n; i++)
    if (!g_ascii_isalnum(name[i]) && name[i] != '_' && name[i] != '.' && name[i] != '-')
      return FALSE;
  return TRUE;
}

const char *prunus_arch_layer_name(const PrunusArch *a, int i, char buf[PRUNUS_LAYER_NAME_MAX]) {
  if (a->layers[i].name[0]) return a->layers[i].name;
  g_snprintf(buf, PRUNUS_LAYER_NAME_MAX, "%d", i);
  return buf;
}

/* The shortest of %.6g .. %.9g that reads back to v's bits (%.9g always does):
 * "0.1", not "0.100000001". */
static void append_float(GString *s, float v) {
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  for (int digits = 6; digits <= 9; digits++) {
    char fmt[8];
    g_snprintf(fmt, sizeof fmt, "%%.%dg", digits);
    g_ascii_formatd(buf, sizeof buf, fmt, (double)v);
    if ((float)g_ascii_strtod(buf, NULL) == v) break;
  }
  g_string_append_printf(s, ":%s", buf);
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
      g_string_append_printf(s, ":%d:%d:%d:%d%s", l->channels, l->kernel, l->stride, l->padding,
                             l->no_bias ? ":nobias" : "");
      break;
    case PRUNUS_LAYER_MAXPOOL2D:
    case PRUNUS_LAYER_AVGPOOL2D:
      g_string_append_printf(s, ":%d:%d", l->kernel, l->stride > 0 ? l->stride : l->kernel);
      break;
    case PRUNUS_LAYER_BATCHNORM:
      append_float(s, l->momentum);
      append_float(s, l->eps);
      break;
    default:
      break;
    }
    char buf[PRUNUS_LAYER_NAME_MAX];
    g_snprintf(buf, sizeof buf, "%d", i);
    if (l->name[0] && strcmp(l->name, buf) != 0) g_string_append_printf(s, "@%s", l->name);
    int from[PRUNUS_LAYER_MAX_INPUTS];
    int n = spec_inputs(a, i, from);
    if (n == 1 && from[0] == i - 1) continue; /* the default: the previous layer */
    for (int k = 0; k < n; k++) {
      const char *name = from[k] < 0 ? "input" : prunus_arch_layer_name(a, from[k], buf);
      g_string_append_printf(s, "%c%s", k ? ',' : '<', name);
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

/* "m:e" as two finite floats. */
static gboolean parse_floats(const char *text, float *out, int n) {
  char **parts = g_strsplit(text, ":", -1);
  gboolean ok = (int)g_strv_length(parts) == n;
  for (int i = 0; ok && i < n; i++) {
    char *end = NULL;
    double v = g_ascii_strtod(parts[i], &end);
    ok = end != parts[i] && *end == '\0' && isfinite(v);
    out[i] = (float)v;
  }
  g_strfreev(parts);
  return ok;
}

/* One "type[:settings][@name][<inputs]" part into layer i of a; names holds the
 * names of layers 0..i-1 (name -> index + 1). */
static gboolean parse_layer_part(char *part, PrunusArch *a, int i, GHashTable *names) {
  PrunusLayerSpec *l = &a->layers[i];
  char *lt = strchr(part, '<');
  if (lt) *lt++ = '\0';
  char *at = strchr(part, '@');
  if (at) {
    *at++ = '\0';
    if (!prunus_layer_name_valid(at)) return FALSE;
    g_strlcpy(l->name, at, sizeof l->name);
  }
  char *colon = strchr(part, ':');
  if (colon) *colon++ = '\0';
  if (!prunus_layer_type_from_name(part, &l->type)) return FALSE;
  const char *args = colon ? colon : "";
  int v[4];
  switch (l->type) {
  case PRUNUS_LAYER_DENSE:
    if (!parse_ints(args, v, 1)) return FALSE;
    l->units = v[0];
    break;
  case PRUNUS_LAYER_CONV2D: {
    char *text = g_strdup(args);
    size_t n = strlen(text);
    if (n > 7 && !strcmp(text + n - 7, ":nobias")) text[n - 7] = '\0', l->no_bias = TRUE;
    gboolean ok = parse_ints(text, v, 4);
    g_free(text);
    if (!ok) return FALSE;
    l->channels = v[0], l->kernel = v[1], l->stride = v[2], l->padding = v[3];
    break;
  }
  case PRUNUS_LAYER_MAXPOOL2D:
  case PRUNUS_LAYER_AVGPOOL2D:
    if (!parse_ints(args, v, 2)) return FALSE;
    l->kernel = v[0], l->stride = v[1];
    break;
  case PRUNUS_LAYER_BATCHNORM: {
    float f[2];
    if (!parse_floats(args, f, 2)) return FALSE;
    l->momentum = f[0], l->eps = f[1];
    break;
  }
  default:
    if (colon) return FALSE;
    break;
  }
  if (lt) {
    char **ins = g_strsplit(lt, ",", -1);
    int n = (int)g_strv_length(ins);
    gboolean ok = n >= 1 && n <= PRUNUS_LAYER_MAX_INPUTS;
    for (int k = 0; ok && k < n; k++) {
      if (!strcmp(ins[k], "input")) {
        l->inputs[k] = PRUNUS_LAYER_INPUT;
        continue;
      }
      int at_index = GPOINTER_TO_INT(g_hash_table_lookup(names, ins[k]));
      ok = at_index > 0;
      l->inputs[k] = at_index - 1;
    }
    l->n_inputs = n;
    g_strfreev(ins);
    if (!ok) return FALSE;
  }
  char buf[PRUNUS_LAYER_NAME_MAX];
  const char *name = prunus_arch_layer_name(a, i, buf);
  if (g_hash_table_contains(names, name)) return FALSE;
  g_hash_table_insert(names, g_strdup(name), GINT_TO_POINTER(i + 1));
  return TRUE;
}

gboolean prunus_arch_from_string(const char *s, PrunusArch *out, GError **error) {
  /* counted before anything is split or allocated per layer */
  int n_layers = 0;
  for (const char *c = strchr(s, '|'); c; c = strchr(c + 1, '|')) n_layers++;
  if (n_layers > PRUNUS_MODEL_MAX_LAYERS) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "architecture string has %d layers, more than the limit of %d", n_layers,
                PRUNUS_MODEL_MAX_LAYERS);
    return FALSE;
  }
  char **parts = g_strsplit(s, "|", -1);
  int n = (int)g_strv_length(parts);
  gboolean ok = FALSE;
  int dims[3];
  PrunusArch a = {0};
  char **shape = NULL;
  GHashTable *names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
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
  for (int i = 0; i < a.n_layers; i++)
    if (!parse_layer_part(parts[i + 1], &a, i, names)) goto out_free_parts;
  for (int i = a.n_layers - 1; i >= 0; i--) {
    if (a.layers[i].type == PRUNUS_LAYER_DENSE) {
      a.n_classes = a.layers[i].units;
      break;
    }
  }
  ok = a.n_classes > 0;

out_free_parts:
  g_hash_table_destroy(names);
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

static gboolean fail_layer(GError **error, int *bad, int i, const PrunusLayer *l, const char *fmt,
                           ...) G_GNUC_PRINTF(5, 6);

/* "model layer NAME (TYPE): message", and *bad = i. */
static gboolean fail_layer(GError **error, int *bad, int i, const PrunusLayer *l, const char *fmt,
                           ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "model layer %s (%s): %s", l->name,
              l->ops->type_name, msg);
  g_free(msg);
  *bad = i;
  return FALSE;
}

/* batchnorm normalises what a conv2d or dense layer computed, channel by channel (the
 * pair that structured pruning and inference folding treat as one). */
static gboolean follows_ok(const PrunusLayer *layers, int i, int *bad, GError **error) {
  const PrunusLayer *l = &layers[i];
  if (l->spec.type != PRUNUS_LAYER_BATCHNORM) return TRUE;
  int f = l->from[0];
  PrunusLayerType t = f >= 0 ? layers[f].spec.type : PRUNUS_LAYER_N_TYPES;
  if (t == PRUNUS_LAYER_CONV2D || t == PRUNUS_LAYER_DENSE) return TRUE;
  if (f < 0)
    return fail_layer(error, bad, i, l,
                      "batchnorm must follow a conv2d or dense layer, whose outputs it "
                      "normalises; its input is the model's input");
  return fail_layer(error, bad, i, l,
                    "batchnorm must follow a conv2d or dense layer, whose outputs it normalises; "
                    "its input '%s' is %s %s layer",
                    layers[f].name, prunus_layer_article(layers[f].ops->type_name),
                    layers[f].ops->type_name);
}

/* layers (arch->n_layers, zeroed) from arch: names, inputs, shapes, slab offsets
 * (parameters from 0, then the buffers). On failure *bad = the layer at fault (-1:
 * the model as a whole). */
static gboolean layers_build(const PrunusArch *arch, PrunusLayer *layers, size_t *n_params,
                             size_t *n_buffers, int *bad, GError **error) {
  *bad = -1;
  if (arch->n_layers <= 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "the model has no layers");
    return FALSE;
  }
  if (arch->input.c <= 0 || arch->input.h <= 0 || arch->input.w <= 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "model input must be three positive sizes [c, h, w], found [%d, %d, %d]",
                arch->input.c, arch->input.h, arch->input.w);
    return FALSE;
  }
  gboolean ok = FALSE;
  GHashTable *names = g_hash_table_new(g_str_hash, g_str_equal); /* name -> index + 1 */
  size_t off = 0;
  for (int i = 0; i < arch->n_layers; i++) {
    PrunusLayer *l = &layers[i];
    l->spec = arch->layers[i];
    l->ops = prunus_layer_ops(l->spec.type);
    char buf[PRUNUS_LAYER_NAME_MAX];
    g_strlcpy(l->name, prunus_arch_layer_name(arch, i, buf), sizeof l->name);
    if (l->spec.name[0] && !prunus_layer_name_valid(l->spec.name)) {
      fail_layer(error, bad, i, l,
                 "name '%s' is not valid: use 1-%d of A-Z a-z 0-9 _ . - (and not \"input\", "
                 "the model's input)",
                 l->spec.name, PRUNUS_LAYER_NAME_MAX - 1);
      goto out_free_names;
    }
    int twin = GPOINTER_TO_INT(g_hash_table_lookup(names, l->name));
    if (twin) {
      fail_layer(error, bad, i, l, "layer %d has the same name; names must be unique", twin - 1);
      goto out_free_names;
    }
    g_hash_table_insert(names, l->name, GINT_TO_POINTER(i + 1));
    if (l->spec.n_inputs < 0 || l->spec.n_inputs > PRUNUS_LAYER_MAX_INPUTS) {
      fail_layer(error, bad, i, l, "takes %d inputs; at most %d are allowed", l->spec.n_inputs,
                 PRUNUS_LAYER_MAX_INPUTS);
      goto out_free_names;
    }
    l->n_in = spec_inputs(arch, i, l->from);
    PrunusShape ins[PRUNUS_LAYER_MAX_INPUTS];
    const char *in_names[PRUNUS_LAYER_MAX_INPUTS];
    for (int k = 0; k < l->n_in; k++) {
      int f = l->from[k];
      if (f < PRUNUS_LAYER_INPUT || f >= i) {
        fail_layer(error, bad, i, l,
                   "input %d is layer %d, which does not come before it (inputs must come "
                   "first: the layers form a graph without cycles)",
                   k, f);
        goto out_free_names;
      }
      ins[k] = f < 0 ? arch->input : layers[f].out;
      in_names[k] = f < 0 ? "input" : layers[f].name;
      l->in_c[k] = ins[k].c;
    }
    l->in = ins[0];
    if (!l->ops->forward_n && l->n_in != 1) {
      fail_layer(error, bad, i, l, "takes one input, found %d", l->n_in);
      goto out_free_names;
    }
    if (!follows_ok(layers, i, bad, error)) goto out_free_names;
    GError *local = NULL;
    if (!l->ops->infer(l, ins, in_names, &local)) {
      g_propagate_prefixed_error(error, local, "model layer %s (%s): ", l->name, l->ops->type_name);
      *bad = i;
      goto out_free_names;
    }
    l->w_off = off;
    off += l->w_len;
    l->b_off = off;
    off += l->b_len;
  }
  *n_params = off;
  for (int i = 0; i < arch->n_layers; i++) {
    layers[i].buf_off = off;
    off += layers[i].buf_len;
  }
  *n_buffers = off - *n_params;
  /* every output but the model's must be read: a branch that leads nowhere is a mistake */
  gboolean *used = g_new0(gboolean, arch->n_layers);
  for (int i = 0; i < arch->n_layers; i++)
    for (int k = 0; k < layers[i].n_in; k++)
      if (layers[i].from[k] >= 0) used[layers[i].from[k]] = TRUE;
  ok = TRUE;
  for (int i = 0; ok && i < arch->n_layers - 1; i++)
    if (!used[i])
      ok = fail_layer(error, bad, i, &layers[i],
                      "its output is never used; only the last layer (the model's output) may "
                      "have no reader");
  g_free(used);

out_free_names:
  g_hash_table_destroy(names);
  return ok;
}

gboolean prunus_arch_check(const PrunusArch *a, int *bad_layer, GError **error) {
  PrunusLayer *layers = g_new0(PrunusLayer, MAX(a->n_layers, 1));
  size_t np, nb;
  int bad;
  gboolean ok = layers_build(a, layers, &np, &nb, &bad, error);
  g_free(layers);
  if (bad_layer) *bad_layer = ok ? -1 : bad;
  return ok;
}

/* Slot s (0: the input, i + 1: layer i's output) of a flatten layer whose input no
 * other layer reads holds no copy: acts[s] (and dacts[s]) share its input's buffer. */
static gboolean slot_is_alias(const PrunusModel *m, int slot) {
  if (slot <= 0 || slot > m->n_layers) return FALSE;
  const PrunusLayer *l = &m->layers[slot - 1];
  return l->spec.type == PRUNUS_LAYER_FLATTEN && m->n_uses[l->from[0] + 1] == 1;
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
  if (m->gtmp)
    for (int i = 0; i < m->n_gtmp; i++) free(m->gtmp[i]);
  g_clear_pointer(&m->acts, g_free);
  g_clear_pointer(&m->dacts, g_free);
  g_clear_pointer(&m->scratch, g_free);
  g_clear_pointer(&m->scratch_len, g_free);
  g_clear_pointer(&m->gtmp, g_free);
  m->max_batch = 0;
}

/* Floats per sample of slot s. */
static size_t act_size(const PrunusModel *m, int s) {
  return s == 0 ? prunus_shape_size(m->arch.input) : prunus_shape_size(m->layers[s - 1].out);
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
    int from = slot_is_alias(m, i) ? m->layers[i - 1].from[0] + 1 : -1;
    m->acts[i] = from >= 0 ? m->acts[from] : slab_new((size_t)B * act_size(m, i));
    m->dacts[i] = from >= 0 ? m->dacts[from] : slab_new((size_t)B * act_size(m, i));
  }
  for (int i = 0; i < m->n_layers; i++) {
    size_t n = m->layers[i].ops->scratch_size(&m->layers[i], B);
    m->scratch_len[i] = n;
    m->scratch[i] = n ? slab_new(n) : NULL;
  }
  /* fan-out: a layer may find each input's gradient already written by another reader */
  size_t widest = 0;
  for (int s = 0; s <= m->n_layers; s++)
    if (m->n_uses[s] > 1) widest = MAX(widest, act_size(m, s));
  m->gtmp = g_new0(float *, MAX(m->n_gtmp, 1));
  for (int t = 0; t < m->n_gtmp; t++) m->gtmp[t] = slab_new((size_t)B * widest);
}

/* The backward computes slot s's gradient when a layer with parameters lies upstream
 * of s (or produced it): the slot's flag GRAD_NEEDED. */
enum { GRAD_NEEDED = 1, GRAD_WRITTEN = 2 };

static gboolean owns_params(const PrunusLayer *l) { return l->w_len + l->b_len > 0; }

PrunusModel *prunus_model_new(const PrunusArch *arch, int max_batch, uint64_t seed,
                              GError **error) {
  if (!prunus_arch_check_size(arch, max_batch, NULL, NULL, error)) return NULL;
  PrunusLayer *layers = g_new0(PrunusLayer, MAX(arch->n_layers, 1));
  size_t n_params, n_buffers;
  int bad;
  if (!layers_build(arch, layers, &n_params, &n_buffers, &bad, error)) {
    g_free(layers);
    return NULL;
  }
  PrunusModel *m = g_new0(PrunusModel, 1);
  m->arch = prunus_arch_copy(arch);
  m->n_layers = arch->n_layers;
  m->layers = layers;
  size_t out_size = prunus_shape_size(layers[m->n_layers - 1].out);
  m->n_uses = g_new0(int, m->n_layers + 1);
  m->slot_flags = g_new0(uint8_t, m->n_layers + 1);
  if (arch->n_classes > 0 && out_size != (size_t)arch->n_classes) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "the model ends with %zu outputs but %d classes are expected", out_size,
                arch->n_classes);
    prunus_model_free(m);
    return NULL;
  }
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &layers[i];
    for (int k = 0; k < l->n_in; k++) m->n_uses[l->from[k] + 1]++;
    gboolean needed = owns_params(l);
    for (int k = 0; k < l->n_in; k++) needed |= m->slot_flags[l->from[k] + 1] & GRAD_NEEDED;
    m->slot_flags[i + 1] = needed ? GRAD_NEEDED : 0;
  }
  for (int i = 0; i < m->n_layers; i++) {
    int n = 0;
    for (int k = 0; k < layers[i].n_in; k++) n += m->n_uses[layers[i].from[k] + 1] > 1;
    m->n_gtmp = MAX(m->n_gtmp, n);
  }
  m->arch.n_classes = (int)out_size;
  m->n_params = n_params;
  m->n_buffers = n_buffers;
  m->params = slab_new(n_params + n_buffers);
  m->buffers = m->params + n_params;
  m->grads = slab_new(n_params);
  m->mask = slab_new(n_params);
  m->opt_m = slab_new(n_params);
  m->opt_v = slab_new(n_params);
  for (size_t i = 0; i < n_params; i++) m->mask[i] = 1.0f;
  prunus_model_init_params(m, seed);
  prunus_model_reserve_batch(m, max_batch > 0 ? max_batch : 1);
  return m;
}

PrunusModel *prunus_model_clone(const PrunusModel *m, GError **error) {
  PrunusModel *c = prunus_model_new(&m->arch, m->max_batch, 0, error);
  if (!c) return NULL;
  memcpy(c->params, m->params, sizeof(float) * (m->n_params + m->n_buffers));
  memcpy(c->mask, m->mask, sizeof(float) * m->n_params);
  prunus_model_set_training(c, m->training);
  for (int i = 0; i < m->n_layers; i++) c->layers[i].team = m->layers[i].team;
  return c;
}

void prunus_model_free(PrunusModel *m) {
  if (!m) return;
  workspace_free(m);
  free(m->params);
  free(m->grads);
  free(m->mask);
  free(m->opt_m);
  free(m->opt_v);
  g_free(m->n_uses);
  g_free(m->slot_flags);
  g_free(m->layers);
  prunus_arch_clear(&m->arch);
  g_free(m);
}

void prunus_model_init_params(PrunusModel *m, uint64_t seed) {
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "init"));
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayer *l = &m->layers[i];
    if (l->ops->reset)
      l->ops->reset(l, m->params);
    else
      memset(m->params + l->b_off, 0, sizeof(float) * l->b_len);
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
  }
  prunus_model_apply_mask(m);
}

/* ------------------------------------------------------------------------ */
/* running */

void prunus_model_forward(PrunusModel *m, const float *x, int B) {
  prunus_model_forward_to(m, x, B, m->n_layers);
}

void prunus_model_forward_to(PrunusModel *m, const float *x, int B, int n_layers) {
  prunus_model_reserve_batch(m, B);
  if (x != m->acts[0]) /* callers may fill the input slot in place */
    memcpy(m->acts[0], x, sizeof(float) * (size_t)B * act_size(m, 0));
  const int stop = MIN(n_layers, m->n_layers);
  for (int i = 0; i < stop; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (prunus_model_layer_bypassed(m, i)) continue; /* linked neighbours do its work */
    if (l->ops->forward_n) {
      const float *xs[PRUNUS_LAYER_MAX_INPUTS];
      for (int k = 0; k < l->n_in; k++) xs[k] = m->acts[l->from[k] + 1];
      l->ops->forward_n(l, m->params, xs, m->acts[i + 1], m->scratch[i], B);
    } else {
      l->ops->forward(l, m->params, m->acts[l->from[0] + 1], m->acts[i + 1], m->scratch[i], B);
    }
    if (m->training && l->ops->update_buffers)
      l->ops->update_buffers(l, m->params + l->buf_off, m->scratch[i], B);
  }
}

gboolean prunus_model_layer_bypassed(const PrunusModel *m, int i) {
  const PrunusLayer *l = &m->layers[i];
  if (l->spec.type != PRUNUS_LAYER_RELU || l->n_in != 1 || l->from[0] < 0) return FALSE;
  const PrunusSpDense *up = m->layers[l->from[0]].sparse;
  return up && up->down;
}

int prunus_model_first_param_layer(const PrunusModel *m) {
  for (int i = 0; i < m->n_layers; i++)
    if (owns_params(&m->layers[i])) return i;
  return -1;
}

gboolean prunus_model_input_grad_needed(const PrunusModel *m, int layer, int k) {
  g_return_val_if_fail(layer >= 0 && layer < m->n_layers && k >= 0 && k < m->layers[layer].n_in,
                       FALSE);
  return (m->slot_flags[m->layers[layer].from[k] + 1] & GRAD_NEEDED) != 0;
}

void prunus_model_backward(PrunusModel *m, const float *dlogits, int B) {
  prunus_model_backward_each(m, dlogits, B, NULL, NULL);
}

/* dst (n) += src (n). */
static void add_into(float *restrict dst, const float *restrict src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void prunus_model_backward_each(PrunusModel *m, const float *dlogits, int B,
                                PrunusLayerGradsDone done, void *user) {
  g_return_if_fail(B <= m->max_batch);
  for (int s = 0; s <= m->n_layers; s++) m->slot_flags[s] &= (uint8_t)~GRAD_WRITTEN;
  for (int i = m->n_layers - 1; i >= 0; i--) {
    /* nothing upstream of layer i has parameters: its gradients are of no use (in a
     * sequence: the layers below the first one with parameters) */
    if (!(m->slot_flags[i + 1] & GRAD_NEEDED)) continue;
    const PrunusLayer *l = &m->layers[i];
    if (prunus_model_layer_bypassed(m, i)) continue; /* linked neighbours do its work */
    const float *dy = i == m->n_layers - 1 ? dlogits : m->dacts[i + 1];
    float *dx[PRUNUS_LAYER_MAX_INPUTS];
    float *added[PRUNUS_LAYER_MAX_INPUTS] = {NULL}; /* dx[k] to add into this slot's gradient */
    int t = 0;
    for (int k = 0; k < l->n_in; k++) {
      int s = l->from[k] + 1;
      if (!(m->slot_flags[s] & GRAD_NEEDED)) {
        dx[k] = NULL;
      } else if (!(m->slot_flags[s] & GRAD_WRITTEN)) {
        dx[k] = m->dacts[s];
        m->slot_flags[s] |= GRAD_WRITTEN;
      } else { /* fan-out: another reader wrote it first; this one's part is added */
        dx[k] = m->gtmp[t++];
        added[k] = m->dacts[s];
      }
    }
    if (l->ops->backward_n) {
      const float *xs[PRUNUS_LAYER_MAX_INPUTS];
      for (int k = 0; k < l->n_in; k++) xs[k] = m->acts[l->from[k] + 1];
      l->ops->backward_n(l, m->params, m->grads, xs, m->acts[i + 1], dy, dx, m->scratch[i], B);
    } else {
      l->ops->backward(l, m->params, m->grads, m->acts[l->from[0] + 1], m->acts[i + 1], dy, dx[0],
                       m->scratch[i], B);
    }
    for (int k = 0; k < l->n_in; k++)
      if (added[k]) add_into(added[k], dx[k], (size_t)B * act_size(m, l->from[k] + 1));
    if (done && owns_params(l)) done(m, i, user);
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

gboolean prunus_model_set_training(PrunusModel *m, gboolean training) {
  gboolean was = m->training;
  m->training = training;
  for (int i = 0; i < m->n_layers; i++) m->layers[i].training = training;
  return was;
}

gboolean prunus_model_is_sequence(const PrunusModel *m) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].n_in != 1 || m->layers[i].from[0] != i - 1) return FALSE;
  return TRUE;
}

gboolean prunus_model_check_plain(const PrunusModel *m, gboolean foldable, const char *who,
                                  GError **error) {
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    const char *why = NULL;
    char *owned = NULL;
    switch (l->spec.type) {
    case PRUNUS_LAYER_DENSE:
    case PRUNUS_LAYER_MAXPOOL2D:
    case PRUNUS_LAYER_RELU:
    case PRUNUS_LAYER_FLATTEN:
      break;
    case PRUNUS_LAYER_CONV2D:
      if (l->spec.no_bias && !foldable) why = "is a conv2d without bias";
      break;
    case PRUNUS_LAYER_BATCHNORM:
      if (foldable) break;
      /* fall through */
    default:
      why = owned = g_strdup_printf(
          "is a%s %s layer", strchr("aeiou", l->ops->type_name[0]) ? "n" : "", l->ops->type_name);
      break;
    }
    if (!why && (l->n_in != 1 || l->from[0] != i - 1))
      why = owned = g_strdup_printf("takes the output of '%s', not of the layer before it",
                                    l->from[0] < 0 ? "input" : m->layers[l->from[0]].name);
    if (why) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "%s: only sequences of dense, conv2d, %smaxpool2d, relu and flatten layers are "
                  "supported; model layer %s %s (such models run through prunus train, eval and "
                  "run)",
                  who, foldable ? "batchnorm, " : "", l->name, why);
      g_free(owned);
      return FALSE;
    }
  }
  return TRUE;
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

/* ------------------------------------------------------------------------ */
/* size limits */

static gboolean over(GError **error, int *bad_layer, int layer, const char *what, double found,
                     double limit) {
  if (bad_layer) *bad_layer = layer;
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "%s%s is %.0f, more than the limit of %.0f",
              layer >= 0 ? "" : "model input: ", what, found, limit);
  return FALSE;
}

gboolean prunus_arch_check_size(const PrunusArch *arch, int max_batch, size_t *n_params,
                                int *bad_layer, GError **error) {
  const double B = max_batch > 0 ? max_batch : 1;
  if (bad_layer) *bad_layer = -1;
  if (n_params) *n_params = 0;
  if (max_batch > PRUNUS_MODEL_MAX_BATCH)
    return over(error, bad_layer, -1, "the batch size", max_batch, PRUNUS_MODEL_MAX_BATCH);
  if (arch->n_layers > PRUNUS_MODEL_MAX_LAYERS)
    return over(error, bad_layer, -1, "the number of layers", arch->n_layers,
                PRUNUS_MODEL_MAX_LAYERS);
  PrunusShape in = arch->input;
  if (in.c > PRUNUS_MODEL_MAX_WIDTH || in.h > PRUNUS_MODEL_MAX_WIDTH ||
      in.w > PRUNUS_MODEL_MAX_WIDTH)
    return over(error, bad_layer, -1, "an input size", MAX(in.c, MAX(in.h, in.w)),
                PRUNUS_MODEL_MAX_WIDTH);
  if (in.c <= 0 || in.h <= 0 || in.w <= 0) return TRUE; /* prunus_model_new says why */
  /* in doubles: products of ints up to 2^20 stay exact, and none can overflow */
  double act = (double)in.c * in.h * in.w;
  if (act > PRUNUS_MODEL_MAX_ACTIVATIONS)
    return over(error, bad_layer, -1, "the floats per sample", act, PRUNUS_MODEL_MAX_ACTIVATIONS);
  /* per-spec limits first: the shape inference below multiplies them in ints */
  double widest_in = in.c; /* a bound on any layer's input channels (concat adds them) */
  for (int i = 0; i < arch->n_layers; i++) {
    const PrunusLayerSpec *l = &arch->layers[i];
    char what[96];
    if (l->units > PRUNUS_MODEL_MAX_WIDTH || l->channels > PRUNUS_MODEL_MAX_WIDTH) {
      g_snprintf(what, sizeof what, "model layer %d: its width", i);
      return over(error, bad_layer, i, what, MAX(l->units, l->channels), PRUNUS_MODEL_MAX_WIDTH);
    }
    if (l->kernel > PRUNUS_MODEL_MAX_KERNEL || l->stride > PRUNUS_MODEL_MAX_KERNEL ||
        l->padding > PRUNUS_MODEL_MAX_KERNEL) {
      g_snprintf(what, sizeof what, "model layer %d: its kernel, stride or padding", i);
      return over(error, bad_layer, i, what, MAX(l->kernel, MAX(l->stride, l->padding)),
                  PRUNUS_MODEL_MAX_KERNEL);
    }
    widest_in += (double)MAX(l->units, l->channels);
  }
  for (int i = 0; i < arch->n_layers; i++) {
    const PrunusLayerSpec *l = &arch->layers[i];
    double kk = (double)l->kernel * l->kernel;
    if (l->type == PRUNUS_LAYER_CONV2D &&
        (MIN(widest_in, (double)G_MAXINT) * kk > G_MAXINT || (double)l->channels * kk > G_MAXINT)) {
      char what[96];
      g_snprintf(what, sizeof what, "model layer %d: a unit's weights", i);
      return over(error, bad_layer, i, what,
                  MAX(MIN(widest_in, (double)G_MAXINT), l->channels) * kk, G_MAXINT);
    }
  }
  /* the graph's shapes: small per-layer records, nothing sized by the model yet */
  PrunusLayer *layers = g_new0(PrunusLayer, MAX(arch->n_layers, 1));
  size_t np = 0, nb = 0;
  int bad = -1;
  GError *local = NULL;
  if (!layers_build(arch, layers, &np, &nb, &bad, &local)) {
    g_clear_error(&local); /* prunus_model_new reports the shape error itself */
    g_free(layers);
    return TRUE;
  }
  double params = 0.0, workspace = 2.0 * B * act; /* the input and its gradient */
  gboolean ok = TRUE;
  for (int i = 0; ok && i < arch->n_layers; i++) {
    const PrunusLayer *l = &layers[i];
    char what[96];
    double out_act = (double)l->out.c * l->out.h * l->out.w;
    params += (double)l->w_len + (double)l->b_len;
    if (n_params) *n_params += l->w_len + l->b_len;
    if (out_act > PRUNUS_MODEL_MAX_ACTIVATIONS) {
      g_snprintf(what, sizeof what, "model layer %d: its output floats per sample", i);
      ok = over(error, bad_layer, i, what, out_act, PRUNUS_MODEL_MAX_ACTIVATIONS);
    } else if (params > PRUNUS_MODEL_MAX_PARAMS) {
      g_snprintf(what, sizeof what, "model layer %d: the parameters up to it", i);
      ok = over(error, bad_layer, i, what, params, PRUNUS_MODEL_MAX_PARAMS);
    } else {
      double kk = (double)l->spec.kernel * l->spec.kernel;
      workspace += 2.0 * B * out_act;          /* activations and their gradients */
      if (l->spec.type == PRUNUS_LAYER_CONV2D) /* im2col rows and the product */
        workspace += B * l->out.h * l->out.w * ((double)l->in.c * kk + l->out.c);
      else if (l->spec.type == PRUNUS_LAYER_MAXPOOL2D)
        workspace += B * out_act; /* argmax */
      if (workspace > PRUNUS_MODEL_MAX_WORKSPACE) {
        g_snprintf(what, sizeof what, "model layer %d: the workspace floats for a batch of %d", i,
                   max_batch > 0 ? max_batch : 1);
        ok = over(error, bad_layer, i, what, workspace, PRUNUS_MODEL_MAX_WORKSPACE);
      }
    }
  }
  g_free(layers);
  return ok;
}
