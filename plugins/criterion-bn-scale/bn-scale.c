/* bn-scale.c: network slimming (Liu et al. 2017): a conv channel's (or dense unit's)
 * score is |gamma|, the scale of the batchnorm that normalises it, which an L1 penalty
 * during training (train.bn_l1) drives towards 0 for channels the network can lose.
 * Needs only the model view; plugin ABI revision 4 (batchnorm parameters in the view).
 * A prunable hidden layer with no batchnorm after it is an error naming the layer. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
} BnScale;

static int bn_scale_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  if (PRUNUS_HOST_REVISION(services) < 4) {
    services->set_error(host,
                        "needs the batchnorm parameters of the model view (plugin ABI revision "
                        "4); this prunus has revision %u",
                        (unsigned)PRUNUS_HOST_REVISION(services));
    return -1;
  }
  BnScale *b = malloc(sizeof *b);
  if (!b) {
    services->set_error(host, "out of memory");
    return -1;
  }
  b->host = host;
  b->services = services;
  *state = b;
  return 0;
}

static void bn_scale_destroy(void *state) { free(state); }

// ----------------------------------------------------------------------------
// Scoring

static uint32_t bn_scale_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_WEIGHTS;
}

static uint32_t bn_scale_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_UNIT;
}

/* 0 when layer l has a batchnorm after it or is not scored (excluded or the output
 * layer), else -1 after set_error naming it. */
static int bn_scale_layer_ok(const BnScale *b, const PrunusModelView *model, int l) {
  const PrunusLayerView *layer = &model->layers[l];
  if (model->layer_norm_node[l] >= 0 || !layer->prunable || layer->is_output) return 0;
  b->services->set_error(b->host,
                         "layer %s (%s) has no batchnorm after it, and bn-scale scores a unit "
                         "by the |scale| of the batchnorm that normalises it; exclude the "
                         "layer with prune.layers or choose another criterion",
                         layer->name, layer->type);
  return -1;
}

/* Before any data (revision 6 hosts): every scored layer has its batchnorm. */
static int bn_scale_check(void *state, const PrunusModelView *model, const PrunusCheckInfo *info) {
  (void)info;
  for (int l = 0; l < model->n_layers; l++)
    if (bn_scale_layer_ok(state, model, l) != 0) return -1;
  return 0;
}

/* Unit u of layer l: |gamma_u| of the batchnorm reading l. The output layer and layers
 * excluded from pruning score 0 (the host ignores them). */
static int bn_scale_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  const BnScale *b = state;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    float *us = scores->unit_scores ? scores->unit_scores[l] : NULL;
    if (!us) continue;
    if (bn_scale_layer_ok(b, model, l) != 0) return -1;
    const int node = model->layer_norm_node[l];
    if (node < 0) {
      for (int u = 0; u < layer->n_units; u++) us[u] = 0.0f;
      continue;
    }
    const float *gamma = model->node_norm_scale[node];
    for (int u = 0; u < layer->n_units; u++) us[u] = fabsf(gamma[u]);
  }
  return 0;
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusCriterionOps bn_scale_ops = {
    .needs = bn_scale_needs,
    .produces = bn_scale_produces,
    .observe = NULL,
    .score = bn_scale_score,
    .check = bn_scale_check,
};

static const PrunusPluginDesc bn_scale_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_CRITERION,
    .name = "bn-scale",
    .version = "1.1.0",
    .summary = "unit score: |gamma| of the batchnorm after a conv/dense unit (network slimming)",
    .create = bn_scale_create,
    .destroy = bn_scale_destroy,
    PRUNUS_PLUGIN_OPS(criterion, bn_scale_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &bn_scale_desc : NULL;
}
