/*
 * cnn_base's threading policy for its C++ kernels, in one place (header only).
 *
 * A kernel asks ``cnn_base::threads_for(items, cost_per_item)`` how many
 * OpenMP threads to run its loop over ``items`` independent pieces with, and
 * runs one ``#pragma omp parallel for num_threads(n) if (n > 1)`` per call.
 *
 * What it buys. An OpenMP region ends only when every thread of its team has
 * done its share. The pooling kernel used to ask for one thread per processor
 * on every call, whatever the size and whatever else the machine was doing:
 * with one other busy process on a 2-core machine, one of its two threads had
 * to wait for the core the busy process held, for a whole scheduling period,
 * ~23 ms per call, where the work takes 0.1-1 ms (OMP_NUM_THREADS=1 hid it;
 * so did OMP_WAIT_POLICY=passive, whose sleeping workers the scheduler wakes
 * sooner). MXNet's operators and ours share one OpenMP runtime (the system
 * libgomp: libmxnet.so links it, and so does our library), so the runtime was
 * not the cause; the thread count was. The policy:
 *
 * - the ceiling follows the variables MXNet's operators read
 *   (src/engine/openmp.cc): MXNET_OMP_MAX_THREADS, else OMP_NUM_THREADS, else
 *   the processors this process may use (MXNet halves that on x86, assuming
 *   hyper-threads; the next rule makes the whole count safe instead);
 * - never more threads than processors idle right now (the run-queue count in
 *   /proc/loadavg less this process's own running threads, re-read at most
 *   every kRecheckNs): a thread sent to a busy
 *   core makes the whole region wait for it. On an idle machine this changes
 *   nothing; with one busy process on 2 cores it means one thread;
 * - work too small to pay for a team runs on the calling thread: no team, no
 *   barrier, nothing to wait for (kMinWorkPerThread).
 *
 * The kernel runs one parallel region per operator call, never one per plane.
 *
 * A future kernel (a conv, say) includes this header and calls threads_for
 * with its own cost per item, so every kernel follows the same policy.
 */
#ifndef CNN_BASE_PARALLEL_H_
#define CNN_BASE_PARALLEL_H_

#include <dirent.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cnn_base {

// Below this much work per thread (units of about one element read or
// written) a thread costs more to wake and wait for than it saves: PyTorch's
// grain size for its CPU loops (at::internal::GRAIN_SIZE), some 10-50 us of
// pooling here. A 1x1x8x8 pool is 80 units; (32, 6, 28, 28) k2 s2 is 190k.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 15;
// How long a reading of the run queue is trusted.
constexpr int64_t kRecheckNs = 20 * 1000 * 1000;

namespace detail {

inline int env_threads(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  return (end != value && n > 0 && n < 4096) ? static_cast<int>(n) : 0;
}

inline std::atomic<int>& ceiling() {
  static std::atomic<int> value{1};
  return value;
}

// Runnable tasks in the whole machine right now, the caller included; 0 when
// unknown. /proc/loadavg's fourth field is "running/total".
inline int runnable_now() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return 0;
  double a, b, c;
  int running = 0, total = 0;
  const int got = std::fscanf(f, "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total);
  std::fclose(f);
  return got == 5 ? running : 0;
}

// Runnable threads of this process right now (state R in /proc/self/task/*/stat).
// What it buys: our own threads are not load. MXNet's engine workers and the
// OpenMP workers of the region that just ended (libgomp spins them for a while)
// show as running in /proc/loadavg; counted as other processes they made a
// quarter of the conv's calls on an idle 2-core machine run on one thread.
inline int runnable_here() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return 0;
  int running = 0;
  char path[64];
  while (const dirent* task = readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", task->d_name);
    std::FILE* f = std::fopen(path, "r");
    if (f == nullptr) continue;
    char line[512];
    const size_t got = std::fread(line, 1, sizeof line - 1, f);
    std::fclose(f);
    line[got] = '\0';
    const char* after_name = std::strrchr(line, ')');   // "tid (name) S ..."
    if (after_name != nullptr && after_name[1] == ' ' && after_name[2] == 'R') ++running;
  }
  closedir(tasks);
  return running;
}

}  // namespace detail

// Sets the ceiling from the variables MXNet's operators read; the library's
// initialize() calls it.
inline int init_threads() {
  int n = detail::env_threads("MXNET_OMP_MAX_THREADS");
  if (n == 0) n = detail::env_threads("OMP_NUM_THREADS");
  if (n == 0) n = omp_get_num_procs();
  n = std::max(1, n);
  detail::ceiling().store(n);
  return n;
}

inline int max_threads() { return detail::ceiling().load(std::memory_order_relaxed); }

// Processors not busy with other runnable tasks (at least 1), re-read at most
// every kRecheckNs by whichever thread asks. Other processes' runnable tasks are
// the machine's less this process's; the machine's count is read before and
// after this process's threads and the smaller taken (a thread of ours that
// stops running in between is not someone else's), and fewer processors count
// as idle only when two readings in a row say so. What it buys: on an idle
// 2-core machine one reading in four or five still saw "another" task for one
// of those reasons, and each sent 20 ms of our kernels to one thread (a
// hybridized 512-channel conv at 1.65x the built-in instead of 1.0x); a busy
// process is there in every reading and still halves the team 20-40 ms later.
inline int idle_processors() {
  static std::atomic<int64_t> checked_at{INT64_MIN / 2};
  static std::atomic<int> idle{1}, last_reading{1 << 20};
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now().time_since_epoch()).count();
  if (now - checked_at.load(std::memory_order_relaxed) > kRecheckNs) {
    checked_at.store(now, std::memory_order_relaxed);
    const int procs = omp_get_num_procs();
    const int before = detail::runnable_now();
    const int here = std::max(1, detail::runnable_here());   // the asking thread among them
    const int running = std::min(before, detail::runnable_now());
    const int reading = running > 0 ? std::max(1, procs - std::max(0, running - here)) : procs;
    idle.store(std::max(reading, last_reading.exchange(reading, std::memory_order_relaxed)),
               std::memory_order_relaxed);
  }
  return std::min(idle.load(std::memory_order_relaxed), omp_get_num_procs());
}

// Threads for a loop over ``items`` pieces costing ``cost_per_item`` each.
inline int threads_for(int64_t items, int64_t cost_per_item) {
  int64_t n = max_threads();
  if (n <= 1 || items <= 1) return 1;
  const int64_t per_item = std::max<int64_t>(cost_per_item, 1);
  const int64_t work = items > INT64_MAX / per_item ? INT64_MAX : items * per_item;
  n = std::min<int64_t>({n, items, work / kMinWorkPerThread});
  if (n <= 1) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, idle_processors())));
}

// Multiply-adds done by a BLAS call in the time of one unit of threads_for's cost (an element
// read or written): the BLAS multiplies at ~100 GFLOP/s a core here, 50 G multiply-adds a
// second, where a loop moves some 2-4 G elements.
constexpr int64_t kMultiplyAddsPerUnit = 16;

// threads_for for a loop whose items are BLAS calls of ``multiply_adds_per_item`` each.
// What it buys: counted as elements, a multiply of 0.1 M multiply-adds (a 1x1 conv of 1280
// channels to 10 on 1 x 1 planes, batch 8: a few us on one core) took a team of two; the
// three teams of its training step cost 80 of 255 us (static graph, forward + backward).
inline int threads_for_multiplies(int64_t items, int64_t multiply_adds_per_item) {
  return threads_for(items, std::max<int64_t>(1, multiply_adds_per_item / kMultiplyAddsPerUnit));
}

}  // namespace cnn_base

#endif  // CNN_BASE_PARALLEL_H_
