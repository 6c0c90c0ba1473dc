// L-BFGS (Nocedal & Wright, "Numerical Optimization", 2nd ed., Alg. 7.4-7.5; Liu & Nocedal 1989), as
// torch.optim.LBFGS: the same algorithm, defaults, termination tests and state. w is the flat vector of
// every parameter, J the objective, g = ∇J. One step(closure) runs up to max_iter iterations; the closure
// (zero the gradients, loss, backward, return the loss) evaluates J and g wherever they are needed:
//   first iteration ever:   d = -g,  H_diag = 1,  no pairs
//   later iterations:       y = g - g_prev,  s = t_prev d_prev;  if y·s > 1e-10 the pair (s, y) is kept
//                           (the oldest is dropped beyond history_size), ρ = 1 / y·s, H_diag = y·s / y·y;
//                           d = -H g by the two-loop recursion over the kept pairs:
//                             q = -g;     α_i = ρ_i s_i·q,  q <- q - α_i y_i         (newest to oldest)
//                             r = H_diag q;  β_i = ρ_i y_i·r,  r <- r + (α_i - β_i) s_i   (oldest to newest)
//                             d = r
//   step size:              t = min(1, 1 / ‖g‖₁) lr on the first iteration ever, t = lr after;
//                           g·d > -tolerance_change: stop here, without moving (no descent left; as
//                           torch, t and d are still kept, and the next step's pair uses s = t d);
//   line_search = none:     w <- w + t d, and J, g evaluated there (not after the last iteration);
//   line_search = strong_wolfe:  t from the line search below, then w <- w + t d.
// The step stops after max_iter iterations; or when the closure calls of this step reach max_eval (0: the
// default max_iter * 5 / 4, integer division); or max|g| <= tolerance_grad (tested after the first call
// too: the closure is then called once and nothing moves); or max|t d| <= tolerance_change; or
// |J - J_prev| < tolerance_change. The tests run after each iteration: a line search (at most 26 calls)
// may take the calls past max_eval. step() returns the closure's first loss, at the point it started from.
//
// Strong Wolfe line search (line_search = strong_wolfe; N&W Alg. 3.5-3.6, torch's _strong_wolfe, itself
// from minFunc). φ(t) = J(w + t d), φ'(t) = g(w + t d)·d; t is accepted when
//   φ(t) <= φ(0) + c1 t φ'(0)   and   |φ'(t)| <= c2 |φ'(0)|        (c1 = 1e-4, c2 = 0.9)
// Bracketing, from t_prev = 0 and the initial t: [t_prev, t] brackets a minimum if φ(t) breaks the first
// condition (or, from the third trial on, φ(t) >= φ(t_prev)) or φ'(t) >= 0; t is accepted if it meets the
// second; otherwise t_prev <- t and t <- the cubic's minimum clamped to [t + 0.01 (t - t_prev), 10 t].
// Zoom: t = the cubic's minimum inside the bracket; a t within 10 % of the bracket's width of an end is
// moved to 10 % from that end if it is on or outside an end, or if the previous trial was that close
// too (and kept). A t that breaks the first condition or is not below the low end replaces the high
// end; otherwise it is accepted if it meets the second condition, else becomes the low end (the old low
// becoming the high end if φ'(t) (high - low) >= 0). The zoom stops once |bracket| max|d| < 1e-9 (torch's
// fixed tolerance). At most 25 trials after the first; the result is the low end (lowest φ).
// The cubic through (a, φa, φ'a) and (b, φb, φ'b), a < b:
//   d1 = φ'a + φ'b - 3 (φa - φb) / (a - b),  d2 = sqrt(d1² - φ'a φ'b),
//   t* = b - (b - a) (φ'b + d2 - d1) / (φ'b - φ'a + 2 d2)
// clamped to the bounds (the bounds' midpoint if d1² < φ'a φ'b); on a quadratic φ it is φ's minimum.
//
// Weight decay: coupled only, J = f + ½ λ ‖w‖², g = ∇f + λ w (the line search and the tests see J).
// Decoupled decay (w <- (1 - lr λ) w) moves w outside the pairs s = Δw and is refused. One parameter
// group (as torch): the flat vector has one set of options. Every parameter has the same dtype; a
// parameter without a gradient counts as a zero gradient. Vectors are kept in the parameters' dtype, dot
// products summed in double.
//
// State, saved and resumed bit for bit: each parameter keeps its slice of the flat vectors,
//   "state/<p>/d", "state/<p>/prev_flat_grad"   the parameter's shape: d and g of the last iteration;
//   "state/<p>/old_dirs", "state/<p>/old_stps"  [history_size, numel]: ring buffers of y and s (torch's
//                                               names); pair k (0 = oldest) is row (history_start + k)
//                                               mod history_size;
// and the whole optimiser's scalars "global/t", "global/H_diag", "global/prev_loss", "global/history_count",
// "global/history_start", "global/func_evals" and "global/n_iter" (torch's counters, over every step;
// n_iter = 0 means the next iteration is the first ever). ρ_k is not saved: 1 / y_k·s_k is recomputed
// from the saved rows at each step, the same sum over the same values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "optim/optimizer.hpp"

namespace optim {

enum class LineSearch { none, strong_wolfe };

struct LBFGSOptions {
  double lr = 1.0;
  std::size_t max_iter = 20;
  /// Closure calls per step; 0: max_iter * 5 / 4 (torch's; 2 for max_iter = 2, which ends after one iteration).
  std::size_t max_eval = 0;
  double tolerance_grad = 1e-7;
  double tolerance_change = 1e-9;
  std::size_t history_size = 100;
  LineSearch line_search = LineSearch::none;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;

  /// max_eval, or its default.
  std::size_t evaluations() const { return max_eval > 0 ? max_eval : max_iter * 5 / 4; }
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    if (max_iter == 0) c.fail("max_iter", ">= 1", 0.0);
    if (history_size == 0) c.fail("history_size", ">= 1", 0.0);
    c.non_negative("tolerance_grad", tolerance_grad);
    c.non_negative("tolerance_change", tolerance_change);
    if (weight_decay_mode == WeightDecay::decoupled) {
      c.fail("decoupled", "false (decoupled decay moves w outside L-BFGS's pairs s = Δw; use coupled L2)", 1.0);
    }
  }
};

class LBFGS : public OptimizerWith<LBFGSOptions> {
 public:
  explicit LBFGS(std::vector<nn::NamedTensor> params, const LBFGSOptions& options = {});
  LBFGS(std::vector<ParamGroup<LBFGSOptions>> groups, const LBFGSOptions& defaults = {});

  /// Closure calls and iterations over every step (torch's state["func_evals"] and state["n_iter"]).
  std::int64_t func_evals() const { return static_cast<std::int64_t>(func_evals_); }
  std::int64_t iterations() const { return static_cast<std::int64_t>(n_iter_); }
  /// Pairs (s, y) held.
  std::size_t history_count() const { return static_cast<std::size_t>(history_count_); }

  /// The minimum of the cubic through (a, fa, ga) and (b, fb, gb) (values and slopes), clamped to
  /// [low, high]; their midpoint if the cubic has no minimum.
  static double cubic_minimum(double a, double fa, double ga, double b, double fb, double gb, double low,
                              double high);

 protected:
  void update() override;
  bool needs_closure() const override { return true; }
  double closure_step(const Closure& closure) override;
  std::vector<std::string> tensor_state_names() const override {
    return {"d", "prev_flat_grad", "old_dirs", "old_stps"};
  }
  ag::Shape tensor_state_shape(std::size_t index, const Param& param) const override;
  std::vector<GlobalScalar> global_scalars() override;

 private:
  template <class T>
  class Solver;

  double t_ = 0.0;
  double h_diag_ = 1.0;
  double prev_loss_ = 0.0;
  double history_count_ = 0.0;
  double history_start_ = 0.0;
  double func_evals_ = 0.0;
  double n_iter_ = 0.0;
};

}  // namespace optim
