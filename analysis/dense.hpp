// Dense symmetric linear algebra on row-major matrices of doubles, through LAPACK (xtensor-blas).
//
// For matrices small enough to hold whole: the exact spectrum of a Hessian that analysis/hessian.hpp
// built, the tridiagonal matrices of Lanczos (analysis/spectrum.hpp), Newton's full solve
// (optim/newton.hpp). An n x n matrix is a std::vector<double> of n * n entries, entry (i, j) at
// i * n + j. LAPACK is OpenBLAS's, loaded by the library with its BLAS (autograd/blas.hpp).
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace analysis {

/// A = V diag(values) V^T: values ascending, eigenvector j in column j of the row-major n x n `vectors`.
struct SymmetricEigen {
  std::vector<double> values;
  std::vector<double> vectors;
  /// Eigenvector j as a vector of n entries.
  std::vector<double> vector(std::size_t j) const;
};

/// Every eigenvalue and eigenvector of the symmetric n x n `a` (LAPACK dsyevd via xt::linalg::eigh; only
/// the lower triangle is read). Throws std::invalid_argument naming `a`'s size if it is not n * n or holds
/// a non-finite entry, std::runtime_error if LAPACK does not converge.
SymmetricEigen symmetric_eigen(const std::vector<double>& a, std::size_t n);

/// The lower-triangular L with A = L L^T (xtensor-blas's lapack::potr, LAPACK dpotrf; the lower triangle of
/// `a` is read), row-major n x n with zeros above the diagonal; none if A is not positive definite or a
/// non-finite number appears. Throws std::invalid_argument if `a` is not n * n.
std::optional<std::vector<double>> cholesky(const std::vector<double>& a, std::size_t n);

/// x with L L^T x = b, L from cholesky() (xt::linalg::solve_cholesky, LAPACK dpotrs). Throws
/// std::invalid_argument if `l` is not n * n or `b` not n.
std::vector<double> cholesky_solve(const std::vector<double>& l, std::size_t n, const std::vector<double>& b);

}  // namespace analysis
