/* safetensors.h: read and write the safetensors tensor-file format (8-byte LE
 * header length, JSON header, raw little-endian data); writes are atomic. */
#ifndef PRUNUS_SAFETENSORS_H
#define PRUNUS_SAFETENSORS_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

#define PRUNUS_ST_MAX_DIMS 8
#define PRUNUS_ST_MAX_HEADER (100u * 1024u * 1024u) /* same bound as the reference reader */

/* One float32 tensor. */
typedef struct {
  char *name; /* owned */
  int ndim;
  int64_t shape[PRUNUS_ST_MAX_DIMS];
  float *data; /* (prod(shape)) owned by the reader's file; borrowed by the writer */
} PrunusTensor;

/* A tensor file in memory. */
typedef struct {
  int n_tensors;
  PrunusTensor *tensors; /* (n_tensors) in file order */
  GHashTable *metadata;  /* char* -> char*: the __metadata__ strings */
} PrunusTensorFile;

/* Write tensors (F32) and string metadata (may be NULL) to path atomically: a temp
 * file in the same folder, fsync, rename. On error nothing is left at path that was
 * not there before, and the temp file is removed. Tensor data is laid out in the
 * given order, 8-byte aligned header as the spec recommends (pad with spaces). */
gboolean prunus_safetensors_write(const char *path, const PrunusTensor *tensors, int n,
                                  GHashTable *metadata, GError **error);

/* (transfer full) Read and validate a file: file at least 8 bytes, header length
 * <= PRUNUS_ST_MAX_HEADER and inside the file, header is a JSON object, each tensor
 * has dtype "F32", a shape of non-negative ints, data_offsets [begin,end] with
 * begin <= end, end inside the data section, (end-begin) == 4*prod(shape), regions
 * not overlapping; __metadata__ an object of strings. Each failure is a
 * PRUNUS_ERROR_FORMAT error naming the path, the tensor and what was wrong. */
PrunusTensorFile *prunus_safetensors_read(const char *path, GError **error);
void prunus_tensor_file_free(PrunusTensorFile *f);
const PrunusTensor *prunus_tensor_file_find(const PrunusTensorFile *f, const char *name);
size_t prunus_tensor_numel(const PrunusTensor *t);
/* "[2, 3]" for messages. (transfer full) */
char *prunus_shape_text(const int64_t *shape, int ndim);

G_END_DECLS

#endif
