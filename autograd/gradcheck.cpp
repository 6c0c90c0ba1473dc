#include "autograd/gradcheck.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

namespace ag {

namespace {

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
  double scale = std::max(std::abs(analytic), std::abs(numeric));
  double rel_error = scale > 0 ? abs_error / scale : 0.0;
  s.max_abs = std::max(s.max_abs, abs_error);
  s.max_rel = std::max(s.max_rel, rel_error);
  s.mean_abs += abs_error;
  s.mean_rel += rel_error;
}

/// Compares analytic gradients of the scalar function `loss` with its finite differences.
GradcheckReport compare(const std::function<double(const std::vector<Tensor>&)>& loss,
                        const std::vector<Tensor>& leaves, const std::vector<Tensor>& analytic,
                        const GradcheckOptions& options) {
  GradcheckReport report;
  double h = options.step;
  double centre = loss(leaves);
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    InputReport r;
    r.input = i;
    r.shape = leaves[i].shape();
    double* x = const_cast<double*>(leaves[i].data<double>());
    std::size_t n = leaves[i].numel();
    bool any_nonzero = false;
    for (std::size_t e = 0; e < n; ++e) {
      double original = x[e];
      x[e] = original + h;
      double plus = loss(leaves);
      x[e] = original - h;
      double minus = loss(leaves);
      x[e] = original;
      double a = analytic[i].at(e);
      double central = (plus - minus) / (2 * h);
      add_error(r.forward, a, (plus - centre) / h);
      add_error(r.backward, a, (centre - minus) / h);
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
  Tensor value = projected(leaves);
  std::vector<Tensor> analytic;
  if (value.requires_grad()) {
    analytic = grad({value}, leaves);
  } else {
    // Nothing recorded: the function is constant as far as the tape knows.
    release_tape();
    for (const Tensor& leaf : leaves) analytic.push_back(Tensor::zeros_like(leaf));
  }
  auto loss = [&](const std::vector<Tensor>& x) {
    NoGradGuard no_grad;
    return projected(x).item();
  };
  return compare(loss, leaves, analytic, options);
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

}  // namespace ag
