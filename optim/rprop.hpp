// Rprop, resilient backpropagation (Riedmiller & Braun 1993, "A Direct Adaptive Method for Faster
// Backpropagation Learning: The RPROP Algorithm"), exactly as torch.optim.Rprop: each weight has its own
// step size, grown while its gradient keeps its sign and shrunk when the sign flips; only the gradient's
// sign moves the weight:
//   p = g prev                                     (prev, the last step's gradient, starts at 0)
//   p > 0:  s <- min(s η+, s_max)
//   p < 0:  s <- max(s η-, s_min),  g <- 0         (no move this step; the next step sees p = 0)
//   p = 0:  s unchanged (clamped to [s_min, s_max])
//   w <- w - s sign(g),   prev <- g                (s starts at lr; sign(0) = 0, sign(NaN) = NaN)
// Zeroing the gradient after a flip, with no weight backtracking, is Igel & Hüsken's iRprop- (2000), the
// form torch implements. Rprop is a full-batch method: it reads only signs, so on
// mini-batches the sign flips of the sampling noise shrink the step sizes.
// Defaults and options are torch's: lr = 0.01 (the initial step size), etas = (0.5, 1.2) as
// eta_minus, eta_plus, step_sizes = (1e-6, 50) as step_min, step_max. torch.optim.Rprop has no weight
// decay; here coupled g <- g + λ w (L2, seen by the signs; the default) or decoupled=true:
// w <- (1 - lr λ) w - s sign(g), with lr the initial step size. State per parameter: prev, step_size, step.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct RpropOptions {
  double lr = 1e-2;
  double eta_minus = 0.5;
  double eta_plus = 1.2;
  double step_min = 1e-6;
  double step_max = 50.0;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const;
};

class Rprop : public OptimizerWith<RpropOptions> {
 public:
  explicit Rprop(std::vector<nn::NamedTensor> params, const RpropOptions& options = {});
  Rprop(std::vector<ParamGroup<RpropOptions>> groups, const RpropOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"prev", "step_size"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }
  /// step_size starts at the group's lr.
  void init_state(ParamState& state, const Param& param) override;
};

}  // namespace optim
