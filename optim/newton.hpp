// Newton's method (004 Prop. 3.10) for small models, from the tape's second derivatives:
//   solve (H + μ I) d = g,   then   w <- w - lr d
// with g = ∇J(W_t) and H = ∇²J(W_t) over every parameter of every group, taken together. lr = 1, μ = 0
// and adaptive = false is the pure step W_{t+1} = W_t - H^-1 ∇J of 004 (and with the defaults every step
// is that step as long as it works: see "adaptive damping"). H is never needed as a matrix by conjugate
// gradient: products H v come from the tape (g = ag::grad(loss, params, create_graph); H v =
// ag::grad(g, params, seeds = v)). Solvers (HessianMethod):
//   full                one H v per parameter builds H (symmetrised), then Cholesky; if H + μ I is not
//                       positive definite (a saddle, 004 Remark 3.8), extra damping 2τ is added, τ the
//                       smallest 10^k · 1e-10 · max(1, max |H_ii|), k = 0, 1, ..., that makes it so (the
//                       factor 2 keeps the smallest eigenvalue at least τ: no huge steps);
//   conjugate_gradient  CG on (H + μ I) d = g from d = 0, until ||r|| <= cg_tolerance ||g|| or
//                       cg_max_iterations; on negative curvature it stops (truncated Newton; at the first
//                       iteration the direction is g itself);
//   automatic           full up to full_hessian_max parameters, else CG.
//
// Adaptive damping (adaptive = true, the default). μ starts at `damping` and is then set by two rules,
// both judged with the next call's loss function: for a deterministic objective that is the same
// function; on mini-batches it is the next batch, data the step was not fitted to.
//  1. An undamped step (μ = 0) must keep the promise of its quadratic model, Levenberg–Marquardt's test
//     (Moré, "The Levenberg-Marquardt algorithm: implementation and theory", 1978; Martens, "Deep
//     learning via Hessian-free optimization", ICML 2010, §4.1). With Δ = W_{t+1} - W_t, the next call
//     evaluates J at both ends and forms the reduction ratio
//        ρ = [J(W_t + Δ) - J(W_t)] / [g·Δ + ½ Δ·H Δ]
//     (J, g, H with the coupled L2 term; a predicted change within J's rounding error, 64 ε |J|, decides
//     nothing). If ρ < 1/4 the step is undone (W goes back to W_t; the call is still a step) and damping
//     starts: μ <- damping_start.
//  2. A damped step (μ > 0) adjusts μ by hypergradient descent on log μ (Baydin et al. 2018, 000 §4.9:
//     the rule of sgd-hd, applied to the damping instead of the rate). Since Δ = -lr (H + μ I)^-1 g,
//        ∂J(W_{t+1}) / ∂ log μ = -∇J(W_{t+1}) · μ (H + μ I)^-1 Δ  ≈  -∇J(W_{t+1}) · Δ
//     (μ (H + μ I)^-1 ≈ I in the directions the damping holds back), and, normalised to be scale-free,
//        μ <- μ · exp(hyper_lr · cos(∇J(W_{t+1}), Δ)),   then μ <- 0 if μ < damping_min:
//     μ grows when the next gradient says the step went too far along its direction, shrinks when it
//     stopped short, and at 0 the steps are pure again, under rule 1. ∇J(W_{t+1}) is the next step's own
//     gradient: rule 2 costs nothing; rule 1 costs one forward at W_t (and a step that is undone, a
//     second model at W_t).
// Why two rules (mnist_logreg --optimizer newton: 7,850 parameters, batches of 200, one epoch): on the
// step's own batch the ratio stays above 1/4 down to μ ≈ 0.04, where every step fits its 200 samples
// (85-89 % test accuracy); on the next batch it falls with the gradient's signal-to-noise ratio, so the
// ratio rule keeps raising μ (beyond 10^4 within 150 steps; 82-88 %). The hypergradient settles where the
// step length suits fresh data (92 %), and the ratio still catches the pure first step, which fits one
// batch exactly. On a quadratic ρ = 1 and every step is 004's pure step; a deterministic, well-modelled
// problem (logistic regression on a fixed set) keeps μ = 0 and Newton's quadratic convergence.
// μ, the last undamped step's predicted change and W_t are part of the state ("global/damping",
// "global/predicted_change", "state/<param>/previous"): a resumed run continues bit for bit. Changing the
// parameters between two steps (other than by load_state) misleads the next judgement once.
//
// The loss must come from step(loss_fn) (LossFn returns the loss on the tape, no backward): a closure
// returning a double cannot be differentiated twice. step() returns the loss at the point the step
// started from (W_t, after an undo). The step releases the tape afterwards and leaves every .grad()
// untouched. Solver and damping settings come from the defaults; each group has its own lr and weight
// decay (coupled: g + λ w and H + λ I over its parameters, i.e. L2 in the objective; decoupled:
// w <- (1 - lr λ) w - lr d).
#pragma once

#include <cmath>
#include <cstddef>
#include <optional>

#include "optim/optimizer.hpp"

namespace optim {

enum class HessianMethod { automatic, full, conjugate_gradient };

struct NewtonOptions {
  double lr = 1.0;
  /// μ of the first step (adaptive) or of every step.
  double damping = 0.0;
  HessianMethod method = HessianMethod::automatic;
  std::size_t full_hessian_max = 1000;
  std::size_t cg_max_iterations = 250;
  double cg_tolerance = 1e-10;
  /// The two rules of "adaptive damping" above; false: μ = damping throughout.
  bool adaptive = true;
  /// μ once an undamped step has failed (rule 1).
  double damping_start = 0.1;
  /// Below it μ falls back to 0 (rule 2).
  double damping_min = 1e-3;
  /// β of rule 2: the largest change of log μ in one step.
  double hyper_lr = 0.1;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.non_negative("damping", damping);
    c.positive("cg_tolerance", cg_tolerance);
    if (cg_max_iterations == 0) c.fail("cg_max_iterations", ">= 1", 0.0);
    c.positive("damping_start", damping_start);
    c.positive("damping_min", damping_min);
    if (damping_min > damping_start) c.fail("damping_min", "<= damping_start", damping_min);
    c.non_negative("hyper_lr", hyper_lr);
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
  /// The μ of the next step.
  double damping() const { return damping_; }
  /// Of the last step: the reduction ratio ρ it measured for the step before (NaN if it measured none),
  /// and whether it undid that step (rule 1).
  double last_ratio() const { return ratio_; }
  bool undid_last_step() const { return undone_; }

  /// The rules alone. Rule 1: the reduction ratio of an actual and a predicted change (NaN when the
  /// prediction is not a decrease larger than `noise`). Rule 2: μ after a damped step whose next
  /// gradient makes the angle with cosine `cosine` with it (NaN: μ unchanged).
  static double reduction_ratio(double actual, double predicted, double noise = 0.0);
  static double next_damping(double damping, double cosine, const NewtonOptions& options);

 protected:
  void update() override;
  bool needs_closure() const override { return true; }
  double closure_step(const Closure& closure) override;
  double loss_fn_step(const LossFn& loss_fn) override;
  std::vector<std::string> tensor_state_names() const override;
  std::vector<GlobalScalar> global_scalars() override;

 private:
  struct Model;
  Model quadratic_model(const LossFn& loss_fn);
  std::vector<double> solve(const Model& model, double mu);
  std::vector<double> solve_full(const Model& model, double mu);
  std::vector<double> solve_cg(const Model& model, double mu);
  /// W_{t+1} from the solution d (lr and decoupled weight decay per group).
  std::vector<double> destination(const Model& model, const std::vector<double>& d) const;
  /// The rules, at the start of a step (`before`: rule 1's J at the last step's starting point). Rule 1
  /// may undo the last step and rebuild `model` there.
  void adapt(Model& model, std::optional<double> before, const LossFn& loss_fn);
  /// Keeps W_t and, for an undamped step, the change its model predicts for Δ = W_{t+1} - W_t.
  void remember(const Model& model, const std::vector<double>& next, double mu);
  /// The last step's starting point, flattened, if every parameter has it.
  std::optional<std::vector<double>> previous_point(const Model& model) const;
  /// J there, off the tape (the parameters are put back); none if a parameter has no starting point.
  std::optional<double> value_at_previous_point(const LossFn& loss_fn);

  double damping_ = 0.0;
  double predicted_ = 0.0;  // the last undamped step's predicted change (< 0); 0: nothing to judge
  std::size_t cg_iterations_ = 0;
  bool used_full_ = false;
  double extra_damping_ = 0.0;
  double ratio_ = 0.0;
  bool undone_ = false;
};

}  // namespace optim
