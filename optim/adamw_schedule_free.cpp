#include "optim/adamw_schedule_free.hpp"

namespace optim {

namespace {
// g' = g + coupled y;  v <- β2 v + (1 - β2) g'^2;  d = g' / (sqrt(v / bc2) + ε) + decoupled y.
template <class T>
void adamw_schedule_free_kernel(T* __restrict y, const T* __restrict g, T* __restrict z, T* __restrict x,
                                T* __restrict v, std::size_t n, T lr, T c, T b1, T b2, T bc2, T eps, T coupled,
                                T decoupled) {
  const T one_minus_b2 = T(1) - b2;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * y[i];
    const T vi = b2 * v[i] + one_minus_b2 * gi * gi;
    v[i] = vi;
    const T d = gi / (std::sqrt(vi / bc2) + eps) + decoupled * y[i];
    detail::schedule_free_move(y[i], z[i], x[i], d, lr, c, b1);
  }
}
}  // namespace

AdamWScheduleFree::AdamWScheduleFree(std::vector<nn::NamedTensor> params, const AdamWScheduleFreeOptions& options)
    : AdamWScheduleFree(one_group(std::move(params)), options) {}

AdamWScheduleFree::AdamWScheduleFree(std::vector<ParamGroup<AdamWScheduleFreeOptions>> groups,
                                     const AdamWScheduleFreeOptions& defaults)
    : ScheduleFree("adamw-schedule-free", std::move(groups), defaults) {}

void AdamWScheduleFree::update() {
  for (const Work& item : gradients()) {
    const AdamWScheduleFreeOptions& o = options(item.param->group);
    const bool decoupled = o.weight_decay_mode == WeightDecay::decoupled;
    ag::Tensor y = item.param->tensor;
    ParamState& state = state_for(*item.param);
    const Step step = advance(state, o);
    const double bc2 = 1.0 - std::pow(o.beta2, step.t);
    detail::dispatch(y.dtype(), [&]<class T>() {
      adamw_schedule_free_kernel<T>(y.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(),
                                    state.tensors[1].data<T>(), state.tensors[2].data<T>(), y.numel(), T(step.lr),
                                    T(step.c), T(o.beta1), T(o.beta2), T(bc2), T(o.eps),
                                    T(decoupled ? 0.0 : o.weight_decay), T(decoupled ? o.weight_decay : 0.0));
    });
  }
}

namespace {
config::OptionTable<AdamWScheduleFreeOptions> adamw_schedule_free_table() {
  using O = AdamWScheduleFreeOptions;
  config::OptionTable<O> table = common_options<O>();
  table.real("beta1", &O::beta1, config::Range::unit(), "β1: y = (1 - β1) z + β1 x, where gradients are taken")
      .real("beta2", &O::beta2, config::Range::unit(), "β2, second-moment decay")
      .real("eps", &O::eps, config::Range::positive(), "ε, beside sqrt(v̂)");
  return detail::schedule_free_options(table);
}

const RegisterOptimizer<AdamWScheduleFree, AdamWScheduleFreeOptions> adamw_schedule_free_registration{
    "adamw-schedule-free", "schedule-free AdamW: Adam-normalised steps on z, evaluated at x, their running "
                           "average; no schedule, warmup only (Defazio et al. 2024)",
    adamw_schedule_free_table()};
}  // namespace

}  // namespace optim
