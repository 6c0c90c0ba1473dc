// LARS (You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks", Algorithm 1):
// momentum SGD whose rate is scaled per parameter tensor by a local rate made of the norms of w and g:
//   local_lr = η ‖w‖ / (‖g‖ + λ ‖w‖ + ε)            (1 when ‖w‖ = 0 or ‖g‖ = 0; η = trust_coefficient)
//   v <- γ v + lr local_lr (g + λ w)                 (v starts at 0; γ = momentum)
//   w <- w - v
// with norms over the whole tensor. This is the paper's algorithm with the ε and the zero-norm rule of
// torchlars (kakaobrain) and NVIDIA apex's LARC (clip=False). Both wrap torch.optim.SGD, whose momentum
// b <- γ b + local_lr (g + λ w), w <- w - lr b is the same iteration while lr is constant (v = lr b).
// optax.lars differs in the denominator, ‖g + λ w‖ + ε with ε = 0 by default.
// ‖local_lr (g + λ w)‖ <= η ‖w‖: a step moves a tensor by at most lr η of its norm (before momentum),
// whatever the gradient's scale, hence rates far above SGD's.
// Defaults: η = 1e-3 (the paper's and torchlars'), ε = 1e-8 (torchlars'), γ = 0.9 (the paper's
// experiments), lr = 0.1 (the SGD rate of torchlars' documented example), λ = 0. With η = 1e-3 a step moves
// a tensor by at most 0.01 % of its norm at lr = 0.1: small problems want rates of 1 and more (the
// 784-128-64-10 MLP on MNIST trains best near lr = 3-5 in two epochs). Weight decay: coupled (the default,
// the paper's): λ in the local rate and in the step, as above; decoupled=true: λ leaves both, and
// w <- (1 - lr λ) w - v.
// Every tensor gets its own local rate, biases too (the paper's layers; some implementations exempt
// 1-D tensors). State per parameter: velocity (v, the learning rate inside).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct LarsOptions {
  double lr = 0.1;
  double momentum = 0.9;
  double trust_coefficient = 1e-3;
  double eps = 1e-8;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("momentum", momentum);
    c.positive("trust_coefficient", trust_coefficient);
    c.non_negative("eps", eps);
  }
};

class Lars : public OptimizerWith<LarsOptions> {
 public:
  explicit Lars(std::vector<nn::NamedTensor> params, const LarsOptions& options = {});
  Lars(std::vector<ParamGroup<LarsOptions>> groups, const LarsOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"velocity"}; }
};

}  // namespace optim
