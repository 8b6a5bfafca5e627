/* export.h: a model as a dependency-free C file (weights as static const arrays, CSR
 * where it is smaller, dead units removed, batchnorm folded: prunus_model_to_plain;
 * sequences and graphs, run by the inference plan of infer_plan.h) or as PyTorch-ready
 * safetensors (sequences only, named as nn.Sequential names them; graphs are an error). */
#ifndef PRUNUS_EXPORT_H
#define PRUNUS_EXPORT_H

#include "dataset.h"
#include "model.h"

G_BEGIN_DECLS

/* Write dir/prunus_model.c and dir/prunus_model.h (dir is created) for m with its
 * masks applied, dead units removed and batchnorm folded (evaluation mode), its
 * activations in static buffers reused by liveness: prunus_model_normalize (norm, the input
 * normalisation m was trained with, as a table of the float of each pixel value,
 * the very floats training fed it; NULL = unit, u/255), prunus_model_logits,
 * prunus_model_predict. source names the origin in comments. *flash_out (may be
 * NULL) gets the bytes of weights, biases and index arrays. Prints a summary unless
 * quiet. */
gboolean prunus_export_c(const PrunusModel *m, const PrunusNorm *norm, const char *dir,
                         const char *source, gboolean quiet, size_t *flash_out, GError **error);

/* Write path: "<layer>.weight" (dense (out, in), conv (cout, cin, k, k)) and
 * "<layer>.bias" of m with masks applied and dead units removed, no masks;
 * metadata "architecture" gives the shrunk layer sizes. */
gboolean prunus_export_safetensors(const PrunusModel *m, const char *path, gboolean quiet,
                                   GError **error);

G_END_DECLS

#endif
