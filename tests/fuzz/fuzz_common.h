/* fuzz_common.h: what the libFuzzer harnesses of tests/fuzz/ share: the fuzz input
 * handed to a reader as a file (the readers take paths), and strict GLib logging. */
#ifndef PRUNUS_FUZZ_COMMON_H
#define PRUNUS_FUZZ_COMMON_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry point every harness defines (replay.c calls it too). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write size bytes to the harness's scratch file number slot (0..3), replacing what
 * it held, and return its path (transfer none, stable for the process). The files
 * live in one private temporary folder removed at exit. */
const char *prunus_fuzz_file(int slot, const void *data, size_t size);
/* The scratch folder itself (for harnesses that need a file of a given name). */
const char *prunus_fuzz_dir(void);
/* Once per process: GLib criticals (a g_return_if_fail reached from input) abort, so
 * the fuzzer reports them as crashes. */
void prunus_fuzz_init(void);

#endif
