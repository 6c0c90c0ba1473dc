// Index arithmetic for NumPy broadcasting over shapes of rank <= 4.
#pragma once

#include <array>

#include "autograd/shape.hpp"

namespace ag::detail {

using Index4 = std::array<std::size_t, 4>;

/// `shape` padded on the left with 1s to four axes.
inline Index4 padded_extents(const Shape& shape) {
  Index4 extents{1, 1, 1, 1};
  std::size_t offset = 4 - shape.rank();
  for (std::size_t d = 0; d < shape.rank(); ++d) extents[offset + d] = shape[d];
  return extents;
}

/// Row-major strides of `in` seen through `out`'s (padded) axes: 0 where `in` is broadcast.
inline Index4 broadcast_strides(const Shape& in, const Shape& out) {
  Index4 in_extents = padded_extents(in);
  Index4 out_extents = padded_extents(out);
  Index4 strides{};
  std::size_t stride = 1;
  for (int d = 3; d >= 0; --d) {
    strides[d] = (in_extents[d] == 1 && out_extents[d] != 1) ? 0 : stride;
    stride *= in_extents[d];
  }
  return strides;
}

/// Calls visit(out_offset, offset_a, offset_b) for every element of `out`, in row-major order.
template <class Visit>
void for_each_broadcast(const Shape& out, const Index4& stride_a, const Index4& stride_b, Visit&& visit) {
  Index4 e = padded_extents(out);
  std::size_t o = 0;
  for (std::size_t i0 = 0; i0 < e[0]; ++i0) {
    for (std::size_t i1 = 0; i1 < e[1]; ++i1) {
      for (std::size_t i2 = 0; i2 < e[2]; ++i2) {
        std::size_t base_a = i0 * stride_a[0] + i1 * stride_a[1] + i2 * stride_a[2];
        std::size_t base_b = i0 * stride_b[0] + i1 * stride_b[1] + i2 * stride_b[2];
        for (std::size_t i3 = 0; i3 < e[3]; ++i3, ++o) {
          visit(o, base_a + i3 * stride_a[3], base_b + i3 * stride_b[3]);
        }
      }
    }
  }
}

}  // namespace ag::detail
