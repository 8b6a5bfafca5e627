/* early_stop.c: an example retrain plugin written outside prunus: after each prune,
 * fine-tune one epoch at a time (the first epochs at a ramped-up rate), and stop as
 * soon as the validation accuracy is back near its level before the prune, stops
 * improving, or the epoch budget is spent. Uses the host's train and evaluate.
 *
 * Settings (prune.retrain), all optional:
 *   max_epochs = 5       most epochs per round
 *   warmup_epochs = 1    epoch e < warmup_epochs trains at lr * (e + 1) / (warmup_epochs + 1)
 *   patience = 1         stop after this many epochs past the warm-up without a gain
 *   min_delta = 0.001    a gain is a validation accuracy above the best so far + min_delta
 *   tolerance = 0.005    stop once accuracy >= (accuracy before the prune) - tolerance
 *   lr = 0.0             base rate; 0 = the config's train.lr
 * "Before the prune" is the accuracy this plugin reached at the end of the previous
 * round; round 1 (and the first round after a resumed run) has none to compare with.
 */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *svc;
  int max_epochs, warmup_epochs, patience;
  double min_delta, tolerance, lr;
  double before; /* validation accuracy at the end of the previous round; NaN = unknown */
} EarlyStop;

/* An integer setting in [lo, hi]. Through the host's get_int_range where it has
 * one (appended in revision 2: PRUNUS_HOST_HAS checks the host's table is that
 * long), whose error names the key, its file:line, the range and the value; on an
 * older host, get_int and the same check here. */
static int read_int(PrunusHost *host, const PrunusHostServices *svc, const char *key, int defval,
                    int lo, int hi, int *out) {
  int64_t v;
  if (PRUNUS_HOST_HAS(svc, get_int_range)) {
    if (svc->get_int_range(host, key, defval, lo, hi, &v) != 0) return -1;
  } else {
    if (svc->get_int(host, key, defval, &v) != 0) return -1;
    if (v < lo || v > hi) {
      svc->set_error(host, "%s = %lld is out of range: must be in [%d, %d]", key, (long long)v, lo,
                     hi);
      return -1;
    }
  }
  *out = (int)v;
  return 0;
}

/* A finite number setting in [lo, hi], the same way (get_double_range). */
static int read_double(PrunusHost *host, const PrunusHostServices *svc, const char *key,
                       double defval, double lo, double hi, double *out) {
  if (PRUNUS_HOST_HAS(svc, get_double_range))
    return svc->get_double_range(host, key, defval, lo, hi, out);
  if (svc->get_double(host, key, defval, out) != 0) return -1;
  if (!(isfinite(*out) && *out >= lo && *out <= hi)) {
    svc->set_error(host, "%s = %g is out of range: must be in [%g, %g]", key, *out, lo, hi);
    return -1;
  }
  return 0;
}

static int create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  /* The retrain services exist for retrain plugins only; they MUST NOT be called
   * here (the model does not exist yet while plugins are created). */
  if (!svc->train || !svc->evaluate || !svc->pretrain_lr) {
    svc->set_error(host, "this host gives no train/evaluate service to retrain plugins");
    return -1;
  }
  EarlyStop s = {.host = host, .svc = svc, .before = NAN};
  /* every key is read here: keys no plugin read are reported right after create() */
  if (read_int(host, svc, "max_epochs", 5, 1, 1000, &s.max_epochs) != 0 ||
      read_int(host, svc, "warmup_epochs", 1, 0, s.max_epochs, &s.warmup_epochs) != 0 ||
      read_int(host, svc, "patience", 1, 1, 1000, &s.patience) != 0 ||
      read_double(host, svc, "min_delta", 0.001, 0.0, 1.0, &s.min_delta) != 0 ||
      read_double(host, svc, "tolerance", 0.005, 0.0, 1.0, &s.tolerance) != 0 ||
      read_double(host, svc, "lr", 0.0, 0.0, HUGE_VAL, &s.lr) != 0)
    return -1;
  EarlyStop *p = malloc(sizeof *p);
  if (!p) {
    svc->set_error(host, "out of memory");
    return -1;
  }
  *p = s;
  *state = p;
  return 0;
}

static void destroy(void *state) { free(state); }

/* Validation accuracy now, or -1 (with the error recorded) without a validation split. */
static int val_accuracy(EarlyStop *s, double *acc) {
  double loss;
  if (s->svc->evaluate(s->host, &loss, acc) != 0) return -1;
  if (isnan(*acc)) {
    s->svc->set_error(s->host,
                      "there is no validation split to stop on: set dataset.validation "
                      "to the number of training samples to hold out");
    return -1;
  }
  return 0;
}

static int retrain(void *state, int round) {
  EarlyStop *s = state;
  const double base = s->lr > 0.0 ? s->lr : s->svc->pretrain_lr(s->host);
  double after_prune, acc;
  if (val_accuracy(s, &after_prune) != 0) return -1;
  acc = after_prune;
  double best = after_prune;
  int stale = 0, epochs = 0;
  const char *why = "budget spent";
  for (;;) {
    if (!isnan(s->before) && acc >= s->before - s->tolerance) {
      why = "recovered";
      break;
    }
    if (stale >= s->patience) {
      why = "no gain";
      break;
    }
    if (epochs == s->max_epochs) break;
    const int e = epochs;
    const double ramp = e < s->warmup_epochs ? (double)(e + 1) / (s->warmup_epochs + 1) : 1.0;
    /* One epoch placed at epoch e of a max_epochs-long schedule: the config's
     * lr_schedule runs across the calls as if they were one training run. */
    if (s->svc->train(s->host, 1, base * ramp, (double)e, s->max_epochs) != 0) return -1;
    epochs++;
    if (val_accuracy(s, &acc) != 0) return -1;
    s->svc->log(s->host, PRUNUS_LOG_DEBUG, "round %d epoch %d: lr %g, val accuracy %.6f", round,
                epochs, base * ramp, acc);
    if (acc > best + s->min_delta) {
      best = acc;
      stale = 0;
    } else if (epochs > s->warmup_epochs) {
      stale++; /* warm-up epochs run at a lower rate: they do not count against patience */
    }
  }
  s->svc->log(s->host, PRUNUS_LOG_INFO,
              "round %d: val accuracy %.6f after the prune, %.6f after %d epoch%s (%s)", round,
              after_prune, acc, epochs, epochs == 1 ? "" : "s", why);
  s->before = acc;
  return 0;
}

static const PrunusRetrainOps ops = {
    .retrain = retrain,
};

static const PrunusPluginDesc desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "early-stop",
    .version = "1.0.0",
    .summary = "fine-tune with warm-up until val accuracy recovers or stops improving",
    .create = create,
    .destroy = destroy,
    PRUNUS_PLUGIN_OPS(retrain, ops), /* sets ops_size too */
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &desc : NULL;
}
