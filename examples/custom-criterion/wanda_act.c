/* wanda_act.c: an example criterion plugin with observe(), written outside prunus.
 * Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large
 * Language Models"): score(w_ij) = |w_ij| * RMS of input j over calibration samples,
 * so a small weight on a loud input outranks a larger one on a silent input.
 *
 * Input j of a layer is an output of the layer with parameters before it (after
 * its ReLU), which the host hands over as PRUNUS_NEED_ACTIVATIONS. Where the
 * shapes match one to one (dense after dense, dense after flatten) j gets its own
 * RMS; where the previous layer's units split fan_in into equal blocks (conv after
 * conv, dense after flatten after pooling) each block gets its channel's RMS over
 * all positions. The first layer reads the network input, which activations do
 * not carry: its scores are |w|. No settings. Rank per layer (schedule.scope =
 * "layer"): scores of different layers are on different scales. It runs on a host
 * of any revision; from revision 3 on, a criterion can ask for every layer's input
 * itself (PRUNUS_NEED_INPUT_SUMSQ), as the shipped `wanda` plugin does.
 */
#include <prunus/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  /* Accumulated over one round's calibration pass, freed by score(): the next
   * round's model may have fewer units (a structured granularity shrinks it). */
  int n_layers;
  double **sumsq; /* [layer] (n_units * positions) sum over samples of activation^2 */
  long samples;
  int told_first_layer;
} Wanda;

static int create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  Wanda *s = calloc(1, sizeof *s);
  if (!s) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  s->host = host;
  s->svc = svc;
  *state = s;
  return 0;
}

static void free_sums(Wanda *s) {
  for (int k = 0; s->sumsq && k < s->n_layers; k++) free(s->sumsq[k]);
  free(s->sumsq);
  s->sumsq = NULL;
  s->n_layers = 0;
  s->samples = 0;
}

static void destroy(void *state) {
  free_sums(state);
  free(state);
}

static uint32_t needs(void *state) {
  (void)state;
  return PRUNUS_NEED_ACTIVATIONS;
}

static uint32_t produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

/* One calibration batch: step->activations[k] is (batch, n_units, positions). */
static int observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Wanda *s = state;
  if (step->kind != PRUNUS_NEED_ACTIVATIONS) return 0; /* asked for nothing else */
  if (!s->sumsq) { /* the first batch of this round: size by the model as it is now */
    s->sumsq = calloc((size_t)model->n_layers, sizeof *s->sumsq);
    if (!s->sumsq) goto out_of_memory;
    s->n_layers = model->n_layers;
    for (int k = 0; k < model->n_layers; k++) {
      const PrunusLayerView *l = &model->layers[k];
      s->sumsq[k] = calloc((size_t)l->n_units * (size_t)l->positions, sizeof **s->sumsq);
      if (!s->sumsq[k]) goto out_of_memory;
    }
  }
  for (int k = 0; k < model->n_layers; k++) {
    const PrunusLayerView *l = &model->layers[k];
    const size_t per_sample = (size_t)l->n_units * (size_t)l->positions;
    const float *a = step->activations[k];
    for (int b = 0; b < step->batch; b++)
      for (size_t i = 0; i < per_sample; i++) {
        const double v = a[(size_t)b * per_sample + i];
        s->sumsq[k][i] += v * v;
      }
  }
  s->samples += step->batch;
  return 0;

out_of_memory:
  free_sums(s);
  s->svc->set_error(s->host, "out of memory holding activation sums of %d layers", model->n_layers);
  return -1;
}

/* RMS of input j of layer k (see the top of the file for the mapping). */
static double input_rms(const Wanda *s, const PrunusModelView *model, int k, int j) {
  if (k == 0) return 1.0;
  const PrunusLayerView *l = &model->layers[k], *prev = &model->layers[k - 1];
  const int P = prev->positions;
  if (l->fan_in == prev->n_units * P) return sqrt(s->sumsq[k - 1][j] / (double)s->samples);
  const int per = l->fan_in / prev->n_units; /* inputs per channel of prev */
  const int c = j / per;
  double sum = 0.0;
  for (int p = 0; p < P; p++) sum += s->sumsq[k - 1][(size_t)c * (size_t)P + (size_t)p];
  return sqrt(sum / ((double)s->samples * P));
}

/* With PRUNUS_DEBUG set: the layer's input RMS values, exact (%.17g), on one line. */
static void log_rms(const Wanda *s, const PrunusLayerView *l, const double *rms) {
  const size_t cap = (size_t)l->fan_in * 26 + 1;
  char *line = malloc(cap);
  if (!line) return; /* a debug line is not worth failing the round for */
  size_t used = 0;
  for (int j = 0; j < l->fan_in && used < cap; j++)
    used += (size_t)snprintf(line + used, cap - used, "%s%.17g", j ? " " : "", rms[j]);
  s->svc->log(s->host, PRUNUS_LOG_DEBUG, "layer %s input rms: %s", l->name, line);
  free(line);
}

static int score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Wanda *s = state;
  if (!s->sumsq || s->samples == 0 || s->n_layers != model->n_layers) {
    s->svc->set_error(s->host, "score() without a calibration pass over this model");
    return -1;
  }
  for (int k = 1; k < model->n_layers; k++) {
    const PrunusLayerView *l = &model->layers[k], *prev = &model->layers[k - 1];
    if (l->fan_in % prev->n_units != 0) {
      s->svc->set_error(s->host,
                        "layer %s: fan_in %d is not a multiple of the %d units of "
                        "layer %s before it; cannot tell which input is which",
                        l->name, l->fan_in, prev->n_units, prev->name);
      free_sums(s);
      return -1;
    }
  }
  if (!s->told_first_layer && model->n_layers > 0) {
    s->svc->log(s->host, PRUNUS_LOG_INFO,
                "layer %s reads the network input, which plugins do "
                "not see: its scores are |w|",
                model->layers[0].name);
    s->told_first_layer = 1;
  }
  double *rms = NULL;
  for (int k = 0; k < model->n_layers; k++) {
    const PrunusLayerView *l = &model->layers[k];
    double *grown = realloc(rms, (size_t)l->fan_in * sizeof *rms);
    if (!grown) {
      free(rms);
      free_sums(s);
      s->svc->set_error(s->host, "out of memory scoring layer %s", l->name);
      return -1;
    }
    rms = grown;
    for (int j = 0; j < l->fan_in; j++) rms[j] = input_rms(s, model, k, j);
    if (k > 0) log_rms(s, l, rms);
    for (int u = 0; u < l->n_units; u++)
      for (int j = 0; j < l->fan_in; j++) {
        const size_t i = (size_t)u * (size_t)l->fan_in + (size_t)j;
        scores->weight_scores[k][i] = (float)(fabs(l->weights[i]) * rms[j]);
      }
  }
  free(rms);
  free_sums(s); /* the next round starts from zero, at the shapes it has then */
  return 0;
}

static const PrunusCriterionOps ops = {
    .needs = needs,
    .produces = produces,
    .observe = observe,
    .score = score,
};

static const PrunusPluginDesc desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "wanda-act",
    .version = "1.0.0",
    .summary = "Wanda from activations: |w| times the RMS of its input (an example)",
    .create = create,
    .destroy = destroy,
    PRUNUS_PLUGIN_OPS(criterion, ops), /* sets ops_size too */
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &desc : NULL;
}
