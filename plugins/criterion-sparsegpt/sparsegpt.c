/* sparsegpt.c: SparseGPT (Frantar & Alistarh 2023), OBS pruning with weight
 * reconstruction: per layer, from the Gram matrix H = X^T X / rows of its inputs,
 * U = the upper Cholesky factor of (H + damp I)^-1; columns are swept left to
 * right, each pruned weight's error (w - 0) / U_jj spread over the columns after
 * it through row j of U (the OBS update restricted to the weights not yet
 * visited), in lazy blocks of `blocksize` columns. Which weights go is decided at
 * the start of each block by w^2 / U_jj^2 over the block (the layer's count split
 * over blocks), or, under an N:M granularity, per group of M columns as the sweep
 * reaches it. score() makes that choice and hands it to the granularity as scores
 * (picked in [0, 1], others in [2, 3]); update() redoes the sweep for the mask the
 * plan actually applied and writes the surviving weights through set_weights.
 * Settings (prune.criterion): blocksize (default 128), dampening (fraction of the
 * mean diagonal added to it, default 0.01; raised tenfold up to 4 times while H is
 * not positive definite), sequential (default true: layer by layer on the pruned
 * upstream), target:
 *   "original" (the default with sequential, on a host of plugin ABI revision 5 or
 *              later): rebuild the output the layer gave in
 *              the network before this round, X0 W^T, from the inputs X the pruned
 *              upstream now gives it. The sweep starts from the ridge least-squares
 *              weights for that (the host's PRUNUS_NEED_INPUT_CROSS), so each layer
 *              also makes up for what the layers before it lost.
 *   "current"  the paper's: keep the layer's output on its present inputs, X W^T
 *              (the default without sequential, where X0 = X).
 * "original" keeps far more accuracy at high sparsity on deep networks, where the
 * paper's per-layer errors compound (docs/post-training.md has the measurements).
 * Cholesky and inverse come from the host's LAPACK services. */
#include <prunus/plugin.h>

#include "../common/select.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SG_DAMP_TRIES 5

typedef struct {
  int rows, n;     /* n_units and fan_in when observed */
  int64_t samples; /* rows of the calibration pass behind gram */
  double *gram;    /* (n, n) X^T X from observe(), NULL once scored */
  double *cross;   /* (n, n) X^T X0 from observe() (target "original"), NULL once scored */
  double *hinv;    /* (n, n) (H + damp I)^-1 while scoring with cross, else NULL */
  double *u;       /* (n, n) upper Cholesky factor of (H + damp I)^-1, after score() */
  float *w0;       /* (rows, n) the weights score() started from */
  float *w_sel;    /* (rows, n) the sweep's weights for the mask score() picked */
  uint8_t *pruned; /* (rows, n) score()'s mask: 1 = pruned (before or now) */
  uint8_t *dead;   /* (n) inputs that were 0 on every calibration row */
} SgLayer;

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  int blocksize;
  double dampening;
  int sequential;
  int original; /* target = "original" */
  int n_layers;
  SgLayer *layer; /* (n_layers) */
} Sg;

typedef enum { SG_TARGET_CURRENT = 0, SG_TARGET_ORIGINAL = 1 } SgTarget;
static const char *const target_names[] = {"current", "original", NULL};

static void sg_layer_clear(SgLayer *l) {
  free(l->gram), free(l->cross), free(l->hinv), free(l->u);
  free(l->w0), free(l->w_sel), free(l->pruned), free(l->dead);
  memset(l, 0, sizeof *l);
}

static void sg_clear(Sg *s) {
  for (int l = 0; l < s->n_layers; l++) sg_layer_clear(&s->layer[l]);
  free(s->layer);
  s->layer = NULL, s->n_layers = 0;
}

static int sg_create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  if (!PRUNUS_HOST_HAS(svc, spd_inverse) || PRUNUS_HOST_REVISION(svc) < 3) {
    svc->set_error(host,
                   "sparsegpt needs plugin ABI revision 3 (input Gram matrices, set_weights, "
                   "cholesky); this prunus has revision %u",
                   PRUNUS_HOST_REVISION(svc));
    return -1;
  }
  int64_t blocksize;
  double dampening;
  int sequential, target;
  if (svc->get_int_range(host, "blocksize", 128, 1, 1 << 20, &blocksize) != 0 ||
      svc->get_double_range(host, "dampening", 0.01, 0.0, 100.0, &dampening) != 0 ||
      svc->get_bool(host, "sequential", 1, &sequential) != 0 ||
      /* a host older than revision 5 has no cross products: the paper's target there,
       * unless the config asks for "original" (refused below) */
      svc->get_choice(
          host, "target", target_names,
          sequential && PRUNUS_HOST_REVISION(svc) >= 5 ? SG_TARGET_ORIGINAL : SG_TARGET_CURRENT,
          &target) != 0)
    return -1;
  if (target == SG_TARGET_ORIGINAL && PRUNUS_HOST_REVISION(svc) < 5) {
    svc->set_error(host,
                   "target = \"original\" needs the inputs' cross products of plugin ABI "
                   "revision 5 (PRUNUS_NEED_INPUT_CROSS); this prunus has revision %u: set "
                   "target = \"current\"",
                   PRUNUS_HOST_REVISION(svc));
    return -1;
  }
  if (target == SG_TARGET_ORIGINAL && !sequential) {
    svc->set_error(host,
                   "target = \"original\" rebuilds what the layers pruned before a layer "
                   "changed, which needs sequential = true; set it, or target = \"current\"");
    return -1;
  }
  Sg *s = calloc(1, sizeof *s);
  if (!s) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  *s = (Sg){.host = host,
            .svc = svc,
            .blocksize = (int)blocksize,
            .dampening = dampening,
            .sequential = sequential,
            .original = target == SG_TARGET_ORIGINAL};
  *state = s;
  return 0;
}

static void sg_destroy(void *state) {
  sg_clear(state);
  free(state);
}

static uint32_t sg_needs(void *state) {
  const Sg *s = state;
  return PRUNUS_NEED_INPUT_GRAM | (s->sequential ? PRUNUS_NEED_LAYERWISE : 0u) |
         (s->original ? PRUNUS_NEED_INPUT_CROSS : 0u);
}

static uint32_t sg_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

/* Keep the cross products of an INPUT_CROSS step (after its pass's Gram step). */
static int sg_observe_cross(Sg *s, const PrunusModelView *model, const PrunusCalibStep *step) {
  for (int l = 0; l < model->n_layers && l < s->n_layers; l++) {
    if (!step->input_cross[l]) continue;
    SgLayer *sl = &s->layer[l];
    if (!sl->gram || sl->n != model->layers[l].fan_in) {
      s->svc->set_error(s->host,
                        "observe(): layer %s's cross products came without its Gram matrix",
                        model->layers[l].name);
      return -1;
    }
    const size_t nn = (size_t)sl->n * (size_t)sl->n;
    free(sl->cross);
    if (!(sl->cross = malloc(nn * sizeof(double)))) {
      s->svc->set_error(s->host, "out of memory");
      return -1;
    }
    memcpy(sl->cross, step->input_cross[l], nn * sizeof(double));
  }
  return 0;
}

/* Keep the Gram matrices the step carries (every layer, or the layerwise one). */
static int sg_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Sg *s = state;
  if (s->original && step->kind == PRUNUS_NEED_INPUT_CROSS && step->input_cross)
    return sg_observe_cross(s, model, step);
  if (step->kind != PRUNUS_NEED_INPUT_GRAM || !step->input_gram) {
    s->svc->set_error(s->host, "observe(): expected an input Gram step (kind %u), found kind %u",
                      (unsigned)PRUNUS_NEED_INPUT_GRAM, (unsigned)step->kind);
    return -1;
  }
  if (s->n_layers != model->n_layers) {
    sg_clear(s);
    if (!(s->layer = calloc((size_t)model->n_layers, sizeof *s->layer))) goto out_of_memory;
    s->n_layers = model->n_layers;
  }
  for (int l = 0; l < model->n_layers; l++) {
    if (!step->input_gram[l]) continue;
    SgLayer *sl = &s->layer[l];
    sg_layer_clear(sl);
    const PrunusLayerView *v = &model->layers[l];
    sl->rows = v->n_units, sl->n = v->fan_in, sl->samples = step->input_rows[l];
    const size_t nn = (size_t)sl->n * (size_t)sl->n;
    if (!(sl->gram = malloc(nn * sizeof(double)))) goto out_of_memory;
    memcpy(sl->gram, step->input_gram[l], nn * sizeof(double));
  }
  return 0;
out_of_memory:
  sg_clear(s);
  s->svc->set_error(s->host, "out of memory");
  return -1;
}

// ----------------------------------------------------------------------------
// The inverse Hessian's Cholesky factor

/* u = chol((H + damp * mean diag(H) I)^-1) with H = gram / samples; inputs that
 * never fire (H_jj = 0) get H_jj = 1, so their weights decouple. The dampening
 * grows tenfold while H is not positive definite. */
static int sg_factor(Sg *s, const PrunusLayerView *v, SgLayer *sl) {
  const int n = sl->n;
  const size_t nn = (size_t)n * (size_t)n;
  double *h = malloc(nn * sizeof(double));
  if (!h || !(sl->u = malloc(nn * sizeof(double)))) {
    free(h);
    s->svc->set_error(s->host, "out of memory factoring layer %s", v->name);
    return -1;
  }
  const double inv = sl->samples > 0 ? 1.0 / (double)sl->samples : 1.0;
  double mean = 0.0;
  for (size_t i = 0; i < nn; i++) h[i] = sl->gram[i] * inv;
  for (int j = 0; j < n; j++) {
    double *d = &h[(size_t)j * n + j];
    if (*d == 0.0) *d = 1.0;
    mean += *d / n;
  }
  double damp = s->dampening;
  int ok = 0;
  for (int t = 0; t < SG_DAMP_TRIES && !ok; t++) {
    if (t > 0) damp = damp > 0.0 ? damp * 10.0 : 1e-4;
    memcpy(sl->u, h, nn * sizeof(double));
    for (int j = 0; j < n; j++) sl->u[(size_t)j * n + j] += damp * mean;
    ok = isfinite(mean) && s->svc->spd_inverse(s->host, n, sl->u) == 0;
    if (ok && sl->cross) {
      free(sl->hinv);
      if (!(sl->hinv = malloc(nn * sizeof(double)))) {
        free(h);
        s->svc->set_error(s->host, "out of memory factoring layer %s", v->name);
        return -1;
      }
      memcpy(sl->hinv, sl->u, nn * sizeof(double));
    }
    ok = ok && s->svc->cholesky(s->host, n, sl->u) == 0;
    if (ok && t > 0)
      s->svc->log(s->host, PRUNUS_LOG_WARNING,
                  "layer %s: the inputs' Gram matrix is not positive definite with dampening "
                  "%g; used %g",
                  v->name, s->dampening, damp);
  }
  free(h);
  if (!ok) {
    s->svc->set_error(s->host,
                      "layer %s: the Gram matrix of its inputs (%dx%d over %lld rows) is not "
                      "positive definite even with dampening %g x its mean diagonal (%g); check "
                      "the inputs for NaN or infinity, calibrate on more samples "
                      "(calib_batches) or raise prune.criterion.dampening",
                      v->name, n, n, (long long)sl->samples, damp, mean);
    return -1;
  }
  return 0;
}

// ----------------------------------------------------------------------------
// The sweep

typedef struct {
  double s;
  size_t i;
} SgCand;

static int sg_cand_cmp(const void *pa, const void *pb) {
  const SgCand *a = pa, *b = pb;
  if (a->s != b->s) return a->s < b->s ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

/* What the sweep picks when it picks (score()); NULL = the mask is given (update()). */
typedef struct {
  size_t total;     /* new removals of the layer (unstructured) */
  size_t all_alive; /* alive weights of the layer */
  int pn, pm;       /* N:M: keep pn of every pm columns of a row; pm = 0: unstructured */
  double *saliency; /* (rows, n) w^2 / U_jj^2 of each weight picked, when picked */
} SgPick;

/* Prune the group of columns [c0, c0 + size) of row r down to min(pn, size) alive:
 * the lowest w^2 / U_jj^2 of the current weights, already-pruned ones first. */
static void sg_pick_group(int n, const double *W, const double *U, uint8_t *pruned, int r, int c0,
                          int size, SgPick *pick) {
  SgCand c[64];
  int alive = 0, gone = 0;
  for (int j = c0; j < c0 + size; j++) {
    const size_t i = (size_t)r * n + j;
    if (pruned[i]) {
      gone++;
      continue;
    }
    const double d = U[(size_t)j * n + j];
    c[alive++] = (SgCand){W[i] * W[i] / (d * d), i};
  }
  const int keep = size < pick->pn ? size : pick->pn;
  int take = size - keep - gone;
  if (take <= 0) return;
  qsort(c, (size_t)alive, sizeof *c, sg_cand_cmp);
  for (int t = 0; t < take && t < alive; t++) {
    pruned[c[t].i] = 1;
    pick->saliency[c[t].i] = c[t].s;
  }
}

/* Sweep W (rows, n) against U: with pick, choose the removals at each block's start
 * (or each N:M group) into pruned; without, take pruned as given. W ends as the
 * reconstructed weights (0 where pruned). err holds (rows, blocksize). */
static int sg_sweep(Sg *s, int rows, int n, double *W, const double *U, uint8_t *pruned,
                    SgPick *pick, const char *layer_name) {
  const int B = s->blocksize < n ? s->blocksize : n;
  double *err = malloc((size_t)rows * (size_t)B * sizeof(double));
  SgCand *cand = pick && pick->pm == 0 ? malloc((size_t)rows * (size_t)B * sizeof *cand) : NULL;
  if (!err || (pick && pick->pm == 0 && !cand)) {
    free(err), free(cand);
    s->svc->set_error(s->host, "out of memory sweeping layer %s", layer_name);
    return -1;
  }
  size_t alive_before = 0;
  for (int i1 = 0; i1 < n; i1 += B) {
    const int i2 = i1 + B < n ? i1 + B : n, bs = i2 - i1;
    if (pick && pick->pm == 0) { /* the block's share of the layer's count, lowest first */
      size_t k = 0;
      for (int r = 0; r < rows; r++)
        for (int j = i1; j < i2; j++) {
          const size_t i = (size_t)r * n + j;
          if (pruned[i]) continue;
          const double d = U[(size_t)j * n + j];
          cand[k++] = (SgCand){W[i] * W[i] / (d * d), i};
        }
      const size_t take =
          select_share(pick->total, alive_before, alive_before + k, pick->all_alive);
      alive_before += k;
      qsort(cand, k, sizeof *cand, sg_cand_cmp);
      for (size_t t = 0; t < take && t < k; t++) {
        pruned[cand[t].i] = 1;
        pick->saliency[cand[t].i] = cand[t].s;
      }
    }
    for (int j = i1; j < i2; j++) {
      if (pick && pick->pm > 0 && j % pick->pm == 0) {
        const int size = j + pick->pm <= n ? pick->pm : n - j;
        for (int r = 0; r < rows; r++) sg_pick_group(n, W, U, pruned, r, j, size, pick);
      }
      const double *uj = U + (size_t)j * n;
      const double d = uj[j];
      for (int r = 0; r < rows; r++) {
        double *w = W + (size_t)r * n;
        const double e = pruned[(size_t)r * n + j] ? w[j] / d : 0.0;
        err[(size_t)r * B + (j - i1)] = e;
        if (e == 0.0) continue;
        w[j] = 0.0;
        for (int c = j + 1; c < i2; c++) w[c] -= e * uj[c];
      }
    }
    /* the block's errors reach the columns after it at once (the lazy update) */
    for (int r = 0; r < rows; r++) {
      double *w = W + (size_t)r * n;
      for (int t = 0; t < bs; t++) {
        const double e = err[(size_t)r * B + t];
        if (e == 0.0) continue;
        const double *ut = U + (size_t)(i1 + t) * n;
        for (int c = i2; c < n; c++) w[c] -= e * ut[c];
      }
    }
  }
  free(cand);
  free(err);
  return 0;
}

// ----------------------------------------------------------------------------
// target = "original": the sweep's starting weights

/* W (rows, n) <- W C^T (H + damp I)^-1 / samples, C = X^T X0 (cross): the ridge
 * least-squares weights that best give the original output X0 W^T from the present
 * inputs X, with the dampening the sweep uses. (Damping only the change, W + W (C -
 * G)^T (H + damp I)^-1, which leaves W as it is when X0 = X, measured worse on the
 * validation split: docs/post-training.md.) Both products run row by row as sums of
 * scaled rows (axpy form), so the inner loops are contiguous. */
static int sg_original_weights(Sg *s, const PrunusLayerView *v, SgLayer *sl, double *W) {
  const int rows = sl->rows, n = sl->n;
  const double inv = sl->samples > 0 ? 1.0 / (double)sl->samples : 1.0;
  double *ct = malloc((size_t)n * n * sizeof(double)), *t = malloc((size_t)n * sizeof(double));
  if (!ct || !t) {
    free(ct), free(t);
    s->svc->set_error(s->host, "out of memory scoring layer %s", v->name);
    return -1;
  }
  for (int i = 0; i < n; i++) /* ct = C^T / samples */
    for (int j = 0; j < n; j++) ct[(size_t)i * n + j] = sl->cross[(size_t)j * n + i] * inv;
  for (int r = 0; r < rows; r++) {
    double *w = W + (size_t)r * n;
    memset(t, 0, (size_t)n * sizeof(double)); /* t = w C^T */
    for (int i = 0; i < n; i++) {
      const double wi = w[i];
      if (wi == 0.0) continue;
      const double *ci = ct + (size_t)i * n;
      for (int j = 0; j < n; j++) t[j] += wi * ci[j];
    }
    memset(w, 0, (size_t)n * sizeof(double));
    for (int j = 0; j < n; j++) { /* w = t (H + damp I)^-1 */
      const double tj = t[j];
      if (tj == 0.0) continue;
      const double *hj = sl->hinv + (size_t)j * n;
      for (int k = 0; k < n; k++) w[k] += tj * hj[k];
    }
  }
  free(ct), free(t);
  return 0;
}

// ----------------------------------------------------------------------------
// score() and update()

static int sg_score_layer(Sg *s, const PrunusModelView *model, int l, const PrunusPlanRequest *req,
                          float *out) {
  const PrunusLayerView *v = &model->layers[l];
  SgLayer *sl = &s->layer[l];
  if (sl->rows != v->n_units || sl->n != v->fan_in) {
    s->svc->set_error(s->host, "layer %s changed shape between calibration and score()", v->name);
    return -1;
  }
  if (sg_factor(s, v, sl) != 0) return -1;
  const int rows = sl->rows, n = sl->n;
  const size_t nw = (size_t)rows * n;
  double *W = malloc(nw * sizeof(double)), *sal = calloc(nw, sizeof(double));
  sl->w0 = malloc(nw * sizeof(float));
  sl->w_sel = malloc(nw * sizeof(float));
  sl->pruned = malloc(nw);
  sl->dead = malloc((size_t)n);
  if (!W || !sal || !sl->w0 || !sl->w_sel || !sl->pruned || !sl->dead) {
    free(W), free(sal);
    s->svc->set_error(s->host, "out of memory scoring layer %s", v->name);
    return -1;
  }
  for (size_t i = 0; i < nw; i++) {
    W[i] = v->weights[i];
    sl->pruned[i] = v->mask[i] == 0.0f;
  }
  /* target "original": start from the weights that rebuild the unpruned output; the
   * sweep then prunes them as it would the layer's own (pruned ones included: their
   * least-squares values are removed with the OBS update like any other) */
  if (sl->cross && sg_original_weights(s, v, sl, W) != 0) {
    free(W), free(sal);
    return -1;
  }
  for (size_t i = 0; i < nw; i++) sl->w0[i] = (float)W[i];
  /* inputs that never fire: their weights go to 0, as in the paper's code (they
   * change nothing the calibration saw, and rank first for removal) */
  for (int j = 0; j < n; j++) {
    sl->dead[j] = sl->gram[(size_t)j * n + j] == 0.0;
    if (sl->dead[j])
      for (int r = 0; r < rows; r++) W[(size_t)r * n + j] = 0.0;
  }
  SgPick pick = {.total = select_layer_count(model, l, req),
                 .all_alive = select_alive(v),
                 .pn = req->pattern_n,
                 .pm = req->pattern_m,
                 .saliency = sal};
  if (pick.pm > 64) {
    free(W), free(sal);
    s->svc->set_error(s->host, "the granularity's pattern %d:%d has groups over 64 columns",
                      pick.pn, pick.pm);
    return -1;
  }
  int rc = sg_sweep(s, rows, n, W, sl->u, sl->pruned, &pick, v->name);
  for (size_t i = 0; rc == 0 && i < nw; i++) {
    sl->w_sel[i] = (float)W[i];
    const double d = sl->u[(i % n) * n + i % n];
    if (v->mask[i] == 0.0f)
      out[i] = 0.0f; /* pruned before: ignored by the host */
    else if (sl->pruned[i])
      out[i] = select_encode(sal[i], 1);
    else
      out[i] = select_encode(W[i] * W[i] / (d * d), 0);
  }
  free(W), free(sal);
  free(sl->gram), sl->gram = NULL;
  free(sl->cross), sl->cross = NULL;
  free(sl->hinv), sl->hinv = NULL;
  return rc;
}

static int sg_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Sg *s = state;
  const PrunusPlanRequest *req = s->svc->plan_request(s->host);
  if (!req) {
    s->svc->set_error(s->host, "the host gave no plan request");
    return -1;
  }
  for (int l = 0; l < model->n_layers; l++) {
    if (scores->layer >= 0 && l != scores->layer) continue;
    if (l >= s->n_layers || !s->layer[l].gram) continue; /* not prunable: no inputs, no plan */
    if (sg_score_layer(s, model, l, req, scores->weight_scores[l]) != 0) return -1;
  }
  return 0;
}

/* The plan is applied: reconstruct for its mask (score()'s sweep when the plan took
 * exactly what score() picked) and write the surviving weights. */
static int sg_update(void *state, const PrunusModelView *model, int l) {
  Sg *s = state;
  const PrunusLayerView *v = &model->layers[l];
  if (l >= s->n_layers || !s->layer[l].u || !s->layer[l].w0) return 0; /* nothing scored */
  SgLayer *sl = &s->layer[l];
  if (sl->rows != v->n_units || sl->n != v->fan_in) {
    s->svc->set_error(s->host,
                      "layer %s is %dx%d after the plan, %dx%d when scored: sparsegpt rewrites "
                      "weights and needs a weight-level granularity (weight, nm), not one that "
                      "removes units",
                      v->name, v->n_units, v->fan_in, sl->rows, sl->n);
    return -1;
  }
  const size_t nw = (size_t)sl->rows * sl->n;
  int same = 1;
  for (size_t i = 0; same && i < nw; i++) same = sl->pruned[i] == (v->mask[i] == 0.0f);
  int rc = 0;
  if (same) {
    rc = s->svc->set_weights(s->host, l, sl->w_sel);
  } else {
    double *W = malloc(nw * sizeof(double));
    float *wf = malloc(nw * sizeof(float));
    if (!W || !wf) {
      free(W), free(wf);
      s->svc->set_error(s->host, "out of memory updating layer %s", v->name);
      sg_layer_clear(sl);
      return -1;
    }
    for (size_t i = 0; i < nw; i++) {
      W[i] = sl->dead[i % sl->n] ? 0.0 : sl->w0[i];
      sl->pruned[i] = v->mask[i] == 0.0f;
    }
    rc = sg_sweep(s, sl->rows, sl->n, W, sl->u, sl->pruned, NULL, v->name);
    for (size_t i = 0; i < nw; i++) wf[i] = (float)W[i];
    if (rc == 0) rc = s->svc->set_weights(s->host, l, wf);
    free(W), free(wf);
  }
  sg_layer_clear(sl);
  return rc;
}

/* Before any data (revision 6 hosts): a granularity whose plans keep every shape, and
 * a pattern the sweep's 64-column groups hold. */
static int sg_check(void *state, const PrunusModelView *model, const PrunusCheckInfo *info) {
  const Sg *s = state;
  (void)model;
  if (info->accepts & (PRUNUS_SCORES_UNIT | PRUNUS_SCORES_GROUP)) {
    s->svc->set_error(s->host,
                      "prune.granularity '%s' removes whole units, but sparsegpt rewrites the "
                      "surviving weights of a layer whose shape stays as scored: choose a "
                      "weight-level granularity (weight, nm)",
                      info->granularity);
    return -1;
  }
  if (info->pattern_m > 64) {
    s->svc->set_error(s->host,
                      "prune.granularity '%s' has the pattern %d:%d, whose groups are over 64 "
                      "columns; sparsegpt takes M <= 64",
                      info->granularity, info->pattern_n, info->pattern_m);
    return -1;
  }
  return 0;
}

static const PrunusCriterionOps sg_ops = {
    .needs = sg_needs,
    .produces = sg_produces,
    .observe = sg_observe,
    .score = sg_score,
    .update = sg_update,
    .check = sg_check,
};

static const PrunusPluginDesc sg_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "sparsegpt",
    /* 1.1.0: target "original", the default when sequential; 1.2.0: check() */
    .version = "1.2.0",
    .summary =
        "SparseGPT: OBS mask selection and weight reconstruction from input Gram "
        "matrices, toward the unpruned network's output (target)",
    .create = sg_create,
    .destroy = sg_destroy,
    PRUNUS_PLUGIN_OPS(criterion, sg_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &sg_desc : NULL;
}
