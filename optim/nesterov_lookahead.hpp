// Nesterov accelerated gradient with the exact look-ahead of 000 §4.4 (also 004 Prop. 3.9, 001 eq. 11):
//   v_t = γ v_{t-1} + lr ∇E(W_{t-1} - γ v_{t-1})
//   W_t = W_{t-1} - v_t                             (γ = `momentum`)
// The stored parameters are the iterates W themselves; the gradient is evaluated at the look-ahead point
// W - γ v through the closure, so only step(closure) and step(loss_fn) work:
//   1. every parameter is moved to W - γ v (v = 0 before its first update);
//   2. the closure recomputes the loss and the gradients there (its loss is returned: the look-ahead
//      point's loss);
//   3. v and W are updated from the saved W; parameters that got no gradient go back to W unchanged.
// Same trajectory as the reparameterised Nesterov (nesterov.hpp) after mapping θ = W - γ v.
// 004 writes v with the opposite sign (W + α v). The rate stays inside v (the look-ahead point needs it):
// the options' lr_inside=false (momentum's torch form) is refused, and the registry has no such key.
// Weight decay: coupled ∇E + λ (W - γ v) (the regularised objective's gradient at the look-ahead point);
// decoupled W <- (1 - lr λ) W - v.
#pragma once

#include "optim/nesterov.hpp"
#include "optim/optimizer.hpp"

namespace optim {

class NesterovLookahead : public OptimizerWith<NesterovOptions> {
 public:
  explicit NesterovLookahead(std::vector<nn::NamedTensor> params, const NesterovOptions& options = {});
  NesterovLookahead(std::vector<ParamGroup<NesterovOptions>> groups, const NesterovOptions& defaults = {});

 protected:
  void update() override;
  bool needs_closure() const override { return true; }
  double closure_step(const Closure& closure) override;
  std::vector<std::string> tensor_state_names() const override { return {"velocity"}; }

 private:
  void require_lr_inside() const;
};

}  // namespace optim
