// libtorch's side of bench/tape_chain.cpp: the same chain of N tanh of a one-element tensor, not recorded,
// recorded (then dropped) and recorded + backward, in nanoseconds per op.
//
//   build/libtorch-reference/bench/tape_chain_libtorch [N=1000] [runs=300]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

#include "bench/timing.hpp"

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 300;
  if (n < 1 || runs < 1) {
    std::fprintf(stderr, "usage: tape_chain_libtorch [N >= 1] [runs >= 1]\n");
    return 2;
  }
  at::set_num_threads(1);
  torch::Tensor x = torch::full({1}, 0.5, torch::TensorOptions().dtype(torch::kFloat32).requires_grad(true));
  auto chain = [&] {
    torch::Tensor y = x;
    for (int i = 0; i < n; ++i) y = torch::tanh(y);
    return y;
  };
  const bench::Timing plain = bench::time_us(runs, [&] {
    torch::NoGradGuard no_grad;
    chain();
  });
  const bench::Timing recorded = bench::time_us(runs, [&] { chain(); });
  const bench::Timing both = bench::time_us(runs, [&] {
    if (x.grad().defined()) x.grad().zero_();
    chain().backward();
  });
  const double per_op = 1e3 / n;
  std::printf("libtorch %s tape chain: %d x tanh of one float, best CPU time of %d runs, ns per op: "
              "not recorded %.0f, recorded %.0f, recorded + backward %.0f\n",
              TORCH_VERSION, n, runs, plain.cpu * per_op, recorded.cpu * per_op, both.cpu * per_op);
  return 0;
}
