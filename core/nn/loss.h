/* loss.h: softmax cross-entropy over a batch of logits, its gradient and the count of
 * correct predictions, on one thread or split over a team. */
#ifndef PRUNUS_LOSS_H
#define PRUNUS_LOSS_H

#include "team.h"

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Softmax cross-entropy averaged over B. Writes dlogits (B, K) = (softmax - onehot)/B
 * when dlogits != NULL; adds the number of correct argmax predictions to *correct
 * when correct != NULL. Returns the mean loss. */
double prunus_softmax_xent(const float *logits, const uint8_t *labels, int B, int K, float *dlogits,
                           int *correct);
/* The same, rows split over a team (NULL: prunus_softmax_xent); dlogits and the count
 * are the same bits, the loss is summed per part (so with 2+ threads it may differ
 * from prunus_softmax_xent's in the last bits). */
double prunus_softmax_xent_team(PrunusTeam *team, const float *logits, const uint8_t *labels, int B,
                                int K, float *dlogits, int *correct);

G_END_DECLS

#endif
