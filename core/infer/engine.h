/* engine.h: inference-only execution engines over a (pruned) model: dense BLAS,
 * masked (dense with the mask multiplied in at every call, as other frameworks do),
 * CSR sparse, shrunk (dead units physically removed) and auto (per layer, the faster
 * of dense and sparse for the batch size at hand, measured when the engine is built). */
#ifndef PRUNUS_ENGINE_H
#define PRUNUS_ENGINE_H

#include "latency.h"
#include "model.h"

G_BEGIN_DECLS

typedef enum {
  PRUNUS_ENGINE_DENSE,  /* BLAS on the weights with zeros in place; sgemv at batch 1 */
  PRUNUS_ENGINE_MASKED, /* W * mask recomputed every forward, then BLAS */
  PRUNUS_ENGINE_SPARSE, /* CSR for every layer with parameters */
  PRUNUS_ENGINE_SHRUNK, /* dead units removed (prunus_model_shrink_dead), then dense */
  PRUNUS_ENGINE_AUTO,   /* per layer and batch size: dense or sparse, whichever measured faster */
  PRUNUS_ENGINE_N_KINDS
} PrunusEngineKind;

typedef struct PrunusEngine PrunusEngine;

/* DENSE and SHRUNK may lay a sequence's dense layer out with zero rows added (outputs up to a
 * multiple of 16, so BLAS tiles fill) and the next dense layer with zero columns to
 * match: the extra outputs are exact zeros, never visible, not counted in FLOPs. */
typedef enum {
  PRUNUS_ENGINE_PAD_MEASURED, /* default: a layer where padding measured faster at
                               * max_batch (twice) and no slower at batch 1, with the
                               * BLAS threads of the time */
  PRUNUS_ENGINE_PAD_NONE,     /* never */
  PRUNUS_ENGINE_PAD_ALL,      /* every layer it applies to (tests, comparisons) */
} PrunusEnginePadding;

const char *prunus_engine_kind_name(PrunusEngineKind kind);

/* (transfer full) An engine computing what prunus_model_forward(m) computes (with m's
 * masks applied; in evaluation mode, up to rounding where batchnorm is folded into the
 * layer before it: prunus_model_to_plain). It copies what it needs: m may change or be
 * freed afterwards. Sequences run layer after layer; graphs (add, concat, layers
 * reading other layers) by an inference plan (infer_plan.h: relus fused, a few
 * activation buffers reused by liveness) a chunk of the batch at a time. SHRUNK
 * removes dead units of a sequence, and of a graph the channel groups whose every
 * member is dead (prunus_model_shrink_dead), then computes as DENSE does.
 * max_batch sizes the workspace (forward grows it when needed) and, for AUTO, the
 * largest batch size measured. */
PrunusEngine *prunus_engine_new(const PrunusModel *m, PrunusEngineKind kind, int max_batch,
                                GError **error);
/* (transfer full) A DENSE or SHRUNK engine padded as given, without measuring: dense
 * layer i (one that feeds another through relus) gets zero rows up to a multiple of 16
 * where pad[i] (n_layers of the engine's network). Another engine's choices for the same
 * layers (prunus_engine_layer_padding) lay out a network with fewer units the same way
 * at no cost. */
PrunusEngine *prunus_engine_new_padded(const PrunusModel *m, PrunusEngineKind kind, int max_batch,
                                       const gboolean *pad, GError **error);
void prunus_engine_free(PrunusEngine *e);

/* logits (B, n_classes) from x (B, input size). */
void prunus_engine_forward(PrunusEngine *e, const float *x, int B, float *logits);

/* Threads the sparse kernels may use (1 or 2; default 1): with 2, SPARSE and AUTO
 * engines own a helper thread (it sleeps when idle), and AUTO measures its picks
 * again. BLAS threads are set with prunus_set_threads; DENSE and SHRUNK measure their
 * padding again here when those changed since it was measured. */
void prunus_engine_set_threads(PrunusEngine *e, int threads);

/* Bytes of weights, biases and index arrays (and masks, for MASKED) held in memory,
 * padding rows and columns included. */
size_t prunus_engine_weight_bytes(const PrunusEngine *e);
/* Layers of the engine's network (SHRUNK: the shrunk one; batchnorm folded), without
 * padding. */
int prunus_engine_n_layers(const PrunusEngine *e);
const PrunusLayer *prunus_engine_layer(const PrunusEngine *e, int i);
/* How layer i runs at batch B: "dense", "sparse" (CSR) or "slices" (the CSR's SpMV
 * slices, prunus_csr_slices_build: `auto` only, batches under 4, where they measured
 * fastest); NULL for layers without params. */
const char *prunus_engine_layer_choice(const PrunusEngine *e, int i, int B);
/* Zero output rows the engine added to layer i (0: none, and for layers without params). */
int prunus_engine_layer_padding(const PrunusEngine *e, int i);
/* (transfer full) The padded layers as "name:units+rows,...", e.g. "1:90+6,3:30+2";
 * NULL when none is. */
char *prunus_engine_padding_text(const PrunusEngine *e);
/* Fraction of zero weights of layer i (NaN for layers without params). */
double prunus_engine_layer_sparsity(const PrunusEngine *e, int i);
/* Nonzero weights of the whole network, and FLOPs per sample (2 x multiply-adds of
 * the nonzero weights). */
uint64_t prunus_engine_flops(const PrunusEngine *e);

/* Microseconds of one forward of B seeded random samples, measured as
 * prunus_latency_us does: the lowest of three window medians after 3 warm-ups. */
double prunus_engine_latency_us(PrunusEngine *e, int B, double budget_seconds, int min_runs);
/* The same forward timed by prunus_latency_adaptive: windows until two medians agree. */
PrunusLatency prunus_engine_latency_adaptive(PrunusEngine *e, int B, const PrunusLatencyPlan *plan);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: nothing in core/ calls these */

gboolean prunus_engine_kind_from_name(const char *name, PrunusEngineKind *out);
/* Lay DENSE / SHRUNK out again by mode (measuring, for PAD_MEASURED); other kinds
 * have no padding and ignore it. */
void prunus_engine_set_padding(PrunusEngine *e, PrunusEnginePadding mode);
/* Floats per sample of the activation buffers a forward uses (a sequence: one per
 * layer; a graph: its plan's, reused by liveness). */
size_t prunus_engine_activation_floats(const PrunusEngine *e);

G_END_DECLS

#endif
