#include "optim/sgd.hpp"

#include <optional>

#include "autograd/in_backward.hpp"
#include "optim/registry.hpp"

namespace optim {

namespace {
template <class T>
void sgd_kernel(T* __restrict w, const T* __restrict g, std::size_t n, T lr, T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) w[i] = shrink * w[i] - lr * (g[i] + coupled * w[i]);
}
}  // namespace

/// w <- (1 - lr λ) w - lr dW inside backward, with the group's options at that moment.
class SGD::Rule : public ag::InBackwardUpdate {
 public:
  Rule(const SGD& owner, std::size_t group) : owner_(owner), group_(group) {}
  std::optional<ag::LinearUpdate> coefficients() const override {
    const SGDOptions& o = owner_.options(group_);
    if (!o.in_backward) return std::nullopt;
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    return ag::LinearUpdate{.alpha = -o.lr, .beta = d.shrink - o.lr * d.coupled};
  }

 private:
  const SGD& owner_;
  std::size_t group_;
};

SGD::SGD(std::vector<nn::NamedTensor> params, const SGDOptions& options)
    : SGD(one_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup<SGDOptions>> groups, const SGDOptions& defaults)
    : OptimizerWith("sgd", std::move(groups), defaults) {
  for (std::size_t g = 0; g < group_count(); ++g) {
    if (!options(g).in_backward) continue;
    auto rule = std::make_shared<const Rule>(*this, g);
    for (const nn::NamedTensor& p : params(g)) {
      ag::set_update_in_backward(p.second, rule);
      rules_.emplace_back(p.second, rule);
    }
  }
}

SGD::~SGD() {
  for (const auto& [param, rule] : rules_) ag::remove_update_in_backward(param, rule.get());
}

void SGD::update() {
  // Parameters updated inside backward have no gradient: gradients() leaves them out.
  for (const Work& item : gradients()) {
    const SGDOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    detail::dispatch(w.dtype(), [&]<class T>() {
      sgd_kernel<T>(w.data<T>(), item.grad.data<T>(), w.numel(), T(o.lr), T(d.coupled), T(d.shrink));
    });
  }
}

namespace {
const RegisterOptimizer<SGD, SGDOptions> sgd_registration{
    "sgd", "gradient descent with a fixed step: w <- w - lr g (000 §4.2, 002 eq. 4, 004 Prop. 3.2)",
    common_options<SGDOptions>().flag("in_backward", &SGDOptions::in_backward,
                                      "update linear layers' weights inside backward, no gradient stored "
                                      "(their .grad() stays empty)")};
}  // namespace

}  // namespace optim
