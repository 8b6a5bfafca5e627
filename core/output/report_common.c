/* report_common.c: the numbers and files every report writer shares: mean ± std
 * over seeds, fixed-decimal and plain number text in the C locale, writing a file
 * of the run folder. */
#include "report_common.h"

#include <string.h>

#include <math.h>

// ----------------------------------------------------------------------------
// Numbers and statistics

PrunusStat prunus_stat_of(const double *x, int n) {
  PrunusStat s = {.mean = NAN, .std = NAN, .n = 0};
  double sum = 0.0;
  for (int i = 0; i < n; i++)
    if (isfinite(x[i])) sum += x[i], s.n++;
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  if (s.n < 2) return s;
  double ss = 0.0;
  for (int i = 0; i < n; i++)
    if (isfinite(x[i])) ss += (x[i] - s.mean) * (x[i] - s.mean);
  s.std = sqrt(ss / (s.n - 1));
  if (s.std < 1e-12 * fabs(s.mean)) s.std = 0.0; /* rounding noise of equal values */
  return s;
}

static void append_fixed(GString *out, double x, int digits) {
  char fmt[16], buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_snprintf(fmt, sizeof fmt, "%%.%df", digits);
  g_string_append(out, g_ascii_formatd(buf, sizeof buf, fmt, x));
}

char *prunus_stat_format(PrunusStat s, int digits) {
  GString *out = g_string_new(NULL);
  if (isfinite(s.mean)) {
    append_fixed(out, s.mean, digits);
    if (s.n >= 2 && isfinite(s.std)) {
      g_string_append(out, " ± ");
      append_fixed(out, s.std, digits);
    }
  }
  return g_string_free(out, FALSE);
}

void prunus_report_append_number(GString *out, double x) {
  if (!isfinite(x)) return;
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append(out, g_ascii_formatd(buf, sizeof buf, "%.10g", x));
}

gboolean prunus_report_write_file(const char *run_dir, const char *name, const GString *text,
                                  GError **error) {
  char *path = g_build_filename(run_dir, name, NULL);
  GError *local = NULL;
  gboolean ok = g_file_set_contents(path, text->str, (gssize)text->len, &local);
  if (!ok)
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write %s: %s", path, local->message);
  g_clear_error(&local);
  g_free(path);
  return ok;
}

const char *prunus_report_common_latency_method(const PrunusReport *r) {
  const char *method = r->n_exps > 0 ? r->exps[0].latency_method : NULL;
  for (int k = 1; method && k < r->n_exps; k++)
    if (!r->exps[k].latency_method || strcmp(r->exps[k].latency_method, method)) method = NULL;
  return method;
}
