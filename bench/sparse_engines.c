/* sparse_engines.c: the inference engines on a trained LeNet-300-100, pruned here by
 * magnitude (per layer, smallest |w| masked) at a sweep of sparsities and by whole
 * neurons (keep 30% of hidden units by row L2 norm); latencies for 1 and 2 threads
 * measured in this one run; writes the 90%/95% pruned checkpoints and their
 * safetensors/C exports for the PyTorch side (sparse_torch.py); prints JSON.
 * Usage: sparse_engines CHECKPOINT OUTDIR [SECONDS_PER_MEASUREMENT] */
#include "checkpoint.h"
#include "csr.h"
#include "engine.h"
#include "export.h"
#include "gemm.h"
#include "json.h"
#include "shrink.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double budget = 0.25;

static int compare_abs(const void *a, const void *b) {
  float x = fabsf(*(const float *)a), y = fabsf(*(const float *)b);
  return (x > y) - (x < y);
}

static PrunusModel *copy_model(const PrunusModel *m) {
  GError *error = NULL;
  PrunusModel *c = prunus_model_shrink(m, NULL, NULL, NULL, 0, &error);
  if (!c) g_error("%s", error->message);
  return c;
}

/* Per layer: mask the `amount` fraction of weights with the smallest |w|. */
static PrunusModel *magnitude_pruned(const PrunusModel *m, double amount) {
  PrunusModel *c = copy_model(m);
  for (int i = 0; i < c->n_layers; i++) {
    const PrunusLayer *l = &c->layers[i];
    if (!l->ops->has_params) continue;
    float *w = c->params + l->w_off;
    float *sorted = g_memdup2(w, sizeof(float) * l->w_len);
    qsort(sorted, l->w_len, sizeof(float), compare_abs);
    size_t cut = (size_t)(amount * (double)l->w_len);
    if (cut >= l->w_len) cut = l->w_len - 1;
    float thr = fabsf(sorted[cut]);
    for (size_t j = 0; j < l->w_len; j++)
      c->mask[l->w_off + j] = amount > 0 && fabsf(w[j]) < thr ? 0.0f : 1.0f;
    g_free(sorted);
  }
  prunus_model_apply_mask(c);
  return c;
}

/* Keep the `keep` fraction of each hidden dense layer's neurons (largest row L2 norm);
 * the others are masked whole (dead), which the shrunk engine removes. */
static PrunusModel *neuron_pruned(const PrunusModel *m, double keep) {
  PrunusModel *c = copy_model(m);
  int last = -1;
  for (int i = 0; i < c->n_layers; i++)
    if (c->layers[i].ops->has_params) last = i;
  for (int i = 0; i < last; i++) {
    const PrunusLayer *l = &c->layers[i];
    if (!l->ops->has_params) continue;
    int units = l->out.c, fan = l->fan_in;
    float *norms = g_new(float, units), *sorted = g_new(float, units);
    for (int u = 0; u < units; u++) {
      double s = 0;
      for (int k = 0; k < fan; k++)
        s += (double)c->params[l->w_off + (size_t)u * fan + k] *
             c->params[l->w_off + (size_t)u * fan + k];
      norms[u] = sorted[u] = (float)sqrt(s);
    }
    qsort(sorted, units, sizeof(float), compare_abs);
    int n_keep = (int)ceil(keep * units);
    float thr = sorted[units - n_keep];
    for (int u = 0; u < units; u++)
      if (norms[u] < thr)
        for (int k = 0; k < fan; k++) c->mask[l->w_off + (size_t)u * fan + k] = 0.0f;
    g_free(norms), g_free(sorted);
  }
  prunus_model_apply_mask(c);
  return c;
}

static double measure(const PrunusModel *m, PrunusEngineKind kind, int B, int threads,
                      PrunusJson *rows, double sparsity, const char *what) {
  GError *error = NULL;
  PrunusEngine *e = prunus_engine_new(m, kind, B, &error);
  if (!e) g_error("%s", error->message);
  prunus_engine_set_threads(e, threads);
  double us = prunus_engine_latency_us(e, B, budget, 30);
  PrunusJson *r = prunus_json_new_object();
  prunus_json_object_set(r, "model", prunus_json_new_string(what));
  prunus_json_object_set(r, "sparsity", prunus_json_new_number(sparsity));
  prunus_json_object_set(r, "engine", prunus_json_new_string(prunus_engine_kind_name(kind)));
  prunus_json_object_set(r, "batch", prunus_json_new_number(B));
  prunus_json_object_set(r, "threads", prunus_json_new_number(threads));
  prunus_json_object_set(r, "latency_us", prunus_json_new_number(us));
  prunus_json_object_set(r, "weight_bytes",
                         prunus_json_new_number((double)prunus_engine_weight_bytes(e)));
  prunus_json_object_set(r, "flops", prunus_json_new_number((double)prunus_engine_flops(e)));
  char *pad = prunus_engine_padding_text(e);
  if (pad) prunus_json_object_set(r, "padding", prunus_json_new_string(pad));
  g_free(pad);
  if (kind == PRUNUS_ENGINE_AUTO) {
    GString *picks = g_string_new(NULL);
    for (int i = 0; i < prunus_engine_n_layers(e); i++) {
      const char *c = prunus_engine_layer_choice(e, i, B);
      if (c) g_string_append_printf(picks, "%s%s", picks->len ? "," : "", c);
    }
    prunus_json_object_set(r, "auto", prunus_json_new_string(picks->str));
    g_string_free(picks, TRUE);
  }
  prunus_json_array_add(rows, r);
  fprintf(stderr, "%-8s sparsity %.2f %-7s B=%-4d T=%d  %10.2f us\n", what, sparsity,
          prunus_engine_kind_name(kind), B, threads, us);
  prunus_engine_free(e);
  return us;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s CHECKPOINT OUTDIR [SECONDS]\n", argv[0]);
    return 2;
  }
  if (argc > 3) budget = atof(argv[3]);
  GError *error = NULL;
  PrunusModel *m = prunus_checkpoint_load(argv[1], 1, NULL, NULL, &error);
  if (!m) {
    fprintf(stderr, "%s\n", error->message);
    return 1;
  }
  const char *out = argv[2];
  g_mkdir_with_parents(out, 0755);
  PrunusJson *rows = prunus_json_new_array();
  PrunusJson *files = prunus_json_new_object();
  static const double sweep[] = {0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98};
  static const int batches[] = {1, 32, 256};
  for (size_t s = 0; s < G_N_ELEMENTS(sweep); s++) {
    PrunusModel *p = magnitude_pruned(m, sweep[s]);
    gboolean key = fabs(sweep[s] - 0.9) < 1e-9 || fabs(sweep[s] - 0.95) < 1e-9;
    for (int threads = 1; threads <= 2; threads++) {
      prunus_set_threads(threads);
      for (size_t b = 0; b < G_N_ELEMENTS(batches); b++) {
        for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
          if (!key && k != PRUNUS_ENGINE_DENSE && k != PRUNUS_ENGINE_SPARSE) continue;
          measure(p, (PrunusEngineKind)k, batches[b], threads, rows, sweep[s], "magnitude");
        }
      }
    }
    if (key) {
      char *tag = g_strdup_printf("%02d", (int)lround(sweep[s] * 100));
      char *ckpt = g_strdup_printf("%s/lenet300-sparse%s.safetensors", out, tag);
      char *st = g_strdup_printf("%s/lenet300-sparse%s-pytorch.safetensors", out, tag);
      char *cdir = g_strdup_printf("%s/lenet300-sparse%s-c", out, tag);
      size_t flash = 0;
      if (!prunus_checkpoint_save(p, ckpt, NULL, &error) ||
          !prunus_export_safetensors(p, st, TRUE, &error) ||
          !prunus_export_c(p, NULL, cdir, ckpt, TRUE, &flash, &error))
        g_error("%s", error->message);
      PrunusJson *f = prunus_json_new_object();
      prunus_json_object_set(f, "checkpoint", prunus_json_new_string(ckpt));
      prunus_json_object_set(f, "pytorch", prunus_json_new_string(st));
      prunus_json_object_set(f, "c_flash_bytes", prunus_json_new_number((double)flash));
      prunus_json_object_set(f, "dense_bytes", prunus_json_new_number(4.0 * (double)m->n_params));
      prunus_json_object_set(files, tag, f);
      g_free(tag), g_free(ckpt), g_free(st), g_free(cdir);
    }
    prunus_model_free(p);
  }
  /* neuron pruning: 30% of the hidden neurons kept */
  PrunusModel *np = neuron_pruned(m, 0.3);
  double np_sparsity =
      1.0 - (double)prunus_model_flops(np, TRUE) / (double)prunus_model_flops(np, FALSE);
  for (int threads = 1; threads <= 2; threads++) {
    prunus_set_threads(threads);
    for (size_t b = 0; b < G_N_ELEMENTS(batches); b++) {
      measure(np, PRUNUS_ENGINE_DENSE, batches[b], threads, rows, np_sparsity, "neurons30");
      measure(np, PRUNUS_ENGINE_SHRUNK, batches[b], threads, rows, np_sparsity, "neurons30");
    }
  }
  PrunusJson *neurons = prunus_json_new_object();
  prunus_json_object_set(neurons, "dense_flops",
                         prunus_json_new_number((double)prunus_model_flops(np, FALSE)));
  prunus_json_object_set(neurons, "shrunk_flops",
                         prunus_json_new_number((double)prunus_model_flops(np, TRUE)));
  prunus_model_free(np);

  PrunusJson *root = prunus_json_new_object();
  prunus_json_object_set(root, "checkpoint", prunus_json_new_string(argv[1]));
  prunus_json_object_set(root, "seconds_per_measurement", prunus_json_new_number(budget));
  prunus_json_object_set(root, "kernels",
                         prunus_json_new_string(prunus_csr_level_name(prunus_csr_level())));
  prunus_json_object_set(root, "rows", rows);
  prunus_json_object_set(root, "files", files);
  prunus_json_object_set(root, "neurons30", neurons);
  char *text = prunus_json_to_string(root, 1);
  printf("%s\n", text);
  g_free(text);
  prunus_json_free(root);
  prunus_model_free(m);
  return 0;
}
