/* fuzz_config.c: the config loader (core/config/: libconfig text read strictly,
 * `--set` overrides, experiment merging, the run and prune groups with their range
 * checks, unread keys, dump and hash) on arbitrary bytes. Input layout: the config
 * text, then after the first NUL byte up to 8 `--set` assignments, one per line. A
 * config it accepts must dump to text that loads and dumps to the same text. */
#include "config.h"
#include "fuzz_common.h"
#include "prune_config.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SETS 8

/* Error messages say where: a file:line, a --set, or the key. */
static void check_refusal(GError *error) {
  if (!error || !error->message[0]) abort();
  g_error_free(error);
}

/* Merge experiments[0] over the base, as `prunus run` does for each experiment. */
static gboolean merge_first_experiment(PrunusConfig *cfg, GError **error) {
  config_setting_t *root = prunus_config_root(cfg);
  config_setting_t *list = config_setting_get_member(root, "experiments");
  if (!list) return TRUE;
  prunus_config_mark_read_tree(cfg, list);
  config_setting_t *e = config_setting_get_elem(list, 0);
  if (!e || !config_setting_is_group(e)) return TRUE;
  for (int i = 0; i < config_setting_length(e); i++) {
    config_setting_t *m = config_setting_get_elem(e, (unsigned)i);
    const char *key = config_setting_name(m);
    if (!key || !strcmp(key, "name") || !strcmp(key, "experiments")) continue;
    if (!prunus_config_merge(cfg, root, m, error)) return FALSE;
  }
  return TRUE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prunus_fuzz_init();
  const uint8_t *nul = memchr(data, 0, size);
  size_t text_len = nul ? (size_t)(nul - data) : size;
  /* @include of an absolute or parent path would read files outside the scratch
   * folder (or /dev/stdin): keep includes to the folder itself */
  if (g_strstr_len((const char *)data, (gssize)text_len, "@include") &&
      (memchr(data, '/', text_len) || g_strstr_len((const char *)data, (gssize)text_len, "..")))
    return 0;
  const char *path = prunus_fuzz_file(0, data, text_len);
  GError *error = NULL;
  PrunusConfig *cfg = prunus_config_load(path, &error);
  if (!cfg) {
    check_refusal(error);
    return 0;
  }
  PrunusRunConfig rc = {0};
  PrunusPruneConfig pc = {0};
  gboolean have_rc = FALSE, have_pc = FALSE;
  if (nul) {
    char *sets = g_strndup((const char *)nul + 1, size - text_len - 1);
    char **lines = g_strsplit(sets, "\n", MAX_SETS + 1);
    for (int i = 0; lines[i] && i < MAX_SETS; i++) {
      if (!lines[i][0]) continue;
      if (!prunus_config_apply_set(cfg, lines[i], &error)) {
        if (!strstr(error->message, "--set")) abort(); /* a --set error names the --set */
        g_clear_error(&error);
      }
    }
    g_strfreev(lines);
    g_free(sets);
  }
  if (!merge_first_experiment(cfg, &error)) {
    check_refusal(error);
    goto out_free;
  }
  have_rc = prunus_run_config_parse(cfg, &rc, &error);
  if (!have_rc) {
    check_refusal(error);
    goto out_free;
  }
  have_pc = prunus_prune_config_parse(cfg, &rc, &pc, &error);
  if (!have_pc) {
    check_refusal(error);
    goto out_free;
  }
  /* the plugin groups belong to the plugins: what they would read counts as read */
  config_setting_t *groups[3] = {pc.criterion, pc.granularity, pc.retrain};
  for (int i = 0; i < 3; i++)
    if (groups[i]) prunus_config_mark_read_tree(cfg, groups[i]);
  if (rc.arch.n_layers <= 0 || rc.train.batch < 1 || rc.train.epochs < 1) abort();
  /* prunus writes config.cfg only for a config every key of which was read */
  if (!prunus_config_check_unread(cfg, &error)) {
    check_refusal(error);
    goto out_free;
  }

  /* the dump loads again and dumps to the same text; the hash is of that text */
  char *dump = prunus_config_dump(cfg);
  char *hash = prunus_config_hash(cfg);
  if (strlen(hash) != 64) abort();
  const char *again_path = prunus_fuzz_file(1, dump, strlen(dump));
  PrunusConfig *again = prunus_config_load(again_path, &error);
  if (!again) abort();
  char *dump2 = prunus_config_dump(again);
  if (strcmp(dump, dump2) != 0) abort();
  g_free(dump2);
  prunus_config_free(again);
  g_free(hash);
  g_free(dump);

out_free:
  if (have_pc) prunus_prune_config_clear(&pc);
  if (have_rc) prunus_run_config_clear(&rc);
  prunus_config_free(cfg);
  return 0;
}
