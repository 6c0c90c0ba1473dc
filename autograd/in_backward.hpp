// Updates applied inside backward: an optimiser whose step is linear in the gradient,
//   W <- beta W + alpha dW                                          (SGD: alpha = -lr, beta = 1 - lr λ)
// may register that rule on a parameter; an op that computes dW as a product (ag::linear: dW = x^T g) then
// adds alpha x^T g into W while it computes it, one pass over W and no dW tensor, instead of handing dW to
// .grad(). It is what makes batch-1 SGD memory-bound on the weights alone (bench/README.md, W3's floor).
//
// The op fuses only when that is the same as storing dW and stepping afterwards:
//   * the sweep is a plain backward (not ag::grad, not retain_graph or create_graph);
//   * the parameter is a leaf taken by exactly one node of the tape (a weight used twice needs its old value
//     for its other gradient), shares its storage with no other tensor, and has no gradient yet;
//   * the op has computed every other gradient that needs the parameter's value first.
// Otherwise dW goes to .grad() as usual and the optimiser's step applies it (a parameter updated inside
// backward has no gradient, so the step passes it by).
#pragma once

#include <memory>
#include <optional>

#include "autograd/tensor.hpp"

namespace ag {

/// The coefficients of W <- beta W + alpha dW, read when the update is applied (so a schedule's new lr counts).
struct LinearUpdate {
  double alpha = 0.0;
  double beta = 1.0;
};

class InBackwardUpdate {
 public:
  virtual ~InBackwardUpdate() = default;
  /// The update's coefficients now, or nullopt to leave this backward's dW to .grad().
  virtual std::optional<LinearUpdate> coefficients() const = 0;
};

/// Registers `rule` on `param` (a leaf; std::invalid_argument otherwise), replacing any other.
void set_update_in_backward(const Tensor& param, std::shared_ptr<const InBackwardUpdate> rule);
/// Removes `rule` from `param` if it is the one registered there (an optimiser going away).
void remove_update_in_backward(const Tensor& param, const InBackwardUpdate* rule);

namespace detail {
/// For ops: applies `weight`'s rule with dW = x^T g (x: (batch, in), g: (batch, out), weight: (in, out)) if
/// the conditions above hold, and returns true; false (nothing done) otherwise.
bool update_in_backward(const Tensor& weight, const Tensor& x, const Tensor& g);
/// Whether this thread is in a plain backward sweep (the first condition above).
bool fusing_updates();
/// How many nodes of the current tape take `leaf` (counted only for leaves with a rule).
unsigned tape_uses(const Tensor& leaf);
}  // namespace detail

}  // namespace ag
