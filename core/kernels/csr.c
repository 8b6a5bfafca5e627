/* csr.c: CSR construction from masked dense weights and the sparse kernels: SpMV
 * (AVX-512 over 16-row slices, or AVX2 with x gathered by scalar loads), SpMM over a
 * transposed operand (AVX-512 or AVX2, many columns in registers per row), scalar
 * fallbacks, rows split over a team. */
#include "csr.h"
#include "gemm.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* building */

static void *aligned_new(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) g_error("out of memory");
  return p;
}

PrunusCsr *prunus_csr_from_dense(const float *W, const float *mask, int rows, int cols) {
  g_return_val_if_fail(rows >= 0 && cols >= 0, NULL);
  PrunusCsr *a = g_new0(PrunusCsr, 1);
  a->rows = rows, a->cols = cols;
  int64_t nnz = 0;
  size_t n = (size_t)rows * cols;
  for (size_t i = 0; i < n; i++) nnz += W[i] != 0.0f && (!mask || mask[i] != 0.0f);
  g_assert(nnz <= INT32_MAX);
  a->nnz = nnz;
  int64_t stored = 0;
  for (int r = 0; r < rows; r++) {
    int64_t n_row = 0;
    for (int c = 0; c < cols; c++) {
      size_t i = (size_t)r * cols + c;
      n_row += W[i] != 0.0f && (!mask || mask[i] != 0.0f);
    }
    stored += (n_row + 7) / 8 * 8;
  }
  g_assert(stored <= INT32_MAX);
  a->stored = stored;
  a->ptr = aligned_new(sizeof(int32_t) * ((size_t)rows + 1));
  a->len = aligned_new(sizeof(int32_t) * (size_t)rows);
  a->col = aligned_new(sizeof(int32_t) * (size_t)stored);
  a->val = aligned_new(sizeof(float) * (size_t)stored);
  int32_t k = 0;
  for (int r = 0; r < rows; r++) {
    a->ptr[r] = k;
    const float *w = W + (size_t)r * cols;
    const float *mk = mask ? mask + (size_t)r * cols : NULL;
    for (int c = 0; c < cols; c++) {
      if (w[c] != 0.0f && (!mk || mk[c] != 0.0f)) {
        a->col[k] = c;
        a->val[k] = w[c];
        k++;
      }
    }
    a->len[r] = k - a->ptr[r];
    /* the padding reads the row's last column (value 0): an x that is not finite
     * there reaches no row that does not read it anyway (0 x Inf is NaN) */
    int32_t last = k > a->ptr[r] ? a->col[k - 1] : 0;
    while (k % 8) a->col[k] = last, a->val[k] = 0.0f, k++;
  }
  a->ptr[rows] = k;
  return a;
}

/* ------------------------------------------------------------------------ */
/* the SpMV slices (prunus_csr_slices_build) */

/* An empty place's index: its bit 7 masks the FMA (a place adds nothing, even where x
 * is not finite), and the permute reads only the low 5 bits. */
enum { SLICE_ROWS = 16, SLICE_CHUNK = 32, SLICE_EMPTY = 0x80 };

/* One column chunk of one row group: n slices from slice `first` on. */
typedef struct {
  int32_t col0; /* the chunk's first column */
  int32_t n, first;
} SliceRun;

struct PrunusCsrSlices {
  int groups;         /* row groups of SLICE_ROWS, the last one cut at rows */
  int32_t *group_run; /* (groups + 1) each group's first run */
  SliceRun *run;
  int64_t n_slices;
  uint8_t *idx; /* (SLICE_ROWS n_slices) column - col0; SLICE_EMPTY in empty places */
  float *val;   /* (SLICE_ROWS n_slices) 64-byte aligned; 0 in empty places */
};

static void slices_free(struct PrunusCsrSlices *s) {
  if (!s) return;
  g_free(s->group_run), g_free(s->run), g_free(s->idx), free(s->val), g_free(s);
}

static size_t slices_bytes(const struct PrunusCsrSlices *s) {
  if (!s) return 0;
  return (size_t)s->n_slices * SLICE_ROWS * (sizeof(float) + sizeof(uint8_t)) +
         (size_t)s->group_run[s->groups] * sizeof(SliceRun) +
         ((size_t)s->groups + 1) * sizeof(int32_t);
}

void prunus_csr_slices_drop(PrunusCsr *a) {
  g_return_if_fail(a != NULL);
  g_clear_pointer(&a->slices, slices_free);
}

void prunus_csr_slices_build(PrunusCsr *a) {
  prunus_csr_slices_drop(a);
  if (prunus_csr_level() < PRUNUS_CSR_AVX512) return;
  struct PrunusCsrSlices *s = g_new0(struct PrunusCsrSlices, 1);
  int chunks = (a->cols + SLICE_CHUNK - 1) / SLICE_CHUNK;
  s->groups = (a->rows + SLICE_ROWS - 1) / SLICE_ROWS;
  s->group_run = g_new(int32_t, (size_t)s->groups + 1);
  /* pass 1 counts runs and slices, pass 2 fills them */
  for (int pass = 0; pass < 2; pass++) {
    int32_t n_runs = 0;
    int64_t n_slices = 0;
    for (int g = 0; g < s->groups; g++) {
      int32_t at[SLICE_ROWS], end[SLICE_ROWS]; /* each row's next entry, and its end */
      int r0 = g * SLICE_ROWS, lanes = MIN(SLICE_ROWS, a->rows - r0);
      for (int i = 0; i < SLICE_ROWS; i++) {
        at[i] = i < lanes ? a->ptr[r0 + i] : 0;
        end[i] = i < lanes ? a->ptr[r0 + i] + a->len[r0 + i] : 0;
      }
      if (pass) s->group_run[g] = n_runs;
      for (int c = 0; c < chunks; c++) {
        int32_t col0 = c * SLICE_CHUNK, count[SLICE_ROWS], most = 0;
        for (int i = 0; i < SLICE_ROWS; i++) { /* columns ascend within a row */
          count[i] = 0;
          while (at[i] + count[i] < end[i] && a->col[at[i] + count[i]] < col0 + SLICE_CHUNK)
            count[i]++;
          most = MAX(most, count[i]);
        }
        if (most == 0) continue;
        if (pass) {
          s->run[n_runs] = (SliceRun){col0, most, (int32_t)n_slices};
          for (int t = 0; t < most; t++)
            for (int i = 0; i < SLICE_ROWS; i++) {
              size_t to = (size_t)(n_slices + t) * SLICE_ROWS + i;
              gboolean full = t < count[i];
              s->idx[to] = full ? (uint8_t)(a->col[at[i] + t] - col0) : SLICE_EMPTY;
              s->val[to] = full ? a->val[at[i] + t] : 0.0f;
            }
        }
        for (int i = 0; i < SLICE_ROWS; i++) at[i] += count[i];
        n_runs++, n_slices += most;
      }
    }
    if (!pass) {
      g_assert(n_slices <= INT32_MAX);
      s->n_slices = n_slices;
      s->run = g_new(SliceRun, MAX(n_runs, 1));
      s->idx = g_new(uint8_t, (size_t)MAX(n_slices, 1) * SLICE_ROWS);
      s->val = aligned_new(sizeof(float) * (size_t)MAX(n_slices, 1) * SLICE_ROWS);
    } else {
      s->group_run[s->groups] = n_runs;
    }
  }
  a->slices = s;
}

void prunus_csr_free(PrunusCsr *a) {
  if (!a) return;
  slices_free(a->slices);
  free(a->ptr);
  free(a->len);
  free(a->col);
  free(a->val);
  g_free(a);
}

size_t prunus_csr_bytes(const PrunusCsr *a) {
  return (size_t)a->stored * (sizeof(float) + sizeof(int32_t)) +
         ((size_t)2 * a->rows + 1) * sizeof(int32_t) + slices_bytes(a->slices);
}

PrunusCsr *prunus_csr_from_mask(const float *mask, int rows, int cols, bool transposed,
                                int32_t **src_out) {
  g_return_val_if_fail(rows >= 0 && cols >= 0, NULL);
  /* the matrix stored: (R, C) = (rows, cols), or (cols, rows) when transposed */
  int R = transposed ? cols : rows, C = transposed ? rows : cols;
  int32_t *len = aligned_new(sizeof(int32_t) * (size_t)MAX(R, 1));
  memset(len, 0, sizeof(int32_t) * (size_t)MAX(R, 1));
  int64_t nnz = 0, stored = 0;
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) len[transposed ? j : i] += mask[(size_t)i * cols + j] != 0.0f;
  for (int r = 0; r < R; r++) nnz += len[r], stored += (len[r] + 7) / 8 * 8;
  g_assert(stored <= INT32_MAX);
  PrunusCsr *a = g_new0(PrunusCsr, 1);
  a->rows = R, a->cols = C, a->nnz = nnz, a->stored = stored;
  a->len = len;
  a->ptr = aligned_new(sizeof(int32_t) * ((size_t)R + 1));
  a->col = aligned_new(sizeof(int32_t) * (size_t)stored);
  a->val = aligned_new(sizeof(float) * (size_t)stored);
  int32_t *src = g_new(int32_t, MAX(stored, 1));
  int32_t k = 0;
  for (int r = 0; r < R; r++) {
    a->ptr[r] = k;
    k += (len[r] + 7) / 8 * 8;
  }
  a->ptr[R] = k;
  int32_t *fill = g_new0(int32_t, MAX(R, 1)); /* entries placed in each row so far */
  /* walk the mask in memory order; rows of the stored matrix fill in column order */
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < cols; j++) {
      if (mask[(size_t)i * cols + j] == 0.0f) continue;
      int r = transposed ? j : i, c = transposed ? i : j;
      int32_t at = a->ptr[r] + fill[r]++;
      a->col[at] = c;
      src[at] = (int32_t)((size_t)i * cols + j);
    }
  }
  for (int r = 0; r < R; r++)
    for (int32_t at = a->ptr[r] + len[r]; at < a->ptr[r + 1]; at++) a->col[at] = 0, src[at] = -1;
  memset(a->val, 0, sizeof(float) * (size_t)stored);
  g_free(fill);
  *src_out = src;
  return a;
}

PrunusCsrBlocks *prunus_csr_blocks_new(const PrunusCsr *a, int width) {
  g_return_val_if_fail(width > 0, NULL);
  PrunusCsrBlocks *b = g_new0(PrunusCsrBlocks, 1);
  b->width = width, b->rows = a->rows;
  b->n_blocks = MAX((a->cols + width - 1) / width, 1);
  b->start = g_new(int32_t, (size_t)(b->n_blocks + 1) * MAX(a->rows, 1));
  for (int r = 0; r < a->rows; r++) {
    int32_t k = a->ptr[r], end = k + a->len[r];
    for (int blk = 0; blk <= b->n_blocks; blk++) {
      while (k < end && a->col[k] < blk * width) k++; /* columns ascend within a row */
      b->start[(size_t)blk * a->rows + r] = blk == b->n_blocks ? end : k;
    }
  }
  return b;
}

void prunus_csr_blocks_free(PrunusCsrBlocks *b) {
  if (!b) return;
  g_free(b->start);
  g_free(b);
}

void prunus_csr_gather(PrunusCsr *a, const int32_t *src, const float *W) {
  g_clear_pointer(&a->slices, slices_free); /* its values would be stale */
  float *restrict val = a->val;
  for (int64_t k = 0; k < a->stored; k++) val[k] = src[k] >= 0 ? W[src[k]] : 0.0f;
}

/* ------------------------------------------------------------------------ */
/* dispatch */

static PrunusCsrLevel level_cap = PRUNUS_CSR_N_LEVELS - 1;

PrunusCsrLevel prunus_csr_cap_level(PrunusCsrLevel cap) {
  g_return_val_if_fail(cap >= 0 && cap < PRUNUS_CSR_N_LEVELS, level_cap);
  PrunusCsrLevel old = level_cap;
  level_cap = cap;
  return old;
}

static PrunusCsrLevel cpu_level(void) {
  /* atomic: team threads may race to the first call (each stores the same value) */
  static atomic_int cached = -1;
  int v = atomic_load_explicit(&cached, memory_order_relaxed);
  if (v < 0) {
    __builtin_cpu_init();
    v = PRUNUS_CSR_SCALAR;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v = PRUNUS_CSR_AVX2;
    if (v == PRUNUS_CSR_AVX2 && __builtin_cpu_supports("avx512f")) v = PRUNUS_CSR_AVX512;
    atomic_store_explicit(&cached, v, memory_order_relaxed);
  }
  return (PrunusCsrLevel)v;
}

PrunusCsrLevel prunus_csr_level(void) { return MIN(cpu_level(), level_cap); }

const char *prunus_csr_level_name(PrunusCsrLevel level) {
  static const char *const names[PRUNUS_CSR_N_LEVELS] = {
      [PRUNUS_CSR_SCALAR] = "scalar", [PRUNUS_CSR_AVX2] = "avx2", [PRUNUS_CSR_AVX512] = "avx512"};
  g_return_val_if_fail(level >= 0 && level < PRUNUS_CSR_N_LEVELS, NULL);
  return names[level];
}

/* ------------------------------------------------------------------------ */
/* transpose: 8x8 AVX2 blocks inside 32x32 tiles, scalar at the edges */

__attribute__((target("avx2,fma"))) static void transpose8x8(const float *src, int ls, float *dst,
                                                             int ld) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * (size_t)ls), r1 = _mm256_loadu_ps(src + 1 * (size_t)ls);
  __m256 r2 = _mm256_loadu_ps(src + 2 * (size_t)ls), r3 = _mm256_loadu_ps(src + 3 * (size_t)ls);
  __m256 r4 = _mm256_loadu_ps(src + 4 * (size_t)ls), r5 = _mm256_loadu_ps(src + 5 * (size_t)ls);
  __m256 r6 = _mm256_loadu_ps(src + 6 * (size_t)ls), r7 = _mm256_loadu_ps(src + 7 * (size_t)ls);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * (size_t)ld, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * (size_t)ld, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * (size_t)ld, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * (size_t)ld, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * (size_t)ld, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * (size_t)ld, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * (size_t)ld, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * (size_t)ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* 16x16 in zmm registers: interleave pairs of rows, then 4x4 within 128-bit lanes, then
 * the lanes themselves in two steps. */
__attribute__((target("avx512f"))) static void transpose16x16(const float *src, int ls, float *dst,
                                                              int ld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * ls);
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
  }
  for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (size_t)i * ld, r[i]);
}

/* Rows [r0, r1) x columns [c0, c1) of src (rows, cols) into dst (cols, rows): the widest
 * blocks the level has over what they cover, the strips left over at the next level
 * down, scalar last. */
static void transpose_rect(const float *src, int rows, int cols, float *dst, int r0, int r1, int c0,
                           int c1, PrunusCsrLevel level) {
  if (r1 <= r0 || c1 <= c0) return;
  if (level == PRUNUS_CSR_SCALAR) {
    for (int r = r0; r < r1; r++)
      for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
    return;
  }
  int w = level >= PRUNUS_CSR_AVX512 ? 16 : 8;
  int rb = r0 + (r1 - r0) / w * w, cb = c0 + (c1 - c0) / w * w;
  for (int r = r0; r < rb; r += w)
    for (int c = c0; c < cb; c += w) {
      if (w == 16)
        transpose16x16(src + (size_t)r * cols + c, cols, dst + (size_t)c * rows + r, rows);
      else
        transpose8x8(src + (size_t)r * cols + c, cols, dst + (size_t)c * rows + r, rows);
    }
  transpose_rect(src, rows, cols, dst, r0, rb, cb, c1, level - 1); /* the right strip */
  transpose_rect(src, rows, cols, dst, rb, r1, c0, c1, level - 1); /* the bottom strip */
}

/* By 64x64 tiles (16 KB from each side), each covered as transpose_rect does. */
void prunus_transpose(const float *src, int rows, int cols, float *dst) {
  enum { T = 64 };
  PrunusCsrLevel level = prunus_csr_level();
  for (int r0 = 0; r0 < rows; r0 += T)
    for (int c0 = 0; c0 < cols; c0 += T)
      transpose_rect(src, rows, cols, dst, r0, MIN(r0 + T, rows), c0, MIN(c0 + T, cols), level);
}

/* ------------------------------------------------------------------------ */
/* scalar kernels */

static void spmv_rows_scalar(const PrunusCsr *a, const float *x, const float *bias, float *y,
                             int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    float acc0 = 0.0f, acc1 = 0.0f;
    int32_t k = a->ptr[r], end = k + a->len[r];
    for (; k + 1 < end; k += 2) {
      acc0 += a->val[k] * x[a->col[k]];
      acc1 += a->val[k + 1] * x[a->col[k + 1]];
    }
    if (k < end) acc0 += a->val[k] * x[a->col[k]];
    y[r] = acc0 + acc1 + (bias ? bias[r] : 0.0f);
  }
}

static void spmm_t_rows_scalar(const PrunusCsr *a, const float *xT, int N, const float *bias,
                               float *yT, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    float *y = yT + (size_t)r * N;
    float b = bias ? bias[r] : 0.0f;
    for (int n = 0; n < N; n++) y[n] = b;
    for (int32_t k = a->ptr[r]; k < a->ptr[r] + a->len[r]; k++) {
      float v = a->val[k];
      const float *x = xT + (size_t)a->col[k] * N;
      for (int n = 0; n < N; n++) y[n] += v * x[n];
    }
  }
}

/* ------------------------------------------------------------------------ */
/* AVX2 + FMA kernels */

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/* x[c[0..7]] in one vector: the 8 indices come in 4 loads of pairs, the 8 values
 * in scalar loads joined by vinsertps: fewer loads and shuffles than one load per
 * index and _mm256_setr_ps. Not vgatherdps (ymm or zmm): it measured slower than
 * either (docs/perf-log.md, the sparse kernels). */
__attribute__((target("avx2,fma"))) static inline __m256 gather8(const float *x, const int32_t *c) {
  uint64_t p[4];
  for (int i = 0; i < 4; i++) memcpy(&p[i], c + 2 * i, sizeof p[i]);
  __m128 lo = _mm_load_ss(x + (uint32_t)p[0]);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (p[0] >> 32)), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (uint32_t)p[1]), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (p[1] >> 32)), 0x30);
  __m128 hi = _mm_load_ss(x + (uint32_t)p[2]);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (p[2] >> 32)), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (uint32_t)p[3]), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (p[3] >> 32)), 0x30);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

/* Rows are padded to multiples of 8: no tails. */
__attribute__((target("avx2,fma"))) static void spmv_rows_avx2(const PrunusCsr *a, const float *x,
                                                               const float *bias, float *y, int r0,
                                                               int r1) {
  for (int r = r0; r < r1; r++) {
    __m256 acc = _mm256_setzero_ps();
    for (int32_t k = a->ptr[r]; k < a->ptr[r + 1]; k += 8)
      acc = _mm256_fmadd_ps(_mm256_load_ps(a->val + k), gather8(x, a->col + k), acc);
    y[r] = hsum256(acc) + (bias ? bias[r] : 0.0f);
  }
}

/* One switch for the kernels below that keep V vectors of a row in registers: BLOCK(V)
 * for V = 1..8, so each width compiles to its own unrolled loop. */
#define SWITCH_V(BLOCK) \
  switch (V) {          \
  case 1:               \
    BLOCK(1) break;     \
  case 2:               \
    BLOCK(2) break;     \
  case 3:               \
    BLOCK(3) break;     \
  case 4:               \
    BLOCK(4) break;     \
  case 5:               \
    BLOCK(5) break;     \
  case 6:               \
    BLOCK(6) break;     \
  case 7:               \
    BLOCK(7) break;     \
  default:              \
    BLOCK(8) break;     \
  }

/* acc[j] (j < J) = the products of dyT's row block d (V vectors, the last masked with
 * `tail`) with the xT rows of entries k..k+J-1 (V a macro argument,
 * so each width unrolls), not yet summed across lanes. */
#define SDDMM_DOTS_AVX512(V, J)                                                      \
  __m512 acc[J];                                                                     \
  for (int j = 0; j < J; j++) {                                                      \
    const float *x = xT + (size_t)a->col[k + j] * N + n0;                            \
    acc[j] = _mm512_mul_ps(d[V - 1], _mm512_maskz_loadu_ps(tail, x + 16 * (V - 1))); \
    for (int v = 0; v < V - 1; v++)                                                  \
      acc[j] = _mm512_fmadd_ps(d[v], _mm512_loadu_ps(x + 16 * v), acc[j]);           \
  }

/* Columns [n0, n0 + 8*V) of rows [r0, r1): V accumulators per row stay in registers. */
#define SPMM_BLOCK_AVX2(V)                                                                         \
  for (int r = r0; r < r1; r++) {                                                                  \
    __m256 acc[V];                                                                                 \
    __m256 b = _mm256_set1_ps(bias ? bias[r] : 0.0f);                                              \
    for (int v = 0; v < V; v++) acc[v] = b;                                                        \
    for (int32_t k = a->ptr[r]; k < a->ptr[r] + a->len[r]; k++) {                                  \
      __m256 w = _mm256_broadcast_ss(a->val + k);                                                  \
      const float *x = xT + (size_t)a->col[k] * N + n0;                                            \
      for (int v = 0; v < V; v++) acc[v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8 * v), acc[v]); \
    }                                                                                              \
    float *y = yT + (size_t)r * N + n0;                                                            \
    for (int v = 0; v < V; v++) _mm256_storeu_ps(y + 8 * v, acc[v]);                               \
  }

/* Columns in blocks of 64, then one of 32, 16 and 8 as needed (each block runs over
 * the row's nonzeros once: the widest block keeps the most FMAs in flight), then a
 * scalar tail. */
__attribute__((target("avx2,fma"))) static void spmm_t_rows_avx2(const PrunusCsr *a,
                                                                 const float *xT, int N,
                                                                 const float *bias, float *yT,
                                                                 int r0, int r1) {
  int n0 = 0;
  for (; n0 + 64 <= N; n0 += 64) SPMM_BLOCK_AVX2(8)
  if (n0 + 32 <= N) {
    SPMM_BLOCK_AVX2(4)
    n0 += 32;
  }
  if (n0 + 16 <= N) {
    SPMM_BLOCK_AVX2(2)
    n0 += 16;
  }
  if (n0 + 8 <= N) {
    SPMM_BLOCK_AVX2(1)
    n0 += 8;
  }
  if (n0 < N) {
    for (int r = r0; r < r1; r++) {
      float *y = yT + (size_t)r * N;
      float b = bias ? bias[r] : 0.0f;
      for (int n = n0; n < N; n++) y[n] = b;
      for (int32_t k = a->ptr[r]; k < a->ptr[r] + a->len[r]; k++) {
        float v = a->val[k];
        const float *x = xT + (size_t)a->col[k] * N;
        for (int n = n0; n < N; n++) y[n] += v * x[n];
      }
    }
  }
}
#undef SPMM_BLOCK_AVX2

/* ------------------------------------------------------------------------ */
/* AVX-512F kernel: SpMM with zmm registers: half the instructions of the AVX2 kernel
 * for the same FMAs, so it is faster even where the CPU splits a zmm FMA in two
 * (docs/perf-log.md) */

/* Columns [n0, n0 + 16*V) of rows [r0, r1), the last vector masked with `tail`. Two
 * sets of accumulators, for even and odd nonzeros: with V = 1 or 2 one set would
 * wait on the FMA latency (4 cycles) at every nonzero. */
#define SPMM_BLOCK_AVX512(V, tail)                                                                \
  for (int r = r0; r < r1; r++) {                                                                 \
    __m512 acc[V], odd[V];                                                                        \
    __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);                                             \
    for (int v = 0; v < V; v++) acc[v] = b, odd[v] = _mm512_setzero_ps();                         \
    int32_t k = a->ptr[r], end = k + a->len[r];                                                   \
    for (; k + 1 < end; k += 2) {                                                                 \
      __m512 w = _mm512_set1_ps(a->val[k]), u = _mm512_set1_ps(a->val[k + 1]);                    \
      const float *x = xT + (size_t)a->col[k] * N + n0;                                           \
      const float *z = xT + (size_t)a->col[k + 1] * N + n0;                                       \
      for (int v = 0; v < V - 1; v++) {                                                           \
        acc[v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * v), acc[v]);                         \
        odd[v] = _mm512_fmadd_ps(u, _mm512_loadu_ps(z + 16 * v), odd[v]);                         \
      }                                                                                           \
      acc[V - 1] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(tail, x + 16 * (V - 1)), acc[V - 1]); \
      odd[V - 1] = _mm512_fmadd_ps(u, _mm512_maskz_loadu_ps(tail, z + 16 * (V - 1)), odd[V - 1]); \
    }                                                                                             \
    if (k < end) {                                                                                \
      __m512 w = _mm512_set1_ps(a->val[k]);                                                       \
      const float *x = xT + (size_t)a->col[k] * N + n0;                                           \
      for (int v = 0; v < V - 1; v++)                                                             \
        acc[v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * v), acc[v]);                         \
      acc[V - 1] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(tail, x + 16 * (V - 1)), acc[V - 1]); \
    }                                                                                             \
    float *y = yT + (size_t)r * N + n0;                                                           \
    for (int v = 0; v < V - 1; v++) _mm512_storeu_ps(y + 16 * v, _mm512_add_ps(acc[v], odd[v]));  \
    _mm512_mask_storeu_ps(y + 16 * (V - 1), tail, _mm512_add_ps(acc[V - 1], odd[V - 1]));         \
  }

/* Columns in blocks of 128, then one of 64 and 32 as needed, then the last 1..31
 * with a masked vector. */
__attribute__((target("avx512f"))) static void spmm_t_rows_avx512(const PrunusCsr *a,
                                                                  const float *xT, int N,
                                                                  const float *bias, float *yT,
                                                                  int r0, int r1) {
  const __mmask16 all = 0xffff;
  int n0 = 0;
  for (; n0 + 128 <= N; n0 += 128) SPMM_BLOCK_AVX512(8, all)
  if (n0 + 64 <= N) {
    SPMM_BLOCK_AVX512(4, all)
    n0 += 64;
  }
  if (n0 + 32 <= N) {
    SPMM_BLOCK_AVX512(2, all)
    n0 += 32;
  }
  int rest = N - n0; /* 0..31 */
  if (rest > 16) {
    __mmask16 tail = prunus_lanes_mask(rest - 16);
    SPMM_BLOCK_AVX512(2, tail)
  } else if (rest > 0) {
    __mmask16 tail = prunus_lanes_mask(rest);
    SPMM_BLOCK_AVX512(1, tail)
  }
}
#undef SPMM_BLOCK_AVX512

/* ------------------------------------------------------------------------ */
/* AVX-512 SpMV over the slices (prunus_csr_slices_build) */

/* Groups [g0, g1): a group's 16 outputs in two accumulators, even and odd slices of
 * each chunk, added at the end; x's chunk is two vectors (masked past cols), each
 * slice's indices pick its 16 values from them, and a place whose index carries
 * SLICE_EMPTY adds nothing. */
#define SLICE_FMA(t, acc)                                                                      \
  do {                                                                                         \
    __m512i k =                                                                                \
        _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ix + (size_t)(t)*SLICE_ROWS))); \
    acc = _mm512_mask3_fmadd_ps(_mm512_load_ps(w + (size_t)(t)*SLICE_ROWS),                    \
                                _mm512_permutex2var_ps(lo, k, hi), acc,                        \
                                _mm512_testn_epi32_mask(k, empty));                            \
  } while (0)
__attribute__((target("avx512f"))) static void spmv_slices_avx512(const PrunusCsr *a,
                                                                  const float *x, const float *bias,
                                                                  float *y, int g0, int g1) {
  const struct PrunusCsrSlices *s = a->slices;
  for (int g = g0; g < g1; g++) {
    int r0 = g * SLICE_ROWS;
    __mmask16 rows = prunus_lanes_mask(a->rows - r0);
    __m512 even = bias ? _mm512_maskz_loadu_ps(rows, bias + r0) : _mm512_setzero_ps();
    __m512 odd = _mm512_setzero_ps();
    const __m512i empty = _mm512_set1_epi32(SLICE_EMPTY);
    for (int32_t q = s->group_run[g]; q < s->group_run[g + 1]; q++) {
      const SliceRun *run = &s->run[q];
      int left = a->cols - run->col0;
      __m512 lo = _mm512_maskz_loadu_ps(prunus_lanes_mask(left), x + run->col0);
      __m512 hi = left > 16
                      ? _mm512_maskz_loadu_ps(prunus_lanes_mask(left - 16), x + run->col0 + 16)
                      : _mm512_setzero_ps();
      const uint8_t *ix = s->idx + (size_t)run->first * SLICE_ROWS;
      const float *w = s->val + (size_t)run->first * SLICE_ROWS;
      int t = 0;
      for (; t + 2 <= run->n; t += 2) {
        SLICE_FMA(t, even);
        SLICE_FMA(t + 1, odd);
      }
      if (t < run->n) SLICE_FMA(t, even);
    }
    _mm512_mask_storeu_ps(y + r0, rows, _mm512_add_ps(even, odd));
  }
}
#undef SLICE_FMA

/* ------------------------------------------------------------------------ */
/* SDDMM: g[k] = <dyT row r, xT row col[k]> over the stored entries of row r. Each
 * kernel keeps a block of dyT's row in registers and takes the row's entries 8 (AVX-512)
 * or 4 (AVX2) at a time, one accumulator each, reduced by a transposing add tree.
 * Rows are padded to multiples of 8 entries: no tails over k. */

static void sddmm_t_rows_scalar(const PrunusCsr *a, const float *dyT, const float *xT, int N,
                                float *g, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    const float *dy = dyT + (size_t)r * N;
    for (int32_t k = a->ptr[r]; k < a->ptr[r + 1]; k++) {
      const float *x = xT + (size_t)a->col[k] * N;
      float acc = 0.0f;
      for (int n = 0; n < N; n++) acc += dy[n] * x[n];
      g[k] = acc;
    }
  }
}

/* The sums of 4 vectors of 8, as one vector of 4. */
__attribute__((target("avx2,fma"))) static inline __m128 sum4x8(__m256 a0, __m256 a1, __m256 a2,
                                                                __m256 a3) {
  __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* Columns [n0, n0 + 8*V) (the last vector masked to `tail` lanes) of rows [r0, r1). */
#define SDDMM_BLOCK_AVX2(V)                                                                      \
  for (int r = r0; r < r1; r++) {                                                                \
    const float *dy = dyT + (size_t)r * N + n0;                                                  \
    __m256 d[V];                                                                                 \
    for (int v = 0; v < V - 1; v++) d[v] = _mm256_loadu_ps(dy + 8 * v);                          \
    d[V - 1] = _mm256_maskload_ps(dy + 8 * (V - 1), tail);                                       \
    for (int32_t k = a->ptr[r]; k < a->ptr[r + 1]; k += 4) {                                     \
      __m256 acc[4];                                                                             \
      for (int j = 0; j < 4; j++) {                                                              \
        const float *x = xT + (size_t)a->col[k + j] * N + n0;                                    \
        acc[j] = _mm256_mul_ps(d[0], V == 1 ? _mm256_maskload_ps(x, tail) : _mm256_loadu_ps(x)); \
        for (int v = 1; v < V - 1; v++)                                                          \
          acc[j] = _mm256_fmadd_ps(d[v], _mm256_loadu_ps(x + 8 * v), acc[j]);                    \
        if (V > 1)                                                                               \
          acc[j] = _mm256_fmadd_ps(d[V - 1], _mm256_maskload_ps(x + 8 * (V - 1), tail), acc[j]); \
      }                                                                                          \
      __m128 s = sum4x8(acc[0], acc[1], acc[2], acc[3]);                                         \
      if (n0 > 0) s = _mm_add_ps(s, _mm_loadu_ps(g + k));                                        \
      _mm_storeu_ps(g + k, s);                                                                   \
    }                                                                                            \
  }

/* Columns in blocks of up to 64 (8 vectors of dyT's row in registers). */
__attribute__((target("avx2,fma"))) static void sddmm_t_rows_avx2(const PrunusCsr *a,
                                                                  const float *dyT, const float *xT,
                                                                  int N, float *g, int r0, int r1) {
  for (int n0 = 0; n0 < N; n0 += 64) {
    int cols = MIN(64, N - n0), V = (cols + 7) / 8, last = cols - 8 * (V - 1);
    __m256i tail =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(last), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    SWITCH_V(SDDMM_BLOCK_AVX2)
  }
}
#undef SDDMM_BLOCK_AVX2

/* The sums of 8 vectors of 16, as one vector of 8. */
__attribute__((target("avx512f"))) static inline __m256 sum8x16(const __m512 *a) {
  __m256 h[8];
  for (int j = 0; j < 8; j++)
    h[j] = _mm256_add_ps(_mm512_castps512_ps256(a[j]),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[j]), 1)));
  __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
  __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(h[4], h[5]), _mm256_hadd_ps(h[6], h[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}

/* Columns [n0, n0 + 16*V) (the last vector masked with `tail`) of rows [r0, r1). */
#define SDDMM_BLOCK_AVX512(V)                                            \
  for (int r = r0; r < r1; r++) {                                        \
    const float *dy = dyT + (size_t)r * N + n0;                          \
    __m512 d[V];                                                         \
    for (int v = 0; v < V - 1; v++) d[v] = _mm512_loadu_ps(dy + 16 * v); \
    d[V - 1] = _mm512_maskz_loadu_ps(tail, dy + 16 * (V - 1));           \
    for (int32_t k = a->ptr[r]; k < a->ptr[r + 1]; k += 8) {             \
      SDDMM_DOTS_AVX512(V, 8)                                            \
      __m256 s = sum8x16(acc);                                           \
      if (n0 > 0) s = _mm256_add_ps(s, _mm256_loadu_ps(g + k));          \
      _mm256_storeu_ps(g + k, s);                                        \
    }                                                                    \
  }

/* Columns in blocks of up to 128 (8 vectors of dyT's row in registers). */
__attribute__((target("avx512f"))) static void sddmm_t_rows_avx512(const PrunusCsr *a,
                                                                   const float *dyT,
                                                                   const float *xT, int N, float *g,
                                                                   int r0, int r1) {
  for (int n0 = 0; n0 < N; n0 += 128) {
    int cols = MIN(128, N - n0), V = (cols + 15) / 16;
    __mmask16 tail = prunus_lanes_mask(cols - 16 * (V - 1));
    SWITCH_V(SDDMM_BLOCK_AVX512)
  }
}
#undef SDDMM_BLOCK_AVX512

/* ------------------------------------------------------------------------ */
/* column-blocked AVX-512 kernels (training): rows [r0, r1) visit one block of the
 * operand's rows at a time, accumulating into their output rows (SpMM) or into g
 * (SDDMM) block by block; samples in chunks of 128 (8 vectors, the last masked). */

/* Rows [r0, r1) of one column block, samples [n0, n0 + 16*V): y += its entries' products. */
#define SPMM_BLOCKED_AVX512(V)                                                                    \
  for (int r = r0; r < r1; r++) {                                                                 \
    int32_t k = s[r], end = e[r];                                                                 \
    if (k == end) continue;                                                                       \
    float *y = yT + (size_t)r * N + n0;                                                           \
    __m512 acc[V];                                                                                \
    for (int v = 0; v < V - 1; v++) acc[v] = _mm512_loadu_ps(y + 16 * v);                         \
    acc[V - 1] = _mm512_maskz_loadu_ps(tail, y + 16 * (V - 1));                                   \
    for (; k < end; k++) {                                                                        \
      __m512 w = _mm512_set1_ps(a->val[k]);                                                       \
      const float *x = xT + (size_t)a->col[k] * N + n0;                                           \
      for (int v = 0; v < V - 1; v++)                                                             \
        acc[v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * v), acc[v]);                         \
      acc[V - 1] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(tail, x + 16 * (V - 1)), acc[V - 1]); \
    }                                                                                             \
    for (int v = 0; v < V - 1; v++) _mm512_storeu_ps(y + 16 * v, acc[v]);                         \
    _mm512_mask_storeu_ps(y + 16 * (V - 1), tail, acc[V - 1]);                                    \
  }

__attribute__((target("avx512f"))) static void spmm_t_rows_blocked_avx512(
    const PrunusCsr *a, const PrunusCsrBlocks *blk, const float *xT, int N, const float *bias,
    float *yT, int r0, int r1) {
  for (int n0 = 0; n0 < N; n0 += 128) {
    int cols = MIN(128, N - n0), V = (cols + 15) / 16;
    __mmask16 tail = prunus_lanes_mask(cols - 16 * (V - 1));
    for (int r = r0; r < r1; r++) {
      __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);
      float *y = yT + (size_t)r * N + n0;
      for (int v = 0; v < V - 1; v++) _mm512_storeu_ps(y + 16 * v, b);
      _mm512_mask_storeu_ps(y + 16 * (V - 1), tail, b);
    }
    for (int b = 0; b < blk->n_blocks; b++) {
      const int32_t *s = blk->start + (size_t)b * blk->rows, *e = s + blk->rows;
      SWITCH_V(SPMM_BLOCKED_AVX512)
    }
  }
}
#undef SPMM_BLOCKED_AVX512

/* The sums of 4 vectors of 16, as one vector of 4. */
__attribute__((target("avx512f"))) static inline __m128 sum4x16(const __m512 *a) {
  __m256 h[4];
  for (int j = 0; j < 4; j++)
    h[j] = _mm256_add_ps(_mm512_castps512_ps256(a[j]),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[j]), 1)));
  __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* Rows [r0, r1) of one column block, samples [n0, n0 + 16*V): the entries' dot products
 * 8, then 4, then 1 at a time, into g (added from the second chunk of samples on). */
#define SDDMM_BLOCKED_AVX512(V)                                                            \
  for (int r = r0; r < r1; r++) {                                                          \
    int32_t k = s[r], end = e[r];                                                          \
    if (k == end) continue;                                                                \
    const float *dy = dyT + (size_t)r * N + n0;                                            \
    __m512 d[V];                                                                           \
    for (int v = 0; v < V - 1; v++) d[v] = _mm512_loadu_ps(dy + 16 * v);                   \
    d[V - 1] = _mm512_maskz_loadu_ps(tail, dy + 16 * (V - 1));                             \
    for (; k + 8 <= end; k += 8) {                                                         \
      SDDMM_DOTS_AVX512(V, 8)                                                              \
      __m256 sum = sum8x16(acc);                                                           \
      if (n0 > 0) sum = _mm256_add_ps(sum, _mm256_loadu_ps(g + k));                        \
      _mm256_storeu_ps(g + k, sum);                                                        \
    }                                                                                      \
    if (k + 4 <= end) {                                                                    \
      SDDMM_DOTS_AVX512(V, 4)                                                              \
      __m128 sum = sum4x16(acc);                                                           \
      if (n0 > 0) sum = _mm_add_ps(sum, _mm_loadu_ps(g + k));                              \
      _mm_storeu_ps(g + k, sum);                                                           \
      k += 4;                                                                              \
    }                                                                                      \
    for (; k < end; k++) {                                                                 \
      const float *x = xT + (size_t)a->col[k] * N + n0;                                    \
      __m512 acc = _mm512_mul_ps(d[V - 1], _mm512_maskz_loadu_ps(tail, x + 16 * (V - 1))); \
      for (int v = 0; v < V - 1; v++)                                                      \
        acc = _mm512_fmadd_ps(d[v], _mm512_loadu_ps(x + 16 * v), acc);                     \
      float sum = _mm512_reduce_add_ps(acc);                                               \
      g[k] = n0 > 0 ? g[k] + sum : sum;                                                    \
    }                                                                                      \
  }

__attribute__((target("avx512f"))) static void sddmm_t_rows_blocked_avx512(
    const PrunusCsr *a, const PrunusCsrBlocks *blk, const float *dyT, const float *xT, int N,
    float *g, int r0, int r1) {
  for (int n0 = 0; n0 < N; n0 += 128) {
    int cols = MIN(128, N - n0), V = (cols + 15) / 16;
    __mmask16 tail = prunus_lanes_mask(cols - 16 * (V - 1));
    for (int b = 0; b < blk->n_blocks; b++) {
      const int32_t *s = blk->start + (size_t)b * blk->rows, *e = s + blk->rows;
      SWITCH_V(SDDMM_BLOCKED_AVX512)
    }
  }
}
#undef SDDMM_BLOCKED_AVX512
#undef SDDMM_DOTS_AVX512
#undef SWITCH_V

/* ------------------------------------------------------------------------ */
/* entry points */

/* One product, shared by the threads of a team: y = A x + bias (SpMV, N == 0) or
 * yT = A xT + bias (SpMM over N columns). Its rows are cut into n_chunks chunks of
 * about equal stored entries, which the threads take in turn: a thread the host or
 * another job slows down takes fewer. */
typedef struct {
  const PrunusCsr *a;
  const float *x;
  int N;
  const float *bias;
  float *y;
  PrunusCsrLevel level;
  int n_chunks;
  atomic_int next;               /* the first chunk nobody took yet */
  const float *dyT;              /* SDDMM (y = g): the other operand; NULL for SpMV and SpMM */
  const PrunusCsrBlocks *blocks; /* column blocks for the blocked kernels, or NULL */
} Product;

/* First row of chunk c of n when rows are split by stored entries. */
static int split_row(const PrunusCsr *a, int c, int n) {
  if (c >= n) return a->rows;
  int64_t target = a->stored * c / n;
  int lo = 0, hi = a->rows;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (a->ptr[mid] < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void product_rows(const Product *q, int r0, int r1) {
  if (q->blocks && q->dyT && q->level >= PRUNUS_CSR_AVX512)
    sddmm_t_rows_blocked_avx512(q->a, q->blocks, q->dyT, q->x, q->N, q->y, r0, r1);
  else if (q->blocks && q->N > 0 && q->level >= PRUNUS_CSR_AVX512)
    spmm_t_rows_blocked_avx512(q->a, q->blocks, q->x, q->N, q->bias, q->y, r0, r1);
  else if (q->dyT) {
    if (q->level >= PRUNUS_CSR_AVX512)
      sddmm_t_rows_avx512(q->a, q->dyT, q->x, q->N, q->y, r0, r1);
    else if (q->level == PRUNUS_CSR_AVX2)
      sddmm_t_rows_avx2(q->a, q->dyT, q->x, q->N, q->y, r0, r1);
    else
      sddmm_t_rows_scalar(q->a, q->dyT, q->x, q->N, q->y, r0, r1);
    for (int r = r0; r < r1; r++) /* the padding ran through the kernels 8 at a time */
      for (int32_t k = q->a->ptr[r] + q->a->len[r]; k < q->a->ptr[r + 1]; k++) q->y[k] = 0.0f;
  } else if (q->N == 0 && q->level >= PRUNUS_CSR_AVX2)
    spmv_rows_avx2(q->a, q->x, q->bias, q->y, r0, r1);
  else if (q->N == 0)
    spmv_rows_scalar(q->a, q->x, q->bias, q->y, r0, r1);
  else if (q->level >= PRUNUS_CSR_AVX512)
    spmm_t_rows_avx512(q->a, q->x, q->N, q->bias, q->y, r0, r1);
  else if (q->level == PRUNUS_CSR_AVX2)
    spmm_t_rows_avx2(q->a, q->x, q->N, q->bias, q->y, r0, r1);
  else
    spmm_t_rows_scalar(q->a, q->x, q->N, q->bias, q->y, r0, r1);
}

/* A thread's share: chunks until none is left (any part may take any chunk). An SpMV
 * over slices cuts its chunks at row groups, by count. */
static void product_part(void *arg, int part, int n_parts) {
  (void)part, (void)n_parts;
  Product *q = arg;
  bool slices = q->N == 0 && q->a->slices && q->level >= PRUNUS_CSR_AVX512;
  int64_t groups = slices ? q->a->slices->groups : 0;
  for (int c; (c = atomic_fetch_add(&q->next, 1)) < q->n_chunks;) {
    if (slices)
      spmv_slices_avx512(q->a, q->x, q->bias, q->y, (int)(groups * c / q->n_chunks),
                         (int)(groups * (c + 1) / q->n_chunks));
    else
      product_rows(q, split_row(q->a, c, q->n_chunks), split_row(q->a, c + 1, q->n_chunks));
  }
}

/* Below this many stored entries (times columns, for SpMM) a product stays on one
 * thread: handing half to a helper costs a round trip between two cores
 * (bench/team_probe measures it), more than half of so little work saves. */
#define SPLIT_MIN_WORK 4096
/* Work of a chunk, at least (one chunk per thread below it): enough that taking a
 * chunk (one atomic add) is noise beside its SpMM, little enough that a thread slowed
 * by other processes ends up taking fewer chunks. */
#define CHUNK_WORK 262144

static void product_run(Product *q, PrunusTeam *team) {
  int64_t work = q->a->stored * (q->N > 0 ? q->N : 1);
  if (work < SPLIT_MIN_WORK || q->a->rows < 2) team = NULL;
  int threads = prunus_team_threads(team);
  q->n_chunks = team ? (int)CLAMP(work / CHUNK_WORK, threads, 8 * threads) : 1;
  atomic_init(&q->next, 0);
  prunus_team_run(team, product_part, q);
}

void prunus_csr_spmv(const PrunusCsr *a, const float *x, const float *bias, float *y,
                     PrunusTeam *team) {
  Product q = {a, x, 0, bias, y, prunus_csr_level(), 0, 0, NULL, NULL};
  product_run(&q, team);
}

void prunus_csr_spmm_t(const PrunusCsr *a, const float *xT, int N, const float *bias, float *yT,
                       PrunusTeam *team) {
  g_return_if_fail(N > 0);
  Product q = {a, xT, N, bias, yT, prunus_csr_level(), 0, 0, NULL, NULL};
  product_run(&q, team);
}

void prunus_csr_spmm_t_blocked(const PrunusCsr *a, const PrunusCsrBlocks *blocks, const float *xT,
                               int N, const float *bias, float *yT, PrunusTeam *team) {
  g_return_if_fail(N > 0 && (!blocks || blocks->rows == a->rows));
  Product q = {a, xT, N, bias, yT, prunus_csr_level(), 0, 0, NULL, blocks};
  product_run(&q, team);
}

void prunus_csr_sddmm_t(const PrunusCsr *a, const PrunusCsrBlocks *blocks, const float *dyT,
                        const float *xT, int N, float *g, PrunusTeam *team) {
  g_return_if_fail(N > 0 && (!blocks || blocks->rows == a->rows));
  Product q = {a, xT, N, NULL, g, prunus_csr_level(), 0, 0, dyT, blocks};
  product_run(&q, team);
}
