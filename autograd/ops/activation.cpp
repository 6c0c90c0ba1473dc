// Activations: relu, leaky_relu, elu, gelu, softplus, silu, log_sigmoid, hardtanh, sigmoid, tanh, softmax,
// log_softmax.
#include <cmath>
#include <limits>

#include "autograd/detail/math.hpp"
#include "autograd/detail/nan.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/detail/relu.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;

namespace {

/// out[i] = f(x[i]) as a plain loop over raw pointers (vectorised where f is). Used for forward values and
/// for the constant (piecewise-constant) masks of backward formulas, which record nothing.
template <class F>
Tensor pointwise(const char* op, const Tensor& x, F f) {
  detail::check_defined(op, x);
  Tensor out = detail::make_tensor(x.shape(), x.dtype(), op);
  dispatch(x.dtype(), [&]<class T>() {
    const T* __restrict px = x.data<T>();
    T* __restrict po = out.data<T>();
    std::size_t n = x.numel();
    for (std::size_t i = 0; i < n; ++i) po[i] = f(px[i]);
  });
  return out;
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

/// phi(x) = e^(-x^2/2) / sqrt(2 pi), from ops (differentiable).
Tensor normal_pdf(const Tensor& x) { return mul(exp(mul(mul(x, x), -0.5)), kInvSqrt2Pi); }

/// Phi(x) = erfc(-x / sqrt 2) / 2; d = g phi(x). Its own node, so that gelu's backward differentiates again.
Tensor normal_cdf(const Tensor& x) {
  Tensor out = pointwise("gelu", x, [](auto v) {
    using T = decltype(v);
    return T(0.5) * std::erfc(-v * T(kInvSqrt2));
  });
  return record("normal_cdf", out, {x}, [x](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, normal_pdf(x))};
  });
}

/// Applies `row_op(in, out, count, stride)` to every slice of x along `axis`.
template <class RowOp>
Tensor along_axis(const char* op, const Tensor& x, int axis, RowOp row_op) {
  detail::check_defined(op, x);
  std::size_t a = detail::normalise_axis(op, axis, x);
  std::size_t outer = 1, inner = 1, extent = x.dim(a);
  for (std::size_t d = 0; d < a; ++d) outer *= x.dim(d);
  for (std::size_t d = a + 1; d < x.rank(); ++d) inner *= x.dim(d);
  Tensor out = detail::make_tensor(x.shape(), x.dtype(), op);
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for (std::size_t o = 0; o < outer; ++o) {
      for (std::size_t i = 0; i < inner; ++i) {
        std::size_t base = o * extent * inner + i;
        row_op(px + base, po + base, extent, inner);
      }
    }
  });
  return out;
}

/// Max and log-sum-exp of a strided row, computed stably. A NaN anywhere in the row makes both NaN (std::max
/// would skip it as the peak; the sum would still catch it, but the peak must not hide it either).
template <class T>
std::pair<T, T> max_and_logsumexp(const T* in, std::size_t count, std::size_t stride) {
  T peak = -std::numeric_limits<T>::infinity();
  for (std::size_t k = 0; k < count; ++k) peak = detail::nan_max(peak, in[k * stride]);
  T total = 0;
  for (std::size_t k = 0; k < count; ++k) total += std::exp(in[k * stride] - peak);
  return {peak, peak + std::log(total)};
}

/// relu's backward mask as a constant: 1 where x passes (x > 0 or NaN), else 0.
Tensor relu_mask(const Tensor& x) {
  Tensor ones = Tensor::ones(x.shape(), x.dtype());
  Tensor mask = detail::make_tensor(x.shape(), x.dtype(), "relu");
  dispatch(x.dtype(), [&]<class T>() {
    detail::threshold_at_zero(x.data<T>(), ones.data<T>(), mask.data<T>(), x.numel());
  });
  return mask;
}

}  // namespace

Tensor relu(const Tensor& x) {
  detail::check_defined("relu", x);
  Tensor out = detail::make_tensor(x.shape(), x.dtype(), "relu");
  dispatch(x.dtype(), [&]<class T>() { detail::relu_kernel(x.data<T>(), out.data<T>(), x.numel()); });
  return record("relu", out, {x},
                [x](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{detail::relu_backward(g, x)}; });
}

namespace detail {

Tensor relu_backward(const Tensor& g, const Tensor& x) {
  if (is_recording()) return mul(g, relu_mask(x));
  // First order: one fused pass instead of building the mask.
  Tensor dx = make_tensor(x.shape(), x.dtype(), "relu");
  dispatch(x.dtype(), [&]<class T>() { threshold_at_zero(x.data<T>(), g.data<T>(), dx.data<T>(), x.numel()); });
  return dx;
}

}  // namespace detail

Tensor leaky_relu(const Tensor& x, double negative_slope) {
  Tensor out = pointwise("leaky_relu", x, [negative_slope](auto v) {
    return v > 0 ? v : v * decltype(v)(negative_slope);
  });
  return record("leaky_relu", out, {x}, [x, negative_slope](const Tensor& g, NeedsGrad) {
    // Slope 1 where x > 0, negative_slope where x <= 0 (0 included), NaN at NaN.
    Tensor slope = pointwise("leaky_relu", x, [negative_slope](auto v) {
      using T = decltype(v);
      return v > T(0) ? T(1) : (v <= T(0) ? T(negative_slope) : v);
    });
    return std::vector<Tensor>{mul(g, slope)};
  });
}

Tensor elu(const Tensor& x, double alpha) {
  Tensor out = pointwise("elu", x, [alpha](auto v) {
    using T = decltype(v);
    return v > T(0) ? v : T(alpha) * std::expm1(v);
  });
  return record("elu", out, {x}, [x, out, alpha](const Tensor& g, NeedsGrad) {
    // 1 where x > 0, y + alpha = alpha e^x where x <= 0 or NaN; where() keeps an infinite y out of the other side.
    Tensor positive = pointwise("elu", x, [](auto v) { return v > 0 ? decltype(v)(1) : decltype(v)(0); });
    Tensor slope = where(positive, Tensor::ones_like(x), add(out, alpha));
    return std::vector<Tensor>{mul(g, slope)};
  });
}

Tensor gelu(const Tensor& x, bool approximate) {
  if (!approximate) {
    Tensor out = pointwise("gelu", x, [](auto v) {
      using T = decltype(v);
      return v * T(0.5) * std::erfc(-v * T(kInvSqrt2));
    });
    return record("gelu", out, {x}, [x](const Tensor& g, NeedsGrad) {
      return std::vector<Tensor>{mul(g, add(normal_cdf(x), mul(x, normal_pdf(x))))};
    });
  }
  Tensor out = pointwise("gelu", x, [](auto v) {
    using T = decltype(v);
    return T(0.5) * v * (T(1) + std::tanh(T(kSqrt2OverPi) * (v + T(kGeluCubic) * v * v * v)));
  });
  return record("gelu_tanh", out, {x}, [x](const Tensor& g, NeedsGrad) {
    Tensor t = tanh(mul(add(x, mul(pow(x, 3.0), kGeluCubic)), kSqrt2OverPi));
    Tensor du = mul(add(mul(mul(x, x), 3.0 * kGeluCubic), 1.0), kSqrt2OverPi);
    Tensor slope = add(mul(add(t, 1.0), 0.5), mul(mul(mul(x, 0.5), sub(1.0, mul(t, t))), du));
    return std::vector<Tensor>{mul(g, slope)};
  });
}

Tensor softplus(const Tensor& x, double beta, double threshold) {
  detail::check_defined("softplus", x);
  if (!(beta > 0)) detail::fail("softplus", "of {} with beta {}: beta must be positive", x.describe(), beta);
  Tensor out = pointwise("softplus", x, [beta, threshold](auto v) {
    using T = decltype(v);
    T bv = v * T(beta);
    return bv > T(threshold) ? v : std::log1p(std::exp(bv)) / T(beta);
  });
  return record("softplus", out, {x}, [x, beta, threshold](const Tensor& g, NeedsGrad) {
    Tensor linear = pointwise("softplus", x, [beta, threshold](auto v) {
      using T = decltype(v);
      return v * T(beta) > T(threshold) ? T(1) : T(0);
    });
    // sigmoid(beta x) below the threshold (NaN stays NaN there), 1 above.
    return std::vector<Tensor>{mul(g, where(linear, Tensor::ones_like(x), sigmoid(mul(x, beta))))};
  });
}

Tensor silu(const Tensor& x) {
  Tensor out = pointwise("silu", x, [](auto v) {
    using T = decltype(v);
    return v / (T(1) + std::exp(-v));
  });
  return record("silu", out, {x}, [x](const Tensor& g, NeedsGrad) {
    Tensor s = sigmoid(x);
    return std::vector<Tensor>{mul(g, mul(s, add(mul(x, sub(1.0, s)), 1.0)))};
  });
}

Tensor log_sigmoid(const Tensor& x) {
  Tensor out = pointwise("log_sigmoid", x, [](auto v) {
    using T = decltype(v);
    return v < T(0) ? v - std::log1p(std::exp(v)) : -std::log1p(std::exp(-v));
  });
  return record("log_sigmoid", out, {x}, [x](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, sigmoid(neg(x)))};
  });
}

Tensor hardtanh(const Tensor& x, double min, double max) {
  detail::check_defined("hardtanh", x);
  if (!(min <= max)) {
    detail::fail("hardtanh", "of {} to [{}, {}]: the bounds must be ordered numbers", x.describe(), min, max);
  }
  Tensor out = pointwise("hardtanh", x, [min, max](auto v) {
    using T = decltype(v);
    return v < T(min) ? T(min) : (v > T(max) ? T(max) : v);
  });
  return record("hardtanh", out, {x}, [x, min, max](const Tensor& g, NeedsGrad) {
    // 1 strictly inside, 0 outside and at the bounds, NaN at NaN.
    Tensor inside = pointwise("hardtanh", x, [min, max](auto v) {
      using T = decltype(v);
      return v > T(min) && v < T(max) ? T(1) : (v != v ? v : T(0));
    });
    return std::vector<Tensor>{mul(g, inside)};
  });
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = detail::elementwise_math("sigmoid", detail::Math::sigmoid, x);
  return record("sigmoid", out, {x}, [out](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, mul(out, sub(1.0, out)))};
  });
}

Tensor tanh(const Tensor& x) {
  Tensor out = detail::elementwise_math("tanh", detail::Math::tanh, x);
  return record("tanh", out, {x}, [out](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, sub(1.0, mul(out, out)))};
  });
}

Tensor softmax(const Tensor& x, int axis) {
  Tensor out = along_axis("softmax", x, axis, [](const auto* in, auto* o, std::size_t count, std::size_t stride) {
    auto [peak, lse] = max_and_logsumexp(in, count, stride);
    for (std::size_t k = 0; k < count; ++k) o[k * stride] = std::exp(in[k * stride] - lse);
  });
  return record("softmax", out, {x}, [out, axis](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(out, sub(g, sum(mul(g, out), axis, true)))};
  });
}

Tensor log_softmax(const Tensor& x, int axis) {
  Tensor out = along_axis("log_softmax", x, axis, [](const auto* in, auto* o, std::size_t count, std::size_t stride) {
    auto [peak, lse] = max_and_logsumexp(in, count, stride);
    for (std::size_t k = 0; k < count; ++k) o[k * stride] = in[k * stride] - lse;
  });
  return record("log_softmax", out, {x}, [out, axis](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{sub(g, mul(exp(out), sum(g, axis, true)))};
  });
}

}  // namespace ag
