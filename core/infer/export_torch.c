/* export_torch.c: `prunus export --format safetensors`: a model as a PyTorch state_dict in
 * safetensors (masks applied, batchnorm kept with its running statistics, graphs kept as
 * graphs) and a generated torch.nn.Module (.py) whose strict load_state_dict takes it.
 * docs/torch.md describes both directions; tools/torch2prunus.py is the other one. */
#include "export_torch.h"
#include "checkpoint.h"
#include "errors.h"
#include "safetensors.h"
#include "shrink.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the tensors */

/* Layer l's tensors into t (names allocated), reading values (the masked parameter slab
 * followed by the buffers); returns how many (up to 4). */
static int layer_tensors(const PrunusLayer *l, const float *values, PrunusTensor *t) {
  int n = 0;
  if (l->ops->has_params) {
    t[n].name = g_strdup_printf("%s.weight", l->name);
    t[n].data = (float *)values + l->w_off;
    t[n].shape[0] = l->out.c, t[n].shape[1] = l->in.c;
    t[n].ndim = 2;
    if (l->spec.type == PRUNUS_LAYER_CONV2D) {
      t[n].ndim = 4;
      t[n].shape[2] = t[n].shape[3] = l->spec.kernel;
    }
    n++;
    if (l->b_len) {
      t[n].name = g_strdup_printf("%s.bias", l->name);
      t[n].data = (float *)values + l->b_off;
      t[n].ndim = 1, t[n].shape[0] = (int64_t)l->b_len;
      n++;
    }
  } else if (l->spec.type == PRUNUS_LAYER_BATCHNORM) {
    static const char *const what[4] = {"weight", "bias", "running_mean", "running_var"};
    int C = l->in.c;
    for (int k = 0; k < 4; k++, n++) {
      t[n].name = g_strdup_printf("%s.%s", l->name, what[k]);
      t[n].data = (float *)values + (k < 2 ? l->b_off : l->buf_off) + (size_t)(k % 2) * C;
      t[n].ndim = 1, t[n].shape[0] = C;
    }
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* the module definition */

/* Python's text for a float: the fewest significant digits (6 to 9) that give the
 * float32 back. */
static void py_float(GString *s, float v) {
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  for (int digits = 6; digits <= 9; digits++) { /* the shortest text that reads back */
    char fmt[8];
    g_snprintf(fmt, sizeof fmt, "%%.%dg", digits);
    g_ascii_formatd(buf, sizeof buf, fmt, (double)v);
    if ((float)g_ascii_strtod(buf, NULL) == v) break;
  }
  g_string_append(s, buf);
}

/* The rank (2: (N, F), 4: (N, C, H, W)) each value has in the generated forward. */
typedef struct {
  const PrunusModel *m;
  int *rank; /* (n_layers) */
} Ranks;

static PrunusShape out_shape(const PrunusModel *m, int from) {
  return from == PRUNUS_LAYER_INPUT ? m->arch.input : m->layers[from].out;
}

static int rank_of(const Ranks *r, int from) {
  return from == PRUNUS_LAYER_INPUT ? 4 : r->rank[from];
}

/* Layer `from`'s output as an expression of rank want (0: as it is). */
static void py_value(GString *s, const Ranks *r, int from, int want) {
  char name[16];
  if (from == PRUNUS_LAYER_INPUT)
    g_strlcpy(name, "x", sizeof name);
  else
    g_snprintf(name, sizeof name, "v%d", from);
  int have = rank_of(r, from);
  if (want == 0 || want == have) {
    g_string_append(s, name);
  } else if (want == 2) {
    g_string_append_printf(s, "torch.flatten(%s, 1)", name);
  } else {
    PrunusShape sh = out_shape(r->m, from);
    g_string_append_printf(s, "%s.reshape(-1, %d, %d, %d)", name, sh.c, sh.h, sh.w);
  }
}

/* The rank add and concat compute in: 2 when any input is flat (then all are 1x1). */
static int merge_rank(const Ranks *r, const PrunusLayer *l) {
  for (int k = 0; k < l->n_in; k++)
    if (rank_of(r, l->from[k]) == 2) return 2;
  return 4;
}

/* The constructor of layer l's module, or FALSE for layers without one. */
static gboolean py_module(GString *s, const Ranks *r, const PrunusLayer *l) {
  switch (l->spec.type) {
  case PRUNUS_LAYER_CONV2D:
    g_string_append_printf(s, "nn.Conv2d(%d, %d, %d, stride=%d, padding=%d, bias=%s)", l->in.c,
                           l->out.c, l->spec.kernel, l->spec.stride, l->spec.padding,
                           l->spec.no_bias ? "False" : "True");
    return TRUE;
  case PRUNUS_LAYER_DENSE:
    g_string_append_printf(s, "nn.Linear(%d, %d)", l->in.c, l->out.c);
    return TRUE;
  case PRUNUS_LAYER_BATCHNORM:
    g_string_append_printf(s, "nn.BatchNorm%dd(%d, eps=", rank_of(r, l->from[0]) == 4 ? 2 : 1,
                           l->in.c);
    py_float(s, l->spec.eps);
    g_string_append(s, ", momentum=");
    py_float(s, l->spec.momentum);
    g_string_append(s, ")");
    return TRUE;
  default:
    return FALSE;
  }
}

/* "vI = ..." for layer i of the forward; sets r->rank[i]. */
static void py_forward_line(GString *s, Ranks *r, int i) {
  const PrunusLayer *l = &r->m->layers[i];
  int from = l->from[0];
  g_string_append_printf(s, "        v%d = ", i);
  int rank = rank_of(r, from);
  switch (l->spec.type) {
  case PRUNUS_LAYER_CONV2D:
    g_string_append_printf(s, "m(\"%s\")(", l->name);
    py_value(s, r, from, 4);
    g_string_append(s, ")");
    rank = 4;
    break;
  case PRUNUS_LAYER_DENSE:
    g_string_append_printf(s, "m(\"%s\")(", l->name);
    py_value(s, r, from, 2);
    g_string_append(s, ")");
    rank = 2;
    break;
  case PRUNUS_LAYER_BATCHNORM:
    g_string_append_printf(s, "m(\"%s\")(", l->name);
    py_value(s, r, from, 0);
    g_string_append(s, ")");
    break;
  case PRUNUS_LAYER_RELU:
    g_string_append(s, "F.relu(");
    py_value(s, r, from, 0);
    g_string_append(s, ")");
    break;
  case PRUNUS_LAYER_MAXPOOL2D:
  case PRUNUS_LAYER_AVGPOOL2D:
    g_string_append(s, l->spec.type == PRUNUS_LAYER_MAXPOOL2D ? "F.max_pool2d(" : "F.avg_pool2d(");
    py_value(s, r, from, 4);
    g_string_append_printf(s, ", %d, %d)", l->spec.kernel,
                           l->spec.stride > 0 ? l->spec.stride : l->spec.kernel);
    rank = 4;
    break;
  case PRUNUS_LAYER_GLOBALAVGPOOL:
    py_value(s, r, from, 4);
    g_string_append(s, ".mean((2, 3), keepdim=True)");
    rank = 4;
    break;
  case PRUNUS_LAYER_FLATTEN:
    py_value(s, r, from, 2);
    rank = 2;
    break;
  case PRUNUS_LAYER_ADD:
  case PRUNUS_LAYER_CONCAT: {
    rank = merge_rank(r, l);
    gboolean add = l->spec.type == PRUNUS_LAYER_ADD;
    if (!add) g_string_append(s, "torch.cat([");
    for (int k = 0; k < l->n_in; k++) {
      if (k) g_string_append(s, add ? " + " : ", ");
      py_value(s, r, l->from[k], rank);
    }
    if (!add) g_string_append(s, "], 1)");
    break;
  }
  case PRUNUS_LAYER_N_TYPES:
    g_assert_not_reached();
  }
  g_string_append_printf(s, "  # %s: %s\n", l->name, l->ops->type_name);
  r->rank[i] = rank;
}

static const char py_loader[] =
    "def load_safetensors(path):\n"
    "    \"\"\"The tensors of a safetensors file (F32, little-endian) as a dict of name ->\n"
    "    torch.Tensor, for load_state_dict.\"\"\"\n"
    "    with open(path, \"rb\") as f:\n"
    "        blob = f.read()\n"
    "    (n,) = struct.unpack(\"<Q\", blob[:8])\n"
    "    header = json.loads(blob[8:8 + n])\n"
    "    header.pop(\"__metadata__\", None)\n"
    "    out = {}\n"
    "    for name, info in header.items():\n"
    "        if info[\"dtype\"] != \"F32\":\n"
    "            raise ValueError(f\"{path}: tensor {name} is {info['dtype']}, expected F32\")\n"
    "        a, b = info[\"data_offsets\"]\n"
    "        data = bytearray(blob[8 + n + a:8 + n + b])\n"
    "        out[name] = torch.frombuffer(data, dtype=torch.float32).reshape(info[\"shape\"])\n"
    "    return out\n"
    "\n\n"
    "def _put(root, path, module):\n"
    "    \"\"\"Register module at a dotted path, making the containers on the way, so that\n"
    "    state_dict names are the prunus layer names.\"\"\"\n"
    "    *parents, leaf = path.split(\".\")\n"
    "    for p in parents:\n"
    "        if p not in root._modules:\n"
    "            root.add_module(p, nn.Module())\n"
    "        root = root._modules[p]\n"
    "    root.add_module(leaf, module)\n";

/* (transfer full) the .py text for m. */
static char *py_text(const PrunusModel *m, GHashTable *md, const char *module_name,
                     const char *st_name, const char *source) {
  GString *s = g_string_new(NULL);
  char *arch = prunus_arch_to_string(&m->arch);
  /* a file name that is no Python identifier (my-model.py) cannot be imported by name */
  gboolean ident = g_ascii_isalpha(module_name[0]) || module_name[0] == '_';
  for (const char *c = module_name; ident && *c; c++) ident = g_ascii_isalnum(*c) || *c == '_';
  char *import = ident ? g_strdup_printf("    import %s as m\n", module_name)
                       : g_strdup_printf(
                             "    import importlib.util\n"
                             "    spec = importlib.util.spec_from_file_location(\"m\", "
                             "\"%s.py\")\n"
                             "    m = importlib.util.module_from_spec(spec)\n"
                             "    spec.loader.exec_module(m)\n",
                             module_name);
  g_string_append_printf(
      s,
      "\"\"\"%s.py: the network of %s as a torch.nn.Module, written by `prunus export\n"
      "--format safetensors` (prunus %s). Its state_dict is %s:\n"
      "\n"
      "%s"
      "    net = m.PrunusNet()\n"
      "    net.load_state_dict(m.load_safetensors(\"%s\"), strict=True)\n"
      "    logits = net.eval()(x)  # x: (N, %d, %d, %d) float32, normalised as below\n"
      "\n"
      "Inputs: pixel values u in 0..255 become u / 255 (INPUT_NORMALIZE \"unit\") or\n"
      "(u / 255 - INPUT_MEAN) / INPUT_STD (\"standard\"); None: the checkpoint did not say.\n"
      "Batchnorm layers are PyTorch's, so train() and eval() mean what they mean in prunus.\n"
      "\"\"\"\n\n"
      "import json\nimport struct\n\nimport torch\nimport torch.nn as nn\n"
      "import torch.nn.functional as F\n\n"
      "ARCHITECTURE = \"%s\"\nINPUT_SHAPE = (%d, %d, %d)\n",
      module_name, source, prunus_version(), st_name, import, st_name, m->arch.input.c,
      m->arch.input.h, m->arch.input.w, arch, m->arch.input.c, m->arch.input.h, m->arch.input.w);
  g_free(import);
  g_free(arch);
  PrunusNorm norm;
  gboolean has_norm = FALSE;
  if (md && prunus_checkpoint_metadata_norm(md, "", &norm, &has_norm, NULL) && has_norm) {
    g_string_append_printf(
        s, "INPUT_NORMALIZE = \"%s\"\nINPUT_MEAN = ", prunus_norm_kind_names[norm.kind]);
    py_float(s, norm.mean);
    g_string_append(s, "\nINPUT_STD = ");
    py_float(s, norm.std);
    g_string_append(s, "\n\n\n");
  } else {
    g_string_append(s, "INPUT_NORMALIZE = None\nINPUT_MEAN = 0.0\nINPUT_STD = 1.0\n\n\n");
  }
  g_string_append(s, py_loader);

  Ranks r = {m, g_new0(int, m->n_layers)};
  GString *fwd = g_string_new(NULL);
  for (int i = 0; i < m->n_layers; i++) py_forward_line(fwd, &r, i);
  g_string_append(s,
                  "\n\nclass PrunusNet(nn.Module):\n"
                  "    def __init__(self):\n"
                  "        super().__init__()\n");
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    GString *ctor = g_string_new(NULL);
    if (py_module(ctor, &r, l))
      g_string_append_printf(s, "        _put(self, \"%s\", %s)\n", l->name, ctor->str);
    g_string_free(ctor, TRUE);
  }
  g_string_append(s,
                  "\n    def forward(self, x):\n"
                  "        m = self.get_submodule\n");
  g_string_append(s, fwd->str);
  int last = m->n_layers - 1;
  if (r.rank[last] == 4)
    g_string_append_printf(s, "        return torch.flatten(v%d, 1)\n", last);
  else
    g_string_append_printf(s, "        return v%d\n", last);
  g_string_free(fwd, TRUE);
  g_free(r.rank);
  return g_string_free(s, FALSE);
}

/* ------------------------------------------------------------------------ */
/* entry points */

char *prunus_export_torch_py_path(const char *path) {
  char *base = g_path_get_basename(path);
  const char *dot = strrchr(base, '.');
  size_t stem = dot && dot != base ? (size_t)(dot - base) : strlen(base);
  char *dir = g_path_get_dirname(path);
  char *name = g_strdup_printf("%.*s.py", (int)stem, base);
  char *out = strcmp(dir, ".") == 0 && !strchr(path, '/') ? g_strdup(name)
                                                          : g_build_filename(dir, name, NULL);
  g_free(name), g_free(dir), g_free(base);
  return out;
}

gboolean prunus_export_torch(const PrunusModel *m, GHashTable *checkpoint_metadata,
                             const char *path, const char *source, gboolean quiet, GError **error) {
  char *py_path = prunus_export_torch_py_path(path);
  if (g_str_has_suffix(path, ".py")) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                "-o %s: the safetensors file cannot end in .py (the module "
                "definition goes next to it, under its name with .py for the extension)",
                path);
    g_free(py_path);
    return FALSE;
  }
  /* a plain sequence loses its dead units, as the C export's does; other models keep
   * their shapes, which shrinking (channel or neuron pruning) already made small */
  PrunusModel *s = NULL;
  if (prunus_model_check_plain(m, FALSE, "prunus export", NULL)) {
    s = prunus_model_shrink_dead(m, error);
    if (!s) {
      g_free(py_path);
      return FALSE;
    }
    m = s;
  }
  /* masks applied: a pruned weight is an exact 0 in the file */
  size_t n_values = m->n_params + m->n_buffers;
  float *values = g_new(float, n_values ? n_values : 1);
  memcpy(values, m->params, sizeof(float) * n_values);
  for (size_t j = 0; j < m->n_params; j++) values[j] *= m->mask[j];

  PrunusTensor *t = g_new0(PrunusTensor, 4 * (size_t)m->n_layers + 1);
  int n = 0;
  for (int i = 0; i < m->n_layers; i++) n += layer_tensors(&m->layers[i], values, t + n);

  char *module_name = g_path_get_basename(py_path);
  module_name[strlen(module_name) - 3] = '\0';
  char *st_name = g_path_get_basename(path);
  char *py = py_text(m, checkpoint_metadata, module_name, st_name, source);

  GHashTable *md = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
  g_hash_table_insert(md, "format", g_strdup("pt"));
  g_hash_table_insert(md, "producer", g_strdup_printf("prunus %s export", prunus_version()));
  g_hash_table_insert(md, "architecture", prunus_arch_to_string(&m->arch));
  g_hash_table_insert(md, "module", g_strdup_printf("%s.py", module_name));
  static const char *const norm_keys[] = {"input_normalize", "input_mean", "input_std"};
  for (size_t k = 0; checkpoint_metadata && k < G_N_ELEMENTS(norm_keys); k++) {
    const char *v = g_hash_table_lookup(checkpoint_metadata, norm_keys[k]);
    if (v) g_hash_table_insert(md, (gpointer)norm_keys[k], g_strdup(v));
  }

  gboolean ok = prunus_safetensors_write(path, t, n, md, error);
  if (ok) {
    GError *local = NULL;
    ok = g_file_set_contents(py_path, py, -1, &local);
    if (!ok) {
      g_unlink(path); /* both files or neither */
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "cannot write %s: %s", py_path,
                  local->message);
      g_error_free(local);
    }
  }
  if (ok && !quiet)
    printf("prunus export: %s (%d tensors, masks applied%s) and %s (class PrunusNet)\n", path, n,
           s ? ", dead units removed" : ", shapes as in the checkpoint", py_path);

  g_hash_table_unref(md);
  g_free(py), g_free(st_name), g_free(module_name);
  for (int i = 0; i < n; i++) g_free(t[i].name);
  g_free(t);
  g_free(values);
  prunus_model_free(s);
  g_free(py_path);
  return ok;
}
