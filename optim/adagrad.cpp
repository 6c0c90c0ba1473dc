#include "optim/adagrad.hpp"

#include "optim/registry.hpp"

#include <cmath>

namespace optim {

namespace {
template <class T, bool inside>
void adagrad_kernel(T* __restrict w, const T* __restrict g, T* __restrict acc, std::size_t n, T lr, T eps,
                    T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T a = acc[i] + gi * gi;
    acc[i] = a;
    const T denom = inside ? std::sqrt(a + eps) : std::sqrt(a) + eps;
    w[i] = shrink * w[i] - lr * gi / denom;
  }
}
}  // namespace

Adagrad::Adagrad(std::vector<nn::NamedTensor> params, const AdagradOptions& options)
    : Adagrad(one_group(std::move(params)), options) {}

Adagrad::Adagrad(std::vector<ParamGroup<AdagradOptions>> groups, const AdagradOptions& defaults)
    : OptimizerWith("adagrad", std::move(groups), defaults) {}

void Adagrad::update() {
  for (const Work& item : gradients()) {
    const AdagradOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    ag::Tensor& acc = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      auto kernel = o.eps_placement == Eps::inside_sqrt ? adagrad_kernel<T, true> : adagrad_kernel<T, false>;
      kernel(w.data<T>(), item.grad.data<T>(), acc.data<T>(), w.numel(), T(o.lr), T(o.eps), T(d.coupled),
             T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<Adagrad, AdagradOptions> adagrad_registration{
    "adagrad", "AdaGrad: G <- G + g², w <- w - lr g / sqrt(G + ε) (Duchi et al. 2011; 002 Alg. 2, 004 Def. 3.7)",
    [] { auto t = common_options<AdagradOptions>(); return eps_options(t); }()};
}  // namespace

}  // namespace optim
