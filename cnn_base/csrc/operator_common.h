/*
 * What the entry points of cnn_base's operators (pool2d.cc, conv2d.cc, batch_norm.cc)
 * share, in one place (header only):
 *
 * - reading integer attributes: MXNet hands an operator its attributes as
 *   text, e.g. kernel "(3, 2)"; parse_ints reads them and refuses, rather than
 *   clamps or wraps, any number above kMaxAttr;
 * - inputs_take_data_dtype: the weights' (or statistics') dtype is the data's;
 * - guarded: every entry point runs its body through it, so that an exception
 *   (out of memory, say) becomes an MXNet error instead of crossing the C
 *   interface, which would abort the interpreter.
 */
#ifndef CNN_BASE_OPERATOR_COMMON_H_
#define CNN_BASE_OPERATOR_COMMON_H_

#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

namespace cnn_base {

// The largest kernel, stride, pad or dilation accepted: every index computed
// from them and from MXNet's 32-bit dimensions then fits int64 with room to
// spare. cnn_base.functional.MAX_POOL_ARG is the same number on the Python side.
constexpr int64_t kMaxAttr = std::numeric_limits<int32_t>::max();

// The integers written in ``text``, e.g. "(3, 2)" -> {3, 2}. False when the
// text holds anything but digits, brackets, commas, spaces (and Python 2's
// 'L'), a minus sign included, or a number above kMaxAttr.
inline bool parse_ints(const std::string& text, std::vector<int64_t>* values) {
  int64_t value = 0;
  bool in_number = false;
  for (char ch : text) {
    if (ch >= '0' && ch <= '9') {
      value = value * 10 + (ch - '0');
      if (value > kMaxAttr) return false;
      in_number = true;
      continue;
    }
    if (std::strchr("()[], L", ch) == nullptr || ch == '\0') return false;
    if (in_number) values->push_back(value);
    value = 0;
    in_number = false;
  }
  if (in_number) values->push_back(value);
  return true;
}

// Type inference's shared step: every input after the data (weights, statistics) takes the
// data's dtype, which MXNet writes as -1 while unknown. False, with an MXNet error naming
// ``op``, when one already has another.
inline bool inputs_take_data_dtype(const char* op, std::vector<int>* in_types) {
  const int dtype = (*in_types)[0];
  for (size_t a = 1; a < in_types->size(); ++a) {
    if ((*in_types)[a] != -1 && (*in_types)[a] != dtype) {
      MX_ERROR_MSG << op << ": input " << a << " has MXNet dtype code " << (*in_types)[a]
                   << ", the data has " << dtype;
      return false;
    }
    (*in_types)[a] = dtype;
  }
  return true;
}

// Runs ``body`` (returning an MXReturnValue) and turns any exception it throws
// into an MXNet error naming the operator ``op`` and the step ``what``.
template <typename Body>
mxnet::ext::MXReturnValue guarded(const char* op, const char* what, Body body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    MX_ERROR_MSG << op << " " << what << ": out of memory";
  } catch (const std::exception& error) {
    MX_ERROR_MSG << op << " " << what << ": " << error.what();
  } catch (...) {
    MX_ERROR_MSG << op << " " << what << ": unknown error";
  }
  return mxnet::ext::MX_FAIL;
}

// Whether this processor runs the loops compiled for AVX2 with FMA, asked once. A file with
// vector loops has them compiled twice (compiled_twice.h), into namespace ``base`` and, where
// CNN_BASE_AVX2 is defined, into ``fast`` under `#pragma GCC target("avx2,fma")`; then
// CNN_BASE_PICK(f(args)) calls fast::f where the processor has AVX2, else base::f.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CNN_BASE_AVX2 1
inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#define CNN_BASE_PICK(call) \
  if (cnn_base::has_avx2()) { fast::call; } else { base::call; }
#else
#define CNN_BASE_PICK(call) base::call;
#endif

}  // namespace cnn_base

#endif  // CNN_BASE_OPERATOR_COMMON_H_
