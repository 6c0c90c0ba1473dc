#include "optim/hypergradient.hpp"

namespace optim::detail {

double hypergradient(const ag::Tensor& grad, const ag::Tensor& param, const ag::Tensor& direction,
                     double coupled) {
  // Eight partial sums (one vector of doubles): a strict left-to-right sum would wait on one add's latency
  // per element.
  double partial[8] = {};
  const std::size_t n = grad.numel();
  dispatch(grad.dtype(), [&]<class T>() {
    const T* __restrict g = grad.data<T>();
    const T* __restrict w = param.data<T>();
    const T* __restrict d = direction.data<T>();
    auto term = [&](std::size_t i) {
      return (static_cast<double>(g[i]) + coupled * static_cast<double>(w[i])) * static_cast<double>(d[i]);
    };
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      for (std::size_t k = 0; k < 8; ++k) partial[k] += term(i + k);
    }
    for (; i < n; ++i) partial[0] += term(i);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return -total;
}

}  // namespace optim::detail
