// Modules made of another module or of a function.
//
//   auto block = std::make_shared<nn::Residual>(std::make_shared<nn::Sequential>(...));   // y = x + f(x)
//   auto scale = std::make_shared<nn::Lambda>([](const ag::Tensor& x) { return ag::mul(x, 0.5); }, "Half");
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "nn/module.hpp"

namespace nn {

/// y = x + body(x) (He et al. 2016); body must keep x's shape. Its parameters are "body.<name>".
class Residual : public Module {
 public:
  explicit Residual(std::shared_ptr<Module> body);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "Residual"; }

 private:
  std::shared_ptr<Module> body_;
};

/// A function of one tensor as a module (no parameters): activations, reshapes, scalings inside a
/// Sequential. `name` is its line in describe().
class Lambda : public Module {
 public:
  using Function = std::function<ag::Tensor(const ag::Tensor&)>;
  explicit Lambda(Function fn, std::string name = "Lambda");
  ag::Tensor forward(const ag::Tensor& x) override { return fn_(x); }
  std::string type_name() const override { return name_; }

 private:
  Function fn_;
  std::string name_;
};

}  // namespace nn
