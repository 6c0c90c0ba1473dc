// nn: registration by name, parameter counts, modes, every module gradchecked in float64, the MLP of
// 000 §3.4 against a hand-written backprop, initialisers, NaN weights, and checkpoints (their sizes, the
// file types they refuse, atomic writes and the temporaries of killed writers).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <tuple>

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "config/spec.hpp"
#include "data/file.hpp"
#include "nn/nn.hpp"

using namespace ag;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("tapegrad_test_nn_" + name)).string();
}

/// Checks d module(x) / dx with gradcheck and d/d(every parameter) with central differences, in float64.
void check_module(nn::Module& module, const Tensor& x) {
  std::vector<nn::NamedTensor> params = module.named_parameters();
  REQUIRE_FALSE(params.empty());  // modules without parameters: gradcheck alone (the activations below)
  // The input, through gradcheck.
  GradcheckReport report = gradcheck([&](const std::vector<Tensor>& in) { return module.forward(in[0]); }, {x});
  INFO(report.summary());
  CHECK(report.passed);
  // Parameter gradients: central differences on the module's own float64 parameters.
  Generator gen(7);
  Tensor xs = x.to(DType::f64);
  Tensor out0 = module.forward(xs);
  Tensor r = Tensor::uniform(out0.shape(), gen, 0.5, 1.5, DType::f64);
  release_tape();
  module.zero_grad();
  backward(sum(mul(module.forward(xs), r)));
  for (auto& param : params) {
    const std::string& name = param.first;
    Tensor& p = param.second;
    Tensor analytic = p.grad();
    REQUIRE(analytic.defined());
    double* data = p.data<double>();
    double worst = 0.0, largest = 0.0;
    for (std::size_t i = 0; i < p.numel(); ++i) {
      double original = data[i];
      double h = 1e-6;
      NoGradGuard no_grad;
      data[i] = original + h;
      double plus = sum(mul(module.forward(xs), r)).item();
      data[i] = original - h;
      double minus = sum(mul(module.forward(xs), r)).item();
      data[i] = original;
      double numeric = (plus - minus) / (2 * h);
      worst = std::max(worst, std::abs(numeric - analytic.at(i)));
      largest = std::max(largest, std::abs(numeric));
    }
    INFO(module.type_name() << " " << name);
    CHECK(largest > 0.0);
    CHECK(worst < 1e-6 * std::max(1.0, largest));
  }
}

}  // namespace

TEST_CASE("parameters are registered by name, recursively and in order") {
  auto net = nn::make_mlp(784, {128, 64}, 10);
  std::vector<std::string> names;
  for (auto& [name, p] : net->named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"});
  CHECK(net->parameter_count() == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
  for (auto& p : net->parameters()) CHECK(p.requires_grad());
  std::string text = net->describe();
  CHECK(text.find("(0): Linear(in=784, out=128)") != std::string::npos);
  CHECK(text.find("109,386 parameters") != std::string::npos);
}

TEST_CASE("the MLP of 002 has 276,200 weights and 276,710 parameters with biases") {
  auto net = nn::make_mlp(784, {300, 100, 100}, 10);
  std::size_t weights = 0;
  for (auto& [name, p] : nn::weights_only(net->named_parameters())) weights += p.numel();
  CHECK(weights == 276200);
  CHECK(net->parameter_count() == 276710);
}

TEST_CASE("named custom modules nest their names") {
  struct Net : nn::Module {
    Net() {
      fc1 = register_module("fc1", std::make_shared<nn::Linear>(4, 3));
      head = register_module("head", std::make_shared<nn::Sequential>(
                                         std::initializer_list<std::shared_ptr<nn::Module>>{
                                             std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(3, 2)}));
    }
    Tensor forward(const Tensor& x) override { return head->forward(fc1->forward(x)); }
    std::string type_name() const override { return "Net"; }
    std::shared_ptr<nn::Linear> fc1;
    std::shared_ptr<nn::Sequential> head;
  } net;
  std::vector<std::string> names;
  for (auto& [name, p] : net.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "head.1.weight", "head.1.bias"});
}

TEST_CASE("zero_grad, train and eval") {
  auto net = nn::make_mlp(3, {4}, 2);
  Tensor x = Tensor::ones(Shape{2, 3});
  backward(sum(net->forward(x)));
  for (auto& p : net->parameters()) CHECK(p.grad().defined());
  net->zero_grad();
  for (auto& p : net->parameters()) CHECK_FALSE(p.grad().defined());
  net->eval();
  CHECK_FALSE(net->is_training());
  for (auto& [name, child] : net->children()) CHECK_FALSE(child->is_training());
  net->train();
  CHECK(net->is_training());
}

TEST_CASE("every module passes the float64 gradient check") {
  Generator gen(3);
  SUBCASE("Linear") {
    nn::Linear layer(5, 4, nn::Init::default_uniform, true, &gen, DType::f64);
    check_module(layer, Tensor::randn(Shape{3, 5}, gen, 0, 1, DType::f64));
  }
  SUBCASE("Conv2d, several channels, stride and padding") {
    nn::Conv2d layer(2, 3, 3, 2, 1, nn::Init::default_uniform, true, &gen, DType::f64);
    check_module(layer, Tensor::randn(Shape{2, 2, 6, 5}, gen, 0, 1, DType::f64));
  }
  SUBCASE("Sequential CNN: conv, relu, pool, flatten, linear") {
    nn::Sequential net{std::make_shared<nn::Conv2d>(1, 2, 3, 1, 1, nn::Init::default_uniform, true, &gen, DType::f64),
                       std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
                       std::make_shared<nn::Flatten>(),
                       std::make_shared<nn::Linear>(2 * 3 * 3, 4, nn::Init::default_uniform, true, &gen, DType::f64)};
    check_module(net, Tensor::randn(Shape{2, 1, 6, 6}, gen, 0, 1, DType::f64));
  }
  SUBCASE("activations") {
    Tensor x = Tensor::randn(Shape{3, 4}, gen, 0, 1, DType::f64);
    for (std::size_t i = 0; i < x.numel(); ++i) {
      if (std::abs(x.at(i)) < 0.05) x.data<double>()[i] = 0.3;  // off the ReLU kink
    }
    for (auto module : std::vector<std::shared_ptr<nn::Module>>{
             std::make_shared<nn::ReLU>(), std::make_shared<nn::Sigmoid>(), std::make_shared<nn::Tanh>(),
             std::make_shared<nn::Softmax>(), std::make_shared<nn::LogSoftmax>(), std::make_shared<nn::Flatten>(),
             std::make_shared<nn::LeakyReLU>(0.2), std::make_shared<nn::ELU>(0.5), std::make_shared<nn::GELU>(),
             std::make_shared<nn::GELU>(true), std::make_shared<nn::SiLU>(), std::make_shared<nn::Softplus>(2.0, 1.0)}) {
      GradcheckReport report = gradcheck([&](const std::vector<Tensor>& in) { return module->forward(in[0]); }, {x});
      INFO(module->type_name() << "\n" << report.summary());
      CHECK(report.passed);
    }
  }
  SUBCASE("the new activation modules call their ops with their options") {
    Tensor x = Tensor::randn(Shape{3, 4}, gen, 0, 1, DType::f64);
    CHECK(nn::LeakyReLU(0.2).forward(x).to_vector() == ag::leaky_relu(x, 0.2).to_vector());
    CHECK(nn::ELU(0.5).forward(x).to_vector() == ag::elu(x, 0.5).to_vector());
    CHECK(nn::GELU(true).forward(x).to_vector() == ag::gelu(x, true).to_vector());
    CHECK(nn::Softplus(2.0, 1.0).forward(x).to_vector() == ag::softplus(x, 2.0, 1.0).to_vector());
    CHECK(nn::LeakyReLU(0.2).type_name() == "LeakyReLU(negative_slope=0.2)");
    CHECK(nn::GELU(true).type_name() == "GELU(approximate=tanh)");
    CHECK_THROWS_WITH_AS(nn::Softplus(0.0), doctest::Contains("Softplus"), std::invalid_argument);
  }
  SUBCASE("Dropout with its mask held fixed by reseeding") {
    Tensor x = Tensor::randn(Shape{4, 5}, gen, 0, 1, DType::f64);
    GradcheckReport report = gradcheck(
        [&](const std::vector<Tensor>& in) {
          nn::Dropout dropout(0.3, 11);
          return dropout.forward(in[0]);
        },
        {x});
    INFO(report.summary());
    CHECK(report.passed);
  }
}

TEST_CASE("dropout drops in training only, keeps the expectation, and is seeded") {
  Tensor x = Tensor::ones(Shape{100, 100});
  nn::Dropout a(0.25, 5), b(0.25, 5);
  Tensor ya = a.forward(x), yb = b.forward(x);
  CHECK(ya.to_vector() == yb.to_vector());
  std::size_t zeros = 0;
  double total = 0;
  for (double v : ya.to_vector()) {
    zeros += v == 0.0;
    total += v;
  }
  CHECK(zeros > 2200);
  CHECK(zeros < 2800);
  CHECK(total / 10000 == doctest::Approx(1.0).epsilon(0.05));
  a.eval();
  CHECK(a.forward(x).to_vector() == x.to_vector());
  CHECK_THROWS_AS(nn::Dropout(1.0), std::invalid_argument);
}

TEST_CASE("the 784-128-64-10 MLP of 000 §3.4 against a hand-written backprop") {
  nn::manual_seed(1);
  auto net = nn::make_mlp(784, {128, 64}, 10);
  Generator gen(2);
  const std::size_t batch = 16;
  Tensor x = Tensor::uniform(Shape{batch, 784}, gen, 0, 1);
  std::vector<std::int32_t> labels(batch);
  for (std::size_t i = 0; i < batch; ++i) labels[i] = static_cast<std::int32_t>(gen.below(10));
  backward(cross_entropy(net->forward(x), labels));

  // By hand, in double: forward z1 = x W1 + b1, a1 = relu(z1), ..., p = softmax(z3);
  // delta3 = (p - t) / B; delta_l = (delta_{l+1} W_{l+1}^T) * relu'(z_l); dW_l = a_{l-1}^T delta_l; db_l = sum delta_l.
  auto params = net->named_parameters();
  std::vector<std::vector<double>> W, b;
  std::vector<std::size_t> widths{784, 128, 64, 10};
  for (std::size_t l = 0; l < 3; ++l) {
    W.push_back(params[2 * l].second.to_vector());
    b.push_back(params[2 * l + 1].second.to_vector());
  }
  std::vector<std::vector<double>> a{x.to_vector()}, z;
  for (std::size_t l = 0; l < 3; ++l) {
    std::size_t in = widths[l], out = widths[l + 1];
    std::vector<double> zl(batch * out), al(batch * out);
    for (std::size_t n = 0; n < batch; ++n) {
      for (std::size_t j = 0; j < out; ++j) {
        double s = b[l][j];
        for (std::size_t i = 0; i < in; ++i) s += a[l][n * in + i] * W[l][i * out + j];
        zl[n * out + j] = s;
        al[n * out + j] = l < 2 ? std::max(s, 0.0) : s;
      }
    }
    z.push_back(zl);
    a.push_back(al);
  }
  std::vector<double> delta(batch * 10);
  for (std::size_t n = 0; n < batch; ++n) {
    double peak = *std::max_element(z[2].begin() + n * 10, z[2].begin() + n * 10 + 10), norm = 0;
    for (std::size_t k = 0; k < 10; ++k) norm += std::exp(z[2][n * 10 + k] - peak);
    for (std::size_t k = 0; k < 10; ++k) {
      double p = std::exp(z[2][n * 10 + k] - peak) / norm;
      delta[n * 10 + k] = (p - (static_cast<std::int32_t>(k) == labels[n] ? 1.0 : 0.0)) / batch;
    }
  }
  for (int l = 2; l >= 0; --l) {
    std::size_t in = widths[l], out = widths[l + 1];
    Tensor dW = params[2 * l].second.grad(), db = params[2 * l + 1].second.grad();
    for (std::size_t i = 0; i < in; i += 7) {
      for (std::size_t j = 0; j < out; ++j) {
        double g = 0;
        for (std::size_t n = 0; n < batch; ++n) g += a[l][n * in + i] * delta[n * out + j];
        CHECK(dW.at(i * out + j) == doctest::Approx(g).epsilon(1e-4).scale(1e-3));
      }
    }
    for (std::size_t j = 0; j < out; ++j) {
      double g = 0;
      for (std::size_t n = 0; n < batch; ++n) g += delta[n * out + j];
      CHECK(db.at(j) == doctest::Approx(g).epsilon(1e-4).scale(1e-3));
    }
    if (l == 0) break;
    std::vector<double> previous(batch * in);
    for (std::size_t n = 0; n < batch; ++n) {
      for (std::size_t i = 0; i < in; ++i) {
        double s = 0;
        for (std::size_t j = 0; j < out; ++j) s += delta[n * out + j] * W[l][i * out + j];
        previous[n * in + i] = z[l - 1][n * in + i] > 0 ? s : 0.0;
      }
    }
    delta = previous;
  }
}

TEST_CASE("initialisers are deterministic and have the documented spread") {
  Generator a(9), b(9);
  Tensor x = Tensor::empty(Shape{200, 300}), y = Tensor::empty(Shape{200, 300});
  nn::kaiming_normal_(x, a, 200);
  nn::kaiming_normal_(y, b, 200);
  CHECK(x.to_vector() == y.to_vector());
  auto spread = [](const Tensor& t) {
    double s = 0, s2 = 0;
    for (double v : t.to_vector()) {
      s += v;
      s2 += v * v;
    }
    double n = static_cast<double>(t.numel());
    return std::make_pair(s / n, std::sqrt(s2 / n - (s / n) * (s / n)));
  };
  CHECK(spread(x).second == doctest::Approx(std::sqrt(2.0 / 200)).epsilon(0.02));
  nn::normal_(x, a, 0.0, 0.01);
  CHECK(spread(x).second == doctest::Approx(0.01).epsilon(0.02));
  nn::xavier_uniform_(x, a, 200, 300);
  double limit = std::sqrt(6.0 / 500);
  for (double v : x.to_vector()) CHECK_UNARY(std::abs(v) <= limit);
  CHECK(spread(x).second == doctest::Approx(limit / std::sqrt(3.0)).epsilon(0.02));
  CHECK_THROWS_AS(nn::parse_init("bogus"), std::invalid_argument);
}

TEST_CASE("checkpoints round-trip bit-exactly and refuse bad files") {
  nn::manual_seed(4);
  auto net = nn::make_mlp(6, {5}, 3);
  std::string path = temp_path("roundtrip.ckpt");
  nn::save_module(path, *net);
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    CHECK(entry.path().string().rfind(path + ".tmp", 0) == std::string::npos);  // no temporary left behind
  }
  nn::manual_seed(5);
  auto other = nn::make_mlp(6, {5}, 3);
  nn::load_module(path, *other);
  auto p = net->named_parameters(), q = other->named_parameters();
  for (std::size_t i = 0; i < p.size(); ++i) {
    CHECK(std::memcmp(p[i].second.data<float>(), q[i].second.data<float>(), p[i].second.numel() * 4) == 0);
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [](const std::string& file, const std::string& content) {
    std::ofstream out(file, std::ios::binary);
    out << content;
  };

  SUBCASE("truncated") {
    write(path, bytes.substr(0, bytes.size() / 2));
    CHECK_THROWS_WITH_AS(nn::load_module(path, *other), doctest::Contains("checksum"), std::runtime_error);
  }
  SUBCASE("corrupted byte") {
    std::string bad = bytes;
    bad[bad.size() / 2] ^= 0x10;
    write(path, bad);
    CHECK_THROWS_WITH_AS(nn::load_module(path, *other), doctest::Contains("checksum mismatch"), std::runtime_error);
  }
  SUBCASE("not a checkpoint") {
    write(path, "hello world, this is not a checkpoint at all");
    CHECK_THROWS_WITH_AS(nn::load_module(path, *other), doctest::Contains("bad magic"), std::runtime_error);
  }
  SUBCASE("a model of other widths") {
    auto wider = nn::make_mlp(6, {7}, 3);
    CHECK_THROWS_WITH_AS(nn::load_module(path, *wider), doctest::Contains("0.weight: f32[6, 5] in the file, f32[6, 7]"),
                         std::runtime_error);
  }
  SUBCASE("a model with other names") {
    auto deeper = nn::make_mlp(6, {5, 5}, 3);
    CHECK_THROWS_WITH_AS(nn::load_module(path, *deeper), doctest::Contains("4.weight: missing from the file"),
                         std::runtime_error);
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_WITH_AS(nn::load_module(temp_path("nope.ckpt"), *other), doctest::Contains("cannot open"),
                         std::runtime_error);
  }
  SUBCASE("an unwritable place leaves nothing behind") {
    CHECK_THROWS_AS(nn::save_module("/nonexistent-dir/x.ckpt", *net), std::runtime_error);
  }
  std::remove(path.c_str());
}

TEST_CASE("layers say what is wrong with their input") {
  nn::Linear layer(4, 2);
  CHECK_THROWS_WITH_AS(layer.forward(Tensor::ones(Shape{3, 5})), doctest::Contains("Linear(4 -> 2)"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(layer.forward(Tensor::ones(Shape{4})), doctest::Contains("expected a 2-D input"), std::invalid_argument);
  nn::Conv2d conv(1, 2, 3);
  CHECK_THROWS_WITH_AS(conv.forward(Tensor::ones(Shape{2, 28, 28})), doctest::Contains("Conv2d"), std::invalid_argument);
}

TEST_CASE("the L2 penalty and the weight norm") {
  auto net = nn::make_mlp(3, {2}, 2);
  auto weights = nn::weights_only(net->named_parameters());
  CHECK(weights.size() == 2);
  double expected = 0;
  for (auto& [name, w] : weights) {
    for (double v : w.to_vector()) expected += v * v;
  }
  CHECK(nn::weight_norm(weights) == doctest::Approx(std::sqrt(expected)));
  Tensor penalty = nn::l2_penalty(weights, 0.5);
  CHECK(penalty.item() == doctest::Approx(0.5 * expected));
  backward(penalty);
  for (auto& [name, w] : weights) {
    for (std::size_t i = 0; i < w.numel(); ++i) CHECK(w.grad().at(i) == doctest::Approx(w.at(i)));  // 2 * 0.5 * w
  }
}

// ================================================================ the mismatch report, duplicate names

TEST_CASE("mismatches: one line per repeated, missing, mismatched or unexpected entry") {
  std::vector<nn::NamedTensor> source{{"fc1.weight", Tensor::zeros(Shape{128, 784})},
                                      {"fc1.bias", Tensor::zeros(Shape{64})},
                                      {"fc1.bias", Tensor::zeros(Shape{64})},
                                      {"fc3.bias", Tensor::zeros(Shape{10})}};
  std::vector<nn::EntrySpec> expected{{"fc1.weight", Shape{64, 784}, DType::f32},
                                      {"fc1.bias", Shape{64}, DType::f64},
                                      {"fc2.weight", Shape{64, 10}, DType::f32}};
  CHECK(nn::mismatches(source, expected) ==
        std::vector<std::string>{"fc1.bias: appears 2 times in the file",
                                 "fc1.weight: f32[128, 784] in the file, f32[64, 784] in the model",
                                 "fc1.bias: f32[64] in the file, f64[64] in the model",
                                 "fc2.weight: missing from the file", "fc3.bias: in the file, not in the model"});
  // Own words, a spec's own target, and an explanation of the unexpected.
  expected[0].target = "for the parameter";
  nn::ReportTerms terms{.source = "the state", .target = "expected",
                        .unexpected = [](const std::string& name) { return "nobody asked for " + name; }};
  std::vector<std::string> lines = nn::mismatches(source, expected, terms);
  CHECK(lines[1] == "fc1.weight: f32[128, 784] in the state, f32[64, 784] for the parameter");
  CHECK(lines[2] == "fc1.bias: f32[64] in the state, f64[64] expected");
  CHECK(lines.back() == "fc3.bias: nobody asked for fc3.bias");
  // All fit, in any order.
  std::vector<nn::NamedTensor> good{{"b", Tensor::zeros(Shape{2})}, {"a", Tensor::zeros(Shape{}, DType::f64)}};
  CHECK(nn::mismatches(good, {{"a", Shape{}, DType::f64}, {"b", Shape{2}}}).empty());
  CHECK_THROWS_AS(nn::mismatches(good, {{"a", Shape{}}, {"a", Shape{}}}), std::invalid_argument);
  CHECK_NOTHROW(nn::throw_if_problems("fine", {}));
  CHECK_THROWS_WITH_AS(nn::throw_if_problems("heading", {"x: one", "y: two"}), "heading (2 problems):\n  x: one\n  y: two",
                       std::runtime_error);
}

TEST_CASE("checkpoints refuse a name given twice, naming it, and change nothing") {
  nn::manual_seed(6);
  auto net = nn::make_mlp(3, {2}, 2);
  std::vector<nn::NamedTensor> params = net->named_parameters();
  std::vector<double> before = params[0].second.to_vector();

  SUBCASE("in memory: assign_tensors") {
    std::vector<nn::NamedTensor> source;
    for (const auto& [name, t] : params) source.emplace_back(name, Tensor::ones(t.shape()));
    source.emplace_back(params[0].first, Tensor::ones(params[0].second.shape()));
    CHECK_THROWS_WITH_AS(nn::assign_tensors(source, params, "model"),
                         doctest::Contains("0.weight: appears 2 times in the file"), std::runtime_error);
    CHECK(params[0].second.to_vector() == before);
  }
  SUBCASE("writing: save_tensors") {
    std::vector<nn::NamedTensor> twice{params[0], params[0]};
    CHECK_THROWS_WITH_AS(nn::save_tensors(temp_path("twice.ckpt"), twice), doctest::Contains("'0.weight' is given twice"),
                         std::invalid_argument);
    CHECK_FALSE(std::filesystem::exists(temp_path("twice.ckpt")));
  }
  SUBCASE("reading: a crafted file with two entries of one name") {
    std::string path = temp_path("crafted.ckpt");
    nn::save_tensors(path, {{"ab", Tensor::zeros(Shape{2})}, {"aa", Tensor::zeros(Shape{2})}});
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    std::size_t at = bytes.find("ab");
    REQUIRE(at != std::string::npos);
    bytes[at + 1] = 'a';  // "ab" -> "aa", then a valid checksum (FNV-1a 64 of everything before it)
    std::uint64_t hash = 14695981039346656037ull;
    for (std::size_t i = 0; i + 8 < bytes.size(); ++i) {
      hash ^= static_cast<unsigned char>(bytes[i]);
      hash *= 1099511628211ull;
    }
    std::memcpy(bytes.data() + bytes.size() - 8, &hash, 8);
    std::ofstream(path, std::ios::binary) << bytes;
    CHECK_THROWS_WITH_AS(nn::load_tensors(path), doctest::Contains("'aa' is stored twice"), std::runtime_error);
    std::remove(path.c_str());
  }
}

// ================================================================ random streams

TEST_CASE("Dropout: each layer has its own stream, decided by manual_seed and the construction order") {
  const Tensor x = Tensor::ones(Shape{20, 50});
  // A model with two Dropout layers around an identity-like middle; each layer's mask on its own.
  auto masks_of = [&](std::uint64_t seed) {
    nn::manual_seed(seed);
    nn::Sequential model{std::make_shared<nn::Dropout>(0.5), std::make_shared<nn::Linear>(50, 50),
                         std::make_shared<nn::Dropout>(0.5)};
    std::vector<std::vector<double>> masks;
    for (const char* name : {"0", "2"}) {
      for (const auto& [child_name, child] : model.children()) {
        if (child_name == name) masks.push_back(child->forward(x).to_vector());
      }
    }
    masks.push_back(model.forward(x).to_vector());  // the next masks of both
    return masks;
  };
  std::vector<std::vector<double>> first = masks_of(42);
  REQUIRE(first.size() == 3);
  CHECK(first[0] != first[1]);               // two layers, two masks
  CHECK(masks_of(42) == first);              // the same seed: the same masks, run after run
  CHECK(masks_of(43)[0] != first[0]);        // another seed: other masks
  // The same from a given generator; an explicit seed ignores both.
  ag::Generator g1(9), g2(9);
  nn::Dropout from_g1(0.5, g1), from_g2(0.5, g2), after(0.5, g1);
  CHECK(from_g1.forward(x).to_vector() == from_g2.forward(x).to_vector());
  CHECK(after.forward(x).to_vector() != from_g2.forward(x).to_vector());
  nn::manual_seed(1);
  nn::Dropout seeded_a(0.5, std::uint64_t{77});
  nn::manual_seed(2);
  nn::Dropout seeded_b(0.5, std::uint64_t{77});
  CHECK(seeded_a.forward(x).to_vector() == seeded_b.forward(x).to_vector());
  // A refused rate takes nothing from the global stream.
  nn::manual_seed(5);
  CHECK_THROWS_AS(nn::Dropout(1.5), std::invalid_argument);
  nn::Dropout after_refusal(0.5);
  nn::manual_seed(5);
  nn::Dropout fresh(0.5);
  CHECK(after_refusal.forward(x).to_vector() == fresh.forward(x).to_vector());
}

// ================================================================ NaN weights are not hidden

TEST_CASE("models whose weights are all NaN give a NaN loss and NaN gradients (the ReLUs do not hide them)") {
  // A checkpoint of NaN weights used to resume and train with a finite loss: the ReLUs turned the NaN
  // activations into 0, so the divergence check never fired and the NaN weights were never updated again.
  for (const char* spec : {"mlp(hidden=[16,8])", "cnn(channels=2,fc=8)"}) {
    INFO(spec);
    nn::manual_seed(3);
    nn::ModelContext context{.channels = 1, .height = 8, .width = 8, .classes = 3};
    std::shared_ptr<nn::Module> model = nn::make_model(config::parse_spec(spec), context);
    for (auto& [name, p] : model->named_parameters()) p.fill_(std::numeric_limits<double>::quiet_NaN());
    bool images = nn::models().at(config::parse_spec(spec).name).images;
    Shape shape = images ? Shape{4, 1, 8, 8} : Shape{4, 64};
    Tensor x = Tensor::ones(shape);
    std::vector<std::int32_t> labels{0, 1, 2, 0};
    Tensor loss = cross_entropy(model->forward(x), labels);
    CHECK(std::isnan(loss.item()));
    backward(loss);
    for (auto& param : model->named_parameters()) {
      const std::string& name = param.first;
      Tensor& p = param.second;
      INFO(name);
      REQUIRE(p.grad().defined());
      CHECK(std::isnan(p.grad().at(0)));
    }
  }
}

TEST_CASE("the registered mlp takes its activation by name; ReLU by default, as before") {
  nn::ModelContext context{.channels = 1, .height = 2, .width = 2, .classes = 3};
  auto layer_types = [&](const char* spec) {
    nn::manual_seed(4);
    std::string types;
    std::shared_ptr<nn::Module> model = nn::make_model(config::parse_spec(spec), context);
    for (const auto& [name, child] : model->children()) {
      types += child->type_name().substr(0, child->type_name().find('(')) + " ";
    }
    return types;
  };
  CHECK(layer_types("mlp(hidden=[5,4])") == "Linear ReLU Linear ReLU Linear ");
  CHECK(layer_types("mlp(hidden=[5,4],activation=tanh)") == "Linear Tanh Linear Tanh Linear ");
  CHECK(nn::resolve_model(config::parse_spec("mlp")).text() == "mlp(hidden=[128,64],activation=relu)");
  // The same seed, the same weights: the activation changes no initialisation.
  nn::manual_seed(4);
  auto relu = nn::make_model(config::parse_spec("mlp(hidden=[5])"), context);
  nn::manual_seed(4);
  auto tanh = nn::make_model(config::parse_spec("mlp(hidden=[5],activation=tanh)"), context);
  CHECK(relu->parameters()[0].to_vector() == tanh->parameters()[0].to_vector());
  Tensor x = Tensor::from_data(Shape{1, 4}, {0.5, -1.0, 2.0, -0.25});
  CHECK(tanh->forward(x).to_vector() != relu->forward(x).to_vector());
  CHECK_THROWS_WITH_AS(nn::make_model(config::parse_spec("mlp(activation=sigmoid)"), context),
                       doctest::Contains("relu | tanh"), config::SpecError);
}

TEST_CASE("classifier losses by name: mse is 1/2 ||z - onehot||^2 per sample, its gradient z - onehot") {
  Tensor z = Tensor::from_data(Shape{2, 3}, {0.5, -1.0, 2.0, 0.0, 0.25, -0.5}, DType::f64).set_requires_grad();
  std::vector<std::int32_t> labels{2, 0};
  // z - onehot: sample 0 (0.5, -1, 1) -> 2.25 / 2 = 1.125; sample 1 (-1, 0.25, -0.5) -> 1.3125 / 2 = 0.65625.
  Tensor mean = nn::classifier_loss(nn::ClassifierLoss::mse, z, labels);
  CHECK(mean.item() == doctest::Approx((1.125 + 0.65625) / 2).epsilon(1e-15));
  CHECK(nn::classifier_loss(nn::ClassifierLoss::mse, z, labels, ag::Reduction::sum).item() ==
        doctest::Approx(1.125 + 0.65625).epsilon(1e-15));
  backward(mean);
  CHECK(z.grad().to_vector() == std::vector<double>{0.25, -0.5, 0.5, -0.5, 0.125, -0.25});  // (z - onehot) / B
  GradcheckReport report = gradgradcheck(
      [&](const std::vector<Tensor>& in) { return nn::classifier_loss(nn::ClassifierLoss::mse, in[0], labels); }, {z.detach()});
  CHECK(report.passed);
  CHECK(nn::classifier_loss(nn::ClassifierLoss::cross_entropy, z, labels).item() == cross_entropy(z, labels).item());
  CHECK(nn::parse_classifier_loss("mse") == nn::ClassifierLoss::mse);
  CHECK(nn::classifier_loss_name(nn::ClassifierLoss::cross_entropy) == "cross-entropy");
  CHECK_THROWS_WITH_AS(nn::parse_classifier_loss("hinge"), "unknown loss 'hinge': the losses are cross-entropy, mse",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::classifier_loss(nn::ClassifierLoss::mse, z, std::vector<std::int32_t>{1}),
                       "classifier_loss: mse takes logits (B, K) for B = 1 labels, not f64[2, 3]", std::invalid_argument);
}

// ================================================================ checkpoints: sizes, file types, writes

namespace {

/// A fresh directory, removed with what it holds at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tapegrad-test-nn-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(path_)) out.push_back(entry.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::filesystem::path path_;
};

/// A checkpoint's bytes with the checksum recomputed (FNV-1a 64 of everything before it).
std::string with_checksum(std::string bytes) {
  std::uint64_t hash = 14695981039346656037ull;
  for (std::size_t i = 0; i + 8 < bytes.size(); ++i) {
    hash ^= static_cast<unsigned char>(bytes[i]);
    hash *= 1099511628211ull;
  }
  std::memcpy(bytes.data() + bytes.size() - 8, &hash, 8);
  return bytes;
}

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::exception& e) {
    return e.what();
  }
  FAIL_CHECK("expected an exception, none was thrown");
  return {};
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("load_tensors: extents whose product overflows, or larger than the file, are refused before allocating") {
  // One entry "w" of f32[2, 3]: magic 8, version 4, count 4, name length 4, name 1, dtype 1, rank 1,
  // then the two extents at bytes 23 and 31.
  const std::string good = nn::serialize_tensors({{"w", Tensor::zeros(Shape{2, 3})}}, "memory");
  REQUIRE(nn::parse_tensors(good, "memory").size() == 1);
  auto with_extents = [&](std::uint64_t rows, std::uint64_t cols) {
    std::string bytes = good;
    std::memcpy(bytes.data() + 23, &rows, 8);
    std::memcpy(bytes.data() + 31, &cols, 8);
    return with_checksum(bytes);
  };
  REQUIRE(nn::parse_tensors(with_extents(3, 2), "memory")[0].second.shape() == Shape({3, 2}));
  // Found by libFuzzer: 2 x 9223372036854775811 wraps to 6 elements, the 24 bytes the file holds.
  std::string wrapped = message_of([&] { nn::parse_tensors(with_extents(2, 9223372036854775811ull), "crafted"); });
  CHECK_MESSAGE(has(wrapped, "checkpoint crafted: 'w': shape [2, 9223372036854775811] has more bytes than 64 bits "
                             "count"),
                wrapped);
  // 2^62 elements of 4 bytes: the element count fits, the byte count does not.
  CHECK(has(message_of([&] { nn::parse_tensors(with_extents(1, std::uint64_t{1} << 62), "crafted"); }),
            "more bytes than 64 bits count"));
  // Larger than the rest of the file: refused before a tensor of 8 GB is allocated.
  std::string large = message_of([&] { nn::parse_tensors(with_extents(2, 1000000000), "crafted"); });
  CHECK_MESSAGE(has(large, "'w': shape [2, 1000000000] needs 8000000000 bytes, but only 24 remain"), large);
}

TEST_CASE("load_tensors: every refusal of the header and the entries names what is wrong") {
  // One entry "w" of f32[2, 3]: magic 0-7, version 8-11, count 12-15, name length 16-19, name 20, dtype 21,
  // rank 22, extents 23-38, data 39-62, checksum 63-70.
  const std::string good = nn::serialize_tensors({{"w", Tensor::zeros(Shape{2, 3})}}, "memory");
  REQUIRE(good.size() == 71);
  auto patched = [&](std::size_t at, auto value) {
    std::string bytes = good;
    std::memcpy(bytes.data() + at, &value, sizeof(value));
    return with_checksum(bytes);
  };
  const std::vector<std::pair<std::string, std::string>> cases{
      {patched(8, std::uint32_t{7}), "version 7 is not supported"},
      {patched(12, std::uint32_t{(1u << 20) + 1}), "implausible entry count 1048577"},
      {patched(16, std::uint32_t{5000}), "entry 0: implausible name length 5000"},
      {patched(21, std::uint8_t{2}), "'w': unknown dtype code 2"},
      {patched(22, std::uint8_t{9}), "'w': rank 9 exceeds"},
      {with_checksum(good.substr(0, 63) + std::string(4, '\0') + good.substr(63)), "trailing bytes after the last entry"}};
  for (const auto& [bytes, expected] : cases) {
    CAPTURE(expected);
    const std::string message = message_of([&] { nn::parse_tensors(bytes, "crafted"); });
    CHECK_MESSAGE(has(message, "checkpoint crafted: " + expected), message);
  }
}

TEST_CASE("save_tensors: a checkpoint the reader would refuse is not written; a wrong file is refused by its magic") {
  ScratchDir dir;
  const std::string long_name(5000, 'a');
  CHECK(has(message_of([&] { nn::save_tensors(dir.file("long"), {{long_name, Tensor::ones(Shape{1})}}); }),
            "is 5000 bytes, more than 4096"));
  CHECK_FALSE(std::filesystem::exists(dir.file("long")));
  // A large file that is not a checkpoint: refused by its first 8 bytes, not read whole (a sparse 1 TB file).
  const std::string sparse = dir.file("sparse");
  std::ofstream(sparse) << "NOTACKPT";
  std::filesystem::resize_file(sparse, std::uintmax_t{1} << 40);
  CHECK(has(message_of([&] { nn::load_tensors(sparse); }), "checkpoint " + sparse + ": not a checkpoint (bad magic)"));
}

TEST_CASE("load_tensors refuses what is not a regular file before reading it, and names I/O errors") {
  ScratchDir dir;
  CHECK(has(message_of([&] { nn::load_tensors(dir.file("")); }), "is a directory, not a regular file"));
  CHECK(has(message_of([] { nn::load_tensors("/dev/zero"); }),
            "checkpoint /dev/zero: is a character device, not a regular file: refusing to read it"));
  // A FIFO with no writer: opening it for reading would block for ever.
  const std::string fifo = dir.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(has(message_of([&] { nn::load_tensors(fifo); }), "is a FIFO, not a regular file"));
  CHECK(has(message_of([&] { nn::load_tensors(dir.file("missing")); }),
            "cannot open: No such file or directory"));
  // A symbolic link to a checkpoint is followed.
  nn::save_tensors(dir.file("real"), {{"w", Tensor::ones(Shape{2})}});
  std::filesystem::create_symlink(dir.file("real"), dir.file("link"));
  CHECK(nn::load_tensors(dir.file("link"))[0].second.to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("save_tensors refuses to replace what is not a regular file, saying what it is") {
  ScratchDir dir;
  const std::vector<nn::NamedTensor> entries{{"w", Tensor::ones(Shape{2})}};
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0600) == 0);
  std::filesystem::create_directory(dir.file("directory"));
  nn::save_tensors(dir.file("target"), entries);
  std::filesystem::create_symlink(dir.file("target"), dir.file("link"));
  struct Refusal {
    std::string path, what;
  };
  for (const Refusal& r : {Refusal{dir.file("fifo"), "is a FIFO"}, Refusal{dir.file("directory"), "is a directory"},
                           Refusal{dir.file("link"), "is a symbolic link"},
                           Refusal{"/dev/null", "is a character device"}}) {
    INFO(r.path);
    std::string message = message_of([&] { nn::save_tensors(r.path, entries); });
    CHECK_MESSAGE(has(message, "checkpoint " + r.path + ": " + r.what + ", not a regular file: refusing to replace it"),
                  message);
  }
  CHECK(std::filesystem::is_symlink(dir.file("link")));  // untouched
  CHECK(std::filesystem::is_fifo(dir.file("fifo")));
  CHECK(dir.names() == std::vector<std::string>{"directory", "fifo", "link", "target"});  // no temporary left
  // An unwritable place: the operation and strerror.
  std::string message = message_of([&] { nn::save_tensors(dir.file("no/such/dir.ckpt"), entries); });
  CHECK_MESSAGE(has(message, "cannot create the temporary"), message);
  CHECK_MESSAGE(has(message, "No such file or directory"), message);
}

TEST_CASE("save_tensors removes the temporaries killed writers left, and no live writer's") {
  ScratchDir dir;
  const std::string target = dir.file("run.ckpt");
  for (const char* name : {"run.ckpt.tmp.abc123", "run.ckpt.tmp.ZZZZZZ", "run.ckpt.tmp.live01",
                           "run.ckpt.tmp.toolong1", "other.ckpt.tmp.abc123", "run.ckpt.tmp.ab-123"}) {
    std::ofstream(dir.file(name)) << "half a checkpoint";
  }
  // A live writer holds its temporary locked.
  int live = ::open(dir.file("run.ckpt.tmp.live01").c_str(), O_RDONLY);
  REQUIRE(live >= 0);
  REQUIRE(::flock(live, LOCK_EX) == 0);
  nn::save_tensors(target, {{"w", Tensor::ones(Shape{3})}});
  ::close(live);
  CHECK(dir.names() == std::vector<std::string>{"other.ckpt.tmp.abc123", "run.ckpt", "run.ckpt.tmp.ab-123",
                                                "run.ckpt.tmp.live01", "run.ckpt.tmp.toolong1"});
  CHECK(nn::load_tensors(target)[0].second.to_vector() == std::vector<double>{1, 1, 1});
  // Once its writer is gone, the next save removes it too.
  nn::save_tensors(target, {{"w", Tensor::ones(Shape{3})}});
  CHECK(dir.names() == std::vector<std::string>{"other.ckpt.tmp.abc123", "run.ckpt", "run.ckpt.tmp.ab-123",
                                                "run.ckpt.tmp.toolong1"});
}

TEST_CASE("data::check_writable: a save target is checked before any work, and nothing is left behind") {
  ScratchDir dir;
  CHECK_NOTHROW(data::check_writable(dir.file("new.ckpt"), "checkpoint"));
  CHECK(dir.names().empty());
  CHECK(has(message_of([&] { data::check_writable(dir.file("missing/x"), "log"); }),
            "log " + dir.file("missing/x") + ": cannot create the temporary"));
  CHECK(has(message_of([] { data::check_writable("/dev/null", "log"); }), "is a character device"));
  CHECK(data::file_type("/dev/null") == "a character device");
  CHECK(data::file_type(dir.file("nothing")) == "nothing");
}

TEST_CASE("Sequential runs ReLU then MaxPool2d as pool then relu: the same values and gradients, bit for bit") {
  // Ties, zeros of both signs, negatives-only windows and NaN, in float64.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> values = {1.0,  1.0,  -2.0, -0.5, 0.0,  -0.0, 3.0, nan,  //
                                -1.0, -3.0, 0.0,  -1.0, -0.0, 0.0,  nan, 2.0,  //
                                0.5,  0.25, 4.0,  4.0,  -2.0, 7.0,  0.0, -1.0, //
                                0.25, 0.5,  4.0,  -4.0, -3.0, -1.0, 2.0, 2.0};
  ag::Tensor x = ag::Tensor::from_data(ag::Shape{1, 2, 4, 4}, std::span<const double>(values));
  x.set_requires_grad();
  std::vector<double> weights(8);
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = 0.5 + double(i);
  ag::Tensor w = ag::Tensor::from_data(ag::Shape{1, 2, 2, 2}, std::span<const double>(weights));

  nn::Sequential fused;
  fused.add(std::make_shared<nn::ReLU>());
  fused.add(std::make_shared<nn::MaxPool2d>(2));
  // The output, the gradient of sum(w * y^2) and that of its squared gradient (second order); each backward
  // releases the tape, so each side is run from the start.
  auto run = [&](const std::function<ag::Tensor()>& forward) {
    ag::Tensor out = forward();
    ag::Tensor g = ag::grad({ag::sum(ag::mul(w, ag::mul(out, out)))}, {x}, {}, {.create_graph = true})[0];
    ag::Tensor gg = ag::grad({ag::sum(ag::mul(g, g))}, {x})[0];
    return std::tuple{out.detach(), g.detach(), gg};
  };
  auto [y, g, gg] = run([&] { return fused(x); });
  auto [want, g_want, gg_want] = run([&] { return ag::max_pool2d(ag::relu(x), 2); });
  auto same = [](const ag::Tensor& a, const ag::Tensor& b) {
    REQUIRE(a.numel() == b.numel());
    for (std::size_t i = 0; i < a.numel(); ++i) {
      INFO("element " << i << ": " << a.at(i) << " vs " << b.at(i));
      CHECK(std::memcmp(&a.data<double>()[i], &b.data<double>()[i], sizeof(double)) == 0);
    }
  };
  same(y, want);
  same(g, g_want);
  same(gg, gg_want);
  CHECK(std::isnan(y.at(1)));  // the window holding a NaN
}

TEST_CASE("Sequential runs Conv2d [ReLU] MaxPool2d(2) as one op: the same values and gradients, bit for bit") {
  // Float32 at the MNIST network's shapes (first order, first layer without an input gradient) and float64
  // through a second-order gradient; against the layers' ops called one by one.
  for (ag::DType dtype : {ag::DType::f32, ag::DType::f64}) {
    CAPTURE(dtype);
    ag::Generator gen(61);
    auto conv1 = std::make_shared<nn::Conv2d>(1, 8, 3, 1, 1, nn::Init::default_uniform, true, &gen, dtype);
    auto conv2 = std::make_shared<nn::Conv2d>(8, 4, 3, 1, 0, nn::Init::default_uniform, false, &gen, dtype);
    nn::Sequential net{conv1, std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2), conv2,
                       std::make_shared<nn::MaxPool2d>(2)};
    const bool second = dtype == ag::DType::f64;
    ag::Tensor x = ag::Tensor::uniform(ag::Shape{3, 1, 28, 28}, gen, -1.0, 1.0, dtype);
    auto run = [&](const std::function<ag::Tensor()>& forward) {
      net.zero_grad();
      ag::Tensor out = forward();
      ag::Tensor loss = ag::sum(ag::mul(out, out));
      std::vector<ag::Tensor> params = net.parameters();
      std::vector<ag::Tensor> grads = ag::grad({loss}, params, {}, {.create_graph = second});
      std::vector<ag::Tensor> result{out.detach()};
      for (const ag::Tensor& g : grads) result.push_back(g.detach());
      if (second) {
        ag::Tensor norm = ag::sum(ag::mul(grads[0], grads[0]));
        for (const ag::Tensor& g : ag::grad({norm}, params)) result.push_back(g);
      }
      return result;
    };
    std::vector<ag::Tensor> fused = run([&] { return net(x); });
    std::vector<ag::Tensor> reference = run([&] {
      ag::Tensor h = ag::max_pool2d(ag::relu(ag::conv2d(x, conv1->weight(), conv1->bias(), 1, 1)), 2);
      return ag::max_pool2d(ag::conv2d(h, conv2->weight(), ag::Tensor(), 1, 0), 2);
    });
    REQUIRE(fused.size() == reference.size());
    for (std::size_t k = 0; k < fused.size(); ++k) {
      CAPTURE(k);
      REQUIRE(fused[k].shape() == reference[k].shape());
      std::vector<double> a = fused[k].to_vector(), b = reference[k].to_vector();
      bool same = a.size() == b.size();
      for (std::size_t i = 0; same && i < a.size(); ++i) same = a[i] == b[i] && std::signbit(a[i]) == std::signbit(b[i]);
      CHECK(same);
    }
  }
}
