// RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond", Algorithm 2;
// torch.optim.RAdam, whose documented update this follows): Adam whose adaptive step is switched on, and
// rectified, once the variance of v̂ is tractable:
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2,   m̂ = m / (1 - β1^t)     (m, v start at 0)
//   ρ∞ = 2 / (1 - β2) - 1,    ρt = ρ∞ - 2 t β2^t / (1 - β2^t)
//   ρt > 5:  r = sqrt((ρt - 4)(ρt - 2) ρ∞ / ((ρ∞ - 4)(ρ∞ - 2) ρt))
//            w <- w - lr m̂ r sqrt(1 - β2^t) / (sqrt(v) + ε)
//   else:    w <- w - lr m̂                                   (SGD with momentum; with β2 = 0.999: t <= 5)
// The adaptive factor is torch's l_t = sqrt(1 - β2^t) / (sqrt(v) + ε), i.e. 1 / (sqrt(v̂) + ε / sqrt(1 - β2^t)):
// ε sits beside sqrt(v), not sqrt(v̂) as in Adam; the two differ only through ε. Defaults are torch's:
// lr = 1e-3, β1 = 0.9, β2 = 0.999, ε = 1e-8. Options map to torch's: beta1, beta2 = betas, eps,
// weight_decay, decoupled = decoupled_weight_decay. Weight decay: coupled g <- g + λ w (L2, torch's default)
// or decoupled=true: w <- (1 - lr λ) w - (the step above). State per parameter: exp_avg, exp_avg_sq, step.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct RAdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
  }
};

class RAdam : public OptimizerWith<RAdamOptions> {
 public:
  explicit RAdam(std::vector<nn::NamedTensor> params, const RAdamOptions& options = {});
  RAdam(std::vector<ParamGroup<RAdamOptions>> groups, const RAdamOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }
};

}  // namespace optim
