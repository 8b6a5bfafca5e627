/* infer_plan.h: the order and buffers of one inference pass over a model's graph,
 * shared by the engines and the C export: the layers in topological order, a relu
 * fused into the layer it is the only reader of, flatten as a view, and activation
 * buffers reused once their last reader has run (liveness), so memory stays a few
 * activations wide however deep the network is. */
#ifndef PRUNUS_INFER_PLAN_H
#define PRUNUS_INFER_PLAN_H

#include "model.h"

G_BEGIN_DECLS

/* Buffer indices that stand for the model's input (read only) and its output (the
 * caller's logits). */
#define PRUNUS_PLAN_INPUT (-1)
#define PRUNUS_PLAN_OUTPUT (-2)

/* One step: layer `layer` reads buffers in[0 .. n_in) and writes buffer out; then,
 * when relu >= 0, that relu (the layer's only reader) runs on out in place. */
typedef struct {
  int layer;
  int relu;
  int n_in;
  int in[PRUNUS_LAYER_MAX_INPUTS];
  int out;
  gboolean in_place; /* out is one of in[]: the layer is elementwise (relu, batchnorm, add) */
} PrunusPlanStep;

typedef struct {
  int n_steps;
  PrunusPlanStep *steps; /* (n_steps) in the model's layer order */
  int n_bufs;
  size_t *buf_floats; /* (n_bufs) floats per sample each buffer holds at most */
} PrunusInferPlan;

/* (transfer full) The plan of m's layers. A relu is fused into the conv2d, dense,
 * batchnorm or add before it when it is that layer's only reader; a flatten (but the
 * last layer) runs as a view of its input's buffer; relu, batchnorm and add write over
 * an input whose last reader they are (never the model's input). */
PrunusInferPlan *prunus_infer_plan_new(const PrunusModel *m);
void prunus_infer_plan_free(PrunusInferPlan *p);
/* Floats per sample of all buffers together. */
size_t prunus_infer_plan_floats(const PrunusInferPlan *p);

G_END_DECLS

#endif
