// The training programs' shared core and the optimiser-comparison lab: flag parsing, short end-to-end runs on
// the real MNIST (data/mnist, see scripts/fetch-mnist.sh), determinism, checkpoint round trips, divergence,
// and the lab's aggregation and outputs (CSV, Markdown, PNG through gnuplot).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "examples/common/flags.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/training.hpp"

namespace {

namespace fs = std::filesystem;
using examples::FlagError;
using examples::FlagSet;
using examples::RunConfig;
using examples::RunResult;

void parse(FlagSet& flags, std::vector<std::string> args) {
  args.insert(args.begin(), "program");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  flags.parse(static_cast<int>(argv.size()), argv.data());
}

RunConfig config_of(std::vector<std::string> args, const std::string& model = "mlp") {
  FlagSet flags("program", "test");
  examples::add_training_flags(flags, model);
  parse(flags, std::move(args));
  return examples::config_from_flags(flags, model);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const FlagError& error) {
    return error.what();
  }
  return "(no FlagError)";
}

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

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::size_t line_count(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / fmt::format("tapegrad_test_examples_{}_{}", ::getpid(), name);
}

int lab_main(std::vector<std::string> args) {
  args.insert(args.begin(), "compare_optimizers");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return examples::lab::lab_main(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

// ---------------------------------------------------------------- flags

TEST_CASE("FlagSet parses values, switches and lists") {
  FlagSet flags("program", "test");
  flags.add("name", "default", "a text").add("rate", "0.5", "a number").add("widths", "128,64", "a list");
  flags.add("count", "3", "a count").add_switch("verbose", "a switch");
  parse(flags, {"--rate", "0.25", "--widths=300,100,100", "--verbose"});
  CHECK(flags.number("rate") == 0.25);
  CHECK(flags.counts("widths") == std::vector<std::size_t>{300, 100, 100});
  CHECK(flags.on("verbose"));
  CHECK(flags.given("rate"));
  CHECK_FALSE(flags.given("name"));
  CHECK(flags.text("name") == "default");
  CHECK(flags.count("count") == 3);
  CHECK_FALSE(flags.help_requested());

  FlagSet defaults("program", "test");
  defaults.add("widths", "128,64", "").add("empty", "", "").add_switch("verbose", "");
  parse(defaults, {});
  CHECK(defaults.counts("widths") == std::vector<std::size_t>{128, 64});
  CHECK(defaults.counts("empty").empty());
  CHECK_FALSE(defaults.on("verbose"));

  FlagSet help("program", "a summary line");
  help.add("rate", "0.5", "the rate");
  parse(help, {"--help"});
  CHECK(help.help_requested());
  CHECK(help.usage().find("--rate") != std::string::npos);
  CHECK(help.usage().find("default: 0.5") != std::string::npos);
}

TEST_CASE("FlagSet rejects unknown flags, missing values and bad numbers, naming the flag") {
  auto fresh = [] {
    auto flags = std::make_shared<FlagSet>("program", "test");
    flags->add("rate", "0.5", "").add("widths", "128,64", "").add("count", "3", "").add_switch("verbose", "");
    return flags;
  };
  CHECK(error_of([&] { parse(*fresh(), {"--nope", "1"}); }).find("--nope") != std::string::npos);
  CHECK(error_of([&] { parse(*fresh(), {"--rate"}); }).find("--rate needs a value") != std::string::npos);
  CHECK(error_of([&] { parse(*fresh(), {"--verbose=1"}); }).find("--verbose") != std::string::npos);
  CHECK(error_of([&] { parse(*fresh(), {"rate"}); }).find("rate") != std::string::npos);

  for (const char* bad : {"abc", "1.5x", "", "nan", "inf", "--"}) {
    auto flags = fresh();
    parse(*flags, {"--rate", bad});
    std::string message = error_of([&] { flags->number("rate"); });
    CAPTURE(bad);
    CHECK(message.find("--rate") != std::string::npos);
    CHECK(message.find("not a number") != std::string::npos);
  }
  for (const char* bad : {"128,,64", "0", "12.5", "128,x", "-4", ","}) {
    auto flags = fresh();
    parse(*flags, {"--widths", bad});
    CAPTURE(bad);
    CHECK(error_of([&] { flags->counts("widths"); }).find("--widths") != std::string::npos);
  }
  for (const char* bad : {"-3", "2.5", "many"}) {
    auto flags = fresh();
    parse(*flags, {"--count", bad});
    CAPTURE(bad);
    CHECK(error_of([&] { flags->count("count"); }).find("--count") != std::string::npos);
  }
}

TEST_CASE("config_from_flags reads the shared training flags and rejects bad values") {
  RunConfig c = config_of({"--optimizer", "nadam", "--lr", "2e-3", "--batch-size", "64", "--hidden", "300,100,100",
                           "--schedule", "linear", "--lr-final", "1e-4", "--epochs", "3", "--seed", "7", "--weight-decay",
                           "1e-4", "--init", "normal", "--validation", "10000", "--train-subset", "500"});
  CHECK(c.model == "mlp");
  CHECK(c.optimizer == "nadam");
  CHECK(c.lr == 2e-3);
  CHECK(c.batch_size == 64);
  CHECK(c.hidden == std::vector<std::size_t>{300, 100, 100});
  CHECK(c.schedule == "linear");
  CHECK(c.lr_final == 1e-4);
  CHECK(c.epochs == 3);
  CHECK(c.seed == 7);
  CHECK(c.weight_decay == 1e-4);
  CHECK(c.init == "normal");
  CHECK(c.validation == 10000);
  CHECK(c.train_subset == 500);

  RunConfig defaults = config_of({});
  CHECK(defaults.optimizer == "adam");
  CHECK(defaults.lr == 0);  // the optimiser's own default
  CHECK(defaults.hidden == std::vector<std::size_t>{128, 64});

  CHECK(error_of([] { config_of({"--optimizer", "adamw"}); }).find("adamw") != std::string::npos);
  CHECK(error_of([] { config_of({"--optimizer", "newton"}); }).find("newton") != std::string::npos);
  CHECK(config_of({"--optimizer", "newton"}, "logreg").optimizer == "newton");
  CHECK(error_of([] { config_of({"--schedule", "sawtooth"}); }).find("sawtooth") != std::string::npos);
  CHECK(error_of([] { config_of({"--lr", "-0.1"}); }).find("--lr") != std::string::npos);
  CHECK(error_of([] { config_of({"--lr", "0"}); }).find("--lr") != std::string::npos);
  CHECK(error_of([] { config_of({"--batch-size", "0"}); }).find("--batch-size") != std::string::npos);
  CHECK(error_of([] { config_of({"--batch-size", "-5"}); }).find("--batch-size") != std::string::npos);
  CHECK(error_of([] { config_of({"--hidden", ""}); }).find("--hidden") != std::string::npos);
  CHECK(error_of([] { config_of({"--dataset", "cifar"}); }).find("cifar") != std::string::npos);
  CHECK(error_of([] { config_of({"--threads", "0"}); }).find("--threads") != std::string::npos);
  CHECK(error_of([] { config_of({"--weight-decay", "-1"}); }).find("--weight-decay") != std::string::npos);
  CHECK_THROWS_AS(config_of({"--hidden", "128"}, "logreg"), FlagError);  // logreg has no --hidden
}

TEST_CASE("training_main exits 2 on bad flags, before touching the data") {
  std::vector<const char*> argv{"mnist_mlp", "--optimizer", "adamw"};
  CHECK(examples::training_main(static_cast<int>(argv.size()), argv.data(), "mlp", "test") == 2);
  std::vector<const char*> missing{"mnist_mlp", "--lr"};
  CHECK(examples::training_main(static_cast<int>(missing.size()), missing.data(), "mlp", "test") == 2);
}

// ---------------------------------------------------------------- end to end on the real data

// One epoch of Adam at lr 1e-3 on the MLP 784-128-64-10: with batch 200 (300 steps) PyTorch 1.13 reaches 92.7 %
// (bench/pytorch_reference.py --accuracy --workloads w1) and tapegrad 93.4 %; 95 % takes smaller batches, more
// steps: batch 32 (1,875 steps) gives 95.8 %.
TEST_CASE("one epoch of the MLP 784-128-64-10 with Adam reaches 95 % test accuracy") {
  RunConfig c = quiet_config();
  c.hidden = {128, 64};
  c.optimizer = "adam";
  c.lr = 1e-3;
  c.batch_size = 32;
  c.epochs = 1;
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
  RunConfig c = quiet_config();
  c.hidden = {64};
  c.batch_size = 100;
  c.epochs = 2;
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

TEST_CASE("resume: one epoch, save, one more epoch equals two epochs straight") {
  examples::Datasets sets = mnist_subset(6000);
  fs::path checkpoint = temp_path("resume.ckpt");
  // The schedule must pick up at the right epoch too, with its horizon given (--lr-epochs 2) or taken from
  // the run (0: the epochs before the resume plus --epochs).
  for (auto [optimizer, lr_epochs] : {std::pair{"adam", 2}, std::pair{"momentum", 2}, std::pair{"momentum", 0}}) {
    CAPTURE(optimizer);
    CAPTURE(lr_epochs);
    RunConfig c = quiet_config();
    c.hidden = {64, 32};
    c.optimizer = optimizer;
    c.batch_size = 100;
    c.seed = 11;
    c.schedule = "linear";
    c.lr_epochs = static_cast<std::size_t>(lr_epochs);
    c.lr_final = c.optimizer == "adam" ? 1e-4 : 1e-3;

    c.epochs = 2;
    RunResult straight = examples::train(c, sets);

    c.epochs = 1;
    c.save_path = checkpoint.string();
    RunResult first = examples::train(c, sets);
    REQUIRE(fs::exists(checkpoint));
    c.save_path.clear();
    c.resume_path = checkpoint.string();
    RunResult resumed = examples::train(c, sets);

    REQUIRE(straight.epochs.size() == 2);
    REQUIRE(first.epochs.size() == 1);
    REQUIRE(resumed.epochs.size() == 1);
    check_same(first.epochs[0], straight.epochs[0]);
    check_same(resumed.epochs[0], straight.epochs[1]);
    CHECK(resumed.best_test_acc == straight.best_test_acc);

    // --resume FILE --epochs 0 only evaluates the saved model: the first epoch's numbers on the test set.
    c.epochs = 0;
    RunResult evaluated = examples::train(c, sets);
    REQUIRE(evaluated.epochs.size() == 1);
    CHECK(evaluated.epochs[0].test_acc == first.epochs[0].test_acc);
    CHECK(evaluated.epochs[0].test_loss == first.epochs[0].test_loss);
  }
  fs::remove(checkpoint);
}

TEST_CASE("a diverging run stops at the first non-finite loss and names the step and the epoch") {
  examples::Datasets sets = mnist_subset(300);
  RunConfig c = quiet_config();
  c.hidden = {128, 64};
  c.optimizer = "sgd";
  c.lr = 50;
  c.batch_size = 1;
  c.epochs = 3;
  std::size_t callbacks = 0;
  RunResult result = examples::train(c, sets, [&](const examples::EpochMetrics&) { ++callbacks; });
  REQUIRE(result.diverged);
  MESSAGE(result.divergence);
  CHECK(result.divergence.find("at step ") != std::string::npos);
  CHECK(result.divergence.find("of epoch ") != std::string::npos);
  CHECK(result.divergence.find("lr 50") != std::string::npos);
  CHECK(callbacks == result.epochs.size());
  CHECK(result.epochs.size() < 3);
  for (const auto& m : result.epochs) CHECK(std::isfinite(m.train_loss));
  CHECK(result.final_line().find("diverged=1") != std::string::npos);
}

// ---------------------------------------------------------------- the lab

namespace {

examples::lab::RunRecord record(const std::string& optimizer, std::uint64_t seed, std::vector<double> test_acc,
                                double train_loss, double seconds, bool diverged = false) {
  examples::lab::RunRecord r;
  r.point = {optimizer, 1e-3, 100};
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

  std::vector<examples::lab::RunRecord> records{
      record("adam", 0, {0.95, 0.97, 0.975}, 0.1, 2.0),
      record("adam", 1, {0.96, 0.975, 0.98}, 0.2, 4.0),
      record("adam", 2, {0.96, 0.965, 0.968}, 0.3, 3.0),
      record("sgd", 0, {0.90, 0.92, 0.93}, 0.5, 1.0),
      record("sgd", 1, {0.91, 0.92}, 0.5, 1.0, true),
  };
  auto summaries = examples::lab::summarise(records, {0.97, 0.98});
  REQUIRE(summaries.size() == 2);
  const auto& adam = summaries[0];
  CHECK(adam.point.optimizer == "adam");
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

  std::string md = examples::lab::summary_markdown(summaries);
  MESSAGE("\n", md);
  CHECK(md.find("| optimizer | lr | batch | runs | final test acc (%)") == 0);
  CHECK(md.find("epochs to 97 %") != std::string::npos);
  CHECK(md.find("epochs to 98 %") != std::string::npos);
  CHECK(md.find("97.43 ± 0.60") != std::string::npos);  // adam's final accuracy, mean ± std in percent
  CHECK(md.find("2.0 ± 0.0 (2/3)") != std::string::npos);
  CHECK(md.find("3.0 ± 0.0 (1/3)") != std::string::npos);
  CHECK(md.find("never") != std::string::npos);   // sgd never reaches 97 %
  CHECK(md.find("sgd ⚠") != std::string::npos);   // marked
  CHECK(md.find("**1 of 2**") != std::string::npos);
  CHECK(line_count(md) == 4);

  std::string csv = examples::lab::summary_csv(summaries);
  CHECK(csv.rfind("optimizer,lr,batch_size,runs,diverged,final_test_acc_mean,final_test_acc_std,", 0) == 0);
  CHECK(csv.find("epochs_to_97_mean,epochs_to_97_std,reached_97") != std::string::npos);
  CHECK(line_count(csv) == 3);
  CHECK(examples::lab::curves_csv_header() ==
        "optimizer,lr,batch_size,seed,epoch,train_loss,train_acc,test_loss,test_acc,lr_now,seconds\n");
  CHECK(line_count(examples::lab::curves_csv_rows(records[0])) == 3);
  CHECK(examples::lab::curves_csv_rows(records[0]).rfind("adam,0.001,100,0,1,", 0) == 0);
  std::string runs = examples::lab::runs_csv(records);
  CHECK(line_count(runs) == 6);
  CHECK(runs.find("\"diverged: the training loss became nan at step 9 (batch 9 of epoch 3)\"") != std::string::npos);
}

TEST_CASE("lab: its flags, forwarded to the programs' checks") {
  auto lab_config = [](std::vector<std::string> args) {
    FlagSet flags("compare_optimizers", "test");
    examples::lab::add_lab_flags(flags);
    parse(flags, std::move(args));
    return examples::lab::lab_config_from_flags(flags);
  };
  examples::lab::LabConfig defaults = lab_config({});
  CHECK(defaults.optimizers == std::vector<std::string>{"adam", "rmsprop"});
  CHECK(defaults.lrs.empty());
  CHECK(defaults.batch_sizes == std::vector<std::size_t>{1024});
  CHECK(defaults.seeds == std::vector<std::uint64_t>{0, 1, 2, 3, 4});
  CHECK(defaults.base.epochs == 10);
  CHECK(defaults.out_dir == "lab-out");
  auto points = examples::lab::grid_points(defaults);
  REQUIRE(points.size() == 2);
  CHECK(points[0].lr == 1e-3);  // the optimisers' own defaults
  CHECK(points[1].lr == 1e-3);

  examples::lab::LabConfig c = lab_config({"--model", "mlp", "--hidden", "512,512", "--init", "normal", "--optimizers",
                                           "sgd,adam,nadam", "--lrs", "0.1,1e-3", "--batch-sizes", "64,1024", "--seeds",
                                           "7,0", "--epochs", "3", "--validation", "10000", "--weight-decay", "1e-4",
                                           "--out", "somewhere", "--quiet"});
  CHECK(c.base.hidden == std::vector<std::size_t>{512, 512});
  CHECK(c.base.init == "normal");
  CHECK(c.base.epochs == 3);
  CHECK(c.base.validation == 10000);
  CHECK(c.base.weight_decay == 1e-4);
  CHECK(c.seeds == std::vector<std::uint64_t>{7, 0});
  CHECK(c.out_dir == "somewhere");
  CHECK_FALSE(c.epoch_lines);
  CHECK(examples::lab::grid_points(c).size() == 3 * 2 * 2);

  CHECK(error_of([&] { lab_config({"--optimizers", "adam,adamw"}); }).find("adamw") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--optimizers", ""}); }).find("--optimizers") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--lrs", "1e-3,-1"}); }).find("--lrs") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--batch-sizes", "0"}); }).find("--batch-sizes") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--seeds", "1.5"}); }).find("--seeds") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--seeds", ""}); }).find("--seeds") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--model", "cnn", "--hidden", "64"}); }).find("--hidden") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--model", "rnn"}); }).find("rnn") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--schedule", "sawtooth"}); }).find("sawtooth") != std::string::npos);
  CHECK(error_of([&] { lab_config({"--targets", "97"}); }).find("--targets") != std::string::npos);
  CHECK(lab_config({"--model", "logreg", "--optimizers", "newton,sgd"}).optimizers.size() == 2);
  CHECK(lab_main({"--optimizers", "adamw"}) == 2);
}

TEST_CASE("lab: a tiny grid writes its CSV, Markdown table and PNGs") {
  fs::path out = temp_path("lab");
  fs::remove_all(out);
  // 2 optimisers x 1 lr x 1 batch size x 2 seeds, 2 epochs on 1000 training images.
  int status = lab_main({"--optimizers", "adam,sgd", "--lrs", "0.01", "--batch-sizes", "50", "--seeds", "0,1",
                         "--epochs", "2", "--hidden", "32", "--train-subset", "1000", "--out", out.string(), "--quiet",
                         "--no-progress"});
  REQUIRE(status == 0);

  std::string curves = read_file(out / "curves.csv");
  CHECK(curves.rfind(examples::lab::curves_csv_header(), 0) == 0);
  CHECK(line_count(curves) == 1 + 2 * 2 * 2);  // header + runs x epochs
  CHECK(curves.find("\nadam,0.01,50,1,2,") != std::string::npos);
  CHECK(curves.find("\nsgd,0.01,50,0,1,") != std::string::npos);
  std::string summary = read_file(out / "summary.csv");
  CHECK(line_count(summary) == 3);
  std::string markdown = read_file(out / "summary.md");
  CHECK(markdown.find("| optimizer | lr | batch |") != std::string::npos);
  CHECK(markdown.find("| adam | 0.01 | 50 | 2 |") != std::string::npos);
  CHECK(markdown.find("| sgd | 0.01 | 50 | 2 |") != std::string::npos);
  CHECK(line_count(read_file(out / "runs.csv")) == 5);

  std::string why;
  if (examples::lab::png_terminal("gnuplot", &why).empty()) {
    WARN_MESSAGE(false, "PNG checks skipped: ", why);
  } else {
    for (const char* png : {"loss.png", "test_loss.png", "accuracy.png"}) {
      CAPTURE(png);
      std::string bytes = read_file(out / png);
      REQUIRE(bytes.size() > 1000);
      CHECK(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
    }
  }
  CHECK(fs::file_size(out / "plot.gp") > 0);
  CHECK(fs::file_size(out / "bands.dat") > 0);

  // Without gnuplot: the same tables, a warning and no PNG, still exit 0.
  fs::path no_plots = temp_path("lab_no_gnuplot");
  fs::remove_all(no_plots);
  status = lab_main({"--optimizers", "adam", "--seeds", "0", "--epochs", "1", "--hidden", "16", "--train-subset", "500",
                     "--out", no_plots.string(), "--gnuplot", "/nonexistent/gnuplot", "--quiet", "--no-progress"});
  CHECK(status == 0);
  CHECK(fs::exists(no_plots / "summary.md"));
  CHECK(fs::exists(no_plots / "curves.csv"));
  CHECK(fs::exists(no_plots / "plot.gp"));
  CHECK_FALSE(fs::exists(no_plots / "loss.png"));

  fs::remove_all(out);
  fs::remove_all(no_plots);
}
