/* groups.c: channel dependency groups. Every channel of every activation (a feature, after
 * a flatten) is an element; each layer ties its output channels to its input channels the
 * way it maps them (union-find), conv2d and dense tie nothing (they make new channels);
 * a class of tied channels that holds a conv2d / dense output and touches neither the
 * network's input nor its output is a group. */
#include "groups.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* union-find over the elements */

static size_t uf_find(size_t *parent, size_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

static void uf_union(size_t *parent, size_t a, size_t b) {
  a = uf_find(parent, a), b = uf_find(parent, b);
  if (a == b) return;
  if (a < b) /* the lower element stays the root: the result is independent of order */
    parent[b] = a;
  else
    parent[a] = b;
}

/* Tie the channels of layer i's output to those of its inputs. */
static void tie_layer(const PrunusModel *m, int i, const size_t *base, size_t *parent) {
  const PrunusLayer *l = &m->layers[i];
  size_t out = base[i + 1];
  size_t in0 = base[l->from[0] + 1];
  switch (l->spec.type) {
  case PRUNUS_LAYER_DENSE:
  case PRUNUS_LAYER_CONV2D: /* new channels, each a weighted mix of all inputs */
    break;
  case PRUNUS_LAYER_RELU:
  case PRUNUS_LAYER_MAXPOOL2D:
  case PRUNUS_LAYER_AVGPOOL2D:
  case PRUNUS_LAYER_GLOBALAVGPOOL:
  case PRUNUS_LAYER_BATCHNORM:
    for (int c = 0; c < l->out.c; c++) uf_union(parent, out + (size_t)c, in0 + (size_t)c);
    break;
  case PRUNUS_LAYER_FLATTEN: { /* feature f of the output is channel f / (H*W) of the input */
    int hw = l->in.h * l->in.w;
    for (int f = 0; f < l->out.c; f++) uf_union(parent, out + (size_t)f, in0 + (size_t)(f / hw));
    break;
  }
  case PRUNUS_LAYER_ADD: /* every input and the output share channel indices */
    for (int k = 0; k < l->n_in; k++) {
      size_t in = base[l->from[k] + 1];
      for (int c = 0; c < l->out.c; c++) uf_union(parent, out + (size_t)c, in + (size_t)c);
    }
    break;
  case PRUNUS_LAYER_CONCAT: { /* input k's channel c is the output's offset_k + c */
    size_t off = 0;
    for (int k = 0; k < l->n_in; k++) {
      size_t in = base[l->from[k] + 1];
      for (int c = 0; c < l->in_c[k]; c++) uf_union(parent, out + off + (size_t)c, in + (size_t)c);
      off += (size_t)l->in_c[k];
    }
    break;
  }
  case PRUNUS_LAYER_N_TYPES:
    g_assert_not_reached();
  }
}

/* ------------------------------------------------------------------------ */
/* building */

static void member_add(GArray *a, int layer, int channel) {
  PrunusGroupMember mb = {layer, channel, 1};
  g_array_append_val(a, mb);
}

PrunusGroups *prunus_groups_build(const PrunusModel *m) {
  PrunusGroups *g = g_new0(PrunusGroups, 1);
  int nl = m->n_layers;
  g->n_slots = nl + 1;
  g->slot_base = g_new0(size_t, (size_t)g->n_slots + 1);
  for (int s = 0; s < g->n_slots; s++)
    g->slot_base[s + 1] =
        g->slot_base[s] + (size_t)(s == 0 ? m->arch.input.c : m->layers[s - 1].out.c);
  size_t n = g->slot_base[g->n_slots];
  size_t *parent = g_new(size_t, MAX(n, 1));
  for (size_t e = 0; e < n; e++) parent[e] = e;
  for (int i = 0; i < nl; i++) tie_layer(m, i, g->slot_base, parent);

  /* a class tied to the network's input or output is never removable */
  gboolean *fixed = g_new0(gboolean, MAX(n, 1));
  for (size_t e = g->slot_base[0]; e < g->slot_base[1]; e++) fixed[uf_find(parent, e)] = TRUE;
  for (size_t e = g->slot_base[nl]; e < g->slot_base[nl + 1]; e++) fixed[uf_find(parent, e)] = TRUE;

  /* groups numbered by their first producer, in model order then by channel */
  int *root_group = g_new(int, MAX(n, 1));
  for (size_t e = 0; e < n; e++) root_group[e] = -1;
  GPtrArray *prod = g_ptr_array_new(), *norm = g_ptr_array_new(), *cons = g_ptr_array_new();
  for (int i = 0; i < nl; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params) continue;
    for (int c = 0; c < l->out.c; c++) {
      size_t r = uf_find(parent, g->slot_base[i + 1] + (size_t)c);
      if (fixed[r]) continue;
      if (root_group[r] < 0) {
        root_group[r] = (int)prod->len;
        g_ptr_array_add(prod, g_array_new(FALSE, FALSE, sizeof(PrunusGroupMember)));
        g_ptr_array_add(norm, g_array_new(FALSE, FALSE, sizeof(PrunusGroupMember)));
        g_ptr_array_add(cons, g_array_new(FALSE, FALSE, sizeof(PrunusGroupMember)));
      }
      member_add(g_ptr_array_index(prod, root_group[r]), i, c);
    }
  }
  g->slot_group = g_new(int, MAX(n, 1));
  for (size_t e = 0; e < n; e++) g->slot_group[e] = root_group[uf_find(parent, e)];
  for (int i = 0; i < nl; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
      for (int c = 0; c < l->out.c; c++) {
        int gr = prunus_groups_unit(g, i, c);
        if (gr >= 0) member_add(g_ptr_array_index(norm, gr), i, c);
      }
    }
    if (!l->ops->has_params) continue;
    /* consumers: runs of consecutive input channels of one group */
    int s = l->from[0] + 1;
    for (int c = 0; c < l->in.c; c++) {
      int gr = g->slot_group[g->slot_base[s] + (size_t)c];
      if (gr < 0) continue;
      GArray *a = g_ptr_array_index(cons, gr);
      PrunusGroupMember *last = a->len ? &g_array_index(a, PrunusGroupMember, a->len - 1) : NULL;
      if (last && last->layer == i && last->channel + last->width == c)
        last->width++;
      else
        member_add(a, i, c);
    }
  }
  g->n_groups = (int)prod->len;
  g->groups = g_new0(PrunusGroup, MAX(g->n_groups, 1));
  for (int k = 0; k < g->n_groups; k++) {
    PrunusGroup *gr = &g->groups[k];
    GArray *a = g_ptr_array_index(prod, k), *b = g_ptr_array_index(norm, k),
           *c = g_ptr_array_index(cons, k);
    gr->n_producers = (int)a->len;
    gr->producers = (PrunusGroupMember *)(void *)g_array_free(a, FALSE);
    gr->n_norms = (int)b->len;
    gr->norms = (PrunusGroupMember *)(void *)g_array_free(b, FALSE);
    gr->n_consumers = (int)c->len;
    gr->consumers = (PrunusGroupMember *)(void *)g_array_free(c, FALSE);
  }
  g_ptr_array_free(prod, TRUE), g_ptr_array_free(norm, TRUE), g_ptr_array_free(cons, TRUE);
  g_free(root_group);
  g_free(fixed);
  g_free(parent);
  return g;
}

void prunus_groups_free(PrunusGroups *g) {
  if (!g) return;
  for (int k = 0; k < g->n_groups; k++) {
    g_free(g->groups[k].producers);
    g_free(g->groups[k].norms);
    g_free(g->groups[k].consumers);
  }
  g_free(g->groups);
  g_free(g->slot_base);
  g_free(g->slot_group);
  g_free(g);
}

/* ------------------------------------------------------------------------ */
/* describing */

static void append_members(GString *s, const PrunusModel *m, const PrunusGroupMember *mb, int n,
                           gboolean inputs) {
  for (int j = 0; j < n; j++) {
    const char *name = m->layers[mb[j].layer].name;
    if (!inputs)
      g_string_append_printf(s, " %s[%d]", name, mb[j].channel);
    else if (mb[j].width == 1)
      g_string_append_printf(s, " %s[in %d]", name, mb[j].channel);
    else
      g_string_append_printf(s, " %s[in %d-%d]", name, mb[j].channel,
                             mb[j].channel + mb[j].width - 1);
  }
}

char *prunus_groups_describe_one(const PrunusGroups *g, const PrunusModel *m, int group) {
  const PrunusGroup *gr = &g->groups[group];
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "group %d: out", group);
  append_members(s, m, gr->producers, gr->n_producers, FALSE);
  if (gr->n_norms) {
    g_string_append(s, "; bn");
    append_members(s, m, gr->norms, gr->n_norms, FALSE);
  }
  g_string_append(s, "; in");
  append_members(s, m, gr->consumers, gr->n_consumers, TRUE);
  return g_string_free(s, FALSE);
}

/* ------------------------------------------------------------------------ */
/* checking a removal */

static gboolean removes(const uint8_t *const *remove_units, int layer, int u) {
  return remove_units && remove_units[layer] && remove_units[layer][u];
}

gboolean prunus_groups_from_units(const PrunusGroups *g, const PrunusModel *m,
                                  const uint8_t *const *remove_units, uint8_t *remove_group,
                                  GError **error) {
  memset(remove_group, 0, (size_t)g->n_groups);
  for (int i = 0; i < m->n_layers && remove_units; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!remove_units[i]) continue;
    if (!l->ops->has_params) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "layer %s (%s) has no weights, so it has no units to remove", l->name,
                  l->ops->type_name);
      return FALSE;
    }
    for (int u = 0; u < l->out.c; u++) {
      if (!remove_units[i][u]) continue;
      int gr = prunus_groups_unit(g, i, u);
      if (gr < 0) {
        g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                    "cannot remove unit %d of layer %s (%s): its channel is tied to the network's "
                    "input or to its output (the class outputs), which keep every channel",
                    u, l->name, l->ops->type_name);
        return FALSE;
      }
      remove_group[gr] = 1;
    }
  }
  for (int k = 0; k < g->n_groups; k++) {
    if (!remove_group[k]) continue;
    const PrunusGroup *gr = &g->groups[k];
    for (int j = 0; j < gr->n_producers; j++) {
      const PrunusGroupMember *mb = &gr->producers[j];
      if (removes(remove_units, mb->layer, mb->channel)) continue;
      const PrunusGroupMember *rm = gr->producers;
      while (!removes(remove_units, rm->layer, rm->channel)) rm++;
      char *what = prunus_groups_describe_one(g, m, k);
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "the plan splits coupled group %d: it removes unit %d of layer %s but keeps "
                  "unit %d of layer %s, whose channels are tied to it (%s); a group is removed "
                  "whole or not at all",
                  k, rm->channel, m->layers[rm->layer].name, mb->channel, m->layers[mb->layer].name,
                  what);
      g_free(what);
      return FALSE;
    }
  }
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (!l->ops->has_params || !remove_units || !remove_units[i]) continue;
    int kept = 0, last = -1;
    for (int u = 0; u < l->out.c; u++) {
      if (remove_units[i][u])
        last = prunus_groups_unit(g, i, u);
      else
        kept++;
    }
    if (kept == 0) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "the plan removes all %d units of layer %s (%s), the last with group %d; "
                  "refusing to empty a layer (lower the amount or set a max_sparsity below 1, in a "
                  "new run: a changed config cannot resume this one)",
                  l->out.c, l->name, l->ops->type_name, last);
      return FALSE;
    }
  }
  return TRUE;
}
