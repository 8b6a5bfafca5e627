/* sparse_input.h: the weight gradient and forward of a dense layer whose input is zero
 * in runs that neighbouring features share, as an image's background pixels are: sums
 * only over the samples (features) where a block of 4 features (samples) is not all zero. */
#ifndef PRUNUS_SPARSE_INPUT_H
#define PRUNUS_SPARSE_INPUT_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Input features per group: the kernel keeps 4 columns of dW in registers and reads a
 * row of dy once for all 4, so a group costs the samples where any of its 4 is nonzero
 * (on Fashion-MNIST 62% of them, against 50% for single pixels and 72% for 8). */
#define PRUNUS_SPARSE_INPUT_GROUP 4
/* Largest batch: the kernel keeps one group's nonzero samples on the stack. */
#define PRUNUS_SPARSE_INPUT_MAX_BATCH 1024
/* Smallest batch the layers take the kernels for: below it transposing W per call
 * costs more than the skipped zeros save (docs/perf-log.md). */
#define PRUNUS_SPARSE_INPUT_MIN_BATCH 32
/* The layer takes this kernel instead of sgemm when at most this share of its (sample,
 * group) pairs has a nonzero: a pair costs a little less than sgemm's share of the same
 * work, and the margin leaves room for CPUs whose sgemm does better (measured in
 * docs/perf-log.md). */
#define PRUNUS_SPARSE_INPUT_MAX_DENSITY 0.75

/* The share of (sample, group) pairs of x (B, in) row-major with a nonzero: group g is
 * features [4g, 4g + 4), the last one cut at in. */
double prunus_sparse_input_density(const float *x, int B, int in);
/* The forward's counterpart: the share of (block of 4 samples, feature) pairs where one
 * of the block's samples is nonzero (the last block cut at B). Block s holds samples
 * order[4s .. 4s + 4) (order NULL: 4s .. 4s + 4). */
double prunus_sparse_input_sample_density(const float *x, const int32_t *order, int B, int in);
/* Orders the samples of x (B, in) into blocks of 4 that share most of their zeros, so
 * that the forward sums over fewer features: writes a permutation of 0 .. B-1 into
 * order (B entries) and returns prunus_sparse_input_sample_density for it. Greedy,
 * within each window of 128 samples: the first sample not yet placed, then the 3
 * others that differ from it at the fewest features (zero in one, not in the other;
 * the lowest index on ties). On Fashion-MNIST batches this takes the share from 0.79
 * (4 consecutive shuffled samples) to about 0.63 (docs/perf-log.md). Where single values
 * are nonzero more often than PRUNUS_SPARSE_INPUT_MAX_SAMPLE_DENSITY, order is 0 .. B-1.
 * B <= PRUNUS_SPARSE_INPUT_MAX_BATCH. */
double prunus_sparse_input_group_samples(const float *x, int B, int in, int32_t *order);
/* The forward takes its kernel when at most this share of (block, feature) pairs is
 * nonzero: a pair costs a little less than sgemm's share, and the weights' transpose
 * adds about a tenth of the product (docs/perf-log.md). */
#define PRUNUS_SPARSE_INPUT_MAX_SAMPLE_DENSITY 0.85

/* TRUE when prunus_sparse_input_wgrad runs here: the CPU has AVX-512F, the CSR kernels
 * are not capped below AVX-512 (prunus_csr_cap_level) and the reference loops are not
 * forced. Elsewhere dense layers keep sgemm. */
bool prunus_sparse_input_available(void);

/* dW (out, in) row-major = dy^T (out, B) x (B, in) (accumulate: += onto dW) over input
 * features [4 g0, min(4 g1, in)), from xT (in, B), the input transposed, and dy (B, out).
 * Each sum runs over the samples in increasing order, skipping those where the feature's
 * whole group is zero. B <= PRUNUS_SPARSE_INPUT_MAX_BATCH; needs
 * prunus_sparse_input_available(). */
void prunus_sparse_input_wgrad(const float *xT, const float *dy, int B, int in, int out, float *dW,
                               bool accumulate, int g0, int g1);

/* y (B, out) = x (B, in) W^T + bias for the samples of blocks [s0, s1), from Wt (in,
 * out), the weights transposed: block s holds samples order[4s .. 4s + 4) (order NULL:
 * 4s .. 4s + 4, cut at B), and each of its sums runs over the features where one of
 * the 4 is nonzero, in increasing order, starting from the bias. A sample's nonzero
 * terms and their order do not depend on its block: the blocks change how many zero
 * terms are added, not y (for finite weights; a sum of zeros may differ in sign). The
 * layer takes this kernel or sgemm by the share of its blocks, so grouping may move a
 * batch from sgemm to this kernel. Needs prunus_sparse_input_available(). */
void prunus_sparse_input_forward(const float *x, const int32_t *order, const float *Wt,
                                 const float *bias, int B, int in, int out, float *y, int s0,
                                 int s1);

G_END_DECLS

#endif
