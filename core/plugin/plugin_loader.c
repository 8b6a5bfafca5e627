/* plugin_loader.c: the plugin search path, dlopen/dlsym of the one entry
 * symbol, descriptor validation and the host's full-size copies of older,
 * smaller descriptors and ops tables, lookup by kind and name, and unloading. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include "plugin_loader.h"
#include "strdist.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#ifndef PRUNUS_PLUGIN_INSTALL_DIR
#error "PRUNUS_PLUGIN_INSTALL_DIR must be defined by the build"
#endif
#ifndef PRUNUS_PLUGIN_BUILD_DIR
#error "PRUNUS_PLUGIN_BUILD_DIR must be defined by the build"
#endif
#ifndef PRUNUS_BUILD_ROOT
#error "PRUNUS_BUILD_ROOT must be defined by the build"
#endif

/* The end of member m of T: T's size in the revision where m was its last member. */
#define END_OF(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))

const PrunusPluginSizes prunus_plugin_sizes_r1 = {
    .desc = END_OF(PrunusPluginDesc, retrain),
    .ops = {0, END_OF(PrunusCriterionOps, score), END_OF(PrunusGranularityOps, plan),
            END_OF(PrunusRetrainOps, retrain)},
};

/* What the registry keeps of one descriptor (plugin.h, G1): the entry handed
 * out, and the zeroed full-size tables the plugin's descriptor and ops table
 * were copied into, as far as the plugin had them. */
typedef struct {
  PrunusPluginEntry entry;     /* first: freed as an entry */
  const PrunusPluginDesc *raw; /* the plugin's own descriptor, as describe() returned it */
  PrunusPluginDesc desc;
  union {
    PrunusCriterionOps criterion;
    PrunusGranularityOps granularity;
    PrunusRetrainOps retrain;
  } ops;
} LoadedDesc;

struct PrunusPluginLib {
  char *path;
  void *handle;
  GPtrArray *entries; /* LoadedDesc* (as PrunusPluginEntry*) */
};

struct PrunusPluginRegistry {
  GPtrArray *dirs;    /* char*, NULL-terminated for prunus_plugin_registry_dirs */
  GPtrArray *libs;    /* PrunusPluginLib*, in load order */
  GHashTable *failed; /* path -> message of libraries that failed to load */
};

static const char *const kind_names[] = {NULL, "criterion", "granularity", "retrain"};

const char *prunus_plugin_kind_name(PrunusPluginKind kind) {
  return kind >= PRUNUS_PLUGIN_CRITERION && kind <= PRUNUS_PLUGIN_RETRAIN ? kind_names[kind]
                                                                          : "unknown";
}

/* Append dir to the search path unless it is already on it (PRUNUS_PLUGIN_PATH often
 * names the shipped folder too): each folder is scanned, and named in errors, once. */
static void registry_add_dir(PrunusPluginRegistry *r, const char *dir) {
  for (guint i = 0; i < r->dirs->len; i++)
    if (g_strcmp0(g_ptr_array_index(r->dirs, i), dir) == 0) return;
  g_ptr_array_add(r->dirs, g_strdup(dir));
}

PrunusPluginRegistry *prunus_plugin_registry_new(const char *const *extra_dirs) {
  PrunusPluginRegistry *r = g_new0(PrunusPluginRegistry, 1);
  r->dirs = g_ptr_array_new_with_free_func(g_free);
  r->libs = g_ptr_array_new();
  r->failed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  for (const char *const *d = extra_dirs; d && *d; d++) registry_add_dir(r, *d);
  const char *env = g_getenv("PRUNUS_PLUGIN_PATH");
  if (env && *env) {
    char **parts = g_strsplit(env, ":", -1);
    for (char **p = parts; *p; p++)
      if (**p) registry_add_dir(r, *p);
    g_strfreev(parts);
  }
  registry_add_dir(r, prunus_plugin_shipped_dir());
  g_ptr_array_add(r->dirs, NULL);
  return r;
}

gboolean prunus_plugin_path_within(const char *path, const char *root) {
  char *p = realpath(path, NULL), *q = realpath(root, NULL);
  gboolean within = FALSE;
  if (p && q) {
    size_t n = strlen(q);
    /* "/" as root ends in the separator already */
    within = !strncmp(p, q, n) && (p[n] == '\0' || p[n] == '/' || (n > 0 && q[n - 1] == '/'));
  }
  free(p);
  free(q);
  return within;
}

/* Decided once per process: where the running code lives does not change. The
 * object holding this function is libprunus, or the executable it was linked
 * into statically; /proc/self/exe covers an executable whose dladdr name is not
 * a usable path (argv[0]). An installed libprunus looks beside itself first
 * (<libdir>/prunus/plugins, the layout `meson install` makes), so a prefix staged
 * with DESTDIR or moved elsewhere finds its own plugins, not the configured
 * prefix's. */
const char *prunus_plugin_shipped_dir(void) {
  static gsize dir; /* const char *, set once, never freed */
  if (g_once_init_enter(&dir)) {
    const char *lib = NULL;
    Dl_info info;
    if (dladdr((void *)prunus_plugin_shipped_dir, &info) && info.dli_fname &&
        g_path_is_absolute(info.dli_fname))
      lib = info.dli_fname;
    gboolean uninstalled = (lib && prunus_plugin_path_within(lib, PRUNUS_BUILD_ROOT)) ||
                           prunus_plugin_path_within("/proc/self/exe", PRUNUS_BUILD_ROOT);
    char *found = NULL;
    if (uninstalled) {
      found = g_strdup(PRUNUS_PLUGIN_BUILD_DIR);
    } else if (lib && strstr(lib, "/libprunus.so")) {
      /* canonical: the loader names it through the RUNPATH ($ORIGIN/../lib/...) */
      char *real = realpath(lib, NULL);
      char *libdir = g_path_get_dirname(real ? real : lib);
      free(real);
      char *beside = g_build_filename(libdir, "prunus", "plugins", NULL);
      if (g_file_test(beside, G_FILE_TEST_IS_DIR)) found = g_steal_pointer(&beside);
      g_free(beside);
      g_free(libdir);
    }
    if (!found) found = g_strdup(PRUNUS_PLUGIN_INSTALL_DIR);
    g_once_init_leave(&dir, (gsize)found);
  }
  return (const char *)dir;
}

static void lib_unload(PrunusPluginLib *lib) {
  if (lib->handle) dlclose(lib->handle);
  g_ptr_array_free(lib->entries, TRUE);
  g_free(lib->path);
  g_free(lib);
}

void prunus_plugin_registry_free(PrunusPluginRegistry *r) {
  if (!r) return;
  for (guint i = r->libs->len; i > 0; i--) lib_unload(g_ptr_array_index(r->libs, i - 1));
  g_ptr_array_free(r->libs, TRUE);
  g_ptr_array_free(r->dirs, TRUE);
  g_hash_table_unref(r->failed);
  g_free(r);
}

const char *const *prunus_plugin_registry_dirs(PrunusPluginRegistry *r) {
  return (const char *const *)r->dirs->pdata;
}

static gboolean valid_name(const char *name) {
  if (!name || !*name) return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_islower(*p) && !g_ascii_isdigit(*p) && *p != '-' && *p != '_') return FALSE;
  return TRUE;
}

static const char *const ops_type[] = {NULL, "PrunusCriterionOps", "PrunusGranularityOps",
                                       "PrunusRetrainOps"};

/* Copy the plugin's descriptor raw into out (plugin.h, G1): the first
 * raw->size bytes into a zeroed full-size descriptor, then its ops table's first
 * ops_size bytes into a zeroed full-size table that out's ops member points to,
 * checking every field on the way. On failure set error naming path, index,
 * field and, for sizes and versions, both numbers. */
static gboolean desc_load(const PrunusPluginDesc *raw, const char *path, guint index,
                          LoadedDesc *out, GError **error) {
#define DESC_FAIL(...)                                                                          \
  do {                                                                                          \
    char *why_ = g_strdup_printf(__VA_ARGS__);                                                  \
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN, "%s: descriptor %u: %s", path, index, \
                why_);                                                                          \
    g_free(why_);                                                                               \
    return FALSE;                                                                               \
  } while (0)
  /* abi_version and size are the first 8 bytes of every revision */
  if (raw->abi_version != PRUNUS_PLUGIN_ABI_VERSION)
    DESC_FAIL(
        "ABI version mismatch (field 'abi_version'): the plugin was built for ABI %u, "
        "this prunus (%s) loads ABI %u (plugins of any revision of it); rebuild the "
        "plugin against this prunus's plugin.h",
        raw->abi_version, prunus_version(), PRUNUS_PLUGIN_ABI_VERSION);
  if (raw->size < prunus_plugin_sizes_r1.desc)
    DESC_FAIL(
        "field 'size' = %u is smaller than the %zu bytes of a revision-1 descriptor, the "
        "smallest this prunus (ABI %u, revision %u) loads",
        raw->size, prunus_plugin_sizes_r1.desc, PRUNUS_PLUGIN_ABI_VERSION, PRUNUS_PLUGIN_REVISION);
  PrunusPluginDesc *d = &out->desc;
  memset(d, 0, sizeof *d);
  memcpy(d, raw, MIN((size_t)raw->size, sizeof *d));
  out->entry.desc = d;
  out->entry.desc_size = raw->size;
  if (d->kind < PRUNUS_PLUGIN_CRITERION || d->kind > PRUNUS_PLUGIN_RETRAIN)
    DESC_FAIL("field 'kind' = %d is not a plugin kind (1 criterion, 2 granularity, 3 retrain)",
              (int)d->kind);
  if (!valid_name(d->name))
    DESC_FAIL("field 'name' = %s%s%s is invalid: expected lowercase letters, digits, '-' or '_'",
              d->name ? "'" : "", d->name ? d->name : "NULL", d->name ? "'" : "");
  if (!d->version || !*d->version) DESC_FAIL("plugin '%s': field 'version' is empty", d->name);
  if (!d->summary || !*d->summary) DESC_FAIL("plugin '%s': field 'summary' is empty", d->name);
  if (!d->create) DESC_FAIL("plugin '%s': field 'create' is NULL", d->name);
  const void *ops[] = {NULL, d->criterion, d->granularity, d->retrain};
  for (int k = PRUNUS_PLUGIN_CRITERION; k <= PRUNUS_PLUGIN_RETRAIN; k++) {
    if (k == (int)d->kind && !ops[k])
      DESC_FAIL("plugin '%s' is a %s plugin but its field '%s' (the ops table) is NULL", d->name,
                kind_names[k], kind_names[k]);
    if (k != (int)d->kind && ops[k])
      DESC_FAIL("plugin '%s' is a %s plugin but also sets field '%s'", d->name, kind_names[d->kind],
                kind_names[k]);
  }
  /* ops_size: 0 when the descriptor predates it or the plugin left it unset */
  const size_t r1_ops = prunus_plugin_sizes_r1.ops[d->kind];
  const size_t ops_size = d->ops_size ? d->ops_size : r1_ops;
  if (ops_size < r1_ops)
    DESC_FAIL(
        "plugin '%s': field 'ops_size' = %u is smaller than the %zu bytes of a "
        "revision-1 %s",
        d->name, d->ops_size, r1_ops, ops_type[d->kind]);
  out->entry.ops_size = (uint32_t)ops_size;
  memset(&out->ops, 0, sizeof out->ops);
  switch (d->kind) {
  case PRUNUS_PLUGIN_CRITERION:
    memcpy(&out->ops.criterion, d->criterion, MIN(ops_size, sizeof out->ops.criterion));
    d->criterion = &out->ops.criterion;
    if (!d->criterion->needs || !d->criterion->produces || !d->criterion->score)
      DESC_FAIL("plugin '%s': criterion ops 'needs', 'produces' and 'score' are required", d->name);
    break;
  case PRUNUS_PLUGIN_GRANULARITY:
    memcpy(&out->ops.granularity, d->granularity, MIN(ops_size, sizeof out->ops.granularity));
    d->granularity = &out->ops.granularity;
    if (!d->granularity->accepts || !d->granularity->plan)
      DESC_FAIL("plugin '%s': granularity ops 'accepts' and 'plan' are required", d->name);
    break;
  case PRUNUS_PLUGIN_RETRAIN:
    memcpy(&out->ops.retrain, d->retrain, MIN(ops_size, sizeof out->ops.retrain));
    d->retrain = &out->ops.retrain;
    if (!d->retrain->retrain) DESC_FAIL("plugin '%s': retrain op 'retrain' is required", d->name);
    break;
  }
#undef DESC_FAIL
  return TRUE;
}

/* dlopen path (once) and read its descriptors. */
static PrunusPluginLib *lib_load(PrunusPluginRegistry *r, const char *path, GError **error) {
  for (guint i = 0; i < r->libs->len; i++) {
    PrunusPluginLib *lib = g_ptr_array_index(r->libs, i);
    if (!strcmp(lib->path, path)) return lib;
  }
  const char *failed = g_hash_table_lookup(r->failed, path);
  if (failed) {
    g_set_error_literal(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN, failed);
    return NULL;
  }
  GError *local = NULL;
  PrunusPluginLib *lib = NULL;
  dlerror();
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = dlerror();
    g_set_error(&local, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN, "%s: cannot load: %s", path,
                why ? why : "unknown dlopen error");
    goto out_fail;
  }
  dlerror();
  PrunusPluginDescribeFn describe =
      (PrunusPluginDescribeFn)dlsym(handle, PRUNUS_PLUGIN_ENTRY_SYMBOL);
  if (!describe) {
    const char *why = dlerror();
    g_set_error(&local, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                "%s: no entry symbol '%s' (%s); a plugin defines a function of exactly that "
                "name (plugin.h declares it, exported) and returns its descriptors from it",
                path, PRUNUS_PLUGIN_ENTRY_SYMBOL, why ? why : "not found");
    dlclose(handle);
    goto out_fail;
  }
  lib = g_new0(PrunusPluginLib, 1);
  lib->path = g_strdup(path);
  lib->handle = handle;
  lib->entries = g_ptr_array_new_with_free_func(g_free);
  for (guint i = 0; i < 256; i++) {
    const PrunusPluginDesc *d = describe(i);
    if (!d) break;
    /* an entry point that ignores index would list one plugin 256 times */
    for (guint k = 0; k < lib->entries->len; k++) {
      const PrunusPluginDesc *seen = ((LoadedDesc *)g_ptr_array_index(lib->entries, k))->raw;
      if (seen == d) {
        g_set_error(&local, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                    "%s: %s(%u) returned the same descriptor as %s(%u); it must return each "
                    "descriptor once, then NULL past the last",
                    path, PRUNUS_PLUGIN_ENTRY_SYMBOL, i, PRUNUS_PLUGIN_ENTRY_SYMBOL, k);
        lib_unload(lib);
        lib = NULL;
        goto out_fail;
      }
    }
    LoadedDesc *e = g_new0(LoadedDesc, 1);
    if (!desc_load(d, path, i, e, &local)) {
      g_free(e);
      lib_unload(lib);
      lib = NULL;
      goto out_fail;
    }
    e->entry.path = lib->path;
    e->raw = d;
    g_ptr_array_add(lib->entries, e);
  }
  if (lib->entries->len == 0) {
    g_set_error(&local, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN, "%s: %s(0) returned no descriptor", path,
                PRUNUS_PLUGIN_ENTRY_SYMBOL);
    lib_unload(lib);
    lib = NULL;
    goto out_fail;
  }
  g_ptr_array_add(r->libs, lib);
  return lib;

out_fail:
  g_hash_table_insert(r->failed, g_strdup(path), g_strdup(local->message));
  g_propagate_error(error, local);
  return NULL;
}

static gint compare_strings(gconstpointer a, gconstpointer b) {
  return g_strcmp0(*(const char *const *)a, *(const char *const *)b);
}

/* Every .so under dir and its direct subfolders (depth levels), sorted. */
static void list_libraries(const char *dir, int depth, GPtrArray *out) {
  GDir *d = g_dir_open(dir, 0, NULL);
  if (!d) return;
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(d))) g_ptr_array_add(names, g_strdup(name));
  g_dir_close(d);
  g_ptr_array_sort(names, compare_strings);
  for (guint i = 0; i < names->len; i++) {
    const char *n = g_ptr_array_index(names, i);
    char *path = g_build_filename(dir, n, NULL);
    if (g_str_has_suffix(n, ".so") && g_file_test(path, G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add(out, path);
    else if (depth > 0 && g_file_test(path, G_FILE_TEST_IS_DIR))
      list_libraries(path, depth - 1, out), g_free(path);
    else
      g_free(path);
  }
  g_ptr_array_free(names, TRUE);
}

void prunus_plugin_registry_scan(PrunusPluginRegistry *r, GPtrArray *entries, GPtrArray *failures) {
  for (guint i = 0; i + 1 < r->dirs->len; i++) {
    GPtrArray *paths = g_ptr_array_new_with_free_func(g_free);
    list_libraries(g_ptr_array_index(r->dirs, i), 1, paths);
    g_ptr_array_sort(paths, compare_strings);
    for (guint j = 0; j < paths->len; j++) {
      GError *error = NULL;
      PrunusPluginLib *lib = lib_load(r, g_ptr_array_index(paths, j), &error);
      if (!lib) {
        if (failures) g_ptr_array_add(failures, g_strdup(error->message));
        g_error_free(error);
        continue;
      }
      for (guint k = 0; entries && k < lib->entries->len; k++) {
        PrunusPluginEntry *e = g_ptr_array_index(lib->entries, k);
        gboolean seen = FALSE;
        for (guint q = 0; q < entries->len; q++)
          seen |= g_ptr_array_index(entries, q) == (gpointer)e;
        if (!seen) g_ptr_array_add(entries, e);
      }
    }
    g_ptr_array_free(paths, TRUE);
  }
}

static const PrunusPluginEntry *lib_find(PrunusPluginLib *lib, const char *name) {
  for (guint i = 0; i < lib->entries->len; i++) {
    PrunusPluginEntry *e = g_ptr_array_index(lib->entries, i);
    if (!strcmp(e->desc->name, name)) return e;
  }
  return NULL;
}

/* "; did you mean 'rewind'?" (or "'a' or 'b'") naming the plugins of kind in
 * entries nearest to name, within 1 edit for short names and 2 from 6
 * characters on; "" when none is that near. (transfer full) */
static char *did_you_mean(GPtrArray *entries, PrunusPluginKind kind, const char *name) {
  const guint limit = prunus_edit_distance_hint_limit(name);
  guint best = G_MAXUINT;
  for (guint i = 0; i < entries->len; i++) {
    const PrunusPluginEntry *e = g_ptr_array_index(entries, i);
    if (e->desc->kind == kind) best = MIN(best, prunus_edit_distance(name, e->desc->name));
  }
  if (best > limit) return g_strdup("");
  GPtrArray *near = g_ptr_array_new();
  for (guint i = 0; i < entries->len; i++) {
    const PrunusPluginEntry *e = g_ptr_array_index(entries, i);
    if (e->desc->kind != kind || prunus_edit_distance(name, e->desc->name) != best) continue;
    gboolean seen = FALSE;
    for (guint k = 0; k < near->len; k++) seen |= !strcmp(near->pdata[k], e->desc->name);
    if (!seen) g_ptr_array_add(near, (gpointer)e->desc->name);
  }
  GString *hint = g_string_new("; did you mean ");
  for (guint k = 0; k < near->len; k++)
    g_string_append_printf(hint, "%s'%s'",
                           k == 0               ? ""
                           : k + 1 == near->len ? " or "
                                                : ", ",
                           (const char *)near->pdata[k]);
  g_string_append_c(hint, '?');
  g_ptr_array_free(near, TRUE);
  return g_string_free(hint, FALSE);
}

static gboolean check_kind(const PrunusPluginEntry *e, PrunusPluginKind kind, const char *slot,
                           GError **error) {
  if (e->desc->kind == kind) return TRUE;
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
              "%s: plugin '%s' (%s) is a %s plugin, but %s needs a %s plugin", slot, e->desc->name,
              e->path, prunus_plugin_kind_name(e->desc->kind), slot, prunus_plugin_kind_name(kind));
  return FALSE;
}

const PrunusPluginEntry *prunus_plugin_registry_find(PrunusPluginRegistry *r, PrunusPluginKind kind,
                                                     const char *name, const char *slot,
                                                     GError **error) {
  GError *local = NULL;
  /* A path names one library directly. */
  if (strchr(name, '/') || g_str_has_suffix(name, ".so")) {
    PrunusPluginLib *lib = lib_load(r, name, &local);
    if (!lib) {
      g_propagate_prefixed_error(error, local, "%s: ", slot);
      return NULL;
    }
    for (guint i = 0; i < lib->entries->len; i++) {
      PrunusPluginEntry *e = g_ptr_array_index(lib->entries, i);
      if (e->desc->kind == kind) return e;
    }
    PrunusPluginEntry *first = g_ptr_array_index(lib->entries, 0);
    check_kind(first, kind, slot, error);
    return NULL;
  }
  /* By convention prunus-NAME.so holds NAME: try those first, in search order,
   * so a broken library elsewhere does not stand in the way. */
  char *file = g_strdup_printf("prunus-%s.so", name);
  for (guint i = 0; i + 1 < r->dirs->len; i++) {
    GPtrArray *paths = g_ptr_array_new_with_free_func(g_free);
    list_libraries(g_ptr_array_index(r->dirs, i), 1, paths);
    g_ptr_array_sort(paths, compare_strings);
    /* keep the copies of prunus-NAME.so in this folder and its subfolders: two of them
     * leave which one is meant to the sort order, so that is refused */
    for (guint j = paths->len; j-- > 0;) {
      char *base = g_path_get_basename(g_ptr_array_index(paths, j));
      if (strcmp(base, file)) g_ptr_array_remove_index(paths, j);
      g_free(base);
    }
    if (paths->len > 1) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                  "%s = \"%s\": %s holds %u libraries named %s (%s and %s%s); keep one, or name "
                  "the one you mean by its path",
                  slot, name, (const char *)g_ptr_array_index(r->dirs, i), paths->len, file,
                  (const char *)g_ptr_array_index(paths, 0),
                  (const char *)g_ptr_array_index(paths, 1), paths->len > 2 ? ", ..." : "");
      g_ptr_array_free(paths, TRUE);
      g_free(file);
      return NULL;
    }
    for (guint j = 0; j < paths->len; j++) {
      const char *p = g_ptr_array_index(paths, j);
      PrunusPluginLib *lib = lib_load(r, p, &local);
      if (!lib) {
        g_propagate_prefixed_error(error, local, "%s = \"%s\": ", slot, name);
        g_ptr_array_free(paths, TRUE);
        g_free(file);
        return NULL;
      }
      const PrunusPluginEntry *e = lib_find(lib, name);
      if (e) {
        g_ptr_array_free(paths, TRUE);
        g_free(file);
        return check_kind(e, kind, slot, error) ? e : NULL;
      }
    }
    g_ptr_array_free(paths, TRUE);
  }
  g_free(file);
  /* Then any library on the path that carries a plugin of that name. */
  GPtrArray *entries = g_ptr_array_new();
  GPtrArray *failures = g_ptr_array_new_with_free_func(g_free);
  prunus_plugin_registry_scan(r, entries, failures);
  const PrunusPluginEntry *found = NULL;
  for (guint i = 0; i < entries->len && !found; i++) {
    PrunusPluginEntry *e = g_ptr_array_index(entries, i);
    if (!strcmp(e->desc->name, name) && e->desc->kind == kind) found = e;
  }
  for (guint i = 0; i < entries->len && !found; i++) {
    PrunusPluginEntry *e = g_ptr_array_index(entries, i);
    if (!strcmp(e->desc->name, name)) {
      check_kind(e, kind, slot, error);
      goto out_free_lists;
    }
  }
  if (!found) {
    GString *known = g_string_new(NULL);
    for (guint i = 0; i < entries->len; i++) {
      PrunusPluginEntry *e = g_ptr_array_index(entries, i);
      if (e->desc->kind != kind) continue;
      g_string_append_printf(known, "%s%s", known->len ? ", " : "", e->desc->name);
    }
    char *dirs = g_strjoinv(":", (char **)r->dirs->pdata);
    char *hint = did_you_mean(entries, kind, name);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN,
                "%s: no %s plugin named '%s'%s (available: %s; searched %s)%s%s", slot,
                prunus_plugin_kind_name(kind), name, hint, known->len ? known->str : "none", dirs,
                failures->len ? "; libraries that failed to load: " : "",
                failures->len ? (const char *)g_ptr_array_index(failures, 0) : "");
    g_free(hint);
    g_free(dirs);
    g_string_free(known, TRUE);
  }
out_free_lists:
  g_ptr_array_free(failures, TRUE);
  g_ptr_array_free(entries, TRUE);
  return found;
}
