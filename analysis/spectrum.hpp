// The spectrum of a symmetric operator known through its products (a Hessian, a Gauss-Newton matrix):
// top eigenpairs, trace and spectral density, as PyHessian does (Yao et al., "PyHessian: neural networks
// through the lens of the Hessian", 2020). Every random start and probe comes from a seeded
// ag::Generator: the same seed gives the same numbers, run after run.
//
// Power iteration with deflation: eigenpair j is the dominant one of A - sum_{i<j} lambda_i u_i u_i^T
// (the iterate also kept orthogonal to u_1..u_{j-1}); it stops when ||A u - lambda u|| <= tolerance
// |lambda_1| (|lambda_1| estimates ||A||). A last Rayleigh-Ritz step on span{u_1..u_k} undoes the mixing
// that orthogonality to slightly inexact earlier vectors leaves. Then |lambda - lambda_exact| <=
// residual^2 / gap, and the vector's angle is at most residual / gap (gap: to the rest of the spectrum).
//
// Lanczos with full reorthogonalisation (Golub & Van Loan, Matrix Computations, §10.1): m steps build an
// orthonormal basis Q of the Krylov space of a random start q_1 and the tridiagonal T = Q^T A Q
// (alpha on the diagonal, beta beside it); every new vector is orthogonalised against all of Q twice, so
// no ghost copies of converged eigenvalues appear. T's eigenpairs (theta, s) give Ritz pairs (theta, Q s)
// with residual |beta_m s_m|. If the Krylov space is invariant before m steps (beta ~ 0), eigen-solving
// restarts from a fresh random vector orthogonal to Q.
//
// Hutchinson: tr A = E[z^T A z] for z with independent Rademacher (+-1) entries. With N probes the
// estimate is the sample mean and its standard error the sample standard deviation / sqrt(N).
//
// Stochastic Lanczos quadrature (Golub & Meurant; Lin, Saad & Yang, "Approximating spectral densities of
// large matrices", 2016): for a unit probe v (a Rademacher vector / sqrt(n)), m Lanczos steps from v give
// the Gauss quadrature v^T f(A) v ~ sum_j tau_j f(theta_j), nodes theta_j the Ritz values and weights
// tau_j = s_1j^2 (sum 1). It is exact for polynomials of degree up to 2m - 1: sum tau_j theta_j = v^T A v,
// so n sum tau_j theta_j is a Hutchinson sample. The density of eigenvalues, (1/n) sum_i delta(t - lambda_i),
// is estimated by averaging over probes and widening each node into a Gaussian of standard deviation sigma:
//   phi(t) = (1/P) sum_p sum_j tau_pj N(t; theta_pj, sigma^2),
// on a grid covering the nodes, then normalised to unit mass on that grid (as PyHessian).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "analysis/hessian.hpp"

namespace analysis {

/// Eigenpairs in decreasing order of |value|, each vector of unit length.
struct Eigenpairs {
  std::vector<double> values;
  std::vector<std::vector<double>> vectors;
  /// ||A u - value u|| for each pair, computed with one more product each (power iteration: after the
  /// Rayleigh-Ritz step).
  std::vector<double> residuals;
  /// Products with A that were computed.
  std::size_t products = 0;
  /// Power iteration: every pair reached the tolerance. Lanczos: always true.
  bool converged = true;
};

struct PowerOptions {
  /// Products per eigenpair at most.
  std::size_t max_iterations = 10000;
  /// Stop when ||A u - lambda u|| <= tolerance max(|lambda|, |lambda_1|).
  double tolerance = 1e-10;
  std::uint64_t seed = 0;
};

struct LanczosOptions {
  /// Lanczos steps (products with A); 0: max(2k + 20, 40). More than the dimension n: n.
  std::size_t steps = 0;
  std::uint64_t seed = 0;
};

/// The k eigenpairs of largest |value| by power iteration with deflation. Throws std::invalid_argument if
/// k is 0 or exceeds the dimension, or at once when a product with A is not finite (NaN or infinity in A).
Eigenpairs power_iteration(const LinearOperator& op, std::size_t k, const PowerOptions& options = {});

/// The k eigenpairs of largest |value| by Lanczos with full reorthogonalisation: `steps` products, then k
/// more for the residuals. Throws std::invalid_argument if k is 0 or exceeds the dimension, or steps is
/// below k, or at once when a product with A is not finite.
Eigenpairs lanczos_eigenpairs(const LinearOperator& op, std::size_t k, const LanczosOptions& options = {});

/// A Lanczos run: the tridiagonal T (alpha: m diagonal entries, beta: m - 1 beside them) and the basis Q.
struct LanczosRun {
  std::vector<double> alpha, beta;
  std::vector<std::vector<double>> basis;
  /// beta_m, the length of the next vector had the run gone on: a Ritz pair (theta, Q s) has residual
  /// ||A Q s - theta Q s|| = beta_m |s_m|.
  double next_beta = 0;
};

/// At most `steps` Lanczos steps from `start` (normalised here), with full reorthogonalisation; it stops
/// early when the Krylov space is invariant. Throws std::invalid_argument if `start` is zero or not of the
/// operator's size, or at once when a product with A is not finite.
LanczosRun lanczos(const LinearOperator& op, const std::vector<double>& start, std::size_t steps);

struct TraceEstimate {
  double estimate = 0;
  /// Sample standard deviation / sqrt(probes); 0 for one probe.
  double standard_error = 0;
  /// z^T A z of each probe.
  std::vector<double> samples;
};

/// Hutchinson's estimate of tr A from `probes` Rademacher vectors (NaN in A: a NaN estimate). Throws
/// std::invalid_argument if probes is 0.
TraceEstimate hutchinson_trace(const LinearOperator& op, std::size_t probes, std::uint64_t seed = 0);

struct DensityOptions {
  std::size_t probes = 1;
  /// Lanczos steps per probe. More than the dimension n: n.
  std::size_t steps = 80;
  /// Points of the grid.
  std::size_t grid_points = 1000;
  /// Standard deviation of the Gaussians; 0: PyHessian's, sqrt(1e-5 max(1, max node - min node)).
  double sigma = 0;
  std::uint64_t seed = 0;
};

struct SpectralDensity {
  /// Nodes theta and weights tau of each probe's quadrature (weights sum to 1 per probe).
  std::vector<std::vector<double>> nodes, weights;
  /// Evenly spaced, from min node - 5 sigma - 0.01 to max node + 5 sigma + 0.01.
  std::vector<double> grid;
  /// phi on the grid, normalised: its Riemann sum times the grid spacing is 1.
  std::vector<double> density;
  /// The Riemann mass of phi on the grid before normalisation (1 up to discretisation and tails).
  double mass = 0;
  double sigma = 0;
  /// n, the operator's size.
  std::size_t dimension = 0;
  /// n sum_j tau_pj theta_pj averaged over probes: the trace estimate carried by the quadrature.
  double trace_estimate() const;
};

/// Stochastic Lanczos quadrature. Throws std::invalid_argument if probes, steps or grid_points is 0 (grid
/// points: fewer than 2), or sigma is negative, or at once when a product with A is not finite.
SpectralDensity spectral_density(const LinearOperator& op, const DensityOptions& options = {});

}  // namespace analysis
