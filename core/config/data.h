/* data.h: the train / validation / test splits a run uses, loaded from the
 * dataset group of a config, with the normalisation fitted on the training split;
 * or the test split alone, for a model that carries its normalisation. */
#ifndef PRUNUS_DATA_H
#define PRUNUS_DATA_H

#include "config.h"

G_BEGIN_DECLS

/* Hex SHA-256 plus its NUL. */
#define PRUNUS_DATA_DIGEST_SIZE 65

typedef struct {
  PrunusDataset *train; /* training split (validation removed) */
  PrunusDataset *val;   /* the last `validation` samples of the training file; NULL if 0 */
  PrunusDataset *test;
  PrunusNorm norm; /* fitted on train */
  /* SHA-256 (hex) of what the three splits hold: shapes and 64-bit hashes of their
   * images and labels; "" from
   * prunus_data_load_test. The pretraining cache key carries it, so a file whose
   * content changes under the same path misses the cache. */
  char digest[PRUNUS_DATA_DIGEST_SIZE];
} PrunusData;

/* Load and split per rc (train_limit, validation, test_limit); check that the
 * images fit the model input and the labels fit its outputs; fill digest. */
gboolean prunus_data_load(const PrunusRunConfig *rc, PrunusData *out, GError **error);
/* Only the test split per rc (test_limit), its images checked against the model
 * input; train and val stay NULL and norm is left as it is (the caller's to set). */
gboolean prunus_data_load_test(const PrunusRunConfig *rc, PrunusData *out, GError **error);
void prunus_data_clear(PrunusData *d);

G_END_DECLS

#endif
