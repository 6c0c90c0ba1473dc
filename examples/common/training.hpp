// Training a model as a run's configuration says: the optimiser and the schedule by spec (from the
// registries), mini-batches, per-step learning rates through optim::LRScheduler, evaluation after every
// epoch, checkpoints (every epoch, every N steps, and on Ctrl-C), divergence detection. With
// evaluation_splits (DeepOBS's protocol), also train-eval, validation and test metrics every eval_every
// steps, off the training clock, into their own CSV.
//
//   examples::RunResult r = examples::fit(*model, config, data);             // your model
//   examples::RunResult r = examples::train(config, data);                   // config.model by name
//
// The example programs call fit() on a model defined in their own file; the lab calls train() over a grid.
#pragma once

#include <csignal>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "config/spec.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "nn/loss.hpp"
#include "nn/module.hpp"

namespace optim {
class Optimizer;
class LRScheduler;
}  // namespace optim

namespace examples {

/// The bounds of --epochs and --batch-size (and of the lab's --batch-sizes): past them a run's step count
/// (epochs × steps an epoch) could overflow, or an epoch round to no batch.
inline constexpr std::uint64_t kMaxEpochs = 1'000'000;
inline constexpr std::uint64_t kMaxBatchSize = std::uint64_t{1} << 32;

struct EvalMetrics;

struct RunConfig {
  config::Spec model{"mlp", {}};        // for train(); fit() is given its model
  bool images = false;                  // the model takes [N, C, H, W] (set from the model's registration)
  config::Spec optimizer{"adam", {}};   // resolved: every option written out
  config::Spec schedule{"constant", {}};
  bool lr_per_epoch = false;            // step the schedule once per epoch instead of every batch
  bool no_bias_decay = false;           // biases in a second group with weight_decay = 0
  std::string init = "default";
  std::size_t batch_size = 200;
  std::size_t epochs = 10;
  std::uint64_t seed = 0;
  std::string dataset = "mnist";
  std::string data_dir;                 // empty: the data set's default
  int threads = 1;
  std::size_t validation = 0;           // hold out the last N training samples and evaluate on them instead of test
  std::size_t train_subset = 0;         // train on the first N samples only (0: all)
  std::string log_path;
  std::string save_path;
  std::size_t save_every_steps = 0;     // also checkpoint every N steps (0: at the end of each epoch only)
  std::string resume_path;
  double max_loss = 0;                  // > 0: a training loss above it counts as divergence too
  bool progress = true;                 // a progress bar when stderr is a terminal
  bool detect_anomaly = false;          // ag::DetectAnomalyGuard: the first non-finite value stops the run as diverged
  nn::ClassifierLoss loss = nn::ClassifierLoss::cross_entropy;  // --loss: what is trained, evaluated and tracked
  std::vector<config::Spec> track;      // trackers (examples/common/track.hpp), resolved
  std::string track_log = "track.csv";  // their per-step CSV
  std::string problem;                  // the test problem the run is (problems/test_problems.hpp), if any: the
                                        // last partial batch of an epoch is then dropped, as DeepOBS does
  bool evaluation_splits = false;       // DeepOBS's splits (data::split_for_evaluation), evaluated into eval_log
  std::size_t eval_every = 0;           // with them: steps between evaluations (0: at the end of each epoch)
  std::string eval_log = "eval.csv";    // their CSV, a row per evaluation (empty: none)
  /// Called with each evaluation on the splits as it is made (the lab's run store keeps them for a resume).
  std::function<void(const EvalMetrics&)> on_evaluation;
  std::size_t split_validation = data::kDeepObsSplitSize;  // the validation set's size
  std::size_t split_train_eval = data::kDeepObsSplitSize;  // the train-eval set's size

  /// The optimiser's resolved learning rate.
  double lr() const;
};

struct EpochMetrics {
  std::size_t epoch = 0;
  double train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0, lr = 0, seconds = 0, weight_norm = 0;
  bool partial = false;  // an epoch cut short by Ctrl-C
};

/// One evaluation on DeepOBS's three sets (RunConfig::evaluation_splits): before the first step, then every
/// eval_every steps (or at each epoch's end).
struct EvalMetrics {
  std::size_t step = 0;
  double epoch = 0;    // steps / steps per epoch
  double seconds = 0;  // training time so far (evaluations and trackers excluded)
  double train_eval_loss = 0, train_eval_acc = 0, validation_loss = 0, validation_acc = 0, test_loss = 0,
         test_acc = 0, lr = 0;
};

/// The header of the evaluations' CSV, and one row (an accuracy a function problem lacks: an empty cell).
std::string eval_csv_header();
std::string eval_csv_row(const EvalMetrics& m);
/// Where a training step stands, for the messages of a run that diverges there.
struct StepPlace {
  std::size_t step = 0, batch = 0, epoch = 0;  // counted from 1: the step just taken, its batch in its epoch
  double lr = 0;
  std::size_t batch_size = 0;
};
/// What a run that diverged says: the loss (and --max-loss when it was finite), where, the rate and batch size.
std::string divergence_message(double loss, double max_loss, const StepPlace& at);
/// "diverged: the update of step S (batch B of epoch E) made NAME non-finite, with lr ... and batch size ...;
/// stopping", for the first of `parameters` holding a NaN or an infinity after the update (its loss, of the
/// weights before, was finite); "" when all are finite. One vectorisable pass over each parameter.
std::string weights_divergence(const std::vector<nn::NamedTensor>& parameters, const StepPlace& at);
/// "diverged: WHAT at step S (batch B of epoch E), with lr ... and batch size ...; stopping": a step whose
/// method broke down numerically (optim::NumericalBreakdown, e.g. a Hessian that is not finite).
std::string breakdown_message(const std::string& what, const StepPlace& at);

struct RunResult {
  std::vector<EpochMetrics> epochs;
  std::vector<EvalMetrics> evaluations;  // with evaluation_splits
  double evaluation_seconds = 0;         // time spent in them, kept out of `seconds`
  bool diverged = false;
  bool interrupted = false;  // stopped by SIGINT after finishing its step
  bool failed = false;       // the lab: the run threw (an error, not a divergence); divergence says why
  std::string divergence;    // what happened, where
  double best_test_acc = 0;
  double seconds = 0;        // training time, evaluation excluded
  std::size_t steps = 0;     // steps taken, a resumed run's earlier ones included
  /// Seconds each tracker took (kept out of `seconds`), by its spec.
  std::vector<std::pair<std::string, double>> tracking_seconds;
  /// The machine-readable last line: "final test_acc=... best_test_acc=... ...", the set evaluated on named
  /// `eval` ("final validation_acc=..." under --validation); nan for metrics no finished epoch measured.
  std::string final_line(const std::string& eval = "test") const;
};

struct Datasets {
  data::Dataset train, test;
  std::string test_name = "test";  // "validation" when held out
  data::Dataset train_eval, validation;  // DeepOBS's splits (RunConfig::evaluation_splits); else empty
};

/// Called after every epoch (the programs print it; the lab collects it).
using EpochCallback = std::function<void(const EpochMetrics&)>;

/// Reads the data set the config names (its validation split, or DeepOBS's splits, too); none for a function
/// problem.
Datasets load_datasets(const RunConfig& config);

/// The name load_datasets gives the set evaluated at each epoch's end: "validation" under --validation, else "test".
std::string evaluation_set_name(const RunConfig& config);

/// Whether config.problem is a function problem (quadratic_deep, two_d_*: problems/test_problems.hpp), which
/// has parameters and fixed noise instead of a model and a data set.
bool is_function_problem(const RunConfig& config);
/// Trains the function problem config.problem as fit() trains a model (function_training.cpp): the optimiser and
/// schedule of the config, DeepOBS's batches of its training noise, its three sets' losses at the start and
/// every eval_every steps (or each epoch's end) into `evaluations` and eval_log. Accuracies are NaN (a function
/// has none); the epoch's train_loss is the mean of its batches' losses, test_loss the test set's. No
/// checkpoints (a run takes well under a second): save_path, resume_path and log_path are refused.
RunResult fit_function(const RunConfig& config, const EpochCallback& on_epoch = {});
/// What the programs say of a function problem's runs before they start.
inline constexpr const char* kNoCheckpointsNote =
    "a function problem's runs keep no checkpoints: one stopped before its end starts over";
/// Steps an epoch of a function problem takes (the last partial batch dropped), and its training rows.
std::size_t function_steps_per_epoch(const RunConfig& config);
std::size_t function_training_rows(const RunConfig& config);
/// Whether `schedule` keeps the learning rate constant (no schedule, no warm-up).
bool is_constant_schedule(const config::Spec& schedule);
/// The config's schedule on `optimizer` for a run of `epochs` epochs of `batches_per_epoch` steps, stepped per
/// step or per epoch (lr_per_epoch); nullptr when the rate stays constant or no epoch is trained.
std::unique_ptr<optim::LRScheduler> make_scheduler(const RunConfig& config, optim::Optimizer& optimizer,
                                                   std::size_t batches_per_epoch, std::size_t epochs);

/// config.model built for the data's geometry with the config's initialiser, after nn::manual_seed(config.seed).
std::shared_ptr<nn::Module> build_model(const RunConfig& config, const data::Dataset& train);

/// How fit() draws the training batches for `config` (a test problem drops the last partial batch, as DeepOBS).
data::LoaderOptions loader_options(const RunConfig& config);
/// Steps an epoch of `config` takes over `train`.
std::size_t steps_per_epoch(const RunConfig& config, const data::Dataset& train);

/// Trains `model` in place and evaluates it after every epoch; stops at the first non-finite loss, or one
/// above max_loss, or weights an update made non-finite (checked before they are evaluated, measured or
/// saved), or an optim::NumericalBreakdown (RunResult::diverged), or after the step during which SIGINT arrived when
/// interrupt_flag() is being watched. Same config, seed and thread count: the same numbers, run after run.
RunResult fit(nn::Module& model, const RunConfig& config, const Datasets& datasets, const EpochCallback& on_epoch = {});
/// build_model, then fit; fit_function for a function problem (`datasets` unused).
RunResult train(const RunConfig& config, const Datasets& datasets, const EpochCallback& on_epoch = {});

/// Set (to the signal's number) by the SIGINT and SIGTERM handler that watch_interrupts() installs; fit() stops
/// cleanly when it is set.
volatile std::sig_atomic_t& interrupt_flag();
/// Installs that handler (a second Ctrl-C or SIGTERM kills the process as usual).
void watch_interrupts();

/// Prints the run's header (data, resolved optimiser and schedule, the model's tree, BLAS), fits, prints a
/// line per epoch and the final line. Exit codes: 0 done, 2 bad data or checkpoint, 3 diverged, 130
/// interrupted by Ctrl-C (SIGINT), 143 by SIGTERM.
int run_program(nn::Module& model, const RunConfig& config, const Datasets& datasets);

}  // namespace examples
