/* step_profile.c: where one training step's time goes. Replays prunus_train's step
 * (fill batch, forward per layer, loss, backward + optimizer update per layer) with a
 * clock around each phase, and counts the time spent inside cblas_sgemm per phase
 * (the link wraps cblas_sgemm). Diagnostic only: it prints shares, not a verdict. */
#include "data.h"
#include "gemm.h"
#include "job.h"
#include "model.h"
#include "rng.h"
#include "train.h"

#include <cblas.h>
#include <math.h>
#include <pmmintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xmmintrin.h>

/* ------------------------------------------------------------------------ */
/* the clock and the cblas_sgemm wrapper (-Wl,--wrap=cblas_sgemm) */

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double sgemm_us; /* time inside cblas_sgemm since the last reset */
static long sgemm_calls;

void __real_cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                        const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                        const blasint K, const float alpha, const float *A, const blasint lda,
                        const float *B, const blasint ldb, const float beta, float *C,
                        const blasint ldc);
void __wrap_cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                        const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                        const blasint K, const float alpha, const float *A, const blasint lda,
                        const float *B, const blasint ldb, const float beta, float *C,
                        const blasint ldc);
void __wrap_cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                        const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                        const blasint K, const float alpha, const float *A, const blasint lda,
                        const float *B, const blasint ldb, const float beta, float *C,
                        const blasint ldc) {
  double t0 = now_us();
  __real_cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  sgemm_us += now_us() - t0;
  sgemm_calls++;
}

/* ------------------------------------------------------------------------ */
/* phases */

#define MAX_PHASES 64

typedef struct {
  char name[48];
  double us;    /* wall time in the phase */
  double sgemm; /* of which inside cblas_sgemm */
} Phase;

typedef struct {
  Phase p[MAX_PHASES];
  int n;
  double t0, s0;
} Profile;

static int phase_id(Profile *pr, const char *name) {
  for (int i = 0; i < pr->n; i++)
    if (strcmp(pr->p[i].name, name) == 0) return i;
  g_assert(pr->n < MAX_PHASES);
  g_strlcpy(pr->p[pr->n].name, name, sizeof pr->p[0].name);
  return pr->n++;
}

static void phase_begin(Profile *pr) {
  pr->s0 = sgemm_us;
  pr->t0 = now_us();
}

static void phase_end(Profile *pr, int id) {
  double t = now_us();
  pr->p[id].us += t - pr->t0;
  pr->p[id].sgemm += sgemm_us - pr->s0;
}

/* Fraction of subnormal values among n floats. */
static double subnormal_share(const float *x, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += fpclassify(x[i]) == FP_SUBNORMAL;
  return n ? (double)k / n : 0.0;
}

int main(int argc, char **argv) {
  int threads = 1, epochs = 2;
  gboolean ftz = FALSE;
  char *config = NULL;
  GOptionEntry entries[] = {
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config, "config (default configs/lenet300.cfg)",
       "CFG"},
      {"threads", 't', 0, G_OPTION_ARG_INT, &threads, "Training threads (default 1)", "N"},
      {"epochs", 'e', 0, G_OPTION_ARG_INT, &epochs, "epochs; the last one is profiled (default 2)",
       "E"},
      {"ftz", 0, 0, G_OPTION_ARG_NONE, &ftz, "flush subnormals to zero (MXCSR FTZ+DAZ)", NULL},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *ctx = g_option_context_new("- time each phase of a prunus training step");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "step_profile: %s\n", error->message);
    return 2;
  }
  g_option_context_free(ctx);
  if (threads < 1 || epochs < 1) {
    fprintf(stderr, "step_profile: --threads and --epochs must be >= 1\n");
    return 2;
  }
  if (ftz) {
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  }

  PrunusJobOptions o = {
      .config_path = config ? config : "configs/lenet300.cfg", .threads = threads, .quiet = TRUE};
  PrunusJob job;
  PrunusData data = {0};
  if (!prunus_job_open(&job, &o, &error) || !prunus_data_load(&job.rc, &data, &error)) {
    fprintf(stderr, "step_profile: %s\n", error->message);
    return 1;
  }
  const PrunusTrainConfig *tc = &job.rc.train;
  PrunusModel *m = prunus_model_new(&job.rc.arch, tc->batch, job.rc.seed, &error);
  if (!m) {
    fprintf(stderr, "step_profile: %s\n", error->message);
    return 1;
  }
  if (!prunus_model_is_sequence(m)) { /* the replay below walks acts[i] -> acts[i + 1] */
    fprintf(stderr, "step_profile: %s is a graph model; this profile replays sequences only\n",
            o.config_path);
    return 1;
  }
  /* as prunus_train: with N > 1 threads the layers split their kernels and products
   * and the loss over a team (the per-layer update and the fill are not split here),
   * and each update zeroes the gradients it used so that the next backward adds onto
   * them */
  PrunusTrainSetup setup = prunus_train_begin(m, threads);
  PrunusTeam *team = setup.team;
  const PrunusDataset *train = data.train;
  int B = MIN(tc->batch, train->n), K = prunus_model_n_classes(m);
  int steps = (train->n + B - 1) / B;
  uint8_t *y = g_new(uint8_t, B);
  float *dlogits = g_new(float, (size_t)B *K);
  int *order = g_new(int, train->n);
  for (int i = 0; i < train->n; i++) order[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(job.rc.seed, "shuffle"));

  Profile pr = {0};
  int id_fill = phase_id(&pr, "fill_batch");
  int id_fwd[64], id_bwd[64];
  g_assert(m->n_layers <= 64);
  for (int i = 0; i < m->n_layers; i++) {
    char name[48];
    g_snprintf(name, sizeof name, "forward %d %s", i, m->layers[i].ops->type_name);
    id_fwd[i] = phase_id(&pr, name);
  }
  int id_xent = phase_id(&pr, "softmax_xent");
  int id_opt[64];
  for (int i = m->n_layers - 1; i >= 0; i--) {
    char name[48];
    g_snprintf(name, sizeof name, "backward %d %s", i, m->layers[i].ops->type_name);
    id_bwd[i] = phase_id(&pr, name);
    g_snprintf(name, sizeof name, "update %d %s", i, m->layers[i].ops->type_name);
    id_opt[i] = phase_id(&pr, name);
  }
  gboolean *masked = g_new0(gboolean, m->n_layers); /* a dense model: no mask reads */

  long global_step = 0;
  double epoch_us = 0.0;
  int correct = 0;
  for (int epoch = 1; epoch <= epochs; epoch++) {
    gboolean timed = epoch == epochs;
    if (timed) { /* the earlier epochs are warm-up */
      sgemm_calls = 0;
      for (int i = 0; i < pr.n; i++) pr.p[i].us = pr.p[i].sgemm = 0.0;
    }
    prunus_rng_shuffle(&rng, order, train->n);
    double e0 = now_us();
    for (int s = 0; s < steps; s++) {
      int start = s * B, nb = MIN(B, train->n - start);
      phase_begin(&pr);
      prunus_dataset_fill_batch(train, &data.norm, order + start, nb, m->acts[0], y);
      phase_end(&pr, id_fill);
      /* prunus_model_forward, a layer at a time */
      for (int i = 0; i < m->n_layers; i++) {
        const PrunusLayer *l = &m->layers[i];
        phase_begin(&pr);
        l->ops->forward(l, m->params, m->acts[i], m->acts[i + 1], m->scratch[i], nb);
        phase_end(&pr, id_fwd[i]);
      }
      phase_begin(&pr);
      prunus_softmax_xent_team(team, m->acts[m->n_layers], y, nb, K, dlogits, &correct);
      phase_end(&pr, id_xent);
      /* prunus_model_backward_each + prunus_train's per-layer update, a layer at a time */
      double lr = prunus_lr_at(tc, (epoch - 1) + (double)s / steps);
      global_step++;
      int first = prunus_model_first_param_layer(m);
      if (first < 0) first = m->n_layers - 1;
      const float *dy = dlogits;
      for (int i = m->n_layers - 1; i >= first; i--) {
        const PrunusLayer *l = &m->layers[i];
        float *dx = i > first ? m->dacts[i] : NULL;
        phase_begin(&pr);
        l->ops->backward(l, m->params, m->grads, m->acts[i], m->acts[i + 1], dy, dx, m->scratch[i],
                         nb);
        phase_end(&pr, id_bwd[i]);
        if (l->ops->has_params) {
          phase_begin(&pr);
          prunus_optim_step_span(m, tc, lr, global_step, l->w_off, l->w_len + l->b_len,
                                 prunus_train_update_flags(m, i, masked[i], team));
          phase_end(&pr, id_opt[i]);
        }
        dy = dx;
      }
    }
    epoch_us = now_us() - e0;
  }

  double total = 0.0, total_sgemm = 0.0;
  for (int i = 0; i < pr.n; i++) total += pr.p[i].us, total_sgemm += pr.p[i].sgemm;
  printf(
      "step_profile: %s, batch %d, %d thread(s)%s, last of %d epochs: %.0f samples/s, "
      "%.1f us/step (%.1f us/step inside cblas_sgemm = %.1f%%, %ld calls)\n",
      o.config_path, B, prunus_team_threads(team), ftz ? ", FTZ+DAZ" : "", epochs,
      train->n / (epoch_us / 1e6), epoch_us / steps, total_sgemm / steps,
      100.0 * total_sgemm / total, sgemm_calls);
  printf("%-26s %10s %7s %12s\n", "phase", "us/step", "share", "sgemm us");
  for (int i = 0; i < pr.n; i++) {
    if (pr.p[i].us / steps < 0.05) continue;
    printf("%-26s %10.1f %6.1f%% %12.1f\n", pr.p[i].name, pr.p[i].us / steps,
           100.0 * pr.p[i].us / total, pr.p[i].sgemm / steps);
  }
  /* subnormal operands would slow every kernel; count them in what the step touches */
  double sub_act = 0.0, sub_dact = 0.0;
  size_t act_n = 0;
  for (int i = 1; i < m->n_layers; i++) {
    size_t n = (size_t)B * prunus_shape_size(m->layers[i].in);
    sub_act += subnormal_share(m->acts[i], n) * n;
    sub_dact += subnormal_share(m->dacts[i], n) * n;
    act_n += n;
  }
  printf(
      "subnormal share after training: params %.2e, grads %.2e, momentum %.2e, "
      "activations %.2e, activation grads %.2e\n",
      subnormal_share(m->params, m->n_params), subnormal_share(m->grads, m->n_params),
      subnormal_share(m->opt_m, m->n_params), sub_act / fmax(act_n, 1), sub_dact / fmax(act_n, 1));

  g_free(order);
  g_free(dlogits);
  g_free(y);
  g_free(masked);
  prunus_train_end(m, &setup);
  prunus_model_free(m);
  prunus_data_clear(&data);
  prunus_job_close(&job);
  g_free(config);
  return 0;
}
