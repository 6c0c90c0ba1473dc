#include "optim/lars.hpp"

#include <cmath>
#include <utility>

#include "optim/registry.hpp"

namespace optim {

namespace {
/// {‖w‖², ‖g‖²}, summed in double.
template <class T>
std::pair<double, double> squared_norms(const T* __restrict w, const T* __restrict g, std::size_t n) {
  double w2 = 0, g2 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    w2 += double(w[i]) * double(w[i]);
    g2 += double(g[i]) * double(g[i]);
  }
  return {w2, g2};
}

/// v <- γ v + step (g + coupled w); w <- shrink w - v.
template <class T>
void lars_kernel(T* __restrict w, const T* __restrict g, T* __restrict v, std::size_t n, T step, T gamma,
                 T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T vi = gamma * v[i] + step * (g[i] + coupled * w[i]);
    v[i] = vi;
    w[i] = shrink * w[i] - vi;
  }
}
}  // namespace

Lars::Lars(std::vector<nn::NamedTensor> params, const LarsOptions& options)
    : Lars(one_group(std::move(params)), options) {}

Lars::Lars(std::vector<ParamGroup<LarsOptions>> groups, const LarsOptions& defaults)
    : OptimizerWith("lars", std::move(groups), defaults) {}

void Lars::update() {
  for (const Work& item : gradients()) {
    const LarsOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& v = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto [w2, g2] = squared_norms<T>(w.data<T>(), item.grad.data<T>(), w.numel());
      double wn = std::sqrt(w2), gn = std::sqrt(g2);
      double local_lr = wn > 0 && gn > 0 ? o.trust_coefficient * wn / (gn + d.coupled * wn + o.eps) : 1.0;
      lars_kernel<T>(w.data<T>(), item.grad.data<T>(), v.data<T>(), w.numel(), T(o.lr * local_lr), T(o.momentum),
                     T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
config::OptionTable<LarsOptions> lars_table() {
  using O = LarsOptions;
  config::OptionTable<O> table;
  table.real("lr", &O::lr, config::Range::at_least(0), "learning rate (global; each tensor's is lr local_lr)")
      .real("weight_decay", &O::weight_decay, config::Range::at_least(0), "weight decay λ")
      .choice("decoupled", &O::weight_decay_mode, {{"false", WeightDecay::coupled}, {"true", WeightDecay::decoupled}},
              "false: λ in the local rate and the step, g + λw (the paper); true: w <- (1 - lr λ) w")
      .real("momentum", &O::momentum, config::Range::unit(), "γ, the velocity's decay")
      .real("trust_coefficient", &O::trust_coefficient, config::Range::positive(),
            "η of the local rate η ‖w‖ / (‖g‖ + λ‖w‖ + ε)")
      .real("eps", &O::eps, config::Range::at_least(0), "ε of the local rate's denominator");
  return table;
}

const RegisterOptimizer<Lars, LarsOptions> lars_registration{
    "lars", "LARS: momentum SGD, each tensor's rate × η ‖w‖ / (‖g‖ + λ‖w‖ + ε) (You et al. 2017, Alg. 1)",
    lars_table()};
}  // namespace

}  // namespace optim
