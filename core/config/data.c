/* data.c: loads the IDX files a config names and cuts them into train,
 * validation and test splits; fits the normalisation on the training split. The
 * test split alone serves models that carry their normalisation. */
#include "data.h"
#include "hash.h"

/* (transfer full) The first test_limit samples of test (all when 0); takes test. */
static PrunusDataset *test_split(const PrunusRunConfig *rc, PrunusDataset *test) {
  if (rc->test_limit <= 0 || rc->test_limit >= test->n) return test;
  PrunusDataset *cut = prunus_dataset_slice(test, 0, rc->test_limit);
  prunus_dataset_free(test);
  return cut;
}

/* d's labels against the model's classes: a label past them is as likely the model's
 * fault as the data's, so the message names both (the IDX reader checks the format). */
static gboolean labels_fit(const PrunusDataset *d, const char *path, int n_classes,
                           GError **error) {
  for (int i = 0; i < d->n; i++)
    if (d->labels[i] >= n_classes) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                  "%s: label at index %d has value %d, but the model outputs %d classes (the "
                  "units of the last layer in model.layers): labels must be < %d",
                  path, i, d->labels[i], n_classes, n_classes);
      return FALSE;
    }
  return TRUE;
}

/* Feed one split to the digest: its name and shape, then hashes of its images and
 * labels (a missing split, val when validation = 0, as its name alone). */
static void digest_split(GChecksum *sum, const char *name, const PrunusDataset *d) {
  char *head = d ? g_strdup_printf("%s n=%d c=%d h=%d w=%d images=%016" G_GINT64_MODIFIER
                                   "x labels=%016" G_GINT64_MODIFIER "x;",
                                   name, d->n, d->c, d->h, d->w,
                                   prunus_hash64(d->images, (size_t)d->n * d->c * d->h * d->w),
                                   prunus_hash64(d->labels, (size_t)d->n))
                 : g_strdup_printf("%s none;", name);
  g_checksum_update(sum, (const guchar *)head, -1);
  g_free(head);
}

/* The digest of the bytes loaded, not of the files: it describes exactly the data
 * pretraining sees (a file rewritten after it was read cannot slip in), costs no
 * second read, and is equal for equal content whatever the compression, inode or
 * timestamps of the files. */
static void data_digest(PrunusData *d) {
  GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
  digest_split(sum, "train", d->train);
  digest_split(sum, "val", d->val);
  digest_split(sum, "test", d->test);
  g_strlcpy(d->digest, g_checksum_get_string(sum), sizeof d->digest);
  g_checksum_free(sum);
}

/* d's images are what model.input says: the same shape, not only the same size
 * ([4, 14, 14] would train on 28x28 images cut into four planes), unless the model
 * flattens its input first, where only the size matters ([784, 1, 1] for an MLP). */
static gboolean input_fits(const PrunusRunConfig *rc, const PrunusDataset *d) {
  const PrunusShape in = rc->arch.input;
  if (d->c == in.c && d->h == in.h && d->w == in.w) return TRUE;
  return rc->arch.n_layers > 0 && rc->arch.layers[0].type == PRUNUS_LAYER_FLATTEN &&
         (size_t)d->c * d->h * d->w == prunus_shape_size(in);
}

gboolean prunus_data_load(const PrunusRunConfig *rc, PrunusData *out, GError **error) {
  PrunusData d = {0};
  int n_classes = rc->arch.n_classes;
  PrunusDataset *full = prunus_dataset_load_idx(rc->train_images, rc->train_labels, 0, error);
  if (!full) return FALSE;
  PrunusDataset *test = NULL;
  if (!labels_fit(full, rc->train_labels, n_classes, error)) goto out_free_full;
  test = prunus_dataset_load_idx(rc->test_images, rc->test_labels, 0, error);
  if (!test || !labels_fit(test, rc->test_labels, n_classes, error)) goto out_free_test;
  if (!input_fits(rc, full) || test->c != full->c || test->h != full->h || test->w != full->w) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "model.input is [%d, %d, %d] but %s holds %dx%dx%d images and %s %dx%dx%d",
                rc->arch.input.c, rc->arch.input.h, rc->arch.input.w, rc->train_images, full->c,
                full->h, full->w, rc->test_images, test->c, test->h, test->w);
    goto out_free_test;
  }
  int n = rc->train_limit > 0 ? MIN(rc->train_limit, full->n) : full->n;
  if (rc->validation < 0 || rc->validation >= n) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "dataset.validation = %d must be in [0, %d) (the training samples used)",
                rc->validation, n);
    goto out_free_test;
  }
  d.train = prunus_dataset_slice(full, 0, n - rc->validation);
  d.val =
      rc->validation > 0 ? prunus_dataset_slice(full, n - rc->validation, rc->validation) : NULL;
  d.test = test_split(rc, test);
  prunus_dataset_free(full);
  d.norm = prunus_norm_fit(d.train, rc->normalize);
  data_digest(&d);
  *out = d;
  return TRUE;

out_free_test:
  prunus_dataset_free(test);
out_free_full:
  prunus_dataset_free(full);
  return FALSE;
}

gboolean prunus_data_load_test(const PrunusRunConfig *rc, PrunusData *out, GError **error) {
  PrunusDataset *test = prunus_dataset_load_idx(rc->test_images, rc->test_labels, 0, error);
  if (!test) return FALSE;
  if (!labels_fit(test, rc->test_labels, rc->arch.n_classes, error)) {
    prunus_dataset_free(test);
    return FALSE;
  }
  if (!input_fits(rc, test)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "model.input is [%d, %d, %d] but %s holds %dx%dx%d images", rc->arch.input.c,
                rc->arch.input.h, rc->arch.input.w, rc->test_images, test->c, test->h, test->w);
    prunus_dataset_free(test);
    return FALSE;
  }
  out->train = out->val = NULL;
  out->test = test_split(rc, test);
  out->digest[0] = '\0';
  return TRUE;
}

void prunus_data_clear(PrunusData *d) {
  g_clear_pointer(&d->train, prunus_dataset_free);
  g_clear_pointer(&d->val, prunus_dataset_free);
  g_clear_pointer(&d->test, prunus_dataset_free);
  d->digest[0] = '\0';
}
