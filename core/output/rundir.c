/* rundir.c: writes the run directory's files (metrics.jsonl appends,
 * summary.json atomically) and turns round metrics into their JSON form. */
#include "rundir.h"
#include "checkpoint.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void prunus_round_metrics_clear(PrunusRoundMetrics *r) { g_clear_pointer(&r->checkpoint, g_free); }

PrunusJson *prunus_round_metrics_to_json(const PrunusRoundMetrics *r) {
  PrunusJson *o = prunus_json_new_object();
  prunus_json_object_set(o, "round", prunus_json_new_number(r->round));
  prunus_json_object_set(o, "sparsity", prunus_json_new_number(r->sparsity));
  prunus_json_object_set(o, "params_total", prunus_json_new_number((double)r->params_total));
  prunus_json_object_set(o, "params_remaining",
                         prunus_json_new_number((double)r->params_remaining));
  prunus_json_object_set(o, "compression", prunus_json_new_number(r->compression));
  prunus_json_object_set(o, "flops", prunus_json_new_number((double)r->flops));
  prunus_json_object_set(o, "speedup_theoretical", prunus_json_new_number(r->speedup_theoretical));
  prunus_json_object_set(o, "test_accuracy", prunus_json_new_number(r->test_accuracy));
  prunus_json_object_set(o, "test_loss", prunus_json_new_number(r->test_loss));
  prunus_json_object_set(o, "val_accuracy", prunus_json_new_number(r->val_accuracy));
  prunus_json_object_set(o, "val_loss", prunus_json_new_number(r->val_loss));
  PrunusJson *lat = prunus_json_new_object();
  for (int i = 0; i < r->n_latency; i++)
    prunus_json_object_set(lat, r->latency_key[i], prunus_json_new_number(r->latency_us[i]));
  prunus_json_object_set(o, "latency_us", lat);
  prunus_json_object_set(
      o, "checkpoint",
      r->checkpoint ? prunus_json_new_string(r->checkpoint) : prunus_json_new_null());
  prunus_json_object_set(o, "checkpoint_bytes",
                         prunus_json_new_number((double)r->checkpoint_bytes));
  prunus_json_object_set(o, "seconds", prunus_json_new_number(r->seconds));
  prunus_json_object_set(o, "seconds_evaluate", prunus_json_new_number(r->seconds_evaluate));
  prunus_json_object_set(o, "seconds_latency", prunus_json_new_number(r->seconds_latency));
  prunus_json_object_set(o, "seconds_checkpoint", prunus_json_new_number(r->seconds_checkpoint));
  return o;
}

static gboolean get_number(const PrunusJson *o, const char *key, double *out) {
  const PrunusJson *v = prunus_json_get(o, key);
  if (!v) return FALSE;
  if (prunus_json_type(v) == PRUNUS_JSON_NULL)
    *out = NAN; /* NaN is written as null */
  else if (prunus_json_type(v) == PRUNUS_JSON_NUMBER)
    *out = prunus_json_number(v);
  else
    return FALSE;
  return TRUE;
}

gboolean prunus_round_metrics_from_json(const PrunusJson *o, PrunusRoundMetrics *r) {
  double round, total, remaining, flops, bytes;
  *r = (PrunusRoundMetrics){0};
  if (!o || prunus_json_type(o) != PRUNUS_JSON_OBJECT) return FALSE;
  gboolean ok =
      get_number(o, "round", &round) && get_number(o, "sparsity", &r->sparsity) &&
      get_number(o, "params_total", &total) && get_number(o, "params_remaining", &remaining) &&
      get_number(o, "compression", &r->compression) && get_number(o, "flops", &flops) &&
      get_number(o, "speedup_theoretical", &r->speedup_theoretical) &&
      get_number(o, "test_accuracy", &r->test_accuracy) &&
      get_number(o, "test_loss", &r->test_loss) &&
      get_number(o, "val_accuracy", &r->val_accuracy) && get_number(o, "val_loss", &r->val_loss) &&
      get_number(o, "checkpoint_bytes", &bytes) && get_number(o, "seconds", &r->seconds);
  if (!ok) return FALSE;
  /* summaries written before the breakdown was recorded lack these keys */
  if (!get_number(o, "seconds_evaluate", &r->seconds_evaluate)) r->seconds_evaluate = NAN;
  if (!get_number(o, "seconds_latency", &r->seconds_latency)) r->seconds_latency = NAN;
  if (!get_number(o, "seconds_checkpoint", &r->seconds_checkpoint)) r->seconds_checkpoint = NAN;
  r->round = (int)round;
  r->params_total = (uint64_t)total;
  r->params_remaining = (uint64_t)remaining;
  r->flops = (uint64_t)flops;
  r->checkpoint_bytes = (uint64_t)bytes;
  /* every finished round has its checkpoint: a round without one is not a result */
  const PrunusJson *ck = prunus_json_get(o, "checkpoint");
  if (!ck || prunus_json_type(ck) != PRUNUS_JSON_STRING || !*prunus_json_string(ck)) return FALSE;
  r->checkpoint = g_strdup(prunus_json_string(ck));
  const PrunusJson *lat = prunus_json_get(o, "latency_us");
  for (size_t i = 0; lat && prunus_json_type(lat) == PRUNUS_JSON_OBJECT &&
                     i < prunus_json_length(lat) && r->n_latency < PRUNUS_MAX_LATENCIES;
       i++) {
    const PrunusJson *v = prunus_json_member(lat, i);
    if (prunus_json_type(v) != PRUNUS_JSON_NUMBER) continue;
    g_strlcpy(r->latency_key[r->n_latency], prunus_json_key(lat, i), 32);
    r->latency_us[r->n_latency++] = prunus_json_number(v);
  }
  return TRUE;
}

void prunus_round_metrics_measure(PrunusRoundMetrics *r, const PrunusModel *m,
                                  uint64_t params_total, uint64_t prunable_total,
                                  uint64_t dense_flops) {
  uint64_t alive = 0, prunable_alive = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    for (size_t j = 0; j < l->w_len; j++) prunable_alive += m->mask[l->w_off + j] != 0.0f;
    for (size_t j = 0; j < l->b_len; j++) alive += m->mask[l->b_off + j] != 0.0f;
  }
  alive += prunable_alive;
  r->params_total = params_total;
  r->params_remaining = alive;
  r->compression = alive ? (double)params_total / alive : INFINITY;
  r->sparsity = prunable_total ? 1.0 - (double)prunable_alive / prunable_total : 0.0;
  r->flops = prunus_model_flops(m, TRUE);
  r->speedup_theoretical = r->flops ? (double)dense_flops / r->flops : INFINITY;
}

gboolean prunus_rundir_write_config(const char *dir, PrunusConfig *cfg, GError **error) {
  char *text = prunus_config_dump(cfg);
  char *path = g_build_filename(dir, "config.cfg", NULL);
  gboolean ok = g_file_set_contents(path, text, -1, error);
  g_free(path);
  g_free(text);
  return ok;
}

uint64_t prunus_rundir_file_size(const char *path) {
  GStatBuf st;
  return g_stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

gboolean prunus_rundir_ensure(const char *path, GError **error) {
  if (g_mkdir_with_parents(path, 0755) != 0) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot create run directory %s: %s", path,
                g_strerror(e));
    return FALSE;
  }
  return TRUE;
}

gboolean prunus_rundir_append_line(const char *dir, const char *name, const PrunusJson *obj,
                                   GError **error) {
  char *path = g_build_filename(dir, name, NULL);
  char *line = prunus_json_to_string(obj, 0);
  gboolean ok = FALSE;
  FILE *f = fopen(path, "a");
  if (!f) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot open %s for appending: %s", path,
                g_strerror(errno));
    goto out_free_line;
  }
  ok = fprintf(f, "%s\n", line) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
  if (fclose(f) != 0) ok = FALSE;
  if (!ok)
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write to %s: %s", path,
                g_strerror(errno));
out_free_line:
  g_free(line);
  g_free(path);
  return ok;
}

gboolean prunus_rundir_append_epoch(const char *dir, const char *experiment, uint64_t seed,
                                    int round, const PrunusEpochReport *r, GError **error) {
  PrunusJson *o = prunus_json_new_object();
  prunus_json_object_set(o, "experiment", prunus_json_new_string(experiment));
  prunus_json_object_set(o, "seed", prunus_json_new_number((double)seed));
  prunus_json_object_set(o, "round", prunus_json_new_number(round));
  prunus_json_object_set(o, "epoch", prunus_json_new_number(r->epoch));
  prunus_json_object_set(o, "train_loss", prunus_json_new_number(r->train_loss));
  prunus_json_object_set(o, "train_accuracy", prunus_json_new_number(r->train_accuracy));
  prunus_json_object_set(o, "val_loss", prunus_json_new_number(r->val_loss));
  prunus_json_object_set(o, "val_accuracy", prunus_json_new_number(r->val_accuracy));
  prunus_json_object_set(o, "lr", prunus_json_new_number(r->lr));
  prunus_json_object_set(o, "seconds", prunus_json_new_number(r->seconds));
  prunus_json_object_set(o, "samples_per_second", prunus_json_new_number(r->samples_per_second));
  gboolean ok = prunus_rundir_append_line(dir, "metrics.jsonl", o, error);
  prunus_json_free(o);
  return ok;
}

PrunusJson *prunus_rundir_summary_new(const char *command, const char *config_path,
                                      const char *config_hash, int threads) {
  PrunusJson *s = prunus_json_new_object();
  prunus_json_object_set(s, "prunus_version", prunus_json_new_string(prunus_version()));
  prunus_json_object_set(s, "command", prunus_json_new_string(command));
  prunus_json_object_set(s, "config", prunus_json_new_string(config_path));
  prunus_json_object_set(s, "config_hash", prunus_json_new_string(config_hash));
  prunus_json_object_set(s, "threads", prunus_json_new_number(threads));
  prunus_json_object_set(s, "experiments", prunus_json_new_array());
  return s;
}

PrunusJson *prunus_rundir_summary_experiment(PrunusJson *summary, const char *name, uint64_t seed) {
  PrunusJson *exps = (PrunusJson *)prunus_json_get(summary, "experiments");
  for (size_t i = 0; i < prunus_json_length(exps); i++) {
    PrunusJson *e = (PrunusJson *)prunus_json_index(exps, i);
    const PrunusJson *n = prunus_json_get(e, "name"), *s = prunus_json_get(e, "seed");
    if (n && s && prunus_json_type(n) == PRUNUS_JSON_STRING &&
        !strcmp(prunus_json_string(n), name) && prunus_json_type(s) == PRUNUS_JSON_NUMBER &&
        (uint64_t)prunus_json_number(s) == seed)
      return e;
  }
  PrunusJson *e = prunus_json_new_object();
  prunus_json_object_set(e, "name", prunus_json_new_string(name));
  prunus_json_object_set(e, "seed", prunus_json_new_number((double)seed));
  prunus_json_array_add(exps, e);
  return e;
}

GHashTable *prunus_rundir_checkpoint_metadata(PrunusConfig *cfg, const PrunusRunConfig *rc,
                                              const PrunusNorm *norm) {
  GHashTable *md = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_hash_table_insert(md, g_strdup("config_hash"), prunus_config_hash(cfg));
  g_hash_table_insert(md, g_strdup("name"), g_strdup(rc->name));
  g_hash_table_insert(md, g_strdup("seed"), g_strdup_printf("%" G_GUINT64_FORMAT, rc->seed));
  prunus_checkpoint_metadata_set_norm(md, norm);
  return md;
}

gboolean prunus_rundir_write_json(const char *dir, const char *name, const PrunusJson *v,
                                  GError **error) {
  char *path = g_build_filename(dir, name, NULL);
  char *text = prunus_json_to_string(v, 2);
  GString *s = g_string_new(text);
  g_string_append_c(s, '\n');
  GError *local = NULL;
  gboolean ok = g_file_set_contents(path, s->str, (gssize)s->len, &local);
  if (!ok)
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write %s: %s", path, local->message);
  g_clear_error(&local);
  g_string_free(s, TRUE);
  g_free(text);
  g_free(path);
  return ok;
}
