// Helpers for op tests: an op's error names the op and the shapes; values against hand-computed ones; inputs
// for gradient checks (float64, with a unique maximum); the rows of a NaN table and their check.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "autograd/tensor.hpp"

namespace op_checks {

/// The message of the std::invalid_argument thrown by `f`, or "" if it throws nothing.
template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

inline ag::Tensor f64(const ag::Shape& shape, std::initializer_list<double> values) {
  return ag::Tensor::from_data(shape, values, ag::DType::f64);
}

inline ag::Tensor normal(const ag::Shape& shape, ag::Generator& gen) {
  return ag::Tensor::randn(shape, gen, 0.0, 1.0, ag::DType::f64);
}

/// Distinct values 0.3 apart in random order: extrema that no step of 1e-6 changes.
inline ag::Tensor distinct(const ag::Shape& shape, ag::Generator& gen) {
  std::size_t n = shape.numel();
  std::vector<double> values(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = 0.3 * static_cast<double>(i) - 0.15 * static_cast<double>(n);
  for (std::size_t i = n; i > 1; --i) std::swap(values[i - 1], values[gen.below(i)]);
  return ag::Tensor::from_data(shape, std::span<const double>(values));
}

/// Shape and values, each within a relative `eps` of the expected one.
inline void check_values(const ag::Tensor& got, const ag::Shape& shape, const std::vector<double>& want,
                         double eps = 1e-12) {
  INFO("got " << got.describe() << ", want shape " << shape.str());
  REQUIRE(got.shape() == shape);
  REQUIRE(got.numel() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(got.at(i) == doctest::Approx(want[i]).epsilon(eps));
  }
}

/// What the gradient at a NaN input must be: NaN where the derivative reads the input, a finite number
/// where it does not (d(x + y)/dx = 1 whatever x is), or exactly one where the op routes its gradient
/// to the NaN (max, max_pool2d) or passes it through (relu, as PyTorch's threshold_backward); none for ops
/// without a gradient.
enum class GradAtNaN { nan, finite, one, none };

/// One row of a NaN table: an op applied to an input of `shape` whose element 1 is NaN.
struct NanCase {
  const char* op;
  ag::Shape shape;
  std::function<ag::Tensor(const ag::Tensor&)> f;
  std::size_t nan_output;  // flat index of an output that must be NaN
  GradAtNaN grad;
};

/// Runs `c` in `dtype` on `x` (its element 1 is set to NaN here): the output at c.nan_output must be NaN, and
/// the gradient of its sum at the NaN as c.grad says.
inline void check_nan_case(const NanCase& c, ag::Tensor x) {
  INFO(std::string(c.op) << " in " << std::string(ag::dtype_name(x.dtype())));
  if (x.dtype() == ag::DType::f64) {
    x.data<double>()[1] = std::numeric_limits<double>::quiet_NaN();
  } else {
    x.data<float>()[1] = std::numeric_limits<float>::quiet_NaN();
  }
  x.set_requires_grad(c.grad != GradAtNaN::none);
  ag::Tensor out = c.f(x);
  CHECK(std::isnan(out.at(c.nan_output)));
  if (c.grad == GradAtNaN::none) return;
  ag::backward(ag::sum(out));
  double grad = x.grad().at(1);
  INFO("gradient at the NaN: " << grad);
  switch (c.grad) {
    case GradAtNaN::nan: CHECK(std::isnan(grad)); break;
    case GradAtNaN::finite: CHECK(std::isfinite(grad)); break;
    case GradAtNaN::one: CHECK(grad == 1.0); break;
    case GradAtNaN::none: break;
  }
}

}  // namespace op_checks

// An op's error: std::invalid_argument naming the op, and every listed part (the shapes) in the message.
#define CHECK_OP_ERROR(expr, op, ...)                                                           \
  do {                                                                                          \
    CHECK_THROWS_WITH_AS(expr, doctest::Contains(op), std::invalid_argument);                   \
    std::string message_ = op_checks::invalid_argument_message([&] { (void)(expr); });          \
    INFO("message: " << message_);                                                              \
    for (const char* part_ : {__VA_ARGS__}) CHECK(message_.find(part_) != std::string::npos);   \
  } while (false)
