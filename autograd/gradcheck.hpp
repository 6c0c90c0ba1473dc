// Gradient checking: the tape's gradient against finite differences, in float64.
//
// For f: inputs -> tensor, the check differentiates the scalar L(x) = sum(f(x) * r), with r a fixed
// random tensor of f's output shape (for a scalar f, r = 1), so one backward sweep gives the whole
// vector-Jacobian product to compare. Each input element is perturbed by the step h:
//   forward   (L(x + h e) - L(x)) / h          error O(h)
//   backward  (L(x) - L(x - h e)) / h          error O(h)
//   central   (L(x + h e) - L(x - h e)) / 2h   error O(h^2)
// and the report gives, per input and per scheme, the max and mean absolute and relative errors
// (relative = |analytic - numeric| / max(|analytic|, |numeric|), 0 where both are 0).
// Passing is judged on the central scheme: |analytic - numeric| <= atol + rtol * |numeric| for every
// element. A check where the analytic and the numeric gradients are both zero everywhere is vacuous
// and fails, unless allow_all_zero is set.
//
// gradcheck differences every element of every input: two evaluations of f each. gradcheck_elements
// differences chosen elements only, at several steps h, and returns each element's analytic value and
// its three quotients instead of a verdict: for inputs too large to difference whole (the parameters of
// a network) and for studying the error against h (examples/gradcheck_report.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"

namespace ag {

enum class DifferenceScheme { forward, backward, central };

struct GradcheckOptions {
  double step = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-5;
  /// Seed of the random projection r.
  std::uint64_t seed = 42;
  /// Accept gradients that are zero everywhere (both analytic and numeric).
  bool allow_all_zero = false;
};

struct ErrorStats {
  double max_abs = 0, mean_abs = 0, max_rel = 0, mean_rel = 0;
};

struct InputReport {
  std::size_t input = 0;
  Shape shape;
  ErrorStats forward, backward, central;
  /// Elements where the central difference is outside the tolerance.
  std::size_t failures = 0;
  double max_analytic = 0, max_numeric = 0;
  bool all_zero = false;
  const ErrorStats& stats(DifferenceScheme scheme) const;
};

struct GradcheckReport {
  std::vector<InputReport> inputs;
  bool passed = false;
  /// What failed, or empty.
  std::string reason;
  /// A table: input, shape, then max/mean abs/rel error per scheme.
  std::string summary() const;
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

/// Checks d f / d inputs. Inputs are converted to float64 copies that require grad; the originals
/// are left untouched. Like backward, it releases this thread's tape.
GradcheckReport gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

/// Second order: checks the tape's derivative of x -> sum(grad_x L(x) * s) (the gradient computed with
/// create_graph, s a fixed random tensor) against finite differences of the tape's own gradient.
GradcheckReport gradgradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

/// |analytic - numeric| / max(|analytic|, |numeric|), and 0 where both are 0: the relative error of
/// every report here.
double relative_error(double analytic, double numeric);

/// "forward", "backward" or "central".
const char* to_string(DifferenceScheme scheme);

// ---- element by element

/// One element of the inputs: which input, and the flat (row-major) index into it.
struct ElementIndex {
  std::size_t input = 0, index = 0;
  bool operator==(const ElementIndex&) const = default;
};

/// The three difference quotients of L at one element, at the step h.
struct Differences {
  double h = 0;
  double forward = 0, backward = 0, central = 0;
  double operator[](DifferenceScheme scheme) const;
};

struct ElementCheck {
  ElementIndex element;
  /// The tape's dL/dx at the element.
  double analytic = 0;
  /// One per step, in the order the steps were given.
  std::vector<Differences> numeric;
  /// relative_error(analytic, numeric[step][scheme]).
  double relative_error(std::size_t step, DifferenceScheme scheme) const;
};

/// The tape's gradient of L (as gradcheck: L = sum(f(x) * r), L = f(x) for a scalar f) at each of
/// `elements`, and L's forward, backward and central quotients there at every h of `steps`; in the
/// order given (an element may be repeated). options.step and the tolerances are not used. Inputs are
/// converted to float64 copies, perturbed one element at a time and restored exactly; the originals are
/// left untouched. Throws std::out_of_range for an element outside the inputs, std::invalid_argument
/// for a step that is not positive and finite, std::runtime_error when L at the inputs is not the same
/// after the perturbations as before (f is not deterministic). Like backward, it releases this thread's
/// tape.
std::vector<ElementCheck> gradcheck_elements(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                             const std::vector<ElementIndex>& elements,
                                             const std::vector<double>& steps, const GradcheckOptions& options = {});

}  // namespace ag
