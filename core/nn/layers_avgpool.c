/* layers_avgpool.c: average pooling: avgpool2d (square windows, no padding, the
 * windows' mean) and globalavgpool (each channel's mean over the whole plane, the head
 * of a ResNet: (C, H, W) -> (C, 1, 1), which a dense layer takes without a flatten). */
#include "layer.h"

#include <string.h>

static size_t no_scratch(const PrunusLayer *l, int B) {
  (void)l, (void)B;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* avgpool2d: x (B, C, H, W) -> y (B, C, Ho, Wo), Ho = (H - k) / s + 1. */

/* The window step: stride 0 (unset) means the kernel size, windows side by side. */
static int avg_stride(const PrunusLayerSpec *spec) {
  return spec->stride > 0 ? spec->stride : spec->kernel;
}

static gboolean avg_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                          GError **error) {
  (void)in_names;
  const PrunusLayerSpec *spec = &l->spec;
  PrunusShape in = ins[0];
  int s = avg_stride(spec);
  if (spec->kernel <= 0 || in.h < spec->kernel || in.w < spec->kernel) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "avgpool2d kernel %d does not fit its %dx%dx%d input", spec->kernel, in.c, in.h,
                in.w);
    return FALSE;
  }
  l->out = (PrunusShape){in.c, (in.h - spec->kernel) / s + 1, (in.w - spec->kernel) / s + 1};
  return TRUE;
}

static void avg_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                        float *scratch, int B) {
  (void)params, (void)scratch;
  int H = l->in.h, W = l->in.w, Ho = l->out.h, Wo = l->out.w, k = l->spec.kernel;
  int s = avg_stride(&l->spec);
  float inv = 1.0f / (float)(k * k);
  for (int bc = 0; bc < B * l->in.c; bc++) {
    const float *xc = x + (size_t)bc * H * W; /* (H, W) */
    float *yc = y + (size_t)bc * Ho * Wo;     /* (Ho, Wo) */
    for (int oh = 0; oh < Ho; oh++) {
      for (int ow = 0; ow < Wo; ow++) {
        float sum = 0.0f;
        for (int kh = 0; kh < k; kh++)
          for (int kw = 0; kw < k; kw++) sum += xc[(oh * s + kh) * W + ow * s + kw];
        yc[oh * Wo + ow] = sum * inv;
      }
    }
  }
}

/* dx = dy / (k*k) spread over each window, summed where windows overlap (s < k). */
static void avg_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                         const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)y, (void)scratch;
  if (!dx) return;
  int H = l->in.h, W = l->in.w, Ho = l->out.h, Wo = l->out.w, k = l->spec.kernel;
  int s = avg_stride(&l->spec);
  float inv = 1.0f / (float)(k * k);
  memset(dx, 0, sizeof(float) * (size_t)B * prunus_shape_size(l->in));
  for (int bc = 0; bc < B * l->in.c; bc++) {
    float *dxc = dx + (size_t)bc * H * W;         /* (H, W) */
    const float *dyc = dy + (size_t)bc * Ho * Wo; /* (Ho, Wo) */
    for (int oh = 0; oh < Ho; oh++) {
      for (int ow = 0; ow < Wo; ow++) {
        float g = dyc[oh * Wo + ow] * inv;
        for (int kh = 0; kh < k; kh++)
          for (int kw = 0; kw < k; kw++) dxc[(oh * s + kh) * W + ow * s + kw] += g;
      }
    }
  }
}

const PrunusLayerOps prunus_layer_ops_avgpool2d = {
    .type_name = "avgpool2d",
    .infer = avg_infer,
    .scratch_size = no_scratch,
    .forward = avg_forward,
    .backward = avg_backward,
};

/* ------------------------------------------------------------------------ */
/* globalavgpool: x (B, C, H, W) -> y (B, C, 1, 1), the mean of each plane. */

static gboolean gap_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                          GError **error) {
  (void)in_names, (void)error;
  l->out = (PrunusShape){ins[0].c, 1, 1};
  return TRUE;
}

static void gap_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                        float *scratch, int B) {
  (void)params, (void)scratch;
  size_t HW = (size_t)l->in.h * l->in.w;
  float inv = 1.0f / (float)HW;
  for (int bc = 0; bc < B * l->in.c; bc++) {
    const float *xc = x + (size_t)bc * HW;
    float sum = 0.0f;
    for (size_t i = 0; i < HW; i++) sum += xc[i];
    y[bc] = sum * inv;
  }
}

static void gap_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                         const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)y, (void)scratch;
  if (!dx) return;
  size_t HW = (size_t)l->in.h * l->in.w;
  float inv = 1.0f / (float)HW;
  for (int bc = 0; bc < B * l->in.c; bc++) {
    float g = dy[bc] * inv;
    float *dxc = dx + (size_t)bc * HW;
    for (size_t i = 0; i < HW; i++) dxc[i] = g;
  }
}

const PrunusLayerOps prunus_layer_ops_globalavgpool = {
    .type_name = "globalavgpool",
    .infer = gap_infer,
    .scratch_size = no_scratch,
    .forward = gap_forward,
    .backward = gap_backward,
};
