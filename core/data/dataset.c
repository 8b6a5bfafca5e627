/* dataset.c: IDX (MNIST-format) image and label files, raw or gzip, read into a
 * PrunusDataset (uint8 in memory); owns the normalisation fit and batch filling. */
#include "dataset.h"
#include "convert.h"

#include <errno.h>
#include <immintrin.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

const char *const prunus_norm_kind_names[] = {[PRUNUS_NORM_UNIT] = "unit",
                                              [PRUNUS_NORM_STANDARD] = "standard",
                                              [PRUNUS_NORM_STANDARD + 1] = NULL};

// ----------------------------------------------------------------------------
// IDX header: 2 zero bytes, element type, number of dims, then big-endian u32 dims

#define PRUNUS_IDX_TYPE_UBYTE 0x08
#define PRUNUS_IDX_MAGIC_LABELS 0x00000801u
#define PRUNUS_IDX_MAGIC_IMAGES3 0x00000803u
#define PRUNUS_IDX_MAGIC_IMAGES4 0x00000804u
#define PRUNUS_IDX_MAX_DIMS 4
#define PRUNUS_GZIP_CHUNK ((size_t)1 << 16)

typedef enum {
  PRUNUS_IDX_WANT_IMAGES, /* 0x803 (n, h, w) or 0x804 (n, c, h, w) */
  PRUNUS_IDX_WANT_LABELS, /* 0x801 (n) */
} PrunusIdxWant;

typedef struct {
  uint32_t magic;
  int ndims;
  uint32_t dims[PRUNUS_IDX_MAX_DIMS]; /* (ndims) as stored */
  size_t header_len;                  /* 4 + 4 * ndims */
  size_t payload_len;                 /* product of dims: one byte per element */
} PrunusIdxHeader;

static const char *prunus_idx_want_name(PrunusIdxWant want) {
  return want == PRUNUS_IDX_WANT_IMAGES ? "image" : "label";
}

static const char *prunus_idx_type_name(uint8_t type) {
  switch (type) {
  case 0x08:
    return "unsigned byte";
  case 0x09:
    return "signed byte";
  case 0x0B:
    return "short";
  case 0x0C:
    return "int";
  case 0x0D:
    return "float";
  case 0x0E:
    return "double";
  default:
    return "unknown type";
  }
}

/* "60000x28x28" into buf. */
static const char *prunus_idx_dims_str(const PrunusIdxHeader *hdr, char *buf, size_t size) {
  size_t at = 0;
  buf[0] = '\0';
  for (int i = 0; i < hdr->ndims && at < size; i++)
    at += (size_t)g_snprintf(buf + at, size - at, i ? "x%u" : "%u", hdr->dims[i]);
  return buf;
}

static uint32_t prunus_read_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Check the 4 magic bytes at buf against want; fills magic, ndims and header_len. */
static gboolean prunus_idx_check_magic(const char *path, const uint8_t *buf, PrunusIdxWant want,
                                       PrunusIdxHeader *hdr, GError **error) {
  uint32_t magic = prunus_read_be32(buf);
  int ndims = buf[3];
  gboolean images = want == PRUNUS_IDX_WANT_IMAGES;
  gboolean ndims_ok = images ? (ndims == 3 || ndims == 4) : ndims == 1;
  const char *expected = images ? "0x00000803 (or 0x00000804 for n,c,h,w)" : "0x00000801";

  if (buf[0] == 0 && buf[1] == 0 && ndims_ok && buf[2] != PRUNUS_IDX_TYPE_UBYTE) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: IDX %s file has element type 0x%02x (%s): expected 0x08 (unsigned byte)", path,
                prunus_idx_want_name(want), buf[2], prunus_idx_type_name(buf[2]));
    return FALSE;
  }
  if (buf[0] != 0 || buf[1] != 0 || !ndims_ok) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: not an IDX %s file: expected magic %s, found 0x%08x", path,
                prunus_idx_want_name(want), expected, magic);
    return FALSE;
  }
  hdr->magic = magic;
  hdr->ndims = ndims;
  hdr->header_len = 4 + 4 * (size_t)ndims;
  return TRUE;
}

/* Read the dims after a checked magic (buf holds header_len bytes); reject zero dims,
 * more than INT_MAX samples or bytes per sample, and products that overflow. */
static gboolean prunus_idx_parse_dims(const char *path, const uint8_t *buf, PrunusIdxWant want,
                                      PrunusIdxHeader *hdr, GError **error) {
  char dims[64];
  for (int i = 0; i < hdr->ndims; i++) hdr->dims[i] = prunus_read_be32(buf + 4 + 4 * i);
  prunus_idx_dims_str(hdr, dims, sizeof dims);

  for (int i = 0; i < hdr->ndims; i++) {
    if (hdr->dims[i] == 0) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: IDX %s file has dimensions %s: dimension %d is zero", path,
                  prunus_idx_want_name(want), dims, i);
      return FALSE;
    }
  }
  if (hdr->dims[0] > (uint32_t)INT_MAX) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: IDX dimensions %s are too large: %u samples exceed the limit of %d", path,
                dims, hdr->dims[0], INT_MAX);
    return FALSE;
  }
  guint64 per_sample = 1;
  for (int i = 1; i < hdr->ndims; i++) {
    if (!g_uint64_checked_mul(&per_sample, per_sample, hdr->dims[i]) || per_sample > INT_MAX) {
      g_set_error(
          error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
          "%s: IDX dimensions %s are too large: the bytes per sample exceed the limit of %d", path,
          dims, INT_MAX);
      return FALSE;
    }
  }
  /* Both factors are at most INT_MAX, so the product fits 64 bits. */
  guint64 payload = per_sample * hdr->dims[0];
  if (payload > (guint64)(SIZE_MAX - hdr->header_len)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: IDX dimensions %s are too large for this machine's address space", path, dims);
    return FALSE;
  }
  hdr->payload_len = (size_t)payload;
  return TRUE;
}

/* Validate a whole IDX buffer of len bytes; what names len in messages. */
static gboolean prunus_idx_parse(const char *path, const uint8_t *buf, size_t len, const char *what,
                                 PrunusIdxWant want, PrunusIdxHeader *hdr, GError **error) {
  char dims[64];
  if (len < 4) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: truncated IDX header: %s is %zu bytes, need at least 4", path, what, len);
    return FALSE;
  }
  if (!prunus_idx_check_magic(path, buf, want, hdr, error)) return FALSE;
  if (len < hdr->header_len) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: truncated IDX header: %s is %zu bytes, the %d-dimension header needs %zu",
                path, what, len, hdr->ndims, hdr->header_len);
    return FALSE;
  }
  if (!prunus_idx_parse_dims(path, buf, want, hdr, error)) return FALSE;
  prunus_idx_dims_str(hdr, dims, sizeof dims);
  size_t body = len - hdr->header_len;
  if (body < hdr->payload_len) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: truncated data: dimensions %s need %zu bytes after the %zu-byte header, "
                "found %zu",
                path, dims, hdr->payload_len, hdr->header_len, body);
    return FALSE;
  }
  if (body > hdr->payload_len) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: dimensions %s do not match the %s: expected %zu bytes, found %zu "
                "(%zu trailing)",
                path, dims, what, hdr->header_len + hdr->payload_len, len, body - hdr->payload_len);
    return FALSE;
  }
  return TRUE;
}

// ----------------------------------------------------------------------------
// Reading: whole file, then gunzip when it starts with 1f 8b

/* (transfer full) The bytes of path; *len their count. */
static uint8_t *prunus_file_read_all(const char *path, size_t *len, GError **error) {
  uint8_t *buf = NULL;
  struct stat st;
  FILE *f = g_fopen(path, "rb");
  if (!f) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: cannot open: %s", path, g_strerror(e));
    return NULL;
  }
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: cannot stat: %s", path, g_strerror(e));
    goto out_close_file;
  }
  if (!S_ISREG(st.st_mode)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: not a regular file", path);
    goto out_close_file;
  }
  if ((guint64)st.st_size > (guint64)SIZE_MAX - 1) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: file too large to read", path);
    goto out_close_file;
  }
  size_t size = (size_t)st.st_size;
  buf = g_try_malloc(size ? size : 1);
  if (!buf) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: cannot allocate %zu bytes to read it",
                path, size);
    goto out_close_file;
  }
  if (fread(buf, 1, size, f) != size) {
    int e = errno;
    if (ferror(f))
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: read error: %s", path, g_strerror(e));
    else
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: file shrank while being read", path);
    goto out_free_buffer;
  }
  fclose(f);
  *len = size;
  return buf;

out_free_buffer:
  g_free(buf);
out_close_file:
  fclose(f);
  return NULL;
}

/* (transfer full) Inflate the gzip stream in (possibly several concatenated members).
 * The IDX header is checked as soon as it is out, and inflating stops once the
 * output passes the size it claims, so a small file cannot make us allocate much. */
static uint8_t *prunus_gunzip_idx(const char *path, const uint8_t *in, size_t in_len,
                                  PrunusIdxWant want, size_t *out_len, GError **error) {
  GConverter *z = G_CONVERTER(g_zlib_decompressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP));
  PrunusIdxHeader hdr = {0};
  gboolean have_magic = FALSE, have_dims = FALSE;
  size_t expected = 0; /* header_len + payload_len once have_dims */
  size_t cap = 4 * PRUNUS_GZIP_CHUNK, len = 0, in_pos = 0;
  int member = 1;          /* gzip members, counting from 1 */
  size_t member_start = 0; /* compressed offset where the current member began */
  uint8_t *out = g_try_malloc(cap);
  if (!out) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "%s: cannot allocate a gzip buffer", path);
    goto out_unref_converter;
  }

  for (;;) {
    if (cap - len < PRUNUS_GZIP_CHUNK) {
      /* while have_dims, len <= expected, so expected + CHUNK always leaves a chunk free */
      size_t new_cap = cap <= SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
      size_t bound =
          expected > SIZE_MAX - PRUNUS_GZIP_CHUNK ? SIZE_MAX : expected + PRUNUS_GZIP_CHUNK;
      if (have_dims && new_cap > bound) new_cap = bound;
      uint8_t *grown = new_cap > cap ? g_try_realloc(out, new_cap) : NULL;
      if (!grown) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO,
                    "%s: cannot allocate %zu bytes for the decompressed data", path, new_cap);
        goto out_free_output;
      }
      out = grown;
      cap = new_cap;
    }

    gsize nread = 0, nwritten = 0;
    GError *zerr = NULL;
    GConverterResult res =
        g_converter_convert(z, in + in_pos, in_len - in_pos, out + len, cap - len,
                            G_CONVERTER_INPUT_AT_END, &nread, &nwritten, &zerr);
    if (res == G_CONVERTER_ERROR) {
      if (g_error_matches(zerr, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT))
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                    "%s: corrupt gzip data: the stream is truncated (%zu compressed bytes)", path,
                    in_len);
      else if (member > 1) /* bytes after a complete member that are not another member */
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                    "%s: corrupt gzip data in member %d (starting at compressed byte %zu): %s",
                    path, member, member_start, zerr->message);
      else
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT, "%s: corrupt gzip data: %s", path,
                    zerr->message);
      g_error_free(zerr);
      goto out_free_output;
    }
    in_pos += nread;
    len += nwritten;

    if (!have_magic && len >= 4) {
      if (!prunus_idx_check_magic(path, out, want, &hdr, error)) goto out_free_output;
      have_magic = TRUE;
    }
    if (have_magic && !have_dims && len >= hdr.header_len) {
      if (!prunus_idx_parse_dims(path, out, want, &hdr, error)) goto out_free_output;
      have_dims = TRUE;
      expected = hdr.header_len + hdr.payload_len;
    }
    if (have_dims && len > expected) {
      char dims[64];
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: dimensions %s do not match the decompressed length: expected %zu bytes, "
                  "found at least %zu",
                  path, prunus_idx_dims_str(&hdr, dims, sizeof dims), expected, len);
      goto out_free_output;
    }

    if (res == G_CONVERTER_FINISHED) {
      if (in_pos >= in_len) break;
      g_converter_reset(z); /* another gzip member follows */
      member++;
      member_start = in_pos;
    } else if (nread == 0 && nwritten == 0) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: corrupt gzip data: decompression stalled", path);
      goto out_free_output;
    }
  }

  g_object_unref(z);
  *out_len = len;
  return out;

out_free_output:
  g_free(out);
out_unref_converter:
  g_object_unref(z);
  return NULL;
}

/* (transfer full) The payload of the IDX file at path (header stripped), checked
 * against want; *hdr describes it. */
static uint8_t *prunus_idx_read(const char *path, PrunusIdxWant want, PrunusIdxHeader *hdr,
                                GError **error) {
  size_t len = 0;
  uint8_t *buf = prunus_file_read_all(path, &len, error);
  if (!buf) return NULL;
  gboolean gzipped = len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
  if (gzipped) {
    size_t raw_len = 0;
    uint8_t *raw = prunus_gunzip_idx(path, buf, len, want, &raw_len, error);
    g_free(buf);
    if (!raw) return NULL;
    buf = raw;
    len = raw_len;
  }
  if (!prunus_idx_parse(path, buf, len, gzipped ? "decompressed length" : "file length", want, hdr,
                        error)) {
    g_free(buf);
    return NULL;
  }
  memmove(buf, buf + hdr->header_len, hdr->payload_len);
  uint8_t *shrunk = g_try_realloc(buf, hdr->payload_len);
  return shrunk ? shrunk : buf;
}

// ----------------------------------------------------------------------------
// Datasets

static void *prunus_memdup(const void *src, size_t size) {
  if (size == 0) return NULL;
  void *dst = g_malloc(size);
  memcpy(dst, src, size);
  return dst;
}

PrunusDataset *prunus_dataset_load_idx(const char *images_path, const char *labels_path,
                                       int max_label, GError **error) {
  g_return_val_if_fail(images_path != NULL && labels_path != NULL, NULL);
  g_return_val_if_fail(error == NULL || *error == NULL, NULL);
  if (max_label < 0 || max_label > 256) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                "max_label %d is out of range: expected 1..256, or 0 for any byte", max_label);
    return NULL;
  }
  int limit = max_label ? max_label : 256;
  PrunusIdxHeader ih, lh;
  PrunusDataset *d = NULL;

  uint8_t *images = prunus_idx_read(images_path, PRUNUS_IDX_WANT_IMAGES, &ih, error);
  if (!images) return NULL;
  uint8_t *labels = prunus_idx_read(labels_path, PRUNUS_IDX_WANT_LABELS, &lh, error);
  if (!labels) goto out_free_images;
  if (lh.dims[0] != ih.dims[0]) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "label count does not match image count: %s has %u labels, %s has %u images",
                labels_path, lh.dims[0], images_path, ih.dims[0]);
    goto out_free_labels;
  }
  int n = (int)ih.dims[0], top = 0;
  for (int i = 0; i < n; i++) {
    if (labels[i] >= limit) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                  "%s: label at index %d has value %d, out of range: labels must be < %d",
                  labels_path, i, labels[i], limit);
      goto out_free_labels;
    }
    if (labels[i] > top) top = labels[i];
  }

  d = g_new0(PrunusDataset, 1);
  d->n = n;
  d->c = ih.ndims == 4 ? (int)ih.dims[1] : 1;
  d->h = (int)ih.dims[ih.ndims - 2];
  d->w = (int)ih.dims[ih.ndims - 1];
  d->n_classes = MAX(2, max_label ? max_label : top + 1);
  d->images = images;
  d->labels = labels;
  return d;

out_free_labels:
  g_free(labels);
out_free_images:
  g_free(images);
  return NULL;
}

void prunus_dataset_free(PrunusDataset *d) {
  if (!d) return;
  g_free(d->images);
  g_free(d->labels);
  g_free(d);
}

PrunusDataset *prunus_dataset_slice(const PrunusDataset *d, int start, int count) {
  g_return_val_if_fail(d != NULL, NULL);
  g_return_val_if_fail(start >= 0 && count >= 0 && start <= d->n - count, NULL);
  size_t row = (size_t)d->c * d->h * d->w;
  PrunusDataset *s = g_new0(PrunusDataset, 1);
  s->n = count;
  s->c = d->c;
  s->h = d->h;
  s->w = d->w;
  s->n_classes = d->n_classes;
  s->images = prunus_memdup(d->images + (size_t)start * row, (size_t)count * row);
  s->labels = prunus_memdup(d->labels + start, (size_t)count);
  return s;
}

PrunusDataset *prunus_dataset_new_from_data(int n, int c, int h, int w, int n_classes,
                                            const uint8_t *images, const uint8_t *labels) {
  g_return_val_if_fail(n >= 0 && c > 0 && h > 0 && w > 0, NULL);
  g_return_val_if_fail((gint64)c * h * w <= INT_MAX, NULL);
  g_return_val_if_fail(n_classes >= 1 && n_classes <= 256, NULL);
  g_return_val_if_fail(n == 0 || (images != NULL && labels != NULL), NULL);
  for (int i = 0; i < n; i++) g_return_val_if_fail(labels[i] < n_classes, NULL);
  size_t row = (size_t)c * h * w;
  PrunusDataset *d = g_new0(PrunusDataset, 1);
  d->n = n;
  d->c = c;
  d->h = h;
  d->w = w;
  d->n_classes = n_classes;
  d->images = prunus_memdup(images, (size_t)n * row);
  d->labels = prunus_memdup(labels, (size_t)n);
  return d;
}

// ----------------------------------------------------------------------------
// Normalisation

PrunusNorm prunus_norm_fit(const PrunusDataset *d, PrunusNormKind kind) {
  PrunusNorm norm = {.kind = kind, .mean = 0.0f, .std = 1.0f};
  g_return_val_if_fail(d != NULL, norm);
  g_return_val_if_fail(kind == PRUNUS_NORM_UNIT || kind == PRUNUS_NORM_STANDARD, norm);
  size_t total = (size_t)d->n * d->c * d->h * d->w;
  if (kind == PRUNUS_NORM_UNIT || total == 0) return norm;

  /* a byte histogram makes both passes exact and cheap */
  guint64 hist[256] = {0};
  for (size_t i = 0; i < total; i++) hist[d->images[i]]++;
  double mean = 0.0, var = 0.0;
  for (int v = 0; v < 256; v++) mean += (double)hist[v] * (v / 255.0);
  mean /= (double)total;
  for (int v = 0; v < 256; v++) {
    double u = v / 255.0 - mean;
    var += (double)hist[v] * u * u;
  }
  var /= (double)total;
  double sd = sqrt(var);
  norm.mean = (float)mean;
  norm.std = sd > 1e-6 ? (float)sd : 1.0f; /* constant images: centre only */
  return norm;
}

/* lut[u] = the normalised value of byte u. */
static void prunus_norm_lut(const PrunusNorm *norm, float lut[256]) {
  if (norm->kind == PRUNUS_NORM_STANDARD) {
    double mean = norm->mean, std = norm->std;
    for (int u = 0; u < 256; u++) lut[u] = (float)((u / 255.0 - mean) / std);
  } else {
    for (int u = 0; u < 256; u++) lut[u] = (float)(u / 255.0);
  }
}

/* Ask for one image row's cache lines (a read, kept in the outer caches when low). */
static void prefetch_row(const uint8_t *src, size_t row, gboolean low) {
  for (size_t off = 0; off < row; off += 64) {
    if (low)
      __builtin_prefetch(src + off, 0, 1);
    else
      __builtin_prefetch(src + off);
  }
}

/* dst[j] = lut[src[j]] for j < n, written with non-temporal stores: the batch slot was
 * read by every training thread in the step before, and an ordinary store to a line
 * another core holds waits for that copy's invalidation. Where the cores share no
 * cache that wait made the fill several times slower; streamed, it costs the same
 * either way (docs/perf-log.md). */
static void convert_row_streaming(const uint8_t *src, const float *lut, float *dst, size_t n) {
  size_t j = 0;
  for (; j < n && ((uintptr_t)(dst + j) & 15) != 0; j++) dst[j] = lut[src[j]];
  for (; j + 4 <= n; j += 4)
    _mm_stream_ps(dst + j,
                  _mm_setr_ps(lut[src[j]], lut[src[j + 1]], lut[src[j + 2]], lut[src[j + 3]]));
  for (; j < n; j++) dst[j] = lut[src[j]];
}

/* dst[j] = lut[src[j]] for j < n, ordinary stores. */
static void convert_row_cached(const uint8_t *src, const float *lut, float *dst, size_t n) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4)
    _mm_storeu_ps(dst + j,
                  _mm_setr_ps(lut[src[j]], lut[src[j + 1]], lut[src[j + 2]], lut[src[j + 3]]));
  for (; j < n; j++) dst[j] = lut[src[j]];
}

/* Unit pixels are byte / 255 rounded once, which the vector kernel computes 16 at a
 * time: TRUE where every entry of the unit table agrees with that (it does on IEEE
 * hardware; the check keeps the bits the table gives everywhere). The unit table has
 * no parameters, so the answer is the process's: checked once. */
static gboolean unit_norm_divides(void) {
  static atomic_int known = -1; /* fills on several threads may race to the first check */
  int v = atomic_load_explicit(&known, memory_order_relaxed);
  if (v < 0) {
    const PrunusNorm unit = {.kind = PRUNUS_NORM_UNIT, .mean = 0.0f, .std = 1.0f};
    float lut[256];
    prunus_norm_lut(&unit, lut);
    v = 1;
    for (int u = 0; u < 256 && v; u++) v = lut[u] == (float)u / 255.0f;
    atomic_store_explicit(&known, v, memory_order_relaxed);
  }
  return v;
}

static void fill_batch(const PrunusDataset *d, const PrunusNorm *norm, const int *idx, int B,
                       float *x, uint8_t *y, gboolean streaming) {
  g_assert(d != NULL && norm != NULL && B >= 0);
  g_assert(B == 0 || (idx != NULL && x != NULL && y != NULL));
  g_assert(norm->kind == PRUNUS_NORM_UNIT ||
           (norm->kind == PRUNUS_NORM_STANDARD && norm->std > 0.0f));
  const gboolean divide = norm->kind == PRUNUS_NORM_UNIT && unit_norm_divides();
  float lut[256];
  if (!divide) prunus_norm_lut(norm, lut);
  const size_t row = (size_t)d->c * d->h * d->w;
  /* Rows come from anywhere in the image array (a shuffled order): ask for the row
   * a few places ahead while this one is converted, or every row waits on memory. */
  enum { PREFETCH_AHEAD = 4 };
  for (int b = 0; b < B; b++) {
    if (b + PREFETCH_AHEAD < B)
      prefetch_row(d->images + (size_t)idx[b + PREFETCH_AHEAD] * row, row, FALSE);
    int i = idx[b];
    g_assert(i >= 0 && i < d->n);
    const uint8_t *src = d->images + (size_t)i * row; /* (c*h*w) */
    float *dst = x + (size_t)b * row;                 /* (c*h*w) */
    if (divide)
      prunus_bytes_over(src, 255.0f, dst, row, streaming);
    else if (streaming)
      convert_row_streaming(src, lut, dst, row);
    else
      convert_row_cached(src, lut, dst, row);
    y[b] = d->labels[i];
  }
  if (streaming) _mm_sfence(); /* the streamed rows are visible before anyone reads the batch */
}

void prunus_dataset_fill_batch(const PrunusDataset *d, const PrunusNorm *norm, const int *idx,
                               int B, float *x, uint8_t *y) {
  fill_batch(d, norm, idx, B, x, y, TRUE);
}

void prunus_dataset_fill_batch_cached(const PrunusDataset *d, const PrunusNorm *norm,
                                      const int *idx, int B, float *x, uint8_t *y) {
  fill_batch(d, norm, idx, B, x, y, FALSE);
}

void prunus_dataset_prefetch(const PrunusDataset *d, const int *idx, int B) {
  const size_t row = (size_t)d->c * d->h * d->w;
  for (int b = 0; b < B; b++) prefetch_row(d->images + (size_t)idx[b] * row, row, TRUE);
}
