/* retrain.h: header-only settings shared by the retrain plugins: `epochs` and
 * `lr` through the host's range-checked getters (whose errors name the key, its
 * file:line, the allowed range and the value found), after checking the host
 * has them (plugin.h, rule G2: they were appended in revision 2). Needs only
 * plugin.h. */
#ifndef PRUNUS_PLUGINS_RETRAIN_H
#define PRUNUS_PLUGINS_RETRAIN_H

#include <prunus/plugin.h>

#include <math.h>
#include <stdint.h>

/* A default for retrain_get_epochs: "absent", which it reports as -1 (the
 * plugin then uses train.epochs when it retrains). No config value can be this. */
#define RETRAIN_ABSENT INT64_MIN

/* 0 when the host has the range-checked getters, else -1 after set_error. */
static inline int retrain_require_range_getters(PrunusHost *host, const PrunusHostServices *s) {
  if (PRUNUS_HOST_HAS(s, get_int_range) && PRUNUS_HOST_HAS(s, get_double_range) &&
      s->get_int_range && s->get_double_range)
    return 0;
  s->set_error(host,
               "this plugin needs the services get_int_range and get_double_range of "
               "plugin revision 2; this prunus's host is revision %u",
               (unsigned)PRUNUS_HOST_REVISION(s));
  return -1;
}

/* epochs: an integer in [0, max] (max <= INT32_MAX: the train service takes an
 * int); absent: defval, or -1 when defval is RETRAIN_ABSENT. */
static inline int retrain_get_epochs(PrunusHost *host, const PrunusHostServices *s, int64_t defval,
                                     int64_t max, int *out) {
  int64_t v;
  if (s->get_int_range(host, "epochs", defval, 0, max, &v) != 0) return -1;
  *out = v == RETRAIN_ABSENT ? -1 : (int)v;
  return 0;
}

/* lr: a finite rate >= 0, the base rate of retraining; absent or 0 = the
 * config's train.lr. */
static inline int retrain_get_lr(PrunusHost *host, const PrunusHostServices *s, double *out) {
  return s->get_double_range(host, "lr", 0.0, 0.0, HUGE_VAL, out);
}

#endif
