/* testutil.c: helpers shared by the unit tests (temp folders, files, tensor
 * comparison, error-message assertions, config models). */
#include "testutil.h"

#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <stdio.h>

char *testutil_mkdtemp(void) {
  GError *error = NULL;
  char *dir = g_dir_make_tmp("prunus-test-XXXXXX", &error);
  g_assert_no_error(error);
  return dir;
}

void testutil_rmtree(const char *path) {
  GDir *d = g_dir_open(path, 0, NULL);
  if (d) {
    const char *name;
    while ((name = g_dir_read_name(d))) {
      char *child = g_build_filename(path, name, NULL);
      if (g_file_test(child, G_FILE_TEST_IS_DIR) && !g_file_test(child, G_FILE_TEST_IS_SYMLINK))
        testutil_rmtree(child);
      else
        g_unlink(child);
      g_free(child);
    }
    g_dir_close(d);
  }
  g_rmdir(path);
}

char *testutil_write_file(const char *dir, const char *name, const void *data, size_t len) {
  char *path = g_build_filename(dir, name, NULL);
  GError *error = NULL;
  g_file_set_contents(path, data, (gssize)len, &error);
  g_assert_no_error(error);
  return path;
}

double testutil_max_rel_diff(const float *a, const float *b, size_t n, const char *label) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double scale = fmax(1.0, fmax(fabs(a[i]), fabs(b[i])));
    double d = fabs((double)a[i] - (double)b[i]) / scale;
    if (isnan(d)) d = INFINITY;
    if (d > worst) worst = d;
  }
  g_test_message("%s: max relative difference %.3e over %zu values", label, worst, n);
  return worst;
}

void testutil_assert_error_contains(const GError *error, const char *needle1, ...) {
  g_assert_nonnull(error);
  g_test_message("error: %s", error->message);
  va_list ap;
  va_start(ap, needle1);
  for (const char *needle = needle1; needle; needle = va_arg(ap, const char *)) {
    if (!strstr(error->message, needle))
      g_error("expected '%s' in error message: %s", needle, error->message);
  }
  va_end(ap);
}

PrunusModel *testutil_config_model(const char *path, int batch, uint64_t seed) {
  GError *error = NULL;
  PrunusConfig *c = prunus_config_load(path, &error);
  g_assert_no_error(error);
  PrunusRunConfig rc;
  g_assert_true(prunus_run_config_parse(c, &rc, &error));
  g_assert_no_error(error);
  PrunusModel *m = prunus_model_new(&rc.arch, batch, seed, &error);
  g_assert_no_error(error);
  prunus_run_config_clear(&rc);
  prunus_config_free(c);
  return m;
}

gboolean testutil_under_memcheck(void) {
  const char *s = g_getenv("PRUNUS_TEST_UNDER_MEMCHECK");
  return s && *s && strcmp(s, "0") != 0;
}

gboolean testutil_job_run(const PrunusJobOptions *o, GError **error) {
  fflush(stdout);
  int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  g_assert_cmpint(saved, >=, 0);
  g_assert_cmpint(null, >=, 0);
  dup2(null, STDOUT_FILENO);
  close(null);
  gboolean ok = prunus_job_run(o, error);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  return ok;
}
