// Problems to optimise: the 2-D test functions of the optimisation literature, registered by name, with
// their minima, a customary start and a view for plots; and the path an optimiser takes on one of them.
//
//   rosenbrock  (1 - x)² + 100 (y - x²)²                          min 0 at (1, 1)      [Rosenbrock 1960]
//   beale       (1.5 - x + xy)² + (2.25 - x + xy²)² + (2.625 - x + xy³)²   min 0 at (3, 0.5)
//   booth       (x + 2y - 7)² + (2x + y - 5)²                      min 0 at (1, 3)
//   saddle      x² - y²                                            no minimum: a saddle at (0, 0)
//   quadratic   ½ (x² + 20 y²)                                     min 0 at (0, 0), condition number 20
//   noisy_quadratic  the quadratic plus σ (ξ₁ x + ξ₂ y), ξ ~ N(0, 1) drawn at every evaluation (σ = 2):
//               unbiased gradient noise, as a mini-batch gives
// Each function is written with the tape's ops, so optimisers see exact gradients and Hessians.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "autograd/tensor.hpp"
#include "config/registry.hpp"
#include "config/spec.hpp"

namespace problems {

struct TestFunction : config::EntryInfo {
  /// f(x, y) on one-element tensors; `noise` draws the noise of a noisy function (ignored by the others).
  std::function<ag::Tensor(const ag::Tensor& x, const ag::Tensor& y, ag::Generator& noise)> f;
  std::array<double, 2> start{};                   // the customary starting point
  std::optional<std::array<double, 2>> minimum;    // none for the saddle
  double minimum_value = 0;
  std::array<double, 4> view{};                    // x_low, x_high, y_low, y_high, for plots
  bool noisy = false;
  /// Optimiser specs whose paths show the function's character in a few hundred steps.
  std::vector<std::string> default_optimizers;
};

config::Registry<TestFunction>& test_functions();

/// f at (x, y) as a number, without noise and without recording.
double value_at(const TestFunction& function, double x, double y);

struct PathPoint {
  double x = 0, y = 0, f = 0;  // f without noise
};

/// The points an optimiser (a spec of the registry, "adam(lr=0.1)") visits from `start` in `steps` steps on
/// `function`, the start included (steps + 1 points, fewer if the path leaves the finite numbers: it stops
/// there). In float64; `seed` seeds the noise of a noisy function.
std::vector<PathPoint> optimizer_path(const TestFunction& function, const config::Spec& optimizer, std::size_t steps,
                                      std::array<double, 2> start, std::uint64_t seed = 0);

}  // namespace problems
