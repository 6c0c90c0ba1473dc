// The command line of the training programs and the lab, on CLI11: the flags they share, read into a
// RunConfig, with the optimiser, schedule and model given as specs (config/spec.hpp) checked against the
// registries. Errors name the flag and what is allowed; every program exits 2 on them.
//
//   CLI::App app{"My model on MNIST", "my_model"};
//   examples::RunFlags flags(app, {.with_model = false});
//   if (int code = examples::parse(app, argc, argv); code >= 0) return code;   // --help, or a bad flag
//   examples::RunConfig config = flags.config();
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/common/training.hpp"

namespace CLI {
class App;
class Option;
}

namespace examples {


/// A flag's value that CLI11 accepts but the run cannot (a bad spec, a conflict between flags).
struct FlagError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Prints "<program>: <message>" on stderr; never throws (a full or closed stderr is given up on: the exit
/// status still says it).
void report_error(const std::string& program, const std::string& message) noexcept;

/// Makes the programs' own output failures errors, not signals or silence: ignores SIGXFSZ (a file grown past
/// `ulimit -f` then fails with EFBIG, which its writer reports, in place of the process being killed), and at
/// exit flushes stdout and, if anything printed did not reach it (a full disk, /dev/full), says so with
/// strerror and exits 2. parse() calls it; idempotent.
void guard_output(const std::string& program);

/// Parses argv into `app` (calling guard_output first). Returns -1 to go on, else the exit code: 0 after printing --help (or a listing
/// such as --list-optimizers), 2 after printing a bad flag's error.
int parse(CLI::App& app, int argc, const char* const* argv);

/// Runs `body` (which reads flags and data); a FlagError, config::SpecError or other exception is
/// printed as "<program>: <message>" and gives 2.
int checked(const std::string& program, const std::function<int()>& body);

/// Declares that `option` takes a path: an empty value is refused ("--log: an empty path").
CLI::Option* path_option(CLI::Option* option);

struct RunFlagsOptions {
  bool with_model = false;      // --model SPEC (and --hidden): the lab; a program defines its own model
  bool with_optimizer = true;   // --optimizer SPEC and --lr (the lab has lists instead)
  std::string default_model = "mlp";
  std::string default_optimizer = "adam";
  std::size_t default_batch_size = 200;
  bool single_run = true;       // false (the lab): --batch-size, --seed, --log, --save, --save-every and
                                // --resume are hidden from --help (the lab refuses them, naming its own)
};

/// The shared flags, declared on an app; config() reads them after parsing. Also declares
/// --list-optimizers, --list-schedules, --list-models, --list-trackers and --list-problems, which print the
/// registries (as Markdown tables after --markdown) and exit 0.
class RunFlags {
 public:
  RunFlags(CLI::App& app, RunFlagsOptions options = {});
  /// The configuration the flags describe; FlagError or config::SpecError for bad values.
  RunConfig config() const;
  /// The optimiser spec the flags give, --lr and --weight-decay folded in, fully resolved; with
  /// --clip-grad-norm X, wrapped in clip(inner=<it>,max_norm=X) (optim/clip.hpp): the gradients are clipped
  /// by their global norm before each of its steps.
  config::Spec optimizer_spec(const std::string& text) const;
  // The raw values, as CLI11 fills them.
  struct Raw {
    std::string model, hidden = "", init = "default", optimizer, schedule = "constant", dataset = "mnist", data,
                log, save, resume, track_log = "track.csv", problem, eval_log = "eval.csv",
                loss = "cross-entropy";
    std::vector<std::string> track;
    double lr = 0, weight_decay = 0, lr_final = 0.001, lr_tau = 1, lr_gamma = 0.1, warmup = 0, max_loss = 0,
           clip_grad_norm = 0;
    std::size_t lr_epochs = 0, lr_step = 10, batch_size = 200, epochs = 10, validation = 0, train_subset = 0,
                save_every = 0, threads = 1, eval_every = 0;
    std::uint64_t seed = 0;
    bool decoupled = false, no_progress = false, no_bias_decay = false, lr_per_epoch = false, markdown = false;
    bool detect_anomaly = false;
  };
  const Raw& raw() const { return raw_; }

 private:
  config::Spec schedule_spec() const;
  /// --problem: its model, data set, batch size and epochs (unless given), and the evaluation splits.
  void apply_problem(RunConfig& c) const;
  bool given(const std::string& flag) const;
  CLI::App& app_;
  RunFlagsOptions options_;
  Raw raw_;
};

/// The registries' help: every optimiser, schedule and model with its options and defaults.
std::string registry_help();

}  // namespace examples
