/* job_bench.c: `prunus bench`: every inference engine on a checkpoint at several
 * batch sizes: median latency, throughput, speed-up over dense, weight bytes, FLOPs,
 * per-layer sparsity, what `auto` picked and the layers dense/shrunk padded;
 * optionally written as JSON too. */
#include "checkpoint.h"
#include "engine.h"
#include "gemm.h"
#include "json.h"

#include <math.h>
#include <stdio.h>

typedef struct {
  PrunusEngine *e[PRUNUS_ENGINE_N_KINDS];
} EngineSet;

static void engine_set_clear(EngineSet *s) {
  for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) g_clear_pointer(&s->e[k], prunus_engine_free);
}

/* the engines are built for the largest batch asked: a model's limit */
G_STATIC_ASSERT(PRUNUS_BENCH_MAX_BATCH == PRUNUS_MODEL_MAX_BATCH);

gboolean prunus_job_bench(const char *checkpoint, const PrunusBenchOptions *o, GError **error) {
  static const int default_batches[] = {1, 32, 256};
  const int *batches = o->n_batches > 0 ? o->batches : default_batches;
  int n_batches = o->n_batches > 0 ? o->n_batches : (int)G_N_ELEMENTS(default_batches);
  int threads = o->threads > 0 ? o->threads : 1;
  double seconds = o->seconds > 0 ? o->seconds : 0.3;
  for (int i = 0; i < n_batches; i++) {
    if (batches[i] < 1 || batches[i] > PRUNUS_BENCH_MAX_BATCH) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "--batch sizes must be in 1..%d, found %d", PRUNUS_BENCH_MAX_BATCH, batches[i]);
      return FALSE;
    }
  }
  if (threads > 2) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                "--threads must be 1 or 2 (the sparse kernels use at most 2), found %d", threads);
    return FALSE;
  }
  PrunusModel *m = prunus_checkpoint_load(checkpoint, 1, NULL, NULL, error);
  if (!m) return FALSE;
  prunus_set_threads(threads);
  gboolean ok = FALSE;
  EngineSet set = {0};
  PrunusJson *root = prunus_json_new_object();
  PrunusJson *results = prunus_json_new_array();
  PrunusJson *layers = prunus_json_new_array();
  char *arch = prunus_arch_to_string(&m->arch);
  int max_b = 1;
  for (int i = 0; i < n_batches; i++) max_b = MAX(max_b, batches[i]);
  for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
    if (k == PRUNUS_ENGINE_AUTO) continue; /* built per batch size below */
    set.e[k] = prunus_engine_new(m, (PrunusEngineKind)k, max_b, error);
    if (!set.e[k]) goto out_free;
    prunus_engine_set_threads(set.e[k], threads);
  }
  PrunusEngine *dense = set.e[PRUNUS_ENGINE_DENSE];
  PrunusEngine **autos = g_new0(PrunusEngine *, n_batches);
  for (int i = 0; i < n_batches; i++) {
    autos[i] = prunus_engine_new(m, PRUNUS_ENGINE_AUTO, batches[i], error);
    if (!autos[i]) goto out_free_autos;
    prunus_engine_set_threads(autos[i], threads);
  }

  printf("prunus bench: %s\n  architecture %s, %d thread%s, median of runs over %.2fs each\n",
         checkpoint, arch, threads, threads > 1 ? "s" : "", seconds);
  printf("\n%-6s %-10s %-18s %9s", "layer", "type", "weights", "sparsity");
  for (int b = 0; b < n_batches; b++) printf("  auto@b%-4d", batches[b]);
  printf("\n");
  for (int i = 0; i < prunus_engine_n_layers(dense); i++) {
    const PrunusLayer *l = prunus_engine_layer(dense, i);
    if (!l->ops->has_params) continue;
    double sp = prunus_engine_layer_sparsity(dense, i);
    char shape[32];
    g_snprintf(shape, sizeof shape, "%dx%d", l->out.c, l->fan_in);
    printf("%-6s %-10s %-18s %9.4f", l->name, l->ops->type_name, shape, sp);
    PrunusJson *jl = prunus_json_new_object();
    prunus_json_object_set(jl, "layer", prunus_json_new_string(l->name));
    prunus_json_object_set(jl, "type", prunus_json_new_string(l->ops->type_name));
    prunus_json_object_set(jl, "rows", prunus_json_new_number(l->out.c));
    prunus_json_object_set(jl, "cols", prunus_json_new_number(l->fan_in));
    prunus_json_object_set(jl, "sparsity", prunus_json_new_number(sp));
    PrunusJson *picks = prunus_json_new_object();
    for (int b = 0; b < n_batches; b++) {
      const char *c = prunus_engine_layer_choice(autos[b], i, batches[b]);
      printf("  %-10s", c);
      char key[16];
      g_snprintf(key, sizeof key, "%d", batches[b]);
      prunus_json_object_set(picks, key, prunus_json_new_string(c));
    }
    prunus_json_object_set(jl, "auto", picks);
    prunus_json_array_add(layers, jl);
    printf("\n");
  }

  printf("\n%-8s %6s %12s %14s %9s %14s %12s\n", "engine", "batch", "latency_us", "samples/s",
         "vs_dense", "weight_bytes", "flops");
  for (int b = 0; b < n_batches; b++) {
    int B = batches[b];
    double dense_us = NAN;
    for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
      PrunusEngine *e = k == PRUNUS_ENGINE_AUTO ? autos[b] : set.e[k];
      double us = prunus_engine_latency_us(e, B, seconds, 20);
      if (k == PRUNUS_ENGINE_DENSE) dense_us = us;
      double sps = B / (us / 1e6);
      size_t bytes = prunus_engine_weight_bytes(e);
      uint64_t flops = prunus_engine_flops(e);
      printf("%-8s %6d %12.2f %14.0f %8.2fx %14zu %12" G_GUINT64_FORMAT "\n",
             prunus_engine_kind_name((PrunusEngineKind)k), B, us, sps, dense_us / us, bytes, flops);
      PrunusJson *r = prunus_json_new_object();
      prunus_json_object_set(r, "engine",
                             prunus_json_new_string(prunus_engine_kind_name((PrunusEngineKind)k)));
      prunus_json_object_set(r, "batch", prunus_json_new_number(B));
      prunus_json_object_set(r, "latency_us", prunus_json_new_number(us));
      prunus_json_object_set(r, "samples_per_second", prunus_json_new_number(sps));
      prunus_json_object_set(r, "speedup_vs_dense", prunus_json_new_number(dense_us / us));
      prunus_json_object_set(r, "weight_bytes", prunus_json_new_number((double)bytes));
      prunus_json_object_set(r, "flops", prunus_json_new_number((double)flops));
      char *pad = prunus_engine_padding_text(e);
      if (pad) prunus_json_object_set(r, "padding", prunus_json_new_string(pad));
      g_free(pad);
      prunus_json_array_add(results, r);
    }
  }
  for (int k = 0; k < PRUNUS_ENGINE_N_KINDS; k++) {
    char *pad = set.e[k] ? prunus_engine_padding_text(set.e[k]) : NULL;
    if (pad)
      printf("\n%s pads layer:units+zero rows %s (BLAS measured faster so; not in flops)\n",
             prunus_engine_kind_name((PrunusEngineKind)k), pad);
    g_free(pad);
  }
  ok = TRUE;
  if (o->json_path) {
    prunus_json_object_set(root, "checkpoint", prunus_json_new_string(checkpoint));
    prunus_json_object_set(root, "architecture", prunus_json_new_string(arch));
    prunus_json_object_set(root, "threads", prunus_json_new_number(threads));
    prunus_json_object_set(root, "dense_flops",
                           prunus_json_new_number((double)prunus_model_flops(m, FALSE)));
    prunus_json_object_set(root, "layers", layers);
    prunus_json_object_set(root, "results", results);
    layers = results = NULL;
    char *text = prunus_json_to_string(root, 2);
    ok = g_file_set_contents(o->json_path, text, -1, error);
    g_free(text);
  }

out_free_autos:
  for (int i = 0; i < n_batches; i++) prunus_engine_free(autos[i]);
  g_free(autos);
out_free:
  engine_set_clear(&set);
  if (layers) prunus_json_free(layers);
  if (results) prunus_json_free(results);
  prunus_json_free(root);
  g_free(arch);
  prunus_model_free(m);
  return ok;
}
