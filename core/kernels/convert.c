/* convert.c: image bytes to floats by one correctly rounded division each, 16 (8) at a
 * time with AVX-512F (AVX2), in place of a table look-up per byte, which the vector
 * units cannot do faster than scalar loads (measured in docs/perf-log.md, entry of
 * 2026-12-06 02:20). */
#include "convert.h"
#include "csr.h"

#include <immintrin.h>

/* the plain C loop, also the vector kernels' head and tail */
static void bytes_over_scalar(const uint8_t *src, float divisor, float *dst, size_t n) {
  for (size_t j = 0; j < n; j++) dst[j] = (float)src[j] / divisor;
}

/* Elements before dst + result are aligned to `bytes` (at most n). */
static size_t head_to_alignment(const float *dst, size_t n, size_t bytes) {
  size_t mis = (uintptr_t)dst % bytes;
  if (mis == 0) return 0;
  if (mis % sizeof(float) != 0) return n; /* never aligns: all scalar */
  return MIN(n, (bytes - mis) / sizeof(float));
}

__attribute__((target("avx512f"))) static void bytes_over_avx512(const uint8_t *src, float divisor,
                                                                 float *dst, size_t n,
                                                                 bool streaming) {
  size_t j = streaming ? head_to_alignment(dst, n, 64) : 0;
  bytes_over_scalar(src, divisor, dst, j);
  const __m512 d = _mm512_set1_ps(divisor);
  for (; j + 16 <= n; j += 16) {
    __m512i u = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + j)));
    __m512 v = _mm512_div_ps(_mm512_cvtepi32_ps(u), d);
    if (streaming)
      _mm512_stream_ps(dst + j, v);
    else
      _mm512_storeu_ps(dst + j, v);
  }
  bytes_over_scalar(src + j, divisor, dst + j, n - j);
}

__attribute__((target("avx2"))) static void bytes_over_avx2(const uint8_t *src, float divisor,
                                                            float *dst, size_t n, bool streaming) {
  size_t j = streaming ? head_to_alignment(dst, n, 32) : 0;
  bytes_over_scalar(src, divisor, dst, j);
  const __m256 d = _mm256_set1_ps(divisor);
  for (; j + 8 <= n; j += 8) {
    __m256i u = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + j)));
    __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(u), d);
    if (streaming)
      _mm256_stream_ps(dst + j, v);
    else
      _mm256_storeu_ps(dst + j, v);
  }
  bytes_over_scalar(src + j, divisor, dst + j, n - j);
}

void prunus_bytes_over(const uint8_t *src, float divisor, float *dst, size_t n, bool streaming) {
  switch (prunus_csr_level()) {
  case PRUNUS_CSR_AVX512:
    bytes_over_avx512(src, divisor, dst, n, streaming);
    break;
  case PRUNUS_CSR_AVX2:
    bytes_over_avx2(src, divisor, dst, n, streaming);
    break;
  default:
    bytes_over_scalar(src, divisor, dst, n);
  }
}
