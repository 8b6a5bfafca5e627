/* json.c: the JSON value tree, its strict RFC 8259 parser (byte-offset errors,
 * nesting limit) and its writer (one-line or pretty, keys in insertion order). */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#define PRUNUS_JSON_MAX_DEPTH 64
/* Objects with more members than this keep a key -> index hash for lookups. */
#define PRUNUS_JSON_INDEX_MIN 16

struct PrunusJson {
  PrunusJsonType type;
  union {
    gboolean b;
    double num;
    char *str;
    struct {
      PrunusJson **items; /* (n) */
      size_t n, cap;
    } arr;
    struct {
      char **keys;       /* (n) owned */
      PrunusJson **vals; /* (n) owned */
      size_t n, cap;
      GHashTable *index; /* key (borrowed from keys) -> index + 1; NULL while small */
    } obj;
  } u;
};

/* ------------------------------------------------------------------------- */
/* Values and accessors */

static PrunusJson *json_alloc(PrunusJsonType type) {
  PrunusJson *v = g_new0(PrunusJson, 1);
  v->type = type;
  return v;
}

void prunus_json_free(PrunusJson *v) {
  if (!v) return;
  switch (v->type) {
  case PRUNUS_JSON_STRING:
    g_free(v->u.str);
    break;
  case PRUNUS_JSON_ARRAY:
    for (size_t i = 0; i < v->u.arr.n; i++) prunus_json_free(v->u.arr.items[i]);
    g_free(v->u.arr.items);
    break;
  case PRUNUS_JSON_OBJECT:
    if (v->u.obj.index) g_hash_table_destroy(v->u.obj.index);
    for (size_t i = 0; i < v->u.obj.n; i++) {
      g_free(v->u.obj.keys[i]);
      prunus_json_free(v->u.obj.vals[i]);
    }
    g_free(v->u.obj.keys);
    g_free(v->u.obj.vals);
    break;
  default:
    break;
  }
  g_free(v);
}

PrunusJsonType prunus_json_type(const PrunusJson *v) {
  g_return_val_if_fail(v != NULL, PRUNUS_JSON_NULL);
  return v->type;
}

gboolean prunus_json_bool(const PrunusJson *v) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_BOOL, FALSE);
  return v->u.b;
}

double prunus_json_number(const PrunusJson *v) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_NUMBER, NAN);
  return v->u.num;
}

const char *prunus_json_string(const PrunusJson *v) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_STRING, NULL);
  return v->u.str;
}

size_t prunus_json_length(const PrunusJson *v) {
  g_return_val_if_fail(v != NULL, 0);
  if (v->type == PRUNUS_JSON_ARRAY) return v->u.arr.n;
  if (v->type == PRUNUS_JSON_OBJECT) return v->u.obj.n;
  g_return_val_if_reached(0);
}

const PrunusJson *prunus_json_index(const PrunusJson *v, size_t i) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_ARRAY, NULL);
  g_return_val_if_fail(i < v->u.arr.n, NULL);
  return v->u.arr.items[i];
}

const char *prunus_json_key(const PrunusJson *v, size_t i) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_OBJECT, NULL);
  g_return_val_if_fail(i < v->u.obj.n, NULL);
  return v->u.obj.keys[i];
}

const PrunusJson *prunus_json_member(const PrunusJson *v, size_t i) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_OBJECT, NULL);
  g_return_val_if_fail(i < v->u.obj.n, NULL);
  return v->u.obj.vals[i];
}

/* Index of key in obj, or -1. */
static gssize object_find(const PrunusJson *obj, const char *key) {
  if (obj->u.obj.index) {
    gpointer hit = g_hash_table_lookup(obj->u.obj.index, key);
    return hit ? (gssize)GPOINTER_TO_SIZE(hit) - 1 : -1;
  }
  for (size_t i = 0; i < obj->u.obj.n; i++)
    if (strcmp(obj->u.obj.keys[i], key) == 0) return (gssize)i;
  return -1;
}

const PrunusJson *prunus_json_get(const PrunusJson *v, const char *key) {
  g_return_val_if_fail(v != NULL && v->type == PRUNUS_JSON_OBJECT, NULL);
  g_return_val_if_fail(key != NULL, NULL);
  gssize i = object_find(v, key);
  return i < 0 ? NULL : v->u.obj.vals[i];
}

/* ------------------------------------------------------------------------- */
/* Builders */

PrunusJson *prunus_json_new_null(void) { return json_alloc(PRUNUS_JSON_NULL); }

PrunusJson *prunus_json_new_bool(gboolean b) {
  PrunusJson *v = json_alloc(PRUNUS_JSON_BOOL);
  v->u.b = b ? TRUE : FALSE;
  return v;
}

PrunusJson *prunus_json_new_number(double x) {
  PrunusJson *v = json_alloc(PRUNUS_JSON_NUMBER);
  v->u.num = x;
  return v;
}

PrunusJson *prunus_json_new_string(const char *s) {
  g_return_val_if_fail(s != NULL, NULL);
  PrunusJson *v = json_alloc(PRUNUS_JSON_STRING);
  v->u.str = g_strdup(s);
  return v;
}

PrunusJson *prunus_json_new_array(void) { return json_alloc(PRUNUS_JSON_ARRAY); }

PrunusJson *prunus_json_new_object(void) { return json_alloc(PRUNUS_JSON_OBJECT); }

void prunus_json_array_add(PrunusJson *arr, PrunusJson *item) {
  g_return_if_fail(arr != NULL && arr->type == PRUNUS_JSON_ARRAY);
  g_return_if_fail(item != NULL);
  if (arr->u.arr.n == arr->u.arr.cap) {
    arr->u.arr.cap = arr->u.arr.cap ? 2 * arr->u.arr.cap : 4;
    arr->u.arr.items = g_renew(PrunusJson *, arr->u.arr.items, arr->u.arr.cap);
  }
  arr->u.arr.items[arr->u.arr.n++] = item;
}

/* Append key (taking ownership) and value without looking for an existing key. */
static void object_append(PrunusJson *obj, char *key, PrunusJson *value) {
  if (obj->u.obj.n == obj->u.obj.cap) {
    obj->u.obj.cap = obj->u.obj.cap ? 2 * obj->u.obj.cap : 4;
    obj->u.obj.keys = g_renew(char *, obj->u.obj.keys, obj->u.obj.cap);
    obj->u.obj.vals = g_renew(PrunusJson *, obj->u.obj.vals, obj->u.obj.cap);
  }
  size_t i = obj->u.obj.n++;
  obj->u.obj.keys[i] = key;
  obj->u.obj.vals[i] = value;
  if (obj->u.obj.index) {
    g_hash_table_insert(obj->u.obj.index, key, GSIZE_TO_POINTER(i + 1));
  } else if (obj->u.obj.n >= PRUNUS_JSON_INDEX_MIN) {
    obj->u.obj.index = g_hash_table_new(g_str_hash, g_str_equal);
    for (size_t j = 0; j < obj->u.obj.n; j++)
      g_hash_table_insert(obj->u.obj.index, obj->u.obj.keys[j], GSIZE_TO_POINTER(j + 1));
  }
}

void prunus_json_object_set(PrunusJson *obj, const char *key, PrunusJson *value) {
  g_return_if_fail(obj != NULL && obj->type == PRUNUS_JSON_OBJECT);
  g_return_if_fail(key != NULL && value != NULL);
  gssize i = object_find(obj, key);
  if (i >= 0) {
    if (obj->u.obj.vals[i] != value) prunus_json_free(obj->u.obj.vals[i]);
    obj->u.obj.vals[i] = value;
    return;
  }
  object_append(obj, g_strdup(key), value);
}

/* ------------------------------------------------------------------------- */
/* Parser */

typedef struct {
  const unsigned char *s;
  size_t len;
  size_t pos;
  int depth;
  GError **error;
} JsonParser;

/* Describe the byte at `at` for an error message ("'x'", "byte 0x07", "end of input"). */
static void describe_found(const JsonParser *p, size_t at, char *buf, size_t n) {
  if (at >= p->len)
    g_strlcpy(buf, "end of input", n);
  else if (p->s[at] >= 0x21 && p->s[at] < 0x7f)
    g_snprintf(buf, n, "'%c'", p->s[at]);
  else
    g_snprintf(buf, n, "byte 0x%02x", p->s[at]);
}

static gboolean parse_fail(JsonParser *p, size_t at, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean parse_fail(JsonParser *p, size_t at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *what = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(p->error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT, "JSON error at byte %zu: %s", at, what);
  g_free(what);
  return FALSE;
}

/* "expected X, found Y" at the current position. */
static gboolean parse_expected(JsonParser *p, const char *expected) {
  char found[32];
  describe_found(p, p->pos, found, sizeof found);
  return parse_fail(p, p->pos, "expected %s, found %s", expected, found);
}

static void skip_ws(JsonParser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static PrunusJson *parse_value(JsonParser *p);

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Read the 4 hex digits after "\u" at p->pos; advances past them. */
static gboolean parse_hex4(JsonParser *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = p->pos < p->len ? hex_value(p->s[p->pos]) : -1;
    if (h < 0) return parse_expected(p, "4 hex digits after \\u");
    v = v * 16 + (unsigned)h;
    p->pos++;
  }
  *out = v;
  return TRUE;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlongs, no
 * surrogates, <= U+10FFFF), or 0 if it is malformed. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return len;
}

/* Parse a string literal at p->pos (which holds '"'); returns the UTF-8 contents. */
static char *parse_string_raw(JsonParser *p) {
  size_t start = p->pos;
  GString *out = g_string_new(NULL);
  p->pos++; /* opening quote */
  for (;;) {
    if (p->pos >= p->len) {
      parse_fail(p, p->pos, "unterminated string starting at byte %zu", start);
      goto out_free_string;
    }
    unsigned char c = p->s[p->pos];
    if (c == '"') {
      p->pos++;
      return g_string_free(out, FALSE);
    }
    if (c < 0x20) {
      parse_fail(p, p->pos, "control character 0x%02x in string (must be escaped)", c);
      goto out_free_string;
    }
    if (c < 0x80 && c != '\\') {
      g_string_append_c(out, (char)c);
      p->pos++;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_sequence_length(p->s + p->pos, p->len - p->pos);
      if (n == 0) {
        parse_fail(p, p->pos, "invalid UTF-8 byte 0x%02x in string", c);
        goto out_free_string;
      }
      g_string_append_len(out, (const char *)p->s + p->pos, (gssize)n);
      p->pos += n;
      continue;
    }
    /* escape */
    size_t esc = p->pos;
    p->pos++;
    if (p->pos >= p->len) {
      parse_fail(p, p->pos, "unterminated escape in string starting at byte %zu", start);
      goto out_free_string;
    }
    unsigned char e = p->s[p->pos++];
    switch (e) {
    case '"':
      g_string_append_c(out, '"');
      break;
    case '\\':
      g_string_append_c(out, '\\');
      break;
    case '/':
      g_string_append_c(out, '/');
      break;
    case 'b':
      g_string_append_c(out, '\b');
      break;
    case 'f':
      g_string_append_c(out, '\f');
      break;
    case 'n':
      g_string_append_c(out, '\n');
      break;
    case 'r':
      g_string_append_c(out, '\r');
      break;
    case 't':
      g_string_append_c(out, '\t');
      break;
    case 'u': {
      unsigned cp = 0;
      if (!parse_hex4(p, &cp)) goto out_free_string;
      if (cp >= 0xdc00 && cp <= 0xdfff) {
        parse_fail(p, esc, "lone low surrogate \\u%04x", cp);
        goto out_free_string;
      }
      if (cp >= 0xd800 && cp <= 0xdbff) {
        unsigned lo = 0;
        if (p->pos + 1 >= p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
          parse_fail(p, esc, "high surrogate \\u%04x not followed by a \\u low surrogate", cp);
          goto out_free_string;
        }
        p->pos += 2;
        if (!parse_hex4(p, &lo)) goto out_free_string;
        if (lo < 0xdc00 || lo > 0xdfff) {
          parse_fail(p, esc, "high surrogate \\u%04x followed by \\u%04x, not a low surrogate", cp,
                     lo);
          goto out_free_string;
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      if (cp == 0) {
        parse_fail(p, esc, "\\u0000 is not supported (strings are NUL-terminated)");
        goto out_free_string;
      }
      g_string_append_unichar(out, (gunichar)cp);
      break;
    }
    default:
      p->pos = esc + 1;
      parse_expected(p, "an escape character (one of \"\\/bfnrtu)");
      goto out_free_string;
    }
  }

out_free_string:
  g_string_free(out, TRUE);
  return NULL;
}

static gboolean is_digit(const JsonParser *p) {
  return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9';
}

static PrunusJson *parse_number(JsonParser *p) {
  size_t start = p->pos;
  if (p->s[p->pos] == '-') p->pos++;
  if (!is_digit(p)) {
    parse_expected(p, "a digit");
    return NULL;
  }
  if (p->s[p->pos] == '0') {
    p->pos++;
    if (is_digit(p)) {
      parse_fail(p, p->pos - 1, "number with a leading zero");
      return NULL;
    }
  } else {
    while (is_digit(p)) p->pos++;
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    p->pos++;
    if (!is_digit(p)) {
      parse_expected(p, "a digit after the decimal point");
      return NULL;
    }
    while (is_digit(p)) p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (!is_digit(p)) {
      parse_expected(p, "a digit in the exponent");
      return NULL;
    }
    while (is_digit(p)) p->pos++;
  }
  char *text = g_strndup((const char *)p->s + start, p->pos - start);
  double x = g_ascii_strtod(text, NULL);
  g_free(text);
  if (!isfinite(x)) {
    parse_fail(p, start, "number out of range for a double");
    return NULL;
  }
  return prunus_json_new_number(x);
}

static gboolean parse_literal(JsonParser *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
    return parse_fail(p, p->pos, "invalid literal, expected %s", word);
  p->pos += n;
  return TRUE;
}

static gboolean enter_nesting(JsonParser *p) {
  if (++p->depth > PRUNUS_JSON_MAX_DEPTH)
    return parse_fail(p, p->pos, "nesting deeper than %d", PRUNUS_JSON_MAX_DEPTH);
  return TRUE;
}

static PrunusJson *parse_array(JsonParser *p) {
  if (!enter_nesting(p)) return NULL;
  PrunusJson *arr = prunus_json_new_array();
  p->pos++; /* '[' */
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == ']') {
    p->pos++;
    goto out_done;
  }
  for (;;) {
    PrunusJson *item = parse_value(p);
    if (!item) goto out_free_array;
    prunus_json_array_add(arr, item);
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == ']') {
      p->pos++;
      goto out_done;
    }
    parse_expected(p, "',' or ']' in array");
    goto out_free_array;
  }

out_done:
  p->depth--;
  return arr;

out_free_array:
  prunus_json_free(arr);
  return NULL;
}

static PrunusJson *parse_object(JsonParser *p) {
  if (!enter_nesting(p)) return NULL;
  PrunusJson *obj = prunus_json_new_object();
  p->pos++; /* '{' */
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == '}') {
    p->pos++;
    goto out_done;
  }
  for (;;) {
    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != '"') {
      parse_expected(p, "a string key in object");
      goto out_free_object;
    }
    size_t key_at = p->pos;
    char *key = parse_string_raw(p);
    if (!key) goto out_free_object;
    if (object_find(obj, key) >= 0) {
      parse_fail(p, key_at, "duplicate key \"%s\" in object", key);
      g_free(key);
      goto out_free_object;
    }
    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':') {
      parse_expected(p, "':' after object key");
      g_free(key);
      goto out_free_object;
    }
    p->pos++;
    PrunusJson *value = parse_value(p);
    if (!value) {
      g_free(key);
      goto out_free_object;
    }
    object_append(obj, key, value);
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == '}') {
      p->pos++;
      goto out_done;
    }
    parse_expected(p, "',' or '}' in object");
    goto out_free_object;
  }

out_done:
  p->depth--;
  return obj;

out_free_object:
  prunus_json_free(obj);
  return NULL;
}

static PrunusJson *parse_value(JsonParser *p) {
  skip_ws(p);
  if (p->pos >= p->len) {
    parse_expected(p, "a value");
    return NULL;
  }
  unsigned char c = p->s[p->pos];
  switch (c) {
  case '{':
    return parse_object(p);
  case '[':
    return parse_array(p);
  case '"': {
    char *s = parse_string_raw(p);
    if (!s) return NULL;
    PrunusJson *v = json_alloc(PRUNUS_JSON_STRING);
    v->u.str = s;
    return v;
  }
  case 't':
    return parse_literal(p, "true") ? prunus_json_new_bool(TRUE) : NULL;
  case 'f':
    return parse_literal(p, "false") ? prunus_json_new_bool(FALSE) : NULL;
  case 'n':
    return parse_literal(p, "null") ? prunus_json_new_null() : NULL;
  default:
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p);
    parse_expected(p, "a value");
    return NULL;
  }
}

PrunusJson *prunus_json_parse(const char *text, size_t len, GError **error) {
  g_return_val_if_fail(text != NULL || len == 0, NULL);
  g_return_val_if_fail(error == NULL || *error == NULL, NULL);
  JsonParser p = {.s = (const unsigned char *)(text ? text : ""), .len = len, .error = error};
  PrunusJson *v = parse_value(&p);
  if (!v) return NULL;
  skip_ws(&p);
  if (p.pos != p.len) {
    parse_expected(&p, "end of input after the JSON value");
    prunus_json_free(v);
    return NULL;
  }
  return v;
}

/* ------------------------------------------------------------------------- */
/* Writer */

void prunus_json_escape_append(GString *out, const char *s) {
  g_return_if_fail(out != NULL && s != NULL);
  g_string_append_c(out, '"');
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    switch (*c) {
    case '"':
      g_string_append(out, "\\\"");
      break;
    case '\\':
      g_string_append(out, "\\\\");
      break;
    case '\b':
      g_string_append(out, "\\b");
      break;
    case '\f':
      g_string_append(out, "\\f");
      break;
    case '\n':
      g_string_append(out, "\\n");
      break;
    case '\r':
      g_string_append(out, "\\r");
      break;
    case '\t':
      g_string_append(out, "\\t");
      break;
    default:
      if (*c < 0x20)
        g_string_append_printf(out, "\\u%04x", *c);
      else
        g_string_append_c(out, (char)*c);
    }
  }
  g_string_append_c(out, '"');
}

static void write_number(GString *out, double x) {
  if (!isfinite(x)) {
    g_string_append(out, "null");
  } else if (x == trunc(x) && fabs(x) < 9007199254740992.0) { /* 2^53 */
    g_string_append_printf(out, "%" G_GINT64_FORMAT, (gint64)x);
  } else {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    g_string_append(out, g_ascii_formatd(buf, sizeof buf, "%.9g", x));
  }
}

static void write_newline_indent(GString *out, int indent, int level) {
  if (indent <= 0) return;
  g_string_append_c(out, '\n');
  for (int i = 0; i < indent * level; i++) g_string_append_c(out, ' ');
}

static void write_value(GString *out, const PrunusJson *v, int indent, int level) {
  switch (v->type) {
  case PRUNUS_JSON_NULL:
    g_string_append(out, "null");
    break;
  case PRUNUS_JSON_BOOL:
    g_string_append(out, v->u.b ? "true" : "false");
    break;
  case PRUNUS_JSON_NUMBER:
    write_number(out, v->u.num);
    break;
  case PRUNUS_JSON_STRING:
    prunus_json_escape_append(out, v->u.str);
    break;
  case PRUNUS_JSON_ARRAY:
    g_string_append_c(out, '[');
    for (size_t i = 0; i < v->u.arr.n; i++) {
      if (i) g_string_append_c(out, ',');
      write_newline_indent(out, indent, level + 1);
      write_value(out, v->u.arr.items[i], indent, level + 1);
    }
    if (v->u.arr.n) write_newline_indent(out, indent, level);
    g_string_append_c(out, ']');
    break;
  case PRUNUS_JSON_OBJECT:
    g_string_append_c(out, '{');
    for (size_t i = 0; i < v->u.obj.n; i++) {
      if (i) g_string_append_c(out, ',');
      write_newline_indent(out, indent, level + 1);
      prunus_json_escape_append(out, v->u.obj.keys[i]);
      g_string_append(out, indent > 0 ? ": " : ":");
      write_value(out, v->u.obj.vals[i], indent, level + 1);
    }
    if (v->u.obj.n) write_newline_indent(out, indent, level);
    g_string_append_c(out, '}');
    break;
  }
}

char *prunus_json_to_string(const PrunusJson *v, int indent) {
  g_return_val_if_fail(v != NULL, NULL);
  GString *out = g_string_new(NULL);
  write_value(out, v, indent, 0);
  return g_string_free(out, FALSE);
}
