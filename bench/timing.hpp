// Timing one call many times for the micro-benchmarks (bench/conv_kernels.cpp, bench/per_sample.cpp): the best
// thread CPU time of the runs (robust on a shared machine: wall time also counts the time other processes held the
// core) and the median wall time, in microseconds.
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace bench {

struct Timing {
  double cpu = 0, wall = 0;  // microseconds
};

/// This thread's CPU time in microseconds.
inline double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e6 + double(ts.tv_nsec) * 1e-3;
}

/// `call` three times untimed (warming the caches and the allocator's block cache), then `repetitions` times
/// timed (at least once).
inline Timing time_us(int repetitions, const std::function<void()>& call) {
  for (int i = 0; i < 3; ++i) call();
  std::vector<double> cpu, wall;
  for (int i = 0; i < std::max(repetitions, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_us();
    call();
    cpu.push_back(thread_cpu_us() - cpu_start);
    wall.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(wall.begin(), wall.begin() + static_cast<std::ptrdiff_t>(wall.size() / 2), wall.end());
  return {*std::min_element(cpu.begin(), cpu.end()), wall[wall.size() / 2]};
}

}  // namespace bench
