#include "optim/asgd.hpp"

#include <algorithm>
#include <cmath>

#include "optim/registry.hpp"

namespace optim {

namespace {
// w <- shrink w - η (g + coupled w); then ax <- w (copy) or ax <- ax + μ (w - ax).
template <class T, bool copy>
void asgd_kernel(T* __restrict w, const T* __restrict g, T* __restrict ax, std::size_t n, T eta, T mu, T coupled,
                 T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T wi = shrink * w[i] - eta * (g[i] + coupled * w[i]);
    w[i] = wi;
    if constexpr (copy) {
      ax[i] = wi;
    } else {
      ax[i] += (wi - ax[i]) * mu;
    }
  }
}
}  // namespace

ASGD::ASGD(std::vector<nn::NamedTensor> params, const ASGDOptions& options)
    : ASGD(one_group(std::move(params)), options) {}

ASGD::ASGD(std::vector<ParamGroup<ASGDOptions>> groups, const ASGDOptions& defaults)
    : OptimizerWith("asgd", std::move(groups), defaults) {}

void ASGD::init_state(ParamState& state, const Param& param) {
  state.scalars[1] = options(param.group).lr;
  state.scalars[2] = 1.0;
}

void ASGD::update() {
  for (const Work& item : gradients()) {
    const ASGDOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    double& eta = state.scalars[1];
    double& mu = state.scalars[2];
    const double t = state.scalars[0] += 1.0;
    const double shrink = d.shrink * (1.0 - o.lambd * eta);
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto kernel = mu == 1.0 ? asgd_kernel<T, true> : asgd_kernel<T, false>;
      kernel(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), w.numel(), T(eta), T(mu), T(d.coupled),
             T(shrink));
    });
    eta = o.lr / std::pow(1.0 + o.lambd * o.lr * t, o.alpha);
    mu = 1.0 / std::max(1.0, t - o.t0);
  }
}

namespace {
const RegisterOptimizer<ASGD, ASGDOptions> asgd_registration{
    "asgd", "ASGD: SGD with η_t = lr / (1 + λ lr t)^α, evaluated at the mean of the iterates after step t0 "
            "(Polyak & Juditsky 1992; torch.optim.ASGD)",
    common_options<ASGDOptions>()
        .real("lambd", &ASGDOptions::lambd, config::Range::at_least(0), "λ: w <- (1 - λ η) w, and η's decay")
        .real("alpha", &ASGDOptions::alpha, config::Range::at_least(0), "α, the power of η's decay")
        .real("t0", &ASGDOptions::t0, config::Range::at_least(0), "steps before the averaging starts")};
}  // namespace

}  // namespace optim
