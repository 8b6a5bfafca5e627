/* fuzz_common.c: scratch files for the harnesses (the readers under test take paths)
 * in one private temporary folder, and GLib criticals made fatal. */
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_SLOTS 4

static char *scratch_dir;
static char *slot_path[FUZZ_SLOTS];

static void remove_scratch(void) {
  for (int i = 0; i < FUZZ_SLOTS; i++)
    if (slot_path[i]) g_unlink(slot_path[i]);
  if (scratch_dir) g_rmdir(scratch_dir);
}

void prunus_fuzz_init(void) {
  static gboolean done = FALSE;
  if (done) return;
  done = TRUE;
  g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR);
  /* /dev/shm keeps the scratch files in memory: no disk traffic per input */
  const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
  scratch_dir = g_build_filename(base, "prunus-fuzz-XXXXXX", NULL);
  if (!g_mkdtemp(scratch_dir)) {
    fprintf(stderr, "fuzz: cannot create a scratch folder under %s: %s\n", base, g_strerror(errno));
    abort();
  }
  atexit(remove_scratch);
}

const char *prunus_fuzz_dir(void) {
  prunus_fuzz_init();
  return scratch_dir;
}

const char *prunus_fuzz_file(int slot, const void *data, size_t size) {
  prunus_fuzz_init();
  g_assert(slot >= 0 && slot < FUZZ_SLOTS);
  if (!slot_path[slot]) {
    char name[32];
    g_snprintf(name, sizeof name, "input-%d", slot);
    slot_path[slot] = g_build_filename(scratch_dir, name, NULL);
  }
  int fd = open(slot_path[slot], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "fuzz: cannot write %s: %s\n", slot_path[slot], g_strerror(errno));
    abort();
  }
  const char *p = data;
  while (size > 0) {
    ssize_t w = write(fd, p, size);
    if (w <= 0) {
      fprintf(stderr, "fuzz: cannot write %s: %s\n", slot_path[slot], g_strerror(errno));
      abort();
    }
    p += w;
    size -= (size_t)w;
  }
  close(fd);
  return slot_path[slot];
}
