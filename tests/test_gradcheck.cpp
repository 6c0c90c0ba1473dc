// The gradient checker itself: it passes on correct ops, fails on a deliberately wrong backward (so it
// cannot pass vacuously), calls all-zero gradients vacuous, and its three difference schemes have the
// errors their orders predict. The same for the second-order check, and for the element-by-element
// check (gradcheck_elements): exact quotients, a wrong gradient found, gradcheck's numbers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

using namespace ag;

namespace {

using Inputs = std::vector<Tensor>;

Tensor normal(const Shape& shape, Generator& gen) { return Tensor::randn(shape, gen, 0.0, 1.0, DType::f64); }

Tensor positive(const Shape& shape, Generator& gen) { return Tensor::uniform(shape, gen, 0.5, 2.0, DType::f64); }

/// x^3 with a hand-written backward that returns `factor` times the true derivative 3 x^2.
/// The forward runs on a detached copy, so only this node is recorded.
Tensor cube_with_scaled_gradient(const Tensor& x, double factor) {
  Tensor out = pow(x.detach(), 3.0);
  return record("cube_with_scaled_gradient", out, {x}, [x, factor](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, mul(pow(x, 2.0), 3.0 * factor))};
  });
}

/// a * b with the gradient of b negated (the gradient of a is right).
Tensor product_with_wrong_sign(const Tensor& a, const Tensor& b) {
  Tensor out = mul(a.detach(), b.detach());
  return record("product_with_wrong_sign", out, {a, b}, [a, b](const Tensor& g, NeedsGrad needs) {
    return std::vector<Tensor>{needs[0] ? mul(g, b) : Tensor(), needs[1] ? neg(mul(g, a)) : Tensor()};
  });
}

/// x^3 whose backward has the right value 3 x^2 but is written as 3 * detach(x) * x: differentiating
/// it again gives 3 x instead of 6 x.
Tensor cube_with_half_second_derivative(const Tensor& x) {
  Tensor out = pow(x.detach(), 3.0);
  return record("cube_with_half_second_derivative", out, {x}, [x](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(g, mul(mul(x.detach(), x), 3.0))};
  });
}

/// Central error at step h of a smooth function, per scheme, for the scaling tests.
InputReport errors_at(double h) {
  Generator gen(5);
  GradcheckOptions options;
  options.step = h;
  options.atol = 1.0;  // the verdict is not what these tests look at
  options.rtol = 1.0;
  GradcheckReport report =
      gradcheck([](const Inputs& v) { return mul(exp(v[0]), tanh(v[0])); }, {positive({4, 5}, gen)}, options);
  REQUIRE(report.inputs.size() == 1);
  return report.inputs[0];
}

}  // namespace

TEST_CASE("gradcheck passes on correct ops and reports every input") {
  Generator gen(1);
  Tensor a = normal({3, 4}, gen), b = normal({4, 2}, gen), c = positive({3, 2}, gen);
  GradcheckReport report = gradcheck(
      [](const Inputs& v) { return div(tanh(matmul(v[0], v[1])), v[2]); }, {a, b, c});
  INFO(report.summary());
  CHECK(report.passed);
  CHECK(report.reason.empty());
  REQUIRE(report.inputs.size() == 3);
  CHECK(report.inputs[0].shape == Shape{3, 4});
  CHECK(report.inputs[1].shape == Shape{4, 2});
  CHECK(report.inputs[2].shape == Shape{3, 2});
  for (const InputReport& r : report.inputs) {
    CHECK(r.failures == 0);
    CHECK_FALSE(r.all_zero);
    CHECK(r.max_analytic > 0);
    CHECK(r.max_numeric == doctest::Approx(r.max_analytic).epsilon(1e-6));
    CHECK(r.central.max_rel < 1e-6);
  }
  CHECK(report.summary().find("passed") != std::string::npos);
  CHECK(report.summary().find("[4, 2]") != std::string::npos);
  // The tape is released, and the inputs are left as they were.
  CHECK(tape_size() == 0);
  CHECK_FALSE(a.requires_grad());
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("gradcheck converts float32 inputs to float64 copies") {
  Generator gen(2);
  Tensor x = Tensor::randn({2, 3}, gen, 0.0, 1.0, DType::f32);
  std::vector<double> before = x.to_vector();
  DType seen = DType::f32;
  GradcheckReport report = gradcheck(
      [&seen](const Inputs& v) {
        seen = v[0].dtype();
        return sigmoid(v[0]);
      },
      {x});
  INFO(report.summary());
  CHECK(report.passed);
  CHECK(seen == DType::f64);
  CHECK(x.dtype() == DType::f32);
  CHECK(x.to_vector() == before);
}

TEST_CASE("gradcheck rejects a function whose result is not float64") {
  Generator gen(3);
  CHECK_THROWS_WITH_AS(gradcheck([](const Inputs& v) { return mul(v[0], 2.0).to(DType::f32); }, {normal({2}, gen)}),
                       doctest::Contains("f64"), std::invalid_argument);
}

TEST_CASE("gradcheck fails on a backward that returns twice the derivative") {
  Generator gen(4);
  Tensor x = positive({3, 4}, gen);
  // The same custom op with the right gradient passes: the op itself is sound.
  GradcheckReport right = gradcheck([](const Inputs& v) { return cube_with_scaled_gradient(v[0], 1.0); }, {x});
  INFO(right.summary());
  CHECK(right.passed);

  GradcheckReport wrong = gradcheck([](const Inputs& v) { return cube_with_scaled_gradient(v[0], 2.0); }, {x});
  INFO(wrong.summary());
  CHECK_FALSE(wrong.passed);
  CHECK(wrong.reason.find("outside tolerance") != std::string::npos);
  CHECK(wrong.summary().find("FAILED") != std::string::npos);
  REQUIRE(wrong.inputs.size() == 1);
  // Every element is off, by |6 x^2 r - 3 x^2 r| / (6 x^2 r) = 1/2 relative.
  CHECK(wrong.inputs[0].failures == x.numel());
  CHECK(wrong.inputs[0].central.max_rel == doctest::Approx(0.5).epsilon(1e-4));
  CHECK(wrong.inputs[0].central.mean_rel == doctest::Approx(0.5).epsilon(1e-4));
  CHECK(wrong.inputs[0].max_analytic == doctest::Approx(2 * wrong.inputs[0].max_numeric).epsilon(1e-6));
  CHECK(tape_size() == 0);
}

TEST_CASE("gradcheck blames only the input whose gradient is wrong") {
  Generator gen(5);
  GradcheckReport report = gradcheck([](const Inputs& v) { return product_with_wrong_sign(v[0], v[1]); },
                                     {normal({2, 3}, gen), positive({2, 3}, gen)});
  INFO(report.summary());
  CHECK_FALSE(report.passed);
  REQUIRE(report.inputs.size() == 2);
  CHECK(report.inputs[0].failures == 0);
  CHECK(report.inputs[1].failures == 6);
  CHECK(report.reason.find("input 1") != std::string::npos);
  CHECK(report.reason.find("input 0") == std::string::npos);
}

TEST_CASE("a small error is caught, a tiny one within tolerance is not") {
  Generator gen(6);
  Tensor x = positive({5}, gen);
  // 1e-3 relative is far outside rtol = 1e-5; 1e-9 relative is inside.
  GradcheckReport off = gradcheck([](const Inputs& v) { return cube_with_scaled_gradient(v[0], 1.001); }, {x});
  CHECK_FALSE(off.passed);
  GradcheckReport close = gradcheck([](const Inputs& v) { return cube_with_scaled_gradient(v[0], 1 + 1e-9); }, {x});
  INFO(close.summary());
  CHECK(close.passed);
}

TEST_CASE("all-zero gradients are vacuous unless allowed") {
  Generator gen(7);
  Tensor negative = Tensor::uniform({3, 4}, gen, -2.0, -0.1, DType::f64);

  SUBCASE("relu on all-negative inputs") {
    auto f = [](const Inputs& v) { return relu(v[0]); };
    GradcheckReport report = gradcheck(f, {negative});
    INFO(report.summary());
    CHECK_FALSE(report.passed);
    CHECK(report.reason.find("vacuous") != std::string::npos);
    REQUIRE(report.inputs.size() == 1);
    CHECK(report.inputs[0].all_zero);
    CHECK(report.inputs[0].failures == 0);
    GradcheckReport allowed = gradcheck(f, {negative}, {.allow_all_zero = true});
    CHECK(allowed.passed);
  }

  SUBCASE("an input the function ignores") {
    auto f = [](const Inputs& v) { return mul(v[0], 2.0); };
    GradcheckReport report = gradcheck(f, {normal({3}, gen), normal({2}, gen)});
    INFO(report.summary());
    CHECK_FALSE(report.passed);
    REQUIRE(report.inputs.size() == 2);
    CHECK_FALSE(report.inputs[0].all_zero);
    CHECK(report.inputs[1].all_zero);
    CHECK(report.reason.find("input 1") != std::string::npos);
    CHECK(gradcheck(f, {normal({3}, gen), normal({2}, gen)}, {.allow_all_zero = true}).passed);
  }

  SUBCASE("a step function, whose gradient is zero by definition") {
    // step is not differentiable and records nothing: the tape's gradient is zero, and so is the
    // numeric one away from the jump. That is a vacuous check, not an error.
    auto f = [](const Inputs& v) { return mul(step(v[0]), 3.0); };
    Tensor x = Tensor::uniform({2, 3}, gen, 0.5, 1.5, DType::f64);
    GradcheckReport report;
    CHECK_NOTHROW(report = gradcheck(f, {x}));
    INFO(report.summary());
    CHECK_FALSE(report.passed);
    CHECK(report.reason.find("vacuous") != std::string::npos);
    GradcheckReport allowed;
    CHECK_NOTHROW(allowed = gradcheck(f, {x}, {.allow_all_zero = true}));
    CHECK(allowed.passed);
    release_tape();
  }
}

TEST_CASE("difference schemes: central is far more accurate than forward and backward") {
  InputReport r = errors_at(1e-4);
  const ErrorStats& forward = r.stats(DifferenceScheme::forward);
  const ErrorStats& backward = r.stats(DifferenceScheme::backward);
  const ErrorStats& central = r.stats(DifferenceScheme::central);
  INFO("forward " << forward.max_abs << ", backward " << backward.max_abs << ", central " << central.max_abs);
  CHECK(&forward == &r.forward);
  CHECK(&central == &r.central);
  CHECK(central.max_abs < 1e-3 * forward.max_abs);
  CHECK(central.max_abs < 1e-3 * backward.max_abs);
  CHECK(central.mean_abs < 1e-3 * forward.mean_abs);
  // The one-sided errors are h f''/2 with opposite signs: about the same size.
  CHECK(forward.max_abs == doctest::Approx(backward.max_abs).epsilon(0.01));
  // Means lie below maxima, relative below one.
  CHECK(forward.mean_abs <= forward.max_abs);
  CHECK(forward.max_rel < 1.0);
  CHECK(central.mean_rel <= central.max_rel);
}

TEST_CASE("difference schemes: each error is exactly that of its formula") {
  // For L(x) = sum(exp(x)) (a scalar, so no projection) the three quotients are known in closed form:
  //   forward  e^x (e^h - 1) / h,  backward  e^x (1 - e^-h) / h,  central  e^x sinh(h) / h,
  // against the analytic e^x. With h = 1e-2 the forward error exceeds the backward one by about 2h/3.
  Generator gen(13);
  Tensor x = Tensor::uniform({6}, gen, -1.0, 1.0, DType::f64);
  const double h = 1e-2;
  GradcheckOptions options;
  options.step = h;
  options.atol = 1.0;
  GradcheckReport report = gradcheck([](const Inputs& v) { return sum(exp(v[0])); }, {x}, options);
  REQUIRE(report.inputs.size() == 1);
  const InputReport& r = report.inputs[0];
  double forward = 0, backward = 0, central = 0, forward_mean = 0;
  for (double value : x.to_vector()) {
    double slope = std::exp(value);
    forward = std::max(forward, slope * ((std::exp(h) - 1) / h - 1));
    backward = std::max(backward, slope * (1 - (1 - std::exp(-h)) / h));
    central = std::max(central, slope * (std::sinh(h) / h - 1));
    forward_mean += slope * ((std::exp(h) - 1) / h - 1) / 6;
  }
  CHECK(r.forward.max_abs == doctest::Approx(forward).epsilon(1e-6));
  CHECK(r.backward.max_abs == doctest::Approx(backward).epsilon(1e-6));
  CHECK(r.central.max_abs == doctest::Approx(central).epsilon(1e-5));
  CHECK(r.forward.mean_abs == doctest::Approx(forward_mean).epsilon(1e-6));
  CHECK(r.forward.max_abs > r.backward.max_abs);
  // Relative errors: |e^x - numeric| / numeric, the same for every element.
  CHECK(r.forward.max_rel == doctest::Approx(1 - h / (std::exp(h) - 1)).epsilon(1e-6));
  CHECK(r.forward.mean_rel == doctest::Approx(r.forward.max_rel).epsilon(1e-9));
}

TEST_CASE("the tolerances are the options'") {
  // A gradient 1e-4 too large, on gradients of order 3 to 12: outside the defaults (atol 1e-7,
  // rtol 1e-5), inside atol 1e-2.
  Generator gen(14);
  Tensor x = Tensor::uniform({5}, gen, 1.0, 2.0, DType::f64);
  auto f = [](const Inputs& v) { return sum(cube_with_scaled_gradient(v[0], 1 + 1e-4)); };
  CHECK_FALSE(gradcheck(f, {x}).passed);
  GradcheckOptions loose_atol;
  loose_atol.atol = 1e-2;
  CHECK(gradcheck(f, {x}, loose_atol).passed);
  GradcheckOptions loose_rtol;
  loose_rtol.rtol = 1e-3;
  CHECK(gradcheck(f, {x}, loose_rtol).passed);
}

TEST_CASE("difference schemes: one-sided errors scale like h, central like h^2") {
  InputReport coarse = errors_at(1e-3), fine = errors_at(1e-4);
  double forward_ratio = coarse.forward.max_abs / fine.forward.max_abs;
  double backward_ratio = coarse.backward.max_abs / fine.backward.max_abs;
  double central_ratio = coarse.central.max_abs / fine.central.max_abs;
  INFO("ratios for h 10x larger: forward " << forward_ratio << ", backward " << backward_ratio << ", central "
                                           << central_ratio);
  CHECK(forward_ratio == doctest::Approx(10.0).epsilon(0.05));
  CHECK(backward_ratio == doctest::Approx(10.0).epsilon(0.05));
  CHECK(central_ratio == doctest::Approx(100.0).epsilon(0.05));
  CHECK(coarse.central.mean_abs / fine.central.mean_abs == doctest::Approx(100.0).epsilon(0.05));
}

TEST_CASE("the projection seed changes the check, not the verdict") {
  Generator gen(8);
  Tensor x = normal({3, 3}, gen);
  auto f = [](const Inputs& v) { return softmax(v[0]); };
  GradcheckReport one = gradcheck(f, {x}, {.seed = 1});
  GradcheckReport two = gradcheck(f, {x}, {.seed = 2});
  CHECK(one.passed);
  CHECK(two.passed);
  CHECK(one.inputs[0].max_analytic != two.inputs[0].max_analytic);
  // A scalar function is projected with 1: the seed does not matter.
  auto g = [](const Inputs& v) { return sum(exp(v[0])); };
  CHECK(gradcheck(g, {x}, {.seed = 1}).inputs[0].max_analytic ==
        gradcheck(g, {x}, {.seed = 2}).inputs[0].max_analytic);
}

TEST_CASE("gradgradcheck passes on smooth functions") {
  Generator gen(9);
  Tensor x = normal({3, 4}, gen), y = normal({3, 4}, gen);
  for (auto f : {+[](const Inputs& v) { return tanh(mul(v[0], v[1])); },
                 +[](const Inputs& v) { return mul(exp(v[0]), sigmoid(v[1])); },
                 +[](const Inputs& v) { return log_softmax(add(v[0], mul(v[1], v[1]))); },
                 +[](const Inputs& v) { return matmul(tanh(v[0]), v[1], false, true); }}) {
    GradcheckReport report = gradgradcheck(f, {x, y});
    INFO(report.summary());
    CHECK(report.passed);
  }
  CHECK(tape_size() == 0);
}

TEST_CASE("gradgradcheck fails on a backward that is right but not differentiated right") {
  Generator gen(10);
  Tensor x = positive({2, 3}, gen);
  auto f = [](const Inputs& v) { return cube_with_half_second_derivative(v[0]); };
  GradcheckReport first = gradcheck(f, {x});
  INFO(first.summary());
  CHECK(first.passed);
  GradcheckReport second = gradgradcheck(f, {x});
  INFO(second.summary());
  CHECK_FALSE(second.passed);
  REQUIRE(second.inputs.size() == 1);
  CHECK(second.inputs[0].failures == x.numel());
  // Tape: 3 x; truth: 6 x.
  CHECK(second.inputs[0].central.max_rel == doctest::Approx(0.5).epsilon(1e-4));
  // The correct op passes both.
  auto right = [](const Inputs& v) { return cube_with_scaled_gradient(v[0], 1.0); };
  GradcheckReport both = gradgradcheck(right, {x});
  INFO(both.summary());
  CHECK(both.passed);
}

TEST_CASE("gradgradcheck fails on a backward cut from the tape") {
  // A backward computed on detached values is right at first order but has no second order at all.
  Generator gen(11);
  auto f = [](const Inputs& v) {
    const Tensor& x = v[0];
    Tensor out = exp(x.detach());
    return record("exp_detached_backward", out, {x},
                  [x](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{mul(g, exp(x.detach()))}; });
  };
  Tensor x = normal({4}, gen);
  CHECK(gradcheck(f, {x}).passed);
  GradcheckReport second = gradgradcheck(f, {x});
  INFO(second.summary());
  CHECK_FALSE(second.passed);
  CHECK(second.inputs[0].failures == 4);
}

TEST_CASE("gradgradcheck on a linear function is vacuous unless allowed") {
  Generator gen(12);
  auto f = [](const Inputs& v) { return mul(sum(v[0], 0), 3.0); };
  Tensor x = normal({3, 2}, gen);
  GradcheckReport report = gradgradcheck(f, {x});
  INFO(report.summary());
  CHECK_FALSE(report.passed);
  CHECK(report.reason.find("vacuous") != std::string::npos);
  CHECK(gradgradcheck(f, {x}, {.allow_all_zero = true}).passed);
}

// ---- gradcheck_elements: chosen elements, several steps, the values instead of a verdict

TEST_CASE("gradcheck_elements: the exact quotients of a polynomial") {
  // L(x, y) = sum(x^2) + sum(y^3), with dyadic values and steps, so that every quotient is exact in
  // float64: for x^2 forward 2x + h, backward 2x - h, central 2x; for y^3 forward 3y^2 + 3yh + h^2,
  // backward 3y^2 - 3yh + h^2, central 3y^2 + h^2.
  Tensor x = Tensor::from_data(Shape{3}, std::span<const double>(std::vector<double>{0.5, -1.25, 3.0}));
  Tensor y = Tensor::from_data(Shape{2, 2}, std::span<const double>(std::vector<double>{1.0, -0.5, 2.0, 0.75}));
  auto f = [](const Inputs& v) { return add(sum(mul(v[0], v[0])), sum(mul(mul(v[1], v[1]), v[1]))); };
  // Out of order, with a repeat: the results come back in the order asked.
  std::vector<ElementIndex> elements{{1, 3}, {0, 1}, {1, 1}, {0, 1}};
  std::vector<double> steps{0.25, 0.0625};
  std::vector<ElementCheck> checks = gradcheck_elements(f, {x, y}, elements, steps);
  REQUIRE(checks.size() == 4);
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const ElementCheck& c = checks[i];
    CHECK(c.element == elements[i]);
    double v = (c.element.input == 0 ? x : y).at(c.element.index);
    bool square = c.element.input == 0;
    CHECK(c.analytic == (square ? 2 * v : 3 * v * v));
    REQUIRE(c.numeric.size() == 2);
    for (std::size_t k = 0; k < steps.size(); ++k) {
      double h = steps[k];
      const Differences& d = c.numeric[k];
      CHECK(d.h == h);
      CHECK(d.forward == (square ? 2 * v + h : 3 * v * v + 3 * v * h + h * h));
      CHECK(d.backward == (square ? 2 * v - h : 3 * v * v - 3 * v * h + h * h));
      CHECK(d.central == (square ? 2 * v : 3 * v * v + h * h));
      CHECK(d[DifferenceScheme::forward] == d.forward);
      CHECK(d[DifferenceScheme::backward] == d.backward);
      CHECK(d[DifferenceScheme::central] == d.central);
      CHECK(c.relative_error(k, DifferenceScheme::central) == relative_error(c.analytic, d.central));
    }
  }
  // x^2: the central quotient is exact.
  CHECK(checks[1].relative_error(0, DifferenceScheme::central) == 0);
  // y = 0.75 at h = 0.25: central 3y^2 + h^2 = 1.75 against 1.6875, relative 0.0625 / 1.75.
  CHECK(checks[0].relative_error(0, DifferenceScheme::central) == doctest::Approx(0.0625 / 1.75).epsilon(1e-15));
  CHECK(tape_size() == 0);
}

TEST_CASE("relative_error and the schemes' names") {
  CHECK(relative_error(2.0, 1.0) == 0.5);
  CHECK(relative_error(1.0, 2.0) == 0.5);
  CHECK(relative_error(-1.0, 1.0) == 2.0);
  CHECK(relative_error(0.0, 0.0) == 0.0);
  CHECK(relative_error(0.0, 1e-300) == 1.0);
  CHECK(std::string(to_string(DifferenceScheme::forward)) == "forward");
  CHECK(std::string(to_string(DifferenceScheme::backward)) == "backward");
  CHECK(std::string(to_string(DifferenceScheme::central)) == "central");
}

TEST_CASE("gradcheck_elements detects a wrong gradient, element by element") {
  Generator gen(15);
  Tensor x = positive({3, 4}, gen);
  std::vector<ElementIndex> elements{{0, 0}, {0, 5}, {0, 11}};
  std::vector<double> steps{1e-4, 1e-6};
  auto right = gradcheck_elements([](const Inputs& v) { return cube_with_scaled_gradient(v[0], 1.0); }, {x}, elements, steps);
  auto twice = gradcheck_elements([](const Inputs& v) { return cube_with_scaled_gradient(v[0], 2.0); }, {x}, elements, steps);
  REQUIRE(right.size() == 3);
  REQUIRE(twice.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(right[i].relative_error(0, DifferenceScheme::central) < 1e-8);
    // The tape says 6 x^2 r where the truth is 3 x^2 r: relative error 1/2 whatever the step or scheme.
    CHECK(twice[i].analytic == doctest::Approx(2 * right[i].analytic).epsilon(1e-12));
    for (std::size_t k = 0; k < steps.size(); ++k) {
      for (DifferenceScheme scheme : {DifferenceScheme::forward, DifferenceScheme::backward, DifferenceScheme::central}) {
        CHECK(twice[i].relative_error(k, scheme) == doctest::Approx(0.5).epsilon(1e-4));
      }
    }
  }
  // A wrong sign on the second input only: its elements are off by 2, the first input's are right.
  auto blamed = gradcheck_elements([](const Inputs& v) { return product_with_wrong_sign(v[0], v[1]); },
                                   {normal({2, 3}, gen), positive({2, 3}, gen)}, {{0, 4}, {1, 4}}, {1e-5});
  CHECK(blamed[0].relative_error(0, DifferenceScheme::central) < 1e-8);
  CHECK(blamed[1].relative_error(0, DifferenceScheme::central) == doctest::Approx(2.0).epsilon(1e-6));
}

TEST_CASE("gradcheck_elements gives gradcheck's numbers on the elements it is asked for") {
  Generator gen(16);
  Tensor a = normal({2, 3}, gen), b = positive({3}, gen);
  auto f = [](const Inputs& v) { return div(tanh(v[0]), v[1]); };
  GradcheckOptions options;
  options.step = 1e-3;
  GradcheckReport report = gradcheck(f, {a, b}, options);
  std::vector<ElementIndex> every;
  for (std::size_t e = 0; e < a.numel(); ++e) every.push_back({0, e});
  for (std::size_t e = 0; e < b.numel(); ++e) every.push_back({1, e});
  std::vector<ElementCheck> checks = gradcheck_elements(f, {a, b}, every, {options.step}, options);
  REQUIRE(checks.size() == 9);
  for (std::size_t input = 0; input < 2; ++input) {
    for (DifferenceScheme scheme : {DifferenceScheme::forward, DifferenceScheme::backward, DifferenceScheme::central}) {
      double largest = 0;
      for (const ElementCheck& c : checks) {
        if (c.element.input == input) largest = std::max(largest, c.relative_error(0, scheme));
      }
      CHECK(largest == report.inputs[input].stats(scheme).max_rel);
    }
  }
}

TEST_CASE("gradcheck_elements leaves its inputs alone and refuses what it cannot check") {
  Generator gen(17);
  Tensor x = Tensor::randn({2, 3}, gen, 0.0, 1.0, DType::f32);
  std::vector<double> before = x.to_vector();
  auto f = [](const Inputs& v) { return sigmoid(v[0]); };
  std::vector<ElementCheck> checks = gradcheck_elements(f, {x}, {{0, 5}}, {1e-6});
  CHECK(checks.at(0).relative_error(0, DifferenceScheme::central) < 1e-7);
  CHECK(x.dtype() == DType::f32);
  CHECK(x.to_vector() == before);
  CHECK_FALSE(x.requires_grad());
  CHECK(tape_size() == 0);
  CHECK(gradcheck_elements(f, {x}, {}, {1e-6}).empty());

  CHECK_THROWS_WITH_AS(gradcheck_elements(f, {x}, {{0, 6}}, {1e-6}), doctest::Contains("element 6 of input 0"),
                       std::out_of_range);
  CHECK_THROWS_WITH_AS(gradcheck_elements(f, {x}, {{1, 0}}, {1e-6}), doctest::Contains("input 1"), std::out_of_range);
  for (double bad : {0.0, -1e-6, std::numeric_limits<double>::infinity(), std::nan("")}) {
    CHECK_THROWS_AS(gradcheck_elements(f, {x}, {{0, 0}}, {1e-6, bad}), std::invalid_argument);
  }
  // A function whose value changes from call to call has no finite differences.
  int calls = 0;
  auto drifting = [&calls](const Inputs& v) { return mul(sum(v[0]), 1.0 + 1e-3 * ++calls); };
  CHECK_THROWS_WITH_AS(gradcheck_elements(drifting, {x}, {{0, 0}}, {1e-6}), doctest::Contains("not deterministic"),
                       std::runtime_error);
}
