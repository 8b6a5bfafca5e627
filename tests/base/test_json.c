/* test_json.c: unit tests of core/json.c: parse/write round trips, every error
 * class with its byte offset, string escapes and exact number formatting. */
#include "json.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static PrunusJson *parse_ok(const char *text) {
  GError *error = NULL;
  PrunusJson *v = prunus_json_parse(text, strlen(text), &error);
  g_assert_no_error(error);
  g_assert_nonnull(v);
  return v;
}

/* Parse text, expect an error whose message holds every needle. */
static void parse_fails(const char *text, size_t len, const char *needle1, const char *needle2) {
  GError *error = NULL;
  PrunusJson *v = prunus_json_parse(text, len, &error);
  g_assert_null(v);
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT);
  testutil_assert_error_contains(error, needle1, needle2, NULL);
  g_error_free(error);
}

static void assert_writes(const PrunusJson *v, int indent, const char *expected) {
  char *s = prunus_json_to_string(v, indent);
  g_assert_cmpstr(s, ==, expected);
  g_free(s);
}

static void assert_number_writes(double x, const char *expected) {
  PrunusJson *v = prunus_json_new_number(x);
  assert_writes(v, 0, expected);
  prunus_json_free(v);
}

/* ------------------------------------------------------------------------- */

static void test_parse_values(void) {
  PrunusJson *v = parse_ok(
      " {\"a\": [1, -2.5, 3e2, true, false, null, \"x\"],\n"
      "\t\"b\": {\"c\": {}}, \"d\": []}\r\n");
  g_assert_cmpint(prunus_json_type(v), ==, PRUNUS_JSON_OBJECT);
  g_assert_cmpuint(prunus_json_length(v), ==, 3);
  g_assert_cmpstr(prunus_json_key(v, 0), ==, "a");
  g_assert_cmpstr(prunus_json_key(v, 1), ==, "b");
  g_assert_cmpstr(prunus_json_key(v, 2), ==, "d");
  const PrunusJson *a = prunus_json_get(v, "a");
  g_assert_true(a == prunus_json_member(v, 0));
  g_assert_cmpint(prunus_json_type(a), ==, PRUNUS_JSON_ARRAY);
  g_assert_cmpuint(prunus_json_length(a), ==, 7);
  g_assert_cmpfloat(prunus_json_number(prunus_json_index(a, 0)), ==, 1.0);
  g_assert_cmpfloat(prunus_json_number(prunus_json_index(a, 1)), ==, -2.5);
  g_assert_cmpfloat(prunus_json_number(prunus_json_index(a, 2)), ==, 300.0);
  g_assert_true(prunus_json_bool(prunus_json_index(a, 3)));
  g_assert_false(prunus_json_bool(prunus_json_index(a, 4)));
  g_assert_cmpint(prunus_json_type(prunus_json_index(a, 5)), ==, PRUNUS_JSON_NULL);
  g_assert_cmpstr(prunus_json_string(prunus_json_index(a, 6)), ==, "x");
  const PrunusJson *b = prunus_json_get(v, "b");
  g_assert_cmpuint(prunus_json_length(prunus_json_get(b, "c")), ==, 0);
  g_assert_null(prunus_json_get(v, "zz"));
  prunus_json_free(v);

  /* Scalars at the top level. */
  v = parse_ok("  42 ");
  g_assert_cmpfloat(prunus_json_number(v), ==, 42.0);
  prunus_json_free(v);
  v = parse_ok("\"s\"");
  g_assert_cmpstr(prunus_json_string(v), ==, "s");
  prunus_json_free(v);
  v = parse_ok("null");
  g_assert_cmpint(prunus_json_type(v), ==, PRUNUS_JSON_NULL);
  prunus_json_free(v);

  /* Number grammar corners. */
  const struct {
    const char *text;
    double value;
  } nums[] = {
      {"0", 0.0},      {"-0", -0.0},    {"0.5", 0.5},   {"-0.125", -0.125},
      {"1E3", 1000.0}, {"1e+2", 100.0}, {"25e-1", 2.5}, {"123456789012", 123456789012.0},
      {"1e-400", 0.0}, /* underflows to zero: allowed */
  };
  for (size_t i = 0; i < G_N_ELEMENTS(nums); i++) {
    v = parse_ok(nums[i].text);
    g_assert_cmpfloat(prunus_json_number(v), ==, nums[i].value);
    prunus_json_free(v);
  }
}

static void test_parse_exact_length(void) {
  /* Only len bytes are parsed: the rest of the buffer is not looked at. */
  const char *text = "[1,2]garbage";
  GError *error = NULL;
  PrunusJson *v = prunus_json_parse(text, 5, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(prunus_json_length(v), ==, 2);
  prunus_json_free(v);
  /* A NUL byte inside len is an error, not an end. */
  parse_fails("[1]\0", 4, "at byte 3", "byte 0x00");
}

static void test_escapes(void) {
  PrunusJson *v = parse_ok("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0041\\u00e9\\u20ac\"");
  g_assert_cmpstr(prunus_json_string(v), ==, "q\" b\\ s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac");
  prunus_json_free(v);

  /* Surrogate pair U+1F600 -> F0 9F 98 80; lower-case and upper-case hex. */
  v = parse_ok("\"\\ud83d\\uDE00\"");
  g_assert_cmpstr(prunus_json_string(v), ==, "\xf0\x9f\x98\x80");
  prunus_json_free(v);
  v = parse_ok("\"\\uDBFF\\uDFFF\""); /* U+10FFFF */
  g_assert_cmpstr(prunus_json_string(v), ==, "\xf4\x8f\xbf\xbf");
  prunus_json_free(v);

  /* Raw UTF-8 passes through. */
  v = parse_ok("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
  g_assert_cmpstr(prunus_json_string(v), ==, "caf\xc3\xa9 \xf0\x9f\x98\x80");
  prunus_json_free(v);

  /* Writer escapes: quotes, backslash, control characters; '/' and UTF-8 stay. */
  v = prunus_json_new_string("a\"b\\c/d\n\t\x01\x1f\xc3\xa9");
  assert_writes(v, 0, "\"a\\\"b\\\\c/d\\n\\t\\u0001\\u001f\xc3\xa9\"");
  char *text = prunus_json_to_string(v, 0);
  PrunusJson *back = parse_ok(text);
  g_assert_cmpstr(prunus_json_string(back), ==, prunus_json_string(v));
  prunus_json_free(back);
  g_free(text);
  prunus_json_free(v);

  GString *s = g_string_new("x=");
  prunus_json_escape_append(s, "\b\f\r");
  g_assert_cmpstr(s->str, ==, "x=\"\\b\\f\\r\"");
  g_string_free(s, TRUE);
}

static void test_errors(void) {
  /* Each error class, with the byte offset where it was found. */
  parse_fails("", 0, "at byte 0", "expected a value, found end of input");
  parse_fails("   ", 3, "at byte 3", "end of input");
  parse_fails("[1, 2", 5, "at byte 5", "',' or ']'");
  parse_fails("[1 2]", 5, "at byte 3", "',' or ']'");
  parse_fails("[1,]", 4, "at byte 3", "expected a value, found ']'");
  parse_fails("{\"a\":1,}", 8, "at byte 7", "string key");
  parse_fails("{\"a\" 1}", 7, "at byte 5", "':'");
  parse_fails("{a:1}", 5, "at byte 1", "string key");
  parse_fails("{\"a\":1 \"b\":2}", 13, "at byte 7", "',' or '}'");
  parse_fails("{\"a\":1,\"a\":2}", 13, "at byte 7", "duplicate key \"a\"");
  parse_fails("1 2", 3, "at byte 2", "end of input after the JSON value");
  parse_fails("{} x", 4, "at byte 3", "found 'x'");
  /* Literals. */
  parse_fails("tru", 3, "at byte 0", "invalid literal, expected true");
  parse_fails("nul", 3, "at byte 0", "expected null");
  parse_fails("True", 4, "at byte 0", "found 'T'");
  parse_fails("[nan]", 5, "at byte 1", "expected null");
  /* Numbers. */
  parse_fails("01", 2, "at byte 0", "leading zero");
  parse_fails("-", 1, "at byte 1", "a digit");
  parse_fails("+1", 2, "at byte 0", "found '+'");
  parse_fails("1.", 2, "at byte 2", "digit after the decimal point");
  parse_fails(".5", 2, "at byte 0", "found '.'");
  parse_fails("1e", 2, "at byte 2", "exponent");
  parse_fails("1e+", 3, "at byte 3", "exponent");
  parse_fails("1e999", 5, "at byte 0", "out of range");
  parse_fails("-1e400", 6, "at byte 0", "out of range");
  parse_fails("0x10", 4, "at byte 1", "found 'x'");
  /* Strings. */
  parse_fails("\"abc", 4, "at byte 4", "unterminated string starting at byte 0");
  parse_fails("[\"a\nb\"]", 7, "at byte 3", "control character 0x0a");
  parse_fails("\"\\x\"", 4, "at byte 2", "escape character");
  parse_fails("\"\\u12\"", 6, "at byte 5", "4 hex digits");
  parse_fails("\"\\u12G4\"", 8, "at byte 5", "4 hex digits");
  parse_fails("\"\\ud83d\"", 8, "at byte 1", "high surrogate \\ud83d not followed");
  parse_fails("\"\\ud83dx\"", 9, "at byte 1", "high surrogate");
  parse_fails("\"\\ud83d\\u0041\"", 14, "at byte 1", "not a low surrogate");
  parse_fails("\"\\ude00\"", 8, "at byte 1", "lone low surrogate \\ude00");
  parse_fails("\"\\u0000\"", 8, "at byte 1", "\\u0000 is not supported");
  parse_fails("\"\xff\"", 3, "at byte 1", "invalid UTF-8 byte 0xff");
  parse_fails("\"\xc0\xaf\"", 4, "at byte 1", "invalid UTF-8");         /* overlong '/' */
  parse_fails("\"\xed\xa0\x80\"", 5, "at byte 1", "invalid UTF-8");     /* encoded surrogate */
  parse_fails("\"\xe2\x82\"", 4, "at byte 1", "invalid UTF-8");         /* truncated */
  parse_fails("\"\xf4\x90\x80\x80\"", 6, "at byte 1", "invalid UTF-8"); /* > U+10FFFF */
}

static void test_nesting_limit(void) {
  GString *ok = g_string_new(NULL);
  for (int i = 0; i < 64; i++) g_string_append_c(ok, '[');
  for (int i = 0; i < 64; i++) g_string_append_c(ok, ']');
  GError *error = NULL;
  PrunusJson *v = prunus_json_parse(ok->str, ok->len, &error);
  g_assert_no_error(error);
  g_assert_nonnull(v);
  prunus_json_free(v);

  GString *deep = g_string_new(NULL);
  for (int i = 0; i < 65; i++) g_string_append(deep, i % 2 ? "[" : "{\"k\":");
  parse_fails(deep->str, deep->len, "nesting deeper than 64", NULL);
  /* The 65th opener sits at byte 32 * 5 + 32 = 192 (32 "{"k":" + 32 "[" before it). */
  parse_fails(deep->str, deep->len, "at byte 192", NULL);
  g_string_free(ok, TRUE);
  g_string_free(deep, TRUE);
}

static void test_number_format(void) {
  assert_number_writes(0.0, "0");
  assert_number_writes(-0.0, "0");
  assert_number_writes(1.0, "1");
  assert_number_writes(-7.0, "-7");
  assert_number_writes(266610.0, "266610");
  assert_number_writes(9007199254740991.0, "9007199254740991"); /* 2^53 - 1 */
  assert_number_writes(-9007199254740991.0, "-9007199254740991");
  assert_number_writes(9007199254740992.0, "9.00719925e+15"); /* 2^53: not exact */
  assert_number_writes(1e20, "1e+20");
  assert_number_writes(0.5, "0.5");
  assert_number_writes(0.1, "0.1");
  assert_number_writes(0.889, "0.889");
  assert_number_writes(-2.25, "-2.25");
  assert_number_writes(1.0 / 3.0, "0.333333333");
  assert_number_writes((double)0.31f, "0.310000002");
  assert_number_writes(12.5, "12.5");
  assert_number_writes(1e-7, "1e-07");
  assert_number_writes(123456789.5, "123456790"); /* 9 significant digits */
  assert_number_writes(NAN, "null");
  assert_number_writes(INFINITY, "null");
  assert_number_writes(-INFINITY, "null");
}

static void test_builders_and_writer(void) {
  PrunusJson *root = prunus_json_new_object();
  prunus_json_object_set(root, "name", prunus_json_new_string("imp"));
  prunus_json_object_set(root, "seed", prunus_json_new_number(0));
  PrunusJson *rounds = prunus_json_new_array();
  PrunusJson *r = prunus_json_new_object();
  prunus_json_object_set(r, "round", prunus_json_new_number(1));
  prunus_json_object_set(r, "sparsity", prunus_json_new_number(0.2));
  prunus_json_object_set(r, "ok", prunus_json_new_bool(TRUE));
  prunus_json_object_set(r, "loss", prunus_json_new_number(NAN));
  prunus_json_array_add(rounds, r);
  prunus_json_array_add(rounds, prunus_json_new_null());
  prunus_json_object_set(root, "rounds", rounds);
  prunus_json_object_set(root, "empty_a", prunus_json_new_array());
  prunus_json_object_set(root, "empty_o", prunus_json_new_object());
  /* Replacing keeps the key's first position. */
  prunus_json_object_set(root, "seed", prunus_json_new_number(3));

  assert_writes(root, 0,
                "{\"name\":\"imp\",\"seed\":3,\"rounds\":[{\"round\":1,\"sparsity\":0.2,"
                "\"ok\":true,\"loss\":null},null],\"empty_a\":[],\"empty_o\":{}}");
  assert_writes(root, 2,
                "{\n"
                "  \"name\": \"imp\",\n"
                "  \"seed\": 3,\n"
                "  \"rounds\": [\n"
                "    {\n"
                "      \"round\": 1,\n"
                "      \"sparsity\": 0.2,\n"
                "      \"ok\": true,\n"
                "      \"loss\": null\n"
                "    },\n"
                "    null\n"
                "  ],\n"
                "  \"empty_a\": [],\n"
                "  \"empty_o\": {}\n"
                "}");

  /* Round trip: parse what was written (both forms) and write it again. */
  for (int indent = 0; indent <= 4; indent += 4) {
    char *text = prunus_json_to_string(root, indent);
    PrunusJson *back = parse_ok(text);
    char *again = prunus_json_to_string(back, indent);
    g_assert_cmpstr(again, ==, text);
    g_free(again);
    g_free(text);
    prunus_json_free(back);
  }
  prunus_json_free(root);
}

static void test_round_trip_text(void) {
  const char *texts[] = {
      "{\"a\":[1,2.5,-3,1e+20,\"\\u0001x\\\"\"],\"b\":{\"c\":null,\"d\":false}}",
      "[[],{},[[[]]],\"\",0]",
      "\"\xf0\x9f\x98\x80\"",
  };
  for (size_t i = 0; i < G_N_ELEMENTS(texts); i++) {
    PrunusJson *v = parse_ok(texts[i]);
    assert_writes(v, 0, texts[i]);
    prunus_json_free(v);
  }
}

static void test_large_object(void) {
  /* Enough keys to switch to the hashed index; order and lookups must hold. */
  PrunusJson *obj = prunus_json_new_object();
  for (int i = 0; i < 200; i++) {
    char key[16];
    g_snprintf(key, sizeof key, "k%d", i);
    prunus_json_object_set(obj, key, prunus_json_new_number(i));
  }
  prunus_json_object_set(obj, "k7", prunus_json_new_number(-7));
  g_assert_cmpuint(prunus_json_length(obj), ==, 200);
  g_assert_cmpstr(prunus_json_key(obj, 199), ==, "k199");
  g_assert_cmpfloat(prunus_json_number(prunus_json_get(obj, "k150")), ==, 150.0);
  g_assert_cmpfloat(prunus_json_number(prunus_json_get(obj, "k7")), ==, -7.0);
  g_assert_cmpfloat(prunus_json_number(prunus_json_member(obj, 7)), ==, -7.0);

  char *text = prunus_json_to_string(obj, 0);
  PrunusJson *back = parse_ok(text);
  g_assert_cmpfloat(prunus_json_number(prunus_json_get(back, "k199")), ==, 199.0);
  g_free(text);
  prunus_json_free(back);
  prunus_json_free(obj);

  /* Duplicate detection still works past the index threshold. */
  GString *dup = g_string_new("{");
  for (int i = 0; i < 40; i++) g_string_append_printf(dup, "\"k%d\":%d,", i, i);
  g_string_append(dup, "\"k3\":0}");
  parse_fails(dup->str, dup->len, "duplicate key \"k3\"", NULL);
  g_string_free(dup, TRUE);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/json/parse-values", test_parse_values);
  g_test_add_func("/json/parse-exact-length", test_parse_exact_length);
  g_test_add_func("/json/escapes", test_escapes);
  g_test_add_func("/json/errors", test_errors);
  g_test_add_func("/json/nesting-limit", test_nesting_limit);
  g_test_add_func("/json/number-format", test_number_format);
  g_test_add_func("/json/builders-and-writer", test_builders_and_writer);
  g_test_add_func("/json/round-trip-text", test_round_trip_text);
  g_test_add_func("/json/large-object", test_large_object);
  return g_test_run();
}
