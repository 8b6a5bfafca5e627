/* conv_direct.h: convolution of a single input channel with stride 1 (a network's
 * first layer) computed directly on the zero-padded plane, without lowering. */
#ifndef PRUNUS_CONV_DIRECT_H
#define PRUNUS_CONV_DIRECT_H

#include "conv_gemm.h"

#include <stdbool.h>
#include <stddef.h>

/* TRUE for the geometries these kernels take: C == 1 and s == 1. */
bool prunus_conv_direct_covers(const PrunusConvGeom *g);
/* Floats of scratch the two functions below need for one call, any batch size, when
 * run by a team of up to `parts` threads. */
size_t prunus_conv_direct_scratch(const PrunusConvGeom *g, int parts);

/* y (B, cout, Ho, Wo) = conv(x (B, 1, H, W), Wt (cout, 1, k, k)) + bias (cout; NULL:
 * none). The images are split over team (NULL: this thread only). */
void prunus_conv_direct_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                                const float *bias, float *y, float *scratch, int B,
                                PrunusTeam *team);
/* dW (cout, 1, k, k) and db (cout; NULL: not computed), overwritten, from x and dy (B, cout, Ho,
 * Wo); and, when dx != NULL, dx (B, 1, H, W) = the gradient with respect to x (overwritten). Each
 * part of the team sums its own images; the parts are added in a fixed order. */
void prunus_conv_direct_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                                 const float *dy, float *dW, float *db, float *dx, float *scratch,
                                 int B, PrunusTeam *team);

#endif
