/* fuzz_safetensors.c: the safetensors reader (core/formats/safetensors.c) on arbitrary
 * bytes. A file it accepts must be self-consistent (every tensor's bytes inside the
 * data, distinct names) and survive a write and a second read unchanged. */
#include "fuzz_common.h"
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

static gboolean same_file(const PrunusTensorFile *a, const PrunusTensorFile *b) {
  if (a->n_tensors != b->n_tensors) return FALSE;
  if (g_hash_table_size(a->metadata) != g_hash_table_size(b->metadata)) return FALSE;
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, a->metadata);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    const char *w = g_hash_table_lookup(b->metadata, k);
    if (!w || strcmp(v, w) != 0) return FALSE;
  }
  for (int i = 0; i < a->n_tensors; i++) {
    const PrunusTensor *x = &a->tensors[i];
    const PrunusTensor *y = prunus_tensor_file_find(b, x->name);
    if (!y || x->ndim != y->ndim) return FALSE;
    for (int d = 0; d < x->ndim; d++)
      if (x->shape[d] != y->shape[d]) return FALSE;
    if (memcmp(x->data, y->data, prunus_tensor_numel(x) * sizeof(float)) != 0) return FALSE;
  }
  return TRUE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prunus_fuzz_init();
  const char *path = prunus_fuzz_file(0, data, size);
  GError *error = NULL;
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  if (!f) {
    if (!error || !strstr(error->message, path)) abort(); /* refusals name the file */
    g_error_free(error);
    return 0;
  }
  uint64_t bytes = 0;
  for (int i = 0; i < f->n_tensors; i++) {
    const PrunusTensor *t = &f->tensors[i];
    if (t->ndim < 0 || t->ndim > PRUNUS_ST_MAX_DIMS) abort();
    if (prunus_tensor_file_find(f, t->name) != t) abort(); /* names are unique */
    bytes += prunus_tensor_numel(t) * sizeof(float);
  }
  if (bytes > size) abort(); /* the tensors cannot hold more than the file */

  /* write it back (the metadata and tensors as read) and read it again */
  char *copy = g_build_filename(prunus_fuzz_dir(), "copy.safetensors", NULL);
  if (!prunus_safetensors_write(copy, f->tensors, f->n_tensors, f->metadata, &error)) abort();
  PrunusTensorFile *g = prunus_safetensors_read(copy, &error);
  if (!g || !same_file(f, g)) abort();
  prunus_tensor_file_free(g);
  g_free(copy);
  prunus_tensor_file_free(f);
  return 0;
}
