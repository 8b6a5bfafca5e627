/* run_config.c: parses the shared groups of a config (name, seed, dataset, model,
 * train) into a PrunusRunConfig, with range checks and per-layer key checks. */
#include "config-impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the run config: name, seed, dataset, model, train */

static gboolean out_of_range(PrunusConfig *c, config_setting_t *group, const char *key,
                             const char *found, const char *allowed, GError **error) {
  config_setting_t *s = config_setting_get_member(group, key);
  char *path = prunus_config_member_path(group, key);
  prunus_config_fail_at(c, s ? s : group, error, "key '%s' = %s is out of range: must be %s", path,
                        found, allowed);
  g_free(path);
  return FALSE;
}

/* An int in [lo, G_MAXINT]. */
static gboolean get_int_min(PrunusConfig *c, config_setting_t *group, const char *key,
                            gboolean required, int defval, int lo, int *out, GError **error) {
  if (!prunus_config_get_int(c, group, key, required, defval, out, error)) return FALSE;
  if (*out >= lo) return TRUE;
  char found[32], allowed[32];
  g_snprintf(found, sizeof found, "%d", *out);
  g_snprintf(allowed, sizeof allowed, ">= %d", lo);
  return out_of_range(c, group, key, found, allowed, error);
}

/* A double in the interval lo..hi, each end open or closed; hi = INFINITY for none. */
static gboolean get_double_in(PrunusConfig *c, config_setting_t *group, const char *key,
                              gboolean required, double defval, double lo, gboolean lo_open,
                              double hi, gboolean hi_open, double *out, GError **error) {
  if (!prunus_config_get_double(c, group, key, required, defval, out, error)) return FALSE;
  double v = *out;
  if ((lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi)) return TRUE;
  char found[48], allowed[64];
  g_snprintf(found, sizeof found, "%g", v);
  if (isinf(hi))
    g_snprintf(allowed, sizeof allowed, "%s %g", lo_open ? ">" : ">=", lo);
  else
    g_snprintf(allowed, sizeof allowed, "in %c%g, %g%c", lo_open ? '(' : '[', lo, hi,
               hi_open ? ')' : ']');
  return out_of_range(c, group, key, found, allowed, error);
}

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
  if (!get_int_min(c, g, "validation", FALSE, 0, 0, &rc->validation, error) ||
      !get_int_min(c, g, "train_limit", FALSE, 0, 0, &rc->train_limit, error) ||
      !get_int_min(c, g, "test_limit", FALSE, 0, 0, &rc->test_limit, error) ||
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
    if (v[i] < 1) {
      char *path = prunus_config_setting_path(e);
      prunus_config_fail_at(c, e, error, "key '%s' = %d is out of range: must be >= 1", path, v[i]);
      g_free(path);
      return FALSE;
    }
  }
  *out = (PrunusShape){v[0], v[1], v[2]};
  return TRUE;
}

static gboolean parse_layer(PrunusConfig *c, config_setting_t *l, PrunusLayerSpec *spec,
                            GError **error) {
  if (!config_setting_is_group(l)) {
    char *path = prunus_config_setting_path(l);
    prunus_config_fail_at(c, l, error,
                          "%s must be a group such as { type = \"dense\"; units = 10; }, found %s",
                          path, prunus_config_type_name(config_setting_type(l)));
    g_free(path);
    return FALSE;
  }
  prunus_config_mark_read(c, l);
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
  memset(spec, 0, sizeof *spec);
  spec->type = type;
  gboolean ok = TRUE;
  switch (type) {
  case PRUNUS_LAYER_DENSE:
    ok = get_int_min(c, l, "units", TRUE, 0, 1, &spec->units, error);
    break;
  case PRUNUS_LAYER_CONV2D:
    ok = get_int_min(c, l, "channels", TRUE, 0, 1, &spec->channels, error) &&
         get_int_min(c, l, "kernel", TRUE, 0, 1, &spec->kernel, error) &&
         get_int_min(c, l, "stride", FALSE, 1, 1, &spec->stride, error) &&
         get_int_min(c, l, "padding", FALSE, 0, 0, &spec->padding, error);
    break;
  case PRUNUS_LAYER_MAXPOOL2D:
    ok = get_int_min(c, l, "kernel", TRUE, 0, 1, &spec->kernel, error) &&
         get_int_min(c, l, "stride", FALSE, spec->kernel, 1, &spec->stride, error);
    break;
  case PRUNUS_LAYER_RELU:
  case PRUNUS_LAYER_FLATTEN:
  default:
    break;
  }
  if (!ok) return FALSE;
  char *what = g_strdup_printf("a %s layer", tname);
  ok = check_group_read(c, l, what, error);
  g_free(what);
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
  arch->layers = g_new0(PrunusLayerSpec, n);
  arch->n_layers = n;
  for (int i = 0; i < n; i++)
    if (!parse_layer(c, config_setting_get_elem(layers, (unsigned)i), &arch->layers[i], error))
      return FALSE;
  /* The class count is the width of the last layer with parameters, which must be dense. */
  int last = n - 1;
  while (last >= 0 && !prunus_layer_ops(arch->layers[last].type)->has_params) last--;
  if (last < 0 || arch->layers[last].type != PRUNUS_LAYER_DENSE) {
    config_setting_t *at = last < 0 ? layers : config_setting_get_elem(layers, (unsigned)last);
    char *path = prunus_config_setting_path(at);
    if (last < 0)
      prunus_config_fail_at(
          c, at, error, "key '%s' has no dense layer; the last one's units give the class count",
          path);
    else
      prunus_config_fail_at(
          c, at, error,
          "%s is a %s layer, but the last layer with parameters must be dense (its units "
          "give the class count)",
          path, prunus_layer_ops(arch->layers[last].type)->type_name);
    g_free(path);
    return FALSE;
  }
  arch->n_classes = arch->layers[last].units;
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
  if (!get_int_min(c, g, "epochs", TRUE, 0, 1, &tc.epochs, error) ||
      !get_int_min(c, g, "batch", FALSE, tc.batch, 1, &tc.batch, error) ||
      !prunus_config_get_enum(c, g, "optimizer", FALSE, optimizer, optimizers, &optimizer, error) ||
      !get_double_in(c, g, "lr", TRUE, 0, 0, TRUE, INFINITY, FALSE, &tc.lr, error) ||
      !get_double_in(c, g, "momentum", FALSE, tc.momentum, 0, FALSE, 1, TRUE, &tc.momentum,
                     error) ||
      !prunus_config_get_bool(c, g, "nesterov", FALSE, tc.nesterov, &tc.nesterov, error) ||
      !get_double_in(c, g, "weight_decay", FALSE, tc.weight_decay, 0, FALSE, INFINITY, FALSE,
                     &tc.weight_decay, error) ||
      !get_double_in(c, g, "beta1", FALSE, tc.beta1, 0, FALSE, 1, TRUE, &tc.beta1, error) ||
      !get_double_in(c, g, "beta2", FALSE, tc.beta2, 0, FALSE, 1, TRUE, &tc.beta2, error) ||
      !get_double_in(c, g, "eps", FALSE, tc.eps, 0, TRUE, INFINITY, FALSE, &tc.eps, error) ||
      !prunus_config_get_enum(c, g, "lr_schedule", FALSE, schedule, schedules, &schedule, error) ||
      !get_int_min(c, g, "step_size", FALSE, tc.step_size,
                   schedule == PRUNUS_LR_STEP ? 1 : G_MININT, &tc.step_size, error) ||
      !get_double_in(c, g, "gamma", FALSE, tc.gamma, 0, TRUE, INFINITY, FALSE, &tc.gamma, error) ||
      !get_double_in(c, g, "warmup_epochs", FALSE, tc.warmup_epochs, 0, FALSE, INFINITY, FALSE,
                     &tc.warmup_epochs, error) ||
      !get_double_in(c, g, "sparse_from", FALSE, tc.sparse_from, 0, FALSE, 1, FALSE,
                     &tc.sparse_from, error))
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
  *out = tc;
  return TRUE;
}

gboolean prunus_run_config_parse(PrunusConfig *c, PrunusRunConfig *out, GError **error) {
  g_return_val_if_fail(c != NULL && out != NULL, FALSE);
  memset(out, 0, sizeof *out);
  config_setting_t *root = config_root_setting(&c->cfg);
  const char *name;
  int64_t seed;
  if (!prunus_config_get_string(c, root, "name", TRUE, NULL, &name, error)) goto out_clear;
  if (!*name) {
    prunus_config_fail_at(c, config_setting_get_member(root, "name"), error,
                          "key 'name' must not be empty (it names the run)");
    goto out_clear;
  }
  out->name = g_strdup(name);
  if (!prunus_config_get_int64(c, root, "seed", FALSE, 0, &seed, error)) goto out_clear;
  if (seed < 0) {
    char found[32];
    g_snprintf(found, sizeof found, "%" G_GINT64_FORMAT, (gint64)seed);
    out_of_range(c, root, "seed", found, ">= 0", error);
    goto out_clear;
  }
  out->seed = (uint64_t)seed;
  if (!parse_dataset(c, root, out, error) || !parse_model(c, root, &out->arch, error) ||
      !parse_train(c, root, &out->train, error))
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
