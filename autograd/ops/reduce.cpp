// Reductions (sum, mean, max, min, argmax, argmin, var, std, prod, logsumexp) and the pair that moves between broadcast shapes: broadcast_to and its
// adjoint sum_to, the one helper every binary op's backward uses to undo broadcasting.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include "autograd/detail/axis.hpp"
#include "autograd/detail/broadcast.hpp"
#include "autograd/detail/nan.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;
using detail::AxisSplit;
using detail::reduced_shape;
using detail::split_at;

namespace {

/// The gradient of a reduction over `axis`, expanded back to the input's shape.
Tensor expand_reduced(const Tensor& g, const Shape& input_shape, std::size_t axis) {
  return broadcast_to(reshape(g, reduced_shape(input_shape, axis, true)), input_shape);
}

/// Calls visit(j, at, k) for each slice j = o * inner + i of x along the axis, with `at` the flat position of
/// its extreme element and k = its index along the axis: the first element no later one is `better` than,
/// unless the slice holds a NaN, then the first NaN. A whole-tensor reduction is the split (1, numel, 1).
template <class T, class Better, class Visit>
void for_each_extreme(const T* px, AxisSplit s, Better better, Visit visit) {
  for (std::size_t o = 0; o < s.outer; ++o) {
    for (std::size_t i = 0; i < s.inner; ++i) {
      std::size_t base = o * s.extent * s.inner + i;
      std::size_t best = base, best_k = 0;
      for (std::size_t k = 1; k < s.extent; ++k) {
        std::size_t at = base + k * s.inner;
        if (better(px[at], px[best]) || (px[at] != px[at] && px[best] == px[best])) {
          best = at;
          best_k = k;
        }
      }
      visit(o * s.inner + i, best, best_k);
    }
  }
}

/// The extrema (max or min by `better`) and a mask with a 1 at each one's position in x.
template <class Better>
std::pair<Tensor, Tensor> extreme_with_mask(const char* op, const Tensor& x, AxisSplit s, const Shape& out_shape,
                                            Better better) {
  Tensor out = detail::make_tensor(out_shape, x.dtype(), op);
  Tensor mask = detail::make_tensor(x.shape(), x.dtype(), op);
  mask.fill_(0.0);
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    T* pm = mask.data<T>();
    for_each_extreme(px, s, better, [&](std::size_t j, std::size_t at, std::size_t) {
      po[j] = px[at];
      pm[at] = T(1);
    });
  });
  return {out, mask};
}

/// Where a reduction over everything (no axis) or over one axis reads and writes; an empty extent is refused.
struct ReductionSite {
  AxisSplit split;
  Shape out_shape;
  std::optional<std::size_t> axis;
};

ReductionSite reduction_site(const char* op, const Tensor& x, std::optional<int> axis, bool keepdims) {
  detail::check_defined(op, x);
  if (!axis) {
    if (x.numel() == 0) fail(op, "of an empty tensor {}", x.describe());
    return {AxisSplit{1, x.numel(), 1}, Shape{}, std::nullopt};
  }
  std::size_t a = detail::normalise_axis(op, *axis, x);
  if (x.dim(a) == 0) fail(op, "over an empty axis of {}", x.describe());
  return {split_at(x.shape(), a), reduced_shape(x.shape(), a, keepdims), a};
}

/// max or min (by `better`): the gradient goes to the mask's element.
template <class Better>
Tensor extreme(const char* op, const Tensor& x, std::optional<int> axis, bool keepdims, Better better) {
  ReductionSite site = reduction_site(op, x, axis, keepdims);
  auto [out, selected] = extreme_with_mask(op, x, site.split, site.out_shape, better);
  return record(op, out, {x}, [mask = selected, shape = x.shape(), a = site.axis](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{mul(a ? expand_reduced(g, shape, *a) : g, mask)};
  });
}

/// argmax or argmin (by `better`): the extreme's index along the axis, in x's dtype; no record.
template <class Better>
Tensor arg_extreme(const char* op, const Tensor& x, std::optional<int> axis, bool keepdims, Better better) {
  ReductionSite site = reduction_site(op, x, axis, keepdims);
  if (x.dtype() == DType::f32 && site.split.extent > (std::size_t{1} << 24)) {
    fail(op, "indices up to {} of {} are not all exact in f32; convert it to f64", site.split.extent - 1,
         x.describe());
  }
  Tensor out = detail::make_tensor(site.out_shape, x.dtype(), op);
  dispatch(x.dtype(), [&]<class T>() {
    T* po = out.data<T>();
    for_each_extreme(x.data<T>(), site.split, better,
                     [&](std::size_t j, std::size_t, std::size_t k) { po[j] = static_cast<T>(k); });
  });
  return out;
}

/// The product along axis a, kept with extent 1: the product of its two halves' products.
Tensor product_of_halves(const Tensor& x, std::size_t a) {
  std::size_t n = x.dim(a);
  if (n == 0) return Tensor::ones(detail::with_extent(x.shape(), a, 1), x.dtype());
  if (n == 1) return x;
  int axis = static_cast<int>(a);
  return mul(product_of_halves(narrow(x, axis, 0, n / 2), a), product_of_halves(narrow(x, axis, n / 2, n - n / 2), a));
}

/// var over `axis`; errors name `op`.
Tensor variance(const char* op, const Tensor& x, int axis, double correction, bool keepdims) {
  detail::check_defined(op, x);
  std::size_t a = detail::normalise_axis(op, axis, x);
  if (x.dim(a) == 0) fail(op, "over an empty axis of {}", x.describe());
  if (!(correction >= 0.0)) fail(op, "correction {} for {} must be a number >= 0", correction, x.describe());
  Tensor centred = sub(x, mean(x, axis, true));
  // N - correction <= 0 divides by zero, as PyTorch: 1/0 = inf, and 0 * inf = NaN for a single element.
  double dof = std::max(0.0, static_cast<double>(x.dim(a)) - correction);
  return mul(sum(mul(centred, centred), axis, keepdims), 1.0 / dof);
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

// ---------------------------------------------------------------- max and min

Tensor max(const Tensor& x) { return extreme("max", x, std::nullopt, false, std::greater<>()); }
Tensor max(const Tensor& x, int axis, bool keepdims) { return extreme("max", x, axis, keepdims, std::greater<>()); }
Tensor min(const Tensor& x) { return extreme("min", x, std::nullopt, false, std::less<>()); }
Tensor min(const Tensor& x, int axis, bool keepdims) { return extreme("min", x, axis, keepdims, std::less<>()); }

// ---------------------------------------------------------------- argmax and argmin (no gradient)

Tensor argmax(const Tensor& x) { return arg_extreme("argmax", x, std::nullopt, false, std::greater<>()); }
Tensor argmax(const Tensor& x, int axis, bool keepdims) { return arg_extreme("argmax", x, axis, keepdims, std::greater<>()); }
Tensor argmin(const Tensor& x) { return arg_extreme("argmin", x, std::nullopt, false, std::less<>()); }
Tensor argmin(const Tensor& x, int axis, bool keepdims) { return arg_extreme("argmin", x, axis, keepdims, std::less<>()); }

// ---------------------------------------------------------------- var, std and prod (composed)

Tensor var(const Tensor& x, int axis, double correction, bool keepdims) {
  return variance("var", x, axis, correction, keepdims);
}

Tensor std(const Tensor& x, int axis, double correction, bool keepdims) {
  return sqrt(variance("std", x, axis, correction, keepdims));
}

Tensor prod(const Tensor& x) {
  detail::check_defined("prod", x);
  return reshape(product_of_halves(reshape(x, Shape{x.numel()}), 0), Shape{});
}

Tensor prod(const Tensor& x, int axis, bool keepdims) {
  detail::check_defined("prod", x);
  std::size_t a = detail::normalise_axis("prod", axis, x);
  Tensor kept = product_of_halves(x, a);
  return keepdims ? kept : reshape(kept, reduced_shape(x.shape(), a, false));
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
    detail::for_each_broadcast(shape, detail::broadcast_strides(x.shape(), shape), detail::Index{},
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
    detail::for_each_broadcast(x.shape(), detail::broadcast_strides(shape, x.shape()), detail::Index{},
                               [&](std::size_t ix, std::size_t io, std::size_t) { po[io] += px[ix]; });
  });
  return record("sum_to", out, {x}, [source = x.shape()](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{broadcast_to(g, source)};
  });
}

}  // namespace ag
