/* job_run.c: `prunus run` (the whole prune -> retrain pipeline of a config) and
 * `prunus plugins` (every plugin on the search path). */
#include "checkpoint.h"
#include "fatal.h"
#include "job.h"
#include "latency.h"
#include "pipeline.h"
#include "plugin_guard.h"
#include "report.h"
#include "rundir.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>

/* plugin_path = "dir" or ["dir", ...], resolved against the config's folder. */
static gboolean plugin_dirs(PrunusConfig *cfg, GPtrArray *out, GError **error) {
  config_setting_t *s = config_setting_get_member(prunus_config_root(cfg), "plugin_path");
  if (!s) return TRUE;
  prunus_config_mark_read(cfg, s);
  int n = config_setting_is_aggregate(s) ? config_setting_length(s) : 1;
  for (int i = 0; i < n; i++) {
    config_setting_t *e =
        config_setting_is_aggregate(s) ? config_setting_get_elem(s, (unsigned)i) : s;
    prunus_config_mark_read(cfg, e);
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
      prunus_config_fail_at(cfg, e, error,
                            "plugin_path must be a folder or a list of folders (strings)");
      return FALSE;
    }
    char *resolved = prunus_config_resolve_path(cfg, config_setting_get_string(e));
    char *dir = g_canonicalize_filename(resolved, NULL); /* "plugins/." shows as "plugins" */
    g_free(resolved);
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
      /* a mistyped folder would otherwise show only as "no plugin named ..." later */
      prunus_config_fail_missing_path(cfg, e, "plugin_path", "folder", dir, error);
      g_free(dir);
      return FALSE;
    }
    g_ptr_array_add(out, dir);
  }
  return TRUE;
}

/* One experiment of the config's `experiments` list (index -1 = the base config
 * alone) at one seed (has_seed FALSE = the config's own). */
typedef struct {
  int index;
  gboolean has_seed;
  int64_t seed;
} ExperimentChoice;

/* PrunusJobPrepareFn: merge experiments[index] over the base and set the seed;
 * `experiments` and `seeds` themselves are consumed here. */
static gboolean prepare_experiment(PrunusConfig *cfg, void *user, GError **error) {
  const ExperimentChoice *ch = user;
  config_setting_t *root = prunus_config_root(cfg);
  config_setting_t *list = config_setting_get_member(root, "experiments");
  config_setting_t *seeds = config_setting_get_member(root, "seeds");
  if (seeds) prunus_config_mark_read_tree(cfg, seeds);
  /* plugin_path is read (and checked) once, from the base config, by plugin_dirs() */
  config_setting_t *plugin_path = config_setting_get_member(root, "plugin_path");
  if (plugin_path) prunus_config_mark_read_tree(cfg, plugin_path);
  if (ch->index >= 0) {
    config_setting_t *e = config_setting_get_elem(list, (unsigned)ch->index);
    for (int i = 0; i < config_setting_length(e); i++) {
      config_setting_t *m = config_setting_get_elem(e, (unsigned)i);
      const char *key = config_setting_name(m);
      if (!strcmp(key, "name")) continue;
      if (!strcmp(key, "dataset") || !strcmp(key, "experiments") || !strcmp(key, "seeds") ||
          !strcmp(key, "plugin_path")) {
        prunus_config_fail_at(
            cfg, m, error,
            "an experiment may override name, seed, model, train and prune, not '%s'", key);
        return FALSE;
      }
      if (!prunus_config_merge(cfg, root, m, error)) return FALSE;
    }
  }
  if (list) prunus_config_mark_read_tree(cfg, list);
  if (ch->has_seed) {
    config_setting_t *s = config_setting_get_member(root, "seed");
    if (!s)
      s = config_setting_add(root, "seed", CONFIG_TYPE_INT64);
    else if (config_setting_type(s) != CONFIG_TYPE_INT64) {
      config_setting_remove(root, "seed");
      s = config_setting_add(root, "seed", CONFIG_TYPE_INT64);
    }
    config_setting_set_int64(s, ch->seed);
  }
  return TRUE;
}

/* The experiments (name, index) and seeds of the config, validated. */
static gboolean list_experiments(PrunusJob *base, GArray *names_idx, GArray *seeds,
                                 GPtrArray *names, GError **error) {
  PrunusConfig *cfg = base->cfg;
  config_setting_t *root = prunus_config_root(cfg);
  config_setting_t *list = config_setting_get_member(root, "experiments");
  config_setting_t *s = config_setting_get_member(root, "seeds");
  if (s) {
    if (!config_setting_is_aggregate(s) || config_setting_length(s) == 0) {
      prunus_config_fail_at(cfg, s, error, "seeds must be a list of integers, e.g. [0, 1, 2]");
      return FALSE;
    }
    for (int i = 0; i < config_setting_length(s); i++) {
      config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
      if (config_setting_type(e) != CONFIG_TYPE_INT &&
          config_setting_type(e) != CONFIG_TYPE_INT64) {
        prunus_config_fail_at(cfg, e, error, "seeds[%d] must be an integer", i);
        return FALSE;
      }
      int64_t v = config_setting_get_int64(e);
      if (config_setting_type(e) == CONFIG_TYPE_INT) v = config_setting_get_int(e);
      if (v < 0 || v > PRUNUS_SEED_MAX) {
        return prunus_config_fail_at(cfg, e, error,
                                     "seeds[%d] = %" G_GINT64_FORMAT
                                     " is out of range: must be in [0, 2^53 = 9007199254740992]",
                                     i, (gint64)v);
      }
      for (guint k = 0; k < seeds->len; k++)
        if (g_array_index(seeds, int64_t, k) == v) {
          return prunus_config_fail_at(cfg, e, error,
                                       "seeds[%d] = %" G_GINT64_FORMAT
                                       " repeats seeds[%u]: the same seed runs the same "
                                       "experiment again; list each seed once",
                                       i, (gint64)v, k);
        }
      g_array_append_val(seeds, v);
    }
  }
  if (!list) {
    int idx = -1;
    g_array_append_val(names_idx, idx);
    g_ptr_array_add(names, g_strdup(base->rc.name));
    return TRUE;
  }
  if (!config_setting_is_list(list) || config_setting_length(list) == 0) {
    prunus_config_fail_at(cfg, list, error,
                          "experiments must be a list of groups: ( { name = \"a\"; ... }, ... )");
    return FALSE;
  }
  for (int i = 0; i < config_setting_length(list); i++) {
    config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    const char *name = NULL;
    if (!config_setting_is_group(e) || !config_setting_lookup_string(e, "name", &name)) {
      prunus_config_fail_at(
          cfg, e, error,
          "experiments[%d] needs name = \"...\" (letters, digits, spaces and . _ + -)", i);
      return FALSE;
    }
    char *why = prunus_config_name_problem(name, TRUE);
    if (why) {
      prunus_config_fail_at(cfg, config_setting_get_member(e, "name"), error,
                            "experiments[%d].name %s", i, why);
      g_free(why);
      return FALSE;
    }
    for (guint j = 0; j < names->len; j++) {
      if (!strcmp(g_ptr_array_index(names, j), name)) {
        prunus_config_fail_at(cfg, e, error, "experiment name '%s' is used twice", name);
        return FALSE;
      }
    }
    g_array_append_val(names_idx, i);
    g_ptr_array_add(names, g_strdup(name));
  }
  return TRUE;
}

static PrunusJson *new_summary(const PrunusJob *job, const PrunusJobOptions *o, const char *hash,
                               const char *hash_resolved) {
  PrunusJson *fresh = prunus_rundir_summary_new("run", o->config_path, hash,
                                                prunus_train_threads_used(job->threads));
  prunus_json_object_set(fresh, "config_hash_resolved", prunus_json_new_string(hash_resolved));
  return fresh;
}

/* summary.json of an earlier (interrupted) run of the same config, or a new one, also
 * in place of another config's run that recorded no round. Reads only, but for that
 * run's metrics.jsonl, removed when announce: a refused run leaves the folder as it was. announce:
 * say that the run resumes and how the earlier one ended. */
static PrunusJson *open_summary(PrunusJob *job, const PrunusJobOptions *o, const char *hash,
                                const char *hash_resolved, gboolean announce, GError **error) {
  char *path = g_build_filename(job->run_dir, "summary.json", NULL);
  char *text = NULL;
  gsize len = 0;
  PrunusJson *summary = NULL;
  if (g_file_get_contents(path, &text, &len, NULL)) {
    GError *local = NULL;
    summary = prunus_rundir_summary_parse(path, text, len, "run", hash, hash_resolved, &local);
    if (!summary && g_error_matches(local, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH) &&
        prunus_rundir_summary_holds_no_round(text, len)) {
      /* another config's run that stopped before its first round holds no result: this
       * one starts afresh there (when it writes, its metrics.jsonl goes too) */
      g_clear_error(&local);
      if (announce) {
        PrunusJson *old = prunus_json_parse(text, len, NULL);
        const char *message = NULL;
        const char *status = prunus_rundir_summary_status(old, &message);
        g_printerr(
            "prunus: note: %s held a run of another config that recorded no round "
            "(%s%s%s); starting this one there afresh\n",
            job->run_dir, status ? status : "no status", message ? ": " : "",
            message ? message : "");
        prunus_json_free(old);
        char *metrics = g_build_filename(job->run_dir, "metrics.jsonl", NULL);
        if (g_remove(metrics) != 0 && errno != ENOENT) {
          int e = errno;
          g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot remove %s: %s", metrics,
                      g_strerror(e));
          g_free(metrics), g_free(text), g_free(path);
          return NULL;
        }
        g_free(metrics);
      }
      g_free(text);
      g_free(path);
      return new_summary(job, o, hash, hash_resolved);
    }
    if (local) g_propagate_error(error, local);
    if (summary) {
      /* recorded from now on also where an earlier version did not: config.cfg resumes */
      prunus_json_object_set(summary, "config_hash_resolved",
                             prunus_json_new_string(hash_resolved));
      prunus_json_object_set(summary, "threads",
                             prunus_json_new_number(prunus_train_threads_used(job->threads)));
      const char *message = NULL;
      const char *status = prunus_rundir_summary_status(summary, &message);
      if (announce && !job->quiet) {
        if (status && strcmp(status, PRUNUS_RUN_FINISHED))
          printf("resuming the run in %s (it had stopped: %s%s%s)\n", job->run_dir,
                 !strcmp(status, PRUNUS_RUN_RUNNING) ? "killed or crashed without a word" : status,
                 message ? ": " : "", message ? message : "");
        else
          printf("resuming the run in %s\n", job->run_dir);
      }
    }
    g_free(text);
    g_free(path);
    return summary;
  }
  g_free(path);
  return new_summary(job, o, hash, hash_resolved);
}

/* The run's rounds came from the data loaded now: summary.json records the digest of
 * the bytes its first command loaded (prunus_data_load) and a resume on other bytes (a
 * file under dataset rewritten, or the same config text in another folder beside
 * other files) would append rounds trained on them to rounds trained on the first.
 * Summaries written before the digest was recorded are taken as they are. Records the
 * digest in a new summary. */
static gboolean same_data(PrunusJson *summary, const char *run_dir, const PrunusData *data,
                          GError **error) {
  const PrunusJson *was = prunus_json_get(summary, "data_digest");
  if (was && prunus_json_type(was) == PRUNUS_JSON_STRING &&
      strcmp(prunus_json_string(was), data->digest)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "%s/summary.json: the run's rounds were trained on other data (digest %.16s...; "
                "the files under dataset now give %.16s...): a dataset file changed since the "
                "run began. Restore it to resume, or choose another -o RUN_DIR for a new run",
                run_dir, prunus_json_string(was), data->digest);
    return FALSE;
  }
  if (!was) prunus_json_object_set(summary, "data_digest", prunus_json_new_string(data->digest));
  return TRUE;
}

/* The fatal handlers' name for one experiment x seed: "(seed 1)" when the config
 * lists seeds. (transfer full) */
static char *seed_label(const ExperimentChoice *ch) {
  return ch->has_seed ? g_strdup_printf("seed %" G_GINT64_FORMAT, ch->seed) : NULL;
}

/* One experiment x seed of the run, opened and prepared before anything trains. */
typedef struct {
  const char *name; /* (transfer none) the experiment's name */
  PrunusJob job;    /* its config: the experiment merged, the seed set */
  PrunusPruneConfig pc;
  char *subdir; /* "name" or "name/seed-S" */
  PrunusPipeline *pipeline;
  gboolean selected; /* runs (--only picks one experiment) */
  char *seed_label;  /* "seed 1" or NULL, for the fatal handlers' messages */
} RunUnit;

static void run_unit_free(gpointer data) {
  RunUnit *u = data;
  prunus_pipeline_free(u->pipeline);
  prunus_prune_config_clear(&u->pc);
  prunus_job_close(&u->job);
  g_free(u->subdir);
  g_free(u->seed_label);
  g_free(u);
}

/* u's configured plugin of a slot, "criterion" or "granularity". */
static const char *own_plugin(const RunUnit *u, const char *slot) {
  return !strcmp(slot, "granularity") ? u->pc.granularity_name : u->pc.criterion_name;
}

/* The plugin of a slot that made u's masks: its own, or with masks_from its source's
 * (set when u was prepared, so a chain resolves). */
static const char *masks_made_by(const RunUnit *u, const char *slot) {
  if (!u->pc.masks_from) return own_plugin(u, slot);
  return !strcmp(slot, "granularity") ? u->pc.masks_granularity_name : u->pc.masks_criterion_name;
}

/* Does u's own experiment entry name a prune.SLOT plugin other than the one that made
 * source's masks? One it only inherits from the base config is no mistake: merging
 * cannot remove it. */
static gboolean own_plugin_differs(const RunUnit *u, const RunUnit *source, const char *slot) {
  char *key = g_strdup_printf("prune.%s.plugin", slot);
  config_setting_t *s = config_setting_lookup(prunus_config_root(u->job.cfg), key);
  g_free(key);
  return s && prunus_config_merged(u->job.cfg, s) &&
         strcmp(own_plugin(u, slot), masks_made_by(source, slot)) != 0;
}

/* prune.masks_from: the unit of that name at the same seed among the earlier ones (its
 * checkpoints exist by the time this one needs them), or NULL + an error at the key. */
static const RunUnit *masks_source(const RunUnit *u, GPtrArray *earlier, GError **error) {
  GString *names = g_string_new(NULL);
  const RunUnit *found = NULL, *other_seed = NULL;
  for (guint i = 0; i < earlier->len && !found; i++) {
    const RunUnit *e = g_ptr_array_index(earlier, i);
    if (e->job.rc.seed != u->job.rc.seed) {
      if (!strcmp(e->name, u->pc.masks_from)) other_seed = e;
      continue;
    }
    if (!strcmp(e->name, u->pc.masks_from)) found = e;
    g_string_append_printf(names, "%s'%s'", names->len ? ", " : "", e->name);
  }
  if (!found && other_seed) {
    prunus_config_fail_at(
        u->job.cfg, u->pc.masks_from_key, error,
        "prune.masks_from = \"%s\": that experiment runs at seed %" G_GUINT64_FORMAT
        ", this one at seed %" G_GUINT64_FORMAT
        "; masks are taken from the same seed: give both the same seed",
        u->pc.masks_from, (guint64)other_seed->job.rc.seed, (guint64)u->job.rc.seed);
  } else if (found && found->pc.rounds < u->pc.rounds) {
    /* what apply_source_masks would find missing at round found->pc.rounds + 1 */
    prunus_config_fail_at(u->job.cfg, u->pc.masks_from_key, error,
                          "prune.masks_from = \"%s\": that experiment runs %d rounds, this one %d; "
                          "its masks end at round %d",
                          u->pc.masks_from, found->pc.rounds, u->pc.rounds, found->pc.rounds);
    found = NULL;
  } else if (found && found->pipeline && prunus_pipeline_removes_units(found->pipeline)) {
    /* what apply_source_masks would find at round 1: another architecture */
    prunus_config_fail_at(
        u->job.cfg, u->pc.masks_from_key, error,
        "prune.masks_from = \"%s\": that experiment's granularity '%s' removes whole "
        "units, so its rounds change the network's shape; masks can only be taken from "
        "an experiment whose granularity masks weights",
        u->pc.masks_from, found->pc.granularity_name);
    found = NULL;
  } else if (found && (own_plugin_differs(u, found, "granularity") ||
                       own_plugin_differs(u, found, "criterion"))) {
    /* this one's criterion and granularity are never called: written in its own entry,
     * they would label its results with a method that did not make its masks */
    const char *slot = own_plugin_differs(u, found, "granularity") ? "granularity" : "criterion";
    prunus_config_fail_at(u->job.cfg, u->pc.masks_from_key, error,
                          "prune.masks_from = \"%s\" applies that experiment's masks, which %s "
                          "'%s' made; this one's prune.%s is '%s', which would never run: "
                          "remove it from this experiment",
                          u->pc.masks_from, slot, masks_made_by(found, slot), slot,
                          own_plugin(u, slot));
    found = NULL;
  } else if (found) {
    char *a = prunus_arch_to_string(&found->job.rc.arch);
    char *b = prunus_arch_to_string(&u->job.rc.arch);
    if (strcmp(a, b)) {
      prunus_config_fail_at(
          u->job.cfg, u->pc.masks_from_key, error,
          "prune.masks_from = \"%s\": that experiment's model is %s, this one's %s; "
          "masks can only be taken from the same network",
          u->pc.masks_from, a, b);
      found = NULL;
    }
    g_free(a), g_free(b);
  } else {
    prunus_config_fail_at(
        u->job.cfg, u->pc.masks_from_key, error,
        "prune.masks_from = \"%s\": no experiment of that name runs before this one "
        "(%s%s); list the source experiment first",
        u->pc.masks_from, names->len ? "before it: " : "it is the first", names->str);
  }
  g_string_free(names, TRUE);
  return found;
}

/* With --only, an experiment whose masks come from one that does not run now needs that
 * one's rounds in the run folder already: otherwise it would fail at round 1, after
 * pretraining. */
static gboolean sources_ran(GPtrArray *units, const PrunusJson *summary, const char *run_dir,
                            GError **error) {
  for (guint i = 0; i < units->len; i++) {
    const RunUnit *u = g_ptr_array_index(units, i);
    if (!u->selected || !u->pc.masks_from) continue;
    const RunUnit *source = NULL;
    for (guint k = 0; k < i && !source; k++) {
      const RunUnit *e = g_ptr_array_index(units, k);
      if (!strcmp(e->name, u->pc.masks_from) && e->job.rc.seed == u->job.rc.seed) source = e;
    }
    if (!source || source->selected) continue;
    const PrunusJson *e = prunus_rundir_summary_find(summary, source->name, source->job.rc.seed);
    const PrunusJson *rounds = e ? prunus_json_get(e, "rounds") : NULL;
    size_t have =
        rounds && prunus_json_type(rounds) == PRUNUS_JSON_ARRAY ? prunus_json_length(rounds) : 0;
    if (have > (size_t)u->pc.rounds) continue; /* rounds 0 .. u's last */
    char *where = prunus_config_where(u->job.cfg, u->pc.masks_from_key);
    g_set_error(
        error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
        "experiment '%s': %s: prune.masks_from = \"%s\": --only %s runs this experiment alone, but %s "
        "holds %s of '%s' (its masks are needed up to round %d): run '%s' first "
        "(--only %s), or run without --only",
        u->name, where, u->pc.masks_from, u->name, run_dir, have ? "only some rounds" : "no rounds",
        source->name, u->pc.rounds, source->name, source->name);
    g_free(where);
    return FALSE;
  }
  return TRUE;
}

/* prune.pretrained names a checkpoint of this experiment's model: a missing file, one
 * that does not read, or another network would show only when this experiment's turn
 * comes, after the earlier ones ran and with its run folder made. A file inside the run
 * folder may be one an earlier experiment writes: it is checked when read. */
static gboolean pretrained_usable(const RunUnit *u, const char *run_dir, GError **error) {
  const char *path = u->pc.pretrained;
  if (!path) return TRUE;
  char *abs_run = g_canonicalize_filename(run_dir, NULL);
  char *inside = g_strconcat(abs_run, G_DIR_SEPARATOR_S, NULL);
  gboolean later = g_str_has_prefix(path, inside);
  g_free(inside), g_free(abs_run);
  if (later) return TRUE;
  config_setting_t *key = config_setting_lookup(prunus_config_root(u->job.cfg), "prune.pretrained");
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
    return prunus_config_fail_missing_path(u->job.cfg, key, "prune.pretrained", "file", path,
                                           error);
  GError *local = NULL;
  PrunusModel *m = prunus_checkpoint_load(path, 1, &u->job.rc.arch, NULL, &local);
  if (m) {
    prunus_model_free(m);
    return TRUE;
  }
  char *where = prunus_config_where(u->job.cfg, key); /* "--set KEY" names the key */
  g_propagate_prefixed_error(error, local, "%s: %s", where,
                             g_str_has_prefix(where, "--set ") ? "" : "prune.pretrained: ");
  g_free(where);
  return FALSE;
}

/* Open experiment ch as its own job and prepare its pipeline: every config key and
 * plugin setting checked, no data read, nothing written. Errors name the experiment.
 * earlier: the units prepared before it (where prune.masks_from looks). */
static RunUnit *prepare_unit(const PrunusJobOptions *o, const PrunusJob *base, const char *name,
                             const ExperimentChoice *ch, gboolean seed_dirs, const char *cache,
                             PrunusPluginRegistry *reg, GPtrArray *earlier, PrunusRunClock *clock,
                             GError **error) {
  RunUnit *u = g_new0(RunUnit, 1);
  u->name = name;
  u->selected = !o->only || !strcmp(name, o->only);
  u->subdir =
      seed_dirs ? g_strdup_printf("%s/seed-%" G_GINT64_FORMAT, name, ch->seed) : g_strdup(name);
  u->seed_label = seed_label(ch);
  prunus_plugin_guard_set_experiment(name, u->seed_label);
  PrunusJobOptions eo = *o;
  eo.run_dir = base->run_dir;
  gboolean ok = prunus_job_open_with(&u->job, &eo, prepare_experiment, (void *)ch, error) &&
                prunus_prune_config_parse(u->job.cfg, &u->job.rc, &u->pc, error);
  if (ok && u->selected) ok = pretrained_usable(u, base->run_dir, error);
  const RunUnit *source = NULL;
  if (ok && u->pc.masks_from) {
    source = masks_source(u, earlier, error);
    ok = source != NULL;
    if (ok) { /* the plugins that make this experiment's masks label it */
      u->pc.masks_criterion_name = masks_made_by(source, "criterion");
      u->pc.masks_granularity_name = masks_made_by(source, "granularity");
    }
  }
  if (ok) {
    PrunusExperiment exp = {.name = name,
                            .cfg = u->job.cfg,
                            .rc = &u->job.rc,
                            .pc = &u->pc,
                            .run_dir = base->run_dir,
                            .subdir = u->subdir,
                            .masks_subdir = source ? source->subdir : NULL,
                            .cache_dir = cache,
                            .threads = base->threads,
                            .quiet = o->quiet,
                            .clock = clock};
    u->pipeline = prunus_pipeline_prepare(&exp, reg, error);
    ok = u->pipeline != NULL;
  }
  prunus_plugin_guard_set_experiment(NULL, NULL);
  if (ok) return u;
  if (ch->has_seed)
    g_prefix_error(error, "experiment '%s' (seed %" G_GINT64_FORMAT "): ", name, ch->seed);
  else
    g_prefix_error(error, "experiment '%s': ", name);
  run_unit_free(u);
  return NULL;
}

/* The run stopped on error after its folder was written: record why in summary.json
 * (best effort: a full disk may refuse this too, and then the summary of the last
 * finished round stays, with status "running"). */
static void record_failure(const char *run_dir, PrunusJson *summary, const GError *error) {
  prunus_rundir_summary_set_status(summary, PRUNUS_RUN_FAILED,
                                   error ? error->message : "stopped by an error");
  GError *local = NULL;
  if (!prunus_rundir_write_summary(run_dir, summary, &local)) g_clear_error(&local);
}

/* Where the run's wall time went: the pipelines' shares, the reports, and the rest
 * (loading the data, preparing the experiments). */
static void print_timing(GPtrArray *units, double total, double report) {
  PrunusPipelineTiming sum = {0};
  for (guint k = 0; k < units->len; k++) {
    const RunUnit *u = g_ptr_array_index(units, k);
    PrunusPipelineTiming t = prunus_pipeline_timing(u->pipeline);
    sum.train += t.train, sum.evaluate += t.evaluate, sum.latency += t.latency;
    sum.checkpoint += t.checkpoint;
  }
  double other = total - sum.train - sum.evaluate - sum.latency - sum.checkpoint - report;
  double pct = 100.0 / MAX(total, 1e-9);
  printf(
      "time: %.1f s: training and pruning %.1f s (%.1f%%), evaluation %.2f s (%.1f%%), latency "
      "%.2f s (%.1f%%), checkpoints %.2f s (%.1f%%), reports %.2f s (%.1f%%), other %.2f s "
      "(%.1f%%)\n",
      total, sum.train, sum.train * pct, sum.evaluate, sum.evaluate * pct, sum.latency,
      sum.latency * pct, sum.checkpoint, sum.checkpoint * pct, report, report * pct, other,
      other * pct);
}

gboolean prunus_job_run(const PrunusJobOptions *o, GError **error) {
  gint64 t_start = g_get_monotonic_time();
  PrunusRunClock clock = {.start_us = prunus_now_us()};
  PrunusJob base;
  ExperimentChoice base_choice = {.index = -1};
  /* from here on a crash, an interrupt or a plugin's exit() is reported, naming what ran */
  prunus_fatal_install();
  if (!prunus_job_open_with(&base, o, prepare_experiment, &base_choice, error)) return FALSE;
  prunus_job_warn_threads(o->threads);
  clock.latency = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  gboolean ok = FALSE, written = FALSE;
  PrunusRunLock *lock = NULL;
  PrunusData data = {0};
  PrunusPluginRegistry *reg = NULL;
  PrunusJson *summary = NULL;
  char *hash = NULL, *hash_resolved = NULL, *cache = NULL;
  GArray *indices = g_array_new(FALSE, FALSE, sizeof(int));
  GArray *seeds = g_array_new(FALSE, FALSE, sizeof(int64_t));
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  GPtrArray *dirs = g_ptr_array_new_with_free_func(g_free);
  GPtrArray *units = g_ptr_array_new_with_free_func(run_unit_free); /* RunUnit*, in run order */
  if (!plugin_dirs(base.cfg, dirs, error)) goto out_free;
  g_ptr_array_add(dirs, NULL);
  if (!list_experiments(&base, indices, seeds, names, error)) goto out_free;
  if (o->only) {
    gboolean found = FALSE;
    for (guint i = 0; i < names->len; i++) found |= !strcmp(g_ptr_array_index(names, i), o->only);
    if (!found) {
      GString *all = g_string_new(NULL);
      for (guint i = 0; i < names->len; i++)
        g_string_append_printf(all, "%s%s", i ? ", " : "",
                               (const char *)g_ptr_array_index(names, i));
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "--only %s: %s has no such experiment (it has: %s)", o->only, o->config_path,
                  all->str);
      g_string_free(all, TRUE);
      goto out_free;
    }
  }
  /* Prepare every experiment x seed (--only or not) before the dataset is read or
   * anything is trained or written: a typo anywhere is refused at once. */
  reg = prunus_plugin_registry_new((const char *const *)dirs->pdata);
  cache = o->cache_dir ? g_strdup(o->cache_dir) : g_build_filename(base.run_dir, "cache", NULL);
  int n_seeds = seeds->len ? (int)seeds->len : 1;
  for (guint i = 0; i < indices->len; i++) {
    for (int s = 0; s < n_seeds; s++) {
      ExperimentChoice ch = {.index = g_array_index(indices, int, i),
                             .has_seed = seeds->len > 0,
                             .seed = seeds->len ? g_array_index(seeds, int64_t, s) : 0};
      RunUnit *u = prepare_unit(o, &base, g_ptr_array_index(names, i), &ch, seeds->len > 1, cache,
                                reg, units, &clock, error);
      if (!u) goto out_free;
      g_ptr_array_add(units, u);
    }
  }
  hash = prunus_config_hash(base.cfg);
  { /* config.cfg in the run folder holds this text: rerun, it resumes its own run */
    char *resolved = prunus_config_dump_resolved(base.cfg);
    hash_resolved = g_compute_checksum_for_string(G_CHECKSUM_SHA256, resolved, -1);
    g_free(resolved);
  }
  summary = open_summary(&base, o, hash, hash_resolved, FALSE, error); /* a read-only check */
  if (!summary || !sources_ran(units, summary, base.run_dir, error)) goto out_free;
  /* one run per folder: one that exists is locked before the data are read, so a
   * second run into it is refused at once */
  if (g_file_test(base.run_dir, G_FILE_TEST_IS_DIR) &&
      !(lock = prunus_rundir_lock(base.run_dir, error)))
    goto out_free;
  if (!prunus_data_load(&base.rc, &data, error) || !same_data(summary, base.run_dir, &data, error))
    goto out_free;
  /* a --cache folder that cannot be made would otherwise fail only after pretraining */
  if (o->cache_dir && g_mkdir_with_parents(o->cache_dir, 0755) != 0) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "--cache %s: cannot create the folder: %s",
                o->cache_dir, g_strerror(e));
    goto out_free;
  }
  /* checked: from here on the run folder is written */
  if (!prunus_rundir_ensure(base.run_dir, error)) goto out_free;
  if (!lock && !(lock = prunus_rundir_lock(base.run_dir, error))) goto out_free;
  /* read again under the lock: the run that held it until now may have added rounds */
  prunus_json_free(summary);
  summary = open_summary(&base, o, hash, hash_resolved, TRUE, error);
  if (!summary || !same_data(summary, base.run_dir, &data, error)) goto out_free;
  prunus_rundir_summary_set_status(summary, PRUNUS_RUN_RUNNING, NULL);
  written = TRUE;
  if (!prunus_rundir_write_config(base.run_dir, base.cfg, error) ||
      !prunus_rundir_write_summary(base.run_dir, summary, error))
    goto out_free;
  for (guint k = 0; k < units->len; k++) {
    RunUnit *u = g_ptr_array_index(units, k);
    if (!u->selected) continue;
    prunus_plugin_guard_set_experiment(u->name, u->seed_label);
    if (!prunus_pipeline_run(u->pipeline, &data, summary, error)) goto out_free;
  }
  prunus_plugin_guard_set_experiment(NULL, NULL);
  prunus_rundir_summary_set_status(summary, PRUNUS_RUN_FINISHED, NULL);
  gint64 t_report = g_get_monotonic_time();
  ok = prunus_rundir_write_summary(base.run_dir, summary, error) &&
       prunus_report_write(base.run_dir, error);
  if (ok) {
    gint64 t_end = g_get_monotonic_time();
    printf("report: %s/report.html\n", base.run_dir); /* the result line, --quiet or not */
    if (!o->quiet) print_timing(units, (t_end - t_start) / 1e6, (t_end - t_report) / 1e6);
  }

out_free:
  prunus_plugin_guard_set_experiment(NULL, NULL);
  if (!ok && written) record_failure(base.run_dir, summary, error ? *error : NULL);
  prunus_fatal_set_last_words(NULL, NULL, NULL, NULL);
  prunus_rundir_unlock(lock);
  g_free(cache);
  g_free(hash);
  g_free(hash_resolved);
  prunus_json_free(summary);
  prunus_data_clear(&data);
  g_ptr_array_free(units, TRUE); /* the pipelines borrow the registry: free them first */
  g_hash_table_unref(clock.latency);
  prunus_plugin_registry_free(reg);
  g_ptr_array_free(dirs, TRUE);
  g_ptr_array_free(names, TRUE);
  g_array_free(seeds, TRUE);
  g_array_free(indices, TRUE);
  prunus_job_close(&base);
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
