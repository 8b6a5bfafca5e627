/* lr-rewind.c: learning-rate rewinding (Renda, Frankle & Carbin 2020). After each
 * prune the surviving weights keep their values and train `epochs` epochs (default
 * train.epochs) on the last `epochs` epochs of the original LR schedule, replayed. */
#include "../common/retrain.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int epochs; /* -1 = pretrain_epochs(host) */
} LrRewind;

static int lr_rewind_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int epochs;
  if (!services->train || !services->pretrain_epochs) {
    services->set_error(host,
                        "the host gives no train/pretrain_epochs service to this retrain "
                        "plugin");
    return -1;
  }
  /* at most train.epochs: it replays the end of that schedule */
  if (retrain_require_range_getters(host, services) != 0 ||
      retrain_get_epochs(host, services, RETRAIN_ABSENT, services->pretrain_epochs(host),
                         &epochs) != 0)
    return -1;
  LrRewind *r = malloc(sizeof *r);
  if (!r) {
    services->set_error(host, "out of memory");
    return -1;
  }
  r->host = host;
  r->services = services;
  r->epochs = epochs;
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
    r->services->set_error(r->host,
                           "epochs: %d is more than the %d pretraining epochs whose "
                           "schedule it replays",
                           epochs, total);
    return -1;
  }
  if (epochs <= 0) return 0;
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
    PRUNUS_PLUGIN_OPS(retrain, lr_rewind_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &lr_rewind_desc : NULL;
}
