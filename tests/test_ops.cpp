// Every differentiable op but conv2d and max_pool2d (tested beside the convolution code): gradients
// against finite differences in float64, second order for a representative set, forward values
// against hand-computed ones, shape and dtype errors, float32 against float64, the stability of
// the fused cross-entropy, NaN through every op (conv2d and max_pool2d included), and sizes that overflow.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "autograd/blas.hpp"
#include "autograd/generator.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "gradcheck_assertions.hpp"
#include "op_checks.hpp"

using namespace ag;

namespace {

using Inputs = std::vector<Tensor>;
using LabelVector = std::vector<std::int32_t>;

Tensor normal(const Shape& shape, Generator& gen, double stddev = 1.0) {
  return Tensor::randn(shape, gen, 0.0, stddev, DType::f64);
}

Tensor positive(const Shape& shape, Generator& gen, double low = 0.5, double high = 2.0) {
  return Tensor::uniform(shape, gen, low, high, DType::f64);
}

/// Magnitudes in [0.2, 1.5) with random signs: away from the kinks of abs and relu.
Tensor off_zero(const Shape& shape, Generator& gen) {
  Tensor t = Tensor::uniform(shape, gen, 0.2, 1.5, DType::f64);
  double* p = t.data<double>();
  for (std::size_t i = 0; i < t.numel(); ++i) {
    if (gen.below(2) == 0) p[i] = -p[i];
  }
  return t;
}

/// Distinct values 0.3 apart in random order: max has a unique winner that no step of 1e-6 changes.
Tensor distinct(const Shape& shape, Generator& gen) {
  std::size_t n = shape.numel();
  std::vector<double> values(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = 0.3 * static_cast<double>(i) - 0.15 * static_cast<double>(n);
  for (std::size_t i = n; i > 1; --i) std::swap(values[i - 1], values[gen.below(i)]);
  return Tensor::from_data(shape, std::span<const double>(values));
}

LabelVector random_labels(std::size_t batch, std::size_t classes, Generator& gen) {
  LabelVector labels(batch);
  for (auto& label : labels) label = static_cast<std::int32_t>(gen.below(classes));
  return labels;
}

Tensor f64(const Shape& shape, std::initializer_list<double> values) {
  return Tensor::from_data(shape, values, DType::f64);
}

/// Shape and values, each within a relative 1e-12 of the expected one.
void check_values(const Tensor& got, const Shape& shape, const std::vector<double>& want, double eps = 1e-12) {
  INFO("got " << got.describe() << ", want shape " << shape.str());
  REQUIRE(got.shape() == shape);
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(got.at(i) == doctest::Approx(want[i]).epsilon(eps));
  }
}

double max_abs_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return a.size() == b.size() ? worst : std::numeric_limits<double>::infinity();
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector()) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

struct BinaryOp {
  const char* name;
  Tensor (*fn)(const Tensor&, const Tensor&);
};

const BinaryOp kBinaryOps[] = {
    {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
    {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
    {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
    {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
};

}  // namespace

// ================================================================ first order, against finite differences

TEST_CASE("add, sub, mul and div: gradients with and without broadcasting") {
  // Same shapes, a trailing vector, a middle column, an outer product, a one-element tensor and a
  // rank-0 scalar on either side, and a rank-4 broadcast.
  const std::pair<Shape, Shape> cases[] = {
      {Shape{3, 4}, Shape{3, 4}}, {Shape{3, 4}, Shape{4}},    {Shape{4}, Shape{3, 4}},
      {Shape{2, 3, 4}, Shape{3, 1}}, {Shape{3, 1}, Shape{2, 3, 4}}, {Shape{5, 1}, Shape{1, 4}},
      {Shape{3, 4}, Shape{1}},    {Shape{1}, Shape{3, 4}},    {Shape{3, 4}, Shape{}},
      {Shape{}, Shape{2, 3}},     {Shape{}, Shape{}},         {Shape{2, 1, 3, 1}, Shape{4, 1, 5}},
  };
  Generator gen(1);
  for (const BinaryOp& op : kBinaryOps) {
    for (const auto& c : cases) {
      INFO(op.name << " of " << c.first.str() << " and " << c.second.str());
      Tensor a = normal(c.first, gen);
      // Denominators kept away from zero.
      Tensor b = std::string(op.name) == "div" ? positive(c.second, gen) : normal(c.second, gen);
      Tensor out = op.fn(a, b);
      CHECK(out.shape() == broadcast_shapes(c.first, c.second, op.name));
      auto fn = op.fn;
      CHECK_GRADCHECK([fn](const Inputs& v) { return fn(v[0], v[1]); }, {a, b});
    }
  }
}

TEST_CASE("binary ops with a tensor used on both sides") {
  Generator gen(2);
  Tensor x = positive({3, 4}, gen);
  CHECK_GRADCHECK([](const Inputs& v) { return mul(v[0], v[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return add(v[0], v[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return div(v[0], add(v[0], v[0] * v[0])); }, {x});
  // One side broadcast from a reshape of the other.
  CHECK_GRADCHECK([](const Inputs& v) { return mul(v[0], reshape(sum(v[0], 0), Shape{1, 4})); }, {x});
}

TEST_CASE("scalar overloads, operators and neg") {
  Generator gen(3);
  Tensor x = normal({3, 4}, gen);
  Tensor p = positive({3, 4}, gen);
  CHECK_GRADCHECK([](const Inputs& v) { return add(v[0], 1.5); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return sub(v[0], 0.7); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return sub(0.7, v[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return mul(v[0], -2.5); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return div(v[0], 4.0); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return div(3.0, v[0]); }, {p});
  CHECK_GRADCHECK([](const Inputs& v) { return neg(v[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return 1.5 + v[0] + 2.0; }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return (v[0] - 2.0) * (2.0 - v[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return 3.0 * v[0] * 0.5; }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return v[0] / 2.0 + 2.0 / v[0]; }, {p});
  CHECK_GRADCHECK([](const Inputs& v) { return -v[0] + v[1] - v[0] * v[1] / v[1]; }, {x, p});
  // Scalar overloads on a rank-0 tensor.
  CHECK_GRADCHECK([](const Inputs& v) { return 2.0 / (v[0] * 3.0 - 1.0); }, {Tensor::scalar(1.25, DType::f64)});
}

TEST_CASE("scalar overloads: forward values") {
  Tensor x = f64({3}, {1, -2, 4});
  check_values(add(x, 1.5), {3}, {2.5, -0.5, 5.5});
  check_values(sub(x, 1.5), {3}, {-0.5, -3.5, 2.5});
  check_values(sub(1.5, x), {3}, {0.5, 3.5, -2.5});
  check_values(mul(x, -2.0), {3}, {-2, 4, -8});
  check_values(div(x, 4.0), {3}, {0.25, -0.5, 1});
  check_values(div(2.0, x), {3}, {2, -1, 0.5});
  check_values(neg(x), {3}, {-1, 2, -4});
  check_values(10.0 - x * 2.0 + 1.0, {3}, {9, 15, 3});
  CHECK_OP_ERROR(div(x, 0.0), "div", "[3]");
}

TEST_CASE("pow for several exponents") {
  Generator gen(4);
  // Integer exponents on inputs of either sign; any exponent on positive inputs.
  for (double e : {2.0, 3.0, 1.0, -1.0, -2.0}) {
    INFO("exponent " << e);
    CHECK_GRADCHECK([e](const Inputs& v) { return pow(v[0], e); }, {off_zero({3, 4}, gen)});
  }
  for (double e : {2.0, 3.0, 0.5, -0.5, -2.5, 1.7, 4.25}) {
    INFO("exponent " << e);
    CHECK_GRADCHECK([e](const Inputs& v) { return pow(v[0], e); }, {positive({3, 4}, gen)});
  }
  // x^0 is constant: its gradient is zero everywhere, which only allow_all_zero accepts.
  GradcheckReport constant = gradcheck([](const Inputs& v) { return pow(v[0], 0.0); }, {positive({3, 4}, gen)},
                                       {.allow_all_zero = true});
  INFO(constant.summary());
  CHECK(constant.passed);
}

TEST_CASE("pow agrees with std::pow, including at x = 0") {
  // 40 elements, so that the vectorised part of the kernel is exercised, not only its scalar tail.
  Generator gen(41);
  std::vector<double> bases(40);
  for (std::size_t i = 0; i < bases.size(); ++i) bases[i] = i % 4 == 0 ? 0.0 : 4.0 * gen.uniform01() - 2.0;
  Tensor x = Tensor::from_data({40}, std::span<const double>(bases));
  for (double e : {3.0, 2.0, 1.0, 0.0, -1.0, -2.0, 0.5, -0.5, 1.7}) {
    std::vector<double> got = pow(x, e).to_vector();
    std::size_t mismatches = 0;
    std::string first;
    for (std::size_t i = 0; i < bases.size(); ++i) {
      double want = std::pow(bases[i], e);
      bool same = std::isnan(want) ? std::isnan(got[i])
                  : std::isinf(want) ? got[i] == want
                                     : std::abs(got[i] - want) <= 1e-13 * std::abs(want);
      if (!same && mismatches++ == 0) {
        first = "pow(" + std::to_string(bases[i]) + ", " + std::to_string(e) + ") = " + std::to_string(got[i]) +
                ", std::pow gives " + std::to_string(want);
      }
    }
    INFO(mismatches << " of " << bases.size() << " elements differ, the first: " << first);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("pow at x = 0: d/dx x^1 = 1 and d/dx x^0 = 0") {
  // x^1 = x, so its slope is 1 everywhere; x^0 = 1 is constant, so its slope is 0 everywhere (as in
  // PyTorch), although 0 * 0^-1 would be NaN. 16 zeros reach the vectorised part of the kernel, 3
  // elements may stay in its scalar part.
  for (std::size_t n : {16, 3}) {
    Tensor x = Tensor::zeros({n}, DType::f64).set_requires_grad();
    backward(sum(pow(x, 1.0)));
    std::vector<double> slope = x.grad().to_vector();
    INFO("d/dx x^1 over " << n << " zeros: " << slope.front() << " (first), " << slope.back() << " (last)");
    CHECK(slope == std::vector<double>(n, 1.0));
  }
  for (std::size_t n : {16, 3}) {
    Tensor x = Tensor::zeros({n}, DType::f64).set_requires_grad();
    backward(sum(pow(x, 0.0)));
    std::vector<double> slope = x.grad().to_vector();
    INFO("d/dx x^0 over " << n << " zeros: " << slope.front() << " (first), " << slope.back() << " (last)");
    CHECK(slope == std::vector<double>(n, 0.0));
  }
  Tensor y = f64({3}, {0.0, 1.0, -2.0}).set_requires_grad();
  backward(sum(pow(y, 0.0)));
  check_values(y.grad(), {3}, {0, 0, 0});
}

TEST_CASE("exp, log, sqrt, abs, relu, sigmoid and tanh") {
  Generator gen(5);
  Tensor x = normal({2, 3, 4}, gen);
  Tensor p = positive({2, 3, 4}, gen, 0.3, 3.0);
  Tensor k = off_zero({2, 3, 4}, gen);
  CHECK_GRADCHECK([](const Inputs& v) { return exp(v[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return log(v[0]); }, {p});
  CHECK_GRADCHECK([](const Inputs& v) { return sqrt(v[0]); }, {p});
  CHECK_GRADCHECK([](const Inputs& v) { return abs(v[0]); }, {k});
  CHECK_GRADCHECK([](const Inputs& v) { return relu(v[0]); }, {k});
  CHECK_GRADCHECK([](const Inputs& v) { return sigmoid(v[0]); }, {mul(x, 3.0)});
  CHECK_GRADCHECK([](const Inputs& v) { return tanh(v[0]); }, {mul(x, 2.0)});
  // Chains, and rank-0 inputs.
  CHECK_GRADCHECK([](const Inputs& v) { return log(add(exp(v[0]), 1.0)); }, {x});
  CHECK_GRADCHECK([](const Inputs& v) { return sqrt(abs(tanh(v[0])) + 0.1); }, {k});
  CHECK_GRADCHECK([](const Inputs& v) { return sigmoid(v[0]) * relu(v[0]); }, {Tensor::scalar(0.8, DType::f64)});
}

TEST_CASE("exp, log, sqrt, sigmoid and tanh: values of whole vectors and their tails in both dtypes, NaN kept") {
  // 37 values: two or four SIMD batches and a tail of 5 (16 floats or 8 doubles a batch with AVX-512,
  // fewer with narrower vectors); a NaN in the batches and one in the tail.
  std::vector<double> values(37);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.05 + 0.37 * static_cast<double>(i % 11);
  values[3] = values[35] = std::numeric_limits<double>::quiet_NaN();
  using Reference = double (*)(double);
  const std::vector<std::tuple<const char*, Tensor (*)(const Tensor&), Reference>> cases{
      {"exp", [](const Tensor& t) { return exp(t); }, [](double v) { return std::exp(v); }},
      {"log", [](const Tensor& t) { return log(t); }, [](double v) { return std::log(v); }},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, [](double v) { return std::sqrt(v); }},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, [](double v) { return 1 / (1 + std::exp(-v)); }},
      {"tanh", [](const Tensor& t) { return tanh(t); }, [](double v) { return std::tanh(v); }}};
  for (DType dtype : {DType::f32, DType::f64}) {
    // A few units in the last place of the dtype.
    const double tolerance = dtype == DType::f32 ? 4e-7 : 1e-15;
    Tensor x = Tensor::from_data({values.size()}, std::span<const double>(values)).to(dtype);
    for (const auto& test : cases) {
      const char* name = std::get<0>(test);
      const Reference reference = std::get<2>(test);
      Tensor y = std::get<1>(test)(x).to(DType::f64);
      for (std::size_t i = 0; i < values.size(); ++i) {
        INFO(name << " at " << i << " in " << (dtype == DType::f32 ? "f32" : "f64"));
        const double input = x.to(DType::f64).data<double>()[i], expected = reference(input);
        const double got = y.data<double>()[i];
        if (std::isnan(expected)) {
          CHECK(std::isnan(got));
        } else {
          CHECK(std::abs(got - expected) <= tolerance * std::abs(expected));
        }
      }
    }
  }
}

TEST_CASE("relu and abs at the kink: zero gradient, as documented") {
  Tensor x = f64({4}, {-1.0, 0.0, 2.0, -0.0}).set_requires_grad();
  backward(sum(add(relu(x), abs(x))));
  check_values(x.grad(), {4}, {-1, 0, 2, 0});
}

TEST_CASE("softmax and log_softmax along every axis") {
  Generator gen(6);
  const std::pair<Shape, int> cases[] = {
      {Shape{5}, 0},        {Shape{3, 5}, 0},     {Shape{3, 5}, 1},     {Shape{3, 5}, -1},    {Shape{3, 5}, -2},
      {Shape{2, 3, 4}, 0},  {Shape{2, 3, 4}, 1},  {Shape{2, 3, 4}, 2},  {Shape{2, 3, 4}, -1}, {Shape{2, 2, 3, 2}, 2},
  };
  for (const auto& c : cases) {
    INFO("shape " << c.first.str() << ", axis " << c.second);
    Tensor x = normal(c.first, gen, 2.0);
    int axis = c.second;
    CHECK_GRADCHECK([axis](const Inputs& v) { return softmax(v[0], axis); }, {x});
    CHECK_GRADCHECK([axis](const Inputs& v) { return log_softmax(v[0], axis); }, {x});
  }
  // The default axis is the last.
  Tensor x = normal({3, 4}, gen);
  CHECK(softmax(x).to_vector() == softmax(x, 1).to_vector());
  CHECK(log_softmax(x).to_vector() == log_softmax(x, 1).to_vector());
}

TEST_CASE("sum, mean and max: over everything and per axis, keepdims both ways") {
  Generator gen(7);
  for (const Shape& shape : {Shape{7}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 2, 2}}) {
    INFO("shape " << shape.str());
    Tensor x = normal(shape, gen);
    Tensor d = distinct(shape, gen);
    CHECK_GRADCHECK([](const Inputs& v) { return sum(v[0]); }, {x});
    CHECK_GRADCHECK([](const Inputs& v) { return mean(v[0]); }, {x});
    CHECK_GRADCHECK([](const Inputs& v) { return max(v[0]); }, {d});
    for (int axis = -static_cast<int>(shape.rank()); axis < static_cast<int>(shape.rank()); ++axis) {
      for (bool keepdims : {false, true}) {
        INFO("axis " << axis << ", keepdims " << keepdims);
        CHECK_GRADCHECK([axis, keepdims](const Inputs& v) { return sum(v[0], axis, keepdims); }, {x});
        CHECK_GRADCHECK([axis, keepdims](const Inputs& v) { return mean(v[0], axis, keepdims); }, {x});
        CHECK_GRADCHECK([axis, keepdims](const Inputs& v) { return max(v[0], axis, keepdims); }, {d});
      }
    }
  }
}

TEST_CASE("sum, mean and max: forward values and shapes") {
  // [[1, 5, 3],
  //  [4, 2, 6]]
  Tensor x = f64({2, 3}, {1, 5, 3, 4, 2, 6});
  check_values(sum(x), {}, {21});
  check_values(mean(x), {}, {3.5});
  check_values(max(x), {}, {6});
  check_values(sum(x, 0), {3}, {5, 7, 9});
  check_values(sum(x, 1, true), {2, 1}, {9, 12});
  check_values(sum(x, -1), {2}, {9, 12});
  check_values(mean(x, 0, true), {1, 3}, {2.5, 3.5, 4.5});
  check_values(mean(x, 1), {2}, {3, 4});
  check_values(max(x, 0), {3}, {4, 5, 6});
  check_values(max(x, 1, true), {2, 1}, {5, 6});
  check_values(max(x, -2, true), {1, 3}, {4, 5, 6});
}

TEST_CASE("max: the gradient goes to the first of tied maxima") {
  Tensor x = f64({2, 4}, {1, 3, 3, 2, 7, 7, 7, 0}).set_requires_grad();
  backward(sum(max(x, 1)));
  check_values(x.grad(), {2, 4}, {0, 1, 0, 0, 1, 0, 0, 0});
  Tensor y = f64({4}, {2, 5, 5, 1}).set_requires_grad();
  backward(max(y));
  check_values(y.grad(), {4}, {0, 1, 0, 0});
}

TEST_CASE("sum_to and broadcast_to") {
  Generator gen(8);
  const std::pair<Shape, Shape> cases[] = {
      // (large, small): sum_to(large) -> small, broadcast_to(small) -> large.
      {Shape{3, 4}, Shape{4}},          {Shape{3, 4}, Shape{1, 4}},    {Shape{3, 4}, Shape{3, 1}},
      {Shape{2, 3, 4}, Shape{3, 1}},    {Shape{2, 3, 4}, Shape{}},     {Shape{2, 3, 4}, Shape{1}},
      {Shape{2, 3, 4}, Shape{2, 1, 4}}, {Shape{5, 1}, Shape{1}},       {Shape{3, 4}, Shape{3, 4}},
      {Shape{2, 3, 2, 2}, Shape{3, 1, 2}}, {Shape{2, 3, 2, 2}, Shape{2, 1, 1, 1}},
  };
  for (const auto& c : cases) {
    INFO(c.first.str() << " <-> " << c.second.str());
    Shape large = c.first, small = c.second;
    CHECK(sum_to(normal(large, gen), small).shape() == small);
    CHECK(broadcast_to(normal(small, gen), large).shape() == large);
    CHECK_GRADCHECK([small](const Inputs& v) { return sum_to(v[0], small); }, {normal(large, gen)});
    CHECK_GRADCHECK([large](const Inputs& v) { return broadcast_to(v[0], large); }, {normal(small, gen)});
  }
}

TEST_CASE("sum_to and broadcast_to: forward values") {
  Tensor x = f64({2, 3}, {1, 2, 3, 4, 5, 6});
  check_values(sum_to(x, {3}), {3}, {5, 7, 9});
  check_values(sum_to(x, {1, 3}), {1, 3}, {5, 7, 9});
  check_values(sum_to(x, {2, 1}), {2, 1}, {6, 15});
  check_values(sum_to(x, {}), {}, {21});
  check_values(sum_to(x, {1}), {1}, {21});
  check_values(broadcast_to(f64({3}, {1, 2, 3}), {2, 3}), {2, 3}, {1, 2, 3, 1, 2, 3});
  check_values(broadcast_to(f64({2, 1}, {1, 2}), {2, 3}), {2, 3}, {1, 1, 1, 2, 2, 2});
  check_values(broadcast_to(Tensor::scalar(4, DType::f64), {2, 2}), {2, 2}, {4, 4, 4, 4});
  check_values(broadcast_to(f64({2, 1, 2}, {1, 2, 3, 4}), {2, 3, 2}), {2, 3, 2}, {1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4});
}

TEST_CASE("rank 5 and 6: broadcasting against an index-by-index oracle, reductions, first and second order") {
  Generator gen(81);
  // a [2, 1, 3, 1, 2, 2] + b [3, 2, 1, 2] -> [2, 1, 3, 2, 2, 2]: b is padded on the left to [1, 1, 3, 2, 1, 2].
  Tensor a = normal({2, 1, 3, 1, 2, 2}, gen), b = normal({3, 2, 1, 2}, gen);
  Tensor out = add(a, b);
  REQUIRE(out.shape() == Shape{2, 1, 3, 2, 2, 2});
  std::vector<double> expected;
  for (std::size_t i0 = 0; i0 < 2; ++i0)
    for (std::size_t i2 = 0; i2 < 3; ++i2)
      for (std::size_t i3 = 0; i3 < 2; ++i3)
        for (std::size_t i4 = 0; i4 < 2; ++i4)
          for (std::size_t i5 = 0; i5 < 2; ++i5) {
            expected.push_back(a.at(((i0 * 3 + i2) * 2 + i4) * 2 + i5) + b.at((i2 * 2 + i3) * 2 + i5));
          }
  CHECK(out.to_vector() == expected);
  CHECK(sum_to(out, b.shape()).shape() == b.shape());
  CHECK_GRADCHECK([](const Inputs& v) { return mul(v[0], v[1]); }, {a, b});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(mul(v[0], v[1]), v[1]); }, {a, b});
  // Reductions and softmax along an inner axis of a rank-5 tensor (a batch of image batches).
  Tensor x = normal({2, 2, 1, 3, 2}, gen);
  for (int axis : {0, 3, 4}) {
    INFO("axis " << axis);
    CHECK_GRADCHECK([axis](const Inputs& v) { return sum(v[0], axis, true); }, {x});
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return log_softmax(v[0], axis); }, {x});
  }
  CHECK(sum(x, 3, false).shape() == Shape{2, 2, 1, 2});
  CHECK(reshape(x, {3, 2, 2, 1, 1, 2}).shape() == Shape{3, 2, 2, 1, 1, 2});
  // A seventh axis is refused, naming the limit.
  Shape six{1, 1, 1, 1, 1, 1};
  CHECK_THROWS_WITH_AS(six.push_back(1), doctest::Contains("at most 6 dimensions"), std::invalid_argument);
}

TEST_CASE("matmul with all four transpose flags, rectangular shapes") {
  Generator gen(9);
  struct Dims {
    std::size_t m, k, n;
  };
  for (Dims d : {Dims{3, 5, 2}, Dims{1, 4, 6}, Dims{4, 1, 3}, Dims{6, 3, 1}, Dims{2, 7, 5}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        INFO("m " << d.m << ", k " << d.k << ", n " << d.n << ", transpose_a " << ta << ", transpose_b " << tb);
        Shape sa = ta ? Shape{d.k, d.m} : Shape{d.m, d.k};
        Shape sb = tb ? Shape{d.n, d.k} : Shape{d.k, d.n};
        Tensor a = normal(sa, gen), b = normal(sb, gen);
        CHECK(matmul(a, b, ta, tb).shape() == Shape{d.m, d.n});
        CHECK_GRADCHECK([ta, tb](const Inputs& v) { return matmul(v[0], v[1], ta, tb); }, {a, b});
      }
    }
  }
  // The same matrix on both sides: A A^T and A^T A.
  Tensor a = normal({3, 4}, gen);
  CHECK_GRADCHECK([](const Inputs& v) { return matmul(v[0], v[0], false, true); }, {a});
  CHECK_GRADCHECK([](const Inputs& v) { return matmul(v[0], v[0], true, false); }, {a});
}

TEST_CASE("matmul: forward values with every flag") {
  Tensor a = f64({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = f64({3, 2}, {7, 8, 9, 10, 11, 12});
  Tensor at = f64({3, 2}, {1, 4, 2, 5, 3, 6});
  Tensor bt = f64({2, 3}, {7, 9, 11, 8, 10, 12});
  // [1 2 3; 4 5 6] [7 8; 9 10; 11 12] = [58 64; 139 154].
  const std::vector<double> want{58, 64, 139, 154};
  check_values(matmul(a, b), {2, 2}, want);
  check_values(matmul(at, b, true, false), {2, 2}, want);
  check_values(matmul(a, bt, false, true), {2, 2}, want);
  check_values(matmul(at, bt, true, true), {2, 2}, want);
  // Empty inner dimension: zeros.
  check_values(matmul(Tensor::zeros({2, 0}, DType::f64), Tensor::zeros({0, 3}, DType::f64)), {2, 3}, {0, 0, 0, 0, 0, 0});
}

TEST_CASE("matmul and linear at every few-row count against a naive product, f32 and f64") {
  // Products with 2 to 16 rows take their own kernel (see autograd/blas.cpp): cover every row count,
  // widths with and without a remainder, and the bias (beta = 1) path of linear.
  Generator gen(33);
  for (DType dtype : {DType::f32, DType::f64}) {
    double tolerance = dtype == DType::f32 ? 1e-4 : 1e-12;
    for (std::size_t m = 1; m <= 17; ++m) {
      for (std::size_t n : {3, 64, 75, 300}) {
        for (std::size_t k : {1, 10, 97}) {
          Tensor a = Tensor::uniform({m, k}, gen, -1, 1, dtype), b = Tensor::uniform({k, n}, gen, -1, 1, dtype);
          Tensor bias = Tensor::uniform({n}, gen, -1, 1, dtype);
          std::vector<double> product = matmul(a, b).to_vector(), affine = linear(a, b, bias).to_vector();
          double worst = 0;
          for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t j = 0; j < n; ++j) {
              double expected = 0;
              for (std::size_t p = 0; p < k; ++p) expected += a.at(i * k + p) * b.at(p * n + j);
              worst = std::max(worst, std::abs(product[i * n + j] - expected));
              worst = std::max(worst, std::abs(affine[i * n + j] - expected - bias.at(j)));
            }
          }
          INFO(dtype_name(dtype) << " m " << m << " n " << n << " k " << k);
          CHECK(worst < tolerance);
        }
      }
    }
  }
}

TEST_CASE("linear: matmul plus bias in one node, first and second order") {
  Generator gen(21);
  Tensor x = normal({4, 5}, gen), w = normal({5, 3}, gen), b = normal({3}, gen);
  std::vector<double> fused = linear(x, w, b).to_vector(), composed = add(matmul(x, w), b).to_vector();
  for (std::size_t i = 0; i < fused.size(); ++i) CHECK(fused[i] == doctest::Approx(composed[i]).epsilon(1e-14));
  check_values(linear(f64({1, 2}, {1, 2}), f64({2, 2}, {1, 0, 0, 1}), Tensor()), {1, 2}, {1, 2});
  CHECK_GRADCHECK([](const Inputs& v) { return linear(v[0], v[1], v[2]); }, {x, w, b});
  CHECK_GRADCHECK([](const Inputs& v) { return linear(v[0], v[1], Tensor()); }, {x, w});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return tanh(linear(v[0], v[1], v[2])); }, {x, w, b});
  CHECK_THROWS_WITH_AS(linear(x, normal({4, 3}, gen), b), doctest::Contains("linear"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear(x, w, normal({4}, gen)), doctest::Contains("bias"), std::invalid_argument);
}

TEST_CASE("transpose, reshape and flatten") {
  Generator gen(10);
  CHECK_GRADCHECK([](const Inputs& v) { return transpose(v[0]); }, {normal({3, 5}, gen)});
  CHECK_GRADCHECK([](const Inputs& v) { return transpose(v[0]); }, {normal({1, 4}, gen)});
  CHECK_GRADCHECK([](const Inputs& v) { return matmul(transpose(v[0]), v[0]); }, {normal({3, 2}, gen)});
  CHECK_GRADCHECK([](const Inputs& v) { return reshape(v[0], {4, 6}); }, {normal({2, 3, 4}, gen)});
  CHECK_GRADCHECK([](const Inputs& v) { return reshape(v[0], {2, 2, 6}); }, {normal({6, 4}, gen)});
  CHECK_GRADCHECK([](const Inputs& v) { return reshape(v[0], {}); }, {normal({1, 1}, gen)});
  for (std::size_t start : {0, 1, 2, 3}) {
    INFO("start axis " << start);
    CHECK_GRADCHECK([start](const Inputs& v) { return flatten(v[0], start); }, {normal({2, 3, 2, 2}, gen)});
  }
  // Forward values.
  Tensor x = f64({2, 3}, {1, 2, 3, 4, 5, 6});
  check_values(transpose(x), {3, 2}, {1, 4, 2, 5, 3, 6});
  check_values(reshape(x, {3, 2}), {3, 2}, {1, 2, 3, 4, 5, 6});
  CHECK(reshape(x, {6}).shares_storage_with(x));
  check_values(flatten(f64({2, 1, 2, 1}, {1, 2, 3, 4})), {2, 2}, {1, 2, 3, 4});
  CHECK(flatten(Tensor::zeros({2, 3, 4, 5})).shape() == Shape{2, 60});
  CHECK(flatten(Tensor::zeros({2, 3, 4, 5}), 2).shape() == Shape{2, 3, 20});
  CHECK(flatten(Tensor::zeros({2, 3, 4, 5}), 0).shape() == Shape{120});
  // A transpose larger than its 32 x 32 tile.
  Tensor big = normal({37, 70}, gen);
  Tensor bigt = transpose(big);
  bool same = true;
  for (std::size_t r = 0; r < 37; ++r) {
    for (std::size_t c = 0; c < 70; ++c) same = same && bigt.at(c * 37 + r) == big.at(r * 70 + c);
  }
  CHECK(same);
}

TEST_CASE("cross_entropy, nll_loss and mse_loss with every reduction") {
  Generator gen(11);
  Tensor logits = normal({6, 5}, gen, 2.0);
  LabelVector labels = random_labels(6, 5, gen);
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none}) {
    INFO("reduction " << static_cast<int>(r));
    CHECK_GRADCHECK([labels, r](const Inputs& v) { return cross_entropy(v[0], labels, r); }, {logits});
    CHECK_GRADCHECK([labels, r](const Inputs& v) { return nll_loss(v[0], labels, r); }, {logits});
    CHECK_GRADCHECK([labels, r](const Inputs& v) { return nll_loss(log_softmax(v[0]), labels, r); }, {logits});
    CHECK_GRADCHECK([r](const Inputs& v) { return mse_loss(v[0], v[1], r); }, {normal({4, 3}, gen), normal({4, 3}, gen)});
  }
  // A batch of one, and one class (loss 0 whatever the logit, so the gradient is zero).
  CHECK_GRADCHECK([](const Inputs& v) { return cross_entropy(v[0], LabelVector{2}); }, {normal({1, 4}, gen)});
  GradcheckReport one_class =
      gradcheck([](const Inputs& v) { return cross_entropy(v[0], LabelVector{0, 0}); }, {normal({2, 1}, gen)},
                {.allow_all_zero = true});
  INFO(one_class.summary());
  CHECK(one_class.passed);
}

TEST_CASE("losses: forward values") {
  // Logits [[1, 2, 3], [1, 1, 1]], labels [2, 0]:
  //   loss_0 = log(e + e^2 + e^3) - 3, loss_1 = log 3.
  Tensor z = f64({2, 3}, {1, 2, 3, 1, 1, 1});
  LabelVector labels{2, 0};
  double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  double l1 = std::log(3.0);
  check_values(cross_entropy(z, labels, Reduction::none), {2}, {l0, l1});
  check_values(cross_entropy(z, labels, Reduction::sum), {}, {l0 + l1});
  check_values(cross_entropy(z, labels), {}, {(l0 + l1) / 2});
  check_values(nll_loss(log_softmax(z), labels, Reduction::none), {2}, {l0, l1});
  Tensor logp = f64({2, 3}, {-0.5, -1.0, -2.0, -3.0, -0.1, -4.0});
  check_values(nll_loss(logp, LabelVector{1, 2}), {}, {(1.0 + 4.0) / 2});
  check_values(nll_loss(logp, LabelVector{1, 2}, Reduction::sum), {}, {5.0});
  Tensor pred = f64({2, 2}, {1, 2, 3, 4}), target = f64({2, 2}, {0, 2, 5, 3});
  // Squared errors 1, 0, 4, 1.
  check_values(mse_loss(pred, target), {}, {1.5});
  check_values(mse_loss(pred, target, Reduction::sum), {}, {6});
  check_values(mse_loss(pred, target, Reduction::none), {2, 2}, {1, 0, 4, 1});
  check_values(one_hot(labels, 3), {2, 3}, {0, 0, 1, 1, 0, 0});
  CHECK(one_hot(labels, 3, DType::f64).dtype() == DType::f64);
}

TEST_CASE("elementwise and activations: forward values") {
  Tensor x = f64({4}, {-2, -0.5, 0, 1.5});
  Tensor p = f64({3}, {0.25, 1, 4});
  check_values(add(f64({2, 3}, {1, 2, 3, 4, 5, 6}), f64({3}, {10, 20, 30})), {2, 3}, {11, 22, 33, 14, 25, 36});
  check_values(sub(f64({2, 1}, {1, 2}), f64({3}, {1, 2, 3})), {2, 3}, {0, -1, -2, 1, 0, -1});
  check_values(mul(f64({2, 1}, {2, 3}), f64({1, 2}, {5, 7})), {2, 2}, {10, 14, 15, 21});
  check_values(div(f64({3}, {1, 2, 3}), Tensor::scalar(2, DType::f64)), {3}, {0.5, 1, 1.5});
  check_values(pow(p, 2.0), {3}, {0.0625, 1, 16});
  check_values(pow(p, 0.5), {3}, {0.5, 1, 2});
  check_values(pow(p, -1.0), {3}, {4, 1, 0.25});
  check_values(pow(x, 3.0), {4}, {-8, -0.125, 0, 3.375});
  check_values(exp(x), {4}, {std::exp(-2.0), std::exp(-0.5), 1, std::exp(1.5)});
  check_values(log(p), {3}, {std::log(0.25), 0, std::log(4.0)});
  check_values(sqrt(p), {3}, {0.5, 1, 2});
  check_values(abs(x), {4}, {2, 0.5, 0, 1.5});
  check_values(relu(x), {4}, {0, 0, 0, 1.5});
  check_values(step(x), {4}, {0, 0, 0, 1});
  check_values(sign(x), {4}, {-1, -1, 0, 1});
  check_values(sigmoid(x), {4}, {1 / (1 + std::exp(2.0)), 1 / (1 + std::exp(0.5)), 0.5, 1 / (1 + std::exp(-1.5))});
  check_values(tanh(x), {4}, {std::tanh(-2.0), std::tanh(-0.5), 0, std::tanh(1.5)});
  // softmax([1, 2, 3]) = e^k / (e + e^2 + e^3).
  double norm = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  Tensor row = f64({1, 3}, {1, 2, 3});
  check_values(softmax(row), {1, 3}, {std::exp(1.0) / norm, std::exp(2.0) / norm, std::exp(3.0) / norm});
  check_values(log_softmax(row), {1, 3}, {1 - std::log(norm), 2 - std::log(norm), 3 - std::log(norm)});
  // Along axis 0 of [[0, 0], [ln 3, 0]]: columns (1/4, 3/4) and (1/2, 1/2).
  check_values(softmax(f64({2, 2}, {0, 0, std::log(3.0), 0}), 0), {2, 2}, {0.25, 0.5, 0.75, 0.5});
}

// ================================================================ second order

TEST_CASE("second order: gradgradcheck on a representative set") {
  Generator gen(12);
  Tensor x = normal({3, 4}, gen), y = normal({3, 4}, gen), row = normal({4}, gen);
  Tensor p = positive({3, 4}, gen);
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(v[0], v[1]); }, {x, y});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(v[0], v[1]); }, {x, row});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(v[0], v[0]); }, {x});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return div(v[0], v[1]); }, {x, p});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return div(2.0, v[0]); }, {p});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return exp(v[0]); }, {x});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return log(v[0]); }, {p});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return sqrt(v[0]); }, {p});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return sigmoid(v[0]); }, {x});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return tanh(v[0]); }, {x});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return relu(v[0]) * v[0]; }, {off_zero({3, 4}, gen)});
  for (int axis : {0, 1, -1}) {
    INFO("axis " << axis);
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return softmax(v[0], axis); }, {x});
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return log_softmax(v[0], axis); }, {x});
  }
  CHECK_GRADGRADCHECK([](const Inputs& v) { return softmax(v[0], 1); }, {normal({2, 3, 4}, gen)});
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      INFO("transpose_a " << ta << ", transpose_b " << tb);
      Tensor a = normal(ta ? Shape{5, 3} : Shape{3, 5}, gen);
      Tensor b = normal(tb ? Shape{2, 5} : Shape{5, 2}, gen);
      CHECK_GRADGRADCHECK([ta, tb](const Inputs& v) { return matmul(v[0], v[1], ta, tb); }, {a, b});
      // Nonlinear in one matrix: A A^T-style products.
      CHECK_GRADGRADCHECK([ta, tb](const Inputs& v) { return matmul(v[0], v[0], ta, tb); }, {normal({3, 3}, gen)});
    }
  }
  Tensor logits = normal({5, 4}, gen);
  LabelVector labels = random_labels(5, 4, gen);
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none}) {
    INFO("reduction " << static_cast<int>(r));
    CHECK_GRADGRADCHECK([labels, r](const Inputs& v) { return cross_entropy(v[0], labels, r); }, {logits});
  }
  for (double e : {2.0, 3.0, -1.0, 0.5, 2.5}) {
    INFO("exponent " << e);
    CHECK_GRADGRADCHECK([e](const Inputs& v) { return pow(v[0], e); }, {p});
  }
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mse_loss(v[0], v[1]); }, {x, y});
  // sum_to and broadcast_to are linear: their second derivatives show through a product.
  CHECK_GRADGRADCHECK([](const Inputs& v) { return sum_to(mul(v[0], v[1]), {4}); }, {x, y});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return sum_to(mul(v[0], v[1]), {3, 1}); }, {x, y});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(broadcast_to(v[0], {3, 4}), v[1]); }, {row, y});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(broadcast_to(v[0], {2, 3, 4}), v[0]); },
                      {normal({3, 4}, gen)});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(sum(v[0], 1, true), max(v[0], 0, true)); },
                      {distinct({3, 4}, gen)});
}

// ================================================================ more activations, selection, logsumexp

namespace {

/// Every new activation with its parameters, named for messages.
struct UnaryOp {
  const char* name;
  std::function<Tensor(const Tensor&)> fn;
};

const std::vector<UnaryOp>& new_activations() {
  static const std::vector<UnaryOp> ops = {
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); }},
      {"leaky_relu 0.2", [](const Tensor& x) { return leaky_relu(x, 0.2); }},
      {"elu", [](const Tensor& x) { return elu(x); }},
      {"elu 0.5", [](const Tensor& x) { return elu(x, 0.5); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, true); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }},
      // Both branches: beta x > 1 is linear.
      {"softplus beta 2, threshold 1", [](const Tensor& x) { return softplus(x, 2.0, 1.0); }},
      {"silu", [](const Tensor& x) { return silu(x); }},
      {"log_sigmoid", [](const Tensor& x) { return log_sigmoid(x); }},
      {"hardtanh", [](const Tensor& x) { return hardtanh(x); }},
      {"hardtanh -0.5, 0.7", [](const Tensor& x) { return hardtanh(x, -0.5, 0.7); }},
      {"clamp -0.5, 0.7", [](const Tensor& x) { return clamp(x, -0.5, 0.7); }},
  };
  return ops;
}

}  // namespace

TEST_CASE("leaky_relu, elu, gelu, softplus, silu, log_sigmoid, hardtanh and clamp: first and second order") {
  Generator gen(91);
  for (const UnaryOp& op : new_activations()) {
    // Off the kinks at 0 (relu family) and, with probability ~1e-6, off the clamp bounds.
    for (const Shape& shape : {Shape{2, 3, 4}, Shape{1, 4}, Shape{3, 1}, Shape{}}) {
      INFO(std::string(op.name) << " on " << shape.str());
      Tensor x = mul(off_zero(shape, gen), 1.3);
      auto fn = op.fn;
      // A few elements may all fall outside clamp's bounds: a zero gradient is then right.
      const GradcheckOptions zero_ok{.allow_all_zero = true};
      CHECK_GRADCHECK([fn](const Inputs& v) { return fn(v[0]); }, {x}, zero_ok);
      // Times x, so that the piecewise-linear ones have a second derivative to check.
      CHECK_GRADGRADCHECK([fn](const Inputs& v) { return mul(fn(v[0]), v[0]); }, {x}, zero_ok);
      CHECK_GRADGRADCHECK([fn](const Inputs& v) { return fn(v[0]); }, {x}, zero_ok);
    }
  }
  // Broadcasting into an activation, and a chain.
  Tensor a = normal({3, 1}, gen), b = normal({4}, gen);
  CHECK_GRADCHECK([](const Inputs& v) { return gelu(add(v[0], v[1])); }, {a, b});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return silu(mul(v[0], v[1])); }, {a, b});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return log_sigmoid(elu(v[0])); }, {off_zero({2, 3}, gen)});
}

TEST_CASE("new activations: values against closed forms") {
  const double e = std::exp(1.0);
  Tensor x = f64({5}, {-2, -0.5, 0, 1, 3});
  check_values(leaky_relu(x), {5}, {-0.02, -0.005, 0, 1, 3});
  check_values(leaky_relu(x, 0.5), {5}, {-1, -0.25, 0, 1, 3});
  check_values(elu(x), {5}, {std::expm1(-2.0), std::expm1(-0.5), 0, 1, 3});
  check_values(elu(x, 2.0), {5}, {2 * std::expm1(-2.0), 2 * std::expm1(-0.5), 0, 1, 3});
  check_values(hardtanh(x), {5}, {-1, -0.5, 0, 1, 1});
  check_values(hardtanh(x, -0.25, 2.0), {5}, {-0.25, -0.25, 0, 1, 2});
  check_values(clamp(x, -1.0, 0.5), {5}, {-1, -0.5, 0, 0.5, 0.5});
  // gelu(1) = Phi(1); gelu(-1) = -(1 - Phi(1)); tanh form at 1 from its formula.
  check_values(gelu(f64({3}, {1, -1, 0})), {3}, {0.8413447460685429, -0.15865525393145707, 0}, 1e-14);
  const double u = std::sqrt(2 / std::numbers::pi) * (1 + 0.044715);
  check_values(gelu(f64({2}, {1, 0}), true), {2}, {0.5 * (1 + std::tanh(u)), 0});
  CHECK(gelu(f64({1}, {1}), true).item() == doctest::Approx(0.841192).epsilon(1e-6));
  check_values(silu(f64({2}, {1, -1})), {2}, {1 / (1 + 1 / e), -1 / (1 + e)});
  // softplus: log(1 + e^x) up to and including the threshold, x above it.
  check_values(softplus(f64({4}, {0, 1, 20, 20.5})), {4},
               {std::log(2.0), std::log1p(e), std::log1p(std::exp(20.0)), 20.5});
  CHECK(softplus(f64({1}, {20})).item() != 20.0);
  // beta 2, threshold 20: the switch is at x = 10.
  check_values(softplus(f64({3}, {1, 10, 10.5}), 2.0), {3},
               {std::log1p(std::exp(2.0)) / 2, std::log1p(std::exp(20.0)) / 2, 10.5});
  // log_sigmoid: stable at both ends.
  check_values(log_sigmoid(f64({5}, {-1000, -1, 0, 1, 1000})), {5},
               {-1000, -std::log1p(e), -std::log(2.0), -std::log1p(1 / e), 0});
  CHECK(all_finite(log_sigmoid(f64({2}, {-1000, 1000}))));
  CHECK(all_finite(softplus(f64({2}, {-1000, 1000}))));
  CHECK(all_finite(silu(f64({2}, {-1000, 1000}))));
  CHECK(all_finite(gelu(f64({2}, {-1000, 1000}))));
  // Gradients: gelu'(1) = Phi(1) + phi(1); silu'(0) = 1/2; log_sigmoid'(-1000) = 1; softplus'(0) = 1/2.
  Tensor one = f64({1}, {1}).set_requires_grad();
  backward(sum(gelu(one)));
  const double phi1 = std::exp(-0.5) / std::sqrt(2 * std::numbers::pi);
  CHECK(one.grad().item() == doctest::Approx(0.8413447460685429 + phi1).epsilon(1e-14));
  Tensor z = f64({3}, {0, -1000, 0}).set_requires_grad();
  backward(sum(add(add(silu(z), log_sigmoid(z)), softplus(z))));
  // 1/2 + 1/2 + 1/2 at 0; 0 + 1 + 0 at -1000.
  check_values(z.grad(), {3}, {1.5, 1, 1.5});
}

TEST_CASE("kinks and bounds: PyTorch's gradient at exactly the boundary") {
  // leaky_relu at 0: the negative slope. elu at 0: alpha.
  Tensor x = f64({3}, {-1, 0, 1}).set_requires_grad();
  backward(sum(leaky_relu(x, 0.1)));
  check_values(x.grad(), {3}, {0.1, 0.1, 1});
  x.zero_grad();
  backward(sum(elu(x, 0.5)));
  check_values(x.grad(), {3}, {0.5 * std::exp(-1.0), 0.5, 1});
  // hardtanh: 0 at both bounds (exclusive); clamp: 1 at both bounds (inclusive).
  Tensor h = f64({5}, {-2, -1, 0, 1, 2}).set_requires_grad();
  backward(sum(hardtanh(h)));
  check_values(h.grad(), {5}, {0, 0, 1, 0, 0});
  h.zero_grad();
  backward(sum(clamp(h, -1.0, 1.0)));
  check_values(h.grad(), {5}, {0, 1, 1, 1, 0});
  // clamp with lo == hi: the one point inside gets the gradient.
  h.zero_grad();
  backward(sum(clamp(h, 0.0, 0.0)));
  check_values(h.grad(), {5}, {0, 0, 1, 0, 0});
  // softplus at exactly the threshold is the log form, its slope sigmoid(20); above it, 1.
  Tensor s = f64({2}, {20, 21}).set_requires_grad();
  backward(sum(softplus(s)));
  check_values(s.grad(), {2}, {1 / (1 + std::exp(-20.0)), 1});
  // The differentiable backward (create_graph) agrees with the one above at every boundary.
  Tensor k = f64({5}, {-1, 0, 1, 20, 20.5}).set_requires_grad();
  Tensor g = grad({sum(add(add(leaky_relu(k, 0.1), hardtanh(k)), add(clamp(k, 0.0, 1.0), softplus(k))))}, {k}, {},
                  {.create_graph = true})[0];
  check_values(g, {5}, {0.1 + 0 + 0 + 1 / (1 + std::exp(1.0)), 0.1 + 1 + 1 + 0.5, 1 + 0 + 1 + 1 / (1 + std::exp(-1.0)),
                        1 + 0 + 0 + 1 / (1 + std::exp(-20.0)), 1 + 0 + 0 + 1});
  release_tape();
}

TEST_CASE("maximum, minimum and where: broadcasting, first and second order") {
  Generator gen(92);
  const std::pair<Shape, Shape> cases[] = {
      {Shape{3, 4}, Shape{3, 4}}, {Shape{3, 4}, Shape{4}},    {Shape{2, 1, 3}, Shape{4, 1}},
      {Shape{}, Shape{2, 3}},     {Shape{3, 1}, Shape{1}},    {Shape{2, 1, 3, 1}, Shape{4, 1, 5}},
  };
  for (const auto& c : cases) {
    INFO(c.first.str() << " and " << c.second.str());
    Tensor a = normal(c.first, gen), b = normal(c.second, gen);
    CHECK(maximum(a, b).shape() == broadcast_shapes(c.first, c.second, "maximum"));
    // A one-element side may lose everywhere: its zero gradient is then right.
    const GradcheckOptions zero_ok{.allow_all_zero = true};
    CHECK_GRADCHECK([](const Inputs& v) { return maximum(v[0], v[1]); }, {a, b}, zero_ok);
    CHECK_GRADCHECK([](const Inputs& v) { return minimum(v[0], v[1]); }, {a, b}, zero_ok);
    CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(maximum(v[0], v[1]), v[0]); }, {a, b}, zero_ok);
    CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(minimum(v[0], v[1]), v[1]); }, {a, b}, zero_ok);
    // A mask of the first shape choosing between the two.
    Tensor mask = step(normal(c.first, gen));
    CHECK_GRADCHECK([mask](const Inputs& v) { return where(mask, v[0], v[1]); }, {a, b}, zero_ok);
    CHECK_GRADGRADCHECK([mask](const Inputs& v) { return where(mask, mul(v[0], v[1]), exp(v[1])); }, {a, b},
                        zero_ok);
  }
  // The mask itself broadcast against both.
  Tensor a = normal({3, 4}, gen), b = normal({3, 4}, gen);
  Tensor row_mask = f64({4}, {1, 0, 0, 1});
  CHECK_GRADCHECK([row_mask](const Inputs& v) { return where(row_mask, v[0], v[1]); }, {a, b});
  CHECK_GRADCHECK([](const Inputs& v) { return where(f64({2, 1, 1}, {0, 1}), v[0], v[1]); }, {a, b});
}

TEST_CASE("maximum, minimum and where: values, ties split half and half, no gradient to the mask") {
  Tensor a = f64({2, 3}, {1, 5, 3, -2, 0, 7}), b = f64({3}, {2, 5, 1});
  check_values(maximum(a, b), {2, 3}, {2, 5, 3, 2, 5, 7});
  check_values(minimum(a, b), {2, 3}, {1, 5, 1, -2, 0, 1});
  // Ties (5 = 5): 1/2 to each side, as PyTorch; b's gradient summed over the broadcast rows.
  Tensor ta = a.clone().set_requires_grad(), tb = b.clone().set_requires_grad();
  backward(sum(maximum(ta, tb)));
  check_values(ta.grad(), {2, 3}, {0, 0.5, 1, 0, 0, 1});
  check_values(tb.grad(), {3}, {2, 1.5, 0});
  ta.zero_grad();
  tb.zero_grad();
  backward(sum(minimum(ta, tb)));
  check_values(ta.grad(), {2, 3}, {1, 0.5, 0, 1, 1, 0});
  check_values(tb.grad(), {3}, {0, 0.5, 2});
  // where: a nonzero condition selects a; an unselected infinity or NaN leaks into nothing.
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  Tensor cond = f64({3}, {1, 0, 2}).set_requires_grad();
  Tensor wa = f64({3}, {1, inf, 3}).set_requires_grad(), wb = f64({3}, {nan, 20, 30}).set_requires_grad();
  Tensor w = where(cond, wa, wb);
  check_values(w, {3}, {1, 20, 3});
  backward(sum(mul(w, w)));
  check_values(wa.grad(), {3}, {2, 0, 6});
  check_values(wb.grad(), {3}, {0, 40, 0});
  CHECK_FALSE(cond.grad().defined());
  // A float32 mask serves float64 operands.
  check_values(where(Tensor::from_data({2}, {0.0, 1.0}), f64({2}, {1, 2}), f64({2}, {3, 4})), {2}, {3, 2});
}

TEST_CASE("logsumexp: per axis, keepdims both ways, first and second order, the softmax gradient") {
  Generator gen(93);
  for (const Shape& shape : {Shape{5}, Shape{3, 4}, Shape{2, 3, 4}, Shape{3, 1}, Shape{1, 4}, Shape{2, 1, 3, 2}}) {
    for (int axis = -static_cast<int>(shape.rank()); axis < static_cast<int>(shape.rank()); ++axis) {
      for (bool keepdims : {false, true}) {
        INFO("shape " << shape.str() << ", axis " << axis << ", keepdims " << keepdims);
        Tensor x = normal(shape, gen, 2.0);
        CHECK_GRADCHECK([axis, keepdims](const Inputs& v) { return logsumexp(v[0], axis, keepdims); }, {x});
        // Over an axis of extent 1, logsumexp is the identity: no second derivative.
        CHECK_GRADGRADCHECK([axis, keepdims](const Inputs& v) { return logsumexp(v[0], axis, keepdims); }, {x},
                            {.allow_all_zero = x.shape()[axis < 0 ? axis + x.rank() : axis] == 1});
      }
    }
  }
  // Closed forms: values, and the gradient of sum(logsumexp) is softmax along the axis.
  Tensor x = f64({2, 3}, {1, 2, 3, 0, 0, 0});
  double norm = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  check_values(logsumexp(x, 1), {2}, {std::log(norm), std::log(3.0)});
  check_values(logsumexp(x, 0, true), {1, 3}, {std::log1p(std::exp(1.0)), std::log1p(std::exp(2.0)),
                                               std::log1p(std::exp(3.0))});
  Tensor xg = x.clone().set_requires_grad();
  backward(sum(logsumexp(xg, -1)));
  check_values(xg.grad(), {2, 3}, {std::exp(1.0) / norm, std::exp(2.0) / norm, std::exp(3.0) / norm, 1.0 / 3, 1.0 / 3,
                                   1.0 / 3});
  CHECK(max_abs_difference(xg.grad().to_vector(), softmax(x, 1).to_vector()) < 1e-14);
  // Stable at 1000; a row of -inf gives -inf (as PyTorch); +inf gives +inf.
  const double inf = std::numeric_limits<double>::infinity();
  check_values(logsumexp(f64({2, 2}, {1000, 1000, -1000, 0}), 1), {2}, {1000 + std::log(2.0), 0});
  std::vector<double> extremes = logsumexp(f64({3, 2}, {-inf, -inf, inf, 1, -inf, 2}), 1).to_vector();
  CHECK(extremes[0] == -inf);
  CHECK(extremes[1] == inf);
  CHECK(extremes[2] == 2.0);
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor big = Tensor::from_data({3}, {1000, -1000, 999}, dtype).set_requires_grad();
    Tensor y = logsumexp(big, 0);
    CHECK(y.item() == doctest::Approx(1000 + std::log1p(std::exp(-1.0))));
    backward(y);
    CHECK(all_finite(big.grad()));
  }
}

TEST_CASE("new ops: empty extents, and float32 close to float64") {
  Tensor empty = Tensor::zeros({0, 3}, DType::f64).set_requires_grad();
  for (const UnaryOp& op : new_activations()) {
    INFO(std::string(op.name));
    CHECK(op.fn(empty).shape() == Shape{0, 3});
  }
  CHECK(maximum(empty, f64({3}, {1, 2, 3})).shape() == Shape{0, 3});
  CHECK(where(Tensor::zeros({0, 1}), empty, f64({3}, {1, 2, 3})).shape() == Shape{0, 3});
  CHECK(logsumexp(empty, 0).shape() == Shape{3});
  CHECK(logsumexp(empty, 1).shape() == Shape{0});
  // Over an empty axis: log 0 = -inf, as PyTorch.
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(logsumexp(empty, 0).to_vector() == std::vector<double>{-inf, -inf, -inf});
  backward(sum(add(sum(gelu(empty)), sum(logsumexp(empty, 1)))));
  CHECK(empty.grad().shape() == Shape{0, 3});

  Generator gen(94);
  Tensor x64 = mul(normal({4, 6}, gen), 3.0), y64 = normal({6}, gen);
  Tensor x32 = x64.to(DType::f32), y32 = y64.to(DType::f32);
  auto worst = [](const Tensor& t32, const Tensor& t64) {
    std::vector<double> a = t32.to_vector(), b = t64.to_vector();
    double w = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) w = std::max(w, std::abs(a[i] - b[i]) / (1.0 + std::abs(b[i])));
    return w;
  };
  for (const UnaryOp& op : new_activations()) {
    INFO(std::string(op.name));
    CHECK(op.fn(x32).dtype() == DType::f32);
    CHECK(worst(op.fn(x32), op.fn(x64)) < 1e-6);
  }
  CHECK(worst(maximum(x32, y32), maximum(x64, y64)) < 1e-7);
  CHECK(worst(logsumexp(x32, 1), logsumexp(x64, 1)) < 1e-6);
}

TEST_CASE("new activations on a long vector: NaN kept in every lane, forward and backward") {
  const std::size_t n = 1003;  // not a multiple of any vector width
  for (DType dtype : {DType::f32, DType::f64}) {
    std::vector<double> values(n);
    for (std::size_t i = 0; i < n; ++i) values[i] = i % 13 == 0 ? std::nan("") : 0.5 * static_cast<double>(i % 9) - 2.0;
    for (const UnaryOp& op : new_activations()) {
      INFO(std::string(op.name) << " in " << dtype_name(dtype));
      Tensor x = Tensor::from_data(Shape{n}, std::span<const double>(values)).to(dtype).set_requires_grad();
      Tensor y = op.fn(x);
      backward(sum(y));
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i) {
        bool nan_in = std::isnan(values[i]);
        if (nan_in != std::isnan(y.at(i)) || nan_in != std::isnan(x.grad().at(i))) ++wrong;
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("new ops: errors name the op and the shapes") {
  Tensor a = Tensor::zeros({3, 4}, DType::f64), b = Tensor::zeros({5}, DType::f64);
  CHECK_OP_ERROR(maximum(a, b), "maximum", "[3, 4]", "[5]");
  CHECK_OP_ERROR(minimum(a, b), "minimum", "[3, 4]", "[5]");
  CHECK_OP_ERROR(where(Tensor::zeros({2}), a, a), "where", "[2]", "[3, 4]");
  CHECK_OP_ERROR(where(a, a, b), "where", "[3, 4]", "[5]");
  CHECK_OP_ERROR(where(a, a, Tensor::zeros({3, 4}, DType::f32)), "where", "f64[3, 4]", "f32[3, 4]");
  CHECK_OP_ERROR(clamp(a, 1.0, -1.0), "clamp", "[3, 4]");
  CHECK_OP_ERROR(clamp(a, std::nan(""), 1.0), "clamp", "[3, 4]");
  CHECK_OP_ERROR(hardtanh(a, 1.0, -1.0), "hardtanh", "[3, 4]");
  CHECK_OP_ERROR(softplus(a, 0.0), "softplus", "[3, 4]");
  CHECK_OP_ERROR(logsumexp(a, 2), "logsumexp", "[3, 4]");
  CHECK_OP_ERROR(leaky_relu(Tensor()), "leaky_relu", "leaky_relu");
  CHECK(tape_size() == 0);
}

// ================================================================ errors

TEST_CASE("errors name the op and the shapes") {
  Tensor a = Tensor::zeros({3, 4}, DType::f64);
  Tensor b = Tensor::zeros({5}, DType::f64);
  Tensor c = Tensor::zeros({2, 3}, DType::f64);
  Tensor d = Tensor::zeros({4, 5}, DType::f64);
  Tensor v = Tensor::zeros({3}, DType::f64);
  Tensor cube = Tensor::zeros({2, 3, 4}, DType::f64);
  CHECK_OP_ERROR(add(a, b), "add", "[3, 4]", "[5]");
  CHECK_OP_ERROR(sub(a, b), "sub", "[3, 4]", "[5]");
  CHECK_OP_ERROR(mul(a, c), "mul", "[3, 4]", "[2, 3]");
  CHECK_OP_ERROR(div(cube, c), "div", "[2, 3, 4]", "[2, 3]");
  CHECK_OP_ERROR(a + b, "add", "[3, 4]", "[5]");
  CHECK_OP_ERROR(matmul(c, d), "matmul", "[2, 3]", "[4, 5]");
  CHECK_OP_ERROR(matmul(c, c), "matmul", "[2, 3]");
  CHECK_OP_ERROR(matmul(a, d, true, false), "matmul", "[3, 4]", "[4, 5]");
  CHECK_OP_ERROR(matmul(cube, d), "matmul", "[2, 3, 4]");
  CHECK_OP_ERROR(matmul(v, a), "matmul", "[3]");
  CHECK_OP_ERROR(transpose(cube), "transpose", "[2, 3, 4]");
  CHECK_OP_ERROR(reshape(a, {5, 2}), "reshape", "[3, 4]", "[5, 2]");
  CHECK_OP_ERROR(flatten(a, 2), "flatten", "[3, 4]");
  CHECK_OP_ERROR(sum_to(a, {3}), "sum_to", "[3, 4]", "[3]");
  CHECK_OP_ERROR(sum_to(v, {3, 3}), "sum_to", "[3]", "[3, 3]");
  CHECK_OP_ERROR(broadcast_to(a, {4, 3}), "broadcast_to", "[3, 4]", "[4, 3]");
  CHECK_OP_ERROR(broadcast_to(a, {4}), "broadcast_to", "[3, 4]", "[4]");
  CHECK_OP_ERROR(mse_loss(a, Tensor::zeros({4, 3}, DType::f64)), "mse_loss", "[3, 4]", "[4, 3]");
  CHECK_OP_ERROR(cross_entropy(v, LabelVector{0, 1, 2}), "cross_entropy", "[3]");
  CHECK_OP_ERROR(cross_entropy(a, LabelVector{0, 1}), "cross_entropy", "[3, 4]");
  CHECK_OP_ERROR(nll_loss(cube, LabelVector{0, 1}), "nll_loss", "[2, 3, 4]");
  CHECK_OP_ERROR(nll_loss(a, LabelVector{0}), "nll_loss", "[3, 4]");
  // A failed op records nothing.
  CHECK(tape_size() == 0);
}

TEST_CASE("an axis out of range names the op and the tensor's shape") {
  Tensor a = Tensor::zeros({3, 4}, DType::f64);
  CHECK_OP_ERROR(sum(a, 2), "sum", "[3, 4]");
  CHECK_OP_ERROR(mean(a, -3), "mean", "[3, 4]");
  CHECK_OP_ERROR(max(a, 5, true), "max", "[3, 4]");
  CHECK_OP_ERROR(softmax(a, 2), "softmax", "[3, 4]");
  CHECK_OP_ERROR(log_softmax(a, -3), "log_softmax", "[3, 4]");
  CHECK_OP_ERROR(sum(Tensor::scalar(1, DType::f64), 0), "sum", "[]");
}

TEST_CASE("bad labels for cross_entropy and nll_loss") {
  Tensor z = Tensor::zeros({2, 3}, DType::f64);
  CHECK_OP_ERROR(cross_entropy(z, LabelVector{0, 3}), "cross_entropy", "3");
  CHECK_OP_ERROR(cross_entropy(z, LabelVector{-1, 0}), "cross_entropy", "-1");
  CHECK_OP_ERROR(cross_entropy(z, LabelVector{0, 1, 2}), "cross_entropy", "[2, 3]");
  CHECK_OP_ERROR(cross_entropy(z, LabelVector{}), "cross_entropy", "[2, 3]");
  CHECK_OP_ERROR(cross_entropy(Tensor::zeros({0, 3}, DType::f64), LabelVector{}), "cross_entropy", "[0, 3]");
  CHECK_OP_ERROR(nll_loss(z, LabelVector{1, 7}), "nll_loss", "7");
  CHECK_OP_ERROR(nll_loss(z, LabelVector{-2, 0}), "nll_loss", "-2");
  CHECK_OP_ERROR(one_hot(LabelVector{0, 4}, 3), "one_hot", "4");
}

TEST_CASE("float32 and float64 do not mix") {
  Tensor a32 = Tensor::zeros({2, 3}, DType::f32);
  Tensor a64 = Tensor::zeros({2, 3}, DType::f64);
  Tensor b32 = Tensor::zeros({3, 2}, DType::f32);
  CHECK_OP_ERROR(add(a32, a64), "add", "f32[2, 3]", "f64[2, 3]");
  CHECK_OP_ERROR(sub(a64, a32), "sub", "f64[2, 3]", "f32[2, 3]");
  CHECK_OP_ERROR(mul(a32, a64), "mul", "f32[2, 3]", "f64[2, 3]");
  CHECK_OP_ERROR(div(a32, a64), "div", "f32[2, 3]", "f64[2, 3]");
  CHECK_OP_ERROR(matmul(a64, b32), "matmul", "f64[2, 3]", "f32[3, 2]");
  CHECK_OP_ERROR(mse_loss(a32, a64), "mse_loss", "f32[2, 3]", "f64[2, 3]");
  // Scalars take the tensor's dtype.
  CHECK(add(a32, 1.0).dtype() == DType::f32);
  CHECK((2.0 * a64).dtype() == DType::f64);
}

// ================================================================ float32 against float64

TEST_CASE("float32 results are close to float64") {
  Generator gen(13);
  Tensor x64 = normal({4, 6}, gen);
  Tensor p64 = positive({4, 6}, gen);
  Tensor x32 = x64.to(DType::f32), p32 = p64.to(DType::f32);
  auto close = [](const Tensor& t32, const Tensor& t64, double rel) {
    CHECK(t32.dtype() == DType::f32);
    CHECK(t64.dtype() == DType::f64);
    std::vector<double> a = t32.to_vector(), b = t64.to_vector();
    REQUIRE(a.size() == b.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (1.0 + std::abs(b[i])));
    INFO("worst scaled difference " << worst);
    CHECK(worst < rel);
  };
  close(exp(x32), exp(x64), 1e-6);
  close(log(p32), log(p64), 1e-6);
  close(sqrt(p32), sqrt(p64), 1e-6);
  close(pow(p32, 1.7), pow(p64, 1.7), 1e-6);
  close(sigmoid(x32), sigmoid(x64), 1e-6);
  close(tanh(x32), tanh(x64), 1e-6);
  close(softmax(x32, 0), softmax(x64, 0), 1e-6);
  close(log_softmax(x32), log_softmax(x64), 1e-6);
  close(sum(x32, 1), sum(x64, 1), 1e-6);
  close(mean(x32), mean(x64), 1e-6);
  close(max(x32, 0), max(x64, 0), 1e-7);
  close(matmul(x32, p32, false, true), matmul(x64, p64, false, true), 1e-5);
  close(div(x32, p32), div(x64, p64), 1e-6);

  // A small network's loss and gradients.
  Tensor w64 = normal({6, 5}, gen, 0.5), b64 = normal({5}, gen, 0.1);
  LabelVector labels = random_labels(4, 5, gen);
  auto run = [&](DType dtype) {
    Tensor x = x64.to(dtype), w = w64.to(dtype).set_requires_grad(), b = b64.to(dtype).set_requires_grad();
    Tensor hidden = tanh(x);
    Tensor loss = add(cross_entropy(add(matmul(hidden, w), b), labels), mul(mean(pow(w, 2.0)), 0.01));
    backward(loss);
    return std::vector<Tensor>{loss, w.grad(), b.grad()};
  };
  std::vector<Tensor> single = run(DType::f32), twice = run(DType::f64);
  close(single[0], twice[0], 1e-6);
  close(single[1], twice[1], 1e-5);
  close(single[2], twice[2], 1e-5);
}

// ================================================================ numerical stability

TEST_CASE("cross_entropy is stable for logits like 1000 and -1000") {
  // Row 0: the label's logit dominates: loss 0, gradient 0.
  // Row 1: loss 1000 - (-1000) = 2000; softmax (0, 1, 0).
  // Row 2: two tied at 1000, label on the third: loss 2000 + log 2; softmax (1/2, 1/2, 0).
  LabelVector labels{0, 0, 2};
  for (DType dtype : {DType::f64, DType::f32}) {
    INFO("dtype " << dtype_name(dtype));
    Tensor z = Tensor::from_data({3, 3}, {1000, -1000, 0, -1000, 1000, 0, 1000, 1000, -1000}, dtype)
                   .set_requires_grad();
    Tensor losses = cross_entropy(z, labels, Reduction::none);
    CHECK(all_finite(losses));
    CHECK(losses.at(0) == doctest::Approx(0.0));
    CHECK(losses.at(1) == doctest::Approx(2000.0));
    CHECK(losses.at(2) == doctest::Approx(2000.0 + std::log(2.0)));
    Tensor loss = cross_entropy(z, labels);
    CHECK(loss.item() == doctest::Approx((4000.0 + std::log(2.0)) / 3));
    backward(loss);
    CHECK(all_finite(z.grad()));
    const std::vector<double> want{0, 0, 0, -1.0 / 3, 1.0 / 3, 0, 0.5 / 3, 0.5 / 3, -1.0 / 3};
    // Float32 carries logits of 1000 to about 3e-5 only, so the softmax is that accurate there.
    double tolerance = dtype == DType::f64 ? 1e-12 : 2e-5;
    CHECK(max_abs_difference(z.grad().to_vector(), want) < tolerance);
    // The same through log_softmax and nll_loss, and the softmax itself.
    z.zero_grad();
    Tensor composed = nll_loss(log_softmax(z), labels);
    CHECK(composed.item() == doctest::Approx(loss.item()));
    backward(composed);
    CHECK(max_abs_difference(z.grad().to_vector(), want) < tolerance);
    CHECK(all_finite(softmax(z)));
    CHECK(all_finite(sigmoid(z)));
    // Second order stays finite too.
    std::vector<Tensor> g = grad({cross_entropy(z, labels)}, {z}, {}, {.create_graph = true});
    CHECK(max_abs_difference(g[0].to_vector(), want) < tolerance);
    Tensor hv = grad({sum(mul(g[0], g[0]))}, {z})[0];
    CHECK(all_finite(hv));
    CHECK(tape_size() == 0);
  }
}

TEST_CASE("sigmoid and tanh saturate without NaN") {
  Tensor x = f64({4}, {-1000, -40, 40, 1000}).set_requires_grad();
  Tensor y = add(sigmoid(x), tanh(x));
  CHECK(all_finite(y));
  check_values(sigmoid(x.detach()), {4}, {0, 1 / (1 + std::exp(40.0)), 1 / (1 + std::exp(-40.0)), 1}, 1e-9);
  backward(sum(y));
  CHECK(all_finite(x.grad()));
  CHECK(x.grad().at(0) == 0.0);
  CHECK(x.grad().at(3) == 0.0);
}

TEST_CASE("ops whose inputs need no gradient record nothing") {
  Tensor a = Tensor::ones({2, 2}, DType::f64), b = Tensor::ones({2, 2}, DType::f64);
  Tensor out = cross_entropy(softmax(matmul(add(a, b), b)), LabelVector{0, 1}) + sum(exp(a));
  CHECK_FALSE(out.requires_grad());
  CHECK(tape_size() == 0);
  // Only the input that needs it gets a gradient.
  Tensor w = Tensor::ones({2, 2}, DType::f64).set_requires_grad();
  backward(sum(matmul(a, w)));
  CHECK(w.grad().defined());
  CHECK_FALSE(a.grad().defined());
}

// ================================================================ NaN propagates through every op

namespace {

using op_checks::GradAtNaN;
using op_checks::NanCase;

/// Every op of ops.hpp with an input of `shape` that is positive except x[1] = NaN; the other operands
/// are finite and positive.
std::vector<NanCase> nan_cases(DType dtype) {
  Generator gen(71);
  auto other = [&](const Shape& shape) { return positive(shape, gen).to(dtype); };
  const Shape m{2, 3};
  Tensor y = other(m), row = other(Shape{3}), w = other(Shape{3, 2}), v = other(Shape{2, 2}), b = other(Shape{2});
  Tensor kernel = other(Shape{1, 1, 2, 2});
  const LabelVector labels{0, 2};
  using G = GradAtNaN;
  return {
      {"add", m, [=](const Tensor& x) { return add(x, y); }, 1, G::finite},
      {"add (broadcast)", m, [=](const Tensor& x) { return add(x, row); }, 1, G::finite},
      {"sub", m, [=](const Tensor& x) { return sub(y, x); }, 1, G::finite},
      {"mul", m, [=](const Tensor& x) { return mul(x, y); }, 1, G::finite},
      {"mul (x * x)", m, [](const Tensor& x) { return mul(x, x); }, 1, G::nan},
      {"div (x / y)", m, [=](const Tensor& x) { return div(x, y); }, 1, G::finite},
      {"div (y / x)", m, [=](const Tensor& x) { return div(y, x); }, 1, G::nan},
      {"add scalar", m, [](const Tensor& x) { return add(x, 2.0); }, 1, G::finite},
      {"sub scalar", m, [](const Tensor& x) { return sub(2.0, x); }, 1, G::finite},
      {"mul scalar", m, [](const Tensor& x) { return mul(x, 3.0); }, 1, G::finite},
      {"div scalar", m, [](const Tensor& x) { return div(x, 3.0); }, 1, G::finite},
      {"rdiv scalar", m, [](const Tensor& x) { return div(3.0, x); }, 1, G::nan},
      {"neg", m, [](const Tensor& x) { return neg(x); }, 1, G::finite},
      {"pow 2", m, [](const Tensor& x) { return pow(x, 2.0); }, 1, G::nan},
      {"pow 0.5", m, [](const Tensor& x) { return pow(x, 0.5); }, 1, G::nan},
      {"exp", m, [](const Tensor& x) { return exp(x); }, 1, G::nan},
      {"log", m, [](const Tensor& x) { return log(x); }, 1, G::nan},
      {"sqrt", m, [](const Tensor& x) { return sqrt(x); }, 1, G::nan},
      {"abs", m, [](const Tensor& x) { return abs(x); }, 1, G::nan},
      {"step", m, [](const Tensor& x) { return step(x); }, 1, G::none},
      {"sign", m, [](const Tensor& x) { return sign(x); }, 1, G::none},
      {"relu", m, [](const Tensor& x) { return relu(x); }, 1, G::one},
      {"sigmoid", m, [](const Tensor& x) { return sigmoid(x); }, 1, G::nan},
      {"tanh", m, [](const Tensor& x) { return tanh(x); }, 1, G::nan},
      {"softmax", m, [](const Tensor& x) { return softmax(x); }, 0, G::nan},
      {"softmax (axis 0)", m, [](const Tensor& x) { return softmax(x, 0); }, 4, G::nan},
      {"log_softmax", m, [](const Tensor& x) { return log_softmax(x); }, 2, G::nan},
      {"sum", m, [](const Tensor& x) { return sum(x); }, 0, G::finite},
      {"sum (axis)", m, [](const Tensor& x) { return sum(x, 1); }, 0, G::finite},
      {"mean", m, [](const Tensor& x) { return mean(x); }, 0, G::finite},
      {"mean (axis)", m, [](const Tensor& x) { return mean(x, 0); }, 1, G::finite},
      {"max", m, [](const Tensor& x) { return max(x); }, 0, G::one},
      {"max (axis 1)", m, [](const Tensor& x) { return max(x, 1); }, 0, G::one},
      {"max (axis 0)", m, [](const Tensor& x) { return max(x, 0, true); }, 1, G::one},
      {"sum_to", m, [](const Tensor& x) { return sum_to(x, Shape{3}); }, 1, G::finite},
      {"broadcast_to", m, [](const Tensor& x) { return broadcast_to(x, Shape{2, 2, 3}); }, 7, G::finite},
      {"matmul (left)", m, [=](const Tensor& x) { return matmul(x, w); }, 1, G::finite},
      {"matmul (right)", m, [=](const Tensor& x) { return matmul(v, x); }, 4, G::finite},
      {"matmul (x x^T)", m, [](const Tensor& x) { return matmul(x, x, false, true); }, 1, G::nan},
      {"linear", m, [=](const Tensor& x) { return linear(x, w, b); }, 0, G::finite},
      {"transpose", m, [](const Tensor& x) { return transpose(x); }, 2, G::finite},
      {"reshape", m, [](const Tensor& x) { return reshape(x, Shape{3, 2}); }, 1, G::finite},
      {"flatten", Shape{1, 2, 3}, [](const Tensor& x) { return flatten(x); }, 1, G::finite},
      {"cross_entropy", m, [=](const Tensor& x) { return cross_entropy(x, labels); }, 0, G::nan},
      {"cross_entropy (none)", m, [=](const Tensor& x) { return cross_entropy(x, labels, Reduction::none); }, 0,
       G::nan},
      {"nll_loss", m, [=](const Tensor& x) { return nll_loss(x, labels); }, 0, G::finite},
      {"mse_loss", m, [=](const Tensor& x) { return mse_loss(x, y); }, 0, G::nan},
      {"conv2d", Shape{1, 1, 3, 3}, [=](const Tensor& x) { return conv2d(x, kernel, Tensor()); }, 0, G::finite},
      {"conv2d (padded)", Shape{1, 1, 3, 3}, [=](const Tensor& x) { return conv2d(x, kernel, Tensor(), 2, 1); }, 1,
       G::finite},
      {"conv2d (x as kernel)", Shape{1, 1, 2, 2},
       [=](const Tensor& x) { return conv2d(x, x, Tensor()); }, 0, G::nan},
      {"max_pool2d", Shape{1, 1, 2, 4}, [](const Tensor& x) { return max_pool2d(x, 2); }, 0, G::one},
      {"max_pool2d (kernel 3)", Shape{1, 1, 3, 3}, [](const Tensor& x) { return max_pool2d(x, 3); }, 0, G::one},
      {"leaky_relu", m, [](const Tensor& x) { return leaky_relu(x); }, 1, G::nan},
      {"elu", m, [](const Tensor& x) { return elu(x); }, 1, G::nan},
      {"gelu", m, [](const Tensor& x) { return gelu(x); }, 1, G::nan},
      {"gelu (tanh)", m, [](const Tensor& x) { return gelu(x, true); }, 1, G::nan},
      {"softplus", m, [](const Tensor& x) { return softplus(x); }, 1, G::nan},
      {"silu", m, [](const Tensor& x) { return silu(x); }, 1, G::nan},
      {"log_sigmoid", m, [](const Tensor& x) { return log_sigmoid(x); }, 1, G::nan},
      {"hardtanh", m, [](const Tensor& x) { return hardtanh(x); }, 1, G::nan},
      {"clamp", m, [](const Tensor& x) { return clamp(x, 0.0, 1.0); }, 1, G::nan},
      {"maximum (x, y)", m, [=](const Tensor& x) { return maximum(x, y); }, 1, G::one},
      {"maximum (y, x)", m, [=](const Tensor& x) { return maximum(y, x); }, 1, G::one},
      {"minimum (broadcast)", m, [=](const Tensor& x) { return minimum(row, x); }, 1, G::one},
      {"where (selected)", m, [=](const Tensor& x) { return where(Tensor::ones_like(x), x, y); }, 1, G::one},
      {"logsumexp", m, [](const Tensor& x) { return logsumexp(x, 1); }, 0, G::nan},
      {"logsumexp (axis 0, keepdims)", m, [](const Tensor& x) { return logsumexp(x, 0, true); }, 1, G::nan},
  };
}

}  // namespace

TEST_CASE("NaN propagates through every op, forward and backward, float32 and float64") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const NanCase& c : nan_cases(dtype)) {
      Generator gen(73);
      op_checks::check_nan_case(c, positive(c.shape, gen).to(dtype));
    }
  }
}

TEST_CASE("relu keeps NaN as PyTorch does: relu([-1, NaN, 1]) = [0, NaN, 1], gradient [0, 1, 1]") {
  // PyTorch: relu's forward is threshold (x <= 0 ? 0 : x) and its backward threshold_backward
  // (x <= 0 ? 0 : g); NaN <= 0 is false in both, so NaN stays NaN and its gradient passes through.
  for (DType dtype : {DType::f64, DType::f32}) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor x = Tensor::from_data(Shape{3}, {-1.0, nan, 1.0}, dtype).set_requires_grad();
    Tensor y = relu(x);
    CHECK(y.at(0) == 0.0);
    CHECK(std::isnan(y.at(1)));
    CHECK(y.at(2) == 1.0);
    backward(sum(y));
    CHECK(x.grad().at(0) == 0.0);
    CHECK(x.grad().at(1) == 1.0);
    CHECK(x.grad().at(2) == 1.0);
    // The differentiable backward (create_graph) gives the same gradient as the fused one.
    Tensor z = Tensor::from_data(Shape{3}, {-1.0, nan, 1.0}, dtype).set_requires_grad();
    Tensor g = grad({sum(relu(z))}, {z}, {}, {.create_graph = true})[0];
    CHECK(g.to_vector()[0] == 0.0);
    CHECK(g.to_vector()[1] == 1.0);
    CHECK(g.to_vector()[2] == 1.0);
    release_tape();
  }
}

TEST_CASE("relu on a long vector: NaN kept in every lane of the vectorised loop, values exact") {
  const std::size_t n = 1003;  // not a multiple of any vector width
  std::vector<float> values(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = static_cast<float>(i % 7) - 3.0F;
  for (std::size_t i = 0; i < n; i += 13) values[i] = std::numeric_limits<float>::quiet_NaN();
  Tensor y = relu(Tensor::from_data(Shape{n}, std::span<const float>(values)));
  for (std::size_t i = 0; i < n; ++i) {
    INFO("element " << i);
    if (std::isnan(values[i])) {
      CHECK(std::isnan(y.at(i)));
    } else {
      CHECK(y.at(i) == std::max(0.0, static_cast<double>(values[i])));
    }
  }
}

TEST_CASE("step and sign keep NaN; abs's gradient at NaN is NaN") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = f64(Shape{4}, {-2.0, 0.0, nan, 3.0});
  std::vector<double> s = step(x).to_vector(), g = sign(x).to_vector();
  CHECK(s[0] == 0.0);
  CHECK(s[1] == 0.0);
  CHECK(std::isnan(s[2]));
  CHECK(s[3] == 1.0);
  CHECK(g[0] == -1.0);
  CHECK(g[1] == 0.0);
  CHECK(std::isnan(g[2]));
  CHECK(g[3] == 1.0);
}

// ================================================================ sizes that overflow

TEST_CASE("shapes whose element or byte count overflows are refused at creation, naming the op and the shape") {
  const std::size_t two32 = std::size_t{1} << 32, two62 = std::size_t{1} << 62;
  CHECK_OP_ERROR(Tensor::zeros(Shape{two32, two32}), "zeros", "[4294967296, 4294967296]");
  CHECK_OP_ERROR(Tensor::zeros(Shape{two62, 4}), "zeros", "[4611686018427387904, 4]");
  CHECK_OP_ERROR(Tensor::ones(Shape{two62}, DType::f64), "ones", "f64[4611686018427387904]", "bytes");
  CHECK_OP_ERROR(Tensor::empty(Shape{two62, 2}), "empty", "[4611686018427387904, 2]");
  CHECK_OP_ERROR(Tensor::full(Shape{two32, two32, 2}, 1.0), "full", "[4294967296, 4294967296, 2]");
  // 3 x 0xAAAAAAAAAAAAAAAB wraps to 1: refused at creation, so nothing (transpose) can read past it.
  CHECK_OP_ERROR(Tensor::zeros(Shape{3, 0xAAAAAAAAAAAAAAABull}), "zeros", "[3, 12297829382473034411]");
  CHECK_OP_ERROR(Tensor::from_data(Shape{3, 0xAAAAAAAAAAAAAAABull}, {1.0}), "from_data", "more than 2^64");
  Generator gen(1);
  CHECK_OP_ERROR(Tensor::randn(Shape{two32, two32}, gen), "randn", "[4294967296, 4294967296]");
  CHECK_THROWS_WITH_AS((void)Shape({two32, two32}).numel(), doctest::Contains("[4294967296, 4294967296]"),
                       std::invalid_argument);
  CHECK_FALSE(Shape({two32, two32}).checked_numel().has_value());
  CHECK(Shape({two32, 0, two32}).checked_numel() == 0);
}

TEST_CASE("ops refuse output shapes that overflow, naming the op") {
  const std::size_t two40 = std::size_t{1} << 40, two32 = std::size_t{1} << 32;
  Tensor one = Tensor::ones(Shape{1});
  CHECK_OP_ERROR(reshape(one, Shape{3, 0xAAAAAAAAAAAAAAABull}), "reshape", "[3, 12297829382473034411]");
  CHECK_OP_ERROR(broadcast_to(one, Shape{two32, two32}), "broadcast_to", "[4294967296, 4294967296]");
  // Empty inputs, an output of 2^80 elements.
  CHECK_OP_ERROR(matmul(Tensor::zeros(Shape{two40, 0}), Tensor::zeros(Shape{0, two40})), "matmul",
                 "[1099511627776, 1099511627776]");
  const LabelVector labels{0, 1};
  CHECK_OP_ERROR(one_hot(labels, std::size_t{1} << 63), "one_hot", "[2, 9223372036854775808]");
}

TEST_CASE("memory that cannot be had is an AllocationError naming the op, the shape and the bytes") {
  // 2^62 bytes: no address space holds it (and the sanitizers' allocator returns null, see test_main.cpp).
  const std::size_t two60 = std::size_t{1} << 60;
  try {
    (void)Tensor::zeros(Shape{two60});
    FAIL("allocating 2^62 bytes succeeded");
  } catch (const AllocationError& e) {
    std::string message = e.what();
    INFO(message);
    CHECK(message.find("zeros: cannot allocate f32[1152921504606846976]") != std::string::npos);
    CHECK(message.find("4 EiB (4611686018427387904 bytes)") != std::string::npos);
    CHECK(message.find("out of memory") != std::string::npos);
  }
  CHECK_THROWS_AS(Tensor::zeros(Shape{two60}), std::bad_alloc);  // and it is a std::bad_alloc
}

// ---------------------------------------------------------------- the products under linear and matmul

namespace {

/// C = alpha op(A) op(B) + beta C by the definition, in long double.
template <class T>
std::vector<T> reference_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, T alpha,
                              const std::vector<T>& a, const std::vector<T>& b, T beta, std::vector<T> c) {
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      long double s = 0;
      for (std::size_t p = 0; p < k; ++p) {
        s += static_cast<long double>(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      }
      c[i * n + j] = static_cast<T>(alpha * s + (beta == T(0) ? 0.0L : beta * static_cast<long double>(c[i * n + j])));
    }
  }
  return c;
}

template <class T>
void check_gemm_shapes() {
  Generator gen(7);
  auto random = [&](std::size_t count) {
    std::vector<T> v(count);
    for (T& x : v) x = static_cast<T>(gen.uniform01() - 0.5);
    return v;
  };
  // Batch 1 and small batches (the library's own kernels), wide and narrow sides, then OpenBLAS's sizes.
  const std::size_t rows[] = {1, 2, 7, 16, 17, 40};
  const std::size_t sides[] = {1, 5, 33, 300};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (std::size_t m : rows) {
        for (std::size_t n : sides) {
          for (std::size_t k : sides) {
            for (T beta : {T(0), T(0.5)}) {
              std::vector<T> a = random(m * k), b = random(k * n), c = random(m * n);
              if (beta == T(0)) c[0] = std::numeric_limits<T>::quiet_NaN();  // overwritten, not scaled
              std::vector<T> want = reference_gemm(ta, tb, m, n, k, T(1.5), a, b, beta, c);
              detail::gemm(ta, tb, m, n, k, T(1.5), a.data(), ta ? m : k, b.data(), tb ? k : n, beta, c.data(), n);
              const double tolerance = (std::is_same_v<T, float> ? 1e-5 : 1e-13) * static_cast<double>(k);
              for (std::size_t i = 0; i < c.size(); ++i) {
                INFO("ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n << " k=" << k << " beta=" << beta << " i=" << i);
                REQUIRE(std::abs(static_cast<double>(c[i]) - static_cast<double>(want[i])) <= tolerance);
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("gemm equals its definition for every transpose, batch 1 and small batches included") {
  check_gemm_shapes<float>();
  check_gemm_shapes<double>();
}
