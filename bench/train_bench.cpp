// tapegrad side of the W1-W4 MNIST training benchmarks (the PyTorch side is bench/pytorch_reference.py).
//
//   W1 mlp        784-128-64-10 ReLU, softmax-CE, batch 200, Adam lr 1e-3   -> seconds per epoch
//   W2 cnn        conv3x3(1->8,p1) ReLU maxpool2 -> conv3x3(8->8,p1) ReLU maxpool2
//                 -> flatten(392) -> FC 128 ReLU -> FC 10, batch 200, Adam lr 1e-3 -> seconds per epoch
//   W3 online     784-300-100-100-10 ReLU, batch 1, SGD lr 0.01             -> microseconds per step
//   W4 mlp5-b10   784-300-100-100-10 ReLU, batch 10, SGD lr 0.1             -> seconds per epoch
//
// Same protocol as the PyTorch script, written the way a user writes a training loop (nn modules,
// optim::Adam / optim::SGD, ag::cross_entropy, data::DataLoader):
//   * the training set is loaded before anything is timed;
//   * each epoch's shuffle (DataLoader::begin_epoch, a seeded permutation) runs before the timer starts;
//   * inside the timed loop the loader gathers each batch through the permutation (one copy per sample
//     into a fresh tensor, like X[perm[i:i+B]]), then forward, loss, zero_grad, backward, optimiser step
//     and loss.item() accumulated for the epoch's mean loss;
//   * every repeat builds a fresh model from a fixed seed and a fresh loader with a fixed seed;
//   * W1, W2, W4 first run an untimed 20-step warm-up on a throw-away model; W3 runs --w3-warmup untimed
//     steps and then --w3-steps timed steps on the same model;
//   * the headline figure is the minimum over --repeats; the median is reported too.
// With --preshuffle the permuted copy of the training set is made before the timer and the loader walks it
// in order (it still copies each batch into a fresh tensor: the library has no zero-copy row view).
//
// The JSON (--json FILE) has the PyTorch script's keys and units, so the two compare key by key.

#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "optim/adam.hpp"
#include "optim/sgd.hpp"

namespace {

constexpr std::uint64_t kSeed = 0;
constexpr std::size_t kWarmupSteps = 20;
const std::vector<std::string> kAllWorkloads = {"w1", "w2", "w3", "w4"};

// ------------------------------------------------------------------------------------------- options

struct Args {
  std::string data;
  std::vector<std::string> workloads = kAllWorkloads;
  int epochs = 1;
  int w3_steps = 3000;
  int w3_warmup = 200;
  int threads = 1;
  int repeats = 3;
  bool preshuffle = false;
  bool breakdown = false;
  std::string json;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "train_bench: %s (see --help)\n", message.c_str());
  std::exit(2);
}

const char* kHelp =
    "usage: train_bench [options]\n"
    "tapegrad timings of the MNIST training workloads W1-W4 (see bench/README.md)\n"
    "  --data DIR        MNIST directory (default: $TAPEGRAD_MNIST_DIR or ./data/mnist)\n"
    "  --workloads LIST  comma-separated subset of w1,w2,w3,w4 (default: all)\n"
    "  --epochs N        epochs per timed repeat (default 1)\n"
    "  --w3-steps N      timed W3 steps (default 3000)\n"
    "  --w3-warmup N     untimed W3 warm-up steps (default 200)\n"
    "  --threads N       OpenBLAS threads (default 1)\n"
    "  --repeats R       timed repeats; min and median reported (default 3)\n"
    "  --preshuffle      permute the data set before timing, walk it in order\n"
    "  --json FILE       write the results as JSON to FILE\n"
    "  --breakdown       also time each phase of the step (gather, forward, loss, zero_grad, backward,\n"
    "                    step, item) and print us/step per phase (adds a clock read per phase)\n";

int to_int(const std::string& flag, const std::string& value) {
  try {
    std::size_t used = 0;
    int v = std::stoi(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    usage_error(fmt::format("{} expects an integer, got '{}'", flag, value));
  }
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    for (char& c : item) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline) return value;
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (arg == "--data") {
      args.data = next();
    } else if (arg == "--workloads") {
      args.workloads = split_list(next());
    } else if (arg == "--epochs") {
      args.epochs = to_int(arg, next());
    } else if (arg == "--w3-steps") {
      args.w3_steps = to_int(arg, next());
    } else if (arg == "--w3-warmup") {
      args.w3_warmup = to_int(arg, next());
    } else if (arg == "--threads") {
      args.threads = to_int(arg, next());
    } else if (arg == "--repeats") {
      args.repeats = to_int(arg, next());
    } else if (arg == "--preshuffle") {
      args.preshuffle = true;
    } else if (arg == "--breakdown") {
      args.breakdown = true;
    } else if (arg == "--json") {
      args.json = next();
    } else {
      usage_error("unknown option '" + arg + "'");
    }
  }
  for (const std::string& k : args.workloads) {
    if (std::find(kAllWorkloads.begin(), kAllWorkloads.end(), k) == kAllWorkloads.end()) {
      usage_error(fmt::format("unknown workload '{}' (choose from w1,w2,w3,w4)", k));
    }
  }
  if (args.workloads.empty()) usage_error("--workloads is empty");
  if (args.epochs < 1 || args.repeats < 1 || args.w3_steps < 1 || args.w3_warmup < 0 || args.threads < 1) {
    usage_error("--epochs, --repeats, --w3-steps and --threads must be >= 1, --w3-warmup >= 0");
  }
  if (args.data.empty()) args.data = data::default_mnist_dir();
  return args;
}

// ------------------------------------------------------------------------------------------- workloads

struct Workload {
  std::string key, name, desc;
  std::size_t batch;
  bool image;                                            // (B, 1, 28, 28) instead of (B, 784)
  std::function<std::shared_ptr<nn::Module>(ag::Generator&)> model;
  std::function<std::unique_ptr<optim::Optimizer>(nn::Module&)> optimizer;
};

std::shared_ptr<nn::Module> cnn(ag::Generator& gen) {
  using nn::Init;
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Conv2d>(1, 8, 3, 1, 1, Init::default_uniform, true, &gen));
  net->add(std::make_shared<nn::ReLU>());
  net->add(std::make_shared<nn::MaxPool2d>(2));
  net->add(std::make_shared<nn::Conv2d>(8, 8, 3, 1, 1, Init::default_uniform, true, &gen));
  net->add(std::make_shared<nn::ReLU>());
  net->add(std::make_shared<nn::MaxPool2d>(2));
  net->add(std::make_shared<nn::Flatten>());
  net->add(std::make_shared<nn::Linear>(8 * 7 * 7, 128, Init::default_uniform, true, &gen));
  net->add(std::make_shared<nn::ReLU>());
  net->add(std::make_shared<nn::Linear>(128, 10, Init::default_uniform, true, &gen));
  return net;
}

std::function<std::shared_ptr<nn::Module>(ag::Generator&)> mlp(std::vector<std::size_t> hidden) {
  return [hidden](ag::Generator& gen) -> std::shared_ptr<nn::Module> {
    return nn::make_mlp(784, hidden, 10, nn::Init::default_uniform, &gen);
  };
}

std::function<std::unique_ptr<optim::Optimizer>(nn::Module&)> adam(double lr) {
  return [lr](nn::Module& m) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::Adam>(m.named_parameters(), optim::AdamOptions{.lr = lr});
  };
}

std::function<std::unique_ptr<optim::Optimizer>(nn::Module&)> sgd(double lr) {
  return [lr](nn::Module& m) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::SGD>(m.named_parameters(), optim::SGDOptions{.lr = lr});
  };
}

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> all = {
      {"w1", "mlp", "MLP 784-128-64-10, batch 200, Adam 1e-3", 200, false, mlp({128, 64}), adam(1e-3)},
      {"w2", "cnn", "CNN 2x(conv3x3 8ch+pool) FC128, batch 200, Adam 1e-3", 200, true, cnn, adam(1e-3)},
      {"w3", "online", "MLP 784-300-100-100-10, batch 1, SGD 0.01", 1, false, mlp({300, 100, 100}), sgd(0.01)},
      {"w4", "mlp5-b10", "MLP 784-300-100-100-10, batch 10, SGD 0.1", 10, false, mlp({300, 100, 100}), sgd(0.1)},
  };
  return all;
}

const Workload& workload(const std::string& key) {
  for (const Workload& w : workloads()) {
    if (w.key == key) return w;
  }
  throw std::logic_error("unknown workload " + key);
}

/// A fresh model and optimiser, initialised from the fixed seed (the same for every repeat).
struct Trainee {
  std::shared_ptr<nn::Module> model;
  std::unique_ptr<optim::Optimizer> optimizer;
};

Trainee make(const Workload& wl) {
  ag::Generator gen(kSeed);
  Trainee t;
  t.model = wl.model(gen);
  t.model->train();
  t.optimizer = wl.optimizer(*t.model);
  return t;
}

data::LoaderOptions loader_options(const Workload& wl, bool shuffle) {
  return data::LoaderOptions{.batch_size = wl.batch, .shuffle = shuffle, .drop_last = false,
                             .image_shape = wl.image, .seed = kSeed};
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Time per phase of the training step (--breakdown), accumulated over the timed steps.
struct Breakdown {
  static constexpr const char* kNames[] = {"gather", "forward", "loss", "zero_grad", "backward", "step", "item"};
  static constexpr std::size_t kPhases = std::size(kNames);
  std::array<double, kPhases> seconds{};
  std::size_t steps = 0;
};

/// `steps` training steps with batches from `loader` (a new epoch of the loader if one runs out, as the
/// PyTorch loop wraps around). Returns the sum of the batch losses. With `breakdown`, also times each
/// phase of the step (a clock read between phases, ~20 ns each).
double train_steps(Trainee& t, data::DataLoader& loader, std::size_t steps, Breakdown* breakdown = nullptr) {
  data::Batch batch;
  double total = 0.0;
  if (breakdown == nullptr) {
    for (std::size_t s = 0; s < steps; ++s) {
      if (!loader.next(batch)) {
        loader.begin_epoch();
        loader.next(batch);
      }
      ag::Tensor logits = t.model->forward(batch.images);
      ag::Tensor loss = ag::cross_entropy(logits, batch.labels);
      t.optimizer->zero_grad();
      ag::backward(loss);
      t.optimizer->step();
      total += loss.item();
    }
    return total;
  }
  for (std::size_t s = 0; s < steps; ++s) {
    auto& sec = breakdown->seconds;
    auto t0 = Clock::now();
    auto lap = [&](std::size_t phase) {
      auto now = Clock::now();
      sec[phase] += std::chrono::duration<double>(now - t0).count();
      t0 = now;
    };
    if (!loader.next(batch)) {
      loader.begin_epoch();
      loader.next(batch);
    }
    lap(0);
    ag::Tensor logits = t.model->forward(batch.images);
    lap(1);
    ag::Tensor loss = ag::cross_entropy(logits, batch.labels);
    lap(2);
    t.optimizer->zero_grad();
    lap(3);
    ag::backward(loss);
    lap(4);
    t.optimizer->step();
    lap(5);
    total += loss.item();
    lap(6);
  }
  breakdown->steps += steps;
  return total;
}

void print_breakdown(const std::string& key, const Breakdown& b) {
  if (b.steps == 0) return;
  double sum = 0.0;
  for (double v : b.seconds) sum += v;
  fmt::print("  {} breakdown over {} timed steps (us/step):", key, b.steps);
  for (std::size_t i = 0; i < Breakdown::kPhases; ++i) {
    fmt::print(" {} {:.1f}", Breakdown::kNames[i], b.seconds[i] / static_cast<double>(b.steps) * 1e6);
  }
  fmt::print(" | total {:.1f}\n", sum / static_cast<double>(b.steps) * 1e6);
}

/// The data set in the order of `order` (for --preshuffle).
data::Dataset permuted(const data::Dataset& d, const std::vector<std::size_t>& order) {
  data::Dataset out;
  out.rows = d.rows;
  out.cols = d.cols;
  const std::size_t f = d.features();
  out.images.resize(d.images.size());
  out.labels.resize(d.labels.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    std::copy_n(d.images.bytes().data() + order[i] * f, f, out.images.bytes().data() + i * f);
    out.labels[i] = d.labels[order[i]];
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

struct Result {
  std::string unit;
  std::vector<double> times;
  double final_loss = 0.0;
  std::size_t batch = 0;
  // s/epoch workloads
  std::size_t epochs = 0, steps_per_epoch = 0;
  // W3
  std::size_t warmup_steps = 0, steps = 0;
};

Result run_epoch_workload(const Workload& wl, const data::Dataset& train, const Args& args) {
  const std::size_t steps = (train.size() + wl.batch - 1) / wl.batch;
  {
    // Untimed warm-up on a throw-away model.
    Trainee t = make(wl);
    data::DataLoader loader(train, loader_options(wl, true));
    loader.begin_epoch();
    train_steps(t, loader, kWarmupSteps);
  }
  Result r;
  r.unit = "s/epoch";
  r.batch = wl.batch;
  r.epochs = static_cast<std::size_t>(args.epochs);
  r.steps_per_epoch = steps;
  Breakdown breakdown;
  Breakdown* bd = args.breakdown ? &breakdown : nullptr;
  for (int rep = 0; rep < args.repeats; ++rep) {
    Trainee t = make(wl);
    data::DataLoader shuffler(train, loader_options(wl, true));
    double elapsed = 0.0;
    for (int e = 0; e < args.epochs; ++e) {
      shuffler.begin_epoch();                       // the shuffle: outside the timed region
      double total = 0.0;
      if (args.preshuffle) {
        data::Dataset shuffled = permuted(train, shuffler.order());
        data::DataLoader loader(shuffled, loader_options(wl, false));
        loader.begin_epoch();
        auto t0 = Clock::now();
        total = train_steps(t, loader, steps, bd);
        elapsed += seconds_since(t0);
      } else {
        auto t0 = Clock::now();
        total = train_steps(t, shuffler, steps, bd);
        elapsed += seconds_since(t0);
      }
      r.final_loss = total / static_cast<double>(steps);
    }
    r.times.push_back(elapsed / args.epochs);
    fmt::print("  {} repeat {}/{}: {:.3f} s/epoch, mean train loss (last epoch) {:.4f}\n", wl.key, rep + 1,
               args.repeats, r.times.back(), r.final_loss);
    std::fflush(stdout);
  }
  if (bd) print_breakdown(wl.key, breakdown);
  return r;
}

Result run_w3(const Workload& wl, const data::Dataset& train, const Args& args) {
  Result r;
  r.unit = "us/step";
  r.batch = wl.batch;
  r.warmup_steps = static_cast<std::size_t>(args.w3_warmup);
  r.steps = static_cast<std::size_t>(args.w3_steps);
  Breakdown breakdown;
  Breakdown* bd = args.breakdown ? &breakdown : nullptr;
  for (int rep = 0; rep < args.repeats; ++rep) {
    Trainee t = make(wl);
    data::DataLoader shuffler(train, loader_options(wl, true));
    shuffler.begin_epoch();
    data::Dataset shuffled;
    std::unique_ptr<data::DataLoader> sliced;
    data::DataLoader* loader = &shuffler;
    if (args.preshuffle) {
      shuffled = permuted(train, shuffler.order());
      sliced = std::make_unique<data::DataLoader>(shuffled, loader_options(wl, false));
      sliced->begin_epoch();
      loader = sliced.get();
    }
    train_steps(t, *loader, r.warmup_steps);        // untimed warm-up, same model
    auto t0 = Clock::now();
    double total = train_steps(t, *loader, r.steps, bd);
    double us = seconds_since(t0) / static_cast<double>(r.steps) * 1e6;
    r.final_loss = total / static_cast<double>(r.steps);
    r.times.push_back(us);
    fmt::print("  w3 repeat {}/{}: {:.1f} us/step ({:.1f} s/epoch implied), mean loss over measured steps {:.4f}\n",
               rep + 1, args.repeats, us, us * 60000 / 1e6, r.final_loss);
    std::fflush(stdout);
  }
  if (bd) print_breakdown("w3", breakdown);
  return r;
}

// ------------------------------------------------------------------------------------------- reporting

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) { return fmt::format("{}", v); }

std::string json_result(const Result& r) {
  std::vector<std::string> times;
  for (double t : r.times) times.push_back(json_number(t));
  std::string out = "{\n";
  auto field = [&](const std::string& key, const std::string& value, bool last = false) {
    out += fmt::format("    {}: {}{}\n", json_string(key), value, last ? "" : ",");
  };
  double mn = min_of(r.times);
  if (r.unit == "us/step") {
    field("us_per_step", json_number(mn));
  } else {
    field("seconds_per_epoch", json_number(mn));
  }
  field("min", json_number(mn));
  field("median", json_number(median(r.times)));
  field("times", "[" + fmt::format("{}", fmt::join(times, ", ")) + "]");
  if (r.unit == "us/step") field("seconds_per_epoch_implied", json_number(mn * 60000 / 1e6));
  field("final_loss", json_number(r.final_loss));
  field("unit", json_string(r.unit));
  field("batch", std::to_string(r.batch));
  if (r.unit == "us/step") {
    field("warmup_steps", std::to_string(r.warmup_steps));
    field("steps", std::to_string(r.steps), true);
  } else {
    field("epochs", std::to_string(r.epochs));
    field("steps_per_epoch", std::to_string(r.steps_per_epoch), true);
  }
  return out + "  }";
}

/// The core name between the brackets of ag::blas_info(): "OpenBLAS 0.3.21 ... [SkylakeX], 1 thread(s)".
std::string core_from(const std::string& info) {
  auto open = info.rfind('[');
  auto close = info.rfind(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  return info.substr(open + 1, close - open - 1);
}

/// The BLAS the run used and what the environment asked for.
struct Environment {
  std::string blas, coretype_env, threads_env, coretype_used;
};

/// The min/median table of the timed workloads.
void print_results(const std::vector<std::pair<std::string, Result>>& results, const std::string& blas, int repeats) {
  fmt::print("\ntapegrad, {}, min/median of {} repeat(s)\n", blas, repeats);
  fmt::print("{:<14} {:<9} {:>10} {:>10} {:>9} {:>11}\n", "workload", "unit", "min", "median", "s/epoch",
             "final loss");
  for (const auto& [key, r] : results) {
    const Workload& wl = workload(key);
    double mn = min_of(r.times), md = median(r.times);
    bool us = r.unit == "us/step";
    double spe = us ? mn * 60000 / 1e6 : mn;
    fmt::print("{:<14} {:<9} {:>10} {:>10} {:>9.2f} {:>11.4f}\n", key + " " + wl.name, r.unit,
               us ? fmt::format("{:.1f}", mn) : fmt::format("{:.3f}", mn),
               us ? fmt::format("{:.1f}", md) : fmt::format("{:.3f}", md), spe, r.final_loss);
  }
}

/// The results and the run's metadata as JSON in args.json; false (and a message) if it cannot be written.
bool write_json(const Args& args, const std::vector<std::pair<std::string, Result>>& results, const Environment& env,
                double rss) {
  utsname uts{};
  uname(&uts);
  std::string out = "{\n";
  for (const auto& [key, r] : results) out += fmt::format("  {}: {},\n", json_string(key), json_result(r));
  std::vector<std::pair<std::string, std::string>> meta = {
      {"tapegrad", json_string("train_bench")},
      {"compiler", json_string(std::string("g++ ") + __VERSION__)},
#ifdef NDEBUG
      {"build_type", json_string("Release")},
#else
      {"build_type", json_string("Debug")},
#endif
      {"threads", std::to_string(args.threads)},
      {"repeats", std::to_string(args.repeats)},
      {"epochs", std::to_string(args.epochs)},
      {"data", json_string(args.data)},
      {"machine", json_string(uts.machine)},
      {"cpu_count", std::to_string(std::thread::hardware_concurrency())},
      {"blas_info", json_string(env.blas)},
      {"openblas_core", json_string(core_from(env.blas))},
      {"openblas_threads", std::to_string(ag::blas_threads())},
      {"openblas_coretype_env", env.coretype_env.empty() ? "null" : json_string(env.coretype_env)},
      {"openblas_coretype_used", env.coretype_used.empty() ? "null" : json_string(env.coretype_used)},
      {"openblas_num_threads_env", env.threads_env.empty() ? "null" : json_string(env.threads_env)},
      {"batching", json_string(args.preshuffle ? "preshuffled-slices" : "gather")},
      {"w3_steps", std::to_string(args.w3_steps)},
      {"w3_warmup", std::to_string(args.w3_warmup)},
      {"mode", json_string(args.breakdown ? "timing+breakdown" : "timing")},
      {"peak_rss_mb", json_number(rss)},
  };
  out += "  \"meta\": {\n";
  for (std::size_t i = 0; i < meta.size(); ++i) {
    out += fmt::format("    {}: {}{}\n", json_string(meta[i].first), meta[i].second, i + 1 < meta.size() ? "," : "");
  }
  out += "  }\n}\n";
  std::filesystem::path json_path(args.json);
  if (json_path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(json_path.parent_path(), ec);
  }
  std::ofstream file(json_path);
  if (!file) {
    std::fprintf(stderr, "error: cannot write %s: %s\n", args.json.c_str(), std::strerror(errno));
    return false;
  }
  file << out;
  fmt::print("wrote {}\n", args.json);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);

  // What the environment asked for, before the library fills in its own OPENBLAS_CORETYPE.
  const char* env_core = std::getenv("OPENBLAS_CORETYPE");
  const std::string coretype_env = env_core ? env_core : "";
  const char* env_threads = std::getenv("OPENBLAS_NUM_THREADS");
  const std::string threads_env = env_threads ? env_threads : "";
  // Size the OpenBLAS thread pool at load time (unless the caller set it), then ask for --threads.
  setenv("OPENBLAS_NUM_THREADS", std::to_string(args.threads).c_str(), /*overwrite=*/0);
  std::string blas;
  try {
    ag::set_blas_threads(args.threads);
    blas = ag::blas_info();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  const char* used_core_env = std::getenv("OPENBLAS_CORETYPE");

  auto t0 = Clock::now();
  data::Dataset train;
  try {
    train = data::load_mnist(args.data, data::Split::train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  if (train.size() != 60000 || train.features() != 784) {
    std::fprintf(stderr, "error: expected 60000 x 784 MNIST training images, got %zu x %zu\n", train.size(),
                 train.features());
    return 2;
  }
  fmt::print("tapegrad, g++ {}, {} BLAS thread(s), {}{}\n", __VERSION__, ag::blas_threads(), blas,
             used_core_env ? fmt::format(" (OPENBLAS_CORETYPE={}{})", used_core_env,
                                         coretype_env.empty() ? ", chosen by the library" : "")
                           : "");
  fmt::print("MNIST from {} loaded in {:.2f} s; batches {} in the timed loop\n", args.data, seconds_since(t0),
             args.preshuffle ? "pre-shuffled, copied in order" : "gathered through a permutation");
  std::fflush(stdout);

  std::vector<std::pair<std::string, Result>> results;
  for (const std::string& key : args.workloads) {
    const Workload& wl = workload(key);
    fmt::print("{} {}: {}\n", wl.key, wl.name, wl.desc);
    std::fflush(stdout);
    try {
      results.emplace_back(key, key == "w3" ? run_w3(wl, train, args) : run_epoch_workload(wl, train, args));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error in %s: %s\n", key.c_str(), e.what());
      return 1;
    }
  }

  print_results(results, blas, args.repeats);
  double rss = peak_rss_mb();
  fmt::print("peak RSS: {:.0f} MB\n", rss);
  if (!args.json.empty()) {
    Environment env{blas, coretype_env, threads_env, used_core_env ? used_core_env : ""};
    if (!write_json(args, results, env, rss)) return 1;
  }
  return 0;
}
