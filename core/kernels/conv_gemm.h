/* conv_gemm.h: 2-D convolution over several input channels as an implicit GEMM with
 * AVX-512 (no im2col buffer), forward and both gradients, one image at a time. */
#ifndef PRUNUS_CONV_GEMM_H
#define PRUNUS_CONV_GEMM_H

#include "team.h"

#include <stdbool.h>
#include <stddef.h>

/* The geometry of one conv layer: x (C, H, W) -> y (cout, Ho, Wo), square kernel k,
 * stride s, zero padding p on every side. */
typedef struct {
  int C, H, W, k, s, p, cout, Ho, Wo;
} PrunusConvGeom;

/* One convolution call split over a team: part p takes images
 * [prunus_team_share(B, p, n), prunus_team_share(B, p + 1, n)) and the scratch at
 * scratch + p * part_floats (conv_gemm.c and conv_direct.c). */
typedef struct {
  const PrunusConvGeom *g;
  const float *x, *Wt, *bias, *dy;
  float *y, *dx, *scratch;
  int B;
  size_t part_floats;
} PrunusConvCall;

/* TRUE when these kernels run here (the CPU has AVX-512F+VL and the products are not
 * forced onto the reference loops); otherwise callers lower with im2col + sgemm. */
bool prunus_conv_gemm_available(void);
/* Floats of scratch the functions below need for one call, any batch size, when
 * run by a team of up to `parts` threads. */
size_t prunus_conv_gemm_scratch(const PrunusConvGeom *g, int parts);

/* y (B, cout, Ho, Wo) = conv(x (B, C, H, W), Wt (cout, C, k, k)) + bias (cout; NULL:
 * none). The images are split over team (NULL: this thread only). */
void prunus_conv_gemm_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                              const float *bias, float *y, float *scratch, int B, PrunusTeam *team);
/* dW (cout, C, k, k) and db (cout; NULL: not computed), overwritten, from x and dy (B, cout, Ho,
 * Wo); and, when dx != NULL, dx (B, C, H, W) = the gradient with respect to x (overwritten). Each
 * part of the team sums its own images; the parts are added in a fixed order. */
void prunus_conv_gemm_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                               const float *dy, float *dW, float *db, float *dx, float *scratch,
                               int B, PrunusTeam *team);

#endif
