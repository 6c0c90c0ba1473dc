// SAM, sharpness-aware minimisation (Foret, Kleiner, Mobahi & Neyshabur 2021, Alg. 1), around any optimiser
// that steps from gradients. Each step takes two gradients through the closure:
//   g = ∇L(w);   e = ρ g / (‖g‖ + 1e-12);   the inner optimiser steps from ∇L(w + e), at w
// (‖·‖ the global norm over every parameter). adaptive=true is ASAM (Kwon et al. 2021): with T = |w|
// elementwise, e = ρ T² g / (‖T g‖ + 1e-12). The 1e-12 is the authors' code's. Returns the loss at w.
// Defaults ρ = 0.05 around momentum SGD (the paper's setting). No state of its own.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "optim/wrapper.hpp"

namespace optim {

struct SAMOptions {
  config::Spec inner{"momentum", {}};
  double rho = 0.05;
  bool adaptive = false;
  void check(const OptionCheck& c) const { c.positive("rho", rho); }
};

class SAM : public Wrapper {
 public:
  SAM(std::unique_ptr<Optimizer> inner, const SAMOptions& options);

 protected:
  bool needs_closure() const override { return true; }
  double closure_step(const Closure& closure) override;
  double loss_fn_step(const LossFn& loss_fn) override { return closure_step(closure_from(loss_fn)); }

 private:
  /// w <- w + e; returns each parameter moved with its weights before, to be put back exactly.
  std::vector<std::pair<ag::Tensor, ag::Tensor>> perturb();
  SAMOptions options_;
};

}  // namespace optim
