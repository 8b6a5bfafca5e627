/* shrink_graph.c: whole channel groups out of a graph model. A removal becomes a set of
 * removed groups (groups.c checks it), then per activation slot the channels it keeps; each
 * conv2d / dense layer keeps the rows of its output slot and the columns of its input slot,
 * each batchnorm the channels of its slot, and every slab is copied through that. */
#include "shrink_graph.h"
#include "groups.h"

#include <string.h>

/* Per activation slot, the channels (features, after a flatten) it keeps, ascending. */
typedef struct {
  int n_slots;
  int **keep;  /* [slot] (n_keep[slot]) */
  int *n_keep; /* [slot] */
} SlotKeep;

static void slot_keep_build(SlotKeep *k, const PrunusGroups *g, const uint8_t *remove_group) {
  k->n_slots = g->n_slots;
  k->keep = g_new0(int *, g->n_slots);
  k->n_keep = g_new0(int, g->n_slots);
  for (int s = 0; s < g->n_slots; s++) {
    int n = (int)(g->slot_base[s + 1] - g->slot_base[s]);
    k->keep[s] = g_new(int, MAX(n, 1));
    for (int c = 0; c < n; c++) {
      int gr = g->slot_group[g->slot_base[s] + (size_t)c];
      if (gr < 0 || !remove_group[gr]) k->keep[s][k->n_keep[s]++] = c;
    }
  }
}

static void slot_keep_clear(SlotKeep *k) {
  for (int s = 0; s < k->n_slots; s++) g_free(k->keep[s]);
  g_free(k->keep);
  g_free(k->n_keep);
}

/* dst (laid out like n) from src (laid out like m): rows and columns of every conv2d /
 * dense layer, both halves of every batchnorm's b span. */
static void copy_slab(const PrunusModel *m, const PrunusModel *n, const SlotKeep *k,
                      const float *src, float *dst) {
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *lo = &m->layers[i], *ln = &n->layers[i];
    const int *ko = k->keep[i + 1];
    int nko = k->n_keep[i + 1];
    if (lo->spec.type == PRUNUS_LAYER_BATCHNORM) {
      for (int h = 0; h < 2; h++)
        for (int r = 0; r < nko; r++)
          dst[ln->b_off + (size_t)h * ln->out.c + r] =
              src[lo->b_off + (size_t)h * lo->out.c + ko[r]];
      continue;
    }
    if (!lo->ops->has_params) continue;
    const int *ki = k->keep[lo->from[0] + 1];
    int nki = k->n_keep[lo->from[0] + 1];
    size_t kk = lo->w_len / ((size_t)lo->out.c * lo->in.c); /* 1 dense, k*k conv */
    size_t old_row = (size_t)lo->in.c * kk, new_row = (size_t)ln->in.c * kk;
    g_assert(ln->out.c == nko && ln->in.c == nki);
    for (int r = 0; r < nko; r++) {
      const float *s = src + lo->w_off + (size_t)ko[r] * old_row;
      float *d = dst + ln->w_off + (size_t)r * new_row;
      for (int c = 0; c < nki; c++)
        memcpy(d + (size_t)c * kk, s + (size_t)ki[c] * kk, sizeof(float) * kk);
      if (lo->b_len) dst[ln->b_off + r] = src[lo->b_off + ko[r]];
    }
  }
}

/* The groups remove_units removes, in *remove_group (transfer full, g->n_groups). */
static PrunusGroups *removed_groups(const PrunusModel *m, const uint8_t *const *remove_units,
                                    uint8_t **remove_group, GError **error) {
  PrunusGroups *g = prunus_groups_build(m);
  *remove_group = g_new0(uint8_t, MAX(g->n_groups, 1));
  if (prunus_groups_from_units(g, m, remove_units, *remove_group, error)) return g;
  g_clear_pointer(remove_group, g_free);
  prunus_groups_free(g);
  return NULL;
}

PrunusModel *prunus_model_shrink_graph(const PrunusModel *m, const uint8_t *const *remove_units,
                                       const float *const *extra_in, float **extra_out, int n_extra,
                                       GError **error) {
  g_return_val_if_fail(m != NULL, NULL);
  g_return_val_if_fail(n_extra == 0 || (extra_in && extra_out), NULL);
  uint8_t *remove_group = NULL;
  PrunusGroups *g = removed_groups(m, remove_units, &remove_group, error);
  if (!g) return NULL;
  SlotKeep k;
  slot_keep_build(&k, g, remove_group);
  PrunusArch arch = prunus_arch_copy(&m->arch);
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayerSpec *s = &arch.layers[i];
    if (s->type == PRUNUS_LAYER_DENSE)
      s->units = k.n_keep[i + 1];
    else if (s->type == PRUNUS_LAYER_CONV2D)
      s->channels = k.n_keep[i + 1];
  }
  GError *local = NULL;
  PrunusModel *n = prunus_model_new(&arch, m->max_batch, 0, &local);
  if (!n) {
    g_propagate_prefixed_error(error, local, "shrinking the model: ");
    goto out_free;
  }
  for (int i = 0; i < m->n_layers; i++) /* every slot shrank as planned */
    g_assert(n->layers[i].out.c == k.n_keep[i + 1]);
  copy_slab(m, n, &k, m->params, n->params);
  copy_slab(m, n, &k, m->mask, n->mask);
  copy_slab(m, n, &k, m->opt_m, n->opt_m);
  copy_slab(m, n, &k, m->opt_v, n->opt_v);
  for (int i = 0; i < m->n_layers; i++) { /* buffers: batchnorm's running statistics */
    const PrunusLayer *lo = &m->layers[i], *ln = &n->layers[i];
    if (lo->spec.type != PRUNUS_LAYER_BATCHNORM) continue;
    for (int h = 0; h < 2; h++)
      for (int r = 0; r < k.n_keep[i + 1]; r++)
        n->params[ln->buf_off + (size_t)h * ln->out.c + r] =
            m->params[lo->buf_off + (size_t)h * lo->out.c + k.keep[i + 1][r]];
  }
  prunus_model_set_training(n, m->training);
  prunus_model_zero_grads(n);
  for (int j = 0; j < n_extra; j++) {
    extra_out[j] = g_new0(float, n->n_params ? n->n_params : 1);
    copy_slab(m, n, &k, extra_in[j], extra_out[j]);
  }

out_free:
  prunus_arch_clear(&arch);
  slot_keep_clear(&k);
  g_free(remove_group);
  prunus_groups_free(g);
  return n;
}

gboolean prunus_model_mask_units(PrunusModel *m, const uint8_t *const *remove_units,
                                 GError **error) {
  uint8_t *remove_group = NULL;
  PrunusGroups *g = removed_groups(m, remove_units, &remove_group, error);
  if (!g) return FALSE;
  for (int k = 0; k < g->n_groups; k++) {
    if (!remove_group[k]) continue;
    const PrunusGroup *gr = &g->groups[k];
    for (int j = 0; j < gr->n_producers; j++) {
      const PrunusLayer *l = &m->layers[gr->producers[j].layer];
      int u = gr->producers[j].channel;
      size_t row = l->w_len / (size_t)l->out.c;
      for (size_t x = 0; x < row; x++) m->mask[l->w_off + (size_t)u * row + x] = 0.0f;
      if (l->b_len) m->mask[l->b_off + (size_t)u] = 0.0f;
    }
    for (int j = 0; j < gr->n_norms; j++) {
      const PrunusLayer *l = &m->layers[gr->norms[j].layer];
      int c = gr->norms[j].channel;
      m->mask[l->b_off + (size_t)c] = 0.0f;                    /* scale */
      m->mask[l->b_off + (size_t)l->out.c + (size_t)c] = 0.0f; /* shift */
    }
    for (int j = 0; j < gr->n_consumers; j++) {
      const PrunusGroupMember *mb = &gr->consumers[j];
      const PrunusLayer *l = &m->layers[mb->layer];
      size_t kk = l->w_len / ((size_t)l->out.c * l->in.c), row = (size_t)l->in.c * kk;
      for (int u = 0; u < l->out.c; u++)
        for (size_t x = (size_t)mb->channel * kk; x < (size_t)(mb->channel + mb->width) * kk; x++)
          m->mask[l->w_off + (size_t)u * row + x] = 0.0f;
    }
  }
  prunus_model_apply_mask(m);
  g_free(remove_group);
  prunus_groups_free(g);
  return TRUE;
}
