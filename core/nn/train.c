/* train.c: the mini-batch training loop (seeded shuffling, per-step LR from the
 * schedule, per-epoch validation and callbacks) and batched evaluation. */
#include "train.h"
#include "gemm.h"
#include "rng.h"
#include "sparse_input.h"
#include "spdense.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

PrunusEvalResult prunus_evaluate(PrunusModel *m, const PrunusDataset *d, const PrunusNorm *norm,
                                 int batch) {
  PrunusEvalResult r = {0};
  if (!d || d->n == 0) {
    r.loss = r.accuracy = NAN;
    return r;
  }
  gboolean was_training = prunus_model_set_training(m, FALSE); /* running statistics */
  int B = batch > 0 ? MIN(batch, d->n) : MIN(256, d->n);
  int K = prunus_model_n_classes(m);
  size_t in = prunus_model_input_size(m);
  float *x = g_new(float, (size_t)B *in);
  uint8_t *y = g_new(uint8_t, B);
  int *idx = g_new(int, B);
  double loss_sum = 0.0;
  int correct = 0;
  for (int start = 0; start < d->n; start += B) {
    int nb = MIN(B, d->n - start);
    for (int i = 0; i < nb; i++) idx[i] = start + i;
    prunus_dataset_fill_batch(d, norm, idx, nb, x, y);
    prunus_model_forward(m, x, nb);
    loss_sum += prunus_softmax_xent(m->acts[m->n_layers], y, nb, K, NULL, &correct) * nb;
  }
  prunus_model_set_training(m, was_training);
  r.n = d->n;
  r.loss = loss_sum / d->n;
  r.accuracy = (double)correct / d->n;
  g_free(idx);
  g_free(y);
  g_free(x);
  return r;
}

/* What the per-layer optimizer step needs during backward. */
typedef struct {
  const PrunusTrainConfig *tc;
  double lr;
  long step;
  gboolean *layer_masked; /* (n_layers) some weight or bias of the layer is pruned */
  /* the next batch, written into the input slot once the first layer with parameters
   * has its gradients (nothing reads the input after that), while the slot is in cache */
  int first_layer;
  const PrunusDataset *data;
  const PrunusNorm *norm;
  const int *next_idx; /* (next_n) */
  int next_n;          /* 0: nothing to fill */
  uint8_t *next_y;     /* (next_n) */
} LayerUpdate;

/* A layer's update and (first layer) the next batch's fill, split over the team: both
 * are elementwise or per row, so any split gives the same bits. */
typedef struct {
  LayerUpdate *u;
  PrunusModel *m;
  int layer;
  gboolean fill;
  PrunusOptimFlags flags;
} UpdateCall;

static void update_part(void *arg, int part, int n_parts) {
  const UpdateCall *c = arg;
  const LayerUpdate *u = c->u;
  if (c->fill) { /* rows [a, b) of the next batch */
    int a = prunus_team_share(u->next_n, part, n_parts),
        b = prunus_team_share(u->next_n, part + 1, n_parts);
    size_t row = prunus_model_input_size(c->m);
    /* alone, this thread reads the batch next: kept in its cache; in a team the rows
     * other cores read last step are streamed (dataset.h) */
    (n_parts == 1 ? prunus_dataset_fill_batch_cached : prunus_dataset_fill_batch)(
        u->data, u->norm, u->next_idx + a, b - a, c->m->acts[0] + a * row, u->next_y + a);
  }
  const PrunusLayer *l = &c->m->layers[c->layer];
  size_t a, b;
  if (l->sparse) { /* the alive weights (kept in CSR order), then the biases */
    const PrunusSpDense *sp = l->sparse;
    prunus_team_block_share((size_t)sp->w->stored, 64, part, n_parts, &a, &b);
    if (b > a)
      prunus_optim_step_arrays(u->tc, u->lr, u->step, sp->w->val + a, sp->m1 + a, sp->m2 + a,
                               sp->grad + a, b - a);
    prunus_team_block_share(l->b_len, 16, part, n_parts, &a, &b);
    if (b > a)
      prunus_optim_step_span(c->m, u->tc, u->lr, u->step, l->b_off + a, b - a,
                             c->flags & ~PRUNUS_OPTIM_STREAM_PARAMS);
    return;
  }
  /* the bias follows the weights in the slab: one span */
  prunus_team_block_share(l->w_len + l->b_len, 16, part, n_parts, &a, &b);
  if (b > a) prunus_optim_step_span(c->m, u->tc, u->lr, u->step, l->w_off + a, b - a, c->flags);
}

PrunusOptimFlags prunus_train_update_flags(const PrunusModel *m, int layer, gboolean masked,
                                           const PrunusTeam *team) {
  PrunusOptimFlags flags = PRUNUS_OPTIM_CLEAR_GRADS;
  if (masked) flags |= PRUNUS_OPTIM_MASKED;
  if (team && layer != prunus_model_first_param_layer(m)) flags |= PRUNUS_OPTIM_STREAM_PARAMS;
  return flags;
}

static void update_layer(PrunusModel *m, int layer, void *user) {
  LayerUpdate *u = user;
  prunus_optim_add_bn_l1(m, u->tc, layer);
  PrunusTeam *team = m->layers[layer].team;
  UpdateCall c = {u, m, layer, layer == u->first_layer && u->next_n > 0,
                  prunus_train_update_flags(m, layer, u->layer_masked[layer], team)};
  prunus_team_run(team, update_part, &c);
  if (c.fill) u->next_n = 0;
}

static void set_grads_zeroed(PrunusModel *m, gboolean on) {
  for (int i = 0; i < m->n_layers; i++) m->layers[i].grads_zeroed = on;
}

/* The one layer that reads layer i's output, or -1 (none, several, or i is the output). */
static int only_reader(const PrunusModel *m, int i) {
  if (i == m->n_layers - 1) return -1;
  int reader = -1;
  for (int j = i + 1; j < m->n_layers; j++) {
    for (int k = 0; k < m->layers[j].n_in; k++) {
      if (m->layers[j].from[k] != i) continue;
      if (reader >= 0) return -1;
      reader = j;
    }
  }
  return reader;
}

/* Sparse layer -> ReLU -> sparse layer with an input gradient, each output read by the
 * next alone: linked, so the ReLU's work happens in the transposed layout (spdense.h). */
static void link_relu_chains(PrunusModel *m) {
  for (int i = 0; i < m->n_layers; i++) {
    PrunusSpDense *up = m->layers[i].sparse;
    int r = up && !up->down ? only_reader(m, i) : -1;
    if (r < 0 || m->layers[r].spec.type != PRUNUS_LAYER_RELU) continue;
    int j = only_reader(m, r);
    PrunusSpDense *down = j >= 0 ? m->layers[j].sparse : NULL;
    if (down && down->wt && !down->up) prunus_spdense_link(up, down);
  }
}

int prunus_train_attach_sparse(PrunusModel *m, double from, int max_batch, gboolean training) {
  if (!(from < 1.0)) return 0;
  int n = 0;
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayer *l = &m->layers[i];
    if (l->spec.type != PRUNUS_LAYER_DENSE || l->sparse || l->w_len == 0) continue;
    size_t zeros = 0;
    for (size_t j = 0; j < l->w_len; j++) zeros += m->mask[l->w_off + j] == 0.0f;
    if (zeros == 0 || (double)zeros < from * (double)l->w_len) continue;
    l->sparse = prunus_spdense_new(l, m->params, m->mask + l->w_off,
                                   training && prunus_model_input_grad_needed(m, i, 0), max_batch);
    if (training) prunus_spdense_keep_values(l->sparse, l, m->opt_m, m->opt_v);
    n++;
  }
  if (training) link_relu_chains(m);
  return n;
}

/* The weights and optimizer state sparse layers keep, back into the slabs. */
static void write_back_sparse(PrunusModel *m) {
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->sparse && l->sparse->values_kept)
      prunus_spdense_write_back(l->sparse, l, m->params, m->opt_m, m->opt_v);
  }
}

void prunus_train_detach_sparse(PrunusModel *m) {
  write_back_sparse(m);
  for (int i = 0; i < m->n_layers; i++) g_clear_pointer(&m->layers[i].sparse, prunus_spdense_free);
}

int prunus_train_threads_used(int threads) { return CLAMP(threads, 1, PRUNUS_TEAM_MAX_THREADS); }

PrunusTrainSetup prunus_train_begin(PrunusModel *m, int threads) {
  PrunusTrainSetup s = {.blas_threads = prunus_get_threads()};
  threads = prunus_train_threads_used(threads);
  s.team = threads > 1 ? prunus_team_new(threads) : NULL;
  if (s.team) prunus_team_pin_caller(s.team); /* else it drifts onto the helper's CPU */
  /* one-thread sgemm calls: the team splits the products itself, and a lone trainer
   * uses the one thread it was given */
  if (s.blas_threads != 1) prunus_set_threads(1);
  prunus_model_set_team(m, s.team);
  prunus_model_set_training(m, TRUE);
  prunus_model_zero_grads(m);
  set_grads_zeroed(m, TRUE);
  return s;
}

void prunus_train_end(PrunusModel *m, PrunusTrainSetup *s) {
  prunus_model_set_team(m, NULL);
  prunus_model_set_training(m, FALSE);
  set_grads_zeroed(m, FALSE);
  if (s->blas_threads != 1) prunus_set_threads(s->blas_threads);
  g_clear_pointer(&s->team, prunus_team_free);
}

/* Does dense layer i read the network's input (directly or through a flatten)? Its
 * zeros are then an image's: in runs that neighbouring features share, which the
 * sparse-input kernels need. A hidden layer's zeros (a ReLU's) fall anywhere. */
static gboolean reads_network_input(const PrunusModel *m, int i) {
  int from = m->layers[i].from[0];
  if (from >= 0 && m->layers[from].spec.type == PRUNUS_LAYER_FLATTEN)
    from = m->layers[from].from[0];
  return from == PRUNUS_LAYER_INPUT;
}

/* (transfer full) per layer, the room of the sparse-input kernels (sparse_input.h) for
 * each dense layer on the dense kernels that reads the network's input, where they run
 * at all: batches up to B of at least their smallest, on a CPU that has them. Only
 * training gets it: evaluation and the engines keep sgemm, whose W would otherwise be
 * transposed at every call. */
static float **attach_sparse_input(PrunusModel *m, int B) {
  if (B < PRUNUS_SPARSE_INPUT_MIN_BATCH || B > PRUNUS_SPARSE_INPUT_MAX_BATCH ||
      !prunus_sparse_input_available())
    return NULL;
  float **room = g_new0(float *, m->n_layers);
  for (int i = 0; i < m->n_layers; i++) {
    PrunusLayer *l = &m->layers[i];
    if (l->spec.type != PRUNUS_LAYER_DENSE || l->sparse || !reads_network_input(m, i)) continue;
    room[i] = g_new(float, prunus_dense_sparse_input_floats(l, B));
    l->sparse_input = room[i];
  }
  return room;
}

static void detach_sparse_input(PrunusModel *m, float **room) {
  for (int i = 0; room && i < m->n_layers; i++) {
    m->layers[i].sparse_input = NULL;
    g_free(room[i]);
  }
  g_free(room);
}

/* (transfer full) per layer: does the mask (fixed while training) hold a zero? */
static gboolean *layers_masked(const PrunusModel *m) {
  gboolean *masked = g_new0(gboolean, m->n_layers);
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    const float *mk = m->mask + l->w_off;
    for (size_t j = 0; j < l->w_len + l->b_len && !masked[i]; j++) masked[i] = mk[j] != 1.0f;
  }
  return masked;
}

gboolean prunus_train(PrunusModel *m, const PrunusTrainConfig *tc, const PrunusDataset *train,
                      const PrunusDataset *val, const PrunusNorm *norm, uint64_t seed,
                      const PrunusTrainOptions *opt, GError **error) {
  static const PrunusTrainOptions defaults = {0};
  if (!opt) opt = &defaults;
  if (train->n == 0) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID, "the training set is empty");
    return FALSE;
  }
  if ((size_t)train->c * train->h * train->w != prunus_model_input_size(m)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "the data has %dx%dx%d inputs but the model expects %dx%dx%d", train->c, train->h,
                train->w, m->arch.input.c, m->arch.input.h, m->arch.input.w);
    return FALSE;
  }
  int K = prunus_model_n_classes(m);
  if (train->n_classes > K) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH,
                "the data has %d classes but the model has %d outputs", train->n_classes, K);
    return FALSE;
  }
  PrunusTrainConfig sched = *tc;
  if (opt->schedule_epochs > 0) sched.epochs = opt->schedule_epochs;
  int B = MIN(tc->batch, train->n);
  int steps = (train->n + B - 1) / B;
  uint8_t *y = g_new(uint8_t, B), *y_next = g_new(uint8_t, B); /* (B) this and the next batch */
  float *dlogits = g_new(float, (size_t)B *K);                 /* (B, K) */
  int *order = g_new(int, train->n);
  for (int i = 0; i < train->n; i++) order[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "shuffle"));
  prunus_model_reserve_batch(m, B);
  LayerUpdate update = {.tc = tc, .layer_masked = layers_masked(m), .data = train, .norm = norm};
  update.first_layer = prunus_model_first_param_layer(m);
  gboolean prefill = update.first_layer >= 0; /* else no layer calls update_layer */
  /* with threads N > 1 one team of N threads runs everything that splits: the
   * products (each thread a block of C with a one-thread sgemm), the convolutions,
   * the ReLUs, the loss, the updates and the next batch's fill */
  PrunusTrainSetup setup = prunus_train_begin(m, opt->threads);
  PrunusTeam *team = setup.team;
  prunus_train_attach_sparse(m, tc->sparse_from, B, TRUE);
  float **sparse_input = attach_sparse_input(m, B);
  gboolean ok = TRUE;
  long global_step = 0;
  for (int epoch = 1; ok && epoch <= tc->epochs; epoch++) {
    prunus_rng_shuffle(&rng, order, train->n);
    gint64 t0 = g_get_monotonic_time();
    double loss_sum = 0.0, lr = tc->lr;
    int correct = 0;
    for (int s = 0; s < steps; s++) {
      int start = s * B, nb = MIN(B, train->n - start);
      float *x = m->acts[0];  /* (B, in): the batch is written where forward reads it */
      if (s == 0 || !prefill) /* else filled during the step before (update_layer) */
        (team ? prunus_dataset_fill_batch : prunus_dataset_fill_batch_cached)(
            train, norm, order + start, nb, x, y);
      prunus_model_forward(m, x, nb);
      if (prefill && s + 1 < steps) { /* the next batch: its images load while this one trains */
        update.next_idx = order + start + nb;
        update.next_n = MIN(B, train->n - start - nb);
        update.next_y = y_next;
        prunus_dataset_prefetch(train, update.next_idx, update.next_n);
      }
      double loss =
          prunus_softmax_xent_team(team, m->acts[m->n_layers], y, nb, K, dlogits, &correct);
      loss_sum += loss * nb;
      double pos = opt->epoch_offset + (epoch - 1) + (double)s / steps;
      lr = prunus_lr_at(&sched, pos);
      update.lr = lr, update.step = ++global_step;
      /* each layer is updated as soon as its gradients exist, while they are in cache */
      prunus_model_backward_each(m, dlogits, nb, update_layer, &update);
      if (prefill) { /* the labels filled during the step are the next step's */
        uint8_t *swap = y;
        y = y_next, y_next = swap;
      }
      if (opt->on_batch) {
        double elapsed = (g_get_monotonic_time() - t0) / 1e6;
        opt->on_batch(epoch, s + 1, steps, loss, (start + nb) / fmax(elapsed, 1e-9), elapsed,
                      opt->user);
      }
    }
    double seconds = (g_get_monotonic_time() - t0) / 1e6;
    /* a mean cross-entropy past DIVERGED_LOSS means logits of that size: the weights blew
     * up even where the sums stayed finite (train.lr = 1e30 reads 7e29), and every round
     * after would start from them */
    enum { DIVERGED_LOSS = 1000000 };
    if (!isfinite(loss_sum) || loss_sum / train->n > DIVERGED_LOSS) {
      char *what = isfinite(loss_sum) ? g_strdup_printf("mean loss %.3g", loss_sum / train->n)
                                      : g_strdup("loss is not finite");
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC,
                  "training diverged in epoch %d (%s); lower the learning rate "
                  "(now %g: train.lr, or in a pruning round the retrain plugin's lr)",
                  epoch, what, tc->lr);
      g_free(what);
      ok = FALSE;
      break;
    }
    PrunusEpochReport r = {
        .epoch = epoch,
        .epochs = tc->epochs,
        .train_loss = loss_sum / train->n,
        .train_accuracy = (double)correct / train->n,
        .val_loss = NAN,
        .val_accuracy = NAN,
        .seconds = seconds,
        .samples_per_second = train->n / fmax(seconds, 1e-9),
        .lr = lr,
    };
    if (val && val->n > 0) {
      PrunusEvalResult e = prunus_evaluate(m, val, norm, B);
      r.val_loss = e.loss;
      r.val_accuracy = e.accuracy;
    }
    write_back_sparse(m); /* the slabs current for the snapshot and the callbacks */
    if (opt->snapshot && epoch == opt->snapshot_epoch)
      memcpy(opt->snapshot, m->params, sizeof(float) * m->n_params);
    if (opt->on_epoch && !opt->on_epoch(&r, opt->user, error)) ok = FALSE;
  }
  prunus_train_detach_sparse(m);
  detach_sparse_input(m, sparse_input);
  prunus_train_end(m, &setup);
  g_free(update.layer_masked);
  g_free(order);
  g_free(dlogits);
  g_free(y_next);
  g_free(y);
  return ok;
}
