// Newton's method (004 Prop. 3.10) for small models, from the tape's second derivatives:
//   solve (H + μ I) d = g,   then   w <- w - lr d
// with g = ∇J(W_t) and H = ∇²J(W_t) over every parameter of every group, taken together (lr = 1, μ = 0
// is the pure step W_{t+1} = W_t - H^-1 ∇J of 004). H is never needed as a matrix by conjugate gradient:
// products H v come from the tape (g = ag::grad(loss, params, create_graph); H v = ag::grad(g, params,
// seeds = v)). Solvers (HessianMethod):
//   full                one H v per parameter builds H (symmetrised), then Cholesky; if H + μ I is not
//                       positive definite (a saddle, 004 Remark 3.8), extra damping 2τ is added, τ the
//                       smallest 10^k · 1e-10 · max(1, max |H_ii|), k = 0, 1, ..., that makes it so (the
//                       factor 2 keeps the smallest eigenvalue at least τ: no huge steps);
//   conjugate_gradient  CG on (H + μ I) d = g from d = 0, until ||r|| <= cg_tolerance ||g|| or
//                       cg_max_iterations; on negative curvature it stops (truncated Newton; at the first
//                       iteration the direction is g itself);
//   automatic           full up to full_hessian_max parameters, else CG.
// The loss must come from step(loss_fn) (LossFn returns the loss on the tape, no backward): a closure
// returning a double cannot be differentiated twice. The step releases the tape afterwards and leaves
// every .grad() untouched. Solver settings (damping, method, cg_*) come from the defaults; each group has
// its own lr and weight decay (coupled: g + λ w and H + λ I over its parameters, i.e. L2 in the objective;
// decoupled: w <- (1 - lr λ) w - lr d).
#pragma once

#include <cstddef>

#include "optim/optimizer.hpp"

namespace optim {

enum class HessianMethod { automatic, full, conjugate_gradient };

struct NewtonOptions {
  double lr = 1.0;
  double damping = 0.0;
  HessianMethod method = HessianMethod::automatic;
  std::size_t full_hessian_max = 1000;
  std::size_t cg_max_iterations = 250;
  double cg_tolerance = 1e-10;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.non_negative("damping", damping);
    c.positive("cg_tolerance", cg_tolerance);
    if (cg_max_iterations == 0) c.fail("cg_max_iterations", ">= 1", 0.0);
  }
};

class Newton : public OptimizerWith<NewtonOptions> {
 public:
  explicit Newton(std::vector<nn::NamedTensor> params, const NewtonOptions& options = {});
  Newton(std::vector<ParamGroup<NewtonOptions>> groups, const NewtonOptions& defaults = {});

  /// Of the last step: CG iterations (0 for the full Hessian), whether the full Hessian was used, and
  /// the extra damping the full solver had to add (0 if H + μ I was positive definite).
  std::size_t cg_iterations() const { return cg_iterations_; }
  bool used_full_hessian() const { return used_full_; }
  double extra_damping() const { return extra_damping_; }

 protected:
  void update() override;
  bool needs_closure() const override { return true; }
  double closure_step(const Closure& closure) override;
  double loss_fn_step(const LossFn& loss_fn) override;

 private:
  std::size_t cg_iterations_ = 0;
  bool used_full_ = false;
  double extra_damping_ = 0.0;
};

}  // namespace optim
