/* layer.h: the layer contract: per-sample shapes, what the config says about a layer,
 * a built layer (shapes, slab offsets) and the kernel table every layer type fills
 * (layers.c); model.c builds and runs a sequence of them. */
#ifndef PRUNUS_LAYER_H
#define PRUNUS_LAYER_H

#include "team.h"

#include <prunus/prunus.h>

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
  PRUNUS_LAYER_N_TYPES
} PrunusLayerType;

/* What the config says about one layer. */
typedef struct {
  PrunusLayerType type;
  int units;    /* dense: output features */
  int channels; /* conv2d: output channels */
  int kernel;   /* conv2d / maxpool2d: square kernel size */
  int stride;   /* conv2d / maxpool2d (pool default = kernel) */
  int padding;  /* conv2d: zero padding on each side */
} PrunusLayerSpec;

typedef struct PrunusLayerOps PrunusLayerOps;
typedef struct PrunusSpDense PrunusSpDense; /* spdense.h */

/* One layer of a built model: shapes and where its parameters sit in the slabs. */
typedef struct {
  PrunusLayerSpec spec;
  const PrunusLayerOps *ops;
  char name[16];         /* index in the sequence, as nn.Sequential names it: "1" */
  PrunusShape in, out;   /* per-sample shapes */
  size_t w_off, w_len;   /* weight: dense (out, in); conv (cout, cin, k, k) */
  size_t b_off, b_len;   /* bias: (out) or (cout); 0 length when none */
  int fan_in, fan_out;   /* per output unit: in or cin*k*k; units or cout*k*k */
  PrunusTeam *team;      /* borrowed: threads the layer's own kernels (not BLAS) split
                          * a batch over; NULL = the calling thread only. Set by
                          * prunus_train for its duration (then NULL again) */
  gboolean grads_zeroed; /* the weight gradients read 0 before each backward, so
                          * products may add onto them instead of clearing them
                          * first; set by prunus_train for its duration (its
                          * optimizer zeroes the gradients it used) */
  PrunusSpDense *sparse; /* borrowed: a dense layer's kernels over its alive weights
                          * (spdense.h), set while prunus_train or an evaluation runs
                          * it so (prunus_train_attach_sparse); NULL: dense kernels.
                          * Its backward leaves the weight gradient in sparse->grad */
} PrunusLayer;

/* Per-layer kernel table; one entry per PrunusLayerType (kann's op list). */
struct PrunusLayerOps {
  const char *type_name; /* "dense", as written in configs */
  gboolean has_params;
  /* Output shape for a given input shape; FALSE + error when it does not fit. */
  gboolean (*infer)(const PrunusLayerSpec *spec, PrunusShape in, PrunusShape *out, size_t *w_len,
                    size_t *b_len, int *fan_in, int *fan_out, GError **error);
  /* Scratch floats needed for a batch of B. */
  size_t (*scratch_size)(const PrunusLayer *l, int B);
  /* y (B, out) from x (B, in). */
  void (*forward)(const PrunusLayer *l, const float *params, const float *x, float *y,
                  float *scratch, int B);
  /* Accumulate dparams from x and dy; write dx (B, in) when dx != NULL. */
  void (*backward)(const PrunusLayer *l, const float *params, float *grads, const float *x,
                   const float *y, const float *dy, float *dx, float *scratch, int B);
};

const PrunusLayerOps *prunus_layer_ops(PrunusLayerType type);
gboolean prunus_layer_type_from_name(const char *name, PrunusLayerType *out);

G_END_DECLS

#endif
