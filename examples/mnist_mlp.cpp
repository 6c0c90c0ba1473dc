// A multi-layer perceptron on MNIST: 784-128-64-10 (000), --hidden 300,100,100 (002), 512,512 (001).
//
//   mnist_mlp                                                     Adam 1e-3, batch 200, 10 epochs
//   mnist_mlp --optimizer 'momentum(lr=0.05,momentum=0.95)' --epochs 1
//   mnist_mlp --hidden 300,100,100 --optimizer 'sgd(lr=0.1)' --batch-size 10 --schedule 'linear(final=0.001)'
//
// The model is plain C++ below: copy this file to start your own.
#include <CLI/CLI.hpp>

#include "autograd/ops.hpp"
#include "config/options.hpp"
#include "examples/common/cli.hpp"
#include "nn/nn.hpp"

namespace {

/// Linear layers of the given widths with ReLU between them; logits out (the loss applies the softmax).
class MLP : public nn::Module {
 public:
  MLP(std::size_t in, const std::vector<std::size_t>& hidden, std::size_t classes, nn::Init init, ag::Generator& gen) {
    std::size_t width = in;
    for (std::size_t i = 0; i <= hidden.size(); ++i) {
      std::size_t out = i < hidden.size() ? hidden[i] : classes;
      auto layer = std::make_shared<nn::Linear>(width, out, init, true, &gen);
      layers_.push_back(register_module("fc" + std::to_string(i + 1), layer));
      width = out;
    }
  }

  ag::Tensor forward(const ag::Tensor& x) override {
    ag::Tensor h = (*layers_.front())(x);  // (*layer)(x): its forward, named in --detect-anomaly reports
    for (std::size_t i = 1; i < layers_.size(); ++i) h = (*layers_[i])(ag::relu(h));
    return h;
  }
  std::string type_name() const override { return "MLP"; }

 private:
  std::vector<std::shared_ptr<nn::Linear>> layers_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A multi-layer perceptron on MNIST: --hidden 128,64 (000), 300,100,100 (002), 512,512 (001)",
               "mnist_mlp"};
  examples::RunFlags flags(app);
  std::string hidden = "128,64";
  app.add_option("--hidden", hidden, "hidden layer widths, comma-separated")->capture_default_str();
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;

  return examples::checked(app.get_name(), [&] {
    examples::RunConfig config = flags.config();
    std::vector<std::size_t> widths = config::parse_counts("--hidden", "widths", hidden);
    examples::Datasets data = examples::load_datasets(config);
    nn::manual_seed(config.seed);  // every random stream: the weights here, dropout masks
    ag::Generator& gen = nn::default_generator();
    MLP model(data.train.features(), widths, data::kMnistClasses, nn::parse_init(config.init), gen);
    return examples::run_program(model, config, data);
  });
}
