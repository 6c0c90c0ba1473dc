// The general path of conv2d (autograd/ops/conv.cpp), reachable on its own: tests compare it with the fast
// kernels on the cases both handle.
#pragma once

#include "autograd/ops.hpp"

namespace ag::detail {

/// ag::conv2d's Size2 overload, always through im2col + GEMM per group (never the fast kernels).
Tensor conv2d_general(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
                      Size2 dilation, std::size_t groups);

}  // namespace ag::detail
