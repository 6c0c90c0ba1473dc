// Normalisation: batch_norm and layer_norm.
//
// Both normalise groups of elements by the group's mean and biased variance, x̂ = (x - μ) σ⁻¹ with
// σ⁻¹ = 1 / sqrt(var + eps), then scale and shift: y = x̂ γ + β. With ĝ = g γ and M elements per group,
//   dx = σ⁻¹/M (M ĝ - Σĝ - x̂ Σ ĝx̂),   dγ = Σ g x̂,   dβ = Σ g
// (batch norm in eval mode normalises by fixed statistics: dx = ĝ σ⁻¹).
//   batch_norm  x (N, C, *): a group is a channel, N runs of S = H W contiguous elements; γ, β per channel
//   layer_norm  x (..., D...): a group is a row of the D trailing elements; γ, β per element of the row
// The forward and the first-order backward are fused loops over the contiguous data, two passes each: the
// group sums (batch norm's for every channel at once, in memory order), then the output. The backward's own
// derivative (create_graph) comes from the same formula written with the differentiable ops, from x itself
// (composed_*), so that derivatives of every order are exact.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

namespace {

/// Where a group's M = runs * length elements lie: run r of group k starts at k * group_stride + r * run_stride.
struct Groups {
  std::size_t count = 0, runs = 1, length = 0, group_stride = 0, run_stride = 0;
  std::size_t size() const { return runs * length; }
  std::size_t start(std::size_t group, std::size_t run) const { return group * group_stride + run * run_stride; }
};

/// Σ term(i) for i < n, in one vector register's worth of interleaved lanes of T (so that the loop vectorises
/// without reordering one sum), then in double.
template <class T, class Term>
double lane_sum(std::size_t n, Term term) {
  constexpr std::size_t kLanes = 64 / sizeof(T);
  T lanes[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::size_t k = 0; k < kLanes; ++k) lanes[k] += term(i + k);
  }
  double total = 0;
  for (; i < n; ++i) total += term(i);
  for (T lane : lanes) total += lane;
  return total;
}

/// For every group k and each j < K, Σ terms(k, offset)[j] over the group's elements (`terms` returns
/// std::array<T, K>), in one pass over the data in memory order: run by run, group by group, each run added
/// position by position into its group's rows (plain vector adds, no reduction in the loop: they vectorise
/// and the hardware sees one stream), the rows summed at the end. For batch norm's channels.
template <class T, std::size_t K, class Terms>
std::vector<std::array<double, K>> group_sums(const Groups& g, Terms terms) {
  const std::size_t row = g.length, rows_per_group = K * row;
  thread_local std::vector<T> rows;
  rows.assign(g.count * rows_per_group, T(0));
  for (std::size_t r = 0; r < g.runs; ++r) {
    for (std::size_t k = 0; k < g.count; ++k) {
      T* __restrict acc = rows.data() + k * rows_per_group;
      const std::size_t s = g.start(k, r);
      for (std::size_t i = 0; i < row; ++i) {
        const std::array<T, K> t = terms(k, s + i);
        for (std::size_t j = 0; j < K; ++j) acc[j * row + i] += t[j];
      }
    }
  }
  std::vector<std::array<double, K>> totals(g.count);
  for (std::size_t k = 0; k < g.count; ++k) {
    for (std::size_t j = 0; j < K; ++j) {
      const T* acc = rows.data() + k * rows_per_group + j * row;
      totals[k][j] = lane_sum<T>(row, [&](std::size_t i) { return acc[i]; });
    }
  }
  return totals;
}

/// A group's mean, σ⁻¹ and biased variance from the sums of d = x - shift and d² over its m elements
/// (var = E[d²] - E[d]²; shifted by one of the group's elements, so that the two do not cancel). A NaN makes all
/// three NaN.
template <class T>
struct Moments {
  T mean, invstd;
  double var;
};

template <class T>
Moments<T> moments(T shift, double sum, double squares, double m, double eps) {
  const double mean = sum / m, var = std::max(squares / m - mean * mean, 0.0);
  return {static_cast<T>(shift + mean), static_cast<T>(1.0 / std::sqrt(var + eps)), var};
}

/// Differentiable statistics, for the backward's backward: x̂ and σ⁻¹ of x, where `reduce` sums to the
/// statistics' shape (kept for broadcasting) over M elements per group.
struct Normalised {
  Tensor xhat, invstd;
};

template <class Reduce>
Normalised composed_normalise(const Tensor& x, double m, double eps, Reduce reduce) {
  Tensor centred = sub(x, div(reduce(x), m));
  Tensor invstd = pow(add(div(reduce(mul(centred, centred)), m), eps), -0.5);
  return {mul(centred, invstd), invstd};
}

/// dx = σ⁻¹/M (M ĝ - Σĝ - x̂ Σ ĝx̂), written with ops.
template <class Reduce>
Tensor composed_input_grad(const Tensor& ghat, const Normalised& n, double m, Reduce reduce) {
  Tensor inner = sub(sub(mul(ghat, m), reduce(ghat)), mul(n.xhat, reduce(mul(ghat, n.xhat))));
  return mul(inner, div(n.invstd, m));
}

/// An optional affine tensor (weight or bias) must be undefined or of `shape` and x's dtype.
void check_affine(const char* op, const char* what, const Tensor& t, const Tensor& x, const Shape& shape) {
  if (!t.defined()) return;
  if (!(t.shape() == shape) || t.dtype() != x.dtype()) {
    fail(op, "{} {} for input {} (expected {}{})", what, t.describe(), x.describe(), dtype_name(x.dtype()), shape.str());
  }
}

// ---------------------------------------------------------------- batch_norm

/// What batch_norm's backward needs: the layout and the statistics the forward normalised by.
struct BatchNormSaved {
  Groups groups;
  Shape view;   // (N, C, S)
  Tensor mean, invstd;  // (C), x's dtype
  bool training;
  double eps;
};

Groups channel_groups(const Shape& x) {
  std::size_t s = 1;
  for (std::size_t d = 2; d < x.rank(); ++d) s *= x[d];
  return {.count = x[1], .runs = x[0], .length = s, .group_stride = s, .run_stride = x[1] * s};
}

void check_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                      const Tensor& bias, bool training, double momentum, double eps) {
  detail::check_defined("batch_norm", x);
  if (x.rank() < 2) fail("batch_norm", "input must be (N, C), (N, C, L) or (N, C, H, W), got {}", x.describe());
  const Shape channels{x.dim(1)};
  check_affine("batch_norm", "weight", weight, x, channels);
  check_affine("batch_norm", "bias", bias, x, channels);
  check_affine("batch_norm", "running_mean", running_mean, x, channels);
  check_affine("batch_norm", "running_var", running_var, x, channels);
  if (running_mean.defined() != running_var.defined()) {
    fail("batch_norm", "running_mean {} and running_var {}: give both or neither", running_mean.describe(),
         running_var.describe());
  }
  if (!training && !running_mean.defined()) {
    fail("batch_norm", "of {} in eval mode needs the running statistics", x.describe());
  }
  if (training && channel_groups(x.shape()).size() < 2) {
    fail("batch_norm", "of {} in training mode: expected more than 1 value per channel", x.describe());
  }
  if (!(momentum >= 0.0 && momentum <= 1.0)) fail("batch_norm", "momentum {} is outside [0, 1]", momentum);
  if (!(eps >= 0.0 && std::isfinite(eps))) fail("batch_norm", "eps {} must be finite and non-negative", eps);
}

/// r <- (1 - momentum) r + momentum s, with s the batch mean and the unbiased batch variance.
template <class T>
void update_running(Tensor& running_mean, Tensor& running_var, const T* mean, const std::vector<double>& var,
                    double m, double momentum) {
  T* rm = running_mean.data<T>();
  T* rv = running_var.data<T>();
  for (std::size_t c = 0; c < var.size(); ++c) {
    rm[c] = static_cast<T>((1.0 - momentum) * rm[c] + momentum * mean[c]);
    rv[c] = static_cast<T>((1.0 - momentum) * rv[c] + momentum * var[c] * m / (m - 1.0));
  }
}

/// Calls f(k, run) for every run of every group, in memory order.
template <class F>
void for_each_run(const Groups& g, F f) {
  for (std::size_t r = 0; r < g.runs; ++r) {
    for (std::size_t k = 0; k < g.count; ++k) f(k, g.start(k, r));
  }
}

/// The statistics (the batch's in one pass, or the running ones), then y = x a + b per channel with a = σ⁻¹ γ,
/// b = β - μ a, in a second pass. Returns the batch variances (training).
template <class T>
std::vector<double> batch_norm_forward_kernel(const T* x, const Tensor& running_mean, const Tensor& running_var,
                                              const T* gamma, const T* beta, BatchNormSaved& s, T* y) {
  const Groups& g = s.groups;
  T* mean = s.mean.data<T>();
  T* invstd = s.invstd.data<T>();
  std::vector<double> var(s.training ? g.count : 0);
  if (s.training) {
    std::vector<T> shift(g.count);
    for (std::size_t k = 0; k < g.count; ++k) shift[k] = x[g.start(k, 0)];
    const auto sums = group_sums<T, 2>(g, [&](std::size_t k, std::size_t o) {
      const T d = x[o] - shift[k];
      return std::array<T, 2>{d, d * d};
    });
    for (std::size_t k = 0; k < g.count; ++k) {
      const Moments<T> batch = moments(shift[k], sums[k][0], sums[k][1], static_cast<double>(g.size()), s.eps);
      mean[k] = batch.mean, invstd[k] = batch.invstd, var[k] = batch.var;
    }
  } else {
    for (std::size_t k = 0; k < g.count; ++k) {
      mean[k] = running_mean.data<T>()[k];
      invstd[k] = static_cast<T>(1.0 / std::sqrt(double(running_var.data<T>()[k]) + s.eps));
    }
  }
  std::vector<T> a(g.count), b(g.count);
  for (std::size_t k = 0; k < g.count; ++k) {
    a[k] = invstd[k] * (gamma ? gamma[k] : T(1));
    b[k] = (beta ? beta[k] : T(0)) - mean[k] * a[k];
  }
  for_each_run(g, [&](std::size_t k, std::size_t at) {
    const T* __restrict in = x + at;
    T* __restrict out = y + at;
    for (std::size_t i = 0; i < g.length; ++i) out[i] = in[i] * a[k] + b[k];
  });
  return var;
}

/// The fused first-order backward: per channel Σg and Σg(x - μ) in one pass, then in a second dx = k1 g +
/// k2 (x - μ) + k3 (training; the expansion of σ⁻¹/M (M ĝ - Σĝ - x̂ Σĝx̂)) or dx = γ σ⁻¹ g (eval).
template <class T>
void batch_norm_backward_kernel(const T* g, const T* x, const BatchNormSaved& s, const T* gamma, T* dx, T* dgamma,
                                T* dbeta) {
  const Groups& G = s.groups;
  const T* mean = s.mean.data<T>();
  const T* invstd = s.invstd.data<T>();
  const double m = static_cast<double>(G.size());
  const auto sums = group_sums<T, 2>(G, [&](std::size_t c, std::size_t o) {
    return std::array<T, 2>{g[o], g[o] * (x[o] - mean[c])};
  });
  std::vector<T> k1(G.count), k2(G.count), k3(G.count);
  for (std::size_t c = 0; c < G.count; ++c) {
    const auto [sg, sgx] = sums[c];
    dgamma[c] = static_cast<T>(sgx * invstd[c]);
    dbeta[c] = static_cast<T>(sg);
    const double k = double(invstd[c]) * (gamma ? double(gamma[c]) : 1.0);
    k1[c] = static_cast<T>(k);
    k2[c] = static_cast<T>(-k * double(invstd[c]) * double(invstd[c]) * sgx / m);
    k3[c] = static_cast<T>(-k * sg / m);
  }
  for_each_run(G, [&](std::size_t c, std::size_t at) {
    const T* __restrict pg = g + at;
    const T* __restrict px = x + at;
    T* __restrict out = dx + at;
    if (s.training) {
      for (std::size_t i = 0; i < G.length; ++i) out[i] = k1[c] * pg[i] + k2[c] * (px[i] - mean[c]) + k3[c];
    } else {
      for (std::size_t i = 0; i < G.length; ++i) out[i] = k1[c] * pg[i];
    }
  });
}

std::vector<Tensor> batch_norm_fused_backward(const Tensor& g, const Tensor& x, const Tensor& weight,
                                              const BatchNormSaved& s) {
  const Shape channels{s.groups.count};
  Tensor dx = detail::make_tensor(x.shape(), x.dtype(), "batch_norm_backward");
  Tensor dgamma = detail::make_tensor(channels, x.dtype(), "batch_norm_backward");
  Tensor dbeta = detail::make_tensor(channels, x.dtype(), "batch_norm_backward");
  dispatch(x.dtype(), [&]<class T>() {
    batch_norm_backward_kernel(g.data<T>(), x.data<T>(), s, weight.defined() ? weight.data<T>() : nullptr,
                               dx.data<T>(), dgamma.data<T>(), dbeta.data<T>());
  });
  return {dx, dgamma, dbeta};
}

/// The same gradients written with ops on the (N, C, S) view, differentiable again.
std::vector<Tensor> batch_norm_composed_backward(const Tensor& g, const Tensor& x, const Tensor& weight,
                                                 const BatchNormSaved& s) {
  const std::size_t c = s.groups.count;
  const Shape per_channel{1, c, 1};
  auto reduce = [](const Tensor& t) { return sum(sum(t, 2, true), 0, true); };
  Tensor x3 = reshape(x, s.view), g3 = reshape(g, s.view);
  const double m = static_cast<double>(s.groups.size());
  Normalised n = s.training ? composed_normalise(x3, m, s.eps, reduce)
                            : Normalised{mul(sub(x3, reshape(s.mean, per_channel)), reshape(s.invstd, per_channel)),
                                         reshape(s.invstd, per_channel)};
  Tensor ghat = weight.defined() ? mul(g3, reshape(weight, per_channel)) : g3;
  Tensor dx = s.training ? composed_input_grad(ghat, n, m, reduce) : mul(ghat, n.invstd);
  return {reshape(dx, x.shape()), reshape(reduce(mul(g3, n.xhat)), Shape{c}), reshape(reduce(g3), Shape{c})};
}

// ---------------------------------------------------------------- layer_norm

struct LayerNormSaved {
  Groups rows;
  Shape normalized_shape;
  Tensor mean, invstd;  // (rows)
  double eps;
};

void check_layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                      double eps) {
  detail::check_defined("layer_norm", x);
  const std::size_t k = normalized_shape.rank(), r = x.rank();
  bool trailing = k >= 1 && k <= r;
  for (std::size_t d = 0; trailing && d < k; ++d) trailing = x.dim(r - k + d) == normalized_shape[d];
  if (!trailing) {
    fail("layer_norm", "normalized_shape {} must be the trailing extents of the input {}", normalized_shape.str(),
         x.describe());
  }
  if (normalized_shape.numel() == 0) fail("layer_norm", "normalized_shape {} is empty", normalized_shape.str());
  check_affine("layer_norm", "weight", weight, x, normalized_shape);
  check_affine("layer_norm", "bias", bias, x, normalized_shape);
  if (!(eps >= 0.0 && std::isfinite(eps))) fail("layer_norm", "eps {} must be finite and non-negative", eps);
}

/// Row by row: the statistics, then y = (x - μ) σ⁻¹ γ + β.
template <class T>
void layer_norm_forward_kernel(const T* x, const T* gamma, const T* beta, LayerNormSaved& s, T* y) {
  const std::size_t d = s.rows.length;
  T* mean = s.mean.data<T>();
  T* invstd = s.invstd.data<T>();
  for (std::size_t k = 0; k < s.rows.count; ++k) {
    const T* __restrict in = x + k * d;
    const T shift = in[0];
    const double sum = lane_sum<T>(d, [&](std::size_t i) { return in[i] - shift; });
    const double squares = lane_sum<T>(d, [&](std::size_t i) { return (in[i] - shift) * (in[i] - shift); });
    const Moments<T> row = moments(shift, sum, squares, static_cast<double>(d), s.eps);
    mean[k] = row.mean, invstd[k] = row.invstd;
    T* __restrict out = y + k * d;
    for (std::size_t i = 0; i < d; ++i) out[i] = (in[i] - row.mean) * row.invstd * gamma[i] + beta[i];
  }
}

/// Per row: S1 = Σ ĝ, S2 = Σ ĝ x̂, dx = σ⁻¹ (ĝ - S1/D - x̂ S2/D); dγ and dβ summed over the rows in double.
template <class T>
void layer_norm_backward_kernel(const T* g, const T* x, const LayerNormSaved& s, const T* gamma, T* dx, T* dgamma,
                                T* dbeta) {
  const std::size_t d = s.rows.length;
  const T* mean = s.mean.data<T>();
  const T* invstd = s.invstd.data<T>();
  std::vector<double> sum_gamma(d, 0.0), sum_beta(d, 0.0);
  for (std::size_t k = 0; k < s.rows.count; ++k) {
    const T mu = mean[k], is = invstd[k];
    const T* __restrict pg = g + k * d;
    const T* __restrict px = x + k * d;
    const double s1 = lane_sum<T>(d, [&](std::size_t i) { return pg[i] * gamma[i]; });
    const double s2 = lane_sum<T>(d, [&](std::size_t i) { return pg[i] * gamma[i] * (px[i] - mu) * is; });
    const T a = static_cast<T>(s1 / double(d)), b = static_cast<T>(s2 / double(d));
    T* __restrict out = dx + k * d;
    for (std::size_t i = 0; i < d; ++i) {
      const T xhat = (px[i] - mu) * is;
      out[i] = is * (pg[i] * gamma[i] - a - xhat * b);
      sum_gamma[i] += pg[i] * xhat;
      sum_beta[i] += pg[i];
    }
  }
  for (std::size_t i = 0; i < d; ++i) dgamma[i] = static_cast<T>(sum_gamma[i]), dbeta[i] = static_cast<T>(sum_beta[i]);
}

std::vector<Tensor> layer_norm_fused_backward(const Tensor& g, const Tensor& x, const Tensor& weight,
                                              const LayerNormSaved& s) {
  Tensor dx = detail::make_tensor(x.shape(), x.dtype(), "layer_norm_backward");
  Tensor dgamma = detail::make_tensor(s.normalized_shape, x.dtype(), "layer_norm_backward");
  Tensor dbeta = detail::make_tensor(s.normalized_shape, x.dtype(), "layer_norm_backward");
  Tensor gamma = weight.defined() ? weight : Tensor::ones(s.normalized_shape, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    layer_norm_backward_kernel(g.data<T>(), x.data<T>(), s, gamma.data<T>(), dx.data<T>(), dgamma.data<T>(),
                               dbeta.data<T>());
  });
  return {dx, dgamma, dbeta};
}

/// The same gradients written with ops on the (rows, D) view, differentiable again.
std::vector<Tensor> layer_norm_composed_backward(const Tensor& g, const Tensor& x, const Tensor& weight,
                                                 const LayerNormSaved& s) {
  const Shape view{s.rows.count, s.rows.length};
  auto reduce = [](const Tensor& t) { return sum(t, 1, true); };
  Tensor x2 = reshape(x, view), g2 = reshape(g, view);
  Normalised n = composed_normalise(x2, static_cast<double>(s.rows.length), s.eps, reduce);
  Tensor ghat = weight.defined() ? mul(g2, reshape(weight, Shape{1, s.rows.length})) : g2;
  Tensor dx = composed_input_grad(ghat, n, static_cast<double>(s.rows.length), reduce);
  return {reshape(dx, x.shape()), reshape(sum(mul(g2, n.xhat), 0), s.normalized_shape),
          reshape(sum(g2, 0), s.normalized_shape)};
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  check_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps);
  const Shape channels{x.dim(1)};
  BatchNormSaved s{channel_groups(x.shape()), Shape{}, detail::make_tensor(channels, x.dtype(), "batch_norm"),
                   detail::make_tensor(channels, x.dtype(), "batch_norm"), training, eps};
  s.view = Shape{x.dim(0), s.groups.count, s.groups.length};
  Tensor y = detail::make_tensor(x.shape(), x.dtype(), "batch_norm");
  dispatch(x.dtype(), [&]<class T>() {
    std::vector<double> var = batch_norm_forward_kernel(x.data<T>(), running_mean, running_var,
                                                        weight.defined() ? weight.data<T>() : nullptr,
                                                        bias.defined() ? bias.data<T>() : nullptr, s, y.data<T>());
    Tensor rm = running_mean, rv = running_var;
    if (training && rm.defined()) {
      update_running(rm, rv, s.mean.data<T>(), var, static_cast<double>(s.groups.size()), momentum);
    }
  });
  return record("batch_norm", y, {x, weight, bias}, [x, weight, s](const Tensor& g, NeedsGrad) {
    return is_recording() ? batch_norm_composed_backward(g, x, weight, s) : batch_norm_fused_backward(g, x, weight, s);
  });
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias, double eps) {
  check_layer_norm(x, normalized_shape, weight, bias, eps);
  const std::size_t d = normalized_shape.numel(), rows = x.numel() / d;
  LayerNormSaved s{{.count = rows, .runs = 1, .length = d, .group_stride = d, .run_stride = 0}, normalized_shape,
                   detail::make_tensor(Shape{rows}, x.dtype(), "layer_norm"),
                   detail::make_tensor(Shape{rows}, x.dtype(), "layer_norm"), eps};
  Tensor gamma = weight.defined() ? weight : Tensor::ones(normalized_shape, x.dtype());
  Tensor beta = bias.defined() ? bias : Tensor::zeros(normalized_shape, x.dtype());
  Tensor y = detail::make_tensor(x.shape(), x.dtype(), "layer_norm");
  dispatch(x.dtype(), [&]<class T>() {
    layer_norm_forward_kernel(x.data<T>(), gamma.data<T>(), beta.data<T>(), s, y.data<T>());
  });
  return record("layer_norm", y, {x, weight, bias}, [x, weight, s](const Tensor& g, NeedsGrad) {
    return is_recording() ? layer_norm_composed_backward(g, x, weight, s) : layer_norm_fused_backward(g, x, weight, s);
  });
}

}  // namespace ag
