/* predict.c: prunus's own logits on an IDX image file, for bench/export_check.py to
 * hold the exported C and PyTorch models against: the checkpoint's model in evaluation
 * mode (prunus_model_forward, batchnorm not folded), the images normalised as the
 * checkpoint's metadata says, 256 at a time; writes N x n_classes float32 logits.
 * Usage: predict CHECKPOINT IMAGES_IDX_GZ LABELS_IDX_GZ OUT.f32 */
#include "checkpoint.h"
#include "dataset.h"

#include <stdio.h>

#define BATCH 256

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: predict CHECKPOINT IMAGES_IDX_GZ LABELS_IDX_GZ OUT.f32\n");
    return 2;
  }
  GError *error = NULL;
  GHashTable *md = NULL;
  PrunusModel *m = prunus_checkpoint_load(argv[1], BATCH, NULL, &md, &error);
  PrunusNorm norm;
  gboolean found = FALSE;
  if (m && !prunus_checkpoint_metadata_norm(md, argv[1], &norm, &found, &error))
    g_clear_pointer(&m, prunus_model_free);
  if (m && !found) {
    g_set_error(&error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                "%s carries no input normalisation: save it with `prunus train`/`run`", argv[1]);
    g_clear_pointer(&m, prunus_model_free);
  }
  PrunusDataset *d = m ? prunus_dataset_load_idx(argv[2], argv[3], 0, &error) : NULL;
  if (!d) {
    fprintf(stderr, "predict: %s\n", error->message);
    return 1;
  }
  FILE *out = fopen(argv[4], "wb");
  if (!out) {
    perror(argv[4]);
    return 1;
  }
  prunus_model_set_training(m, FALSE);
  int K = prunus_model_n_classes(m);
  size_t in = prunus_model_input_size(m);
  float *x = g_new(float, (size_t)BATCH *in);
  int idx[BATCH];
  uint8_t y[BATCH];
  for (int s = 0; s < d->n; s += BATCH) {
    int B = MIN(BATCH, d->n - s);
    for (int b = 0; b < B; b++) idx[b] = s + b;
    prunus_dataset_fill_batch(d, &norm, idx, B, x, y);
    prunus_model_forward(m, x, B);
    if (fwrite(m->acts[m->n_layers], sizeof(float) * K, B, out) != (size_t)B) {
      perror(argv[4]);
      return 1;
    }
  }
  if (fclose(out) != 0) {
    perror(argv[4]);
    return 1;
  }
  printf("{\"n\": %d, \"classes\": %d}\n", d->n, K);
  g_free(x);
  prunus_dataset_free(d);
  if (md) g_hash_table_unref(md);
  prunus_model_free(m);
  return 0;
}
