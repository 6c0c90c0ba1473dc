// Models by name, for the lab and the programs: each registers itself with a one-line summary and its
// options, from the library (the seeds' three networks, below) or from a user's program. A model is built
// for a data set's geometry (ModelContext) from a spec such as "mlp(hidden=[300,100,100])".
//
//   logreg                 linear + softmax regression (000 §5.1.1)
//   mlp(hidden=[128,64])   Linear-ReLU-...-Linear (000: 128,64; 002: 300,100,100; 001's tutorial: 512,512)
//   cnn(channels=8,fc=128) (conv 3x3, ReLU, max-pool 2) x 2, FC, ReLU, FC (000 §3.5, §5.2)
//
//   static const nn::RegisterModel<ResMLPOptions> resmlp{"resmlp", "a residual MLP", table, false, build};
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "config/options.hpp"
#include "config/registry.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

namespace nn {

/// The data a model is built for, and how its weights start.
struct ModelContext {
  std::size_t channels = 1, height = 28, width = 28;  // an image's geometry; features = their product
  std::size_t classes = 10;
  Init init = Init::default_uniform;
  ag::Generator* gen = nullptr;  // nullptr: nn::default_generator()
  std::size_t features() const { return channels * height * width; }
};

struct ModelEntry : config::EntryInfo {
  /// True if the model takes images [N, C, H, W]; false: flat rows [N, features].
  bool images = false;
  std::function<std::shared_ptr<Module>(const config::Spec&, const ModelContext&)> make;
  std::function<std::vector<std::pair<std::string, std::string>>(const config::Spec&)> resolve;
};

config::Registry<ModelEntry>& models();

/// A model by spec; config::SpecError for an unknown name, key or value.
std::shared_ptr<Module> make_model(const config::Spec& spec, const ModelContext& context);
/// The spec with every option written out.
config::Spec resolve_model(const config::Spec& spec);

/// Registers a model whose options struct is O; `build(options, context)` makes it.
template <class O>
struct RegisterModel {
  using Build = std::function<std::shared_ptr<Module>(const O&, const ModelContext&)>;
  RegisterModel(std::string name, std::string summary, config::OptionTable<O> table, bool images, Build build,
                O defaults = {}) {
    std::string where = name;
    ModelEntry entry = config::entry_with_options<ModelEntry>(std::move(name), std::move(summary), std::move(table),
                                                              defaults, where, std::move(build));
    entry.images = images;
    models().add(std::move(entry));
  }
};

}  // namespace nn
