#include "optim/sgd_hd.hpp"

#include "optim/registry.hpp"

namespace optim {

namespace {
/// d <- g + λ w (the derivative of -θ_t with respect to α), w <- w - α d.
template <class T>
void sgd_hd_kernel(T* __restrict w, const T* __restrict g, T* __restrict d, std::size_t n, T alpha, T decay) {
  for (std::size_t i = 0; i < n; ++i) {
    const T di = g[i] + decay * w[i];
    d[i] = di;
    w[i] -= alpha * di;
  }
}
}  // namespace

SGDHD::SGDHD(std::vector<nn::NamedTensor> params, const SGDHDOptions& options)
    : SGDHD(one_group(std::move(params)), options) {}

SGDHD::SGDHD(std::vector<ParamGroup<SGDHDOptions>> groups, const SGDHDOptions& defaults)
    : HypergradientOptimizer("sgd-hd", std::move(groups), defaults) {}

void SGDHD::apply(const Work& item, ParamState& state, double alpha, const SGDHDOptions& o) {
  // Coupled and decoupled decay give the same plain-SGD step: θ - α (g + λ θ).
  ag::Tensor w = item.param->tensor;
  ag::Tensor& d = state.tensors[0];
  detail::dispatch(w.dtype(), [&]<class T>() {
    sgd_hd_kernel<T>(w.data<T>(), item.grad.data<T>(), d.data<T>(), w.numel(), T(alpha), T(o.weight_decay));
  });
}

namespace {
const RegisterOptimizer<SGDHD, SGDHDOptions> sgd_hd_registration{
    "sgd-hd", "SGD with hypergradient descent on the learning rate (Baydin et al. 2018, Alg. 1; 000 §4.9)",
    [] { auto t = common_options<SGDHDOptions>(); return hyper_options(t, HyperScope::global, HyperScope::per_tensor); }()};
}  // namespace

}  // namespace optim
