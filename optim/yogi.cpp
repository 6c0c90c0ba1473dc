#include "optim/yogi.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
template <class T>
void yogi_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::size_t n, T step,
                 T b1, T b2, T c2, T eps, T coupled, T shrink) {
  const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T g2 = gi * gi;
    const T mi = b1 * m[i] + one_minus_b1 * gi;
    const T diff = v[i] - g2;
    const T sign = T(diff > T(0)) - T(diff < T(0));
    const T vi = v[i] - one_minus_b2 * sign * g2;
    m[i] = mi;
    v[i] = vi;
    w[i] = shrink * w[i] - step * mi / (std::sqrt(vi * c2) + eps);
  }
}
}  // namespace

Yogi::Yogi(std::vector<nn::NamedTensor> params, const YogiOptions& options)
    : Yogi(one_group(std::move(params)), options) {}

Yogi::Yogi(std::vector<ParamGroup<YogiOptions>> groups, const YogiOptions& defaults)
    : OptimizerWith("yogi", std::move(groups), defaults) {}

void Yogi::update() {
  for (const Work& item : gradients()) {
    const YogiOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    double t = state.scalars[0] += 1.0;
    double step = o.bias_correction ? o.lr / (1.0 - std::pow(o.beta1, t)) : o.lr;
    double c2 = o.bias_correction ? 1.0 / (1.0 - std::pow(o.beta2, t)) : 1.0;
    detail::dispatch(w.dtype(), [&]<class T>() {
      yogi_kernel<T>(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(),
                     w.numel(), T(step), T(o.beta1), T(o.beta2), T(c2), T(o.eps), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Yogi, YogiOptions> yogi_registration{
    "yogi", "Yogi: v <- v - (1 - β2) sign(v - g²) g², w <- w - lr m / (sqrt(v) + ε) (Zaheer et al. 2018, Alg. 2)",
    common_options<YogiOptions>()
        .real("beta1", &YogiOptions::beta1, config::Range::unit(), "β1, first-moment decay")
        .real("beta2", &YogiOptions::beta2, config::Range::unit(), "β2: v moves by (1 - β2) g² a step")
        .real("eps", &YogiOptions::eps, config::Range::positive(), "ε of the denominator")
        .flag("bias_correction", &YogiOptions::bias_correction, "divide m and v by 1 - β^t (the paper does not)")};
}  // namespace

}  // namespace optim
