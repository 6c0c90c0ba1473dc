// Average pooling layers over (N, C, H, W); max pooling is nn::MaxPool2d in nn/layers.hpp.
#pragma once

#include <string>

#include "autograd/ops.hpp"
#include "nn/module.hpp"

namespace nn {

/// avg_pool2d: means over kernel windows (stride defaults to the kernel; zero padding counted, as PyTorch).
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0);
  AvgPool2d(ag::Size2 kernel, ag::Size2 stride, ag::Size2 padding = {0, 0});
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  ag::Size2 kernel_, stride_, padding_;
};

/// adaptive_avg_pool2d to a fixed output size; AdaptiveAvgPool2d(1) is global average pooling,
/// (N, C, H, W) -> (N, C, 1, 1).
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::size_t output_size) : AdaptiveAvgPool2d(ag::Size2{output_size, output_size}) {}
  explicit AdaptiveAvgPool2d(ag::Size2 output_size);
  ag::Tensor forward(const ag::Tensor& x) override;
  std::string type_name() const override;

 private:
  ag::Size2 output_size_;
};

}  // namespace nn
