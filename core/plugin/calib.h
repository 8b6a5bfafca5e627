/* calib.h: the calibration pass: runs the batches a criterion needs and feeds
 * it gradients and activations as read-only views, computing only what it asked. */
#ifndef PRUNUS_CALIB_H
#define PRUNUS_CALIB_H

#include "model.h"
#include "dataset.h"
#include <prunus/plugin.h>

G_BEGIN_DECLS

/* The model as plugins see it: one view per layer with parameters. */
typedef struct {
  PrunusModelView view;
  PrunusLayerView *layers; /* (view.n_layers) */
  int *layer_index;        /* (view.n_layers) model layer index of each view */
} PrunusViewSet;

/* Build views of m; prunable[i] (model layer index, may be NULL = all) marks the
 * layers that may be pruned. */
void prunus_view_build(PrunusViewSet *vs, const PrunusModel *m, const gboolean *prunable);
void prunus_view_clear(PrunusViewSet *vs);

/* Called per calibration step; return 0 to continue. */
typedef int (*PrunusObserveFn)(void *user, const PrunusModelView *view,
                               const PrunusCalibStep *step);

/* Run each need in `needs` over n_batches batches of `batch` samples of d (a
 * seeded sample without replacement), calling observe once per batch (batch
 * needs) or once per sample (per-sample needs). Returns FALSE when observe fails. */
gboolean prunus_calibrate(PrunusModel *m, PrunusViewSet *vs, const PrunusDataset *d,
                          const PrunusNorm *norm, uint32_t needs, int n_batches, int batch,
                          uint64_t seed, PrunusObserveFn observe, void *user);

G_END_DECLS

#endif
