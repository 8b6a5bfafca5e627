/* job_run.c: `prunus run` (the whole prune -> retrain pipeline of a config) and
 * `prunus plugins` (every plugin on the search path). */
#include "pipeline.h"

#include <glib/gstdio.h>
#include <stdio.h>

/* plugin_path = "dir" or ["dir", ...], resolved against the config's folder. */
static gboolean plugin_dirs(PrunusConfig *cfg, GPtrArray *out, GError **error) {
  config_setting_t *s = config_setting_get_member(prunus_config_root(cfg), "plugin_path");
  if (!s) return TRUE;
  prunus_config_mark_read(cfg, s);
  int n = config_setting_is_aggregate(s) ? config_setting_length(s) : 1;
  for (int i = 0; i < n; i++) {
    config_setting_t *e = config_setting_is_aggregate(s) ? config_setting_get_elem(s, (unsigned)i) : s;
    prunus_config_mark_read(cfg, e);
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
      char *where = prunus_config_where(cfg, e);
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                  "%s: plugin_path must be a folder or a list of folders (strings)", where);
      g_free(where);
      return FALSE;
    }
    g_ptr_array_add(out, prunus_config_resolve_path(cfg, config_setting_get_string(e)));
  }
  return TRUE;
}

gboolean prunus_job_run(const PrunusJobOptions *o, GError **error) {
  PrunusJob job;
  if (!prunus_job_open(&job, o, error)) return FALSE;
  gboolean ok = FALSE;
  PrunusPruneConfig pc = {0};
  PrunusData data = {0};
  PrunusPluginRegistry *reg = NULL;
  PrunusJson *summary = NULL;
  GPtrArray *dirs = g_ptr_array_new_with_free_func(g_free);
  if (!plugin_dirs(job.cfg, dirs, error)) goto out_close;
  g_ptr_array_add(dirs, NULL);
  if (!prunus_prune_config_parse(job.cfg, &job.rc.arch, &pc, error)) goto out_close;
  reg = prunus_plugin_registry_new((const char *const *)dirs->pdata);
  if (!prunus_data_load(&job.rc, &data, error)) goto out_free;
  if (!prunus_rundir_ensure(job.run_dir, error)) goto out_free;
  {
    char *metrics = g_build_filename(job.run_dir, "metrics.jsonl", NULL);
    g_unlink(metrics);
    g_free(metrics);
    char *text = prunus_config_dump(job.cfg);
    char *path = g_build_filename(job.run_dir, "config.cfg", NULL);
    gboolean written = g_file_set_contents(path, text, -1, error);
    g_free(path);
    g_free(text);
    if (!written) goto out_free;
  }
  summary = prunus_json_new_object();
  char *hash = prunus_config_hash(job.cfg);
  prunus_json_object_set(summary, "prunus_version", prunus_json_new_string(prunus_version()));
  prunus_json_object_set(summary, "command", prunus_json_new_string("run"));
  prunus_json_object_set(summary, "config", prunus_json_new_string(o->config_path));
  prunus_json_object_set(summary, "config_hash", prunus_json_new_string(hash));
  prunus_json_object_set(summary, "threads", prunus_json_new_number(o->threads));
  prunus_json_object_set(summary, "experiments", prunus_json_new_array());
  g_free(hash);
  ok = prunus_pipeline_run(&job, &data, reg, &pc, job.rc.name, summary, error);

out_free:
  prunus_json_free(summary);
  prunus_data_clear(&data);
  prunus_plugin_registry_free(reg);
out_close:
  prunus_prune_config_clear(&pc);
  g_ptr_array_free(dirs, TRUE);
  prunus_job_close(&job);
  return ok;
}

gboolean prunus_job_list_plugins(const PrunusJobOptions *o, GError **error) {
  GPtrArray *dirs = g_ptr_array_new_with_free_func(g_free);
  PrunusConfig *cfg = NULL;
  if (o && o->config_path) {
    cfg = prunus_config_load(o->config_path, error);
    if (!cfg || !plugin_dirs(cfg, dirs, error)) {
      g_clear_pointer(&cfg, prunus_config_free);
      g_ptr_array_free(dirs, TRUE);
      return FALSE;
    }
  }
  g_ptr_array_add(dirs, NULL);
  PrunusPluginRegistry *reg = prunus_plugin_registry_new((const char *const *)dirs->pdata);
  GPtrArray *entries = g_ptr_array_new();
  GPtrArray *failures = g_ptr_array_new_with_free_func(g_free);
  prunus_plugin_registry_scan(reg, entries, failures);
  printf("%-12s %-16s %-8s %s\n", "KIND", "NAME", "VERSION", "SUMMARY / PATH");
  for (int kind = PRUNUS_PLUGIN_CRITERION; kind <= PRUNUS_PLUGIN_RETRAIN; kind++) {
    for (guint i = 0; i < entries->len; i++) {
      const PrunusPluginEntry *e = g_ptr_array_index(entries, i);
      if ((int)e->desc->kind != kind) continue;
      printf("%-12s %-16s %-8s %s\n%-38s %s\n", prunus_plugin_kind_name(e->desc->kind),
             e->desc->name, e->desc->version, e->desc->summary, "", e->path);
    }
  }
  printf("\nsearched:");
  for (const char *const *d = prunus_plugin_registry_dirs(reg); *d; d++) printf(" %s", *d);
  printf("\n");
  for (guint i = 0; i < failures->len; i++)
    printf("failed to load: %s\n", (const char *)g_ptr_array_index(failures, i));
  g_ptr_array_free(failures, TRUE);
  g_ptr_array_free(entries, TRUE);
  prunus_plugin_registry_free(reg);
  g_clear_pointer(&cfg, prunus_config_free);
  g_ptr_array_free(dirs, TRUE);
  return TRUE;
}
