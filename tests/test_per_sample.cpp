// analysis/per_sample.hpp: per-sample gradients against B separate sweeps (each sample's loss backwarded
// alone) for an MLP and a small CNN with stride, padding, a bias-free convolution and max pooling (float64,
// both reductions); their sum against the batch gradient; norms and variance against direct computation,
// and the norms-only sweep against them; the noise scale on synthetic gradients of known mean and
// covariance, and the two-batch estimator algebraically; errors that name what is wrong.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "analysis/per_sample.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "nn/layers.hpp"
#include "nn/norm.hpp"

using ag::DType;
using ag::Tensor;
using Vec = std::vector<double>;

namespace {

double max_abs_difference(const Vec& a, const Vec& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

/// Linear-tanh-Linear-ReLU-Linear, the first two layers in a nested Sequential.
std::shared_ptr<nn::Sequential> make_mlp(ag::Generator& gen, DType dtype = DType::f64) {
  auto inner = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(5, 7, nn::Init::default_uniform, true, &gen, dtype),
      std::make_shared<nn::Tanh>()});
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      inner, std::make_shared<nn::Linear>(7, 6, nn::Init::default_uniform, true, &gen, dtype),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(6, 3, nn::Init::default_uniform, true, &gen, dtype)});
}

/// (2, 9, 9) -> Conv2d(k 3, stride 2, padding 1) -> ReLU -> Conv2d(k 2, padding 1, no bias) -> MaxPool2d(2)
/// -> Flatten -> Linear(36, 3).
std::shared_ptr<nn::Sequential> make_cnn(ag::Generator& gen) {
  const auto init = nn::Init::default_uniform;
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(2, 3, 3, 2, 1, init, true, &gen, DType::f64), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2d>(3, 4, 2, 1, 1, init, false, &gen, DType::f64), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(36, 3, init, true, &gen, DType::f64)});
}

/// Sample n of x (B, ...) as a batch of one.
Tensor row(const Tensor& x, std::size_t n) {
  ag::Shape shape = x.shape();
  const std::size_t width = x.numel() / shape[0];
  shape[0] = 1;
  Vec all = x.to_vector();
  return Tensor::from_data(shape, std::span<const double>(all.data() + n * width, width)).to(x.dtype());
}

/// grad l_n for every parameter, by backwarding sample n's loss alone.
std::vector<Vec> sample_gradient(nn::Sequential& model, const Tensor& x, const std::vector<std::int32_t>& labels,
                                 std::size_t n) {
  model.zero_grad();
  ag::backward(ag::cross_entropy(model(row(x, n)), ag::Labels(&labels[n], 1), ag::Reduction::sum));
  std::vector<Vec> out;
  for (const Tensor& p : model.parameters()) out.push_back(p.grad().to_vector());
  return out;
}

std::vector<Vec> batch_gradient(nn::Sequential& model, const Tensor& x, const std::vector<std::int32_t>& labels,
                                ag::Reduction reduction) {
  model.zero_grad();
  ag::backward(ag::cross_entropy(model(x), labels, reduction));
  std::vector<Vec> out;
  for (const Tensor& p : model.parameters()) out.push_back(p.grad().to_vector());
  return out;
}

Vec scaled(Vec v, double s) {
  for (double& x : v) x *= s;
  return v;
}

/// Per-sample gradients against B sweeps of one sample each, and their sum against the batch gradient.
void check_against_sweeps(nn::Sequential& model, const Tensor& x, const std::vector<std::int32_t>& labels) {
  const std::size_t batch = labels.size();
  for (ag::Reduction reduction : {ag::Reduction::sum, ag::Reduction::mean}) {
    CAPTURE(reduction == ag::Reduction::sum ? "sum" : "mean");
    analysis::PerSampleGradients g = analysis::per_sample_gradients(model, x, labels, reduction);
    REQUIRE(g.grads.size() == model.named_parameters().size());
    CHECK(g.batch == batch);
    CHECK(g.scale == (reduction == ag::Reduction::sum ? 1.0 : 1.0 / double(batch)));
    CHECK(ag::tape_size() == 0);
    for (std::size_t k = 0; k < g.names.size(); ++k) CHECK(g.names[k] == model.named_parameters()[k].first);
    for (std::size_t n = 0; n < batch; ++n) {
      std::vector<Vec> expected = sample_gradient(model, x, labels, n);
      for (std::size_t k = 0; k < g.grads.size(); ++k) {
        CAPTURE(g.names[k]);
        CHECK(max_abs_difference(g.sample(k, n).to_vector(), scaled(expected[k], g.scale)) < 1e-12);
      }
    }
    std::vector<Vec> whole = batch_gradient(model, x, labels, reduction);
    std::vector<Tensor> total = g.total();
    REQUIRE(total.size() == model.parameters().size());
    REQUIRE(whole.size() == total.size());
    for (std::size_t k = 0; k < total.size(); ++k) {
      CHECK(total[k].shape() == g.params[k].shape());
      CHECK(max_abs_difference(total[k].to_vector(), whole[k]) < 1e-12);
    }
    CHECK(g.loss == doctest::Approx(ag::cross_entropy(model(x), labels, reduction).item()).epsilon(1e-14));
    ag::release_tape();
  }
}

std::vector<std::int32_t> random_labels(std::size_t batch, std::size_t classes, ag::Generator& gen) {
  std::vector<std::int32_t> labels(batch);
  for (auto& y : labels) y = static_cast<std::int32_t>(gen.below(classes));
  return labels;
}

/// Synthetic per-example gradients u_n = G + L z_n (z_n standard normal) for two parameters of shapes (2)
/// and (3), stored as g_n = s u_n.
analysis::PerSampleGradients synthetic(const Vec& mean, const Vec& lower, std::size_t batch, double scale,
                                       ag::Generator& gen) {
  const std::size_t d = mean.size();
  std::vector<Vec> rows(2);
  for (std::size_t n = 0; n < batch; ++n) {
    Vec z(d), u(mean);
    for (double& v : z) v = gen.normal();
    for (std::size_t i = 0; i < d; ++i) {
      for (std::size_t j = 0; j <= i; ++j) u[i] += lower[i * d + j] * z[j];
    }
    for (std::size_t i = 0; i < d; ++i) rows[i < 2 ? 0 : 1].push_back(scale * u[i]);
  }
  analysis::PerSampleGradients g;
  g.names = {"a", "b"};
  g.params = {Tensor::zeros(ag::Shape{2}, DType::f64), Tensor::zeros(ag::Shape{3}, DType::f64)};
  g.grads = {Tensor::from_data(ag::Shape{batch, 2}, std::span<const double>(rows[0])),
             Tensor::from_data(ag::Shape{batch, 3}, std::span<const double>(rows[1]))};
  g.batch = batch;
  g.scale = scale;
  return g;
}

}  // namespace

TEST_CASE("per-sample gradients of an MLP equal B separate sweeps") {
  ag::Generator gen(11);
  auto model = make_mlp(gen);
  const std::size_t batch = 6;
  Tensor x = Tensor::randn(ag::Shape{batch, 5}, gen, 0.0, 1.0, DType::f64);
  check_against_sweeps(*model, x, random_labels(batch, 3, gen));
}

TEST_CASE("per-sample gradients of a CNN with stride, padding and pooling equal B separate sweeps") {
  ag::Generator gen(12);
  auto model = make_cnn(gen);
  const std::size_t batch = 5;
  Tensor x = Tensor::randn(ag::Shape{batch, 2, 9, 9}, gen, 0.0, 1.0, DType::f64);
  analysis::PerSampleGradients g = analysis::per_sample_gradients(*model, x, random_labels(batch, 3, gen));
  CHECK(g.grads[0].shape() == ag::Shape{batch, 3 * 2 * 3 * 3});
  CHECK(g.names[2] == "2.weight");  // the bias-free convolution
  CHECK(g.names[3] == "5.weight");
  check_against_sweeps(*model, x, random_labels(batch, 3, gen));
}

TEST_CASE("per-sample gradients in float32 sum to the batch gradient") {
  ag::Generator gen(13);
  auto model = make_mlp(gen, DType::f32);
  Tensor x = Tensor::randn(ag::Shape{8, 5}, gen, 0.0, 1.0, DType::f32);
  std::vector<std::int32_t> labels = random_labels(8, 3, gen);
  analysis::PerSampleGradients g = analysis::per_sample_gradients(*model, x, labels);
  CHECK(g.grads[0].dtype() == DType::f32);
  std::vector<Vec> whole = batch_gradient(*model, x, labels, ag::Reduction::mean);
  std::vector<Tensor> total = g.total();
  REQUIRE(total.size() == model->parameters().size());
  REQUIRE(whole.size() == total.size());
  for (std::size_t k = 0; k < total.size(); ++k) CHECK(max_abs_difference(total[k].to_vector(), whole[k]) < 1e-6);
}

TEST_CASE("per-sample norms and the gradient variance against direct computation") {
  ag::Generator gen(14);
  auto model = make_cnn(gen);
  const std::size_t batch = 7;
  Tensor x = Tensor::randn(ag::Shape{batch, 2, 9, 9}, gen, 0.0, 1.0, DType::f64);
  analysis::PerSampleGradients g = analysis::per_sample_gradients(*model, x, random_labels(batch, 3, gen));
  // u_n = g_n / s, flat over all parameters.
  std::vector<Vec> u(batch);
  for (std::size_t n = 0; n < batch; ++n) {
    for (std::size_t k = 0; k < g.grads.size(); ++k) {
      Vec part = scaled(g.sample(k, n).to_vector(), 1.0 / g.scale);
      u[n].insert(u[n].end(), part.begin(), part.end());
    }
  }
  const std::size_t d = u[0].size();
  Vec norms = analysis::per_sample_norms(g);
  for (std::size_t n = 0; n < batch; ++n) {
    double sq = 0;
    for (double v : u[n]) sq += v * v * g.scale * g.scale;
    CHECK(norms[n] == doctest::Approx(std::sqrt(sq)).epsilon(1e-13));
  }
  Vec mean(d, 0.0), variance(d, 0.0);
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t n = 0; n < batch; ++n) mean[i] += u[n][i] / double(batch);
    for (std::size_t n = 0; n < batch; ++n) variance[i] += (u[n][i] - mean[i]) * (u[n][i] - mean[i]) / double(batch - 1);
  }
  analysis::GradientVariance var = analysis::gradient_variance(g);
  Vec flat;
  double trace = 0, mean_sq = 0;
  for (const Tensor& t : var.variance) {
    Vec part = t.to_vector();
    flat.insert(flat.end(), part.begin(), part.end());
  }
  for (std::size_t i = 0; i < d; ++i) {
    trace += variance[i];
    mean_sq += mean[i] * mean[i];
  }
  CHECK(max_abs_difference(flat, variance) < 1e-12);
  CHECK(var.variance[0].shape() == g.params[0].shape());
  CHECK(var.trace == doctest::Approx(trace).epsilon(1e-12));
  analysis::NoiseScale ns = analysis::noise_scale(g);
  CHECK(ns.trace == doctest::Approx(trace).epsilon(1e-12));
  CHECK(ns.gradient_sq == doctest::Approx(mean_sq - trace / double(batch)).epsilon(1e-10));
  CHECK(ns.simple == doctest::Approx(ns.trace / ns.gradient_sq).epsilon(1e-14));
}

TEST_CASE("per-sample squared norms without the per-sample gradients agree with them") {
  ag::Generator gen(18);
  for (bool conv : {false, true}) {
    CAPTURE(conv);
    auto model = conv ? make_cnn(gen) : make_mlp(gen);
    const std::size_t batch = 6;
    Tensor x = conv ? Tensor::randn(ag::Shape{batch, 2, 9, 9}, gen, 0.0, 1.0, DType::f64)
                    : Tensor::randn(ag::Shape{batch, 5}, gen, 0.0, 1.0, DType::f64);
    std::vector<std::int32_t> labels = random_labels(batch, 3, gen);
    for (ag::Reduction reduction : {ag::Reduction::sum, ag::Reduction::mean}) {
      analysis::PerSampleGradients g = analysis::per_sample_gradients(*model, x, labels, reduction);
      analysis::PerSampleSqNorms s = analysis::per_sample_sq_norms(*model, x, labels, reduction);
      CHECK(ag::tape_size() == 0);
      CHECK(s.names == g.names);
      CHECK(s.scale == g.scale);
      CHECK(s.loss == g.loss);
      Vec norms = analysis::per_sample_norms(g);
      for (std::size_t n = 0; n < batch; ++n) CHECK(s.sq_norms[n] == doctest::Approx(norms[n] * norms[n]).epsilon(1e-12));
      std::vector<Tensor> total = g.total();
      REQUIRE(total.size() == model->parameters().size());
      REQUIRE(s.gradient.size() == total.size());
      for (std::size_t k = 0; k < total.size(); ++k) {
        CHECK(s.gradient[k].shape() == g.params[k].shape());
        CHECK(max_abs_difference(s.gradient[k].to_vector(), total[k].to_vector()) < 1e-12);
      }
      analysis::NoiseScale a = analysis::noise_scale(g), b = analysis::noise_scale(s);
      CHECK(b.trace == doctest::Approx(a.trace).epsilon(1e-10));
      CHECK(b.gradient_sq == doctest::Approx(a.gradient_sq).epsilon(1e-10));
    }
  }
}

namespace {
/// A user's own module class around a network: not an nn::Sequential, so only the sample-by-sample form takes it.
class Wrapped : public nn::Module {
 public:
  explicit Wrapped(std::shared_ptr<nn::Sequential> inner) : inner_(register_module("net", std::move(inner))) {}
  Tensor forward(const Tensor& x) override { return (*inner_)(x); }
  std::string type_name() const override { return "Wrapped"; }

 private:
  std::shared_ptr<nn::Sequential> inner_;
};
}  // namespace

TEST_CASE("per-sample squared norms sample by sample, for any module, agree with the one-sweep rules") {
  ag::Generator gen(19);
  for (bool conv : {false, true}) {
    CAPTURE(conv);
    auto model = conv ? make_cnn(gen) : make_mlp(gen);
    const std::size_t batch = 5;
    Tensor x = conv ? Tensor::randn(ag::Shape{batch, 2, 9, 9}, gen, 0.0, 1.0, DType::f64)
                    : Tensor::randn(ag::Shape{batch, 5}, gen, 0.0, 1.0, DType::f64);
    std::vector<std::int32_t> labels = random_labels(batch, 3, gen);
    Wrapped wrapped(model);
    for (ag::Reduction reduction : {ag::Reduction::sum, ag::Reduction::mean}) {
      const analysis::PerSampleSqNorms one = analysis::per_sample_sq_norms(*model, x, labels, reduction);
      const analysis::PerSampleSqNorms direct = analysis::per_sample_sq_norms_by_sample(*model, x, labels, reduction);
      const analysis::PerSampleSqNorms user = analysis::per_sample_sq_norms_by_sample(wrapped, x, labels, reduction);
      CHECK(ag::tape_size() == 0);
      REQUIRE(one.gradient.size() == model->parameters().size());
      CHECK(direct.names == one.names);
      CHECK(user.names.front() == "net." + one.names.front());
      for (const analysis::PerSampleSqNorms* s : {&direct, &user}) {
        CHECK(s->scale == one.scale);
        CHECK(s->loss == doctest::Approx(one.loss).epsilon(1e-12));
        for (std::size_t n = 0; n < batch; ++n) CHECK(s->sq_norms[n] == doctest::Approx(one.sq_norms[n]).epsilon(1e-12));
        REQUIRE(s->gradient.size() == one.gradient.size());
        for (std::size_t k = 0; k < one.gradient.size(); ++k) {
          CHECK(max_abs_difference(s->gradient[k].to_vector(), one.gradient[k].to_vector()) < 1e-12);
        }
        CHECK(analysis::noise_scale(*s).simple == doctest::Approx(analysis::noise_scale(one).simple).epsilon(1e-10));
      }
    }
    // The parameters' .grad is left as it was.
    for (const Tensor& p : model->parameters()) CHECK_FALSE(p.grad().defined());
  }
  Wrapped wrapped(make_mlp(gen));
  Tensor x = Tensor::randn(ag::Shape{3, 5}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> two{0, 1};
  CHECK_THROWS_WITH_AS(analysis::per_sample_sq_norms_by_sample(wrapped, x, two),
                       "per_sample_sq_norms_by_sample: 2 labels for a batch of 3", std::invalid_argument);
}

namespace {
/// A Linear whose forward doubles its output: the sweep, which runs ag::linear itself, would miss it.
class DoubledLinear : public nn::Linear {
 public:
  using nn::Linear::Linear;
  Tensor forward(const Tensor& x) override {
    const Tensor y = nn::Linear::forward(x);
    return ag::add(y, y);
  }
};

/// A Sequential with a skip around its children: forward is not the children in turn.
class Residual : public nn::Sequential {
 public:
  using nn::Sequential::Sequential;
  Tensor forward(const Tensor& x) override { return ag::add(x, nn::Sequential::forward(x)); }
};
}  // namespace

TEST_CASE("per-sample gradients: a subclass is refused (its forward may differ), a frozen layer is left out") {
  ag::Generator gen(23);
  Tensor x = Tensor::randn(ag::Shape{4, 5}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> labels = random_labels(4, 3, gen);
  const auto init = nn::Init::default_uniform;
  nn::Sequential doubled{std::make_shared<DoubledLinear>(5, 3, init, true, &gen, DType::f64)};
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(doubled, x, labels),
                       doctest::Contains("module '0' (Linear(in=5, out=3)) is not supported"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::per_sample_sq_norms(doubled, x, labels), doctest::Contains("a subclass may change forward"),
                       std::invalid_argument);
  Residual residual{std::make_shared<nn::Linear>(5, 5, init, true, &gen, DType::f64)};
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(residual, x, labels), doctest::Contains("a subclass of Sequential"),
                       std::invalid_argument);
  CHECK(ag::tape_size() == 0);
  // Either is measured by the sample-by-sample route, which runs the model's own forward.
  CHECK(analysis::per_sample_sq_norms_by_sample(doubled, x, labels).names == std::vector<std::string>{"0.weight", "0.bias"});

  // A frozen first layer: run, not measured; the two routes agree on the names, the norms and the noise scale.
  auto model = make_mlp(gen);
  std::vector<Tensor> params = model->parameters();
  params[0].set_requires_grad(false);
  params[1].set_requires_grad(false);
  for (ag::Reduction reduction : {ag::Reduction::sum, ag::Reduction::mean}) {
    const analysis::PerSampleSqNorms one = analysis::per_sample_sq_norms(*model, x, labels, reduction);
    const analysis::PerSampleSqNorms direct = analysis::per_sample_sq_norms_by_sample(*model, x, labels, reduction);
    CHECK(one.names == std::vector<std::string>{"1.weight", "1.bias", "3.weight", "3.bias"});
    CHECK(direct.names == one.names);
    REQUIRE(one.gradient.size() == 4);
    for (std::size_t n = 0; n < 4; ++n) CHECK(direct.sq_norms[n] == doctest::Approx(one.sq_norms[n]).epsilon(1e-12));
    CHECK(analysis::noise_scale(direct).simple == doctest::Approx(analysis::noise_scale(one).simple).epsilon(1e-10));
    CHECK(analysis::per_sample_gradients(*model, x, labels, reduction).grads.size() == 4);
  }
  // Half frozen: the sweep takes a layer whole.
  params[1].set_requires_grad(true);
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(*model, x, labels),
                       doctest::Contains("module '0.0' (Linear(in=5, out=7)) has its weight frozen and its bias not"),
                       std::invalid_argument);
  CHECK(ag::tape_size() == 0);
}

TEST_CASE("per-sample squared norms sample by sample refuse a batch norm in training mode, and leave it alone") {
  ag::Generator gen(29);
  const auto init = nn::Init::default_uniform;
  auto bn = std::make_shared<nn::BatchNorm2d>(2, nn::BatchNormOptions{.dtype = DType::f64});
  nn::Sequential net{std::make_shared<nn::Conv2d>(1, 2, 3, 1, 1, init, true, &gen, DType::f64), bn,
                     std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(2 * 16, 3, init, true, &gen, DType::f64)};
  Tensor x = Tensor::randn(ag::Shape{3, 1, 4, 4}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> labels = random_labels(3, 3, gen);
  const Vec mean = bn->running_mean().to_vector();
  CHECK_THROWS_WITH_AS(analysis::per_sample_sq_norms_by_sample(net, x, labels),
                       doctest::Contains("a batch norm in training mode (BatchNorm2d"), std::invalid_argument);
  CHECK(bn->running_mean().to_vector() == mean);
  net.eval();
  const analysis::PerSampleSqNorms s = analysis::per_sample_sq_norms_by_sample(net, x, labels);
  CHECK(s.sq_norms.size() == 3);
  CHECK(bn->running_mean().to_vector() == mean);  // evaluation mode: the running statistics are read, not updated
}

TEST_CASE("the two-batch estimator recovers |G|^2 and tr(Sigma) from the expected squared norms") {
  // E|G_B|^2 = |G|^2 + tr(Sigma) / B exactly, so the estimator returns both exactly.
  const double g2 = 0.37, trace = 45.0;
  for (auto [small, big] : {std::pair<std::size_t, std::size_t>{1, 2}, {32, 128}, {100, 10000}}) {
    analysis::NoiseScale ns =
        analysis::noise_scale(g2 + trace / double(small), small, g2 + trace / double(big), big);
    CHECK(ns.gradient_sq == doctest::Approx(g2).epsilon(1e-12));
    CHECK(ns.trace == doctest::Approx(trace).epsilon(1e-12));
    CHECK(ns.simple == doctest::Approx(trace / g2).epsilon(1e-12));
  }
}

TEST_CASE("the per-sample noise scale is the two-batch estimator at B_small = 1, B_big = B") {
  ag::Generator gen(15);
  const Vec mean{1.0, -0.5, 0.25, 2.0, 0.0}, lower{1.0, 0, 0, 0, 0,  0.5, 2.0, 0, 0, 0,  -0.3, 0.1, 0.7, 0, 0,
                                                    0.0, 0.4, 0.2, 1.5, 0, 0.2, -0.1, 0.3, 0.6, 0.9};
  analysis::PerSampleGradients g = synthetic(mean, lower, 50, 1.0 / 50, gen);
  // |G_1|^2 averaged over the samples, and |G_B|^2 of the mean.
  Vec norms = analysis::per_sample_norms(g), ubar(5, 0.0);
  double small = 0;
  for (double v : norms) small += v * v / (g.scale * g.scale) / 50.0;
  for (std::size_t k = 0; k < 2; ++k) {
    Vec total = g.total()[k].to_vector();
    for (std::size_t i = 0; i < total.size(); ++i) ubar[k * 2 + i] = total[i] / (g.scale * 50.0);
  }
  double big = 0;
  for (double v : ubar) big += v * v;
  analysis::NoiseScale one = analysis::noise_scale(g), two = analysis::noise_scale(small, 1, big, 50);
  CHECK(one.gradient_sq == doctest::Approx(two.gradient_sq).epsilon(1e-12));
  CHECK(one.trace == doctest::Approx(two.trace).epsilon(1e-12));
}

TEST_CASE("the noise scale of synthetic gradients G + L z with known G and Sigma = L L^T") {
  ag::Generator gen(16);
  const std::size_t d = 5, batch = 20000;
  const Vec mean{1.0, -0.5, 0.25, 2.0, 0.0}, lower{1.0, 0, 0, 0, 0,  0.5, 2.0, 0, 0, 0,  -0.3, 0.1, 0.7, 0, 0,
                                                    0.0, 0.4, 0.2, 1.5, 0, 0.2, -0.1, 0.3, 0.6, 0.9};
  Vec sigma(d * d, 0.0);
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j < d; ++j) {
      for (std::size_t k = 0; k < d; ++k) sigma[i * d + j] += lower[i * d + k] * lower[j * d + k];
    }
  }
  double trace = 0, trace_sq = 0, g2 = 0, g_sigma_g = 0;
  for (std::size_t i = 0; i < d; ++i) {
    trace += sigma[i * d + i];
    g2 += mean[i] * mean[i];
    for (std::size_t j = 0; j < d; ++j) {
      trace_sq += sigma[i * d + j] * sigma[j * d + i];
      g_sigma_g += mean[i] * sigma[i * d + j] * mean[j];
    }
  }
  // Gaussian u_n: Var(tr Sigma_hat) = 2 tr(Sigma^2) / (B - 1); Var(|u_bar|^2 - tr Sigma_hat / B) is
  // 4 G^T Sigma G / B + O(tr(Sigma^2) / B^2). Five standard errors each (two-sided: a false alarm
  // once in ~1.7 million seeds); the ratio's relative error is at most the sum of the two relative ones.
  const double se_trace = std::sqrt(2 * trace_sq / double(batch - 1));
  const double se_g2 = std::sqrt(4 * g_sigma_g / double(batch) + 2 * trace_sq / double(batch) / double(batch));
  for (double scale : {1.0, 1.0 / double(batch)}) {
    analysis::NoiseScale ns = analysis::noise_scale(synthetic(mean, lower, batch, scale, gen));
    CHECK(std::abs(ns.trace - trace) < 5 * se_trace);
    CHECK(std::abs(ns.gradient_sq - g2) < 5 * se_g2);
    CHECK(std::abs(ns.simple - trace / g2) < 5 * (se_trace / trace + se_g2 / g2) * trace / g2);
  }
}

TEST_CASE("per-sample errors name what is wrong") {
  ag::Generator gen(17);
  auto model = make_mlp(gen);
  Tensor x = Tensor::randn(ag::Shape{4, 5}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> labels = random_labels(4, 3, gen);
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(*model, x, ag::Labels(labels.data(), 3)),
                       doctest::Contains("3 labels for the batch of 4"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(*model, x, labels, ag::Reduction::none),
                       doctest::Contains("not none"), std::invalid_argument);

  nn::Sequential softmax{std::make_shared<nn::Linear>(5, 3, nn::Init::default_uniform, true, &gen, DType::f64),
                         std::make_shared<nn::Softmax>(0)};
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(softmax, x, labels),
                       doctest::Contains("module '1' (Softmax(axis=0)) is not supported"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::per_sample_sq_norms(softmax, x, labels),
                       doctest::Contains("per_sample_sq_norms: module '1'"), std::invalid_argument);
  CHECK(ag::tape_size() == 0);
  nn::Sequential nested{std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(5, 3, nn::Init::default_uniform, true, &gen, DType::f64),
      std::make_shared<nn::LogSoftmax>()})};
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(nested, x, labels), doctest::Contains("module '0.1' (LogSoftmax"),
                       std::invalid_argument);
  nn::Sequential image{std::make_shared<nn::Linear>(5, 3, nn::Init::default_uniform, true, &gen, DType::f64)};
  Tensor images = Tensor::randn(ag::Shape{4, 1, 5, 1}, gen, 0.0, 1.0, DType::f64);
  CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(image, images, labels),
                       doctest::Contains("module '0' (Linear(in=5, out=3)) takes (B, features)"), std::invalid_argument);

  analysis::PerSampleGradients g = analysis::per_sample_gradients(*model, row(x, 0), ag::Labels(labels.data(), 1));
  CHECK_THROWS_WITH_AS(analysis::gradient_variance(g), doctest::Contains("needs B >= 2 samples, got 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::noise_scale(g), doctest::Contains("needs B >= 2"), std::invalid_argument);
  analysis::PerSampleSqNorms s = analysis::per_sample_sq_norms(*model, row(x, 0), ag::Labels(labels.data(), 1));
  CHECK_THROWS_WITH_AS(analysis::noise_scale(s), doctest::Contains("needs B >= 2"), std::invalid_argument);
  CHECK_THROWS_AS(g.sample(0, 1), std::out_of_range);
  analysis::PerSampleGradients wrong = analysis::per_sample_gradients(*model, x, labels);
  wrong.grads[1] = Tensor::zeros(ag::Shape{4, 6}, DType::f64);
  CHECK_THROWS_WITH_AS(analysis::noise_scale(wrong),
                       doctest::Contains("the per-sample gradients of '0.0.bias' are f64[4, 6], not f64[4, 7]"),
                       std::invalid_argument);
  // Squared norms that do not fit their batch or parameters are refused; a NaN one gives NaN, as the gradients do.
  analysis::PerSampleSqNorms norms = analysis::per_sample_sq_norms(*model, x, labels);
  analysis::PerSampleSqNorms short_norms = norms;
  short_norms.sq_norms.pop_back();
  CHECK_THROWS_WITH_AS(analysis::noise_scale(short_norms), doctest::Contains("3 squared norms for a batch of 4"),
                       std::invalid_argument);
  analysis::PerSampleSqNorms wrong_gradient = norms;
  wrong_gradient.gradient[0] = Tensor::zeros(ag::Shape{2}, DType::f64);
  CHECK_THROWS_WITH_AS(analysis::noise_scale(wrong_gradient), doctest::Contains("the gradient of parameter 0 is f64[2]"),
                       std::invalid_argument);
  norms.sq_norms[1] = std::nan("");
  CHECK(std::isnan(analysis::noise_scale(norms).simple));
  CHECK_THROWS_WITH_AS(analysis::noise_scale(1.0, 8, 0.5, 8), doctest::Contains("0 < B_small < B_big, got 8 and 8"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::noise_scale(-1.0, 4, 0.5, 8), doctest::Contains("finite and non-negative"),
                       std::invalid_argument);
}

TEST_CASE("per-sample gradients refuse Conv2d layers with groups, dilation or settings that differ per axis") {
  ag::Generator gen(19);
  Tensor images = Tensor::randn(ag::Shape{3, 2, 6, 6}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> labels = random_labels(3, 3, gen);
  nn::Conv2dOptions base{.in_channels = 2, .out_channels = 2, .kernel = {3, 3}, .gen = &gen, .dtype = DType::f64};
  std::vector<nn::Conv2dOptions> refused(5, base);
  refused[0].groups = 2;
  refused[1].dilation = {2, 2};
  refused[2].kernel = {3, 2};
  refused[3].stride = {1, 2};
  refused[4].padding = {1, 0};
  for (const nn::Conv2dOptions& o : refused) {
    nn::Sequential net{std::make_shared<nn::Conv2d>(o), std::make_shared<nn::Flatten>(),
                       std::make_shared<nn::Linear>(2 * 16, 3, nn::Init::default_uniform, true, &gen, DType::f64)};
    CAPTURE(net.children()[0].second->type_name());
    // Shapes aside (the Linear may not fit), the Conv2d is refused first, by name.
    CHECK_THROWS_WITH_AS(analysis::per_sample_gradients(net, images, labels),
                         doctest::Contains("module '0' (Conv2d(in=2, out=2"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(analysis::per_sample_sq_norms(net, images, labels),
                         doctest::Contains("per-sample gradients take Conv2d layers with a square kernel"),
                         std::invalid_argument);
    CHECK(ag::tape_size() == 0);
  }
}
