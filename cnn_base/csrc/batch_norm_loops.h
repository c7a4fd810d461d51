/*
 * The loops of batch_norm.cc, compiled twice by compiled_twice.h: into ``fast`` for AVX2 with
 * FMA and ``base`` for any x86-64 (or other) processor; the processor is asked once which one
 * it runs (as conv2d.cc does with conv2d_loops.h). No include guard: it is meant to be
 * included twice.
 */

// A channel's sums are kept in kSums partial sums side by side, each value added to the one of
// its position modulo kSums in its segment (none waiting on another's add; a segment's last
// values, fewer than kSums, go to the first vector's lanes and past them one by one into a
// few more), and moved into a double every kFlushValues values. What it buys: one running sum
// per segment (omp simd's one vector, then the segment's total) waited on each add's latency,
// and on 3 x 3 and 6 x 6 planes on a total per 9-36 values. One thread, forward + backward, medians of 15: (32, 64,
// 48, 48) 21.2 -> 15.3 ms, (32, 64, 24, 24) 5.3 -> 4.4, (32, 256, 6, 6) 3.3 -> 2.2, (32, 1024,
// 6, 6) 8.4 -> 6.1 (MXNet's on the same plain arrays: 27.7, 7.6, 2.6, 10.8).
constexpr int kSums = 32;
constexpr int64_t kFlushValues = 4096;

// The partial sums as kSums / lanes vectors, local to the loop that adds into them. What it
// buys: kept in an array the loop's pointer reached, GCC left them on the stack, every add a
// load and a store waiting on the last one's (perf: a third of the forward's time there); and
// a segment's tail added lane by lane into them kept them all in memory. With the backward's
// two sums in one pass and prefetch_start, in the networks (profiler, one thread, static,
// forward / backward ms a step, before -> after, in turns): ResNet-18 11.4 / 14.7 -> 10.3-10.8
// / 13.2-13.4, DenseNet 16.1-17.2 / 23.7-24.6 -> 14.5-15.1 / 21.0, LeNet-BN 1.7 / 2.4 -> 1.1 /
// 1.3 (MXNet's own after its conv in ResNet-18: 6.5 / 8.4).
template <typename T>
struct PartialSums {
  typedef T V __attribute__((vector_size(32)));
  static constexpr int L = 32 / sizeof(T), kVectors = kSums / L;
  V v[kVectors] = {};
  T tail[L] = {};     // a segment's values past its whole vectors (not indexed into v: an
                      // index chosen at run time would keep every vector in memory)

  static V load(const T* p) {
    V x;
    std::memcpy(&x, p, sizeof x);
    return x;
  }
  // The total in double, and the partial sums zeroed.
  double flush() {
    double total = 0;
    for (int k = 0; k < kVectors; ++k)
      for (int l = 0; l < L; ++l) total += v[k][l];
    for (int l = 0; l < L; ++l) total += tail[l], tail[l] = 0;
    for (int k = 0; k < kVectors; ++k) v[k] = V{};
    return total;
  }
};

// The first cache lines of a segment of ``n`` values (for writing when ``write``), asked for
// while the segment before is summed. What it buys: a channel's segments lie C * inner values
// apart, and at each the processor's prefetchers start over, the loop waiting on memory for
// its first lines.
template <typename T>
inline void prefetch_start(const T* p, int64_t n, bool write) {
  constexpr int64_t kLines = 16, kLineValues = 64 / sizeof(T);
  for (int64_t at = 0; at < std::min(n, kLines * kLineValues); at += kLineValues) {
    if (write) __builtin_prefetch(p + at, 1); else __builtin_prefetch(p + at, 0);
  }
}

// total[t] = the sum over channel c of the t-th of term(a, b, terms), a and b A's and B's
// values at the same offset (B = A for one input): two sums of one pass read the values once.
// ``term`` is generic: it runs on vectors of lanes and, for a segment's tail, on single values.
template <typename T, int S, typename F>
void channel_totals(const Shape& s, int64_t c, const T* A, const T* B, F term,
                    double (&total)[S]) {
  typedef typename PartialSums<T>::V V;
  constexpr int L = PartialSums<T>::L;
  PartialSums<T> part[S];
  for (int t = 0; t < S; ++t) total[t] = 0;
  int64_t pending = 0;
  for (int64_t o = 0; o < s.outer; ++o) {
    const T* a = A + (o * s.C + c) * s.inner;
    const T* b = B + (o * s.C + c) * s.inner;
    if (o + 1 < s.outer) {
      prefetch_start(a + s.C * s.inner, s.inner, false);
      if (b != a) prefetch_start(b + s.C * s.inner, s.inner, false);
    }
    int64_t i = 0;
    for (; i + kSums <= s.inner; i += kSums)
      for (int k = 0; k < PartialSums<T>::kVectors; ++k) {
        V terms[S];
        term(PartialSums<T>::load(a + i + k * L), PartialSums<T>::load(b + i + k * L), terms);
        for (int t = 0; t < S; ++t) part[t].v[k] += terms[t];
      }
    for (; i + L <= s.inner; i += L) {      // the segment's last whole vectors, into the first
      V terms[S];
      term(PartialSums<T>::load(a + i), PartialSums<T>::load(b + i), terms);
      for (int t = 0; t < S; ++t) part[t].v[0] += terms[t];
    }
    for (int l = 0; i + l < s.inner; ++l) {  // and its last values one by one
      T terms[S];
      term(a[i + l], b[i + l], terms);
      for (int t = 0; t < S; ++t) part[t].tail[l] += terms[t];
    }
    if ((pending += s.inner) >= kFlushValues) {
      for (int t = 0; t < S; ++t) total[t] += part[t].flush();
      pending = 0;
    }
  }
  for (int t = 0; t < S; ++t) total[t] += part[t].flush();
}

// Threads for a pass over the whole batch, one channel per item.
inline int channel_threads(const Shape& s) {
  return cnn_base::threads_for(s.C, s.outer * s.inner);
}

// mean and invstd of channel c of X (two passes: the mean, then the squares about it); the
// running statistics move towards them as MXNet's do (momentum * running + (1 - momentum) *
// batch, the variance biased).
template <typename T>
void channel_statistics(const Shape& s, const T* X, int64_t c, double eps, double momentum,
                        T* running_mean, T* running_var, T* mean, T* invstd) {
  const int64_t M = s.outer * s.inner;
  double sum[1], squares[1];
  channel_totals(s, c, X, X, [](auto x, auto, auto* terms) { terms[0] = x; }, sum);
  const T m = static_cast<T>(sum[0] / M);
  channel_totals(s, c, X, X, [m](auto x, auto, auto* terms) { terms[0] = (x - m) * (x - m); },
                 squares);
  mean[c] = m;
  invstd[c] = static_cast<T>(1.0 / std::sqrt(squares[0] / M + eps));
  running_mean[c] = static_cast<T>(running_mean[c] * momentum + m * (1 - momentum));
  running_var[c] = static_cast<T>(running_var[c] * momentum + squares[0] / M * (1 - momentum));
}

// Y = (X - mean) * invstd * gamma + beta for channel c (X - mean first: written as X * a + b, a
// constant channel of a batch of one came out 6e-5 off beta).
template <typename T>
void normalize_channel(const Shape& s, const T* X, int64_t c, const T* gamma, const T* beta,
                       T m, T invstd, T* Y) {
  const T a = invstd * (gamma ? gamma[c] : T(1)), b = beta[c];
  for (int64_t o = 0; o < s.outer; ++o) {
    const T* x = X + (o * s.C + c) * s.inner;
    T* y = Y + (o * s.C + c) * s.inner;
    if (o + 1 < s.outer) prefetch_start(y + s.C * s.inner, s.inner, true);
#pragma omp simd
    for (int64_t i = 0; i < s.inner; ++i) y[i] = (x[i] - m) * a + b;
  }
}

// Channel by channel, its statistics (the batch's, or the running ones) and then its Y, while
// the channel is still in the core's cache (a channel of (32, C, 24, 24) is 72 KB). What it
// buys: with the statistics of every channel first and Y in a second loop the batch was read
// once more from further out; one thread, MXNet's profiler, best of 20: (32, 64, 48, 48) 5.1-5.6
// -> 4.6 ms; on 5 MB batches (32, 128, 24, 24) the same within the spread (L3 holds them).
template <typename T>
void forward(const Shape& s, const T* X, const T* gamma, const T* beta, T* running_mean,
             T* running_var, bool batch_stats, double eps, double momentum, T* Y, T* mean,
             T* invstd) {
#pragma omp parallel for num_threads(channel_threads(s)) schedule(static)
  for (int64_t c = 0; c < s.C; ++c) {
    if (batch_stats) {
      channel_statistics(s, X, c, eps, momentum, running_mean, running_var, mean, invstd);
    } else {
      mean[c] = running_mean[c];
      invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
    }
    normalize_channel(s, X, c, gamma, beta, mean[c], invstd[c], Y);
  }
}

// dbeta = sum dY and dgamma = sum dY * Xhat of channel c, in double, in one pass.
template <typename T>
void channel_sums(const Shape& s, const T* dY, const T* X, int64_t c, T m, T invstd,
                  double* sum_dy, double* sum_dy_xhat) {
  double sums[2];
  channel_totals(s, c, dY, X, [m](auto dy, auto x, auto* terms) {
    terms[0] = dy;
    terms[1] = dy * (x - m);
  }, sums);
  *sum_dy = sums[0];
  *sum_dy_xhat = sums[1] * invstd;
}

// dX = k * dY + l * (X - m) + q for channel c (the batch's statistics), or k * dY (fixed
// ones: X is not read, so an infinite X gives no NaN there).
template <typename T>
void channel_dx(const Shape& s, const T* dY, const T* X, int64_t c, bool batch_stats, T k, T l,
                T m, T q, T* dX) {
  for (int64_t o = 0; o < s.outer; ++o) {
    const T* dy = dY + (o * s.C + c) * s.inner;
    const T* x = X + (o * s.C + c) * s.inner;
    T* dx = dX + (o * s.C + c) * s.inner;
    if (batch_stats) {
#pragma omp simd
      for (int64_t i = 0; i < s.inner; ++i) dx[i] = k * dy[i] + l * (x[i] - m) + q;
    } else {
#pragma omp simd
      for (int64_t i = 0; i < s.inner; ++i) dx[i] = k * dy[i];
    }
  }
}

// dX, dgamma (unless nullptr: gamma fixed) and dbeta, written.
template <typename T>
void backward(const Shape& s, const T* dY, const T* X, const T* gamma, const T* mean,
              const T* invstd, bool batch_stats, T* dX, T* dgamma, T* dbeta) {
  const double M = static_cast<double>(s.outer * s.inner);
#pragma omp parallel for num_threads(channel_threads(s)) schedule(static)
  for (int64_t c = 0; c < s.C; ++c) {
    double sum_dy, sum_dy_xhat;
    channel_sums(s, dY, X, c, mean[c], invstd[c], &sum_dy, &sum_dy_xhat);
    if (dgamma != nullptr) dgamma[c] = static_cast<T>(sum_dy_xhat);
    dbeta[c] = static_cast<T>(sum_dy);
    const double g = (gamma ? static_cast<double>(gamma[c]) : 1.0) * invstd[c];
    // dX = g * (dY - sum_dy / M - (X - mean) * invstd * sum_dy_xhat / M), or g * dY
    const double l = batch_stats ? -g * invstd[c] * sum_dy_xhat / M : 0.0;
    const double q = batch_stats ? -g * sum_dy / M : 0.0;
    channel_dx<T>(s, dY, X, c, batch_stats, static_cast<T>(g), static_cast<T>(l), mean[c],
                  static_cast<T>(q), dX);
  }
}
