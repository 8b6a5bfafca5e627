/* weight.c: unstructured (weight-level) granularity. Marks the lowest-scored alive
 * weights of the prunable layers for removal, ranked globally or per layer, with
 * per-layer rates, sparsity caps and a refusal to empty a layer. No settings. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
} WeightGran;

static int weight_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  WeightGran *g = malloc(sizeof *g);
  if (!g) {
    services->set_error(host, "out of memory");
    return -1;
  }
  g->host = host;
  g->services = services;
  *state = g;
  return 0;
}

static void weight_destroy(void *state) { free(state); }

static uint32_t weight_accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

// ----------------------------------------------------------------------------
// Ranking: one candidate per alive weight, sorted by (score, layer, index) so
// ties break deterministically towards the lower layer and index.

typedef struct {
  float score;
  int layer;
  size_t index;
} WeightCandidate;

static int weight_candidate_cmp(const void *pa, const void *pb) {
  const WeightCandidate *a = pa, *b = pb;
  if (a->score != b->score) return a->score < b->score ? -1 : 1;
  if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

/* round(x) with a little slack so 0.3 * 5 = 1.4999999... rounds like 1.5. */
static size_t weight_round(double x) { return x <= 0.0 ? 0 : (size_t)floor(x + 0.5 + 1e-9); }

static int weight_is_alive(const PrunusLayerView *layer, size_t i) {
  return !layer->mask || layer->mask[i] != 0.0f;
}

/* Per-layer bookkeeping for one plan() call. */
typedef struct {
  int active;     /* prunable and a non-zero rate */
  double rate;    /* layer_amount[l] (1 when the host gives none) */
  size_t alive;   /* alive weights now */
  size_t cap;     /* most removals max_sparsity allows this round */
  size_t removed; /* removals planned so far */
} WeightLayerPlan;

/* Remove up to round(rate * alive of the group's layers) of the lowest-scored alive
 * weights of the layers with in_group[l] set, skipping a layer once its cap is
 * reached (the removal then goes to the next-lowest weight of another layer). */
static int weight_select(WeightGran *g, const PrunusModelView *model, const PrunusScores *scores,
                         WeightLayerPlan *lp, const int *in_group, double rate, PrunusPlan *plan) {
  size_t n = 0;
  for (int l = 0; l < model->n_layers; l++)
    if (in_group[l]) n += lp[l].alive;
  const size_t want = weight_round(rate * (double)n);
  if (want == 0 || n == 0) return 0;
  WeightCandidate *c = malloc(n * sizeof *c);
  if (!c) {
    g->services->set_error(g->host, "out of memory ranking %zu weights", n);
    return -1;
  }
  size_t k = 0;
  for (int l = 0; l < model->n_layers; l++) {
    if (!in_group[l]) continue;
    const PrunusLayerView *layer = &model->layers[l];
    const float *s = scores->weight_scores[l];
    for (size_t i = 0; i < layer->n_weights; i++) {
      if (!weight_is_alive(layer, i)) continue;
      c[k].score = s[i];
      c[k].layer = l;
      c[k].index = i;
      k++;
    }
  }
  qsort(c, k, sizeof *c, weight_candidate_cmp);
  size_t taken = 0;
  for (size_t j = 0; j < k && taken < want; j++) {
    WeightLayerPlan *p = &lp[c[j].layer];
    if (p->removed >= p->cap) continue;
    plan->remove_weights[c[j].layer][c[j].index] = 1;
    p->removed++;
    taken++;
  }
  free(c);
  return 0;
}

// ----------------------------------------------------------------------------
// The plan

/* Global scope: the layers at layer_amount 1 share one ranking at req->amount; a
 * layer at another rate (e.g. 0.5 for the lottery-ticket output layer) is ranked
 * alone at amount * layer_amount; a layer at 0 is skipped. Layer scope: each layer
 * removes round(layer_amount * alive) of its own weights. max_sparsity caps the
 * layer's total sparsity (of its current n_weights) after the round. */
static int weight_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                       const PrunusPlanRequest *req, PrunusPlan *plan) {
  WeightGran *g = state;
  const int nl = model->n_layers;
  if (req->scope == PRUNUS_SCOPE_GLOBAL && !(req->amount >= 0.0 && req->amount <= 1.0)) {
    g->services->set_error(g->host, "amount: expected a fraction in [0, 1], found %g", req->amount);
    return -1;
  }
  if (nl <= 0) return 0;
  WeightLayerPlan *lp = calloc((size_t)nl, sizeof *lp);
  int *in_group = calloc((size_t)nl, sizeof *in_group);
  int rc = -1;
  if (!lp || !in_group) {
    g->services->set_error(g->host, "out of memory planning %d layers", nl);
    goto out_free;
  }

  for (int l = 0; l < nl; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    WeightLayerPlan *p = &lp[l];
    p->rate = req->layer_amount ? req->layer_amount[l] : 1.0;
    if (!layer->prunable || p->rate == 0.0) continue;
    if (!(p->rate > 0.0 && p->rate <= 1.0)) {
      g->services->set_error(g->host, "layer %s: layer_amount expected in [0, 1], found %g",
                             layer->name, p->rate);
      goto out_free;
    }
    if (!scores->weight_scores || !scores->weight_scores[l]) {
      g->services->set_error(g->host,
                             "layer %s: no weight scores (the criterion must produce "
                             "PRUNUS_SCORES_WEIGHT)",
                             layer->name);
      goto out_free;
    }
    if (!plan->remove_weights || !plan->remove_weights[l]) {
      g->services->set_error(g->host, "layer %s: the host gave no remove_weights buffer",
                             layer->name);
      goto out_free;
    }
    for (size_t i = 0; i < layer->n_weights; i++) {
      if (!weight_is_alive(layer, i))
        continue; /* scores of pruned weights are ignored, whatever they hold */
      if (!isfinite(scores->weight_scores[l][i])) {
        g->services->set_error(g->host, "layer %s: weight %zu has a non-finite score", layer->name,
                               i);
        goto out_free;
      }
      p->alive++;
    }
    const double max_sp = req->max_sparsity ? req->max_sparsity[l] : 1.0;
    const double min_alive_d = ceil((1.0 - max_sp) * (double)layer->n_weights - 1e-9);
    const size_t min_alive = min_alive_d <= 0.0 ? 0 : (size_t)min_alive_d;
    p->cap = p->alive > min_alive ? p->alive - min_alive : 0;
    p->active = 1;
  }

  if (req->scope == PRUNUS_SCOPE_GLOBAL) {
    for (int l = 0; l < nl; l++) in_group[l] = lp[l].active && lp[l].rate == 1.0;
    if (weight_select(g, model, scores, lp, in_group, req->amount, plan) != 0) goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    if (!lp[l].active || (req->scope == PRUNUS_SCOPE_GLOBAL && lp[l].rate == 1.0)) continue;
    for (int m = 0; m < nl; m++) in_group[m] = m == l;
    const double rate = req->scope == PRUNUS_SCOPE_GLOBAL ? req->amount * lp[l].rate : lp[l].rate;
    if (weight_select(g, model, scores, lp, in_group, rate, plan) != 0) goto out_free;
  }

  for (int l = 0; l < nl; l++) {
    if (lp[l].removed > 0 && lp[l].removed >= lp[l].alive) {
      g->services->set_error(
          g->host,
          "layer %s: the plan removes all %zu alive weights; refusing to "
          "empty the layer (lower the amount or set a max_sparsity below 1, in a new "
          "run: a changed config cannot resume this one)",
          model->layers[l].name, lp[l].alive);
      goto out_free;
    }
  }
  rc = 0;

out_free:
  free(in_group);
  free(lp);
  return rc;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusGranularityOps weight_ops = {
    .accepts = weight_accepts,
    .plan = weight_plan,
};

static const PrunusPluginDesc weight_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_GRANULARITY,
    .name = "weight",
    .version = "1.0.0",
    .summary = "unstructured: remove the lowest-scored single weights (masked)",
    .create = weight_create,
    .destroy = weight_destroy,
    .granularity = &weight_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &weight_desc : NULL;
}
