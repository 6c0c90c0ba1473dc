#include "nn/clip.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

namespace nn {

namespace {

void check_bound(const char* what, const char* name, double value) {
  if (!(value > 0.0) || !std::isfinite(value)) {
    throw std::invalid_argument(fmt::format("{}: {} must be > 0 and finite, got {}", what, name, value));
  }
}

/// Replaces each defined gradient g of `params` by clipped(g).
template <class F>
void replace_grads(const std::vector<ag::Tensor>& params, F clipped) {
  ag::NoGradGuard no_grad;
  for (ag::Tensor p : params) {
    if (p.grad().defined()) p.set_grad(clipped(p.grad()));
  }
}

template <class T>
double squares(const ag::Tensor& g) {
  const T* x = g.data<T>();
  double sum = 0.0;
  for (std::size_t i = 0, n = g.numel(); i < n; ++i) sum += double(x[i]) * double(x[i]);
  return sum;
}

}  // namespace

double grad_norm(const std::vector<ag::Tensor>& params) {
  double sum = 0.0;
  for (const ag::Tensor& p : params) {
    ag::Tensor g = p.grad();
    if (g.defined()) sum += g.dtype() == ag::DType::f64 ? squares<double>(g) : squares<float>(g);
  }
  return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<ag::Tensor>& params, double max_norm) {
  check_bound("clip_grad_norm", "max_norm", max_norm);
  const double norm = grad_norm(params);
  const double scale = max_norm / (norm + 1e-6);
  if (scale >= 1.0) return norm;  // also false for NaN: NaN goes on into the gradients
  replace_grads(params, [scale](const ag::Tensor& g) { return ag::mul(g, scale); });
  return norm;
}

void clip_grad_value(const std::vector<ag::Tensor>& params, double clip) {
  check_bound("clip_grad_value", "clip", clip);
  replace_grads(params, [clip](const ag::Tensor& g) { return ag::clamp(g, -clip, clip); });
}

}  // namespace nn
