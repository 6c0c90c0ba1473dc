// The hand-derived gradients of the source documents, computed here independently with plain loops over
// std::vector<double>, against the tape on random data:
//   - softmax cross-entropy, dL/dz = (y - t) / B for the mean (000, section 3.2);
//   - the linear layer z = x W + b: dL/dW = x^T delta, dL/db = sum over rows of delta, dL/dx = delta W^T
//     (000, sections 3.2.1-3.2.3);
//   - backpropagation through a ReLU network, delta_l = (delta_{l+1} W_{l+1}^T) * relu'(z_l),
//     dW_l = a_{l-1}^T delta_l (000, section 3.4; 004, Proposition 3.6);
//   - the Hessian of a logistic loss, and Newton's method (004, Proposition 3.10).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

using namespace ag;

namespace {

using LabelVector = std::vector<std::int32_t>;

/// A dense row-major matrix of doubles: the test's own arithmetic, independent of the library.
struct Matrix {
  std::size_t rows = 0, cols = 0;
  std::vector<double> v;
  Matrix(std::size_t r, std::size_t c) : rows(r), cols(c), v(r * c, 0.0) {}
  double& operator()(std::size_t i, std::size_t j) { return v[i * cols + j]; }
  double operator()(std::size_t i, std::size_t j) const { return v[i * cols + j]; }
};

/// A 2-D tensor's values (a 1-D tensor as one row).
Matrix values_of(const Tensor& t) {
  Matrix m(t.rank() == 2 ? t.dim(0) : 1, t.rank() == 2 ? t.dim(1) : t.numel());
  m.v = t.to_vector();
  return m;
}

Matrix product(const Matrix& a, const Matrix& b) {  // a b
  Matrix c(a.rows, b.cols);
  for (std::size_t i = 0; i < a.rows; ++i) {
    for (std::size_t k = 0; k < a.cols; ++k) {
      for (std::size_t j = 0; j < b.cols; ++j) c(i, j) += a(i, k) * b(k, j);
    }
  }
  return c;
}

Matrix transposed(const Matrix& a) {
  Matrix t(a.cols, a.rows);
  for (std::size_t i = 0; i < a.rows; ++i) {
    for (std::size_t j = 0; j < a.cols; ++j) t(j, i) = a(i, j);
  }
  return t;
}

std::vector<double> column_sums(const Matrix& a) {
  std::vector<double> s(a.cols, 0.0);
  for (std::size_t i = 0; i < a.rows; ++i) {
    for (std::size_t j = 0; j < a.cols; ++j) s[j] += a(i, j);
  }
  return s;
}

/// Row-wise softmax, shifted by the row maximum.
Matrix softmax_rows(const Matrix& z) {
  Matrix y(z.rows, z.cols);
  for (std::size_t i = 0; i < z.rows; ++i) {
    double peak = z(i, 0);
    for (std::size_t k = 1; k < z.cols; ++k) peak = std::max(peak, z(i, k));
    double total = 0.0;
    for (std::size_t k = 0; k < z.cols; ++k) total += y(i, k) = std::exp(z(i, k) - peak);
    for (std::size_t k = 0; k < z.cols; ++k) y(i, k) /= total;
  }
  return y;
}

Matrix one_hot_rows(const LabelVector& labels, std::size_t classes) {
  Matrix t(labels.size(), classes);
  for (std::size_t i = 0; i < labels.size(); ++i) t(i, static_cast<std::size_t>(labels[i])) = 1.0;
  return t;
}

LabelVector random_labels(std::size_t batch, std::size_t classes, Generator& gen) {
  LabelVector labels(batch);
  for (auto& label : labels) label = static_cast<std::int32_t>(gen.below(classes));
  return labels;
}

/// max |got - want| <= tolerance * max(1, max |want|), with the worst element in the message.
void check_close(const Tensor& got, const std::vector<double>& want, double tolerance) {
  INFO("tensor " << got.describe());
  REQUIRE(got.defined());
  REQUIRE(got.numel() == want.size());
  double worst = 0.0, scale = 1.0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    double error = std::abs(got.at(i) - want[i]);
    if (error > worst) {
      worst = error;
      worst_at = i;
    }
    scale = std::max(scale, std::abs(want[i]));
  }
  INFO("worst error " << worst << " at element " << worst_at << " (scale " << scale << ")");
  CHECK(worst <= tolerance * scale);
}

Tensor leaf(const Shape& shape, Generator& gen, double stddev, DType dtype = DType::f64) {
  return Tensor::randn(shape, gen, 0.0, stddev, dtype).set_requires_grad();
}

/// Solves a x = r by Gaussian elimination with partial pivoting.
std::vector<double> solve(Matrix a, std::vector<double> r) {
  std::size_t n = a.rows;
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t pivot = c;
    for (std::size_t i = c + 1; i < n; ++i) {
      if (std::abs(a(i, c)) > std::abs(a(pivot, c))) pivot = i;
    }
    for (std::size_t j = 0; j < n; ++j) std::swap(a(c, j), a(pivot, j));
    std::swap(r[c], r[pivot]);
    for (std::size_t i = c + 1; i < n; ++i) {
      double factor = a(i, c) / a(c, c);
      for (std::size_t j = c; j < n; ++j) a(i, j) -= factor * a(c, j);
      r[i] -= factor * r[c];
    }
  }
  std::vector<double> x(n);
  for (std::size_t i = n; i-- > 0;) {
    double s = r[i];
    for (std::size_t j = i + 1; j < n; ++j) s -= a(i, j) * x[j];
    x[i] = s / a(i, i);
  }
  return x;
}

/// Gradient and full Hessian of a scalar function of a column w (n, 1) on the tape: one grad with
/// create_graph, then one grad per row of the Hessian.
std::pair<std::vector<double>, Matrix> gradient_and_hessian(const std::function<Tensor(const Tensor&)>& f,
                                                            const Tensor& w) {
  std::size_t n = w.numel();
  Tensor g = grad({f(w)}, {w}, {}, {.create_graph = true})[0];
  Matrix hessian(n, n);
  for (std::size_t i = 0; i < n; ++i) {
    Tensor e = Tensor::zeros(w.shape(), DType::f64);
    e.data<double>()[i] = 1.0;
    // The last row releases the tape.
    Tensor row = grad({g}, {w}, {e}, {.retain_graph = i + 1 < n})[0];
    for (std::size_t j = 0; j < n; ++j) hessian(i, j) = row.at(j);
  }
  return {g.to_vector(), hessian};
}

}  // namespace

// ================================================================ softmax cross-entropy (000, section 3.2)

TEST_CASE("softmax cross-entropy: dL/dz = (y - t) / B for the mean, y - t for the sum") {
  Generator gen(1);
  const std::size_t batch = 7, classes = 5;
  LabelVector labels = random_labels(batch, classes, gen);
  Tensor z = leaf({batch, classes}, gen, 2.0);
  Matrix y = softmax_rows(values_of(z));
  Matrix t = one_hot_rows(labels, classes);

  // The loss: L = -(1/B) sum_i log y_i[t_i].
  double loss = 0.0;
  for (std::size_t i = 0; i < batch; ++i) loss -= std::log(y(i, static_cast<std::size_t>(labels[i])));
  loss /= static_cast<double>(batch);
  Tensor tape_loss = cross_entropy(z, labels);
  CHECK(tape_loss.item() == doctest::Approx(loss).epsilon(1e-14));

  std::vector<double> mean_gradient(batch * classes), sum_gradient(batch * classes);
  for (std::size_t i = 0; i < batch * classes; ++i) {
    sum_gradient[i] = y.v[i] - t.v[i];
    mean_gradient[i] = sum_gradient[i] / static_cast<double>(batch);
  }
  backward(tape_loss);
  check_close(z.grad(), mean_gradient, 1e-14);

  z.zero_grad();
  backward(cross_entropy(z, labels, Reduction::sum));
  check_close(z.grad(), sum_gradient, 1e-14);

  // Per-sample losses seeded with weights u: dL/dz_i = u_i (y_i - t_i).
  z.zero_grad();
  Tensor u = Tensor::randn({batch}, gen, 0.0, 1.0, DType::f64);
  backward(cross_entropy(z, labels, Reduction::none), u);
  std::vector<double> weighted(batch * classes);
  for (std::size_t i = 0; i < batch; ++i) {
    for (std::size_t k = 0; k < classes; ++k) weighted[i * classes + k] = u.at(i) * (y(i, k) - t(i, k));
  }
  check_close(z.grad(), weighted, 1e-14);

  // The same through the unfused path, softmax's log then the negative log-likelihood.
  z.zero_grad();
  backward(nll_loss(log_softmax(z), labels));
  check_close(z.grad(), mean_gradient, 1e-14);

  // And through softmax itself: -mean log y_i[t_i].
  z.zero_grad();
  backward(nll_loss(log(softmax(z)), labels));
  check_close(z.grad(), mean_gradient, 1e-13);
}

// ================================================================ the linear layer (000, sections 3.2.1-3.2.3)

TEST_CASE("linear layer z = x W + b: dL/dW = x^T delta, dL/db = row sums of delta, dL/dx = delta W^T") {
  Generator gen(2);
  const std::size_t batch = 6, in = 5, out = 4;
  Tensor x = leaf({batch, in}, gen, 1.0);
  Tensor w = leaf({in, out}, gen, 0.5);
  Tensor b = leaf({out}, gen, 0.1);
  Tensor delta = Tensor::randn({batch, out}, gen, 0.0, 1.0, DType::f64);  // dL/dz, the upstream gradient
  Tensor z = add(matmul(x, w), b);
  backward(z, delta);

  Matrix xv = values_of(x), wv = values_of(w), dv = values_of(delta);
  // dL/dW[j][k] = sum_i x[i][j] delta[i][k]
  Matrix dw(in, out);
  for (std::size_t i = 0; i < batch; ++i) {
    for (std::size_t j = 0; j < in; ++j) {
      for (std::size_t k = 0; k < out; ++k) dw(j, k) += xv(i, j) * dv(i, k);
    }
  }
  // dL/db[k] = sum_i delta[i][k]
  std::vector<double> db(out, 0.0);
  for (std::size_t i = 0; i < batch; ++i) {
    for (std::size_t k = 0; k < out; ++k) db[k] += dv(i, k);
  }
  // dL/dx[i][j] = sum_k delta[i][k] W[j][k]
  Matrix dx(batch, in);
  for (std::size_t i = 0; i < batch; ++i) {
    for (std::size_t j = 0; j < in; ++j) {
      for (std::size_t k = 0; k < out; ++k) dx(i, j) += dv(i, k) * wv(j, k);
    }
  }
  check_close(w.grad(), dw.v, 1e-14);
  check_close(b.grad(), db, 1e-14);
  check_close(x.grad(), dx.v, 1e-14);
}

TEST_CASE("linear layer in the documents' layout z = x W^T + b, W of shape (out, in)") {
  // z_i = sum_j W_ij x_j + b_i: dL/dW = delta^T x, dL/dx = delta W.
  Generator gen(3);
  const std::size_t batch = 3, in = 6, out = 4;
  Tensor x = leaf({batch, in}, gen, 1.0);
  Tensor w = leaf({out, in}, gen, 0.5);
  Tensor b = leaf({out}, gen, 0.1);
  Tensor delta = Tensor::randn({batch, out}, gen, 0.0, 1.0, DType::f64);
  backward(add(matmul(x, w, false, true), b), delta);

  Matrix xv = values_of(x), wv = values_of(w), dv = values_of(delta);
  check_close(w.grad(), product(transposed(dv), xv).v, 1e-14);
  check_close(x.grad(), product(dv, wv).v, 1e-14);
  check_close(b.grad(), column_sums(dv), 1e-14);
}

TEST_CASE("linear plus softmax (000, section 3.3): dL/dW = x^T (y - t) / B, dL/db = sum (y - t) / B") {
  Generator gen(4);
  const std::size_t batch = 8, in = 12, classes = 10;
  Tensor x = Tensor::uniform({batch, in}, gen, 0.0, 1.0, DType::f64);
  Tensor w = leaf({in, classes}, gen, 0.3);
  Tensor b = leaf({classes}, gen, 0.1);
  LabelVector labels = random_labels(batch, classes, gen);
  backward(cross_entropy(add(matmul(x, w), b), labels));

  Matrix xv = values_of(x);
  Matrix z = product(xv, values_of(w));
  std::vector<double> bv = b.to_vector();
  for (std::size_t i = 0; i < batch; ++i) {
    for (std::size_t k = 0; k < classes; ++k) z(i, k) += bv[k];
  }
  Matrix y = softmax_rows(z), t = one_hot_rows(labels, classes);
  Matrix delta(batch, classes);
  for (std::size_t i = 0; i < delta.v.size(); ++i) delta.v[i] = (y.v[i] - t.v[i]) / static_cast<double>(batch);
  check_close(w.grad(), product(transposed(xv), delta).v, 1e-14);
  check_close(b.grad(), column_sums(delta), 1e-14);
}

// ================================================================ backpropagation (000 section 3.4, 004 Prop. 3.6)

namespace {

/// A ReLU network sizes[0] -> ... -> sizes.back() with a softmax cross-entropy on its logits, run on the
/// tape in `dtype`, then backpropagated by hand in double from the same values:
///   delta_L = (softmax(z_L) - onehot) / B
///   dW_l = a_{l-1}^T delta_l,  db_l = sum over rows of delta_l
///   delta_{l-1} = (delta_l W_l^T) * relu'(z_{l-1})
/// Every weight and bias gradient, and the input's, is compared with the tape's.
void check_backprop(const std::vector<std::size_t>& sizes, std::size_t batch, DType dtype, double tolerance,
                    std::uint64_t seed) {
  Generator gen(seed);
  const std::size_t layers = sizes.size() - 1;
  Tensor x = Tensor::uniform({batch, sizes[0]}, gen, 0.0, 1.0, dtype).set_requires_grad();
  LabelVector labels = random_labels(batch, sizes.back(), gen);
  std::vector<Tensor> weights, biases;
  for (std::size_t l = 0; l < layers; ++l) {
    weights.push_back(leaf({sizes[l], sizes[l + 1]}, gen, std::sqrt(2.0 / static_cast<double>(sizes[l])), dtype));
    biases.push_back(leaf({sizes[l + 1]}, gen, 0.1, dtype));
  }

  // The tape.
  Tensor a = x;
  for (std::size_t l = 0; l < layers; ++l) {
    Tensor z = add(matmul(a, weights[l]), biases[l]);
    a = l + 1 < layers ? relu(z) : z;
  }
  Tensor loss = cross_entropy(a, labels);
  backward(loss);
  CHECK(tape_size() == 0);

  // By hand: the forward pass, keeping every pre-activation z_l and activation a_l.
  std::vector<Matrix> w, activations{values_of(x)}, pre;
  std::vector<std::vector<double>> b;
  for (std::size_t l = 0; l < layers; ++l) {
    w.push_back(values_of(weights[l]));
    b.push_back(biases[l].to_vector());
  }
  for (std::size_t l = 0; l < layers; ++l) {
    Matrix z = product(activations.back(), w[l]);
    for (std::size_t i = 0; i < z.rows; ++i) {
      for (std::size_t j = 0; j < z.cols; ++j) z(i, j) += b[l][j];
    }
    pre.push_back(z);
    Matrix next = z;
    if (l + 1 < layers) {
      for (double& value : next.v) value = std::max(value, 0.0);
    }
    activations.push_back(next);
  }
  Matrix y = softmax_rows(pre.back());
  double hand_loss = 0.0;
  for (std::size_t i = 0; i < batch; ++i) hand_loss -= std::log(y(i, static_cast<std::size_t>(labels[i])));
  hand_loss /= static_cast<double>(batch);
  CHECK(loss.item() == doctest::Approx(hand_loss).epsilon(tolerance));

  // The backward pass.
  Matrix t = one_hot_rows(labels, sizes.back());
  Matrix delta(batch, sizes.back());
  for (std::size_t i = 0; i < delta.v.size(); ++i) delta.v[i] = (y.v[i] - t.v[i]) / static_cast<double>(batch);
  std::size_t active = 0, inactive = 0;
  for (std::size_t l = layers; l-- > 0;) {
    INFO("layer " << l + 1 << " of " << layers);
    check_close(weights[l].grad(), product(transposed(activations[l]), delta).v, tolerance);
    check_close(biases[l].grad(), column_sums(delta), tolerance);
    Matrix back = product(delta, transposed(w[l]));  // dL/da_{l-1}
    if (l > 0) {
      for (std::size_t i = 0; i < back.v.size(); ++i) {
        bool on = pre[l - 1].v[i] > 0.0;  // relu'(z) = 1 where z > 0, else 0
        (on ? active : inactive) += 1;
        back.v[i] = on ? back.v[i] : 0.0;
      }
    } else {
      check_close(x.grad(), back.v, tolerance);
    }
    delta = back;
  }
  // Both branches of relu' were taken.
  CHECK(active > 0);
  CHECK(inactive > 0);
}

}  // namespace

TEST_CASE("backpropagation by hand through a 20-16-12-10 ReLU network, float64") {
  check_backprop({20, 16, 12, 10}, 8, DType::f64, 1e-13, 5);
  check_backprop({20, 16, 12, 10}, 1, DType::f64, 1e-13, 6);
  check_backprop({7, 9, 3}, 5, DType::f64, 1e-13, 7);
}

TEST_CASE("backpropagation by hand through the 784-128-64-10 network, float32 tape against float64") {
  check_backprop({784, 128, 64, 10}, 4, DType::f32, 1e-4, 8);
}

// ================================================================ second order (004, Prop. 3.10)

TEST_CASE("Hessian of a logistic loss against its analytic form") {
  // p_n = sigmoid(x_n . w), L(w) = -(1/N) sum_n [y_n log p_n + (1 - y_n) log(1 - p_n)]:
  //   grad L = (1/N) X^T (p - y),  H = (1/N) X^T diag(p (1 - p)) X.
  Generator gen(9);
  const std::size_t n = 12, d = 3;
  Matrix features(n, d);
  std::vector<double> targets(n);
  for (std::size_t i = 0; i < n; ++i) {
    features(i, 0) = gen.normal();
    features(i, 1) = gen.normal();
    features(i, 2) = 1.0;  // bias
    targets[i] = static_cast<double>(gen.below(2));
  }
  Tensor xs = Tensor::from_data({n, d}, std::span<const double>(features.v));
  Tensor ys = Tensor::from_data({n, 1}, std::span<const double>(targets));
  auto logistic_loss = [&](const Tensor& w) {
    Tensor p = sigmoid(matmul(xs, w));
    return neg(mean(add(mul(ys, log(p)), mul(sub(1.0, ys), log(sub(1.0, p))))));
  };
  Tensor w = Tensor::from_data({d, 1}, {0.3, -0.7, 0.2}, DType::f64).set_requires_grad();
  auto [gradient, hessian] = gradient_and_hessian(logistic_loss, w);
  CHECK(tape_size() == 0);

  std::vector<double> want_gradient(d, 0.0);
  Matrix want_hessian(d, d);
  for (std::size_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (std::size_t j = 0; j < d; ++j) s += features(i, j) * w.at(j);
    double p = 1.0 / (1.0 + std::exp(-s));
    for (std::size_t j = 0; j < d; ++j) {
      want_gradient[j] += features(i, j) * (p - targets[i]) / static_cast<double>(n);
      for (std::size_t k = 0; k < d; ++k) {
        want_hessian(j, k) += p * (1 - p) * features(i, j) * features(i, k) / static_cast<double>(n);
      }
    }
  }
  for (std::size_t j = 0; j < d; ++j) {
    CHECK(gradient[j] == doctest::Approx(want_gradient[j]).epsilon(1e-13));
    for (std::size_t k = 0; k < d; ++k) {
      INFO("H[" << j << "][" << k << "]");
      CHECK(hessian(j, k) == doctest::Approx(want_hessian(j, k)).epsilon(1e-13));
      CHECK(hessian(j, k) == doctest::Approx(hessian(k, j)).epsilon(1e-14));
    }
  }

  // Newton's method converges on it (the labels are random, so the data are not separable).
  Tensor current = w.detach().clone().set_requires_grad();
  double norm = 0.0;
  for (int step = 0; step < 12; ++step) {
    auto [g, h] = gradient_and_hessian(logistic_loss, current);
    std::vector<double> move = solve(h, g);
    std::vector<double> next = current.to_vector();
    for (std::size_t j = 0; j < d; ++j) next[j] -= move[j];
    current = Tensor::from_data({d, 1}, std::span<const double>(next)).set_requires_grad();
    norm = 0.0;
    for (double gj : g) norm = std::max(norm, std::abs(gj));
  }
  INFO("max |gradient| before the last step " << norm);
  CHECK(norm < 1e-12);
}

TEST_CASE("Newton's method: one step on a quadratic lands on its minimum") {
  // f(w) = 1/2 w^T A w - b^T w with A symmetric positive definite: H = A, and the minimum solves A w = b.
  Generator gen(10);
  const std::size_t n = 4;
  Matrix m(n, n);
  for (double& value : m.v) value = gen.normal();
  Matrix a = product(transposed(m), m);
  for (std::size_t i = 0; i < n; ++i) a(i, i) += 1.0;
  std::vector<double> b(n);
  for (double& value : b) value = gen.normal();
  Tensor at = Tensor::from_data({n, n}, std::span<const double>(a.v));
  Tensor bt = Tensor::from_data({n, 1}, std::span<const double>(b));
  auto quadratic = [&](const Tensor& w) {
    return sub(mul(sum(mul(w, matmul(at, w))), 0.5), sum(mul(bt, w)));
  };

  Tensor w0 = Tensor::randn({n, 1}, gen, 0.0, 3.0, DType::f64).set_requires_grad();
  auto [gradient, hessian] = gradient_and_hessian(quadratic, w0);
  // The tape's Hessian is A, and its gradient A w0 - b.
  for (std::size_t i = 0; i < n; ++i) {
    double want = -b[i];
    for (std::size_t j = 0; j < n; ++j) {
      want += a(i, j) * w0.at(j);
      CHECK(hessian(i, j) == doctest::Approx(a(i, j)).epsilon(1e-14));
    }
    CHECK(gradient[i] == doctest::Approx(want).epsilon(1e-13));
  }

  // W1 = W0 - H^-1 grad J(W0).
  std::vector<double> move = solve(hessian, gradient);
  std::vector<double> w1 = w0.to_vector();
  for (std::size_t i = 0; i < n; ++i) w1[i] -= move[i];
  // It is the minimum: A w1 = b ...
  for (std::size_t i = 0; i < n; ++i) {
    double residual = -b[i];
    for (std::size_t j = 0; j < n; ++j) residual += a(i, j) * w1[j];
    CHECK(std::abs(residual) < 1e-12);
  }
  // ... where the tape's gradient vanishes, so a second step stays put.
  Tensor w1t = Tensor::from_data({n, 1}, std::span<const double>(w1)).set_requires_grad();
  auto [g1, h1] = gradient_and_hessian(quadratic, w1t);
  std::vector<double> second = solve(h1, g1);
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(std::abs(g1[i]) < 1e-12);
    CHECK(std::abs(second[i]) < 1e-12);
  }
  CHECK(tape_size() == 0);
}
