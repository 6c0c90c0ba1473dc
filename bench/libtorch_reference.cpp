// libtorch (PyTorch's C++ API) side of the W1-W4 MNIST training benchmarks: what a C++ user would write
// instead of tapegrad. The same workloads, data, initialisation, shuffles, protocol, flags and JSON as
// bench/pytorch_reference.py (the Python side) and bench/train_bench.cpp (the tapegrad side):
//
//   W1 mlp        784-128-64-10 ReLU, softmax-CE, batch 200, Adam lr 1e-3   -> seconds per epoch
//   W2 cnn        conv3x3(1->8,p1) ReLU maxpool2 -> conv3x3(8->8,p1) ReLU maxpool2
//                 -> flatten(392) -> FC 128 ReLU -> FC 10, batch 200, Adam lr 1e-3 -> seconds per epoch
//   W3 online     784-300-100-100-10 ReLU, batch 1, SGD lr 0.01             -> microseconds per step
//   W4 mlp5-b10   784-300-100-100-10 ReLU, batch 10, SGD lr 0.1             -> seconds per epoch
//
// As in the Python script: the training set is held as float32 (byte / 255) and int64 tensors before
// anything is timed; torch::manual_seed(0) before each model (libtorch's modules initialise as PyTorch's,
// from the same generator, so the initial weights are the Python side's); the shuffle of epoch e is
// torch::randperm(60000) from a CPU generator seeded with e (the Python side's permutation), made before the
// timer; inside the timed loop X.index({perm[i:i+B]}), forward, cross_entropy, zero_grad, backward, step
// and loss.item(). 20 untimed warm-up steps on a throw-away model per workload (W3: --w3-warmup steps on the
// same model, then --w3-steps timed). Minimum and median over --repeats.
//
// Built only with -DTAPEGRAD_BENCH_LIBTORCH=ON when CMake finds libtorch (Debian: libtorch-dev); it does
// not link tapegrad (flags, table and JSON: bench/common.hpp). scripts/bench.sh runs it beside the other two.

#include <dlfcn.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "bench/common.hpp"

namespace {

constexpr std::uint64_t kSeed = 0;
constexpr int kWarmupSteps = 20;
using bench::Args;
using bench::median;
using bench::min_of;
using bench::Result;

const std::string kHelp = std::string(
    "usage: libtorch_reference [options]\n"
    "libtorch timings of the MNIST training workloads W1-W4 (see bench/README.md)\n") + bench::kCommonHelp;

Args parse_args(int argc, char** argv) {
  Args args = bench::parse_args(argc, argv, "libtorch_reference", kHelp);
  if (args.data.empty()) {
    const char* env = std::getenv("TAPEGRAD_MNIST_DIR");
    args.data = env && *env ? env : "data/mnist";
  }
  return args;
}

// ------------------------------------------------------------------------------------------- data

/// The bytes of an IDX file, plain or gzip'd (zlib reads both), and its dimensions.
struct Idx {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> bytes;
};

std::string find_idx(const std::string& dir, const std::string& stem) {
  std::string dotted = stem;
  if (auto at = dotted.find("-idx"); at != std::string::npos) dotted[at] = '.';
  for (const std::string& name : {stem, dotted}) {
    for (const char* suffix : {"", ".gz"}) {
      std::string path = dir + "/" + name + suffix;
      if (std::ifstream(path).good()) return path;
    }
  }
  throw std::runtime_error("MNIST file '" + stem + "' (or .gz) not found in " + dir +
                           "; run scripts/fetch-mnist.sh or pass --data DIR");
}

Idx read_idx(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw std::runtime_error("cannot open " + path);
  std::vector<std::uint8_t> raw;
  std::uint8_t chunk[1 << 16];
  int got = 0;
  while ((got = gzread(file, chunk, sizeof chunk)) > 0) raw.insert(raw.end(), chunk, chunk + got);
  gzclose(file);
  if (got < 0 || raw.size() < 4 || raw[0] != 0 || raw[1] != 0 || raw[2] != 0x08) {
    throw std::runtime_error(path + ": not an IDX file of unsigned bytes");
  }
  Idx idx;
  std::size_t rank = raw[3], count = 1, at = 4;
  if (raw.size() < at + 4 * rank) throw std::runtime_error(path + ": truncated header");
  for (std::size_t d = 0; d < rank; ++d, at += 4) {
    std::int64_t n = (std::int64_t{raw[at]} << 24) | (raw[at + 1] << 16) | (raw[at + 2] << 8) | raw[at + 3];
    idx.dims.push_back(n);
    count *= static_cast<std::size_t>(n);
  }
  if (raw.size() - at != count) throw std::runtime_error(path + ": expected " + std::to_string(count) + " values");
  idx.bytes.assign(raw.begin() + static_cast<std::ptrdiff_t>(at), raw.end());
  return idx;
}

/// The training split as the Python side holds it: X float32 (60000, 784) = byte / 255, Y int64.
struct Mnist {
  torch::Tensor x, x_img, y;
};

Mnist load_train(const std::string& dir) {
  Idx images = read_idx(find_idx(dir, "train-images-idx3-ubyte"));
  Idx labels = read_idx(find_idx(dir, "train-labels-idx1-ubyte"));
  if (images.dims.size() != 3 || images.dims[0] != 60000 || images.dims[1] * images.dims[2] != 784 ||
      labels.dims.size() != 1 || labels.dims[0] != 60000) {
    throw std::runtime_error("expected 60000 x 28 x 28 MNIST training images and 60000 labels");
  }
  Mnist m;
  auto bytes = torch::from_blob(images.bytes.data(), {60000, 784}, torch::kUInt8);
  m.x = bytes.to(torch::kFloat32).div_(255.0F).contiguous();  // numpy: astype(float32) / float32(255)
  m.x_img = m.x.view({-1, 1, 28, 28});
  m.y = torch::from_blob(labels.bytes.data(), {60000}, torch::kUInt8).to(torch::kInt64);
  return m;
}

// ------------------------------------------------------------------------------------------- models

torch::nn::Sequential mlp(const std::vector<std::int64_t>& sizes) {
  torch::nn::Sequential net;
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    net->push_back(torch::nn::Linear(sizes[i], sizes[i + 1]));
    if (i + 2 < sizes.size()) net->push_back(torch::nn::ReLU());
  }
  return net;
}

struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(8 * 7 * 7, 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 10))) {}
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = torch::flatten(x, 1);
    return fc2->forward(torch::relu(fc1->forward(x)));
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Cnn);

/// A model behind one forward, with its optimiser.
struct Trainee {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
};

struct Workload {
  std::string key, name, desc;
  std::int64_t batch;
  bool image;
};

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> all = {
      {"w1", "mlp", "MLP 784-128-64-10, batch 200, Adam 1e-3", 200, false},
      {"w2", "cnn", "CNN 2x(conv3x3 8ch+pool) FC128, batch 200, Adam 1e-3", 200, true},
      {"w3", "online", "MLP 784-300-100-100-10, batch 1, SGD 0.01", 1, false},
      {"w4", "mlp5-b10", "MLP 784-300-100-100-10, batch 10, SGD 0.1", 10, false},
  };
  return all;
}

const Workload& workload(const std::string& key) {
  for (const Workload& w : workloads()) {
    if (w.key == key) return w;
  }
  throw std::logic_error("unknown workload " + key);
}

/// A fresh model from torch::manual_seed(0) (as the Python side's make()), and its optimiser.
Trainee make(const std::string& key) {
  torch::manual_seed(kSeed);
  Trainee t;
  auto adam = [](std::vector<torch::Tensor> p, double lr) {
    return std::make_unique<torch::optim::Adam>(std::move(p), torch::optim::AdamOptions(lr));
  };
  auto sgd = [](std::vector<torch::Tensor> p, double lr) {
    return std::make_unique<torch::optim::SGD>(std::move(p), torch::optim::SGDOptions(lr));
  };
  if (key == "w2") {
    Cnn net;
    t.module = net.ptr();
    t.forward = [net](const torch::Tensor& x) mutable { return net->forward(x); };
    t.optimizer = adam(net->parameters(), 1e-3);
  } else {
    torch::nn::Sequential net = key == "w1" ? mlp({784, 128, 64, 10}) : mlp({784, 300, 100, 100, 10});
    t.module = net.ptr();
    t.forward = [net](const torch::Tensor& x) mutable { return net->forward(x); };
    if (key == "w1") {
      t.optimizer = adam(net->parameters(), 1e-3);
    } else {
      t.optimizer = sgd(net->parameters(), key == "w3" ? 0.01 : 0.1);
    }
  }
  t.module->train();
  return t;
}

/// The permutation of epoch `epoch`: the Python side's torch.randperm(60000, generator seeded SEED + epoch).
torch::Tensor epoch_perm(std::int64_t n, int epoch) {
  at::Generator gen = at::detail::createCPUGenerator(kSeed + static_cast<std::uint64_t>(epoch));
  return torch::randperm(n, gen);
}

/// `nsteps` steps from batch index `start`: batches X[perm[i:i+B]], or X[i:i+B] when perm is undefined.
/// Returns the sum of the batch losses.
double train_steps(Trainee& t, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& perm,
                   std::int64_t batch, std::int64_t start, std::int64_t nsteps) {
  using torch::indexing::Slice;
  double total = 0.0;
  const std::int64_t n = x.size(0);
  std::int64_t i = start * batch;
  for (std::int64_t s = 0; s < nsteps; ++s) {
    torch::Tensor xb, yb;
    if (!perm.defined()) {
      xb = x.index({Slice(i, i + batch)});
      yb = y.index({Slice(i, i + batch)});
    } else {
      torch::Tensor idx = perm.index({Slice(i, i + batch)});
      xb = x.index({idx});
      yb = y.index({idx});
    }
    torch::Tensor loss = torch::nn::functional::cross_entropy(t.forward(xb), yb);
    t.optimizer->zero_grad();
    loss.backward();
    t.optimizer->step();
    total += loss.item<double>();
    i += batch;
    if (i >= n) i = 0;
  }
  return total;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Result run_epoch_workload(const Workload& wl, const Mnist& data, const Args& args) {
  const torch::Tensor& x = wl.image ? data.x_img : data.x;
  const torch::Tensor& y = data.y;
  const std::int64_t steps = (x.size(0) + wl.batch - 1) / wl.batch;
  {
    Trainee warm = make(wl.key);
    train_steps(warm, x, y, epoch_perm(x.size(0), 0), wl.batch, 0, kWarmupSteps);
  }
  Result r;
  r.unit = "s/epoch";
  r.batch = static_cast<std::size_t>(wl.batch);
  r.epochs = static_cast<std::size_t>(args.epochs);
  r.steps_per_epoch = static_cast<std::size_t>(steps);
  for (int rep = 0; rep < args.repeats; ++rep) {
    Trainee t = make(wl.key);
    double elapsed = 0.0;
    for (int e = 0; e < args.epochs; ++e) {
      torch::Tensor perm = epoch_perm(x.size(0), e);  // the shuffle: outside the timed region
      torch::Tensor xe = x, ye = y;
      if (args.preshuffle) {
        xe = x.index({perm});
        ye = y.index({perm});
        perm = torch::Tensor();
      }
      auto t0 = Clock::now();
      double total = train_steps(t, xe, ye, perm, wl.batch, 0, steps);
      elapsed += seconds_since(t0);
      r.final_loss = total / static_cast<double>(steps);
    }
    bench::add_epoch_repeat(r, wl.key, elapsed / args.epochs, rep, args.repeats);
  }
  return r;
}

Result run_w3(const Workload& wl, const Mnist& data, const Args& args) {
  Result r;
  r.unit = "us/step";
  r.batch = static_cast<std::size_t>(wl.batch);
  r.warmup_steps = static_cast<std::size_t>(args.w3_warmup);
  r.steps = static_cast<std::size_t>(args.w3_steps);
  for (int rep = 0; rep < args.repeats; ++rep) {
    Trainee t = make(wl.key);
    torch::Tensor perm = epoch_perm(data.x.size(0), 0), xe = data.x, ye = data.y;
    if (args.preshuffle) {
      xe = data.x.index({perm});
      ye = data.y.index({perm});
      perm = torch::Tensor();
    }
    train_steps(t, xe, ye, perm, wl.batch, 0, args.w3_warmup);  // untimed warm-up, same model
    auto t0 = Clock::now();
    double total = train_steps(t, xe, ye, perm, wl.batch, args.w3_warmup, args.w3_steps);
    bench::add_w3_repeat(r, seconds_since(t0), total, rep, args.repeats);
  }
  return r;
}

// ------------------------------------------------------------------------------------------- reporting

/// The OpenBLAS libtorch was loaded with (it links libblas.so.3): its core name and threads, if it is OpenBLAS.
struct Blas {
  std::string core;
  int threads = 0;
};

Blas openblas() {
  using CoreFn = char* (*)();
  using ThreadsFn = int (*)();
  auto core = reinterpret_cast<CoreFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  auto threads = reinterpret_cast<ThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  Blas b;
  if (core != nullptr) b.core = core();
  if (threads != nullptr) b.threads = threads();
  return b;
}

bool cpu_has(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) return (line + " ").find(" " + flag + " ") != std::string::npos;
  }
  return false;
}

/// OpenBLAS picks its kernels when libtorch loads it, before main: as the Python side, set
/// OPENBLAS_CORETYPE (SkylakeX on AVX-512, Haswell on AVX2+FMA) and OPENBLAS_NUM_THREADS if unset, and
/// start again with them.
void setup_blas_env(const Args& args, char** argv) {
  if (std::getenv("TAPEGRAD_BENCH_REEXEC") != nullptr) return;
  bool changed = false;
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    if (cpu_has("avx512f") && cpu_has("avx512bw") && cpu_has("avx512dq") && cpu_has("avx512vl")) {
      setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
      changed = true;
    } else if (cpu_has("avx2") && cpu_has("fma")) {
      setenv("OPENBLAS_CORETYPE", "Haswell", 1);
      changed = true;
    }
  }
  for (const char* name : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (std::getenv(name) == nullptr) {
      setenv(name, std::to_string(args.threads).c_str(), 1);
      changed = true;
    }
  }
  if (!changed) return;
  setenv("TAPEGRAD_BENCH_REEXEC", "1", 1);
  std::fflush(stdout);
  execv("/proc/self/exe", argv);
  std::perror("libtorch_reference: re-exec with the OpenBLAS settings");  // then go on without them
}

/// The run's metadata for the JSON.
bench::JsonFields meta(const Args& args, const Blas& blas, double rss) {
  using bench::json_string;
  utsname uts{};
  uname(&uts);
  const char* core_env = std::getenv("OPENBLAS_CORETYPE");
  return {
      {"torch", json_string(TORCH_VERSION)},
      {"libtorch", json_string(std::string("libtorch ") + TORCH_VERSION + " C++, g++ " + __VERSION__)},
      {"threads", std::to_string(at::get_num_threads())},
      {"repeats", std::to_string(args.repeats)},
      {"epochs", std::to_string(args.epochs)},
      {"data", json_string(args.data)},
      {"machine", json_string(uts.machine)},
      {"cpu_count", std::to_string(std::thread::hardware_concurrency())},
      {"openblas_core", blas.core.empty() ? "null" : json_string(blas.core)},
      {"openblas_threads", blas.core.empty() ? "null" : std::to_string(blas.threads)},
      {"openblas_coretype_env", core_env ? json_string(core_env) : "null"},
      {"batching", json_string(args.preshuffle ? "preshuffled-slices" : "gather")},
      {"w3_steps", std::to_string(args.w3_steps)},
      {"w3_warmup", std::to_string(args.w3_warmup)},
      {"mode", json_string("timing")},
      {"peak_rss_mb", bench::json_number(rss)},
  };
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  setup_blas_env(args, argv);
  at::set_num_threads(args.threads);
  try {
    at::set_num_interop_threads(1);
  } catch (const std::exception&) {
  }

  Blas blas = openblas();
  auto t0 = Clock::now();
  Mnist data;
  try {
    data = load_train(args.data);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  const char* core_env = std::getenv("OPENBLAS_CORETYPE");
  std::printf("libtorch %s C++, g++ %s, %d thread(s), %s%s\n", TORCH_VERSION, __VERSION__, at::get_num_threads(),
              blas.core.empty() ? "BLAS: not OpenBLAS"
                                : ("OpenBLAS core " + blas.core + ", " + std::to_string(blas.threads) +
                                   " BLAS thread(s)").c_str(),
              core_env ? (std::string(" (OPENBLAS_CORETYPE=") + core_env + ")").c_str() : "");
  std::printf("MNIST from %s loaded in %.2f s; batches %s in the timed loop\n", args.data.c_str(), seconds_since(t0),
              args.preshuffle ? "pre-shuffled, sliced" : "gathered through a permutation");
  std::fflush(stdout);

  std::vector<std::pair<std::string, Result>> results;
  for (const std::string& key : args.workloads) {
    const Workload& wl = workload(key);
    std::printf("%s %s: %s\n", wl.key.c_str(), wl.name.c_str(), wl.desc.c_str());
    std::fflush(stdout);
    try {
      results.emplace_back(key, key == "w3" ? run_w3(wl, data, args) : run_epoch_workload(wl, data, args));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error in %s: %s\n", key.c_str(), e.what());
      return 1;
    }
  }

  bench::print_results("libtorch " + std::string(TORCH_VERSION) + " C++, " + std::to_string(at::get_num_threads()) +
                           " thread(s), min/median of " + std::to_string(args.repeats) + " repeat(s)",
                       results, [](const std::string& key) { return workload(key).name; });
  const double rss = bench::peak_rss_mb();
  std::printf("peak RSS: %.0f MB\n", rss);
  if (!args.json.empty() && !bench::write_json(args.json, results, meta(args, blas, rss))) return 1;
  return 0;
}
