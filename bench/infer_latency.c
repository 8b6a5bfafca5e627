/* infer_latency.c: prunus's side of bench/infer_resnet.py: one inference engine on a
 * checkpoint (a graph such as ResNet-20: batchnorm folded, the plan's few buffers),
 * latency per batch size timed by the wall clock and by the process's CPU clock (the
 * lowest mean over rounds of calls: other processes only add time); prints one JSON line
 * with the model's FLOPs per sample (prunus_model_flops) and conv channel counts.
 * Run by bench/infer_resnet.py and bench/structured_latency.py.
 * Usage: infer_latency CHECKPOINT [--engine dense] [--batches 1,256] [--rounds 5]
 *        [--seconds 0.5] [--isa avx2] [--lanes 8|16]
 * (--lanes: channels per vector of the AVX-512 conv forwards; default: per layer) */
#include "checkpoint.h"
#include "conv_wino.h"
#include "engine.h"
#include "gemm.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_us(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  const char *engine = "dense", *batches_text = "1,256";
  int rounds = 5;
  double seconds = 0.5;
  if (argc < 2) {
    fprintf(stderr,
            "usage: infer_latency CHECKPOINT [--engine E] [--batches 1,256] "
            "[--rounds N] [--seconds S]\n");
    return 2;
  }
  for (int a = 2; a + 1 < argc; a += 2) {
    if (!strcmp(argv[a], "--engine"))
      engine = argv[a + 1];
    else if (!strcmp(argv[a], "--batches"))
      batches_text = argv[a + 1];
    else if (!strcmp(argv[a], "--rounds"))
      rounds = atoi(argv[a + 1]);
    else if (!strcmp(argv[a], "--seconds"))
      seconds = atof(argv[a + 1]);
    else if (!strcmp(argv[a], "--isa") && !strcmp(argv[a + 1], "avx2"))
      prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX2); /* the AVX2 kernels on AVX-512 CPUs */
    else if (!strcmp(argv[a], "--isa") && !strcmp(argv[a + 1], "avx512"))
      prunus_conv_wino_limit_isa(PRUNUS_CONV_ISA_AVX512);
    else if (!strcmp(argv[a], "--lanes") &&
             (!strcmp(argv[a + 1], "8") || !strcmp(argv[a + 1], "16")))
      prunus_conv_force_lanes(atoi(argv[a + 1]) == 8 ? PRUNUS_CONV_LANES_8 : PRUNUS_CONV_LANES_16);
    else {
      fprintf(stderr, "infer_latency: unknown option %s\n", argv[a]);
      return 2;
    }
  }
  PrunusEngineKind kind;
  if (!prunus_engine_kind_from_name(engine, &kind)) {
    fprintf(stderr, "infer_latency: unknown engine %s\n", engine);
    return 2;
  }
  prunus_set_threads(1);
  GError *error = NULL;
  PrunusModel *m = prunus_checkpoint_load(argv[1], 1, NULL, NULL, &error);
  if (!m) {
    fprintf(stderr, "infer_latency: %s\n", error->message);
    return 1;
  }
  char **parts = g_strsplit(batches_text, ",", -1);
  int max_b = 1;
  for (char **p = parts; *p; p++) max_b = MAX(max_b, atoi(*p));
  PrunusEngine *e = prunus_engine_new(m, kind, max_b, &error);
  if (!e) {
    fprintf(stderr, "infer_latency: %s\n", error->message);
    return 1;
  }
  size_t in = prunus_model_input_size(m);
  int K = prunus_model_n_classes(m);
  float *x = g_new(float, (size_t)max_b *in), *y = g_new(float, (size_t)max_b *K);
  PrunusRng rng;
  prunus_rng_seed(&rng, 1);
  for (size_t i = 0; i < (size_t)max_b * in; i++) x[i] = (float)prunus_rng_normal(&rng);
  printf(
      "{\"engine\": \"%s\", \"activation_floats\": %zu, \"weight_bytes\": %zu, "
      "\"flops\": %" G_GUINT64_FORMAT ", \"channels\": [",
      engine, prunus_engine_activation_floats(e), prunus_engine_weight_bytes(e),
      prunus_model_flops(m, FALSE));
  gboolean first = TRUE;
  for (int i = 0; i < m->n_layers; i++) {
    if (m->layers[i].spec.type != PRUNUS_LAYER_CONV2D) continue;
    printf("%s%d", first ? "" : ", ", m->layers[i].out.c);
    first = FALSE;
  }
  printf("], \"latency\": {");
  for (char **p = parts; *p; p++) {
    int B = atoi(*p);
    for (int w = 0; w < 3; w++) prunus_engine_forward(e, x, B, y);
    double t0 = clock_us(CLOCK_MONOTONIC);
    prunus_engine_forward(e, x, B, y);
    double one = clock_us(CLOCK_MONOTONIC) - t0;
    int calls = (int)CLAMP(seconds * 1e6 / MAX(one, 1.0) / rounds, 1, 100000);
    double best_wall = G_MAXDOUBLE, best_cpu = G_MAXDOUBLE;
    for (int r = 0; r < rounds; r++) {
      double w0 = clock_us(CLOCK_MONOTONIC), c0 = clock_us(CLOCK_PROCESS_CPUTIME_ID);
      for (int c = 0; c < calls; c++) prunus_engine_forward(e, x, B, y);
      best_wall = MIN(best_wall, (clock_us(CLOCK_MONOTONIC) - w0) / calls);
      best_cpu = MIN(best_cpu, (clock_us(CLOCK_PROCESS_CPUTIME_ID) - c0) / calls);
    }
    printf("%s\"%d\": {\"wall_us\": %.2f, \"cpu_us\": %.2f, \"calls\": %d}", p == parts ? "" : ", ",
           B, best_wall, best_cpu, calls);
  }
  printf("}}\n");
  g_strfreev(parts);
  g_free(x), g_free(y);
  prunus_engine_free(e);
  prunus_model_free(m);
  return 0;
}
