#include "analysis/dense.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/detail/xt.hpp"
// After xtensor's door; LAPACK's symbols are bound in analysis/detail/lapack.cpp.
#include <xtensor-blas/xlinalg.hpp>

namespace analysis {

namespace {

void check_square(const char* what, const std::vector<double>& a, std::size_t n) {
  if (a.size() != n * n) {
    throw std::invalid_argument(fmt::format("{}: the matrix has {} entries, not n * n = {} (n = {})", what,
                                            a.size(), n * n, n));
  }
}

bool all_finite(const std::vector<double>& a) {
  for (double x : a) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

/// A row-major copy of `a` as an n x n xtensor.
xt::xtensor<double, 2> as_matrix(const std::vector<double>& a, std::size_t n) {
  return xt::adapt(a, std::array<std::size_t, 2>{n, n});
}

}  // namespace

std::vector<double> SymmetricEigen::vector(std::size_t j) const {
  const std::size_t n = values.size();
  if (j >= n) throw std::out_of_range(fmt::format("SymmetricEigen::vector: index {} of {} eigenvectors", j, n));
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = vectors[i * n + j];
  return v;
}

SymmetricEigen symmetric_eigen(const std::vector<double>& a, std::size_t n) {
  check_square("symmetric_eigen", a, n);
  if (!all_finite(a)) throw std::invalid_argument(fmt::format("symmetric_eigen: the {} x {} matrix is not finite", n, n));
  SymmetricEigen result;
  if (n == 0) return result;
  auto [values, vectors] = xt::linalg::eigh(as_matrix(a, n));
  result.values.assign(values.begin(), values.end());
  result.vectors.resize(n * n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) result.vectors[i * n + j] = vectors(i, j);
  }
  return result;
}

std::optional<std::vector<double>> cholesky(const std::vector<double>& a, std::size_t n) {
  check_square("cholesky", a, n);
  if (n == 0) return std::vector<double>{};
  // LAPACK stops at a pivot that is not positive or is NaN; infinities are refused here.
  if (!all_finite(a)) return std::nullopt;
  // xt::linalg::cholesky's own steps (a column-major copy, dpotrf on its lower triangle), but with LAPACK's
  // status as the answer rather than an exception, and no assertion against n = 1.
  xt::xtensor<double, 2, xt::layout_type::column_major> factor = as_matrix(a, n);
  if (xt::lapack::potr(factor, 'L') != 0) return std::nullopt;
  std::vector<double> l(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j <= i; ++j) l[i * n + j] = factor(i, j);
  }
  if (!all_finite(l)) return std::nullopt;
  return l;
}

std::vector<double> cholesky_solve(const std::vector<double>& l, std::size_t n, const std::vector<double>& b) {
  check_square("cholesky_solve", l, n);
  if (b.size() != n) {
    throw std::invalid_argument(fmt::format("cholesky_solve: the right-hand side has {} entries, the matrix {} rows",
                                            b.size(), n));
  }
  if (n == 0) return {};
  xt::xtensor<double, 1> rhs = xt::adapt(b, std::array<std::size_t, 1>{n});
  auto x = xt::linalg::solve_cholesky(as_matrix(l, n), rhs);
  return std::vector<double>(x.begin(), x.end());
}

}  // namespace analysis
