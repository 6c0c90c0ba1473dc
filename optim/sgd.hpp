// Gradient descent with a fixed step (000 §4.2, 001 eq. 5, 002 eq. 4, 004 Prop. 3.2 (iii)):
//   w <- w - lr * g
// Full batch, mini-batch or online is the data loader's business: g is whatever gradient is in .grad().
// With weight decay λ (coupled): g <- g + λ w; decoupled: w <- (1 - lr λ) w - lr g (the same update).
// in_backward=true applies it inside backward where it can: w <- (1 - lr λ) w - lr dW as dW is computed.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "optim/optimizer.hpp"

namespace optim {

struct SGDOptions {
  double lr = 0.01;
  double weight_decay = 0.0;
  WeightDecay weight_decay_mode = WeightDecay::coupled;
  /// Apply the update inside backward where an op can (autograd/in_backward.hpp): the weights of linear
  /// layers are then updated while their gradient is computed, one pass over each and no gradient stored
  /// (their .grad() stays empty; biases and any other parameter take the usual path in step()). Read when
  /// the optimiser is made (set_options can turn it off, not on); refused under a wrapper.
  bool in_backward = false;
  void check(const OptionCheck& c) const { c.common(lr, weight_decay); }
};

class SGD : public OptimizerWith<SGDOptions> {
 public:
  explicit SGD(std::vector<nn::NamedTensor> params, const SGDOptions& options = {});
  SGD(std::vector<ParamGroup<SGDOptions>> groups, const SGDOptions& defaults = {});
  ~SGD() override;
  bool updates_in_backward() const override { return !rules_.empty(); }

 protected:
  void update() override;

 private:
  class Rule;
  std::vector<std::pair<ag::Tensor, std::shared_ptr<const Rule>>> rules_;
};

}  // namespace optim
