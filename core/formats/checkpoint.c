/* checkpoint.c: a model's parameters, masks and buffers (batchnorm's running
 * statistics) as a safetensors file with PyTorch-style names and shapes; the
 * architecture travels in the metadata and everything is validated on load (and the
 * same values are checked on save). */
#include "errors.h"
#include "checkpoint.h"
#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#define CKPT_FORMAT "prunus"
#define CKPT_KEY_FORMAT "format"
#define CKPT_KEY_VERSION "prunus_version"
#define CKPT_KEY_ARCH "architecture"
#define CKPT_KEY_NORM "input_normalize"
#define CKPT_KEY_NORM_MEAN "input_mean"
#define CKPT_KEY_NORM_STD "input_std"

/* The weight's PyTorch shape: dense (out, in), conv (cout, cin, k, k). */
static int weight_shape(const PrunusLayer *l, int64_t *shape) {
  if (l->spec.type == PRUNUS_LAYER_CONV2D) {
    shape[0] = l->out.c;
    shape[1] = l->in.c;
    shape[2] = l->spec.kernel;
    shape[3] = l->spec.kernel;
    return 4;
  }
  shape[0] = l->out.c;
  shape[1] = l->in.c;
  return 2;
}

/* Finite parameters, masks of 0/1 only, zero wherever the mask is 0. */
static gboolean check_layer_values(const char *path, const PrunusLayer *l, const float *w,
                                   const float *b, const float *mask, GError **error) {
  for (size_t j = 0; j < l->w_len; j++) {
    if (mask[j] != 0.0f && mask[j] != 1.0f)
      return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                              "tensor \"%s.mask\" element %zu is %g; a mask holds only 0 or 1",
                              l->name, j, (double)mask[j]);
    if (!isfinite(w[j]))
      return prunus_fail_path(error, PRUNUS_ERROR_NUMERIC, path,
                              "tensor \"%s.weight\" element %zu is %g; parameters must be finite",
                              l->name, j, (double)w[j]);
    if (mask[j] == 0.0f && w[j] != 0.0f)
      return prunus_fail_path(
          error, PRUNUS_ERROR_FORMAT, path,
          "tensor \"%s.weight\" element %zu is %g but \"%s.mask\" prunes it (0)", l->name, j,
          (double)w[j], l->name);
  }
  for (size_t j = 0; j < l->b_len; j++) {
    if (!isfinite(b[j]))
      return prunus_fail_path(error, PRUNUS_ERROR_NUMERIC, path,
                              "tensor \"%s.bias\" element %zu is %g; parameters must be finite",
                              l->name, j, (double)b[j]);
  }
  return TRUE;
}

/* batchnorm's tensors, named as PyTorch's: "<name>.weight" and "<name>.bias" are its
 * scale and shift (its b span, halves of C), "<name>.running_mean" and
 * "<name>.running_var" its buffers. Finite, and a variance >= 0. */
static gboolean check_norm_values(const char *path, const PrunusLayer *l, const float *params,
                                  GError **error) {
  static const char *const what[4] = {"weight", "bias", "running_mean", "running_var"};
  int C = l->in.c;
  for (int t = 0; t < 4; t++) {
    const float *v = params + (t < 2 ? l->b_off : l->buf_off) + (size_t)(t % 2) * C;
    for (int j = 0; j < C; j++) {
      if (!isfinite(v[j]))
        return prunus_fail_path(error, PRUNUS_ERROR_NUMERIC, path,
                                "tensor \"%s.%s\" element %d is %g; it must be finite", l->name,
                                what[t], j, (double)v[j]);
      if (t == 3 && v[j] < 0.0f)
        return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                                "tensor \"%s.running_var\" element %d is %g; a variance is >= 0",
                                l->name, j, (double)v[j]);
    }
  }
  return TRUE;
}

/* The tensors of layer l: (name suffix, shape, where in the slabs). */
typedef struct {
  const char *suffix; /* "weight", "bias", "mask", "running_mean", "running_var" */
  int ndim;
  int64_t shape[PRUNUS_ST_MAX_DIMS];
  gboolean in_mask; /* the slab is the mask, not params */
  size_t off, len;
} LayerTensor;

/* Layer l's tensors into t (up to 4); returns how many. */
static int layer_tensors(const PrunusLayer *l, LayerTensor *t) {
  int n = 0;
  if (l->ops->has_params) {
    t[n] = (LayerTensor){"weight", 0, {0}, FALSE, l->w_off, l->w_len};
    t[n].ndim = weight_shape(l, t[n].shape);
    n++;
    if (l->b_len) {
      t[n] = (LayerTensor){"bias", 1, {(int64_t)l->b_len}, FALSE, l->b_off, l->b_len};
      n++;
    }
    t[n] = t[0];
    t[n].suffix = "mask", t[n].in_mask = TRUE;
    return n + 1;
  }
  if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
    size_t C = (size_t)l->in.c;
    t[n++] = (LayerTensor){"weight", 1, {(int64_t)C}, FALSE, l->b_off, C};
    t[n++] = (LayerTensor){"bias", 1, {(int64_t)C}, FALSE, l->b_off + C, C};
    t[n++] = (LayerTensor){"running_mean", 1, {(int64_t)C}, FALSE, l->buf_off, C};
    t[n++] = (LayerTensor){"running_var", 1, {(int64_t)C}, FALSE, l->buf_off + C, C};
  }
  g_assert(l->b_len + l->buf_len == 0 || n > 0); /* every parameter and buffer is saved */
  return n;
}

/* ------------------------------------------------------------------------- */
/* Save */

gboolean prunus_checkpoint_save(const PrunusModel *m, const char *path, GHashTable *extra,
                                GError **error) {
  g_return_val_if_fail(m != NULL && path != NULL, FALSE);
  g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

  gboolean ok = FALSE;
  PrunusTensor *tensors = g_new0(PrunusTensor, 4 * (size_t)m->n_layers + 1);
  int n = 0;
  GHashTable *meta = g_hash_table_new(g_str_hash, g_str_equal);
  char *arch = prunus_arch_to_string(&m->arch);

  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->ops->has_params) {
      const float *w = m->params + l->w_off, *b = m->params + l->b_off, *mk = m->mask + l->w_off;
      if (!check_layer_values(path, l, w, b, mk, error)) goto out_free_tensors;
    } else if (l->spec.type == PRUNUS_LAYER_BATCHNORM &&
               !check_norm_values(path, l, m->params, error)) {
      goto out_free_tensors;
    }
    LayerTensor lt[4];
    int k = layer_tensors(l, lt);
    for (int j = 0; j < k; j++) {
      PrunusTensor *t = &tensors[n++];
      t->name = g_strdup_printf("%s.%s", l->name, lt[j].suffix);
      t->ndim = lt[j].ndim;
      memcpy(t->shape, lt[j].shape, sizeof t->shape);
      t->data = (lt[j].in_mask ? m->mask : m->params) + lt[j].off;
    }
  }

  /* Extra entries first, so the values that describe this model win over stale
   * copies (e.g. a metadata table handed back from prunus_checkpoint_load). */
  if (extra) {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, extra);
    while (g_hash_table_iter_next(&it, &k, &v)) g_hash_table_insert(meta, k, v);
  }
  g_hash_table_insert(meta, CKPT_KEY_FORMAT, CKPT_FORMAT);
  g_hash_table_insert(meta, CKPT_KEY_VERSION, (gpointer)prunus_version());
  g_hash_table_insert(meta, CKPT_KEY_ARCH, arch);

  ok = prunus_safetensors_write(path, tensors, n, meta, error);

out_free_tensors:
  for (int i = 0; i < n; i++) g_free(tensors[i].name);
  g_free(tensors);
  g_hash_table_destroy(meta);
  g_free(arch);
  return ok;
}

/* ------------------------------------------------------------------------- */
/* Load */

/* Find name in f with exactly the given shape and mark it used. */
static const float *take_tensor(const char *path, const PrunusTensorFile *f, GHashTable *used,
                                const char *name, const int64_t *shape, int ndim, GError **error) {
  const PrunusTensor *t = prunus_tensor_file_find(f, name);
  if (!t) {
    char *want = prunus_shape_text(shape, ndim);
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "tensor \"%s\" is missing (the architecture needs shape %s)", name, want);
    g_free(want);
    return NULL;
  }
  gboolean same = t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
  if (!same) {
    char *want = prunus_shape_text(shape, ndim);
    char *found = prunus_shape_text(t->shape, t->ndim);
    prunus_fail_path(error, PRUNUS_ERROR_MISMATCH, path,
                     "tensor \"%s\" has shape %s but the architecture needs %s", name, found, want);
    g_free(found);
    g_free(want);
    return NULL;
  }
  g_hash_table_add(used, t->name);
  return t->data;
}

/* The architecture from the file's metadata, checked against expected. */
static gboolean load_arch(const char *path, GHashTable *meta, const PrunusArch *expected,
                          PrunusArch *out, GError **error) {
  const char *format = g_hash_table_lookup(meta, CKPT_KEY_FORMAT);
  if (format && strcmp(format, CKPT_FORMAT) != 0)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "metadata \"%s\" is \"%s\", expected \"%s\"", CKPT_KEY_FORMAT, format,
                            CKPT_FORMAT);
  const char *text = g_hash_table_lookup(meta, CKPT_KEY_ARCH);
  if (!text)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "metadata has no \"%s\" entry: not a prunus checkpoint?",
                            CKPT_KEY_ARCH);
  GError *local = NULL;
  if (!prunus_arch_from_string(text, out, &local)) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "metadata \"%s\": %s", CKPT_KEY_ARCH,
                     local->message);
    g_error_free(local);
    return FALSE;
  }
  if (!expected) return TRUE;

  /* Compare canonical forms, so equivalent spellings agree. */
  char *found = prunus_arch_to_string(out);
  char *want = prunus_arch_to_string(expected);
  gboolean same = strcmp(found, want) == 0;
  if (!same)
    prunus_fail_path(error, PRUNUS_ERROR_MISMATCH, path,
                     "architecture \"%s\" does not match the expected \"%s\"", found, want);
  g_free(want);
  g_free(found);
  if (!same) {
    prunus_arch_clear(out);
    return FALSE;
  }
  /* The expected one also knows what the string does not carry (the init scheme). */
  prunus_arch_clear(out);
  *out = prunus_arch_copy(expected);
  return TRUE;
}

PrunusModel *prunus_checkpoint_load(const char *path, int max_batch, const PrunusArch *expected,
                                    GHashTable **metadata_out, GError **error) {
  g_return_val_if_fail(path != NULL, NULL);
  g_return_val_if_fail(error == NULL || *error == NULL, NULL);

  if (metadata_out) *metadata_out = NULL;
  PrunusModel *m = NULL;
  GHashTable *used = NULL;
  PrunusTensorFile *f = prunus_safetensors_read(path, error);
  if (!f) return NULL;

  PrunusArch arch = {0};
  if (!load_arch(path, f->metadata, expected, &arch, error)) goto out_free_file;

  GError *local = NULL;
  /* every parameter is in the file: an architecture the file cannot hold is refused
   * before a model of its size is allocated */
  size_t n_params = 0;
  uint64_t floats = 0;
  for (int i = 0; i < f->n_tensors; i++) floats += prunus_tensor_numel(&f->tensors[i]);
  if (!prunus_arch_check_size(&arch, max_batch, &n_params, NULL, &local)) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "metadata \"%s\": %s", CKPT_KEY_ARCH,
                     local->message);
    g_error_free(local);
    goto out_clear_arch;
  }
  if (n_params > floats) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "metadata \"%s\" needs %zu parameters, but the file holds %" G_GUINT64_FORMAT
                     " floats in all",
                     CKPT_KEY_ARCH, n_params, floats);
    goto out_clear_arch;
  }
  m = prunus_model_new(&arch, max_batch, 0, &local);
  if (!m) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "cannot build its architecture: %s",
                     local->message);
    g_error_free(local);
    goto out_clear_arch;
  }

  used = g_hash_table_new(g_str_hash, g_str_equal);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    LayerTensor lt[4];
    int k = layer_tensors(l, lt);
    for (int j = 0; j < k; j++) {
      char *name = g_strdup_printf("%s.%s", l->name, lt[j].suffix);
      const float *v = take_tensor(path, f, used, name, lt[j].shape, lt[j].ndim, error);
      g_free(name);
      if (!v) goto out_free_model;
      memcpy((lt[j].in_mask ? m->mask : m->params) + lt[j].off, v, sizeof(float) * lt[j].len);
    }
    if (l->ops->has_params) {
      if (!check_layer_values(path, l, m->params + l->w_off, m->params + l->b_off,
                              m->mask + l->w_off, error))
        goto out_free_model;
    } else if (l->spec.type == PRUNUS_LAYER_BATCHNORM &&
               !check_norm_values(path, l, m->params, error)) {
      goto out_free_model;
    }
  }
  for (int i = 0; i < f->n_tensors; i++) {
    if (!g_hash_table_contains(used, f->tensors[i].name)) {
      char *a = prunus_arch_to_string(&m->arch);
      prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                       "unknown tensor \"%s\" (architecture \"%s\" has no such parameter)",
                       f->tensors[i].name, a);
      g_free(a);
      goto out_free_model;
    }
  }

  if (metadata_out) {
    *metadata_out = f->metadata;
    f->metadata = NULL;
  }
  goto out_free_used;

out_free_model:
  prunus_model_free(m);
  m = NULL;
out_free_used:
  if (used) g_hash_table_destroy(used);
out_clear_arch:
  prunus_arch_clear(&arch);
out_free_file:
  prunus_tensor_file_free(f);
  return m;
}

/* ------------------------------------------------------------------------- */
/* Input normalisation */

/* Nine significant digits single out every float: the text reads back to its bits. */
static char *float_text(float v) {
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup(g_ascii_formatd(buf, sizeof buf, "%.9g", (double)v));
}

void prunus_checkpoint_metadata_set_norm(GHashTable *metadata, const PrunusNorm *norm) {
  g_return_if_fail(metadata != NULL && norm != NULL);
  g_return_if_fail(norm->kind >= PRUNUS_NORM_UNIT && norm->kind <= PRUNUS_NORM_STANDARD);
  /* the config's spelling, so the metadata reads as the config did */
  g_hash_table_insert(metadata, g_strdup(CKPT_KEY_NORM),
                      g_strdup(prunus_norm_kind_names[norm->kind]));
  g_hash_table_insert(metadata, g_strdup(CKPT_KEY_NORM_MEAN), float_text(norm->mean));
  g_hash_table_insert(metadata, g_strdup(CKPT_KEY_NORM_STD), float_text(norm->std));
}

/* The least double that rounds to an infinite float: FLT_MAX plus half its ulp. */
#define FLOAT_OVERFLOW 0x1.ffffffp+127

static gboolean read_float(GHashTable *metadata, const char *path, const char *key, float *out,
                           GError **error) {
  const char *text = g_hash_table_lookup(metadata, key);
  if (!text)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "metadata has \"%s\" but no \"%s\" entry", CKPT_KEY_NORM, key);
  char *end = NULL;
  double v = g_ascii_strtod(text, &end);
  if (end == text || *end != '\0' || !(fabs(v) < FLOAT_OVERFLOW))
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "metadata \"%s\" is \"%s\"; expected a finite number", key, text);
  *out = (float)v;
  return TRUE;
}

gboolean prunus_checkpoint_metadata_norm(GHashTable *metadata, const char *path, PrunusNorm *norm,
                                         gboolean *found, GError **error) {
  *found = FALSE;
  const char *kind = metadata ? g_hash_table_lookup(metadata, CKPT_KEY_NORM) : NULL;
  if (!kind) {
    if (metadata && (g_hash_table_contains(metadata, CKPT_KEY_NORM_MEAN) ||
                     g_hash_table_contains(metadata, CKPT_KEY_NORM_STD)))
      return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                              "metadata has \"%s\" and \"%s\" but no \"%s\" entry",
                              CKPT_KEY_NORM_MEAN, CKPT_KEY_NORM_STD, CKPT_KEY_NORM);
    return TRUE;
  }
  PrunusNorm n = {0};
  size_t k = 0;
  while (prunus_norm_kind_names[k] && strcmp(prunus_norm_kind_names[k], kind) != 0) k++;
  if (!prunus_norm_kind_names[k])
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "metadata \"%s\" is \"%s\"; expected \"unit\" or \"standard\"",
                            CKPT_KEY_NORM, kind);
  n.kind = (PrunusNormKind)k;
  if (!read_float(metadata, path, CKPT_KEY_NORM_MEAN, &n.mean, error) ||
      !read_float(metadata, path, CKPT_KEY_NORM_STD, &n.std, error))
    return FALSE;
  if (n.std <= 0.0f)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "metadata \"%s\" is \"%s\"; a standard deviation must be > 0",
                            CKPT_KEY_NORM_STD,
                            (const char *)g_hash_table_lookup(metadata, CKPT_KEY_NORM_STD));
  *norm = n;
  *found = TRUE;
  return TRUE;
}
