/* test_train.c: unit tests for core/optim.c and core/train.c: LR schedules and
 * optimizer steps against hand-computed numbers, training a small MLP to a stated
 * accuracy, determinism, masks surviving training, evaluation, divergence. */
#include "train.h"
#include "spdense.h"
#include "gemm.h"
#include "rng.h"
#include "sparse_input.h"
#include "csr.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// Helpers

/* |got - want| <= tol * max(1, |want|), with both printed on failure. */
#define assert_close(got, want, tol)                                               \
  do {                                                                             \
    double g_ = (got), w_ = (want);                                                \
    if (!(fabs(g_ - w_) <= (tol)*fmax(1.0, fabs(w_))))                             \
      g_error("%s = %.12g, expected %.12g (tol %g)", #got, g_, w_, (double)(tol)); \
  } while (0)

/* 1 x side x side uint8 images of 4 classes: class k makes quadrant k (row-major:
 * top-left, top-right, bottom-left, bottom-right) bright (mean 170) on a dark
 * background (mean 70); every pixel gets Gaussian noise of sd `noise`. */
static PrunusDataset *quadrant_dataset(int n, int side, double noise, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  size_t row = (size_t)side * side;
  uint8_t *img = g_new(uint8_t, n * row), *lab = g_new(uint8_t, n);
  int half = side / 2;
  for (int i = 0; i < n; i++) {
    int k = (int)prunus_rng_below(&r, 4);
    lab[i] = (uint8_t)k;
    for (int y = 0; y < side; y++)
      for (int x = 0; x < side; x++) {
        int q = (y >= half) * 2 + (x >= half);
        double v = (q == k ? 170.0 : 70.0) + noise * prunus_rng_normal(&r);
        img[i * row + (size_t)y * side + x] = (uint8_t)CLAMP(lround(v), 0, 255);
      }
  }
  PrunusDataset *d = prunus_dataset_new_from_data(n, 1, side, side, 4, img, lab);
  g_free(img);
  g_free(lab);
  return d;
}

static PrunusLayerSpec mlp_layers[] = {
    {.type = PRUNUS_LAYER_FLATTEN},
    {.type = PRUNUS_LAYER_DENSE, .units = 16},
    {.type = PRUNUS_LAYER_RELU},
    {.type = PRUNUS_LAYER_DENSE, .units = 4},
};

/* flatten | dense 16 | relu | dense 4 over 1x4x4 inputs. */
static PrunusArch mlp_arch(void) {
  return (PrunusArch){.input = {1, 4, 4},
                      .n_classes = 4,
                      .n_layers = G_N_ELEMENTS(mlp_layers),
                      .layers = mlp_layers,
                      .init = PRUNUS_INIT_KAIMING};
}

static PrunusTrainConfig mlp_train_config(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.epochs = 4;
  tc.batch = 32;
  tc.lr = 0.05;
  tc.momentum = 0.9;
  tc.lr_schedule = PRUNUS_LR_COSINE;
  return tc;
}

/* PrunusEpochFn that records the last report. */
static gboolean keep_report(const PrunusEpochReport *r, void *user, GError **error) {
  (void)error;
  *(PrunusEpochReport *)user = *r;
  return TRUE;
}

// ----------------------------------------------------------------------------
// LR schedules

static void test_lr_constant(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.1;
  tc.epochs = 5;
  g_assert_cmpfloat(prunus_lr_at(&tc, 0.0), ==, 0.1);
  g_assert_cmpfloat(prunus_lr_at(&tc, 2.5), ==, 0.1);
  g_assert_cmpfloat(prunus_lr_at(&tc, 5.0), ==, 0.1);
}

static void test_lr_step(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 1.0;
  tc.epochs = 6;
  tc.lr_schedule = PRUNUS_LR_STEP;
  tc.step_size = 2;
  tc.gamma = 0.1;
  /* lr * gamma^floor(epoch / step_size) */
  assert_close(prunus_lr_at(&tc, 0.0), 1.0, 1e-12);
  assert_close(prunus_lr_at(&tc, 1.9), 1.0, 1e-12);
  assert_close(prunus_lr_at(&tc, 2.0), 0.1, 1e-12);
  assert_close(prunus_lr_at(&tc, 4.5), 0.01, 1e-12);
}

static void test_lr_cosine(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.2;
  tc.epochs = 10;
  tc.lr_schedule = PRUNUS_LR_COSINE;
  /* lr/2 * (1 + cos(pi t / T)) */
  assert_close(prunus_lr_at(&tc, 0.0), 0.2, 1e-12);
  assert_close(prunus_lr_at(&tc, 2.5), 0.1 * (1.0 + 0.70710678118654752), 1e-12);
  assert_close(prunus_lr_at(&tc, 5.0), 0.1, 1e-12);
  assert_close(prunus_lr_at(&tc, 10.0), 0.0, 1e-12);
  assert_close(prunus_lr_at(&tc, 12.0), 0.0, 1e-12); /* clamped past the end */
}

static void test_lr_warmup(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.1;
  tc.epochs = 10;
  tc.warmup_epochs = 2.0;
  /* Linear ramp lr * t / warmup for t < warmup, then the schedule. */
  double first = prunus_lr_at(&tc, 0.0);
  g_assert_cmpfloat(first, >, 0.0); /* the first step moves, but barely */
  g_assert_cmpfloat(first, <=, 0.1 * 1e-3);
  assert_close(prunus_lr_at(&tc, 0.5), 0.025, 1e-12);
  assert_close(prunus_lr_at(&tc, 1.0), 0.05, 1e-12);
  assert_close(prunus_lr_at(&tc, 2.0), 0.1, 1e-12);
  assert_close(prunus_lr_at(&tc, 7.0), 0.1, 1e-12);
  /* Warm-up multiplies the cosine value: at t = 1, 0.1 * 0.5(1 + cos(pi/10)) * 1/2. */
  tc.lr_schedule = PRUNUS_LR_COSINE;
  assert_close(prunus_lr_at(&tc, 1.0), 0.1 * 0.5 * (1.0 + 0.95105651629515357) * 0.5, 1e-12);
  assert_close(prunus_lr_at(&tc, 5.0), 0.05, 1e-12);
}

// ----------------------------------------------------------------------------
// Optimizer steps on a 3-parameter slab

typedef struct {
  PrunusModel m; /* only the slabs and n_params are set: all prunus_optim_step reads */
  float p[3], g[3], mask[3], m1[3], m2[3];
} Slab;

static const double P0[3] = {1.0, -2.0, 0.5};
static const double G1[3] = {0.1, 0.3, -0.2};
static const double G2[3] = {-0.4, 0.05, 0.25};

static void slab_init(Slab *s) {
  memset(s, 0, sizeof *s);
  s->m.n_params = 3;
  s->m.params = s->p;
  s->m.grads = s->g;
  s->m.mask = s->mask;
  s->m.opt_m = s->m1;
  s->m.opt_v = s->m2;
  for (int i = 0; i < 3; i++) {
    s->p[i] = (float)P0[i];
    s->mask[i] = 1.0f;
  }
}

static void slab_step(Slab *s, const PrunusTrainConfig *tc, const double *g, long step) {
  for (int i = 0; i < 3; i++) s->g[i] = (float)g[i];
  prunus_optim_step(&s->m, tc, tc->lr, step);
}

static void assert_slab(const Slab *s, const double *want, const char *label) {
  for (int i = 0; i < 3; i++) {
    if (!(fabs(s->p[i] - want[i]) <= 1e-6 * fmax(1.0, fabs(want[i]))))
      g_error("%s: p[%d] = %.9g, expected %.9g", label, i, s->p[i], want[i]);
  }
}

/* prunus_optim_step_span's flags change how, not what: over a span of 1000 (several
 * 256-blocks, a tail, an odd start so that streamed stores begin unaligned), SGD
 * Nesterov with a mask and Adam give the same bits with CLEAR_GRADS and STREAM_PARAMS
 * as without, and CLEAR_GRADS leaves the span's gradients zero. */
static void test_optim_span_flags(void) {
  enum { N = 1003, OFF = 3, LEN = 1000 };
  PrunusTrainConfig sgd = prunus_train_config_default(), adam = sgd;
  sgd.lr = 0.05, sgd.momentum = 0.9, sgd.nesterov = TRUE, sgd.weight_decay = 1e-4;
  adam.optimizer = PRUNUS_OPT_ADAM, adam.lr = 1e-3;
  const PrunusTrainConfig *configs[] = {&sgd, &adam};
  for (int c = 0; c < 2; c++) {
    float *slab[2][5]; /* per run: params, grads, mask, m1, m2 */
    PrunusModel m[2];
    for (int run = 0; run < 2; run++) {
      PrunusRng r;
      prunus_rng_seed(&r, 29);
      for (int k = 0; k < 5; k++) {
        slab[run][k] = g_new(float, N);
        for (int i = 0; i < N; i++)
          slab[run][k][i] = k == 2   ? (float)(prunus_rng_next(&r) % 4 != 0)
                            : k == 4 ? (float)prunus_rng_uniform(&r)
                                     : (float)prunus_rng_normal(&r);
      }
      m[run] = (PrunusModel){.n_params = N,
                             .params = slab[run][0],
                             .grads = slab[run][1],
                             .mask = slab[run][2],
                             .opt_m = slab[run][3],
                             .opt_v = slab[run][4]};
    }
    for (long step = 1; step <= 3; step++) {
      memcpy(slab[1][1], slab[0][1], sizeof(float) * N); /* the same gradients */
      prunus_optim_step_span(&m[0], configs[c], configs[c]->lr, step, OFF, LEN,
                             PRUNUS_OPTIM_MASKED);
      prunus_optim_step_span(
          &m[1], configs[c], configs[c]->lr, step, OFF, LEN,
          PRUNUS_OPTIM_MASKED | PRUNUS_OPTIM_CLEAR_GRADS | PRUNUS_OPTIM_STREAM_PARAMS);
      for (int k = 0; k < 5; k++)
        if (k != 1) g_assert_cmpmem(slab[0][k], sizeof(float) * N, slab[1][k], sizeof(float) * N);
      for (int i = 0; i < N; i++)
        g_assert_cmpfloat(slab[1][1][i], ==, i >= OFF && i < OFF + LEN ? 0.0f : slab[0][1][i]);
    }
    for (int run = 0; run < 2; run++)
      for (int k = 0; k < 5; k++) g_free(slab[run][k]);
  }
}

static void test_sgd_plain(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.1;
  Slab s;
  slab_init(&s);
  double want[3];
  slab_step(&s, &tc, G1, 1);
  for (int i = 0; i < 3; i++) want[i] = P0[i] - 0.1 * G1[i];
  assert_slab(&s, want, "sgd step 1");
  slab_step(&s, &tc, G2, 2);
  for (int i = 0; i < 3; i++) want[i] = P0[i] - 0.1 * G1[i] - 0.1 * G2[i];
  assert_slab(&s, want, "sgd step 2");
}

static void test_sgd_momentum(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.1;
  tc.momentum = 0.9;
  Slab s;
  slab_init(&s);
  double want[3], buf[3];
  /* PyTorch: buf = mu * buf + g (buf starts at g); p -= lr * buf. */
  slab_step(&s, &tc, G1, 1);
  for (int i = 0; i < 3; i++) {
    buf[i] = G1[i];
    want[i] = P0[i] - 0.1 * buf[i];
  }
  assert_slab(&s, want, "momentum step 1");
  slab_step(&s, &tc, G2, 2);
  for (int i = 0; i < 3; i++) {
    buf[i] = 0.9 * buf[i] + G2[i];
    want[i] -= 0.1 * buf[i];
  }
  assert_slab(&s, want, "momentum step 2");
  /* Concretely for p[0]: 1 - 0.01 - 0.1 * (0.09 - 0.4) = 1.021. */
  assert_close(s.p[0], 1.021, 1e-6);
}

static void test_sgd_nesterov(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.1;
  tc.momentum = 0.9;
  tc.nesterov = TRUE;
  Slab s;
  slab_init(&s);
  double want[3], buf[3];
  /* PyTorch: buf = mu * buf + g; p -= lr * (g + mu * buf). */
  slab_step(&s, &tc, G1, 1);
  for (int i = 0; i < 3; i++) {
    buf[i] = G1[i];
    want[i] = P0[i] - 0.1 * (G1[i] + 0.9 * buf[i]);
  }
  assert_slab(&s, want, "nesterov step 1");
  slab_step(&s, &tc, G2, 2);
  for (int i = 0; i < 3; i++) {
    buf[i] = 0.9 * buf[i] + G2[i];
    want[i] -= 0.1 * (G2[i] + 0.9 * buf[i]);
  }
  assert_slab(&s, want, "nesterov step 2");
  /* p[0]: 1 - 0.1*(0.1+0.09) = 0.981; buf = -0.31; 0.981 - 0.1*(-0.4 - 0.279) = 1.0489. */
  assert_close(s.p[0], 1.0489, 1e-6);
}

static void test_sgd_weight_decay(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.lr = 0.1;
  tc.weight_decay = 0.01;
  Slab s;
  slab_init(&s);
  double want[3];
  /* g' = g + wd * p */
  slab_step(&s, &tc, G1, 1);
  for (int i = 0; i < 3; i++) want[i] = P0[i] - 0.1 * (G1[i] + 0.01 * P0[i]);
  assert_slab(&s, want, "weight decay step 1");
  /* With momentum the decayed gradient feeds the buffer. */
  tc.momentum = 0.5;
  slab_init(&s);
  slab_step(&s, &tc, G1, 1);
  double buf[3];
  for (int i = 0; i < 3; i++) {
    buf[i] = G1[i] + 0.01 * P0[i];
    want[i] = P0[i] - 0.1 * buf[i];
  }
  assert_slab(&s, want, "weight decay + momentum step 1");
  slab_step(&s, &tc, G2, 2);
  for (int i = 0; i < 3; i++) {
    buf[i] = 0.5 * buf[i] + G2[i] + 0.01 * want[i];
    want[i] -= 0.1 * buf[i];
  }
  assert_slab(&s, want, "weight decay + momentum step 2");
}

static void test_adam(void) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.optimizer = PRUNUS_OPT_ADAM;
  tc.lr = 0.01;
  tc.beta1 = 0.9;
  tc.beta2 = 0.999;
  tc.eps = 1e-8;
  for (int wd = 0; wd < 2; wd++) {
    tc.weight_decay = wd ? 0.1 : 0.0;
    Slab s;
    slab_init(&s);
    double want[3], m1[3] = {0}, m2[3] = {0};
    const double *gs[2] = {G1, G2};
    for (int t = 1; t <= 2; t++) {
      slab_step(&s, &tc, gs[t - 1], t);
      for (int i = 0; i < 3; i++) {
        double p = t == 1 ? P0[i] : want[i];
        double g = gs[t - 1][i] + tc.weight_decay * p;
        m1[i] = 0.9 * m1[i] + 0.1 * g;
        m2[i] = 0.999 * m2[i] + 0.001 * g * g;
        double mhat = m1[i] / (1.0 - pow(0.9, t));
        double vhat = m2[i] / (1.0 - pow(0.999, t));
        want[i] = p - 0.01 * mhat / (sqrt(vhat) + 1e-8);
      }
      char label[64];
      g_snprintf(label, sizeof label, "adam wd=%g step %d", tc.weight_decay, t);
      assert_slab(&s, want, label);
    }
    if (wd == 0) {
      /* Step 1 of Adam moves every parameter by lr * sign(g) (up to eps). */
      slab_init(&s);
      slab_step(&s, &tc, G1, 1);
      for (int i = 0; i < 3; i++) assert_close(s.p[i], P0[i] - 0.01 * (G1[i] > 0 ? 1 : -1), 1e-6);
    }
  }
}

static void test_optim_mask(void) {
  const PrunusOptimizer opts[2] = {PRUNUS_OPT_SGD, PRUNUS_OPT_ADAM};
  for (int o = 0; o < 2; o++) {
    PrunusTrainConfig tc = prunus_train_config_default();
    tc.optimizer = opts[o];
    tc.lr = 0.1;
    tc.momentum = 0.9;
    tc.nesterov = TRUE;
    tc.weight_decay = 0.01;
    Slab s;
    slab_init(&s);
    s.mask[1] = 0.0f;
    s.p[1] = 0.0f;
    slab_step(&s, &tc, G1, 1);
    slab_step(&s, &tc, G2, 2);
    g_assert_cmpfloat(s.p[1], ==, 0.0f);
    g_assert_cmpfloat(s.m1[1], ==, 0.0f); /* no state builds up behind a mask */
    g_assert_cmpfloat(s.m2[1], ==, 0.0f);
    g_assert_cmpfloat(s.p[0], !=, (float)P0[0]);
    prunus_optim_reset(&s.m);
    for (int i = 0; i < 3; i++) g_assert_cmpfloat(s.m1[i] + s.m2[i], ==, 0.0f);
  }
}

// ----------------------------------------------------------------------------
// Training

static PrunusModel *train_mlp(uint64_t seed, const PrunusDataset *train, const PrunusDataset *val,
                              const PrunusNorm *norm, PrunusEpochReport *last) {
  PrunusArch arch = mlp_arch();
  PrunusTrainConfig tc = mlp_train_config();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, tc.batch, seed, &error);
  g_assert_no_error(error);
  PrunusTrainOptions opt = {.on_epoch = keep_report, .user = last};
  g_assert_true(prunus_train(m, &tc, train, val, norm, seed, &opt, &error));
  g_assert_no_error(error);
  return m;
}

static void test_train_quadrants(void) {
  PrunusDataset *train = quadrant_dataset(800, 4, 45.0, 1);
  PrunusDataset *val = quadrant_dataset(200, 4, 45.0, 2);
  PrunusDataset *test = quadrant_dataset(400, 4, 45.0, 3);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusArch arch = mlp_arch();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, 32, 7, &error);
  g_assert_no_error(error);
  PrunusEvalResult before = prunus_evaluate(m, test, &norm, 64);
  PrunusEpochReport last = {0};
  PrunusTrainConfig tc = mlp_train_config();
  PrunusTrainOptions opt = {.on_epoch = keep_report, .user = &last};
  g_assert_true(prunus_train(m, &tc, train, val, &norm, 7, &opt, &error));
  g_assert_no_error(error);
  PrunusEvalResult after = prunus_evaluate(m, test, &norm, 64);
  g_test_message(
      "quadrants 4x4, noise sd 45: test accuracy %.4f -> %.4f, loss %.4f -> %.4f; "
      "last epoch train loss %.4f val accuracy %.4f",
      before.accuracy, after.accuracy, before.loss, after.loss, last.train_loss, last.val_accuracy);
  g_assert_cmpint(after.n, ==, 400);
  g_assert_cmpint(last.epoch, ==, tc.epochs);
  g_assert_cmpfloat(after.accuracy, >=, 0.95);
  g_assert_cmpfloat(last.val_accuracy, >=, 0.95);
  g_assert_cmpfloat(after.loss, <, 0.25);
  g_assert_cmpfloat(after.loss, <, before.loss / 4);
  /* The report is consistent with evaluating the validation set afterwards. */
  PrunusEvalResult v = prunus_evaluate(m, val, &norm, 0);
  assert_close(v.accuracy, last.val_accuracy, 1e-12);
  assert_close(v.loss, last.val_loss, 1e-9);
  prunus_model_free(m);
  prunus_dataset_free(test);
  prunus_dataset_free(val);
  prunus_dataset_free(train);
}

static void test_train_deterministic(void) {
  prunus_set_threads(1);
  PrunusDataset *train = quadrant_dataset(300, 4, 45.0, 11);
  PrunusDataset *val = quadrant_dataset(60, 4, 45.0, 12);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusEpochReport ra = {0}, rb = {0}, rc = {0};
  PrunusModel *a = train_mlp(5, train, val, &norm, &ra);
  PrunusModel *b = train_mlp(5, train, val, &norm, &rb);
  PrunusModel *c = train_mlp(6, train, val, &norm, &rc);
  g_assert_cmpuint(a->n_params, ==, 16 * 16 + 16 + 16 * 4 + 4);
  g_assert_cmpint(memcmp(a->params, b->params, sizeof(float) * a->n_params), ==, 0);
  g_assert_cmpint(memcmp(&ra.train_loss, &rb.train_loss, sizeof(double)), ==, 0);
  g_assert_cmpint(memcmp(&ra.val_loss, &rb.val_loss, sizeof(double)), ==, 0);
  g_assert_cmpint(memcmp(a->params, c->params, sizeof(float) * a->n_params), !=, 0);
  g_assert_cmpfloat(ra.train_loss, !=, rc.train_loss);
  g_test_message("seed 5: train loss %.17g; seed 6: %.17g", ra.train_loss, rc.train_loss);
  prunus_model_free(c);
  prunus_model_free(b);
  prunus_model_free(a);
  prunus_dataset_free(val);
  prunus_dataset_free(train);
}

/* The thread count is training's parameter: threads = 2 runs the layers on a team of 2,
 * threads <= 1 on the caller alone; either way OpenBLAS is at one thread while training
 * and back at its own count afterwards. */
typedef struct {
  int epochs;
  int blas_threads; /* OpenBLAS's count seen at the end of every epoch (-1: differed) */
  gboolean team;    /* the layers had a team at the end of every epoch */
  const PrunusModel *m;
} ThreadsSeen;

static gboolean see_threads(const PrunusEpochReport *r, void *user, GError **error) {
  (void)r, (void)error;
  ThreadsSeen *t = user;
  int blas = prunus_get_threads();
  t->blas_threads = t->epochs == 0 || t->blas_threads == blas ? blas : -1;
  gboolean team = TRUE;
  for (int i = 0; i < t->m->n_layers; i++) team &= t->m->layers[i].team != NULL;
  t->team = t->epochs == 0 ? team : t->team && team;
  t->epochs++;
  return TRUE;
}

static void test_train_threads_parameter(void) {
  PrunusDataset *train = quadrant_dataset(300, 4, 45.0, 31);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusArch arch = mlp_arch();
  PrunusTrainConfig tc = mlp_train_config();
  tc.epochs = 2;
  prunus_set_threads(2);
  const int blas_before = prunus_get_threads();
  g_test_message("OpenBLAS threads before training: %d", blas_before);
  PrunusModel *m[3];
  for (int threads = 0; threads <= 2; threads++) {
    GError *error = NULL;
    m[threads] = prunus_model_new(&arch, tc.batch, 9, &error);
    g_assert_no_error(error);
    ThreadsSeen seen = {.m = m[threads]};
    PrunusTrainOptions opt = {.threads = threads, .on_epoch = see_threads, .user = &seen};
    g_assert_true(prunus_train(m[threads], &tc, train, NULL, &norm, 9, &opt, &error));
    g_assert_no_error(error);
    g_assert_cmpint(seen.epochs, ==, 2);
    g_assert_cmpint(seen.blas_threads, ==, 1);
    g_assert_true(seen.team == (threads == 2));
    g_assert_cmpint(prunus_get_threads(), ==, blas_before);
    for (int i = 0; i < m[threads]->n_layers; i++) g_assert_null(m[threads]->layers[i].team);
  }
  /* 0 and 1 both mean the caller alone: the same bits; a team of 2 sums the loss per
   * part, so its weights may differ in the last bits only */
  const size_t n = m[0]->n_params;
  g_assert_cmpmem(m[0]->params, sizeof(float) * n, m[1]->params, sizeof(float) * n);
  g_assert_cmpfloat(testutil_max_rel_diff(m[1]->params, m[2]->params, n, "1 vs 2 threads"), <,
                    1e-3);
  for (int i = 0; i < 3; i++) prunus_model_free(m[i]);
  prunus_set_threads(1);
  prunus_dataset_free(train);
}

/* The θk snapshot is a step of training: after epoch 2 of 3 it holds what 2 epochs of
 * the same training give (constant LR: the schedule does not depend on the length). */
static void test_train_snapshot(void) {
  PrunusDataset *train = quadrant_dataset(300, 4, 45.0, 41);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusArch arch = mlp_arch();
  PrunusTrainConfig tc = mlp_train_config();
  tc.lr_schedule = PRUNUS_LR_CONSTANT;
  GError *error = NULL;
  PrunusModel *a = prunus_model_new(&arch, tc.batch, 4, &error);
  PrunusModel *b = prunus_model_new(&arch, tc.batch, 4, &error);
  g_assert_no_error(error);
  float *kept = g_new0(float, a->n_params);
  tc.epochs = 3;
  PrunusTrainOptions opt = {.snapshot_epoch = 2, .snapshot = kept};
  g_assert_true(prunus_train(a, &tc, train, NULL, &norm, 4, &opt, &error));
  tc.epochs = 2;
  g_assert_true(prunus_train(b, &tc, train, NULL, &norm, 4, NULL, &error));
  g_assert_no_error(error);
  g_assert_cmpmem(kept, sizeof(float) * a->n_params, b->params, sizeof(float) * b->n_params);
  g_assert_cmpint(memcmp(kept, a->params, sizeof(float) * a->n_params), !=, 0);
  g_free(kept);
  prunus_model_free(a);
  prunus_model_free(b);
  prunus_dataset_free(train);
}

static void test_train_keeps_mask(void) {
  PrunusDataset *train = quadrant_dataset(300, 4, 45.0, 21);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusArch arch = mlp_arch();
  PrunusTrainConfig tc = mlp_train_config();
  tc.weight_decay = 1e-3;
  tc.nesterov = TRUE;
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, tc.batch, 3, &error);
  g_assert_no_error(error);
  /* Prune every third weight of both dense layers, including weight 0 of layer 1. */
  size_t pruned = 0;
  for (int li = 0; li < m->n_layers; li++) {
    const PrunusLayer *l = &m->layers[li];
    for (size_t j = 0; j < l->w_len; j += 3, pruned++) m->mask[l->w_off + j] = 0.0f;
  }
  prunus_model_apply_mask(m);
  float *before = g_memdup2(m->params, sizeof(float) * m->n_params);
  g_assert_true(prunus_train(m, &tc, train, NULL, &norm, 3, NULL, &error));
  g_assert_no_error(error);
  size_t zero = 0, moved = 0;
  for (size_t i = 0; i < m->n_params; i++) {
    if (m->mask[i] == 0.0f) {
      if (m->params[i] != 0.0f) g_error("masked param %zu = %g after training", i, m->params[i]);
      zero++;
    } else if (m->params[i] != before[i]) {
      moved++;
    }
  }
  g_assert_cmpuint(zero, ==, pruned);
  g_assert_cmpuint(pruned, ==, (16 * 16 + 2) / 3 + (16 * 4 + 2) / 3);
  g_assert_cmpuint(moved, >, (m->n_params - pruned) * 9 / 10);
  g_free(before);
  prunus_model_free(m);
  prunus_dataset_free(train);
}

/* prunus_optim_step_arrays on a sparse layer's kept arrays (the alive weights in order,
 * zero padding entries between) against the masked span step on the slab, given the
 * same gradients: bit for bit the same weights and optimizer state for every
 * optimizer, and the padding entries stay zero. */
static void test_optim_arrays_match_span(void) {
  enum { N = 517 };
  PrunusTrainConfig configs[4];
  for (int c = 0; c < 4; c++) configs[c] = prunus_train_config_default(), configs[c].lr = 0.05;
  configs[1].momentum = 0.9, configs[1].weight_decay = 1e-3;
  configs[2].momentum = 0.9, configs[2].nesterov = TRUE, configs[2].weight_decay = 1e-4;
  configs[3].optimizer = PRUNUS_OPT_ADAM, configs[3].lr = 1e-3, configs[3].weight_decay = 1e-4;
  for (int c = 0; c < 4; c++) {
    float *slab[5]; /* params, grads, mask, m1, m2 */
    for (int k = 0; k < 5; k++) slab[k] = g_new0(float, N);
    PrunusModel m = {.n_params = N,
                     .params = slab[0],
                     .grads = slab[1],
                     .mask = slab[2],
                     .opt_m = slab[3],
                     .opt_v = slab[4]};
    PrunusRng r;
    prunus_rng_seed(&r, 41);
    /* the kept arrays: each alive weight's index in the slab, -1 for padding */
    int32_t *idx = g_new(int32_t, 2 * N);
    float *arr[4]; /* p, m1, m2, g */
    for (int k = 0; k < 4; k++) arr[k] = g_new0(float, 2 * N);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
      if (prunus_rng_next(&r) % 3 != 0) continue; /* two thirds pruned */
      slab[2][i] = 1.0f, slab[0][i] = (float)prunus_rng_normal(&r);
      arr[0][n] = slab[0][i], idx[n++] = i;
      if (i % 7 == 0) idx[n++] = -1;
    }
    for (long step = 1; step <= 3; step++) {
      for (int i = 0; i < N; i++) slab[1][i] = (float)prunus_rng_normal(&r);
      for (size_t j = 0; j < n; j++) arr[3][j] = idx[j] >= 0 ? slab[1][idx[j]] : 0.0f;
      prunus_optim_step_span(&m, &configs[c], configs[c].lr, step, 0, N, PRUNUS_OPTIM_MASKED);
      prunus_optim_step_arrays(&configs[c], configs[c].lr, step, arr[0], arr[1], arr[2], arr[3], n);
      for (size_t j = 0; j < n; j++) {
        if (idx[j] < 0) {
          g_assert_true(arr[0][j] == 0.0f && arr[1][j] == 0.0f && arr[2][j] == 0.0f);
          continue;
        }
        static const int slab_of[3] = {0, 3, 4};
        for (int k = 0; k < 3; k++)
          g_assert_cmpmem(&arr[k][j], sizeof(float), &slab[slab_of[k]][idx[j]], sizeof(float));
      }
    }
    g_free(idx);
    for (int k = 0; k < 4; k++) g_free(arr[k]);
    for (int k = 0; k < 5; k++) g_free(slab[k]);
  }
}

/* Sparse training (train.sparse_from below the layers' sparsity) against dense masked
 * training of the same network: the same masks, pruned weights and their optimizer
 * state exactly zero, the weights equal up to the order of float additions; one thread
 * twice gives the same bits, and so does a team of two (the sparse kernels split by
 * rows, each summed by one thread). */
static void test_train_sparse_matches_dense(void) {
  static PrunusLayerSpec layers[] = {
      {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 40},
      {.type = PRUNUS_LAYER_RELU},    {.type = PRUNUS_LAYER_DENSE, .units = 24},
      {.type = PRUNUS_LAYER_RELU},    {.type = PRUNUS_LAYER_DENSE, .units = 4}};
  PrunusArch arch = {.input = {1, 8, 8}, .n_classes = 4, .n_layers = 6, .layers = layers};
  PrunusDataset *train = quadrant_dataset(203, 8, 45.0, 12); /* a partial last batch */
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusTrainConfig tc = mlp_train_config();
  tc.epochs = 6, tc.weight_decay = 1e-4;
  enum { DENSE, SPARSE, SPARSE_AGAIN, SPARSE_TEAM, RUNS };
  PrunusModel *m[RUNS];
  for (int run = 0; run < RUNS; run++) {
    GError *error = NULL;
    m[run] = prunus_model_new(&arch, tc.batch, 5, &error);
    g_assert_no_error(error);
    PrunusRng r;
    prunus_rng_seed(&r, 6);
    for (int i = 0; i < m[run]->n_layers; i++) {
      const PrunusLayer *l = &m[run]->layers[i];
      for (size_t j = 0; j < l->w_len; j++) /* 80% of every layer pruned */
        m[run]->mask[l->w_off + j] = prunus_rng_uniform(&r) < 0.2 ? 1.0f : 0.0f;
    }
    prunus_model_apply_mask(m[run]);
    PrunusTrainConfig t = tc;
    t.sparse_from = run == DENSE ? 1.0 : 0.75;
    PrunusTrainOptions opt = {.threads = run == SPARSE_TEAM ? 2 : 1};
    g_assert_cmpint(prunus_train_attach_sparse(m[run], t.sparse_from, 8, TRUE), ==,
                    run == DENSE ? 0 : 3);
    if (run != DENSE) { /* dense -> relu -> dense chains run the ReLU transposed */
      const PrunusLayer *L = m[run]->layers;
      g_assert_true(L[1].sparse->down == L[3].sparse && L[3].sparse->up == L[1].sparse);
      g_assert_true(L[3].sparse->down == L[5].sparse && L[5].sparse->up == L[3].sparse);
      g_assert_null(L[1].sparse->up);
      g_assert_null(L[5].sparse->down);
      /* the ReLUs between run nowhere else: skipped */
      g_assert_true(prunus_model_layer_bypassed(m[run], 2) &&
                    prunus_model_layer_bypassed(m[run], 4));
      g_assert_false(prunus_model_layer_bypassed(m[run], 1) ||
                     prunus_model_layer_bypassed(m[run], 3) ||
                     prunus_model_layer_bypassed(m[run], 5));
    }
    prunus_train_detach_sparse(m[run]);
    for (int i = 0; i < m[run]->n_layers; i++)
      g_assert_false(prunus_model_layer_bypassed(m[run], i));
    g_assert_true(prunus_train(m[run], &t, train, NULL, &norm, 8, &opt, &error));
    g_assert_no_error(error);
    for (int i = 0; i < m[run]->n_layers; i++) g_assert_null(m[run]->layers[i].sparse);
  }
  const size_t n = m[DENSE]->n_params;
  size_t pruned = 0;
  for (size_t i = 0; i < n; i++) {
    if (m[DENSE]->mask[i] != 0.0f) continue;
    pruned++;
    g_assert_cmpfloat(m[SPARSE]->params[i], ==, 0.0f);
    g_assert_cmpfloat(m[SPARSE]->opt_m[i], ==, 0.0f);
  }
  g_assert_cmpuint(pruned, >, (n - 68) * 7 / 10);
  g_assert_cmpmem(m[DENSE]->mask, sizeof(float) * n, m[SPARSE]->mask, sizeof(float) * n);
  g_assert_cmpfloat(
      testutil_max_rel_diff(m[SPARSE]->params, m[DENSE]->params, n, "sparse vs dense training"), <,
      1e-4);
  g_assert_cmpmem(m[SPARSE]->params, sizeof(float) * n, m[SPARSE_AGAIN]->params, sizeof(float) * n);
  g_assert_cmpmem(m[SPARSE]->params, sizeof(float) * n, m[SPARSE_TEAM]->params, sizeof(float) * n);
  /* evaluation through the sparse forward gives the dense forward's numbers */
  PrunusEvalResult dense = prunus_evaluate(m[SPARSE], train, &norm, 32);
  g_assert_cmpint(prunus_train_attach_sparse(m[SPARSE], 0.75, 32, FALSE), ==, 3);
  PrunusEvalResult sparse = prunus_evaluate(m[SPARSE], train, &norm, 32);
  prunus_train_detach_sparse(m[SPARSE]);
  assert_close(sparse.loss, dense.loss, 1e-5);
  assert_close(sparse.accuracy, dense.accuracy, 0);
  g_assert_cmpfloat(dense.accuracy, >, 0.8); /* it learned: 4 classes, 80% pruned */
  for (int run = 0; run < RUNS; run++) prunus_model_free(m[run]);
  prunus_dataset_free(train);
}

/* The same on a graph: a branch from the input (a dense layer past the first with
 * parameters whose input gradient nobody needs), batchnorm after a sparse dense layer,
 * an add. Only the dense layers go sparse; batchnorm's scale, shift and running
 * statistics train as before, and every parameter ends within float reassociation of
 * dense training. */
static void test_train_sparse_graph(void) {
  static PrunusLayerSpec layers[] = {
      /* 0 */ {.type = PRUNUS_LAYER_FLATTEN, .name = "f"},
      /* 1 */ {.type = PRUNUS_LAYER_DENSE, .name = "a", .units = 24},
      /* 2 */ {.type = PRUNUS_LAYER_BATCHNORM, .name = "bn", .momentum = 0.1f, .eps = 1e-5f},
      /* 3 */ {.type = PRUNUS_LAYER_RELU, .name = "ra"},
      /* 4 */ {.type = PRUNUS_LAYER_DENSE, .name = "b", .units = 24, .n_inputs = 1, .inputs = {0}},
      /* 5 */ {.type = PRUNUS_LAYER_ADD, .name = "s", .n_inputs = 2, .inputs = {3, 4}},
      /* 6 */ {.type = PRUNUS_LAYER_RELU, .name = "rs"},
      /* 7 */ {.type = PRUNUS_LAYER_DENSE, .name = "c", .units = 16},
      /* 8 */ {.type = PRUNUS_LAYER_RELU, .name = "rc"},
      /* 9 */ {.type = PRUNUS_LAYER_DENSE, .name = "out", .units = 4}};
  PrunusArch arch = {.input = {1, 8, 8}, .n_classes = 4, .n_layers = 10, .layers = layers};
  PrunusDataset *train = quadrant_dataset(203, 8, 45.0, 12);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusTrainConfig tc = mlp_train_config();
  tc.epochs = 4, tc.weight_decay = 1e-4;
  enum { DENSE, SPARSE, SPARSE_AGAIN, RUNS };
  PrunusModel *m[RUNS];
  for (int run = 0; run < RUNS; run++) {
    GError *error = NULL;
    m[run] = prunus_model_new(&arch, tc.batch, 5, &error);
    g_assert_no_error(error);
    PrunusRng r;
    prunus_rng_seed(&r, 6);
    for (int i = 0; i < m[run]->n_layers; i++) {
      const PrunusLayer *l = &m[run]->layers[i];
      for (size_t j = 0; j < l->w_len; j++) /* 70% of every layer pruned */
        m[run]->mask[l->w_off + j] = prunus_rng_uniform(&r) < 0.3 ? 1.0f : 0.0f;
    }
    prunus_model_apply_mask(m[run]);
    PrunusTrainConfig t = tc;
    t.sparse_from = run == DENSE ? 1.0 : 0.5;
    g_assert_cmpint(prunus_train_attach_sparse(m[run], t.sparse_from, 8, TRUE), ==,
                    run == DENSE ? 0 : 4);
    if (run != DENSE) { /* input gradients only where the backward asks for them */
      static const int dense_layers[] = {1, 4, 7, 9};
      static const gboolean with_dx[] = {FALSE, FALSE, TRUE, TRUE};
      for (int k = 0; k < 4; k++) {
        const PrunusSpDense *sp = m[run]->layers[dense_layers[k]].sparse;
        g_assert_nonnull(sp);
        g_assert_cmpint(sp->wt != NULL, ==, with_dx[k]);
      }
      g_assert_null(m[run]->layers[2].sparse);
      /* linked only where a ReLU alone sits between: c -> rc -> out */
      g_assert_true(m[run]->layers[9].sparse->up == m[run]->layers[7].sparse);
      g_assert_null(m[run]->layers[1].sparse->down);
      g_assert_null(m[run]->layers[4].sparse->down);
      g_assert_null(m[run]->layers[7].sparse->up);
    }
    prunus_train_detach_sparse(m[run]);
    PrunusTrainOptions opt = {.threads = 1};
    g_assert_true(prunus_train(m[run], &t, train, NULL, &norm, 8, &opt, &error));
    g_assert_no_error(error);
  }
  const size_t n = m[DENSE]->n_params;
  for (size_t i = 0; i < n; i++)
    if (m[DENSE]->mask[i] == 0.0f) g_assert_cmpfloat(m[SPARSE]->params[i], ==, 0.0f);
  g_assert_cmpmem(m[DENSE]->mask, sizeof(float) * n, m[SPARSE]->mask, sizeof(float) * n);
  /* batchnorm's running statistics (buffers past the parameters) moved and agree */
  const PrunusLayer *bn = &m[DENSE]->layers[2];
  g_assert_cmpuint(bn->buf_len, ==, 48);
  g_assert_cmpfloat(fabsf(m[DENSE]->params[bn->buf_off]), >, 0.0f);
  g_assert_cmpfloat(testutil_max_rel_diff(m[SPARSE]->params, m[DENSE]->params, n,
                                          "sparse vs dense training, graph"),
                    <, 1e-3);
  g_assert_cmpmem(m[SPARSE]->params, sizeof(float) * n, m[SPARSE_AGAIN]->params, sizeof(float) * n);
  for (int run = 0; run < RUNS; run++) prunus_model_free(m[run]);
  prunus_dataset_free(train);
}

/* The plainest form of the training loop: fill, forward, loss, backward, one optimizer
 * step over the whole slab. prunus_train (per-layer updates right after each backward,
 * the next batch written during the step, mask reads skipped for unpruned layers)
 * must give the same weights bit for bit with one thread. */
static void plain_train(PrunusModel *m, const PrunusTrainConfig *tc, const PrunusDataset *train,
                        const PrunusNorm *norm, uint64_t seed) {
  int K = prunus_model_n_classes(m), B = MIN(tc->batch, train->n);
  int steps = (train->n + B - 1) / B;
  uint8_t *y = g_new(uint8_t, B);              /* (B) */
  float *dlogits = g_new(float, (size_t)B *K); /* (B, K) */
  int *order = g_new(int, train->n);
  for (int i = 0; i < train->n; i++) order[i] = i;
  PrunusRng rng;
  prunus_rng_seed(&rng, prunus_seed_derive(seed, "shuffle"));
  prunus_model_reserve_batch(m, B);
  long step = 0;
  for (int epoch = 1; epoch <= tc->epochs; epoch++) {
    prunus_rng_shuffle(&rng, order, train->n);
    for (int s = 0; s < steps; s++) {
      int start = s * B, nb = MIN(B, train->n - start);
      prunus_dataset_fill_batch(train, norm, order + start, nb, m->acts[0], y);
      prunus_model_forward(m, m->acts[0], nb);
      prunus_softmax_xent(m->acts[m->n_layers], y, nb, K, dlogits, NULL);
      prunus_model_backward(m, dlogits, nb);
      prunus_optim_step(m, tc, prunus_lr_at(tc, (epoch - 1) + (double)s / steps), ++step);
    }
  }
  g_free(order), g_free(dlogits), g_free(y);
}

/* n random c x side x side images, labels i % 4. */
static PrunusDataset *random_dataset(int n, int c, int side, uint64_t seed) {
  PrunusRng r;
  prunus_rng_seed(&r, seed);
  size_t row = (size_t)c * side * side;
  uint8_t *img = g_new(uint8_t, n * row), *lab = g_new(uint8_t, n);
  for (int i = 0; i < n; i++) {
    lab[i] = (uint8_t)(i % 4);
    for (size_t j = 0; j < row; j++) img[i * row + j] = (uint8_t)prunus_rng_below(&r, 256);
  }
  PrunusDataset *d = prunus_dataset_new_from_data(n, c, side, side, 4, img, lab);
  g_free(img), g_free(lab);
  return d;
}

static void check_matches_plain_loop(PrunusLayerSpec *layers, int n_layers, int c, int side,
                                     PrunusOptimizer optimizer, const char *label) {
  PrunusArch arch = {
      .input = {c, side, side}, .n_classes = 4, .n_layers = n_layers, .layers = layers};
  PrunusDataset *train = random_dataset(53, c, side, 5), *val = random_dataset(17, c, side, 6);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.epochs = 3, tc.batch = 8; /* 53 samples: a partial last batch of 5 */
  tc.lr = 0.01, tc.momentum = 0.9, tc.nesterov = TRUE, tc.weight_decay = 1e-3;
  tc.optimizer = optimizer, tc.lr_schedule = PRUNUS_LR_COSINE;
  GError *error = NULL;
  PrunusModel *a = prunus_model_new(&arch, tc.batch, 3, &error),
              *b = prunus_model_new(&arch, tc.batch, 3, &error);
  g_assert_no_error(error);
  /* prune every third parameter of the first layer with parameters only: the other
   * layers take the unmasked update */
  int first = 0;
  while (!a->layers[first].ops->has_params) first++;
  for (size_t j = 0; j < a->layers[first].w_len; j += 3)
    a->mask[a->layers[first].w_off + j] = b->mask[b->layers[first].w_off + j] = 0.0f;
  prunus_model_apply_mask(a), prunus_model_apply_mask(b);
  prunus_set_threads(1);
  plain_train(a, &tc, train, &norm, 42);
  g_assert_true(prunus_train(b, &tc, train, val, &norm, 42, NULL,
                             &error)); /* val: evaluation between epochs */
  g_assert_no_error(error);
  g_test_message("%s: %zu parameters", label, a->n_params);
  g_assert_cmpmem(a->params, sizeof(float) * a->n_params, b->params, sizeof(float) * b->n_params);
  prunus_model_free(a), prunus_model_free(b);
  prunus_dataset_free(train), prunus_dataset_free(val);
}

static void test_train_matches_plain_loop(void) {
  static PrunusLayerSpec conv_first[] = {
      {.type = PRUNUS_LAYER_CONV2D, .channels = 3, .kernel = 3, .stride = 1, .padding = 1},
      {.type = PRUNUS_LAYER_RELU},
      {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2},
      {.type = PRUNUS_LAYER_CONV2D, .channels = 5, .kernel = 3, .stride = 1},
      {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 4}};
  static PrunusLayerSpec flatten_first[] = {{.type = PRUNUS_LAYER_FLATTEN},
                                            {.type = PRUNUS_LAYER_DENSE, .units = 7},
                                            {.type = PRUNUS_LAYER_RELU},
                                            {.type = PRUNUS_LAYER_DENSE, .units = 4}};
  static PrunusLayerSpec pool_first[] = {
      {.type = PRUNUS_LAYER_MAXPOOL2D, .kernel = 2},
      {.type = PRUNUS_LAYER_CONV2D, .channels = 4, .kernel = 2, .stride = 1},
      {.type = PRUNUS_LAYER_FLATTEN},
      {.type = PRUNUS_LAYER_DENSE, .units = 4}};
  check_matches_plain_loop(conv_first, G_N_ELEMENTS(conv_first), 1, 10, PRUNUS_OPT_SGD,
                           "conv first, sgd");
  check_matches_plain_loop(conv_first, G_N_ELEMENTS(conv_first), 1, 10, PRUNUS_OPT_ADAM,
                           "conv first, adam");
  check_matches_plain_loop(flatten_first, G_N_ELEMENTS(flatten_first), 1, 6, PRUNUS_OPT_SGD,
                           "flatten first, sgd");
  check_matches_plain_loop(pool_first, G_N_ELEMENTS(pool_first), 2, 8, PRUNUS_OPT_ADAM,
                           "pool first, 2 channels, adam");
}

// ----------------------------------------------------------------------------
// Evaluation and divergence

static void test_evaluate_by_hand(void) {
  static PrunusLayerSpec layers[] = {{.type = PRUNUS_LAYER_FLATTEN},
                                     {.type = PRUNUS_LAYER_DENSE, .units = 2}};
  PrunusArch arch = {.input = {1, 1, 2}, .n_classes = 2, .n_layers = 2, .layers = layers};
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, 2, 0, &error);
  g_assert_no_error(error);
  const PrunusLayer *d = &m->layers[1];
  g_assert_cmpuint(d->w_len, ==, 4);
  g_assert_cmpuint(d->b_len, ==, 2);
  /* W = identity (out, in), b = 0: logits = x. */
  const float w[4] = {1, 0, 0, 1};
  memcpy(m->params + d->w_off, w, sizeof w);
  m->params[d->b_off] = m->params[d->b_off + 1] = 0.0f;
  /* Sample 0: x = (1, 0), label 0: right, loss log(1 + e^-1).
   * Sample 1: x = (0, 0.2), label 0: wrong, loss log(1 + e^0.2). */
  const uint8_t img[4] = {255, 0, 0, 51}, lab[2] = {0, 0};
  PrunusDataset *ds = prunus_dataset_new_from_data(2, 1, 1, 2, 2, img, lab);
  PrunusNorm unit = {.kind = PRUNUS_NORM_UNIT, .mean = 0.0f, .std = 1.0f};
  const double want_loss = 0.5 * (log1p(exp(-1.0)) + log1p(exp(0.2)));
  for (int batch = 0; batch <= 3; batch++) {
    PrunusEvalResult r = prunus_evaluate(m, ds, &unit, batch);
    g_assert_cmpint(r.n, ==, 2);
    assert_close(r.accuracy, 0.5, 0);
    assert_close(r.loss, want_loss, 1e-6);
  }
  assert_close(want_loss, 0.5557003, 1e-6); /* (0.3132617 + 0.7981389) / 2 */
  /* Both right once the second label is 1. */
  const uint8_t lab2[2] = {0, 1};
  PrunusDataset *ds2 = prunus_dataset_new_from_data(2, 1, 1, 2, 2, img, lab2);
  PrunusEvalResult r2 = prunus_evaluate(m, ds2, &unit, 2);
  assert_close(r2.accuracy, 1.0, 0);
  assert_close(r2.loss, 0.5 * (log1p(exp(-1.0)) + log1p(exp(-0.2))), 1e-6);
  /* No data: NaN, n = 0. */
  PrunusEvalResult none = prunus_evaluate(m, NULL, &unit, 2);
  g_assert_cmpint(none.n, ==, 0);
  g_assert_true(isnan(none.accuracy) && isnan(none.loss));
  prunus_dataset_free(ds2);
  prunus_dataset_free(ds);
  prunus_model_free(m);
}

static int epochs_seen;

static gboolean count_epoch(const PrunusEpochReport *r, void *user, GError **error) {
  (void)r, (void)user, (void)error;
  epochs_seen++;
  return TRUE;
}

/* A learning rate that blows the weights up stops training in epoch 1, before any
 * report, naming the epoch, the loss and the key: lr 1e30 makes the loss overflow; lr
 * 100 keeps the sums finite (a mean loss near 1e23, logits of that size), which a check
 * for non-finite sums alone let through. */
static void test_train_diverges(void) {
  PrunusDataset *train = quadrant_dataset(200, 4, 45.0, 31);
  PrunusNorm norm = prunus_norm_fit(train, PRUNUS_NORM_STANDARD);
  PrunusArch arch = mlp_arch();
  const struct {
    double lr;
    const char *loss, *now;
  } cases[] = {{1e30, "(loss is not finite)", "(now 1e+30: train.lr"},
               {100.0, "(mean loss ", "(now 100: train.lr"}};
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    PrunusTrainConfig tc = mlp_train_config();
    tc.lr = cases[i].lr;
    tc.lr_schedule = PRUNUS_LR_CONSTANT;
    GError *error = NULL;
    PrunusModel *m = prunus_model_new(&arch, tc.batch, 1, &error);
    g_assert_no_error(error);
    epochs_seen = 0;
    PrunusTrainOptions opt = {.on_epoch = count_epoch};
    g_assert_false(prunus_train(m, &tc, train, NULL, &norm, 1, &opt, &error));
    g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_NUMERIC);
    testutil_assert_error_contains(error, "training diverged in epoch 1 ", cases[i].loss,
                                   cases[i].now, NULL);
    g_assert_cmpint(epochs_seen, ==, 0); /* stopped in the first epoch, no report */
    g_clear_error(&error);
    prunus_model_free(m);
  }
  prunus_dataset_free(train);
}

static void test_train_bad_input(void) {
  PrunusDataset *wrong = quadrant_dataset(10, 6, 10.0, 1); /* 36 inputs, model takes 16 */
  PrunusNorm norm = prunus_norm_fit(wrong, PRUNUS_NORM_UNIT);
  PrunusArch arch = mlp_arch();
  PrunusTrainConfig tc = mlp_train_config();
  GError *error = NULL;
  PrunusModel *m = prunus_model_new(&arch, tc.batch, 1, &error);
  g_assert_no_error(error);
  g_assert_false(prunus_train(m, &tc, wrong, NULL, &norm, 1, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_MISMATCH);
  testutil_assert_error_contains(error, "1x6x6", "1x4x4", NULL);
  g_clear_error(&error);
  PrunusDataset *empty = prunus_dataset_new_from_data(0, 1, 4, 4, 4, NULL, NULL);
  g_assert_false(prunus_train(m, &tc, empty, NULL, &norm, 1, NULL, &error));
  g_assert_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID);
  g_clear_error(&error);
  prunus_dataset_free(empty);
  prunus_model_free(m);
  prunus_dataset_free(wrong);
}

/* The sparse-input kernels (sparse_input.h) take only a dense layer that reads the
 * network's input: with inputs that have no zero (standard normalisation of a noisy
 * background) but ReLU zeros in the hidden layer, training is byte for byte what the
 * sgemm-only path gives; with a background of exact zeros (unit normalisation) the
 * first layer takes them, and the model is the same up to float reassociation. */
static void test_train_sparse_input_first_layer(void) {
  if (!prunus_sparse_input_available()) {
    g_test_skip("no AVX-512 on this CPU: dense layers keep sgemm");
    return;
  }
  enum { SIDE = 8, N = 640 };
  PrunusRng r;
  prunus_rng_seed(&r, 21);
  uint8_t *img = g_new0(uint8_t, N * SIDE * SIDE), *lab = g_new(uint8_t, N);
  for (int i = 0; i < N; i++) { /* class k: quadrant k bright, the rest exactly 0 */
    int k = (int)prunus_rng_below(&r, 4);
    lab[i] = (uint8_t)k;
    for (int y = 0; y < SIDE; y++)
      for (int x = 0; x < SIDE; x++)
        if ((y >= SIDE / 2) * 2 + (x >= SIDE / 2) == k)
          img[i * SIDE * SIDE + y * SIDE + x] =
              (uint8_t)CLAMP(lround(170.0 + 40.0 * prunus_rng_normal(&r)), 1, 255);
  }
  PrunusDataset *d = prunus_dataset_new_from_data(N, 1, SIDE, SIDE, 4, img, lab);
  static PrunusLayerSpec layers[] = {
      {.type = PRUNUS_LAYER_FLATTEN}, {.type = PRUNUS_LAYER_DENSE, .units = 48},
      {.type = PRUNUS_LAYER_RELU},    {.type = PRUNUS_LAYER_DENSE, .units = 32},
      {.type = PRUNUS_LAYER_RELU},    {.type = PRUNUS_LAYER_DENSE, .units = 4}};
  PrunusArch arch = {.input = {1, SIDE, SIDE},
                     .n_classes = 4,
                     .n_layers = G_N_ELEMENTS(layers),
                     .layers = layers,
                     .init = PRUNUS_INIT_KAIMING};
  PrunusTrainConfig tc = mlp_train_config();
  tc.batch = 64;
  tc.epochs = 2;
  for (int unit = 0; unit < 2; unit++) {
    PrunusNorm norm = prunus_norm_fit(d, unit ? PRUNUS_NORM_UNIT : PRUNUS_NORM_STANDARD);
    float *params[2];
    size_t n_params = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: the kernels where they apply; 1: sgemm */
      PrunusCsrLevel old =
          prunus_csr_cap_level(pass == 0 ? PRUNUS_CSR_N_LEVELS - 1 : PRUNUS_CSR_AVX2);
      GError *error = NULL;
      PrunusModel *m = prunus_model_new(&arch, tc.batch, 5, &error);
      g_assert_no_error(error);
      g_assert_true(prunus_train(m, &tc, d, NULL, &norm, 5, NULL, &error));
      g_assert_no_error(error);
      prunus_csr_cap_level(old);
      params[pass] = g_memdup2(m->params, sizeof(float) * m->n_params);
      n_params = m->n_params;
      prunus_model_free(m);
    }
    double diff = testutil_max_rel_diff(params[0], params[1], n_params,
                                        unit ? "unit inputs (zero background): kernels vs sgemm"
                                             : "standard inputs (no zero): kernels vs sgemm");
    if (unit) {
      g_assert_cmpfloat(diff, >, 0.0); /* the first layer took them */
      g_assert_cmpfloat(diff, <, 1e-4);
    } else {
      g_assert_cmpfloat(diff, ==, 0.0); /* the hidden layers' ReLU zeros did not */
    }
    g_free(params[0]), g_free(params[1]);
  }
  prunus_dataset_free(d);
  g_free(img), g_free(lab);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/train/lr/constant", test_lr_constant);
  g_test_add_func("/train/lr/step", test_lr_step);
  g_test_add_func("/train/lr/cosine", test_lr_cosine);
  g_test_add_func("/train/lr/warmup", test_lr_warmup);
  g_test_add_func("/train/optim/sgd", test_sgd_plain);
  g_test_add_func("/train/optim/momentum", test_sgd_momentum);
  g_test_add_func("/train/optim/nesterov", test_sgd_nesterov);
  g_test_add_func("/train/optim/weight-decay", test_sgd_weight_decay);
  g_test_add_func("/train/optim/adam", test_adam);
  g_test_add_func("/train/optim/mask", test_optim_mask);
  g_test_add_func("/train/optim/span-flags", test_optim_span_flags);
  g_test_add_func("/train/fit/quadrants", test_train_quadrants);
  g_test_add_func("/train/fit/deterministic", test_train_deterministic);
  g_test_add_func("/train/fit/keeps-mask", test_train_keeps_mask);
  g_test_add_func("/train/fit/matches-plain-loop", test_train_matches_plain_loop);
  g_test_add_func("/train/fit/threads-parameter", test_train_threads_parameter);
  g_test_add_func("/train/optim/arrays-match-span", test_optim_arrays_match_span);
  g_test_add_func("/train/fit/sparse-matches-dense", test_train_sparse_matches_dense);
  g_test_add_func("/train/fit/sparse-graph", test_train_sparse_graph);
  g_test_add_func("/train/fit/snapshot", test_train_snapshot);
  g_test_add_func("/train/fit/diverges", test_train_diverges);
  g_test_add_func("/train/fit/bad-input", test_train_bad_input);
  g_test_add_func("/train/evaluate/by-hand", test_evaluate_by_hand);
  g_test_add_func("/train/fit/sparse-input-first-layer", test_train_sparse_input_first_layer);
  return g_test_run();
}
