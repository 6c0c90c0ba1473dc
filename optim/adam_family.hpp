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

#include <cmath>

#include "optim/optimizer.hpp"

namespace optim {

enum class Numerator { momentum, nesterov };
enum class SecondMoment { average, max_of_raw, max_of_corrected };

namespace detail {

/// The coefficients and choices of one step (the formula above).
struct AdamFamilyStep {
  double lr, beta1, beta2, c1, c2, eps, coupled, shrink;
  Eps eps_placement;
  Numerator numerator;
  SecondMoment second;
};

/// One step of the loop above over a parameter: w, m, v (and v_max unless second is average) in place, from
/// the gradient g; float32 or float64 (w's dtype). Each choice is compiled as its own loop (adam_family.cpp),
/// so that every one vectorises.
void adam_family_step(const AdamFamilyStep& step, ag::Tensor& w, const ag::Tensor& g, ag::Tensor& m, ag::Tensor& v,
                      ag::Tensor* v_max);

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
    detail::AdamFamilyStep step{o.lr, o.beta1, o.beta2, c1, c2, o.eps, decay.coupled, decay.shrink,
                                o.eps_placement, numerator_, second_};
    detail::adam_family_step(step, w, item.grad, state.tensors[0], state.tensors[1],
                             second_ == SecondMoment::average ? nullptr : &state.tensors[2]);
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
