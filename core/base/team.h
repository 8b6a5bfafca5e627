/* team.h: a few threads that split one kernel call between them: the caller and
 * helpers that wait for work spinning for at most PRUNUS_TEAM_SPIN_US, then sleep
 * (so an idle team costs nothing next to OpenBLAS's own pool). */
#ifndef PRUNUS_TEAM_H
#define PRUNUS_TEAM_H

#include <glib.h>

G_BEGIN_DECLS

/* How long a waiting thread spins before it sleeps on a condition variable. */
#define PRUNUS_TEAM_SPIN_US 50
#define PRUNUS_TEAM_MAX_THREADS 8

typedef struct PrunusTeam PrunusTeam;

/* One share of a call: part in 0..n_parts-1; part 0 runs on the calling thread. */
typedef void (*PrunusTeamFn)(void *arg, int part, int n_parts);

/* (transfer full) A team of `threads` threads in all (2..PRUNUS_TEAM_MAX_THREADS): the
 * caller of prunus_team_run and threads-1 helpers started here, allowed on every
 * CPU of the process but the caller's (now). NULL (with a warning) when a helper
 * cannot be started. */
PrunusTeam *prunus_team_new(int threads);
/* Pins the calling thread to the CPU the helpers were started off, until
 * prunus_team_free (to be called from this thread) restores its CPU set. Without it
 * the scheduler may wake the caller onto a helper's CPU (the helper woke it) and
 * leave it there, running every part alone at one thread's speed. FALSE (nothing
 * changed) when the helpers are not kept off a CPU or the pin fails. */
gboolean prunus_team_pin_caller(PrunusTeam *team);
/* Stops and joins the helpers (and unpins a caller pinned by prunus_team_pin_caller).
 * NULL is fine. */
void prunus_team_free(PrunusTeam *team);
/* Threads in the team, 1 for NULL. */
int prunus_team_threads(const PrunusTeam *team);
/* fn(arg, p, n) for every part p of n = prunus_team_threads(team), in parallel;
 * returns when all are done. team may be NULL: fn(arg, 0, 1) here. When the
 * scheduler has put a helper on the caller's CPU, every part runs here, in turn.
 * Not reentrant: one call at a time per team. */
void prunus_team_run(PrunusTeam *team, PrunusTeamFn fn, void *arg);
/* Where part `part` of n_parts starts when n items are split in contiguous shares
 * (part n_parts gives n): the same split for every caller. */
static inline int prunus_team_share(int n, int part, int n_parts) {
  return (int)((long)n * part / n_parts);
}
/* Part `part`'s items [*begin, *end) of n, split in whole blocks of `block` items (the
 * last one may be short): shares that start on vector or tile boundaries. */
static inline void prunus_team_block_share(size_t n, size_t block, int part, int n_parts,
                                           size_t *begin, size_t *end) {
  int blocks = (int)((n + block - 1) / block);
  *begin = MIN((size_t)prunus_team_share(blocks, part, n_parts) * block, n);
  *end = MIN((size_t)prunus_team_share(blocks, part + 1, n_parts) * block, n);
}

G_END_DECLS

#endif
