// The cost of per-sample gradients (analysis/per_sample.hpp) against a plain backward, on the first `batch`
// MNIST training images and the 784-128-64-10 MLP (float32, one thread):
//   plain      forward, cross-entropy, backward into the parameters' .grad (zeroed first): a training step's
//              gradient
//   all        per_sample_gradients: every sample's gradient, (B, P) floats
//   norms      per_sample_sq_norms: the squared norms and the batch gradient only
//   forward    the forward and the loss alone, not recorded: a lower bound of the sweep both of them run
//   write      the floor of `all` with ordinary stores: writing B x P floats (each the product of two floats,
//              as a rank-one update writes them) into a buffer that is already mapped
//   memset     the floor with the C library's best stores (non-temporal for a block this size): zeroing B x P
//              floats
// Prints milliseconds per call (the best thread CPU time of the runs, robust on a shared machine, and the
// median wall time in parentheses) and each one's ratio to plain.
// Usage: per_sample_bench [repetitions=30] [batch=128]   (MNIST from $TAPEGRAD_MNIST_DIR or data/mnist)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <span>
#include <vector>

#include "analysis/per_sample.hpp"
#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "bench/timing.hpp"
#include "data/dataset.hpp"
#include "nn/layers.hpp"

namespace {

using bench::Timing;

/// Milliseconds.
Timing time_ms(int repetitions, const std::function<void()>& call) {
  const Timing us = bench::time_us(repetitions, call);
  return {us.cpu * 1e-3, us.wall * 1e-3};
}

}  // namespace

int main(int argc, char** argv) {
  const int repetitions = argc > 1 ? std::atoi(argv[1]) : 30;
  const std::size_t batch = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 128;
  ag::set_blas_threads(1);
  const data::Dataset train = data::load_mnist(data::default_mnist_dir(), data::Split::train);
  std::vector<float> pixels(train.images.begin(), train.images.begin() + static_cast<std::ptrdiff_t>(batch * 784));
  const ag::Tensor x = ag::Tensor::from_data(ag::Shape{batch, 784}, std::span<const float>(pixels));
  const std::vector<std::int32_t> labels(train.labels.begin(), train.labels.begin() + static_cast<std::ptrdiff_t>(batch));
  ag::Generator gen(0);
  auto model = nn::make_mlp(784, {128, 64}, 10, nn::Init::default_uniform, &gen);
  std::size_t count = 0;
  for (const ag::Tensor& p : model->parameters()) count += p.numel();

  const Timing plain = time_ms(repetitions, [&] {
    for (ag::Tensor& p : model->parameters()) p.zero_grad();
    ag::backward(ag::cross_entropy((*model)(x), labels));
  });
  const Timing all = time_ms(repetitions, [&] { analysis::per_sample_gradients(*model, x, labels); });
  const Timing norms = time_ms(repetitions, [&] { analysis::per_sample_sq_norms(*model, x, labels); });
  std::vector<float> buffer(batch * count), a(batch * 784, 0.5f), d(count / 784 + 1, 0.25f);
  const Timing write = time_ms(repetitions, [&] {
    // Rank-one rows a[n, i] d[o] over the whole buffer: the stores of `all`, without its forward and sweep.
    const std::size_t width = d.size();
    for (std::size_t r = 0; r + width <= buffer.size(); r += width) {
      const float ai = a[r % a.size()];
      float* __restrict row = buffer.data() + r;
      for (std::size_t o = 0; o < width; ++o) row[o] = ai * d[o];
    }
  });
  const Timing forward = time_ms(repetitions, [&] {
    ag::NoGradGuard no_grad;
    ag::cross_entropy((*model)(x), labels);
  });
  const Timing zero = time_ms(repetitions, [&] { std::memset(buffer.data(), 0, buffer.size() * sizeof(float)); });
  std::printf("784-128-64-10 MLP, %zu parameters, batch %zu, float32, %s\n", count, batch, ag::blas_info().c_str());
  std::printf("per-sample gradients: %.1f MB\n", double(batch * count) * 4 / 1e6);
  for (const auto& [name, t] : {std::pair{"plain", plain}, {"all", all}, {"norms", norms}, {"forward", forward}, {"write", write}, {"memset", zero}}) {
    std::printf("%-7s %7.2f ms (%7.2f ms wall)  %.2fx plain\n", name, t.cpu, t.wall, t.cpu / plain.cpu);
  }
}
