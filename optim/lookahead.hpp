// Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back", Alg. 1):
// the inner optimiser takes k steps from the slow weights φ; then
//   φ <- φ + α (θ - φ),   θ <- φ
// (θ: the parameters, the fast weights). φ starts at the parameters' values when the wrapper is built.
// Defaults k = 5, α = 0.5 (the paper's). The inner optimiser's state runs on across synchronisations (the
// paper's default). Evaluation sees the parameters, which are φ right after every k-th step.
// State per parameter: "slow" (φ), created for every parameter at construction.
#pragma once

#include <cstddef>
#include <memory>

#include "optim/wrapper.hpp"

namespace optim {

struct LookaheadOptions {
  config::Spec inner{"adam", {}};
  std::size_t k = 5;
  double alpha = 0.5;
  void check(const OptionCheck& c) const {
    if (k < 1) c.fail("k", ">= 1", static_cast<double>(k));
    if (!(alpha > 0.0 && alpha <= 1.0)) c.fail("alpha", "in (0, 1]", alpha);
  }
};

class Lookahead : public Wrapper {
 public:
  Lookahead(std::unique_ptr<Optimizer> inner, const LookaheadOptions& options);

 protected:
  void after_step() override;
  std::vector<std::string> tensor_state_names() const override { return {"slow"}; }
  void init_state(ParamState& state, const Param& param) override;

 private:
  LookaheadOptions options_;
};

}  // namespace optim
