#include "optim/newton.hpp"

#include "optim/registry.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/tape.hpp"

namespace optim {

namespace {

/// The flat vector of all parameters: parameter k occupies [offset[k], offset[k] + numel).
struct Layout {
  std::vector<ag::Tensor> tensors;
  std::vector<std::size_t> offset;
  std::size_t n = 0;
};

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

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// In-place Cholesky A = L L^T (lower triangle of row-major `a`); false if not positive definite.
bool cholesky(std::vector<double>& a, std::size_t n) {
  for (std::size_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (std::size_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (std::size_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (std::size_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
  }
  return true;
}

/// Solves L L^T x = b with the factor from cholesky().
std::vector<double> cholesky_solve(const std::vector<double>& l, std::size_t n, std::vector<double> b) {
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < i; ++k) b[i] -= l[i * n + k] * b[k];
    b[i] /= l[i * n + i];
  }
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t k = i + 1; k < n; ++k) b[i] -= l[k * n + i] * b[k];
    b[i] /= l[i * n + i];
  }
  return b;
}

/// Releases the tape however the step ends.
struct ReleaseTape {
  ~ReleaseTape() { ag::release_tape(); }
};

template <class T>
void newton_kernel(T* __restrict w, const double* __restrict d, std::size_t n, double lr, double shrink) {
  for (std::size_t i = 0; i < n; ++i) w[i] = static_cast<T>(shrink * static_cast<double>(w[i]) - lr * d[i]);
}

}  // namespace

Newton::Newton(std::vector<nn::NamedTensor> params, const NewtonOptions& options)
    : Newton(one_group(std::move(params)), options) {}

Newton::Newton(std::vector<ParamGroup<NewtonOptions>> groups, const NewtonOptions& defaults)
    : OptimizerWith("newton", std::move(groups), defaults) {}

void Newton::update() {
  throw std::logic_error("newton: the update needs the loss function");  // unreachable: needs_closure
}

double Newton::closure_step(const Closure&) {
  throw std::logic_error(
      "newton: step(closure) cannot differentiate the loss twice; call step(loss_fn) with a function that "
      "returns the loss tensor (no backward)");
}

double Newton::loss_fn_step(const LossFn& loss_fn) {
  ReleaseTape release;
  const NewtonOptions& solver = defaults();

  // The parameters that take part, and the shift μ + coupled λ of each coordinate.
  Layout layout;
  std::vector<const Param*> params;
  for (const Param& p : all_params()) {
    if (!p.tensor.requires_grad()) continue;
    params.push_back(&p);
    layout.tensors.push_back(p.tensor);
    layout.offset.push_back(layout.n);
    layout.n += p.tensor.numel();
  }
  if (params.empty()) throw std::invalid_argument("newton: no parameter requires grad");
  const std::size_t n = layout.n;
  std::vector<double> shift(n, solver.damping), coupled(n, 0.0);
  for (std::size_t k = 0; k < params.size(); ++k) {
    const NewtonOptions& o = options(params[k]->group);
    double lambda = o.weight_decay_mode == WeightDecay::coupled ? o.weight_decay : 0.0;
    for (std::size_t i = 0; i < params[k]->tensor.numel(); ++i) {
      shift[layout.offset[k] + i] += lambda;
      coupled[layout.offset[k] + i] = lambda;
    }
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
  const double loss_value = loss.item();
  std::vector<ag::Tensor> grads = ag::grad({loss}, layout.tensors, {}, {.create_graph = true});
  std::vector<double> g, w;
  flatten_into(grads, layout, g);
  flatten_into(layout.tensors, layout, w);
  for (std::size_t i = 0; i < n; ++i) g[i] += coupled[i] * w[i];

  // H v from the tape (second-order terms only through gradients that are still on the tape).
  std::vector<std::size_t> live;
  for (std::size_t k = 0; k < grads.size(); ++k) {
    if (grads[k].requires_grad()) live.push_back(k);
  }
  auto hvp = [&](const std::vector<double>& v) {
    std::vector<double> out(n, 0.0);
    if (!live.empty()) {
      std::vector<ag::Tensor> outputs, seeds;
      for (std::size_t k : live) {
        outputs.push_back(grads[k]);
        seeds.push_back(slice_as(v, layout.offset[k], grads[k]));
      }
      std::vector<ag::Tensor> hv = ag::grad(outputs, layout.tensors, seeds, {.retain_graph = true});
      flatten_into(hv, layout, out);
    }
    for (std::size_t i = 0; i < n; ++i) out[i] += shift[i] * v[i];
    return out;
  };

  std::vector<double> d;
  used_full_ = solver.method == HessianMethod::full ||
               (solver.method == HessianMethod::automatic && n <= solver.full_hessian_max);
  cg_iterations_ = 0;
  extra_damping_ = 0.0;
  if (used_full_) {
    std::vector<double> h(n * n), e(n, 0.0);
    for (std::size_t j = 0; j < n; ++j) {
      e[j] = 1.0;
      std::vector<double> column = hvp(e);
      e[j] = 0.0;
      for (std::size_t i = 0; i < n; ++i) h[i * n + j] = column[i];
    }
    double diag_max = 1.0;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < i; ++j) h[i * n + j] = h[j * n + i] = 0.5 * (h[i * n + j] + h[j * n + i]);
      diag_max = std::max(diag_max, std::abs(h[i * n + i]));
    }
    std::vector<double> factor = h;
    if (!cholesky(factor, n)) {
      // The smallest τ = 10^k 1e-10 max(1, max |H_ii|) with H + τ I positive definite, then 2τ, so that
      // the smallest eigenvalue of the damped matrix is at least half the damping (no huge steps).
      auto damped_factor = [&](double extra) {
        factor = h;
        for (std::size_t i = 0; i < n; ++i) factor[i * n + i] += extra;
        return cholesky(factor, n);
      };
      double tau = 1e-10 * diag_max;
      while (!damped_factor(tau)) {
        tau *= 10.0;
        if (!std::isfinite(tau) || tau > 1e10 * diag_max) throw std::runtime_error("newton: the Hessian is not finite");
      }
      extra_damping_ = 2.0 * tau;
      if (!damped_factor(extra_damping_)) throw std::runtime_error("newton: the Hessian is not finite");
    }
    d = cholesky_solve(factor, n, g);
  } else {
    // Conjugate gradient on (H + μ I) d = g.
    d.assign(n, 0.0);
    std::vector<double> r = g, p = g;
    double rr = dot(r, r);
    const double stop = solver.cg_tolerance * std::sqrt(rr);
    for (std::size_t it = 0; it < solver.cg_max_iterations && std::sqrt(rr) > stop; ++it) {
      std::vector<double> ap = hvp(p);
      double curvature = dot(p, ap);
      ++cg_iterations_;
      if (!(curvature > 0.0)) {
        if (it == 0) d = g;
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
  }

  ag::NoGradGuard no_grad;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const NewtonOptions& o = options(params[k]->group);
    detail::Decay decay = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor t = params[k]->tensor;
    const double* dk = d.data() + layout.offset[k];
    detail::dispatch(t.dtype(), [&]<class T>() { newton_kernel<T>(t.data<T>(), dk, t.numel(), o.lr, decay.shrink); });
  }
  return loss_value;
}

namespace {
const RegisterOptimizer<Newton, NewtonOptions> registration{
    "newton", "Newton's method, (H + μI) d = g from the tape's second derivatives (004 Prop. 3.10); small models",
    common_options<NewtonOptions>()
        .real("damping", &NewtonOptions::damping, config::Range::at_least(0), "μ added to the Hessian's diagonal")
        .choice("method", &NewtonOptions::method,
                {{"automatic", HessianMethod::automatic}, {"full", HessianMethod::full},
                 {"cg", HessianMethod::conjugate_gradient}},
                "full Hessian + Cholesky, conjugate gradient, or full up to full_hessian_max parameters")
        .count("full_hessian_max", &NewtonOptions::full_hessian_max, 1, 100000, "automatic: largest full Hessian")
        .count("cg_max_iterations", &NewtonOptions::cg_max_iterations, 1, 1000000, "CG iterations per step")
        .real("cg_tolerance", &NewtonOptions::cg_tolerance, config::Range::positive(), "CG stops at ||r|| <= tol ||g||")};
}  // namespace

}  // namespace optim
