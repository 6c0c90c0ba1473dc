// Matrix product through BLAS (transpose flags, never a transposed copy) and the 2-D transpose.
#include "autograd/blas.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/in_backward.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  detail::check_binary("matmul", a, b);
  if (a.rank() != 2 || b.rank() != 2) fail("matmul", "needs 2-D tensors, got {} and {}", a.describe(), b.describe());
  std::size_t m = transpose_a ? a.dim(1) : a.dim(0);
  std::size_t k = transpose_a ? a.dim(0) : a.dim(1);
  std::size_t kb = transpose_b ? b.dim(1) : b.dim(0);
  std::size_t n = transpose_b ? b.dim(0) : b.dim(1);
  if (k != kb) {
    fail("matmul", "inner dimensions differ: {}{} x {}{}", a.shape().str(), transpose_a ? "^T" : "",
         b.shape().str(), transpose_b ? "^T" : "");
  }
  Tensor out = detail::make_tensor(Shape{m, n}, a.dtype(), "matmul");
  dispatch(a.dtype(), [&]<class T>() {
    if (k == 0) {
      out.fill_(0.0);
      return;
    }
    detail::gemm(transpose_a, transpose_b, m, n, k, T(1), a.data<T>(), a.dim(1), b.data<T>(), b.dim(1), T(0),
                 out.data<T>(), n);
  });
  return record("matmul", out, {a, b}, [a, b, transpose_a, transpose_b](const Tensor& g, NeedsGrad needs) {
    // C = op(A) op(B): dop(A) = g op(B)^T, dop(B) = op(A)^T g, then mapped back to each stored layout.
    Tensor grad_a, grad_b;
    if (needs[0]) grad_a = transpose_a ? matmul(b, g, transpose_b, true) : matmul(g, b, false, !transpose_b);
    if (needs[1]) grad_b = transpose_b ? matmul(g, a, true, transpose_a) : matmul(a, g, !transpose_a, false);
    return std::vector<Tensor>{grad_a, grad_b};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_binary("linear", x, weight);
  if (x.rank() != 2 || weight.rank() != 2 || x.dim(1) != weight.dim(0)) {
    fail("linear", "needs x (batch, in) and weight (in, out), got {} and {}", x.describe(), weight.describe());
  }
  std::size_t batch = x.dim(0), in = x.dim(1), out_features = weight.dim(1);
  if (bias.defined()) {
    detail::check_binary("linear", x, bias);
    if (!(bias.shape() == Shape{out_features})) {
      fail("linear", "bias {} for weight {} (expected [{}])", bias.describe(), weight.describe(), out_features);
    }
  }
  Tensor out = detail::make_tensor(Shape{batch, out_features}, x.dtype(), "linear");
  dispatch(x.dtype(), [&]<class T>() {
    T* po = out.data<T>();
    if (bias.defined()) {
      const T* pb = bias.data<T>();
      for (std::size_t r = 0; r < batch; ++r) std::copy_n(pb, out_features, po + r * out_features);
    } else {
      std::fill_n(po, batch * out_features, T(0));
    }
    if (in > 0) {
      detail::gemm(false, false, batch, out_features, in, T(1), x.data<T>(), in, weight.data<T>(), out_features, T(1),
                   po, out_features);
    }
  });
  return record("linear", out, {x, weight, bias}, [x, weight, bias](const Tensor& g, NeedsGrad needs) {
    // dX first: it reads the weight, which an optimiser's update inside backward then changes (in_backward.hpp).
    Tensor grad_x = needs[0] ? matmul(g, weight, false, true) : Tensor();
    Tensor grad_w = needs[1] && !detail::update_in_backward(weight, x, g) ? matmul(x, g, true, false) : Tensor();
    return std::vector<Tensor>{grad_x, grad_w, needs[2] ? sum_to(g, bias.shape()) : Tensor()};
  });
}

Tensor transpose(const Tensor& x) {
  detail::check_defined("transpose", x);
  if (x.rank() != 2) fail("transpose", "needs a 2-D tensor, got {}", x.describe());
  std::size_t rows = x.dim(0), cols = x.dim(1);
  Tensor out = detail::make_tensor(Shape{cols, rows}, x.dtype(), "transpose");
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    constexpr std::size_t tile = 32;  // cache blocking
    for (std::size_t r0 = 0; r0 < rows; r0 += tile) {
      for (std::size_t c0 = 0; c0 < cols; c0 += tile) {
        for (std::size_t r = r0; r < std::min(rows, r0 + tile); ++r) {
          for (std::size_t c = c0; c < std::min(cols, c0 + tile); ++c) po[c * rows + r] = px[r * cols + c];
        }
      }
    }
  });
  return record("transpose", out, {x}, [](const Tensor& g, NeedsGrad) { return std::vector<Tensor>{transpose(g)}; });
}

}  // namespace ag
