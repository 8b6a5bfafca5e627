/* json.h: a small JSON value tree with a strict parser and a writer, used for
 * safetensors headers, summary.json and metrics.jsonl. */
#ifndef PRUNUS_JSON_H
#define PRUNUS_JSON_H

#include <prunus/prunus.h>

G_BEGIN_DECLS

typedef enum {
  PRUNUS_JSON_NULL,
  PRUNUS_JSON_BOOL,
  PRUNUS_JSON_NUMBER,
  PRUNUS_JSON_STRING,
  PRUNUS_JSON_ARRAY,
  PRUNUS_JSON_OBJECT
} PrunusJsonType;

typedef struct PrunusJson PrunusJson;

/* Parse exactly one JSON value filling len bytes (surrounding whitespace allowed).
 * Errors (PRUNUS_ERROR_FORMAT) give the byte offset and what was expected.
 * Nesting deeper than 64 is an error. (transfer full) */
PrunusJson *prunus_json_parse(const char *text, size_t len, GError **error);
void prunus_json_free(PrunusJson *v);

PrunusJsonType prunus_json_type(const PrunusJson *v);
gboolean prunus_json_bool(const PrunusJson *v);
double prunus_json_number(const PrunusJson *v);
const char *prunus_json_string(const PrunusJson *v);                 /* (transfer none) */
size_t prunus_json_length(const PrunusJson *v);                      /* array or object members */
const PrunusJson *prunus_json_index(const PrunusJson *v, size_t i);  /* array item */
const char *prunus_json_key(const PrunusJson *v, size_t i);          /* object key i */
const PrunusJson *prunus_json_member(const PrunusJson *v, size_t i); /* object value i */
const PrunusJson *prunus_json_get(const PrunusJson *v, const char *key); /* NULL if absent */

/* Builders (transfer full); add functions take ownership of the value. */
PrunusJson *prunus_json_new_null(void);
PrunusJson *prunus_json_new_bool(gboolean b);
PrunusJson *prunus_json_new_number(double x); /* NaN/Inf are written as null */
PrunusJson *prunus_json_new_string(const char *s);
PrunusJson *prunus_json_new_array(void);
PrunusJson *prunus_json_new_object(void);
void prunus_json_array_add(PrunusJson *arr, PrunusJson *item);
void prunus_json_object_set(PrunusJson *obj, const char *key, PrunusJson *value); /* replaces */

/* Serialise; indent = 0 gives one line (jsonl), > 0 pretty-prints. Numbers that are
 * integral and |x| < 2^53 are written without a fraction; others with %.9g (enough
 * for float32). (transfer full) */
char *prunus_json_to_string(const PrunusJson *v, int indent);

/* Append a JSON string literal (quoted, escaped) of s to out. */
void prunus_json_escape_append(GString *out, const char *s);

G_END_DECLS

#endif
