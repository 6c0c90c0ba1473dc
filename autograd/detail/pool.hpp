// 2x2 max pooling (stride 2, no padding) of planes laid out by another op, for ops that fuse it
// (conv2d_max_pool2d pools each image's convolution while it is in cache). Same rule as max_pool2d, bit for
// bit: the first maximum of a window in row-major order wins ties, a NaN wins over any number.
#pragma once

#include <cstdint>
#include <memory>

#include "autograd/shape.hpp"
#include "autograd/tensor.hpp"

namespace ag {
class Storage;
}

namespace ag::detail {

/// `count` planes of h x w elements, rows `ld` elements apart (ld >= w), planes `stride` elements apart.
struct StridedPlanes {
  std::size_t count, h, w, ld, stride;
};

/// out (count, h / 2, w / 2), contiguous: each 2x2 window's maximum; at: its position r w + c in an h x w
/// plane (as max_pool2d's saved indices). Planes of at most 2^32 elements; float and double.
template <class T>
void max_pool2x2_planes(const T* in, const StridedPlanes& planes, T* out, std::uint32_t* at);

/// The gradient of max_pool2x2_planes: g (count, h / 2, w / 2) at each window's maximum, 0 at every other
/// element of each plane's h x w (rows ld apart; nothing outside them is written).
template <class T>
void max_unpool2x2_planes(const T* g, const std::uint32_t* at, const StridedPlanes& planes, T* dx);

/// One uint32 index per output of a pooling to `outputs` outputs, from the storage cache.
std::shared_ptr<Storage> pool_index_block(std::size_t outputs, const char* op);

/// max_pool2d(x, 2)'s backward for a pooling done elsewhere (`index` from max_pool2x2_planes over the planes
/// of an x_shape = (N, C, H, W) tensor): the recorded op, differentiable to every order as max_pool2d's own.
Tensor max_pool2x2_backward(const Tensor& grad, const Shape& x_shape, const std::shared_ptr<Storage>& index);

}  // namespace ag::detail
