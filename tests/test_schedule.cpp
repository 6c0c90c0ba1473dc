// Learning-rate schedules: each one's values at chosen steps against its formula written out here, the
// factory, the linear scaling rule, and the scheduler driving an optimiser's groups.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <numbers>

#include "optim/registry.hpp"
#include "optim/schedule.hpp"
#include "optim/sgd.hpp"

using doctest::Approx;

TEST_CASE("constant") {
  optim::ConstantLR s(0.1);
  CHECK(s.lr_at(0) == 0.1);
  CHECK(s.lr_at(1000) == 0.1);
}

TEST_CASE("inverse time, Robbins-Monro (000 §5.1.4): η_t = η0 / (1 + t / τ)") {
  optim::InverseTimeLR s(0.5, 2.0);
  for (double t : {0.0, 1.0, 2.0, 6.0, 98.0}) CHECK(s.lr_at(t) == Approx(0.5 / (1.0 + t / 2.0)).epsilon(1e-15));
  CHECK(s.lr_at(2) == Approx(0.25));
  CHECK(s.lr_at(6) == Approx(0.125));
  // τ = 1 is 000's 1/epoch annealing, epoch = t + 1.
  optim::InverseTimeLR per_epoch(0.3);
  for (int epoch = 1; epoch <= 5; ++epoch) CHECK(per_epoch.lr_at(epoch - 1) == Approx(0.3 / epoch).epsilon(1e-15));
}

TEST_CASE("linear decay (002 eq. 5, 004 Prop. 3.2): η_k = η0 (1 - k/N) + η_N k/N, then η_N") {
  // 002's own values: η0 = 0.1, η_N = 0.001.
  const double lr0 = 0.1, final_lr = 0.001, n = 10;
  optim::LinearLR s(lr0, final_lr, n);
  for (double k : {0.0, 1.0, 2.5, 5.0, 9.0}) {
    double a = k / n;
    CHECK(s.lr_at(k) == Approx(lr0 * (1 - a) + a * final_lr).epsilon(1e-15));
  }
  CHECK(s.lr_at(0) == 0.1);
  CHECK(s.lr_at(5) == Approx(0.0505));
  CHECK(s.lr_at(10) == 0.001);
  CHECK(s.lr_at(25) == 0.001);  // constant after N
}

TEST_CASE("step: η_t = η0 γ^floor(t / s)") {
  optim::StepLR s(1.0, 3, 0.5);
  CHECK(s.lr_at(0) == 1.0);
  CHECK(s.lr_at(2) == 1.0);
  CHECK(s.lr_at(2.9) == 1.0);
  CHECK(s.lr_at(3) == 0.5);
  CHECK(s.lr_at(8) == 0.25);
  CHECK(s.lr_at(9) == 0.125);
}

TEST_CASE("exponential: η_t = η0 γ^t") {
  optim::ExponentialLR s(2.0, 0.9);
  CHECK(s.lr_at(0) == 2.0);
  CHECK(s.lr_at(3) == Approx(2.0 * 0.9 * 0.9 * 0.9).epsilon(1e-15));
  CHECK(s.lr_at(0.5) == Approx(2.0 * std::sqrt(0.9)).epsilon(1e-15));
}

TEST_CASE("cosine: η_t = η_min + (η0 - η_min)(1 + cos(π t / T)) / 2, then η_min") {
  optim::CosineLR s(1.0, 10, 0.1);
  CHECK(s.lr_at(0) == Approx(1.0).epsilon(1e-15));
  CHECK(s.lr_at(5) == Approx(0.55).epsilon(1e-15));
  CHECK(s.lr_at(2.5) == Approx(0.1 + 0.9 * (1 + std::cos(std::numbers::pi / 4)) / 2).epsilon(1e-15));
  CHECK(s.lr_at(10) == 0.1);
  CHECK(s.lr_at(20) == 0.1);
}

TEST_CASE("warm-up: a linear ramp from f S(0) to S(0) over W steps, then S from its start") {
  auto inner = std::make_shared<optim::LinearLR>(0.1, 0.001, 10);
  optim::WarmupLR s(inner, 4, 0.25);
  CHECK(s.lr_at(0) == Approx(0.025).epsilon(1e-15));
  CHECK(s.lr_at(2) == Approx(0.1 * (0.25 + 0.75 * 2 / 4)).epsilon(1e-15));
  CHECK(s.lr_at(4) == 0.1);
  CHECK(s.lr_at(9) == Approx(0.0505).epsilon(1e-15));
  CHECK(s.lr_at(14) == 0.001);
  CHECK(s.describe() == "warmup(steps=4, start_factor=0.25) then linear(lr0=0.1, final=0.001, steps=10)");
}

TEST_CASE("linear scaling rule (001 §3.1): η = 1e-3 b / 64") {
  CHECK(optim::linear_scaling_rule(1e-3, 64) == 1e-3);
  CHECK(optim::linear_scaling_rule(1e-3, 256) == Approx(4e-3).epsilon(1e-15));
  CHECK(optim::linear_scaling_rule(1e-3, 4096) == Approx(0.064).epsilon(1e-15));
  CHECK(optim::linear_scaling_rule(0.1, 20, 10) == Approx(0.2).epsilon(1e-15));
  CHECK_THROWS_AS(optim::linear_scaling_rule(1e-3, 0), std::invalid_argument);
  CHECK_THROWS_AS(optim::linear_scaling_rule(-1.0, 64), std::invalid_argument);
}

TEST_CASE("schedules by spec: every registered name, epochs turned into steps, warm-up, and the errors") {
  // 10 steps an epoch, a 50-step run, η0 = 0.1.
  const optim::ScheduleContext c{.base_lr = 0.1, .steps_per_epoch = 10, .total_steps = 50};
  auto at = [&](const std::string& spec, double t) { return optim::make_schedule(config::parse_spec(spec), c)->lr_at(t); };
  CHECK(at("constant", 37) == 0.1);
  CHECK(at("inverse-time(tau=2)", 20) == Approx(0.05));        // τ = 20 steps
  CHECK(at("inverse-time(tau_steps=1)", 4) == Approx(0.02));   // Robbins-Monro 1/t
  CHECK(at("linear(final=0.001)", 25) == Approx(0.0505));      // over the whole run: N = 50
  CHECK(at("linear(final=0.001)", 50) == Approx(0.001));
  CHECK(at("linear(final=0.001,epochs=1)", 5) == Approx(0.0505));
  CHECK(at("linear(final=0.001,steps=4)", 2) == Approx(0.0505));
  CHECK(at("step(every=3,gamma=0.5)", 60) == Approx(0.025));    // s = 30 steps
  CHECK(at("step(every_steps=3,gamma=0.5)", 6) == Approx(0.025));
  CHECK(at("exponential(gamma=0.5)", 20) == Approx(0.025));     // γ per epoch, 0.5^(t/10)
  CHECK(at("exponential(gamma=0.5)", 5) == Approx(0.1 * std::sqrt(0.5)));
  CHECK(at("cosine(final=0.001)", 25) == Approx(0.001 + 0.099 / 2));
  CHECK(at("cosine", 50) == 0.0);
  for (const std::string& name : optim::schedules().names()) CHECK(at(name, 0) == Approx(0.1));
  // Warm-up: 2 epochs = 20 steps from 0.1 η0, then the schedule from its start.
  CHECK(at("linear(final=0.001,epochs=1,warmup=2)", 0) == Approx(0.01));
  CHECK(at("linear(final=0.001,epochs=1,warmup=2)", 25) == Approx(0.0505));
  CHECK(at("constant(warmup_steps=4,warmup_start=0)", 2) == Approx(0.05));
  CHECK(optim::resolve_schedule(config::parse_spec("linear(final=1e-5)")).text() ==
        "linear(final=1e-05,epochs=0,steps=0,warmup=0,warmup_steps=0,warmup_start=0.1)");
  CHECK_THROWS_WITH_AS(at("poly", 0), doctest::Contains("unknown schedule 'poly' (known: constant, cosine"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(at("inverse-time(tau=0)", 0), doctest::Contains("inverse-time schedule: tau must be > 0, got '0'"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(at("linear(gamma=0.5)", 0), doctest::Contains("linear schedule: unknown option 'gamma'"),
                       config::SpecError);
  CHECK_THROWS_AS(optim::make_schedule(config::parse_spec("cosine"), {.base_lr = -1}), std::invalid_argument);
}

TEST_CASE("LRScheduler sets group 0 to the schedule and keeps the other groups' ratios") {
  ag::Tensor a = ag::Tensor::ones(ag::Shape{1}, ag::DType::f64);
  ag::Tensor b = ag::Tensor::ones(ag::Shape{1}, ag::DType::f64);
  a.set_requires_grad();
  b.set_requires_grad();
  optim::SGD sgd({{.params = {{"a", a}}}, {.params = {{"b", b}}, .options = optim::SGDOptions{.lr = 0.2}}},
                 {.lr = 0.1});
  optim::LRScheduler scheduler(sgd, std::make_shared<optim::StepLR>(1.0, 1, 0.5));
  CHECK(sgd.lr(0) == 1.0);
  CHECK(sgd.lr(1) == 2.0);
  a.set_grad(ag::Tensor::ones(ag::Shape{1}, ag::DType::f64));
  b.set_grad(ag::Tensor::ones(ag::Shape{1}, ag::DType::f64));
  sgd.step();
  scheduler.step();
  CHECK(scheduler.t() == 1);
  CHECK(scheduler.lr() == 0.5);
  CHECK(sgd.lr(0) == 0.5);
  CHECK(sgd.lr(1) == 1.0);
  sgd.step();
  CHECK(a.at(0) == Approx(1.0 - 1.0 - 0.5));
  CHECK(b.at(0) == Approx(1.0 - 2.0 - 1.0));
  scheduler.set_t(3);
  CHECK(sgd.lr(0) == 0.125);
  CHECK(sgd.lr(1) == 0.25);
}
