/* fuzz_idx.c: the IDX reader (core/data/dataset.c), raw and gzip, on arbitrary
 * bytes. Input layout: byte 0 = max_label (0 means 256), bytes 1-2 = the length L of
 * the image file (little-endian, clamped to what is there), then L bytes of image
 * file, then the label file. A dataset it accepts must be consistent: every label
 * below n_classes, n_classes within [2, max_label], n * c*h*w image bytes. */
#include "dataset.h"
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prunus_fuzz_init();
  if (size < 3) return 0;
  int max_label = data[0];
  size_t image_len = (size_t)data[1] | (size_t)data[2] << 8;
  data += 3, size -= 3;
  if (image_len > size) image_len = size;
  const char *images = prunus_fuzz_file(0, data, image_len);
  const char *labels = prunus_fuzz_file(1, data + image_len, size - image_len);
  GError *error = NULL;
  PrunusDataset *d = prunus_dataset_load_idx(images, labels, max_label, &error);
  if (!d) {
    /* every refusal names the file it is about */
    if (!error || (!strstr(error->message, images) && !strstr(error->message, labels))) abort();
    g_error_free(error);
    return 0;
  }
  int limit = max_label ? max_label : 256;
  if (d->n <= 0 || d->c <= 0 || d->h <= 0 || d->w <= 0) abort();
  if (d->n_classes < 2 || d->n_classes > (limit < 2 ? 2 : limit)) abort();
  uint64_t sum = 0;
  for (int i = 0; i < d->n; i++) {
    if (d->labels[i] >= d->n_classes) abort();
    sum += d->labels[i];
  }
  size_t per = (size_t)d->c * d->h * d->w;
  for (size_t i = 0; i < (size_t)d->n * per; i++) sum += d->images[i]; /* all bytes readable */
  /* the normalisation fit and one batch on what was read */
  PrunusNorm norm = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  if (!(norm.std > 0.0f)) abort();
  int idx[2] = {0, d->n - 1};
  float *x = g_new(float, 2 * per);
  uint8_t y[2];
  prunus_dataset_fill_batch(d, &norm, idx, 2, x, y);
  g_free(x);
  prunus_dataset_free(d);
  return (int)(sum & 0);
}
