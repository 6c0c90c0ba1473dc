// The tape: reverse-mode automatic differentiation.
//
// While recording (the default), each differentiable op whose inputs require grad appends one node to a
// thread-local tape: its inputs, what its backward needs (captured by value) and the backward function.
// Construction order is already topological, so `backward` sweeps the tape from the loss's node down to
// the first node, a plain loop: no recursion, no sort, any depth.
//
// Gradients accumulate into leaves (`Tensor::grad()`): a tensor used twice receives both contributions,
// and repeated backward calls add up until `zero_grad()`. After a sweep the whole tape is released
// (every node, and every saved tensor with it) unless `retain_graph` is set; a later backward through a
// released part is an error, as is backward on a non-scalar without an explicit seed.
//
// Unlike PyTorch, which frees each graph when its last tensor dies, release is per thread and whole: two
// losses built before one backward cannot be backwarded one after the other (backward their sum, or
// retain the graph), and ops recorded but never backwarded stay on the tape until the next backward or
// release_tape(): evaluate under NoGradGuard.
//
// Higher order: backward functions are written with the same differentiable ops. With `create_graph`,
// they run while recording, so the gradients are themselves on the tape and can be differentiated again
// (Hessian-vector products, see `grad`).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"

namespace ag {

/// Which of a node's inputs need a gradient (at most 32 inputs per node).
class NeedsGrad {
 public:
  NeedsGrad() = default;
  explicit NeedsGrad(std::uint32_t bits) : bits_(bits) {}
  bool operator[](std::size_t input) const { return (bits_ >> input) & 1u; }
  bool any() const { return bits_ != 0; }
  std::uint32_t bits() const { return bits_; }

 private:
  std::uint32_t bits_ = 0;
};

/// Computes the gradients of a node's inputs from the gradient of its output: one tensor per input,
/// each of the input's shape, or undefined where `needs[i]` is false.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output, NeedsGrad needs)>;

/// True while ops are being recorded (not inside a NoGradGuard, or a backward without create_graph).
bool is_recording();

/// Stops recording for its lifetime (evaluation, parameter updates). Nests.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// Restores recording for its lifetime (used by backward with create_graph).
class EnableGradGuard {
 public:
  explicit EnableGradGuard(bool enabled = true);
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

namespace detail {
Tensor append_node(const char* op, Tensor output, std::vector<Tensor> inputs, BackwardFn backward);
/// Anomaly detection (autograd/anomaly.hpp): whether it is on, and the forward check of an op's output.
bool detecting_anomalies();
void check_forward(const char* op, const Tensor& output, std::initializer_list<Tensor> inputs);
}  // namespace detail

/// For op implementations: appends a node producing `output` from `inputs` if recording and some
/// input requires grad (the output then requires grad too); otherwise returns `output` untouched and
/// never builds the std::function. `op` names the op in error messages. Under anomaly detection
/// (autograd/anomaly.hpp) it first checks that `output` is finite.
template <class F>
Tensor record(const char* op, Tensor output, std::initializer_list<Tensor> inputs, F&& backward) {
  if (detail::detecting_anomalies()) detail::check_forward(op, output, inputs);
  bool needed = false;
  if (is_recording()) {
    for (const Tensor& input : inputs) needed = needed || input.requires_grad();
  }
  if (!needed) return output;
  return detail::append_node(op, std::move(output), std::vector<Tensor>(inputs),
                             BackwardFn(std::forward<F>(backward)));
}

struct BackwardOptions {
  /// Keep the tape after the sweep, so another backward can run through it.
  bool retain_graph = false;
  /// Record the backward computation itself (implies retain_graph), for higher-order derivatives.
  bool create_graph = false;
};

/// Accumulates d(loss)/d(leaf) into every leaf that requires grad. `loss` must hold one element.
void backward(const Tensor& loss, const BackwardOptions& options = {});
/// Same, seeded with d(final)/d(output) = `seed` (same shape as `output`), for non-scalar outputs.
void backward(const Tensor& output, const Tensor& seed, const BackwardOptions& options = {});

/// Returns d(sum of outputs[k] * seeds[k])/d(inputs[i]) without touching any `.grad()`, as in
/// torch.autograd.grad. Missing seeds are ones (outputs must then be scalars). An input the outputs
/// do not depend on gets a zero tensor. With `create_graph` the results are on the tape, so
///   g  = grad({f}, {x}, {}, {.create_graph = true})[0];
///   Hv = grad({sum(g * v)}, {x})[0];
/// is a Hessian-vector product. create_graph implies retain_graph.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds = {}, const BackwardOptions& options = {});

/// Drops every node of this thread's tape (what backward does after its sweep).
void release_tape();
/// Number of nodes on this thread's tape.
std::size_t tape_size();

}  // namespace ag
