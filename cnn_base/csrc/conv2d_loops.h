/*
 * The loops of conv2d.cc that run on vectors, compiled twice by compiled_twice.h:
 * into ``fast`` for AVX2 with FMA (8 floats per instruction) and ``base`` for
 * any x86-64 (or other) processor; the first call asks the processor which one
 * it runs. Compiling the whole file
 * for one target is what gives the vectors their registers: templates inlined
 * from baseline code into an AVX2 function (the former ``flatten`` attribute)
 * built every broadcast lane by lane with inserts and spilled the sums.
 * No include guard: it is meant to be included twice.
 */

// ---- the register-tiled corr2d --------------------------------------------
//
// Out[b][y][x] = sum over input channels c and kernel cells (i, j) of
//   Wt[c][i][j][o0 + b] * In[c][y * s_h + i * d_h][x * s_w + j * d_w]
// where In is a zero-padded copy of the input planes (so the loop checks no
// bounds; its rows phase-sorted, CorrShape, so that column x * s_w + j * d_w
// sits at x + col_off[j]) and Wt holds the kernels with the output channel
// innermost. NB output
// channels times XV vectors of output columns are summed in registers over
// the whole (c, i, j) loop, and every input vector loaded serves NB output
// channels: the chapter's corr2d, in tiles the processor keeps in registers.
// The forward pass runs it, and so does the input gradient (per phase, a
// corr2d of the padded output gradient with the flipped kernels).

template <typename T> struct VecOf;
template <> struct VecOf<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct VecOf<double> { typedef double type __attribute__((vector_size(32))); };

template <typename T>
struct Lanes {
  static constexpr int L = 32 / sizeof(T);
};

// Integer vectors of the same lanes, for masks.
template <typename T> struct MaskOf;
template <> struct MaskOf<float> { typedef int32_t type __attribute__((vector_size(32))); };
template <> struct MaskOf<double> { typedef int64_t type __attribute__((vector_size(32))); };

// ``v`` with the lanes where ``mask`` is 0 set to +0.0 (one bitwise and).
template <typename T>
inline typename VecOf<T>::type masked(typename VecOf<T>::type v,
                                      const typename MaskOf<T>::type& mask) {
  typename MaskOf<T>::type bits;
  std::memcpy(&bits, &v, sizeof v);
  bits &= mask;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// The vector p[0], p[1], ... (one unaligned load).
template <typename T>
inline typename VecOf<T>::type load(const T* p) {
  typename VecOf<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// A vector of ``value`` in every lane: one broadcast instruction. (Not
// ``V{} + value``: adding +0.0 is an instruction the compiler must keep, since
// -0.0 + 0.0 is +0.0; nor a loop over the lanes, which GCC builds lane by lane
// with inserts. Subtracting +0.0 changes no value, -0.0 included, so it folds.)
template <typename T>
inline typename VecOf<T>::type splat(T value) {
  return value - typename VecOf<T>::type{};
}

// The XV vectors of ``acc`` into out[0, width): whole vectors by one store, the last part
// lane by lane. (acc is a copy: the caller's sums stay in registers.)
template <typename T, int XV>
inline void store_row(const typename VecOf<T>::type (&acc)[XV], int64_t width, T* out) {
  constexpr int L = Lanes<T>::L;
  for (int v = 0; v < XV; ++v) {
    const typename VecOf<T>::type sum = acc[v];
    if ((v + 1) * L <= width) {
      std::memcpy(out + v * L, &sum, sizeof sum);
    } else {
      for (int l = 0; v * L + l < width; ++l) out[v * L + l] = sum[l];
    }
  }
}

template <typename T, int NB, int XV>
void corr_tiles(const CorrShape& c, const T* In, const T* Wt, int64_t o0, int nb_valid,
                const T* bias, T* Out, int64_t out_stride) {
  typedef typename VecOf<T>::type V;
  constexpr int L = Lanes<T>::L, TW = XV * L;
  for (int64_t y = 0; y < c.OH; ++y) {
    for (int64_t xt = 0; xt < c.OW; xt += TW) {
      V acc[NB][XV];
      for (int b = 0; b < NB; ++b) {
        const T start = bias != nullptr && b < nb_valid ? bias[b] : T(0);
        for (int v = 0; v < XV; ++v) acc[b][v] = splat(start);
      }
      for (int64_t ci = 0; ci < c.C_in; ++ci) {
        for (int64_t i = 0; i < c.KH; ++i) {
          const T* row = In + (ci * c.BH + y * c.s_h + i * c.d_h) * c.RW + xt;
          const T* w = Wt + ((ci * c.KH + i) * c.KW) * c.O_pad + o0;
          for (int64_t j = 0; j < c.KW; ++j, w += c.O_pad) {
            const T* in = row + c.col_off[j];
            V x[XV];
            for (int v = 0; v < XV; ++v) x[v] = load(in + v * L);
            for (int b = 0; b < NB; ++b) {
              const V wb = splat(w[b]);
              for (int v = 0; v < XV; ++v) acc[b][v] += wb * x[v];
            }
          }
        }
      }
      const int64_t width = std::min<int64_t>(TW, c.OW - xt);
      for (int b = 0; b < nb_valid; ++b)
        store_row<T, XV>(acc[b], width, Out + b * out_stride + y * c.OW + xt);
    }
  }
}

// corr_tiles for one output channel, R output rows at a time: the sums of R x XV vectors,
// one broadcast kernel value serving all of them. What it buys: with one output channel
// (depthwise convs and their input gradients) corr_tiles keeps one sum per vector, each
// multiply-add waiting on the last one's latency (and its tiles of several channels
// compute channels that are not there); R rows give R XV independent sums. The same
// sums in the same order as corr_tiles, so the same bits. Rows [y0, y1), a multiple of R.
template <typename T, int R, int XV>
void corr_rows(const CorrShape& c, const T* In, const T* Wt, const T* bias, T* Out,
               int64_t y0, int64_t y1) {
  typedef typename VecOf<T>::type V;
  constexpr int L = Lanes<T>::L, TW = XV * L;
  const T start = bias != nullptr ? bias[0] : T(0);
  for (int64_t y = y0; y < y1; y += R) {
    for (int64_t xt = 0; xt < c.OW; xt += TW) {
      V acc[R][XV];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < XV; ++v) acc[r][v] = splat(start);
      for (int64_t ci = 0; ci < c.C_in; ++ci) {
        for (int64_t i = 0; i < c.KH; ++i) {
          const T* row = In + (ci * c.BH + y * c.s_h + i * c.d_h) * c.RW + xt;
          const T* w = Wt + ((ci * c.KH + i) * c.KW) * c.O_pad;
          for (int64_t j = 0; j < c.KW; ++j, w += c.O_pad) {
            const V wj = splat(w[0]);
            for (int r = 0; r < R; ++r) {
              const T* in = row + r * c.s_h * c.RW + c.col_off[j];
              for (int v = 0; v < XV; ++v) acc[r][v] += wj * load(in + v * L);
            }
          }
        }
      }
      const int64_t width = std::min<int64_t>(TW, c.OW - xt);
      for (int r = 0; r < R; ++r) {
        // A row of one tile whose TW cells from its start stay inside its plane is stored
        // whole: the values past OW land on the next rows' first cells, which are stored
        // after it (rows in order, one tile a row). What it buys: rows of 7 (MobileNetV2's
        // last depthwise layers) stored lane by lane took half as long as their sums.
        const bool whole = c.OW <= TW && (y + r) * c.OW + TW <= c.OH * c.OW;
        store_row<T, XV>(acc[r], whole ? TW : width, Out + (y + r) * c.OW + xt);
      }
    }
  }
}

// corr_rows over the rows [y, OH): R at a time, then the rest R / 2, R / 4, ... at a time.
template <typename T, int R, int XV>
void corr_rows_from(const CorrShape& c, const T* In, const T* Wt, const T* bias, T* Out,
                    int64_t y) {
  const int64_t whole = y + (c.OH - y) / R * R;
  corr_rows<T, R, XV>(c, In, Wt, bias, Out, y, whole);
  if constexpr (R > 1) corr_rows_from<T, R / 2, XV>(c, In, Wt, bias, Out, whole);
}

// corr_tiles for output channels [0, channels), NB at a time.
template <typename T>
void corr_all(const CorrShape& c, int NB, int XV, const T* In, const T* Wt, int64_t channels,
              const T* bias, T* Out, int64_t out_stride) {
  if (channels == 1) {      // row tiles of at most 8 sums (row_tile_vectors, conv2d.cc)
    if (XV == 1) corr_rows_from<T, 8, 1>(c, In, Wt, bias, Out, 0);
    if (XV == 2) corr_rows_from<T, 4, 2>(c, In, Wt, bias, Out, 0);
    if (XV == 3) corr_rows_from<T, 2, 3>(c, In, Wt, bias, Out, 0);
    if (XV == 4) corr_rows_from<T, 2, 4>(c, In, Wt, bias, Out, 0);
    return;
  }
  for (int64_t o0 = 0; o0 < channels; o0 += NB) {
    const int nb = static_cast<int>(std::min<int64_t>(NB, channels - o0));
    const T* b = bias != nullptr ? bias + o0 : nullptr;
    T* out = Out + o0 * out_stride;
#define CNN_BASE_TILE(nb_, xv_)                                             \
    if (NB == nb_ && XV == xv_) {                                           \
      corr_tiles<T, nb_, xv_>(c, In, Wt, o0, nb, b, out, out_stride);       \
      continue;                                                             \
    }
    // every tile of kTiles
    CNN_BASE_TILE(12, 1) CNN_BASE_TILE(8, 1) CNN_BASE_TILE(4, 1) CNN_BASE_TILE(2, 1)
    CNN_BASE_TILE(1, 1) CNN_BASE_TILE(6, 2) CNN_BASE_TILE(4, 2) CNN_BASE_TILE(2, 2)
    CNN_BASE_TILE(1, 2) CNN_BASE_TILE(4, 3) CNN_BASE_TILE(2, 3) CNN_BASE_TILE(1, 3)
    CNN_BASE_TILE(2, 4) CNN_BASE_TILE(1, 4)
#undef CNN_BASE_TILE
  }
}

// ---- the kernel gradient -------------------------------------------------
//
// dK[o, c, i, j] = sum over n, y, x of dY[n, o, y, x] * Xp[n, c, y s_h + i d_h, x s_w + j d_w]
// (Xp: the zero-padded input). A "tap" is one (input channel, kernel cell)
// pair of a group; the taps of a group are numbered c * k_h * k_w + i * k_w + j,
// the kernel's own order. One loop item is a band of output rows of one
// image: every (output channel, tap) sum over the band is kept per vector
// lane, OB output channels times CB taps at a time in registers (each input
// vector loaded serves OB channels, each gradient vector CB taps), then added
// to the thread's partial sums, which the caller adds up at the end.

// OB x CB sums over the band's output rows [0, rows). dy[b]: the band's first
// output-gradient row of output channel b, rows of OWt (a whole number of
// vectors, zeros past the row's end OW); off[t]: where tap t reads in the
// band's padded (phase-sorted) input planes Xb for output column 0. The input
// lanes past OW are masked to zero as well: they may hold real input cells
// (seen by other taps), and 0 * inf or 0 * NaN there would reach the sum of a
// tap that never sees them. part: the partial sums of (o0, tap0), rows of ``taps`` vectors
// per output channel. Only the first nbo channels and ncb taps are real (the
// others repeat the first and are not stored).
template <typename T, int OB, int CB>
void weight_grad_tile(const T* const* dy, const T* Xb, const int64_t* off, int64_t rows,
                      int64_t OW, int64_t OWt, int64_t row_step, T* part, int64_t taps, int nbo,
                      int ncb) {
  typedef typename VecOf<T>::type V;
  constexpr int L = Lanes<T>::L;
  typename MaskOf<T>::type last;          // the lanes of the last vector before OW
  for (int l = 0; l < L; ++l) last[l] = OWt - L + l < OW ? -1 : 0;
  V acc[OB][CB];
  for (int b = 0; b < OB; ++b)
    for (int t = 0; t < CB; ++t) acc[b][t] = V{};
  for (int64_t y = 0; y < rows; ++y) {
    const T* row = Xb + y * row_step;
    const int64_t dy_row = y * OWt;
    for (int64_t x = 0; x < OWt; x += L) {
      V in[CB];
      for (int t = 0; t < CB; ++t) in[t] = load(row + off[t] + x);
      if (x + L > OW)
        for (int t = 0; t < CB; ++t) in[t] = masked<T>(in[t], last);
      for (int b = 0; b < OB; ++b) {
        V d;
        std::memcpy(&d, dy[b] + dy_row + x, sizeof d);
        for (int t = 0; t < CB; ++t) acc[b][t] += d * in[t];
      }
    }
  }
  for (int b = 0; b < nbo; ++b) {
    for (int t = 0; t < ncb; ++t) {
      T* sum = part + (b * taps + t) * L;
      V v;
      std::memcpy(&v, sum, sizeof v);
      v += acc[b][t];
      std::memcpy(sum, &v, sizeof v);
    }
  }
}

// Every (output channel, tap) of every group for the output rows [y0, y1) of
// one image, added to ``part`` (O x taps x L partial sums), OB x CB at a time.
// dYb: the band's output-gradient rows (O x (y1 - y0) x OWt); Xb: the band's
// padded input planes.
template <typename T, int OB, int CB>
void weight_grad_band_as(const WeightGradShape& w, const T* dYb, const T* Xb,
                         const int64_t* tap_off, int64_t y0, int64_t y1, T* part) {
  constexpr int L = Lanes<T>::L;
  const T* dy[OB];
  int64_t off[CB];
  for (int64_t grp = 0; grp < w.G; ++grp) {
    const T* Xg = Xb + grp * w.Cg * w.BH * w.RW;
    for (int64_t o0 = grp * w.Og; o0 < (grp + 1) * w.Og; o0 += OB) {
      const int nbo = static_cast<int>(std::min<int64_t>(OB, (grp + 1) * w.Og - o0));
      for (int b = 0; b < OB; ++b)
        dy[b] = dYb + (o0 + (b < nbo ? b : 0)) * (y1 - y0) * w.OWt;
      for (int64_t t0 = 0; t0 < w.taps; t0 += CB) {
        const int ncb = static_cast<int>(std::min<int64_t>(CB, w.taps - t0));
        for (int t = 0; t < CB; ++t) off[t] = tap_off[t0 + (t < ncb ? t : 0)];
        T* at = part + (o0 * w.taps + t0) * L;
        weight_grad_tile<T, OB, CB>(dy, Xg, off, y1 - y0, w.OW, w.OWt, w.s_h * w.RW, at,
                                    w.taps, nbo, ncb);
      }
    }
  }
}

// weight_grad_band_as with the tile (w.OB, w.CB), one of kGradTiles.
template <typename T>
void weight_grad_band(const WeightGradShape& w, const T* dYb, const T* Xb,
                      const int64_t* tap_off, int64_t y0, int64_t y1, T* part) {
#define CNN_BASE_GRAD_TILE(ob_, cb_)                                                        \
  if (w.OB == ob_ && w.CB == cb_)                                                          \
    return weight_grad_band_as<T, ob_, cb_>(w, dYb, Xb, tap_off, y0, y1, part);
  CNN_BASE_GRAD_TILE(12, 1) CNN_BASE_GRAD_TILE(6, 2) CNN_BASE_GRAD_TILE(4, 3)
  CNN_BASE_GRAD_TILE(2, 5) CNN_BASE_GRAD_TILE(1, 9)
#undef CNN_BASE_GRAD_TILE
}

// ---- depthwise convs with the planes side by side (conv2d_depthwise.h) ----

// The L lanes of a cell (conv2d_depthwise.h) as one vector, loaded and stored whole. What it
// buys: the same loops over the lanes as plain arrays stayed scalar (the compiler could not
// rule out that the buffers overlap), one value at a time.
template <typename T>
struct Cell {
  typedef typename VecOf<T>::type V;
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof v); }
};

// 8 x 8 floats turned in registers: r[m][l] <- r[l][m], in three rounds of two-vector
// shuffles (pairs of values, of pairs, of halves).
inline void turn8(Cell<float>::V (&r)[8]) {
  typedef MaskOf<float>::type M;
  Cell<float>::V t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(r[i], r[i + 1], M{0, 8, 1, 9, 4, 12, 5, 13});
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], M{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int i = 0; i < 8; i += 4)
    for (int h = 0; h < 2; ++h) {
      u[i + 2 * h] = __builtin_shuffle(t[i + h], t[i + h + 2], M{0, 1, 8, 9, 4, 5, 12, 13});
      u[i + 2 * h + 1] = __builtin_shuffle(t[i + h], t[i + h + 2], M{2, 3, 10, 11, 6, 7, 14, 15});
    }
  for (int m = 0; m < 4; ++m) {
    r[m] = __builtin_shuffle(u[m], u[m + 4], M{0, 1, 2, 3, 8, 9, 10, 11});
    r[m + 4] = __builtin_shuffle(u[m], u[m + 4], M{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

// Cells (of L lanes) and planes, both ways (conv2d_depthwise.h's to_lanes and from_lanes):
// ``lanes`` planes of ``size`` values, ``cols`` a row, and the cells of a buffer ``BW`` cells
// a row, position k of the planes at cell (k / cols + top, k % cols + left). Eight float
// planes go eight positions at a time, turned in registers; the rest value by value. What it
// buys: the value-by-value copies took longer than the sums (MobileNetV2's 960 planes of 7 x
// 7, forward, one thread: to_lanes and from_lanes 27% of the time, forward_lanes 22%).
struct CellWalk {              // the cell of position k, walked forward one position at a time
  int64_t cols, BW, left, r, c;
  int64_t cell() const { return r * BW + c; }
  void next() {
    if (++c == cols + left) c = left, ++r;
  }
};

template <typename T>
void planes_to_cells(const T* plane, int64_t size, int64_t cols, int lanes, T* dst, int64_t BW,
                     int64_t top, int64_t left) {
  constexpr int L = Lanes<T>::L;
  CellWalk w{cols, BW, left, top, left};
  int64_t k = 0;
  if constexpr (std::is_same<T, float>::value) {
    for (; lanes == L && k + L <= size; k += L) {
      Cell<float>::V r[8];
      for (int l = 0; l < L; ++l) r[l] = Cell<float>::load(plane + l * size + k);
      turn8(r);
      for (int m = 0; m < L; ++m, w.next()) Cell<float>::store(dst + w.cell() * L, r[m]);
    }
  }
  for (; k < size; ++k, w.next())
    for (int l = 0; l < lanes; ++l) dst[w.cell() * L + l] = plane[l * size + k];
}

template <typename T>
void cells_to_planes(const T* src, int64_t BW, int64_t top, int64_t left, int64_t size,
                     int64_t cols, int lanes, T* plane) {
  constexpr int L = Lanes<T>::L;
  CellWalk w{cols, BW, left, top, left};
  int64_t k = 0;
  if constexpr (std::is_same<T, float>::value) {
    for (; lanes == L && k + L <= size; k += L) {
      Cell<float>::V r[8];
      for (int m = 0; m < L; ++m, w.next()) r[m] = Cell<float>::load(src + w.cell() * L);
      turn8(r);
      for (int l = 0; l < L; ++l) Cell<float>::store(plane + l * size + k, r[l]);
    }
  }
  for (; k < size; ++k, w.next())
    for (int l = 0; l < lanes; ++l) plane[l * size + k] = src[w.cell() * L + l];
}

// Output cells summed at once, each in its own vector (a chain of k_h k_w multiply-adds per
// cell). What it buys: one cell at a time waited on each multiply-add's result before the
// next (latency, not throughput). Measured together with the copies above, not apart:
// MobileNetV2's 960 planes of 7 x 7, forward, one thread, 0.62-0.69 -> 0.33-0.36 ms (the
// built-in 0.37-0.44).
constexpr int64_t kCellsAtOnce = 8;

// Where output cell c (row-major) reads its window's first cell in Xl.
template <typename T>
const T* window_at(const ConvParams& P, const Geometry& g, int64_t BW, const T* Xl, int64_t c) {
  return Xl + ((c / g.OW) * P.s_h * BW + (c % g.OW) * P.s_w) * Lanes<T>::L;
}

// Y's lanes (OH x OW cells) = the bias Bl, then + Kl[i][j] Xl[y s_h + i d_h][x s_w + j d_w]
// over the kernel cells in row-major order (the sums of corr_tiles, so the same bits),
// kCellsAtOnce cells at a time; the last group ends at the last cell, so it may sum again
// cells of the group before (the same values written again).
template <typename T>
void forward_lanes(const ConvParams& P, const Geometry& g, int64_t BW, const T* Xl,
                   const T* Kl, const T* Bl, T* Yl) {
  constexpr int L = Lanes<T>::L, Q = kCellsAtOnce;
  typedef Cell<T> C;
  const int64_t cells = g.OH * g.OW;
  if (cells < Q) {
    for (int64_t c = 0; c < cells; ++c) {
      const T* in = window_at(P, g, BW, Xl, c);
      typename C::V acc = C::load(Bl);
      for (int64_t i = 0; i < g.KH; ++i)
        for (int64_t j = 0; j < g.KW; ++j)
          acc += C::load(Kl + (i * g.KW + j) * L) * C::load(in + (i * P.d_h * BW + j * P.d_w) * L);
      C::store(Yl + c * L, acc);
    }
    return;
  }
  for (int64_t c0 = 0; c0 < cells; c0 += Q) {
    const int64_t first = std::min(c0, cells - Q);
    const T* in[Q];
    typename C::V acc[Q];
    for (int q = 0; q < Q; ++q) in[q] = window_at(P, g, BW, Xl, first + q), acc[q] = C::load(Bl);
    for (int64_t i = 0; i < g.KH; ++i)
      for (int64_t j = 0; j < g.KW; ++j) {
        const typename C::V w = C::load(Kl + (i * g.KW + j) * L);
        const int64_t off = (i * P.d_h * BW + j * P.d_w) * L;
        for (int q = 0; q < Q; ++q) acc[q] += w * C::load(in[q] + off);
      }
    for (int q = 0; q < Q; ++q) C::store(Yl + (first + q) * L, acc[q]);
  }
}

// Kernel cell by kernel cell (row-major), over every output cell: dXl (BH x BW cells, zeroed
// by the caller) += the kernel cell's weights times dY at the cell it read, and dKl (taps x
// L) += this image's sum of dY times those cells, in kCellsAtOnce sums (cell c in sum c mod
// kCellsAtOnce, added together at the end in a fixed order). What it buys: a cell of dXl gets
// one addition per pass, where adding each output's k_h k_w products in turn read back cells
// just written (a stall on every store, twice the time); the separate sums do not wait on
// each other's multiply-adds (one sum: 960 planes of 7 x 7, one thread, 1.1 ms against the
// built-in's 0.7 for its whole backward).
template <typename T>
void backward_lanes(const ConvParams& P, const Geometry& g, int64_t BW, const T* dYl,
                    const T* Xl, const T* Kl, T* dXl, T* dKl) {
  constexpr int L = Lanes<T>::L, Q = kCellsAtOnce;
  typedef Cell<T> C;
  const int64_t cells = g.OH * g.OW;
  for (int64_t i = 0; i < g.KH; ++i)
    for (int64_t j = 0; j < g.KW; ++j) {
      const typename C::V w = C::load(Kl + (i * g.KW + j) * L);
      const int64_t off = (i * P.d_h * BW + j * P.d_w) * L;
      typename C::V acc[Q] = {};
      int64_t y = 0, x = 0;                          // output cell c's row and column
      const auto cell = [&](int64_t c, typename C::V& sum) {
        const typename C::V dy = C::load(dYl + c * L);
        const int64_t at = (y * P.s_h * BW + x * P.s_w) * L + off;
        C::store(dXl + at, C::load(dXl + at) + w * dy);
        sum += dy * C::load(Xl + at);
        if (++x == g.OW) x = 0, ++y;
      };
      int64_t c = 0;
      for (; c + Q <= cells; c += Q)
        for (int q = 0; q < Q; ++q) cell(c + q, acc[q]);
      for (int q = 0; c < cells; ++c, ++q) cell(c, acc[q]);
      typename C::V sum = C::load(dKl + (i * g.KW + j) * L);
      for (int q = 0; q < Q; ++q) sum += acc[q];
      C::store(dKl + (i * g.KW + j) * L, sum);
    }
}

// ---- few sums over long rows (the weight gradient of narrow windows) -------
//
// C[m][n] = beta C[m][n] + sum over l of A[m][l] B[n][l], every row read along l: dW_g^T =
// cols dY^T when K_g and O_g are small and the rows (a tile's columns) long, e.g. a stem's
// 49 x 64 sums over 4608 columns. MR rows of A times NR of B are summed in MR NR vectors
// over a chunk of kDotChunk columns (the B rows of a chunk stay in L2), then added lane by
// lane into C. Measured alone, one thread, AVX2: 65-85 GFLOP/s on 27-150 rows of A by 16-64
// of B over 4096 columns (chunks of 1024: 70-76; of 128-256, the adding up per chunk: 36-49).

constexpr int64_t kDotChunk = 2048;

template <typename T, int MR, int NR>
void dot_block(int64_t l0, int64_t l1, const T* A, int64_t lda, const T* B, int64_t ldb,
               T* C, int64_t ldc) {
  typedef Cell<T> Cl;
  constexpr int L = Lanes<T>::L;
  typename Cl::V acc[MR][NR] = {};
  int64_t l = l0;
  for (; l + L <= l1; l += L) {
    typename Cl::V a[MR];
    for (int i = 0; i < MR; ++i) a[i] = Cl::load(A + i * lda + l);
    for (int j = 0; j < NR; ++j) {
      const typename Cl::V b = Cl::load(B + j * ldb + l);
      for (int i = 0; i < MR; ++i) acc[i][j] += a[i] * b;
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      T sum = 0;
      for (int v = 0; v < L; ++v) sum += acc[i][j][v];
      for (int64_t k = l; k < l1; ++k) sum += A[i * lda + k] * B[j * ldb + k];
      C[i * ldc + j] += sum;
    }
}

// The blocks of MR x NR sums (fewer at the edges) of one chunk of columns.
template <typename T, int MR>
void dot_rows_of(int64_t l0, int64_t l1, int64_t N, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T* C, int64_t ldc) {
  constexpr int NR = 4;
  int64_t n = 0;
  for (; n + NR <= N; n += NR) dot_block<T, MR, NR>(l0, l1, A, lda, B + n * ldb, ldb, C + n, ldc);
  switch (N - n) {
    case 3: dot_block<T, MR, 3>(l0, l1, A, lda, B + n * ldb, ldb, C + n, ldc); break;
    case 2: dot_block<T, MR, 2>(l0, l1, A, lda, B + n * ldb, ldb, C + n, ldc); break;
    case 1: dot_block<T, MR, 1>(l0, l1, A, lda, B + n * ldb, ldb, C + n, ldc); break;
    default: break;
  }
}

template <typename T>
void dot_rows(int64_t M, int64_t N, int64_t Lc, const T* A, int64_t lda, const T* B,
              int64_t ldb, T beta, T* C, int64_t ldc) {
  constexpr int MR = 3;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta == T(0) ? T(0) : beta * C[m * ldc + n];
  for (int64_t l0 = 0; l0 < Lc; l0 += kDotChunk) {
    const int64_t l1 = std::min(Lc, l0 + kDotChunk);
    int64_t m = 0;
    for (; m + MR <= M; m += MR) dot_rows_of<T, MR>(l0, l1, N, A + m * lda, lda, B, ldb, C + m * ldc, ldc);
    if (M - m == 2) dot_rows_of<T, 2>(l0, l1, N, A + m * lda, lda, B, ldb, C + m * ldc, ldc);
    if (M - m == 1) dot_rows_of<T, 1>(l0, l1, N, A + m * lda, lda, B, ldb, C + m * ldc, ldc);
  }
}
