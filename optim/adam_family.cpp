#include "optim/adam_family.hpp"

#include <algorithm>
#include <cmath>

namespace optim::detail {

namespace {

template <class T, bool inside, Numerator numerator, SecondMoment second_moment>
void adam_family_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v,
                        T* __restrict v_max, std::size_t n, const AdamFamilyStep& s) {
  const T lr = T(s.lr), b1 = T(s.beta1), b2 = T(s.beta2), c2 = T(s.c2), eps = T(s.eps), coupled = T(s.coupled),
          shrink = T(s.shrink);
  const T one_minus_b1 = T(1) - b1, step = lr * T(s.c1);
  for (std::size_t i = 0; i < n; ++i) {
    const auto [gi, mi, vi] = update_moments(g[i], w[i], m[i], v[i], coupled, b1, b2);
    T second;
    if constexpr (second_moment == SecondMoment::average) {
      second = vi * c2;
    } else if constexpr (second_moment == SecondMoment::max_of_raw) {
      const T highest = std::max(v_max[i], vi);
      v_max[i] = highest;
      second = highest * c2;
    } else {
      const T highest = std::max(v_max[i], vi * c2);
      v_max[i] = highest;
      second = highest;
    }
    const T denom = inside ? std::sqrt(second + eps) : std::sqrt(second) + eps;
    const T top = numerator == Numerator::nesterov ? b1 * mi + one_minus_b1 * gi : mi;
    w[i] = shrink * w[i] - step * top / denom;
  }
}

template <class T>
using Kernel = void (*)(T*, const T*, T*, T*, T*, std::size_t, const AdamFamilyStep&);

/// The compiled loop for the run-time choices (each choice a template argument).
template <class T, bool inside, Numerator numerator>
Kernel<T> kernel_for(SecondMoment second) {
  switch (second) {
    case SecondMoment::max_of_raw: return adam_family_kernel<T, inside, numerator, SecondMoment::max_of_raw>;
    case SecondMoment::max_of_corrected:
      return adam_family_kernel<T, inside, numerator, SecondMoment::max_of_corrected>;
    case SecondMoment::average: break;
  }
  return adam_family_kernel<T, inside, numerator, SecondMoment::average>;
}

template <class T>
Kernel<T> kernel_for(const AdamFamilyStep& s) {
  bool inside = s.eps_placement == Eps::inside_sqrt;
  if (s.numerator == Numerator::nesterov) {
    return inside ? kernel_for<T, true, Numerator::nesterov>(s.second)
                  : kernel_for<T, false, Numerator::nesterov>(s.second);
  }
  return inside ? kernel_for<T, true, Numerator::momentum>(s.second)
                : kernel_for<T, false, Numerator::momentum>(s.second);
}

}  // namespace

void adam_family_step(const AdamFamilyStep& step, ag::Tensor& w, const ag::Tensor& g, ag::Tensor& m, ag::Tensor& v,
                      ag::Tensor* v_max) {
  dispatch(w.dtype(), [&]<class T>() {
    kernel_for<T>(step)(w.data<T>(), g.data<T>(), m.data<T>(), v.data<T>(), v_max ? v_max->data<T>() : nullptr,
                        w.numel(), step);
  });
}

}  // namespace optim::detail
