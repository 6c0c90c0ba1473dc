// sign(x) for the update loops of the sign-based methods (rprop, lion): 1, -1, ±0 for ±0, and NaN for NaN,
// so that a NaN gradient reaches the weights instead of being read as "no move".
#pragma once

namespace optim::detail {

template <class T>
inline T sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);
}

}  // namespace optim::detail
