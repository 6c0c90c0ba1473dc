// The 2-D test functions (problems/functions.hpp): exact derivatives in two orders, their minima, and the
// paths optimisers take on them against the closed form.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "config/spec.hpp"
#include "optim/registry.hpp"
#include "problems/functions.hpp"

namespace {

ag::Tensor point(double v) { return ag::Tensor::from_data(ag::Shape{1}, {v}, ag::DType::f64); }

/// f as a function of the tape, with the same noise at every call (so that differences see one function).
ag::TensorFunction as_tensor_function(const problems::TestFunction& function) {
  return [&function](const std::vector<ag::Tensor>& xy) {
    ag::Generator noise(7);
    return function.f(xy[0], xy[1], noise);
  };
}

}  // namespace

TEST_CASE("test functions: the registry has the literature's six, with summaries") {
  std::vector<std::string> names = problems::test_functions().names();
  CHECK(names == std::vector<std::string>{"beale", "booth", "noisy_quadratic", "quadratic", "rosenbrock", "saddle"});
  CHECK_THROWS_WITH_AS(problems::test_functions().at("himmelblau"),
                       doctest::Contains("unknown test function 'himmelblau'"), config::SpecError);
}

TEST_CASE("test functions: gradients and second derivatives agree with finite differences (float64)") {
  for (const std::string& name : problems::test_functions().names()) {
    CAPTURE(name);
    const problems::TestFunction& function = problems::test_functions().at(name);
    for (std::pair<double, double> xy : {std::pair{-1.2, 0.8}, std::pair{0.3, -0.7}, std::pair{2.0, 0.5}}) {
      const double x = xy.first, y = xy.second;
      CAPTURE(x);
      CAPTURE(y);
      ag::GradcheckReport first = ag::gradcheck(as_tensor_function(function), {point(x), point(y)});
      CHECK_MESSAGE(first.passed, first.reason);
      ag::GradcheckReport second = ag::gradgradcheck(as_tensor_function(function), {point(x), point(y)});
      CHECK_MESSAGE(second.passed, second.reason);
    }
  }
}

TEST_CASE("test functions: the minimum is 0 with a zero gradient; known values by hand") {
  for (const std::string& name : problems::test_functions().names()) {
    CAPTURE(name);
    const problems::TestFunction& function = problems::test_functions().at(name);
    if (!function.minimum) continue;
    auto [mx, my] = *function.minimum;
    CHECK(problems::value_at(function, mx, my) == 0.0);
    if (function.noisy) continue;  // its gradient at the minimum is the noise
    ag::Tensor x = point(mx).set_requires_grad(true), y = point(my).set_requires_grad(true);
    ag::Generator noise(0);
    std::vector<ag::Tensor> g = ag::grad({function.f(x, y, noise)}, {x, y});
    CHECK(g[0].item() == 0.0);
    CHECK(g[1].item() == 0.0);
  }
  const auto& functions = problems::test_functions();
  CHECK(problems::value_at(functions.at("rosenbrock"), 0, 0) == 1.0);                    // (1 - 0)^2
  CHECK(problems::value_at(functions.at("rosenbrock"), -1, 1) == 4.0);                   // (1 + 1)^2 + 100 * 0
  CHECK(problems::value_at(functions.at("beale"), 0, 0) == doctest::Approx(14.203125));  // 1.5² + 2.25² + 2.625²
  CHECK(problems::value_at(functions.at("booth"), 0, 0) == 74.0);                        // 49 + 25
  CHECK(problems::value_at(functions.at("saddle"), 1, 2) == -3.0);
  CHECK(problems::value_at(functions.at("quadratic"), 2, 1) == 12.0);                    // (4 + 20) / 2
}

TEST_CASE("optimizer_path: SGD on the quadratic follows the closed form w_t = (1 - lr λ)^t w_0") {
  const problems::TestFunction& quadratic = problems::test_functions().at("quadratic");
  std::vector<problems::PathPoint> path =
      problems::optimizer_path(quadratic, optim::resolve_optimizer(config::parse_spec("sgd(lr=0.04)")), 10, {-4, 1});
  REQUIRE(path.size() == 11);
  for (std::size_t t = 0; t <= 10; ++t) {
    CAPTURE(t);
    CHECK(path[t].x == doctest::Approx(-4 * std::pow(0.96, t)).epsilon(1e-12));  // λ = 1
    CHECK(path[t].y == doctest::Approx(std::pow(0.2, t)).epsilon(1e-12));        // λ = 20: 1 - 0.04 * 20
    CHECK(path[t].f == doctest::Approx(0.5 * (path[t].x * path[t].x + 20 * path[t].y * path[t].y)));
  }
  // Past the stability limit lr = 2 / λ_max = 0.1, y oscillates and grows: |1 - 0.11 * 20| = 1.2.
  std::vector<problems::PathPoint> unstable =
      problems::optimizer_path(quadratic, optim::resolve_optimizer(config::parse_spec("sgd(lr=0.11)")), 5, {-4, 1});
  CHECK(unstable[5].y == doctest::Approx(std::pow(-1.2, 5)).epsilon(1e-12));
}

TEST_CASE("optimizer_path: Newton solves a quadratic in one step; L-BFGS finds Rosenbrock's minimum") {
  const auto& functions = problems::test_functions();
  auto newton = optim::resolve_optimizer(config::parse_spec("newton(lr=1)"));
  std::vector<problems::PathPoint> booth = problems::optimizer_path(functions.at("booth"), newton, 1, {-5, -5});
  CHECK(booth[1].x == doctest::Approx(1).epsilon(1e-9));
  CHECK(booth[1].y == doctest::Approx(3).epsilon(1e-9));
  auto lbfgs = optim::resolve_optimizer(config::parse_spec("lbfgs(lr=1)"));
  std::vector<problems::PathPoint> valley = problems::optimizer_path(functions.at("rosenbrock"), lbfgs, 300, {-1.5, 2});
  CHECK(valley.back().x == doctest::Approx(1).epsilon(1e-4));
  CHECK(valley.back().y == doctest::Approx(1).epsilon(1e-4));
}

TEST_CASE("optimizer_path: every registered optimiser walks the quadratic downhill; a diverging one stops") {
  const problems::TestFunction& quadratic = problems::test_functions().at("quadratic");
  for (const std::string& name : optim::optimizers().names()) {
    CAPTURE(name);
    // A rate below the stability limit 2 / λ_max = 0.1 (a wrapper passes it to the optimiser it wraps).
    // Hypergradient methods: β = 1e-3 by default moves α by β g_t·g_{t-1} ≈ 0.4 a step here (|g|² ≈ 400), at
    // once past that limit (their MNIST gradients are ~100x smaller): a β to match the scale.
    const auto& options = optim::optimizers().at(name).options;
    bool hyper = std::any_of(options.begin(), options.end(), [](const config::OptionInfo& o) { return o.key == "hyper_lr"; });
    config::Spec spec = optim::resolve_optimizer(config::parse_spec(name + (hyper ? "(lr=0.01,hyper_lr=1e-6)" : "(lr=0.01)")));
    std::vector<problems::PathPoint> path = problems::optimizer_path(quadratic, spec, 20, {-4, 1});
    CHECK(path.size() == 21);
    CHECK(path.back().f < path.front().f);  // every method makes some progress from the start
  }
  // SGD far past the stability limit overflows: the path ends where the numbers do.
  std::vector<problems::PathPoint> overflow = problems::optimizer_path(
      quadratic, optim::resolve_optimizer(config::parse_spec("sgd(lr=1e100)")), 50, {-4, 1});
  CHECK(overflow.size() < 51);
  CHECK(std::isfinite(overflow.back().x));
}
