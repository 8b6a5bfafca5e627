/* layers.c: forward/backward of the plain layer types (dense, conv2d: direct kernels
 * where the CPU has them, else im2col + sgemm; maxpool2d, relu, flatten) and the ops
 * table of every type (the others live in layers_norm.c, layers_merge.c, layers_avgpool.c). */
#include "layer.h"
#include "conv_direct.h"
#include "conv_gemm.h"
#include "conv_wino.h"
#include "gemm.h"
#include "sparse_input.h"
#include "spdense.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* dense: W (out, in), b (out); y (B, out) = x (B, in) W^T + b */

static gboolean dense_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                            GError **error) {
  (void)in_names;
  const PrunusLayerSpec *spec = &l->spec;
  PrunusShape in = ins[0];
  if (in.h != 1 || in.w != 1) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "dense layer gets a %dx%dx%d input; put a flatten layer before it", in.c, in.h,
                in.w);
    return FALSE;
  }
  if (spec->units <= 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG, "dense layer needs units > 0, found %d",
                spec->units);
    return FALSE;
  }
  l->out = (PrunusShape){spec->units, 1, 1};
  l->w_len = (size_t)spec->units * in.c;
  l->b_len = (size_t)spec->units;
  l->fan_in = in.c;
  l->fan_out = spec->units;
  return TRUE;
}

static size_t dense_scratch(const PrunusLayer *l, int B) {
  (void)l, (void)B;
  return 0;
}

size_t prunus_dense_sparse_input_floats(const PrunusLayer *l, int B) {
  return (size_t)l->in.c * l->out.c + (size_t)B * l->in.c;
}

/* The layer's room for the sparse-input kernels when they may take this batch (lent by
 * prunus_train for batches up to its own; NULL: sgemm). Whether they do is the input's
 * density, which forward and backward each measure for their own kernel. */
static float *sparse_input_room(const PrunusLayer *l, int B) {
  return l->sparse_input && B >= PRUNUS_SPARSE_INPUT_MIN_BATCH &&
                 B <= PRUNUS_SPARSE_INPUT_MAX_BATCH && prunus_sparse_input_available()
             ? l->sparse_input
             : NULL;
}

/* Forward split over the layer's team (NULL: one part): each thread writes the bias
 * into its block of y, then adds x W^T over that block, while the block is in cache. */
typedef struct {
  PrunusSgemmArgs g;    /* y (B, out) += x (B, in) W^T */
  const float *bias;    /* (out) */
  const float *Wt;      /* (in, out) W transposed: y by prunus_sparse_input_forward; NULL: sgemm */
  const int32_t *order; /* (B) the samples in the kernel's blocks of 4 */
} DenseForwardCall;

static void dense_forward_part(void *arg, int part, int n_parts) {
  const DenseForwardCall *c = arg;
  if (c->Wt) {
    int blocks = (c->g.M + PRUNUS_SPARSE_INPUT_GROUP - 1) / PRUNUS_SPARSE_INPUT_GROUP;
    size_t a, b;
    prunus_team_block_share((size_t)blocks, 1, part, n_parts, &a, &b);
    if (b > a)
      prunus_sparse_input_forward(c->g.A, c->order, c->Wt, c->bias, c->g.M, c->g.K, c->g.N, c->g.C,
                                  (int)a, (int)b);
    return;
  }
  PrunusSgemmBlock k = prunus_sgemm_block(&c->g, part, n_parts);
  if (k.col1 <= k.col0) return;
  for (int i = k.row0; i < k.row1; i++)
    memcpy(c->g.C + (size_t)i * c->g.ldc + k.col0, c->bias + k.col0,
           sizeof(float) * (size_t)(k.col1 - k.col0));
  prunus_sgemm_run_block(&c->g, k);
}

static void dense_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                          float *scratch, int B) {
  (void)scratch;
  if (l->sparse) {
    prunus_spdense_forward(l, l->sparse, params, x, y, B);
    return;
  }
  int in = l->in.c, out = l->out.c;
  const float *W = params + l->w_off; /* (out, in) */
  const float *b = params + l->b_off; /* (out) */
  if (B == 1) {
    memcpy(y, b, sizeof(float) * out);
    prunus_sgemv(false, out, in, 1.0f, W, in, x, 1.0f, y);
    return;
  }
  /* An input mostly zero in runs sums each output only over the features where one of
   * 4 samples that share most of their zeros is not zero */
  float *Wt = sparse_input_room(l, B);
  int32_t order[PRUNUS_SPARSE_INPUT_MAX_BATCH];
  if (Wt &&
      prunus_sparse_input_group_samples(x, B, in, order) <= PRUNUS_SPARSE_INPUT_MAX_SAMPLE_DENSITY)
    prunus_transpose(W, out, in, Wt);
  else
    Wt = NULL;
  DenseForwardCall c = {{false, true, B, out, in, 1.0f, x, in, W, in, 1.0f, y, out}, b, Wt, order};
  prunus_team_run(l->team, dense_forward_part, &c);
}

/* Backward split over the layer's team (NULL: one part) in one call: each thread
 * computes its block of dW, its share of db and its block of dx; the three only read
 * dy, x and W, and every element is summed as by one thread. */
typedef struct {
  PrunusSgemmArgs dW; /* dW (out, in) = dy^T (out, B) x (B, in) */
  const float *xT;    /* (in, B) x transposed: dW by prunus_sparse_input_wgrad; NULL: sgemm */
  PrunusSgemmArgs dx; /* dx (B, in) = dy (B, out) W (out, in); M == 0: no dx */
  const float *dy;    /* (B, out) */
  float *db;          /* (out) = column sums of dy */
  int B, out;
} DenseBackwardCall;

static void dense_backward_part(void *arg, int part, int n_parts) {
  const DenseBackwardCall *c = arg;
  size_t a, b;
  if (c->xT) {
    int groups = (c->dW.N + PRUNUS_SPARSE_INPUT_GROUP - 1) / PRUNUS_SPARSE_INPUT_GROUP;
    prunus_team_block_share((size_t)groups, 1, part, n_parts, &a, &b);
    if (b > a)
      prunus_sparse_input_wgrad(c->xT, c->dy, c->B, c->dW.N, c->out, c->dW.C, c->dW.beta != 0.0f,
                                (int)a, (int)b);
  } else {
    prunus_sgemm_run_block(&c->dW, prunus_sgemm_block(&c->dW, part, n_parts));
  }
  prunus_team_block_share((size_t)c->out, 16, part, n_parts, &a, &b);
  if (b > a) {
    float *restrict db = c->db;
    memcpy(db + a, c->dy + a, sizeof(float) * (b - a));
    for (int i = 1; i < c->B; i++) {
      const float *restrict row = c->dy + (size_t)i * c->out;
      for (size_t j = a; j < b; j++) db[j] += row[j];
    }
  }
  if (c->dx.M > 0) prunus_sgemm_run_block(&c->dx, prunus_sgemm_block(&c->dx, part, n_parts));
}

static void dense_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                           const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)y, (void)scratch;
  if (l->sparse) {
    prunus_spdense_backward(l, l->sparse, grads, dy, dx, B);
    return;
  }
  int in = l->in.c, out = l->out.c;
  const float *W = params + l->w_off; /* (out, in) */
  /* An input mostly zero in runs (an image's background) sums dW only where it is not */
  float *room = sparse_input_room(l, B), *xT = NULL;
  if (room && prunus_sparse_input_density(x, B, in) <= PRUNUS_SPARSE_INPUT_MAX_DENSITY) {
    xT = room + (size_t)in * out; /* past the forward's Wt */
    prunus_transpose(x, B, in, xT);
  }
  DenseBackwardCall c = {
      /* onto zeroed gradients, beta 1 spares BLAS its pass that clears dW */
      .dW = {true, false, out, in, B, 1.0f, dy, out, x, in, l->grads_zeroed ? 1.0f : 0.0f,
             grads + l->w_off, in},
      .xT = xT,
      .dx = {false, false, dx ? B : 0, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in},
      .dy = dy,
      .db = grads + l->b_off,
      .B = B,
      .out = out,
  };
  prunus_team_run(l->team, dense_backward_part, &c);
}

/* ------------------------------------------------------------------------ */
/* conv2d: W (cout, cin, k, k), b (cout); x (B, cin, H, W) -> y (B, cout, Ho, Wo).
 * The batch is lowered at once: col (B*Ho*Wo, cin*k*k), yt = col W^T (B*Ho*Wo, cout),
 * then yt is transposed into channels-first y. Scratch = col followed by yt. */

static gboolean conv_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                           GError **error) {
  (void)in_names;
  const PrunusLayerSpec *spec = &l->spec;
  PrunusShape in = ins[0];
  if (spec->channels <= 0 || spec->kernel <= 0 || spec->stride <= 0 || spec->padding < 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "conv2d needs channels > 0, kernel > 0, stride > 0, padding >= 0; found "
                "channels=%d kernel=%d stride=%d padding=%d",
                spec->channels, spec->kernel, spec->stride, spec->padding);
    return FALSE;
  }
  int ho = (in.h + 2 * spec->padding - spec->kernel) / spec->stride + 1;
  int wo = (in.w + 2 * spec->padding - spec->kernel) / spec->stride + 1;
  if (in.h + 2 * spec->padding < spec->kernel || in.w + 2 * spec->padding < spec->kernel) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "conv2d kernel %d does not fit its %dx%dx%d input (padding %d)", spec->kernel, in.c,
                in.h, in.w, spec->padding);
    return FALSE;
  }
  int kk = spec->kernel * spec->kernel;
  l->out = (PrunusShape){spec->channels, ho, wo};
  l->w_len = (size_t)spec->channels * in.c * kk;
  l->b_len = spec->no_bias ? 0 : (size_t)spec->channels;
  l->fan_in = in.c * kk;
  l->fan_out = spec->channels * kk;
  return TRUE;
}

PrunusConvGeom prunus_layer_conv_geom(const PrunusLayer *l) {
  return (PrunusConvGeom){.C = l->in.c,
                          .H = l->in.h,
                          .W = l->in.w,
                          .k = l->spec.kernel,
                          .s = l->spec.stride,
                          .p = l->spec.padding,
                          .cout = l->out.c,
                          .Ho = l->out.h,
                          .Wo = l->out.w};
}

/* Single-channel stride-1 convs (a first layer) run directly on the padded plane
 * (conv_direct.c): lowering them writes k*k floats per output for a tiny GEMM. */
static gboolean conv_is_direct(const PrunusLayer *l) {
  PrunusConvGeom g = prunus_layer_conv_geom(l);
  return prunus_conv_direct_covers(&g);
}

/* Multi-channel 3x3 stride-1 convs use Winograd's F(2x2, 3x3) where the CPU has AVX2
 * or AVX-512 (conv_wino.c: 16 multiplies per 2x2 outputs and channel pair, not 36). */
static gboolean conv_uses_wino(const PrunusLayer *l) {
  PrunusConvGeom g = prunus_layer_conv_geom(l);
  return !conv_is_direct(l) && prunus_conv_wino_covers(&g);
}

/* Strided and 1x1 convs run channel-interleaved (conv_wino.c's cl_*: each tap a product
 * of window rows, a vector of channels at a time) where the CPU has AVX2 or AVX-512. */
static gboolean conv_uses_cl(const PrunusLayer *l) {
  PrunusConvGeom g = prunus_layer_conv_geom(l);
  return !conv_is_direct(l) && !conv_uses_wino(l) && prunus_conv_cl_covers(&g);
}

/* Other multi-channel convs use the implicit GEMM where the CPU has it (decided per
 * call, so tests can force the lowering through the reference GEMM). */
static gboolean conv_uses_gemm_kernels(const PrunusLayer *l) {
  return !conv_is_direct(l) && !conv_uses_wino(l) && !conv_uses_cl(l) &&
         prunus_conv_gemm_available();
}

/* A conv without bias runs the kernels with a zero bias and a bias gradient nobody
 * reads, both at the start of its scratch: (cout) zeros, then (cout) floats the
 * backward writes, rounded up to whole cache lines so the kernels' part stays aligned. */
static size_t conv_bias_floats(const PrunusLayer *l) {
  return l->spec.no_bias ? ((size_t)2 * l->out.c + 15) / 16 * 16 : 0;
}

static size_t conv_scratch(const PrunusLayer *l, int B) {
  PrunusConvGeom g = prunus_layer_conv_geom(l);
  size_t extra = conv_bias_floats(l);
  if (conv_is_direct(l)) return extra + prunus_conv_direct_scratch(&g, PRUNUS_TEAM_MAX_THREADS);
  size_t rows = (size_t)B * l->out.h * l->out.w;
  size_t K = (size_t)l->in.c * l->spec.kernel * l->spec.kernel;
  size_t kernels = MAX(prunus_conv_gemm_scratch(&g, PRUNUS_TEAM_MAX_THREADS),
                       prunus_conv_wino_scratch(&g, PRUNUS_TEAM_MAX_THREADS));
  kernels = MAX(kernels, prunus_conv_cl_scratch(&g, PRUNUS_TEAM_MAX_THREADS));
  /* The batch's lowering (col, yt) only where it can run: a layer the Winograd or
   * channel-interleaved kernels take lowers only while the reference is forced, which
   * happens before its model is built (gemm.h); its lowering would be 60 MB for a
   * 16-channel 3x3 conv on 28x28 at batch 128, memset by the model */
  if (conv_uses_wino(l) || conv_uses_cl(l)) return extra + kernels;
  return extra + MAX(rows * K + rows * (size_t)l->out.c, kernels);
}

/* col (B*Ho*Wo, cin*k*k) from x (B, cin, H, W). Rows are only k floats long, so
 * they are copied inline: a libc memcpy call per row costs more than the copy
 * (GCC is told not to turn the loop back into such a call). */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) static void im2col(
    const PrunusLayer *l, const float *x, float *col, int B) {
  int C = l->in.c, H = l->in.h, W = l->in.w, k = l->spec.kernel, s = l->spec.stride,
      p = l->spec.padding, Ho = l->out.h, Wo = l->out.w;
  size_t K = (size_t)C * k * k;
  for (int b = 0; b < B; b++) {
    const float *xb = x + (size_t)b * C * H * W;
    for (int oh = 0; oh < Ho; oh++) {
      for (int ow = 0; ow < Wo; ow++) {
        float *row = col + (((size_t)b * Ho + oh) * Wo + ow) * K;
        int iw0 = ow * s - p;
        gboolean inside_w = iw0 >= 0 && iw0 + k <= W; /* no column of the window is padding */
        for (int c = 0; c < C; c++) {
          const float *xc = xb + (size_t)c * H * W;
          for (int kh = 0; kh < k; kh++, row += k) {
            int ih = oh * s - p + kh;
            if (ih < 0 || ih >= H) {
              for (int kw = 0; kw < k; kw++) row[kw] = 0.0f;
            } else if (inside_w) {
              const float *src = xc + (size_t)ih * W + iw0;
              for (int kw = 0; kw < k; kw++) row[kw] = src[kw];
            } else {
              for (int kw = 0; kw < k; kw++) {
                int iw = iw0 + kw;
                row[kw] = (iw >= 0 && iw < W) ? xc[ih * W + iw] : 0.0f;
              }
            }
          }
        }
      }
    }
  }
}

/* dx (B, cin, H, W) += scatter of dcol (B*Ho*Wo, cin*k*k). */
static void col2im(const PrunusLayer *l, const float *dcol, float *dx, int B) {
  int C = l->in.c, H = l->in.h, W = l->in.w, k = l->spec.kernel, s = l->spec.stride,
      p = l->spec.padding, Ho = l->out.h, Wo = l->out.w;
  size_t K = (size_t)C * k * k;
  for (int b = 0; b < B; b++) {
    float *xb = dx + (size_t)b * C * H * W;
    for (int oh = 0; oh < Ho; oh++) {
      for (int ow = 0; ow < Wo; ow++) {
        const float *row = dcol + (((size_t)b * Ho + oh) * Wo + ow) * K;
        int iw0 = ow * s - p;
        gboolean inside_w = iw0 >= 0 && iw0 + k <= W;
        for (int c = 0; c < C; c++) {
          float *xc = xb + (size_t)c * H * W;
          for (int kh = 0; kh < k; kh++, row += k) {
            int ih = oh * s - p + kh;
            if (ih < 0 || ih >= H) continue;
            float *dst = xc + (size_t)ih * W;
            if (inside_w) {
              for (int kw = 0; kw < k; kw++) dst[iw0 + kw] += row[kw];
            } else {
              for (int kw = 0; kw < k; kw++) {
                int iw = iw0 + kw;
                if (iw >= 0 && iw < W) dst[iw] += row[kw];
              }
            }
          }
        }
      }
    }
  }
}

static void conv_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                         float *scratch, int B) {
  const float *bias = l->spec.no_bias ? scratch : params + l->b_off; /* (cout) */
  scratch += conv_bias_floats(l);
  if (conv_is_direct(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_direct_forward(&g, x, params + l->w_off, bias, y, scratch, B, l->team);
    return;
  }
  if (conv_uses_wino(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_wino_forward(&g, x, params + l->w_off, l->b_len ? params + l->b_off : NULL, y,
                             scratch, B, l->team);
    return;
  }
  if (conv_uses_cl(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_cl_forward(&g, x, params + l->w_off, l->b_len ? params + l->b_off : NULL, y,
                           scratch, B, l->team);
    return;
  }
  if (conv_uses_gemm_kernels(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_gemm_forward(&g, x, params + l->w_off, bias, y, scratch, B, l->team);
    return;
  }
  int cout = l->out.c, HWo = l->out.h * l->out.w;
  int K = l->in.c * l->spec.kernel * l->spec.kernel;
  size_t rows = (size_t)B * HWo;
  float *col = scratch;           /* (B*HWo, K) */
  float *yt = scratch + rows * K; /* (B*HWo, cout) */
  const float *Wt = params + l->w_off;
  im2col(l, x, col, B);
  prunus_sgemm(false, true, (int)rows, cout, K, 1.0f, col, K, Wt, K, 0.0f, yt, cout);
  for (int b = 0; b < B; b++) {
    for (int co = 0; co < cout; co++) {
      float *yc = y + ((size_t)b * cout + co) * HWo;
      const float *src = yt + (size_t)b * HWo * cout + co;
      float bc = bias[co];
      for (int i = 0; i < HWo; i++) yc[i] = src[(size_t)i * cout] + bc;
    }
  }
}

static void conv_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                          const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)y;
  float *db = l->spec.no_bias ? scratch + l->out.c : grads + l->b_off; /* (cout) */
  scratch += conv_bias_floats(l);
  if (conv_is_direct(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_direct_backward(&g, x, params + l->w_off, dy, grads + l->w_off, db, dx, scratch, B,
                                l->team);
    return;
  }
  if (conv_uses_wino(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_wino_backward(&g, x, params + l->w_off, dy, grads + l->w_off,
                              l->b_len ? grads + l->b_off : NULL, dx, scratch, B, l->team);
    return;
  }
  if (conv_uses_cl(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_cl_backward(&g, x, params + l->w_off, dy, grads + l->w_off,
                            l->b_len ? grads + l->b_off : NULL, dx, scratch, B, l->team);
    return;
  }
  if (conv_uses_gemm_kernels(l)) {
    PrunusConvGeom g = prunus_layer_conv_geom(l);
    prunus_conv_gemm_backward(&g, x, params + l->w_off, dy, grads + l->w_off, db, dx, scratch, B,
                              l->team);
    return;
  }
  int cout = l->out.c, HWo = l->out.h * l->out.w;
  int K = l->in.c * l->spec.kernel * l->spec.kernel;
  size_t rows = (size_t)B * HWo;
  float *col = scratch;            /* (B*HWo, K) from the forward of this batch */
  float *dyt = scratch + rows * K; /* (B*HWo, cout) */
  const float *Wt = params + l->w_off;
  float *dW = grads + l->w_off;
  for (int b = 0; b < B; b++) {
    for (int co = 0; co < cout; co++) {
      const float *dyc = dy + ((size_t)b * cout + co) * HWo;
      float *dst = dyt + (size_t)b * HWo * cout + co;
      float sum = 0.0f;
      for (int i = 0; i < HWo; i++) {
        dst[(size_t)i * cout] = dyc[i];
        sum += dyc[i];
      }
      if (b == 0) db[co] = 0.0f;
      db[co] += sum;
    }
  }
  prunus_sgemm(true, false, cout, K, (int)rows, 1.0f, dyt, cout, col, K, 0.0f, dW, K);
  if (dx) {
    /* dcol (B*HWo, K) = dyt W, written over col, which is no longer needed */
    prunus_sgemm(false, false, (int)rows, K, cout, 1.0f, dyt, cout, Wt, K, 0.0f, col, K);
    memset(dx, 0, sizeof(float) * (size_t)B * prunus_shape_size(l->in));
    col2im(l, col, dx, B);
  }
}

/* ------------------------------------------------------------------------ */
/* maxpool2d: x (B, C, H, W) -> y (B, C, Ho, Wo); scratch keeps the argmax (int32). */

/* The window step: stride 0 (unset) means the kernel size, windows side by side. */
static int pool_stride(const PrunusLayerSpec *spec) {
  return spec->stride > 0 ? spec->stride : spec->kernel;
}

static gboolean pool_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                           GError **error) {
  (void)in_names;
  const PrunusLayerSpec *spec = &l->spec;
  PrunusShape in = ins[0];
  int stride = pool_stride(spec);
  if (spec->kernel <= 0 || in.h < spec->kernel || in.w < spec->kernel) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "maxpool2d kernel %d does not fit its %dx%dx%d input", spec->kernel, in.c, in.h,
                in.w);
    return FALSE;
  }
  l->out =
      (PrunusShape){in.c, (in.h - spec->kernel) / stride + 1, (in.w - spec->kernel) / stride + 1};
  return TRUE;
}

static size_t pool_scratch(const PrunusLayer *l, int B) {
  return (size_t)B * prunus_shape_size(l->out); /* int32 argmax per output */
}

/* Any window: the window is scanned in row-major order, the first strict maximum wins. */
static void pool_forward_any(const PrunusLayer *l, const float *x, float *y, int32_t *arg, int B) {
  int C = l->in.c, H = l->in.h, W = l->in.w, Ho = l->out.h, Wo = l->out.w, k = l->spec.kernel;
  int s = pool_stride(&l->spec);
  for (int bc = 0; bc < B * C; bc++) {
    const float *xc = x + (size_t)bc * H * W;
    float *yc = y + (size_t)bc * Ho * Wo;
    int32_t *ac = arg + (size_t)bc * Ho * Wo;
    for (int oh = 0; oh < Ho; oh++) {
      for (int ow = 0; ow < Wo; ow++) {
        int best = (oh * s) * W + ow * s;
        float bv = xc[best];
        for (int kh = 0; kh < k; kh++) {
          for (int kw = 0; kw < k; kw++) {
            int idx = (oh * s + kh) * W + ow * s + kw;
            if (xc[idx] > bv) bv = xc[idx], best = idx;
          }
        }
        yc[oh * Wo + ow] = bv;
        ac[oh * Wo + ow] = best;
      }
    }
  }
}

/* The lane indices 0, 2, ..., 30: the even one of each pair of floats in two vectors. */
__attribute__((target("avx512f"), always_inline)) static inline __m512i even_lanes(void) {
  return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}

/* The max of 2x2 windows and its index (into the plane), compared in pool_forward_any's
 * order (strict >, which is false on NaN like _CMP_GT_OQ), so both are the same. Lane
 * l's window: the even and odd columns of rows r0 and r1 at l, taken by permutes from
 * the 32 floats of (r0a, r0b) and (r1a, r1b); i00 = the index of its top-left input. */
__attribute__((target("avx512f"), always_inline)) static inline void pool2_windows(
    __m512 r0a, __m512 r0b, __m512 r1a, __m512 r1b, __m512i i00, int W, __m512 *max, __m512i *at) {
  const __m512i even = even_lanes();
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  __m512 bv = _mm512_permutex2var_ps(r0a, even, r0b);
  __m512i bi = i00;
  __m512 v = _mm512_permutex2var_ps(r0a, odd, r0b);
  __mmask16 gt = _mm512_cmp_ps_mask(v, bv, _CMP_GT_OQ);
  bv = _mm512_mask_mov_ps(bv, gt, v), bi = _mm512_mask_add_epi32(bi, gt, i00, _mm512_set1_epi32(1));
  v = _mm512_permutex2var_ps(r1a, even, r1b);
  gt = _mm512_cmp_ps_mask(v, bv, _CMP_GT_OQ);
  bv = _mm512_mask_mov_ps(bv, gt, v), bi = _mm512_mask_add_epi32(bi, gt, i00, _mm512_set1_epi32(W));
  v = _mm512_permutex2var_ps(r1a, odd, r1b);
  gt = _mm512_cmp_ps_mask(v, bv, _CMP_GT_OQ);
  bv = _mm512_mask_mov_ps(bv, gt, v),
  bi = _mm512_mask_add_epi32(bi, gt, i00, _mm512_set1_epi32(W + 1));
  *max = bv, *at = bi;
}

/* 2x2 windows, stride 2: 16 outputs of a row per vector; rows of at most 8 outputs go
 * two per vector, one in each half (the permutes then take lanes 0-7 from the first
 * row pair and 8-15 from the second), compressed together on the way out. */
__attribute__((target("avx512f"))) static void pool2_forward_avx512(const PrunusLayer *l,
                                                                    const float *x, float *y,
                                                                    int32_t *arg, int B) {
  int H = l->in.h, W = l->in.w, Ho = l->out.h, Wo = l->out.w;
  const __m512i even = even_lanes();
  /* pairs: lanes 8-15 start at the second row pair, 2W floats on, not 16 */
  const __m512i pair_even =
      _mm512_mask_add_epi32(even, 0xFF00, even, _mm512_set1_epi32(2 * W - 16));
  const __mmask16 pair_in = prunus_lanes_mask(2 * Wo),
                  pair_out = prunus_lanes_mask(Wo) | prunus_lanes_mask(Wo) << 8;
  __m512 bv;
  __m512i bi;
  for (int bc = 0; bc < B * l->in.c; bc++) {
    const float *xc = x + (size_t)bc * H * W; /* (H, W) */
    float *yc = y + (size_t)bc * Ho * Wo;     /* (Ho, Wo) */
    int32_t *ac = arg + (size_t)bc * Ho * Wo; /* (Ho, Wo) */
    int oh = 0;
    if (Wo <= 8) {
      for (; oh + 1 < Ho; oh += 2) {
        const float *r = xc + 2 * oh * W;
        pool2_windows(_mm512_maskz_loadu_ps(pair_in, r), _mm512_maskz_loadu_ps(pair_in, r + 2 * W),
                      _mm512_maskz_loadu_ps(pair_in, r + W),
                      _mm512_maskz_loadu_ps(pair_in, r + 3 * W),
                      _mm512_add_epi32(_mm512_set1_epi32(2 * oh * W), pair_even), W, &bv, &bi);
        _mm512_mask_storeu_ps(yc + oh * Wo, pair_in, _mm512_maskz_compress_ps(pair_out, bv));
        _mm512_mask_storeu_epi32(ac + oh * Wo, pair_in, _mm512_maskz_compress_epi32(pair_out, bi));
      }
    }
    for (; oh < Ho; oh++) {
      for (int ow0 = 0; ow0 < Wo; ow0 += 16) {
        int n = MIN(16, Wo - ow0);
        __mmask16 m = prunus_lanes_mask(n), lo = prunus_lanes_mask(2 * n),
                  hi = prunus_lanes_mask(2 * n - 16);
        const float *r = xc + 2 * oh * W + 2 * ow0;
        pool2_windows(_mm512_maskz_loadu_ps(lo, r), _mm512_maskz_loadu_ps(hi, r + 16),
                      _mm512_maskz_loadu_ps(lo, r + W), _mm512_maskz_loadu_ps(hi, r + W + 16),
                      _mm512_add_epi32(_mm512_set1_epi32(2 * oh * W + 2 * ow0), even), W, &bv, &bi);
        _mm512_mask_storeu_ps(yc + oh * Wo + ow0, m, bv);
        _mm512_mask_storeu_epi32(ac + oh * Wo + ow0, m, bi);
      }
    }
  }
}

static void pool_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                         float *scratch, int B) {
  (void)params;
  int k = l->spec.kernel, s = pool_stride(&l->spec);
  if (k == 2 && s == 2 && prunus_avx512_in_use())
    pool2_forward_avx512(l, x, y, (int32_t *)scratch, B);
  else
    pool_forward_any(l, x, y, (int32_t *)scratch, B);
}

/* 2x2 windows, stride 2: every input is written once (no zeroing pass): dy where the
 * argmax points, else 0, as dy + 0 so a -0 gradient becomes +0 like the scatter's sum.
 * The two halves of each input row are interleaved back by permutes. */
__attribute__((target("avx512f"))) static void pool2_backward_avx512(const PrunusLayer *l,
                                                                     const float *dy,
                                                                     const int32_t *arg, float *dx,
                                                                     int B) {
  int H = l->in.h, W = l->in.w, Ho = l->out.h, Wo = l->out.w;
  const __m512i even = even_lanes();
  const __m512i zip_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i zip_hi = _mm512_add_epi32(zip_lo, _mm512_set1_epi32(8));
  const __m512i d01 = _mm512_set1_epi32(1), d10 = _mm512_set1_epi32(W),
                d11 = _mm512_set1_epi32(W + 1);
  const __m512 zero = _mm512_setzero_ps();
  for (int bc = 0; bc < B * l->in.c; bc++) {
    float *dxc = dx + (size_t)bc * H * W;           /* (H, W) */
    const float *dyc = dy + (size_t)bc * Ho * Wo;   /* (Ho, Wo) */
    const int32_t *ac = arg + (size_t)bc * Ho * Wo; /* (Ho, Wo) */
    for (int oh = 0; oh < Ho; oh++) {
      float *r0 = dxc + (size_t)2 * oh * W, *r1 = r0 + W;
      for (int ow0 = 0; ow0 < Wo; ow0 += 16) {
        int n = MIN(16, Wo - ow0);
        __mmask16 m = prunus_lanes_mask(n), lo = prunus_lanes_mask(2 * n),
                  hi = prunus_lanes_mask(2 * n - 16);
        __m512 g = _mm512_maskz_loadu_ps(m, dyc + oh * Wo + ow0);
        __m512i a = _mm512_maskz_loadu_epi32(m, ac + oh * Wo + ow0);
        __m512i i00 = _mm512_add_epi32(_mm512_set1_epi32(2 * oh * W + 2 * ow0), even);
        __m512 g00 = _mm512_add_ps(_mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, i00), g), zero);
        __m512 g01 = _mm512_add_ps(
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, _mm512_add_epi32(i00, d01)), g), zero);
        __m512 g10 = _mm512_add_ps(
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, _mm512_add_epi32(i00, d10)), g), zero);
        __m512 g11 = _mm512_add_ps(
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, _mm512_add_epi32(i00, d11)), g), zero);
        _mm512_mask_storeu_ps(r0 + 2 * ow0, lo, _mm512_permutex2var_ps(g00, zip_lo, g01));
        _mm512_mask_storeu_ps(r0 + 2 * ow0 + 16, hi, _mm512_permutex2var_ps(g00, zip_hi, g01));
        _mm512_mask_storeu_ps(r1 + 2 * ow0, lo, _mm512_permutex2var_ps(g10, zip_lo, g11));
        _mm512_mask_storeu_ps(r1 + 2 * ow0 + 16, hi, _mm512_permutex2var_ps(g10, zip_hi, g11));
      }
      for (int w = 2 * Wo; w < W; w++) r0[w] = r1[w] = 0.0f; /* odd W: no window reads it */
    }
    memset(dxc + (size_t)2 * Ho * W, 0, sizeof(float) * (size_t)(H - 2 * Ho) * W);
  }
}

static void pool_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                          const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)y;
  if (!dx) return;
  int k = l->spec.kernel, s = pool_stride(&l->spec);
  const int32_t *arg = (const int32_t *)scratch;
  /* below half a vector of outputs per row, zeroing then scattering is faster */
  if (k == 2 && s == 2 && l->out.w >= 8 && prunus_avx512_in_use()) {
    pool2_backward_avx512(l, dy, arg, dx, B);
    return;
  }
  int C = l->in.c, HW = l->in.h * l->in.w, HWo = l->out.h * l->out.w;
  memset(dx, 0, sizeof(float) * (size_t)B * C * HW);
  for (int bc = 0; bc < B * C; bc++) {
    float *dxc = dx + (size_t)bc * HW;
    const float *dyc = dy + (size_t)bc * HWo;
    const int32_t *ac = arg + (size_t)bc * HWo;
    for (int i = 0; i < HWo; i++) dxc[ac[i]] += dyc[i];
  }
}

/* ------------------------------------------------------------------------ */
/* relu and flatten: no parameters, same element count in and out. */

static gboolean same_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                           GError **error) {
  (void)in_names, (void)error;
  if (l->spec.type == PRUNUS_LAYER_FLATTEN)
    l->out = (PrunusShape){(int)prunus_shape_size(ins[0]), 1, 1};
  else
    l->out = ins[0];
  return TRUE;
}

static size_t no_scratch(const PrunusLayer *l, int B) {
  (void)l, (void)B;
  return 0;
}

/* One ReLU pass split over the layer's team: elementwise, so any split gives the same
 * bits. dy == NULL: forward y = max(x, 0); else backward dx = dy where y > 0. */
typedef struct {
  const float *x, *dy;
  float *out;
  size_t n;
} ReluCall;

/* Branch-free so it vectorises: both operands are loaded, then selected. Plain
 * compiler-vectorised loops: the pass is bound by memory, not by vector width
 * (docs/perf-log.md has the comparison with AVX-512 versions). */
static void relu_part(void *arg, int part, int n_parts) {
  const ReluCall *c = arg;
  size_t a, b;
  prunus_team_block_share(c->n, 16, part, n_parts, &a, &b);
  const float *restrict x = c->x, *restrict dy = c->dy;
  float *restrict out = c->out;
  if (!dy) {
    for (size_t i = a; i < b; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
  } else {
    for (size_t i = a; i < b; i++) {
      float g = dy[i];
      out[i] = x[i] > 0.0f ? g : 0.0f;
    }
  }
}

static void relu_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                         float *scratch, int B) {
  (void)params, (void)scratch;
  ReluCall c = {x, NULL, y, (size_t)B * prunus_shape_size(l->in)};
  prunus_team_run(l->team, relu_part, &c);
}

static void relu_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                          const float *y, const float *dy, float *dx, float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)scratch;
  if (!dx) return;
  ReluCall c = {y, dy, dx, (size_t)B * prunus_shape_size(l->in)};
  prunus_team_run(l->team, relu_part, &c);
}

static void flatten_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                            float *scratch, int B) {
  (void)params, (void)scratch;
  if (y != x) /* the model aliases the two slots; other callers may not */
    memcpy(y, x, sizeof(float) * (size_t)B * prunus_shape_size(l->in));
}

static void flatten_backward(const PrunusLayer *l, const float *params, float *grads,
                             const float *x, const float *y, const float *dy, float *dx,
                             float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)y, (void)scratch;
  if (dx && dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)B * prunus_shape_size(l->in));
}

/* ------------------------------------------------------------------------ */

static const PrunusLayerOps dense_ops = {.type_name = "dense",
                                         .has_params = TRUE,
                                         .infer = dense_infer,
                                         .scratch_size = dense_scratch,
                                         .forward = dense_forward,
                                         .backward = dense_backward};
static const PrunusLayerOps conv_ops = {.type_name = "conv2d",
                                        .has_params = TRUE,
                                        .infer = conv_infer,
                                        .scratch_size = conv_scratch,
                                        .forward = conv_forward,
                                        .backward = conv_backward};
static const PrunusLayerOps maxpool_ops = {.type_name = "maxpool2d",
                                           .infer = pool_infer,
                                           .scratch_size = pool_scratch,
                                           .forward = pool_forward,
                                           .backward = pool_backward};
static const PrunusLayerOps relu_ops = {.type_name = "relu",
                                        .infer = same_infer,
                                        .scratch_size = no_scratch,
                                        .forward = relu_forward,
                                        .backward = relu_backward};
static const PrunusLayerOps flatten_ops = {.type_name = "flatten",
                                           .infer = same_infer,
                                           .scratch_size = no_scratch,
                                           .forward = flatten_forward,
                                           .backward = flatten_backward};

static const PrunusLayerOps *const layer_ops[PRUNUS_LAYER_N_TYPES] = {
    [PRUNUS_LAYER_DENSE] = &dense_ops,
    [PRUNUS_LAYER_CONV2D] = &conv_ops,
    [PRUNUS_LAYER_MAXPOOL2D] = &maxpool_ops,
    [PRUNUS_LAYER_RELU] = &relu_ops,
    [PRUNUS_LAYER_FLATTEN] = &flatten_ops,
    [PRUNUS_LAYER_BATCHNORM] = &prunus_layer_ops_batchnorm,
    [PRUNUS_LAYER_ADD] = &prunus_layer_ops_add,
    [PRUNUS_LAYER_CONCAT] = &prunus_layer_ops_concat,
    [PRUNUS_LAYER_AVGPOOL2D] = &prunus_layer_ops_avgpool2d,
    [PRUNUS_LAYER_GLOBALAVGPOOL] = &prunus_layer_ops_globalavgpool,
};

const PrunusLayerOps *prunus_layer_ops(PrunusLayerType type) {
  g_return_val_if_fail(type >= 0 && type < PRUNUS_LAYER_N_TYPES, NULL);
  return layer_ops[type];
}

gboolean prunus_layer_type_from_name(const char *name, PrunusLayerType *out) {
  for (int t = 0; t < PRUNUS_LAYER_N_TYPES; t++) {
    if (strcmp(layer_ops[t]->type_name, name) == 0) {
      *out = (PrunusLayerType)t;
      return TRUE;
    }
  }
  return FALSE;
}
