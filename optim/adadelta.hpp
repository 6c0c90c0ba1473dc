// Adadelta (Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method", Algorithm 1; torch.optim.Adadelta):
// the step's units come from a running average of past squared steps:
//   v <- ρ v + (1 - ρ) g^2                         (v, u start at 0)
//   Δ = sqrt(u + ε) / sqrt(v + ε) · g
//   u <- ρ u + (1 - ρ) Δ^2
//   w <- w - lr Δ                                  (lr = 1: Zeiler's method; torch scales Δ by lr)
// Defaults are torch's: lr = 1.0, ρ = 0.9, ε = 1e-6. Options map to torch's: rho, eps, weight_decay
// (lr as torch's). Weight decay: coupled g <- g + λ w (L2, torch's form; the default), or decoupled=true:
// w <- (1 - lr λ) w - lr Δ. State per parameter: square_avg (v), acc_delta (u).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct AdadeltaOptions {
  double lr = 1.0;
  double rho = 0.9;
  double eps = 1e-6;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("rho", rho);
    c.positive("eps", eps);
  }
};

class Adadelta : public OptimizerWith<AdadeltaOptions> {
 public:
  explicit Adadelta(std::vector<nn::NamedTensor> params, const AdadeltaOptions& options = {});
  Adadelta(std::vector<ParamGroup<AdadeltaOptions>> groups, const AdadeltaOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"square_avg", "acc_delta"}; }
};

}  // namespace optim
