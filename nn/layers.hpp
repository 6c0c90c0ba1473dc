// The layers. Shapes: Linear (B, in) -> (B, out); Conv2d and MaxPool2d work on (N, C, H, W).
#pragma once

#include <initializer_list>
#include <memory>
#include <string>

#include "autograd/ops.hpp"
#include "autograd/tensor.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

namespace nn {

/// z = x W + b with W stored (in, out), as the source documents write it: dL/dW = x^T delta,
/// dL/db = sum over the batch of delta, dL/dx = delta W^T.
class Linear : public Module {
 public:
  Linear(std::size_t in, std::size_t out, Init init = Init::default_uniform, bool bias = true,
         ag::Generator* gen = nullptr, ag::DType dtype = ag::DType::f32);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;
  /// Handles to the registered parameters (shared storage: write through them in place, e.g. with an
  /// initialiser; the bias is undefined without one).
  ag::Tensor weight() const { return weight_; }
  ag::Tensor bias() const { return bias_; }

 private:
  std::size_t in_, out_;
  ag::Tensor weight_, bias_;
};

/// Conv2d's settings, per direction (rows, columns) as ag::conv2d's Size2 overload takes them: weight
/// (out_channels, in_channels / groups, kernel[0], kernel[1]); both channel counts divisible by groups.
struct Conv2dOptions {
  std::size_t in_channels = 0, out_channels = 0;
  ag::Size2 kernel{0, 0};
  ag::Size2 stride{1, 1};
  ag::Size2 padding{0, 0};
  ag::Size2 dilation{1, 1};
  std::size_t groups = 1;
  bool bias = true;
  Init init = Init::default_uniform;
  ag::Generator* gen = nullptr;
  ag::DType dtype = ag::DType::f32;
};

/// 2-D convolution (cross-correlation), NCHW; weight (C_out, C_in / groups, kH, kW), bias (C_out). The first
/// constructor is the square form (kernel k x k, one stride and padding for both axes, no dilation, one group);
/// the options form takes everything ag::conv2d does. The initialisers' fans are those of PyTorch:
/// fan_in = C_in / groups kH kW, fan_out = C_out kH kW.
class Conv2d : public Module {
 public:
  Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, std::size_t stride = 1,
         std::size_t padding = 0, Init init = Init::default_uniform, bool bias = true, ag::Generator* gen = nullptr,
         ag::DType dtype = ag::DType::f32);
  explicit Conv2d(const Conv2dOptions& options);
  ag::Tensor forward(const ag::Tensor& x) override;
  /// max_pool2d(forward(x), 2), or with relu max_pool2d(relu(forward(x)), 2), as one op
  /// (ag::conv2d_max_pool2d: the convolution's output is never stored whole) where the settings are square
  /// with dilation 1 and one group; else op by op.
  ag::Tensor forward_max_pool2d(const ag::Tensor& x, bool relu = false);
  std::string type_name() const override;
  /// Handles to the registered parameters (shared storage: write through them in place, e.g. with an
  /// initialiser; the bias is undefined without one).
  ag::Tensor weight() const { return weight_; }
  ag::Tensor bias() const { return bias_; }
  /// The settings, every direction (gen is not kept: null).
  const Conv2dOptions& options() const { return options_; }
  /// The square settings; each throws std::logic_error, naming the module, if its two directions differ
  /// (read options() then).
  std::size_t kernel() const;
  std::size_t stride() const;
  std::size_t padding() const;

 private:
  Conv2dOptions options_;
  ag::Tensor weight_, bias_;
};

/// Max over kernel x kernel windows (stride defaults to the kernel).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(std::size_t kernel, std::size_t stride = 0);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;
  std::size_t kernel() const { return kernel_; }
  std::size_t stride() const { return stride_; }

 private:
  std::size_t kernel_, stride_;
};

class ReLU : public Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "ReLU"; }
};

/// leaky_relu(x, negative_slope).
class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : negative_slope_(negative_slope) {}
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  double negative_slope_;
};

/// elu(x, alpha).
class ELU : public Module {
 public:
  explicit ELU(double alpha = 1.0) : alpha_(alpha) {}
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  double alpha_;
};

/// gelu(x, approximate): the exact erf form, or the tanh form (PyTorch's approximate='tanh').
class GELU : public Module {
 public:
  explicit GELU(bool approximate = false) : approximate_(approximate) {}
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  bool approximate_;
};

class SiLU : public Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "SiLU"; }
};

/// softplus(x, beta, threshold); beta must be positive (checked here, naming the module).
class Softplus : public Module {
 public:
  explicit Softplus(double beta = 1.0, double threshold = 20.0);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  double beta_, threshold_;
};

class Sigmoid : public Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "Sigmoid"; }
};

class Tanh : public Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "Tanh"; }
};

/// Softmax / log-softmax along `axis` (default: the last).
class Softmax : public Module {
 public:
  explicit Softmax(int axis = -1) : axis_(axis) {}
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  int axis_;
};

class LogSoftmax : public Module {
 public:
  explicit LogSoftmax(int axis = -1) : axis_(axis) {}
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  int axis_;
};

/// (N, C, H, W) -> (N, C*H*W).
class Flatten : public Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "Flatten"; }
};

/// In training, zeroes each element with probability p and scales the rest by 1/(1-p) (inverted
/// dropout); in evaluation, the identity. Each layer draws its masks from a stream of its own:
///   Dropout(p)         seeded at construction by one draw from nn::default_generator(), as the other
///                      layers' initial weights are: nn::manual_seed and the order in which the layers are
///                      built decide every mask, and two layers have different masks;
///   Dropout(p, gen)    the same from a given generator (a model built from the run's seed);
///   Dropout(p, seed)   an explicit seed: two layers with one seed have the same masks.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Dropout(double p, ag::Generator& gen);
  Dropout(double p, std::uint64_t seed);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  double p_;
  ag::Generator gen_;
};

/// Runs its children in order; they are named "0", "1", ... Two patterns run fused, with the same values and
/// gradients of every order as the layers one by one: ReLU, MaxPool2d as pooling then ReLU (a quarter of
/// ReLU's work for 2x2 windows), and Conv2d, [ReLU,] MaxPool2d(2) as one op, ag::conv2d_max_pool2d (the
/// convolution's output is never stored whole). Not under anomaly detection, whose reports name each layer.
class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  Sequential& add(std::shared_ptr<Module> module);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  std::size_t size() const { return children().size(); }
};

/// The activation between the layers of make_mlp.
enum class MlpActivation { relu, tanh };

/// A multi-layer perceptron in -> hidden... -> out with ReLU (or tanh) between layers (logits out, no softmax).
std::shared_ptr<Sequential> make_mlp(std::size_t in, const std::vector<std::size_t>& hidden, std::size_t out,
                                     Init init = Init::default_uniform, ag::Generator* gen = nullptr,
                                     MlpActivation activation = MlpActivation::relu);

}  // namespace nn
