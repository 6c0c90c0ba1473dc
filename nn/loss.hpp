// Losses as objects (the functions are ag::cross_entropy, ag::nll_loss, ag::mse_loss), the L2 penalty
// and the weight norm of `000_a8231e789e629c42.txt` §3.3.2 (Figure 5).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.hpp"
#include "nn/module.hpp"

namespace nn {

/// Softmax cross-entropy from logits (B, K) and labels; mean over the batch by default.
struct CrossEntropyLoss {
  ag::Reduction reduction = ag::Reduction::mean;
  ag::Tensor operator()(const ag::Tensor& logits, ag::Labels labels) const {
    return ag::cross_entropy(logits, labels, reduction);
  }
};

/// Negative log-likelihood of log-probabilities (B, K) (after LogSoftmax).
struct NLLLoss {
  ag::Reduction reduction = ag::Reduction::mean;
  ag::Tensor operator()(const ag::Tensor& log_probs, ag::Labels labels) const {
    return ag::nll_loss(log_probs, labels, reduction);
  }
};

struct MSELoss {
  ag::Reduction reduction = ag::Reduction::mean;
  ag::Tensor operator()(const ag::Tensor& pred, const ag::Tensor& target) const {
    return ag::mse_loss(pred, target, reduction);
  }
};

/// A classifier's training loss from its logits z (B, K) and labels y, chosen by name (--loss in the programs):
///   cross-entropy  ag::cross_entropy(z, y)
///   mse            the square loss of Cohen et al. (2021): l_n = 1/2 ||z_n - onehot(y_n)||^2, so that
///                  d l_n / d z_n = z_n - onehot(y_n)
/// averaged over the batch (Reduction::mean) or summed (Reduction::sum).
enum class ClassifierLoss { cross_entropy, mse };

/// The names above with their values, in order; the one list the flags and errors use.
const std::vector<std::pair<std::string, ClassifierLoss>>& classifier_losses();
/// "cross-entropy" or "mse".
std::string classifier_loss_name(ClassifierLoss loss);
/// The loss named `name`; std::invalid_argument naming it and the choices otherwise.
ClassifierLoss parse_classifier_loss(const std::string& name);
/// The loss of `logits` for `labels` (Reduction::none is refused: std::invalid_argument).
ag::Tensor classifier_loss(ClassifierLoss loss, const ag::Tensor& logits, ag::Labels labels,
                           ag::Reduction reduction = ag::Reduction::mean);

/// The parameters whose name ends in "weight" (the usual target of an L2 penalty: not the biases).
std::vector<NamedTensor> weights_only(const std::vector<NamedTensor>& params);

/// lambda * sum_i ||W_i||^2 over `params`, on the tape (its gradient is 2 lambda W).
ag::Tensor l2_penalty(const std::vector<NamedTensor>& params, double lambda);

/// sqrt(sum_i ||W_i||^2), a metric (not recorded).
double weight_norm(const std::vector<NamedTensor>& params);

}  // namespace nn
