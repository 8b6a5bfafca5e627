/* groups.h: channel dependency groups of a model's graph (Torch-Pruning's DepGraph idea):
 * which output units of which conv2d / dense layers must be removed together because
 * add, concat, batchnorm, the pass-through layers and flatten tie their channels, with the
 * batchnorm channels and the consumers' input channels that go with them. */
#ifndef PRUNUS_GROUPS_H
#define PRUNUS_GROUPS_H

#include "model.h"

G_BEGIN_DECLS

/* One member of a group: a channel of one layer. */
typedef struct {
  int layer;   /* model layer index */
  int channel; /* producer and batchnorm: an output channel; consumer: the first input
                * channel (index into the layer's input: cin of a conv2d, a feature of a
                * dense layer) */
  int width;   /* consumer: input channels that go (H*W after a flatten of an HxW map,
                * else 1); producer and batchnorm: 1 */
} PrunusGroupMember;

/* A group: removing it zeroes (masked) or drops (shrunk) every member at once. */
typedef struct {
  int n_producers;
  PrunusGroupMember *producers; /* (n_producers) conv2d / dense output units, in model
                                 * order then by channel */
  int n_norms;
  PrunusGroupMember *norms; /* (n_norms) batchnorm channels (scale and shift go) */
  int n_consumers;
  PrunusGroupMember *consumers; /* (n_consumers) conv2d / dense input channels (their
                                 * weight columns go) */
} PrunusGroup;

typedef struct {
  int n_groups;
  PrunusGroup *groups; /* (n_groups) ordered by their first producer (model order, then
                        * channel) */
  int n_slots;         /* m->n_layers + 1: slot 0 the input, slot i + 1 layer i's output */
  size_t *slot_base;   /* (n_slots + 1) first element of each slot in slot_group */
  int *slot_group;     /* (slot_base[n_slots]) the group of each channel of each activation
                        * (feature, after a flatten); -1 = in no group: tied to the network's
                        * input or to its output (the last layer's), never removable */
} PrunusGroups;

/* (transfer full) The groups of m. Channels tied to the network input or to its output
 * (the class outputs) are in no group. A sequence gets one group per hidden unit. */
PrunusGroups *prunus_groups_build(const PrunusModel *m);
void prunus_groups_free(PrunusGroups *g);

/* The group of output unit u of model layer i (-1: none), for conv2d / dense layers. */
static inline int prunus_groups_unit(const PrunusGroups *g, int i, int u) {
  return g->slot_group[g->slot_base[i + 1] + (size_t)u];
}

/* "group 3: out conv1[3] layer1.0.conv2[3]; bn bn1[3] ...; in layer1.0.conv1[3] ..." */
char *prunus_groups_describe_one(const PrunusGroups *g, const PrunusModel *m, int group);

/* The groups a per-layer unit removal amounts to. remove_units: m->n_layers entries (NULL =
 * nothing of that layer; non-NULL only for conv2d / dense layers), each (out.c), 1 =
 * remove. remove_group (g->n_groups) gets 1 for each group removed. FALSE and an error
 * (PRUNUS_ERROR_INVALID) naming the group when the removal splits a group (removes some of
 * its units and keeps others), removes a unit in no group (tied to the network's input or
 * output), removes every unit of a layer, or names a layer without units. */
gboolean prunus_groups_from_units(const PrunusGroups *g, const PrunusModel *m,
                                  const uint8_t *const *remove_units, uint8_t *remove_group,
                                  GError **error);

G_END_DECLS

#endif
