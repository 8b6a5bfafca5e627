/* csr.c: CSR construction from masked dense weights and the sparse inference
 * kernels: SpMV (one sample) and SpMM over a transposed operand (a batch, or the
 * im2col positions of a conv); AVX2+FMA variants picked at run time, scalar
 * fallback, a pthread split by rows (balanced by nonzeros) for large products. */
#include "csr.h"

#include <immintrin.h>
#include <pthread.h>
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
    while (k % 8) a->col[k] = 0, a->val[k] = 0.0f, k++;
  }
  a->ptr[rows] = k;
  return a;
}

void prunus_csr_free(PrunusCsr *a) {
  if (!a) return;
  free(a->ptr);
  free(a->len);
  free(a->col);
  free(a->val);
  g_free(a);
}

size_t prunus_csr_bytes(const PrunusCsr *a) {
  return (size_t)a->stored * (sizeof(float) + sizeof(int32_t)) + ((size_t)2 * a->rows + 1) * sizeof(int32_t);
}

/* ------------------------------------------------------------------------ */
/* dispatch */

static bool force_scalar = false;

bool prunus_csr_force_scalar(bool on) {
  bool old = force_scalar;
  force_scalar = on;
  return old;
}

static bool cpu_has_avx2(void) {
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return cached;
}

bool prunus_csr_uses_avx2(void) { return !force_scalar && cpu_has_avx2(); }

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

void prunus_transpose(const float *src, int rows, int cols, float *dst) {
  enum { T = 32 };
  bool avx2 = prunus_csr_uses_avx2();
  for (int r0 = 0; r0 < rows; r0 += T) {
    int r1 = r0 + T < rows ? r0 + T : rows;
    for (int c0 = 0; c0 < cols; c0 += T) {
      int c1 = c0 + T < cols ? c0 + T : cols;
      if (avx2 && r1 - r0 == T && c1 - c0 == T) {
        for (int r = r0; r < r1; r += 8)
          for (int c = c0; c < c1; c += 8)
            transpose8x8(src + (size_t)r * cols + c, cols, dst + (size_t)c * rows + r, rows);
        continue;
      }
      for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
    }
  }
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

/* Rows are padded to multiples of 8: no tails. x is gathered with 8 scalar loads
 * rather than vgatherdps, which measured 1.5x slower on AMD Zen 4 (bench/README.md). */
__attribute__((target("avx2,fma"))) static void spmv_rows_avx2(const PrunusCsr *a, const float *x,
                                                              const float *bias, float *y, int r0,
                                                              int r1) {
  for (int r = r0; r < r1; r++) {
    __m256 acc = _mm256_setzero_ps();
    for (int32_t k = a->ptr[r]; k < a->ptr[r + 1]; k += 8) {
      const int32_t *c = a->col + k;
      __m256 xv = _mm256_setr_ps(x[c[0]], x[c[1]], x[c[2]], x[c[3]], x[c[4]], x[c[5]], x[c[6]], x[c[7]]);
      acc = _mm256_fmadd_ps(_mm256_load_ps(a->val + k), xv, acc);
    }
    y[r] = hsum256(acc) + (bias ? bias[r] : 0.0f);
  }
}

/* Columns [n0, n0 + 8*V) of rows [r0, r1): V accumulators per row stay in registers. */
#define SPMM_BLOCK(V)                                                                    \
  for (int r = r0; r < r1; r++) {                                                        \
    __m256 acc[V];                                                                       \
    __m256 b = _mm256_set1_ps(bias ? bias[r] : 0.0f);                                    \
    for (int v = 0; v < V; v++) acc[v] = b;                                              \
    for (int32_t k = a->ptr[r]; k < a->ptr[r] + a->len[r]; k++) {                        \
      __m256 w = _mm256_broadcast_ss(a->val + k);                                        \
      const float *x = xT + (size_t)a->col[k] * N + n0;                                  \
      for (int v = 0; v < V; v++) acc[v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8 * v), acc[v]); \
    }                                                                                    \
    float *y = yT + (size_t)r * N + n0;                                                  \
    for (int v = 0; v < V; v++) _mm256_storeu_ps(y + 8 * v, acc[v]);                     \
  }

__attribute__((target("avx2,fma"))) static void spmm_t_rows_avx2(const PrunusCsr *a,
                                                                const float *xT, int N,
                                                                const float *bias, float *yT,
                                                                int r0, int r1) {
  int n0 = 0;
  for (; n0 + 64 <= N; n0 += 64) SPMM_BLOCK(8)
  for (; n0 + 8 <= N; n0 += 8) SPMM_BLOCK(1)
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
#undef SPMM_BLOCK

/* ------------------------------------------------------------------------ */
/* entry points */

void prunus_csr_spmv(const PrunusCsr *a, const float *x, const float *bias, float *y) {
  if (prunus_csr_uses_avx2())
    spmv_rows_avx2(a, x, bias, y, 0, a->rows);
  else
    spmv_rows_scalar(a, x, bias, y, 0, a->rows);
}

typedef struct {
  const PrunusCsr *a;
  const float *xT;
  int N;
  const float *bias;
  float *yT;
  int r0, r1;
  bool avx2;
} SpmmTask;

static void *spmm_task_run(void *arg) {
  SpmmTask *t = arg;
  if (t->avx2)
    spmm_t_rows_avx2(t->a, t->xT, t->N, t->bias, t->yT, t->r0, t->r1);
  else
    spmm_t_rows_scalar(t->a, t->xT, t->N, t->bias, t->yT, t->r0, t->r1);
  return NULL;
}

/* Below this many multiply-adds a second thread costs more than it saves. */
#define PRUNUS_CSR_THREAD_MIN_WORK 200000

void prunus_csr_spmm_t(const PrunusCsr *a, const float *xT, int N, const float *bias, float *yT,
                       int threads) {
  enum { MAX_THREADS = 2 };
  bool avx2 = prunus_csr_uses_avx2();
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads < 1 || (double)a->nnz * N < PRUNUS_CSR_THREAD_MIN_WORK || a->rows < 2) threads = 1;
  SpmmTask task[MAX_THREADS];
  /* rows split so every thread gets about the same number of nonzeros */
  int r = 0;
  for (int t = 0; t < threads; t++) {
    int64_t target = a->stored * (t + 1) / threads;
    int r1 = r;
    if (t == threads - 1)
      r1 = a->rows;
    else
      while (r1 < a->rows && a->ptr[r1] < target) r1++;
    task[t] = (SpmmTask){a, xT, N, bias, yT, r, r1, avx2};
    r = r1;
  }
  pthread_t tid[MAX_THREADS];
  bool started[MAX_THREADS] = {false};
  for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], NULL, spmm_task_run, &task[t]) == 0;
  spmm_task_run(&task[0]);
  for (int t = 1; t < threads; t++) {
    if (started[t])
      pthread_join(tid[t], NULL);
    else
      spmm_task_run(&task[t]); /* no thread: do its share here */
  }
}
