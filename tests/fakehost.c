/* fakehost.c: a fake prunus host for plugin tests: settings from a key -> value
 * table, a splitmix64 stream, a hand-made model view, and retrain services that
 * record their calls and arguments instead of training. */
#include "fakehost.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// State

typedef struct {
  char *key;
  char *value;
  gboolean read;
} FakeSetting;

struct PrunusHost {
  PrunusHostServices services;
  GArray *settings; /* FakeSetting */
  char *error;
  uint64_t rng;
  const PrunusModelView *view;
  GArray *calls; /* FakeHostCall */
  int pretrain_epochs;
  double pretrain_lr;
};

uint64_t fakehost_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ----------------------------------------------------------------------------
// Logging and errors

static void fake_log(PrunusHost *host, PrunusLogLevel level, const char *fmt, ...) {
  (void)host;
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_test_message("plugin log [%d]: %s", (int)level, msg);
  g_free(msg);
}

static void fake_set_error(PrunusHost *host, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_free(host->error);
  host->error = g_strdup_vprintf(fmt, ap);
  va_end(ap);
}

// ----------------------------------------------------------------------------
// Settings

static FakeSetting *fake_find(PrunusHost *host, const char *key) {
  for (guint i = 0; i < host->settings->len; i++) {
    FakeSetting *s = &g_array_index(host->settings, FakeSetting, i);
    if (strcmp(s->key, key) == 0) {
      s->read = TRUE;
      return s;
    }
  }
  return NULL;
}

static int fake_get_int(PrunusHost *host, const char *key, int64_t defval, int64_t *out) {
  const FakeSetting *s = fake_find(host, key);
  if (!s) {
    *out = defval;
    return 0;
  }
  char *end;
  errno = 0;
  const long long v = strtoll(s->value, &end, 10);
  if (errno || end == s->value || *end) {
    fake_set_error(host, "%s: expected an integer, found \"%s\"", key, s->value);
    return -1;
  }
  *out = v;
  return 0;
}

static int fake_get_double(PrunusHost *host, const char *key, double defval, double *out) {
  const FakeSetting *s = fake_find(host, key);
  if (!s) {
    *out = defval;
    return 0;
  }
  char *end;
  const double v = g_ascii_strtod(s->value, &end);
  if (end == s->value || *end) {
    fake_set_error(host, "%s: expected a number, found \"%s\"", key, s->value);
    return -1;
  }
  *out = v;
  return 0;
}

/* "key 'epochs' = -1 is out of range: must be >= 0": the real host's wording
 * without the file:line and group path it has and this fake has not. */
static int fake_range_error(PrunusHost *host, const char *key, const char *found,
                            const char *allowed) {
  fake_set_error(host, "key '%s' = %s is out of range: must be %s", key, found, allowed);
  return -1;
}

static int fake_get_int_range(PrunusHost *host, const char *key, int64_t defval, int64_t min,
                              int64_t max, int64_t *out) {
  g_assert_cmpint(min, <=, max);
  const gboolean present = fake_find(host, key) != NULL;
  if (fake_get_int(host, key, defval, out) != 0) return -1;
  if (!present || (*out >= min && *out <= max)) return 0;
  char found[32], allowed[64];
  g_snprintf(found, sizeof found, "%" G_GINT64_FORMAT, *out);
  if (max == INT64_MAX)
    g_snprintf(allowed, sizeof allowed, ">= %" G_GINT64_FORMAT, min);
  else if (min == INT64_MIN)
    g_snprintf(allowed, sizeof allowed, "<= %" G_GINT64_FORMAT, max);
  else
    g_snprintf(allowed, sizeof allowed, "in [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", min,
               max);
  return fake_range_error(host, key, found, allowed);
}

static int fake_get_double_range(PrunusHost *host, const char *key, double defval, double min,
                                 double max, double *out) {
  g_assert_true(min <= max);
  const gboolean present = fake_find(host, key) != NULL;
  if (fake_get_double(host, key, defval, out) != 0) return -1;
  if (!present || (isfinite(*out) && *out >= min && *out <= max)) return 0;
  char found[48], allowed[80];
  g_snprintf(found, sizeof found, "%g", *out);
  if (isinf(max))
    g_snprintf(allowed, sizeof allowed, ">= %g", min);
  else if (isinf(min))
    g_snprintf(allowed, sizeof allowed, "<= %g", max);
  else
    g_snprintf(allowed, sizeof allowed, "in [%g, %g]", min, max);
  return fake_range_error(host, key, found, allowed);
}

static int fake_get_bool(PrunusHost *host, const char *key, int defval, int *out) {
  const FakeSetting *s = fake_find(host, key);
  if (!s) {
    *out = defval;
    return 0;
  }
  if (strcmp(s->value, "true") == 0 || strcmp(s->value, "false") == 0) {
    *out = s->value[0] == 't';
    return 0;
  }
  fake_set_error(host, "%s: expected true or false, found \"%s\"", key, s->value);
  return -1;
}

static int fake_get_string(PrunusHost *host, const char *key, const char *defval,
                           const char **out) {
  const FakeSetting *s = fake_find(host, key);
  *out = s ? s->value : defval;
  return 0;
}

static int fake_get_choice(PrunusHost *host, const char *key, const char *const *choices,
                           int defval, int *out) {
  const FakeSetting *s = fake_find(host, key);
  if (!s) {
    *out = defval;
    return 0;
  }
  for (int i = 0; choices[i]; i++) {
    if (strcmp(choices[i], s->value) == 0) {
      *out = i;
      return 0;
    }
  }
  GString *expected = g_string_new(NULL);
  for (int i = 0; choices[i]; i++)
    g_string_append_printf(expected, "%s\"%s\"", i ? ", " : "", choices[i]);
  fake_set_error(host, "%s: expected one of %s, found \"%s\"", key, expected->str, s->value);
  g_string_free(expected, TRUE);
  return -1;
}

// ----------------------------------------------------------------------------
// RNG and model

static uint64_t fake_rng_u64(PrunusHost *host) { return fakehost_splitmix64(&host->rng); }

static double fake_rng_uniform(PrunusHost *host) {
  return (double)(fakehost_splitmix64(&host->rng) >> 11) * 0x1.0p-53;
}

static const PrunusModelView *fake_model(PrunusHost *host) { return host->view; }

// ----------------------------------------------------------------------------
// Retrain services: record, do nothing

static int fake_train(PrunusHost *host, int epochs, double lr, double schedule_offset,
                      int schedule_epochs) {
  FakeHostCall c = {.kind = FAKEHOST_CALL_TRAIN,
                    .epochs = epochs,
                    .lr = lr,
                    .schedule_offset = schedule_offset,
                    .schedule_epochs = schedule_epochs};
  g_array_append_val(host->calls, c);
  return 0;
}

static int fake_rewind(PrunusHost *host, int epoch) {
  FakeHostCall c = {.kind = FAKEHOST_CALL_REWIND, .epoch = epoch};
  g_array_append_val(host->calls, c);
  return 0;
}

static int fake_reinit(PrunusHost *host, uint64_t seed) {
  FakeHostCall c = {.kind = FAKEHOST_CALL_REINIT, .seed = seed};
  g_array_append_val(host->calls, c);
  return 0;
}

static int fake_evaluate(PrunusHost *host, double *val_loss, double *val_accuracy) {
  FakeHostCall c = {.kind = FAKEHOST_CALL_EVALUATE};
  g_array_append_val(host->calls, c);
  *val_loss = NAN;
  *val_accuracy = NAN;
  return 0;
}

static int fake_pretrain_epochs(PrunusHost *host) { return host->pretrain_epochs; }

static double fake_pretrain_lr(PrunusHost *host) { return host->pretrain_lr; }

// ----------------------------------------------------------------------------
// Life cycle and test accessors

static void fake_setting_clear(gpointer p) {
  FakeSetting *s = p;
  g_free(s->key);
  g_free(s->value);
}

PrunusHost *fakehost_new(uint64_t seed, gboolean with_retrain) {
  PrunusHost *h = g_new0(PrunusHost, 1);
  h->services = (PrunusHostServices){
      .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
      /* a revision-2 host: it has none of revision 3's services */
      .size = offsetof(PrunusHostServices, get_double_range) + sizeof(void *),
      .log = fake_log,
      .set_error = fake_set_error,
      .get_int = fake_get_int,
      .get_double = fake_get_double,
      .get_bool = fake_get_bool,
      .get_string = fake_get_string,
      .get_choice = fake_get_choice,
      .rng_u64 = fake_rng_u64,
      .rng_uniform = fake_rng_uniform,
      .model = fake_model,
      .revision = 2,
      .get_int_range = fake_get_int_range,
      .get_double_range = fake_get_double_range,
  };
  if (with_retrain) {
    h->services.train = fake_train;
    h->services.rewind = fake_rewind;
    h->services.reinit = fake_reinit;
    h->services.evaluate = fake_evaluate;
    h->services.pretrain_epochs = fake_pretrain_epochs;
    h->services.pretrain_lr = fake_pretrain_lr;
  }
  h->settings = g_array_new(FALSE, TRUE, sizeof(FakeSetting));
  g_array_set_clear_func(h->settings, fake_setting_clear);
  h->calls = g_array_new(FALSE, TRUE, sizeof(FakeHostCall));
  h->rng = seed;
  h->pretrain_epochs = 10;
  h->pretrain_lr = 0.1;
  return h;
}

void fakehost_free(PrunusHost *host) {
  if (!host) return;
  g_array_unref(host->settings);
  g_array_unref(host->calls);
  g_free(host->error);
  g_free(host);
}

const PrunusHostServices *fakehost_services(PrunusHost *host) { return &host->services; }

void fakehost_set(PrunusHost *host, const char *key, const char *value) {
  FakeSetting s = {.key = g_strdup(key), .value = g_strdup(value), .read = FALSE};
  g_array_append_val(host->settings, s);
}

const char *fakehost_unread_key(PrunusHost *host) {
  for (guint i = 0; i < host->settings->len; i++) {
    const FakeSetting *s = &g_array_index(host->settings, FakeSetting, i);
    if (!s->read) return s->key;
  }
  return NULL;
}

const char *fakehost_error(PrunusHost *host) { return host->error; }

void fakehost_clear_error(PrunusHost *host) {
  g_free(host->error);
  host->error = NULL;
}

void fakehost_set_revision1(PrunusHost *host) {
  host->services.size =
      (uint32_t)(offsetof(PrunusHostServices, pretrain_lr) + sizeof(host->services.pretrain_lr));
  host->services.revision = 0;
  host->services.get_int_range = NULL;
  host->services.get_double_range = NULL;
}

/* revision 3's services, for create() and needs() only: nothing here plans or solves */
static const PrunusPlanRequest *fake_plan_request(PrunusHost *host) {
  (void)host;
  return NULL;
}

static int fake_set_weights(PrunusHost *host, int layer, const float *w) {
  (void)layer, (void)w;
  fake_set_error(host, "the fake host writes no weights");
  return -1;
}

static int fake_linalg(PrunusHost *host, int n, double *a) {
  (void)n, (void)a;
  fake_set_error(host, "the fake host solves nothing");
  return -1;
}

void fakehost_set_revision(PrunusHost *host, uint32_t revision) {
  g_return_if_fail(revision >= 3 && revision <= PRUNUS_PLUGIN_REVISION);
  host->services.size = sizeof(PrunusHostServices);
  host->services.revision = revision;
  host->services.plan_request = fake_plan_request;
  host->services.set_weights = fake_set_weights;
  host->services.cholesky = fake_linalg;
  host->services.spd_inverse = fake_linalg;
}

void fakehost_set_model(PrunusHost *host, const PrunusModelView *view) { host->view = view; }

void fakehost_set_pretrain(PrunusHost *host, int epochs, double lr) {
  host->pretrain_epochs = epochs;
  host->pretrain_lr = lr;
}

guint fakehost_n_calls(PrunusHost *host) { return host->calls->len; }

const FakeHostCall *fakehost_call(PrunusHost *host, guint i) {
  g_assert_cmpuint(i, <, host->calls->len);
  return &g_array_index(host->calls, FakeHostCall, i);
}
