// ASGD (torch.optim.ASGD; Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging"):
// SGD with a slowly decaying step, and the average of its iterates as the evaluation point. Step t = 1, 2, ...
// uses the η and μ left by step t - 1 (η_0 = lr, μ_0 = 1):
//   w  <- (1 - λ η_{t-1}) w - η_{t-1} g
//   ax <- w                             if μ_{t-1} = 1
//   ax <- ax + μ_{t-1} (w - ax)         otherwise
//   η_t = lr / (1 + λ lr t)^α,   μ_t = 1 / max(1, t - t0)
// μ_{t-1} = 1 up to step t0 + 2, so ax is the mean of the iterates w_{t0+2}, ..., w_t (and w itself before).
// eval() puts ax into the parameters, train() puts w back (optimizer.hpp). With torch's default t0 = 1e6, ax
// equals w for the first million steps and eval() changes nothing until then: set t0 (in steps; one epoch's
// steps, say) to start the averaging. λ (lambd) also shrinks w at every step, a weight decay of its own.
// This is torch's single-tensor update (its path on CPU); torch's foreach path writes η_t = lr / (1 + λ lr t^α)
// and never copies. Defaults and option names are torch's: lr = 1e-2, lambd = 1e-4, alpha = 0.75, t0 = 1e6,
// weight_decay = 0. Weight decay: coupled g <- g + wd w (L2, torch's form; the default), or decoupled=true:
// w <- (1 - lr wd)(1 - λ η) w - η g. State per parameter: ax, and the scalars step, eta, mu (torch's names;
// float64 here).
#pragma once

#include <optional>

#include "optim/optimizer.hpp"

namespace optim {

struct ASGDOptions {
  double lr = 1e-2;
  double lambd = 1e-4;
  double alpha = 0.75;
  double t0 = 1e6;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.non_negative("lambd", lambd);
    c.non_negative("alpha", alpha);
    c.non_negative("t0", t0);
  }
};

class ASGD : public OptimizerWith<ASGDOptions> {
 public:
  explicit ASGD(std::vector<nn::NamedTensor> params, const ASGDOptions& options = {});
  ASGD(std::vector<ParamGroup<ASGDOptions>> groups, const ASGDOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"ax"}; }
  std::vector<std::string> scalar_state_names() const override { return {"step", "eta", "mu"}; }
  /// η_0 = lr, μ_0 = 1.
  void init_state(ParamState& state, const Param& param) override;
  std::optional<std::size_t> eval_state() const override { return 0; }
};

}  // namespace optim
