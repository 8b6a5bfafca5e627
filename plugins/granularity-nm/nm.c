/* nm.c: N:M semi-structured sparsity along fan_in (2:4 is what sparse tensor cores
 * run; 4:8, or any N < M <= 64): at most n alive weights in every group of m
 * consecutive weights of a row (a conv row is cin x k x k in channel-major order;
 * a row's last group may be shorter and keeps min(n, its size)). Each round removes
 * the lowest-scored alive weights, as `weight` does (global or per layer, per-layer
 * rates and caps), skipping a weight whose group already lost all it may. The
 * pattern is declared to the host (pattern()), which warns when the schedule asks
 * for more than 1 - n/m and hands the pattern to criteria. Any weight criterion.
 * Settings (prune.granularity): n (kept per group, default m / 2), m (default 4). */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  int n, m;
} Nm;

static int nm_create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  if (!PRUNUS_HOST_HAS(svc, get_int_range)) {
    svc->set_error(host, "nm needs plugin ABI revision 2 or later (get_int_range)");
    return -1;
  }
  int64_t n, m;
  if (svc->get_int_range(host, "m", 4, 2, 64, &m) != 0 ||
      svc->get_int_range(host, "n", m / 2, 1, m - 1, &n) != 0)
    return -1;
  Nm *s = malloc(sizeof *s);
  if (!s) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  *s = (Nm){.host = host, .svc = svc, .n = (int)n, .m = (int)m};
  *state = s;
  return 0;
}

static void nm_destroy(void *state) { free(state); }

static uint32_t nm_accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static void nm_pattern(void *state, int *n, int *m) {
  const Nm *s = state;
  *n = s->n;
  *m = s->m;
}

// ----------------------------------------------------------------------------
// Ranking: by score, then layer, then index, so ties break the same way every run.

typedef struct {
  float score;
  int layer;
  size_t index;
} NmCand;

static int nm_cand_cmp(const void *pa, const void *pb) {
  const NmCand *a = pa, *b = pb;
  if (a->score != b->score) return a->score < b->score ? -1 : 1;
  if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

static size_t nm_round(double x) { return x <= 0.0 ? 0 : (size_t)floor(x + 0.5 + 1e-9); }

typedef struct {
  int active;  /* prunable, rate > 0 */
  double rate; /* req->layer_amount[l] */
  size_t alive, cap, removed;
  int groups_per_row;  /* ceil(fan_in / m) */
  unsigned char *room; /* (n_units * groups_per_row) removals each group may still take */
} NmLayer;

/* Alive weights a group may still lose: all but min(n, its size). */
static int nm_group_room(const Nm *s, const PrunusLayerView *l, int unit, int g) {
  const int first = g * s->m;
  const int size = first + s->m <= l->fan_in ? s->m : l->fan_in - first;
  int alive = 0;
  for (int k = first; k < first + size; k++)
    alive += l->mask[(size_t)unit * (size_t)l->fan_in + (size_t)k] != 0.0f;
  const int keep = size < s->n ? size : s->n;
  return alive > keep ? alive - keep : 0;
}

/* Remove up to round(rate * alive) of the group's layers' lowest-scored alive
 * weights, skipping a weight whose N:M group or layer cap is full. */
static int nm_select(Nm *s, const PrunusModelView *model, const PrunusScores *scores, NmLayer *lp,
                     const int *in_group, double rate, PrunusPlan *plan) {
  size_t total = 0;
  for (int l = 0; l < model->n_layers; l++)
    if (in_group[l]) total += lp[l].alive;
  const size_t want = nm_round(rate * (double)total);
  if (want == 0) return 0;
  NmCand *c = malloc(total * sizeof *c);
  if (!c) {
    s->svc->set_error(s->host, "out of memory ranking %zu weights", total);
    return -1;
  }
  size_t k = 0;
  for (int l = 0; l < model->n_layers; l++) {
    if (!in_group[l]) continue;
    const PrunusLayerView *layer = &model->layers[l];
    for (size_t i = 0; i < layer->n_weights; i++)
      if (layer->mask[i] != 0.0f) c[k++] = (NmCand){scores->weight_scores[l][i], l, i};
  }
  qsort(c, k, sizeof *c, nm_cand_cmp);
  size_t taken = 0;
  for (size_t j = 0; j < k && taken < want; j++) {
    NmLayer *p = &lp[c[j].layer];
    const size_t fan_in = (size_t)model->layers[c[j].layer].fan_in;
    unsigned char *room =
        &p->room[(c[j].index / fan_in) * (size_t)p->groups_per_row + (c[j].index % fan_in) / s->m];
    if (p->removed >= p->cap || *room == 0) continue;
    plan->remove_weights[c[j].layer][c[j].index] = 1;
    (*room)--;
    p->removed++;
    taken++;
  }
  free(c);
  if (taken < want)
    s->svc->log(s->host, PRUNUS_LOG_DEBUG,
                "removed %zu of the %zu weights asked for: the rest would break %d:%d or a "
                "max_sparsity cap",
                taken, want, s->n, s->m);
  return 0;
}

/* Global scope ranks the layers at rate 1 together at req->amount and each layer at
 * another rate alone at amount * rate; layer scope ranks each layer alone. */
static int nm_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                   const PrunusPlanRequest *req, PrunusPlan *plan) {
  Nm *s = state;
  const int nl = model->n_layers;
  NmLayer *lp = calloc((size_t)(nl > 0 ? nl : 1), sizeof *lp);
  int *in_group = calloc((size_t)(nl > 0 ? nl : 1), sizeof *in_group);
  int rc = -1;
  if (!lp || !in_group) {
    s->svc->set_error(s->host, "out of memory planning %d layers", nl);
    goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    NmLayer *p = &lp[l];
    p->rate = req->layer_amount[l];
    if (!layer->prunable || p->rate <= 0.0) continue;
    if (!scores->weight_scores || !scores->weight_scores[l]) {
      s->svc->set_error(s->host, "layer %s: the criterion gave no weight scores", layer->name);
      goto out_free;
    }
    p->groups_per_row = (layer->fan_in + s->m - 1) / s->m;
    p->room = malloc((size_t)layer->n_units * (size_t)p->groups_per_row);
    if (!p->room) {
      s->svc->set_error(s->host, "out of memory planning layer %s", layer->name);
      goto out_free;
    }
    for (int u = 0; u < layer->n_units; u++)
      for (int g = 0; g < p->groups_per_row; g++)
        p->room[(size_t)u * (size_t)p->groups_per_row + (size_t)g] =
            (unsigned char)nm_group_room(s, layer, u, g);
    for (size_t i = 0; i < layer->n_weights; i++) {
      if (layer->mask[i] == 0.0f) continue;
      if (!isfinite(scores->weight_scores[l][i])) {
        s->svc->set_error(s->host, "layer %s: weight %zu has a non-finite score", layer->name, i);
        goto out_free;
      }
      p->alive++;
    }
    const double min_alive = ceil((1.0 - req->max_sparsity[l]) * (double)layer->n_weights - 1e-9);
    p->cap = min_alive <= 0.0               ? p->alive
             : p->alive > (size_t)min_alive ? p->alive - (size_t)min_alive
                                            : 0;
    p->active = 1;
  }
  if (req->scope == PRUNUS_SCOPE_GLOBAL) {
    for (int l = 0; l < nl; l++) in_group[l] = lp[l].active && lp[l].rate == 1.0;
    if (nm_select(s, model, scores, lp, in_group, req->amount, plan) != 0) goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    if (!lp[l].active || (req->scope == PRUNUS_SCOPE_GLOBAL && lp[l].rate == 1.0)) continue;
    for (int k = 0; k < nl; k++) in_group[k] = k == l;
    const double rate = req->scope == PRUNUS_SCOPE_GLOBAL ? req->amount * lp[l].rate : lp[l].rate;
    if (nm_select(s, model, scores, lp, in_group, rate, plan) != 0) goto out_free;
  }
  rc = 0;

out_free:
  for (int l = 0; lp && l < nl; l++) free(lp[l].room);
  free(in_group);
  free(lp);
  return rc;
}

static const PrunusGranularityOps nm_ops = {
    .accepts = nm_accepts,
    .plan = nm_plan,
    .pattern = nm_pattern,
};

static const PrunusPluginDesc nm_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_GRANULARITY,
    .name = "nm",
    .version = "1.0.0",
    .summary = "N:M semi-structured: at most n alive of every m consecutive weights of a row",
    .create = nm_create,
    .destroy = nm_destroy,
    PRUNUS_PLUGIN_OPS(granularity, nm_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &nm_desc : NULL;
}
