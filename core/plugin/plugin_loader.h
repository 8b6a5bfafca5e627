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
  const PrunusPluginDesc *desc;  /* (transfer none) static in the library */
  const char *path;              /* the library's file */
} PrunusPluginEntry;

typedef struct PrunusPluginRegistry PrunusPluginRegistry;

/* (transfer full) A registry whose search path is: extra_dirs (e.g. the config's
 * plugin_path, already resolved; may be NULL), then $PRUNUS_PLUGIN_PATH
 * (colon-separated), then the install dir, then the build tree. */
PrunusPluginRegistry *prunus_plugin_registry_new(const char *const *extra_dirs);
/* Unload every library in reverse load order. Every instance MUST be destroyed first. */
void prunus_plugin_registry_free(PrunusPluginRegistry *r);
/* The folders searched, in order (transfer none). */
const char *const *prunus_plugin_registry_dirs(PrunusPluginRegistry *r);

/* The plugin named name (or a path to a .so file) for a slot of kind `kind`.
 * slot is the config key for messages, e.g. "prune.criterion". Errors name the
 * path and the cause: no such plugin (listing those of the kind that exist), no
 * entry symbol, dlopen failure (dlerror), ABI mismatch (both versions), bad size,
 * invalid descriptor field, wrong kind for the slot. */
const PrunusPluginEntry *prunus_plugin_registry_find(PrunusPluginRegistry *r, PrunusPluginKind kind,
                                                     const char *name, const char *slot,
                                                     GError **error);

/* Load every .so on the search path. entries gets PrunusPluginEntry* (transfer none),
 * failures gets char* messages (transfer full) for libraries that failed. */
void prunus_plugin_registry_scan(PrunusPluginRegistry *r, GPtrArray *entries, GPtrArray *failures);

const char *prunus_plugin_kind_name(PrunusPluginKind kind);

G_END_DECLS

#endif
