#include "optim/momentum.hpp"

#include "optim/registry.hpp"

namespace optim {

namespace {
/// v <- γ v + lr g; w <- shrink w - v (heavy ball), or - (γ v + lr g) (Nesterov's look-ahead step).
template <class T, bool nesterov>
void momentum_kernel(T* __restrict w, const T* __restrict g, T* __restrict v, std::size_t n, T lr, T gamma,
                     T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T step = lr * (g[i] + coupled * w[i]);
    const T vi = gamma * v[i] + step;
    v[i] = vi;
    w[i] = shrink * w[i] - (nesterov ? gamma * vi + step : vi);
  }
}
}  // namespace

Momentum::Momentum(std::vector<nn::NamedTensor> params, const MomentumOptions& options)
    : Momentum(one_group(std::move(params)), options) {}

Momentum::Momentum(std::vector<ParamGroup<MomentumOptions>> groups, const MomentumOptions& defaults)
    : Momentum("momentum", std::move(groups), defaults, false) {}

Momentum::Momentum(std::string name, std::vector<ParamGroup<MomentumOptions>> groups,
                   const MomentumOptions& defaults, bool nesterov)
    : OptimizerWith(std::move(name), std::move(groups), defaults), nesterov_(nesterov) {}

void Momentum::update() {
  for (const Work& item : gradients()) {
    const MomentumOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& v = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto kernel = nesterov_ ? momentum_kernel<T, true> : momentum_kernel<T, false>;
      kernel(w.data<T>(), item.grad.data<T>(), v.data<T>(), w.numel(), T(o.lr), T(o.momentum), T(d.coupled),
             T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Momentum, MomentumOptions> registration{
    "momentum", "heavy ball: v <- γ v + lr g, w <- w - v (000 §4.3, 004 Prop. 3.8)",
    momentum_options<MomentumOptions>()};
}  // namespace

}  // namespace optim
