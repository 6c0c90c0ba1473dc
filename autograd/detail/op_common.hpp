// What every op's .cpp uses: dtype dispatch and the errors that name the op. Light: no xtensor or xsimd
// (the vectorised transcendental functions are behind autograd/detail/math.hpp).
#pragma once

#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "autograd/detail/tensor_impl.hpp"
#include "autograd/tensor.hpp"

namespace ag::detail {

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
