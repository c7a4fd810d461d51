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
 * - dX[n, c] gets K[o, c, i, j] * dY[n, o] through every cell: for stride 1
 *   that is corr_tiles again, on the padded dY with the kernels flipped and
 *   the channels swapped; for larger strides a scatter loop;
 * - dK[o, c, i, j] is the sum over the batch and the output cells of dY[n, o]
 *   times the input each cell saw (per vector lane, 12 cells at a time);
 *   db[o] is the sum of dY[n, o].
 *
 * Threads: the library's shared policy (parallel.h) when it is there, else
 * the calling thread alone -- no OpenMP team, so nothing to wait for on a
 * machine whose cores are busy.
 *
 * float32 and float64 are computed as they are; anything else is refused at
 * type inference (cnn_base.functional.conv2d then uses MXNet operators). The
 * backward overwrites its outputs (the extension API does not pass ``req``),
 * so callers that need gradients added put an ``identity`` in front, as
 * cnn_base.functional.conv2d_native does.
 *
 * Attributes: kernel, stride, pad, dilate as "(a, b)"; num_filter, num_group
 * as integers; no_bias "True"/"False". Inputs X (N, C, H, W), weight
 * (num_filter, C / num_group, k_h, k_w) and, without no_bias, bias (num_filter,).
 */
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

#if __has_include("parallel.h")
#include "parallel.h"   // the threading policy shared by cnn_base's kernels
#define CNN_BASE_HAVE_PARALLEL 1
#endif

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

typedef std::unordered_map<std::string, std::string> Attrs;

namespace {

// Threads for a loop over ``items`` pieces of ``cost`` multiply-adds each:
// the library's shared policy when it is there, else the calling thread only.
int conv_threads(int64_t items, int64_t cost) {
#ifdef CNN_BASE_HAVE_PARALLEL
  return cnn_base::threads_for(items, cost);
#else
  (void)items;
  (void)cost;
  return 1;
#endif
}

struct ConvParams {
  int64_t k_h, k_w, s_h, s_w, p_h, p_w, d_h, d_w, num_filter, groups;
  bool no_bias;
};

// The non-negative integers written in ``text``, e.g. "(3, 2)" -> {3, 2};
// ``negative`` is set when a minus sign appears.
std::vector<int64_t> parse_ints(const std::string& text, bool* negative) {
  std::vector<int64_t> values;
  int64_t value = 0;
  bool in_number = false;
  for (char ch : text) {
    if (ch == '-') *negative = true;
    if (ch >= '0' && ch <= '9') {
      if (value < (int64_t(1) << 40)) value = value * 10 + (ch - '0');
      in_number = true;
    } else if (in_number) {
      values.push_back(value);
      value = 0;
      in_number = false;
    }
  }
  if (in_number) values.push_back(value);
  return values;
}

bool read_ints(const Attrs& attrs, const char* name, size_t count, int64_t minimum,
               int64_t* out) {
  auto it = attrs.find(name);
  if (it == attrs.end()) {
    MX_ERROR_MSG << "cnn_base_conv2d needs the attribute " << name;
    return false;
  }
  bool negative = false;
  std::vector<int64_t> values = parse_ints(it->second, &negative);
  if (count == 2 && values.size() == 1) values.push_back(values[0]);
  if (negative || values.size() != count ||
      *std::min_element(values.begin(), values.end()) < minimum) {
    MX_ERROR_MSG << "cnn_base_conv2d: " << name << " must be " << count
                 << " integer(s) >= " << minimum << ", got '" << it->second << "'";
    return false;
  }
  for (size_t a = 0; a < count; ++a) out[a] = values[a];
  return true;
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
  auto it = attrs.find("no_bias");
  P->no_bias = it != attrs.end() && (it->second == "True" || it->second == "1" ||
                                     it->second == "true");
  if (P->num_filter % P->groups) {
    MX_ERROR_MSG << "cnn_base_conv2d: num_group " << P->groups << " must divide num_filter "
                 << P->num_filter;
    return false;
  }
  return true;
}

// Sizes of one call, and the range of output columns each kernel column sees
// inside the input (the others see padding, which adds nothing).
struct Geometry {
  int64_t N, C, H, W, O, G, Cg, Og, KH, KW, OH, OW;
  std::vector<int64_t> x_lo, x_hi;    // per kernel column j: output columns [lo, hi)
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
  g->x_lo.assign(g->KW, 0);
  g->x_hi.assign(g->KW, 0);
  for (int64_t j = 0; j < g->KW; ++j) {
    // input column of output column x through kernel column j: x * s - p + j * d
    const int64_t offset = j * P.d_w - P.p_w;
    int64_t lo = offset >= 0 ? 0 : (-offset + P.s_w - 1) / P.s_w;
    int64_t hi = g->W - 1 - offset < 0 ? 0 : (g->W - 1 - offset) / P.s_w + 1;
    g->x_lo[j] = std::min(lo, g->OW);
    g->x_hi[j] = std::max(g->x_lo[j], std::min(hi, g->OW));
  }
  return true;
}

// ---- the register-tiled corr2d --------------------------------------------
//
// Out[b][y][x] = sum over input channels c and kernel cells (i, j) of
//   Wt[c][i][j][o0 + b] * In[c][y * s_h + i * d_h][x * s_w + j * d_w]
// where In is a zero-padded copy of the input planes (so the loop checks no
// bounds) and Wt holds the kernels with the output channel innermost. NB output
// channels times XV vectors of output columns are summed in registers over
// the whole (c, i, j) loop, and every input vector loaded serves NB output
// channels: the chapter's corr2d, in tiles the processor keeps in registers.
// The forward pass runs it, and so does the input gradient for stride 1 (a
// corr2d of the padded output gradient with the flipped kernels).

template <typename T> struct VecOf;
template <> struct VecOf<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct VecOf<double> { typedef double type __attribute__((vector_size(32))); };

template <typename T>
struct Lanes {
  static constexpr int L = 32 / sizeof(T);
};

// A vector from p[0], p[s], p[2 s], ...; UNIT says s is 1 (one plain load).
template <bool UNIT, typename T>
inline typename VecOf<T>::type load(const T* p, int64_t s) {
  typename VecOf<T>::type v;
  if (UNIT) {
    std::memcpy(&v, p, sizeof v);
  } else {
    T lanes[Lanes<T>::L];
    for (int l = 0; l < Lanes<T>::L; ++l) lanes[l] = p[l * s];
    std::memcpy(&v, lanes, sizeof v);
  }
  return v;
}

// What a corr2d reads and writes: C_in padded input planes of BH x BW, the
// window's cells and steps, and output planes of OH x OW.
struct CorrShape {
  int64_t C_in, BH, BW, KH, KW, s_h, s_w, d_h, d_w, OH, OW, O_pad;
};

template <typename T, int NB, int XV, bool UNIT>
void corr_tiles(const CorrShape& c, const T* In, const T* Wt, int64_t o0, int nb_valid,
                const T* bias, T* Out, int64_t out_stride) {
  typedef typename VecOf<T>::type V;
  constexpr int L = Lanes<T>::L, TW = XV * L;
  for (int64_t y = 0; y < c.OH; ++y) {
    for (int64_t xt = 0; xt < c.OW; xt += TW) {
      V acc[NB][XV];
      for (int b = 0; b < NB; ++b) {
        const T start = bias != nullptr && b < nb_valid ? bias[b] : T(0);
        for (int v = 0; v < XV; ++v) acc[b][v] = V{} + start;
      }
      for (int64_t ci = 0; ci < c.C_in; ++ci) {
        for (int64_t i = 0; i < c.KH; ++i) {
          const T* row = In + (ci * c.BH + y * c.s_h + i * c.d_h) * c.BW + xt * c.s_w;
          const T* w = Wt + ((ci * c.KH + i) * c.KW) * c.O_pad + o0;
          for (int64_t j = 0; j < c.KW; ++j, w += c.O_pad) {
            const T* in = row + j * c.d_w;
            V x[XV];
            for (int v = 0; v < XV; ++v) x[v] = load<UNIT>(in + v * L * c.s_w, c.s_w);
            for (int b = 0; b < NB; ++b) {
              const V wb = V{} + w[b];
              for (int v = 0; v < XV; ++v) acc[b][v] += wb * x[v];
            }
          }
        }
      }
      const int64_t width = std::min<int64_t>(TW, c.OW - xt);
      for (int b = 0; b < nb_valid; ++b) {
        T* out = Out + b * out_stride + y * c.OW + xt;
        for (int v = 0; v < XV; ++v) {
          const V sum = acc[b][v];    // a copy: acc itself stays in registers
          if ((v + 1) * L <= width) {
            std::memcpy(out + v * L, &sum, sizeof sum);
          } else {
            for (int l = 0; v * L + l < width; ++l) out[v * L + l] = sum[l];
          }
        }
      }
    }
  }
}

// The tile of a corr2d: XV vectors to cover a row (at most 4), and as many
// output channels as keep about 8 sums in registers, but no more than needed.
void tile_shape(int64_t OW, int64_t lanes, int64_t channels, int* NB, int* XV) {
  *XV = static_cast<int>(std::min<int64_t>(4, (OW + lanes - 1) / lanes));
  // the block that wastes least on the last, partial block; the larger on a tie
  int best = 1;
  int64_t best_padded = channels;
  for (int nb = *XV >= 3 ? 2 : 8 / *XV; nb > 1; nb /= 2) {
    const int64_t padded = (channels + nb - 1) / nb * nb;
    if (padded < best_padded || (padded == best_padded && nb > best)) best = nb, best_padded = padded;
  }
  *NB = best;
}

// The padded buffer a corr2d with this tile reads: the rows and columns it reaches.
void buffer_shape(CorrShape* c, int XV, int64_t lanes) {
  const int64_t TW = XV * lanes;
  const int64_t OW_tiles = (c->OW + TW - 1) / TW * TW;
  c->BH = (c->OH - 1) * c->s_h + (c->KH - 1) * c->d_h + 1;
  c->BW = (OW_tiles - 1) * c->s_w + (c->KW - 1) * c->d_w + 1;
}

// corr_tiles for output channels [0, channels), NB at a time.
template <typename T>
void corr_all(const CorrShape& c, int NB, int XV, const T* In, const T* Wt, int64_t channels,
              const T* bias, T* Out, int64_t out_stride) {
  for (int64_t o0 = 0; o0 < channels; o0 += NB) {
    const int nb = static_cast<int>(std::min<int64_t>(NB, channels - o0));
    const T* b = bias != nullptr ? bias + o0 : nullptr;
    T* out = Out + o0 * out_stride;
#define CNN_BASE_TILE(nb_, xv_)                                             \
    if (NB == nb_ && XV == xv_) {                                           \
      if (c.s_w == 1) corr_tiles<T, nb_, xv_, true>(c, In, Wt, o0, nb, b, out, out_stride); \
      else corr_tiles<T, nb_, xv_, false>(c, In, Wt, o0, nb, b, out, out_stride);          \
      continue;                                                             \
    }
    CNN_BASE_TILE(8, 1) CNN_BASE_TILE(4, 1) CNN_BASE_TILE(2, 1) CNN_BASE_TILE(1, 1)
    CNN_BASE_TILE(4, 2) CNN_BASE_TILE(2, 2) CNN_BASE_TILE(1, 2)
    CNN_BASE_TILE(2, 3) CNN_BASE_TILE(1, 3) CNN_BASE_TILE(2, 4) CNN_BASE_TILE(1, 4)
#undef CNN_BASE_TILE
  }
}

// dst (BH x BW) = src (H x W) moved down by ``top`` rows and right by ``left``
// columns (negative: cut off), zeros elsewhere.
template <typename T>
void pad_plane(const T* src, int64_t H, int64_t W, T* dst, int64_t BH, int64_t BW, int64_t top,
               int64_t left) {
  const int64_t lo = std::clamp<int64_t>(left, 0, BW);
  const int64_t hi = std::max(lo, std::clamp<int64_t>(left + W, 0, BW));
  for (int64_t br = 0; br < BH; ++br) {
    T* out = dst + br * BW;
    const int64_t r = br - top;
    if (r < 0 || r >= H) {
      std::fill(out, out + BW, T(0));
      continue;
    }
    std::fill(out, out + lo, T(0));
    if (hi > lo) std::memcpy(out + lo, src + r * W + (lo - left), (hi - lo) * sizeof(T));
    std::fill(out + hi, out + BW, T(0));
  }
}

// out[x * s] += sum_b w[b] * dy[b][x] for x in [x0, x1): NB output-gradient
// rows scattered back through one kernel cell into one input-gradient row
// (the input gradient for strides above 1).
template <typename T, int NB>
inline void rows_scatter(T* out, const T* w, const T* const* dy, int64_t x0, int64_t x1,
                         int64_t s) {
  for (int64_t x = x0; x < x1; ++x) {
    T sum = 0;
    for (int b = 0; b < NB; ++b) sum += w[b] * dy[b][x];
    out[x * s] += sum;
  }
}

// Output channels handled together in the scatter.
constexpr int kBlock = 4;

// dX[n, c] for one input plane: every output-gradient row of the group's
// output channels, times the kernel cell, added back where the cell looked.
template <typename T>
void input_grad_plane(const ConvParams& P, const Geometry& g, const T* dY, const T* K, T* dX,
                      int64_t n, int64_t c) {
  const int64_t grp = c / g.Cg, cl = c % g.Cg;
  const int64_t KHW = g.KH * g.KW;
  T* dXc = dX + (n * g.C + c) * g.H * g.W;
  std::fill(dXc, dXc + g.H * g.W, T(0));
  const T* dy[kBlock];
  T w[kBlock];
  for (int64_t y = 0; y < g.OH; ++y) {
    for (int64_t i = 0; i < g.KH; ++i) {
      const int64_t r = y * P.s_h - P.p_h + i * P.d_h;
      if (r < 0 || r >= g.H) continue;
      T* row = dXc + r * g.W;
      for (int64_t j = 0; j < g.KW; ++j) {
        if (g.x_lo[j] >= g.x_hi[j]) continue;
        T* out = row + (j * P.d_w - P.p_w);
        for (int64_t o0 = grp * g.Og; o0 < (grp + 1) * g.Og; o0 += kBlock) {
          const int nb = static_cast<int>(std::min<int64_t>(kBlock, (grp + 1) * g.Og - o0));
          for (int b = 0; b < nb; ++b) {
            dy[b] = dY + ((n * g.O + o0 + b) * g.OH + y) * g.OW;
            w[b] = K[((o0 + b) * g.Cg + cl) * KHW + i * g.KW + j];
          }
          switch (nb) {
            case 4: rows_scatter<T, 4>(out, w, dy, g.x_lo[j], g.x_hi[j], P.s_w); break;
            case 3: rows_scatter<T, 3>(out, w, dy, g.x_lo[j], g.x_hi[j], P.s_w); break;
            case 2: rows_scatter<T, 2>(out, w, dy, g.x_lo[j], g.x_hi[j], P.s_w); break;
            default: rows_scatter<T, 1>(out, w, dy, g.x_lo[j], g.x_hi[j], P.s_w);
          }
        }
      }
    }
  }
}

// dK[o, c] at CB kernel cells from ``cell0`` on: sums over the batch and the
// output cells of dY[n, o] times what each cell saw, in vector registers (one
// sum per lane, added up at the end). Xp holds the zero-padded input planes
// (BH x BW), ``offsets`` each kernel cell's place in such a plane, dYp the
// output gradient with rows zero-padded to OWt.
template <typename T, int CB, bool UNIT>
void weight_grad_cells(const ConvParams& P, const Geometry& g, const CorrShape& c,
                       const T* dYp, int64_t OWt, const T* Xp, const int64_t* offsets,
                       int64_t o, int64_t ci, int64_t cell0, T* dK) {
  typedef typename VecOf<T>::type V;
  constexpr int L = Lanes<T>::L;
  const int64_t grp = o / g.Og, s_w = P.s_w;
  int64_t off[CB];
  for (int cc = 0; cc < CB; ++cc) off[cc] = offsets[cell0 + cc];
  V acc[CB];
  for (int cc = 0; cc < CB; ++cc) acc[cc] = V{};
  for (int64_t n = 0; n < g.N; ++n) {
    const T* plane = Xp + (n * g.C + grp * g.Cg + ci) * c.BH * c.BW;
    const T* dy_plane = dYp + (n * g.O + o) * g.OH * OWt;
    for (int64_t y = 0; y < g.OH; ++y) {
      const T* row = plane + y * P.s_h * c.BW;
      const T* dy = dy_plane + y * OWt;
      for (int64_t x = 0; x < OWt; x += L) {
        V d;
        std::memcpy(&d, dy + x, sizeof d);
        for (int cc = 0; cc < CB; ++cc) acc[cc] += d * load<UNIT>(row + off[cc] + x * s_w, s_w);
      }
    }
  }
  for (int cc = 0; cc < CB; ++cc) {
    T total = 0;
    for (int l = 0; l < L; ++l) total += acc[cc][l];
    dK[(o * g.Cg + ci) * g.KH * g.KW + cell0 + cc] = total;
  }
}

// dK[o, c] for every kernel cell, 12 at a time (12 sums and the gradient's
// vector fill the 16 vector registers of AVX2), then 8, 4, 2, 1.
template <typename T>
void weight_grad_pair(const ConvParams& P, const Geometry& g, const CorrShape& c,
                      const T* dYp, int64_t OWt, const T* Xp, const int64_t* offsets,
                      int64_t o, int64_t ci, T* dK) {
  const int64_t cells = g.KH * g.KW;
  int64_t cell0 = 0;
#define CNN_BASE_CELLS(cb_)                                                               \
  for (; cells - cell0 >= cb_; cell0 += cb_)                                              \
    if (P.s_w == 1) weight_grad_cells<T, cb_, true>(P, g, c, dYp, OWt, Xp, offsets, o, ci, cell0, dK); \
    else weight_grad_cells<T, cb_, false>(P, g, c, dYp, OWt, Xp, offsets, o, ci, cell0, dK);
  CNN_BASE_CELLS(12) CNN_BASE_CELLS(8) CNN_BASE_CELLS(4) CNN_BASE_CELLS(2) CNN_BASE_CELLS(1)
#undef CNN_BASE_CELLS
}

// The work of one loop item, compiled twice: for AVX2 with FMA (8 floats per
// instruction, what makes the tiles fast on x86) and for the baseline; the
// first call asks the processor which it runs. Everything they call is
// inlined into them (flatten), so all of it gets the same instructions. They
// are called inside the OpenMP loops, not around them, because OpenMP moves a
// loop's body into a function of its own.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CNN_BASE_AVX2 1
#define CNN_BASE_FAST __attribute__((target("avx2,fma"), flatten))
#define CNN_BASE_BASE __attribute__((flatten))
bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

#define CNN_BASE_ITEMS(T)                                                                    \
  CNN_BASE_FAST void corr_item_fast(const CorrShape& c, int NB, int XV, const T* In,        \
                                    const T* Wt, int64_t channels, const T* bias, T* Out,   \
                                    int64_t out_stride) {                                   \
    corr_all<T>(c, NB, XV, In, Wt, channels, bias, Out, out_stride);                        \
  }                                                                                          \
  CNN_BASE_BASE void corr_item_base(const CorrShape& c, int NB, int XV, const T* In,        \
                                    const T* Wt, int64_t channels, const T* bias, T* Out,   \
                                    int64_t out_stride) {                                   \
    corr_all<T>(c, NB, XV, In, Wt, channels, bias, Out, out_stride);                        \
  }                                                                                          \
  void corr_item(const CorrShape& c, int NB, int XV, const T* In, const T* Wt,              \
                 int64_t channels, const T* bias, T* Out, int64_t out_stride) {             \
    CNN_BASE_PICK(corr_item, (c, NB, XV, In, Wt, channels, bias, Out, out_stride))          \
  }                                                                                          \
  CNN_BASE_FAST void input_grad_item_fast(const ConvParams& P, const Geometry& g,           \
                                          const T* dY, const T* K, T* dX, int64_t n,        \
                                          int64_t c) {                                      \
    input_grad_plane<T>(P, g, dY, K, dX, n, c);                                             \
  }                                                                                          \
  CNN_BASE_BASE void input_grad_item_base(const ConvParams& P, const Geometry& g,           \
                                          const T* dY, const T* K, T* dX, int64_t n,        \
                                          int64_t c) {                                      \
    input_grad_plane<T>(P, g, dY, K, dX, n, c);                                             \
  }                                                                                          \
  void input_grad_item(const ConvParams& P, const Geometry& g, const T* dY, const T* K,     \
                       T* dX, int64_t n, int64_t c) {                                       \
    CNN_BASE_PICK(input_grad_item, (P, g, dY, K, dX, n, c))                                 \
  }                                                                                          \
  CNN_BASE_FAST void weight_grad_item_fast(const ConvParams& P, const Geometry& g,          \
                                           const CorrShape& c, const T* dYp, int64_t OWt,   \
                                           const T* Xp, const int64_t* offsets, int64_t o, int64_t ci, T* dK) { \
    weight_grad_pair<T>(P, g, c, dYp, OWt, Xp, offsets, o, ci, dK);                                  \
  }                                                                                          \
  CNN_BASE_BASE void weight_grad_item_base(const ConvParams& P, const Geometry& g,          \
                                           const CorrShape& c, const T* dYp, int64_t OWt,   \
                                           const T* Xp, const int64_t* offsets, int64_t o, int64_t ci, T* dK) { \
    weight_grad_pair<T>(P, g, c, dYp, OWt, Xp, offsets, o, ci, dK);                                  \
  }                                                                                          \
  void weight_grad_item(const ConvParams& P, const Geometry& g, const CorrShape& c,         \
                        const T* dYp, int64_t OWt, const T* Xp, const int64_t* offsets,     \
                        int64_t o, int64_t ci, T* dK) {                                      \
    CNN_BASE_PICK(weight_grad_item, (P, g, c, dYp, OWt, Xp, offsets, o, ci, dK))                     \
  }
#ifdef CNN_BASE_AVX2
#define CNN_BASE_PICK(name, args) \
  if (has_avx2()) { name##_fast args; } else { name##_base args; }
#else
#define CNN_BASE_FAST
#define CNN_BASE_BASE
#define CNN_BASE_PICK(name, args) name##_base args;
#endif
CNN_BASE_ITEMS(float)
CNN_BASE_ITEMS(double)
#undef CNN_BASE_ITEMS
#undef CNN_BASE_PICK

template <typename T>
void forward(const ConvParams& P, const Geometry& g, const T* X, const T* K, const T* B, T* Y) {
  CorrShape c{g.Cg, 0, 0, g.KH, g.KW, P.s_h, P.s_w, P.d_h, P.d_w, g.OH, g.OW, 0};
  int NB, XV;
  tile_shape(g.OW, Lanes<T>::L, g.Og, &NB, &XV);
  buffer_shape(&c, XV, Lanes<T>::L);
  c.O_pad = (g.Og + NB - 1) / NB * NB;
  // each group's kernels with the output channel innermost, zero-padded to O_pad
  const int64_t KHW = g.KH * g.KW;
  std::vector<T> Wt(g.G * g.Cg * KHW * c.O_pad, T(0));
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t ci = 0; ci < g.Cg; ++ci)
      for (int64_t cell = 0; cell < KHW; ++cell)
        Wt[(((o / g.Og) * g.Cg + ci) * KHW + cell) * c.O_pad + o % g.Og] =
            K[(o * g.Cg + ci) * KHW + cell];
  const int64_t items = g.N * g.G;
  const int n_threads = conv_threads(items, g.Og * g.Cg * KHW * g.OH * g.OW);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    std::vector<T> buffer(g.Cg * c.BH * c.BW);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / g.G, grp = item % g.G;
      for (int64_t ci = 0; ci < g.Cg; ++ci)
        pad_plane(X + (n * g.C + grp * g.Cg + ci) * g.H * g.W, g.H, g.W,
                  buffer.data() + ci * c.BH * c.BW, c.BH, c.BW, P.p_h, P.p_w);
      corr_item(c, NB, XV, buffer.data(), Wt.data() + grp * g.Cg * KHW * c.O_pad, g.Og,
                B != nullptr ? B + grp * g.Og : nullptr,
                Y + (n * g.O + grp * g.Og) * g.OH * g.OW, g.OH * g.OW);
    }
  }
}

// dX for stride 1: a corr2d of the output gradient, padded by (k - 1) * d - p
// on each side, with the kernels flipped and input and output channels swapped.
template <typename T>
void input_grad_stride1(const ConvParams& P, const Geometry& g, const T* dY, const T* K,
                        T* dX) {
  CorrShape c{g.Og, 0, 0, g.KH, g.KW, 1, 1, P.d_h, P.d_w, g.H, g.W, 0};
  int NB, XV;
  tile_shape(g.W, Lanes<T>::L, g.Cg, &NB, &XV);
  buffer_shape(&c, XV, Lanes<T>::L);
  c.O_pad = (g.Cg + NB - 1) / NB * NB;
  const int64_t KHW = g.KH * g.KW;
  // Wd[grp][o][i'][j'][c] = K[grp * Og + o][c][KH - 1 - i'][KW - 1 - j']
  std::vector<T> Wd(g.G * g.Og * KHW * c.O_pad, T(0));
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t ci = 0; ci < g.Cg; ++ci)
      for (int64_t i = 0; i < g.KH; ++i)
        for (int64_t j = 0; j < g.KW; ++j)
          Wd[(o * KHW + (g.KH - 1 - i) * g.KW + (g.KW - 1 - j)) * c.O_pad + ci] =
              K[((o * g.Cg + ci) * g.KH + i) * g.KW + j];
  const int64_t top = (g.KH - 1) * P.d_h - P.p_h, left = (g.KW - 1) * P.d_w - P.p_w;
  const int64_t items = g.N * g.G;
  const int n_threads = conv_threads(items, g.Og * g.Cg * KHW * g.H * g.W);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
  {
    std::vector<T> buffer(g.Og * c.BH * c.BW);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / g.G, grp = item % g.G;
      for (int64_t o = 0; o < g.Og; ++o)
        pad_plane(dY + (n * g.O + grp * g.Og + o) * g.OH * g.OW, g.OH, g.OW,
                  buffer.data() + o * c.BH * c.BW, c.BH, c.BW, top, left);
      corr_item(c, NB, XV, buffer.data(), Wd.data() + grp * g.Og * KHW * c.O_pad, g.Cg,
                static_cast<const T*>(nullptr), dX + (n * g.C + grp * g.Cg) * g.H * g.W,
                g.H * g.W);
    }
  }
}

// dK and db: the input planes zero-padded once (as the forward pass pads
// them) and the output gradient's rows padded to whole vectors, then one
// (output channel, input channel) pair per loop item.
template <typename T>
void weight_grad(const ConvParams& P, const Geometry& g, const T* dY, const T* X, T* dK,
                 T* dB) {
  constexpr int L = Lanes<T>::L;
  const int64_t OWt = (g.OW + L - 1) / L * L;
  CorrShape c{g.Cg, 0, 0, g.KH, g.KW, P.s_h, P.s_w, P.d_h, P.d_w, g.OH, g.OW, 0};
  buffer_shape(&c, 1, L);
  std::vector<T> Xp(g.N * g.C * c.BH * c.BW), dYp(g.N * g.O * g.OH * OWt, T(0));
  for (int64_t plane = 0; plane < g.N * g.C; ++plane)
    pad_plane(X + plane * g.H * g.W, g.H, g.W, Xp.data() + plane * c.BH * c.BW, c.BH, c.BW,
              P.p_h, P.p_w);
  for (int64_t row = 0; row < g.N * g.O * g.OH; ++row)
    std::memcpy(dYp.data() + row * OWt, dY + row * g.OW, g.OW * sizeof(T));
  std::vector<int64_t> offsets;
  for (int64_t i = 0; i < g.KH; ++i)
    for (int64_t j = 0; j < g.KW; ++j) offsets.push_back(i * P.d_h * c.BW + j * P.d_w);
  const int64_t items = g.O * g.Cg;
  const int n_threads = conv_threads(items, g.N * g.KH * g.KW * g.OH * OWt);
#pragma omp parallel for num_threads(n_threads) if (n_threads > 1) schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    weight_grad_item(P, g, c, dYp.data(), OWt, Xp.data(), offsets.data(), item / g.Cg,
                     item % g.Cg, dK);
  }
  if (dB != nullptr) {
    for (int64_t o = 0; o < g.O; ++o) {
      T total = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const T* plane = dY + (n * g.O + o) * g.OH * g.OW;
        for (int64_t cell = 0; cell < g.OH * g.OW; ++cell) total += plane[cell];
      }
      dB[o] = total;
    }
  }
}

template <typename T>
void backward(const ConvParams& P, const Geometry& g, const T* dY, const T* X, const T* K,
              T* dX, T* dK, T* dB) {
  if (P.s_h == 1 && P.s_w == 1) {
    input_grad_stride1<T>(P, g, dY, K, dX);
  } else {
    const int64_t planes = g.N * g.C;
    const int n_threads = conv_threads(planes, g.Og * g.KH * g.KW * g.OH * g.OW);
#pragma omp parallel for num_threads(n_threads) if (n_threads > 1) schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      input_grad_item(P, g, dY, K, dX, plane / g.C, plane % g.C);
    }
  }
  weight_grad<T>(P, g, dY, X, dK, dB);
}

std::vector<int64_t> shape_of(const MXTensor& t) {
  return std::vector<int64_t>(t.shape.begin(), t.shape.end());
}

}  // namespace

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
  if (X.dtype == mxnet::ext::kFloat64) {
    forward(P, g, X.data<double>(), K.data<double>(),
                    B ? B->data<double>() : nullptr, Y.data<double>());
  } else {
    forward(P, g, X.data<float>(), K.data<float>(), B ? B->data<float>() : nullptr,
                   Y.data<float>());
  }
  return MX_SUCCESS;
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
  MXTensor& dX = (*outputs)[0];
  MXTensor& dK = (*outputs)[1];
  MXTensor* dB = P.no_bias ? nullptr : &(*outputs)[2];
  if (X.dtype == mxnet::ext::kFloat64) {
    backward(P, g, dY.data<double>(), X.data<double>(), K.data<double>(),
                     dX.data<double>(), dK.data<double>(), dB ? dB->data<double>() : nullptr);
  } else {
    backward(P, g, dY.data<float>(), X.data<float>(), K.data<float>(), dX.data<float>(),
                    dK.data<float>(), dB ? dB->data<float>() : nullptr);
  }
  return MX_SUCCESS;
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
  for (size_t a = 1; a < in_types->size(); ++a) {
    if ((*in_types)[a] != -1 && (*in_types)[a] != dtype) {
      MX_ERROR_MSG << "cnn_base_conv2d: input " << a << " has MXNet dtype code "
                   << (*in_types)[a] << ", the data has " << dtype;
      return MX_FAIL;
    }
    (*in_types)[a] = dtype;
  }
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
