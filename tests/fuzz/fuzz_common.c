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
/* Each slot's file stays open for writing, and its length is remembered: an input is
 * written over the previous one in place and the file cut only when it was longer.
 * Opening with O_TRUNC per input freed and allocated the tmpfs pages every time (a
 * tenth of the config harness's time went to the scratch file). */
static int slot_fd[FUZZ_SLOTS];
static size_t slot_len[FUZZ_SLOTS];

/* Everything in the folder goes, not only the slot files: harnesses also write files
 * of their own there (prunus_fuzz_dir), and a folder left non-empty stays behind. */
static void remove_scratch(void) {
  for (int i = 0; i < FUZZ_SLOTS; i++)
    if (slot_fd[i] > 0) close(slot_fd[i]);
  if (!scratch_dir) return;
  GDir *dir = g_dir_open(scratch_dir, 0, NULL);
  if (dir) {
    const char *name;
    while ((name = g_dir_read_name(dir))) {
      char *path = g_build_filename(scratch_dir, name, NULL);
      g_unlink(path);
      g_free(path);
    }
    g_dir_close(dir);
  }
  g_rmdir(scratch_dir);
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
    slot_fd[slot] = open(slot_path[slot], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (slot_fd[slot] < 0) {
      fprintf(stderr, "fuzz: cannot write %s: %s\n", slot_path[slot], g_strerror(errno));
      abort();
    }
  }
  const char *p = data;
  size_t left = size;
  off_t at = 0;
  while (left > 0) {
    ssize_t w = pwrite(slot_fd[slot], p, left, at);
    if (w <= 0) {
      fprintf(stderr, "fuzz: cannot write %s: %s\n", slot_path[slot], g_strerror(errno));
      abort();
    }
    p += w;
    at += w;
    left -= (size_t)w;
  }
  if (slot_len[slot] > size && ftruncate(slot_fd[slot], (off_t)size) != 0) {
    fprintf(stderr, "fuzz: cannot truncate %s: %s\n", slot_path[slot], g_strerror(errno));
    abort();
  }
  slot_len[slot] = size;
  return slot_path[slot];
}
