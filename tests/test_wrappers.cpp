// Wrappers (optim/wrapper.hpp): clip, lookahead, ema, swa and sam, each against its formula written out
// here; the evaluation point (eval / train); wrapper specs (keys passed to the inner optimiser, nested
// resolution, conflicts, groups); the state with its inner part, through a checkpoint.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "nn/checkpoint.hpp"
#include "optim/optim.hpp"

using ag::DType;
using ag::Tensor;
using Vec = std::vector<double>;

namespace {

Tensor param(const Vec& values, DType dtype = DType::f64) {
  Tensor t = Tensor::from_data(ag::Shape{values.size()}, std::span<const double>(values)).to(dtype);
  t.set_requires_grad();
  return t;
}

Tensor constant(const Vec& values) { return Tensor::from_data(ag::Shape{values.size()}, std::span<const double>(values)); }

/// f(w) = c · w: the gradient is c wherever w is.
optim::Optimizer::LossFn linear(const Tensor& w, const Vec& c) {
  return [w, c] { return ag::sum(ag::mul(w, constant(c))); };
}

/// f(w) = ½ Σ d_i w_i²: the gradient is d ⊙ w.
optim::Optimizer::LossFn diagonal_quadratic(const Tensor& w, const Vec& d) {
  return [w, d] { return ag::mul(ag::sum(ag::mul(ag::mul(w, w), constant(d))), 0.5); };
}

void check_equal(const Tensor& t, const Vec& expected) {
  REQUIRE(t.numel() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("element " << i);
    CHECK(t.at(i) == doctest::Approx(expected[i]).epsilon(1e-15));
  }
}

Tensor entry(const std::vector<nn::NamedTensor>& state, const std::string& name) {
  for (const auto& [n, t] : state) {
    if (n == name) return t;
  }
  FAIL("no state entry " << name);
  return Tensor();
}

}  // namespace

TEST_CASE("clip: g <- g max_norm / (‖g‖ + 1e-6) when that is below 1, over every parameter") {
  Tensor a = param({1.0, 1.0}), b = param({2.0});
  // ‖(3, 4, 12)‖ = 13.
  auto opt = optim::make_optimizer("clip(inner=sgd(lr=1),max_norm=2)", {{"a", a}, {"b", b}});
  opt->step(optim::Optimizer::LossFn([&] { return ag::add(ag::sum(ag::mul(a, constant({3, 4}))), ag::mul(ag::sum(b), 12.0)); }));
  const double c = 2.0 / (13.0 + 1e-6);
  check_equal(a, {1.0 - 3 * c, 1.0 - 4 * c});
  check_equal(b, {2.0 - 12 * c});
  CHECK(dynamic_cast<optim::Clip&>(*opt).last_norm() == doctest::Approx(13.0).epsilon(1e-15));

  SUBCASE("below max_norm: the gradients pass unchanged") {
    Tensor w = param({0.0, 0.0});
    auto small = optim::make_optimizer("clip(inner=sgd(lr=1),max_norm=1)", {{"w", w}});
    small->step(linear(w, {0.3, 0.4}));
    check_equal(w, {-0.3, -0.4});
  }
  SUBCASE("clip_grad_norm in a loop of one's own: returns the norm, replaces (never writes) the gradients") {
    Tensor w = param({0.0, 0.0});
    Tensor g = constant({6.0, 8.0});
    w.set_grad(g);
    CHECK(optim::clip_grad_norm({w}, 5.0) == 10.0);
    CHECK(g.at(0) == 6.0);
    CHECK(w.grad().at(0) == doctest::Approx(6.0 * 5.0 / (10.0 + 1e-6)).epsilon(1e-15));
    CHECK_THROWS_AS(optim::clip_grad_norm({w}, 0.0), std::invalid_argument);
  }
  SUBCASE("a NaN gradient makes every clipped gradient NaN") {
    Tensor w = param({0.0, 0.0});
    auto nan = optim::make_optimizer("clip(inner=sgd(lr=1))", {{"w", w}});
    nan->step(linear(w, {std::numeric_limits<double>::quiet_NaN(), 1.0}));
    CHECK(std::isnan(w.at(0)));
    CHECK(std::isnan(w.at(1)));
  }
  SUBCASE("newton needs the loss itself: clip cannot reach its gradients") {
    Tensor w = param({1.0});
    auto around_newton = optim::make_optimizer("clip(inner=newton)", {{"w", w}});
    CHECK_THROWS_WITH_AS(around_newton->step(diagonal_quadratic(w, {1.0})), doctest::Contains("newton"), std::logic_error);
  }
}

TEST_CASE("lookahead: k inner steps, then φ <- φ + α (θ - φ), θ <- φ") {
  // SGD on f = c · w moves θ by -lr c each step.
  const Vec w0{1.0, -1.0}, c{0.5, 2.0};
  const double lr = 0.1, alpha = 0.3;
  Tensor w = param(w0);
  auto opt = optim::make_optimizer("lookahead(inner=sgd(lr=0.1),k=2,alpha=0.3)", {{"w", w}});
  Vec phi = w0, theta = w0;
  for (int t = 1; t <= 6; ++t) {
    opt->step(linear(w, c));
    for (std::size_t i = 0; i < 2; ++i) theta[i] -= lr * c[i];
    if (t % 2 == 0) {
      for (std::size_t i = 0; i < 2; ++i) {
        phi[i] += alpha * (theta[i] - phi[i]);
        theta[i] = phi[i];
      }
    }
    INFO("step " << t);
    check_equal(w, theta);
    check_equal(entry(opt->state(), "state/w/slow"), phi);
  }
}

TEST_CASE("ema: a <- a + (1 - decay)(w - a) after each step (the first copies); eval() evaluates at a") {
  const Vec w0{1.0, -1.0}, c{0.5, 2.0};
  Tensor w = param(w0);
  auto opt = optim::make_optimizer("ema(inner=sgd(lr=0.1),decay=0.75)", {{"w", w}});
  Vec x = w0, a;
  for (int t = 1; t <= 4; ++t) {
    opt->step(linear(w, c));
    for (std::size_t i = 0; i < 2; ++i) x[i] -= 0.1 * c[i];
    if (t == 1) {
      a = x;
    } else {
      for (std::size_t i = 0; i < 2; ++i) a[i] += 0.25 * (x[i] - a[i]);
    }
  }
  check_equal(w, x);
  const Tensor before = w.clone();
  opt->eval();
  CHECK(opt->evaluating());
  check_equal(w, a);
  opt->eval();  // a no-op when evaluating already
  check_equal(w, a);
  CHECK_THROWS_WITH_AS(opt->step(linear(w, c)), doctest::Contains("call train() first"), std::logic_error);
  CHECK_THROWS_WITH_AS(opt->state(), doctest::Contains("call train() first"), std::logic_error);
  opt->train();
  CHECK(std::memcmp(w.data<double>(), before.data<double>(), 2 * sizeof(double)) == 0);  // bit for bit
  {
    optim::EvalScope at(*opt);
    check_equal(w, a);
  }
  check_equal(w, x);
}

TEST_CASE("swa: the mean of the weights after the first `start` steps, every `every` steps") {
  const Vec w0{1.0, -1.0}, c{0.5, 2.0};
  Tensor w = param(w0);
  auto opt = optim::make_optimizer("swa(inner=sgd(lr=0.1),start=1,every=2)", {{"w", w}});
  std::vector<Vec> x{w0};
  for (int t = 1; t <= 6; ++t) {
    opt->step(linear(w, c));
    Vec next = x.back();
    for (std::size_t i = 0; i < 2; ++i) next[i] -= 0.1 * c[i];
    x.push_back(next);
  }
  // Steps 3 and 5 are averaged: a = x3, then a + (x5 - a) / 2.
  Vec a = x[3];
  for (std::size_t i = 0; i < 2; ++i) a[i] += (x[5][i] - a[i]) / 2.0;
  CHECK(entry(opt->state(), "state/w/count").item() == 2.0);
  optim::EvalScope at(*opt);
  check_equal(w, a);
}

TEST_CASE("sam: the inner step from the gradient at w + ρ g / ‖g‖; ASAM scales it by |w|") {
  const Vec w0{1.0, 2.0}, d{1.0, 3.0};
  const double rho = 0.05, lr = 0.1;
  auto expected = [&](bool adaptive) {
    Vec g{d[0] * w0[0], d[1] * w0[1]}, e(2), w1(2);
    double norm = 0;
    for (std::size_t i = 0; i < 2; ++i) norm += std::pow(adaptive ? std::abs(w0[i]) * g[i] : g[i], 2);
    for (std::size_t i = 0; i < 2; ++i) e[i] = (adaptive ? w0[i] * w0[i] : 1.0) * g[i] * rho / (std::sqrt(norm) + 1e-12);
    for (std::size_t i = 0; i < 2; ++i) w1[i] = w0[i] - lr * d[i] * (w0[i] + e[i]);
    return w1;
  };
  for (bool adaptive : {false, true}) {
    INFO("adaptive " << adaptive);
    Tensor w = param(w0);
    auto opt = optim::make_optimizer(adaptive ? "sam(inner=sgd(lr=0.1),rho=0.05,adaptive=true)" : "sam(inner=sgd(lr=0.1),rho=0.05)",
                                     {{"w", w}});
    double loss = opt->step(diagonal_quadratic(w, d));
    CHECK(loss == doctest::Approx(0.5 * (1.0 + 12.0)).epsilon(1e-15));  // the loss at w, before the ascent
    check_equal(w, expected(adaptive));
  }
  Tensor w = param(w0);
  auto opt = optim::make_optimizer("sam(inner=sgd)", {{"w", w}});
  CHECK_THROWS_WITH_AS(opt->step(), doctest::Contains("needs the loss"), std::logic_error);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("sam(inner=newton)", {{"w", w}}),
                       doctest::Contains("sam: its inner optimiser must step from the gradients alone; newton"),
                       std::invalid_argument);
}

TEST_CASE("wrapper specs: keys the wrapper lacks go to the inner optimiser; resolved in full; conflicts refused") {
  CHECK(optim::resolve_optimizer(config::parse_spec("clip(lr=0.1)")).text() ==
        "clip(inner=adam(lr=0.1,weight_decay=0,decoupled=false,beta1=0.9,beta2=0.999,eps=1e-08,eps_placement=outside),"
        "max_norm=1)");
  CHECK(optim::resolve_optimizer(config::parse_spec("lookahead(inner=sgd(lr=0.1), lr=1e-1, k=3)")).text() ==
        "lookahead(inner=sgd(lr=0.1,weight_decay=0,decoupled=false,in_backward=false),k=3,alpha=0.5)");
  CHECK_THROWS_WITH_AS(optim::resolve_optimizer(config::parse_spec("clip(inner=sgd(lr=0.2),lr=0.1)")),
                       doctest::Contains("clip: lr=0.1 conflicts with lr=0.2 in its inner optimiser sgd(lr=0.2)"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(optim::resolve_optimizer(config::parse_spec("clip(inner=sgd(betta=1))")),
                       doctest::Contains("sgd: unknown option 'betta'"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::resolve_optimizer(config::parse_spec("lookahead(k=0)")),
                       doctest::Contains("lookahead: k must be"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::resolve_optimizer(config::parse_spec("clip(inner=nothing)")),
                       doctest::Contains("unknown optimizer 'nothing'"), config::SpecError);
  CHECK(optim::option_of(config::parse_spec("ema(inner=lookahead(inner=sgd(lr=0.3)))"), "lr") == "0.3");
  CHECK_FALSE(optim::option_of(config::parse_spec("ema"), "lr"));

  SUBCASE("wrappers nest; the learning rate is the innermost one's, and set_lr reaches it") {
    Tensor w = param({1.0});
    auto opt = optim::make_optimizer("ema(inner=lookahead(inner=sgd(lr=0.3)))", {{"w", w}});
    CHECK(opt->lr() == 0.3);
    opt->set_lr(0.5);
    auto& inner = dynamic_cast<optim::Wrapper&>(dynamic_cast<optim::Wrapper&>(*opt).wrapped()).wrapped();
    CHECK(inner.name() == "sgd");
    CHECK(inner.lr() == 0.5);
  }
  SUBCASE("a group's keys reach the inner optimiser's groups") {
    Tensor w = param({1.0}), b = param({0.5});
    auto opt = optim::make_optimizer(config::parse_spec("lookahead(inner=sgd(weight_decay=0.01))"),
                                     std::vector<optim::GroupSpec>{{{{"w", w}}}, {{{"b", b}}, config::parse_spec("_(weight_decay=0)")}});
    auto& sgd = dynamic_cast<optim::SGD&>(dynamic_cast<optim::Wrapper&>(*opt).wrapped());
    CHECK(sgd.options(0).weight_decay == 0.01);
    CHECK(sgd.options(1).weight_decay == 0.0);
    CHECK(opt->group_count() == 2);
  }
}

TEST_CASE("a wrapper's state: its own entries and the inner's under inner/, checked together") {
  Tensor w = param({1.0, -1.0});
  auto opt = optim::make_optimizer("lookahead(inner=adam(lr=0.1),k=3)", {{"w", w}});
  for (int t = 0; t < 4; ++t) opt->step(linear(w, {0.5, 2.0}));
  std::vector<std::string> names;
  for (const auto& [name, tensor] : opt->state()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"optimizer/lookahead", "global/step", "global/params_with_state", "state/w/slow",
                                          "inner/optimizer/adam", "inner/global/step", "inner/global/params_with_state",
                                          "inner/group/0/lr", "inner/state/w/exp_avg",
                                          "inner/state/w/exp_avg_sq", "inner/state/w/step"});
  // Through a file, into a fresh one: the same next steps, bit for bit.
  const std::string path = (std::filesystem::temp_directory_path() / "tapegrad_test_wrappers.ckpt").string();
  nn::save_tensors(path, opt->state());
  std::vector<nn::NamedTensor> loaded = nn::load_tensors(path);
  std::filesystem::remove(path);
  Tensor w2 = w.clone();
  w2.set_requires_grad();
  auto resumed = optim::make_optimizer("lookahead(inner=adam(lr=0.1),k=3)", {{"w", w2}});
  resumed->load_state(loaded);
  for (int t = 0; t < 4; ++t) {
    opt->step(linear(w, {0.5, 2.0}));
    resumed->step(linear(w2, {0.5, 2.0}));
  }
  CHECK(std::memcmp(w.data<double>(), w2.data<double>(), 2 * sizeof(double)) == 0);

  SUBCASE("a missing inner entry and a group rate at the wrong level are named, and nothing changes") {
    std::vector<nn::NamedTensor> broken;
    for (const auto& [name, tensor] : loaded) {
      if (name != "inner/state/w/exp_avg_sq") broken.emplace_back(name, tensor);
    }
    broken.emplace_back("group/0/lr", Tensor::scalar(0.1, DType::f64));
    const Tensor before = entry(resumed->state(), "state/w/slow");
    CHECK_THROWS_WITH_AS(resumed->load_state(broken), doctest::Contains("exp_avg_sq"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(resumed->load_state(broken), doctest::Contains("learning rates are its inner optimiser's"),
                         std::runtime_error);
    CHECK(entry(resumed->state(), "state/w/slow").at(0) == before.at(0));
  }
  SUBCASE("another wrapper's state is refused") {
    auto ema = optim::make_optimizer("ema(inner=adam(lr=0.1))", {{"w", w2}});
    CHECK_THROWS_WITH_AS(ema->load_state(loaded), doctest::Contains("saved by 'lookahead', not 'ema'"), std::runtime_error);
  }
}
