/* config.c: libconfig files read strictly. Owns the parsed config_t, the record of
 * which settings were read (the rest are "file:line: unknown key" errors), --set
 * overrides, experiment merging, dump and hash. Group parsing is in run_config.c. */
#include "config-impl.h"
#include "strdist.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>
#include <sys/stat.h>

#define MAX_UNREAD_LISTED 5

/* ------------------------------------------------------------------------ */
/* key paths, locations and error messages */

static void append_path(GString *out, const config_setting_t *s) {
  const config_setting_t *parent = config_setting_parent(s);
  if (!parent) return; /* the root has no name */
  append_path(out, parent);
  const char *name = config_setting_name(s);
  if (name) {
    if (out->len) g_string_append_c(out, '.');
    g_string_append(out, name);
  } else {
    g_string_append_printf(out, "[%d]", config_setting_index(s));
  }
}

/* "model.layers[2].units" (transfer full) */
char *prunus_config_setting_path(const config_setting_t *s) {
  GString *out = g_string_new(NULL);
  append_path(out, s);
  return g_string_free(out, FALSE);
}

/* "model.layers[2].units" for a key of group that may not exist (transfer full) */
char *prunus_config_member_path(const config_setting_t *group, const char *key) {
  char *gp = prunus_config_setting_path(group);
  char *p = *gp ? g_strdup_printf("%s.%s", gp, key) : g_strdup(key);
  g_free(gp);
  return p;
}

const char *prunus_config_type_name(int type) {
  switch (type) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64:
    return "an integer";
  case CONFIG_TYPE_FLOAT:
    return "a float";
  case CONFIG_TYPE_STRING:
    return "a string";
  case CONFIG_TYPE_BOOL:
    return "a boolean";
  case CONFIG_TYPE_GROUP:
    return "a group";
  case CONFIG_TYPE_ARRAY:
    return "an array";
  case CONFIG_TYPE_LIST:
    return "a list";
  default:
    return "nothing";
  }
}

char *prunus_config_where(PrunusConfig *c, const config_setting_t *s) {
  g_return_val_if_fail(c != NULL && s != NULL, NULL);
  /* Array elements and settings made by --set have no line of their own: the
   * nearest ancestor that has one says where to look. */
  for (const config_setting_t *t = s; t; t = config_setting_parent(t)) {
    const char *merged = g_hash_table_lookup(c->origin, t);
    if (merged) return g_strdup(merged);
    if (g_hash_table_contains(c->from_set, t)) {
      char *path = prunus_config_setting_path(t);
      char *where = g_strdup_printf("--set %s", path);
      g_free(path);
      return where;
    }
    if (config_setting_source_line(t) > 0) {
      const char *file = config_setting_source_file(t);
      return g_strdup_printf("%s:%u", file ? file : c->path, config_setting_source_line(t));
    }
  }
  return g_strdup(c->path);
}

gboolean prunus_config_fail_at(PrunusConfig *c, const config_setting_t *s, GError **error,
                               const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  char *where = prunus_config_where(c, s);
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "%s: %s", where, msg);
  g_free(where);
  g_free(msg);
  return FALSE;
}

static gboolean type_error(PrunusConfig *c, const config_setting_t *s, const char *expected,
                           GError **error) {
  char *path = prunus_config_setting_path(s);
  prunus_config_fail_at(c, s, error, "key '%s': expected %s, found %s", path, expected,
                        prunus_config_type_name(config_setting_type(s)));
  g_free(path);
  return FALSE;
}

static gboolean out_of_range(PrunusConfig *c, config_setting_t *group, const char *key,
                             const char *found, const char *allowed, GError **error) {
  config_setting_t *s = config_setting_get_member(group, key);
  char *path = prunus_config_member_path(group, key);
  prunus_config_fail_at(c, s ? s : group, error, "key '%s' = %s is out of range: must be %s", path,
                        found, allowed);
  g_free(path);
  return FALSE;
}

gboolean prunus_config_get_int_min(PrunusConfig *c, config_setting_t *group, const char *key,
                                   gboolean required, int defval, int lo, int *out,
                                   GError **error) {
  return prunus_config_get_int_in(c, group, key, required, defval, lo, G_MAXINT, out, error);
}

gboolean prunus_config_get_int_in(PrunusConfig *c, config_setting_t *group, const char *key,
                                  gboolean required, int defval, int lo, int hi, int *out,
                                  GError **error) {
  if (!prunus_config_get_int(c, group, key, required, defval, out, error)) return FALSE;
  if (*out >= lo && *out <= hi) return TRUE;
  char found[32], allowed[48];
  g_snprintf(found, sizeof found, "%d", *out);
  if (hi == G_MAXINT)
    g_snprintf(allowed, sizeof allowed, ">= %d", lo);
  else
    g_snprintf(allowed, sizeof allowed, "in [%d, %d]", lo, hi);
  return out_of_range(c, group, key, found, allowed, error);
}

gboolean prunus_config_get_double_in(PrunusConfig *c, config_setting_t *group, const char *key,
                                     gboolean required, double defval, double lo, gboolean lo_open,
                                     double hi, gboolean hi_open, double *out, GError **error) {
  if (!prunus_config_get_double(c, group, key, required, defval, out, error)) return FALSE;
  double v = *out;
  if ((lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi)) return TRUE;
  char found[48], allowed[64];
  g_snprintf(found, sizeof found, "%g", v);
  if (isinf(hi))
    g_snprintf(allowed, sizeof allowed, "%s %g", lo_open ? ">" : ">=", lo);
  else
    g_snprintf(allowed, sizeof allowed, "in %c%g, %g%c", lo_open ? '(' : '[', lo, hi,
               hi_open ? ')' : ']');
  return out_of_range(c, group, key, found, allowed, error);
}

/* " (did you mean 'epochs'?)" when a key looked up in s's group, or a sibling
 * that was read, is within a small edit distance of s's name; else "".
 * (transfer full) */
char *prunus_config_unknown_key_hint(PrunusConfig *c, const config_setting_t *s) {
  const char *name = config_setting_name(s);
  const config_setting_t *group = config_setting_parent(s);
  if (!name || !group) return g_strdup("");
  GPtrArray *cands = g_ptr_array_new();
  GPtrArray *asked = g_hash_table_lookup(c->asked, group);
  if (asked)
    for (guint i = 0; i < asked->len; i++) g_ptr_array_add(cands, asked->pdata[i]);
  int n = config_setting_length(group);
  for (int i = 0; i < n; i++) {
    config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
    if (config_setting_name(m) && g_hash_table_contains(c->read, m))
      g_ptr_array_add(cands, (gpointer)config_setting_name(m));
  }
  const char *best = NULL;
  guint best_d = G_MAXUINT;
  guint limit = prunus_edit_distance_hint_limit(name);
  for (guint i = 0; i < cands->len; i++) {
    const char *cand = cands->pdata[i];
    if (strcmp(cand, name) == 0) continue;
    guint d = prunus_edit_distance(name, cand);
    if (d <= limit && d < best_d) best = cand, best_d = d;
  }
  char *hint = best ? g_strdup_printf(" (did you mean '%s'?)", best) : g_strdup("");
  g_ptr_array_free(cands, TRUE);
  return hint;
}

/* ------------------------------------------------------------------------ */
/* read tracking */

void prunus_config_mark_read(PrunusConfig *c, const config_setting_t *s) {
  g_return_if_fail(c != NULL && s != NULL);
  g_hash_table_add(c->read, (gpointer)s);
}

void prunus_config_mark_read_tree(PrunusConfig *c, const config_setting_t *s) {
  g_return_if_fail(c != NULL && s != NULL);
  prunus_config_mark_read(c, s);
  if (!config_setting_is_aggregate(s)) return;
  int n = config_setting_length(s);
  for (int i = 0; i < n; i++)
    prunus_config_mark_read_tree(c, config_setting_get_elem(s, (unsigned)i));
}

static void note_asked(PrunusConfig *c, const config_setting_t *group, const char *key) {
  GPtrArray *names = g_hash_table_lookup(c->asked, group);
  if (!names) {
    names = g_ptr_array_new_with_free_func(g_free);
    g_hash_table_insert(c->asked, (gpointer)group, names);
  }
  for (guint i = 0; i < names->len; i++)
    if (strcmp(names->pdata[i], key) == 0) return;
  g_ptr_array_add(names, g_strdup(key));
}

/* Drop every record of s and its children, before libconfig frees them. */
static void forget_tree(PrunusConfig *c, const config_setting_t *s) {
  g_hash_table_remove(c->read, s);
  g_hash_table_remove(c->from_set, s);
  g_hash_table_remove(c->asked, s);
  g_hash_table_remove(c->origin, s);
  if (!config_setting_is_aggregate(s)) return;
  int n = config_setting_length(s);
  for (int i = 0; i < n; i++) forget_tree(c, config_setting_get_elem(s, (unsigned)i));
}

static void collect_unread(PrunusConfig *c, const config_setting_t *s, GPtrArray *found) {
  int n = config_setting_length(s);
  for (int i = 0; i < n; i++) {
    config_setting_t *child = config_setting_get_elem(s, (unsigned)i);
    /* Only named settings are keys; list elements are values of a read list. */
    if (config_setting_name(child) && !g_hash_table_contains(c->read, child)) {
      g_ptr_array_add(found, child);
      continue;
    }
    if (config_setting_is_group(child) || config_setting_is_list(child))
      collect_unread(c, child, found);
  }
}

gboolean prunus_config_check_unread(PrunusConfig *c, GError **error) {
  g_return_val_if_fail(c != NULL, FALSE);
  GPtrArray *found = g_ptr_array_new();
  collect_unread(c, config_root_setting(&c->cfg), found);
  gboolean ok = found->len == 0;
  if (!ok) {
    GString *msg = g_string_new(NULL);
    for (guint i = 0; i < found->len && i < MAX_UNREAD_LISTED; i++) {
      const config_setting_t *s = found->pdata[i];
      char *where = prunus_config_where(c, s);
      char *path = prunus_config_setting_path(s);
      char *hint = prunus_config_unknown_key_hint(c, s);
      g_string_append_printf(msg, "%s%s: unknown key '%s'%s", i ? "\n" : "", where, path, hint);
      g_free(hint);
      g_free(path);
      g_free(where);
    }
    if (found->len > MAX_UNREAD_LISTED)
      g_string_append_printf(msg, "\n(and %u more unknown keys)", found->len - MAX_UNREAD_LISTED);
    g_set_error_literal(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, msg->str);
    g_string_free(msg, TRUE);
  }
  g_ptr_array_free(found, TRUE);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* loading */

/* libconfig 1.5's scanner calls exit() ("input in flex scanner failed") when an
 * @include names what it cannot read as a file: a folder, "" (the include folder
 * itself). So every @include, nested ones too, is checked first: its target must be a
 * regular file. It reads every @include as the first config's folder + "/" + the
 * path, absolute paths too, so those are refused here with a message that says so. A
 * directive is recognised where libconfig's scanner does, at the start of a line;
 * nesting deeper than libconfig's own limit is left to it to refuse. */
#define INCLUDE_MAX_DEPTH 10

/* libconfig 1.5's scanner reads an integer literal without L through atoi (strtoul for
 * hex): 4294967328 becomes 32 and 3000000000 a negative number, with no error, so the
 * config would run another experiment than the one written. So every integer literal in
 * the text is checked first: without L it must fit in 32 bits (hex up to 0x7fffffff,
 * beyond which the scanner gives a negative number), with L in 64. Strings and comments
 * are skipped as the scanner skips them; a name (which may hold digits and '-') is not a
 * number; a literal with '.' or an exponent is a float. */
static gboolean check_int_literals(const char *path, const char *text, gsize len, GError **error) {
  const char *p = text, *end = text + len;
  int line = 1;
  if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "%s:1: the file starts with a UTF-8 byte-order mark (EF BB BF), which libconfig "
                "reads as a syntax error: save it without one",
                path);
    return FALSE;
  }
  while (p < end) {
    char ch = *p;
    if (ch == '\n') {
      line++, p++;
    } else if (ch == '#' || (ch == '/' && p + 1 < end && p[1] == '/')) {
      while (p < end && *p != '\n') p++;
    } else if (ch == '/' && p + 1 < end && p[1] == '*') {
      for (p += 2; p < end && !(*p == '*' && p + 1 < end && p[1] == '/'); p++) line += *p == '\n';
      p = MIN(p + 2, end);
    } else if (ch == '"') {
      for (p++; p < end && *p != '"'; p++) {
        if (*p == '\\' && p + 1 < end) p++;
        line += *p == '\n';
      }
      p = MIN(p + 1, end);
    } else if (g_ascii_isalpha(ch) || ch == '*' || ch == '@') {
      for (p++; p < end && (g_ascii_isalnum(*p) || *p == '-' || *p == '_' || *p == '*'); p++)
        ;
    } else if (g_ascii_isdigit(ch) || (ch == '.' && p + 1 < end && g_ascii_isdigit(p[1])) ||
               ((ch == '-' || ch == '+') && p + 1 < end &&
                (g_ascii_isdigit(p[1]) || (p[1] == '.' && p + 2 < end && g_ascii_isdigit(p[2]))))) {
      const char *start = p;
      gboolean sign = ch == '-' || ch == '+';
      if (sign) p++;
      gboolean hex = p + 1 < end && p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
      if (hex) p += 2;
      while (p < end && (hex ? g_ascii_isxdigit(*p) : g_ascii_isdigit(*p))) p++;
      /* a float (".5" too); a signed hex number is libconfig's syntax error to report */
      if ((!hex && p < end && (*p == '.' || *p == 'e' || *p == 'E')) || (hex && sign)) {
        while (p < end && (g_ascii_isalnum(*p) || strchr(".+-", *p))) p++;
        continue;
      }
      char *literal = g_strndup(start, (size_t)(p - start));
      gboolean wide = p < end && *p == 'L';
      while (p < end && *p == 'L') p++;
      errno = 0;
      gboolean fits;
      if (hex) {
        unsigned long long v = strtoull(literal, NULL, 16);
        fits = errno == 0 &&
               v <= (wide ? (unsigned long long)INT64_MAX : (unsigned long long)INT32_MAX);
      } else {
        long long v = strtoll(literal, NULL, 10);
        fits = errno == 0 && (wide || (v >= INT32_MIN && v <= INT32_MAX));
      }
      if (!fits && wide)
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                    "%s:%d: the integer %sL does not fit in 64 bits", path, line, literal);
      else if (!fits)
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                    "%s:%d: the integer %s does not fit in a 32-bit integer, which libconfig "
                    "would silently turn into another number (a key that takes 64 bits, as "
                    "seed does, reads it written with an L: %sL)",
                    path, line, literal, literal);
      if (!fits) {
        g_free(literal);
        return FALSE;
      }
      g_free(literal);
    } else {
      p++;
    }
  }
  return TRUE;
}

static gboolean check_includes(const char *path, const char *include_dir, int depth,
                               GError **error) {
  char *text = NULL;
  gsize len = 0;
  if (depth > INCLUDE_MAX_DEPTH || !g_file_get_contents(path, &text, &len, NULL)) return TRUE;
  gboolean ok = check_int_literals(path, text, len, error);
  int line = 1;
  for (const char *p = text; ok && p < text + len; line++) {
    const char *end = memchr(p, '\n', (size_t)(text + len - p));
    if (!end) end = text + len;
    const char *q = p;
    while (q < end && (*q == ' ' || *q == '\t')) q++;
    if ((size_t)(end - q) > 8 && !strncmp(q, "@include", 8)) {
      q += 8;
      while (q < end && (*q == ' ' || *q == '\t')) q++;
      const char *close = q < end && *q == '"' ? memchr(q + 1, '"', (size_t)(end - q - 1)) : NULL;
      if (close) {
        char *name = g_strndup(q + 1, (size_t)(close - q - 1));
        char *target = g_build_filename(include_dir, name, NULL);
        if (g_path_is_absolute(name)) {
          g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                      "%s:%d: @include \"%s\": an absolute path; libconfig reads every @include "
                      "relative to the first config's folder '%s': write the path relative to it",
                      path, line, name, include_dir);
          ok = FALSE;
        } else if (!g_file_test(target, G_FILE_TEST_IS_REGULAR)) {
          g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                      "%s:%d: @include \"%s\": %s is not a file (@include paths are relative to "
                      "'%s')",
                      path, line, name, target, include_dir);
          ok = FALSE;
        } else {
          ok = check_includes(target, include_dir, depth + 1, error);
        }
        g_free(target);
        g_free(name);
      }
    }
    p = end + 1;
  }
  g_free(text);
  return ok;
}

/* libconfig reads a float literal beyond a double (1e999) as infinity. No setting means
 * that, and config.cfg, the dump prunus writes, could not be read back with one ("inf"
 * is not libconfig syntax), so every float in the file is checked at load, those of
 * the groups plugins read included: the host's typed getters check again for values
 * given by --set. */
static gboolean check_finite(PrunusConfig *c, const config_setting_t *s, GError **error) {
  if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
    double v = config_setting_get_float(s);
    if (isfinite(v)) return TRUE;
    char *path = prunus_config_setting_path(s);
    prunus_config_fail_at(c, s, error, "key '%s' = %g is not a finite number", path, v);
    g_free(path);
    return FALSE;
  }
  if (!config_setting_is_aggregate(s)) return TRUE;
  for (int i = 0; i < config_setting_length(s); i++)
    if (!check_finite(c, config_setting_get_elem(s, (unsigned)i), error)) return FALSE;
  return TRUE;
}

/* Larger than any config: a path to a device or a data file by mistake. */
#define CONFIG_MAX_BYTES (16 << 20)

PrunusConfig *prunus_config_load(const char *path, GError **error) {
  g_return_val_if_fail(path != NULL, NULL);
  /* a config is read twice (its @includes are checked first), which a pipe cannot give
   * (`prunus run <(...)`), and a device (/dev/urandom) would never end: files only */
  GStatBuf st;
  gboolean exists = g_stat(path, &st) == 0;
  if (exists && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO,
                "cannot read config file '%s': it is %s, not a file (write it to a file)", path,
                S_ISFIFO(st.st_mode) ? "a pipe" : "a device");
    return NULL;
  }
  if (exists && S_ISREG(st.st_mode) && st.st_size > CONFIG_MAX_BYTES) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO,
                "cannot read config file '%s': %lld bytes, more than a config's %d", path,
                (long long)st.st_size, CONFIG_MAX_BYTES);
    return NULL;
  }
  FILE *probe = g_fopen(path, "r");
  if (!probe) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot read config file '%s': %s", path,
                g_strerror(e));
    return NULL;
  }
  fclose(probe);
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO,
                "cannot read config file '%s': it is a folder", path);
    return NULL;
  }

  PrunusConfig *c = g_new0(PrunusConfig, 1);
  config_init(&c->cfg);
  c->path = g_strdup(path);
  char *dir = g_path_get_dirname(path);
  c->dir = g_canonicalize_filename(dir, NULL);
  g_free(dir);
  c->read = g_hash_table_new(NULL, NULL);
  c->from_set = g_hash_table_new(NULL, NULL);
  c->origin = g_hash_table_new_full(NULL, NULL, NULL, g_free);
  c->asked = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify)g_ptr_array_unref);
  config_set_include_dir(&c->cfg, c->dir);
  if (!check_includes(path, c->dir, 1, error)) goto out_free_config;

  if (!config_read_file(&c->cfg, path)) {
    const char *text = config_error_text(&c->cfg);
    if (config_error_type(&c->cfg) == CONFIG_ERR_FILE_IO) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot read config file '%s': %s", path,
                  text ? text : "I/O error");
    } else {
      const char *file = config_error_file(&c->cfg);
      gboolean include = text && strstr(text, "include");
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "%s:%d: %s%s%s%s", file ? file : path,
                  config_error_line(&c->cfg), text ? text : "parse error",
                  include ? " (@include paths are relative to '" : "", include ? c->dir : "",
                  include ? "')" : "");
    }
    goto out_free_config;
  }
  if (!check_finite(c, config_root_setting(&c->cfg), error)) goto out_free_config;
  return c;

out_free_config:
  prunus_config_free(c);
  return NULL;
}

void prunus_config_free(PrunusConfig *c) {
  if (!c) return;
  config_destroy(&c->cfg);
  g_hash_table_destroy(c->asked);
  g_hash_table_destroy(c->origin);
  g_hash_table_destroy(c->from_set);
  g_hash_table_destroy(c->read);
  g_free(c->dir);
  g_free(c->path);
  g_free(c);
}

config_setting_t *prunus_config_root(PrunusConfig *c) {
  g_return_val_if_fail(c != NULL, NULL);
  return config_root_setting(&c->cfg);
}

const char *prunus_config_path(PrunusConfig *c) {
  g_return_val_if_fail(c != NULL, NULL);
  return c->path;
}

/* ------------------------------------------------------------------------ */
/* typed, tracked getters */

/* *out = group.key (NULL when absent); marks it read. Absent and required is an
 * error naming the group's file:line. */
static gboolean lookup_key(PrunusConfig *c, config_setting_t *group, const char *key,
                           gboolean required, config_setting_t **out, GError **error) {
  g_return_val_if_fail(c != NULL && group != NULL && key != NULL, FALSE);
  g_return_val_if_fail(config_setting_is_group(group), FALSE);
  note_asked(c, group, key);
  *out = config_setting_get_member(group, key);
  if (*out) {
    prunus_config_mark_read(c, *out);
    return TRUE;
  }
  if (!required) return TRUE;
  if (config_setting_is_root(group))
    return prunus_config_fail_at(c, group, error, "the top level is missing the required key '%s'",
                                 key);
  char *gp = prunus_config_setting_path(group);
  prunus_config_fail_at(c, group, error, "group '%s' is missing the required key '%s'", gp, key);
  g_free(gp);
  return FALSE;
}

gboolean prunus_config_setting_to_int(PrunusConfig *c, const config_setting_t *s, int *out,
                                      GError **error) {
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
    *out = config_setting_get_int(s);
    return TRUE;
  case CONFIG_TYPE_INT64: {
    long long v = config_setting_get_int64(s);
    if (v < INT_MIN || v > INT_MAX) {
      char *path = prunus_config_setting_path(s);
      prunus_config_fail_at(c, s, error, "key '%s': %lld does not fit in a 32-bit integer", path,
                            v);
      g_free(path);
      return FALSE;
    }
    *out = (int)v;
    return TRUE;
  }
  default:
    return type_error(c, s, "an integer", error);
  }
}

gboolean prunus_config_get_int(PrunusConfig *c, config_setting_t *group, const char *key,
                               gboolean required, int defval, int *out, GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error)) return FALSE;
  if (!s) {
    *out = defval;
    return TRUE;
  }
  return prunus_config_setting_to_int(c, s, out, error);
}

gboolean prunus_config_get_int64(PrunusConfig *c, config_setting_t *group, const char *key,
                                 gboolean required, int64_t defval, int64_t *out, GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error)) return FALSE;
  if (!s) {
    *out = defval;
    return TRUE;
  }
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
    *out = config_setting_get_int(s);
    return TRUE;
  case CONFIG_TYPE_INT64:
    *out = config_setting_get_int64(s);
    return TRUE;
  default:
    return type_error(c, s, "an integer", error);
  }
}

gboolean prunus_config_get_double(PrunusConfig *c, config_setting_t *group, const char *key,
                                  gboolean required, double defval, double *out, GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error)) return FALSE;
  if (!s) {
    *out = defval;
    return TRUE;
  }
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
    *out = config_setting_get_int(s);
    return TRUE;
  case CONFIG_TYPE_INT64:
    *out = (double)config_setting_get_int64(s);
    return TRUE;
  case CONFIG_TYPE_FLOAT:
    *out = config_setting_get_float(s);
    if (isfinite(*out)) return TRUE;
    {
      /* libconfig reads 1e999 as infinity, --set takes "inf" and "nan": no setting
       * means either, and config.cfg could not be read back with one */
      char *path = prunus_config_setting_path(s);
      prunus_config_fail_at(c, s, error, "key '%s' = %g is not a finite number", path, *out);
      g_free(path);
      return FALSE;
    }
  default:
    return type_error(c, s, "a float", error);
  }
}

gboolean prunus_config_get_bool(PrunusConfig *c, config_setting_t *group, const char *key,
                                gboolean required, gboolean defval, gboolean *out, GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error)) return FALSE;
  if (!s) {
    *out = defval;
    return TRUE;
  }
  if (config_setting_type(s) != CONFIG_TYPE_BOOL) return type_error(c, s, "a boolean", error);
  *out = config_setting_get_bool(s) ? TRUE : FALSE;
  return TRUE;
}

gboolean prunus_config_get_string(PrunusConfig *c, config_setting_t *group, const char *key,
                                  gboolean required, const char *defval, const char **out,
                                  GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error)) return FALSE;
  if (!s) {
    *out = defval;
    return TRUE;
  }
  if (config_setting_type(s) != CONFIG_TYPE_STRING) return type_error(c, s, "a string", error);
  *out = config_setting_get_string(s);
  return TRUE;
}

gboolean prunus_config_get_enum(PrunusConfig *c, config_setting_t *group, const char *key,
                                gboolean required, int defval, const char *const *names, int *out,
                                GError **error) {
  g_return_val_if_fail(names != NULL, FALSE);
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error)) return FALSE;
  if (!s) {
    *out = defval;
    return TRUE;
  }
  if (config_setting_type(s) != CONFIG_TYPE_STRING) return type_error(c, s, "a string", error);
  const char *value = config_setting_get_string(s);
  for (int i = 0; names[i]; i++) {
    if (strcmp(names[i], value) == 0) {
      *out = i;
      return TRUE;
    }
  }
  char *allowed = g_strjoinv(", ", (char **)names);
  char *path = prunus_config_setting_path(s);
  prunus_config_fail_at(c, s, error, "key '%s': unknown value '%s' (expected one of: %s)", path,
                        value, allowed);
  g_free(path);
  g_free(allowed);
  return FALSE;
}

config_setting_t *prunus_config_get_group(PrunusConfig *c, config_setting_t *group, const char *key,
                                          gboolean required, GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error) || !s) return NULL;
  if (!config_setting_is_group(s)) {
    type_error(c, s, "a group", error);
    return NULL;
  }
  return s;
}

config_setting_t *prunus_config_get_list(PrunusConfig *c, config_setting_t *group, const char *key,
                                         gboolean required, GError **error) {
  config_setting_t *s;
  if (!lookup_key(c, group, key, required, &s, error) || !s) return NULL;
  if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
    type_error(c, s, "a list", error);
    return NULL;
  }
  return s;
}

/* ------------------------------------------------------------------------ */
/* --set overrides */

/* One value of a --set: a scalar with its libconfig type. */
typedef struct {
  int type; /* CONFIG_TYPE_INT, _INT64, _FLOAT, _BOOL or _STRING */
  gint64 i;
  double f;
  gboolean b;
  char *s; /* owned */
} SetValue;

static void set_value_clear(gpointer p) {
  SetValue *v = p;
  g_clear_pointer(&v->s, g_free);
}

/* One component of a --set key path: a member name, or a list index. */
typedef struct {
  char *name; /* NULL for an index step */
  int index;
} SetStep;

static void set_step_clear(gpointer p) {
  SetStep *st = p;
  g_clear_pointer(&st->name, g_free);
}

static gboolean parse_int64(const char *text, gint64 *out) {
  if (g_ascii_strncasecmp(text, "0x", 2) == 0) {
    guint64 u;
    if (!g_ascii_string_to_unsigned(text + 2, 16, 0, G_MAXINT64, &u, NULL)) return FALSE;
    *out = (gint64)u;
    return TRUE;
  }
  return g_ascii_string_to_signed(text, 10, G_MININT64, G_MAXINT64, out, NULL);
}

static gboolean parse_double(const char *text, double *out) {
  if (!*text) return FALSE;
  char *end;
  double v = g_ascii_strtod(text, &end);
  if (*end || !isfinite(v)) return FALSE;
  *out = v;
  return TRUE;
}

static gboolean parse_bool(const char *text, gboolean *out) {
  if (g_ascii_strcasecmp(text, "true") == 0) return (*out = TRUE), TRUE;
  if (g_ascii_strcasecmp(text, "false") == 0) return (*out = FALSE), TRUE;
  return FALSE;
}

/* A "quoted" string without its quotes and escapes, or bare text as it is; NULL
 * for an unterminated quote. (transfer full) */
static char *parse_string(const char *text) {
  size_t n = strlen(text);
  if (text[0] != '"') return g_strdup(text);
  if (n < 2 || text[n - 1] != '"' || text[n - 2] == '\\') return NULL;
  char *inner = g_strndup(text + 1, n - 2);
  char *out = g_strcompress(inner);
  g_free(inner);
  return out;
}

static void int_value(gint64 i, SetValue *v) {
  v->type = (i >= INT_MIN && i <= INT_MAX) ? CONFIG_TYPE_INT : CONFIG_TYPE_INT64;
  v->i = i;
}

/* The type of a new key's value, inferred from its text. */
static gboolean infer_scalar(const char *text, SetValue *v) {
  memset(v, 0, sizeof *v);
  if (parse_bool(text, &v->b)) {
    v->type = CONFIG_TYPE_BOOL;
    return TRUE;
  }
  gint64 i;
  if (parse_int64(text, &i)) {
    int_value(i, v);
    return TRUE;
  }
  if (parse_double(text, &v->f)) {
    v->type = CONFIG_TYPE_FLOAT;
    return TRUE;
  }
  v->type = CONFIG_TYPE_STRING;
  v->s = parse_string(text);
  return v->s != NULL;
}

/* text read as a value of an existing setting's type (ints widen to int64). */
static gboolean coerce_scalar(const char *text, int type, SetValue *v) {
  memset(v, 0, sizeof *v);
  v->type = type;
  switch (type) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64: {
    gint64 i;
    if (!parse_int64(text, &i)) return FALSE;
    int_value(i, v);
    if (type == CONFIG_TYPE_INT64) v->type = CONFIG_TYPE_INT64;
    return TRUE;
  }
  case CONFIG_TYPE_FLOAT:
    return parse_double(text, &v->f);
  case CONFIG_TYPE_BOOL:
    return parse_bool(text, &v->b);
  case CONFIG_TYPE_STRING:
    v->s = parse_string(text);
    return v->s != NULL;
  default:
    return FALSE;
  }
}

static void store_value(config_setting_t *s, const SetValue *v) {
  switch (v->type) {
  case CONFIG_TYPE_INT:
    if (config_setting_type(s) == CONFIG_TYPE_INT64)
      config_setting_set_int64(s, v->i);
    else
      config_setting_set_int(s, (int)v->i);
    break;
  case CONFIG_TYPE_INT64:
    /* libconfig stores 0 when an int64 is set on an int setting: widen it first
     * (the struct is public; its type field is what libconfig switches on). */
    if (config_setting_type(s) == CONFIG_TYPE_INT) s->type = CONFIG_TYPE_INT64;
    config_setting_set_int64(s, v->i);
    break;
  case CONFIG_TYPE_FLOAT:
    config_setting_set_float(s, v->f);
    break;
  case CONFIG_TYPE_BOOL:
    config_setting_set_bool(s, v->b);
    break;
  case CONFIG_TYPE_STRING:
    config_setting_set_string(s, v->s);
    break;
  default:
    g_assert_not_reached();
  }
}

/* A scalar setting given another scalar type in place (libconfig has no call for it;
 * the struct is public and its type field is what libconfig switches on): a string's
 * text is freed as libconfig frees it, and the new value starts zeroed. */
static void retype_scalar(config_setting_t *s, int type) {
  if (config_setting_type(s) == type) return;
  if (config_setting_type(s) == CONFIG_TYPE_STRING) free(s->value.sval);
  memset(&s->value, 0, sizeof s->value);
  s->type = (short)type;
  s->format = CONFIG_FORMAT_DEFAULT; /* not hex */
}

static config_setting_t *add_value(config_setting_t *parent, const char *name, const SetValue *v) {
  config_setting_t *s = config_setting_add(parent, name, v->type);
  if (s) store_value(s, v);
  return s;
}

/* "[1, 2.5, "a,b"]" into values of one type (ints widen to floats), or NULL with
 * *why set. (transfer full) */
static GArray *parse_array(const char *text, char **why) {
  size_t n = strlen(text);
  if (n < 2 || text[0] != '[' || text[n - 1] != ']') {
    *why = g_strdup("a list must be written [a, b, ...]");
    return NULL;
  }
  GArray *vals = g_array_new(FALSE, TRUE, sizeof(SetValue));
  g_array_set_clear_func(vals, set_value_clear);
  char *inner = g_strndup(text + 1, n - 2);
  g_strstrip(inner);
  GPtrArray *items = g_ptr_array_new_with_free_func(g_free);
  if (*inner) {
    const char *start = inner;
    gboolean quoted = FALSE;
    for (const char *p = inner;; p++) {
      if (quoted && *p == '\\' && p[1]) {
        p++;
        continue;
      }
      if (*p == '"') quoted = !quoted;
      if (*p == '\0' || (!quoted && *p == ',')) {
        g_ptr_array_add(items, g_strstrip(g_strndup(start, (gsize)(p - start))));
        if (*p == '\0') break;
        start = p + 1;
      }
    }
  }
  gboolean any_float = FALSE, any_int64 = FALSE;
  for (guint i = 0; i < items->len && !*why; i++) {
    const char *item = items->pdata[i];
    SetValue v;
    if (!*item)
      *why = g_strdup("empty element in the list");
    else if (strchr("[({", item[0]))
      *why = g_strdup("nested lists and groups cannot be given with --set");
    else if (!infer_scalar(item, &v))
      *why = g_strdup_printf("unterminated string %s", item);
    else {
      g_array_append_val(vals, v);
      any_float |= v.type == CONFIG_TYPE_FLOAT;
      any_int64 |= v.type == CONFIG_TYPE_INT64;
    }
  }
  /* An array holds one scalar type: ints widen to int64 or float. */
  for (guint i = 0; i < vals->len && !*why; i++) {
    SetValue *v = &g_array_index(vals, SetValue, i);
    gboolean is_int = v->type == CONFIG_TYPE_INT || v->type == CONFIG_TYPE_INT64;
    if (is_int && any_float)
      v->type = CONFIG_TYPE_FLOAT, v->f = (double)v->i;
    else if (is_int && any_int64)
      v->type = CONFIG_TYPE_INT64;
    if (v->type != g_array_index(vals, SetValue, 0).type)
      *why = g_strdup("the elements of a list must all be numbers, all booleans or all strings");
  }
  g_ptr_array_free(items, TRUE);
  g_free(inner);
  if (*why) {
    g_array_free(vals, TRUE);
    return NULL;
  }
  return vals;
}

static gboolean valid_key_name(const char *name, size_t n) {
  if (n == 0 || !(g_ascii_isalpha(name[0]) || name[0] == '*')) return FALSE;
  for (size_t i = 1; i < n; i++)
    if (!(g_ascii_isalnum(name[i]) || strchr("-_*", name[i]))) return FALSE;
  return TRUE;
}

/* "model.layers[1].units" or "model.layers.[1].units" into steps, or NULL with
 * *why set. (transfer full) */
static GArray *parse_key_path(const char *key, char **why) {
  GArray *steps = g_array_new(FALSE, TRUE, sizeof(SetStep));
  g_array_set_clear_func(steps, set_step_clear);
  char **parts = g_strsplit(key, ".", -1);
  for (int k = 0; parts[k] && !*why; k++) {
    const char *p = parts[k];
    size_t name_len = strcspn(p, "[");
    if (name_len == 0 && *p != '[') {
      *why = g_strdup("empty component in the key path");
      break;
    }
    if (name_len > 0) {
      if (!valid_key_name(p, name_len)) {
        *why = g_strdup_printf("'%.*s' is not a valid key name (letters, digits, '-', '_')",
                               (int)name_len, p);
        break;
      }
      SetStep st = {g_strndup(p, name_len), 0};
      g_array_append_val(steps, st);
    }
    for (p += name_len; *p && !*why;) {
      char *end;
      guint64 idx = g_ascii_strtoull(p + 1, &end, 10);
      if (*p != '[' || !g_ascii_isdigit(p[1]) || *end != ']' || idx > INT_MAX) {
        *why = g_strdup_printf("cannot read the list index in '%s' (write name[2])", parts[k]);
        break;
      }
      SetStep st = {NULL, (int)idx};
      g_array_append_val(steps, st);
      p = end + 1;
    }
  }
  g_strfreev(parts);
  if (*why) {
    g_array_free(steps, TRUE);
    return NULL;
  }
  return steps;
}

static void add_tree_to_set(PrunusConfig *c, const config_setting_t *s) {
  g_hash_table_add(c->from_set, (gpointer)s);
  if (!config_setting_is_aggregate(s)) return;
  int n = config_setting_length(s);
  for (int i = 0; i < n; i++) add_tree_to_set(c, config_setting_get_elem(s, (unsigned)i));
}

/* A new key parent.name = value, type inferred. NULL with *why set. */
static config_setting_t *create_key(config_setting_t *parent, const char *name, const char *value,
                                    char **why) {
  if (value[0] == '[') {
    GArray *vals = parse_array(value, why);
    if (!vals) return NULL;
    config_setting_t *s = config_setting_add(parent, name, CONFIG_TYPE_ARRAY);
    for (guint i = 0; s && i < vals->len; i++)
      add_value(s, NULL, &g_array_index(vals, SetValue, i));
    g_array_free(vals, TRUE);
    return s;
  }
  SetValue v;
  if (!infer_scalar(value, &v)) {
    *why = g_strdup_printf("unterminated string %s", value);
    return NULL;
  }
  config_setting_t *s = add_value(parent, name, &v);
  set_value_clear(&v);
  return s;
}

/* The elements of an existing array or list replaced by those of value. */
static gboolean replace_elements(PrunusConfig *c, config_setting_t *s, const char *value,
                                 char **why) {
  char *path = prunus_config_setting_path(s);
  int n = config_setting_length(s);
  int old_type = CONFIG_TYPE_NONE;
  for (int i = 0; i < n; i++) {
    config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    if (config_setting_is_aggregate(e)) {
      *why = g_strdup_printf(
          "key '%s' holds groups or lists; set a key inside one element "
          "(%s[0].KEY=VALUE)",
          path, path);
      goto out_free_path;
    }
    if (i == 0) old_type = config_setting_type(e);
  }
  GArray *vals = parse_array(value, why);
  if (!vals) {
    char *inner = *why;
    *why = g_strdup_printf("key '%s' expects a list, found '%s': %s", path, value, inner);
    g_free(inner);
    goto out_free_path;
  }
  /* The values follow the type the elements had (ints become floats in a float
   * array); a different kind of value is an error. */
  gboolean old_int = old_type == CONFIG_TYPE_INT || old_type == CONFIG_TYPE_INT64;
  for (guint i = 0; i < vals->len && old_type != CONFIG_TYPE_NONE; i++) {
    SetValue *v = &g_array_index(vals, SetValue, i);
    gboolean new_int = v->type == CONFIG_TYPE_INT || v->type == CONFIG_TYPE_INT64;
    if (old_type == CONFIG_TYPE_FLOAT && new_int)
      v->type = CONFIG_TYPE_FLOAT, v->f = (double)v->i;
    else if (!(old_int && new_int) && v->type != old_type) {
      *why = g_strdup_printf("key '%s' is a list of %s values, found '%s'", path,
                             old_int ? "integer" : prunus_config_type_name(old_type), value);
      goto out_free_vals;
    }
  }
  while (n > 0) {
    forget_tree(c, config_setting_get_elem(s, (unsigned)(n - 1)));
    config_setting_remove_elem(s, (unsigned)--n);
  }
  for (guint i = 0; i < vals->len; i++) add_value(s, NULL, &g_array_index(vals, SetValue, i));
  add_tree_to_set(c, s);

out_free_vals:
  g_array_free(vals, TRUE);
out_free_path:
  g_free(path);
  return *why == NULL;
}

/* An existing setting given a new value of its own type. */
static gboolean assign_existing(PrunusConfig *c, config_setting_t *s, const char *value,
                                char **why) {
  int type = config_setting_type(s);
  if (type == CONFIG_TYPE_ARRAY || type == CONFIG_TYPE_LIST)
    return replace_elements(c, s, value, why);
  char *path = prunus_config_setting_path(s);
  SetValue v;
  if (type == CONFIG_TYPE_GROUP) {
    *why = g_strdup_printf("key '%s' is a group; set one of its keys (%s.KEY=VALUE)", path, path);
  } else if (!coerce_scalar(value, type, &v)) {
    *why = g_strdup_printf("key '%s' expects %s, found '%s'", path, prunus_config_type_name(type),
                           value);
  } else {
    const config_setting_t *parent = config_setting_parent(s);
    if (v.type == CONFIG_TYPE_INT64 && type == CONFIG_TYPE_INT && config_setting_is_array(parent))
      *why = g_strdup_printf("key '%s': %s does not fit in a 32-bit integer", path, value);
    else {
      store_value(s, &v);
      g_hash_table_add(c->from_set, s);
    }
    set_value_clear(&v);
  }
  g_free(path);
  return *why == NULL;
}

gboolean prunus_config_apply_set(PrunusConfig *c, const char *assignment, GError **error) {
  g_return_val_if_fail(c != NULL && assignment != NULL, FALSE);
  char *why = NULL;
  GArray *steps = NULL;
  config_setting_t *created_top = NULL; /* removed again when the --set fails */
  const char *eq = strchr(assignment, '=');
  char *key = g_strstrip(g_strndup(assignment, eq ? (gsize)(eq - assignment) : strlen(assignment)));
  char *value = g_strstrip(g_strdup(eq ? eq + 1 : ""));
  if (!eq || !*key) {
    why = g_strdup("expected KEY=VALUE, e.g. train.epochs=3");
    goto out_report;
  }
  steps = parse_key_path(key, &why);
  if (!steps) goto out_report;

  config_setting_t *cur = config_root_setting(&c->cfg);
  gboolean created_leaf = FALSE;
  for (guint i = 0; i < steps->len; i++) {
    SetStep *st = &g_array_index(steps, SetStep, i);
    gboolean last = i + 1 == steps->len;
    char *cur_path = prunus_config_setting_path(cur);
    if (st->name && !config_setting_is_group(cur)) {
      why = g_strdup_printf("'%s' is %s, not a group", cur_path,
                            prunus_config_type_name(config_setting_type(cur)));
    } else if (!st->name && !config_setting_is_list(cur) && !config_setting_is_array(cur)) {
      why = g_strdup_printf("'%s' is %s, not a list", cur_path,
                            prunus_config_type_name(config_setting_type(cur)));
    } else if (!st->name && st->index >= config_setting_length(cur)) {
      why = g_strdup_printf("index %d is out of range: '%s' has %d elements", st->index, cur_path,
                            config_setting_length(cur));
    }
    g_free(cur_path);
    if (why) goto out_report;
    if (!st->name) {
      cur = config_setting_get_elem(cur, (unsigned)st->index);
      continue;
    }
    config_setting_t *next = config_setting_get_member(cur, st->name);
    if (!next && !last && !g_array_index(steps, SetStep, i + 1).name) {
      char *parent = prunus_config_setting_path(cur);
      char *path = *parent ? g_strdup_printf("%s.%s", parent, st->name) : g_strdup(st->name);
      g_free(parent);
      why = g_strdup_printf(
          "the config has no list '%s' to index: --set adds keys, not lists; "
          "write the list in the config file",
          path);
      g_free(path);
      goto out_report;
    }
    if (!next) {
      next = last ? create_key(cur, st->name, value, &why)
                  : config_setting_add(cur, st->name, CONFIG_TYPE_GROUP);
      if (!next) {
        if (!why) why = g_strdup_printf("cannot add key '%s'", st->name);
        goto out_report;
      }
      if (!created_top) created_top = next;
      add_tree_to_set(c, next);
      created_leaf = last;
    }
    cur = next;
  }
  if (!created_leaf && config_setting_source_line(cur) == 0 &&
      g_hash_table_contains(c->from_set, cur) && !config_setting_is_aggregate(cur)) {
    /* a key an earlier --set added (it has no line of its own) takes this value's type,
     * as the first did, in its place: the config and its hash are those of one --set */
    SetValue v;
    if (value[0] == '[' || !infer_scalar(value, &v)) {
      why = g_strdup_printf("key '%s' was set to a single value before; give a single value", key);
      goto out_report;
    }
    retype_scalar(cur, v.type);
    store_value(cur, &v);
    set_value_clear(&v);
  } else if (!created_leaf && !assign_existing(c, cur, value, &why)) {
    goto out_report;
  }
  created_top = NULL; /* kept */

out_report:;
  gboolean ok = why == NULL;
  if (!ok) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "--set %s: %s", assignment, why);
    if (created_top) {
      config_setting_t *parent = config_setting_parent(created_top);
      forget_tree(c, created_top);
      config_setting_remove_elem(parent, (unsigned)config_setting_index(created_top));
    }
  }
  if (steps) g_array_free(steps, TRUE);
  g_free(why);
  g_free(value);
  g_free(key);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* paths, dump and hash */

char *prunus_config_resolve_path(PrunusConfig *c, const char *path) {
  g_return_val_if_fail(c != NULL && path != NULL, NULL);
  if (g_path_is_absolute(path)) return g_strdup(path);
  return g_build_filename(c->dir, path, NULL);
}

gboolean prunus_config_fail_missing_path(PrunusConfig *c, const config_setting_t *at,
                                         const char *key, const char *what, const char *resolved,
                                         GError **error) {
  const char *given =
      at && config_setting_type(at) == CONFIG_TYPE_STRING ? config_setting_get_string(at) : NULL;
  if (!given || g_path_is_absolute(given))
    return prunus_config_fail_at(c, at, error, "%s: no %s %s", key, what, resolved);
  return prunus_config_fail_at(c, at, error,
                               "%s: no %s %s (\"%s\", relative to the config's folder)", key, what,
                               resolved, given);
}

char *prunus_config_dump(PrunusConfig *c) {
  g_return_val_if_fail(c != NULL, NULL);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) g_error("open_memstream: %s", g_strerror(errno)); /* only on out-of-memory */
  config_write(&c->cfg, f);
  fclose(f);
  char *out = g_strndup(buf, len);
  free(buf);
  return out;
}

/* The settings read as paths relative to the config's folder, by their path from the
 * root (or from one experiments[] entry, which may override them). */
static const char *const path_keys[] = {
    "dataset.train_images", "dataset.train_labels", "dataset.test_images",
    "dataset.test_labels",  "prune.pretrained",     "plugin_path",
};

/* Point every relative path string under root (the config's root or an experiment) at
 * its absolute form; with undo, the original strings go to `undo` (setting, old text)
 * to be put back. */
static void resolve_paths_under(PrunusConfig *c, config_setting_t *root, GPtrArray *undo) {
  for (size_t k = 0; k < G_N_ELEMENTS(path_keys); k++) {
    config_setting_t *s = config_setting_lookup(root, path_keys[k]);
    if (!s) continue;
    int n = config_setting_is_aggregate(s) ? config_setting_length(s) : 1;
    for (int i = 0; i < n; i++) {
      config_setting_t *e =
          config_setting_is_aggregate(s) ? config_setting_get_elem(s, (unsigned)i) : s;
      const char *p =
          config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
      if (!p || !*p || g_path_is_absolute(p)) continue;
      char *abs = prunus_config_resolve_path(c, p);
      g_ptr_array_add(undo, e);
      g_ptr_array_add(undo, g_strdup(p));
      config_setting_set_string(e, abs);
      g_free(abs);
    }
  }
}

char *prunus_config_dump_resolved(PrunusConfig *c) {
  g_return_val_if_fail(c != NULL, NULL);
  GPtrArray *undo = g_ptr_array_new();
  config_setting_t *root = config_root_setting(&c->cfg);
  resolve_paths_under(c, root, undo);
  config_setting_t *ex = config_setting_get_member(root, "experiments");
  for (int i = 0; ex && config_setting_is_list(ex) && i < config_setting_length(ex); i++) {
    config_setting_t *e = config_setting_get_elem(ex, (unsigned)i);
    if (config_setting_is_group(e)) resolve_paths_under(c, e, undo);
  }
  char *text = prunus_config_dump(c);
  for (guint i = 0; i < undo->len; i += 2) {
    config_setting_set_string(undo->pdata[i], undo->pdata[i + 1]);
    g_free(undo->pdata[i + 1]);
  }
  g_ptr_array_free(undo, TRUE);
  return text;
}

char *prunus_config_hash(PrunusConfig *c) {
  char *dump = prunus_config_dump(c);
  char *hash = g_compute_checksum_for_string(G_CHECKSUM_SHA256, dump, -1);
  g_free(dump);
  return hash;
}

/* ------------------------------------------------------------------------ */
/* merging experiment overrides */

gboolean prunus_config_merged(PrunusConfig *c, const config_setting_t *s) {
  for (const config_setting_t *t = s; t; t = config_setting_parent(t))
    if (g_hash_table_contains(c->origin, t)) return TRUE;
  return FALSE;
}

/* Copy src's value (and children) into dst, a fresh setting of the same type. */
static void copy_value(PrunusConfig *c, config_setting_t *dst, const config_setting_t *src) {
  g_hash_table_insert(c->origin, dst, prunus_config_where(c, src));
  switch (config_setting_type(src)) {
  case CONFIG_TYPE_INT:
    config_setting_set_int(dst, config_setting_get_int(src));
    break;
  case CONFIG_TYPE_INT64:
    config_setting_set_int64(dst, config_setting_get_int64(src));
    break;
  case CONFIG_TYPE_FLOAT:
    config_setting_set_float(dst, config_setting_get_float(src));
    break;
  case CONFIG_TYPE_BOOL:
    config_setting_set_bool(dst, config_setting_get_bool(src));
    break;
  case CONFIG_TYPE_STRING:
    config_setting_set_string(dst, config_setting_get_string(src));
    break;
  case CONFIG_TYPE_GROUP:
  case CONFIG_TYPE_LIST:
  case CONFIG_TYPE_ARRAY:
    for (int i = 0; i < config_setting_length(src); i++) {
      const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
      config_setting_t *n =
          config_setting_add(dst, config_setting_is_group(src) ? config_setting_name(e) : NULL,
                             config_setting_type(e));
      if (n) copy_value(c, n, e);
    }
    break;
  default:
    break;
  }
}

/* s, or the first setting under it, that --set made or changed; NULL when none. */
static const config_setting_t *set_within(PrunusConfig *c, const config_setting_t *s) {
  if (g_hash_table_contains(c->from_set, s)) return s;
  if (!config_setting_is_aggregate(s)) return NULL;
  for (int i = 0; i < config_setting_length(s); i++) {
    const config_setting_t *found = set_within(c, config_setting_get_elem(s, (unsigned)i));
    if (found) return found;
  }
  return NULL;
}

/* A --set of a base key that an experiment's entry sets too has no effect in that
 * experiment: said once per key and place (each experiment and seed merges again). */
static void warn_set_replaced(PrunusConfig *c, const config_setting_t *set,
                              const config_setting_t *src) {
  static GHashTable *said; /* "path\nwhere": a process runs one config */
  if (!said) said = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  char *path = prunus_config_setting_path(set);
  char *where = prunus_config_where(c, src);
  char *key = g_strdup_printf("%s\n%s", path, where);
  if (g_hash_table_add(said, key))
    g_printerr(
        "prunus: warning: --set %s does not reach the experiment whose entry sets it "
        "too (%s): its own value wins there; --set experiments[N].%s changes that one\n",
        path, where, path);
  g_free(where);
  g_free(path);
}

gboolean prunus_config_merge(PrunusConfig *c, config_setting_t *dst_parent,
                             const config_setting_t *src, GError **error) {
  const char *name = config_setting_name(src);
  config_setting_t *existing = config_setting_get_member(dst_parent, name);
  if (existing && config_setting_is_group(existing) && config_setting_is_group(src)) {
    for (int i = 0; i < config_setting_length(src); i++)
      if (!prunus_config_merge(c, existing, config_setting_get_elem(src, (unsigned)i), error))
        return FALSE;
    return TRUE;
  }
  const config_setting_t *set = existing ? set_within(c, existing) : NULL;
  if (set && !g_hash_table_contains(c->from_set, src)) warn_set_replaced(c, set, src);
  if (existing) {
    forget_tree(c, existing);
    config_setting_remove(dst_parent, name);
  }
  config_setting_t *n = config_setting_add(dst_parent, name, config_setting_type(src));
  if (!n) {
    char *where = prunus_config_where(c, src);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "%s: cannot apply key '%s'", where, name);
    g_free(where);
    return FALSE;
  }
  copy_value(c, n, src);
  return TRUE;
}
