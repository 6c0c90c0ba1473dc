// Adamax (Kingma & Ba 2015, §7.1; torch.optim.Adamax): Adam with the infinity norm in place of v:
//   m <- β1 m + (1 - β1) g                         (m, u start at 0)
//   u <- max(β2 u, |g| + ε)
//   w <- w - lr / (1 - β1^t) · m / u               (t = this parameter's update count, from 1)
// ε is inside the maximum, as torch writes it (it keeps u > 0). Defaults are torch's and the paper's:
// lr = 2e-3, β1 = 0.9, β2 = 0.999, ε = 1e-8. Options map to torch's: beta1, beta2 = betas, eps, weight_decay.
// Weight decay: coupled g <- g + λ w (L2, torch's form; the default), or decoupled=true:
// w <- (1 - lr λ) w - (the step above). State per parameter: exp_avg (m), exp_inf (u), step.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct AdamaxOptions {
  double lr = 2e-3;
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

class Adamax : public OptimizerWith<AdamaxOptions> {
 public:
  explicit Adamax(std::vector<nn::NamedTensor> params, const AdamaxOptions& options = {});
  Adamax(std::vector<ParamGroup<AdamaxOptions>> groups, const AdamaxOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg", "exp_inf"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }
};

}  // namespace optim
