/* job_train.c: `prunus train` and `prunus eval`: train a config's model and write
 * the run folder (checkpoint, metrics.jsonl, summary.json); evaluate a checkpoint. */
#include "checkpoint.h"
#include "job.h"
#include "progress.h"
#include "rundir.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>

/* train rewrites its own folders (a fresh training), never another command's: the
 * summary.json of a `prunus run` folder holds rounds no rerun would give back. */
static gboolean not_a_run_folder(const char *run_dir, GError **error) {
  char *path = g_build_filename(run_dir, "summary.json", NULL);
  char *text = NULL;
  gsize len = 0;
  gboolean ok = TRUE;
  if (g_file_get_contents(path, &text, &len, NULL)) {
    PrunusJson *summary = prunus_json_parse(text, len, NULL);
    const PrunusJson *cmd = summary && prunus_json_type(summary) == PRUNUS_JSON_OBJECT
                                ? prunus_json_get(summary, "command")
                                : NULL;
    if (cmd && prunus_json_type(cmd) == PRUNUS_JSON_STRING &&
        strcmp(prunus_json_string(cmd), "train")) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                  "%s holds the results of `prunus %s`, not of `prunus train`; choose another "
                  "-o RUN_DIR or move that folder away (nothing was changed)",
                  path, prunus_json_string(cmd));
      ok = FALSE;
    }
    prunus_json_free(summary);
    g_free(text);
  }
  g_free(path);
  return ok;
}

gboolean prunus_job_train(const PrunusJobOptions *o, GError **error) {
  PrunusJob job;
  if (!prunus_job_open(&job, o, error)) return FALSE;
  prunus_job_warn_threads(o->threads);
  gboolean ok = FALSE;
  PrunusData data = {0};
  PrunusModel *m = NULL;
  PrunusJson *summary = NULL;
  GHashTable *md = NULL;
  PrunusRoundMetrics rm = {0};
  /* Pipeline groups are not this command's business. */
  config_setting_t *root = prunus_config_root(job.cfg);
  static const char *const pipeline_keys[] = {"prune", "experiments", "plugin_path",
                                              "seeds", "pretrained",  "bench"};
  for (size_t i = 0; i < G_N_ELEMENTS(pipeline_keys); i++) {
    config_setting_t *s = config_setting_get_member(root, pipeline_keys[i]);
    if (s) prunus_config_mark_read_tree(job.cfg, s);
  }
  if (!prunus_config_check_unread(job.cfg, error) || !not_a_run_folder(job.run_dir, error))
    goto out_close_job;
  if (!prunus_data_load(&job.rc, &data, error)) goto out_close_job;
  m = prunus_model_new(&job.rc.arch, job.rc.train.batch, job.rc.seed, error);
  if (!m) goto out_clear_data;
  if (!prunus_rundir_ensure(job.run_dir, error)) goto out_free_model;
  {
    char *metrics = g_build_filename(job.run_dir, "metrics.jsonl", NULL);
    g_unlink(metrics); /* a fresh training run starts a fresh log */
    g_free(metrics);
  }
  if (!prunus_rundir_write_config(job.run_dir, job.cfg, error)) goto out_free_model;
  if (!job.quiet)
    printf("prunus train: %s, %zu parameters, %d train / %d val / %d test samples -> %s\n",
           job.rc.name, m->n_params, data.train->n, data.val ? data.val->n : 0, data.test->n,
           job.run_dir);
  PrunusEpochLog log;
  prunus_epoch_log_init(&log, job.run_dir, job.rc.name, job.rc.seed, "train", job.quiet);
  PrunusTrainOptions opt = {.threads = job.threads};
  prunus_epoch_log_attach(&log, &opt);
  gint64 t0 = g_get_monotonic_time();
  if (!prunus_train(m, &job.rc.train, data.train, data.val, &data.norm, job.rc.seed, &opt, error))
    goto out_free_model;
  rm.seconds = (g_get_monotonic_time() - t0) / 1e6;
  t0 = g_get_monotonic_time();
  PrunusEvalResult test = prunus_evaluate(m, data.test, &data.norm, job.rc.train.batch);
  PrunusEvalResult val = prunus_evaluate(m, data.val, &data.norm, job.rc.train.batch);
  rm.seconds_evaluate = (g_get_monotonic_time() - t0) / 1e6;
  rm.seconds_latency = NAN; /* train measures no latency */
  t0 = g_get_monotonic_time();
  md = prunus_rundir_checkpoint_metadata(job.cfg, &job.rc, &data.norm);
  g_hash_table_insert(md, g_strdup("epoch"), g_strdup_printf("%d", job.rc.train.epochs));
  g_hash_table_insert(md, g_strdup("round"), g_strdup("0"));
  char *ckpt = g_build_filename(job.run_dir, "model.safetensors", NULL);
  ok = prunus_checkpoint_save(m, ckpt, md, error);
  rm.checkpoint_bytes = prunus_rundir_file_size(ckpt);
  rm.seconds_checkpoint = (g_get_monotonic_time() - t0) / 1e6;
  g_free(ckpt);
  if (!ok) goto out_free_md;
  uint64_t prunable = 0;
  for (int i = 0; i < m->n_layers; i++) prunable += m->layers[i].w_len;
  prunus_round_metrics_measure(&rm, m, m->n_params, prunable, prunus_model_flops(m, FALSE));
  rm.round = 0;
  rm.test_accuracy = test.accuracy, rm.test_loss = test.loss;
  rm.val_accuracy = val.accuracy, rm.val_loss = val.loss;
  rm.checkpoint = g_strdup("model.safetensors");
  summary =
      prunus_rundir_summary_new("train", o->config_path, g_hash_table_lookup(md, "config_hash"),
                                prunus_train_threads_used(job.threads));
  PrunusJson *rounds = prunus_json_new_array();
  prunus_json_array_add(rounds, prunus_round_metrics_to_json(&rm));
  prunus_json_object_set(prunus_rundir_summary_experiment(summary, job.rc.name, job.rc.seed),
                         "rounds", rounds);
  prunus_rundir_summary_set_status(summary, PRUNUS_RUN_FINISHED,
                                   NULL); /* written once, at the end */
  ok = prunus_rundir_write_json(job.run_dir, "summary.json", summary, error);
  if (ok)
    printf("%s: test_accuracy %.4f  test_loss %.4f  params %zu  train %.1fs\n", job.rc.name,
           test.accuracy, test.loss, m->n_params, rm.seconds);

  prunus_json_free(summary);
out_free_md:
  g_hash_table_unref(md);
out_free_model:
  prunus_round_metrics_clear(&rm);
  prunus_model_free(m);
out_clear_data:
  prunus_data_clear(&data);
out_close_job:
  prunus_job_close(&job);
  return ok;
}

gboolean prunus_job_eval(const char *checkpoint, const PrunusJobOptions *o, double *accuracy,
                         double *loss, GError **error) {
  PrunusJob job;
  if (!prunus_job_open_shared(&job, o, error)) return FALSE;
  gboolean ok = FALSE;
  PrunusData data = {0};
  GHashTable *md = NULL;
  PrunusModel *m = prunus_checkpoint_load(checkpoint, job.rc.train.batch, NULL, &md, error);
  if (m && prunus_job_load_data_for(&job, checkpoint, m, md, &data, error)) {
    PrunusEvalResult r = prunus_evaluate(m, data.test, &data.norm, job.rc.train.batch);
    *accuracy = r.accuracy;
    *loss = r.loss;
    ok = TRUE;
  }
  prunus_data_clear(&data);
  if (md) g_hash_table_unref(md);
  prunus_model_free(m);
  prunus_job_close(&job);
  return ok;
}
