// examples/gradcheck_report.cpp: its command line (CLI11: defaults, --help, errors naming the flag, exit code 2,
// absurd counts refused rather than reduced), its sampling and statistics, and a short run on MNIST that writes
// its files. The program's source is compiled into this test, without its main().
#define GRADCHECK_REPORT_NO_MAIN
#include "examples/gradcheck_report.cpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "gradcheck_report");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return parse_flags(static_cast<int>(argv.size()), argv.data());
}

int run_with(std::vector<std::string> args) {
  args.insert(args.begin(), "gradcheck_report");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return run(static_cast<int>(argv.size()), argv.data());
}

/// The MNIST directory ($TAPEGRAD_MNIST_DIR, else the source tree's), which must be there
/// (scripts/fetch-mnist.sh): the program is tested on the real data.
std::string mnist_dir() {
  const char* env = std::getenv("TAPEGRAD_MNIST_DIR");
  fs::path dir = env && *env ? fs::path(env) : fs::path(TAPEGRAD_SOURCE_DIR) / "data" / "mnist";
  const bool there = fs::exists(dir / "train-labels-idx1-ubyte") || fs::exists(dir / "train-labels-idx1-ubyte.gz");
  REQUIRE_MESSAGE(there, dir.string(), " has no MNIST (scripts/fetch-mnist.sh fetches it)");
  return dir.string();
}

std::size_t lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

TEST_CASE("gradcheck_report: the defaults are 002's") {
  Parsed p = parse({});
  REQUIRE(p.exit_code == -1);
  const Settings& s = p.settings;
  CHECK(s.hidden == std::vector<std::size_t>{300, 100, 100});
  CHECK(s.init == "default");
  CHECK_FALSE(s.train_steps_given);
  CHECK(s.lr == 0.1);
  CHECK(s.batch_size == 10);
  CHECK(s.samples == 200);
  CHECK(s.zero_samples == 20);
  CHECK(s.steps == std::vector<double>{1e-2, 1e-4, 1e-6, 1e-8});
  CHECK(s.check_batch == 1);
  CHECK(s.min_loss == 1);
  CHECK(s.seed == 0);
  CHECK(s.dataset == "mnist");
  CHECK(s.data.empty());
  CHECK(s.threads == 1);
  CHECK(s.out == "gradcheck-out");
  CHECK(s.gnuplot == "gnuplot");
  CHECK_FALSE(s.no_plots);
}

TEST_CASE("gradcheck_report: flags are read, lists comma-separated, counts also in scientific notation") {
  Parsed p = parse({"--hidden", "30,20", "--steps", "1e-3,1e-5", "--samples", "2e2", "--zero-samples", "0",
                    "--train-steps", "0", "--seed", "7", "--lr=0.05", "--init", "xavier", "--no-plots",
                    "--threads", "2", "--out", "somewhere"});
  REQUIRE(p.exit_code == -1);
  const Settings& s = p.settings;
  CHECK(s.hidden == std::vector<std::size_t>{30, 20});
  CHECK(s.steps == std::vector<double>{1e-3, 1e-5});
  CHECK(s.samples == 200);
  CHECK(s.zero_samples == 0);
  CHECK(s.train_steps_given);
  CHECK(s.train_steps == 0);
  CHECK(s.seed == 7);
  CHECK(s.lr == 0.05);
  CHECK(s.init == "xavier");
  CHECK(s.no_plots);
  CHECK(s.threads == 2);
  CHECK(s.out == "somewhere");
}

TEST_CASE("gradcheck_report: --help lists every flag and exits 0") {
  Parsed p = parse({"--help"});
  CHECK(p.exit_code == 0);
  for (const char* flag : {"--hidden", "--init", "--train-steps", "--lr", "--batch-size", "--samples", "--zero-samples",
                           "--steps", "--check-batch", "--min-loss", "--seed", "--dataset", "--data", "--threads",
                           "--out", "--gnuplot", "--no-plots"}) {
    CHECK_MESSAGE(p.message.find(flag) != std::string::npos, flag);
  }
  CHECK(p.message.find("1e-2,1e-4,1e-6,1e-8") != std::string::npos);
  CHECK(run_with({"--help"}) == 0);
}

TEST_CASE("gradcheck_report: a bad flag exits 2 with a message naming it") {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--samples", "0"}, "--samples"},
           {{"--samples", "2.5"}, "--samples"},
           {{"--samples", "-3"}, "--samples"},
           {{"--samples", "lots"}, "not a whole number"},
           {{"--samples", "1e300"}, "too large"},
           {{"--hidden", "300,0"}, "--hidden"},
           {{"--steps", "1e-4,0"}, "--steps"},
           {{"--steps", "1e-4,abc"}, "--steps"},
           {{"--steps", "1e-4,inf"}, "--steps: 'inf' is not a number"},
           {{"--lr", "-1"}, "--lr: must be positive, got -1"},
           {{"--lr", "0"}, "--lr"},
           {{"--min-loss", "-0.5"}, "--min-loss"},
           {{"--threads", "0"}, "--threads"},
           {{"--init", "nope"}, "unknown initialiser 'nope'"},
           {{"--batch-size", "0"}, "--batch-size"},
           {{"--no-such-flag"}, "--no-such-flag"},
           {{"--samples"}, "--samples"},
       }) {
    Parsed p = parse(c.args);
    INFO(c.args[0], " -> ", p.message);
    CHECK(p.exit_code == 2);
    CHECK(p.message.find(c.expected) != std::string::npos);
    CHECK(run_with(c.args) == 2);
  }
}

TEST_CASE("gradcheck_report: counts the data or the network cannot give are refused, not reduced") {
  Settings s;
  CHECK(check_counts(s, 60000, 276710).empty());
  s.samples = 1'000'000'000'000'000;
  CHECK(check_counts(s, 60000, 276710) == "--samples 1000000000000000: more than the network's 276710 parameter elements");
  s.samples = 200;
  s.zero_samples = 276711;
  CHECK(check_counts(s, 60000, 276710).find("--zero-samples 276711") == 0);
  s.zero_samples = 20;
  s.check_batch = 60001;
  CHECK(check_counts(s, 60000, 276710).find("--check-batch 60001") == 0);
  s.check_batch = 1;
  s.batch_size = 100;
  s.train_steps = 60'000;  // 100 epochs of 600 steps: allowed
  CHECK(check_counts(s, 60000, 276710).empty());
  s.train_steps = 1'000'000'000'000'000;  // a mistyped count would train for ever
  CHECK(check_counts(s, 60000, 276710) ==
        "--train-steps 1000000000000000: more than 100 epochs (60000 steps at --batch-size 100 on 60000 training samples)");

  GradientPools pools = split_by_gradient(
      {ag::Tensor::from_data(ag::Shape{2, 2}, std::span<const double>(std::vector<double>{0.5, 0, 0, -1})),
       ag::Tensor::from_data(ag::Shape{3}, std::span<const double>(std::vector<double>{0, 2, 0}))});
  CHECK(pools.total == 7);
  CHECK(pools.nonzero_total == 3);
  CHECK(pools.nonzero == std::vector<std::vector<std::size_t>>{{0, 3}, {1}});
  CHECK(pools.zero == std::vector<ag::ElementIndex>{{0, 1}, {0, 2}, {1, 0}, {1, 2}});
  Settings fits;
  fits.samples = 3;
  fits.zero_samples = 4;
  CHECK(check_pools(fits, pools).empty());
  fits.samples = 4;
  CHECK(check_pools(fits, pools) ==
        "--samples 4: only 3 parameter elements have a non-zero gradient on the checked sample");
  fits.samples = 3;
  fits.zero_samples = 5;
  CHECK(check_pools(fits, pools).find("--zero-samples 5: only 4") == 0);

  const std::string data = mnist_dir();
  // Refused before any training.
  CHECK(run_with({"--data", data, "--samples", "1e15"}) == 2);
  CHECK(run_with({"--data", data, "--train-steps", "1e15"}) == 2);
  CHECK(run_with({"--data", data, "--hidden", "10,,3"}) == 2);  // not 10,3
  CHECK(run_with({"--data", data, "--hidden", "4", "--hidden", "5"}) == 2);
  CHECK(run_with({"--data", data, "--out", "/proc/no/such"}) == 2);  // before a step is trained
  // Fewer non-zero gradients than asked for, on a small untrained network.
  CHECK(run_with({"--data", data, "--hidden", "4", "--train-steps", "0", "--samples", "3000", "--no-plots",
                  "--out", (fs::temp_directory_path() / "gradcheck_report_refused").string()}) == 2);
}

TEST_CASE("gradcheck_report: sampling is even over the tensors and distinct") {
  CHECK(quotas({10, 2, 10}, 12) == std::vector<std::size_t>{5, 2, 5});
  CHECK(quotas({3, 3}, 6) == std::vector<std::size_t>{3, 3});
  CHECK(quotas({1, 100}, 7) == std::vector<std::size_t>{1, 6});
  ag::Generator gen(3);
  std::vector<int> drawn = draw(std::vector<int>{1, 2, 3, 4, 5, 6}, 4, gen);
  CHECK(drawn.size() == 4);
  std::sort(drawn.begin(), drawn.end());
  CHECK(std::adjacent_find(drawn.begin(), drawn.end()) == drawn.end());
}

TEST_CASE("gradcheck_report: statistics and histogram bins") {
  CHECK(bin_of(0) == 0);
  CHECK(bin_of(1e-16) == 1);
  CHECK(bin_name(bin_of(3e-10)) == "1e-10");
  CHECK(bin_name(bin_of(0.5)) == ">=1e-1");
  CHECK(bin_name(bin_of(7.0)) == ">=1e-1");
  CHECK(bin_low(bin_of(3e-10)) == doctest::Approx(1e-10));
  CHECK(bin_high(bin_of(3e-10)) == doctest::Approx(1e-9));
  CHECK(std::isinf(bin_high(kBins - 1)));
  CHECK(median({3, 1, 2}) == 2);
  CHECK(median({4, 1, 3, 2}) == 2.5);

  // Two elements, one step: the analytic values 1 and 2 against central differences 1 and 2.2.
  std::vector<ag::ElementCheck> checks{{.element = {0, 0}, .analytic = 1, .numeric = {{1e-4, 1.5, 0.5, 1}}},
                                       {.element = {0, 1}, .analytic = 2, .numeric = {{1e-4, 2, 2, 2.2}}}};
  std::vector<Row> rows = summarise(checks, {1e-4});
  REQUIRE(rows.size() == 3);
  const Row& central = rows[2];
  CHECK(central.scheme == DifferenceScheme::central);
  CHECK(central.n == 2);
  CHECK(central.max == doctest::Approx(0.2 / 2.2));
  CHECK(central.mean == doctest::Approx(0.1 / 2.2));
  CHECK(central.histogram[0] == 1);
  CHECK(central.histogram[bin_of(0.2 / 2.2)] == 1);
  CHECK(rows[0].max == doctest::Approx(0.5 / 1.5));  // forward
  CHECK(rows[1].max == doctest::Approx(0.5));        // backward
}

TEST_CASE("gradcheck_report: a short run checks every layer and writes its files") {
  const std::string data = mnist_dir();
  fs::path out = fs::temp_directory_path() / "gradcheck_report_test";
  fs::remove_all(out);
  CHECK(run_with({"--data", data, "--hidden", "16", "--train-steps", "50", "--samples", "12", "--zero-samples", "3",
                  "--steps", "1e-4,1e-6", "--min-loss", "0", "--no-plots", "--out", out.string()}) == 0);
  // 15 elements x 2 steps; 3 schemes x 2 steps.
  CHECK(lines_of(out / "elements.csv") == 1 + 15 * 2);
  CHECK(lines_of(out / "summary.csv") == 1 + 3 * 2);
  CHECK(lines_of(out / "histogram.csv") == 1 + 3 * 2 * kBins);
  CHECK_FALSE(fs::exists(out / "plot.gp"));
  std::ifstream summary(out / "summary.csv");
  std::string line;
  bool found = false;
  while (std::getline(summary, line)) {
    if (line.rfind("central,0.0001,12,", 0) == 0) {
      found = true;
      double mean = std::stod(line.substr(std::string("central,0.0001,12,").size()));
      CHECK(mean < 1e-6);
    }
  }
  CHECK(found);
  // Every parameter tensor of the network is sampled.
  std::ifstream elements(out / "elements.csv");
  std::string text((std::istreambuf_iterator<char>(elements)), std::istreambuf_iterator<char>());
  for (const char* name : {"0.weight,", "0.bias,", "2.weight,", "2.bias,"}) CHECK(text.find(name) != std::string::npos);
  fs::remove_all(out);
}
