/* testutil.h: helpers shared by the unit tests: temp folders, file writing,
 * tensor comparison that prints the max difference (llm.c's check_tensor), the model of
 * a config file. */
#ifndef PRUNUS_TESTUTIL_H
#define PRUNUS_TESTUTIL_H

#include <glib.h>
#include <stdint.h>
#include <stddef.h>

#include "model.h"

/* (transfer full) A fresh temp folder, removed by testutil_rmtree. */
char *testutil_mkdtemp(void);
void testutil_rmtree(const char *path);
/* Write len bytes to dir/name; returns the full path (transfer full). */
char *testutil_write_file(const char *dir, const char *name, const void *data, size_t len);
/* Max |a-b| / max(1, |a|, |b|) over n values; prints label and the value. */
double testutil_max_rel_diff(const float *a, const float *b, size_t n, const char *label);
/* Assert that error is set and its message contains every needle (check the
 * domain and code separately with g_assert_error). */
void testutil_assert_error_contains(const GError *error, const char *needle1,
                                    ...) G_GNUC_NULL_TERMINATED;

/* (transfer full) The model of the config file at path (its model group only), for
 * batches up to batch, initialised from seed; asserts that everything loads. */
PrunusModel *testutil_config_model(const char *path, int batch, uint64_t seed);

/* TRUE when PRUNUS_TEST_UNDER_MEMCHECK is set (scripts/valgrind.sh sets it): export's
 * Fashion-MNIST subtests then use a tenth of the images. Memcheck is after the code
 * paths, which a tenth walks as well, and runs them about 250 times slower; accuracy
 * bounds need the full data and are asserted only without it. */
gboolean testutil_under_memcheck(void);

/* prunus_job_run with its stdout (progress, and with quiet the result line "report:
 * ...") sent to /dev/null: in-process runs would break the test's TAP stream. */
gboolean testutil_job_run(const PrunusJobOptions *o, GError **error);

#endif
