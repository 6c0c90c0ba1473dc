// conv2d's general path (rectangular strides and paddings, dilation, groups): forward values against a naive
// seven-loop reference, the general path against the fast kernels where both apply, finite differences of
// first and second order in float64, NaN propagation, and the errors; nn::Conv2d's options form.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "autograd/detail/conv.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "gradcheck_assertions.hpp"
#include "nn/layers.hpp"

using namespace ag;

namespace {

using Values = std::vector<double>;

/// x (n, ci, h, w), weight (co, ci / groups, kh, kw).
struct Case {
  std::size_t n, ci, co, h, w, kh, kw;
  Size2 stride, padding, dilation;
  std::size_t groups;
  std::size_t out(std::size_t d, std::size_t extent, std::size_t k) const {
    return (extent + 2 * padding[d] - dilation[d] * (k - 1) - 1) / stride[d] + 1;
  }
  std::size_t ho() const { return out(0, h, kh); }
  std::size_t wo() const { return out(1, w, kw); }
  Shape x_shape() const { return Shape{n, ci, h, w}; }
  Shape w_shape() const { return Shape{co, ci / groups, kh, kw}; }
  std::string str() const {
    return "x [" + std::to_string(n) + ", " + std::to_string(ci) + ", " + std::to_string(h) + ", " +
           std::to_string(w) + "], weight [" + std::to_string(co) + ", " + std::to_string(ci / groups) + ", " +
           std::to_string(kh) + ", " + std::to_string(kw) + "], stride " + std::to_string(stride[0]) + "x" +
           std::to_string(stride[1]) + ", padding " + std::to_string(padding[0]) + "x" + std::to_string(padding[1]) +
           ", dilation " + std::to_string(dilation[0]) + "x" + std::to_string(dilation[1]) + ", groups " +
           std::to_string(groups);
  }
};

/// The seven loops of the definition (n, o, i, j, c, p, q); zero outside the image.
Values naive_conv(const Values& x, const Values& w, const Values& b, const Case& c) {
  std::size_t cig = c.ci / c.groups, cog = c.co / c.groups;
  Values y(c.n * c.co * c.ho() * c.wo());
  for (std::size_t n = 0; n < c.n; ++n)
    for (std::size_t o = 0; o < c.co; ++o)
      for (std::size_t i = 0; i < c.ho(); ++i)
        for (std::size_t j = 0; j < c.wo(); ++j) {
          double total = b.empty() ? 0.0 : b[o];
          for (std::size_t ch = 0; ch < cig; ++ch)
            for (std::size_t p = 0; p < c.kh; ++p)
              for (std::size_t q = 0; q < c.kw; ++q) {
                long r = long(i * c.stride[0] + p * c.dilation[0]) - long(c.padding[0]);
                long s = long(j * c.stride[1] + q * c.dilation[1]) - long(c.padding[1]);
                if (r < 0 || s < 0 || r >= long(c.h) || s >= long(c.w)) continue;
                std::size_t in_ch = o / cog * cig + ch;
                total += w[((o * cig + ch) * c.kh + p) * c.kw + q] *
                         x[((n * c.ci + in_ch) * c.h + std::size_t(r)) * c.w + std::size_t(s)];
              }
          y[((n * c.co + o) * c.ho() + i) * c.wo() + j] = total;
        }
  return y;
}

Tensor random(const Shape& shape, Generator& gen) { return Tensor::uniform(shape, gen, -1.0, 1.0, DType::f64); }

/// |a - b| <= tol max(1, |b|) everywhere, NaN where the other is NaN.
bool near(const Values& a, const Values& b, double tol = 1e-12) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (std::isnan(a[i]) != std::isnan(b[i])) return false;
      continue;
    }
    if (std::abs(a[i] - b[i]) > tol * std::max(1.0, std::abs(b[i]))) return false;
  }
  return true;
}

Tensor run(const Case& c, const std::vector<Tensor>& in) {
  return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), c.stride, c.padding, c.dilation, c.groups);
}

const std::vector<Case> kCases = {
    // n ci co  h  w kh kw  stride  padding dilation groups
    {2, 2, 3, 7, 6, 3, 2, {1, 2}, {1, 0}, {1, 1}, 1},  // rectangular kernel, stride per axis
    {1, 3, 2, 6, 8, 2, 4, {2, 1}, {0, 2}, {1, 1}, 1},  // padding per axis
    {2, 2, 3, 8, 7, 3, 3, {1, 1}, {1, 1}, {2, 2}, 1},  // dilation 2
    {1, 2, 2, 9, 7, 3, 2, {2, 1}, {2, 1}, {2, 3}, 1},  // dilation per axis, larger than the padding
    {2, 4, 6, 5, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2},  // groups 2
    {2, 3, 3, 6, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 3},  // depthwise (groups = C)
    {1, 3, 6, 6, 7, 3, 3, {2, 2}, {1, 1}, {1, 1}, 3},  // depthwise with a channel multiplier 2, stride 2
    {2, 4, 4, 9, 8, 3, 2, {2, 1}, {2, 1}, {2, 1}, 2},  // everything at once
    {1, 4, 2, 7, 7, 1, 1, {3, 2}, {0, 1}, {1, 1}, 2},  // 1x1 kernel, groups, strides beyond the kernel
    {1, 2, 2, 3, 3, 3, 3, {1, 1}, {2, 2}, {2, 2}, 1},  // a dilated kernel that only fits thanks to the padding
};

}  // namespace

TEST_CASE("conv2d general: forward values against the seven-loop reference, with and without bias") {
  Generator gen(101);
  for (const Case& c : kCases) {
    CAPTURE(c.str());
    Tensor x = random(c.x_shape(), gen), w = random(c.w_shape(), gen), b = random(Shape{c.co}, gen);
    Tensor y = run(c, {x, w, b});
    REQUIRE(y.shape() == Shape({c.n, c.co, c.ho(), c.wo()}));
    CHECK(near(y.to_vector(), naive_conv(x.to_vector(), w.to_vector(), b.to_vector(), c)));
    CHECK(near(run(c, {x, w}).to_vector(), naive_conv(x.to_vector(), w.to_vector(), {}, c)));
    // float32 within rounding of float64.
    Tensor y32 = run(c, {x.to(DType::f32), w.to(DType::f32), b.to(DType::f32)});
    CHECK(y32.dtype() == DType::f32);
    CHECK(near(y32.to_vector(), y.to_vector(), 1e-5));
  }
}

TEST_CASE("conv2d general: images of several chunks of output rows, values and gradients against the reference") {
  Generator gen(139);
  // 18 taps x 45 columns a row: 80 rows to a chunk of 64k elements, so 95 rows make two chunks.
  Case c{2, 4, 4, 97, 90, 3, 3, {1, 2}, {1, 1}, {2, 1}, 2};
  CAPTURE(c.str());
  REQUIRE(c.ho() == 95);
  Tensor x = random(c.x_shape(), gen).set_requires_grad(), w = random(c.w_shape(), gen).set_requires_grad();
  Tensor y = run(c, {x, w});
  CHECK(near(y.to_vector(), naive_conv(x.to_vector(), w.to_vector(), {}, c)));
  // The gradients are the reference's adjoints: <dy, conv(dx', w)> for unit directions is costly, so check the
  // identity <dy, y(x, w)> = <dx, x> = <dw, w> that a bilinear map's gradients satisfy.
  Tensor dy = random(y.shape(), gen);
  backward(y, dy);
  auto dot = [](const Values& a, const Values& b) {
    double total = 0;
    for (std::size_t i = 0; i < a.size(); ++i) total += a[i] * b[i];
    return total;
  };
  double expected = dot(dy.to_vector(), y.to_vector());
  CHECK(std::abs(dot(x.grad().to_vector(), x.to_vector()) - expected) <= 1e-9 * std::abs(expected));
  CHECK(std::abs(dot(w.grad().to_vector(), w.to_vector()) - expected) <= 1e-9 * std::abs(expected));
}

TEST_CASE("conv2d general: gradcheck and gradgradcheck (float64) of every case") {
  Generator gen(103);
  for (const Case& c : kCases) {
    CAPTURE(c.str());
    std::vector<Tensor> in{random(c.x_shape(), gen), random(c.w_shape(), gen), random(Shape{c.co}, gen)};
    CHECK_GRADCHECK([&](const std::vector<Tensor>& v) { return run(c, v); }, in);
    // Bilinear: the cross terms between input and weight.
    CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& v) { return run(c, {v[0], v[1], in[2]}); },
                        {in[0], in[1]});
    // Squared: every backward op differentiated again.
    CHECK_GRADGRADCHECK([&](const std::vector<Tensor>& v) {
      Tensor y = run(c, v);
      return mul(y, y);
    }, in);
  }
}

TEST_CASE("conv2d general: with and without create_graph, the same gradients") {
  Generator gen(107);
  const Case& c = kCases[7];
  Tensor x = random(c.x_shape(), gen).set_requires_grad(), w = random(c.w_shape(), gen).set_requires_grad();
  Tensor b = random(Shape{c.co}, gen).set_requires_grad();
  Tensor y = run(c, {x, w, b});
  Tensor dy = random(y.shape(), gen);
  std::vector<Tensor> plain = grad({y}, {x, w, b}, {dy}, {.retain_graph = true});
  std::vector<Tensor> taped = grad({y}, {x, w, b}, {dy}, {.create_graph = true});
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK_FALSE(plain[i].requires_grad());
    if (i < 2) CHECK(taped[i].requires_grad());
    CHECK(near(plain[i].to_vector(), taped[i].to_vector()));
  }
  release_tape();
}

TEST_CASE("conv2d general: equals the fast kernels on the cases both handle, values and gradients") {
  Generator gen(109);
  struct Fast {
    std::size_t n, ci, co, h, w, kh, kw, stride, pad;
  };
  for (const Fast& f : std::vector<Fast>{{2, 1, 3, 6, 5, 3, 3, 1, 0},
                                         {2, 3, 4, 7, 6, 3, 3, 1, 1},
                                         {1, 2, 5, 9, 8, 3, 3, 2, 1},
                                         {1, 1, 2, 6, 5, 5, 3, 1, 2},
                                         {1, 2, 2, 4, 4, 2, 2, 1, 2},
                                         {2, 3, 2, 90, 80, 3, 3, 1, 1}}) {  // several chunks of output rows
    CAPTURE(f.ci);
    CAPTURE(f.stride);
    CAPTURE(f.pad);
    Tensor x = random(Shape{f.n, f.ci, f.h, f.w}, gen), w = random(Shape{f.co, f.ci, f.kh, f.kw}, gen);
    Tensor b = random(Shape{f.co}, gen), dy;
    std::vector<Values> results[2];
    for (int general = 0; general < 2; ++general) {
      Tensor xr = x.detach().set_requires_grad(), wr = w.detach().set_requires_grad();
      Tensor br = b.detach().set_requires_grad();
      Size2 s{f.stride, f.stride}, p{f.pad, f.pad};
      Tensor y = general ? detail::conv2d_general(xr, wr, br, s, p, {1, 1}, 1) : conv2d(xr, wr, br, s, p);
      if (!dy.defined()) dy = random(y.shape(), gen);
      backward(y, dy);
      results[general] = {y.to_vector(), xr.grad().to_vector(), wr.grad().to_vector(), br.grad().to_vector()};
    }
    for (std::size_t k = 0; k < 4; ++k) {
      CAPTURE(k);
      CHECK(near(results[1][k], results[0][k]));
    }
  }
}

TEST_CASE("conv2d general: groups are the channel slices convolved apart; dilation a kernel with zeros between") {
  Generator gen(113);
  Tensor x = random(Shape{2, 4, 6, 5}, gen), w = random(Shape{6, 2, 3, 2}, gen);
  Tensor grouped = conv2d(x, w, Tensor(), {1, 2}, {1, 0}, {1, 1}, 2);
  Tensor halves = cat({conv2d(narrow(x, 1, 0, 2), narrow(w, 0, 0, 3), Tensor(), {1, 2}, {1, 0}),
                       conv2d(narrow(x, 1, 2, 2), narrow(w, 0, 3, 3), Tensor(), {1, 2}, {1, 0})}, 1);
  CHECK(near(grouped.to_vector(), halves.to_vector()));
  // Dilation 2 of a 2x2 kernel is the 3x3 kernel with a zero cross: through the fast kernels.
  Tensor k = random(Shape{3, 4, 2, 2}, gen);
  Values kv = k.to_vector(), spread(3 * 4 * 9, 0.0);
  for (std::size_t oc = 0; oc < 12; ++oc)
    for (std::size_t p = 0; p < 2; ++p)
      for (std::size_t q = 0; q < 2; ++q) spread[oc * 9 + 2 * p * 3 + 2 * q] = kv[oc * 4 + p * 2 + q];
  Tensor k3 = Tensor::from_data(Shape{3, 4, 3, 3}, std::span<const double>(spread));
  CHECK(near(conv2d(x, k, Tensor(), {1, 1}, {1, 1}, {2, 2}).to_vector(), conv2d(x, k3, Tensor(), 1, 1).to_vector()));
}

TEST_CASE("conv2d general: a NaN reaches the outputs whose dilated window covers it, and only those") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Generator gen(127);
  for (const Case& c : {kCases[3], kCases[5], kCases[7]}) {
    CAPTURE(c.str());
    Tensor x = random(c.x_shape(), gen), w = random(c.w_shape(), gen);
    Values xv = x.to_vector();
    xv[xv.size() / 2 + 1] = nan;
    Tensor xn = Tensor::from_data(c.x_shape(), std::span<const double>(xv)).set_requires_grad();
    Tensor y = run(c, {xn, w});
    Values expected = naive_conv(xv, w.to_vector(), {}, c), yv = y.to_vector();
    std::size_t nans = 0, finite = 0;
    for (double v : expected) (std::isnan(v) ? nans : finite) += 1;
    CHECK(nans > 0);
    CHECK(finite > 0);  // the dilation or the groups keep the NaN away from some outputs
    CHECK(near(yv, expected));
    // Backward: a NaN in the weight's gradient (every tap that met the NaN), the input's gradient finite (the
    // weight has no NaN).
    Tensor wr = w.detach().set_requires_grad();
    backward(sum(run(c, {xn, wr})));
    Values dw = wr.grad().to_vector(), dx = xn.grad().to_vector();
    CHECK(std::any_of(dw.begin(), dw.end(), [](double v) { return std::isnan(v); }));
    CHECK(std::none_of(dx.begin(), dx.end(), [](double v) { return std::isnan(v); }));
  }
}

TEST_CASE("conv2d general: errors name the op and the shapes") {
  Tensor x = Tensor::zeros(Shape{2, 4, 5, 5});
  Tensor w = Tensor::zeros(Shape{6, 2, 3, 3});
  CHECK(conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {1, 1}, 2).shape() == Shape{2, 6, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros(Shape{2, 5, 5, 5}), w, Tensor(), {1, 1}, {0, 0}, {1, 1}, 2),
                       doctest::Contains("conv2d: input channels 5 and output channels 6 must both be divisible by "
                                         "groups 2 (input [2, 5, 5, 5], weight [6, 2, 3, 3])"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{5, 2, 3, 3}), Tensor(), {1, 1}, {0, 0}, {1, 1}, 2),
                       doctest::Contains("must both be divisible by groups 2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{6, 4, 3, 3}), Tensor(), {1, 1}, {0, 0}, {1, 1}, 2),
                       doctest::Contains("conv2d: input [2, 4, 5, 5] has 4 channels, 2 per group of 2, but weight "
                                         "[6, 4, 3, 3] expects 4"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {1, 1}, 0), doctest::Contains("conv2d: groups must be"),
                       std::invalid_argument);
  // Dilation 3 of a 3-tap kernel spans 7 > 5 rows; padding 1 makes it fit.
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {3, 1}, 2),
                       doctest::Contains("conv2d: kernel 3x3 of weight [6, 2, 3, 3] dilated by 3x1 spans 7 rows, "
                                         "more than the padded input's 5"),
                       std::invalid_argument);
  CHECK(conv2d(x, w, Tensor(), {1, 1}, {1, 0}, {3, 1}, 2).shape() == Shape({2, 6, 1, 3}));
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), {1, 0}, {0, 0}, {1, 1}, 2),
                       doctest::Contains("conv2d: stride 1x0 and dilation 1x1 must be positive"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {0, 1}, 2), doctest::Contains("must be positive"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor::zeros(Shape{4}), {1, 1}, {0, 0}, {1, 1}, 2),
                       doctest::Contains("conv2d: bias f32[4] must be 1-D with 6 elements"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(x, w.to(DType::f64), Tensor(), {1, 1}, {0, 0}, {1, 1}, 2),
                       doctest::Contains("conv2d: dtypes differ"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros(Shape{4, 5, 5}), w, Tensor(), {1, 2}, {0, 0}),
                       doctest::Contains("conv2d: input must be 4-D"), std::invalid_argument);
  // Sizes that would overflow: refused, naming the op, never wrapped.
  for (std::size_t huge : {std::size_t{1} << 62, SIZE_MAX}) {
    CAPTURE(huge);
    CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {huge, 1}, 2),
                         doctest::Contains("conv2d: padding 0x0, stride 1x1 and dilation"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), {1, 2}, {huge, 0}, {1, 1}, 2), doctest::Contains("conv2d: padding"),
                         std::invalid_argument);
  }
  // A dilation below 2^62 whose span (dilation (k - 1) + 1) overflows 64 bits.
  Tensor wide = Tensor::zeros(Shape{1, 4, 1, 6});
  CHECK_THROWS_WITH_AS(conv2d(x, wide, Tensor(), {1, 1}, {0, 0}, {1, (std::size_t{1} << 62) - 1}),
                       doctest::Contains("overflows 64 bits"), std::invalid_argument);
}

// ---------------------------------------------------------------- nn::Conv2d

TEST_CASE("nn::Conv2d options: the weight's shape, its fans, the forward of ag::conv2d, its name and getters") {
  Generator gen(131);
  nn::Conv2d conv(nn::Conv2dOptions{.in_channels = 4, .out_channels = 6, .kernel = {3, 2}, .stride = {2, 1},
                                    .padding = {1, 0}, .dilation = {2, 1}, .groups = 2, .gen = &gen,
                                    .dtype = DType::f64});
  CHECK(conv.weight().shape() == Shape({6, 2, 3, 2}));
  CHECK(conv.bias().shape() == Shape({6}));
  // Default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in / groups kH kW = 12.
  for (double v : conv.weight().to_vector()) CHECK(std::abs(v) <= 1.0 / std::sqrt(12.0));
  Tensor x = random(Shape{2, 4, 9, 5}, gen);
  CHECK(conv(x).to_vector() ==
        conv2d(x, conv.weight(), conv.bias(), {2, 1}, {1, 0}, {2, 1}, 2).to_vector());
  CHECK(conv.type_name() == "Conv2d(in=4, out=6, kernel=3x2, stride=2x1, padding=1x0, dilation=2x1, groups=2)");
  CHECK(conv.options().groups == 2);
  CHECK(conv.options().gen == nullptr);
  CHECK_THROWS_WITH_AS((void)conv.kernel(), doctest::Contains("the kernel is 3x2, not square"), std::logic_error);
  CHECK_THROWS_WITH_AS((void)conv.stride(), doctest::Contains("Conv2d(in=4, out=6"), std::logic_error);
  CHECK_THROWS_AS((void)conv.padding(), std::logic_error);

  // The square form: the same name and getters as before, the fast kernels.
  nn::Conv2d square(2, 3, 3, 2, 1, nn::Init::default_uniform, false, &gen, DType::f64);
  CHECK(square.type_name() == "Conv2d(in=2, out=3, kernel=3, stride=2, padding=1, bias=false)");
  CHECK(square.kernel() == 3);
  CHECK(square.stride() == 2);
  CHECK(square.padding() == 1);
  CHECK(square.options().kernel == Size2{3, 3});
  Tensor x2 = random(Shape{1, 2, 7, 7}, gen);
  CHECK(square(x2).to_vector() == conv2d(x2, square.weight(), Tensor(), 2, 1).to_vector());
  // Depthwise with a channel multiplier.
  nn::Conv2d depthwise(nn::Conv2dOptions{.in_channels = 3, .out_channels = 6, .kernel = {3, 3}, .padding = {1, 1},
                                         .groups = 3, .bias = false, .gen = &gen, .dtype = DType::f64});
  CHECK(depthwise.weight().shape() == Shape({6, 1, 3, 3}));
  CHECK(depthwise(random(Shape{1, 3, 5, 5}, gen)).shape() == Shape({1, 6, 5, 5}));
}

TEST_CASE("nn::Conv2d options: gradcheck through the module, and errors") {
  Generator gen(137);
  nn::Conv2d conv(nn::Conv2dOptions{.in_channels = 2, .out_channels = 2, .kernel = {2, 3}, .stride = {1, 2},
                                    .dilation = {2, 1}, .groups = 2, .gen = &gen, .dtype = DType::f64});
  Tensor x = random(Shape{2, 2, 6, 7}, gen);
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) {
    return conv2d(in[0], in[1], in[2], {1, 2}, {0, 0}, {2, 1}, 2);
  }, {x, conv.weight().detach(), conv.bias().detach()});
  CHECK_THROWS_WITH_AS(nn::Conv2d(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .kernel = {3, 3},
                                                    .groups = 2}),
                       doctest::Contains("Conv2d: in_channels 3 and out_channels 4 must be divisible by groups 2"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::Conv2d(nn::Conv2dOptions{.in_channels = 2, .out_channels = 2, .kernel = {3, 0}}),
                       doctest::Contains("Conv2d: channels, kernel, stride, dilation and groups must be positive"),
                       std::invalid_argument);
  CHECK_THROWS_AS(nn::Conv2d(nn::Conv2dOptions{.in_channels = 2, .out_channels = 2, .kernel = {3, 3},
                                               .dilation = {1, 0}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(nn::Conv2d(2, 2, 3, 0), std::invalid_argument);
}
