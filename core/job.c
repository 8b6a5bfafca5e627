/* job.c: opens a job from command-line options (config, overrides, threads,
 * run folder); shared by train, eval and run. */
#include "job.h"
#include "gemm.h"

gboolean prunus_job_open(PrunusJob *job, const PrunusJobOptions *o, GError **error) {
  return prunus_job_open_with(job, o, NULL, NULL, error);
}

gboolean prunus_job_open_with(PrunusJob *job, const PrunusJobOptions *o, PrunusJobPrepareFn prepare,
                              void *user, GError **error) {
  *job = (PrunusJob){0};
  job->quiet = o->quiet;
  job->cfg = prunus_config_load(o->config_path, error);
  if (!job->cfg) return FALSE;
  for (const char *const *set = o->overrides; set && *set; set++) {
    if (!prunus_config_apply_set(job->cfg, *set, error)) goto out_close;
  }
  if (prepare && !prepare(job->cfg, user, error)) goto out_close;
  if (!prunus_run_config_parse(job->cfg, &job->rc, error)) goto out_close;
  if (o->threads < 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID, "--threads must be >= 1, found %d",
                o->threads);
    goto out_close;
  }
  if (o->threads > 0) prunus_set_threads(o->threads);
  job->run_dir = o->run_dir ? g_strdup(o->run_dir) : g_build_filename("runs", job->rc.name, NULL);
  return TRUE;

out_close:
  prunus_job_close(job);
  return FALSE;
}

void prunus_job_close(PrunusJob *job) {
  if (job->cfg) prunus_run_config_clear(&job->rc);
  g_clear_pointer(&job->cfg, prunus_config_free);
  g_clear_pointer(&job->run_dir, g_free);
}

GHashTable *prunus_job_checkpoint_metadata(PrunusJob *job) {
  GHashTable *md = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_hash_table_insert(md, g_strdup("config_hash"), prunus_config_hash(job->cfg));
  g_hash_table_insert(md, g_strdup("name"), g_strdup(job->rc.name));
  g_hash_table_insert(md, g_strdup("seed"), g_strdup_printf("%" G_GUINT64_FORMAT, job->rc.seed));
  return md;
}
