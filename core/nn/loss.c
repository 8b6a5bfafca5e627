/* loss.c: softmax cross-entropy over logits, its gradient and the count of
 * correct predictions, computed stably (max subtracted) in double. */
#include "loss.h"

#include <math.h>

/* Rows [b0, b1) of the batch of B: returns their summed loss, counts their correct
 * predictions into *correct, writes their dlogits rows. */
static double xent_rows(const float *logits, const uint8_t *labels, int b0, int b1, int B, int K,
                        float *dlogits, int *correct) {
  double total = 0.0;
  for (int b = b0; b < b1; b++) {
    const float *z = logits + (size_t)b * K;
    int argmax = 0;
    for (int k = 1; k < K; k++)
      if (z[k] > z[argmax]) argmax = k;
    double zmax = z[argmax], sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp((double)z[k] - zmax);
    double logsum = log(sum) + zmax;
    int y = labels[b];
    total += logsum - z[y];
    if (correct && argmax == y) (*correct)++;
    if (dlogits) {
      float *d = dlogits + (size_t)b * K;
      for (int k = 0; k < K; k++) {
        double p = exp((double)z[k] - logsum);
        d[k] = (float)((p - (k == y ? 1.0 : 0.0)) / B);
      }
    }
  }
  return total;
}

double prunus_softmax_xent(const float *logits, const uint8_t *labels, int B, int K, float *dlogits,
                           int *correct) {
  double total = xent_rows(logits, labels, 0, B, B, K, dlogits, correct);
  return B > 0 ? total / B : 0.0;
}

typedef struct {
  const float *logits;
  const uint8_t *labels;
  int B, K;
  float *dlogits;
  double total[PRUNUS_TEAM_MAX_THREADS]; /* (parts) each part's summed loss */
  int correct[PRUNUS_TEAM_MAX_THREADS];  /* (parts) each part's correct predictions */
} XentCall;

static void xent_part(void *arg, int part, int n_parts) {
  XentCall *c = arg;
  int b0 = prunus_team_share(c->B, part, n_parts), b1 = prunus_team_share(c->B, part + 1, n_parts);
  c->total[part] =
      xent_rows(c->logits, c->labels, b0, b1, c->B, c->K, c->dlogits, &c->correct[part]);
}

double prunus_softmax_xent_team(PrunusTeam *team, const float *logits, const uint8_t *labels, int B,
                                int K, float *dlogits, int *correct) {
  if (!team) return prunus_softmax_xent(logits, labels, B, K, dlogits, correct);
  XentCall c = {.logits = logits, .labels = labels, .B = B, .K = K, .dlogits = dlogits};
  prunus_team_run(team, xent_part, &c);
  double total = 0.0;
  for (int p = 0; p < prunus_team_threads(team); p++) {
    total += c.total[p];
    if (correct) *correct += c.correct[p];
  }
  return B > 0 ? total / B : 0.0;
}
