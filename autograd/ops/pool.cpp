// max_pool2d (NCHW) and the two ops that carry its gradient.
//
// Forward saves, per output, the index of the maximal element inside its (n, c) plane: as PyTorch, the
// window is scanned in row-major order and an element replaces the best so far if it is greater or NaN
// (`val > maxval || isnan(val)`), so ties go to the first maximum and a window holding a NaN gives NaN,
// wherever the NaN is, with its gradient routed to the (last) NaN. The backward is linear in the gradient and routes it by those indices:
//   max_pool2d(x)               = gather(x, idx)          d = scatter(G, idx)
//   max_pool2d_backward(g, idx) = scatter-add of g        d = gather(G, idx)
//   max_pool2d_gather(G, idx)   = G at the indices        d = scatter(G', idx)
// so derivatives of any order are exact (a max is piecewise linear: its own second derivative is zero).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
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

/// Whether `candidate`, met after `best` in a window, replaces it: greater, or NaN.
template <class T>
inline bool replaces(T best, T candidate) {
  return candidate > best || candidate != candidate;
}

/// The exact rule over one window whose first element is in[first]: its maximum, and where it is.
template <class T>
std::pair<T, std::size_t> window_max(const T* in, std::size_t first, const PoolGeometry& g) {
  std::size_t best_at = first;
  T best = in[first];
  for (std::size_t p = 0; p < g.kernel; ++p) {
    for (std::size_t q = 0; q < g.kernel; ++q) {
      std::size_t k = first + p * g.w + q;
      if (replaces(best, in[k])) {
        best = in[k];
        best_at = k;
      }
    }
  }
  return {best, best_at};
}

/// Output row i of one plane by the exact rule (the general loop, and the rare row of 2x2 windows with a NaN).
template <class T>
void pool_row_exact(const T* in, const PoolGeometry& g, std::size_t i, T* out, std::uint32_t* at) {
  for (std::size_t j = 0; j < g.wo; ++j) {
    auto [best, best_at] = window_max(in, i * g.stride * g.w + j * g.stride, g);
    out[i * g.wo + j] = best;
    at[i * g.wo + j] = static_cast<std::uint32_t>(best_at);
  }
}

/// Output row i of one plane of 2x2 windows, free of branches (random data mispredicts every other compare):
/// maxima by std::max, indices by arithmetic on the comparisons, first maximum winning ties. std::max drops
/// NaN, so the row also notes whether a window held one; returns true if none did (else the row must be
/// redone by the exact rule). Selects that keep NaN here would cost 3x: they do not vectorise as well.
template <class T>
bool pool_row_2x2(const T* in, const PoolGeometry& g, std::size_t i, T* out, std::uint32_t* at) {
  const T* __restrict r0 = in + 2 * i * g.w;
  const T* __restrict r1 = r0 + g.w;
  T* __restrict o = out + i * g.wo;
  std::uint32_t* __restrict a = at + i * g.wo;
  auto base = static_cast<std::uint32_t>(2 * i * g.w), width = static_cast<std::uint32_t>(g.w);
  std::uint32_t nan_seen = 0;
  for (std::size_t j = 0; j < g.wo; ++j) {
    T ta = r0[2 * j], tb = r0[2 * j + 1], ba = r1[2 * j], bb = r1[2 * j + 1];
    std::uint32_t top_right = ta < tb, bottom_right = ba < bb;
    T top = std::max(ta, tb), bottom = std::max(ba, bb);
    std::uint32_t lower = top < bottom;
    o[j] = std::max(top, bottom);
    a[j] = base + static_cast<std::uint32_t>(2 * j) + top_right + lower * (width + bottom_right - top_right);
    nan_seen |= static_cast<std::uint32_t>(ta != ta) | static_cast<std::uint32_t>(tb != tb) |
                static_cast<std::uint32_t>(ba != ba) | static_cast<std::uint32_t>(bb != bb);
  }
  return nan_seen == 0;
}

template <class T>
void pool_forward(const T* x, const PoolGeometry& g, T* y, std::uint32_t* index) {
  const bool two_by_two = g.kernel == 2 && g.stride == 2;
  for (std::size_t plane = 0; plane < g.planes(); ++plane) {
    const T* in = x + plane * g.in_plane();
    T* out = y + plane * g.out_plane();
    std::uint32_t* at = index + plane * g.out_plane();
    for (std::size_t i = 0; i < g.ho; ++i) {
      if (!two_by_two || !pool_row_2x2(in, g, i, out, at)) pool_row_exact(in, g, i, out, at);
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
