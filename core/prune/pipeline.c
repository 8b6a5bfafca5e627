/* pipeline.c: one experiment of the iterative schedule: prepare (its plugins created
 * and checked, no data, no training), then run: pretrain (keeping θ0 and θk), then per
 * round score -> plan -> apply -> retrain -> evaluate -> checkpoint. */
#include "pipeline.h"
#include "calib.h"
#include "checkpoint.h"
#include "engine.h"
#include "groups.h"
#include "hash.h"
#include "latency.h"
#include "plugin_guard.h"
#include "plugin_host.h"
#include "progress.h"
#include "rng.h"
#include "rundir.h"
#include "safetensors.h"
#include "shrink.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct PrunusPipeline {
  PrunusExperiment exp; /* what the command handed over (borrowed pointers) */
  const PrunusPruneConfig *pc;
  PrunusPluginRegistry *reg;      /* (transfer none) where the plugins are found */
  const PrunusData *data;         /* NULL until prunus_pipeline_run */
  PrunusHost *crit, *gran, *retr; /* NULL but while prepare checks them and while run runs */
  PrunusModel *m;                 /* NULL until pretraining (or resuming) gives the model */
  float *theta0;          /* (m->n_params) initial weights, NULL when pretrained elsewhere */
  float *thetak;          /* (m->n_params) weights after pretraining epoch pc->rewind_epoch */
  PrunusModel *dense_ref; /* the unpruned architecture, for dense-with-zeros latency */
  PrunusModel *round_ref; /* m as the round in progress began (PRUNUS_NEED_INPUT_CROSS's X0),
                           * NULL when the criterion does not ask for it */
  uint64_t params_total, prunable_total, dense_flops;
  PrunusViewSet vs;   /* the view plugins see: of dense_ref until m exists, then of m */
  gboolean *prunable; /* (n_layers) */
  int round;
  gboolean resuming; /* while resume() reads what an earlier run left */
  int train_calls;   /* prunus_train calls so far in round train_calls_round */
  int train_calls_round;
  PrunusEpochLog log;
  GArray *rounds;       /* PrunusRoundMetrics */
  PrunusJson *summary;  /* the whole summary.json */
  PrunusJson *exp_json; /* (transfer none) this experiment's entry inside summary */
  /* the plan request of the round (or layer) in progress: what plan() gets and the
   * plan_request service hands out */
  PrunusPlanRequest req;
  double *req_amount, *req_cap; /* (req_n_layers) req's layer_amount and max_sparsity */
  int req_n_layers;
  /* (alloc_n_layers) this round's per-layer amounts from a global magnitude ranking
   * (prune.schedule.allocation = "global-magnitude"), NULL otherwise */
  double *alloc_amount;
  int alloc_n_layers;
  int pattern_n, pattern_m;  /* the granularity's fixed pattern, 0 and 0 = none */
  gboolean removes_units;    /* the granularity ranks units (accepts UNIT or GROUP scores) */
  int updating;              /* the view layer whose update() runs, -1 outside update() */
  double requested_sparsity; /* what the round in progress asked for (NaN: units removed) */
  PrunusPipelineTiming timing;
  PrunusRunClock own_clock;  /* the clock latency budgets run on when exp.clock is NULL */
  GHashTable *latency_cache; /* the run's measurements (PrunusRunClock.latency), or its own */
  /* (n_layers of the dense engine) its padding choices, borrowed from latency_cache;
   * NULL until measured */
  const gboolean *dense_pad;
};
typedef PrunusPipeline Pipeline;

/* ------------------------------------------------------------------------ */
/* training */

uint64_t prunus_pipeline_train_seed(uint64_t config_seed, int round, int call) {
  uint64_t seed =
      round == 0 ? config_seed : prunus_seed_derive(config_seed, "retrain") + (uint64_t)round;
  /* hashed before the call index is added: round seeds are consecutive integers */
  return call == 0 ? seed
                   : prunus_seed_derive(prunus_seed_derive(seed, "retrain-call") + (uint64_t)call,
                                        "retrain-call");
}

/* Train the current model: epochs at base lr (<= 0: the config's), placed at
 * offset on a schedule of total epochs (0 = a fresh schedule of `epochs`). Pretraining
 * (round 0) also keeps θk when thetak is allocated. */
static gboolean pipeline_train(Pipeline *p, int epochs, double lr, double offset, int total,
                               GError **error) {
  if (epochs == 0) return TRUE;
  PrunusTrainConfig tc = p->exp.rc->train;
  tc.epochs = epochs;
  if (lr > 0.0) tc.lr = lr;
  PrunusTrainOptions opt = {
      .threads = p->exp.threads, .epoch_offset = offset, .schedule_epochs = total};
  if (p->round == 0 && p->thetak)
    opt.snapshot_epoch = p->pc->rewind_epoch, opt.snapshot = p->thetak;
  p->log.round = p->round;
  prunus_epoch_log_attach(&p->log, &opt);
  prunus_optim_reset(p->m);
  if (p->train_calls_round != p->round) p->train_calls_round = p->round, p->train_calls = 0;
  uint64_t seed = prunus_pipeline_train_seed(p->exp.rc->seed, p->round, p->train_calls++);
  return prunus_train(p->m, &tc, p->data->train, p->data->val, &p->data->norm, seed, &opt, error);
}

/* ------------------------------------------------------------------------ */
/* host callbacks for plugins */

static const PrunusModelView *cb_model(void *user) {
  Pipeline *p = user;
  return &p->vs.view;
}

/* The retrain services work on the trained model: prunus_pipeline_prepare creates the
 * instances before there is one, so create() may not call them. */
static gboolean model_ready(Pipeline *p, const char *service, GError **error) {
  if (p->m) return TRUE;
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
              "the %s service was called before pretraining (from create()?); it is only "
              "available in retrain()",
              service);
  return FALSE;
}

static gboolean cb_train(void *user, int epochs, double lr, double offset, int total,
                         GError **error) {
  return model_ready(user, "train", error) &&
         pipeline_train(user, epochs, lr, offset, total, error);
}

static gboolean cb_rewind(void *user, int epoch, GError **error) {
  Pipeline *p = user;
  if (!model_ready(p, "rewind", error)) return FALSE;
  const float *src = NULL;
  if (epoch == 0)
    src = p->theta0;
  else if (epoch == p->pc->rewind_epoch)
    src = p->thetak;
  if (!src) {
    if (epoch == 0)
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                  "cannot rewind to the initial weights θ0: the model came from prune.pretrained, "
                  "which does not hold them; pretrain in this run instead");
    else
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                  "cannot rewind to epoch %d: set prune.rewind_epoch = %d so the pipeline keeps "
                  "those weights (it keeps %d)",
                  epoch, epoch, p->pc->rewind_epoch);
    return FALSE;
  }
  for (size_t i = 0; i < p->m->n_params; i++) p->m->params[i] = src[i] * p->m->mask[i];
  prunus_optim_reset(p->m);
  return TRUE;
}

static gboolean cb_reinit(void *user, uint64_t seed, GError **error) {
  Pipeline *p = user;
  if (!model_ready(p, "reinit", error)) return FALSE;
  prunus_model_init_params(p->m, seed);
  prunus_optim_reset(p->m);
  return TRUE;
}

static void cb_evaluate(void *user, double *loss, double *accuracy) {
  Pipeline *p = user;
  if (!p->m) { /* no model before pretraining: nothing to measure */
    *loss = *accuracy = NAN;
    return;
  }
  PrunusEvalResult r = prunus_evaluate(p->m, p->data->val, &p->data->norm, p->exp.rc->train.batch);
  *loss = r.loss;
  *accuracy = r.accuracy;
}

/* ------------------------------------------------------------------------ */
/* scoring, planning, applying */

typedef struct {
  PrunusHost *host;
  const PrunusCriterionOps *ops;
} Observer;

static int observe_step(void *user, const PrunusModelView *view, const PrunusCalibStep *step) {
  Observer *o = user;
  prunus_host_call_begin(o->host, "observe()");
  int rc = o->ops->observe(prunus_host_state(o->host), view, step);
  prunus_host_call_end(o->host);
  return rc;
}

typedef struct {
  int nl;
  float **weight; /* [view layer] (n_weights) or NULL when not produced */
  float **unit;   /* [view layer] (n_units) */
  uint8_t **rm_w; /* [view layer] (n_weights) */
  uint8_t **rm_u; /* [view layer] (n_units) */
  float *group;   /* (n_groups) group scores, or NULL when not produced */
  int ng;
} Buffers;

static void buffers_init(Buffers *b, const PrunusModelView *v, uint32_t produces) {
  *b = (Buffers){.nl = v->n_layers};
  b->weight = g_new0(float *, b->nl);
  b->unit = g_new0(float *, b->nl);
  b->rm_w = g_new0(uint8_t *, b->nl);
  b->rm_u = g_new0(uint8_t *, b->nl);
  for (int k = 0; k < b->nl; k++) {
    if (produces & PRUNUS_SCORES_WEIGHT) b->weight[k] = g_new0(float, v->layers[k].n_weights);
    if (produces & PRUNUS_SCORES_UNIT) b->unit[k] = g_new0(float, v->layers[k].n_units);
    b->rm_w[k] = g_new0(uint8_t, v->layers[k].n_weights);
    b->rm_u[k] = g_new0(uint8_t, v->layers[k].n_units);
  }
  b->ng = v->n_groups;
  if (produces & PRUNUS_SCORES_GROUP) b->group = g_new0(float, MAX(b->ng, 1));
}

static void buffers_clear(Buffers *b) {
  for (int k = 0; k < b->nl; k++) {
    g_free(b->weight[k]), g_free(b->unit[k]), g_free(b->rm_w[k]), g_free(b->rm_u[k]);
  }
  g_free(b->weight), g_free(b->unit), g_free(b->rm_w), g_free(b->rm_u), g_free(b->group);
  memset(b, 0, sizeof *b);
}

/* Non-finite scores are an error naming the plugin, layer and index. */
static gboolean check_scores(Pipeline *p, PrunusHost *crit, const Buffers *b, GError **error) {
  for (int g = 0; b->group && g < b->ng; g++) {
    if (!isfinite(b->group[g])) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC,
                  "prune.criterion plugin '%s': round %d: score of group %d is %g; scores must "
                  "be finite",
                  prunus_host_desc(crit)->name, p->round, g, b->group[g]);
      return FALSE;
    }
  }
  for (int k = 0; k < b->nl; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    for (size_t i = 0; b->weight[k] && i < l->n_weights; i++) {
      if (l->mask[i] != 0.0f && !isfinite(b->weight[k][i])) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC,
                    "prune.criterion plugin '%s': round %d: score of layer %s weight %zu is %g; "
                    "scores must be finite",
                    prunus_host_desc(crit)->name, p->round, l->name, i, b->weight[k][i]);
        return FALSE;
      }
    }
    for (int u = 0; b->unit[k] && u < l->n_units; u++) {
      if (!isfinite(b->unit[k][u])) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC,
                    "prune.criterion plugin '%s': round %d: score of layer %s unit %d is %g; "
                    "scores must be finite",
                    prunus_host_desc(crit)->name, p->round, l->name, u, b->unit[k][u]);
        return FALSE;
      }
    }
  }
  return TRUE;
}

/* The plan request of this round (round 0: the first round's), for the layers of
 * the view now: every layer (layer = -1) or, layerwise, layer alone (every other
 * layer's amount 0). The plan_request service hands it out until the next call. */
static void build_request(Pipeline *p, int layer) {
  int nl = p->vs.view.n_layers;
  if (p->req_n_layers != nl) {
    g_free(p->req_amount), g_free(p->req_cap);
    p->req_amount = g_new0(double, MAX(nl, 1));
    p->req_cap = g_new0(double, MAX(nl, 1));
    p->req_n_layers = nl;
  }
  int r = MAX(p->round, 1);
  double amount = p->pc->round_amount ? p->pc->round_amount[r - 1] : p->pc->amount;
  for (int k = 0; k < nl; k++) {
    int li = p->vs.layer_index[k];
    double rate = p->pc->layer_rate[li];
    double share = p->alloc_amount && p->alloc_n_layers == nl ? p->alloc_amount[k] : amount;
    p->req_amount[k] = p->pc->scope == PRUNUS_SCOPE_LAYER ? fmin(0.999999, share * rate) : rate;
    if (layer >= 0 && k != layer) p->req_amount[k] = 0.0;
    p->req_cap[k] = p->pc->layer_cap[li];
  }
  p->req = (PrunusPlanRequest){.scope = p->pc->scope,
                               .layer_amount = p->req_amount,
                               .amount = amount,
                               .max_sparsity = p->req_cap,
                               .round = r,
                               .rounds = p->pc->rounds,
                               .target = p->pc->final_target,
                               .layer = layer,
                               .pattern_n = p->pattern_n,
                               .pattern_m = p->pattern_m};
}

static const PrunusPlanRequest *cb_plan_request(void *user) {
  Pipeline *p = user;
  if (p->req_n_layers == 0) build_request(p, -1);
  return &p->req;
}

/* "layer K = 'NAME'" for view layer k, as messages to plugin writers name a layer: the
 * index they pass and the name they see (which may be another index). */
static char *view_layer_label(const Pipeline *p, int k) {
  if (k < 0 || k >= p->vs.view.n_layers)
    return g_strdup_printf("layer %d (the view has layers 0 to %d)", k, p->vs.view.n_layers - 1);
  return g_strdup_printf("layer %d = '%s'", k, p->vs.layers[k].name);
}

/* The set_weights service: only from update(), for its layer. */
static gboolean cb_set_weights(void *user, int layer, const float *w, GError **error) {
  Pipeline *p = user;
  if (p->updating < 0 || layer != p->updating) {
    char *target = view_layer_label(p, layer);
    char *caller = p->updating < 0 ? NULL : view_layer_label(p, p->updating);
    if (!caller)
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                  "set_weights(%s) was called outside update(); a criterion may write weights "
                  "only from its update()",
                  target);
    else
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                  "set_weights(%s) was called from update() of %s; a criterion may write only "
                  "the layer update() was called for",
                  target, caller);
    g_free(target);
    g_free(caller);
    return FALSE;
  }
  const PrunusLayerView *l = &p->vs.layers[layer];
  for (size_t i = 0; i < l->n_weights; i++) {
    if (l->mask[i] != 0.0f && !isfinite(w[i])) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC,
                  "set_weights(layer %d = '%s'): weight %zu is %g; weights must be finite", layer,
                  l->name, i, w[i]);
      return FALSE;
    }
  }
  float *dst = p->m->params + p->m->layers[p->vs.layer_index[layer]].w_off;
  for (size_t i = 0; i < l->n_weights; i++) dst[i] = l->mask[i] != 0.0f ? w[i] : 0.0f;
  return TRUE;
}

/* Calibrate (layer = -1: the whole model; else that view layer alone) and score. */
static gboolean score_model(Pipeline *p, PrunusHost *crit, Buffers *b, uint32_t needs, int layer,
                            GError **error) {
  const PrunusCriterionOps *ops = prunus_host_desc(crit)->criterion;
  void *state = prunus_host_state(crit);
  needs &= ~(uint32_t)(PRUNUS_NEED_WEIGHTS | PRUNUS_NEED_LAYERWISE);
  if (needs) {
    if (!ops->observe) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                  "prune.criterion plugin '%s' needs calibration data but has no observe()",
                  prunus_host_desc(crit)->name);
      return FALSE;
    }
    Observer o = {crit, ops};
    uint64_t seed = prunus_seed_derive(p->exp.rc->seed, "calibration") + (uint64_t)p->round;
    if (!prunus_calibrate_ref(p->m, p->round_ref, &p->vs, p->data->train, &p->data->norm, needs,
                              p->pc->calib_batches, p->pc->calib_batch, seed, layer, observe_step,
                              &o)) {
      prunus_host_set_failure(crit, "observe() failed", error);
      return FALSE;
    }
  }
  PrunusScores scores = {
      .weight_scores = b->weight, .unit_scores = b->unit, .layer = layer, .group_scores = b->group};
  prunus_host_call_begin(crit, "score()");
  int score_rc = ops->score(state, &p->vs.view, &scores);
  prunus_host_call_end(crit);
  if (score_rc != 0) {
    prunus_host_set_failure(crit, "score() failed", error);
    return FALSE;
  }
  return check_scores(p, crit, b, error);
}

/* On a graph, units go by whole channel groups: a plan that splits one or empties a layer
 * is refused before anything of it is applied. */
static gboolean check_group_plan(Pipeline *p, PrunusHost *gran, const Buffers *b, GError **error) {
  PrunusGroups *g = prunus_groups_build(p->m);
  const uint8_t **per_layer = g_new0(const uint8_t *, p->m->n_layers);
  for (int k = 0; k < b->nl; k++) per_layer[p->vs.layer_index[k]] = b->rm_u[k];
  uint8_t *rm = g_new0(uint8_t, MAX(g->n_groups, 1));
  gboolean ok = prunus_groups_from_units(g, p->m, per_layer, rm, error);
  if (!ok)
    g_prefix_error(error, "prune.granularity plugin '%s', round %d: ", prunus_host_desc(gran)->name,
                   p->round);
  g_free(rm);
  g_free(per_layer);
  prunus_groups_free(g);
  return ok;
}

/* The plan's weights, checked before any of it is applied: none of a layer the config
 * excludes, and never every remaining weight of a layer (its outputs would no longer
 * depend on its inputs: the network is cut there). plugin.h asks plan() to refuse such
 * a plan itself; the host holds every plugin to it. */
static gboolean check_weight_plan(Pipeline *p, PrunusHost *gran, const Buffers *b, GError **error) {
  for (int k = 0; k < b->nl; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    const PrunusLayer *ml = &p->m->layers[p->vs.layer_index[k]];
    size_t alive = 0, removed = 0;
    for (size_t i = 0; i < l->n_weights; i++) {
      gboolean was = p->m->mask[ml->w_off + i] != 0.0f;
      alive += was;
      removed += was && b->rm_w[k][i];
      if (b->rm_w[k][i] && !l->prunable) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                    "prune.granularity plugin '%s' removed weights of layer %s, which the config "
                    "excludes from pruning",
                    prunus_host_desc(gran)->name, l->name);
        return FALSE;
      }
    }
    if (alive > 0 && removed == alive) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                  "prune.granularity plugin '%s', round %d: the plan removes all %zu remaining "
                  "weights of layer %s; refusing to empty a layer (plan() must leave every "
                  "layer at least one weight: plugin.h)",
                  prunus_host_desc(gran)->name, p->round, alive, l->name);
      return FALSE;
    }
  }
  return TRUE;
}

/* Apply the plan: weights -> masks; units -> a physically smaller model. Adds what it
 * removed to *removed_weights and *removed_units. */
static gboolean apply_plan(Pipeline *p, PrunusHost *gran, Buffers *b, size_t *removed_weights,
                           int *removed_units, GError **error) {
  PrunusModel *m = p->m;
  int units = 0;
  if (!prunus_model_is_sequence(m) && !check_group_plan(p, gran, b, error)) return FALSE;
  if (!check_weight_plan(p, gran, b, error)) return FALSE;
  for (int k = 0; k < b->nl; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    const PrunusLayer *ml = &m->layers[p->vs.layer_index[k]];
    for (size_t i = 0; i < l->n_weights; i++) {
      if (!b->rm_w[k][i]) continue;
      *removed_weights += m->mask[ml->w_off + i] != 0.0f;
      m->mask[ml->w_off + i] = 0.0f;
      m->params[ml->w_off + i] = 0.0f;
    }
    for (int u = 0; u < l->n_units; u++) {
      if (!b->rm_u[k][u]) continue;
      if (!l->prunable || l->is_output) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                    "prune.granularity plugin '%s' removed unit %d of layer %s, which %s",
                    prunus_host_desc(gran)->name, u, l->name,
                    l->is_output ? "is the output layer" : "the config excludes from pruning");
        return FALSE;
      }
      units++;
    }
  }
  *removed_units += units;
  if (units > 0) {
    const uint8_t **per_layer = g_new0(const uint8_t *, m->n_layers);
    for (int k = 0; k < b->nl; k++) per_layer[p->vs.layer_index[k]] = b->rm_u[k];
    const float *extra_in[2];
    float *extra_out[2] = {NULL, NULL};
    int n_extra = 0;
    if (p->theta0) extra_in[n_extra++] = p->theta0;
    if (p->thetak) extra_in[n_extra++] = p->thetak;
    PrunusModel *shrunk = prunus_model_shrink(m, per_layer, extra_in, extra_out, n_extra, error);
    /* the round's copy of the network loses the same units, so that the next layer's
     * inputs X and X0 (PRUNUS_NEED_INPUT_CROSS) keep the same columns */
    PrunusModel *ref = shrunk && p->round_ref
                           ? prunus_model_shrink(p->round_ref, per_layer, NULL, NULL, 0, error)
                           : NULL;
    g_free(per_layer);
    if (!shrunk || (p->round_ref && !ref)) {
      prunus_model_free(shrunk);
      for (int e = 0; e < n_extra; e++) g_free(extra_out[e]);
      return FALSE;
    }
    if (ref) prunus_model_free(p->round_ref), p->round_ref = ref;
    int e = 0;
    if (p->theta0) g_free(p->theta0), p->theta0 = extra_out[e++];
    if (p->thetak) g_free(p->thetak), p->thetak = extra_out[e++];
    prunus_model_free(p->m);
    p->m = shrunk;
    prunus_view_clear(&p->vs);
    prunus_view_build(&p->vs, p->m, p->prunable);
  }
  return TRUE;
}

/* Score, plan and apply for the request built for `layer` (-1 = the whole model). */
static gboolean score_plan_apply(Pipeline *p, uint32_t produces, uint32_t needs, int layer,
                                 size_t *removed_weights, int *removed_units, GError **error) {
  const PrunusGranularityOps *gops = prunus_host_desc(p->gran)->granularity;
  build_request(p, layer);
  Buffers b;
  buffers_init(&b, &p->vs.view, produces);
  gboolean ok = score_model(p, p->crit, &b, needs, layer, error);
  if (ok) {
    PrunusScores scores = {.weight_scores = (produces & PRUNUS_SCORES_WEIGHT) ? b.weight : NULL,
                           .unit_scores = (produces & PRUNUS_SCORES_UNIT) ? b.unit : NULL,
                           .layer = layer,
                           .group_scores = b.group};
    PrunusPlan plan = {.remove_weights = b.rm_w, .remove_units = b.rm_u};
    prunus_host_call_begin(p->gran, "plan()");
    int plan_rc = gops->plan(prunus_host_state(p->gran), &p->vs.view, &scores, &p->req, &plan);
    prunus_host_call_end(p->gran);
    if (plan_rc != 0) {
      prunus_host_set_failure(p->gran, "plan() failed", error);
      ok = FALSE;
    }
  }
  if (ok) ok = apply_plan(p, p->gran, &b, removed_weights, removed_units, error);
  buffers_clear(&b);
  return ok;
}

/* The criterion's update() for view layer k, whose mask is final for the round. */
static gboolean update_layer(Pipeline *p, int k, GError **error) {
  const PrunusCriterionOps *cops = prunus_host_desc(p->crit)->criterion;
  if (!cops->update) return TRUE;
  p->updating = k;
  prunus_host_call_begin(p->crit, "update()");
  int rc = cops->update(prunus_host_state(p->crit), &p->vs.view, k);
  prunus_host_call_end(p->crit);
  p->updating = -1;
  if (rc == 0) return TRUE;
  char *label = view_layer_label(p, k);
  char *what = g_strdup_printf("update() of %s failed", label);
  g_free(label);
  prunus_host_set_failure(p->crit, what, error);
  g_free(what);
  return FALSE;
}

/* Prunable weights alive in the model now (every layer with weights). */
static uint64_t alive_weights(const Pipeline *p) {
  uint64_t alive = 0;
  for (int k = 0; k < p->vs.view.n_layers; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    for (size_t i = 0; i < l->n_weights; i++) alive += l->mask[i] != 0.0f;
  }
  return alive;
}

/* The weights a max_sparsity cap keeps alive in a layer of n: at least
 * ceil((1 - cap) * n), less a hair for the float error of cap * n (the granularities'
 * rule, plugins.md). */
static double cap_keeps(double cap, double n) { return MAX(0.0, ceil((1.0 - cap) * n - 1e-9)); }

/* The weights the round's request asks to remove, as a weight-level plan counts them:
 * each layer its rate of its alive weights within its max_sparsity cap, except that in
 * global scope the layers at rate 1 share one ranking: together they lose the round's
 * amount of their alive weights, a capped layer's share going to the others, within
 * what their caps leave. */
static double requested_removals(const Pipeline *p) {
  double total = 0.0, pool_alive = 0.0, pool_room = 0.0;
  for (int k = 0; k < p->vs.view.n_layers; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    if (!l->prunable || p->req_amount[k] <= 0.0) continue;
    size_t alive = 0;
    for (size_t i = 0; i < l->n_weights; i++) alive += l->mask[i] != 0.0f;
    double room = MAX(0.0, (double)alive - cap_keeps(p->req_cap[k], (double)l->n_weights));
    if (p->req.scope == PRUNUS_SCOPE_GLOBAL && p->req_amount[k] == 1.0) {
      pool_alive += (double)alive, pool_room += room;
      continue;
    }
    double rate =
        p->req.scope == PRUNUS_SCOPE_LAYER ? p->req_amount[k] : p->req.amount * p->req_amount[k];
    total += MIN(floor(rate * (double)alive + 0.5), room);
  }
  return total + MIN(floor(p->req.amount * pool_alive + 0.5), pool_room);
}

typedef struct {
  float magnitude;
  int layer;
} RankedWeight;

static int ranked_weight_cmp(const void *a, const void *b) {
  const RankedWeight *x = a, *y = b;
  if (x->magnitude != y->magnitude) return x->magnitude < y->magnitude ? -1 : 1;
  return (x->layer > y->layer) - (x->layer < y->layer);
}

/* prune.schedule.allocation = "global-magnitude": before a layer-scope round prunes
 * anything, rank the alive weights of the prunable layers at rate 1 by |w| together;
 * the round's amount of them, smallest first, gives each of those layers its share
 * (removed / alive in that layer). A layer at another rate keeps amount x rate, as
 * in a global-scope round. A layerwise criterion (sparsegpt, wanda) then chooses
 * within each layer; magnitude makes the masks of global magnitude pruning. Ties go
 * to the earlier layer. */
static void allocate_global_magnitude(Pipeline *p) {
  int nl = p->vs.view.n_layers;
  g_free(p->alloc_amount);
  p->alloc_amount = g_new0(double, MAX(nl, 1));
  p->alloc_n_layers = nl;
  size_t *alive = g_new0(size_t, MAX(nl, 1)), total = 0;
  for (int k = 0; k < nl; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    if (!l->prunable || p->pc->layer_rate[p->vs.layer_index[k]] != 1.0) continue;
    for (size_t i = 0; i < l->n_weights; i++) alive[k] += l->mask[i] != 0.0f;
    total += alive[k];
  }
  RankedWeight *all = g_new(RankedWeight, MAX(total, 1));
  size_t n = 0;
  for (int k = 0; k < nl; k++) {
    const PrunusLayerView *l = &p->vs.layers[k];
    if (alive[k] == 0) continue;
    for (size_t i = 0; i < l->n_weights; i++)
      if (l->mask[i] != 0.0f) all[n++] = (RankedWeight){fabsf(l->weights[i]), k};
  }
  int r = MAX(p->round, 1);
  double amount = p->pc->round_amount ? p->pc->round_amount[r - 1] : p->pc->amount;
  size_t remove = (size_t)MIN((double)n, floor(amount * (double)n + 0.5));
  qsort(all, n, sizeof *all, ranked_weight_cmp);
  size_t *taken = g_new0(size_t, MAX(nl, 1));
  for (size_t i = 0; i < remove; i++) taken[all[i].layer]++;
  for (int k = 0; k < nl; k++)
    p->alloc_amount[k] = alive[k] ? (double)taken[k] / (double)alive[k] : amount;
  g_free(taken), g_free(all), g_free(alive);
}

/* prune.recalibrate_bn: the batchnorm buffers re-estimated on this round's calibration
 * sample (the criterion's: same seed), so a pruned network is not evaluated, or a
 * later layer calibrated, with the dense network's statistics. Those of model layers
 * 0 .. n_layers - 1 only (p->m->n_layers: all). */
static void recalibrate_bn(Pipeline *p, int n_layers) {
  uint64_t seed = prunus_seed_derive(p->exp.rc->seed, "calibration") + (uint64_t)p->round;
  prunus_calib_recalibrate_bn(p->m, p->data->train, &p->data->norm, p->pc->calib_batches,
                              p->pc->calib_batch, seed, n_layers);
}

/* Whether the round in progress removes anything from view layer k. */
static gboolean round_prunes(const Pipeline *p, int k) {
  return p->vs.layers[k].prunable && p->req_amount[k] > 0.0;
}

/* The model index of the first view layer after k that a layerwise round prunes, or
 * n_layers when none is left. */
static int next_layerwise_layer(const Pipeline *p, int k) {
  for (int j = k + 1; j < p->vs.view.n_layers; j++)
    if (round_prunes(p, j)) return p->vs.layer_index[j];
  return p->m->n_layers;
}

/* One round: score -> plan -> apply (-> update), for the whole model at once, or
 * layer by layer in network order when the criterion calibrates layerwise; then
 * the achieved sparsity against the requested one. */
static gboolean prune_round(Pipeline *p, GError **error) {
  const PrunusCriterionOps *cops = prunus_host_desc(p->crit)->criterion;
  prunus_host_call_begin(p->crit, "produces()");
  uint32_t produces = cops->produces(prunus_host_state(p->crit));
  prunus_host_call_end(p->crit);
  prunus_host_call_begin(p->crit, "needs()");
  uint32_t needs = cops->needs(prunus_host_state(p->crit));
  prunus_host_call_end(p->crit);
  if (p->pc->allocation == PRUNUS_ALLOCATION_GLOBAL_MAGNITUDE) allocate_global_magnitude(p);
  build_request(p, -1);
  uint64_t alive0 = alive_weights(p);
  double requested = requested_removals(p);
  size_t removed_weights = 0;
  int removed_units = 0;
  gboolean ok = TRUE;
  /* the round's copy of the network, for X0; without LAYERWISE nothing is pruned
   * between the passes, so X0 = X and no copy is needed */
  if ((needs & PRUNUS_NEED_INPUT_CROSS) && (needs & PRUNUS_NEED_LAYERWISE))
    ok = (p->round_ref = prunus_model_clone(p->m, error)) != NULL;
  if (ok && (needs & PRUNUS_NEED_LAYERWISE)) {
    const gboolean inputs_only =
        !(needs &
          ~(uint32_t)(PRUNUS_CALIB_INPUT_NEEDS | PRUNUS_NEED_LAYERWISE | PRUNUS_NEED_WEIGHTS));
    for (int k = 0; ok && k < p->vs.view.n_layers; k++) {
      if (!round_prunes(p, k)) continue;
      ok = score_plan_apply(p, produces, needs, k, &removed_weights, &removed_units, error) &&
           update_layer(p, k, error);
      build_request(p, -1);
      /* the next layer's calibration then sees the statistics the pruned network will use.
       * A criterion that needs only layer inputs reads nothing past that layer: then the
       * batchnorms before it now, every one after the last layer (the same buffers as
       * re-estimating all of them each time, which the later layers would overwrite) */
      if (ok && p->pc->recalibrate_bn)
        recalibrate_bn(p, inputs_only ? next_layerwise_layer(p, k) : p->m->n_layers);
    }
  } else if (ok) {
    ok = score_plan_apply(p, produces, needs, -1, &removed_weights, &removed_units, error);
    for (int k = 0; ok && k < p->vs.view.n_layers; k++)
      if (round_prunes(p, k)) ok = update_layer(p, k, error);
    if (ok && p->pc->recalibrate_bn) recalibrate_bn(p, p->m->n_layers);
  }
  prunus_model_free(p->round_ref);
  p->round_ref = NULL;
  if (!ok) return FALSE;
  if (p->pc->recalibrate_bn && !p->exp.quiet)
    printf("%s round %d: batchnorm statistics re-estimated on %d calibration samples%s\n",
           p->exp.name, p->round, MIN(p->pc->calib_batches * p->pc->calib_batch, p->data->train->n),
           needs & PRUNUS_NEED_LAYERWISE ? " after each layer" : "");
  if (!p->exp.quiet)
    printf("%s round %d: removed %zu weights and %d units\n", p->exp.name, p->round,
           removed_weights, removed_units);
  if (removed_weights == 0 && removed_units == 0) {
    char *why = p->pattern_m > 0 ? g_strdup_printf(
                                       "granularity '%s' keeps %d of every %d weights "
                                       "along fan_in: its pattern is full?",
                                       prunus_host_desc(p->gran)->name, p->pattern_n, p->pattern_m)
                                 : g_strdup("amount too small for what remains?");
    fprintf(stderr, "warning: %s round %d: the plan removed nothing (%s)\n", p->exp.name, p->round,
            why);
    g_free(why);
  }
  p->requested_sparsity = NAN;
  if (removed_units == 0 && p->prunable_total > 0) {
    double total = (double)p->prunable_total;
    p->requested_sparsity = 1.0 - ((double)alive0 - requested) / total;
    double achieved = 1.0 - (double)alive_weights(p) / total;
    if (fabs(achieved - p->requested_sparsity) > p->pc->tolerance) {
      char *why = p->pattern_m > 0
                      ? g_strdup_printf(
                            ": granularity '%s' keeps %d of every %d "
                            "weights along fan_in",
                            prunus_host_desc(p->gran)->name, p->pattern_n, p->pattern_m)
                      : g_strdup_printf(" (granularity '%s')", prunus_host_desc(p->gran)->name);
      fprintf(stderr,
              "warning: %s round %d: the plan reached sparsity %.4f, the request asked for %.4f "
              "(more than prune.schedule.tolerance = %g apart)%s\n",
              p->exp.name, p->round, achieved, p->requested_sparsity, p->pc->tolerance, why);
      g_free(why);
    }
  }
  return TRUE;
}

static gboolean same_arch(const PrunusArch *a, const PrunusArch *b) {
  char *x = prunus_arch_to_string(a), *y = prunus_arch_to_string(b);
  gboolean same = !strcmp(x, y);
  g_free(x), g_free(y);
  return same;
}

/* FALSE with an error when the hash `now` of the file at path is not the one summary.json
 * recorded for round k (nothing recorded: TRUE). */
static gboolean hash_as_recorded(const char *path, const char *now, const char *recorded, int k,
                                 GError **error) {
  if (!recorded[0] || !strcmp(now, recorded)) return TRUE;
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
              "%s: its content hash is not the one summary.json recorded when round %d wrote "
              "it (the file changed since)",
              path, k);
  return FALSE;
}

/* The same for the file as it is now; an unreadable one passes (its reader says why). */
static gboolean same_as_written(const char *path, const char *recorded, int k, GError **error) {
  char now[17];
  return !prunus_file_hash64(path, now) || hash_as_recorded(path, now, recorded, k, error);
}

/* The checkpoint hash summary.json recorded for round r of experiment `name` at this
 * seed, into out ("" when none is recorded). */
static void source_round_hash(const Pipeline *p, const char *name, int r, char out[17]) {
  out[0] = '\0';
  const PrunusJson *e = prunus_rundir_summary_find(p->summary, name, p->exp.rc->seed);
  const PrunusJson *rounds = e ? prunus_json_get(e, "rounds") : NULL;
  if (!rounds || prunus_json_type(rounds) != PRUNUS_JSON_ARRAY ||
      (size_t)r >= prunus_json_length(rounds))
    return;
  PrunusRoundMetrics rm; /* read as a resume reads it: the same checks of the hash */
  if (prunus_round_metrics_from_json(prunus_json_index(rounds, (size_t)r), &rm))
    g_strlcpy(out, rm.checkpoint_hash, 17);
  prunus_round_metrics_clear(&rm);
}

/* prune.masks_from: the source experiment's masks of this round replace score, plan
 * and apply. The mask becomes the source's; a weight it keeps that this model had
 * pruned comes back at 0 (the retrain decides its value). */
static gboolean apply_source_masks(Pipeline *p, GError **error) {
  char *rel = g_strdup_printf("%s/round-%02d.safetensors", p->exp.masks_subdir, p->round);
  char *path = g_build_filename(p->exp.run_dir, rel, NULL);
  gboolean ok = FALSE;
  PrunusModel *src = NULL;
  char recorded[17];
  source_round_hash(p, p->pc->masks_from, p->round, recorded);
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR) && recorded[0]) {
    /* written, then lost: the source's own resume redoes it (not with --only) */
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO,
                "prune.masks_from = \"%s\": round %d needs %s, which '%s' wrote (summary.json "
                "records it) but is gone; rerun without --only: '%s' then redoes it",
                p->pc->masks_from, p->round, path, p->pc->masks_from, p->pc->masks_from);
    goto out_free;
  }
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "prune.masks_from = \"%s\": round %d needs %s, which does not exist; run "
                "experiment '%s' first (its rounds must reach %d)",
                p->pc->masks_from, p->round, path, p->pc->masks_from, p->pc->rounds);
    goto out_free;
  }
  /* the source's file as its round wrote it, not one copied or damaged since */
  if (!same_as_written(path, recorded, p->round, error)) {
    g_prefix_error(error, "prune.masks_from = \"%s\": ", p->pc->masks_from);
    goto out_free;
  }
  src = prunus_checkpoint_load(path, 1, NULL, NULL, error);
  if (!src) goto out_free;
  if (!same_arch(&src->arch, &p->m->arch) || src->n_params != p->m->n_params) {
    char *a = prunus_arch_to_string(&src->arch), *b = prunus_arch_to_string(&p->m->arch);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "prune.masks_from = \"%s\": %s has the architecture %s, this model %s; masks "
                "can only be taken from weight-pruned experiments of the same network",
                p->pc->masks_from, path, a, b);
    g_free(a), g_free(b);
    goto out_free;
  }
  size_t removed = 0, revived = 0;
  for (size_t i = 0; i < p->m->n_params; i++) {
    float was = p->m->mask[i], now = src->mask[i];
    removed += was != 0.0f && now == 0.0f;
    revived += was == 0.0f && now != 0.0f;
    p->m->mask[i] = now;
    if (now == 0.0f || was == 0.0f) p->m->params[i] = 0.0f;
  }
  if (!p->exp.quiet)
    printf("%s round %d: masks of %s: removed %zu weights, brought back %zu\n", p->exp.name,
           p->round, rel, removed, revived);
  ok = TRUE;

out_free:
  prunus_model_free(src);
  g_free(path);
  g_free(rel);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* metrics, checkpoints, summary */

/* The inference engines (core/infer/engine.c): dense = BLAS on the unpruned layout (the
 * model itself while it has it) with zeros in place; shrunk = units whose every weight
 * is masked removed physically, then dense; sparse = CSR kernels. Keys per batch size
 * in this order. */
static const PrunusEngineKind latency_kinds[] = {PRUNUS_ENGINE_DENSE, PRUNUS_ENGINE_SHRUNK,
                                                 PRUNUS_ENGINE_SPARSE};

static int latency_max_batch(const PrunusPruneConfig *pc) {
  int max_b = 1;
  for (int i = 0; i < pc->n_latency_batches; i++) max_b = MAX(max_b, pc->latency_batches[i]);
  return max_b;
}

static void latency_record(PrunusRoundMetrics *rm, PrunusEngineKind kind, int B, double us) {
  if (rm->n_latency >= PRUNUS_MAX_LATENCIES) return;
  g_snprintf(rm->latency_key[rm->n_latency], 32, "%s_b%d", prunus_engine_kind_name(kind), B);
  rm->latency_us[rm->n_latency++] = us;
}

/* prune.latency.mode = "fixed": every engine, every batch size, the whole budget. */
static void measure_latency_fixed(Pipeline *p, PrunusRoundMetrics *rm) {
  PrunusModel *dense = same_arch(&p->m->arch, &p->dense_ref->arch) ? p->m : p->dense_ref;
  int max_b = latency_max_batch(p->pc);
  PrunusEngine *e[G_N_ELEMENTS(latency_kinds)];
  for (size_t k = 0; k < G_N_ELEMENTS(latency_kinds); k++)
    e[k] = prunus_engine_new(latency_kinds[k] == PRUNUS_ENGINE_DENSE ? dense : p->m,
                             latency_kinds[k], max_b, NULL);
  for (int i = 0; i < p->pc->n_latency_batches; i++) {
    int B = p->pc->latency_batches[i];
    for (size_t k = 0; k < G_N_ELEMENTS(latency_kinds); k++)
      if (e[k])
        latency_record(rm, latency_kinds[k], B,
                       prunus_engine_latency_us(e[k], B, p->pc->latency_budget, 5));
  }
  for (size_t k = 0; k < G_N_ELEMENTS(latency_kinds); k++) prunus_engine_free(e[k]);
}

/* The cache key of a layout measured at batch B: what was built ("dense": the dense
 * engine, searched padding; "shrunk": the dense engine padded as the dense reference
 * chose; "sparse": the sparse engine), the largest batch it was built for, the plan's
 * settings, the architecture and, for the sparse engine, the hash of its nonzero
 * pattern (its CSR holds the weights that are not zero, which the masks decide up to
 * an alive weight that is exactly zero). (transfer full) */
static char *latency_key(const PrunusPruneConfig *pc, const char *built, int B, const char *arch,
                         uint64_t pattern) {
  return g_strdup_printf("%s|%d|%d|%.17g|%.17g|%s|%016" G_GINT64_MODIFIER "x", built, B,
                         latency_max_batch(pc), pc->latency_tolerance, pc->latency_budget, arch,
                         pattern);
}

/* prunus_hash64 of m's nonzero pattern: which weights the sparse engine stores (the
 * biases, added whole, do not count). */
static uint64_t nonzero_pattern_hash(const PrunusModel *m) {
  uint8_t *nz = g_new(uint8_t, MAX(m->n_params, 1));
  size_t n = 0;
  for (int l = 0; l < m->n_layers; l++) {
    const PrunusLayer *layer = &m->layers[l];
    for (size_t j = 0; j < layer->w_len; j++) {
      const size_t i = layer->w_off + j;
      nz[n++] = m->params[i] * m->mask[i] != 0.0f;
    }
  }
  uint64_t h = prunus_hash64(nz, n);
  g_free(nz);
  return h;
}

/* The cache key of the dense engine's padding choices for the dense reference (one per
 * engine layer; the same architecture gives the same engine layers). (transfer full) */
static char *dense_pad_key(const Pipeline *p, const char *dense_arch) {
  return g_strdup_printf("pad|%d|%s", latency_max_batch(p->pc), dense_arch);
}

/* Those choices, measured with e, into the cache; p borrows them from there. */
static void dense_pad_store(Pipeline *p, const char *dense_arch, const PrunusEngine *e) {
  int n = prunus_engine_n_layers(e);
  gboolean *pad = g_new0(gboolean, MAX(n, 1));
  for (int j = 0; j < n; j++) pad[j] = prunus_engine_layer_padding(e, j) > 0;
  g_hash_table_insert(p->latency_cache, dense_pad_key(p, dense_arch), pad);
  p->dense_pad = pad;
}

/* prune.latency.mode = "adaptive". An engine's work depends on its layout (shapes; for
 * the sparse engine also which weights are nonzero), not on the weight values (masked
 * weights are exact zeros, never subnormal): each layout is measured once in a run, the first round
 * of any experiment that has it, and its time reused by the rounds and experiments that have the
 * same layout (the pretrained network every experiment starts from, the masks prune.masks_from
 * copies; a shrunk network without dead units is the dense layout itself). A shrunk layout is
 * padded where the dense engine measured padding to pay, not searched again (the search times each
 * layer both ways, and weight pruning kills a few units in most late rounds). Each measurement gets
 * an equal share of what max_share of the run's time so far leaves (the run's clock, shared by its
 * experiments), at most `seconds`, past its first 3 windows. */
static void measure_latency_adaptive(Pipeline *p, PrunusRoundMetrics *rm) {
  const PrunusPruneConfig *pc = p->pc;
  PrunusModel *shrunk = prunus_model_shrink_dead(p->m, NULL);
  const PrunusModel *model[G_N_ELEMENTS(latency_kinds)] = {
      same_arch(&p->m->arch, &p->dense_ref->arch) ? p->m : p->dense_ref, shrunk, p->m};
  char *layout[G_N_ELEMENTS(latency_kinds)] = {NULL, NULL, NULL};
  for (size_t k = 0; k < G_N_ELEMENTS(latency_kinds); k++)
    if (model[k]) layout[k] = prunus_arch_to_string(&model[k]->arch);
  const uint64_t pattern = nonzero_pattern_hash(p->m);
  int n_b = pc->n_latency_batches, n_k = (int)G_N_ELEMENTS(latency_kinds);
  char **keys = g_new0(char *, (size_t)n_b *n_k); /* [batch][kind], NULL: no engine */
  int pending = 0; /* measurements to make: the layouts not yet known */
  for (int i = 0; i < n_b; i++) {
    for (int k = 0; k < n_k; k++) {
      if (!model[k]) continue;
      /* a shrunk network without dead units is the dense layout itself */
      gboolean dup = k == 1 && !strcmp(layout[0], layout[1]);
      static const char *const built[] = {"dense", "shrunk", "sparse"};
      char *key = latency_key(pc, built[dup ? 0 : k], pc->latency_batches[i], layout[k],
                              k == 2 ? pattern : 0);
      pending += !dup && !g_hash_table_contains(p->latency_cache, key);
      keys[i * n_k + k] = key;
    }
  }
  if (!p->dense_pad) { /* an experiment before measured them */
    char *key = dense_pad_key(p, layout[0]);
    p->dense_pad = g_hash_table_lookup(p->latency_cache, key);
    g_free(key);
  }
  PrunusRunClock *clock = p->exp.clock ? p->exp.clock : &p->own_clock;
  double elapsed = (prunus_now_us() - clock->start_us) / 1e6;
  double allowed = pc->latency_share * elapsed - clock->latency_seconds;
  PrunusLatencyPlan plan = {
      .min_runs = 5,
      .window_us = 2000.0,
      .tolerance = pc->latency_tolerance,
      .max_seconds = CLAMP(allowed / MAX(pending, 1), 0.0, pc->latency_budget)};
  int max_b = latency_max_batch(pc);
  PrunusEngine *e[G_N_ELEMENTS(latency_kinds)] = {NULL, NULL, NULL};
  for (int i = 0; i < n_b; i++) {
    int B = pc->latency_batches[i];
    for (int k = 0; k < n_k; k++) {
      char *key = keys[i * n_k + k];
      if (!key) continue;
      double *known = g_hash_table_lookup(p->latency_cache, key);
      if (known) {
        latency_record(rm, latency_kinds[k], B, *known);
        continue;
      }
      /* the shrunk network is a dense one: built as such (no second shrink), padded
       * as the dense engine chose once that was measured */
      if (!e[k] && k == 1 && p->dense_pad && model[1]->n_layers == p->dense_ref->n_layers)
        e[k] = prunus_engine_new_padded(model[k], PRUNUS_ENGINE_DENSE, max_b, p->dense_pad, NULL);
      else if (!e[k])
        e[k] = prunus_engine_new(model[k], k == 2 ? PRUNUS_ENGINE_SPARSE : PRUNUS_ENGINE_DENSE,
                                 max_b, NULL);
      if (k == 0 && e[0] && !p->dense_pad) dense_pad_store(p, layout[0], e[0]);
      if (!e[k]) continue; /* an engine that cannot run this model (a graph), as in fixed mode */
      double us = prunus_engine_latency_adaptive(e[k], B, &plan).us;
      latency_record(rm, latency_kinds[k], B, us);
      if (isfinite(us))
        g_hash_table_insert(p->latency_cache, g_strdup(key), g_memdup2(&us, sizeof us));
    }
  }
  for (int i = 0; i < n_b * n_k; i++) g_free(keys[i]);
  g_free(keys);
  for (size_t k = 0; k < G_N_ELEMENTS(latency_kinds); k++) {
    prunus_engine_free(e[k]);
    g_free(layout[k]);
  }
  prunus_model_free(shrunk);
}

/* How measure_latency measures, in words for the reports. (transfer full) */
static char *latency_method(const PrunusPruneConfig *pc) {
  if (pc->latency_mode == PRUNUS_LATENCY_FIXED)
    return g_strdup_printf(
        "fixed: every engine every round, the lowest median of 3 windows of %.3g s",
        pc->latency_budget / 3);
  return g_strdup_printf(
      "adaptive: the lowest window median once two agree within %g%% (3 windows at least), at "
      "most %g s a measurement and %g%% of the run's time past the third window; each "
      "layout measured once in the run (an engine's work depends on the shapes and, for "
      "the sparse engine, which weights are nonzero, not on their values)",
      100 * pc->latency_tolerance, pc->latency_budget, 100 * pc->latency_share);
}

static void measure_latency(Pipeline *p, PrunusRoundMetrics *rm) {
  if (p->pc->latency_mode == PRUNUS_LATENCY_FIXED)
    measure_latency_fixed(p, rm);
  else
    measure_latency_adaptive(p, rm);
}

/* θ0 and θk in the model's current layout, so a resumed run can rewind. */
static gboolean write_thetas(Pipeline *p, const char *path, GError **error) {
  PrunusTensor t[2];
  int n = 0;
  const float *slabs[2] = {p->theta0, p->thetak};
  static const char *const names[2] = {"theta0", "thetak"};
  for (int i = 0; i < 2; i++) {
    if (!slabs[i]) continue;
    t[n] = (PrunusTensor){.name = (char *)names[i], .ndim = 1, .data = (float *)slabs[i]};
    t[n].shape[0] = (int64_t)p->m->n_params;
    n++;
  }
  return prunus_safetensors_write(path, t, n, NULL, error);
}

/* Load θ0/θk written by write_thetas for a model of n_params. */
static gboolean read_thetas(Pipeline *p, const char *path, GError **error) {
  PrunusTensorFile *f = prunus_safetensors_read(path, error);
  if (!f) return FALSE;
  gboolean ok = TRUE;
  float **slots[2] = {&p->theta0, &p->thetak};
  static const char *const names[2] = {"theta0", "thetak"};
  for (int i = 0; i < 2; i++) {
    const PrunusTensor *t = prunus_tensor_file_find(f, names[i]);
    if (!t) continue;
    if (t->ndim != 1 || (size_t)t->shape[0] != p->m->n_params) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: tensor '%s' holds %" G_GINT64_FORMAT " values, the model has %zu parameters",
                  path, names[i], t->shape[0], p->m->n_params);
      ok = FALSE;
      break;
    }
    for (size_t j = 0; ok && j < p->m->n_params; j++) {
      if (isfinite(t->data[j])) continue;
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: tensor '%s' holds a non-finite value at index %zu", path, names[i], j);
      ok = FALSE;
    }
    if (!ok) break;
    g_free(*slots[i]);
    *slots[i] = g_memdup2(t->data, sizeof(float) * p->m->n_params);
  }
  prunus_tensor_file_free(f);
  return ok;
}

static gboolean write_summary(Pipeline *p, GError **error) {
  PrunusJson *rounds = prunus_json_new_array();
  for (guint i = 0; i < p->rounds->len; i++)
    prunus_json_array_add(
        rounds, prunus_round_metrics_to_json(&g_array_index(p->rounds, PrunusRoundMetrics, i)));
  prunus_json_object_set(p->exp_json, "rounds", rounds);
  return prunus_rundir_write_summary(p->exp.run_dir, p->summary, error);
}

static gboolean finish_round(Pipeline *p, double seconds, GError **error) {
  /* a round whose masks came from another experiment made no plan request */
  PrunusRoundMetrics rm = {.round = p->round,
                           .has_request = p->round > 0 && !p->pc->masks_from,
                           .requested_sparsity = p->requested_sparsity};
  p->timing.train += seconds;
  double t0 = prunus_now_us();
  prunus_round_metrics_measure(&rm, p->m, p->params_total, p->prunable_total, p->dense_flops);
  const PrunusTrainConfig *tc = &p->exp.rc->train;
  prunus_train_attach_sparse(p->m, tc->sparse_from, tc->batch, FALSE); /* as training runs it */
  PrunusEvalResult test = prunus_evaluate(p->m, p->data->test, &p->data->norm, tc->batch);
  PrunusEvalResult val = prunus_evaluate(p->m, p->data->val, &p->data->norm, tc->batch);
  prunus_train_detach_sparse(p->m);
  rm.test_accuracy = test.accuracy, rm.test_loss = test.loss;
  rm.val_accuracy = val.accuracy, rm.val_loss = val.loss;
  double t1 = prunus_now_us();
  measure_latency(p, &rm);
  double t2 = prunus_now_us();
  rm.seconds_evaluate = (t1 - t0) / 1e6, rm.seconds_latency = (t2 - t1) / 1e6;
  p->timing.evaluate += rm.seconds_evaluate, p->timing.latency += rm.seconds_latency;
  p->own_clock.latency_seconds += rm.seconds_latency;
  if (p->exp.clock) p->exp.clock->latency_seconds += rm.seconds_latency;
  rm.checkpoint = g_strdup_printf("%s/round-%02d.safetensors", p->exp.subdir, p->round);
  char *dir = g_build_filename(p->exp.run_dir, p->exp.subdir, NULL);
  char *path = g_build_filename(p->exp.run_dir, rm.checkpoint, NULL);
  char *theta_name = g_strdup_printf("round-%02d.theta.safetensors", p->round);
  char *theta_path = g_build_filename(dir, theta_name, NULL);
  g_free(theta_name);
  GHashTable *md = prunus_rundir_checkpoint_metadata(p->exp.cfg, p->exp.rc, &p->data->norm);
  g_hash_table_insert(md, g_strdup("experiment"), g_strdup(p->exp.name));
  g_hash_table_insert(md, g_strdup("round"), g_strdup_printf("%d", p->round));
  g_hash_table_insert(md, g_strdup("sparsity"), g_strdup_printf("%.6f", rm.sparsity));
  gboolean ok = prunus_rundir_ensure(dir, error) && write_thetas(p, theta_path, error) &&
                prunus_checkpoint_save(p->m, path, md, error);
  rm.checkpoint_bytes = prunus_rundir_file_size(path);
  if (ok) { /* what a resume checks the files against */
    prunus_file_hash64(path, rm.checkpoint_hash);
    prunus_file_hash64(theta_path, rm.theta_hash);
  }
  rm.seconds = seconds;
  rm.seconds_checkpoint = (prunus_now_us() - t2) / 1e6;
  g_hash_table_unref(md);
  g_free(theta_path);
  g_free(path);
  g_free(dir);
  if (!ok) {
    prunus_round_metrics_clear(&rm);
    return FALSE;
  }
  prunus_round_metrics_stamp_plugins(&rm, p->exp_json);
  g_array_append_val(p->rounds, rm);
  if (!p->exp.quiet)
    printf("%s round %d: sparsity %.4f  params %" G_GUINT64_FORMAT "  test_acc %.4f  flops x%.2f\n",
           p->exp.name, p->round, rm.sparsity, rm.params_remaining, rm.test_accuracy,
           rm.speedup_theoretical);
  gboolean written = write_summary(p, error);
  p->timing.checkpoint += (prunus_now_us() - t2) / 1e6;
  return written;
}

/* ------------------------------------------------------------------------ */
/* the table at the end */

static double latency_of(const PrunusRoundMetrics *r, const char *key) {
  for (int i = 0; i < r->n_latency; i++)
    if (!strcmp(r->latency_key[i], key)) return r->latency_us[i];
  return NAN;
}

static void print_table(Pipeline *p) {
  int big = p->pc->latency_batches[p->pc->n_latency_batches - 1];
  char dkey[32], skey[32];
  g_snprintf(dkey, sizeof dkey, "dense_b%d", big);
  g_snprintf(skey, sizeof skey, "shrunk_b%d", big);
  const PrunusRoundMetrics *r0 = &g_array_index(p->rounds, PrunusRoundMetrics, 0);
  double base = latency_of(r0, dkey);
  if (p->pc->masks_from)
    printf("\n%s: the masks of %s, %s retrain\n", p->exp.name, p->pc->masks_from,
           p->pc->retrain_name);
  else
    printf("\n%s: %s criterion, %s granularity, %s retrain\n", p->exp.name, p->pc->criterion_name,
           p->pc->granularity_name, p->pc->retrain_name);
  printf("%5s %8s %10s %7s %9s %8s %11s %11s %9s\n", "round", "sparsity", "params", "compr",
         "flops_x", "test_acc", dkey, skey, "measured_x");
  for (guint i = 0; i < p->rounds->len; i++) {
    const PrunusRoundMetrics *r = &g_array_index(p->rounds, PrunusRoundMetrics, i);
    double d = latency_of(r, dkey), s = latency_of(r, skey);
    printf("%5d %8.4f %10" G_GUINT64_FORMAT " %7.2f %9.2f %8.4f %9.1fus %9.1fus %9.2f\n", r->round,
           r->sparsity, r->params_remaining, r->compression, r->speedup_theoretical,
           r->test_accuracy, d, s, base / s);
  }
  printf(
      "(latency: median forward time; dense = the unpruned layout with zeros in place, "
      "shrunk = dead units removed; measured_x = round-0 dense / shrunk)\n");
}

/* ------------------------------------------------------------------------ */

char *prunus_pretrain_key(const PrunusRunConfig *rc, const char *data_digest, int rewind_epoch) {
  char *arch = prunus_arch_to_string(&rc->arch);
  const PrunusTrainConfig *t = &rc->train;
  char *text = g_strdup_printf(
      "arch=%s init=%d seed=%" G_GUINT64_FORMAT
      " data=%s|%s|%s|%s content=%s val=%d limits=%d,%d norm=%d "
      "train=%d,%d,%d,%.17g,%.17g,%d,%.17g,%.17g,%.17g,%.17g,%d,%d,%.17g,%.17g rewind=%d",
      arch, rc->arch.init, rc->seed, rc->train_images, rc->train_labels, rc->test_images,
      rc->test_labels, data_digest, rc->validation, rc->train_limit, rc->test_limit, rc->normalize,
      t->epochs, t->batch, t->optimizer, t->lr, t->momentum, t->nesterov, t->weight_decay, t->beta1,
      t->beta2, t->eps, t->lr_schedule, t->step_size, t->gamma, t->warmup_epochs, rewind_epoch);
  if (t->bn_l1 > 0.0) { /* appended only when set: the keys of runs without it stay */
    char *with = g_strdup_printf("%s bn_l1=%.17g", text, t->bn_l1);
    g_free(text);
    text = with;
  }
  char *key = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text, -1);
  g_free(text);
  g_free(arch);
  return key;
}

/* Forget the model and θ0/θk read so far (read_thetas may have taken θ0 before θk
 * failed), so that what comes next starts from nothing. */
static void drop_model(Pipeline *p) {
  g_clear_pointer(&p->m, prunus_model_free);
  g_clear_pointer(&p->theta0, g_free);
  g_clear_pointer(&p->thetak, g_free);
}

/* Pretrain (or take the pretraining from the cache), keeping θ0 and θk: θ0 is the
 * model as created, θk a snapshot prunus_train takes after epoch pc->rewind_epoch. */
static gboolean pretrain(Pipeline *p, GError **error) {
  const PrunusExperiment *exp = &p->exp;
  const PrunusPruneConfig *pc = p->pc;
  const PrunusArch *arch = &exp->rc->arch;
  g_return_val_if_fail(!p->m && !p->theta0 && !p->thetak, FALSE); /* a resume left none */
  if (pc->pretrained) {
    p->m = prunus_checkpoint_load(pc->pretrained, exp->rc->train.batch, arch, NULL, error);
    if (p->m && !exp->quiet) printf("%s: pretrained weights from %s\n", exp->name, pc->pretrained);
    return p->m != NULL;
  }
  char *key = prunus_pretrain_key(exp->rc, p->data->digest, pc->rewind_epoch);
  char *dir = g_build_filename(exp->cache_dir, key, NULL);
  char *model_path = g_build_filename(dir, "model.safetensors", NULL);
  char *theta_path = g_build_filename(dir, "theta.safetensors", NULL);
  gboolean ok = FALSE;
  if (g_file_test(model_path, G_FILE_TEST_IS_REGULAR)) {
    /* an entry that does not read back (a disk fault, a hand edit) is trained again
     * and rewritten, as if it were not there */
    GError *local = NULL;
    p->m = prunus_checkpoint_load(model_path, exp->rc->train.batch, arch, NULL, &local);
    if (p->m && read_thetas(p, theta_path, &local)) {
      if (!exp->quiet) printf("%s: pretrained network reused from %s\n", exp->name, dir);
      ok = TRUE;
      goto out_free;
    }
    g_printerr(
        "prunus: warning: %s: the pretraining cache entry cannot be used: %s; pretraining "
        "again\n",
        exp->name, local->message);
    g_clear_error(&local);
    drop_model(p);
  }
  p->m = prunus_model_new(arch, exp->rc->train.batch, exp->rc->seed, error);
  if (!p->m) goto out_free;
  p->theta0 = g_memdup2(p->m->params, sizeof(float) * p->m->n_params);
  if (pc->rewind_epoch > 0) p->thetak = g_new0(float, p->m->n_params);
  if (!exp->quiet)
    printf("%s: pretraining %d epochs (%zu parameters)\n", exp->name, exp->rc->train.epochs,
           p->m->n_params);
  if (!pipeline_train(p, exp->rc->train.epochs, 0.0, 0.0, 0, error)) goto out_free;
  /* θ first, the model last: a model file in the cache means the entry is whole */
  GHashTable *md = prunus_rundir_checkpoint_metadata(exp->cfg, exp->rc, &p->data->norm);
  ok = prunus_rundir_ensure(dir, error) && write_thetas(p, theta_path, error) &&
       prunus_checkpoint_save(p->m, model_path, md, error);
  g_hash_table_unref(md);

out_free:
  g_free(theta_path);
  g_free(model_path);
  g_free(dir);
  g_free(key);
  return ok;
}

/* RUN_DIR/EXPERIMENT/round-KK.theta.safetensors, round k's θ sidecar (transfer full). */
static char *round_theta_path(const Pipeline *p, int k) {
  return g_strdup_printf("%s/%s/round-%02d.theta.safetensors", p->exp.run_dir, p->exp.subdir, k);
}

/* Whether round k's checkpoint and θ file are there and read back as written (their
 * hashes as summary.json recorded them), without loading them. */
static gboolean round_files_intact(const Pipeline *p, int k, GError **error) {
  const PrunusRoundMetrics *rm = &g_array_index(p->rounds, PrunusRoundMetrics, k);
  char *files[2] = {g_build_filename(p->exp.run_dir, rm->checkpoint, NULL), round_theta_path(p, k)};
  const char *hashes[2] = {rm->checkpoint_hash, rm->theta_hash};
  gboolean ok = TRUE;
  for (int i = 0; i < 2 && ok; i++) {
    char now[17];
    if (!g_file_test(files[i], G_FILE_TEST_IS_REGULAR)) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: no such file (round %d wrote it)",
                  files[i], k);
      ok = FALSE;
    } else if (!prunus_file_hash64(files[i], now)) { /* an earlier round is not read again */
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: cannot be read (round %d wrote it)",
                  files[i], k);
      ok = FALSE;
    } else {
      ok = hash_as_recorded(files[i], now, hashes[i], k, error);
    }
  }
  g_free(files[0]);
  g_free(files[1]);
  return ok;
}

/* Round k's checkpoint and θ file into p->m, p->theta0 and p->thetak, each checked
 * against the hash summary.json recorded for it. */
static gboolean load_round(Pipeline *p, int k, GError **error) {
  const PrunusExperiment *exp = &p->exp;
  const PrunusRoundMetrics *rm = &g_array_index(p->rounds, PrunusRoundMetrics, k);
  char *path = g_build_filename(exp->run_dir, rm->checkpoint, NULL);
  char *theta = round_theta_path(p, k);
  g_clear_pointer(&p->m, prunus_model_free);
  if (round_files_intact(p, k, error))
    p->m = prunus_checkpoint_load(path, exp->rc->train.batch, NULL, NULL, error);
  /* the checkpoint's architecture string does not carry the init scheme reinit draws from */
  if (p->m) p->m->arch.init = exp->rc->arch.init;
  gboolean ok = p->m && read_thetas(p, theta, error);
  if (!ok) drop_model(p);
  g_free(theta);
  g_free(path);
  return ok;
}

/* The rounds summary.json records, then the model to go on from: the round after
 * which to continue (rounds + 1 when the experiment is complete), 0 when pretraining
 * must run again, -1 after an error. The newest round whose checkpoint and θ file read
 * back as written (their hashes as summary.json recorded them) is where the run goes on,
 * a finished experiment's last round included. One that cannot be read or changed
 * since (a disk fault, another file copied over it: writes are atomic, so an interrupt
 * never leaves one) is redone from the round before it, which gives the same results,
 * with a warning, instead of stopping a run whose earlier rounds are intact; so is the
 * first earlier round whose files are missing or changed, with every round after it. */
static int resume(Pipeline *p, const PrunusJson *rounds, GError **error) {
  const PrunusExperiment *exp = &p->exp;
  int n = (int)prunus_json_length(rounds);
  for (int i = 0; i < n; i++) {
    PrunusRoundMetrics rm;
    if (!prunus_round_metrics_from_json(prunus_json_index(rounds, (size_t)i), &rm) ||
        rm.round != i) {
      prunus_round_metrics_clear(&rm);
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s/summary.json: experiment '%s' round %d is incomplete; remove the run "
                  "folder to start over",
                  exp->run_dir, exp->name, i);
      return -1;
    }
    g_array_append_val(p->rounds, rm);
  }
  /* every earlier round's files too, so that the folder a run leaves holds every round
   * it records: the first one missing or changed is redone, and every round after it
   * (each goes on from the one before) */
  int k = n - 1; /* a finished experiment's last round is checked as well */
  for (int i = 0; i < n - 1; i++) {
    GError *local = NULL;
    if (round_files_intact(p, i, &local)) continue;
    g_printerr("prunus: warning: %s: round %d cannot be resumed from: %s\n", exp->name, i,
               local->message);
    g_clear_error(&local);
    k = i - 1;
    break;
  }
  for (; k >= 0; k--) {
    GError *local = NULL;
    if (load_round(p, k, &local)) break;
    g_printerr("prunus: warning: %s: round %d cannot be resumed from: %s\n", exp->name, k,
               local->message);
    g_clear_error(&local);
  }
  if (k < n - 1) {                   /* what happens instead, once */
    const int first = MAX(k + 1, 1); /* round 0 is pretraining */
    char *redo = first == n - 1 ? g_strdup_printf("round %d", n - 1)
                                : g_strdup_printf("rounds %d to %d", first, n - 1);
    if (k >= 0)
      g_printerr("prunus: warning: %s: redoing %s from round %d's checkpoint\n", exp->name, redo,
                 k);
    else if (n > 1)
      g_printerr("prunus: warning: %s: pretraining again, then redoing %s\n", exp->name, redo);
    else
      g_printerr("prunus: warning: %s: pretraining again\n", exp->name);
    g_free(redo);
  }
  for (guint i = (guint)(k + 1); i < p->rounds->len; i++)
    prunus_round_metrics_clear(&g_array_index(p->rounds, PrunusRoundMetrics, i));
  g_array_set_size(p->rounds, (guint)(k + 1));
  if (k >= 0 && k < p->pc->rounds && !exp->quiet)
    printf("%s: resuming after round %d of %d\n", exp->name, k, p->pc->rounds);
  return k + 1;
}

/* ------------------------------------------------------------------------ */
/* prepare: everything that can be checked without data or training */

/* The plugin of one slot, created on the current view. Errors start with the
 * file:line of the slot's `plugin` key (an experiment's own when it names the plugin;
 * a setting's own location follows in create()'s message). */
static PrunusHost *create_slot(Pipeline *p, PrunusPluginRegistry *reg, PrunusPluginKind kind,
                               config_setting_t *group, const char *name, const char *slot,
                               GError **error) {
  PrunusConfig *cfg = p->exp.cfg;
  config_setting_t *key = config_setting_get_member(group, "plugin");
  GError *local = NULL;
  PrunusHost *h = NULL;
  const PrunusPluginEntry *e = prunus_plugin_registry_find(reg, kind, name, slot, &local);
  if (e) {
    PrunusHostCallbacks cb = {.user = p,
                              .model = cb_model,
                              .train = cb_train,
                              .rewind = cb_rewind,
                              .reinit = cb_reinit,
                              .evaluate = cb_evaluate,
                              .pretrain_epochs = p->exp.rc->train.epochs,
                              .pretrain_lr = p->exp.rc->train.lr,
                              .plan_request = cb_plan_request,
                              .set_weights = cb_set_weights};
    h = prunus_host_instantiate(e, cfg, group, slot, p->exp.rc->seed, &cb, &local);
  }
  if (!h) {
    char *where = prunus_config_where(cfg, key);
    g_propagate_prefixed_error(error, local, "%s: ", where);
    g_free(where);
  }
  return h;
}

/* The architecture as configured: the view create() sees until there is a model, and
 * the dense reference of the latency measurements and the round metrics. */
static gboolean build_dense_ref(Pipeline *p, GError **error) {
  p->dense_ref = prunus_model_new(&p->exp.rc->arch, 1, p->exp.rc->seed, error);
  if (!p->dense_ref) return FALSE;
  p->params_total = p->dense_ref->n_params;
  p->prunable_total = 0;
  for (int i = 0; i < p->dense_ref->n_layers; i++)
    p->prunable_total += p->dense_ref->layers[i].w_len;
  p->dense_flops = prunus_model_flops(p->dense_ref, FALSE);
  prunus_view_build(&p->vs, p->dense_ref, p->prunable);
  return TRUE;
}

/* "FILE:LINE" of the `plugin` key of a slot's group (transfer full). */
static char *plugin_key_where(const Pipeline *p, config_setting_t *group) {
  return prunus_config_where(p->exp.cfg, config_setting_get_member(group, "plugin"));
}

/* What the criterion's needs and the granularity's pattern require of the model and
 * the schedule (plugin.h revision 3), checked before any data is read; *needs_out is
 * the criterion's needs(), which check_ops hands on. */
static gboolean check_post_training(Pipeline *p, uint32_t *needs_out, GError **error) {
  const PrunusPruneConfig *pc = p->pc;
  const PrunusPluginDesc *cd = prunus_host_desc(p->crit), *gd = prunus_host_desc(p->gran);
  if (gd->granularity->pattern) {
    int n = 0, m = 0;
    prunus_host_call_begin(p->gran, "pattern()");
    gd->granularity->pattern(prunus_host_state(p->gran), &n, &m);
    prunus_host_call_end(p->gran);
    if ((n != 0 || m != 0) && !(n >= 1 && n < m)) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                  "prune.granularity plugin '%s': pattern() gave n = %d, m = %d; a pattern "
                  "keeps n of every m weights with 1 <= n < m (0 and 0 = none)",
                  gd->name, n, m);
      return FALSE;
    }
    p->pattern_n = n, p->pattern_m = m;
  }
  prunus_host_call_begin(p->crit, "needs()");
  uint32_t needs = *needs_out = cd->criterion->needs(prunus_host_state(p->crit));
  prunus_host_call_end(p->crit);
  char *where = plugin_key_where(p, pc->criterion);
  char *who = g_strdup_printf("%s: prune.criterion plugin '%s'", where, cd->name);
  gboolean ok = prunus_calib_check_needs(&p->vs.view, needs, who, error);
  if (ok && (needs & PRUNUS_NEED_LAYERWISE) && pc->scope != PRUNUS_SCOPE_LAYER) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "%s prunes layer by layer (each layer calibrated on the pruned layers before "
                "it), which needs prune.schedule.scope = \"layer\"; found \"global\"",
                who);
    ok = FALSE;
  }
  g_free(who);
  g_free(where);
  return ok;
}

/* The plugins' own check() ops (plugin.h revisions 6 and 7): the criterion's, the
 * granularity's, then the retrain plugin's, on the current view, before any data is
 * read. */
static gboolean check_ops(Pipeline *p, uint32_t needs, uint32_t produces, uint32_t accepts,
                          GError **error) {
  const PrunusPruneConfig *pc = p->pc;
  const PrunusPluginDesc *cd = prunus_host_desc(p->crit), *gd = prunus_host_desc(p->gran),
                         *rd = prunus_host_desc(p->retr);
  const PrunusCheckInfo info = {.scope = pc->scope,
                                .rounds = pc->rounds,
                                .target = pc->final_target,
                                .pattern_n = p->pattern_n,
                                .pattern_m = p->pattern_m,
                                .needs = needs,
                                .produces = produces,
                                .accepts = accepts,
                                .criterion = pc->criterion_name,
                                .granularity = pc->granularity_name,
                                .retrain = pc->retrain_name,
                                .theta0_kept = pc->pretrained == NULL,
                                .rewind_epoch = pc->pretrained ? 0 : pc->rewind_epoch};
  struct {
    PrunusHost *h;
    int (*check)(void *, const PrunusModelView *, const PrunusCheckInfo *);
    config_setting_t *group;
  } ops[] = {{p->crit, cd->criterion->check, pc->criterion},
             {p->gran, gd->granularity->check, pc->granularity},
             {p->retr, rd->retrain->check, pc->retrain}};
  for (size_t i = 0; i < G_N_ELEMENTS(ops); i++) {
    if (!ops[i].check) continue;
    prunus_host_call_begin(ops[i].h, "check()");
    int rc = ops[i].check(prunus_host_state(ops[i].h), &p->vs.view, &info);
    prunus_host_call_end(ops[i].h);
    if (rc != 0) {
      prunus_host_set_failure(ops[i].h, "check() failed", error);
      char *where = plugin_key_where(p, ops[i].group);
      g_prefix_error(error, "%s: ", where);
      g_free(where);
      return FALSE;
    }
  }
  return TRUE;
}

/* Is a layer with weights other than the output prunable? A granularity that removes
 * units never removes the output layer's. */
static gboolean hidden_layer_prunable(const Pipeline *p) {
  const PrunusArch *arch = &p->exp.rc->arch;
  for (int i = 0; i < p->pc->output_layer; i++)
    if (p->prunable[i] && prunus_layer_type_has_weights(arch->layers[i].type)) return TRUE;
  return FALSE;
}

/* In global scope the layers at rate 1 share one ranking, so when max_sparsity caps hold
 * some of them the ranking takes what it still asks for from the uncapped ones, down to
 * their last weight, which a plan may not take: a schedule asking that pool for more
 * than its caps and one weight per uncapped layer leave would stop mid-run (a layer
 * emptied). Refused here, before any data is read; a pretrained network's masks only
 * leave less room. When every layer of the pool is capped, the plans stop at the caps
 * and the run goes on (a warning at its start says how far it can go). */
static gboolean check_caps_leave_room(const Pipeline *p, GError **error) {
  const PrunusPruneConfig *pc = p->pc;
  if (pc->scope != PRUNUS_SCOPE_GLOBAL || p->removes_units || pc->masks_from) return TRUE;
  double pool = 0.0, min_alive = 0.0;
  gboolean uncapped = FALSE;
  GString *caps = g_string_new(NULL);
  for (int i = 0; i < p->dense_ref->n_layers; i++) {
    double n = (double)p->dense_ref->layers[i].w_len;
    if (n == 0.0 || pc->layer_rate[i] != 1.0) continue;
    pool += n;
    double floor_i = cap_keeps(pc->layer_cap[i], n);
    uncapped |= floor_i < 1.0;
    min_alive += MAX(1.0, floor_i);
    if (pc->layer_cap[i] < 1.0) {
      const char *name = p->exp.rc->arch.layers[i].name;
      char index[16];
      g_snprintf(index, sizeof index, "%d", i);
      char *at = pc->layer_cap_key[i] ? prunus_config_where(p->exp.cfg, pc->layer_cap_key[i])
                                      : g_strdup("?");
      g_string_append_printf(caps, "%slayer %d%s%s%s at most %g (%s)", caps->len ? ", " : "", i,
                             strcmp(name, index) ? " ('" : "", strcmp(name, index) ? name : "",
                             strcmp(name, index) ? "')" : "", pc->layer_cap[i], at);
      g_free(at);
    }
  }
  /* each round rounds the pool's removals once, by at most half a weight */
  double slack = 0.5 * pc->rounds;
  gboolean ok = caps->len == 0 || !uncapped || pool * (1.0 - pc->final_target) + slack >= min_alive;
  if (!ok) {
    config_setting_t *sched =
        config_setting_lookup(prunus_config_root(p->exp.cfg), "prune.schedule");
    config_setting_t *kind = NULL;
    for (const char *const *k = (const char *const[]){"target", "amount", "levels", NULL};
         *k && !kind; k++) {
      config_setting_t *s = config_setting_get_member(sched, *k);
      if (s && (config_setting_is_aggregate(s) || config_setting_get_float(s) > 0.0)) kind = s;
    }
    prunus_config_fail_at(
        p->exp.cfg, kind ? kind : sched, error,
        "prune.schedule asks the %.0f weights that share the global ranking (the layers at "
        "rate 1) for sparsity %.4f after round %d, but their max_sparsity caps (%s) and the "
        "last weight of each uncapped layer leave at least %.0f of them alive: at most "
        "sparsity %.4f, and the uncapped layers would be emptied before. Ask for less "
        "(target, amount or rounds), raise the caps, cap every layer, or rank each layer "
        "alone with scope = \"layer\"",
        pool, pc->final_target, pc->rounds, caps->str, min_alive, 1.0 - min_alive / pool);
  }
  g_string_free(caps, TRUE);
  return ok;
}

/* The most sparsity the schedule can reach over the layers it prunes (rate > 0; what its
 * target counts), for a granularity that masks weights: a layer's max_sparsity cap
 * holds, and a fixed pattern (n of every m) keeps n of each full group of a row and
 * min(n, its size) of a last shorter one. Uncapped layers without a pattern count as
 * emptiable (the plan refuses that itself). */
static double schedule_reach(const Pipeline *p) {
  const int n = p->pattern_n, m = p->pattern_m;
  double removable = 0.0, pruned = 0.0;
  for (int i = 0; i < p->dense_ref->n_layers; i++) {
    const PrunusLayer *l = &p->dense_ref->layers[i];
    if (l->w_len == 0 || p->pc->layer_rate[i] <= 0.0) continue;
    pruned += (double)l->w_len;
    double most = (double)l->w_len - cap_keeps(p->pc->layer_cap[i], (double)l->w_len);
    if (m > 0) {
      const double units = (double)l->w_len / l->fan_in;
      const int tail = l->fan_in % m;
      most = MIN(most, units * ((double)(l->fan_in / m) * (m - n) + MAX(0, tail - n)));
    }
    removable += most;
  }
  return pruned > 0.0 ? removable / pruned : 1.0;
}

/* The three instances, each created on the current view (create() reads and checks its
 * settings), then what only all of them together tell: keys no one read, and whether
 * the granularity takes a kind of score the criterion produces. */
static gboolean create_plugins(Pipeline *p, GError **error) {
  const PrunusPruneConfig *pc = p->pc;
  p->pattern_n = p->pattern_m = 0;
  p->crit = create_slot(p, p->reg, PRUNUS_PLUGIN_CRITERION, pc->criterion, pc->criterion_name,
                        "prune.criterion", error);
  if (!p->crit) return FALSE;
  p->gran = create_slot(p, p->reg, PRUNUS_PLUGIN_GRANULARITY, pc->granularity, pc->granularity_name,
                        "prune.granularity", error);
  if (!p->gran) return FALSE;
  p->retr = create_slot(p, p->reg, PRUNUS_PLUGIN_RETRAIN, pc->retrain, pc->retrain_name,
                        "prune.retrain", error);
  if (!p->retr) return FALSE;
  if (!prunus_config_check_unread(p->exp.cfg, error)) return FALSE;
  const PrunusPluginDesc *cd = prunus_host_desc(p->crit), *gd = prunus_host_desc(p->gran);
  prunus_host_call_begin(p->crit, "produces()");
  uint32_t produces = cd->criterion->produces(prunus_host_state(p->crit));
  prunus_host_call_end(p->crit);
  prunus_host_call_begin(p->gran, "accepts()");
  uint32_t accepts = gd->granularity->accepts(prunus_host_state(p->gran));
  prunus_host_call_end(p->gran);
  p->removes_units = (accepts & (PRUNUS_SCORES_UNIT | PRUNUS_SCORES_GROUP)) != 0;
  if (p->removes_units && !pc->masks_from && !hidden_layer_prunable(p)) {
    config_setting_t *layers =
        config_setting_lookup(prunus_config_root(p->exp.cfg), "prune.layers");
    char *where =
        layers ? prunus_config_where(p->exp.cfg, layers) : plugin_key_where(p, pc->granularity);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "%s: prune.layers leaves only the output layer to prune, whose units (the "
                "classes) granularity '%s' never removes: the rounds would remove nothing",
                where, gd->name);
    g_free(where);
    return FALSE;
  }
  if (!(produces & accepts)) {
    char *where = plugin_key_where(p, pc->granularity);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                "%s: prune.granularity '%s' needs %s scores, but prune.criterion '%s' produces "
                "only %s scores",
                where, gd->name, accepts & PRUNUS_SCORES_UNIT ? "unit" : "weight", cd->name,
                produces & PRUNUS_SCORES_UNIT ? "unit" : "weight");
    g_free(where);
    return FALSE;
  }
  uint32_t needs = 0;
  return check_caps_leave_room(p, error) && check_post_training(p, &needs, error) &&
         check_ops(p, needs, produces, accepts, error);
}

/* Destroy the instances and free the models, θ and the rounds read or measured: what
 * prepare and run build, so that between them (and after a run) an experiment holds
 * no plugin instance and no model. */
static void release(Pipeline *p) {
  g_clear_pointer(&p->retr, prunus_host_free);
  g_clear_pointer(&p->gran, prunus_host_free);
  g_clear_pointer(&p->crit, prunus_host_free);
  prunus_view_clear(&p->vs);
  for (guint i = 0; i < p->rounds->len; i++)
    prunus_round_metrics_clear(&g_array_index(p->rounds, PrunusRoundMetrics, i));
  g_array_set_size(p->rounds, 0);
  g_clear_pointer(&p->dense_ref, prunus_model_free);
  g_clear_pointer(&p->m, prunus_model_free);
  g_clear_pointer(&p->theta0, g_free);
  g_clear_pointer(&p->thetak, g_free);
  g_clear_pointer(&p->req_amount, g_free);
  g_clear_pointer(&p->req_cap, g_free);
  g_clear_pointer(&p->alloc_amount, g_free);
  p->alloc_n_layers = 0;
  p->req_n_layers = 0;
  p->dense_pad = NULL; /* latency_cache's */
}

PrunusPipeline *prunus_pipeline_prepare(const PrunusExperiment *exp, PrunusPluginRegistry *reg,
                                        GError **error) {
  const PrunusArch *arch = &exp->rc->arch;
  Pipeline *p = g_new0(Pipeline, 1);
  p->train_calls_round = -1;
  p->updating = -1;
  p->exp = *exp;
  p->pc = exp->pc;
  p->reg = reg;
  p->rounds = g_array_new(FALSE, TRUE, sizeof(PrunusRoundMetrics));
  p->latency_cache = exp->clock && exp->clock->latency
                         ? g_hash_table_ref(exp->clock->latency)
                         : g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  p->prunable = g_new0(gboolean, arch->n_layers);
  for (int i = 0; i < arch->n_layers; i++) p->prunable[i] = p->pc->layer_rate[i] > 0.0;
  gboolean ok = build_dense_ref(p, error) && create_plugins(p, error);
  release(p); /* checked; run creates them again */
  if (ok) return p;
  prunus_pipeline_free(p);
  return NULL;
}

PrunusPipelineTiming prunus_pipeline_timing(const PrunusPipeline *p) { return p->timing; }

gboolean prunus_pipeline_removes_units(const PrunusPipeline *p) { return p->removes_units; }

void prunus_pipeline_free(PrunusPipeline *p) {
  if (!p) return;
  release(p);
  g_array_free(p->rounds, TRUE);
  g_hash_table_unref(p->latency_cache);
  g_free(p->prunable);
  g_free(p);
}

/* ------------------------------------------------------------------------ */
/* run */

/* Pretrain or resume, then the rounds. */
static gboolean run_rounds(Pipeline *p, GError **error) {
  const PrunusExperiment *exp = &p->exp;
  const PrunusPruneConfig *pc = p->pc;
  int first_round = 1;
  const PrunusJson *done = prunus_json_get(p->exp_json, "rounds");
  gboolean resuming =
      done && prunus_json_type(done) == PRUNUS_JSON_ARRAY && prunus_json_length(done) > 0;
  gint64 t0 = g_get_monotonic_time();
  prunus_plugin_guard_set_round(0);
  if (resuming) {
    p->resuming = TRUE;
    first_round = resume(p, done, error);
    if (first_round < 0) return FALSE;
    p->resuming = FALSE;
    if (first_round > pc->rounds) {
      if (!exp->quiet) printf("%s: already complete, skipped\n", exp->name);
      return TRUE;
    }
    resuming = first_round > 0; /* 0: not even round 0's checkpoint reads back */
    first_round = MAX(first_round, 1);
  }
  if (!resuming && !pretrain(p, error)) return FALSE;
  /* from here on the plugins see the model instead of the configured architecture */
  prunus_view_clear(&p->vs);
  prunus_view_build(&p->vs, p->m, p->prunable);
  if (!resuming && !finish_round(p, (g_get_monotonic_time() - t0) / 1e6, error)) return FALSE;

  for (p->round = first_round; p->round <= pc->rounds; p->round++) {
    prunus_plugin_guard_set_round(p->round);
    gint64 tr = g_get_monotonic_time();
    char label[32];
    g_snprintf(label, sizeof label, "round %d", p->round);
    p->log.progress.label = label;
    uint64_t round_seed = exp->rc->seed + 1000003ULL * (uint64_t)p->round;
    prunus_host_reseed(p->crit, round_seed);
    prunus_host_reseed(p->gran, round_seed);
    prunus_host_reseed(p->retr, round_seed);
    if (pc->masks_from ? !apply_source_masks(p, error) : !prune_round(p, error)) return FALSE;
    if (pc->masks_from && pc->recalibrate_bn) recalibrate_bn(p, p->m->n_layers);
    const PrunusPluginDesc *rd = prunus_host_desc(p->retr);
    prunus_host_call_begin(p->retr, "retrain()");
    int rc = rd->retrain->retrain(prunus_host_state(p->retr), p->round);
    prunus_host_call_end(p->retr);
    if (rc != 0) {
      GError *cause = prunus_host_take_service_error(p->retr);
      if (cause && cause->code == PRUNUS_ERROR_NUMERIC) {
        g_propagate_prefixed_error(error, cause, "prune.retrain plugin '%s', round %d: ", rd->name,
                                   p->round);
      } else {
        g_clear_error(&cause);
        prunus_host_set_failure(p->retr, "retrain() failed", error);
      }
      return FALSE;
    }
    p->log.progress.label = "pretrain";
    if (!finish_round(p, (g_get_monotonic_time() - tr) / 1e6, error)) return FALSE;
  }
  if (!exp->quiet) print_table(p);
  return TRUE;
}

gboolean prunus_pipeline_run(PrunusPipeline *p, const PrunusData *data, PrunusJson *summary,
                             GError **error) {
  const PrunusExperiment *exp = &p->exp;
  const PrunusPruneConfig *pc = p->pc;
  g_return_val_if_fail(p->data == NULL, FALSE);         /* a pipeline runs once */
  g_return_val_if_fail(data->digest[0] != '\0', FALSE); /* from prunus_data_load */
  p->data = data;
  p->summary = summary;
  p->round = 0;
  p->own_clock = (PrunusRunClock){.start_us = prunus_now_us()};
  gboolean ok = build_dense_ref(p, error) && create_plugins(p, error);
  if (ok) {
    p->exp_json = prunus_rundir_summary_experiment(summary, exp->name, exp->rc->seed);
    prunus_json_object_set(
        p->exp_json, "criterion",
        prunus_json_new_string(pc->masks_from ? pc->masks_criterion_name : pc->criterion_name));
    prunus_json_object_set(
        p->exp_json, "granularity",
        prunus_json_new_string(pc->masks_from ? pc->masks_granularity_name : pc->granularity_name));
    prunus_json_object_set(p->exp_json, "retrain", prunus_json_new_string(pc->retrain_name));
    prunus_json_object_set(p->exp_json, "amount_per_round", prunus_json_new_number(pc->amount));
    char *changed =
        prunus_rundir_summary_set_plugins(p->exp_json, (PrunusHost *[]){p->crit, p->gran, p->retr});
    if (changed) g_printerr("prunus: warning: %s: %s\n", exp->name, changed);
    g_free(changed);
    if (pc->masks_from)
      prunus_json_object_set(p->exp_json, "masks_from", prunus_json_new_string(pc->masks_from));
    char *method = latency_method(pc);
    prunus_json_object_set(p->exp_json, "latency_method", prunus_json_new_string(method));
    g_free(method);
    prunus_epoch_log_init(&p->log, exp->run_dir, exp->name, exp->rc->seed, "pretrain", exp->quiet);
    /* said before the rounds: their plans stop there, below what the request counts */
    double reach = p->removes_units || pc->masks_from ? 1.0 : schedule_reach(p);
    if (pc->final_target > reach + pc->tolerance && p->pattern_m > 0)
      fprintf(stderr,
              "warning: %s: the schedule asks for sparsity %.4f, but granularity '%s' keeps %d of "
              "every %d weights: no round can go past %.4f\n",
              exp->name, pc->final_target, pc->granularity_name, p->pattern_n, p->pattern_m, reach);
    else if (pc->final_target > reach + pc->tolerance)
      fprintf(stderr,
              "warning: %s: the schedule asks for sparsity %.4f, but the max_sparsity caps hold "
              "the layers it prunes to at most %.4f: the rounds that would pass it remove less, "
              "or nothing\n",
              exp->name, pc->final_target, reach);
    ok = run_rounds(p, error);
    /* a plugin's or a round's error says where, as a crash's message does */
    if (!ok && error && *error) {
      if (p->resuming)
        g_prefix_error(error, "experiment '%s', resuming: ", exp->name);
      else if (p->round == 0)
        g_prefix_error(error, "experiment '%s', pretraining: ", exp->name);
      else
        g_prefix_error(error, "experiment '%s', round %d: ", exp->name, p->round);
    }
  }
  release(p);
  return ok;
}
