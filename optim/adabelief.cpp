#include "optim/adabelief.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
template <class T>
void adabelief_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict s, std::size_t n,
                      T step, T b1, T b2, T c2, T eps, T coupled, T shrink) {
  const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T mi = b1 * m[i] + one_minus_b1 * gi;
    const T r = gi - mi;
    const T si = b2 * s[i] + one_minus_b2 * r * r + eps;
    m[i] = mi;
    s[i] = si;
    w[i] = shrink * w[i] - step * mi / (std::sqrt(si * c2) + eps);
  }
}
}  // namespace

AdaBelief::AdaBelief(std::vector<nn::NamedTensor> params, const AdaBeliefOptions& options)
    : AdaBelief(one_group(std::move(params)), options) {}

AdaBelief::AdaBelief(std::vector<ParamGroup<AdaBeliefOptions>> groups, const AdaBeliefOptions& defaults)
    : OptimizerWith("adabelief", std::move(groups), defaults) {}

void AdaBelief::update() {
  for (const Work& item : gradients()) {
    const AdaBeliefOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    double t = state.scalars[0] += 1.0;
    double step = o.lr / (1.0 - std::pow(o.beta1, t)), c2 = 1.0 / (1.0 - std::pow(o.beta2, t));
    detail::dispatch(w.dtype(), [&]<class T>() {
      adabelief_kernel<T>(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(),
                          w.numel(), T(step), T(o.beta1), T(o.beta2), T(c2), T(o.eps), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<AdaBelief, AdaBeliefOptions> adabelief_registration{
    "adabelief", "AdaBelief: Adam with s <- β2 s + (1 - β2)(g - m)² + ε in place of g² (Zhuang et al. 2020)",
    common_options<AdaBeliefOptions>()
        .real("beta1", &AdaBeliefOptions::beta1, config::Range::unit(), "β1, first-moment decay")
        .real("beta2", &AdaBeliefOptions::beta2, config::Range::unit(), "β2, decay of the belief s = E(g - m)²")
        .real("eps", &AdaBeliefOptions::eps, config::Range::positive(), "ε, added to s and to the denominator")};
}  // namespace

}  // namespace optim
