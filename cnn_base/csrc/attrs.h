/*
 * How cnn_base's C++ kernels read their integer attributes, in one place
 * (header only). MXNet hands an operator its attributes as text, e.g.
 * kernel "(3, 2)"; both kernels read them with parse_ints and refuse, rather
 * than clamp or wrap, any number above kMaxAttr.
 */
#ifndef CNN_BASE_ATTRS_H_
#define CNN_BASE_ATTRS_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

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

}  // namespace cnn_base

#endif  // CNN_BASE_ATTRS_H_
