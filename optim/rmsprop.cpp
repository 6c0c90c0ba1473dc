#include "optim/rmsprop.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
template <class T, bool inside>
void rmsprop_kernel(T* __restrict w, const T* __restrict g, T* __restrict sq, std::size_t n, T lr, T beta,
                    T eps, T coupled, T shrink) {
  const T one_minus_beta = T(1) - beta;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T v = beta * sq[i] + one_minus_beta * gi * gi;
    sq[i] = v;
    const T denom = inside ? std::sqrt(v + eps) : std::sqrt(v) + eps;
    w[i] = shrink * w[i] - lr * gi / denom;
  }
}
}  // namespace

RMSProp::RMSProp(std::vector<nn::NamedTensor> params, const RMSPropOptions& options)
    : RMSProp(one_group(std::move(params)), options) {}

RMSProp::RMSProp(std::vector<ParamGroup<RMSPropOptions>> groups, const RMSPropOptions& defaults)
    : OptimizerWith("rmsprop", std::move(groups), defaults) {}

void RMSProp::update() {
  for (const Work& item : gradients()) {
    const RMSPropOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& sq = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto kernel = o.eps_placement == Eps::inside_sqrt ? rmsprop_kernel<T, true> : rmsprop_kernel<T, false>;
      kernel(w.data<T>(), item.grad.data<T>(), sq.data<T>(), w.numel(), T(o.lr), T(o.beta), T(o.eps),
             T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<RMSProp, RMSPropOptions> rmsprop_registration{
    "rmsprop", "RMSProp: v <- β v + (1 - β) g², w <- w - lr g / sqrt(v + ε) (001 §4.1, 004 Prop. 3.11)",
    [] { auto t = common_options<RMSPropOptions>(); t.real("beta", &RMSPropOptions::beta, config::Range::unit(), "β, decay of the squared-gradient average"); return eps_options(t); }()};
}  // namespace

}  // namespace optim
