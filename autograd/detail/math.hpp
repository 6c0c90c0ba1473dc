// The transcendental elementwise functions as vectorised loops (xsimd's exp, log, tanh), compiled in
// math.cpp alone.
#pragma once

#include "autograd/tensor.hpp"

namespace ag::detail {

enum class Math { exp, log, sqrt, sigmoid, tanh };

/// A new tensor f(x) elementwise (sigmoid: 1 / (1 + exp(-x))); errors name `op`. Records nothing.
Tensor elementwise_math(const char* op, Math f, const Tensor& x);

}  // namespace ag::detail
