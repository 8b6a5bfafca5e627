/* config-impl.h: what config.c shares with run_config.c and nothing else: the
 * PrunusConfig struct and the helpers that name settings in error messages. */
#ifndef PRUNUS_CONFIG_IMPL_H
#define PRUNUS_CONFIG_IMPL_H

#include "config.h"

struct PrunusConfig {
  config_t cfg;
  char *path;           /* as given to prunus_config_load */
  char *dir;            /* absolute folder of path: include dir, base of relative paths */
  GHashTable *read;     /* set of config_setting_t *: looked up or marked read */
  GHashTable *from_set; /* set of config_setting_t *: created or changed by --set */
  GHashTable *asked;    /* group setting -> GPtrArray of key names looked up in it */
  GHashTable
      *origin; /* config_setting_t * -> "file:line" of the experiment key it was merged from */
};

/* "train.lr" or "model.layers[2].units" (transfer full). */
char *prunus_config_setting_path(const config_setting_t *s);
char *prunus_config_member_path(const config_setting_t *group, const char *key);
/* "an integer", "a string", ... for a CONFIG_TYPE_*. */
const char *prunus_config_type_name(int type);

/* " (did you mean 'x'?)" for an unknown key close to a read sibling, or "" (transfer full). */
char *prunus_config_unknown_key_hint(PrunusConfig *c, const config_setting_t *s);
/* An int setting (int64 in range accepted) into *out, or a typed error. */
gboolean prunus_config_setting_to_int(PrunusConfig *c, const config_setting_t *s, int *out,
                                      GError **error);

#endif
