/* wanda.c: Wanda (Sun et al. 2023), pruning by weights and activations: a weight's
 * score is |W_ij| * ||X_j||_2, X_j the j-th input of its layer over the calibration
 * rows (samples, and positions of a conv layer's patches), from the host's reduced
 * sums of squares. Settings (prune.criterion):
 *   compare    "layer" (default): the plain scores, ranked by the granularity (per
 *              layer or globally). "row": every output row loses the same share of
 *              its alive weights, the lowest-scored of the row, as the paper does
 *              for LLMs; the picked weights get scores in [0, 1], the others in
 *              [2, 3] (each class in |W| ||X|| order), so the granularity removes
 *              exactly them. Needs layer scope. On LeNet-300-100 and LeNet-5 "layer"
 *              is the better of the two at every sparsity measured
 *              (docs/post-training.md), hence the default.
 *   sequential false (default): every layer's inputs from the network as it was
 *              before this round, one calibration pass. true: layer by layer, each
 *              layer's inputs taken as the layers before it were pruned this round
 *              (the paper's order). false scored better on LeNet-300-100, LeNet-5 and
 *              ResNet-20 at 70 and 90% (docs/post-training.md), and costs one pass.
 * With an N:M granularity the plain scores go to it (it compares within groups). */
#include <prunus/plugin.h>

#include "../common/select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { WANDA_ROW = 0, WANDA_LAYER = 1 } WandaCompare;
static const char *const compare_names[] = {"row", "layer", NULL};

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  WandaCompare compare;
  int sequential;
  int n_layers;  /* of the sums below; 0 = nothing observed since the last score() */
  double **norm; /* [layer] (fan_in) ||X_j||_2, NULL for layers not observed */
  int *fan_in;   /* [layer] the shape norm[layer] was made for */
} Wanda;

static void wanda_drop(Wanda *w) {
  for (int l = 0; l < w->n_layers; l++) free(w->norm[l]);
  free(w->norm), free(w->fan_in);
  w->norm = NULL, w->fan_in = NULL, w->n_layers = 0;
}

static int wanda_create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  if (!PRUNUS_HOST_HAS(svc, plan_request) || PRUNUS_HOST_REVISION(svc) < 3) {
    svc->set_error(host,
                   "wanda needs the layer inputs of plugin ABI revision 3 (PRUNUS_NEED_INPUT_"
                   "SUMSQ); this prunus has revision %u",
                   PRUNUS_HOST_REVISION(svc));
    return -1;
  }
  int compare, sequential;
  if (svc->get_choice(host, "compare", compare_names, WANDA_LAYER, &compare) != 0 ||
      svc->get_bool(host, "sequential", 0, &sequential) != 0)
    return -1;
  const PrunusPlanRequest *req = svc->plan_request(host);
  if (compare == WANDA_ROW && req && req->scope != PRUNUS_SCOPE_LAYER) {
    svc->set_error(host,
                   "compare = \"row\" removes the same share of every output row, which needs "
                   "prune.schedule.scope = \"layer\"; set it, or compare = \"layer\"");
    return -1;
  }
  Wanda *w = calloc(1, sizeof *w);
  if (!w) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  *w =
      (Wanda){.host = host, .svc = svc, .compare = (WandaCompare)compare, .sequential = sequential};
  *state = w;
  return 0;
}

static void wanda_destroy(void *state) {
  wanda_drop(state);
  free(state);
}

static uint32_t wanda_needs(void *state) {
  const Wanda *w = state;
  return PRUNUS_NEED_INPUT_SUMSQ | (w->sequential ? PRUNUS_NEED_LAYERWISE : 0u);
}

static uint32_t wanda_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

/* Keep sqrt of the sums of squares of the layers the step carries. */
static int wanda_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Wanda *w = state;
  if (step->kind != PRUNUS_NEED_INPUT_SUMSQ || !step->input_sumsq) {
    w->svc->set_error(w->host,
                      "observe(): expected an input sum-of-squares step (kind %u), found "
                      "kind %u",
                      (unsigned)PRUNUS_NEED_INPUT_SUMSQ, (unsigned)step->kind);
    return -1;
  }
  wanda_drop(w);
  const int nl = model->n_layers;
  w->norm = calloc((size_t)nl, sizeof *w->norm);
  w->fan_in = calloc((size_t)nl, sizeof *w->fan_in);
  if (!w->norm || !w->fan_in) goto out_of_memory;
  w->n_layers = nl;
  for (int l = 0; l < nl; l++) {
    const double *s = step->input_sumsq[l];
    if (!s) continue;
    const int fi = model->layers[l].fan_in;
    w->fan_in[l] = fi;
    if (!(w->norm[l] = malloc((size_t)fi * sizeof(double)))) goto out_of_memory;
    for (int j = 0; j < fi; j++) w->norm[l][j] = sqrt(s[j]);
  }
  return 0;
out_of_memory:
  wanda_drop(w);
  w->svc->set_error(w->host, "out of memory");
  return -1;
}

typedef struct {
  double s;
  int col;
} Cand;

static int cand_cmp(const void *pa, const void *pb) {
  const Cand *a = pa, *b = pb;
  if (a->s != b->s) return a->s < b->s ? -1 : 1;
  return (a->col > b->col) - (a->col < b->col);
}

/* compare = row: the layer's count split over rows by their alive weights, each row
 * losing its lowest-scored; scores encoded so the picked ones come first. */
static int score_rows(Wanda *w, const PrunusModelView *model, int l, const PrunusPlanRequest *req,
                      float *out) {
  const PrunusLayerView *layer = &model->layers[l];
  const size_t total = select_layer_count(model, l, req), all = select_alive(layer);
  Cand *c = malloc((size_t)layer->fan_in * sizeof *c);
  if (!c) {
    w->svc->set_error(w->host, "out of memory scoring layer %s", layer->name);
    return -1;
  }
  size_t before = 0;
  for (int u = 0; u < layer->n_units; u++) {
    const size_t row = (size_t)u * (size_t)layer->fan_in;
    int n = 0;
    for (int j = 0; j < layer->fan_in; j++)
      if (layer->mask[row + j] != 0.0f) c[n++] = (Cand){out[row + j], j};
    const size_t take = select_share(total, before, before + (size_t)n, all);
    before += (size_t)n;
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    for (int t = 0; t < n; t++) out[row + c[t].col] = select_encode(c[t].s, (size_t)t < take);
  }
  free(c);
  return 0;
}

static int wanda_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Wanda *w = state;
  const PrunusPlanRequest *req = w->svc->plan_request(w->host);
  int rc = -1;
  if (w->n_layers != model->n_layers) {
    w->svc->set_error(w->host, "score() before the inputs' sums of squares were observed");
    goto out;
  }
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    if (scores->layer >= 0 && l != scores->layer) continue;
    float *out = scores->weight_scores[l];
    if (!w->norm[l]) continue; /* not prunable: the host gave no inputs, nothing is removed */
    if (w->fan_in[l] != layer->fan_in) {
      w->svc->set_error(w->host, "layer %s changed shape between calibration and score()",
                        layer->name);
      goto out;
    }
    for (int u = 0; u < layer->n_units; u++)
      for (int j = 0; j < layer->fan_in; j++) {
        const size_t i = (size_t)u * (size_t)layer->fan_in + (size_t)j;
        out[i] = (float)(fabs((double)layer->weights[i]) * w->norm[l][j]);
      }
    if (w->compare == WANDA_ROW && req && req->pattern_m == 0) {
      if (req->scope != PRUNUS_SCOPE_LAYER) {
        w->svc->set_error(w->host, "compare = \"row\" needs prune.schedule.scope = \"layer\"");
        goto out;
      }
      if (score_rows(w, model, l, req, out) != 0) goto out;
    }
  }
  rc = 0;
out:
  wanda_drop(w);
  return rc;
}

static const PrunusCriterionOps wanda_ops = {
    .needs = wanda_needs,
    .produces = wanda_produces,
    .observe = wanda_observe,
    .score = wanda_score,
};

static const PrunusPluginDesc wanda_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "wanda",
    .version = "1.0.0",
    .summary = "Wanda: |W_ij| x ||X_j||_2 of the layer's inputs, per layer or per output row",
    .create = wanda_create,
    .destroy = wanda_destroy,
    PRUNUS_PLUGIN_OPS(criterion, wanda_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &wanda_desc : NULL;
}
