// Index arithmetic for NumPy broadcasting over shapes of rank <= kMaxRank.
#pragma once

#include <array>

#include "autograd/shape.hpp"

namespace ag::detail {

/// Extents, strides or a position over kMaxRank axes (shapes of lower rank padded on the left).
using Index = std::array<std::size_t, kMaxRank>;

/// `shape` padded on the left with 1s to kMaxRank axes.
inline Index padded_extents(const Shape& shape) {
  Index extents;
  extents.fill(1);
  std::size_t offset = kMaxRank - shape.rank();
  for (std::size_t d = 0; d < shape.rank(); ++d) extents[offset + d] = shape[d];
  return extents;
}

/// Row-major strides of `in` seen through `out`'s (padded) axes: 0 where `in` is broadcast.
inline Index broadcast_strides(const Shape& in, const Shape& out) {
  Index in_extents = padded_extents(in);
  Index out_extents = padded_extents(out);
  Index strides{};
  std::size_t stride = 1;
  for (std::size_t d = kMaxRank; d-- > 0;) {
    strides[d] = (in_extents[d] == 1 && out_extents[d] != 1) ? 0 : stride;
    stride *= in_extents[d];
  }
  return strides;
}

/// Calls visit(out_offset, offset_a, offset_b) for every element of `out`, in row-major order: an inner loop
/// over the last axis, an odometer over the others (their offsets updated by addition, never recomputed).
template <class Visit>
void for_each_broadcast(const Shape& out, const Index& stride_a, const Index& stride_b, Visit&& visit) {
  constexpr std::size_t last = kMaxRank - 1;
  Index e = padded_extents(out);
  std::size_t rows = 1;
  for (std::size_t d = 0; d < last; ++d) rows *= e[d];
  if (rows == 0 || e[last] == 0) return;
  Index at{};
  std::size_t base_a = 0, base_b = 0, o = 0;
  for (std::size_t row = 0; row < rows; ++row) {
    for (std::size_t i = 0; i < e[last]; ++i, ++o) visit(o, base_a + i * stride_a[last], base_b + i * stride_b[last]);
    for (std::size_t d = last; d-- > 0;) {  // next row: carry through the odometer
      base_a += stride_a[d];
      base_b += stride_b[d];
      if (++at[d] < e[d]) break;
      base_a -= at[d] * stride_a[d];
      base_b -= at[d] * stride_b[d];
      at[d] = 0;
    }
  }
}

/// Calls visit(offset, position) for every position of `shape` in row-major order (position padded on the left
/// to kMaxRank axes, as padded_extents).
template <class Visit>
void for_each_position(const Shape& shape, Visit&& visit) {
  Index e = padded_extents(shape);
  std::size_t n = shape.numel();
  Index at{};
  for (std::size_t o = 0; o < n; ++o) {
    visit(o, static_cast<const Index&>(at));
    for (std::size_t d = kMaxRank; d-- > 0;) {
      if (++at[d] < e[d]) break;
      at[d] = 0;
    }
  }
}

}  // namespace ag::detail
