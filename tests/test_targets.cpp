// Time to target and performance profiles (examples/common/targets.hpp), against values worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "examples/common/targets.hpp"

namespace fs = std::filesystem;
namespace lab = examples::lab;
using examples::EpochMetrics;
using examples::EvalMetrics;
using examples::RunResult;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// A run whose epochs reach the test accuracies `accs`, each epoch taking `seconds`.
RunResult epochs_run(const std::vector<double>& accs, double seconds) {
  RunResult r;
  for (std::size_t e = 0; e < accs.size(); ++e) {
    EpochMetrics m;
    m.epoch = e + 1;
    m.test_acc = accs[e];
    m.seconds = seconds;
    r.epochs.push_back(m);
  }
  return r;
}

fs::path scratch(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("tapegrad_targets_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

const char* const kHeader = "optimizer,spec,lr,batch_size,seed,metric,target,reached,step,seconds,epoch\n";

}  // namespace

TEST_CASE("time to target: the first epoch's end reaching it, in steps, cumulative seconds and epochs") {
  const RunResult run = epochs_run({0.90, 0.96, 0.975, 0.97}, 1.5);
  std::optional<lab::TargetTime> t = lab::time_to_target(run, 0.97, 100, false);
  REQUIRE(t);
  CHECK(t->step == 300);
  CHECK(t->seconds == doctest::Approx(4.5));
  CHECK(t->epoch == 3);
  t = lab::time_to_target(run, 0.96, 100, false);  // reached exactly: >=
  REQUIRE(t);
  CHECK(t->step == 200);
  CHECK_FALSE(lab::time_to_target(run, 0.98, 100, false));
  CHECK(lab::TargetContext{{0.97}, "test", false, {}}.metric() == "test_acc");
  CHECK(lab::TargetContext{{0.97}, "validation", false, {}}.metric() == "validation_acc");
}

TEST_CASE("time to target: the evaluations' validation accuracy when the run has them, not the test accuracy") {
  RunResult run = epochs_run({0.99, 0.99}, 1.0);  // the epochs' test accuracy would say epoch 1
  for (auto [step, acc, seconds] : {std::tuple{0ul, 0.1, 0.0}, {50ul, 0.8, 0.7}, {100ul, 0.92, 1.3}, {150ul, 0.95, 2.1}}) {
    EvalMetrics m;
    m.step = step;
    m.validation_acc = acc;
    m.test_acc = 0.99;
    m.seconds = seconds;
    m.epoch = static_cast<double>(step) / 100;
    run.evaluations.push_back(m);
  }
  std::optional<lab::TargetTime> t = lab::time_to_target(run, 0.9, 100, true);
  REQUIRE(t);
  CHECK(t->step == 100);
  CHECK(t->seconds == 1.3);
  CHECK(t->epoch == 1.0);
  CHECK_FALSE(lab::time_to_target(run, 0.96, 100, true));
  CHECK(lab::TargetContext{{0.9}, "test", true, {}}.metric() == "validation_acc");
}

TEST_CASE("time to target: a run that failed before its first evaluation is timed on the grid's metric, never reached") {
  // On DeepOBS's splits every row says validation_acc: a failed run's rows once said test_acc (it had no
  // evaluations), and performance_profiles refused the file for its mixed metrics.
  RunResult ok = epochs_run({0.5}, 1.0);
  EvalMetrics m;
  m.step = 100;
  m.epoch = 1;
  m.seconds = 1.0;
  m.validation_acc = 0.95;
  ok.evaluations.push_back(m);
  RunResult failed = epochs_run({0.99}, 1.0);  // its epoch's test accuracy is not what the grid is timed on
  failed.diverged = failed.failed = true;
  const config::Spec sgd = config::parse_spec("sgd(lr=0.1)");
  const std::vector<lab::RunRecord> records{{{sgd, 100}, 0, ok}, {{sgd, 100}, 1, failed}};
  const lab::TargetContext context{{0.9}, "test", true, {{100, 100}}};
  const std::string csv = lab::targets_csv(records, context);
  CHECK(csv.find("test_acc") == std::string::npos);
  CHECK(csv.find(",100,0,validation_acc,0.9,1,100,1.0000,1\n") != std::string::npos);
  CHECK(csv.find(",100,1,validation_acc,0.9,0,,,\n") != std::string::npos);
  CHECK(lab::targets_markdown(records, context).find("| 1 of 2 | ") != std::string::npos);
  const fs::path dir = scratch("failed");
  write(dir / "targets.csv", csv);
  const lab::ProblemTimes times = lab::read_problem_times(dir.string(), false);
  CHECK(times.metric == "validation_acc");
  REQUIRE(times.times.size() == 1);
  CHECK(std::isinf(times.times[0].second));  // the median of (1, never)
  fs::remove_all(dir);
}

TEST_CASE("median: odd and even counts, +inf for never (at least half never: +inf)") {
  CHECK(lab::median({3, 1, 2}) == 2);
  CHECK(lab::median({4, 1, 3, 2}) == 2.5);
  CHECK(lab::median({1, kInf, 2}) == 2);
  CHECK(std::isinf(lab::median({1, kInf})));
  CHECK(std::isinf(lab::median({1, kInf, kInf})));
  CHECK(std::isnan(lab::median({})));
}

TEST_CASE("performance profiles: ratios to the fastest, rho(tau) and the score, worked out by hand") {
  // Problem p1: a 10 s, b 20 s, c 50 s.  Problem p2: a 30 s, b 15 s, c never.
  // Ratios: a (1, 2), b (2, 1), c (5, inf).  tau_max = 4:
  //   B_a = B_b = ((4 - 1) + (4 - 2)) / (2 * 3) = 5/6;  B_c = 0 (5 > 4, inf).
  const std::vector<lab::ProblemTimes> problems{
      {"p1", "validation_acc", 0.97, {{"a", 10}, {"b", 20}, {"c", 50}}},
      {"p2", "validation_acc", 0.9, {{"a", 30}, {"b", 15}, {"c", kInf}}}};
  const std::vector<lab::Profile> profiles = lab::performance_profiles(problems, 4);
  REQUIRE(profiles.size() == 3);
  CHECK(profiles[0].submission == "a");  // by score, ties in first-seen order
  CHECK(profiles[1].submission == "b");
  CHECK(profiles[2].submission == "c");
  CHECK(profiles[0].ratios == std::vector<double>{1, 2});
  CHECK(profiles[1].ratios == std::vector<double>{2, 1});
  CHECK(profiles[2].ratios[0] == 5);
  CHECK(std::isinf(profiles[2].ratios[1]));
  CHECK(profiles[0].score == doctest::Approx(5.0 / 6));
  CHECK(profiles[1].score == doctest::Approx(5.0 / 6));
  CHECK(profiles[2].score == 0);
  CHECK(lab::profile_at(profiles[0], 1) == 0.5);
  CHECK(lab::profile_at(profiles[0], 1.99) == 0.5);
  CHECK(lab::profile_at(profiles[0], 2) == 1);
  CHECK(lab::profile_at(profiles[2], 100) == 0.5);
  // A larger tau_max: c's ratio 5 counts. B_c = (10 - 5) / (2 * 9).
  CHECK(lab::performance_profiles(problems, 10)[2].score == doctest::Approx(5.0 / 18));
  // The score is the integral of rho: a Riemann sum of profile_at agrees.
  double sum = 0;
  const int n = 30000;
  for (int i = 0; i < n; ++i) sum += lab::profile_at(profiles[1], 1 + 3.0 * (i + 0.5) / n);
  CHECK(sum / n == doctest::Approx(profiles[1].score).epsilon(1e-3));
  // A submission absent from a problem never reached it there.
  const std::vector<lab::ProblemTimes> partial{{"p1", "x", 0.5, {{"a", 1}}}, {"p2", "x", 0.5, {{"b", 2}}}};
  const std::vector<lab::Profile> both = lab::performance_profiles(partial, 4);
  CHECK(both[0].score == doctest::Approx(0.5));
  CHECK(std::isinf(both[0].ratios[1]));
  CHECK_THROWS_AS(lab::performance_profiles({}, 4), std::invalid_argument);
  CHECK_THROWS_AS(lab::performance_profiles(problems, 1), std::invalid_argument);
}

TEST_CASE("performance profiles: a lab's targets.csv read per submission: the best configuration's median, lr dropped") {
  const fs::path dir = scratch("read");
  // sgd at two rates (the rate is the submission's tuning): lr 0.1 medians (10, 12, never) = 12; lr 0.01: never
  // twice of three = never. adam: batch 100 (6, 8) = 7, batch 200 (5, 20) = 12.5 -> 7. The second target is ignored.
  std::string csv = kHeader;
  const std::string sgd1 = "sgd,\"sgd(lr=0.1,momentum=0)\",0.1,100,", sgd2 = "sgd,\"sgd(lr=0.01,momentum=0)\",0.01,100,";
  const std::string adam = "adam,\"adam(lr=0.001,beta2=0.999)\",0.001,";
  csv += sgd1 + "0,validation_acc,0.97,1,100,10,1\n" + sgd1 + "0,validation_acc,0.98,0,,,\n";
  csv += sgd1 + "1,validation_acc,0.97,1,120,12,1.2\n" + sgd1 + "2,validation_acc,0.97,0,,,\n";
  csv += sgd2 + "0,validation_acc,0.97,1,50,5,0.5\n" + sgd2 + "1,validation_acc,0.97,0,,,\n";
  csv += sgd2 + "2,validation_acc,0.97,0,,,\n";
  csv += adam + "100,0,validation_acc,0.97,1,60,6,0.6\n" + adam + "100,1,validation_acc,0.97,1,80,8,0.8\n";
  csv += adam + "200,0,validation_acc,0.97,1,25,5,0.5\n" + adam + "200,1,validation_acc,0.97,1,100,20,2\n";
  write(dir / "targets.csv", csv);
  const lab::ProblemTimes seconds = lab::read_problem_times(dir.string(), false);
  CHECK(seconds.target == 0.97);
  CHECK(seconds.metric == "validation_acc");
  REQUIRE(seconds.times.size() == 2);
  CHECK(seconds.times[0].first == "sgd(momentum=0)");
  CHECK(seconds.times[0].second == 12);
  CHECK(seconds.times[1].first == "adam(beta2=0.999)");
  CHECK(seconds.times[1].second == 7);
  const lab::ProblemTimes steps = lab::read_problem_times(dir.string(), true);
  CHECK(steps.times[0].second == 120);
  CHECK(steps.times[1].second == 62.5);  // batch 200's (25, 100) beats batch 100's (60, 80) in steps

  // The protocol's output: its seeds/ phase.
  const fs::path protocol = scratch("protocol");
  write(protocol / "seeds" / "targets.csv", std::string(kHeader) + sgd1 + "0,validation_acc,0.9,1,10,1,0.1\n");
  CHECK(lab::read_problem_times(protocol.string(), false).times.at(0).second == 1);

  // Faults name the file, the line and what is wrong.
  write(dir / "targets.csv", std::string(kHeader) + sgd1 + "0,validation_acc,0.97,1,abc,10,1\n");
  CHECK_THROWS_WITH(lab::read_problem_times(dir.string(), true),
                    doctest::Contains("targets.csv:2: column step: 'abc' is not a number"));
  write(dir / "targets.csv", std::string(kHeader) + "sgd,1,2\n");
  CHECK_THROWS_WITH(lab::read_problem_times(dir.string(), true), doctest::Contains("targets.csv:2: 3 cells, the header has 11"));
  write(dir / "targets.csv", "optimizer,spec\n");
  CHECK_THROWS_WITH(lab::read_problem_times(dir.string(), true), doctest::Contains("no column 'batch_size'"));
  write(dir / "targets.csv", kHeader);
  CHECK_THROWS_WITH(lab::read_problem_times(dir.string(), true), doctest::Contains("targets.csv: no runs"));
  CHECK_THROWS_WITH(lab::read_problem_times((dir / "missing").string(), true), doctest::Contains("No such file"));
  fs::remove_all(dir);
  fs::remove_all(protocol);
}

TEST_CASE("performance profiles: the tables name each submission by what sets it apart") {
  const std::vector<lab::ProblemTimes> problems{
      {"mlp", "validation_acc", 0.97, {{"adam(beta2=0.99)", 10}, {"adam(beta2=0.999)", 20}, {"sgd(momentum=0)", kInf}}}};
  const std::vector<lab::Profile> profiles = lab::performance_profiles(problems);
  CHECK(lab::submission_labels(profiles) == std::vector<std::string>{"adam beta2=0.99", "adam beta2=0.999", "sgd"});
  const std::string md = lab::profiles_markdown(problems, profiles, false, 4);
  CHECK(md.find("| mlp | validation_acc | 97 % |") != std::string::npos);
  CHECK(md.find("| adam beta2=0.99 | 1.000 | 10 (×1.00) |") != std::string::npos);
  CHECK(md.find("| adam beta2=0.999 | 0.667 | 20 (×2.00) |") != std::string::npos);
  CHECK(md.find("| sgd | 0.000 | never |") != std::string::npos);
  const std::string csv = lab::profiles_csv(problems, profiles);
  CHECK(csv == "submission,score,ratio mlp\nadam(beta2=0.99),1.000000,1\nadam(beta2=0.999),0.666667,2\n"
               "sgd(momentum=0),0.000000,inf\n");
}
