/* neuron.c: structured granularity. Removes whole units (dense neurons, conv
 * channels) of the hidden layers, lowest-scored first, so the matrices really
 * shrink; on a graph, whole channel groups (units tied by add / concat go together).
 * Settings: aggregate = "l1" | "l2" (default "l2"), normalize (default true),
 * group_aggregate = "sum" | "mean" | "max" (default "mean"), round_to (default 1: each
 * layer, or family of tied groups, that loses units keeps a multiple of it). The ranking itself
 * (caps, scopes, chunks, refusing to empty a layer) is ../common/rank.h. */
#include <prunus/plugin.h>

#include "../common/rank.h"

#include <stdlib.h>

// ----------------------------------------------------------------------------
// State and settings

typedef struct {
  RankCtx rank; /* aggregate, normalize; every hidden layer is eligible */
} NeuronGran;

static int neuron_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  RankCtx rank;
  if (rank_read_settings(&rank, host, services) != 0) return -1;
  NeuronGran *g = malloc(sizeof *g);
  if (!g) {
    services->set_error(host, "out of memory");
    return -1;
  }
  g->rank = rank;
  *state = g;
  return 0;
}

static void neuron_destroy(void *state) { free(state); }

static uint32_t neuron_accepts(void *state) {
  const NeuronGran *g = state;
  return rank_accepts(&g->rank);
}

// ----------------------------------------------------------------------------
// The plan: see rank_plan_units for the semantics of scope, rates and caps on
// sequences, rank_plan_groups for graphs (whole channel groups).

static int neuron_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                       const PrunusPlanRequest *req, PrunusPlan *plan) {
  const NeuronGran *g = state;
  if (rank_use_groups(&g->rank, model, scores))
    return rank_plan_groups(&g->rank, model, scores, req, plan);
  return rank_plan_units(&g->rank, model, scores, req, plan);
}

// ----------------------------------------------------------------------------
// Descriptor

static const PrunusGranularityOps neuron_ops = {
    .accepts = neuron_accepts,
    .plan = neuron_plan,
};

static const PrunusPluginDesc neuron_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_GRANULARITY,
    .name = "neuron",
    .version = "1.1.0",
    .summary = "structured: remove whole hidden neurons / conv channels (matrices shrink)",
    .create = neuron_create,
    .destroy = neuron_destroy,
    .granularity = &neuron_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &neuron_desc : NULL;
}
