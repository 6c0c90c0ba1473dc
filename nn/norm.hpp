// Normalisation layers over ag::batch_norm and ag::layer_norm (autograd/ops.hpp has the formulas).
//
//   BatchNorm1d(C)   x (N, C) or (N, C, L)      weight, bias (C); buffers running_mean, running_var (C),
//   BatchNorm2d(C)   x (N, C, H, W)             num_batches_tracked (a scalar)
//   LayerNorm(shape) x (..., shape)             weight, bias (shape); no buffers
//
// Batch norm follows the module's mode (Module::train / eval, as Dropout): in training it normalises by the
// batch's statistics and updates the running ones (r <- (1 - momentum) r + momentum s, s the batch mean and
// unbiased variance; momentum unset: the cumulative average, momentum = 1 / num_batches_tracked); in
// evaluation by the running ones, so that it is the fixed affine map y = (x - running_mean) /
// sqrt(running_var + eps) γ + β. With track_running_stats = false it has no buffers and always uses the
// batch's statistics. The buffers are saved and loaded by checkpoints with the parameters.
//
// update_bn recomputes the running statistics for weights the layers were not trained with (the average of
// ema/swa, optim/average.hpp), as torch.optim.swa_utils.update_bn.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"
#include "nn/module.hpp"

namespace nn {

struct BatchNormOptions {
  double eps = 1e-5;
  /// Weight of the new batch in the running statistics; unset: their cumulative average.
  std::optional<double> momentum = 0.1;
  /// Learnable γ (ones) and β (zeros).
  bool affine = true;
  bool track_running_stats = true;
  ag::DType dtype = ag::DType::f32;
};

/// What BatchNorm1d and BatchNorm2d share; they differ in the input ranks they take.
class BatchNorm : public Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;
  /// Handles to the parameters (undefined without affine) and buffers (undefined without running stats).
  ag::Tensor weight() const { return weight_; }
  ag::Tensor bias() const { return bias_; }
  ag::Tensor running_mean() const { return running_mean_; }
  ag::Tensor running_var() const { return running_var_; }
  ag::Tensor num_batches_tracked() const { return num_batches_tracked_; }
  /// Running mean 0, variance 1, no batch tracked (in place: handles to the buffers see it).
  void reset_running_stats();
  std::optional<double> momentum() const { return options_.momentum; }
  /// Unset: the cumulative average. Throws std::invalid_argument outside [0, 1].
  void set_momentum(std::optional<double> momentum);

 protected:
  BatchNorm(const char* name, std::size_t min_rank, std::size_t max_rank, std::size_t num_features,
            const BatchNormOptions& options);

 private:
  const char* name_;
  std::size_t min_rank_, max_rank_, num_features_;
  BatchNormOptions options_;
  ag::Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};

/// Batch norm of (N, C) or (N, C, L) inputs.
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(std::size_t num_features, const BatchNormOptions& options = {})
      : BatchNorm("BatchNorm1d", 2, 3, num_features, options) {}
};

/// Batch norm of (N, C, H, W) inputs, per channel.
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(std::size_t num_features, const BatchNormOptions& options = {})
      : BatchNorm("BatchNorm2d", 4, 4, num_features, options) {}
};

/// The batch-norm layers of `model` and its descendants, depth first in registration order.
std::vector<BatchNorm*> batch_norm_layers(Module& model);

/// Recomputes the running statistics of every batch-norm layer of `model` that tracks them, for the model's
/// current weights: each is reset, then `model` runs in training mode without recording on `batch(0)` ...
/// `batch(batches - 1)` with the cumulative average (momentum unset), so the statistics end as the mean over
/// the batches of each batch's mean and unbiased variance. The layers' momenta and the model's mode are
/// restored afterwards (also when `batch` or the model throws). Returns the number of layers updated; with none,
/// nothing runs.
std::size_t update_bn(Module& model, std::size_t batches, const std::function<ag::Tensor(std::size_t)>& batch);

/// Layer norm over the trailing axes `normalized_shape` of its input; learnable γ, β of that shape unless
/// elementwise_affine is false.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(ag::Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
                     ag::DType dtype = ag::DType::f32);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;
  ag::Tensor weight() const { return weight_; }
  ag::Tensor bias() const { return bias_; }

 private:
  ag::Shape normalized_shape_;
  double eps_;
  ag::Tensor weight_, bias_;
};

}  // namespace nn
