#include "optim/momentum.hpp"

namespace optim {

namespace {
template <class T>
void momentum_kernel(T* __restrict w, const T* __restrict g, T* __restrict v, std::size_t n, T lr, T gamma,
                     T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T vi = gamma * v[i] + lr * (g[i] + coupled * w[i]);
    v[i] = vi;
    w[i] = shrink * w[i] - vi;
  }
}
}  // namespace

Momentum::Momentum(std::vector<nn::NamedTensor> params, const MomentumOptions& options)
    : Momentum(one_group(std::move(params)), options) {}

Momentum::Momentum(std::vector<ParamGroup<MomentumOptions>> groups, const MomentumOptions& defaults)
    : OptimizerWith("momentum", std::move(groups), defaults) {}

void Momentum::update() {
  for (const Work& item : gradients()) {
    const MomentumOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& v = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      momentum_kernel<T>(w.data<T>(), item.grad.data<T>(), v.data<T>(), w.numel(), T(o.lr), T(o.momentum),
                         T(d.coupled), T(d.shrink));
    });
  }
}

}  // namespace optim
