/* lr-rewind.c: learning-rate rewinding (Renda, Frankle & Carbin 2020). After each
 * prune the surviving weights keep their values and train `epochs` epochs (default
 * train.epochs) on the last `epochs` epochs of the original LR schedule, replayed. */
#include <prunus/plugin.h>

#include <stdint.h>
#include <stdlib.h>

/* get_int's default when a key is absent: no config value can be this. */
#define LR_REWIND_ABSENT INT64_MIN

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int epochs; /* -1 = pretrain_epochs(host) */
} LrRewind;

static int lr_rewind_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int64_t epochs;
  if (!services->train || !services->pretrain_epochs) {
    services->set_error(host, "the host gives no train/pretrain_epochs service to this retrain "
                        "plugin");
    return -1;
  }
  if (services->get_int(host, "epochs", LR_REWIND_ABSENT, &epochs) != 0)
    return -1;
  const int pretrain = services->pretrain_epochs(host);
  if (epochs != LR_REWIND_ABSENT && (epochs < 0 || epochs > pretrain)) {
    services->set_error(host, "epochs: expected an integer in [0, %d] (train.epochs: the "
                        "schedule it replays the end of), found %lld", pretrain,
                        (long long)epochs);
    return -1;
  }
  LrRewind *r = malloc(sizeof *r);
  if (!r) {
    services->set_error(host, "out of memory");
    return -1;
  }
  r->host = host;
  r->services = services;
  r->epochs = epochs == LR_REWIND_ABSENT ? -1 : (int)epochs;
  *state = r;
  return 0;
}

static void lr_rewind_destroy(void *state) { free(state); }

/* train(epochs, lr = 0 (the config's rate), offset = E - epochs, total = E): the
 * schedule of the E pretraining epochs from epoch E - epochs to its end. */
static int lr_rewind_retrain(void *state, int round) {
  const LrRewind *r = state;
  (void)round;
  const int total = r->services->pretrain_epochs(r->host);
  const int epochs = r->epochs >= 0 ? r->epochs : total;
  if (epochs > total) {
    r->services->set_error(r->host, "epochs: %d is more than the %d pretraining epochs whose "
                           "schedule it replays", epochs, total);
    return -1;
  }
  if (epochs <= 0)
    return 0;
  return r->services->train(r->host, epochs, 0.0, (double)(total - epochs), total);
}

static const PrunusRetrainOps lr_rewind_ops = {
    .retrain = lr_rewind_retrain,
};

static const PrunusPluginDesc lr_rewind_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "lr-rewind",
    .version = "1.0.0",
    .summary = "keep the weights, replay the last epochs of the original LR schedule",
    .create = lr_rewind_create,
    .destroy = lr_rewind_destroy,
    .retrain = &lr_rewind_ops,
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &lr_rewind_desc : NULL;
}
