#include "autograd/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

namespace ag {

namespace {

using ScalarLoss = std::function<double(const std::vector<Tensor>&)>;

std::vector<Tensor> float64_leaves(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> leaves;
  for (const Tensor& input : inputs) {
    Tensor leaf = input.to(DType::f64);
    leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  return leaves;
}

/// L(x) = sum(f(x) * r), with r drawn once from the output's shape.
class Projected {
 public:
  Projected(const TensorFunction& f, const std::vector<Tensor>& inputs, std::uint64_t seed) : f_(f) {
    NoGradGuard no_grad;
    Tensor sample = f_(inputs);
    if (!sample.defined()) throw std::invalid_argument("gradcheck: the function returned an undefined tensor");
    Generator gen(seed);
    projection_ = sample.numel() == 1 ? Tensor::ones(sample.shape(), DType::f64)
                                      : Tensor::uniform(sample.shape(), gen, 0.5, 1.5, DType::f64);
  }
  Tensor operator()(const std::vector<Tensor>& inputs) const {
    Tensor out = f_(inputs);
    if (out.dtype() != DType::f64) {
      throw std::invalid_argument(fmt::format("gradcheck: the function returned {}, not f64", out.describe()));
    }
    return sum(mul(out, projection_));
  }

 private:
  TensorFunction f_;
  Tensor projection_;
};

void finish_stats(ErrorStats& s, std::size_t n) {
  if (n == 0) return;
  s.mean_abs /= static_cast<double>(n);
  s.mean_rel /= static_cast<double>(n);
}

void add_error(ErrorStats& s, double analytic, double numeric) {
  double abs_error = std::abs(analytic - numeric);
  double rel_error = relative_error(analytic, numeric);
  s.max_abs = std::max(s.max_abs, abs_error);
  s.max_rel = std::max(s.max_rel, rel_error);
  s.mean_abs += abs_error;
  s.mean_rel += rel_error;
}

/// The tape's gradient of L with respect to the leaves (zeros where L does not depend on them).
std::vector<Tensor> tape_gradient(const Projected& projected, const std::vector<Tensor>& leaves) {
  Tensor value = projected(leaves);
  if (value.requires_grad()) return grad({value}, leaves);
  // Nothing recorded: the function is constant as far as the tape knows.
  release_tape();
  std::vector<Tensor> zeros;
  for (const Tensor& leaf : leaves) zeros.push_back(Tensor::zeros_like(leaf));
  return zeros;
}

/// L as a number, evaluated without recording.
ScalarLoss untaped(const Projected& projected) {
  return [&projected](const std::vector<Tensor>& x) {
    NoGradGuard no_grad;
    return projected(x).item();
  };
}

/// The three quotients of `loss` at element e of the leaf whose data is x, at the step h; `centre` is
/// the loss at the leaves. x[e] is restored exactly.
Differences quotients(const ScalarLoss& loss, const std::vector<Tensor>& leaves, double* x, std::size_t e, double h,
                      double centre) {
  double original = x[e];
  x[e] = original + h;
  double plus = loss(leaves);
  x[e] = original - h;
  double minus = loss(leaves);
  x[e] = original;
  return {.h = h, .forward = (plus - centre) / h, .backward = (centre - minus) / h, .central = (plus - minus) / (2 * h)};
}

double* writable(const Tensor& leaf) { return const_cast<double*>(leaf.data<double>()); }

/// Compares analytic gradients of the scalar function `loss` with its finite differences.
GradcheckReport compare(const ScalarLoss& loss, const std::vector<Tensor>& leaves, const std::vector<Tensor>& analytic,
                        const GradcheckOptions& options) {
  GradcheckReport report;
  double h = options.step;
  double centre = loss(leaves);
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    InputReport r;
    r.input = i;
    r.shape = leaves[i].shape();
    double* x = writable(leaves[i]);
    std::size_t n = leaves[i].numel();
    bool any_nonzero = false;
    for (std::size_t e = 0; e < n; ++e) {
      Differences d = quotients(loss, leaves, x, e, h, centre);
      double a = analytic[i].at(e);
      double central = d.central;
      add_error(r.forward, a, d.forward);
      add_error(r.backward, a, d.backward);
      add_error(r.central, a, central);
      if (!(std::abs(a - central) <= options.atol + options.rtol * std::abs(central))) ++r.failures;
      r.max_analytic = std::max(r.max_analytic, std::abs(a));
      r.max_numeric = std::max(r.max_numeric, std::abs(central));
      any_nonzero = any_nonzero || std::abs(a) > 0 || std::abs(central) > options.atol;
    }
    finish_stats(r.forward, n);
    finish_stats(r.backward, n);
    finish_stats(r.central, n);
    r.all_zero = !any_nonzero;
    report.inputs.push_back(r);
  }
  report.passed = true;
  for (const InputReport& r : report.inputs) {
    if (r.failures > 0) {
      report.passed = false;
      report.reason += fmt::format("input {} {}: {} element(s) outside tolerance (max abs error {:.3e}); ",
                                   r.input, r.shape.str(), r.failures, r.central.max_abs);
    } else if (r.all_zero && !options.allow_all_zero) {
      report.passed = false;
      report.reason += fmt::format("input {} {}: analytic and numeric gradients are zero everywhere (vacuous); ",
                                   r.input, r.shape.str());
    }
  }
  return report;
}

}  // namespace

const ErrorStats& InputReport::stats(DifferenceScheme scheme) const {
  switch (scheme) {
    case DifferenceScheme::forward: return forward;
    case DifferenceScheme::backward: return backward;
    case DifferenceScheme::central: break;
  }
  return central;
}

std::string GradcheckReport::summary() const {
  std::string text = fmt::format("{:<6} {:<16} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "input", "shape",
                                 "fwd max", "fwd mean", "bwd max", "bwd mean", "ctr max", "ctr mean");
  for (const InputReport& r : inputs) {
    text += fmt::format("{:<6} {:<16} {:>10.2e} {:>10.2e} {:>10.2e} {:>10.2e} {:>10.2e} {:>10.2e}  (relative)\n",
                        r.input, r.shape.str(), r.forward.max_rel, r.forward.mean_rel, r.backward.max_rel,
                        r.backward.mean_rel, r.central.max_rel, r.central.mean_rel);
  }
  text += passed ? "passed\n" : fmt::format("FAILED: {}\n", reason);
  return text;
}

GradcheckReport gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  std::vector<Tensor> leaves = float64_leaves(inputs);
  Projected projected(f, leaves, options.seed);
  std::vector<Tensor> analytic = tape_gradient(projected, leaves);
  return compare(untaped(projected), leaves, analytic, options);
}

GradcheckReport gradgradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options) {
  std::vector<Tensor> leaves = float64_leaves(inputs);
  Projected projected(f, leaves, options.seed);
  // s: one random direction per input, so the second-order function is a scalar.
  Generator gen(options.seed + 1);
  std::vector<Tensor> directions;
  for (const Tensor& leaf : leaves) directions.push_back(Tensor::uniform(leaf.shape(), gen, 0.5, 1.5, DType::f64));
  auto directional = [&](const std::vector<Tensor>& x, bool create_graph) {
    std::vector<Tensor> g = grad({projected(x)}, x, {}, {.retain_graph = false, .create_graph = create_graph});
    Tensor total = sum(mul(g[0], directions[0]));
    for (std::size_t i = 1; i < g.size(); ++i) total = add(total, sum(mul(g[i], directions[i])));
    return total;
  };
  Tensor second = directional(leaves, true);
  std::vector<Tensor> analytic;
  if (second.requires_grad()) {
    analytic = grad({second}, leaves);
  } else {
    // The gradient does not depend on the inputs: the second derivative is zero.
    for (const Tensor& leaf : leaves) analytic.push_back(Tensor::zeros_like(leaf));
  }
  auto loss = [&](const std::vector<Tensor>& x) { return directional(x, false).item(); };
  return compare(loss, leaves, analytic, options);
}

double relative_error(double analytic, double numeric) {
  double scale = std::max(std::abs(analytic), std::abs(numeric));
  return scale > 0 ? std::abs(analytic - numeric) / scale : 0.0;
}

const char* to_string(DifferenceScheme scheme) {
  switch (scheme) {
    case DifferenceScheme::forward: return "forward";
    case DifferenceScheme::backward: return "backward";
    case DifferenceScheme::central: break;
  }
  return "central";
}

double Differences::operator[](DifferenceScheme scheme) const {
  switch (scheme) {
    case DifferenceScheme::forward: return forward;
    case DifferenceScheme::backward: return backward;
    case DifferenceScheme::central: break;
  }
  return central;
}

double ElementCheck::relative_error(std::size_t step, DifferenceScheme scheme) const {
  return ag::relative_error(analytic, numeric.at(step)[scheme]);
}

std::vector<ElementCheck> gradcheck_elements(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                             const std::vector<ElementIndex>& elements,
                                             const std::vector<double>& steps, const GradcheckOptions& options) {
  for (double h : steps) {
    if (!(h > 0 && std::isfinite(h))) {
      throw std::invalid_argument(fmt::format("gradcheck_elements: the step {} is not positive and finite", h));
    }
  }
  for (const ElementIndex& e : elements) {
    if (e.input >= inputs.size() || e.index >= inputs[e.input].numel()) {
      throw std::out_of_range(fmt::format("gradcheck_elements: element {} of input {} is outside the {} input(s){}",
                                          e.index, e.input, inputs.size(),
                                          e.input < inputs.size() ? " (shape " + inputs[e.input].shape().str() + ")" : ""));
    }
  }
  std::vector<Tensor> leaves = float64_leaves(inputs);
  Projected projected(f, leaves, options.seed);
  std::vector<Tensor> analytic = tape_gradient(projected, leaves);
  ScalarLoss loss = untaped(projected);
  double centre = loss(leaves);
  std::vector<ElementCheck> checks;
  checks.reserve(elements.size());
  for (const ElementIndex& e : elements) {
    ElementCheck check{.element = e, .analytic = analytic[e.input].at(e.index), .numeric = {}};
    for (double h : steps) check.numeric.push_back(quotients(loss, leaves, writable(leaves[e.input]), e.index, h, centre));
    checks.push_back(std::move(check));
  }
  double after = loss(leaves);
  if (after != centre && !(std::isnan(after) && std::isnan(centre))) {
    throw std::runtime_error(fmt::format("gradcheck_elements: L was {:.17g} before the perturbations and {:.17g} "
                                         "after: the function is not deterministic",
                                         centre, after));
  }
  return checks;
}

}  // namespace ag
