/* export_torch.h: a model for PyTorch: safetensors named as a state_dict plus a generated
 * torch.nn.Module definition (a .py next to it) that loads it with strict=True and
 * computes what the model computes, in training and evaluation mode. */
#ifndef PRUNUS_EXPORT_TORCH_H
#define PRUNUS_EXPORT_TORCH_H

#include "model.h"

G_BEGIN_DECLS

/* Write path (safetensors) and prunus_export_torch_py_path(path) for m: for each dense or
 * conv2d layer "<layer>.weight" (masks applied: pruned weights are 0; dense (out, in),
 * conv (cout, cin, k, k)) and "<layer>.bias" (none for a conv without bias); for each
 * batchnorm "<layer>.weight", ".bias", ".running_mean", ".running_var". A plain
 * sequence (prunus_model_check_plain without folding) loses its dead units first
 * (prunus_model_shrink_dead); every other model keeps its shapes (a shrunk checkpoint's
 * are already small). Metadata: "format" = "pt", "architecture", "module" (the .py's
 * name), and the input normalisation of checkpoint_metadata (may be NULL). The .py holds
 * `class PrunusNet(nn.Module)` and `load_safetensors(path)` (stdlib + torch). source
 * names the origin in the .py. Both files are written atomically; on an error neither
 * is left behind. */
gboolean prunus_export_torch(const PrunusModel *m, GHashTable *checkpoint_metadata,
                             const char *path, const char *source, gboolean quiet, GError **error);

/* (transfer full) The .py written next to path: its ".safetensors" (or last extension)
 * replaced by ".py", or ".py" appended. */
char *prunus_export_torch_py_path(const char *path);

G_END_DECLS

#endif
