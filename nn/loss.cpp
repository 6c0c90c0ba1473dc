#include "nn/loss.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace nn {

const std::vector<std::pair<std::string, ClassifierLoss>>& classifier_losses() {
  static const std::vector<std::pair<std::string, ClassifierLoss>> names{{"cross-entropy", ClassifierLoss::cross_entropy},
                                                                         {"mse", ClassifierLoss::mse}};
  return names;
}

std::string classifier_loss_name(ClassifierLoss loss) {
  for (const auto& [name, value] : classifier_losses()) {
    if (value == loss) return name;
  }
  throw std::invalid_argument("classifier_loss_name: not a ClassifierLoss value");
}

ClassifierLoss parse_classifier_loss(const std::string& name) {
  std::string choices;
  for (const auto& [known, value] : classifier_losses()) {
    if (known == name) return value;
    choices += (choices.empty() ? "" : ", ") + known;
  }
  throw std::invalid_argument(fmt::format("unknown loss '{}': the losses are {}", name, choices));
}

ag::Tensor classifier_loss(ClassifierLoss loss, const ag::Tensor& logits, ag::Labels labels, ag::Reduction reduction) {
  if (reduction == ag::Reduction::none) throw std::invalid_argument("classifier_loss: the reduction must be mean or sum");
  if (loss == ClassifierLoss::cross_entropy) return ag::cross_entropy(logits, labels, reduction);
  if (logits.rank() != 2 || logits.dim(0) != labels.size()) {
    throw std::invalid_argument(fmt::format("classifier_loss: mse takes logits (B, K) for B = {} labels, not {}",
                                            labels.size(), logits.describe()));
  }
  const ag::Tensor target = ag::one_hot(labels, logits.dim(1), logits.dtype());
  const double scale = reduction == ag::Reduction::mean ? 0.5 / static_cast<double>(labels.size()) : 0.5;
  return ag::mul(ag::mse_loss(logits, target, ag::Reduction::sum), scale);
}

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
