// conv2d and max_pool2d: the tape's gradients against naive loops written from the hand derivation of
// the lecture notes (forward: direct correlation; dL/dW: correlation of the input with dL/dY; dL/dX: full
// convolution of dL/dY, dilated by the stride, with the kernel flipped 180 degrees), finite differences
// of first and second order in float64, max-pool routing against a hand loop, float32 against float64,
// NaN in max-pool windows, and the errors (sizes that overflow included).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "gradcheck_assertions.hpp"

using namespace ag;

namespace {

using Values = std::vector<double>;

/// One convolution case: x (n, ci, h, w), weight (co, ci, kh, kw).
struct ConvCase {
  std::size_t n, ci, co, h, w, kh, kw, stride, pad;
  bool bias;
  std::size_t ho() const { return (h + 2 * pad - kh) / stride + 1; }
  std::size_t wo() const { return (w + 2 * pad - kw) / stride + 1; }
  std::string str() const {
    return "x [" + std::to_string(n) + ", " + std::to_string(ci) + ", " + std::to_string(h) + ", " +
           std::to_string(w) + "], weight [" + std::to_string(co) + ", " + std::to_string(ci) + ", " +
           std::to_string(kh) + ", " + std::to_string(kw) + "], stride " + std::to_string(stride) + ", padding " +
           std::to_string(pad) + (bias ? ", bias" : ", no bias");
  }
};

// ---------------------------------------------------------------- the oracle: naive loops

/// Zero outside the image.
double at_padded(const Values& x, const ConvCase& c, std::size_t n, std::size_t ch, long i, long j) {
  if (i < 0 || j < 0 || i >= long(c.h) || j >= long(c.w)) return 0.0;
  return x[((n * c.ci + ch) * c.h + std::size_t(i)) * c.w + std::size_t(j)];
}

/// Y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] X[n, c, i s + p - pad, j s + q - pad].
Values naive_forward(const Values& x, const Values& w, const Values& b, const ConvCase& c) {
  Values y(c.n * c.co * c.ho() * c.wo());
  for (std::size_t n = 0; n < c.n; ++n)
    for (std::size_t o = 0; o < c.co; ++o)
      for (std::size_t i = 0; i < c.ho(); ++i)
        for (std::size_t j = 0; j < c.wo(); ++j) {
          double total = c.bias ? b[o] : 0.0;
          for (std::size_t ch = 0; ch < c.ci; ++ch)
            for (std::size_t p = 0; p < c.kh; ++p)
              for (std::size_t q = 0; q < c.kw; ++q)
                total += w[((o * c.ci + ch) * c.kh + p) * c.kw + q] *
                         at_padded(x, c, n, ch, long(i * c.stride + p) - long(c.pad),
                                   long(j * c.stride + q) - long(c.pad));
          y[((n * c.co + o) * c.ho() + i) * c.wo() + j] = total;
        }
  return y;
}

/// dL/dW[o, c, p, q] = sum_{n, i, j} dL/dY[n, o, i, j] X[n, c, i s + p - pad, j s + q - pad]: the correlation
/// of the input with dL/dY.
Values naive_weight_grad(const Values& x, const Values& dy, const ConvCase& c) {
  Values dw(c.co * c.ci * c.kh * c.kw, 0.0);
  for (std::size_t o = 0; o < c.co; ++o)
    for (std::size_t ch = 0; ch < c.ci; ++ch)
      for (std::size_t p = 0; p < c.kh; ++p)
        for (std::size_t q = 0; q < c.kw; ++q) {
          double total = 0;
          for (std::size_t n = 0; n < c.n; ++n)
            for (std::size_t i = 0; i < c.ho(); ++i)
              for (std::size_t j = 0; j < c.wo(); ++j)
                total += dy[((n * c.co + o) * c.ho() + i) * c.wo() + j] *
                         at_padded(x, c, n, ch, long(i * c.stride + p) - long(c.pad),
                                   long(j * c.stride + q) - long(c.pad));
          dw[((o * c.ci + ch) * c.kh + p) * c.kw + q] = total;
        }
  return dw;
}

/// dL/dX: dL/dY dilated by the stride (zeros between its rows and columns), then its full convolution with
/// the kernel, i.e. the full correlation with the kernel rotated 180 degrees, summed over output channels;
/// the result is in padded coordinates, so the padding border is cropped off.
Values naive_input_grad(const Values& dy, const Values& w, const ConvCase& c) {
  std::size_t dh = (c.ho() - 1) * c.stride + 1, dwid = (c.wo() - 1) * c.stride + 1;
  auto dilated = [&](std::size_t n, std::size_t o, long u, long v) -> double {
    if (u < 0 || v < 0 || u >= long(dh) || v >= long(dwid)) return 0.0;
    if (u % long(c.stride) != 0 || v % long(c.stride) != 0) return 0.0;
    return dy[((n * c.co + o) * c.ho() + std::size_t(u) / c.stride) * c.wo() + std::size_t(v) / c.stride];
  };
  Values dx(c.n * c.ci * c.h * c.w, 0.0);
  for (std::size_t n = 0; n < c.n; ++n)
    for (std::size_t ch = 0; ch < c.ci; ++ch)
      for (std::size_t a = 0; a < c.h; ++a)
        for (std::size_t b = 0; b < c.w; ++b) {
          long ap = long(a + c.pad), bp = long(b + c.pad);  // padded coordinates
          double total = 0;
          for (std::size_t o = 0; o < c.co; ++o)
            for (std::size_t pf = 0; pf < c.kh; ++pf)  // flipped kernel index
              for (std::size_t qf = 0; qf < c.kw; ++qf) {
                double flipped = w[((o * c.ci + ch) * c.kh + (c.kh - 1 - pf)) * c.kw + (c.kw - 1 - qf)];
                // The full correlation reads dL/dY zero-padded by k - 1 on each side.
                total += flipped * dilated(n, o, ap + long(pf) - long(c.kh - 1), bp + long(qf) - long(c.kw - 1));
              }
          dx[((n * c.ci + ch) * c.h + a) * c.w + b] = total;
        }
  return dx;
}

/// dL/db[o] = sum of dL/dY over n, i, j.
Values naive_bias_grad(const Values& dy, const ConvCase& c) {
  Values db(c.co, 0.0);
  for (std::size_t n = 0; n < c.n; ++n)
    for (std::size_t o = 0; o < c.co; ++o)
      for (std::size_t k = 0; k < c.ho() * c.wo(); ++k) db[o] += dy[(n * c.co + o) * c.ho() * c.wo() + k];
  return db;
}

double max_abs_diff(const Values& a, const Values& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

double max_abs(const Values& a) {
  double worst = 0;
  for (double v : a) worst = std::max(worst, std::abs(v));
  return worst;
}

/// Equal up to rounding: |a - b| <= tol max(1, max |b|) everywhere.
bool near(const Values& a, const Values& b, double tol = 1e-12) {
  return max_abs_diff(a, b) <= tol * std::max(1.0, max_abs(b));
}

Tensor random(const Shape& shape, Generator& gen, DType dtype = DType::f64) {
  return Tensor::uniform(shape, gen, -1.0, 1.0, dtype);
}

/// Distinct values (a shuffled ramp with gaps of 0.05), so every max is strict and far from a tie.
Tensor distinct(const Shape& shape, Generator& gen) {
  std::vector<double> values(shape.numel());
  std::iota(values.begin(), values.end(), 0.0);
  for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[gen.below(i)]);
  for (double& v : values) v = 0.05 * v - 1.0;
  return Tensor::from_data(shape, std::span<const double>(values));
}

const std::vector<ConvCase> kCases = {
    // n ci co  h  w kh kw s pad bias
    {2, 1, 3, 6, 5, 3, 3, 1, 0, true},   // one channel in (direct kernel), no padding
    {2, 1, 8, 7, 7, 3, 3, 1, 1, false},  // the MNIST first layer's shape, small
    {1, 1, 13, 6, 9, 3, 3, 1, 1, true},  // 8 + 4 + 1 output channels
    {1, 1, 2, 6, 5, 5, 3, 1, 2, true},   // non-square kernel, padding 2
    {1, 1, 2, 4, 4, 2, 2, 1, 2, true},   // padding >= kernel
    {2, 1, 3, 7, 7, 3, 3, 2, 1, true},   // one channel, stride 2
    {2, 3, 4, 7, 6, 3, 3, 1, 1, true},   // many channels (im2col + GEMM)
    {2, 8, 8, 6, 6, 3, 3, 1, 1, false},  // the MNIST second layer's shape, small
    {2, 3, 2, 8, 7, 3, 2, 2, 0, true},   // stride 2, no padding, trailing row and column unused
    {1, 2, 5, 9, 8, 3, 3, 2, 1, false},  // stride 2, padding 1
    {2, 3, 4, 5, 5, 1, 1, 1, 0, true},   // 1x1 kernel
    {1, 2, 3, 5, 6, 4, 4, 3, 2, true},   // stride 3, padding 2
    {3, 1, 2, 2, 3, 1, 1, 1, 0, true},   // rows narrower than one vector
    {3, 1, 5, 4, 37, 3, 3, 1, 1, true},  // rows of several vectors and a tail
    {2, 3, 3, 5, 19, 3, 3, 1, 1, true},  // many channels, rows longer than one vector
    {1, 5, 9, 1, 1, 3, 3, 1, 1, true},   // a 1x1 image inside its padding
    {1, 2, 2, 200, 200, 3, 3, 1, 1, true},  // planes beyond L2 in float64: stride 1 through im2col + GEMM
};

}  // namespace

TEST_CASE("conv2d: forward and gradients match the hand derivation (naive loops)") {
  Generator gen(7);
  for (const ConvCase& c : kCases) {
    CAPTURE(c.str());
    Tensor x = random(Shape{c.n, c.ci, c.h, c.w}, gen).set_requires_grad();
    Tensor w = random(Shape{c.co, c.ci, c.kh, c.kw}, gen).set_requires_grad();
    Tensor b = c.bias ? random(Shape{c.co}, gen).set_requires_grad() : Tensor();
    Tensor y = conv2d(x, w, b, c.stride, c.pad);
    REQUIRE(y.shape() == Shape({c.n, c.co, c.ho(), c.wo()}));
    Values bv = c.bias ? b.to_vector() : Values{};
    CHECK(near(y.to_vector(), naive_forward(x.to_vector(), w.to_vector(), bv, c)));

    Tensor dy = random(y.shape(), gen);
    backward(y, dy);
    Values dyv = dy.to_vector();
    CHECK(near(w.grad().to_vector(), naive_weight_grad(x.to_vector(), dyv, c)));
    CHECK(near(x.grad().to_vector(), naive_input_grad(dyv, w.to_vector(), c)));
    if (c.bias) CHECK(near(b.grad().to_vector(), naive_bias_grad(dyv, c)));
  }
}

TEST_CASE("conv2d direct kernel: every row width 1-33, padded or not, several images, float32 and float64") {
  // The direct kernel copies rows into zero-bordered planes (borders zeroed once per call, so they must stay
  // zero from image to image) and its flat output rows back out, with a tail of every length in both dtypes
  // here; the staged gradient rows' columns past the output must stay zero too (the weight gradient sums them).
  Generator gen(17);
  for (std::size_t w = 1; w <= 33; ++w) {
    for (std::size_t pad : {0, 1}) {
      if (w + 2 * pad < 3) continue;
      for (std::size_t ci : {1, 3}) {
        ConvCase c{3, ci, 9, 5, w, 3, 3, 1, pad, true};
        CAPTURE(c.str());
        Tensor x64 = random(Shape{c.n, c.ci, c.h, c.w}, gen), w64 = random(Shape{c.co, c.ci, c.kh, c.kw}, gen);
        Tensor b64 = random(Shape{c.co}, gen), dy64 = random(Shape{c.n, c.co, c.ho(), c.wo()}, gen);
        Values dyv = dy64.to_vector();
        for (DType dtype : {DType::f32, DType::f64}) {
          CAPTURE(dtype);
          const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
          Tensor x = x64.to(dtype).set_requires_grad(), wt = w64.to(dtype).set_requires_grad();
          Tensor b = b64.to(dtype).set_requires_grad();
          Tensor y = conv2d(x, wt, b, c.stride, c.pad);
          backward(y, dy64.to(dtype));
          CHECK(near(y.to_vector(), naive_forward(x64.to_vector(), w64.to_vector(), b64.to_vector(), c), tol));
          CHECK(near(wt.grad().to_vector(), naive_weight_grad(x64.to_vector(), dyv, c), tol));
          CHECK(near(x.grad().to_vector(), naive_input_grad(dyv, w64.to_vector(), c), tol));
          CHECK(near(b.grad().to_vector(), naive_bias_grad(dyv, c), tol));
        }
      }
    }
  }
}

TEST_CASE("conv2d: float32 matches float64 within 1e-4, forward and backward") {
  Generator gen(11);
  for (const ConvCase& c : kCases) {
    CAPTURE(c.str());
    Tensor x64 = random(Shape{c.n, c.ci, c.h, c.w}, gen);
    Tensor w64 = random(Shape{c.co, c.ci, c.kh, c.kw}, gen);
    Tensor b64 = c.bias ? random(Shape{c.co}, gen) : Tensor();
    Tensor dy64 = random(Shape{c.n, c.co, c.ho(), c.wo()}, gen);
    auto run = [&](DType dtype) {
      Tensor x = x64.to(dtype).set_requires_grad(), w = w64.to(dtype).set_requires_grad();
      Tensor b = c.bias ? b64.to(dtype).set_requires_grad() : Tensor();
      Tensor y = conv2d(x, w, b, c.stride, c.pad);
      CHECK(y.dtype() == dtype);
      backward(y, dy64.to(dtype));
      CHECK(w.grad().dtype() == dtype);
      return std::vector<Values>{y.to_vector(), x.grad().to_vector(), w.grad().to_vector(),
                                 c.bias ? b.grad().to_vector() : Values{}};
    };
    std::vector<Values> single = run(DType::f32), twice = run(DType::f64);
    for (std::size_t k = 0; k < single.size(); ++k) {
      CAPTURE(k);
      CHECK(near(single[k], twice[k], 1e-4));
    }
  }
}

TEST_CASE("conv2d: only the gradients that are needed, and none without a tape") {
  Generator gen(3);
  for (std::size_t ci : {1, 3}) {
    Tensor x = random(Shape{2, ci, 6, 6}, gen);  // an input image: no gradient wanted
    Tensor w = random(Shape{4, ci, 3, 3}, gen).set_requires_grad();
    Tensor b = random(Shape{4}, gen);
    Tensor y = conv2d(x, w, b, 1, 1);
    CHECK(y.requires_grad());
    backward(sum(y));
    CHECK(w.grad().defined());
    CHECK_FALSE(x.grad().defined());
    CHECK_FALSE(b.grad().defined());
    // The bias alone: the sum of the output gradient over N, H, W (here all ones: N H W per channel).
    Tensor b2 = Tensor::zeros(Shape{4}, DType::f64).set_requires_grad();
    backward(sum(conv2d(x, w.detach(), b2, 1, 1)));
    CHECK(b2.grad().to_vector() == Values(4, 2.0 * 6 * 6));
    {
      NoGradGuard guard;
      CHECK_FALSE(conv2d(x, w, b, 1, 1).requires_grad());
      CHECK(tape_size() == 0);
    }
  }
}

TEST_CASE("conv2d: with create_graph, the differentiable backward gives the fast kernels' gradients") {
  Generator gen(41);
  for (std::size_t stride : {1, 2}) {
    Tensor x = random(Shape{2, 3, 7, 6}, gen).set_requires_grad();
    Tensor w = random(Shape{4, 3, 3, 3}, gen).set_requires_grad();
    Tensor b = random(Shape{4}, gen).set_requires_grad();
    Tensor y = conv2d(x, w, b, stride, 1);
    Tensor dy = random(y.shape(), gen);
    std::vector<Tensor> fast = grad({y}, {x, w, b}, {dy}, {.retain_graph = true});
    std::vector<Tensor> taped = grad({y}, {x, w, b}, {dy}, {.create_graph = true});
    for (std::size_t i = 0; i < 3; ++i) {
      CAPTURE(i);
      CHECK_FALSE(fast[i].requires_grad());
      if (i < 2) CHECK(taped[i].requires_grad());  // dx depends on w, dw on x; db = sum(dy) on neither
      CHECK(near(fast[i].to_vector(), taped[i].to_vector()));
    }
    release_tape();
  }
}

TEST_CASE("conv2d: a weight used twice receives both contributions") {
  Generator gen(5);
  Tensor x = random(Shape{1, 1, 5, 5}, gen);
  Tensor w = random(Shape{1, 1, 3, 3}, gen);
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) {
    return conv2d(conv2d(x, in[0], Tensor(), 1, 1), in[0], Tensor(), 1, 1);
  }, {w});
}

TEST_CASE("conv2d: gradcheck (float64, central differences)") {
  Generator gen(17);
  for (const ConvCase& c : std::vector<ConvCase>{{2, 1, 3, 5, 5, 3, 3, 1, 1, true},
                                                 {2, 2, 3, 5, 4, 3, 3, 1, 1, true},
                                                 {1, 2, 2, 6, 5, 3, 2, 2, 0, true},
                                                 {2, 1, 2, 5, 5, 3, 3, 2, 1, false}}) {
    CAPTURE(c.str());
    std::vector<Tensor> inputs{random(Shape{c.n, c.ci, c.h, c.w}, gen), random(Shape{c.co, c.ci, c.kh, c.kw}, gen)};
    if (c.bias) inputs.push_back(random(Shape{c.co}, gen));
    CHECK_GRADCHECK([&](const std::vector<Tensor>& in) {
      return conv2d(in[0], in[1], c.bias ? in[2] : Tensor(), c.stride, c.pad);
    }, inputs);
  }
}

TEST_CASE("conv2d: second derivatives (gradgradcheck)") {
  Generator gen(19);
  for (const ConvCase& c : std::vector<ConvCase>{{2, 1, 3, 5, 5, 3, 3, 1, 1, true},
                                                 {1, 2, 3, 5, 4, 3, 3, 1, 1, true},
                                                 {1, 2, 2, 6, 5, 3, 2, 2, 0, true}}) {
    CAPTURE(c.str());
    Tensor x = random(Shape{c.n, c.ci, c.h, c.w}, gen), w = random(Shape{c.co, c.ci, c.kh, c.kw}, gen);
    Tensor b = random(Shape{c.co}, gen);
    // Bilinear: the cross terms between input and weight (the bias enters linearly: no second derivative).
    CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], b, c.stride, c.pad); },
                        {x, w});
    // Squared: the output gradient depends on every input, so each backward op is differentiated again.
    CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) {
      Tensor y = conv2d(in[0], in[1], in[2], c.stride, c.pad);
      return mul(y, y);
    }, {x, w, b});
  }
}

TEST_CASE("conv2d: a Hessian-vector product of a small two-layer net") {
  Generator gen(23);
  Tensor x = random(Shape{2, 1, 6, 6}, gen);
  std::vector<Tensor> params{random(Shape{2, 1, 3, 3}, gen), random(Shape{2}, gen), random(Shape{3, 2, 3, 3}, gen)};
  CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) {
    Tensor h = tanh(conv2d(x, in[0], in[1], 1, 1));
    Tensor out = conv2d(h, in[2], Tensor(), 1, 0);
    return mul(out, out);
  }, params);
}

TEST_CASE("conv2d: errors name the op and the shapes") {
  Tensor x = Tensor::zeros(Shape{2, 3, 5, 5});
  Tensor w = Tensor::zeros(Shape{4, 3, 3, 3});
  Tensor b = Tensor::zeros(Shape{4});
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros(Shape{3, 5, 5}), w, b), doctest::Contains("conv2d"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 27}), b), doctest::Contains("conv2d"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 2, 3, 3}), b),
                       doctest::Contains("conv2d: input [2, 3, 5, 5] has 3 channels but weight [4, 2, 3, 3]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 3, 6, 6}), b), doctest::Contains("larger than the padded"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 3, 8, 3}), b, 1, 1), doctest::Contains("conv2d"),
                       std::invalid_argument);
  CHECK(conv2d(x, Tensor::zeros(Shape{4, 3, 7, 7}), b, 1, 1).shape() == Shape{2, 4, 1, 1});  // exactly fits the padding
  CHECK_THROWS_WITH_AS(conv2d(x, w, b, 0), doctest::Contains("conv2d: stride must be positive"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor::zeros(Shape{3})), doctest::Contains("conv2d: bias f32[3]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor::zeros(Shape{1, 4})), doctest::Contains("conv2d"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w.to(DType::f64), b), doctest::Contains("conv2d: dtypes differ"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w, b.to(DType::f64)), doctest::Contains("conv2d: dtypes differ"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(Tensor(), w, b), doctest::Contains("conv2d"), std::invalid_argument);
}

// ---------------------------------------------------------------- max_pool2d

namespace {

struct PoolCase {
  std::size_t n, c, h, w, kernel, stride;
};

}  // namespace

TEST_CASE("max_pool2d: values and gradient routing against a hand loop") {
  Generator gen(29);
  for (const PoolCase& pc : std::vector<PoolCase>{{2, 3, 6, 6, 2, 2},
                                                  {1, 2, 7, 5, 2, 2},    // odd extents: last row/column unused
                                                  {2, 2, 7, 7, 3, 2},    // overlapping windows
                                                  {1, 2, 5, 6, 2, 1},    // stride 1
                                                  {1, 1, 8, 7, 3, 3},    // kernel 3, remainder
                                                  {1, 2, 4, 4, 4, 4}}) {  // one window
    CAPTURE(pc.kernel);
    CAPTURE(pc.stride);
    std::size_t ho = (pc.h - pc.kernel) / pc.stride + 1, wo = (pc.w - pc.kernel) / pc.stride + 1;
    for (DType dtype : {DType::f64, DType::f32}) {
      Tensor x = distinct(Shape{pc.n, pc.c, pc.h, pc.w}, gen).to(dtype).set_requires_grad();
      Tensor y = max_pool2d(x, pc.kernel, pc.stride == pc.kernel ? 0 : pc.stride);
      REQUIRE(y.shape() == Shape({pc.n, pc.c, ho, wo}));
      Tensor dy = random(y.shape(), gen, dtype);
      backward(y, dy);
      Values xv = x.to_vector(), dyv = dy.to_vector(), expected_y(y.numel()), expected_dx(x.numel(), 0.0);
      for (std::size_t plane = 0; plane < pc.n * pc.c; ++plane)
        for (std::size_t i = 0; i < ho; ++i)
          for (std::size_t j = 0; j < wo; ++j) {
            std::size_t best = plane * pc.h * pc.w + i * pc.stride * pc.w + j * pc.stride;
            for (std::size_t p = 0; p < pc.kernel; ++p)
              for (std::size_t q = 0; q < pc.kernel; ++q) {
                std::size_t k = plane * pc.h * pc.w + (i * pc.stride + p) * pc.w + j * pc.stride + q;
                if (xv[k] > xv[best]) best = k;
              }
            std::size_t o = (plane * ho + i) * wo + j;
            expected_y[o] = xv[best];
            expected_dx[best] += dyv[o];  // overlapping windows add up
          }
      CHECK(y.to_vector() == expected_y);
      CHECK(max_abs_diff(x.grad().to_vector(), expected_dx) < 1e-6);
    }
  }
}

TEST_CASE("max_pool2d: ties go to the first maximum of the window") {
  Tensor x = Tensor::from_data(Shape{1, 1, 2, 4}, {1, 1, 0, 2, 1, 1, 2, 2}, DType::f64).set_requires_grad();
  Tensor y = max_pool2d(x, 2);
  CHECK(y.to_vector() == Values{1, 2});
  backward(y, Tensor::from_data(Shape{1, 1, 1, 2}, {10, 20}, DType::f64));
  CHECK(x.grad().to_vector() == Values{10, 0, 0, 20, 0, 0, 0, 0});
}

TEST_CASE("max_pool2d: gradcheck and gradgradcheck (distinct values, away from ties)") {
  Generator gen(31);
  for (const PoolCase& pc : std::vector<PoolCase>{{2, 2, 6, 5, 2, 2}, {1, 2, 7, 7, 3, 2}}) {
    CAPTURE(pc.kernel);
    Tensor x = distinct(Shape{pc.n, pc.c, pc.h, pc.w}, gen);
    std::size_t stride = pc.stride;
    CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], pc.kernel, stride); }, {x});
    // Piecewise linear: the second derivative of the max alone is zero everywhere.
    CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], pc.kernel, stride); }, {x},
                        GradcheckOptions{.allow_all_zero = true});
    // Squared: the second derivative runs through the routing of the gradient and its gather.
    CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) {
      Tensor y = max_pool2d(in[0], pc.kernel, stride);
      return mul(y, y);
    }, {x});
  }
}

TEST_CASE("conv2d + relu + max_pool2d: a small W2-shaped block, first and second order") {
  Generator gen(37);
  Tensor x = random(Shape{2, 1, 6, 6}, gen);
  std::vector<Tensor> params{random(Shape{3, 1, 3, 3}, gen), random(Shape{3}, gen), random(Shape{2, 3, 3, 3}, gen)};
  auto net = [&](const std::vector<Tensor>& in) {
    Tensor h = max_pool2d(tanh(conv2d(x, in[0], in[1], 1, 1)), 2);
    return max_pool2d(conv2d(h, in[2], Tensor(), 1, 1), 3, 1);
  };
  CHECK_GRADCHECK(net, params);
  CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) {
    Tensor y = net(in);
    return mul(y, y);
  }, params);
}

TEST_CASE("max_pool2d: errors name the op and the shapes") {
  Tensor x = Tensor::zeros(Shape{1, 2, 3, 4});
  CHECK_THROWS_WITH_AS(max_pool2d(x, 4),
                       doctest::Contains("max_pool2d: window 4x4 is larger than the input f32[1, 2, 3, 4]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(max_pool2d(x, 0), doctest::Contains("max_pool2d"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(max_pool2d(Tensor::zeros(Shape{2, 3, 4}), 2), doctest::Contains("max_pool2d"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(max_pool2d(Tensor(), 2), doctest::Contains("max_pool2d"), std::invalid_argument);
  CHECK(max_pool2d(x, 3).shape() == Shape{1, 2, 1, 1});
}

// ---------------------------------------------------------------- NaN in max_pool2d, huge sizes

TEST_CASE("max_pool2d: a window holding a NaN gives NaN wherever the NaN is, its gradient to the (last) NaN") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // The 2x2 window {1, NaN, 2, 3} used to give 3 while {NaN, 1, 2, 3} gave NaN. As PyTorch's
  // `val > maxval || isnan(val)` scan: NaN wherever it is, and of two NaNs the last takes the gradient.
  struct Window {
    Values values;
    std::size_t winner;
  };
  const std::vector<Window> windows{{{nan, 1, 2, 3}, 0}, {{1, nan, 2, 3}, 1}, {{1, 2, nan, 3}, 2},
                                    {{1, 2, 3, nan}, 3}, {{nan, 1, nan, 3}, 2}, {{nan, nan, nan, nan}, 3},
                                    {{3, 3, 1, 3}, 0}};
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const Window& window : windows) {
      for (std::size_t kernel_stride : {0, 1}) {  // the 2x2 fast path, and the general loop (stride 1)
        INFO("window " << window.values[0] << " " << window.values[1] << " " << window.values[2] << " "
                       << window.values[3] << ", " << dtype_name(dtype) << ", stride " << kernel_stride);
        Tensor x = Tensor::from_data(Shape{1, 1, 2, 2}, std::span<const double>(window.values)).to(dtype);
        x.set_requires_grad();
        Tensor y = max_pool2d(x, 2, kernel_stride);
        bool has_nan = std::any_of(window.values.begin(), window.values.end(), [](double v) { return v != v; });
        CHECK(std::isnan(y.item()) == has_nan);
        backward(sum(y));
        Values expected(4, 0.0);
        expected[window.winner] = 1.0;
        CHECK(x.grad().to_vector() == expected);
      }
    }
  }
}

TEST_CASE("max_pool2d 2x2: rows of every width, many ties, some NaN, against the exact scan, float and double") {
  // The 2x2 kernels work 8 windows at a time (the last block overlapping, or masked below 8) where the CPU
  // allows, forward and backward: every output width from 1 to 37, odd input extents (a last row and column
  // outside every window), values from {-2, -1, ±0, 1, 2} (ties in most windows, +0 against -0 among
  // them), gradients of -0.
  Generator gen(43);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (std::size_t w = 2; w <= 75; ++w) {
      CAPTURE(w);
      const std::size_t h = 5, planes = 3, ho = h / 2, wo = w / 2;
      Values xv(planes * h * w);
      for (double& v : xv) {
        v = std::floor(gen.uniform01() * 5.0) - 2.0;
        if (v == 0.0 && gen.uniform01() < 0.5) v = -0.0;  // ties of +0 and -0: the first one wins, sign included
      }
      if (w % 5 == 0) xv[w + 3] = std::numeric_limits<double>::quiet_NaN();  // one row falls back to the exact scan
      Tensor x = Tensor::from_data(Shape{1, planes, h, w}, std::span<const double>(xv)).to(dtype).set_requires_grad();
      Tensor y = max_pool2d(x, 2);
      Values signed_zeros = random(y.shape(), gen, DType::f64).to_vector();
      for (std::size_t k = 0; k < signed_zeros.size(); k += 3) signed_zeros[k] = -0.0;  // lands as 0 + -0 = +0
      Tensor dy = Tensor::from_data(y.shape(), std::span<const double>(signed_zeros)).to(dtype);
      backward(y, dy);
      Values yv = y.to_vector(), dyv = dy.to_vector(), dx(x.numel(), 0.0);
      bool same = true;
      for (std::size_t plane = 0, o = 0; plane < planes; ++plane)
        for (std::size_t i = 0; i < ho; ++i)
          for (std::size_t j = 0; j < wo; ++j, ++o) {
            std::size_t first = plane * h * w + 2 * i * w + 2 * j, best = first;
            for (std::size_t k : {first, first + 1, first + w, first + w + 1}) {
              if (xv[k] > xv[best] || xv[k] != xv[k]) best = k;
            }
            same = same && (std::isnan(yv[o]) ? std::isnan(xv[best])
                                              : yv[o] == xv[best] && std::signbit(yv[o]) == std::signbit(xv[best]));
            dx[best] += dyv[o];
          }
      CHECK(same);
      const Values grad = x.grad().to_vector();
      CHECK(grad == dx);
      bool same_signs = true;
      for (std::size_t k = 0; k < dx.size(); ++k) same_signs = same_signs && std::signbit(grad[k]) == std::signbit(dx[k]);
      CHECK(same_signs);
    }
  }
}

TEST_CASE("max_pool2d: NaN in every lane of the 2x2 fast path, values and routing against a hand scan") {
  Generator gen(41);
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = random(Shape{2, 3, 8, 38}, gen, dtype);
    for (std::size_t i = 0; i < x.numel(); i += 7) {
      if (dtype == DType::f32) {
        x.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
      } else {
        x.data<double>()[i] = std::numeric_limits<double>::quiet_NaN();
      }
    }
    x.set_requires_grad();
    Tensor y = max_pool2d(x, 2);
    backward(sum(y));
    Values xv = x.to_vector(), yv = y.to_vector(), dx(x.numel(), 0.0);
    std::size_t o = 0;
    for (std::size_t plane = 0; plane < 6; ++plane)
      for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 19; ++j, ++o) {
          std::size_t first = plane * 8 * 38 + 2 * i * 38 + 2 * j, best = first;
          for (std::size_t k : {first, first + 1, first + 38, first + 39}) {
            if (xv[k] > xv[best] || xv[k] != xv[k]) best = k;
          }
          INFO("output " << o);
          CHECK((std::isnan(yv[o]) ? std::isnan(xv[best]) : yv[o] == xv[best]));
          dx[best] += 1.0;
        }
    CHECK(x.grad().to_vector() == dx);
  }
}

TEST_CASE("conv2d and max_pool2d: padding, stride and kernel of any size are refused or computed, never wrapped") {
  Tensor x = Tensor::ones(Shape{1, 1, 4, 4});
  Tensor w = Tensor::ones(Shape{1, 1, 3, 3});
  for (std::size_t huge : {std::size_t{1} << 62, std::size_t{1} << 63, SIZE_MAX}) {
    CAPTURE(huge);
    CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, huge), doctest::Contains("conv2d: padding"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), huge, 0), doctest::Contains("conv2d: padding 0 and stride"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(max_pool2d(x, huge), doctest::Contains("max_pool2d: window"), std::invalid_argument);
  }
  // A stride beyond the input: one output per plane, as the formula says.
  CHECK(max_pool2d(x, 2, std::size_t{1} << 63).shape() == Shape({1, 1, 1, 1}));
  CHECK(conv2d(x, w, Tensor(), (std::size_t{1} << 62) - 1, 0).shape() == Shape({1, 1, 1, 1}));
  // A large padding and stride that give a small output, through the im2col path.
  // Outputs at -2^40, 0 and 2^40 of the padded input: only the middle one sees the image.
  Tensor y = conv2d(x, w, Tensor(), std::size_t{1} << 40, std::size_t{1} << 40);
  CHECK(y.shape() == Shape({1, 1, 3, 3}));
  CHECK(y.to_vector() == Values{0, 0, 0, 0, 9, 0, 0, 0, 0});
  // An output that fits in 64 bits but not in memory: a named allocation error, not a bare std::bad_alloc.
  try {
    (void)conv2d(x, w, Tensor(), 1, std::size_t{1} << 30);
    FAIL("a 16 EiB output was allocated");
  } catch (const std::exception& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("conv2d") != std::string::npos);
  }
}

/// Equal element by element, zeros' signs included, NaN where the other has NaN.
bool same_bits(const Values& a, const Values& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return false;
    if (!std::isnan(a[i]) && (a[i] != b[i] || std::signbit(a[i]) != std::signbit(b[i]))) return false;
  }
  return true;
}

TEST_CASE("conv2d_max_pool2d: the values and gradients of max_pool2d([relu](conv2d(...)), 2), bit for bit") {
  // Fused (direct kernel: stride 1) and not (stride 2, im2col); odd and even output extents; gradients for
  // the weights alone (the first-layer backward that never builds the convolution's gradient), with the
  // input's, or for the bias alone; first order, or through create_graph with infinite upstream gradients
  // (inf times relu's 0 is NaN: where it lands shows the routing); ties and a NaN in the pooled windows (a
  // zero kernel makes plane 0 the bias everywhere).
  Generator gen(53);
  for (const ConvCase& c : std::vector<ConvCase>{{3, 1, 8, 28, 28, 3, 3, 1, 1, true},
                                                 {2, 8, 8, 14, 14, 3, 3, 1, 1, true},
                                                 {2, 3, 13, 9, 11, 3, 3, 1, 0, false},
                                                 {2, 2, 5, 7, 6, 3, 3, 1, 1, true},
                                                 {2, 2, 3, 9, 9, 3, 3, 2, 1, true}}) {
    for (DType dtype : {DType::f32, DType::f64}) {
      for (int variant = 0; variant < 12; ++variant) {
        const int wants = variant % 3;  // 0: weights, 1: weights and input, 2: bias alone
        const bool relu = variant / 3 % 2 == 1, graph = variant >= 6;
        if (wants == 2 && !c.bias) continue;
        CAPTURE(c.str());
        CAPTURE(dtype);
        CAPTURE(wants);
        CAPTURE(relu);
        CAPTURE(graph);
        Values xv = random(Shape{c.n, c.ci, c.h, c.w}, gen).to_vector(), wv = random(Shape{c.co, c.ci, c.kh, c.kw}, gen).to_vector();
        xv[5] = std::numeric_limits<double>::quiet_NaN();
        std::fill_n(wv.begin(), c.ci * c.kh * c.kw, 0.0);  // output plane 0: ties everywhere
        Tensor x0 = Tensor::from_data(Shape{c.n, c.ci, c.h, c.w}, std::span<const double>(xv)).to(dtype);
        Tensor w0 = Tensor::from_data(Shape{c.co, c.ci, c.kh, c.kw}, std::span<const double>(wv)).to(dtype);
        Tensor b0 = c.bias ? random(Shape{c.co}, gen, dtype) : Tensor();
        auto run = [&](bool fused) {
          Tensor x = x0.clone().set_requires_grad(wants == 1), w = w0.clone().set_requires_grad(wants != 2);
          Tensor b = c.bias ? b0.clone().set_requires_grad(wants == 2) : Tensor();
          Tensor y = fused ? conv2d_max_pool2d(x, w, b, c.stride, c.pad, relu)
                  : relu ? max_pool2d(ag::relu(conv2d(x, w, b, c.stride, c.pad)), 2)
                         : max_pool2d(conv2d(x, w, b, c.stride, c.pad), 2);
          Values dv = random(y.shape(), gen).to_vector();
          if (graph) {
            for (std::size_t k = 0; k < dv.size(); k += 5) dv[k] = std::numeric_limits<double>::infinity();
          }
          Tensor dy = Tensor::from_data(y.shape(), std::span<const double>(dv)).to(dtype);
          std::vector<Tensor> wanted = wants == 2 ? std::vector<Tensor>{b} : std::vector<Tensor>{w};
          if (wants == 1) wanted.push_back(x);
          std::vector<Values> out{y.to_vector()};
          for (const Tensor& g : grad({y}, wanted, {dy}, {.create_graph = graph})) out.push_back(g.to_vector());
          return out;
        };
        Generator saved = gen;
        std::vector<Values> fused = run(true);
        gen = saved;  // the same upstream gradient for both
        std::vector<Values> reference = run(false);
        REQUIRE(fused.size() == reference.size());
        for (std::size_t k = 0; k < fused.size(); ++k) {
          CAPTURE(k);
          CHECK(same_bits(fused[k], reference[k]));
        }
      }
    }
  }
}

TEST_CASE("conv2d_max_pool2d: gradcheck and gradgradcheck (float64)") {
  Generator gen(59);
  Tensor x = distinct(Shape{2, 2, 6, 5}, gen), w = random(Shape{3, 2, 3, 3}, gen), b = random(Shape{3}, gen);
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_max_pool2d(in[0], in[1], in[2], 1, 1); },
                  {x, w, b});
  CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) {
    Tensor y = conv2d_max_pool2d(in[0], in[1], in[2], 1, 1);
    return mul(y, y);
  }, {x, w, b});
  // The weight alone (no input gradient: the fused first-layer backward on the first order).
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_max_pool2d(x, in[0], in[1], 1, 1); }, {w, b});
  // With relu: the bias shifted so that some pooled maxima are negative (their gradient is zero), none
  // within the differences' reach of relu's kink.
  Tensor shifted = sub(b, Tensor::full(Shape{3}, 0.5, DType::f64));
  Values maxima = conv2d_max_pool2d(x, w, shifted, 1, 1).to_vector();
  CHECK(std::count_if(maxima.begin(), maxima.end(), [](double v) { return v < 0.0; }) > 0);
  CHECK(std::all_of(maxima.begin(), maxima.end(), [](double v) { return std::abs(v) > 0.01; }));
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_max_pool2d(in[2], in[0], in[1], 1, 1, true); },
                  {w, shifted, x});
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_max_pool2d(x, in[0], in[1], 1, 1, true); },
                  {w, shifted});
  CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& in) {
    Tensor y = conv2d_max_pool2d(in[0], in[1], in[2], 1, 1, true);
    return mul(y, y);
  }, {x, w, shifted});
}
