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

/* The forward of a stride-1 conv of up to 8 input and 8 output channels, 40 pairs (a
 * channel-pruned network's first stage, which the Winograd kernels' channel vectors
 * would leave mostly padding), directly, output positions in the lanes: for weights
 * that do not change (the inference engines, through prunus_conv_prepare). TRUE for
 * such geometries where AVX-512 runs here. */
bool prunus_conv_direct_few_covers(const PrunusConvGeom *g);
/* Floats of scratch of prunus_conv_direct_few_forward, any batch, a team of `parts`. */
size_t prunus_conv_direct_few_scratch(const PrunusConvGeom *g, int parts);
/* Floats of the laid-out weights, and the layout: w (C, k*k, cout) from Wt (cout, C, k, k). */
size_t prunus_conv_direct_few_weights(const PrunusConvGeom *g);
void prunus_conv_direct_few_prepare(const PrunusConvGeom *g, const float *Wt, float *w);
/* y (B, cout, Ho, Wo) = conv(x (B, C, H, W), w as laid out above) + bias (cout; NULL:
 * none), the images split over team (NULL: this thread only). */
void prunus_conv_direct_few_forward(const PrunusConvGeom *g, const float *x, const float *w,
                                    const float *bias, float *y, float *scratch, int B,
                                    PrunusTeam *team);

#endif
