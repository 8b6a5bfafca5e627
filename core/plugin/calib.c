/* calib.c: model views for plugins and the calibration pass (loss gradients per
 * batch or per sample, output-norm gradients for MAS, post-ReLU activations). */
#include "calib.h"
#include "rng.h"
#include "train.h"

#include <string.h>

void prunus_view_build(PrunusViewSet *vs, const PrunusModel *m, const gboolean *prunable) {
  int n = 0;
  for (int i = 0; i < m->n_layers; i++) n += m->layers[i].ops->has_params;
  vs->layers = g_new0(PrunusLayerView, n);
  vs->layer_index = g_new0(int, n);
  int last = -1;
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].ops->has_params) last = i;
  int k = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    PrunusLayerView *v = &vs->layers[k];
    v->name = l->name;
    v->type = l->ops->type_name;
    v->index = i;
    v->n_units = l->out.c;
    v->fan_in = l->fan_in;
    v->n_weights = l->w_len;
    v->positions = l->out.h * l->out.w;
    v->prunable = prunable ? prunable[i] : 1;
    v->is_output = i == last;
    v->weights = m->params + l->w_off;
    v->bias = m->params + l->b_off;
    v->mask = m->mask + l->w_off;
    vs->layer_index[k] = i;
    k++;
  }
  vs->view.n_layers = n;
  vs->view.layers = vs->layers;
}

void prunus_view_clear(PrunusViewSet *vs) {
  g_clear_pointer(&vs->layers, g_free);
  g_clear_pointer(&vs->layer_index, g_free);
  vs->view.n_layers = 0;
}

/* The activation buffer after the ReLU that follows model layer i (or its output). */
static const float *unit_outputs(const PrunusModel *m, int i) {
  if (i + 1 < m->n_layers && m->layers[i + 1].spec.type == PRUNUS_LAYER_RELU) return m->acts[i + 2];
  return m->acts[i + 1];
}

gboolean prunus_calibrate(PrunusModel *m, PrunusViewSet *vs, const PrunusDataset *d,
                          const PrunusNorm *norm, uint32_t needs, int n_batches, int batch,
                          uint64_t seed, PrunusObserveFn observe, void *user) {
  static const uint32_t order[] = {PRUNUS_NEED_LOSS_GRAD, PRUNUS_NEED_LOSS_GRAD_SAMPLE,
                                   PRUNUS_NEED_OUTNORM_GRAD_SAMPLE, PRUNUS_NEED_ACTIVATIONS};
  int nl = vs->view.n_layers;
  int K = prunus_model_n_classes(m);
  int B = MIN(batch, d->n);
  int total = MIN(n_batches * B, d->n);
  size_t in = prunus_model_input_size(m);
  int *idx = g_new(int, d->n);
  for (int i = 0; i < d->n; i++) idx[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "calibration"));
  prunus_rng_shuffle(&rng, idx, d->n);
  float *x = g_new(float, (size_t)B *in); /* (B, in) */
  uint8_t *y = g_new(uint8_t, B);
  float *dlogits = g_new(float, (size_t)B *K); /* (B, K) */
  const float **grads = g_new0(const float *, nl);
  const float **bgrads = g_new0(const float *, nl);
  const float **acts = g_new0(const float *, nl);
  for (int k = 0; k < nl; k++) {
    const PrunusLayer *l = &m->layers[vs->layer_index[k]];
    grads[k] = m->grads + l->w_off;
    bgrads[k] = m->grads + l->b_off;
  }
  gboolean ok = TRUE;
  for (size_t o = 0; ok && o < G_N_ELEMENTS(order); o++) {
    uint32_t need = order[o];
    if (!(needs & need)) continue;
    gboolean per_sample =
        need == PRUNUS_NEED_LOSS_GRAD_SAMPLE || need == PRUNUS_NEED_OUTNORM_GRAD_SAMPLE;
    for (int start = 0; ok && start < total; start += B) {
      int nb = MIN(B, total - start);
      prunus_dataset_fill_batch(d, norm, idx + start, nb, x, y);
      if (need == PRUNUS_NEED_ACTIVATIONS) {
        prunus_model_forward(m, x, nb);
        for (int k = 0; k < nl; k++) acts[k] = unit_outputs(m, vs->layer_index[k]);
        PrunusCalibStep step = {.batch = nb, .kind = need, .activations = acts};
        ok = observe(user, &vs->view, &step) == 0;
        continue;
      }
      if (!per_sample) {
        prunus_model_forward(m, x, nb);
        prunus_softmax_xent(m->acts[m->n_layers], y, nb, K, dlogits, NULL);
        prunus_model_zero_grads(m);
        prunus_model_backward(m, dlogits, nb);
        PrunusCalibStep step = {.batch = nb, .kind = need, .grads = grads, .bias_grads = bgrads};
        ok = observe(user, &vs->view, &step) == 0;
        continue;
      }
      for (int s = 0; ok && s < nb; s++) {
        const float *xs = x + (size_t)s * in;
        prunus_model_forward(m, xs, 1);
        const float *logits = m->acts[m->n_layers];
        if (need == PRUNUS_NEED_LOSS_GRAD_SAMPLE) {
          prunus_softmax_xent(logits, y + s, 1, K, dlogits, NULL);
        } else { /* d||f(x)||^2 / d logits = 2 f(x) */
          for (int k = 0; k < K; k++) dlogits[k] = 2.0f * logits[k];
        }
        prunus_model_zero_grads(m);
        prunus_model_backward(m, dlogits, 1);
        PrunusCalibStep step = {.batch = 1, .kind = need, .grads = grads, .bias_grads = bgrads};
        ok = observe(user, &vs->view, &step) == 0;
      }
    }
  }
  prunus_model_zero_grads(m);
  g_free(acts), g_free(bgrads), g_free(grads);
  g_free(dlogits), g_free(y), g_free(x), g_free(idx);
  return ok;
}
