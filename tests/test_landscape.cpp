// analysis/landscape.hpp: the 1-D interpolation and 2-D slices of a quadratic of known Hessian against their
// closed forms (float64), the endpoints against the losses at theta_0 and theta_1, the weights restored bit for
// bit (also after a throwing loss); filter normalisation of Linear and Conv2d weights, biases zeroed or
// normalised, determinism by seed; the PCA of a trajectory in a known 2-D plane; errors that name what is
// wrong.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/landscape.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "nn/layers.hpp"

using ag::DType;
using ag::Tensor;
using Vec = std::vector<double>;

namespace {

double dot(const Vec& a, const Vec& b) { return std::inner_product(a.begin(), a.end(), b.begin(), 0.0); }

/// H v, H row-major and square.
Vec times(const Vec& h, const Vec& v) { return analysis::MatrixOperator(h, v.size()).apply(v); }

Vec random_vector(std::size_t n, ag::Generator& gen) {
  Vec v(n);
  std::generate(v.begin(), v.end(), [&] { return gen.normal(); });
  return v;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  const std::size_t bytes = a.numel() * (a.dtype() == DType::f64 ? 8 : 4);
  return a.dtype() == DType::f64 ? std::memcmp(a.data<double>(), b.data<double>(), bytes) == 0
                                 : std::memcmp(a.data<float>(), b.data<float>(), bytes) == 0;
}

/// L(theta) = 1/2 theta^T H theta + c^T theta over theta = (W (2 x 3) flat, b (3)), n = 9, H symmetric
/// positive definite and known.
struct Quadratic {
  static constexpr std::size_t n = 9;
  Vec h, c;
  Tensor w = Tensor::zeros({2, 3}, DType::f64).set_requires_grad();
  Tensor b = Tensor::zeros({3}, DType::f64).set_requires_grad();

  explicit Quadratic(ag::Generator& gen) : h(n * n), c(random_vector(n, gen)) {
    Vec m = random_vector(n * n, gen);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) h[i * n + j] = dot(Vec(m.begin() + i * n, m.begin() + (i + 1) * n),
                                                           Vec(m.begin() + j * n, m.begin() + (j + 1) * n)) +
                                                       (i == j ? 1.0 : 0.0);
    }
    w.copy_(Tensor::randn({2, 3}, gen, 0, 1, DType::f64));
    b.copy_(Tensor::randn({3}, gen, 0, 1, DType::f64));
  }
  std::vector<Tensor> params() const { return {w, b}; }
  Vec theta() const {
    Vec t = w.to_vector(), tb = b.to_vector();
    t.insert(t.end(), tb.begin(), tb.end());
    return t;
  }
  double value(const Vec& t) const { return 0.5 * dot(t, times(h, t)) + dot(c, t); }
  Vec gradient(const Vec& t) const {
    Vec g = times(h, t);
    for (std::size_t i = 0; i < n; ++i) g[i] += c[i];
    return g;
  }
  analysis::LossFn loss() const {
    return [this] {
      Tensor theta = ag::reshape(ag::cat({ag::reshape(w, {6}), b}), {1, n});
      Tensor hm = Tensor::from_data({n, n}, std::span<const double>(h));
      Tensor cv = Tensor::from_data({1, n}, std::span<const double>(c));
      return ag::add(ag::mul(ag::sum(ag::mul(theta, ag::matmul(theta, hm))), 0.5), ag::sum(ag::mul(cv, theta)));
    };
  }
};

std::vector<Tensor> as_tensors(const Vec& flat) {
  return {Tensor::from_data({2, 3}, std::span<const double>(flat.data(), 6)),
          Tensor::from_data({3}, std::span<const double>(flat.data() + 6, 3))};
}

double filter_norm(const Vec& v, std::size_t start, std::size_t count, std::size_t stride) {
  double s = 0;
  for (std::size_t i = 0; i < count; ++i) s += v[start + i * stride] * v[start + i * stride];
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("interpolate_loss: a quadratic along a line is its closed form; endpoints; weights restored") {
  ag::Generator gen(1);
  Quadratic q(gen);
  const Vec star = q.theta(), t0 = random_vector(9, gen), t1 = random_vector(9, gen);
  const std::vector<Tensor> before = {q.w.clone(), q.b.clone()};
  const Vec alphas = analysis::linspace(-0.5, 1.5, 21);
  CHECK(alphas[0] == -0.5);
  CHECK(alphas[10] == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(alphas[20] == 1.5);
  const Vec losses = analysis::interpolate_loss(q.loss(), q.params(), as_tensors(t0), as_tensors(t1), alphas);
  REQUIRE(losses.size() == alphas.size());
  Vec delta(9);
  for (std::size_t i = 0; i < 9; ++i) delta[i] = t1[i] - t0[i];
  const double l0 = q.value(t0), slope = dot(q.gradient(t0), delta), curvature = dot(delta, times(q.h, delta));
  for (std::size_t k = 0; k < alphas.size(); ++k) {
    const double a = alphas[k], expected = l0 + a * slope + 0.5 * a * a * curvature;
    CHECK(std::abs(losses[k] - expected) <= 1e-12 * (1 + std::abs(expected)));
  }
  const Vec ends = analysis::interpolate_loss(q.loss(), q.params(), as_tensors(t0), as_tensors(t1), {0.0, 1.0});
  CHECK(std::abs(ends[0] - q.value(t0)) <= 1e-12 * std::abs(q.value(t0)));
  CHECK(std::abs(ends[1] - q.value(t1)) <= 1e-12 * std::abs(q.value(t1)));
  CHECK(same_bits(q.w, before[0]));
  CHECK(same_bits(q.b, before[1]));
  CHECK(q.theta() == star);
}

TEST_CASE("interpolate_loss: the endpoints are the model's losses at theta_0 and theta_1 exactly (f32 MLP)") {
  ag::Generator gen(2);
  nn::Sequential model{std::make_shared<nn::Linear>(4, 5, nn::Init::default_uniform, true, &gen),
                       std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(5, 3, nn::Init::default_uniform, true, &gen)};
  const Tensor x = Tensor::randn({8, 4}, gen);
  const std::vector<std::int32_t> labels = {0, 1, 2, 0, 1, 2, 0, 1};
  const analysis::LossFn loss = [&] { return ag::cross_entropy(model(x), labels); };
  std::vector<Tensor> params = model.parameters(), theta0, theta1;
  for (const Tensor& p : params) {
    theta0.push_back(Tensor::randn(p.shape(), gen));
    theta1.push_back(Tensor::randn(p.shape(), gen));
  }
  std::vector<Tensor> before;
  for (const Tensor& p : params) before.push_back(p.clone());
  auto loss_with = [&](const std::vector<Tensor>& values) {
    for (std::size_t k = 0; k < params.size(); ++k) params[k].copy_(values[k]);
    ag::NoGradGuard no_grad;
    double l = loss().item();
    for (std::size_t k = 0; k < params.size(); ++k) params[k].copy_(before[k]);
    return l;
  };
  const double l0 = loss_with(theta0), l1 = loss_with(theta1);
  const Vec ends = analysis::interpolate_loss(loss, params, theta0, theta1, {0.0, 1.0});
  CHECK(ends[0] == l0);
  CHECK(ends[1] == l1);
  for (std::size_t k = 0; k < params.size(); ++k) CHECK(same_bits(params[k], before[k]));

  SUBCASE("a loss that throws half-way leaves the weights as they were") {
    int calls = 0;
    const analysis::LossFn failing = [&] {
      if (++calls == 2) throw std::runtime_error("boom");
      return loss();
    };
    CHECK_THROWS_WITH_AS(analysis::interpolate_loss(failing, params, theta0, theta1, {0.0, 0.5, 1.0}), "boom",
                         std::runtime_error);
    for (std::size_t k = 0; k < params.size(); ++k) CHECK(same_bits(params[k], before[k]));
  }
}

TEST_CASE("loss_surface: a quadratic on a plane is its closed form") {
  ag::Generator gen(3);
  Quadratic q(gen);
  const Vec star = q.theta(), delta = random_vector(9, gen), eta = random_vector(9, gen);
  const Vec xs = analysis::linspace(-1, 1, 5), ys = analysis::linspace(-2, 0.5, 4);
  const analysis::Surface s = analysis::loss_surface(q.loss(), q.params(), xs, ys, delta, eta);
  REQUIRE(s.losses.size() == 20);
  const Vec g = q.gradient(star);
  const double l = q.value(star), gd = dot(g, delta), ge = dot(g, eta), dhd = dot(delta, times(q.h, delta)),
               dhe = dot(delta, times(q.h, eta)), ehe = dot(eta, times(q.h, eta));
  for (std::size_t i = 0; i < ys.size(); ++i) {
    for (std::size_t j = 0; j < xs.size(); ++j) {
      const double a = xs[j], b = ys[i];
      const double expected = l + a * gd + b * ge + 0.5 * (a * a * dhd + 2 * a * b * dhe + b * b * ehe);
      CHECK(std::abs(s.at(i, j) - expected) <= 1e-12 * (1 + std::abs(expected)));
    }
  }
  CHECK(q.theta() == star);
  CHECK(s.delta == delta);
  CHECK(s.eta == eta);
}

TEST_CASE("random directions: every filter has the norm of theta*'s; biases zero or normalised; seeded") {
  ag::Generator gen(4);
  nn::Sequential model{std::make_shared<nn::Conv2d>(2, 3, 3, 1, 1, nn::Init::default_uniform, true, &gen, DType::f64),
                       std::make_shared<nn::Flatten>(),
                       std::make_shared<nn::Linear>(12, 5, nn::Init::default_uniform, true, &gen, DType::f64)};
  const std::vector<Tensor> params = model.parameters();  // conv (3, 2, 3, 3), (3); linear (12, 5), (5)
  REQUIRE(params.size() == 4);
  const analysis::ParamLayout layout(params, "test");
  const Vec theta = layout.flatten(params, "test");
  ag::Generator g1(7);
  const Vec d = analysis::random_direction(layout, g1);
  // Conv2d: filter f = the 18 elements of output channel f.
  for (std::size_t f = 0; f < 3; ++f) {
    CHECK(std::abs(filter_norm(d, f * 18, 18, 1) - filter_norm(theta, f * 18, 18, 1)) <= 1e-12);
  }
  // Linear (in, out): filter j = column j.
  const std::size_t lw = layout.offset(2);
  for (std::size_t j = 0; j < 5; ++j) {
    CHECK(std::abs(filter_norm(d, lw + j, 12, 5) - filter_norm(theta, lw + j, 12, 5)) <= 1e-12);
  }
  for (std::size_t i = layout.offset(1); i < layout.offset(2); ++i) CHECK(d[i] == 0.0);
  for (std::size_t i = layout.offset(3); i < layout.size(); ++i) CHECK(d[i] == 0.0);

  SUBCASE("BiasMode::normalize: each bias as a whole") {
    ag::Generator g2(7);
    const Vec dn = analysis::random_direction(layout, g2, {.bias = analysis::BiasMode::normalize});
    CHECK(std::abs(filter_norm(dn, layout.offset(1), 3, 1) - filter_norm(theta, layout.offset(1), 3, 1)) <= 1e-12);
    CHECK(std::abs(filter_norm(dn, layout.offset(3), 5, 1) - filter_norm(theta, layout.offset(3), 5, 1)) <= 1e-12);
    CHECK(filter_norm(dn, layout.offset(3), 5, 1) > 0);
    for (std::size_t i = 0; i < layout.offset(1); ++i) CHECK(dn[i] == d[i]);
  }
  SUBCASE("the same seed, the same directions and surface; another seed, others") {
    const auto loss = [&] { return ag::sum(ag::tanh(model(Tensor::ones({1, 2, 2, 2}, DType::f64)))); };
    const Vec grid = analysis::linspace(-1, 1, 3);
    const analysis::Surface s1 = analysis::random_loss_surface(loss, params, grid, grid, {.seed = 11});
    const analysis::Surface s2 = analysis::random_loss_surface(loss, params, grid, grid, {.seed = 11});
    const analysis::Surface s3 = analysis::random_loss_surface(loss, params, grid, grid, {.seed = 12});
    CHECK(s1.delta == s2.delta);
    CHECK(s1.eta == s2.eta);
    CHECK(s1.losses == s2.losses);
    CHECK(s1.delta != s3.delta);
    CHECK(s1.delta != s1.eta);
    CHECK(s1.at(1, 1) == loss().item());  // the centre is theta*
    CHECK(layout.flatten(params, "test") == theta);
  }
  SUBCASE("explicit rules: a whole Linear weight, a frozen Conv2d weight") {
    using analysis::Filters;
    const Vec ones(layout.size(), 1.0);
    const Vec dr = analysis::normalize_filters(ones, layout, {.filters = {Filters::zero, Filters::whole, Filters::whole, Filters::zero}});
    for (std::size_t i = 0; i < 54; ++i) CHECK(dr[i] == 0.0);
    CHECK(std::abs(filter_norm(dr, lw, 60, 1) - filter_norm(theta, lw, 60, 1)) <= 1e-12);
  }
}

/// Two random orthonormal vectors of n entries (Gram-Schmidt).
std::array<Vec, 2> orthonormal_pair(std::size_t n, ag::Generator& gen) {
  Vec e1 = random_vector(n, gen), e2 = random_vector(n, gen);
  const double n1 = std::sqrt(dot(e1, e1));
  for (double& x : e1) x /= n1;
  const double p = dot(e1, e2);
  for (std::size_t c = 0; c < n; ++c) e2[c] -= p * e1[c];
  const double n2 = std::sqrt(dot(e2, e2));
  for (double& x : e2) x /= n2;
  return {e1, e2};
}

TEST_CASE("trajectory_pca: a trajectory in a known 2-D plane") {
  ag::Generator gen(5);
  const std::size_t n = 40, t = 12;
  // An orthonormal pair and a final point.
  const auto [e1, e2] = orthonormal_pair(n, gen);
  const Vec last = random_vector(n, gen);
  std::vector<Vec> points;
  for (std::size_t i = 0; i < t; ++i) {
    const double s = static_cast<double>(t - 1 - i), u = 3.0 * s + gen.normal(), v = 0.5 * s * std::sin(double(i)) + gen.normal();
    Vec point(n);
    for (std::size_t c = 0; c < n; ++c) point[c] = last[c] + u * e1[c] + v * e2[c];
    points.push_back(point);
  }
  points.back() = last;
  const analysis::TrajectoryPca pca = analysis::trajectory_pca(points);
  CHECK(pca.explained_variance_ratio[0] + pca.explained_variance_ratio[1] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(pca.explained_variance_ratio[0] >= pca.explained_variance_ratio[1]);
  CHECK(pca.explained_variance_ratio[1] > 0.001);
  // The directions are orthonormal and span the plane: each lies in span{e1, e2}.
  for (const Vec* v : {&pca.direction_x, &pca.direction_y}) {
    CHECK(dot(*v, *v) == doctest::Approx(1.0).epsilon(1e-12));
    const double a = dot(*v, e1), b = dot(*v, e2);
    CHECK(a * a + b * b == doctest::Approx(1.0).epsilon(1e-12));
  }
  CHECK(std::abs(dot(pca.direction_x, pca.direction_y)) <= 1e-12);
  // The coordinates reconstruct the points.
  for (std::size_t i = 0; i < t; ++i) {
    for (std::size_t c = 0; c < n; ++c) {
      CHECK(std::abs(last[c] + pca.x[i] * pca.direction_x[c] + pca.y[i] * pca.direction_y[c] - points[i][c]) <= 1e-10);
    }
  }
  CHECK(pca.x.back() == 0.0);
  CHECK(pca.y.back() == 0.0);

  SUBCASE("a trajectory on a line: one direction, ratio 1, the second zero") {
    std::vector<Vec> line;
    for (std::size_t i = 0; i < 6; ++i) {
      Vec point(n);
      for (std::size_t c = 0; c < n; ++c) point[c] = last[c] + double(i * i) * e1[c];
      line.push_back(point);
    }
    const analysis::TrajectoryPca l = analysis::trajectory_pca(line);
    CHECK(l.explained_variance_ratio[0] == doctest::Approx(1.0));
    CHECK(l.explained_variance_ratio[1] == 0.0);
    CHECK(std::abs(std::abs(dot(l.direction_x, e1)) - 1) <= 1e-12);
    CHECK(dot(l.direction_y, l.direction_y) == 0.0);
  }
}

TEST_CASE("trajectory_pca: the differences from the final point are centred before their directions are taken") {
  // theta_i = final + e2 + i e1 (i = 0..4), then final = 0: the differences (i, 1, 0) vary along e1 alone once
  // their mean (2, 1, 0) is taken off; uncentred, e2 would carry a share of the variance.
  std::vector<Vec> points;
  for (int i = 0; i < 5; ++i) points.push_back({static_cast<double>(i), 1.0, 0.0});
  points.push_back({0.0, 0.0, 0.0});
  const analysis::TrajectoryPca pca = analysis::trajectory_pca(points);
  CHECK(pca.explained_variance_ratio[0] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(pca.explained_variance_ratio[1] == doctest::Approx(0.0).epsilon(1e-12));
  REQUIRE(pca.direction_x.size() == 3);
  CHECK(std::abs(pca.direction_x[0]) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(std::abs(pca.direction_x[1]) < 1e-12);
}

TEST_CASE("trajectories_pca: several paths from one start in a known 2-D plane project back exactly") {
  ag::Generator gen(7);
  const std::size_t n = 50;
  const std::array<Vec, 2> basis = orthonormal_pair(n, gen);
  const Vec& e1 = basis[0];
  const Vec& e2 = basis[1];
  const Vec start = random_vector(n, gen);
  auto at = [&](double u, double v) {
    Vec point(n);
    for (std::size_t c = 0; c < n; ++c) point[c] = start[c] + u * e1[c] + v * e2[c];
    return point;
  };
  // Three optimisers' paths from the start, heading different ways, of different lengths.
  std::vector<std::vector<Vec>> paths(3);
  for (std::size_t k = 0; k < paths.size(); ++k) {
    const std::size_t length = 6 + 3 * k;
    for (std::size_t i = 0; i < length; ++i) {
      const double s = static_cast<double>(i);
      paths[k].push_back(i == 0 ? start : at(s * std::cos(double(k)) + gen.normal(), s * std::sin(2.0 * double(k)) + gen.normal()));
    }
  }
  const analysis::TrajectoriesPca pca = analysis::trajectories_pca(paths, start);
  REQUIRE(pca.x.size() == 3);
  CHECK(pca.explained_variance_ratio[0] + pca.explained_variance_ratio[1] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(pca.explained_variance_ratio[1] > 0.01);
  CHECK(std::abs(dot(pca.direction_x, pca.direction_y)) <= 1e-12);
  double worst = 0;
  for (std::size_t k = 0; k < paths.size(); ++k) {
    REQUIRE(pca.x[k].size() == paths[k].size());
    REQUIRE(pca.y[k].size() == paths[k].size());
    CHECK(pca.x[k][0] == 0.0);  // every path starts at the origin
    CHECK(pca.y[k][0] == 0.0);
    for (std::size_t i = 0; i < paths[k].size(); ++i) {
      for (std::size_t c = 0; c < n; ++c) {
        const double back = start[c] + pca.x[k][i] * pca.direction_x[c] + pca.y[k][i] * pca.direction_y[c];
        worst = std::max(worst, std::abs(back - paths[k][i][c]));
      }
    }
  }
  CHECK(worst <= 1e-10);
  // Distances in the plane are the distances between the points themselves.
  const Vec& p = paths[1].back();
  const Vec& q = paths[2].back();
  double d2 = 0;
  for (std::size_t c = 0; c < n; ++c) d2 += (p[c] - q[c]) * (p[c] - q[c]);
  CHECK(std::hypot(pca.x[1].back() - pca.x[2].back(), pca.y[1].back() - pca.y[2].back()) ==
        doctest::Approx(std::sqrt(d2)).epsilon(1e-12));

  SUBCASE("control: a point off the plane is not reconstructed") {
    Vec off = paths[0].back();
    Vec normal = random_vector(n, gen);
    const double a = dot(normal, e1), b = dot(normal, e2);
    for (std::size_t c = 0; c < n; ++c) off[c] += 0.5 * (normal[c] - a * e1[c] - b * e2[c]);
    std::vector<std::vector<Vec>> bent = paths;
    bent[0].back() = off;
    const analysis::TrajectoriesPca moved = analysis::trajectories_pca(bent, start);
    double miss = 0;
    for (std::size_t c = 0; c < n; ++c) {
      miss = std::max(miss, std::abs(start[c] + moved.x[0].back() * moved.direction_x[c] +
                                     moved.y[0].back() * moved.direction_y[c] - off[c]));
    }
    CHECK(miss > 1e-3);
    CHECK(moved.explained_variance_ratio[0] + moved.explained_variance_ratio[1] < 1.0 - 1e-6);
  }
}

TEST_CASE("landscape errors name what is wrong") {
  ag::Generator gen(6);
  Quadratic q(gen);
  const Vec t = q.theta();
  std::vector<Tensor> bad = as_tensors(t);
  bad[1] = Tensor::zeros({4}, DType::f64);
  CHECK_THROWS_WITH_AS(analysis::interpolate_loss(q.loss(), q.params(), as_tensors(t), bad, {0.0}),
                       "interpolate_loss: to[1] is f64[4] but parameter 1 is f64[3]", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::interpolate_loss(q.loss(), q.params(), {bad[0]}, as_tensors(t), {0.0}),
                       "interpolate_loss: from has 1 tensors for 2 parameters", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::loss_surface(q.loss(), q.params(), {0.0}, {0.0}, Vec(9), Vec(8)),
                       "loss_surface: eta has 8 entries, the parameters 9", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::loss_surface([&] { return ag::reshape(q.b, {3}); }, q.params(), {0.0}, {0.0}, Vec(9), Vec(9)),
                       "loss_surface: the loss function must return a one-element tensor, not f64[3]",
                       std::invalid_argument);
  const analysis::ParamLayout layout(q.params(), "test");
  CHECK_THROWS_WITH_AS(analysis::normalize_filters(Vec(9, 1.0), layout, {.filters = {analysis::Filters::columns, analysis::Filters::columns}}),
                       "normalize_filters: parameter 1 is f64[3]; columns are filters of rank-2 parameters only",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::normalize_filters(Vec(9, 1.0), layout, {.filters = {analysis::Filters::whole}}),
                       "normalize_filters: 1 filter rules for 2 parameters", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::trajectory_pca({Vec(3), Vec(3), Vec(2)}),
                       "trajectory_pca: point 2 has 2 entries, point 0 has 3", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::trajectory_pca({Vec(3)}), "trajectory_pca: 1 points; at least 2", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::trajectories_pca({{Vec(3)}, {Vec(3), Vec(2)}}, Vec(3)),
                       "trajectories_pca: point 1 of trajectory 1 has 2 entries, the origin 3", std::invalid_argument);
  CHECK_THROWS_WITH_AS(analysis::trajectories_pca({{}, {}}, Vec(3)), "trajectories_pca: no trajectory has a point",
                       std::invalid_argument);
  CHECK(q.theta() == t);
}
