// Hypergradient descent (Baydin et al. 2018, "Online learning rate adaptation with hypergradient
// descent"; 000 §4.9): gradient descent on the learning rate α itself, from the gradient the step
// computes anyway. With the update written θ_t = θ_{t-1} + u_t, u_t = -α_t d_t:
//   h_t = ∇f(θ_{t-1}) · ∂θ_{t-1}/∂α = -∇f(θ_{t-1}) · d_{t-1}
//   α_t = α_{t-1} - β h_t                               (β = `hyper_lr`)
// For SGD-HD d = ∇f, so α_t = α_{t-1} + β ∇f(θ_{t-1}) · ∇f(θ_{t-2}) (000 §4.9, the paper's Algorithm 1);
// for Adam-HD d = m̂ / (sqrt(v̂) + ε) (the paper's Algorithm 3). d_0 = 0, so h_1 = 0 and the first step is
// the base method with α_0 = lr (this answers 000 §4.9.1's first-step question).
//
// Scope of α (HyperScope):
//   global      one α per parameter group, from the dot product over all its tensors (the paper; with one
//               group, one α for the whole model). It is the group's lr: lr() reads it, set_lr() resets it.
//   per_tensor  one α per parameter tensor, from that tensor's own dot product (the extension 000 §4.9.1
//               asks about); each starts at the group's lr, and set_lr() resets every one of the group.
// Each tensor's state keeps "alpha", the α its last update used, and "prev_direction", d_{t-1}.
// Weight decay: coupled, ∇f includes λ θ; decoupled, d includes λ θ_{t-1} (θ_t = (1 - α λ) θ_{t-1} - α d).
//
// This header is the shared machinery; sgd_hd.hpp and adam_hd.hpp are the methods.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "optim/optimizer.hpp"

namespace optim {

enum class HyperScope { global, per_tensor };

/// -Σ (g + coupled w) · d, accumulated in double.
namespace detail {
double hypergradient(const ag::Tensor& grad, const ag::Tensor& param, const ag::Tensor& direction,
                     double coupled);
}

/// Options needs, beyond OptimizerWith's: double hyper_lr; HyperScope scope.
template <class Options>
class HypergradientOptimizer : public OptimizerWith<Options> {
  using Base = OptimizerWith<Options>;

 public:
  /// h_t of the last step for `group` (per_tensor: the sum of the group's tensors' h).
  double hypergradient(std::size_t group = 0) const { return group_h_.at(group); }
  /// h_t of the last step of one tensor (its share of the group's dot product).
  double hypergradient(const std::string& param) const { return tensor_h_.at(param); }
  /// The α that `param`'s last update used (global: its group's).
  double alpha(const std::string& param) const {
    for (const auto& p : this->all_params()) {
      if (p.name != param) continue;
      if (const ParamState* s = this->find_state(p)) return s->scalars[0];
      return this->lr(p.group);
    }
    throw std::out_of_range(this->name() + ": no parameter named '" + param + "'");
  }

 protected:
  using typename Optimizer::ParamState;
  using typename Optimizer::Param;
  using typename Optimizer::Work;

  HypergradientOptimizer(std::string name, std::vector<ParamGroup<Options>> groups, const Options& defaults)
      : Base(std::move(name), std::move(groups), defaults), group_h_(this->group_count(), 0.0) {}

  /// The method's step with learning rate `alpha`; must store the new d in state.tensors[0].
  virtual void apply(const Work& item, ParamState& state, double alpha, const Options& o) = 0;
  /// Tensor state after "prev_direction"; scalar state after "alpha".
  virtual std::vector<std::string> more_tensor_state() const { return {}; }
  virtual std::vector<std::string> more_scalar_state() const { return {}; }

  std::vector<std::string> tensor_state_names() const final {
    std::vector<std::string> names{"prev_direction"};
    for (auto& n : more_tensor_state()) names.push_back(n);
    return names;
  }
  std::vector<std::string> scalar_state_names() const final {
    std::vector<std::string> names{"alpha"};
    for (auto& n : more_scalar_state()) names.push_back(n);
    return names;
  }
  void init_state(ParamState& s, const Param& p) override { s.scalars[0] = this->lr(p.group); }
  void lr_changed(std::size_t group) override {
    for (const Param& p : this->all_params()) {
      if (p.group != group) continue;
      if (ParamState* s = this->find_state(p)) s->scalars[0] = this->lr(group);
    }
  }

  void update() final {
    std::vector<Work> work = this->gradients();
    std::fill(group_h_.begin(), group_h_.end(), 0.0);
    // 1. Hypergradients from the previous directions (zero for a tensor's first step).
    std::vector<double> h(work.size(), 0.0);
    for (std::size_t k = 0; k < work.size(); ++k) {
      const Work& item = work[k];
      const Options& o = this->options(item.param->group);
      if (ParamState* s = this->find_state(*item.param)) {
        double coupled = o.weight_decay_mode == WeightDecay::coupled ? o.weight_decay : 0.0;
        h[k] = detail::hypergradient(item.grad, item.param->tensor, s->tensors[0], coupled);
      }
      group_h_[item.param->group] += h[k];
      tensor_h_[item.param->name] = h[k];
    }
    // 2. α: the group's (global) once, then each tensor's step.
    for (std::size_t g = 0; g < this->group_count(); ++g) {
      const Options& o = this->options(g);
      if (o.scope == HyperScope::global) this->mutable_options(g).lr = o.lr - o.hyper_lr * group_h_[g];
    }
    for (std::size_t k = 0; k < work.size(); ++k) {
      const Work& item = work[k];
      const Options& o = this->options(item.param->group);
      ParamState& s = this->state_for(*item.param);
      if (o.scope == HyperScope::global) {
        s.scalars[0] = o.lr;
      } else {
        s.scalars[0] -= o.hyper_lr * h[k];
      }
      apply(item, s, s.scalars[0], o);
    }
  }

 private:
  std::vector<double> group_h_;
  std::unordered_map<std::string, double> tensor_h_;
};

}  // namespace optim
