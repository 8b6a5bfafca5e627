/* shrink.h: structured (physical) removal of whole units (dense neurons, conv output
 * channels) from a model, keeping the next layer's inputs and every parallel slab
 * (params, mask, optimizer state, extra snapshots such as θ0) in step; and the
 * inference copies: dead units removed, batchnorm folded away. */
#ifndef PRUNUS_SHRINK_H
#define PRUNUS_SHRINK_H

#include "model.h"

G_BEGIN_DECLS

/* (transfer full) A new model in which, for each layer i with remove_units[i] != NULL
 * (an array of layer i's output units: neurons of a dense layer, output channels of a
 * conv2d layer; 1 = remove), those units are physically gone: their weight rows /
 * filters and biases are dropped, the spec's units/channels shrink, and the next layer
 * with parameters loses the matching inputs: for dense->(relu)->dense the columns;
 * for conv->(relu/maxpool)->conv the input channel (cin) of every filter; for
 * conv->(relu/maxpool)->flatten->dense the block of H*W columns of that channel.
 * remove_units has m->n_layers entries indexed by layer index (NULL = nothing removed;
 * remove_units itself may be NULL: a plain copy).
 * Everything in the parallel slabs moves the same way: params, mask, opt_m, opt_v
 * (grads are zeroed). n_extra further slabs laid out like m->params (e.g. the
 * initial weights θ0 used for lottery-ticket rewinding) are shrunk the same way:
 * extra_out[j] receives a newly g_malloc'd slab laid out like the new model
 * (transfer full, free with g_free); on error extra_out is left untouched.
 * The removed units' biases are dropped, not folded into the next layer: the result
 * computes what m computes with those rows and biases zeroed.
 * A batchnorm after a layer loses the same channels (scale, shift, running statistics).
 * Errors (PRUNUS_ERROR_INVALID): removing units of the last layer (the class outputs),
 * removing every unit of a layer, a layer type between the two param layers that
 * mixes channels, an array for a layer without weights — each naming the layer. A graph
 * model (not a sequence) goes to prunus_model_shrink_graph (shrink_graph.h): whole channel
 * groups only. With nothing removed any model is copied, buffers and training mode
 * included. */
PrunusModel *prunus_model_shrink(const PrunusModel *m, const uint8_t *const *remove_units,
                                 const float *const *extra_in, float **extra_out, int n_extra,
                                 GError **error);

/* (transfer full) m with masks applied and every dead unit (all its weights masked)
 * removed, computing what m computes: the constant a dead unit still outputs is
 * folded into the next dense layer's bias, or the unit is kept when it cannot be.
 * A graph loses the channel groups (groups.h) whose every member outputs exactly 0:
 * producers' weights and biases, batchnorm scales and shifts all 0 (what
 * prunus_model_mask_units leaves). A plain copy when nothing can be removed (e.g. a
 * whole layer is dead). */
PrunusModel *prunus_model_shrink_dead(const PrunusModel *m, GError **error);

/* (transfer full) m for inference: computing, up to rounding, what m computes in
 * evaluation mode, with each batchnorm that alone reads its conv2d or dense layer
 * folded into it (per output channel, with a = gamma / sqrt(running_var + eps):
 * W' = W a, b' = (b - running_mean) a + beta) and every conv given a bias (zero where
 * it had none). A batchnorm whose layer has other readers too stays (evaluation mode:
 * a per-channel affine map). Masks, names, inputs (renumbered) and input shape are
 * kept; so a sequence with batchnorm becomes a plain sequence (prunus_model_check_plain
 * with foldable = FALSE passes), a graph stays a graph. Errors only where the folded
 * model cannot be built, prefixed with `who`. */
PrunusModel *prunus_model_to_plain(const PrunusModel *m, const char *who, GError **error);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: nothing in core/ outside shrink.c calls these */

/* Units of each layer that are entirely masked (every weight of the row/filter is 0 in
 * the mask): remove_out[i] allocated (g_new0, n units, transfer full) for layers with
 * params, 1 where the unit is dead; NULL for layers without params. The class-output
 * layer's array stays all 0 (its units cannot be removed), and so does every array of
 * a graph model, so remove_out can be handed to prunus_model_shrink as is. Returns the
 * number of dead units over all non-output layers. */
int prunus_model_dead_units(const PrunusModel *m, uint8_t **remove_out);

G_END_DECLS

#endif
