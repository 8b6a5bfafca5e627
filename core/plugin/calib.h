/* calib.h: the calibration pass: runs the batches a criterion needs and feeds
 * it gradients, activations and layer inputs (raw or reduced to sums of squares
 * and Gram matrices) as read-only views, computing only what it asked. */
#ifndef PRUNUS_CALIB_H
#define PRUNUS_CALIB_H

#include "model.h"
#include "dataset.h"
#include <prunus/plugin.h>

G_BEGIN_DECLS

/* The PRUNUS_NEED_* bits this host knows. */
#define PRUNUS_CALIB_KNOWN_NEEDS                                                    \
  (PRUNUS_NEED_WEIGHTS | PRUNUS_NEED_LOSS_GRAD | PRUNUS_NEED_LOSS_GRAD_SAMPLE |     \
   PRUNUS_NEED_OUTNORM_GRAD_SAMPLE | PRUNUS_NEED_ACTIVATIONS | PRUNUS_NEED_INPUTS | \
   PRUNUS_NEED_INPUT_SUMSQ | PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_LAYERWISE |       \
   PRUNUS_NEED_INPUT_CROSS)
/* The needs that hand out layer inputs. */
#define PRUNUS_CALIB_INPUT_NEEDS \
  (PRUNUS_NEED_INPUTS | PRUNUS_NEED_INPUT_SUMSQ | PRUNUS_NEED_INPUT_GRAM | PRUNUS_NEED_INPUT_CROSS)

/* The model as plugins see it: one view per layer with parameters, and the graph
 * of every layer (the revision-3 members of the view point into these). */
typedef struct {
  PrunusModelView view;
  PrunusLayerView *layers;   /* (view.n_layers) */
  int *layer_index;          /* (view.n_layers) model layer index of each view */
  const char **node_name;    /* (n_nodes) */
  const char **node_type;    /* (n_nodes) */
  int *node_n_inputs;        /* (n_nodes) */
  const char ***node_inputs; /* (n_nodes) each a (node_n_inputs) slice of input_names */
  const char **input_names;  /* (n_nodes) one input per node in a sequence */
  int *node_ints; /* (n_nodes * 6 + n_layers): shape, kernel, stride, padding, layer_node */
  int input_shape[3];
  /* revision 4: the channel groups (core/nn/groups.h) in view indices, and batchnorm */
  int *group_ints;           /* per group n_units, n_inputs; then the members' layer, unit,
                              * input layer, column, columns; unit_group; layer_norm_node */
  const int **group_ptrs;    /* (5 * n_groups + n_layers) the [group] / [layer] arrays */
  const float **norm_params; /* (2 * n_nodes) node_norm_scale, node_norm_shift */
} PrunusViewSet;

/* Build views of m; prunable[i] (model layer index, may be NULL = all) marks the
 * layers that may be pruned. */
void prunus_view_build(PrunusViewSet *vs, const PrunusModel *m, const gboolean *prunable);
void prunus_view_clear(PrunusViewSet *vs);

/* Whether the host can compute `needs` (a criterion's needs()) for view v: FALSE and
 * an error naming `who` (e.g. "prune.criterion plugin 'wanda'") for a bit this host
 * does not know, or for input needs when a prunable layer's type has no input form
 * (dense and conv2d have one). */
gboolean prunus_calib_check_needs(const PrunusModelView *v, uint32_t needs, const char *who,
                                  GError **error);

/* Called per calibration step; return 0 to continue. */
typedef int (*PrunusObserveFn)(void *user, const PrunusModelView *view,
                               const PrunusCalibStep *step);

/* Run each need in `needs` over n_batches batches of `batch` samples of d (a
 * seeded sample without replacement), calling observe once per batch (batch
 * needs), once per sample (per-sample needs) or once per pass (INPUT_SUMSQ,
 * INPUT_GRAM). layer = -1 computes the input needs for every prunable layer with
 * an input form; layer = k (a view index) for that layer alone, and the steps say
 * so (PrunusCalibStep.layer). Returns FALSE when observe fails. */
gboolean prunus_calibrate(PrunusModel *m, PrunusViewSet *vs, const PrunusDataset *d,
                          const PrunusNorm *norm, uint32_t needs, int n_batches, int batch,
                          uint64_t seed, int layer, PrunusObserveFn observe, void *user);
/* prunus_calibrate with ref (may be NULL = m itself), a model of m's architecture,
 * as the network whose inputs X0 enter PRUNUS_NEED_INPUT_CROSS: each batch of that
 * pass goes forward through ref, then through m. ref is used in its own mode with its
 * own parameters and statistics. */
gboolean prunus_calibrate_ref(PrunusModel *m, PrunusModel *ref, PrunusViewSet *vs,
                              const PrunusDataset *d, const PrunusNorm *norm, uint32_t needs,
                              int n_batches, int batch, uint64_t seed, int layer,
                              PrunusObserveFn observe, void *user);

/* prune.recalibrate_bn: re-estimate the running mean and variance of every batchnorm
 * layer of m on the calibration sample prunus_calibrate draws with the same seed,
 * n_batches and batch: forwards in training mode, each batch weighted 1/b into the
 * buffers, so they end as the mean over batches of the batch statistics (the variance
 * unbiased), as PyTorch's torch.optim.swa_utils.update_bn. Parameters, masks and
 * each layer's momentum are left as they were, and m goes back to its mode. Only the
 * batchnorm layers among layers 0 .. n_layers - 1 are re-estimated (m->n_layers: all):
 * in training mode a batchnorm normalises with its batch's statistics, so its buffers
 * depend on the layers before it alone. Returns the number of batchnorm layers
 * re-estimated (0: nothing done). */
int prunus_calib_recalibrate_bn(PrunusModel *m, const PrunusDataset *d, const PrunusNorm *norm,
                                int n_batches, int batch, uint64_t seed, int n_layers);

G_END_DECLS

#endif
