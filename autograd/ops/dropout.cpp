// Functional dropout: a random mask, drawn from the caller's generator, times x.
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  detail::check_defined("dropout", x);
  if (!(p >= 0.0 && p <= 1.0)) detail::fail("dropout", "p = {} for {} is outside [0, 1]", p, x.describe());
  if (!training || p == 0.0) return x;
  // As nn::Dropout: keep where uniform01() < 1 - p, scaled by 1 / (1 - p); p = 1 keeps nothing.
  double keep = 1.0 - p, scale = p == 1.0 ? 0.0 : 1.0 / keep;
  Tensor mask = detail::make_tensor(x.shape(), x.dtype(), "dropout");
  detail::dispatch(x.dtype(), [&]<class T>() {
    T* pm = mask.data<T>();
    for (std::size_t i = 0, n = mask.numel(); i < n; ++i) pm[i] = gen.uniform01() < keep ? static_cast<T>(scale) : T(0);
  });
  return mul(x, mask);
}

}  // namespace ag
