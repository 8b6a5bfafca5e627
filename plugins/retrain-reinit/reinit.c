/* reinit.c: the lottery-ticket control. After each prune the surviving weights are
 * re-drawn fresh from the initialiser, then train `epochs` epochs (default
 * train.epochs). seed fixes the draw; absent, each round draws one from the host. */
#include "../common/retrain.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int has_seed;
  uint64_t seed;
  int epochs; /* -1 = pretrain_epochs(host) */
  double lr;
} Reinit;

static int reinit_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int epochs;
  int64_t seed;
  double lr;
  if (!services->train || !services->reinit || !services->pretrain_epochs || !services->rng_u64) {
    services->set_error(host,
                        "the host gives no train/reinit/pretrain_epochs/rng_u64 service "
                        "to this retrain plugin");
    return -1;
  }
  if (retrain_require_range_getters(host, services) != 0 ||
      retrain_get_epochs(host, services, RETRAIN_ABSENT, INT32_MAX, &epochs) != 0 ||
      retrain_get_lr(host, services, &lr) != 0 ||
      services->get_int_range(host, "seed", RETRAIN_ABSENT, 0, INT64_MAX, &seed) != 0)
    return -1;
  Reinit *r = malloc(sizeof *r);
  if (!r) {
    services->set_error(host, "out of memory");
    return -1;
  }
  r->host = host;
  r->services = services;
  r->has_seed = seed != RETRAIN_ABSENT;
  r->seed = r->has_seed ? (uint64_t)seed : 0;
  r->epochs = epochs;
  r->lr = lr;
  *state = r;
  return 0;
}

static void reinit_destroy(void *state) { free(state); }

/* With a seed every round re-draws the same initialisation (one fixed θ0' in place
 * of θ0); without, each round takes the next value of the instance's seeded
 * stream, so runs stay reproducible from the config seed. */
static int reinit_retrain(void *state, int round) {
  const Reinit *r = state;
  (void)round;
  const uint64_t seed = r->has_seed ? r->seed : r->services->rng_u64(r->host);
  const int rc = r->services->reinit(r->host, seed);
  if (rc != 0) return rc;
  const int epochs = r->epochs >= 0 ? r->epochs : r->services->pretrain_epochs(r->host);
  if (epochs <= 0) return 0;
  return r->services->train(r->host, epochs, r->lr, 0, 0);
}

static const PrunusRetrainOps reinit_ops = {
    .retrain = reinit_retrain,
};

static const PrunusPluginDesc reinit_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "reinit",
    .version = "1.0.0",
    .summary = "lottery-ticket control: re-draw survivors at random and retrain",
    .create = reinit_create,
    .destroy = reinit_destroy,
    PRUNUS_PLUGIN_OPS(retrain, reinit_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &reinit_desc : NULL;
}
