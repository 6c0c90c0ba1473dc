#include "optim/schedule.hpp"

#include <algorithm>

#include <cmath>
#include <numbers>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "optim/registry.hpp"

namespace optim {

namespace {
void require(bool ok, std::string_view schedule, std::string_view what, double value) {
  if (!ok) throw std::invalid_argument(fmt::format("{} schedule: {}, got {}", schedule, what, value));
}
void require_lr(std::string_view schedule, std::string_view name, double lr) {
  require(lr >= 0.0 && std::isfinite(lr), schedule, fmt::format("{} must be >= 0 and finite", name), lr);
}
}  // namespace

ConstantLR::ConstantLR(double lr) : lr_(lr) { require_lr("constant", "lr", lr); }
double ConstantLR::lr_at(double) const { return lr_; }
std::string ConstantLR::describe() const { return fmt::format("constant(lr={})", lr_); }

InverseTimeLR::InverseTimeLR(double lr0, double tau) : lr0_(lr0), tau_(tau) {
  require_lr("inverse-time", "lr0", lr0);
  require(tau > 0.0 && std::isfinite(tau), "inverse-time", "tau must be > 0", tau);
}
double InverseTimeLR::lr_at(double t) const { return lr0_ / (1.0 + t / tau_); }
std::string InverseTimeLR::describe() const { return fmt::format("inverse-time(lr0={}, tau={})", lr0_, tau_); }

LinearLR::LinearLR(double lr0, double final_lr, double steps) : lr0_(lr0), final_(final_lr), steps_(steps) {
  require_lr("linear", "lr0", lr0);
  require_lr("linear", "final_lr", final_lr);
  require(steps > 0 && std::isfinite(steps), "linear", "the horizon N must be > 0", steps);
}
double LinearLR::lr_at(double t) const {
  if (t >= steps_) return final_;
  double a = t / steps_;
  return lr0_ * (1.0 - a) + final_ * a;
}
std::string LinearLR::describe() const {
  return fmt::format("linear(lr0={}, final={}, steps={})", lr0_, final_, steps_);
}

StepLR::StepLR(double lr0, double step_size, double gamma) : lr0_(lr0), step_size_(step_size), gamma_(gamma) {
  require_lr("step", "lr0", lr0);
  require(step_size > 0 && std::isfinite(step_size), "step", "step_size must be > 0", step_size);
  require(gamma > 0.0 && std::isfinite(gamma), "step", "gamma must be > 0", gamma);
}
double StepLR::lr_at(double t) const { return lr0_ * std::pow(gamma_, std::floor(t / step_size_)); }
std::string StepLR::describe() const {
  return fmt::format("step(lr0={}, step_size={}, gamma={})", lr0_, step_size_, gamma_);
}

ExponentialLR::ExponentialLR(double lr0, double gamma) : lr0_(lr0), gamma_(gamma) {
  require_lr("exponential", "lr0", lr0);
  require(gamma > 0.0 && std::isfinite(gamma), "exponential", "gamma must be > 0", gamma);
}
double ExponentialLR::lr_at(double t) const { return lr0_ * std::pow(gamma_, t); }
std::string ExponentialLR::describe() const { return fmt::format("exponential(lr0={}, gamma={})", lr0_, gamma_); }

CosineLR::CosineLR(double lr0, double steps, double min_lr) : lr0_(lr0), steps_(steps), min_(min_lr) {
  require_lr("cosine", "lr0", lr0);
  require_lr("cosine", "min_lr", min_lr);
  require(steps > 0 && std::isfinite(steps), "cosine", "the horizon T must be > 0", steps);
}
double CosineLR::lr_at(double t) const {
  if (t >= steps_) return min_;
  double c = std::cos(std::numbers::pi * t / steps_);
  return min_ + (lr0_ - min_) * (1.0 + c) / 2.0;
}
std::string CosineLR::describe() const {
  return fmt::format("cosine(lr0={}, steps={}, min={})", lr0_, steps_, min_);
}

WarmupLR::WarmupLR(std::shared_ptr<const Schedule> inner, double warmup_steps, double start_factor)
    : inner_(std::move(inner)), warmup_(warmup_steps), start_(start_factor) {
  if (!inner_) throw std::invalid_argument("warmup schedule: no schedule to wrap");
  require(warmup_steps >= 0 && std::isfinite(warmup_steps), "warmup", "the warm-up length must be >= 0",
          warmup_steps);
  require(start_factor >= 0.0 && start_factor <= 1.0, "warmup", "start_factor must be in [0, 1]", start_factor);
}
double WarmupLR::lr_at(double t) const {
  if (t >= warmup_) return inner_->lr_at(t - warmup_);
  double a = t / warmup_;
  return inner_->lr_at(0) * (start_ + (1.0 - start_) * a);
}
std::string WarmupLR::describe() const {
  return fmt::format("warmup(steps={}, start_factor={}) then {}", warmup_, start_, inner_->describe());
}

double linear_scaling_rule(double base_lr, std::size_t batch, std::size_t base_batch) {
  if (batch == 0 || base_batch == 0) {
    throw std::invalid_argument(fmt::format("linear_scaling_rule: batch sizes must be > 0, got {} and {}", batch,
                                            base_batch));
  }
  require_lr("linear_scaling_rule", "base_lr", base_lr);
  return base_lr * static_cast<double>(batch) / static_cast<double>(base_batch);
}

// ---- registrations: options in epochs (the convenience unit) or steps; each schedule is a function of the step

namespace {

/// Steps of a length given in epochs, unless `steps` gives it directly; `whole` when both are 0.
double steps_of(double epochs, std::size_t steps, const ScheduleContext& c, double whole) {
  if (steps > 0) return static_cast<double>(steps);
  if (epochs > 0) return std::max(1.0, std::round(epochs * static_cast<double>(c.steps_per_epoch)));
  return whole;
}
constexpr std::size_t kMaxSteps = 1'000'000'000'000;

struct NoOptions {};
const RegisterSchedule<NoOptions> constant_registration{
    "constant", "η_t = η0", {}, [](const NoOptions&, const ScheduleContext& c) {
      return std::make_unique<ConstantLR>(c.base_lr);
    }};

struct InverseTimeOptions {
  double tau = 1.0;
  std::size_t tau_steps = 0;
};
const RegisterSchedule<InverseTimeOptions> inverse_time_registration{
    "inverse-time", "η_t = η0 / (1 + t/τ): Robbins-Monro annealing (000 §5.1.4: tau=1 is 1/epoch; tau_steps=1 is 1/t)",
    config::OptionTable<InverseTimeOptions>()
        .real("tau", &InverseTimeOptions::tau, config::Range::positive(), "τ in epochs")
        .count("tau_steps", &InverseTimeOptions::tau_steps, 0, kMaxSteps, "τ in steps (replaces tau)"),
    [](const InverseTimeOptions& o, const ScheduleContext& c) {
      return std::make_unique<InverseTimeLR>(c.base_lr, steps_of(o.tau, o.tau_steps, c, 1.0));
    }};

struct DecayOptions {
  double final_lr = 0.001;
  double epochs = 0;
  std::size_t steps = 0;
};
config::OptionTable<DecayOptions> decay_table(std::string_view final_help) {
  config::OptionTable<DecayOptions> table;
  table.real("final", &DecayOptions::final_lr, config::Range::at_least(0), std::string(final_help))
      .real("epochs", &DecayOptions::epochs, config::Range::at_least(0), "epochs to decay over (0: the whole run)")
      .count("steps", &DecayOptions::steps, 0, kMaxSteps, "steps to decay over (replaces epochs)");
  return table;
}
const RegisterSchedule<DecayOptions> linear_registration{
    "linear", "η_t = η0 (1 - t/N) + η_N t/N, then η_N (002 eq. 5, 004 Prop. 3.2)",
    decay_table("η_N, the rate reached at the end"),
    [](const DecayOptions& o, const ScheduleContext& c) {
      return std::make_unique<LinearLR>(c.base_lr, o.final_lr,
                                        steps_of(o.epochs, o.steps, c, static_cast<double>(c.total_steps)));
    }};
const RegisterSchedule<DecayOptions> cosine_registration{
    "cosine", "η_t = η_min + (η0 - η_min)(1 + cos(π t/T))/2, then η_min (Loshchilov & Hutter 2017)",
    decay_table("η_min, the rate reached at the end"),
    [](const DecayOptions& o, const ScheduleContext& c) {
      return std::make_unique<CosineLR>(c.base_lr, steps_of(o.epochs, o.steps, c, static_cast<double>(c.total_steps)),
                                        o.final_lr);
    },
    DecayOptions{.final_lr = 0.0}};

struct StepOptions {
  double every = 10;
  std::size_t every_steps = 0;
  double gamma = 0.1;
};
const RegisterSchedule<StepOptions> step_registration{
    "step", "η_t = η0 γ^floor(t/s): multiply by γ every s",
    config::OptionTable<StepOptions>()
        .real("every", &StepOptions::every, config::Range::positive(), "s in epochs")
        .count("every_steps", &StepOptions::every_steps, 0, kMaxSteps, "s in steps (replaces every)")
        .real("gamma", &StepOptions::gamma, config::Range::positive(), "factor γ"),
    [](const StepOptions& o, const ScheduleContext& c) {
      return std::make_unique<StepLR>(c.base_lr, steps_of(o.every, o.every_steps, c, 1.0), o.gamma);
    }};

struct ExponentialOptions {
  double gamma = 0.1;
};
const RegisterSchedule<ExponentialOptions> exponential_registration{
    "exponential", "η_t = η0 γ^(t/steps per epoch): γ per epoch, applied smoothly at every step",
    config::OptionTable<ExponentialOptions>().real("gamma", &ExponentialOptions::gamma, config::Range::positive(),
                                                   "factor per epoch"),
    [](const ExponentialOptions& o, const ScheduleContext& c) {
      return std::make_unique<ExponentialLR>(c.base_lr,
                                             std::pow(o.gamma, 1.0 / static_cast<double>(c.steps_per_epoch)));
    }};

}  // namespace

LRScheduler::LRScheduler(Optimizer& optimizer, std::shared_ptr<const Schedule> schedule)
    : optimizer_(optimizer), schedule_(std::move(schedule)) {
  if (!schedule_) throw std::invalid_argument("LRScheduler: no schedule");
  double base = optimizer_.lr(0);
  for (std::size_t g = 0; g < optimizer_.group_count(); ++g) {
    ratios_.push_back(base > 0.0 ? optimizer_.lr(g) / base : 1.0);
  }
  apply();
}

void LRScheduler::step() {
  ++t_;
  apply();
}

void LRScheduler::set_t(std::size_t t) {
  t_ = t;
  apply();
}

void LRScheduler::apply() {
  double lr = schedule_->lr_at(static_cast<double>(t_));
  for (std::size_t g = 0; g < ratios_.size(); ++g) optimizer_.set_lr(g, g == 0 ? lr : lr * ratios_[g]);
}

}  // namespace optim
