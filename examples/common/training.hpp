// The training programs' shared core: one configuration, one training run, the same flags everywhere.
// mnist_logreg, mnist_mlp and mnist_cnn are `training_main` with another model; compare_optimizers runs
// `train` over a grid in one process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "examples/common/flags.hpp"
#include "nn/module.hpp"

namespace examples {

struct RunConfig {
  std::string model = "mlp";  // logreg | mlp | cnn
  std::vector<std::size_t> hidden{128, 64};
  std::string init = "default";
  std::string optimizer = "adam";
  double lr = 0;  // 0: the optimiser's default
  std::size_t batch_size = 200;
  std::size_t epochs = 10;
  std::string schedule = "constant";
  double lr_final = 0.001;  // linear: the rate reached after --lr-epochs epochs
  std::size_t lr_epochs = 0;  // linear / cosine: epochs to decay over (0: the run's epochs)
  double lr_tau = 1.0;  // inverse-time: eta0 / (1 + t / tau), t in epochs
  std::size_t lr_step = 10;  // step: multiply by gamma every lr_step epochs
  double lr_gamma = 0.1;  // step / exponential factor
  std::size_t warmup = 0;  // warm-up epochs
  double weight_decay = 0;
  bool decoupled_weight_decay = false;
  std::uint64_t seed = 0;
  std::string dataset = "mnist";
  std::string data_dir;  // empty: the data set's default
  int threads = 1;
  std::size_t validation = 0;  // hold out the last N training samples and evaluate on them instead of test
  std::size_t train_subset = 0;  // train on the first N samples only (0: all)
  std::string log_path;
  std::string save_path;
  std::string resume_path;
  double max_loss = 0;  // > 0: a training loss above it counts as divergence too
  bool progress = true;  // a progress bar when stderr is a terminal
};

struct EpochMetrics {
  std::size_t epoch = 0;
  double train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0, lr = 0, seconds = 0, weight_norm = 0;
};

struct RunResult {
  std::vector<EpochMetrics> epochs;
  bool diverged = false;
  std::string divergence;  // what happened, where
  double best_test_acc = 0;
  double seconds = 0;  // training time, evaluation excluded
  /// The machine-readable last line: "final test_acc=... best_test_acc=... ...".
  std::string final_line() const;
};

struct Datasets {
  data::Dataset train, test;
  std::string test_name = "test";  // "validation" when held out
};

/// Reads the data set the config names (its validation split too).
Datasets load_datasets(const RunConfig& config);

/// The model the config names, from the config's seed.
std::shared_ptr<nn::Module> build_model(const RunConfig& config, std::size_t features, std::size_t classes);

/// Called after every epoch (the programs print it; the lab collects it).
using EpochCallback = std::function<void(const EpochMetrics&)>;

/// Trains and evaluates; stops at the first non-finite loss, or one above max_loss (RunResult::diverged). Same config, seed and
/// thread count: the same numbers, run after run.
RunResult train(const RunConfig& config, const Datasets& datasets, const EpochCallback& on_epoch = {});

/// Declares the flags of a run that the training programs and the lab share (schedule, data, threads, ...),
/// and reads them into `config`; FlagError for bad values.
void add_run_flags(FlagSet& flags);
void read_run_flags(const FlagSet& flags, RunConfig& config);
/// --hidden "128,64" into config.hidden.
void read_hidden_flag(const FlagSet& flags, RunConfig& config);
/// FlagError unless `name` is an optimiser the factory knows and the model supports (newton: logreg only).
void check_optimizer_name(const std::string& flag, const std::string& name, const std::string& model);

/// Declares the flags of a training program: the run flags plus optimizer, lr, batch size, seed, log, save, resume.
void add_training_flags(FlagSet& flags, const std::string& model);
/// The config those flags describe; throws FlagError for bad values.
RunConfig config_from_flags(const FlagSet& flags, const std::string& model);

/// main() of a training program: parses flags, trains, prints per-epoch lines and the final line.
/// Exit codes: 0 done, 2 bad flags or data, 3 diverged.
int training_main(int argc, const char* const* argv, const std::string& model, const std::string& summary);

}  // namespace examples
