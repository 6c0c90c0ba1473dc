// Gradient descent with momentum (heavy ball), in two forms (lr_inside chooses):
//   lr_inside = true (the default; 000 §4.3):   v <- γ v + lr g,   w <- w - v
//   lr_inside = false (torch.optim.SGD):         v <- γ v + g,      w <- w - lr v
// (γ = `momentum`). The state "velocity" holds v: the step itself (lr inside), or torch's momentum_buffer b.
// The two agree while lr is constant (v_inside = lr v_torch); once lr changes they differ: with lr inside,
// a new rate weighs only the new gradients and the velocity keeps the old rate's steps; torch's form
// rescales the whole velocity at once. Mappings: 004 Prop. 3.8 writes v' = α v - η ∇J, W += v', i.e. its
// v is our -v (lr inside); 001 eq. 10 writes θ' = θ - α g + β (θ - θ_prev), the same iteration with
// v = θ_prev - θ. torch's dampening is not offered (it is 0 by default).
// Weight decay: coupled g <- g + λ w; decoupled w <- (1 - lr λ) w - (the step).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct MomentumOptions {
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  /// v <- γ v + lr g, w <- w - v (true); v <- γ v + g, w <- w - lr v (false, torch's).
  bool lr_inside = true;
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
