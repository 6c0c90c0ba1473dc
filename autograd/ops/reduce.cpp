// Reductions (sum, mean, max, logsumexp) and the pair that moves between broadcast shapes: broadcast_to and its
// adjoint sum_to, the one helper every binary op's backward uses to undo broadcasting.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/detail/broadcast.hpp"
#include "autograd/detail/nan.hpp"
#include "autograd/detail/xt.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

namespace {

/// x seen as (outer, extent, inner) around `axis`.
struct AxisSplit {
  std::size_t outer = 1, extent = 1, inner = 1;
};

AxisSplit split_at(const Shape& shape, std::size_t axis) {
  AxisSplit s;
  for (std::size_t d = 0; d < axis; ++d) s.outer *= shape[d];
  s.extent = shape[axis];
  for (std::size_t d = axis + 1; d < shape.rank(); ++d) s.inner *= shape[d];
  return s;
}

Shape reduced_shape(const Shape& shape, std::size_t axis, bool keepdims) {
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

/// The gradient of a reduction over `axis`, expanded back to the input's shape.
Tensor expand_reduced(const Tensor& g, const Shape& input_shape, std::size_t axis) {
  return broadcast_to(reshape(g, reduced_shape(input_shape, axis, true)), input_shape);
}

/// Mask with a 1 at the first maximal element of each (outer, inner) slice along the axis, and the
/// maxima themselves. A whole-tensor max is the split (1, numel, 1).
std::pair<Tensor, Tensor> max_with_mask(const Tensor& x, AxisSplit s, const Shape& out_shape) {
  Tensor out = detail::make_tensor(out_shape, x.dtype(), "max");
  Tensor mask = detail::make_tensor(x.shape(), x.dtype(), "max");
  mask.fill_(0.0);
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    T* pm = mask.data<T>();
    for (std::size_t o = 0; o < s.outer; ++o) {
      for (std::size_t i = 0; i < s.inner; ++i) {
        std::size_t base = o * s.extent * s.inner + i;
        std::size_t best = base;
        for (std::size_t k = 1; k < s.extent; ++k) {
          std::size_t at = base + k * s.inner;
          if (px[at] > px[best] || (px[at] != px[at] && px[best] == px[best])) best = at;
        }
        po[o * s.inner + i] = px[best];
        pm[best] = T(1);
      }
    }
  });
  return {out, mask};
}

}  // namespace

// ---------------------------------------------------------------- sum and mean

Tensor sum(const Tensor& x) {
  detail::check_defined("sum", x);
  Tensor out = detail::make_tensor(Shape{}, x.dtype(), "sum");
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    std::size_t n = x.numel();
    // Float32 sums accumulate in double: a 60,000-sample loss would otherwise lose digits.
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i) total += px[i];
    out.data<T>()[0] = static_cast<T>(total);
  });
  return record("sum", out, {x}, [shape = x.shape()](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{broadcast_to(g, shape)};
  });
}

Tensor sum(const Tensor& x, int axis, bool keepdims) {
  detail::check_defined("sum", x);
  std::size_t a = detail::normalise_axis("sum", axis, x);
  AxisSplit s = split_at(x.shape(), a);
  Tensor out = detail::make_tensor(reduced_shape(x.shape(), a, keepdims), x.dtype(), "sum");
  out.fill_(0.0);
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for (std::size_t o = 0; o < s.outer; ++o) {
      T* __restrict row_out = po + o * s.inner;
      for (std::size_t k = 0; k < s.extent; ++k) {
        const T* __restrict row_in = px + (o * s.extent + k) * s.inner;
        for (std::size_t i = 0; i < s.inner; ++i) row_out[i] += row_in[i];
      }
    }
  });
  return record("sum_axis", out, {x}, [shape = x.shape(), a](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{expand_reduced(g, shape, a)};
  });
}

Tensor mean(const Tensor& x) {
  detail::check_defined("mean", x);
  if (x.numel() == 0) fail("mean", "of an empty tensor {}", x.describe());
  return div(sum(x), static_cast<double>(x.numel()));
}

Tensor mean(const Tensor& x, int axis, bool keepdims) {
  detail::check_defined("mean", x);
  std::size_t a = detail::normalise_axis("mean", axis, x);
  if (x.dim(a) == 0) fail("mean", "over an empty axis of {}", x.describe());
  return div(sum(x, axis, keepdims), static_cast<double>(x.dim(a)));
}

// ---------------------------------------------------------------- max

Tensor max(const Tensor& x) {
  detail::check_defined("max", x);
  if (x.numel() == 0) fail("max", "of an empty tensor {}", x.describe());
  auto [out, mask] = max_with_mask(x, AxisSplit{1, x.numel(), 1}, Shape{});
  return record("max", out, {x}, [mask](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{mul(g, mask)}; });
}

Tensor max(const Tensor& x, int axis, bool keepdims) {
  detail::check_defined("max", x);
  std::size_t a = detail::normalise_axis("max", axis, x);
  if (x.dim(a) == 0) fail("max", "over an empty axis of {}", x.describe());
  auto [out, mask] = max_with_mask(x, split_at(x.shape(), a), reduced_shape(x.shape(), a, keepdims));
  return record("max_axis", out, {x}, [mask, shape = x.shape(), a](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(expand_reduced(g, shape, a), mask)};
  });
}

// ---------------------------------------------------------------- logsumexp

Tensor logsumexp(const Tensor& x, int axis, bool keepdims) {
  detail::check_defined("logsumexp", x);
  std::size_t a = detail::normalise_axis("logsumexp", axis, x);
  AxisSplit s = split_at(x.shape(), a);
  Shape kept = reduced_shape(x.shape(), a, true);
  Tensor out = detail::make_tensor(kept, x.dtype(), "logsumexp");
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    std::vector<T> total(s.inner);
    for (std::size_t o = 0; o < s.outer; ++o) {
      // Peaks (NaN kept) then shifted sums, each a contiguous loop along the inner extent.
      T* __restrict peak = po + o * s.inner;
      T* __restrict acc = total.data();
      std::fill_n(peak, s.inner, -std::numeric_limits<T>::infinity());
      std::fill_n(acc, s.inner, T(0));
      for (std::size_t k = 0; k < s.extent; ++k) {
        const T* __restrict row = px + (o * s.extent + k) * s.inner;
        for (std::size_t i = 0; i < s.inner; ++i) peak[i] = detail::nan_max(peak[i], row[i]);
      }
      for (std::size_t k = 0; k < s.extent; ++k) {
        const T* __restrict row = px + (o * s.extent + k) * s.inner;
        for (std::size_t i = 0; i < s.inner; ++i) acc[i] += std::exp(row[i] - peak[i]);
      }
      // An infinite peak (all -inf, or a +inf) is the answer itself: inf - inf would be NaN.
      for (std::size_t i = 0; i < s.inner; ++i) {
        if (std::abs(peak[i]) != std::numeric_limits<T>::infinity()) peak[i] += std::log(acc[i]);
      }
    }
  });
  if (!keepdims) out = reshape(out, reduced_shape(x.shape(), a, false));
  // d = g e^(x - y): y kept with extent 1 broadcasts along the axis (mul's and sub's sum_to undo it).
  return record("logsumexp", out, {x}, [x, out, kept](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(reshape(g, kept), exp(sub(x, reshape(out, kept))))};
  });
}

// ---------------------------------------------------------------- broadcast_to and sum_to

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  detail::check_defined("broadcast_to", x);
  if (!(broadcast_shapes(x.shape(), shape, "broadcast_to") == shape)) {
    fail("broadcast_to", "{} cannot be broadcast to {}", x.shape().str(), shape.str());
  }
  Tensor out = detail::make_tensor(shape, x.dtype(), "broadcast_to");
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    if (x.numel() == 1) {
      std::fill_n(po, out.numel(), px[0]);
      return;
    }
    detail::for_each_broadcast(shape, detail::broadcast_strides(x.shape(), shape), detail::Index4{},
                               [&](std::size_t o, std::size_t ix, std::size_t) { po[o] = px[ix]; });
  });
  return record("broadcast_to", out, {x}, [source = x.shape()](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{sum_to(g, source)};
  });
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  detail::check_defined("sum_to", x);
  if (x.shape() == shape) return x;
  if (!(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape())) {
    fail("sum_to", "{} cannot be summed to {}", x.shape().str(), shape.str());
  }
  Tensor out = detail::make_tensor(shape, x.dtype(), "sum_to");
  out.fill_(0.0);
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    std::size_t n = x.numel(), m = out.numel();
    if (n == 0 || m == 0) return;  // nothing to sum: out stays zero
    if (n % m == 0 && x.rank() >= shape.rank() && shape.numel() == x.shape().back() &&
        (shape.rank() == 0 || shape.back() == x.shape().back())) {
      // Bias gradient: a (rows, m) tensor summed over its rows, vectorised along the row.
      for (std::size_t r = 0; r < n / m; ++r) {
        const T* __restrict row = px + r * m;
        T* __restrict acc = po;
        for (std::size_t i = 0; i < m; ++i) acc[i] += row[i];
      }
      return;
    }
    detail::for_each_broadcast(x.shape(), detail::broadcast_strides(shape, x.shape()), detail::Index4{},
                               [&](std::size_t ix, std::size_t io, std::size_t) { po[io] += px[ix]; });
  });
  return record("sum_to", out, {x}, [source = x.shape()](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{broadcast_to(g, source)};
  });
}

}  // namespace ag
