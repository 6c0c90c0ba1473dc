#include "optim/schedule.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

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

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names{"constant", "inverse-time", "linear", "step", "exponential", "cosine"};
  return names;
}

bool is_schedule_name(std::string_view name) {
  for (const std::string& known : schedule_names()) {
    if (known == name) return true;
  }
  return false;
}

std::unique_ptr<Schedule> make_schedule(std::string_view name, const ScheduleConfig& c) {
  std::unique_ptr<Schedule> s;
  const double lr = c.base_lr;
  if (name == "constant") {
    s = std::make_unique<ConstantLR>(lr);
  } else if (name == "inverse-time") {
    s = std::make_unique<InverseTimeLR>(lr, c.tau);
  } else if (name == "linear") {
    s = std::make_unique<LinearLR>(lr, c.final_lr, c.horizon);
  } else if (name == "step") {
    s = std::make_unique<StepLR>(lr, c.step_size, c.gamma);
  } else if (name == "exponential") {
    s = std::make_unique<ExponentialLR>(lr, c.gamma);
  } else if (name == "cosine") {
    s = std::make_unique<CosineLR>(lr, c.horizon, c.final_lr);
  } else {
    throw std::invalid_argument(
        fmt::format("make_schedule: unknown schedule '{}' (known: {})", name, fmt::join(schedule_names(), ", ")));
  }
  if (c.warmup > 0) s = std::make_unique<WarmupLR>(std::move(s), c.warmup, c.warmup_start_factor);
  return s;
}

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
