#include "optim/nadam.hpp"

#include <cmath>

#include "optim/registry.hpp"

namespace optim {

namespace {
/// torch's NAdam: w <- shrink w - step_g g / d - step_m m / d, d = sqrt(c2 v) + ε (or sqrt(c2 v + ε)).
template <class T, bool inside>
void nadam_torch_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::size_t n,
                        T b1, T b2, T c2, T eps, T step_g, T step_m, T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const auto [gi, mi, vi] = detail::update_moments(g[i], w[i], m[i], v[i], coupled, b1, b2);
    const T denom = inside ? std::sqrt(vi * c2 + eps) : std::sqrt(vi * c2) + eps;
    w[i] = shrink * w[i] - step_g * gi / denom - step_m * mi / denom;
  }
}

/// μ_t = β1 (1 - 0.5 · 0.96^(t ψ)).
double nadam_mu(double beta1, double psi, double t) { return beta1 * (1.0 - 0.5 * std::pow(0.96, t * psi)); }
}  // namespace

Nadam::Nadam(std::vector<nn::NamedTensor> params, const NadamOptions& options)
    : Nadam(one_group(std::move(params)), options) {}

Nadam::Nadam(std::vector<ParamGroup<NadamOptions>> groups, const NadamOptions& defaults)
    : AdamFamily("nadam", std::move(groups), defaults, Numerator::nesterov, SecondMoment::average) {}

void Nadam::update_param(const Work& item) {
  const NadamOptions& o = options(item.param->group);
  if (o.momentum_decay == 0.0) {
    AdamFamily::update_param(item);
    return;
  }
  detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
  ag::Tensor w = item.param->tensor;
  ParamState& state = state_for(*item.param);
  double t = state.scalars[0] += 1.0;
  double mu = nadam_mu(o.beta1, o.momentum_decay, t), mu_next = nadam_mu(o.beta1, o.momentum_decay, t + 1.0);
  double product = state.scalars[1] *= mu;
  double step_g = o.lr * (1.0 - mu) / (1.0 - product), step_m = o.lr * mu_next / (1.0 - product * mu_next);
  double c2 = 1.0 / (1.0 - std::pow(o.beta2, t));
  detail::dispatch(w.dtype(), [&]<class T>() {
    auto kernel = o.eps_placement == Eps::inside_sqrt ? nadam_torch_kernel<T, true> : nadam_torch_kernel<T, false>;
    kernel(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(), w.numel(),
           T(o.beta1), T(o.beta2), T(c2), T(o.eps), T(step_g), T(step_m), T(d.coupled), T(d.shrink));
  });
}

namespace {
const RegisterOptimizer<Nadam, NadamOptions> nadam_registration{
    "nadam", "Nadam: Adam with a Nesterov numerator (Dozat 2016; 000 §4.7), lr 2e-3; momentum_decay > 0: torch's NAdam",
    adam_options<NadamOptions>().real("momentum_decay", &NadamOptions::momentum_decay, config::Range::at_least(0),
                                      "ψ of μ_t = β1 (1 - 0.5 · 0.96^(t ψ)); 0: a constant β1 (torch: 0.004)")};
}  // namespace

}  // namespace optim
