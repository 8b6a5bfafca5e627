/* team.c: the helper threads of a PrunusTeam: calls posted by a generation counter,
 * finished parts counted in `done`; waiters spin a while (at once asleep when the
 * other thread shares their CPU), then sleep on the team's condition variable. */
#include "team.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct PrunusTeam {
  alignas(64) atomic_uint gen;     /* calls posted (+1 more to stop); written by the caller */
  alignas(64) atomic_uint done;    /* parts finished by helpers, cumulative */
  alignas(64) atomic_int sleepers; /* threads blocked (or about to block) on cond */
  atomic_int cpu[PRUNUS_TEAM_MAX_THREADS]; /* (threads) where part p's thread last waited */
  int threads;
  gboolean stop;
  PrunusTeamFn fn; /* the posted call */
  void *arg;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int n_helpers;          /* started */
  int caller_cpu;         /* the CPU the helpers keep off (-1: none) */
  gboolean caller_pinned; /* prunus_team_pin_caller pinned `caller`, saved in caller_set */
  pthread_t caller;
  cpu_set_t caller_set;
  pthread_t tid[PRUNUS_TEAM_MAX_THREADS - 1];
  struct Helper {
    PrunusTeam *team;
    int part;
  } helpers[PRUNUS_TEAM_MAX_THREADS - 1]; /* (n_helpers) each one's start argument */
};

/* ------------------------------------------------------------------------ */
/* waiting and waking */

/* TRUE when another thread of the team last waited on this CPU (part `self` is
 * this thread): the scheduler has stacked them, and spinning would only keep the
 * other one from running. */
static gboolean shares_cpu(PrunusTeam *t, int self) {
  int here = sched_getcpu();
  if (here < 0) return FALSE;
  atomic_store_explicit(&t->cpu[self], here, memory_order_relaxed);
  for (int p = 0; p < t->threads; p++)
    if (p != self && atomic_load_explicit(&t->cpu[p], memory_order_relaxed) == here) return TRUE;
  return FALSE;
}

/* TRUE once *word == target; FALSE after PRUNUS_TEAM_SPIN_US without it, or when
 * the threads share a CPU. A plain load loop: no PAUSE, because under KVM a PAUSE
 * loop exits to the hypervisor (pause-loop exiting), which costs hundreds of times the
 * round trip the loop waits for; no sched_yield either, which lets the scheduler move
 * the helper onto the caller's CPU (docs/perf-log.md). */
static gboolean spin_until(PrunusTeam *t, atomic_uint *word, unsigned target, int self) {
  if (shares_cpu(t, self)) return atomic_load(word) == target;
  gint64 start = 0;
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) == target) return TRUE;
    if (i % 256 == 0) {
      gint64 now = g_get_monotonic_time();
      if (start == 0)
        start = now;
      else if (now - start > PRUNUS_TEAM_SPIN_US || shares_cpu(t, self))
        return FALSE;
    }
  }
}

/* Returns once *word == target: spins, then sleeps until a wake_all. The sleeper
 * announces itself (sleepers) before its last look at *word and the waker stores
 * before it looks at sleepers, both sequentially consistent: no wake is lost. */
static void wait_until(PrunusTeam *t, atomic_uint *word, unsigned target, int self) {
  if (spin_until(t, word, target, self)) return;
  /* asleep, this thread holds no CPU: a caller that lands on the CPU it last waited
   * on must not take that for sharing (it would then run every part itself) */
  atomic_store_explicit(&t->cpu[self], -1, memory_order_relaxed);
  pthread_mutex_lock(&t->lock);
  atomic_fetch_add(&t->sleepers, 1);
  while (atomic_load(word) != target) pthread_cond_wait(&t->cond, &t->lock);
  atomic_fetch_sub(&t->sleepers, 1);
  pthread_mutex_unlock(&t->lock);
}

/* After a sequentially consistent store that a sleeper may wait for. */
static void wake_all(PrunusTeam *t) {
  if (atomic_load(&t->sleepers) == 0) return;
  pthread_mutex_lock(&t->lock);
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

/* ------------------------------------------------------------------------ */
/* helpers */

static void *helper_main(void *arg) {
  const struct Helper *h = arg;
  PrunusTeam *t = h->team;
  for (unsigned gen = 1;; gen++) {
    wait_until(t, &t->gen, gen, h->part);
    if (t->stop) return NULL;
    t->fn(t->arg, h->part, t->threads);
    atomic_fetch_add(&t->done, 1);
    wake_all(t);
  }
}

/* Post stop and join the first n helpers. */
static void stop_helpers(PrunusTeam *t, int n) {
  t->stop = TRUE;
  atomic_fetch_add(&t->gen, 1);
  wake_all(t);
  for (int h = 0; h < n; h++) pthread_join(t->tid[h], NULL);
}

/* Helpers may run on every CPU the process may, but the caller's (now): woken from
 * sleep, an unpinned helper may be placed on the caller's CPU and stay stacked there
 * for many scheduler ticks, every call then slower than on one thread
 * (docs/perf-log.md). The caller is free to move, so the scheduler separates them
 * again by moving it. */
static int keep_off_caller_cpu(pthread_attr_t *attr) {
  cpu_set_t set;
  int here = sched_getcpu();
  if (here < 0 || sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2 ||
      !CPU_ISSET(here, &set))
    return -1;
  CPU_CLR(here, &set);
  pthread_attr_setaffinity_np(attr, sizeof set, &set);
  return here;
}

PrunusTeam *prunus_team_new(int threads) {
  g_return_val_if_fail(threads >= 2 && threads <= PRUNUS_TEAM_MAX_THREADS, NULL);
  PrunusTeam *t = NULL;
  if (posix_memalign((void **)&t, alignof(PrunusTeam), sizeof *t) != 0) g_error("out of memory");
  memset(t, 0, sizeof *t);
  t->threads = threads;
  for (int p = 0; p < threads; p++) t->cpu[p] = -1;
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->cond, NULL);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  t->caller_cpu = keep_off_caller_cpu(&attr);
  for (int h = 0; h < threads - 1; h++) {
    t->helpers[h] = (struct Helper){t, h + 1};
    if (pthread_create(&t->tid[h], &attr, helper_main, &t->helpers[h]) != 0) {
      g_warning("team: cannot start helper thread %d of %d", h + 1, threads - 1);
      stop_helpers(t, h);
      goto out_free_team;
    }
    t->n_helpers = h + 1;
  }
  pthread_attr_destroy(&attr);
  return t;

out_free_team:
  pthread_attr_destroy(&attr);
  pthread_cond_destroy(&t->cond);
  pthread_mutex_destroy(&t->lock);
  free(t);
  return NULL;
}

gboolean prunus_team_pin_caller(PrunusTeam *t) {
  g_return_val_if_fail(t && !t->caller_pinned, FALSE);
  if (t->caller_cpu < 0) return FALSE;
  pthread_t self = pthread_self();
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(t->caller_cpu, &one);
  if (pthread_getaffinity_np(self, sizeof t->caller_set, &t->caller_set) != 0 ||
      pthread_setaffinity_np(self, sizeof one, &one) != 0)
    return FALSE;
  t->caller = self;
  t->caller_pinned = TRUE;
  return TRUE;
}

void prunus_team_free(PrunusTeam *t) {
  if (!t) return;
  if (t->caller_pinned) {
    if (pthread_equal(pthread_self(), t->caller))
      pthread_setaffinity_np(t->caller, sizeof t->caller_set, &t->caller_set);
    else
      g_warning("team: freed by another thread than the one it pinned; that one stays pinned");
  }
  stop_helpers(t, t->n_helpers);
  pthread_cond_destroy(&t->cond);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

int prunus_team_threads(const PrunusTeam *t) { return t ? t->threads : 1; }

void prunus_team_run(PrunusTeam *t, PrunusTeamFn fn, void *arg) {
  if (!t) {
    fn(arg, 0, 1);
    return;
  }
  if (shares_cpu(t, 0)) { /* a helper would only take turns with us: do every part here */
    for (int p = 0; p < t->threads; p++) fn(arg, p, t->threads);
    return;
  }
  t->fn = fn;
  t->arg = arg;
  unsigned gen = atomic_fetch_add(&t->gen, 1) + 1;
  wake_all(t);
  fn(arg, 0, t->threads);
  wait_until(t, &t->done, gen * (unsigned)(t->threads - 1), 0);
}
