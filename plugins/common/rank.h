/* rank.h: header-only unit ranking shared by the structured granularities
 * (neuron, channel): unit scores (the criterion's own or aggregated from its
 * weight scores), global / per-layer ranking with caps, and the refusal to empty
 * a layer. Plugins include it as "../common/rank.h"; it needs only plugin.h. */
#ifndef PRUNUS_PLUGINS_RANK_H
#define PRUNUS_PLUGINS_RANK_H

#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// Settings shared by the structured granularities

typedef enum {
  RANK_AGGREGATE_L1 = 0, /* sum of |s| over the unit's alive weights */
  RANK_AGGREGATE_L2 = 1, /* sqrt(sum of s^2) over the unit's alive weights */
} RankAggregate;

static const char *const rank_aggregate_names[] = {"l1", "l2", NULL};

/* How a channel group's score comes from its units' scores (graphs, revision 4). */
typedef enum {
  RANK_GROUP_SUM = 0,
  RANK_GROUP_MEAN = 1,
  RANK_GROUP_MAX = 2,
} RankGroupReduce;

static const char *const rank_group_names[] = {"sum", "mean", "max", NULL};

/* Which layers may lose units (besides being prunable and not the output). */
typedef int (*RankEligibleFn)(const PrunusLayerView *layer);

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  RankAggregate aggregate;
  /* Global scope ranks units of layers of different widths together: a layer's
   * unit scores scale with its fan-in (a norm over 784 inputs dwarfs one over
   * 100), so each layer's scores are divided by that layer's mean |score| first,
   * and "low" means "low for its layer". Within one layer (layer scope, or a
   * layer ranked alone at its own rate) it changes nothing. */
  int normalize;
  RankEligibleFn eligible; /* NULL = every hidden layer */
  RankGroupReduce group;   /* group score from its units' (normalized) scores */
  /* Removals come in chunks so that every layer (on a graph: every family of tied
   * channel groups) that loses units keeps a multiple of round_to of them (one that
   * loses none keeps its width; one of round_to or fewer loses none): vector kernels
   * run whole lanes (see rank_take_chunks). 1 = off. */
  int round_to;
} RankCtx;

/* The kinds of score a structured granularity takes: group scores too from a host of
 * revision 4 or later. */
static inline uint32_t rank_accepts(const RankCtx *ctx) {
  uint32_t kinds = PRUNUS_SCORES_UNIT | PRUNUS_SCORES_WEIGHT;
  if (PRUNUS_HOST_REVISION(ctx->services) >= 4) kinds |= PRUNUS_SCORES_GROUP;
  return kinds;
}

/* Read `aggregate` ("l1" | "l2", default "l2"), `normalize` (default true),
 * `group_aggregate` ("sum" | "mean" | "max", default "mean"; used on graphs) and
 * `round_to` (an integer in [1, 4096], default 1). */
static inline int rank_read_settings(RankCtx *ctx, PrunusHost *host,
                                     const PrunusHostServices *services) {
  int aggregate, normalize;
  if (services->get_choice(host, "aggregate", rank_aggregate_names, RANK_AGGREGATE_L2,
                           &aggregate) != 0)
    return -1; /* the host recorded the key, the choices and the value found */
  if (aggregate != RANK_AGGREGATE_L1 && aggregate != RANK_AGGREGATE_L2) {
    services->set_error(host, "aggregate: expected \"l1\" or \"l2\", found choice index %d",
                        aggregate);
    return -1;
  }
  if (services->get_bool(host, "normalize", 1, &normalize) != 0) return -1;
  int group;
  if (services->get_choice(host, "group_aggregate", rank_group_names, RANK_GROUP_MEAN, &group) != 0)
    return -1;
  if (group < RANK_GROUP_SUM || group > RANK_GROUP_MAX) {
    services->set_error(host,
                        "group_aggregate: expected \"sum\", \"mean\" or \"max\", found "
                        "choice index %d",
                        group);
    return -1;
  }
  int64_t round_to = 1;
  if (PRUNUS_HOST_REVISION(services) >= 2) {
    if (services->get_int_range(host, "round_to", 1, 1, 4096, &round_to) != 0) return -1;
  } else {
    if (services->get_int(host, "round_to", 1, &round_to) != 0) return -1;
    if (round_to < 1 || round_to > 4096) {
      services->set_error(host, "round_to: expected an integer in [1, 4096], found %lld",
                          (long long)round_to);
      return -1;
    }
  }
  ctx->round_to = (int)round_to;
  ctx->group = (RankGroupReduce)group;
  ctx->host = host;
  ctx->services = services;
  ctx->aggregate = (RankAggregate)aggregate;
  ctx->normalize = normalize != 0;
  ctx->eligible = NULL;
  return 0;
}

// ----------------------------------------------------------------------------
// Unit scores: the criterion's own, else aggregated from its weight scores

static inline int rank_is_alive(const PrunusLayerView *layer, size_t i) {
  return !layer->mask || layer->mask[i] != 0.0f;
}

/* Fill out (n_units) for layer l; -1 after set_error when there is nothing to use. */
static inline int rank_unit_scores(const RankCtx *ctx, const PrunusModelView *model,
                                   const PrunusScores *scores, int l, double *out) {
  const PrunusLayerView *layer = &model->layers[l];
  if (scores->unit_scores && scores->unit_scores[l]) {
    for (int u = 0; u < layer->n_units; u++) out[u] = scores->unit_scores[l][u];
  } else if (scores->weight_scores && scores->weight_scores[l]) {
    const float *s = scores->weight_scores[l];
    for (int u = 0; u < layer->n_units; u++) {
      const size_t row = (size_t)u * (size_t)layer->fan_in;
      double acc = 0.0;
      for (int k = 0; k < layer->fan_in; k++) {
        const size_t i = row + (size_t)k;
        if (!rank_is_alive(layer, i)) continue;
        acc += ctx->aggregate == RANK_AGGREGATE_L1 ? fabs((double)s[i]) : (double)s[i] * s[i];
      }
      out[u] = ctx->aggregate == RANK_AGGREGATE_L1 ? acc : sqrt(acc);
    }
  } else {
    ctx->services->set_error(ctx->host,
                             "layer %s: no unit or weight scores (the criterion must "
                             "produce PRUNUS_SCORES_UNIT or PRUNUS_SCORES_WEIGHT)",
                             layer->name);
    return -1;
  }
  for (int u = 0; u < layer->n_units; u++) {
    if (!isfinite(out[u])) {
      ctx->services->set_error(ctx->host, "layer %s: unit %d has a non-finite score", layer->name,
                               u);
      return -1;
    }
  }
  return 0;
}

/* Divide the layer's scores by their mean |score| (left alone when that is 0). */
static inline void rank_normalize(double *s, int n) {
  double mean = 0.0;
  for (int u = 0; u < n; u++) mean += fabs(s[u]);
  mean /= n > 0 ? n : 1;
  if (mean > 0.0)
    for (int u = 0; u < n; u++) s[u] /= mean;
}

// ----------------------------------------------------------------------------
// Ranking: one candidate per unit, sorted by (score, layer, unit) so ties break
// deterministically towards the lower layer and unit.

typedef struct {
  double score;
  int layer;
  int unit;
} RankCandidate;

static inline int rank_candidate_cmp(const void *pa, const void *pb) {
  const RankCandidate *a = pa, *b = pb;
  if (a->score != b->score) return a->score < b->score ? -1 : 1;
  if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
  return (a->unit > b->unit) - (a->unit < b->unit);
}

/* round(x) with a little slack so 0.3 * 5 = 1.4999999... rounds like 1.5. */
static inline int rank_round(double x) { return x <= 0.0 ? 0 : (int)floor(x + 0.5 + 1e-9); }

/* Per-layer bookkeeping for one plan() call. */
typedef struct {
  int active;    /* eligible, prunable, hidden and a non-zero rate */
  double rate;   /* layer_amount[l] (1 when the host gives none) */
  double *score; /* (n_units) unit scores, for active layers */
  int cap;       /* most units max_sparsity allows removing this round */
  int removed;   /* removals planned so far */
} RankLayerPlan;

/* Fill lp (one layer's bookkeeping) for the request: its rate (layer_amount, 1 when
 * absent) and its cap (units that may go before max_sparsity binds). 1 when the layer
 * takes part (prunable, not the output, eligible, a non-zero rate), 0 when it does not,
 * -1 after set_error (a rate outside [0, 1], no remove_units buffer). */
static inline int rank_layer_setup(const RankCtx *ctx, const PrunusModelView *model,
                                   const PrunusPlanRequest *req, const PrunusPlan *plan, int l,
                                   RankLayerPlan *p) {
  const PrunusLayerView *layer = &model->layers[l];
  p->rate = req->layer_amount ? req->layer_amount[l] : 1.0;
  if (!layer->prunable || layer->is_output || p->rate == 0.0 || layer->n_units <= 0 ||
      (ctx->eligible && !ctx->eligible(layer)))
    return 0;
  if (!(p->rate > 0.0 && p->rate <= 1.0)) {
    ctx->services->set_error(ctx->host, "layer %s: layer_amount expected in [0, 1], found %g",
                             layer->name, p->rate);
    return -1;
  }
  if (!plan->remove_units || !plan->remove_units[l]) {
    ctx->services->set_error(ctx->host, "layer %s: the host gave no remove_units buffer",
                             layer->name);
    return -1;
  }
  const double max_sp = req->max_sparsity ? req->max_sparsity[l] : 1.0;
  const int min_units = (int)fmax(0.0, ceil((1.0 - max_sp) * layer->n_units - 1e-9));
  p->cap = layer->n_units > min_units ? layer->n_units - min_units : 0;
  p->active = 1;
  return 1;
}

/* Chunked removal (round_to > 1). The candidates c[0..k) are sorted by score; fam[j]
 * in [0, n_fam) is candidate j's family: the groups of one set of tied layers, or with
 * fam NULL c[j].layer (a layer's units). A family's members in ascending score order form chunks:
 * the first takes it down to a multiple of round_to (size % round_to members, or round_to when the
 * size already is one), the next round_to each, and the last never goes (a family keeps at least
 * round_to, or all it has when that is fewer). Chunks are taken by ascending mean score, in order
 * within a family, each while it brings the count removed nearer to want; take() removes a chunk,
 * or returns 0 when a cap refuses it, and a chunk that is not nearer or not taken closes its
 * family. 0, or -1 after set_error. */
typedef int (*RankChunkTake)(void *user, const RankCandidate *c, const size_t *member, int count);

static inline int rank_take_chunks(const RankCtx *ctx, const RankCandidate *c, size_t k,
                                   const int *fam, int n_fam, int want, RankChunkTake take,
                                   void *user) {
  const int r = ctx->round_to;
  int *size = calloc((size_t)n_fam, sizeof *size), *start = calloc((size_t)n_fam, sizeof *start);
  int *next = calloc((size_t)n_fam, sizeof *next), *open = calloc((size_t)n_fam, sizeof *open);
  size_t *member = malloc((k ? k : 1) * sizeof *member); /* by family, each in score order */
  int rc = -1;
  if (!size || !start || !next || !open || !member) {
    ctx->services->set_error(ctx->host, "out of memory ranking %zu candidates in chunks", k);
    goto out;
  }
  for (size_t j = 0; j < k; j++) size[fam ? fam[j] : c[j].layer]++;
  for (int f = 1; f < n_fam; f++) start[f] = start[f - 1] + size[f - 1];
  for (size_t j = 0; j < k; j++) {
    const int f = fam ? fam[j] : c[j].layer;
    member[start[f] + next[f]++] = j;
  }
  for (int f = 0; f < n_fam; f++) next[f] = 0, open[f] = 1;
  int taken = 0;
  while (taken < want) {
    int best = -1, best_n = 0;
    double best_mean = 0.0;
    for (int f = 0; f < n_fam; f++) {
      if (!open[f]) continue;
      const int n = next[f] == 0 && size[f] % r ? size[f] % r : r;
      if (size[f] - next[f] <= n) { /* the family's last chunk */
        open[f] = 0;
        continue;
      }
      double sum = 0.0;
      for (int i = 0; i < n; i++) sum += c[member[start[f] + next[f] + i]].score;
      if (best < 0 || sum / n < best_mean) best = f, best_n = n, best_mean = sum / n;
    }
    if (best < 0) break;
    const size_t *chunk = member + start[best] + next[best];
    if (abs(taken + best_n - want) >= want - taken || !take(user, c, chunk, best_n)) {
      open[best] = 0;
      continue;
    }
    taken += best_n;
    next[best] += best_n;
  }
  rc = 0;
out:
  free(member), free(open), free(next), free(start), free(size);
  return rc;
}

/* The units ranked by rank_select: c[j].layer, c[j].unit. */
typedef struct {
  RankLayerPlan *lp;
  PrunusPlan *plan;
} RankUnitChunks;

/* Remove the chunk's units when its layer's cap allows them all: 1, else 0. */
static inline int rank_units_take(void *user, const RankCandidate *c, const size_t *member,
                                  int count) {
  RankUnitChunks *u = user;
  const RankLayerPlan *p = &u->lp[c[member[0]].layer]; /* a chunk is of one layer */
  if (p->removed + count > p->cap) return 0;
  for (int i = 0; i < count; i++) {
    const RankCandidate *x = &c[member[i]];
    u->plan->remove_units[x->layer][x->unit] = 1;
    u->lp[x->layer].removed++;
  }
  return 1;
}

/* Remove up to round(rate * units of the group's layers) of the lowest-scored
 * units of the layers with in_group[l] set, skipping a layer once its cap is
 * reached (the removal then goes to the next-lowest unit of another layer). */
static inline int rank_select(const RankCtx *ctx, const PrunusModelView *model, RankLayerPlan *lp,
                              const int *in_group, double rate, PrunusPlan *plan) {
  size_t n = 0;
  for (int l = 0; l < model->n_layers; l++)
    if (in_group[l]) n += (size_t)model->layers[l].n_units;
  const int want = rank_round(rate * (double)n);
  if (want == 0 || n == 0) return 0;
  RankCandidate *c = malloc(n * sizeof *c);
  if (!c) {
    ctx->services->set_error(ctx->host, "out of memory ranking %zu units", n);
    return -1;
  }
  size_t k = 0;
  for (int l = 0; l < model->n_layers; l++) {
    if (!in_group[l]) continue;
    for (int u = 0; u < model->layers[l].n_units; u++) {
      c[k].score = lp[l].score[u];
      c[k].layer = l;
      c[k].unit = u;
      k++;
    }
  }
  qsort(c, k, sizeof *c, rank_candidate_cmp);
  if (ctx->round_to > 1) { /* families: the layers */
    RankUnitChunks u = {lp, plan};
    const int rc = rank_take_chunks(ctx, c, k, NULL, model->n_layers, want, rank_units_take, &u);
    free(c);
    return rc;
  }
  int taken = 0;
  for (size_t j = 0; j < k && taken < want; j++) {
    RankLayerPlan *p = &lp[c[j].layer];
    if (p->removed >= p->cap) continue;
    plan->remove_units[c[j].layer][c[j].unit] = 1;
    p->removed++;
    taken++;
  }
  free(c);
  return 0;
}

// ----------------------------------------------------------------------------
// Refusing to empty a layer

static inline int rank_unit_removed(const PrunusPlan *plan, int l, int u) {
  return plan->remove_units && plan->remove_units[l] && plan->remove_units[l][u];
}

/* Alive weights of layer m that survive the plan: rows of its kept units, and
 * columns fed by kept units of layer m-1. The previous parameter layer feeds this
 * one when fan_in is a multiple of its units: dense after dense (one column per
 * unit), conv after conv (cin*k*k: a k*k block per channel) and dense after
 * flatten (C*H*W: an H*W block per channel), all channel-major. */
static inline size_t rank_alive_after(const PrunusModelView *model, const PrunusPlan *plan, int m,
                                      size_t *alive_before) {
  const PrunusLayerView *layer = &model->layers[m];
  const PrunusLayerView *prev = m > 0 ? &model->layers[m - 1] : NULL;
  int per = 0;
  if (prev && prev->n_units > 0 && layer->fan_in % prev->n_units == 0)
    per = layer->fan_in / prev->n_units;
  size_t before = 0, after = 0;
  for (int u = 0; u < layer->n_units; u++) {
    const int row_kept = !rank_unit_removed(plan, m, u);
    for (int k = 0; k < layer->fan_in; k++) {
      const size_t i = (size_t)u * (size_t)layer->fan_in + (size_t)k;
      if (!rank_is_alive(layer, i)) continue;
      before++;
      if (row_kept && !(per > 0 && rank_unit_removed(plan, m - 1, k / per))) after++;
    }
  }
  *alive_before = before;
  return after;
}

static inline int rank_check_not_empty(const RankCtx *ctx, const PrunusModelView *model,
                                       const RankLayerPlan *lp, const PrunusPlan *plan) {
  for (int m = 0; m < model->n_layers; m++) {
    const PrunusLayerView *layer = &model->layers[m];
    const int own = lp[m].removed;
    const int fed = m > 0 ? lp[m - 1].removed : 0;
    if (own == 0 && fed == 0) continue;
    if (own > 0 && own >= layer->n_units) {
      ctx->services->set_error(ctx->host,
                               "layer %s: the plan removes all %d units; refusing to empty the "
                               "layer (lower the amount or set a max_sparsity below 1)",
                               layer->name, layer->n_units);
      return -1;
    }
    size_t before;
    const size_t after = rank_alive_after(model, plan, m, &before);
    if (before > 0 && after == 0) {
      ctx->services->set_error(ctx->host,
                               "layer %s: the plan leaves none of its %zu alive weights (its "
                               "kept units or their inputs from layer %s are all pruned); "
                               "refusing to empty the layer",
                               layer->name, before, m > 0 ? model->layers[m - 1].name : "-");
      return -1;
    }
  }
  return 0;
}

// ----------------------------------------------------------------------------
// The plan

/* Units of the eligible, prunable hidden layers (never is_output: its units are
 * the classes) are removed. amount is a fraction of the units there are now
 * (removed units are physically gone from the view). Global scope: the layers at
 * layer_amount 1 share one ranking at req->amount; a layer at another rate is
 * ranked alone at amount * layer_amount; a layer at 0 is skipped. Layer scope:
 * each layer removes round(layer_amount * units) of its own units. max_sparsity
 * caps the round so that units after >= (1 - max_sparsity) * units now. */
static inline int rank_plan_units(const RankCtx *ctx, const PrunusModelView *model,
                                  const PrunusScores *scores, const PrunusPlanRequest *req,
                                  PrunusPlan *plan) {
  const int nl = model->n_layers;
  if (req->scope == PRUNUS_SCOPE_GLOBAL && !(req->amount >= 0.0 && req->amount <= 1.0)) {
    ctx->services->set_error(ctx->host, "amount: expected a fraction in [0, 1], found %g",
                             req->amount);
    return -1;
  }
  if (nl <= 0) return 0;
  RankLayerPlan *lp = calloc((size_t)nl, sizeof *lp);
  int *in_group = calloc((size_t)nl, sizeof *in_group);
  int rc = -1;
  if (!lp || !in_group) {
    ctx->services->set_error(ctx->host, "out of memory planning %d layers", nl);
    goto out_free;
  }

  for (int l = 0; l < nl; l++) {
    const int on = rank_layer_setup(ctx, model, req, plan, l, &lp[l]);
    if (on < 0) goto out_free;
    if (!on) continue;
    const int n = model->layers[l].n_units;
    lp[l].score = malloc((size_t)n * sizeof *lp[l].score);
    if (!lp[l].score) {
      ctx->services->set_error(ctx->host, "out of memory scoring layer %s", model->layers[l].name);
      goto out_free;
    }
    if (rank_unit_scores(ctx, model, scores, l, lp[l].score) != 0) goto out_free;
  }

  if (req->scope == PRUNUS_SCOPE_GLOBAL) {
    for (int l = 0; l < nl; l++) {
      in_group[l] = lp[l].active && lp[l].rate == 1.0;
      if (in_group[l] && ctx->normalize) rank_normalize(lp[l].score, model->layers[l].n_units);
    }
    if (rank_select(ctx, model, lp, in_group, req->amount, plan) != 0) goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    if (!lp[l].active || (req->scope == PRUNUS_SCOPE_GLOBAL && lp[l].rate == 1.0)) continue;
    for (int m = 0; m < nl; m++) in_group[m] = m == l;
    const double rate = req->scope == PRUNUS_SCOPE_GLOBAL ? req->amount * lp[l].rate : lp[l].rate;
    if (rank_select(ctx, model, lp, in_group, rate, plan) != 0) goto out_free;
  }

  if (rank_check_not_empty(ctx, model, lp, plan) != 0) goto out_free;
  rc = 0;

out_free:
  if (lp)
    for (int l = 0; l < nl; l++) free(lp[l].score);
  free(in_group);
  free(lp);
  return rc;
}

// ----------------------------------------------------------------------------
// Graphs (revision 4): whole channel groups

/* Rank groups rather than units: on a graph (units tied by add / concat must go
 * together), or when the criterion scores only groups. */
static inline int rank_use_groups(const RankCtx *ctx, const PrunusModelView *model,
                                  const PrunusScores *scores) {
  if (PRUNUS_HOST_REVISION(ctx->services) < 4) return 0;
  if (!model->is_sequence) return 1;
  return scores->group_scores && !(scores->unit_scores || scores->weight_scores);
}

/* Whether two groups remove units of the same layers (a family: the channels of one
 * set of tied layers, ranked together in layer scope). */
static inline int rank_same_family(const PrunusModelView *model, int a, int b) {
  if (model->group_n_units[a] != model->group_n_units[b]) return 0;
  for (int i = 0; i < model->group_n_units[a]; i++)
    if (model->group_unit_layer[a][i] != model->group_unit_layer[b][i]) return 0;
  return 1;
}

typedef struct {
  int eligible; /* every unit in an eligible, prunable hidden layer at a non-zero rate */
  double rate;  /* the lowest layer_amount of its layers */
  double score;
  int family; /* the lowest group of its family */
} RankGroupPlan;

/* Whether removing `times` groups like g (a family's groups hold the same layers'
 * units) keeps every layer of g within its cap. */
static inline int rank_group_fits(const PrunusModelView *model, const RankLayerPlan *lp, int g,
                                  int times) {
  for (int i = 0; i < model->group_n_units[g]; i++) {
    const int l = model->group_unit_layer[g][i];
    int in_l = 0; /* a group may hold several units of one layer */
    for (int t = 0; t < model->group_n_units[g]; t++) in_l += model->group_unit_layer[g][t] == l;
    if (lp[l].removed + times * in_l > lp[l].cap) return 0;
  }
  return 1;
}

static inline void rank_group_take(const PrunusModelView *model, RankLayerPlan *lp, int g,
                                   PrunusPlan *plan) {
  for (int i = 0; i < model->group_n_units[g]; i++) {
    const int l = model->group_unit_layer[g][i];
    plan->remove_units[l][model->group_unit[g][i]] = 1;
    lp[l].removed++;
  }
}

/* The groups ranked by rank_select_groups: c[j].layer is the group. */
typedef struct {
  const PrunusModelView *model;
  RankLayerPlan *lp;
  PrunusPlan *plan;
} RankGroupChunks;

/* Remove the chunk's groups when every cap allows them all: 1, else 0. */
static inline int rank_groups_take(void *user, const RankCandidate *c, const size_t *member,
                                   int count) {
  RankGroupChunks *u = user;
  if (!rank_group_fits(u->model, u->lp, c[member[0]].layer, count)) return 0;
  for (int i = 0; i < count; i++) rank_group_take(u->model, u->lp, c[member[i]].layer, u->plan);
  return 1;
}

/* Take up to round(rate * candidates) of the lowest-scored groups with pick[g] set,
 * skipping a group that would take one of its layers past its cap; with round_to > 1,
 * whole chunks of each family (rank_take_chunks). */
static inline int rank_select_groups(const RankCtx *ctx, const PrunusModelView *model,
                                     const RankGroupPlan *gp, const int *pick, double rate,
                                     RankLayerPlan *lp, PrunusPlan *plan) {
  size_t n = 0;
  for (int g = 0; g < model->n_groups; g++) n += pick[g] != 0;
  const int want = rank_round(rate * (double)n);
  if (want == 0 || n == 0) return 0;
  RankCandidate *c = malloc(n * sizeof *c);
  int *fam = ctx->round_to > 1 ? malloc(n * sizeof *fam) : NULL; /* chunks only */
  if (!c || (ctx->round_to > 1 && !fam)) {
    free(c), free(fam);
    ctx->services->set_error(ctx->host, "out of memory ranking %zu groups", n);
    return -1;
  }
  size_t k = 0;
  for (int g = 0; g < model->n_groups; g++) {
    if (!pick[g]) continue;
    c[k].score = gp[g].score;
    c[k].layer = g; /* ties break towards the lower group */
    c[k].unit = 0;
    k++;
  }
  qsort(c, k, sizeof *c, rank_candidate_cmp);
  int rc = 0;
  if (ctx->round_to > 1) {
    for (size_t j = 0; j < k; j++) fam[j] = gp[c[j].layer].family; /* its lowest group */
    RankGroupChunks u = {model, lp, plan};
    rc = rank_take_chunks(ctx, c, k, fam, model->n_groups, want, rank_groups_take, &u);
  } else {
    int taken = 0;
    for (size_t j = 0; j < k && taken < want; j++) {
      if (!rank_group_fits(model, lp, c[j].layer, 1)) continue;
      rank_group_take(model, lp, c[j].layer, plan);
      taken++;
    }
  }
  free(fam);
  free(c);
  return rc;
}

/* Groups of an eligible layer set are removed whole. A group's score is the criterion's
 * own group score, else group_aggregate (sum, mean, max) of its units' scores, each
 * layer's divided by that layer's mean |score| first when normalize is on. amount and
 * layer_amount count groups: global scope ranks every group whose layers are all at
 * rate 1 together (want = round(amount * groups)), a family with a layer at another rate
 * alone at amount * its lowest rate; layer scope ranks each family (groups of the same
 * layers) alone at its lowest rate. max_sparsity caps each layer as for units. A plan
 * that would empty a layer is refused naming the layer and the group. */
static inline int rank_plan_groups(const RankCtx *ctx, const PrunusModelView *model,
                                   const PrunusScores *scores, const PrunusPlanRequest *req,
                                   PrunusPlan *plan) {
  const int nl = model->n_layers, ng = model->n_groups;
  if (req->scope == PRUNUS_SCOPE_GLOBAL && !(req->amount >= 0.0 && req->amount <= 1.0)) {
    ctx->services->set_error(ctx->host, "amount: expected a fraction in [0, 1], found %g",
                             req->amount);
    return -1;
  }
  if (nl <= 0 || ng <= 0) return 0;
  const float *own = scores->group_scores; /* the criterion's group scores, if any */
  RankLayerPlan *lp = calloc((size_t)nl, sizeof *lp);
  RankGroupPlan *gp = calloc((size_t)ng, sizeof *gp);
  int *pick = calloc((size_t)ng, sizeof *pick);
  int rc = -1;
  if (!lp || !gp || !pick) {
    ctx->services->set_error(ctx->host, "out of memory planning %d groups", ng);
    goto out_free;
  }
  for (int l = 0; l < nl; l++)
    if (rank_layer_setup(ctx, model, req, plan, l, &lp[l]) < 0) goto out_free;
  for (int g = 0; g < ng; g++) {
    RankGroupPlan *q = &gp[g];
    q->eligible = model->group_n_units[g] > 0;
    q->rate = 1.0;
    for (int i = 0; q->eligible && i < model->group_n_units[g]; i++) {
      const int l = model->group_unit_layer[g][i];
      q->eligible = l >= 0 && lp[l].active;
      if (q->eligible) q->rate = fmin(q->rate, lp[l].rate);
    }
    if (!q->eligible) continue;
    q->family = g;
    for (int h = 0; h < g; h++)
      if (gp[h].eligible && gp[h].family == h && rank_same_family(model, g, h)) {
        q->family = h;
        break;
      }
    for (int i = 0; !own && i < model->group_n_units[g]; i++) {
      const int l = model->group_unit_layer[g][i];
      if (lp[l].score) continue;
      lp[l].score = malloc((size_t)model->layers[l].n_units * sizeof *lp[l].score);
      if (!lp[l].score) {
        ctx->services->set_error(ctx->host, "out of memory scoring layer %s",
                                 model->layers[l].name);
        goto out_free;
      }
      if (rank_unit_scores(ctx, model, scores, l, lp[l].score) != 0) goto out_free;
      if (ctx->normalize) rank_normalize(lp[l].score, model->layers[l].n_units);
    }
    if (own) {
      q->score = own[g];
    } else {
      double acc = ctx->group == RANK_GROUP_MAX ? -INFINITY : 0.0;
      for (int i = 0; i < model->group_n_units[g]; i++) {
        const double v = lp[model->group_unit_layer[g][i]].score[model->group_unit[g][i]];
        acc = ctx->group == RANK_GROUP_MAX ? fmax(acc, v) : acc + v;
      }
      q->score = ctx->group == RANK_GROUP_MEAN ? acc / model->group_n_units[g] : acc;
    }
    if (!isfinite(q->score)) {
      ctx->services->set_error(ctx->host, "group %d has a non-finite score", g);
      goto out_free;
    }
  }
  if (req->scope == PRUNUS_SCOPE_GLOBAL) {
    for (int g = 0; g < ng; g++) pick[g] = gp[g].eligible && gp[g].rate == 1.0;
    if (rank_select_groups(ctx, model, gp, pick, req->amount, lp, plan) != 0) goto out_free;
  }
  for (int f = 0; f < ng; f++) {
    if (!gp[f].eligible || gp[f].family != f) continue;
    if (req->scope == PRUNUS_SCOPE_GLOBAL && gp[f].rate == 1.0) continue;
    for (int g = 0; g < ng; g++) pick[g] = gp[g].eligible && gp[g].family == f;
    const double rate = req->scope == PRUNUS_SCOPE_GLOBAL ? req->amount * gp[f].rate : gp[f].rate;
    if (rank_select_groups(ctx, model, gp, pick, rate, lp, plan) != 0) goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    if (!lp[l].active || lp[l].removed < layer->n_units) continue;
    ctx->services->set_error(ctx->host,
                             "layer %s: the plan removes all %d units (group %d among them); "
                             "refusing to empty the layer (lower the amount or set a "
                             "max_sparsity below 1, in a new run: a changed config cannot "
                             "resume this one)",
                             layer->name, layer->n_units, model->unit_group[l][layer->n_units - 1]);
    goto out_free;
  }
  rc = 0;

out_free:
  if (lp)
    for (int l = 0; l < nl; l++) free(lp[l].score);
  free(pick);
  free(gp);
  free(lp);
  return rc;
}

#endif /* PRUNUS_PLUGINS_RANK_H */
