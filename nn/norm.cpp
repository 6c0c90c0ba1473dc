#include "nn/norm.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

namespace nn {

// ---------------------------------------------------------------- BatchNorm1d, BatchNorm2d

BatchNorm::BatchNorm(const char* name, std::size_t min_rank, std::size_t max_rank, std::size_t num_features,
                     const BatchNormOptions& options)
    : name_(name), min_rank_(min_rank), max_rank_(max_rank), num_features_(num_features), options_(options) {
  if (num_features == 0) throw std::invalid_argument(fmt::format("{}: num_features must be positive", name));
  if (options.momentum && !(*options.momentum >= 0.0 && *options.momentum <= 1.0)) {
    throw std::invalid_argument(
        fmt::format("{}({}): momentum {} is outside [0, 1]", name, num_features, *options.momentum));
  }
  if (!(options.eps >= 0.0)) {
    throw std::invalid_argument(fmt::format("{}({}): eps {} is negative", name, num_features, options.eps));
  }
  const ag::Shape channels{num_features};
  if (options.affine) {
    weight_ = register_parameter("weight", ag::Tensor::ones(channels, options.dtype));
    bias_ = register_parameter("bias", ag::Tensor::zeros(channels, options.dtype));
  }
  if (options.track_running_stats) {
    running_mean_ = register_buffer("running_mean", ag::Tensor::zeros(channels, options.dtype));
    running_var_ = register_buffer("running_var", ag::Tensor::ones(channels, options.dtype));
    num_batches_tracked_ = register_buffer("num_batches_tracked", ag::Tensor::scalar(0.0, options.dtype));
  }
}

ag::Tensor BatchNorm::forward(const ag::Tensor& x) {
  if (!x.defined() || x.rank() < min_rank_ || x.rank() > max_rank_) {
    throw std::invalid_argument(fmt::format("{}: expected a {} input, got {}", name_,
                                            max_rank_ == 4 ? "4-D (N, C, H, W)" : "(N, C) or (N, C, L)", x.describe()));
  }
  if (x.dim(1) != num_features_) {
    throw std::invalid_argument(
        fmt::format("{}({}): input {} has {} channels", name_, num_features_, x.describe(), x.dim(1)));
  }
  const bool tracking = running_mean_.defined();
  if (!is_training() && tracking) {
    return ag::batch_norm(x, running_mean_, running_var_, weight_, bias_, false, 0.0, options_.eps);
  }
  const double batches = tracking ? num_batches_tracked_.item() + 1 : 1;
  ag::Tensor y = ag::batch_norm(x, running_mean_, running_var_, weight_, bias_, true,
                                options_.momentum.value_or(1.0 / batches), options_.eps);
  if (tracking) num_batches_tracked_.fill_(batches);
  return y;
}

std::string BatchNorm::type_name() const {
  return fmt::format("{}({}, eps={}, momentum={}{}{})", name_, num_features_, options_.eps,
                     options_.momentum ? fmt::format("{}", *options_.momentum) : "cumulative",
                     options_.affine ? "" : ", affine=false", running_mean_.defined() ? "" : ", track_running_stats=false");
}

void BatchNorm::reset_running_stats() {
  if (!running_mean_.defined()) return;
  running_mean_.fill_(0.0);
  running_var_.fill_(1.0);
  num_batches_tracked_.fill_(0.0);
}

void BatchNorm::set_momentum(std::optional<double> momentum) {
  if (momentum && !(*momentum >= 0.0 && *momentum <= 1.0)) {
    throw std::invalid_argument(fmt::format("{}({}): momentum {} is outside [0, 1]", name_, num_features_, *momentum));
  }
  options_.momentum = momentum;
}

std::vector<BatchNorm*> batch_norm_layers(Module& model) {
  std::vector<BatchNorm*> layers;
  if (auto* bn = dynamic_cast<BatchNorm*>(&model)) layers.push_back(bn);
  for (const auto& [name, child] : model.children()) {
    for (BatchNorm* bn : batch_norm_layers(*child)) layers.push_back(bn);
  }
  return layers;
}

namespace {

/// Puts back the momenta and the model's mode that update_bn changes, however it ends.
class RestoreAfterUpdate {
 public:
  RestoreAfterUpdate(Module& model, std::vector<BatchNorm*> layers)
      : model_(model), training_(model.is_training()), layers_(std::move(layers)) {
    for (BatchNorm* bn : layers_) momenta_.push_back(bn->momentum());
  }
  ~RestoreAfterUpdate() {
    for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i]->set_momentum(momenta_[i]);
    model_.train(training_);
  }
  RestoreAfterUpdate(const RestoreAfterUpdate&) = delete;
  RestoreAfterUpdate& operator=(const RestoreAfterUpdate&) = delete;

 private:
  Module& model_;
  bool training_;
  std::vector<BatchNorm*> layers_;
  std::vector<std::optional<double>> momenta_;
};

}  // namespace

std::size_t update_bn(Module& model, std::size_t batches, const std::function<ag::Tensor(std::size_t)>& batch) {
  std::vector<BatchNorm*> layers;
  for (BatchNorm* bn : batch_norm_layers(model)) {
    if (bn->running_mean().defined()) layers.push_back(bn);
  }
  if (layers.empty()) return 0;
  RestoreAfterUpdate restore(model, layers);
  for (BatchNorm* bn : layers) {
    bn->reset_running_stats();
    bn->set_momentum(std::nullopt);
  }
  model.train();
  ag::NoGradGuard no_grad;
  for (std::size_t i = 0; i < batches; ++i) model(batch(i));
  return layers.size();
}

// ---------------------------------------------------------------- LayerNorm

LayerNorm::LayerNorm(ag::Shape normalized_shape, double eps, bool elementwise_affine, ag::DType dtype)
    : normalized_shape_(normalized_shape), eps_(eps) {
  if (normalized_shape.rank() == 0 || normalized_shape.numel() == 0) {
    throw std::invalid_argument(fmt::format("LayerNorm: normalized_shape {} is empty", normalized_shape.str()));
  }
  if (!(eps >= 0.0)) throw std::invalid_argument(fmt::format("LayerNorm: eps {} is negative", eps));
  if (elementwise_affine) {
    weight_ = register_parameter("weight", ag::Tensor::ones(normalized_shape, dtype));
    bias_ = register_parameter("bias", ag::Tensor::zeros(normalized_shape, dtype));
  }
}

ag::Tensor LayerNorm::forward(const ag::Tensor& x) { return ag::layer_norm(x, normalized_shape_, weight_, bias_, eps_); }

std::string LayerNorm::type_name() const {
  return fmt::format("LayerNorm({}, eps={}{})", normalized_shape_.str(), eps_,
                     weight_.defined() ? "" : ", elementwise_affine=false");
}

}  // namespace nn
