/* spdense.c: a dense layer's forward and backward over the CSR pattern of its mask:
 * activations are transposed to (features, batch) so each stored weight works on a
 * contiguous row of samples (csr.c's SpMM and SDDMM), and back. */
#include "spdense.h"

#include <stdlib.h>
#include <string.h>

static float *floats_new(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, sizeof(float) * (n ? n : 1)) != 0) g_error("out of memory");
  return p;
}

static void reserve(PrunusSpDense *s, int B) {
  if (B <= s->max_batch) return;
  free(s->xT), free(s->yT), free(s->dxT);
  s->max_batch = B;
  s->xT = floats_new((size_t)s->in * B);
  s->yT = floats_new((size_t)s->out * B);
  s->dxT = s->wt ? floats_new((size_t)s->in * B) : NULL;
}

PrunusSpDense *prunus_spdense_new(const PrunusLayer *l, const float *mask, gboolean with_dx,
                                  int max_batch) {
  g_return_val_if_fail(l->spec.type == PRUNUS_LAYER_DENSE, NULL);
  PrunusSpDense *s = g_new0(PrunusSpDense, 1);
  s->in = l->in.c, s->out = l->out.c;
  s->w = prunus_csr_from_mask(mask, s->out, s->in, false, &s->w_src);
  if (with_dx) s->wt = prunus_csr_from_mask(mask, s->out, s->in, true, &s->wt_src);
  s->grad = floats_new((size_t)s->w->stored);
  reserve(s, MAX(max_batch, 1));
  return s;
}

void prunus_spdense_free(PrunusSpDense *s) {
  if (!s) return;
  prunus_csr_free(s->w), prunus_csr_free(s->wt);
  g_free(s->w_src), g_free(s->wt_src);
  free(s->grad), free(s->xT), free(s->yT), free(s->dxT);
  g_free(s);
}

void prunus_spdense_forward(const PrunusLayer *l, PrunusSpDense *s, const float *params,
                            const float *x, float *y, int B) {
  reserve(s, B);
  const float *W = params + l->w_off;
  /* the values as they are now (the optimizer steps the slab between calls) */
  prunus_csr_gather(s->w, s->w_src, W);
  if (s->wt) prunus_csr_gather(s->wt, s->wt_src, W);
  prunus_transpose(x, B, s->in, s->xT);
  prunus_csr_spmm_t(s->w, s->xT, B, params + l->b_off, s->yT, l->team);
  prunus_transpose(s->yT, s->out, B, y);
}

void prunus_spdense_backward(const PrunusLayer *l, PrunusSpDense *s, float *grads, const float *dy,
                             float *dx, int B) {
  g_return_if_fail(B <= s->max_batch && (!dx || s->wt));
  float *dyT = s->yT; /* the forward's output is in the model's activations: free here */
  prunus_transpose(dy, B, s->out, dyT);
  prunus_csr_sddmm_t(s->w, dyT, s->xT, B, s->grad, l->team);
  float *restrict db = grads + l->b_off;
  for (int j = 0; j < s->out; j++) {
    const float *restrict row = dyT + (size_t)j * B;
    float acc = 0.0f;
    for (int b = 0; b < B; b++) acc += row[b];
    db[j] = acc;
  }
  if (!dx) return;
  prunus_csr_spmm_t(s->wt, dyT, B, NULL, s->dxT, l->team);
  prunus_transpose(s->dxT, s->in, B, dx);
}
