// Linear + softmax regression on MNIST (000 §5.1.1): one Linear layer 784 -> 10, the cross-entropy loss.
//
//   mnist_logreg --optimizer 'sgd(lr=0.5)'                       92 % in 10 epochs
//   mnist_logreg --optimizer newton --epochs 1                   Newton's method (004 Prop. 3.10)
//   mnist_logreg --weight-decay 1e-3                             with L2
#include <CLI/CLI.hpp>

#include "examples/common/cli.hpp"
#include "nn/nn.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Linear + softmax regression on MNIST (000 §5.1.1); Newton via --optimizer newton", "mnist_logreg"};
  examples::RunFlags flags(app);
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;

  return examples::checked(app.get_name(), [&] {
    examples::RunConfig config = flags.config();
    examples::Datasets data = examples::load_datasets(config);
    nn::manual_seed(config.seed);  // every random stream: the weights here, dropout masks
    ag::Generator& gen = nn::default_generator();
    nn::Linear model(data.train.features(), data::kMnistClasses, nn::parse_init(config.init), true, &gen);
    return examples::run_program(model, config, data);
  });
}
