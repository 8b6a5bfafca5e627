/* rundir.c: writes the run directory's files (metrics.jsonl appends,
 * summary.json atomically, with the run's status and the plugin builds) and turns
 * round metrics into their JSON form; owns the run folder's lock. */
#include "rundir.h"
#include "checkpoint.h"
#include "fatal.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const prunus_rundir_slots[PRUNUS_RUNDIR_N_SLOTS] = {"criterion", "granularity",
                                                                "retrain"};

void prunus_round_metrics_clear(PrunusRoundMetrics *r) { g_clear_pointer(&r->checkpoint, g_free); }

gboolean prunus_rundir_file_sha256(const char *path, char out[65]) {
  out[0] = '\0';
  GMappedFile *f = g_mapped_file_new(path, FALSE, NULL);
  if (!f) return FALSE;
  char *sha =
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)g_mapped_file_get_contents(f),
                                  g_mapped_file_get_length(f));
  g_mapped_file_unref(f);
  g_strlcpy(out, sha, 65);
  g_free(sha);
  return TRUE;
}

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
  if (r->checkpoint_hash[0])
    prunus_json_object_set(o, "checkpoint_hash", prunus_json_new_string(r->checkpoint_hash));
  if (r->theta_hash[0])
    prunus_json_object_set(o, "theta_hash", prunus_json_new_string(r->theta_hash));
  prunus_json_object_set(o, "seconds", prunus_json_new_number(r->seconds));
  prunus_json_object_set(o, "seconds_evaluate", prunus_json_new_number(r->seconds_evaluate));
  prunus_json_object_set(o, "seconds_latency", prunus_json_new_number(r->seconds_latency));
  prunus_json_object_set(o, "seconds_checkpoint", prunus_json_new_number(r->seconds_checkpoint));
  if (r->has_request)
    prunus_json_object_set(o, "requested_sparsity", prunus_json_new_number(r->requested_sparsity));
  PrunusJson *sha = NULL;
  for (int k = 0; k < PRUNUS_RUNDIR_N_SLOTS; k++) {
    if (!r->plugin_sha256[k][0]) continue;
    if (!sha) sha = prunus_json_new_object();
    prunus_json_object_set(sha, prunus_rundir_slots[k],
                           prunus_json_new_string(r->plugin_sha256[k]));
  }
  if (sha) prunus_json_object_set(o, "plugins_sha256", sha);
  return o;
}

/* a string of `digits` lower-case hex digits */
static gboolean is_hex(const char *s, size_t digits) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!g_ascii_isxdigit(s[n]) || g_ascii_isupper(s[n])) return FALSE;
  return n == digits;
}

static gboolean is_sha256(const char *s) { return is_hex(s, 64); }

static void read_plugin_sha256(const PrunusJson *o, PrunusRoundMetrics *r) {
  const PrunusJson *sha = prunus_json_get(o, "plugins_sha256");
  if (!sha || prunus_json_type(sha) != PRUNUS_JSON_OBJECT) return;
  for (int k = 0; k < PRUNUS_RUNDIR_N_SLOTS; k++) {
    const PrunusJson *v = prunus_json_get(sha, prunus_rundir_slots[k]);
    if (v && prunus_json_type(v) == PRUNUS_JSON_STRING && is_sha256(prunus_json_string(v)))
      g_strlcpy(r->plugin_sha256[k], prunus_json_string(v), sizeof r->plugin_sha256[k]);
  }
}

void prunus_round_metrics_stamp_plugins(PrunusRoundMetrics *r, const PrunusJson *exp_json) {
  const PrunusJson *plugins = prunus_json_get(exp_json, "plugins");
  if (plugins && prunus_json_type(plugins) != PRUNUS_JSON_OBJECT) plugins = NULL;
  for (int k = 0; k < PRUNUS_RUNDIR_N_SLOTS; k++) {
    const PrunusJson *rec = plugins ? prunus_json_get(plugins, prunus_rundir_slots[k]) : NULL;
    if (rec && prunus_json_type(rec) != PRUNUS_JSON_OBJECT) rec = NULL;
    const PrunusJson *v = rec ? prunus_json_get(rec, "sha256") : NULL;
    r->plugin_sha256[k][0] = '\0';
    if (v && prunus_json_type(v) == PRUNUS_JSON_STRING && is_sha256(prunus_json_string(v)))
      g_strlcpy(r->plugin_sha256[k], prunus_json_string(v), sizeof r->plugin_sha256[k]);
  }
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
  /* counts are whole and in range: a cast of anything else is undefined */
  if (!(round >= 0 && round <= G_MAXINT && round == floor(round)) ||
      !(total >= 0 && total < 0x1p63) || !(remaining >= 0 && remaining < 0x1p63) ||
      !(flops >= 0 && flops < 0x1p63) || !(bytes >= 0 && bytes < 0x1p63))
    return FALSE;
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
  r->has_request = get_number(o, "requested_sparsity", &r->requested_sparsity);
  const PrunusJson *lat = prunus_json_get(o, "latency_us");
  for (size_t i = 0; lat && prunus_json_type(lat) == PRUNUS_JSON_OBJECT &&
                     i < prunus_json_length(lat) && r->n_latency < PRUNUS_MAX_LATENCIES;
       i++) {
    const PrunusJson *v = prunus_json_member(lat, i);
    if (prunus_json_type(v) != PRUNUS_JSON_NUMBER) continue;
    g_strlcpy(r->latency_key[r->n_latency], prunus_json_key(lat, i), 32);
    r->latency_us[r->n_latency++] = prunus_json_number(v);
  }
  read_plugin_sha256(o, r);
  static const char *const file_keys[2] = {"checkpoint_hash", "theta_hash"};
  char *file_hash[2] = {r->checkpoint_hash, r->theta_hash};
  for (int k = 0; k < 2; k++) {
    const PrunusJson *v = prunus_json_get(o, file_keys[k]);
    if (v && prunus_json_type(v) == PRUNUS_JSON_STRING && is_hex(prunus_json_string(v), 16))
      g_strlcpy(file_hash[k], prunus_json_string(v), 17);
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
  char *text = prunus_config_dump_resolved(cfg);
  char *path = g_build_filename(dir, "config.cfg", NULL);
  GError *local = NULL;
  gboolean ok = g_file_set_contents(path, text, -1, &local);
  if (!ok)
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write %s: %s", path, local->message);
  g_clear_error(&local);
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
  GString *text = g_string_new(line);
  g_string_append_c(text, '\n');
  gboolean ok = FALSE;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot open %s for appending: %s", path,
                g_strerror(e));
    goto out_free_line;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot stat %s: %s", path, g_strerror(e));
    goto out_close;
  }
  const char *p = text->str;
  size_t left = text->len;
  int e = 0;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      e = w < 0 ? errno : EIO;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  if (!e && fsync(fd) != 0) e = errno;
  if (e) {
    /* a full disk (ENOSPC) or a file size limit (EFBIG) may have let part of the line
     * through: cut it off, so every line of the file stays one whole JSON object */
    int cut = ftruncate(fd, st.st_size); /* the write's error is the one to report */
    (void)cut;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write to %s: %s", path,
                g_strerror(e));
    goto out_close;
  }
  ok = TRUE;
out_close:
  if (close(fd) != 0 && ok) {
    int ce = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write to %s: %s", path,
                g_strerror(ce));
    ok = FALSE;
  }
out_free_line:
  g_string_free(text, TRUE);
  g_free(line);
  g_free(path);
  return ok;
}

/* The (experiment, seed, round) of a metrics.jsonl line; FALSE for a line that is not
 * one of prunus's epoch lines (kept as it is). */
static gboolean epoch_line_key(const char *line, size_t len, const char *experiment, uint64_t seed,
                               double *round) {
  PrunusJson *o = prunus_json_parse(line, len, NULL);
  const PrunusJson *e = o ? prunus_json_get(o, "experiment") : NULL;
  const PrunusJson *s = o ? prunus_json_get(o, "seed") : NULL;
  const PrunusJson *r = o ? prunus_json_get(o, "round") : NULL;
  gboolean mine = e && s && r && prunus_json_type(e) == PRUNUS_JSON_STRING &&
                  prunus_json_type(s) == PRUNUS_JSON_NUMBER &&
                  prunus_json_type(r) == PRUNUS_JSON_NUMBER &&
                  !strcmp(prunus_json_string(e), experiment) &&
                  prunus_json_number(s) == (double)seed; /* no cast of a value out of range */
  if (mine) *round = prunus_json_number(r);
  prunus_json_free(o);
  return mine;
}

gboolean prunus_rundir_forget_epochs(const char *dir, const char *experiment, uint64_t seed,
                                     int from_round, GError **error) {
  char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  char *text = NULL;
  gsize len = 0;
  GError *local = NULL;
  gboolean ok = TRUE;
  if (!g_file_get_contents(path, &text, &len, &local)) {
    /* no file yet: nothing to forget */
    ok = g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
    if (!ok)
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot read %s: %s", path, local->message);
    g_clear_error(&local);
    g_free(path);
    return ok;
  }
  GString *kept = g_string_sized_new(len);
  size_t dropped = 0;
  for (const char *p = text; p < text + len;) {
    const char *end = memchr(p, '\n', (size_t)(text + len - p));
    const char *next = end ? end + 1 : text + len;
    double round = 0;
    if (epoch_line_key(p, (size_t)((end ? end : text + len) - p), experiment, seed, &round) &&
        round >= from_round)
      dropped++;
    else
      g_string_append_len(kept, p, next - p);
    p = next;
  }
  /* rewritten whole (a temporary file renamed over it), and only when a line goes */
  if (dropped && !g_file_set_contents(path, kept->str, (gssize)kept->len, &local)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write %s: %s", path, local->message);
    g_clear_error(&local);
    ok = FALSE;
  }
  g_string_free(kept, TRUE);
  g_free(text);
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
  prunus_rundir_summary_set_status(s, PRUNUS_RUN_RUNNING, NULL);
  prunus_json_object_set(s, "experiments", prunus_json_new_array());
  return s;
}

const PrunusJson *prunus_rundir_summary_find(const PrunusJson *summary, const char *name,
                                             uint64_t seed) {
  const PrunusJson *exps = summary ? prunus_json_get(summary, "experiments") : NULL;
  for (size_t i = 0; exps && i < prunus_json_length(exps); i++) {
    const PrunusJson *e = prunus_json_index(exps, i);
    if (prunus_json_type(e) != PRUNUS_JSON_OBJECT) continue; /* not an entry of ours */
    const PrunusJson *n = prunus_json_get(e, "name"), *s = prunus_json_get(e, "seed");
    if (n && s && prunus_json_type(n) == PRUNUS_JSON_STRING &&
        !strcmp(prunus_json_string(n), name) && prunus_json_type(s) == PRUNUS_JSON_NUMBER &&
        prunus_json_number(s) == (double)seed) /* no cast of a value out of range */
      return e;
  }
  return NULL;
}

PrunusJson *prunus_rundir_summary_experiment(PrunusJson *summary, const char *name, uint64_t seed) {
  const PrunusJson *found = prunus_rundir_summary_find(summary, name, seed);
  if (found) return (PrunusJson *)found; /* summary is the caller's to change */
  PrunusJson *exps = (PrunusJson *)prunus_json_get(summary, "experiments");
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

/* ------------------------------------------------------------------------ */
/* run status */

void prunus_rundir_summary_set_status(PrunusJson *summary, const char *status,
                                      const char *message) {
  prunus_json_object_set(summary, "status", prunus_json_new_string(status));
  prunus_json_object_set(summary, "status_message",
                         message ? prunus_json_new_string(message) : prunus_json_new_null());
}

const char *prunus_rundir_summary_status(const PrunusJson *summary, const char **message) {
  const PrunusJson *st = prunus_json_get(summary, "status");
  const PrunusJson *msg = prunus_json_get(summary, "status_message");
  if (message)
    *message = msg && prunus_json_type(msg) == PRUNUS_JSON_STRING ? prunus_json_string(msg) : NULL;
  return st && prunus_json_type(st) == PRUNUS_JSON_STRING ? prunus_json_string(st) : NULL;
}

/* Markers that stand in for the status and its message while the last words are
 * prepared; the writer escapes nothing in them, so they appear verbatim. */
#define STATUS_MARK "@prunus-status@"
#define MESSAGE_MARK "@prunus-status-message@"

/* Hand base/fatal.c summary's text with the status and message left open. */
static void prepare_last_words(const char *path, PrunusJson *summary) {
  prunus_json_object_set(summary, "status", prunus_json_new_string(STATUS_MARK));
  prunus_json_object_set(summary, "status_message", prunus_json_new_string(MESSAGE_MARK));
  char *text = prunus_json_to_string(summary, 2);
  prunus_rundir_summary_set_status(summary, PRUNUS_RUN_RUNNING, NULL);
  char *st = strstr(text, "\"" STATUS_MARK "\"");
  char *msg = st ? strstr(st, "\"" MESSAGE_MARK "\"") : NULL;
  if (!msg) { /* a config path holding the marker: keep no last words rather than wrong ones */
    prunus_fatal_set_last_words(NULL, NULL, NULL, NULL);
    g_free(text);
    return;
  }
  st[1] = '\0';  /* head ends with the opening quote */
  msg[1] = '\0'; /* mid runs from the closing quote to the next opening quote */
  char *tail = g_strconcat(msg + 1 + strlen(MESSAGE_MARK), "\n", NULL);
  prunus_fatal_set_last_words(path, text, st + 1 + strlen(STATUS_MARK), tail);
  g_free(tail);
  g_free(text);
}

gboolean prunus_rundir_write_summary(const char *dir, PrunusJson *summary, GError **error) {
  if (!prunus_rundir_write_json(dir, "summary.json", summary, error)) return FALSE;
  const char *status = prunus_rundir_summary_status(summary, NULL);
  char *path = g_build_filename(dir, "summary.json", NULL);
  if (status && !strcmp(status, PRUNUS_RUN_RUNNING))
    prepare_last_words(path, summary);
  else
    prunus_fatal_set_last_words(NULL, NULL, NULL, NULL);
  g_free(path);
  return TRUE;
}

PrunusJson *prunus_rundir_summary_parse(const char *path, const char *text, size_t len,
                                        const char *command, const char *hash,
                                        const char *hash_resolved, GError **error) {
  GError *local = NULL;
  PrunusJson *summary = prunus_json_parse(text, len, &local);
  if (!summary) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s is not valid JSON (%s); move the run folder away to start over", path,
                local->message);
    g_clear_error(&local);
    return NULL;
  }
  gboolean object = prunus_json_type(summary) == PRUNUS_JSON_OBJECT;
  const PrunusJson *cmd = object ? prunus_json_get(summary, "command") : NULL;
  const PrunusJson *h = object ? prunus_json_get(summary, "config_hash") : NULL;
  const PrunusJson *hr = object ? prunus_json_get(summary, "config_hash_resolved") : NULL;
  gboolean same_resolved = hash_resolved && hr && prunus_json_type(hr) == PRUNUS_JSON_STRING &&
                           !strcmp(prunus_json_string(hr), hash_resolved);
  const PrunusJson *exps = object ? prunus_json_get(summary, "experiments") : NULL;
  if (!exps || prunus_json_type(exps) != PRUNUS_JSON_ARRAY) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s is not a prunus summary (no \"experiments\" list); choose another -o RUN_DIR "
                "or move that folder away (nothing was changed)",
                path);
  } else if (!cmd || prunus_json_type(cmd) != PRUNUS_JSON_STRING ||
             strcmp(prunus_json_string(cmd), command)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "%s holds the results of `prunus %s`, not of `prunus %s`; choose another "
                "-o RUN_DIR or move that folder away (nothing was changed)",
                path,
                cmd && prunus_json_type(cmd) == PRUNUS_JSON_STRING ? prunus_json_string(cmd)
                                                                   : "(no command recorded)",
                command);
  } else if (!same_resolved && (!h || prunus_json_type(h) != PRUNUS_JSON_STRING ||
                                strcmp(prunus_json_string(h), hash))) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "%s holds the results of a different config (config_hash differs); choose another "
                "-o RUN_DIR or move that folder away (nothing was changed)",
                path);
  } else {
    return summary;
  }
  prunus_json_free(summary);
  return NULL;
}

gboolean prunus_rundir_summary_holds_no_round(const char *text, size_t len) {
  PrunusJson *summary = prunus_json_parse(text, len, NULL);
  gboolean object = summary && prunus_json_type(summary) == PRUNUS_JSON_OBJECT;
  const PrunusJson *cmd = object ? prunus_json_get(summary, "command") : NULL;
  const PrunusJson *exps = object ? prunus_json_get(summary, "experiments") : NULL;
  gboolean none = cmd && prunus_json_type(cmd) == PRUNUS_JSON_STRING &&
                  !strcmp(prunus_json_string(cmd), "run") && exps &&
                  prunus_json_type(exps) == PRUNUS_JSON_ARRAY;
  for (size_t i = 0; none && i < prunus_json_length(exps); i++) {
    const PrunusJson *e = prunus_json_index(exps, i);
    const PrunusJson *rounds =
        prunus_json_type(e) == PRUNUS_JSON_OBJECT ? prunus_json_get(e, "rounds") : NULL;
    none = !rounds ||
           (prunus_json_type(rounds) == PRUNUS_JSON_ARRAY && prunus_json_length(rounds) == 0);
  }
  prunus_json_free(summary);
  return none;
}

/* ------------------------------------------------------------------------ */
/* plugin builds */

PrunusJson *prunus_rundir_plugin_record(const char *name, const char *version, const char *path) {
  PrunusJson *o = prunus_json_new_object();
  prunus_json_object_set(o, "name", prunus_json_new_string(name));
  prunus_json_object_set(o, "version", prunus_json_new_string(version ? version : ""));
  prunus_json_object_set(o, "path", prunus_json_new_string(path));
  char sha[65];
  prunus_rundir_file_sha256(path, sha);
  prunus_json_object_set(o, "sha256", prunus_json_new_string(sha));
  return o;
}

static const char *record_string(const PrunusJson *rec, const char *key) {
  const PrunusJson *v = rec ? prunus_json_get(rec, key) : NULL;
  return v && prunus_json_type(v) == PRUNUS_JSON_STRING ? prunus_json_string(v) : "";
}

char *prunus_rundir_plugins_compare(const PrunusJson *before, const PrunusJson *now) {
  if (!before || !now || prunus_json_type(before) != PRUNUS_JSON_OBJECT ||
      prunus_json_type(now) != PRUNUS_JSON_OBJECT)
    return NULL;
  GString *out = g_string_new(NULL);
  for (int k = 0; k < PRUNUS_RUNDIR_N_SLOTS; k++) {
    const PrunusJson *a = prunus_json_get(before, prunus_rundir_slots[k]);
    const PrunusJson *b = prunus_json_get(now, prunus_rundir_slots[k]);
    if (!a || !b || prunus_json_type(a) != PRUNUS_JSON_OBJECT ||
        prunus_json_type(b) != PRUNUS_JSON_OBJECT)
      continue;
    const char *na = record_string(a, "name"), *nb = record_string(b, "name");
    const char *va = record_string(a, "version"), *vb = record_string(b, "version");
    const char *sa = record_string(a, "sha256"), *sb = record_string(b, "sha256");
    if (!strcmp(na, nb) && !strcmp(va, vb) && !strcmp(sa, sb)) continue;
    g_string_append_printf(out,
                           "%sprune.%s plugin '%s' is not the build that produced the earlier "
                           "rounds: '%s' %s, sha256 %.12s (%s) then; '%s' %s, sha256 %.12s (%s) "
                           "now",
                           out->len ? "\n" : "", prunus_rundir_slots[k], nb, na, va, sa,
                           record_string(a, "path"), nb, vb, sb, record_string(b, "path"));
  }
  if (!out->len) {
    g_string_free(out, TRUE);
    return NULL;
  }
  return g_string_free(out, FALSE);
}

char *prunus_rundir_summary_set_plugins(PrunusJson *exp_json, PrunusHost *const hosts[3]) {
  PrunusJson *now = prunus_json_new_object();
  for (int k = 0; k < PRUNUS_RUNDIR_N_SLOTS; k++) {
    const PrunusPluginDesc *d = prunus_host_desc(hosts[k]);
    prunus_json_object_set(
        now, prunus_rundir_slots[k],
        prunus_rundir_plugin_record(d->name, d->version, prunus_host_path(hosts[k])));
  }
  char *note = prunus_rundir_plugins_compare(prunus_json_get(exp_json, "plugins"), now);
  prunus_json_object_set(exp_json, "plugins", now);
  return note;
}

/* ------------------------------------------------------------------------ */
/* the run folder's lock */

/* An open-file-description lock (F_OFD_SETLK): unlike a POSIX record lock it is not
 * dropped when this process closes another descriptor of the same file (as
 * prunus_rundir_lock_holder does), and unlike flock() it can be tested without
 * being taken. O_CLOEXEC keeps programs the run starts (gnuplot) from holding it. */
struct PrunusRunLock {
  int fd;
  char *path;
};

#define LOCK_NAME "prunus.lock"

static int read_lock_pid(int fd) {
  char buf[32] = {0};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  char *end = NULL;
  long pid = strtol(buf, &end, 10);
  return end != buf && pid > 0 && pid <= G_MAXINT ? (int)pid : -1;
}

PrunusRunLock *prunus_rundir_lock(const char *dir, GError **error) {
  char *path = g_build_filename(dir, LOCK_NAME, NULL);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot open the run folder's lock %s: %s",
                path, g_strerror(e));
    g_free(path);
    return NULL;
  }
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    int e = errno;
    if (e == EAGAIN || e == EACCES) {
      int pid = read_lock_pid(fd);
      char who[48];
      if (pid > 0)
        g_snprintf(who, sizeof who, "process %d", pid);
      else
        g_strlcpy(who, "another process", sizeof who);
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "the run folder %s is in use: %s is running `prunus run` into it (lock %s); "
                  "wait for it to end or choose another -o RUN_DIR",
                  dir, who, path);
    } else {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot lock %s: %s", path, g_strerror(e));
    }
    close(fd);
    g_free(path);
    return NULL;
  }
  char pid[32];
  int n = g_snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  /* the PID is for messages only: the lock itself is what excludes */
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write %s: %s", path, g_strerror(e));
    close(fd);
    g_free(path);
    return NULL;
  }
  PrunusRunLock *lock = g_new0(PrunusRunLock, 1);
  lock->fd = fd;
  lock->path = path;
  return lock;
}

void prunus_rundir_unlock(PrunusRunLock *lock) {
  if (!lock) return;
  close(lock->fd); /* drops the lock; the file stays, so no one locks a deleted inode */
  g_free(lock->path);
  g_free(lock);
}

int prunus_rundir_lock_holder(const char *dir) {
  char *path = g_build_filename(dir, LOCK_NAME, NULL);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  g_free(path);
  if (fd < 0) return 0;
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET}; /* conflicts with the writer's */
  int holder = 0;
  if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) holder = read_lock_pid(fd);
  close(fd);
  return holder;
}
