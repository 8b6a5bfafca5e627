/* rewind.c: the lottery-ticket retrain (Frankle & Carbin 2019; Frankle et al. 2020).
 * After each prune the surviving weights go back to θ0 (to = "init") or to θk
 * (to = "epoch", epoch = k), then train `epochs` epochs (default: train.epochs). */
#include "../common/retrain.h"

#include <stdint.h>
#include <stdlib.h>

typedef enum {
  REWIND_TO_INIT = 0,  /* θ0: the original initialisation */
  REWIND_TO_EPOCH = 1, /* θk: the weights after pretraining epoch k */
} RewindTo;

static const char *const rewind_to_names[] = {"init", "epoch", NULL};

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int epoch;  /* pretraining epoch to rewind to; 0 = θ0 */
  int epochs; /* retraining epochs; -1 = pretrain_epochs(host) */
  double lr;
} Rewind;

static int rewind_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  int to, epochs;
  int64_t epoch;
  double lr;
  if (!services->train || !services->rewind || !services->pretrain_epochs) {
    services->set_error(host,
                        "the host gives no train/rewind/pretrain_epochs service to this "
                        "retrain plugin");
    return -1;
  }
  if (retrain_require_range_getters(host, services) != 0) return -1;
  if (services->get_choice(host, "to", rewind_to_names, REWIND_TO_INIT, &to) != 0) return -1;
  if (to == REWIND_TO_EPOCH) {
    /* θk exists for the pretraining epochs 1..train.epochs */
    if (services->get_int_range(host, "epoch", RETRAIN_ABSENT, 1, services->pretrain_epochs(host),
                                &epoch) != 0)
      return -1;
    if (epoch == RETRAIN_ABSENT) {
      services->set_error(host,
                          "epoch: expected an integer >= 1 with to = \"epoch\", found "
                          "none");
      return -1;
    }
  } else {
    if (services->get_int(host, "epoch", RETRAIN_ABSENT, &epoch) != 0) return -1;
    if (epoch != RETRAIN_ABSENT) {
      services->set_error(host,
                          "epoch: only used with to = \"epoch\", found epoch = %lld with "
                          "to = \"init\"",
                          (long long)epoch);
      return -1;
    }
  }
  if (retrain_get_epochs(host, services, RETRAIN_ABSENT, INT32_MAX, &epochs) != 0 ||
      retrain_get_lr(host, services, &lr) != 0)
    return -1;
  Rewind *r = malloc(sizeof *r);
  if (!r) {
    services->set_error(host, "out of memory");
    return -1;
  }
  r->host = host;
  r->services = services;
  r->epoch = to == REWIND_TO_EPOCH ? (int)epoch : 0;
  r->epochs = epochs;
  r->lr = lr;
  *state = r;
  return 0;
}

static void rewind_destroy(void *state) { free(state); }

static int rewind_retrain(void *state, int round) {
  const Rewind *r = state;
  (void)round;
  const int rc = r->services->rewind(r->host, r->epoch);
  if (rc != 0) return rc;
  const int epochs = r->epochs >= 0 ? r->epochs : r->services->pretrain_epochs(r->host);
  if (epochs <= 0) return 0;
  return r->services->train(r->host, epochs, r->lr, 0, 0);
}

/* The weights to rewind to must be kept by the run: θ0 unless the network came from
 * prune.pretrained, θk only when prune.rewind_epoch = k (revision 7; an older host
 * never calls this, and its rewind service reports the same at round 1). */
static int rewind_check(void *state, const PrunusModelView *model, const PrunusCheckInfo *info) {
  const Rewind *r = state;
  (void)model;
  if (r->epoch == 0 && !info->theta0_kept) {
    r->services->set_error(r->host,
                           "to = \"init\" rewinds to the initial weights θ0, but the network "
                           "comes from prune.pretrained, which holds none: pretrain in this "
                           "run instead (remove prune.pretrained), or use retrain plugin "
                           "'finetune' or 'lr-rewind'");
    return -1;
  }
  if (r->epoch > 0 && r->epoch != info->rewind_epoch) {
    if (!info->theta0_kept)
      r->services->set_error(r->host,
                             "to = \"epoch\", epoch = %d rewinds to the weights after "
                             "pretraining epoch %d, but the network comes from "
                             "prune.pretrained, which holds none: pretrain in this run instead",
                             r->epoch, r->epoch);
    else
      r->services->set_error(r->host,
                             "to = \"epoch\", epoch = %d rewinds to the weights after "
                             "pretraining epoch %d, which the run keeps only with "
                             "prune.rewind_epoch = %d (it keeps %s)",
                             r->epoch, r->epoch, r->epoch,
                             info->rewind_epoch > 0 ? "another epoch's" : "θ0 only");
    return -1;
  }
  return 0;
}

static const PrunusRetrainOps rewind_ops = {
    .retrain = rewind_retrain,
    .check = rewind_check,
};

static const PrunusPluginDesc rewind_desc = {
    .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
    .size = sizeof(PrunusPluginDesc),
    .kind = PRUNUS_PLUGIN_RETRAIN,
    .name = "rewind",
    .version = "1.1.0",
    .summary = "lottery ticket: rewind survivors to θ0 (or θk) and retrain",
    .create = rewind_create,
    .destroy = rewind_destroy,
    PRUNUS_PLUGIN_OPS(retrain, rewind_ops),
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index == 0 ? &rewind_desc : NULL;
}
