// Schedule-free SGD (Defazio et al. 2024, "The Road Less Scheduled", Algorithm 1 with a gradient step; the
// reference implementation's SGDScheduleFree, facebookresearch/schedule_free). The direction d of
// schedule_free.hpp is the gradient at y (the parameters' values during training):
//   g <- g + λ y                                   (weight decay at y, the reference's L2)
//   z <- z - γ_t g,   x <- (1 - c) x + c z,   y <- (1 - β) z + β x      (β: momentum)
// eval() puts x into the parameters, train() puts y back. Meant to run with a constant rate and no schedule
// (warmup_steps is its warmup); the reference advises rates 10-50x those of SGD with a schedule. Defaults are
// the reference's: lr = 1, momentum β = 0.9, weight_decay = 0, warmup_steps = 0, r = 0, weight_lr_power = 2.
// β = 0 (Polyak-Ruppert averaging: gradients at z) is allowed here, where the reference, which recovers x by
// dividing by β, refuses it. decoupled=true gives z <- z - γ_t (g + λ y) too: the two forms agree.
// State per parameter: z, x; step, lr_max, weight_sum.
#pragma once

#include <cstddef>

#include "optim/schedule_free.hpp"

namespace optim {

struct SGDScheduleFreeOptions {
  double lr = 1.0;
  double momentum = 0.9;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  std::size_t warmup_steps = 0;
  double r = 0.0;
  double weight_lr_power = 2.0;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("momentum", momentum);
    c.non_negative("r", r);
    c.non_negative("weight_lr_power", weight_lr_power);
  }
};

class SGDScheduleFree : public ScheduleFree<SGDScheduleFreeOptions> {
 public:
  explicit SGDScheduleFree(std::vector<nn::NamedTensor> params, const SGDScheduleFreeOptions& options = {});
  SGDScheduleFree(std::vector<ParamGroup<SGDScheduleFreeOptions>> groups, const SGDScheduleFreeOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"z", "x"}; }
};

}  // namespace optim
