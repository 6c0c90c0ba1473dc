// max_pool2d (NCHW) and the two ops that carry its gradient.
//
// Forward saves, per output, the index of the maximal element inside its (n, c) plane (the first maximum
// of the window in row-major order). The backward is linear in the gradient and routes it by those indices:
//   max_pool2d(x)               = gather(x, idx)          d = scatter(G, idx)
//   max_pool2d_backward(g, idx) = scatter-add of g        d = gather(G, idx)
//   max_pool2d_gather(G, idx)   = G at the indices        d = scatter(G', idx)
// so derivatives of any order are exact (a max is piecewise linear: its own second derivative is zero).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/detail/xt.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

namespace {

struct PoolGeometry {
  std::size_t n, c, h, w;
  std::size_t kernel, stride;
  std::size_t ho, wo;
  std::size_t planes() const { return n * c; }
  std::size_t in_plane() const { return h * w; }
  std::size_t out_plane() const { return ho * wo; }
  Shape x_shape() const { return Shape{n, c, h, w}; }
  Shape y_shape() const { return Shape{n, c, ho, wo}; }
};

/// The argmax of every output, as an index inside its input plane. The block comes from the per-thread
/// storage cache, so a training loop whose shapes repeat allocates nothing for it after the first step.
struct Routing {
  PoolGeometry geometry;
  std::shared_ptr<Storage> storage;
  std::uint32_t* index() const { return static_cast<std::uint32_t*>(storage->data()); }
};

PoolGeometry make_geometry(const Tensor& x, std::size_t kernel, std::size_t stride) {
  detail::check_defined("max_pool2d", x);
  if (x.rank() != 4) fail("max_pool2d", "input must be 4-D (N, C, H, W), got {}", x.describe());
  if (kernel == 0) fail("max_pool2d", "kernel must be positive (input {})", x.describe());
  if (stride == 0) stride = kernel;
  if (kernel > x.dim(2) || kernel > x.dim(3)) {
    fail("max_pool2d", "window {}x{} is larger than the input {}", kernel, kernel, x.describe());
  }
  if (x.dim(2) * x.dim(3) > UINT32_MAX) fail("max_pool2d", "input planes too large: {}", x.describe());
  PoolGeometry g{x.dim(0), x.dim(1), x.dim(2), x.dim(3), kernel, stride, 0, 0};
  g.ho = (g.h - kernel) / stride + 1;
  g.wo = (g.w - kernel) / stride + 1;
  return g;
}

template <class T>
void pool_forward(const T* x, const PoolGeometry& g, T* y, std::uint32_t* index) {
  for (std::size_t plane = 0; plane < g.planes(); ++plane) {
    const T* in = x + plane * g.in_plane();
    T* out = y + plane * g.out_plane();
    std::uint32_t* at = index + plane * g.out_plane();
    if (g.kernel == 2 && g.stride == 2) {
      // The common 2x2 window, free of branches (random data mispredicts every other compare): maxima by
      // std::max, indices by arithmetic on the comparisons. First maximum wins ties, as in the general loop.
      for (std::size_t i = 0; i < g.ho; ++i) {
        const T* __restrict r0 = in + 2 * i * g.w;
        const T* __restrict r1 = r0 + g.w;
        T* __restrict o = out + i * g.wo;
        std::uint32_t* __restrict a = at + i * g.wo;
        auto base = static_cast<std::uint32_t>(2 * i * g.w), width = static_cast<std::uint32_t>(g.w);
        for (std::size_t j = 0; j < g.wo; ++j) {
          T ta = r0[2 * j], tb = r0[2 * j + 1], ba = r1[2 * j], bb = r1[2 * j + 1];
          std::uint32_t top_right = ta < tb, bottom_right = ba < bb;
          T top = std::max(ta, tb), bottom = std::max(ba, bb);
          std::uint32_t lower = top < bottom;
          o[j] = std::max(top, bottom);
          a[j] = base + static_cast<std::uint32_t>(2 * j) + top_right + lower * (width + bottom_right - top_right);
        }
      }
      continue;
    }
    for (std::size_t i = 0; i < g.ho; ++i) {
      for (std::size_t j = 0; j < g.wo; ++j) {
        std::size_t first = i * g.stride * g.w + j * g.stride;
        std::size_t best_at = first;
        T best = in[first];
        for (std::size_t p = 0; p < g.kernel; ++p) {
          for (std::size_t q = 0; q < g.kernel; ++q) {
            std::size_t k = first + p * g.w + q;
            bool greater = best < in[k];
            best_at = greater ? k : best_at;
            best = std::max(best, in[k]);
          }
        }
        out[i * g.wo + j] = best;
        at[i * g.wo + j] = static_cast<std::uint32_t>(best_at);
      }
    }
  }
}

/// dx = 0, then dx[plane, index[o]] += g[plane, o] (overlapping windows add up). Plane by plane, so the
/// zeroed plane is still in cache when the gradient lands on it.
template <class T>
void pool_scatter(const T* grad, const PoolGeometry& g, const std::uint32_t* index, T* dx) {
  for (std::size_t plane = 0; plane < g.planes(); ++plane) {
    const T* __restrict src = grad + plane * g.out_plane();
    const std::uint32_t* __restrict at = index + plane * g.out_plane();
    T* __restrict out = dx + plane * g.in_plane();
    std::fill_n(out, g.in_plane(), T(0));
    for (std::size_t o = 0; o < g.out_plane(); ++o) out[at[o]] += src[o];
  }
}

/// y[plane, o] = x[plane, index[o]].
template <class T>
void pool_gather(const T* x, const PoolGeometry& g, const std::uint32_t* index, T* y) {
  for (std::size_t plane = 0; plane < g.planes(); ++plane) {
    const T* in = x + plane * g.in_plane();
    const std::uint32_t* at = index + plane * g.out_plane();
    T* out = y + plane * g.out_plane();
    for (std::size_t o = 0; o < g.out_plane(); ++o) out[o] = in[at[o]];
  }
}

Tensor max_pool2d_gather(const Tensor& x, const Routing& routing);

/// The gradient of max_pool2d: g (N, C, Ho, Wo) routed to the argmax elements of an (N, C, H, W) tensor.
Tensor max_pool2d_backward(const Tensor& grad, const Routing& routing) {
  const PoolGeometry& g = routing.geometry;
  if (!(grad.shape() == g.y_shape())) {
    fail("max_pool2d_backward", "gradient {} does not match the pooled shape {}", grad.describe(), g.y_shape().str());
  }
  Tensor dx = detail::make_tensor(g.x_shape(), grad.dtype(), "max_pool2d_backward");
  dispatch(grad.dtype(), [&]<class T>() { pool_scatter(grad.data<T>(), g, routing.index(), dx.data<T>()); });
  return record("max_pool2d_backward", dx, {grad}, [routing](const Tensor& gx, NeedsGrad) {
    return std::vector<Tensor>{max_pool2d_gather(gx, routing)};
  });
}

/// x (N, C, H, W) read at the saved argmax indices: (N, C, Ho, Wo). max_pool2d(x) = gather(x).
Tensor max_pool2d_gather(const Tensor& x, const Routing& routing) {
  const PoolGeometry& g = routing.geometry;
  if (!(x.shape() == g.x_shape())) {
    fail("max_pool2d_gather", "input {} does not match the pooled input shape {}", x.describe(), g.x_shape().str());
  }
  Tensor y = detail::make_tensor(g.y_shape(), x.dtype(), "max_pool2d_gather");
  dispatch(x.dtype(), [&]<class T>() { pool_gather(x.data<T>(), g, routing.index(), y.data<T>()); });
  return record("max_pool2d_gather", y, {x}, [routing](const Tensor& gy, NeedsGrad) {
    return std::vector<Tensor>{max_pool2d_backward(gy, routing)};
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride) {
  PoolGeometry g = make_geometry(x, kernel, stride);
  Tensor y = detail::make_tensor(g.y_shape(), x.dtype(), "max_pool2d");
  // The uint32 indices, one per output, in the storage of an f32 tensor of as many elements (4 bytes each):
  // an allocation failure is reported like any other.
  Routing routing{g, detail::make_tensor(Shape{std::max<std::size_t>(1, y.numel())}, DType::f32, "max_pool2d")
                         .impl()->storage};
  dispatch(x.dtype(), [&]<class T>() { pool_forward(x.data<T>(), g, y.data<T>(), routing.index()); });
  return record("max_pool2d", y, {x}, [routing](const Tensor& gy, NeedsGrad) {
    return std::vector<Tensor>{max_pool2d_backward(gy, routing)};
  });
}

}  // namespace ag
