// AdaGrad (Duchi, Hazan & Singer 2011), in the form of 002 Alg. 2 and 004 Def. 3.7:
//   G <- G + g^2                       (elementwise; G starts at 0)
//   w <- w - lr g / sqrt(G + ε)        (eps = Eps::inside_sqrt, the default, as both seeds write it)
//   w <- w - lr g / (sqrt(G) + ε)      (eps = Eps::outside_sqrt: Duchi et al., PyTorch)
// 004's accumulator A_{t+1} is our G after the update. Weight decay: coupled g <- g + λ w (the squared
// gradient includes it); decoupled w <- (1 - lr λ) w - (the step above).
#pragma once

#include "optim/optimizer.hpp"

namespace optim {

struct AdagradOptions {
  double lr = 0.01;
  double eps = 1e-8;
  Eps eps_placement = Eps::inside_sqrt;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  void check(const OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.positive("eps", eps);
  }
};

class Adagrad : public OptimizerWith<AdagradOptions> {
 public:
  explicit Adagrad(std::vector<nn::NamedTensor> params, const AdagradOptions& options = {});
  Adagrad(std::vector<ParamGroup<AdagradOptions>> groups, const AdagradOptions& defaults = {});

 protected:
  void update() override;
  std::vector<std::string> tensor_state_names() const override { return {"sum_sq"}; }
};

}  // namespace optim
