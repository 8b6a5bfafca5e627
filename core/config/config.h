/* config.h: libconfig files read strictly (every key must be known, errors name
 * file:line and key), --set overrides, and the parsed dataset/model/train groups. */
#ifndef PRUNUS_CONFIG_H
#define PRUNUS_CONFIG_H

#include <libconfig.h>
#include "model.h"
#include "dataset.h"
#include "train.h"

G_BEGIN_DECLS

typedef struct PrunusConfig PrunusConfig;

/* (transfer full) Parse path. A syntax error names file:line and libconfig's text. */
PrunusConfig *prunus_config_load(const char *path, GError **error);
void prunus_config_free(PrunusConfig *c);

/* Apply "path.to.key=value". The value's type follows the existing setting when
 * there is one (an int key given "0.5" is an error naming the key); a new key's
 * type is inferred: true/false, integer, float, "quoted" or bare string, or a
 * [list] of numbers. Intermediate groups are created. A list element is reached
 * by index, written model.layers[1].units (libconfig's model.layers.[1].units is
 * accepted too); the element must exist. An existing array or list of scalars is
 * replaced whole: model.input=[3,32,32]. Settings made or changed here are
 * located as "--set path" in later messages. */
gboolean prunus_config_apply_set(PrunusConfig *c, const char *assignment, GError **error);

config_setting_t *prunus_config_root(PrunusConfig *c);
const char *prunus_config_path(PrunusConfig *c);

/* "file:line" of a setting, or "--set path" for one that came from the command
 * line. (transfer full) */
char *prunus_config_where(PrunusConfig *c, const config_setting_t *s);

/* Sets error to "WHERE: message", WHERE being prunus_config_where(s), and returns
 * FALSE: every message about a setting names where it is written this way. */
gboolean prunus_config_fail_at(PrunusConfig *c, const config_setting_t *s, GError **error,
                               const char *fmt, ...) G_GNUC_PRINTF(4, 5);

/* Typed, tracked lookups of key in group. Each marks the key read. A missing key
 * gives the default when required = FALSE, else an error naming the group's
 * file:line and the key path. A wrong type is an error naming file:line, the key,
 * the expected and found types. Floats accept integers. */
gboolean prunus_config_get_int(PrunusConfig *c, config_setting_t *group, const char *key,
                               gboolean required, int defval, int *out, GError **error);
gboolean prunus_config_get_int64(PrunusConfig *c, config_setting_t *group, const char *key,
                                 gboolean required, int64_t defval, int64_t *out, GError **error);
gboolean prunus_config_get_double(PrunusConfig *c, config_setting_t *group, const char *key,
                                  gboolean required, double defval, double *out, GError **error);
gboolean prunus_config_get_bool(PrunusConfig *c, config_setting_t *group, const char *key,
                                gboolean required, gboolean defval, gboolean *out, GError **error);
/* The same lookups with a range check: a value outside it is an error naming where the
 * key is written (file:line or --set), the key, the value and the range. int_min: [lo,
 * G_MAXINT]; int_in: [lo, hi]; double_in: lo..hi, each end open or closed (hi =
 * INFINITY for no upper bound; NaN is never in range). The default is not checked. */
gboolean prunus_config_get_int_min(PrunusConfig *c, config_setting_t *group, const char *key,
                                   gboolean required, int defval, int lo, int *out, GError **error);
gboolean prunus_config_get_int_in(PrunusConfig *c, config_setting_t *group, const char *key,
                                  gboolean required, int defval, int lo, int hi, int *out,
                                  GError **error);
gboolean prunus_config_get_double_in(PrunusConfig *c, config_setting_t *group, const char *key,
                                     gboolean required, double defval, double lo, gboolean lo_open,
                                     double hi, gboolean hi_open, double *out, GError **error);
/* *out is (transfer none), valid while c lives. */
gboolean prunus_config_get_string(PrunusConfig *c, config_setting_t *group, const char *key,
                                  gboolean required, const char *defval, const char **out,
                                  GError **error);
/* A string that must be one of names[] (NULL-terminated); *out = its index. The
 * error lists the allowed names. */
gboolean prunus_config_get_enum(PrunusConfig *c, config_setting_t *group, const char *key,
                                gboolean required, int defval, const char *const *names, int *out,
                                GError **error);
/* A group/list/array member; NULL with *error unset when absent and not required. */
config_setting_t *prunus_config_get_group(PrunusConfig *c, config_setting_t *group, const char *key,
                                          gboolean required, GError **error);
config_setting_t *prunus_config_get_list(PrunusConfig *c, config_setting_t *group, const char *key,
                                         gboolean required, GError **error);
/* Mark a setting (and nothing below it) as read. */
void prunus_config_mark_read(PrunusConfig *c, const config_setting_t *s);
/* Mark a setting and everything below it read (for groups handled elsewhere). */
void prunus_config_mark_read_tree(PrunusConfig *c, const config_setting_t *s);

/* Every setting that was never read is an error: "file:line: unknown key 'a.b'"
 * (the first few are listed). */
gboolean prunus_config_check_unread(PrunusConfig *c, GError **error);

/* A path in the config resolved against the config file's folder.
 * (transfer full) */
char *prunus_config_resolve_path(PrunusConfig *c, const char *path);
/* Sets error "FILE:LINE: KEY: no WHAT RESOLVED" for the path setting `at` (a string, as
 * prunus_config_resolve_path resolved it to `resolved`), adding what it was written as
 * when it was relative to the config's folder. Returns FALSE. */
gboolean prunus_config_fail_missing_path(PrunusConfig *c, const config_setting_t *at,
                                         const char *key, const char *what, const char *resolved,
                                         GError **error);

/* The whole config as libconfig text (after --set), and its SHA-256 in hex.
 * (transfer full) */
char *prunus_config_dump(PrunusConfig *c);
char *prunus_config_hash(PrunusConfig *c);
/* prunus_config_dump with every relative path (the dataset files, plugin_path,
 * prune.pretrained, also inside experiments) resolved against the config's folder: the
 * text a run folder keeps, which must mean the same from wherever it is read.
 * (transfer full) */
char *prunus_config_dump_resolved(PrunusConfig *c);

/* Merge src (a setting of this config, e.g. a member of one experiments[] entry)
 * into dst_parent: groups merge key by key, anything else replaces the member of
 * the same name. Errors about the copies name src's file:line. */
/* TRUE when setting s (or the group it sits in) was written by prunus_config_merge, from
 * an experiment's entry, rather than by the base config or --set. */
gboolean prunus_config_merged(PrunusConfig *c, const config_setting_t *s);
gboolean prunus_config_merge(PrunusConfig *c, config_setting_t *dst_parent,
                             const config_setting_t *src, GError **error);

/* The largest seed: summary.json holds numbers as doubles, exact up to 2^53, and a
 * resume compares the seed it reads back. */
#define PRUNUS_SEED_MAX 9007199254740992LL

/* The dataset, model and train groups, parsed. */
typedef struct {
  char *name;
  uint64_t seed;
  char *train_images, *train_labels, *test_images, *test_labels; /* resolved paths */
  int validation;  /* the last N samples of the training file, held out */
  int train_limit; /* 0 = all; else use only the first N training samples */
  int test_limit;  /* 0 = all */
  PrunusNormKind normalize;
  PrunusArch arch;
  PrunusTrainConfig train;
} PrunusRunConfig;

/* Parse name, seed, dataset, model and train. Keys of other top-level groups are
 * left unread for their owners (the pipeline). */
gboolean prunus_run_config_parse(PrunusConfig *c, PrunusRunConfig *out, GError **error);
/* Longest run or experiment name, in bytes. */
#define PRUNUS_NAME_MAX 64
/* NULL when name may name a run or an experiment, else (transfer full) why not. Names
 * become folders (runs/NAME, RUN_DIR/EXPERIMENT) and labels in JSON, CSV and HTML: 1 to
 * PRUNUS_NAME_MAX letters, digits, spaces and ". _ + -" (ASCII), not starting with
 * '.' (so neither "." nor ".."); an experiment may not take the names of the run folder's own
 * entries (cache, plots, report.html, summary.json, ...). */
char *prunus_config_name_problem(const char *name, gboolean experiment);
void prunus_run_config_clear(PrunusRunConfig *rc);

G_END_DECLS

#endif
