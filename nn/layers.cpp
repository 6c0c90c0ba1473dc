#include "nn/layers.hpp"

#include <stdexcept>
#include <typeinfo>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/ops.hpp"

namespace nn {

namespace {
ag::Generator& pick(ag::Generator* gen) { return gen ? *gen : default_generator(); }

void check_rank(const char* layer, const ag::Tensor& x, std::size_t rank, const char* layout) {
  if (!x.defined() || x.rank() != rank) {
    throw std::invalid_argument(fmt::format("{}: expected a {}-D input {}, got {}", layer, rank, layout, x.describe()));
  }
}
}  // namespace

// ---------------------------------------------------------------- Linear

Linear::Linear(std::size_t in, std::size_t out, Init init, bool bias, ag::Generator* gen, ag::DType dtype)
    : in_(in), out_(out) {
  if (in == 0 || out == 0) throw std::invalid_argument(fmt::format("Linear: sizes must be positive ({} -> {})", in, out));
  weight_ = ag::Tensor::empty(ag::Shape{in, out}, dtype);
  init_weight(weight_, init, pick(gen), in, out);
  register_parameter("weight", weight_);
  if (bias) {
    bias_ = ag::Tensor::empty(ag::Shape{out}, dtype);
    init_bias(bias_, init, pick(gen), in);
    register_parameter("bias", bias_);
  }
}

ag::Tensor Linear::forward(const ag::Tensor& x) {
  check_rank("Linear", x, 2, "(batch, features)");
  if (x.dim(1) != in_) {
    throw std::invalid_argument(fmt::format("Linear({} -> {}): input {} has {} features", in_, out_, x.describe(), x.dim(1)));
  }
  return ag::linear(x, weight_, bias_);
}

std::string Linear::type_name() const {
  return fmt::format("Linear(in={}, out={}{})", in_, out_, bias_.defined() ? "" : ", bias=false");
}

// ---------------------------------------------------------------- Conv2d

Conv2d::Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, std::size_t stride,
               std::size_t padding, Init init, bool bias, ag::Generator* gen, ag::DType dtype)
    : Conv2d(Conv2dOptions{.in_channels = in_channels,
                           .out_channels = out_channels,
                           .kernel = {kernel, kernel},
                           .stride = {stride, stride},
                           .padding = {padding, padding},
                           .bias = bias,
                           .init = init,
                           .gen = gen,
                           .dtype = dtype}) {}

Conv2d::Conv2d(const Conv2dOptions& options) : options_(options) {
  const Conv2dOptions& o = options;
  options_.gen = nullptr;
  if (o.in_channels == 0 || o.out_channels == 0 || o.kernel[0] == 0 || o.kernel[1] == 0 || o.stride[0] == 0 ||
      o.stride[1] == 0 || o.dilation[0] == 0 || o.dilation[1] == 0 || o.groups == 0) {
    throw std::invalid_argument(fmt::format(
        "Conv2d: channels, kernel, stride, dilation and groups must be positive ({}, {}, {}x{}, {}x{}, {}x{}, {})",
        o.in_channels, o.out_channels, o.kernel[0], o.kernel[1], o.stride[0], o.stride[1], o.dilation[0],
        o.dilation[1], o.groups));
  }
  if (o.in_channels % o.groups != 0 || o.out_channels % o.groups != 0) {
    throw std::invalid_argument(fmt::format("Conv2d: in_channels {} and out_channels {} must be divisible by groups {}",
                                            o.in_channels, o.out_channels, o.groups));
  }
  std::size_t taps = o.kernel[0] * o.kernel[1];
  std::size_t fan_in = o.in_channels / o.groups * taps, fan_out = o.out_channels * taps;
  weight_ = ag::Tensor::empty(ag::Shape{o.out_channels, o.in_channels / o.groups, o.kernel[0], o.kernel[1]}, o.dtype);
  init_weight(weight_, o.init, pick(o.gen), fan_in, fan_out);
  register_parameter("weight", weight_);
  if (o.bias) {
    bias_ = ag::Tensor::empty(ag::Shape{o.out_channels}, o.dtype);
    init_bias(bias_, o.init, pick(o.gen), fan_in);
    register_parameter("bias", bias_);
  }
}

ag::Tensor Conv2d::forward(const ag::Tensor& x) {
  check_rank("Conv2d", x, 4, "(N, C, H, W)");
  const Conv2dOptions& o = options_;
  return ag::conv2d(x, weight_, bias_, o.stride, o.padding, o.dilation, o.groups);
}

ag::Tensor Conv2d::forward_max_pool2d(const ag::Tensor& x, bool relu) {
  check_rank("Conv2d", x, 4, "(N, C, H, W)");
  const Conv2dOptions& o = options_;
  if (o.stride[0] == o.stride[1] && o.padding[0] == o.padding[1] && o.dilation == ag::Size2{1, 1} && o.groups == 1) {
    return ag::conv2d_max_pool2d(x, weight_, bias_, o.stride[0], o.padding[0], relu);
  }
  ag::Tensor pooled = ag::max_pool2d(forward(x), 2);  // relu commutes with the maximum
  return relu ? ag::relu(pooled) : pooled;
}

namespace {
/// "3" for {3, 3}, "3x5" otherwise.
std::string size2_str(ag::Size2 s) { return s[0] == s[1] ? fmt::format("{}", s[0]) : fmt::format("{}x{}", s[0], s[1]); }
}  // namespace

std::string Conv2d::type_name() const {
  const Conv2dOptions& o = options_;
  return fmt::format("Conv2d(in={}, out={}, kernel={}, stride={}, padding={}{}{}{})", o.in_channels, o.out_channels,
                     size2_str(o.kernel), size2_str(o.stride), size2_str(o.padding),
                     o.dilation == ag::Size2{1, 1} ? "" : ", dilation=" + size2_str(o.dilation),
                     o.groups == 1 ? "" : fmt::format(", groups={}", o.groups), bias_.defined() ? "" : ", bias=false");
}

namespace {
std::size_t square(const Conv2d& conv, const char* what, ag::Size2 s) {
  if (s[0] != s[1]) {
    throw std::logic_error(fmt::format("{}: the {} is {}x{}, not square: read options().{}", conv.type_name(), what,
                                       s[0], s[1], what));
  }
  return s[0];
}
}  // namespace

std::size_t Conv2d::kernel() const { return square(*this, "kernel", options_.kernel); }
std::size_t Conv2d::stride() const { return square(*this, "stride", options_.stride); }
std::size_t Conv2d::padding() const { return square(*this, "padding", options_.padding); }

// ---------------------------------------------------------------- pooling, activations, shape

MaxPool2d::MaxPool2d(std::size_t kernel, std::size_t stride) : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
  if (kernel == 0) throw std::invalid_argument("MaxPool2d: kernel must be positive");
}

ag::Tensor MaxPool2d::forward(const ag::Tensor& x) {
  check_rank("MaxPool2d", x, 4, "(N, C, H, W)");
  return ag::max_pool2d(x, kernel_, stride_);
}

std::string MaxPool2d::type_name() const { return fmt::format("MaxPool2d(kernel={}, stride={})", kernel_, stride_); }

ag::Tensor ReLU::forward(const ag::Tensor& x) { return ag::relu(x); }
ag::Tensor LeakyReLU::forward(const ag::Tensor& x) { return ag::leaky_relu(x, negative_slope_); }
std::string LeakyReLU::type_name() const { return fmt::format("LeakyReLU(negative_slope={})", negative_slope_); }
ag::Tensor ELU::forward(const ag::Tensor& x) { return ag::elu(x, alpha_); }
std::string ELU::type_name() const { return fmt::format("ELU(alpha={})", alpha_); }
ag::Tensor GELU::forward(const ag::Tensor& x) { return ag::gelu(x, approximate_); }
std::string GELU::type_name() const { return approximate_ ? "GELU(approximate=tanh)" : "GELU"; }
ag::Tensor SiLU::forward(const ag::Tensor& x) { return ag::silu(x); }

Softplus::Softplus(double beta, double threshold) : beta_(beta), threshold_(threshold) {
  if (!(beta > 0)) throw std::invalid_argument(fmt::format("Softplus: beta {} must be positive", beta));
}
ag::Tensor Softplus::forward(const ag::Tensor& x) { return ag::softplus(x, beta_, threshold_); }
std::string Softplus::type_name() const { return fmt::format("Softplus(beta={}, threshold={})", beta_, threshold_); }

ag::Tensor Sigmoid::forward(const ag::Tensor& x) { return ag::sigmoid(x); }
ag::Tensor Tanh::forward(const ag::Tensor& x) { return ag::tanh(x); }
ag::Tensor Softmax::forward(const ag::Tensor& x) { return ag::softmax(x, axis_); }
std::string Softmax::type_name() const { return fmt::format("Softmax(axis={})", axis_); }
ag::Tensor LogSoftmax::forward(const ag::Tensor& x) { return ag::log_softmax(x, axis_); }
std::string LogSoftmax::type_name() const { return fmt::format("LogSoftmax(axis={})", axis_); }
ag::Tensor Flatten::forward(const ag::Tensor& x) { return ag::flatten(x, 1); }

// ---------------------------------------------------------------- Dropout

namespace {
double dropout_rate(double p) {
  if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument(fmt::format("Dropout: p = {} is outside [0, 1)", p));
  return p;
}
/// One 64-bit draw seeds the layer's own engine (so its masks are not a slice of `gen`'s stream); none if
/// p is refused.
std::uint64_t stream_seed(double p, ag::Generator& gen) {
  dropout_rate(p);
  return gen.engine()();
}
}  // namespace

Dropout::Dropout(double p) : Dropout(p, default_generator()) {}

Dropout::Dropout(double p, ag::Generator& gen) : Dropout(p, stream_seed(p, gen)) {}

Dropout::Dropout(double p, std::uint64_t seed) : p_(dropout_rate(p)), gen_(seed) {}

ag::Tensor Dropout::forward(const ag::Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  ag::Tensor mask = ag::Tensor::empty(x.shape(), x.dtype());
  double keep = 1.0 - p_;
  for (std::size_t i = 0, n = mask.numel(); i < n; ++i) {
    double value = gen_.uniform01() < keep ? 1.0 / keep : 0.0;
    if (x.dtype() == ag::DType::f64) {
      mask.data<double>()[i] = value;
    } else {
      mask.data<float>()[i] = static_cast<float>(value);
    }
  }
  return ag::mul(x, mask);
}

std::string Dropout::type_name() const { return fmt::format("Dropout(p={})", p_); }

// ---------------------------------------------------------------- Sequential

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (const auto& module : modules) add(module);
}

Sequential& Sequential::add(std::shared_ptr<Module> module) {
  register_module(std::to_string(children().size()), std::move(module));
  return *this;
}

namespace {

const std::type_info& type_of(const Module& module) { return typeid(module); }

/// How many layers from i on run as one convolution + pooling op: 2 for Conv2d, MaxPool2d(2); 3 for Conv2d,
/// ReLU, MaxPool2d(2); else 0. Exact types only (a subclass may change forward); not while detecting
/// anomalies (the reports name each layer).
std::size_t conv_pool_layers(const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& layers,
                             std::size_t i) {
  if (ag::detecting_anomalies() || type_of(*layers[i].second) != typeid(Conv2d)) return 0;
  std::size_t p = i + 1;
  if (p < layers.size() && type_of(*layers[p].second) == typeid(ReLU)) ++p;
  if (p >= layers.size() || type_of(*layers[p].second) != typeid(MaxPool2d)) return 0;
  const auto& pool = static_cast<const MaxPool2d&>(*layers[p].second);
  return pool.kernel() == 2 && pool.stride() == 2 ? p - i + 1 : 0;
}

}  // namespace

ag::Tensor Sequential::forward(const ag::Tensor& x) {
  ag::Tensor h = x;
  const auto& layers = children();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    Module& layer = *layers[i].second;
    // Conv2d [ReLU] MaxPool2d(2): one op (ag::conv2d_max_pool2d), the ReLU applied to the pooled maxima
    // (see below).
    if (std::size_t run = conv_pool_layers(layers, i)) {
      h = static_cast<Conv2d&>(layer).forward_max_pool2d(h, run == 3);
      i += run - 1;
      continue;
    }
    // ReLU then MaxPool2d runs as MaxPool2d then ReLU: the same values and the same gradients of every order
    // (relu is non-decreasing, maps every x <= 0 to 0 with gradient 0 and passes NaN, so it commutes with a
    // window's maximum, ties, zeros and NaN included), at a quarter of relu's work for 2x2 windows. One
    // difference remains, for a graph's gradients only: where a window's maximum is <= 0, an infinite or NaN
    // upstream gradient times relu's 0 lands on the maximum's element, not on the window's first (as
    // ag::conv2d_max_pool2d's graph backward does it); finite gradients cannot tell.
    if (i + 1 < layers.size() && typeid(layer) == typeid(ReLU) && type_of(*layers[i + 1].second) == typeid(MaxPool2d)) {
      h = layer((*layers[i + 1].second)(h));
      ++i;
      continue;
    }
    h = layer(h);
  }
  return h;
}

std::shared_ptr<Sequential> make_mlp(std::size_t in, const std::vector<std::size_t>& hidden, std::size_t out, Init init,
                                     ag::Generator* gen, MlpActivation activation) {
  auto net = std::make_shared<Sequential>();
  std::size_t width = in;
  for (std::size_t h : hidden) {
    net->add(std::make_shared<Linear>(width, h, init, true, gen));
    if (activation == MlpActivation::tanh) {
      net->add(std::make_shared<Tanh>());
    } else {
      net->add(std::make_shared<ReLU>());
    }
    width = h;
  }
  net->add(std::make_shared<Linear>(width, out, init, true, gen));
  return net;
}

}  // namespace nn
