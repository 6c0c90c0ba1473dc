// Losses: fused softmax cross-entropy, negative log-likelihood, mean squared error.
#include <cmath>
#include <limits>

#include "autograd/detail/nan.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

namespace {

void check_labels(const char* op, const Tensor& scores, Labels labels) {
  detail::check_defined(op, scores);
  if (scores.rank() != 2) fail(op, "needs (batch, classes) scores, got {}", scores.describe());
  if (labels.size() != scores.dim(0)) {
    fail(op, "{} labels for a batch of {} ({})", labels.size(), scores.dim(0), scores.describe());
  }
  std::size_t classes = scores.dim(1);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes) {
      fail(op, "label {} of sample {} is outside [0, {})", labels[i], i, classes);
    }
  }
}

Tensor reduce_losses(const Tensor& per_sample, Reduction reduction) {
  switch (reduction) {
    case Reduction::mean: return mean(per_sample);
    case Reduction::sum: return sum(per_sample);
    case Reduction::none: break;
  }
  return per_sample;
}

/// The incoming gradient of a reduced loss as a per-row factor (B, 1) or a scalar, times the
/// reduction's own factor (1/B for the mean).
Tensor row_factor(const Tensor& g, Reduction reduction, std::size_t batch) {
  if (reduction == Reduction::none) return reshape(g, Shape{batch, 1});
  return reduction == Reduction::mean ? div(g, static_cast<double>(batch)) : g;
}

}  // namespace

Tensor one_hot(Labels labels, std::size_t classes, DType dtype) {
  Tensor out = detail::make_tensor(Shape{labels.size(), classes}, dtype, "one_hot");
  out.fill_(0.0);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes) {
      fail("one_hot", "label {} of sample {} is outside [0, {})", labels[i], i, classes);
    }
  }
  dispatch(dtype, [&]<class T>() {
    T* po = out.data<T>();
    for (std::size_t i = 0; i < labels.size(); ++i) po[i * classes + static_cast<std::size_t>(labels[i])] = T(1);
  });
  return out;
}

Tensor cross_entropy(const Tensor& logits, Labels labels, Reduction reduction) {
  check_labels("cross_entropy", logits, labels);
  std::size_t batch = logits.dim(0), classes = logits.dim(1);
  if (batch == 0) fail("cross_entropy", "empty batch {}", logits.describe());
  // Forward: loss_i = logsumexp(z_i - max z_i) - (z_i[y_i] - max z_i), and the softmax kept for backward.
  Tensor losses = detail::make_tensor(Shape{batch}, logits.dtype(), "cross_entropy");
  Tensor probabilities = detail::make_tensor(logits.shape(), logits.dtype(), "cross_entropy");
  double total = 0.0;
  dispatch(logits.dtype(), [&]<class T>() {
    const T* z = logits.data<T>();
    T* p = probabilities.data<T>();
    T* l = losses.data<T>();
    for (std::size_t i = 0; i < batch; ++i) {
      const T* row = z + i * classes;
      T peak = -std::numeric_limits<T>::infinity();
      for (std::size_t k = 0; k < classes; ++k) peak = detail::nan_max(peak, row[k]);  // NaN stays NaN
      T norm = 0;
      for (std::size_t k = 0; k < classes; ++k) {
        p[i * classes + k] = std::exp(row[k] - peak);
        norm += p[i * classes + k];
      }
      for (std::size_t k = 0; k < classes; ++k) p[i * classes + k] /= norm;
      l[i] = std::log(norm) - (row[static_cast<std::size_t>(labels[i])] - peak);
      total += l[i];
    }
  });
  Tensor out;
  if (reduction == Reduction::none) {
    out = losses;
  } else {
    double value = reduction == Reduction::mean ? total / static_cast<double>(batch) : total;
    out = Tensor::scalar(value, logits.dtype());
  }
  std::vector<std::int32_t> kept_labels(labels.begin(), labels.end());
  return record("cross_entropy", out, {logits},
                [logits, probabilities, kept_labels = std::move(kept_labels), reduction, batch, classes](
                    const Tensor& g, NeedsGrad) {
                  if (is_recording()) {
                    // Higher order: d/dz = (softmax(z) - onehot) * factor, on the tape.
                    Tensor delta = sub(softmax(logits, 1), one_hot(kept_labels, classes, logits.dtype()));
                    return std::vector<Tensor>{mul(delta, row_factor(g, reduction, batch))};
                  }
                  // First order: one pass over the saved softmax.
                  Tensor dz = detail::make_tensor(logits.shape(), logits.dtype(), "cross_entropy");
                  dispatch(logits.dtype(), [&]<class T>() {
                    const T* p = probabilities.data<T>();
                    const T* pg = g.data<T>();
                    T* d = dz.data<T>();
                    T scale = reduction == Reduction::mean ? pg[0] / static_cast<T>(batch) : pg[0];
                    for (std::size_t i = 0; i < batch; ++i) {
                      T factor = reduction == Reduction::none ? pg[i] : scale;
                      for (std::size_t k = 0; k < classes; ++k) d[i * classes + k] = p[i * classes + k] * factor;
                      d[i * classes + static_cast<std::size_t>(kept_labels[i])] -= factor;
                    }
                  });
                  return std::vector<Tensor>{dz};
                });
}

Tensor nll_loss(const Tensor& log_probs, Labels labels, Reduction reduction) {
  check_labels("nll_loss", log_probs, labels);
  // -logp_i[y_i] as a differentiable product with the one-hot matrix.
  Tensor picked = sum(mul(log_probs, one_hot(labels, log_probs.dim(1), log_probs.dtype())), 1);
  return reduce_losses(neg(picked), reduction);
}

Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction reduction) {
  detail::check_binary("mse_loss", pred, target);
  if (!(pred.shape() == target.shape())) {
    fail("mse_loss", "prediction {} and target {} differ in shape", pred.describe(), target.describe());
  }
  Tensor squared = pow(sub(pred, target), 2.0);
  return reduce_losses(squared, reduction);
}

}  // namespace ag
