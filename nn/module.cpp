#include "nn/module.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"

namespace nn {

ag::Tensor Module::operator()(const ag::Tensor& input) {
  if (!ag::detecting_anomalies()) return forward(input);
  ag::AnomalyScope scope(name_, type_name());
  return forward(input);
}

ag::Tensor& Module::register_parameter(std::string name, ag::Tensor value) {
  if (!value.defined()) throw std::invalid_argument(fmt::format("register_parameter: '{}' is undefined", name));
  for (const auto& [existing, tensor] : parameters_) {
    if (existing == name) throw std::invalid_argument(fmt::format("register_parameter: '{}' registered twice", name));
  }
  value.set_requires_grad(true);
  parameters_.emplace_back(std::move(name), std::move(value));
  return parameters_.back().second;
}

void Module::add_child(std::string name, std::shared_ptr<Module> module) {
  if (!module) throw std::invalid_argument(fmt::format("register_module: '{}' is null", name));
  for (const auto& [existing, child] : children_) {
    if (existing == name) throw std::invalid_argument(fmt::format("register_module: '{}' registered twice", name));
  }
  module->name_ = name;
  children_.emplace_back(std::move(name), std::move(module));
}

void Module::collect(const std::string& prefix, std::vector<NamedTensor>& out) const {
  for (const auto& [name, tensor] : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", out);
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
