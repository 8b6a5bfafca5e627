/* checkpoint.h: save and load a model (parameters, masks, architecture and
 * metadata) as a safetensors file; PyTorch-style names "<layer>.weight". */
#ifndef PRUNUS_CHECKPOINT_H
#define PRUNUS_CHECKPOINT_H

#include "dataset.h"
#include "model.h"

G_BEGIN_DECLS

/* Tensors written: for each dense or conv2d layer, "<name>.weight" (shape as
 * PyTorch: dense (out, in), conv (cout, cin, k, k)), "<name>.bias" (out; none for a
 * conv without bias), and "<name>.mask" (same shape as the weight, 1 = alive); for
 * each batchnorm, "<name>.weight" and "<name>.bias" (C, its scale and shift) and the
 * buffers "<name>.running_mean" and "<name>.running_var" (C). Metadata: "format" =
 * "prunus", "prunus_version", "architecture" (prunus_arch_to_string), plus every
 * entry of extra (may be NULL), e.g. "config_hash", "epoch", "round", the input
 * normalisation (prunus_checkpoint_metadata_set_norm). Atomic. */
gboolean prunus_checkpoint_save(const PrunusModel *m, const char *path, GHashTable *extra,
                                GError **error);

/* (transfer full) Load a checkpoint: the architecture comes from its metadata;
 * when expected != NULL it must be equal (error names both). Every tensor the
 * architecture needs must be present with the exact shape (buffers included); unknown
 * tensors are an error; masks must hold only 0/1; a masked weight must be 0; a
 * running variance must be >= 0. *metadata_out
 * (transfer full, may be NULL) gets the metadata table. */
PrunusModel *prunus_checkpoint_load(const char *path, int max_batch, const PrunusArch *expected,
                                    GHashTable **metadata_out, GError **error);

/* The input normalisation the model was trained with, as metadata entries
 * "input_normalize" ("unit" or "standard", as dataset.normalize spells it),
 * "input_mean" and "input_std" (decimal text that reads back to the same float bits).
 * metadata frees its keys and values with g_free, as prunus_rundir_checkpoint_metadata's
 * and prunus_checkpoint_load's tables do. */
void prunus_checkpoint_metadata_set_norm(GHashTable *metadata, const PrunusNorm *norm);
/* Read those entries back: TRUE and *found = TRUE with *norm filled; TRUE and *found =
 * FALSE when metadata (may be NULL) has none of them (checkpoints written before
 * prunus stored the normalisation); FALSE when they are incomplete or malformed: an
 * unknown kind, a value that is not a finite number, a standard deviation <= 0 (the
 * error names path, the key and the value). */
gboolean prunus_checkpoint_metadata_norm(GHashTable *metadata, const char *path, PrunusNorm *norm,
                                         gboolean *found, GError **error);

G_END_DECLS

#endif
