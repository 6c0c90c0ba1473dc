// DeepOBS's test problems (problems/test_problems.hpp) and evaluation protocol: the registry, the networks'
// parameter counts and initialisations, quadratic_deep's spectrum, the 2-D problems, the train-eval and
// validation splits, evaluation every K steps (examples/common/training.hpp), the --problem flags, short
// trainings on the real MNIST, and the README's table of problems.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numbers>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>

#include "analysis/dense.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "config/registry.hpp"
#include "data/dataset.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/training.hpp"
#include "nn/models.hpp"
#include "optim/registry.hpp"
#include "problems/test_problems.hpp"

namespace {

namespace fs = std::filesystem;
using examples::RunConfig;

std::shared_ptr<nn::Module> build(const std::string& model, std::uint64_t seed = 0) {
  ag::Generator gen(seed);
  return nn::make_model(config::Spec{model, {}}, nn::ModelContext{.gen = &gen});
}

std::size_t parameter_count(const nn::Module& module) {
  std::size_t count = 0;
  for (const auto& [name, tensor] : module.named_parameters()) count += tensor.numel();
  return count;
}

struct Stats {
  double mean = 0, std = 0, max_abs = 0;
};

Stats stats_of(const ag::Tensor& t) {
  const std::vector<double> v = t.to_vector();
  Stats s;
  for (double x : v) s.mean += x, s.max_abs = std::max(s.max_abs, std::abs(x));
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(s.std / static_cast<double>(v.size()));
  return s;
}

/// The std of N(0, 1) truncated at ±2: sqrt(1 - 2·2φ(2) / (2Φ(2) - 1)).
double truncated_std_factor() {
  const double phi = std::exp(-2.0) / std::sqrt(2 * std::numbers::pi);
  const double mass = std::erf(2.0 / std::numbers::sqrt2);
  return std::sqrt(1 - 4 * phi / mass);
}

/// The weights of a DeepOBS network against its initialisation: truncated N(0, σ²) weights (none beyond 2σ,
/// std 0.8796 σ) and constant biases.
void check_initialisation(const nn::Module& net, double sigma, double bias) {
  for (const auto& param : net.named_parameters()) {
    const std::string& name = param.first;
    const ag::Tensor& tensor = param.second;
    CAPTURE(name);
    const Stats s = stats_of(tensor);
    if (name.ends_with("bias")) {
      CHECK(s.max_abs == doctest::Approx(bias));
      CHECK(s.std == doctest::Approx(0.0));
      continue;
    }
    CHECK(s.max_abs <= 2 * sigma * (1 + 1e-6));
    CHECK(s.max_abs > 1.9 * sigma);  // the tails are there
    // Relative standard error of a std over n draws ~ 1/sqrt(2n): conv1 has 800 weights, 2.5 % per SE.
    const double tolerance = 4 / std::sqrt(2.0 * static_cast<double>(tensor.numel()));
    CHECK(s.std == doctest::Approx(truncated_std_factor() * sigma).epsilon(tolerance));
    CHECK(std::abs(s.mean) < 4 * sigma / std::sqrt(static_cast<double>(tensor.numel())));
  }
}


/// The first n MNIST training images split as DeepOBS does (with smaller sets), and the first n_test test images.
examples::Datasets small_mnist(std::size_t n, std::size_t held_out, std::size_t n_test) {
  static const data::Dataset train = data::load_dataset("mnist", data::Split::train);
  static const data::Dataset test = data::load_dataset("mnist", data::Split::test);
  auto first = [](const data::Dataset& d, std::size_t count) {
    data::Dataset part;
    part.rows = d.rows;
    part.cols = d.cols;
    part.labels.assign(d.labels.begin(), d.labels.begin() + static_cast<std::ptrdiff_t>(count));
    part.images.assign(d.images.begin(), d.images.begin() + static_cast<std::ptrdiff_t>(count * d.features()));
    return part;
  };
  data::EvaluationSplits splits = data::split_for_evaluation(first(train, n), held_out, held_out);
  examples::Datasets sets;
  sets.train = std::move(splits.train);
  sets.train_eval = std::move(splits.train_eval);
  sets.validation = std::move(splits.validation);
  sets.test = first(test, n_test);
  return sets;
}

RunConfig problem_config(const std::string& problem, const std::string& optimizer) {
  const problems::TestProblem& p = problems::test_problems().at(problem);
  RunConfig c;
  c.progress = false;
  c.problem = p.name;
  c.model = config::Spec{p.model, {}};
  c.images = nn::models().at(p.model).images;
  c.optimizer = config::parse_spec(optimizer);
  c.batch_size = p.batch_size;
  c.epochs = 1;
  c.evaluation_splits = true;
  c.eval_log.clear();
  return c;
}

/// The RunConfig the lab's flags give for `args` (with --model and --problem).
RunConfig lab_config_of(std::vector<std::string> args) {
  CLI::App app{"test", "test"};
  examples::RunFlags flags(app, {.with_model = true, .with_optimizer = false, .single_run = false});
  args.insert(args.begin(), "test");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return flags.config();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("test problems: DeepOBS's ten, each with its batch size, budget and parameter count") {
  CHECK(problems::test_problems().names() ==
        std::vector<std::string>{"fmnist_2c2d", "fmnist_logreg", "fmnist_mlp", "mnist_2c2d", "mnist_logreg",
                                 "mnist_mlp", "quadratic_deep", "two_d_beale", "two_d_branin", "two_d_rosenbrock"});
  // The counts by hand: W and b of each layer.
  const std::size_t logreg = 784 * 10 + 10;
  const std::size_t mlp = (784 * 1000 + 1000) + (1000 * 500 + 500) + (500 * 100 + 100) + (100 * 10 + 10);
  const std::size_t two_conv = (5 * 5 * 1 * 32 + 32) + (5 * 5 * 32 * 64 + 64) + (7 * 7 * 64 * 1024 + 1024) +
                               (1024 * 10 + 10);
  CHECK(logreg == 7850);
  CHECK(mlp == 1336610);
  CHECK(two_conv == 3274634);  // DeepOBS's paper: 3,274,634
  for (const std::string& name : problems::test_problems().names()) {
    CAPTURE(name);
    const problems::TestProblem& p = problems::test_problems().at(name);
    CHECK(p.batch_size == 128);
    CHECK(p.epochs == (name == "mnist_logreg" ? 50 : 100));
    if (p.is_function()) {
      const problems::FunctionProblem f = p.make_function();
      std::size_t count = 0;
      for (const auto& [n, t] : f.parameters) count += t.numel();
      CHECK(count == p.parameters);
      CHECK(count == (name == "quadratic_deep" ? 100 : 2));
      continue;
    }
    CHECK(parameter_count(*build(p.model)) == p.parameters);
    const std::size_t expected = name.ends_with("logreg") ? logreg : name.ends_with("_mlp") ? mlp : two_conv;
    CHECK(p.parameters == expected);
    CHECK(p.dataset == (name.starts_with("fmnist") ? "fashion" : "mnist"));
  }
}

TEST_CASE("published baselines: DeepOBS's three for fmnist_2c2d, as specs here, in the lab's Markdown") {
  for (const std::string& name : problems::test_problems().names()) {
    CAPTURE(name);
    const bool published = name == "fmnist_2c2d" || name == "quadratic_deep";
    CHECK(problems::test_problems().at(name).baselines.size() == (published ? 3u : 0u));
  }
  const problems::TestProblem& p = problems::test_problems().at("fmnist_2c2d");
  for (const problems::PublishedBaseline& b : p.baselines) {
    CAPTURE(b.optimizer);
    // Each is a spec the registry takes as it is written (every rate DeepOBS's grid point 10^(k/5)).
    const config::Spec resolved = optim::resolve_optimizer(config::parse_spec(b.optimizer));
    CHECK(resolved.name == config::parse_spec(b.optimizer).name);
    CHECK(b.seeds >= 6);
    CHECK(b.final_test_acc > 0.92);  // DeepOBS's paper: all three near 92 % on fmnist_2c2d
    CHECK(b.final_test_acc < 0.93);
    CHECK(b.final_test_acc_std < 0.005);
    CHECK(b.final_test_loss > 0.6);  // the test loss rises while the accuracy holds: it overfits
  }
  const std::string full = problems::baselines_markdown(p, 100);
  CHECK(full.starts_with("## DeepOBS's published baselines\n"));
  CHECK(full.find("| GradientDescentOptimizer | `sgd(lr=0.15848931925)` | 7 | 92.27 ± 0.13 | 0.6827 ± 0.0219 |") !=
        std::string::npos);
  CHECK(full.find("| AdamOptimizer | `adam(lr=0.00025118864315)` | 6 | 92.43 ± 0.31 | 0.6363 ± 0.0299 |") !=
        std::string::npos);
  CHECK(full.find("not the same point") == std::string::npos);
  CHECK(problems::baselines_markdown(p, 5).find("The runs above trained 5 epochs: not the same point") !=
        std::string::npos);
  CHECK(problems::baselines_markdown(problems::test_problems().at("mnist_mlp"), 100).empty());
  // The lab's summary.md and the protocol's performance.md end with it.
  RunConfig run = lab_config_of({"--problem", "fmnist_2c2d", "--epochs", "1"});
  CHECK(examples::lab::baselines_section(run) == "\n" + problems::baselines_markdown(p, 1));
  CHECK(examples::lab::baselines_section(lab_config_of({"--problem", "mnist_mlp"})).empty());
  CHECK(examples::lab::baselines_section(lab_config_of({})).empty());
}

TEST_CASE("published baselines: quadratic_deep's three, losses only (a function has no accuracy)") {
  const problems::TestProblem& p = problems::test_problems().at("quadratic_deep");
  for (const problems::PublishedBaseline& b : p.baselines) {
    CAPTURE(b.optimizer);
    CHECK(optim::resolve_optimizer(config::parse_spec(b.optimizer)).name == config::parse_spec(b.optimizer).name);
    CHECK(b.seeds >= 3);
    CHECK(std::isnan(b.final_test_acc));
    CHECK(std::isnan(b.final_test_acc_std));
    CHECK(b.final_test_loss > 87);  // DeepOBS's paper: all three end near 87 on quadratic_deep
    CHECK(b.final_test_loss < 87.5);
    CHECK(b.final_test_loss_std < 0.2);
  }
  const std::string text = problems::baselines_markdown(p, 100);
  CHECK(text.find("| optimiser (DeepOBS) | the same here | seeds | final test loss |\n") != std::string::npos);
  CHECK(text.find("| GradientDescentOptimizer | `sgd(lr=0.015848931925)` | 4 | 87.4419 ± 0.1893 |") !=
        std::string::npos);
  CHECK(text.find("| AdamOptimizer | `adam(lr=0.039810717055)` | 5 | 87.1060 ± 0.0243 |") != std::string::npos);
  CHECK(text.find("acc") == std::string::npos);
  CHECK(text.find("its test loss at the start is 353.45") != std::string::npos);
  CHECK(text.find("9,984") == std::string::npos);  // images: the data-set problems' words
}

/// The lab's run of quadratic_deep for `epochs` epochs, quiet, seed 3 (its optimiser still to be set).
RunConfig quadratic_config(std::size_t epochs) {
  RunConfig c = lab_config_of({"--problem", "quadratic_deep", "--epochs", std::to_string(epochs)});
  c.progress = false;
  c.eval_log.clear();
  c.seed = 3;
  return c;
}

TEST_CASE("function problems in the programs: train() trains them as problems::train_function_problem does, "
          "losses only, the mean batch loss per epoch") {
  RunConfig c = quadratic_config(3);
  CHECK(c.problem == "quadratic_deep");
  CHECK(c.batch_size == 128);
  CHECK(c.evaluation_splits);
  CHECK(examples::is_function_problem(c));
  CHECK_FALSE(examples::is_function_problem(lab_config_of({"--problem", "mnist_mlp"})));
  CHECK(examples::load_datasets(c).train.size() == 0);  // no data set to read
  CHECK(examples::steps_per_epoch(c, {}) == 7);        // 1,000 draws in batches of 128
  c.optimizer = optim::resolve_optimizer(config::parse_spec("sgd(lr=0.01)"));
  std::vector<examples::EpochMetrics> seen;
  const examples::RunResult r = examples::train(c, {}, [&](const examples::EpochMetrics& m) { seen.push_back(m); });
  const problems::TestProblem& quadratic = problems::test_problems().at("quadratic_deep");
  const auto library = problems::train_function_problem(quadratic, "sgd(lr=0.01)", 128, 3, 3);
  CHECK_FALSE(r.diverged);
  CHECK(r.steps == 21);
  REQUIRE(r.epochs.size() == 3);
  CHECK(seen.size() == 3);
  REQUIRE(r.evaluations.size() == library.size());  // the start and each epoch's end
  for (std::size_t k = 0; k < library.size(); ++k) {
    CAPTURE(k);
    CHECK(r.evaluations[k].step == library[k].step);
    CHECK(r.evaluations[k].train_eval_loss == library[k].train_eval_loss);  // the same batches, the same bits
    CHECK(r.evaluations[k].validation_loss == library[k].validation_loss);
    CHECK(r.evaluations[k].test_loss == library[k].test_loss);
    CHECK(std::isnan(r.evaluations[k].validation_acc));
  }
  for (std::size_t e = 0; e < 3; ++e) {
    CHECK(r.epochs[e].epoch == e + 1);
    CHECK(r.epochs[e].test_loss == library[e + 1].test_loss);
    CHECK(std::isnan(r.epochs[e].test_acc));
    CHECK(std::isnan(r.epochs[e].train_acc));
    CHECK(r.epochs[e].lr == 0.01);
  }
  CHECK(std::isnan(r.best_test_acc));
  CHECK(r.evaluation_seconds > 0);  // timed, off the training clock
}

TEST_CASE("function problems: DeepOBS's batches, each epoch 7 x 128 distinct draws of the 1,000, reordered, "
          "the same for the same seed") {
  const problems::TestProblem& quadratic = problems::test_problems().at("quadratic_deep");
  const problems::FunctionProblem q = quadratic.make_function();
  problems::FunctionBatches one(q, "quadratic_deep", 128, 3), again(q, "quadratic_deep", 128, 3);
  std::vector<std::set<std::vector<double>>> epochs(2);
  for (std::size_t e = 0; e < 2; ++e) {
    one.begin_epoch();
    again.begin_epoch();
    for (std::size_t b = 0; b < one.per_epoch(); ++b) {
      const std::vector<double> rows = one.batch(b).to_vector();
      CHECK(rows == again.batch(b).to_vector());
      for (std::size_t i = 0; i < 128; ++i) {
        const std::vector<double> row(rows.begin() + static_cast<std::ptrdiff_t>(i * 100),
                                      rows.begin() + static_cast<std::ptrdiff_t>((i + 1) * 100));
        CHECK(std::search(q.train.begin(), q.train.end(), row.begin(), row.end()) != q.train.end());
        epochs[e].insert(row);
      }
    }
    CHECK(epochs[e].size() == 7 * 128);
  }
  CHECK(epochs[0] != epochs[1]);
}

TEST_CASE("function problems in the programs: the loss at lr 0, evaluations every K steps, Ctrl-C, no epochs") {
  RunConfig c = quadratic_config(2);
  const problems::TestProblem& quadratic = problems::test_problems().at("quadratic_deep");
  c.optimizer = optim::resolve_optimizer(config::parse_spec("sgd(lr=0)"));
  // At lr 0 nothing moves: an epoch's training loss is the mean of its 7 batches' losses at the start.
  const examples::RunResult still = examples::train(c, {});
  const problems::FunctionProblem fp = quadratic.make_function();
  problems::FunctionBatches batches(fp, "quadratic_deep", 128, 3);
  for (std::size_t e = 0; e < 2; ++e) {
    batches.begin_epoch();
    double sum = 0;
    for (std::size_t b = 0; b < batches.per_epoch(); ++b) {
      ag::NoGradGuard no_grad;
      sum += fp.loss(batches.batch(b)).item();
    }
    CHECK(still.epochs[e].train_loss == doctest::Approx(sum / 7).epsilon(1e-12));
    CHECK(still.epochs[e].test_loss == still.evaluations.front().test_loss);
  }

  // Every K steps; a per-step schedule; no epochs: the start alone.
  c.optimizer = optim::resolve_optimizer(config::parse_spec("adam(lr=0.01)"));
  c.eval_every = 4;
  c.schedule = optim::resolve_schedule(config::parse_spec("cosine"));
  const examples::RunResult every = examples::train(c, {});
  CHECK(every.evaluations.size() == 1 + 14 / 4);
  CHECK(every.evaluations.back().step == 12);
  CHECK(every.epochs.back().lr < every.epochs.front().lr);
  // The clock runs inside an epoch too (evaluations off it): later evaluations, later seconds.
  CHECK(every.evaluations[1].seconds > 0);  // step 4, inside the first epoch
  for (std::size_t k = 1; k < every.evaluations.size(); ++k) {
    CHECK(every.evaluations[k].seconds > every.evaluations[k - 1].seconds);
  }
  CHECK(every.evaluations.back().seconds <= every.seconds);
  CHECK(every.final_line().find("nan") == std::string::npos);  // losses only
  CHECK(every.final_line().starts_with("final test_loss="));
  CHECK(examples::eval_csv_row(every.evaluations.back()).find("nan") == std::string::npos);
  // Ctrl-C: the run stops after the step it came in, the epoch cut short.
  examples::interrupt_flag() = 0;
  c.eval_every = 0;
  std::size_t epochs_seen = 0;
  const examples::RunResult stopped = examples::train(c, {}, [&](const examples::EpochMetrics&) {
    if (++epochs_seen == 1) examples::interrupt_flag() = 1;
  });
  examples::interrupt_flag() = 0;
  CHECK(stopped.interrupted);
  CHECK(stopped.epochs.size() == 1);
  CHECK(stopped.steps == 7);
  c.epochs = 0;
  const examples::RunResult none = examples::train(c, {});
  REQUIRE(none.epochs.size() == 1);
  CHECK(none.epochs[0].epoch == 0);
  CHECK(none.epochs[0].test_loss == still.evaluations.front().test_loss);
  CHECK(none.evaluations.size() == 1);
  CHECK(none.steps == 0);
}

TEST_CASE("function problems in the programs: divergence stops the run saying where; checkpoints and model flags refused") {
  RunConfig c = lab_config_of({"--problem", "quadratic_deep", "--epochs", "100", "--max-loss", "1e6"});
  c.optimizer = optim::resolve_optimizer(config::parse_spec("sgd(lr=1)"));  // lr x 60 > 2: it grows
  c.progress = false;
  c.eval_log.clear();
  const examples::RunResult r = examples::train(c, {});
  CHECK(r.diverged);
  CHECK(r.divergence.find("diverged: the training loss became") != std::string::npos);
  CHECK(r.divergence.find("(above --max-loss 1000000)") != std::string::npos);
  CHECK(r.steps < 100);
  c.save_path = "never.ckpt";
  CHECK(error_of([&] { examples::train(c, {}); }).find("is a function problem: no checkpoints (never.ckpt") !=
        std::string::npos);
  for (const char* flag : {"--track", "--loss", "--no-bias-decay", "--train-subset", "--data"}) {
    CAPTURE(flag);
    std::vector<std::string> args{"--problem", "two_d_beale", flag};
    if (std::string(flag) == "--track") args.push_back("grad-norm");
    if (std::string(flag) == "--loss") args.push_back("mse");
    if (std::string(flag) == "--train-subset") args.push_back("10");
    if (std::string(flag) == "--data") args.push_back("/tmp");
    CHECK(error_of([&] { lab_config_of(args); }).find(std::string("--problem two_d_beale and ") + flag +
                                                      ": a function problem has parameters and fixed noise") !=
          std::string::npos);
  }
}

TEST_CASE("test problems: the networks take MNIST's images and give ten logits") {
  ag::NoGradGuard no_grad;
  ag::Generator gen(1);
  const ag::Tensor flat = ag::Tensor::uniform(ag::Shape{3, 784}, gen, 0, 1);
  const ag::Tensor images = ag::Tensor::uniform(ag::Shape{3, 1, 28, 28}, gen, 0, 1);
  CHECK(build("deepobs_logreg")->forward(flat).shape() == ag::Shape{3, 10});
  CHECK(build("deepobs_mlp")->forward(flat).shape() == ag::Shape{3, 10});
  CHECK(build("deepobs_2c2d")->forward(images).shape() == ag::Shape{3, 10});
  CHECK(nn::models().at("deepobs_2c2d").images);
  CHECK_FALSE(nn::models().at("deepobs_mlp").images);
}

TEST_CASE("test problems: DeepOBS's initialisations (truncated normal weights, constant biases), seeded") {
  SUBCASE("mnist_logreg: all zero") {
    for (const auto& [name, tensor] : build("deepobs_logreg")->named_parameters()) CHECK(stats_of(tensor).max_abs == 0);
  }
  SUBCASE("mnist_mlp: sigma 0.03, biases 0") { check_initialisation(*build("deepobs_mlp"), 0.03, 0.0); }
  SUBCASE("mnist_2c2d: sigma 0.05, biases 0.05") { check_initialisation(*build("deepobs_2c2d"), 0.05, 0.05); }
  SUBCASE("the same seed, the same weights; another seed, others") {
    const auto a = build("deepobs_mlp", 3)->named_parameters(), b = build("deepobs_mlp", 3)->named_parameters();
    const auto c = build("deepobs_mlp", 4)->named_parameters();
    CHECK(a[0].second.to_vector() == b[0].second.to_vector());
    CHECK(a[0].second.to_vector() != c[0].second.to_vector());
  }
  CHECK(truncated_std_factor() == doctest::Approx(0.87962566));
}

TEST_CASE("quadratic_deep: Q is symmetric with 90 eigenvalues in (0, 1) and 10 in (30, 60); the loss by hand") {
  const problems::DeepQuadratic q = problems::deep_quadratic();
  for (std::size_t i = 0; i < 100; ++i) {
    for (std::size_t j = 0; j < i; ++j) CHECK(q.hessian[i * 100 + j] == doctest::Approx(q.hessian[j * 100 + i]));
  }
  const analysis::SymmetricEigen eigen = analysis::symmetric_eigen(q.hessian, 100);
  std::vector<double> drawn = q.eigenvalues;
  std::sort(drawn.begin(), drawn.end());
  for (std::size_t k = 0; k < 100; ++k) CHECK(eigen.values[k] == doctest::Approx(drawn[k]).epsilon(1e-10));
  CHECK(std::count_if(drawn.begin(), drawn.end(), [](double v) { return v > 0 && v < 1; }) == 90);
  CHECK(std::count_if(drawn.begin(), drawn.end(), [](double v) { return v > 30 && v < 60; }) == 10);
  // At θ = 1 on rows of zeros the loss is ½ 1ᵀ Q 1.
  const problems::FunctionProblem p = problems::test_problems().at("quadratic_deep").make_function();
  const double expected = 0.5 * std::accumulate(q.hessian.begin(), q.hessian.end(), 0.0);
  CHECK(p.loss(ag::Tensor::zeros(ag::Shape{4, 100}, ag::DType::f64)).item() == doctest::Approx(expected));
  CHECK(p.rows(p.train) == 1000);
  CHECK(p.rows(p.validation) == 1000);
  CHECK(p.rows(p.test) == 1000);
  CHECK(p.train != p.test);
}

TEST_CASE("two_d problems: the function plus u x + v y; Branin's minimum; derivatives to second order") {
  const problems::FunctionProblem rosenbrock = problems::test_problems().at("two_d_rosenbrock").make_function();
  // (1 + 0.5)² + 100 (1.5 - 0.25)² at the start (-0.5, 1.5), plus u x + v y for the batch's mean (x, y) = (1, 2).
  const ag::Tensor rows = ag::Tensor::from_data(ag::Shape{2, 2}, {0.0, 1.0, 2.0, 3.0}, ag::DType::f64);
  CHECK(rosenbrock.loss(rows).item() == doctest::Approx(158.5 - 0.5 * 1 + 1.5 * 2));
  const problems::FunctionProblem branin = problems::test_problems().at("two_d_branin").make_function();
  ag::Tensor u = branin.parameters[0].second, v = branin.parameters[1].second;
  const ag::Tensor zeros = ag::Tensor::zeros(ag::Shape{1, 2}, ag::DType::f64);
  {
    ag::NoGradGuard no_grad;
    u.copy_(ag::Tensor::from_data(ag::Shape{1}, {std::numbers::pi}, ag::DType::f64));
    v.copy_(ag::Tensor::from_data(ag::Shape{1}, {2.275}, ag::DType::f64));
  }
  const ag::Tensor loss = branin.loss(zeros);
  CHECK(loss.item() == doctest::Approx(0.397887).epsilon(1e-6));
  const std::vector<ag::Tensor> g = ag::grad({loss}, {u, v});
  CHECK(std::abs(g[0].item()) < 1e-12);
  CHECK(std::abs(g[1].item()) < 1e-12);
  for (const char* name : {"two_d_rosenbrock", "two_d_beale", "two_d_branin"}) {
    CAPTURE(name);
    const problems::FunctionProblem p = problems::test_problems().at(name).make_function();
    CHECK(p.rows(p.train) == 10000);
    CHECK(p.rows(p.validation) == 10000);
    CHECK(std::all_of(p.test.begin(), p.test.end(), [](double x) { return x == 0; }));
    CHECK(p.train != p.validation);
  }
  // Branin's first and second derivatives in u through the tape's cos and sin, against the closed form.
  {
    ag::NoGradGuard no_grad;
    u.copy_(ag::Tensor::from_data(ag::Shape{1}, {1.3}, ag::DType::f64));
    v.copy_(ag::Tensor::from_data(ag::Shape{1}, {4.0}, ag::DType::f64));
  }
  const double pi = std::numbers::pi, b = 5.1 / (4 * pi * pi), c = 5 / pi, s = 10, t = 1 / (8 * pi), x = 1.3;
  const double inner = 4.0 - b * x * x + c * x - 6, d_inner = -2 * b * x + c;
  const ag::Tensor du = ag::grad({branin.loss(zeros)}, {u}, {}, {.create_graph = true})[0];
  CHECK(du.item() == doctest::Approx(2 * inner * d_inner - s * (1 - t) * std::sin(x)).epsilon(1e-12));
  const ag::Tensor duu = ag::grad({ag::sum(du)}, {u})[0];
  CHECK(duu.item() == doctest::Approx(2 * d_inner * d_inner - 4 * b * inner - s * (1 - t) * std::cos(x)).epsilon(1e-12));
}

TEST_CASE("function problems: SGD lowers quadratic_deep's losses; an evaluation per epoch, or every K steps") {
  const problems::TestProblem& quadratic = problems::test_problems().at("quadratic_deep");
  // 1,000 rows in batches of 128: 7 steps an epoch, the remainder dropped.
  const auto per_epoch = problems::train_function_problem(quadratic, "sgd(lr=0.01)", 128, 5, 0);
  REQUIRE(per_epoch.size() == 1 + 5);
  CHECK(per_epoch[1].step == 7);
  CHECK(per_epoch.back().step == 35);
  CHECK(per_epoch.back().test_loss < 0.5 * per_epoch.front().test_loss);
  CHECK(per_epoch.back().train_eval_loss < 0.5 * per_epoch.front().train_eval_loss);
  const auto every_k = problems::train_function_problem(quadratic, "sgd(lr=0.01)", 128, 5, 0, 4);
  CHECK(every_k.size() == 1 + 35 / 4);
  CHECK(every_k.back().step == 32);
  // The same seed, the same run.
  CHECK(problems::train_function_problem(quadratic, "sgd(lr=0.01)", 128, 5, 0).back().test_loss ==
        per_epoch.back().test_loss);
  const auto rosenbrock = problems::train_function_problem(problems::test_problems().at("two_d_rosenbrock"),
                                                           "adam(lr=0.01)", 128, 2, 0);
  CHECK(rosenbrock.back().test_loss < rosenbrock.front().test_loss);
  CHECK(rosenbrock.front().test_loss == doctest::Approx(158.5));  // the deterministic function at the start
  CHECK_THROWS_WITH_AS(problems::train_function_problem(quadratic, "sgd", 1001, 1, 0),
                       doctest::Contains("batch size 1001 (between 1 and its 1000 training rows)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(problems::train_function_problem(problems::test_problems().at("mnist_mlp"), "sgd", 128, 1, 0),
                       doctest::Contains("a data-set problem"), std::invalid_argument);
}

TEST_CASE("function problems: an update that makes the parameters non-finite is a divergence, its loss still finite") {
  RunConfig c;  // as --problem quadratic_deep sets it: no model, DeepOBS's splits
  c.progress = false;
  c.problem = "quadratic_deep";
  c.optimizer = config::parse_spec("sgd(lr=1e308)");  // lr times a gradient of ~10 overflows
  c.batch_size = 128;
  c.epochs = 2;
  c.evaluation_splits = true;
  const examples::Datasets none = examples::load_datasets(c);
  const examples::RunResult r = examples::train(c, none);
  REQUIRE(r.diverged);
  MESSAGE(r.divergence);
  CHECK(r.divergence.find("the update of step 1 (batch 1 of epoch 1) made ") != std::string::npos);
  CHECK(r.epochs.empty());
  REQUIRE(r.evaluations.size() == 1);  // the start's only
}

TEST_CASE("evaluation every K steps: none on weights an update made non-finite (only the start's)") {
  const examples::Datasets sets = small_mnist(2500, 500, 500);
  RunConfig c = problem_config("mnist_logreg", "sgd(lr=1e45)");  // inf in float32: the first update overflows
  c.batch_size = 100;
  c.eval_every = 1;
  const examples::RunResult r = examples::train(c, sets);
  REQUIRE(r.diverged);
  CHECK(r.divergence.find("the update of step 1 (batch 1 of epoch 1) made ") != std::string::npos);
  REQUIRE(r.evaluations.size() == 1);
  CHECK(r.evaluations[0].step == 0);
}

TEST_CASE("evaluation every K steps: 1 + steps / K rows in the result and the CSV, off the training clock; none with 0 epochs but the start's") {
  const examples::Datasets sets = small_mnist(2500, 500, 500);  // 2,000 training images: 20 steps of 100 an epoch
  RunConfig c = problem_config("mnist_logreg", "sgd(lr=0.1)");
  c.batch_size = 100;
  c.epochs = 2;
  c.eval_every = 7;
  const fs::path log = fs::temp_directory_path() / "tapegrad_test_problems_eval.csv";
  c.eval_log = log.string();
  const examples::RunResult r = examples::train(c, sets);
  REQUIRE(r.evaluations.size() == 1 + 40 / 7);
  for (std::size_t i = 0; i < r.evaluations.size(); ++i) CHECK(r.evaluations[i].step == 7 * i);
  CHECK(r.evaluations[2].epoch == doctest::Approx(14.0 / 20));
  // Zero weights: every set's loss starts at ln 10, and training lowers each.
  CHECK(r.evaluations.front().train_eval_loss == doctest::Approx(std::log(10.0)).epsilon(1e-6));
  CHECK(r.evaluations.front().validation_loss == doctest::Approx(std::log(10.0)).epsilon(1e-6));
  CHECK(r.evaluations.back().validation_loss < 0.8 * std::log(10.0));
  CHECK(r.evaluations.back().train_eval_loss < r.evaluations.front().train_eval_loss);
  CHECK(r.evaluations.back().test_loss < r.evaluations.front().test_loss);
  CHECK(r.evaluation_seconds > 0);
  for (std::size_t i = 1; i < r.evaluations.size(); ++i) {
    CHECK(r.evaluations[i].seconds >= r.evaluations[i - 1].seconds);
  }
  CHECK(r.evaluations.back().seconds <= r.seconds);
  std::ifstream file(log);
  const std::string csv((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  CHECK(csv.rfind(examples::eval_csv_header(), 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == static_cast<std::ptrdiff_t>(1 + r.evaluations.size()));
  fs::remove(log);

  c.eval_every = 0;  // once per epoch, after the start
  c.eval_log.clear();
  const examples::RunResult per_epoch = examples::train(c, sets);
  REQUIRE(per_epoch.evaluations.size() == 3);
  CHECK(per_epoch.evaluations[2].step == 40);
  CHECK(per_epoch.evaluations[2].test_acc == per_epoch.epochs[1].test_acc);

  c.epochs = 0;  // only evaluates: the splits too, once, at the start
  const examples::RunResult none = examples::train(c, sets);
  REQUIRE(none.evaluations.size() == 1);
  CHECK(none.evaluations[0].step == 0);
  CHECK(none.evaluations[0].validation_loss == per_epoch.evaluations[0].validation_loss);
  CHECK(none.evaluations[0].test_acc == none.epochs[0].test_acc);
  c.epochs = 2;

  examples::Datasets no_splits = sets;
  no_splits.validation = {};
  CHECK(error_of([&] { examples::train(c, no_splits); }).find("no train-eval or validation set") != std::string::npos);
}

TEST_CASE("a short training of mnist_mlp on the real MNIST lowers the validation loss") {
  const examples::Datasets sets = small_mnist(6000, 1000, 1000);  // 5,000 training images: 39 steps of 128
  RunConfig c = problem_config("mnist_mlp", "adam(lr=1e-3)");
  const examples::RunResult r = examples::train(c, sets);
  CHECK(r.steps == 39);  // the last partial batch dropped, as DeepOBS
  REQUIRE(r.evaluations.size() == 2);
  MESSAGE("mnist_mlp, Adam lr 1e-3, 39 steps: validation loss " << r.evaluations[0].validation_loss << " -> "
                                                              << r.evaluations[1].validation_loss << ", accuracy "
                                                              << r.evaluations[1].validation_acc);
  CHECK(r.evaluations[1].validation_loss < 0.5 * r.evaluations[0].validation_loss);
  CHECK(r.evaluations[1].validation_acc > 0.8);
}

TEST_CASE("--problem and --eval-every: the problem's model, data, batch size and budget; conflicts refused") {
  RunConfig c = lab_config_of({"--problem", "fmnist_2c2d"});
  CHECK(c.problem == "fmnist_2c2d");
  CHECK(c.model.name == "deepobs_2c2d");
  CHECK(c.images);
  CHECK(c.dataset == "fashion");
  CHECK(c.batch_size == 128);
  CHECK(c.epochs == 100);
  CHECK(c.evaluation_splits);
  CHECK(c.eval_every == 0);
  c = lab_config_of({"--problem", "mnist_logreg", "--epochs", "3", "--eval-every", "50"});
  CHECK(c.epochs == 3);
  CHECK(c.eval_every == 50);
  CHECK(lab_config_of({}).evaluation_splits == false);  // the programs as before
  CHECK(lab_config_of({"--eval-every", "10"}).evaluation_splits);
  CHECK(error_of([] { lab_config_of({"--problem", "mnist_mlp", "--model", "cnn"}); })
            .find("--problem mnist_mlp and --model: the problem sets the model") != std::string::npos);
  CHECK(error_of([] { lab_config_of({"--problem", "quadratic_deep", "--init", "normal"}); })
            .find("--problem quadratic_deep and --init") != std::string::npos);
  CHECK(error_of([] { lab_config_of({"--problem", "cifar10_3c3d"}); }).find("unknown test problem 'cifar10_3c3d'") !=
        std::string::npos);
  CHECK(error_of([] { lab_config_of({"--eval-every", "0"}); }).find("--eval-every: at least 1") != std::string::npos);
  CHECK(error_of([] { lab_config_of({"--eval-log", "x.csv"}); }).find("--eval-log: only with") != std::string::npos);
  CHECK(error_of([] { lab_config_of({"--eval-every", "5", "--validation", "100"}); }).find("--validation") !=
        std::string::npos);
}

TEST_CASE("Fashion-MNIST for the fmnist problems: the original files (first labels), or a clear error") {
  const std::string dir = data::default_fashion_mnist_dir();
  REQUIRE_MESSAGE(fs::exists(dir), "Fashion-MNIST is not in ", dir, " (scripts/setup.sh installs dataset-fashion-mnist)");
  const data::Dataset train = data::load_dataset("fashion", data::Split::train);
  // The first training labels of Fashion-MNIST: ankle boot, T-shirt, T-shirt, dress, T-shirt, pullover, ...
  CHECK(std::vector<std::int32_t>(train.labels.begin(), train.labels.begin() + 10) ==
        std::vector<std::int32_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
  const std::string message = error_of([] { data::load_fashion_mnist(data::Split::train, "/nonexistent-fmnist"); });
  CHECK(message.find("train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] not found") != std::string::npos);
  CHECK(message.find("scripts/fetch-mnist.sh fashion") != std::string::npos);
}

TEST_CASE("README: its table of test problems is the registry's own") {
  std::ifstream file(std::string(TAPEGRAD_SOURCE_DIR) + "/README.md");
  REQUIRE(file);
  const std::string readme((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const std::string table = problems::problems_markdown();
  INFO("README.md is out of date: paste the output of `build/examples/compare_optimizers --markdown --list-problems`:\n"
       << table);
  CHECK(readme.find(table) != std::string::npos);
}
