/* conv_wino.h: multi-channel convolution with channels interleaved a vector at a time,
 * forward and both gradients, on AVX-512 or AVX2 (chosen at run time), split over a
 * team by images: 3x3 stride 1 by Winograd's minimal filtering F(4x4, 3x3) or F(2x2,
 * 3x3) (Lavin & Gray 2016); any other geometry (strided, 1x1) directly, tap by tap. */
#ifndef PRUNUS_CONV_WINO_H
#define PRUNUS_CONV_WINO_H

#include "conv_gemm.h"
#include "team.h"

#include <stdbool.h>
#include <stddef.h>

/* The instruction sets these kernels have a version for. */
typedef enum {
  PRUNUS_CONV_ISA_NONE,   /* neither: callers take another path */
  PRUNUS_CONV_ISA_AVX2,   /* AVX2 + FMA, 8 channels per vector */
  PRUNUS_CONV_ISA_AVX512, /* AVX-512F, 16 channels per vector */
} PrunusConvIsa;

/* The version that runs here: the widest the CPU has, lowered to `limit` by
 * prunus_conv_wino_limit_isa, NONE while prunus_gemm_force_reference is on. */
PrunusConvIsa prunus_conv_wino_isa(void);
/* Use no version wider than `limit` (tests run the AVX2 code on AVX-512 CPUs);
 * PRUNUS_CONV_ISA_AVX512 lifts the limit. */
void prunus_conv_wino_limit_isa(PrunusConvIsa limit);
/* "avx512", "avx2" or "none". */
const char *prunus_conv_isa_name(PrunusConvIsa isa);

/* How many channels the AVX-512 version puts in a forward's vector (the backward
 * always uses 16): AUTO picks per layer (conv_wino.c's forward_lanes); 8 needs
 * AVX-512VL. */
typedef enum {
  PRUNUS_CONV_LANES_AUTO,
  PRUNUS_CONV_LANES_16,
  PRUNUS_CONV_LANES_8,
} PrunusConvLanes;

/* TRUE for the geometries these kernels take: k == 3, s == 1, p <= 2 (so the input
 * gradient is again such a convolution), and a version of them runs here. */
bool prunus_conv_wino_covers(const PrunusConvGeom *g);
/* Floats of scratch the functions below need for one call, any batch size, for a team
 * of up to `parts` threads (64-byte aligned scratch is not required); 0 for a
 * geometry they never take, whatever the CPU. */
size_t prunus_conv_wino_scratch(const PrunusConvGeom *g, int parts);

/* y (B, cout, Ho, Wo) = conv(x (B, C, H, W), Wt (cout, C, 3, 3)) + bias (cout; NULL:
 * none). The images are split over team (NULL: this thread only). */
void prunus_conv_wino_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                              const float *bias, float *y, float *scratch, int B, PrunusTeam *team);
/* dW (cout, C, 3, 3) and, when db != NULL, db (cout), overwritten, from x and dy (B,
 * cout, Ho, Wo); when dx != NULL, dx (B, C, H, W) = the gradient with respect to x
 * (overwritten). Each part of the team sums its own images; the parts' sums are
 * added in part order, so a team of n gives the same bits on every run. */
void prunus_conv_wino_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                               const float *dy, float *dW, float *db, float *dx, float *scratch,
                               int B, PrunusTeam *team);

/* Any other conv (any kernel, stride, padding), with channels interleaved a vector at a
 * time: each tap (kh, kw) a product of the padded input's window rows with that tap's
 * weights. The input gradient scatters each output position's dy times W^T onto its
 * window. TRUE for the geometries they are meant for (stride >= 2 or a 1x1 kernel;
 * they are correct for any) where a version of them runs here. */
bool prunus_conv_cl_covers(const PrunusConvGeom *g);
/* Floats of scratch the two functions below need, any batch size, for a team of up to
 * `parts` threads. */
size_t prunus_conv_cl_scratch(const PrunusConvGeom *g, int parts);
/* y (B, cout, Ho, Wo) = conv(x (B, C, H, W), Wt (cout, C, k, k)) + bias (cout; NULL:
 * none), the images split over team (NULL: this thread only). */
void prunus_conv_cl_forward(const PrunusConvGeom *g, const float *x, const float *Wt,
                            const float *bias, float *y, float *scratch, int B, PrunusTeam *team);
/* dW (cout, C, k, k) and, when db != NULL, db (cout), overwritten, from x and dy; when
 * dx != NULL, dx (B, C, H, W) (overwritten). Each part of the team sums its own images;
 * the parts' sums are added in part order; dx is the same bits for any team. */
void prunus_conv_cl_backward(const PrunusConvGeom *g, const float *x, const float *Wt,
                             const float *dy, float *dW, float *db, float *dx, float *scratch,
                             int B, PrunusTeam *team);

/* A forward's weights transformed once (what prunus_conv_wino_forward and
 * prunus_conv_cl_forward redo on every call), for weights that do not change: the
 * inference engines. */
typedef struct {
  bool direct;       /* conv_direct.h's few-channel forward (neither of the two below) */
  bool wino;         /* Winograd (else channel-interleaved) */
  PrunusConvIsa isa; /* the version and lanes they were laid out for */
  int lanes;
  float *w;        /* owned: prunus_conv_prepared_clear */
  size_t n_floats; /* of w */
} PrunusConvPrepared;

/* Lays out Wt (cout, C, k, k) for the forward of g as the version that runs here
 * would; FALSE (and *out empty) when neither the Winograd nor the channel-interleaved
 * kernels take g. A layer of few channels on both sides (prunus_conv_direct_few_covers,
 * Winograd lanes left unforced) goes to conv_direct.h's direct forward instead, which
 * rounds differently from the Winograd forward (each output a plain float sum). */
bool prunus_conv_prepare(const PrunusConvGeom *g, const float *Wt, PrunusConvPrepared *out);
void prunus_conv_prepared_clear(PrunusConvPrepared *p);
/* prunus_conv_wino_forward / prunus_conv_cl_forward of g with weights p (the same bits;
 * the direct forward where p->direct), scratch as prunus_conv_*_scratch gives; FALSE,
 * nothing written, when the version or lanes that run here now are not those p was laid
 * out for (a test limited them). */
bool prunus_conv_forward_prepared(const PrunusConvGeom *g, const PrunusConvPrepared *p,
                                  const float *x, const float *bias, float *y, float *scratch,
                                  int B, PrunusTeam *team);

/* ------------------------------------------------------------------------ */
/* for tests and bench only: nothing in core/ calls these */

/* Make the AVX-512 forwards use `lanes` channels per vector (AUTO: the default rule). */
void prunus_conv_force_lanes(PrunusConvLanes lanes);
/* Channels per vector the forward of g runs with here (0: these kernels do not run). */
int prunus_conv_forward_lanes(const PrunusConvGeom *g);

#endif
