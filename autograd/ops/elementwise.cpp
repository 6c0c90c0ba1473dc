// Elementwise arithmetic with NumPy broadcasting, and the unary maths functions.
// Each op: forward kernel, then its backward (written with these same ops) in the record() call.
#include <cmath>
#include <stdexcept>

#include "autograd/detail/broadcast.hpp"
#include "autograd/detail/math.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  std::size_t rank = std::max(a.rank(), b.rank());
  Shape out;
  for (std::size_t d = 0; d < rank; ++d) {
    std::size_t ea = d + a.rank() >= rank ? a[d + a.rank() - rank] : 1;
    std::size_t eb = d + b.rank() >= rank ? b[d + b.rank() - rank] : 1;
    if (ea != eb && ea != 1 && eb != 1) fail(op, "shapes {} and {} do not broadcast", a.str(), b.str());
    out.push_back(ea == 1 ? eb : ea);
  }
  if (!out.checked_numel()) {
    fail(op, "shapes {} and {} broadcast to {}, more elements than 64 bits count", a.str(), b.str(), out.str());
  }
  return out;
}

namespace {

/// out = f(a, b) elementwise with broadcasting; same-shape and scalar cases run as flat loops.
template <class F>
Tensor binary_kernel(const char* op, const Tensor& a, const Tensor& b, F f) {
  detail::check_binary(op, a, b);
  Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = detail::make_tensor(shape, a.dtype(), op);
  dispatch(a.dtype(), [&]<class T>() {
    const T* __restrict pa = a.data<T>();
    const T* __restrict pb = b.data<T>();
    T* __restrict po = out.data<T>();
    std::size_t n = out.numel();
    if (a.numel() == n && b.numel() == n) {
      for (std::size_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    } else if (b.numel() == 1 && a.numel() == n) {
      T s = pb[0];
      for (std::size_t i = 0; i < n; ++i) po[i] = f(pa[i], s);
    } else if (a.numel() == 1 && b.numel() == n) {
      T s = pa[0];
      for (std::size_t i = 0; i < n; ++i) po[i] = f(s, pb[i]);
    } else {
      detail::for_each_broadcast(shape, detail::broadcast_strides(a.shape(), shape),
                                 detail::broadcast_strides(b.shape(), shape),
                                 [&](std::size_t o, std::size_t ia, std::size_t ib) { po[o] = f(pa[ia], pb[ib]); });
    }
  });
  return out;
}

/// out = f(x, s) for a scalar s, as a flat loop.
template <class F>
Tensor scalar_kernel(const char* op, const Tensor& x, double s, F f) {
  detail::check_defined(op, x);
  Tensor out = detail::make_tensor(x.shape(), x.dtype(), op);
  dispatch(x.dtype(), [&]<class T>() {
    const T* __restrict px = x.data<T>();
    T* __restrict po = out.data<T>();
    T value = static_cast<T>(s);
    std::size_t n = x.numel();
    for (std::size_t i = 0; i < n; ++i) po[i] = f(px[i], value);
  });
  return out;
}

}  // namespace

// ---------------------------------------------------------------- binary, tensor with tensor

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("add", a, b, [](auto x, auto y) { return x + y; });
  return record("add", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, NeedsGrad needs) {
    return std::vector<Tensor>{needs[0] ? sum_to(g, sa) : Tensor(), needs[1] ? sum_to(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("sub", a, b, [](auto x, auto y) { return x - y; });
  return record("sub", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, NeedsGrad needs) {
    return std::vector<Tensor>{needs[0] ? sum_to(g, sa) : Tensor(), needs[1] ? neg(sum_to(g, sb)) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("mul", a, b, [](auto x, auto y) { return x * y; });
  return record("mul", out, {a, b}, [a, b](const Tensor& g, NeedsGrad needs) {
    return std::vector<Tensor>{needs[0] ? sum_to(mul(g, b), a.shape()) : Tensor(),
                               needs[1] ? sum_to(mul(g, a), b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("div", a, b, [](auto x, auto y) { return x / y; });
  return record("div", out, {a, b}, [a, b, out](const Tensor& g, NeedsGrad needs) {
    // d(a/b)/db = -a/b^2 = -out/b.
    return std::vector<Tensor>{needs[0] ? sum_to(div(g, b), a.shape()) : Tensor(),
                               needs[1] ? sum_to(neg(div(mul(g, out), b)), b.shape()) : Tensor()};
  });
}

// ---------------------------------------------------------------- with a scalar

Tensor add(const Tensor& a, double s) {
  Tensor out = scalar_kernel("add", a, s, [](auto x, auto v) { return x + v; });
  return record("add_scalar", out, {a}, [](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{g}; });
}

Tensor sub(const Tensor& a, double s) { return add(a, -s); }

Tensor sub(double s, const Tensor& a) {
  Tensor out = scalar_kernel("sub", a, s, [](auto x, auto v) { return v - x; });
  return record("rsub_scalar", out, {a}, [](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{neg(g)}; });
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = scalar_kernel("mul", a, s, [](auto x, auto v) { return x * v; });
  return record("mul_scalar", out, {a}, [s](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{mul(g, s)}; });
}

Tensor div(const Tensor& a, double s) {
  if (s == 0.0) fail("div", "division of {} by the scalar 0", a.describe());
  return mul(a, 1.0 / s);
}

Tensor div(double s, const Tensor& a) {
  Tensor out = scalar_kernel("div", a, s, [](auto x, auto v) { return v / x; });
  return record("rdiv_scalar", out, {a}, [a, out](const Tensor& g, NeedsGrad) {
    // d(s/a)/da = -s/a^2 = -out/a.
    return std::vector<Tensor>{neg(div(mul(g, out), a))};
  });
}

Tensor neg(const Tensor& a) {
  Tensor out = scalar_kernel("neg", a, 0.0, [](auto x, auto) { return -x; });
  return record("neg", out, {a}, [](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{neg(g)}; });
}

// ---------------------------------------------------------------- unary maths

Tensor pow(const Tensor& x, double exponent) {
  // Scalar std::pow, not xsimd's: xsimd returns 0 for a zero base whatever the exponent.
  Tensor out = exponent == 2.0 ? scalar_kernel("pow", x, 0.0, [](auto v, auto) { return v * v; })
                               : scalar_kernel("pow", x, exponent, [](auto v, auto p) { return std::pow(v, p); });
  return record("pow", out, {x}, [x, exponent](const Tensor& g, NeedsGrad) {
    // x^0 is constant and x^1 has slope 1 everywhere (also at 0, where p x^(p-1) would be 0 * inf).
    if (exponent == 0.0) return std::vector<Tensor>{mul(g, 0.0)};
    if (exponent == 1.0) return std::vector<Tensor>{mul(g, 1.0)};
    Tensor slope = exponent == 2.0 ? mul(x, 2.0) : mul(pow(x, exponent - 1.0), exponent);
    return std::vector<Tensor>{mul(g, slope)};
  });
}

Tensor exp(const Tensor& x) {
  Tensor out = detail::elementwise_math("exp", detail::Math::exp, x);
  return record("exp", out, {x}, [out](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{mul(g, out)}; });
}

Tensor log(const Tensor& x) {
  Tensor out = detail::elementwise_math("log", detail::Math::log, x);
  return record("log", out, {x}, [x](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{div(g, x)}; });
}

Tensor sqrt(const Tensor& x) {
  Tensor out = detail::elementwise_math("sqrt", detail::Math::sqrt, x);
  return record("sqrt", out, {x}, [out](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{div(g, mul(out, 2.0))};
  });
}

Tensor abs(const Tensor& x) {
  Tensor out = scalar_kernel("abs", x, 0.0, [](auto v, auto) { return v < 0 ? -v : v; });
  return record("abs", out, {x}, [x](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{mul(g, sign(x))}; });
}

// step and sign keep NaN (as NumPy's sign; PyTorch's sign gives 0 for NaN, a known divergence from NumPy).

Tensor step(const Tensor& x) {
  return scalar_kernel("step", x, 0.0, [](auto v, auto zero) {
    using T = decltype(v);
    return v > zero ? T(1) : (v <= zero ? T(0) : v);
  });
}

Tensor sign(const Tensor& x) {
  return scalar_kernel("sign", x, 0.0, [](auto v, auto zero) {
    using T = decltype(v);
    return v > zero ? T(1) : (v < zero ? T(-1) : (v == zero ? T(0) : v));
  });
}

// ---------------------------------------------------------------- selection and clamping

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_defined("where", cond);
  detail::check_binary("where", a, b);
  Shape shape;
  try {
    shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  } catch (const std::invalid_argument&) {
    fail("where", "condition {}, a {} and b {} do not broadcast", cond.shape().str(), a.shape().str(),
         b.shape().str());
  }
  // Inputs spread to the common shape first: broadcast_to's own backward sums their gradients back.
  auto spread = [&](const Tensor& t) { return t.shape() == shape ? t : broadcast_to(t, shape); };
  Tensor c = spread(cond.detach().to(a.dtype())).detach(), sa = spread(a), sb = spread(b);
  Tensor out = detail::make_tensor(shape, a.dtype(), "where");
  dispatch(a.dtype(), [&]<class T>() {
    const T* __restrict pc = c.data<T>();
    const T* __restrict pa = sa.data<T>();
    const T* __restrict pb = sb.data<T>();
    T* __restrict po = out.data<T>();
    std::size_t n = out.numel();
    for (std::size_t i = 0; i < n; ++i) po[i] = pc[i] != T(0) ? pa[i] : pb[i];
  });
  return record("where", out, {sa, sb}, [c](const Tensor& g, NeedsGrad needs) {
    Tensor zeros = Tensor::zeros_like(g);
    return std::vector<Tensor>{needs[0] ? where(c, g, zeros) : Tensor(), needs[1] ? where(c, zeros, g) : Tensor()};
  });
}

namespace {

/// maximum (larger = true) or minimum: `wins(x, y)` is true where x is the result (NaN included); the
/// backward weight of a is 1 where it wins, 1/2 on a tie, else 0 (a constant: no second-order term).
template <class Wins>
Tensor select_binary(const char* op, const Tensor& a, const Tensor& b, Wins wins) {
  Tensor out = binary_kernel(op, a, b, [wins](auto x, auto y) { return wins(x, y) ? x : y; });
  return record(op, out, {a, b}, [a, b, op, wins](const Tensor& g, NeedsGrad needs) {
    Tensor weight = binary_kernel(op, a, b, [wins](auto x, auto y) {
      using T = decltype(x);
      return wins(x, y) ? T(1) : (x == y ? T(0.5) : T(0));
    });
    return std::vector<Tensor>{needs[0] ? sum_to(mul(g, weight), a.shape()) : Tensor(),
                               needs[1] ? sum_to(mul(g, sub(1.0, weight)), b.shape()) : Tensor()};
  });
}

}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  return select_binary("maximum", a, b, [](auto x, auto y) { return x > y || x != x; });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return select_binary("minimum", a, b, [](auto x, auto y) { return x < y || x != x; });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  detail::check_defined("clamp", x);
  if (!(lo <= hi)) fail("clamp", "of {} to [{}, {}]: the bounds must be ordered numbers", x.describe(), lo, hi);
  Tensor out = scalar_kernel("clamp", x, 0.0, [lo, hi](auto v, auto) {
    using T = decltype(v);
    return v < T(lo) ? T(lo) : (v > T(hi) ? T(hi) : v);
  });
  return record("clamp", out, {x}, [x, lo, hi](const Tensor& g, NeedsGrad) {
    // 1 inside the closed interval, 0 outside, NaN at a NaN (v itself).
    Tensor inside = scalar_kernel("clamp", x, 0.0, [lo, hi](auto v, auto) {
      using T = decltype(v);
      return v >= T(lo) && v <= T(hi) ? T(1) : (v != v ? v : T(0));
    });
    return std::vector<Tensor>{mul(g, inside)};
  });
}

// ---------------------------------------------------------------- comparison masks (no gradient)
// IEEE comparisons: false with a NaN, so a NaN gives 0, and 1 for ne (as NumPy and PyTorch).

namespace {

/// Which orderings of x and y make a comparison true (unordered: x or y is NaN). One kernel with the relation as
/// a value serves all six comparisons (they are masks, rarely hot; six kernels would be six times the code).
struct Relation {
  bool less, equal, greater, unordered;
};
constexpr Relation equal{false, true, false, false}, unequal{true, false, true, true}, less{true, false, false, false},
    less_equal{true, true, false, false}, greater{false, false, true, false}, greater_equal{false, true, true, false};

auto mask_kernel(Relation r) {
  return [r](auto x, auto y) {
    using T = decltype(x);
    bool holds = (r.less & (x < y)) | (r.equal & (x == y)) | (r.greater & (x > y)) | (r.unordered & (x != x || y != y));
    return holds ? T(1) : T(0);
  };
}

Tensor mask_of(const char* op, const Tensor& a, const Tensor& b, Relation r) {
  return binary_kernel(op, a, b, mask_kernel(r));
}

Tensor mask_of(const char* op, const Tensor& a, double s, Relation r) { return scalar_kernel(op, a, s, mask_kernel(r)); }

}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return mask_of("eq", a, b, equal); }
Tensor ne(const Tensor& a, const Tensor& b) { return mask_of("ne", a, b, unequal); }
Tensor lt(const Tensor& a, const Tensor& b) { return mask_of("lt", a, b, less); }
Tensor le(const Tensor& a, const Tensor& b) { return mask_of("le", a, b, less_equal); }
Tensor gt(const Tensor& a, const Tensor& b) { return mask_of("gt", a, b, greater); }
Tensor ge(const Tensor& a, const Tensor& b) { return mask_of("ge", a, b, greater_equal); }
Tensor eq(const Tensor& a, double s) { return mask_of("eq", a, s, equal); }
Tensor ne(const Tensor& a, double s) { return mask_of("ne", a, s, unequal); }
Tensor lt(const Tensor& a, double s) { return mask_of("lt", a, s, less); }
Tensor le(const Tensor& a, double s) { return mask_of("le", a, s, less_equal); }
Tensor gt(const Tensor& a, double s) { return mask_of("gt", a, s, greater); }
Tensor ge(const Tensor& a, double s) { return mask_of("ge", a, s, greater_equal); }

// ---------------------------------------------------------------- operators

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
Tensor operator-(double s, const Tensor& a) { return sub(s, a); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return div(a, s); }
Tensor operator/(double s, const Tensor& a) { return div(s, a); }

}  // namespace ag
