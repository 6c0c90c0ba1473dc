#include "optim/adadelta.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
template <class T>
void adadelta_kernel(T* __restrict w, const T* __restrict g, T* __restrict v, T* __restrict u, std::size_t n, T lr,
                     T rho, T eps, T coupled, T shrink) {
  const T one_minus_rho = T(1) - rho;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T vi = rho * v[i] + one_minus_rho * gi * gi;
    const T delta = std::sqrt(u[i] + eps) / std::sqrt(vi + eps) * gi;
    v[i] = vi;
    u[i] = rho * u[i] + one_minus_rho * delta * delta;
    w[i] = shrink * w[i] - lr * delta;
  }
}
}  // namespace

Adadelta::Adadelta(std::vector<nn::NamedTensor> params, const AdadeltaOptions& options)
    : Adadelta(one_group(std::move(params)), options) {}

Adadelta::Adadelta(std::vector<ParamGroup<AdadeltaOptions>> groups, const AdadeltaOptions& defaults)
    : OptimizerWith("adadelta", std::move(groups), defaults) {}

void Adadelta::update() {
  for (const Work& item : gradients()) {
    const AdadeltaOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    detail::dispatch(w.dtype(), [&]<class T>() {
      adadelta_kernel<T>(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(),
                         w.numel(), T(o.lr), T(o.rho), T(o.eps), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Adadelta, AdadeltaOptions> adadelta_registration{
    "adadelta", "Adadelta: Δ = sqrt(u + ε) / sqrt(v + ε) g, w <- w - lr Δ (Zeiler 2012; torch.optim.Adadelta)",
    common_options<AdadeltaOptions>()
        .real("rho", &AdadeltaOptions::rho, config::Range::unit(), "ρ, decay of the averages of g² and Δ²")
        .real("eps", &AdadeltaOptions::eps, config::Range::positive(), "ε, inside both square roots")};
}  // namespace

}  // namespace optim
