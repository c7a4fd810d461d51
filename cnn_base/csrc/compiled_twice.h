/*
 * A loops header compiled twice: into namespace ``base`` for any x86-64 (or other) processor,
 * and, where CNN_BASE_AVX2 is defined (operator_common.h), into ``fast`` for AVX2 with FMA;
 * CNN_BASE_PICK(f(args)) then calls the one this processor runs. The including file names its
 * loops header first:
 *
 *   #define CNN_BASE_LOOPS "conv2d_loops.h"
 *   #include "compiled_twice.h"
 *
 * No include guard: each file with vector loops includes it once, for its own loops.
 */
namespace base {
#include CNN_BASE_LOOPS
}  // namespace base

#ifdef CNN_BASE_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace fast {
#include CNN_BASE_LOOPS
}  // namespace fast
#pragma GCC pop_options
#endif

#undef CNN_BASE_LOOPS
