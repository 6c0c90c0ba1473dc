// The optimiser base: named parameters in groups, per-parameter state keyed by identity, and state
// save / load in the checkpoint's named-tensor form.
//
//   optim::Adam adam(model.named_parameters(), {.lr = 1e-3});
//   for (...) { adam.zero_grad(); ag::backward(loss(batch)); adam.step(); }
//
//   // Groups: each group's options replace the defaults (unset: the defaults).
//   optim::SGD sgd({{.params = encoder}, {.params = head, .options = optim::SGDOptions{.lr = 0.1}}},
//                  {.lr = 0.01});
//
// Three ways to step:
//   step()          the gradients are already in every parameter's .grad();
//   step(closure)   Closure = double(): zeroes the gradients, recomputes the loss and its gradients by
//                   backward, returns the loss. Methods that must evaluate the loss or gradient elsewhere
//                   than at the current parameters call it where they need it (NesterovLookahead at the
//                   look-ahead point, SAM twice, L-BFGS up to max_eval times with its line search); the
//                   others call it once and then update;
//   step(loss_fn)   LossFn = ag::Tensor(): returns the loss on the tape, no backward. Newton needs this
//                   form (it differentiates twice); the others wrap it into a closure.
//
// Per-parameter state (moment estimates, velocities, step counts) is created the first time a parameter
// is updated, keyed by the parameter's identity (ag::Tensor::id()), never by its position. Parameters
// whose gradient is undefined are skipped (and get no state). Whole-optimiser state: the step counter
// and each group's learning rate (which hypergradient descent updates).
//
// state() names every entry (all float64 scalars are rank-0 tensors):
//   "optimizer/<name>"            1.0, a tag: load_state refuses state saved by another method
//   "global/step"                 number of step() calls
//   "global/params_with_state"    how many parameters have state (a state missing one is refused)
//   "global/<scalar>"             a whole-optimiser scalar of the method (Newton's "global/damping")
//   "group/<g>/lr"                learning rate of group g
//   "state/<param>/<buffer>"      a tensor of the parameter's dtype and, unless the method's
//                                 tensor_state_shape says otherwise, its shape ("state/fc1.weight/exp_avg";
//                                 L-BFGS's history "state/fc1.weight/old_stps" is [history_size, numel])
//   "state/<param>/<scalar>"      a per-parameter scalar ("state/fc1.weight/step")
//   "inner/<entry>"               a wrapper's wrapped optimiser's entry (its group learning rates are there)
// and load_state() restores them bit for bit, so training resumes exactly: state() -> nn::save_tensors ->
// nn::load_tensors -> load_state() on a fresh optimiser over the same named parameters.
//
// Updates run under ag::NoGradGuard, in place, through raw pointers, in one fused loop per parameter
// (float32 or float64, the parameter's dtype). A gradient tensor is never written (gradients may share
// storage). Weight decay λ is added to the update:
//   coupled (L2, the default):                     g <- g + λ w, then the method's update;
//   decoupled (Loshchilov & Hutter):               w <- (1 - lr λ) w - (the method's update of g).
// For plain SGD the two agree. Coupled decay is the gradient of (λ/2)‖w‖², torch's weight_decay; 000 §3.3.2's
// penalty λ‖W‖² (gradient 2λW) is weight_decay = 2λ, or nn::l2_penalty(params, λ) added to the loss.
//
// Adding a method: an options struct (lr, weight_decay, weight_decay_mode, check()), a class deriving from
// OptimizerWith<Options> that names its state and implements update() with one fused loop per parameter
// (optim/<method>.hpp/.cpp, the .cpp listed in optim/CMakeLists.txt and the header in optim.hpp), one
// RegisterOptimizer line in its .cpp with its option table (optim/registry.hpp), and a test section in
// tests/test_optim.cpp writing its recurrence out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autograd/tensor.hpp"
#include "nn/checkpoint.hpp"
#include "nn/module.hpp"

namespace optim {

/// Thrown by a step that meets numbers it cannot go on from (Newton's Hessian not finite): the run diverged,
/// as a non-finite loss says, and training stops it as diverged, not failed.
struct NumericalBreakdown : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class WeightDecay { coupled, decoupled };

/// What a per-parameter state entry must hold (Optimizer::state_rule): any finite value, a finite value
/// >= 0, or a count (an integer >= 0).
enum class StateRule { finite, non_negative, count };

/// Where ε goes in adaptive methods: g / sqrt(v + ε) (the seeds' AdaGrad and RMSProp, 002 Alg. 2,
/// 004 Def. 3.7, Prop. 3.11-3.12, 001 eq. 16) or g / (sqrt(v) + ε) (Adam in 000 §4.5, 001 eq. 18d).
enum class Eps { inside_sqrt, outside_sqrt };

/// Names plain tensors "<prefix>0", "<prefix>1", ... (for problems without a module).
std::vector<nn::NamedTensor> named(const std::vector<ag::Tensor>& tensors, const std::string& prefix = "p");

/// Parameters that share options. Unset options: the optimiser's defaults.
template <class Options>
struct ParamGroup {
  std::vector<nn::NamedTensor> params;
  std::optional<Options> options{};
};

/// Checks option values; every error is a std::invalid_argument naming the optimiser, the group (when
/// there are several) and the option: "adam (group 1): beta2 must be in [0, 1), got 1".
class OptionCheck {
 public:
  explicit OptionCheck(std::string where) : where_(std::move(where)) {}
  void non_negative(std::string_view option, double value) const;
  void positive(std::string_view option, double value) const;
  /// In [0, 1).
  void unit_interval(std::string_view option, double value) const;
  /// The options every method has: lr >= 0, weight_decay >= 0, both finite.
  void common(double lr, double weight_decay) const;
  [[noreturn]] void fail(std::string_view option, std::string_view requirement, double value) const;

 private:
  std::string where_;
};

class Optimizer {
 public:
  using Closure = std::function<double()>;
  using LossFn = std::function<ag::Tensor()>;

  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// The registered name of the method: "adam", "nesterov-lookahead", ...
  const std::string& name() const { return name_; }

  /// One update from the gradients already in .grad(). Throws std::logic_error for methods that need
  /// a closure (needs_closure(): nesterov-lookahead, newton, lbfgs, sam, and wrappers around them).
  void step();
  /// One update; `closure` zeroes the gradients, recomputes loss and gradients, returns the loss.
  /// Returns the closure's (last) loss.
  double step(const Closure& closure);
  /// One update; `loss_fn` returns the loss on the tape (no backward). Returns the loss.
  double step(const LossFn& loss_fn);
  /// Forgets every parameter's gradient.
  void zero_grad();

  std::size_t group_count() const { return groups_.size(); }
  /// The named parameters of `group`.
  const std::vector<nn::NamedTensor>& params(std::size_t group = 0) const;
  double lr(std::size_t group = 0) const;
  /// Sets one group's learning rate (>= 0), or every group's.
  void set_lr(std::size_t group, double lr);
  void set_lr(double lr);
  /// Number of steps taken.
  std::int64_t step_count() const { return step_count_; }

  /// The evaluation point. Methods that evaluate elsewhere than where they take gradients (the averaged
  /// weights of ema, swa and asgd; schedule-free's x) keep that point as per-parameter state; eval()
  /// exchanges it with the parameters' values, train() exchanges it back, bit for bit. For the others both
  /// are no-ops; either is a no-op when already in its mode. step() and state() refuse while evaluating.
  void eval();
  void train();
  bool evaluating() const { return evaluating_; }
  /// Whether eval() moves the parameters (the methods above), so that statistics computed at the trained
  /// weights (batch norm's) do not hold there (nn::update_bn).
  bool has_eval_point() const { return eval_state().has_value(); }
  /// Whether some of its updates run inside backward (sgd with in_backward=true; autograd/in_backward.hpp).
  virtual bool updates_in_backward() const { return false; }

  /// A copy of the whole state, named as described at the top of this header.
  std::vector<nn::NamedTensor> state() const;
  /// Replaces the state by `entries` (from state(), possibly through a checkpoint file). Nothing is
  /// changed unless every entry fits: throws std::runtime_error with nn::mismatches' report, listing
  /// every missing, unexpected, repeated or mismatched entry and every value out of range.
  void load_state(const std::vector<nn::NamedTensor>& entries);

 protected:
  struct Param {
    std::string name;
    ag::Tensor tensor;
    std::size_t group;
  };
  /// State of one parameter: tensors named by tensor_state_names(), scalars by scalar_state_names().
  struct ParamState {
    std::vector<ag::Tensor> tensors;
    std::vector<double> scalars;
  };
  /// A parameter with a gradient to apply.
  struct Work {
    const Param* param;
    ag::Tensor grad;
  };

  Optimizer(std::string name, std::vector<std::vector<nn::NamedTensor>> groups);

  // ---- what a method defines ----
  /// Applies one update from the gradients in .grad(); runs under NoGradGuard.
  virtual void update() = 0;
  /// Per-parameter tensors (zero-initialised, the parameter's dtype, shape tensor_state_shape) and scalars.
  virtual std::vector<std::string> tensor_state_names() const { return {}; }
  /// Shape of tensor `index` of tensor_state_names() for `param`: what state_for creates and load_state
  /// expects. Default: the parameter's shape.
  virtual ag::Shape tensor_state_shape(std::size_t /*index*/, const Param& param) const { return param.tensor.shape(); }
  virtual std::vector<std::string> scalar_state_names() const { return {}; }
  /// What load_state requires of a per-parameter state entry besides being finite (all are): a count (a
  /// non-negative integer) or a non-negative value. The default reads the names the methods share: the
  /// scalars "step" and "count" are counts; "exp_avg_sq", "max_exp_avg_sq", "sum_sq", "square_avg",
  /// "acc_delta", "exp_inf", "exp_avg_var", "step_size", "eta" and "weight_sum" are non-negative.
  virtual StateRule state_rule(const std::string& key) const;
  /// Initialises a new parameter state's scalars (default: zeros).
  virtual void init_state(ParamState& /*state*/, const Param& /*param*/) {}
  /// True if step() without a closure is not allowed.
  virtual bool needs_closure() const { return false; }
  /// step(closure): default calls it once and then update().
  virtual double closure_step(const Closure& closure);
  /// step(loss_fn): default wraps it into a closure (zero_grad, loss_fn, backward, item).
  virtual double loss_fn_step(const LossFn& loss_fn);
  /// Called after set_lr or set_options changed group `group`'s learning rate (not by load_state).
  virtual void lr_changed(std::size_t /*group*/) {}
  /// Group learning rates live in the derived class's options.
  virtual double& group_lr(std::size_t group) = 0;
  /// A whole-optimiser scalar of the method, saved as "global/<name>"; load_state accepts values in
  /// [min, max] and writes them through `value`.
  struct GlobalScalar {
    std::string name;
    double* value;
    double min, max;
  };
  virtual std::vector<GlobalScalar> global_scalars() { return {}; }
  double group_lr_value(std::size_t group) const { return const_cast<Optimizer*>(this)->lr_ref(group); }
  /// The index in tensor_state_names() of the evaluation point (see eval()), for methods that have one.
  virtual std::optional<std::size_t> eval_state() const { return std::nullopt; }
  /// A wrapper (lookahead, clip, ema, swa, sam: optim/wrapper.hpp) returns the optimiser it wraps: the
  /// learning rates are the wrapped one's, and its state is saved under "inner/".
  virtual Optimizer* inner() const { return nullptr; }

  // ---- helpers for methods ----
  const std::vector<Param>& all_params() const { return params_; }
  /// Parameters with a defined gradient, checked (shape and dtype) before anything is changed; a
  /// gradient that shares storage with a parameter is copied first.
  std::vector<Work> gradients() const;
  /// The parameter's state, created on first use.
  ParamState& state_for(const Param& param);
  /// Null if the parameter has no state yet.
  ParamState* find_state(const Param& param);
  const ParamState* find_state(const Param& param) const;
  /// Closure equivalent of a loss function.
  Closure closure_from(const LossFn& loss_fn);

 private:
  friend class Wrapper;
  double& lr_ref(std::size_t group);
  /// Exchanges the evaluation point with the parameters (eval() and train()).
  void swap_eval_point();
  void refuse_while_evaluating(std::string_view what) const;
  /// Every reason `entries` cannot be loaded (empty: they fit); inner entries are checked by the inner.
  std::vector<std::string> state_problems(const std::vector<nn::NamedTensor>& entries);
  // load_state's pieces: the entries a state must hold (every state entry of each parameter it names),
  // why an entry nobody expects is there, the checks of the values, and the replacement itself.
  std::vector<nn::EntrySpec> expected_state(const std::vector<nn::NamedTensor>& entries) const;
  std::string unexpected_entry(const std::string& entry) const;
  std::vector<std::string> value_problems(const std::vector<nn::NamedTensor>& entries);
  /// The problem if `entries` hold state for another number of parameters than `count` says, or "".
  std::string missing_states(const std::vector<nn::NamedTensor>& entries, double count) const;
  void replace_state(const std::vector<nn::NamedTensor>& entries);

  std::string name_;
  std::vector<std::vector<nn::NamedTensor>> groups_;
  std::vector<Param> params_;
  std::unordered_map<const ag::TensorImpl*, ParamState> state_;
  std::int64_t step_count_ = 0;
  bool evaluating_ = false;
};

/// The optimiser's evaluation point in the parameters for a scope: eval() now, train() at the end.
///   { optim::EvalScope at(*optimizer); accuracy = evaluate(model); }
class EvalScope {
 public:
  explicit EvalScope(Optimizer& optimizer) : optimizer_(optimizer) { optimizer_.eval(); }
  ~EvalScope() { optimizer_.train(); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  Optimizer& optimizer_;
};

namespace detail {
/// "<name> (group <g>)" when there are several groups, else the name: where option errors point.
std::string group_where(const std::string& name, std::size_t group, std::size_t group_count);
}  // namespace detail

/// The base for a method with an options struct `Options`, which has at least
///   double lr; double weight_decay; WeightDecay weight_decay_mode; void check(const OptionCheck&) const;
/// Every group has its own copy of the options.
template <class Options>
class OptimizerWith : public Optimizer {
 public:
  const Options& defaults() const { return defaults_; }
  const Options& options(std::size_t group = 0) const { return options_.at(group); }
  /// Replaces a group's options (checked).
  void set_options(std::size_t group, const Options& options) {
    options.check(OptionCheck(where(group)));
    options_.at(group) = options;
    lr_changed(group);
  }

 protected:
  [[gnu::cold]] OptimizerWith(std::string name, std::vector<ParamGroup<Options>> groups, const Options& defaults)
      : Optimizer(std::move(name), take_params(groups)), defaults_(defaults) {
    defaults_.check(OptionCheck(this->name()));
    options_.reserve(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
      options_.push_back(groups[g].options ? *groups[g].options : defaults_);
      options_.back().check(OptionCheck(where(g)));
    }
  }
  double& group_lr(std::size_t group) override { return options_.at(group).lr; }
  Options& mutable_options(std::size_t group) { return options_.at(group); }

  static std::vector<ParamGroup<Options>> one_group(std::vector<nn::NamedTensor> params) {
    std::vector<ParamGroup<Options>> groups(1);
    groups[0].params = std::move(params);
    return groups;
  }

 private:
  /// The groups' parameter lists (moved out: only the options are read afterwards).
  static std::vector<std::vector<nn::NamedTensor>> take_params(std::vector<ParamGroup<Options>>& groups) {
    std::vector<std::vector<nn::NamedTensor>> lists(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) lists[g] = std::move(groups[g].params);
    return lists;
  }
  std::string where(std::size_t group) const { return detail::group_where(name(), group, group_count()); }

  Options defaults_;
  std::vector<Options> options_;
};

namespace detail {

/// Calls fn.template operator()<T>() with T = float or double, the parameter's dtype.
template <class Fn>
void dispatch(ag::DType dtype, Fn&& fn) {
  if (dtype == ag::DType::f64) {
    fn.template operator()<double>();
  } else {
    fn.template operator()<float>();
  }
}

/// Weight decay as two coefficients of the fused loops: g <- g + coupled * w; w <- shrink * w - update.
struct Decay {
  double coupled;
  double shrink;
};
Decay decay(double lr, double weight_decay, WeightDecay mode);

/// The Adam family's moment estimates at one element, written back to m and v:
///   g' = g + coupled w,   m <- β1 m + (1 - β1) g',   v <- β2 v + (1 - β2) g'^2.
template <class T>
struct Moments {
  T g, m, v;  // g' and the new m, v
};
template <class T>
Moments<T> update_moments(T g, T w, T& m, T& v, T coupled, T b1, T b2) {
  const T gi = g + coupled * w;
  const T mi = b1 * m + (T(1) - b1) * gi;
  const T vi = b2 * v + (T(1) - b2) * gi * gi;
  m = mi;
  v = vi;
  return {gi, mi, vi};
}

}  // namespace detail

}  // namespace optim
