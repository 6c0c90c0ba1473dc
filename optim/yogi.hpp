// Yogi (Zaheer, Reddi, Sachan, Kale & Kumar 2018, "Adaptive Methods for Nonconvex Optimization",
// NeurIPS, Algorithm 2): Adam whose v moves towards g^2 by at most (1 - β2) g^2 per step, additively:
//   m <- β1 m + (1 - β1) g                         (m, v start at 0)
//   v <- v - (1 - β2) sign(v - g^2) g^2            (sign(0) = 0)
//   w <- w - lr m / (sqrt(v) + ε)                  (bias_correction = false, the default: the paper)
//   w <- w - lr m̂ / (sqrt(v̂) + ε),  m̂ = m / (1 - β1^t), v̂ = v / (1 - β2^t)   (bias_correction = true)
// We follow the paper's Algorithm 2: no bias correction and v initialised to 0, with the paper's
// recommended ε = 1e-3 and lr = 1e-2, β1 = 0.9, β2 = 0.999. Popular implementations (TensorFlow Addons,
// torch-optimizer) bias-correct and start v at 1e-6; bias_correction=true gives their correction (v still
// starts at 0). torch.optim has no Yogi; the options are named as Adam's: beta1, beta2 = betas, eps,
// weight_decay. Weight decay: coupled g <- g + λ w (L2) by default, or decoupled=true:
// w <- (1 - lr λ) w - (the step above). State per parameter: exp_avg (m), exp_avg_sq (v), step.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct YogiOptions {
  double lr = 1e-2;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-3;
  bool bias_correction = false;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
  }
};

class Yogi : public OptimizerWith<YogiOptions> {
 public:
  explicit Yogi(std::vector<nn::NamedTensor> params, const YogiOptions& options = {});
  Yogi(std::vector<ParamGroup<YogiOptions>> groups, const YogiOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }
};

}  // namespace optim
