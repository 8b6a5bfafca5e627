/* channel.c: structured granularity for convolutions. Removes whole output
 * channels (filters) of the prunable conv2d layers, lowest-scored first; dense
 * layers are never touched. The host then drops each filter, its bias and the
 * next layer's input channel (or, after flatten, its block of columns), so the
 * convolutions really shrink. On a graph it removes whole channel groups of conv2d
 * layers (the channels an add or concat ties together go together). Settings as
 * `neuron`: aggregate, normalize, group_aggregate, round_to; the ranking is
 * ../common/rank.h. */
#include <prunus/plugin.h>

#include "../common/rank.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// State and settings

typedef struct {
  RankCtx rank; /* aggregate, normalize; only conv2d layers are eligible */
} ChannelGran;

static int channel_is_conv(const PrunusLayerView *layer) {
  return layer->type && strcmp(layer->type, "conv2d") == 0;
}

static int channel_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  RankCtx rank;
  if (rank_read_settings(&rank, host, services) != 0) return -1;
  rank.eligible = channel_is_conv;
  ChannelGran *g = malloc(sizeof *g);
  if (!g) {
    services->set_error(host, "out of memory");
    return -1;
  }
  g->rank = rank;
  *state = g;
  return 0;
}

static void channel_destroy(void *state) { free(state); }

static uint32_t channel_accepts(void *state) {
  const ChannelGran *g = state;
  return rank_accepts(&g->rank);
}

// ----------------------------------------------------------------------------
// The plan

/* 0 when the model has a prunable conv2d layer, else -1 after set_error. */
static int channel_model_ok(const ChannelGran *g, const PrunusModelView *model) {
  int n_conv = 0, n_prunable = 0;
  for (int l = 0; l < model->n_layers; l++) {
    const PrunusLayerView *layer = &model->layers[l];
    if (!channel_is_conv(layer) || layer->is_output) continue;
    n_conv++;
    n_prunable += layer->prunable != 0;
  }
  if (n_conv == 0) {
    g->rank.services->set_error(g->rank.host,
                                "no conv2d layer to prune: the model has none "
                                "(granularity \"neuron\" prunes dense layers)");
    return -1;
  }
  if (n_prunable == 0) {
    g->rank.services->set_error(g->rank.host,
                                "no conv2d layer to prune: prune.layers "
                                "excludes all %d of them",
                                n_conv);
    return -1;
  }
  return 0;
}

/* Before any data (revision 6 hosts): the model has something to prune. */
static int channel_check(void *state, const PrunusModelView *model, const PrunusCheckInfo *info) {
  (void)info;
  return channel_model_ok(state, model);
}

/* Same semantics as `neuron` restricted to conv2d layers: global scope ranks the
 * channels of all prunable conv layers together (each layer's scores divided by
 * its mean when normalize is on), layer scope ranks each conv layer alone;
 * max_sparsity caps each layer; a plan that would empty a layer is refused.
 * A host older than revision 6 never calls check(), so the plan checks the model
 * again. */
static int channel_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                        const PrunusPlanRequest *req, PrunusPlan *plan) {
  const ChannelGran *g = state;
  if (channel_model_ok(g, model) != 0) return -1;
  if (rank_use_groups(&g->rank, model, scores))
    return rank_plan_groups(&g->rank, model, scores, req, plan);
  return rank_plan_units(&g->rank, model, scores, req, plan);
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusGranularityOps channel_ops = {
    .accepts = channel_accepts,
    .plan = channel_plan,
    .check = channel_check,
};

static const PrunusPluginDesc channel_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_GRANULARITY,
    .name = "channel",
    .version = "1.2.0",
    .summary =
        "structured: remove whole conv2d output channels (filters, or coupled channel "
        "groups in graphs); dense layers untouched",
    .create = channel_create,
    .destroy = channel_destroy,
    PRUNUS_PLUGIN_OPS(granularity, channel_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &channel_desc : NULL;
}
