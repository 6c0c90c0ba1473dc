// A tensor seen around one axis: (outer, extent, inner), the layout every op along an axis loops over.
#pragma once

#include "autograd/shape.hpp"

namespace ag::detail {

/// x seen as (outer, extent, inner) around `axis`: element (o, k, i) is at (o * extent + k) * inner + i.
struct AxisSplit {
  std::size_t outer = 1, extent = 1, inner = 1;
};

inline AxisSplit split_at(const Shape& shape, std::size_t axis) {
  AxisSplit s;
  for (std::size_t d = 0; d < axis; ++d) s.outer *= shape[d];
  s.extent = shape[axis];
  for (std::size_t d = axis + 1; d < shape.rank(); ++d) s.inner *= shape[d];
  return s;
}

/// `shape` without `axis`, or with it at extent 1 (keepdims).
inline Shape reduced_shape(const Shape& shape, std::size_t axis, bool keepdims) {
  Shape out;
  for (std::size_t d = 0; d < shape.rank(); ++d) {
    if (d != axis) {
      out.push_back(shape[d]);
    } else if (keepdims) {
      out.push_back(1);
    }
  }
  return out;
}

/// `shape` with `axis` at extent `extent`.
inline Shape with_extent(Shape shape, std::size_t axis, std::size_t extent) {
  shape[axis] = extent;
  return shape;
}

}  // namespace ag::detail
