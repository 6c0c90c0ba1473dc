// Wrappers: an optimiser around another one. The wrapped ("inner") optimiser does the update; the wrapper
// acts on the gradients before it (clip), on the weights after it (lookahead, ema, swa) or around it (sam,
// which takes a second gradient elsewhere). Registered like any method, by spec, with the inner one as a
// nested spec:
//
//   auto opt = optim::make_optimizer("lookahead(inner=adam(lr=1e-3),k=5,alpha=0.5)", params);
//   auto opt = optim::make_optimizer("clip(max_norm=1,lr=0.1)", params);   // lr: a key of the inner
//
// Keys the wrapper does not have go to the inner spec: clip(lr=0.1) is clip(inner=<its default>(lr=0.1)).
// That is how a program's --lr, the lab's --lrs and a parameter group's weight_decay=0 reach the method that
// uses them. Wrappers nest (ema(inner=lookahead(inner=sgd))).
//
// The learning rates are the inner's (lr(), set_lr() and the schedules reach it). The state is the
// wrapper's own entries ("optimizer/<wrapper>", its step count, its per-parameter state) and the inner's
// under "inner/"; load_state checks both before changing either.
//
// Writing a wrapper: derive from Wrapper, override after_step() (and, to change how the inner is driven,
// update() / closure_step() / loss_fn_step()), register it with RegisterWrapper (registry.hpp).
#pragma once

#include <memory>
#include <string>

#include "config/spec.hpp"
#include "optim/optimizer.hpp"

namespace optim {

class Wrapper : public Optimizer {
 public:
  /// The wrapped optimiser.
  Optimizer& wrapped() const { return *inner_; }

 protected:
  Wrapper(std::string name, std::unique_ptr<Optimizer> inner);

  /// What happens after each inner step, under NoGradGuard (default: nothing). step_count() is still the
  /// count before this step.
  virtual void after_step() {}

  // The inner optimiser driven: step() -> inner step(); step(closure) -> inner step(closure); step(loss_fn)
  // -> inner step(loss_fn); after_step() after each.
  void update() override;
  double closure_step(const Closure& closure) override;
  double loss_fn_step(const LossFn& loss_fn) override;
  bool needs_closure() const override { return inner_->needs_closure(); }
  double& group_lr(std::size_t group) override { return inner_->lr_ref(group); }
  Optimizer* inner() const override { return inner_.get(); }

  /// The gradients the inner optimiser will see (as gradients()).
  std::vector<Work> inner_gradients() const { return inner_->gradients(); }
  /// The options of a wrapper whose inner optimiser must step from the gradients alone (sam): throws
  /// std::invalid_argument naming both if the inner one needs a closure.
  void require_gradient_steps() const;

 private:
  std::unique_ptr<Optimizer> inner_;
};

}  // namespace optim
