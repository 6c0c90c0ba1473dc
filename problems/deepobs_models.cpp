// DeepOBS's networks, registered as models (nn/models.hpp) for the test problems of problems/test_problems.hpp.
// Each has its own initialisation (DeepOBS's, deepobs/pytorch/testproblems/testproblems_modules.py), not the
// context's: a truncated normal (draws beyond 2σ redrawn) and constant biases.
#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "nn/models.hpp"

namespace problems {
namespace {

struct NoOptions {};

ag::Generator& generator(const nn::ModelContext& c) { return c.gen ? *c.gen : nn::default_generator(); }

/// N(0, σ²) truncated at 2σ, in place: a draw beyond two standard deviations is drawn again, as TensorFlow's
/// truncated_normal and DeepOBS's _truncated_normal_init (the values' std is then 0.8796 σ).
void truncated_normal_(ag::Tensor& t, ag::Generator& gen, double sigma) {
  std::vector<double> values(t.numel());
  for (double& v : values) {
    double z = gen.normal();
    while (std::abs(z) > 2.0) z = gen.normal();
    v = sigma * z;
  }
  t.copy_(ag::Tensor::from_data(t.shape(), std::span<const double>(values)).to(t.dtype()));
}

/// A Linear layer whose weight is N(0, σ²) truncated at 2σ (or 0 when σ is 0) and whose bias is `bias`.
std::shared_ptr<nn::Linear> dense(std::size_t in, std::size_t out, double sigma, double bias, ag::Generator& gen) {
  auto layer = std::make_shared<nn::Linear>(in, out, nn::Init::default_uniform, true, &gen);
  ag::Tensor w = layer->weight(), b = layer->bias();
  if (sigma > 0) {
    truncated_normal_(w, gen, sigma);
  } else {
    w.fill_(0.0);
  }
  b.fill_(bias);
  return layer;
}

/// TensorFlow's "same" 5 x 5 convolution (padding 2), weight N(0, σ²) truncated at 2σ, bias `bias`.
std::shared_ptr<nn::Conv2d> conv_same5(std::size_t in, std::size_t out, double sigma, double bias,
                                       ag::Generator& gen) {
  auto layer = std::make_shared<nn::Conv2d>(in, out, 5, 1, 2, nn::Init::default_uniform, true, &gen);
  ag::Tensor w = layer->weight(), b = layer->bias();
  truncated_normal_(w, gen, sigma);
  b.fill_(bias);
  return layer;
}

const nn::RegisterModel<NoOptions> logreg{
    "deepobs_logreg", "DeepOBS's logistic regression: 784 -> 10, weights and biases 0", {}, false,
    [](const NoOptions&, const nn::ModelContext& c) -> std::shared_ptr<nn::Module> {
      return dense(c.features(), c.classes, 0.0, 0.0, generator(c));
    }};

const nn::RegisterModel<NoOptions> mlp{
    "deepobs_mlp", "DeepOBS's MLP: 784-1000-500-100-10, ReLU, weights truncated N(0, 0.03²), biases 0", {}, false,
    [](const NoOptions&, const nn::ModelContext& c) -> std::shared_ptr<nn::Module> {
      ag::Generator& gen = generator(c);
      auto net = std::make_shared<nn::Sequential>();
      const std::size_t widths[] = {c.features(), 1000, 500, 100, c.classes};
      for (std::size_t i = 0; i + 1 < std::size(widths); ++i) {
        if (i > 0) net->add(std::make_shared<nn::ReLU>());
        net->add(dense(widths[i], widths[i + 1], 0.03, 0.0, gen));
      }
      return net;
    }};

const nn::RegisterModel<NoOptions> two_conv_two_dense{
    "deepobs_2c2d",
    "DeepOBS's 2c2d: (conv 5x5 same, ReLU, max-pool 2) with 32 then 64 channels, FC 1024, ReLU, FC 10; "
    "weights truncated N(0, 0.05²), biases 0.05",
    {}, true,
    [](const NoOptions&, const nn::ModelContext& c) -> std::shared_ptr<nn::Module> {
      ag::Generator& gen = generator(c);
      const std::size_t flat = 64 * (c.height / 4) * (c.width / 4);
      return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
          conv_same5(c.channels, 32, 0.05, 0.05, gen), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
          conv_same5(32, 64, 0.05, 0.05, gen), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
          std::make_shared<nn::Flatten>(), dense(flat, 1024, 0.05, 0.05, gen), std::make_shared<nn::ReLU>(),
          dense(1024, c.classes, 0.05, 0.05, gen)});
    }};

}  // namespace
}  // namespace problems
