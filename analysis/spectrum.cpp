#include "analysis/spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "analysis/dense.hpp"
#include "analysis/detail/vector.hpp"

namespace analysis {

namespace {

using detail::axpy;
using detail::dot;
using detail::norm;
using detail::scale;
using detail::Vector;

/// A's product with v, refused when not finite (a NaN or an infinity in the operator: in a model's weights or
/// loss), at once: every further product would be as useless, and the eigensolver's error would not say why.
Vector finite_product(const char* op, const LinearOperator& a, const Vector& v, std::size_t product) {
  Vector w = a.apply(v);
  if (!std::isfinite(norm(w))) {
    throw std::invalid_argument(fmt::format(
        "{}: the operator's product {} is not finite (its norm is {}): a NaN or an infinity in the operator", op,
        product, norm(w)));
  }
  return w;
}

/// Removes the components along the orthonormal `basis`, twice ("twice is enough": Parlett).
void orthogonalise(Vector& w, const std::vector<Vector>& basis) {
  for (int pass = 0; pass < 2; ++pass) {
    for (const Vector& q : basis) axpy(w, -dot(q, w), q);
  }
}

Vector random_normal(std::size_t n, ag::Generator& gen) {
  Vector v(n);
  for (double& x : v) x = gen.normal();
  return v;
}

Vector rademacher(std::size_t n, ag::Generator& gen) {
  Vector z(n);
  for (double& x : z) x = gen.below(2) == 0 ? -1.0 : 1.0;
  return z;
}

void check_count(const char* op, const LinearOperator& a, std::size_t k) {
  if (k == 0 || k > a.size()) {
    throw std::invalid_argument(
        fmt::format("{}: k = {} eigenpairs asked of a {} x {} operator (1 <= k <= {})", op, k, a.size(), a.size(), a.size()));
  }
}

/// Indices of `values` in decreasing order of magnitude.
std::vector<std::size_t> by_magnitude(const Vector& values) {
  std::vector<std::size_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return std::abs(values[a]) > std::abs(values[b]); });
  return order;
}

/// Lanczos steps into `run` (which may hold earlier blocks) until it has `steps` vectors. On an invariant
/// Krylov space it stops, or with `restart` goes on from a random vector orthogonal to the basis (beta 0).
void extend(const LinearOperator& op, LanczosRun& run, std::size_t steps, ag::Generator* restart) {
  double scale_estimate = 0;  // largest ||A q|| seen: what "beta ~ 0" is relative to
  while (true) {
    const std::size_t j = run.basis.size() - 1;
    Vector w = finite_product("lanczos", op, run.basis[j], j + 1);
    scale_estimate = std::max(scale_estimate, norm(w));
    run.alpha.push_back(dot(run.basis[j], w));
    axpy(w, -run.alpha[j], run.basis[j]);
    if (j > 0) axpy(w, -run.beta[j - 1], run.basis[j - 1]);
    orthogonalise(w, run.basis);
    double b = norm(w);
    const bool invariant = b <= 1e-12 * std::max(scale_estimate, 1e-300);
    if (invariant) b = 0.0;
    run.next_beta = b;
    if (run.basis.size() >= steps || run.basis.size() >= op.size()) return;
    if (invariant) {
      if (restart == nullptr) return;
      w = random_normal(op.size(), *restart);
      orthogonalise(w, run.basis);
      scale(w, 1.0 / norm(w));
    } else {
      scale(w, 1.0 / b);
    }
    run.beta.push_back(b);
    run.basis.push_back(std::move(w));
  }
}

/// T's eigenpairs, T the tridiagonal of the run.
SymmetricEigen tridiagonal_eigen(const LanczosRun& run) {
  const std::size_t m = run.alpha.size();
  Vector t(m * m, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    t[i * m + i] = run.alpha[i];
    if (i + 1 < m) t[i * m + i + 1] = t[(i + 1) * m + i] = run.beta[i];
  }
  return symmetric_eigen(t, m);
}

}  // namespace

// ---------------------------------------------------------------- power iteration

namespace {

struct PowerResult {
  double value = 0, residual = 0;
  Vector vector;
  bool converged = false;
};

/// The dominant eigenpair of A restricted to the complement of the pairs already found (deflated).
PowerResult dominant_pair(const LinearOperator& op, const Eigenpairs& found, const PowerOptions& options,
                          double scale_estimate, ag::Generator& gen, std::size_t& products) {
  PowerResult r;
  r.vector = random_normal(op.size(), gen);
  orthogonalise(r.vector, found.vectors);
  scale(r.vector, 1.0 / norm(r.vector));
  for (std::size_t it = 0; it < options.max_iterations; ++it) {
    Vector w = finite_product("power_iteration", op, r.vector, ++products);
    for (std::size_t i = 0; i < found.values.size(); ++i) {
      axpy(w, -found.values[i] * dot(found.vectors[i], r.vector), found.vectors[i]);
    }
    r.value = dot(r.vector, w);
    Vector residual = w;
    axpy(residual, -r.value, r.vector);
    r.residual = norm(residual);
    r.converged = r.residual <= options.tolerance * std::max(scale_estimate, std::abs(r.value));
    const double length = norm(w);
    if (r.converged || length == 0.0) break;  // length 0: the rest of the spectrum is 0
    orthogonalise(w, found.vectors);
    scale(w, 1.0 / norm(w));
    r.vector = std::move(w);
  }
  return r;
}

/// Rayleigh-Ritz on the span of the pairs found: the eigenpairs of U^T A U (k x k) rotate U. Each vector
/// was kept orthogonal to slightly inexact earlier ones; this undoes that mixing. k more products.
Eigenpairs rayleigh_ritz(const LinearOperator& op, const Eigenpairs& found) {
  const std::size_t k = found.vectors.size(), n = op.size();
  std::vector<Vector> images;
  for (const Vector& u : found.vectors) images.push_back(op.apply(u));
  Vector projected(k * k);
  for (std::size_t i = 0; i < k; ++i) {
    for (std::size_t j = 0; j < k; ++j) projected[i * k + j] = 0.5 * (dot(found.vectors[i], images[j]) + dot(found.vectors[j], images[i]));
  }
  const SymmetricEigen small = symmetric_eigen(projected, k);
  Eigenpairs out;
  out.products = found.products + k;
  out.converged = found.converged;
  for (std::size_t r : by_magnitude(small.values)) {
    const Vector s = small.vector(r);
    Vector u(n, 0.0), image(n, 0.0);
    for (std::size_t j = 0; j < k; ++j) {
      axpy(u, s[j], found.vectors[j]);
      axpy(image, s[j], images[j]);
    }
    axpy(image, -small.values[r], u);
    out.values.push_back(small.values[r]);
    out.vectors.push_back(std::move(u));
    out.residuals.push_back(norm(image));
  }
  return out;
}

}  // namespace

Eigenpairs power_iteration(const LinearOperator& op, std::size_t k, const PowerOptions& options) {
  check_count("power_iteration", op, k);
  ag::Generator gen(options.seed);
  Eigenpairs found;
  double scale_estimate = 0;  // |lambda_1|, the operator's norm
  for (std::size_t j = 0; j < k; ++j) {
    PowerResult r = dominant_pair(op, found, options, scale_estimate, gen, found.products);
    scale_estimate = std::max(scale_estimate, std::abs(r.value));
    found.values.push_back(r.value);
    found.vectors.push_back(std::move(r.vector));
    found.residuals.push_back(r.residual);
    found.converged = found.converged && r.converged;
  }
  return rayleigh_ritz(op, found);
}

// ---------------------------------------------------------------- Lanczos

LanczosRun lanczos(const LinearOperator& op, const Vector& start, std::size_t steps) {
  if (start.size() != op.size()) {
    throw std::invalid_argument(
        fmt::format("lanczos: the start vector has {} entries, the operator is {} x {}", start.size(), op.size(), op.size()));
  }
  const double length = norm(start);
  if (!(length > 0.0) || !std::isfinite(length)) {
    throw std::invalid_argument(fmt::format("lanczos: the start vector has length {}", length));
  }
  if (steps == 0) throw std::invalid_argument("lanczos: 0 steps");
  LanczosRun run;
  run.basis.push_back(start);
  scale(run.basis[0], 1.0 / length);
  extend(op, run, steps, nullptr);
  return run;
}

Eigenpairs lanczos_eigenpairs(const LinearOperator& op, std::size_t k, const LanczosOptions& options) {
  check_count("lanczos_eigenpairs", op, k);
  const std::size_t n = op.size();
  const std::size_t steps = std::min(n, options.steps == 0 ? std::max<std::size_t>(2 * k + 20, 40) : options.steps);
  if (steps < k) {
    throw std::invalid_argument(
        fmt::format("lanczos_eigenpairs: {} steps for k = {} eigenpairs (steps >= k)", steps, k));
  }
  ag::Generator gen(options.seed);
  LanczosRun run;
  run.basis.push_back(random_normal(n, gen));
  scale(run.basis[0], 1.0 / norm(run.basis[0]));
  extend(op, run, steps, &gen);
  const SymmetricEigen ritz = tridiagonal_eigen(run);
  const std::size_t m = ritz.values.size();
  Eigenpairs out;
  out.products = m + k;
  std::vector<std::size_t> order = by_magnitude(ritz.values);
  for (std::size_t r = 0; r < k; ++r) {
    const Vector s = ritz.vector(order[r]);
    Vector y(n, 0.0);
    for (std::size_t j = 0; j < m; ++j) axpy(y, s[j], run.basis[j]);
    // The true residual: beta_m |s_m| is exact only in exact arithmetic, and LAPACK may round a tiny s_m to 0.
    Vector residual = op.apply(y);
    axpy(residual, -ritz.values[order[r]], y);
    out.values.push_back(ritz.values[order[r]]);
    out.vectors.push_back(std::move(y));
    out.residuals.push_back(norm(residual));
  }
  return out;
}

// ---------------------------------------------------------------- trace and density

TraceEstimate hutchinson_trace(const LinearOperator& op, std::size_t probes, std::uint64_t seed) {
  if (probes == 0) throw std::invalid_argument("hutchinson_trace: 0 probes");
  ag::Generator gen(seed);
  TraceEstimate t;
  for (std::size_t p = 0; p < probes; ++p) {
    const Vector z = rademacher(op.size(), gen);
    t.samples.push_back(dot(z, op.apply(z)));
  }
  const double count = static_cast<double>(probes);
  t.estimate = std::accumulate(t.samples.begin(), t.samples.end(), 0.0) / count;
  if (probes > 1) {
    double squares = 0;
    for (double s : t.samples) squares += (s - t.estimate) * (s - t.estimate);
    t.standard_error = std::sqrt(squares / (count - 1.0) / count);
  }
  return t;
}

double SpectralDensity::trace_estimate() const {
  double sum = 0;
  for (std::size_t p = 0; p < nodes.size(); ++p) sum += dot(nodes[p], weights[p]);
  return static_cast<double>(dimension) * sum / static_cast<double>(nodes.size());
}

namespace {

/// The grid, the broadened density on it and its mass, from the probes' nodes and weights.
void broaden(SpectralDensity& d, std::size_t points) {
  double lo = d.nodes[0][0], hi = lo;
  for (const Vector& probe : d.nodes) {
    for (double theta : probe) {
      lo = std::min(lo, theta);
      hi = std::max(hi, theta);
    }
  }
  if (d.sigma == 0.0) d.sigma = std::sqrt(1e-5 * std::max(1.0, hi - lo));
  lo -= 5.0 * d.sigma + 0.01;
  hi += 5.0 * d.sigma + 0.01;
  const double step = (hi - lo) / static_cast<double>(points - 1);
  const double norm_factor = 1.0 / (d.sigma * std::sqrt(2.0 * std::numbers::pi) * static_cast<double>(d.nodes.size()));
  d.grid.resize(points);
  d.density.assign(points, 0.0);
  for (std::size_t g = 0; g < points; ++g) {
    const double t = lo + step * static_cast<double>(g);
    d.grid[g] = t;
    for (std::size_t p = 0; p < d.nodes.size(); ++p) {
      for (std::size_t j = 0; j < d.nodes[p].size(); ++j) {
        const double u = (t - d.nodes[p][j]) / d.sigma;
        d.density[g] += d.weights[p][j] * std::exp(-0.5 * u * u) * norm_factor;
      }
    }
  }
  d.mass = std::accumulate(d.density.begin(), d.density.end(), 0.0) * step;
  for (double& phi : d.density) phi /= d.mass;
}

}  // namespace

SpectralDensity spectral_density(const LinearOperator& op, const DensityOptions& options) {
  if (options.probes == 0 || options.steps == 0 || options.grid_points < 2 || !(options.sigma >= 0.0)) {
    throw std::invalid_argument(fmt::format(
        "spectral_density: probes {}, steps {}, grid_points {}, sigma {} (need >= 1, >= 1, >= 2, >= 0)",
        options.probes, options.steps, options.grid_points, options.sigma));
  }
  const std::size_t n = op.size();
  ag::Generator gen(options.seed);
  SpectralDensity d;
  d.dimension = n;
  d.sigma = options.sigma;
  for (std::size_t p = 0; p < options.probes; ++p) {
    const LanczosRun run = lanczos(op, rademacher(n, gen), std::min(options.steps, n));
    const SymmetricEigen ritz = tridiagonal_eigen(run);
    Vector tau(ritz.values.size());
    for (std::size_t j = 0; j < tau.size(); ++j) tau[j] = ritz.vectors[j] * ritz.vectors[j];  // row 0: s_1j
    d.nodes.push_back(ritz.values);
    d.weights.push_back(std::move(tau));
  }
  broaden(d, options.grid_points);
  return d;
}

}  // namespace analysis
