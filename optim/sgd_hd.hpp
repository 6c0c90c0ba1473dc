// SGD-HD: gradient descent whose learning rate follows hypergradient descent (Baydin et al. 2018,
// Algorithm 1; 000 §4.9). Per step, with g_t = ∇f(θ_{t-1}):
//   α_t = α_{t-1} + β g_t · g_{t-1}          (g_0 = 0; global: summed over the group's tensors)
//   θ_t = θ_{t-1} - α_t g_t
// See hypergradient.hpp for the scope of α (global or per tensor), the state and weight decay.
#pragma once

#include "optim/hypergradient.hpp"

namespace optim {

struct SGDHDOptions {
  double lr = 0.01;  // α_0
  double hyper_lr = 1e-3;  // β (the paper's value for SGD-HD)
  HyperScope scope = HyperScope::global;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.non_negative("hyper_lr", hyper_lr);
  }
};

class SGDHD : public HypergradientOptimizer<SGDHDOptions> {
 public:
  explicit SGDHD(std::vector<nn::NamedTensor> params, const SGDHDOptions& options = {});
  SGDHD(std::vector<ParamGroup<SGDHDOptions>> groups, const SGDHDOptions& defaults = {});

 protected:
  void apply(const Work& item, ParamState& state, double alpha, const SGDHDOptions& o) override;
};

}  // namespace optim
