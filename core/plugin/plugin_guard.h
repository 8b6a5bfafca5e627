/* plugin_guard.h: names every call into a plugin for the fatal handlers (base/fatal.h),
 * so a plugin that crashes, aborts or calls exit() is named in the message: the
 * plugin, its path, the call, the experiment and the round. */
#ifndef PRUNUS_PLUGIN_GUARD_H
#define PRUNUS_PLUGIN_GUARD_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

/* Which experiment runs now: "experiment 'a'" (seed_label NULL) or "experiment 'a'
 * (seed 1)"; name NULL clears the position. The round starts as "before round 0". */
void prunus_plugin_guard_set_experiment(const char *name, const char *seed_label);
/* The round that runs now: -1 = checking the config (prepare), 0 = pretraining. */
void prunus_plugin_guard_set_round(int round);

/* A call into a plugin starts: "score() of prune.criterion plugin 'magnitude'
 * (/path/prunus-magnitude.so)". Every enter is paired with a leave. */
void prunus_plugin_guard_enter(const char *slot, const char *name, const char *path,
                               const char *call);
/* A host service runs on behalf of the plugin call around it ("the host's train()
 * service"), so a fault inside it is not blamed on the plugin alone. */
void prunus_plugin_guard_enter_service(const char *service);
void prunus_plugin_guard_leave(void);

G_END_DECLS

#endif
