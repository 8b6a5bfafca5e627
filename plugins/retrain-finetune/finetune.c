/* finetune.c: the plain retrain. After each prune the surviving weights keep their
 * values and train on for `epochs` epochs (default 1, 0 = no retraining) at base
 * rate `lr` (default 0 = the config's train.lr), on a fresh LR schedule. */
#include "../common/retrain.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int epochs;
  double lr;
} Finetune;

static int finetune_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int epochs;
  double lr;
  if (!services->train) {
    services->set_error(host, "the host gives no train service to this retrain plugin");
    return -1;
  }
  if (retrain_require_range_getters(host, services) != 0 ||
      retrain_get_epochs(host, services, 1, INT32_MAX, &epochs) != 0 ||
      retrain_get_lr(host, services, &lr) != 0)
    return -1;
  Finetune *f = malloc(sizeof *f);
  if (!f) {
    services->set_error(host, "out of memory");
    return -1;
  }
  f->host = host;
  f->services = services;
  f->epochs = epochs;
  f->lr = lr;
  *state = f;
  return 0;
}

static void finetune_destroy(void *state) { free(state); }

static int finetune_retrain(void *state, int round) {
  const Finetune *f = state;
  (void)round;
  if (f->epochs == 0) return 0;
  return f->services->train(f->host, f->epochs, f->lr, 0, 0);
}

static const PrunusRetrainOps finetune_ops = {
    .retrain = finetune_retrain,
};

static const PrunusPluginDesc finetune_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "finetune",
    .version = "1.0.0",
    .summary = "keep the surviving weights and train on (fresh LR schedule)",
    .create = finetune_create,
    .destroy = finetune_destroy,
    PRUNUS_PLUGIN_OPS(retrain, finetune_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &finetune_desc : NULL;
}
