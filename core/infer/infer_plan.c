/* infer_plan.c: the inference plan of a model (infer_plan.h): which layers run as
 * steps, which relus ride along, and which buffer each activation lives in, given out
 * greedily in layer order from the buffers whose value has no reader left. */
#include "infer_plan.h"

/* Layer types that can apply a relu to their output in place right after computing
 * it, while it is still in cache. */
static gboolean fuses_relu(PrunusLayerType t) {
  return t == PRUNUS_LAYER_CONV2D || t == PRUNUS_LAYER_DENSE || t == PRUNUS_LAYER_BATCHNORM ||
         t == PRUNUS_LAYER_ADD;
}

/* Layer types whose output element i depends on input element i only (the same
 * shape): they may write over an input no one reads afterwards. */
static gboolean elementwise(PrunusLayerType t) {
  return t == PRUNUS_LAYER_RELU || t == PRUNUS_LAYER_BATCHNORM || t == PRUNUS_LAYER_ADD;
}

PrunusInferPlan *prunus_infer_plan_new(const PrunusModel *m) {
  int n = m->n_layers, last = n - 1;
  int *readers = g_new0(int, n);
  int *relu_of = g_new(int, n);    /* layer i: the relu fused into it, or -1 */
  int *fused_into = g_new(int, n); /* relu j: the layer it is fused into, or -1 */
  int *root = g_new(int, n);       /* the value whose buffer holds layer i's output (-1: input) */
  int *step_of = g_new(int, n);    /* layer i's step, or -1 */
  int *last_use = g_new(int, n);   /* value v: the step of its last reader, or -1 */
  int *loc = g_new(int, n);        /* value v: its buffer */
  for (int i = 0; i < n; i++) {
    relu_of[i] = fused_into[i] = step_of[i] = last_use[i] = loc[i] = -1;
    for (int k = 0; k < m->layers[i].n_in; k++)
      if (m->layers[i].from[k] >= 0) readers[m->layers[i].from[k]]++;
  }
  for (int j = 0; j < n; j++) {
    const PrunusLayer *l = &m->layers[j];
    int f = l->from[0];
    if (l->spec.type == PRUNUS_LAYER_RELU && f >= 0 && readers[f] == 1 &&
        fuses_relu(m->layers[f].spec.type) && relu_of[f] < 0)
      relu_of[f] = j, fused_into[j] = f;
  }
  PrunusInferPlan *p = g_new0(PrunusInferPlan, 1);
  p->steps = g_new0(PrunusPlanStep, n);
  for (int i = 0; i < n; i++) {
    const PrunusLayer *l = &m->layers[i];
    root[i] = i;
    if (fused_into[i] >= 0) continue;
    if (l->spec.type == PRUNUS_LAYER_FLATTEN && i != last) { /* a view: same memory */
      root[i] = l->from[0] < 0 ? -1 : root[l->from[0]];
      continue;
    }
    step_of[i] = p->n_steps;
    PrunusPlanStep *s = &p->steps[p->n_steps++];
    s->layer = i;
    s->relu = relu_of[i];
    s->n_in = l->n_in;
    for (int k = 0; k < l->n_in; k++) {
      int v = l->from[k] < 0 ? -1 : root[l->from[k]];
      if (v >= 0) last_use[v] = step_of[i];
    }
  }
  GArray *floats = g_array_new(FALSE, TRUE, sizeof(size_t));
  GArray *busy = g_array_new(FALSE, TRUE, sizeof(gboolean));
  for (int si = 0; si < p->n_steps; si++) {
    PrunusPlanStep *s = &p->steps[si];
    const PrunusLayer *l = &m->layers[s->layer];
    int o = s->relu >= 0 ? s->relu : s->layer; /* the value the step leaves */
    size_t size = prunus_shape_size(m->layers[o].out);
    int reused = -1;
    for (int k = 0; k < s->n_in; k++) {
      int v = l->from[k] < 0 ? -1 : root[l->from[k]];
      s->in[k] = v < 0 ? PRUNUS_PLAN_INPUT : loc[v];
      if (reused < 0 && v >= 0 && last_use[v] == si && elementwise(l->spec.type))
        reused = loc[v];
    }
    if (o == last) {
      s->out = PRUNUS_PLAN_OUTPUT;
    } else if (reused >= 0) {
      s->out = reused;
      s->in_place = TRUE;
    } else { /* the free buffer that fits best, else the largest free one (grown), else a new one */
      int best = -1;
      for (guint b = 0; b < busy->len; b++) {
        if (g_array_index(busy, gboolean, b)) continue;
        size_t have = g_array_index(floats, size_t, b);
        if (best < 0) {
          best = (int)b;
          continue;
        }
        size_t cur = g_array_index(floats, size_t, best);
        gboolean fits = have >= size, cur_fits = cur >= size;
        if ((fits && (!cur_fits || have < cur)) || (!fits && !cur_fits && have > cur))
          best = (int)b;
      }
      if (best < 0) {
        gboolean no = FALSE;
        size_t zero = 0;
        g_array_append_val(busy, no);
        g_array_append_val(floats, zero);
        best = (int)busy->len - 1;
      }
      s->out = best;
      g_array_index(busy, gboolean, best) = TRUE;
      size_t *have = &g_array_index(floats, size_t, best);
      *have = MAX(*have, size);
    }
    if (o != last) loc[o] = s->out;
    for (int k = 0; k < s->n_in; k++) {
      int v = l->from[k] < 0 ? -1 : root[l->from[k]];
      if (v >= 0 && last_use[v] == si && loc[v] != s->out)
        g_array_index(busy, gboolean, loc[v]) = FALSE;
    }
  }
  p->n_bufs = (int)floats->len;
  p->buf_floats = (size_t *)g_array_free(floats, FALSE);
  g_array_free(busy, TRUE);
  g_free(readers), g_free(relu_of), g_free(fused_into), g_free(root), g_free(step_of);
  g_free(last_use), g_free(loc);
  return p;
}

void prunus_infer_plan_free(PrunusInferPlan *p) {
  if (!p) return;
  g_free(p->steps);
  g_free(p->buf_floats);
  g_free(p);
}

size_t prunus_infer_plan_floats(const PrunusInferPlan *p) {
  size_t n = 0;
  for (int b = 0; b < p->n_bufs; b++) n += p->buf_floats[b];
  return n;
}
