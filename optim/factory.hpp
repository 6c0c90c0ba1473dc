// Optimisers by name, for programs that take them from flags:
//   auto opt = optim::make_optimizer(flag_optimizer, model.named_parameters(),
//                                    flag_lr > 0 ? flag_lr : optim::default_lr(flag_optimizer), flag_wd);
//   auto opt = optim::make_optimizer(flag_optimizer, model.named_parameters(),
//                                    {.lr = flag_lr, .weight_decay = flag_wd, .decoupled_weight_decay = true});
// Names: sgd, momentum, nesterov, nesterov-lookahead, adagrad, rmsprop, adam, nadam, amsgrad, namsgrad,
// sgd-hd, adam-hd, newton. nesterov-lookahead and newton need step(closure) / step(loss_fn).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "optim/hypergradient.hpp"
#include "optim/newton.hpp"
#include "optim/optimizer.hpp"

namespace optim {

/// Hyper-parameters; unset: the method's own default (see its header).
struct OptimizerConfig {
  std::optional<double> lr{};        // unset: default_lr(name)
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  std::optional<double> momentum{};  // momentum, nesterov, nesterov-lookahead (γ)
  std::optional<double> beta1{};     // adam, nadam, amsgrad, namsgrad, adam-hd
  std::optional<double> beta2{};     // same; rmsprop's β
  std::optional<double> eps{};       // adagrad, rmsprop, adam family
  std::optional<Eps> eps_placement{};
  std::optional<double> hyper_lr{};  // sgd-hd, adam-hd (β)
  HyperScope hyper_scope = HyperScope::global;
  bool amsgrad_bias_correction = false;  // amsgrad, namsgrad
  std::optional<double> damping{};   // newton
  std::optional<HessianMethod> hessian{};
};

/// Throws std::invalid_argument for an unknown name (listing the known ones) or invalid options.
std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<nn::NamedTensor> params,
                                          const OptimizerConfig& config);
/// The same with lr and weight_decay given here (they replace config's).
std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<nn::NamedTensor> params, double lr,
                                          double weight_decay = 0.0, OptimizerConfig config = {});
/// A sensible learning rate for each method (what its options default to).
double default_lr(std::string_view name);
/// The names make_optimizer accepts, in the order above.
const std::vector<std::string>& optimizer_names();
bool is_optimizer_name(std::string_view name);

}  // namespace optim
