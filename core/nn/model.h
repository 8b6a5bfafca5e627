/* model.h: a network as a sequence of layers over one parameter slab, with
 * gradient, mask and optimizer-state slabs of the same layout. */
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

/* A whole architecture: the input shape and the layers in order. */
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
  PrunusLayer *layers; /* (n_layers) */
  size_t n_params;
  float *params; /* (n_params) the one parameter slab */
  float *grads;  /* (n_params) dL/dparams of the last backward (zero
                  * after prunus_train, whose updates clear them) */
  float *mask;   /* (n_params) 1 = alive, 0 = pruned; biases stay 1 */
  float *opt_m;  /* (n_params) momentum / Adam first moment */
  float *opt_v;  /* (n_params) Adam second moment */
  /* Workspace for a batch of up to max_batch samples. */
  int max_batch;
  float **acts;        /* (n_layers+1): acts[i] (max_batch, in_size of layer i);
                          acts[n_layers] = logits (max_batch, n_classes) */
  float **dacts;       /* same shapes: dL/dacts */
  float **scratch;     /* (n_layers): per-layer scratch (im2col, pool argmax), may be NULL */
  size_t *scratch_len; /* (n_layers) floats in scratch[i] */
} PrunusModel;

/* (transfer full) the model with parameters initialised from seed. */
PrunusModel *prunus_model_new(const PrunusArch *arch, int max_batch, uint64_t seed, GError **error);
void prunus_model_free(PrunusModel *m);
/* Re-draw every parameter from seed (Kaiming/Glorot weights and zero biases;
 * uniform-fan-in weights and biases). */
void prunus_model_init_params(PrunusModel *m, uint64_t seed);
/* Grow the workspace so batches of up to B fit. */
void prunus_model_reserve_batch(PrunusModel *m, int B);

/* logits = acts[n_layers] (B, n_classes) from x (B, input size). x may be acts[0]
 * itself (after prunus_model_reserve_batch(m, B)): the batch is then not copied. */
void prunus_model_forward(PrunusModel *m, const float *x, int B);
/* Write grads (overwriting them) from dlogits (B, n_classes); needs the forward of
 * the same batch. Layers below the first one with parameters are not visited. */
void prunus_model_backward(PrunusModel *m, const float *dlogits, int B);
/* The index of the first layer with parameters, -1 when no layer has any. */
int prunus_model_first_param_layer(const PrunusModel *m);
/* Called once a layer's gradients are written; nothing later in the same backward
 * reads that layer's parameters, so they may be updated right away. */
typedef void (*PrunusLayerGradsDone)(PrunusModel *m, int layer, void *user);
/* prunus_model_backward, calling done (may be NULL) after each layer with parameters. */
void prunus_model_backward_each(PrunusModel *m, const float *dlogits, int B,
                                PrunusLayerGradsDone done, void *user);
void prunus_model_zero_grads(PrunusModel *m);
/* params *= mask: pruned weights become exactly zero. */
void prunus_model_apply_mask(PrunusModel *m);
/* Let every layer split its own kernels over team (borrowed; NULL: one thread). */
void prunus_model_set_team(PrunusModel *m, PrunusTeam *team);

size_t prunus_model_input_size(const PrunusModel *m);
int prunus_model_n_classes(const PrunusModel *m);
/* 2 x multiply-adds per sample, counting only unmasked weights when masked = TRUE. */
uint64_t prunus_model_flops(const PrunusModel *m, gboolean masked);

/* Architecture helpers. */
PrunusArch prunus_arch_copy(const PrunusArch *a);
void prunus_arch_clear(PrunusArch *a);
/* A compact text form, e.g. "1x28x28|flatten|dense:300|relu|dense:10", stored in checkpoints. */
char *prunus_arch_to_string(const PrunusArch *a);
gboolean prunus_arch_from_string(const char *s, PrunusArch *out, GError **error);

G_END_DECLS

#endif
