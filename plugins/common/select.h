/* select.h: header-only helpers for criteria that pick a layer's removals
 * themselves (wanda per output row, sparsegpt jointly with its weight updates) and
 * hand them to the granularity as scores: how many alive weights a plan request
 * takes from a layer (counted as the weight and nm granularities count), that
 * count split over rows or column blocks, and scores that put the picked weights
 * before every other. Needs only plugin.h (revision 3 for the plan request). */
#ifndef PRUNUS_PLUGINS_SELECT_H
#define PRUNUS_PLUGINS_SELECT_H

#include <prunus/plugin.h>

#include <math.h>
#include <stddef.h>

/* round(x) with the slack the granularities use (0.3 * 5 = 1.4999999... is 2). */
static inline size_t select_round(double x) { return x <= 0.0 ? 0 : (size_t)floor(x + 0.5 + 1e-9); }

static inline size_t select_alive(const PrunusLayerView *l) {
  size_t alive = 0;
  for (size_t i = 0; i < l->n_weights; i++) alive += l->mask[i] != 0.0f;
  return alive;
}

/* The alive weights req takes from layer k: its rate (layer scope: layer_amount;
 * global scope: amount x layer_amount) of its alive weights, within its
 * max_sparsity cap. 0 for a layer that is not prunable. */
static inline size_t select_layer_count(const PrunusModelView *model, int k,
                                        const PrunusPlanRequest *req) {
  const PrunusLayerView *l = &model->layers[k];
  if (!l->prunable) return 0;
  const double rate =
      req->scope == PRUNUS_SCOPE_LAYER ? req->layer_amount[k] : req->amount * req->layer_amount[k];
  const size_t alive = select_alive(l);
  const size_t want = select_round(rate * (double)alive);
  const double min_alive_d = ceil((1.0 - req->max_sparsity[k]) * (double)l->n_weights - 1e-9);
  const size_t min_alive = min_alive_d <= 0.0 ? 0 : (size_t)min_alive_d;
  const size_t cap = alive > min_alive ? alive - min_alive : 0;
  return want < cap ? want : cap;
}

/* The share of `total` removals of a part whose alive weights run from cumulative
 * count `before` to `after` of `all`: consecutive parts' shares add up to total
 * exactly, each within one of total x its fraction. */
static inline size_t select_share(size_t total, size_t before, size_t after, size_t all) {
  if (all == 0) return 0;
  const size_t hi = select_round((double)total * (double)after / (double)all);
  const size_t lo = select_round((double)total * (double)before / (double)all);
  return hi - lo;
}

/* A score that keeps the order of s >= 0 within each class and puts every picked
 * weight first: picked in [0, 1], others in [2, 3]. */
static inline float select_encode(double s, int picked) {
  const double t = s / (1.0 + s);
  return (float)(picked ? t : 2.0 + t);
}

#endif /* PRUNUS_PLUGINS_SELECT_H */
