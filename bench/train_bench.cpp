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
// Before each W1 repeat it also times the sgemm calls of a W1 step on their own (the GEMM floor, see
// bench/README.md) and reports the epoch's time against their sum.
//
// The JSON (--json FILE) has the PyTorch script's keys and units, so the sides compare key by key
// (bench/common.hpp, shared with the libtorch side).

#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "bench/common.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "optim/adam.hpp"
#include "optim/sgd.hpp"

namespace {

constexpr std::uint64_t kSeed = 0;
constexpr std::size_t kWarmupSteps = 20;
const std::vector<std::size_t> kW1Sizes = {784, 128, 64, 10};
const std::vector<std::size_t> kW3Sizes = {784, 300, 100, 100, 10};

// ------------------------------------------------------------------------------------------- options

using bench::Args;
using bench::median;
using bench::min_of;
using bench::Result;

const std::string kHelp = std::string(
    "usage: train_bench [options]\n"
    "tapegrad timings of the MNIST training workloads W1-W4 (see bench/README.md)\n") + bench::kCommonHelp +
    "  --no-gemm-floor   skip the floors: W1's sgemm floor (the machine's sgemm rate on W1's GEMM\n"
    "                    shapes, timed before each W1 repeat) and W3's step floor (after W3)\n"
    "  --breakdown       also time each phase of the step (gather, forward, loss, zero_grad, backward,\n"
    "                    step, item) and print us/step per phase (adds a clock read per phase)\n";

Args parse_args(int argc, char** argv) {
  Args args = bench::parse_args(argc, argv, "train_bench", kHelp, [](const std::string& arg, Args& a) {
    if (arg == "--breakdown") {
      a.breakdown = true;
    } else if (arg == "--no-gemm-floor") {
      a.gemm_floor = false;
    } else {
      return false;
    }
    return true;
  });
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
  double sgd_lr = 0.0;  // the SGD workloads' rate (also run with in_backward=true); 0 for the others
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

std::function<std::unique_ptr<optim::Optimizer>(nn::Module&)> sgd(double lr, bool in_backward = false) {
  return [lr, in_backward](nn::Module& m) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::SGD>(m.named_parameters(), optim::SGDOptions{.lr = lr, .in_backward = in_backward});
  };
}

/// An MLP trained by SGD at `lr` (W3, W4), which is also run with the update inside backward.
Workload sgd_workload(std::string key, std::string name, std::string desc, std::size_t batch, double lr) {
  return {std::move(key), std::move(name), std::move(desc), batch, false, mlp({300, 100, 100}), sgd(lr), lr};
}

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> all = {
      {"w1", "mlp", "MLP 784-128-64-10, batch 200, Adam 1e-3", 200, false, mlp({128, 64}), adam(1e-3)},
      {"w2", "cnn", "CNN 2x(conv3x3 8ch+pool) FC128, batch 200, Adam 1e-3", 200, true, cnn, adam(1e-3)},
      sgd_workload("w3", "online", "MLP 784-300-100-100-10, batch 1, SGD 0.01", 1, 0.01),
      sgd_workload("w4", "mlp5-b10", "MLP 784-300-100-100-10, batch 10, SGD 0.1", 10, 0.1),
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

/// The least time of `timed` calls of `call`, each timed alone (on a shared machine the least is a call nobody
/// interrupted), after `warmups` untimed ones.
template <class Call>
double least_seconds(int warmups, int timed, Call&& call) {
  for (int i = 0; i < warmups; ++i) call();
  double best = 1e300;
  for (int i = 0; i < timed; ++i) {
    auto t0 = Clock::now();
    call();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

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

// ------------------------------------------------------------------------------------------- GEMM floor

/// One sgemm of a training step, as tapegrad calls it (row-major, transpose flags).
struct GemmCall {
  const char* what;
  bool transpose_a, transpose_b;
  std::size_t m, n, k;
  float beta;
  double flop() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
};

/// The sgemm calls of one step of an MLP over `sizes` at batch `b`, as ag::linear makes them: forward
/// X[b x in] W[in x out] (beta 1 onto the bias), backward dW = X^T g and dX = g W^T (none for the first
/// layer's input, which needs no gradient).
std::vector<GemmCall> mlp_gemms(const std::vector<std::size_t>& sizes, std::size_t b) {
  std::vector<GemmCall> calls;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) calls.push_back({"forward", false, false, b, sizes[l + 1], sizes[l], 1.0F});
  for (std::size_t l = sizes.size() - 1; l-- > 0;) {
    calls.push_back({"dW", true, false, sizes[l], sizes[l + 1], b, 0.0F});
    if (l > 0) calls.push_back({"dX", false, true, b, sizes[l], sizes[l + 1], 0.0F});
  }
  return calls;
}

struct GemmFloor {
  double seconds_per_step = 0.0, flop_per_step = 0.0;
  std::vector<std::pair<GemmCall, double>> per_call;  // seconds per call
};

/// The machine's sgemm rate on the exact GEMMs of a step: each call timed on its own, back to back on
/// the same operands (warm caches), the least time over many calls of it (single calls, each one clock read
/// apart, so that on a shared machine the least is a call nobody interrupted); their sum is the least time
/// a step can take in GEMMs, whatever the framework does around them.
GemmFloor gemm_floor(const std::vector<GemmCall>& calls) {
  GemmFloor floor;
  ag::Generator gen(kSeed);
  for (const GemmCall& c : calls) {
    std::vector<float> a(c.m * c.k), b(c.k * c.n), out(c.m * c.n);
    for (float& v : a) v = static_cast<float>(gen.uniform01() - 0.5);
    for (float& v : b) v = static_cast<float>(gen.uniform01() - 0.5);
    const std::size_t lda = c.transpose_a ? c.m : c.k, ldb = c.transpose_b ? c.k : c.n;
    auto run = [&] {
      ag::detail::gemm(c.transpose_a, c.transpose_b, c.m, c.n, c.k, 1.0F, a.data(), lda, b.data(), ldb, c.beta,
                       out.data(), c.n);
    };
    // About 30 ms of calls at ~100 GFLOP/s, and at least 50.
    const double best = least_seconds(5, std::max(50, static_cast<int>(3e-2 * 1e11 / c.flop())), run);
    floor.per_call.emplace_back(c, best);
    floor.seconds_per_step += best;
    floor.flop_per_step += c.flop();
  }
  return floor;
}

void print_floor(const GemmFloor& floor, std::size_t steps) {
  fmt::print("  sgemm floor of a step ({} calls):", floor.per_call.size());
  for (const auto& [c, sec] : floor.per_call) {
    fmt::print(" {} {}x{}x{}{}{} {:.0f}", c.what, c.m, c.n, c.k, c.transpose_a ? " A^T" : "", c.transpose_b ? " B^T" : "",
               c.flop() / sec * 1e-9);
  }
  fmt::print(" GFLOP/s\n  = {:.1f} us/step, {:.3f} s/epoch at {:.1f} GFLOP/s ({:.1f} GFLOP per epoch)\n",
             floor.seconds_per_step * 1e6, floor.seconds_per_step * static_cast<double>(steps),
             floor.flop_per_step / floor.seconds_per_step * 1e-9, floor.flop_per_step * static_cast<double>(steps) * 1e-9);
  std::fflush(stdout);
}

// ------------------------------------------------------------------------------------------- W3's step floor

/// The least a batch-1 SGD step of an MLP over `sizes` must do, with no framework around it: the forward
/// products x W, the input gradients dz W^T (none for the first layer) and the weight update fused with the
/// weight gradient, W += -lr x^T dz (one read and one write of each W, no dW). Run through the library's
/// products, layer after layer as a step goes (the weights, 1.11 MB for W3, are just over a core's L2), the
/// least time over many steps; `bytes` is what the weights alone make it move: each W read twice, written once.
struct StepFloor {
  double seconds = 0.0, bytes = 0.0;
};

StepFloor step_floor(const std::vector<std::size_t>& sizes) {
  const std::size_t layers = sizes.size() - 1;
  ag::Generator gen(kSeed);
  auto random = [&](std::size_t count, double scale) {
    std::vector<float> v(count);
    for (float& x : v) x = static_cast<float>(scale * (gen.uniform01() - 0.5));
    return v;
  };
  std::vector<std::vector<float>> w(layers), act(layers + 1), grad(layers + 1);
  StepFloor floor;
  for (std::size_t l = 0; l <= layers; ++l) {
    act[l] = random(sizes[l], 1.0);
    grad[l] = random(sizes[l], 1.0);
    if (l < layers) {
      w[l] = random(sizes[l] * sizes[l + 1], 0.1);
      floor.bytes += 3.0 * sizeof(float) * static_cast<double>(w[l].size());
    }
  }
  auto step = [&] {
    for (std::size_t l = 0; l < layers; ++l) {
      ag::detail::gemm(false, false, 1, sizes[l + 1], sizes[l], 1.0F, act[l].data(), sizes[l], w[l].data(), sizes[l + 1],
                       0.0F, act[l + 1].data(), sizes[l + 1]);
    }
    for (std::size_t l = layers; l-- > 0;) {
      if (l > 0) {
        ag::detail::gemm(false, true, 1, sizes[l], sizes[l + 1], 1.0F, grad[l + 1].data(), sizes[l + 1], w[l].data(),
                         sizes[l + 1], 0.0F, grad[l].data(), sizes[l]);
      }
      ag::detail::gemm(true, false, sizes[l], sizes[l + 1], 1, -1e-7F, act[l].data(), sizes[l], grad[l + 1].data(),
                       sizes[l + 1], 1.0F, w[l].data(), sizes[l + 1]);
    }
  };
  floor.seconds = least_seconds(200, 3000, step);
  return floor;
}

/// The same bytes over the machine's measured bandwidth, with no arithmetic: over buffers the size of each
/// weight matrix (as the step has them), two read-only passes (the forward product and the input gradient
/// read W) and one read-modify-write pass (the fused update), layer after layer; the least time over many
/// passes. Integer xor keeps the read pass vectorised (a float sum would not be, without reassociation).
struct BandwidthFloor {
  double seconds = 0.0, read_gbs = 0.0, update_gbs = 0.0;
};

BandwidthFloor bandwidth_floor(const std::vector<std::size_t>& sizes) {
  std::vector<std::vector<std::uint32_t>> w;
  double bytes = 0.0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    w.emplace_back(sizes[l] * sizes[l + 1], 0x3f800000u + static_cast<std::uint32_t>(l));
    bytes += 4.0 * static_cast<double>(w.back().size());
  }
  volatile std::uint32_t sink = 0, add = 1;  // keep the passes from being folded away
  auto read = [&] {
    std::uint32_t acc = 0;
    for (const auto& m : w) {
      for (std::uint32_t x : m) acc ^= x;
    }
    sink = sink ^ acc;
  };
  auto update = [&] {
    const std::uint32_t a = add;
    for (auto& m : w) {
      for (std::uint32_t& x : m) x += a;
      sink = sink ^ m.back();  // the stores are read, so they stay
    }
  };
  const double t_read = least_seconds(200, 3000, read), t_update = least_seconds(200, 3000, update);
  return {2.0 * t_read + t_update, bytes / t_read * 1e-9, 2.0 * bytes / t_update * 1e-9};
}

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
  // W1's GEMM floor, measured before each repeat (the least of them is kept, as the least epoch time is).
  const bool floor = wl.key == "w1" && args.gemm_floor;
  const std::vector<GemmCall> gemms = floor ? mlp_gemms(kW1Sizes, wl.batch) : std::vector<GemmCall>{};
  for (int rep = 0; rep < args.repeats; ++rep) {
    if (floor) {
      GemmFloor f = gemm_floor(gemms);
      if (r.floor_seconds == 0.0 || f.seconds_per_step * static_cast<double>(steps) < r.floor_seconds) {
        r.floor_seconds = f.seconds_per_step * static_cast<double>(steps);
        r.floor_gflop = f.flop_per_step * static_cast<double>(steps) * 1e-9;
      }
      print_floor(f, steps);
    }
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
    bench::add_epoch_repeat(r, wl.key, elapsed / args.epochs, rep, args.repeats);
  }
  if (bd) print_breakdown(wl.key, breakdown);
  if (floor) {
    fmt::print("  {} sgemm floor {:.3f} s/epoch ({:.1f} GFLOP/s): the best epoch is at {:.0f}% of it\n", wl.key,
               r.floor_seconds, r.floor_gflop / r.floor_seconds, 100.0 * r.floor_seconds / min_of(r.times));
  }
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
    bench::add_w3_repeat(r, seconds_since(t0), total, rep, args.repeats);
  }
  if (bd) print_breakdown("w3", breakdown);
  if (args.gemm_floor) {
    StepFloor f = step_floor(kW3Sizes);
    r.floor_seconds = f.seconds;
    r.floor_bytes = f.bytes;
    fmt::print("  w3 step floor {:.1f} us/step (forward, input gradients and the update fused with the weight gradient, "
               "{:.2f} MB of weights moved: {:.0f} GB/s): the best step is at {:.0f}% of it\n",
               f.seconds * 1e6, f.bytes * 1e-6, f.bytes / f.seconds * 1e-9, 100.0 * f.seconds * 1e6 / min_of(r.times));
    BandwidthFloor b = bandwidth_floor(kW3Sizes);
    r.bandwidth_floor_seconds = b.seconds;
    fmt::print("  w3 bandwidth floor {:.1f} us/step (the same bytes, no arithmetic: read {:.0f} GB/s, read-write {:.0f} "
               "GB/s measured on the weights' buffers): the step floor's kernels reach {:.0f}% of it, the best step {:.0f}%\n",
               b.seconds * 1e6, b.read_gbs, b.update_gbs, 100.0 * b.seconds / f.seconds,
               100.0 * b.seconds * 1e6 / min_of(r.times));
  }
  return r;
}

Result run_workload(const Workload& wl, const data::Dataset& train, const Args& args) {
  return wl.key == "w3" ? run_w3(wl, train, args) : run_epoch_workload(wl, train, args);
}

/// The workload as the references run it, then, for the SGD workloads, the same loop with the update inside
/// backward (sgd(in_backward=true), autograd/in_backward.hpp): what a C++ user of small-batch SGD asks for.
/// The headline figure stays the plain loop's.
Result run_with_in_backward(const Workload& wl, const data::Dataset& train, const Args& args) {
  Result r = run_workload(wl, train, args);
  if (wl.sgd_lr == 0.0) return r;
  Workload fused = wl;
  fused.optimizer = sgd(wl.sgd_lr, /*in_backward=*/true);
  fmt::print("  {} with sgd(lr={},in_backward=true):\n", wl.key, wl.sgd_lr);
  Args quiet = args;
  quiet.gemm_floor = false;
  r.in_backward_min = min_of(run_workload(fused, train, quiet).times);
  fmt::print("  {} in_backward {:.4g} {} against {:.4g} plain{}\n", wl.key, r.in_backward_min, r.unit, min_of(r.times),
             r.per_step() && r.floor_seconds > 0.0
                 ? fmt::format(", at {:.0f}% of the step floor", 100.0 * r.floor_seconds * 1e6 / r.in_backward_min)
                 : "");
  return r;
}

// ------------------------------------------------------------------------------------------- reporting

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

/// The run's metadata for the JSON.
bench::JsonFields meta(const Args& args, const Environment& env, double rss) {
  using bench::json_string;
  utsname uts{};
  uname(&uts);
  return {
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
      {"peak_rss_mb", bench::json_number(rss)},
  };
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
      results.emplace_back(key, run_with_in_backward(wl, train, args));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error in %s: %s\n", key.c_str(), e.what());
      return 1;
    }
  }

  bench::print_results(fmt::format("tapegrad, {}, min/median of {} repeat(s)", blas, args.repeats), results,
                       [](const std::string& key) { return workload(key).name; });
  double rss = bench::peak_rss_mb();
  fmt::print("peak RSS: {:.0f} MB\n", rss);
  if (!args.json.empty()) {
    Environment env{blas, coretype_env, threads_env, used_core_env ? used_core_env : ""};
    if (!bench::write_json(args.json, results, meta(args, env, rss))) return 1;
  }
  return 0;
}
