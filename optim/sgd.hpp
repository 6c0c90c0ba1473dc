// Gradient descent with a fixed step (000 §4.2, 001 eq. 5, 002 eq. 4, 004 Prop. 3.2 (iii)):
//   w <- w - lr * g
// Full batch, mini-batch or online is the data loader's business: g is whatever gradient is in .grad().
// With weight decay λ (coupled): g <- g + λ w; decoupled: w <- (1 - lr λ) w - lr g (the same update).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct SGDOptions {
  double lr = 0.01;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const { c.common(lr, weight_decay); }
};

class SGD : public OptimizerWith<SGDOptions> {
 public:
  explicit SGD(std::vector<nn::NamedTensor> params, const SGDOptions& options = {});
  SGD(std::vector<ParamGroup<SGDOptions>> groups, const SGDOptions& defaults = {});

 protected:
  void update() override;
};

}  // namespace optim
