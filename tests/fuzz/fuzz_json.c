/* fuzz_json.c: the strict JSON parser (core/base/json.c) on arbitrary bytes. A value
 * it accepts must survive the writer: what it writes parses again, and after one
 * pass the text is a fixed point, one-line and pretty (the first pass may round a
 * number to the 9 significant digits the writer keeps). */
#include "fuzz_common.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prunus_fuzz_init();
  GError *error = NULL;
  PrunusJson *v = prunus_json_parse((const char *)data, size, &error);
  if (!v) {
    /* every refusal says where */
    if (!error || !strstr(error->message, "byte")) abort();
    g_error_free(error);
    return 0;
  }
  for (int indent = 0; indent <= 2; indent += 2) {
    char *text = prunus_json_to_string(v, indent);
    PrunusJson *again = prunus_json_parse(text, strlen(text), &error);
    if (!again) abort(); /* the writer produced something the parser refuses */
    char *text2 = prunus_json_to_string(again, indent);
    PrunusJson *third = prunus_json_parse(text2, strlen(text2), &error);
    if (!third) abort();
    char *text3 = prunus_json_to_string(third, indent);
    if (strcmp(text2, text3) != 0) abort(); /* not a fixed point */
    g_free(text3);
    prunus_json_free(third);
    g_free(text2);
    prunus_json_free(again);
    g_free(text);
  }
  /* the accessors on every member, as the readers walk them */
  if (prunus_json_type(v) == PRUNUS_JSON_OBJECT) {
    for (size_t i = 0; i < prunus_json_length(v); i++) {
      const char *key = prunus_json_key(v, i);
      if (prunus_json_get(v, key) == NULL) abort();
    }
  }
  prunus_json_free(v);
  return 0;
}
