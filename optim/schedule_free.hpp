// What schedule-free SGD and AdamW share (Defazio et al. 2024, "The Road Less Scheduled"; the reference
// implementation is facebookresearch/schedule_free). Three sequences per parameter: z takes the base method's
// step, x is a weighted average of the z's and the evaluation point, y (between them) is where gradients are
// taken and what the parameters hold during training. Step t = 1, 2, ..., with d the base method's direction
// at y (sgd_schedule_free.hpp, adamw_schedule_free.hpp):
//   γ_t = lr min(1, t / warmup_steps)                     (a linear warmup; then constant)
//   lr_max = max(lr_max, γ_t),   weight_t = t^r lr_max^weight_lr_power,   Σ <- Σ + weight_t
//   z <- z - γ_t d
//   x <- (1 - c) x + c z,        c = weight_t / Σ          (c = 0 while Σ = 0)
//   y <- (1 - β) z + β x
// z, x and y start at the parameters' values. With a constant rate and no warmup, c = 1/t: x is the plain
// mean of the z's (a warmup's steps weigh less, γ_t^weight_lr_power, so after one c stays above 1/t). The method is meant to run without a decaying schedule: warmup_steps is its only one.
// Unlike the reference, which keeps z alone and moves the parameters between y and x by arithmetic on
// eval() and train(), x is kept here as state: eval() exchanges it with the parameters and train() exchanges
// it back, bit for bit (optimizer.hpp), and y is recomputed from x and z at every step, so it does not
// drift. The reference's in-place update y <- (1 - c) y + c z_old + γ_t (β (1 - c) - 1) d is the same y up
// to rounding. The step count t, lr_max and Σ, one per group in the reference, are per-parameter scalars
// here (equal across a group unless a parameter misses a step for want of a gradient; its own count then
// starts at its first gradient). State per parameter: z, x (the evaluation point), the method's own
// tensors, and the scalars step, lr_max, weight_sum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "optim/optimizer.hpp"
#include "optim/registry.hpp"

namespace optim {

/// The base of a schedule-free method whose options O have lr, warmup_steps, r and weight_lr_power. Its
/// tensor state starts with z and x (tensor_state_names() lists them first).
template <class O>
class ScheduleFree : public OptimizerWith<O> {
 protected:
  using ParamState = Optimizer::ParamState;
  using Param = Optimizer::Param;
  using OptimizerWith<O>::OptimizerWith;

  /// This step's rate γ_t, averaging weight c and count t.
  struct Step {
    double lr, c, t;
  };
  /// Advances the parameter's step, lr_max and weight sum; returns this step's γ_t, c and t.
  static Step advance(ParamState& s, const O& o) {
    const double t = s.scalars[0] += 1.0;
    const double warmup = static_cast<double>(o.warmup_steps);
    const double lr = t <= warmup ? o.lr * (t / warmup) : o.lr;
    const double lr_max = s.scalars[1] = std::max(s.scalars[1], lr);
    const double weight = std::pow(t, o.r) * std::pow(lr_max, o.weight_lr_power);
    const double sum = s.scalars[2] += weight;
    return {lr, sum > 0.0 ? weight / sum : 0.0, t};
  }

  std::vector<std::string> scalar_state_names() const override { return {"step", "lr_max", "weight_sum"}; }
  /// z = x = the parameter; lr_max = -1 (the reference's start: the first γ replaces it).
  void init_state(ParamState& s, const Param& p) override {
    detail::dispatch(p.tensor.dtype(), [&]<class T>() {
      std::copy_n(p.tensor.data<T>(), p.tensor.numel(), s.tensors[0].data<T>());
      std::copy_n(p.tensor.data<T>(), p.tensor.numel(), s.tensors[1].data<T>());
    });
    s.scalars[1] = -1.0;
  }
  std::optional<std::size_t> eval_state() const override { return 1; }
};

namespace detail {

/// z <- z - γ d;  x <- (1 - c) x + c z;  y <- β x + (1 - β) z  (the reference's operation order).
template <class T>
inline void schedule_free_move(T& y, T& z, T& x, T d, T lr, T c, T beta) {
  const T zi = z - lr * d;
  const T xi = x * (T(1) - c) + zi * c;
  z = zi;
  x = xi;
  y = xi * beta + zi * (T(1) - beta);
}

/// warmup_steps, r and weight_lr_power.
template <class O>
config::OptionTable<O>& schedule_free_options(config::OptionTable<O>& table) {
  return table
      .count("warmup_steps", &O::warmup_steps, 0, static_cast<std::size_t>(1e15),
             "steps of linear warmup, γ_t = lr t / warmup_steps (the only schedule)")
      .real("r", &O::r, config::Range::at_least(0), "the average's weight grows as t^r")
      .real("weight_lr_power", &O::weight_lr_power, config::Range::at_least(0),
            "the average's weight grows as lr_max^power (warmup steps count less)");
}

}  // namespace detail

}  // namespace optim
