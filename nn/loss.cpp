#include "nn/loss.hpp"

#include <cmath>
#include <stdexcept>

namespace nn {

std::vector<NamedTensor> weights_only(const std::vector<NamedTensor>& params) {
  std::vector<NamedTensor> out;
  for (const auto& [name, tensor] : params) {
    if (name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0) out.emplace_back(name, tensor);
  }
  return out;
}

ag::Tensor l2_penalty(const std::vector<NamedTensor>& params, double lambda) {
  if (params.empty()) throw std::invalid_argument("l2_penalty: no parameters given");
  ag::Tensor total;
  for (const auto& [name, tensor] : params) {
    ag::Tensor squares = ag::sum(ag::mul(tensor, tensor));
    total = total.defined() ? ag::add(total, squares) : squares;
  }
  return ag::mul(total, lambda);
}

double weight_norm(const std::vector<NamedTensor>& params) {
  double total = 0.0;
  for (const auto& [name, tensor] : params) {
    for (std::size_t i = 0, n = tensor.numel(); i < n; ++i) {
      double v = tensor.at(i);
      total += v * v;
    }
  }
  return std::sqrt(total);
}

}  // namespace nn
