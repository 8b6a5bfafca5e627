/* layer.h: the layer contract: per-sample shapes, what the config says about a layer
 * (its type, settings, name and inputs), a built layer (shapes, slab offsets) and the
 * kernel table every layer type fills (layers*.c); model.c builds and runs a graph of them. */
#ifndef PRUNUS_LAYER_H
#define PRUNUS_LAYER_H

#include "conv_gemm.h"
#include "team.h"

#include <prunus/prunus.h>
#include <string.h>

G_BEGIN_DECLS

/* Per-sample tensor shape, channels-first. A dense layer's output is (units, 1, 1). */
typedef struct {
  int c, h, w;
} PrunusShape;

static inline size_t prunus_shape_size(PrunusShape s) { return (size_t)s.c * s.h * s.w; }

typedef enum {
  PRUNUS_LAYER_DENSE,
  PRUNUS_LAYER_CONV2D,
  PRUNUS_LAYER_MAXPOOL2D,
  PRUNUS_LAYER_RELU,
  PRUNUS_LAYER_FLATTEN,
  PRUNUS_LAYER_BATCHNORM,     /* layers_norm.c */
  PRUNUS_LAYER_ADD,           /* layers_merge.c */
  PRUNUS_LAYER_CONCAT,        /* layers_merge.c */
  PRUNUS_LAYER_AVGPOOL2D,     /* layers_avgpool.c */
  PRUNUS_LAYER_GLOBALAVGPOOL, /* layers_avgpool.c */
  PRUNUS_LAYER_N_TYPES
} PrunusLayerType;

/* Longest layer name, with its terminating zero. */
#define PRUNUS_LAYER_NAME_MAX 64
/* Most inputs one layer (add, concat) takes. */
#define PRUNUS_LAYER_MAX_INPUTS 8
/* The producer index that stands for the model's input. */
#define PRUNUS_LAYER_INPUT (-1)

/* What the config says about one layer. All zeros is a valid start: no name (the
 * layer is called by its index) and no inputs listed (it takes the previous layer's
 * output, or the model's input for layer 0), so hand-built sequences need neither. */
typedef struct {
  PrunusLayerType type;
  int units;        /* dense: output features */
  int channels;     /* conv2d: output channels */
  int kernel;       /* conv2d / maxpool2d / avgpool2d: square kernel size */
  int stride;       /* conv2d / maxpool2d / avgpool2d (pool default = kernel) */
  int padding;      /* conv2d: zero padding on each side */
  gboolean no_bias; /* conv2d: no bias (config `bias = false`, e.g. before a batchnorm) */
  float momentum;   /* batchnorm: weight of the batch in the running statistics */
  float eps;        /* batchnorm: added to the variance */
  char name[PRUNUS_LAYER_NAME_MAX]; /* "" = the layer's index, as nn.Sequential names it */
  int n_inputs;                     /* 0 = the previous layer; else the layers listed in inputs */
  int inputs[PRUNUS_LAYER_MAX_INPUTS]; /* producer layer indices, each lower than this
                                        * layer's; PRUNUS_LAYER_INPUT = the model's input */
} PrunusLayerSpec;

typedef struct PrunusLayerOps PrunusLayerOps;
typedef struct PrunusSpDense PrunusSpDense; /* spdense.h */

/* One layer of a built model: shapes and where its parameters sit in the slabs. */
typedef struct {
  PrunusLayerSpec spec;
  const PrunusLayerOps *ops;
  char name[PRUNUS_LAYER_NAME_MAX];  /* spec.name, or the index: "1" */
  int n_in;                          /* inputs: 1, or 2+ for add and concat */
  int from[PRUNUS_LAYER_MAX_INPUTS]; /* the layer each input comes from, in model order;
                                      * PRUNUS_LAYER_INPUT = the model's input */
  int in_c[PRUNUS_LAYER_MAX_INPUTS]; /* channels of each input (concat stacks them) */
  PrunusShape in, out;               /* per-sample shapes; `in` is the first input's */
  size_t w_off, w_len;               /* the weight, what pruning sees: dense (out, in);
                                      * conv (cout, cin, k, k); none in other types */
  size_t b_off, b_len;               /* right after it, parameters pruning never touches:
                                      * the bias (out) or (cout), if any; batchnorm's
                                      * scale (C) then shift (C) */
  size_t buf_off, buf_len;           /* buffers at params + buf_off, past the parameters
                                      * (no optimizer or mask reaches them): batchnorm's
                                      * running mean (C) then variance (C) */
  int fan_in, fan_out;               /* per output unit: in or cin*k*k; units or cout*k*k */
  PrunusTeam *team;                  /* borrowed: threads the layer's own kernels (not BLAS) split
                                      * a batch over; NULL = the calling thread only. Set by
                                      * prunus_train for its duration (then NULL again) */
  gboolean grads_zeroed;             /* the weight gradients read 0 before each backward, so
                                      * products may add onto them instead of clearing them
                                      * first; set by prunus_train for its duration (its
                                      * optimizer zeroes the gradients it used) */
  gboolean training;                 /* batchnorm: normalise with the batch's statistics (and
                                      * keep them in scratch for backward) rather than the
                                      * running ones; set by prunus_model_set_training */
  float *sparse_input;               /* borrowed: a dense layer's room for the sparse-input
                                      * kernels (sparse_input.h), W^T (in, out) then x^T (in,
                                      * B), set by prunus_train for its duration where they
                                      * run (NULL: sgemm, as evaluation and the engines use) */
  PrunusSpDense *sparse;             /* borrowed: a dense layer's kernels over its alive weights
                                      * (spdense.h), set while prunus_train or an evaluation runs
                                      * it so (prunus_train_attach_sparse); NULL: dense kernels.
                                      * Its backward leaves the weight gradient in sparse->grad */
} PrunusLayer;

/* Per-layer kernel table; one entry per PrunusLayerType (kann's op list). Single-input
 * types fill forward/backward; add and concat fill forward_n/backward_n instead. */
struct PrunusLayerOps {
  const char *type_name; /* "dense", as written in configs */
  /* The layer has weights pruning sees (w_len > 0): dense and conv2d, the layers with
   * units. batchnorm's scale and shift are parameters too (trained, saved), but in the
   * b span, never pruned: has_params is FALSE for it. */
  gboolean has_params;
  /* Fill l->out, w_len, b_len, buf_len, fan_in and fan_out from l->spec, l->n_in and
   * the input shapes in[0 .. l->n_in) (named in_names[k] in messages: a layer's name,
   * or "input"); FALSE + error when the inputs do not fit. */
  gboolean (*infer)(PrunusLayer *l, const PrunusShape *in, const char *const *in_names,
                    GError **error);
  /* Scratch floats needed for a batch of B. */
  size_t (*scratch_size)(const PrunusLayer *l, int B);
  /* y (B, out) from x (B, in). params: the model's slab; buffers at params + buf_off. */
  void (*forward)(const PrunusLayer *l, const float *params, const float *x, float *y,
                  float *scratch, int B);
  /* Accumulate dparams from x and dy; write dx (B, in) when dx != NULL. */
  void (*backward)(const PrunusLayer *l, const float *params, float *grads, const float *x,
                   const float *y, const float *dy, float *dx, float *scratch, int B);
  /* Several inputs: y (B, out) from x[k] (B, input k), k < l->n_in. */
  void (*forward_n)(const PrunusLayer *l, const float *params, const float *const *x, float *y,
                    float *scratch, int B);
  /* Write dx[k] (B, input k) for each k with dx[k] != NULL. */
  void (*backward_n)(const PrunusLayer *l, const float *params, float *grads, const float *const *x,
                     const float *y, const float *dy, float *const *dx, float *scratch, int B);
  /* Training only, after forward: fold the batch statistics the forward left in
   * scratch into the buffers (buffers = params + buf_off of the model's slab); NULL
   * for types without buffers. */
  void (*update_buffers)(const PrunusLayer *l, float *buffers, const float *scratch, int B);
  /* Set the b span and the buffers (params + buf_off) to their initial values
   * (batchnorm: scale 1, shift 0, mean 0, variance 1); NULL: the b span is 0. The
   * weights are the model's to draw (prunus_model_init_params). */
  void (*reset)(const PrunusLayer *l, float *params);
};

const PrunusLayerOps *prunus_layer_ops(PrunusLayerType type);
/* Floats a dense layer's sparse_input room holds for batches up to B. */
size_t prunus_dense_sparse_input_floats(const PrunusLayer *l, int B);
/* Does a layer of type t carry prunable weights (dense, conv2d)? A batchnorm's scale
 * and shift are parameters, not weights. */
static inline gboolean prunus_layer_type_has_weights(PrunusLayerType t) {
  return t == PRUNUS_LAYER_DENSE || t == PRUNUS_LAYER_CONV2D;
}

/* "a" or "an" before a layer type's name in a message ("an avgpool2d layer"). */
static inline const char *prunus_layer_article(const char *type_name) {
  return type_name && strchr("aeiou", type_name[0]) && type_name[0] ? "an" : "a";
}
gboolean prunus_layer_type_from_name(const char *name, PrunusLayerType *out);

/* The type tables of layers_norm.c, layers_merge.c and layers_avgpool.c (layers.c
 * lists them with its own). */
extern const PrunusLayerOps prunus_layer_ops_batchnorm;
extern const PrunusLayerOps prunus_layer_ops_add;
extern const PrunusLayerOps prunus_layer_ops_concat;
extern const PrunusLayerOps prunus_layer_ops_avgpool2d;
extern const PrunusLayerOps prunus_layer_ops_globalavgpool;

/* A conv2d layer's geometry, as its kernels (conv_gemm.h, conv_direct.h, conv_wino.h)
 * take it. */
PrunusConvGeom prunus_layer_conv_geom(const PrunusLayer *l);

/* batchnorm's defaults, as PyTorch's. */
#define PRUNUS_BATCHNORM_MOMENTUM 0.1f
#define PRUNUS_BATCHNORM_EPS 1e-5f

G_END_DECLS

#endif
