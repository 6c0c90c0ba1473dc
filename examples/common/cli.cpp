#include "examples/common/cli.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/preflight.hpp"
#include "examples/common/track.hpp"

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "config/registry.hpp"
#include "nn/init.hpp"
#include "nn/loss.hpp"
#include "nn/models.hpp"
#include "optim/registry.hpp"
#include "problems/test_problems.hpp"

namespace examples {

void report_error(const std::string& program, const std::string& message) noexcept {
  std::fprintf(stderr, "%s: %s\n", program.c_str(), message.c_str());
}

namespace {

std::string& guarded_program() {
  static std::string name;
  return name;
}

/// At exit: what the program printed must have reached stdout (as coreutils' close_stdout).
void check_stdout_at_exit() {
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return;
  const int error = errno;
  std::fprintf(stderr, "%s: writing the standard output failed: %s\n", guarded_program().c_str(),
               error != 0 ? std::strerror(error) : "a write failed earlier and what it held was lost");
  std::_Exit(2);  // exit() may not be called again from an atexit handler
}

}  // namespace

void guard_output(const std::string& program) {
  const bool first = guarded_program().empty();
  guarded_program() = program;
  if (!first) return;
  std::signal(SIGXFSZ, SIG_IGN);
  std::atexit(check_stdout_at_exit);
}

int parse(CLI::App& app, int argc, const char* const* argv) {
  guard_output(app.get_name());
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);  // a failed write is the exit check's to report
    return 0;
  } catch (const CLI::Success&) {
    return 0;
  } catch (const CLI::ParseError& error) {
    report_error(app.get_name(), fmt::format("{} (see --help)", error.what()));
    return 2;
  }
}

int checked(const std::string& program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::bad_alloc& error) {
    report_error(program, fmt::format("out of memory: {} (are the sizes given, say --hidden or --batch-size, too "
                                      "large for this machine?)", error.what()));
    return 2;
  } catch (const std::exception& error) {
    report_error(program, error.what());
    return 2;
  }
}

CLI::Option* path_option(CLI::Option* option) {
  return option->check(CLI::Validator(
      [](std::string& value) { return value.empty() ? std::string("an empty path") : std::string(); }, "PATH"));
}

CLI::Validator whole_number(std::uint64_t low, std::uint64_t high) {
  auto check = [low, high](std::string& text) -> std::string {
    const char* end = text.data() + text.size();
    std::uint64_t value = 0;
    if (auto [ptr, error] = std::from_chars(text.data(), end, value); error != std::errc() || ptr != end) {
      double number = 0;
      auto [ptr2, error2] = std::from_chars(text.data(), end, number);
      bool whole = !text.empty() && error2 == std::errc() && ptr2 == end && number >= 0 && number == std::floor(number);
      // 1e999: past the doubles, too large (1e-999 and -1e999 are not whole).
      bool overflow = error2 == std::errc::result_out_of_range && ptr2 == end && std::strtod(text.c_str(), nullptr) > 1;
      if (!whole && !overflow && error != std::errc::result_out_of_range) {
        return fmt::format("'{}' is not a whole number", text);
      }
      if (!whole || number >= 0x1p64) return fmt::format("{} is too large", text);
      value = static_cast<std::uint64_t>(number);
    }
    if (value < low) return fmt::format("must be at least {}, got {}", low, text);
    if (value > high) return fmt::format("must be at most {}, got {}", high, text);
    text = std::to_string(value);
    return {};
  };
  return CLI::Validator(check, "");
}

CLI::Option* count_option(CLI::Option* option, std::uint64_t low, std::uint64_t high) {
  const std::string type = high == std::numeric_limits<std::uint64_t>::max() ? fmt::format("INT>={}", low)
                                                                             : fmt::format("INT in [{}, {}]", low, high);
  return option->transform(whole_number(low, high))->type_name(type);
}

CLI::Validator number_from(double low, bool low_allowed) {
  auto check = [low, low_allowed](const std::string& text) -> std::string {
    double value = 0;
    auto [ptr, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value)) {
      return fmt::format("'{}' is not a number", text);
    }
    if (value < low || (value == low && !low_allowed)) {
      const std::string bound = low == 0 && !low_allowed ? "positive"
                                : fmt::format("{} {}", low_allowed ? "at least" : "above", config::format_real(low));
      return fmt::format("must be {}, got {}", bound, text);
    }
    return {};
  };
  return CLI::Validator(check, "");
}

CLI::Validator positive(bool zero_allowed) { return number_from(0, zero_allowed); }

std::vector<std::string> list_items(const std::string& flag, const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  for (;;) {
    std::size_t comma = text.find(',', start);
    items.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (items.back().empty()) throw CLI::ValidationError(flag, "an empty item in the list '" + text + "'");
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

namespace {

std::string names_of(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

/// A --list-* flag: prints the registry (Markdown after --markdown) and exits 0.
template <class Entry>
void add_listing(CLI::App& app, const std::string& flag, const config::Registry<Entry>& registry, const bool& markdown) {
  app.add_flag_callback(
      flag,
      [&registry, &markdown] {
        auto entries = config::infos(registry);
        std::fputs((markdown ? config::markdown_table(entries) : config::help_text(entries)).c_str(), stdout);
        throw CLI::Success();
      },
      "print every registered " + registry.kind() + " with its options, and exit");
}

void add_model_flags(CLI::App& app, RunFlags::Raw& raw, const RunFlagsOptions& options) {
  raw.model = options.default_model;
  app.add_option("--model", raw.model, "model spec: " + names_of(nn::models().names()) + " (see --list-models)")
      ->capture_default_str();
  app.add_option("--problem", raw.problem,
                 "a DeepOBS test problem, in place of --model and --dataset: " +
                     names_of(problems::test_problems().names()) +
                     " (see --list-problems); its batch size and epochs unless given, and the evaluation splits");
  app.add_option("--hidden", raw.hidden, "mlp: hidden widths, comma-separated (e.g. 300,100,100)");
}

void add_optimizer_flags(CLI::App& app, RunFlags::Raw& raw, const RunFlagsOptions& options) {
  raw.optimizer = options.default_optimizer;
  app.add_option("--optimizer", raw.optimizer,
                 "optimiser spec, e.g. 'adam(lr=1e-3,beta2=0.99)': " + names_of(optim::optimizers().names()) +
                     " (see --list-optimizers)")
      ->capture_default_str();
  app.add_option("--lr", raw.lr, "learning rate (the same as lr= in the spec; default: the optimiser's)");
  app.add_option("--clip-grad-norm", raw.clip_grad_norm,
                 "clip the gradients to this global norm before each step (the optimiser wrapped in clip(max_norm=))");
}

/// --clip-grad-norm: the resolved optimiser spec wrapped in clip(inner=<it>,max_norm=<max_norm>).
config::Spec clipped(const config::Spec& resolved, const std::string& text, double max_norm) {
  if (!(max_norm > 0) || !std::isfinite(max_norm)) {
    throw FlagError(fmt::format("--clip-grad-norm: {} is not a positive number", max_norm));
  }
  if (resolved.name == "clip") throw FlagError(fmt::format("--clip-grad-norm and the optimiser spec '{}' both clip", text));
  return optim::resolve_optimizer(
      config::Spec{"clip", {{"inner", resolved.text()}, {"max_norm", config::format_real(max_norm)}}});
}

void add_schedule_flags(CLI::App& app, RunFlags::Raw& raw) {
  app.add_option("--schedule", raw.schedule,
                 "learning-rate schedule spec, e.g. 'linear(final=1e-5)': " + names_of(optim::schedules().names()) +
                     " (see --list-schedules)")
      ->capture_default_str();
  app.add_option("--lr-final", raw.lr_final, "linear, cosine: the rate reached at the end (final=)");
  count_option(app.add_option("--lr-epochs", raw.lr_epochs, "linear, cosine: epochs to decay over (epochs=; default: the run's)"));
  app.add_option("--lr-tau", raw.lr_tau, "inverse-time: lr = lr0 / (1 + epoch / tau) (tau=)");
  count_option(app.add_option("--lr-step", raw.lr_step, "step: epochs between decays (every=)"), 1);
  app.add_option("--lr-gamma", raw.lr_gamma, "step, exponential: decay factor (gamma=)");
  app.add_option("--warmup", raw.warmup, "epochs of linear warm-up before the schedule (warmup=)");
  app.add_flag("--lr-per-epoch", raw.lr_per_epoch, "step the schedule once per epoch (default: every batch)");
}

void add_data_flags(CLI::App& app, RunFlags::Raw& raw) {
  app.add_option("--dataset", raw.dataset, "mnist or fashion")->capture_default_str();
  path_option(app.add_option("--data", raw.data, "directory of the IDX files (default: $TAPEGRAD_MNIST_DIR or ./data/mnist)"));
  count_option(app.add_option("--validation", raw.validation,
                 "hold out the last N training images and evaluate on them instead of the test set"));
  count_option(app.add_option("--train-subset", raw.train_subset, "train on the first N training images only (0: all)"));
}

/// The flags of one run that a grid of runs cannot share.
void add_single_run_flags(CLI::App& app, RunFlags::Raw& raw, bool shown) {
  const std::string group = shown ? "Options" : "";  // CLI11 hides options of the empty group
  count_option(app.add_option("--batch-size", raw.batch_size, "samples per step: 1 is online, 60000 full batch"), 1,
               kMaxBatchSize)
      ->capture_default_str()
      ->group(group);
  count_option(app.add_option("--seed", raw.seed, "seed of the initial weights, the shuffling and every random stream"))
      ->capture_default_str()
      ->group(group);
  path_option(app.add_option("--log", raw.log, "write per-epoch metrics to this CSV file"))->group(group);
  path_option(app.add_option("--save", raw.save, "write a checkpoint (model, optimiser, run) here after every epoch and on Ctrl-C"))
      ->group(group);
  count_option(app.add_option("--save-every", raw.save_every, "with --save: also every N steps"))->group(group);
  path_option(app.add_option("--resume", raw.resume, "continue from this checkpoint"))->group(group);
}

void add_evaluation_flags(CLI::App& app, RunFlags::Raw& raw) {
  count_option(app.add_option("--eval-every", raw.eval_every,
                 "hold out DeepOBS's splits (10,000 validation images, a fixed 10,000-image train-eval subset) and "
                 "evaluate on train-eval, validation and test every N steps, off the training clock, into --eval-log"));
  path_option(app.add_option("--eval-log", raw.eval_log, "with --eval-every or --problem: a CSV row per evaluation"))
      ->capture_default_str();
}

/// --list-problems: the test problems (as the README's table after --markdown), then exit 0.
void add_problem_listing(CLI::App& app, const bool& markdown) {
  app.add_flag_callback(
      "--list-problems",
      [&markdown] {
        std::fputs((markdown ? problems::problems_markdown() : problems::problems_help()).c_str(), stdout);
        throw CLI::Success();
      },
      "print every registered test problem (model, data, batch size, epochs, parameters), and exit");
}

void add_run_control_flags(CLI::App& app, RunFlags::Raw& raw) {
  count_option(app.add_option("--epochs", raw.epochs,
                 "epochs to train (with --resume: epochs after the last complete one; 0 only evaluates)"),
               0, kMaxEpochs)
      ->capture_default_str();
  app.add_option("--init", raw.init,
                 "initialiser: default (U(+-1/sqrt(fan_in))), normal (N(0,1)*0.01, as 001), xavier, xavier-normal, "
                 "kaiming, kaiming-normal")
      ->capture_default_str();
  app.add_option("--weight-decay", raw.weight_decay, "weight decay (the same as weight_decay= in the spec)");
  app.add_flag("--decoupled", raw.decoupled, "decoupled weight decay (decoupled=true in the spec)");
  app.add_flag("--no-bias-decay", raw.no_bias_decay, "no weight decay on biases (a second parameter group)");
  count_option(app.add_option("--threads", raw.threads, "BLAS threads"), 1)->capture_default_str();
  app.add_option("--max-loss", raw.max_loss, "also stop as diverged when a step's loss exceeds this (0: only non-finite)");
  std::string losses;
  for (const auto& [name, value] : nn::classifier_losses()) losses += (losses.empty() ? "" : ", ") + name;
  app.add_option("--loss", raw.loss,
                 "the loss trained, evaluated and tracked: " + losses + " (mse: 1/2 ||logits - onehot||^2 per sample)")
      ->capture_default_str();
  app.add_flag("--no-progress", raw.no_progress, "never draw the progress bar");
  app.add_option("--track", raw.track,
                 "measure during training, into --track-log: tracker specs, space-separated, e.g. grad-norm "
                 "'sharpness(every=50)' (see --list-trackers)");
  path_option(app.add_option("--track-log", raw.track_log, "with --track: the per-step CSV"))->capture_default_str();
  app.add_flag("--detect-anomaly", raw.detect_anomaly,
               "check every op's output and gradients: the first NaN or infinity stops the run as diverged, naming "
               "the op, the ops that made its inputs, the layer and the step (slower)");
}

}  // namespace

RunFlags::RunFlags(CLI::App& app, RunFlagsOptions options) : app_(app), options_(std::move(options)) {
  raw_.batch_size = options_.default_batch_size;
  if (options_.with_model) add_model_flags(app, raw_, options_);
  if (options_.with_optimizer) add_optimizer_flags(app, raw_, options_);
  add_schedule_flags(app, raw_);
  add_single_run_flags(app, raw_, options_.single_run);
  add_run_control_flags(app, raw_);
  add_evaluation_flags(app, raw_);
  add_data_flags(app, raw_);
  app.add_flag("--markdown", raw_.markdown, "print the --list-* tables as Markdown (give it first)");
  add_listing(app, "--list-optimizers", optim::optimizers(), raw_.markdown);
  add_listing(app, "--list-schedules", optim::schedules(), raw_.markdown);
  add_listing(app, "--list-models", nn::models(), raw_.markdown);
  add_listing(app, "--list-trackers", trackers(), raw_.markdown);
  add_problem_listing(app, raw_.markdown);
}

bool RunFlags::given(const std::string& flag) const { return app_.count(flag) > 0; }

config::Spec RunFlags::optimizer_spec(const std::string& text) const {
  config::Spec spec = config::parse_spec(text);
  for (const auto& [key, value] : spec.args) {
    if (value.starts_with('[')) {
      throw FlagError(fmt::format("'{}': {}={} is a list; a grid of runs is the lab's (compare_optimizers --grid)",
                                  text, key, value));
    }
  }
  // The same number written two ways is no conflict: compare the resolved texts.
  auto same = [&](const std::string& key, const std::string& a, const std::string& b) {
    config::Spec one{spec.name, {{key, a}}}, other{spec.name, {{key, b}}};
    return optim::resolve_optimizer(one) == optim::resolve_optimizer(other);
  };
  auto fold = [&](const std::string& flag, const std::string& key, const std::string& value) {
    if (!given(flag)) return;
    const std::optional<std::string> in_spec = optim::option_of(spec, key);
    if (in_spec && !same(key, *in_spec, value)) {
      throw FlagError(fmt::format("{} {} conflicts with {}={} in the optimiser spec '{}'", flag, value, key, *in_spec,
                                  text));
    }
    spec.set(key, value);
  };
  if (options_.with_optimizer) fold("--lr", "lr", config::format_real(raw_.lr));
  fold("--weight-decay", "weight_decay", config::format_real(raw_.weight_decay));
  fold("--decoupled", "decoupled", "true");
  config::Spec resolved = optim::resolve_optimizer(spec);
  if (!options_.with_optimizer || !given("--clip-grad-norm")) return resolved;
  return clipped(resolved, text, raw_.clip_grad_norm);
}

config::Spec RunFlags::schedule_spec() const {
  config::Spec spec = config::parse_spec(raw_.schedule);
  const optim::ScheduleEntry& entry = optim::schedules().at(spec.name);
  auto fold = [&](const std::string& flag, const std::string& key, const std::string& value) {
    if (!given(flag)) return;
    bool has = key.starts_with("warmup");
    for (const config::OptionInfo& o : entry.options) has = has || o.key == key;
    if (!has) throw FlagError(fmt::format("{}: the {} schedule has no {} (see --list-schedules)", flag, spec.name, key));
    if (spec.find(key)) throw FlagError(fmt::format("{} and {}= in --schedule both given", flag, key));
    spec.set(key, value);
  };
  fold("--lr-final", "final", config::format_real(raw_.lr_final));
  if (given("--lr-epochs") && raw_.lr_epochs == 0) {
    throw FlagError("--lr-epochs: at least 1 (leave it out to decay over the whole run)");
  }
  fold("--lr-epochs", "epochs", std::to_string(raw_.lr_epochs));
  fold("--lr-tau", "tau", config::format_real(raw_.lr_tau));
  fold("--lr-step", "every", std::to_string(raw_.lr_step));
  fold("--lr-gamma", "gamma", config::format_real(raw_.lr_gamma));
  fold("--warmup", "warmup", config::format_real(raw_.warmup));
  return optim::resolve_schedule(spec);
}

namespace {
config::Spec model_spec(const RunFlags::Raw& raw) {
  config::Spec spec = config::parse_spec(raw.model);
  if (!raw.hidden.empty()) {
    if (spec.find("hidden")) throw FlagError("--hidden and hidden= in --model both given");
    spec.set("hidden", raw.hidden.front() == '[' ? raw.hidden : "[" + raw.hidden + "]");
  }
  return nn::resolve_model(spec);
}

void check_ranges(const RunFlags::Raw& raw) {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw FlagError(message);
  };
  require(raw.batch_size >= 1, "--batch-size: must be at least 1");
  require(raw.threads >= 1 && raw.threads <= 256, "--threads: between 1 and 256");
  require(std::isfinite(raw.max_loss) && raw.max_loss >= 0, "--max-loss: must be non-negative");
  require(raw.save_every == 0 || !raw.save.empty(), "--save-every: needs --save FILE");
  require(raw.dataset == "mnist" || raw.dataset == "fashion",
          fmt::format("--dataset: '{}' (mnist or fashion)", raw.dataset));
}
}  // namespace

void RunFlags::apply_problem(RunConfig& c) const {
  const problems::TestProblem& problem = problems::test_problems().at(raw_.problem);
  for (const char* flag : {"--model", "--hidden", "--dataset", "--init"}) {
    if (given(flag)) {
      throw FlagError(fmt::format("--problem {} and {}: the problem sets the model, the data and the initialisation",
                                  problem.name, flag));
    }
  }
  if (problem.is_function()) {
    for (const char* flag : {"--data", "--train-subset", "--no-bias-decay", "--loss", "--track"}) {
      if (given(flag)) {
        throw FlagError(fmt::format("--problem {} and {}: a function problem has parameters and fixed noise, no "
                                    "model, data set or classifier loss",
                                    problem.name, flag));
      }
    }
    c.model = config::Spec{};
  } else {
    c.model = nn::resolve_model(config::Spec{problem.model, {}});
    c.images = nn::models().at(problem.model).images;
  }
  c.problem = problem.name;
  c.dataset = problem.dataset;
  if (!given("--batch-size")) c.batch_size = problem.batch_size;
  if (!given("--epochs")) c.epochs = problem.epochs;
  c.evaluation_splits = true;
}

RunConfig RunFlags::config() const {
  check_ranges(raw_);
  RunConfig c;
  if (options_.with_model) {
    c.model = model_spec(raw_);
    c.images = nn::models().at(c.model.name).images;
  }
  if (options_.with_optimizer) c.optimizer = optimizer_spec(raw_.optimizer);
  c.schedule = schedule_spec();
  c.lr_per_epoch = raw_.lr_per_epoch;
  c.no_bias_decay = raw_.no_bias_decay;
  nn::parse_init(raw_.init);
  c.init = raw_.init;
  c.batch_size = raw_.batch_size;
  c.epochs = raw_.epochs;
  c.seed = raw_.seed;
  c.dataset = raw_.dataset;
  c.data_dir = raw_.data;
  c.threads = static_cast<int>(raw_.threads);
  c.validation = raw_.validation;
  c.train_subset = raw_.train_subset;
  c.log_path = raw_.log;
  c.save_path = raw_.save;
  c.save_every_steps = raw_.save_every;
  c.resume_path = raw_.resume;
  c.max_loss = raw_.max_loss;
  c.detect_anomaly = raw_.detect_anomaly;
  try {
    c.loss = nn::parse_classifier_loss(raw_.loss);
  } catch (const std::invalid_argument& e) {
    throw FlagError(std::string("--loss: ") + e.what());
  }
  for (const std::string& text : raw_.track) {
    config::Spec tracker = resolve_tracker(config::parse_spec(text));
    for (const config::Spec& earlier : c.track) {
      if (earlier.name == tracker.name) {
        throw FlagError(fmt::format("--track: {} is given twice ({} and {}: one set of its columns per run)",
                                    tracker.name, earlier.text(), tracker.text()));
      }
    }
    c.track.push_back(std::move(tracker));
  }
  if (given("--track-log") && c.track.empty()) throw FlagError("--track-log: only with --track");
  c.track_log = raw_.track_log;
  c.progress = !raw_.no_progress;
  if (options_.with_model && !raw_.problem.empty()) apply_problem(c);
  if (given("--eval-every")) {
    if (raw_.eval_every == 0) throw FlagError("--eval-every: at least 1 step (leave it out to evaluate once per epoch)");
    c.evaluation_splits = true;
    c.eval_every = raw_.eval_every;
  }
  if (c.evaluation_splits && c.validation > 0) {
    throw FlagError("--validation: the evaluation splits of --eval-every and --problem hold out their own validation set");
  }
  if (given("--eval-log") && !c.evaluation_splits) throw FlagError("--eval-log: only with --eval-every or --problem");
  c.eval_log = raw_.eval_log;
  check_distinct_outputs(c);
  return c;
}

std::string registry_help() {
  return fmt::format("optimizers:\n{}\nschedules:\n{}\nmodels:\n{}", config::help_text(config::infos(optim::optimizers())),
                     config::help_text(config::infos(optim::schedules())), config::help_text(config::infos(nn::models())));
}

}  // namespace examples
