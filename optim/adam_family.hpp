// The one update loop of Adam, Nadam, AMSGrad and NAMSGrad, which differ in two choices:
//   g' = g + coupled w
//   m <- β1 m + (1 - β1) g',   v <- β2 v + (1 - β2) g'^2
//   second = v c2                      (SecondMoment::average: Adam, Nadam)
//          = max(v̂, v) c2, v̂ <- that max  (SecondMoment::max_of_raw: AMSGrad)
//          = max(v̂, v c2), v̂ <- that max  (SecondMoment::max_of_corrected: NAMSGrad)
//   numerator = m                      (Numerator::momentum: Adam, AMSGrad)
//             = β1 m + (1 - β1) g'     (Numerator::nesterov: Nadam, NAMSGrad)
//   w <- shrink w - lr c1 numerator / (sqrt(second) + ε)      (or sqrt(second + ε) with Eps::inside_sqrt)
// with c1 = 1 / (1 - β1^t), c2 = 1 / (1 - β2^t), or both 1 when the options say bias_correction = false.
// Each method's header documents its own formula and its mapping to the source documents.
#pragma once

#include <algorithm>
#include <cmath>

#include "optim/optimizer.hpp"

namespace optim {

enum class Numerator { momentum, nesterov };
enum class SecondMoment { average, max_of_raw, max_of_corrected };

namespace detail {

template <class T, bool inside, Numerator numerator, SecondMoment second_moment>
void adam_family_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v,
                        T* __restrict v_max, std::size_t n, T lr, T b1, T b2, T c1, T c2, T eps, T coupled,
                        T shrink) {
  const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2, step = lr * c1;
  for (std::size_t i = 0; i < n; ++i) {
    const T gi = g[i] + coupled * w[i];
    const T mi = b1 * m[i] + one_minus_b1 * gi;
    const T vi = b2 * v[i] + one_minus_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    T second;
    if constexpr (second_moment == SecondMoment::average) {
      second = vi * c2;
    } else if constexpr (second_moment == SecondMoment::max_of_raw) {
      const T highest = std::max(v_max[i], vi);
      v_max[i] = highest;
      second = highest * c2;
    } else {
      const T highest = std::max(v_max[i], vi * c2);
      v_max[i] = highest;
      second = highest;
    }
    const T denom = inside ? std::sqrt(second + eps) : std::sqrt(second) + eps;
    const T top = numerator == Numerator::nesterov ? b1 * mi + one_minus_b1 * gi : mi;
    w[i] = shrink * w[i] - step * top / denom;
  }
}

template <class T>
using AdamFamilyKernel = void (*)(T*, const T*, T*, T*, T*, std::size_t, T, T, T, T, T, T, T, T);

/// The compiled loop for run-time choices (each choice is a template argument, so every loop vectorises).
template <class T, bool inside, Numerator numerator>
AdamFamilyKernel<T> kernel_for(SecondMoment second) {
  switch (second) {
    case SecondMoment::max_of_raw: return adam_family_kernel<T, inside, numerator, SecondMoment::max_of_raw>;
    case SecondMoment::max_of_corrected:
      return adam_family_kernel<T, inside, numerator, SecondMoment::max_of_corrected>;
    case SecondMoment::average: break;
  }
  return adam_family_kernel<T, inside, numerator, SecondMoment::average>;
}

template <class T>
AdamFamilyKernel<T> kernel_for(Eps eps, Numerator numerator, SecondMoment second) {
  bool inside = eps == Eps::inside_sqrt;
  if (numerator == Numerator::nesterov) {
    return inside ? kernel_for<T, true, Numerator::nesterov>(second) : kernel_for<T, false, Numerator::nesterov>(second);
  }
  return inside ? kernel_for<T, true, Numerator::momentum>(second) : kernel_for<T, false, Numerator::momentum>(second);
}

}  // namespace detail

/// Base of the four methods. Options need lr, beta1, beta2, eps, eps_placement, weight_decay,
/// weight_decay_mode, and may have bool bias_correction (absent: always corrected). State per parameter:
/// tensors {exp_avg, exp_avg_sq[, max_exp_avg_sq]}, scalars {step} (Nadam adds mu_product).
template <class Options>
class AdamFamily : public OptimizerWith<Options> {
 protected:
  AdamFamily(std::string name, std::vector<ParamGroup<Options>> groups, const Options& defaults, Numerator numerator,
             SecondMoment second)
      : OptimizerWith<Options>(std::move(name), std::move(groups), defaults), numerator_(numerator), second_(second) {}

  void update() override {
    for (const auto& item : this->gradients()) update_param(item);
  }

  /// One parameter's step (Nadam's torch form replaces it when momentum_decay > 0).
  virtual void update_param(const Optimizer::Work& item) {
    const Options& o = this->options(item.param->group);
    detail::Decay decay = detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
    ag::Tensor w = item.param->tensor;
    auto& state = this->state_for(*item.param);
    double t = state.scalars[0] += 1.0;
    bool corrected = true;
    if constexpr (requires { o.bias_correction; }) corrected = o.bias_correction;
    double c1 = corrected ? 1.0 / (1.0 - std::pow(o.beta1, t)) : 1.0;
    double c2 = corrected ? 1.0 / (1.0 - std::pow(o.beta2, t)) : 1.0;
    detail::dispatch(w.dtype(), [&]<class T>() {
      T* v_max = second_ == SecondMoment::average ? nullptr : state.tensors[2].template data<T>();
      detail::kernel_for<T>(o.eps_placement, numerator_, second_)(
          w.template data<T>(), item.grad.template data<T>(), state.tensors[0].template data<T>(),
          state.tensors[1].template data<T>(), v_max, w.numel(), T(o.lr), T(o.beta1), T(o.beta2), T(c1), T(c2),
          T(o.eps), T(decay.coupled), T(decay.shrink));
    });
  }

  std::vector<std::string> tensor_state_names() const override {
    if (second_ == SecondMoment::average) return {"exp_avg", "exp_avg_sq"};
    return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }

 private:
  Numerator numerator_;
  SecondMoment second_;
};

}  // namespace optim
