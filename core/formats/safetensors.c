/* safetensors.c: the safetensors tensor-file format for F32 tensors: a validating
 * reader (every header field, full coverage of the data section) and an atomic
 * writer (temp file in the same folder, fsync, rename). */
#include "errors.h"
#include "safetensors.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor data is copied as raw little-endian float32 bytes. */
G_STATIC_ASSERT(G_BYTE_ORDER == G_LITTLE_ENDIAN);
G_STATIC_ASSERT(sizeof(float) == 4);

#define ST_METADATA_KEY "__metadata__"
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: JSON numbers above are not exact */

size_t prunus_tensor_numel(const PrunusTensor *t) {
  g_return_val_if_fail(t != NULL, 0);
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

char *prunus_shape_text(const int64_t *shape, int ndim) {
  GString *s = g_string_new("[");
  for (int d = 0; d < ndim; d++)
    g_string_append_printf(s, "%s%" G_GINT64_FORMAT, d ? ", " : "", shape[d]);
  g_string_append_c(s, ']');
  return g_string_free(s, FALSE);
}

/* Bytes of F32 data for a shape; FALSE when the product overflows 64 bits. */
static gboolean shape_nbytes(const int64_t *shape, int ndim, uint64_t *out) {
  uint64_t n = sizeof(float);
  for (int d = 0; d < ndim; d++)
    if (!g_uint64_checked_mul(&n, n, (uint64_t)shape[d])) return FALSE;
  *out = n;
  return TRUE;
}

/* ------------------------------------------------------------------------- */
/* Writer */

static int compare_strings(gconstpointer a, gconstpointer b) { return strcmp(a, b); }

/* The header JSON (padded with spaces so the data starts 8-byte aligned) and the
 * data section size. (transfer full) */
static char *build_header(const char *path, const PrunusTensor *tensors, int n,
                          GHashTable *metadata, uint64_t *data_len, GError **error) {
  char *text = NULL;
  PrunusJson *root = prunus_json_new_object();
  GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);

  if (metadata && g_hash_table_size(metadata) > 0) {
    PrunusJson *meta = prunus_json_new_object();
    prunus_json_object_set(root, ST_METADATA_KEY, meta);
    GList *keys = g_list_sort(g_hash_table_get_keys(metadata), compare_strings);
    for (GList *k = keys; k; k = k->next) {
      const char *value = g_hash_table_lookup(metadata, k->data);
      if (!value) {
        prunus_fail_path(error, PRUNUS_ERROR_INVALID, path, "metadata \"%s\" has no value",
                         (const char *)k->data);
        g_list_free(keys);
        goto out_free_json;
      }
      prunus_json_object_set(meta, k->data, prunus_json_new_string(value));
    }
    g_list_free(keys);
  }

  uint64_t offset = 0;
  for (int i = 0; i < n; i++) {
    const PrunusTensor *t = &tensors[i];
    if (!t->name || strcmp(t->name, ST_METADATA_KEY) == 0) {
      prunus_fail_path(error, PRUNUS_ERROR_INVALID, path, "tensor %d has an invalid name \"%s\"", i,
                       t->name ? t->name : "(null)");
      goto out_free_json;
    }
    if (!g_hash_table_add(seen, t->name)) {
      prunus_fail_path(error, PRUNUS_ERROR_INVALID, path, "tensor \"%s\" is given twice", t->name);
      goto out_free_json;
    }
    if (t->ndim < 0 || t->ndim > PRUNUS_ST_MAX_DIMS) {
      prunus_fail_path(error, PRUNUS_ERROR_INVALID, path,
                       "tensor \"%s\": %d dimensions (0..%d allowed)", t->name, t->ndim,
                       PRUNUS_ST_MAX_DIMS);
      goto out_free_json;
    }
    PrunusJson *shape = prunus_json_new_array();
    gboolean shape_ok = TRUE;
    for (int d = 0; d < t->ndim; d++) {
      if (t->shape[d] < 0) shape_ok = FALSE;
      prunus_json_array_add(shape, prunus_json_new_number((double)t->shape[d]));
    }
    uint64_t nbytes = 0;
    if (!shape_ok || !shape_nbytes(t->shape, t->ndim, &nbytes) || nbytes > ST_MAX_EXACT - offset) {
      char *s = prunus_shape_text(t->shape, t->ndim);
      prunus_fail_path(error, PRUNUS_ERROR_INVALID, path, "tensor \"%s\": invalid shape %s",
                       t->name, s);
      g_free(s);
      prunus_json_free(shape);
      goto out_free_json;
    }
    if (nbytes > 0 && !t->data) {
      prunus_fail_path(error, PRUNUS_ERROR_INVALID, path, "tensor \"%s\" has no data", t->name);
      prunus_json_free(shape);
      goto out_free_json;
    }
    PrunusJson *info = prunus_json_new_object();
    prunus_json_object_set(info, "dtype", prunus_json_new_string("F32"));
    prunus_json_object_set(info, "shape", shape);
    PrunusJson *offsets = prunus_json_new_array();
    prunus_json_array_add(offsets, prunus_json_new_number((double)offset));
    prunus_json_array_add(offsets, prunus_json_new_number((double)(offset + nbytes)));
    prunus_json_object_set(info, "data_offsets", offsets);
    prunus_json_object_set(root, t->name, info);
    offset += nbytes;
  }

  char *json = prunus_json_to_string(root, 0);
  GString *padded = g_string_new(json);
  g_free(json);
  while ((8 + padded->len) % 8 != 0) g_string_append_c(padded, ' ');
  text = g_string_free(padded, FALSE);
  *data_len = offset;

out_free_json:
  g_hash_table_destroy(seen);
  prunus_json_free(root);
  return text;
}

/* write(2) all of buf, retrying on EINTR and short writes; errno set on failure. */
static gboolean write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    size_t chunk = len > (1u << 30) ? (1u << 30) : len;
    ssize_t w = write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return FALSE;
    }
    if (w == 0) {
      errno = EIO;
      return FALSE;
    }
    p += w;
    len -= (size_t)w;
  }
  return TRUE;
}

/* Make the rename durable; failures here do not undo the write. */
static void sync_parent_dir(const char *path) {
  char *dir = g_path_get_dirname(path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  g_free(dir);
}

gboolean prunus_safetensors_write(const char *path, const PrunusTensor *tensors, int n,
                                  GHashTable *metadata, GError **error) {
  g_return_val_if_fail(path != NULL, FALSE);
  g_return_val_if_fail(n >= 0 && (tensors != NULL || n == 0), FALSE);
  g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

  gboolean ok = FALSE;
  uint64_t data_len = 0;
  char *header = build_header(path, tensors, n, metadata, &data_len, error);
  if (!header) return FALSE;

  char *tmp = g_strconcat(path, ".tmp-XXXXXX", NULL);
  int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) {
    int saved = errno;
    prunus_fail_path(error, PRUNUS_ERROR_IO, path, "cannot create temp file %s: %s", tmp,
                     g_strerror(saved));
    goto out_free_tmp_name;
  }

  size_t header_len = strlen(header);
  guint64 le_len = GUINT64_TO_LE((guint64)header_len);
  if (!write_all(fd, &le_len, sizeof le_len) || !write_all(fd, header, header_len))
    goto out_write_failed;
  for (int i = 0; i < n; i++) {
    size_t nbytes = prunus_tensor_numel(&tensors[i]) * sizeof(float);
    if (nbytes > 0 && !write_all(fd, tensors[i].data, nbytes)) goto out_write_failed;
  }
  if (fsync(fd) != 0) goto out_write_failed;
  int rc = close(fd);
  fd = -1;
  if (rc != 0) goto out_write_failed;

  if (g_rename(tmp, path) != 0) {
    int saved = errno;
    prunus_fail_path(error, PRUNUS_ERROR_IO, path, "cannot rename temp file %s into place: %s", tmp,
                     g_strerror(saved));
    goto out_unlink_tmp;
  }
  sync_parent_dir(path);
  ok = TRUE;
  goto out_free_tmp_name;

out_write_failed:
  /* no call between the failed one and this reads or sets errno */
  prunus_fail_path(error, PRUNUS_ERROR_IO, path, "cannot write temp file %s: %s", tmp,
                   g_strerror(errno));
out_unlink_tmp:
  if (fd >= 0) close(fd);
  g_unlink(tmp);
out_free_tmp_name:
  g_free(tmp);
  g_free(header);
  return ok;
}

/* ------------------------------------------------------------------------- */
/* Reader */

/* Where one tensor's bytes sit in the data section, for the coverage check. */
typedef struct {
  const char *name;
  uint64_t begin, end;
} StRegion;

static int compare_regions(const void *a, const void *b) {
  const StRegion *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* A JSON number that is an integer in [0, 2^53]. */
static gboolean json_exact_uint(const PrunusJson *v, uint64_t *out) {
  if (prunus_json_type(v) != PRUNUS_JSON_NUMBER) return FALSE;
  double x = prunus_json_number(v);
  if (!(x >= 0.0) || x > ST_MAX_EXACT || x != trunc(x)) return FALSE;
  *out = (uint64_t)x;
  return TRUE;
}

/* Validate one tensor entry of the header into t (name not set) and its region. */
static gboolean parse_tensor_info(const char *path, const char *name, const PrunusJson *info,
                                  uint64_t data_len, PrunusTensor *t, StRegion *region,
                                  GError **error) {
  if (prunus_json_type(info) != PRUNUS_JSON_OBJECT)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": entry is not an object", name);
  for (size_t k = 0; k < prunus_json_length(info); k++) {
    const char *key = prunus_json_key(info, k);
    if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "data_offsets") != 0)
      return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                              "tensor \"%s\": unknown field \"%s\"", name, key);
  }

  const PrunusJson *dtype = prunus_json_get(info, "dtype");
  if (!dtype || prunus_json_type(dtype) != PRUNUS_JSON_STRING)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": missing or non-string dtype", name);
  if (strcmp(prunus_json_string(dtype), "F32") != 0)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": dtype \"%s\" is not supported (only F32)", name,
                            prunus_json_string(dtype));

  const PrunusJson *shape = prunus_json_get(info, "shape");
  if (!shape || prunus_json_type(shape) != PRUNUS_JSON_ARRAY)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": missing or non-array shape", name);
  if (prunus_json_length(shape) > PRUNUS_ST_MAX_DIMS)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": shape has %zu dimensions (at most %d)", name,
                            prunus_json_length(shape), PRUNUS_ST_MAX_DIMS);
  t->ndim = (int)prunus_json_length(shape);
  for (int d = 0; d < t->ndim; d++) {
    uint64_t dim;
    if (!json_exact_uint(prunus_json_index(shape, (size_t)d), &dim))
      return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                              "tensor \"%s\": shape entry %d is not a non-negative integer", name,
                              d);
    t->shape[d] = (int64_t)dim;
  }
  uint64_t nbytes;
  if (!shape_nbytes(t->shape, t->ndim, &nbytes)) {
    char *s = prunus_shape_text(t->shape, t->ndim);
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "tensor \"%s\": shape %s overflows", name,
                     s);
    g_free(s);
    return FALSE;
  }

  const PrunusJson *offsets = prunus_json_get(info, "data_offsets");
  uint64_t begin, end;
  if (!offsets || prunus_json_type(offsets) != PRUNUS_JSON_ARRAY ||
      prunus_json_length(offsets) != 2 || !json_exact_uint(prunus_json_index(offsets, 0), &begin) ||
      !json_exact_uint(prunus_json_index(offsets, 1), &end))
    return prunus_fail_path(
        error, PRUNUS_ERROR_FORMAT, path,
        "tensor \"%s\": data_offsets must be [begin, end], two non-negative integers", name);
  if (begin > end)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                            "] end before they begin",
                            name, begin, end);
  if (end > data_len)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                            "tensor \"%s\": data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                            "] lie outside the data section (%" G_GUINT64_FORMAT " bytes)",
                            name, begin, end, data_len);
  if (end - begin != nbytes) {
    char *s = prunus_shape_text(t->shape, t->ndim);
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "tensor \"%s\": data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                     "] hold %" G_GUINT64_FORMAT " bytes but F32 shape %s needs %" G_GUINT64_FORMAT,
                     name, begin, end, end - begin, s, nbytes);
    g_free(s);
    return FALSE;
  }
  region->name = name;
  region->begin = begin;
  region->end = end;
  return TRUE;
}

/* The data section must be covered exactly: no gaps, no overlaps, nothing after. */
static gboolean check_coverage(const char *path, const StRegion *in_file_order, int n,
                               uint64_t data_len, GError **error) {
  gboolean ok = FALSE;
  StRegion *regions = g_new(StRegion, n > 0 ? n : 1);
  memcpy(regions, in_file_order, (size_t)n * sizeof *regions);
  qsort(regions, (size_t)n, sizeof *regions, compare_regions);
  uint64_t covered = 0;
  const StRegion *prev = NULL;
  for (int i = 0; i < n; i++) {
    const StRegion *r = &regions[i];
    if (r->begin < covered) {
      prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                       "tensor \"%s\": data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       "] overlap tensor \"%s\" [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "]",
                       r->name, r->begin, r->end, prev->name, prev->begin, prev->end);
      goto out_free_sorted;
    }
    if (r->begin > covered) {
      prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                       "data section bytes [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       ") before tensor \"%s\" belong to no tensor",
                       covered, r->begin, r->name);
      goto out_free_sorted;
    }
    covered = r->end;
    prev = r;
  }
  if (covered != data_len) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "%" G_GUINT64_FORMAT
                     " trailing bytes after the last tensor (tensors cover %" G_GUINT64_FORMAT
                     " of %" G_GUINT64_FORMAT " data bytes)",
                     data_len - covered, covered, data_len);
    goto out_free_sorted;
  }
  ok = TRUE;

out_free_sorted:
  g_free(regions);
  return ok;
}

static gboolean parse_metadata(const char *path, const PrunusJson *meta, GHashTable *out,
                               GError **error) {
  if (prunus_json_type(meta) != PRUNUS_JSON_OBJECT)
    return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "%s is not an object",
                            ST_METADATA_KEY);
  for (size_t k = 0; k < prunus_json_length(meta); k++) {
    const PrunusJson *v = prunus_json_member(meta, k);
    if (prunus_json_type(v) != PRUNUS_JSON_STRING)
      return prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "%s \"%s\" is not a string",
                              ST_METADATA_KEY, prunus_json_key(meta, k));
    g_hash_table_insert(out, g_strdup(prunus_json_key(meta, k)), g_strdup(prunus_json_string(v)));
  }
  return TRUE;
}

PrunusTensorFile *prunus_safetensors_read(const char *path, GError **error) {
  g_return_val_if_fail(path != NULL, NULL);
  g_return_val_if_fail(error == NULL || *error == NULL, NULL);

  PrunusTensorFile *file = NULL;
  GError *local = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int saved = errno;
    prunus_fail_path(error, PRUNUS_ERROR_IO, path, "cannot open: %s", g_strerror(saved));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int saved = errno;
    prunus_fail_path(error, PRUNUS_ERROR_IO, path, "cannot stat: %s", g_strerror(saved));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    prunus_fail_path(error, PRUNUS_ERROR_IO, path, "%s",
                     S_ISDIR(st.st_mode) ? "is a folder, not a file" : "is not a regular file");
    close(fd);
    return NULL;
  }
  GMappedFile *map = g_mapped_file_new_from_fd(fd, FALSE, &local);
  close(fd);
  if (!map) {
    prunus_fail_path(error, PRUNUS_ERROR_IO, path, "cannot read: %s", local->message);
    g_error_free(local);
    return NULL;
  }
  const unsigned char *bytes = (const unsigned char *)g_mapped_file_get_contents(map);
  uint64_t size = g_mapped_file_get_length(map);

  if (size < 8) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "file is %" G_GUINT64_FORMAT " bytes, too short for the 8-byte header length",
                     size);
    goto out_unmap;
  }
  guint64 header_len;
  memcpy(&header_len, bytes, sizeof header_len);
  header_len = GUINT64_FROM_LE(header_len);
  if (header_len < 2) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "header length %" G_GUINT64_FORMAT " is too small for a JSON object",
                     header_len);
    goto out_unmap;
  }
  if (header_len > PRUNUS_ST_MAX_HEADER) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "header length %" G_GUINT64_FORMAT
                     " exceeds the limit of %u bytes "
                     "(not a safetensors file?)",
                     header_len, PRUNUS_ST_MAX_HEADER);
    goto out_unmap;
  }
  if (header_len > size - 8) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path,
                     "header length %" G_GUINT64_FORMAT
                     " runs past the end of the file (%" G_GUINT64_FORMAT " bytes): truncated?",
                     header_len, size);
    goto out_unmap;
  }
  const unsigned char *data = bytes + 8 + header_len;
  uint64_t data_len = size - 8 - header_len;

  PrunusJson *header = prunus_json_parse((const char *)bytes + 8, header_len, &local);
  if (!header) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "header (from byte 8) is not valid JSON: %s",
                     local->message);
    g_error_free(local);
    goto out_unmap;
  }
  if (prunus_json_type(header) != PRUNUS_JSON_OBJECT) {
    prunus_fail_path(error, PRUNUS_ERROR_FORMAT, path, "header is not a JSON object");
    goto out_free_header;
  }

  size_t n_members = prunus_json_length(header);
  file = g_new0(PrunusTensorFile, 1);
  file->metadata = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  file->tensors = g_new0(PrunusTensor, n_members ? n_members : 1);
  StRegion *regions = g_new0(StRegion, n_members ? n_members : 1);
  for (size_t k = 0; k < n_members; k++) {
    const char *name = prunus_json_key(header, k);
    const PrunusJson *value = prunus_json_member(header, k);
    if (strcmp(name, ST_METADATA_KEY) == 0) {
      if (!parse_metadata(path, value, file->metadata, error)) goto out_free_file;
      continue;
    }
    PrunusTensor *t = &file->tensors[file->n_tensors];
    if (!parse_tensor_info(path, name, value, data_len, t, &regions[file->n_tensors], error))
      goto out_free_file;
    file->n_tensors++;
  }
  if (!check_coverage(path, regions, file->n_tensors, data_len, error)) goto out_free_file;

  /* Copy each tensor into its own buffer, so data is float-aligned. */
  for (int i = 0; i < file->n_tensors; i++) {
    PrunusTensor *t = &file->tensors[i];
    size_t nbytes = (size_t)(regions[i].end - regions[i].begin);
    t->name = g_strdup(regions[i].name);
    t->data = g_malloc(nbytes > 0 ? nbytes : sizeof(float));
    if (nbytes > 0) memcpy(t->data, data + regions[i].begin, nbytes);
  }
  g_free(regions);
  goto out_free_header;

out_free_file:
  g_free(regions);
  prunus_tensor_file_free(file);
  file = NULL;
out_free_header:
  prunus_json_free(header);
out_unmap:
  g_mapped_file_unref(map);
  return file;
}

void prunus_tensor_file_free(PrunusTensorFile *f) {
  if (!f) return;
  for (int i = 0; i < f->n_tensors; i++) {
    g_free(f->tensors[i].name);
    g_free(f->tensors[i].data);
  }
  g_free(f->tensors);
  if (f->metadata) g_hash_table_destroy(f->metadata);
  g_free(f);
}

const PrunusTensor *prunus_tensor_file_find(const PrunusTensorFile *f, const char *name) {
  g_return_val_if_fail(f != NULL && name != NULL, NULL);
  for (int i = 0; i < f->n_tensors; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}
