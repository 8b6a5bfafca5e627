/* spdense.h: a dense layer run on its alive weights only while its mask is fixed:
 * forward by CSR SpMM, the input gradient by the transposed CSR, the weight gradient
 * only where the mask is 1 (SDDMM), for the optimizer to step those weights only
 * (prunus_optim_step_alive). The values stay in the model's parameter slab. */
#ifndef PRUNUS_SPDENSE_H
#define PRUNUS_SPDENSE_H

#include "csr.h"
#include "layer.h"

G_BEGIN_DECLS

struct PrunusSpDense {
  int in, out;        /* W (out, in) */
  PrunusCsr *w;       /* W by rows, the pattern of the mask; values copied in by forward */
  int32_t *w_src;     /* (w->stored) index in W of each entry, -1 for padding */
  PrunusCsr *wt;      /* W^T by rows for the input gradient; NULL: none is computed */
  int32_t *wt_src;    /* (wt->stored) */
  int32_t *wt_from_w; /* (wt->stored) where each entry of wt sits in w, -1 for padding */
  PrunusCsrBlocks *w_blocks, *wt_blocks; /* their column blocks (csr.h); NULL when too sparse */
  /* TRUE: whoever changes the weights writes w->val too (prunus_train's optimizer steps
   * them there, prunus_optim_step_alive), so forward need not copy them from the slab;
   * FALSE (as built): forward copies them in every call */
  gboolean values_kept;
  float *grad; /* (w->stored) dL/dW at w's entries, written by backward */
  int max_batch;
  float *xT;  /* (in, max_batch) the last forward's input, transposed (backward reads it) */
  float *yT;  /* (out, max_batch) the output, transposed; in backward dL/dy, transposed */
  float *dxT; /* (in, max_batch) dL/dx transposed; NULL without wt */
};

/* (transfer full) The sparse form of dense layer l whose weight mask is mask (the
 * layer's w_len entries), its values copied from params; input gradients only when
 * with_dx. */
PrunusSpDense *prunus_spdense_new(const PrunusLayer *l, const float *params, const float *mask,
                                  gboolean with_dx, int max_batch);
void prunus_spdense_free(PrunusSpDense *s);
/* y (B, out) = x (B, in) W^T + b, W and b read from params at l's offsets. */
void prunus_spdense_forward(const PrunusLayer *l, PrunusSpDense *s, const float *params,
                            const float *x, float *y, int B);
/* After the forward of the same batch: s->grad (dL/dW at the alive weights), the bias
 * gradient written to grads at l->b_off, and dx (B, in) when dx != NULL (needs wt). */
void prunus_spdense_backward(const PrunusLayer *l, PrunusSpDense *s, float *grads, const float *dy,
                             float *dx, int B);

G_END_DECLS

#endif
