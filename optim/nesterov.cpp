#include "optim/nesterov.hpp"

namespace optim {

namespace {
template <class T>
void nesterov_kernel(T* __restrict w, const T* __restrict g, T* __restrict v, std::size_t n, T lr, T gamma,
                     T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T step = lr * (g[i] + coupled * w[i]);
    const T vi = gamma * v[i] + step;
    v[i] = vi;
    w[i] = shrink * w[i] - (gamma * vi + step);
  }
}
}  // namespace

Nesterov::Nesterov(std::vector<nn::NamedTensor> params, const NesterovOptions& options)
    : Nesterov(one_group(std::move(params)), options) {}

Nesterov::Nesterov(std::vector<ParamGroup<NesterovOptions>> groups, const NesterovOptions& defaults)
    : OptimizerWith("nesterov", std::move(groups), defaults) {}

void Nesterov::update() {
  for (const Work& item : gradients()) {
    const NesterovOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& v = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      nesterov_kernel<T>(w.data<T>(), item.grad.data<T>(), v.data<T>(), w.numel(), T(o.lr), T(o.momentum),
                         T(d.coupled), T(d.shrink));
    });
  }
}

}  // namespace optim
