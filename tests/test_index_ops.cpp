// Joining, slicing and indexing (cat, stack, narrow, index_select, gather, embedding), masks
// and arg-extrema (eq ... ge, argmax, argmin), reductions (min, var, std, prod), pooling (avg_pool2d,
// adaptive_avg_pool2d, max_pool2d with padding and rectangular windows), dropout, and the modules over them
// (AvgPool2d, AdaptiveAvgPool2d, Embedding). Forward values against hand-computed ones, gradients against
// closed forms and finite differences (first and second order, float64), ties, empty and size-1 extents, NaN,
// and errors that name the op and the shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "gradcheck_assertions.hpp"
#include "nn/embedding.hpp"
#include "nn/layers.hpp"
#include "nn/pooling.hpp"
#include "op_checks.hpp"

using namespace ag;
using op_checks::check_values;
using op_checks::distinct;
using op_checks::f64;
using op_checks::normal;

namespace {

using Inputs = std::vector<Tensor>;
using Values = std::vector<double>;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

/// x.grad() after backward(sum(f(x))) for a fresh leaf copy of x.
Tensor grad_of_sum(const Tensor& x, const std::function<Tensor(const Tensor&)>& f) {
  Tensor leaf = x.clone().set_requires_grad();
  backward(sum(f(leaf)));
  return leaf.grad();
}

/// f and y -> f(y) * f(y): the second derivative of a linear f shows through the square.
Tensor squared(const Tensor& y) { return mul(y, y); }

}  // namespace

// ================================================================ cat, stack, narrow

TEST_CASE("cat: values along each axis, empty parts, more than 32 inputs") {
  Tensor a = f64({2, 2}, {1, 2, 3, 4}), b = f64({1, 2}, {5, 6}), c = f64({2, 1}, {7, 8});
  check_values(cat({a, b}), {3, 2}, {1, 2, 3, 4, 5, 6});
  check_values(cat({a, c}, 1), {2, 3}, {1, 2, 7, 3, 4, 8});
  check_values(cat({a, c}, -1), {2, 3}, {1, 2, 7, 3, 4, 8});
  check_values(cat({f64({2, 1, 2}, {1, 2, 3, 4}), f64({2, 2, 2}, {5, 6, 7, 8, 9, 10, 11, 12})}, 1), {2, 3, 2},
               {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  check_values(cat({a, Tensor::zeros({0, 2}, DType::f64), b}), {3, 2}, {1, 2, 3, 4, 5, 6});
  check_values(cat({a}), {2, 2}, {1, 2, 3, 4});
  CHECK(cat({Tensor::zeros({0, 2}, DType::f64), Tensor::zeros({0, 2}, DType::f64)}).shape() == Shape{0, 2});
  // 40 inputs: joined in groups (a node has at most 32 inputs); each gets its own slice of the gradient.
  std::vector<Tensor> many;
  for (int i = 0; i < 40; ++i) many.push_back(f64({1, 2}, {double(i), -double(i)}).set_requires_grad());
  Tensor joined = cat(many);
  REQUIRE(joined.shape() == Shape{40, 2});
  CHECK(joined.at(2 * 33) == 33.0);
  backward(sum(mul(joined, joined)));
  for (int i : {0, 31, 32, 39}) check_values(many[i].grad(), {1, 2}, {2.0 * i, -2.0 * i});
}

TEST_CASE("cat, stack and narrow: first and second order") {
  Generator gen(101);
  Tensor a = normal({2, 3, 2}, gen), b = normal({2, 1, 2}, gen), c = normal({2, 3, 2}, gen);
  for (int axis : {0, 1, 2, -1}) {
    INFO("axis " << axis);
    CHECK_GRADCHECK([axis](const Inputs& v) { return cat({v[0], v[1], v[0]}, axis); }, {a, c});
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return squared(cat({v[0], v[1]}, axis)); }, {a, c});
    CHECK_GRADCHECK([axis](const Inputs& v) { return stack({v[0], v[1]}, axis); }, {a, c});
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return squared(stack({v[1], v[0]}, axis)); }, {a, c});
    CHECK_GRADCHECK([axis](const Inputs& v) { return narrow(v[0], axis, 1, 1); }, {a});
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return squared(narrow(v[0], axis, 0, 2)); }, {a});
  }
  CHECK_GRADCHECK([](const Inputs& v) { return cat({v[0], v[1]}, 1); }, {a, b});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return mul(cat({v[0], v[1]}, 1), cat({v[1], v[0]}, 1)); },
                      {normal({2, 2, 2}, gen), normal({2, 2, 2}, gen)});
  // narrow then cat back is the identity; a size-1 extent; the whole extent.
  CHECK_GRADGRADCHECK([](const Inputs& v) {
    return squared(cat({narrow(v[0], 1, 0, 1), narrow(v[0], 1, 1, 2)}, 1));
  }, {c});
  CHECK_GRADCHECK([](const Inputs& v) { return narrow(v[0], 0, 0, 1); }, {normal({1, 4}, gen)});
  CHECK_GRADCHECK([](const Inputs& v) { return narrow(v[0], 1, 0, 4); }, {normal({1, 4}, gen)});
}

TEST_CASE("stack and narrow: values, gradients placed back among zeros") {
  Tensor a = f64({2}, {1, 2}), b = f64({2}, {3, 4});
  check_values(stack({a, b}), {2, 2}, {1, 2, 3, 4});
  check_values(stack({a, b}, 1), {2, 2}, {1, 3, 2, 4});
  check_values(stack({a, b}, -1), {2, 2}, {1, 3, 2, 4});
  check_values(stack({Tensor::scalar(5, DType::f64), Tensor::scalar(6, DType::f64)}), {2}, {5, 6});
  Tensor x = f64({2, 3}, {1, 2, 3, 4, 5, 6});
  check_values(narrow(x, 1, 1, 2), {2, 2}, {2, 3, 5, 6});
  check_values(narrow(x, 0, 1, 1), {1, 3}, {4, 5, 6});
  CHECK(narrow(x, 1, 3, 0).shape() == Shape{2, 0});
  check_values(grad_of_sum(x, [](const Tensor& t) { return mul(narrow(t, 1, 1, 2), 3.0); }), {2, 3}, {0, 3, 3, 0, 3, 3});
  check_values(grad_of_sum(x, [](const Tensor& t) { return narrow(t, 1, 3, 0); }), {2, 3}, {0, 0, 0, 0, 0, 0});
}

TEST_CASE("narrow: a view of the storage where the entries are contiguous, a copy elsewhere") {
  Tensor x = f64({4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  Tensor rows = narrow(x, 0, 1, 2);  // rows 1 and 2: contiguous
  CHECK(rows.shares_storage_with(x));
  check_values(rows, {2, 3}, {4, 5, 6, 7, 8, 9});
  x.data<double>()[4] = 50;  // an in-place write (an optimiser's step) shows through the view
  CHECK(rows.at(1) == 50);
  Tensor row = narrow(rows, 0, 1, 1);  // a view of a view: the offsets add up
  CHECK(row.shares_storage_with(x));
  check_values(row, {1, 3}, {7, 8, 9});
  row.copy_(f64({1, 3}, {-7, -8, -9}));  // writes into x's third row, nowhere else
  check_values(x, {4, 3}, {1, 2, 3, 4, 50, 6, -7, -8, -9, 10, 11, 12});
  check_values(row.clone(), {1, 3}, {-7, -8, -9});
  CHECK(row.clone().shares_storage_with(x) == false);
  CHECK(row.to(DType::f32).to_vector() == std::vector<double>{-7, -8, -9});
  Tensor columns = narrow(x, 1, 0, 2);  // columns: strided, so a copy
  CHECK_FALSE(columns.shares_storage_with(x));
  check_values(columns, {4, 2}, {1, 2, 4, 50, -7, -8, 10, 11});
  CHECK(narrow(x, 1, 0, 3).shares_storage_with(x));           // the whole axis: contiguous
  Tensor one = f64({1, 2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor inner = narrow(one, 1, 1, 1);  // axis 0 has extent 1: still contiguous
  CHECK(inner.shares_storage_with(one));
  check_values(inner, {1, 1, 3}, {4, 5, 6});
  // The view's gradient is placed back among zeros, as the copy's; to second order.
  check_values(grad_of_sum(x, [](const Tensor& t) { return mul(narrow(t, 0, 1, 2), 2.0); }), {4, 3},
               {0, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0, 0});
  Generator gen(7);
  CHECK_GRADGRADCHECK([](const Inputs& v) { return squared(narrow(narrow(v[0], 0, 1, 3), 0, 1, 1)); },
                      {normal({5, 2}, gen)});
}

// ================================================================ index_select, gather, embedding

TEST_CASE("index_select: values, repeated indices sum their gradients, first and second order") {
  Tensor x = f64({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor idx = f64({3}, {2, 0, 2});
  check_values(index_select(x, 1, idx), {2, 3}, {3, 1, 3, 6, 4, 6});
  check_values(index_select(x, 0, f64({1}, {1})), {1, 3}, {4, 5, 6});
  check_values(index_select(x, 0, Tensor::scalar(1, DType::f64)), {1, 3}, {4, 5, 6});
  check_values(index_select(x, -1, Tensor::from_data({2}, {1, 1})), {2, 2}, {2, 2, 5, 5});  // f32 indices
  CHECK(index_select(x, 1, Tensor::zeros({0}, DType::f64)).shape() == Shape{2, 0});
  check_values(grad_of_sum(x, [&](const Tensor& t) { return index_select(t, 1, idx); }), {2, 3}, {1, 0, 2, 1, 0, 2});
  Generator gen(102);
  Tensor y = normal({3, 4, 2}, gen);
  for (int axis : {0, 1, 2}) {
    INFO("axis " << axis);
    Tensor index = f64({4}, {1, 0, 1, 1});
    CHECK_GRADCHECK([axis, index](const Inputs& v) { return index_select(v[0], axis, index); }, {y});
    CHECK_GRADGRADCHECK([axis, index](const Inputs& v) { return squared(index_select(v[0], axis, index)); }, {y});
  }
}

TEST_CASE("gather: PyTorch's example, gradients scattered back, first and second order") {
  Tensor x = f64({2, 2}, {1, 2, 3, 4});
  Tensor idx = f64({2, 2}, {0, 0, 1, 0});
  check_values(gather(x, 1, idx), {2, 2}, {1, 1, 4, 3});
  check_values(gather(x, 0, f64({1, 2}, {1, 0})), {1, 2}, {3, 2});  // an index smaller than x off the axis
  check_values(grad_of_sum(x, [&](const Tensor& t) { return gather(t, 1, idx); }), {2, 2}, {2, 0, 1, 1});
  CHECK(gather(x, 1, Tensor::zeros({2, 0}, DType::f64)).shape() == Shape{2, 0});
  // gather with argmax's indices (keepdims) is max.
  Generator gen(103);
  Tensor d = distinct({3, 5}, gen);
  CHECK(gather(d, 1, argmax(d, 1, true)).to_vector() == max(d, 1, true).to_vector());
  Tensor y = normal({2, 3, 4}, gen);
  for (int axis : {0, 1, 2}) {
    INFO("axis " << axis);
    Shape shape{2, 2, 3};
    Tensor index = Tensor::zeros(shape, DType::f64);
    for (std::size_t i = 0; i < index.numel(); ++i) index.data<double>()[i] = double(gen.below(y.dim(axis)));
    CHECK_GRADCHECK([axis, index](const Inputs& v) { return gather(v[0], axis, index); }, {y});
    CHECK_GRADGRADCHECK([axis, index](const Inputs& v) { return squared(gather(v[0], axis, index)); }, {y});
  }
  // Rank 6: gather along axis 4 reads x[i0, .., index, i5].
  Tensor z = normal({2, 1, 2, 1, 3, 2}, gen);
  Tensor index6 = f64({2, 1, 2, 1, 1, 2}, {2, 0, 1, 1, 0, 2, 1, 0});
  Tensor g6 = gather(z, 4, index6);
  for (std::size_t o = 0; o < g6.numel(); ++o) {
    std::size_t i5 = o % 2, outer = o / 2;  // outer runs over (i0, i2); x's offset is (outer * 3 + index) * 2 + i5
    CHECK(g6.at(o) == z.at((outer * 3 + std::size_t(index6.at(o))) * 2 + i5));
  }
  CHECK_GRADCHECK([index6](const Inputs& v) { return gather(v[0], 4, index6); }, {z});
}

TEST_CASE("embedding: rows picked by index, gradient counts per row, first and second order") {
  Tensor weight = f64({3, 2}, {0, 1, 2, 3, 4, 5});
  Tensor indices = f64({2, 2}, {2, 0, 2, 1});
  check_values(embedding(indices, weight), {2, 2, 2}, {4, 5, 0, 1, 4, 5, 2, 3});
  check_values(embedding(f64({1}, {1}), weight), {1, 2}, {2, 3});
  check_values(grad_of_sum(weight, [&](const Tensor& w) { return embedding(indices, w); }), {3, 2}, {1, 1, 1, 1, 2, 2});
  CHECK(embedding(Tensor::zeros({0}), weight).shape() == Shape{0, 2});
  Generator gen(104);
  Tensor w = normal({5, 3}, gen);
  Tensor ids = f64({2, 3}, {4, 0, 4, 1, 1, 2});
  CHECK_GRADCHECK([ids](const Inputs& v) { return embedding(ids, v[0]); }, {w});
  CHECK_GRADGRADCHECK([ids](const Inputs& v) { return squared(embedding(ids, v[0])); }, {w});
}

TEST_CASE("indexing: bad indices, axes and shapes are refused, naming the op and the shapes") {
  Tensor x = Tensor::zeros({2, 3}, DType::f64);
  CHECK_OP_ERROR(index_select(x, 1, f64({2}, {0, 3})), "index_select", "index 3", "[0, 3)", "[2, 3]");
  CHECK_OP_ERROR(index_select(x, 1, f64({2}, {0, -1})), "index_select", "index -1");
  CHECK_OP_ERROR(index_select(x, 1, f64({1}, {0.5})), "index_select", "index 0.5");
  CHECK_OP_ERROR(index_select(x, 1, f64({1}, {kNaN})), "index_select", "nan");
  CHECK_OP_ERROR(index_select(x, 1, f64({1, 1}, {0})), "index_select", "[1, 1]", "[2, 3]");
  CHECK_OP_ERROR(index_select(x, 2, f64({1}, {0})), "index_select", "[2, 3]");
  CHECK_OP_ERROR(gather(x, 1, f64({2}, {0, 0})), "gather", "[2]", "[2, 3]");
  CHECK_OP_ERROR(gather(x, 1, f64({3, 1}, {0, 0, 0})), "gather", "[3, 1]", "[2, 3]");
  CHECK_OP_ERROR(gather(x, 0, f64({1, 1}, {2})), "gather", "index 2", "[0, 2)");
  CHECK_OP_ERROR(gather(x, -3, f64({1, 1}, {0})), "gather", "[2, 3]");
  CHECK_OP_ERROR(embedding(f64({1}, {3}), x), "embedding", "index 3", "[0, 2)");
  CHECK_OP_ERROR(embedding(f64({1}, {0}), Tensor::zeros({3}, DType::f64)), "embedding", "[3]");
  CHECK_OP_ERROR(embedding(Tensor::zeros({1, 1, 1, 1, 1, 1}), x), "embedding", "[1, 1, 1, 1, 1, 1]");
  CHECK_OP_ERROR(cat({}), "cat", "no tensors");
  CHECK_OP_ERROR(cat({x, Tensor::zeros({2, 2}, DType::f64)}), "cat", "[2, 2]", "[2, 3]");
  CHECK_OP_ERROR(cat({x, Tensor::zeros({2, 3, 1}, DType::f64)}, 1), "cat", "[2, 3, 1]", "[2, 3]");
  CHECK_OP_ERROR(cat({x, Tensor::zeros({2, 3})}), "cat", "f64[2, 3]", "f32[2, 3]");
  CHECK_OP_ERROR(cat({x, x}, 2), "cat", "[2, 3]");
  CHECK_OP_ERROR(cat({Tensor::scalar(1), Tensor::scalar(2)}), "cat", "f32[]");
  CHECK_OP_ERROR(cat({x, Tensor()}), "cat", "undefined");
  CHECK_OP_ERROR(stack({x, Tensor::zeros({3, 2}, DType::f64)}), "stack", "[3, 2]", "[2, 3]");
  CHECK_OP_ERROR(stack({x, x}, 3), "stack", "[2, 3]");
  CHECK_OP_ERROR(stack({x, x}, -4), "stack", "[2, 3]");
  CHECK_OP_ERROR(stack({Tensor::zeros({1, 1, 1, 1, 1, 1})}), "stack", "[1, 1, 1, 1, 1, 1]");
  CHECK_OP_ERROR(narrow(x, 1, 2, 2), "narrow", "[2, 3]");
  CHECK_OP_ERROR(narrow(x, 1, 4, 0), "narrow", "[2, 3]");
  CHECK_OP_ERROR(narrow(x, 1, 1, SIZE_MAX), "narrow", "[2, 3]");
  CHECK_OP_ERROR(narrow(x, 2, 0, 1), "narrow", "[2, 3]");
  // A failed op records nothing.
  CHECK(tape_size() == 0);
}

// ================================================================ argmax, argmin and masks (no gradient)

TEST_CASE("argmax and argmin: first of ties, the first NaN, keepdims, flattened, no gradient") {
  Tensor x = f64({2, 3}, {1, 3, 3, 7, 2, 7});
  check_values(argmax(x, 1), {2}, {1, 0});
  check_values(argmax(x, 0), {3}, {1, 0, 1});
  check_values(argmax(x, -1, true), {2, 1}, {1, 0});
  check_values(argmax(x), {}, {3});
  check_values(argmin(x, 1), {2}, {0, 1});
  check_values(argmin(x), {}, {0});
  check_values(argmax(f64({4}, {1, kNaN, 5, kNaN}), 0), {}, {1});
  check_values(argmin(f64({4}, {1, 0, kNaN, kNaN})), {}, {2});
  check_values(argmax(f64({1, 3}, {4, 5, 6}), 0), {3}, {0, 0, 0});  // a size-1 axis
  CHECK(argmax(Tensor::zeros({0, 3}, DType::f64), 1).shape() == Shape{0});
  CHECK(argmax(Tensor::zeros({2, 3}), 1).dtype() == DType::f32);
  Tensor leaf = x.clone().set_requires_grad();
  CHECK_FALSE(argmax(leaf, 1).requires_grad());
  CHECK(tape_size() == 0);
  CHECK_OP_ERROR(argmax(Tensor::zeros({0, 3}, DType::f64), 0), "argmax", "[0, 3]");
  CHECK_OP_ERROR(argmin(Tensor::zeros({0}, DType::f64)), "argmin", "[0]");
  CHECK_OP_ERROR(argmax(x, 2), "argmax", "[2, 3]");
  // Uninitialised (never touched): 2^24 + 1 entries, whose last index f32 cannot hold exactly.
  CHECK_OP_ERROR(argmax(Tensor::empty({(std::size_t{1} << 24) + 1}), 0), "argmax", "f32[16777217]", "f64");
}

TEST_CASE("eq, ne, lt, le, gt, ge: broadcasting, scalars, NaN compares false, no gradient") {
  Tensor a = f64({3}, {1, 2, kNaN}), b = f64({3}, {2, 2, 2});
  check_values(eq(a, b), {3}, {0, 1, 0});
  check_values(ne(a, b), {3}, {1, 0, 1});
  check_values(lt(a, b), {3}, {1, 0, 0});
  check_values(le(a, b), {3}, {1, 1, 0});
  check_values(gt(a, b), {3}, {0, 0, 0});
  check_values(ge(a, b), {3}, {0, 1, 0});
  check_values(eq(a, 2.0), {3}, {0, 1, 0});
  check_values(ne(a, 2.0), {3}, {1, 0, 1});
  check_values(lt(a, 2.0), {3}, {1, 0, 0});
  check_values(le(a, 2.0), {3}, {1, 1, 0});
  check_values(gt(a, 1.0), {3}, {0, 1, 0});
  check_values(ge(a, 1.0), {3}, {1, 1, 0});
  check_values(gt(f64({2, 1}, {1, 3}), f64({3}, {1, 2, 3})), {2, 3}, {0, 0, 0, 1, 1, 0});
  CHECK(eq(Tensor::zeros({0, 3}), Tensor::zeros({3})).shape() == Shape{0, 3});
  // A mask selects with where; its own gradient is none.
  Tensor x = f64({4}, {-1, 2, -3, 4}).set_requires_grad();
  Tensor mask = gt(x, 0.0);
  CHECK_FALSE(mask.requires_grad());
  backward(sum(where(mask, x, mul(x, 0.0))));
  check_values(x.grad(), {4}, {0, 1, 0, 1});
  CHECK_OP_ERROR(eq(Tensor::zeros({3, 4}, DType::f64), Tensor::zeros({5}, DType::f64)), "eq", "[3, 4]", "[5]");
  CHECK_OP_ERROR(ge(Tensor::zeros({3}, DType::f64), Tensor::zeros({3})), "ge", "f64[3]", "f32[3]");
  CHECK_OP_ERROR(lt(Tensor(), 1.0), "lt", "undefined");
}

TEST_CASE("comparisons over whole vectors in both dtypes: every ordering, NaN on either side") {
  // 37 pairs: the vectorised loops and their tails; the pairs cycle through <, ==, >, NaN left, NaN right.
  const std::vector<double> left{1, 2, 3, kNaN, 1}, right{2, 2, 2, 1, kNaN};
  using Relation = std::function<bool(double, double)>;
  const std::vector<std::pair<std::function<Tensor(const Tensor&, const Tensor&)>, Relation>> cases{
      {[](const Tensor& x, const Tensor& y) { return eq(x, y); }, [](double x, double y) { return x == y; }},
      {[](const Tensor& x, const Tensor& y) { return ne(x, y); }, [](double x, double y) { return x != y; }},
      {[](const Tensor& x, const Tensor& y) { return lt(x, y); }, [](double x, double y) { return x < y; }},
      {[](const Tensor& x, const Tensor& y) { return le(x, y); }, [](double x, double y) { return x <= y; }},
      {[](const Tensor& x, const Tensor& y) { return gt(x, y); }, [](double x, double y) { return x > y; }},
      {[](const Tensor& x, const Tensor& y) { return ge(x, y); }, [](double x, double y) { return x >= y; }}};
  std::vector<double> a(37), b(37);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = left[i % left.size()];
    b[i] = right[i % right.size()];
  }
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor ta = Tensor::from_data({37}, std::span<const double>(a)).to(dtype);
    Tensor tb = Tensor::from_data({37}, std::span<const double>(b)).to(dtype);
    for (const auto& [op, relation] : cases) {
      for (const Tensor& mask : {op(ta, tb), op(ta, broadcast_to(tb, {37}))}) {
        Tensor m = mask.to(DType::f64);
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(m.data<double>()[i] == (relation(a[i], b[i]) ? 1.0 : 0.0));
      }
    }
    // A NaN scalar: only ne holds.
    CHECK(sum(ne(ta, kNaN)).item() == 37.0);
    CHECK(sum(eq(ta, kNaN)).item() + sum(lt(ta, kNaN)).item() + sum(ge(ta, kNaN)).item() == 0.0);
  }
}

// ================================================================ min, var, std, prod

TEST_CASE("min: values, the first of tied minima takes the gradient, first and second order") {
  Tensor x = f64({2, 4}, {1, 3, 1, 2, 0, 0, 5, -1});
  check_values(min(x, 1), {2}, {1, -1});
  check_values(min(x, 0, true), {1, 4}, {0, 0, 1, -1});
  check_values(min(x), {}, {-1});
  check_values(grad_of_sum(x, [](const Tensor& t) { return min(t, 1); }), {2, 4}, {1, 0, 0, 0, 0, 0, 0, 1});
  check_values(grad_of_sum(x, [](const Tensor& t) { return min(t, 0); }), {2, 4}, {0, 0, 1, 0, 1, 1, 0, 1});
  check_values(grad_of_sum(f64({4}, {2, 1, 1, 3}), [](const Tensor& t) { return min(t); }), {4}, {0, 1, 0, 0});
  check_values(grad_of_sum(f64({3}, {2, kNaN, kNaN}), [](const Tensor& t) { return min(t); }), {3}, {0, 1, 0});
  Generator gen(105);
  for (const Shape& shape : {Shape{7}, Shape{3, 4}, Shape{2, 3, 4}, Shape{1, 3}}) {
    Tensor d = distinct(shape, gen);
    CHECK_GRADCHECK([](const Inputs& v) { return min(v[0]); }, {d});
    for (int axis = 0; axis < static_cast<int>(shape.rank()); ++axis) {
      INFO(shape.str() << " axis " << axis);
      CHECK_GRADCHECK([axis](const Inputs& v) { return min(v[0], axis); }, {d});
      CHECK_GRADGRADCHECK([axis](const Inputs& v) { return squared(min(v[0], axis, true)); }, {d});
    }
  }
  CHECK_OP_ERROR(min(Tensor::zeros({0}, DType::f64)), "min", "[0]");
  CHECK_OP_ERROR(min(Tensor::zeros({2, 0}, DType::f64), 1), "min", "[2, 0]");
  CHECK_OP_ERROR(min(Tensor::zeros({2, 3}, DType::f64), -3), "min", "[2, 3]");
}

TEST_CASE("var and std: values, the gradient 2 (x - mean) / (N - correction), first and second order") {
  Tensor x = f64({2, 4}, {1, 2, 3, 4, 2, 4, 6, 8});
  check_values(var(x, 1), {2}, {5.0 / 3, 20.0 / 3});
  check_values(var(x, 1, 0.0), {2}, {1.25, 5});
  check_values(var(x, 0, 1.0, true), {1, 4}, {0.5, 2, 4.5, 8});
  check_values(ag::std(x, 1), {2}, {std::sqrt(5.0 / 3), std::sqrt(20.0 / 3)});
  check_values(ag::std(x, -1, 0.0, true), {2, 1}, {std::sqrt(1.25), std::sqrt(5.0)});
  for (double correction : {0.0, 1.0, 2.5}) {
    INFO("correction " << correction);
    Tensor g = grad_of_sum(x, [correction](const Tensor& t) { return var(t, 1, correction); });
    const double means[] = {2.5, 5};
    Values want;
    for (std::size_t i = 0; i < 8; ++i) want.push_back(2 * (x.at(i) - means[i / 4]) / (4 - correction));
    check_values(g, {2, 4}, want);
  }
  // One element: N - correction = 0 gives NaN, as PyTorch; with correction 0 the variance is 0.
  CHECK(std::isnan(var(f64({1, 2}, {3, 4}), 0).at(0)));
  check_values(var(f64({1, 2}, {3, 4}), 0, 0.0), {2}, {0, 0});
  CHECK(var(Tensor::zeros({0, 3}, DType::f64), 1).shape() == Shape{0});
  Generator gen(106);
  for (const Shape& shape : {Shape{5}, Shape{3, 4}, Shape{2, 3, 4}}) {
    Tensor t = normal(shape, gen);
    for (int axis = 0; axis < static_cast<int>(shape.rank()); ++axis) {
      for (double correction : {0.0, 1.0}) {
        INFO(shape.str() << " axis " << axis << " correction " << correction);
        CHECK_GRADCHECK([=](const Inputs& v) { return var(v[0], axis, correction); }, {t});
        CHECK_GRADGRADCHECK([=](const Inputs& v) { return var(v[0], axis, correction, true); }, {t});
        CHECK_GRADCHECK([=](const Inputs& v) { return ag::std(v[0], axis, correction); }, {t});
        CHECK_GRADGRADCHECK([=](const Inputs& v) { return ag::std(v[0], axis, correction); }, {t});
      }
    }
  }
  // Broadcasting: a variance used against the tensor it came from.
  CHECK_GRADGRADCHECK([](const Inputs& v) { return div(sub(v[0], mean(v[0], 1, true)), ag::std(v[0], 1, 1.0, true)); },
                      {normal({3, 5}, gen)});
  CHECK_OP_ERROR(var(Tensor::zeros({2, 0}, DType::f64), 1), "var", "[2, 0]");
  CHECK_OP_ERROR(ag::std(x, 2), "std", "[2, 4]");
  CHECK_OP_ERROR(var(x, 1, -1.0), "var", "[2, 4]");
  CHECK_OP_ERROR(ag::std(x, 1, kNaN), "std", "[2, 4]");
}

TEST_CASE("prod: values, exact gradients at zeros, the empty product, first and second order") {
  Tensor x = f64({2, 3}, {1, 2, 3, 4, 0, 6});
  check_values(prod(x, 1), {2}, {6, 0});
  check_values(prod(x, 0, true), {1, 3}, {4, 0, 18});
  check_values(prod(f64({4}, {1, 2, 3, 4})), {}, {24});
  check_values(prod(Tensor::zeros({2, 0}, DType::f64), 1), {2}, {1, 1});
  check_values(prod(Tensor::zeros({0}, DType::f64)), {}, {1});
  check_values(prod(f64({1, 2}, {5, 7}), 0), {2}, {5, 7});
  // d/dx_i = prod of the others: no division by the zero.
  check_values(grad_of_sum(x, [](const Tensor& t) { return prod(t, 1); }), {2, 3}, {6, 3, 2, 0, 24, 0});
  check_values(grad_of_sum(f64({3}, {0, 2, 0}), [](const Tensor& t) { return prod(t); }), {3}, {0, 0, 0});
  Generator gen(107);
  Tensor with_zero = normal({3, 5}, gen);
  with_zero.data<double>()[6] = 0.0;
  for (const Shape& shape : {Shape{7}, Shape{3, 4}, Shape{2, 3, 4}}) {
    Tensor t = normal(shape, gen);
    CHECK_GRADCHECK([](const Inputs& v) { return prod(v[0]); }, {t});
    CHECK_GRADGRADCHECK([](const Inputs& v) { return prod(v[0]); }, {t});
    for (int axis = 0; axis < static_cast<int>(shape.rank()); ++axis) {
      INFO(shape.str() << " axis " << axis);
      CHECK_GRADCHECK([axis](const Inputs& v) { return prod(v[0], axis); }, {t});
      CHECK_GRADGRADCHECK([axis](const Inputs& v) { return prod(v[0], axis, true); }, {t});
    }
  }
  for (int axis : {0, 1}) {
    INFO("a zero in the input, axis " << axis);
    CHECK_GRADCHECK([axis](const Inputs& v) { return prod(v[0], axis); }, {with_zero});
    CHECK_GRADGRADCHECK([axis](const Inputs& v) { return prod(v[0], axis); }, {with_zero});
  }
  CHECK_OP_ERROR(prod(x, 2), "prod", "[2, 3]");
  CHECK_OP_ERROR(prod(Tensor()), "prod", "undefined");
}

// ================================================================ pooling

TEST_CASE("avg_pool2d: values with padding counted, the 1/(kh kw) spread, rectangular windows") {
  Tensor x = f64({1, 1, 4, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  check_values(avg_pool2d(x, 2), {1, 1, 2, 2}, {3.5, 5.5, 11.5, 13.5});
  check_values(avg_pool2d(x, 4), {1, 1, 1, 1}, {8.5});
  check_values(avg_pool2d(x, 3, 1), {1, 1, 2, 2}, {6, 7, 10, 11});
  // Padding 1 on a 3x3: zeros counted in each 2x2 window (count_include_pad).
  Tensor y = f64({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  check_values(avg_pool2d(y, 2, 2, 1), {1, 1, 2, 2}, {0.25, 1.25, 2.75, 7});
  check_values(avg_pool2d(y, 3, 1, 1), {1, 1, 3, 3},
               {12.0 / 9, 21.0 / 9, 16.0 / 9, 27.0 / 9, 45.0 / 9, 33.0 / 9, 24.0 / 9, 39.0 / 9, 28.0 / 9});
  check_values(avg_pool2d(f64({1, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}), {1, 2}, {1, 2}), {1, 1, 2, 2},
               {1.5, 3.5, 5.5, 7.5});
  check_values(avg_pool2d(f64({1, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}), {2, 1}, {0, 0}, {0, 0}), {1, 1, 1, 4},
               {3, 4, 5, 6});
  // Closed form: each element receives 1/(kh kw) per window covering it.
  check_values(grad_of_sum(y, [](const Tensor& t) { return avg_pool2d(t, 2, 1); }), {1, 1, 3, 3},
               {0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25});
  check_values(grad_of_sum(y, [](const Tensor& t) { return avg_pool2d(t, 2, 2, 1); }), {1, 1, 3, 3},
               {0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25});
  check_values(grad_of_sum(y, [](const Tensor& t) { return avg_pool2d(t, 2, 2); }), {1, 1, 3, 3},
               {0.25, 0.25, 0, 0.25, 0.25, 0, 0, 0, 0});  // the last row and column unused
  CHECK(avg_pool2d(Tensor::zeros({0, 3, 4, 4}), 2).shape() == Shape{0, 3, 2, 2});
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's bins, global pooling is the mean, gradient 1/area") {
  Tensor x = f64({1, 1, 1, 5}, {1, 2, 3, 4, 5});
  // Bins of 5 into 3: [0, 2), [1, 4), [3, 5).
  check_values(adaptive_avg_pool2d(x, {1, 3}), {1, 1, 1, 3}, {1.5, 3, 4.5});
  check_values(grad_of_sum(x, [](const Tensor& t) { return adaptive_avg_pool2d(t, {1, 3}); }), {1, 1, 1, 5},
               {0.5, 0.5 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 0.5, 0.5});
  Generator gen(108);
  Tensor t = normal({2, 3, 4, 5}, gen);
  Tensor global = adaptive_avg_pool2d(t, 1);
  REQUIRE(global.shape() == Shape{2, 3, 1, 1});
  Tensor want = mean(reshape(t, {2, 3, 20}), 2);
  for (std::size_t i = 0; i < 6; ++i) CHECK(global.at(i) == doctest::Approx(want.at(i)).epsilon(1e-14));
  // Divisible sizes: the plain average pool.
  Tensor a = adaptive_avg_pool2d(normal({1, 2, 4, 6}, gen), {2, 3});
  CHECK(a.shape() == Shape{1, 2, 2, 3});
  Tensor u = normal({1, 2, 4, 6}, gen);
  CHECK(adaptive_avg_pool2d(u, {2, 3}).to_vector() == avg_pool2d(u, 2).to_vector());
  // Output larger than the input: bins overlap and repeat elements.
  check_values(adaptive_avg_pool2d(f64({1, 1, 1, 2}, {1, 3}), {1, 3}), {1, 1, 1, 3}, {1, 2, 3});
  CHECK(adaptive_avg_pool2d(Tensor::zeros({0, 2, 3, 3}), 2).shape() == Shape{0, 2, 2, 2});
}

TEST_CASE("avg_pool2d and adaptive_avg_pool2d: first and second order") {
  Generator gen(109);
  Tensor x = normal({2, 2, 5, 6}, gen);
  struct Case {
    Size2 kernel, stride, padding;
  };
  for (const Case& c : std::vector<Case>{{{2, 2}, {0, 0}, {0, 0}},
                                         {{3, 3}, {1, 1}, {1, 1}},
                                         {{2, 3}, {1, 2}, {1, 1}},
                                         {{5, 1}, {1, 1}, {0, 0}}}) {
    INFO("kernel " << c.kernel[0] << "x" << c.kernel[1] << " stride " << c.stride[0] << "x" << c.stride[1]);
    CHECK_GRADCHECK([c](const Inputs& v) { return avg_pool2d(v[0], c.kernel, c.stride, c.padding); }, {x});
    CHECK_GRADGRADCHECK([c](const Inputs& v) { return squared(avg_pool2d(v[0], c.kernel, c.stride, c.padding)); },
                        {x});
  }
  for (Size2 out : {Size2{1, 1}, Size2{2, 4}, Size2{3, 3}, Size2{7, 2}}) {
    INFO("output " << out[0] << "x" << out[1]);
    CHECK_GRADCHECK([out](const Inputs& v) { return adaptive_avg_pool2d(v[0], out); }, {x});
    CHECK_GRADGRADCHECK([out](const Inputs& v) { return squared(adaptive_avg_pool2d(v[0], out)); }, {x});
  }
}

TEST_CASE("max_pool2d with padding: padding is -inf, ties to the first element inside the input") {
  // All negative: zero padding would win; -inf padding never does.
  Tensor x = f64({1, 1, 3, 3}, {-1, -2, -3, -4, -5, -6, -7, -8, -9});
  check_values(max_pool2d(x, 2, 2, 1), {1, 1, 2, 2}, {-1, -2, -4, -5});
  check_values(grad_of_sum(x, [](const Tensor& t) { return max_pool2d(t, 2, 2, 1); }), {1, 1, 3, 3},
               {1, 1, 0, 1, 1, 0, 0, 0, 0});
  // Ties: each window's first element in row-major order among those inside the input.
  Tensor ones = Tensor::ones({1, 1, 3, 3}, DType::f64);
  check_values(grad_of_sum(ones, [](const Tensor& t) { return max_pool2d(t, 3, 1, 1); }), {1, 1, 3, 3},
               {4, 2, 0, 2, 1, 0, 0, 0, 0});
  // Rectangular windows and strides.
  Tensor r = f64({1, 1, 2, 4}, {1, 5, 3, 2, 8, 0, 4, 9});
  check_values(max_pool2d(r, {1, 2}, {1, 2}), {1, 1, 2, 2}, {5, 3, 8, 9});
  check_values(max_pool2d(r, {2, 1}, {1, 1}), {1, 1, 1, 4}, {8, 5, 4, 9});
  check_values(max_pool2d(r, {2, 2}, {1, 1}, {0, 1}), {1, 1, 1, 5}, {8, 8, 5, 9, 9});
  Generator gen(110);
  Tensor d = distinct({2, 2, 5, 6}, gen);
  for (std::size_t padding : {1, 2}) {
    INFO("padding " << padding);
    CHECK_GRADCHECK([padding](const Inputs& v) { return max_pool2d(v[0], 4, 2, padding); }, {d});
    CHECK_GRADGRADCHECK([padding](const Inputs& v) { return squared(max_pool2d(v[0], 4, 2, padding)); }, {d});
  }
  CHECK_GRADCHECK([](const Inputs& v) { return max_pool2d(v[0], {2, 3}, {1, 2}, {1, 1}); }, {d});
  CHECK_GRADGRADCHECK([](const Inputs& v) { return squared(max_pool2d(v[0], {3, 2}, {2, 1}, {1, 0})); }, {d});
}

TEST_CASE("pooling: errors name the op and the shapes") {
  Tensor x = Tensor::zeros({1, 2, 3, 4});
  CHECK_OP_ERROR(avg_pool2d(x, 4), "avg_pool2d: window 4x4 is larger than the input", "f32[1, 2, 3, 4]");
  CHECK_OP_ERROR(avg_pool2d(x, 2, 1, 2), "avg_pool2d: padding 2x2 is more than half the window 2x2", "[1, 2, 3, 4]");
  CHECK_OP_ERROR(avg_pool2d(x, 0), "avg_pool2d", "[1, 2, 3, 4]");
  CHECK_OP_ERROR(avg_pool2d(Tensor::zeros({2, 3, 4}), 2), "avg_pool2d", "[2, 3, 4]");
  CHECK_OP_ERROR(avg_pool2d(x, {4, 1}, {1, 1}), "avg_pool2d: window 4x1", "[1, 2, 3, 4]");
  CHECK_OP_ERROR(max_pool2d(x, 3, 1, 2), "max_pool2d: padding 2x2", "[1, 2, 3, 4]");
  CHECK_OP_ERROR(max_pool2d(x, {2, 7}, {1, 1}, {0, 1}), "max_pool2d: window 2x7 is larger than the input",
                 "padded by 0x1");
  CHECK_OP_ERROR(max_pool2d(x, {1, SIZE_MAX}, {1, 1}, {0, SIZE_MAX / 2}), "max_pool2d: window", "[1, 2, 3, 4]");
  CHECK(max_pool2d(x, {1, 6}, {1, 1}, {0, 1}).shape() == Shape{1, 2, 3, 1});
  CHECK_OP_ERROR(adaptive_avg_pool2d(x, 0), "adaptive_avg_pool2d", "[1, 2, 3, 4]");
  CHECK_OP_ERROR(adaptive_avg_pool2d(Tensor::zeros({1, 1, 0, 3}), 1), "adaptive_avg_pool2d", "[1, 1, 0, 3]");
  CHECK_OP_ERROR(adaptive_avg_pool2d(Tensor::zeros({3, 4}), 1), "adaptive_avg_pool2d", "[3, 4]");
  CHECK_OP_ERROR(adaptive_avg_pool2d(x, {std::size_t{1} << 33, 1}), "adaptive_avg_pool2d", "2^32");
  // Outputs that overflow, or that fit in 64 bits but not in memory, are refused before any bin is listed.
  Tensor one = Tensor::ones({1, 1, 1, 1});
  CHECK_OP_ERROR(adaptive_avg_pool2d(one, {std::size_t{1} << 31, std::size_t{1} << 31}), "adaptive_avg_pool2d",
                 "[1, 1, 2147483648, 2147483648]");
  try {
    (void)adaptive_avg_pool2d(one, {std::size_t{1} << 30, std::size_t{1} << 30});  // 2^62 bytes
    FAIL("a 4 EiB output was allocated");
  } catch (const AllocationError& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("adaptive_avg_pool2d: cannot allocate f32[1, 1, 1073741824, 1073741824]") !=
          std::string::npos);
  }
  // A joined extent that overflows (empty tensors: nothing is allocated).
  Tensor wide = Tensor::zeros({0, std::size_t{1} << 63});
  CHECK_OP_ERROR(cat({wide, wide}, 1), "cat", "overflow", "[0, 9223372036854775808]");
  CHECK(tape_size() == 0);
}

// ================================================================ dropout

TEST_CASE("dropout: nn::Dropout's masks from a generator of the same seed, the identity when not training") {
  Tensor x = Tensor::ones({4, 50});
  nn::Dropout layer(0.3, std::uint64_t{11});
  Generator gen(11);
  CHECK(dropout(x, 0.3, true, gen).to_vector() == layer.forward(x).to_vector());
  CHECK(dropout(x, 0.3, true, gen).to_vector() == layer.forward(x).to_vector());  // the streams stay in step
  Generator other(12);
  Tensor y = dropout(x, 0.3, true, other);
  std::size_t kept = 0;
  for (double v : y.to_vector()) {
    CHECK((v == 0.0 || v == doctest::Approx(1 / 0.7)));
    kept += v != 0.0;
  }
  CHECK(kept > 100);
  CHECK(kept < 180);
  CHECK(dropout(x, 0.3, false, gen).shares_storage_with(x));
  CHECK(dropout(x, 0.0, true, gen).shares_storage_with(x));
  CHECK(dropout(x, 1.0, true, gen).to_vector() == Values(200, 0.0));
  // d = g * mask, the mask of the forward pass.
  Tensor leaf = Tensor::ones({3, 7}, DType::f64).set_requires_grad();
  Generator g3(3);
  Tensor out = dropout(leaf, 0.5, true, g3);
  backward(sum(out));
  CHECK(leaf.grad().to_vector() == out.to_vector());
  CHECK_OP_ERROR(dropout(x, 1.5, true, gen), "dropout", "[4, 50]");
  CHECK_OP_ERROR(dropout(x, -0.1, true, gen), "dropout", "[4, 50]");
  CHECK_OP_ERROR(dropout(x, kNaN, false, gen), "dropout", "[4, 50]");
}

// ================================================================ NaN

namespace {

using op_checks::GradAtNaN;
using op_checks::NanCase;

/// Each new differentiable op on an input that is positive except x[1] = NaN.
std::vector<NanCase> nan_cases(DType dtype) {
  const Shape m{2, 3}, image{1, 1, 2, 3};
  Tensor other = Tensor::ones(m, dtype);
  using G = GradAtNaN;
  return {
      {"cat", m, [=](const Tensor& x) { return cat({other, x}); }, 7, G::finite},
      {"stack", m, [=](const Tensor& x) { return stack({x, other}, 1); }, 1, G::finite},
      {"narrow", m, [](const Tensor& x) { return narrow(x, 1, 1, 2); }, 0, G::finite},
      {"index_select", m, [](const Tensor& x) { return index_select(x, 1, Tensor::from_data({2}, {1, 1})); }, 0,
       G::finite},
      {"gather", m, [](const Tensor& x) { return gather(x, 1, Tensor::from_data({2, 1}, {1, 0})); }, 0, G::finite},
      {"embedding", m, [](const Tensor& x) { return embedding(Tensor::from_data({1}, {0}), x); }, 1, G::finite},
      {"min", m, [](const Tensor& x) { return min(x); }, 0, G::one},
      {"min (axis 1)", m, [](const Tensor& x) { return min(x, 1); }, 0, G::one},
      {"var", m, [](const Tensor& x) { return var(x, 1); }, 0, G::nan},
      {"std (axis 0)", m, [](const Tensor& x) { return ag::std(x, 0); }, 1, G::nan},
      {"prod", m, [](const Tensor& x) { return prod(x, 1); }, 0, G::finite},
      {"prod (all)", m, [](const Tensor& x) { return prod(x); }, 0, G::finite},
      {"avg_pool2d", image, [](const Tensor& x) { return avg_pool2d(x, 2, 1); }, 0, G::finite},
      {"avg_pool2d (padded)", image, [](const Tensor& x) { return avg_pool2d(x, 3, 1, 1); }, 5, G::finite},
      {"adaptive_avg_pool2d", image, [](const Tensor& x) { return adaptive_avg_pool2d(x, 1); }, 0, G::finite},
      {"max_pool2d (padded)", image, [](const Tensor& x) { return max_pool2d(x, 2, 2, 1); }, 1, G::one},
      {"max_pool2d (2x3)", image, [](const Tensor& x) { return max_pool2d(x, {2, 3}, {1, 1}); }, 0, G::one},
      // A dropped NaN stays NaN (NaN * 0), as PyTorch's.
      {"dropout", m, [](const Tensor& x) {
         Generator gen(5);
         return dropout(x, 0.5, true, gen);
       }, 1, G::finite},
  };
}

}  // namespace

TEST_CASE("NaN propagates through the new ops, forward and backward, float32 and float64") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const NanCase& c : nan_cases(dtype)) {
      Tensor x = Tensor::zeros(c.shape, DType::f64);
      for (std::size_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = 0.5 + 0.25 * static_cast<double>(i);
      op_checks::check_nan_case(c, x.to(dtype));
    }
  }
}

// ================================================================ float32, and the modules

TEST_CASE("the new ops in float32 are close to float64") {
  Generator gen(111);
  Tensor x64 = normal({2, 3, 4, 5}, gen), x32 = x64.to(DType::f32);
  auto worst = [](const Tensor& a, const Tensor& b) {
    std::vector<double> u = a.to_vector(), v = b.to_vector();
    double w = u.size() == v.size() ? 0.0 : 1.0;
    for (std::size_t i = 0; i < u.size() && i < v.size(); ++i) w = std::max(w, std::abs(u[i] - v[i]) / (1 + std::abs(v[i])));
    return w;
  };
  const std::vector<std::function<Tensor(const Tensor&)>> ops = {
      [](const Tensor& t) { return avg_pool2d(t, 3, 1, 1); },
      [](const Tensor& t) { return adaptive_avg_pool2d(t, {3, 2}); },
      [](const Tensor& t) { return max_pool2d(t, 2, 1, 1); },
      [](const Tensor& t) { return var(t, 3); },
      [](const Tensor& t) { return ag::std(t, 2, 0.0); },
      [](const Tensor& t) { return prod(t, 1); },
      [](const Tensor& t) { return min(t, 0); },
      [](const Tensor& t) { return cat({t, t}, 2); },
      [](const Tensor& t) { return gather(t, 3, argmax(t, 3, true)); },
  };
  for (std::size_t i = 0; i < ops.size(); ++i) {
    INFO("op " << i);
    Tensor y32 = ops[i](x32);
    CHECK(y32.dtype() == DType::f32);
    CHECK(worst(y32, ops[i](x64)) < 1e-5);
  }
}

TEST_CASE("AvgPool2d, AdaptiveAvgPool2d and Embedding modules") {
  Generator gen(112);
  Tensor x = Tensor::randn({2, 3, 6, 6}, gen);
  nn::AvgPool2d pool(2);
  CHECK(pool(x).to_vector() == avg_pool2d(x, 2).to_vector());
  CHECK(pool.type_name() == "AvgPool2d(kernel=2, stride=2, padding=0)");
  nn::AvgPool2d rect({2, 3}, {1, 0}, {1, 1});
  CHECK(rect(x).shape() == Shape{2, 3, 7, 2});
  CHECK(rect.type_name() == "AvgPool2d(kernel=(2, 3), stride=(1, 3), padding=1)");
  nn::AdaptiveAvgPool2d global(1);
  CHECK(global(x).shape() == Shape{2, 3, 1, 1});
  CHECK(global.type_name() == "AdaptiveAvgPool2d(output_size=1)");
  CHECK(nn::AdaptiveAvgPool2d({2, 3})(x).shape() == Shape{2, 3, 2, 3});
  CHECK(pool.parameters().empty());
  CHECK_THROWS_WITH_AS(nn::AvgPool2d(0), doctest::Contains("AvgPool2d"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::AvgPool2d(2, 1, 2), doctest::Contains("AvgPool2d: padding 2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::AdaptiveAvgPool2d(0), doctest::Contains("AdaptiveAvgPool2d"), std::invalid_argument);

  nn::Embedding embed(10, 4, &gen, DType::f64);
  CHECK(embed.type_name() == "Embedding(10, 4)");
  REQUIRE(embed.named_parameters().size() == 1);
  CHECK(embed.named_parameters()[0].first == "weight");
  CHECK(embed.weight().shape() == Shape{10, 4});
  CHECK(embed.weight().requires_grad());
  Tensor ids = Tensor::from_data({2, 3}, {1, 9, 1, 0, 0, 2});
  Tensor e = embed(ids);
  CHECK(e.shape() == Shape{2, 3, 4});
  for (std::size_t k = 0; k < 4; ++k) CHECK(e.at(4 + k) == embed.weight().at(9 * 4 + k));
  backward(sum(e));
  CHECK(embed.weight().grad().at(0) == 2.0);   // row 0 picked twice
  CHECK(embed.weight().grad().at(4) == 2.0);   // row 1 picked twice
  CHECK(embed.weight().grad().at(12) == 0.0);  // row 3 never
  CHECK_THROWS_WITH_AS(nn::Embedding(0, 4), doctest::Contains("Embedding"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(embed(Tensor::from_data({1}, {10})), doctest::Contains("embedding: index 10"),
                       std::invalid_argument);
}
