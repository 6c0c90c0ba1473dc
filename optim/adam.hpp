// Adam (Kingma & Ba 2015) with bias correction, as in 001 §4.2 eq. 18a-d and 000 §4.5:
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2          (m, v start at 0)
//   m̂ = m / (1 - β1^t),       v̂ = v / (1 - β2^t)                (t = this parameter's update count, from 1)
//   w <- w - lr m̂ / (sqrt(v̂) + ε)                               (eps = Eps::outside_sqrt, the default)
//   w <- w - lr m̂ / sqrt(v̂ + ε)                                 (eps = Eps::inside_sqrt, 004 Prop. 3.12)
// 004 calls β1, β2 "α, β" and m, v "G, A". Weight decay: coupled g <- g + λ w (Adam with L2);
// decoupled w <- (1 - lr λ) w - (the step above) (AdamW).
// AdamOptions is shared by Nadam, NAMSGrad and (with extra fields) AMSGrad and Adam-HD.
#pragma once

#include "optim/adam_family.hpp"

namespace optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  Eps eps_placement = Eps::outside_sqrt;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
  }
};

class Adam : public AdamFamily<AdamOptions> {
 public:
  explicit Adam(std::vector<nn::NamedTensor> params, const AdamOptions& options = {});
  Adam(std::vector<ParamGroup<AdamOptions>> groups, const AdamOptions& defaults = {});
};

}  // namespace optim
