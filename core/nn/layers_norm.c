/* layers_norm.c: batchnorm, as PyTorch's BatchNorm1d/2d: per channel of a conv output
 * (per unit of a dense one), scale and shift as parameters (the b span), running mean
 * and variance as buffers; batch statistics in training, running ones in evaluation. */
#include "layer.h"

#include <math.h>
#include <string.h>

/* x (B, C, H, W) -> y (B, C, H, W); statistics over the N = B*H*W values of a channel.
 * params + b_off: gamma (C) then beta (C); params + buf_off: running_mean (C) then
 * running_var (C). Training scratch: the batch's mean (C), biased variance (C) and
 * 1/sqrt(var + eps) (C), written by forward for backward and update_buffers. */

static gboolean bn_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                         GError **error) {
  (void)in_names;
  const PrunusLayerSpec *spec = &l->spec;
  if (!(spec->eps > 0.0f) || !(spec->momentum >= 0.0f && spec->momentum <= 1.0f)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "batchnorm needs eps > 0 and momentum in [0, 1], found eps=%g momentum=%g",
                (double)spec->eps, (double)spec->momentum);
    return FALSE;
  }
  l->out = ins[0];
  l->b_len = (size_t)2 * ins[0].c;
  l->buf_len = (size_t)2 * ins[0].c;
  return TRUE;
}

static size_t bn_scratch(const PrunusLayer *l, int B) {
  (void)B;
  return (size_t)3 * l->in.c;
}

/* Sums over one row (one image's plane of a channel) in 16 float lanes, added up in
 * double at the end: the lanes vectorise, and the order is the same on every call. */
#define LANES 16

/* sum x[i] */
static double row_sum(const float *restrict x, size_t n) {
  float acc[LANES] = {0};
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) acc[j] += x[i + j];
  double s = 0.0;
  for (; i < n; i++) s += x[i];
  for (int j = 0; j < LANES; j++) s += acc[j];
  return s;
}

/* sum (x[i] - mu)^2 */
static double row_sq_dev(const float *restrict x, size_t n, float mu) {
  float acc[LANES] = {0};
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) {
      float d = x[i + j] - mu;
      acc[j] += d * d;
    }
  double s = 0.0;
  for (; i < n; i++) s += (double)(x[i] - mu) * (x[i] - mu);
  for (int j = 0; j < LANES; j++) s += acc[j];
  return s;
}

/* sum dy[i] and sum dy[i] (x[i] - mu) */
static void row_dy_sums(const float *restrict dy, const float *restrict x, size_t n, float mu,
                        double *sdy, double *sdyx) {
  float a[LANES] = {0}, b[LANES] = {0};
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) {
      a[j] += dy[i + j];
      b[j] += dy[i + j] * (x[i + j] - mu);
    }
  double s = 0.0, t = 0.0;
  for (; i < n; i++) s += dy[i], t += (double)dy[i] * (x[i] - mu);
  for (int j = 0; j < LANES; j++) s += a[j], t += b[j];
  *sdy += s, *sdyx += t;
}

/* One pass split over the layer's team by channels: every channel's sums are taken
 * by one thread in one order, so any split gives the same bits. */
typedef struct {
  const PrunusLayer *l;
  const float *params;
  const float *x, *dy;
  float *y, *dx, *grads, *scratch;
  int B;
} BnCall;

/* The per-channel affine map y = x * a[c] + s[c] of a channel, from its statistics. */
static void bn_affine(const BnCall *k, int c, float mean, float invstd, float *a, float *s) {
  const float *gamma = k->params + k->l->b_off, *beta = gamma + k->l->in.c;
  *a = gamma[c] * invstd;
  *s = beta[c] - mean * *a;
}

static void bn_forward_part(void *arg, int part, int n_parts) {
  const BnCall *k = arg;
  const PrunusLayer *l = k->l;
  int C = l->in.c, B = k->B;
  size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
  const float *running = k->params + l->buf_off; /* mean (C), var (C) */
  float *mean = k->scratch, *var = mean + C, *inv = var + C;
  size_t c0, c1;
  prunus_team_block_share((size_t)C, 1, part, n_parts, &c0, &c1);
  for (size_t c = c0; c < c1; c++) {
    float mu, istd;
    if (l->training) {
      double sum = 0.0;
      for (int b = 0; b < B; b++) sum += row_sum(k->x + ((size_t)b * C + c) * HW, HW);
      mu = (float)(sum / (double)N);
      double sq = 0.0; /* two passes: no cancellation when the mean is large */
      for (int b = 0; b < B; b++) sq += row_sq_dev(k->x + ((size_t)b * C + c) * HW, HW, mu);
      double v = sq / (double)N; /* biased: what normalises, as PyTorch */
      istd = (float)(1.0 / sqrt(v + (double)l->spec.eps));
      mean[c] = mu, var[c] = (float)v, inv[c] = istd;
    } else {
      mu = running[c];
      istd = (float)(1.0 / sqrt((double)running[C + c] + (double)l->spec.eps));
    }
    float a, s;
    bn_affine(k, (int)c, mu, istd, &a, &s);
    for (int b = 0; b < B; b++) {
      const float *xc = k->x + ((size_t)b * C + c) * HW;
      float *yc = k->y + ((size_t)b * C + c) * HW;
      for (size_t i = 0; i < HW; i++) yc[i] = xc[i] * a + s;
    }
  }
}

static void bn_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                       float *scratch, int B) {
  BnCall k = {.l = l, .params = params, .x = x, .y = y, .scratch = scratch, .B = B};
  prunus_team_run(l->team, bn_forward_part, &k);
}

/* Training: y = gamma xhat + beta with xhat = (x - mean) invstd of the batch, so
 *   dbeta = sum dy, dgamma = sum dy xhat,
 *   dx = gamma invstd (dy - dbeta/N - xhat dgamma/N).
 * Evaluation: mean and invstd are constants (the running ones): dx = gamma invstd dy. */
static void bn_backward_part(void *arg, int part, int n_parts) {
  const BnCall *k = arg;
  const PrunusLayer *l = k->l;
  int C = l->in.c, B = k->B;
  size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
  const float *gamma = k->params + l->b_off;
  const float *running = k->params + l->buf_off;
  float *dgamma = k->grads + l->b_off, *dbeta = dgamma + C;
  size_t c0, c1;
  prunus_team_block_share((size_t)C, 1, part, n_parts, &c0, &c1);
  for (size_t c = c0; c < c1; c++) {
    float mu = l->training ? k->scratch[c] : running[c];
    float istd = l->training ? k->scratch[2 * C + c]
                             : (float)(1.0 / sqrt((double)running[C + c] + (double)l->spec.eps));
    double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy xhat */
    for (int b = 0; b < B; b++)
      row_dy_sums(k->dy + ((size_t)b * C + c) * HW, k->x + ((size_t)b * C + c) * HW, HW, mu, &sdy,
                  &sdyx);
    sdyx *= istd;
    dbeta[c] = (float)sdy;
    dgamma[c] = (float)sdyx;
    if (!k->dx) continue;
    float a = gamma[c] * istd;
    float mdy = l->training ? (float)(sdy / (double)N) : 0.0f;
    float mdyx = l->training ? (float)(sdyx / (double)N) : 0.0f;
    for (int b = 0; b < B; b++) {
      const float *xc = k->x + ((size_t)b * C + c) * HW;
      const float *dyc = k->dy + ((size_t)b * C + c) * HW;
      float *dxc = k->dx + ((size_t)b * C + c) * HW;
      if (l->training) {
        for (size_t i = 0; i < HW; i++) dxc[i] = a * (dyc[i] - mdy - (xc[i] - mu) * istd * mdyx);
      } else {
        for (size_t i = 0; i < HW; i++) dxc[i] = a * dyc[i];
      }
    }
  }
}

static void bn_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                        const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)y;
  BnCall k = {.l = l,
              .params = params,
              .x = x,
              .dy = dy,
              .dx = dx,
              .grads = grads,
              .scratch = scratch,
              .B = B};
  prunus_team_run(l->team, bn_backward_part, &k);
}

/* running = (1 - momentum) running + momentum batch, the variance unbiased (N / (N-1)
 * times the one that normalised), as PyTorch. With a single value per channel (N = 1)
 * the unbiased variance is undefined: running_var is left as it is. */
static void bn_update_buffers(const PrunusLayer *l, float *buffers, const float *scratch, int B) {
  int C = l->in.c;
  size_t N = (size_t)B * l->in.h * l->in.w;
  float mom = l->spec.momentum;
  float *rmean = buffers, *rvar = buffers + C;
  const float *mean = scratch, *var = scratch + C;
  for (int c = 0; c < C; c++) {
    rmean[c] = (1.0f - mom) * rmean[c] + mom * mean[c];
    if (N > 1)
      rvar[c] =
          (1.0f - mom) * rvar[c] + mom * (float)((double)var[c] * (double)N / (double)(N - 1));
  }
}

static void bn_reset(const PrunusLayer *l, float *params) {
  int C = l->in.c;
  for (int c = 0; c < C; c++) {
    params[l->b_off + c] = 1.0f, params[l->b_off + C + c] = 0.0f;
    params[l->buf_off + c] = 0.0f, params[l->buf_off + C + c] = 1.0f;
  }
}

const PrunusLayerOps prunus_layer_ops_batchnorm = {
    .type_name = "batchnorm",
    .infer = bn_infer,
    .scratch_size = bn_scratch,
    .forward = bn_forward,
    .backward = bn_backward,
    .update_buffers = bn_update_buffers,
    .reset = bn_reset,
};
