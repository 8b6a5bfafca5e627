/* fuzz_summary.c: summary.json as `prunus run` reads it back to resume (core/output/
 * rundir.c: the header check against the command and config hash, the status, each
 * experiment's entry, its rounds as resume() reads them, the plugin builds compared
 * with the current ones) and writes it again with the last words prepared, on
 * arbitrary bytes. The seeds carry the hash below. */
#include "fatal.h"
#include "fuzz_common.h"
#include "rundir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HASH "0806da14c5ba3b6fd5bba8b6e0d83b0b59d1d67b0ab5ba3e7c0bdc4c1c1a6e2d"

/* The rounds of one entry, read as resume() does: round i must say round i. */
static void read_rounds(const PrunusJson *e) {
  const PrunusJson *rounds = prunus_json_get(e, "rounds");
  if (!rounds || prunus_json_type(rounds) != PRUNUS_JSON_ARRAY) return;
  for (size_t i = 0; i < prunus_json_length(rounds); i++) {
    PrunusRoundMetrics rm;
    gboolean ok = prunus_round_metrics_from_json(prunus_json_index(rounds, i), &rm);
    if (ok) {
      if (!rm.checkpoint || !rm.checkpoint[0]) abort(); /* a round has its checkpoint */
      if (rm.n_latency < 0 || rm.n_latency > PRUNUS_MAX_LATENCIES) abort();
      for (int k = 0; k < PRUNUS_RUNDIR_N_SLOTS; k++)
        if (rm.plugin_sha256[k][0] && strlen(rm.plugin_sha256[k]) != 64) abort();
      /* what is read is written back the same way */
      PrunusJson *again = prunus_round_metrics_to_json(&rm);
      PrunusRoundMetrics rm2;
      if (!prunus_round_metrics_from_json(again, &rm2) || rm2.round != rm.round ||
          rm2.params_total != rm.params_total || strcmp(rm2.checkpoint, rm.checkpoint) != 0)
        abort();
      prunus_round_metrics_clear(&rm2);
      prunus_json_free(again);
      prunus_round_metrics_stamp_plugins(&rm, e);
    }
    prunus_round_metrics_clear(&rm);
    if (!ok || rm.round != (int)i) break; /* resume stops here with an error */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prunus_fuzz_init();
  GError *error = NULL;
  PrunusJson *summary = prunus_rundir_summary_parse("RUN/summary.json", (const char *)data, size,
                                                    "run", HASH, NULL, &error);
  if (!summary) {
    if (!error || !strstr(error->message, "RUN/summary.json")) abort(); /* names the file */
    g_error_free(error);
    return 0;
  }
  const char *message = NULL;
  const char *status = prunus_rundir_summary_status(summary, &message);
  (void)status;
  PrunusJson *now = prunus_json_new_object();
  prunus_json_object_set(now, "criterion",
                         prunus_rundir_plugin_record("magnitude", "1.0.0", "/nonexistent.so"));
  const PrunusJson *exps = prunus_json_get(summary, "experiments");
  for (size_t i = 0; i < prunus_json_length(exps); i++) {
    const PrunusJson *e = prunus_json_index(exps, i);
    if (prunus_json_type(e) != PRUNUS_JSON_OBJECT) continue;
    read_rounds(e);
    char *note = prunus_rundir_plugins_compare(prunus_json_get(e, "plugins"), now);
    g_free(note);
  }
  prunus_json_free(now);
  /* the entry the pipeline would resume (created when absent), then the summary
   * written again as a running run's, with its last words prepared */
  PrunusJson *entry = prunus_rundir_summary_experiment(summary, "tiny", 11);
  if (!entry || prunus_json_type(entry) != PRUNUS_JSON_OBJECT) abort();
  prunus_rundir_summary_set_status(summary, PRUNUS_RUN_RUNNING, NULL);
  if (!prunus_rundir_write_summary(prunus_fuzz_dir(), summary, &error)) abort();
  prunus_fatal_set_last_words(NULL, NULL, NULL, NULL);
  prunus_json_free(summary);
  return 0;
}
