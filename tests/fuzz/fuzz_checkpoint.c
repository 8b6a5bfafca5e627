/* fuzz_checkpoint.c: the checkpoint loader (core/formats/checkpoint.c: architecture
 * metadata, tensor shapes, masks of 0/1, masked weights at 0, the input
 * normalisation) on arbitrary bytes. Byte 0 picks the workspace batch (1..4); the
 * rest is the file. A model it accepts must satisfy what the loader promises. */
#include "checkpoint.h"
#include "fuzz_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prunus_fuzz_init();
  if (size < 1) return 0;
  int max_batch = 1 + data[0] % 4;
  const char *path = prunus_fuzz_file(0, data + 1, size - 1);
  GError *error = NULL;
  GHashTable *md = NULL;
  PrunusModel *m = prunus_checkpoint_load(path, max_batch, NULL, &md, &error);
  if (!m) {
    if (!error || !strstr(error->message, path)) abort(); /* refusals name the file */
    g_error_free(error);
    return 0;
  }
  for (size_t i = 0; i < m->n_params; i++) {
    if (m->mask[i] != 0.0f && m->mask[i] != 1.0f) abort();
    if (m->mask[i] == 0.0f && m->params[i] != 0.0f) abort();
  }
  if (m->n_params * sizeof(float) > size) abort(); /* parameters come from the file */
  PrunusNorm norm;
  gboolean found = FALSE;
  if (prunus_checkpoint_metadata_norm(md, path, &norm, &found, &error)) {
    if (found && (!isfinite(norm.mean) || !(norm.std > 0.0f))) abort();
  } else {
    if (!error || !strstr(error->message, path)) abort();
    g_clear_error(&error);
  }
  /* one forward pass on what was loaded */
  size_t in = prunus_model_input_size(m);
  float *x = g_new0(float, in *(size_t)max_batch);
  prunus_model_forward(m, x, max_batch);
  g_free(x);
  if (md) g_hash_table_unref(md);
  prunus_model_free(m);
  return 0;
}
