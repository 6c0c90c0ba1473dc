#include "optim/sgd.hpp"

#include "optim/registry.hpp"

namespace optim {

namespace {
template <class T>
void sgd_kernel(T* __restrict w, const T* __restrict g, std::size_t n, T lr, T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) w[i] = shrink * w[i] - lr * (g[i] + coupled * w[i]);
}
}  // namespace

SGD::SGD(std::vector<nn::NamedTensor> params, const SGDOptions& options)
    : SGD(one_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup<SGDOptions>> groups, const SGDOptions& defaults)
    : OptimizerWith("sgd", std::move(groups), defaults) {}

void SGD::update() {
  for (const Work& item : gradients()) {
    const SGDOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    detail::dispatch(w.dtype(), [&]<class T>() {
      sgd_kernel<T>(w.data<T>(), item.grad.data<T>(), w.numel(), T(o.lr), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<SGD, SGDOptions> sgd_registration{
    "sgd", "gradient descent with a fixed step: w <- w - lr g (000 §4.2, 002 eq. 4, 004 Prop. 3.2)",
    common_options<SGDOptions>()};
}  // namespace

}  // namespace optim
