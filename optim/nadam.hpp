// Nadam (Dozat 2016: Nesterov momentum in Adam), in two forms (momentum_decay chooses):
//
// momentum_decay = 0 (the default), the form of 000 §4.7, a constant momentum β1:
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2
//   m̂ = m / (1 - β1^t),       v̂ = v / (1 - β2^t)
//   w <- w - lr / (sqrt(v̂) + ε) * (β1 m̂ + (1 - β1) g / (1 - β1^t))
// bias-corrected by 1 - β1^t in both terms as 000 writes it. (000's printed formula shows
// "+ (β1 m̂ + ...)"; the step is the product.)
//
// momentum_decay = ψ > 0, torch.optim.NAdam exactly (Dozat's warm-up schedule of the momentum):
//   μ_t = β1 (1 - 0.5 · 0.96^(t ψ)),   μ_{t+1} = β1 (1 - 0.5 · 0.96^((t + 1) ψ)),   Π_t = μ_1 ··· μ_t
//   m, v as above (m still decays by the constant β1, as in torch),   v̂ = v / (1 - β2^t)
//   w <- w - lr (1 - μ_t) / (1 - Π_t) · g / (sqrt(v̂) + ε) - lr μ_{t+1} / (1 - Π_t μ_{t+1}) · m / (sqrt(v̂) + ε)
// torch's default is ψ = 0.004 (its `momentum_decay`). The products Π_t are per parameter, like t.
//
// Options, ε placement and weight decay as Adam (adam.hpp), but lr = 2e-3 by default (torch's NAdam, Dozat's
// value), by name and by type alike; torch's decoupled_weight_decay is decoupled=true. State per parameter:
// exp_avg, exp_avg_sq, step, mu_product (Π_t; stays 1 while momentum_decay = 0).
#pragma once

#include "optim/adam_family.hpp"

namespace optim {

struct NadamOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  Eps eps_placement = Eps::outside_sqrt;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  /// ψ: 0 for the constant β1 of 000 §4.7; > 0 for torch's μ_t schedule.
  double momentum_decay = 0.0;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
    c.non_negative("momentum_decay", momentum_decay);
  }
};

class Nadam : public AdamFamily<NadamOptions> {
 public:
  explicit Nadam(std::vector<nn::NamedTensor> params, const NadamOptions& options = {});
  Nadam(std::vector<ParamGroup<NadamOptions>> groups, const NadamOptions& defaults = {});

 protected:
  void update_param(const Work& item) override;
  std::vector<std::string> scalar_state_names() const override { return {"step", "mu_product"}; }
  void init_state(ParamState& state, const Param& /*param*/) override { state.scalars[1] = 1.0; }
};

}  // namespace optim
