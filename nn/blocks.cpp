#include "nn/blocks.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/ops.hpp"

namespace nn {

Residual::Residual(std::shared_ptr<Module> body) : body_(register_module("body", std::move(body))) {}

ag::Tensor Residual::forward(const ag::Tensor& x) {
  ag::Tensor fx = (*body_)(x);  // through the call operator: anomaly reports name the body
  if (!(fx.shape() == x.shape())) {
    throw std::invalid_argument(fmt::format("Residual: its body ({}) turns {} into {}; x + f(x) needs one shape",
                                            body_->type_name(), x.describe(), fx.describe()));
  }
  return ag::add(x, fx);
}

Lambda::Lambda(Function fn, std::string name) : fn_(std::move(fn)), name_(std::move(name)) {
  if (!fn_) throw std::invalid_argument(fmt::format("Lambda '{}': empty function", name_));
}

}  // namespace nn
