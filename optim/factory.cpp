#include "optim/factory.hpp"

#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "optim/adagrad.hpp"
#include "optim/adam.hpp"
#include "optim/adam_hd.hpp"
#include "optim/amsgrad.hpp"
#include "optim/momentum.hpp"
#include "optim/nadam.hpp"
#include "optim/namsgrad.hpp"
#include "optim/nesterov.hpp"
#include "optim/nesterov_lookahead.hpp"
#include "optim/rmsprop.hpp"
#include "optim/sgd.hpp"
#include "optim/sgd_hd.hpp"

namespace optim {

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names{"sgd",     "momentum", "nesterov", "nesterov-lookahead", "adagrad",
                                              "rmsprop", "adam",     "nadam",    "amsgrad",            "namsgrad",
                                              "sgd-hd",  "adam-hd",  "newton"};
  return names;
}

namespace {
[[noreturn]] void unknown(std::string_view where, std::string_view name) {
  throw std::invalid_argument(
      fmt::format("{}: unknown optimiser '{}' (known: {})", where, name, fmt::join(optimizer_names(), ", ")));
}

template <class O>
void set_if(O& field, const std::optional<O>& value) {
  if (value) field = *value;
}
}  // namespace

double default_lr(std::string_view name) {
  if (name == "sgd") return SGDOptions{}.lr;
  if (name == "momentum") return MomentumOptions{}.lr;
  if (name == "nesterov" || name == "nesterov-lookahead") return NesterovOptions{}.lr;
  if (name == "adagrad") return AdagradOptions{}.lr;
  if (name == "rmsprop") return RMSPropOptions{}.lr;
  if (name == "adam") return AdamOptions{}.lr;
  if (name == "nadam") return 2e-3;  // Dozat's value
  if (name == "amsgrad") return AMSGradOptions{}.lr;
  if (name == "namsgrad") return NAMSGradOptions{}.lr;
  if (name == "sgd-hd") return SGDHDOptions{}.lr;
  if (name == "adam-hd") return AdamHDOptions{}.lr;
  if (name == "newton") return NewtonOptions{}.lr;
  unknown("default_lr", name);
}

bool is_optimizer_name(std::string_view name) {
  for (const std::string& known : optimizer_names()) {
    if (known == name) return true;
  }
  return false;
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<nn::NamedTensor> params, double lr,
                                          double weight_decay, OptimizerConfig config) {
  config.lr = lr;
  config.weight_decay = weight_decay;
  return make_optimizer(name, std::move(params), config);
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<nn::NamedTensor> params,
                                          const OptimizerConfig& c) {
  if (!is_optimizer_name(name)) unknown("make_optimizer", name);
  const double lr = c.lr.value_or(default_lr(name));
  const double weight_decay = c.weight_decay;
  const WeightDecay mode = c.decoupled_weight_decay ? WeightDecay::decoupled : WeightDecay::coupled;
  auto adam_like = [&]<class O>(O o) {
    o.lr = lr;
    o.weight_decay = weight_decay;
    o.weight_decay_mode = mode;
    set_if(o.beta1, c.beta1);
    set_if(o.beta2, c.beta2);
    set_if(o.eps, c.eps);
    set_if(o.eps_placement, c.eps_placement);
    return o;
  };
  auto momentum_like = [&]<class O>(O o) {
    o.lr = lr;
    o.weight_decay = weight_decay;
    o.weight_decay_mode = mode;
    set_if(o.momentum, c.momentum);
    return o;
  };

  if (name == "sgd") {
    return std::make_unique<SGD>(std::move(params),
                                 SGDOptions{.lr = lr, .weight_decay = weight_decay, .weight_decay_mode = mode});
  }
  if (name == "momentum") return std::make_unique<Momentum>(std::move(params), momentum_like(MomentumOptions{}));
  if (name == "nesterov") return std::make_unique<Nesterov>(std::move(params), momentum_like(NesterovOptions{}));
  if (name == "nesterov-lookahead") {
    return std::make_unique<NesterovLookahead>(std::move(params), momentum_like(NesterovOptions{}));
  }
  if (name == "adagrad") {
    AdagradOptions o{.lr = lr, .weight_decay = weight_decay, .weight_decay_mode = mode};
    set_if(o.eps, c.eps);
    set_if(o.eps_placement, c.eps_placement);
    return std::make_unique<Adagrad>(std::move(params), o);
  }
  if (name == "rmsprop") {
    RMSPropOptions o{.lr = lr, .weight_decay = weight_decay, .weight_decay_mode = mode};
    set_if(o.beta, c.beta2);
    set_if(o.eps, c.eps);
    set_if(o.eps_placement, c.eps_placement);
    return std::make_unique<RMSProp>(std::move(params), o);
  }
  if (name == "adam") return std::make_unique<Adam>(std::move(params), adam_like(AdamOptions{}));
  if (name == "nadam") return std::make_unique<Nadam>(std::move(params), adam_like(NadamOptions{}));
  if (name == "amsgrad" || name == "namsgrad") {
    AMSGradOptions o = adam_like(AMSGradOptions{});
    o.bias_correction = c.amsgrad_bias_correction;
    if (name == "namsgrad") return std::make_unique<NAMSGrad>(std::move(params), o);
    return std::make_unique<AMSGrad>(std::move(params), o);
  }
  if (name == "sgd-hd") {
    SGDHDOptions o{.lr = lr, .scope = c.hyper_scope, .weight_decay = weight_decay,
                   .weight_decay_mode = mode};
    set_if(o.hyper_lr, c.hyper_lr);
    return std::make_unique<SGDHD>(std::move(params), o);
  }
  if (name == "adam-hd") {
    AdamHDOptions o = adam_like(AdamHDOptions{});
    o.scope = c.hyper_scope;
    set_if(o.hyper_lr, c.hyper_lr);
    return std::make_unique<AdamHD>(std::move(params), o);
  }
  if (name == "newton") {
    NewtonOptions o{.lr = lr, .weight_decay = weight_decay, .weight_decay_mode = mode};
    set_if(o.damping, c.damping);
    set_if(o.method, c.hessian);
    return std::make_unique<Newton>(std::move(params), o);
  }
  unknown("make_optimizer", name);
}

}  // namespace optim
