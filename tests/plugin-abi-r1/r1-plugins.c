/* r1-plugins.c: one plugin of each kind built against the frozen revision-1
 * plugin.h next to it (include/prunus/plugin.h as of commit a1b9bdd), so the
 * loader tests can prove that a plugin built before revision 2 loads and runs on
 * today's host (plugin.h, rule G1): its smaller descriptor and ops tables are
 * read as far as it had them, its services are the revision-1 prefix.
 *   r1-index     criterion: needs per-batch loss gradients, counts the steps it
 *                observes (setting expect_steps: score() fails unless it saw
 *                exactly that many, each with finite gradients for every layer)
 *                and scores every weight by its flat index in its layer.
 *   r1-lowest    granularity: per layer, prunes the round(amount * alive) alive
 *                weights with the lowest scores (ties: lower index first).
 *   r1-finetune  retrain: evaluate(), then train(epochs) on a fresh schedule.
 * Together (layer scope) round r leaves each layer's weights alive exactly from
 * index n - round(n * (1 - amount)^r) on: a mask no built-in plugin makes. */
#include <prunus/plugin.h>

#include <math.h>
#include <stdlib.h>

/* The revision-1 sizes as this plugin was compiled: the loader test compares them
 * with what the host assumes revision 1's are. */
PRUNUS_PLUGIN_EXPORT const size_t prunus_r1_sizes[4] = {
    sizeof(PrunusPluginDesc), sizeof(PrunusCriterionOps), sizeof(PrunusGranularityOps),
    sizeof(PrunusRetrainOps)};

// ----------------------------------------------------------------------------
// r1-index

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int64_t expect_steps; /* per round */
  int64_t steps;        /* observed this round */
} Index;

static int index_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Index *x = calloc(1, sizeof *x);
  if (!x) {
    services->set_error(host, "out of memory");
    return -1;
  }
  x->host = host;
  x->services = services;
  if (services->get_int(host, "expect_steps", 0, &x->expect_steps) != 0) {
    free(x);
    return -1;
  }
  *state = x;
  return 0;
}

static void index_destroy(void *state) { free(state); }

static uint32_t index_needs(void *state) {
  (void)state;
  return PRUNUS_NEED_LOSS_GRAD;
}

static uint32_t index_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int index_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  Index *x = state;
  if (step->kind != PRUNUS_NEED_LOSS_GRAD || !step->grads) {
    x->services->set_error(x->host, "observe(): step kind %u without loss gradients", step->kind);
    return -1;
  }
  for (int k = 0; k < model->n_layers; k++) {
    const PrunusLayerView *l = &model->layers[k];
    double sum = 0.0;
    for (size_t i = 0; i < l->n_weights; i++) sum += fabs(step->grads[k][i]);
    if (!isfinite(sum) || sum == 0.0) {
      x->services->set_error(x->host, "observe(): layer %s: gradient |sum| = %g", l->name, sum);
      return -1;
    }
  }
  x->steps++;
  return 0;
}

static int index_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  Index *x = state;
  if (x->steps != x->expect_steps) {
    x->services->set_error(x->host, "score(): observed %lld calibration steps, expected %lld",
                           (long long)x->steps, (long long)x->expect_steps);
    return -1;
  }
  x->steps = 0;
  for (int k = 0; k < model->n_layers; k++)
    for (size_t i = 0; i < model->layers[k].n_weights; i++)
      scores->weight_scores[k][i] = (float)i;
  return 0;
}

static const PrunusCriterionOps index_ops = {
    .needs = index_needs,
    .produces = index_produces,
    .observe = index_observe,
    .score = index_score,
};

// ----------------------------------------------------------------------------
// r1-lowest

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
} Lowest;

static int lowest_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Lowest *g = malloc(sizeof *g);
  if (!g) {
    services->set_error(host, "out of memory");
    return -1;
  }
  g->host = host;
  g->services = services;
  *state = g;
  return 0;
}

static void lowest_destroy(void *state) { free(state); }

static uint32_t lowest_accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int lowest_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                       const PrunusPlanRequest *req, PrunusPlan *plan) {
  Lowest *g = state;
  if (req->scope != PRUNUS_SCOPE_LAYER) {
    g->services->set_error(g->host, "plan(): only scope = \"layer\" is supported");
    return -1;
  }
  for (int k = 0; k < model->n_layers; k++) {
    const PrunusLayerView *l = &model->layers[k];
    if (!l->prunable) continue;
    size_t alive = 0;
    for (size_t i = 0; i < l->n_weights; i++) alive += l->mask[i] != 0.0f;
    size_t n = (size_t)floor(req->layer_amount[k] * (double)alive + 0.5);
    if (n >= alive) {
      g->services->set_error(g->host, "plan(): layer %s would lose all %zu alive weights",
                             l->name, alive);
      return -1;
    }
    /* n times the lowest alive score not yet taken: O(n * n_weights), fixture-sized */
    for (size_t taken = 0; taken < n; taken++) {
      size_t best = l->n_weights;
      for (size_t i = 0; i < l->n_weights; i++) {
        if (l->mask[i] == 0.0f || plan->remove_weights[k][i]) continue;
        if (best == l->n_weights || scores->weight_scores[k][i] < scores->weight_scores[k][best])
          best = i;
      }
      plan->remove_weights[k][best] = 1;
    }
  }
  return 0;
}

static const PrunusGranularityOps lowest_ops = {
    .accepts = lowest_accepts,
    .plan = lowest_plan,
};

// ----------------------------------------------------------------------------
// r1-finetune

typedef struct {
  PrunusHost *host;
  const PrunusHostServices *services;
  int64_t epochs;
} Finetune;

static int finetune_create(PrunusHost *host, const PrunusHostServices *services, void **state) {
  Finetune *f = malloc(sizeof *f);
  if (!f) {
    services->set_error(host, "out of memory");
    return -1;
  }
  f->host = host;
  f->services = services;
  if (services->get_int(host, "epochs", 1, &f->epochs) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static void finetune_destroy(void *state) { free(state); }

static int finetune_retrain(void *state, int round) {
  Finetune *f = state;
  double loss = 0.0, accuracy = 0.0;
  if (f->services->evaluate(f->host, &loss, &accuracy) != 0) return -1;
  f->services->log(f->host, PRUNUS_LOG_DEBUG, "round %d: before retraining val_accuracy %.4f",
                   round, accuracy);
  return f->services->train(f->host, (int)f->epochs, 0.0, 0, 0);
}

static const PrunusRetrainOps finetune_ops = {
    .retrain = finetune_retrain,
};

// ----------------------------------------------------------------------------
// The descriptors, as a revision-1 plugin writes them

static const PrunusPluginDesc descs[] = {
    {
        .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
        .size = sizeof(PrunusPluginDesc),
        .kind = PRUNUS_PLUGIN_CRITERION,
        .name = "r1-index",
        .version = "1.0.0",
        .summary = "fixture (revision-1 header): score = the weight's index in its layer",
        .create = index_create,
        .destroy = index_destroy,
        .criterion = &index_ops,
    },
    {
        .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
        .size = sizeof(PrunusPluginDesc),
        .kind = PRUNUS_PLUGIN_GRANULARITY,
        .name = "r1-lowest",
        .version = "1.0.0",
        .summary = "fixture (revision-1 header): per layer, the lowest-scored alive weights",
        .create = lowest_create,
        .destroy = lowest_destroy,
        .granularity = &lowest_ops,
    },
    {
        .abi_version = PRUNUS_PLUGIN_ABI_VERSION,
        .size = sizeof(PrunusPluginDesc),
        .kind = PRUNUS_PLUGIN_RETRAIN,
        .name = "r1-finetune",
        .version = "1.0.0",
        .summary = "fixture (revision-1 header): evaluate, then train `epochs` epochs",
        .create = finetune_create,
        .destroy = finetune_destroy,
        .retrain = &finetune_ops,
    },
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index < sizeof descs / sizeof descs[0] ? &descs[index] : NULL;
}
