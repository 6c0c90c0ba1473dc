#include "optim/momentum.hpp"

#include "optim/registry.hpp"

namespace optim {

namespace {
/// lr inside:  v <- γ v + lr g; w <- shrink w - v (heavy ball), or - (γ v + lr g) (Nesterov's step).
/// lr outside: v <- γ v + g;    w <- shrink w - lr v, or - lr (g + γ v) (torch's nesterov=True).
template <class T, bool nesterov, bool lr_inside>
void momentum_kernel(T* __restrict w, const T* __restrict g, T* __restrict v, std::size_t n, T lr, T gamma,
                     T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (lr_inside) {
      const T step = lr * (g[i] + coupled * w[i]);
      const T vi = gamma * v[i] + step;
      v[i] = vi;
      w[i] = shrink * w[i] - (nesterov ? gamma * vi + step : vi);
    } else {
      const T gi = g[i] + coupled * w[i];
      const T vi = gamma * v[i] + gi;
      v[i] = vi;
      w[i] = shrink * w[i] - lr * (nesterov ? gi + gamma * vi : vi);
    }
  }
}

template <class T>
using MomentumKernel = void (*)(T*, const T*, T*, std::size_t, T, T, T, T);

template <class T>
MomentumKernel<T> kernel_for(bool nesterov, bool lr_inside) {
  if (nesterov) return lr_inside ? momentum_kernel<T, true, true> : momentum_kernel<T, true, false>;
  return lr_inside ? momentum_kernel<T, false, true> : momentum_kernel<T, false, false>;
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
      kernel_for<T>(nesterov_, o.lr_inside)(w.data<T>(), item.grad.data<T>(), v.data<T>(), w.numel(), T(o.lr),
                                            T(o.momentum), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Momentum, MomentumOptions> momentum_registration{
    "momentum", "heavy ball: v <- γ v + lr g, w <- w - v (000 §4.3, 004 Prop. 3.8); lr_inside=false: torch's",
    momentum_options<MomentumOptions>().flag("lr_inside", &MomentumOptions::lr_inside,
                                             "true: v <- γ v + lr g, w <- w - v; false: v <- γ v + g, w <- w - lr v")};
}  // namespace

}  // namespace optim
