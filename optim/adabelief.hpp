// AdaBelief (Zhuang et al. 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
// Gradients", Algorithm 2; the official adabelief-pytorch package): Adam with the variance of g around
// its prediction m in place of g^2:
//   m <- β1 m + (1 - β1) g                         (m, s start at 0)
//   s <- β2 s + (1 - β2) (g - m)^2 + ε             (the new m; ε is added to the stored s, as the paper)
//   m̂ = m / (1 - β1^t),   ŝ = s / (1 - β2^t)
//   w <- w - lr m̂ / (sqrt(ŝ) + ε)
// Defaults: lr = 1e-3, β1 = 0.9, β2 = 0.999, ε = 1e-16 (the official PyTorch version's). torch.optim has no
// AdaBelief; the options are named as the official package's: beta1, beta2 = betas, eps, weight_decay;
// decoupled = its weight_decouple. Weight decay: coupled g <- g + λ w (L2) by default, as the other
// methods here (the official package 0.2 defaults to weight_decouple=True), or decoupled=true:
// w <- (1 - lr λ) w - (the step above). This is AdaBelief itself: the package's variants (rectify, its
// RAdam rectification; amsgrad) are other methods. State per parameter: exp_avg (m), exp_avg_var (s), step.
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct AdaBeliefOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-16;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
  }
};

class AdaBelief : public OptimizerWith<AdaBeliefOptions> {
 public:
  explicit AdaBelief(std::vector<nn::NamedTensor> params, const AdaBeliefOptions& options = {});
  AdaBelief(std::vector<ParamGroup<AdaBeliefOptions>> groups, const AdaBeliefOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg", "exp_avg_var"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step"}; }
};

}  // namespace optim
