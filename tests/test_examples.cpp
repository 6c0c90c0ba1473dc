// The training programs' shared core and the optimiser-comparison lab: the command line (RunFlags on
// CLI11, optimiser and schedule specs), short end-to-end runs on the real MNIST (data/mnist, see
// scripts/fetch-mnist.sh), determinism, checkpoint round trips (at epoch ends and mid-epoch), divergence,
// per-step schedules, parameter groups, and the lab's grids, aggregation and outputs (CSV, Markdown, PNG).
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "analysis/hessian.hpp"
#include "analysis/per_sample.hpp"
#include "analysis/spectrum.hpp"
#include "autograd/anomaly.hpp"
#include "autograd/ops.hpp"
#include "config/registry.hpp"
#include "config/spec.hpp"
#include "data/loader.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/protocol.hpp"
#include "examples/common/resume.hpp"
#include "examples/common/track.hpp"
#include "examples/common/training.hpp"
#include "examples/common/workers.hpp"
#include "nn/checkpoint.hpp"
#include "nn/layers.hpp"
#include "nn/loss.hpp"
#include "nn/models.hpp"
#include "nn/module.hpp"
#include "nn/norm.hpp"
#include "optim/registry.hpp"
#include "lab_test_support.hpp"

namespace {

using namespace lab_test;
namespace fs = std::filesystem;
using examples::FlagError;
using examples::RunConfig;
using examples::RunResult;

/// The RunConfig a program's flags give (RunFlags on a fresh app); REQUIREs that parsing goes on.
RunConfig config_of(std::vector<std::string> args, examples::RunFlagsOptions options = {}) {
  CLI::App app{"test", "program"};
  examples::RunFlags flags(app, options);
  REQUIRE(parse(app, std::move(args)) == -1);
  return flags.config();
}

/// The message of the FlagError or config::SpecError `f` throws.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const FlagError& error) {
    return error.what();
  } catch (const config::SpecError& error) {
    return error.what();
  }
  return "(no FlagError or SpecError)";
}

config::Spec spec(const std::string& text) { return config::parse_spec(text); }

/// MNIST, read once.
const examples::Datasets& mnist() {
  static const examples::Datasets sets = examples::load_datasets(RunConfig{});
  return sets;
}

/// The first n training images and the whole test set.
examples::Datasets mnist_subset(std::size_t n) {
  const examples::Datasets& all = mnist();
  examples::Datasets sets;
  sets.train.rows = all.train.rows;
  sets.train.cols = all.train.cols;
  sets.train.labels.assign(all.train.labels.begin(), all.train.labels.begin() + static_cast<std::ptrdiff_t>(n));
  sets.train.images.assign(all.train.images.begin(),
                           all.train.images.begin() + static_cast<std::ptrdiff_t>(n * all.train.features()));
  sets.test = all.test;
  return sets;
}

RunConfig quiet_config() {
  RunConfig c;
  c.progress = false;
  return c;
}

/// A quiet run of `model` (a spec) at the given batch size for the given number of epochs.
RunConfig quiet_config(const std::string& model, std::size_t batch_size, std::size_t epochs) {
  RunConfig c = quiet_config();
  c.model = spec(model);
  c.batch_size = batch_size;
  c.epochs = epochs;
  return c;
}

/// An SGD run (lr 0.1, batches of 100, one epoch) of `model` measured by `trackers` into the temporary `log`.
RunConfig tracked_config(const std::string& model, const std::vector<std::string>& trackers, const std::string& log) {
  RunConfig c = quiet_config(model, 100, 1);
  c.optimizer = optim::resolve_optimizer(spec("sgd(lr=0.1)"));
  for (const std::string& tracker : trackers) c.track.push_back(examples::resolve_tracker(spec(tracker)));
  c.track_log = temp_path(log).string();
  return c;
}

/// The lines of a text file.
std::vector<std::string> lines_of(const fs::path& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void check_same(const examples::EpochMetrics& a, const examples::EpochMetrics& b) {
  CHECK(a.epoch == b.epoch);
  // Bit for bit: these are exact comparisons on purpose.
  CHECK(a.train_loss == b.train_loss);
  CHECK(a.train_acc == b.train_acc);
  CHECK(a.test_loss == b.test_loss);
  CHECK(a.test_acc == b.test_acc);
  CHECK(a.lr == b.lr);
  CHECK(a.weight_norm == b.weight_norm);
}

std::size_t line_count(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

std::vector<std::string> texts_of(const std::vector<config::Spec>& specs) {
  std::vector<std::string> texts;
  for (const config::Spec& s : specs) texts.push_back(s.text());
  return texts;
}

}  // namespace

// ---------------------------------------------------------------- the command line

TEST_CASE("RunFlags reads the shared flags into a RunConfig, the optimiser and schedule as resolved specs") {
  RunConfig c = config_of({"--optimizer", "nadam", "--lr", "2e-3", "--batch-size", "64", "--schedule", "linear",
                           "--lr-final", "1e-4", "--epochs", "3", "--seed", "7", "--weight-decay", "1e-4", "--init",
                           "normal", "--validation", "10000", "--train-subset", "500", "--no-bias-decay",
                           "--lr-per-epoch", "--save", "x.ckpt", "--save-every", "50"});
  CHECK(c.optimizer.name == "nadam");
  CHECK(*c.optimizer.find("lr") == "0.002");
  CHECK(*c.optimizer.find("weight_decay") == "0.0001");
  CHECK(c.optimizer.find("beta2") != nullptr);  // resolved: every option written out
  CHECK(c.lr() == 2e-3);
  CHECK(c.batch_size == 64);
  CHECK(c.schedule.name == "linear");
  CHECK(*c.schedule.find("final") == "0.0001");
  CHECK(c.lr_per_epoch);
  CHECK(c.no_bias_decay);
  CHECK(c.epochs == 3);
  CHECK(c.seed == 7);
  CHECK(c.init == "normal");
  CHECK(c.validation == 10000);
  CHECK(c.train_subset == 500);
  CHECK(c.save_path == "x.ckpt");
  CHECK(c.save_every_steps == 50);

  RunConfig defaults = config_of({});
  CHECK(defaults.optimizer.name == "adam");
  CHECK(defaults.lr() == 1e-3);  // the optimiser's registered default
  CHECK(defaults.batch_size == 200);
  CHECK_FALSE(defaults.lr_per_epoch);

  RunConfig by_spec = config_of({"--optimizer", "momentum(lr=0.05,momentum=0.95)"});
  CHECK(*by_spec.optimizer.find("momentum") == "0.95");
  CHECK(by_spec.lr() == 0.05);

  RunConfig model = config_of({"--model", "mlp", "--hidden", "300,100,100"}, {.with_model = true});
  CHECK(model.model.name == "mlp");
  CHECK(*model.model.find("hidden") == "[300,100,100]");
}

TEST_CASE("RunFlags refuses unknown names, keys and bad values, naming the flag or the key and the range") {
  CHECK(error_of([] { config_of({"--optimizer", "adamx"}); }).find("adamx") != std::string::npos);
  std::string misspelt = error_of([] { config_of({"--optimizer", "adam(betta2=0.9)"}); });
  CHECK(misspelt.find("adam") != std::string::npos);
  CHECK(misspelt.find("betta2") != std::string::npos);
  std::string range = error_of([] { config_of({"--optimizer", "adam(beta2=1.5)"}); });
  CHECK(range.find("beta2") != std::string::npos);
  CHECK(range.find("[0, 1)") != std::string::npos);
  CHECK(error_of([] { config_of({"--schedule", "sawtooth"}); }).find("sawtooth") != std::string::npos);
  CHECK(error_of([] { config_of({"--lr", "-0.1"}); }).find("lr") != std::string::npos);
  CHECK(error_of([] { config_of({"--optimizer", "adam(lr=0.1)", "--lr", "0.2"}); }).find("--lr") != std::string::npos);
  CHECK(error_of([] { config_of({"--dataset", "cifar"}); }).find("cifar") != std::string::npos);
  CHECK(error_of([] { config_of({"--weight-decay", "-1"}); }).find("weight_decay") != std::string::npos);
  CHECK(error_of([] { config_of({"--optimizer", "adam(lr=1e999)"}); }).find("lr must be a finite number >= 0") !=
        std::string::npos);
  CHECK(error_of([] { config_of({"--track", "sharpness", "sharpness(every=5)"}); })
            .find("--track: sharpness is given twice") != std::string::npos);
  CHECK(error_of([] { config_of({"--save-every", "10"}); }).find("--save-every") != std::string::npos);
  CHECK(error_of([] { config_of({"--model", "cnn", "--hidden", "64"}, {.with_model = true}); }).find("hidden") !=
        std::string::npos);

  // parse(): 2 for what CLI11 itself refuses (an unknown flag, a missing value, a bad number), 0 for --help.
  auto parsed = [](std::vector<std::string> args) {
    CLI::App app{"test", "program"};
    examples::RunFlags flags(app);
    int code = -99;
    captured(1, [&] { captured(2, [&] { code = parse(app, args); }); });
    return code;
  };
  CHECK(parsed({"--nope", "1"}) == 2);
  CHECK(parsed({"--epochs"}) == 2);
  CHECK(parsed({"--epochs", "many"}) == 2);
  CHECK(parsed({"--lr", "abc"}) == 2);
  CHECK(parsed({"--batch-size", "0"}) == 2);  // whole numbers of at least 1
  CHECK(parsed({"--threads", "0"}) == 2);
  CHECK(parsed({"--epochs", "-1"}) == 2);      // not 2^64 - 1
  CHECK(parsed({"--help"}) == 0);
  CHECK(parsed({"--list-optimizers"}) == 0);
  CHECK(parsed({"--epochs", "2"}) == -1);

  // checked(): a bad spec found after parsing is "program: message" and exit 2.
  std::string err = captured(2, [] {
    CHECK(examples::checked("mnist_mlp", [] { return config_of({"--optimizer", "adam(betta2=0.9)"}).batch_size > 0; }) == 2);
  });
  CHECK(err.rfind("mnist_mlp: ", 0) == 0);
  CHECK(err.find("betta2") != std::string::npos);
}

// ---------------------------------------------------------------- end to end on the real data

// One epoch of Adam at lr 1e-3 on the MLP 784-128-64-10: with batch 200 (300 steps) PyTorch 1.13 reaches 92.7 %
// (bench/pytorch_reference.py --accuracy --workloads w1) and tapegrad 93.4 %; 95 % takes smaller batches, more
// steps: batch 32 (1,875 steps) gives 95.8 %.
TEST_CASE("one epoch of the MLP 784-128-64-10 with Adam reaches 95 % test accuracy") {
  RunConfig c = quiet_config("mlp(hidden=[128,64])", 32, 1);
  c.optimizer = spec("adam(lr=1e-3)");
  std::vector<examples::EpochMetrics> seen;
  RunResult result = examples::train(c, mnist(), [&](const examples::EpochMetrics& m) { seen.push_back(m); });
  REQUIRE_FALSE(result.diverged);
  REQUIRE(result.epochs.size() == 1);
  REQUIRE(seen.size() == 1);
  const examples::EpochMetrics& m = result.epochs.back();
  MESSAGE("batch 32, one epoch: test accuracy ", m.test_acc, ", train loss ", m.train_loss, ", ", m.seconds, " s");
  CHECK(m.test_acc >= 0.95);
  CHECK(m.train_acc > 0.88);
  CHECK(m.test_loss < 0.2);
  CHECK(result.best_test_acc == m.test_acc);
  CHECK(m.lr == 1e-3);
  CHECK(result.steps == 1875);
  CHECK(result.final_line().rfind("final test_acc=", 0) == 0);

  c.batch_size = 200;
  RunResult b200 = examples::train(c, mnist());
  REQUIRE(b200.epochs.size() == 1);
  MESSAGE("batch 200, one epoch: test accuracy ", b200.epochs[0].test_acc, " (PyTorch: 0.9273)");
  CHECK(b200.epochs[0].test_acc >= 0.925);
  CHECK(b200.epochs[0].train_loss < 0.52);  // PyTorch: 0.506
}

TEST_CASE("the same seed gives the same metrics, bit for bit; another seed does not") {
  examples::Datasets sets = mnist_subset(6000);
  RunConfig c = quiet_config("mlp(hidden=[64])", 100, 2);
  c.seed = 3;
  RunResult a = examples::train(c, sets);
  RunResult b = examples::train(c, sets);
  REQUIRE(a.epochs.size() == 2);
  REQUIRE(b.epochs.size() == 2);
  for (std::size_t e = 0; e < 2; ++e) check_same(a.epochs[e], b.epochs[e]);
  c.seed = 4;
  RunResult other = examples::train(c, sets);
  CHECK(other.epochs.back().train_loss != a.epochs.back().train_loss);
}

TEST_CASE("an optimiser's evaluation point is what the programs evaluate: ema's average, not the weights") {
  examples::Datasets sets = mnist_subset(3000);
  RunConfig c = quiet_config("mlp(hidden=[32])", 100, 1);
  c.optimizer = spec("adam");
  RunResult plain = examples::train(c, sets);
  c.optimizer = spec("ema(inner=adam,decay=0.9)");
  RunResult averaged = examples::train(c, sets);
  REQUIRE(plain.epochs.size() == 1);
  REQUIRE(averaged.epochs.size() == 1);
  // The same training (the average never feeds back), another model evaluated.
  CHECK(averaged.epochs[0].train_loss == plain.epochs[0].train_loss);
  CHECK(averaged.epochs[0].test_loss != plain.epochs[0].test_loss);
}

/// The run of `c` stopped as by Ctrl-C at its first epoch's end (its checkpoint, if any, written).
RunResult first_epoch_of(const RunConfig& c, const examples::Datasets& sets) {
  RunResult first = examples::train(c, sets, [](const examples::EpochMetrics&) { examples::interrupt_flag() = 1; });
  examples::interrupt_flag() = 0;
  CHECK(first.interrupted);
  return first;
}

TEST_CASE("resume: one epoch, save, one more epoch equals two epochs straight") {
  examples::Datasets sets = mnist_subset(6000);
  fs::path checkpoint = temp_path("resume.ckpt");
  // The schedule must pick up at the right step too, with its horizon given (epochs=2), or taken from the
  // run (the epochs before the resume plus --epochs: stepped per epoch, so that the first epoch is the same).
  struct Case {
    const char *optimizer, *schedule;
    bool per_epoch;
  };
  for (const Case& run : {Case{"adam", "linear(final=1e-4,epochs=2)", false},
                          Case{"momentum", "linear(final=1e-3,epochs=2)", false},
                          Case{"momentum", "linear(final=1e-3)", true},
                          Case{"ema(inner=lookahead(inner=adam),decay=0.9)", "constant", false}}) {
    const char* optimizer = run.optimizer;
    const char* schedule = run.schedule;
    CAPTURE(optimizer);
    CAPTURE(schedule);
    RunConfig c = quiet_config();
    c.model = spec("mlp(hidden=[64,32])");
    c.optimizer = spec(optimizer);
    c.schedule = spec(schedule);
    c.lr_per_epoch = run.per_epoch;
    c.batch_size = 100;
    c.seed = 11;

    c.epochs = 2;
    RunResult straight = examples::train(c, sets);

    // The same 2-epoch run, stopped (as by Ctrl-C) after its first epoch, then resumed for the epoch left.
    c.save_path = checkpoint.string();
    RunResult first = first_epoch_of(c, sets);
    REQUIRE(fs::exists(checkpoint));
    c.save_path.clear();
    c.resume_path = checkpoint.string();
    c.epochs = 1;
    RunResult resumed = examples::train(c, sets);

    REQUIRE(straight.epochs.size() == 2);
    REQUIRE(first.epochs.size() == 1);
    REQUIRE(resumed.epochs.size() == 1);
    check_same(first.epochs[0], straight.epochs[0]);
    check_same(resumed.epochs[0], straight.epochs[1]);
    CHECK(resumed.best_test_acc == straight.best_test_acc);
    CHECK(resumed.steps == straight.steps);

    // --resume FILE --epochs 0 only evaluates the saved model: the first epoch's numbers on the test set.
    c.epochs = 0;
    RunResult evaluated = examples::train(c, sets);
    REQUIRE(evaluated.epochs.size() == 1);
    CHECK(evaluated.epochs[0].test_acc == first.epochs[0].test_acc);
    CHECK(evaluated.epochs[0].test_loss == first.epochs[0].test_loss);
  }
  fs::remove(checkpoint);
}

TEST_CASE("resume: a schedule over the whole run keeps the run's length; one that does not depend on it may go on") {
  examples::Datasets sets = mnist_subset(500);
  const fs::path checkpoint = temp_path("horizon.ckpt");
  RunConfig c = quiet_config("mlp(hidden=[16])", 100, 3);
  c.optimizer = spec("sgd(lr=0.1)");
  c.save_path = checkpoint.string();
  // A run of `epochs` with `schedule`, stopped after its first epoch; c then resumes it.
  auto stopped = [&](const char* schedule, std::size_t epochs) {
    c.schedule = spec(schedule);
    c.epochs = epochs;
    c.resume_path.clear();
    first_epoch_of(c, sets);
    c.resume_path = checkpoint.string();
  };
  for (const char* schedule : {"cosine", "linear(final=0.01)", "cosine(warmup=2)"}) {  // the last: only its end tells
    CAPTURE(schedule);
    stopped(schedule, 3);
    c.epochs = 3;  // 3 more: a run of 4, where the schedule was laid over 3
    const std::string expected = "checkpoint " + checkpoint.string() + ": the schedule " + c.schedule.text() +
                                 " spans the whole run, 3 epochs when it started; resuming after epoch 1 with --epochs "
                                 "3 would make it 4 and change its rates from here on (--epochs 2 finishes it)";
    CHECK_THROWS_WITH_AS(examples::train(c, sets), doctest::Contains(expected.c_str()), std::runtime_error);
    c.epochs = 2;
    CHECK(examples::train(c, sets).epochs.size() == 2);
  }
  // Rates that do not depend on the run's length: a resumed run may be longer than planned.
  for (const char* schedule : {"constant", "constant(warmup=2)", "step(every=1,gamma=0.5)", "linear(final=0.01,epochs=2)"}) {
    CAPTURE(schedule);
    stopped(schedule, 2);
    c.epochs = 3;
    CHECK(examples::train(c, sets).epochs.size() == 3);
  }
  fs::remove(checkpoint);
}

TEST_CASE("--save-every N steps: a mid-epoch checkpoint resumes to the uninterrupted run, bit for bit") {
  examples::Datasets sets = mnist_subset(4000);
  fs::path checkpoint = temp_path("every.ckpt"), copy = temp_path("every_copy.ckpt");
  fs::remove(copy);
  RunConfig c = quiet_config();
  c.model = spec("mlp(hidden=[32])");
  c.optimizer = spec("adam(lr=3e-3)");
  c.schedule = spec("linear(final=1e-4)");
  c.batch_size = 20;  // 200 steps
  c.epochs = 1;
  c.seed = 5;
  c.save_path = checkpoint.string();
  c.save_every_steps = 30;
  // A copy of the first mid-epoch checkpoint seen (written atomically, so a copy is whole): the state of a
  // run killed there. The run itself goes on to the end of the epoch: the uninterrupted run.
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done) {
      std::error_code error;
      if (fs::exists(checkpoint) && fs::copy_file(checkpoint, copy, error)) return;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  RunResult straight = examples::train(c, sets);
  done = true;
  watcher.join();
  REQUIRE(straight.epochs.size() == 1);
  REQUIRE(fs::exists(copy));

  double batch = -1, step = -1;
  for (const auto& [name, tensor] : nn::load_tensors(copy.string())) {
    if (name == "run/batch") batch = tensor.item();
    if (name == "run/step") step = tensor.item();
  }
  MESSAGE("checkpoint copied at step ", step, " (batch ", batch, ")");
  REQUIRE(batch > 0);  // mid-epoch
  CHECK(step == batch);
  CHECK(static_cast<std::size_t>(step) % c.save_every_steps == 0);

  c.save_path.clear();
  c.save_every_steps = 0;
  c.resume_path = copy.string();
  RunResult resumed = examples::train(c, sets);  // finishes the epoch: the batches done are skipped
  REQUIRE(resumed.epochs.size() == 1);
  const examples::EpochMetrics &a = straight.epochs[0], &b = resumed.epochs[0];
  CHECK(b.epoch == 1);
  CHECK(b.test_loss == a.test_loss);  // the weights are the same, bit for bit
  CHECK(b.test_acc == a.test_acc);
  CHECK(b.weight_norm == a.weight_norm);
  CHECK(b.lr == a.lr);
  CHECK(resumed.steps == straight.steps);
  fs::remove(checkpoint);
  fs::remove(copy);
}

TEST_CASE("a method that evaluates its closure again (SAM): the epoch's accuracy is counted where its loss is") {
  // SAM's second evaluation is at perturbed weights; with the inner step's rate 0 the weights never move, so the
  // epoch's training loss and accuracy are exactly the initial model's on the training set (--epochs 0's).
  examples::Datasets sets = mnist_subset(300);
  RunConfig c = quiet_config("mlp(hidden=[32])", 100, 0);
  const examples::EpochMetrics initial = examples::train(c, sets).epochs.back();
  c.epochs = 1;
  c.optimizer = optim::resolve_optimizer(spec("sam(inner=sgd(lr=0),rho=5)"));
  const examples::EpochMetrics epoch = examples::train(c, sets).epochs.back();
  CHECK(epoch.train_acc == initial.train_acc);  // before: the accuracy at the perturbed weights
  CHECK(epoch.train_loss == doctest::Approx(initial.train_loss).epsilon(1e-6));
}

TEST_CASE("a diverging run stops at the first non-finite loss and names the step and the epoch") {
  examples::Datasets sets = mnist_subset(300);
  RunConfig c = quiet_config("mlp(hidden=[128,64])", 1, 3);
  c.optimizer = spec("sgd(lr=50)");
  std::size_t callbacks = 0;
  RunResult result = examples::train(c, sets, [&](const examples::EpochMetrics&) { ++callbacks; });
  REQUIRE(result.diverged);
  MESSAGE(result.divergence);
  CHECK(result.divergence.find("at step ") != std::string::npos);
  CHECK(result.divergence.find("of epoch ") != std::string::npos);
  CHECK(result.divergence.find("lr 50") != std::string::npos);
  // The epochs finished before the one it diverged in are kept, each said once; that one is not.
  const std::size_t at = result.divergence.find("of epoch ");
  REQUIRE(at != std::string::npos);
  const std::size_t epoch = std::stoul(result.divergence.substr(at + 9));
  REQUIRE(epoch >= 1);
  REQUIRE(epoch <= 3);
  CHECK(result.epochs.size() == epoch - 1);
  CHECK(callbacks == epoch - 1);
  for (const auto& m : result.epochs) CHECK(std::isfinite(m.train_loss));
  CHECK(result.final_line().find("diverged=1") != std::string::npos);
}

TEST_CASE("an update that makes the weights non-finite (its loss still finite) is a divergence: nothing evaluated or "
          "saved on them") {
  examples::Datasets sets = mnist_subset(200);
  RunConfig c = quiet_config("logreg", 200, 2);
  c.optimizer = spec("sgd(lr=1e45)");               // inf in float32: the first update overflows the weights
  const fs::path checkpoint = temp_path("nonfinite.ckpt");
  std::ofstream(checkpoint) << "the last good checkpoint";
  c.save_path = checkpoint.string();
  // Checked at the epoch's end (one step an epoch), and before a checkpoint every step (two steps an epoch).
  for (auto [every, batch] : {std::pair<std::size_t, std::size_t>{0, 200}, {1, 100}}) {
    CAPTURE(every);
    c.save_every_steps = every;
    c.batch_size = batch;
    std::size_t callbacks = 0;
    RunResult result = examples::train(c, sets, [&](const examples::EpochMetrics&) { ++callbacks; });
    REQUIRE(result.diverged);
    MESSAGE(result.divergence);
    CHECK(result.divergence.find("the update of step 1 (batch 1 of epoch 1) made ") != std::string::npos);
    CHECK(result.divergence.find(" non-finite, with lr ") != std::string::npos);
    CHECK(result.epochs.empty());  // not evaluated: its metrics would be of non-finite weights
    CHECK(callbacks == 0);
    CHECK(read_file(checkpoint) == "the last good checkpoint");
  }
  c.save_path.clear();
  c.save_every_steps = 0;
  // With a tracker, checked before it measures (a Hessian of non-finite weights would fail the run).
  c.track = {spec("grad-norm")};
  c.track_log = temp_path("nonfinite_track.csv").string();
  RunResult tracked = examples::train(c, sets);
  REQUIRE(tracked.diverged);
  CHECK(tracked.divergence.find("the update of step 1") != std::string::npos);
  fs::remove(checkpoint);
  fs::remove(c.track_log);
}

TEST_CASE("the final line names the set evaluated on, and a run with no finished epoch has no metrics, not zeros") {
  RunResult none;
  none.diverged = true;
  none.steps = 3;
  CHECK(none.final_line() ==
        "final test_acc=nan best_test_acc=nan test_loss=nan train_acc=nan train_loss=nan epochs=0 steps=3 seconds=0.0 "
        "diverged=1");
  RunResult one;
  one.epochs.push_back({.epoch = 1, .train_loss = 0.5, .train_acc = 0.8, .test_loss = 0.25, .test_acc = 0.9});
  one.best_test_acc = 0.9;
  one.steps = 10;
  CHECK(one.final_line("validation") == "final validation_acc=0.9000 best_validation_acc=0.9000 validation_loss=0.2500 "
                                        "train_acc=0.8000 train_loss=0.5000 epochs=1 steps=10 seconds=0.0");
}

TEST_CASE("schedules step every batch: one epoch of --schedule linear ends at --lr-final; --lr-per-epoch does not") {
  examples::Datasets sets = mnist_subset(1000);
  RunConfig c = config_of({"--optimizer", "sgd(lr=0.1)", "--schedule", "linear", "--lr-final", "0.001", "--epochs", "1",
                           "--batch-size", "50", "--no-progress"});
  c.model = spec("mlp(hidden=[16])");
  RunResult per_step = examples::train(c, sets);
  REQUIRE(per_step.epochs.size() == 1);
  MESSAGE("per step: the epoch ends at lr ", per_step.epochs.back().lr);
  CHECK(per_step.epochs.back().lr == doctest::Approx(0.001).epsilon(1e-12));

  c.lr_per_epoch = true;  // the old behaviour: one rate per epoch, the first epoch's is the base rate
  RunResult per_epoch = examples::train(c, sets);
  REQUIRE(per_epoch.epochs.size() == 1);
  CHECK(per_epoch.epochs.back().lr == 0.1);
  c.epochs = 2;
  per_epoch = examples::train(c, sets);
  REQUIRE(per_epoch.epochs.size() == 2);
  CHECK(per_epoch.epochs[1].lr == doctest::Approx(0.0505).epsilon(1e-12));  // halfway from 0.1 to 0.001
}

TEST_CASE("--no-bias-decay: the biases in a group with weight_decay 0") {
  examples::Datasets sets = mnist_subset(1000);
  RunConfig c = config_of({"--optimizer", "sgd(lr=0.1,weight_decay=1)", "--no-bias-decay", "--epochs", "1",
                           "--batch-size", "50", "--no-progress"});
  REQUIRE(c.no_bias_decay);
  auto train_model = [&](const RunConfig& config) {
    RunConfig sized = config;
    sized.model = spec("mlp(hidden=[16])");
    std::shared_ptr<nn::Module> model = examples::build_model(sized, sets.train);
    std::string out = captured(1, [&] { CHECK(examples::run_program(*model, sized, sets) == 0); });
    double bias = 0;
    for (const auto& [name, tensor] : model->named_parameters()) {
      if (name.ends_with("bias")) bias += nn::weight_norm({{name, tensor}});
    }
    return std::pair{out, bias};
  };
  auto [header, kept] = train_model(c);
  CHECK(header.find("(biases: weight_decay=0)") != std::string::npos);
  c.no_bias_decay = false;
  auto [plain_header, decayed] = train_model(c);
  CHECK(plain_header.find("biases") == std::string::npos);
  // 20 steps of w <- w - 0.1 (g + w) shrink decayed biases by about 0.9^20 = 0.12.
  MESSAGE("bias norm with --no-bias-decay ", kept, ", without ", decayed);
  CHECK(kept > 2 * decayed);
}

// ---------------------------------------------------------------- the lab

namespace {

examples::lab::RunRecord record(const std::string& optimizer, std::uint64_t seed, std::vector<double> test_acc,
                                double train_loss, double seconds, bool diverged = false) {
  examples::lab::RunRecord r;
  r.point = {spec(optimizer), 100};
  r.seed = seed;
  for (std::size_t e = 0; e < test_acc.size(); ++e) {
    examples::EpochMetrics m;
    m.epoch = e + 1;
    m.test_acc = test_acc[e];
    m.train_loss = train_loss * static_cast<double>(test_acc.size() - e);
    m.test_loss = 0.1;
    m.lr = 1e-3;
    m.seconds = seconds / static_cast<double>(test_acc.size());
    r.result.epochs.push_back(m);
    r.result.best_test_acc = std::max(r.result.best_test_acc, test_acc[e]);
  }
  r.result.seconds = seconds;
  r.result.diverged = diverged;
  if (diverged) r.result.divergence = "diverged: the training loss became nan at step 9 (batch 9 of epoch 3)";
  return r;
}

}  // namespace

TEST_CASE("lab: mean and sample std over seeds, epochs to a target, diverged runs counted and left out") {
  examples::lab::Stat s = examples::lab::stat_of({1, 2, 3, 4});
  CHECK(s.n == 4);
  CHECK(s.mean == doctest::Approx(2.5));
  CHECK(s.std == doctest::Approx(std::sqrt(5.0 / 3.0)));
  CHECK(examples::lab::stat_of({7}).std == 0);
  CHECK(std::isnan(examples::lab::stat_of({}).mean));

  const std::string adam_spec = "adam(lr=0.001,beta2=0.999)", sgd_spec = "sgd(lr=0.1)";
  std::vector<examples::lab::RunRecord> records{
      record(adam_spec, 0, {0.95, 0.97, 0.975}, 0.1, 2.0),
      record(adam_spec, 1, {0.96, 0.975, 0.98}, 0.2, 4.0),
      record(adam_spec, 2, {0.96, 0.965, 0.968}, 0.3, 3.0),
      record(sgd_spec, 0, {0.90, 0.92, 0.93}, 0.5, 1.0),
      record(sgd_spec, 1, {0.91, 0.92}, 0.5, 1.0, true),
  };
  auto interrupted = record(sgd_spec, 2, {0.5}, 0.5, 1.0);  // cut short by Ctrl-C: written, not summarised
  interrupted.result.interrupted = true;
  records.push_back(interrupted);
  auto summaries = examples::lab::summarise(records, {0.97, 0.98});
  REQUIRE(summaries.size() == 2);
  const auto& adam = summaries[0];
  CHECK(adam.point.optimizer.name == "adam");
  CHECK(adam.runs == 3);
  CHECK(adam.diverged == 0);
  CHECK(adam.final_test_acc.mean == doctest::Approx((0.975 + 0.98 + 0.968) / 3));
  CHECK(adam.final_test_acc.std == doctest::Approx(examples::lab::stat_of({0.975, 0.98, 0.968}).std));
  CHECK(adam.best_test_acc.mean == doctest::Approx((0.975 + 0.98 + 0.968) / 3));
  CHECK(adam.final_train_loss.mean == doctest::Approx(0.2));
  CHECK(adam.seconds.mean == doctest::Approx(3.0));
  REQUIRE(adam.epochs_to.size() == 2);
  CHECK(adam.epochs_to[0].n == 2);  // seeds 0 and 1 reach 97 % (epoch 2 both); seed 2 never does
  CHECK(adam.epochs_to[0].mean == doctest::Approx(2.0));
  CHECK(adam.epochs_to[1].n == 1);  // only seed 1 reaches 98 %, at epoch 3
  CHECK(adam.epochs_to[1].mean == doctest::Approx(3.0));
  const auto& sgd = summaries[1];
  CHECK(sgd.runs == 2);
  CHECK(sgd.diverged == 1);
  CHECK(sgd.final_test_acc.n == 1);
  CHECK(sgd.final_test_acc.mean == doctest::Approx(0.93));
  CHECK(sgd.epochs_to[0].n == 0);

  // lr differs between the two (0.001, 0.1): a column; beta2 is adam's alone: not one.
  std::string md = examples::lab::summary_markdown(summaries);
  MESSAGE("\n", md);
  CHECK(md.find("| optimizer | lr | runs | final test acc (%)") == 0);
  CHECK(md.find("| adam | 0.001 | 3 |") != std::string::npos);
  CHECK(md.find("epochs to 97 %") != std::string::npos);
  CHECK(md.find("epochs to 98 %") != std::string::npos);
  CHECK(md.find("97.43 ± 0.60") != std::string::npos);  // adam's final accuracy, mean ± std in percent
  CHECK(md.find("2.0 ± 0.0 (2/3)") != std::string::npos);
  CHECK(md.find("3.0 ± 0.0 (1/3)") != std::string::npos);
  CHECK(md.find("never") != std::string::npos);   // sgd never reaches 97 %
  CHECK(md.find("sgd ⚠") != std::string::npos);   // marked
  CHECK(md.find("**1 of 2**") != std::string::npos);
  CHECK(line_count(md) == 4);

  // CSVs: optimizer, spec, then one column per key (the union, first-seen order), empty where lacking.
  std::string csv = examples::lab::summary_csv(summaries);
  CHECK(csv.rfind("optimizer,spec,lr,beta2,batch_size,runs,diverged,final_test_acc_mean,final_test_acc_std,", 0) == 0);
  CHECK(csv.find("\nadam,\"adam(lr=0.001,beta2=0.999)\",0.001,0.999,100,3,0,") != std::string::npos);
  CHECK(csv.find("\nsgd,sgd(lr=0.1),0.1,,100,2,1,") != std::string::npos);
  CHECK(csv.find("epochs_to_97_mean,epochs_to_97_std,reached_97") != std::string::npos);
  CHECK(line_count(csv) == 3);
  std::vector<std::string> keys{"lr", "beta2"};
  CHECK(examples::lab::curves_csv_header(keys) ==
        "optimizer,spec,lr,beta2,batch_size,seed,epoch,train_loss,train_acc,test_loss,test_acc,lr_now,seconds\n");
  CHECK(line_count(examples::lab::curves_csv_rows(records[0], keys)) == 3);
  CHECK(examples::lab::curves_csv_rows(records[0], keys).rfind("adam,\"adam(lr=0.001,beta2=0.999)\",0.001,0.999,100,0,1,", 0) == 0);
  CHECK(examples::lab::curves_csv_rows(records[3], keys).rfind("sgd,sgd(lr=0.1),0.1,,100,0,1,", 0) == 0);
  std::string runs = examples::lab::runs_csv(records);
  CHECK(runs.rfind("optimizer,spec,lr,beta2,batch_size,seed,", 0) == 0);
  CHECK(line_count(runs) == 7);
  CHECK(runs.find("\"diverged: the training loss became nan at step 9 (batch 9 of epoch 3)\"") != std::string::npos);
}

TEST_CASE("lab: runs.csv leaves a run's accuracies empty when it measured no epoch; point labels") {
  examples::lab::RunRecord first_epoch = record("sgd(lr=0.1)", 3, {}, 0.5, 1.0, true);  // diverged in epoch 1
  first_epoch.result.steps = 7;
  // epochs 0, steps 7, then no final or best accuracy and no final loss: no epoch measured them
  CHECK(examples::lab::runs_csv({first_epoch}).find(",100,3,0,7,,,,1.000,1,0,") != std::string::npos);

  examples::lab::GridPoint point{spec("adam(lr=0.001,beta1=0.9,beta2=0.99)"), 64};
  CHECK(examples::lab::point_label(point, {"lr", "beta2"}, false) == "adam lr=0.001 beta2=0.99");
  CHECK(examples::lab::point_label(point, {"momentum"}, true) == "adam batch=64");
}

TEST_CASE("lab: specs expand into grids; --lrs gives rates to the specs without lr=") {
  auto resolve = [](const std::string& text) { return spec(text); };  // no defaults written out: easier to read
  auto expanded = [&](std::vector<std::string> texts, std::vector<double> lrs) {
    return texts_of(examples::lab::expand_optimizers(texts, lrs, resolve));
  };
  CHECK(expanded({"adam(lr=[1e-4,1e-3],beta2=[0.99,0.999])"}, {}) ==
        std::vector<std::string>{"adam(lr=1e-4,beta2=0.99)", "adam(lr=1e-4,beta2=0.999)", "adam(lr=1e-3,beta2=0.99)",
                                 "adam(lr=1e-3,beta2=0.999)"});
  CHECK(expanded({"sgd(lr=0.1,momentum=0.9),adam", "rmsprop"}, {}) ==
        std::vector<std::string>{"sgd(lr=0.1,momentum=0.9)", "adam", "rmsprop"});
  // A spec's own lr wins over --lrs; the others get one point per rate.
  CHECK(expanded({"adam(lr=0.01)", "sgd"}, {0.1, 0.2}) ==
        std::vector<std::string>{"adam(lr=0.01)", "sgd(lr=0.1)", "sgd(lr=0.2)"});
  CHECK_THROWS_WITH_AS(expanded({"adam", "adam"}, {}), doctest::Contains("adam is given twice"), config::SpecError);
  CHECK_THROWS_WITH_AS(expanded({"sgd(lr=0.1)", "sgd"}, {0.1}), doctest::Contains("sgd(lr=0.1) is given twice"),
                       config::SpecError);

  std::vector<config::Spec> grid{spec("adam(lr=0.001,beta2=0.99)"), spec("adam(lr=0.001,beta2=0.999)"),
                                 spec("sgd(lr=0.001,momentum=0.9)")};
  CHECK(examples::lab::hyper_keys(grid) == std::vector<std::string>{"lr", "beta2", "momentum"});
  CHECK(examples::lab::varying_keys(grid) == std::vector<std::string>{"beta2"});

  // Wrappers: grids inside the inner spec; an inner lr counts as the spec's own; columns flattened.
  CHECK(expanded({"lookahead(inner=[adam(lr=[1e-3,1e-4]),sgd],k=5)"}, {0.5}) ==
        std::vector<std::string>{"lookahead(inner=adam(lr=1e-3),k=5)", "lookahead(inner=adam(lr=1e-4),k=5)",
                                 "lookahead(inner=sgd,k=5,lr=0.5)"});
  std::vector<config::Spec> wrapped{spec("lookahead(inner=adam(lr=0.001),k=5)"), spec("lookahead(inner=sgd(lr=0.1),k=5)")};
  CHECK(examples::lab::hyper_keys(wrapped) == std::vector<std::string>{"inner", "inner.lr", "k"});
  CHECK(examples::lab::varying_keys(wrapped) == std::vector<std::string>{"inner", "inner.lr"});
  CHECK(examples::lab::hyper_value(wrapped[1], "inner.lr") == "0.1");
  CHECK(examples::lab::point_label({wrapped[1], 64}, {"inner", "inner.lr"}, false) == "lookahead inner=sgd inner.lr=0.1");
}

TEST_CASE("lab: a run's identity keeps the flags of stored runs with their defaults; a flag added since, only given") {
  // The shipped study's runs (docs/studies, ~20 hours of training) were stored under this identity.
  const fs::path shipped = fs::path(TAPEGRAD_SOURCE_DIR) / "docs/studies/mnist_mlp-full/tune";
  REQUIRE(fs::is_directory(shipped));
  std::string stored_flags;
  for (const std::string& line : lines_of(fs::directory_iterator(shipped)->path())) {
    if (line.starts_with("flags ")) stored_flags = line.substr(6);
  }
  CHECK(lab_config({"--problem", "mnist_mlp", "--protocol", "--optimizers", "sgd", "--lr-grid", "1e-5:1e2:36",
                    "--protocol-seeds", "10", "--x-axis", "steps", "--out", "elsewhere"}).flags_identity == stored_flags);

  std::string model = "mlp", out = "here";
  int newer = 3;
  CLI::App app;
  app.add_option("--model", model)->capture_default_str();
  app.add_option("--newer", newer)->capture_default_str();
  app.add_option("--out", out)->capture_default_str();
  REQUIRE(parse(app, {"--out", "there"}) == -1);
  CHECK(examples::lab::flags_identity(app) == "model=\"mlp\"");  // the output directory is no part of a run
  REQUIRE(parse(app, {"--newer", "3", "--model", "cnn"}) == -1);
  CHECK(examples::lab::flags_identity(app) == "model=\"cnn\"; newer=3");
}

TEST_CASE("lab: its flags, with the shared ones; the optimisers resolved by the registry") {
  examples::lab::LabConfig defaults = lab_config({});
  REQUIRE(defaults.optimizers.size() == 2);
  CHECK(defaults.optimizers[0].name == "adam");
  CHECK(defaults.optimizers[1].name == "rmsprop");
  CHECK(*defaults.optimizers[0].find("lr") == "0.001");  // resolved: the registered defaults written out
  CHECK(defaults.optimizers[0].find("beta2") != nullptr);
  CHECK(defaults.batch_sizes == std::vector<std::size_t>{1024});
  CHECK(defaults.seeds == std::vector<std::uint64_t>{0, 1, 2, 3, 4});
  CHECK(defaults.base.epochs == 10);
  CHECK(defaults.base.model.name == "mlp");
  CHECK(defaults.out_dir == "lab-out");
  CHECK(examples::lab::grid_points(defaults).size() == 2);

  examples::lab::LabConfig c = lab_config({"--model", "mlp", "--hidden", "512,512", "--init", "normal", "--optimizers",
                                           "sgd,adam", "nadam", "--lrs", "0.1,1e-3", "--batch-sizes", "64,1024",
                                           "--seeds", "7,0", "--epochs", "3", "--validation", "10000",
                                           "--weight-decay", "1e-4", "--out", "somewhere", "--quiet"});
  CHECK(*c.base.model.find("hidden") == "[512,512]");
  CHECK(c.base.init == "normal");
  CHECK(c.base.epochs == 3);
  CHECK(c.base.validation == 10000);
  CHECK(c.seeds == std::vector<std::uint64_t>{7, 0});
  CHECK(c.out_dir == "somewhere");
  CHECK_FALSE(c.epoch_lines);
  REQUIRE(c.optimizers.size() == 3 * 2);
  for (const config::Spec& s : c.optimizers) CHECK(*s.find("weight_decay") == "0.0001");  // folded into each
  CHECK(examples::lab::grid_points(c).size() == 3 * 2 * 2);

  // --grid appends to --optimizers; a spec's lr is kept under --lrs.
  examples::lab::LabConfig g = lab_config({"--optimizers", "sgd(lr=0.5)", "--grid", "adam(beta2=[0.99,0.999])",
                                           "--lrs", "1e-3,3e-3"});
  REQUIRE(g.optimizers.size() == 1 + 2 * 2);
  CHECK(*g.optimizers[0].find("lr") == "0.5");
  CHECK(g.optimizers[1].name == "adam");
  CHECK(examples::lab::varying_keys(g.optimizers) == std::vector<std::string>{"lr", "beta2"});
  CHECK(lab_config({"--optimizers", "adam", "--optimizers", "sgd"}).optimizers.size() == 2);
  CHECK(lab_config({"--model", "logreg", "--optimizers", "newton,sgd"}).optimizers.size() == 2);

  CHECK(error_of([&] { lab_config({"--optimizers", "adam,adamx"}); }).find("adamx") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--optimizers", ""}); }).find("--optimizers") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--lrs", "1e-3,-1"}); }).find("--lrs") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--optimizers", "sgd(lr=0.5)", "adam(lr=[1e-3,1e-2])", "--lrs", "0.1"}); })
            .find("--lrs gives rates to the specs without lr=, and every spec here has its own") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--batch-sizes", "0"}); }).find("--batch-sizes") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--model", "cnn", "--hidden", "64"}); }).find("hidden") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--model", "rnn"}); }).find("rnn") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--schedule", "sawtooth"}); }).find("sawtooth") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--targets", "97"}); }).find("--targets") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--batch-size", "64"}); }).find("--batch-sizes") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--seed", "1"}); }).find("--seeds") != std::string::npos);
  CHECK(captured(2, [] { CHECK(lab_main({"--seeds", "1.5"}) == 2); }).find("--seeds") != std::string::npos);
  CHECK(captured(2, [] { CHECK(lab_main({"--optimizers", "adamx"}) == 2); }).find("adamx") != std::string::npos);
  // Lists: an empty item, a negative count, a list given twice (CLI11 alone would drop, wrap, append).
  CHECK(captured(2, [] { CHECK(lab_main({"--seeds", "0,,1"}) == 2); }).find("--seeds: an empty item in the list '0,,1'") !=
        std::string::npos);
  CHECK(captured(2, [] { CHECK(lab_main({"--batch-sizes", "64,"}) == 2); }).find("--batch-sizes: an empty item") !=
        std::string::npos);
  CHECK(captured(2, [] { CHECK(lab_main({"--seeds", "-1"}) == 2); }).find("--seeds: '-1' is not a whole number") !=
        std::string::npos);
  CHECK(captured(2, [] { CHECK(lab_main({"--seeds", "1", "--seeds", "2"}) == 2); }).find("--seeds") != std::string::npos);
  CHECK(captured(2, [] { CHECK(lab_main({"--targets", "0.5,abc"}) == 2); }).find("--targets: 'abc' is not a number") !=
        std::string::npos);
  // An output directory that cannot be made is refused before the data is read (--data points nowhere).
  CHECK(captured(2, [] { CHECK(lab_main({"--out", "/proc/no/such", "--data", "/nonexistent/mnist"}) == 2); })
            .find("--out /proc/no/such: cannot create the directory: No such file or directory") != std::string::npos);
}

TEST_CASE("lab: a misspelt key or a value out of range exits 2 naming the optimiser, the key and the range, "
          "before reading the data") {
  // --data points nowhere: had the lab read it, the message would be about the data instead.
  std::string misspelt = captured(2, [] {
    CHECK(lab_main({"--optimizers", "adam(betta2=0.9)", "--data", "/nonexistent/mnist", "--no-progress"}) == 2);
  });
  MESSAGE(misspelt);
  CHECK(misspelt.rfind("compare_optimizers: --optimizers: ", 0) == 0);
  CHECK(misspelt.find("adam") != std::string::npos);
  CHECK(misspelt.find("betta2") != std::string::npos);
  CHECK(misspelt.find("beta2") != std::string::npos);  // among the keys it has
  CHECK(misspelt.find("nonexistent") == std::string::npos);

  std::string range = captured(2, [] {
    CHECK(lab_main({"--grid", "adam(beta2=[0.99,1.5])", "--data", "/nonexistent/mnist", "--no-progress"}) == 2);
  });
  MESSAGE(range);
  CHECK(range.find("adam") != std::string::npos);
  CHECK(range.find("beta2") != std::string::npos);
  CHECK(range.find("[0, 1)") != std::string::npos);
  CHECK(range.find("1.5") != std::string::npos);
  CHECK(range.find("nonexistent") == std::string::npos);
}

TEST_CASE("lab: a batch size no epoch holds whole (a test problem drops the partial batch) exits 2 before any run") {
  const fs::path out = temp_path("lab_no_whole_batch");
  fs::remove_all(out);
  std::string said = captured(2, [&] {
    CHECK(lab_main({"--problem", "mnist_logreg", "--train-subset", "100", "--epochs", "1", "--seeds", "0", "--out",
                    out.string(), "--quiet", "--no-progress", "--jobs", "1"}) == 2);
  });
  MESSAGE(said);
  CHECK(said.find("batch size 128: the 100 training images hold no whole batch") != std::string::npos);
  CHECK_FALSE(fs::exists(out / "runs.csv"));
  CHECK_FALSE(fs::exists(out / "runs"));
  fs::remove_all(out);
}

TEST_CASE("lab: a tiny grid writes its CSV, Markdown table and PNGs") {
  fs::path out = temp_path("lab");
  fs::remove_all(out);
  // 2 optimisers x 1 lr x 1 batch size x 2 seeds, 2 epochs on 1000 training images.
  int status = 0;
  std::string log = captured(1, [&] {
    status = lab_main({"--optimizers", "adam,sgd", "--lrs", "0.01", "--batch-sizes", "50", "--seeds", "0,1", "--epochs",
                       "2", "--hidden", "32", "--train-subset", "1000", "--out", out.string(), "--quiet",
                       "--no-progress"});
  });
  REQUIRE(status == 0);
  // Every run prints its fully resolved hyper-parameters.
  CHECK(log.find("run 1/4: adam(lr=0.01,weight_decay=0,decoupled=false,beta1=0.9,beta2=0.999,eps=1e-08") !=
        std::string::npos);
  CHECK(log.find("run 3/4: sgd(lr=0.01,") != std::string::npos);

  std::string curves = read_file(out / "curves.csv");
  CHECK(curves.rfind("optimizer,spec,lr,weight_decay,decoupled,beta1,beta2,", 0) == 0);
  CHECK(line_count(curves) == 1 + 2 * 2 * 2);  // header + runs x epochs
  CHECK(curves.find("\nadam,\"adam(lr=0.01,") != std::string::npos);
  CHECK(curves.find("\nsgd,\"sgd(lr=0.01,") != std::string::npos);
  std::string summary = read_file(out / "summary.csv");
  CHECK(line_count(summary) == 3);
  std::string markdown = read_file(out / "summary.md");
  MESSAGE(markdown);
  CHECK(markdown.find("| optimizer | runs |") != std::string::npos);  // nothing both have varies
  CHECK(markdown.find("| adam | 2 |") != std::string::npos);
  CHECK(markdown.find("| sgd | 2 |") != std::string::npos);
  CHECK(markdown.find("`adam(lr=0.01,") != std::string::npos);  // the resolved specs, above the table
  CHECK(line_count(read_file(out / "runs.csv")) == 5);
  // Time to target: a row per run and target (0.97 and 0.98 by default), and its table in summary.md.
  std::string targets = read_file(out / "targets.csv");
  CHECK(line_count(targets) == 1 + 4 * 2);
  CHECK(targets.find(",batch_size,seed,metric,target,reached,step,seconds,epoch\n") != std::string::npos);
  CHECK(targets.find(",50,1,test_acc,0.98,") != std::string::npos);
  CHECK(markdown.find("## Time to target") != std::string::npos);
  CHECK(markdown.find("| adam | 97 % | ") != std::string::npos);

  require_gnuplot();
  std::string bytes = read_file(out / "curves.png");
  REQUIRE(bytes.size() > 1000);
  CHECK(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  CHECK(read_file(out / "curves.pdf").rfind("%PDF", 0) == 0);
  CHECK(fs::file_size(out / "plot.gp") > 0);
  CHECK(read_file(out / "bands.dat").find("# adam\n") != std::string::npos);  // labels: the name (nothing varies)

  // Without gnuplot: the same tables, a warning and no PNG, still exit 0. (The loss trained, when not the
  // cross-entropy, is in the header and the table's title.)
  fs::path no_plots = temp_path("lab_no_gnuplot");
  fs::remove_all(no_plots);
  log = captured(1, [&] {
    status = lab_main({"--optimizers", "adam", "--seeds", "0", "--epochs", "1", "--hidden", "16", "--train-subset",
                       "500", "--out", no_plots.string(), "--gnuplot", "/nonexistent/gnuplot", "--quiet",
                       "--no-progress", "--loss", "mse"});
  });
  CHECK(status == 0);
  CHECK(log.find("1 epoch, loss mse (") != std::string::npos);
  CHECK(read_file(no_plots / "summary.md").find(", loss mse;") != std::string::npos);
  CHECK(fs::exists(no_plots / "curves.csv"));
  CHECK(fs::exists(no_plots / "plot.gp"));
  CHECK_FALSE(fs::exists(no_plots / "curves.png"));

  fs::remove_all(out);
  fs::remove_all(no_plots);
}

TEST_CASE("lab: a 2x2 grid over adam(beta2=[0.99,0.999]) and --lrs 1e-3,3e-3 has the beta2 column") {
  fs::path out = temp_path("lab_grid");
  fs::remove_all(out);
  int status = 0;
  captured(1, [&] {
    status = lab_main({"--grid", "adam(beta2=[0.99,0.999])", "--lrs", "1e-3,3e-3", "--train-subset", "2000",
                       "--epochs", "1", "--seeds", "0", "--batch-sizes", "100", "--hidden", "32", "--out", out.string(),
                       "--quiet", "--no-progress", "--no-plots"});
  });
  REQUIRE(status == 0);
  std::string md = read_file(out / "summary.md");
  MESSAGE(md);
  CHECK(md.find("| optimizer | lr | beta2 | runs |") != std::string::npos);
  for (const char* row : {"| adam | 0.001 | 0.99 | 1 |", "| adam | 0.003 | 0.99 | 1 |", "| adam | 0.001 | 0.999 | 1 |",
                          "| adam | 0.003 | 0.999 | 1 |"}) {
    CAPTURE(row);
    CHECK(md.find(row) != std::string::npos);
  }
  std::string summary = read_file(out / "summary.csv");
  CHECK(summary.rfind("optimizer,spec,lr,weight_decay,decoupled,beta1,beta2,eps,eps_placement,batch_size,", 0) == 0);
  CHECK(line_count(summary) == 5);
  CHECK(summary.find(",0.001,0,false,0.9,0.99,1e-08,outside,100,") != std::string::npos);
  CHECK(summary.find(",0.003,0,false,0.9,0.999,1e-08,outside,100,") != std::string::npos);
  std::string runs = read_file(out / "runs.csv");
  CHECK(runs.rfind("optimizer,spec,lr,weight_decay,decoupled,beta1,beta2,", 0) == 0);
  CHECK(line_count(runs) == 5);
  std::string curves = read_file(out / "curves.csv");
  CHECK(curves.find("\"adam(lr=0.003,weight_decay=0,decoupled=false,beta1=0.9,beta2=0.99,") != std::string::npos);
  fs::remove_all(out);
}

TEST_CASE("lab: a program's own defaults; Ctrl-C stops the grid and what was collected is written") {
  CLI::App app{"test", "my_lab"};
  examples::lab::LabFlags flags(app, {.name = "my_lab", .summary = "mine", .default_optimizers = {"sgd(lr=0.05)", "adam"}});
  REQUIRE(parse(app, {"--epochs", "1"}) == -1);
  examples::lab::LabConfig c = flags.config();
  CHECK(c.program == "my_lab");
  REQUIRE(c.optimizers.size() == 2);
  CHECK(*c.optimizers[0].find("lr") == "0.05");

  fs::path out = temp_path("lab_interrupted");
  fs::remove_all(out);
  c.base.model = spec("mlp(hidden=[16])");
  c.base.progress = false;
  c.seeds = {0, 1};
  c.batch_sizes = {100};
  c.out_dir = out.string();
  c.plots = false;
  c.jobs = 1;
  examples::interrupt_flag() = 1;  // as if Ctrl-C came during the first step
  examples::lab::LabResult lab = examples::lab::run_lab(c, mnist_subset(1000));
  examples::interrupt_flag() = 0;
  CHECK(lab.interrupted);
  REQUIRE(lab.records.size() == 1);  // the grid stopped after the interrupted run
  CHECK(lab.records[0].result.steps == 1);
  CHECK(lab.summaries.empty());      // an interrupted run is not summarised
  std::string runs = read_file(out / "runs.csv");
  CHECK(line_count(runs) == 2);
  CHECK(runs.find(",0,1,\n") != std::string::npos);  // diverged 0, interrupted 1, no divergence text
  CHECK(read_file(out / "summary.md").find("Interrupted") != std::string::npos);
  fs::remove_all(out);
}

namespace {
/// The processes `pid` has forked and not yet reaped (Linux).
std::size_t children_of(pid_t pid) {
  std::string list = read_file(fmt::format("/proc/{0}/task/{0}/children", pid));
  return static_cast<std::size_t>(std::count(list.begin(), list.end(), ' '));
}
}  // namespace

TEST_CASE("lab: SIGINT to a running lab stops it cleanly: outputs written, exit 130, one run at a time or in workers") {
  for (std::string jobs : {"1", "2"}) {
    CAPTURE(jobs);
    const bool workers = jobs == "2";
    fs::path out = temp_path("lab_sigint");
    fs::remove_all(out);
    // The lab in a child process, its output into `said`.
    auto start_lab = [&](const fs::path& said) {
      std::fflush(stdout);
      std::fflush(stderr);
      pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        int file = ::open(said.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(file, 1);
        ::dup2(file, 2);
        int code = lab_main({"--optimizers", "adam", "--seeds", "0,1,2", "--epochs", "1000", "--hidden", "16",
                             "--train-subset", "500", "--batch-sizes", "50", "--out", out.string(), "--no-plots",
                             "--no-progress", "--jobs", jobs});
        std::fflush(stdout);
        ::_exit(code);
      }
      return pid;
    };
    const fs::path said = temp_path("lab_sigint_said.txt");
    pid_t child = start_lab(said);
    // Once a run is under way (its first epoch in the progress file; in workers, two workers started and given
    // time to load), interrupt the lab alone: it passes the interrupt on to its workers.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    auto under_way = [&] {
      return workers ? children_of(child) == 2 : line_count(read_file(out / "curves.partial.csv")) >= 2;
    };
    while (!under_way() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (workers) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // stopped anywhere, a run resumes
    ::kill(child, SIGINT);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);
    std::string runs = read_file(out / "runs.csv");
    // One run at a time: the first, interrupted; in two workers: the first two, both interrupted. The third
    // seed never started.
    CHECK(line_count(runs) == (workers ? 3 : 2));
    CHECK(runs.find(",0,1,\n") != std::string::npos);
    CHECK(runs.find(",50,2,") == std::string::npos);  // batch size 50, seed 2
    CHECK(fs::exists(out / "summary.md"));
    CHECK(line_count(read_file(out / "curves.csv")) >= 2);  // the finished curves replace the progress file
    CHECK_FALSE(fs::exists(out / "curves.partial.csv"));
    for (const auto& entry : fs::directory_iterator(out)) CHECK(entry.path().filename().string().rfind(".worker-", 0) != 0);
    if (workers) {
      // The same command again: the interrupted runs resume from their checkpoints, each worker saying so among
      // the other runs' lines, naming its run.
      pid_t again = start_lab(said);
      const std::string first = "run 1/3: resumed from " + (out / "runs").string() + "/";
      const std::string second = "run 2/3: resumed from " + (out / "runs").string() + "/";
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      auto both_said = [&] {
        const std::string text = read_file(said);
        return text.find(first) != std::string::npos && text.find(second) != std::string::npos;
      };
      bool ended = false;
      while (!both_said() && std::chrono::steady_clock::now() < deadline && !ended) {
        ended = ::waitpid(again, &status, WNOHANG) == again;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      INFO(read_file(said));
      REQUIRE_FALSE(ended);
      ::kill(again, SIGINT);
      REQUIRE(::waitpid(again, &status, 0) == again);
      CHECK(both_said());
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 130);
    }
    fs::remove_all(out);
    fs::remove(said);
  }
}

TEST_CASE("lab: --jobs 2 runs the grid in worker processes with the same bits as one run at a time") {
  examples::lab::LabConfig c = lab_config({"--optimizers", "adam", "sgd(lr=0.1)", "--seeds", "0,1", "--epochs", "2",
                                           "--hidden", "16", "--batch-sizes", "100", "--no-plots", "--no-progress"});
  examples::Datasets data = mnist_subset(1000);
  c.out_dir = temp_path("lab_jobs1").string();
  c.jobs = 1;
  examples::lab::LabResult serial = examples::lab::run_lab(c, data, nullptr);
  c.out_dir = temp_path("lab_jobs2").string();
  c.jobs = 2;
  examples::lab::LabResult parallel = examples::lab::run_lab(c, data, nullptr);
  REQUIRE(serial.records.size() == 4);
  REQUIRE(parallel.records.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(parallel.records[i].point == serial.records[i].point);  // in grid order, whatever order they ended in
    CHECK(parallel.records[i].seed == serial.records[i].seed);
    REQUIRE(parallel.records[i].result.epochs.size() == 2);
    for (std::size_t e = 0; e < 2; ++e) check_same(parallel.records[i].result.epochs[e], serial.records[i].result.epochs[e]);
    CHECK(parallel.records[i].result.steps == serial.records[i].result.steps);
  }
  CHECK(parallel.markdown.size() > 0);
  fs::remove_all(temp_path("lab_jobs1"));
  fs::remove_all(temp_path("lab_jobs2"));
}

TEST_CASE("workers: a result crosses exactly; a worker that throws or dies is reported, not lost") {
  examples::RunResult r;
  r.diverged = true;
  r.failed = false;
  r.steps = 12345;
  r.best_test_acc = 0.1 + 0.2;  // not a short decimal
  r.seconds = 1e-300;
  r.divergence = "diverged: two\nlines, and   spaces";
  r.epochs.push_back({.epoch = 3, .train_loss = std::nan(""), .train_acc = 1.0 / 3, .test_loss = HUGE_VAL,
                      .test_acc = -0.0, .lr = 1e-3, .seconds = 2.5, .weight_norm = 7, .partial = true});
  r.evaluations.push_back({.step = 7, .epoch = 0.35, .seconds = 0.1 + 0.7, .train_eval_loss = 1.0 / 7,
                           .validation_acc = 0.9, .test_loss = std::nan(""), .lr = 3e-4});
  r.evaluation_seconds = 1.0 / 3;
  r.tracking_seconds = {{"grad-norm(every=1)", 0.1}, {"sharpness(every=100,samples=1000,steps=20)", 0.25}};
  examples::RunResult back = examples::parse_result(examples::result_text(r));
  REQUIRE(back.evaluations.size() == 1);
  CHECK(back.evaluations[0].step == 7);
  CHECK(back.evaluations[0].epoch == 0.35);
  CHECK(back.evaluations[0].seconds == 0.1 + 0.7);
  CHECK(back.evaluations[0].train_eval_loss == 1.0 / 7);
  CHECK(back.evaluations[0].validation_acc == 0.9);
  CHECK(std::isnan(back.evaluations[0].test_loss));
  CHECK(back.evaluations[0].lr == 3e-4);
  CHECK(back.evaluation_seconds == 1.0 / 3);
  CHECK(back.diverged);
  CHECK_FALSE(back.failed);
  CHECK(back.steps == 12345);
  CHECK(back.best_test_acc == r.best_test_acc);
  CHECK(back.seconds == r.seconds);
  CHECK(back.divergence == r.divergence);
  REQUIRE(back.epochs.size() == 1);
  CHECK(std::isnan(back.epochs[0].train_loss));
  CHECK(back.epochs[0].train_acc == 1.0 / 3);
  CHECK(back.epochs[0].test_loss == HUGE_VAL);
  CHECK(std::signbit(back.epochs[0].test_acc));
  CHECK(back.epochs[0].partial);
  CHECK(back.tracking_seconds == r.tracking_seconds);  // each tracker's time, for the lab's lines
  r.seconds = 2.0;
  CHECK(r.final_line().find(" tracking=grad-norm(every=1):0.050,sharpness(every=100,samples=1000,steps=20):0.125") !=
        std::string::npos);
  CHECK_THROWS_WITH(examples::parse_result("run 1 0 0 x"), doctest::Contains("'x' is not a number"));
  // Anything else than result_text writes is refused: text after the end, a wrong label, an impossible count.
  const std::string exact_text = examples::result_text(r);
  CHECK_THROWS_WITH(examples::parse_result(exact_text + "0 0\n"), doctest::Contains("text after its end"));
  CHECK_THROWS_WITH(examples::parse_result(exact_text.substr(0, exact_text.size() - 8)), doctest::Contains("cut short"));
  std::string relabelled = exact_text;
  relabelled.replace(relabelled.find("epochs"), 6, "epoch!");
  CHECK_THROWS_WITH(examples::parse_result(relabelled), doctest::Contains("'epoch!' where 'epochs' was expected"));
  CHECK_THROWS_WITH(examples::parse_result("run 0 0 0 1 0 0\ndivergence 0\n\nepochs 1e15\n"),
                    doctest::Contains("1000000000000000 is not a count (0 to 42)"));
  CHECK_THROWS_WITH(examples::parse_result("run 2 0 0 1 0 0\n"), doctest::Contains("2 is not a count (0 to 1)"));

  fs::path dir = temp_path("workers");
  fs::create_directories(dir);
  examples::WorkerPool pool(dir.string());
  pool.launch(0, [] { return std::string("fine"); });
  pool.launch(1, []() -> std::string { throw std::runtime_error("no such optimiser"); });
  pool.launch(2, []() -> std::string { ::raise(SIGKILL); return ""; });
  std::vector<examples::WorkerPool::Finished> finished(3);
  volatile std::sig_atomic_t never = 0;
  for (int k = 0; k < 3; ++k) {
    examples::WorkerPool::Finished f = pool.wait_one(never);
    finished[f.index] = f;
  }
  CHECK(finished[0].ok);
  CHECK(finished[0].text == "fine");
  CHECK_FALSE(finished[1].ok);
  CHECK(finished[1].failure == "no such optimiser");
  CHECK_FALSE(finished[2].ok);
  CHECK(finished[2].failure == "the worker died of signal 9 (Killed)");
  CHECK(fs::is_empty(dir));  // the result files are gone
  fs::remove_all(dir);
}

namespace {
/// Runs the lab in a child whose files may not grow past `limit` bytes (as on a full disk, writes fail:
/// EFBIG); returns its exit status and what it wrote on stderr.
std::pair<int, std::string> lab_with_file_limit(const fs::path& out, rlim_t limit, std::vector<std::string> more) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(pipe_fds[1], 2);
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit files{limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &files);
    std::vector<std::string> args{"--optimizers", "adam", "--seeds", "0", "--epochs", "20", "--hidden", "8",
                                  "--train-subset", "200", "--batch-sizes", "100", "--out", out.string(), "--no-plots",
                                  "--no-progress"};
    args.insert(args.end(), more.begin(), more.end());
    int code = lab_main(args);
    std::fflush(stderr);
    ::_exit(code);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) message.append(buffer, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  return {WEXITSTATUS(status), message};
}
}  // namespace

TEST_CASE("lab: a disk that fills up stops the grid with the file and the reason, and leaves no half-written output") {
  // The progress file fills at the header (60 bytes), after a few epochs (600) or late in the run (4000).
  // (The final files' atomic writes under a full disk: tests/test_data.cpp.)
  for (rlim_t limit : {rlim_t{60}, rlim_t{600}, rlim_t{4000}}) {
    CAPTURE(limit);
    fs::path out = temp_path("lab_full_disk");
    fs::remove_all(out);
    auto [code, message] = lab_with_file_limit(out, limit, {"--jobs", "1", "--fresh"});  // no store: its files below
    CHECK(code == 1);
    CHECK(message.find("File too large") != std::string::npos);
    CHECK(message.find(out.string()) != std::string::npos);
    for (const auto& entry : fs::directory_iterator(out)) {
      const std::string name = entry.path().filename().string();
      CAPTURE(name);
      CHECK(name.find(".tmp.") == std::string::npos);  // no temporary left behind
      CHECK(fs::file_size(entry.path()) <= limit);
      // What stands under a final name is whole.
      if (name == "summary.md") CHECK(read_file(entry.path()).find("Mean ± sample standard deviation") != std::string::npos);
    }
    CHECK(message.find("curves.partial.csv") != std::string::npos);
    CHECK_FALSE(fs::exists(out / "curves.csv"));
    fs::remove_all(out);
  }
}

TEST_CASE("lab: a run store that fills up the disk stops the grid with the file and the reason, one run at a time or in workers") {
  for (std::string jobs : {"1", "2"}) {
    CAPTURE(jobs);
    fs::path out = temp_path("lab_full_store");
    fs::remove_all(out);
    // The progress file fits; a checkpoint (6,370 weights and Adam's two moments) does not.
    auto [code, message] = lab_with_file_limit(out, 4000, {"--jobs", jobs});
    CHECK(code == 1);
    CHECK(message.find("File too large") != std::string::npos);
    CHECK(message.find((out / "runs").string()) != std::string::npos);
    CHECK_FALSE(fs::exists(out / "curves.csv"));  // stopped: not a grid of failed runs
    CHECK_FALSE(fs::exists(out / "summary.csv"));
    for (const auto& entry : fs::recursive_directory_iterator(out)) {
      CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
    }
    fs::remove_all(out);
  }
}

TEST_CASE("Ctrl-C during an epoch's evaluation stops the run after that epoch, the epoch whole") {
  RunConfig c = quiet_config("mlp(hidden=[16])", 100, 3);
  examples::interrupt_flag() = 0;
  RunResult r = examples::train(c, mnist_subset(500), [](const examples::EpochMetrics&) {
    examples::interrupt_flag() = 1;  // the callback runs after the evaluation: as late as a signal can come
  });
  examples::interrupt_flag() = 0;
  CHECK(r.interrupted);
  REQUIRE(r.epochs.size() == 1);
  CHECK_FALSE(r.epochs[0].partial);
  CHECK(r.steps == 5);
}

namespace {
/// Logits = a bias alone (the images are multiplied by a constant zero matrix).
class BiasOnly : public nn::Module {
 public:
  BiasOnly() : bias_(register_parameter("bias", ag::Tensor::zeros(ag::Shape{10}))) {}
  ag::Tensor forward(const ag::Tensor& x) override {
    return ag::add(ag::matmul(x, ag::Tensor::zeros(ag::Shape{x.dim(1), 10})), bias_);
  }
  std::string type_name() const override { return "BiasOnly"; }

 private:
  ag::Tensor bias_;
};
}  // namespace

TEST_CASE("--no-bias-decay on a model of biases only: one group, without decay") {
  RunConfig c = quiet_config();
  c.epochs = 1;
  c.batch_size = 100;
  c.no_bias_decay = true;
  c.optimizer = optim::resolve_optimizer(spec("sgd(lr=0.1,weight_decay=100)"));
  BiasOnly model;
  RunResult r = examples::fit(model, c, mnist_subset(200));
  CHECK(r.steps == 2);
  CHECK(std::isfinite(r.epochs.back().train_loss));
  CHECK(r.epochs.back().weight_norm < 1.0);  // weight_decay=100 at lr 0.1 on the bias would blow it up
}

TEST_CASE("--epochs 0 with a decaying schedule only evaluates") {
  RunConfig c = quiet_config();
  c.model = spec("mlp(hidden=[16])");
  c.epochs = 0;
  c.schedule = optim::resolve_schedule(spec("linear(final=1e-5)"));
  RunResult r = examples::train(c, mnist_subset(200));
  REQUIRE(r.epochs.size() == 1);
  CHECK(r.steps == 0);
}

TEST_CASE("README: its tables of optimisers, schedules and models are the registries' own") {
  std::ifstream file(std::string(TAPEGRAD_SOURCE_DIR) + "/README.md");
  REQUIRE(file);
  const std::string readme((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const std::vector<std::pair<std::string, std::string>> tables{
      {"--list-optimizers", config::markdown_table(config::infos(optim::optimizers()))},
      {"--list-schedules", config::markdown_table(config::infos(optim::schedules()))},
      {"--list-models", config::markdown_table(config::infos(nn::models()))}};
  for (const auto& entry : tables) {
    const std::string& flag = entry.first;
    const std::string& table = entry.second;
    INFO("README.md is out of date: paste the output of `build/examples/mnist_mlp --markdown " << flag << "`:\n" << table);
    CHECK(readme.find(table) != std::string::npos);
  }
}

TEST_CASE("a model that cannot take the images is refused before the first epoch, naming the set and the size") {
  examples::Datasets sets = mnist_subset(1000);
  // The CNN built for the training images (28x28) meets test images of another geometry, same pixel count.
  sets.test.rows = 14;
  sets.test.cols = 56;
  RunConfig c = quiet_config();
  c.model = spec("cnn");
  c.epochs = 1;
  int epochs_seen = 0;
  CHECK_THROWS_WITH_AS(examples::train(c, sets, [&](const examples::EpochMetrics&) { ++epochs_seen; }),
                       doctest::Contains("the model cannot take the test images (14x56)"), std::runtime_error);
  CHECK(epochs_seen == 0);
}

namespace {
/// log of a linear map: NaN at the first step (some logits are negative).
class LogOfLinear : public nn::Module {
 public:
  LogOfLinear() : fc_(register_module("fc", std::make_shared<nn::Linear>(784, 10))) {}
  ag::Tensor forward(const ag::Tensor& x) override { return ag::log((*fc_)(x)); }
  std::string type_name() const override { return "LogOfLinear"; }

 private:
  std::shared_ptr<nn::Linear> fc_;
};
}  // namespace

TEST_CASE("--detect-anomaly: a run stops as diverged at the first NaN, naming the op, the layer and the step") {
  RunConfig c = quiet_config();
  c.epochs = 1;
  c.batch_size = 100;
  LogOfLinear plain;
  RunResult without = examples::fit(plain, c, mnist_subset(200));
  CHECK(without.diverged);
  MESSAGE(without.divergence);
  CHECK(without.divergence.find("nan at step 1 (batch 1 of epoch 1)") != std::string::npos);  // nan or -nan

  c.detect_anomaly = true;
  LogOfLinear model;
  RunResult with = examples::fit(model, c, mnist_subset(200));
  MESSAGE(with.divergence);
  CHECK(with.diverged);
  CHECK(with.steps == 0);
  CHECK(with.divergence.rfind("diverged: anomaly: the forward of 'log' gave a non-finite output (NaN at element ", 0) == 0);
  CHECK(with.divergence.find("in step 1 (batch 1 of epoch 1), module LogOfLinear; its inputs: input 0 f32[100, 10] "
                             "from 'linear' (step 1 (batch 1 of epoch 1), module fc (Linear(in=784, out=10)))") !=
        std::string::npos);
  CHECK_FALSE(ag::detecting_anomalies());  // the run's guard is gone
}

namespace {
/// Linear, batch norm, ReLU, Linear: an MLP with running statistics.
std::shared_ptr<nn::Sequential> bn_mlp() {
  ag::Generator gen(5);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(784, 16, nn::Init::default_uniform, true, &gen),
      std::make_shared<nn::BatchNorm1d>(16), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(16, 10, nn::Init::default_uniform, true, &gen)});
}

/// Mean cross-entropy over `set` in evaluation mode, in batches of 1000 summed in order (as the programs do).
double test_loss_of(nn::Module& model, const data::Dataset& set) {
  ag::NoGradGuard no_grad;
  model.eval();
  data::DataLoader loader(set, {.batch_size = 1000, .shuffle = false});
  double sum = 0;
  for (const data::Batch& batch : loader) sum += ag::cross_entropy(model(batch.images), batch.labels, ag::Reduction::sum).item();
  model.train();
  return sum / static_cast<double>(set.size());
}
}  // namespace

TEST_CASE("an averaging optimiser is evaluated with batch-norm statistics recomputed for its average") {
  RunConfig c = quiet_config();
  c.epochs = 1;
  c.batch_size = 50;
  c.optimizer = spec("sgd(lr=0.05)");
  examples::Datasets data = mnist_subset(1000);
  data.test = mnist_subset(2000).train;  // a small evaluation set keeps the test fast
  auto plain = bn_mlp();
  RunResult a = examples::fit(*plain, c, data);
  // ema with decay 0 averages nothing away: its average is the weights themselves, so the runs train alike
  // and differ only in how they are evaluated.
  c.optimizer = spec("ema(inner=sgd(lr=0.05),decay=0)");
  auto averaged = bn_mlp();
  RunResult b = examples::fit(*averaged, c, data);
  REQUIRE(a.epochs.size() == 1);
  REQUIRE(b.epochs.size() == 1);
  CHECK(a.epochs[0].train_loss == b.epochs[0].train_loss);
  std::vector<double> trained = plain->named_buffers()[0].second.to_vector();  // running_mean, trained
  CHECK(averaged->named_buffers()[0].second.to_vector() == trained);  // put back after the evaluations
  CHECK(a.epochs[0].test_loss == doctest::Approx(test_loss_of(*plain, data.test)).epsilon(1e-12));
  nn::update_bn(*plain, 1, [&](std::size_t) {  // the training set is one batch of 1000
    data::DataLoader loader(data.train, {.batch_size = 1000, .shuffle = false});
    data::Batch batch;
    loader.next(batch);
    return batch.images;
  });
  CHECK(b.epochs[0].test_loss == doctest::Approx(test_loss_of(*plain, data.test)).epsilon(1e-12));
  CHECK(a.epochs[0].test_loss != b.epochs[0].test_loss);
}

TEST_CASE("sgd(in_backward=true) trains as sgd does; --track grad-norm is refused beside it, before training") {
  examples::Datasets data = mnist_subset(1000);
  auto run = [&](const char* optimizer, std::vector<config::Spec> track) {
    RunConfig c = quiet_config("mlp(hidden=[16])", 100, 1);
    c.optimizer = optim::resolve_optimizer(spec(optimizer));
    c.images = false;
    c.track = std::move(track);
    c.track_log = temp_path("track_in_backward.csv").string();
    std::shared_ptr<nn::Module> model = examples::build_model(c, data.train);
    return examples::fit(*model, c, data);
  };
  RunResult plain = run("sgd(lr=0.1)", {});
  RunResult fused = run("sgd(lr=0.1,in_backward=true)", {});
  CHECK(fused.epochs[0].test_loss == doctest::Approx(plain.epochs[0].test_loss).epsilon(1e-5));
  std::filesystem::remove(temp_path("track_in_backward.csv"));
  CHECK_THROWS_WITH_AS(run("sgd(lr=0.1,in_backward=true)", {examples::resolve_tracker(spec("grad-norm"))}),
                       doctest::Contains("--track grad-norm(every=1): the optimiser updates weights inside backward"),
                       std::runtime_error);
  CHECK_FALSE(std::filesystem::exists(temp_path("track_in_backward.csv")));  // refused before the log is made
  // A tracker that reads the weights, not their gradients, is fine.
  CHECK(run("sgd(lr=0.1,in_backward=true)", {examples::resolve_tracker(spec("update-norm"))}).steps == 10);
}

TEST_CASE("logs: a refused run leaves an existing --log as it was; a resume with other tracker columns is refused") {
  examples::Datasets data = mnist_subset(300);
  RunConfig c = quiet_config("mlp(hidden=[16])", 100, 1);
  c.optimizer = spec("sgd(lr=0.1,in_backward=true)");
  const fs::path log = temp_path("kept_log.csv"), track = temp_path("kept_track.csv"), ckpt = temp_path("kept.ckpt");
  std::ofstream(log) << "yesterday's log\n";
  c.log_path = log.string();
  c.track = {examples::resolve_tracker(spec("grad-norm"))};  // refused beside in_backward, after the log was opened
  c.track_log = track.string();
  CHECK_THROWS_WITH_AS(examples::train(c, data), doctest::Contains("--track grad-norm"), std::runtime_error);
  CHECK(read_file(log) == "yesterday's log\n");

  // A run tracked with grad-norm, stopped after its first epoch, resumed tracking update-norm: the old rows would
  // sit under the new column.
  c.optimizer = spec("sgd(lr=0.1)");
  c.log_path.clear();
  c.epochs = 2;
  c.save_path = ckpt.string();
  first_epoch_of(c, data);
  c.resume_path = ckpt.string();
  c.epochs = 1;
  c.track = {examples::resolve_tracker(spec("update-norm"))};
  const std::string expected =
      track.string() + ": its columns are 'step,epoch,loss,grad_norm', this run's are 'step,epoch,loss,update_norm";
  CHECK_THROWS_WITH_AS(examples::train(c, data), doctest::Contains(expected.c_str()), std::runtime_error);
  // One tracker more: the old rows have a column fewer than the header (its prefix) would say.
  c.track = {examples::resolve_tracker(spec("grad-norm")), examples::resolve_tracker(spec("update-norm"))};
  CHECK_THROWS_WITH_AS(examples::train(c, data), doctest::Contains("its columns are 'step,epoch,loss,grad_norm', this "
                                                                   "run's are 'step,epoch,loss,grad_norm,update_norm"),
                       std::runtime_error);
  c.track = {examples::resolve_tracker(spec("grad-norm"))};
  CHECK(examples::train(c, data).epochs.size() == 1);
  for (const fs::path& p : {log, track, ckpt}) fs::remove(p);
}

TEST_CASE("--track: a per-step CSV; SGD's update norm is lr times the gradient norm; sharpness is the Hessian's top "
          "eigenvalue on the subset") {
  RunConfig c = tracked_config("mlp(hidden=[16])", {"grad-norm", "update-norm", "sharpness(every=5,samples=200,steps=30)",
                                                    "trace(every=10,samples=200,probes=4)",
                                                    "noise-scale(every=10,samples=200)"}, "track.csv");
  examples::Datasets data = mnist_subset(1000);
  RunConfig resolved = c;
  resolved.images = false;
  std::shared_ptr<nn::Module> model = examples::build_model(resolved, data.train);
  RunResult r = examples::fit(*model, resolved, data);
  REQUIRE(r.steps == 10);
  REQUIRE(r.tracking_seconds.size() == 5);
  CHECK(r.tracking_seconds[2].first == "sharpness(every=5,samples=200,steps=30)");

  const std::vector<std::string> lines = lines_of(c.track_log);
  REQUIRE(lines.size() == 11);
  CHECK(lines[0] == "step,epoch,loss,grad_norm,update_norm,update_norm/0.weight,update_norm/0.bias,update_norm/2.weight,"
                    "update_norm/2.bias,sharpness,trace,trace_se,noise_scale,grad_sq,trace_cov");
  auto cells = [](const std::string& line) {
    std::vector<std::string> out;
    std::stringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) out.push_back(cell);
    if (!line.empty() && line.back() == ',') out.push_back("");
    return out;
  };
  for (std::size_t step = 1; step <= 10; ++step) {
    CAPTURE(step);
    std::vector<std::string> row = cells(lines[step]);
    REQUIRE(row.size() == 15);
    CHECK(row[0] == std::to_string(step));
    // Plain SGD: Δw = -lr g, so ‖Δw‖ = 0.1 ‖g‖ (float32 weights).
    CHECK(std::stod(row[4]) == doctest::Approx(0.1 * std::stod(row[3])).epsilon(1e-4));
    CHECK(row[9].empty() == (step % 5 != 0));   // sharpness every 5 steps
    CHECK(row[10].empty() == (step % 10 != 0));  // trace every 10
  }
  // The last row's sharpness is the top eigenvalue of the final model's Hessian on the first 200 images.
  data::DataLoader loader(data.train, {.batch_size = 200, .shuffle = false});
  data::Batch batch;
  loader.next(batch);
  model->eval();
  analysis::HessianOperator op([&] { return ag::cross_entropy((*model)(batch.images), batch.labels); }, model->parameters());
  analysis::Eigenpairs top = analysis::power_iteration(op, 1, {.tolerance = 1e-7});
  CHECK(std::stod(cells(lines[10])[9]) == doctest::Approx(std::abs(top.values[0])).epsilon(1e-3));
  // And its noise scale is the per-sample statistic of the same images.
  auto& sequential = dynamic_cast<nn::Sequential&>(*model);
  analysis::NoiseScale b = analysis::noise_scale(analysis::per_sample_sq_norms(sequential, batch.images, batch.labels));
  CHECK(std::stod(cells(lines[10])[12]) == doctest::Approx(b.simple).epsilon(1e-6));
  CHECK(std::stod(cells(lines[10])[14]) == doctest::Approx(b.trace).epsilon(1e-6));
  fs::remove(c.track_log);
}

namespace {
/// Measures NaN in even steps and nothing in odd ones; `values` of them in step 3 (a tracker that miscounts).
class NanOnEven : public examples::Tracker {
 public:
  explicit NanOnEven(std::size_t wrong_count) : wrong_count_(wrong_count) {}
  std::vector<std::string> columns(const nn::Module&) const override { return {"a", "b"}; }
  std::vector<double> measure(const examples::TrackStep& s) override {
    if (s.step == 3 && wrong_count_ > 0) return std::vector<double>(wrong_count_, 1.0);
    if (s.step % 2 == 1) return {};
    // NaN from an invalid operation has its sign bit set on x86-64 (fmt writes it "-nan").
    return {s.step == 2 ? -std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::quiet_NaN(), 2.5};
  }

 private:
  std::size_t wrong_count_;
};

const bool nan_tracker_registered = [] {
  for (const char* name : {"nan-on-even", "miscounting"}) {
    examples::TrackerEntry entry;
    entry.name = name;
    entry.summary = "a test's tracker";
    const std::size_t wrong = std::string(name) == "miscounting" ? 3 : 0;
    entry.make = [wrong](const config::Spec&, const data::Dataset&, bool) { return std::make_unique<NanOnEven>(wrong); };
    entry.resolve = [](const config::Spec&) { return std::vector<std::pair<std::string, std::string>>{}; };
    examples::trackers().add(std::move(entry));
  }
  return true;
}();
}  // namespace

TEST_CASE("--track: a NaN measured is written \"nan\", a step not measured leaves empty cells; a miscount is refused") {
  REQUIRE(nan_tracker_registered);
  RunConfig c = tracked_config("mlp(hidden=[8])", {"nan-on-even"}, "track_nan.csv");
  examples::Datasets data = mnist_subset(400);
  std::shared_ptr<nn::Module> model = examples::build_model(c, data.train);
  RunResult r = examples::fit(*model, c, data);
  REQUIRE(r.steps == 4);
  const std::vector<std::string> lines = lines_of(c.track_log);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == "step,epoch,loss,a,b");
  for (std::size_t step = 1; step <= 4; ++step) {
    CAPTURE(step);
    const std::string tail = lines[step].substr(lines[step].rfind(',', lines[step].rfind(',') - 1));
    CHECK(tail == (step % 2 == 1 ? ",," : ",nan,2.5"));
  }
  c.track = {examples::resolve_tracker(spec("miscounting"))};
  model = examples::build_model(c, data.train);
  CHECK_THROWS_WITH_AS(examples::fit(*model, c, data), "--track miscounting: 3 values for its 2 columns",
                       std::logic_error);
  fs::remove(c.track_log);
}

namespace {
/// A program's own model class (as mnist_mlp's): not an nn::Sequential.
class OwnModel : public nn::Module {
 public:
  explicit OwnModel(std::shared_ptr<nn::Module> inner) : inner_(register_module("net", std::move(inner))) {}
  ag::Tensor forward(const ag::Tensor& x) override { return (*inner_)(x); }
  std::string type_name() const override { return "OwnModel"; }

 private:
  std::shared_ptr<nn::Module> inner_;
};
}  // namespace

TEST_CASE("--track noise-scale takes a program's own model class: sample by sample, the one-sweep statistic") {
  RunConfig c = tracked_config("mlp(hidden=[16])", {"noise-scale(every=5,samples=100)"}, "track_own.csv");
  examples::Datasets data = mnist_subset(1000);
  std::shared_ptr<nn::Module> inner = examples::build_model(c, data.train);
  OwnModel model(inner);
  RunResult r = examples::fit(model, c, data);
  REQUIRE(r.steps == 10);
  const std::vector<std::string> lines = lines_of(c.track_log);
  REQUIRE(lines.size() == 11);
  CHECK(lines[0] == "step,epoch,loss,noise_scale,grad_sq,trace_cov");
  const std::vector<std::string> last = examples::lab::csv_cells(lines[10]);
  data::DataLoader loader(data.train, {.batch_size = 100, .shuffle = false});
  data::Batch batch;
  loader.next(batch);
  model.eval();
  const analysis::NoiseScale b = analysis::noise_scale(
      analysis::per_sample_sq_norms(dynamic_cast<nn::Sequential&>(*inner), batch.images, batch.labels));
  CHECK(std::stod(last[3]) == doctest::Approx(b.simple).epsilon(1e-4));
  CHECK(std::stod(last[5]) == doctest::Approx(b.trace).epsilon(1e-4));
  fs::remove(c.track_log);
}

namespace {
/// A small MLP's run (batch 100) for the run store's tests.
RunConfig store_run(const std::string& model, std::size_t epochs) {
  RunConfig run = quiet_config();
  run.model = spec(model);
  run.batch_size = 100;
  run.epochs = epochs;
  return run;
}

/// An empty store in a temporary directory.
examples::lab::RunStore empty_store(const fs::path& dir) {
  fs::remove_all(dir);
  return examples::lab::RunStore(dir.string());
}
}  // namespace

TEST_CASE("lab: a stored run stopped after its second epoch (killed before or after the checkpoint) resumes from its checkpoint with an uninterrupted run's bits") {
  const examples::Datasets data = mnist_subset(1000);
  const RunConfig run = store_run("mlp(hidden=[16])", 3);
  const RunResult straight = examples::train(run, data);
  REQUIRE(straight.epochs.size() == 3);
  const fs::path dir = temp_path("store");
  const examples::lab::RunStore store = empty_store(dir);
  const std::string identity = examples::lab::run_identity(run, examples::lab::data_fingerprint(data), "flags");
  // Stopped in the third epoch's callback: its epochs are stored, its checkpoint (written after the callback) is
  // the second epoch's, as when the lab is killed between the two; the store is cut back to the checkpoint.
  int epochs_seen = 0;
  auto stop_after_two = [&](const examples::EpochMetrics&) {
    if (++epochs_seen == 3) throw std::runtime_error("stopped");  // as if the lab were killed here
  };
  CHECK_THROWS_WITH(store.train(run, identity, data, stop_after_two, nullptr), "stopped");
  CHECK_FALSE(store.finished(identity));
  CHECK(fs::exists(dir / (examples::lab::identity_hash(identity) + ".ckpt")));

  RunResult resumed;
  std::string said = captured(1, [&] { resumed = store.train(run, identity, data, {}, stdout); });
  CHECK(said.find("after 2 epoch(s)") != std::string::npos);
  REQUIRE(resumed.epochs.size() == 3);
  for (std::size_t e = 0; e < 3; ++e) check_same(resumed.epochs[e], straight.epochs[e]);
  CHECK(resumed.steps == straight.steps);
  CHECK(resumed.best_test_acc == straight.best_test_acc);
  CHECK_FALSE(fs::exists(dir / (examples::lab::identity_hash(identity) + ".ckpt")));  // dropped once finished

  std::optional<RunResult> stored = store.finished(identity);
  REQUIRE(stored);
  REQUIRE(stored->epochs.size() == 3);
  for (std::size_t e = 0; e < 3; ++e) check_same(stored->epochs[e], straight.epochs[e]);
  // Another configuration is not this one: a different seed, or different shared flags.
  RunConfig other = run;
  other.seed = 1;
  CHECK_FALSE(store.finished(examples::lab::run_identity(other, examples::lab::data_fingerprint(data), "flags")));
  CHECK_FALSE(store.finished(examples::lab::run_identity(run, examples::lab::data_fingerprint(data), "other flags")));
  CHECK(examples::lab::data_fingerprint(data) != examples::lab::data_fingerprint(mnist_subset(999)));
  CHECK(store.others({identity}) == 0);
  CHECK(store.others({}) == 1);
  // A damaged result (a byte appended) is not taken, and the log says which file and why.
  const fs::path result_file = dir / (examples::lab::identity_hash(identity) + ".result");
  std::ofstream(result_file, std::ios::app) << "x";
  std::string said_damaged = captured(1, [&] { CHECK_FALSE(store.finished(identity, stdout)); });
  CHECK(said_damaged.find("the stored result " + result_file.string() + " is not one to take (a run's result has "
                          "text after its end): the run is run again") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("lab: a stored run of no epochs (--epochs 0) is the models' evaluation, stored as finished") {
  const examples::Datasets data = mnist_subset(500);
  const RunConfig run = store_run("mlp(hidden=[8])", 0);
  const RunResult straight = examples::train(run, data);
  REQUIRE(straight.epochs.size() == 1);  // the evaluation, at epoch 0
  const fs::path dir = temp_path("store_no_epochs");
  const examples::lab::RunStore store = empty_store(dir);
  const std::string identity = examples::lab::run_identity(run, examples::lab::data_fingerprint(data), "flags");
  const RunResult stored_now = store.train(run, identity, data, {}, nullptr);
  REQUIRE(stored_now.epochs.size() == 1);
  check_same(stored_now.epochs[0], straight.epochs[0]);
  std::optional<RunResult> stored = store.finished(identity);
  REQUIRE(stored);
  REQUIRE(stored->epochs.size() == 1);
  check_same(stored->epochs[0], straight.epochs[0]);
  fs::remove_all(dir);
}

TEST_CASE("lab: a stored run evaluated on DeepOBS's splits resumes with all its evaluations, those before the checkpoint too") {
  examples::Datasets data = mnist_subset(1000);
  data.train_eval = data.train;  // small stand-ins for the splits: what is compared is what the store keeps
  data.validation = mnist_subset(500).train;
  RunConfig run = store_run("mlp(hidden=[16])", 3);
  run.evaluation_splits = true;
  run.eval_log.clear();
  const RunResult straight = examples::train(run, data);
  REQUIRE(straight.evaluations.size() == 4);  // before the first step, then at each epoch's end
  const fs::path dir = temp_path("store_evaluations");
  const examples::lab::RunStore store = empty_store(dir);
  const std::string identity = examples::lab::run_identity(run, examples::lab::data_fingerprint(data), "flags");
  int epochs_seen = 0;
  auto stop_after_two = [&](const examples::EpochMetrics&) {  // the third epoch and its evaluation are dropped
    if (++epochs_seen == 3) throw std::runtime_error("stopped");
  };
  CHECK_THROWS_WITH(store.train(run, identity, data, stop_after_two, nullptr), "stopped");
  RunResult resumed;
  std::string said = captured(1, [&] { resumed = store.train(run, identity, data, {}, stdout); });
  CHECK(said.find("after 2 epoch(s)") != std::string::npos);
  for (const RunResult& r : {resumed, *store.finished(identity)}) {
    REQUIRE(r.evaluations.size() == straight.evaluations.size());
    for (std::size_t k = 0; k < r.evaluations.size(); ++k) {
      CAPTURE(k);
      CHECK(r.evaluations[k].step == straight.evaluations[k].step);
      CHECK(r.evaluations[k].validation_loss == straight.evaluations[k].validation_loss);
      CHECK(r.evaluations[k].validation_acc == straight.evaluations[k].validation_acc);
      CHECK(r.evaluations[k].test_acc == straight.evaluations[k].test_acc);
      CHECK(r.evaluations[k].train_eval_loss == straight.evaluations[k].train_eval_loss);
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("lab: a stored run stopped by Ctrl-C in its first epoch resumes mid-epoch, its evaluations kept") {
  examples::Datasets data = mnist_subset(1000);
  data.train_eval = data.train;
  data.validation = mnist_subset(500).train;
  RunConfig run = store_run("mlp(hidden=[16])", 2);  // 10 steps an epoch
  run.evaluation_splits = true;
  run.eval_every = 3;
  run.eval_log.clear();
  const RunResult straight = examples::train(run, data);
  REQUIRE(straight.evaluations.size() == 1 + 20 / 3);
  const fs::path dir = temp_path("store_first_epoch");
  const examples::lab::RunStore store = empty_store(dir);
  const std::string identity = examples::lab::run_identity(run, examples::lab::data_fingerprint(data), "flags");
  RunConfig stopped_run = run;  // Ctrl-C comes with the evaluation at step 6: the run stops after that step
  stopped_run.on_evaluation = [](const examples::EvalMetrics& m) {
    if (m.step == 6) examples::interrupt_flag() = 1;
  };
  const RunResult stopped = store.train(stopped_run, identity, data, {}, nullptr);
  examples::interrupt_flag() = 0;
  CHECK(stopped.interrupted);
  CHECK(stopped.steps == 6);
  CHECK_FALSE(store.finished(identity));
  RunResult resumed;
  std::string said = captured(1, [&] { resumed = store.train(run, identity, data, {}, stdout); });
  CHECK(said.find("resumed from " + (dir / examples::lab::identity_hash(identity)).string() + ".ckpt after 0 epoch(s)") !=
        std::string::npos);
  CHECK(resumed.steps == straight.steps);
  REQUIRE(resumed.epochs.size() == 2);
  for (std::size_t e = 0; e < 2; ++e) check_same(resumed.epochs[e], straight.epochs[e]);
  REQUIRE(resumed.evaluations.size() == straight.evaluations.size());  // those at steps 0, 3 and 6 kept
  for (std::size_t k = 0; k < resumed.evaluations.size(); ++k) {
    CAPTURE(k);
    CHECK(resumed.evaluations[k].step == straight.evaluations[k].step);
    CHECK(resumed.evaluations[k].validation_loss == straight.evaluations[k].validation_loss);
    CHECK(resumed.evaluations[k].test_acc == straight.evaluations[k].test_acc);
  }
  fs::remove_all(dir);
}

TEST_CASE("lab: a stored checkpoint whose epochs are missing or another run's is not resumed: the run starts over") {
  const examples::Datasets data = mnist_subset(500);
  const RunConfig run = store_run("mlp(hidden=[8])", 2);
  const RunResult straight = examples::train(run, data);
  const fs::path dir = temp_path("store_bad");
  const examples::lab::RunStore store = empty_store(dir);
  const std::string identity = examples::lab::run_identity(run, examples::lab::data_fingerprint(data), "");
  for (std::string epochs_file : {"", "junk", "identity 3\nabc\nrun 0 0 0 0 0x0p+0 0x0p+0\ndivergence 0\n\nepochs 0\n"}) {
    CAPTURE(epochs_file);
    int epochs_seen = 0;  // stopped in the second epoch's callback: the checkpoint is the first epoch's
    auto stop = [&](const examples::EpochMetrics&) {
      if (++epochs_seen == 2) throw std::runtime_error("stopped");
    };
    CHECK_THROWS_WITH(store.train(run, identity, data, stop, nullptr), "stopped");
    const fs::path stored_epochs = dir / (examples::lab::identity_hash(identity) + ".epochs");
    if (epochs_file.empty()) {
      fs::remove(stored_epochs);
    } else {
      std::ofstream(stored_epochs, std::ios::trunc) << epochs_file;
    }
    RunResult again;
    std::string said = captured(1, [&] { again = store.train(run, identity, data, {}, stdout); });
    CHECK(said.find("is not one to resume from") != std::string::npos);
    REQUIRE(again.epochs.size() == 2);
    for (std::size_t e = 0; e < 2; ++e) check_same(again.epochs[e], straight.epochs[e]);
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  fs::remove_all(dir);
}
