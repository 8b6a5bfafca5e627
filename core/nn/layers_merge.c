/* layers_merge.c: the layers that join branches of a graph: add (element-wise sum of
 * inputs of one shape, a residual connection) and concat (inputs stacked along the
 * channels). Neither has parameters; both take 2 or more inputs. */
#include "layer.h"

#include <string.h>

static char *shape_text(PrunusShape s) { return g_strdup_printf("%dx%dx%d", s.c, s.h, s.w); }

static gboolean merge_needs_two(const PrunusLayer *l, GError **error) {
  if (l->n_in >= 2) return TRUE;
  g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
              "%s needs 2 or more inputs, found %d (list them: input = [\"a\", \"b\"])",
              l->ops->type_name, l->n_in);
  return FALSE;
}

static size_t no_scratch(const PrunusLayer *l, int B) {
  (void)l, (void)B;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* add: y (B, C, H, W) = x[0] + x[1] + ... in input order; dx[k] = dy. */

static gboolean add_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                          GError **error) {
  if (!merge_needs_two(l, error)) return FALSE;
  for (int k = 1; k < l->n_in; k++) {
    if (ins[k].c == ins[0].c && ins[k].h == ins[0].h && ins[k].w == ins[0].w) continue;
    char *a = shape_text(ins[0]), *b = shape_text(ins[k]);
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                "add needs inputs of one shape, but '%s' is %s and '%s' is %s", in_names[0], a,
                in_names[k], b);
    g_free(a), g_free(b);
    return FALSE;
  }
  l->out = ins[0];
  return TRUE;
}

/* Element-wise, split over the layer's team: any split gives the same bits. */
typedef struct {
  const float *const *x;
  int n_in;
  float *y;
  size_t n;
} AddCall;

static void add_part(void *arg, int part, int n_parts) {
  const AddCall *c = arg;
  size_t a, b;
  prunus_team_block_share(c->n, 16, part, n_parts, &a, &b);
  if (b <= a) return;
  const float *restrict x0 = c->x[0], *restrict x1 = c->x[1];
  float *restrict y = c->y;
  for (size_t i = a; i < b; i++) y[i] = x0[i] + x1[i];
  for (int k = 2; k < c->n_in; k++) {
    const float *restrict xk = c->x[k];
    for (size_t i = a; i < b; i++) y[i] += xk[i];
  }
}

static void add_forward(const PrunusLayer *l, const float *params, const float *const *x, float *y,
                        float *scratch, int B) {
  (void)params, (void)scratch;
  AddCall c = {x, l->n_in, y, (size_t)B * prunus_shape_size(l->out)};
  prunus_team_run(l->team, add_part, &c);
}

static void add_backward(const PrunusLayer *l, const float *params, float *grads,
                         const float *const *x, const float *y, const float *dy, float *const *dx,
                         float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)y, (void)scratch;
  size_t n = (size_t)B * prunus_shape_size(l->out);
  for (int k = 0; k < l->n_in; k++)
    if (dx[k] && dx[k] != dy) memcpy(dx[k], dy, sizeof(float) * n);
}

const PrunusLayerOps prunus_layer_ops_add = {
    .type_name = "add",
    .infer = add_infer,
    .scratch_size = no_scratch,
    .forward_n = add_forward,
    .backward_n = add_backward,
};

/* ------------------------------------------------------------------------ */
/* concat: y (B, C0 + C1 + ..., H, W) = x[0] (B, C0, H, W), x[1] (B, C1, H, W), ...
 * stacked along the channels in input order; dx[k] = its channels of dy. */

static gboolean concat_infer(PrunusLayer *l, const PrunusShape *ins, const char *const *in_names,
                             GError **error) {
  if (!merge_needs_two(l, error)) return FALSE;
  int c = 0;
  for (int k = 0; k < l->n_in; k++) {
    if (ins[k].h != ins[0].h || ins[k].w != ins[0].w) {
      char *a = shape_text(ins[0]), *b = shape_text(ins[k]);
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_CONFIG,
                  "concat stacks channels of inputs of one height and width, but '%s' is %s and "
                  "'%s' is %s",
                  in_names[0], a, in_names[k], b);
      g_free(a), g_free(b);
      return FALSE;
    }
    c += ins[k].c;
  }
  l->out = (PrunusShape){c, ins[0].h, ins[0].w};
  return TRUE;
}

static void concat_forward(const PrunusLayer *l, const float *params, const float *const *x,
                           float *y, float *scratch, int B) {
  (void)params, (void)scratch;
  size_t HW = (size_t)l->out.h * l->out.w, out = prunus_shape_size(l->out);
  for (int b = 0; b < B; b++) {
    float *yb = y + (size_t)b * out;
    for (int k = 0; k < l->n_in; k++) {
      size_t n = (size_t)l->in_c[k] * HW;
      memcpy(yb, x[k] + (size_t)b * n, sizeof(float) * n);
      yb += n;
    }
  }
}

static void concat_backward(const PrunusLayer *l, const float *params, float *grads,
                            const float *const *x, const float *y, const float *dy,
                            float *const *dx, float *scratch, int B) {
  (void)params, (void)grads, (void)x, (void)y, (void)scratch;
  size_t HW = (size_t)l->out.h * l->out.w, out = prunus_shape_size(l->out);
  for (int b = 0; b < B; b++) {
    const float *dyb = dy + (size_t)b * out;
    for (int k = 0; k < l->n_in; k++) {
      size_t n = (size_t)l->in_c[k] * HW;
      if (dx[k]) memcpy(dx[k] + (size_t)b * n, dyb, sizeof(float) * n);
      dyb += n;
    }
  }
}

const PrunusLayerOps prunus_layer_ops_concat = {
    .type_name = "concat",
    .infer = concat_infer,
    .scratch_size = no_scratch,
    .forward_n = concat_forward,
    .backward_n = concat_backward,
};
