#include "nn/models.hpp"

#include "nn/layers.hpp"

namespace nn {

config::Registry<ModelEntry>& models() {
  static config::Registry<ModelEntry> registry("model");
  return registry;
}

std::shared_ptr<Module> make_model(const config::Spec& spec, const ModelContext& context) {
  return models().at(spec.name).make(spec, context);
}

config::Spec resolve_model(const config::Spec& spec) { return {spec.name, models().at(spec.name).resolve(spec)}; }

// ---- the seeds' networks

namespace {

ag::Generator& generator(const ModelContext& c) { return c.gen ? *c.gen : default_generator(); }

struct NoOptions {};
const RegisterModel<NoOptions> logreg{
    "logreg", "linear + softmax regression (000 §5.1.1)", {}, false,
    [](const NoOptions&, const ModelContext& c) -> std::shared_ptr<Module> {
      return std::make_shared<Linear>(c.features(), c.classes, c.init, true, &generator(c));
    }};

struct MLPOptions {
  std::vector<std::size_t> hidden{128, 64};
  MlpActivation activation = MlpActivation::relu;
};
const RegisterModel<MLPOptions> mlp{
    "mlp", "multi-layer perceptron, ReLU or tanh (000: 128,64; 002: 300,100,100; 001's tutorial: 512,512)",
    config::OptionTable<MLPOptions>()
        .counts("hidden", &MLPOptions::hidden, "hidden layer widths")
        .choice("activation", &MLPOptions::activation, {{"relu", MlpActivation::relu}, {"tanh", MlpActivation::tanh}},
                "the activation between layers"),
    false,
    [](const MLPOptions& o, const ModelContext& c) -> std::shared_ptr<Module> {
      return make_mlp(c.features(), o.hidden, c.classes, c.init, &generator(c), o.activation);
    }};

struct CNNOptions {
  std::size_t channels = 8;
  std::size_t fc = 128;
};
const RegisterModel<CNNOptions> cnn{
    "cnn", "(conv 3x3, ReLU, max-pool 2) x 2, FC, ReLU, FC: the CNN of 000 §3.5, §5.2",
    config::OptionTable<CNNOptions>()
        .count("channels", &CNNOptions::channels, 1, 4096, "channels of both convolutions")
        .count("fc", &CNNOptions::fc, 1, 1 << 20, "width of the hidden fully connected layer"),
    true,
    [](const CNNOptions& o, const ModelContext& c) -> std::shared_ptr<Module> {
      ag::Generator& gen = generator(c);
      const std::size_t k = o.channels, flat = k * (c.height / 4) * (c.width / 4);
      return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
          std::make_shared<Conv2d>(c.channels, k, 3, 1, 1, c.init, true, &gen), std::make_shared<ReLU>(),
          std::make_shared<MaxPool2d>(2), std::make_shared<Conv2d>(k, k, 3, 1, 1, c.init, true, &gen),
          std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2), std::make_shared<Flatten>(),
          std::make_shared<Linear>(flat, o.fc, c.init, true, &gen), std::make_shared<ReLU>(),
          std::make_shared<Linear>(o.fc, c.classes, c.init, true, &gen)});
    }};

}  // namespace

}  // namespace nn
