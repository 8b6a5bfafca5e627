/* fatal.h: the last words of a process that dies in the middle of a run: a fatal
 * signal (SEGV, BUS, FPE, ILL, ABRT), an interrupt (INT, TERM, HUP), or exit() called
 * while a plugin runs. Everything the handlers print or write is prepared beforehand,
 * so they only call async-signal-safe functions (write, open, fsync, rename). */
#ifndef PRUNUS_FATAL_H
#define PRUNUS_FATAL_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

/* Longest text a frame or the position keeps (longer text is cut). */
#define PRUNUS_FATAL_TEXT_MAX 1024
/* Frames deeper than this are not recorded (their push and pop still pair). */
#define PRUNUS_FATAL_MAX_FRAMES 4

/* Install the handlers once per process (later calls do nothing): the fatal signals
 * and the interrupts (an interrupt that is ignored when this is called stays
 * ignored), an exit hook, an alternate signal stack for the calling thread (so a
 * stack overflow can still be reported), and SIGXFSZ ignored, so that writing past
 * RLIMIT_FSIZE fails with EFBIG, an error naming the file, instead of killing the
 * process. A handler prints one message to stderr naming the signal and what was
 * running, rewrites the last-words file when one is set, then lets the signal take
 * its course (the handler that was installed before, or the default: the process
 * ends with the signal's status). */
void prunus_fatal_install(void);

/* What is running now, innermost last, e.g. "score() of prune.criterion plugin 'x'
 * (/path/x.so)". Push before calling into a plugin, pop after it returns. exit()
 * called while a frame is pushed ends the process with the message, the last words
 * with status "failed", and exit status 1 (or the status passed to exit() when it
 * is not 0): a plugin cannot end a half-finished run with status 0. */
void prunus_fatal_push(const char *what);
void prunus_fatal_pop(void);
/* How deep the frames are now (0 = no plugin call is running). */
int prunus_fatal_depth(void);

/* Where the run is, e.g. "experiment 'a', round 3"; NULL clears it. */
void prunus_fatal_set_where(const char *where);

/* The file to rewrite when the process dies: head + STATUS + mid + MESSAGE + tail is
 * written to a temporary file beside path, synced and renamed over path. STATUS is
 * "failed" or "interrupted"; MESSAGE is the event and what was running, escaped as
 * the body of a JSON string. path NULL: nothing is rewritten. The strings are
 * copied. */
void prunus_fatal_set_last_words(const char *path, const char *head, const char *mid,
                                 const char *tail);

/* The hint every message ends with: true whether the process died before its first
 * round finished (in checking, loading data, pretraining) or after. */
#define PRUNUS_FATAL_HINT                                                                     \
  "rounds that finished are kept: rerunning the same command resumes after the last of them " \
  "(or starts again, when none had finished)"

G_END_DECLS

#endif
