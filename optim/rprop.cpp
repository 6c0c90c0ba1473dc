#include "optim/rprop.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "optim/registry.hpp"
#include "optim/sign.hpp"

namespace optim {

void RpropOptions::check(const OptionCheck& c) const {
  c.common(lr, weight_decay);
  if (!(eta_minus > 0.0 && eta_minus < 1.0)) c.fail("eta_minus", "in (0, 1)", eta_minus);
  if (!(eta_plus > 1.0) || !std::isfinite(eta_plus)) c.fail("eta_plus", "> 1 and finite", eta_plus);
  c.non_negative("step_min", step_min);
  c.positive("step_max", step_max);
  if (step_max < step_min) c.fail("step_max", ">= step_min (" + config::format_real(step_min) + ")", step_max);
}

namespace {
template <class T>
void rprop_kernel(T* __restrict w, const T* __restrict g, T* __restrict prev, T* __restrict s, std::size_t n,
                  T eta_minus, T eta_plus, T s_min, T s_max, T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T p = gi * prev[i];
    const T factor = p > T(0) ? eta_plus : (p < T(0) ? eta_minus : T(1));
    const T si = std::min(std::max(s[i] * factor, s_min), s_max);
    const T kept = p < T(0) ? T(0) : gi;
    s[i] = si;
    prev[i] = kept;
    w[i] = shrink * w[i] - si * detail::sign(kept);
  }
}
}  // namespace

Rprop::Rprop(std::vector<nn::NamedTensor> params, const RpropOptions& options)
    : Rprop(one_group(std::move(params)), options) {}

Rprop::Rprop(std::vector<ParamGroup<RpropOptions>> groups, const RpropOptions& defaults)
    : OptimizerWith("rprop", std::move(groups), defaults) {}

void Rprop::init_state(ParamState& state, const Param& param) { state.tensors[1].fill_(options(param.group).lr); }

void Rprop::update() {
  for (const Work& item : gradients()) {
    const RpropOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    state.scalars[0] += 1.0;
    detail::dispatch(w.dtype(), [&]<class T>() {
      rprop_kernel<T>(w.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(), state.tensors[1].data<T>(),
                      w.numel(), T(o.eta_minus), T(o.eta_plus), T(o.step_min), T(o.step_max), T(d.coupled),
                      T(d.shrink));
    });
  }
}

namespace {
config::OptionTable<RpropOptions> rprop_table() {
  using O = RpropOptions;
  const double inf = std::numeric_limits<double>::infinity();
  config::OptionTable<O> table;
  table.real("lr", &O::lr, config::Range::at_least(0), "initial step size s (torch's lr)")
      .real("weight_decay", &O::weight_decay, config::Range::at_least(0), "weight decay λ")
      .choice("decoupled", &O::weight_decay_mode, {{"false", WeightDecay::coupled}, {"true", WeightDecay::decoupled}},
              "false: L2, g + λw before the signs; true: w <- (1 - lr λ) w")
      .real("eta_minus", &O::eta_minus, config::Range{0.0, 1.0, true, true}, "η-, the step's factor after a sign flip")
      .real("eta_plus", &O::eta_plus, config::Range{1.0, inf, true, false},
            "η+, the step's factor while the sign holds")
      .real("step_min", &O::step_min, config::Range::at_least(0), "smallest step size")
      .real("step_max", &O::step_max, config::Range::positive(), "largest step size");
  return table;
}

const RegisterOptimizer<Rprop, RpropOptions> rprop_registration{
    "rprop", "Rprop: per-weight steps, × η+ while the gradient's sign holds, × η- when it flips (torch.optim.Rprop)",
    rprop_table()};
}  // namespace

}  // namespace optim
