// NAMSGrad: AMSGrad with Nesterov momentum, the method of 000 §4.8 (000 §4.6's AMSGrad with the Nesterov
// numerator of Nadam, §4.7):
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2,   v̂ <- max(v̂, v)          (v̂ starts at 0)
//   w <- w - lr (β1 m + (1 - β1) g) / (sqrt(v̂) + ε)               (bias_correction = false, the default)
// With bias_correction = true, Nadam's corrections, and the maximum over the corrected second moment:
//   v̂ <- max(v̂, v / (1 - β2^t)),   w <- w - lr / (sqrt(v̂) + ε) (β1 m / (1 - β1^t) + (1 - β1) g / (1 - β1^t))
// Mapping to 000's listing, which divides m and v by the constants (1 - β1) and (1 - β2) before the
// maximum: it is the default form above with lr' = lr sqrt(1 - β2) / (1 - β1) and ε' = ε sqrt(1 - β2).
// (Note the corrected form's maximum keeps the first step's g^2 at full weight, so one early large
// gradient slows it for good; the default's maximum of the uncorrected average does not.)
// Options as AMSGrad (amsgrad.hpp); ε placement and weight decay as Adam (adam.hpp).
#pragma once

#include "optim/amsgrad.hpp"
#include "optim/adam_family.hpp"

namespace optim {

using NAMSGradOptions = AMSGradOptions;

class NAMSGrad : public AdamFamily<NAMSGradOptions> {
 public:
  explicit NAMSGrad(std::vector<nn::NamedTensor> params, const NAMSGradOptions& options = {});
  NAMSGrad(std::vector<ParamGroup<NAMSGradOptions>> groups, const NAMSGradOptions& defaults = {});
};

}  // namespace optim
