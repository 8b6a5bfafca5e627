/* spdense.h: a dense layer run on its alive weights only while its mask is fixed:
 * forward by CSR SpMM, the input gradient by the transposed CSR, the weight gradient
 * only where the mask is 1 (SDDMM). While it trains, its weights and their optimizer
 * state live in CSR order, where the optimizer steps them as contiguous arrays
 * (prunus_optim_step_arrays), and go back into the model's slabs afterwards. */
#ifndef PRUNUS_SPDENSE_H
#define PRUNUS_SPDENSE_H

#include "csr.h"
#include "layer.h"

G_BEGIN_DECLS

struct PrunusSpDense {
  int in, out;        /* W (out, in) */
  PrunusCsr *w;       /* W by rows, the pattern of the mask, its values in val */
  int32_t *w_src;     /* (w->stored) index in W of each entry, -1 for padding */
  PrunusCsr *wt;      /* W^T by rows for the input gradient; NULL: none is computed */
  int32_t *wt_src;    /* (wt->stored) */
  int32_t *wt_from_w; /* (wt->stored) where each entry of wt sits in w, -1 for padding */
  PrunusCsrBlocks *w_blocks, *wt_blocks; /* their column blocks (csr.h); NULL when too sparse */
  /* TRUE (prunus_spdense_keep_values): the weights live in w->val and their optimizer
   * state in m1, m2 (prunus_train steps them there) until prunus_spdense_write_back;
   * FALSE (as built): forward copies the weights from the slab at every call */
  gboolean values_kept;
  float *m1, *m2; /* (w->stored) the kept optimizer state, CSR order; NULL unless kept */
  float *grad;    /* (w->stored) dL/dW at w's entries, written by backward; 0 for padding */
  int max_batch;
  float *xT;  /* (in, max_batch) the last forward's input, transposed (backward reads it) */
  float *yT;  /* (out, max_batch) the output, transposed; in backward dL/dy, transposed */
  float *dxT; /* (in, max_batch) dL/dx transposed; NULL without wt */
  /* A chain sparse layer -> ReLU -> sparse layer whose two links nothing else reads
   * (prunus_spdense_link) runs the ReLU's work in the transposed layout too: `up` (the
   * layer two before, or NULL) hands this layer relu(up->yT) as its input, and this
   * layer's backward leaves dx unwritten (the ReLU's backward then works on stale
   * data nobody reads); `down` (the layer two after, or NULL) hands its dxT back,
   * masked where yT <= 0 as the ReLU's backward masks it. The values are those of
   * the unlinked path, the bias gradient's sums excepted (summed along dyT's rows: the
   * same additions in another order); per link four transposes of the batch are saved.
   * Linked, this layer leaves y unwritten when it has a `down`, and the ReLU between is
   * skipped altogether (prunus_model_layer_bypassed): nothing reads their slots. */
  PrunusSpDense *up, *down;
};

/* (transfer full) The sparse form of dense layer l whose weight mask is mask (the
 * layer's w_len entries), its values copied from params; input gradients only when
 * with_dx. */
PrunusSpDense *prunus_spdense_new(const PrunusLayer *l, const float *params, const float *mask,
                                  gboolean with_dx, int max_batch);
void prunus_spdense_free(PrunusSpDense *s);
/* From now on the weights and their optimizer state (from opt_m, opt_v: the model's
 * slabs) are kept in CSR order: padding entries hold zeros, which a step keeps zero.
 * The slabs are stale until prunus_spdense_write_back. */
void prunus_spdense_keep_values(PrunusSpDense *s, const PrunusLayer *l, const float *opt_m,
                                const float *opt_v);
/* The kept weights and state back into the model's slabs, at each alive place. */
void prunus_spdense_write_back(const PrunusSpDense *s, const PrunusLayer *l, float *params,
                               float *opt_m, float *opt_v);
/* y (B, out) = x (B, in) W^T + b, W and b read from params at l's offsets (W from
 * w->val when kept); linked to a `down`, y is left as it was (down reads yT). */
void prunus_spdense_forward(const PrunusLayer *l, PrunusSpDense *s, const float *params,
                            const float *x, float *y, int B);
/* After the forward of the same batch: s->grad (dL/dW at the alive weights), the bias
 * gradient written to grads at l->b_off, and dx (B, in) when dx != NULL (needs wt). */
void prunus_spdense_backward(const PrunusLayer *l, PrunusSpDense *s, float *grads, const float *dy,
                             float *dx, int B);
/* Link down (input: the ReLU of up's output; with an input gradient) to up as above. */
void prunus_spdense_link(PrunusSpDense *up, PrunusSpDense *down);

G_END_DECLS

#endif
