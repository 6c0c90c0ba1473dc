#include "optim/nesterov_lookahead.hpp"

#include "optim/registry.hpp"

#include <stdexcept>
#include <unordered_map>

#include "autograd/tape.hpp"

namespace optim {

namespace {
/// w holds the look-ahead point W - γ v on entry, W_t on exit; base holds W_{t-1}.
template <class T>
void lookahead_kernel(T* __restrict w, const T* __restrict base, const T* __restrict g, T* __restrict v,
                      std::size_t n, T lr, T gamma, T coupled, T shrink) {
  for (std::size_t i = 0; i < n; ++i) {
    const T vi = gamma * v[i] + lr * (g[i] + coupled * w[i]);
    v[i] = vi;
    w[i] = shrink * base[i] - vi;
  }
}

template <class T>
void shift_kernel(T* __restrict w, const T* __restrict v, std::size_t n, T gamma) {
  for (std::size_t i = 0; i < n; ++i) w[i] -= gamma * v[i];
}
}  // namespace

NesterovLookahead::NesterovLookahead(std::vector<nn::NamedTensor> params, const NesterovOptions& options)
    : NesterovLookahead(one_group(std::move(params)), options) {}

NesterovLookahead::NesterovLookahead(std::vector<ParamGroup<NesterovOptions>> groups,
                                     const NesterovOptions& defaults)
    : OptimizerWith("nesterov-lookahead", std::move(groups), defaults) {
  require_lr_inside();
}

void NesterovLookahead::require_lr_inside() const {
  for (std::size_t g = 0; g < group_count(); ++g) {
    if (!options(g).lr_inside) {
      throw std::invalid_argument("nesterov-lookahead: lr_inside=false is not available (the look-ahead point "
                                  "W - γ v needs the rate inside v)");
    }
  }
}

void NesterovLookahead::update() {
  throw std::logic_error("nesterov-lookahead: the update needs the closure");  // unreachable: needs_closure
}

double NesterovLookahead::closure_step(const Closure& closure) {
  require_lr_inside();  // set_options may have changed it since construction
  // 1. W -> W - γ v, keeping W.
  std::unordered_map<const ag::TensorImpl*, ag::Tensor> saved;
  {
    ag::NoGradGuard no_grad;
    for (const Param& p : all_params()) {
      ag::Tensor w = p.tensor;
      saved.emplace(w.id(), w.clone());
      if (ParamState* s = find_state(p)) {
        const ag::Tensor& v = s->tensors[0];
        double gamma = options(p.group).momentum;
        detail::dispatch(w.dtype(), [&]<class T>() { shift_kernel<T>(w.data<T>(), v.data<T>(), w.numel(), T(gamma)); });
      }
    }
  }
  auto restore = [&]() {
    ag::NoGradGuard no_grad;
    for (const Param& p : all_params()) {
      ag::Tensor w = p.tensor;
      w.copy_(saved.at(w.id()));
    }
  };
  // 2. The gradient at the look-ahead point.
  double loss = 0;
  try {
    loss = closure();
  } catch (...) {
    restore();
    throw;
  }
  // 3. v and W.
  ag::NoGradGuard no_grad;
  std::vector<Work> work;
  try {
    work = gradients();
  } catch (...) {
    restore();
    throw;
  }
  std::unordered_map<const ag::TensorImpl*, bool> updated;
  for (const Work& item : work) {
    const NesterovOptions& o = options(item.param->group);
    detail::Decay d = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    const ag::Tensor& base = saved.at(w.id());
    ag::Tensor& v = state_for(*item.param).tensors[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      lookahead_kernel<T>(w.data<T>(), base.data<T>(), item.grad.data<T>(), v.data<T>(), w.numel(), T(o.lr),
                          T(o.momentum), T(d.coupled), T(d.shrink));
    });
    updated[w.id()] = true;
  }
  for (const Param& p : all_params()) {
    if (updated.contains(p.tensor.id())) continue;
    ag::Tensor w = p.tensor;
    w.copy_(saved.at(w.id()));
  }
  return loss;
}

namespace {
const RegisterOptimizer<NesterovLookahead, NesterovOptions> nesterov_lookahead_registration{
    "nesterov-lookahead", "Nesterov momentum, the gradient taken at the look-ahead point w - γ v (000 §4.4)",
    momentum_options<NesterovOptions>()};
}  // namespace

}  // namespace optim
