/* test_safetensors.c: unit tests of core/safetensors.c: bit-exact round trips, the
 * byte layout the spec requires, every corruption the reader must reject, and the
 * atomicity of writes (no temp files left, existing files untouched on failure). */
#include "safetensors.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int compare_names(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names in folder dir, sorted, joined with ','. (transfer full) */
static char *list_dir(const char *dir) {
  GDir *d = g_dir_open(dir, 0, NULL);
  g_assert_nonnull(d);
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(d))) g_ptr_array_add(names, g_strdup(name));
  g_dir_close(d);
  g_ptr_array_sort(names, compare_names);
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < names->len; i++)
    g_string_append_printf(s, "%s%s", i ? "," : "", (const char *)names->pdata[i]);
  g_ptr_array_free(names, TRUE);
  return g_string_free(s, FALSE);
}

static char *read_all(const char *path, size_t *len) {
  char *data = NULL;
  GError *error = NULL;
  g_file_get_contents(path, &data, len, &error);
  g_assert_no_error(error);
  return data;
}

/* A raw safetensors file: 8-byte LE header_len, header text, data bytes. */
static char *write_raw(const char *dir, const char *name, guint64 header_len, const char *header,
                       const void *data, size_t data_len) {
  size_t hlen = strlen(header);
  GByteArray *b = g_byte_array_new();
  guint64 le = GUINT64_TO_LE(header_len);
  g_byte_array_append(b, (const guint8 *)&le, 8);
  g_byte_array_append(b, (const guint8 *)header, (guint)hlen);
  if (data_len) g_byte_array_append(b, data, (guint)data_len);
  char *path = testutil_write_file(dir, name, b->data, b->len);
  g_byte_array_free(b, TRUE);
  return path;
}

/* Read path and expect a FORMAT error naming the path and every needle. */
static void read_fails(const char *path, const char *needle1, const char *needle2) {
  GError *error = NULL;
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_null(f);
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
  testutil_assert_error_contains(error, path, needle1, needle2, NULL);
  g_error_free(error);
}

/* Write a raw file with the header (its exact length) and data; expect the error. */
static void raw_fails(const char *dir, const char *header, const void *data, size_t data_len,
                      const char *needle1, const char *needle2) {
  char *path = write_raw(dir, "bad.safetensors", strlen(header), header, data, data_len);
  read_fails(path, needle1, needle2);
  g_unlink(path);
  g_free(path);
}

/* ------------------------------------------------------------------------- */

static void test_round_trip(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "t.safetensors", NULL);

  float w[2 * 3];
  for (int i = 0; i < 6; i++) w[i] = (float)i * 0.37f - 1.1f;
  /* Bit patterns that must survive: -0, denormal, infinities, a NaN payload. */
  uint32_t special_bits[5] = {0x80000000u, 0x00000001u, 0x7f800000u, 0xff800000u, 0x7fc12345u};
  float special[5];
  memcpy(special, special_bits, sizeof special);
  float scalar = 3.5f;
  float conv[2 * 1 * 3 * 3];
  for (int i = 0; i < 18; i++) conv[i] = sinf((float)i);

  PrunusTensor in[5] = {
      {.name = "1.weight", .ndim = 2, .shape = {2, 3}, .data = w},
      {.name = "special", .ndim = 1, .shape = {5}, .data = special},
      {.name = "scalar", .ndim = 0, .data = &scalar},
      {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = NULL},
      {.name = "0.weight \"q\" \xc3\xa9", .ndim = 4, .shape = {2, 1, 3, 3}, .data = conv},
  };
  GHashTable *meta = g_hash_table_new(g_str_hash, g_str_equal);
  g_hash_table_insert(meta, "format", "prunus");
  g_hash_table_insert(meta, "architecture", "1x2x2|flatten|dense:5");
  g_hash_table_insert(meta, "note", "line\nbreak \"quoted\" \xe2\x82\xac");

  GError *error = NULL;
  g_assert_true(prunus_safetensors_write(path, in, 5, meta, &error));
  g_assert_no_error(error);

  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_nonnull(f);
  g_assert_cmpint(f->n_tensors, ==, 5);
  for (int i = 0; i < 5; i++) {
    const PrunusTensor *t = &f->tensors[i];
    g_assert_cmpstr(t->name, ==, in[i].name); /* file order kept */
    g_assert_cmpint(t->ndim, ==, in[i].ndim);
    for (int d = 0; d < t->ndim; d++) g_assert_cmpint(t->shape[d], ==, in[i].shape[d]);
    g_assert_cmpuint(prunus_tensor_numel(t), ==, prunus_tensor_numel(&in[i]));
    g_assert_nonnull(t->data);
    g_assert_cmpuint((uintptr_t)t->data % sizeof(float), ==, 0);
    if (prunus_tensor_numel(t))
      g_assert_cmpmem(t->data, prunus_tensor_numel(t) * 4, in[i].data,
                      prunus_tensor_numel(&in[i]) * 4);
    g_assert_true(prunus_tensor_file_find(f, in[i].name) == t);
  }
  g_assert_cmpuint(prunus_tensor_numel(&f->tensors[2]), ==, 1);
  g_assert_cmpuint(prunus_tensor_numel(&f->tensors[3]), ==, 0);
  g_assert_null(prunus_tensor_file_find(f, "missing"));
  g_assert_cmpuint(g_hash_table_size(f->metadata), ==, 3);
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "format"), ==, "prunus");
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "architecture"), ==, "1x2x2|flatten|dense:5");
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "note"), ==,
                  "line\nbreak \"quoted\" \xe2\x82\xac");
  prunus_tensor_file_free(f);

  /* Overwriting an existing file replaces it; no metadata gives an empty table. */
  g_assert_true(prunus_safetensors_write(path, in, 1, NULL, &error));
  g_assert_no_error(error);
  f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(f->n_tensors, ==, 1);
  g_assert_cmpuint(g_hash_table_size(f->metadata), ==, 0);
  prunus_tensor_file_free(f);

  /* No tensors at all: header "{}" padded, empty data section. */
  g_assert_true(prunus_safetensors_write(path, NULL, 0, NULL, &error));
  g_assert_no_error(error);
  f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(f->n_tensors, ==, 0);
  prunus_tensor_file_free(f);

  char *names = list_dir(dir);
  g_assert_cmpstr(names, ==, "t.safetensors");
  g_free(names);
  g_hash_table_destroy(meta);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_byte_layout(void) {
  /* Check the file against the spec by hand, without our reader. */
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "l.safetensors", NULL);
  float a[2] = {1.0f, -2.0f};
  float b[3] = {0.5f, 0.25f, 8.0f};
  PrunusTensor in[2] = {
      {.name = "a", .ndim = 1, .shape = {2}, .data = a},
      {.name = "b", .ndim = 2, .shape = {1, 3}, .data = b},
  };
  GHashTable *meta = g_hash_table_new(g_str_hash, g_str_equal);
  g_hash_table_insert(meta, "k", "v");
  g_hash_table_insert(meta, "a", "1");
  GError *error = NULL;
  g_assert_true(prunus_safetensors_write(path, in, 2, meta, &error));
  g_assert_no_error(error);

  size_t len;
  char *bytes = read_all(path, &len);
  g_assert_cmpuint(len, >=, 8);
  const guint8 *u = (const guint8 *)bytes;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | u[i]; /* little-endian u64 */
  g_assert_cmpuint((8 + n) % 8, ==, 0);             /* data 8-byte aligned */
  g_assert_cmpuint(len, ==, 8 + n + 20);

  const char *expected =
      "{\"__metadata__\":{\"a\":\"1\",\"k\":\"v\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,20]}}";
  size_t elen = strlen(expected);
  g_assert_cmpuint(n, >=, elen);
  g_assert_cmpuint(n, <, elen + 8);
  g_assert_cmpmem(bytes + 8, elen, expected, elen);
  for (size_t i = 8 + elen; i < 8 + n; i++) g_assert_cmpint(bytes[i], ==, ' ');

  /* Raw little-endian float32: 1.0 = 00 00 80 3f. */
  const guint8 one_le[4] = {0x00, 0x00, 0x80, 0x3f};
  g_assert_cmpmem(bytes + 8 + n, 4, one_le, 4);
  g_assert_cmpmem(bytes + 8 + n, 8, a, 8);
  g_assert_cmpmem(bytes + 8 + n + 8, 12, b, 12);

  g_free(bytes);
  g_hash_table_destroy(meta);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_foreign_file(void) {
  /* A file as another writer may produce it: unpadded header, metadata last,
   * tensors listed out of data order, zero-size tensor, whitespace in the JSON. */
  char *dir = testutil_mkdtemp();
  float data[3] = {1.0f, 2.0f, 3.0f};
  const char *header =
      "{ \"y\": {\"data_offsets\": [4, 12], \"dtype\": \"F32\", \"shape\": [2]},\n"
      "  \"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},\n"
      "  \"z\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [12, 12]},\n"
      "  \"__metadata__\": {\"m\": \"n\"} }";
  char *path = write_raw(dir, "f.safetensors", strlen(header), header, data, sizeof data);
  GError *error = NULL;
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(f->n_tensors, ==, 3);
  g_assert_cmpstr(f->tensors[0].name, ==, "y");
  g_assert_cmpfloat(f->tensors[0].data[0], ==, 2.0f);
  g_assert_cmpfloat(f->tensors[0].data[1], ==, 3.0f);
  g_assert_cmpfloat(prunus_tensor_file_find(f, "x")->data[0], ==, 1.0f);
  g_assert_cmpuint(prunus_tensor_numel(prunus_tensor_file_find(f, "z")), ==, 0);
  g_assert_cmpstr(g_hash_table_lookup(f->metadata, "m"), ==, "n");
  prunus_tensor_file_free(f);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_truncated(void) {
  char *dir = testutil_mkdtemp();
  char *good = g_build_filename(dir, "good.safetensors", NULL);
  float w[6] = {1, 2, 3, 4, 5, 6};
  PrunusTensor t[2] = {
      {.name = "w", .ndim = 2, .shape = {2, 2}, .data = w},
      {.name = "b", .ndim = 1, .shape = {2}, .data = w + 4},
  };
  GError *error = NULL;
  g_assert_true(prunus_safetensors_write(good, t, 2, NULL, &error));
  g_assert_no_error(error);
  size_t len;
  char *bytes = read_all(good, &len);
  uint64_t n;
  memcpy(&n, bytes, 8);
  n = GUINT64_FROM_LE(n);

  const struct {
    size_t cut;
    const char *needle;
  } cuts[] = {
      {0, "too short"},
      {4, "too short"},
      {7, "too short"},
      {8, "runs past the end of the file"},
      {8 + n / 2, "runs past the end of the file"},
      {8 + n - 1, "runs past the end of the file"},
      {8 + n, "outside the data section"},
      {8 + n + 1, "outside the data section"},
      {8 + n + 16, "tensor \"b\""},
      {len - 1, "outside the data section (23 bytes)"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cuts); i++) {
    char *path = testutil_write_file(dir, "cut.safetensors", bytes, cuts[i].cut);
    read_fails(path, cuts[i].needle, NULL);
    g_free(path);
  }
  /* One extra byte is trailing garbage. */
  GByteArray *longer = g_byte_array_new();
  g_byte_array_append(longer, (const guint8 *)bytes, (guint)len);
  g_byte_array_append(longer, (const guint8 *)"\0", 1);
  char *path = testutil_write_file(dir, "long.safetensors", longer->data, longer->len);
  read_fails(path, "1 trailing bytes after the last tensor", NULL);
  g_free(path);
  g_byte_array_free(longer, TRUE);

  g_free(bytes);
  g_free(good);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_header_length(void) {
  char *dir = testutil_mkdtemp();
  const char *h = "{}";
  char *path = write_raw(dir, "h1.safetensors", (guint64)1 << 40, h, NULL, 0);
  read_fails(path, "header length 1099511627776 exceeds the limit", NULL);
  g_free(path);
  path = write_raw(dir, "h2.safetensors", G_MAXUINT64, h, NULL, 0);
  read_fails(path, "exceeds the limit", NULL);
  g_free(path);
  path = write_raw(dir, "h3.safetensors", 1000, h, NULL, 0);
  read_fails(path, "header length 1000 runs past the end of the file (10 bytes)", NULL);
  g_free(path);
  path = write_raw(dir, "h4.safetensors", 1, "{", NULL, 0);
  read_fails(path, "header length 1 is too small", NULL);
  g_free(path);
  path = write_raw(dir, "h5.safetensors", 0, "", NULL, 0);
  read_fails(path, "header length 0 is too small", NULL);
  g_free(path);
  /* The smallest valid file: "{}" and nothing else. */
  path = write_raw(dir, "h6.safetensors", 2, h, NULL, 0);
  GError *error = NULL;
  PrunusTensorFile *f = prunus_safetensors_read(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(f->n_tensors, ==, 0);
  prunus_tensor_file_free(f);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_bad_header(void) {
  char *dir = testutil_mkdtemp();
  float d[4] = {0};

  raw_fails(dir, "{\"a\":", d, 0, "not valid JSON", "at byte 5");
  raw_fails(dir, "{\"a\":{}} x", d, 0, "not valid JSON", NULL);
  raw_fails(dir, "[]", d, 0, "header is not a JSON object", NULL);
  raw_fails(dir, "{\"a\":1}", d, 0, "tensor \"a\": entry is not an object", NULL);
  /* dtype */
  raw_fails(dir, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d, 4,
            "tensor \"a\": dtype \"F16\" is not supported", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", d, 8,
            "dtype \"F64\"", NULL);
  raw_fails(dir, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", d, 4, "tensor \"a\"",
            "missing or non-string dtype");
  /* shape */
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", d, 4, "tensor \"a\"",
            "non-array shape");
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", d, 4,
            "shape entry 0 is not a non-negative integer", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,4]}}", d, 4,
            "shape entry 1 is not a non-negative integer", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", d, 4,
            "shape entry 0", NULL);
  raw_fails(dir,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
            "\"data_offsets\":[0,4]}}",
            d, 4, "tensor \"a\": shape [4294967296, 4294967296, 4294967296] overflows", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
            d, 4, "9 dimensions", NULL);
  /* offsets */
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", d, 4,
            "tensor \"a\": data_offsets [0, 8] lie outside the data section (4 bytes)", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e301]}}", d, 4,
            "tensor \"a\": data_offsets must be", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", d, 4,
            "[4, 0] end before they begin", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", d, 4,
            "data_offsets must be [begin, end]", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", d, 4,
            "data_offsets must be", NULL);
  /* byte count against shape */
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", d, 12,
            "tensor \"a\": data_offsets [0, 12] hold 12 bytes but F32 shape [2] needs 8", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[0,4]}}", d, 4,
            "needs 12", NULL);
  /* overlap, gap, trailing */
  raw_fails(dir,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            d, 12, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" [0, 8]", NULL);
  raw_fails(dir,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
            d, 8, "overlap", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8,
            "bytes [0, 4) before tensor \"a\" belong to no tensor", NULL);
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 12,
            "8 trailing bytes after the last tensor", NULL);
  raw_fails(dir, "{}", d, 4, "4 trailing bytes", NULL);
  /* other fields */
  raw_fails(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", d,
            4, "tensor \"a\": unknown field \"extra\"", NULL);
  raw_fails(dir, "{\"__metadata__\":{\"k\":1}}", d, 0, "__metadata__ \"k\" is not a string", NULL);
  raw_fails(dir, "{\"__metadata__\":[]}", d, 0, "__metadata__ is not an object", NULL);
  raw_fails(dir,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            d, 8, "duplicate key \"a\"", NULL);

  char *names = list_dir(dir);
  g_assert_cmpstr(names, ==, "");
  g_free(names);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_unreadable(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "none.safetensors", NULL);
  GError *error = NULL;
  g_assert_null(prunus_safetensors_read(path, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, path, "cannot open", NULL);
  g_clear_error(&error);
  /* A folder is not a file. */
  g_assert_null(prunus_safetensors_read(dir, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, dir, "is a folder, not a file", NULL);
  g_clear_error(&error);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_write_invalid(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "w.safetensors", NULL);
  float x[2] = {1, 2};
  GError *error = NULL;

  PrunusTensor dup[2] = {{.name = "a", .ndim = 1, .shape = {1}, .data = x},
                         {.name = "a", .ndim = 1, .shape = {1}, .data = x + 1}};
  g_assert_false(prunus_safetensors_write(path, dup, 2, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID);
  testutil_assert_error_contains(error, path, "tensor \"a\" is given twice", NULL);
  g_clear_error(&error);

  PrunusTensor reserved = {.name = "__metadata__", .ndim = 1, .shape = {1}, .data = x};
  g_assert_false(prunus_safetensors_write(path, &reserved, 1, NULL, &error));
  testutil_assert_error_contains(error, path, "invalid name \"__metadata__\"", NULL);
  g_clear_error(&error);

  PrunusTensor neg = {.name = "n", .ndim = 2, .shape = {2, -1}, .data = x};
  g_assert_false(prunus_safetensors_write(path, &neg, 1, NULL, &error));
  testutil_assert_error_contains(error, path, "tensor \"n\": invalid shape [2, -1]", NULL);
  g_clear_error(&error);

  PrunusTensor nodata = {.name = "d", .ndim = 1, .shape = {2}, .data = NULL};
  g_assert_false(prunus_safetensors_write(path, &nodata, 1, NULL, &error));
  testutil_assert_error_contains(error, path, "tensor \"d\" has no data", NULL);
  g_clear_error(&error);

  char *names = list_dir(dir);
  g_assert_cmpstr(names, ==, "");
  g_free(names);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_atomic_missing_dir(void) {
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "missing", "x.safetensors", NULL);
  float x = 1.0f;
  PrunusTensor t = {.name = "x", .ndim = 1, .shape = {1}, .data = &x};
  GError *error = NULL;
  g_assert_false(prunus_safetensors_write(path, &t, 1, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, path, "cannot create temp file", NULL);
  g_clear_error(&error);
  char *names = list_dir(dir);
  g_assert_cmpstr(names, ==, "");
  g_free(names);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_atomic_rename_fails(void) {
  /* The target is a folder (with a file in it), so the final rename fails; this
   * fails as root too. The folder stays as it was and no temp file is left. */
  char *dir = testutil_mkdtemp();
  char *target = g_build_filename(dir, "target", NULL);
  g_assert_cmpint(g_mkdir(target, 0755), ==, 0);
  char *inner = testutil_write_file(target, "keep", "k", 1);
  float x[3] = {1, 2, 3};
  PrunusTensor t = {.name = "x", .ndim = 1, .shape = {3}, .data = x};
  GError *error = NULL;
  g_assert_false(prunus_safetensors_write(target, &t, 1, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, target, "cannot rename temp file", NULL);
  g_clear_error(&error);
  g_assert_true(g_file_test(target, G_FILE_TEST_IS_DIR));
  char *names = list_dir(dir);
  g_assert_cmpstr(names, ==, "target");
  g_free(names);
  names = list_dir(target);
  g_assert_cmpstr(names, ==, "keep");
  g_free(names);
  g_free(inner);
  g_free(target);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_atomic_write_fails_keeps_old(void) {
  /* A write(2) failure part-way (file size limit: works as root as well) must leave
   * the existing file byte-identical and remove the temp file. */
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "ckpt.safetensors", NULL);
  float small = 42.0f;
  PrunusTensor old = {.name = "old", .ndim = 1, .shape = {1}, .data = &small};
  GError *error = NULL;
  g_assert_true(prunus_safetensors_write(path, &old, 1, NULL, &error));
  g_assert_no_error(error);
  size_t old_len;
  char *old_bytes = read_all(path, &old_len);

  size_t n = 1 << 18; /* 1 MiB of floats */
  float *big = g_new0(float, n);
  PrunusTensor t = {.name = "big", .ndim = 1, .shape = {(int64_t)n}, .data = big};

  struct rlimit saved;
  g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &saved), ==, 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &limited), ==, 0);
  gboolean ok = prunus_safetensors_write(path, &t, 1, NULL, &error);
  g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &saved), ==, 0);
  signal(SIGXFSZ, old_handler);

  g_assert_false(ok);
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO);
  testutil_assert_error_contains(error, path, "cannot write temp file", NULL);
  g_clear_error(&error);
  size_t now_len;
  char *now_bytes = read_all(path, &now_len);
  g_assert_cmpmem(now_bytes, now_len, old_bytes, old_len);
  char *names = list_dir(dir);
  g_assert_cmpstr(names, ==, "ckpt.safetensors");
  g_free(names);

  /* An invalid request (duplicate names) leaves it untouched too. */
  PrunusTensor dup[2] = {old, old};
  g_assert_false(prunus_safetensors_write(path, dup, 2, NULL, &error));
  g_clear_error(&error);
  g_free(now_bytes);
  now_bytes = read_all(path, &now_len);
  g_assert_cmpmem(now_bytes, now_len, old_bytes, old_len);

  g_free(now_bytes);
  g_free(old_bytes);
  g_free(big);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

static void test_python_reader(void) {
  /* Optional: the reference reader, when the Python package is installed. */
  const char *python = "/usr/bin/python3";
  int status = 1;
  char *argv_probe[] = {(char *)python, "-c", "import safetensors.numpy", NULL};
  if (!g_file_test(python, G_FILE_TEST_IS_EXECUTABLE) ||
      !g_spawn_sync(NULL, argv_probe, NULL, G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                    NULL, NULL, NULL, NULL, &status, NULL) ||
      !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    g_test_skip("python3 with the safetensors package is not available");
    return;
  }
  char *dir = testutil_mkdtemp();
  char *path = g_build_filename(dir, "py.safetensors", NULL);
  float w[6] = {1.5f, -2, 3, 4, 5, 6.25f};
  PrunusTensor t[2] = {{.name = "0.weight", .ndim = 2, .shape = {2, 3}, .data = w},
                       {.name = "0.bias", .ndim = 1, .shape = {2}, .data = w}};
  GHashTable *meta = g_hash_table_new(g_str_hash, g_str_equal);
  g_hash_table_insert(meta, "format", "prunus");
  GError *error = NULL;
  g_assert_true(prunus_safetensors_write(path, t, 2, meta, &error));
  g_assert_no_error(error);
  char *script = g_strdup_printf(
      "from safetensors.numpy import load_file\n"
      "from safetensors import safe_open\n"
      "d = load_file('%s')\n"
      "print(sorted(d), d['0.weight'].shape, d['0.weight'].dtype, d['0.weight'].sum(), "
      "d['0.bias'].tolist())\n"
      "print(safe_open('%s', 'np').metadata())\n",
      path, path);
  char *argv_run[] = {(char *)python, "-c", script, NULL};
  char *out = NULL;
  g_assert_true(
      g_spawn_sync(NULL, argv_run, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL, &status, &error));
  g_assert_no_error(error);
  g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  g_assert_cmpstr(out, ==,
                  "['0.bias', '0.weight'] (2, 3) float32 17.75 [1.5, -2.0]\n"
                  "{'format': 'prunus'}\n");
  g_free(out);
  g_free(script);
  g_hash_table_destroy(meta);
  g_free(path);
  testutil_rmtree(dir);
  g_free(dir);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/safetensors/round-trip", test_round_trip);
  g_test_add_func("/safetensors/byte-layout", test_byte_layout);
  g_test_add_func("/safetensors/foreign-file", test_foreign_file);
  g_test_add_func("/safetensors/truncated", test_truncated);
  g_test_add_func("/safetensors/header-length", test_header_length);
  g_test_add_func("/safetensors/bad-header", test_bad_header);
  g_test_add_func("/safetensors/unreadable", test_unreadable);
  g_test_add_func("/safetensors/write-invalid", test_write_invalid);
  g_test_add_func("/safetensors/atomic-missing-dir", test_atomic_missing_dir);
  g_test_add_func("/safetensors/atomic-rename-fails", test_atomic_rename_fails);
  g_test_add_func("/safetensors/atomic-write-fails-keeps-old", test_atomic_write_fails_keeps_old);
  g_test_add_func("/safetensors/python-reader", test_python_reader);
  return g_test_run();
}
