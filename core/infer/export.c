/* export.c: a model as (1) one dependency-free C file + header (static const weights,
 * CSR where it is smaller, dead units removed, static scratch, the input normalisation
 * as a lookup table) or (2) safetensors with masks applied and shrunk shapes, named
 * like PyTorch's nn.Sequential, for PyTorch users. `prunus export`: job_export.c. */
#include "export.h"
#include "dataset.h"
#include "infer_plan.h"
#include "safetensors.h"
#include "shrink.h"

#include <errno.h>
#include <math.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* C source generation */

/* Values as C99 hex-float literals: exact, no rounding on the way back. */
static void emit_floats(GString *s, const char *name, const float *v, size_t n) {
  g_string_append_printf(s, "static const float %s[%zu] = {", name, n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    if (i % 6 == 0) g_string_append(s, "\n  ");
    g_string_append_printf(s, "%a,", (double)v[i]);
  }
  if (n == 0) g_string_append(s, "0");
  g_string_append(s, "\n};\n");
}

static void emit_ints(GString *s, const char *type, const char *name, const int32_t *v, size_t n) {
  g_string_append_printf(s, "static const %s %s[%zu] = {", type, name, n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    if (i % 12 == 0) g_string_append(s, "\n  ");
    g_string_append_printf(s, "%d,", v[i]);
  }
  if (n == 0) g_string_append(s, "0");
  g_string_append(s, "\n};\n");
}

/* One parameter layer's weights: CSR when it takes fewer bytes than the dense matrix. */
typedef struct {
  gboolean csr;
  size_t bytes; /* weights + biases + index arrays */
  const char *col_type, *ptr_type;
} LayerPlan;

static LayerPlan plan_layer(const PrunusLayer *l, const float *W) {
  size_t nnz = 0;
  for (size_t j = 0; j < l->w_len; j++) nnz += W[j] != 0.0f;
  int rows = l->out.c, cols = l->fan_in;
  LayerPlan p = {0};
  p.col_type = cols <= 65536 ? "uint16_t" : "uint32_t";
  p.ptr_type = nnz <= 65535 ? "uint16_t" : "uint32_t";
  size_t col_b = cols <= 65536 ? 2 : 4, ptr_b = nnz <= 65535 ? 2 : 4;
  size_t csr_bytes = nnz * (4 + col_b) + ((size_t)rows + 1) * ptr_b;
  size_t dense_bytes = 4 * l->w_len;
  p.csr = csr_bytes < dense_bytes;
  p.bytes = (p.csr ? csr_bytes : dense_bytes) + 4 * l->b_len;
  return p;
}

static void emit_layer_arrays(GString *s, const PrunusModel *m, int i, const LayerPlan *p) {
  const PrunusLayer *l = &m->layers[i];
  const float *W = m->params + l->w_off;
  char name[32];
  int rows = l->out.c, cols = l->fan_in;
  g_string_append_printf(s, "\n/* layer %s: %s, %d x %d weights, %s */\n", l->name,
                         l->ops->type_name, rows, cols, p->csr ? "CSR" : "dense");
  if (p->csr) {
    GArray *val = g_array_new(FALSE, FALSE, sizeof(float));
    GArray *col = g_array_new(FALSE, FALSE, sizeof(int32_t));
    int32_t *ptr = g_new(int32_t, rows + 1);
    for (int r = 0; r < rows; r++) {
      ptr[r] = (int32_t)val->len;
      for (int c = 0; c < cols; c++) {
        float w = W[(size_t)r * cols + c];
        if (w == 0.0f) continue;
        g_array_append_val(val, w);
        g_array_append_val(col, c);
      }
    }
    ptr[rows] = (int32_t)val->len;
    g_snprintf(name, sizeof name, "L%d_val", i);
    emit_floats(s, name, (const float *)val->data, val->len);
    g_snprintf(name, sizeof name, "L%d_col", i);
    emit_ints(s, p->col_type, name, (const int32_t *)col->data, col->len);
    g_snprintf(name, sizeof name, "L%d_ptr", i);
    emit_ints(s, p->ptr_type, name, ptr, (size_t)rows + 1);
    g_array_free(val, TRUE);
    g_array_free(col, TRUE);
    g_free(ptr);
  } else {
    g_snprintf(name, sizeof name, "L%d_w", i);
    emit_floats(s, name, W, l->w_len);
  }
  g_snprintf(name, sizeof name, "L%d_b", i);
  emit_floats(s, name, m->params + l->b_off, l->b_len);
}

/* A kept batchnorm (one whose layer has other readers): the per-channel affine map
 * y = x a + s that layers_norm.c computes in evaluation mode, as two arrays. */
static void emit_batchnorm_arrays(GString *s, const PrunusModel *m, int i) {
  const PrunusLayer *l = &m->layers[i];
  int C = l->in.c;
  const float *gamma = m->params + l->b_off, *beta = gamma + C;
  const float *mean = m->params + l->buf_off, *var = mean + C;
  float *a = g_new(float, C), *sh = g_new(float, C);
  for (int c = 0; c < C; c++) {
    float istd = (float)(1.0 / sqrt((double)var[c] + (double)l->spec.eps));
    a[c] = gamma[c] * istd;
    sh[c] = beta[c] - mean[c] * a[c];
  }
  char name[32];
  g_string_append_printf(s, "\n/* layer %s: batchnorm, %d channels, as scale and shift */\n",
                         l->name, C);
  g_snprintf(name, sizeof name, "L%d_a", i);
  emit_floats(s, name, a, C);
  g_snprintf(name, sizeof name, "L%d_s", i);
  emit_floats(s, name, sh, C);
  g_free(a), g_free(sh);
}

/* The C name of a plan buffer. */
static char *buffer_name(int b, const char *input) {
  if (b == PRUNUS_PLAN_INPUT) return g_strdup(input);
  if (b == PRUNUS_PLAN_OUTPUT) return g_strdup("logits");
  return g_strdup_printf("buf%d", b);
}

/* Dense conv kernels up to this size are emitted with a window row's taps unrolled. */
#define CONV_UNROLL_MAX 7

/* The rest of a dense conv's code after the bias (emit_layer_code): for each input
 * channel and kernel row, each output row adds its k taps at once (one load and store
 * of the output per k multiply-adds); the outputs whose window row crosses the plane's
 * edge are done apart, tap by tap. */
static void emit_conv_rows(GString *s, const PrunusLayer *l, int i) {
  int C = l->in.c, H = l->in.h, W = l->in.w, Ho = l->out.h, Wo = l->out.w;
  int k = l->spec.kernel, st = l->spec.stride, pd = l->spec.padding;
  /* outputs [a, b) read only inside the row: ow st - pd >= 0, ow st - pd + k - 1 < W */
  int a = (pd + st - 1) / st, b = W - k + pd >= 0 ? (W - k + pd) / st + 1 : 0;
  a = MIN(a, Wo), b = MIN(b, Wo);
  if (b <= a) a = b = Wo; /* no output reads a whole row: all are edges */
  g_string_append_printf(s,
                         "      for (int c = 0; c < %d; c++)\n"
                         "      for (int kh = 0; kh < %d; kh++) {\n"
                         "        const float *wr = L%d_w + ((long)(co * %d + c) * %d + kh) * %d;\n"
                         "        for (int oh = 0; oh < %d; oh++) {\n"
                         "          int ih = oh * %d - %d + kh;\n"
                         "          if (ih < 0 || ih >= %d) continue;\n"
                         "          const float *xr = in + ((long)c * %d + ih) * %d;\n"
                         "          float *orow = o + oh * %d;\n",
                         C, k, i, C, k, k, Ho, st, pd, H, H, W, Wo);
  if (b > a) {
    g_string_append_printf(
        s, "          for (int ow = %d; ow < %d; ow++)\n            orow[ow] +=", a, b);
    for (int kw = 0; kw < k; kw++)
      g_string_append_printf(s, "%s wr[%d] * xr[ow * %d + %d]", kw ? " +" : "", kw, st, kw - pd);
    g_string_append(s, ";\n");
  }
  const int edges[2][2] = {{0, a}, {b, Wo}};
  for (int e = 0; e < 2; e++) {
    if (edges[e][1] <= edges[e][0]) continue;
    g_string_append_printf(s,
                           "          for (int ow = %d; ow < %d; ow++) {\n"
                           "            float acc = 0.0f;\n"
                           "            for (int kw = 0; kw < %d; kw++) {\n"
                           "              int iw = ow * %d - %d + kw;\n"
                           "              if (iw >= 0 && iw < %d) acc += wr[kw] * xr[iw];\n"
                           "            }\n"
                           "            orow[ow] += acc;\n"
                           "          }\n",
                           edges[e][0], edges[e][1], k, st, pd, W);
  }
  g_string_append(s, "        }\n      }\n    }\n");
}

/* The code of layer i (a step of the plan), reading `in` (in0, in1, ... for add and
 * concat) and writing `out`. */
static void emit_layer_code(GString *s, const PrunusModel *m, int i, const LayerPlan *p) {
  const PrunusLayer *l = &m->layers[i];
  int C = l->in.c, H = l->in.h, W = l->in.w, O = l->out.c, Ho = l->out.h, Wo = l->out.w;
  int k = l->spec.kernel, st = l->spec.stride > 0 ? l->spec.stride : k, pd = l->spec.padding;
  switch (l->spec.type) {
  case PRUNUS_LAYER_DENSE:
    if (p->csr)
      g_string_append_printf(
          s,
          "    for (int r = 0; r < %d; r++) {\n"
          "      float acc = 0.0f;\n"
          "      for (int j = L%d_ptr[r]; j < L%d_ptr[r + 1]; j++) acc += L%d_val[j] * in[L%d_col[j]];\n"
          "      out[r] = acc + L%d_b[r];\n"
          "    }\n",
          O, i, i, i, i, i);
    else
      g_string_append_printf(s,
                             "    for (int r = 0; r < %d; r++) {\n"
                             "      const float *w = L%d_w + (long)r * %d;\n"
                             "      float acc = 0.0f;\n"
                             "      for (int c = 0; c < %d; c++) acc += w[c] * in[c];\n"
                             "      out[r] = acc + L%d_b[r];\n"
                             "    }\n",
                             O, i, C, C, i);
    break;
  case PRUNUS_LAYER_CONV2D:
    /* per output channel: the bias, then each weight times the input rows it meets,
     * over the outputs whose input is inside the plane (a row of them runs unbroken) */
    g_string_append_printf(s,
                           "    for (int co = 0; co < %d; co++) {\n"
                           "      float *o = out + (long)co * %d;\n"
                           "      for (int q = 0; q < %d; q++) o[q] = L%d_b[co];\n",
                           O, Ho * Wo, Ho * Wo, i);
    if (!p->csr && k <= CONV_UNROLL_MAX) {
      emit_conv_rows(s, l, i);
      break;
    }
    if (p->csr)
      g_string_append_printf(s,
                             "      for (int j = L%d_ptr[co]; j < L%d_ptr[co + 1]; j++) {\n"
                             "        int idx = L%d_col[j], c = idx / %d, kh = (idx / %d) %% %d, "
                             "kw = idx %% %d;\n"
                             "        float v = L%d_val[j];\n",
                             i, i, i, k * k, k, k, k, i);
    else
      g_string_append_printf(s,
                             "      for (int c = 0; c < %d; c++)\n"
                             "      for (int kh = 0; kh < %d; kh++)\n"
                             "      for (int kw = 0; kw < %d; kw++) {\n"
                             "        float v = L%d_w[((co * %d + c) * %d + kh) * %d + kw];\n",
                             C, k, k, i, C, k, k);
    g_string_append_printf(
        s,
        "        int lo = %d - kw, hi = %d - kw;\n"
        "        int ow0 = lo > 0 ? (lo + %d) / %d : 0, ow1 = hi < 0 ? 0 : hi / %d + 1;\n"
        "        if (ow1 > %d) ow1 = %d;\n"
        "        for (int oh = 0; oh < %d; oh++) {\n"
        "          int ih = oh * %d - %d + kh;\n"
        "          if (ih < 0 || ih >= %d) continue;\n"
        "          const float *xr = in + ((long)c * %d + ih) * %d;\n"
        "          float *orow = o + oh * %d;\n"
        "          for (int ow = ow0; ow < ow1; ow++) orow[ow] += v * xr[ow * %d - %d + kw];\n"
        "        }\n"
        "      }\n"
        "    }\n",
        pd, W - 1 + pd, st - 1, st, st, Wo, Wo, Ho, st, pd, H, H, W, Wo, st, pd);
    break;
  case PRUNUS_LAYER_MAXPOOL2D:
    g_string_append_printf(s,
                           "    for (int c = 0; c < %d; c++)\n"
                           "      for (int oh = 0; oh < %d; oh++)\n"
                           "        for (int ow = 0; ow < %d; ow++) {\n"
                           "          const float *xc = in + (long)c * %d;\n"
                           "          float best = xc[(oh * %d) * %d + ow * %d];\n"
                           "          for (int kh = 0; kh < %d; kh++)\n"
                           "            for (int kw = 0; kw < %d; kw++) {\n"
                           "              float v = xc[(oh * %d + kh) * %d + ow * %d + kw];\n"
                           "              if (v > best) best = v;\n"
                           "            }\n"
                           "          out[(c * %d + oh) * %d + ow] = best;\n"
                           "        }\n",
                           C, Ho, Wo, H * W, st, W, st, k, k, st, W, st, Ho, Wo);
    break;
  case PRUNUS_LAYER_AVGPOOL2D: {
    char inv[G_ASCII_DTOSTR_BUF_SIZE];
    g_snprintf(inv, sizeof inv, "%a", (double)(1.0f / (float)(k * k)));
    g_string_append_printf(
        s,
        "    for (int c = 0; c < %d; c++)\n"
        "      for (int oh = 0; oh < %d; oh++)\n"
        "        for (int ow = 0; ow < %d; ow++) {\n"
        "          const float *xc = in + (long)c * %d;\n"
        "          float sum = 0.0f;\n"
        "          for (int kh = 0; kh < %d; kh++)\n"
        "            for (int kw = 0; kw < %d; kw++) sum += xc[(oh * %d + kh) * %d + ow * %d + kw];\n"
        "          out[(c * %d + oh) * %d + ow] = sum * %sf;\n"
        "        }\n",
        C, Ho, Wo, H * W, k, k, st, W, st, Ho, Wo, inv);
    break;
  }
  case PRUNUS_LAYER_GLOBALAVGPOOL: {
    char inv[G_ASCII_DTOSTR_BUF_SIZE];
    g_snprintf(inv, sizeof inv, "%a", (double)(1.0f / (float)(H * W)));
    g_string_append_printf(s,
                           "    for (int c = 0; c < %d; c++) {\n"
                           "      float sum = 0.0f;\n"
                           "      for (int q = 0; q < %d; q++) sum += in[(long)c * %d + q];\n"
                           "      out[c] = sum * %sf;\n"
                           "    }\n",
                           C, H * W, H * W, inv);
    break;
  }
  case PRUNUS_LAYER_BATCHNORM:
    g_string_append_printf(
        s,
        "    for (int c = 0; c < %d; c++)\n"
        "      for (int q = 0; q < %d; q++) out[c * %d + q] = in[c * %d + q] * L%d_a[c] + L%d_s[c];\n",
        C, H * W, H * W, H * W, i, i);
    break;
  case PRUNUS_LAYER_ADD:
    g_string_append_printf(s, "    for (int q = 0; q < %zu; q++) out[q] = in0[q]",
                           prunus_shape_size(l->out));
    for (int j = 1; j < l->n_in; j++) g_string_append_printf(s, " + in%d[q]", j);
    g_string_append(s, ";\n");
    break;
  case PRUNUS_LAYER_CONCAT: {
    size_t off = 0, HW = (size_t)l->out.h * l->out.w;
    for (int j = 0; j < l->n_in; j++) {
      size_t n = (size_t)l->in_c[j] * HW;
      g_string_append_printf(s, "    for (int q = 0; q < %zu; q++) out[%zu + q] = in%d[q];\n", n,
                             off, j);
      off += n;
    }
    break;
  }
  case PRUNUS_LAYER_RELU:
    g_string_append_printf(
        s, "    for (int q = 0; q < %zu; q++) out[q] = in[q] > 0.0f ? in[q] : 0.0f;\n",
        prunus_shape_size(l->in));
    break;
  default: /* flatten, as the last layer (elsewhere a view of its input) */
    g_string_append_printf(s, "    for (int q = 0; q < %zu; q++) out[q] = in[q];\n",
                           prunus_shape_size(l->in));
    break;
  }
}

/* The code of one step of the plan: its layer, then the relu fused into it. */
static void emit_step_code(GString *s, const PrunusModel *m, const PrunusPlanStep *st,
                           const LayerPlan *p) {
  const PrunusLayer *l = &m->layers[st->layer];
  g_string_append_printf(s, "  /* layer %s: %s", l->name, l->ops->type_name);
  if (st->relu >= 0) g_string_append_printf(s, ", then relu %s", m->layers[st->relu].name);
  g_string_append(s, " */\n  {\n");
  for (int k = 0; k < st->n_in; k++) {
    char *name = buffer_name(st->in[k], "x");
    if (st->n_in == 1)
      g_string_append_printf(s, "    const float *in = %s;\n", name);
    else
      g_string_append_printf(s, "    const float *in%d = %s;\n", k, name);
    g_free(name);
  }
  char *out = buffer_name(st->out, "x");
  g_string_append_printf(s, "    float *out = %s;\n", out);
  g_free(out);
  emit_layer_code(s, m, st->layer, p);
  if (st->relu >= 0)
    g_string_append_printf(
        s, "    for (int q = 0; q < %zu; q++) out[q] = out[q] > 0.0f ? out[q] : 0.0f;\n",
        prunus_shape_size(l->out));
  g_string_append(s, "  }\n");
}

/* The .c and the .h side by side or neither: each is written whole under a temporary
 * name next to it, and both are renamed only once both are written (a full disk leaves
 * no half pair, and an earlier pair stays as it was). */
static gboolean write_pair(const char *c_path, const GString *c, const char *h_path,
                           const GString *h, GError **error) {
  char *c_tmp = g_strconcat(c_path, ".part", NULL), *h_tmp = g_strconcat(h_path, ".part", NULL);
  const char *failed = c_path;
  gboolean ok = g_file_set_contents(c_tmp, c->str, (gssize)c->len, error);
  if (ok) {
    failed = h_path;
    ok = g_file_set_contents(h_tmp, h->str, (gssize)h->len, error);
  }
  const char *unmoved = !ok                            ? NULL
                        : g_rename(c_tmp, c_path) != 0 ? c_tmp
                        : g_rename(h_tmp, h_path) != 0 ? h_tmp
                                                       : NULL;
  if (unmoved) {
    int e = errno;
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot rename %s into place: %s", unmoved,
                g_strerror(e));
    ok = FALSE;
  } else if (!ok) {
    g_prefix_error(error, "cannot write %s: ", failed);
  }
  g_unlink(c_tmp), g_unlink(h_tmp);
  g_free(c_tmp), g_free(h_tmp);
  return ok;
}

static gboolean export_c(const PrunusModel *m, const float *lut, const char *dir,
                         size_t dense_bytes, const char *checkpoint, gboolean quiet,
                         size_t *flash_out, GError **error) {
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot create folder %s: %s", dir,
                g_strerror(errno));
    return FALSE;
  }
  size_t in_size = prunus_model_input_size(m);
  int K = prunus_model_n_classes(m);
  PrunusInferPlan *plan = prunus_infer_plan_new(m);
  LayerPlan *plans = g_new0(LayerPlan, m->n_layers);
  size_t flash = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM) flash += sizeof(float) * 2 * (size_t)l->in.c;
    if (!l->ops->has_params) continue;
    plans[i] = plan_layer(l, m->params + l->w_off);
    flash += plans[i].bytes;
  }
  char *arch = prunus_arch_to_string(&m->arch);
  GString *h = g_string_new(NULL);
  g_string_append_printf(
      h,
      "/* prunus_model.h: generated by `prunus export` from %s.\n"
      " * Architecture (dead units removed, batchnorm folded): %s.\n"
      " * Plain C99, no malloc, no BLAS, not reentrant (static scratch buffers). */\n"
      "#ifndef PRUNUS_MODEL_H\n#define PRUNUS_MODEL_H\n\n#include <stdint.h>\n\n"
      "#define PRUNUS_MODEL_INPUT_SIZE %zu\n#define PRUNUS_MODEL_N_CLASSES %d\n"
      "/* bytes of weights, biases and index arrays */\n#define PRUNUS_MODEL_FLASH_BYTES %zu\n"
      "/* bytes of the static activation buffers */\n#define PRUNUS_MODEL_RAM_BYTES %zu\n\n"
      "/* x (INPUT_SIZE) from raw pixels (INPUT_SIZE), normalised as in training. */\n"
      "void prunus_model_normalize(const uint8_t *pixels, float *x);\n"
      "/* logits (N_CLASSES) of one normalised input x (INPUT_SIZE). */\n"
      "void prunus_model_logits(const float *x, float *logits);\n"
      "/* The class with the largest logit (the first one on ties). */\n"
      "int prunus_model_predict(const float *x);\n\n#endif\n",
      checkpoint, arch, in_size, K, flash, sizeof(float) * prunus_infer_plan_floats(plan));
  GString *s = g_string_new(NULL);
  g_string_append_printf(s,
                         "/* prunus_model.c: generated by `prunus export` from %s.\n"
                         " * %s; weights %zu bytes (dense model: %zu). */\n"
                         "#include \"prunus_model.h\"\n\n",
                         checkpoint, arch, flash, dense_bytes);
  emit_floats(s, "norm_lut", lut, 256);
  for (int i = 0; i < m->n_layers; i++) {
    if (m->layers[i].spec.type == PRUNUS_LAYER_BATCHNORM) emit_batchnorm_arrays(s, m, i);
    if (m->layers[i].ops->has_params) emit_layer_arrays(s, m, i, &plans[i]);
  }
  if (plan->n_bufs > 0) {
    g_string_append(s, "\n/* activations, reused once their last reader has run */\n");
    for (int b = 0; b < plan->n_bufs; b++)
      g_string_append_printf(s, "static float buf%d[%zu];\n", b, plan->buf_floats[b]);
  }
  g_string_append_printf(s,
                         "\nvoid prunus_model_normalize(const uint8_t *pixels, float *x) {\n"
                         "  for (int q = 0; q < %zu; q++) x[q] = norm_lut[pixels[q]];\n}\n\n",
                         in_size);
  g_string_append(s, "void prunus_model_logits(const float *x, float *logits) {\n");
  for (int t = 0; t < plan->n_steps; t++)
    emit_step_code(s, m, &plan->steps[t], &plans[plan->steps[t].layer]);
  g_string_append(s, "}\n\n");
  g_string_append_printf(
      s,
      "int prunus_model_predict(const float *x) {\n"
      "  float logits[%d];\n  prunus_model_logits(x, logits);\n  int best = 0;\n"
      "  for (int q = 1; q < %d; q++)\n    if (logits[q] > logits[best]) best = q;\n"
      "  return best;\n}\n",
      K, K);
  char *c_path = g_build_filename(dir, "prunus_model.c", NULL);
  char *h_path = g_build_filename(dir, "prunus_model.h", NULL);
  gboolean ok = write_pair(c_path, s, h_path, h, error);
  if (flash_out) *flash_out = flash;
  if (ok && !quiet)
    printf(
        "prunus export: %s (%s)\n  flash %zu bytes (weights + biases + indices) vs %zu dense "
        "(%.1f%%)\n",
        c_path, arch, flash, dense_bytes, 100.0 * (double)flash / (double)dense_bytes);
  for (int i = 0; i < m->n_layers; i++)
    if (ok && !quiet && m->layers[i].ops->has_params)
      printf("  layer %-3s %-7s %4d x %-5d %s\n", m->layers[i].name, m->layers[i].ops->type_name,
             m->layers[i].out.c, m->layers[i].fan_in, plans[i].csr ? "CSR" : "dense");
  g_free(c_path);
  g_free(h_path);
  g_string_free(s, TRUE);
  g_string_free(h, TRUE);
  g_free(arch);
  g_free(plans);
  prunus_infer_plan_free(plan);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* safetensors for PyTorch */

static gboolean export_safetensors(const PrunusModel *m, const char *path, gboolean quiet,
                                   GError **error) {
  PrunusTensor *t = g_new0(PrunusTensor, 2 * (size_t)m->n_layers);
  int n = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    PrunusTensor *w = &t[n++], *b = &t[n++];
    w->name = g_strdup_printf("%s.weight", l->name);
    w->data = m->params + l->w_off;
    if (l->spec.type == PRUNUS_LAYER_CONV2D) {
      w->ndim = 4;
      w->shape[0] = l->out.c, w->shape[1] = l->in.c, w->shape[2] = w->shape[3] = l->spec.kernel;
    } else {
      w->ndim = 2;
      w->shape[0] = l->out.c, w->shape[1] = l->in.c;
    }
    b->name = g_strdup_printf("%s.bias", l->name);
    b->data = m->params + l->b_off;
    b->ndim = 1;
    b->shape[0] = (int64_t)l->b_len;
  }
  GHashTable *md = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
  g_hash_table_insert(md, "format", g_strdup("pt"));
  g_hash_table_insert(md, "producer", g_strdup_printf("prunus %s export", prunus_version()));
  g_hash_table_insert(md, "architecture", prunus_arch_to_string(&m->arch));
  gboolean ok = prunus_safetensors_write(path, t, n, md, error);
  if (ok && !quiet)
    printf("prunus export: %s (%d tensors, masks applied, dead units removed)\n", path, n);
  g_hash_table_unref(md);
  for (int i = 0; i < n; i++) g_free(t[i].name);
  g_free(t);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* entry points */

/* lut[u] = byte u normalised by norm, made by the very code that fills training
 * batches (a batch of the 256 byte values), so the values are identical. */
static void norm_lut(const PrunusNorm *norm, float lut[256]) {
  uint8_t pixels[256], labels[256] = {0}, y[256];
  int idx[256];
  for (int v = 0; v < 256; v++) pixels[v] = (uint8_t)v, idx[v] = v;
  PrunusDataset *ramp = prunus_dataset_new_from_data(256, 1, 1, 1, 2, pixels, labels);
  prunus_dataset_fill_batch(ramp, norm, idx, 256, lut, y);
  prunus_dataset_free(ramp);
}

gboolean prunus_export_c(const PrunusModel *m, const PrunusNorm *norm, const char *dir,
                         const char *source, gboolean quiet, size_t *flash_out, GError **error) {
  PrunusModel *plain = prunus_model_to_plain(m, "prunus export", error);
  if (!plain) return FALSE;
  const PrunusNorm unit = {.kind = PRUNUS_NORM_UNIT, .mean = 0.0f, .std = 1.0f};
  float lut[256];
  norm_lut(norm ? norm : &unit, lut);
  PrunusModel *s = prunus_model_shrink_dead(plain, error);
  gboolean ok =
      s && export_c(s, lut, dir, sizeof(float) * plain->n_params, source, quiet, flash_out, error);
  prunus_model_free(s);
  prunus_model_free(plain);
  return ok;
}

gboolean prunus_export_safetensors(const PrunusModel *m, const char *path, gboolean quiet,
                                   GError **error) {
  /* PyTorch's names and shapes of a sequence (nn.Sequential); graphs are not mapped */
  if (!prunus_model_check_plain(m, TRUE, "prunus export", error)) return FALSE;
  PrunusModel *plain = prunus_model_to_plain(m, "prunus export", error);
  if (!plain) return FALSE;
  PrunusModel *s = prunus_model_shrink_dead(plain, error);
  gboolean ok = s && export_safetensors(s, path, quiet, error);
  prunus_model_free(s);
  prunus_model_free(plain);
  return ok;
}
