/* apoz.c: Average Percentage of Zeros (Hu et al. 2016) per neuron / conv channel
 * from the post-ReLU activations of the calibration batches. A unit that is
 * almost always zero does little work: unit score = 1 - APoZ (higher = more
 * important). Setting form = "apoz" | "frequency" (default "apoz"). Units only. */
#include <prunus/plugin.h>

#include "../common/sums.h"

#include <stdlib.h>

// ----------------------------------------------------------------------------
// State and settings

/* The two forms differ only for conv channels, whose unit has Ho*Wo outputs per
 * sample:
 *   apoz:      the fraction of all outputs (over samples and positions) that are
 *              non-zero, i.e. 1 - APoZ as in the paper;
 *   frequency: how often the unit's output is non-zero, counted per sample: the
 *              fraction of samples for which the unit is active, a channel being
 *              active for a sample when any of its positions is > 0.
 * For dense layers (one position) the two coincide. frequency >= 1 - APoZ.
 * "Non-zero" is tested as > 0: after a ReLU the outputs are >= 0, so this is
 * exactly "not zero"; the output layer (no ReLU follows, its raw outputs are
 * handed over) is scored with the same test although it is never removed. */
typedef enum {
  APOZ_FORM_APOZ = 0,
  APOZ_FORM_FREQUENCY = 1,
} ApozForm;

static const char *const apoz_form_names[] = {"apoz", "frequency", NULL};

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  ApozForm form;
  /* u: per unit, the active outputs (apoz) or active samples (frequency);
   * count: per layer, the outputs (samples * positions) or samples seen */
  Sums sums;
} Apoz;

static int apoz_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int form;
  if (services->get_choice(host, "form", apoz_form_names, APOZ_FORM_APOZ, &form) != 0)
    return -1; /* the host recorded the key, the choices and the value found */
  if (form != APOZ_FORM_APOZ && form != APOZ_FORM_FREQUENCY) {
    services->set_error(host, "form: expected \"apoz\" or \"frequency\", found choice index %d",
                        form);
    return -1;
  }
  Apoz *a = calloc(1, sizeof *a);
  if (!a) {
    services->set_error(host, "out of memory");
    return -1;
  }
  a->host = host;
  a->services = services;
  a->form = (ApozForm)form;
  *state = a;
  return 0;
}

static void apoz_destroy(void *state) {
  Apoz *a = state;
  sums_clear(&a->sums);
  free(a);
}

// ----------------------------------------------------------------------------
// Calibration

static uint32_t apoz_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_ACTIVATIONS;
}

static uint32_t apoz_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_UNIT;
}

static int apoz_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Apoz *a = state;
  if (sums_check_activations(step, a->host, a->services) != 0) return -1;
  if (sums_begin(&a->sums, model, 0, 1, a->host, a->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    const int P = layer->positions > 0 ? layer->positions : 1;
    const float *act = step->activations[l]; /* (batch, n_units, positions) */
    double *active = a->sums.u[l];
    for (int b = 0; b < step->batch; b++) {
      for (int u = 0; u < layer->n_units; u++) {
        const float *y = act + ((size_t)b * (size_t)layer->n_units + (size_t)u) * (size_t)P;
        int on = 0;
        for (int p = 0; p < P; p++) on += y[p] > 0.0f;
        active[u] += a->form == APOZ_FORM_APOZ ? (double)on : (double)(on > 0);
      }
    }
    a->sums.count[l] += a->form == APOZ_FORM_APOZ ? (double)step->batch * P : (double)step->batch;
  }
  a->sums.steps++;
  return 0;
}

// ----------------------------------------------------------------------------
// Scoring

static int apoz_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Apoz *a = state;
  if (sums_check_observed(&a->sums, model, a->host, a->services) != 0) return -1;
  for (int l = 0; l < model->n_layers; l++) {
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    for (int u = 0; us && u < model->layers[l].n_units; u++)
      us[u] = (float)(a->sums.u[l][u] / a->sums.count[l]);
  }
  sums_clear(&a->sums);
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps apoz_ops = {
    .needs = apoz_needs,
    .produces = apoz_produces,
    .observe = apoz_observe,
    .score = apoz_score,
};

static const PrunusPluginDesc apoz_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "apoz",
    .version = "1.0.0",
    .summary = "unit score 1 - APoZ: how often a neuron / channel output is non-zero",
    .create = apoz_create,
    .destroy = apoz_destroy,
    .criterion = &apoz_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &apoz_desc : NULL;
}
