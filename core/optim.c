/* optim.c: SGD (momentum, Nesterov, weight decay) and Adam over the whole
 * parameter slab in one pass that also re-applies the pruning mask; LR schedules. */
#include "train.h"

#include <math.h>
#include <string.h>

PrunusTrainConfig prunus_train_config_default(void) {
  return (PrunusTrainConfig){
      .epochs = 1,
      .batch = 128,
      .optimizer = PRUNUS_OPT_SGD,
      .lr = 0.01,
      .momentum = 0.0,
      .nesterov = FALSE,
      .weight_decay = 0.0,
      .beta1 = 0.9,
      .beta2 = 0.999,
      .eps = 1e-8,
      .lr_schedule = PRUNUS_LR_CONSTANT,
      .step_size = 1,
      .gamma = 0.1,
      .warmup_epochs = 0.0,
  };
}

double prunus_lr_at(const PrunusTrainConfig *tc, double epoch_pos) {
  double lr = tc->lr;
  switch (tc->lr_schedule) {
  case PRUNUS_LR_CONSTANT:
    break;
  case PRUNUS_LR_STEP:
    lr *= pow(tc->gamma, floor(epoch_pos / (tc->step_size > 0 ? tc->step_size : 1)));
    break;
  case PRUNUS_LR_COSINE: {
    double t = tc->epochs > 0 ? fmin(1.0, fmax(0.0, epoch_pos / tc->epochs)) : 1.0;
    lr *= 0.5 * (1.0 + cos(M_PI * t));
    break;
  }
  }
  if (tc->warmup_epochs > 0.0 && epoch_pos < tc->warmup_epochs)
    lr *= fmax(epoch_pos, 1e-3) / tc->warmup_epochs;
  return lr;
}

void prunus_optim_reset(PrunusModel *m) {
  memset(m->opt_m, 0, sizeof(float) * m->n_params);
  memset(m->opt_v, 0, sizeof(float) * m->n_params);
}

/* p = (p - lr * update(g + wd p)) * mask, in one pass; masked weights get no state. */
static void sgd_step(PrunusModel *m, const PrunusTrainConfig *tc, float lr) {
  float *restrict p = m->params, *restrict buf = m->opt_m;
  const float *restrict g = m->grads, *restrict mk = m->mask;
  const float wd = (float)tc->weight_decay, mu = (float)tc->momentum;
  const size_t n = m->n_params;
  if (mu == 0.0f) {
    for (size_t i = 0; i < n; i++) p[i] = (p[i] - lr * (g[i] + wd * p[i])) * mk[i];
    return;
  }
  if (tc->nesterov) {
    for (size_t i = 0; i < n; i++) {
      float gi = (g[i] + wd * p[i]) * mk[i];
      buf[i] = mu * buf[i] + gi;
      p[i] = (p[i] - lr * (gi + mu * buf[i])) * mk[i];
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float gi = (g[i] + wd * p[i]) * mk[i];
      buf[i] = mu * buf[i] + gi;
      p[i] = (p[i] - lr * buf[i]) * mk[i];
    }
  }
}

static void adam_step(PrunusModel *m, const PrunusTrainConfig *tc, float lr, long step) {
  float *restrict p = m->params, *restrict m1 = m->opt_m, *restrict m2 = m->opt_v;
  const float *restrict g = m->grads, *restrict mk = m->mask;
  const float wd = (float)tc->weight_decay, b1 = (float)tc->beta1, b2 = (float)tc->beta2,
              eps = (float)tc->eps;
  const float c1 = (float)(1.0 - pow(tc->beta1, (double)step));
  const float c2 = (float)(1.0 - pow(tc->beta2, (double)step));
  const float step_size = lr / c1, c2_sqrt = sqrtf(c2);
  for (size_t i = 0; i < m->n_params; i++) {
    float gi = (g[i] + wd * p[i]) * mk[i];
    m1[i] = b1 * m1[i] + (1.0f - b1) * gi;
    m2[i] = b2 * m2[i] + (1.0f - b2) * gi * gi;
    float denom = sqrtf(m2[i]) / c2_sqrt + eps;
    p[i] = (p[i] - step_size * m1[i] / denom) * mk[i];
  }
}

void prunus_optim_step(PrunusModel *m, const PrunusTrainConfig *tc, double lr, long step) {
  if (tc->optimizer == PRUNUS_OPT_ADAM)
    adam_step(m, tc, (float)lr, step > 0 ? step : 1);
  else
    sgd_step(m, tc, (float)lr);
}
