#include "nn/module.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/detail/tensor_impl.hpp"

namespace nn {

ag::Tensor Module::operator()(const ag::Tensor& input) {
  if (!ag::detecting_anomalies()) return forward(input);
  ag::AnomalyScope scope(name_, type_name());
  return forward(input);
}

void Module::check_new_name(const char* what, const std::string& name, const ag::Tensor& value) const {
  if (!value.defined()) throw std::invalid_argument(fmt::format("{}: '{}' is undefined", what, name));
  for (const auto* list : {&parameters_, &buffers_}) {
    for (const auto& [existing, tensor] : *list) {
      if (existing == name) {
        throw std::invalid_argument(fmt::format("{}: '{}' is already a {} of this module", what, name,
                                                list == &parameters_ ? "parameter" : "buffer"));
      }
    }
  }
}

ag::Tensor& Module::register_parameter(std::string name, ag::Tensor value) {
  check_new_name("register_parameter", name, value);
  value.set_requires_grad(true);
  parameters_.emplace_back(std::move(name), std::move(value));
  return parameters_.back().second;
}

ag::Tensor& Module::register_buffer(std::string name, ag::Tensor value) {
  check_new_name("register_buffer", name, value);
  if (value.requires_grad()) {
    throw std::invalid_argument(fmt::format("register_buffer: '{}' {} requires grad (a buffer is not trained)", name,
                                            value.describe()));
  }
  buffers_.emplace_back(std::move(name), std::move(value));
  return buffers_.back().second;
}

void Module::add_child(std::string name, std::shared_ptr<Module> module) {
  if (!module) throw std::invalid_argument(fmt::format("register_module: '{}' is null", name));
  for (const auto& [existing, child] : children_) {
    if (existing == name) throw std::invalid_argument(fmt::format("register_module: '{}' registered twice", name));
  }
  module->name_ = name;
  children_.emplace_back(std::move(name), std::move(module));
}

void Module::collect(const std::string& prefix, std::vector<NamedTensor>& out, bool buffers) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, buffers);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", out, false);
  return out;
}

std::vector<NamedTensor> Module::named_buffers() const {
  std::vector<NamedTensor> out;
  collect("", out, true);
  return out;
}

std::vector<NamedTensor> Module::state_dict() const {
  std::vector<NamedTensor> out = named_parameters();
  collect("", out, true);
  return out;
}

std::vector<ag::Tensor> Module::parameters() const {
  std::vector<ag::Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

std::size_t Module::parameter_count() const {
  std::size_t count = 0;
  for (const auto& [name, tensor] : named_parameters()) count += tensor.numel();
  return count;
}

void Module::zero_grad() {
  for (auto& [name, tensor] : named_parameters()) tensor.zero_grad();
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

Module& Module::to(ag::DType dtype) {
  for (auto& [name, tensor] : state_dict()) {
    if (tensor.dtype() == dtype) continue;
    // In place, so that every handle to the tensor (the module's member, the caller's) sees the conversion.
    ag::TensorImpl& impl = *tensor.impl();
    impl.storage = tensor.to(dtype).impl()->storage;
    impl.offset = 0;
    impl.dtype = dtype;
    impl.grad = ag::Tensor();
  }
  return *this;
}

void Module::describe_into(std::string& out, const std::string& name, int depth) const {
  std::string indent(static_cast<std::size_t>(depth) * 2, ' ');
  out += indent + (name.empty() ? "" : "(" + name + "): ") + type_name();
  if (!parameters_.empty()) {
    out += "  ";
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      out += fmt::format("{}{} {}", i ? ", " : "", parameters_[i].first, parameters_[i].second.shape().str());
    }
  }
  out += "\n";
  for (const auto& [child_name, child] : children_) child->describe_into(out, child_name, depth + 1);
}

std::string Module::describe() const {
  std::string out;
  describe_into(out, "", 0);
  // Digit grouping by hand: fmt's locale-aware "L" depends on the global locale.
  std::string digits = std::to_string(parameter_count()), grouped;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) grouped.push_back(',');
    grouped.push_back(digits[i]);
  }
  out += fmt::format("{} parameters\n", grouped);
  return out;
}

}  // namespace nn
