// DeepOBS's tuning protocol in the lab (examples/common/protocol.hpp): the rate grid, the choice, both phases
// end to end on MNIST subsets and on quadratic_deep, and what stops it (refused flags, a run that fails).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/protocol.hpp"
#include "lab_test_support.hpp"
#include "optim/registry.hpp"

namespace {

using namespace lab_test;
namespace fs = std::filesystem;
using examples::FlagError;

}  // namespace

namespace {

using examples::lab::csv_cells;

/// A CSV file as rows of column name -> cell.
std::vector<std::map<std::string, std::string>> csv_rows(const fs::path& path) {
  std::istringstream in(read_file(path));
  std::string line;
  std::getline(in, line);
  const std::vector<std::string> header = csv_cells(line);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    const std::vector<std::string> cells = csv_cells(line);
    REQUIRE(cells.size() == header.size());
    std::map<std::string, std::string>& row = rows.emplace_back();
    for (std::size_t i = 0; i < cells.size(); ++i) row[header[i]] = cells[i];
  }
  return rows;
}

}  // namespace

TEST_CASE("protocol: --lr-grid is a log grid with both ends exact; a bad grid is refused naming the flag and why") {
  using examples::lab::parse_lr_grid;
  const std::vector<double> deepobs = parse_lr_grid("1e-5:1e2:36");
  REQUIRE(deepobs.size() == 36);
  CHECK(deepobs.front() == 1e-5);
  CHECK(deepobs.back() == 1e2);
  for (std::size_t i = 1; i < deepobs.size(); ++i) CHECK(deepobs[i] / deepobs[i - 1] == doctest::Approx(std::pow(1e7, 1.0 / 35)));
  const std::vector<double> four = parse_lr_grid("1e-3:1:4");
  REQUIRE(four.size() == 4);
  CHECK(four[1] == doctest::Approx(1e-2));
  CHECK(four[2] == doctest::Approx(1e-1));
  CHECK(parse_lr_grid("0.01:0.01:1") == std::vector<double>{0.01});
  for (const char* bad : {"1e-3:1e-1", "0:1:3", "1:1e-1:3", "1e-3:1:x", "1e-3:1:2.5", "1e-3:1e-3:3", "1e-3:1:0"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_lr_grid(bad), doctest::Contains((std::string("--lr-grid ") + bad).c_str()), FlagError);
  }
}

TEST_CASE("protocol: the chosen rate has the best validation metric; diverged runs never; a tie keeps the smaller rate") {
  using examples::lab::Selection;
  using examples::lab::SensitivityRow;
  auto row = [](std::size_t optimiser, double lr, double acc, double loss, bool diverged = false) {
    SensitivityRow r;
    r.optimiser = optimiser, r.lr = lr, r.diverged = diverged;
    r.metrics.final_validation_acc = acc, r.metrics.final_validation_loss = loss;
    r.metrics.best_validation_acc = 1 - loss, r.metrics.best_validation_loss = 1 - acc;  // another order
    return r;
  };
  const std::vector<SensitivityRow> rows{row(0, 1e-3, 0.50, 0.9), row(0, 1e-2, 0.80, 0.5), row(0, 1e-1, 0.80, 0.4),
                                         row(0, 1, 0.95, 0.1, true), row(1, 1e-3, 0.30, 2.0), row(1, 1e-2, 0.20, 1.5),
                                         row(2, 1e-3, 0.99, 0.01, true)};
  auto chosen = examples::lab::choose(rows, 3, Selection{});
  REQUIRE(chosen.size() == 3);
  CHECK(chosen[0] == 1u);  // 0.80 twice: the smaller rate; the diverged 0.95 never
  CHECK(chosen[1] == 4u);
  CHECK_FALSE(chosen[2].has_value());  // every run diverged
  CHECK(examples::lab::choose(rows, 3, Selection{.loss = true})[0] == 2u);  // the lowest final loss
  CHECK(examples::lab::choose(rows, 3, Selection{.loss = true})[1] == 5u);
  CHECK(examples::lab::choose(rows, 3, Selection{.best = true})[0] == 2u);  // 1 - 0.4, the highest best accuracy
  CHECK(examples::lab::choose(rows, 3, Selection{.best = true, .loss = true})[0] == 1u);  // 1 - 0.8 twice: the smaller rate
  CHECK_THROWS_WITH_AS(examples::lab::parse_selection("final-acc"), doctest::Contains("--select final-acc"), FlagError);
}

TEST_CASE("protocol: refusals name the flag: a spec with its own lr, --lrs, --seeds, --epochs 0, --lr-grid without --protocol") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--protocol", "--optimizers", "adam(lr=1e-3)"}, "adam(lr=1e-3) sets lr=1e-3 itself"},
      {{"--protocol", "--lrs", "1e-3"}, "--lrs: not with --protocol"},
      {{"--protocol", "--seeds", "0,1"}, "--seeds: not with --protocol"},
      {{"--protocol", "--batch-sizes", "50,100"}, "--batch-sizes: --protocol tunes"},
      {{"--protocol", "--epochs", "0"}, "--epochs 0: --protocol chooses each optimiser's rate"},
      {{"--lr-grid", "1e-3:1:4"}, "--lr-grid: only with --protocol"},
      {{"--protocol-seeds", "3"}, "--protocol-seeds: only with --protocol"},
      {{"--protocol", "--lr-grid", "1e-3:1"}, "--lr-grid 1e-3:1: the form is LO:HI:N"}};
  for (const auto& test : cases) {
    const std::vector<std::string>& flags = test.first;
    const std::string& message = test.second;
    CAPTURE(message);
    int status = 0;
    std::string err = captured(2, [&] { captured(1, [&] { status = lab_main(flags); }); });
    CHECK(status == 2);
    CHECK(err.find(message) != std::string::npos);
  }
}

namespace {
/// Per optimiser, the rate chosen in sensitivity.csv's rows, checked to be the one chosen row and the best final
/// validation accuracy (the first of equals) among its runs that did not diverge.
std::map<std::string, double> checked_choice(const std::vector<std::map<std::string, std::string>>& sensitivity,
                                             const std::vector<std::string>& names) {
  std::map<std::string, double> chosen_lr;
  for (const std::string& name : names) {
    CAPTURE(name);
    std::optional<std::size_t> best;
    std::size_t chosen = 0;
    for (std::size_t i = 0; i < sensitivity.size(); ++i) {
      const auto& r = sensitivity[i];
      if (r.at("optimizer") != name) continue;
      chosen += r.at("chosen") == "1" ? 1 : 0;
      if (r.at("diverged") == "1" || r.at("final_validation_acc").empty()) continue;
      if (!best || std::stod(r.at("final_validation_acc")) > std::stod(sensitivity[*best].at("final_validation_acc"))) best = i;
    }
    REQUIRE(best.has_value());
    CHECK(chosen == 1);
    CHECK(sensitivity[*best].at("chosen") == "1");
    chosen_lr[name] = std::stod(sensitivity[*best].at("lr"));
  }
  return chosen_lr;
}
}  // namespace

TEST_CASE("protocol: a tiny protocol chooses the best validation accuracy, reruns it with N seeds, tabulates their mean") {
  const fs::path out = temp_path("protocol");
  fs::remove_all(out);
  const std::vector<std::string> args{"--protocol", "--optimizers", "sgd,adam", "--lr-grid", "1e-3:1:4",
                                      "--protocol-seeds", "2", "--epochs", "1", "--train-subset", "500",
                                      "--batch-sizes", "50", "--hidden", "16", "--out", out.string(), "--quiet",
                                      "--no-progress", "--jobs", "1"};
  int status = -1;
  std::string log = captured(1, [&] { status = lab_main(args); });
  REQUIRE(status == 0);

  // Phase 1: 2 optimisers x 4 rates at seed 0; exactly one chosen per optimiser, the one with the best final
  // validation accuracy (the first of equals), read back from sensitivity.csv.
  const auto sensitivity = csv_rows(out / "sensitivity.csv");
  REQUIRE(sensitivity.size() == 8);
  std::map<std::string, double> chosen_lr = checked_choice(sensitivity, {"sgd", "adam"});
  MESSAGE("chosen: sgd ", chosen_lr["sgd"], ", adam ", chosen_lr["adam"]);

  // Phase 2: exactly N = 2 seeds at the chosen rate, nothing else.
  const auto runs = csv_rows(out / "seeds" / "runs.csv");
  REQUIRE(runs.size() == 4);
  std::map<std::string, std::vector<double>> final_acc;
  std::map<std::string, std::set<std::string>> seeds;
  for (const auto& r : runs) {
    CHECK(std::stod(r.at("lr")) == doctest::Approx(chosen_lr.at(r.at("optimizer"))).epsilon(1e-9));
    seeds[r.at("optimizer")].insert(r.at("seed"));
    final_acc[r.at("optimizer")].push_back(std::stod(r.at("final_test_acc")));
  }
  CHECK(seeds["sgd"] == std::set<std::string>{"0", "1"});
  CHECK(seeds["adam"] == std::set<std::string>{"0", "1"});
  // Seed 0 of each chosen setting is phase 1's run: taken from there, not trained again, and kept in phase 2's store.
  INFO(log);
  CHECK(log.find((out / "seeds" / "runs").string() + ": 2 of 4 runs finished earlier") != std::string::npos);
  std::size_t kept = 0;
  for (const auto& entry : fs::directory_iterator(out / "seeds" / "runs")) kept += entry.path().extension() == ".result";
  CHECK(kept == 4);
  // Every run of phase 2 has its evaluation log; sgd's seed 0 (run 1), written from the store, is phase 1's run's
  // (sensitivity.csv's rows are phase 1's runs in order), byte for byte.
  for (int k = 1; k <= 4; ++k) CHECK(fs::exists(out / "seeds" / fmt::format("eval-run{}.csv", k)));
  std::size_t chosen_sgd = 0;
  while (chosen_sgd < sensitivity.size() && !(sensitivity[chosen_sgd].at("optimizer") == "sgd" &&
                                              sensitivity[chosen_sgd].at("chosen") == "1")) {
    ++chosen_sgd;
  }
  const std::string phase1_log = read_file(out / "tune" / fmt::format("eval-run{}.csv", chosen_sgd + 1));
  CHECK(phase1_log.rfind("step,epoch,seconds,", 0) == 0);
  CHECK(read_file(out / "seeds" / "eval-run1.csv") == phase1_log);

  // The table's mean and std are the runs'.
  const auto performance = csv_rows(out / "performance.csv");
  REQUIRE(performance.size() == 2);
  for (const auto& r : performance) {
    const std::vector<double>& accs = final_acc.at(r.at("optimizer"));
    CHECK(r.at("runs") == "2");
    CHECK(std::stod(r.at("lr")) == doctest::Approx(chosen_lr.at(r.at("optimizer"))).epsilon(1e-9));
    CHECK(std::stod(r.at("final_test_acc_mean")) == doctest::Approx((accs[0] + accs[1]) / 2).epsilon(1e-6));
    CHECK(std::stod(r.at("final_test_acc_std")) ==
          doctest::Approx(std::abs(accs[0] - accs[1]) / std::sqrt(2.0)).epsilon(1e-4));
  }
  const std::string markdown = read_file(out / "performance.md");
  MESSAGE(markdown);
  CHECK(markdown.find("| sgd | ") != std::string::npos);
  CHECK(markdown.find("| adam | ") != std::string::npos);
  CHECK(fs::exists(out / "seeds" / "curves.csv"));
  require_gnuplot();
  CHECK(read_file(out / "sensitivity.png").compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  CHECK(read_file(out / "seeds" / "curves.png").compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);

  // The same command again trains nothing: both phases come from their stores, to the same table.
  const std::string table = read_file(out / "performance.csv");
  log = captured(1, [&] { status = lab_main(args); });
  REQUIRE(status == 0);
  CHECK(log.find("8 of 8 runs finished earlier") != std::string::npos);
  CHECK(log.find("4 of 4 runs finished earlier") != std::string::npos);
  CHECK(read_file(out / "performance.csv") == table);
  fs::remove_all(out);
}

TEST_CASE("lab: a function problem (quadratic_deep) in the grid and the protocol: losses instead of accuracies, "
          "no targets, the same bits in workers, DeepOBS's baselines beside") {
  examples::lab::LabConfig c = lab_config({"--problem", "quadratic_deep", "--optimizers", "sgd(lr=0.01)", "adam(lr=0.03)",
                                           "--seeds", "0,1", "--epochs", "4", "--no-progress"});
  CHECK(c.thresholds.empty());  // target accuracies: a function has none
  CHECK(c.batch_sizes == std::vector<std::size_t>{128});
  const examples::Datasets none = examples::load_datasets(c.base);
  c.gnuplot = "gnuplot";
  c.out_dir = temp_path("lab_function1").string();
  fs::remove_all(c.out_dir);
  c.jobs = 1;
  examples::lab::LabResult serial = examples::lab::run_lab(c, none, nullptr);
  c.out_dir = temp_path("lab_function2").string();
  fs::remove_all(c.out_dir);
  c.jobs = 2;
  examples::lab::LabResult parallel = examples::lab::run_lab(c, none, nullptr);
  REQUIRE(serial.records.size() == 4);
  REQUIRE(parallel.records.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    REQUIRE(serial.records[i].result.epochs.size() == 4);
    CHECK(serial.records[i].result.steps == 28);
    REQUIRE(parallel.records[i].result.epochs.size() == 4);
    CHECK(parallel.records[i].result.epochs.back().test_loss == serial.records[i].result.epochs.back().test_loss);
    CHECK(parallel.records[i].result.evaluations.size() == 5);
  }
  // Losses are tabled, mean and sample std over the seeds, from the runs' last epochs.
  const double a = serial.records[0].result.epochs.back().test_loss, b = serial.records[1].result.epochs.back().test_loss;
  REQUIRE(serial.summaries.size() == 2);
  CHECK(serial.summaries[0].final_test_loss.mean == doctest::Approx((a + b) / 2));
  CHECK(serial.summaries[0].final_test_loss.std == doctest::Approx(std::abs(a - b) / std::sqrt(2.0)));
  CHECK(serial.markdown.find("| final test loss | best test loss | final train loss |") != std::string::npos);
  CHECK(serial.markdown.find("acc") == std::string::npos);
  const fs::path out(c.out_dir);
  const std::string summary = read_file(out / "summary.md");
  CHECK(summary.find("## Time to target") == std::string::npos);
  CHECK(summary.find("## DeepOBS's published baselines") != std::string::npos);
  CHECK(summary.find("nan") == std::string::npos);
  CHECK(read_file(out / "curves.csv").find("nan") == std::string::npos);  // no accuracy: empty cells
  CHECK(read_file(out / "eval-run1.csv").find("nan") == std::string::npos);
  CHECK(read_file(out / "bands.dat").find("nan") == std::string::npos);
  CHECK(read_file(out / "summary.csv").find(",final_test_loss_mean,final_test_loss_std,") != std::string::npos);
  require_gnuplot();
  CHECK(read_file(out / "plot.gp").find("set multiplot layout 1,2") != std::string::npos);  // two losses
  CHECK(read_file(out / "curves.png").compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  fs::remove_all(temp_path("lab_function1"));
  fs::remove_all(out);

  // Every run diverged: still the loss table, not the accuracy one; a batch no epoch holds whole is refused
  // before any run, --epochs 0 too.
  c = lab_config({"--problem", "quadratic_deep", "--optimizers", "sgd(lr=1e6)", "--seeds", "0", "--epochs", "20",
                  "--no-progress", "--no-plots"});
  c.out_dir = temp_path("lab_function3").string();
  fs::remove_all(c.out_dir);
  examples::lab::LabResult diverged = examples::lab::run_lab(c, none, nullptr);
  CHECK(diverged.records.at(0).result.diverged);
  CHECK(diverged.markdown.find("| final test loss | best test loss |") != std::string::npos);
  fs::remove_all(c.out_dir);
  CHECK(captured(2, [] {
          CHECK(lab_main({"--problem", "quadratic_deep", "--epochs", "0", "--batch-sizes", "2000", "--out",
                          temp_path("lab_function4").string()}) == 2);
        }).find("batch size 2000: the 1000 training draws of quadratic_deep hold no whole batch") != std::string::npos);
  fs::remove_all(temp_path("lab_function4"));

  // Targets are accuracies: refused. The protocol chooses on the validation loss; an accuracy is refused.
  CHECK(captured(2, [] { CHECK(lab_main({"--problem", "quadratic_deep", "--targets", "0.9"}) == 2); })
            .find("--targets: accuracies to reach, and quadratic_deep is a function problem") != std::string::npos);
  CHECK(lab_config({"--problem", "quadratic_deep", "--protocol"}).protocol.select == "final-loss");
  CHECK(lab_config({"--problem", "quadratic_deep", "--protocol", "--select", "best-loss"}).protocol.select == "best-loss");
  CHECK(captured(2, [] { CHECK(lab_main({"--problem", "quadratic_deep", "--protocol", "--select", "best-accuracy"}) == 2); })
            .find("--select best-accuracy: quadratic_deep is a function problem, without an accuracy") !=
        std::string::npos);
  // A 2-D problem's validation loss has no lower bound: the protocol would choose a runaway rate.
  CHECK(captured(2, [] { CHECK(lab_main({"--problem", "two_d_branin", "--protocol"}) == 2); })
            .find("--protocol on two_d_branin: its validation loss f(u, v) + u x̄ + v ȳ") != std::string::npos);
}

TEST_CASE("protocol: DeepOBS's whole protocol on quadratic_deep in seconds, chosen on the validation loss") {
  const fs::path out = temp_path("protocol_quadratic");
  fs::remove_all(out);
  const std::vector<std::string> args{"--problem", "quadratic_deep", "--protocol", "--optimizers", "sgd,adam",
                                      "--lr-grid", "1e-3:1e-1:5", "--protocol-seeds", "2", "--epochs", "5",
                                      "--out", out.string(), "--quiet", "--no-progress", "--jobs", "2"};
  int status = -1;
  captured(1, [&] { status = lab_main(args); });
  REQUIRE(status == 0);
  const auto sensitivity = csv_rows(out / "sensitivity.csv");
  REQUIRE(sensitivity.size() == 10);
  for (const std::string name : {"sgd", "adam"}) {
    CAPTURE(name);
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < sensitivity.size(); ++i) {
      const auto& r = sensitivity[i];
      if (r.at("optimizer") != name || r.at("diverged") == "1") continue;
      CHECK(r.at("final_validation_acc").empty());
      if (!best || std::stod(r.at("final_validation_loss")) < std::stod(sensitivity[*best].at("final_validation_loss"))) best = i;
    }
    REQUIRE(best.has_value());
    CHECK(sensitivity[*best].at("chosen") == "1");
  }
  const std::string markdown = read_file(out / "performance.md");
  MESSAGE(markdown);
  CHECK(markdown.find("| optimizer | chosen lr | runs | final test loss | best test loss | diverged |") != std::string::npos);
  CHECK(markdown.find("the best final validation loss is chosen") != std::string::npos);
  CHECK(markdown.find("nan") == std::string::npos);
  CHECK(markdown.find("inf") == std::string::npos);
  CHECK(markdown.find("acc (%)") == std::string::npos);
  // The same command again: every run from the store (its identity holds the problem's fingerprint).
  std::string again;
  again = captured(1, [&] { status = lab_main(args); });
  REQUIRE(status == 0);
  CHECK(again.find("10 of 10 runs finished earlier") != std::string::npos);
  CHECK(again.find("a function problem's runs keep no checkpoints") != std::string::npos);
  fs::remove_all(out);
}

namespace {

struct FailingOptions {
  double lr = 0.1;
  double weight_decay = 0.0;
  optim::WeightDecay weight_decay_mode = optim::WeightDecay::coupled;
  void check(const optim::OptionCheck& c) const { c.common(lr, weight_decay); }
};

/// Plain SGD that throws at its first step from lr = 1 on: a run that fails (as one that meets a full disk),
/// which is not a divergence; from lr = 100 on, its step breaks down numerically (as Newton's on a Hessian that
/// is not finite), which is. Registered here only: this test's binary has no check of the README's table of
/// optimisers.
class FailingSgd : public optim::OptimizerWith<FailingOptions> {
 public:
  FailingSgd(std::vector<optim::ParamGroup<FailingOptions>> groups, const FailingOptions& defaults)
      : OptimizerWith("failing_sgd", std::move(groups), defaults) {}

 protected:
  std::vector<std::string> tensor_state_names() const override { return {}; }

  void update() override {
    for (const Work& item : gradients()) {
      const double lr = options(item.param->group).lr;
      if (lr >= 100) throw optim::NumericalBreakdown(fmt::format("failing_sgd: a breakdown at lr={:g}", lr));
      if (lr >= 1) throw std::runtime_error(fmt::format("failing_sgd: no step at lr={:g}", lr));
      ag::Tensor w = item.param->tensor;
      optim::detail::dispatch(w.dtype(), [&]<class T>() {
        T* p = w.data<T>();
        const T* g = item.grad.data<T>();
        for (std::size_t i = 0; i < w.numel(); ++i) p[i] -= T(lr) * g[i];
      });
    }
  }
};

const optim::RegisterOptimizer<FailingSgd, FailingOptions> failing_sgd{
    "failing_sgd", "SGD that throws from lr = 1 on (the tests of a failed run and of a breakdown)",
    optim::common_options<FailingOptions>()};

}  // namespace

TEST_CASE("lab: a step that breaks down numerically is a divergence, said with where, the rate and the batch size: "
          "a model's run and a function problem's") {
  for (const std::vector<std::string>& problem : {std::vector<std::string>{"--model", "logreg"},
                                                 std::vector<std::string>{"--problem", "quadratic_deep"}}) {
    CAPTURE(problem[1]);
    std::vector<std::string> args = problem;
    for (const char* arg : {"--optimizers", "failing_sgd(lr=100)", "--batch-sizes", "128", "--seeds", "0", "--epochs", "1",
                            "--no-progress", "--no-plots"}) {
      args.push_back(arg);
    }
    examples::lab::LabConfig c = lab_config(args);
    c.out_dir = temp_path("lab_breakdown").string();
    fs::remove_all(c.out_dir);
    examples::lab::LabResult result = examples::lab::run_lab(c, examples::load_datasets(c.base), nullptr);
    REQUIRE(result.records.size() == 1);
    CHECK(result.records[0].result.diverged);
    CHECK(result.records[0].result.divergence == "diverged: failing_sgd: a breakdown at lr=100 at step 1 (batch 1 of "
                                                 "epoch 1), with lr 100 and batch size 128; stopping");
    fs::remove_all(c.out_dir);
  }
}

TEST_CASE("protocol: a run of phase 1 that fails stops it before the choice, exit 1, naming the run; the same "
          "command runs that run again") {
  const fs::path out = temp_path("protocol_failed");
  fs::remove_all(out);
  fs::create_directories(out);
  // An earlier protocol's table in OUT is not left to pass for this one's.
  for (const char* name : {"performance.csv", "performance.md"}) std::ofstream(out / name) << "an earlier protocol's\n";
  const std::vector<std::string> args{"--protocol", "--optimizers", "sgd,failing_sgd", "--lr-grid", "1e-2:1:3",
                                      "--protocol-seeds", "2", "--epochs", "1", "--train-subset", "200",
                                      "--batch-sizes", "50", "--hidden", "8", "--out", out.string(), "--quiet",
                                      "--no-progress", "--jobs", "1"};
  for (int attempt = 0; attempt < 2; ++attempt) {
    CAPTURE(attempt);
    int status = -1;
    std::string log;
    const std::string err = captured(2, [&] { log = captured(1, [&] { status = lab_main(args); }); });
    INFO(log);
    INFO(err);
    CHECK(status == 1);
    CHECK(err.find("--protocol: phase 1: 1 of 6 runs failed; the first (failing_sgd(lr=1,weight_decay=0,"
                   "decoupled=false), seed 0): failed: failing_sgd: no step at lr=1; phase 2 is not run") != std::string::npos);
    CHECK(err.find("the same command runs them again") != std::string::npos);
    // Phase 1's outputs are there, the failed run in its runs.csv; nothing of the choice or phase 2.
    REQUIRE(fs::exists(out / "tune" / "runs.csv"));
    CHECK(read_file(out / "tune" / "runs.csv").find("failed: failing_sgd: no step at lr=1") != std::string::npos);
    CHECK_FALSE(fs::exists(out / "sensitivity.csv"));
    CHECK_FALSE(fs::exists(out / "seeds"));
    CHECK_FALSE(fs::exists(out / "performance.csv"));
    CHECK_FALSE(fs::exists(out / "performance.md"));
    // The finished runs are kept; the failed one is not stored, so the same command tries it again.
    if (attempt == 1) CHECK(log.find("5 of 6 runs finished earlier") != std::string::npos);
  }
  fs::remove_all(out);
}

TEST_CASE("protocol: Ctrl-C in phase 2 stops it with exit 130 and no table (an earlier one removed); the same "
          "command finishes it") {
  const fs::path out = temp_path("protocol_sigint");
  fs::remove_all(out);
  fs::create_directories(out);
  for (const char* name : {"performance.csv", "performance.md"}) std::ofstream(out / name) << "an earlier protocol's\n";
  const std::vector<std::string> args{"--protocol", "--optimizers", "sgd", "--lr-grid", "0.1:0.1:1", "--protocol-seeds",
                                      "3", "--epochs", "40", "--train-subset", "300", "--batch-sizes", "50", "--hidden",
                                      "8", "--out", out.string(), "--no-plots", "--no-progress", "--jobs", "1"};
  const fs::path said = temp_path("protocol_sigint_said.txt");
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const int file = ::open(said.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(file, 1);
    ::dup2(file, 2);
    const int code = lab_main(args);
    std::fflush(stdout);
    ::_exit(code);
  }
  // Phase 1 is one run (seed 0, which phase 2 reuses); phase 2 trains seeds 1 and 2: interrupted in seed 1's.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  const fs::path progress = out / "seeds" / "curves.partial.csv";
  while (std::count(std::istreambuf_iterator<char>(std::ifstream(progress).rdbuf()), {}, '\n') < 3 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(child, SIGINT);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  INFO(read_file(said));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(fs::exists(out / "sensitivity.csv"));
  CHECK(fs::exists(out / "seeds" / "runs.csv"));
  CHECK_FALSE(fs::exists(out / "performance.csv"));
  CHECK_FALSE(fs::exists(out / "performance.md"));

  int again = -1;
  const std::string log = captured(1, [&] { again = lab_main(args); });
  INFO(log);
  CHECK(again == 0);
  CHECK(log.find("1 of 1 runs finished earlier") != std::string::npos);
  CHECK(log.find("resumed from") != std::string::npos);  // seed 1, from its checkpoint
  const std::string table = read_file(out / "performance.csv");
  CHECK(table.find("an earlier protocol's") == std::string::npos);
  CHECK(table.find("sgd,") != std::string::npos);
  fs::remove_all(out);
  fs::remove(said);
}
