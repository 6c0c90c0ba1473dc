#include "optim/newton.hpp"

#include "optim/registry.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "analysis/dense.hpp"
#include "analysis/hessian.hpp"
#include "autograd/tape.hpp"

namespace optim {

// Named, not anonymous: Newton::Model (declared in the header) holds one.
namespace newton_detail {
/// The flat vector of all parameters: parameter k occupies [offset[k], offset[k] + numel).
struct Layout {
  std::vector<ag::Tensor> tensors;
  std::vector<std::size_t> offset;
  std::size_t n = 0;
};
}  // namespace newton_detail

namespace {

using newton_detail::Layout;

void flatten_into(const std::vector<ag::Tensor>& tensors, const Layout& layout, std::vector<double>& out) {
  out.assign(layout.n, 0.0);
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    double* o = out.data() + layout.offset[k];
    detail::dispatch(tensors[k].dtype(), [&]<class T>() {
      const T* p = tensors[k].data<T>();
      for (std::size_t i = 0, m = tensors[k].numel(); i < m; ++i) o[i] = static_cast<double>(p[i]);
    });
  }
}

ag::Tensor slice_as(const std::vector<double>& x, std::size_t offset, const ag::Tensor& like) {
  ag::Tensor t = ag::Tensor::empty(like.shape(), like.dtype());
  detail::dispatch(like.dtype(), [&]<class T>() {
    T* p = t.data<T>();
    for (std::size_t i = 0, m = like.numel(); i < m; ++i) p[i] = static_cast<T>(x[offset + i]);
  });
  return t;
}

/// Writes x into the parameters, in place (rounded to each one's dtype).
void write_params(const Layout& layout, const std::vector<double>& x) {
  for (std::size_t k = 0; k < layout.tensors.size(); ++k) {
    ag::Tensor t = layout.tensors[k];
    const double* xk = x.data() + layout.offset[k];
    detail::dispatch(t.dtype(), [&]<class T>() {
      T* p = t.data<T>();
      for (std::size_t i = 0, m = t.numel(); i < m; ++i) p[i] = static_cast<T>(xk[i]);
    });
  }
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// ½ Σ λ_i x_i²: the coupled L2 term of the objective.
double l2_term(const std::vector<double>& coupled, const std::vector<double>& x) {
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += coupled[i] * x[i] * x[i];
  return 0.5 * s;
}

/// Releases the tape however the step ends.
struct ReleaseTape {
  ~ReleaseTape() { ag::release_tape(); }
};

}  // namespace

/// One step's quadratic model of J around W_t: the parameters that take part, J(W_t), its gradient g and
/// products with its Hessian H (coupled L2 included, μ not), the gradient itself kept on the tape.
struct Newton::Model {
  std::vector<const Param*> params;
  Layout layout;
  std::vector<ag::Tensor> grads;  // on the tape
  std::vector<std::size_t> live;  // the gradients that depend on the parameters
  std::vector<double> w, g, coupled;
  double value = 0;  // J(W_t)
  double loss = 0;   // the loss function's value at W_t
  double noise = 0;  // J's rounding error: 64 ε |J| in the loss's dtype

  /// H v (with the coupled L2 term) plus shift v.
  std::vector<double> hvp(const std::vector<double>& v, double shift) const {
    std::vector<double> out(layout.n, 0.0);
    if (!live.empty()) {
      std::vector<ag::Tensor> outputs, seeds;
      for (std::size_t k : live) {
        outputs.push_back(grads[k]);
        seeds.push_back(slice_as(v, layout.offset[k], grads[k]));
      }
      std::vector<ag::Tensor> hv = ag::grad(outputs, layout.tensors, seeds, {.retain_graph = true});
      flatten_into(hv, layout, out);
    }
    for (std::size_t i = 0; i < layout.n; ++i) out[i] += (coupled[i] + shift) * v[i];
    return out;
  }
};

Newton::Newton(std::vector<nn::NamedTensor> params, const NewtonOptions& options)
    : Newton(one_group(std::move(params)), options) {}

Newton::Newton(std::vector<ParamGroup<NewtonOptions>> groups, const NewtonOptions& defaults)
    : OptimizerWith("newton", std::move(groups), defaults), damping_(this->defaults().damping) {}

void Newton::update() {
  throw std::logic_error("newton: the update needs the loss function");  // unreachable: needs_closure
}

double Newton::closure_step(const Closure&) {
  throw std::logic_error(
      "newton: step(closure) cannot differentiate the loss twice; call step(loss_fn) with a function that "
      "returns the loss tensor (no backward)");
}

std::vector<std::string> Newton::tensor_state_names() const { return {"previous"}; }

std::vector<Optimizer::GlobalScalar> Newton::global_scalars() {
  const double huge = std::numeric_limits<double>::max();
  return {{"damping", &damping_, 0.0, huge}, {"predicted_change", &predicted_, -huge, 0.0}};
}

double Newton::reduction_ratio(double actual, double predicted, double noise) {
  if (!(predicted < 0.0) || -predicted <= noise) return std::nan("");
  if (std::isnan(actual)) return -std::numeric_limits<double>::infinity();
  return actual / predicted;
}

double Newton::next_damping(double damping, double cosine, const NewtonOptions& options) {
  if (std::isnan(cosine)) return damping;
  const double next = damping * std::exp(options.hyper_lr * cosine);
  return next < options.damping_min ? 0.0 : next;
}

double Newton::loss_fn_step(const LossFn& loss_fn) {
  ReleaseTape release;
  const bool adaptive = defaults().adaptive;
  // Rule 1's J at W_t, before this call's model (and its last loss_fn call) at W_{t+1}.
  const std::optional<double> before =
      adaptive && damping_ == 0.0 && predicted_ < 0.0 ? value_at_previous_point(loss_fn) : std::nullopt;
  Model model = quadratic_model(loss_fn);
  ratio_ = std::nan("");
  undone_ = false;
  if (adaptive) adapt(model, before, loss_fn);
  const double mu = damping_;
  std::vector<double> next = destination(model, solve(model, mu));
  if (adaptive) remember(model, next, mu);
  write_params(model.layout, next);
  return model.loss;
}

Newton::Model Newton::quadratic_model(const LossFn& loss_fn) {
  Model m;
  for (const Param& p : all_params()) {
    if (!p.tensor.requires_grad()) continue;
    m.params.push_back(&p);
    m.layout.tensors.push_back(p.tensor);
    m.layout.offset.push_back(m.layout.n);
    m.layout.n += p.tensor.numel();
  }
  if (m.params.empty()) throw std::invalid_argument("newton: no parameter requires grad");
  m.coupled.assign(m.layout.n, 0.0);
  for (std::size_t k = 0; k < m.params.size(); ++k) {
    const NewtonOptions& o = options(m.params[k]->group);
    double lambda = o.weight_decay_mode == WeightDecay::coupled ? o.weight_decay : 0.0;
    auto first = m.coupled.begin() + static_cast<std::ptrdiff_t>(m.layout.offset[k]);
    std::fill_n(first, m.params[k]->tensor.numel(), lambda);
  }

  // Loss and gradient, the gradient itself on the tape.
  ag::Tensor loss;
  {
    ag::EnableGradGuard recording(true);
    loss = loss_fn();
  }
  if (!loss.defined() || loss.numel() != 1) {
    throw std::invalid_argument("newton: the loss function must return a one-element tensor");
  }
  if (!loss.requires_grad()) {
    throw std::invalid_argument("newton: the loss does not depend on any parameter that requires grad");
  }
  m.loss = loss.item();
  m.grads = ag::grad({loss}, m.layout.tensors, {}, {.create_graph = true});
  flatten_into(m.grads, m.layout, m.g);
  flatten_into(m.layout.tensors, m.layout, m.w);
  for (std::size_t i = 0; i < m.layout.n; ++i) m.g[i] += m.coupled[i] * m.w[i];
  m.value = m.loss + l2_term(m.coupled, m.w);
  const double epsilon = loss.dtype() == ag::DType::f64 ? std::numeric_limits<double>::epsilon()
                                                         : std::numeric_limits<float>::epsilon();
  m.noise = 64.0 * epsilon * std::abs(m.value);
  // Second-order terms only through gradients that are still on the tape.
  for (std::size_t k = 0; k < m.grads.size(); ++k) {
    if (m.grads[k].requires_grad()) m.live.push_back(k);
  }
  return m;
}

std::vector<double> Newton::solve(const Model& model, double mu) {
  const NewtonOptions& solver = defaults();
  used_full_ = solver.method == HessianMethod::full ||
               (solver.method == HessianMethod::automatic && model.layout.n <= solver.full_hessian_max);
  cg_iterations_ = 0;
  extra_damping_ = 0.0;
  return used_full_ ? solve_full(model, mu) : solve_cg(model, mu);
}

std::vector<double> Newton::solve_full(const Model& model, double mu) {
  const std::size_t n = model.layout.n;
  const analysis::FunctionOperator damped_hessian(n, [&](const std::vector<double>& v) { return model.hvp(v, mu); });
  const std::vector<double> h = analysis::dense(damped_hessian);  // symmetrised
  double diag_max = 1.0;
  for (std::size_t i = 0; i < n; ++i) diag_max = std::max(diag_max, std::abs(h[i * n + i]));
  std::optional<std::vector<double>> factor = analysis::cholesky(h, n);
  if (!factor) {
    // The smallest τ = 10^k 1e-10 max(1, max |H_ii|) with H + τ I positive definite, then 2τ, so that
    // the smallest eigenvalue of the damped matrix is at least half the damping (no huge steps).
    auto damped_factor = [&](double extra) {
      std::vector<double> damped = h;
      for (std::size_t i = 0; i < n; ++i) damped[i * n + i] += extra;
      factor = analysis::cholesky(damped, n);
      return factor.has_value();
    };
    double tau = 1e-10 * diag_max;
    while (!damped_factor(tau)) {
      tau *= 10.0;
      if (!std::isfinite(tau) || tau > 1e10 * diag_max) throw NumericalBreakdown("newton: the Hessian is not finite");
    }
    extra_damping_ = 2.0 * tau;
    if (!damped_factor(extra_damping_)) throw NumericalBreakdown("newton: the Hessian is not finite");
  }
  return analysis::cholesky_solve(*factor, n, model.g);
}

std::vector<double> Newton::solve_cg(const Model& model, double mu) {
  const NewtonOptions& solver = defaults();
  const std::size_t n = model.layout.n;
  std::vector<double> d(n, 0.0), r = model.g, p = model.g;
  double rr = dot(r, r);
  const double stop = solver.cg_tolerance * std::sqrt(rr);
  for (std::size_t it = 0; it < solver.cg_max_iterations && std::sqrt(rr) > stop; ++it) {
    std::vector<double> ap = model.hvp(p, mu);
    double curvature = dot(p, ap);
    ++cg_iterations_;
    if (!(curvature > 0.0)) {
      if (it == 0) d = model.g;
      break;
    }
    double alpha = rr / curvature;
    for (std::size_t i = 0; i < n; ++i) {
      d[i] += alpha * p[i];
      r[i] -= alpha * ap[i];
    }
    double rr_next = dot(r, r);
    double beta = rr_next / rr;
    rr = rr_next;
    for (std::size_t i = 0; i < n; ++i) p[i] = r[i] + beta * p[i];
  }
  return d;
}

std::vector<double> Newton::destination(const Model& model, const std::vector<double>& d) const {
  // w <- shrink w - lr d, shrink = 1 - lr λ for decoupled decay (else 1), each group with its own.
  std::vector<double> next(model.layout.n);
  for (std::size_t k = 0; k < model.params.size(); ++k) {
    const NewtonOptions& o = options(model.params[k]->group);
    const double shrink = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode).shrink;
    for (std::size_t i = model.layout.offset[k], end = i + model.params[k]->tensor.numel(); i < end; ++i) {
      next[i] = shrink * model.w[i] - o.lr * d[i];
    }
  }
  return next;
}

void Newton::adapt(Model& model, std::optional<double> before, const LossFn& loss_fn) {
  std::optional<std::vector<double>> previous = previous_point(model);
  if (!previous) return;
  if (damping_ > 0.0) {
    // Rule 2: the angle between the step that led here and the gradient here.
    std::vector<double> delta = model.w;
    for (std::size_t i = 0; i < delta.size(); ++i) delta[i] -= (*previous)[i];
    damping_ = next_damping(damping_, dot(model.g, delta) / std::sqrt(dot(model.g, model.g) * dot(delta, delta)),
                            defaults());
    return;
  }
  // Rule 1: did the undamped step keep its model's promise, on this call's data?
  if (!before) return;
  ratio_ = reduction_ratio(model.value - *before, predicted_, model.noise);
  if (!(ratio_ < 0.25)) return;
  write_params(model.layout, *previous);
  ag::release_tape();
  model = quadratic_model(loss_fn);
  undone_ = true;
  damping_ = defaults().damping_start;
}

void Newton::remember(const Model& model, const std::vector<double>& next, double mu) {
  for (std::size_t k = 0; k < model.params.size(); ++k) {
    state_for(*model.params[k]).tensors[0].copy_(model.layout.tensors[k]);
  }
  predicted_ = 0.0;
  if (mu > 0.0) return;  // a damped step is judged by rule 2, which needs no prediction
  std::vector<double> delta(model.layout.n);
  for (std::size_t i = 0; i < delta.size(); ++i) delta[i] = next[i] - model.w[i];
  predicted_ = std::min(0.0, dot(model.g, delta) + 0.5 * dot(delta, model.hvp(delta, 0.0)));
}

std::optional<std::vector<double>> Newton::previous_point(const Model& model) const {
  std::vector<ag::Tensor> previous;
  for (const Param* p : model.params) {
    const ParamState* s = find_state(*p);
    if (s == nullptr) return std::nullopt;
    previous.push_back(s->tensors[0]);
  }
  std::vector<double> flat;
  flatten_into(previous, model.layout, flat);
  return flat;
}

std::optional<double> Newton::value_at_previous_point(const LossFn& loss_fn) {
  // Every parameter that takes part swaps in its W_t, and gets its value back however this ends.
  std::vector<const Param*> params;
  for (const Param& p : all_params()) {
    if (!p.tensor.requires_grad()) continue;
    if (find_state(p) == nullptr) return std::nullopt;
    params.push_back(&p);
  }
  ag::NoGradGuard no_grad;
  std::vector<ag::Tensor> now;
  double l2 = 0.0;
  for (const Param* p : params) {
    now.push_back(p->tensor.clone());
    const ag::Tensor& previous = find_state(*p)->tensors[0];
    ag::Tensor(p->tensor).copy_(previous);
    const NewtonOptions& o = options(p->group);
    if (o.weight_decay_mode == WeightDecay::coupled) {
      std::vector<double> w = previous.to_vector();
      l2 += 0.5 * o.weight_decay * dot(w, w);
    }
  }
  struct PutBack {
    const std::vector<const Param*>& params;
    const std::vector<ag::Tensor>& now;
    ~PutBack() {
      for (std::size_t k = 0; k < params.size(); ++k) ag::Tensor(params[k]->tensor).copy_(now[k]);
    }
  } put_back{params, now};
  return loss_fn().item() + l2;
}

namespace {
const RegisterOptimizer<Newton, NewtonOptions> newton_registration{
    "newton", "Newton's method, (H + μI) d = g from the tape's second derivatives, μ adapted (004 Prop. 3.10)",
    common_options<NewtonOptions>()
        .real("damping", &NewtonOptions::damping, config::Range::at_least(0),
              "μ added to the Hessian's diagonal: of the first step (adaptive) or of every step")
        .flag("adaptive", &NewtonOptions::adaptive, "adapt μ: ratio test on undamped steps, hypergradient on log μ")
        .real("damping_start", &NewtonOptions::damping_start, config::Range::positive(),
              "adaptive: μ after an undamped step fails the ratio test")
        .real("damping_min", &NewtonOptions::damping_min, config::Range::positive(), "adaptive: below it, μ <- 0")
        .real("hyper_lr", &NewtonOptions::hyper_lr, config::Range::at_least(0), "adaptive: step of log μ")
        .choice("method", &NewtonOptions::method,
                {{"automatic", HessianMethod::automatic}, {"full", HessianMethod::full},
                 {"cg", HessianMethod::conjugate_gradient}},
                "full Hessian + Cholesky, conjugate gradient, or full up to full_hessian_max parameters")
        .count("full_hessian_max", &NewtonOptions::full_hessian_max, 1, 100000, "automatic: largest full Hessian")
        .count("cg_max_iterations", &NewtonOptions::cg_max_iterations, 1, 1000000, "CG iterations per step")
        .real("cg_tolerance", &NewtonOptions::cg_tolerance, config::Range::positive(), "CG stops at ||r|| <= tol ||g||")};
}  // namespace

}  // namespace optim
