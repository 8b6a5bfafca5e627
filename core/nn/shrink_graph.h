/* shrink_graph.h: removing whole channel groups (groups.h) of a graph model, masked (the
 * removed channels output exactly zero) or physically (a smaller model computing what the
 * masked one computes); prunus_model_shrink (shrink.h) hands graphs here. */
#ifndef PRUNUS_SHRINK_GRAPH_H
#define PRUNUS_SHRINK_GRAPH_H

#include "model.h"

G_BEGIN_DECLS

/* (transfer full) prunus_model_shrink for any model (graphs included): remove_units as
 * there (m->n_layers entries, NULL = nothing; each conv2d / dense layer's (out.c), 1 =
 * remove) must remove whole groups (prunus_groups_from_units says why not, naming the
 * group). Each removed group's producers lose their output units (filters / rows and
 * biases), its batchnorm channels go (scale, shift, running statistics), its consumers
 * lose the input channels (a conv2d's cin, a dense layer's columns: H*W per channel
 * after a flatten); add and concat shrink with their inputs. Every parallel slab
 * (params, mask, opt_m, opt_v, the n_extra slabs extra_in -> extra_out, transfer full)
 * moves the same way; grads are zeroed; buffers and training mode are kept. The result
 * computes what prunus_model_mask_units makes m compute. */
PrunusModel *prunus_model_shrink_graph(const PrunusModel *m, const uint8_t *const *remove_units,
                                       const float *const *extra_in, float **extra_out, int n_extra,
                                       GError **error);

/* Mask the groups remove_units removes (checked as above; m unchanged on error): the
 * producers' rows and biases, the batchnorm scales AND shifts (a zero scale alone leaves
 * the shift: the channel would output beta, not 0), the consumers' input columns; then
 * params *= mask. Every activation channel of a removed group is then exactly 0. */
gboolean prunus_model_mask_units(PrunusModel *m, const uint8_t *const *remove_units,
                                 GError **error);

G_END_DECLS

#endif
