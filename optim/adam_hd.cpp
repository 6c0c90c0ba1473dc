#include "optim/adam_hd.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
/// c1 = 1 / (1 - β1^t), c2 = 1 / (1 - β2^t); d <- m̂ / (sqrt(v̂) + ε) + decoupled w; w <- w - α d.
template <class T, bool inside>
void adam_hd_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, T* __restrict d,
                    std::size_t n, T alpha, T b1, T b2, T c1, T c2, T eps, T coupled, T decoupled) {
  for (std::size_t i = 0; i < n; ++i) {
    const auto [gi, mi, vi] = detail::update_moments(g[i], w[i], m[i], v[i], coupled, b1, b2);
    const T denom = inside ? std::sqrt(vi * c2 + eps) : std::sqrt(vi * c2) + eps;
    const T di = c1 * mi / denom + decoupled * w[i];
    d[i] = di;
    w[i] -= alpha * di;
  }
}
}  // namespace

AdamHD::AdamHD(std::vector<nn::NamedTensor> params, const AdamHDOptions& options)
    : AdamHD(one_group(std::move(params)), options) {}

AdamHD::AdamHD(std::vector<ParamGroup<AdamHDOptions>> groups, const AdamHDOptions& defaults)
    : HypergradientOptimizer("adam-hd", std::move(groups), defaults) {}

void AdamHD::apply(const Work& item, ParamState& state, double alpha, const AdamHDOptions& o) {
  ag::Tensor w = item.param->tensor;
  double t = state.scalars[1] += 1.0;
  double c1 = 1.0 / (1.0 - std::pow(o.beta1, t)), c2 = 1.0 / (1.0 - std::pow(o.beta2, t));
  double coupled = o.weight_decay_mode == WeightDecay::coupled ? o.weight_decay : 0.0;
  double decoupled = o.weight_decay - coupled;
  detail::dispatch(w.dtype(), [&]<class T>() {
    auto kernel = o.eps_placement == Eps::inside_sqrt ? adam_hd_kernel<T, true> : adam_hd_kernel<T, false>;
    kernel(w.data<T>(), item.grad.data<T>(), state.tensors[1].data<T>(), state.tensors[2].data<T>(),
           state.tensors[0].data<T>(), w.numel(), T(alpha), T(o.beta1), T(o.beta2), T(c1), T(c2), T(o.eps),
           T(coupled), T(decoupled));
  });
}

namespace {
const RegisterOptimizer<AdamHD, AdamHDOptions> adam_hd_registration{
    "adam-hd", "Adam with hypergradient descent on the learning rate (Baydin et al. 2018, Alg. 3; 000 §4.9)",
    [] { auto t = adam_options<AdamHDOptions>(); return hyper_options(t, HyperScope::global, HyperScope::per_tensor); }()};
}  // namespace

}  // namespace optim
