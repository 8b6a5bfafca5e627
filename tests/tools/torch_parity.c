/* torch_parity.c: what test_torch.py compares PyTorch against: a checkpoint's logits in
 * evaluation and training mode (and the running statistics a training-mode forward
 * leaves), and the checkpoint after prunus_train's SGD steps, on pixels the test gives.
 *   torch-parity forward CKPT PIXELS OUT     PIXELS: "u" (N, C, H, W) in 0..255, "y" (N)
 *   torch-parity train CKPT PIXELS STEPS LR MOMENTUM WEIGHT_DECAY THREADS OUT_CKPT
 * forward writes OUT: "x" (the normalised batch, as training fills it), "eval", "train"
 * (logits) and "<layer>.running_mean/var" after the training-mode forward. train runs
 * STEPS full-batch steps of plain SGD (constant LR) and saves the checkpoint. */
#include "checkpoint.h"
#include "safetensors.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  PrunusModel *m;
  GHashTable *md;
  PrunusDataset *data;
  PrunusNorm norm;
} Case;

static gboolean case_open(Case *c, const char *ckpt, const char *pixels, GError **error) {
  memset(c, 0, sizeof *c);
  PrunusTensorFile *f = prunus_safetensors_read(pixels, error);
  if (!f) return FALSE;
  const PrunusTensor *u = prunus_tensor_file_find(f, "u"), *y = prunus_tensor_file_find(f, "y");
  if (!u || !y || u->ndim != 4 || y->ndim != 1 || y->shape[0] != u->shape[0]) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_FORMAT,
                "%s: needs \"u\" (N, C, H, W) and \"y\" (N)", pixels);
    prunus_tensor_file_free(f);
    return FALSE;
  }
  int n = (int)u->shape[0];
  size_t row = (size_t)u->shape[1] * u->shape[2] * u->shape[3];
  uint8_t *img = g_new(uint8_t, (size_t)n * row), *lab = g_new(uint8_t, n);
  for (size_t j = 0; j < (size_t)n * row; j++) img[j] = (uint8_t)u->data[j];
  int classes = 2;
  for (int i = 0; i < n; i++) {
    lab[i] = (uint8_t)y->data[i];
    classes = MAX(classes, lab[i] + 1);
  }
  c->data = prunus_dataset_new_from_data(n, (int)u->shape[1], (int)u->shape[2], (int)u->shape[3],
                                         classes, img, lab);
  g_free(img), g_free(lab);
  prunus_tensor_file_free(f);
  c->m = prunus_checkpoint_load(ckpt, n, NULL, &c->md, error);
  if (!c->m) return FALSE;
  gboolean found = FALSE;
  if (!prunus_checkpoint_metadata_norm(c->md, ckpt, &c->norm, &found, error)) return FALSE;
  if (!found) c->norm = (PrunusNorm){.kind = PRUNUS_NORM_UNIT, .mean = 0.0f, .std = 1.0f};
  return TRUE;
}

static void case_close(Case *c) {
  prunus_model_free(c->m);
  if (c->md) g_hash_table_unref(c->md);
  prunus_dataset_free(c->data);
}

static gboolean run_forward(Case *c, const char *out, GError **error) {
  PrunusModel *m = c->m;
  int n = c->data->n, K = prunus_model_n_classes(m);
  size_t in = prunus_model_input_size(m);
  int *idx = g_new(int, n);
  uint8_t *y = g_new(uint8_t, n);
  for (int i = 0; i < n; i++) idx[i] = i;
  float *x = g_new(float, (size_t)n *in);
  prunus_dataset_fill_batch(c->data, &c->norm, idx, n, x, y);
  float *eval = g_new(float, (size_t)n *K), *train = g_new(float, (size_t)n *K);
  prunus_model_set_training(m, FALSE);
  prunus_model_forward(m, x, n);
  memcpy(eval, m->acts[m->n_layers], sizeof(float) * n * K);
  prunus_model_set_training(m, TRUE); /* batch statistics; the running ones move */
  prunus_model_forward(m, x, n);
  memcpy(train, m->acts[m->n_layers], sizeof(float) * n * K);
  prunus_model_set_training(m, FALSE);

  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  PrunusTensor *t = g_new0(PrunusTensor, 3 + 2 * (size_t)m->n_layers);
  int nt = 0;
  t[nt++] = (PrunusTensor){"x", 2, {n, (int64_t)in}, x};
  t[nt++] = (PrunusTensor){"eval", 2, {n, K}, eval};
  t[nt++] = (PrunusTensor){"train", 2, {n, K}, train};
  for (int i = 0; i < m->n_layers; i++) {
    const PrunusLayer *l = &m->layers[i];
    if (l->spec.type != PRUNUS_LAYER_BATCHNORM) continue;
    for (int k = 0; k < 2; k++) {
      char *name = g_strdup_printf("%s.%s", l->name, k ? "running_var" : "running_mean");
      g_ptr_array_add(names, name);
      t[nt++] = (PrunusTensor){name, 1, {l->in.c}, m->params + l->buf_off + (size_t)k * l->in.c};
    }
  }
  gboolean ok = prunus_safetensors_write(out, t, nt, NULL, error);
  g_free(t);
  g_ptr_array_unref(names);
  g_free(train), g_free(eval), g_free(x), g_free(y), g_free(idx);
  return ok;
}

static gboolean run_train(Case *c, char **argv, GError **error) {
  PrunusTrainConfig tc = prunus_train_config_default();
  tc.epochs = atoi(argv[0]);
  tc.batch = c->data->n;
  tc.optimizer = PRUNUS_OPT_SGD;
  tc.lr = g_ascii_strtod(argv[1], NULL);
  tc.momentum = g_ascii_strtod(argv[2], NULL);
  tc.weight_decay = g_ascii_strtod(argv[3], NULL);
  tc.lr_schedule = PRUNUS_LR_CONSTANT;
  PrunusTrainOptions opt = {.threads = atoi(argv[4])};
  /* full batches: each epoch is one step on every sample, in shuffled order */
  if (!prunus_train(c->m, &tc, c->data, NULL, &c->norm, 0, &opt, error)) return FALSE;
  return prunus_checkpoint_save(c->m, argv[5], c->md, error);
}

int main(int argc, char **argv) {
  gboolean fwd = argc == 5 && !strcmp(argv[1], "forward");
  gboolean train = argc == 10 && !strcmp(argv[1], "train");
  if (!fwd && !train) {
    fprintf(stderr,
            "usage: torch-parity forward CKPT PIXELS OUT\n"
            "       torch-parity train CKPT PIXELS STEPS LR MOMENTUM WEIGHT_DECAY THREADS "
            "OUT_CKPT\n");
    return 2;
  }
  GError *error = NULL;
  Case c;
  gboolean ok = case_open(&c, argv[2], argv[3], &error) &&
                (fwd ? run_forward(&c, argv[4], &error) : run_train(&c, argv + 4, &error));
  case_close(&c);
  if (!ok) {
    fprintf(stderr, "torch-parity: %s\n", error->message);
    g_error_free(error);
    return 1;
  }
  return 0;
}
