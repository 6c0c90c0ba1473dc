// LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998) on MNIST, in its common modern form:
//   conv 5x5x6 (padding 2: 28x28 as the paper's 32x32 without the border), ReLU, pool 2 -> 14x14
//   conv 5x5x16, ReLU, pool 2 -> 5x5, FC 120, ReLU, FC 84, ReLU, FC 10.
// The paper's subsampling layers average (with a trainable scale and bias) and its units are scaled tanh;
// this version averages (ag::avg_pool2d, no scale) and uses ReLU.
//
//   mnist_lenet5 --epochs 3                       Adam 1e-3, batch 200: 97.4 % test accuracy (98.0 % with max pooling)
//
// Layers are called as (*layer)(x): their forward, with their names in --detect-anomaly's reports.
// The model is plain C++ below: copy this file to start your own.
#include <CLI/CLI.hpp>

#include "autograd/ops.hpp"
#include "examples/common/cli.hpp"
#include "nn/nn.hpp"

namespace {

class LeNet5 : public nn::Module {
 public:
  LeNet5(nn::Init init, ag::Generator& gen)
      : c1(register_module("c1", std::make_shared<nn::Conv2d>(1, 6, 5, 1, 2, init, true, &gen))),
        c3(register_module("c3", std::make_shared<nn::Conv2d>(6, 16, 5, 1, 0, init, true, &gen))),
        f5(register_module("f5", std::make_shared<nn::Linear>(16 * 5 * 5, 120, init, true, &gen))),
        f6(register_module("f6", std::make_shared<nn::Linear>(120, 84, init, true, &gen))),
        output(register_module("output", std::make_shared<nn::Linear>(84, 10, init, true, &gen))) {}

  /// x: [N, 1, 28, 28] -> logits [N, 10].
  ag::Tensor forward(const ag::Tensor& x) override {
    ag::Tensor h = ag::avg_pool2d(ag::relu((*c1)(x)), 2);  // S2: [N, 6, 14, 14]
    h = ag::avg_pool2d(ag::relu((*c3)(h)), 2);             // S4: [N, 16, 5, 5]
    h = ag::relu((*f6)(ag::relu((*f5)(ag::flatten(h)))));
    return (*output)(h);
  }
  std::string type_name() const override { return "LeNet5"; }

  std::shared_ptr<nn::Conv2d> c1, c3;
  std::shared_ptr<nn::Linear> f5, f6, output;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"LeNet-5 on MNIST (average pooling, ReLU)", "mnist_lenet5"};
  examples::RunFlags flags(app);
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;

  return examples::checked(app.get_name(), [&] {
    examples::RunConfig config = flags.config();
    config.images = true;  // [N, 1, 28, 28] batches
    examples::Datasets data = examples::load_datasets(config);
    nn::manual_seed(config.seed);  // every random stream: the weights here, dropout masks
    ag::Generator& gen = nn::default_generator();
    LeNet5 model(nn::parse_init(config.init), gen);
    return examples::run_program(model, config, data);
  });
}
