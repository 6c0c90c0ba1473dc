// The one door to xtensor: the library's .cpp files include this, public headers never do.
#pragma once

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <stdexcept>
#include <fmt/format.h>

#include "autograd/detail/tensor_impl.hpp"
#include "autograd/tensor.hpp"

namespace ag::detail {

/// Flat 1-D xtensor adaptor over a tensor's elements (no copy): vectorised elementwise loops.
template <class T>
auto flat(Tensor& t) {
  return xt::adapt(t.data<T>(), t.numel(), xt::no_ownership(), std::array<std::size_t, 1>{t.numel()});
}
template <class T>
auto flat(const Tensor& t) {
  return xt::adapt(const_cast<T*>(t.data<T>()), t.numel(), xt::no_ownership(),
                   std::array<std::size_t, 1>{t.numel()});
}

/// N-D adaptor with a dynamic shape (for general broadcasting and reductions).
template <class T>
auto nd(const Tensor& t) {
  std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
  return xt::adapt(const_cast<T*>(t.data<T>()), t.numel(), xt::no_ownership(), shape);
}

/// 2-D adaptor (rows, cols).
template <class T>
auto matrix(const Tensor& t, std::size_t rows, std::size_t cols) {
  return xt::adapt(const_cast<T*>(t.data<T>()), rows * cols, xt::no_ownership(),
                   std::array<std::size_t, 2>{rows, cols});
}

/// Calls fn.template operator()<T>() with T = float or double according to `dtype`.
template <class Fn>
decltype(auto) dispatch(DType dtype, Fn&& fn) {
  if (dtype == DType::f64) return fn.template operator()<double>();
  return fn.template operator()<float>();
}

/// Throws std::invalid_argument with a message that starts with the op's name.
template <class... Args>
[[noreturn]] void fail(const char* op, fmt::format_string<Args...> format, Args&&... args) {
  throw std::invalid_argument(fmt::format("{}: {}", op, fmt::format(format, std::forward<Args>(args)...)));
}

/// Both tensors defined and of one dtype, else an error naming the op.
void check_binary(const char* op, const Tensor& a, const Tensor& b);
void check_defined(const char* op, const Tensor& x);
/// Normalises a possibly negative axis of `x`; throws naming the op and x's shape.
std::size_t normalise_axis(const char* op, int axis, const Tensor& x);

}  // namespace ag::detail
