/* shrink.c: structured removal of units. Builds a plan (which output units and which
 * input channels each parameter layer keeps, and which channels each batchnorm keeps:
 * those of the layer it normalises), a smaller model from it, and copies every slab
 * (params, mask, opt_m, opt_v, extra snapshots, buffers) through the same plan; and
 * the inference copies: every dead unit gone, its constant output folded; batchnorm
 * folded into the layer it follows (the one it alone reads). Units of a graph, whose
 * branches must agree on them, are removed by whole channel groups in shrink_graph.c. */
#include "shrink.h"
#include "groups.h"
#include "shrink_graph.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the plan */

/* What one parameter layer (or batchnorm: keep_out only) keeps, as indices into the
 * original model. */
typedef struct {
  int *keep_out; /* (n_keep_out) kept output units, ascending */
  int n_keep_out;
  int *keep_in; /* (n_keep_in) kept input channels (dense columns / conv cin), ascending */
  int n_keep_in;
} ShrinkLayerPlan;

typedef struct {
  int n_layers;
  ShrinkLayerPlan *layers; /* (n_layers); empty for layers without params */
} ShrinkPlan;

static void shrink_plan_clear(ShrinkPlan *p) {
  if (!p->layers) return;
  for (int i = 0; i < p->n_layers; i++) {
    g_free(p->layers[i].keep_out);
    g_free(p->layers[i].keep_in);
  }
  g_clear_pointer(&p->layers, g_free);
}

/* The next layer with parameters after layer i, or -1 when layer i feeds the output. */
static int next_param_layer(const PrunusModel *m, int i) {
  for (int j = i + 1; j < m->n_layers; j++)
    if (m->layers[j].ops->has_params) return j;
  return -1;
}

static int prev_param_layer(const PrunusModel *m, int j) {
  for (int i = j - 1; i >= 0; i--)
    if (m->layers[i].ops->has_params) return i;
  return -1;
}

/* Layers that carry channel c of their input to channel c (or, for flatten, to a
 * contiguous block of H*W features) of their output, touching no other channel. */
static gboolean keeps_channels_apart(PrunusLayerType t) {
  switch (t) {
  case PRUNUS_LAYER_RELU:
  case PRUNUS_LAYER_MAXPOOL2D:
  case PRUNUS_LAYER_FLATTEN:
  case PRUNUS_LAYER_BATCHNORM:
  case PRUNUS_LAYER_AVGPOOL2D:
  case PRUNUS_LAYER_GLOBALAVGPOOL:
    return TRUE;
  default:
    return FALSE;
  }
}

/* How many input channels of layer j one output unit of layer p becomes: 1 through
 * relu/maxpool, H*W through a flatten of an HxW map. -1 + error when a layer in
 * between mixes channels. */
static int channel_block(const PrunusModel *m, int p, int j, GError **error) {
  int block = 1;
  for (int k = p + 1; k < j; k++) {
    const PrunusLayer *l = &m->layers[k];
    if (!keeps_channels_apart(l->spec.type)) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "cannot remove units of layer %d (%s): layer %d (%s) between it and layer %d "
                  "mixes channels",
                  p, m->layers[p].ops->type_name, k, l->ops->type_name, j);
      return -1;
    }
    if (l->spec.type == PRUNUS_LAYER_FLATTEN) block *= l->in.h * l->in.w;
  }
  g_assert(m->layers[j].in.c == m->layers[p].out.c * block);
  return block;
}

static gboolean shrink_plan_build(const PrunusModel *m, const uint8_t *const *remove_units,
                                  ShrinkPlan *plan, GError **error) {
  plan->n_layers = m->n_layers;
  plan->layers = g_new0(ShrinkLayerPlan, m->n_layers);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    const uint8_t *rm = remove_units ? remove_units[i] : NULL;
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM && !rm) { /* the channels it normalises */
      const ShrinkLayerPlan *pp = &plan->layers[l->from[0]];
      plan->layers[i].n_keep_out = pp->n_keep_out;
      plan->layers[i].keep_out = g_memdup2(pp->keep_out, sizeof(int) * (size_t)pp->n_keep_out);
      continue;
    }
    if (!l->ops->has_params) {
      if (rm) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                    "layer %d (%s) has no weights, so it has no units to remove", i,
                    l->ops->type_name);
        return FALSE;
      }
      continue;
    }
    ShrinkLayerPlan *lp = &plan->layers[i];
    int n = l->out.c, removed = 0;
    lp->keep_out = g_new(int, n);
    for (int u = 0; u < n; u++) {
      if (rm && rm[u])
        removed++;
      else
        lp->keep_out[lp->n_keep_out++] = u;
    }
    if (removed == 0) continue;
    if (!prunus_model_is_sequence(m)) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "cannot remove %d unit(s) of layer %s (%s): units are removed from sequences "
                  "of layers only, and this model is a graph",
                  removed, l->name, l->ops->type_name);
      return FALSE;
    }
    if (next_param_layer(m, i) < 0) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "cannot remove %d unit(s) of layer %d (%s): its outputs are the model's %d "
                  "class outputs",
                  removed, i, l->ops->type_name, m->arch.n_classes);
      return FALSE;
    }
    if (lp->n_keep_out == 0) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "cannot remove all %d units of layer %d (%s): at least one must stay", n, i,
                  l->ops->type_name);
      return FALSE;
    }
  }
  /* Inputs follow the outputs of the previous parameter layer. */
  for (int j = 0; j < m->n_layers; j++) {
    const PrunusLayer *l = &m->layers[j];
    if (!l->ops->has_params) continue;
    ShrinkLayerPlan *lp = &plan->layers[j];
    int p = prev_param_layer(m, j);
    lp->keep_in = g_new(int, l->in.c);
    if (p < 0 || plan->layers[p].n_keep_out == m->layers[p].out.c) {
      for (int c = 0; c < l->in.c; c++) lp->keep_in[lp->n_keep_in++] = c;
      continue;
    }
    int block = channel_block(m, p, j, error);
    if (block < 0) return FALSE;
    const ShrinkLayerPlan *pp = &plan->layers[p];
    for (int k = 0; k < pp->n_keep_out; k++)
      for (int t = 0; t < block; t++) lp->keep_in[lp->n_keep_in++] = pp->keep_out[k] * block + t;
  }
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* moving slabs */

/* A batchnorm's kept channels of its two halves of C at src_off (of m) into dst_off
 * (of n): scale and shift in the b span, running mean and variance in the buffers. */
static void shrink_halves(const PrunusLayer *lo, const PrunusLayer *ln, const ShrinkLayerPlan *lp,
                          const float *src, size_t src_off, float *dst, size_t dst_off) {
  int C = lo->in.c, Cn = ln->in.c;
  g_assert(Cn == lp->n_keep_out);
  for (int h = 0; h < 2; h++)
    for (int r = 0; r < lp->n_keep_out; r++)
      dst[dst_off + (size_t)h * Cn + r] = src[src_off + (size_t)h * C + lp->keep_out[r]];
}

/* dst (laid out like n) from src (laid out like m) through the plan. */
static void shrink_slab(const PrunusModel *m, const PrunusModel *n, const ShrinkPlan *plan,
                        const float *src, float *dst) {
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *lo = &m->layers[i], *ln = &n->layers[i];
    if (lo->spec.type == PRUNUS_LAYER_BATCHNORM)
      shrink_halves(lo, ln, &plan->layers[i], src, lo->b_off, dst, ln->b_off);
    if (!lo->ops->has_params) continue;
    const ShrinkLayerPlan *lp = &plan->layers[i];
    /* a row is (in, kk): kk = 1 for dense, k*k for conv */
    size_t kk = lo->w_len / ((size_t)lo->out.c * lo->in.c);
    size_t old_row = (size_t)lo->in.c * kk, new_row = (size_t)ln->in.c * kk;
    g_assert(ln->out.c == lp->n_keep_out && ln->in.c == lp->n_keep_in);
    g_assert(ln->w_len == (size_t)lp->n_keep_out * new_row);
    for (int r = 0; r < lp->n_keep_out; r++) {
      const float *s = src + lo->w_off + (size_t)lp->keep_out[r] * old_row;
      float *d = dst + ln->w_off + (size_t)r * new_row;
      for (int c = 0; c < lp->n_keep_in; c++)
        memcpy(d + (size_t)c * kk, s + (size_t)lp->keep_in[c] * kk, sizeof(float) * kk);
      if (lo->b_len) dst[ln->b_off + r] = src[lo->b_off + lp->keep_out[r]];
    }
  }
}

/* ------------------------------------------------------------------------ */
/* public */

PrunusModel *prunus_model_shrink(const PrunusModel *m, const uint8_t *const *remove_units,
                                 const float *const *extra_in, float **extra_out, int n_extra,
                                 GError **error) {
  g_return_val_if_fail(m != NULL, NULL);
  g_return_val_if_fail(n_extra >= 0, NULL);
  g_return_val_if_fail(n_extra == 0 || (extra_in && extra_out), NULL);
  if (!prunus_model_is_sequence(m)) /* branches must agree: whole channel groups */
    return prunus_model_shrink_graph(m, remove_units, extra_in, extra_out, n_extra, error);
  ShrinkPlan plan = {0};
  PrunusModel *n = NULL;
  PrunusArch arch = prunus_arch_copy(&m->arch);
  if (!shrink_plan_build(m, remove_units, &plan, error)) goto out_free_plan;
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayerSpec *s = &arch.layers[i];
    if (s->type == PRUNUS_LAYER_DENSE)
      s->units = plan.layers[i].n_keep_out;
    else if (s->type == PRUNUS_LAYER_CONV2D)
      s->channels = plan.layers[i].n_keep_out;
  }
  GError *local = NULL;
  n = prunus_model_new(&arch, m->max_batch, 0, &local);
  if (!n) {
    g_propagate_prefixed_error(error, local, "shrinking the model: ");
    goto out_free_plan;
  }
  shrink_slab(m, n, &plan, m->params, n->params);
  shrink_slab(m, n, &plan, m->mask, n->mask);
  shrink_slab(m, n, &plan, m->opt_m, n->opt_m);
  shrink_slab(m, n, &plan, m->opt_v, n->opt_v);
  for (int i = 0; i < m->n_layers; i++) /* buffers: batchnorm's running statistics */
    if (m->layers[i].spec.type == PRUNUS_LAYER_BATCHNORM)
      shrink_halves(&m->layers[i], &n->layers[i], &plan.layers[i], m->params, m->layers[i].buf_off,
                    n->params, n->layers[i].buf_off);
  prunus_model_set_training(n, m->training);
  prunus_model_zero_grads(n);
  for (int j = 0; j < n_extra; j++) {
    extra_out[j] = g_new0(float, n->n_params ? n->n_params : 1);
    shrink_slab(m, n, &plan, extra_in[j], extra_out[j]);
  }

out_free_plan:
  shrink_plan_clear(&plan);
  prunus_arch_clear(&arch);
  return n;
}

int prunus_model_dead_units(const PrunusModel *m, uint8_t **remove_out) {
  int dead = 0;
  gboolean sequence = prunus_model_is_sequence(m);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) {
      remove_out[i] = NULL;
      continue;
    }
    int n = l->out.c;
    gboolean is_output = next_param_layer(m, i) < 0 || !sequence;
    size_t row = l->w_len / (size_t)n;
    remove_out[i] = g_new0(uint8_t, n);
    if (is_output) continue;
    for (int u = 0; u < n; u++) {
      const float *mk = m->mask + l->w_off + (size_t)u * row;
      size_t j = 0;
      while (j < row && mk[j] == 0.0f) j++;
      if (j == row) {
        remove_out[i][u] = 1;
        dead++;
      }
    }
  }
  return dead;
}

/* ------------------------------------------------------------------------ */
/* dead units out, for inference */

/* Before dead units are removed: a dead unit still outputs a constant, act(bias)
 * (act = relu when one follows). Zero: removing it is exact. Otherwise, into a dense
 * layer (through relu/maxpool/flatten) add what it feeds to that layer's bias; into
 * anything else (a conv: zero padding makes the constant position-dependent) keep the
 * unit (dead[p][j] = 0), so the shrunk network always computes what m computes. A
 * batchnorm in between turns even a zero into its own constant: such units stay. */
static void fold_dead_biases(PrunusModel *c, uint8_t *const *dead) {
  for (int p = 0; p < c->n_layers; p++) {
    if (!dead[p]) continue;
    int q = p + 1;
    gboolean relu = FALSE, ok = TRUE, norm = FALSE;
    int block = 1;
    for (; q < c->n_layers && !c->layers[q].ops->has_params; q++) {
      PrunusLayerType t = c->layers[q].spec.type;
      if (t == PRUNUS_LAYER_BATCHNORM) norm = TRUE;
      if (t == PRUNUS_LAYER_RELU)
        relu = TRUE;
      else if (t == PRUNUS_LAYER_FLATTEN)
        block *= c->layers[q].in.h * c->layers[q].in.w;
      else if (t != PRUNUS_LAYER_MAXPOOL2D)
        ok = FALSE;
    }
    gboolean foldable = ok && q < c->n_layers && c->layers[q].spec.type == PRUNUS_LAYER_DENSE;
    const PrunusLayer *lp = &c->layers[p];
    float *bp = c->params + lp->b_off;
    for (int j = 0; j < lp->out.c; j++) {
      if (!dead[p][j]) continue;
      if (norm) {
        dead[p][j] = 0;
        continue;
      }
      float bias = lp->b_len ? bp[j] : 0.0f; /* a conv without bias outputs 0 */
      float a = relu && bias < 0.0f ? 0.0f : bias;
      if (a == 0.0f) continue;
      if (!foldable) {
        dead[p][j] = 0;
        continue;
      }
      const PrunusLayer *lq = &c->layers[q];
      float *bq = c->params + lq->b_off;
      const float *Wq = c->params + lq->w_off;
      int in = lq->in.c;
      for (int o = 0; o < lq->out.c; o++)
        for (int h = 0; h < block; h++) bq[o] += Wq[(size_t)o * in + (size_t)j * block + h] * a;
      bp[j] = 0.0f;
    }
  }
}

/* Every value of params[off, off + n) is 0. */
static gboolean all_zero(const float *params, size_t off, size_t n) {
  for (size_t j = 0; j < n; j++)
    if (params[off + j] != 0.0f) return FALSE;
  return TRUE;
}

/* A graph's groups whose channels output exactly 0 (c's masks applied): every producer
 * unit's weights and bias are 0, and so are every batchnorm channel's scale AND shift
 * (a zero scale alone leaves the shift). Such a group is removed whatever its
 * consumers read from it (0); a group with a live member anywhere is kept whole, since
 * its branches must agree on the channel. FALSE and c unchanged when nothing goes or
 * the removal cannot be made (it would empty a layer): dead[] then stays all 0. */
static gboolean dead_groups(const PrunusModel *c, uint8_t **dead) {
  PrunusGroups *g = prunus_groups_build(c);
  int n_dead = 0;
  for (int k = 0; k < g->n_groups; k++) {
    const PrunusGroup *gr = &g->groups[k];
    gboolean is_dead = TRUE;
    for (int p = 0; p < gr->n_producers && is_dead; p++) {
      const PrunusLayer *l = &c->layers[gr->producers[p].layer];
      int u = gr->producers[p].channel;
      is_dead = all_zero(c->params, l->w_off + (size_t)u * l->fan_in, (size_t)l->fan_in) &&
                (l->b_len == 0 || c->params[l->b_off + u] == 0.0f);
    }
    for (int q = 0; q < gr->n_norms && is_dead; q++) {
      const PrunusLayer *l = &c->layers[gr->norms[q].layer];
      int ch = gr->norms[q].channel;
      is_dead = c->params[l->b_off + ch] == 0.0f && c->params[l->b_off + l->out.c + ch] == 0.0f;
    }
    if (!is_dead) continue;
    for (int p = 0; p < gr->n_producers; p++) {
      int i = gr->producers[p].layer;
      if (!dead[i]) dead[i] = g_new0(uint8_t, c->layers[i].out.c);
      dead[i][gr->producers[p].channel] = 1;
    }
    n_dead++;
  }
  uint8_t *remove_group = g_new0(uint8_t, MAX(g->n_groups, 1));
  gboolean ok = n_dead > 0 &&
                prunus_groups_from_units(g, c, (const uint8_t *const *)dead, remove_group, NULL);
  g_free(remove_group);
  prunus_groups_free(g);
  if (!ok)
    for (int i = 0; i < c->n_layers; i++) g_clear_pointer(&dead[i], g_free);
  return ok;
}

PrunusModel *prunus_model_shrink_dead(const PrunusModel *m, GError **error) {
  PrunusModel *c = prunus_model_shrink(m, NULL, NULL, NULL, 0, error);
  if (!c) return NULL;
  prunus_model_apply_mask(c);
  if (!prunus_model_is_sequence(c)) {
    uint8_t **dead = g_new0(uint8_t *, c->n_layers);
    if (dead_groups(c, dead)) {
      PrunusModel *s =
          prunus_model_shrink_graph(c, (const uint8_t *const *)dead, NULL, NULL, 0, NULL);
      if (s) {
        prunus_model_free(c);
        c = s;
      }
    }
    for (int i = 0; i < m->n_layers; i++) g_free(dead[i]);
    g_free(dead);
    return c;
  }
  uint8_t **dead = g_new0(uint8_t *, c->n_layers);
  int n_dead = prunus_model_dead_units(c, dead);
  if (n_dead > 0) {
    fold_dead_biases(c, dead);
    PrunusModel *s = prunus_model_shrink(c, (const uint8_t *const *)dead, NULL, NULL, 0, NULL);
    if (s) {
      prunus_model_free(c);
      c = s;
    }
  }
  for (int i = 0; i < c->n_layers; i++) g_free(dead[i]);
  g_free(dead);
  return c;
}

/* ------------------------------------------------------------------------ */
/* batchnorm folded, for inference */

/* Layer i's readers: the layers that take its output. */
static int *count_readers(const PrunusModel *m) {
  int *readers = g_new0(int, m->n_layers);
  for (int i = 0; i < m->n_layers; i++)
    for (int k = 0; k < m->layers[i].n_in; k++)
      if (m->layers[i].from[k] >= 0) readers[m->layers[i].from[k]]++;
  return readers;
}

PrunusModel *prunus_model_to_plain(const PrunusModel *m, const char *who, GError **error) {
  PrunusArch a = prunus_arch_copy(&m->arch);
  int *readers = count_readers(m);
  int *src = g_new(int, m->n_layers);  /* new layer j is old layer src[j] */
  int *norm = g_new(int, m->n_layers); /* old layer i absorbs old batchnorm norm[i] (-1: none) */
  int *at = g_new(int, m->n_layers);   /* old layer i's output is new layer at[i]'s */
  int n = 0;
  for (int i = 0; i < m->n_layers; i++) norm[i] = -1;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    int f = l->from[0];
    /* a batchnorm is folded when it alone reads its conv2d or dense layer (model.c
     * checks that it follows one): else the layer's unnormalised output is needed too */
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM && f >= 0 && readers[f] == 1) {
      norm[f] = i;
      at[i] = at[f];
      continue;
    }
    PrunusLayerSpec *s = &a.layers[n];
    *s = l->spec;
    g_strlcpy(s->name, l->name, sizeof s->name); /* the index it had, when unnamed */
    s->no_bias = FALSE;
    s->n_inputs = l->n_in;
    for (int k = 0; k < l->n_in; k++)
      s->inputs[k] = l->from[k] < 0 ? PRUNUS_LAYER_INPUT : at[l->from[k]];
    if (l->n_in == 1 && s->inputs[0] == n - 1) s->n_inputs = 0; /* the previous layer */
    src[n] = i, at[i] = n;
    n++;
  }
  a.n_layers = n;
  GError *local = NULL;
  PrunusModel *p = prunus_model_new(&a, m->max_batch, 0, &local);
  if (!p) {
    g_propagate_prefixed_error(error, local, "%s: folding batchnorm into the layers before: ", who);
    goto out_free;
  }
  for (int j = 0; j < n; j++) {
    const PrunusLayer *lo = &m->layers[src[j]], *ln = &p->layers[j];
    if (lo->spec.type == PRUNUS_LAYER_BATCHNORM) { /* kept: scale, shift, running statistics */
      memcpy(p->params + ln->b_off, m->params + lo->b_off, sizeof(float) * lo->b_len);
      memcpy(p->params + ln->buf_off, m->params + lo->buf_off, sizeof(float) * lo->buf_len);
      continue;
    }
    if (!lo->ops->has_params) continue;
    int rows = lo->out.c;
    size_t row = lo->w_len / (size_t)rows;
    g_assert(ln->w_len == lo->w_len && ln->b_len == (size_t)rows);
    const PrunusLayer *bn = norm[src[j]] >= 0 ? &m->layers[norm[src[j]]] : NULL;
    for (int r = 0; r < rows; r++) {
      float scale = 1.0f, shift = 0.0f; /* y' = y scale + shift, as batchnorm computes it */
      if (bn) {
        const float *gamma = m->params + bn->b_off, *beta = gamma + rows;
        const float *mean = m->params + bn->buf_off, *var = mean + rows;
        float istd = (float)(1.0 / sqrt((double)var[r] + (double)bn->spec.eps));
        scale = gamma[r] * istd;
        shift = beta[r] - mean[r] * scale;
      }
      const float *w = m->params + lo->w_off + (size_t)r * row;
      float *wn = p->params + ln->w_off + (size_t)r * row;
      for (size_t k = 0; k < row; k++) wn[k] = w[k] * scale;
      float b = lo->b_len ? m->params[lo->b_off + r] : 0.0f;
      p->params[ln->b_off + r] = bn ? b * scale + shift : b;
    }
    memcpy(p->mask + ln->w_off, m->mask + lo->w_off, sizeof(float) * lo->w_len);
  }
  prunus_model_apply_mask(p);

out_free:
  g_free(at), g_free(norm), g_free(src), g_free(readers);
  prunus_arch_clear(&a);
  return p;
}
