#include "problems/test_problems.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <span>
#include <numeric>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "optim/registry.hpp"
#include "problems/functions.hpp"

namespace problems {

namespace {

using ag::Tensor;

// ---------------------------------------------------------------- the registry's entries

/// DeepOBS's published baselines (baselines/<problem>/<optimizer>/<setting>/random_seed__*.json in its repository
/// at commit 873bbc2): the seeds of each optimiser's chosen setting, their test accuracy and loss after the last
/// epoch. DeepOBS publishes runs of its benchmark sets only; of the problems here, fmnist_2c2d and quadratic_deep
/// (the index of the repository holds 3 to 5 of its seeds there; a function has no accuracy: NaN).
std::vector<PublishedBaseline> published_baselines(const std::string& problem) {
  const double none = std::numeric_limits<double>::quiet_NaN();
  if (problem == "quadratic_deep") {
    return {
        {"sgd(lr=0.015848931925)", "GradientDescentOptimizer", 4, none, none, 87.441924, 0.189306},
        {"momentum(lr=0.0025118864315,momentum=0.99,lr_inside=false)", "MomentumOptimizer (momentum 0.99)", 3, none,
         none, 87.054646, 0.025742},
        {"adam(lr=0.039810717055)", "AdamOptimizer", 5, none, none, 87.105996, 0.024262},
    };
  }
  if (problem != "fmnist_2c2d") return {};
  return {
      {"sgd(lr=0.15848931925)", "GradientDescentOptimizer", 7, 0.922691, 0.001308, 0.682717, 0.021852},
      {"momentum(lr=0.0025118864315,momentum=0.99,lr_inside=false)", "MomentumOptimizer (momentum 0.99)", 6,
       0.920740, 0.002388, 0.729887, 0.013632},
      {"adam(lr=0.00025118864315)", "AdamOptimizer", 6, 0.924262, 0.003106, 0.636272, 0.029888},
  };
}

void add_dataset_problem(const std::string& name, const std::string& model, const std::string& dataset,
                         std::size_t epochs, std::size_t parameters, const std::string& summary) {
  TestProblem entry;
  entry.baselines = published_baselines(name);
  entry.name = name;
  entry.summary = summary;
  entry.model = model;
  entry.dataset = dataset;
  entry.loss = "cross-entropy";
  entry.batch_size = 128;
  entry.epochs = epochs;
  entry.parameters = parameters;
  test_problems().add(std::move(entry));
}

void add_function_problem(const std::string& name, std::size_t parameters, const std::string& summary,
                          std::function<FunctionProblem()> make) {
  TestProblem entry;
  entry.baselines = published_baselines(name);
  entry.name = name;
  entry.summary = summary;
  entry.loss = "the function";
  entry.batch_size = 128;
  entry.epochs = 100;
  entry.parameters = parameters;
  entry.make_function = std::move(make);
  if (name.starts_with("two_d_")) {
    entry.untunable = "its validation loss f(u, v) + u x̄ + v ȳ (the mean noise of its validation draws) has no lower "
                      "bound in (u, v), so a rate that runs away along it would be chosen";
  }
  test_problems().add(std::move(entry));
}

Tensor f64(const ag::Shape& shape, const std::vector<double>& values) {
  return Tensor::from_data(shape, std::span<const double>(values));
}

/// `count` x `dim` draws of N(0, σ²) from a generator seeded with `seed`.
std::vector<double> normal_draws(std::size_t count, std::size_t dim, double sigma, std::uint64_t seed) {
  ag::Generator gen(seed);
  std::vector<double> values(count * dim);
  for (double& v : values) v = sigma * gen.normal();
  return values;
}

// ---- cos and sin for Branin, each differentiating into the other (so second order holds)

Tensor map_values(const Tensor& x, double (*f)(double)) {
  std::vector<double> values = x.to_vector();
  for (double& v : values) v = f(v);
  return f64(x.shape(), values).to(x.dtype());
}

Tensor sine(const Tensor& x);

Tensor cosine(const Tensor& x) {
  return ag::record("cos", map_values(x, [](double v) { return std::cos(v); }), {x},
                    [x](const Tensor& g, ag::NeedsGrad) { return std::vector<Tensor>{-1.0 * (g * sine(x))}; });
}

Tensor sine(const Tensor& x) {
  return ag::record("sin", map_values(x, [](double v) { return std::sin(v); }), {x},
                    [x](const Tensor& g, ag::NeedsGrad) { return std::vector<Tensor>{g * cosine(x)}; });
}

/// Branin (Dixon & Szegö 1978): (v - b u² + c u - r)² + s (1 - t) cos u + s, min 0.397887 at (-π, 12.275),
/// (π, 2.275) and (3π, 2.475).
Tensor branin(const Tensor& u, const Tensor& v) {
  const double pi = std::numbers::pi;
  const double b = 5.1 / (4 * pi * pi), c = 5 / pi, r = 6, s = 10, t = 1 / (8 * pi);
  Tensor inner = v - b * (u * u) + c * u - r;
  return inner * inner + s * (1 - t) * cosine(u) + s;
}

/// A 2-D problem f(u, v) + u x + v y over rows (x, y), as DeepOBS's two_d data set: 10,000 draws of N(0, 1)
/// for training (seed 42) and validation (seed 44), zeros for the test set.
FunctionProblem two_d(std::function<Tensor(const Tensor&, const Tensor&)> f, double u0, double v0) {
  FunctionProblem p;
  Tensor u = f64(ag::Shape{1}, {u0}), v = f64(ag::Shape{1}, {v0});
  u.set_requires_grad(true);
  v.set_requires_grad(true);
  p.parameters = {{"u", u}, {"v", v}};
  p.dim = 2;
  p.train = normal_draws(10000, 2, 1.0, 42);
  p.validation = normal_draws(10000, 2, 1.0, 44);
  p.test.assign(10000 * 2, 0.0);
  p.loss = [f, u, v](const Tensor& rows) {
    Tensor noise = ag::mean(rows, 0);  // [2]: the mean x and y of the batch
    return f(u, v) + u * ag::narrow(noise, 0, 0, 1) + v * ag::narrow(noise, 0, 1, 1);
  };
  return p;
}

/// f of the test function registered as `name` (problems/functions.hpp), without its noise.
std::function<Tensor(const Tensor&, const Tensor&)> registered_function(const std::string& name) {
  auto f = test_functions().at(name).f;
  return [f](const Tensor& u, const Tensor& v) {
    ag::Generator unused(0);
    return f(u, v, unused);
  };
}

FunctionProblem quadratic_deep() {
  FunctionProblem p;
  const std::size_t dim = 100;
  Tensor theta = Tensor::ones(ag::Shape{dim}, ag::DType::f64);
  theta.set_requires_grad(true);
  p.parameters = {{"theta", theta}};
  p.dim = dim;
  p.train = normal_draws(1000, dim, 0.6, 42);
  p.validation = normal_draws(1000, dim, 0.6, 44);
  p.test = normal_draws(1000, dim, 0.6, 43);
  Tensor hessian = f64(ag::Shape{dim, dim}, deep_quadratic().hessian);
  p.loss = [theta, hessian](const Tensor& rows) {
    Tensor q = theta - rows;  // [n, 100]
    return 0.5 / static_cast<double>(rows.dim(0)) * ag::sum(q * ag::matmul(q, hessian));
  };
  return p;
}

const bool test_problems_registered = [] {
  for (const auto& [prefix, dataset, label] : {std::tuple{"mnist", "mnist", "MNIST"},
                                               std::tuple{"fmnist", "fashion", "Fashion-MNIST"}}) {
    const std::string p = prefix, on = std::string(" on ") + label;
    add_dataset_problem(p + "_logreg", "deepobs_logreg", dataset, p == "mnist" ? 50 : 100, 7850,
                        "logistic regression" + on + ": 784 -> 10, weights and biases 0");
    add_dataset_problem(p + "_mlp", "deepobs_mlp", dataset, 100, 1336610,
                        "MLP 784-1000-500-100-10" + on + ": ReLU, weights truncated N(0, 0.03²), biases 0");
    add_dataset_problem(p + "_2c2d", "deepobs_2c2d", dataset, 100, 3274634,
                        "2c2d" + on + ": 2 x (conv 5x5 same, ReLU, max-pool 2), FC 1024, ReLU, FC 10; truncated "
                        "N(0, 0.05²), biases 0.05");
  }
  add_function_problem("quadratic_deep", 100,
                       "noisy quadratic ½ (θ - x)ᵀ Q (θ - x) in 100-D: Q's eigenvalues 90 in (0, 1), 10 in (30, 60); "
                       "x ~ N(0, 0.6²); θ from 1",
                       quadratic_deep);
  add_function_problem("two_d_rosenbrock", 2, "Rosenbrock + u x + v y, (x, y) ~ N(0, 1); from (-0.5, 1.5)",
                       [] { return two_d(registered_function("rosenbrock"), -0.5, 1.5); });
  add_function_problem("two_d_beale", 2, "Beale + u x + v y, (x, y) ~ N(0, 1); from (-4.5, 4.5)",
                       [] { return two_d(registered_function("beale"), -4.5, 4.5); });
  add_function_problem("two_d_branin", 2, "Branin + u x + v y, (x, y) ~ N(0, 1); from (2.5, 12.5)",
                       [] { return two_d(branin, 2.5, 12.5); });
  return true;
}();

/// A Haar-distributed rotation (orthogonal, determinant ±1): Gram-Schmidt, twice, on a Gaussian matrix, whose
/// triangular factor then has a positive diagonal. Rows are the basis vectors; n x n row-major.
std::vector<double> random_rotation(std::size_t n, ag::Generator& gen) {
  std::vector<double> r(n * n);
  for (double& v : r) v = gen.normal();
  for (std::size_t i = 0; i < n; ++i) {
    double* row = &r[i * n];
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t j = 0; j < i; ++j) {
        const double* basis = &r[j * n];
        double dot = 0;
        for (std::size_t k = 0; k < n; ++k) dot += row[k] * basis[k];
        for (std::size_t k = 0; k < n; ++k) row[k] -= dot * basis[k];
      }
    }
    double norm = 0;
    for (std::size_t k = 0; k < n; ++k) norm += row[k] * row[k];
    norm = std::sqrt(norm);
    for (std::size_t k = 0; k < n; ++k) row[k] /= norm;
  }
  return r;
}

}  // namespace

double FunctionProblem::mean_loss(const std::vector<double>& set) const {
  ag::NoGradGuard no_grad;
  return loss(f64(ag::Shape{rows(set), dim}, set)).item();
}

FunctionBatches::FunctionBatches(const FunctionProblem& problem, const std::string& name, std::size_t batch_size,
                                 std::uint64_t seed)
    : problem_(problem), batch_size_(batch_size), shuffle_(seed), order_(problem.rows(problem.train)) {
  if (batch_size == 0 || batch_size > order_.size()) {
    throw std::invalid_argument(fmt::format("test problem '{}': batch size {} (between 1 and its {} training rows)",
                                            name, batch_size, order_.size()));
  }
  std::iota(order_.begin(), order_.end(), std::size_t{0});
}

void FunctionBatches::begin_epoch() {
  for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[shuffle_.below(i)]);
}

Tensor FunctionBatches::batch(std::size_t b) const {
  const std::size_t dim = problem_.dim;
  std::vector<double> rows;
  rows.reserve(batch_size_ * dim);
  for (std::size_t i = b * batch_size_; i < (b + 1) * batch_size_; ++i) {
    const auto begin = problem_.train.begin() + static_cast<std::ptrdiff_t>(order_[i] * dim);
    rows.insert(rows.end(), begin, begin + static_cast<std::ptrdiff_t>(dim));
  }
  return f64(ag::Shape{batch_size_, dim}, rows);
}

config::Registry<TestProblem>& test_problems() {
  static config::Registry<TestProblem> registry("test problem");
  return registry;
}

DeepQuadratic deep_quadratic(std::uint64_t seed) {
  const std::size_t n = 100;
  ag::Generator gen(seed);
  DeepQuadratic q;
  for (std::size_t i = 0; i < n; ++i) q.eigenvalues.push_back(i < 90 ? gen.uniform01() : 30 + 30 * gen.uniform01());
  const std::vector<double> r = random_rotation(n, gen);
  q.hessian.assign(n * n, 0.0);  // Q = Rᵀ D R: Q_ij = Σ_k R_ki d_k R_kj
  for (std::size_t k = 0; k < n; ++k) {
    for (std::size_t i = 0; i < n; ++i) {
      const double a = r[k * n + i] * q.eigenvalues[k];
      for (std::size_t j = 0; j < n; ++j) q.hessian[i * n + j] += a * r[k * n + j];
    }
  }
  return q;
}

std::string problems_help() {
  std::string out;
  for (const std::string& name : test_problems().names()) {
    const TestProblem& p = test_problems().at(name);
    out += fmt::format("  {:<18} {}\n  {:<18} data {}, loss {}, batch {}, {} epochs, {} parameters\n", p.name,
                       p.summary, "", p.is_function() ? "fixed noise" : p.dataset, p.loss, p.batch_size, p.epochs,
                       p.parameters);
  }
  return out;
}

std::string problems_markdown() {
  std::string out = "| problem | what it is | data | batch | epochs | parameters |\n|---|---|---|---:|---:|---:|\n";
  for (const std::string& name : test_problems().names()) {
    const TestProblem& p = test_problems().at(name);
    out += fmt::format("| `{}` | {} | {} | {} | {} | {} |\n", p.name, p.summary,
                       p.is_function() ? "fixed noise" : p.dataset, p.batch_size, p.epochs, p.parameters);
  }
  return out;
}

std::string baselines_markdown(const TestProblem& problem, std::size_t epochs_run) {
  if (problem.baselines.empty()) return "";
  const bool function = problem.is_function();
  std::string text = fmt::format(
      "## DeepOBS's published baselines\n\n"
      "{} as DeepOBS published it (TensorFlow; the baselines/ folder of its repository): each optimiser at the "
      "learning rate DeepOBS's tuning chose, trained for the problem's budget, {} epochs of batch {}; {} after the "
      "last epoch ({}), mean ± sample standard deviation over its seeds.{}{}\n\n{}",
      problem.name, problem.epochs, problem.batch_size, function ? "test loss" : "test accuracy and loss",
      function ? "over the whole batches of its test set" : "on the 9,984 test images of its whole batches",
      function ? " Its noise and Q are NumPy's draws, these are this library's: the same distributions, other "
                 "numbers (its test loss at the start is 353.45; compare the runs' own start)."
               : "",
      epochs_run == problem.epochs
          ? ""
          : fmt::format(" The runs above trained {} epoch{}: not the same point of training.", epochs_run,
                        epochs_run == 1 ? "" : "s"),
      function ? "| optimiser (DeepOBS) | the same here | seeds | final test loss |\n|---|---|---:|---:|\n"
               : "| optimiser (DeepOBS) | the same here | seeds | final test acc (%) | final test loss |\n"
                 "|---|---|---:|---:|---:|\n");
  for (const PublishedBaseline& b : problem.baselines) {
    const std::string accuracy =
        function ? "" : fmt::format(" {:.2f} ± {:.2f} |", 100 * b.final_test_acc, 100 * b.final_test_acc_std);
    text += fmt::format("| {} | `{}` | {} |{} {:.4f} ± {:.4f} |\n", b.deepobs, b.optimizer, b.seeds, accuracy,
                        b.final_test_loss, b.final_test_loss_std);
  }
  return text;
}

std::vector<FunctionEvaluation> train_function_problem(const TestProblem& problem, const std::string& optimizer,
                                                       std::size_t batch_size, std::size_t epochs,
                                                       std::uint64_t seed, std::size_t eval_every) {
  if (!problem.is_function()) {
    throw std::invalid_argument(fmt::format("test problem '{}' is a data-set problem, not a function problem",
                                            problem.name));
  }
  FunctionProblem p = problem.make_function();
  FunctionBatches batches(p, problem.name, batch_size, seed);
  auto method = optim::make_optimizer(optimizer, p.parameters);
  std::vector<FunctionEvaluation> evaluations;
  auto evaluate = [&](std::size_t step) {
    optim::EvalScope at(*method);
    evaluations.push_back({step, p.mean_loss(p.train), p.mean_loss(p.validation), p.mean_loss(p.test)});
  };
  evaluate(0);
  std::size_t step = 0;
  for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
    batches.begin_epoch();
    for (std::size_t b = 0; b < batches.per_epoch(); ++b) {
      const Tensor rows = batches.batch(b);
      const double loss = method->step(optim::Optimizer::LossFn([&] { return p.loss(rows); }));
      ++step;
      if (!std::isfinite(loss)) {
        evaluate(step);
        return evaluations;
      }
      if (eval_every > 0 ? step % eval_every == 0 : b + 1 == batches.per_epoch()) evaluate(step);
    }
  }
  return evaluations;
}

}  // namespace problems
