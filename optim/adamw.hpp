// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"; torch.optim.AdamW): Adam
// (adam.hpp) registered under its own name with the weight decay decoupled by default:
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2,   m̂ = m / (1 - β1^t),   v̂ = v / (1 - β2^t)
//   w <- (1 - lr λ) w - lr m̂ / (sqrt(v̂) + ε)
// Defaults are torch.optim.AdamW's: lr = 1e-3, β = (0.9, 0.999), ε = 1e-8, weight_decay λ = 1e-2,
// decoupled = true. Options map to torch's as Adam's: beta1, beta2 = betas, eps, weight_decay; decoupled=false
// gives coupled L2 (g <- g + λ w), i.e. plain Adam with weight decay; eps_placement = inside is 004's form.
// The options struct is AdamOptions; only the defaults and the name differ from Adam.
#pragma once

#include "optim/adam.hpp"

namespace optim {

class AdamW : public AdamFamily<AdamOptions> {
 public:
  /// torch.optim.AdamW's defaults: Adam's, with weight_decay = 1e-2, decoupled.
  static AdamOptions default_options() {
    return {.weight_decay = 1e-2, .weight_decay_mode = WeightDecay::decoupled};
  }
  explicit AdamW(std::vector<nn::NamedTensor> params, const AdamOptions& options = default_options());
  AdamW(std::vector<ParamGroup<AdamOptions>> groups, const AdamOptions& defaults = default_options());
};

}  // namespace optim
