// Micro-benchmark of conv2d and max_pool2d on the W2 shapes (MNIST CNN, batch 200, float32):
//   conv1 1->8 3x3 pad 1 on 28x28, pool 2, conv2 8->8 3x3 pad 1 on 14x14, pool 2.
// Prints microseconds per call of the forward alone and of forward + backward through the tape: the best
// thread CPU time of the runs (robust on a shared machine) and, in parentheses, the median wall time.
// Usage: conv_kernels [repetitions=50] [batch=200]
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "bench/timing.hpp"

using namespace ag;

namespace {

using bench::Timing;

}  // namespace

int main(int argc, char** argv) {
  int repetitions = argc > 1 ? std::atoi(argv[1]) : 50;
  std::size_t batch = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 200;
  set_blas_threads(1);
  Generator gen(1);
  Tensor x1 = Tensor::uniform(Shape{batch, 1, 28, 28}, gen, 0.0, 1.0);  // images: no gradient
  Tensor w1 = Tensor::randn(Shape{8, 1, 3, 3}, gen, 0.0, 0.3).set_requires_grad();
  Tensor b1 = Tensor::zeros(Shape{8}).set_requires_grad();
  Tensor x2 = Tensor::randn(Shape{batch, 8, 14, 14}, gen).set_requires_grad();  // an activation
  Tensor w2 = Tensor::randn(Shape{8, 8, 3, 3}, gen, 0.0, 0.1).set_requires_grad();
  Tensor b2 = Tensor::zeros(Shape{8}).set_requires_grad();
  Tensor p1 = Tensor::randn(Shape{batch, 8, 28, 28}, gen).set_requires_grad();
  Tensor p2 = Tensor::randn(Shape{batch, 8, 14, 14}, gen).set_requires_grad();
  Tensor g_conv1 = Tensor::randn(Shape{batch, 8, 28, 28}, gen);
  Tensor g_conv2 = Tensor::randn(Shape{batch, 8, 14, 14}, gen);
  Tensor g_pool1 = Tensor::randn(Shape{batch, 8, 14, 14}, gen);
  Tensor g_pool2 = Tensor::randn(Shape{batch, 8, 7, 7}, gen);

  struct Row {
    const char* name;
    std::function<Tensor()> forward;
    Tensor seed;
  };
  std::vector<Row> rows{
      {"conv1 1->8 3x3 p1 28x28", [&] { return conv2d(x1, w1, b1, 1, 1); }, g_conv1},
      {"pool1 2x2 on 8x28x28", [&] { return max_pool2d(p1, 2); }, g_pool1},
      {"conv2 8->8 3x3 p1 14x14", [&] { return conv2d(x2, w2, b2, 1, 1); }, g_conv2},
      {"pool2 2x2 on 8x14x14", [&] { return max_pool2d(p2, 2); }, g_pool2},
  };
  std::printf("batch %zu, float32, 1 BLAS thread, %d runs: microseconds per call,\n", batch, repetitions);
  std::printf("best thread CPU time (median wall time)\n");
  std::printf("%-26s %20s %20s %10s\n", "op", "forward", "fwd+bwd", "backward");
  Timing total_forward, total_step;
  for (const Row& row : rows) {
    Timing forward = bench::time_us(repetitions, [&] {
      NoGradGuard no_grad;
      row.forward();
    });
    Timing step = bench::time_us(repetitions, [&] {
      for (Tensor* t : {&w1, &b1, &x2, &w2, &b2, &p1, &p2}) t->zero_grad();  // as a training step does
      Tensor y = row.forward();
      backward(y, row.seed);
    });
    total_forward.cpu += forward.cpu;
    total_forward.wall += forward.wall;
    total_step.cpu += step.cpu;
    total_step.wall += step.wall;
    std::printf("%-26s %9.1f (%8.1f) %9.1f (%8.1f) %10.1f\n", row.name, forward.cpu, forward.wall, step.cpu, step.wall,
                step.cpu - forward.cpu);
  }
  std::printf("%-26s %9.1f (%8.1f) %9.1f (%8.1f) %10.1f\n", "total", total_forward.cpu, total_forward.wall,
              total_step.cpu, total_step.wall, total_step.cpu - total_forward.cpu);
  return 0;
}
