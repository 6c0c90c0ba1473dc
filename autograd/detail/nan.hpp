// Comparisons that keep NaN. IEEE comparisons with NaN are false, so std::max(a, b) (= a < b ? b : a) and
// SIMD max instructions silently drop a NaN operand; these never do.
#pragma once

namespace ag::detail {

/// True for NaN (x != x), without <cmath>'s std::isnan, which -ffast-math may fold away.
template <class T>
inline bool is_nan(T x) {
  return x != x;
}

/// The larger of a and b, NaN if either is NaN. On ties, `a`.
template <class T>
inline T nan_max(T a, T b) {
  return (b > a || is_nan(b)) ? b : a;
}

}  // namespace ag::detail
