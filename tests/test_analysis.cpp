// analysis: Hessian-vector products against the full Hessian and against central differences of the
// gradient, on a quadratic of known Hessian and on a small tanh MLP with cross-entropy (float64); the
// chunked product against one batch; the Gauss-Newton product against J^T H J built explicitly (and the
// Hessian for a linear model); top eigenpairs by Lanczos and power iteration against LAPACK's full
// eigen-decomposition; Hutchinson's trace against the exact trace; the quadrature identities of
// stochastic Lanczos; Cholesky; errors that name what is wrong.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "analysis/analysis.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

using ag::DType;
using ag::Tensor;
using Vec = std::vector<double>;

namespace {

Tensor parameter(const ag::Shape& shape, ag::Generator& gen, double stddev) {
  Tensor t = Tensor::randn(shape, gen, 0.0, stddev, DType::f64);
  t.set_requires_grad();
  return t;
}

double dot(const Vec& a, const Vec& b) { return std::inner_product(a.begin(), a.end(), b.begin(), 0.0); }

double max_abs(const Vec& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

double max_abs_difference(const Vec& a, const Vec& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

Vec matvec(const Vec& a, const Vec& v) {
  const std::size_t n = v.size();
  Vec out(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) out[i] += a[i * n + j] * v[j];
  }
  return out;
}

Vec random_vector(std::size_t n, ag::Generator& gen) {
  Vec v(n);
  for (double& x : v) x = gen.normal();
  return v;
}

/// Flat values of tensors, one after the other.
Vec flat(const std::vector<Tensor>& tensors) {
  Vec out;
  for (const Tensor& t : tensors) {
    Vec values = t.to_vector();
    out.insert(out.end(), values.begin(), values.end());
  }
  return out;
}

/// An 8-12-4 tanh MLP (160 parameters) with cross-entropy on random data, float64.
struct Mlp {
  static constexpr std::size_t inputs = 8, hidden = 12, classes = 4, batch = 32;
  Tensor w1, b1, w2, b2, x;
  std::vector<std::int32_t> labels;

  explicit Mlp(std::uint64_t seed = 7) {
    ag::Generator gen(seed);
    w1 = parameter({inputs, hidden}, gen, 0.6);
    b1 = parameter({hidden}, gen, 0.3);
    w2 = parameter({hidden, classes}, gen, 0.6);
    b2 = parameter({classes}, gen, 0.3);
    x = Tensor::randn({batch, inputs}, gen, 0.0, 1.0, DType::f64);
    for (std::size_t i = 0; i < batch; ++i) labels.push_back(static_cast<std::int32_t>(gen.below(classes)));
  }
  std::vector<Tensor> params() const { return {w1, b1, w2, b2}; }
  /// Logits of rows [begin, end).
  Tensor logits(std::size_t begin = 0, std::size_t end = batch) const {
    std::vector<double> rows = x.to_vector();
    std::span<const double> part(rows.data() + begin * inputs, (end - begin) * inputs);
    Tensor xb = Tensor::from_data({end - begin, inputs}, part);
    return ag::linear(ag::tanh(ag::linear(xb, w1, b1)), w2, b2);
  }
  Tensor loss(std::size_t begin = 0, std::size_t end = batch) const {
    std::span<const std::int32_t> part(labels.data() + begin, end - begin);
    return ag::cross_entropy(logits(begin, end), part);
  }
};

/// f(x) = 1/2 x^T A x + b^T x on a column x (n, 1), A = Q diag(lambda) Q^T with Q a Householder reflection.
struct Quadratic {
  Vec lambda{10.0, -7.0, 5.0, 3.0, 2.0, 1.0, 0.5, -0.25, 0.1, 0.05};
  std::size_t n = lambda.size();
  Vec a, q;  // row-major n x n; eigenvector j is column j of q
  Tensor matrix, b, x;

  Quadratic() {
    ag::Generator gen(3);
    Vec u = random_vector(n, gen);
    const double uu = dot(u, u);
    q.assign(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) q[i * n + j] = (i == j ? 1.0 : 0.0) - 2.0 * u[i] * u[j] / uu;
    }
    a.assign(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        for (std::size_t k = 0; k < n; ++k) a[i * n + j] += q[i * n + k] * lambda[k] * q[j * n + k];
      }
    }
    matrix = Tensor::from_data({n, n}, std::span<const double>(a));
    b = Tensor::randn({n, 1}, gen, 0.0, 1.0, DType::f64);
    x = parameter({n, 1}, gen, 1.0);
  }
  Tensor loss() const { return 0.5 * ag::sum(x * ag::matmul(matrix, x)) + ag::sum(b * x); }
  Vec eigenvector(std::size_t j) const {
    Vec v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = q[i * n + j];
    return v;
  }
};

/// Exact eigenpairs of a dense symmetric matrix, in decreasing order of |value|.
analysis::Eigenpairs exact_by_magnitude(const Vec& h, std::size_t n) {
  analysis::SymmetricEigen e = analysis::symmetric_eigen(h, n);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t i, std::size_t j) { return std::abs(e.values[i]) > std::abs(e.values[j]); });
  analysis::Eigenpairs out;
  for (std::size_t i : order) {
    out.values.push_back(e.values[i]);
    out.vectors.push_back(e.vector(i));
  }
  return out;
}

/// Each of the first k pairs of `found` against `exact`: values to `value_tolerance` relative, vectors
/// to 1 - |<u, u_exact>| <= `vector_tolerance`.
void check_pairs(const analysis::Eigenpairs& found, const analysis::Eigenpairs& exact, std::size_t k,
                 double value_tolerance, double vector_tolerance) {
  REQUIRE(found.values.size() == k);
  for (std::size_t j = 0; j < k; ++j) {
    CAPTURE(j);
    CAPTURE(found.values[j]);
    CAPTURE(exact.values[j]);
    CHECK(std::abs(found.values[j] - exact.values[j]) <= value_tolerance * std::abs(exact.values[j]));
    CHECK(std::abs(std::sqrt(dot(found.vectors[j], found.vectors[j])) - 1.0) < 1e-12);
    CHECK(1.0 - std::abs(dot(found.vectors[j], exact.vectors[j])) <= vector_tolerance);
  }
}

}  // namespace

// ================================================================ Hessian-vector products

TEST_CASE("hvp: the Hessian of a quadratic is its matrix, and H v is A v") {
  Quadratic f;
  Vec h = analysis::hessian([&] { return f.loss(); }, {f.x});
  CHECK(max_abs_difference(h, f.a) <= 1e-12 * max_abs(f.a));
  ag::Generator gen(5);
  Vec v = random_vector(f.n, gen);
  Tensor vt = Tensor::from_data({f.n, 1}, std::span<const double>(v));
  std::vector<Tensor> hv = analysis::hvp([&] { return f.loss(); }, {f.x}, {vt});
  REQUIRE(hv.size() == 1);
  CHECK(hv[0].shape() == f.x.shape());
  CHECK(hv[0].dtype() == DType::f64);
  CHECK(max_abs_difference(hv[0].to_vector(), matvec(f.a, v)) <= 1e-12 * max_abs(matvec(f.a, v)));
  // LAPACK's eigenvalues of A are the ones A was built from.
  Vec values = analysis::symmetric_eigen(h, f.n).values;
  Vec want = f.lambda;
  std::sort(want.begin(), want.end());
  CHECK(max_abs_difference(values, want) <= 1e-12 * 10.0);
  CHECK(ag::tape_size() == 0);
}

TEST_CASE("hvp: on an MLP, H v is the full Hessian times v and the central difference of the gradient") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  analysis::ParamLayout layout(params, "test");
  REQUIRE(layout.size() == 160);
  Vec h = analysis::hessian([&] { return mlp.loss(); }, params);
  ag::Generator gen(11);
  Vec v = random_vector(layout.size(), gen);
  Vec hv = flat(analysis::hvp([&] { return mlp.loss(); }, params, layout.unflatten(v)));
  const Vec want = matvec(h, v);
  CHECK(max_abs(want) > 1e-2);
  CHECK(max_abs_difference(hv, want) <= 1e-12 * max_abs(want));

  // (g(w + e v) - g(w - e v)) / 2e, the gradient from a first-order backward: error O(e^2).
  auto gradient_at = [&](double step) {
    std::vector<Tensor> moved;
    for (std::size_t k = 0; k < params.size(); ++k) {
      Vec w = params[k].to_vector();
      for (std::size_t i = 0; i < w.size(); ++i) w[i] += step * v[layout.offset(k) + i];
      moved.push_back(Tensor::from_data(params[k].shape(), std::span<const double>(w)));
      ag::Tensor(params[k]).copy_(moved.back());
    }
    Vec g = flat(ag::grad({mlp.loss()}, params));
    return g;
  };
  const double e = 1e-5;
  Vec plus = gradient_at(e), minus = gradient_at(-2 * e);  // minus: from w + e v to w - e v
  gradient_at(e);                                           // back to w
  Vec difference(plus.size());
  for (std::size_t i = 0; i < plus.size(); ++i) difference[i] = (plus[i] - minus[i]) / (2 * e);
  CHECK(max_abs_difference(difference, hv) <= 1e-7 * max_abs(hv));
}

TEST_CASE("hvp: a data set in uneven chunks gives the product of the mean loss over all of it") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  analysis::ParamLayout layout(params, "test");
  ag::Generator gen(12);
  std::vector<Tensor> v = layout.unflatten(random_vector(layout.size(), gen));
  Vec whole = flat(analysis::hvp([&] { return mlp.loss(); }, params, v));
  const std::vector<std::size_t> bounds{0, 5, 17, 32};  // 5, 12 and 15 samples: plain averaging would be wrong
  auto chunk = [&](std::size_t c) {
    return analysis::Chunk{mlp.loss(bounds[c], bounds[c + 1]), bounds[c + 1] - bounds[c]};
  };
  Vec chunked = flat(analysis::hvp(chunk, 3, params, v));
  CHECK(max_abs_difference(chunked, whole) <= 1e-12 * max_abs(whole));
  // Weighting each chunk equally (the mean of the means) is measurably different: the test can tell.
  Vec unweighted(layout.size(), 0.0);
  for (std::size_t c = 0; c < 3; ++c) {
    Vec part = flat(analysis::hvp([&] { return chunk(c).loss; }, params, v));
    for (std::size_t i = 0; i < part.size(); ++i) unweighted[i] += part[i] / 3.0;
  }
  CHECK(max_abs_difference(unweighted, whole) > 1e-4 * max_abs(whole));
  CHECK(ag::tape_size() == 0);
}

// ================================================================ Gauss-Newton

namespace {

/// G = (1/B) sum_i J_i^T (diag p_i - p_i p_i^T) J_i, built from the explicit Jacobian of the logits.
Vec explicit_ggn(const std::function<Tensor()>& logits_fn, const std::vector<Tensor>& params) {
  analysis::ParamLayout layout(params, "test");
  const std::size_t n = layout.size(), b = Mlp::batch, k = Mlp::classes;
  Tensor z = logits_fn();
  Vec p = ag::softmax(z.detach(), 1).to_vector();
  std::vector<Vec> jacobian;  // row (i, c): dz_ic / dparams
  for (std::size_t r = 0; r < b * k; ++r) {
    Tensor seed = Tensor::zeros(z.shape(), DType::f64);
    seed.data<double>()[r] = 1.0;
    jacobian.push_back(flat(ag::grad({z}, params, {seed}, {.retain_graph = r + 1 < b * k})));
  }
  Vec g(n * n, 0.0);
  for (std::size_t i = 0; i < b; ++i) {
    for (std::size_t c = 0; c < k; ++c) {
      for (std::size_t d = 0; d < k; ++d) {
        const double h = ((c == d ? p[i * k + c] : 0.0) - p[i * k + c] * p[i * k + d]) / static_cast<double>(b);
        const Vec& jc = jacobian[i * k + c];
        const Vec& jd = jacobian[i * k + d];
        for (std::size_t r = 0; r < n; ++r) {
          for (std::size_t s = 0; s < n; ++s) g[r * n + s] += jc[r] * h * jd[s];
        }
      }
    }
  }
  return g;
}

}  // namespace

TEST_CASE("ggn_vp: equals J^T H J v built explicitly, and differs from H v on a nonlinear network") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  analysis::ParamLayout layout(params, "test");
  Vec g = explicit_ggn([&] { return mlp.logits(); }, params);
  ag::Generator gen(13);
  Vec v = random_vector(layout.size(), gen);
  Vec gv = flat(analysis::ggn_vp([&] { return mlp.logits(); }, params, layout.unflatten(v)));
  const Vec want = matvec(g, v);
  CHECK(max_abs(want) > 1e-2);
  CHECK(max_abs_difference(gv, want) <= 1e-12 * max_abs(want));
  Vec hv = flat(analysis::hvp([&] { return mlp.loss(); }, params, layout.unflatten(v)));
  CHECK(max_abs_difference(gv, hv) > 1e-3 * max_abs(hv));
  // G is positive semi-definite: v^T G v >= 0 for any v.
  CHECK(dot(v, gv) >= 0.0);
  CHECK(ag::tape_size() == 0);
}

TEST_CASE("ggn_vp: for a linear model with cross-entropy the Gauss-Newton matrix is the Hessian") {
  Mlp mlp;
  ag::Generator gen(14);
  Tensor w = parameter({Mlp::inputs, Mlp::classes}, gen, 0.5), bias = parameter({Mlp::classes}, gen, 0.5);
  const std::vector<Tensor> params{w, bias};
  analysis::ParamLayout layout(params, "test");
  auto logits = [&] { return ag::linear(mlp.x, w, bias); };
  std::vector<Tensor> v = layout.unflatten(random_vector(layout.size(), gen));
  Vec gv = flat(analysis::ggn_vp(logits, params, v));
  Vec hv = flat(analysis::hvp([&] { return ag::cross_entropy(logits(), mlp.labels); }, params, v));
  CHECK(max_abs(hv) > 1e-2);
  CHECK(max_abs_difference(gv, hv) <= 1e-12 * max_abs(hv));
}

// ================================================================ eigenpairs

TEST_CASE("eigenpairs: Lanczos and power iteration find a quadratic's known top eigenpairs") {
  Quadratic f;
  analysis::HessianOperator op([&] { return f.loss(); }, {f.x});
  analysis::Eigenpairs exact;
  for (std::size_t j : {0, 1, 2, 3}) {  // 10, -7, 5, 3: already by magnitude
    exact.values.push_back(f.lambda[j]);
    exact.vectors.push_back(f.eigenvector(j));
  }
  check_pairs(analysis::lanczos_eigenpairs(op, 4, {.steps = 10}), exact, 4, 1e-12, 1e-12);
  analysis::Eigenpairs power = analysis::power_iteration(op, 4, {.tolerance = 1e-12});
  CHECK(power.converged);
  check_pairs(power, exact, 4, 1e-12, 1e-10);
}

TEST_CASE("eigenpairs: on an MLP's Hessian, Lanczos and power iteration match LAPACK's eigh") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  const Vec h = analysis::hessian([&] { return mlp.loss(); }, params);
  const std::size_t n = 160, k = 3;
  analysis::Eigenpairs exact = exact_by_magnitude(h, n);
  CAPTURE(exact.values[0]);
  CAPTURE(exact.values[1]);
  CAPTURE(exact.values[2]);
  CAPTURE(exact.values[3]);
  analysis::HessianOperator op([&] { return mlp.loss(); }, params);

  analysis::Eigenpairs lanczos = analysis::lanczos_eigenpairs(op, k, {.steps = 100, .seed = 1});
  CHECK(lanczos.products == 100 + k);
  check_pairs(lanczos, exact, k, 1e-8, 1e-8);
  REQUIRE(lanczos.residuals.size() == k);
  for (double r : lanczos.residuals) CHECK(r < 1e-8 * std::abs(exact.values[0]));
  // Too few steps do not reach that accuracy: the comparison can fail.
  analysis::Eigenpairs short_run = analysis::lanczos_eigenpairs(op, k, {.steps = 8, .seed = 1});
  CHECK(std::abs(short_run.values[2] - exact.values[2]) > 1e-8 * std::abs(exact.values[2]));

  analysis::Eigenpairs power = analysis::power_iteration(op, k, {.max_iterations = 20000, .tolerance = 1e-11});
  CHECK(power.converged);
  check_pairs(power, exact, k, 1e-8, 1e-6);
  REQUIRE(power.residuals.size() == k);
  for (double r : power.residuals) CHECK(r < 1e-6 * std::abs(exact.values[0]));
}

TEST_CASE("eigenpairs: the same seed gives the same pairs; k and steps are checked") {
  Quadratic f;
  analysis::MatrixOperator op(f.a, f.n);
  CHECK(analysis::lanczos_eigenpairs(op, 2, {.steps = 6, .seed = 9}).values ==
        analysis::lanczos_eigenpairs(op, 2, {.steps = 6, .seed = 9}).values);
  CHECK(analysis::power_iteration(op, 2, {.seed = 9}).vectors == analysis::power_iteration(op, 2, {.seed = 9}).vectors);
  // ... and the seed is used: another start vector, other (unconverged) values after 6 steps.
  CHECK(analysis::lanczos_eigenpairs(op, 2, {.steps = 6, .seed = 9}).values !=
        analysis::lanczos_eigenpairs(op, 2, {.steps = 6, .seed = 10}).values);
  CHECK_THROWS_WITH_AS(analysis::lanczos_eigenpairs(op, 11), doctest::Contains("k = 11 eigenpairs asked of a 10 x 10"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::power_iteration(op, 0), doctest::Contains("k = 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::lanczos_eigenpairs(op, 4, {.steps = 3}), doctest::Contains("3 steps for k = 4"),
                       std::invalid_argument);
  // More steps than the dimension: the whole Krylov space, and the exact spectrum.
  analysis::Eigenpairs all = analysis::lanczos_eigenpairs(op, 2, {.steps = 50});
  CHECK(all.products == 10 + 2);
  CHECK(all.values[0] == doctest::Approx(10.0).epsilon(1e-13));
  CHECK(all.values[1] == doctest::Approx(-7.0).epsilon(1e-13));
  CHECK_THROWS_WITH_AS(analysis::lanczos(op, Vec(10, 0.0), 5), doctest::Contains("length 0"), std::invalid_argument);
}

TEST_CASE("dense: a matrix larger than the machine's memory is refused before any product") {
  std::size_t products = 0;
  analysis::FunctionOperator huge(std::size_t{1} << 24, [&](const Vec& v) {
    ++products;
    return v;
  });
  CHECK_THROWS_WITH_AS(analysis::dense(huge), doctest::Contains("dense: a 16777216 x 16777216 matrix needs 2251799.8 GB"),
                       std::invalid_argument);
  CHECK(products == 0);
}

TEST_CASE("eigenpairs and density: a NaN in the operator is refused at its first product, not after all of them") {
  Quadratic f;
  Vec a = f.a;
  a[3 * f.n + 4] = a[4 * f.n + 3] = std::numeric_limits<double>::quiet_NaN();
  std::size_t products = 0;
  analysis::MatrixOperator matrix(a, f.n);
  analysis::FunctionOperator op(f.n, [&](const Vec& v) {
    ++products;
    return matrix.apply(v);
  });
  auto refused = [&](const std::function<void()>& run, const char* name) {
    CAPTURE(name);
    products = 0;
    const std::string expected = std::string(name) + ": the operator's product 1 is not finite";
    CHECK_THROWS_WITH_AS(run(), doctest::Contains(expected.c_str()), std::invalid_argument);
    CHECK(products == 1);
  };
  refused([&] { analysis::power_iteration(op, 2); }, "power_iteration");
  refused([&] { analysis::lanczos_eigenpairs(op, 2); }, "lanczos");
  refused([&] { analysis::spectral_density(op); }, "lanczos");
  // Hutchinson's estimate carries the NaN.
  CHECK(std::isnan(analysis::hutchinson_trace(op, 4).estimate));
}

TEST_CASE("eigenpairs: Lanczos restarts past an invariant subspace") {
  // A start vector in a 2-dimensional invariant subspace of diag(1..6) cannot see the rest; the run
  // restarts from a vector orthogonal to its basis and still finds the top pairs.
  Vec a(36, 0.0);
  for (std::size_t i = 0; i < 6; ++i) a[i * 6 + i] = static_cast<double>(i + 1);
  analysis::MatrixOperator op(a, 6);
  analysis::LanczosRun run = analysis::lanczos(op, {1, 1, 0, 0, 0, 0}, 6);
  CHECK(run.alpha.size() == 2);
  CHECK(run.next_beta == 0.0);
  analysis::Eigenpairs top = analysis::lanczos_eigenpairs(op, 3, {.steps = 6});
  REQUIRE(top.values.size() == 3);
  CHECK(top.values[0] == doctest::Approx(6.0).epsilon(1e-13));
  CHECK(top.values[1] == doctest::Approx(5.0).epsilon(1e-13));
  CHECK(top.values[2] == doctest::Approx(4.0).epsilon(1e-13));
}

// ================================================================ trace and density

TEST_CASE("hutchinson: within 3 standard errors of the exact trace, and the error shrinks as 1/sqrt(N)") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  const Vec h = analysis::hessian([&] { return mlp.loss(); }, params);
  double trace = 0;
  for (std::size_t i = 0; i < 160; ++i) trace += h[i * 160 + i];
  analysis::HessianOperator op([&] { return mlp.loss(); }, params);
  analysis::TraceEstimate few = analysis::hutchinson_trace(op, 100, 21);
  analysis::TraceEstimate many = analysis::hutchinson_trace(op, 1600, 22);
  CAPTURE(trace);
  CAPTURE(few.estimate);
  CAPTURE(few.standard_error);
  CAPTURE(many.estimate);
  CAPTURE(many.standard_error);
  CHECK(few.standard_error > 0.0);
  CHECK(std::abs(few.estimate - trace) <= 3.0 * few.standard_error);
  CHECK(std::abs(many.estimate - trace) <= 3.0 * many.standard_error);
  // 16 times the probes: a quarter of the standard error, up to the sampling of the deviation itself.
  CHECK(many.standard_error == doctest::Approx(few.standard_error / 4.0).epsilon(0.3));
  // Rademacher probes see a diagonal matrix exactly: z^T D z = tr D for every z.
  analysis::MatrixOperator diagonal({2, 0, 0, 0, -1, 0, 0, 0, 7}, 3);
  analysis::TraceEstimate exact = analysis::hutchinson_trace(diagonal, 10);
  CHECK(exact.estimate == 8.0);
  CHECK(exact.standard_error == 0.0);
  // The standard error is the sample std over sqrt(N), with N - 1: z^T A z = 2 z1 z2 = ±2 for A = [[0,1],[1,0]].
  analysis::MatrixOperator swap({0, 1, 1, 0}, 2);
  analysis::TraceEstimate two = analysis::hutchinson_trace(swap, 8, 3);
  double mean = 0, squares = 0;
  for (double sample : two.samples) mean += sample / 8;
  for (double sample : two.samples) squares += (sample - mean) * (sample - mean);
  REQUIRE(two.samples.size() == 8);
  CHECK(squares > 0);  // both signs among the probes
  CHECK(two.estimate == doctest::Approx(mean).epsilon(1e-15));
  CHECK(two.standard_error == doctest::Approx(std::sqrt(squares / 7 / 8)).epsilon(1e-15));  // not squares / 8 / 8
}

TEST_CASE("spectral density: unit mass, and the quadrature's moments are the probes' v^T A v and ||A v||^2") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  const Vec h = analysis::hessian([&] { return mlp.loss(); }, params);
  const std::size_t n = 160;
  double trace = 0;
  for (std::size_t i = 0; i < n; ++i) trace += h[i * n + i];
  analysis::MatrixOperator op(h, n);
  const std::size_t probes = 40;
  analysis::SpectralDensity d = analysis::spectral_density(op, {.probes = probes, .steps = 30, .grid_points = 4000, .seed = 31});
  REQUIRE(d.nodes.size() == probes);
  CHECK(d.mass == doctest::Approx(1.0).epsilon(1e-9));
  const double step = d.grid[1] - d.grid[0];
  CHECK(std::accumulate(d.density.begin(), d.density.end(), 0.0) * step == doctest::Approx(1.0).epsilon(1e-12));

  // The probes are the Rademacher vectors hutchinson_trace draws from the same seed: per probe,
  // n sum tau theta = z^T A z and n sum tau theta^2 = z^T A^2 z (Gauss quadrature is exact to degree 2m - 1).
  analysis::TraceEstimate first = analysis::hutchinson_trace(op, probes, 31);
  analysis::FunctionOperator squared(n, [&](const Vec& v) { return op.apply(op.apply(v)); });
  analysis::TraceEstimate second = analysis::hutchinson_trace(squared, probes, 31);
  double trace_sum = 0;
  for (std::size_t p = 0; p < probes; ++p) {
    CAPTURE(p);
    const Vec& theta = d.nodes[p];
    const Vec& tau = d.weights[p];
    CHECK(std::accumulate(tau.begin(), tau.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-13));
    double m1 = 0, m2 = 0;
    for (std::size_t j = 0; j < theta.size(); ++j) {
      m1 += tau[j] * theta[j];
      m2 += tau[j] * theta[j] * theta[j];
    }
    CHECK(static_cast<double>(n) * m1 == doctest::Approx(first.samples[p]).epsilon(1e-11));
    CHECK(static_cast<double>(n) * m2 == doctest::Approx(second.samples[p]).epsilon(1e-11));
    trace_sum += m1;
  }
  CHECK(d.trace_estimate() == doctest::Approx(first.estimate).epsilon(1e-12));
  // The averaged first moment estimates tr A / n; its standard error is Hutchinson's over n.
  CHECK(std::abs(trace_sum / probes - trace / n) <= 3.0 * first.standard_error / n);
  // Gaussian widening keeps the mean: the grid density's first moment is the quadrature's.
  double grid_mean = 0;
  for (std::size_t g = 0; g < d.grid.size(); ++g) grid_mean += d.grid[g] * d.density[g] * step;
  CHECK(grid_mean == doctest::Approx(trace_sum / probes).epsilon(1e-8));
}

TEST_CASE("spectral density: with as many steps as the dimension the nodes are the eigenvalues") {
  Quadratic f;
  analysis::MatrixOperator op(f.a, f.n);
  analysis::SpectralDensity d = analysis::spectral_density(op, {.probes = 2, .steps = 10, .sigma = 0.01});
  Vec want = f.lambda;
  std::sort(want.begin(), want.end());
  REQUIRE(d.nodes.size() == 2);  // a probe's
  for (const Vec& nodes : d.nodes) CHECK(max_abs_difference(nodes, want) <= 1e-11);
  CHECK(d.sigma == 0.01);
  CHECK_THROWS_WITH_AS(analysis::spectral_density(op, {.probes = 0}), doctest::Contains("probes 0"),
                       std::invalid_argument);
}

// ================================================================ dense algebra and errors

TEST_CASE("cholesky: factor and solve, and none for an indefinite or non-finite matrix") {
  const Vec a{4, 2, 0, 2, 5, 1, 0, 1, 3};
  auto l = analysis::cholesky(a, 3);
  REQUIRE(l.has_value());
  CHECK((*l)[1] == 0.0);  // upper triangle cleared
  Vec llt(9, 0.0);
  for (std::size_t i = 0; i < 3; ++i) {
    for (std::size_t j = 0; j < 3; ++j) {
      for (std::size_t k = 0; k < 3; ++k) llt[i * 3 + j] += (*l)[i * 3 + k] * (*l)[j * 3 + k];
    }
  }
  CHECK(max_abs_difference(llt, a) <= 1e-14);
  Vec x = analysis::cholesky_solve(*l, 3, {1, 2, 3});
  CHECK(max_abs_difference(matvec(a, x), {1, 2, 3}) <= 1e-14);
  CHECK_FALSE(analysis::cholesky({1, 2, 2, 1}, 2).has_value());
  CHECK(analysis::cholesky({9}, 1) == std::vector<double>{3});
  CHECK_FALSE(analysis::cholesky({0}, 1).has_value());
  CHECK_FALSE(analysis::cholesky({1, 0, 0, std::nan("")}, 2).has_value());
  CHECK_FALSE(analysis::cholesky({1, 0, 0, INFINITY}, 2).has_value());
  CHECK_THROWS_WITH_AS(analysis::cholesky({1, 2, 3}, 2), doctest::Contains("3 entries, not n * n = 4"),
                       std::invalid_argument);
}

TEST_CASE("errors: they name the wrong vector, parameter or loss, and leave the tape empty") {
  Mlp mlp;
  const std::vector<Tensor> params = mlp.params();
  auto loss = [&] { return mlp.loss(); };
  std::vector<Tensor> v{Tensor::zeros({8, 12}, DType::f64), Tensor::zeros({3}, DType::f64),
                        Tensor::zeros({12, 4}, DType::f64), Tensor::zeros({4}, DType::f64)};
  CHECK_THROWS_WITH_AS(analysis::hvp(loss, params, v), doctest::Contains("hvp: v[1] is f64[3] but parameter 1 is f64[12]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::ggn_vp([&] { return mlp.logits(); }, params, {v[0]}),
                       doctest::Contains("ggn_vp: 1 tensors given for 4 parameters"), std::invalid_argument);
  Tensor constant = Tensor::zeros({3}, DType::f64);
  CHECK_THROWS_WITH_AS(analysis::hvp(loss, {constant}, {constant}),
                       doctest::Contains("parameter 0 (f64[3]) does not require grad"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::HessianOperator([&] { return mlp.logits(); }, params),
                       doctest::Contains("one-element tensor, not f64[32, 4]"), std::invalid_argument);
  CHECK(ag::tape_size() == 0);
  auto empty_chunk = [&](std::size_t c) { return analysis::Chunk{mlp.loss(), c == 1 ? 0u : 32u}; };
  analysis::ParamLayout layout(params, "test");
  CHECK_THROWS_WITH_AS(analysis::hvp(empty_chunk, 2, params, layout.unflatten(Vec(160, 1.0))),
                       doctest::Contains("chunk 1 of 2 has no samples"), std::invalid_argument);
  analysis::HessianOperator op(loss, params);
  CHECK_THROWS_WITH_AS(op.apply(Vec(159, 0.0)), doctest::Contains("159 entries, the operator is 160 x 160"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::power_iteration(op, 161), doctest::Contains("k = 161 eigenpairs asked of a 160 x 160"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(layout.unflatten(Vec(161, 0.0)), doctest::Contains("161 values for 4 parameters of 160 elements"),
                       std::invalid_argument);
}

TEST_CASE("hvp: float32 parameters get float32 products close to float64's") {
  Quadratic f;
  Tensor x32 = f.x.to(DType::f32);
  x32.set_requires_grad();
  Tensor a32 = f.matrix.to(DType::f32), b32 = f.b.to(DType::f32);
  auto loss32 = [&] { return 0.5 * ag::sum(x32 * ag::matmul(a32, x32)) + ag::sum(b32 * x32); };
  Tensor v = Tensor::ones({f.n, 1}, DType::f32);
  std::vector<Tensor> hv = analysis::hvp(loss32, {x32}, {v});
  CHECK(hv[0].dtype() == DType::f32);
  CHECK(max_abs_difference(hv[0].to_vector(), matvec(f.a, Vec(f.n, 1.0))) <= 1e-5 * 10.0);
}
