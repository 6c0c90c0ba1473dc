// RMSProp (Hinton, lecture 6e), in the form of 001 §4.1 eq. 15-16 and 004 Prop. 3.11:
//   v <- β v + (1 - β) g^2             (elementwise; v starts at 0; β = `beta`, 001's β, PyTorch's alpha)
//   w <- w - lr g / sqrt(v + ε)        (eps = Eps::inside_sqrt, the default, as both seeds write it)
//   w <- w - lr g / (sqrt(v) + ε)      (eps = Eps::outside_sqrt, PyTorch)
// 004's A_{t+1} is our v after the update. No momentum, no centring. Weight decay: coupled g <- g + λ w;
// decoupled w <- (1 - lr λ) w - (the step above).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct RMSPropOptions {
  double lr = 1e-3;
  double beta = 0.9;
  double eps = 1e-8;
  Eps eps_placement = Eps::inside_sqrt;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta", beta);
    c.positive("eps", eps);
  }
};

class RMSProp : public OptimizerWith<RMSPropOptions> {
 public:
  explicit RMSProp(std::vector<nn::NamedTensor> params, const RMSPropOptions& options = {});
  RMSProp(std::vector<ParamGroup<RMSPropOptions>> groups, const RMSPropOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"square_avg"}; }
};

}  // namespace optim
