/* plugin_host.c: the services table plugins call (logging, settings, RNG,
 * model view, retrain services) and the life cycle of one plugin instance. */
#include "plugin_host.h"
#include "linalg.h"
#include "plugin_guard.h"
#include "rng.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct PrunusHost {
  const PrunusPluginEntry *entry;
  PrunusConfig *cfg;
  config_setting_t *group;
  char *slot;
  PrunusRng rng;
  PrunusHostCallbacks cb;
  char *message;         /* from set_error */
  GError *service_error; /* from a failing retrain service */
  void *state;
  gboolean created;
};

/* ------------------------------------------------------------------------ */
/* services */

static void svc_log(PrunusHost *h, PrunusLogLevel level, const char *fmt, ...) {
  if (level == PRUNUS_LOG_DEBUG && !g_getenv("PRUNUS_DEBUG")) return;
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  fprintf(level >= PRUNUS_LOG_WARNING ? stderr : stdout, "[%s %s] %s%s\n",
          prunus_plugin_kind_name(h->entry->desc->kind), h->entry->desc->name,
          level >= PRUNUS_LOG_WARNING ? "warning: " : "", msg);
  g_free(msg);
}

static void svc_set_error(PrunusHost *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_free(h->message);
  h->message = g_strdup_vprintf(fmt, ap);
  va_end(ap);
}

static void record(PrunusHost *h, GError *error) {
  g_free(h->message);
  h->message = g_strdup(error->message);
  g_error_free(error);
}

static int svc_get_int(PrunusHost *h, const char *key, int64_t defval, int64_t *out) {
  GError *error = NULL;
  if (prunus_config_get_int64(h->cfg, h->group, key, FALSE, defval, out, &error)) return 0;
  record(h, error);
  return -1;
}

static int svc_get_double(PrunusHost *h, const char *key, double defval, double *out) {
  GError *error = NULL;
  if (prunus_config_get_double(h->cfg, h->group, key, FALSE, defval, out, &error)) return 0;
  record(h, error);
  return -1;
}

static int svc_get_bool(PrunusHost *h, const char *key, int defval, int *out) {
  GError *error = NULL;
  gboolean b = FALSE;
  if (prunus_config_get_bool(h->cfg, h->group, key, FALSE, defval, &b, &error)) {
    *out = b ? 1 : 0;
    return 0;
  }
  record(h, error);
  return -1;
}

static int svc_get_string(PrunusHost *h, const char *key, const char *defval, const char **out) {
  GError *error = NULL;
  if (prunus_config_get_string(h->cfg, h->group, key, FALSE, defval, out, &error)) return 0;
  record(h, error);
  return -1;
}

static int svc_get_choice(PrunusHost *h, const char *key, const char *const *choices, int defval,
                          int *out) {
  GError *error = NULL;
  if (prunus_config_get_enum(h->cfg, h->group, key, FALSE, defval, choices, out, &error)) return 0;
  record(h, error);
  return -1;
}

/* "key 'prune.retrain.epochs' = -1 is out of range: must be >= 0" at the key's
 * file:line, the wording of the core's own range checks. */
static int range_error(PrunusHost *h, const char *key, const char *found, const char *allowed) {
  config_setting_t *s = h->group ? config_setting_get_member(h->group, key) : NULL;
  char *where = s ? prunus_config_where(h->cfg, s) : g_strdup(prunus_config_path(h->cfg));
  svc_set_error(h, "%s: key '%s.%s' = %s is out of range: must be %s", where, h->slot, key, found,
                allowed);
  g_free(where);
  return -1;
}

static int svc_get_int_range(PrunusHost *h, const char *key, int64_t defval, int64_t min,
                             int64_t max, int64_t *out) {
  if (min > max) {
    svc_set_error(h, "get_int_range('%s'): min %" PRId64 " > max %" PRId64, key, min, max);
    return -1;
  }
  config_setting_t *s = h->group ? config_setting_get_member(h->group, key) : NULL;
  if (svc_get_int(h, key, defval, out) != 0) return -1;
  if (!s || (*out >= min && *out <= max)) return 0;
  char found[32], allowed[64];
  g_snprintf(found, sizeof found, "%" PRId64, *out);
  if (max == INT64_MAX)
    g_snprintf(allowed, sizeof allowed, ">= %" PRId64, min);
  else if (min == INT64_MIN)
    g_snprintf(allowed, sizeof allowed, "<= %" PRId64, max);
  else
    g_snprintf(allowed, sizeof allowed, "in [%" PRId64 ", %" PRId64 "]", min, max);
  return range_error(h, key, found, allowed);
}

static int svc_get_double_range(PrunusHost *h, const char *key, double defval, double min,
                                double max, double *out) {
  if (isnan(min) || isnan(max) || min > max) {
    svc_set_error(h, "get_double_range('%s'): min %g > max %g", key, min, max);
    return -1;
  }
  config_setting_t *s = h->group ? config_setting_get_member(h->group, key) : NULL;
  if (svc_get_double(h, key, defval, out) != 0) return -1;
  if (!s || (isfinite(*out) && *out >= min && *out <= max)) return 0;
  char found[48], allowed[80];
  g_snprintf(found, sizeof found, "%g", *out);
  const char *finite = isfinite(*out) ? "" : "a finite number ";
  if (isinf(min) && isinf(max))
    g_snprintf(allowed, sizeof allowed, "a finite number");
  else if (isinf(max))
    g_snprintf(allowed, sizeof allowed, "%s>= %g", finite, min);
  else if (isinf(min))
    g_snprintf(allowed, sizeof allowed, "%s<= %g", finite, max);
  else
    g_snprintf(allowed, sizeof allowed, "%sin [%g, %g]", finite, min, max);
  return range_error(h, key, found, allowed);
}

static uint64_t svc_rng_u64(PrunusHost *h) { return prunus_rng_next(&h->rng); }
static double svc_rng_uniform(PrunusHost *h) { return prunus_rng_uniform(&h->rng); }

static const PrunusModelView *svc_model(PrunusHost *h) { return h->cb.model(h->cb.user); }

static int service_result(PrunusHost *h, gboolean ok, GError *error) {
  if (ok) return 0;
  g_free(h->message);
  h->message = g_strdup(error->message);
  g_clear_error(&h->service_error);
  h->service_error = error;
  return -1;
}

static int svc_train(PrunusHost *h, int epochs, double lr, double offset, int total) {
  GError *error = NULL;
  if (epochs < 0 || !isfinite(lr) || !(offset >= 0) || total < 0) {
    svc_set_error(h, "train(epochs=%d, lr=%g, offset=%g, total=%d): invalid arguments", epochs, lr,
                  offset, total);
    return -1;
  }
  /* an offset places the run on a schedule of `total` epochs: it must fall inside it
   * (past its end the rate is that of the end, 0 for cosine, which trains nothing) */
  if (total > 0 ? offset >= total : offset != 0) {
    svc_set_error(h,
                  "train(epochs=%d, lr=%g, offset=%g, total=%d): the schedule offset must be in "
                  "[0, total) (0 with total 0: a fresh schedule)",
                  epochs, lr, offset, total);
    return -1;
  }
  /* the call sets error: sequence it before error is read (argument order is unspecified) */
  prunus_plugin_guard_enter_service("train()");
  const gboolean ok = h->cb.train(h->cb.user, epochs, lr, offset, total, &error);
  prunus_plugin_guard_leave();
  return service_result(h, ok, error);
}

static int svc_rewind(PrunusHost *h, int epoch) {
  GError *error = NULL;
  prunus_plugin_guard_enter_service("rewind()");
  const gboolean ok = h->cb.rewind(h->cb.user, epoch, &error);
  prunus_plugin_guard_leave();
  return service_result(h, ok, error);
}

static int svc_reinit(PrunusHost *h, uint64_t seed) {
  GError *error = NULL;
  prunus_plugin_guard_enter_service("reinit()");
  const gboolean ok = h->cb.reinit(h->cb.user, seed, &error);
  prunus_plugin_guard_leave();
  return service_result(h, ok, error);
}

static int svc_evaluate(PrunusHost *h, double *loss, double *accuracy) {
  prunus_plugin_guard_enter_service("evaluate()");
  h->cb.evaluate(h->cb.user, loss, accuracy);
  prunus_plugin_guard_leave();
  return 0;
}

static int svc_pretrain_epochs(PrunusHost *h) { return h->cb.pretrain_epochs; }
static double svc_pretrain_lr(PrunusHost *h) { return h->cb.pretrain_lr; }

/* NULL when the embedding host has no schedule (no callback). */
static const PrunusPlanRequest *svc_plan_request(PrunusHost *h) {
  return h->cb.plan_request ? h->cb.plan_request(h->cb.user) : NULL;
}

static int svc_set_weights(PrunusHost *h, int layer, const float *w) {
  GError *error = NULL;
  if (!w) {
    svc_set_error(h, "set_weights(layer %d): the weights are NULL", layer);
    return -1;
  }
  if (!h->cb.set_weights) {
    svc_set_error(h, "set_weights(): this host cannot write weights here");
    return -1;
  }
  const gboolean ok = h->cb.set_weights(h->cb.user, layer, w, &error);
  if (ok) return 0;
  record(h, error);
  return -1;
}

/* The linear algebra services: a matrix that is not positive definite is the
 * plugin's to handle (dampening), so the message says which minor failed. */
static int spd_result(PrunusHost *h, const char *what, int n, int info) {
  if (info == 0) return 0;
  svc_set_error(h,
                "%s of a %dx%d matrix: it is not positive definite (the leading minor of order "
                "%d is not); add dampening to its diagonal",
                what, n, n, info);
  return -1;
}

static int svc_cholesky(PrunusHost *h, int n, double *a) {
  if (n < 0 || (n > 0 && !a)) {
    svc_set_error(h, "cholesky(n=%d): invalid arguments", n);
    return -1;
  }
  return spd_result(h, "cholesky", n, prunus_cholesky_upper(n, a));
}

static int svc_spd_inverse(PrunusHost *h, int n, double *a) {
  if (n < 0 || (n > 0 && !a)) {
    svc_set_error(h, "spd_inverse(n=%d): invalid arguments", n);
    return -1;
  }
  return spd_result(h, "spd_inverse", n, prunus_spd_inverse(n, a));
}

/* What every kind gets; retrain plugins also get the retrain services. */
#define SERVICES_COMMON                                                                         \
  .abi_version = PRUNUS_PLUGIN_ABI_VERSION, .size = sizeof(PrunusHostServices), .log = svc_log, \
  .set_error = svc_set_error, .get_int = svc_get_int, .get_double = svc_get_double,             \
  .get_bool = svc_get_bool, .get_string = svc_get_string, .get_choice = svc_get_choice,         \
  .rng_u64 = svc_rng_u64, .rng_uniform = svc_rng_uniform, .model = svc_model,                   \
  .pretrain_epochs = svc_pretrain_epochs, .pretrain_lr = svc_pretrain_lr,                       \
  .revision = PRUNUS_PLUGIN_REVISION, .get_int_range = svc_get_int_range,                       \
  .get_double_range = svc_get_double_range, .cholesky = svc_cholesky,                           \
  .spd_inverse = svc_spd_inverse

static const PrunusHostServices services_retrain = {
    SERVICES_COMMON,      .train = svc_train,       .rewind = svc_rewind,
    .reinit = svc_reinit, .evaluate = svc_evaluate,
};

static const PrunusHostServices services_criterion = {
    SERVICES_COMMON, .plan_request = svc_plan_request, .set_weights = svc_set_weights};

static const PrunusHostServices services_granularity = {SERVICES_COMMON,
                                                        .plan_request = svc_plan_request};

/* ------------------------------------------------------------------------ */
/* life cycle */

PrunusHost *prunus_host_instantiate(const PrunusPluginEntry *entry, PrunusConfig *cfg,
                                    config_setting_t *group, const char *slot, uint64_t seed,
                                    const PrunusHostCallbacks *cb, GError **error) {
  PrunusHost *h = g_new0(PrunusHost, 1);
  h->entry = entry;
  h->cfg = cfg;
  h->group = group;
  h->slot = g_strdup(slot);
  h->cb = *cb;
  prunus_rng_seed(&h->rng, prunus_seed_derive(seed, entry->desc->name));
  const PrunusHostServices *svc = entry->desc->kind == PRUNUS_PLUGIN_RETRAIN ? &services_retrain
                                  : entry->desc->kind == PRUNUS_PLUGIN_CRITERION
                                      ? &services_criterion
                                      : &services_granularity;
  prunus_host_call_begin(h, "create()");
  const int rc = entry->desc->create(h, svc, &h->state);
  prunus_host_call_end(h);
  if (rc != 0) {
    prunus_host_set_failure(h, "create() failed", error);
    prunus_host_free(h);
    return NULL;
  }
  h->created = TRUE;
  return h;
}

void prunus_host_reseed(PrunusHost *h, uint64_t seed) {
  prunus_rng_seed(&h->rng, prunus_seed_derive(seed, h->entry->desc->name));
}

void prunus_host_free(PrunusHost *h) {
  if (!h) return;
  if (h->created && h->entry->desc->destroy) {
    prunus_host_call_begin(h, "destroy()");
    h->entry->desc->destroy(h->state);
    prunus_host_call_end(h);
  }
  g_clear_error(&h->service_error);
  g_free(h->message);
  g_free(h->slot);
  g_free(h);
}

void *prunus_host_state(PrunusHost *h) { return h->state; }

const PrunusPluginDesc *prunus_host_desc(PrunusHost *h) { return h->entry->desc; }

const char *prunus_host_path(PrunusHost *h) { return h->entry->path; }

const char *prunus_host_slot(PrunusHost *h) { return h->slot; }

void prunus_host_call_begin(PrunusHost *h, const char *call) {
  prunus_plugin_guard_enter(h->slot, h->entry->desc->name, h->entry->path, call);
}

void prunus_host_call_end(PrunusHost *h) {
  (void)h;
  prunus_plugin_guard_leave();
}

void prunus_host_set_failure(PrunusHost *h, const char *what, GError **error) {
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_PLUGIN, "%s plugin '%s' (%s): %s: %s", h->slot,
              h->entry->desc->name, h->entry->path, what,
              h->message ? h->message : "the plugin returned an error without a message");
  g_clear_pointer(&h->message, g_free);
}

GError *prunus_host_take_service_error(PrunusHost *h) {
  GError *e = h->service_error;
  h->service_error = NULL;
  return e;
}
