/* resnet_layers.c: where a training step of a graph model (ResNet-20) goes, per layer
 * type: each layer's forward and backward timed through a wrapped ops table, convs'
 * backward split into weight and input gradient, plus loss, optimizer and batch fill;
 * conv GFLOP/s counted as a direct conv's 2*B*cout*Ho*Wo*cin*k*k per pass. One JSON line. */
#include "data.h"
#include "job.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the wrapped ops: each layer's own table with forward/backward timed */

#define MAX_LAYERS 256

static PrunusModel *model;
static const PrunusLayerOps *orig[MAX_LAYERS];
static PrunusLayerOps wrapped[MAX_LAYERS];
static double fwd_s[MAX_LAYERS], bwd_s[MAX_LAYERS];
static gboolean timing;

static int index_of(const PrunusLayer *l) { return (int)(l - model->layers); }

static void w_forward(const PrunusLayer *l, const float *params, const float *x, float *y,
                      float *scratch, int B) {
  int i = index_of(l);
  double t0 = now_s();
  orig[i]->forward(l, params, x, y, scratch, B);
  if (timing) fwd_s[i] += now_s() - t0;
}

static void w_backward(const PrunusLayer *l, const float *params, float *grads, const float *x,
                       const float *y, const float *dy, float *dx, float *scratch, int B) {
  int i = index_of(l);
  double t0 = now_s();
  orig[i]->backward(l, params, grads, x, y, dy, dx, scratch, B);
  if (timing) bwd_s[i] += now_s() - t0;
}

static void w_forward_n(const PrunusLayer *l, const float *params, const float *const *x, float *y,
                        float *scratch, int B) {
  int i = index_of(l);
  double t0 = now_s();
  orig[i]->forward_n(l, params, x, y, scratch, B);
  if (timing) fwd_s[i] += now_s() - t0;
}

static void w_backward_n(const PrunusLayer *l, const float *params, float *grads,
                         const float *const *x, const float *y, const float *dy, float *const *dx,
                         float *scratch, int B) {
  int i = index_of(l);
  double t0 = now_s();
  orig[i]->backward_n(l, params, grads, x, y, dy, dx, scratch, B);
  if (timing) bwd_s[i] += now_s() - t0;
}

/* the per-layer update, as prunus_train's, timed */
typedef struct {
  const PrunusTrainConfig *tc;
  PrunusTeam *team;
  double lr;
  long step;
  double opt_s;
} Update;

static void update_layer(PrunusModel *m, int layer, void *user) {
  Update *u = user;
  const PrunusLayer *l = &m->layers[layer];
  double t0 = now_s();
  prunus_optim_step_span(m, u->tc, u->lr, u->step, l->w_off, l->w_len + l->b_len,
                         prunus_train_update_flags(m, layer, FALSE, u->team));
  if (timing) u->opt_s += now_s() - t0;
}

/* A row of the report: one kind of work, its seconds per step and its FLOPs. */
typedef struct {
  const char *name;
  double s, flop;
} Row;

static Row *row(Row *rows, int *n, const char *name) {
  for (int i = 0; i < *n; i++)
    if (!strcmp(rows[i].name, name)) return &rows[i];
  rows[*n] = (Row){name, 0.0, 0.0};
  return &rows[(*n)++];
}

/* "conv3x3" (stride 1, several channels: Winograd), "conv_stem" (one input channel) or
 * "conv_strided" (strided or 1x1). */
static const char *conv_kind(const PrunusLayer *l) {
  if (l->in.c == 1) return "conv_stem";
  if (l->spec.kernel == 3 && l->spec.stride <= 1) return "conv3x3";
  return "conv_strided";
}

int main(int argc, char **argv) {
  int threads = 1, steps = 20, warmup = 5;
  char *config = NULL;
  GOptionEntry entries[] = {
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config, "config (default configs/resnet20.cfg)",
       "CFG"},
      {"threads", 't', 0, G_OPTION_ARG_INT, &threads, "training threads (default 1)", "N"},
      {"steps", 's', 0, G_OPTION_ARG_INT, &steps, "timed steps (default 20)", "S"},
      {"warmup", 'w', 0, G_OPTION_ARG_INT, &warmup, "untimed steps first (default 5)", "W"},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *ctx = g_option_context_new("- time a training step per layer type");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "resnet_layers: %s\n", error->message);
    return 2;
  }
  g_option_context_free(ctx);
  if (threads < 1 || steps < 1 || warmup < 0) {
    fprintf(stderr, "resnet_layers: --threads and --steps must be >= 1, --warmup >= 0\n");
    return 2;
  }
  PrunusJobOptions o = {
      .config_path = config ? config : "configs/resnet20.cfg", .threads = threads, .quiet = TRUE};
  PrunusJob job;
  PrunusData data = {0};
  if (!prunus_job_open(&job, &o, &error) || !prunus_data_load(&job.rc, &data, &error)) {
    fprintf(stderr, "resnet_layers: %s\n", error->message);
    return 1;
  }
  const PrunusTrainConfig *tc = &job.rc.train;
  PrunusModel *m = prunus_model_new(&job.rc.arch, tc->batch, job.rc.seed, &error);
  if (!m) {
    fprintf(stderr, "resnet_layers: %s\n", error->message);
    return 1;
  }
  if (m->n_layers > MAX_LAYERS) {
    fprintf(stderr, "resnet_layers: %d layers, at most %d\n", m->n_layers, MAX_LAYERS);
    return 1;
  }
  model = m;
  for (int i = 0; i < m->n_layers; i++) {
    orig[i] = m->layers[i].ops;
    wrapped[i] = *orig[i];
    if (orig[i]->forward) wrapped[i].forward = w_forward;
    if (orig[i]->backward) wrapped[i].backward = w_backward;
    if (orig[i]->forward_n) wrapped[i].forward_n = w_forward_n;
    if (orig[i]->backward_n) wrapped[i].backward_n = w_backward_n;
    m->layers[i].ops = &wrapped[i];
  }
  PrunusTrainSetup setup = prunus_train_begin(m, threads);
  const PrunusDataset *train = data.train;
  int B = MIN(tc->batch, train->n), K = prunus_model_n_classes(m);
  uint8_t *y = g_new(uint8_t, B);
  float *dlogits = g_new(float, (size_t)B *K);
  int *order = g_new(int, train->n);
  for (int i = 0; i < train->n; i++) order[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(job.rc.seed, "shuffle"));
  prunus_rng_shuffle(&rng, order, train->n);
  Update u = {.tc = tc, .team = setup.team};
  double fill_s = 0.0, loss_s = 0.0, total_s = 0.0;
  int correct = 0;
  for (int s = 0; s < warmup + steps; s++) {
    timing = s >= warmup;
    int start = (s * B) % MAX(1, train->n - B);
    double t0 = now_s();
    prunus_dataset_fill_batch(train, &data.norm, order + start, B, m->acts[0], y);
    double t1 = now_s();
    prunus_model_forward(m, m->acts[0], B);
    double t2 = now_s();
    prunus_softmax_xent_team(setup.team, m->acts[m->n_layers], y, B, K, dlogits, &correct);
    double t3 = now_s();
    u.lr = prunus_lr_at(tc, 0.5), u.step = s + 1;
    prunus_model_backward_each(m, dlogits, B, update_layer, &u);
    double t4 = now_s();
    if (timing) fill_s += t1 - t0, loss_s += t3 - t2, total_s += t4 - t0;
  }
  /* each conv's weight gradient alone (dx NULL), to split its backward */
  double wgrad_s[MAX_LAYERS] = {0};
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type != PRUNUS_LAYER_CONV2D) continue;
    const float *dy = m->dacts[i + 1], *x = m->acts[l->from[0] + 1];
    double t0 = now_s();
    for (int r = 0; r < steps; r++)
      orig[i]->backward(l, m->params, m->grads, x, m->acts[i + 1], dy, NULL, m->scratch[i], B);
    wgrad_s[i] = now_s() - t0;
  }

  Row rows[64];
  int n = 0;
  double layers_s = 0.0;
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    layers_s += fwd_s[i] + bwd_s[i];
    if (l->spec.type == PRUNUS_LAYER_CONV2D) {
      double flop = 2.0 * B * l->out.c * l->out.h * l->out.w * (double)l->in.c * l->spec.kernel *
                    l->spec.kernel;
      char name[48];
      const char *kind = conv_kind(l);
      g_snprintf(name, sizeof name, "%s fwd", kind);
      Row *r = row(rows, &n, g_intern_string(name));
      r->s += fwd_s[i], r->flop += flop * steps;
      g_snprintf(name, sizeof name, "%s bwd_weight", kind);
      r = row(rows, &n, g_intern_string(name));
      r->s += wgrad_s[i], r->flop += flop * steps;
      g_snprintf(name, sizeof name, "%s bwd_data", kind);
      r = row(rows, &n, g_intern_string(name));
      double data_s = bwd_s[i] - wgrad_s[i];
      r->s += data_s > 0 ? data_s : 0.0;
      if (l->from[0] != PRUNUS_LAYER_INPUT) r->flop += flop * steps;
    } else {
      char name[48];
      g_snprintf(name, sizeof name, "%s fwd", l->ops->type_name);
      row(rows, &n, g_intern_string(name))->s += fwd_s[i];
      g_snprintf(name, sizeof name, "%s bwd", l->ops->type_name);
      row(rows, &n, g_intern_string(name))->s += bwd_s[i];
    }
  }
  row(rows, &n, "softmax_xent")->s += loss_s;
  row(rows, &n, "optimizer")->s += u.opt_s;
  row(rows, &n, "fill_batch")->s += fill_s;
  double other = total_s - layers_s - loss_s - u.opt_s - fill_s;
  row(rows, &n, "other (gradient sums at fan-out, bookkeeping)")->s += other > 0 ? other : 0.0;

  printf(
      "{\"bench\":\"resnet_layers\",\"config\":\"%s\",\"threads\":%d,\"batch\":%d,\"steps\":%d,"
      "\"samples_per_second\":%.2f,\"ms_per_step\":%.3f,\"rows\":[",
      o.config_path, prunus_team_threads(setup.team), B, steps, B * steps / total_s,
      1e3 * total_s / steps);
  for (int i = 0; i < n; i++)
    printf("%s{\"name\":\"%s\",\"ms_per_step\":%.3f,\"share\":%.4f,\"gflops\":%.2f}", i ? "," : "",
           rows[i].name, 1e3 * rows[i].s / steps, rows[i].s / total_s,
           rows[i].flop > 0 && rows[i].s > 0 ? rows[i].flop / rows[i].s * 1e-9 : 0.0);
  printf("]}\n");

  for (int i = 0; i < m->n_layers; i++) m->layers[i].ops = orig[i];
  g_free(order);
  g_free(dlogits);
  g_free(y);
  prunus_train_end(m, &setup);
  prunus_model_free(m);
  prunus_data_clear(&data);
  prunus_job_close(&job);
  g_free(config);
  return 0;
}
