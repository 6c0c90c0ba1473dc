// Nesterov accelerated gradient in the usual reparameterised form (Sutskever et al. 2013), in momentum's
// two forms (momentum.hpp; lr_inside chooses):
//   lr_inside = true (the default):              v <- γ v + lr g(θ),   θ <- θ - (γ v + lr g(θ))
//   lr_inside = false (torch's nesterov=True):   v <- γ v + g(θ),      θ <- θ - lr (g(θ) + γ v)
// (γ = `momentum`), equal while lr is constant (v_inside = lr v_torch). The gradient is taken at the
// stored parameters θ, so step() needs no closure.
//
// Mapping (lr inside) to the exact look-ahead form (000 §4.4, 004 Prop. 3.9, 001 eq. 11; see
// nesterov_lookahead.hpp)
//   v_t = γ v_{t-1} + lr ∇E(W_{t-1} - γ v_{t-1}),   W_t = W_{t-1} - v_t:
// put θ_t = W_t - γ v_t (the look-ahead point). Then W_{t-1} = θ_{t-1} + γ v_{t-1}, v_t = γ v_{t-1} +
// lr ∇E(θ_{t-1}), and θ_t = θ_{t-1} + γ v_{t-1} - (1 + γ) v_t = θ_{t-1} - lr ∇E(θ_{t-1}) - γ v_t: the update
// above. Both start with v_0 = 0 and θ_0 = W_0, share v_t, and θ_t = W_t - γ v_t at every step (for a
// constant γ; tested). 004 writes v with the opposite sign (W + α v).
// Weight decay: coupled g <- g + λ θ; decoupled θ <- (1 - lr λ) θ - (the step).
#pragma once

#include "optim/momentum.hpp"

namespace optim {

/// The options of momentum: lr, momentum (γ), weight decay, lr_inside.
using NesterovOptions = MomentumOptions;

class Nesterov : public Momentum {
 public:
  explicit Nesterov(std::vector<nn::NamedTensor> params, const NesterovOptions& options = {});
  Nesterov(std::vector<ParamGroup<NesterovOptions>> groups, const NesterovOptions& defaults = {});
};

}  // namespace optim
