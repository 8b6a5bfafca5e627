/* run_config.c: parses the shared groups of a config (name, seed, dataset, model,
 * train) into a PrunusRunConfig, with range checks and per-layer key checks. */
#include "config-impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the run config: name, seed, dataset, model, train */

/* Every member of group must have been read by the parser that just ran. */
static gboolean check_group_read(PrunusConfig *c, config_setting_t *group, const char *what,
                                 GError **error) {
  int n = config_setting_length(group);
  for (int i = 0; i < n; i++) {
    config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
    if (g_hash_table_contains(c->read, m)) continue;
    GPtrArray *asked = g_hash_table_lookup(c->asked, group);
    GString *allowed = g_string_new(NULL);
    for (guint k = 0; asked && k < asked->len; k++)
      g_string_append_printf(allowed, "%s%s", k ? ", " : "", (char *)asked->pdata[k]);
    char *path = prunus_config_setting_path(m);
    char *hint = prunus_config_unknown_key_hint(c, m);
    prunus_config_fail_at(c, m, error, "unknown key '%s' in %s%s (allowed keys: %s)", path, what,
                          hint, allowed->str);
    g_free(hint);
    g_free(path);
    g_string_free(allowed, TRUE);
    return FALSE;
  }
  return TRUE;
}

static gboolean parse_dataset(PrunusConfig *c, config_setting_t *root, PrunusRunConfig *rc,
                              GError **error) {
  static const char *const formats[] = {"idx", NULL};
  config_setting_t *g = prunus_config_get_group(c, root, "dataset", TRUE, error);
  if (!g) return FALSE;
  int format, norm;
  if (!prunus_config_get_enum(c, g, "format", FALSE, 0, formats, &format, error)) return FALSE;
  const struct {
    const char *key;
    char **dst;
  } files[] = {{"train_images", &rc->train_images},
               {"train_labels", &rc->train_labels},
               {"test_images", &rc->test_images},
               {"test_labels", &rc->test_labels}};
  for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
    const char *p;
    if (!prunus_config_get_string(c, g, files[i].key, TRUE, NULL, &p, error)) return FALSE;
    if (!*p) {
      char *path = prunus_config_member_path(g, files[i].key);
      prunus_config_fail_at(c, config_setting_get_member(g, files[i].key), error,
                            "key '%s' must name a file, found an empty string", path);
      g_free(path);
      return FALSE;
    }
    *files[i].dst = prunus_config_resolve_path(c, p);
  }
  if (!prunus_config_get_int_min(c, g, "validation", FALSE, 0, 0, &rc->validation, error) ||
      !prunus_config_get_int_min(c, g, "train_limit", FALSE, 0, 0, &rc->train_limit, error) ||
      !prunus_config_get_int_min(c, g, "test_limit", FALSE, 0, 0, &rc->test_limit, error) ||
      !prunus_config_get_enum(c, g, "normalize", FALSE, PRUNUS_NORM_STANDARD,
                              prunus_norm_kind_names, &norm, error))
    return FALSE;
  rc->normalize = (PrunusNormKind)norm;
  return TRUE;
}

static gboolean parse_input_shape(PrunusConfig *c, config_setting_t *model, PrunusShape *out,
                                  GError **error) {
  config_setting_t *in = prunus_config_get_list(c, model, "input", TRUE, error);
  if (!in) return FALSE;
  if (config_setting_length(in) != 3) {
    char *path = prunus_config_setting_path(in);
    prunus_config_fail_at(c, in, error,
                          "key '%s' must be [channels, height, width], found %d elements", path,
                          config_setting_length(in));
    g_free(path);
    return FALSE;
  }
  int v[3];
  for (unsigned i = 0; i < 3; i++) {
    config_setting_t *e = config_setting_get_elem(in, i);
    prunus_config_mark_read(c, e);
    if (!prunus_config_setting_to_int(c, e, &v[i], error)) return FALSE;
    if (v[i] < 1 || v[i] > PRUNUS_MODEL_MAX_WIDTH) {
      char *path = prunus_config_setting_path(e);
      prunus_config_fail_at(c, e, error, "key '%s' = %d is out of range: must be in [1, %d]", path,
                            v[i], PRUNUS_MODEL_MAX_WIDTH);
      g_free(path);
      return FALSE;
    }
  }
  *out = (PrunusShape){v[0], v[1], v[2]};
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* model.layers: a list of layers, each taking the previous one's output unless it
 * names its inputs; uses of blocks (model.blocks) expand into their layers. The
 * expanded list is sorted so that every layer comes after its inputs. */

/* One layer as the config gives it, inputs still by name. */
typedef struct {
  PrunusLayerSpec spec;              /* inputs not yet resolved */
  config_setting_t *at;              /* the layer's group */
  config_setting_t *input_at;        /* its `input` key, or NULL */
  char *name;                        /* full name ("stage1.0.conv1"), or NULL: its index */
  int n_in;                          /* 0: the layer before it in the list */
  char *in[PRUNUS_LAYER_MAX_INPUTS]; /* full names; "input" = the model's input */
  char *where;                       /* " (block 'basic' used at f:l)" or "" */
} RawLayer;

/* A block use's integer setting, which the block's layers read as "$name". */
typedef struct {
  int value;
  config_setting_t *at;
  gboolean used;
} BlockParam;

/* The state of parsing model.layers. Fields after `raw` describe the block instance
 * being expanded (NULL / "" outside blocks). */
typedef struct {
  PrunusConfig *c;
  config_setting_t *blocks; /* model.blocks, or NULL */
  GHashTable *blocks_used;  /* set of block settings expanded at least once */
  GArray *raw;              /* RawLayer, in config order */
  GHashTable *params;       /* "channels" -> BlockParam */
  const char *block_name;
  const char *prefix;   /* the instance's name: layer "conv1" is "PREFIX.conv1" */
  GHashTable *local;    /* set of the names the block's layers give themselves */
  const char *block_in; /* what "$in" stands for: the instance's input */
  const char *where;
} ModelParse;

static void raw_layer_clear(gpointer p) {
  RawLayer *r = p;
  g_free(r->name);
  for (int k = 0; k < r->n_in; k++) g_free(r->in[k]);
  g_free(r->where);
}

/* The name raw layer i goes by while inputs are resolved: its own or its index. */
static char *raw_name(const ModelParse *mp, int i) {
  const RawLayer *r = &g_array_index(mp->raw, RawLayer, i);
  return r->name ? g_strdup(r->name) : g_strdup_printf("%d", i);
}

/* Append mp->where (" (block ... used at ...)") to an error raised inside a block. */
static gboolean fail_in_block(const ModelParse *mp, GError **error) {
  if (error && *error && mp->where && *mp->where) {
    char *msg = g_strconcat((*error)->message, mp->where, NULL);
    g_free((*error)->message);
    (*error)->message = msg;
  }
  return FALSE;
}

/* An integer key of a layer, >= lo; inside a block it may read "$name", a setting of
 * the block's use. */
static gboolean layer_int(ModelParse *mp, config_setting_t *l, const char *key, gboolean required,
                          int defval, int lo, int hi, int *out, GError **error) {
  PrunusConfig *c = mp->c;
  config_setting_t *s = config_setting_get_member(l, key);
  if (!s || config_setting_type(s) != CONFIG_TYPE_STRING)
    return prunus_config_get_int_in(c, l, key, required, defval, lo, hi, out, error);
  const char *text;
  if (!prunus_config_get_string(c, l, key, TRUE, NULL, &text, error)) return FALSE;
  char *path = prunus_config_setting_path(s);
  gboolean ok = FALSE;
  if (text[0] != '$' || !mp->params) {
    prunus_config_fail_at(c, s, error, "key '%s' must be an integer%s, found the string \"%s\"",
                          path, mp->params ? " or \"$name\" (a setting of the block's use)" : "",
                          text);
  } else {
    BlockParam *p = g_hash_table_lookup(mp->params, text + 1);
    if (!p) {
      prunus_config_fail_at(c, s, error, "key '%s' = \"%s\": the use of block '%s' sets no '%s'",
                            path, text, mp->block_name, text + 1);
    } else {
      p->used = TRUE;
      *out = p->value;
      ok = *out >= lo && *out <= hi;
      if (!ok)
        prunus_config_fail_at(c, p->at, error, "key '%s' = %d is out of range: must be in [%d, %d]",
                              path, *out, lo, hi);
    }
  }
  g_free(path);
  return ok;
}

/* The full name of an input as a block's layer writes it: "$in", one of the block's
 * own layers, or any other layer of the model. */
static char *input_full_name(const ModelParse *mp, const char *name) {
  if (!mp->prefix) return g_strdup(name);
  if (!strcmp(name, "$in")) return g_strdup(mp->block_in);
  if (g_hash_table_contains(mp->local, name)) return g_strdup_printf("%s.%s", mp->prefix, name);
  return g_strdup(name);
}

/* The `name` and `input` keys of layer group l into r. */
static gboolean parse_layer_links(ModelParse *mp, config_setting_t *l, RawLayer *r,
                                  GError **error) {
  PrunusConfig *c = mp->c;
  const char *name = NULL;
  if (!prunus_config_get_string(c, l, "name", FALSE, NULL, &name, error)) return FALSE;
  if (name) {
    r->name = mp->prefix ? g_strdup_printf("%s.%s", mp->prefix, name) : g_strdup(name);
    if (!prunus_layer_name_valid(r->name)) {
      config_setting_t *s = config_setting_get_member(l, "name");
      char *path = prunus_config_setting_path(s);
      prunus_config_fail_at(c, s, error,
                            "key '%s' = \"%s\" is not a valid layer name: use 1-%d of A-Z a-z "
                            "0-9 _ . - (\"input\" is the model's input)",
                            path, r->name, PRUNUS_LAYER_NAME_MAX - 1);
      g_free(path);
      return FALSE;
    }
  }
  config_setting_t *in = config_setting_get_member(l, "input");
  r->input_at = in;
  if (!in || config_setting_type(in) == CONFIG_TYPE_STRING) {
    const char *one = NULL;
    if (!prunus_config_get_string(c, l, "input", FALSE, NULL, &one, error)) return FALSE;
    if (one) r->in[r->n_in++] = input_full_name(mp, one);
    return TRUE;
  }
  if (!prunus_config_get_list(c, l, "input", TRUE, error)) return FALSE;
  int n = config_setting_length(in);
  char *path = prunus_config_setting_path(in);
  gboolean ok = TRUE;
  if (n < 1 || n > PRUNUS_LAYER_MAX_INPUTS)
    ok = prunus_config_fail_at(c, in, error, "key '%s' lists %d inputs; give 1 to %d layer names",
                               path, n, PRUNUS_LAYER_MAX_INPUTS);
  for (int k = 0; ok && k < n; k++) {
    config_setting_t *e = config_setting_get_elem(in, (unsigned)k);
    prunus_config_mark_read(c, e);
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
      ok = prunus_config_fail_at(c, e, error, "key '%s' must list layer names, found %s", path,
                                 prunus_config_type_name(config_setting_type(e)));
      break;
    }
    r->in[r->n_in++] = input_full_name(mp, config_setting_get_string(e));
  }
  g_free(path);
  return ok;
}

static gboolean parse_layer(ModelParse *mp, config_setting_t *l, RawLayer *r, GError **error) {
  PrunusConfig *c = mp->c;
  PrunusLayerSpec *spec = &r->spec;
  r->at = l;
  r->where = g_strdup(mp->where ? mp->where : "");
  const char *tname;
  if (!prunus_config_get_string(c, l, "type", TRUE, NULL, &tname, error)) return FALSE;
  PrunusLayerType type;
  if (!prunus_layer_type_from_name(tname, &type)) {
    GString *names = g_string_new(NULL);
    for (int t = 0; t < PRUNUS_LAYER_N_TYPES; t++)
      g_string_append_printf(names, "%s%s", t ? ", " : "",
                             prunus_layer_ops((PrunusLayerType)t)->type_name);
    config_setting_t *s = config_setting_get_member(l, "type");
    char *path = prunus_config_setting_path(s);
    prunus_config_fail_at(c, s, error, "key '%s': unknown layer type '%s' (expected one of: %s)",
                          path, tname, names->str);
    g_free(path);
    g_string_free(names, TRUE);
    return FALSE;
  }
  spec->type = type;
  gboolean ok = parse_layer_links(mp, l, r, error);
  double momentum = PRUNUS_BATCHNORM_MOMENTUM, eps = PRUNUS_BATCHNORM_EPS;
  gboolean bias = TRUE;
  switch (type) {
  case PRUNUS_LAYER_DENSE:
    ok = ok && layer_int(mp, l, "units", TRUE, 0, 1, PRUNUS_MODEL_MAX_WIDTH, &spec->units, error);
    break;
  case PRUNUS_LAYER_CONV2D:
    ok = ok &&
         layer_int(mp, l, "channels", TRUE, 0, 1, PRUNUS_MODEL_MAX_WIDTH, &spec->channels, error) &&
         layer_int(mp, l, "kernel", TRUE, 0, 1, PRUNUS_MODEL_MAX_KERNEL, &spec->kernel, error) &&
         layer_int(mp, l, "stride", FALSE, 1, 1, PRUNUS_MODEL_MAX_KERNEL, &spec->stride, error) &&
         layer_int(mp, l, "padding", FALSE, 0, 0, PRUNUS_MODEL_MAX_KERNEL, &spec->padding, error) &&
         prunus_config_get_bool(c, l, "bias", FALSE, TRUE, &bias, error);
    spec->no_bias = !bias;
    break;
  case PRUNUS_LAYER_MAXPOOL2D:
  case PRUNUS_LAYER_AVGPOOL2D:
    ok = ok &&
         layer_int(mp, l, "kernel", TRUE, 0, 1, PRUNUS_MODEL_MAX_KERNEL, &spec->kernel, error) &&
         layer_int(mp, l, "stride", FALSE, spec->kernel, 1, PRUNUS_MODEL_MAX_KERNEL, &spec->stride,
                   error);
    break;
  case PRUNUS_LAYER_BATCHNORM:
    ok =
        ok &&
        prunus_config_get_double_in(c, l, "momentum", FALSE, momentum, 0, FALSE, 1, FALSE,
                                    &momentum, error) &&
        prunus_config_get_double_in(c, l, "eps", FALSE, eps, 0, TRUE, INFINITY, FALSE, &eps, error);
    spec->momentum = (float)momentum, spec->eps = (float)eps;
    break;
  default:
    break;
  }
  if (!ok) return fail_in_block(mp, error);
  char *what = g_strdup_printf("a %s layer", tname);
  ok = check_group_read(c, l, what, error);
  g_free(what);
  return ok || fail_in_block(mp, error);
}

/* The full name of the last raw layer, or "input" when there is none yet. */
static char *previous_name(const ModelParse *mp) {
  return mp->raw->len ? raw_name(mp, (int)mp->raw->len - 1) : g_strdup("input");
}

/* { block = "basic"; name = "layer1"; repeat = 3; channels = 16; }: the block's
 * layers, repeat times, named "layer1.0.conv1", "layer1.1.conv1", ... (the count
 * starts at `start`, default 0, so a stage may continue the block before it). */
static gboolean expand_block(ModelParse *mp, config_setting_t *use, GError **error) {
  PrunusConfig *c = mp->c;
  const char *bname, *name, *input = NULL;
  int repeat, start;
  if (!prunus_config_get_string(c, use, "block", TRUE, NULL, &bname, error) ||
      !prunus_config_get_string(c, use, "name", TRUE, NULL, &name, error) ||
      !prunus_config_get_int_min(c, use, "repeat", FALSE, 1, 1, &repeat, error) ||
      !prunus_config_get_int_min(c, use, "start", FALSE, 0, 0, &start, error) ||
      !prunus_config_get_string(c, use, "input", FALSE, NULL, &input, error))
    return FALSE;
  if (mp->prefix)
    return prunus_config_fail_at(c, use, error, "a block's layers cannot use blocks (block '%s')",
                                 mp->block_name);
  config_setting_t *def = mp->blocks ? config_setting_get_member(mp->blocks, bname) : NULL;
  if (!def || !config_setting_is_list(def)) {
    config_setting_t *s = config_setting_get_member(use, "block");
    char *path = prunus_config_setting_path(s);
    GString *known = g_string_new(NULL);
    for (int i = 0; mp->blocks && i < config_setting_length(mp->blocks); i++)
      g_string_append_printf(known, "%s%s", i ? ", " : "",
                             config_setting_name(config_setting_get_elem(mp->blocks, (unsigned)i)));
    prunus_config_fail_at(c, s, error, "key '%s': no block '%s' in model.blocks (defined: %s)",
                          path, bname, known->len ? known->str : "none");
    g_free(path);
    g_string_free(known, TRUE);
    return FALSE;
  }
  g_hash_table_add(mp->blocks_used, def);
  prunus_config_mark_read(c, def);
  /* every other key of the use is an integer setting of the block */
  GHashTable *params = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
  GHashTable *local = g_hash_table_new(g_str_hash, g_str_equal);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < config_setting_length(use); i++) {
    config_setting_t *s = config_setting_get_elem(use, (unsigned)i);
    const char *key = config_setting_name(s);
    if (!strcmp(key, "block") || !strcmp(key, "name") || !strcmp(key, "repeat") ||
        !strcmp(key, "start") || !strcmp(key, "input"))
      continue;
    BlockParam *p = g_new0(BlockParam, 1);
    p->at = s;
    g_hash_table_insert(params, (gpointer)key, p);
    prunus_config_mark_read(c, s);
    ok = prunus_config_setting_to_int(c, s, &p->value, error);
  }
  int n = config_setting_length(def);
  /* the model's layer limit before anything is expanded: a huge repeat is a typo, and
   * expanding it first would take minutes and gigabytes */
  int64_t total = (int64_t)mp->raw->len + (int64_t)repeat * n;
  if (ok && total > PRUNUS_MODEL_MAX_LAYERS) {
    config_setting_t *s = config_setting_get_member(use, "repeat");
    char *path = prunus_config_setting_path(s ? s : use);
    ok = prunus_config_fail_at(c, s ? s : use, error,
                               "key '%s' = %d: block '%s' has %d layers, so the model would "
                               "have %" G_GINT64_FORMAT " layers, more than the limit of %d",
                               path, repeat, bname, n, (gint64)total, PRUNUS_MODEL_MAX_LAYERS);
    g_free(path);
  }
  for (int j = 0; ok && j < n; j++) {
    config_setting_t *l = config_setting_get_elem(def, (unsigned)j);
    const char *lname;
    if (config_setting_is_group(l) && config_setting_lookup_string(l, "name", &lname))
      g_hash_table_add(local, (gpointer)lname);
  }
  char *where_use = prunus_config_where(c, use);
  char *where = g_strdup_printf(" (block '%s' used at %s)", bname, where_use);
  g_free(where_use);
  for (int r = 0; ok && r < repeat; r++) {
    char *prefix = g_strdup_printf("%s.%d", name, start + r);
    char *block_in = r == 0 && input ? g_strdup(input) : previous_name(mp);
    mp->params = params, mp->block_name = bname, mp->prefix = prefix, mp->local = local;
    mp->block_in = block_in, mp->where = where;
    for (int j = 0; ok && j < n; j++) {
      config_setting_t *l = config_setting_get_elem(def, (unsigned)j);
      if (!config_setting_is_group(l)) {
        char *path = prunus_config_setting_path(l);
        ok = prunus_config_fail_at(c, l, error, "%s must be a layer group, found %s", path,
                                   prunus_config_type_name(config_setting_type(l)));
        g_free(path);
        break;
      }
      prunus_config_mark_read(c, l);
      if (config_setting_get_member(l, "block")) {
        ok = prunus_config_fail_at(c, l, error, "a block's layers cannot use blocks (block '%s')",
                                   bname);
        break;
      }
      RawLayer raw = {0};
      ok = parse_layer(mp, l, &raw, error);
      if (ok && j == 0 && raw.n_in == 0 && r == 0 && input) raw.in[raw.n_in++] = g_strdup(input);
      g_array_append_val(mp->raw, raw);
    }
    mp->params = NULL, mp->block_name = NULL, mp->prefix = NULL, mp->local = NULL;
    mp->block_in = NULL, mp->where = NULL;
    g_free(block_in);
    g_free(prefix);
  }
  g_free(where);
  GHashTableIter it;
  gpointer key, val;
  g_hash_table_iter_init(&it, params);
  while (ok && g_hash_table_iter_next(&it, &key, &val)) {
    BlockParam *p = val;
    if (p->used) continue;
    char *path = prunus_config_setting_path(p->at);
    ok = prunus_config_fail_at(c, p->at, error,
                               "key '%s': block '%s' has no layer that reads \"$%s\"", path, bname,
                               (const char *)key);
    g_free(path);
  }
  g_hash_table_destroy(local);
  g_hash_table_destroy(params);
  return ok;
}

/* raw layer i's setting to point at in messages about its inputs. */
static config_setting_t *input_setting(const RawLayer *r) {
  return r->input_at ? r->input_at : r->at;
}

/* A cycle among the layers not yet placed (placed[i] FALSE), as "a <- c <- b <- a"
 * (a takes c's output, c takes b's, b takes a's); *start = the first layer named. */
static char *describe_cycle(const ModelParse *mp, int **from, const gboolean *placed, int *start) {
  gboolean *seen = g_new0(gboolean, mp->raw->len);
  int *next = g_new(int, mp->raw->len);
  int at = 0;
  while (placed[at]) at++;
  /* follow unplaced inputs until a layer repeats: every unplaced layer has one */
  while (!seen[at]) {
    seen[at] = TRUE;
    int k = 0;
    while (from[at][k] < 0 || placed[from[at][k]]) k++;
    next[at] = from[at][k];
    at = next[at];
  }
  *start = at;
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  int i = at;
  do {
    g_ptr_array_add(names, raw_name(mp, i));
    i = next[i];
  } while (i != at);
  g_ptr_array_add(names, raw_name(mp, at));
  g_ptr_array_add(names, NULL);
  char *text = g_strjoinv(" <- ", (char **)names->pdata);
  g_ptr_array_free(names, TRUE);
  g_free(seen), g_free(next);
  return text;
}

/* The raw layers as an architecture: inputs resolved to indices, layers sorted so
 * that each comes after its inputs (config order where that holds already). */
static gboolean resolve_graph(ModelParse *mp, PrunusArch *arch, int **order_out, GError **error) {
  PrunusConfig *c = mp->c;
  int n = (int)mp->raw->len;
  GHashTable *index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < n; i++) {
    RawLayer *r = &g_array_index(mp->raw, RawLayer, i);
    char *name = raw_name(mp, i);
    int twin = GPOINTER_TO_INT(g_hash_table_lookup(index, name));
    if (twin) {
      char *first = prunus_config_where(c, g_array_index(mp->raw, RawLayer, twin - 1).at);
      ok = prunus_config_fail_at(c, r->at, error,
                                 "layer name '%s' is already taken by the layer at %s; names must "
                                 "be unique%s",
                                 name, first, r->where);
      g_free(first);
      g_free(name);
      break;
    }
    g_hash_table_insert(index, name, GINT_TO_POINTER(i + 1));
  }
  guint len = mp->raw->len; /* n, unsigned for the allocations */
  int **from = g_new0(int *, len), *n_from = g_new0(int, len);
  for (int i = 0; ok && i < n; i++) {
    RawLayer *r = &g_array_index(mp->raw, RawLayer, i);
    from[i] = g_new(int, PRUNUS_LAYER_MAX_INPUTS);
    if (r->n_in == 0) {
      from[i][0] = i - 1; /* -1: the model's input */
      n_from[i] = 1;
      continue;
    }
    for (int k = 0; ok && k < r->n_in; k++) {
      if (!strcmp(r->in[k], "input")) {
        from[i][n_from[i]++] = -1;
        continue;
      }
      int at = GPOINTER_TO_INT(g_hash_table_lookup(index, r->in[k]));
      if (!at) {
        char *path = prunus_config_setting_path(input_setting(r));
        ok = prunus_config_fail_at(c, input_setting(r), error,
                                   "key '%s': no layer is named '%s' (a layer is named by its "
                                   "`name` key, else by its index in the expanded list; \"input\" "
                                   "is the model's input)%s",
                                   path, r->in[k], r->where);
        g_free(path);
      } else if (at - 1 == i) {
        char *path = prunus_config_setting_path(input_setting(r));
        ok = prunus_config_fail_at(c, input_setting(r), error,
                                   "key '%s': layer '%s' takes its own output, a cycle%s", path,
                                   r->in[k], r->where);
        g_free(path);
      }
      from[i][n_from[i]++] = at - 1;
    }
  }
  /* Kahn's order, the lowest ready index first: a sequence stays as it is */
  int *order = g_new(int, len), *pos = g_new(int, len);
  gboolean *placed = g_new0(gboolean, len);
  int placed_n = 0;
  while (ok && placed_n < n) {
    int pick = -1;
    for (int i = 0; i < n && pick < 0; i++) {
      if (placed[i]) continue;
      gboolean ready = TRUE;
      for (int k = 0; k < n_from[i] && ready; k++) ready = from[i][k] < 0 || placed[from[i][k]];
      if (ready) pick = i;
    }
    if (pick < 0) {
      int start;
      char *cycle = describe_cycle(mp, from, placed, &start);
      RawLayer *r = &g_array_index(mp->raw, RawLayer, start);
      ok = prunus_config_fail_at(c, input_setting(r), error,
                                 "the model's layers form a cycle: %s (each takes the output of "
                                 "the one after it); no layer may depend on its own output%s",
                                 cycle, r->where);
      g_free(cycle);
      break;
    }
    placed[pick] = TRUE;
    pos[pick] = placed_n;
    order[placed_n++] = pick;
  }
  if (ok) {
    arch->n_layers = n;
    arch->layers = g_new0(PrunusLayerSpec, len);
    for (int j = 0; j < n; j++) {
      int i = order[j];
      RawLayer *r = &g_array_index(mp->raw, RawLayer, i);
      PrunusLayerSpec *s = &arch->layers[j];
      *s = r->spec;
      char *name = raw_name(mp, i);
      g_strlcpy(s->name, name, sizeof s->name);
      g_free(name);
      gboolean previous = n_from[i] == 1 && from[i][0] == i - 1 && (i == 0 || pos[i - 1] == j - 1);
      if (r->n_in == 0 && previous) {
        s->n_inputs = 0;
      } else {
        s->n_inputs = n_from[i];
        for (int k = 0; k < n_from[i]; k++)
          s->inputs[k] = from[i][k] < 0 ? PRUNUS_LAYER_INPUT : pos[from[i][k]];
      }
    }
    *order_out = order;
    order = NULL;
  }
  for (int i = 0; i < n; i++) g_free(from[i]);
  g_free(from), g_free(n_from), g_free(order), g_free(pos), g_free(placed);
  g_hash_table_destroy(index);
  return ok;
}

static gboolean parse_model(PrunusConfig *c, config_setting_t *root, PrunusArch *arch,
                            GError **error) {
  static const char *const inits[] = {[PRUNUS_INIT_KAIMING] = "kaiming",
                                      [PRUNUS_INIT_GLOROT] = "glorot",
                                      [PRUNUS_INIT_UNIFORM_FAN_IN] = "uniform-fan-in",
                                      [PRUNUS_INIT_UNIFORM_FAN_IN + 1] = NULL};
  config_setting_t *model = prunus_config_get_group(c, root, "model", TRUE, error);
  if (!model || !parse_input_shape(c, model, &arch->input, error)) return FALSE;
  int init;
  if (!prunus_config_get_enum(c, model, "init", FALSE, PRUNUS_INIT_KAIMING, inits, &init, error))
    return FALSE;
  arch->init = (PrunusInit)init;
  ModelParse mp = {.c = c};
  if (!(mp.blocks = prunus_config_get_group(c, model, "blocks", FALSE, error)) && error && *error)
    return FALSE;
  config_setting_t *layers = prunus_config_get_list(c, model, "layers", TRUE, error);
  if (!layers) return FALSE;
  int n = config_setting_length(layers);
  if (n == 0) {
    char *path = prunus_config_setting_path(layers);
    prunus_config_fail_at(c, layers, error, "key '%s' is empty: a model needs at least one layer",
                          path);
    g_free(path);
    return FALSE;
  }
  if (n > PRUNUS_MODEL_MAX_LAYERS) { /* before anything is allocated per layer */
    char *path = prunus_config_setting_path(layers);
    prunus_config_fail_at(c, layers, error, "key '%s' has %d layers, more than the limit of %d",
                          path, n, PRUNUS_MODEL_MAX_LAYERS);
    g_free(path);
    return FALSE;
  }
  mp.blocks_used = g_hash_table_new(NULL, NULL);
  mp.raw = g_array_new(FALSE, TRUE, sizeof(RawLayer));
  g_array_set_clear_func(mp.raw, raw_layer_clear);
  int *order = NULL;
  gboolean ok = TRUE;
  for (int i = 0; ok && i < n; i++) {
    config_setting_t *l = config_setting_get_elem(layers, (unsigned)i);
    if (!config_setting_is_group(l)) {
      char *path = prunus_config_setting_path(l);
      ok = prunus_config_fail_at(c, l, error,
                                 "%s must be a group such as { type = \"dense\"; units = 10; }, "
                                 "found %s",
                                 path, prunus_config_type_name(config_setting_type(l)));
      g_free(path);
      break;
    }
    prunus_config_mark_read(c, l);
    if (config_setting_get_member(l, "block")) {
      ok = expand_block(&mp, l, error);
      continue;
    }
    RawLayer raw = {0};
    ok = parse_layer(&mp, l, &raw, error);
    g_array_append_val(mp.raw, raw);
  }
  for (int i = 0; ok && mp.blocks && i < config_setting_length(mp.blocks); i++) {
    config_setting_t *b = config_setting_get_elem(mp.blocks, (unsigned)i);
    if (g_hash_table_contains(mp.blocks_used, b)) continue;
    char *path = prunus_config_setting_path(b);
    ok = prunus_config_fail_at(c, b, error,
                               "block '%s' is never used (use it in model.layers as { block = "
                               "\"%s\"; name = \"...\"; })",
                               path, config_setting_name(b));
    g_free(path);
  }
  if (ok) ok = resolve_graph(&mp, arch, &order, error);
  if (ok) {
    /* shapes and links, with the file:line of the layer at fault */
    GError *local = NULL;
    int bad;
    if (!prunus_arch_check(arch, &bad, &local)) {
      const RawLayer *r = bad >= 0 ? &g_array_index(mp.raw, RawLayer, order[bad]) : NULL;
      ok = prunus_config_fail_at(c, r ? r->at : layers, error, "%s%s", local->message,
                                 r ? r->where : "");
      g_error_free(local);
    }
  }
  if (ok) {
    /* The class count is the width of the dense layer that computes the output, the
     * last one reached from it through layers without weights. */
    int last = arch->n_layers - 1;
    while (last >= 0 && !prunus_layer_ops(arch->layers[last].type)->has_params)
      last = arch->layers[last].n_inputs ? arch->layers[last].inputs[0] : last - 1;
    if (last < 0 || arch->layers[last].type != PRUNUS_LAYER_DENSE) {
      config_setting_t *at = last < 0 ? layers : g_array_index(mp.raw, RawLayer, order[last]).at;
      char *path = prunus_config_setting_path(at);
      if (last < 0)
        prunus_config_fail_at(
            c, at, error, "key '%s' has no dense layer; the last one's units give the class count",
            path);
      else
        prunus_config_fail_at(
            c, at, error,
            "%s is %s %s layer, but the last layer with parameters must be dense (its units "
            "give the class count)",
            path, prunus_layer_article(prunus_layer_ops(arch->layers[last].type)->type_name),
            prunus_layer_ops(arch->layers[last].type)->type_name);
      g_free(path);
      ok = FALSE;
    } else {
      arch->n_classes = arch->layers[last].units;
    }
  }
  g_free(order);
  g_array_free(mp.raw, TRUE);
  g_hash_table_destroy(mp.blocks_used);
  return ok;
}

/* Where a setting was written: 0 the config file (or nowhere: a default), 1 an
 * experiment merged over it, 2 --set. */
static int written_at(PrunusConfig *c, const config_setting_t *s) {
  if (!s) return 0;
  if (g_hash_table_contains(c->from_set, s)) return 2;
  return g_hash_table_contains(c->origin, s) ? 1 : 0;
}

/* A train key that the chosen optimizer or schedule never reads would change nothing
 * (as PyTorch's Adam refuses momentum): refused at its line, so a config says what
 * runs. Only where it was written at the level that chose the optimizer (schedule) or
 * later: an experiment or --set that switches to Adam cannot remove the base's
 * momentum, which the base's other experiments may use. The retrain plugins train
 * with the same optimizer and schedule. */
static gboolean train_keys_used(PrunusConfig *c, config_setting_t *g, const PrunusTrainConfig *tc,
                                GError **error) {
  static const struct {
    const char *key;
    int optimizer; /* the optimizer that reads it; -1: any */
    int schedule;  /* the schedule that reads it; -1: any */
  } readers[] = {
      {"momentum", PRUNUS_OPT_SGD, -1}, {"nesterov", PRUNUS_OPT_SGD, -1},
      {"beta1", PRUNUS_OPT_ADAM, -1},   {"beta2", PRUNUS_OPT_ADAM, -1},
      {"eps", PRUNUS_OPT_ADAM, -1},     {"step_size", -1, PRUNUS_LR_STEP},
      {"gamma", -1, PRUNUS_LR_STEP},
  };
  static const char *const optimizer_names[] = {
      [PRUNUS_OPT_SGD] = "sgd", [PRUNUS_OPT_ADAM] = "adam"};
  static const char *const schedule_names[] = {
      [PRUNUS_LR_CONSTANT] = "constant", [PRUNUS_LR_STEP] = "step", [PRUNUS_LR_COSINE] = "cosine"};
  for (size_t i = 0; i < G_N_ELEMENTS(readers); i++) {
    config_setting_t *s = config_setting_get_member(g, readers[i].key);
    const char *chooser = readers[i].optimizer >= 0 ? "optimizer" : "lr_schedule";
    if (!s || written_at(c, s) < written_at(c, config_setting_get_member(g, chooser))) continue;
    char *why = NULL;
    if (readers[i].optimizer >= 0 && readers[i].optimizer != (int)tc->optimizer)
      why = g_strdup_printf("optimizer = \"%s\" never reads it (only \"%s\" does)",
                            optimizer_names[tc->optimizer], optimizer_names[readers[i].optimizer]);
    else if (readers[i].schedule >= 0 && readers[i].schedule != (int)tc->lr_schedule)
      why = g_strdup_printf("lr_schedule = \"%s\" never reads it (only \"%s\" does)",
                            schedule_names[tc->lr_schedule], schedule_names[readers[i].schedule]);
    if (!why) continue;
    char *path = prunus_config_setting_path(s);
    prunus_config_fail_at(c, s, error, "key '%s': %s; remove it", path, why);
    g_free(path), g_free(why);
    return FALSE;
  }
  if (tc->warmup_epochs > 0.0 && tc->warmup_epochs >= tc->epochs) {
    config_setting_t *s = config_setting_get_member(g, "warmup_epochs");
    char *path = prunus_config_setting_path(s);
    prunus_config_fail_at(c, s, error,
                          "key '%s' = %g is not below train.epochs = %d: the learning rate would "
                          "never reach lr",
                          path, tc->warmup_epochs, tc->epochs);
    g_free(path);
    return FALSE;
  }
  return TRUE;
}

static gboolean parse_train(PrunusConfig *c, config_setting_t *root, PrunusTrainConfig *out,
                            GError **error) {
  static const char *const optimizers[] = {
      [PRUNUS_OPT_SGD] = "sgd", [PRUNUS_OPT_ADAM] = "adam", [PRUNUS_OPT_ADAM + 1] = NULL};
  static const char *const schedules[] = {[PRUNUS_LR_CONSTANT] = "constant",
                                          [PRUNUS_LR_STEP] = "step",
                                          [PRUNUS_LR_COSINE] = "cosine",
                                          [PRUNUS_LR_COSINE + 1] = NULL};
  config_setting_t *g = prunus_config_get_group(c, root, "train", TRUE, error);
  if (!g) return FALSE;
  PrunusTrainConfig tc = prunus_train_config_default();
  int optimizer = tc.optimizer, schedule = tc.lr_schedule;
  if (!prunus_config_get_int_min(c, g, "epochs", TRUE, 0, 1, &tc.epochs, error) ||
      !prunus_config_get_int_in(c, g, "batch", FALSE, tc.batch, 1, PRUNUS_MODEL_MAX_BATCH,
                                &tc.batch, error) ||
      !prunus_config_get_enum(c, g, "optimizer", FALSE, optimizer, optimizers, &optimizer, error) ||
      !prunus_config_get_double_in(c, g, "lr", TRUE, 0, 0, TRUE, INFINITY, FALSE, &tc.lr, error) ||
      !prunus_config_get_double_in(c, g, "momentum", FALSE, tc.momentum, 0, FALSE, 1, TRUE,
                                   &tc.momentum, error) ||
      !prunus_config_get_bool(c, g, "nesterov", FALSE, tc.nesterov, &tc.nesterov, error) ||
      !prunus_config_get_double_in(c, g, "weight_decay", FALSE, tc.weight_decay, 0, FALSE, INFINITY,
                                   FALSE, &tc.weight_decay, error) ||
      !prunus_config_get_double_in(c, g, "beta1", FALSE, tc.beta1, 0, FALSE, 1, TRUE, &tc.beta1,
                                   error) ||
      !prunus_config_get_double_in(c, g, "beta2", FALSE, tc.beta2, 0, FALSE, 1, TRUE, &tc.beta2,
                                   error) ||
      !prunus_config_get_double_in(c, g, "eps", FALSE, tc.eps, 0, TRUE, INFINITY, FALSE, &tc.eps,
                                   error) ||
      !prunus_config_get_enum(c, g, "lr_schedule", FALSE, schedule, schedules, &schedule, error) ||
      !prunus_config_get_int_min(c, g, "step_size", FALSE, tc.step_size,
                                 schedule == PRUNUS_LR_STEP ? 1 : G_MININT, &tc.step_size, error) ||
      !prunus_config_get_double_in(c, g, "gamma", FALSE, tc.gamma, 0, TRUE, INFINITY, FALSE,
                                   &tc.gamma, error) ||
      !prunus_config_get_double_in(c, g, "warmup_epochs", FALSE, tc.warmup_epochs, 0, FALSE,
                                   INFINITY, FALSE, &tc.warmup_epochs, error) ||
      !prunus_config_get_double_in(c, g, "sparse_from", FALSE, tc.sparse_from, 0, FALSE, 1, FALSE,
                                   &tc.sparse_from, error) ||
      !prunus_config_get_double_in(c, g, "bn_l1", FALSE, tc.bn_l1, 0, FALSE, INFINITY, FALSE,
                                   &tc.bn_l1, error))
    return FALSE;
  tc.optimizer = (PrunusOptimizer)optimizer;
  tc.lr_schedule = (PrunusLrSchedule)schedule;
  if (tc.nesterov && tc.momentum == 0.0) {
    config_setting_t *s = config_setting_get_member(g, "nesterov");
    char *path = prunus_config_setting_path(s);
    prunus_config_fail_at(c, s, error, "key '%s' = true needs momentum > 0", path);
    g_free(path);
    return FALSE;
  }
  if (!train_keys_used(c, g, &tc, error)) return FALSE;
  *out = tc;
  return TRUE;
}

/* The whole model within the limits for a training batch, before anything is built;
 * the error starts at the layer (or input) that crosses one. */
static gboolean check_model_size(PrunusConfig *c, config_setting_t *root, PrunusRunConfig *rc,
                                 GError **error) {
  int bad = -1;
  GError *local = NULL;
  if (prunus_arch_check_size(&rc->arch, rc->train.batch, NULL, &bad, &local)) return TRUE;
  config_setting_t *model = config_setting_get_member(root, "model");
  config_setting_t *layers = model ? config_setting_get_member(model, "layers") : NULL;
  config_setting_t *at = bad >= 0 && layers ? config_setting_get_elem(layers, (unsigned)bad)
                                            : config_setting_get_member(model, "input");
  char *path = prunus_config_setting_path(at ? at : model);
  prunus_config_fail_at(c, at ? at : model, error, "%s (with train.batch = %d): %s", path,
                        rc->train.batch, local->message);
  g_free(path);
  g_error_free(local);
  return FALSE;
}

/* train.bn_l1 pulls batchnorm scales towards 0: a model without one would train as if
 * the key were not there. */
static gboolean bn_l1_has_batchnorm(PrunusConfig *c, config_setting_t *root,
                                    const PrunusRunConfig *rc, GError **error) {
  if (rc->train.bn_l1 == 0.0) return TRUE;
  for (int i = 0; i < rc->arch.n_layers; i++)
    if (rc->arch.layers[i].type == PRUNUS_LAYER_BATCHNORM) return TRUE;
  config_setting_t *s = config_setting_lookup(root, "train.bn_l1");
  prunus_config_fail_at(c, s, error,
                        "key 'train.bn_l1' = %g, but the model has no batchnorm layer whose "
                        "scales it could pull towards 0; remove it",
                        rc->train.bn_l1);
  return FALSE;
}

gboolean prunus_run_config_parse(PrunusConfig *c, PrunusRunConfig *out, GError **error) {
  g_return_val_if_fail(c != NULL && out != NULL, FALSE);
  memset(out, 0, sizeof *out);
  config_setting_t *root = config_root_setting(&c->cfg);
  const char *name;
  int64_t seed;
  if (!prunus_config_get_string(c, root, "name", TRUE, NULL, &name, error)) goto out_clear;
  char *why = prunus_config_name_problem(name, FALSE);
  if (why) {
    prunus_config_fail_at(c, config_setting_get_member(root, "name"), error,
                          "key 'name' (it names the run): %s", why);
    g_free(why);
    goto out_clear;
  }
  out->name = g_strdup(name);
  if (!prunus_config_get_int64(c, root, "seed", FALSE, 0, &seed, error)) goto out_clear;
  if (seed < 0 || seed > PRUNUS_SEED_MAX) {
    prunus_config_fail_at(c, config_setting_get_member(root, "seed"), error,
                          "key 'seed' = %" G_GINT64_FORMAT
                          " is out of range: must be in [0, 2^53 = 9007199254740992]",
                          (gint64)seed);
    goto out_clear;
  }
  out->seed = (uint64_t)seed;
  if (!parse_dataset(c, root, out, error) || !parse_model(c, root, &out->arch, error) ||
      !parse_train(c, root, &out->train, error) || !check_model_size(c, root, out, error) ||
      !bn_l1_has_batchnorm(c, root, out, error))
    goto out_clear;
  return TRUE;

out_clear:
  prunus_run_config_clear(out);
  return FALSE;
}

void prunus_run_config_clear(PrunusRunConfig *rc) {
  if (!rc) return;
  g_free(rc->name);
  g_free(rc->train_images);
  g_free(rc->train_labels);
  g_free(rc->test_images);
  g_free(rc->test_labels);
  prunus_arch_clear(&rc->arch);
  memset(rc, 0, sizeof *rc);
}

char *prunus_config_name_problem(const char *name, gboolean experiment) {
  /* the run folder's own entries: an experiment's folder may not take their place */
  static const char *const reserved[] = {"cache",        "plots",         "report.html",
                                         "summary.json", "summary.md",    "summary.csv",
                                         "config.cfg",   "metrics.jsonl", "prunus.lock"};
  size_t n = strlen(name);
  if (n == 0) return g_strdup("must not be empty");
  if (n > PRUNUS_NAME_MAX)
    return g_strdup_printf("is %zu bytes long, at most %d allowed", n, PRUNUS_NAME_MAX);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)name[i];
    if (g_ascii_isalnum(ch) || strchr(" ._+-", ch)) continue;
    if (!g_utf8_validate(name, -1, NULL))
      return g_strdup_printf(
          "is not UTF-8 (byte 0x%02x at %zu): use letters, digits, spaces and . _ + -", ch, i);
    if (ch >= 0x80)
      return g_strdup_printf(
          "'%s' holds a non-ASCII character (byte 0x%02x at %zu): use ASCII "
          "letters, digits, spaces and . _ + -",
          name, ch, i);
    return g_strdup_printf(
        "'%s' holds the byte 0x%02x at %zu: use letters, digits, spaces and "
        ". _ + -%s",
        name, ch, i, ch == '/' ? " (-o RUN_DIR chooses the run's folder)" : "");
  }
  if (name[0] == '.')
    return g_strdup_printf(
        "'%s' starts with '.' (\".\" and \"..\" are folders already; a "
        "leading dot hides one)",
        name);
  for (size_t i = 0; experiment && i < G_N_ELEMENTS(reserved); i++)
    if (!strcmp(name, reserved[i]))
      return g_strdup_printf("'%s' is the name of an entry the run folder has already", name);
  return NULL;
}
