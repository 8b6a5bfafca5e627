/* replay.c: runs a harness of tests/fuzz/ over files without libFuzzer, so every
 * build (gcc, ASan) replays the seed corpus and the crash regressions as a test.
 * Usage: fuzz-replay-TARGET FILE_OR_FOLDER...; prints "N inputs" and exits 0, or
 * dies on the input that crashes (its path printed first). */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int replay_file(const char *path) {
  gchar *data = NULL;
  gsize len = 0;
  GError *error = NULL;
  if (!g_file_get_contents(path, &data, &len, &error)) {
    fprintf(stderr, "replay: %s\n", error->message);
    g_error_free(error);
    return -1;
  }
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, (size_t)len);
  /* a copy of exactly len bytes, so ASan sees a read past the input's end */
  uint8_t *copy = g_memdup2(data, len);
  LLVMFuzzerTestOneInput(copy, len);
  g_free(copy);
  g_free(data);
  return 1;
}

static gint compare_names(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int replay_path(const char *path) {
  if (!g_file_test(path, G_FILE_TEST_IS_DIR)) return replay_file(path);
  GDir *dir = g_dir_open(path, 0, NULL);
  if (!dir) return -1;
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  for (const char *n; (n = g_dir_read_name(dir));)
    if (n[0] != '.') g_ptr_array_add(names, g_strdup(n));
  g_dir_close(dir);
  g_ptr_array_sort(names, compare_names); /* a stable order in the log */
  int count = 0;
  for (guint i = 0; i < names->len; i++) {
    char *child = g_build_filename(path, (const char *)names->pdata[i], NULL);
    int n = replay_path(child);
    g_free(child);
    if (n < 0) {
      g_ptr_array_free(names, TRUE);
      return -1;
    }
    count += n;
  }
  g_ptr_array_free(names, TRUE);
  return count;
}

int main(int argc, char **argv) {
  prunus_fuzz_init();
  int total = 0;
  for (int i = 1; i < argc; i++) {
    int n = replay_path(argv[i]);
    if (n < 0) {
      fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 1;
    }
    total += n;
  }
  printf("%d inputs\n", total);
  return total > 0 ? 0 : 1;
}
