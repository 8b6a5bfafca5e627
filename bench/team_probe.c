/* team_probe.c: how far apart the CPUs of a 2-thread team are, as the median round
 * trip of an empty prunus_team_run (spinning threads); prints JSON. It reads several
 * times higher when the two CPUs share no cache, and 2-thread speeds drop with it
 * (figures: docs/perf-log.md). */
#include "latency.h"
#include "team.h"

#include <glib.h>
#include <stdio.h>

static void nothing(void *arg, int part, int n_parts) { (void)arg, (void)part, (void)n_parts; }

int main(void) {
  PrunusTeam *team = prunus_team_new(2);
  if (!team) {
    fprintf(stderr, "team_probe: cannot start a team of 2 threads\n");
    return 1;
  }
  prunus_team_pin_caller(team);
  enum { WINDOWS = 9, CALLS = 20000 };
  double us[WINDOWS];
  for (int w = 0; w < WINDOWS; w++) {
    gint64 t0 = g_get_monotonic_time();
    for (int i = 0; i < CALLS; i++) prunus_team_run(team, nothing, NULL);
    us[w] = (double)(g_get_monotonic_time() - t0) / CALLS;
  }
  prunus_team_free(team);
  printf("{\"bench\":\"team_probe\",\"threads\":2,\"round_trip_us\":%.3f}\n",
         prunus_median(us, WINDOWS));
  return 0;
}
