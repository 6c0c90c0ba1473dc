// max_pool2d (NCHW) and the two ops that carry its gradient; avg_pool2d and adaptive_avg_pool2d, linear, and
// the spread that is the adjoint of each (avg_spread), each the other's derivative.
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
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "autograd/detail/pool.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

namespace {

struct PoolGeometry {
  std::size_t n, c, h, w;
  std::size_t kh, kw, sh, sw, ph, pw;
  std::size_t ho, wo;
  /// Elements between the input's rows: w (also when left out of a brace initialiser), except for planes
  /// laid out by another op (2x2 kernels only). Indices are always r w + c.
  std::size_t ld = w;
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

/// The windows of max_pool2d and avg_pool2d: x 4-D, kernel positive, stride 0 meaning the kernel, padding at
/// most half the kernel (so that no window is all padding), the window inside the padded input.
PoolGeometry make_geometry(const char* op, const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  detail::check_defined(op, x);
  if (x.rank() != 4) fail(op, "input must be 4-D (N, C, H, W), got {}", x.describe());
  if (kernel[0] == 0 || kernel[1] == 0) fail(op, "kernel must be positive (input {})", x.describe());
  for (std::size_t d : {0, 1}) {
    if (stride[d] == 0) stride[d] = kernel[d];
    if (padding[d] > kernel[d] / 2) {
      fail(op, "padding {}x{} is more than half the window {}x{} (input {})", padding[0], padding[1], kernel[0],
           kernel[1], x.describe());
    }
    // 2 padding <= kernel fits; the padded extent is checked before it is computed.
    if (x.dim(2 + d) > SIZE_MAX - 2 * padding[d] || kernel[d] > x.dim(2 + d) + 2 * padding[d]) {
      fail(op, "window {}x{} is larger than the input {}{}", kernel[0], kernel[1], x.describe(),
           padding[0] + padding[1] > 0 ? fmt::format(" padded by {}x{}", padding[0], padding[1]) : "");
    }
  }
  PoolGeometry g{x.dim(0), x.dim(1), x.dim(2),  x.dim(3),  kernel[0], kernel[1], stride[0], stride[1],
                 padding[0], padding[1], 0, 0};
  g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}

/// 2x2 windows, stride 2, no padding: the case with fast kernels.
bool two_by_two(const PoolGeometry& g) {
  return g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0;
}

/// The input rows (or columns) [first, last) under output row i's window, the padding cut away; never empty.
std::pair<std::size_t, std::size_t> window_span(std::size_t i, std::size_t stride, std::size_t kernel, std::size_t pad,
                                                std::size_t extent) {
  std::size_t start = i * stride;  // in the padded input
  return {start < pad ? 0 : start - pad, std::min(start + kernel - pad, extent)};
}

/// Whether `candidate`, met after `best` in a window, replaces it: greater, or NaN.
template <class T>
inline bool replaces(T best, T candidate) {
  return candidate > best || candidate != candidate;
}

/// The exact rule over output (i, j)'s window, padding (-inf) left out: its maximum, and where it is.
template <class T>
std::pair<T, std::size_t> window_max(const T* in, std::size_t i, std::size_t j, const PoolGeometry& g) {
  auto [r0, r1] = window_span(i, g.sh, g.kh, g.ph, g.h);
  auto [c0, c1] = window_span(j, g.sw, g.kw, g.pw, g.w);
  std::size_t best_at = r0 * g.w + c0;
  T best = in[r0 * g.ld + c0];
  for (std::size_t r = r0; r < r1; ++r) {
    for (std::size_t c = c0; c < c1; ++c) {
      if (replaces(best, in[r * g.ld + c])) {
        best = in[r * g.ld + c];
        best_at = r * g.w + c;
      }
    }
  }
  return {best, best_at};
}

/// Output row i of one plane by the exact rule (the general loop, and the rare row of 2x2 windows with a NaN).
template <class T>
void pool_row_exact(const T* in, const PoolGeometry& g, std::size_t i, T* out, std::uint32_t* at) {
  for (std::size_t j = 0; j < g.wo; ++j) {
    auto [best, best_at] = window_max(in, i, j, g);
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
  const T* __restrict r0 = in + 2 * i * g.ld;
  const T* __restrict r1 = r0 + g.ld;
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

#if defined(__AVX2__)
// pool_row_2x2 for float rows, 8 outputs at a time with AVX2. The compiler leaves rows as short as these
// networks' (14 and 7 outputs) to scalar code, as its vector loop needs 16 outputs and the columns must be
// split into even and odd first. Same arithmetic and the same result, bit for bit.

/// Lanes [0, count) set, as a mask of 8 32-bit lanes (count may be anything).
inline __m256i first_lanes(std::ptrdiff_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::clamp<std::ptrdiff_t>(count, 0, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// The first element of windows j, ..., j + 7 of a row pair whose top row starts at `base`: base + 2j + 2 lane.
inline __m256i window_starts(std::uint32_t base, std::size_t j) {
  return _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(base + 2 * j)),
                          _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
}

/// Calls block(j, n) over windows [0, count) of a row, n <= 8: blocks of 8, the last one overlapping the one
/// before (written twice, identically: faster than masking), or, below 8 windows, one partial block.
template <class Block>
void for_each_block(std::size_t count, Block block) {
  if (count < 8) return block(0, count);
  std::size_t j = 0;
  for (; j + 8 <= count; j += 8) block(j, 8);
  if (j < count) block(count - 8, 8);
}

/// Even and odd elements of p[0, 2n): two vectors of 8 (lanes from n on are 0; nothing past p + 2n is read).
inline void split_even_odd(const float* p, std::size_t n, __m256& even, __m256& odd) {
  __m256 a, b;
  if (n == 8) {
    a = _mm256_loadu_ps(p);
    b = _mm256_loadu_ps(p + 8);
  } else {
    const auto count = static_cast<std::ptrdiff_t>(2 * n);
    a = _mm256_maskload_ps(p, first_lanes(count));
    b = count > 8 ? _mm256_maskload_ps(p + 8, first_lanes(count - 8)) : _mm256_setzero_ps();
  }
  // shuffle_ps works within 128-bit lanes; the 64-bit permute puts the lanes' halves in order.
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

/// Outputs [j, j + n) of a row pair (r0 on top of r1), n <= 8: maxima, and indices as in pool_row_2x2
/// (`base` is the top row's start in the plane). Returns nonzero if a window held a NaN.
inline int pool_block(const float* r0, const float* r1, std::size_t j, std::size_t n, std::uint32_t base,
                      std::uint32_t width, float* o, std::uint32_t* a) {
  __m256 ta, tb, ba, bb;
  split_even_odd(r0 + 2 * j, n, ta, tb);
  split_even_odd(r1 + 2 * j, n, ba, bb);
  // std::max(a, b) keeps a on a tie (+0 against -0 included), _mm256_max_ps(a, b) keeps b: operands swapped.
  const __m256 top = _mm256_max_ps(tb, ta), bottom = _mm256_max_ps(bb, ba);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i top_right = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(ta, tb, _CMP_LT_OQ)), one);
  const __m256i bottom_right = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(ba, bb, _CMP_LT_OQ)), one);
  const __m256i lower = _mm256_castps_si256(_mm256_cmp_ps(top, bottom, _CMP_LT_OQ));
  const __m256i column = window_starts(base, j);
  const __m256i down = _mm256_and_si256(
      lower, _mm256_sub_epi32(_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(width)), bottom_right), top_right));
  const __m256 best = _mm256_max_ps(bottom, top);
  const __m256i at = _mm256_add_epi32(_mm256_add_epi32(column, top_right), down);
  if (n == 8) {
    _mm256_storeu_ps(o + j, best);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a + j), at);
  } else {
    const __m256i mask = first_lanes(static_cast<std::ptrdiff_t>(n));
    _mm256_maskstore_ps(o + j, mask, best);
    _mm256_maskstore_epi32(reinterpret_cast<int*>(a + j), mask, at);
  }
  return _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(ta, tb, _CMP_UNORD_Q), _mm256_cmp_ps(ba, bb, _CMP_UNORD_Q)));
}

/// pool_row_2x2 of a float row, block by block.
inline bool pool_row_2x2_vector(const float* in, const PoolGeometry& g, std::size_t i, float* out, std::uint32_t* at) {
  const float* r0 = in + 2 * i * g.ld;
  const float* r1 = r0 + g.ld;
  float* o = out + i * g.wo;
  std::uint32_t* a = at + i * g.wo;
  const auto base = static_cast<std::uint32_t>(2 * i * g.w), width = static_cast<std::uint32_t>(g.w);
  int nan = 0;
  for_each_block(g.wo, [&](std::size_t j, std::size_t n) { nan |= pool_block(r0, r1, j, n, base, width, o, a); });
  return nan == 0;
}
#endif

/// One output row of 2x2 windows (stride 2, no padding); false if a window held a NaN.
template <class T>
bool pool_row_2x2_fast(const T* in, const PoolGeometry& g, std::size_t i, T* out, std::uint32_t* at) {
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    return pool_row_2x2_vector(in, g, i, out, at);
  }
#endif
  return pool_row_2x2(in, g, i, out, at);
}

/// Planes `in_stride` apart into contiguous outputs and indices.
template <class T>
void pool_planes(const T* x, const PoolGeometry& g, std::size_t in_stride, T* y, std::uint32_t* index) {
  const bool fast = two_by_two(g);
  for (std::size_t plane = 0; plane < g.planes(); ++plane) {
    const T* in = x + plane * in_stride;
    T* out = y + plane * g.out_plane();
    std::uint32_t* at = index + plane * g.out_plane();
    for (std::size_t i = 0; i < g.ho; ++i) {
      if (!fast || !pool_row_2x2_fast(in, g, i, out, at)) pool_row_exact(in, g, i, out, at);
    }
  }
}

#if defined(__AVX2__)
/// Rows 2i and 2i + 1 of a float plane's gradient under windows [j, j + n) of output row i (2x2 windows,
/// stride 2, n <= 8): each window's gradient at its index, 0 at its three other elements. Written whole, with
/// no zeroing first: the same values as the scatter below, bit for bit (0 + g, so a gradient of -0 lands
/// as +0).
inline void unpool_block(const float* grad, const std::uint32_t* at, std::size_t j, std::size_t n,
                         std::uint32_t base, std::uint32_t width, float* top, float* bottom) {
  __m256 gv;
  __m256i index;
  if (n == 8) {
    gv = _mm256_loadu_ps(grad + j);
    index = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + j));
  } else {
    const __m256i mask = first_lanes(static_cast<std::ptrdiff_t>(n));
    gv = _mm256_maskload_ps(grad + j, mask);
    index = _mm256_maskload_epi32(reinterpret_cast<const int*>(at + j), mask);
  }
  gv = _mm256_add_ps(gv, _mm256_setzero_ps());
  // Where in its window each index is: 0, 1 (top row), width, width + 1 (bottom row).
  const __m256i offset = _mm256_sub_epi32(index, window_starts(base, j));
  auto at_offset = [&](std::uint32_t where) {
    return _mm256_and_ps(gv, _mm256_castsi256_ps(_mm256_cmpeq_epi32(offset, _mm256_set1_epi32(static_cast<int>(where)))));
  };
  // Left and right elements interleaved back into rows: 16 floats each.
  auto store_row = [&](__m256 left, __m256 right, float* row) {
    const __m256 lo = _mm256_unpacklo_ps(left, right), hi = _mm256_unpackhi_ps(left, right);
    const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20), second = _mm256_permute2f128_ps(lo, hi, 0x31);
    if (n == 8) {
      _mm256_storeu_ps(row + 2 * j, first);
      _mm256_storeu_ps(row + 2 * j + 8, second);
    } else {
      const auto count = static_cast<std::ptrdiff_t>(2 * n);
      _mm256_maskstore_ps(row + 2 * j, first_lanes(count), first);
      if (count > 8) _mm256_maskstore_ps(row + 2 * j + 8, first_lanes(count - 8), second);
    }
  };
  store_row(at_offset(0), at_offset(1), top);
  store_row(at_offset(width), at_offset(width + 1), bottom);
}

/// The gradient of 2x2 pooling (stride 2, no padding) of one float plane, written row pair by row pair;
/// a last column or row outside every window (odd extents) gets zeros.
inline void unpool_plane_2x2(const float* grad, const std::uint32_t* at, const PoolGeometry& g, float* dx) {
  const auto width = static_cast<std::uint32_t>(g.w);
  for (std::size_t i = 0; i < g.ho; ++i) {
    float* top = dx + 2 * i * g.ld;
    float* bottom = top + g.ld;
    const auto base = static_cast<std::uint32_t>(2 * i * g.w);
    const float* gi = grad + i * g.wo;
    const std::uint32_t* ai = at + i * g.wo;
    for_each_block(g.wo, [&](std::size_t j, std::size_t n) { unpool_block(gi, ai, j, n, base, width, top, bottom); });
    if (g.w % 2) top[g.w - 1] = bottom[g.w - 1] = 0.0F;
  }
  if (g.h % 2) std::fill_n(dx + (g.h - 1) * g.ld, g.w, 0.0F);
}
#endif

/// dx = 0, then dx[plane, index[o]] += g[plane, o] (overlapping windows add up), dx's planes `dx_stride`
/// apart. Plane by plane, so the zeroed plane is still in cache when the gradient lands on it.
template <class T>
void pool_scatter(const T* grad, const PoolGeometry& g, const std::uint32_t* index, T* dx, std::size_t dx_stride) {
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    if (two_by_two(g) && g.in_plane() < (std::size_t{1} << 31)) {
      for (std::size_t plane = 0; plane < g.planes(); ++plane) {
        unpool_plane_2x2(grad + plane * g.out_plane(), index + plane * g.out_plane(), g, dx + plane * dx_stride);
      }
      return;
    }
  }
#endif
  for (std::size_t plane = 0; plane < g.planes(); ++plane) {
    const T* __restrict src = grad + plane * g.out_plane();
    const std::uint32_t* __restrict at = index + plane * g.out_plane();
    T* __restrict out = dx + plane * dx_stride;
    if (g.ld == g.w) {
      std::fill_n(out, g.in_plane(), T(0));
      for (std::size_t o = 0; o < g.out_plane(); ++o) out[at[o]] += src[o];
    } else {
      for (std::size_t r = 0; r < g.h; ++r) std::fill_n(out + r * g.ld, g.w, T(0));
      for (std::size_t o = 0; o < g.out_plane(); ++o) out[at[o] / g.w * g.ld + at[o] % g.w] += src[o];
    }
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
  dispatch(grad.dtype(), [&]<class T>() { pool_scatter(grad.data<T>(), g, routing.index(), dx.data<T>(), g.in_plane()); });
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

/// Average pooling as windows: output (i, j) averages input rows [rows[i].first, rows[i].second) by columns
/// [cols[j].first, cols[j].second) of its plane, dividing the sum by `divisor`, or, if it is 0, by the window's
/// own area. `op` and `backward_op` name the nodes.
struct AvgBins {
  const char* op;
  const char* backward_op;
  std::size_t n, c, h, w;
  std::vector<std::pair<std::size_t, std::size_t>> rows, cols;
  double divisor;
  Shape x_shape() const { return Shape{n, c, h, w}; }
  Shape y_shape() const { return Shape{n, c, rows.size(), cols.size()}; }
  double area(std::size_t i, std::size_t j) const {
    if (divisor != 0.0) return divisor;
    return static_cast<double>(rows[i].second - rows[i].first) * static_cast<double>(cols[j].second - cols[j].first);
  }
};

/// Calls visit(o, area, each) for every output o of the planes, where each(f) calls f(at) for every input
/// position `at` of o's window.
template <class Visit>
void for_each_window(const AvgBins& b, Visit visit) {
  std::size_t o = 0;
  for (std::size_t plane = 0; plane < b.n * b.c; ++plane) {
    std::size_t base = plane * b.h * b.w;
    for (std::size_t i = 0; i < b.rows.size(); ++i) {
      for (std::size_t j = 0; j < b.cols.size(); ++j, ++o) {
        visit(o, b.area(i, j), [&](auto f) {
          for (std::size_t r = b.rows[i].first; r < b.rows[i].second; ++r) {
            for (std::size_t c = b.cols[j].first; c < b.cols[j].second; ++c) f(base + r * b.w + c);
          }
        });
      }
    }
  }
}

Tensor avg_spread(const Tensor& g, const std::shared_ptr<const AvgBins>& bins);

/// y = the window means of x (sums in double, as sum's), into `y` if given; d = avg_spread(g).
Tensor avg_pool(const Tensor& x, const std::shared_ptr<const AvgBins>& bins, Tensor y = Tensor()) {
  if (!y.defined()) y = detail::make_tensor(bins->y_shape(), x.dtype(), bins->op);
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for_each_window(*bins, [&](std::size_t o, double area, auto each) {
      double total = 0.0;
      each([&](std::size_t at) { total += px[at]; });
      py[o] = static_cast<T>(total / area);
    });
  });
  return record(bins->op, y, {x}, [bins](const Tensor& gy, NeedsGrad) {
    return std::vector<Tensor>{avg_spread(gy, bins)};
  });
}

/// dx = g / area added over each output's window (overlaps add up): avg_pool's adjoint; d = avg_pool(G).
Tensor avg_spread(const Tensor& g, const std::shared_ptr<const AvgBins>& bins) {
  Tensor dx = detail::make_tensor(bins->x_shape(), g.dtype(), bins->backward_op);
  dx.fill_(0.0);
  dispatch(g.dtype(), [&]<class T>() {
    const T* pg = g.data<T>();
    T* pd = dx.data<T>();
    for_each_window(*bins, [&](std::size_t o, double area, auto each) {
      T share = static_cast<T>(pg[o] / area);
      each([&](std::size_t at) { pd[at] += share; });
    });
  });
  return record(bins->backward_op, dx, {g}, [bins](const Tensor& gx, NeedsGrad) {
    return std::vector<Tensor>{avg_pool(gx, bins)};
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  PoolGeometry g = make_geometry("max_pool2d", x, kernel, stride, padding);
  if (g.in_plane() > UINT32_MAX) fail("max_pool2d", "input planes too large: {}", x.describe());
  Tensor y = detail::make_tensor(g.y_shape(), x.dtype(), "max_pool2d");
  Routing routing{g, detail::pool_index_block(y.numel(), "max_pool2d")};
  dispatch(x.dtype(), [&]<class T>() { pool_planes(x.data<T>(), g, g.in_plane(), y.data<T>(), routing.index()); });
  return record("max_pool2d", y, {x}, [routing](const Tensor& gy, NeedsGrad) {
    return std::vector<Tensor>{max_pool2d_backward(gy, routing)};
  });
}

Tensor max_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride, std::size_t padding) {
  return max_pool2d(x, Size2{kernel, kernel}, Size2{stride, stride}, Size2{padding, padding});
}

// ---------------------------------------------------------------- avg_pool2d and adaptive_avg_pool2d

Tensor avg_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  PoolGeometry g = make_geometry("avg_pool2d", x, kernel, stride, padding);
  auto bins = std::make_shared<AvgBins>(AvgBins{"avg_pool2d", "avg_pool2d_backward", g.n, g.c, g.h, g.w, {}, {},
                                                static_cast<double>(g.kh) * static_cast<double>(g.kw)});
  for (std::size_t i = 0; i < g.ho; ++i) bins->rows.push_back(window_span(i, g.sh, g.kh, g.ph, g.h));
  for (std::size_t j = 0; j < g.wo; ++j) bins->cols.push_back(window_span(j, g.sw, g.kw, g.pw, g.w));
  return avg_pool(x, bins);
}

Tensor avg_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride, std::size_t padding) {
  return avg_pool2d(x, Size2{kernel, kernel}, Size2{stride, stride}, Size2{padding, padding});
}

Tensor adaptive_avg_pool2d(const Tensor& x, Size2 output_size) {
  const char* op = "adaptive_avg_pool2d";
  detail::check_defined(op, x);
  if (x.rank() != 4) fail(op, "input must be 4-D (N, C, H, W), got {}", x.describe());
  if (output_size[0] == 0 || output_size[1] == 0 || x.dim(2) == 0 || x.dim(3) == 0) {
    fail(op, "output {}x{} from {}: both must be non-empty", output_size[0], output_size[1], x.describe());
  }
  if (std::max({output_size[0], output_size[1], x.dim(2), x.dim(3)}) > UINT32_MAX) {
    fail(op, "output {}x{} from {}: sizes beyond 2^32", output_size[0], output_size[1], x.describe());
  }
  // The output first: a shape that cannot be had is refused before its bins are listed.
  Tensor y = detail::make_tensor(Shape{x.dim(0), x.dim(1), output_size[0], output_size[1]}, x.dtype(), op);
  auto bins = std::make_shared<AvgBins>(
      AvgBins{op, "adaptive_avg_pool2d_backward", x.dim(0), x.dim(1), x.dim(2), x.dim(3), {}, {}, 0.0});
  // Bin i of n over an extent e: [floor(i e / n), ceil((i + 1) e / n)), as PyTorch.
  auto bin = [](std::size_t i, std::size_t n, std::size_t e) {
    return std::pair<std::size_t, std::size_t>{i * e / n, ((i + 1) * e + n - 1) / n};
  };
  for (std::size_t i = 0; i < output_size[0]; ++i) bins->rows.push_back(bin(i, output_size[0], x.dim(2)));
  for (std::size_t j = 0; j < output_size[1]; ++j) bins->cols.push_back(bin(j, output_size[1], x.dim(3)));
  return avg_pool(x, bins, y);
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::size_t output_size) {
  return adaptive_avg_pool2d(x, Size2{output_size, output_size});
}

namespace detail {

namespace {
PoolGeometry two_by_two_geometry(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t ld) {
  return PoolGeometry{n, c, h, w, 2, 2, 2, 2, 0, 0, h / 2, w / 2, ld};
}
}  // namespace

template <class T>
void max_pool2x2_planes(const T* in, const StridedPlanes& planes, T* out, std::uint32_t* at) {
  pool_planes(in, two_by_two_geometry(1, planes.count, planes.h, planes.w, planes.ld), planes.stride, out, at);
}

template <class T>
void max_unpool2x2_planes(const T* g, const std::uint32_t* at, const StridedPlanes& planes, T* dx) {
  pool_scatter(g, two_by_two_geometry(1, planes.count, planes.h, planes.w, planes.ld), at, dx, planes.stride);
}

template void max_pool2x2_planes(const float*, const StridedPlanes&, float*, std::uint32_t*);
template void max_pool2x2_planes(const double*, const StridedPlanes&, double*, std::uint32_t*);
template void max_unpool2x2_planes(const float*, const std::uint32_t*, const StridedPlanes&, float*);
template void max_unpool2x2_planes(const double*, const std::uint32_t*, const StridedPlanes&, double*);

std::shared_ptr<Storage> pool_index_block(std::size_t outputs, const char* op) {
  // The uint32 indices in the storage of an f32 tensor of as many elements (4 bytes each): an allocation
  // failure is reported like any other.
  return make_tensor(Shape{std::max<std::size_t>(1, outputs)}, DType::f32, op).impl()->storage;
}

Tensor max_pool2x2_backward(const Tensor& grad, const Shape& x_shape, const std::shared_ptr<Storage>& index) {
  return max_pool2d_backward(grad, Routing{two_by_two_geometry(x_shape[0], x_shape[1], x_shape[2], x_shape[3],
                                                               x_shape[3]), index});
}

}  // namespace detail

}  // namespace ag
