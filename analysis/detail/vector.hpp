// Plain vector arithmetic on flat double vectors, shared by the Lanczos and landscape code.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace analysis::detail {

using Vector = std::vector<double>;

inline double dot(const Vector& a, const Vector& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

inline double norm(const Vector& a) { return std::sqrt(dot(a, a)); }

/// a += c b
inline void axpy(Vector& a, double c, const Vector& b) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += c * b[i];
}

inline void scale(Vector& a, double c) {
  for (double& x : a) x *= c;
}

}  // namespace analysis::detail
