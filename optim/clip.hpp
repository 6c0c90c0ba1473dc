// Gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_ with norm_type 2; Pascanu et al.
// 2013): over every parameter's gradient g,
//   N = sqrt(Σ ‖g‖²),   c = max_norm / (N + 1e-6),   g <- c g   if c < 1
// (the 1e-6 is torch's). A NaN anywhere makes N and every clipped gradient NaN: it propagates, as in torch.
//
// Two ways to use it: nn::clip_grad_norm() (nn/clip.hpp, the one implementation; also optim::clip_grad_norm)
// in a loop of one's own, between backward and step; or the wrapper "clip", which calls it on what its inner
// optimiser sees at each step, closure calls included:
//   auto opt = optim::make_optimizer("clip(inner=sgd(lr=0.1),max_norm=1)", params);
// Gradients are replaced by clipped copies, never written in place (they may share storage). The wrapper
// keeps no state of its own; last_norm() is N before clipping at the last gradient it saw.
#pragma once

#include <memory>
#include <vector>

#include "nn/clip.hpp"
#include "optim/wrapper.hpp"

namespace optim {

using nn::clip_grad_norm;
using nn::grad_norm;

struct ClipOptions {
  config::Spec inner{"adam", {}};
  double max_norm = 1.0;
  void check(const OptionCheck& c) const { c.positive("max_norm", max_norm); }
};

class Clip : public Wrapper {
 public:
  Clip(std::unique_ptr<Optimizer> inner, const ClipOptions& options);
  double last_norm() const { return last_norm_; }

 protected:
  void update() override;
  double closure_step(const Closure& closure) override;
  /// Through a closure (so that its gradients can be clipped): Newton, which needs the loss itself, refuses.
  double loss_fn_step(const LossFn& loss_fn) override;

 private:
  void clip();
  ClipOptions options_;
  std::vector<ag::Tensor> tensors_;
  double last_norm_ = 0.0;
};

}  // namespace optim
