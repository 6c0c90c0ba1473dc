#include "autograd/tape.hpp"

#include <cmath>
#include <deque>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/detail/tensor_impl.hpp"
#include "autograd/ops.hpp"

namespace ag {

namespace {

struct Node {
  const char* op;
  std::vector<Tensor> inputs;
  BackwardFn backward;
  NeedsGrad needs;
  /// d(root)/d(this node's output), accumulated while a sweep runs.
  Tensor grad;
  /// Under anomaly detection: where the op ran forward (anomaly_where()).
  std::string where;
};

struct Tape {
  // A deque: nodes appended while a create_graph sweep runs must not move the node being run.
  std::deque<Node> nodes;
  // Bumped on release, so tensors from a released tape are recognised.
  std::uint64_t generation = 1;
  bool recording = true;
  /// The node whose backward is running (anomaly reports name it for the ops its backward runs), or null.
  const Node* in_backward = nullptr;
  /// In a plain backward sweep, where ops may apply parameters' updates (autograd/in_backward.hpp).
  bool fusing = false;
};

Tape& tape() {
  thread_local Tape instance;
  return instance;
}

/// Index of the node that produced `t`, or -1 for a leaf; throws if that node was released.
std::int64_t node_of(const Tensor& t, const char* where) {
  const TensorImpl& impl = *t.impl();
  if (impl.node < 0) return -1;
  if (impl.tape_generation != tape().generation) {
    throw std::logic_error(fmt::format(
        "{}: tensor {} comes from a tape already released by an earlier backward (a backward releases "
        "this thread's whole tape: backward the sum of several losses at once, or pass retain_graph = true to "
        "the first backward)",
        where, t.describe()));
  }
  return impl.node;
}

void check_gradient(const char* where, const Tensor& target, const Tensor& grad) {
  if (!(grad.shape() == target.shape()) || grad.dtype() != target.dtype()) {
    throw std::logic_error(fmt::format("{}: gradient {} does not match its tensor {}", where, grad.describe(),
                                       target.describe()));
  }
}

// ---- anomaly detection (autograd/anomaly.hpp)

/// "NaN at element 3 of f32[4, 10]", or nothing if every element is finite.
std::optional<std::string> non_finite(const Tensor& t) {
  if (!t.defined()) return std::nullopt;
  auto scan = [&](const auto* values) -> std::optional<std::string> {
    for (std::size_t i = 0, n = t.numel(); i < n; ++i) {
      if (!std::isfinite(values[i])) {
        return fmt::format("{} at element {} of {}", std::isnan(values[i]) ? "NaN" : "an infinity", i, t.describe());
      }
    }
    return std::nullopt;
  };
  return t.dtype() == DType::f64 ? scan(t.data<double>()) : scan(t.data<float>());
}

/// "input 0 f32[4, 3] from 'matmul'", "input 1 f32[3] (a leaf that requires grad: a parameter)", ...
std::string provenance(const Tensor& input, std::size_t index) {
  const TensorImpl& impl = *input.impl();
  std::string from;
  if (impl.node >= 0 && impl.tape_generation == tape().generation) {
    const Node& producer = tape().nodes[static_cast<std::size_t>(impl.node)];
    from = fmt::format("from '{}'", producer.op);
    if (!producer.where.empty()) from += " (" + producer.where + ")";
  } else if (impl.requires_grad) {
    from = "a leaf that requires grad (a parameter)";
  } else {
    from = "not recorded (data, a constant, or computed without recording)";
  }
  std::optional<std::string> bad = non_finite(input);
  return fmt::format("input {} {} {}{}", index, input.describe(), from, bad ? ", already non-finite: " + *bad : "");
}

std::string provenances(const std::vector<Tensor>& inputs) {
  std::string out;
  for (std::size_t i = 0; i < inputs.size(); ++i) out += (i ? "; " : "") + provenance(inputs[i], i);
  return out;
}

[[noreturn]] void report_anomaly(const char* op, const char* phase, const std::string& what, const std::string& where,
                                 const std::vector<Tensor>& inputs, const std::string& backward_where = "") {
  std::string message = fmt::format("anomaly: the {} of '{}' {}{}", phase, op, what, where.empty() ? "" : " in " + where);
  if (!backward_where.empty() && backward_where != where) message += fmt::format(" (the backward ran in {})", backward_where);
  message += fmt::format("; its inputs: {}", provenances(inputs));
  throw AnomalyError(message, op, phase, where);
}

/// Under anomaly detection, after a node's backward: every gradient it hands on must be finite.
void check_backward(const Node& node, const std::vector<Tensor>& grads) {
  for (std::size_t j = 0; j < grads.size(); ++j) {
    if (!node.needs[j]) continue;
    if (std::optional<std::string> bad = non_finite(grads[j])) {
      report_anomaly(node.op, "backward", fmt::format("gave a non-finite gradient for input {} ({})", j, *bad),
                     node.where, node.inputs, anomaly_where());
    }
  }
}

/// slot += g: out of place, so gradients handed out earlier never change under their holder.
void accumulate(Tensor& slot, const Tensor& g) { slot = slot.defined() ? add(slot, g) : g; }

/// `g` itself if nothing else refers to it or its storage, else a copy. A leaf's gradient must be its own:
/// a backward may hand one tensor to several inputs (add gives g to both), and users write gradients in place.
Tensor owned(const Tensor& g) {
  bool unique = g.impl().use_count() == 1 && g.impl()->storage.use_count() == 1;
  return unique ? g : g.clone();
}

using LeafSink = std::function<void(const Tensor& leaf, const Tensor& grad)>;

struct Root {
  Tensor output;
  Tensor seed;
};

/// node.backward(grad_output), with the tape knowing whose backward runs (for anomaly reports).
std::vector<Tensor> run_backward(const Node& node, const Tensor& grad_output) {
  struct Running {
    const Node* previous;
    explicit Running(const Node& node) : previous(std::exchange(tape().in_backward, &node)) {}
    ~Running() { tape().in_backward = previous; }
  } running(node);
  return node.backward(grad_output, node.needs);
}

/// The reverse sweep: from the highest root node down to node 0, one loop.
/// Calls `on_node_grad(index, grad)` as each node's gradient is complete (before it is consumed).
void sweep(const std::vector<Root>& roots, bool create_graph, const LeafSink& leaf_sink,
           const std::function<void(std::int64_t, const Tensor&)>& on_node_grad) {
  Tape& t = tape();
  std::int64_t start = -1;
  {
    NoGradGuard no_grad;
    for (const Root& root : roots) {
      check_gradient("backward (seed)", root.output, root.seed);
      std::int64_t index = node_of(root.output, "backward");
      if (index < 0) {
        leaf_sink(root.output, root.seed);
        continue;
      }
      accumulate(t.nodes[static_cast<std::size_t>(index)].grad, root.seed);
      start = std::max(start, index);
    }
  }
  EnableGradGuard recording(create_graph);
  for (std::int64_t i = start; i >= 0; --i) {
    Node& node = t.nodes[static_cast<std::size_t>(i)];
    if (!node.grad.defined()) continue;
    Tensor grad_output = std::move(node.grad);
    node.grad = Tensor();
    if (on_node_grad) on_node_grad(i, grad_output);
    std::vector<Tensor> grads = run_backward(node, grad_output);
    if (grads.size() != node.inputs.size()) {
      throw std::logic_error(fmt::format("backward of '{}': {} gradients for {} inputs", node.op, grads.size(),
                                         node.inputs.size()));
    }
    if (detecting_anomalies()) check_backward(node, grads);
    for (std::size_t j = 0; j < grads.size(); ++j) {
      if (!node.needs[j] || !grads[j].defined()) continue;
      const Tensor& input = node.inputs[j];
      check_gradient(node.op, input, grads[j]);
      std::int64_t producer = node_of(input, node.op);
      if (producer < 0) {
        leaf_sink(input, grads[j]);
      } else {
        accumulate(t.nodes[static_cast<std::size_t>(producer)].grad, grads[j]);
      }
    }
  }
}

/// A sweep that throws part-way leaves gradients on nodes it had not reached yet; a later sweep would add
/// them in. Clear them before passing the error on.
void sweep_or_clean_up(const std::vector<Root>& roots, bool create_graph, const LeafSink& leaf_sink,
                       const std::function<void(std::int64_t, const Tensor&)>& on_node_grad) {
  try {
    sweep(roots, create_graph, leaf_sink, on_node_grad);
  } catch (...) {
    for (Node& node : tape().nodes) node.grad = Tensor();
    throw;
  }
}

std::vector<Root> make_roots(const std::vector<Tensor>& outputs, const std::vector<Tensor>& seeds) {
  if (!seeds.empty() && seeds.size() != outputs.size()) {
    throw std::invalid_argument(
        fmt::format("grad: {} seeds for {} outputs", seeds.size(), outputs.size()));
  }
  std::vector<Root> roots;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    const Tensor& output = outputs[k];
    if (!output.defined()) throw std::invalid_argument("backward: undefined output");
    if (!output.requires_grad()) {
      throw std::invalid_argument(fmt::format(
          "backward: output {} does not require grad (no input of its graph requires grad, or it was "
          "computed under NoGradGuard)",
          output.describe()));
    }
    Tensor seed = seeds.empty() ? Tensor() : seeds[k];
    if (!seed.defined()) {
      if (output.numel() != 1) {
        throw std::invalid_argument(fmt::format(
            "backward: output {} is not a scalar; pass a seed of its shape (d final / d output)",
            output.describe()));
      }
      seed = Tensor::ones_like(output);
    }
    roots.push_back({output, seed.detach()});
  }
  return roots;
}

void finish(const BackwardOptions& options) {
  if (!options.retain_graph && !options.create_graph) {
    release_tape();
  } else {
    for (Node& node : tape().nodes) node.grad = Tensor();
  }
}

}  // namespace

bool is_recording() { return tape().recording; }

NoGradGuard::NoGradGuard() : previous_(tape().recording) { tape().recording = false; }
NoGradGuard::~NoGradGuard() { tape().recording = previous_; }

EnableGradGuard::EnableGradGuard(bool enabled) : previous_(tape().recording) { tape().recording = enabled; }
EnableGradGuard::~EnableGradGuard() { tape().recording = previous_; }

namespace detail {

Tensor append_node(const char* op, Tensor output, std::vector<Tensor> inputs, BackwardFn backward) {
  if (inputs.size() > 32) throw std::logic_error(fmt::format("{}: more than 32 inputs on one node", op));
  TensorImpl& out = *output.impl();
  if (out.node >= 0 || out.requires_grad) {
    throw std::logic_error(fmt::format("{}: an op must return a new tensor, not one of its inputs", op));
  }
  std::uint32_t bits = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].requires_grad()) bits |= 1u << i;
  }
  Tape& t = tape();
  for (const Tensor& input : inputs) {
    // Leaves with an update applied inside backward: how many nodes take them (in_backward.hpp).
    if (!input.defined() || !input.impl()->in_backward) continue;
    TensorImpl& leaf = *input.impl();
    if (leaf.uses_generation != t.generation) {
      leaf.uses_generation = t.generation;
      leaf.uses = 0;
    }
    ++leaf.uses;
  }
  out.requires_grad = true;
  out.node = static_cast<std::int64_t>(t.nodes.size());
  out.tape_generation = t.generation;
  t.nodes.push_back(Node{op, std::move(inputs), std::move(backward), NeedsGrad(bits), Tensor(),
                         detecting_anomalies() ? anomaly_where() : std::string()});
  return output;
}

bool detecting_anomalies() { return ag::detecting_anomalies(); }

bool fusing_updates() { return tape().fusing; }

unsigned tape_uses(const Tensor& leaf) {
  const TensorImpl& impl = *leaf.impl();
  return impl.uses_generation == tape().generation ? impl.uses : 0;
}

void check_forward(const char* op, const Tensor& output, std::initializer_list<Tensor> inputs) {
  std::optional<std::string> bad = non_finite(output);
  if (!bad) return;
  if (const Node* node = tape().in_backward) {  // an op of a backward formula: the backward's anomaly
    report_anomaly(node->op, "backward", fmt::format("gave a non-finite value (its '{}': {})", op, *bad), node->where,
                   node->inputs, anomaly_where());
  }
  report_anomaly(op, "forward", "gave a non-finite output (" + *bad + ")", anomaly_where(), std::vector<Tensor>(inputs));
}

}  // namespace detail

void backward(const Tensor& loss, const BackwardOptions& options) { backward(loss, Tensor(), options); }

void backward(const Tensor& output, const Tensor& seed, const BackwardOptions& options) {
  std::vector<Root> roots = make_roots({output}, {seed});
  auto leaf_sink = [&](const Tensor& leaf, const Tensor& g) {
    if (!leaf.requires_grad()) return;
    Tensor current = leaf.grad();
    if (options.create_graph) {
      leaf.impl()->grad = current.defined() ? add(current, g) : g;
    } else {
      NoGradGuard no_grad;
      leaf.impl()->grad = current.defined() ? add(current, g) : owned(g);
    }
  };
  // Ops may apply parameters' updates inside a plain sweep only: the tape goes away after it.
  struct Fusing {
    bool previous;
    explicit Fusing(bool on) : previous(std::exchange(tape().fusing, on)) {}
    ~Fusing() { tape().fusing = previous; }
  } fusing(!options.retain_graph && !options.create_graph);
  sweep_or_clean_up(roots, options.create_graph, leaf_sink, nullptr);
  finish(options);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds, const BackwardOptions& options) {
  std::vector<Root> roots = make_roots(outputs, seeds);
  std::vector<Tensor> results(inputs.size());
  std::unordered_map<const TensorImpl*, std::vector<std::size_t>> wanted_leaves;
  std::unordered_map<std::int64_t, std::vector<std::size_t>> wanted_nodes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) throw std::invalid_argument("grad: undefined input");
    std::int64_t index = node_of(inputs[i], "grad");
    if (index < 0) {
      wanted_leaves[inputs[i].id()].push_back(i);
    } else {
      wanted_nodes[index].push_back(i);
    }
  }
  auto leaf_sink = [&](const Tensor& leaf, const Tensor& g) {
    auto found = wanted_leaves.find(leaf.id());
    if (found == wanted_leaves.end()) return;
    for (std::size_t i : found->second) accumulate(results[i], g);
  };
  auto on_node_grad = [&](std::int64_t index, const Tensor& g) {
    auto found = wanted_nodes.find(index);
    if (found == wanted_nodes.end()) return;
    for (std::size_t i : found->second) results[i] = g;
  };
  sweep_or_clean_up(roots, options.create_graph, leaf_sink, on_node_grad);
  finish(options);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!results[i].defined()) results[i] = Tensor::zeros_like(inputs[i]);
  }
  return results;
}

void release_tape() {
  Tape& t = tape();
  t.nodes.clear();
  ++t.generation;
}

std::size_t tape_size() { return tape().nodes.size(); }

}  // namespace ag
