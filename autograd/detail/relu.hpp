// relu's kernels, shared by relu (autograd/ops/activation.cpp) and the ops that fuse it (conv2d_max_pool2d).
// As PyTorch, NaN included: the forward is threshold(x, 0, 0) = (x <= 0 ? 0 : x), so relu(NaN) = NaN; the
// backward is threshold_backward(g, x, 0) = (x <= 0 ? 0 : g). NaN <= 0 is false in both. Each loop compiles
// to one compare and one blend per vector.
#pragma once

#include <cstddef>

#include "autograd/tensor.hpp"

namespace ag::detail {

/// out[i] = x[i] <= 0 ? 0 : x[i] (out may be x).
template <class T>
void relu_kernel(const T* x, T* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] <= T(0) ? T(0) : x[i];
}

/// out[i] = x[i] <= 0 ? 0 : v[i].
template <class T>
void threshold_at_zero(const T* __restrict x, const T* __restrict v, T* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] <= T(0) ? T(0) : v[i];
}

/// relu's backward at x, or at its output relu(x) (<= 0 exactly where x is): threshold_at_zero(x, g) as a new
/// tensor; while a graph is being built, g times a constant mask (relu's second derivative is zero).
Tensor relu_backward(const Tensor& g, const Tensor& x);

}  // namespace ag::detail
