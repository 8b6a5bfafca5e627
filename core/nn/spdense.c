/* spdense.c: a dense layer's forward and backward over the CSR pattern of its mask:
 * activations are transposed to (features, batch) so each stored weight works on a
 * contiguous row of samples (csr.c's SpMM and SDDMM), and back. */
#include "spdense.h"

#include <stdlib.h>
#include <string.h>

/* The density from which the column-blocked kernels beat the unblocked ones at
 * LeNet-300-100's shapes (docs/perf-log.md). */
#define BLOCKED_FROM 0.06

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

/* wt's values from w's: wt_from_w maps each entry of wt to its entry of w. */
static void wt_values(PrunusSpDense *s) {
  const float *restrict from = s->w->val;
  float *restrict to = s->wt->val;
  for (int64_t j = 0; j < s->wt->stored; j++)
    to[j] = s->wt_from_w[j] >= 0 ? from[s->wt_from_w[j]] : 0.0f;
}

PrunusSpDense *prunus_spdense_new(const PrunusLayer *l, const float *params, const float *mask,
                                  gboolean with_dx, int max_batch) {
  g_return_val_if_fail(l->spec.type == PRUNUS_LAYER_DENSE, NULL);
  PrunusSpDense *s = g_new0(PrunusSpDense, 1);
  s->in = l->in.c, s->out = l->out.c;
  s->w = prunus_csr_from_mask(mask, s->out, s->in, false, &s->w_src);
  prunus_csr_gather(s->w, s->w_src, params + l->w_off);
  if (with_dx) {
    s->wt = prunus_csr_from_mask(mask, s->out, s->in, true, &s->wt_src);
    int32_t *entry_of = g_new(int32_t, MAX(l->w_len, 1)); /* weight index -> entry of w */
    for (int64_t k = 0; k < s->w->stored; k++)
      if (s->w_src[k] >= 0) entry_of[s->w_src[k]] = (int32_t)k;
    s->wt_from_w = g_new(int32_t, MAX(s->wt->stored, 1));
    for (int64_t j = 0; j < s->wt->stored; j++)
      s->wt_from_w[j] = s->wt_src[j] >= 0 ? entry_of[s->wt_src[j]] : -1;
    g_free(entry_of);
    wt_values(s);
  }
  /* a block's operand rows are reused by about density x rows entries each: below
   * BLOCKED_FROM that does not pay for running every row over every block */
  if ((double)s->w->nnz >= BLOCKED_FROM * (double)s->out * s->in) {
    s->w_blocks = prunus_csr_blocks_new(s->w, PRUNUS_CSR_BLOCK_WIDTH);
    if (s->wt) s->wt_blocks = prunus_csr_blocks_new(s->wt, PRUNUS_CSR_BLOCK_WIDTH);
  }
  s->grad = floats_new((size_t)s->w->stored);
  memset(s->grad, 0, sizeof(float) * (size_t)s->w->stored); /* padding entries stay 0 */
  reserve(s, MAX(max_batch, 1));
  return s;
}

void prunus_spdense_free(PrunusSpDense *s) {
  if (!s) return;
  prunus_csr_free(s->w), prunus_csr_free(s->wt);
  prunus_csr_blocks_free(s->w_blocks), prunus_csr_blocks_free(s->wt_blocks);
  g_free(s->w_src), g_free(s->wt_src), g_free(s->wt_from_w);
  free(s->grad), free(s->xT), free(s->yT), free(s->dxT), free(s->m1), free(s->m2);
  g_free(s);
}

/* to[k] = from[w_src[k]] (0 for padding) over w's entries. */
static void gather_entries(const PrunusSpDense *s, const float *from, float *to) {
  for (int64_t k = 0; k < s->w->stored; k++) to[k] = s->w_src[k] >= 0 ? from[s->w_src[k]] : 0.0f;
}

void prunus_spdense_keep_values(PrunusSpDense *s, const PrunusLayer *l, const float *opt_m,
                                const float *opt_v) {
  if (!s->m1) s->m1 = floats_new((size_t)s->w->stored), s->m2 = floats_new((size_t)s->w->stored);
  gather_entries(s, opt_m + l->w_off, s->m1);
  gather_entries(s, opt_v + l->w_off, s->m2);
  s->values_kept = TRUE;
}

void prunus_spdense_write_back(const PrunusSpDense *s, const PrunusLayer *l, float *params,
                               float *opt_m, float *opt_v) {
  g_return_if_fail(s->values_kept);
  for (int64_t k = 0; k < s->w->stored; k++) {
    if (s->w_src[k] < 0) continue;
    size_t i = l->w_off + (size_t)s->w_src[k];
    params[i] = s->w->val[k], opt_m[i] = s->m1[k], opt_v[i] = s->m2[k];
  }
}

void prunus_spdense_forward(const PrunusLayer *l, PrunusSpDense *s, const float *params,
                            const float *x, float *y, int B) {
  reserve(s, B);
  if (!s->values_kept) prunus_csr_gather(s->w, s->w_src, params + l->w_off);
  if (s->wt) wt_values(s); /* the weights as they are now: stepped since the last call */
  if (s->up) {             /* x = relu(up's output): from up's yT, as relu_forward computes it */
    const float *restrict from = s->up->yT;
    float *restrict to = s->xT;
    for (size_t j = 0, n = (size_t)s->in * B; j < n; j++) to[j] = from[j] > 0.0f ? from[j] : 0.0f;
  } else {
    prunus_transpose(x, B, s->in, s->xT);
  }
  prunus_csr_spmm_t_blocked(s->w, s->w_blocks, s->xT, B, params + l->b_off, s->yT, l->team);
  if (!s->down) prunus_transpose(s->yT, s->out, B, y); /* linked: down reads yT itself */
}

void prunus_spdense_backward(const PrunusLayer *l, PrunusSpDense *s, float *grads, const float *dy,
                             float *dx, int B) {
  g_return_if_fail(B <= s->max_batch && (!dx || s->wt));
  float *dyT = s->yT; /* the forward's output is in the model's activations: free here */
  if (s->down) {      /* dy = relu'(yT) * the next layer's dx, as relu_backward computes it */
    const float *restrict from = s->down->dxT;
    float *restrict to = dyT;
    for (size_t j = 0, n = (size_t)s->out * B; j < n; j++) {
      float g = from[j]; /* read whatever the test says: the loop vectorises */
      to[j] = to[j] > 0.0f ? g : 0.0f;
    }
  } else {
    prunus_transpose(dy, B, s->out, dyT);
  }
  prunus_csr_sddmm_t(s->w, s->w_blocks, dyT, s->xT, B, s->grad, l->team);
  float *restrict db = grads + l->b_off;
  if (s->down) { /* dy is not written: the row sums of dyT, in 16 lanes, then across */
    for (int j = 0; j < s->out; j++) {
      const float *restrict row = dyT + (size_t)j * B;
      float lane[16] = {0};
      int b = 0;
      for (; b + 16 <= B; b += 16)
        for (int t = 0; t < 16; t++) lane[t] += row[b + t];
      for (int t = 0; b + t < B; t++) lane[t] += row[b + t];
      float sum = 0.0f;
      for (int t = 0; t < 16; t++) sum += lane[t];
      db[j] = sum;
    }
  } else { /* the column sums of dy, row after row (vectorised along the row) */
    memcpy(db, dy, sizeof(float) * (size_t)s->out);
    for (int b = 1; b < B; b++) {
      const float *restrict row = dy + (size_t)b * s->out;
      for (int j = 0; j < s->out; j++) db[j] += row[j];
    }
  }
  if (!dx) return;
  prunus_csr_spmm_t_blocked(s->wt, s->wt_blocks, dyT, B, NULL, s->dxT, l->team);
  if (!s->up) prunus_transpose(s->dxT, s->in, B, dx);
}

void prunus_spdense_link(PrunusSpDense *up, PrunusSpDense *down) {
  g_return_if_fail(up->out == down->in && down->wt && !up->down && !down->up);
  up->down = down, down->up = up;
}
