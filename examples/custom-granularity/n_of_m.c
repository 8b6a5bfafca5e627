/* n_of_m.c: an example granularity plugin written outside prunus: N:M
 * semi-structured sparsity (2:4 is what sparse tensor cores run). Each round removes
 * the lowest-scored weights, as `weight` does, but never more than M - N of any
 * group of M consecutive weights of a row, so the schedule converges to exact N:M.
 *
 * Settings (prune.granularity): m = group size (default 4, at most 64), n = weights
 * kept per group (default m / 2, at most m - 1). Once every group is down to N,
 * rounds remove nothing more.
 */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  int n; /* weights kept per group */
  int m; /* group size, along a row (fan_in) */
} NofM;

/* An integer setting in [min, max]. Through the host's get_int_range where it has
 * one (appended in revision 2: PRUNUS_HOST_HAS checks the host's table is that
 * long), whose error names the key, its file:line, the range and the value; on an
 * older host, get_int and the same check here. */
static int setting_int(PrunusHost *host, const PrunusHostServices *svc, const char *key,
                       int64_t defval, int64_t min, int64_t max, int64_t *out) {
  if (PRUNUS_HOST_HAS(svc, get_int_range))
    return svc->get_int_range(host, key, defval, min, max, out);
  if (svc->get_int(host, key, defval, out) != 0) return -1;
  if (*out < min || *out > max) {
    svc->set_error(host, "%s = %lld is out of range: must be in [%lld, %lld]", key, (long long)*out,
                   (long long)min, (long long)max);
    return -1;
  }
  return 0;
}

static int create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  /* Read every setting here: the host reports keys nobody read right after
   * create(), so a key first read in plan() would already be an error. */
  int64_t n, m;
  if (setting_int(host, svc, "m", 4, 2, 64, &m) != 0 ||
      setting_int(host, svc, "n", m / 2, 1, m - 1, &n) != 0)
    return -1; /* the host (or setting_int) recorded the key and what it found */
  NofM *s = malloc(sizeof *s);
  if (!s) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  *s = (NofM){.host = host, .svc = svc, .n = (int)n, .m = (int)m};
  *state = s;
  return 0;
}

static void destroy(void *state) { free(state); }

static uint32_t accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

// ----------------------------------------------------------------------------
// Ranking

typedef struct {
  float score;
  int layer;
  size_t index;
} Candidate;

/* By score, then layer, then index: ties break the same way every run. */
static int candidate_cmp(const void *pa, const void *pb) {
  const Candidate *a = pa, *b = pb;
  if (a->score != b->score) return a->score < b->score ? -1 : 1;
  if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

/* round(x), with slack so that 0.3 * 5 = 1.4999999... rounds like 1.5 */
static size_t round_count(double x) { return x <= 0.0 ? 0 : (size_t)floor(x + 0.5 + 1e-9); }

/* Per-layer state of one plan() call. The views are re-read every round: a
 * structured granularity elsewhere in the pipeline may have changed the shapes. */
typedef struct {
  int active;          /* prunable, rate > 0 */
  double rate;         /* req->layer_amount[l] */
  size_t alive;        /* alive weights now */
  size_t cap;          /* removals max_sparsity still allows */
  size_t removed;      /* removals planned so far */
  int groups_per_row;  /* ceil(fan_in / m) */
  unsigned char *room; /* (n_units * groups_per_row) removals each group may still take */
} LayerPlan;

/* Alive weights the N:M rule lets a group of `size` weights lose: all but n. */
static int group_room(const NofM *s, const PrunusLayerView *l, int unit, int g) {
  const int first = g * s->m;
  const int size = first + s->m <= l->fan_in ? s->m : l->fan_in - first;
  int alive = 0;
  for (int k = first; k < first + size; k++)
    alive += l->mask[(size_t)unit * (size_t)l->fan_in + (size_t)k] != 0.0f;
  const int keep = size < s->n ? size : s->n;
  return alive > keep ? alive - keep : 0;
}

/* Remove up to round(rate * alive) of the lowest-scored alive weights of the layers
 * with in_group[l], skipping a weight whose group has no room left or whose layer
 * reached its cap (the removal goes to the next-lowest weight instead). */
static int select_lowest(NofM *s, const PrunusModelView *model, const PrunusScores *scores,
                         LayerPlan *lp, const int *in_group, double rate, PrunusPlan *plan) {
  size_t total = 0;
  for (int l = 0; l < model->n_layers; l++)
    if (in_group[l]) total += lp[l].alive;
  const size_t want = round_count(rate * (double)total);
  if (want == 0) return 0;
  Candidate *c = malloc(total * sizeof *c);
  if (!c) {
    s->svc->set_error(s->host, "out of memory ranking %zu weights", total);
    return -1;
  }
  size_t k = 0;
  for (int l = 0; l < model->n_layers; l++) {
    if (!in_group[l]) continue;
    const PrunusLayerView *layer = &model->layers[l];
    for (size_t i = 0; i < layer->n_weights; i++)
      if (layer->mask[i] != 0.0f) c[k++] = (Candidate){scores->weight_scores[l][i], l, i};
  }
  qsort(c, k, sizeof *c, candidate_cmp);
  size_t taken = 0;
  for (size_t j = 0; j < k && taken < want; j++) {
    LayerPlan *p = &lp[c[j].layer];
    const int fan_in = model->layers[c[j].layer].fan_in;
    const size_t unit = c[j].index / (size_t)fan_in;
    const size_t g = (c[j].index % (size_t)fan_in) / (size_t)s->m;
    unsigned char *room = &p->room[unit * (size_t)p->groups_per_row + g];
    if (p->removed >= p->cap || *room == 0) continue;
    plan->remove_weights[c[j].layer][c[j].index] = 1;
    (*room)--;
    p->removed++;
    taken++;
  }
  free(c);
  if (taken < want)
    s->svc->log(s->host, PRUNUS_LOG_INFO,
                "removed %zu of the %zu weights asked for: the rest would break %d:%d or a "
                "max_sparsity cap",
                taken, want, s->n, s->m);
  return 0;
}

// ----------------------------------------------------------------------------
// The plan: the same scopes, per-layer rates and caps as the built-in `weight`.
// Global scope ranks the layers at rate 1 together at req->amount and each layer
// at another rate alone at amount * rate; layer scope ranks each layer alone at
// its layer_amount. A layer never empties: every group keeps min(n, its size).

static int plan_nm(void *state, const PrunusModelView *model, const PrunusScores *scores,
                   const PrunusPlanRequest *req, PrunusPlan *plan) {
  NofM *s = state;
  const int nl = model->n_layers;
  LayerPlan *lp = calloc((size_t)nl, sizeof *lp);
  int *in_group = calloc((size_t)nl, sizeof *in_group);
  int rc = -1;
  if (!lp || !in_group) {
    s->svc->set_error(s->host, "out of memory planning %d layers", nl);
    goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    LayerPlan *p = &lp[l];
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
            (unsigned char)group_room(s, layer, u, g);
    for (size_t i = 0; i < layer->n_weights; i++) p->alive += layer->mask[i] != 0.0f;
    const double min_alive = ceil((1.0 - req->max_sparsity[l]) * (double)layer->n_weights - 1e-9);
    p->cap = min_alive <= 0.0               ? p->alive
             : p->alive > (size_t)min_alive ? p->alive - (size_t)min_alive
                                            : 0;
    p->active = 1;
  }
  if (req->scope == PRUNUS_SCOPE_GLOBAL) {
    for (int l = 0; l < nl; l++) in_group[l] = lp[l].active && lp[l].rate == 1.0;
    if (select_lowest(s, model, scores, lp, in_group, req->amount, plan) != 0) goto out_free;
  }
  for (int l = 0; l < nl; l++) {
    if (!lp[l].active || (req->scope == PRUNUS_SCOPE_GLOBAL && lp[l].rate == 1.0)) continue;
    for (int k = 0; k < nl; k++) in_group[k] = k == l;
    const double rate = req->scope == PRUNUS_SCOPE_GLOBAL ? req->amount * lp[l].rate : lp[l].rate;
    if (select_lowest(s, model, scores, lp, in_group, rate, plan) != 0) goto out_free;
  }
  rc = 0;

out_free:
  for (int l = 0; lp && l < nl; l++) free(lp[l].room);
  free(in_group);
  free(lp);
  return rc;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusGranularityOps ops = {
    .accepts = accepts,
    .plan = plan_nm,
};

static const PrunusPluginDesc desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_GRANULARITY,
    .name = "n-of-m",
    .version = "1.0.0",
    .summary = "N:M semi-structured: lowest-scored weights, at most M-N of every M in a row",
    .create = create,
    .destroy = destroy,
    PRUNUS_PLUGIN_OPS(granularity, ops), /* sets ops_size too */
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &desc : NULL;
}
