// Test problems for benchmarking optimisers, as DeepOBS defines them: a model, its data and its loss, by name.
//
//   name              model (initialisation)                                   data           batch epochs parameters
//   mnist_logreg      784 -> 10 softmax regression (weights and biases 0)      MNIST           128    50      7,850
//   mnist_mlp         784-1000-500-100-10, ReLU (trunc. normal σ 0.03, b 0)    MNIST           128   100  1,336,610
//   mnist_2c2d        conv 5x5x32 same, ReLU, max-pool 2, conv 5x5x64 same,     MNIST           128   100  3,274,634
//                     ReLU, max-pool 2, FC 1024, ReLU, FC 10 (σ 0.05, b 0.05)
//   fmnist_*          the same three on Fashion-MNIST
//   quadratic_deep    ½ (θ - x)ᵀ Q (θ - x), θ ∈ R¹⁰⁰ from 1, Q = Rᵀ D R: 90 eigenvalues U(0, 1) and 10 U(30, 60)
//                     (the spectrum reported for deep networks, Chaudhari et al. 2017), R a Haar rotation;
//                     x ~ N(0, 0.6² I), 1,000 fixed draws per set                                128   100        100
//   two_d_rosenbrock  f(u, v) + u x + v y, (x, y) ~ N(0, 1), 10,000 fixed draws per set; the test set is all
//   two_d_beale       zeros (the deterministic function). Starts (-0.5, 1.5), (-4.5, 4.5), (2.5, 12.5);
//   two_d_branin      f from problems/functions.hpp (rosenbrock, beale) and Branin below   128   100          2
//
// The loss of the data-set problems is the mean softmax cross-entropy; of the function problems, the mean
// over the batch's rows of the function. Batch sizes and epochs are DeepOBS's defaults (deepobs/config.py);
// it gives none for the 2-D problems and fmnist_logreg, which take those of their family. The function
// problems' noise is drawn from this library's generator with DeepOBS's seeds (42 train, 43 test, 44
// validation), so it has DeepOBS's distribution but not NumPy's numbers.
//
// Reference: F. Schneider, L. Balles, P. Hennig, "DeepOBS: A Deep Learning Optimizer Benchmark Suite",
// ICLR 2019; github.com/fsschneider/DeepOBS (testproblems/, datasets/, config.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"
#include "config/registry.hpp"
#include "nn/module.hpp"

namespace problems {

/// A problem whose loss is a function of its parameters and of rows of noise from fixed sets
/// (quadratic_deep, two_d_*). Everything in float64.
struct FunctionProblem {
  std::vector<nn::NamedTensor> parameters;  // at the starting point, requiring grad
  std::size_t dim = 0;                      // numbers per row of noise
  /// Rows x dim, row-major: the training draws, the validation draws, the test draws.
  std::vector<double> train, validation, test;
  /// The mean loss over `rows` ([n, dim], float64), recorded on the tape.
  std::function<ag::Tensor(const ag::Tensor& rows)> loss;
  std::size_t rows(const std::vector<double>& set) const { return dim == 0 ? 0 : set.size() / dim; }
  /// The mean loss over a whole set, without recording.
  double mean_loss(const std::vector<double>& set) const;
};

/// A function problem's training rows in mini-batches, as DeepOBS draws them: a new permutation every epoch
/// (from `seed`), `per_epoch()` whole batches of it, the remainder dropped.
class FunctionBatches {
 public:
  /// std::invalid_argument naming the problem unless 1 <= batch_size <= its training rows.
  FunctionBatches(const FunctionProblem& problem, const std::string& name, std::size_t batch_size, std::uint64_t seed);
  std::size_t per_epoch() const { return order_.size() / batch_size_; }
  /// Draws the next epoch's permutation.
  void begin_epoch();
  /// Batch `b` (< per_epoch()) of the current permutation, [batch_size, dim] in float64.
  ag::Tensor batch(std::size_t b) const;

 private:
  const FunctionProblem& problem_;
  std::size_t batch_size_;
  ag::Generator shuffle_;
  std::vector<std::size_t> order_;
};

/// One of DeepOBS's published baselines for a problem (the baselines/ folder of its repository, DeepOBS 1.1 on
/// TensorFlow, commit 873bbc2): an optimiser at the learning rate DeepOBS's tuning chose for it, trained for the
/// problem's whole budget (epochs) over several seeds. Test metrics after the last epoch, mean and sample
/// standard deviation over those seeds (DeepOBS evaluates whole batches only: 9,984 of the 10,000 test images).
/// A function problem has no accuracy: NaN.
struct PublishedBaseline {
  std::string optimizer;  // the same method as a spec of this library, its rate included
  std::string deepobs;    // what DeepOBS calls it: "MomentumOptimizer (momentum 0.99)"
  std::size_t seeds = 0;
  double final_test_acc = 0, final_test_acc_std = 0;    // accuracy in [0, 1]
  double final_test_loss = 0, final_test_loss_std = 0;
};

struct TestProblem : config::EntryInfo {
  std::string model;            // data-set problems: a model registered in nn::models(); empty for functions
  std::string dataset;          // "mnist" or "fashion"; empty for functions
  std::string loss;             // "cross-entropy" or "the function"
  std::size_t batch_size = 128;
  std::size_t epochs = 100;     // the budget
  std::size_t parameters = 0;   // DeepOBS's count
  /// Function problems only: builds the problem (its parameters at the start, its fixed noise).
  std::function<FunctionProblem()> make_function;
  /// DeepOBS's published baselines, where it has them (fmnist_2c2d); empty otherwise.
  std::vector<PublishedBaseline> baselines;
  /// Why DeepOBS's protocol cannot tune its learning rate on it ("": it can). The 2-D problems' validation loss
  /// f(u, v) + u x̄ + v ȳ is linear in the parameters far out, without a lower bound: a rate that runs away would win.
  std::string untunable;
  bool is_function() const { return static_cast<bool>(make_function); }
};

config::Registry<TestProblem>& test_problems();

/// The registry as text (--list-problems) and as the Markdown table of the README (--markdown --list-problems).
std::string problems_help();
std::string problems_markdown();

/// The problem's published baselines as a Markdown section ("## DeepOBS's published baselines", a table of the
/// optimisers, their specs here, seeds and final test metrics), to set beside runs of `epochs_run` epochs (said
/// when that is not the problem's budget); "" when the problem has none.
std::string baselines_markdown(const TestProblem& problem, std::size_t epochs_run);

/// quadratic_deep's Hessian Q = Rᵀ diag(eigenvalues) R, 100 x 100 row-major, and its eigenvalues.
struct DeepQuadratic {
  std::vector<double> hessian;
  std::vector<double> eigenvalues;
};
DeepQuadratic deep_quadratic(std::uint64_t seed = 42);

/// One evaluation of a function problem: the mean loss on each set.
struct FunctionEvaluation {
  std::size_t step = 0;
  double train_eval_loss = 0, validation_loss = 0, test_loss = 0;
};

/// Trains a function problem with an optimiser spec: epochs of shuffled batches (the remainder dropped, as
/// DeepOBS), evaluated on the three sets before the first step and every `eval_every` steps (0: after every
/// epoch). Stops at a non-finite loss.
std::vector<FunctionEvaluation> train_function_problem(const TestProblem& problem, const std::string& optimizer,
                                                       std::size_t batch_size, std::size_t epochs,
                                                       std::uint64_t seed, std::size_t eval_every = 0);

}  // namespace problems
