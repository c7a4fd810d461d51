/*
 * cnn_base's convolution kernel: the chapter's corr2d loop over windows, in C++.
 *
 * ``ops.corr2d_loop`` computes Y[i, j] = (X[i:i+k_h, j:j+k_w] * K).sum() for
 * every output cell. This file runs the same cross-correlation over an NCHW
 * batch, summed over the input channels of each group (corr2d_multi_in_out),
 * with Gluon's stride, padding (zeros on each side), dilation and groups, and
 * registers it with MXNet as the operator ``cnn_base_conv2d`` through MXNet's
 * extension library API (lib_api.h), in the same library as the pooling
 * kernel. The loop is turned so that it vectorizes: a few output channels
 * times a few vectors of an output row are summed in registers over every
 * (input channel, kernel cell) of the window, reading a zero-padded copy of
 * the input planes (corr_tiles). The two backward passes are the same sums
 * read backwards:
 *
 * - dX[n, c] gets K[o, c, i, j] * dY[n, o] through every cell: that is
 *   corr_tiles again, on the padded dY with the kernels flipped and the
 *   channels swapped, once per phase of dX's rows and columns (one phase for
 *   stride 1; s_h x s_w phases, each with its own kernel cells, otherwise);
 * - dK[o, c, i, j] is the sum over the batch and the output cells of dY[n, o]
 *   times the input each cell saw (per vector lane, 12 cells at a time);
 *   db[o] is the sum of dY[n, o].
 *
 * Threads: the library's shared policy (parallel.h), one parallel region per
 * pass; the vector loops are in conv2d_loops.h, compiled for AVX2 + FMA and
 * for the baseline, picked at run time.
 *
 * Every buffer is made before the parallel regions, and every entry point
 * turns an exception (out of memory) into an MXNet error (guarded).
 *
 * float32 and float64 are computed as they are; anything else is refused at
 * type inference (cnn_base.functional.conv2d then uses MXNet operators). The
 * backward overwrites its outputs (the extension API does not pass ``req``),
 * so callers that need gradients added put an ``identity`` in front, as
 * cnn_base.functional.conv2d_native does.
 *
 * Attributes: kernel, stride, pad, dilate as "(a, b)"; num_filter, num_group
 * as integers; no_bias "True"/"False"; relu "True"/"False" (default False; True: the
 * output is relu(conv), relu_in_place and relu_masked in relu.h); input_grad "True"/"False"
 * (default True; False: the backward leaves dX unwritten, for an input whose gradient
 * nobody asks for: autograd's req for it is then null, which the extension API does not
 * pass either; backward below). Inputs X (N, C, H, W), weight
 * (num_filter, C / num_group, k_h, k_w) and, without no_bias, bias (num_filter,).
 */
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

#include "operator_common.h"   // parse_ints, kMaxAttr, guarded: shared by both operators
#include "parallel.h"   // the threading policy shared by cnn_base's kernels
#include "relu.h"       // relu_in_place, relu_masked: the ReLU fused into the conv
#include "transpose.h"  // moved_across: the turned weight gradient's dY (conv2d_gemm.h)

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

typedef std::unordered_map<std::string, std::string> Attrs;

namespace {

// How a call multiplies: kAlgoAuto lets use_gemm (and gemm::use_taps) decide; the others
// force one way (tests check each against the references whatever the rule picks): the
// tiles, im2col + the BLAS, or the BLAS over shifted padded planes wherever they fit
// (gemm::taps_fit; im2col elsewhere).
enum Algo { kAlgoAuto, kAlgoTiles, kAlgoGemm, kAlgoTaps, kAlgoLanes };

struct ConvParams {
  int64_t k_h, k_w, s_h, s_w, p_h, p_w, d_h, d_w, num_filter, groups;
  bool no_bias, relu, input_grad;
  Algo algo;
};

using cnn_base::kMaxAttr;
using cnn_base::parse_ints;

constexpr char kOp[] = "cnn_base_conv2d";   // the name in guarded's messages

bool read_ints(const Attrs& attrs, const char* name, size_t count, int64_t minimum,
               int64_t* out) {
  auto it = attrs.find(name);
  if (it == attrs.end()) {
    MX_ERROR_MSG << "cnn_base_conv2d needs the attribute " << name;
    return false;
  }
  std::vector<int64_t> values;
  const bool parsed = parse_ints(it->second, &values);
  if (count == 2 && values.size() == 1) values.push_back(values[0]);
  if (!parsed || values.size() != count ||
      *std::min_element(values.begin(), values.end()) < minimum) {
    MX_ERROR_MSG << "cnn_base_conv2d: " << name << " must be " << count
                 << " integer(s) from " << minimum << " to " << kMaxAttr << ", got '"
                 << it->second << "'";
    return false;
  }
  for (size_t a = 0; a < count; ++a) out[a] = values[a];
  return true;
}

// A yes/no attribute as Python writes it (True/False, 1/0); ``missing`` when absent.
bool read_bool(const Attrs& attrs, const char* name, bool missing) {
  auto it = attrs.find(name);
  if (it == attrs.end()) return missing;
  return it->second == "True" || it->second == "1" || it->second == "true";
}

bool read_params(const Attrs& attrs, ConvParams* P) {
  int64_t pair[2];
  if (!read_ints(attrs, "kernel", 2, 1, pair)) return false;
  P->k_h = pair[0], P->k_w = pair[1];
  if (!read_ints(attrs, "stride", 2, 1, pair)) return false;
  P->s_h = pair[0], P->s_w = pair[1];
  if (!read_ints(attrs, "pad", 2, 0, pair)) return false;
  P->p_h = pair[0], P->p_w = pair[1];
  if (!read_ints(attrs, "dilate", 2, 1, pair)) return false;
  P->d_h = pair[0], P->d_w = pair[1];
  if (!read_ints(attrs, "num_filter", 1, 1, &P->num_filter)) return false;
  if (!read_ints(attrs, "num_group", 1, 1, &P->groups)) return false;
  P->no_bias = read_bool(attrs, "no_bias", false);
  P->relu = read_bool(attrs, "relu", false);
  P->input_grad = read_bool(attrs, "input_grad", true);
  auto it = attrs.find("algo");
  const std::string algo = it == attrs.end() ? "auto" : it->second;
  if (algo != "auto" && algo != "tiles" && algo != "gemm" && algo != "taps" && algo != "lanes") {
    MX_ERROR_MSG << "cnn_base_conv2d: algo must be 'auto', 'tiles', 'gemm', 'taps' or 'lanes', "
                 << "got '" << algo << "'";
    return false;
  }
  P->algo = algo == "tiles"  ? kAlgoTiles
            : algo == "gemm" ? kAlgoGemm
            : algo == "taps" ? kAlgoTaps
            : algo == "lanes" ? kAlgoLanes
                             : kAlgoAuto;
  if (P->num_filter % P->groups) {
    MX_ERROR_MSG << "cnn_base_conv2d: num_group " << P->groups << " must divide num_filter "
                 << P->num_filter;
    return false;
  }
  return true;
}

// Sizes of one call.
struct Geometry {
  int64_t N, C, H, W, O, G, Cg, Og, KH, KW, OH, OW;
};

int64_t out_length(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t span = d * (k - 1) + 1;
  return n + 2 * p < span ? 0 : (n + 2 * p - span) / s + 1;
}

bool geometry_of(const ConvParams& P, const std::vector<int64_t>& x_shape, Geometry* g) {
  if (x_shape.size() != 4) {
    MX_ERROR_MSG << "cnn_base_conv2d needs a 4-D input (batch, channels, height, width), got "
                 << x_shape.size() << " dimensions";
    return false;
  }
  g->N = x_shape[0], g->C = x_shape[1], g->H = x_shape[2], g->W = x_shape[3];
  g->O = P.num_filter, g->G = P.groups;
  if (g->C % g->G) {
    MX_ERROR_MSG << "cnn_base_conv2d: num_group " << g->G << " must divide the input's "
                 << g->C << " channels";
    return false;
  }
  g->Cg = g->C / g->G, g->Og = g->O / g->G, g->KH = P.k_h, g->KW = P.k_w;
  g->OH = out_length(g->H, P.k_h, P.s_h, P.p_h, P.d_h);
  g->OW = out_length(g->W, P.k_w, P.s_w, P.p_w, P.d_w);
  if (g->OH < 1 || g->OW < 1) {
    // the wording of cnn_base's Python checks, so both paths name both sizes alike
    const bool dilated = P.d_h > 1 || P.d_w > 1;
    MX_ERROR_MSG << "cnn_base_conv2d: input of height and width (" << g->H << ", " << g->W
                 << ") is too small for the " << (dilated ? "dilated kernel" : "kernel") << " ("
                 << P.d_h * (P.k_h - 1) + 1 << ", " << P.d_w * (P.k_w - 1) + 1
                 << ") with padding (" << P.p_h << ", " << P.p_w << ")";
    return false;
  }
  return true;
}


// What a corr2d reads and writes: C_in padded input planes of BH x BW, the
// window's cells and steps, and output planes of OH x OW.
//
// The padded planes are stored with their columns sorted by phase (column
// modulo s_w): each row holds the columns 0, s_w, 2 s_w, ..., then 1, 1 + s_w,
// ..., PW of each, RW = s_w * PW in all. What it buys: with a stride the
// window's columns x * s_w + j * d_w are then consecutive in memory for
// consecutive x, so the vector loops load whole vectors (one instruction)
// instead of gathering them lane by lane (eight scalar loads a vector). For
// s_w = 1 the layout is the plain one. col_off[j] is where kernel column j
// reads in a row (column_offsets), relative to the output column.
//
// src_s_h, src_s_w (0: the same as s_h, s_w) are set by skip_gaps when the
// buffer leaves out the rows (columns) that no window reads.
struct CorrShape {
  int64_t C_in, BH, BW, KH, KW, s_h, s_w, d_h, d_w, OH, OW, O_pad;
  int64_t PW, RW;
  const int64_t* col_off;
  int64_t src_s_h = 0, src_s_w = 0;
};

// A stride longer than the window (span = d (k - 1) + 1) leaves rows (columns)
// of the padded input that no window reads. The buffer then holds only the
// rows that are read: buffer row b is padded row b / span * s + b % span, and
// the corr steps by span in the buffer. What it buys: memory that follows the
// output, not the padding: Conv2D(1, 3, strides=10000, padding=10000) on a
// 3 x 3 input padded planes of 20003 x 20003 (1.6 GB) for a 3 x 3 output;
// its buffer is now 9 x 9. The sums are the same, in the same order.
void skip_gaps(CorrShape* c) {
  const int64_t span_h = (c->KH - 1) * c->d_h + 1, span_w = (c->KW - 1) * c->d_w + 1;
  if (c->s_h > span_h) c->src_s_h = c->s_h, c->s_h = span_h;
  if (c->s_w > span_w) c->src_s_w = c->s_w, c->s_w = span_w;
}

// Which padded row (column) the buffer's row (column) b holds: see skip_gaps.
inline int64_t source_index(int64_t b, int64_t s, int64_t src_s) {
  return src_s == 0 ? b : b / s * src_s + b % s;
}

// What the kernel gradient's loops read: sizes, the shape of a band's padded
// input planes, the steps and the tile (OB output channels x CB taps).
struct WeightGradShape {
  int64_t N, C, O, G, Cg, Og, taps, OH, OW, OWt, BH, RW, s_h;
  int OB, CB;
};

// The kernel gradient's tiles (OB, CB), at most 12 sums, each fitting AVX2's
// 16 vector registers with its CB input vectors and one gradient vector.
constexpr int kGradTiles[][2] = {{12, 1}, {6, 2}, {4, 3}, {2, 5}, {1, 9}};

// The kernel gradient's tile for Og output channels and ``taps`` taps per
// group, by the cost model of tile_shape: OB * CB multiply-adds, OB + CB
// loads, at least the multiply-add's latency per step.
void grad_tile_shape(int64_t Og, int64_t taps, int* OB, int* CB) {
  double best = -1;
  for (const auto& tile : kGradTiles) {
    const int ob = tile[0], cb = tile[1];
    const double step = std::max({ob * cb / 2.0, (ob + cb) / 2.0, 5.0});
    const double cycles = static_cast<double>((Og + ob - 1) / ob) *
                          static_cast<double>((taps + cb - 1) / cb) * step;
    if (best < 0 || cycles < best) best = cycles, *OB = ob, *CB = cb;
  }
}

// The tiles corr_all is compiled for: NB output channels x XV vectors of a row,
// at most 12 sums, so that the sums, the XV input vectors and one broadcast
// kernel value fit AVX2's 16 vector registers (NB XV + XV + 1 <= 16; a tile
// of 3 x 4 needs 17 and measured slower, its sums spilled to the stack).
constexpr int kTiles[][2] = {{12, 1}, {8, 1}, {4, 1}, {2, 1}, {1, 1}, {6, 2}, {4, 2}, {2, 2},
                             {1, 2}, {4, 3}, {2, 3}, {1, 3}, {2, 4}, {1, 4}};

// One output channel is summed in row tiles (corr_rows in conv2d_loops.h) of R rows x XV
// vectors, R XV <= 8 independent sums: (8, 1), (4, 2), (2, 3), (2, 4). XV: the fewest
// vectors of work per row (whole vectors past the row's end count), the longest tile on
// a tie.
int row_tile_vectors(int64_t OW, int64_t lanes) {
  int best = 1;
  int64_t least = -1;
  for (int xv = 1; xv <= 4; ++xv) {
    if (xv > 1 && (xv - 1) * lanes >= OW) continue;       // a whole vector past the row
    const int64_t work = (OW + xv * lanes - 1) / (xv * lanes) * xv;
    if (least < 0 || work <= least) least = work, best = xv;
  }
  return best;
}

// The tile of a corr2d for output rows of OW and ``channels`` output channels:
// the one of kTiles with the fewest estimated cycles. Per (channel, cell) step
// a tile issues NB * XV multiply-adds (two per cycle), loads XV vectors and NB
// kernel values (two per cycle), and waits at least the multiply-add's latency
// (about 5 cycles) before a sum can take the next one; the tiles that cover
// the row and the channels, padded to whole tiles, each take that many steps.
void tile_shape(int64_t OW, int64_t lanes, int64_t channels, int* NB, int* XV) {
  if (channels == 1) {
    *NB = 1, *XV = row_tile_vectors(OW, lanes);
    return;
  }
  double best = -1;
  for (const auto& tile : kTiles) {
    const int nb = tile[0], xv = tile[1];
    if (xv > 1 && (xv - 1) * lanes >= OW) continue;       // a whole vector past the row
    const double step = std::max({nb * xv / 2.0, (nb + xv) / 2.0, 5.0});
    const double cycles = static_cast<double>((OW + xv * lanes - 1) / (xv * lanes)) *
                          static_cast<double>((channels + nb - 1) / nb) * step;
    if (best < 0 || cycles < best) best = cycles, *NB = nb, *XV = xv;
  }
}

// The padded buffer a corr2d with this tile reads: the rows and columns it
// reaches, and the phase-sorted row (PW columns per phase, RW in all).
void buffer_shape(CorrShape* c, int XV, int64_t lanes) {
  const int64_t TW = XV * lanes;
  const int64_t OW_tiles = (c->OW + TW - 1) / TW * TW;
  c->BH = (c->OH - 1) * c->s_h + (c->KH - 1) * c->d_h + 1;
  c->BW = (OW_tiles - 1) * c->s_w + (c->KW - 1) * c->d_w + 1;
  c->PW = (c->BW + c->s_w - 1) / c->s_w;
  c->RW = c->s_w * c->PW;
}

// Where kernel column j reads in a phase-sorted row, for output column 0:
// column j d_w is in phase (j d_w) mod s_w, at (j d_w) div s_w.
std::vector<int64_t> column_offsets(const CorrShape& c) {
  std::vector<int64_t> off(c.KW);
  for (int64_t j = 0; j < c.KW; ++j)
    off[j] = (j * c.d_w) % c.s_w * c.PW + (j * c.d_w) / c.s_w;
  return off;
}

// The smallest u >= 0 with u s >= a (a may be negative).
inline int64_t first_multiple(int64_t a, int64_t s) { return a <= 0 ? 0 : (a + s - 1) / s; }

// pad_row_by_phase for stride 2 when every input column lands inside its phase (false
// otherwise, nothing written): input column x goes to phase (x + left) mod 2 at (x + left)
// div 2, so the even columns make one phase from left div 2 on, the odd ones the other
// from (left + 1) div 2 on; zeros around them. What it buys: one loop that loads pairs of
// columns and splits them with vector shuffles (target_clones: an AVX2 copy besides the
// baseline one), where one strided copy per phase moved a value at a time.
template <typename T>
__attribute__((target_clones("avx2", "default")))
bool pad_row_in_halves(const T* in, int64_t W, T* out, int64_t PW, int64_t left) {
  const int64_t e0 = left / 2, o0 = (left + 1) / 2, evens = (W + 1) / 2, odds = W / 2;
  if (left < 0 || e0 + evens > PW || o0 + odds > PW) return false;
  T* even = out + left % 2 * PW;
  T* odd = out + (left + 1) % 2 * PW;
  std::fill(even, even + e0, T(0));
  std::fill(odd, odd + o0, T(0));
  for (int64_t u = 0; u < odds; ++u) {
    even[e0 + u] = in[2 * u];
    odd[o0 + u] = in[2 * u + 1];
  }
  if (evens > odds) even[e0 + odds] = in[W - 1];
  std::fill(even + e0 + evens, even + PW, T(0));
  std::fill(odd + o0 + odds, odd + PW, T(0));
  return true;
}

// One phase-sorted row (RW values, no columns skipped) of the input row ``in`` (W values)
// moved right by ``left``: phase q's u-th value is input column q + u s - left, zero outside
// the row. What it buys: each phase is zeros, a strided copy and zeros, where a test of
// every column (with a division) made the padding of a stride-2 depthwise conv cost four
// times its multiply-adds.
template <typename T>
void pad_row_by_phase(const T* in, int64_t W, T* out, const CorrShape& c, int64_t left) {
  const int64_t s = c.s_w;
  if (s == 2 && pad_row_in_halves(in, W, out, c.PW, left)) return;
  for (int64_t q = 0; q < s; ++q) {
    T* phase = out + q * c.PW;
    const int64_t u0 = std::min(first_multiple(left - q, s), c.PW);
    const int64_t u1 = std::clamp(first_multiple(W + left - q, s), u0, c.PW);
    std::fill(phase, phase + u0, T(0));
    const T* from = in + q + u0 * s - left;
    for (int64_t u = u0; u < u1; ++u) phase[u] = from[(u - u0) * s];
    std::fill(phase + u1, phase + c.PW, T(0));
  }
}

// dst (BH rows of c.RW, phase-sorted as CorrShape says) = src (H x W) moved
// down by ``top`` rows and right by ``left`` columns (negative: cut off),
// zeros elsewhere; with skip_gaps, only the padded rows and columns it keeps.
template <typename T>
void pad_plane(const T* src, int64_t H, int64_t W, T* dst, const CorrShape& c, int64_t top,
               int64_t left) {
  const int64_t BW = c.BW, s = c.s_w;
  const int64_t lo = std::clamp<int64_t>(left, 0, BW);
  const int64_t hi = std::max(lo, std::clamp<int64_t>(left + W, 0, BW));
  for (int64_t br = 0; br < c.BH; ++br) {
    T* out = dst + br * c.RW;
    const int64_t r = source_index(br, c.s_h, c.src_s_h) - top;
    if (r < 0 || r >= H) {
      std::fill(out, out + c.RW, T(0));
      continue;
    }
    if (s == 1 && c.src_s_w == 0) {
      std::fill(out, out + lo, T(0));
      if (hi > lo) std::memcpy(out + lo, src + r * W + (lo - left), (hi - lo) * sizeof(T));
      std::fill(out + hi, out + BW, T(0));
      continue;
    }
    const T* in = src + r * W;
    if (c.src_s_w == 0) {
      pad_row_by_phase(in, W, out, c, left);
      continue;
    }
    for (int64_t q = 0; q < s; ++q) {         // buffer column q + u s: padded column pc
      T* phase = out + q * c.PW;
      for (int64_t u = 0; u < c.PW; ++u) {
        const int64_t col = source_index(q + u * s, s, c.src_s_w) - left;
        phase[u] = col >= 0 && col < W ? in[col] : T(0);
      }
    }
  }
}

// The vector loops (conv2d_loops.h), compiled once per target; see there.
#define CNN_BASE_LOOPS "conv2d_loops.h"
#include "compiled_twice.h"   // namespaces base and fast, CNN_BASE_PICK (operator_common.h)

// The loop items, each running the loops compiled for this processor.
template <typename T>
void corr_item(const CorrShape& c, int NB, int XV, const T* In, const T* Wt, int64_t channels,
               const T* bias, T* Out, int64_t out_stride) {
  CNN_BASE_PICK(corr_all<T>(c, NB, XV, In, Wt, channels, bias, Out, out_stride))
}

template <typename T>
void weight_grad_item(const WeightGradShape& w, const T* dYb, const T* Xb,
                      const int64_t* tap_off, int64_t y0, int64_t y1, T* part) {
  CNN_BASE_PICK(weight_grad_band<T>(w, dYb, Xb, tap_off, y0, y1, part))
}
template <typename T>
void forward_lanes_item(const ConvParams& P, const Geometry& g, int64_t BW, const T* Xl,
                        const T* Kl, const T* Bl, T* Yl) {
  CNN_BASE_PICK(forward_lanes<T>(P, g, BW, Xl, Kl, Bl, Yl))
}

template <typename T>
void backward_lanes_item(const ConvParams& P, const Geometry& g, int64_t BW, const T* dYl,
                         const T* Xl, const T* Kl, T* dXl, T* dKl) {
  CNN_BASE_PICK(backward_lanes<T>(P, g, BW, dYl, Xl, Kl, dXl, dKl))
}

template <typename T>
void planes_to_cells_item(const T* plane, int64_t size, int64_t cols, int lanes, T* dst,
                          int64_t BW, int64_t top, int64_t left) {
  CNN_BASE_PICK(planes_to_cells<T>(plane, size, cols, lanes, dst, BW, top, left))
}

template <typename T>
void cells_to_planes_item(const T* src, int64_t BW, int64_t top, int64_t left, int64_t size,
                          int64_t cols, int lanes, T* plane) {
  CNN_BASE_PICK(cells_to_planes<T>(src, BW, top, left, size, cols, lanes, plane))
}

template <typename T>
void dot_rows_item(int64_t M, int64_t N, int64_t L, const T* A, int64_t lda, const T* B,
                   int64_t ldb, T beta, T* C, int64_t ldc) {
  CNN_BASE_PICK(dot_rows<T>(M, N, L, A, lda, B, ldb, beta, C, ldc))
}

// Values in one vector of the loops (32 bytes).
template <typename T>
constexpr int kLanes = base::Lanes<T>::L;

// A corr2d's tile (NB x XV), padded buffer and column offsets, for output
// rows of c->OW and ``channels`` output channels; c->col_off points into
// ``col_off``.
template <typename T>
void plan_corr(CorrShape* c, int64_t channels, int* NB, int* XV, std::vector<int64_t>* col_off) {
  tile_shape(c->OW, kLanes<T>, channels, NB, XV);
  buffer_shape(c, *XV, kLanes<T>);
  *col_off = column_offsets(*c);
  c->col_off = col_off->data();
  c->O_pad = (channels + *NB - 1) / *NB * *NB;
}

// The corr2d of every image and group: the group's c.C_in planes of ``src``
// (src_channels planes of H x W per image), moved down by ``top`` rows and
// right by ``left`` columns into a zero-padded buffer, times the group's packed
// kernels ``Wt`` (c.C_in x k_h x k_w x c.O_pad per group), plus ``bias``,
// into the group's output planes of ``out`` (out_channels planes of
// c.OH x c.OW per image). One loop item per (image, group); each thread's
// buffer is made before the parallel region, so nothing inside can throw.
// The forward pass and every phase of the input gradient are this.
template <typename T>
void corr_batch(const Geometry& g, const CorrShape& c, int NB, int XV, const T* src,
                int64_t src_channels, int64_t H, int64_t W, int64_t top, int64_t left,
                const T* Wt, const T* bias, T* out, int64_t out_channels) {
  const int64_t out_per_group = out_channels / g.G, plane = c.BH * c.RW;
  const int64_t weights_per_group = c.C_in * c.KH * c.KW * c.O_pad;
  const int64_t items = g.N * g.G;
  const int n_threads = cnn_base::threads_for(
      items, out_per_group * c.C_in * c.KH * c.KW * c.OH * c.OW);
  std::vector<T> buffers(n_threads * c.C_in * plane);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    T* buffer = buffers.data() + omp_get_thread_num() * c.C_in * plane;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / g.G, grp = item % g.G;
      for (int64_t ci = 0; ci < c.C_in; ++ci)
        pad_plane(src + (n * src_channels + grp * c.C_in + ci) * H * W, H, W,
                  buffer + ci * plane, c, top, left);
      corr_item(c, NB, XV, static_cast<const T*>(buffer), Wt + grp * weights_per_group,
                out_per_group, bias != nullptr ? bias + grp * out_per_group : nullptr,
                out + (n * out_channels + grp * out_per_group) * c.OH * c.OW, c.OH * c.OW);
    }
  }
}

// The kernels as corr_tiles reads them, per group: Wt[grp][a][m][m2][b], the
// corr's output channel b innermost and zero-padded to O_pad, = K[o][c][rows[m]][cols[m2]].
// For the forward pass the corr's inputs a are the conv's input channels c
// and its outputs b the conv's output channels o; for the input gradient
// (``swap``) the other way round, with each phase's kernel rows and columns.
template <typename T>
std::vector<T> pack_kernels(const Geometry& g, const T* K, const std::vector<int64_t>& rows,
                            const std::vector<int64_t>& cols, bool swap, int64_t O_pad) {
  const int64_t A = swap ? g.Og : g.Cg, B = swap ? g.Cg : g.Og;
  const int64_t kh = rows.size(), kw = cols.size();
  std::vector<T> Wt(g.G * A * kh * kw * O_pad, T(0));
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t m = 0; m < kh; ++m)
        for (int64_t m2 = 0; m2 < kw; ++m2)
          for (int64_t b = 0; b < B; ++b) {
            const int64_t o = grp * g.Og + (swap ? a : b), c = swap ? b : a;
            Wt[(((grp * A + a) * kh + m) * kw + m2) * O_pad + b] =
                K[((o * g.Cg + c) * g.KH + rows[m]) * g.KW + cols[m2]];
          }
  return Wt;
}

// 0, 1, ..., n - 1: every kernel row (or column), in order.
std::vector<int64_t> all_of(int64_t n) {
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  return all;
}

template <typename T>
void tiles_forward(const ConvParams& P, const Geometry& g, const T* X, const T* K, const T* B,
                   T* Y) {
  CorrShape c{g.Cg, 0, 0, g.KH, g.KW, P.s_h, P.s_w, P.d_h, P.d_w, g.OH, g.OW, 0, 0, 0, nullptr};
  skip_gaps(&c);
  int NB, XV;
  std::vector<int64_t> col_off;
  plan_corr<T>(&c, g.Og, &NB, &XV, &col_off);
  const std::vector<T> Wt =
      pack_kernels(g, K, all_of(g.KH), all_of(g.KW), /*swap=*/false, c.O_pad);
  corr_batch(g, c, NB, XV, X, g.C, g.H, g.W, P.p_h, P.p_w, Wt.data(), B, Y, g.O);
}

// The kernel rows (or columns) that reach the input rows a, a + s, a + 2 s, ...
// (one phase): the i with a + p - i d divisible by s, in decreasing order.
// Input row a + s u gets them from the output rows u + e, where e = e0 for the
// first and grows by ``step`` from one to the next.
struct PhaseTaps {
  std::vector<int64_t> taps;
  int64_t e0, step;
};

PhaseTaps phase_taps(int64_t a, int64_t k, int64_t s, int64_t p, int64_t d) {
  PhaseTaps t{{}, 0, 1};
  for (int64_t i = k - 1; i >= 0; --i)
    if ((a + p - i * d) % s == 0) t.taps.push_back(i);
  if (!t.taps.empty()) t.e0 = (a + p - t.taps[0] * d) / s;        // exact
  if (t.taps.size() > 1) t.step = (t.taps[0] - t.taps[1]) * d / s;  // exact
  return t;
}

// dX from its phases: cell (a + s_h u, b + s_w v) of every plane is cell (u, v) of phase
// (a, b), whose N C planes of OHa x OWb start at phases[a s_w + b] (null: zeros). What it
// buys: one pass over dX, row by row, where writing each phase's cells straight into dX
// took one pass over all of dX per phase (a sixth of a stride-2 depthwise layer's step).
template <typename T>
void interleave_phases(const Geometry& g, const ConvParams& P, const std::vector<const T*>& phases,
                       T* dX) {
  const int64_t planes = g.N * g.C;
  const int n_threads = cnn_base::threads_for(planes, g.H * g.W);
#pragma omp parallel for num_threads(n_threads) if (n_threads > 1) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    for (int64_t y = 0; y < g.H; ++y) {
      const int64_t a = y % P.s_h, u = y / P.s_h, OHa = (g.H - a + P.s_h - 1) / P.s_h;
      for (int64_t b = 0; b < std::min(P.s_w, g.W); ++b) {
        const int64_t OWb = (g.W - b + P.s_w - 1) / P.s_w;
        const T* from = phases[a * P.s_w + b];
        T* to = dX + (plane * g.H + y) * g.W + b;
        if (from == nullptr) {
          for (int64_t v = 0; v < OWb; ++v) to[v * P.s_w] = T(0);
          continue;
        }
        from += (plane * OHa + u) * OWb;
        for (int64_t v = 0; v < OWb; ++v) to[v * P.s_w] = from[v];
      }
    }
  }
}

// ``count`` values of MXNet's temporary workspace for this call (OpResource::alloc_cpu:
// one request per call, as MXNet hands out one space per operator). What it buys: MXNet
// keeps the space from call to call; a std::vector of the 40 MB a 512-channel layer takes
// was mapped, zeroed and unmapped on every call, which made a hybridized 512 -> 512 conv on
// 3 x 3 planes 1.65x the built-in (1.0x imperatively, where the allocator happened to keep
// it).
template <typename T>
T* workspace(const OpResource& res, int64_t count) {
  void* space = res.alloc_cpu(static_cast<int>(count * sizeof(T)));
  if (space == nullptr) throw std::bad_alloc();
  return static_cast<T*>(space);
}

// ``count`` values of scratch: MXNet's workspace (above) when its int-sized request holds
// them, else ``fallback``, resized.
template <typename T>
T* scratch(const OpResource& res, int64_t count, std::vector<T>* fallback) {
  if (count < INT_MAX / static_cast<int64_t>(sizeof(T))) return workspace<T>(res, count);
  fallback->resize(count);
  return fallback->data();
}

// dX. Input row a + s u, column b + s v sees only the kernel cells of its
// phase (a mod s_h, b mod s_w), so each phase of dX is a corr2d with stride 1
// of the zero-padded output gradient with those kernel cells, flipped, input
// and output channels swapped (for stride 1 the one phase is the whole plane,
// written in place). What it buys: the forward pass's multiply-adds in its
// register tiles, where the former scatter loop over the cells took 3.8x the
// built-in's whole backward on a 64-channel stride-2 layer.
//
// With a stride the phases are made one after another in scratch as large as dX (MXNet's
// workspace), then interleaved into dX.
template <typename T>
void input_grad(const ConvParams& P, const Geometry& g, const T* dY, const T* K, T* dX,
                const OpResource& res) {
  const bool strided = P.s_h > 1 || P.s_w > 1;
  std::vector<const T*> phases(P.s_h * P.s_w, nullptr);
  std::vector<T> large;
  T* part = strided ? scratch<T>(res, g.N * g.C * g.H * g.W, &large) : nullptr;
  for (int64_t a = 0; a < std::min(P.s_h, g.H); ++a) {
    const PhaseTaps rows = phase_taps(a, g.KH, P.s_h, P.p_h, P.d_h);
    const int64_t OHa = (g.H - a + P.s_h - 1) / P.s_h;
    for (int64_t b = 0; b < std::min(P.s_w, g.W); ++b) {
      const PhaseTaps cols = phase_taps(b, g.KW, P.s_w, P.p_w, P.d_w);
      const int64_t OWb = (g.W - b + P.s_w - 1) / P.s_w;
      if (rows.taps.empty() || cols.taps.empty()) continue;   // no kernel cell reaches it
      const int64_t kh = rows.taps.size(), kw = cols.taps.size();
      CorrShape c{g.Og, 0, 0, kh, kw, 1, 1, rows.step, cols.step, OHa, OWb, 0, 0, 0, nullptr};
      int NB, XV;
      std::vector<int64_t> col_off;
      plan_corr<T>(&c, g.Cg, &NB, &XV, &col_off);
      const std::vector<T> Wd = pack_kernels(g, K, rows.taps, cols.taps, /*swap=*/true, c.O_pad);
      corr_batch(g, c, NB, XV, dY, g.O, g.OH, g.OW, -rows.e0, -cols.e0, Wd.data(),
                 static_cast<const T*>(nullptr), strided ? part : dX, g.C);
      phases[a * P.s_w + b] = part;
      part += g.N * g.C * OHa * OWb;
    }
  }
  if (strided) interleave_phases(g, P, phases, dX);
}

// dK: one loop item per band of output rows of one image
// (weight_grad_band). Each thread pads the band's input rows, and copies its
// output-gradient rows into rows of whole vectors, into buffers of its own
// reused from item to item (in pieces that stay in the caches, and no fresh
// memory to fault in on every call: a first version padded the whole batch
// and copied the whole gradient before the loop, which took longer than the
// loop; reading partial last vectors lane by lane instead measured 3x slower
// on rows of 10), and adds into partial
// sums of its own; the buffers are made before the parallel region, so nothing
// inside can throw. The partial sums are added up at the end.
template <typename T>
void weight_grad(const ConvParams& P, const Geometry& g, const T* dY, const T* X, T* dK) {
  constexpr int L = kLanes<T>;
  const int64_t OWt = (g.OW + L - 1) / L * L;
  // bands of about 512 output values: small enough for the caches
  const int64_t band = std::clamp<int64_t>(512 / OWt, 1, g.OH);
  const int64_t bands = (g.OH + band - 1) / band, items = g.N * bands;
  CorrShape c{g.Cg, 0, 0, g.KH, g.KW, P.s_h, P.s_w, P.d_h, P.d_w, band, g.OW, 0, 0, 0, nullptr};
  skip_gaps(&c);
  buffer_shape(&c, 1, L);             // a band's padded rows: c.BH rows of c.RW per plane
  const std::vector<int64_t> col_off = column_offsets(c);
  WeightGradShape w{g.N, g.C, g.O, g.G, g.Cg, g.Og, g.Cg * g.KH * g.KW, g.OH, g.OW, OWt,
                    c.BH, c.RW, c.s_h, 1, 1};
  grad_tile_shape(g.Og, w.taps, &w.OB, &w.CB);
  std::vector<int64_t> tap_off;     // tap (c, i, j) reads at c BH RW + i d_h RW + col_off[j]
  for (int64_t ci = 0; ci < g.Cg; ++ci)
    for (int64_t i = 0; i < g.KH; ++i)
      for (int64_t j = 0; j < g.KW; ++j)
        tap_off.push_back(ci * c.BH * c.RW + i * P.d_h * c.RW + col_off[j]);
  // Partial sums per chunk of items, not per thread: the chunks are fixed for the process
  // (the thread ceiling, MXNET_OMP_MAX_THREADS / OMP_NUM_THREADS / the processors), and
  // each is summed in item order, then the chunks in chunk order. What it buys: dK does
  // not depend on how many threads the load left free (threads_for), so a run gives the
  // same bits on a busy machine as on an idle one; per-thread sums made a batch-norm
  // network's training differ from run to run with the machine's load.
  // Per thread: the band's padded input planes and gradient rows.
  const int64_t sums = g.O * w.taps * L, rows = g.C * c.BH * c.RW, dy_rows = g.O * band * OWt;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(cnn_base::max_threads(), items));
  const int n_threads = static_cast<int>(std::min<int64_t>(
      chunks, cnn_base::threads_for(items, band * OWt * g.O * w.taps)));
  std::vector<T> parts(chunks * sums, T(0)), padded(n_threads * rows),
      gradient(n_threads * dy_rows, T(0));
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    const int me = omp_get_thread_num();
    T* Xb = padded.data() + me * rows;
    T* dYb = gradient.data() + me * dy_rows;
#pragma omp for schedule(static)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      T* part = parts.data() + chunk * sums;
      for (int64_t item = chunk * items / chunks; item < (chunk + 1) * items / chunks; ++item) {
        const int64_t n = item / bands, y0 = item % bands * band;
        const int64_t y1 = std::min(y0 + band, g.OH);
        for (int64_t ci = 0; ci < g.C; ++ci)
          pad_plane(X + (n * g.C + ci) * g.H * g.W, g.H, g.W, Xb + ci * c.BH * c.RW, c,
                    P.p_h - y0 * P.s_h, P.p_w);
        for (int64_t o = 0; o < g.O; ++o)      // rows of OWt, zeros past OW (set once)
          for (int64_t y = y0; y < y1; ++y)
            std::memcpy(dYb + (o * (y1 - y0) + y - y0) * OWt,
                        dY + ((n * g.O + o) * g.OH + y) * g.OW, g.OW * sizeof(T));
        weight_grad_item(w, static_cast<const T*>(dYb), static_cast<const T*>(Xb),
                         tap_off.data(), y0, y1, part);
      }
    }
  }
  for (int64_t k = 0; k < g.O * w.taps; ++k) {
    T total = 0;
    for (int64_t chunk = 0; chunk < chunks; ++chunk)
      for (int l = 0; l < L; ++l) total += parts[chunk * sums + k * L + l];
    dK[k] = total;          // dK[o][c][i][j] is o * taps + tap
  }
}

// db[o]: the sum of dY[n, o] over the batch and the cells: each plane's in kBiasLanes partial
// sums (lane l: cells l, l + kBiasLanes, ...; its last cells each in its own lane from 0), the
// lanes added in order into a double per channel, image after image. What it buys: one running
// sum waited on every add's latency, 4 cycles a value: 4 ms of the 25 ms backward of d2l's stem
// (1 -> 64 k7 s2, batch 32, 48 x 48 outputs), ~2% of a DenseNet step. The planes are read in
// memory order (each thread its channels of every image in turn): a channel's planes lie O
// planes apart and the prefetchers started over at each (the stem's backward, one thread:
// bias_grad 7% of it, perf). The bits depend neither on the threads nor the load.
constexpr int kBiasLanes = 16;

template <typename T>
T plane_total(const T* plane, int64_t cells) {
  const int64_t whole = cells / kBiasLanes * kBiasLanes;
  T lanes[kBiasLanes] = {};
  for (int64_t cell = 0; cell < whole; cell += kBiasLanes)
    for (int l = 0; l < kBiasLanes; ++l) lanes[l] += plane[cell + l];
  for (int64_t cell = whole; cell < cells; ++cell) lanes[cell - whole] += plane[cell];
  T total = 0;
  for (int l = 0; l < kBiasLanes; ++l) total += lanes[l];
  return total;
}

template <typename T>
void bias_grad(const Geometry& g, const T* dY, T* dB) {
  const int64_t cells = g.OH * g.OW;
  std::vector<double> sums(g.O, 0.0);
  const int n_threads = cnn_base::threads_for(g.O, g.N * cells);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t o0 = g.O * t / threads, o1 = g.O * (t + 1) / threads;
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = o0; o < o1; ++o) sums[o] += plane_total(dY + (n * g.O + o) * cells, cells);
  }
  for (int64_t o = 0; o < g.O; ++o) dB[o] = static_cast<T>(sums[o]);
}

#include "conv2d_lanes.h"   // small planes with the images in the vector lanes: namespace lanes
#include "conv2d_gemm.h"    // im2col + the BLAS's matrix multiply: namespace gemm
#include "conv2d_depthwise.h"    // depthwise convs of small planes side by side: namespace depthwise

// Which way a layer is multiplied (algo "auto"): im2col + the BLAS (gemm::forward) or the
// register tiles (corr_tiles). Measured on the real networks' layers (forward and backward
// apart, against the built-in; AMD EPYC, AVX-512, 2 cores, docs/engineering/speed.md):
// - the tiles for fewer than kGemmMinChannels output channels per group (depthwise,
//   LeNet's first layer), and for the forward of fewer than that many input channels per
//   group under a window of stride 1 (LeNet's second, 6 -> 16 k5; a 3 -> 64 k3 stem): the
//   BLAS's rows or inner loops run short there. Measured, forward, one thread / two, tiles
//   against the BLAS: (256, 6, 12, 12) -> 16 k5 1.44 / 0.81 ms against 2.49 / 1.30, (32, 3,
//   32, 32) -> 64 k3 2.07 / 1.21 against 2.81 / 1.63. Their backward by the tiles on output
//   planes of fewer than kTilesMinPlane cells (LeNet's 8 x 8: 4.46 / 2.65 against the BLAS's
//   4.72 / 2.58), else by the BLAS: 3.96 / 3.05 against 4.95 / 3.13 on 32 x 32, and on large
//   planes by far: VGG-11's first layer, (32, 1, 224, 224) -> 16 k3, 26.9 / 15.4 against
//   40.9 / 31.9 (the built-in 38.9 / 28.6), (32, 3, 224, 224) -> 64 k3 186 / 106 against
//   385 / 243; but with stride 2 MobileNetV2's 3 -> 32 k3 stem 33.6 / 16.9 against 28.9 /
//   13.4, and 1x1 convs of 16-32 input channels to the BLAS by far (16 -> 96
//   on 112 x 112: 71.8 / 44.5 against 51.6 / 32.8; 24 -> 144: 18.4 / 10.9 against 11.2 / 7.2);
// - the tiles for up to kTilesMaxOutChannels output channels on output planes of at least
//   kTilesMinPlane cells (DenseNet's 3x3 layers to 32 on 24 x 24): with 32 rows the BLAS
//   packs as much as it multiplies. Measured with scipy-openblas32, forward + backward
//   against the built-in, one thread / two: 96 -> 32 on 24 x 24 tiles 1.42 / 0.81, BLAS
//   1.58 / 0.85; on 12 x 12 tiles 2.00 / 1.43, BLAS 1.82 / 1.11; on 6 x 6 and 3 x 3 the BLAS
//   by far (it takes the planes of several images at once). 16 x 16 splits the two measured
//   sides; with a stride the BLAS (MobileNetV2's 3 -> 32 k3 stride-2 stem on 112 x 112,
//   one thread, forward + backward: tiles 17.8 ms, BLAS 13.9, built-in 16.2);
//   Since the taps (gemm::use_taps: stride 1, at most 64 output channels) the BLAS takes
//   those layers again where the taps fit: forward + backward, one thread / two, against the
//   tiles: 64 -> 32 on 24 x 24 27.8 / 17.4 ms against 28.6 / 23.7, 160 -> 32 75.8 / 46.6
//   against 70.9 / 49.9, 32 -> 32 on 96 x 96 279 / 199 against 307 / 201; and the BLAS
//   for every pointwise conv (1x1, stride 1, no padding: its columns are the input's own
//   planes, no im2col): MobileNetV2's 1x1 convs to 16-32 channels, one thread, forward +
//   backward, tiles / BLAS / built-in: 32 -> 32 on 112 x 112 39.5 / 13.0 / 11.3 ms, 144 -> 24
//   on 56 x 56 21.9 / 10.6 / 12.0, 192 -> 32 on 28 x 28 9.2 / 3.7 / 4.1;
// - the BLAS otherwise: 64 channels and more (on 64 -> 64 the two are within the noise of
//   each other and of the built-in), and every wide layer (512 -> 512 on 7 x 7: 0.8-0.9x
//   the built-in against the tiles' 3.8x).
constexpr int64_t kGemmMinChannels = gemm::kMinRows;
// Output planes of fewer cells than this go to the BLAS whatever their channels: the tiles
// sum a row's cells in vectors of 8 floats (4 doubles) and pad each plane on its own, so a
// 1 x 1 plane wastes 7 lanes of every multiply-add and a padded copy per value; the BLAS
// takes the planes of many images as one multiply. Measured on MobileNetV2's classifier,
// 1280 -> 10 on 1 x 1 planes, batch 8, one thread, forward + backward: 0.64 ms by the
// tiles, 0.24 by the BLAS, the built-in 0.22. (On 5 x 5 planes, NiN's 10 -> 10 1x1, the two
// ways measure alike, 0.26 / 0.27 ms: a call's fixed costs.)
constexpr int64_t kTilesMinCells = 8;
constexpr int64_t kTilesMaxOutChannels = 32;
constexpr int64_t kTilesMinPlane = 16 * 16;
// The forward of a window of stride up to this over few input channels (the stems) is the
// tiles', its backward the BLAS's: one thread, forward, tiles / BLAS / built-in, d2l's
// 1 -> 64 k7 s2 stem on 96 x 96 (ResNet-18, GoogLeNet, DenseNet) 5.4 / 9.5-9.7 / 4.8-5.0 ms,
// MobileNetV2's 3 -> 32 k3 s2 on 224 x 224 3.2 / 3.9 / 2.7, model zoo ResNet's 3 -> 64 k7 s2
// 20.7 / 24.4; with stride 4 (AlexNet's and NiN's 1 -> 96 k11) the BLAS, 43.4 / 40.2. Their
// backward by the BLAS: the d2l stem 17.8-23.6 against the tiles' 28.4-28.6.
constexpr int64_t kTilesMaxStemStride = 2;

// ``forward``: for the forward pass (else the backward).
bool use_gemm(const ConvParams& P, const Geometry& g, bool forward) {
  if (!gemm::blas_found() || !gemm::fits_int(P, g)) return false;
  if (P.algo != kAlgoAuto) return P.algo != kAlgoTiles;
  if (g.OH * g.OW < kTilesMinCells) return true;
  if (g.Og < kGemmMinChannels) return false;
  const bool narrow_window = g.Cg < kGemmMinChannels && g.KH * g.KW > 1;
  const int64_t stride = std::max(P.s_h, P.s_w);
  if (narrow_window) {
    const bool small_plane = stride == 1 && g.OH * g.OW < kTilesMinPlane;
    return !(forward ? stride <= kTilesMaxStemStride : small_plane);
  }
  if (gemm::use_taps(P, g) || gemm::is_pointwise(P)) return true;
  const bool stride_1 = P.s_h == 1 && P.s_w == 1;
  return !(stride_1 && g.Og <= kTilesMaxOutChannels && g.OH * g.OW >= kTilesMinPlane);
}

template <typename T>
void forward(const ConvParams& P, const Geometry& g, const T* X, const T* K, const T* B, T* Y,
             const OpResource& res) {
  if (depthwise::applies(P, g)) {
    depthwise::forward(P, g, X, K, B, Y, res);
  } else if (lanes::applies<T>(P, g)) {
    lanes::forward(P, g, X, K, B, Y, res);
  } else if (use_gemm(P, g, true)) {
    gemm::forward(P, g, X, K, B, Y, res);
  } else {
    tiles_forward(P, g, X, K, B, Y);
  }
  if (P.relu) cnn_base::relu_in_place(Y, g.N * g.O * g.OH * g.OW);
}

// dX (unless !P.input_grad), dK, dB. What skipping dX buys: a network's first conv reads the
// data, whose gradient autograd does not ask for; the built-in skips it (it is told req),
// ours computed it anyway: model zoo resnet18_v1's 3 -> 64 k7 s2 stem, batch 8, one thread,
// backward 56 ms against the built-in's 22 without dX (28 for dX alone).
template <typename T>
void backward(const ConvParams& P, const Geometry& g, const T* dY, const T* X, const T* K,
              const T* Y, T* dX, T* dK, T* dB, const OpResource& res) {
  if (P.relu) dY = cnn_base::relu_masked(dY, Y, g.N * g.O * g.OH * g.OW);
  if (depthwise::applies(P, g)) {             // dX comes with dW's sums there: always written
    depthwise::backward(P, g, dY, X, K, dX, dK, res);
  } else if (use_gemm(P, g, false)) {
    gemm::backward(P, g, dY, X, K, P.input_grad ? dX : nullptr, dK, res);
  } else {
    if (P.input_grad) input_grad<T>(P, g, dY, K, dX, res);
    weight_grad<T>(P, g, dY, X, dK);
  }
  if (dB != nullptr) bias_grad(g, dY, dB);
}

std::vector<int64_t> shape_of(const MXTensor& t) {
  return std::vector<int64_t>(t.shape.begin(), t.shape.end());
}

}  // namespace

// 1 when the conv multiplies with the BLAS (found in the process), else 0: Python's
// routing asks it (cnn_base.native.multiplies_with_blas).
extern "C" int cnn_base_conv_blas() { return gemm::blas_found() ? 1 : 0; }

// Python's choice of BLAS library (cnn_base.native, scipy-openblas32): 1 when taken.
extern "C" int cnn_base_use_blas(const char* path, const char* prefix) {
  return path != nullptr && prefix != nullptr && gemm::use_library(path, prefix) ? 1 : 0;
}

// 1 when float32 convs multiply with the dnnl_sgemm of the oneDNN library at ``path`` from now
// on (gemm::use_dnnl), else 0 (nothing changed).
extern "C" int cnn_base_use_dnnl(const char* path) {
  return path != nullptr && gemm::use_dnnl(path) ? 1 : 0;
}

// inputs: X, weight[, bias]; outputs: Y
MXReturnValue conv2d_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res) {
  ConvParams P;
  Geometry g;
  if (!read_params(attrs, &P) || !geometry_of(P, shape_of((*inputs)[0]), &g)) return MX_FAIL;
  MXTensor& X = (*inputs)[0];
  MXTensor& K = (*inputs)[1];
  MXTensor* B = P.no_bias ? nullptr : &(*inputs)[2];
  MXTensor& Y = (*outputs)[0];
  return cnn_base::guarded(kOp, "forward", [&] {
    if (X.dtype == mxnet::ext::kFloat64) {
      forward(P, g, X.data<double>(), K.data<double>(), B ? B->data<double>() : nullptr,
              Y.data<double>(), res);
    } else {
      forward(P, g, X.data<float>(), K.data<float>(), B ? B->data<float>() : nullptr,
              Y.data<float>(), res);
    }
    return MX_SUCCESS;
  });
}

// inputs: dY, then the forward's inputs (X, weight[, bias]) and output (Y);
// outputs: dX, dweight[, dbias]
MXReturnValue conv2d_backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                              std::vector<MXTensor>* outputs, const OpResource& res) {
  ConvParams P;
  Geometry g;
  if (!read_params(attrs, &P) || !geometry_of(P, shape_of((*inputs)[1]), &g)) return MX_FAIL;
  MXTensor& dY = (*inputs)[0];
  MXTensor& X = (*inputs)[1];
  MXTensor& K = (*inputs)[2];
  MXTensor& Y = inputs->back();
  MXTensor& dX = (*outputs)[0];
  MXTensor& dK = (*outputs)[1];
  MXTensor* dB = P.no_bias ? nullptr : &(*outputs)[2];
  return cnn_base::guarded(kOp, "backward", [&] {
    if (X.dtype == mxnet::ext::kFloat64) {
      backward(P, g, dY.data<double>(), X.data<double>(), K.data<double>(), Y.data<double>(),
               dX.data<double>(), dK.data<double>(), dB ? dB->data<double>() : nullptr, res);
    } else {
      backward(P, g, dY.data<float>(), X.data<float>(), K.data<float>(), Y.data<float>(),
               dX.data<float>(), dK.data<float>(), dB ? dB->data<float>() : nullptr, res);
    }
    return MX_SUCCESS;
  });
}

MXReturnValue conv2d_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  ConvParams P;
  if (!read_params(attrs, &P)) return MX_FAIL;
  *num_in = P.no_bias ? 2 : 3;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue conv2d_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                std::vector<int>* out_types) {
  const int dtype = (*in_types)[0];
  if (dtype != mxnet::ext::kFloat32 && dtype != mxnet::ext::kFloat64) {
    MX_ERROR_MSG << "cnn_base_conv2d takes float32 or float64 input, got MXNet dtype code "
                 << dtype << " (set CNN_BASE_NATIVE=0 to convolve with MXNet ops instead)";
    return MX_FAIL;
  }
  if (!cnn_base::inputs_take_data_dtype(kOp, in_types)) return MX_FAIL;
  (*out_types)[0] = dtype;
  return MX_SUCCESS;
}

// Also fills in the weight's and the bias's shapes (Gluon's deferred
// initialization asks shape inference for them).
MXReturnValue conv2d_infer_shape(const Attrs& attrs,
                                 std::vector<std::vector<unsigned int>>* in_shapes,
                                 std::vector<std::vector<unsigned int>>* out_shapes) {
  ConvParams P;
  if (!read_params(attrs, &P)) return MX_FAIL;
  const std::vector<unsigned int>& shape = (*in_shapes)[0];
  Geometry g;
  if (!geometry_of(P, std::vector<int64_t>(shape.begin(), shape.end()), &g)) return MX_FAIL;
  const std::vector<unsigned int> weight = {
      static_cast<unsigned int>(P.num_filter), static_cast<unsigned int>(g.Cg),
      static_cast<unsigned int>(P.k_h), static_cast<unsigned int>(P.k_w)};
  std::vector<unsigned int>& given = (*in_shapes)[1];
  // MXNet writes an unknown dimension as 0 or as -1 (read here as the largest unsigned)
  const bool known = given.size() == 4 &&
      std::none_of(given.begin(), given.end(), [](unsigned int v) { return v == 0 || v == ~0u; });
  if (known && given != weight) {
    MX_ERROR_MSG << "cnn_base_conv2d: the weight has shape (" << given[0] << ", " << given[1]
                 << ", " << given[2] << ", " << given[3] << "), the input needs ("
                 << weight[0] << ", " << weight[1] << ", " << weight[2] << ", " << weight[3]
                 << ")";
    return MX_FAIL;
  }
  given = weight;
  if (!P.no_bias) (*in_shapes)[2] = {static_cast<unsigned int>(P.num_filter)};
  (*out_shapes)[0] = {shape[0], static_cast<unsigned int>(P.num_filter),
                      static_cast<unsigned int>(g.OH), static_cast<unsigned int>(g.OW)};
  return MX_SUCCESS;
}

REGISTER_OP(cnn_base_conv2d)
.setParseAttrs(conv2d_parse_attrs)
.setInferType(conv2d_infer_type)
.setInferShape(conv2d_infer_shape)
.setForward(conv2d_forward, "cpu")
.setBackward(conv2d_backward, "cpu");
