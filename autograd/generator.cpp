#include "autograd/generator.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace ag {

// ---------------------------------------------------------------- the engine

void Mt19937_64::seed(std::uint64_t value) {
  state_[0] = value;
  for (unsigned i = 1; i < kStateSize; ++i) {
    state_[i] = 6364136223846793005ULL * (state_[i - 1] ^ (state_[i - 1] >> 62)) + i;
  }
  index_ = kStateSize;
}

void Mt19937_64::twist() {
  constexpr unsigned shift = 156;
  constexpr std::uint64_t matrix = 0xb5026f5aa96619e9ULL;
  constexpr std::uint64_t upper = ~std::uint64_t{0} << 31, lower = ~upper;
  for (unsigned i = 0; i < kStateSize; ++i) {
    std::uint64_t y = (state_[i] & upper) | (state_[(i + 1) % kStateSize] & lower);
    state_[i] = state_[(i + shift) % kStateSize] ^ (y >> 1) ^ ((y & 1U) ? matrix : 0);
  }
  index_ = 0;
}

// ---------------------------------------------------------------- the generator

double Generator::uniform01() {
  // 53 random bits -> [0, 1), the same on every platform.
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = 0.0;
  while (u1 <= 0.0) u1 = uniform01();
  double u2 = uniform01();
  double radius = std::sqrt(-2.0 * std::log(u1));
  double angle = 2.0 * std::numbers::pi * u2;
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

std::uint64_t Generator::below(std::uint64_t n) {
  if (n == 0) throw std::invalid_argument("Generator::below: n must be positive");
  // Rejection sampling: no modulo bias.
  std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  std::uint64_t value;
  do value = engine_();
  while (value >= limit);
  return value % n;
}

}  // namespace ag
