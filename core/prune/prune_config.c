/* prune_config.c: parses the config's `prune` group (schedule, per-layer rates
 * and caps, rewinding, calibration, latency, the three plugin slots). */
#include "prune_config.h"

#include <prunus/plugin.h>

#include <math.h>
#include <string.h>

static const char *const scope_names[] = {"global", "layer", NULL};
static const char *const allocation_names[] = {"uniform", "global-magnitude", NULL};

/* prune.layers = ( { layer = 5; rate = 0.5; max_sparsity = 0.9; }, ... ): layer is
 * a model layer index, a layer's name, or "output" (the last layer with parameters). */
static gboolean parse_layer_overrides(PrunusConfig *cfg, config_setting_t *prune,
                                      const PrunusArch *arch, PrunusPruneConfig *pc,
                                      GError **error) {
  config_setting_t *list = prunus_config_get_list(cfg, prune, "layers", FALSE, error);
  if (!list) return error == NULL || *error == NULL;
  const int last = pc->output_layer;
  int *seen_at = g_new(int, MAX(arch->n_layers, 1)); /* the entry that named each layer */
  for (int i = 0; i < arch->n_layers; i++) seen_at[i] = -1;
  gboolean ok = FALSE;
  for (int k = 0; k < config_setting_length(list); k++) {
    config_setting_t *item = config_setting_get_elem(list, (unsigned)k);
    prunus_config_mark_read(cfg, item);
    if (!config_setting_is_group(item)) {
      prunus_config_fail_at(cfg, item, error,
                            "prune.layers[%d] must be a group like { layer = 5; rate = 0.5; }", k);
      goto out;
    }
    int index = -1;
    config_setting_t *layer = config_setting_get_member(item, "layer");
    if (layer && config_setting_type(layer) == CONFIG_TYPE_STRING) {
      /* a layer's name (as a converted PyTorch model has them), or "output" for the last
       * layer with weights: a layer named "output" that is not that one is ambiguous */
      prunus_config_mark_read(cfg, layer);
      const char *name = config_setting_get_string(layer);
      for (int i = 0; i < arch->n_layers && index < 0; i++)
        if (name[0] && !strcmp(arch->layers[i].name, name)) index = i;
      if (!strcmp(name, "output") && index >= 0 && index != last) {
        prunus_config_fail_at(
            cfg, layer, error,
            "prune.layers[%d].layer = \"output\" is ambiguous: it names the last "
            "layer with weights (%d), and layer %d is named \"output\" too; give the "
            "index instead",
            k, last, index);
        goto out;
      }
      if (index < 0 && !strcmp(name, "output")) index = last;
      if (index < 0) {
        prunus_config_fail_at(
            cfg, layer, error,
            "prune.layers[%d].layer = \"%s\" names no layer of the model (give a "
            "layer's name, its index in model.layers, or \"output\" for the last)",
            k, name);
        goto out;
      }
    } else if (!prunus_config_get_int(cfg, item, "layer", TRUE, -1, &index, error)) {
      goto out;
    }
    if (index < 0 || index >= arch->n_layers ||
        !prunus_layer_type_has_weights(arch->layers[index].type)) {
      char *given =
          layer && config_setting_type(layer) == CONFIG_TYPE_STRING
              ? g_strdup_printf("\"%s\" (layer %d)", config_setting_get_string(layer), index)
              : g_strdup_printf("%d", index);
      prunus_config_fail_at(cfg, layer ? layer : item, error,
                            "prune.layers[%d].layer = %s is not a dense or conv2d layer of the "
                            "model (layers are numbered from 0 in model.layers; \"output\" "
                            "names the last)",
                            k, given);
      g_free(given);
      goto out;
    }
    if (seen_at[index] >= 0) {
      prunus_config_fail_at(
          cfg, layer ? layer : item, error,
          "prune.layers[%d] names layer %d again (prune.layers[%d] did): give each "
          "layer one entry",
          k, index, seen_at[index]);
      goto out;
    }
    seen_at[index] = k;
    gboolean exclude = FALSE;
    if (!prunus_config_get_double(cfg, item, "rate", FALSE, pc->layer_rate[index],
                                  &pc->layer_rate[index], error) ||
        !prunus_config_get_double(cfg, item, "max_sparsity", FALSE, pc->layer_cap[index],
                                  &pc->layer_cap[index], error) ||
        !prunus_config_get_bool(cfg, item, "exclude", FALSE, FALSE, &exclude, error))
      goto out;
    config_setting_t *cap_key = config_setting_get_member(item, "max_sparsity");
    if (cap_key) pc->layer_cap_key[index] = cap_key;
    if (exclude) pc->layer_rate[index] = 0.0;
    /* a rate scales the round's amount for the layer: above 1 a layer-scope round could
     * remove more than the layer has, and the granularities take [0, 1] */
    const char *bad = !(pc->layer_rate[index] >= 0.0 && pc->layer_rate[index] <= 1.0) ? "rate"
                      : !(pc->layer_cap[index] >= 0.0 && pc->layer_cap[index] <= 1.0)
                          ? "max_sparsity"
                          : NULL;
    if (bad) {
      config_setting_t *at = config_setting_get_member(item, bad);
      prunus_config_fail_at(cfg, at ? at : item, error,
                            "prune.layers[%d].%s = %g is out of range: must be in [0, 1]", k, bad,
                            !strcmp(bad, "rate") ? pc->layer_rate[index] : pc->layer_cap[index]);
      goto out;
    }
  }
  ok = TRUE;
out:
  g_free(seen_at);
  return ok;
}

/* schedule.levels = [0.5, 0.8, 0.9, 0.95]: the fraction removed after each round
 * (of weights or units, as the granularity counts), one level per round. */
static gboolean parse_levels(PrunusConfig *cfg, config_setting_t *sched, PrunusPruneConfig *pc,
                             GError **error) {
  config_setting_t *levels = config_setting_get_member(sched, "levels");
  if (!levels) return TRUE;
  prunus_config_mark_read(cfg, levels);
  if (!config_setting_is_aggregate(levels))
    return prunus_config_fail_at(cfg, levels, error,
                                 "prune.schedule: levels must be a list of sparsities, one per "
                                 "round, e.g. [0.5, 0.8, 0.9]");
  int n = config_setting_length(levels);
  if (n != pc->rounds) {
    char *at = prunus_config_where(cfg, config_setting_get_member(sched, "rounds"));
    prunus_config_fail_at(cfg, levels, error,
                          "prune.schedule: levels lists %d sparsities, rounds = %d (%s): give one "
                          "level per round",
                          n, pc->rounds, at);
    g_free(at);
    return FALSE;
  }
  const char *problem = NULL;
  pc->round_amount = g_new0(double, MAX(n, 1));
  double prev = 0.0;
  for (int i = 0; !problem && i < n; i++) {
    config_setting_t *e = config_setting_get_elem(levels, (unsigned)i);
    prunus_config_mark_read(cfg, e);
    int t = config_setting_type(e);
    double v = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(e) : -1.0;
    if (!(v > prev && v < 1.0))
      problem = "levels must be floats rising strictly within (0, 1)";
    else
      pc->round_amount[i] = 1.0 - (1.0 - v) / (1.0 - prev);
    prev = v;
  }
  if (problem) return prunus_config_fail_at(cfg, levels, error, "prune.schedule: %s", problem);
  pc->amount = pc->round_amount[0];
  return TRUE;
}

static config_setting_t *plugin_slot(PrunusConfig *cfg, config_setting_t *prune, const char *key,
                                     const char **name, GError **error) {
  config_setting_t *g = prunus_config_get_group(cfg, prune, key, TRUE, error);
  if (!g) return NULL;
  if (!prunus_config_get_string(cfg, g, "plugin", TRUE, NULL, name, error)) return NULL;
  return g;
}

gboolean prunus_prune_config_parse(PrunusConfig *cfg, const PrunusRunConfig *rc,
                                   PrunusPruneConfig *out, GError **error) {
  const PrunusArch *arch = &rc->arch;
  PrunusPruneConfig pc = {0};
  config_setting_t *root = prunus_config_root(cfg);
  config_setting_t *prune = prunus_config_get_group(cfg, root, "prune", TRUE, error);
  if (!prune) return FALSE;
  pc.layer_rate = g_new(double, arch->n_layers);
  pc.layer_cap = g_new(double, arch->n_layers);
  pc.layer_cap_key = g_new0(config_setting_t *, arch->n_layers);
  for (int i = 0; i < arch->n_layers; i++) pc.layer_rate[i] = 1.0, pc.layer_cap[i] = 1.0;
  config_setting_t *sched = prunus_config_get_group(cfg, prune, "schedule", TRUE, error);
  if (!sched) goto out_clear;
  double max_sparsity = 1.0;
  if (!prunus_config_get_int_in(cfg, sched, "rounds", TRUE, 1, 1, 1000, &pc.rounds, error) ||
      !prunus_config_get_double(cfg, sched, "amount", FALSE, 0.0, &pc.amount, error) ||
      !prunus_config_get_double(cfg, sched, "target", FALSE, 0.0, &pc.target, error) ||
      !prunus_config_get_enum(cfg, sched, "scope", FALSE, PRUNUS_SCOPE_GLOBAL, scope_names,
                              &pc.scope, error) ||
      !prunus_config_get_enum(cfg, sched, "allocation", FALSE, PRUNUS_ALLOCATION_UNIFORM,
                              allocation_names, &pc.allocation, error) ||
      !prunus_config_get_double_in(cfg, sched, "max_sparsity", FALSE, 1.0, 0.0, TRUE, 1.0, FALSE,
                                   &max_sparsity, error) ||
      !prunus_config_get_double_in(cfg, sched, "tolerance", FALSE, 0.01, 0.0, FALSE, 1.0, FALSE,
                                   &pc.tolerance, error))
    goto out_clear;
  /* amount or target 0 alone would be a schedule that removes nothing, which the count
   * of keys below would misread as missing */
  config_setting_t *levels = config_setting_get_member(sched, "levels");
  gboolean other_kind[2] = {pc.target > 0.0 || levels, pc.amount > 0.0 || levels};
  for (int k = 0; k < 2; k++) {
    const char *key = k ? "target" : "amount";
    config_setting_t *s = config_setting_get_member(sched, key);
    double v = k ? pc.target : pc.amount;
    /* 0 beside another kind is how an experiment switches away from the base's kind
     * (merging cannot remove a key); alone it is a mistake */
    if (s && !(v >= 0.0 && v < 1.0)) {
      prunus_config_fail_at(cfg, s, error,
                            "key 'prune.schedule.%s' = %g is out of range: must be in (0, 1) "
                            "(or 0 beside another kind, to switch kind over a base config's)",
                            key, v);
      goto out_clear;
    }
    if (s && v == 0.0 && !other_kind[k]) {
      prunus_config_fail_at(cfg, s, error,
                            "prune.schedule.%s = 0: must be above 0 (a round that removes "
                            "nothing is no round)",
                            key);
      goto out_clear;
    }
  }
  if ((pc.amount > 0.0) + (pc.target > 0.0) + (levels != NULL) != 1) {
    /* name where each kind given is written: one may come from an experiment or --set */
    GString *given = g_string_new(NULL);
    const char *const kinds[] = {"amount", "target", "levels"};
    const gboolean on[] = {pc.amount > 0.0, pc.target > 0.0, levels != NULL};
    for (int k = 0; k < 3; k++)
      if (on[k]) {
        char *at = prunus_config_where(cfg, config_setting_get_member(sched, kinds[k]));
        g_string_append_printf(given, "%s%s (%s)", given->len ? " and " : "", kinds[k], at);
        g_free(at);
      }
    /* named first where the latest of them is written: --set, else an experiment's */
    config_setting_t *at = sched;
    for (int pass = 0; pass < 2 && at == sched; pass++)
      for (int k = 0; k < 3 && at == sched; k++) {
        config_setting_t *m = on[k] ? config_setting_get_member(sched, kinds[k]) : NULL;
        char *w = m ? prunus_config_where(cfg, m) : NULL;
        if (m && (pass == 0 ? g_str_has_prefix(w, "--set ") : prunus_config_merged(cfg, m))) at = m;
        g_free(w);
      }
    prunus_config_fail_at(cfg, at, error,
                          "prune.schedule: give exactly one of amount (fraction of what "
                          "remains, per round), target (final sparsity reached geometrically) "
                          "or levels (the sparsity after each round); found %s%s",
                          given->len ? given->str : "none",
                          given->len ? " (to switch kind over a base config's, set "
                                       "the other to 0)"
                                     : "");
    g_string_free(given, TRUE);
    goto out_clear;
  }
  if (pc.allocation != PRUNUS_ALLOCATION_UNIFORM && pc.scope != PRUNUS_SCOPE_LAYER) {
    prunus_config_fail_at(cfg, config_setting_get_member(sched, "allocation"), error,
                          "prune.schedule: allocation applies to scope = \"layer\" only (a "
                          "global scope ranks every layer together already)");
    goto out_clear;
  }
  if (pc.target > 0.0) pc.amount = 1.0 - pow(1.0 - pc.target, 1.0 / pc.rounds);
  if (!parse_levels(cfg, sched, &pc, error)) goto out_clear;
  /* what the schedule reaches after its last round: 1 - prod(1 - amount_r) */
  pc.final_target = 1.0;
  for (int r = 0; r < pc.rounds; r++)
    pc.final_target *= 1.0 - (pc.round_amount ? pc.round_amount[r] : pc.amount);
  pc.final_target = 1.0 - pc.final_target;
  for (int i = 0; i < arch->n_layers; i++) {
    pc.layer_cap[i] = max_sparsity;
    pc.layer_cap_key[i] = config_setting_get_member(sched, "max_sparsity");
  }
  pc.output_layer = -1;
  for (int i = 0; i < arch->n_layers; i++)
    if (prunus_layer_type_has_weights(arch->layers[i].type)) pc.output_layer = i;
  if (!parse_layer_overrides(cfg, prune, arch, &pc, error)) goto out_clear;
  const char *pretrained = NULL;
  if (!prunus_config_get_int(cfg, prune, "rewind_epoch", FALSE, 0, &pc.rewind_epoch, error) ||
      !prunus_config_get_string(cfg, prune, "pretrained", FALSE, NULL, &pretrained, error))
    goto out_clear;
  if (pretrained) pc.pretrained = prunus_config_resolve_path(cfg, pretrained);
  if (!prunus_config_get_string(cfg, prune, "masks_from", FALSE, NULL, &pc.masks_from, error))
    goto out_clear;
  if (pc.masks_from) pc.masks_from_key = config_setting_get_member(prune, "masks_from");
  /* θk is kept while this run pretrains (a pretrained model brings no θ at all) */
  if (pretrained && pc.rewind_epoch != 0) {
    char *at = prunus_config_where(cfg, config_setting_get_member(prune, "pretrained"));
    prunus_config_fail_at(cfg, config_setting_get_member(prune, "rewind_epoch"), error,
                          "prune.rewind_epoch = %d keeps the weights after pretraining epoch "
                          "%d, but prune.pretrained (%s) skips pretraining: set "
                          "prune.rewind_epoch = 0 beside it, or remove prune.pretrained",
                          pc.rewind_epoch, pc.rewind_epoch, at);
    g_free(at);
    goto out_clear;
  }
  if (!pretrained && (pc.rewind_epoch < 0 || pc.rewind_epoch > rc->train.epochs)) {
    prunus_config_fail_at(cfg, config_setting_get_member(prune, "rewind_epoch"), error,
                          "prune.rewind_epoch = %d is outside [0, train.epochs = %d]",
                          pc.rewind_epoch, rc->train.epochs);
    goto out_clear;
  }
  pc.criterion = plugin_slot(cfg, prune, "criterion", &pc.criterion_name, error);
  if (!pc.criterion) goto out_clear;
  /* Host-side settings of data-using criteria live in the criterion's group; the upper
   * bounds keep an absurd value from reaching an allocation. */
  if (!prunus_config_get_int_in(cfg, pc.criterion, "calib_batches", FALSE, 8, 1, 1000000,
                                &pc.calib_batches, error) ||
      !prunus_config_get_int_in(cfg, pc.criterion, "calib_batch", FALSE, 128, 1,
                                PRUNUS_MODEL_MAX_BATCH, &pc.calib_batch, error))
    goto out_clear;
  /* rounds over no prunable layer would run to the end removing nothing: every one of
   * them excluded is a mistake in prune.layers (masks_from takes another's masks) */
  gboolean any_prunable = FALSE;
  for (int i = 0; i < arch->n_layers; i++)
    any_prunable |= pc.layer_rate[i] > 0.0 && prunus_layer_type_has_weights(arch->layers[i].type);
  if (!any_prunable && !pc.masks_from) {
    config_setting_t *layers = config_setting_get_member(prune, "layers");
    prunus_config_fail_at(
        cfg, layers ? layers : prune, error,
        "prune.layers excludes every dense and conv2d layer (rate 0 or exclude = "
        "true): the rounds would remove nothing; leave at least one layer to prune");
    goto out_clear;
  }
  if (!prunus_config_get_bool(cfg, prune, "recalibrate_bn", FALSE, FALSE, &pc.recalibrate_bn,
                              error))
    goto out_clear;
  if (pc.recalibrate_bn) {
    gboolean has_bn = FALSE;
    for (int i = 0; i < arch->n_layers; i++)
      has_bn |= arch->layers[i].type == PRUNUS_LAYER_BATCHNORM;
    if (!has_bn) {
      prunus_config_fail_at(
          cfg, config_setting_get_member(prune, "recalibrate_bn"), error,
          "prune.recalibrate_bn = true, but the model has no batchnorm layer whose "
          "statistics it could re-estimate; remove the key");
      goto out_clear;
    }
  }
  pc.granularity = plugin_slot(cfg, prune, "granularity", &pc.granularity_name, error);
  if (!pc.granularity) goto out_clear;
  pc.retrain = plugin_slot(cfg, prune, "retrain", &pc.retrain_name, error);
  if (!pc.retrain) goto out_clear;
  /* latency = { batches = [1, 256]; mode = "adaptive"; seconds = 0.2; tolerance = 0.02;
   *             max_share = 0.1; } */
  pc.latency_batches[0] = 1, pc.latency_batches[1] = 256, pc.n_latency_batches = 2;
  pc.latency_mode = PRUNUS_LATENCY_ADAPTIVE;
  pc.latency_budget = 0.2, pc.latency_tolerance = 0.02, pc.latency_share = 0.1;
  config_setting_t *lat = prunus_config_get_group(cfg, prune, "latency", FALSE, error);
  if (error && *error) goto out_clear;
  if (lat) {
    static const char *const modes[] = {[PRUNUS_LATENCY_FIXED] = "fixed",
                                        [PRUNUS_LATENCY_ADAPTIVE] = "adaptive",
                                        [PRUNUS_LATENCY_ADAPTIVE + 1] = NULL};
    if (!prunus_config_get_enum(cfg, lat, "mode", FALSE, PRUNUS_LATENCY_ADAPTIVE, modes,
                                &pc.latency_mode, error) ||
        !prunus_config_get_double_in(cfg, lat, "seconds", FALSE, 0.2, 0.0, TRUE, 60.0, FALSE,
                                     &pc.latency_budget, error) ||
        !prunus_config_get_double_in(cfg, lat, "tolerance", FALSE, 0.02, 0.0, TRUE, 1.0, TRUE,
                                     &pc.latency_tolerance, error) ||
        !prunus_config_get_double_in(cfg, lat, "max_share", FALSE, 0.1, 0.0, TRUE, 1.0, FALSE,
                                     &pc.latency_share, error))
      goto out_clear;
    config_setting_t *b = config_setting_get_member(lat, "batches");
    if (b) {
      prunus_config_mark_read(cfg, b);
      int n = config_setting_length(b);
      /* the report's table reads the last one: the list is never empty */
      if (!config_setting_is_aggregate(b) || n < 1 || n > 4) {
        prunus_config_fail_at(cfg, b, error,
                              "prune.latency.batches must be a list of 1 to 4 batch sizes");
        goto out_clear;
      }
      pc.n_latency_batches = n;
      for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(b, (unsigned)i);
        prunus_config_mark_read(cfg, e);
        pc.latency_batches[i] =
            config_setting_type(e) == CONFIG_TYPE_INT ? config_setting_get_int(e) : 0;
        if (pc.latency_batches[i] < 1 || pc.latency_batches[i] > 4096) {
          prunus_config_fail_at(cfg, e, error,
                                "prune.latency.batches[%d]: expected an integer in [1, 4096]", i);
          goto out_clear;
        }
        for (int k = 0; k < i; k++)
          if (pc.latency_batches[k] == pc.latency_batches[i]) {
            prunus_config_fail_at(
                cfg, e, error,
                "prune.latency.batches[%d] = %d repeats batches[%d]: list each batch "
                "size once",
                i, pc.latency_batches[i], k);
            goto out_clear;
          }
      }
    }
  }
  *out = pc;
  return TRUE;

out_clear:
  prunus_prune_config_clear(&pc);
  return FALSE;
}

void prunus_prune_config_clear(PrunusPruneConfig *pc) {
  g_clear_pointer(&pc->layer_rate, g_free);
  g_clear_pointer(&pc->layer_cap, g_free);
  g_clear_pointer(&pc->layer_cap_key, g_free);
  g_clear_pointer(&pc->round_amount, g_free);
  g_clear_pointer(&pc->pretrained, g_free);
}
