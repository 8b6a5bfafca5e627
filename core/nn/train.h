/* train.h: the mini-batch training loop and evaluation, over the optimizers and LR
 * schedules of optim.h and the loss of loss.h. */
#ifndef PRUNUS_TRAIN_H
#define PRUNUS_TRAIN_H

#include "dataset.h"
#include "loss.h"
#include "model.h"
#include "optim.h"

G_BEGIN_DECLS

typedef struct {
  double loss;
  double accuracy;
  int n;
} PrunusEvalResult;

/* Mean loss and accuracy over d, in evaluation mode (batchnorm's running statistics;
 * the mode the model had is restored). */
PrunusEvalResult prunus_evaluate(PrunusModel *m, const PrunusDataset *d, const PrunusNorm *norm,
                                 int batch);

/* Run every dense layer of m with at least the fraction `from` of its weights masked
 * on sparse kernels (spdense.h; from >= 1: none) until prunus_train_detach_sparse;
 * with `training` its backward too (the input gradient where the model's backward
 * asks for it: prunus_model_input_grad_needed), the layer's weights and optimizer state then kept
 * in CSR order (the slabs stale) until detach writes them back. The masks must not change
 * meanwhile. Returns how many layers. prunus_train does this for its own duration with
 * tc->sparse_from (writing back at every epoch's end too); the pipeline for its
 * evaluations. */
int prunus_train_attach_sparse(PrunusModel *m, double from, int max_batch, gboolean training);
void prunus_train_detach_sparse(PrunusModel *m);

/* Per-epoch report handed to the caller's callback. */
typedef struct {
  int epoch; /* 1-based */
  int epochs;
  double train_loss;
  double train_accuracy;
  double val_loss, val_accuracy; /* NaN when there is no validation set */
  double seconds;
  double samples_per_second;
  double lr; /* at the end of the epoch */
} PrunusEpochReport;

/* Progress within an epoch (for a terminal progress bar); may be NULL. */
typedef void (*PrunusBatchFn)(int epoch, int batch_index, int n_batches, double loss,
                              double samples_per_second, double elapsed, void *user);
/* End of each epoch. Return FALSE + error to stop training (the error is returned). */
typedef gboolean (*PrunusEpochFn)(const PrunusEpochReport *r, void *user, GError **error);

/* How prunus_train runs; a zeroed struct (or NULL) trains on the calling thread alone,
 * on a fresh schedule of tc->epochs, with no callbacks. */
typedef struct {
  /* Threads training uses: <= 1 the calling thread alone; N > 1 a team of N (at most
   * PRUNUS_TEAM_MAX_THREADS) that the layers split their work over. Either way OpenBLAS
   * runs at one thread while training (its own pool would busy-wait beside the team)
   * and gets its thread count back afterwards. */
  int threads;
  double epoch_offset; /* schedule position of epoch 1 (LR rewinding replays from 0) */
  int schedule_epochs; /* length of the LR schedule; 0 = tc->epochs */
  /* A step of training, not a callback: when snapshot_epoch >= 1, the parameters after
   * that epoch are copied into snapshot (m->n_params floats) before on_epoch runs. The
   * pipeline keeps θk, the weights lottery tickets rewind to, this way. */
  int snapshot_epoch;
  float *snapshot;
  /* Logging: progress within an epoch and the end of each epoch (may be NULL). */
  PrunusBatchFn on_batch;
  PrunusEpochFn on_epoch;
  void *user; /* for on_batch and on_epoch */
} PrunusTrainOptions;

/* What prunus_train sets up around its steps and undoes after (bench/step_profile
 * replays a step inside the same): with threads > 1, a team of that many threads (at
 * most PRUNUS_TEAM_MAX_THREADS) for the layers to split their work over and the caller
 * pinned to its CPU; OpenBLAS at one thread meanwhile; the model in training mode
 * (batchnorm: batch statistics, running ones updated); and every gradient zeroed and
 * each layer told so (grads_zeroed), the updates clearing what they use.
 * prunus_train_end puts the model back in evaluation mode. */
typedef struct {
  PrunusTeam *team; /* NULL with one thread */
  int blas_threads; /* OpenBLAS's thread count before, restored by prunus_train_end */
} PrunusTrainSetup;
/* The threads training runs with when asked for `threads` (<= 0 counts as 1): its team
 * holds at most PRUNUS_TEAM_MAX_THREADS. What run folders record as "threads". */
int prunus_train_threads_used(int threads);
PrunusTrainSetup prunus_train_begin(PrunusModel *m, int threads);
void prunus_train_end(PrunusModel *m, PrunusTrainSetup *setup);
/* The flags of layer `layer`'s update in a training step (masked: some weight of the
 * layer is pruned): it clears the gradients it used and, with a team, streams the
 * weights of a layer that computes an input gradient (every thread reads those in its
 * dx product). Not the first layer's: LeNet-300's forward splits them by unit, and
 * streamed they would go to memory each step. */
PrunusOptimFlags prunus_train_update_flags(const PrunusModel *m, int layer, gboolean masked,
                                           const PrunusTeam *team);

/* Train for tc->epochs on train (shuffled with seed each epoch), evaluate on val
 * (may be NULL) after every epoch; opt may be NULL. The callbacks must not run the
 * model's backward: while training, each update zeroes the gradients it used and the
 * next backward adds onto them (m->grads reads zero afterwards). Dense layers pruned
 * past tc->sparse_from train on their alive weights only (prunus_train_attach_sparse):
 * their steps touch no pruned weight, gradient or optimizer state. */
gboolean prunus_train(PrunusModel *m, const PrunusTrainConfig *tc, const PrunusDataset *train,
                      const PrunusDataset *val, const PrunusNorm *norm, uint64_t seed,
                      const PrunusTrainOptions *opt, GError **error);

G_END_DECLS

#endif
