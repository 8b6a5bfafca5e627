/* dataset.h: labelled image sets read from IDX files (MNIST format, raw or
 * .gz), kept as uint8 in memory and normalised per batch. */
#ifndef PRUNUS_DATASET_H
#define PRUNUS_DATASET_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

typedef struct {
  int n;           /* samples */
  int c, h, w;     /* per-sample image shape; IDX3 files give c = 1 */
  int n_classes;   /* 1 + the largest label (at least 2) */
  uint8_t *images; /* (n, c*h*w) owned */
  uint8_t *labels; /* (n) owned */
} PrunusDataset;

typedef enum {
  PRUNUS_NORM_UNIT,     /* x = u / 255 */
  PRUNUS_NORM_STANDARD, /* x = (u / 255 - mean) / std, mean/std of the training split */
} PrunusNormKind;

typedef struct {
  PrunusNormKind kind;
  float mean, std; /* used by PRUNUS_NORM_STANDARD */
} PrunusNorm;

/* Each kind's name as configs (dataset.normalize) and checkpoint metadata spell it,
 * indexed by PrunusNormKind; NULL after the last. */
extern const char *const prunus_norm_kind_names[];

/* (transfer full) Load an IDX image file and an IDX label file. Every malformed
 * input is an error naming the path: missing file, bad gzip, wrong magic, wrong
 * element type (must be 0x08 ubyte), dimensions that do not match the file length,
 * truncated data, label count != image count, label >= max_label. max_label = 0
 * means 256. */
PrunusDataset *prunus_dataset_load_idx(const char *images_path, const char *labels_path,
                                       int max_label, GError **error);
void prunus_dataset_free(PrunusDataset *d);

/* (transfer full) A dataset holding rows [start, start+count) of d (copies). */
PrunusDataset *prunus_dataset_slice(const PrunusDataset *d, int start, int count);

/* (transfer full) Make a dataset from caller arrays (copied); for tests. */
PrunusDataset *prunus_dataset_new_from_data(int n, int c, int h, int w, int n_classes,
                                            const uint8_t *images, const uint8_t *labels);

/* Mean and std over every pixel of d (in [0,1] units) for kind. */
PrunusNorm prunus_norm_fit(const PrunusDataset *d, PrunusNormKind kind);

/* Convert B samples idx[0..B) of d into x (B, c*h*w) floats and y (B) labels. */
void prunus_dataset_fill_batch(const PrunusDataset *d, const PrunusNorm *norm, const int *idx,
                               int B, float *x, uint8_t *y);
/* The same with ordinary stores, which leave x in this core's cache: for a batch the
 * filling thread reads next itself, when no other core read x since its last fill
 * (prunus_dataset_fill_batch streams past the cache for the case where one did). */
void prunus_dataset_fill_batch_cached(const PrunusDataset *d, const PrunusNorm *norm,
                                      const int *idx, int B, float *x, uint8_t *y);
/* Ask the CPU to start loading the images idx[0..B) (the next batch) into cache. */
void prunus_dataset_prefetch(const PrunusDataset *d, const int *idx, int B);

G_END_DECLS

#endif
