// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Program 1; optax.lion and
// lucidrains' lion-pytorch): the sign of an interpolation of the momentum and the gradient is the step:
//   c = β1 m + (1 - β1) g
//   w <- w - lr (sign(c) + λ w)                    (i.e. w <- (1 - lr λ) w - lr sign(c))
//   m <- β2 m + (1 - β2) g                          (m starts at 0)
// sign(0) = 0; sign(NaN) = NaN, so a NaN gradient reaches w. Every weight moves by lr (or 0) a step: the
// paper suggests a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger.
// Defaults: β1 = 0.9, β2 = 0.99 (the paper's, optax's, lion-pytorch's), lr = 1e-4 and λ = 0 (lion-pytorch's;
// optax has no default rate and λ = 1e-3). Options map to optax's (learning_rate, b1, b2, weight_decay)
// and lion-pytorch's (lr, betas, weight_decay). Weight decay: decoupled, the method's own (the default),
// or decoupled=false: L2, g <- g + λ w before c and m. State per parameter: exp_avg (m).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct LionOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::decoupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
  }
};

class Lion : public OptimizerWith<LionOptions> {
 public:
  explicit Lion(std::vector<nn::NamedTensor> params, const LionOptions& options = {});
  Lion(std::vector<ParamGroup<LionOptions>> groups, const LionOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg"}; }
};

}  // namespace optim
