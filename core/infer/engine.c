/* engine.c: the inference engines (dense, masked, sparse, shrunk, auto). An engine
 * owns a copy of the layers and parameters it runs, and with 2 threads the helper
 * its sparse kernels split with (team.c); layers without parameters and the dense
 * path reuse the kernels of layers.c; the sparse path runs CSR kernels (csr.c) on
 * a batch kept transposed between sparse layers, over the im2col form (transposed,
 * one sample at a time) for conv; dense and shrunk may pad a dense layer's outputs
 * with zero rows where BLAS measured faster so (`padding`). A sequence runs layer
 * after layer through a buffer per layer; a graph by its plan (infer_plan.c): relus
 * fused, a few buffers reused by liveness, a chunk of the batch at a time. */
#include "engine.h"
#include "conv_direct.h"
#include "conv_wino.h"
#include "csr.h"
#include "gemm.h"
#include "infer_plan.h"
#include "latency.h"
#include "rng.h"
#include "shrink.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* types */

static const char *const kind_names[PRUNUS_ENGINE_N_KINDS] = {[PRUNUS_ENGINE_DENSE] = "dense",
                                                              [PRUNUS_ENGINE_MASKED] = "masked",
                                                              [PRUNUS_ENGINE_SPARSE] = "sparse",
                                                              [PRUNUS_ENGINE_SHRUNK] = "shrunk",
                                                              [PRUNUS_ENGINE_AUTO] = "auto"};

/* Buffers for a forward of up to max_batch samples (a graph: of a chunk of up to
 * max_batch samples, the batch running a chunk at a time). */
typedef struct {
  int max_batch;
  float **acts;    /* sequence: (n_layers+1) (max_batch, in size of layer i) */
  float **bufs;    /* graph: (plan->n_bufs) (max_batch, plan->buf_floats[b]) */
  float **scratch; /* (n_layers) layer-ops scratch (dense path, pooling); a graph's
                    * layers all point into one block, scratch_block */
  float *scratch_block;
  float *tmp;       /* sparse path: transposes / im2col */
  PrunusTeam *team; /* the sparse kernels split with it: the engine's, NULL in a split batch */
} Workspace;

/* Batch sizes AUTO measures; a forward of B uses the largest one <= B. */
#define AUTO_MAX_BUCKETS 12

typedef struct {
  PrunusLayer l;     /* shapes, ops and slab offsets (into the engine's slab), as run:
                      * with padding rows (see `padding`), when it has some */
  PrunusLayer shape; /* l as the network has it: what the queries report */
  PrunusCsr *csr;    /* SPARSE / AUTO: the nonzero weights by output row */
  gboolean sparse[AUTO_MAX_BUCKETS]; /* AUTO: sparse wins at bucket k */
  uint64_t nnz;                      /* nonzero (and unmasked) weights */
  PrunusConvPrepared conv;           /* DENSE, SHRUNK, AUTO: a conv's weights as its kernel lays
                                      * them out on every training call, laid out once */
} EngineLayer;

struct PrunusEngine {
  PrunusEngineKind kind;
  int n_layers;
  EngineLayer *layers; /* (n_layers) */
  size_t in_size;
  int n_classes;
  size_t n_params;
  float *params; /* (n_params + n_buffers) masked weights and biases, then the buffers
                  * of the batchnorms a graph keeps (running statistics) */
  size_t n_buffers;
  PrunusInferPlan *plan; /* graphs: steps and buffers; NULL for a sequence */
  float *mask;           /* (n_params) MASKED only */
  float *wm;             /* (n_params) MASKED only: params * mask, rebuilt every forward */
  int threads;
  PrunusTeam *team; /* threads > 1: the helpers the sparse kernels split with */
  int n_buckets;
  int buckets[AUTO_MAX_BUCKETS];
  Workspace ws[2]; /* [0] the caller's; [1] the helper's share of a split batch */
  PrunusEnginePadding padding;
  int pad_batch;        /* DENSE / SHRUNK: the largest batch size padding was measured at */
  int pad_blas_threads; /* and the BLAS threads it was measured with */
};

const char *prunus_engine_kind_name(PrunusEngineKind kind) {
  g_return_val_if_fail(kind >= 0 && kind < PRUNUS_ENGINE_N_KINDS, NULL);
  return kind_names[kind];
}

gboolean prunus_engine_kind_from_name(const char *name, PrunusEngineKind *out) {
  for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
    if (!strcmp(kind_names[k], name)) {
      *out = (PrunusEngineKind)k;
      return TRUE;
    }
  }
  return FALSE;
}

static float *floats_new(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, sizeof(float) * (n ? n : 1)) != 0) g_error("out of memory");
  memset(p, 0, sizeof(float) * (n ? n : 1));
  return p;
}

/* ------------------------------------------------------------------------ */
/* workspace */

static void workspace_free(PrunusEngine *e, Workspace *w) {
  if (w->acts)
    for (int i = 0; i <= e->n_layers; i++) free(w->acts[i]);
  if (w->bufs)
    for (int b = 0; b < e->plan->n_bufs; b++) free(w->bufs[b]);
  if (w->scratch && !w->scratch_block)
    for (int i = 0; i < e->n_layers; i++) free(w->scratch[i]);
  free(w->scratch_block);
  w->scratch_block = NULL;
  g_clear_pointer(&w->acts, g_free);
  g_clear_pointer(&w->bufs, g_free);
  g_clear_pointer(&w->scratch, g_free);
  free(w->tmp);
  w->tmp = NULL;
  w->max_batch = 0;
}

static size_t act_size(const PrunusEngine *e, int i) {
  return i < e->n_layers ? prunus_shape_size(e->layers[i].l.in)
                         : prunus_shape_size(e->layers[e->n_layers - 1].l.out);
}

/* Floats the sparse path of layer l needs for a batch of B. */
static size_t sparse_tmp_size(const PrunusLayer *l, int B) {
  if (l->spec.type == PRUNUS_LAYER_CONV2D)
    return (size_t)l->fan_in * l->out.h * l->out.w; /* colT (cin*k*k, Ho*Wo), one sample */
  return (size_t)B * (l->in.c + l->out.c);          /* xT (in, B) and yT (out, B) */
}

/* A graph runs its batch this many samples at a time, so that the activations a
 * layer reads and writes stay in the cache (docs/perf-log.md has the measurements). */
#define GRAPH_CHUNK 16

static void reserve_graph(PrunusEngine *e, Workspace *w, int B) {
  const PrunusInferPlan *plan = e->plan;
  w->bufs = g_new0(float *, MAX(plan->n_bufs, 1));
  for (int b = 0; b < plan->n_bufs; b++) w->bufs[b] = floats_new((size_t)B * plan->buf_floats[b]);
  size_t scratch_len = 0, tmp_len = 0;
  for (int i = 0; i < e->n_layers; i++) {
    const PrunusLayer *l = &e->layers[i].l;
    scratch_len = MAX(scratch_len, l->ops->scratch_size(l, B));
    if (e->layers[i].csr) tmp_len = MAX(tmp_len, sparse_tmp_size(l, B));
  }
  w->scratch_block = floats_new(scratch_len);
  w->scratch = g_new0(float *, e->n_layers);
  for (int i = 0; i < e->n_layers; i++) w->scratch[i] = w->scratch_block;
  w->tmp = tmp_len ? floats_new(tmp_len) : NULL;
}

static void reserve_batch(PrunusEngine *e, Workspace *w, int B) {
  if (e->plan) B = MIN(B, GRAPH_CHUNK);
  if (B <= w->max_batch) return;
  workspace_free(e, w);
  w->max_batch = B;
  if (e->plan) {
    reserve_graph(e, w, B);
    return;
  }
  w->acts = g_new0(float *, e->n_layers + 1);
  w->scratch = g_new0(float *, e->n_layers);
  for (int i = 0; i <= e->n_layers; i++) w->acts[i] = floats_new((size_t)B * act_size(e, i));
  size_t tmp_len = 0;
  for (int i = 0; i < e->n_layers; i++) {
    const PrunusLayer *l = &e->layers[i].l;
    size_t n = l->ops->scratch_size(l, B);
    w->scratch[i] = n ? floats_new(n) : NULL;
    if (e->layers[i].csr) tmp_len = MAX(tmp_len, sparse_tmp_size(l, B));
  }
  w->tmp = tmp_len ? floats_new(tmp_len) : NULL;
}

/* ------------------------------------------------------------------------ */
/* the sparse path of one layer */

/* colT (cin*k*k, Ho*Wo) of one sample x (cin, H, W). */
static void im2col_t(const PrunusLayer *l, const float *x, float *colT) {
  int C = l->in.c, H = l->in.h, W = l->in.w, k = l->spec.kernel, s = l->spec.stride,
      p = l->spec.padding, Ho = l->out.h, Wo = l->out.w;
  size_t HWo = (size_t)Ho * Wo;
  for (int c = 0; c < C; c++) {
    const float *xc = x + (size_t)c * H * W;
    for (int kh = 0; kh < k; kh++) {
      for (int kw = 0; kw < k; kw++) {
        float *row = colT + ((size_t)(c * k + kh) * k + kw) * HWo;
        for (int oh = 0; oh < Ho; oh++) {
          int ih = oh * s - p + kh;
          for (int ow = 0; ow < Wo; ow++) {
            int iw = ow * s - p + kw;
            *row++ = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? xc[ih * W + iw] : 0.0f;
          }
        }
      }
    }
  }
}

/* Batches from this size run a dense layer's sparse path as SpMM on the transposed
 * batch; smaller ones as one SpMV per sample. */
#define SPMM_MIN_BATCH 4

/* x (B, in) or, when x_t, xT (in, B); y (B, out) or, when y_t, yT (out, B). */
static void sparse_forward(PrunusEngine *e, Workspace *w, const EngineLayer *el, const float *x,
                           float *y, int B, gboolean x_t, gboolean y_t) {
  const PrunusLayer *l = &el->l;
  const float *bias = e->params + l->b_off;
  if (l->spec.type == PRUNUS_LAYER_CONV2D) {
    size_t in = prunus_shape_size(l->in), out = prunus_shape_size(l->out);
    int HWo = l->out.h * l->out.w;
    for (int b = 0; b < B; b++) {
      im2col_t(l, x + (size_t)b * in, w->tmp);
      /* y (cout, Ho*Wo) = W (cout, K) colT (K, Ho*Wo): channels-first already */
      prunus_csr_spmm_t(el->csr, w->tmp, HWo, bias, y + (size_t)b * out, w->team);
    }
    return;
  }
  int in = l->in.c, out = l->out.c;
  if (B < SPMM_MIN_BATCH) {
    for (int b = 0; b < B; b++)
      prunus_csr_spmv(el->csr, x + (size_t)b * in, bias, y + (size_t)b * out, w->team);
    return;
  }
  const float *xT = x;
  float *yT = y_t ? y : w->tmp + (size_t)in * B;
  if (!x_t) {
    prunus_transpose(x, B, in, w->tmp);
    xT = w->tmp;
  }
  prunus_csr_spmm_t(el->csr, xT, B, bias, yT, w->team);
  if (!y_t) prunus_transpose(yT, out, B, y);
}

static int bucket_of(const PrunusEngine *e, int B) {
  int k = 0;
  while (k + 1 < e->n_buckets && e->buckets[k + 1] <= B) k++;
  return k;
}

static gboolean runs_sparse(const PrunusEngine *e, const EngineLayer *el, int B) {
  if (!el->csr) return FALSE;
  if (e->plan) B = MIN(B, GRAPH_CHUNK); /* a graph's layers see a chunk at a time */
  if (e->kind == PRUNUS_ENGINE_AUTO) return el->sparse[bucket_of(e, B)];
  return TRUE;
}

/* Layer i runs as SpMM on the transposed batch. */
static gboolean runs_spmm(const PrunusEngine *e, int i, int B) {
  const EngineLayer *el = &e->layers[i];
  return B >= SPMM_MIN_BATCH && el->l.spec.type == PRUNUS_LAYER_DENSE && runs_sparse(e, el, B);
}

/* The output of layer i (an SpMM, or a relu of a transposed batch) may stay
 * transposed: only relus (elementwise, indifferent to the layout) stand between it
 * and a layer taking it as its SpMM operand. Saves two transposes per layer. */
static gboolean output_stays_transposed(const PrunusEngine *e, int i, int B) {
  int j = i + 1;
  while (j < e->n_layers && e->layers[j].l.spec.type == PRUNUS_LAYER_RELU) j++;
  return j < e->n_layers && runs_spmm(e, j, B);
}

/* A conv the Winograd or channel-interleaved kernels run (as layers.c picks them: a
 * single-channel first layer goes to the direct kernel first) gets its weights laid out
 * once: at batch 1 that layout is most of the time of a call. Engines whose weights
 * change per call (MASKED) or that run CSR only (SPARSE) do not. */
static void prepare_convs(PrunusEngine *e) {
  if (e->kind == PRUNUS_ENGINE_MASKED || e->kind == PRUNUS_ENGINE_SPARSE) return;
  for (int i = 0; i < e->n_layers; i++) {
    EngineLayer *el = &e->layers[i];
    if (el->l.spec.type != PRUNUS_LAYER_CONV2D) continue;
    PrunusConvGeom g = prunus_layer_conv_geom(&el->l);
    if (!prunus_conv_direct_covers(&g)) prunus_conv_prepare(&g, e->params + el->l.w_off, &el->conv);
  }
}

/* Layer i on the dense path: a conv with prepared weights through them. */
static void dense_forward(PrunusEngine *e, int i, const float *x, float *y, float *scratch, int B) {
  const EngineLayer *el = &e->layers[i];
  const PrunusLayer *l = &el->l;
  if (el->conv.w) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    if (prunus_conv_forward_prepared(&g, &el->conv, x, l->b_len ? e->params + l->b_off : NULL, y,
                                     scratch, B, NULL))
      return;
  }
  l->ops->forward(l, e->params, x, y, scratch, B);
}

/* x_t, y_t: as for sparse_forward; only the sparse path and relu take them. */
static void layer_forward(PrunusEngine *e, Workspace *w, int i, const float *x, float *y, int B,
                          gboolean x_t, gboolean y_t) {
  EngineLayer *el = &e->layers[i];
  const PrunusLayer *l = &el->l;
  if (runs_sparse(e, el, B)) {
    sparse_forward(e, w, el, x, y, B, x_t, y_t);
  } else if (e->kind == PRUNUS_ENGINE_MASKED && l->ops->has_params) {
    /* what a framework's mask hook does: W * mask, every call */
    float *wm = e->wm + l->w_off;
    const float *W = e->params + l->w_off, *mk = e->mask + l->w_off;
    for (size_t j = 0; j < l->w_len; j++) wm[j] = W[j] * mk[j];
    l->ops->forward(l, e->wm, x, y, w->scratch[i], B);
  } else {
    g_assert(x_t == y_t && (!x_t || l->spec.type == PRUNUS_LAYER_RELU));
    dense_forward(e, i, x, y, w->scratch[i], B);
  }
}

/* y = max(x, 0) (0 for NaN, as the relu layer); y may be x. */
static void relu_into(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* y = x[0] + x[1] + ... in input order, as the add layer sums, then the relu when
 * `relu`; y may be one of the x (each element is read before it is written). */
static void add_into(const float *const *x, int n_in, float *y, size_t n, gboolean relu) {
  if (n_in == 2) {
    const float *a = x[0], *b = x[1];
    if (relu) {
      for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    }
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float v = x[0][i] + x[1][i];
    for (int k = 2; k < n_in; k++) v += x[k][i];
    y[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
  }
}

/* A graph's forward of B samples in workspace w, w->max_batch samples at a time: the
 * plan's steps in order, each layer on the dense, masked or sparse path as a
 * sequence's, the fused relus in place on the output just written. */
static void forward_graph(PrunusEngine *e, Workspace *w, const float *x, int B, float *logits) {
  const PrunusInferPlan *plan = e->plan;
  for (int b0 = 0; b0 < B; b0 += w->max_batch) {
    int nb = MIN(w->max_batch, B - b0);
    const float *x0 = x + (size_t)b0 * e->in_size;
    float *y0 = logits + (size_t)b0 * e->n_classes;
    for (int s = 0; s < plan->n_steps; s++) {
      const PrunusPlanStep *st = &plan->steps[s];
      const PrunusLayer *l = &e->layers[st->layer].l;
      const float *in[PRUNUS_LAYER_MAX_INPUTS];
      for (int k = 0; k < st->n_in; k++)
        in[k] = st->in[k] == PRUNUS_PLAN_INPUT ? x0 : w->bufs[st->in[k]];
      float *out = st->out == PRUNUS_PLAN_OUTPUT ? y0 : w->bufs[st->out];
      size_t n = (size_t)nb * prunus_shape_size(l->out);
      gboolean relu = st->relu >= 0;
      switch (l->spec.type) {
      case PRUNUS_LAYER_ADD:
        add_into(in, st->n_in, out, n, relu);
        relu = FALSE;
        break;
      case PRUNUS_LAYER_RELU:
        relu_into(in[0], out, n);
        break;
      default:
        if (l->ops->forward_n)
          l->ops->forward_n(l, e->params, in, out, w->scratch[st->layer], nb);
        else
          layer_forward(e, w, st->layer, in[0], out, nb, FALSE, FALSE);
        break;
      }
      if (relu) relu_into(out, out, n);
    }
  }
}

/* The forward of B samples in workspace w (reserved for B). */
static void forward_batch(PrunusEngine *e, Workspace *w, const float *x, int B, float *logits) {
  if (e->plan) {
    forward_graph(e, w, x, B, logits);
    return;
  }
  const float *in = x;
  gboolean in_t = FALSE; /* `in` is transposed: (features, B) */
  for (int i = 0; i < e->n_layers; i++) {
    if (e->layers[i].l.spec.type == PRUNUS_LAYER_FLATTEN && i < e->n_layers - 1)
      continue; /* channels-first memory is already flat: nothing to copy */
    float *out = i == e->n_layers - 1 ? logits : w->acts[i + 1];
    gboolean out_t = (in_t || runs_spmm(e, i, B)) && output_stays_transposed(e, i, B);
    layer_forward(e, w, i, in, out, B, in_t, out_t);
    in = out;
    in_t = out_t;
  }
}

/* From this batch size, when every layer with parameters runs sparse, the batch is
 * split between the threads, each running the whole network on its samples: no
 * data crosses cores and threads meet once per forward (splitting every product's
 * rows instead, each core reads what the other wrote between layers, and the
 * cache-line traffic ate the second thread's gain). */
#define SPLIT_BATCH_MIN 64

static gboolean splits_batch(const PrunusEngine *e, int B) {
  if (!e->team || B < SPLIT_BATCH_MIN) return FALSE;
  int part = B / prunus_team_threads(e->team);
  for (int i = 0; i < e->n_layers; i++)
    if (e->layers[i].l.ops->has_params && !runs_sparse(e, &e->layers[i], part)) return FALSE;
  return TRUE;
}

/* One prunus_engine_forward call: a split batch's parts, or a timed forward. */
typedef struct {
  PrunusEngine *e;
  const float *x; /* (B, input) */
  int B;
  float *logits; /* (B, n_classes) */
} EngineForward;

static void forward_part(void *arg, int part, int n_parts) {
  const EngineForward *f = arg;
  PrunusEngine *e = f->e;
  int b0 = prunus_team_share(f->B, part, n_parts), b1 = prunus_team_share(f->B, part + 1, n_parts);
  forward_batch(e, &e->ws[part], f->x + (size_t)b0 * e->in_size, b1 - b0,
                f->logits + (size_t)b0 * e->n_classes);
}

void prunus_engine_forward(PrunusEngine *e, const float *x, int B, float *logits) {
  g_return_if_fail(B > 0);
  if (splits_batch(e, B)) {
    int n = prunus_team_threads(e->team);
    g_assert(n <= (int)G_N_ELEMENTS(e->ws));
    for (int p = 0; p < n; p++) {
      reserve_batch(e, &e->ws[p], (B + n - 1) / n);
      e->ws[p].team = NULL;
    }
    EngineForward f = {e, x, B, logits};
    prunus_team_run(e->team, forward_part, &f);
    return;
  }
  reserve_batch(e, &e->ws[0], B);
  e->ws[0].team = e->team;
  forward_batch(e, &e->ws[0], x, B, logits);
}

/* ------------------------------------------------------------------------ */
/* building */

/* Median of 5 timed calls of layer i (after one warm-up), sparse or dense path. */
static double time_layer(PrunusEngine *e, int i, const float *x, float *y, int B, gboolean sparse) {
  EngineLayer *el = &e->layers[i];
  double t[5];
  for (int r = -1; r < 5; r++) {
    double t0 = prunus_now_us();
    if (sparse)
      sparse_forward(e, &e->ws[0], el, x, y, B, FALSE, FALSE);
    else
      dense_forward(e, i, x, y, e->ws[0].scratch[i], B);
    if (r >= 0) t[r] = prunus_now_us() - t0;
  }
  return prunus_median(t, 5);
}

/* Per layer and bucket: does sparse beat dense? Layers where dense wins at every
 * bucket drop their CSR (rebuilt from params when measured again). */
static void auto_measure(PrunusEngine *e, int max_batch) {
  if (e->plan) max_batch = MIN(max_batch, GRAPH_CHUNK);
  e->n_buckets = 0;
  for (int B = 1; B < max_batch && e->n_buckets < AUTO_MAX_BUCKETS - 1; B *= 4)
    e->buckets[e->n_buckets++] = B;
  e->buckets[e->n_buckets++] = max_batch;
  for (int i = 0; i < e->n_layers; i++) {
    EngineLayer *el = &e->layers[i];
    if (el->l.ops->has_params && !el->csr)
      el->csr = prunus_csr_from_dense(e->params + el->l.w_off, NULL, el->l.out.c, el->l.fan_in);
  }
  Workspace *w = &e->ws[0];
  int batch = MAX(w->max_batch, max_batch);
  workspace_free(e, w); /* sized again for the sparse path of every layer */
  reserve_batch(e, w, batch);
  w->team = e->team;
  PrunusRng rng;
  prunus_rng_seed(&rng, 777);
  for (int i = 0; i < e->n_layers; i++) {
    EngineLayer *el = &e->layers[i];
    if (!el->csr) continue;
    size_t n = (size_t)max_batch * prunus_shape_size(el->l.in);
    /* a sequence's layer: its own input and output buffers (right size, not in use
     * yet); a graph's: buffers of its own */
    float *x = e->plan ? floats_new(n) : w->acts[i];
    float *y =
        e->plan ? floats_new((size_t)max_batch * prunus_shape_size(el->l.out)) : w->acts[i + 1];
    for (size_t j = 0; j < n; j++) x[j] = (float)prunus_rng_normal(&rng);
    /* a dense layer's batches under SPMM_MIN_BATCH run SpMVs: by rows of the CSR, or
     * by its slices (AVX-512), which hold 2-3 times its bytes: kept where they beat
     * both in every such bucket (one layout serves them all) */
    prunus_csr_slices_drop(el->csr);
    double td[AUTO_MAX_BUCKETS], ts[AUTO_MAX_BUCKETS], tl[AUTO_MAX_BUCKETS];
    gboolean spmv = FALSE, slices_win = TRUE;
    for (int k = 0; k < e->n_buckets; k++) {
      td[k] = time_layer(e, i, x, y, e->buckets[k], FALSE);
      ts[k] = time_layer(e, i, x, y, e->buckets[k], TRUE);
    }
    if (el->l.spec.type == PRUNUS_LAYER_DENSE) prunus_csr_slices_build(el->csr);
    for (int k = 0; k < e->n_buckets && el->csr->slices; k++) {
      if (e->buckets[k] >= SPMM_MIN_BATCH) continue;
      tl[k] = time_layer(e, i, x, y, e->buckets[k], TRUE);
      spmv = TRUE, slices_win &= tl[k] < ts[k] && tl[k] < td[k];
    }
    if (!(spmv && slices_win)) prunus_csr_slices_drop(el->csr);
    for (int k = 0; k < e->n_buckets; k++)
      el->sparse[k] = (el->csr->slices && e->buckets[k] < SPMM_MIN_BATCH ? tl[k] : ts[k]) < td[k];
    if (e->plan) free(x), free(y);
    gboolean any = FALSE;
    for (int k = 0; k < e->n_buckets; k++) any |= el->sparse[k];
    if (!any) g_clear_pointer(&el->csr, prunus_csr_free); /* dense at every batch size */
  }
}

/* ------------------------------------------------------------------------ */
/* padding (DENSE, SHRUNK): the BLAS layout of a dense layer and its successor */

/* Outputs are padded to a multiple of this: OpenBLAS's AVX-512 sgemm works in 16-wide
 * tiles, and with 2 threads it halves a product's outputs, so odd unit counts leave
 * ragged tails on both halves. Whether padding pays is measured per layer (below). */
#define PAD_MULTIPLE 16

/* The dense layer that dense layer p feeds through relus only (relu(0) = 0: its zero
 * rows stay zero up to there), or -1. */
static int pad_successor(const PrunusEngine *e, int p) {
  if (e->layers[p].shape.spec.type != PRUNUS_LAYER_DENSE) return -1;
  int q = p + 1;
  while (q < e->n_layers && e->layers[q].shape.spec.type == PRUNUS_LAYER_RELU) q++;
  return q < e->n_layers && e->layers[q].shape.spec.type == PRUNUS_LAYER_DENSE ? q : -1;
}

/* (transfer full) e's network laid out with dense layer i computing width[i] outputs
 * (>= its units; the others zero rows with zero bias) and the layers after it (relus,
 * then the dense layer reading them through zero columns) sized to match; width[i]
 * of other layers is ignored. Fills layers (n_layers; shapes, offsets) and returns
 * the parameter slab (*n_params floats), copied from e's current layout. */
static float *pad_layout(const PrunusEngine *e, const int *width, EngineLayer *layers,
                         size_t *n_params) {
  size_t off = 0;
  int c = 0; /* width of the activation flowing between dense and relu layers */
  for (int i = 0; i < e->n_layers; i++) {
    const PrunusLayer *s = &e->layers[i].shape;
    PrunusLayer *l = &layers[i].l;
    *l = *s;
    if (s->spec.type == PRUNUS_LAYER_RELU && c > 0) {
      l->in.c = l->out.c = c;
    } else if (s->spec.type == PRUNUS_LAYER_DENSE) {
      if (c > 0) l->in.c = l->fan_in = c;
      g_assert(width[i] >= s->out.c);
      l->out.c = l->fan_out = width[i];
      l->w_len = (size_t)l->out.c * l->fan_in;
      l->b_len = (size_t)l->out.c;
      c = width[i];
    } else {
      c = 0;
    }
    l->w_off = off;
    off += l->w_len;
    l->b_off = off;
    off += l->b_len;
  }
  float *params = floats_new(off);
  for (int i = 0; i < e->n_layers; i++) {
    const PrunusLayer *s = &e->layers[i].shape, *from = &e->layers[i].l, *to = &layers[i].l;
    if (!s->ops->has_params) continue;
    if (s->spec.type == PRUNUS_LAYER_DENSE) {
      for (int r = 0; r < s->out.c; r++)
        memcpy(params + to->w_off + (size_t)r * to->fan_in,
               e->params + from->w_off + (size_t)r * from->fan_in, sizeof(float) * s->fan_in);
    } else {
      memcpy(params + to->w_off, e->params + from->w_off, sizeof(float) * s->w_len);
    }
    memcpy(params + to->b_off, e->params + from->b_off, sizeof(float) * s->b_len);
  }
  *n_params = off;
  return params;
}

/* Replace e's layout by the one pad_layout gives for width. */
static void pad_install(PrunusEngine *e, const int *width) {
  EngineLayer *layers = g_memdup2(e->layers, sizeof(EngineLayer) * e->n_layers);
  size_t n;
  float *params = pad_layout(e, width, layers, &n);
  free(e->params);
  g_free(e->layers);
  e->params = params;
  e->n_params = n;
  e->layers = layers;
  for (size_t p = 0; p < G_N_ELEMENTS(e->ws); p++) workspace_free(e, &e->ws[p]);
}

/* Microseconds of n forwards of layers p..q of a layout on x (B, in of p), through
 * the buffers a and b (each B x the widest activation). */
static double time_chain(const EngineLayer *layers, const float *params, int p, int q,
                         const float *x, float *a, float *b, int B, int n) {
  double t0 = prunus_now_us();
  for (int r = 0; r < n; r++) {
    const float *in = x;
    for (int i = p; i <= q; i++) {
      float *out = in == a ? b : a;
      layers[i].l.ops->forward(&layers[i].l, params, in, out, NULL, B);
      in = out;
    }
  }
  return prunus_now_us() - t0;
}

/* Timed samples of each layout per batch size, taken in turn; a sample repeats the
 * layers until it lasts PAD_SAMPLE_US (a lone batch-1 product is under 1 us). */
#define PAD_SAMPLES 15
#define PAD_SAMPLE_US 100.0
/* padded / plain: below PAD_WIN is a win, above PAD_LOSS a loss; between them is
 * run-to-run noise on a shared machine, and the plain layout is kept. */
#define PAD_WIN 0.95
#define PAD_LOSS 1.03

/* Is dense layer p (feeding q) faster padded to width_pad[p] than at width[p]? Both
 * layouts run layers p..q in turn, at max_batch and at batch 1; the median of padded /
 * plain over pairs of samples taken back to back (a burst of other work on the
 * machine slows both of a pair) must be a win at max_batch and no loss at 1. */
static gboolean padding_wins(const PrunusEngine *e, int p, int q, const int *width,
                             const int *width_pad, int max_batch) {
  EngineLayer *la = g_memdup2(e->layers, sizeof(EngineLayer) * e->n_layers),
              *lb = g_memdup2(e->layers, sizeof(EngineLayer) * e->n_layers);
  size_t na, nb;
  float *pa = pad_layout(e, width, la, &na), *pb = pad_layout(e, width_pad, lb, &nb);
  size_t widest = 0;
  for (int i = p; i <= q; i++)
    widest = MAX(widest, MAX(prunus_shape_size(lb[i].l.in), prunus_shape_size(lb[i].l.out)));
  size_t in = prunus_shape_size(la[p].l.in);
  g_assert(in == prunus_shape_size(lb[p].l.in));
  float *x = floats_new((size_t)max_batch * in), *a = floats_new((size_t)max_batch * widest),
        *b = floats_new((size_t)max_batch * widest);
  PrunusRng rng;
  prunus_rng_seed(&rng, 778);
  for (size_t j = 0; j < (size_t)max_batch * in; j++) x[j] = (float)prunus_rng_normal(&rng);
  gboolean pads = TRUE;
  int batches[2] = {max_batch, 1};
  for (int k = 0; k < (max_batch > 1 ? 2 : 1) && pads; k++) {
    int B = batches[k];
    /* warm-up, then how many forwards make a sample */
    time_chain(la, pa, p, q, x, a, b, B, 1), time_chain(lb, pb, p, q, x, a, b, B, 1);
    double t1 = time_chain(la, pa, p, q, x, a, b, B, 1) + time_chain(lb, pb, p, q, x, a, b, B, 1);
    int n = (int)CLAMP(ceil(2.0 * PAD_SAMPLE_US / MAX(t1, 0.01)), 1, 1000);
    double ratio[PAD_SAMPLES]; /* padded / plain of two samples taken back to back */
    for (int r = 0; r < PAD_SAMPLES; r++) {
      double ta, tb;
      if (r & 1) { /* alternate which goes first */
        ta = time_chain(la, pa, p, q, x, a, b, B, n);
        tb = time_chain(lb, pb, p, q, x, a, b, B, n);
      } else {
        tb = time_chain(lb, pb, p, q, x, a, b, B, n);
        ta = time_chain(la, pa, p, q, x, a, b, B, n);
      }
      ratio[r] = tb / MAX(ta, 1e-3);
    }
    double rm = prunus_median(ratio, PAD_SAMPLES);
    pads = k == 0 ? rm < PAD_WIN : rm <= PAD_LOSS;
  }
  free(x), free(a), free(b), free(pa), free(pb);
  g_free(la), g_free(lb);
  return pads;
}

/* Lay e out by its padding mode: every dense layer that feeds another through relus
 * only, its outputs not a multiple of PAD_MULTIPLE, is padded (PAD_ALL) or padded
 * where padding_wins twice in a row (PAD_MEASURED), deciding layer by layer from
 * the input up (a layer is measured with the padding decided for the one before). */
static void pad_measure(PrunusEngine *e, int max_batch, const gboolean *given) {
  g_assert(e->kind == PRUNUS_ENGINE_DENSE || e->kind == PRUNUS_ENGINE_SHRUNK);
  e->pad_batch = max_batch;
  e->pad_blas_threads = prunus_get_threads();
  if (e->plan) return; /* a graph's dense layers (a head) are laid out as they are */
  int *width = g_new0(int, e->n_layers), *width_pad = g_new0(int, e->n_layers);
  for (int i = 0; i < e->n_layers; i++) width[i] = e->layers[i].shape.out.c;
  for (int p = 0; p < e->n_layers && e->padding != PRUNUS_ENGINE_PAD_NONE; p++) {
    int q = pad_successor(e, p), units = width[p];
    if (q < 0 || units % PAD_MULTIPLE == 0) continue;
    memcpy(width_pad, width, sizeof(int) * e->n_layers);
    width_pad[p] = (units + PAD_MULTIPLE - 1) / PAD_MULTIPLE * PAD_MULTIPLE;
    if (given ? given[p]
              : e->padding == PRUNUS_ENGINE_PAD_ALL ||
                    (padding_wins(e, p, q, width, width_pad, max_batch) &&
                     padding_wins(e, p, q, width, width_pad, max_batch))) /* noise wins once */
      width[p] = width_pad[p];
  }
  pad_install(e, width);
  g_free(width), g_free(width_pad);
}

static PrunusEngine *engine_new(const PrunusModel *m, PrunusEngineKind kind, int max_batch,
                                const gboolean *pad, GError **error) {
  if (kind < 0 || kind >= PRUNUS_ENGINE_N_KINDS) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID, "unknown engine kind %d", (int)kind);
    return NULL;
  }
  PrunusModel *plain = prunus_model_to_plain(m, "the inference engines", error);
  if (!plain) return NULL;
  if (max_batch < 1) max_batch = 1;
  const PrunusModel *src = plain;
  PrunusModel *shrunk = NULL;
  if (kind == PRUNUS_ENGINE_SHRUNK) {
    shrunk = prunus_model_shrink_dead(plain, error);
    if (!shrunk) {
      prunus_model_free(plain);
      return NULL;
    }
    src = shrunk;
  }
  PrunusEngine *e = g_new0(PrunusEngine, 1);
  e->kind = kind;
  e->threads = 1;
  e->n_layers = src->n_layers;
  e->in_size = prunus_model_input_size(src);
  e->n_classes = prunus_model_n_classes(src);
  e->n_params = src->n_params;
  e->n_buffers = src->n_buffers;
  e->params = floats_new(src->n_params + src->n_buffers);
  for (size_t j = 0; j < src->n_params; j++) e->params[j] = src->params[j] * src->mask[j];
  memcpy(e->params + src->n_params, src->buffers, sizeof(float) * src->n_buffers);
  if (kind == PRUNUS_ENGINE_MASKED) {
    e->mask = floats_new(src->n_params);
    memcpy(e->mask, src->mask, sizeof(float) * src->n_params);
    e->wm = floats_new(src->n_params);
    memcpy(e->wm, e->params, sizeof(float) * src->n_params); /* biases stay as they are */
  }
  e->layers = g_new0(EngineLayer, e->n_layers);
  for (int i = 0; i < e->n_layers; i++) {
    EngineLayer *el = &e->layers[i];
    el->l = el->shape = src->layers[i];
    el->l.team = el->shape.team = NULL; /* a training team may be gone when the engine runs */
    el->l.training = el->shape.training = FALSE; /* kept batchnorms use running statistics */
    if (!el->l.ops->has_params) continue;
    const float *W = e->params + el->l.w_off;
    for (size_t j = 0; j < el->l.w_len; j++) el->nnz += W[j] != 0.0f;
    if (kind == PRUNUS_ENGINE_SPARSE || kind == PRUNUS_ENGINE_AUTO)
      el->csr = prunus_csr_from_dense(W, NULL, el->l.out.c, el->l.fan_in);
  }
  if (!prunus_model_is_sequence(src)) e->plan = prunus_infer_plan_new(src);
  prepare_convs(e);
  if (kind == PRUNUS_ENGINE_AUTO) auto_measure(e, max_batch);
  if (kind == PRUNUS_ENGINE_DENSE || kind == PRUNUS_ENGINE_SHRUNK) pad_measure(e, max_batch, pad);
  reserve_batch(e, &e->ws[0], max_batch);
  if (shrunk) prunus_model_free(shrunk);
  prunus_model_free(plain);
  return e;
}

PrunusEngine *prunus_engine_new(const PrunusModel *m, PrunusEngineKind kind, int max_batch,
                                GError **error) {
  return engine_new(m, kind, max_batch, NULL, error);
}

PrunusEngine *prunus_engine_new_padded(const PrunusModel *m, PrunusEngineKind kind, int max_batch,
                                       const gboolean *pad, GError **error) {
  g_return_val_if_fail(pad != NULL, NULL);
  return engine_new(m, kind, max_batch, pad, error);
}

void prunus_engine_free(PrunusEngine *e) {
  if (!e) return;
  for (size_t p = 0; p < G_N_ELEMENTS(e->ws); p++) workspace_free(e, &e->ws[p]);
  prunus_infer_plan_free(e->plan);
  prunus_team_free(e->team);
  for (int i = 0; i < e->n_layers; i++) {
    prunus_csr_free(e->layers[i].csr);
    prunus_conv_prepared_clear(&e->layers[i].conv);
  }
  g_free(e->layers);
  free(e->params);
  free(e->mask);
  free(e->wm);
  g_free(e);
}

/* ------------------------------------------------------------------------ */
/* queries */

void prunus_engine_set_threads(PrunusEngine *e, int threads) {
  g_return_if_fail(threads >= 1);
  threads = MIN(threads, 2);
  if (e->kind == PRUNUS_ENGINE_DENSE || e->kind == PRUNUS_ENGINE_SHRUNK) {
    if (e->padding == PRUNUS_ENGINE_PAD_MEASURED && prunus_get_threads() != e->pad_blas_threads)
      pad_measure(e, e->pad_batch, NULL);
    return; /* BLAS only: no threads of their own */
  }
  if (threads == e->threads) return;
  g_clear_pointer(&e->team, prunus_team_free);
  gboolean has_csr = e->kind == PRUNUS_ENGINE_SPARSE || e->kind == PRUNUS_ENGINE_AUTO;
  e->team = threads > 1 && has_csr ? prunus_team_new(threads) : NULL;
  e->threads = e->team ? threads : 1;
  if (e->kind == PRUNUS_ENGINE_AUTO) auto_measure(e, e->buckets[e->n_buckets - 1]);
}

void prunus_engine_set_padding(PrunusEngine *e, PrunusEnginePadding mode) {
  g_return_if_fail(mode >= PRUNUS_ENGINE_PAD_MEASURED && mode <= PRUNUS_ENGINE_PAD_ALL);
  e->padding = mode;
  if (e->kind == PRUNUS_ENGINE_DENSE || e->kind == PRUNUS_ENGINE_SHRUNK)
    pad_measure(e, e->pad_batch, NULL);
}

size_t prunus_engine_weight_bytes(const PrunusEngine *e) {
  size_t bytes = 0;
  for (int i = 0; i < e->n_layers; i++) {
    const EngineLayer *el = &e->layers[i];
    if (el->l.spec.type == PRUNUS_LAYER_BATCHNORM) /* kept in a graph: scale, shift, statistics */
      bytes += sizeof(float) * (el->l.b_len + el->l.buf_len);
    if (!el->l.ops->has_params) continue;
    bytes += sizeof(float) * el->l.b_len;
    gboolean keeps_dense = e->kind != PRUNUS_ENGINE_SPARSE;
    if (e->kind == PRUNUS_ENGINE_AUTO &&
        el->csr) { /* dense weights only where some batch uses them */
      keeps_dense = FALSE;
      for (int k = 0; k < e->n_buckets; k++) keeps_dense |= !el->sparse[k];
    }
    if (keeps_dense) bytes += sizeof(float) * el->l.w_len;
    if (e->kind == PRUNUS_ENGINE_MASKED) bytes += sizeof(float) * el->l.w_len;
    if (el->csr) bytes += prunus_csr_bytes(el->csr);
  }
  return bytes;
}

int prunus_engine_n_layers(const PrunusEngine *e) { return e->n_layers; }

size_t prunus_engine_activation_floats(const PrunusEngine *e) {
  if (e->plan) return prunus_infer_plan_floats(e->plan);
  size_t n = 0;
  for (int i = 0; i <= e->n_layers; i++) n += act_size(e, i);
  return n;
}

const PrunusLayer *prunus_engine_layer(const PrunusEngine *e, int i) {
  g_return_val_if_fail(i >= 0 && i < e->n_layers, NULL);
  return &e->layers[i].shape;
}

int prunus_engine_layer_padding(const PrunusEngine *e, int i) {
  g_return_val_if_fail(i >= 0 && i < e->n_layers, 0);
  const EngineLayer *el = &e->layers[i];
  return el->shape.ops->has_params ? el->l.out.c - el->shape.out.c : 0; /* not the relus' */
}

const char *prunus_engine_layer_choice(const PrunusEngine *e, int i, int B) {
  g_return_val_if_fail(i >= 0 && i < e->n_layers, NULL);
  const EngineLayer *el = &e->layers[i];
  if (!el->l.ops->has_params) return NULL;
  if (!runs_sparse(e, el, B)) return "dense";
  return B < SPMM_MIN_BATCH && el->csr->slices ? "slices" : "sparse";
}

char *prunus_engine_padding_text(const PrunusEngine *e) {
  GString *text = g_string_new(NULL);
  for (int i = 0; i < e->n_layers; i++) {
    int pad = prunus_engine_layer_padding(e, i);
    if (pad > 0)
      g_string_append_printf(text, "%s%s:%d+%d", text->len ? "," : "", e->layers[i].shape.name,
                             e->layers[i].shape.out.c, pad);
  }
  return g_string_free(text, text->len == 0);
}

double prunus_engine_layer_sparsity(const PrunusEngine *e, int i) {
  g_return_val_if_fail(i >= 0 && i < e->n_layers, NAN);
  const EngineLayer *el = &e->layers[i];
  if (!el->shape.ops->has_params || el->shape.w_len == 0) return NAN;
  return 1.0 - (double)el->nnz / (double)el->shape.w_len;
}

uint64_t prunus_engine_flops(const PrunusEngine *e) {
  uint64_t total = 0;
  for (int i = 0; i < e->n_layers; i++) {
    const EngineLayer *el = &e->layers[i];
    if (!el->l.ops->has_params) continue;
    uint64_t positions =
        el->l.spec.type == PRUNUS_LAYER_CONV2D ? (uint64_t)el->l.out.h * el->l.out.w : 1;
    total += 2 * el->nnz * positions;
  }
  return total;
}

static void engine_forward(void *ctx) {
  EngineForward *f = ctx;
  prunus_engine_forward(f->e, f->x, f->B, f->logits);
}

/* A forward of B seeded random samples, ready to time. */
static EngineForward timed_forward_new(PrunusEngine *e, int B) {
  size_t n = (size_t)B * e->in_size;
  float *x = g_new(float, n); /* (B, input) */
  PrunusRng rng;
  prunus_rng_seed(&rng, 12345);
  for (size_t i = 0; i < n; i++) x[i] = (float)prunus_rng_normal(&rng);
  return (EngineForward){e, x, B, g_new(float, (size_t)B * e->n_classes)};
}

static void timed_forward_free(EngineForward *f) {
  g_free((float *)f->x);
  g_free(f->logits);
}

double prunus_engine_latency_us(PrunusEngine *e, int B, double budget_seconds, int min_runs) {
  EngineForward f = timed_forward_new(e, B);
  double us = prunus_latency_us(engine_forward, &f, budget_seconds, min_runs);
  timed_forward_free(&f);
  return us;
}

PrunusLatency prunus_engine_latency_adaptive(PrunusEngine *e, int B,
                                             const PrunusLatencyPlan *plan) {
  EngineForward f = timed_forward_new(e, B);
  PrunusLatency r = prunus_latency_adaptive(engine_forward, &f, plan);
  timed_forward_free(&f);
  return r;
}
