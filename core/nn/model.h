/* model.h: a network as a graph of layers (a sequence being the common case) over
 * one parameter slab, with gradient, mask and optimizer-state slabs of the same
 * layout and the layers' buffers (batchnorm's running statistics) after it. */
#ifndef PRUNUS_MODEL_H
#define PRUNUS_MODEL_H

#include "layer.h"

G_BEGIN_DECLS

typedef enum {
  PRUNUS_INIT_KAIMING, /* N(0, 2/fan_in): the default for ReLU networks */
  PRUNUS_INIT_GLOROT,  /* U(±sqrt(6/(fan_in+fan_out))) */
  /* weights and biases U(±1/sqrt(fan_in)): PyTorch's default for nn.Linear and
   * nn.Conv2d, so a study can start from the distribution its PyTorch peer uses */
  PRUNUS_INIT_UNIFORM_FAN_IN,
} PrunusInit;

/* A whole architecture: the input shape and the layers in topological order (each
 * layer's inputs come before it); the last layer's output is the model's. */
typedef struct {
  PrunusShape input;
  int n_classes; /* output width of the last layer, checked at build */
  int n_layers;
  PrunusLayerSpec *layers; /* (n_layers), owned */
  PrunusInit init;
} PrunusArch;

typedef struct {
  PrunusArch arch; /* owned copy */
  int n_layers;
  PrunusLayer *layers; /* (n_layers) in topological order */
  size_t n_params;
  float *params; /* (n_params + n_buffers) the one parameter slab, then the
                  * buffers */
  size_t n_buffers;
  float *buffers;      /* (n_buffers) = params + n_params: running statistics, which
                        * no optimizer, mask or pruning reaches */
  float *grads;        /* (n_params) dL/dparams of the last backward (zero
                        * after prunus_train, whose updates clear them) */
  float *mask;         /* (n_params) 1 = alive, 0 = pruned; biases stay 1 */
  float *opt_m;        /* (n_params) momentum / Adam first moment */
  float *opt_v;        /* (n_params) Adam second moment */
  gboolean training;   /* batchnorm uses batch statistics and updates its buffers
                        * (prunus_model_set_training; prunus_train sets it) */
  int *n_uses;         /* (n_layers+1) layers reading each activation slot */
  uint8_t *slot_flags; /* (n_layers+1) model.c's: does the backward compute the
                          slot's gradient, was it written in this backward */
  /* Workspace for a batch of up to max_batch samples. */
  int max_batch;
  float **acts;        /* (n_layers+1): acts[0] the input (max_batch, input size);
                          acts[i+1] the output of layer i (max_batch, out size of
                          layer i), so in a sequence acts[i] is layer i's input and
                          acts[n_layers] the logits (max_batch, n_classes) */
  float **dacts;       /* same shapes: dL/dacts */
  float **scratch;     /* (n_layers): per-layer scratch (im2col, pool argmax), may be NULL */
  size_t *scratch_len; /* (n_layers) floats in scratch[i] */
  int n_gtmp;          /* gradients a layer writes for an activation that another
                          layer's backward already wrote (fan-out), to be added */
  float **gtmp;        /* (n_gtmp) (max_batch, widest such activation) */
} PrunusModel;

/* Limits on what a model may ask for, so an absurd config or checkpoint is refused
 * before anything large is allocated (prunus_arch_check_size). */
#define PRUNUS_MODEL_MAX_LAYERS 1024
#define PRUNUS_MODEL_MAX_WIDTH (1 << 20)       /* units, channels, each input size */
#define PRUNUS_MODEL_MAX_KERNEL 4096           /* kernel, stride, padding */
#define PRUNUS_MODEL_MAX_ACTIVATIONS (1 << 26) /* floats of one sample between two layers */
#define PRUNUS_MODEL_MAX_PARAMS (1 << 28)      /* parameters (each has 5 slabs of floats) */
#define PRUNUS_MODEL_MAX_WORKSPACE (1 << 30)   /* floats of activations and scratch per batch */
#define PRUNUS_MODEL_MAX_BATCH 65536

/* Check arch against the limits above for batches of max_batch, computing shapes
 * only (nothing is allocated); *n_params (may be NULL) gets its parameter count. On
 * failure the error names the limit and its value, and *bad_layer (may be NULL) gets
 * the layer that crosses it (-1: the input or the whole). A shape that does not fit
 * passes here: prunus_model_new says what is wrong with it. */
gboolean prunus_arch_check_size(const PrunusArch *arch, int max_batch, size_t *n_params,
                                int *bad_layer, GError **error);
/* (transfer full) the model with parameters initialised from seed; an architecture
 * over the limits is refused first (prunus_arch_check_size). */
PrunusModel *prunus_model_new(const PrunusArch *arch, int max_batch, uint64_t seed, GError **error);
void prunus_model_free(PrunusModel *m);
/* (transfer full) a model of m's architecture with m's parameters, running statistics,
 * masks, mode and team, and its own workspace and gradients (zero): what a pass over it
 * computes, m would. NULL and error only where m's own allocation could fail. */
PrunusModel *prunus_model_clone(const PrunusModel *m, GError **error);
/* Re-draw every parameter from seed (Kaiming/Glorot weights and zero biases;
 * uniform-fan-in weights and biases). */
void prunus_model_init_params(PrunusModel *m, uint64_t seed);
/* Grow the workspace so batches of up to B fit. */
void prunus_model_reserve_batch(PrunusModel *m, int B);

/* logits = acts[n_layers] (B, n_classes) from x (B, input size). x may be acts[0]
 * itself (after prunus_model_reserve_batch(m, B)): the batch is then not copied. */
void prunus_model_forward(PrunusModel *m, const float *x, int B);
/* prunus_model_forward through layers 0 .. n_layers - 1 only: their outputs, and so
 * the input of every layer up to n_layers (layers come in topological order), are
 * those of a whole forward; later slots keep what they held. */
void prunus_model_forward_to(PrunusModel *m, const float *x, int B, int n_layers);
/* Write grads (overwriting them) from dlogits (B, n_classes); needs the forward of
 * the same batch. Where an activation feeds several layers, its gradient is the sum
 * of theirs, added in reverse layer order. Only layers with parameters and the
 * layers between them and the output are visited. */
void prunus_model_backward(PrunusModel *m, const float *dlogits, int B);
/* The index of the first layer with parameters (weights, a bias, batchnorm's scale
 * and shift), -1 when no layer has any. */
int prunus_model_first_param_layer(const PrunusModel *m);
/* Is layer i a ReLU between two linked sparse layers (spdense.h: the layer before it
 * has a `down`)? Its forward and backward are then skipped, the linked layers doing its
 * work in the transposed layout; its output and input-gradient slots go stale, and
 * nobody reads them. */
gboolean prunus_model_layer_bypassed(const PrunusModel *m, int i);
/* Whether prunus_model_backward asks layer for the gradient of its input k (some
 * layer upstream of that input has parameters). */
gboolean prunus_model_input_grad_needed(const PrunusModel *m, int layer, int k);
/* Called once a layer's gradients are written; nothing later in the same backward
 * reads that layer's parameters, so they may be updated right away. */
typedef void (*PrunusLayerGradsDone)(PrunusModel *m, int layer, void *user);
/* prunus_model_backward, calling done (may be NULL) after each layer with parameters
 * (w_len + b_len > 0). */
void prunus_model_backward_each(PrunusModel *m, const float *dlogits, int B,
                                PrunusLayerGradsDone done, void *user);
void prunus_model_zero_grads(PrunusModel *m);
/* params *= mask: pruned weights become exactly zero. */
void prunus_model_apply_mask(PrunusModel *m);
/* Let every layer split its own kernels over team (borrowed; NULL: one thread). */
void prunus_model_set_team(PrunusModel *m, PrunusTeam *team);
/* Training mode (batch statistics, buffers updated by each forward) or evaluation
 * mode (running statistics, nothing changes), as PyTorch's train()/eval(); a new
 * model starts in evaluation mode. Returns the mode it had. */
gboolean prunus_model_set_training(PrunusModel *m, gboolean training);
/* Every layer takes the previous layer's output (layer 0 the input): a plain
 * sequence, as every model was before graphs. */
gboolean prunus_model_is_sequence(const PrunusModel *m);
/* TRUE when m is a sequence of dense, conv2d, maxpool2d, relu and flatten layers, the
 * convs with a bias: what the inference engines and the exports run. With foldable,
 * batchnorm layers and convs without bias are accepted too (prunus_model_to_plain turns
 * them into that). Else FALSE and an error (PRUNUS_ERROR_INVALID) "WHO: only sequences
 * of ... are supported" naming the first layer that is not (who: "prunus export"). */
gboolean prunus_model_check_plain(const PrunusModel *m, gboolean foldable, const char *who,
                                  GError **error);

size_t prunus_model_input_size(const PrunusModel *m);
int prunus_model_n_classes(const PrunusModel *m);
/* 2 x multiply-adds per sample, counting only unmasked weights when masked = TRUE. */
uint64_t prunus_model_flops(const PrunusModel *m, gboolean masked);

/* Architecture helpers. */
PrunusArch prunus_arch_copy(const PrunusArch *a);
void prunus_arch_clear(PrunusArch *a);
/* A compact text form, e.g. "1x28x28|flatten|dense:300|relu|dense:10", stored in
 * checkpoints. A layer is "type[:settings][@name][<input,input...]": the name only
 * when it is not the index, the inputs (by name; "input" = the model's) only when
 * they are not the previous layer; so a sequence reads as it always did. */
char *prunus_arch_to_string(const PrunusArch *a);
gboolean prunus_arch_from_string(const char *s, PrunusArch *out, GError **error);
/* Layer i's name: its spec's, or its index (transfer none: buf, or the spec's). */
const char *prunus_arch_layer_name(const PrunusArch *a, int i, char buf[PRUNUS_LAYER_NAME_MAX]);
/* Build layer shapes and slab offsets without allocating a model: what
 * prunus_model_new checks. On failure *bad_layer (may be NULL) gets the index of the
 * layer at fault (-1: the model as a whole) and error says what to fix. */
gboolean prunus_arch_check(const PrunusArch *a, int *bad_layer, GError **error);
/* Every layer takes the previous layer's output: what prunus_model_is_sequence says
 * of the model built from a. */
gboolean prunus_arch_is_sequence(const PrunusArch *a);
/* A name a layer may have: 1-63 of [A-Za-z0-9_.-], not "input" (the model's input). */
gboolean prunus_layer_name_valid(const char *name);

G_END_DECLS

#endif
