#include "optim/adamax.hpp"

#include "optim/registry.hpp"

#include <algorithm>
#include <cmath>

namespace optim {

namespace {
template <class T>
void adamax_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict u, std::size_t n,
                   T step, T b1, T b2, T eps, T coupled, T shrink) {
  const T one_minus_b1 = T(1) - b1;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T mi = b1 * m[i] + one_minus_b1 * gi;
    const T ui = std::max(b2 * u[i], std::abs(gi) + eps);
    m[i] = mi;
    u[i] = ui;
    w[i] = shrink * w[i] - step * mi / ui;
  }
}
}  // namespace

Adamax::Adamax(std::vector<nn::NamedTensor> params, const AdamaxOptions& options)
    : Adamax(one_group(std::move(params)), options) {}

Adamax::Adamax(std::vector<ParamGroup<AdamaxOptions>> groups, const AdamaxOptions& defaults)
    : OptimizerWith("adamax", std::move(groups), defaults) {}

void Adamax::update() {
  for (const Work& item : gradients()) {
    const AdamaxOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    double t = state.scalars[0] += 1.0;
    double step = o.lr / (1.0 - std::pow(o.beta1, t));
    detail::dispatch(w.dtype(), [&]<class T>() {
      adamax_kernel<T>(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(),
                       w.numel(), T(step), T(o.beta1), T(o.beta2), T(o.eps), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Adamax, AdamaxOptions> adamax_registration{
    "adamax", "Adamax: u <- max(β2 u, |g| + ε), w <- w - lr m / ((1 - β1^t) u) (Kingma & Ba 2015 §7.1; torch.optim.Adamax)",
    common_options<AdamaxOptions>()
        .real("beta1", &AdamaxOptions::beta1, config::Range::unit(), "β1, first-moment decay")
        .real("beta2", &AdamaxOptions::beta2, config::Range::unit(), "β2, decay of the infinity norm u")
        .real("eps", &AdamaxOptions::eps, config::Range::positive(), "ε, added to |g| inside the maximum")};
}  // namespace

}  // namespace optim
