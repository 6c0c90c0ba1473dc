#include "optim/lamb.hpp"

#include <cmath>
#include <utility>

#include "optim/registry.hpp"

namespace optim {

namespace {
/// The step's coefficients: g' = g + l2 w; r = c1 m / (sqrt(c2 v) + ε) + in_r w.
template <class T>
struct LambCoefficients {
  T b1, b2, c1, c2, eps, l2, in_r;
  T r(T m, T v, T w) const { return c1 * m / (std::sqrt(c2 * v) + eps) + in_r * w; }
};

/// Updates m and v; returns {‖w‖², ‖r‖²}.
template <class T>
std::pair<double, double> lamb_moments(const T* __restrict w, const T* __restrict g, T* __restrict m,
                                       T* __restrict v, std::size_t n, const LambCoefficients<T>& k) {
  double w2 = 0, r2 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto [gi, mi, vi] = detail::update_moments(g[i], w[i], m[i], v[i], k.l2, k.b1, k.b2);
    const T ri = k.r(mi, vi, w[i]);
    w2 += double(w[i]) * double(w[i]);
    r2 += double(ri) * double(ri);
  }
  return {w2, r2};
}

/// w <- w - step r (r recomputed from the updated m, v and the old w).
template <class T>
void lamb_apply(T* __restrict w, const T* __restrict m, const T* __restrict v, std::size_t n, T step,
                const LambCoefficients<T>& k) {
  for (std::size_t i = 0; i < n; ++i) w[i] -= step * k.r(m[i], v[i], w[i]);
}
}  // namespace

Lamb::Lamb(std::vector<nn::NamedTensor> params, const LambOptions& options)
    : Lamb(one_group(std::move(params)), options) {}

Lamb::Lamb(std::vector<ParamGroup<LambOptions>> groups, const LambOptions& defaults)
    : OptimizerWith("lamb", std::move(groups), defaults) {}

void Lamb::update() {
  for (const Work& item : gradients()) {
    const LambOptions& o = options(item.param->group);
    ag::Tensor w = item.param->tensor;
    ParamState& state = state_for(*item.param);
    double t = state.scalars[0] += 1.0;
    double c1 = o.bias_correction ? 1.0 / (1.0 - std::pow(o.beta1, t)) : 1.0;
    double c2 = o.bias_correction ? 1.0 / (1.0 - std::pow(o.beta2, t)) : 1.0;
    bool decoupled = o.weight_decay_mode == WeightDecay::decoupled;
    detail::dispatch(w.dtype(), [&]<class T>() {
      const LambCoefficients<T> k{T(o.beta1), T(o.beta2), T(c1), T(c2), T(o.eps),
                                  T(decoupled ? 0.0 : o.weight_decay), T(decoupled ? o.weight_decay : 0.0)};
      T* m = state.tensors[0].data<T>();
      T* v = state.tensors[1].data<T>();
      auto [w2, r2] = lamb_moments<T>(w.data<T>(), item.grad.data<T>(), m, v, w.numel(), k);
      double ratio = w2 > 0 && r2 > 0 ? std::sqrt(w2) / std::sqrt(r2) : 1.0;
      lamb_apply<T>(w.data<T>(), m, v, w.numel(), T(o.lr * ratio), k);
    });
  }
}

namespace {
config::OptionTable<LambOptions> lamb_table() {
  using O = LambOptions;
  config::OptionTable<O> table;
  table.real("lr", &O::lr, config::Range::at_least(0), "learning rate")
      .real("weight_decay", &O::weight_decay, config::Range::at_least(0), "weight decay λ")
      .choice("decoupled", &O::weight_decay_mode, {{"false", WeightDecay::coupled}, {"true", WeightDecay::decoupled}},
              "true: r + λw, inside the trust ratio (the paper); false: L2, g + λw into m and v")
      .real("beta1", &O::beta1, config::Range::unit(), "β1, first-moment decay")
      .real("beta2", &O::beta2, config::Range::unit(), "β2, second-moment decay")
      .real("eps", &O::eps, config::Range::positive(), "ε, beside sqrt(v̂)")
      .flag("bias_correction", &O::bias_correction, "divide m and v by 1 - β^t");
  return table;
}

const RegisterOptimizer<Lamb, LambOptions> lamb_registration{
    "lamb", "LAMB: Adam's step r scaled per tensor by ‖w‖ / ‖r‖ (You et al. 2020, Alg. 2; optax.lamb)", lamb_table()};
}  // namespace

}  // namespace optim
