#include "autograd/detail/math.hpp"

#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "autograd/detail/op_common.hpp"

namespace ag::detail {

namespace {

/// y = f(x): whole SIMD batches with xsimd's functions, the tail with the standard library's.
template <class T, class Batch, class Scalar>
void map(const T* __restrict x, T* __restrict y, std::size_t n, Batch batch_f, Scalar scalar_f) {
  using B = xsimd::batch<T>;
  std::size_t i = 0;
  for (; i + B::size <= n; i += B::size) batch_f(B::load_unaligned(x + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = scalar_f(x[i]);
}

template <class T>
void apply(Math f, const T* x, T* y, std::size_t n) {
  switch (f) {
    case Math::exp:
      return map(x, y, n, [](auto v) { return xsimd::exp(v); }, [](T v) { return std::exp(v); });
    case Math::log:
      return map(x, y, n, [](auto v) { return xsimd::log(v); }, [](T v) { return std::log(v); });
    case Math::sqrt:
      return map(x, y, n, [](auto v) { return xsimd::sqrt(v); }, [](T v) { return std::sqrt(v); });
    case Math::sigmoid:
      return map(x, y, n, [](auto v) { return T(1) / (T(1) + xsimd::exp(-v)); },
                 [](T v) { return T(1) / (T(1) + std::exp(-v)); });
    case Math::tanh:
      return map(x, y, n, [](auto v) { return xsimd::tanh(v); }, [](T v) { return std::tanh(v); });
  }
}

}  // namespace

Tensor elementwise_math(const char* op, Math f, const Tensor& x) {
  check_defined(op, x);
  Tensor out = make_tensor(x.shape(), x.dtype(), op);
  dispatch(x.dtype(), [&]<class T>() { apply<T>(f, x.data<T>(), out.data<T>(), x.numel()); });
  return out;
}

}  // namespace ag::detail
