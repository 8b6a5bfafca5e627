/* test_idx.c: unit tests for core/dataset.c: IDX files (raw and gzip) the tests
 * write themselves, every malformed-input error, norm fitting and batch filling. */
#include "convert.h"
#include "csr.h"
#include "dataset.h"
#include "testutil.h"

#include <immintrin.h>

#include <gio/gio.h>
#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// Helpers: build IDX bytes, gzip them, check errors

#define N_SAMPLES 5
#define IMG_H 3
#define IMG_W 2
#define IMG_ROW (IMG_H * IMG_W)

static const uint8_t sample_labels[N_SAMPLES] = {0, 2, 1, 2, 0};

static uint8_t sample_pixel(size_t k) { return (uint8_t)((37 * k + 11) % 256); }

/* (transfer full) IDX header for magic and dims, then len bytes of payload. */
static GByteArray *idx_make(uint32_t magic, const uint32_t *dims, int ndims, const uint8_t *payload,
                            size_t len) {
  GByteArray *a = g_byte_array_new();
  uint8_t be[4];
  for (int i = -1; i < ndims; i++) {
    uint32_t v = i < 0 ? magic : dims[i];
    be[0] = (uint8_t)(v >> 24);
    be[1] = (uint8_t)(v >> 16);
    be[2] = (uint8_t)(v >> 8);
    be[3] = (uint8_t)v;
    g_byte_array_append(a, be, 4);
  }
  if (len) g_byte_array_append(a, payload, (guint)len);
  return a;
}

/* (transfer full) The sample images (N_SAMPLES, IMG_H, IMG_W) as IDX3 bytes, with extra
 * trailing bytes (extra > 0) or the last -extra payload bytes cut off (extra < 0). */
static GByteArray *idx_sample_images(int extra) {
  uint8_t px[N_SAMPLES * IMG_ROW + 8];
  for (size_t k = 0; k < sizeof px; k++) px[k] = sample_pixel(k);
  uint32_t dims[3] = {N_SAMPLES, IMG_H, IMG_W};
  return idx_make(0x00000803u, dims, 3, px, (size_t)(N_SAMPLES * IMG_ROW + extra));
}

static GByteArray *idx_labels(const uint8_t *labels, uint32_t n) {
  return idx_make(0x00000801u, &n, 1, labels, n);
}

static char *write_array(const char *dir, const char *name, GByteArray *a) {
  char *path = testutil_write_file(dir, name, a->data, a->len);
  g_byte_array_unref(a);
  return path;
}

/* (transfer full) data compressed as one gzip member. */
static GBytes *gzip_bytes(const void *data, size_t len) {
  GError *error = NULL;
  GZlibCompressor *zc = g_zlib_compressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP, -1);
  GOutputStream *mem = g_memory_output_stream_new_resizable();
  GOutputStream *conv = g_converter_output_stream_new(mem, G_CONVERTER(zc));
  g_output_stream_write_all(conv, data, len, NULL, NULL, &error);
  g_assert_no_error(error);
  g_output_stream_close(conv, NULL, &error);
  g_assert_no_error(error);
  GBytes *out = g_memory_output_stream_steal_as_bytes(G_MEMORY_OUTPUT_STREAM(mem));
  g_object_unref(conv);
  g_object_unref(mem);
  g_object_unref(zc);
  g_assert_cmpuint(g_bytes_get_size(out), >=, 18);
  return out;
}

static char *write_gzip_array(const char *dir, const char *name, GByteArray *a) {
  GBytes *gz = gzip_bytes(a->data, a->len);
  gsize len = 0;
  const uint8_t *p = g_bytes_get_data(gz, &len);
  g_assert_true(p[0] == 0x1f && p[1] == 0x8b);
  char *path = testutil_write_file(dir, name, p, len);
  g_bytes_unref(gz);
  g_byte_array_unref(a);
  return path;
}

/* Load that must fail; returns the error (transfer full). */
static GError *load_error(const char *images, const char *labels, int max_label) {
  GError *error = NULL;
  PrunusDataset *d = prunus_dataset_load_idx(images, labels, max_label, &error);
  g_assert_null(d);
  g_assert_nonnull(error);
  return error;
}

#define ASSERT_ERROR(err, code, ...)                          \
  do {                                                        \
    g_assert_error((err), PRUNUS_ERROR, (code));              \
    testutil_assert_error_contains((err), __VA_ARGS__, NULL); \
    g_clear_error(&(err));                                    \
  } while (0)

static void assert_sample_dataset(const PrunusDataset *d) {
  g_assert_nonnull(d);
  g_assert_cmpint(d->n, ==, N_SAMPLES);
  g_assert_cmpint(d->c, ==, 1);
  g_assert_cmpint(d->h, ==, IMG_H);
  g_assert_cmpint(d->w, ==, IMG_W);
  g_assert_cmpint(d->n_classes, ==, 3);
  for (size_t k = 0; k < N_SAMPLES * IMG_ROW; k++)
    g_assert_cmpuint(d->images[k], ==, sample_pixel(k));
  for (int i = 0; i < N_SAMPLES; i++) g_assert_cmpuint(d->labels[i], ==, sample_labels[i]);
}

// ----------------------------------------------------------------------------
// Loading well-formed files

static void test_load_raw(void) {
  char *dir = testutil_mkdtemp();
  char *ip = write_array(dir, "images-idx3-ubyte", idx_sample_images(0));
  char *lp = write_array(dir, "labels-idx1-ubyte", idx_labels(sample_labels, N_SAMPLES));
  GError *error = NULL;
  PrunusDataset *d = prunus_dataset_load_idx(ip, lp, 0, &error);
  g_assert_no_error(error);
  assert_sample_dataset(d);
  /* pixel k is (37 k + 11) mod 256, right after the 16-byte header */
  g_assert_cmpuint(d->images[0], ==, 11);
  g_assert_cmpuint(d->images[1], ==, 48);
  g_assert_cmpuint(d->images[7], ==, (37 * 7 + 11) % 256);
  prunus_dataset_free(d);
  g_free(ip);
  g_free(lp);
  testutil_rmtree(dir);
  g_free(dir);
}

/* gzip is recognised by its 1f 8b magic, not by the file name. */
static void test_load_gzip(void) {
  char *dir = testutil_mkdtemp();
  char *ip = write_gzip_array(dir, "images.idx", idx_sample_images(0));
  char *lp = write_gzip_array(dir, "labels.idx", idx_labels(sample_labels, N_SAMPLES));
  char *raw_named_gz = write_array(dir, "raw-labels.gz", idx_labels(sample_labels, N_SAMPLES));
  GError *error = NULL;

  PrunusDataset *d = prunus_dataset_load_idx(ip, lp, 0, &error);
  g_assert_no_error(error);
  assert_sample_dataset(d);
  prunus_dataset_free(d);

  d = prunus_dataset_load_idx(ip, raw_named_gz, 0, &error);
  g_assert_no_error(error);
  assert_sample_dataset(d);
  prunus_dataset_free(d);

  g_free(ip);
  g_free(lp);
  g_free(raw_named_gz);
  testutil_rmtree(dir);
  g_free(dir);
}

/* A .gz made of two concatenated members (as `cat a.gz b.gz` gives) is one stream. */
static void test_load_gzip_multi_member(void) {
  char *dir = testutil_mkdtemp();
  GByteArray *whole = idx_sample_images(0);
  size_t cut = 20;
  GBytes *g1 = gzip_bytes(whole->data, cut);
  GBytes *g2 = gzip_bytes(whole->data + cut, whole->len - cut);
  GByteArray *cat = g_byte_array_new();
  gsize n1, n2;
  const uint8_t *p1 = g_bytes_get_data(g1, &n1), *p2 = g_bytes_get_data(g2, &n2);
  g_byte_array_append(cat, p1, (guint)n1);
  g_byte_array_append(cat, p2, (guint)n2);
  char *ip = write_array(dir, "images.gz", cat);
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));

  GError *error = NULL;
  PrunusDataset *d = prunus_dataset_load_idx(ip, lp, 0, &error);
  g_assert_no_error(error);
  assert_sample_dataset(d);
  prunus_dataset_free(d);

  g_bytes_unref(g1);
  g_bytes_unref(g2);
  g_byte_array_unref(whole);
  g_free(ip);
  g_free(lp);
  testutil_rmtree(dir);
  g_free(dir);
}

/* 0x804 files are (n, c, h, w). */
static void test_load_idx4(void) {
  char *dir = testutil_mkdtemp();
  uint32_t dims[4] = {2, 3, 2, 4};
  uint8_t px[2 * 3 * 2 * 4];
  for (size_t k = 0; k < sizeof px; k++) px[k] = (uint8_t)(255 - 5 * k);
  const uint8_t labels[2] = {7, 4};
  char *ip = write_array(dir, "images4", idx_make(0x00000804u, dims, 4, px, sizeof px));
  char *lp = write_array(dir, "labels", idx_labels(labels, 2));
  GError *error = NULL;
  PrunusDataset *d = prunus_dataset_load_idx(ip, lp, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(d->n, ==, 2);
  g_assert_cmpint(d->c, ==, 3);
  g_assert_cmpint(d->h, ==, 2);
  g_assert_cmpint(d->w, ==, 4);
  g_assert_cmpint(d->n_classes, ==, 8);
  g_assert_cmpmem(d->images, sizeof px, px, sizeof px);
  g_assert_cmpuint(d->labels[0], ==, 7);
  g_assert_cmpuint(d->labels[1], ==, 4);
  prunus_dataset_free(d);
  g_free(ip);
  g_free(lp);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_load_n_classes(void) {
  char *dir = testutil_mkdtemp();
  const uint8_t zeros[N_SAMPLES] = {0};
  const uint8_t nine[N_SAMPLES] = {0, 9, 3, 1, 2};
  char *ip = write_array(dir, "images", idx_sample_images(0));
  char *lzero = write_array(dir, "zeros", idx_labels(zeros, N_SAMPLES));
  char *lnine = write_array(dir, "nine", idx_labels(nine, N_SAMPLES));
  GError *error = NULL;

  PrunusDataset *d = prunus_dataset_load_idx(ip, lzero, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(d->n_classes, ==, 2); /* at least 2 */
  prunus_dataset_free(d);

  d = prunus_dataset_load_idx(ip, lnine, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(d->n_classes, ==, 10);
  g_assert_cmpuint(d->labels[1], ==, 9);
  prunus_dataset_free(d);

  d = prunus_dataset_load_idx(ip, lzero, 10, &error); /* max_label given: n_classes = max_label */
  g_assert_no_error(error);
  g_assert_cmpint(d->n_classes, ==, 10);
  prunus_dataset_free(d);

  d = prunus_dataset_load_idx(ip, lnine, 10, &error); /* 9 < 10: accepted */
  g_assert_no_error(error);
  g_assert_cmpint(d->n_classes, ==, 10);
  prunus_dataset_free(d);

  g_free(ip);
  g_free(lzero);
  g_free(lnine);
  testutil_rmtree(dir);
  g_free(dir);
}

// ----------------------------------------------------------------------------
// Malformed inputs: each a PRUNUS_ERROR naming the path and the fact

static void test_error_missing(void) {
  char *dir = testutil_mkdtemp();
  char *ip = write_array(dir, "images", idx_sample_images(0));
  char *missing = g_build_filename(dir, "no-such-file.gz", NULL);
  GError *error = load_error(missing, ip, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_IO, missing, "No such file");
  error = load_error(ip, missing, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_IO, missing, "cannot open");
  /* a directory is not an IDX file */
  error = load_error(dir, missing, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_IO, dir, "not a regular file");
  /* a NULL GError ** is allowed */
  g_assert_null(prunus_dataset_load_idx(missing, missing, 0, NULL));
  g_free(ip);
  g_free(missing);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_error_magic(void) {
  char *dir = testutil_mkdtemp();
  char *ip = write_array(dir, "images", idx_sample_images(0));
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  uint32_t dims[3] = {N_SAMPLES, IMG_H, IMG_W};
  uint8_t px[N_SAMPLES * IMG_ROW] = {0};
  char *garbage = write_array(dir, "garbage", idx_make(0x12345678u, dims, 3, px, sizeof px));
  char *gz_garbage =
      write_gzip_array(dir, "garbage.gz", idx_make(0x12345678u, dims, 3, px, sizeof px));

  /* labels given as images, images as labels */
  GError *error = load_error(lp, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, lp, "not an IDX image file", "expected magic 0x00000803",
               "found 0x00000801");
  error = load_error(ip, ip, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, ip, "not an IDX label file", "expected magic 0x00000801",
               "found 0x00000803");
  error = load_error(garbage, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, garbage, "expected magic 0x00000803",
               "found 0x12345678");
  error = load_error(gz_garbage, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, gz_garbage, "expected magic 0x00000803",
               "found 0x12345678");

  g_free(ip);
  g_free(lp);
  g_free(garbage);
  g_free(gz_garbage);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_error_type(void) {
  char *dir = testutil_mkdtemp();
  uint32_t dims[3] = {N_SAMPLES, IMG_H, IMG_W};
  uint8_t px[N_SAMPLES * IMG_ROW * 4] = {0};
  uint32_t n = N_SAMPLES;
  char *ip = write_array(dir, "images", idx_sample_images(0));
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  char *floats = write_array(dir, "floats", idx_make(0x00000D03u, dims, 3, px, sizeof px));
  char *sbytes = write_array(dir, "sbytes", idx_make(0x00000901u, &n, 1, px, N_SAMPLES));

  GError *error = load_error(floats, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, floats, "element type 0x0d (float)",
               "expected 0x08 (unsigned byte)");
  error = load_error(ip, sbytes, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, sbytes, "element type 0x09", "expected 0x08");

  g_free(ip);
  g_free(lp);
  g_free(floats);
  g_free(sbytes);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Dims that claim fewer bytes than the file (or the decompressed stream) holds. */
static void test_error_length(void) {
  char *dir = testutil_mkdtemp();
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  char *ip = write_array(dir, "images-long", idx_sample_images(3));
  char *gz = write_gzip_array(dir, "images-long.gz", idx_sample_images(3));
  char *lp_long = write_array(dir, "labels-long",
                              idx_make(0x00000801u, (uint32_t[]){3}, 1, sample_labels, N_SAMPLES));

  GError *error = load_error(ip, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, ip, "dimensions 5x3x2 do not match the file length",
               "expected 46 bytes, found 49", "3 trailing");
  error = load_error(gz, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, gz,
               "dimensions 5x3x2 do not match the decompressed length",
               "expected 46 bytes, found at least 49");
  char *ip_ok = write_array(dir, "images", idx_sample_images(0));
  error = load_error(ip_ok, lp_long, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, lp_long, "dimensions 3 do not match", "2 trailing");

  g_free(ip);
  g_free(ip_ok);
  g_free(lp);
  g_free(gz);
  g_free(lp_long);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_error_truncated(void) {
  char *dir = testutil_mkdtemp();
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  char *short_data = write_array(dir, "images-short", idx_sample_images(-1));
  char *short_gz = write_gzip_array(dir, "images-short.gz", idx_sample_images(-7));
  GByteArray *h = idx_sample_images(0);
  char *short_header = testutil_write_file(dir, "images-header", h->data, 10);
  char *tiny = testutil_write_file(dir, "images-tiny", h->data, 3);
  char *empty = testutil_write_file(dir, "images-empty", "", 0);
  g_byte_array_unref(h);

  GError *error = load_error(short_data, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, short_data, "truncated data", "dimensions 5x3x2",
               "need 30 bytes", "found 29");
  error = load_error(short_gz, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, short_gz, "truncated data", "need 30 bytes", "found 23");
  error = load_error(short_header, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, short_header, "truncated IDX header", "10 bytes",
               "needs 16");
  error = load_error(tiny, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, tiny, "truncated IDX header", "3 bytes");
  error = load_error(empty, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, empty, "truncated IDX header", "0 bytes");

  g_free(lp);
  g_free(short_data);
  g_free(short_gz);
  g_free(short_header);
  g_free(tiny);
  g_free(empty);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_error_count(void) {
  char *dir = testutil_mkdtemp();
  char *ip = write_array(dir, "images", idx_sample_images(0));
  char *lp = write_array(dir, "labels-4", idx_labels(sample_labels, 4));
  GError *error = load_error(ip, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_MISMATCH, ip, lp, "4 labels", "5 images");
  g_free(ip);
  g_free(lp);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_error_label_range(void) {
  char *dir = testutil_mkdtemp();
  char *ip = write_array(dir, "images", idx_sample_images(0));
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  /* labels {0, 2, 1, 2, 0}: index 1 holds the first 2 */
  GError *error = load_error(ip, lp, 2);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, lp, "index 1", "value 2", "must be < 2");
  error = load_error(ip, lp, -1);
  ASSERT_ERROR(error, PRUNUS_ERROR_INVALID, "max_label -1");
  error = load_error(ip, lp, 257);
  ASSERT_ERROR(error, PRUNUS_ERROR_INVALID, "max_label 257");
  g_free(ip);
  g_free(lp);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_error_gzip_corrupt(void) {
  char *dir = testutil_mkdtemp();
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  GByteArray *raw = idx_sample_images(0);
  GBytes *gz = gzip_bytes(raw->data, raw->len);
  gsize len = 0;
  const uint8_t *p = g_bytes_get_data(gz, &len);
  uint8_t *copy = g_malloc(len);
  memcpy(copy, p, len);

  char *cut = testutil_write_file(dir, "cut.gz", copy, len / 2);
  copy[2] = 7; /* compression method: only 8 (deflate) exists */
  char *bad_method = testutil_write_file(dir, "method.gz", copy, len);
  copy[2] = p[2];
  copy[len - 8] ^= 0xff; /* the CRC-32 in the trailer */
  char *bad_crc = testutil_write_file(dir, "crc.gz", copy, len);
  char *magic_only = testutil_write_file(dir, "magic-only", copy, 2);
  /* a valid member followed by junk */
  GByteArray *junk = g_byte_array_new();
  g_byte_array_append(junk, p, (guint)len);
  g_byte_array_append(junk, (const guint8 *)"junk", 4);
  char *trailing_junk = write_array(dir, "junk.gz", junk);

  GError *error = load_error(cut, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, cut, "corrupt gzip data", "truncated");
  error = load_error(bad_method, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, bad_method, "corrupt gzip data");
  error = load_error(bad_crc, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, bad_crc, "corrupt gzip data");
  error = load_error(magic_only, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, magic_only, "corrupt gzip data");
  error = load_error(trailing_junk, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, trailing_junk, "corrupt gzip data in member 2");

  g_free(copy);
  g_bytes_unref(gz);
  g_byte_array_unref(raw);
  g_free(lp);
  g_free(cut);
  g_free(bad_method);
  g_free(bad_crc);
  g_free(magic_only);
  g_free(trailing_junk);
  testutil_rmtree(dir);
  g_free(dir);
}

/* Headers claiming absurd sizes fail on the header alone, before any allocation. */
static void test_error_huge(void) {
  char *dir = testutil_mkdtemp();
  char *lp = write_array(dir, "labels", idx_labels(sample_labels, N_SAMPLES));
  uint8_t px[4] = {1, 2, 3, 4};
  uint32_t two31[3] = {1u << 31, 1u << 31, 1};
  uint32_t all_ones[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
  uint32_t wide[4] = {1, 0xffffffffu, 0xffffffffu, 0xffffffffu};
  uint32_t big_ok[3] = {1u << 30, 1u << 15, 1u << 15}; /* fits the limits, not the file */
  uint32_t zero[3] = {5, 0, 2};
  char *p_two31 = write_array(dir, "two31", idx_make(0x803, two31, 3, px, 4));
  char *gz_two31 = write_gzip_array(dir, "two31.gz", idx_make(0x803, two31, 3, px, 4));
  char *p_ones = write_array(dir, "ones", idx_make(0x803, all_ones, 3, px, 4));
  char *p_wide = write_array(dir, "wide", idx_make(0x804, wide, 4, px, 4));
  char *p_big = write_array(dir, "big", idx_make(0x803, big_ok, 3, px, 4));
  char *gz_big = write_gzip_array(dir, "big.gz", idx_make(0x803, big_ok, 3, px, 4));
  char *p_zero = write_array(dir, "zero", idx_make(0x803, zero, 3, px, 4));
  uint32_t huge_n = 0x80000000u;
  char *l_huge = write_array(dir, "labels-huge", idx_make(0x801, &huge_n, 1, px, 4));
  /* a tiny .gz that inflates to 4 MiB while its header claims 30 bytes */
  size_t bomb_len = (size_t)4 << 20;
  GByteArray *bomb = idx_sample_images(0);
  g_byte_array_set_size(bomb, (guint)bomb_len);
  memset(bomb->data + 46, 0, bomb_len - 46);
  char *gz_bomb = write_gzip_array(dir, "bomb.gz", bomb);

  GError *error = load_error(p_two31, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, p_two31, "2147483648x2147483648x1", "too large",
               "2147483648 samples");
  error = load_error(gz_two31, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, gz_two31, "2147483648x2147483648x1", "too large");
  error = load_error(p_ones, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, p_ones, "too large");
  error = load_error(p_wide, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, p_wide, "too large", "bytes per sample");
  error = load_error(p_big, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, p_big, "truncated data", "1073741824x32768x32768",
               "need 1152921504606846976 bytes", "found 4");
  error = load_error(gz_big, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, gz_big, "truncated data", "found 4");
  error = load_error(p_zero, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, p_zero, "5x0x2", "dimension 1 is zero");
  char *ip = write_array(dir, "images", idx_sample_images(0));
  error = load_error(ip, l_huge, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, l_huge, "too large");
  error = load_error(gz_bomb, lp, 0);
  ASSERT_ERROR(error, PRUNUS_ERROR_FORMAT, gz_bomb, "do not match the decompressed length",
               "expected 46 bytes, found at least");

  g_free(ip);
  g_free(lp);
  g_free(p_two31);
  g_free(gz_two31);
  g_free(p_ones);
  g_free(p_wide);
  g_free(p_big);
  g_free(gz_big);
  g_free(p_zero);
  g_free(l_huge);
  g_free(gz_bomb);
  testutil_rmtree(dir);
  g_free(dir);
}

// ----------------------------------------------------------------------------
// Datasets in memory, normalisation, batches

static void test_new_from_data(void) {
  uint8_t px[2 * 3] = {1, 2, 3, 4, 5, 6};
  uint8_t labels[2] = {1, 0};
  PrunusDataset *d = prunus_dataset_new_from_data(2, 3, 1, 1, 4, px, labels);
  px[0] = 99; /* the dataset holds copies */
  labels[0] = 3;
  g_assert_cmpint(d->n, ==, 2);
  g_assert_cmpint(d->c, ==, 3);
  g_assert_cmpint(d->h, ==, 1);
  g_assert_cmpint(d->w, ==, 1);
  g_assert_cmpint(d->n_classes, ==, 4);
  g_assert_cmpuint(d->images[0], ==, 1);
  g_assert_cmpuint(d->images[5], ==, 6);
  g_assert_cmpuint(d->labels[0], ==, 1);
  g_assert_cmpuint(d->labels[1], ==, 0);
  prunus_dataset_free(d);
  prunus_dataset_free(NULL);
}

static void test_slice(void) {
  uint8_t px[N_SAMPLES * IMG_ROW];
  for (size_t k = 0; k < sizeof px; k++) px[k] = sample_pixel(k);
  PrunusDataset *d = prunus_dataset_new_from_data(N_SAMPLES, 1, IMG_H, IMG_W, 3, px, sample_labels);
  PrunusDataset *s = prunus_dataset_slice(d, 1, 3);
  g_assert_cmpint(s->n, ==, 3);
  g_assert_cmpint(s->c, ==, 1);
  g_assert_cmpint(s->h, ==, IMG_H);
  g_assert_cmpint(s->w, ==, IMG_W);
  g_assert_cmpint(s->n_classes, ==, 3); /* kept from the parent, though the slice's max is 2 */
  g_assert_cmpmem(s->images, 3 * IMG_ROW, px + IMG_ROW, 3 * IMG_ROW);
  g_assert_cmpmem(s->labels, 3, sample_labels + 1, 3);
  g_assert_true(s->images != d->images + IMG_ROW);
  prunus_dataset_free(s);

  PrunusDataset *tail = prunus_dataset_slice(d, N_SAMPLES - 1, 1);
  g_assert_cmpint(tail->n, ==, 1);
  g_assert_cmpuint(tail->labels[0], ==, 0);
  g_assert_cmpuint(tail->images[IMG_ROW - 1], ==, sample_pixel(N_SAMPLES * IMG_ROW - 1));
  prunus_dataset_free(tail);

  PrunusDataset *empty = prunus_dataset_slice(d, N_SAMPLES, 0);
  g_assert_cmpint(empty->n, ==, 0);
  prunus_dataset_free(empty);
  prunus_dataset_free(d);
}

static void test_norm_fit(void) {
  /* units 0, 1, 0.2, 0.8: mean 0.5, variance (0.25 + 0.25 + 0.09 + 0.09) / 4 = 0.17 */
  const uint8_t px[4] = {0, 255, 51, 204};
  const uint8_t labels[2] = {0, 1};
  PrunusDataset *d = prunus_dataset_new_from_data(2, 1, 1, 2, 2, px, labels);
  PrunusNorm s = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  g_assert_cmpint(s.kind, ==, PRUNUS_NORM_STANDARD);
  g_assert_cmpfloat_with_epsilon(s.mean, 0.5, 1e-7);
  g_assert_cmpfloat_with_epsilon(s.std, sqrt(0.17), 1e-7);
  PrunusNorm u = prunus_norm_fit(d, PRUNUS_NORM_UNIT);
  g_assert_cmpint(u.kind, ==, PRUNUS_NORM_UNIT);
  g_assert_cmpfloat(u.mean, ==, 0.0f);
  g_assert_cmpfloat(u.std, ==, 1.0f);
  prunus_dataset_free(d);

  /* 10 pixels: 3 x 0, 5 x 102 (0.4), 2 x 255 (1): mean 0.4, var (3*0.16 + 0 + 2*0.36)/10 = 0.12 */
  const uint8_t px2[10] = {0, 102, 255, 102, 0, 102, 102, 255, 0, 102};
  const uint8_t labels2[5] = {0, 1, 0, 1, 0};
  d = prunus_dataset_new_from_data(5, 2, 1, 1, 2, px2, labels2);
  s = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  g_assert_cmpfloat_with_epsilon(s.mean, 0.4, 1e-7);
  g_assert_cmpfloat_with_epsilon(s.std, sqrt(0.12), 1e-7);
  prunus_dataset_free(d);

  /* constant images have std 0: the fit keeps std 1 so batches stay finite */
  const uint8_t flat[3] = {51, 51, 51};
  d = prunus_dataset_new_from_data(3, 1, 1, 1, 2, flat, labels2);
  s = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  g_assert_cmpfloat_with_epsilon(s.mean, 0.2, 1e-7);
  g_assert_cmpfloat(s.std, ==, 1.0f);
  prunus_dataset_free(d);
}

static void test_fill_batch(void) {
  const uint8_t px[3 * 4] = {0, 255, 51, 204, 1, 2, 3, 4, 128, 64, 32, 16};
  const uint8_t labels[3] = {4, 1, 7};
  PrunusDataset *d = prunus_dataset_new_from_data(3, 1, 2, 2, 8, px, labels);
  const int idx[4] = {2, 0, 2, 1};
  float x[4 * 4], want[4 * 4];
  uint8_t y[4] = {0};

  PrunusNorm unit = {.kind = PRUNUS_NORM_UNIT, .mean = 0.0f, .std = 1.0f};
  prunus_dataset_fill_batch(d, &unit, idx, 4, x, y);
  for (int b = 0; b < 4; b++)
    for (int j = 0; j < 4; j++) want[b * 4 + j] = (float)(px[idx[b] * 4 + j] / 255.0);
  g_assert_cmpfloat(testutil_max_rel_diff(x, want, 16, "fill_batch unit"), <=, 1e-7);
  g_assert_cmpfloat(x[4 + 1], ==, 1.0f); /* sample 0, pixel 255 */
  g_assert_cmpfloat(x[4 + 0], ==, 0.0f);
  g_assert_cmpfloat_with_epsilon(x[4 + 2], 0.2, 1e-7);
  g_assert_cmpuint(y[0], ==, 7);
  g_assert_cmpuint(y[1], ==, 4);
  g_assert_cmpuint(y[2], ==, 7);
  g_assert_cmpuint(y[3], ==, 1);

  PrunusNorm standard = {.kind = PRUNUS_NORM_STANDARD, .mean = 0.5f, .std = 0.25f};
  memset(y, 0, sizeof y);
  prunus_dataset_fill_batch(d, &standard, idx, 4, x, y);
  for (int b = 0; b < 4; b++)
    for (int j = 0; j < 4; j++)
      want[b * 4 + j] = (float)((px[idx[b] * 4 + j] / 255.0 - 0.5) / 0.25);
  g_assert_cmpfloat(testutil_max_rel_diff(x, want, 16, "fill_batch standard"), <=, 1e-6);
  g_assert_cmpfloat_with_epsilon(x[4 + 0], -2.0, 1e-6); /* (0 - 0.5) / 0.25 */
  g_assert_cmpfloat_with_epsilon(x[4 + 1], 2.0, 1e-6);  /* (1 - 0.5) / 0.25 */
  g_assert_cmpfloat_with_epsilon(x[4 + 2], -1.2, 1e-6); /* (0.2 - 0.5) / 0.25 */
  g_assert_cmpuint(y[3], ==, 1);

  /* a fitted norm standardises the whole set to mean 0, std 1 */
  PrunusNorm fit = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  const int all[3] = {0, 1, 2};
  float xs[12];
  uint8_t ys[3];
  prunus_dataset_fill_batch(d, &fit, all, 3, xs, ys);
  double sum = 0.0, sq = 0.0;
  for (int k = 0; k < 12; k++) {
    sum += xs[k];
    sq += (double)xs[k] * xs[k];
  }
  g_assert_cmpfloat_with_epsilon(sum / 12, 0.0, 1e-6);
  g_assert_cmpfloat_with_epsilon(sq / 12, 1.0, 1e-5);
  g_assert_cmpmem(ys, 3, labels, 3);

  prunus_dataset_fill_batch(d, &unit, NULL, 0, NULL, NULL); /* an empty batch is a no-op */
  prunus_dataset_free(d);
}

/* Unit pixels are byte / 255 rounded once at every kernel level, through the fill
 * (both store kinds) and straight through the kernel at every length and alignment of
 * the destination up to two vectors, where heads and tails are cut. */
static void test_fill_batch_every_level(void) {
  enum { H = 37, W = 7, N = 2 }; /* 259 pixels a row: every byte value, a 3-pixel tail */
  uint8_t px[N * H * W];
  for (int k = 0; k < N * H * W; k++) px[k] = (uint8_t)((k * 7) % 256);
  const uint8_t labels[N] = {3, 5};
  PrunusDataset *d = prunus_dataset_new_from_data(N, 1, H, W, 10, px, labels);
  const int idx[3] = {1, 0, 1};
  const PrunusNorm unit = {.kind = PRUNUS_NORM_UNIT, .mean = 0.0f, .std = 1.0f};
  float *x = g_new(float, 3 * H * W + 64);
  uint8_t y[3];
  const uint8_t bytes[40] = {0,   1,   2,   3,   127, 128, 129, 254, 255, 17,  34,  51, 68, 85,
                             102, 119, 136, 153, 170, 187, 204, 221, 238, 9,   10,  11, 12, 13,
                             14,  15,  16,  200, 201, 202, 203, 250, 251, 252, 253, 5};
  for (PrunusCsrLevel level = PRUNUS_CSR_SCALAR; level <= prunus_csr_level(); level++) {
    PrunusCsrLevel old = prunus_csr_cap_level(level);
    for (int cached = 0; cached < 2; cached++) {
      memset(x, 0xff, sizeof(float) * 3 * H * W);
      (cached ? prunus_dataset_fill_batch_cached : prunus_dataset_fill_batch)(d, &unit, idx, 3, x,
                                                                              y);
      for (int b = 0; b < 3; b++)
        for (int j = 0; j < H * W; j++) {
          float want = (float)(px[idx[b] * H * W + j] / 255.0);
          if (x[b * H * W + j] != want)
            g_error("level %s %s: sample %d pixel %d: %.9g, want %.9g",
                    prunus_csr_level_name(level), cached ? "cached" : "streamed", b, j,
                    x[b * H * W + j], want);
        }
      g_assert_cmpuint(y[0], ==, 5);
      g_assert_cmpuint(y[1], ==, 3);
    }
    for (int streaming = 0; streaming < 2; streaming++)
      for (int offset = 0; offset < 16; offset++)
        for (int n = 0; n <= 40; n++) {
          float *dst = x + offset;
          for (int j = 0; j < n + 1; j++) dst[j] = -1.0f;
          prunus_bytes_over(bytes, 255.0f, dst, (size_t)n, streaming);
          _mm_sfence();
          for (int j = 0; j < n; j++)
            if (dst[j] != (float)(bytes[j] / 255.0))
              g_error("level %s, n %d, offset %d: element %d is %.9g", prunus_csr_level_name(level),
                      n, offset, j, dst[j]);
          g_assert_cmpfloat(dst[n], ==, -1.0f); /* nothing past n */
        }
    prunus_csr_cap_level(old);
  }
  g_free(x);
  prunus_dataset_free(d);
}

// ----------------------------------------------------------------------------
// The real Fashion-MNIST test split, when installed

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static void test_real_fashion_mnist(void) {
  const char *ip = FASHION_DIR "/t10k-images-idx3-ubyte.gz";
  const char *lp = FASHION_DIR "/t10k-labels-idx1-ubyte.gz";
  if (!g_file_test(ip, G_FILE_TEST_EXISTS) || !g_file_test(lp, G_FILE_TEST_EXISTS)) {
    g_test_skip("Fashion-MNIST is not installed under " FASHION_DIR);
    return;
  }
  GError *error = NULL;
  PrunusDataset *d = prunus_dataset_load_idx(ip, lp, 0, &error);
  g_assert_no_error(error);
  g_assert_cmpint(d->n, ==, 10000);
  g_assert_cmpint(d->c, ==, 1);
  g_assert_cmpint(d->h, ==, 28);
  g_assert_cmpint(d->w, ==, 28);
  g_assert_cmpint(d->n_classes, ==, 10);
  int per_class[10] = {0};
  for (int i = 0; i < d->n; i++) per_class[d->labels[i]]++;
  for (int k = 0; k < 10; k++)
    g_assert_cmpint(per_class[k], ==, 1000); /* the test split is balanced */
  g_assert_cmpuint(d->labels[0], ==, 9);     /* the first test image is an ankle boot */
  PrunusNorm s = prunus_norm_fit(d, PRUNUS_NORM_STANDARD);
  g_test_message("fashion-mnist t10k: mean %.4f std %.4f", s.mean, s.std);
  g_assert_cmpfloat(s.mean, >, 0.2f);
  g_assert_cmpfloat(s.mean, <, 0.4f);
  g_assert_cmpfloat(s.std, >, 0.25f);
  g_assert_cmpfloat(s.std, <, 0.45f);
  prunus_dataset_free(d);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/idx/load/raw", test_load_raw);
  g_test_add_func("/idx/load/gzip", test_load_gzip);
  g_test_add_func("/idx/load/gzip-multi-member", test_load_gzip_multi_member);
  g_test_add_func("/idx/load/idx4", test_load_idx4);
  g_test_add_func("/idx/load/n-classes", test_load_n_classes);
  g_test_add_func("/idx/error/missing", test_error_missing);
  g_test_add_func("/idx/error/magic", test_error_magic);
  g_test_add_func("/idx/error/type", test_error_type);
  g_test_add_func("/idx/error/length", test_error_length);
  g_test_add_func("/idx/error/truncated", test_error_truncated);
  g_test_add_func("/idx/error/count", test_error_count);
  g_test_add_func("/idx/error/label-range", test_error_label_range);
  g_test_add_func("/idx/error/gzip-corrupt", test_error_gzip_corrupt);
  g_test_add_func("/idx/error/huge", test_error_huge);
  g_test_add_func("/idx/dataset/new-from-data", test_new_from_data);
  g_test_add_func("/idx/dataset/slice", test_slice);
  g_test_add_func("/idx/norm/fit", test_norm_fit);
  g_test_add_func("/idx/norm/fill-batch", test_fill_batch);
  g_test_add_func("/idx/norm/fill-batch-every-level", test_fill_batch_every_level);
  g_test_add_func("/idx/real/fashion-mnist-t10k", test_real_fashion_mnist);
  return g_test_run();
}
