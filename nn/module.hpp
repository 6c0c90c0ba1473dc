// Modules: parameters and child modules registered by name, in order.
//
//   class Net : public nn::Module {
//    public:
//     Net() : fc1(register_module("fc1", std::make_shared<nn::Linear>(784, 128))),
//             fc2(register_module("fc2", std::make_shared<nn::Linear>(128, 10))) {}
//     ag::Tensor forward(const ag::Tensor& x) override { return fc2->forward(ag::relu(fc1->forward(x))); }
//     std::string type_name() const override { return "Net"; }
//     std::shared_ptr<nn::Linear> fc1, fc2;
//   };
//
// named_parameters() walks the children in registration order and names parameters by their path:
// "fc1.weight", "fc1.bias", "fc2.weight", ... Tests, checkpoints and optimisers speak in these names.
//
// Buffers are tensors of a module's state that are not trained: batch norm's running statistics. They
// are registered by name as parameters are (register_buffer), named by path the same way
// (named_buffers(): "bn1.running_mean"), never require grad and are not in parameters(), so no optimiser
// sees them; checkpoints save and load them with the parameters (state_dict()).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.hpp"

namespace nn {

using NamedTensor = std::pair<std::string, ag::Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// The module's computation; records on the tape like any op.
  virtual ag::Tensor forward(const ag::Tensor& input) = 0;
  /// forward(input); under anomaly detection (autograd/anomaly.hpp) the module's name and type label the
  /// ops it runs, so call children as (*child)(x) for reports to name the layer.
  ag::Tensor operator()(const ag::Tensor& input);

  /// "Linear(in=784, out=128)": the module's own line in `describe()`.
  virtual std::string type_name() const = 0;

  /// Every parameter of this module and its descendants, named by path, in registration order.
  std::vector<NamedTensor> named_parameters() const;
  std::vector<ag::Tensor> parameters() const;
  /// Every buffer of this module and its descendants, named by path, in registration order.
  std::vector<NamedTensor> named_buffers() const;
  /// named_parameters() then named_buffers(): everything a checkpoint of the module holds.
  std::vector<NamedTensor> state_dict() const;
  /// Direct children, in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  /// Number of parameter elements (weights and biases).
  std::size_t parameter_count() const;
  /// Forgets every parameter's gradient.
  void zero_grad();
  /// Training mode (the default) or evaluation mode, for this module and its descendants.
  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  /// The model as an indented tree with parameter shapes and the total count.
  std::string describe() const;
  /// Converts every parameter and buffer to `dtype` in place: the handles the modules and their users
  /// hold see the new elements (a Linear's weight() included). Gradients are dropped. Convert before
  /// building an optimiser: its state keeps the old dtype.
  Module& to(ag::DType dtype);

 protected:
  /// Registers a parameter (it is marked requires_grad) and returns the stored handle.
  ag::Tensor& register_parameter(std::string name, ag::Tensor value);
  /// Registers a buffer: state that is saved and converted with the module but not trained (it must not
  /// require grad). Its name must differ from every parameter's and buffer's of this module.
  ag::Tensor& register_buffer(std::string name, ag::Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    add_child(std::move(name), module);
    return module;
  }

 private:
  void add_child(std::string name, std::shared_ptr<Module> module);
  void check_new_name(const char* what, const std::string& name, const ag::Tensor& value) const;
  void collect(const std::string& prefix, std::vector<NamedTensor>& out, bool buffers) const;
  void describe_into(std::string& out, const std::string& name, int depth) const;

  std::vector<NamedTensor> parameters_;
  std::vector<NamedTensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  /// The name its parent registered it under ("" for a root).
  std::string name_;
  bool training_ = true;
};

}  // namespace nn
