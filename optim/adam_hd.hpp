// Adam-HD: Adam whose learning rate follows hypergradient descent (Baydin et al. 2018, Algorithm 3).
// Per step, with g_t = ∇f(θ_{t-1}) and the Adam moments of adam.hpp:
//   α_t = α_{t-1} + β g_t · d_{t-1}          (d_0 = 0; global: summed over the group's tensors)
//   m_t, v_t, m̂_t, v̂_t as Adam;  d_t = m̂_t / (sqrt(v̂_t) + ε)
//   θ_t = θ_{t-1} - α_t d_t
// See hypergradient.hpp for the scope of α (global or per tensor), the state and weight decay.
#pragma once

#include "optim/hypergradient.hpp"

namespace optim {

struct AdamHDOptions {
  double lr = 1e-3;  // α_0
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  Eps eps_placement = Eps::outside_sqrt;
  double hyper_lr = 1e-7;  // β (the paper's value for Adam-HD)
  HyperScope scope = HyperScope::global;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
    c.positive("eps", eps);
    c.non_negative("hyper_lr", hyper_lr);
  }
};

class AdamHD : public HypergradientOptimizer<AdamHDOptions> {
 public:
  explicit AdamHD(std::vector<nn::NamedTensor> params, const AdamHDOptions& options = {});
  AdamHD(std::vector<ParamGroup<AdamHDOptions>> groups, const AdamHDOptions& defaults = {});

 protected:
  void apply(const Work& item, ParamState& state, double alpha, const AdamHDOptions& o) override;
  std::vector<std::string> more_tensor_state() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::vector<std::string> more_scalar_state() const override { return {"step"}; }
};

}  // namespace optim
