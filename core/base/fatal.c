/* fatal.c: the handlers behind fatal.h. What they print and write is prepared by
 * prunus_fatal_push / set_where / set_last_words on the main thread; the handlers
 * themselves use only write, open, fsync, close, rename, unlink and sigaction. */
#include "fatal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One piece of context: the text as printed and as the body of a JSON string. */
typedef struct {
  char raw[PRUNUS_FATAL_TEXT_MAX];
  char json[6 * PRUNUS_FATAL_TEXT_MAX]; /* a control byte grows to \u00XX */
} FatalText;

typedef struct {
  char *path, *tmp, *head, *mid, *tail;
} LastWords;

static FatalText frames[PRUNUS_FATAL_MAX_FRAMES];
static atomic_int depth;
/* The position is double-buffered: set_where fills the slot not in use, then flips. */
static FatalText where_text[2];
static atomic_int where_slot = -1;
static _Atomic(LastWords *) last_words;
/* Set by a dying handler before it reads last_words: a LastWords replaced while one
 * runs is then never freed (the process is ending anyway). */
static atomic_int dying;
static atomic_int handling;
static atomic_int installed;

static const struct {
  int sig;
  const char *name, *what;
  gboolean interrupt;
} signals[] = {
    {SIGSEGV, "SIGSEGV", " (invalid memory access)", FALSE},
    {SIGBUS, "SIGBUS", " (bus error: misaligned or truncated mapping)", FALSE},
    {SIGFPE, "SIGFPE", " (arithmetic fault, e.g. integer division by zero)", FALSE},
    {SIGILL, "SIGILL", " (illegal instruction)", FALSE},
    {SIGABRT, "SIGABRT", " (abort)", FALSE},
    {SIGINT, "SIGINT", "", TRUE},
    {SIGTERM, "SIGTERM", "", TRUE},
    {SIGHUP, "SIGHUP", "", TRUE},
};
static struct sigaction saved[G_N_ELEMENTS(signals)];

/* ------------------------------------------------------------------------ */
/* preparing the text (main thread) */

static void text_set(FatalText *t, const char *s) {
  char *valid = g_utf8_make_valid(s, -1);
  g_strlcpy(t->raw, valid, sizeof t->raw);
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)t->raw; *p; p++) {
    if (*p == '"' || *p == '\\') {
      t->json[o++] = '\\', t->json[o++] = (char)*p;
    } else if (*p < 0x20) {
      o += (size_t)g_snprintf(t->json + o, 7, "\\u%04x", *p);
    } else {
      t->json[o++] = (char)*p;
    }
  }
  t->json[o] = '\0';
  g_free(valid);
}

void prunus_fatal_push(const char *what) {
  int d = atomic_load(&depth);
  if (d < PRUNUS_FATAL_MAX_FRAMES) text_set(&frames[d], what);
  atomic_store(&depth, d + 1);
}

void prunus_fatal_pop(void) {
  int d = atomic_load(&depth);
  g_return_if_fail(d > 0);
  atomic_store(&depth, d - 1);
}

int prunus_fatal_depth(void) { return atomic_load(&depth); }

void prunus_fatal_set_where(const char *where) {
  if (!where) {
    atomic_store(&where_slot, -1);
    return;
  }
  int next = atomic_load(&where_slot) == 0 ? 1 : 0;
  text_set(&where_text[next], where);
  atomic_store(&where_slot, next);
}

static void last_words_free(LastWords *lw) {
  if (!lw) return;
  g_free(lw->path), g_free(lw->tmp), g_free(lw->head), g_free(lw->mid), g_free(lw->tail);
  g_free(lw);
}

void prunus_fatal_set_last_words(const char *path, const char *head, const char *mid,
                                 const char *tail) {
  LastWords *lw = NULL;
  if (path) {
    lw = g_new0(LastWords, 1);
    lw->path = g_strdup(path);
    lw->tmp = g_strconcat(path, ".last-words", NULL);
    lw->head = g_strdup(head), lw->mid = g_strdup(mid), lw->tail = g_strdup(tail);
  }
  LastWords *old = atomic_exchange(&last_words, lw);
  if (!atomic_load(&dying)) last_words_free(old);
}

/* ------------------------------------------------------------------------ */
/* reporting (async-signal-safe from here on) */

static gboolean put(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return FALSE;
    s += w;
    n -= (size_t)w;
  }
  return TRUE;
}

/* " in <innermost frame>, called from <next>..., <where>"; json picks the escaped form. */
static gboolean put_context(int fd, gboolean json, gboolean interrupt) {
  int d = atomic_load(&depth);
  if (d > PRUNUS_FATAL_MAX_FRAMES) d = PRUNUS_FATAL_MAX_FRAMES;
  gboolean ok = TRUE;
  for (int i = d - 1; i >= 0; i--) {
    ok &= put(fd, i == d - 1 ? " in " : ", called from ");
    ok &= put(fd, json ? frames[i].json : frames[i].raw);
  }
  if (d == 0 && !interrupt) ok &= put(fd, " outside any plugin call");
  int w = atomic_load(&where_slot);
  if (w >= 0) {
    ok &= put(fd, ", ");
    ok &= put(fd, json ? where_text[w].json : where_text[w].raw);
  }
  return ok;
}

/* The message on stderr, then the last words: event is two or three pieces of
 * plain text (no characters JSON would escape). */
static void report(const char *const event[3], gboolean interrupt) {
  put(STDERR_FILENO, "prunus: ");
  for (int i = 0; i < 3 && event[i]; i++) put(STDERR_FILENO, event[i]);
  put_context(STDERR_FILENO, FALSE, interrupt);
  LastWords *lw = atomic_load(&last_words);
  put(STDERR_FILENO, "\nprunus: " PRUNUS_FATAL_HINT "\n");
  if (!lw) return;
  int fd = open(lw->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  gboolean ok =
      put(fd, lw->head) && put(fd, interrupt ? "interrupted" : "failed") && put(fd, lw->mid);
  for (int i = 0; ok && i < 3 && event[i]; i++) ok = put(fd, event[i]);
  ok = ok && put_context(fd, TRUE, interrupt) && put(fd, lw->tail) && fsync(fd) == 0;
  if (close(fd) != 0) ok = FALSE;
  /* a partial file never replaces the summary: the one of the last round stays */
  if (!ok || rename(lw->tmp, lw->path) != 0) unlink(lw->tmp);
}

static void on_signal(int sig, siginfo_t *info, void *context) {
  size_t k = 0;
  while (k < G_N_ELEMENTS(signals) && signals[k].sig != sig) k++;
  if (k == G_N_ELEMENTS(signals)) return;
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  if (atomic_exchange(&handling, 1)) {
    /* reported already (a second fault, or the abort() of a sanitizer this handler
     * handed the first one to): end the way the signal ends a process by default */
    sigaction(sig, &dfl, NULL);
    raise(sig);
    return;
  }
  atomic_store(&dying, 1);
  /* from here on every signal goes where it went before prunus_fatal_install */
  for (size_t i = 0; i < G_N_ELEMENTS(signals); i++) sigaction(signals[i].sig, &saved[i], NULL);
  const char *event[3] = {signals[k].interrupt ? "interrupted by " : "fatal signal ",
                          signals[k].name, signals[k].what};
  report(event, signals[k].interrupt);
  /* let the signal take its course: the handler installed before ours (a sanitizer's)
   * when there was one, then the default action once this handler returns */
  const struct sigaction *old = &saved[k];
  if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction)
    old->sa_sigaction(sig, info, context);
  else if (!(old->sa_flags & SA_SIGINFO) && old->sa_handler != SIG_DFL &&
           old->sa_handler != SIG_IGN)
    old->sa_handler(sig);
  sigaction(sig, &dfl, NULL);
  raise(sig); /* blocked until this handler returns, then fatal */
}

/* exit() with a frame pushed: a plugin ended the process in the middle of its call. */
static void on_exit_hook(int status, void *arg) {
  (void)arg;
  if (atomic_load(&depth) == 0 || atomic_load(&handling)) return;
  atomic_store(&handling, 1);
  atomic_store(&dying, 1);
  fflush(stdout); /* the progress lines before the message */
  char code[32];
  g_snprintf(code, sizeof code, "exit(%d) called", status);
  const char *event[3] = {code, NULL, NULL};
  report(event, FALSE);
  /* exit() from inside an exit handler is undefined: leave with _exit */
  _exit(status != 0 ? status : 1);
}

void prunus_fatal_install(void) {
  if (atomic_exchange(&installed, 1)) return;
  static char alt_stack[64 * 1024];
  stack_t current;
  if (sigaltstack(NULL, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
    stack_t ss = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack};
    sigaltstack(&ss, NULL);
  }
  for (size_t k = 0; k < G_N_ELEMENTS(signals); k++) {
    struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    if (sigaction(signals[k].sig, NULL, &saved[k]) != 0) continue;
    /* an interrupt ignored by whoever started us (nohup, a background job) stays so */
    if (signals[k].interrupt && !(saved[k].sa_flags & SA_SIGINFO) && saved[k].sa_handler == SIG_IGN)
      continue;
    sigaction(signals[k].sig, &sa, NULL);
  }
  signal(SIGXFSZ, SIG_IGN);
  on_exit(on_exit_hook, NULL);
}
