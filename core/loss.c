/* loss.c: softmax cross-entropy over logits, its gradient and the count of
 * correct predictions, computed stably (max subtracted) in double. */
#include "train.h"

#include <math.h>

double prunus_softmax_xent(const float *logits, const uint8_t *labels, int B, int K,
                           float *dlogits, int *correct) {
  double total = 0.0;
  for (int b = 0; b < B; b++) {
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
  return B > 0 ? total / B : 0.0;
}
