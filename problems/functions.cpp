#include "problems/functions.hpp"

#include <cmath>
#include <limits>
#include <utility>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "optim/registry.hpp"

namespace problems {

namespace {

using ag::Tensor;

Tensor square(const Tensor& t) { return t * t; }

Tensor rosenbrock(const Tensor& x, const Tensor& y, ag::Generator&) {
  return square(1.0 - x) + 100.0 * square(y - square(x));
}

Tensor beale(const Tensor& x, const Tensor& y, ag::Generator&) {
  Tensor y2 = square(y);
  return square(1.5 - x + x * y) + square(2.25 - x + x * y2) + square(2.625 - x + x * y2 * y);
}

Tensor booth(const Tensor& x, const Tensor& y, ag::Generator&) {
  return square(x + 2.0 * y - 7.0) + square(2.0 * x + y - 5.0);
}

Tensor saddle(const Tensor& x, const Tensor& y, ag::Generator&) { return square(x) - square(y); }

Tensor quadratic(const Tensor& x, const Tensor& y, ag::Generator&) { return 0.5 * (square(x) + 20.0 * square(y)); }

constexpr double kNoise = 2.0;

Tensor noisy_quadratic(const Tensor& x, const Tensor& y, ag::Generator& noise) {
  double xi1 = noise.normal(), xi2 = noise.normal();
  return 0.5 * (square(x) + 20.0 * square(y)) + kNoise * (xi1 * x + xi2 * y);
}

void add(std::string name, std::string summary, decltype(TestFunction::f) f, std::array<double, 2> start,
         std::optional<std::array<double, 2>> minimum, std::array<double, 4> view, std::vector<std::string> optimizers,
         bool noisy = false) {
  TestFunction entry;
  entry.name = std::move(name);
  entry.summary = std::move(summary);
  entry.f = std::move(f);
  entry.start = start;
  entry.minimum = minimum;
  entry.minimum_value = minimum ? 0.0 : -std::numeric_limits<double>::infinity();
  entry.view = view;
  entry.default_optimizers = std::move(optimizers);
  entry.noisy = noisy;
  test_functions().add(std::move(entry));
}

const bool functions_registered = [] {
  add("rosenbrock", "(1 - x)^2 + 100 (y - x^2)^2: a curved narrow valley, min 0 at (1, 1)", rosenbrock, {-1.5, 2.0},
      std::array<double, 2>{1, 1}, {-2, 2, -1, 3},
      {"sgd(lr=1e-3)", "momentum(lr=1e-3,momentum=0.9)", "adam(lr=0.1)", "rmsprop(lr=0.01)", "lbfgs(lr=1)"});
  add("beale", "(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2: flat plateaus, min 0 at (3, 0.5)",
      beale, {1.0, 1.5}, std::array<double, 2>{3, 0.5}, {-1, 4, -1.5, 2},
      {"sgd(lr=0.01)", "momentum(lr=0.005,momentum=0.9)", "adam(lr=0.05)", "adagrad(lr=0.5)", "rmsprop(lr=0.01)"});
  add("booth", "(x + 2y - 7)^2 + (2x + y - 5)^2: a tilted bowl, min 0 at (1, 3)", booth, {-5, -5},
      std::array<double, 2>{1, 3}, {-8, 8, -8, 8},
      {"sgd(lr=0.01)", "momentum(lr=0.01,momentum=0.9)", "adam(lr=0.5)", "adagrad(lr=2)", "newton(lr=1)"});
  add("saddle", "x^2 - y^2: a saddle at (0, 0), no minimum; which methods leave it", saddle, {-1.5, 1e-3},
      std::nullopt, {-2, 2, -2, 2},
      {"sgd(lr=0.05)", "momentum(lr=0.05,momentum=0.9)", "adam(lr=0.05)", "rmsprop(lr=0.01)", "adagrad(lr=0.5)"});
  add("quadratic", "(x^2 + 20 y^2) / 2: ill-conditioned (condition number 20), min 0 at (0, 0)", quadratic, {-4, 1},
      std::array<double, 2>{0, 0}, {-5, 5, -2, 2},
      {"sgd(lr=0.09)", "momentum(lr=0.02,momentum=0.9)", "nesterov(lr=0.02,momentum=0.9)", "adam(lr=0.1)",
       "newton(lr=1)"});
  add("noisy_quadratic", "the quadratic plus 2 (xi1 x + xi2 y), xi ~ N(0, 1) at every evaluation: gradient noise",
      noisy_quadratic, {-4, 1}, std::array<double, 2>{0, 0}, {-5, 5, -2, 2},
      {"sgd(lr=0.02)", "momentum(lr=0.002,momentum=0.9)", "adam(lr=0.1)", "ema(inner=sgd(lr=0.02),decay=0.95)"}, true);
  return true;
}();

Tensor scalar(double v) { return Tensor::from_data(ag::Shape{1}, {v}, ag::DType::f64); }

}  // namespace

config::Registry<TestFunction>& test_functions() {
  static config::Registry<TestFunction> registry("test function");
  return registry;
}

double value_at(const TestFunction& function, double x, double y) {
  ag::NoGradGuard no_grad;
  ag::Generator unused(0);
  // A noisy function's value is its mean: the noise term is zero-mean and linear, so it is left out.
  if (function.noisy) return 0.5 * (x * x + 20 * y * y);
  return function.f(scalar(x), scalar(y), unused).item();
}

std::vector<PathPoint> optimizer_path(const TestFunction& function, const config::Spec& optimizer, std::size_t steps,
                                      std::array<double, 2> start, std::uint64_t seed) {
  Tensor x = scalar(start[0]), y = scalar(start[1]);
  x.set_requires_grad(true);
  y.set_requires_grad(true);
  auto method = optim::make_optimizer(optimizer, std::vector<nn::NamedTensor>{{"x", x}, {"y", y}});
  ag::Generator noise(seed);
  std::vector<PathPoint> path{{start[0], start[1], value_at(function, start[0], start[1])}};
  for (std::size_t step = 0; step < steps; ++step) {
    method->step(optim::Optimizer::LossFn([&] { return function.f(x, y, noise); }));
    // Evaluation-point methods (schedule-free, averages) are drawn where they would be evaluated.
    optim::EvalScope at_eval_point(*method);
    PathPoint p{x.item(), y.item(), 0};
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) break;
    p.f = value_at(function, p.x, p.y);
    path.push_back(p);
  }
  return path;
}

}  // namespace problems
