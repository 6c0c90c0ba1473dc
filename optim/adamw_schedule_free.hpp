// Schedule-free AdamW (Defazio et al. 2024, "The Road Less Scheduled", Algorithm 1; the reference
// implementation's AdamWScheduleFree, facebookresearch/schedule_free). The direction d of schedule_free.hpp
// is the gradient at y normalised by Adam's bias-corrected second moment, with the weight decay added at y:
//   v <- β2 v + (1 - β2) g^2,   v̂ = v / (1 - β2^t)                   (v starts at 0)
//   d = g / (sqrt(v̂) + ε) + λ y
//   z <- z - γ_t d,   x <- (1 - c) x + c z,   y <- (1 - β1) z + β1 x
// eval() puts x into the parameters, train() puts y back. Meant to run with a constant rate and no schedule
// (warmup_steps is its warmup); the reference advises rates 1-10x those of AdamW with a schedule. The bias
// correction divides v, as the reference has since its version 1.3; the paper's experiments (the reference's
// AdamWScheduleFreePaper) put sqrt(1 - β2^t) into γ_t, and so into lr_max and the average's weights. The
// reference's optional inner momentum (off by default) is not provided. Defaults are the reference's:
// lr = 0.0025, β1 = 0.9, β2 = 0.999, ε = 1e-8, weight_decay = 0, warmup_steps = 0, r = 0, weight_lr_power = 2.
// Weight decay: decoupled (the default, the reference's form above), or decoupled=false: coupled L2,
// g <- g + λ y before v and the normalisation. State per parameter: z, x, exp_avg_sq (v); step, lr_max,
// weight_sum.
#pragma once

#include <cstddef>

#include "optim/schedule_free.hpp"

namespace optim {

struct AdamWScheduleFreeOptions {
  double lr = 0.0025;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::decoupled;
  std::size_t warmup_steps = 0;
  double r = 0.0;
  double weight_lr_power = 2.0;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
    c.non_negative("r", r);
    c.non_negative("weight_lr_power", weight_lr_power);
  }
};

class AdamWScheduleFree : public ScheduleFree<AdamWScheduleFreeOptions> {
 public:
  explicit AdamWScheduleFree(std::vector<nn::NamedTensor> params, const AdamWScheduleFreeOptions& options = {});
  AdamWScheduleFree(std::vector<ParamGroup<AdamWScheduleFreeOptions>> groups,
                    const AdamWScheduleFreeOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"z", "x", "exp_avg_sq"}; }
};

}  // namespace optim
