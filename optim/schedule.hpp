// Learning-rate schedules: pluggable objects giving the learning rate at step (or epoch) t >= 0, and an
// LRScheduler that applies one to an optimiser (call its step() once per epoch, or per batch). t is a
// double so that a per-batch caller can pass fractional epochs (epoch + batch / batches); the formulas
// below hold for any real t (StepLR floors t / s).
//
//   ConstantLR        η_t = η0
//   InverseTimeLR     η_t = η0 / (1 + t / τ)                   Robbins-Monro annealing (000 §5.1.4: τ = 1
//                                                              is 000's 1/epoch with epoch = t + 1)
//   LinearLR          η_t = η0 (1 - t/N) + η_N t/N for t < N, η_N after       (002 eq. 5, 004 Prop. 3.2)
//   StepLR            η_t = η0 γ^floor(t / s)
//   ExponentialLR     η_t = η0 γ^t
//   CosineLR          η_t = η_min + (η0 - η_min) (1 + cos(π t / T)) / 2 for t < T, η_min after
//   WarmupLR          wraps another schedule S: η_t = S(0) (f + (1 - f) t / W) for t < W, then S(t - W)
//                     (linear ramp from f·S(0) to S(0) over W steps, then S from its start)
//
// linear_scaling_rule(η_base, b, b_base) = η_base b / b_base (Goyal et al.; 001 §3.1 uses 1e-3 · b / 64).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "optim/optimizer.hpp"

namespace optim {

class Schedule {
 public:
  virtual ~Schedule() = default;
  /// The learning rate at step (or epoch) t >= 0.
  virtual double lr_at(double t) const = 0;
  /// "linear(lr0=0.1, final=0.001, steps=10)".
  virtual std::string describe() const = 0;
};

class ConstantLR : public Schedule {
 public:
  explicit ConstantLR(double lr);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  double lr_;
};

class InverseTimeLR : public Schedule {
 public:
  InverseTimeLR(double lr0, double tau = 1.0);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  double lr0_, tau_;
};

class LinearLR : public Schedule {
 public:
  LinearLR(double lr0, double final_lr, double steps);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  double lr0_, final_, steps_;
};

class StepLR : public Schedule {
 public:
  StepLR(double lr0, double step_size, double gamma = 0.1);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  double lr0_, step_size_, gamma_;
};

class ExponentialLR : public Schedule {
 public:
  ExponentialLR(double lr0, double gamma);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  double lr0_, gamma_;
};

class CosineLR : public Schedule {
 public:
  CosineLR(double lr0, double steps, double min_lr = 0.0);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  double lr0_, steps_, min_;
};

class WarmupLR : public Schedule {
 public:
  WarmupLR(std::shared_ptr<const Schedule> inner, double warmup_steps, double start_factor = 0.1);
  double lr_at(double t) const override;
  std::string describe() const override;

 private:
  std::shared_ptr<const Schedule> inner_;
  double warmup_, start_;
};

/// η_base · batch / base_batch. Throws std::invalid_argument for a zero batch size or a negative rate.
double linear_scaling_rule(double base_lr, std::size_t batch, std::size_t base_batch = 64);

// By name and options (registered in schedule.cpp; a user's own schedule registers the same way):
// optim::make_schedule(config::parse_spec("linear(final=1e-5)"), {...}) in optim/registry.hpp.

/// Applies a schedule to an optimiser. Group 0 follows the schedule; any other group keeps the ratio of
/// its learning rate to group 0's at attachment (all follow it if group 0's was 0). Construction sets
/// the rates for t = 0; step() advances t by one and sets them.
class LRScheduler {
 public:
  LRScheduler(Optimizer& optimizer, std::shared_ptr<const Schedule> schedule);
  void step();
  /// The current t (the number of step() calls, or what set_t set, e.g. when resuming).
  std::size_t t() const { return t_; }
  void set_t(std::size_t t);
  double lr() const { return schedule_->lr_at(static_cast<double>(t_)); }
  const Schedule& schedule() const { return *schedule_; }

 private:
  void apply();
  Optimizer& optimizer_;
  std::shared_ptr<const Schedule> schedule_;
  std::vector<double> ratios_;
  std::size_t t_ = 0;
};

}  // namespace optim
