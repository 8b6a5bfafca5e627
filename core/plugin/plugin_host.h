/* plugin_host.h: one plugin instance as the host sees it: the services table
 * handed to create(), its settings group, seeded RNG, and error plumbing. */
#ifndef PRUNUS_PLUGIN_HOST_H
#define PRUNUS_PLUGIN_HOST_H

#include "config.h"
#include "plugin_loader.h"

G_BEGIN_DECLS

/* What the pipeline lends to an instance (retrain services may be NULL). */
typedef struct {
  void *user;
  const PrunusModelView *(*model)(void *user);
  gboolean (*train)(void *user, int epochs, double lr, double offset, int total, GError **error);
  gboolean (*rewind)(void *user, int epoch, GError **error);
  gboolean (*reinit)(void *user, uint64_t seed, GError **error);
  void (*evaluate)(void *user, double *loss, double *accuracy);
  int pretrain_epochs;
  double pretrain_lr;
  /* revision 3: the next plan request (criteria and granularities), and writing a
   * layer's surviving weights (criteria; the pipeline allows it only in update()) */
  const PrunusPlanRequest *(*plan_request)(void *user);
  gboolean (*set_weights)(void *user, int layer, const float *w, GError **error);
} PrunusHostCallbacks;

/* (transfer full) Create an instance of entry with its settings in group (keys
 * other than `plugin` and those listed in host_keys belong to the plugin). The
 * RNG is seeded from seed and the plugin name. Calls the plugin's create(). */
PrunusHost *prunus_host_instantiate(const PrunusPluginEntry *entry, PrunusConfig *cfg,
                                    config_setting_t *group, const char *slot, uint64_t seed,
                                    const PrunusHostCallbacks *cb, GError **error);
/* Re-seed the instance's RNG (from seed and the plugin name): the pipeline does it
 * at the start of every round, so a resumed run draws what an uninterrupted one does. */
void prunus_host_reseed(PrunusHost *h, uint64_t seed);
/* Calls destroy() and frees. */
void prunus_host_free(PrunusHost *h);

void *prunus_host_state(PrunusHost *h);
const PrunusPluginDesc *prunus_host_desc(PrunusHost *h);
/* The plugin's file and the slot it fills ("prune.criterion"). (transfer none) */
const char *prunus_host_path(PrunusHost *h);
const char *prunus_host_slot(PrunusHost *h);
/* Bracket every call into the plugin (call: "score()"): a crash, abort or exit()
 * inside it is reported naming the plugin, its path, the call and where the run is
 * (plugin_guard.h). create() and destroy() are bracketed here already. */
void prunus_host_call_begin(PrunusHost *h, const char *call);
void prunus_host_call_end(PrunusHost *h);
/* Turn a non-zero plugin return into a GError: "<slot> plugin 'name' (path): what: reason". */
void prunus_host_set_failure(PrunusHost *h, const char *what, GError **error);
/* An error a host service raised while the plugin ran (e.g. training diverged);
 * taken (transfer full) so the plugin's failure can carry the real cause. */
GError *prunus_host_take_service_error(PrunusHost *h);

G_END_DECLS

#endif
