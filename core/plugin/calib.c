/* calib.c: model views for plugins (the layers with parameters and the graph of
 * every layer) and the calibration pass (loss gradients per batch or per sample,
 * output-norm gradients for MAS, post-ReLU activations, layer inputs raw or reduced
 * to sums of squares and Gram matrices). */
#include "calib.h"
#include "gemm.h"
#include "groups.h"
#include "rng.h"
#include "train.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* views */

/* The name the graph gives the network input. */
static const char input_node_name[] = "input";

/* The revision-4 members: groups in view indices, batchnorm parameters. view_of[i] is
 * model layer i's view index (-1: a layer without weights). */
static void view_build_groups(PrunusViewSet *vs, const PrunusModel *m, const int *view_of) {
  PrunusGroups *g = prunus_groups_build(m);
  int G = g->n_groups, nl = vs->view.n_layers, nn = m->n_layers;
  size_t n_units = 0, n_inputs = 0, n_all_units = 0;
  for (int k = 0; k < G; k++) {
    n_units += (size_t)g->groups[k].n_producers;
    n_inputs += (size_t)g->groups[k].n_consumers;
  }
  for (int k = 0; k < nl; k++) n_all_units += (size_t)vs->layers[k].n_units;
  vs->group_ints =
      g_new0(int, 2 * (size_t)G + 2 * n_units + 3 * n_inputs + n_all_units + (size_t)nl + 1);
  vs->group_ptrs = g_new0(const int *, 5 * (size_t)G + (size_t)nl + 1);
  int *n_u = vs->group_ints, *n_in = n_u + G, *next = n_in + G;
  const int **unit_layer = vs->group_ptrs, **unit = unit_layer + G, **in_layer = unit + G,
            **in_col = in_layer + G, **in_cols = in_col + G, **unit_group = in_cols + G;
  for (int k = 0; k < G; k++) {
    const PrunusGroup *gr = &g->groups[k];
    n_u[k] = gr->n_producers;
    n_in[k] = gr->n_consumers;
    int *ul = next, *uu = ul + gr->n_producers;
    next = uu + gr->n_producers;
    for (int j = 0; j < gr->n_producers; j++) {
      ul[j] = view_of[gr->producers[j].layer];
      uu[j] = gr->producers[j].channel;
    }
    int *il = next, *ic = il + gr->n_consumers, *iw = ic + gr->n_consumers;
    next = iw + gr->n_consumers;
    for (int j = 0; j < gr->n_consumers; j++) {
      const PrunusGroupMember *mb = &gr->consumers[j];
      const PrunusLayer *l = &m->layers[mb->layer];
      int kk = l->fan_in / l->in.c; /* columns per input channel */
      il[j] = view_of[mb->layer];
      ic[j] = mb->channel * kk;
      iw[j] = mb->width * kk;
    }
    unit_layer[k] = ul, unit[k] = uu, in_layer[k] = il, in_col[k] = ic, in_cols[k] = iw;
  }
  for (int k = 0; k < nl; k++) {
    int li = vs->layer_index[k];
    int *ug = next;
    next += vs->layers[k].n_units;
    for (int u = 0; u < vs->layers[k].n_units; u++) ug[u] = prunus_groups_unit(g, li, u);
    unit_group[k] = ug;
  }
  int *norm_node = next;
  vs->norm_params = g_new0(const float *, 2 * (size_t)nn);
  for (int k = 0; k < nl; k++) norm_node[k] = -1;
  for (int j = 0; j < nn; j++) {
    const PrunusLayer *l = &m->layers[j];
    if (l->spec.type != PRUNUS_LAYER_BATCHNORM) continue;
    vs->norm_params[j] = m->params + l->b_off;
    vs->norm_params[nn + j] = m->params + l->b_off + l->out.c;
    if (l->from[0] >= 0 && view_of[l->from[0]] >= 0) norm_node[view_of[l->from[0]]] = j;
  }
  vs->view.is_sequence = prunus_model_is_sequence(m);
  vs->view.n_groups = G;
  vs->view.group_n_units = n_u;
  vs->view.group_unit_layer = unit_layer;
  vs->view.group_unit = unit;
  vs->view.group_n_inputs = n_in;
  vs->view.group_input_layer = in_layer;
  vs->view.group_input_column = in_col;
  vs->view.group_input_columns = in_cols;
  vs->view.unit_group = unit_group;
  vs->view.layer_norm_node = norm_node;
  vs->view.node_norm_scale = vs->norm_params;
  vs->view.node_norm_shift = vs->norm_params + nn;
  prunus_groups_free(g);
}

void prunus_view_build(PrunusViewSet *vs, const PrunusModel *m, const gboolean *prunable) {
  int n = 0, nn = m->n_layers;
  for (int i = 0; i < nn; i++) n += m->layers[i].ops->has_params;
  vs->layers = g_new0(PrunusLayerView, n);
  vs->layer_index = g_new0(int, n);
  vs->node_name = g_new0(const char *, nn);
  vs->node_type = g_new0(const char *, nn);
  vs->node_n_inputs = g_new0(int, nn);
  vs->node_inputs = g_new0(const char **, nn);
  int n_links = 0;
  for (int i = 0; i < nn; i++) n_links += m->layers[i].n_in;
  vs->input_names = g_new0(const char *, n_links);
  vs->node_ints = g_new0(int, (size_t)nn * 6 + (size_t)n);
  int *shape = vs->node_ints, *kernel = shape + 3 * nn, *stride = kernel + nn,
      *padding = stride + nn, *layer_node = padding + nn;
  int last = -1;
  for (int i = 0; i < nn; i++)
    if (m->layers[i].ops->has_params) last = i;
  int k = 0, link = 0;
  for (int i = 0; i < nn; i++) {
    const PrunusLayer *l = &m->layers[i];
    /* node i reads the layers it takes (in a sequence node i - 1, node 0 the input) */
    vs->node_name[i] = l->name;
    vs->node_type[i] = l->ops->type_name;
    vs->node_n_inputs[i] = l->n_in;
    vs->node_inputs[i] = &vs->input_names[link];
    for (int j = 0; j < l->n_in; j++)
      vs->input_names[link++] = l->from[j] < 0 ? input_node_name : m->layers[l->from[j]].name;
    shape[3 * i] = l->out.c, shape[3 * i + 1] = l->out.h, shape[3 * i + 2] = l->out.w;
    gboolean windowed = l->spec.type == PRUNUS_LAYER_CONV2D ||
                        l->spec.type == PRUNUS_LAYER_MAXPOOL2D ||
                        l->spec.type == PRUNUS_LAYER_AVGPOOL2D;
    kernel[i] = windowed ? l->spec.kernel : 0;
    stride[i] = windowed ? l->spec.stride : 0;
    padding[i] = l->spec.type == PRUNUS_LAYER_CONV2D ? l->spec.padding : 0;
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
    v->bias = l->b_len ? m->params + l->b_off : NULL; /* conv2d `bias = false` has none */
    v->mask = m->mask + l->w_off;
    vs->layer_index[k] = i;
    layer_node[k] = i;
    k++;
  }
  vs->input_shape[0] = m->arch.input.c;
  vs->input_shape[1] = m->arch.input.h;
  vs->input_shape[2] = m->arch.input.w;
  vs->view = (PrunusModelView){
      .n_layers = n,
      .layers = vs->layers,
      .n_nodes = nn,
      .node_name = vs->node_name,
      .node_type = vs->node_type,
      .node_n_inputs = vs->node_n_inputs,
      .node_inputs = (const char *const *const *)vs->node_inputs,
      .node_shape = shape,
      .node_kernel = kernel,
      .node_stride = stride,
      .node_padding = padding,
      .layer_node = layer_node,
      .input_shape = vs->input_shape,
  };
  int *view_of = g_new(int, MAX(nn, 1));
  for (int i = 0; i < nn; i++) view_of[i] = -1;
  for (int j = 0; j < n; j++) view_of[vs->layer_index[j]] = j;
  view_build_groups(vs, m, view_of);
  g_free(view_of);
}

void prunus_view_clear(PrunusViewSet *vs) {
  g_clear_pointer(&vs->layers, g_free);
  g_clear_pointer(&vs->layer_index, g_free);
  g_clear_pointer(&vs->node_name, g_free);
  g_clear_pointer(&vs->node_type, g_free);
  g_clear_pointer(&vs->node_n_inputs, g_free);
  g_clear_pointer(&vs->node_inputs, g_free);
  g_clear_pointer(&vs->input_names, g_free);
  g_clear_pointer(&vs->node_ints, g_free);
  g_clear_pointer(&vs->group_ints, g_free);
  g_clear_pointer(&vs->group_ptrs, g_free);
  g_clear_pointer(&vs->norm_params, g_free);
  memset(&vs->view, 0, sizeof vs->view);
}

/* The layer types whose input the host can hand out as the layer multiplies it. */
static gboolean has_input_form(const char *type) {
  return !strcmp(type, "dense") || !strcmp(type, "conv2d");
}

gboolean prunus_calib_check_needs(const PrunusModelView *v, uint32_t needs, const char *who,
                                  GError **error) {
  uint32_t unknown = needs & ~(uint32_t)PRUNUS_CALIB_KNOWN_NEEDS;
  if (unknown) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                "%s: needs() asks for 0x%x, which this prunus (plugin ABI revision %u) does not "
                "know; check PRUNUS_HOST_REVISION before asking for a newer need",
                who, (unsigned)unknown, PRUNUS_PLUGIN_REVISION);
    return FALSE;
  }
  if (!(needs & PRUNUS_CALIB_INPUT_NEEDS)) return TRUE;
  for (int k = 0; k < v->n_layers; k++) {
    const PrunusLayerView *l = &v->layers[k];
    if (l->prunable && !has_input_form(l->type)) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                  "%s needs layer inputs, but layer %s is a '%s' layer, which has no input "
                  "form (only dense and conv2d layers have one); exclude it from pruning with "
                  "prune.layers or choose another criterion",
                  who, l->name, l->type);
      return FALSE;
    }
  }
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* the calibration pass */

/* The activation buffer after the ReLU that takes model layer i's output (through the
 * batchnorm of layer i, when it has one), or layer i's output. */
static const float *unit_outputs(const PrunusModel *m, int i) {
  int j = i;
  if (j + 1 < m->n_layers && m->layers[j + 1].spec.type == PRUNUS_LAYER_BATCHNORM &&
      m->layers[j + 1].from[0] == j)
    j++;
  if (j + 1 < m->n_layers && m->layers[j + 1].spec.type == PRUNUS_LAYER_RELU &&
      m->layers[j + 1].from[0] == j)
    return m->acts[j + 2];
  return m->acts[i + 1];
}

/* Layer i's input after a forward: the slot of the layer it takes (acts[i] in a
 * sequence). */
static const float *layer_input(const PrunusModel *m, int i) {
  return m->acts[m->layers[i].from[0] + 1];
}

/* The patches conv layer l multiplies, col (B*Ho*Wo, cin*k*k), rows in (b, oh, ow)
 * order and columns in the weights' (c, kh, kw) order; padding reads as 0. */
static void im2col(const PrunusLayer *l, const float *x, float *col, int B) {
  int C = l->in.c, H = l->in.h, W = l->in.w, k = l->spec.kernel, s = l->spec.stride,
      p = l->spec.padding, Ho = l->out.h, Wo = l->out.w;
  size_t K = (size_t)C * k * k;
  for (int b = 0; b < B; b++)
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float *row = col + (((size_t)b * Ho + oh) * Wo + ow) * K;
        for (int c = 0; c < C; c++) {
          const float *xc = x + ((size_t)b * C + c) * H * W;
          for (int kh = 0; kh < k; kh++) {
            int ih = oh * s - p + kh;
            for (int kw = 0; kw < k; kw++) {
              int iw = ow * s - p + kw;
              *row++ = ih >= 0 && ih < H && iw >= 0 && iw < W ? xc[(size_t)ih * W + iw] : 0.0f;
            }
          }
        }
      }
}

/* The layer inputs of one calibration pass: which layers, their rows, and the
 * buffers (patches of conv layers, reduced sums). */
typedef struct {
  int nl;
  gboolean *on;           /* [view layer] inputs computed for it */
  const float **x;        /* [view layer] (rows, fan_in) of the current batch */
  float **col;            /* [view layer] im2col buffer (conv), else NULL */
  const float **x0;       /* [view layer] (rows, fan_in) the same rows in the reference */
  float **col0;           /* [view layer] a separate reference's im2col buffer (conv), else
                           * NULL (without one x0 is x) */
  int64_t *rows;          /* [view layer] rows of the current batch, or of the pass */
  double **sumsq, **gram; /* [view layer] the reduced needs, NULL when not asked */
  double **cross;         /* [view layer] (fan_in, fan_in) X^T X0, NULL when not asked */
  float *tmp;             /* (widest fan_in^2) one batch's X^T X or X^T X0 */
} Inputs;

/* separate_ref: X0 comes from another model than m (col0 needed). */
static void inputs_init(Inputs *in, const PrunusModel *m, const PrunusViewSet *vs, int layer,
                        uint32_t needs, gboolean separate_ref, int B) {
  *in = (Inputs){.nl = vs->view.n_layers};
  in->on = g_new0(gboolean, in->nl);
  in->x = g_new0(const float *, in->nl);
  in->col = g_new0(float *, in->nl);
  in->rows = g_new0(int64_t, in->nl);
  in->x0 = g_new0(const float *, in->nl);
  in->col0 = g_new0(float *, in->nl);
  in->sumsq = g_new0(double *, in->nl);
  in->gram = g_new0(double *, in->nl);
  in->cross = g_new0(double *, in->nl);
  size_t widest = 0;
  for (int k = 0; k < in->nl; k++) {
    const PrunusLayerView *v = &vs->layers[k];
    in->on[k] = (layer < 0 || layer == k) && v->prunable && has_input_form(v->type);
    if (!in->on[k]) continue;
    const PrunusLayer *l = &m->layers[vs->layer_index[k]];
    size_t fi = (size_t)v->fan_in;
    gboolean cross = (needs & PRUNUS_NEED_INPUT_CROSS) != 0;
    if (l->spec.type == PRUNUS_LAYER_CONV2D) {
      in->col[k] = g_new(float, (size_t)B * v->positions * fi);
      if (cross && separate_ref) in->col0[k] = g_new(float, (size_t)B * v->positions * fi);
    }
    if (needs & PRUNUS_NEED_INPUT_SUMSQ) in->sumsq[k] = g_new0(double, fi);
    if (needs & PRUNUS_NEED_INPUT_GRAM) in->gram[k] = g_new0(double, fi *fi);
    if (cross) in->cross[k] = g_new0(double, fi *fi);
    widest = MAX(widest, fi);
  }
  if (needs & (PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_INPUT_CROSS))
    in->tmp = g_new(float, widest *widest);
}

static void inputs_clear(Inputs *in) {
  for (int k = 0; k < in->nl; k++) {
    g_free(in->col[k]), g_free(in->col0[k]);
    g_free(in->sumsq[k]), g_free(in->gram[k]), g_free(in->cross[k]);
  }
  g_free(in->on), g_free(in->x), g_free(in->col), g_free(in->x0), g_free(in->col0);
  g_free(in->rows), g_free(in->sumsq), g_free(in->gram), g_free(in->cross), g_free(in->tmp);
}

/* After a forward of nb samples: each layer's input rows for this batch, into x and
 * col (the model's own) or x0 and col0 (the reference's). */
static void inputs_take(Inputs *in, const PrunusModel *m, const PrunusViewSet *vs, int nb,
                        gboolean reference) {
  const float **x = reference ? in->x0 : in->x;
  float **col = reference ? in->col0 : in->col;
  for (int k = 0; k < in->nl; k++) {
    if (!in->on[k]) continue;
    int li = vs->layer_index[k];
    const PrunusLayer *l = &m->layers[li];
    in->rows[k] = (int64_t)nb * vs->layers[k].positions;
    if (col[k]) {
      im2col(l, layer_input(m, li), col[k], nb);
      x[k] = col[k];
    } else {
      x[k] = layer_input(m, li);
    }
  }
}

/* Add this batch's rows to the reduced sums. */
static void inputs_reduce(Inputs *in, const PrunusViewSet *vs, int64_t *pass_rows) {
  for (int k = 0; k < in->nl; k++) {
    if (!in->on[k]) continue;
    const int fi = vs->layers[k].fan_in;
    const int64_t rows = in->rows[k];
    const float *x = in->x[k];
    pass_rows[k] += rows;
    if (in->sumsq[k]) {
      double *s = in->sumsq[k];
      for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * fi;
        for (int j = 0; j < fi; j++) s[j] += (double)xr[j] * xr[j];
      }
    }
    if (in->gram[k]) {
      /* one batch in float through BLAS, the sum over batches in double */
      prunus_sgemm(true, false, fi, fi, (int)rows, 1.0f, x, fi, x, fi, 0.0f, in->tmp, fi);
      double *g = in->gram[k];
      for (size_t i = 0; i < (size_t)fi * fi; i++) g[i] += in->tmp[i];
    }
    if (in->cross[k]) { /* tmp[i][j] = sum over rows of x_i * x0_j */
      prunus_sgemm(true, false, fi, fi, (int)rows, 1.0f, x, fi, in->x0[k], fi, 0.0f, in->tmp, fi);
      double *c = in->cross[k];
      for (size_t i = 0; i < (size_t)fi * fi; i++) c[i] += in->tmp[i];
    }
  }
}

/* The calibration sample: the first `total` of d's indices in a seeded order (the
 * same images for every pass and every caller with that seed), B at a time. */
typedef struct {
  int B, total;
  int *idx;   /* (d->n) */
  float *x;   /* (B, input) one batch of normalised images */
  uint8_t *y; /* (B) their labels */
} CalibSample;

static void calib_sample_init(CalibSample *s, const PrunusModel *m, const PrunusDataset *d,
                              int n_batches, int batch, uint64_t seed) {
  s->B = MIN(batch, d->n);
  s->total = MIN(n_batches * s->B, d->n);
  s->idx = g_new(int, MAX(d->n, 1));
  for (int i = 0; i < d->n; i++) s->idx[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "calibration"));
  prunus_rng_shuffle(&rng, s->idx, d->n);
  s->x = g_new(float, (size_t)s->B *prunus_model_input_size(m));
  s->y = g_new(uint8_t, s->B);
}

/* Fills s->x and s->y with the batch that starts at sample `start`; returns its size. */
static int calib_sample_fill(CalibSample *s, const PrunusDataset *d, const PrunusNorm *norm,
                             int start) {
  int nb = MIN(s->B, s->total - start);
  prunus_dataset_fill_batch(d, norm, s->idx + start, nb, s->x, s->y);
  return nb;
}

static void calib_sample_clear(CalibSample *s) { g_free(s->idx), g_free(s->x), g_free(s->y); }

gboolean prunus_calibrate(PrunusModel *m, PrunusViewSet *vs, const PrunusDataset *d,
                          const PrunusNorm *norm, uint32_t needs, int n_batches, int batch,
                          uint64_t seed, int layer, PrunusObserveFn observe, void *user) {
  return prunus_calibrate_ref(m, NULL, vs, d, norm, needs, n_batches, batch, seed, layer, observe,
                              user);
}

gboolean prunus_calibrate_ref(PrunusModel *m, PrunusModel *ref, PrunusViewSet *vs,
                              const PrunusDataset *d, const PrunusNorm *norm, uint32_t needs,
                              int n_batches, int batch, uint64_t seed, int layer,
                              PrunusObserveFn observe, void *user) {
  const uint32_t reduced_needs =
      PRUNUS_NEED_INPUT_SUMSQ | PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_INPUT_CROSS;
  /* without a separate reference the model is its own: X0 = X */
  const gboolean separate_ref = ref && ref != m;
  if (separate_ref) {
    prunus_model_reserve_batch(ref, MIN(batch, d->n));
    /* the reference's layer inputs fill buffers sized for m's */
    g_return_val_if_fail(ref->n_layers == m->n_layers, FALSE);
    for (int i = 0; i < m->n_layers; i++)
      g_return_val_if_fail(
          ref->layers[i].fan_in == m->layers[i].fan_in &&
              prunus_shape_size(ref->layers[i].in) == prunus_shape_size(m->layers[i].in),
          FALSE);
  }
  /* the reduced needs share one pass, handed out as two steps after it */
  static const uint32_t order[] = {
      PRUNUS_NEED_LOSS_GRAD,   PRUNUS_NEED_LOSS_GRAD_SAMPLE, PRUNUS_NEED_OUTNORM_GRAD_SAMPLE,
      PRUNUS_NEED_ACTIVATIONS, PRUNUS_NEED_INPUTS,           PRUNUS_NEED_INPUT_SUMSQ};
  int nl = vs->view.n_layers;
  int K = prunus_model_n_classes(m);
  size_t in = prunus_model_input_size(m);
  CalibSample cs;
  calib_sample_init(&cs, m, d, n_batches, batch, seed);
  int B = cs.B, total = cs.total;
  const float *x = cs.x;
  const uint8_t *y = cs.y;
  float *dlogits = g_new(float, (size_t)B *K); /* (B, K) */
  const float **grads = g_new0(const float *, nl);
  const float **bgrads = g_new0(const float *, nl);
  const float **acts = g_new0(const float *, nl);
  int64_t *pass_rows = g_new0(int64_t, nl);
  Inputs inputs;
  inputs_init(&inputs, m, vs, layer, needs, separate_ref, B);
  for (int k = 0; k < nl; k++) {
    const PrunusLayer *l = &m->layers[vs->layer_index[k]];
    grads[k] = m->grads + l->w_off;
    bgrads[k] = m->grads + l->b_off;
  }
  /* a layerwise pass needs the layer's input, not what comes after it */
  const int input_stop = layer >= 0 ? vs->layer_index[layer] : m->n_layers;
  gboolean ok = TRUE;
  for (size_t o = 0; ok && o < G_N_ELEMENTS(order); o++) {
    uint32_t need = order[o];
    gboolean reduced = need == PRUNUS_NEED_INPUT_SUMSQ;
    if (reduced ? !(needs & reduced_needs) : !(needs & need)) continue;
    gboolean per_sample =
        need == PRUNUS_NEED_LOSS_GRAD_SAMPLE || need == PRUNUS_NEED_OUTNORM_GRAD_SAMPLE;
    for (int start = 0; ok && start < total; start += B) {
      int nb = calib_sample_fill(&cs, d, norm, start);
      if (need == PRUNUS_NEED_ACTIVATIONS) {
        prunus_model_forward(m, x, nb);
        for (int k = 0; k < nl; k++) acts[k] = unit_outputs(m, vs->layer_index[k]);
        PrunusCalibStep step = {.batch = nb, .kind = need, .activations = acts, .layer = layer};
        ok = observe(user, &vs->view, &step) == 0;
        continue;
      }
      if (need == PRUNUS_NEED_INPUTS || reduced) {
        const gboolean cross = reduced && (needs & PRUNUS_NEED_INPUT_CROSS);
        if (cross && separate_ref) {
          prunus_model_forward_to(ref, x, nb, input_stop);
          inputs_take(&inputs, ref, vs, nb, TRUE);
        }
        prunus_model_forward_to(m, x, nb, input_stop);
        inputs_take(&inputs, m, vs, nb, FALSE);
        if (cross && !separate_ref) /* X0 = X: the same rows, one forward */
          memcpy(inputs.x0, inputs.x, sizeof(*inputs.x) * (size_t)nl);
        if (reduced) {
          inputs_reduce(&inputs, vs, pass_rows);
          continue;
        }
        PrunusCalibStep step = {.batch = nb,
                                .kind = need,
                                .layer = layer,
                                .input_rows = inputs.rows,
                                .inputs = inputs.x};
        ok = observe(user, &vs->view, &step) == 0;
        continue;
      }
      if (!per_sample) {
        prunus_model_forward(m, x, nb);
        prunus_softmax_xent(m->acts[m->n_layers], y, nb, K, dlogits, NULL);
        prunus_model_zero_grads(m);
        prunus_model_backward(m, dlogits, nb);
        PrunusCalibStep step = {
            .batch = nb, .kind = need, .grads = grads, .bias_grads = bgrads, .layer = layer};
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
        PrunusCalibStep step = {
            .batch = 1, .kind = need, .grads = grads, .bias_grads = bgrads, .layer = layer};
        ok = observe(user, &vs->view, &step) == 0;
      }
    }
    if (ok && reduced) {
      if (needs & PRUNUS_NEED_INPUT_SUMSQ) {
        PrunusCalibStep step = {.batch = total,
                                .kind = PRUNUS_NEED_INPUT_SUMSQ,
                                .layer = layer,
                                .input_rows = pass_rows,
                                .input_sumsq = (const double *const *)inputs.sumsq};
        ok = observe(user, &vs->view, &step) == 0;
      }
      if (ok && (needs & PRUNUS_NEED_INPUT_GRAM)) {
        PrunusCalibStep step = {.batch = total,
                                .kind = PRUNUS_NEED_INPUT_GRAM,
                                .layer = layer,
                                .input_rows = pass_rows,
                                .input_gram = (const double *const *)inputs.gram};
        ok = observe(user, &vs->view, &step) == 0;
      }
      if (ok && (needs & PRUNUS_NEED_INPUT_CROSS)) {
        PrunusCalibStep step = {.batch = total,
                                .kind = PRUNUS_NEED_INPUT_CROSS,
                                .layer = layer,
                                .input_rows = pass_rows,
                                .input_cross = (const double *const *)inputs.cross};
        ok = observe(user, &vs->view, &step) == 0;
      }
    }
  }
  prunus_model_zero_grads(m);
  inputs_clear(&inputs);
  g_free(pass_rows);
  g_free(acts), g_free(bgrads), g_free(grads);
  g_free(dlogits);
  calib_sample_clear(&cs);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* batchnorm statistics */

int prunus_calib_recalibrate_bn(PrunusModel *m, const PrunusDataset *d, const PrunusNorm *norm,
                                int n_batches, int batch, uint64_t seed, int n_layers) {
  n_layers = MIN(n_layers, m->n_layers);
  int n_bn = 0;
  for (int i = 0; i < n_layers; i++) n_bn += m->layers[i].spec.type == PRUNUS_LAYER_BATCHNORM;
  if (n_bn == 0 || d->n < 1) return n_bn;
  CalibSample cs;
  calib_sample_init(&cs, m, d, n_batches, batch, seed);
  float *momentum = g_new(float, m->n_layers); /* (n_layers) each layer's own, restored */
  for (int i = 0; i < m->n_layers; i++) momentum[i] = m->layers[i].spec.momentum;
  prunus_model_reserve_batch(m, cs.B);
  gboolean was_training = prunus_model_set_training(m, TRUE);
  /* running = (1 - 1/b) running + (1/b) batch b: after the last batch, the plain mean
   * of the batches' statistics, whatever the buffers held before (batch 1 replaces them) */
  int b = 0;
  for (int start = 0; start < cs.total; start += cs.B) {
    float w = 1.0f / (float)++b;
    for (int i = 0; i < m->n_layers; i++)
      if (m->layers[i].spec.type == PRUNUS_LAYER_BATCHNORM) m->layers[i].spec.momentum = w;
    int nb = calib_sample_fill(&cs, d, norm, start);
    prunus_model_forward_to(m, cs.x, nb, n_layers);
  }
  prunus_model_set_training(m, was_training);
  for (int i = 0; i < m->n_layers; i++) m->layers[i].spec.momentum = momentum[i];
  g_free(momentum);
  calib_sample_clear(&cs);
  return n_bn;
}
