#include "nn/pooling.hpp"

#include <stdexcept>

#include <fmt/format.h>

namespace nn {

namespace {
/// "2" for a square size, "(2, 3)" for a rectangular one.
std::string size2(ag::Size2 s) { return s[0] == s[1] ? fmt::format("{}", s[0]) : fmt::format("({}, {})", s[0], s[1]); }
}  // namespace

AvgPool2d::AvgPool2d(std::size_t kernel, std::size_t stride, std::size_t padding)
    : AvgPool2d(ag::Size2{kernel, kernel}, ag::Size2{stride, stride}, ag::Size2{padding, padding}) {}

AvgPool2d::AvgPool2d(ag::Size2 kernel, ag::Size2 stride, ag::Size2 padding)
    : kernel_(kernel), stride_(stride), padding_(padding) {
  if (kernel[0] == 0 || kernel[1] == 0) throw std::invalid_argument("AvgPool2d: kernel must be positive");
  for (std::size_t d : {0, 1}) {
    if (stride_[d] == 0) stride_[d] = kernel[d];
    if (padding[d] > kernel[d] / 2) {
      throw std::invalid_argument(
          fmt::format("AvgPool2d: padding {} is more than half the kernel {}", size2(padding), size2(kernel)));
    }
  }
}

ag::Tensor AvgPool2d::forward(const ag::Tensor& x) { return ag::avg_pool2d(x, kernel_, stride_, padding_); }

std::string AvgPool2d::type_name() const {
  return fmt::format("AvgPool2d(kernel={}, stride={}, padding={})", size2(kernel_), size2(stride_), size2(padding_));
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(ag::Size2 output_size) : output_size_(output_size) {
  if (output_size[0] == 0 || output_size[1] == 0) {
    throw std::invalid_argument(fmt::format("AdaptiveAvgPool2d: output size {} must be positive", size2(output_size)));
  }
}

ag::Tensor AdaptiveAvgPool2d::forward(const ag::Tensor& x) { return ag::adaptive_avg_pool2d(x, output_size_); }

std::string AdaptiveAvgPool2d::type_name() const {
  return fmt::format("AdaptiveAvgPool2d(output_size={})", size2(output_size_));
}

}  // namespace nn
