#include "examples/common/training.hpp"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <utility>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "config/options.hpp"
#include "data/file.hpp"
#include "data/loader.hpp"
#include "examples/common/preflight.hpp"
#include "examples/common/row_log.hpp"
#include "examples/common/track.hpp"
#include "nn/nn.hpp"
#include "nn/models.hpp"
#include "optim/registry.hpp"
#include "optim/schedule.hpp"

namespace examples {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// Whether every value of `t` is finite (x * 0 is NaN for an infinite or NaN x: one vectorisable pass).
bool finite_values(const ag::Tensor& t) {
  bool finite = true;
  optim::detail::dispatch(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    T zero = 0;
    for (std::size_t i = 0; i < t.numel(); ++i) zero += p[i] * T(0);
    finite = zero == T(0);
  });
  return finite;
}

std::size_t count_correct(const ag::Tensor& logits, const std::vector<std::int32_t>& labels) {
  std::size_t classes = logits.dim(1), correct = 0;
  const float* z = logits.data<float>();
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float* row = z + i * classes;
    std::size_t best = 0;
    bool nan = std::isnan(row[0]);
    for (std::size_t k = 1; k < classes; ++k) {
      nan = nan || std::isnan(row[k]);
      if (row[k] > row[best]) best = k;
    }
    correct += !nan && static_cast<std::int32_t>(best) == labels[i];  // a NaN row is no class: wrong
  }
  return correct;
}

struct Evaluation {
  double loss = 0, accuracy = 0;
};

/// Mean loss and accuracy over a whole data set, in evaluation mode, without recording.
Evaluation evaluate(nn::Module& model, const data::Dataset& dataset, bool image_shape, nn::ClassifierLoss loss) {
  ag::NoGradGuard no_grad;
  model.eval();
  data::DataLoader loader(dataset, {.batch_size = 1000, .shuffle = false, .image_shape = image_shape});
  double loss_sum = 0;
  std::size_t correct = 0;
  for (const data::Batch& batch : loader) {
    ag::Tensor logits = model.forward(batch.images);
    loss_sum += nn::classifier_loss(loss, logits, batch.labels, ag::Reduction::sum).item();
    correct += count_correct(logits, batch.labels);
  }
  model.train();
  double n = static_cast<double>(dataset.size());
  return {loss_sum / n, static_cast<double>(correct) / n};
}

/// While alive, the model's batch-norm statistics are those of its current weights, recomputed over `train`
/// (nn::update_bn), when `optimizer` evaluates at averaged weights; the trained statistics come back after.
class StatisticsForAverage {
 public:
  StatisticsForAverage(nn::Module& model, const optim::Optimizer& optimizer, const data::Dataset& train,
                       bool image_shape) {
    if (!optimizer.has_eval_point()) return;
    for (nn::BatchNorm* bn : nn::batch_norm_layers(model)) {
      if (!bn->running_mean().defined()) continue;
      for (const ag::Tensor& buffer : {bn->running_mean(), bn->running_var(), bn->num_batches_tracked()}) {
        saved_.emplace_back(buffer, buffer.clone());
      }
    }
    if (saved_.empty()) return;
    data::DataLoader loader(train, {.batch_size = 1000, .shuffle = false, .image_shape = image_shape});
    data::Batch batch;
    nn::update_bn(model, loader.num_batches(), [&](std::size_t) {
      loader.next(batch);
      return batch.images;
    });
  }
  ~StatisticsForAverage() {
    for (auto& [buffer, trained] : saved_) buffer.copy_(trained);
  }
  StatisticsForAverage(const StatisticsForAverage&) = delete;
  StatisticsForAverage& operator=(const StatisticsForAverage&) = delete;

 private:
  std::vector<std::pair<ag::Tensor, ag::Tensor>> saved_;  // (the buffer, its trained values)
};

/// The terminal's width in columns (stderr's), else $COLUMNS, else 80.
std::size_t terminal_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    long value = std::strtol(columns, nullptr, 10);
    if (value > 0 && value < 10000) return static_cast<std::size_t>(value);
  }
  return 80;
}

/// A one-line progress bar on stderr that fits the terminal's width, redrawn at most ten times a second.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::size_t epoch, std::size_t epochs, std::size_t samples)
      : enabled_(enabled), epoch_(epoch), epochs_(epochs), samples_(samples), start_(Clock::now()), last_(start_) {}
  void update(std::size_t seen, double mean_loss) {
    if (!enabled_) return;
    auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_).count() < 0.1 && seen < samples_) return;
    last_ = now;
    double elapsed = seconds_since(start_);
    double rate = elapsed > 0 ? static_cast<double>(seen) / elapsed : 0;
    double eta = rate > 0 ? static_cast<double>(samples_ - seen) / rate : 0;
    double fraction = static_cast<double>(seen) / static_cast<double>(samples_);
    std::string left = fmt::format("epoch {}/{} ", epoch_, epochs_);
    std::string right = fmt::format(" {:3.0f}% loss {:.4f} {:.0f}/s ETA {:.0f}s", 100 * fraction, mean_loss, rate, eta);
    width_ = terminal_columns() - 1;  // never the last column: some terminals wrap there
    std::string line = left + right;
    if (line.size() + 12 <= width_) {
      std::size_t bar = width_ - line.size() - 2;
      std::size_t filled = static_cast<std::size_t>(fraction * static_cast<double>(bar));
      line = fmt::format("{}[{}{}]{}", left, std::string(filled, '#'), std::string(bar - filled, '.'), right);
    }
    fmt::print(stderr, "\r{}", line.substr(0, width_));
    std::fflush(stderr);
  }
  void clear() {
    if (enabled_ && width_ > 0) fmt::print(stderr, "\r{}\r", std::string(width_, ' '));
  }

 private:
  bool enabled_;
  std::size_t epoch_, epochs_, samples_, width_ = 0;
  Clock::time_point start_, last_;
};

volatile std::sig_atomic_t interrupted = 0;

/// SIGINT (Ctrl-C) or SIGTERM (kill, a cluster's scheduler before its SIGKILL): stop cleanly after the step.
extern "C" void on_interrupt(int signal) {
  interrupted = signal;
  std::signal(signal, SIG_DFL);  // a second one ends the process at once
}

std::vector<nn::NamedTensor> with_prefix(const std::string& prefix, const std::vector<nn::NamedTensor>& entries) {
  std::vector<nn::NamedTensor> out;
  for (const auto& [name, tensor] : entries) out.emplace_back(prefix + name, tensor);
  return out;
}

/// The entries under `prefix`, with the prefix removed.
std::vector<nn::NamedTensor> under_prefix(const std::string& prefix, const std::vector<nn::NamedTensor>& entries) {
  std::vector<nn::NamedTensor> out;
  for (const auto& [name, tensor] : entries) {
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), tensor);
  }
  return out;
}

/// The value of a one-element entry, which must lie in [low, high] (and be an integer if asked).
double scalar_entry(const std::vector<nn::NamedTensor>& entries, const std::string& name, const std::string& path,
                    double low, double high, bool integer = false) {
  for (const auto& [entry, tensor] : entries) {
    if (entry != name) continue;
    double value = tensor.numel() == 1 ? tensor.item() : std::nan("");
    if (!(value >= low && value <= high) || (integer && value != std::floor(value))) {
      throw std::runtime_error(fmt::format("checkpoint {}: entry '{}' is {}, not {} in [{}, {}]", path, name,
                                           tensor.describe(), integer ? "an integer" : "a number", low, high));
    }
    return value;
  }
  throw std::runtime_error(fmt::format("checkpoint {}: no entry '{}' (not a training checkpoint?)", path, name));
}

/// Where a run is: epochs completed, batches of the current epoch done, steps in all.
struct Position {
  std::size_t epoch = 0, batch = 0, step = 0;
  // The current epoch's sums so far (its training loss and accuracy when it ends, resumed or not).
  double loss_sum = 0;
  std::size_t correct = 0, seen = 0;
};

/// What a checkpoint holds besides model/ and optim/: where the run is, and what it was started with.
const char* const kRunEntries[] = {"run/epoch",          "run/batch",         "run/step",     "run/best_test_acc",
                                   "run/seconds",        "run/seed",          "run/batch_size", "run/base_lr",
                                   "run/epoch_loss_sum", "run/epoch_correct", "run/epoch_seen", "run/settings"};

/// The settings that decide a run's course besides the seed, batch size and rate, one "<flag>\t<value>" line each:
/// a resumed run must be given the same. (Not --epochs, the outputs, --threads, --max-loss, --track or
/// --detect-anomaly: those may change from one leg of a run to the next; but the run's length is kept beside
/// these when the schedule spans it, schedule_horizon.)
std::string run_settings(const RunConfig& c) {
  return fmt::format("--problem\t{}\n--model\t{}\n--init\t{}\n--optimizer\t{}\n--schedule\t{}\n--lr-per-epoch\t{}\n"
                     "--no-bias-decay\t{}\n--dataset\t{}\n--validation\t{}\n--train-subset\t{}\n--loss\t{}\n"
                     "--eval-every\t{}\n",
                     c.problem.empty() ? "(none)" : c.problem, c.model.text(), c.init, c.optimizer.text(),
                     c.schedule.text(), c.lr_per_epoch ? "on" : "off", c.no_bias_decay ? "on" : "off", c.dataset,
                     c.validation, c.train_subset, nn::classifier_loss_name(c.loss),
                     c.evaluation_splits ? fmt::format("on: {} validation and {} train-eval images held out",
                                                       c.split_validation, c.split_train_eval)
                                         : std::string("off"));
}

/// The key of run/settings' line for the run's length in epochs, kept when the schedule spans the whole run.
constexpr const char* kHorizonKey = "the run's length in epochs, which the schedule spans";

/// The run's length in epochs (last_epoch) when the schedule's rates depend on it (linear or cosine over the
/// whole run, however nested), else "": probed by building the schedule for this length and for twice it.
std::string schedule_horizon(const RunConfig& c, std::size_t batches_per_epoch, std::size_t last_epoch) {
  if (c.epochs == 0 || last_epoch == 0 || is_constant_schedule(c.schedule)) return "";
  const std::size_t per_epoch = c.lr_per_epoch ? 1 : batches_per_epoch;
  auto rate = [&](std::size_t epochs, double t) {
    return optim::make_schedule(c.schedule, {.base_lr = c.lr(), .steps_per_epoch = per_epoch,
                                             .total_steps = epochs * per_epoch})->lr_at(t);
  };
  const double steps = static_cast<double>(last_epoch * per_epoch);
  for (double t : {1.0, 0.5 * steps, steps - 1}) {  // the end too: a warm-up may cover the others
    if (rate(last_epoch, t) != rate(2 * last_epoch, t)) return std::to_string(last_epoch);
  }
  return "";
}

/// Text in a checkpoint: one element per byte (a checkpoint holds tensors only; f32 keeps 0 ... 255 exactly).
ag::Tensor text_tensor(const std::string& text) {
  std::vector<float> bytes;
  for (unsigned char byte : text) bytes.push_back(byte);
  return ag::Tensor::from_data(ag::Shape{bytes.size()}, std::span<const float>(bytes));
}

/// The text of text_tensor, or nothing if `tensor` is not one.
std::optional<std::string> tensor_text(const ag::Tensor& tensor) {
  std::string text;
  for (double v : tensor.to_vector()) {
    if (!(v >= 0 && v <= 255 && v == std::floor(v))) return std::nullopt;
    text += static_cast<char>(static_cast<unsigned char>(v));
  }
  return text;
}

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                     const Position& at, const RunResult& result, const RunConfig& config, const std::string& horizon) {
  std::vector<nn::NamedTensor> entries = with_prefix("model/", model.state_dict());
  for (auto& entry : with_prefix("optim/", optimizer.state())) entries.push_back(entry);
  auto scalar = [&](const std::string& name, double value) {
    entries.emplace_back(name, ag::Tensor::scalar(value, ag::DType::f64));
  };
  scalar("run/epoch", static_cast<double>(at.epoch));
  scalar("run/batch", static_cast<double>(at.batch));
  scalar("run/step", static_cast<double>(at.step));
  scalar("run/best_test_acc", result.best_test_acc);
  scalar("run/seconds", result.seconds);
  scalar("run/seed", static_cast<double>(config.seed));
  scalar("run/batch_size", static_cast<double>(config.batch_size));
  scalar("run/base_lr", config.lr());
  scalar("run/epoch_loss_sum", at.loss_sum);
  scalar("run/epoch_correct", static_cast<double>(at.correct));
  scalar("run/epoch_seen", static_cast<double>(at.seen));
  const std::string length = horizon.empty() ? "" : fmt::format("{}\t{}\n", kHorizonKey, horizon);
  entries.emplace_back("run/settings", text_tensor(run_settings(config) + length));
  nn::save_tensors(path, entries);
}

/// Refuses entries a training checkpoint does not have (they would be ignored).
void check_entry_names(const std::vector<nn::NamedTensor>& entries, const std::string& path) {
  for (const auto& [name, tensor] : entries) {
    if (name.starts_with("model/") || name.starts_with("optim/")) continue;
    if (std::find(std::begin(kRunEntries), std::end(kRunEntries), name) != std::end(kRunEntries)) continue;
    throw std::runtime_error(fmt::format("checkpoint {}: unexpected entry '{}' (a training checkpoint holds model/, "
                                         "optim/ and run/ entries only)", path, name));
  }
}

/// Refuses model weights that are not finite: a run that diverged is not one to resume.
void check_finite_model(const std::vector<nn::NamedTensor>& entries, const std::string& path) {
  for (const auto& [name, tensor] : entries) {
    if (!name.starts_with("model/")) continue;
    const std::vector<double> values = tensor.to_vector();
    auto bad = std::count_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); });
    if (bad > 0) {
      throw std::runtime_error(fmt::format("checkpoint {}: {} holds {} non-finite value(s) of {}: not a run to resume",
                                           path, name, bad, values.size()));
    }
  }
}

/// Refuses to resume the checkpoint at `path` with `flag` changed from `saved` to `asked`.
[[noreturn]] void refuse_change(const std::string& path, const std::string& flag, const std::string& saved,
                                const std::string& asked) {
  throw std::runtime_error(fmt::format("checkpoint {}: the run was started with {} {}; resuming it with {} {} would "
                                       "change it (give the same, or start a new run without --resume)",
                                       path, flag, saved, flag, asked));
}

/// The lines of run_settings, by flag.
std::map<std::string, std::string> settings_by_flag(const std::string& text) {
  std::map<std::string, std::string> settings;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const std::size_t tab = line.find('\t');
    if (tab != std::string::npos) settings[line.substr(0, tab)] = line.substr(tab + 1);
    start = end + 1;
  }
  return settings;
}

/// The run/settings a checkpoint was written with (checkpoints written before it was kept have none: not checked)
/// against the resumed run's: the first that differs is refused, naming its flag, both values and the file.
void check_same_settings(const std::vector<nn::NamedTensor>& entries, const std::string& path, const RunConfig& config) {
  auto entry = std::find_if(entries.begin(), entries.end(), [](const auto& e) { return e.first == "run/settings"; });
  if (entry == entries.end()) return;
  std::optional<std::string> text = tensor_text(entry->second);
  if (!text) throw std::runtime_error(fmt::format("checkpoint {}: run/settings is not the text of a run's settings", path));
  const std::map<std::string, std::string> saved = settings_by_flag(*text);
  for (const auto& [flag, asked] : settings_by_flag(run_settings(config))) {
    auto was = saved.find(flag);
    if (was == saved.end() || was->second == asked) continue;
    refuse_change(path, flag, was->second, asked);
  }
}

/// The schedule spans the whole run: a resumed run keeps its length (`horizon`, "" when the schedule does not
/// depend on it), or its rates would change from here on.
void check_same_horizon(const std::vector<nn::NamedTensor>& entries, const std::string& path, const RunConfig& config,
                        std::size_t at_epoch, const std::string& horizon) {
  auto entry = std::find_if(entries.begin(), entries.end(), [](const auto& e) { return e.first == "run/settings"; });
  if (entry == entries.end() || horizon.empty()) return;
  const std::map<std::string, std::string> saved = settings_by_flag(tensor_text(entry->second).value_or(""));
  auto was = saved.find(kHorizonKey);
  if (was == saved.end() || was->second == horizon) return;
  const long long left = std::stoll(was->second) - static_cast<long long>(at_epoch);
  throw std::runtime_error(fmt::format(
      "checkpoint {}: the schedule {} spans the whole run, {} epochs when it started; resuming after epoch {} with "
      "--epochs {} would make it {} and change its rates from here on ({})",
      path, config.schedule.text(), was->second, at_epoch, config.epochs, horizon,
      left > 0 ? fmt::format("--epochs {} finishes it", left) : std::string("the run is finished")));
}

/// A resumed run goes on as it was started: the same seed (the shuffles), batch size and base rate, and the
/// same settings (run_settings).
void check_same_run(const std::vector<nn::NamedTensor>& entries, const std::string& path, const RunConfig& config) {
  auto refuse = [&](const std::string& flag, const std::string& saved, const std::string& asked) {
    refuse_change(path, flag, saved, asked);
  };
  double seed = scalar_entry(entries, "run/seed", path, 0, 1.8446744073709552e19, true);
  if (seed != static_cast<double>(config.seed)) refuse("--seed", fmt::format("{}", seed), std::to_string(config.seed));
  double batch = scalar_entry(entries, "run/batch_size", path, 1, 1e12, true);
  if (batch != static_cast<double>(config.batch_size)) {
    refuse("--batch-size", fmt::format("{}", batch), std::to_string(config.batch_size));
  }
  double lr = scalar_entry(entries, "run/base_lr", path, 0, std::numeric_limits<double>::max());
  if (lr != config.lr()) refuse("the learning rate", config::format_real(lr), config::format_real(config.lr()));
  check_same_settings(entries, path, config);
}

/// The optimiser of the config over the model's parameters; with no_bias_decay the biases form a
/// second group with weight_decay = 0.
std::unique_ptr<optim::Optimizer> make_optimizer(const RunConfig& config, const nn::Module& model) {
  if (!config.no_bias_decay) return optim::make_optimizer(config.optimizer, model.named_parameters());
  std::vector<optim::GroupSpec> groups(2);
  for (const auto& entry : model.named_parameters()) {
    bool bias = entry.first == "bias" || entry.first.ends_with(".bias");
    groups[bias ? 1 : 0].params.push_back(entry);
  }
  groups[1].overrides.set("weight_decay", "0");
  if (groups[0].params.empty()) std::swap(groups[0], groups[1]);  // only biases: one group, without decay
  if (groups[1].params.empty()) groups.resize(1);
  return optim::make_optimizer(config.optimizer, std::move(groups));
}

/// One run of fit(): the model, its optimiser and schedule, the data in batches, and where it is.
class Trainer {
 public:
  Trainer(nn::Module& model, const RunConfig& config, const Datasets& data)
      : model_(model), config_(config), data_(data), optimizer_(make_optimizer(config, model)),
        loader_(data.train, loader_options(config)) {
    if (!config.save_path.empty()) data::check_writable(config.save_path, "the checkpoint");
    if (!config.log_path.empty()) data::check_writable(config.log_path, "the log");
    probe_model(model_, data.train, config.images, "training");
    probe_model(model_, data.test, config.images, data.test_name);
    if (config.evaluation_splits && (data.train_eval.size() == 0 || data.validation.size() == 0)) {
      throw std::runtime_error("the evaluation splits are asked for, but the data has no train-eval or validation "
                               "set (load_datasets makes them)");
    }
    std::vector<nn::NamedTensor> checkpoint;
    if (!config.resume_path.empty()) checkpoint = resume();
    last_epoch_ = at_.epoch + config.epochs;
    if (last_epoch_ > kMaxEpochs) {  // a checkpoint past it could not be read back
      throw std::runtime_error(fmt::format("checkpoint {}: resuming after epoch {} with --epochs {} makes a run of {} "
                                           "epochs, more than {}", config.resume_path, at_.epoch, config.epochs,
                                           last_epoch_, kMaxEpochs));
    }
    horizon_ = schedule_horizon(config, loader_.num_batches(), last_epoch_);
    check_same_horizon(checkpoint, config.resume_path, config, at_.epoch, horizon_);
    scheduler_ = make_scheduler(config, *optimizer_, loader_.num_batches(), last_epoch_);
    if (scheduler_) scheduler_->set_t(config.lr_per_epoch ? at_.epoch : at_.step);
    // Every output checked before any is opened (opening a new log truncates it): a refusal loses no file.
    if (!config.log_path.empty()) data::check_writable(config.log_path, "the log");
    if (config.evaluation_splits && !config.eval_log.empty()) data::check_writable(config.eval_log, "the evaluation log");
    track_ = TrackLog(config.track, config.track_log, model_, data.train, config.images, at_.step, config.loss,
                      !optimizer_->updates_in_backward());  // checks its trackers, then opens its log
    open_log();
    open_eval_log();
  }

  RunResult run(const EpochCallback& on_epoch) {
    ag::DetectAnomalyGuard detect(config_.detect_anomaly || ag::detecting_anomalies());
    if (config_.evaluation_splits && at_.step == 0) evaluate_splits();  // the start, as DeepOBS
    if (config_.epochs == 0) return evaluate_only();
    for (std::size_t epoch = at_.epoch + 1; epoch <= last_epoch_; ++epoch) {
      EpochMetrics metrics = train_epoch(epoch);
      // Neither evaluated nor saved: a checkpoint of non-finite weights would replace the last good one (and a
      // Ctrl-C on that step ends a diverged run, not one to resume).
      if (result_.diverged || weights_diverged(epoch)) {
        result_.interrupted = false;
        break;
      }
      finish_epoch(metrics, on_epoch);
      if (interrupted) result_.interrupted = true;  // also when it came during the evaluation
      if (result_.interrupted) break;
    }
    result_.steps = at_.step;
    result_.tracking_seconds = track_.seconds_by_tracker();
    return result_;
  }

 private:
  /// The checkpoint's entries, after every check and with the run's position read from them.
  std::vector<nn::NamedTensor> resume() {
    const std::string& path = config_.resume_path;
    std::vector<nn::NamedTensor> entries = nn::load_tensors(path);
    check_entry_names(entries, path);
    check_finite_model(entries, path);
    check_same_run(entries, path, config_);
    try {  // a checkpoint of another model or optimiser: the file named, beside its entries
      nn::assign_tensors(under_prefix("model/", entries), model_.state_dict(), "model");
      optimizer_->load_state(under_prefix("optim/", entries));
    } catch (const std::runtime_error& error) {
      throw std::runtime_error(fmt::format("checkpoint {}: {}", path, error.what()));
    }
    at_.epoch = static_cast<std::size_t>(scalar_entry(entries, "run/epoch", path, 0, 1e6, true));
    at_.batch = static_cast<std::size_t>(scalar_entry(entries, "run/batch", path, 0, 1e9, true));
    at_.step = static_cast<std::size_t>(scalar_entry(entries, "run/step", path, 0, 1e15, true));
    if (at_.batch >= loader_.num_batches()) {
      throw std::runtime_error(fmt::format("checkpoint {}: run/batch is {}, but an epoch has {} batches of {}", path,
                                           at_.batch, loader_.num_batches(), config_.batch_size));
    }
    at_.loss_sum = scalar_entry(entries, "run/epoch_loss_sum", path, 0, std::numeric_limits<double>::max());
    at_.correct = static_cast<std::size_t>(scalar_entry(entries, "run/epoch_correct", path, 0, 1e15, true));
    at_.seen = static_cast<std::size_t>(scalar_entry(entries, "run/epoch_seen", path, 0, 1e15, true));
    result_.best_test_acc = scalar_entry(entries, "run/best_test_acc", path, 0, 1);
    result_.seconds = scalar_entry(entries, "run/seconds", path, 0, 1e12);
    // Replaying the earlier epochs' shuffles puts a resumed run on the same sample order.
    for (std::size_t e = 0; e < at_.epoch; ++e) loader_.begin_epoch();
    return entries;
  }

  void open_log() {
    if (config_.log_path.empty()) return;
    const std::string header = "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,weight_norm\n";
    bool append = at_.epoch > 0 || at_.batch > 0;
    if (append) cut_log(config_.log_path, at_.epoch, header);
    log_ = RowLog(config_.log_path, "the log", append, header);
  }

  /// The model on each of `datasets` at the optimiser's evaluation point (an average of the weights, if it keeps
  /// one; batch-norm statistics are then recomputed for it over the training set, once for them all, and put back
  /// after).
  std::vector<Evaluation> evaluate_at_eval_point(std::initializer_list<const data::Dataset*> datasets) {
    optim::EvalScope at(*optimizer_);
    StatisticsForAverage statistics(model_, *optimizer_, data_.train, config_.images);
    std::vector<Evaluation> evaluations;
    for (const data::Dataset* dataset : datasets) {
      evaluations.push_back(evaluate(model_, *dataset, config_.images, config_.loss));
    }
    return evaluations;
  }

  RunResult evaluate_only() {
    const std::vector<Evaluation> evaluations = evaluate_at_eval_point({&data_.train, &data_.test});
    const Evaluation &train_eval = evaluations[0], &test_eval = evaluations[1];
    result_.epochs.push_back({at_.epoch, train_eval.loss, train_eval.accuracy, test_eval.loss, test_eval.accuracy,
                              optimizer_->lr(), 0.0, nn::weight_norm(model_.named_parameters())});
    result_.best_test_acc = std::max(result_.best_test_acc, test_eval.accuracy);
    result_.steps = at_.step;
    result_.interrupted = interrupted != 0;
    return result_;
  }

  void open_eval_log() {
    if (!config_.evaluation_splits || config_.eval_log.empty()) return;
    const bool append = at_.step > 0;
    if (append) cut_log(config_.eval_log, at_.step, eval_csv_header());
    eval_log_ = RowLog(config_.eval_log, "the evaluation log", append, eval_csv_header());
  }

  /// Training seconds so far: the finished epochs', and the running epoch's without evaluations and trackers.
  double training_clock() const {
    if (!in_epoch_) return result_.seconds;
    const double excluded = track_.seconds() + result_.evaluation_seconds - excluded_at_epoch_start_;
    return result_.seconds + seconds_since(epoch_start_) - excluded;
  }

  /// Train-eval, validation and test metrics now, recorded and logged; their time is kept off the clock.
  EvalMetrics evaluate_splits() {
    const auto start = Clock::now();
    EvalMetrics m{.step = at_.step, .seconds = training_clock(), .lr = optimizer_->lr()};
    m.epoch = static_cast<double>(at_.step) / static_cast<double>(loader_.num_batches());
    const std::vector<Evaluation> evaluations =
        evaluate_at_eval_point({&data_.train_eval, &data_.validation, &data_.test});
    const Evaluation &train_eval = evaluations[0], &validation = evaluations[1], &test = evaluations[2];
    m.train_eval_loss = train_eval.loss, m.train_eval_acc = train_eval.accuracy;
    m.validation_loss = validation.loss, m.validation_acc = validation.accuracy;
    m.test_loss = test.loss, m.test_acc = test.accuracy;
    result_.evaluations.push_back(m);
    if (config_.on_evaluation) config_.on_evaluation(m);
    if (eval_log_.is_open()) eval_log_.append(eval_csv_row(m));
    result_.evaluation_seconds += seconds_since(start);
    return m;
  }

  /// One step on `batch`; false if the run must stop (diverged, or interrupted).
  bool train_step(const data::Batch& batch, std::size_t epoch, ag::Tensor& logits, double& loss) {
    if (track_.active()) track_.before_step(model_);
    try {
      ag::AnomalyScope at(ag::detecting_anomalies() ? fmt::format("step {} (batch {} of epoch {})", at_.step + 1,
                                                                  at_.batch + 1, epoch) : std::string());
      // Methods with a closure (L-BFGS's line search, SAM's perturbed point) evaluate it more than once, and
      // step() returns the first evaluation's loss (as torch.optim): the accuracy is counted on the same logits.
      bool first = true;
      loss = optimizer_->step(optim::Optimizer::LossFn([&] {
        ag::Tensor out = model_(batch.images);
        if (std::exchange(first, false)) logits = out;
        return nn::classifier_loss(config_.loss, out, batch.labels);
      }));
    } catch (const ag::AnomalyError& error) {
      result_.diverged = true;
      result_.divergence = fmt::format("diverged: {}; stopping", error.what());
      return false;
    } catch (const optim::NumericalBreakdown& error) {
      result_.diverged = true;
      result_.divergence = breakdown_message(error.what(), place(epoch, at_.step + 1, at_.batch + 1));
      return false;
    }
    ++at_.step;
    ++at_.batch;
    at_.loss_sum += loss * static_cast<double>(batch.size());
    at_.correct += count_correct(logits, batch.labels);
    at_.seen += batch.size();
    if (!std::isfinite(loss) || (config_.max_loss > 0 && loss > config_.max_loss)) {
      result_.diverged = true;
      result_.divergence = divergence_message(loss, config_.max_loss, place(epoch, at_.step, at_.batch));
      return false;
    }
    // The epoch's last step is saved by finish_epoch, with the epoch's metrics.
    const bool save_due = config_.save_every_steps > 0 && at_.step % config_.save_every_steps == 0 &&
                          at_.batch < loader_.num_batches();
    const bool eval_due = config_.evaluation_splits && config_.eval_every > 0 && at_.step % config_.eval_every == 0;
    // The loss was of the weights before the update: the trackers measure, an evaluation reads and a checkpoint
    // keeps the weights after it, which are checked first (one pass over them, only then).
    if ((track_.active() || save_due || eval_due) && weights_diverged(epoch)) return false;
    if (track_.active()) track_.after_step(model_, at_.step, epoch, loss);
    if (scheduler_ && !config_.lr_per_epoch) scheduler_->step();
    if (eval_due) evaluate_splits();
    if (save_due) save();
    return interrupted == 0;
  }

  /// Whether the last update made a weight non-finite (its loss, of the weights before, was finite): then the
  /// run diverged there, said by the parameter's name.
  bool weights_diverged(std::size_t epoch) {
    std::string why = weights_divergence(model_.named_parameters(), place(epoch, at_.step, at_.batch));
    if (why.empty()) return false;
    result_.diverged = true;
    result_.divergence = std::move(why);
    return true;
  }

  StepPlace place(std::size_t epoch, std::size_t step, std::size_t batch) const {
    return {.step = step, .batch = batch, .epoch = epoch, .lr = optimizer_->lr(), .batch_size = config_.batch_size};
  }

  EpochMetrics train_epoch(std::size_t epoch) {
    ProgressBar bar(config_.progress && ::isatty(STDERR_FILENO), epoch, last_epoch_, data_.train.size());
    epoch_start_ = Clock::now();
    excluded_at_epoch_start_ = track_.seconds() + result_.evaluation_seconds;
    in_epoch_ = true;
    if (at_.batch == 0) at_.loss_sum = 0, at_.correct = 0, at_.seen = 0;  // else: resumed mid-epoch
    loader_.begin_epoch();
    data::Batch batch;
    for (std::size_t skip = at_.batch; skip > 0; --skip) loader_.next(batch);  // resuming mid-epoch
    ag::Tensor logits;
    while (loader_.next(batch)) {
      double loss = 0;
      bool go_on = train_step(batch, epoch, logits, loss);
      if (result_.diverged) break;
      bar.update(at_.seen, at_.loss_sum / static_cast<double>(at_.seen));
      if (!go_on) {
        result_.interrupted = true;
        break;
      }
    }
    bar.clear();
    // Measuring and evaluating are not training.
    double seconds = training_clock() - result_.seconds;
    in_epoch_ = false;
    result_.seconds += seconds;
    double n = static_cast<double>(std::max<std::size_t>(at_.seen, 1));
    return {.epoch = epoch, .train_loss = at_.loss_sum / n, .train_acc = static_cast<double>(at_.correct) / n,
            .lr = optimizer_->lr(), .seconds = seconds};
  }

  void finish_epoch(EpochMetrics metrics, const EpochCallback& on_epoch) {
    metrics.partial = at_.batch < loader_.num_batches();  // Ctrl-C on an epoch's last step leaves it whole
    if (!metrics.partial) {
      at_.epoch = metrics.epoch;
      at_.batch = 0;
      if (scheduler_ && config_.lr_per_epoch) scheduler_->step();
    }
    if (config_.evaluation_splits && config_.eval_every == 0 && !metrics.partial) {
      const EvalMetrics all = evaluate_splits();
      metrics.test_loss = all.test_loss;
      metrics.test_acc = all.test_acc;
    } else {
      const Evaluation test_eval = evaluate_at_eval_point({&data_.test}).front();
      metrics.test_loss = test_eval.loss;
      metrics.test_acc = test_eval.accuracy;
    }
    metrics.weight_norm = nn::weight_norm(model_.named_parameters());
    result_.epochs.push_back(metrics);
    result_.best_test_acc = std::max(result_.best_test_acc, metrics.test_acc);
    write_log(metrics);
    // The callback first: a store keeping the epochs beside the checkpoint is then never behind it.
    if (on_epoch) on_epoch(metrics);
    save();
  }

  void write_log(const EpochMetrics& m) {
    if (!log_.is_open()) return;
    log_.append(fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6g},{:.3f},{:.4f}\n", m.epoch, m.train_loss,
                            m.train_acc, m.test_loss, m.test_acc, m.lr, m.seconds, m.weight_norm));
  }

  void save() {
    if (!config_.save_path.empty()) {
      save_checkpoint(config_.save_path, model_, *optimizer_, at_, result_, config_, horizon_);
    }
  }

  nn::Module& model_;
  const RunConfig& config_;
  const Datasets& data_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::LRScheduler> scheduler_;
  data::DataLoader loader_;
  RowLog log_, eval_log_;
  TrackLog track_;
  Clock::time_point epoch_start_;
  double excluded_at_epoch_start_ = 0;  // tracking and evaluation seconds when the running epoch began
  bool in_epoch_ = false;
  Position at_;
  std::size_t last_epoch_ = 0;
  std::string horizon_;  // schedule_horizon: the run's length, when the schedule spans it
  RunResult result_;
};

void print_header(nn::Module& model, const RunConfig& config, const Datasets& datasets) {
  fmt::print("# {} ({} train, {} {}), batch {}, {} epochs, seed {}\n", config.dataset, datasets.train.size(),
             datasets.test.size(), datasets.test_name, config.batch_size, config.epochs, config.seed);
  fmt::print("# optimizer {}{}\n", config.optimizer.text(), config.no_bias_decay ? " (biases: weight_decay=0)" : "");
  fmt::print("# schedule {} ({})\n", config.schedule.text(), config.lr_per_epoch ? "per epoch" : "per step");
  std::string description = model.describe();
  std::size_t start = 0;
  while (start < description.size()) {
    std::size_t end = description.find('\n', start);
    fmt::print("# {}\n", description.substr(start, end - start));
    start = end == std::string::npos ? description.size() : end + 1;
  }
  fmt::print("# BLAS: {}\n", ag::blas_info());
  std::fflush(stdout);
}

}  // namespace

std::unique_ptr<optim::LRScheduler> make_scheduler(const RunConfig& config, optim::Optimizer& optimizer,
                                                   std::size_t batches_per_epoch, std::size_t epochs) {
  if (config.epochs == 0 || is_constant_schedule(config.schedule)) return nullptr;
  const std::size_t per_epoch = config.lr_per_epoch ? 1 : batches_per_epoch;
  optim::ScheduleContext context{.base_lr = config.lr(), .steps_per_epoch = per_epoch, .total_steps = epochs * per_epoch};
  return std::make_unique<optim::LRScheduler>(optimizer, optim::make_schedule(config.schedule, context));
}

bool is_constant_schedule(const config::Spec& schedule) {
  if (schedule.name != "constant") return false;
  for (const auto& [key, value] : schedule.args) {
    if (key.starts_with("warmup") && key != "warmup_start" && value != "0") return false;
  }
  return true;
}

double RunConfig::lr() const { return std::stod(optim::option_of(optim::resolve_optimizer(optimizer), "lr").value()); }

std::string RunResult::final_line(const std::string& eval) const {
  // No epoch finished (a run diverged in its first): no metrics, not zeros.
  constexpr double none = std::numeric_limits<double>::quiet_NaN();
  const bool any = !epochs.empty();
  EpochMetrics last = any ? epochs.back() : EpochMetrics{.train_loss = none, .train_acc = none, .test_loss = none, .test_acc = none};
  // Each tracker's time as a fraction of the training time: " tracking=grad-norm(every=1):0.031,...".
  std::string tracking;
  for (const auto& [spec, spent] : tracking_seconds) {
    tracking += fmt::format("{}{}:{:.3f}", tracking.empty() ? " tracking=" : ",", spec, spent / std::max(seconds, 1e-9));
  }
  const std::string ending = fmt::format("epochs={} steps={} seconds={:.1f}{}{}{}", last.epoch, steps, seconds,
                                         diverged ? " diverged=1" : "", interrupted ? " interrupted=1" : "", tracking);
  if (any && std::isnan(last.test_acc)) {  // a function problem: no accuracy
    return fmt::format("final {}_loss={:.6g} train_loss={:.6g} {}", eval, last.test_loss, last.train_loss, ending);
  }
  return fmt::format("final {0}_acc={1:.4f} best_{0}_acc={2:.4f} {0}_loss={3:.4f} train_acc={4:.4f} train_loss={5:.4f} {6}",
                     eval, last.test_acc, any ? best_test_acc : none, last.test_loss, last.train_acc, last.train_loss,
                     ending);
}

std::string eval_csv_header() {
  return "step,epoch,seconds,train_eval_loss,train_eval_acc,validation_loss,validation_acc,test_loss,test_acc,lr\n";
}

std::string eval_csv_row(const EvalMetrics& m) {
  // An accuracy a function problem does not have is an empty cell.
  auto acc = [](double v) { return std::isnan(v) ? std::string() : fmt::format("{:.6f}", v); };
  return fmt::format("{},{:.4f},{:.3f},{:.6f},{},{:.6f},{},{:.6f},{},{:.6g}\n", m.step, m.epoch, m.seconds,
                     m.train_eval_loss, acc(m.train_eval_acc), m.validation_loss, acc(m.validation_acc), m.test_loss,
                     acc(m.test_acc), m.lr);
}

std::string divergence_message(double loss, double max_loss, const StepPlace& at) {
  return fmt::format(
      "diverged: the training loss became {:.6g}{} at step {} (batch {} of epoch {}), with lr {} and batch size {}; "
      "stopping",
      loss, std::isfinite(loss) ? fmt::format(" (above --max-loss {})", max_loss) : "", at.step, at.batch, at.epoch,
      at.lr, at.batch_size);
}

std::string weights_divergence(const std::vector<nn::NamedTensor>& parameters, const StepPlace& at) {
  for (const auto& [name, p] : parameters) {
    if (finite_values(p)) continue;
    return fmt::format("diverged: the update of step {} (batch {} of epoch {}) made {} non-finite, with lr {} and "
                       "batch size {}; stopping", at.step, at.batch, at.epoch, name, at.lr, at.batch_size);
  }
  return "";
}

std::string breakdown_message(const std::string& what, const StepPlace& at) {
  return fmt::format("diverged: {} at step {} (batch {} of epoch {}), with lr {} and batch size {}; stopping", what,
                     at.step, at.batch, at.epoch, at.lr, at.batch_size);
}

std::string evaluation_set_name(const RunConfig& config) { return config.validation > 0 ? "validation" : "test"; }

Datasets load_datasets(const RunConfig& config) {
  Datasets sets;
  if (is_function_problem(config)) return sets;  // its noise is its own (problems::FunctionProblem)
  sets.train = data::load_dataset(config.dataset, data::Split::train, config.data_dir);
  if (config.evaluation_splits && config.validation > 0) {
    throw std::runtime_error(fmt::format("--validation {} holds out the last images in place of the test set; the "
                                         "evaluation splits (--problem, --eval-every) hold out their own",
                                         config.validation));
  }
  if (config.evaluation_splits) {
    data::EvaluationSplits splits =
        data::split_for_evaluation(sets.train, config.split_validation, config.split_train_eval);
    sets.train = std::move(splits.train);
    sets.train_eval = std::move(splits.train_eval);
    sets.validation = std::move(splits.validation);
  }
  if (config.validation >= sets.train.size()) {
    throw std::runtime_error(fmt::format("--validation {}: the training set has {} images; at most {} can be held out",
                                         config.validation, sets.train.size(), sets.train.size() - 1));
  }
  if (config.validation > 0) {
    auto [train, validation] = data::split_train_validation(sets.train, config.validation);
    sets.train = std::move(train);
    sets.test = std::move(validation);
    sets.test_name = evaluation_set_name(config);
  } else {
    sets.test = data::load_dataset(config.dataset, data::Split::test, config.data_dir);
  }
  if (config.train_subset > sets.train.size()) {
    throw std::runtime_error(fmt::format("--train-subset {}: the training set has {} images{}", config.train_subset,
                                         sets.train.size(),
                                         config.validation > 0 || config.evaluation_splits ? " once the held-out ones are taken out" : ""));
  }
  if (config.train_subset > 0 && config.train_subset < sets.train.size()) {
    sets.train.labels.resize(config.train_subset);
    sets.train.images.resize(config.train_subset * sets.train.features());
  }
  return sets;
}

std::shared_ptr<nn::Module> build_model(const RunConfig& config, const data::Dataset& train) {
  nn::manual_seed(config.seed);  // every random stream of the model: its weights, its dropout masks
  nn::ModelContext context{.channels = 1, .height = train.rows, .width = train.cols, .classes = data::kMnistClasses,
                           .init = nn::parse_init(config.init), .gen = &nn::default_generator()};
  return nn::make_model(config.model, context);
}

data::LoaderOptions loader_options(const RunConfig& config) {
  return {.batch_size = config.batch_size, .shuffle = true,
          .drop_last = !config.problem.empty(),  // a test problem drops it, as DeepOBS
          .image_shape = config.images, .seed = config.seed};
}

std::size_t steps_per_epoch(const RunConfig& config, const data::Dataset& train) {
  if (is_function_problem(config)) return function_steps_per_epoch(config);
  return data::batches_per_epoch(train.size(), loader_options(config));
}

RunResult fit(nn::Module& model, const RunConfig& config, const Datasets& datasets, const EpochCallback& on_epoch) {
  ag::set_blas_threads(config.threads);
  return Trainer(model, config, datasets).run(on_epoch);
}

RunResult train(const RunConfig& config, const Datasets& datasets, const EpochCallback& on_epoch) {
  if (is_function_problem(config)) return fit_function(config, on_epoch);
  RunConfig resolved = config;
  resolved.images = nn::models().at(config.model.name).images;
  std::shared_ptr<nn::Module> model = build_model(resolved, datasets.train);
  return fit(*model, resolved, datasets, on_epoch);
}

volatile std::sig_atomic_t& interrupt_flag() { return interrupted; }

void watch_interrupts() {
  interrupted = 0;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
}

namespace {

/// Whether two streams write to the same file (a terminal, say, or `2>&1`).
bool same_file(std::FILE* a, std::FILE* b) {
  struct stat sa {}, sb {};
  return ::fstat(::fileno(a), &sa) == 0 && ::fstat(::fileno(b), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

int run_program(nn::Module& model, const RunConfig& config, const Datasets& datasets) {
  print_header(model, config, datasets);
  watch_interrupts();
  RunResult result = fit(model, config, datasets, [&](const EpochMetrics& m) {
    fmt::print("epoch {}{} train_loss={:.4f} train_acc={:.4f} {}_loss={:.4f} {}_acc={:.4f} lr={:.4g} seconds={:.2f}\n",
               m.epoch, m.partial ? " (interrupted)" : "", m.train_loss, m.train_acc, datasets.test_name, m.test_loss,
               datasets.test_name, m.test_acc, m.lr, m.seconds);
    std::fflush(stdout);
  });
  if (result.diverged) {  // on stderr, and in the stdout log unless that is the same file
    fmt::print(stderr, "{}\n", result.divergence);
    if (!same_file(stdout, stderr)) fmt::print("{}\n", result.divergence);
  }
  if (result.interrupted) fmt::print(stderr, "interrupted ({}): stopped after step {}{}\n",
                                      interrupted == SIGTERM ? "SIGTERM" : "Ctrl-C", result.steps,
                                      config.save_path.empty() ? "" : ", checkpoint written to " + config.save_path);
  if (!result.evaluations.empty()) {
    const EvalMetrics& last = result.evaluations.back();
    fmt::print("# {} evaluations on train-eval, validation and test ({}), {:.2f} s kept off the training clock; last, "
               "step {}: train_eval_loss={:.4f} validation_loss={:.4f} validation_acc={:.4f} test_acc={:.4f}\n",
               result.evaluations.size(), config.eval_log.empty() ? "no log" : config.eval_log,
               result.evaluation_seconds, last.step, last.train_eval_loss, last.validation_loss, last.validation_acc,
               last.test_acc);
  }
  for (const auto& [spec, seconds] : result.tracking_seconds) {
    fmt::print("# tracking {}: {:.2f} s, {:.1f} % of the training time ({:.2f} s)\n", spec, seconds,
               100 * seconds / std::max(result.seconds, 1e-9), result.seconds);
  }
  fmt::print("{}\n", result.final_line(datasets.test_name));
  std::fflush(stdout);
  if (result.interrupted) return 128 + (interrupted != 0 ? static_cast<int>(interrupted) : SIGINT);
  return result.diverged ? 3 : 0;
}

}  // namespace examples
