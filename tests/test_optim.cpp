// optim: every optimiser against its recurrence written out here (float64, a few steps on a hand-set
// gradient sequence), convergence on a convex quadratic and on Rosenbrock, Nesterov's two forms on one
// trajectory, Reddi et al.'s counterexample, hypergradients against finite differences, Newton on a
// quadratic and on logistic regression, state round trips through a checkpoint file, option checks,
// a small MLP on a few hundred MNIST images, and the evaluation points of asgd and schedule-free (eval/train).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "autograd/anomaly.hpp"
#include "autograd/generator.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/dataset.hpp"
#include "nn/checkpoint.hpp"
#include "optim/optim.hpp"

using ag::DType;
using ag::Tensor;
using Vec = std::vector<double>;

namespace {

Tensor param(const Vec& values, DType dtype = DType::f64) {
  Tensor t = Tensor::from_data(ag::Shape{values.size()}, std::span<const double>(values)).to(dtype);
  t.set_requires_grad();
  return t;
}

void give_grad(Tensor& p, const Vec& g) {
  p.set_grad(Tensor::from_data(p.shape(), std::span<const double>(g)).to(p.dtype()));
}

void check_close(const Tensor& t, const Vec& expected, double eps = 1e-13) {
  REQUIRE(t.numel() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("element " << i);
    CHECK(t.at(i) == doctest::Approx(expected[i]).epsilon(eps));
  }
}

Tensor entry(const std::vector<nn::NamedTensor>& state, const std::string& name) {
  for (const auto& [n, t] : state) {
    if (n == name) return t;
  }
  FAIL("no state entry " << name);
  return Tensor();
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("tapegrad_test_optim_" + name)).string();
}

// The tiny problem: a 3-element parameter and a hand-set gradient sequence.
const Vec kW0{1.0, -2.0, 0.5};
const std::vector<Vec> kGrads{{0.5, -1.0, 2.0}, {-0.3, 0.8, 1.5}, {1.2, 0.1, -0.7}};

/// Steps `opt` (over the one parameter `w`) through kGrads; after each step `advance(x, g, t)` moves the
/// test's own copy x by the formula, and w must match it.
void follow(optim::Optimizer& opt, Tensor& w, const std::function<void(Vec&, const Vec&, int)>& advance,
            double eps = 1e-13) {
  Vec x = kW0;
  int t = 0;
  for (const Vec& g : kGrads) {
    ++t;
    give_grad(w, g);
    opt.step();
    advance(x, g, t);
    INFO("step " << t);
    check_close(w, x, eps);
  }
}

// f(x) = 1/2 x^T A x - b^T x on the tape, x of shape (n, 1).
struct Quadratic {
  Tensor a, b;
  std::size_t n;
  Quadratic(const Vec& a_values, const Vec& b_values)
      : a(Tensor::from_data(ag::Shape{b_values.size(), b_values.size()}, std::span<const double>(a_values))),
        b(Tensor::from_data(ag::Shape{b_values.size(), 1}, std::span<const double>(b_values))),
        n(b_values.size()) {}
  Tensor loss(const Tensor& x) const {
    return ag::sub(ag::mul(ag::sum(ag::mul(x, ag::matmul(a, x))), 0.5), ag::sum(ag::mul(b, x)));
  }
  /// A x - b, in double.
  Vec gradient(const Vec& x) const {
    Vec g(n);
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = -b.at(i);
      for (std::size_t j = 0; j < n; ++j) g[i] += a.at(i * n + j) * x[j];
    }
    return g;
  }
  /// f(x) in double.
  double value(const Vec& x) const {
    double f = 0;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) f += 0.5 * x[i] * a.at(i * n + j) * x[j];
      f -= b.at(i) * x[i];
    }
    return f;
  }
  /// A^-1 b by Gaussian elimination.
  Vec minimum() const {
    std::vector<Vec> m(n, Vec(n + 1));
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) m[i][j] = a.at(i * n + j);
      m[i][n] = b.at(i);
    }
    for (std::size_t c = 0; c < n; ++c) {
      for (std::size_t r = c + 1; r < n; ++r) {
        double f = m[r][c] / m[c][c];
        for (std::size_t k = c; k <= n; ++k) m[r][k] -= f * m[c][k];
      }
    }
    Vec x(n);
    for (std::size_t i = n; i-- > 0;) {
      double s = m[i][n];
      for (std::size_t k = i + 1; k < n; ++k) s -= m[i][k] * x[k];
      x[i] = s / m[i][i];
    }
    return x;
  }
};

Tensor column(const Vec& values, DType dtype = DType::f64) {
  Tensor t = Tensor::from_data(ag::Shape{values.size(), 1}, std::span<const double>(values)).to(dtype);
  t.set_requires_grad();
  return t;
}

// A smooth, non-quadratic test function over several tensors: f = Σ θ^4/4 + θ^2/2 - c θ.
Tensor quartic(const std::vector<Tensor>& params) {
  Tensor total;
  double c = 0.3;
  for (const Tensor& p : params) {
    Tensor term = ag::sum(ag::add(ag::mul(ag::pow(p, 4.0), 0.25), ag::sub(ag::mul(ag::mul(p, p), 0.5), ag::mul(p, c))));
    total = total.defined() ? ag::add(total, term) : term;
    c += 0.4;
  }
  return total;
}

double quartic_value(const std::vector<Vec>& values) {
  double total = 0, c = 0.3;
  for (const Vec& v : values) {
    for (double x : v) total += x * x * x * x / 4 + x * x / 2 - c * x;
    c += 0.4;
  }
  return total;
}

Vec values_of(const Tensor& t) { return t.to_vector(); }

bool bit_identical(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  std::size_t bytes = a.numel() * ag::dtype_size(a.dtype());
  const void* pa = a.dtype() == DType::f64 ? static_cast<const void*>(a.data<double>()) : a.data<float>();
  const void* pb = b.dtype() == DType::f64 ? static_cast<const void*>(b.data<double>()) : b.data<float>();
  return std::memcmp(pa, pb, bytes) == 0;
}

}  // namespace

// ================================================================ each method against its formula

TEST_CASE("sgd: w <- w - lr g; weight decay coupled (g + λ w) or decoupled ((1 - lr λ) w - lr g)") {
  const double lr = 0.1, wd = 0.05;
  Tensor w = param(kW0);
  SUBCASE("plain") {
    optim::SGD opt({{"w", w}}, {.lr = lr});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = x[i] - lr * g[i];
    });
  }
  SUBCASE("coupled weight decay") {
    optim::SGD opt({{"w", w}}, {.lr = lr, .weight_decay = wd});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = x[i] - lr * (g[i] + wd * x[i]);
    });
  }
  SUBCASE("decoupled weight decay") {
    optim::SGD opt({{"w", w}}, {.lr = lr, .weight_decay = wd, .weight_decay_mode = optim::WeightDecay::decoupled});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = (1 - lr * wd) * x[i] - lr * g[i];
    });
  }
}

TEST_CASE("momentum (000 §4.3): v <- γ v + lr g, w <- w - v") {
  const double lr = 0.1, gamma = 0.9;
  Tensor w = param(kW0);
  optim::Momentum opt({{"w", w}}, {.lr = lr, .momentum = gamma});
  Vec v(3, 0.0);
  follow(opt, w, [&](Vec& x, const Vec& g, int) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      v[i] = gamma * v[i] + lr * g[i];
      x[i] = x[i] - v[i];
    }
  });
  check_close(entry(opt.state(), "state/w/velocity"), v);
}

TEST_CASE("nesterov, reparameterised: v <- γ v + lr g, w <- w - (γ v + lr g)") {
  const double lr = 0.1, gamma = 0.9;
  Tensor w = param(kW0);
  optim::Nesterov opt({{"w", w}}, {.lr = lr, .momentum = gamma});
  Vec v(3, 0.0);
  follow(opt, w, [&](Vec& x, const Vec& g, int) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      v[i] = gamma * v[i] + lr * g[i];
      x[i] = x[i] - (gamma * v[i] + lr * g[i]);
    }
  });
}

TEST_CASE("nesterov-lookahead (000 §4.4): v <- γ v + lr ∇f(W - γ v), W <- W - v, through the closure") {
  // f = 1/2 x^T A x - b^T x, gradient A x - b, evaluated by the closure wherever the parameters are.
  const Quadratic q({4, 1, 0, 1, 3, 1, 0, 1, 2}, {1, 2, 3});
  const double lr = 0.05, gamma = 0.8;
  Tensor w = param(kW0);
  optim::NesterovLookahead opt({{"w", w}}, {.lr = lr, .momentum = gamma});
  Vec where_evaluated;
  auto closure = [&]() {
    opt.zero_grad();
    where_evaluated = values_of(w);
    give_grad(w, q.gradient(where_evaluated));
    return 0.0;
  };
  Vec x = kW0, v(3, 0.0);
  for (int t = 1; t <= 3; ++t) {
    opt.step(closure);
    Vec look(3);
    for (std::size_t i = 0; i < 3; ++i) look[i] = x[i] - gamma * v[i];
    Vec g = q.gradient(look);
    for (std::size_t i = 0; i < 3; ++i) {
      v[i] = gamma * v[i] + lr * g[i];
      x[i] = x[i] - v[i];
    }
    INFO("step " << t);
    for (std::size_t i = 0; i < 3; ++i) CHECK(where_evaluated[i] == doctest::Approx(look[i]).epsilon(1e-14));
    check_close(w, x);
  }
  CHECK_THROWS_AS(opt.step(), std::logic_error);
}

TEST_CASE("adagrad (002 Alg. 2, 004 Def. 3.7): G <- G + g^2, w <- w - lr g / sqrt(G + ε)") {
  const double lr = 0.1, eps = 1e-2;  // a large ε, so its placement shows
  Tensor w = param(kW0);
  Vec acc(3, 0.0);
  SUBCASE("ε inside the square root (the seeds)") {
    optim::Adagrad opt({{"w", w}}, {.lr = lr, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < 3; ++i) {
        acc[i] = acc[i] + g[i] * g[i];
        x[i] = x[i] - lr * g[i] / std::sqrt(acc[i] + eps);
      }
    });
  }
  SUBCASE("ε outside (Duchi et al., PyTorch)") {
    optim::Adagrad opt({{"w", w}}, {.lr = lr, .eps = eps, .eps_placement = optim::Eps::outside_sqrt});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < 3; ++i) {
        acc[i] = acc[i] + g[i] * g[i];
        x[i] = x[i] - lr * g[i] / (std::sqrt(acc[i]) + eps);
      }
    });
  }
}

TEST_CASE("rmsprop (001 eq. 15-16, 004 Prop. 3.11): v <- β v + (1 - β) g^2, w <- w - lr g / sqrt(v + ε)") {
  const double lr = 0.01, beta = 0.9;
  Tensor w = param(kW0);
  Vec v(3, 0.0);
  SUBCASE("ε inside the square root (the seeds)") {
    const double eps = 1e-8;
    optim::RMSProp opt({{"w", w}}, {.lr = lr, .beta = beta, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < 3; ++i) {
        v[i] = beta * v[i] + (1 - beta) * g[i] * g[i];
        x[i] = x[i] - lr * g[i] / std::sqrt(v[i] + eps);
      }
    });
  }
  SUBCASE("ε outside (PyTorch), with a large ε so that it shows") {
    const double eps = 0.1;
    optim::RMSProp opt({{"w", w}}, {.lr = lr, .beta = beta, .eps = eps, .eps_placement = optim::Eps::outside_sqrt});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < 3; ++i) {
        v[i] = beta * v[i] + (1 - beta) * g[i] * g[i];
        x[i] = x[i] - lr * g[i] / (std::sqrt(v[i]) + eps);
      }
    });
  }
}

TEST_CASE("adam (001 eq. 18, 000 §4.5): bias-corrected moments, w <- w - lr m̂ / (sqrt(v̂) + ε)") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999;
  Tensor w = param(kW0);
  Vec m(3, 0.0), v(3, 0.0);
  auto moments = [&](const Vec& g) {
    for (std::size_t i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    }
  };
  SUBCASE("ε outside, the default") {
    const double eps = 1e-8;
    optim::Adam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      moments(g);
      for (std::size_t i = 0; i < 3; ++i) {
        double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        x[i] = x[i] - lr * mh / (std::sqrt(vh) + eps);
      }
    });
    check_close(entry(opt.state(), "state/w/exp_avg"), m);
    check_close(entry(opt.state(), "state/w/exp_avg_sq"), v);
    CHECK(entry(opt.state(), "state/w/step").item() == 3.0);
  }
  SUBCASE("ε inside (004 Prop. 3.12), decoupled weight decay (AdamW)") {
    const double eps = 0.1, wd = 0.1;
    optim::Adam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps,
                                 .eps_placement = optim::Eps::inside_sqrt, .weight_decay = wd,
                                 .weight_decay_mode = optim::WeightDecay::decoupled});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      moments(g);
      for (std::size_t i = 0; i < 3; ++i) {
        double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        x[i] = (1 - lr * wd) * x[i] - lr * mh / std::sqrt(vh + eps);
      }
    });
  }
  SUBCASE("coupled weight decay: the moments see g + λ w") {
    const double eps = 1e-8, wd = 0.1;
    optim::Adam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      Vec gd(3);
      for (std::size_t i = 0; i < 3; ++i) gd[i] = g[i] + wd * x[i];
      moments(gd);
      for (std::size_t i = 0; i < 3; ++i) {
        double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        x[i] = x[i] - lr * mh / (std::sqrt(vh) + eps);
      }
    });
  }
}

TEST_CASE("adam on float32 parameters follows the float64 recurrence to float precision") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Tensor w = param(kW0, DType::f32);
  optim::Adam opt({{"w", w}}, {.lr = lr});
  Vec m(3, 0.0), v(3, 0.0);
  follow(
      opt, w,
      [&](Vec& x, const Vec& g, int t) {
        for (std::size_t i = 0; i < 3; ++i) {
          m[i] = b1 * m[i] + (1 - b1) * g[i];
          v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
          x[i] = x[i] - lr * (m[i] / (1 - std::pow(b1, t))) / (std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps);
        }
      },
      1e-6);
  CHECK(entry(opt.state(), "state/w/exp_avg").dtype() == DType::f32);
}

TEST_CASE("nadam (000 §4.7, Dozat): w <- w - lr / (sqrt(v̂) + ε) (β1 m̂ + (1 - β1) g / (1 - β1^t))") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Tensor w = param(kW0);
  optim::Nadam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
  Vec m(3, 0.0), v(3, 0.0);
  follow(opt, w, [&](Vec& x, const Vec& g, int t) {
    for (std::size_t i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      x[i] = x[i] - lr / (std::sqrt(vh) + eps) * (b1 * mh + (1 - b1) * g[i] / (1 - std::pow(b1, t)));
    }
  });
}

TEST_CASE("amsgrad (000 §4.6, Reddi et al.): v̂ <- max(v̂, v), w <- w - lr m / (sqrt(v̂) + ε)") {
  // β2 = 0.5 so that v falls on the third step for the last element and the maximum matters.
  const double lr = 0.01, b1 = 0.9, b2 = 0.5, eps = 1e-8;
  Tensor w = param(kW0);
  Vec m(3, 0.0), v(3, 0.0), vmax(3, 0.0);
  bool maximum_mattered = false;
  auto moments = [&](const Vec& g) {
    for (std::size_t i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      maximum_mattered = maximum_mattered || v[i] < vmax[i];
      vmax[i] = std::max(vmax[i], v[i]);
    }
  };
  SUBCASE("no bias correction (000, Reddi et al.)") {
    optim::AMSGrad opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      moments(g);
      for (std::size_t i = 0; i < 3; ++i) x[i] = x[i] - lr * m[i] / (std::sqrt(vmax[i]) + eps);
    });
    check_close(entry(opt.state(), "state/w/max_exp_avg_sq"), vmax);
  }
  SUBCASE("bias correction (PyTorch's amsgrad=True)") {
    optim::AMSGrad opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .bias_correction = true});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      moments(g);
      for (std::size_t i = 0; i < 3; ++i) {
        x[i] = x[i] - lr / (1 - std::pow(b1, t)) * m[i] / (std::sqrt(vmax[i] / (1 - std::pow(b2, t))) + eps);
      }
    });
  }
  CHECK(maximum_mattered);
}

TEST_CASE("namsgrad (000 §4.8): AMSGrad's maximum under Nadam's Nesterov numerator") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.5, eps = 1e-8;
  Tensor w = param(kW0);
  Vec m(3, 0.0), v(3, 0.0), vmax(3, 0.0);
  SUBCASE("no bias correction: w <- w - lr (β1 m + (1 - β1) g) / (sqrt(max v) + ε)") {
    optim::NAMSGrad opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < 3; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        vmax[i] = std::max(vmax[i], v[i]);
        x[i] = x[i] - lr * (b1 * m[i] + (1 - b1) * g[i]) / (std::sqrt(vmax[i]) + eps);
      }
    });
  }
  SUBCASE("bias correction: the maximum of v / (1 - β2^t), Nadam's corrected numerator") {
    optim::NAMSGrad opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .bias_correction = true});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      for (std::size_t i = 0; i < 3; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        vmax[i] = std::max(vmax[i], v[i] / (1 - std::pow(b2, t)));
        double mh = m[i] / (1 - std::pow(b1, t));
        x[i] = x[i] - lr / (std::sqrt(vmax[i]) + eps) * (b1 * mh + (1 - b1) * g[i] / (1 - std::pow(b1, t)));
      }
    });
  }
}

TEST_CASE("sgd-hd (Baydin et al. Alg. 1): α_t = α_{t-1} + β g_t · g_{t-1}, θ <- θ - α_t g_t") {
  // Two tensors: the global α takes the dot product over both, the per-tensor α over each.
  const double alpha0 = 0.1, beta = 0.05;
  const std::vector<Vec> ga{{0.5, -1.0}, {0.4, -0.6}, {0.3, 0.2}, {-0.2, 0.1}};
  const std::vector<Vec> gb{{2.0}, {1.5}, {-0.5}, {0.7}};
  Tensor a = param({1.0, 2.0}), b = param({-1.0});
  SUBCASE("global α (the paper)") {
    optim::SGDHD opt({{"a", a}, {"b", b}}, {.lr = alpha0, .hyper_lr = beta});
    Vec xa{1.0, 2.0}, xb{-1.0}, pa(2, 0.0), pb(1, 0.0);
    double alpha = alpha0;
    for (std::size_t t = 0; t < ga.size(); ++t) {
      give_grad(a, ga[t]);
      give_grad(b, gb[t]);
      opt.step();
      double dot = ga[t][0] * pa[0] + ga[t][1] * pa[1] + gb[t][0] * pb[0];
      alpha = alpha + beta * dot;
      for (std::size_t i = 0; i < 2; ++i) xa[i] -= alpha * ga[t][i];
      xb[0] -= alpha * gb[t][0];
      pa = ga[t];
      pb = gb[t];
      INFO("step " << t + 1);
      CHECK(opt.hypergradient() == doctest::Approx(-dot).epsilon(1e-14));
      CHECK(opt.lr() == doctest::Approx(alpha).epsilon(1e-14));
      check_close(a, xa);
      check_close(b, xb);
    }
  }
  SUBCASE("one α per tensor (000 §4.9.1's extension)") {
    optim::SGDHD opt({{"a", a}, {"b", b}}, {.lr = alpha0, .hyper_lr = beta, .scope = optim::HyperScope::per_tensor});
    Vec xa{1.0, 2.0}, xb{-1.0}, pa(2, 0.0), pb(1, 0.0);
    double alpha_a = alpha0, alpha_b = alpha0;
    for (std::size_t t = 0; t < ga.size(); ++t) {
      give_grad(a, ga[t]);
      give_grad(b, gb[t]);
      opt.step();
      alpha_a += beta * (ga[t][0] * pa[0] + ga[t][1] * pa[1]);
      alpha_b += beta * gb[t][0] * pb[0];
      for (std::size_t i = 0; i < 2; ++i) xa[i] -= alpha_a * ga[t][i];
      xb[0] -= alpha_b * gb[t][0];
      pa = ga[t];
      pb = gb[t];
      INFO("step " << t + 1);
      CHECK(opt.alpha("a") == doctest::Approx(alpha_a).epsilon(1e-14));
      CHECK(opt.alpha("b") == doctest::Approx(alpha_b).epsilon(1e-14));
      check_close(a, xa);
      check_close(b, xb);
    }
    CHECK(opt.lr() == alpha0);  // the group's rate stays the starting α
  }
}

TEST_CASE("adam-hd (Baydin et al. Alg. 3): α_t = α_{t-1} + β g_t · d_{t-1}, d = m̂ / (sqrt(v̂) + ε)") {
  const double alpha0 = 0.01, beta = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Tensor w = param(kW0);
  optim::AdamHD opt({{"w", w}}, {.lr = alpha0, .beta1 = b1, .beta2 = b2, .eps = eps, .hyper_lr = beta});
  Vec m(3, 0.0), v(3, 0.0), d(3, 0.0);
  double alpha = alpha0;
  follow(opt, w, [&](Vec& x, const Vec& g, int t) {
    double dot = 0;
    for (std::size_t i = 0; i < 3; ++i) dot += g[i] * d[i];
    alpha += beta * dot;
    for (std::size_t i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      d[i] = (m[i] / (1 - std::pow(b1, t))) / (std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps);
      x[i] = x[i] - alpha * d[i];
    }
  });
  CHECK(opt.lr() == doctest::Approx(alpha).epsilon(1e-14));
  CHECK(alpha != alpha0);
  check_close(entry(opt.state(), "state/w/prev_direction"), d);
}

// ================================================================ Newton

TEST_CASE("newton (004 Prop. 3.10): one step on a quadratic reaches the minimum") {
  const Quadratic q({4, 1, 0, 1, 3, 1, 0, 1, 2}, {1, 2, 3});
  const Vec minimum = q.minimum();
  for (optim::HessianMethod method : {optim::HessianMethod::full, optim::HessianMethod::conjugate_gradient}) {
    Tensor x = column({5.0, -3.0, 2.0});
    optim::Newton opt({{"x", x}}, {.method = method});
    double loss = opt.step(optim::Optimizer::LossFn([&] { return q.loss(x); }));
    CHECK(loss == doctest::Approx(q.value({5.0, -3.0, 2.0})).epsilon(1e-14));  // the loss where the step began
    INFO("method " << static_cast<int>(method));
    check_close(x, minimum, 1e-12);
    CHECK(opt.used_full_hessian() == (method == optim::HessianMethod::full));
    if (method == optim::HessianMethod::conjugate_gradient) CHECK(opt.cg_iterations() <= 3);
    CHECK(ag::tape_size() == 0);
    CHECK_FALSE(x.grad().defined());
  }
}

TEST_CASE("newton: damping solves (H + μ I) d = g; a step needs the loss tensor") {
  const Quadratic q({4, 1, 0, 1, 3, 1, 0, 1, 2}, {1, 2, 3});
  const double mu = 0.5;
  const Vec x0{5.0, -3.0, 2.0};
  Tensor x = column(x0);
  optim::Newton opt({{"x", x}}, {.damping = mu});
  opt.step(optim::Optimizer::LossFn([&] { return q.loss(x); }));
  // (A + μ I)(x0 - x1) must equal the gradient at x0.
  Vec g = q.gradient(x0), x1 = values_of(x), step(3);
  for (std::size_t i = 0; i < 3; ++i) step[i] = x0[i] - x1[i];
  Vec lhs = q.gradient(step);  // A step - b
  for (std::size_t i = 0; i < 3; ++i) CHECK(lhs[i] + q.b.at(i) + mu * step[i] == doctest::Approx(g[i]).epsilon(1e-12));
  CHECK_THROWS_AS(opt.step(), std::logic_error);
  CHECK_THROWS_WITH_AS(opt.step(optim::Optimizer::Closure([] { return 0.0; })), doctest::Contains("loss_fn"),
                       std::logic_error);
}

TEST_CASE("newton at a saddle: the full solver adds damping until it descends") {
  // f = x^2 - 0.7 y^2 at (1, 0.1): H = diag(2, -1.4) is indefinite; the pure Newton step would jump to the
  // saddle at 0.
  Tensor p = param({1.0, 0.1});
  Tensor signs = Tensor::from_data(ag::Shape{2}, {1.0, -0.7}, DType::f64);
  auto loss = [&] { return ag::sum(ag::mul(signs, ag::mul(p, p))); };
  optim::Newton opt({{"p", p}}, {.method = optim::HessianMethod::full});
  double before = opt.step(optim::Optimizer::LossFn(loss));
  // max |H_ii| = 2: τ = 2e-10 * 10^k, the first with -1.4 + τ > 0 is τ = 2; the damping used is 2τ = 4.
  CHECK(opt.extra_damping() == doctest::Approx(4.0).epsilon(1e-14));
  check_close(p, {1.0 - 2.0 / 6.0, 0.1 + 0.14 / 2.6}, 1e-12);
  CHECK(loss().item() < before);
  ag::release_tape();
}

TEST_CASE("newton on logistic regression: the gradient norm falls quadratically near the optimum") {
  // Three classes, 4 features, 240 noisy samples: softmax regression with L2 (coupled weight decay, which
  // also removes the softmax's flat direction from the Hessian).
  ag::Generator gen(7);
  const std::size_t n = 240, d = 4, k = 3;
  Tensor x = Tensor::randn(ag::Shape{n, d}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> labels(n);
  for (std::size_t i = 0; i < n; ++i) {
    double s0 = x.at(i * d) + 0.5 * x.at(i * d + 1), s1 = -x.at(i * d) + x.at(i * d + 2);
    double noisy0 = s0 + 0.8 * gen.normal(), noisy1 = s1 + 0.8 * gen.normal();
    labels[i] = noisy0 > 0.5 ? 0 : (noisy1 > 0 ? 1 : 2);
  }
  const double lambda = 1e-3;
  for (optim::HessianMethod method : {optim::HessianMethod::full, optim::HessianMethod::conjugate_gradient}) {
    Tensor w = Tensor::zeros(ag::Shape{d, k}, DType::f64);
    Tensor b = Tensor::zeros(ag::Shape{k}, DType::f64);
    w.set_requires_grad();
    b.set_requires_grad();
    auto loss = [&] { return ag::cross_entropy(ag::add(ag::matmul(x, w), b), labels); };
    auto gradient_norm = [&] {
      Tensor l = loss();
      std::vector<Tensor> g = ag::grad({l}, {w, b});
      double s = 0;
      for (std::size_t i = 0; i < w.numel(); ++i) s += std::pow(g[0].at(i) + lambda * w.at(i), 2);
      for (std::size_t i = 0; i < b.numel(); ++i) s += std::pow(g[1].at(i) + lambda * b.at(i), 2);
      return std::sqrt(s);
    };
    optim::Newton opt({{"w", w}, {"b", b}}, {.method = method, .cg_tolerance = 1e-12, .weight_decay = lambda});
    std::vector<double> norms{gradient_norm()}, losses;
    for (int it = 0; it < 8; ++it) {
      losses.push_back(opt.step(optim::Optimizer::LossFn(loss)));
      norms.push_back(gradient_norm());
    }
    INFO("method " << static_cast<int>(method));
    for (std::size_t i = 1; i < losses.size(); ++i) CHECK(losses[i] <= losses[i - 1] + 1e-15);
    // Quadratic convergence: once the gradient is small, ||g_{k+1}|| <= C ||g_k||^2 with a modest C.
    int quadratic_steps = 0;
    for (std::size_t i = 0; i + 1 < norms.size(); ++i) {
      if (norms[i] < 0.05 && norms[i] > 1e-7) {
        INFO("||g|| " << norms[i] << " -> " << norms[i + 1]);
        CHECK(norms[i + 1] <= 50.0 * norms[i] * norms[i]);
        ++quadratic_steps;
      }
    }
    CHECK(quadratic_steps >= 2);
    CHECK(norms.back() < 1e-12);
  }
}

// ================================================================ Nesterov's two forms

TEST_CASE("nesterov: the reparameterised iterates are the look-ahead points of the exact form") {
  // θ_t = W_t - γ v_t with the same v_t, on f = 1/2 x^T A x - b^T x evaluated on the tape by both.
  const Quadratic q({3, 0.5, 0, 0.5, 1, 0.2, 0, 0.2, 0.6}, {1, -1, 2});
  const double lr = 0.1, gamma = 0.9;
  Tensor w = column({2.0, 1.0, -1.0});
  Tensor theta = column({2.0, 1.0, -1.0});
  optim::NesterovLookahead exact({{"x", w}}, {.lr = lr, .momentum = gamma});
  optim::Nesterov usual({{"x", theta}}, {.lr = lr, .momentum = gamma});
  for (int t = 1; t <= 300; ++t) {
    exact.step(optim::Optimizer::LossFn([&] { return q.loss(w); }));
    usual.step(optim::Optimizer::LossFn([&] { return q.loss(theta); }));
    Tensor v_exact = entry(exact.state(), "state/x/velocity");
    Tensor v_usual = entry(usual.state(), "state/x/velocity");
    INFO("step " << t);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(v_usual.at(i) == doctest::Approx(v_exact.at(i)).epsilon(1e-12));
      CHECK(theta.at(i) == doctest::Approx(w.at(i) - gamma * v_exact.at(i)).epsilon(1e-12));
    }
  }
  // And both reach the minimum.
  Vec minimum = q.minimum();
  for (std::size_t i = 0; i < 3; ++i) CHECK(w.at(i) == doctest::Approx(minimum[i]).epsilon(1e-6));
}

// ================================================================ Reddi et al.'s counterexample

TEST_CASE("Reddi et al.'s convex example: Adam drifts to x = +1, AMSGrad reaches the minimum x = -1") {
  // f_t(x) = C x if t mod 3 == 1 else -x on [-1, 1] (projected), C = 3: the average is (C - 2)/3 x, minimised
  // at x = -1. β1 = 0, β2 = 1 / (1 + C^2), α_t = α / sqrt(t), as in their Theorem 1.
  const double c = 3.0, alpha = 0.5;
  const double b2 = 1.0 / (1.0 + c * c);
  auto run = [&](optim::Optimizer& opt, Tensor& x) {
    double average = 0;
    const int steps = 3000;
    for (int t = 1; t <= steps; ++t) {
      opt.set_lr(alpha / std::sqrt(static_cast<double>(t)));
      give_grad(x, {t % 3 == 1 ? c : -1.0});
      opt.step();
      double* p = x.data<double>();
      p[0] = std::clamp(p[0], -1.0, 1.0);
      if (t > steps - 300) average += p[0] / 300.0;
    }
    return average;
  };
  Tensor xa = param({0.0}), xm = param({0.0});
  optim::Adam adam({{"x", xa}}, {.beta1 = 0.0, .beta2 = b2});
  optim::AMSGrad ams({{"x", xm}}, {.beta1 = 0.0, .beta2 = b2});
  double adam_average = run(adam, xa), ams_average = run(ams, xm);
  MESSAGE("average x over the last 300 steps: adam " << adam_average << ", amsgrad " << ams_average);
  CHECK(adam_average > 0.95);
  CHECK(ams_average < -0.95);
}

// ================================================================ hypergradients are derivatives

namespace {
/// Checks, for steps 2..5 of a hypergradient method on the quartic over tensors (a, b): the h_t it reports
/// is d f(θ_{t-1}(α)) / dα at α_{t-1}, where θ_{t-1}(α) = θ_{t-2} - α d_{t-2} (per tensor: moving only
/// that tensor's α), by central differences.
template <class Opt, class Options>
void check_hypergradient(Options options) {
  Tensor a = param({0.8, -0.4}), b = param({1.1, 0.3, -0.9});
  Opt opt({{"a", a}, {"b", b}}, options);
  auto step = [&] {
    opt.step(optim::Optimizer::LossFn([&] { return quartic({a, b}); }));
  };
  step();  // t = 1: h = 0
  CHECK(opt.hypergradient() == 0.0);
  for (int t = 2; t <= 5; ++t) {
    // θ_{t-2} is before the previous step: recover it as θ_{t-1} + α_{t-1} d_{t-1}.
    std::vector<nn::NamedTensor> s = opt.state();
    Vec da = values_of(entry(s, "state/a/prev_direction")), db = values_of(entry(s, "state/b/prev_direction"));
    double alpha_a = opt.alpha("a"), alpha_b = opt.alpha("b");
    Vec a1 = values_of(a), b1 = values_of(b), a0 = a1, b0 = b1;
    for (std::size_t i = 0; i < a0.size(); ++i) a0[i] += alpha_a * da[i];
    for (std::size_t i = 0; i < b0.size(); ++i) b0[i] += alpha_b * db[i];
    auto moved = [](const Vec& base, const Vec& dir, double alpha) {
      Vec out = base;
      for (std::size_t i = 0; i < out.size(); ++i) out[i] -= alpha * dir[i];
      return out;
    };
    const double h = 1e-6;
    step();
    INFO("step " << t);
    if (options.scope == optim::HyperScope::global) {
      double alpha = alpha_a;
      double fd = (quartic_value({moved(a0, da, alpha + h), moved(b0, db, alpha + h)}) -
                   quartic_value({moved(a0, da, alpha - h), moved(b0, db, alpha - h)})) /
                  (2 * h);
      CHECK(std::abs(fd) > 1e-3);
      CHECK(opt.hypergradient() == doctest::Approx(fd).epsilon(1e-6));
    } else {
      double fd_a = (quartic_value({moved(a0, da, alpha_a + h), b1}) - quartic_value({moved(a0, da, alpha_a - h), b1})) /
                    (2 * h);
      double fd_b = (quartic_value({a1, moved(b0, db, alpha_b + h)}) - quartic_value({a1, moved(b0, db, alpha_b - h)})) /
                    (2 * h);
      CHECK(std::abs(fd_a) > 1e-3);
      CHECK(std::abs(fd_b) > 1e-3);
      CHECK(opt.hypergradient("a") == doctest::Approx(fd_a).epsilon(1e-6));
      CHECK(opt.hypergradient("b") == doctest::Approx(fd_b).epsilon(1e-6));
      CHECK(opt.hypergradient() == doctest::Approx(fd_a + fd_b).epsilon(1e-6));
    }
  }
}
}  // namespace

TEST_CASE("hypergradient: h_t = -∇f(θ_{t-1}) · d_{t-1} is the finite-difference derivative of f in α") {
  SUBCASE("sgd-hd, global α") { check_hypergradient<optim::SGDHD>(optim::SGDHDOptions{.lr = 0.1, .hyper_lr = 0.01}); }
  SUBCASE("sgd-hd, per tensor") {
    check_hypergradient<optim::SGDHD>(
        optim::SGDHDOptions{.lr = 0.1, .hyper_lr = 0.01, .scope = optim::HyperScope::per_tensor});
  }
  SUBCASE("adam-hd, global α") {
    check_hypergradient<optim::AdamHD>(optim::AdamHDOptions{.lr = 0.05, .hyper_lr = 1e-3});
  }
  SUBCASE("adam-hd, per tensor") {
    check_hypergradient<optim::AdamHD>(
        optim::AdamHDOptions{.lr = 0.05, .hyper_lr = 1e-3, .scope = optim::HyperScope::per_tensor});
  }
}

// ================================================================ convergence

namespace {
config::Spec spec(const std::string& name, double lr) { return {name, {{"lr", config::format_real(lr)}}}; }
struct Run {
  std::string name;
  double lr;
  int steps;
  double tolerance;
};
}  // namespace

TEST_CASE("every method converges on a convex quadratic") {
  // κ = 10 in 4 dimensions.
  const Quadratic q({10, 1, 0, 0, 1, 5, 0.5, 0, 0, 0.5, 2, 0.3, 0, 0, 0.3, 1}, {1, -2, 0.5, 1});
  const Vec minimum = q.minimum();
  const std::vector<Run> runs{
      {"sgd", 0.15, 300, 1e-6},        {"momentum", 0.05, 300, 1e-6},  {"nesterov", 0.05, 300, 1e-6},
      {"nesterov-lookahead", 0.05, 300, 1e-6}, {"adagrad", 0.5, 2000, 1e-4}, {"rmsprop", 0.003, 2000, 1e-2},
      {"adam", 0.05, 1000, 1e-4},      {"nadam", 0.05, 1000, 1e-4},    {"amsgrad", 0.05, 2000, 1e-3},
      {"namsgrad", 0.05, 1000, 1e-4},  {"sgd-hd", 0.01, 500, 1e-6},    {"adam-hd", 0.05, 1000, 1e-4},
      {"newton", 1.0, 1, 1e-12},       {"adamax", 0.05, 1000, 1e-4},   {"adabelief", 0.05, 1000, 1e-4},
      {"yogi", 0.05, 1000, 1e-4},      {"radam", 0.05, 1000, 1e-4},    {"adadelta", 0.1, 2000, 1e-6},
      // AdamW keeps its registered decoupled λ = 1e-2, which pulls x towards 0: it settles near, not at, x*.
      {"adamw", 0.05, 1000, 1e-3},
      // Wrappers, around their default inner methods (adam; momentum for swa and sam) at the rate given.
      {"clip", 0.05, 1000, 1e-4},      {"lookahead", 0.05, 2000, 1e-4}, {"ema", 0.05, 1000, 1e-4},
      // sam's ascent step has length ρ wherever g != 0, so it settles within about ρ of x*, not at it.
      {"swa", 0.05, 300, 1e-6},        {"sam", 0.05, 300, 5e-3},
      // L-BFGS's iterations end once g·d > -tolerance_change = 1e-9 (torch's default), about 2e-6 from x*.
      {"lbfgs", 1.0, 1, 1e-5},
      // Rprop's step sizes stop at step_min = 1e-6, which bounds its accuracy.
      {"rprop", 0.01, 1000, 2e-6},
      // Lion moves every coordinate by ±lr (or 0): it circles x* within ~lr.
      {"lion", 1e-3, 3000, 2e-3},
      // LAMB's step is lr ‖x‖ in norm whatever the gradient: at a constant rate it circles x* that far off.
      {"lamb", 3e-3, 3000, 1e-2},
      // LARS's step is lr η ‖x‖ in norm (η = 1e-3) whatever the gradient: the same.
      {"lars", 1.0, 3000, 3e-3},
      // ASGD's λ = 1e-4 shrinks w at every step: it settles where ∇f(w) + λ w = 0, 9e-5 from x* (and its
      // average, with t0 = 1e6, is w itself).
      {"asgd", 0.1, 300, 2e-4},
      // Schedule-free, at y (the parameters). AdamW's z step g / (sqrt(v̂) + ε) does not shrink as g -> 0
      // (RMSProp's step): after ~4000 steps z hovers, and y = 0.1 z + 0.9 x with it; x, the evaluation
      // point, keeps converging.
      {"sgd-schedule-free", 0.15, 2000, 1e-6}, {"adamw-schedule-free", 0.02, 2000, 1e-6}};
  REQUIRE(runs.size() == optim::optimizers().names().size());
  for (const Run& r : runs) {
    Tensor x = column({0.0, 0.0, 0.0, 0.0});
    config::Spec s = spec(r.name, r.lr);
    if (r.name == "sam") s.set("rho", "1e-3");
    auto opt = optim::make_optimizer(s, {{"x", x}});
    auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < r.steps; ++t) opt->step(optim::Optimizer::LossFn([&] { return q.loss(x); }));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double error = 0;
    // std::max(0, NaN) is 0: a run that diverges must not pass as converged.
    for (std::size_t i = 0; i < 4; ++i) {
      error = std::isfinite(x.at(i)) ? std::max(error, std::abs(x.at(i) - minimum[i])) : INFINITY;
    }
    INFO(r.name << ": max |x - x*| = " << error << " after " << r.steps << " steps (" << seconds << " s)");
    CHECK(error < r.tolerance);
  }
}

TEST_CASE("convergence on Rosenbrock f = (1 - x)^2 + 100 (y - x^2)^2 from (-1.2, 1)") {
  const Tensor pick_x = Tensor::from_data(ag::Shape{2}, {1.0, 0.0}, DType::f64);
  const Tensor pick_y = Tensor::from_data(ag::Shape{2}, {0.0, 1.0}, DType::f64);
  auto rosenbrock = [&](const Tensor& p) {
    Tensor px = ag::sum(ag::mul(p, pick_x)), py = ag::sum(ag::mul(p, pick_y));
    Tensor a = ag::sub(1.0, px);
    Tensor b = ag::sub(py, ag::mul(px, px));
    return ag::add(ag::mul(a, a), ag::mul(ag::mul(b, b), 100.0));
  };
  // Momentum and the adaptive methods follow the curved valley; plain gradient descent (and SGD-HD, whose α
  // stays near a stable rate) creeps along it, and a constant-rate RMSProp or AdaGrad ends up hovering.
  const std::vector<Run> runs{
      {"newton", 1.0, 30, 1e-8},         {"momentum", 1.5e-3, 3000, 1e-6}, {"nesterov", 1e-3, 4000, 1e-5},
      {"nesterov-lookahead", 1e-3, 4000, 1e-5}, {"adam", 0.05, 3000, 1e-6},   {"nadam", 0.02, 4000, 1e-3},
      {"amsgrad", 0.1, 3000, 1e-5},      {"namsgrad", 0.05, 3000, 1e-4},   {"adam-hd", 0.02, 4000, 1e-5},
      {"rmsprop", 3e-3, 5000, 1e-2},     {"adagrad", 1.0, 5000, 5e-2},     {"sgd", 1.5e-3, 5000, 5e-2},
      {"sgd-hd", 1.5e-3, 5000, 0.1},     {"adabelief", 0.02, 5000, 1e-6},  {"yogi", 0.1, 5000, 1e-6},
      // Adamax at a constant rate converges to (1, 1) (6.6e-10 off at step 4,000, 4e-11 at 4,100, the same
      // with and without fused multiply-adds), then hovers within ~2e-3 of it: its step lr m / u shrinks
      // more slowly than the gradient, and where it is after ~4,200 steps depends on the rounding. Checked
      // at the end of the convergence.
      {"adamax", 0.1, 4000, 1e-8},
      // RAdam's first five steps are momentum SGD at the full rate (ρt <= 5), which diverges here above
      // ~2e-3 (the gradient at the start is ~200): a small rate, and the steps to make up for it.
      {"radam", 1e-3, 20000, 1e-6},
      // AdamW's registered decoupled λ = 1e-2 moves the point it settles at; Adadelta's step
      // sqrt(u + ε) / sqrt(v + ε) g does not shrink near the minimum, and it hovers in the valley.
      {"adamw", 0.02, 5000, 5e-2},       {"adadelta", 0.1, 5000, 0.1},
      // Wrappers: clip and lookahead around momentum (Adam at a fixed rate hovers in the valley, and with
      // clipped or averaged steps it hovers elsewhere); sam with a small ascent radius (the valley is narrow).
      {"clip", 1.5e-3, 3000, 1e-6},      {"lookahead", 1.5e-3, 6000, 1e-6}, {"ema", 0.05, 3000, 1e-6},
      {"swa", 1.5e-3, 3000, 1e-6},       {"sam", 1.5e-3, 3000, 1e-3},
      // L-BFGS, fixed steps t = lr (up to 20 iterations per step): its tolerance_change = 1e-9 ends the
      // iterations about 3e-6 from (1, 1), where f ~ 1e-11 and the valley is flat.
      {"lbfgs", 1.0, 5, 1e-5},
      // Rprop runs with step_min = 1e-9 (below): at torch's floor 1e-6 a step in y overshoots the valley
      // y = x² near the end, the signs cycle, and it stops ~1e-3 short.
      {"rprop", 0.01, 8000, 2e-6},
      // Lion's ±lr steps circle (1, 1) within ~lr. (At lr = 1e-3 exactly, (-1.2, 1) and (1, 1) lie on one
      // lattice of steps and it lands on the minimum: a coincidence avoided here.)
      {"lion", 7e-4, 7000, 2e-3},
      // The valley passes by the origin, where LAMB's step lr ‖p‖ nearly vanishes: it crawls there for most
      // of the run, then circles (1, 1) about lr ‖p‖ off.
      {"lamb", 3e-3, 10000, 2e-2},
      // LARS's steps are lr η ‖p‖ in norm: it circles (1, 1) at that distance.
      {"lars", 1.0, 5000, 3e-3},
      // ASGD creeps along the valley as SGD does; λ = 1e-4 moves the point it settles at by ~3e-4.
      {"asgd", 2e-3, 10000, 2e-3},
      // Schedule-free with r = 4, c_t ≈ 5/t: with r = 0 the plain mean x weighs the whole path along the
      // valley equally, and y = 0.1 z + 0.9 x swings with it for tens of thousands of steps (1e-3 to 1e-1
      // away between 10k and 20k). AdamW's z step does not shrink near the minimum, and y hovers ~3e-4 away.
      {"sgd-schedule-free", 5e-3, 15000, 1e-4}, {"adamw-schedule-free", 5e-3, 12000, 1e-3}};
  REQUIRE(runs.size() == optim::optimizers().names().size());
  for (const Run& r : runs) {
    Tensor p = param({-1.2, 1.0});
    // SGD-HD's hypergradient is a product of gradients in the hundreds here: a small β.
    config::Spec s = spec(r.name, r.lr);
    if (r.name.ends_with("-hd")) s.set("hyper_lr", "1e-8");
    if (r.name == "sam") s.set("rho", "1e-4");
    if (r.name == "clip" || r.name == "lookahead") s.set("inner", "momentum");
    if (r.name == "rprop") s.set("step_min", "1e-9");
    if (r.name.ends_with("-schedule-free")) s.set("r", "4");
    auto opt = optim::make_optimizer(s, {{"p", p}});
    for (int t = 0; t < r.steps; ++t) opt->step(optim::Optimizer::LossFn([&] { return rosenbrock(p); }));
    double error = std::max(std::abs(p.at(0) - 1.0), std::abs(p.at(1) - 1.0));
    INFO(r.name << ": max |p - (1, 1)| = " << error << " after " << r.steps << " steps");
    CHECK(error < r.tolerance);
  }
}

// ================================================================ state: round trip, identity, errors

TEST_CASE("state round trip through a checkpoint file resumes bit for bit, for every method") {
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::string& name : optim::optimizers().names()) {
      INFO(name << " " << ag::dtype_name(dtype));
      Tensor a = param({0.8, -0.4}, dtype), b = param({1.1, 0.3, -0.9}, dtype);
      const double lr = name == "newton" ? 0.5 : 0.05;
      auto opt = optim::make_optimizer(spec(name, lr).set("weight_decay", "0.01"), {{"a", a}, {"b", b}});
      auto loss_of = [](Tensor& x, Tensor& y) {
        return optim::Optimizer::LossFn([&x, &y] { return quartic({x, y}); });
      };
      for (int t = 0; t < 5; ++t) opt->step(loss_of(a, b));

      std::string path = temp_path("state_" + name + ".ckpt");
      nn::save_tensors(path, opt->state());
      std::vector<nn::NamedTensor> loaded = nn::load_tensors(path);
      std::filesystem::remove(path);

      Tensor a2 = a.clone(), b2 = b.clone();
      a2.set_requires_grad();
      b2.set_requires_grad();
      auto resumed = optim::make_optimizer(spec(name, lr).set("weight_decay", "0.01"), {{"a", a2}, {"b", b2}});
      resumed->load_state(loaded);
      CHECK(resumed->step_count() == 5);
      CHECK(resumed->lr() == opt->lr());
      for (int t = 0; t < 5; ++t) {
        opt->step(loss_of(a, b));
        resumed->step(loss_of(a2, b2));
      }
      CHECK(bit_identical(a, a2));
      CHECK(bit_identical(b, b2));
    }
  }
}

TEST_CASE("state is keyed by the parameter, not its position") {
  Tensor a = param({0.8, -0.4}), b = param({1.1, 0.3, -0.9});
  optim::Adam first({{"a", a}, {"b", b}}, {.lr = 0.05});
  for (int t = 0; t < 3; ++t) first.step(optim::Optimizer::LossFn([&] { return quartic({a, b}); }));
  // The same tensors listed the other way round.
  Tensor a2 = a.clone(), b2 = b.clone();
  a2.set_requires_grad();
  b2.set_requires_grad();
  optim::Adam second({{"b", b2}, {"a", a2}}, {.lr = 0.05});
  second.load_state(first.state());
  for (int t = 0; t < 3; ++t) {
    first.step(optim::Optimizer::LossFn([&] { return quartic({a, b}); }));
    second.step(optim::Optimizer::LossFn([&] { return quartic({a2, b2}); }));
  }
  CHECK(bit_identical(a, a2));
  CHECK(bit_identical(b, b2));
}

TEST_CASE("load_state names every missing, unexpected or mismatched entry and changes nothing") {
  Tensor a = param({0.8, -0.4}), b = param({1.1, 0.3, -0.9});
  optim::Adam adam({{"a", a}, {"b", b}});
  adam.step(optim::Optimizer::LossFn([&] { return quartic({a, b}); }));
  std::vector<nn::NamedTensor> good = adam.state();

  SUBCASE("another method's state") {
    optim::SGD sgd({{"a", a}, {"b", b}});
    CHECK_THROWS_WITH_AS(sgd.load_state(good), doctest::Contains("saved by 'adam', not 'sgd'"), std::runtime_error);
    CHECK_THROWS_WITH_AS(sgd.load_state(good), doctest::Contains("state/a/exp_avg: 'exp_avg' is not part"),
                         std::runtime_error);
  }
  SUBCASE("missing, mismatched and unknown entries, all in one message") {
    std::vector<nn::NamedTensor> bad;
    for (const auto& [n, t] : good) {
      if (n == "state/a/exp_avg" || n == "global/step") continue;
      if (n == "state/b/exp_avg_sq") {
        bad.emplace_back(n, Tensor::zeros(ag::Shape{4}, DType::f64));
      } else {
        bad.emplace_back(n, t);
      }
    }
    bad.emplace_back("state/zzz/exp_avg", Tensor::zeros(ag::Shape{2}, DType::f64));
    optim::Adam fresh({{"a", a}, {"b", b}});
    try {
      fresh.load_state(bad);
      FAIL("load_state accepted a broken state");
    } catch (const std::runtime_error& e) {
      std::string message = e.what();
      INFO(message);
      CHECK(message.find("4 problems") != std::string::npos);
      CHECK(message.find("state/a/exp_avg: missing") != std::string::npos);
      CHECK(message.find("global/step: missing") != std::string::npos);
      CHECK(message.find("state/b/exp_avg_sq: f64[4] in the state, f64[3] for the parameter") != std::string::npos);
      CHECK(message.find("no parameter named 'zzz'") != std::string::npos);
    }
    CHECK(fresh.step_count() == 0);
    CHECK(fresh.state().size() == 4);  // tag, step, count, group lr: still no parameter state
  }
  SUBCASE("dtype mismatch") {
    Tensor a32 = param({0.8, -0.4}, DType::f32), b32 = param({1.1, 0.3, -0.9}, DType::f32);
    optim::Adam f32({{"a", a32}, {"b", b32}});
    CHECK_THROWS_WITH_AS(f32.load_state(good), doctest::Contains("f64[2] in the state, f32[2] for the parameter"),
                         std::runtime_error);
  }
}

TEST_CASE("state names its entries") {
  Tensor w = param(kW0);
  optim::AMSGrad opt({{"fc1.weight", w}});
  give_grad(w, kGrads[0]);
  opt.step();
  std::vector<std::string> names;
  for (const auto& [n, t] : opt.state()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"optimizer/amsgrad", "global/step", "global/params_with_state", "group/0/lr",
                                          "state/fc1.weight/exp_avg",
                                          "state/fc1.weight/exp_avg_sq", "state/fc1.weight/max_exp_avg_sq",
                                          "state/fc1.weight/step"});
}

// ================================================================ the base: groups, gradients, checks

TEST_CASE("parameter groups: own options, own learning rate, set_lr per group") {
  Tensor a = param({1.0}), b = param({1.0});
  optim::SGD opt({{.params = {{"a", a}}}, {.params = {{"b", b}}, .options = optim::SGDOptions{.lr = 0.5}}},
                 {.lr = 0.1});
  CHECK(opt.group_count() == 2);
  CHECK(opt.lr(0) == 0.1);
  CHECK(opt.lr(1) == 0.5);
  give_grad(a, {1.0});
  give_grad(b, {1.0});
  opt.step();
  CHECK(a.at(0) == doctest::Approx(0.9));
  CHECK(b.at(0) == doctest::Approx(0.5));
  opt.set_lr(1, 0.25);
  opt.step();
  CHECK(a.at(0) == doctest::Approx(0.8));
  CHECK(b.at(0) == doctest::Approx(0.25));
  opt.set_lr(0.0);
  opt.step();
  CHECK(a.at(0) == doctest::Approx(0.8));
  CHECK_THROWS_WITH_AS(opt.set_lr(0, -1.0), doctest::Contains("sgd: lr must be >= 0"), std::invalid_argument);
  CHECK_THROWS_AS(opt.lr(2), std::out_of_range);
}

TEST_CASE("step(closure) calls the closure once, then updates off the tape; step(loss_fn) does the backward") {
  Tensor w = param({2.0});
  optim::SGD opt({{"w", w}}, {.lr = 0.25});
  int calls = 0;
  double loss = opt.step(optim::Optimizer::Closure([&] {
    ++calls;
    opt.zero_grad();
    Tensor l = ag::mul(w, w);
    ag::backward(l);
    return l.item();
  }));
  CHECK(calls == 1);
  CHECK(loss == 4.0);
  CHECK(w.at(0) == 2.0 - 0.25 * 4.0);
  CHECK(w.is_leaf());
  CHECK(w.requires_grad());
  CHECK(ag::tape_size() == 0);
  loss = opt.step(optim::Optimizer::LossFn([&] { return ag::mul(w, w); }));
  CHECK(loss == 1.0);
  CHECK(w.at(0) == 1.0 - 0.25 * 2.0);
  CHECK(w.grad().item() == 2.0);  // the gradient of this step, not accumulated onto the last one
  CHECK(opt.step_count() == 2);
}

TEST_CASE("parameters without a gradient are skipped and get no state") {
  Tensor a = param({1.0, 2.0}), b = param({3.0});
  optim::Adam opt({{"a", a}, {"b", b}});
  give_grad(a, {0.1, 0.2});
  opt.step();
  CHECK(b.at(0) == 3.0);
  for (const auto& [n, t] : opt.state()) CHECK(n.find("state/b/") == std::string::npos);
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  Vec before = values_of(a);
  opt.step();
  CHECK(values_of(a) == before);
}

TEST_CASE("gradients are read, never written, even when shared between parameters") {
  Tensor a = param({1.0, 2.0}), b = param({3.0, 4.0});
  Tensor shared = Tensor::from_data(ag::Shape{2}, {0.5, -0.5}, DType::f64);
  a.set_grad(shared);
  b.set_grad(shared);
  optim::Momentum opt({{"a", a}, {"b", b}}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1});
  opt.step();
  CHECK(shared.to_vector() == Vec{0.5, -0.5});
  check_close(a, {1.0 - 0.1 * (0.5 + 0.1 * 1.0), 2.0 - 0.1 * (-0.5 + 0.1 * 2.0)});
  check_close(b, {3.0 - 0.1 * (0.5 + 0.1 * 3.0), 4.0 - 0.1 * (-0.5 + 0.1 * 4.0)});
  // A gradient that is a parameter's own storage is copied before the update (d is updated first).
  Tensor c = param({1.0, 1.0});
  Tensor d = param({2.0, 2.0});
  c.set_grad(d.detach());
  optim::SGD sgd({{"d", d}, {"c", c}}, {.lr = 0.5});
  d.set_grad(Tensor::from_data(ag::Shape{2}, {1.0, 1.0}, DType::f64));
  sgd.step();
  check_close(d, {1.5, 1.5});
  check_close(c, {0.0, 0.0});  // c moved by 0.5 * d's old values
}

TEST_CASE("options are checked at construction, naming the method, the group and the option") {
  Tensor w = param(kW0);
  std::vector<nn::NamedTensor> p{{"w", w}};
  CHECK_THROWS_WITH_AS(optim::SGD(p, {.lr = -0.1}), "sgd: lr must be >= 0 and finite, got -0.1", std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Adam(p, {.beta1 = 1.0}), doctest::Contains("adam: beta1 must be in [0, 1), got 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Adam(p, {.beta2 = -0.1}), doctest::Contains("adam: beta2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Adam(p, {.eps = 0.0}), doctest::Contains("adam: eps must be > 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Momentum(p, {.momentum = 1.0}), doctest::Contains("momentum: momentum must be in [0, 1)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::RMSProp(p, {.beta = 1.5}), doctest::Contains("rmsprop: beta"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Adagrad(p, {.eps = -1}), doctest::Contains("adagrad: eps"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::AMSGrad(p, {.weight_decay = -1}), doctest::Contains("amsgrad: weight_decay"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::SGDHD(p, {.hyper_lr = -1}), doctest::Contains("sgd-hd: hyper_lr"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Newton(p, {.damping = -1}), doctest::Contains("newton: damping"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::Nadam(p, {.lr = std::nan("")}), doctest::Contains("nadam: lr"), std::invalid_argument);
  Tensor v = param({1.0});
  CHECK_THROWS_WITH_AS(
      optim::Adam({{.params = p}, {.params = {{"v", v}}, .options = optim::AdamOptions{.beta2 = 1.0}}}),
      doctest::Contains("adam (group 1): beta2"), std::invalid_argument);
  // Parameters: duplicates, empty groups.
  CHECK_THROWS_WITH_AS(optim::SGD({{"w", w}, {"w2", w}}), doctest::Contains("same tensor"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::SGD({{"w", w}, {"w", v}}), doctest::Contains("two parameters are named 'w'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::SGD(std::vector<nn::NamedTensor>{}), doctest::Contains("empty"), std::invalid_argument);
}

TEST_CASE("registry: every method by spec, its registered defaults, groups, and the errors") {
  for (const optim::OptimizerEntry* entry : optim::optimizers().entries()) {
    Tensor w = param(kW0);
    auto opt = optim::make_optimizer(config::Spec{entry->name, {}}, {{"w", w}});
    CHECK(opt->name() == entry->name);
    if (dynamic_cast<optim::Wrapper*>(opt.get())) {  // wrappers: the inner method first (test_wrappers.cpp)
      CHECK(entry->options[0].key == "inner");
      continue;
    }
    REQUIRE(entry->options.size() >= 3);
    CHECK(entry->options[0].key == "lr");
    CHECK(config::format_real(opt->lr()) == entry->options[0].value);
    CHECK_FALSE(entry->summary.empty());
  }
  CHECK(optim::make_optimizer("nadam", {{"w", param(kW0)}})->lr() == 2e-3);  // Dozat's value
  CHECK(optim::Nadam({{"w", param(kW0)}}).lr() == 2e-3);                    // the same by type
  Tensor w = param(kW0), b = param({0.5});
  auto adamw = optim::make_optimizer("adam(lr=0.1,weight_decay=0.5,decoupled=true,beta2=0.99)", {{"w", w}});
  const optim::AdamOptions& o = dynamic_cast<optim::Adam&>(*adamw).options();
  CHECK(o.weight_decay_mode == optim::WeightDecay::decoupled);
  CHECK(o.beta2 == 0.99);
  CHECK(o.lr == 0.1);
  auto mom = optim::make_optimizer("nesterov(lr=0.2, momentum=0.5)", {{"w", w}});
  CHECK(dynamic_cast<optim::Nesterov&>(*mom).options().momentum == 0.5);
  // Groups: no weight decay on the bias.
  auto grouped = optim::make_optimizer(config::parse_spec("sgd(lr=0.1,weight_decay=0.01)"),
                                       std::vector<optim::GroupSpec>{{{{"w", w}}}, {{{"b", b}}, config::parse_spec("_(weight_decay=0)")}});
  auto& sgd = dynamic_cast<optim::SGD&>(*grouped);
  CHECK(sgd.options(0).weight_decay == 0.01);
  CHECK(sgd.options(1).weight_decay == 0.0);
  CHECK(sgd.options(1).lr == 0.1);
  // Resolved: every option written out, in the registration's order.
  CHECK(optim::resolve_optimizer(config::parse_spec("adam(beta2=0.99)")).text() ==
        "adam(lr=0.001,weight_decay=0,decoupled=false,beta1=0.9,beta2=0.99,eps=1e-08,eps_placement=outside)");
  // Errors name the method, the key and what is allowed.
  CHECK_THROWS_WITH_AS(optim::make_optimizer("l-bfgs", {{"w", w}}),
                       doctest::Contains("unknown optimizer 'l-bfgs' (known: adabelief, adadelta, adagrad, adam, adam-hd"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("adam(lr=-1)", {{"w", w}}), doctest::Contains("adam: lr must be >= 0, got '-1'"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("adam(beta2=1)", {{"w", w}}),
                       doctest::Contains("adam: beta2 must be in [0, 1), got '1'"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("adam(betta2=0.9)", {{"w", w}}),
                       doctest::Contains("adam: unknown option 'betta2' (options: lr, weight_decay, decoupled, beta1, beta2"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("momentum(momentum=fast)", {{"w", w}}),
                       doctest::Contains("momentum: momentum must be in [0, 1), got 'fast'"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("adam(eps_placement=middle)", {{"w", w}}),
                       doctest::Contains("eps_placement must be one of outside | inside, got 'middle'"), config::SpecError);
}

// ================================================================ a small MLP on MNIST

TEST_CASE("a 784-32-10 MLP trained by Adam on 500 MNIST images reaches a low loss") {
  const std::size_t n = 500, features = 784, hidden = 32, classes = 10;
  // The real images (scripts/fetch-mnist.sh fetches them; a missing or broken copy fails here, naming the file).
  const data::Dataset train = data::load_mnist(data::default_mnist_dir(), data::Split::train);
  const std::vector<float> images(train.images.begin(), train.images.begin() + static_cast<std::ptrdiff_t>(n * features));
  const std::vector<std::int32_t> labels(train.labels.begin(), train.labels.begin() + static_cast<std::ptrdiff_t>(n));
  Tensor x = Tensor::from_data(ag::Shape{n, features}, std::span<const float>(images));
  ag::Generator gen(11);
  Tensor w1 = Tensor::randn(ag::Shape{features, hidden}, gen, 0.0, std::sqrt(2.0 / features));
  Tensor b1 = Tensor::zeros(ag::Shape{hidden});
  Tensor w2 = Tensor::randn(ag::Shape{hidden, classes}, gen, 0.0, std::sqrt(1.0 / hidden));
  Tensor b2 = Tensor::zeros(ag::Shape{classes});
  for (Tensor* t : {&w1, &b1, &w2, &b2}) t->set_requires_grad();
  optim::Adam opt({{"fc1.weight", w1}, {"fc1.bias", b1}, {"fc2.weight", w2}, {"fc2.bias", b2}}, {.lr = 0.01});
  auto loss = [&] {
    Tensor h = ag::relu(ag::add(ag::matmul(x, w1), b1));
    return ag::cross_entropy(ag::add(ag::matmul(h, w2), b2), labels);
  };
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 60; ++epoch) {
    last = opt.step(optim::Optimizer::LossFn(loss));
    if (epoch == 0) first = last;
  }
  ag::NoGradGuard no_grad;
  Tensor logits = ag::add(ag::matmul(ag::relu(ag::add(ag::matmul(x, w1), b1)), w2), b2);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < classes; ++k) {
      if (logits.at(i * classes + k) > logits.at(i * classes + best)) best = k;
    }
    correct += best == static_cast<std::size_t>(labels[i]);
  }
  MESSAGE("loss " << first << " -> " << last << ", training accuracy " << correct << "/" << n);
  CHECK(first > 1.5);
  CHECK(last < 0.05);
  CHECK(correct >= n - 5);
}

// ================================================================ load_state: the shared mismatch report

TEST_CASE("load_state refuses an entry given twice, a partial parameter state and bad values, naming each") {
  Tensor a = param({0.8, -0.4}), b = param({1.1, 0.3, -0.9});
  optim::Adam adam({{"a", a}, {"b", b}});
  adam.step(optim::Optimizer::LossFn([&] { return quartic({a, b}); }));
  const std::vector<nn::NamedTensor> good = adam.state();
  auto message_of = [&](const std::vector<nn::NamedTensor>& entries) {
    optim::Adam fresh({{"a", a}, {"b", b}});
    try {
      fresh.load_state(entries);
    } catch (const std::runtime_error& e) {
      CHECK(fresh.step_count() == 0);  // nothing changed
      CHECK(fresh.state().size() == 4);
      return std::string(e.what());
    }
    FAIL("load_state accepted a broken state");
    return std::string();
  };
  SUBCASE("twice") {
    std::vector<nn::NamedTensor> twice = good;
    twice.push_back(good.back());
    std::string message = message_of(twice);
    CHECK(message.find("adam: cannot load the optimiser state (1 problem):") == 0);
    CHECK(message.find(good.back().first + ": appears 2 times in the state") != std::string::npos);
  }
  SUBCASE("one entry of a parameter's state asks for the others") {
    std::vector<nn::NamedTensor> partial;
    for (const auto& [n, t] : good) {
      if (!n.starts_with("state/b/") || n == "state/b/step") partial.emplace_back(n, t);
    }
    std::string message = message_of(partial);
    CHECK(message.find("state/b/exp_avg: missing from the state") != std::string::npos);
    CHECK(message.find("state/b/exp_avg_sq: missing from the state") != std::string::npos);
  }
  SUBCASE("values, scalars and groups") {
    std::vector<nn::NamedTensor> bad;
    for (const auto& [n, t] : good) {
      if (n == "global/step") {
        bad.emplace_back(n, Tensor::scalar(2.5, DType::f64));
      } else if (n == "group/0/lr") {
        bad.emplace_back(n, Tensor::scalar(-1.0, DType::f64));
      } else if (n == "state/a/step") {
        bad.emplace_back(n, Tensor::scalar(1.0, DType::f32));
      } else {
        bad.emplace_back(n, t);
      }
    }
    bad.emplace_back("group/1/lr", Tensor::scalar(0.1, DType::f64));
    std::string message = message_of(bad);
    CHECK(message.find("(4 problems)") != std::string::npos);
    CHECK(message.find("state/a/step: f32[] in the state, f64[] expected") != std::string::npos);
    CHECK(message.find("group/1/lr: unexpected (this optimiser has 1 group(s))") != std::string::npos);
    CHECK(message.find("global/step: not a step count: 2.5") != std::string::npos);
    CHECK(message.find("group/0/lr: not a learning rate: -1") != std::string::npos);
  }
  SUBCASE("an untouched optimiser's state and a full one both load") {
    optim::Adam fresh({{"a", a}, {"b", b}});
    fresh.load_state(good);
    CHECK(fresh.step_count() == 1);
    CHECK(fresh.state().size() == good.size());
    optim::Adam other({{"a", a}, {"b", b}});
    fresh.load_state(other.state());
    CHECK(fresh.step_count() == 0);
    CHECK(fresh.state().size() == 4);
  }
}

// ================================================================ Newton: adaptive damping

namespace {
/// f(x) = log cosh x = log((e^x + e^-x) / 2): f' = tanh x, f'' = sech² x; Newton overshoots for |x| > 1.09.
Tensor log_cosh(const Tensor& x) {
  return ag::sum(ag::log(ag::mul(ag::add(ag::exp(x), ag::exp(ag::sub(0.0, x))), 0.5)));
}
}  // namespace

TEST_CASE("newton's damping rules, by hand") {
  const optim::NewtonOptions o;  // hyper_lr β = 0.1, damping_start 0.1, damping_min 1e-3
  CHECK(optim::Newton::next_damping(0.5, -1.0, o) == 0.5 * std::exp(-0.1));
  CHECK(optim::Newton::next_damping(0.5, 1.0, o) == 0.5 * std::exp(0.1));
  CHECK(optim::Newton::next_damping(0.5, std::nan(""), o) == 0.5);
  CHECK(optim::Newton::next_damping(1.05e-3, -1.0, o) == 0.0);  // below damping_min: pure steps again
  CHECK(optim::Newton::reduction_ratio(-0.3, -1.2) == 0.25);
  CHECK(std::isnan(optim::Newton::reduction_ratio(-0.3, 0.0)));              // no decrease promised
  CHECK(std::isnan(optim::Newton::reduction_ratio(-1e-15, -1e-14, 1e-13)));  // within J's rounding error
  CHECK(optim::Newton::reduction_ratio(std::nan(""), -1.0) < 0.0);

  SUBCASE("a quadratic: ρ = 1, μ stays 0, every step is the pure step (here with lr 1/2)") {
    const Quadratic q({4, 1, 0, 1, 3, 1, 0, 1, 2}, {1, 2, 3});
    Tensor x = column({5.0, -3.0, 2.0});
    optim::Newton opt({{"x", x}}, {.lr = 0.5});
    for (int t = 0; t < 4; ++t) {
      Vec before = values_of(x), g = q.gradient(before);
      opt.step(optim::Optimizer::LossFn([&] { return q.loss(x); }));
      Vec step = values_of(x);
      for (std::size_t i = 0; i < 3; ++i) step[i] = 2.0 * (before[i] - step[i]);  // = A^-1 g
      Vec ag = q.gradient(step);
      for (std::size_t i = 0; i < 3; ++i) CHECK(ag[i] + q.b.at(i) == doctest::Approx(g[i]).epsilon(1e-12));
      if (t > 0) CHECK(opt.last_ratio() == doctest::Approx(1.0).epsilon(1e-10));
      CHECK(opt.damping() == 0.0);
      CHECK_FALSE(opt.undid_last_step());
    }
  }
  SUBCASE("a damped step on f = 2 x²: it stops short, the next gradient agrees, μ <- μ e^-β") {
    Tensor x = param({1.0});
    auto f = [&] { return ag::sum(ag::mul(ag::mul(x, x), 2.0)); };
    optim::Newton opt({{"x", x}}, {.damping = 0.5});
    opt.step(optim::Optimizer::LossFn(f));
    CHECK(x.at(0) == doctest::Approx(1.0 - 4.0 / 4.5).epsilon(1e-14));  // x - f'/(f'' + μ)
    CHECK(opt.damping() == 0.5);
    opt.step(optim::Optimizer::LossFn(f));
    CHECK(opt.damping() == doctest::Approx(0.5 * std::exp(-0.1)).epsilon(1e-15));
  }
  SUBCASE("log cosh from x = 2: the pure step over-promises, is undone, damping starts and then grows") {
    Tensor x = param({2.0});
    auto f = [&] { return log_cosh(x); };
    optim::Newton opt({{"x", x}});
    const double t2 = std::tanh(2.0), s2 = 1.0 / (std::cosh(2.0) * std::cosh(2.0));
    const double x1 = 2.0 - t2 / s2;  // the pure step: -11.64
    opt.step(optim::Optimizer::LossFn(f));
    CHECK(x.at(0) == doctest::Approx(x1).epsilon(1e-12));
    // Next call: ρ = [f(x1) - f(2)] / (-½ f'(2)² / f''(2)), far below 1/4.
    const double rho = (std::log(std::cosh(x1)) - std::log(std::cosh(2.0))) / (-0.5 * t2 * t2 / s2);
    double loss = opt.step(optim::Optimizer::LossFn(f));
    CHECK(opt.last_ratio() == doctest::Approx(rho).epsilon(1e-10));
    CHECK(rho < -1.0);
    CHECK(opt.undid_last_step());
    CHECK(loss == doctest::Approx(std::log(std::cosh(2.0))).epsilon(1e-14));  // the step starts again at 2
    CHECK(opt.damping() == 0.1);
    const double x2 = 2.0 - t2 / (s2 + 0.1);  // damped, and still past 0: -3.65
    CHECK(x.at(0) == doctest::Approx(x2).epsilon(1e-12));
    // It went too far: f'(x2) = tanh(x2) and the step x2 - 2 point the same way (cos = +1): μ <- μ e^β.
    opt.step(optim::Optimizer::LossFn(f));
    CHECK_FALSE(opt.undid_last_step());
    CHECK(opt.damping() == doctest::Approx(0.1 * std::exp(0.1)).epsilon(1e-15));
    const double s_x2 = 1.0 / (std::cosh(x2) * std::cosh(x2));
    CHECK(x.at(0) == doctest::Approx(x2 - std::tanh(x2) / (s_x2 + 0.1 * std::exp(0.1))).epsilon(1e-12));
  }
  SUBCASE("options") {
    Tensor p = param({1.0});
    CHECK_THROWS_WITH_AS(optim::Newton({{"p", p}}, {.damping_start = 0.0}), doctest::Contains("newton: damping_start"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Newton({{"p", p}}, {.damping_min = 1.0}),
                         doctest::Contains("damping_min must be <= damping_start"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Newton({{"p", p}}, {.hyper_lr = -1.0}), doctest::Contains("newton: hyper_lr"),
                         std::invalid_argument);
  }
}

TEST_CASE("newton on mini-batches of a small logistic regression: adaptive damping converges, pure steps do not") {
  // 3 classes, 20 features, 600 noisy samples; batches of 20 hold fewer samples than the 63 parameters, so
  // each pure step fits its batch exactly.
  ag::Generator gen(3);
  const std::size_t n = 600, d = 20, k = 3, batch = 20;
  Tensor x = Tensor::randn(ag::Shape{n, d}, gen, 0.0, 1.0, DType::f64);
  Tensor truth = Tensor::randn(ag::Shape{d, k}, gen, 0.0, 1.0, DType::f64);
  std::vector<std::int32_t> labels(n);
  for (std::size_t i = 0; i < n; ++i) {
    double best = -1e300;
    for (std::size_t c = 0; c < k; ++c) {
      double score = 2.0 * gen.normal();
      for (std::size_t j = 0; j < d; ++j) score += x.at(i * d + j) * truth.at(j * k + c);
      if (score > best) best = score, labels[i] = static_cast<std::int32_t>(c);
    }
  }
  auto make = [&] {
    Tensor w = Tensor::zeros(ag::Shape{d, k}, DType::f64), b = Tensor::zeros(ag::Shape{k}, DType::f64);
    w.set_requires_grad();
    b.set_requires_grad();
    return std::pair{w, b};
  };
  auto full_loss = [&](const Tensor& w, const Tensor& b) {
    ag::NoGradGuard no_grad;
    return ag::cross_entropy(ag::add(ag::matmul(x, w), b), labels).item();
  };
  // The optimum of the full problem (Newton on all 600 samples).
  auto optimum_pair = make();
  Tensor& w_star = optimum_pair.first;
  Tensor& b_star = optimum_pair.second;
  optim::Newton exact({{"w", w_star}, {"b", b_star}}, {.adaptive = false});
  for (int t = 0; t < 12; ++t) {
    exact.step(
        optim::Optimizer::LossFn([&] { return ag::cross_entropy(ag::add(ag::matmul(x, w_star), b_star), labels); }));
  }
  const double optimum = full_loss(w_star, b_star);

  std::vector<std::pair<Tensor, std::vector<std::int32_t>>> batches;
  const Vec all = x.to_vector();
  for (std::size_t start = 0; start < n; start += batch) {
    Vec rows(all.begin() + static_cast<std::ptrdiff_t>(start * d),
             all.begin() + static_cast<std::ptrdiff_t>((start + batch) * d));
    batches.emplace_back(Tensor::from_data(ag::Shape{batch, d}, std::span<const double>(rows)),
                         std::vector<std::int32_t>(labels.begin() + static_cast<std::ptrdiff_t>(start),
                                                   labels.begin() + static_cast<std::ptrdiff_t>(start + batch)));
  }
  auto train = [&](optim::Newton& opt, Tensor& w, Tensor& b, std::size_t from, std::size_t steps) {
    for (std::size_t t = from; t < from + steps; ++t) {
      const auto& batch = batches[t % batches.size()];
      const Tensor& xb = batch.first;
      const std::vector<std::int32_t>& yb = batch.second;
      opt.step(optim::Optimizer::LossFn([&] { return ag::cross_entropy(ag::add(ag::matmul(xb, w), b), yb); }));
    }
  };
  auto [w, b] = make();
  optim::Newton adaptive({{"w", w}, {"b", b}});
  train(adaptive, w, b, 0, 90);
  // Half-way, a copy resumes from the state and stays bit-identical.
  Tensor w2 = w.clone(), b2 = b.clone();
  w2.set_requires_grad();
  b2.set_requires_grad();
  optim::Newton resumed({{"w", w2}, {"b", b2}});
  resumed.load_state(adaptive.state());
  train(adaptive, w, b, 90, 90);
  train(resumed, w2, b2, 90, 90);
  CHECK(bit_identical(w, w2));
  CHECK(bit_identical(b, b2));

  auto [wp, bp] = make();
  optim::Newton pure({{"w", wp}, {"b", bp}}, {.adaptive = false});
  train(pure, wp, bp, 0, 180);
  const double adaptive_loss = full_loss(w, b), pure_loss = full_loss(wp, bp);
  MESSAGE("full-data loss after 6 epochs of batches of 20: optimum " << optimum << ", adaptive " << adaptive_loss
                                                                   << " (μ = " << adaptive.damping() << "), pure "
                                                                   << pure_loss);
  CHECK(adaptive.damping() > 0.0);
  CHECK(adaptive_loss < optimum + 0.1);
  CHECK(!(pure_loss < optimum + 1.0));  // NaN or far off
}

// ================================================================ round two: AdamW, Adamax, AdaBelief, Yogi, RAdam, Adadelta
// Each against its update written out from the formula (torch.optim's documented update where torch has
// the method; the paper's algorithm otherwise), on the hand-set gradient sequence kGrads.

TEST_CASE("adamw (Loshchilov & Hutter; torch.optim.AdamW): Adam by its own name, decoupled λ = 1e-2 by default") {
  Tensor w = param(kW0);
  auto by_name = optim::make_optimizer("adamw", {{"w", w}});
  CHECK(by_name->name() == "adamw");
  const optim::AdamOptions& d = dynamic_cast<optim::AdamW&>(*by_name).options();
  CHECK(d.lr == 1e-3);
  CHECK(d.beta1 == 0.9);
  CHECK(d.beta2 == 0.999);
  CHECK(d.eps == 1e-8);
  CHECK(d.weight_decay == 1e-2);
  CHECK(d.weight_decay_mode == optim::WeightDecay::decoupled);
  CHECK(optim::AdamW({{"w", w}}).name() == "adamw");

  // torch: w <- w (1 - lr λ); m, v as Adam; w <- w - lr m̂ / (sqrt(v̂) + ε).
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  optim::AdamOptions o = optim::AdamW::default_options();
  o.lr = lr;
  o.weight_decay = wd;
  optim::AdamW opt({{"w", w}}, o);
  Vec m(3, 0.0), v(3, 0.0);
  follow(opt, w, [&](Vec& x, const Vec& g, int t) {
    for (std::size_t i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      x[i] = (1 - lr * wd) * x[i] - lr * mh / (std::sqrt(vh) + eps);
    }
  });
  CHECK(entry(opt.state(), "optimizer/adamw").item() == 1.0);
}

TEST_CASE("adamax (Kingma & Ba §7.1; torch.optim.Adamax): u <- max(β2 u, |g| + ε), w <- w - lr m / ((1 - β1^t) u)") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.5, eps = 1e-2;  // β2 = 0.5: the maximum switches sides; a visible ε
  Tensor w = param(kW0);
  Vec m(3, 0.0), u(3, 0.0);
  SUBCASE("plain") {
    optim::Adamax opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      for (std::size_t i = 0; i < 3; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        u[i] = std::max(b2 * u[i], std::abs(g[i]) + eps);
        x[i] = x[i] - lr / (1 - std::pow(b1, t)) * m[i] / u[i];
      }
    });
    check_close(entry(opt.state(), "state/w/exp_inf"), u);
    CHECK(entry(opt.state(), "state/w/step").item() == 3.0);
  }
  SUBCASE("coupled weight decay (torch's): g + λ w in m and u") {
    const double wd = 0.1;
    optim::Adamax opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      for (std::size_t i = 0; i < 3; ++i) {
        double gd = g[i] + wd * x[i];
        m[i] = b1 * m[i] + (1 - b1) * gd;
        u[i] = std::max(b2 * u[i], std::abs(gd) + eps);
        x[i] = x[i] - lr / (1 - std::pow(b1, t)) * m[i] / u[i];
      }
    });
  }
  CHECK(optim::make_optimizer("adamax", {{"w", param(kW0)}})->lr() == 2e-3);
}

TEST_CASE("adabelief (Zhuang et al. 2020 Alg. 2): s <- β2 s + (1 - β2)(g - m)^2 + ε, w <- w - lr m̂ / (sqrt(ŝ) + ε)") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-3;  // a large ε, so both of its places show
  Tensor w = param(kW0);
  Vec m(3, 0.0), s(3, 0.0);
  auto advance = [&](Vec& x, const Vec& g, int t, double shrink) {
    for (std::size_t i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      s[i] = b2 * s[i] + (1 - b2) * (g[i] - m[i]) * (g[i] - m[i]) + eps;
      double mh = m[i] / (1 - std::pow(b1, t)), sh = s[i] / (1 - std::pow(b2, t));
      x[i] = shrink * x[i] - lr * mh / (std::sqrt(sh) + eps);
    }
  };
  SUBCASE("plain") {
    optim::AdaBelief opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { advance(x, g, t, 1.0); });
    check_close(entry(opt.state(), "state/w/exp_avg_var"), s);
  }
  SUBCASE("decoupled weight decay (the official package's weight_decouple)") {
    const double wd = 0.1;
    optim::AdaBelief opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                                      .weight_decay_mode = optim::WeightDecay::decoupled});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { advance(x, g, t, 1 - lr * wd); });
  }
  CHECK(dynamic_cast<optim::AdaBelief&>(*optim::make_optimizer("adabelief", {{"w", param(kW0)}})).options().eps == 1e-16);
}

TEST_CASE("yogi (Zaheer et al. 2018 Alg. 2): v <- v - (1 - β2) sign(v - g^2) g^2, w <- w - lr m / (sqrt(v) + ε)") {
  const double lr = 0.01, b1 = 0.9, eps = 1e-3;
  Tensor w = param(kW0);
  Vec m(3, 0.0), v(3, 0.0);
  auto sign = [](double a) { return double(a > 0) - double(a < 0); };
  SUBCASE("the paper: no bias correction; β2 = 0.5 so that v also moves down (element 0, step 2)") {
    const double b2 = 0.5;
    int downs = 0;
    optim::Yogi opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int) {
      for (std::size_t i = 0; i < 3; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        downs += v[i] > g[i] * g[i];
        v[i] = v[i] - (1 - b2) * sign(v[i] - g[i] * g[i]) * g[i] * g[i];
        x[i] = x[i] - lr * m[i] / (std::sqrt(v[i]) + eps);
      }
    });
    CHECK(downs > 0);
    check_close(entry(opt.state(), "state/w/exp_avg_sq"), v);
  }
  SUBCASE("bias_correction = true (TensorFlow Addons, torch-optimizer), coupled weight decay") {
    const double b2 = 0.999, wd = 0.1;
    optim::Yogi opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .bias_correction = true,
                                 .weight_decay = wd});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) {
      for (std::size_t i = 0; i < 3; ++i) {
        double gd = g[i] + wd * x[i];
        m[i] = b1 * m[i] + (1 - b1) * gd;
        v[i] = v[i] - (1 - b2) * sign(v[i] - gd * gd) * gd * gd;
        double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
        x[i] = x[i] - lr * mh / (std::sqrt(vh) + eps);
      }
    });
  }
  auto by_name = optim::make_optimizer("yogi", {{"w", param(kW0)}});
  const auto& d = dynamic_cast<optim::Yogi&>(*by_name).options();
  CHECK(d.lr == 1e-2);
  CHECK(d.eps == 1e-3);
  CHECK_FALSE(d.bias_correction);
}

TEST_CASE("radam (Liu et al. 2020; torch.optim.RAdam): momentum SGD while ρt <= 5, then the rectified Adam step") {
  // torch's documented update, 8 steps (kGrads, cycled) so that both branches run: with β2 = 0.999, ρ1..ρ5 <= 5 < ρ6.
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-2;  // a large ε, so that its place shows
  const double wd = 0.1;
  for (bool decoupled : {false, true}) {
    INFO("decoupled " << decoupled);
    Tensor w = param(kW0);
    optim::RAdam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                                  .weight_decay_mode = decoupled ? optim::WeightDecay::decoupled : optim::WeightDecay::coupled});
    Vec x = kW0, m(3, 0.0), v(3, 0.0);
    const double rho_inf = 2 / (1 - b2) - 1;
    int rectified = 0;
    for (int t = 1; t <= 8; ++t) {
      const Vec& g = kGrads[(t - 1) % 3];
      give_grad(w, g);
      opt.step();
      double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
      double rho_t = rho_inf - 2 * t * std::pow(b2, t) / bc2;
      for (std::size_t i = 0; i < 3; ++i) {
        double gd = decoupled ? g[i] : g[i] + wd * x[i];
        if (decoupled) x[i] *= 1 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * gd;
        v[i] = b2 * v[i] + (1 - b2) * gd * gd;
        double mh = m[i] / bc1;
        if (rho_t > 5) {
          double r = std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t));
          x[i] -= lr * mh * r * std::sqrt(bc2) / (std::sqrt(v[i]) + eps);
        } else {
          x[i] -= lr * mh;
        }
      }
      rectified += rho_t > 5;
      INFO("step " << t << ", ρt = " << rho_t);
      check_close(w, x);
    }
    CHECK(rectified == 3);  // steps 6, 7, 8
  }
}

TEST_CASE("adadelta (Zeiler 2012 Alg. 1; torch.optim.Adadelta): Δ = sqrt(u + ε) / sqrt(v + ε) g, w <- w - lr Δ") {
  const double lr = 0.5, rho = 0.9, eps = 1e-2;
  Tensor w = param(kW0);
  Vec v(3, 0.0), u(3, 0.0);
  auto advance = [&](Vec& x, const Vec& g, double shrink) {
    for (std::size_t i = 0; i < 3; ++i) {
      v[i] = rho * v[i] + (1 - rho) * g[i] * g[i];
      double delta = std::sqrt(u[i] + eps) / std::sqrt(v[i] + eps) * g[i];
      u[i] = rho * u[i] + (1 - rho) * delta * delta;
      x[i] = shrink * x[i] - lr * delta;
    }
  };
  SUBCASE("plain") {
    optim::Adadelta opt({{"w", w}}, {.lr = lr, .rho = rho, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 1.0); });
    check_close(entry(opt.state(), "state/w/square_avg"), v);
    check_close(entry(opt.state(), "state/w/acc_delta"), u);
  }
  SUBCASE("decoupled weight decay") {
    const double wd = 0.1;
    optim::Adadelta opt({{"w", w}}, {.lr = lr, .rho = rho, .eps = eps, .weight_decay = wd,
                                     .weight_decay_mode = optim::WeightDecay::decoupled});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 1 - lr * wd); });
  }
  auto by_name = optim::make_optimizer("adadelta", {{"w", param(kW0)}});
  const auto& d = dynamic_cast<optim::Adadelta&>(*by_name).options();
  CHECK(d.lr == 1.0);
  CHECK(d.rho == 0.9);
  CHECK(d.eps == 1e-6);
}

// ================================================================ L-BFGS

namespace {
/// 2×2 matrices, row-major, for L-BFGS by hand.
using Mat2 = std::array<double, 4>;
Vec times(const Mat2& m, const Vec& v) { return {m[0] * v[0] + m[1] * v[1], m[2] * v[0] + m[3] * v[1]}; }
double inner(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
/// BFGS's inverse update H+ = Vᵀ H V + ρ s sᵀ, V = I - ρ y sᵀ, ρ = 1 / y·s (N&W eq. 6.17).
Mat2 bfgs_update(const Mat2& h, const Vec& s, const Vec& y) {
  const double rho = 1 / inner(y, s);
  const Mat2 v{1 - rho * y[0] * s[0], -rho * y[0] * s[1], -rho * y[1] * s[0], 1 - rho * y[1] * s[1]};
  Mat2 out{};
  for (std::size_t i = 0; i < 2; ++i) {
    for (std::size_t j = 0; j < 2; ++j) {
      double sum = rho * s[i] * s[j];
      for (std::size_t k = 0; k < 2; ++k) {
        for (std::size_t l = 0; l < 2; ++l) sum += v[k * 2 + i] * h[k * 2 + l] * v[l * 2 + j];
      }
      out[i * 2 + j] = sum;
    }
  }
  return out;
}

/// A closure over `loss_fn` that counts its calls.
optim::Optimizer::Closure counted(optim::Optimizer& opt, const std::function<Tensor()>& loss_fn, int& calls) {
  return [&opt, loss_fn, &calls] {
    ++calls;
    opt.zero_grad();
    Tensor loss = loss_fn();
    ag::backward(loss);
    return loss.item();
  };
}

double state_scalar(const optim::Optimizer& opt, const std::string& name) { return entry(opt.state(), name).item(); }
}  // namespace

TEST_CASE("lbfgs (N&W Alg. 7.4-7.5; torch.optim.LBFGS) by hand: one step of max_iter = 1, 2, 3 on ½ xᵀAx - bᵀx") {
  // Iteration 1: t = min(1, 1/‖g‖₁) lr along -g. Iteration k > 1: y = g_k - g_{k-1}, s = t d, H_diag = y·s / y·y,
  // d = -H g with H the BFGS update of H_diag I by the pairs, oldest first (what the two-loop recursion
  // computes), t = lr. Coupled weight decay λ is the same quadratic with A + λ I.
  const Quadratic q({3, 1, 1, 2}, {1, 1});
  const Vec x0{1.0, -1.0};  // g0 = (1, -2): t0 = lr / 3
  const double lr = 0.8;
  for (double wd : {0.0, 0.5}) {
    INFO("weight_decay " << wd);
    const Mat2 a{3 + wd, 1, 1, 2 + wd};
    auto grad = [&](const Vec& x) { return Vec{times(a, x)[0] - 1, times(a, x)[1] - 1}; };
    std::vector<Vec> xs{x0}, ss, ys;
    std::vector<double> h_diag{1.0};
    const Vec g0 = grad(x0);
    const double t0 = std::min(1.0, 1 / (std::abs(g0[0]) + std::abs(g0[1]))) * lr;
    ss.push_back({-t0 * g0[0], -t0 * g0[1]});
    xs.push_back({x0[0] + ss[0][0], x0[1] + ss[0][1]});
    for (std::size_t k = 1; k < 3; ++k) {
      const Vec g = grad(xs[k]), g_prev = grad(xs[k - 1]);
      ys.push_back({g[0] - g_prev[0], g[1] - g_prev[1]});
      h_diag.push_back(inner(ss.back(), ys.back()) / inner(ys.back(), ys.back()));
      Mat2 h{h_diag.back(), 0, 0, h_diag.back()};
      for (std::size_t i = 0; i < ys.size(); ++i) h = bfgs_update(h, ss[i], ys[i]);
      const Vec hg = times(h, g);
      ss.push_back({-lr * hg[0], -lr * hg[1]});
      xs.push_back({xs[k][0] + ss[k][0], xs[k][1] + ss[k][1]});
    }
    for (std::size_t iterations = 1; iterations <= 3; ++iterations) {
      INFO("max_iter " << iterations);
      Tensor x = column(x0);
      // max_eval: the default max_iter * 5 / 4 would end max_iter = 2 and 3 an iteration early (2 and 3 calls).
      optim::LBFGS opt({{"x", x}}, {.lr = lr, .max_iter = iterations, .max_eval = 10, .weight_decay = wd});
      int calls = 0;
      const double loss = opt.step(counted(opt, [&] { return q.loss(x); }, calls));
      check_close(x, xs[iterations], 1e-12);
      CHECK(loss == q.value(x0));  // the closure's first loss, without the L2 term
      CHECK(calls == static_cast<int>(iterations));  // one per iteration but the last, plus the first
      CHECK(opt.iterations() == static_cast<std::int64_t>(iterations));
      CHECK(opt.history_count() == iterations - 1);
      CHECK(state_scalar(opt, "global/H_diag") == doctest::Approx(h_diag[iterations - 1]).epsilon(1e-12));
      CHECK(state_scalar(opt, "global/t") == doctest::Approx(iterations == 1 ? t0 : lr).epsilon(1e-15));
      // d of the last iteration: the step it took over t.
      const double t = iterations == 1 ? t0 : lr;
      check_close(entry(opt.state(), "state/x/d"), {ss[iterations - 1][0] / t, ss[iterations - 1][1] / t}, 1e-12);
    }
  }
}

TEST_CASE("lbfgs: a pair is kept only if y·s > 1e-10 (on a linear f, y = 0: steepest descent with t = lr)") {
  Tensor x = param({0.5, -0.5});
  const Tensor c = Tensor::from_data(ag::Shape{2}, {0.25, -1.0}, DType::f64);
  optim::LBFGS opt({{"x", x}}, {.lr = 0.1, .max_iter = 3, .max_eval = 10});
  opt.step(optim::Optimizer::LossFn([&] { return ag::sum(ag::mul(c, x)); }));
  // t0 = min(1, 1 / 1.25) 0.1 = 0.08, then two steps of 0.1 along -c.
  check_close(x, {0.5 - 0.28 * 0.25, -0.5 + 0.28 * 1.0});
  CHECK(opt.history_count() == 0);
  CHECK(state_scalar(opt, "global/H_diag") == 1.0);
}

TEST_CASE("lbfgs: the cubic interpolation of the line search") {
  // On a quadratic φ(t) = 3 (t - 0.7)² + 1 the cubic through two points is φ itself: its minimum, exactly.
  auto phi = [](double t) { return 3 * (t - 0.7) * (t - 0.7) + 1; };
  auto slope = [](double t) { return 6 * (t - 0.7); };
  CHECK(optim::LBFGS::cubic_minimum(0, phi(0), slope(0), 2, phi(2), slope(2), 0, 2) == doctest::Approx(0.7).epsilon(1e-15));
  CHECK(optim::LBFGS::cubic_minimum(2, phi(2), slope(2), 0.1, phi(0.1), slope(0.1), 0.1, 2) ==
        doctest::Approx(0.7).epsilon(1e-15));
  // Clamped to the bounds (extrapolation from [0, 0.2] limited to [0.202, 0.5]).
  CHECK(optim::LBFGS::cubic_minimum(0, phi(0), slope(0), 0.2, phi(0.2), slope(0.2), 0.202, 0.5) == 0.5);
  // φ = t³ + t on [-1, 1] has no minimum (d1² < φ'a φ'b): the middle of the bounds.
  CHECK(optim::LBFGS::cubic_minimum(-1, -2, 4, 1, 2, 4, -1, 1) == 0.0);
}

TEST_CASE("lbfgs with strong Wolfe on an n-dimensional quadratic: both conditions hold; exact searches end in n iterations") {
  // Distinct eigenvalues, n = 6. One iteration per step(), so that every accepted step can be checked.
  const std::size_t n = 6;
  Vec a(n * n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      a[i * n + j] = 1.0 / (1.0 + std::abs(double(i) - double(j))) + (i == j ? double(i + 1) : 0.0);
    }
  }
  const Quadratic q(a, {1, -1, 2, 0.5, -2, 1});
  const Vec minimum = q.minimum();
  // lr = 10: every first trial overshoots the minimum along d, and the zoom's cubic lands on it exactly, so
  // every search is exact: then L-BFGS's directions are conjugate (they are CG's), and the minimum is reached
  // after n iterations (N&W Thm. 6.4 with §7.2), not before. lr = 1 (the default): t = 1 is accepted as soon
  // as it meets both conditions, and the searches are not exact.
  for (double lr : {10.0, 1.0}) {
    INFO("lr " << lr);
    Tensor x = column(Vec(n, 0.0));
    optim::LBFGS opt({{"x", x}}, {.lr = lr, .max_iter = 1, .line_search = optim::LineSearch::strong_wolfe});
    double worst_exactness = 0;
    for (std::size_t k = 1; k <= n; ++k) {
      INFO("iteration " << k);
      const Vec x0 = values_of(x), g0 = q.gradient(x0);
      opt.step(optim::Optimizer::LossFn([&] { return q.loss(x); }));
      const Vec x1 = values_of(x), g1 = q.gradient(x1);
      Vec p(n);
      for (std::size_t i = 0; i < n; ++i) p[i] = x1[i] - x0[i];
      CHECK(q.value(x1) <= q.value(x0) + 1e-4 * inner(g0, p));  // sufficient decrease
      CHECK(std::abs(inner(g1, p)) <= 0.9 * std::abs(inner(g0, p)));  // curvature
      worst_exactness = std::max(worst_exactness, std::abs(inner(g1, p) / inner(g0, p)));
      double error = 0;
      for (std::size_t i = 0; i < n; ++i) error = std::max(error, std::abs(x1[i] - minimum[i]));
      if (lr == 10.0 && k == n - 1) CHECK(error > 1e-3);
      if (lr == 10.0 && k == n) CHECK(error < 1e-10);
    }
    if (lr == 10.0) {
      CHECK(worst_exactness < 1e-12);
      CHECK(opt.func_evals() == static_cast<std::int64_t>(n * 3));  // per step: g, the overshoot, the minimum
    } else {
      CHECK(worst_exactness > 0.1);
    }
  }
}

namespace {
Tensor rosenbrock_of(const Tensor& p) {
  const Tensor pick_x = Tensor::from_data(ag::Shape{2}, {1.0, 0.0}, DType::f64);
  const Tensor pick_y = Tensor::from_data(ag::Shape{2}, {0.0, 1.0}, DType::f64);
  Tensor px = ag::sum(ag::mul(p, pick_x)), py = ag::sum(ag::mul(p, pick_y));
  Tensor a = ag::sub(1.0, px), b = ag::sub(py, ag::mul(px, px));
  return ag::add(ag::mul(a, a), ag::mul(ag::mul(b, b), 100.0));
}
}  // namespace

TEST_CASE("lbfgs with strong Wolfe on Rosenbrock from (-1.2, 1)") {
  auto error_of = [](const Tensor& p) { return std::max(std::abs(p.at(0) - 1.0), std::abs(p.at(1) - 1.0)); };
  SUBCASE("one iteration per step: (1, 1) to 1e-6 within 40 steps") {
    Tensor p = param({-1.2, 1.0});
    auto opt = optim::make_optimizer("lbfgs(line_search=strong_wolfe,max_iter=1,tolerance_change=1e-15)", {{"p", p}});
    int steps = 0;
    while (steps < 40 && error_of(p) > 1e-6) {
      opt->step(optim::Optimizer::LossFn([&] { return rosenbrock_of(p); }));
      ++steps;
    }
    INFO("steps " << steps << ", error " << error_of(p));
    CHECK(error_of(p) <= 1e-6);
  }
  SUBCASE("max_iter = 20: two steps") {
    Tensor p = param({-1.2, 1.0});
    auto opt = optim::make_optimizer("lbfgs(line_search=strong_wolfe,tolerance_change=1e-15)", {{"p", p}});
    for (int t = 0; t < 2; ++t) opt->step(optim::Optimizer::LossFn([&] { return rosenbrock_of(p); }));
    CHECK(error_of(p) <= 1e-6);
  }
  SUBCASE("torch's tolerance_change = 1e-9 ends the iterations once g·d > -1e-9, short of 1e-6 in this flat valley") {
    Tensor p = param({-1.2, 1.0});
    optim::LBFGS opt({{"p", p}}, {.line_search = optim::LineSearch::strong_wolfe});
    for (int t = 0; t < 10; ++t) opt.step(optim::Optimizer::LossFn([&] { return rosenbrock_of(p); }));
    const std::int64_t evals = opt.func_evals();
    opt.step(optim::Optimizer::LossFn([&] { return rosenbrock_of(p); }));
    CHECK(opt.func_evals() == evals + 1);  // the first evaluation, and no further iteration
    CHECK(error_of(p) > 1e-6);
    CHECK(error_of(p) < 1e-4);
  }
}

TEST_CASE("lbfgs stops: at a stationary point after one call; max|g| <= tolerance_grad; max_eval calls") {
  const Quadratic q({2, 0, 0, 4}, {2, 4});  // x* = (1, 1), where g = 0 exactly
  SUBCASE("a stationary point: the closure is called once, nothing moves") {
    Tensor x = column({1.0, 1.0});
    optim::LBFGS opt({{"x", x}});
    int calls = 0;
    CHECK(opt.step(counted(opt, [&] { return q.loss(x); }, calls)) == -3.0);
    CHECK(calls == 1);
    CHECK(values_of(x) == Vec{1.0, 1.0});
    CHECK(opt.iterations() == 0);
    CHECK(opt.func_evals() == 1);
  }
  SUBCASE("tolerance_grad: max|g| = 4 <= 4 stops before the first iteration") {
    Tensor x = column({0.0, 0.0});
    optim::LBFGS opt({{"x", x}}, {.tolerance_grad = 4.0});
    int calls = 0;
    opt.step(counted(opt, [&] { return q.loss(x); }, calls));
    CHECK(calls == 1);
    CHECK(values_of(x) == Vec{0.0, 0.0});
  }
  SUBCASE("line_search = none: min(max_eval, max_iter) calls") {
    struct Case {
      std::size_t max_iter, max_eval;
      int calls;
    };
    // max_eval = 0: max_iter * 5 / 4 (25 for 20, 5 for 4, 2 for 2: one iteration, as torch's).
    for (Case c : {Case{20, 7, 7}, Case{20, 0, 20}, Case{4, 0, 4}, Case{2, 0, 2}, Case{3, 2, 2}, Case{5, 100, 5}}) {
      INFO("max_iter " << c.max_iter << ", max_eval " << c.max_eval);
      Tensor x = column({20.0, -20.0});
      optim::LBFGS opt({{"x", x}}, {.lr = 0.01, .max_iter = c.max_iter, .max_eval = c.max_eval});
      int calls = 0;
      opt.step(counted(opt, [&] { return q.loss(x); }, calls));
      CHECK(calls == c.calls);
      CHECK(opt.func_evals() == c.calls);
    }
  }
  SUBCASE("strong_wolfe: the count is tested after each iteration, so a line search may pass max_eval") {
    // lr = 1000: each search takes two calls (the overshoot, then the minimum), after the first call.
    for (std::pair<int, int> c : {std::pair{2, 3}, std::pair{3, 3}, std::pair{4, 5}, std::pair{6, 7}}) {
      const int max_eval = c.first, calls_expected = c.second;
      INFO("max_eval " << max_eval);
      // In 2 dimensions exact searches end after 2 iterations: 3 dimensions.
      const Quadratic wide({4, 1, 0, 1, 3, 1, 0, 1, 2}, {1, 2, 3});
      Tensor y = column({20.0, -20.0, 5.0});
      optim::LBFGS opt({{"y", y}}, {.lr = 1000, .max_eval = static_cast<std::size_t>(max_eval),
                                    .line_search = optim::LineSearch::strong_wolfe});
      int calls = 0;
      opt.step(counted(opt, [&] { return wide.loss(y); }, calls));
      CHECK(calls == calls_expected);
      CHECK(opt.func_evals() == calls_expected);
    }
  }
}

TEST_CASE("lbfgs options: bad values are refused naming the option; one group, one dtype; step() needs the closure") {
  Tensor w = param({1.0, 2.0});
  std::vector<nn::NamedTensor> p{{"w", w}};
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.lr = -1}), doctest::Contains("lbfgs: lr must be >= 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.max_iter = 0}), doctest::Contains("lbfgs: max_iter must be >= 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.history_size = 0}), doctest::Contains("lbfgs: history_size must be >= 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.tolerance_grad = -1e-7}), doctest::Contains("lbfgs: tolerance_grad"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.tolerance_change = std::nan("")}), doctest::Contains("lbfgs: tolerance_change"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.weight_decay = -1}), doctest::Contains("lbfgs: weight_decay"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::LBFGS(p, {.weight_decay = 0.1, .weight_decay_mode = optim::WeightDecay::decoupled}),
                       doctest::Contains("lbfgs: decoupled must be false"), std::invalid_argument);
  // By spec: the table's ranges and choices.
  CHECK_THROWS_WITH_AS(optim::make_optimizer("lbfgs(max_iter=0)", p), doctest::Contains("lbfgs: max_iter must be"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("lbfgs(line_search=armijo)", p),
                       doctest::Contains("line_search must be one of none | strong_wolfe, got 'armijo'"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("lbfgs(decoupled=true)", p), doctest::Contains("lbfgs: decoupled"),
                       config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("lbfgs(history_size=0)", p), doctest::Contains("lbfgs: history_size"),
                       config::SpecError);
  auto by_name = optim::make_optimizer("lbfgs(max_iter=8,line_search=strong_wolfe)", p);
  const optim::LBFGSOptions& o = dynamic_cast<optim::LBFGS&>(*by_name).options();
  CHECK(o.lr == 1.0);  // torch's defaults
  CHECK(o.evaluations() == 10);
  CHECK(o.tolerance_grad == 1e-7);
  CHECK(o.tolerance_change == 1e-9);
  CHECK(o.history_size == 100);
  CHECK(o.line_search == optim::LineSearch::strong_wolfe);
  CHECK(optim::LBFGSOptions{}.evaluations() == 25);
  // One group, one dtype.
  Tensor v = param({3.0});
  CHECK_THROWS_WITH_AS(optim::LBFGS({{.params = p}, {.params = {{"v", v}}}}),
                       doctest::Contains("lbfgs: one parameter group only"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      optim::make_optimizer(config::parse_spec("lbfgs"), std::vector<optim::GroupSpec>{{p}, {{{"v", v}}}}),
      doctest::Contains("one parameter group only"), std::invalid_argument);
  Tensor v32 = param({3.0}, DType::f32);
  CHECK_THROWS_WITH_AS(optim::LBFGS({{"w", w}, {"v", v32}}),
                       doctest::Contains("lbfgs: every parameter must have one dtype: 'w' is f64, 'v' is f32"),
                       std::invalid_argument);
  optim::LBFGS opt(p);
  give_grad(w, {1.0, 1.0});
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("lbfgs: step() needs the loss"), std::logic_error);
  // The rings' rows are the history_size they were made with.
  opt.step(optim::Optimizer::LossFn([&] { return ag::sum(ag::mul(w, w)); }));
  opt.set_options(0, {.history_size = 4});
  CHECK_THROWS_WITH_AS(opt.step(optim::Optimizer::LossFn([&] { return ag::sum(ag::mul(w, w)); })),
                       doctest::Contains("lbfgs: history_size is 4, but the history kept has 100 rows"), std::logic_error);
}

TEST_CASE("lbfgs state: the ring buffer wrapped (history_size = 2) resumes bit for bit; bad scalars are refused") {
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const char* search : {"none", "strong_wolfe"}) {
      INFO(ag::dtype_name(dtype) << " " << search);
      const std::string spec = std::string("lbfgs(lr=0.5,history_size=2,max_iter=3,weight_decay=0.01,line_search=") +
                               search + ")";
      Tensor a = param({0.8, -0.4}, dtype), b = param({1.1, 0.3, -0.9}, dtype);
      auto opt = optim::make_optimizer(spec, {{"a", a}, {"b", b}});
      auto loss_of = [](Tensor& x, Tensor& y) { return optim::Optimizer::LossFn([&x, &y] { return quartic({x, y}); }); };
      for (int t = 0; t < 5; ++t) opt->step(loss_of(a, b));
      CHECK(state_scalar(*opt, "global/history_count") == 2.0);
      CHECK(state_scalar(*opt, "global/n_iter") > 3.0);  // more pairs than rows: the ring has wrapped
      CHECK(entry(opt->state(), "state/b/old_stps").shape() == ag::Shape{2, 3});
      CHECK(entry(opt->state(), "state/b/d").shape() == ag::Shape{3});

      std::string path = temp_path("lbfgs_ring.ckpt");
      nn::save_tensors(path, opt->state());
      std::vector<nn::NamedTensor> loaded = nn::load_tensors(path);
      std::filesystem::remove(path);
      Tensor a2 = a.clone(), b2 = b.clone();
      a2.set_requires_grad();
      b2.set_requires_grad();
      auto resumed = optim::make_optimizer(spec, {{"a", a2}, {"b", b2}});
      resumed->load_state(loaded);
      for (int t = 0; t < 5; ++t) {
        opt->step(loss_of(a, b));
        resumed->step(loss_of(a2, b2));
      }
      CHECK(bit_identical(a, a2));
      CHECK(bit_identical(b, b2));
      CHECK(state_scalar(*opt, "global/func_evals") == state_scalar(*resumed, "global/func_evals"));

      // Another history_size: the rings' shape; scalars out of range.
      auto other = optim::make_optimizer("lbfgs(history_size=3)", {{"a", a2}, {"b", b2}});
      const std::string ring = fmt::format("state/a/old_dirs: {0}[2, 2] in the state, {0}[3, 2] for the parameter",
                                           ag::dtype_name(dtype));
      CHECK_THROWS_WITH_AS(other->load_state(loaded), doctest::Contains(ring.c_str()), std::runtime_error);
      std::vector<nn::NamedTensor> bad;
      for (const auto& [name, t] : loaded) {
        if (name == "global/history_count") {
          bad.emplace_back(name, Tensor::scalar(3.0, DType::f64));
        } else if (name == "global/H_diag") {
          bad.emplace_back(name, Tensor::scalar(-1.0, DType::f64));
        } else if (name == "global/history_start") {
          bad.emplace_back(name, Tensor::scalar(2.0, DType::f64));
        } else {
          bad.emplace_back(name, t);
        }
      }
      try {
        resumed->load_state(bad);
        FAIL("load_state accepted a broken state");
      } catch (const std::runtime_error& e) {
        std::string message = e.what();
        INFO(message);
        CHECK(message.find("global/history_count: 3 is outside [0, 2]") != std::string::npos);
        CHECK(message.find("global/history_start: 2 is outside [0, 1]") != std::string::npos);
        CHECK(message.find("global/H_diag: -1 is outside") != std::string::npos);
      }
    }
  }
}

// ================================================================ round three
// Each against its update written out from the formula (torch.optim's documented update where torch has
// the method or the form; the paper's algorithm otherwise), on the hand-set gradient sequence kGrads.

namespace {
double sign_of(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : x); }
void check_values(const Vec& x, const Vec& expected) {
  REQUIRE(x.size() == expected.size());
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(x[i] == doctest::Approx(expected[i]).epsilon(1e-13));
}
double norm_of(const Vec& x) {
  double s = 0;
  for (double e : x) s += e * e;
  return std::sqrt(s);
}
}  // namespace

TEST_CASE("rprop (torch.optim.Rprop): s × η+ while g prev > 0, × η- and g <- 0 when < 0; w <- w - s sign(g)") {
  // kGrads flips the signs of elements 0 and 1 at step 2 (they then rest at step 3, prev = 0) and keeps
  // element 2's, which then flips at step 3.
  const double lr = 0.1, eta_minus = 0.5, eta_plus = 1.2;
  Tensor w = param(kW0);
  Vec prev(3, 0.0), s(3, lr);
  auto advance = [&](Vec& x, const Vec& g, double s_min, double s_max, double coupled, double shrink) {
    for (std::size_t i = 0; i < 3; ++i) {
      double gi = g[i] + coupled * x[i];
      double p = gi * prev[i];
      if (p > 0) {
        s[i] = std::min(s[i] * eta_plus, s_max);
      } else if (p < 0) {
        s[i] = std::max(s[i] * eta_minus, s_min);
        gi = 0;
      } else {
        s[i] = std::clamp(s[i], s_min, s_max);
      }
      x[i] = shrink * x[i] - s[i] * sign_of(gi);
      prev[i] = gi;
    }
  };
  SUBCASE("plain: torch's step sizes (1e-6, 50)") {
    optim::Rprop opt({{"w", w}}, {.lr = lr, .eta_minus = eta_minus, .eta_plus = eta_plus});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 1e-6, 50, 0, 1); });
    check_close(entry(opt.state(), "state/w/step_size"), s);
    check_close(entry(opt.state(), "state/w/prev"), prev);
    check_values(s, {0.05, 0.05, 0.06});  // halved, halved, grown then halved
    CHECK(prev[2] == 0.0);
    CHECK(entry(opt.state(), "state/w/step").item() == 3.0);
  }
  SUBCASE("clamped: step_min = 0.07 stops the halving, step_max = 0.11 the growth") {
    optim::Rprop opt({{"w", w}}, {.lr = lr, .eta_minus = eta_minus, .eta_plus = eta_plus, .step_min = 0.07,
                                  .step_max = 0.11});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 0.07, 0.11, 0, 1); });
    CHECK(s == Vec{0.07, 0.07, 0.07});
  }
  SUBCASE("coupled weight decay (g + λ w, seen by the signs) and decoupled") {
    // λ = 0.5 is large enough to change the signs: with g + λ w elements 0 and 1 no longer flip at step 2.
    const double wd = 0.5;
    optim::Rprop coupled({{"w", w}}, {.lr = lr, .weight_decay = wd});
    follow(coupled, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 1e-6, 50, wd, 1); });
    check_values(s, {0.144, 0.144, 0.06});
    Tensor w2 = param(kW0);
    prev.assign(3, 0.0);
    s.assign(3, lr);
    optim::Rprop decoupled({{"w", w2}},
                           {.lr = lr, .weight_decay = wd, .weight_decay_mode = optim::WeightDecay::decoupled});
    follow(decoupled, w2, [&](Vec& x, const Vec& g, int) { advance(x, g, 1e-6, 50, 0, 1 - lr * wd); });
  }
  SUBCASE("the registered defaults are torch's; bad values are refused, naming the option") {
    auto by_name = optim::make_optimizer("rprop", {{"w", w}});
    const auto& d = dynamic_cast<optim::Rprop&>(*by_name).options();
    CHECK(d.lr == 0.01);
    CHECK(d.eta_minus == 0.5);
    CHECK(d.eta_plus == 1.2);
    CHECK(d.step_min == 1e-6);
    CHECK(d.step_max == 50.0);
    std::vector<nn::NamedTensor> p{{"w", w}};
    CHECK_THROWS_WITH_AS(optim::Rprop(p, {.eta_minus = 1.0}), doctest::Contains("rprop: eta_minus must be in (0, 1)"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Rprop(p, {.eta_plus = 1.0}), doctest::Contains("rprop: eta_plus must be > 1"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Rprop(p, {.step_min = 1.0, .step_max = 0.5}),
                         doctest::Contains("rprop: step_max must be >= step_min"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("rprop(eta_minus=0)", p), doctest::Contains("rprop: eta_minus"),
                         config::SpecError);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("rprop(eta_plus=0.9)", p), doctest::Contains("rprop: eta_plus"),
                         config::SpecError);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("rprop(step_max=0)", p), doctest::Contains("rprop: step_max"),
                         config::SpecError);
  }
}

TEST_CASE("lion (Chen et al. 2023): c = β1 m + (1 - β1) g, w <- w - lr (sign(c) + λ w), m <- β2 m + (1 - β2) g") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.99;
  Tensor w = param(kW0);
  Vec m(3, 0.0);
  auto advance = [&](Vec& x, const Vec& g, double coupled, double decay) {
    for (std::size_t i = 0; i < 3; ++i) {
      double gi = g[i] + coupled * x[i];
      double c = b1 * m[i] + (1 - b1) * gi;
      x[i] = x[i] - lr * (sign_of(c) + decay * x[i]);
      m[i] = b2 * m[i] + (1 - b2) * gi;
    }
  };
  SUBCASE("plain") {
    optim::Lion opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 0, 0); });
    check_close(entry(opt.state(), "state/w/exp_avg"), m);
  }
  SUBCASE("β1 = 0.99 against kGrads: the sign of c, not of g, moves w (element 0 at step 2)") {
    optim::Lion opt({{"w", w}}, {.lr = lr, .beta1 = 0.99, .beta2 = 0.5});
    Vec x = kW0, mm(3, 0.0);
    for (const Vec& g : kGrads) {
      give_grad(w, g);
      opt.step();
      for (std::size_t i = 0; i < 3; ++i) {
        x[i] -= lr * sign_of(0.99 * mm[i] + 0.01 * g[i]);
        mm[i] = 0.5 * mm[i] + 0.5 * g[i];
      }
      check_close(w, x);
    }
    // Element 0 goes down at step 2 although g_2 < 0, and up at step 3 although g_3 > 0.
    CHECK(w.at(0) == doctest::Approx(kW0[0] - lr - lr + lr));
  }
  SUBCASE("decoupled weight decay, the method's own: w <- (1 - lr λ) w - lr sign(c)") {
    const double wd = 0.5;
    optim::Lion opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .weight_decay = wd});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 0, wd); });
  }
  SUBCASE("decoupled=false: L2, g + λ w in c and m") {
    const double wd = 0.5;
    optim::Lion opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .weight_decay = wd,
                                 .weight_decay_mode = optim::WeightDecay::coupled});
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, wd, 0); });
  }
  SUBCASE("sign(0) = 0: no move; sign(NaN) = NaN: the NaN reaches w") {
    optim::Lion opt({{"w", w}}, {.lr = lr});
    give_grad(w, {0.0, std::nan(""), -1.0});
    opt.step();
    CHECK(w.at(0) == kW0[0]);
    CHECK(std::isnan(w.at(1)));
    CHECK(w.at(2) == kW0[2] + lr);
    CHECK(std::isnan(entry(opt.state(), "state/w/exp_avg").at(1)));
  }
  SUBCASE("registered defaults; options checked") {
    auto by_name = optim::make_optimizer("lion", {{"w", w}});
    const auto& d = dynamic_cast<optim::Lion&>(*by_name).options();
    CHECK(d.lr == 1e-4);
    CHECK(d.beta1 == 0.9);
    CHECK(d.beta2 == 0.99);
    CHECK(d.weight_decay == 0.0);
    CHECK(d.weight_decay_mode == optim::WeightDecay::decoupled);
    CHECK_THROWS_WITH_AS(optim::Lion({{"w", w}}, {.beta1 = 1.0}), doctest::Contains("lion: beta1 must be in [0, 1)"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("lion(beta2=1.5)", {{"w", w}}), doctest::Contains("lion: beta2"),
                         config::SpecError);
  }
}

namespace {
/// LAMB's update of one tensor, from the formula: λ in g (l2) or in r (in_r); bias-corrected or not.
struct LambByHand {
  double lr, b1, b2, eps;
  Vec m, v;
  void step(Vec& x, const Vec& g, int t, double l2, double in_r, bool corrected) {
    double c1 = corrected ? 1 / (1 - std::pow(b1, t)) : 1, c2 = corrected ? 1 / (1 - std::pow(b2, t)) : 1;
    m.resize(x.size(), 0.0);
    v.resize(x.size(), 0.0);
    Vec r(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      double gi = g[i] + l2 * x[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      r[i] = m[i] * c1 / (std::sqrt(v[i] * c2) + eps) + in_r * x[i];
    }
    double wn = norm_of(x), rn = norm_of(r);
    double ratio = wn > 0 && rn > 0 ? wn / rn : 1.0;
    for (std::size_t i = 0; i < x.size(); ++i) x[i] -= lr * ratio * r[i];
  }
};
}  // namespace

TEST_CASE("lamb (You et al. 2020 Alg. 2): r = m̂ / (sqrt(v̂) + ε) + λ w, w <- w - lr ‖w‖ / ‖r‖ · r per tensor") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-2, wd = 0.1;  // a visible ε
  Tensor w = param(kW0);
  LambByHand hand{lr, b1, b2, eps, {}, {}};
  SUBCASE("plain") {
    optim::Lamb opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { hand.step(x, g, t, 0, 0, true); });
    check_close(entry(opt.state(), "state/w/exp_avg"), hand.m);
    check_close(entry(opt.state(), "state/w/exp_avg_sq"), hand.v);
    CHECK(entry(opt.state(), "state/w/step").item() == 3.0);
  }
  SUBCASE("weight decay in r, inside the trust ratio (the paper; the default decoupled=true)") {
    optim::Lamb opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { hand.step(x, g, t, 0, wd, true); });
  }
  SUBCASE("decoupled=false: L2, g + λ w into m and v (apex's adam_w_mode=False)") {
    optim::Lamb opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                                 .weight_decay_mode = optim::WeightDecay::coupled});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { hand.step(x, g, t, wd, 0, true); });
  }
  SUBCASE("bias_correction = false") {
    optim::Lamb opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .bias_correction = false});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { hand.step(x, g, t, 0, 0, false); });
  }
  SUBCASE("one ratio per tensor; ratio 1 when ‖w‖ = 0 (a zero tensor moves) or ‖r‖ = 0 (no NaN)") {
    Tensor a = param({0.0, 0.0, 0.0}), b = param({3.0, -4.0});
    optim::Lamb opt({{"a", a}, {"b", b}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    LambByHand hand_b{lr, b1, b2, eps, {}, {}};
    Vec xa{0.0, 0.0, 0.0}, xb{3.0, -4.0};
    const std::vector<Vec> gb{{0.0, 0.0}, {1.0, 2.0}, {-0.5, 0.3}};  // r = 0 at step 1
    for (int t = 1; t <= 3; ++t) {
      give_grad(a, kGrads[t - 1]);
      give_grad(b, gb[t - 1]);
      opt.step();
      hand.step(xa, kGrads[t - 1], t, 0, 0, true);
      hand_b.step(xb, gb[t - 1], t, 0, 0, true);
      INFO("step " << t);
      check_close(a, xa);
      check_close(b, xb);
      if (t == 1) CHECK(values_of(b) == Vec{3.0, -4.0});
    }
  }
  SUBCASE("registered defaults; options checked") {
    auto by_name = optim::make_optimizer("lamb", {{"w", w}});
    const auto& d = dynamic_cast<optim::Lamb&>(*by_name).options();
    CHECK(d.lr == 1e-3);
    CHECK(d.beta1 == 0.9);
    CHECK(d.beta2 == 0.999);
    CHECK(d.eps == 1e-6);
    CHECK(d.bias_correction);
    CHECK(d.weight_decay_mode == optim::WeightDecay::decoupled);
    CHECK_THROWS_WITH_AS(optim::Lamb({{"w", w}}, {.beta2 = 1.0}), doctest::Contains("lamb: beta2 must be in [0, 1)"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Lamb({{"w", w}}, {.eps = 0.0}), doctest::Contains("lamb: eps must be > 0"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("lamb(eps=0)", {{"w", w}}), doctest::Contains("lamb: eps"),
                         config::SpecError);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("lamb(bias_correction=maybe)", {{"w", w}}),
                         doctest::Contains("lamb: bias_correction"), config::SpecError);
  }
}

TEST_CASE("lars (You et al. 2017 Alg. 1): local_lr = η ‖w‖ / (‖g‖ + λ ‖w‖ + ε), v <- γ v + lr local_lr (g + λ w)") {
  const double lr = 0.5, gamma = 0.9, eta = 0.02, eps = 0.1, wd = 0.1;  // a visible ε
  Tensor w = param(kW0);
  Vec v(3, 0.0);
  // λ in the local rate and the step (coupled), or w <- shrink w - v (decoupled).
  auto advance = [&](Vec& x, const Vec& g, double coupled, double shrink) {
    double wn = norm_of(x), gn = norm_of(g);
    double local = wn > 0 && gn > 0 ? eta * wn / (gn + coupled * wn + eps) : 1.0;
    for (std::size_t i = 0; i < 3; ++i) {
      v[i] = gamma * v[i] + lr * local * (g[i] + coupled * x[i]);
      x[i] = shrink * x[i] - v[i];
    }
  };
  const optim::LarsOptions o{.lr = lr, .momentum = gamma, .trust_coefficient = eta, .eps = eps};
  SUBCASE("plain") {
    optim::Lars opt({{"w", w}}, o);
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 0, 1); });
    check_close(entry(opt.state(), "state/w/velocity"), v);
  }
  SUBCASE("weight decay, coupled (the paper): λ in the local rate and in the step") {
    optim::LarsOptions with = o;
    with.weight_decay = wd;
    optim::Lars opt({{"w", w}}, with);
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, wd, 1); });
  }
  SUBCASE("weight decay, decoupled: w <- (1 - lr λ) w - v") {
    optim::LarsOptions with = o;
    with.weight_decay = wd;
    with.weight_decay_mode = optim::WeightDecay::decoupled;
    optim::Lars opt({{"w", w}}, with);
    follow(opt, w, [&](Vec& x, const Vec& g, int) { advance(x, g, 0, 1 - lr * wd); });
  }
  SUBCASE("local_lr = 1 when ‖w‖ = 0 (the first step is momentum SGD's) or ‖g‖ = 0 (w coasts on γ v)") {
    Tensor z = param({0.0, 0.0, 0.0});
    optim::Lars opt({{"z", z}}, o);
    give_grad(z, kGrads[0]);
    opt.step();
    check_close(z, {-lr * 0.5, lr * 1.0, -lr * 2.0});
    give_grad(z, {0.0, 0.0, 0.0});
    opt.step();
    check_close(z, {-lr * 0.5 * (1 + gamma), lr * 1.0 * (1 + gamma), -lr * 2.0 * (1 + gamma)});
  }
  SUBCASE("registered defaults; options checked") {
    auto by_name = optim::make_optimizer("lars", {{"w", w}});
    const auto& d = dynamic_cast<optim::Lars&>(*by_name).options();
    CHECK(d.momentum == 0.9);
    CHECK(d.trust_coefficient == 1e-3);
    CHECK(d.eps == 1e-8);
    CHECK(d.weight_decay_mode == optim::WeightDecay::coupled);
    CHECK_THROWS_WITH_AS(optim::Lars({{"w", w}}, {.trust_coefficient = 0.0}),
                         doctest::Contains("lars: trust_coefficient must be > 0"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::Lars({{"w", w}}, {.momentum = 1.0}),
                         doctest::Contains("lars: momentum must be in [0, 1)"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("lars(eps=-1)", {{"w", w}}), doctest::Contains("lars: eps"),
                         config::SpecError);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("lars(trust_coefficient=0)", {{"w", w}}),
                         doctest::Contains("lars: trust_coefficient"), config::SpecError);
  }
}

// -------------------------------------------------- conventions: momentum's lr_inside, Nadam's momentum_decay

TEST_CASE("momentum, nesterov, lr_inside=false (torch.optim.SGD): v <- γ v + g, w <- w - lr v, or - lr (g + γ v)") {
  const double lr = 0.1, gamma = 0.9, wd = 0.1;
  for (bool nesterov : {false, true}) {
    for (double decay : {0.0, wd}) {
      INFO("nesterov " << nesterov << ", coupled λ " << decay);
      Tensor w = param(kW0);
      const optim::MomentumOptions o{.lr = lr, .momentum = gamma, .weight_decay = decay, .lr_inside = false};
      std::unique_ptr<optim::Optimizer> opt;
      if (nesterov) {
        opt = std::make_unique<optim::Nesterov>(std::vector<nn::NamedTensor>{{"w", w}}, o);
      } else {
        opt = std::make_unique<optim::Momentum>(std::vector<nn::NamedTensor>{{"w", w}}, o);
      }
      Vec v(3, 0.0);
      follow(*opt, w, [&](Vec& x, const Vec& g, int) {
        for (std::size_t i = 0; i < 3; ++i) {
          double gi = g[i] + decay * x[i];
          v[i] = gamma * v[i] + gi;
          x[i] = x[i] - lr * (nesterov ? gi + gamma * v[i] : v[i]);
        }
      });
      check_close(entry(opt->state(), "state/w/velocity"), v);  // torch's momentum_buffer
    }
  }
}

TEST_CASE("momentum's two forms agree while lr is constant and differ, as their formulas say, once it changes") {
  // Steps 1-2 at lr, step 3 at lr'. With b_2 torch's buffer after step 2 (v_2 = lr b_2 with the rate inside):
  //   heavy ball, lr inside:  w_3 = w_2 - (γ lr b_2 + lr' g_3)       torch: w_3 = w_2 - lr' (γ b_2 + g_3)
  //   nesterov,   lr inside:  w_3 = w_2 - (γ² lr b_2 + (1 + γ) lr' g_3)
  //                           torch: w_3 = w_2 - lr' ((1 + γ) g_3 + γ² b_2)
  // so w_3(inside) - w_3(torch) = γ b_2 (lr' - lr) (heavy ball), γ² b_2 (lr' - lr) (nesterov).
  const double lr = 0.1, lr2 = 0.05, gamma = 0.9;
  for (bool nesterov : {false, true}) {
    INFO("nesterov " << nesterov);
    Tensor inside = param(kW0), torch = param(kW0);
    auto make = [&](Tensor& w, bool lr_inside) -> std::unique_ptr<optim::Optimizer> {
      const optim::MomentumOptions o{.lr = lr, .momentum = gamma, .lr_inside = lr_inside};
      std::vector<nn::NamedTensor> p{{"w", w}};
      if (nesterov) return std::make_unique<optim::Nesterov>(p, o);
      return std::make_unique<optim::Momentum>(p, o);
    };
    auto a = make(inside, true), b = make(torch, false);
    Vec x_in = kW0, x_t = kW0, v_in(3, 0.0), b_t(3, 0.0), b2;
    for (int t = 1; t <= 3; ++t) {
      double rate = t < 3 ? lr : lr2;
      if (t == 3) {
        b2 = b_t;
        a->set_lr(lr2);
        b->set_lr(lr2);
      }
      const Vec& g = kGrads[t - 1];
      give_grad(inside, g);
      give_grad(torch, g);
      a->step();
      b->step();
      for (std::size_t i = 0; i < 3; ++i) {
        v_in[i] = gamma * v_in[i] + rate * g[i];
        x_in[i] -= nesterov ? gamma * v_in[i] + rate * g[i] : v_in[i];
        b_t[i] = gamma * b_t[i] + g[i];
        x_t[i] -= rate * (nesterov ? g[i] + gamma * b_t[i] : b_t[i]);
      }
      INFO("step " << t);
      check_close(inside, x_in);
      check_close(torch, x_t);
      if (t < 3) check_close(inside, values_of(torch));
    }
    const double factor = nesterov ? gamma * gamma : gamma;
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(inside.at(i) - torch.at(i) == doctest::Approx(factor * b2[i] * (lr2 - lr)).epsilon(1e-10));
      CHECK(std::abs(inside.at(i) - torch.at(i)) > 1e-3);
    }
  }
}

TEST_CASE("the defaults keep the seeds' loops bit for bit: momentum with lr inside, nadam with momentum_decay = 0") {
  // The same operations in the same order as the loops (float64), compared with ==.
  SUBCASE("momentum") {
    const double lr = 0.1, gamma = 0.9;
    Tensor w = param(kW0);
    optim::Momentum opt({{"w", w}}, {.lr = lr, .momentum = gamma});
    Vec x = kW0, v(3, 0.0);
    for (const Vec& g : kGrads) {
      give_grad(w, g);
      opt.step();
      for (std::size_t i = 0; i < 3; ++i) {
        const double step = lr * g[i];
        v[i] = gamma * v[i] + step;
        x[i] = x[i] - v[i];
      }
      CHECK(values_of(w) == x);
    }
  }
  SUBCASE("nadam") {
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    Tensor w = param(kW0);
    optim::Nadam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
    Vec x = kW0, m(3, 0.0), v(3, 0.0);
    for (int t = 1; t <= 3; ++t) {
      const Vec& g = kGrads[t - 1];
      give_grad(w, g);
      opt.step();
      const double c1 = 1.0 / (1.0 - std::pow(b1, t)), c2 = 1.0 / (1.0 - std::pow(b2, t)), step = lr * c1;
      for (std::size_t i = 0; i < 3; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        const double top = b1 * m[i] + (1 - b1) * g[i];
        x[i] = x[i] - step * top / (std::sqrt(v[i] * c2) + eps);
      }
      CHECK(values_of(w) == x);
    }
    CHECK(entry(opt.state(), "state/w/mu_product").item() == 1.0);
  }
}

TEST_CASE("nadam, momentum_decay ψ > 0 (torch.optim.NAdam): μ_t = β1 (1 - 0.5 · 0.96^(t ψ)), Π μ corrects the bias") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  Tensor w = param(kW0);
  Vec m(3, 0.0), v(3, 0.0);
  double product = 1.0;
  auto advance = [&](Vec& x, const Vec& g, int t, double psi, double coupled, double shrink) {
    double mu = b1 * (1 - 0.5 * std::pow(0.96, t * psi)), mu_next = b1 * (1 - 0.5 * std::pow(0.96, (t + 1) * psi));
    product *= mu;
    for (std::size_t i = 0; i < 3; ++i) {
      double gi = g[i] + coupled * x[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      double denom = std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps;
      x[i] = shrink * x[i] - lr * (1 - mu) / (1 - product) * gi / denom -
             lr * mu_next / (1 - product * mu_next) * m[i] / denom;
    }
  };
  SUBCASE("torch's ψ = 0.004, and ψ = 5 (μ_t near β1 after one step): both differ from the seeds' form") {
    for (double psi : {0.004, 5.0}) {
      INFO("ψ = " << psi);
      Tensor x = param(kW0), seeds = param(kW0);
      optim::Nadam opt({{"x", x}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .momentum_decay = psi});
      optim::Nadam constant({{"x", seeds}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
      m.assign(3, 0.0);
      v.assign(3, 0.0);
      product = 1.0;
      Vec hand = kW0;
      for (int t = 1; t <= 3; ++t) {
        give_grad(x, kGrads[t - 1]);
        give_grad(seeds, kGrads[t - 1]);
        opt.step();
        constant.step();
        advance(hand, kGrads[t - 1], t, psi, 0, 1);
        INFO("step " << t);
        check_close(x, hand);
        CHECK(std::abs(x.at(0) - seeds.at(0)) > 1e-5);
      }
      CHECK(entry(opt.state(), "state/x/mu_product").item() == doctest::Approx(product).epsilon(1e-15));
    }
  }
  SUBCASE("coupled weight decay (torch's weight_decay): g + λ w") {
    optim::Nadam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                                  .momentum_decay = 0.004});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { advance(x, g, t, 0.004, wd, 1); });
  }
  SUBCASE("decoupled weight decay (torch's decoupled_weight_decay=True): w <- (1 - lr λ) w first") {
    optim::Nadam opt({{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                                  .weight_decay_mode = optim::WeightDecay::decoupled, .momentum_decay = 0.004});
    follow(opt, w, [&](Vec& x, const Vec& g, int t) { advance(x, g, t, 0.004, 0, 1 - lr * wd); });
  }
  SUBCASE("options: momentum_decay >= 0, registered default 0") {
    CHECK(dynamic_cast<optim::Nadam&>(*optim::make_optimizer("nadam", {{"w", w}})).options().momentum_decay == 0.0);
    auto torch = optim::make_optimizer("nadam(momentum_decay=0.004)", {{"w", w}});
    CHECK(dynamic_cast<optim::Nadam&>(*torch).options().momentum_decay == 0.004);
    CHECK_THROWS_WITH_AS(optim::Nadam({{"w", w}}, {.momentum_decay = -1.0}),
                         doctest::Contains("nadam: momentum_decay must be >= 0"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(optim::make_optimizer("nadam(momentum_decay=-0.1)", {{"w", w}}),
                         doctest::Contains("nadam: momentum_decay"), config::SpecError);
  }
}

TEST_CASE("lr_inside is a flag of momentum and nesterov; nesterov-lookahead keeps the rate inside") {
  Tensor w = param(kW0);
  auto mom = optim::make_optimizer("momentum(lr_inside=false)", {{"w", w}});
  CHECK_FALSE(dynamic_cast<optim::Momentum&>(*mom).options().lr_inside);
  CHECK(dynamic_cast<optim::Momentum&>(*optim::make_optimizer("momentum", {{"w", w}})).options().lr_inside);
  auto nes = optim::make_optimizer("nesterov(lr_inside=false)", {{"w", w}});
  CHECK_FALSE(dynamic_cast<optim::Nesterov&>(*nes).options().lr_inside);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("momentum(lr_inside=sometimes)", {{"w", w}}),
                       doctest::Contains("momentum: lr_inside"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("nesterov-lookahead(lr_inside=false)", {{"w", w}}),
                       doctest::Contains("unknown option 'lr_inside'"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::NesterovLookahead({{"w", w}}, {.lr_inside = false}),
                       doctest::Contains("nesterov-lookahead: lr_inside=false"), std::invalid_argument);
  optim::NesterovLookahead later({{"w", w}});
  later.set_options(0, {.lr_inside = false});
  CHECK_THROWS_WITH_AS(later.step(optim::Optimizer::LossFn([&] { return ag::sum(w); })),
                       doctest::Contains("nesterov-lookahead: lr_inside=false"), std::invalid_argument);
}

// ================================================================ evaluation points: asgd and schedule-free

namespace {
/// eval() puts the state tensor `point` into w and train() puts w's values back, both bit for bit.
void check_eval_point(optim::Optimizer& opt, Tensor& w, const std::string& point) {
  const Tensor at = entry(opt.state(), "state/w/" + point), before = w.clone();
  opt.eval();
  CHECK(opt.evaluating());
  CHECK(bit_identical(w, at));
  opt.train();
  CHECK_FALSE(opt.evaluating());
  CHECK(bit_identical(w, before));
}

Vec mean_of(const std::vector<Vec>& points) {
  Vec m(points.front().size(), 0.0);
  for (const Vec& p : points) {
    for (std::size_t i = 0; i < m.size(); ++i) m[i] += p[i] / static_cast<double>(points.size());
  }
  return m;
}
}  // namespace

TEST_CASE("asgd (torch.optim.ASGD): w <- (1 - λ η) w - η g, η_t = lr / (1 + λ lr t)^α, ax the mean after t0") {
  // torch's single-tensor update, 5 steps (kGrads cycled), with the η and μ of the step before; a large λ so
  // that the shrink shows, t0 = 1 so that steps 4 and 5 average (μ = 1/2, 1/3): ax = mean(w3, w4, w5).
  const double lr = 0.1, lambd = 0.5, alpha = 0.75, t0 = 1, wd = 0.1;
  for (bool decoupled : {false, true}) {
    INFO("decoupled " << decoupled);
    Tensor w = param(kW0);
    optim::ASGD opt({{"w", w}}, {.lr = lr, .lambd = lambd, .alpha = alpha, .t0 = t0, .weight_decay = wd,
                                 .weight_decay_mode = decoupled ? optim::WeightDecay::decoupled : optim::WeightDecay::coupled});
    Vec x = kW0, ax(3, 0.0);
    std::vector<Vec> iterates;
    double eta = lr, mu = 1;
    for (int t = 1; t <= 5; ++t) {
      const Vec& g = kGrads[(t - 1) % 3];
      give_grad(w, g);
      opt.step();
      for (std::size_t i = 0; i < 3; ++i) {
        double gd = decoupled ? g[i] : g[i] + wd * x[i];
        double shrink = decoupled ? 1 - lr * wd : 1.0;
        x[i] = shrink * (1 - lambd * eta) * x[i] - eta * gd;
        ax[i] = mu == 1 ? x[i] : ax[i] + mu * (x[i] - ax[i]);
      }
      iterates.push_back(x);
      eta = lr / std::pow(1 + lambd * lr * t, alpha);
      mu = 1 / std::max(1.0, t - t0);
      INFO("step " << t);
      check_close(w, x);
      const auto state = opt.state();
      check_close(entry(state, "state/w/ax"), ax);
      CHECK(entry(state, "state/w/eta").item() == doctest::Approx(eta).epsilon(1e-15));
      CHECK(entry(state, "state/w/mu").item() == mu);
      CHECK(entry(state, "state/w/step").item() == t);
    }
    check_close(entry(opt.state(), "state/w/ax"), mean_of({iterates[2], iterates[3], iterates[4]}));
  }
  auto by_name = optim::make_optimizer("asgd", {{"w", param(kW0)}});
  const auto& d = dynamic_cast<optim::ASGD&>(*by_name).options();
  CHECK(d.lr == 1e-2);
  CHECK(d.lambd == 1e-4);
  CHECK(d.alpha == 0.75);
  CHECK(d.t0 == 1e6);
  CHECK(d.weight_decay == 0.0);
  CHECK(d.weight_decay_mode == optim::WeightDecay::coupled);
}

TEST_CASE("asgd: eval() puts ax into the parameters, train() puts w back bit for bit; torch's t0 changes nothing") {
  SUBCASE("t0 = 2: after 6 steps ax is the mean of w4, w5, w6") {
    Tensor w = param(kW0);
    optim::ASGD opt({{"w", w}}, {.lr = 0.1, .t0 = 2});
    std::vector<Vec> iterates;
    for (int t = 1; t <= 6; ++t) {
      give_grad(w, kGrads[(t - 1) % 3]);
      opt.step();
      iterates.push_back(values_of(w));
    }
    check_eval_point(opt, w, "ax");
    optim::EvalScope at(opt);
    check_close(w, mean_of({iterates[3], iterates[4], iterates[5]}));
  }
  SUBCASE("t0 = 1e6 (the default): ax = w, bit for bit") {
    Tensor w = param(kW0);
    optim::ASGD opt({{"w", w}});
    opt.eval();  // before any step: nothing to exchange
    CHECK(values_of(w) == kW0);
    opt.train();
    for (const Vec& g : kGrads) {
      give_grad(w, g);
      opt.step();
    }
    CHECK(bit_identical(entry(opt.state(), "state/w/ax"), w));
    check_eval_point(opt, w, "ax");
  }
}

TEST_CASE("asgd: options are checked, by constructor and by spec") {
  Tensor w = param(kW0);
  std::vector<nn::NamedTensor> p{{"w", w}};
  CHECK_THROWS_WITH_AS(optim::ASGD(p, {.lambd = -1}), doctest::Contains("asgd: lambd must be >= 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::ASGD(p, {.alpha = -0.5}), doctest::Contains("asgd: alpha"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::ASGD(p, {.t0 = std::nan("")}), doctest::Contains("asgd: t0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("asgd(t0=-1)", p), doctest::Contains("asgd: t0 must be >= 0, got '-1'"),
                       config::SpecError);
  CHECK(optim::resolve_optimizer(config::parse_spec("asgd")).text() ==
        "asgd(lr=0.01,weight_decay=0,decoupled=false,lambd=0.0001,alpha=0.75,t0=1000000)");
}

namespace {
/// The schedule-free bookkeeping written out (schedule_free.hpp): γ_t with warmup, then c_t from lr_max and Σ.
struct ScheduleFreeWeights {
  double lr, warmup, r, power;
  double lr_max = -1, sum = 0;
  std::pair<double, double> next(int t) {
    double gamma = t <= warmup ? lr * t / warmup : lr;
    lr_max = std::max(lr_max, gamma);
    double weight = std::pow(t, r) * std::pow(lr_max, power);
    sum += weight;
    return {gamma, weight / sum};
  }
};
}  // namespace

TEST_CASE("sgd-schedule-free (Defazio et al. 2024): z <- z - γ g(y), x <- (1 - c) x + c z, y <- (1 - β) z + β x") {
  // Warmup over 2 steps, r = 1 and weight_lr_power = 2, so that γ_t, lr_max and every weight differ; L2 at y.
  const double lr = 0.5, beta = 0.9, wd = 0.1;
  Tensor w = param(kW0);
  optim::SGDScheduleFree opt({{"w", w}}, {.lr = lr, .momentum = beta, .weight_decay = wd, .warmup_steps = 2, .r = 1});
  ScheduleFreeWeights weights{.lr = lr, .warmup = 2, .r = 1, .power = 2};
  Vec z = kW0, x = kW0, y_ref = kW0, z_ref = kW0;
  follow(opt, w, [&](Vec& y, const Vec& g, int t) {
    auto [gamma, c] = weights.next(t);
    for (std::size_t i = 0; i < 3; ++i) {
      double gd = g[i] + wd * y[i];
      z[i] -= gamma * gd;
      x[i] = (1 - c) * x[i] + c * z[i];
      y[i] = (1 - beta) * z[i] + beta * x[i];
      // The reference's in-place form, on its own trajectory: y <- (1 - c) y + c z + γ (β (1 - c) - 1) g; z <- z - γ g.
      double gr = g[i] + wd * y_ref[i];
      y_ref[i] = (1 - c) * y_ref[i] + c * z_ref[i] + gamma * (beta * (1 - c) - 1) * gr;
      z_ref[i] -= gamma * gr;
    }
    check_close(w, y_ref, 1e-14);
  });
  const auto state = opt.state();
  check_close(entry(state, "state/w/z"), z);
  check_close(entry(state, "state/w/x"), x);
  CHECK(entry(state, "state/w/step").item() == 3);
  CHECK(entry(state, "state/w/lr_max").item() == lr);
  CHECK(entry(state, "state/w/weight_sum").item() == doctest::Approx(weights.sum).epsilon(1e-15));

  auto by_name = optim::make_optimizer("sgd-schedule-free", {{"w", param(kW0)}});
  const auto& d = dynamic_cast<optim::SGDScheduleFree&>(*by_name).options();
  CHECK(d.lr == 1.0);
  CHECK(d.momentum == 0.9);
  CHECK(d.weight_decay == 0.0);
  CHECK(d.warmup_steps == 0);
  CHECK(d.r == 0.0);
  CHECK(d.weight_lr_power == 2.0);
}

TEST_CASE("adamw-schedule-free (Defazio et al. 2024): d = g / (sqrt(v̂) + ε) + λ y, then the schedule-free step") {
  const double lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-3, wd = 0.1;  // a large ε, so that its place shows
  for (bool decoupled : {true, false}) {
    INFO("decoupled " << decoupled);
    Tensor w = param(kW0);
    optim::AdamWScheduleFree opt(
        {{"w", w}}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                     .weight_decay_mode = decoupled ? optim::WeightDecay::decoupled : optim::WeightDecay::coupled,
                     .warmup_steps = 2});
    ScheduleFreeWeights weights{.lr = lr, .warmup = 2, .r = 0, .power = 2};
    Vec z = kW0, x = kW0, v(3, 0.0), y_ref = kW0, z_ref = kW0, v_ref(3, 0.0);
    follow(opt, w, [&](Vec& y, const Vec& g, int t) {
      auto [gamma, c] = weights.next(t);
      const double bc2 = 1 - std::pow(b2, t);
      for (std::size_t i = 0; i < 3; ++i) {
        double gd = decoupled ? g[i] : g[i] + wd * y[i];
        v[i] = b2 * v[i] + (1 - b2) * gd * gd;
        double d = gd / (std::sqrt(v[i] / bc2) + eps) + (decoupled ? wd * y[i] : 0.0);
        z[i] -= gamma * d;
        x[i] = (1 - c) * x[i] + c * z[i];
        y[i] = (1 - b1) * z[i] + b1 * x[i];
        if (!decoupled) continue;
        // The reference's in-place form (its weight decay is this decoupled one), on its own trajectory.
        v_ref[i] = b2 * v_ref[i] + (1 - b2) * g[i] * g[i];
        double dr = g[i] / (std::sqrt(v_ref[i] / bc2) + eps) + wd * y_ref[i];
        y_ref[i] = (1 - c) * y_ref[i] + c * z_ref[i] + gamma * (b1 * (1 - c) - 1) * dr;
        z_ref[i] -= gamma * dr;
      }
      if (decoupled) check_close(w, y_ref, 1e-14);
    });
    const auto state = opt.state();
    check_close(entry(state, "state/w/z"), z);
    check_close(entry(state, "state/w/x"), x);
    check_close(entry(state, "state/w/exp_avg_sq"), v);
  }
  auto by_name = optim::make_optimizer("adamw-schedule-free", {{"w", param(kW0)}});
  const auto& d = dynamic_cast<optim::AdamWScheduleFree&>(*by_name).options();
  CHECK(d.lr == 0.0025);
  CHECK(d.beta1 == 0.9);
  CHECK(d.beta2 == 0.999);
  CHECK(d.eps == 1e-8);
  CHECK(d.weight_decay == 0.0);
  CHECK(d.weight_decay_mode == optim::WeightDecay::decoupled);
  CHECK(d.warmup_steps == 0);
  CHECK(d.r == 0.0);
  CHECK(d.weight_lr_power == 2.0);
}

TEST_CASE("schedule-free: eval() puts x into the parameters, train() puts y back bit for bit; the run goes on") {
  for (const char* spec_text : {"sgd-schedule-free(lr=0.2,weight_decay=0.1)", "adamw-schedule-free(lr=0.05,weight_decay=0.1)"}) {
    INFO(spec_text);
    Tensor w = param(kW0), twin = param(kW0);
    auto opt = optim::make_optimizer(spec_text, {{"w", w}});
    auto uninterrupted = optim::make_optimizer(spec_text, {{"w", twin}});
    opt->eval();  // before any step: nothing to exchange
    CHECK(values_of(w) == kW0);
    opt->train();
    for (const Vec& g : kGrads) {
      give_grad(w, g);
      give_grad(twin, g);
      opt->step();
      uninterrupted->step();
      check_eval_point(*opt, w, "x");
    }
    // The parameters hold y = (1 - β) z + β x between steps, and evaluating changed nothing in the run.
    const auto state = opt->state();
    const Vec z = values_of(entry(state, "state/w/z")), x = values_of(entry(state, "state/w/x"));
    Vec y(3);
    for (std::size_t i = 0; i < 3; ++i) y[i] = 0.1 * z[i] + 0.9 * x[i];
    check_close(w, y);
    CHECK(bit_identical(w, twin));
  }
}

TEST_CASE("schedule-free: options are checked, by constructor and by spec") {
  Tensor w = param(kW0);
  std::vector<nn::NamedTensor> p{{"w", w}};
  CHECK_THROWS_WITH_AS(optim::SGDScheduleFree(p, {.momentum = 1.0}),
                       doctest::Contains("sgd-schedule-free: momentum must be in [0, 1)"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::SGDScheduleFree(p, {.r = -1}), doctest::Contains("sgd-schedule-free: r"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::SGDScheduleFree(p, {.weight_lr_power = -2}),
                       doctest::Contains("sgd-schedule-free: weight_lr_power"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::AdamWScheduleFree(p, {.beta1 = 1.0}), doctest::Contains("adamw-schedule-free: beta1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::AdamWScheduleFree(p, {.beta2 = -0.1}), doctest::Contains("adamw-schedule-free: beta2"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::AdamWScheduleFree(p, {.eps = 0.0}), doctest::Contains("adamw-schedule-free: eps"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("sgd-schedule-free(warmup_steps=2.5)", p),
                       doctest::Contains("sgd-schedule-free: warmup_steps"), config::SpecError);
  CHECK_THROWS_WITH_AS(optim::make_optimizer("adamw-schedule-free(momentum=0.9)", p),
                       doctest::Contains("unknown option 'momentum'"), config::SpecError);
  CHECK(optim::resolve_optimizer(config::parse_spec("sgd-schedule-free")).text() ==
        "sgd-schedule-free(lr=1,weight_decay=0,decoupled=false,momentum=0.9,warmup_steps=0,r=0,weight_lr_power=2)");
  CHECK(optim::resolve_optimizer(config::parse_spec("adamw-schedule-free")).text() ==
        "adamw-schedule-free(lr=0.0025,weight_decay=0,decoupled=true,beta1=0.9,beta2=0.999,eps=1e-08,warmup_steps=0,"
        "r=0,weight_lr_power=2)");
}

TEST_CASE("load_state refuses values no optimiser produces and a parameter's state gone missing, naming each") {
  Tensor a = param({0.8, -0.4}), b = param({1.1, 0.3, -0.9});
  optim::Adam adam({{"a", a}, {"b", b}});
  adam.step(optim::Optimizer::LossFn([&] { return quartic({a, b}); }));
  const std::vector<nn::NamedTensor> good = adam.state();
  auto with = [&](const std::string& name, const Tensor& value) {
    std::vector<nn::NamedTensor> out;
    for (const auto& [n, t] : good) out.emplace_back(n, n == name ? value : t);
    return out;
  };
  auto refused = [&](const std::vector<nn::NamedTensor>& entries, const std::string& message) {
    optim::Adam fresh({{"a", a}, {"b", b}});
    CHECK_THROWS_WITH_AS(fresh.load_state(entries), doctest::Contains(message.c_str()), std::runtime_error);
    CHECK(fresh.step_count() == 0);
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (double step : {nan, -7.0, 2.5}) {
    refused(with("state/a/step", Tensor::scalar(step, DType::f64)), "state/a/step: ");
  }
  refused(with("state/a/step", Tensor::scalar(2.5, DType::f64)), "not a count (an integer >= 0)");
  refused(with("state/b/exp_avg_sq", Tensor::from_data(ag::Shape{3}, {-1.0, -1.0, -1.0}, DType::f64)),
          "state/b/exp_avg_sq: -1 at element 0 (3 of 3 values are not finite and >= 0)");
  refused(with("state/b/exp_avg", Tensor::from_data(ag::Shape{3}, {0.0, nan, 0.0}, DType::f64)),
          "state/b/exp_avg: nan at element 1 (1 of 3 values are not finite)");
  std::vector<nn::NamedTensor> without_b;
  for (const auto& [n, t] : good) {
    if (!n.starts_with("state/b/")) without_b.emplace_back(n, t);
  }
  refused(without_b, "global/params_with_state: the state says 2 parameter(s) have state, it holds state for 1 (none for: b)");
}

// ---------------------------------------------------------------- sgd with in_backward=true

namespace {

/// A 6-5-3 MLP in float64 whose weights (in, out) and biases are leaves, the same values for every call.
struct SmallMlp {
  Tensor w1, b1, w2, b2;
  SmallMlp() {
    ag::Generator gen(11);
    auto leaf = [&](ag::Shape shape) {
      Tensor t = ag::Tensor::zeros(shape, DType::f64);
      for (std::size_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = gen.uniform01() - 0.5;
      t.set_requires_grad();
      return t;
    };
    w1 = leaf({6, 5});
    b1 = leaf({5});
    w2 = leaf({5, 3});
    b2 = leaf({3});
  }
  std::vector<nn::NamedTensor> params() const { return {{"w1", w1}, {"b1", b1}, {"w2", w2}, {"b2", b2}}; }
  /// The loss on batch `step` (of `batch` rows) of a fixed pseudo-random data set.
  Tensor loss(std::size_t step, std::size_t batch) const {
    Tensor x = ag::Tensor::zeros({batch, 6}, DType::f64);
    std::vector<std::int32_t> labels(batch);
    for (std::size_t r = 0; r < batch; ++r) {
      for (std::size_t c = 0; c < 6; ++c) x.data<double>()[r * 6 + c] = std::sin(double(step * 31 + r * 7 + c));
      labels[r] = static_cast<std::int32_t>((step + r) % 3);
    }
    return ag::cross_entropy(ag::linear(ag::relu(ag::linear(x, w1, b1)), w2, b2), labels);
  }
};

void check_same(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  for (std::size_t i = 0; i < a.numel(); ++i) CHECK(a.at(i) == doctest::Approx(b.at(i)).epsilon(1e-13));
}

}  // namespace

TEST_CASE("sgd(in_backward=true) takes sgd's steps, updating linear weights inside backward without a gradient") {
  for (std::size_t batch : {1, 4}) {
    for (optim::WeightDecay mode : {optim::WeightDecay::coupled, optim::WeightDecay::decoupled}) {
      INFO("batch " << batch << (mode == optim::WeightDecay::coupled ? " coupled" : " decoupled"));
      SmallMlp plain, fused;
      optim::SGD reference(plain.params(), {.lr = 0.3, .weight_decay = 0.01, .weight_decay_mode = mode});
      optim::SGD in_backward(fused.params(),
                             {.lr = 0.3, .weight_decay = 0.01, .weight_decay_mode = mode, .in_backward = true});
      CHECK(in_backward.updates_in_backward());
      CHECK_FALSE(reference.updates_in_backward());
      for (std::size_t step = 0; step < 5; ++step) {
        if (step == 3) {  // a schedule's new rate is the one applied inside the next backward
          reference.set_lr(0.1);
          in_backward.set_lr(0.1);
        }
        reference.zero_grad();
        ag::backward(plain.loss(step, batch));
        reference.step();
        in_backward.zero_grad();
        const std::vector<double> w2_before(fused.w2.data<double>(), fused.w2.data<double>() + fused.w2.numel());
        ag::backward(fused.loss(step, batch));
        // The weights moved in backward and have no gradient; the biases wait for step() with theirs.
        CHECK_FALSE(fused.w1.grad().defined());
        CHECK_FALSE(fused.w2.grad().defined());
        CHECK(fused.b1.grad().defined());
        CHECK(fused.w2.data<double>()[0] != w2_before[0]);
        in_backward.step();
        check_same(fused.w1, plain.w1);
        check_same(fused.b1, plain.b1);
        check_same(fused.w2, plain.w2);
        check_same(fused.b2, plain.b2);
      }
    }
  }
}

TEST_CASE("sgd(in_backward=true) leaves dW to .grad() where an update inside backward would differ") {
  SUBCASE("a weight used by two nodes (its other gradient needs its old value)") {
    SmallMlp m;
    optim::SGD opt(m.params(), {.lr = 0.1, .in_backward = true});
    Tensor x = ag::Tensor::ones({2, 6}, DType::f64);
    Tensor y = ag::linear(x, m.w1, m.b1);
    Tensor loss = ag::add(ag::sum(ag::mul(y, y)), ag::sum(ag::linear(x, m.w1, Tensor())));
    ag::backward(loss);
    CHECK(m.w1.grad().defined());
  }
  SUBCASE("ag::grad, retain_graph and create_graph, anomaly detection") {
    SmallMlp m;
    optim::SGD opt(m.params(), {.lr = 0.1, .in_backward = true});
    const double w = m.w2.at(0);
    ag::grad({m.loss(0, 2)}, {m.w2});
    CHECK(m.w2.at(0) == w);
    ag::backward(m.loss(0, 2), {.retain_graph = true});
    CHECK(m.w2.grad().defined());
    ag::release_tape();
    opt.zero_grad();
    {
      ag::DetectAnomalyGuard detect;
      ag::backward(m.loss(0, 2));
    }
    CHECK(m.w2.grad().defined());
    CHECK(m.w2.at(0) == w);
  }
  SUBCASE("a gradient already there (accumulation without zero_grad)") {
    SmallMlp m;
    optim::SGD opt(m.params(), {.lr = 0.1, .in_backward = true});
    m.w2.set_grad(ag::Tensor::zeros_like(m.w2));
    const double w = m.w2.at(0);
    ag::backward(m.loss(0, 2));
    CHECK(m.w2.at(0) == w);
    CHECK(m.w2.grad().defined());
  }
  SUBCASE("the optimiser gone, or turned off by set_options") {
    SmallMlp m;
    {
      optim::SGD opt(m.params(), {.lr = 0.1, .in_backward = true});
      opt.set_options(0, {.lr = 0.1, .in_backward = false});
      ag::backward(m.loss(0, 2));
      CHECK(m.w2.grad().defined());
    }
    m.w2.zero_grad();
    ag::backward(m.loss(0, 2));
    CHECK(m.w2.grad().defined());
  }
}

TEST_CASE("a wrapper refuses an inner sgd that updates inside backward, naming the option") {
  SmallMlp m;
  CHECK_THROWS_WITH_AS(optim::make_optimizer("lookahead(inner=sgd(in_backward=true))", m.params()),
                       doctest::Contains("in_backward=true"), std::invalid_argument);
  CHECK(optim::resolve_optimizer(config::parse_spec("sgd")).text().find("in_backward=false") != std::string::npos);
}
