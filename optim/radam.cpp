#include "optim/radam.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
// step = lr / (1 - β1^t), times r sqrt(1 - β2^t) when rectified.
template <class T, bool rectified>
void radam_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::size_t n, T step,
                  T b1, T b2, T eps, T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const auto [gi, mi, vi] = detail::update_moments(g[i], w[i], m[i], v[i], coupled, b1, b2);
    if constexpr (rectified) {
      w[i] = shrink * w[i] - step * mi / (std::sqrt(vi) + eps);
    } else {
      w[i] = shrink * w[i] - step * mi;
    }
  }
}
}  // namespace

RAdam::RAdam(std::vector<nn::NamedTensor> params, const RAdamOptions& options)
    : RAdam(one_group(std::move(params)), options) {}

RAdam::RAdam(std::vector<ParamGroup<RAdamOptions>> groups, const RAdamOptions& defaults)
    : OptimizerWith("radam", std::move(groups), defaults) {}

void RAdam::update() {
  for (const Work& item : gradients()) {
    const RAdamOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    double t = state.scalars[0] += 1.0;
    double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
    double rho_inf = 2.0 / (1.0 - o.beta2) - 1.0;
    double rho_t = rho_inf - 2.0 * t * std::pow(o.beta2, t) / bc2;
    bool rectified = rho_t > 5.0;
    double step = o.lr / bc1;
    if (rectified) {
      double r = std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
      step *= r * std::sqrt(bc2);
    }
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto kernel = rectified ? radam_kernel<T, true> : radam_kernel<T, false>;
      kernel(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(), w.numel(),
             T(step), T(o.beta1), T(o.beta2), T(o.eps), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<RAdam, RAdamOptions> radam_registration{
    "radam", "RAdam: Adam, rectified once ρt > 5, momentum SGD before (Liu et al. 2020; torch.optim.RAdam)",
    common_options<RAdamOptions>()
        .real("beta1", &RAdamOptions::beta1, config::Range::unit(), "β1, first-moment decay")
        .real("beta2", &RAdamOptions::beta2, config::Range::unit(), "β2, second-moment decay")
        .real("eps", &RAdamOptions::eps, config::Range::positive(), "ε, beside sqrt(v) (torch's form)")};
}  // namespace

}  // namespace optim
