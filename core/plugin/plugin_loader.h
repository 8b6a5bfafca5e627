/* plugin_loader.h: finds plugin shared objects on the search path, dlopens
 * them, validates their descriptors and hands out entries by kind and name. */
#ifndef PRUNUS_PLUGIN_LOADER_H
#define PRUNUS_PLUGIN_LOADER_H

#include <prunus/prunus.h>
#include <prunus/plugin.h>

G_BEGIN_DECLS

typedef struct PrunusPluginLib PrunusPluginLib;

/* One plugin: a descriptor inside a loaded library. */
typedef struct {
  /* (transfer none) The host's full-size copy of the plugin's descriptor, whose
   * ops pointer leads to a full-size copy of its ops table: members the plugin
   * was built without read as 0 / NULL (plugin.h, rule G1). Its strings and
   * functions live in the library. */
  const PrunusPluginDesc *desc;
  const char *path;   /* the library's file */
  uint32_t desc_size; /* the plugin's descriptor size (its `size`) */
  uint32_t ops_size;  /* the size of its ops table the host read from */
} PrunusPluginEntry;

/* Revision 1's sizes of the descriptor and of each kind's ops table: what a
 * plugin built against revision 1 has, the smallest the loader accepts. */
typedef struct {
  size_t desc;
  size_t ops[PRUNUS_PLUGIN_RETRAIN + 1]; /* [kind]; [0] unused */
} PrunusPluginSizes;
extern const PrunusPluginSizes prunus_plugin_sizes_r1;

typedef struct PrunusPluginRegistry PrunusPluginRegistry;

/* (transfer full) A registry whose search path is: extra_dirs (e.g. the config's
 * plugin_path, already resolved; may be NULL), then $PRUNUS_PLUGIN_PATH
 * (colon-separated), then the folder of the plugins shipped with this prunus
 * (prunus_plugin_shipped_dir). */
PrunusPluginRegistry *prunus_plugin_registry_new(const char *const *extra_dirs);
/* Unload every library in reverse load order. Every instance MUST be destroyed first. */
void prunus_plugin_registry_free(PrunusPluginRegistry *r);
/* The folders searched, in order (transfer none). */
const char *const *prunus_plugin_registry_dirs(PrunusPluginRegistry *r);

/* The plugin named name (or a path to a .so file) for a slot of kind `kind`.
 * slot is the config key for messages, e.g. "prune.criterion". Errors name the
 * path and the cause: no such plugin (listing those of the kind that exist), no
 * entry symbol, dlopen failure (dlerror), ABI mismatch (both versions), bad size,
 * invalid descriptor field, wrong kind for the slot. A name not found suggests
 * the nearest names of that kind on the search path ("did you mean"). */
const PrunusPluginEntry *prunus_plugin_registry_find(PrunusPluginRegistry *r, PrunusPluginKind kind,
                                                     const char *name, const char *slot,
                                                     GError **error);

/* Load every .so on the search path. entries gets PrunusPluginEntry* (transfer none),
 * failures gets char* messages (transfer full) for libraries that failed. */
void prunus_plugin_registry_scan(PrunusPluginRegistry *r, GPtrArray *entries, GPtrArray *failures);

const char *prunus_plugin_kind_name(PrunusPluginKind kind);

/* The plugins shipped with this prunus: the build tree's plugins folder when the
 * code runs from the build tree (libprunus, or the executable holding it, lies
 * under the build root), else the install dir. Never both: an installed prunus
 * does not load its build tree's plugins, and an uninstalled one does not load
 * the plugins of an older install. (transfer none) */
const char *prunus_plugin_shipped_dir(void);
/* Whether path is root or lies under it, comparing the resolved paths (symlinks
 * and "..") of both; FALSE when either does not exist. */
gboolean prunus_plugin_path_within(const char *path, const char *root);

G_END_DECLS

#endif
