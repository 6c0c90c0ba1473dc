// The cost of a tape node: a chain of N tiny ops (tanh of a one-element tensor) recorded and backwarded, in
// nanoseconds per op, against the same chain not recorded. bench/tape_chain_libtorch.cpp is the same chain
// in libtorch (scripts/bench.sh runs both).
//
//   build/bench/tape_chain [N=1000] [runs=300]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "bench/timing.hpp"

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 300;
  if (n < 1 || runs < 1) {
    std::fprintf(stderr, "usage: tape_chain [N >= 1] [runs >= 1]\n");
    return 2;
  }
  ag::Tensor x = ag::Tensor::full({1}, 0.5);
  x.set_requires_grad();
  auto chain = [&] {
    ag::Tensor y = x;
    for (int i = 0; i < n; ++i) y = ag::tanh(y);
    return y;
  };
  const bench::Timing plain = bench::time_us(runs, [&] {
    ag::NoGradGuard no_grad;
    chain();
  });
  const bench::Timing recorded = bench::time_us(runs, [&] {
    chain();
    ag::release_tape();
  });
  const bench::Timing both = bench::time_us(runs, [&] {
    x.zero_grad();
    ag::backward(chain());
  });
  const double per_op = 1e3 / n;
  std::printf("tapegrad tape chain: %d x tanh of one float, best CPU time of %d runs, ns per op: "
              "not recorded %.0f, recorded %.0f, recorded + backward %.0f\n",
              n, runs, plain.cpu * per_op, recorded.cpu * per_op, both.cpu * per_op);
  return 0;
}
