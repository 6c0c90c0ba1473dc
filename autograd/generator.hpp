// The seeded random source of the library (weights, shuffles, dropout masks), in a light header.
//
// The engine is MT19937-64 written out here rather than std::mt19937_64, so that this header, which
// every translation unit sees through autograd/tensor.hpp, does not pull in <random> (some 50,000
// preprocessed lines). It produces exactly std::mt19937_64's sequence for the same seed (a test
// checks it draw for draw), so seeded results are what they were.
#pragma once

#include <cstdint>

namespace ag {

/// MT19937-64 (Matsumoto and Nishimura 2000), draw for draw the sequence of std::mt19937_64 seeded
/// with the same value. A uniform random bit generator: it can be handed to the standard library's
/// distributions and algorithms (std::shuffle).
class Mt19937_64 {
 public:
  using result_type = std::uint64_t;
  static constexpr std::uint64_t default_seed = 5489U;

  explicit Mt19937_64(std::uint64_t seed = default_seed) { this->seed(seed); }
  void seed(std::uint64_t value);

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~std::uint64_t{0}; }
  result_type operator()() {
    if (index_ >= kStateSize) twist();
    std::uint64_t x = state_[index_++];
    x ^= (x >> 29) & 0x5555555555555555ULL;
    x ^= (x << 17) & 0x71d67fffeda60000ULL;
    x ^= (x << 37) & 0xfff7eee000000000ULL;
    return x ^ (x >> 43);
  }

 private:
  static constexpr unsigned kStateSize = 312;
  void twist();
  std::uint64_t state_[kStateSize];
  unsigned index_ = kStateSize;
};

/// Seeded random source: the same seed gives the same numbers, run after run.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}
  /// The engine itself, for the standard library's algorithms; each call draws 64 bits.
  Mt19937_64& engine() { return engine_; }
  /// Uniform in [0, 1), independent of the standard library's distributions.
  double uniform01();
  /// Standard normal (Box-Muller), independent of the standard library's distributions.
  double normal();
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n);

 private:
  Mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace ag
