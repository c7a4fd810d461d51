/*
 * cnn_base's one transpose, shared by the pools' lanes (pool2d.cc) and the conv's turned
 * weight gradient (conv2d_gemm.h). Header only.
 */
#ifndef CNN_BASE_TRANSPOSE_H_
#define CNN_BASE_TRANSPOSE_H_

#include <algorithm>
#include <cstdint>

#ifdef __x86_64__
#include <immintrin.h>
#endif

#include "operator_common.h"   // has_avx2, CNN_BASE_AVX2

namespace cnn_base {

#ifdef CNN_BASE_AVX2
// dst[j ds + i] = src[i ss + j] for the i < rows, j < columns of 4-byte values, the 8 x 8
// tiles through AVX2 registers (eight loads, three rounds of shuffles, eight stores), the
// edges a value at a time. Only called where the processor has AVX2 (moved_across).
__attribute__((target("avx2"), noinline))
inline void moved_across_avx2(const float* src, int64_t ss, float* dst, int64_t ds,
                              int64_t rows, int64_t columns) {
  const int64_t rows8 = rows / 8 * 8, columns8 = columns / 8 * 8;
  for (int64_t i = 0; i < rows8; i += 8) {
    for (int64_t j = 0; j < columns8; j += 8) {
      const float* a = src + i * ss + j;
      __m256 r[8], t[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(a + k * ss);
      for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
      }
      for (int k = 0; k < 8; k += 4) {
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
      }
      float* b = dst + j * ds + i;
      for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(b + k * ds, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
        _mm256_storeu_ps(b + (k + 4) * ds, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
      }
    }
    for (int64_t ii = i; ii < i + 8; ++ii)
      for (int64_t j = columns8; j < columns; ++j) dst[j * ds + ii] = src[ii * ss + j];
  }
  for (int64_t i = rows8; i < rows; ++i)
    for (int64_t j = 0; j < columns; ++j) dst[j * ds + i] = src[i * ss + j];
}
#endif

// dst[j ds + i] = src[i ss + j] for i < rows, j < columns (dst = src^T, ``ss`` and ``ds``
// apart): 4-byte values (float, int32 bits) through AVX2 registers where the processor has
// them, anything else 64 columns of src at a time, so that the rows of dst being written stay
// in the cache.
template <typename V>
void moved_across(const V* src, int64_t ss, V* dst, int64_t ds, int64_t rows, int64_t columns) {
#ifdef CNN_BASE_AVX2
  if (sizeof(V) == sizeof(float) && has_avx2()) {
    moved_across_avx2(reinterpret_cast<const float*>(src), ss, reinterpret_cast<float*>(dst),
                      ds, rows, columns);
    return;
  }
#endif
  for (int64_t j0 = 0; j0 < columns; j0 += 64) {
    const int64_t j1 = std::min(columns, j0 + 64);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = j0; j < j1; ++j) dst[j * ds + i] = src[i * ss + j];
  }
}

}  // namespace cnn_base

#endif  // CNN_BASE_TRANSPOSE_H_
