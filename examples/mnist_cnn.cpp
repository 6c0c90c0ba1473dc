// The CNN of 000 §3.5 and §5.2 on MNIST: (conv 3x3x8, ReLU, max-pool 2) x 2, FC 128, ReLU, FC 10.
//
//   mnist_cnn                                                     Adam 1e-3, batch 200, 10 epochs
//   mnist_cnn --lr 2e-3 --batch-size 100 --schedule 'cosine(final=1e-5)' --weight-decay 5e-5 --epochs 30
//
// The model is plain C++ below: copy this file to start your own.
#include <CLI/CLI.hpp>

#include "autograd/ops.hpp"
#include "examples/common/cli.hpp"
#include "nn/nn.hpp"

namespace {

class CNN : public nn::Module {
 public:
  /// 28x28 images: 28 -> 14 -> 7 after the two poolings.
  CNN(nn::Init init, ag::Generator& gen)
      : conv1(register_module("conv1", std::make_shared<nn::Conv2d>(1, 8, 3, 1, 1, init, true, &gen))),
        conv2(register_module("conv2", std::make_shared<nn::Conv2d>(8, 8, 3, 1, 1, init, true, &gen))),
        fc1(register_module("fc1", std::make_shared<nn::Linear>(8 * 7 * 7, 128, init, true, &gen))),
        fc2(register_module("fc2", std::make_shared<nn::Linear>(128, 10, init, true, &gen))) {}

  /// x: [N, 1, 28, 28] -> logits [N, 10].
  /// Pooling before ReLU: relu(max_pool2d(z)) is max_pool2d(relu(z)), values and gradients alike (relu is
  /// non-decreasing), with relu on a quarter of the elements.
  ag::Tensor forward(const ag::Tensor& x) override {
    ag::Tensor h = ag::relu(ag::max_pool2d((*conv1)(x), 2));
    h = ag::relu(ag::max_pool2d((*conv2)(h), 2));
    return (*fc2)(ag::relu((*fc1)(ag::flatten(h))));
  }
  std::string type_name() const override { return "CNN"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::Linear> fc1, fc2;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The CNN of 000: (conv 3x3x8, ReLU, max-pool 2) x 2, FC 128, FC 10", "mnist_cnn"};
  examples::RunFlags flags(app);
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;

  return examples::checked(app.get_name(), [&] {
    examples::RunConfig config = flags.config();
    config.images = true;  // [N, 1, 28, 28] batches
    examples::Datasets data = examples::load_datasets(config);
    nn::manual_seed(config.seed);  // every random stream: the weights here, dropout masks
    ag::Generator& gen = nn::default_generator();
    CNN model(nn::parse_init(config.init), gen);
    return examples::run_program(model, config, data);
  });
}
