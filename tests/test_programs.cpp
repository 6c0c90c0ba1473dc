// The example programs as a user runs them, each in a child process: optimiser specs on the command line
// and their errors, the registry listings, a user-defined optimiser in the lab (custom_optimizer), Ctrl-C
// (SIGINT sent to the child) stopping a run cleanly with its checkpoint, CSV row and final line, and
// Newton on MNIST logistic regression with no other flag. Needs MNIST (TAPEGRAD_MNIST_DIR).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <tuple>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "nn/checkpoint.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

fs::path scratch(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("tapegrad_programs_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

/// A program of examples/ running as a child process, its stdout and stderr going to files.
class Child {
 public:
  Child(const std::string& program, const std::vector<std::string>& args) {
    static int counter = 0;
    out_ = scratch(program + std::to_string(++counter) + ".out");
    err_ = scratch(program + std::to_string(counter) + ".err");
    std::vector<std::string> argv_text{std::string(TAPEGRAD_EXAMPLES_DIR) + "/" + program};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int error = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE_MESSAGE(error == 0, "cannot start " << argv[0]);
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  /// The exit code (128 + signal if killed by one).
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void signal(int sig) { ::kill(pid_, sig); }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

 private:
  pid_t pid_ = -1;
  fs::path out_, err_;
};

struct Outcome {
  int code;
  std::string out, err;
};

Outcome run(const std::string& program, const std::vector<std::string>& args) {
  Child child(program, args);
  int code = child.wait();
  return {code, child.out(), child.err()};
}

/// Whether `out` has an epoch's line: "epoch 3 ..." of a program, "  epoch   3 ..." of the lab.
bool trained_an_epoch(const std::string& out) { return std::regex_search(out, std::regex("epoch +[0-9]")); }

/// The program refuses `args` before training: exit 2, `message` on stderr, no epoch.
void refused(const std::string& program, const std::vector<std::string>& args, const std::string& message) {
  Outcome o = run(program, args);
  INFO(program << " " << o.out << o.err);
  CHECK(o.code == 2);
  CHECK(o.err.find(message) != std::string::npos);
  CHECK_FALSE(trained_an_epoch(o.out));
}

bool has_mnist() {
  const char* dir = std::getenv("TAPEGRAD_MNIST_DIR");
  return dir && fs::exists(fs::path(dir) / "train-images-idx3-ubyte");
}

double value_after(const std::string& text, const std::string& key) {
  std::size_t at = text.rfind(key);
  REQUIRE_MESSAGE(at != std::string::npos, "no '" << key << "' in: " << text);
  return std::stod(text.substr(at + key.size()));
}

}  // namespace

TEST_CASE("an optimiser spec on the command line: printed resolved; a misspelt key or a bad value refused") {
  REQUIRE(has_mnist());
  Outcome ok = run("mnist_mlp", {"--optimizer", "momentum(lr=0.05,momentum=0.95)", "--epochs", "1", "--train-subset",
                                 "6000", "--batch-size", "50", "--no-progress"});
  INFO(ok.out << ok.err);
  CHECK(ok.code == 0);
  CHECK(ok.out.find("# optimizer momentum(lr=0.05,weight_decay=0,decoupled=false,momentum=0.95,lr_inside=true)") !=
        std::string::npos);
  CHECK(value_after(ok.out, "final test_acc=") > 0.8);
  // The same number written two ways is no conflict; --hidden takes a bracketed list too.
  Outcome same = run("mnist_mlp", {"--optimizer", "adam(lr=1e-3)", "--lr", "0.001", "--hidden", "[32]", "--epochs",
                                   "1", "--train-subset", "500", "--no-progress"});
  INFO(same.out << same.err);
  CHECK(same.code == 0);
  CHECK(same.out.find("(fc1): Linear(in=784, out=32)") != std::string::npos);

  Outcome misspelt = run("mnist_mlp", {"--optimizer", "momentum(lr=0.05,momentun=0.95)"});
  CHECK(misspelt.code == 2);
  CHECK(misspelt.err.find(
            "momentum: unknown option 'momentun' (options: lr, weight_decay, decoupled, momentum, lr_inside)") !=
        std::string::npos);
  Outcome range = run("mnist_mlp", {"--optimizer", "adam(beta2=1.5)"});
  CHECK(range.code == 2);
  CHECK(range.err.find("adam: beta2 must be in [0, 1), got '1.5'") != std::string::npos);
  Outcome flag = run("mnist_mlp", {"--momentum", "0.9"});
  CHECK(flag.code == 2);
  CHECK(flag.err.find("--momentum") != std::string::npos);
  Outcome conflict = run("mnist_mlp", {"--optimizer", "adam(lr=0.1)", "--lr", "0.2"});
  CHECK(conflict.code == 2);
  CHECK(conflict.err.find("--lr 0.2 conflicts with lr=0.1") != std::string::npos);
  Outcome grid = run("mnist_mlp", {"--optimizer", "adam(lr=[1e-3,1e-4])"});
  CHECK(grid.code == 2);
  CHECK(grid.err.find("a grid of runs is the lab's") != std::string::npos);
  Outcome unclosed = run("mnist_mlp", {"--optimizer", "adam(lr=1e-3"});
  CHECK(unclosed.code == 2);
  CHECK(unclosed.err.find("')' missing at the end") != std::string::npos);
}

TEST_CASE("--help and the registry listings") {
  Outcome help = run("mnist_cnn", {"--help"});
  CHECK(help.code == 0);
  CHECK(help.out.find("--optimizer") != std::string::npos);
  CHECK(help.out.find("nesterov-lookahead") != std::string::npos);  // the names come from the registry
  Outcome list = run("mnist_mlp", {"--list-optimizers"});
  CHECK(list.code == 0);
  CHECK(list.out.find("beta2") != std::string::npos);
  Outcome markdown = run("mnist_mlp", {"--markdown", "--list-schedules"});
  CHECK(markdown.code == 0);
  CHECK(markdown.out.find("| `linear` |") != std::string::npos);
}

TEST_CASE("custom_optimizer: a user's optimiser registered from user code, listed and compared in the lab") {
  REQUIRE(has_mnist());
  Outcome list = run("custom_optimizer", {"--list-optimizers"});
  CHECK(list.code == 0);
  CHECK(list.out.find("signum") != std::string::npos);
  CHECK(list.out.find("adam") != std::string::npos);
  fs::path out = scratch("signum-lab");
  Outcome lab = run("custom_optimizer", {"--optimizers", "signum(lr=1e-4)", "adam", "--epochs", "1", "--seeds", "0",
                                         "--batch-sizes", "100", "--train-subset", "3000", "--out", out.string()});
  INFO(lab.out << lab.err);
  CHECK(lab.code == 0);
  std::string summary = read_file(out / "summary.md");
  CHECK(summary.find("signum") != std::string::npos);
  CHECK(summary.find("adam") != std::string::npos);
  Outcome bad = run("custom_optimizer", {"--optimizers", "signum(beta3=0.9)"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("signum: unknown option 'beta3'") != std::string::npos);
}

TEST_CASE("optimizer_paths: every optimiser's path on a test function, in CSV and a contour plot") {
  fs::path out = scratch("paths");
  Outcome paths = run("optimizer_paths", {"--function", "booth", "--optimizers", "sgd(lr=0.01)", "newton(lr=1)",
                                          "--steps", "50", "--out", out.string()});
  INFO(paths.out << paths.err);
  CHECK(paths.code == 0);
  CHECK(paths.out.find("newton(lr=1)                       ends at (1, 3), f = 0") != std::string::npos);
  std::string csv = read_file(out / "paths.csv");
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 1 + 2 * 51);
  CHECK(csv.rfind("optimizer,step,x,y,f\n\"sgd(lr=0.01)\",0,-5,-5,", 0) == 0);
  // The plot is drawn (scripts/setup.sh installs gnuplot).
  CHECK_MESSAGE(paths.err.find("no plot") == std::string::npos, paths.err);
  CHECK(fs::file_size(out / "paths.png") > 10000);
  Outcome list = run("optimizer_paths", {"--list-functions"});
  CHECK(list.code == 0);
  CHECK(list.out.find("rosenbrock") != std::string::npos);
  Outcome unknown = run("optimizer_paths", {"--function", "himmelblau", "--out", scratch("p2").string()});
  CHECK(unknown.code == 2);
  CHECK(unknown.err.find("unknown test function 'himmelblau'") != std::string::npos);
  Outcome start = run("optimizer_paths", {"--start", "1,2,3", "--out", scratch("p3").string()});
  CHECK(start.code == 2);
  CHECK(start.err.find("--start: two coordinates x,y, got 3") != std::string::npos);
  Outcome not_finite = run("optimizer_paths", {"--start", "nan,1", "--out", scratch("p4").string()});
  CHECK(not_finite.code == 2);
  CHECK(not_finite.err.find("--start: nan is not a finite number") != std::string::npos);
}

TEST_CASE("worked_example: 004's numbers by default; F and G read whole, garbage refused naming the argument") {
  Outcome ok = run("worked_example", {});
  CHECK(ok.code == 0);
  CHECK(ok.out.find("a 150\nda/df 60\n") != std::string::npos);
  Outcome given = run("worked_example", {"+1.5", "-2"});
  CHECK(given.code == 0);
  CHECK(given.out.rfind("f 1.5\ng -2\n", 0) == 0);
  const std::vector<std::tuple<std::string, std::string, std::string>> refusals{
      {"x", "2", "F: 'x' is not a finite number"},
      {"4", "2x", "G: '2x' is not a finite number"},
      {"", "2", "F: '' is not a finite number"},
      {"4", "nan", "G: 'nan' is not a finite number"},
      {"1e400", "2", "F: '1e400' is not a finite number"}};
  for (const auto& [f, g, message] : refusals) {
    Outcome refused = run("worked_example", {f, g});
    CAPTURE(message);
    CHECK(refused.code == 2);
    CHECK(refused.out.empty());
    CHECK(refused.err.find("worked_example: " + message) != std::string::npos);
  }
}

TEST_CASE("performance_profiles: two lab outputs' times to target, the profile's table and figure; faults named") {
  const fs::path a = scratch("profiles_a"), b = scratch("profiles_b"), out = scratch("profiles_out");
  fs::create_directories(a);
  fs::create_directories(b);
  const std::string header = "optimizer,spec,lr,batch_size,seed,metric,target,reached,step,seconds,epoch\n";
  std::ofstream(a / "targets.csv") << header << "sgd,sgd(lr=0.1),0.1,100,0,test_acc,0.9,1,100,2,1\n"
                                   << "adam,adam(lr=0.001),0.001,100,0,test_acc,0.9,1,50,1,0.5\n";
  std::ofstream(b / "targets.csv") << header << "sgd,sgd(lr=0.1),0.1,100,0,test_acc,0.8,1,30,3,1\n"
                                   << "adam,adam(lr=0.001),0.001,100,0,test_acc,0.8,0,,,\n";
  Outcome profiles = run("performance_profiles", {a.string(), b.string(), "--out", out.string()});
  INFO(profiles.out << profiles.err);
  CHECK(profiles.code == 0);
  // adam: ratios (1, inf): score (4 - 1) / (2 * 3) = 0.5. sgd: (2, 1): (2 + 3) / 6.
  CHECK(profiles.out.find("| sgd | 0.833 | 2 (×2.00) | 3 (×1.00) |") != std::string::npos);
  CHECK(profiles.out.find("| adam | 0.500 | 1 (×1.00) | never |") != std::string::npos);
  CHECK(read_file(out / "profiles.csv").find("\nadam,0.500000,1,inf\n") != std::string::npos);
  CHECK_MESSAGE(profiles.err.find("no profile plot") == std::string::npos, profiles.err);
  CHECK(fs::file_size(out / "profiles.png") > 10000);
  Outcome missing = run("performance_profiles", {a.string(), (b / "nothing").string(), "--out", out.string()});
  CHECK(missing.code == 2);
  CHECK(missing.err.find("nothing/targets.csv: cannot open: No such file or directory") != std::string::npos);
  Outcome twice = run("performance_profiles", {a.string(), b.string(), (a / ".").string(), "--out", out.string()});
  CHECK(twice.code == 2);
  CHECK(twice.err.find("are the same lab output: each problem counts once") != std::string::npos);
  Outcome tau = run("performance_profiles", {a.string(), "--tau-max", "1", "--out", out.string()});
  CHECK(tau.code == 2);
  CHECK(tau.err.find("--tau-max") != std::string::npos);
}

TEST_CASE("performance_profiles: a malformed targets.csv is refused with the file, the line and what is wrong") {
  const fs::path a = scratch("malformed_a"), out = scratch("malformed_out");
  fs::create_directories(a);
  const std::string header = "optimizer,spec,lr,batch_size,seed,metric,target,reached,step,seconds,epoch\n";
  const std::string good = "sgd,sgd(lr=0.1),0.1,100,0,test_acc,0.9,1,100,2,1\n", adam = "adam,adam(lr=0.001),0.001,";
  // The bad row is line 3: its cells, the flags, and what the message says.
  const std::vector<std::tuple<std::string, std::vector<std::string>, std::string>> cases{
      {adam + "100,0,test_acc,0.9,1,50,-1,0.5", {}, "targets.csv:3: column seconds: '-1' is not a time in seconds"},
      {adam + "100,0,test_acc,0.9,1,50,nan,0.5", {}, "targets.csv:3: column seconds: 'nan' is not a time in seconds"},
      {adam + "100,0,test_acc,0.9,1,50,inf,0.5", {}, "targets.csv:3: column seconds: 'inf' is not a time in seconds"},
      {adam + "100,0,test_acc,0.9,1,-50,1,0.5", {"--by", "steps"}, "targets.csv:3: column step: '-50' is not a step count"},
      {adam + "100,0,test_acc,0.9,1,2.5,1,0.5", {"--by", "steps"}, "targets.csv:3: column step: '2.5' is not a step count"},
      {adam + "100,0,test_acc,nan,1,50,1,0.5", {}, "targets.csv:3: column target: 'nan' is not an accuracy in [0, 1]"},
      {adam + "100,0,test_acc,-0.9,1,50,1,0.5", {}, "targets.csv:3: column target: '-0.9' is not an accuracy"},
      {adam + "0,0,test_acc,0.9,1,50,1,0.5", {}, "targets.csv:3: column batch_size: '0' is not a batch size"},
      {adam + "100,0,test_acc,0.9,yes,50,1,0.5", {}, "targets.csv:3: column reached: 'yes' is neither 0 nor 1"},
      {adam + "100,0,test_acc,0.9,1,,,", {}, "targets.csv:3: reached is 1 but column seconds is empty"},
      {adam + "100,0,test_acc,0.9,0,50,1,0.5", {}, "targets.csv:3: reached is 0 but column seconds is '1'"},
      {adam + "100,0,train_acc,0.9,1,50,1,0.5", {}, "targets.csv:3: column metric: 'train_acc', but the rows before"},
      {"garbage", {}, "targets.csv:3: 1 cells, the header has 11"}};
  for (const auto& [row, flags, message] : cases) {
    std::ofstream(a / "targets.csv") << header << good << row << "\n";
    std::vector<std::string> args{a.string(), "--out", out.string(), "--no-plots"};
    args.insert(args.end(), flags.begin(), flags.end());
    Outcome o = run("performance_profiles", args);
    CAPTURE(row);
    CHECK(o.code == 2);
    CHECK(o.err.find((a / message).string()) != std::string::npos);
    CHECK(!fs::exists(out / "profiles.md"));
  }
}

TEST_CASE("loss_landscape: the 1-D curve from the initial to the final weights, a 2-D slice and the path's PCA plane") {
  REQUIRE(has_mnist());
  fs::path out = scratch("landscape");
  Outcome ok = run("loss_landscape", {"--epochs", "1", "--train-size", "2000", "--subset", "500", "--grid", "5",
                                      "--alphas", "5", "--alpha-min", "0", "--alpha-max", "1", "--spectrum",
                                      "--spectrum-probes", "1", "--spectrum-steps", "10", "--curvature", "both",
                                      "--out", out.string()});
  INFO(ok.out << ok.err);
  CHECK(ok.code == 0);
  CHECK(ok.out.find("loss on 500 images: initial ") != std::string::npos);
  std::string line = read_file(out / "interpolation.csv"), surface = read_file(out / "surface.csv");
  CHECK(std::count(line.begin(), line.end(), '\n') == 1 + 5);
  CHECK(line.rfind("alpha,loss\n0,", 0) == 0);
  CHECK(std::count(surface.begin(), surface.end(), '\n') == 1 + 25);
  CHECK(read_file(out / "trajectory.csv").rfind("point,x,y\n0,", 0) == 0);  // the weights every 20 steps
  // The three default optimisers from one start: 20 steps of 100 images, so 2 points each, on one plane.
  std::string paths = read_file(out / "paths.csv");
  CHECK(paths.rfind("optimizer,point,step,x,y,plane_loss\n\"adam(lr=1e-3)\",0,0,0,0,", 0) == 0);
  CHECK(paths.find("\"sgd(lr=0.1)\",1,20,") != std::string::npos);
  CHECK(paths.find("\"rmsprop(lr=1e-3)\",1,20,") != std::string::npos);
  CHECK(std::count(paths.begin(), paths.end(), '\n') == 1 + 3 * 2);
  CHECK(ok.out.find("the 3 paths' shared PCA plane: explained variance") != std::string::npos);
  std::string spectrum = read_file(out / "spectrum.csv");
  CHECK(spectrum.rfind("eigenvalue,density\n", 0) == 0);
  CHECK(std::count(spectrum.begin(), spectrum.end(), '\n') == 1 + 1000);
  CHECK(ok.out.find("Hessian of 50890 parameters: top eigenvalue ") != std::string::npos);
  // The GGN beside it: positive semi-definite, so its quadrature's nodes (Ritz values) are >= 0 up to rounding.
  CHECK(read_file(out / "ggn-spectrum.csv").rfind("eigenvalue,density\n", 0) == 0);
  CHECK(ok.out.find("GGN of 50890 parameters: top eigenvalue ") != std::string::npos);
  CHECK(value_after(ok.out, "quadrature nodes in [") >= -1e-6);
  CHECK_MESSAGE(ok.err.find("no plot") == std::string::npos, ok.err);
  for (const char* png : {"interpolation.png", "surface.png", "paths.png", "paths-surface.png", "spectrum.png"}) {
    CAPTURE(png);
    CHECK(fs::file_size(out / png) > 10000);
  }
  Outcome bad = run("loss_landscape", {"--grid", "1", "--out", scratch("l2").string()});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--grid: must be at least 2, got 1") != std::string::npos);
  Outcome unknown = run("loss_landscape", {"--optimizers", "adam", "sgdd", "--out", scratch("l3").string()});
  CHECK(unknown.code == 2);
  CHECK(unknown.err.find("sgdd") != std::string::npos);
  // Refused before any work: no path without an epoch, an empty or non-finite 1-D interval, an infinite slice.
  const std::vector<std::pair<std::vector<std::string>, std::string>> refusals{
      {{"--epochs", "0"}, "--epochs"},
      {{"--alpha-min", "2", "--alpha-max", "1"}, "--alpha-min 2 and --alpha-max 1: two finite numbers"},
      {{"--alpha-min", "nan"}, "--alpha-min nan and --alpha-max 1.5: two finite numbers"},
      {{"--range", "inf"}, "--range: a positive finite number, got inf"},
      {{"--range", "0"}, "--range: a positive finite number, got 0"}};
  for (const auto& refusal : refusals) {
    const std::string& message = refusal.second;
    std::vector<std::string> args = refusal.first;
    args.insert(args.end(), {"--out", scratch("l4").string()});
    Outcome refused = run("loss_landscape", args);
    CAPTURE(message);
    CHECK(refused.code == 2);
    CHECK(refused.err.find(message) != std::string::npos);
  }
}

TEST_CASE("loss_landscape: an optimiser that diverges stops it with exit 3, naming the spec and the step; nothing "
          "written") {
  REQUIRE(has_mnist());
  const fs::path out = scratch("landscape_diverged");
  fs::remove_all(out);
  fs::create_directories(out);
  std::ofstream(out / "paths.csv") << "an earlier study's\n";
  Outcome o = run("loss_landscape", {"--optimizers", "adam(lr=1e-3)", "sgd(lr=1e45)", "--epochs", "1",
                                     "--train-size", "200", "--subset", "100", "--grid", "3", "--no-plots",
                                     "--out", out.string()});
  INFO(o.out << o.err);
  CHECK(o.code == 3);
  CHECK(o.err.find("loss_landscape: 'sgd(lr=1e45)' diverged: ") != std::string::npos);
  CHECK(o.err.find("nothing is written") != std::string::npos);
  CHECK_FALSE(fs::exists(out / "interpolation.csv"));
  CHECK(read_file(out / "paths.csv") == "an earlier study's\n");
}

TEST_CASE("loss_landscape and optimizer_paths: a grid that would overflow or an optimiser they cannot step is a flag "
          "error (exit 2), before the data is read") {
  const std::string nowhere = scratch("no-data").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> refusals{
      {{"--range", "1e300"}, "--range: at most 1e+06, got 1e+300"},
      {{"--alpha-max", "1e300"}, "--alpha-min -0.5 and --alpha-max 1e+300: each at most 1e+06 in magnitude"},
      {{"--alpha-min", "-1e7", "--alpha-max", "0"}, "--alpha-min -1e+07 and --alpha-max 0: each at most 1e+06"},
      {{"--range", "-1"}, "--range: a positive finite number, got -1"},
      {{"--alpha-min", "1", "--alpha-max", "1"}, "--alpha-min 1 and --alpha-max 1: two finite numbers, the first below"},
      {{"--optimizers", "adam", "lbfgs"}, "--optimizers: 'lbfgs' needs the loss itself, not only a batch's gradients"},
      {{"--optimizers", "lookahead(inner=sam)"}, "--optimizers: 'lookahead(inner=sam)' needs the loss itself"},
      {{"--optimizers", "sam(inner=lbfgs)"}, "sam: its inner optimiser must step from the gradients alone"}};
  for (const auto& [flags, message] : refusals) {
    std::vector<std::string> args = flags;
    args.insert(args.end(), {"--data", nowhere, "--out", scratch("l5").string()});
    Outcome refused = run("loss_landscape", args);
    CAPTURE(message);
    CHECK(refused.code == 2);
    CHECK(refused.err.find("loss_landscape: " + message) != std::string::npos);
    CHECK(refused.err.find("step() needs the loss") == std::string::npos);  // not the library's own words
  }
  Outcome paths = run("optimizer_paths", {"--optimizers", "sam(inner=lbfgs)", "--no-plots", "--out", scratch("p5").string()});
  CHECK(paths.code == 2);
  CHECK(paths.err.find("optimizer_paths: sam: its inner optimiser must step from the gradients alone; lbfgs needs the "
                       "loss itself") != std::string::npos);
  CHECK(!fs::exists(scratch("p5") / "paths.csv"));
  // Flags that would change nothing are refused, naming what they need or exclude.
  using Refusal = std::tuple<std::string, std::vector<std::string>, std::string>;
  for (const auto& [program, flags, message] : std::vector<Refusal>{
           {"loss_landscape", {"--curvature", "both"}, "--curvature requires --spectrum"},
           {"loss_landscape", {"--spectrum-probes", "3"}, "--spectrum-probes requires --spectrum"},
           {"loss_landscape", {"--spectrum-steps", "30"}, "--spectrum-steps requires --spectrum"},
           {"loss_landscape", {"--no-plots", "--gnuplot", "gp"}, "--gnuplot excludes --no-plots"},
           {"optimizer_paths", {"--function", "rosenbrock", "--seed", "5"}, "--seed: rosenbrock is not noisy"},
           {"optimizer_paths", {"--no-plots", "--gnuplot", "gp"}, "--gnuplot excludes --no-plots"},
           {"performance_profiles", {"x", "--no-plots", "--gnuplot", "gp"}, "--gnuplot excludes --no-plots"},
           {"gradcheck_report", {"--no-plots", "--gnuplot", "gp"}, "--gnuplot excludes --no-plots"},
           {"compare_optimizers", {"--no-plots", "--gnuplot", "gp"}, "--gnuplot excludes --no-plots"}}) {
    std::vector<std::string> args = flags;
    args.insert(args.end(), {"--out", scratch("p6").string()});
    Outcome o = run(program, args);
    CAPTURE(program);
    CAPTURE(message);
    CHECK(o.code == 2);
    CHECK(o.err.find(program + ": " + message) != std::string::npos);
  }
  CHECK(run("optimizer_paths", {"--function", "noisy_quadratic", "--seed", "5", "--no-plots", "--out",
                                scratch("p7").string()}).code == 0);
}

TEST_CASE("Ctrl-C or SIGTERM: the run finishes its step, writes the checkpoint, the CSV row and the final line, "
          "exits 128 + the signal") {
  REQUIRE(has_mnist());
  for (auto [signal, name] : {std::pair{SIGINT, "Ctrl-C"}, {SIGTERM, "SIGTERM"}}) {
    INFO(name);
    fs::path checkpoint = scratch("interrupted.ckpt"), log = scratch("interrupted.csv");
    fs::remove(checkpoint);
    Child child("mnist_mlp", {"--epochs", "50", "--batch-size", "10", "--no-progress", "--save", checkpoint.string(),
                              "--log", log.string()});
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (child.out().find("# BLAS") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    child.signal(signal);
    int code = child.wait();
    std::string out = child.out(), err = child.err();
    INFO(out << err);
    CHECK(code == 128 + signal);
    CHECK(out.find("(interrupted)") != std::string::npos);
    CHECK(out.find("interrupted=1") != std::string::npos);
    CHECK(err.find(std::string("interrupted (") + name + "): stopped after step ") != std::string::npos);
    CHECK(err.find("checkpoint written to") != std::string::npos);
    REQUIRE(fs::exists(checkpoint));
    std::string csv = read_file(log);
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 2);  // the header and the partial epoch
    // The checkpoint resumes: evaluation only, from the step where it stopped.
    Outcome resumed = run("mnist_mlp", {"--resume", checkpoint.string(), "--epochs", "0", "--batch-size", "10"});
    INFO(resumed.out << resumed.err);
    CHECK(resumed.code == 0);
    CHECK(value_after(resumed.out, "steps=") == value_after(out, "steps="));
  }
}

TEST_CASE("Newton on MNIST logistic regression with no other flag: >= 90 % after one epoch") {
  REQUIRE(has_mnist());
  Outcome newton = run("mnist_logreg", {"--optimizer", "newton", "--epochs", "1", "--no-progress"});
  INFO(newton.out << newton.err);
  CHECK(newton.code == 0);
  CHECK(value_after(newton.out, "final test_acc=") >= 0.90);
}

TEST_CASE("faults named before work is spent: empty paths, bad outputs, impossible splits, duplicate seeds") {
  REQUIRE(has_mnist());
  for (const char* flag : {"--log", "--save", "--resume", "--data"}) refused("mnist_mlp", {flag, ""}, std::string(flag) + ": an empty path");
  refused("gradcheck_report", {"--data", ""}, "--data: an empty path");
  refused("compare_optimizers", {"--out", ""}, "--out: an empty path");
  refused("mnist_mlp", {"--schedule", "linear", "--lr-epochs", "0"}, "--lr-epochs: at least 1");
  refused("compare_optimizers", {"--seeds", "0,0"}, "--seeds: 0 is given twice");
  refused("compare_optimizers", {"--batch-sizes", "100,100"}, "--batch-sizes: 100 is given twice");
  refused("compare_optimizers", {"--validation", "60000", "--epochs", "1"},
          "--validation 60000: the training set has 60000 images; at most 59999 can be held out");
  refused("mnist_mlp", {"--save", "/nonexistent-folder/x.ckpt"}, "cannot create the temporary /nonexistent-folder/x.ckpt.tmp");
  refused("mnist_mlp", {"--log", fs::temp_directory_path().string()}, "is a directory, not a regular file: refusing to replace it");
  const fs::path link = scratch("link.ckpt");
  fs::remove(link);
  fs::create_symlink(scratch("elsewhere"), link);
  refused("mnist_mlp", {"--save", link.string()}, "is a symbolic link, not a regular file: refusing to replace it");
  refused("gradcheck_report", {"--hidden", "1000000000", "--train-steps", "0", "--no-plots", "--out", scratch("g").string()},
          "out of memory: the network of --hidden 1000000000");
}

TEST_CASE("whole-number flags: a sign, an overflow or more images than there are is refused, never wrapped or capped") {
  REQUIRE(has_mnist());
  // CLI11 alone reads "-1" into an unsigned option as 2^64 - 1 (--epochs -1 trained for ever) and caps 1e30.
  for (const char* flag : {"--epochs", "--batch-size", "--train-subset", "--seed", "--lr-epochs", "--save-every",
                           "--validation", "--eval-every", "--threads"}) {
    refused("mnist_mlp", {flag, "-1"}, std::string(flag) + ": '-1' is not a whole number");
  }
  refused("mnist_mlp", {"--seed", "18446744073709551616"}, "--seed: 18446744073709551616 is too large");
  refused("mnist_mlp", {"--epochs", "1e30"}, "--epochs: 1e30 is too large");
  refused("mnist_mlp", {"--epochs", "1e999"}, "--epochs: 1e999 is too large");  // past the doubles too
  // Counts that fit 64 bits but would overflow a run's steps, or round an epoch to no batch.
  refused("mnist_mlp", {"--epochs", "1000001"}, "--epochs: must be at most 1000000, got 1000001");
  refused("mnist_mlp", {"--batch-size", "18446744073709551615"},
          "--batch-size: must be at most 4294967296, got 18446744073709551615");
  refused("compare_optimizers", {"--batch-sizes", "100,4294967297"},
          "--batch-sizes: each in [1, 4294967296], got 4294967297");
  refused("mnist_mlp", {"--epochs", "1e-999"}, "--epochs: '1e-999' is not a whole number");
  refused("mnist_mlp", {"--epochs", "-1e999"}, "--epochs: '-1e999' is not a whole number");
  refused("mnist_mlp", {"--epochs", "1.5"}, "--epochs: '1.5' is not a whole number");
  refused("compare_optimizers", {"--seeds", "0,-1"}, "--seeds: '-1' is not a whole number");
  refused("compare_optimizers", {"--seeds", "0,1e30"}, "--seeds: 1e30 is too large");
  refused("compare_optimizers", {"--epochs", "-2"}, "--epochs: '-2' is not a whole number");
  refused("loss_landscape", {"--seed", "-1"}, "--seed: '-1' is not a whole number");
  refused("optimizer_paths", {"--seed", "-1"}, "--seed: '-1' is not a whole number");
  refused("mnist_mlp", {"--train-subset", "60001"}, "--train-subset 60001: the training set has 60000 images");
  refused("mnist_mlp", {"--train-subset", "50001", "--validation", "10000"},
          "--train-subset 50001: the training set has 50000 images once the held-out ones are taken out");
  // A whole number written in scientific notation is still one.
  Outcome ok = run("mnist_mlp", {"--epochs", "1e0", "--train-subset", "2e2", "--batch-size", "1e2", "--no-progress"});
  CHECK(ok.code == 0);
  CHECK(ok.out.find("epochs=1 steps=2") != std::string::npos);
}

/// Runs `command` with /bin/sh (for its redirections and ulimit); the exit code, 128 + signal if killed by one.
static int shell(const std::string& command) {
  int status = std::system(command.c_str());
  REQUIRE(status != -1);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_CASE("a full stdout or stderr, or a file past ulimit -f: an exit code and a message, never a signal, silence or "
          "half a row") {
  REQUIRE(has_mnist());
  const std::string mlp = std::string(TAPEGRAD_EXAMPLES_DIR) + "/mnist_mlp";
  const std::string err = scratch("full.err").string();
  const std::string small = " --epochs 1 --train-subset 200 --no-progress";
  // --help and a listing into a full disk: not an uncaught exception (SIGABRT).
  for (const char* flags : {" --help", " --list-optimizers"}) {
    INFO(flags);
    CHECK(shell(mlp + flags + " > /dev/full 2> " + err) == 2);
    CHECK(read_file(err).find("mnist_mlp: writing the standard output failed") != std::string::npos);
  }
  // A whole run whose results could not be printed: not exit 0.
  CHECK(shell(mlp + small + " > /dev/full 2> " + err) == 2);
  CHECK(read_file(err).find("mnist_mlp: writing the standard output failed") != std::string::npos);
  // The worked example too (it prints its values and ends).
  const std::string worked = std::string(TAPEGRAD_EXAMPLES_DIR) + "/worked_example";
  CHECK(shell(worked + " > /dev/full 2> " + err) == 2);
  CHECK(read_file(err).find("worked_example: writing the standard output failed: No space left on device") !=
        std::string::npos);
  CHECK(shell(worked + " > /dev/null") == 0);
  // An error with nowhere to say it: still its exit code, not a signal.
  CHECK(shell(mlp + " --epochs -1 2> /dev/full") == 2);
  CHECK(shell(mlp + " --data /nonexistent-folder > /dev/full 2> /dev/full") == 2);
  // A checkpoint past the file-size limit: EFBIG said with the file, no temporary left, not SIGXFSZ.
  const fs::path dir = scratch("fsize");
  fs::remove_all(dir);
  fs::create_directories(dir);
  CHECK(shell("ulimit -f 100; exec " + mlp + small + " --save " + (dir / "m.ckpt").string() + " > /dev/null 2> " + err) == 2);
  const std::string said = read_file(err);
  INFO(said);
  CHECK(said.find("checkpoint " + (dir / "m.ckpt").string() + ": write failed after ") != std::string::npos);
  CHECK(said.find(std::strerror(EFBIG)) != std::string::npos);
  CHECK(fs::is_empty(dir));
  // The CSV logs grow a row at a time: the row that does not fit is taken back, the file ends at a whole row.
  for (const std::string flag : {"--log", "--track-log", "--eval-log"}) {
    INFO(flag);
    const fs::path csv = dir / "rows.csv";
    const std::string extra = flag == "--track-log" ? " --track grad-norm" : flag == "--eval-log" ? " --eval-every 1" : "";
    CHECK(shell("ulimit -f 1; exec " + mlp + " --epochs 40 --train-subset 10200 --batch-size 5000 --no-progress " +
                flag + " " + csv.string() + extra + " > /dev/null 2> " + err) == 2);
    const std::string message = read_file(err);
    INFO(message);
    CHECK(message.find(csv.string() + " failed: " + std::strerror(EFBIG)) != std::string::npos);
    const std::string rows = read_file(csv);
    REQUIRE(rows.size() > 100);
    CHECK(rows.back() == '\n');
    // Every row has the header's fields.
    std::istringstream lines(rows);
    std::string header, line;
    std::getline(lines, header);
    const auto fields = std::count(header.begin(), header.end(), ',');
    while (std::getline(lines, line)) CHECK(std::count(line.begin(), line.end(), ',') == fields);
    fs::remove(csv);
  }
}

TEST_CASE("one file given for two outputs is refused before any work, naming both flags and the path") {
  const fs::path dir = scratch("same-output");
  fs::create_directories(dir / "sub");
  const fs::path file = dir / "out.csv";
  std::ofstream(file) << "keep\n";
  const std::string same = file.string(), other_spelling = (dir / "sub" / ".." / "out.csv").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--log", same, "--track-log", same, "--track", "grad-norm"}, "--log and --track-log both name " + same},
      {{"--save", same, "--log", other_spelling}, "--log and --save both name " + same},
      {{"--eval-log", same, "--log", same, "--eval-every", "10"}, "--log and --eval-log both name " + same},
      {{"--resume", same, "--log", other_spelling}, "--resume and --log both name " + same},
      {{"--log", (dir / "hard-link.csv").string(), "--save", same}, "--log and --save both name " + same}};
  fs::remove(dir / "hard-link.csv");
  fs::create_hard_link(file, dir / "hard-link.csv");
  for (const auto& [args, message] : cases) {
    // --data nowhere: the refusal comes first, before the data is looked for.
    std::vector<std::string> all = args;
    all.insert(all.end(), {"--data", (dir / "nowhere").string(), "--no-progress"});
    Outcome o = run("mnist_mlp", all);
    INFO(o.out << o.err);
    CHECK(o.code == 2);
    CHECK(o.err.find("mnist_mlp: " + message) != std::string::npos);
    CHECK(o.err.find("one would overwrite the other") != std::string::npos);
    CHECK(read_file(file) == "keep\n");
  }
}

TEST_CASE("resume: a checkpoint of another model or optimiser is refused, naming the checkpoint file") {
  REQUIRE(has_mnist());
  const fs::path ckpt = scratch("other-model.ckpt");
  const std::vector<std::string> run_flags{"--train-subset", "600", "--batch-size", "100", "--no-progress"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), run_flags.begin(), run_flags.end());
    return args;
  };
  REQUIRE(run("mnist_mlp", with({"--epochs", "1", "--save", ckpt.string()})).code == 0);
  const std::vector<std::tuple<std::string, std::vector<std::string>, std::string>> cases{
      {"mnist_mlp", {"--hidden", "32"}, "fc1.weight"},
      {"mnist_logreg", {}, "fc1.weight"},
      {"mnist_mlp", {"--optimizer", "sgd(lr=1e-3)"}, "sgd"}};
  for (const auto& [program, args, entry] : cases) {
    std::vector<std::string> all = with({"--epochs", "1", "--resume", ckpt.string()});
    all.insert(all.end(), args.begin(), args.end());
    Outcome o = run(program, all);
    INFO(program << " " << o.out << o.err);
    CHECK(o.code == 2);
    CHECK(o.err.find(program + ": checkpoint " + ckpt.string() + ": ") != std::string::npos);
    CHECK(o.err.find(entry) != std::string::npos);
    CHECK_FALSE(trained_an_epoch(o.out));  // a resumed run would say "epoch 2"
  }
}

TEST_CASE("resume: a conflicting seed, batch size or rate is refused; the log keeps each epoch once") {
  REQUIRE(has_mnist());
  const fs::path ckpt = scratch("resume.ckpt"), log = scratch("resume.csv");
  const std::vector<std::string> run_flags{"--train-subset", "1000", "--batch-size", "100", "--no-progress"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), run_flags.begin(), run_flags.end());
    return args;
  };
  Outcome first = run("mnist_mlp", with({"--epochs", "2", "--save", ckpt.string(), "--log", log.string()}));
  REQUIRE(first.code == 0);
  for (auto [flag, value, message] :
       {std::tuple{"--seed", "3", "the run was started with --seed 0; resuming it with --seed 3"},
        {"--lr", "0.5", "the run was started with the learning rate 0.001"},
        // Every other setting that decides the run's course (run/settings), the rate kept.
        {"--weight-decay", "0.01", "the run was started with --optimizer adam(lr=0.001,weight_decay=0,"},
        {"--schedule", "cosine", "the run was started with --schedule constant("},
        {"--dataset", "fashion", "the run was started with --dataset mnist; resuming it with --dataset fashion"},
        {"--validation", "100", "the run was started with --validation 0; resuming it with --validation 100"},
        {"--loss", "mse", "the run was started with --loss cross-entropy; resuming it with --loss mse"},
        {"--init", "xavier", "the run was started with --init default; resuming it with --init xavier"},
        {"--no-bias-decay", "", "the run was started with --no-bias-decay off; resuming it with --no-bias-decay on"},
        {"--eval-every", "5", "the run was started with --eval-every off; resuming it with --eval-every on: 10000 "
                              "validation and 10000 train-eval images held out"}}) {
    std::vector<std::string> args{"--epochs", "1", "--resume", ckpt.string(), flag};
    if (*value) args.push_back(value);
    Outcome o = run("mnist_mlp", with(args));
    INFO(flag << ": " << o.err);
    CHECK(o.code == 2);
    CHECK(o.err.find(message) != std::string::npos);
  }
  Outcome batch = run("mnist_mlp", {"--epochs", "1", "--resume", ckpt.string(), "--train-subset", "1000", "--batch-size", "50"});
  CHECK(batch.code == 2);
  CHECK(batch.err.find("the run was started with --batch-size 100") != std::string::npos);
  Outcome subset = run("mnist_mlp", {"--epochs", "1", "--resume", ckpt.string(), "--train-subset", "900", "--batch-size", "100"});
  CHECK(subset.code == 2);
  CHECK(subset.err.find("checkpoint " + ckpt.string() + ": the run was started with --train-subset 1000; resuming it "
                        "with --train-subset 900 would change it") != std::string::npos);

  // A crash after epoch 3's row was logged but before its checkpoint: the checkpoint says 2 epochs, the
  // log has 3. Resuming cuts the log back and writes epoch 3 once.
  std::ofstream(log, std::ios::app) << "3,9,9,9,9,9,9,9\n";
  Outcome resumed = run("mnist_mlp", with({"--epochs", "2", "--resume", ckpt.string(), "--log", log.string()}));
  REQUIRE(resumed.code == 0);
  std::string rows = read_file(log);
  CHECK(rows.find("3,9,9") == std::string::npos);
  for (const char* epoch : {"\n1,", "\n2,", "\n3,", "\n4,"}) {
    CHECK(rows.find(epoch) != std::string::npos);
    CHECK(rows.find(epoch) == rows.rfind(epoch));
  }
}

namespace {
/// The checkpoint's model/ and optim/ entries (what decides every later step), and run/epoch.
std::vector<nn::NamedTensor> decisive(const fs::path& checkpoint) {
  std::vector<nn::NamedTensor> out;
  for (auto& [name, tensor] : nn::load_tensors(checkpoint.string())) {
    if (name.starts_with("model/") || name.starts_with("optim/") || name == "run/epoch" || name == "run/step") {
      out.emplace_back(name, tensor);
    }
  }
  return out;
}

bool same_bits(const std::vector<nn::NamedTensor>& a, const std::vector<nn::NamedTensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const ag::Tensor &x = a[i].second, &y = b[i].second;
    if (a[i].first != b[i].first || !(x.shape() == y.shape()) || x.dtype() != y.dtype()) return false;
    // float32 -> double is exact: equal doubles, equal floats.
    const std::vector<double> u = x.to_vector(), v = y.to_vector();
    if (std::memcmp(u.data(), v.data(), u.size() * sizeof(double)) != 0) return false;
  }
  return true;
}

/// The CSV's rows without their seconds column (the only one a resumed run may change).
std::vector<std::string> rows_without_seconds(const fs::path& csv) {
  std::vector<std::string> rows;
  std::istringstream in(read_file(csv));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::istringstream cells_in(line);
    for (std::string cell; std::getline(cells_in, cell, ',');) cells.push_back(cell);
    if (cells.size() > 6) cells.erase(cells.begin() + 6);
    std::string joined;
    for (const std::string& c : cells) joined += c + ",";
    rows.push_back(joined);
  }
  return rows;
}
}  // namespace

TEST_CASE("crash consistency: SIGKILL at random moments, resume until done: the straight run's state bit for bit, "
          "each epoch logged once") {
  REQUIRE(has_mnist());
  const int epochs = 3;
  const std::vector<std::string> flags{"--train-subset", "3000", "--batch-size", "100", "--save-every", "7",
                                       "--seed", "5", "--no-progress"};
  auto args = [&](const fs::path& ckpt, const fs::path& log, int more_epochs, bool resume) {
    std::vector<std::string> a = flags;
    a.insert(a.end(), {"--save", ckpt.string(), "--log", log.string(), "--epochs", std::to_string(more_epochs)});
    if (resume) a.insert(a.end(), {"--resume", ckpt.string()});
    return a;
  };
  const fs::path straight_ckpt = scratch("straight.ckpt"), straight_log = scratch("straight.csv");
  REQUIRE(run("mnist_mlp", args(straight_ckpt, straight_log, epochs, false)).code == 0);
  const auto expected = decisive(straight_ckpt);
  const auto expected_rows = rows_without_seconds(straight_log);
  REQUIRE(expected_rows.size() == epochs + 1);

  for (unsigned seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> delay_ms(0, 1500);
    const fs::path ckpt = scratch("killed.ckpt"), log = scratch("killed.csv");
    fs::remove(ckpt);
    fs::remove(log);
    int kills = 0, resumed = 0;
    while (true) {
      const bool resume = fs::exists(ckpt);
      resumed += resume ? 1 : 0;
      int completed = 0;
      if (resume) {
        for (auto& [name, t] : decisive(ckpt)) {
          if (name == "run/epoch") completed = static_cast<int>(t.item());
        }
      }
      Child child("mnist_mlp", args(ckpt, log, epochs - completed, resume));
      if (kills < 8) {
        // The first kill as soon as a checkpoint is there, so that at least one start resumes (loading may
        // outlast every random delay, and the run end within one); the others anywhere.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (kills == 0 && !fs::exists(ckpt) && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        const int delay = delay_ms(rng);  // drawn every time: the seeds' sequences as they were
        if (kills > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
        child.signal(SIGKILL);
      }
      const int code = child.wait();
      if (code == 0) break;
      INFO(child.err());
      REQUIRE(code == 128 + SIGKILL);
      ++kills;
    }
    INFO(kills << " kills, " << resumed << " starts resumed");
    CHECK(resumed > 0);
    CHECK(same_bits(decisive(ckpt), expected));
    CHECK(rows_without_seconds(log) == expected_rows);
  }
}

TEST_CASE("a checkpoint whose weights are NaN is refused on resume, naming the entry") {
  REQUIRE(has_mnist());
  const fs::path ckpt = scratch("nan.ckpt");
  REQUIRE(run("mnist_mlp", {"--epochs", "1", "--train-subset", "500", "--save", ckpt.string(), "--no-progress"}).code == 0);
  std::vector<nn::NamedTensor> entries = nn::load_tensors(ckpt.string());
  for (auto& [name, tensor] : entries) {
    if (name.starts_with("model/")) tensor = ag::Tensor::full(tensor.shape(), std::nan(""), tensor.dtype());
  }
  nn::save_tensors(ckpt.string(), entries);
  Outcome resumed = run("mnist_mlp", {"--epochs", "1", "--train-subset", "500", "--resume", ckpt.string()});
  CHECK(resumed.code == 2);
  CHECK(resumed.err.find("model/fc1.weight holds 100352 non-finite value(s) of 100352: not a run to resume") !=
        std::string::npos);
}

TEST_CASE("the normalisation examples train a little; --clip-grad-norm wraps the optimiser in clip; BN resumes") {
  REQUIRE(has_mnist());
  const std::string path = scratch("bn.ckpt").string();
  auto tiny = [](std::vector<std::string> more, const std::string& epochs = "1") {
    std::vector<std::string> args{"--epochs", epochs, "--train-subset", "2000", "--validation", "500", "--batch-size",
                                  "50", "--no-progress"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  const std::vector<std::pair<std::string, std::vector<std::string>>> runs{
      {"mnist_bn_cnn", tiny({"--save", path})}, {"mnist_resmlp", tiny({"--clip-grad-norm", "0.5"})},
      {"mnist_lenet5", tiny({})}};
  double bn_accuracy = 0;
  for (const auto& [program, args] : runs) {
    Outcome ok = run(program, args);
    INFO(program << ok.out << ok.err);
    CHECK(ok.code == 0);
    CHECK(value_after(ok.out, "final validation_acc=") > 0.6);
    if (program == "mnist_bn_cnn") bn_accuracy = value_after(ok.out, "final validation_acc=");
    if (program == "mnist_resmlp") {
      CHECK(ok.out.find("# optimizer clip(inner=adam(lr=0.001,") != std::string::npos);
      CHECK(ok.out.find("max_norm=0.5)") != std::string::npos);
    }
  }
  Outcome twice = run("mnist_resmlp", {"--clip-grad-norm", "1", "--optimizer", "clip(inner=sgd)"});
  CHECK(twice.code == 2);
  CHECK(twice.err.find("--clip-grad-norm and the optimiser spec 'clip(inner=sgd)' both clip") != std::string::npos);
  Outcome negative = run("mnist_resmlp", {"--clip-grad-norm", "-1"});
  CHECK(negative.code == 2);
  CHECK(negative.err.find("--clip-grad-norm: -1 is not a positive number") != std::string::npos);

  // A training checkpoint holds the running statistics: evaluated from it, the model is the one that was saved.
  const auto entries = nn::load_tensors(path);
  auto has = [&](const std::string& name) {
    return std::any_of(entries.begin(), entries.end(), [&](const auto& e) { return e.first == name; });
  };
  CHECK(has("model/bn1.running_mean"));
  CHECK(has("model/bn2.num_batches_tracked"));
  Outcome evaluated = run("mnist_bn_cnn", tiny({"--resume", path}, "0"));
  INFO(evaluated.out << evaluated.err);
  CHECK(evaluated.code == 0);
  CHECK(value_after(evaluated.out, "final validation_acc=") == bn_accuracy);
  Outcome without = run("mnist_bn_cnn", tiny({"--resume", path, "--no-batch-norm"}));
  CHECK(without.code == 2);
  CHECK(without.err.find("bn1.running_mean: in the file, not in the model") != std::string::npos);
}
