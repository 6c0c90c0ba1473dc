#include "autograd/detail/op_common.hpp"

namespace ag::detail {

void check_defined(const char* op, const Tensor& x) {
  if (!x.defined()) fail(op, "undefined input tensor");
}

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  if (a.dtype() != b.dtype()) fail(op, "dtypes differ: {} and {}", a.describe(), b.describe());
}

std::size_t normalise_axis(const char* op, int axis, const Tensor& x) {
  int r = static_cast<int>(x.rank());
  int normalised = axis < 0 ? axis + r : axis;
  if (normalised < 0 || normalised >= r) fail(op, "axis {} out of range for a tensor of shape {}", axis, x.shape().str());
  return static_cast<std::size_t>(normalised);
}

}  // namespace ag::detail
