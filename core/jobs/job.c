/* job.c: opens a job from command-line options (config, overrides, threads,
 * run folder); shared by train, eval and run. */
#include "job.h"
#include "checkpoint.h"
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
  if (o->run_dir && !o->run_dir[0]) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID, "-o: an empty path; give a folder");
    goto out_close;
  }
  if (o->threads < 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID, "--threads must be >= 1, found %d",
                o->threads);
    goto out_close;
  }
  if (o->threads > 0) prunus_set_threads(o->threads);
  job->threads = o->threads > 0 ? o->threads : prunus_get_threads(); /* 0: OpenBLAS's default */
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

gboolean prunus_job_open_shared(PrunusJob *job, const PrunusJobOptions *o, GError **error) {
  if (!prunus_job_open(job, o, error)) return FALSE;
  /* the groups only `run` reads are not checked here (a run config evaluates as is);
   * anything else unknown at the top is an error, as in train and run */
  static const char *const run_only[] = {"prune", "experiments", "seeds", "plugin_path"};
  config_setting_t *root = prunus_config_root(job->cfg);
  for (size_t i = 0; i < G_N_ELEMENTS(run_only); i++) {
    config_setting_t *s = config_setting_get_member(root, run_only[i]);
    if (s) prunus_config_mark_read_tree(job->cfg, s);
  }
  if (prunus_config_check_unread(job->cfg, error)) return TRUE;
  prunus_job_close(job);
  return FALSE;
}

gboolean prunus_job_load_data_for(PrunusJob *job, const char *checkpoint, const PrunusModel *m,
                                  GHashTable *metadata, PrunusData *data, GError **error) {
  PrunusNorm norm;
  gboolean has_norm;
  if (!prunus_checkpoint_metadata_norm(metadata, checkpoint, &norm, &has_norm, error)) return FALSE;
  if (prunus_shape_size(m->arch.input) != prunus_shape_size(job->rc.arch.input)) {
    char *arch = prunus_arch_to_string(&m->arch);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "%s takes %dx%dx%d inputs (%s) but %s's model.input is [%d, %d, %d]", checkpoint,
                m->arch.input.c, m->arch.input.h, m->arch.input.w, arch,
                prunus_config_path(job->cfg), job->rc.arch.input.c, job->rc.arch.input.h,
                job->rc.arch.input.w);
    g_free(arch);
    return FALSE;
  }
  /* what the checkpoint carries wins over the config, said when they differ: another
   * sequence of layer types (a pruned round's layer sizes differ as a rule) */
  gboolean other_net = m->arch.n_layers != job->rc.arch.n_layers;
  for (int i = 0; !other_net && i < m->arch.n_layers; i++)
    other_net = m->arch.layers[i].type != job->rc.arch.layers[i].type;
  if (other_net) {
    char *theirs = prunus_arch_to_string(&m->arch), *mine = prunus_arch_to_string(&job->rc.arch);
    fprintf(stderr,
            "prunus: note: %s holds the network %s, which is used; %s's model (%s) is not\n",
            checkpoint, theirs, prunus_config_path(job->cfg), mine);
    g_free(theirs), g_free(mine);
  }
  if (has_norm && norm.kind != job->rc.normalize)
    fprintf(stderr,
            "prunus: note: %s was trained with dataset.normalize = \"%s\", which is used; %s's "
            "\"%s\" is not\n",
            checkpoint, prunus_norm_kind_names[norm.kind], prunus_config_path(job->cfg),
            prunus_norm_kind_names[job->rc.normalize]);
  job->rc.arch.n_classes = m->arch.n_classes;
  if (!has_norm) /* an older checkpoint: fit it again on the training split */
    return prunus_data_load(&job->rc, data, error);
  if (!prunus_data_load_test(&job->rc, data, error)) return FALSE;
  data->norm = norm;
  return TRUE;
}

void prunus_job_warn_threads(int threads) {
  if (threads > prunus_train_threads_used(threads))
    fprintf(stderr,
            "warning: --threads %d: training splits its work over at most %d threads; the "
            "rest (evaluation, OpenBLAS) gets %d\n",
            threads, prunus_train_threads_used(threads), threads);
}
