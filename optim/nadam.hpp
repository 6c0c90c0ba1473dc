// Nadam (Dozat 2016: Nesterov momentum in Adam), the form of 000 §4.7:
//   m <- β1 m + (1 - β1) g,   v <- β2 v + (1 - β2) g^2
//   m̂ = m / (1 - β1^t),       v̂ = v / (1 - β2^t)
//   w <- w - lr / (sqrt(v̂) + ε) * (β1 m̂ + (1 - β1) g / (1 - β1^t))
// i.e. Dozat's update with a constant momentum β1 (no μ_t warm-up schedule, unlike PyTorch's NAdam, whose
// momentum_decay schedule and Π μ bias correction give different numbers), bias-corrected by 1 - β1^t in
// both terms as 000 writes it. (000's printed formula shows "+ (β1 m̂ + ...)"; the step is the product.)
// Options, ε placement and weight decay as Adam (adam.hpp).
#pragma once

#include "optim/adam.hpp"
#include "optim/adam_family.hpp"

namespace optim {

using NadamOptions = AdamOptions;

class Nadam : public AdamFamily<NadamOptions> {
 public:
  explicit Nadam(std::vector<nn::NamedTensor> params, const NadamOptions& options = {});
  Nadam(std::vector<ParamGroup<NadamOptions>> groups, const NadamOptions& defaults = {});
};

}  // namespace optim
