// The tape itself: the worked example of the lecture notes, accumulation, release, no_grad,
// higher order, deep graphs and the errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

using namespace ag;

namespace {
Tensor leaf(double value) { return Tensor::scalar(value, DType::f64).set_requires_grad(); }
}  // namespace

TEST_CASE("worked example of the lecture notes (Example 3.1/3.2): a = 150, da/df = 60") {
  // a = b c, b = d + e, c = e + 2, d = 3 + f, e = f g, at f = 4, g = 2.
  Tensor f = leaf(4), g = leaf(2);
  Tensor d = 3.0 + f;
  Tensor e = f * g;
  Tensor b = d + e;
  Tensor c = e + 2.0;
  Tensor a = b * c;
  CHECK(a.item() == 150.0);
  backward(a);
  // By hand: da/df = c (1 + g) + b g = 10 * 3 + 15 * 2 = 60; da/dg = c f + b f = 40 + 60 = 100.
  CHECK(f.grad().item() == 60.0);
  CHECK(g.grad().item() == 100.0);
  CHECK(tape_size() == 0);
}

TEST_CASE("a tensor used twice receives both contributions, and gradients add up across calls") {
  Tensor x = leaf(3);
  backward(x * x);  // d/dx x^2 = 6
  CHECK(x.grad().item() == 6.0);
  backward(x * x + x);  // += 2x + 1 = 7
  CHECK(x.grad().item() == 13.0);
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("no_grad records nothing") {
  Tensor x = leaf(2);
  {
    NoGradGuard guard;
    Tensor y = x * x;
    CHECK_FALSE(y.requires_grad());
    CHECK(tape_size() == 0);
  }
  Tensor y = x * x;
  CHECK(y.requires_grad());
  CHECK(tape_size() == 1);
  release_tape();
}

TEST_CASE("a released tape cannot be swept twice, unless retained") {
  Tensor x = leaf(2);
  Tensor y = exp(x);
  backward(y, {.retain_graph = true});
  backward(y);
  CHECK(x.grad().item() == doctest::Approx(2 * std::exp(2.0)));
  CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("released"), std::logic_error);
}

TEST_CASE("backward on a non-scalar needs a seed") {
  Tensor x = Tensor::ones(Shape{3}, DType::f64).set_requires_grad();
  Tensor y = mul(x, 2.0);
  CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("not a scalar"), std::invalid_argument);
  backward(y, Tensor::from_data(Shape{3}, {1, 2, 3}, DType::f64));
  CHECK(x.grad().to_vector() == std::vector<double>{2, 4, 6});
}

TEST_CASE("a 10,000-op chain sweeps without recursion") {
  Tensor x = leaf(1);
  Tensor y = x;
  for (int i = 0; i < 10000; ++i) y = y * 1.0001;
  backward(y);
  CHECK(x.grad().item() == doctest::Approx(std::pow(1.0001, 10000)));
}

TEST_CASE("memory does not grow from one step to the next") {
  Tensor w = Tensor::ones(Shape{4, 4}, DType::f32).set_requires_grad();
  Tensor x = Tensor::ones(Shape{2, 4}, DType::f32);
  for (int step = 0; step < 5; ++step) {
    backward(sum(relu(matmul(x, w))));
    CHECK(tape_size() == 0);
  }
}

TEST_CASE("Hessian-vector product of f(x) = sum(x^3) + x0 x1") {
  Tensor x = Tensor::from_data(Shape{1, 2}, {1.5, -2.0}, DType::f64).set_requires_grad();
  Tensor v = Tensor::from_data(Shape{1, 2}, {0.3, 0.7}, DType::f64);
  Tensor swap = Tensor::from_data(Shape{2, 2}, {0, 0.5, 0.5, 0}, DType::f64);  // x A x^T = x0 x1
  Tensor fx = add(sum(pow(x, 3.0)), sum(matmul(matmul(x, swap), x, false, true)));
  std::vector<Tensor> g = grad({fx}, {x}, {}, {.create_graph = true});
  CHECK(g[0].at(0) == doctest::Approx(3 * 1.5 * 1.5 - 2.0));
  Tensor hv = grad({sum(mul(g[0], v))}, {x})[0];
  // H = [[6 x0, 1], [1, 6 x1]] -> H v = [6*1.5*0.3 + 0.7, 0.3 + 6*(-2)*0.7].
  CHECK(hv.at(0) == doctest::Approx(6 * 1.5 * 0.3 + 0.7));
  CHECK(hv.at(1) == doctest::Approx(0.3 - 12 * 0.7));
  CHECK(tape_size() == 0);
}

TEST_CASE("a tensor prints its values") {
  CHECK(Tensor::from_data(Shape{2, 2}, {1, 2, 3, 4.5}, DType::f64).str() == "[[1, 2],\n [3, 4.5]] f64[2, 2]");
  CHECK(Tensor::scalar(3).set_requires_grad().str() == "3 f32[] requires_grad");
  std::vector<double> values(10);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i);
  CHECK(Tensor::from_data(Shape{10}, std::span<const double>(values)).str() ==
        "[0, 1, 2, ..., 7, 8, 9] f64[10]");
  CHECK(Tensor().str() == "undefined");
}

TEST_CASE("a backward that fails part-way leaves nothing behind for the next one") {
  Tensor x = Tensor::from_data(Shape{1}, {1.0}, DType::f64).set_requires_grad();
  Tensor old = mul(x, 1.0);
  backward(sum(old));  // releases the tape: `old` is now stale
  Tensor b = add(mul(x, 2.0), old);
  CHECK_THROWS_WITH_AS(backward(sum(b)), doctest::Contains("released"), std::logic_error);
  x.zero_grad();
  backward(sum(mul(x, 5.0)));
  CHECK(x.grad().item() == 5.0);
}

TEST_CASE("every leaf owns its gradient, even when a backward hands one tensor to several inputs") {
  Tensor a = Tensor::ones(Shape{3}, DType::f64).set_requires_grad();
  Tensor b = Tensor::ones(Shape{3}, DType::f64).set_requires_grad();
  backward(sum(add(a, b)));
  CHECK_FALSE(a.grad().shares_storage_with(b.grad()));
  Tensor ga = a.grad();
  ga.fill_(0.0);
  CHECK(b.grad().to_vector() == std::vector<double>{1, 1, 1});
  Tensor seed = Tensor::ones(Shape{3}, DType::f64);
  Tensor c = Tensor::ones(Shape{3}, DType::f64).set_requires_grad();
  backward(c, seed);  // the leaf is the root: its gradient is the seed, copied
  seed.fill_(7.0);
  CHECK(c.grad().to_vector() == std::vector<double>{1, 1, 1});
}

TEST_CASE("broadcasting over an empty axis differentiates to empty or zero gradients") {
  Tensor a = Tensor::zeros(Shape{5, 0}, DType::f64).set_requires_grad();
  Tensor b = Tensor::zeros(Shape{0}, DType::f64).set_requires_grad();
  backward(sum(add(a, b)));
  CHECK(a.grad().numel() == 0);
  CHECK(b.grad().numel() == 0);
  Tensor c = Tensor::ones(Shape{3}, DType::f64).set_requires_grad();
  backward(sum(mul(Tensor::zeros(Shape{0, 3}, DType::f64), c)));
  CHECK(c.grad().to_vector() == std::vector<double>{0, 0, 0});
}

TEST_CASE("two losses built before one backward: the error says what to do") {
  Tensor w = Tensor::ones(Shape{2}, DType::f64).set_requires_grad();
  Tensor l1 = sum(mul(w, 2.0)), l2 = sum(mul(w, 3.0));
  backward(l1);
  CHECK_THROWS_WITH_AS(backward(l2), doctest::Contains("backward the sum of several losses"), std::logic_error);
  w.zero_grad();
  Tensor m1 = sum(mul(w, 2.0)), m2 = sum(mul(w, 3.0));
  backward(add(m1, m2));
  CHECK(w.grad().to_vector() == std::vector<double>{5, 5});
}

TEST_CASE("Generator: its engine draws std::mt19937_64's sequence, and copies continue it alike") {
  for (std::uint64_t seed : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{5489}, std::uint64_t{0x9e3779b97f4a7c15}}) {
    std::mt19937_64 reference(seed);
    Generator gen(seed);
    bool same = true;
    for (int i = 0; i < 2000; ++i) same = same && gen.engine()() == reference();  // crosses several twists
    CHECK(same);
    Generator copy = gen;
    CHECK(copy.engine()() == gen.engine()());
  }
  Mt19937_64 fresh;
  CHECK(fresh() == std::mt19937_64()());
  std::uint64_t drawn[3] = {};
  Generator gen(7);
  for (std::uint64_t& d : drawn) d = gen.below(1000);
  std::mt19937_64 reference(7);
  for (std::uint64_t d : drawn) CHECK(d == reference() % 1000);  // a rejection has odds 1000 in 2^64
}
