#include "optim/lion.hpp"

#include "optim/registry.hpp"
#include "optim/sign.hpp"

namespace optim {

namespace {
template <class T>
void lion_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, std::size_t n, T lr, T b1, T b2,
                 T coupled, T shrink) {
  const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T c = b1 * m[i] + one_minus_b1 * gi;
    w[i] = shrink * w[i] - lr * detail::sign(c);
    m[i] = b2 * m[i] + one_minus_b2 * gi;
  }
}
}  // namespace

Lion::Lion(std::vector<nn::NamedTensor> params, const LionOptions& options)
    : Lion(one_group(std::move(params)), options) {}

Lion::Lion(std::vector<ParamGroup<LionOptions>> groups, const LionOptions& defaults)
    : OptimizerWith("lion", std::move(groups), defaults) {}

void Lion::update() {
  for (const Work& item : gradients()) {
    const LionOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& m = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      lion_kernel<T>(w.data<T>(), item.grad.data<T>(), m.data<T>(), w.numel(), T(o.lr), T(o.beta1), T(o.beta2),
                     T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Lion, LionOptions> lion_registration{
    "lion", "Lion: w <- w - lr sign(β1 m + (1 - β1) g), m <- β2 m + (1 - β2) g (Chen et al. 2023; optax.lion)",
    common_options<LionOptions>()
        .real("beta1", &LionOptions::beta1, config::Range::unit(), "β1, the step's interpolation of m and g")
        .real("beta2", &LionOptions::beta2, config::Range::unit(), "β2, decay of the momentum m")};
}  // namespace

}  // namespace optim
