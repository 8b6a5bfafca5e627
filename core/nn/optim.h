/* optim.h: the training hyper-parameters (PrunusTrainConfig), learning-rate schedules
 * and the optimizers (SGD with momentum/Nesterov/weight decay, Adam) over a model's
 * parameter slab, re-applying the pruning mask in the same pass. */
#ifndef PRUNUS_OPTIM_H
#define PRUNUS_OPTIM_H

#include "model.h"

G_BEGIN_DECLS

typedef enum { PRUNUS_OPT_SGD, PRUNUS_OPT_ADAM } PrunusOptimizer;
typedef enum { PRUNUS_LR_CONSTANT, PRUNUS_LR_STEP, PRUNUS_LR_COSINE } PrunusLrSchedule;

/* train.sparse_from's default: a little above the sparsity where LeNet-300-100's layers
 * start to train a step faster on the sparse kernels than on dense sgemm (the crossover,
 * measured by bench/sparse_train --layers; figures in docs/perf-log.md), so that other
 * shapes and CPUs, where the crossover moves, still gain. */
#define PRUNUS_SPARSE_FROM_DEFAULT 0.4

typedef struct {
  int epochs;
  int batch;
  PrunusOptimizer optimizer;
  double lr;
  double momentum;          /* SGD */
  gboolean nesterov;        /* SGD */
  double weight_decay;      /* L2 added to the gradient (SGD and Adam) */
  double beta1, beta2, eps; /* Adam */
  PrunusLrSchedule lr_schedule;
  int step_size;        /* step: epochs between decays */
  double gamma;         /* step: decay factor */
  double warmup_epochs; /* linear warm-up from 0 (may be 0) */
  double bn_l1;         /* L1 on every batchnorm scale (network slimming's sparse training):
                         * bn_l1 * sign(gamma) added to its gradient before each step; 0 = off */
  /* a dense layer with at least this fraction of its weights pruned trains on sparse
   * kernels (spdense.h; >= 1: never): faster past the crossover, the same masks and
   * the same results up to the order of float additions */
  double sparse_from;
} PrunusTrainConfig;

/* The defaults a config starts from. */
PrunusTrainConfig prunus_train_config_default(void);

/* Learning rate at a fractional epoch position (epoch + step/steps_per_epoch). */
double prunus_lr_at(const PrunusTrainConfig *tc, double epoch_pos);

/* How prunus_optim_step_span treats its span. */
typedef enum {
  /* some mask entry of the span may be 0 (without it the mask is not read) */
  PRUNUS_OPTIM_MASKED = 1 << 0,
  /* zero the gradients once used (the trainer then lets the next backward add onto them) */
  PRUNUS_OPTIM_CLEAR_GRADS = 1 << 1,
  /* write the new parameters with non-temporal stores: for weights that other
   * threads read every step, whose cache lines an ordinary store would first have to
   * take back from them; the same values either way */
  PRUNUS_OPTIM_STREAM_PARAMS = 1 << 2,
} PrunusOptimFlags;
/* The same step for the parameters [off, off + n) only (training updates each layer
 * right after its backward). */
void prunus_optim_step_span(PrunusModel *m, const PrunusTrainConfig *tc, double lr, long step,
                            size_t off, size_t n, PrunusOptimFlags flags);
void prunus_optim_reset(PrunusModel *m);
/* When tc->bn_l1 > 0 and layer is a batchnorm: its scale's gradients += bn_l1 * sign(scale)
 * (the L1 subgradient, 0 at 0); called before the layer's step. Nothing otherwise. */
void prunus_optim_add_bn_l1(PrunusModel *m, const PrunusTrainConfig *tc, int layer);
/* The same step for parameters held outside the slab: p, m1, m2 and g of n entries
 * (m1, m2 as the optimizer needs them: momentum, Adam). A layer that trains on its
 * alive weights (spdense.h) keeps them and their state in CSR order and steps them
 * here, nothing else. Per entry the arithmetic of the masked span step at an alive
 * place, so given equal gradients the weights come out bit for bit equal; an entry
 * with p, m1, m2 and g all zero stays zero. */
void prunus_optim_step_arrays(const PrunusTrainConfig *tc, double lr, long step, float *p,
                              float *m1, float *m2, const float *g, size_t n);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: the plain whole-slab step that /train/fit/matches-plain-loop holds
 * training to */

/* One optimizer step over the whole slab with the grads in m->grads, then
 * params *= mask so pruned weights stay exactly zero. step counts from 1 (Adam). */
void prunus_optim_step(PrunusModel *m, const PrunusTrainConfig *tc, double lr, long step);

G_END_DECLS

#endif
