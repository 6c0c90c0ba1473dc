// Gradient descent with momentum (heavy ball), in the form of 000 §4.3:
//   v <- γ v + lr g
//   w <- w - v
// (γ = `momentum`). Mappings: 004 Prop. 3.8 writes v' = α v - η ∇J, W += v', i.e. its v is our -v;
// 001 eq. 10 writes θ' = θ - α g + β (θ - θ_prev), the same iteration with v = θ_prev - θ; PyTorch
// keeps b <- μ b + g, w <- w - lr b, the same iteration (v = lr b) while lr is constant. Here the
// velocity carries the learning rate, so a schedule changes only the new gradient's weight.
// Weight decay: coupled g <- g + λ w; decoupled w <- (1 - lr λ) w - v.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct MomentumOptions {
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("momentum", momentum);
  }
};

class Momentum : public OptimizerWith<MomentumOptions> {
 public:
  explicit Momentum(std::vector<nn::NamedTensor> params, const MomentumOptions& options = {});
  Momentum(std::vector<ParamGroup<MomentumOptions>> groups, const MomentumOptions& defaults = {});

 protected:
  /// Nesterov (nesterov.hpp) shares the options, the state and the loop; only its step differs.
  Momentum(std::string name, std::vector<ParamGroup<MomentumOptions>> groups, const MomentumOptions& defaults,
           bool nesterov);
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"velocity"}; }

 private:
  bool nesterov_ = false;
};

}  // namespace optim
