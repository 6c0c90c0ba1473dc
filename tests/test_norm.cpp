// Normalisation and what came with it: batch_norm and layer_norm gradchecked to second order in float64
// (2-D and 4-D, training and eval, with and without the affine map) and against closed-form gradients;
// running statistics against hand-computed values; the modules (BatchNorm1d/2d in train and eval mode,
// LayerNorm, Residual, Lambda); buffers (named, not trained, saved and loaded by checkpoints, a mismatch
// refused by name); Module::to; clip_grad_norm and clip_grad_value; NaN through the norms.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <span>
#include <vector>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "nn/nn.hpp"
#include "gradcheck_assertions.hpp"

using namespace ag;

namespace {

using Inputs = std::vector<Tensor>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("tapegrad_test_norm_" + name)).string();
}

/// (N, C, S) view of an (N, C, ...) shape: S the product of the trailing extents.
std::size_t trailing(const Shape& shape) {
  std::size_t s = 1;
  for (std::size_t d = 2; d < shape.rank(); ++d) s *= shape[d];
  return s;
}

/// Per channel of x (N, C, ...): the mean and the biased variance, with plain loops in double.
std::pair<std::vector<double>, std::vector<double>> channel_moments(const Tensor& x) {
  const std::size_t n = x.dim(0), c = x.dim(1), s = trailing(x.shape());
  std::vector<double> v = x.to_vector(), mean(c, 0.0), var(c, 0.0);
  for (std::size_t k = 0; k < c; ++k) {
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < s; ++j) mean[k] += v[(i * c + k) * s + j] / double(n * s);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < s; ++j) var[k] += std::pow(v[(i * c + k) * s + j] - mean[k], 2) / double(n * s);
  }
  return {mean, var};
}

Tensor random(const Shape& shape, std::uint64_t seed, double mean = 0.0, double stddev = 1.0, DType dtype = DType::f64) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, mean, stddev, dtype);
}

}  // namespace

// ---------------------------------------------------------------- gradchecks

TEST_CASE("batch_norm passes gradcheck and gradgradcheck in float64: 2-D and 4-D, training and eval, affine or not") {
  for (Shape shape : {Shape{5, 3}, Shape{2, 3, 3, 2}}) {
    for (bool training : {true, false}) {
      for (bool affine : {true, false}) {
        CAPTURE(shape.str());
        CAPTURE(training);
        CAPTURE(affine);
        Tensor x = random(shape, 1, 0.5, 2.0);
        Tensor w = random(Shape{3}, 2, 1.0, 0.5), b = random(Shape{3}, 3);
        Tensor rm = random(Shape{3}, 4), rv = add(mul(random(Shape{3}, 5), random(Shape{3}, 5)), 0.5);
        auto bn = [&, training](const Tensor& in, const Tensor& weight, const Tensor& bias) {
          return batch_norm(in, rm, rv, weight, bias, training, 0.1, 1e-3);
        };
        if (affine) {
          CHECK_GRADCHECK([&](const Inputs& v) { return bn(v[0], v[1], v[2]); }, {x, w, b});
          // The bias does not reach the gradient: its second derivatives are zero, so it stays a constant here.
          CHECK_GRADGRADCHECK([&](const Inputs& v) { return bn(v[0], v[1], b.to(DType::f64)); }, {x, w});
        } else {
          CHECK_GRADCHECK([&](const Inputs& v) { return bn(v[0], Tensor(), Tensor()); }, {x});
          // Eval without affine is linear in x: a zero second derivative is the right answer.
          CHECK_GRADGRADCHECK([&](const Inputs& v) { return bn(v[0], Tensor(), Tensor()); }, {x},
                              {.allow_all_zero = !training});
        }
      }
    }
  }
}

TEST_CASE("layer_norm passes gradcheck and gradgradcheck in float64, over one and two trailing axes") {
  Tensor x = random(Shape{3, 2, 4}, 6, 0.3, 1.5);
  SUBCASE("the last axis, with the affine map") {
    Tensor w = random(Shape{4}, 7, 1.0, 0.5), b = random(Shape{4}, 8);
    CHECK_GRADCHECK([](const Inputs& v) { return layer_norm(v[0], Shape{4}, v[1], v[2], 1e-3); }, {x, w, b});
    CHECK_GRADGRADCHECK([&](const Inputs& v) { return layer_norm(v[0], Shape{4}, v[1], b, 1e-3); }, {x, w});
  }
  SUBCASE("two trailing axes, no affine map") {
    CHECK_GRADCHECK([](const Inputs& v) { return layer_norm(v[0], Shape{2, 4}, Tensor(), Tensor()); }, {x});
    CHECK_GRADGRADCHECK([](const Inputs& v) { return layer_norm(v[0], Shape{2, 4}, Tensor(), Tensor()); }, {x});
  }
}

// ---------------------------------------------------------------- closed forms

TEST_CASE("batch_norm's gradients against the closed form dx = (1/M) γ σ⁻¹ (M dy - Σdy - x̂ Σ dy x̂)") {
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    const double tolerance = dtype == DType::f64 ? 1e-12 : 2e-5;
    Tensor x = random(Shape{4, 3, 5, 6}, 11, 2.0, 3.0, dtype).set_requires_grad();
    Tensor w = random(Shape{3}, 12, 1.0, 0.5, dtype).set_requires_grad();
    Tensor b = random(Shape{3}, 13, 0.0, 1.0, dtype).set_requires_grad();
    Tensor dy = random(x.shape(), 14, 0.0, 1.0, dtype);
    const double eps = 1e-5;
    Tensor y = batch_norm(x, Tensor(), Tensor(), w, b, true, 0.1, eps);
    backward(y, dy);
    auto [mean, var] = channel_moments(x);
    const std::size_t n = 4, c = 3, s = 30;
    const double m = double(n * s);
    std::vector<double> xv = x.to_vector(), g = dy.to_vector();
    for (std::size_t k = 0; k < c; ++k) {
      const double invstd = 1.0 / std::sqrt(var[k] + eps);
      double sum_dy = 0, sum_dy_xhat = 0;
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < s; ++j) {
          std::size_t at = (i * c + k) * s + j;
          sum_dy += g[at];
          sum_dy_xhat += g[at] * (xv[at] - mean[k]) * invstd;
        }
      }
      CHECK(w.grad().at(k) == doctest::Approx(sum_dy_xhat).epsilon(tolerance));
      CHECK(b.grad().at(k) == doctest::Approx(sum_dy).epsilon(tolerance));
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < s; ++j) {
          std::size_t at = (i * c + k) * s + j;
          const double xhat = (xv[at] - mean[k]) * invstd;
          const double dx = w.at(k) * invstd / m * (m * g[at] - sum_dy - xhat * sum_dy_xhat);
          CHECK(x.grad().at(at) == doctest::Approx(dx).epsilon(tolerance).scale(1.0));
          CHECK(y.at(at) == doctest::Approx(xhat * w.at(k) + b.at(k)).epsilon(tolerance).scale(1.0));
        }
      }
    }
  }
}

TEST_CASE("layer_norm's forward and gradient against the closed form, per row: dx = σ⁻¹/D (D ĝ - Σĝ - x̂ Σ ĝx̂)") {
  const std::size_t rows = 6, d = 10;
  Tensor x = random(Shape{rows, d}, 21, -1.0, 4.0).set_requires_grad();
  Tensor w = random(Shape{d}, 22, 1.0, 0.5).set_requires_grad();
  Tensor b = random(Shape{d}, 23).set_requires_grad();
  Tensor dy = random(x.shape(), 24);
  const double eps = 1e-5;
  Tensor y = layer_norm(x, Shape{d}, w, b, eps);
  backward(y, dy);
  std::vector<double> xv = x.to_vector(), g = dy.to_vector(), dw(d, 0.0);
  for (std::size_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0, s1 = 0, s2 = 0;
    for (std::size_t i = 0; i < d; ++i) mean += xv[r * d + i] / double(d);
    for (std::size_t i = 0; i < d; ++i) var += std::pow(xv[r * d + i] - mean, 2) / double(d);
    const double invstd = 1.0 / std::sqrt(var + eps);
    auto xhat = [&](std::size_t i) { return (xv[r * d + i] - mean) * invstd; };
    for (std::size_t i = 0; i < d; ++i) {
      s1 += g[r * d + i] * w.at(i);
      s2 += g[r * d + i] * w.at(i) * xhat(i);
      dw[i] += g[r * d + i] * xhat(i);
    }
    for (std::size_t i = 0; i < d; ++i) {
      CHECK(y.at(r * d + i) == doctest::Approx(xhat(i) * w.at(i) + b.at(i)).epsilon(1e-12));
      const double dx = invstd / double(d) * (double(d) * g[r * d + i] * w.at(i) - s1 - xhat(i) * s2);
      CHECK(x.grad().at(r * d + i) == doctest::Approx(dx).epsilon(1e-12).scale(1.0));
    }
  }
  for (std::size_t i = 0; i < d; ++i) CHECK(w.grad().at(i) == doctest::Approx(dw[i]).epsilon(1e-12));
}

// ---------------------------------------------------------------- running statistics and the modules

TEST_CASE("running statistics after steps: r <- 0.9 r + 0.1 s, s the batch mean and the unbiased variance") {
  Tensor rm = Tensor::zeros(Shape{2}, DType::f64), rv = Tensor::ones(Shape{2}, DType::f64);
  // Channel 0 holds 1, 2, 3, 4 (mean 2.5, unbiased variance 5/3); channel 1 holds 10, 10, 10, 14.
  Tensor x = Tensor::from_data(Shape{2, 2, 2}, {1, 2, 10, 10, 3, 4, 10, 14}, DType::f64);
  batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1);
  CHECK(rm.at(0) == doctest::Approx(0.25));
  CHECK(rv.at(0) == doctest::Approx(0.9 + 0.1 * 5.0 / 3.0));
  CHECK(rm.at(1) == doctest::Approx(1.1));
  CHECK(rv.at(1) == doctest::Approx(0.9 + 0.1 * 12.0 / 3.0));
  // Later steps, against the recurrence computed by hand.
  std::vector<double> mean{0.25, 1.1}, var{0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.4};
  for (std::uint64_t step = 0; step < 3; ++step) {
    Tensor batch = random(Shape{3, 2, 2}, 30 + step, 1.0, 2.0);
    batch_norm(batch, rm, rv, Tensor(), Tensor(), true, 0.3);
    auto [m, v] = channel_moments(batch);
    for (std::size_t c = 0; c < 2; ++c) {
      mean[c] = 0.7 * mean[c] + 0.3 * m[c];
      var[c] = 0.7 * var[c] + 0.3 * v[c] * 6.0 / 5.0;
      CHECK(rm.at(c) == doctest::Approx(mean[c]).epsilon(1e-14));
      CHECK(rv.at(c) == doctest::Approx(var[c]).epsilon(1e-14));
    }
  }
  SUBCASE("eval mode leaves them alone, and one value per channel is refused in training") {
    batch_norm(x, rm, rv, Tensor(), Tensor(), false);
    CHECK(rm.at(0) == doctest::Approx(mean[0]).epsilon(1e-14));
    CHECK_THROWS_WITH_AS(batch_norm(Tensor::ones(Shape{1, 2}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                         doctest::Contains("more than 1 value per channel"), std::invalid_argument);
  }
}

TEST_CASE("BatchNorm2d: training updates the buffers; in eval mode it is the affine map of its running statistics") {
  nn::BatchNorm2d bn(3, {.momentum = 0.2, .dtype = DType::f64});
  bn.weight().copy_(Tensor::from_data(Shape{3}, {0.5, 2.0, -1.0}, DType::f64));
  bn.bias().copy_(Tensor::from_data(Shape{3}, {0.1, -0.2, 0.3}, DType::f64));
  for (std::uint64_t step = 0; step < 4; ++step) bn.forward(random(Shape{4, 3, 5, 5}, 40 + step, 3.0, 2.0));
  CHECK(bn.num_batches_tracked().item() == 4.0);
  bn.eval();
  Tensor x = random(Shape{2, 3, 4, 4}, 50, 3.0, 2.0);
  Tensor y = bn.forward(x);
  CHECK(bn.num_batches_tracked().item() == 4.0);
  for (std::size_t i = 0; i < x.numel(); ++i) {
    std::size_t c = (i / 16) % 3;
    double expected = (x.at(i) - bn.running_mean().at(c)) / std::sqrt(bn.running_var().at(c) + 1e-5) *
                          bn.weight().at(c) + bn.bias().at(c);
    CHECK(y.at(i) == doctest::Approx(expected).epsilon(1e-12));
  }
  SUBCASE("momentum unset: the cumulative average of the batches' statistics") {
    nn::BatchNorm1d average(1, {.momentum = std::nullopt, .dtype = DType::f64});
    average.forward(Tensor::from_data(Shape{2, 1}, {0, 2}, DType::f64));
    average.forward(Tensor::from_data(Shape{2, 1}, {4, 6}, DType::f64));
    CHECK(average.running_mean().item() == doctest::Approx(3.0));   // (1 + 5) / 2
    CHECK(average.running_var().item() == doctest::Approx(2.0));    // (2 + 2) / 2
  }
  SUBCASE("without running statistics: no buffers, the batch's statistics in eval mode too") {
    nn::BatchNorm1d plain(2, {.track_running_stats = false, .dtype = DType::f64});
    CHECK(plain.named_buffers().empty());
    plain.eval();
    Tensor out = plain.forward(Tensor::from_data(Shape{2, 2}, {1, 5, 3, 9}, DType::f64));
    CHECK(out.to_vector()[0] == doctest::Approx(-1.0).epsilon(1e-5));
  }
}

TEST_CASE("the norm modules gradcheck like every module, and say what is wrong with their input") {
  nn::BatchNorm1d bn1(3, {.dtype = DType::f64});
  CHECK_GRADCHECK([&](const Inputs& v) { return bn1.forward(v[0]); }, {random(Shape{4, 3}, 60)});
  nn::LayerNorm ln(Shape{4}, 1e-5, true, DType::f64);
  CHECK_GRADCHECK([&](const Inputs& v) { return ln.forward(v[0]); }, {random(Shape{2, 4}, 61)});
  CHECK_THROWS_WITH_AS(nn::BatchNorm2d(3).forward(Tensor::ones(Shape{2, 3})),
                       doctest::Contains("BatchNorm2d: expected a 4-D"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::BatchNorm1d(3).forward(Tensor::ones(Shape{2, 4})),
                       doctest::Contains("BatchNorm1d(3): input f32[2, 4] has 4"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::LayerNorm(Shape{5}).forward(Tensor::ones(Shape{2, 4})),
                       doctest::Contains("normalized_shape [5] must be the trailing extents of the input f32[2, 4]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(batch_norm(Tensor::ones(Shape{2, 3}), Tensor(), Tensor(), Tensor::ones(Shape{4}), Tensor(), true),
                       doctest::Contains("weight f32[4] for input f32[2, 3] (expected f32[3])"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(batch_norm(Tensor::ones(Shape{2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false),
                       doctest::Contains("eval mode needs the running statistics"), std::invalid_argument);
}

TEST_CASE("Residual is x + f(x); Lambda wraps a function") {
  Generator gen(70);
  auto body = std::make_shared<nn::Linear>(3, 3, nn::Init::default_uniform, true, &gen, DType::f64);
  nn::Residual block(body);
  Tensor x = random(Shape{2, 3}, 71);
  Tensor expected = add(x, body->forward(x));
  CHECK(block.forward(x).to_vector() == expected.to_vector());
  CHECK(block.named_parameters()[0].first == "body.weight");
  nn::Residual wrong(std::make_shared<nn::Linear>(3, 2));
  CHECK_THROWS_WITH_AS(wrong.forward(Tensor::ones(Shape{1, 3})),
                       doctest::Contains("Residual: its body (Linear(in=3, out=2))"), std::invalid_argument);
  nn::Sequential net{std::make_shared<nn::Lambda>([](const Tensor& t) { return mul(t, 2.0); }, "Double"),
                     std::make_shared<nn::Residual>(std::make_shared<nn::ReLU>())};
  CHECK(net.forward(Tensor::from_data(Shape{2}, {-1, 3}, DType::f64)).to_vector() == std::vector<double>{-2, 12});
  CHECK(net.describe().find("(0): Double") != std::string::npos);
}

// ---------------------------------------------------------------- buffers, checkpoints, Module::to

namespace {

/// conv, batch norm, linear: parameters "conv.*", "fc.*"; buffers "bn.*".
struct Net : nn::Module {
  explicit Net(std::size_t channels = 2)
      : conv(register_module("conv", std::make_shared<nn::Conv2d>(1, channels, 3, 1, 1))),
        bn(register_module("bn", std::make_shared<nn::BatchNorm2d>(channels))),
        fc(register_module("fc", std::make_shared<nn::Linear>(channels * 16, 3))) {}
  Tensor forward(const Tensor& x) override { return fc->forward(flatten(relu(bn->forward(conv->forward(x))))); }
  std::string type_name() const override { return "Net"; }
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::Linear> fc;
};

}  // namespace

TEST_CASE("buffers: named by path, not parameters, never trained; a name is registered once") {
  Net net;
  std::vector<std::string> buffers, params;
  for (auto& [name, t] : net.named_buffers()) {
    buffers.push_back(name);
    CHECK_FALSE(t.requires_grad());
  }
  for (auto& [name, t] : net.named_parameters()) params.push_back(name);
  CHECK(buffers == std::vector<std::string>{"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
  CHECK(params == std::vector<std::string>{"conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"});
  CHECK(net.state_dict().size() == 9);
  CHECK(net.parameters().size() == 6);
  struct Clash : nn::Module {
    Clash() {
      register_parameter("w", Tensor::ones(Shape{1}));
      CHECK_THROWS_WITH_AS(register_buffer("w", Tensor::ones(Shape{1})), doctest::Contains("'w' is already a parameter"),
                           std::invalid_argument);
      CHECK_THROWS_WITH_AS(register_buffer("g", Tensor::ones(Shape{1}).set_requires_grad()),
                           doctest::Contains("requires grad"), std::invalid_argument);
    }
    Tensor forward(const Tensor& x) override { return x; }
    std::string type_name() const override { return "Clash"; }
  } clash;
}

TEST_CASE("checkpoints save and load buffers, and refuse a mismatch by name") {
  nn::manual_seed(80);
  Net net;
  for (std::uint64_t step = 0; step < 3; ++step) net.forward(random(Shape{4, 1, 4, 4}, 81 + step, 0, 1, DType::f32));
  const std::string path = temp_path("buffers.ckpt");
  nn::save_module(path, net);
  Net other;
  nn::load_module(path, other);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(other.named_buffers()[i].second.to_vector() == net.named_buffers()[i].second.to_vector());
  }
  CHECK(other.bn->num_batches_tracked().item() == 3.0);

  SUBCASE("a model without the buffers") {
    struct Plain : nn::Module {
      Plain() : conv(register_module("conv", std::make_shared<nn::Conv2d>(1, 2, 3, 1, 1))) {}
      Tensor forward(const Tensor& x) override { return conv->forward(x); }
      std::string type_name() const override { return "Plain"; }
      std::shared_ptr<nn::Conv2d> conv;
    } plain;
    CHECK_THROWS_WITH_AS(nn::load_module(path, plain), doctest::Contains("bn.running_mean: in the file, not in the model"),
                         std::runtime_error);
    // A file without buffers (as every checkpoint before them) loads into a model without buffers.
    nn::save_tensors(path, plain.named_parameters());
    nn::load_module(path, plain);
    CHECK_THROWS_WITH_AS(nn::load_module(path, net), doctest::Contains("bn.running_var: missing from the file"),
                         std::runtime_error);
  }
  SUBCASE("buffers of another shape") {
    Net wider(3);
    CHECK_THROWS_WITH_AS(nn::load_module(path, wider),
                         doctest::Contains("bn.running_mean: f32[2] in the file, f32[3] in the model"), std::runtime_error);
  }
  std::remove(path.c_str());
}

TEST_CASE("Module::to converts every parameter and buffer in place, the modules' handles included") {
  Net net;
  Tensor weight = net.fc->weight();
  net.to(DType::f64);
  for (auto& entry : net.state_dict()) CHECK_MESSAGE(entry.second.dtype() == DType::f64, entry.first);
  CHECK(weight.dtype() == DType::f64);
  CHECK(net.bn->running_var().dtype() == DType::f64);
  Tensor y = net.forward(random(Shape{2, 1, 4, 4}, 90));
  CHECK(y.dtype() == DType::f64);
  backward(sum(y));
  CHECK(net.conv->weight().grad().dtype() == DType::f64);
  net.to(DType::f32);
  CHECK(weight.dtype() == DType::f32);
  CHECK_FALSE(weight.grad().defined());
}

// ---------------------------------------------------------------- clipping

TEST_CASE("clip_grad_norm scales by max_norm / (N + 1e-6) and returns N; clip_grad_value clamps") {
  Tensor a = Tensor::zeros(Shape{2}, DType::f64).set_requires_grad(), b = Tensor::zeros(Shape{1}, DType::f64);
  Tensor none = Tensor::zeros(Shape{1}, DType::f64).set_requires_grad();
  a.set_grad(Tensor::from_data(Shape{2}, {3, 4}, DType::f64));
  b.set_grad(Tensor::from_data(Shape{1}, {12}, DType::f64));
  CHECK(nn::grad_norm({a, b, none}) == 13.0);
  CHECK(nn::clip_grad_norm({a, b, none}, 26.0) == 13.0);  // below: unchanged
  CHECK(a.grad().at(1) == 4.0);
  CHECK(nn::clip_grad_norm({a, b, none}, 2.0) == 13.0);
  const double c = 2.0 / (13.0 + 1e-6);
  CHECK(a.grad().to_vector() == std::vector<double>{3 * c, 4 * c});
  CHECK(b.grad().at(0) == 12 * c);
  CHECK(nn::grad_norm({a, b}) == doctest::Approx(2.0));
  CHECK_THROWS_WITH_AS(nn::clip_grad_norm({a}, -1.0), doctest::Contains("max_norm must be > 0"), std::invalid_argument);

  a.set_grad(Tensor::from_data(Shape{2}, {-1.0, 0.2}, DType::f64));
  b.set_grad(Tensor::from_data(Shape{1}, {kNaN}, DType::f64));
  Tensor before = a.grad();
  nn::clip_grad_value({a, b, none}, 0.5);
  CHECK(a.grad().to_vector() == std::vector<double>{-0.5, 0.2});
  CHECK(before.at(0) == -1.0);  // replaced, not written in place
  CHECK(std::isnan(b.grad().at(0)));
  CHECK(std::isnan(nn::clip_grad_norm({a, b}, 1.0)));
  CHECK(std::isnan(a.grad().at(0)));
  CHECK_THROWS_AS(nn::clip_grad_value({a}, 0.0), std::invalid_argument);
}

// ---------------------------------------------------------------- NaN

TEST_CASE("NaN propagates through the norms: its whole group, forward and backward, and no further") {
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    SUBCASE("batch_norm in training: the NaN's channel") {
      Tensor x = random(Shape{3, 2, 4}, 100);
      std::vector<double> values = x.to_vector();
      values[5] = kNaN;  // channel 1
      Tensor poisoned = Tensor::from_data(x.shape(), std::span<const double>(values)).to(dtype).set_requires_grad();
      Tensor rm = Tensor::zeros(Shape{2}, dtype), rv = Tensor::ones(Shape{2}, dtype);
      Tensor y = batch_norm(poisoned, rm, rv, Tensor(), Tensor(), true);
      backward(sum(mul(y, random(y.shape(), 101, 0, 1, dtype))));
      for (std::size_t i = 0; i < x.numel(); ++i) {
        bool channel1 = (i / 4) % 2 == 1;
        CHECK(std::isnan(y.at(i)) == channel1);
        CHECK(std::isnan(poisoned.grad().at(i)) == channel1);
      }
      CHECK(std::isnan(rm.at(1)));
      CHECK_FALSE(std::isnan(rm.at(0)));
    }
    SUBCASE("batch_norm in eval: the NaN alone") {
      Tensor x = Tensor::from_data(Shape{2, 2}, {1, kNaN, 3, 4}, dtype).set_requires_grad();
      Tensor y = batch_norm(x, Tensor::zeros(Shape{2}, dtype), Tensor::ones(Shape{2}, dtype), Tensor(), Tensor(), false);
      backward(sum(y));
      CHECK(std::isnan(y.at(1)));
      CHECK_FALSE(std::isnan(y.at(0) + y.at(2) + y.at(3)));
    }
    SUBCASE("layer_norm: the NaN's row") {
      Tensor x = Tensor::from_data(Shape{2, 3}, {1, kNaN, 2, 4, 5, 7}, dtype).set_requires_grad();
      Tensor w = Tensor::ones(Shape{3}, dtype).set_requires_grad();
      Tensor y = layer_norm(x, Shape{3}, w, Tensor());
      backward(sum(mul(y, Tensor::from_data(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, dtype))));
      for (std::size_t i = 0; i < 6; ++i) {
        CHECK(std::isnan(y.at(i)) == (i < 3));
        CHECK(std::isnan(x.grad().at(i)) == (i < 3));
      }
      CHECK(std::isnan(w.grad().at(0)));
    }
  }
}

TEST_CASE("float32 statistics of data far from zero: the shifted sums do not cancel") {
  Tensor x = random(Shape{64, 2, 7, 7}, 110, 1000.0, 0.05, DType::f32);
  Tensor rm = Tensor::zeros(Shape{2}), rv = Tensor::zeros(Shape{2});
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 1.0);
  auto [mean, var] = channel_moments(x);
  const double m = 64.0 * 49.0;
  for (std::size_t c = 0; c < 2; ++c) {
    CHECK(rm.at(c) == doctest::Approx(mean[c]).epsilon(1e-6));
    CHECK(rv.at(c) == doctest::Approx(var[c] * m / (m - 1)).epsilon(1e-4));
  }
  Tensor rows = layer_norm(reshape(x, Shape{64, 98}), Shape{98}, Tensor(), Tensor(), 0.0);  // eps 0: E[x̂²] = 1
  double total = 0;
  for (double v : rows.to_vector()) total += v * v;
  CHECK(total / double(rows.numel()) == doctest::Approx(1.0).epsilon(1e-3));
}

TEST_CASE("update_bn: the running statistics become the mean of the batches' means and unbiased variances") {
  Generator gen(90);
  auto linear = std::make_shared<nn::Linear>(4, 3, nn::Init::default_uniform, true, &gen, DType::f64);
  auto bn = std::make_shared<nn::BatchNorm1d>(3, nn::BatchNormOptions{.dtype = DType::f64});
  nn::Sequential net{linear, std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{bn})};
  std::vector<Tensor> batches{random(Shape{5, 4}, 91), random(Shape{5, 4}, 92), random(Shape{5, 4}, 93)};
  // Stale statistics from other weights, and eval mode: both must not matter, and the mode must come back.
  net.train();
  net(random(Shape{6, 4}, 94));
  net.eval();
  REQUIRE(nn::batch_norm_layers(net) == std::vector<nn::BatchNorm*>{bn.get()});
  CHECK(nn::update_bn(net, batches.size(), [&](std::size_t i) { return batches[i]; }) == 1);
  // Oracle: the per-batch mean and unbiased variance of each of the linear layer's outputs, averaged.
  std::vector<double> mean(3, 0.0), var(3, 0.0);
  for (const Tensor& x : batches) {
    std::vector<double> h = linear->forward(x).to_vector();
    for (std::size_t c = 0; c < 3; ++c) {
      double m = 0, ss = 0;
      for (std::size_t n = 0; n < 5; ++n) m += h[n * 3 + c] / 5;
      for (std::size_t n = 0; n < 5; ++n) ss += (h[n * 3 + c] - m) * (h[n * 3 + c] - m);
      mean[c] += m / 3;
      var[c] += ss / 4 / 3;
    }
  }
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(bn->running_mean().at(c) == doctest::Approx(mean[c]).epsilon(1e-13));
    CHECK(bn->running_var().at(c) == doctest::Approx(var[c]).epsilon(1e-13));
  }
  CHECK(bn->num_batches_tracked().item() == 3);
  CHECK_FALSE(net.is_training());
  CHECK(bn->momentum() == 0.1);
  // A failing batch leaves the momentum and the mode as they were.
  net.train();
  CHECK_THROWS_AS(nn::update_bn(net, 2, [](std::size_t) -> Tensor { throw std::runtime_error("no data"); }),
                  std::runtime_error);
  CHECK(net.is_training());
  CHECK(bn->momentum() == 0.1);
  // Without batch norm nothing runs.
  nn::Sequential plain{std::make_shared<nn::ReLU>()};
  CHECK(nn::update_bn(plain, 1, [](std::size_t) -> Tensor { throw std::logic_error("must not be called"); }) == 0);
  CHECK_THROWS_WITH_AS(bn->set_momentum(1.5), doctest::Contains("momentum 1.5 is outside [0, 1]"),
                       std::invalid_argument);
}
