/* plugin_guard.c: formats the text of each plugin call and of the run's position and
 * hands it to base/fatal.c before the call, where a signal handler can print it. */
#include "plugin_guard.h"
#include "fatal.h"

static char *experiment; /* "experiment 'a'" or NULL */
static int round_now = -1;

static void update_where(void) {
  if (!experiment) {
    prunus_fatal_set_where(NULL);
    return;
  }
  char *where;
  if (round_now < 0)
    where = g_strdup_printf("%s, before round 0", experiment);
  else if (round_now == 0)
    where = g_strdup_printf("%s, round 0 (pretraining)", experiment);
  else
    where = g_strdup_printf("%s, round %d", experiment, round_now);
  prunus_fatal_set_where(where);
  g_free(where);
}

void prunus_plugin_guard_set_experiment(const char *name, const char *seed_label) {
  g_clear_pointer(&experiment, g_free);
  if (name)
    experiment = seed_label ? g_strdup_printf("experiment '%s' (%s)", name, seed_label)
                            : g_strdup_printf("experiment '%s'", name);
  round_now = -1;
  update_where();
}

void prunus_plugin_guard_set_round(int round) {
  round_now = round;
  update_where();
}

void prunus_plugin_guard_enter(const char *slot, const char *name, const char *path,
                               const char *call) {
  char *what = g_strdup_printf("%s of %s plugin '%s' (%s)", call, slot, name, path);
  prunus_fatal_push(what);
  g_free(what);
}

void prunus_plugin_guard_enter_service(const char *service) {
  char *what = g_strdup_printf("the host's %s service", service);
  prunus_fatal_push(what);
  g_free(what);
}

void prunus_plugin_guard_leave(void) { prunus_fatal_pop(); }
