#include "examples/common/training.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>

#include <fmt/format.h>

#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "data/loader.hpp"
#include "nn/nn.hpp"
#include "optim/factory.hpp"
#include "optim/schedule.hpp"

namespace examples {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::size_t count_correct(const ag::Tensor& logits, const std::vector<std::int32_t>& labels) {
  std::size_t classes = logits.dim(1), correct = 0;
  const float* z = logits.data<float>();
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float* row = z + i * classes;
    std::size_t best = 0;
    for (std::size_t k = 1; k < classes; ++k) {
      if (row[k] > row[best]) best = k;
    }
    correct += static_cast<std::int32_t>(best) == labels[i];
  }
  return correct;
}

struct Evaluation {
  double loss = 0, accuracy = 0;
};

/// Mean loss and accuracy over a whole data set, in evaluation mode, without recording.
Evaluation evaluate(nn::Module& model, const data::Dataset& dataset, bool image_shape) {
  ag::NoGradGuard no_grad;
  model.eval();
  data::DataLoader loader(dataset, {.batch_size = 1000, .shuffle = false, .image_shape = image_shape});
  double loss_sum = 0;
  std::size_t correct = 0;
  for (const data::Batch& batch : loader) {
    ag::Tensor logits = model.forward(batch.images);
    loss_sum += ag::cross_entropy(logits, batch.labels, ag::Reduction::sum).item();
    correct += count_correct(logits, batch.labels);
  }
  model.train();
  double n = static_cast<double>(dataset.size());
  return {loss_sum / n, static_cast<double>(correct) / n};
}

/// A one-line progress bar on stderr, redrawn at most ten times a second.
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
    constexpr int width = 30;
    int filled = static_cast<int>(fraction * width);
    fmt::print(stderr, "\repoch {}/{} [{}{}] {:3.0f}% loss {:.4f} {:.0f} samples/s ETA {:.0f}s   ", epoch_, epochs_,
               std::string(static_cast<std::size_t>(filled), '#'), std::string(static_cast<std::size_t>(width - filled), '.'),
               100 * fraction, mean_loss, rate, eta);
    std::fflush(stderr);
  }
  void clear() {
    if (enabled_) fmt::print(stderr, "\r{:80}\r", "");
  }

 private:
  bool enabled_;
  std::size_t epoch_, epochs_, samples_;
  Clock::time_point start_, last_;
};

/// `last_epoch`: the epoch the run ends with (a resumed run counts the epochs before it too), the horizon
/// of linear and cosine decay unless --lr-epochs says otherwise.
std::unique_ptr<optim::Schedule> make_schedule(const RunConfig& config, double base_lr, std::size_t last_epoch) {
  std::size_t horizon = config.lr_epochs ? config.lr_epochs : last_epoch;
  return optim::make_schedule(config.schedule, {.base_lr = base_lr,
                                                .final_lr = config.lr_final,
                                                .horizon = static_cast<double>(horizon),
                                                .tau = config.lr_tau,
                                                .step_size = static_cast<double>(config.lr_step),
                                                .gamma = config.lr_gamma,
                                                .warmup = static_cast<double>(config.warmup)});
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

/// The value of a one-element entry, which must lie in [low, high].
double scalar_entry(const std::vector<nn::NamedTensor>& entries, const std::string& name, const std::string& path,
                    double low, double high) {
  for (const auto& [entry, tensor] : entries) {
    if (entry != name) continue;
    double value = tensor.numel() == 1 ? tensor.item() : std::nan("");
    if (!(value >= low && value <= high)) {
      throw std::runtime_error(
          fmt::format("checkpoint {}: entry '{}' is {}, outside [{}, {}]", path, name, tensor.describe(), low, high));
    }
    return value;
  }
  throw std::runtime_error(fmt::format("checkpoint {}: no entry '{}' (not a training checkpoint?)", path, name));
}

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                     std::size_t epoch, double best, double seconds) {
  std::vector<nn::NamedTensor> entries = with_prefix("model/", model.named_parameters());
  for (auto& entry : with_prefix("optim/", optimizer.state())) entries.push_back(entry);
  entries.emplace_back("run/epoch", ag::Tensor::scalar(static_cast<double>(epoch), ag::DType::f64));
  entries.emplace_back("run/best_test_acc", ag::Tensor::scalar(best, ag::DType::f64));
  entries.emplace_back("run/seconds", ag::Tensor::scalar(seconds, ag::DType::f64));
  nn::save_tensors(path, entries);
}

}  // namespace

std::string RunResult::final_line() const {
  EpochMetrics last = epochs.empty() ? EpochMetrics{} : epochs.back();
  return fmt::format(
      "final test_acc={:.4f} best_test_acc={:.4f} test_loss={:.4f} train_acc={:.4f} train_loss={:.4f} epochs={} "
      "seconds={:.1f}{}",
      last.test_acc, best_test_acc, last.test_loss, last.train_acc, last.train_loss, last.epoch, seconds,
      diverged ? " diverged=1" : "");
}

Datasets load_datasets(const RunConfig& config) {
  Datasets sets;
  sets.train = data::load_dataset(config.dataset, data::Split::train, config.data_dir);
  if (config.validation > 0) {
    auto [train, validation] = data::split_train_validation(sets.train, config.validation);
    sets.train = std::move(train);
    sets.test = std::move(validation);
    sets.test_name = "validation";
  } else {
    sets.test = data::load_dataset(config.dataset, data::Split::test, config.data_dir);
  }
  if (config.train_subset > 0 && config.train_subset < sets.train.size()) {
    sets.train.labels.resize(config.train_subset);
    sets.train.images.resize(config.train_subset * sets.train.features());
  }
  return sets;
}

std::shared_ptr<nn::Module> build_model(const RunConfig& config, std::size_t features, std::size_t classes) {
  ag::Generator gen(config.seed);
  nn::Init init = nn::parse_init(config.init);
  if (config.model == "logreg") return std::make_shared<nn::Linear>(features, classes, init, true, &gen);
  if (config.model == "mlp") return nn::make_mlp(features, config.hidden, classes, init, &gen);
  if (config.model == "cnn") {
    // 000's CNN: (conv 3x3x8, ReLU, max-pool 2) twice, then FC 128 and FC 10. 28 -> 14 -> 7.
    std::size_t side = static_cast<std::size_t>(std::lround(std::sqrt(static_cast<double>(features))));
    std::size_t pooled = side / 4;
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(1, 8, 3, 1, 1, init, true, &gen), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Conv2d>(8, 8, 3, 1, 1, init, true, &gen),
        std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Flatten>(),
        std::make_shared<nn::Linear>(8 * pooled * pooled, 128, init, true, &gen), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Linear>(128, classes, init, true, &gen)});
  }
  throw FlagError(fmt::format("unknown model '{}' (logreg, mlp or cnn)", config.model));
}

RunResult train(const RunConfig& config, const Datasets& datasets, const EpochCallback& on_epoch) {
  ag::set_blas_threads(config.threads);
  const bool images = config.model == "cnn";
  std::shared_ptr<nn::Module> model = build_model(config, datasets.train.features(), data::kMnistClasses);
  double base_lr = config.lr > 0 ? config.lr : optim::default_lr(config.optimizer);
  std::unique_ptr<optim::Optimizer> optimizer =
      optim::make_optimizer(config.optimizer, model->named_parameters(),
                            {.lr = base_lr,
                             .weight_decay = config.weight_decay,
                             .decoupled_weight_decay = config.decoupled_weight_decay});

  RunResult result;
  std::size_t start_epoch = 0;
  if (!config.resume_path.empty()) {
    std::vector<nn::NamedTensor> entries = nn::load_tensors(config.resume_path);
    nn::assign_tensors(under_prefix("model/", entries), model->named_parameters(), "model");
    optimizer->load_state(under_prefix("optim/", entries));
    double epoch = scalar_entry(entries, "run/epoch", config.resume_path, 0, 1e6);
    if (epoch != std::floor(epoch)) throw std::runtime_error(fmt::format("checkpoint {}: run/epoch is {}", config.resume_path, epoch));
    start_epoch = static_cast<std::size_t>(epoch);
    result.best_test_acc = scalar_entry(entries, "run/best_test_acc", config.resume_path, 0, 1);
    result.seconds = scalar_entry(entries, "run/seconds", config.resume_path, 0, 1e12);
  }

  std::unique_ptr<optim::Schedule> schedule = make_schedule(config, base_lr, start_epoch + config.epochs);

  data::DataLoader loader(datasets.train, {.batch_size = config.batch_size, .shuffle = true,
                                           .image_shape = images, .seed = config.seed});
  // Replaying the earlier epochs' shuffles puts a resumed run on the same sample order.
  for (std::size_t e = 0; e < start_epoch; ++e) loader.begin_epoch();

  std::ofstream log;
  if (!config.log_path.empty()) {
    log.open(config.log_path, start_epoch > 0 ? std::ios::app : std::ios::trunc);
    if (!log) throw std::runtime_error(fmt::format("cannot write the log {}", config.log_path));
    if (start_epoch == 0) log << "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,weight_norm\n";
  }
  bool progress = config.progress && ::isatty(STDERR_FILENO);
  std::size_t last_epoch = start_epoch + config.epochs;
  std::size_t step = 0;

  if (config.epochs == 0) {
    // Evaluation only (e.g. --resume FILE --epochs 0).
    Evaluation train_eval = evaluate(*model, datasets.train, images);
    Evaluation test_eval = evaluate(*model, datasets.test, images);
    EpochMetrics metrics{start_epoch, train_eval.loss, train_eval.accuracy, test_eval.loss, test_eval.accuracy,
                         optimizer->lr(), 0.0, nn::weight_norm(model->named_parameters())};
    result.epochs.push_back(metrics);
    result.best_test_acc = std::max(result.best_test_acc, test_eval.accuracy);
    return result;
  }

  for (std::size_t epoch = start_epoch + 1; epoch <= last_epoch; ++epoch) {
    if (config.schedule != "constant" || config.warmup > 0) {
      optimizer->set_lr(schedule->lr_at(static_cast<double>(epoch - 1)));
    }
    ProgressBar bar(progress, epoch, last_epoch, datasets.train.size());
    auto start = Clock::now();
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0, batch_index = 0;
    ag::Tensor logits;
    for (const data::Batch& batch : loader) {
      ++batch_index;
      ++step;
      const data::Batch* current = &batch;
      double loss = optimizer->step(optim::Optimizer::LossFn([&] {
        logits = model->forward(current->images);
        return ag::cross_entropy(logits, current->labels);
      }));
      if (!std::isfinite(loss) || (config.max_loss > 0 && loss > config.max_loss)) {
        bar.clear();
        result.diverged = true;
        result.divergence = fmt::format(
            "diverged: the training loss became {:.6g}{} at step {} (batch {} of epoch {}), with lr {} and batch size {}; "
            "stopping",
            loss, std::isfinite(loss) ? fmt::format(" (above --max-loss {})", config.max_loss) : "", step, batch_index,
            epoch, optimizer->lr(), config.batch_size);
        result.seconds += seconds_since(start);
        return result;
      }
      loss_sum += loss * static_cast<double>(batch.size());
      correct += count_correct(logits, batch.labels);
      seen += batch.size();
      bar.update(seen, loss_sum / static_cast<double>(seen));
    }
    double seconds = seconds_since(start);
    bar.clear();
    result.seconds += seconds;
    Evaluation test_eval = evaluate(*model, datasets.test, images);
    EpochMetrics metrics{epoch,
                         loss_sum / static_cast<double>(seen),
                         static_cast<double>(correct) / static_cast<double>(seen),
                         test_eval.loss,
                         test_eval.accuracy,
                         optimizer->lr(),
                         seconds,
                         nn::weight_norm(model->named_parameters())};
    result.epochs.push_back(metrics);
    result.best_test_acc = std::max(result.best_test_acc, metrics.test_acc);
    if (log) {
      log << fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6g},{:.3f},{:.4f}\n", metrics.epoch, metrics.train_loss,
                         metrics.train_acc, metrics.test_loss, metrics.test_acc, metrics.lr, metrics.seconds,
                         metrics.weight_norm);
      log.flush();
    }
    if (!config.save_path.empty()) {
      save_checkpoint(config.save_path, *model, *optimizer, epoch, result.best_test_acc, result.seconds);
    }
    if (on_epoch) on_epoch(metrics);
  }
  return result;
}

void add_run_flags(FlagSet& flags) {
  flags.add("init", "default",
            "initialiser: default (U(+-1/sqrt(fan_in))), normal (N(0,1)*0.01, as 001), xavier, xavier-normal, kaiming, "
            "kaiming-normal");
  flags.add("epochs", "10", "epochs to train (with --resume: more epochs; 0 only evaluates)");
  flags.add("schedule", "constant", "learning-rate schedule: constant, inverse-time, linear, step, exponential, cosine");
  flags.add("lr-final", "0.001", "linear: the rate reached at the end of --lr-epochs");
  flags.add("lr-epochs", "", "linear, cosine: epochs to decay over (default: --epochs)");
  flags.add("lr-tau", "1", "inverse-time: lr = lr0 / (1 + epoch / tau)");
  flags.add("lr-step", "10", "step: epochs between decays");
  flags.add("lr-gamma", "0.1", "step, exponential: decay factor");
  flags.add("warmup", "0", "epochs of linear warm-up before the schedule");
  flags.add("weight-decay", "0", "L2 weight decay (coupled: added to the gradient)");
  flags.add_switch("decoupled", "decoupled weight decay (w <- w - lr * decay * w) instead of L2");
  flags.add("dataset", "mnist", "mnist or fashion");
  flags.add("data", "", "directory of the IDX files (default: data/mnist, or the Debian Fashion-MNIST)");
  flags.add("threads", "1", "BLAS threads");
  flags.add("validation", "0", "hold out the last N training images and evaluate on them instead of the test set");
  flags.add("train-subset", "0", "train on the first N training images only (0: all)");
  flags.add("max-loss", "0", "also stop as diverged when a step's training loss exceeds this (0: only non-finite)");
  flags.add_switch("no-progress", "never draw the progress bar");
}

void read_run_flags(const FlagSet& flags, RunConfig& config) {
  config.init = flags.text("init");
  nn::parse_init(config.init);
  config.epochs = flags.count("epochs");
  config.schedule = flags.text("schedule");
  if (!optim::is_schedule_name(config.schedule)) {
    throw FlagError(fmt::format("--schedule: unknown '{}' (constant, inverse-time, linear, step, exponential, cosine)",
                                config.schedule));
  }
  config.lr_final = flags.number("lr-final");
  if (flags.given("lr-epochs")) config.lr_epochs = flags.count("lr-epochs");
  config.lr_tau = flags.number("lr-tau");
  if (config.lr_tau <= 0) throw FlagError("--lr-tau: must be positive");
  config.lr_step = flags.count("lr-step");
  if (config.lr_step == 0) throw FlagError("--lr-step: must be at least 1");
  config.lr_gamma = flags.number("lr-gamma");
  if (config.lr_gamma <= 0) throw FlagError("--lr-gamma: must be positive");
  config.warmup = flags.count("warmup");
  config.weight_decay = flags.number("weight-decay");
  if (config.weight_decay < 0) throw FlagError("--weight-decay: must be non-negative");
  config.decoupled_weight_decay = flags.on("decoupled");
  config.dataset = flags.text("dataset");
  if (config.dataset != "mnist" && config.dataset != "fashion") {
    throw FlagError(fmt::format("--dataset: '{}' (mnist or fashion)", config.dataset));
  }
  config.data_dir = flags.text("data");
  config.threads = static_cast<int>(flags.count("threads"));
  if (config.threads < 1 || config.threads > 256) throw FlagError("--threads: between 1 and 256");
  config.validation = flags.count("validation");
  config.train_subset = flags.count("train-subset");
  config.max_loss = flags.number("max-loss");
  if (config.max_loss < 0) throw FlagError("--max-loss: must be non-negative");
  config.progress = !flags.on("no-progress");
}

void read_hidden_flag(const FlagSet& flags, RunConfig& config) {
  config.hidden = flags.counts("hidden");
  if (config.hidden.empty()) throw FlagError("--hidden: at least one hidden layer");
}

void add_training_flags(FlagSet& flags, const std::string& model) {
  if (model == "mlp") flags.add("hidden", "128,64", "hidden layer widths, comma-separated (e.g. 300,100,100)");
  flags.add("optimizer", "adam",
            std::string("sgd, momentum, nesterov, nesterov-lookahead, adagrad, rmsprop, adam, nadam, amsgrad, namsgrad, "
                        "sgd-hd, adam-hd") +
                (model == "logreg" ? ", newton" : ""));
  flags.add("lr", "", "learning rate (default: the optimiser's own default)");
  flags.add("batch-size", "200", "samples per step: 1 is online, 60000 full batch");
  flags.add("seed", "0", "seed of the initial weights and the shuffling");
  flags.add("log", "", "write per-epoch metrics to this CSV file");
  flags.add("save", "", "write a checkpoint (model and optimiser state) here after every epoch");
  flags.add("resume", "", "continue from this checkpoint");
  add_run_flags(flags);
}

void check_optimizer_name(const std::string& flag, const std::string& name, const std::string& model) {
  if (!optim::is_optimizer_name(name) || (name == "newton" && model != "logreg")) {
    throw FlagError(fmt::format("--{}: unknown or unsupported '{}' for {} (see --help)", flag, name, model));
  }
}

RunConfig config_from_flags(const FlagSet& flags, const std::string& model) {
  RunConfig config;
  config.model = model;
  if (model == "mlp") read_hidden_flag(flags, config);
  config.optimizer = flags.text("optimizer");
  check_optimizer_name("optimizer", config.optimizer, model);
  if (flags.given("lr")) {
    config.lr = flags.number("lr");
    if (config.lr <= 0) throw FlagError(fmt::format("--lr: must be positive, got {}", config.lr));
  }
  config.batch_size = flags.count("batch-size");
  if (config.batch_size == 0) throw FlagError("--batch-size: must be at least 1");
  config.seed = flags.count("seed");
  config.log_path = flags.text("log");
  config.save_path = flags.text("save");
  config.resume_path = flags.text("resume");
  read_run_flags(flags, config);
  return config;
}

int training_main(int argc, const char* const* argv, const std::string& model, const std::string& summary) {
  FlagSet flags(argv[0], summary);
  add_training_flags(flags, model);
  RunConfig config;
  Datasets datasets;
  try {
    flags.parse(argc, argv);
    if (flags.help_requested()) {
      fmt::print("{}", flags.usage());
      return 0;
    }
    config = config_from_flags(flags, model);
    datasets = load_datasets(config);
  } catch (const std::exception& error) {
    fmt::print(stderr, "{}: {}\n", argv[0], error.what());
    return 2;
  }
  try {
    auto sample_model = build_model(config, datasets.train.features(), data::kMnistClasses);
    fmt::print("# {} on {} ({} train, {} {}), optimizer {} lr {} batch {} schedule {} seed {}\n", model, config.dataset,
               datasets.train.size(), datasets.test.size(), datasets.test_name, config.optimizer,
               config.lr > 0 ? config.lr : optim::default_lr(config.optimizer), config.batch_size, config.schedule,
               config.seed);
    std::string description = sample_model->describe();
    std::size_t start = 0;
    while (start < description.size()) {
      std::size_t end = description.find('\n', start);
      fmt::print("# {}\n", description.substr(start, end - start));
      start = end == std::string::npos ? description.size() : end + 1;
    }
    ag::set_blas_threads(config.threads);
    fmt::print("# BLAS: {}\n", ag::blas_info());
    std::fflush(stdout);
    RunResult result = train(config, datasets, [&](const EpochMetrics& m) {
      fmt::print("epoch {} train_loss={:.4f} train_acc={:.4f} {}_loss={:.4f} {}_acc={:.4f} lr={:.4g} seconds={:.2f}\n",
                 m.epoch, m.train_loss, m.train_acc, datasets.test_name, m.test_loss, datasets.test_name, m.test_acc,
                 m.lr, m.seconds);
      std::fflush(stdout);
    });
    if (result.diverged) {
      fmt::print(stderr, "{}\n", result.divergence);
      fmt::print("{}\n", result.divergence);
    }
    fmt::print("{}\n", result.final_line());
    return result.diverged ? 3 : 0;
  } catch (const std::exception& error) {
    fmt::print(stderr, "{}: {}\n", argv[0], error.what());
    return 2;
  }
}

}  // namespace examples
