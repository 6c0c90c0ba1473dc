#include "optim/adam.hpp"

#include <cmath>

namespace optim {

namespace {
/// c1 = 1 / (1 - β1^t), c2 = 1 / (1 - β2^t).
template <class T, bool inside>
void adam_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::size_t n, T lr,
                 T b1, T b2, T c1, T c2, T eps, T coupled, T shrink) {
  const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2, step = lr * c1;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T mi = b1 * m[i] + one_minus_b1 * gi;
    const T vi = b2 * v[i] + one_minus_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const T denom = inside ? std::sqrt(vi * c2 + eps) : std::sqrt(vi * c2) + eps;
    w[i] = shrink * w[i] - step * mi / denom;
  }
}
}  // namespace

Adam::Adam(std::vector<nn::NamedTensor> params, const AdamOptions& options)
    : Adam(one_group(std::move(params)), options) {}

Adam::Adam(std::vector<ParamGroup<AdamOptions>> groups, const AdamOptions& defaults)
    : OptimizerWith("adam", std::move(groups), defaults) {}

void Adam::update() {
  for (const Work& item : gradients()) {
    const AdamOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& s = state_for(*item.param);
    double t = s.scalars[0] += 1.0;
    double c1 = 1.0 / (1.0 - std::pow(o.beta1, t)), c2 = 1.0 / (1.0 - std::pow(o.beta2, t));
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto kernel = o.eps_placement == Eps::inside_sqrt ? adam_kernel<T, true> : adam_kernel<T, false>;
      kernel(w.data<T>(), item.grad.data<T>(), s.tensors[0].data<T>(), s.tensors[1].data<T>(), w.numel(), T(o.lr),
             T(o.beta1), T(o.beta2), T(c1), T(c2), T(o.eps), T(d.coupled), T(d.shrink));
    });
  }
}

}  // namespace optim
