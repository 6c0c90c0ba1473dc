// AMSGrad (Reddi, Kale & Kumar 2018), in the form of 000 §4.6 (Reddi et al.'s Algorithm 2 with a
// constant step):
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2
//   v̂ <- max(v̂, v)                                   (elementwise; v̂ starts at 0)
//   w <- w - lr m / (sqrt(v̂) + ε)                    (no bias correction, the default)
// With bias_correction = true it is PyTorch's Adam(amsgrad=True):
//   w <- w - lr / (1 - β1^t) * m / (sqrt(v̂ / (1 - β2^t)) + ε)
// Unlike Adam's v̂, the running maximum never lets the effective step lr / sqrt(v̂) grow, which is what
// fixes Adam's non-convergence on Reddi et al.'s convex example (tested). ε placement and weight decay as
// Adam (adam.hpp).
#pragma once

#include "optim/adam_family.hpp"

namespace optim {

struct AMSGradOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  Eps eps_placement = Eps::outside_sqrt;
  bool bias_correction = false;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
  }
};

class AMSGrad : public AdamFamily<AMSGradOptions> {
 public:
  explicit AMSGrad(std::vector<nn::NamedTensor> params, const AMSGradOptions& options = {});
  AMSGrad(std::vector<ParamGroup<AMSGradOptions>> groups, const AMSGradOptions& defaults = {});
};

}  // namespace optim
