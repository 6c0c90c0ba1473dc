// Activations: relu, sigmoid, tanh, softmax, log_softmax.
#include <cmath>
#include <limits>

#include "autograd/detail/nan.hpp"
#include "autograd/detail/xt.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;

namespace {

template <class F>
Tensor map_flat(const char* op, const Tensor& x, F f) {
  detail::check_defined(op, x);
  Tensor out = detail::make_tensor(x.shape(), x.dtype(), op);
  dispatch(x.dtype(), [&]<class T>() { xt::noalias(detail::flat<T>(out)) = f(detail::flat<T>(x)); });
  return out;
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

// relu follows PyTorch exactly, NaN included: the forward is threshold(x, 0, 0) = (x <= 0 ? 0 : x), so
// relu(NaN) = NaN (xt::maximum, i.e. maxps, would return the 0); the backward is threshold_backward(g, x, 0)
// = (x <= 0 ? 0 : g), so at a NaN input the gradient passes through (1 for a seed of 1). NaN <= 0 is false
// in both. Each compiles to one compare and one blend per vector, as fast as the max it replaces.

/// out[i] = x[i] <= 0 ? 0 : x[i].
template <class T>
void relu_kernel(const T* __restrict x, T* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] <= T(0) ? T(0) : x[i];
}

/// out[i] = x[i] <= 0 ? 0 : v[i].
template <class T>
void threshold_at_zero(const T* __restrict x, const T* __restrict v, T* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] <= T(0) ? T(0) : v[i];
}

/// relu's backward mask as a constant: 1 where x passes (x > 0 or NaN), else 0.
Tensor relu_mask(const Tensor& x) {
  Tensor ones = Tensor::ones(x.shape(), x.dtype());
  Tensor mask = detail::make_tensor(x.shape(), x.dtype(), "relu");
  dispatch(x.dtype(), [&]<class T>() { threshold_at_zero(x.data<T>(), ones.data<T>(), mask.data<T>(), x.numel()); });
  return mask;
}

}  // namespace

Tensor relu(const Tensor& x) {
  detail::check_defined("relu", x);
  Tensor out = detail::make_tensor(x.shape(), x.dtype(), "relu");
  dispatch(x.dtype(), [&]<class T>() { relu_kernel(x.data<T>(), out.data<T>(), x.numel()); });
  return record("relu", out, {x}, [x](const Tensor& g, NeedsGrad) {
    if (is_recording()) return std::vector<Tensor>{mul(g, relu_mask(x))};
    // First order: one fused pass instead of building the mask.
    Tensor dx = detail::make_tensor(x.shape(), x.dtype(), "relu");
    dispatch(x.dtype(), [&]<class T>() { threshold_at_zero(x.data<T>(), g.data<T>(), dx.data<T>(), x.numel()); });
    return std::vector<Tensor>{dx};
  });
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = map_flat("sigmoid", x, [](auto&& v) { return 1 / (1 + xt::exp(-v)); });
  return record("sigmoid", out, {x}, [out](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, mul(out, sub(1.0, out)))};
  });
}

Tensor tanh(const Tensor& x) {
  Tensor out = map_flat("tanh", x, [](auto&& v) { return xt::tanh(v); });
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
