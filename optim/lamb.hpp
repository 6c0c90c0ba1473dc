// LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
// ICLR, Algorithm 2): Adam's step, rescaled per parameter tensor by the trust ratio ‖w‖ / ‖r‖:
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2          (m, v start at 0)
//   m̂ = m / (1 - β1^t),       v̂ = v / (1 - β2^t)                (bias_correction = true, the default)
//   r = m̂ / (sqrt(v̂) + ε) + λ w
//   w <- w - lr φ(‖w‖) / ‖r‖ · r                    (norms over the whole tensor; φ = identity)
// The ratio is 1 when ‖w‖ = 0 or ‖r‖ = 0, as in optax.lamb and NVIDIA apex's FusedLAMB (a tensor
// initialised to zero still moves; a zero step stays zero). No clipping of φ (the paper allows one).
// Defaults: lr = 1e-3 (apex's; optax.lamb has none), β1 = 0.9, β2 = 0.999, ε = 1e-6 (both), λ = 0 (optax's;
// apex's FusedLAMB has 0.01).
// Options map to optax.lamb (b1, b2, eps, weight_decay), apex FusedLAMB (betas, eps, weight_decay,
// bias_correction, adam_w_mode = decoupled). Weight decay: decoupled=true (the default, the paper's,
// apex's adam_w_mode): λ w joins r, inside the trust ratio; decoupled=false: L2, g <- g + λ w before the
// moments. State per parameter: exp_avg (m), exp_avg_sq (v), step. The update reads every element twice:
// the ratio needs ‖r‖ before any weight moves.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct LambOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-6;
  bool bias_correction = true;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::decoupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
  }
};

class Lamb : public OptimizerWith<LambOptions> {
 public:
  explicit Lamb(std::vector<nn::NamedTensor> params, const LambOptions& options = {});
  Lamb(std::vector<ParamGroup<LambOptions>> groups, const LambOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }
};

}  // namespace optim
