#include "analysis/landscape.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "analysis/dense.hpp"
#include "analysis/detail/vector.hpp"
#include "autograd/tape.hpp"

namespace analysis {

namespace {

using detail::dot;
using detail::Vector;

/// Copies the parameters' elements back when it goes out of scope, bit for bit.
class RestoreParams {
 public:
  explicit RestoreParams(const std::vector<ag::Tensor>& params) : params_(params) {
    for (const ag::Tensor& p : params_) saved_.push_back(p.clone());
  }
  ~RestoreParams() {
    for (std::size_t k = 0; k < params_.size(); ++k) params_[k].copy_(saved_[k]);
  }
  RestoreParams(const RestoreParams&) = delete;
  RestoreParams& operator=(const RestoreParams&) = delete;

 private:
  std::vector<ag::Tensor> params_, saved_;
};

/// Writes the flat point into the parameters, then evaluates the loss without recording.
double loss_at(const LossFn& loss_fn, const ParamLayout& layout, const Vector& point, const char* op) {
  std::vector<ag::Tensor> values = layout.unflatten(point);
  for (std::size_t k = 0; k < values.size(); ++k) {
    ag::Tensor param = layout.params()[k];  // a handle to the same storage
    param.copy_(values[k]);
  }
  ag::NoGradGuard no_grad;
  ag::Tensor loss = loss_fn();
  if (!loss.defined() || loss.numel() != 1) {
    throw std::invalid_argument(fmt::format("{}: the loss function must return a one-element tensor, not {}", op,
                                            loss.defined() ? loss.describe() : "an undefined one"));
  }
  return loss.item();
}

/// The tensors' elements, flat, after checking that `name`[k] has parameter k's shape.
Vector flat_set(const ParamLayout& layout, const std::vector<ag::Tensor>& tensors, const char* op, const char* name) {
  const auto& params = layout.params();
  if (tensors.size() != params.size()) {
    throw std::invalid_argument(
        fmt::format("{}: {} has {} tensors for {} parameters", op, name, tensors.size(), params.size()));
  }
  Vector flat;
  flat.reserve(layout.size());
  for (std::size_t k = 0; k < params.size(); ++k) {
    if (!tensors[k].defined() || !(tensors[k].shape() == params[k].shape())) {
      throw std::invalid_argument(fmt::format("{}: {}[{}] is {} but parameter {} is {}", op, name, k,
                                              tensors[k].defined() ? tensors[k].describe() : "undefined", k,
                                              params[k].describe()));
    }
    Vector values = tensors[k].to_vector();
    flat.insert(flat.end(), values.begin(), values.end());
  }
  return flat;
}

void check_direction(const Vector& d, const ParamLayout& layout, const char* op, const char* name) {
  if (d.size() != layout.size()) {
    throw std::invalid_argument(fmt::format("{}: {} has {} entries, the parameters {}", op, name, d.size(), layout.size()));
  }
}

/// The filter rule of parameter k (see the top of landscape.hpp).
Filters resolve(Filters f, const ag::Tensor& p, BiasMode bias) {
  if (f != Filters::by_rank) return f;
  switch (p.rank()) {
    case 0:
    case 1: return bias == BiasMode::zero ? Filters::zero : Filters::whole;
    case 2: return Filters::columns;
    default: return Filters::first_axis;
  }
}

/// Rescales the elements d[base + i * stride] (i < count) to the norm of the same elements of theta.
void rescale(double* d, const double* theta, std::size_t count, std::size_t stride) {
  double dn = 0, tn = 0;
  for (std::size_t i = 0; i < count; ++i) {
    dn += d[i * stride] * d[i * stride];
    tn += theta[i * stride] * theta[i * stride];
  }
  const double scale = dn > 0 ? std::sqrt(tn) / std::sqrt(dn) : 0.0;
  for (std::size_t i = 0; i < count; ++i) d[i * stride] *= scale;
}

}  // namespace

std::vector<double> linspace(double low, double high, std::size_t n) {
  if (n == 0) throw std::invalid_argument("linspace: 0 points");
  Vector out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = n == 1 ? low : (i + 1 == n ? high : low + (high - low) * static_cast<double>(i) / static_cast<double>(n - 1));
  }
  return out;
}

// ---------------------------------------------------------------- 1-D

std::vector<double> interpolate_loss(const LossFn& loss_fn, const std::vector<ag::Tensor>& params,
                                     const std::vector<ag::Tensor>& from, const std::vector<ag::Tensor>& to,
                                     const std::vector<double>& alphas) {
  const char* op = "interpolate_loss";
  ParamLayout layout(params, op);
  const Vector a = flat_set(layout, from, op, "from"), b = flat_set(layout, to, op, "to");
  RestoreParams restore(params);
  Vector losses, point(layout.size());
  for (double alpha : alphas) {
    for (std::size_t i = 0; i < point.size(); ++i) point[i] = (1 - alpha) * a[i] + alpha * b[i];
    losses.push_back(loss_at(loss_fn, layout, point, op));
  }
  return losses;
}

// ---------------------------------------------------------------- directions

std::vector<double> normalize_filters(std::vector<double> direction, const ParamLayout& layout,
                                      const DirectionOptions& options) {
  const char* op = "normalize_filters";
  check_direction(direction, layout, op, "the direction");
  const auto& params = layout.params();
  if (!options.filters.empty() && options.filters.size() != params.size()) {
    throw std::invalid_argument(fmt::format("{}: {} filter rules for {} parameters", op, options.filters.size(),
                                            params.size()));
  }
  for (std::size_t k = 0; k < params.size(); ++k) {
    const ag::Tensor& p = params[k];
    const Filters rule = resolve(options.filters.empty() ? Filters::by_rank : options.filters[k], p, options.bias);
    const Vector theta = p.to_vector();
    double* d = direction.data() + layout.offset(k);
    const std::size_t n = p.numel();
    if (n == 0) continue;
    switch (rule) {
      case Filters::zero:
        for (std::size_t i = 0; i < n; ++i) d[i] = 0;
        break;
      case Filters::whole: rescale(d, theta.data(), n, 1); break;
      case Filters::columns: {
        if (p.rank() != 2) {
          throw std::invalid_argument(fmt::format("{}: parameter {} is {}; columns are filters of rank-2 parameters only",
                                                  op, k, p.describe()));
        }
        const std::size_t rows = p.dim(0), cols = p.dim(1);
        for (std::size_t j = 0; j < cols; ++j) rescale(d + j, theta.data() + j, rows, cols);
        break;
      }
      case Filters::first_axis: {
        const std::size_t filters = p.rank() == 0 ? 1 : p.dim(0), size = n / filters;
        for (std::size_t f = 0; f < filters; ++f) rescale(d + f * size, theta.data() + f * size, size, 1);
        break;
      }
      case Filters::by_rank: break;  // resolved above
    }
  }
  return direction;
}

std::vector<double> random_direction(const ParamLayout& layout, ag::Generator& gen, const DirectionOptions& options) {
  Vector d(layout.size());
  for (double& x : d) x = gen.normal();
  return normalize_filters(std::move(d), layout, options);
}

// ---------------------------------------------------------------- 2-D

Surface loss_surface(const LossFn& loss_fn, const std::vector<ag::Tensor>& params, const std::vector<double>& xs,
                     const std::vector<double>& ys, std::vector<double> delta, std::vector<double> eta) {
  const char* op = "loss_surface";
  ParamLayout layout(params, op);
  check_direction(delta, layout, op, "delta");
  check_direction(eta, layout, op, "eta");
  const Vector centre = layout.flatten(params, op);
  RestoreParams restore(params);
  Surface s{xs, ys, {}, std::move(delta), std::move(eta)};
  Vector point(layout.size());
  for (double b : ys) {
    for (double a : xs) {
      for (std::size_t i = 0; i < point.size(); ++i) point[i] = centre[i] + a * s.delta[i] + b * s.eta[i];
      s.losses.push_back(loss_at(loss_fn, layout, point, op));
    }
  }
  return s;
}

Surface random_loss_surface(const LossFn& loss_fn, const std::vector<ag::Tensor>& params, const std::vector<double>& xs,
                            const std::vector<double>& ys, const DirectionOptions& options) {
  ParamLayout layout(params, "random_loss_surface");
  ag::Generator gen(options.seed);
  Vector delta = random_direction(layout, gen, options);
  Vector eta = random_direction(layout, gen, options);
  return loss_surface(loss_fn, params, xs, ys, std::move(delta), std::move(eta));
}

// ---------------------------------------------------------------- trajectory PCA

TrajectoryPca trajectory_pca(const std::vector<std::vector<double>>& points) {
  const char* op = "trajectory_pca";
  if (points.size() < 2) throw std::invalid_argument(fmt::format("{}: {} points; at least 2", op, points.size()));
  const std::size_t n = points[0].size(), m = points.size() - 1;
  for (std::size_t i = 1; i < points.size(); ++i) {
    if (points[i].size() != n) {
      throw std::invalid_argument(fmt::format("{}: point {} has {} entries, point 0 has {}", op, i, points[i].size(), n));
    }
  }
  const Vector& last = points.back();
  // The rows d_i = theta_i - theta_final, i < m, centred.
  Vector mean(n, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t c = 0; c < n; ++c) mean[c] += (points[i][c] - last[c]) / static_cast<double>(m);
  }
  std::vector<Vector> rows(m, Vector(n));
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t c = 0; c < n; ++c) rows[i][c] = points[i][c] - last[c] - mean[c];
  }
  Vector gram(m * m);
  double trace = 0;
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j <= i; ++j) gram[i * m + j] = gram[j * m + i] = dot(rows[i], rows[j]);
    trace += gram[i * m + i];
  }
  const SymmetricEigen eigen = symmetric_eigen(gram, m);
  TrajectoryPca out;
  Vector* directions[2] = {&out.direction_x, &out.direction_y};
  for (std::size_t j = 0; j < 2; ++j) {
    Vector& v = *directions[j];
    v.assign(n, 0.0);
    if (j >= m) continue;
    const double lambda = eigen.values[m - 1 - j];
    // Eigenvalues at rounding level of tr G: the trajectory does not span this direction.
    if (!(lambda > 1e-12 * trace)) continue;
    const Vector u = eigen.vector(m - 1 - j);
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t c = 0; c < n; ++c) v[c] += u[i] * rows[i][c];
    }
    const double norm = std::sqrt(dot(v, v));
    for (double& x : v) x /= norm;
    out.explained_variance_ratio[j] = lambda / trace;
  }
  Vector diff(n);
  for (const Vector& p : points) {
    for (std::size_t c = 0; c < n; ++c) diff[c] = p[c] - last[c];
    out.x.push_back(dot(diff, out.direction_x));
    out.y.push_back(dot(diff, out.direction_y));
  }
  return out;
}

TrajectoriesPca trajectories_pca(const std::vector<std::vector<Vector>>& trajectories, const Vector& origin) {
  std::vector<Vector> points;
  for (std::size_t k = 0; k < trajectories.size(); ++k) {
    for (std::size_t i = 0; i < trajectories[k].size(); ++i) {
      if (trajectories[k][i].size() != origin.size()) {
        throw std::invalid_argument(fmt::format("trajectories_pca: point {} of trajectory {} has {} entries, the origin {}",
                                                i, k, trajectories[k][i].size(), origin.size()));
      }
      points.push_back(trajectories[k][i]);
    }
  }
  if (points.empty()) throw std::invalid_argument("trajectories_pca: no trajectory has a point");
  points.push_back(origin);
  const TrajectoryPca pca = trajectory_pca(points);
  TrajectoriesPca out{{}, {}, pca.direction_x, pca.direction_y, pca.explained_variance_ratio};
  std::size_t at = 0;
  for (const std::vector<Vector>& path : trajectories) {
    out.x.emplace_back(pca.x.begin() + static_cast<std::ptrdiff_t>(at), pca.x.begin() + static_cast<std::ptrdiff_t>(at + path.size()));
    out.y.emplace_back(pca.y.begin() + static_cast<std::ptrdiff_t>(at), pca.y.begin() + static_cast<std::ptrdiff_t>(at + path.size()));
    at += path.size();
  }
  return out;
}

}  // namespace analysis
