/* optim.c: SGD (momentum, Nesterov, weight decay) and Adam over the parameter slab
 * or one layer's span, one pass that also re-applies the pruning mask; LR schedules. */
#include "optim.h"

#include <immintrin.h>
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
      .sparse_from = PRUNUS_SPARSE_FROM_DEFAULT,
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

/* The parameters [off, off + n) of the slabs; mask is NULL when none of them is pruned
 * (multiplying by 1 changes nothing, so skipping it keeps the result bit for bit). */
typedef struct {
  float *restrict p, *restrict m1, *restrict m2, *restrict g;
  const float *restrict mask;
  size_t n;
} OptimSpan;

static OptimSpan span_of(PrunusModel *m, size_t off, size_t n, gboolean masked) {
  return (OptimSpan){m->params + off,
                     m->opt_m + off,
                     m->opt_v + off,
                     m->grads + off,
                     masked ? m->mask + off : NULL,
                     n};
}

/* With CLEAR_GRADS or STREAM_PARAMS the span goes in blocks of 256, each block's
 * gradients zeroed right after their use (while in L1), each block's new parameters
 * written from L1 with non-temporal stores. */
#define SPAN_BLOCK 256

/* dst[0..n) = src[0..n) with non-temporal stores (dst 4-byte aligned). */
static void stream_copy(float *dst, const float *src, size_t n) {
  size_t i = 0;
  for (; i < n && ((uintptr_t)(dst + i) & 15) != 0; i++) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; i++) dst[i] = src[i];
}

/* p = (p - lr * update(g + wd p)) * mask, in one pass; masked weights get no state. */
static void sgd_block(OptimSpan s, const PrunusTrainConfig *tc, float lr) {
  float *restrict p = s.p, *restrict buf = s.m1;
  const float *restrict g = s.g, *restrict mk = s.mask;
  const float wd = (float)tc->weight_decay, mu = (float)tc->momentum;
  const size_t n = s.n;
  if (!mk) {
    if (mu == 0.0f) {
      for (size_t i = 0; i < n; i++) p[i] = p[i] - lr * (g[i] + wd * p[i]);
    } else if (tc->nesterov) {
      for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        buf[i] = mu * buf[i] + gi;
        p[i] = p[i] - lr * (gi + mu * buf[i]);
      }
    } else {
      for (size_t i = 0; i < n; i++) {
        buf[i] = mu * buf[i] + (g[i] + wd * p[i]);
        p[i] = p[i] - lr * buf[i];
      }
    }
    return;
  }
  if (mu == 0.0f) {
    for (size_t i = 0; i < n; i++) p[i] = (p[i] - lr * (g[i] + wd * p[i])) * mk[i];
  } else if (tc->nesterov) {
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

/* Adam's bias corrections at a step: the step size lr / (1 - beta1^t) and
 * sqrt(1 - beta2^t). */
typedef struct {
  float step_size, c2_sqrt;
} AdamScale;

static AdamScale adam_scale(const PrunusTrainConfig *tc, float lr, long step) {
  const float c1 = (float)(1.0 - pow(tc->beta1, (double)step));
  const float c2 = (float)(1.0 - pow(tc->beta2, (double)step));
  return (AdamScale){lr / c1, sqrtf(c2)};
}

static void adam_block(OptimSpan s, const PrunusTrainConfig *tc, AdamScale k) {
  float *restrict p = s.p, *restrict m1 = s.m1, *restrict m2 = s.m2;
  const float *restrict g = s.g, *restrict mk = s.mask;
  const float wd = (float)tc->weight_decay, b1 = (float)tc->beta1, b2 = (float)tc->beta2,
              eps = (float)tc->eps;
  const float step_size = k.step_size, c2_sqrt = k.c2_sqrt;
  for (size_t i = 0; i < s.n; i++) {
    float keep = mk ? mk[i] : 1.0f;
    float gi = (g[i] + wd * p[i]) * keep;
    m1[i] = b1 * m1[i] + (1.0f - b1) * gi;
    m2[i] = b2 * m2[i] + (1.0f - b2) * gi * gi;
    float denom = sqrtf(m2[i]) / c2_sqrt + eps;
    p[i] = (p[i] - step_size * m1[i] / denom) * keep;
  }
}

/* The span a block at a time (see SPAN_BLOCK). */
static void step_blocks(OptimSpan s, const PrunusTrainConfig *tc, float lr, long step,
                        PrunusOptimFlags flags) {
  gboolean clear = (flags & PRUNUS_OPTIM_CLEAR_GRADS) != 0;
  gboolean stream = (flags & PRUNUS_OPTIM_STREAM_PARAMS) != 0;
  size_t block = clear || stream ? SPAN_BLOCK : s.n;
  float staged[SPAN_BLOCK]; /* (block) a streamed block's parameters */
  AdamScale adam = tc->optimizer == PRUNUS_OPT_ADAM ? adam_scale(tc, lr, step) : (AdamScale){0};
  for (size_t i = 0; i < s.n; i += block) {
    OptimSpan b = {
        s.p + i, s.m1 + i, s.m2 + i, s.g + i, s.mask ? s.mask + i : NULL, MIN(block, s.n - i)};
    if (stream) {
      memcpy(staged, b.p, sizeof(float) * b.n);
      b.p = staged;
    }
    if (tc->optimizer == PRUNUS_OPT_ADAM)
      adam_block(b, tc, adam);
    else
      sgd_block(b, tc, lr);
    if (clear) memset(b.g, 0, sizeof(float) * b.n);
    if (stream) stream_copy(s.p + i, staged, b.n);
  }
  if (stream) _mm_sfence(); /* the streamed parameters are visible to the next reader */
}

void prunus_optim_step_span(PrunusModel *m, const PrunusTrainConfig *tc, double lr, long step,
                            size_t off, size_t n, PrunusOptimFlags flags) {
  g_return_if_fail(off + n <= m->n_params);
  step_blocks(span_of(m, off, n, (flags & PRUNUS_OPTIM_MASKED) != 0), tc, (float)lr,
              step > 0 ? step : 1, flags);
}

void prunus_optim_add_bn_l1(PrunusModel *m, const PrunusTrainConfig *tc, int layer) {
  const PrunusLayer *l = &m->layers[layer];
  if (!(tc->bn_l1 > 0.0) || l->spec.type != PRUNUS_LAYER_BATCHNORM) return;
  const float lambda = (float)tc->bn_l1, *gamma = m->params + l->b_off;
  float *g = m->grads + l->b_off;
  for (int c = 0; c < l->out.c; c++)
    g[c] += gamma[c] > 0.0f ? lambda : gamma[c] < 0.0f ? -lambda : 0.0f;
}

void prunus_optim_step_arrays(const PrunusTrainConfig *tc, double lr, long step, float *p,
                              float *m1, float *m2, const float *g, size_t n) {
  /* the span step with no mask: multiplying by a mask of 1 changes no bit */
  OptimSpan span = {p, m1, m2, (float *)g, NULL, n};
  step_blocks(span, tc, (float)lr, step > 0 ? step : 1, 0);
}

void prunus_optim_step(PrunusModel *m, const PrunusTrainConfig *tc, double lr, long step) {
  for (int i = 0; i < m->n_layers; i++) prunus_optim_add_bn_l1(m, tc, i);
  prunus_optim_step_span(m, tc, lr, step, 0, m->n_params, PRUNUS_OPTIM_MASKED);
}
