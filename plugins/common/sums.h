/* sums.h: header-only running sums for data-driven criteria: per-weight and per-unit
 * accumulators (double) shaped like the model view, made on the first observe()
 * of a pass and dropped by score(), so every round starts fresh even though
 * structured pruning changes the shapes between rounds. Needs only plugin.h. */
#ifndef PRUNUS_PLUGINS_SUMS_H
#define PRUNUS_PLUGINS_SUMS_H

#include <prunus/plugin.h>

#include <stdlib.h>

typedef struct {
  int n_layers;  /* 0 = nothing observed since the last score() */
  int *n_units;  /* [layer] the shape the sums were made for */
  int *fan_in;   /* [layer] */
  double **w;    /* [layer] (n_units, fan_in), when made with_w */
  double **u;    /* [layer] (n_units), when made with_u */
  double *count; /* [layer] a per-layer denominator, the criterion's to use */
  long steps;    /* observe() calls summed */
} Sums;

static inline void sums_clear(Sums *s) {
  for (int l = 0; l < s->n_layers; l++) {
    if (s->w) free(s->w[l]);
    if (s->u) free(s->u[l]);
  }
  free(s->w);
  free(s->u);
  free(s->count);
  free(s->n_units);
  free(s->fan_in);
  *s = (Sums){0};
}

static inline int sums_same_shape(const Sums *s, const PrunusModelView *model) {
  int same = s->n_layers == model->n_layers;
  for (int l = 0; same && l < s->n_layers; l++)
    same = s->n_units[l] == model->layers[l].n_units && s->fan_in[l] == model->layers[l].fan_in;
  return same;
}

/* Make zeroed sums for model (the first step of a pass) or check that model still
 * has their shape. -1 after set_error on failure. */
static inline int sums_begin(Sums *s, const PrunusModelView *model, int with_w, int with_u,
                             PrunusHost *host, const PrunusHostServices *services) {
  const int nl = model->n_layers;
  if (s->n_layers > 0) {
    if (!sums_same_shape(s, model)) {
      services->set_error(host, "the model changed shape during the calibration pass");
      return -1;
    }
    return 0;
  }
  if (nl <= 0) {
    services->set_error(host, "the model has no layer with parameters");
    return -1;
  }
  s->n_layers = nl;
  s->n_units = calloc((size_t)nl, sizeof *s->n_units);
  s->fan_in = calloc((size_t)nl, sizeof *s->fan_in);
  s->count = calloc((size_t)nl, sizeof *s->count);
  s->w = with_w ? calloc((size_t)nl, sizeof *s->w) : NULL;
  s->u = with_u ? calloc((size_t)nl, sizeof *s->u) : NULL;
  int ok = s->n_units && s->fan_in && s->count && (!with_w || s->w) && (!with_u || s->u);
  for (int l = 0; ok && l < nl; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    s->n_units[l] = layer->n_units;
    s->fan_in[l] = layer->fan_in;
    if (with_w)
      ok = (s->w[l] = calloc(layer->n_weights ? layer->n_weights : 1, sizeof(double))) != NULL;
    if (ok && with_u)
      ok = (s->u[l] = calloc(layer->n_units > 0 ? (size_t)layer->n_units : 1, sizeof(double))) !=
           NULL;
  }
  if (!ok) {
    sums_clear(s);
    services->set_error(host, "out of memory for the calibration sums");
    return -1;
  }
  return 0;
}

/* score() with no observed step: a data-driven criterion has nothing to go on. */
static inline int sums_check_observed(const Sums *s, const PrunusModelView *model, PrunusHost *host,
                                      const PrunusHostServices *services) {
  if (s->n_layers == 0 || s->steps == 0) {
    services->set_error(host, "score() before any calibration step was observed");
    return -1;
  }
  if (!sums_same_shape(s, model)) {
    services->set_error(host, "the model changed shape between calibration and score()");
    return -1;
  }
  return 0;
}

/* us[u] = scale * the sum of w over unit u's alive weights (pruned ones do not count). */
static inline void sums_unit_total(const PrunusLayerView *layer, const double *w, double scale,
                                   float *us) {
  for (int u = 0; u < layer->n_units; u++) {
    const size_t row = (size_t)u * (size_t)layer->fan_in;
    double acc = 0.0;
    for (int k = 0; k < layer->fan_in; k++) {
      const size_t i = row + (size_t)k;
      if (layer->mask && layer->mask[i] == 0.0f) continue;
      acc += w[i];
    }
    us[u] = (float)(scale * acc);
  }
}

/* 0 when step is an activations step with a batch (what the activation criteria
 * observe), else -1 after set_error saying what came instead. */
static inline int sums_check_activations(const PrunusCalibStep *step, PrunusHost *host,
                                         const PrunusHostServices *services) {
  if (step->kind == PRUNUS_NEED_ACTIVATIONS && step->activations && step->batch >= 1) return 0;
  services->set_error(host,
                      "observe(): expected an activations step (kind %u), found kind %u, "
                      "batch %d%s",
                      (unsigned)PRUNUS_NEED_ACTIVATIONS, (unsigned)step->kind, step->batch,
                      step->activations ? "" : ", no activations");
  return -1;
}

#endif /* PRUNUS_PLUGINS_SUMS_H */
