#include "optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <unordered_set>

#include <fmt/format.h>

#include "autograd/tape.hpp"

namespace optim {

std::vector<nn::NamedTensor> named(const std::vector<ag::Tensor>& tensors, const std::string& prefix) {
  std::vector<nn::NamedTensor> out;
  out.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) out.emplace_back(prefix + std::to_string(i), tensors[i]);
  return out;
}

// ---------------------------------------------------------------- option checks

void OptionCheck::fail(std::string_view option, std::string_view requirement, double value) const {
  throw std::invalid_argument(fmt::format("{}: {} must be {}, got {}", where_, option, requirement, value));
}

void OptionCheck::non_negative(std::string_view option, double value) const {
  if (!(value >= 0.0) || !std::isfinite(value)) fail(option, ">= 0 and finite", value);
}

void OptionCheck::positive(std::string_view option, double value) const {
  if (!(value > 0.0) || !std::isfinite(value)) fail(option, "> 0 and finite", value);
}

void OptionCheck::unit_interval(std::string_view option, double value) const {
  if (!(value >= 0.0 && value < 1.0)) fail(option, "in [0, 1)", value);
}

void OptionCheck::common(double lr, double weight_decay) const {
  non_negative("lr", lr);
  non_negative("weight_decay", weight_decay);
}

// ---------------------------------------------------------------- construction

Optimizer::Optimizer(std::string name, std::vector<std::vector<nn::NamedTensor>> groups)
    : name_(std::move(name)), groups_(std::move(groups)) {
  if (groups_.empty()) throw std::invalid_argument(fmt::format("{}: no parameter groups", name_));
  std::unordered_set<const ag::TensorImpl*> seen_tensors;
  std::unordered_set<std::string> seen_names;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    if (groups_[g].empty()) throw std::invalid_argument(fmt::format("{}: parameter group {} is empty", name_, g));
    for (const auto& [pname, tensor] : groups_[g]) {
      if (!tensor.defined()) {
        throw std::invalid_argument(fmt::format("{}: parameter '{}' is an undefined tensor", name_, pname));
      }
      if (pname.empty()) throw std::invalid_argument(fmt::format("{}: a parameter has an empty name", name_));
      if (!seen_names.insert(pname).second) {
        throw std::invalid_argument(fmt::format("{}: two parameters are named '{}'", name_, pname));
      }
      if (!seen_tensors.insert(tensor.id()).second) {
        throw std::invalid_argument(
            fmt::format("{}: parameter '{}' is the same tensor as an earlier parameter", name_, pname));
      }
      params_.push_back(Param{pname, tensor, g});
    }
  }
}

// ---------------------------------------------------------------- stepping

void Optimizer::step() {
  refuse_while_evaluating("step()");
  if (needs_closure()) {
    throw std::logic_error(fmt::format(
        "{}: step() needs the loss: call step(closure) or step(loss_fn)", name_));
  }
  {
    ag::NoGradGuard no_grad;
    update();
  }
  ++step_count_;
}

double Optimizer::step(const Closure& closure) {
  if (!closure) throw std::invalid_argument(fmt::format("{}: step(closure) with an empty closure", name_));
  refuse_while_evaluating("step(closure)");
  double loss = closure_step(closure);
  ++step_count_;
  return loss;
}

double Optimizer::step(const LossFn& loss_fn) {
  if (!loss_fn) throw std::invalid_argument(fmt::format("{}: step(loss_fn) with an empty function", name_));
  refuse_while_evaluating("step(loss_fn)");
  double loss = loss_fn_step(loss_fn);
  ++step_count_;
  return loss;
}

double Optimizer::closure_step(const Closure& closure) {
  double loss = closure();
  ag::NoGradGuard no_grad;
  update();
  return loss;
}

double Optimizer::loss_fn_step(const LossFn& loss_fn) { return closure_step(closure_from(loss_fn)); }

Optimizer::Closure Optimizer::closure_from(const LossFn& loss_fn) {
  return [this, &loss_fn]() {
    zero_grad();
    ag::Tensor loss = loss_fn();
    ag::backward(loss);
    return loss.item();
  };
}

void Optimizer::zero_grad() {
  for (Param& p : params_) p.tensor.zero_grad();
}

std::vector<Optimizer::Work> Optimizer::gradients() const {
  std::vector<Work> work;
  work.reserve(params_.size());
  for (const Param& p : params_) {
    ag::Tensor g = p.tensor.grad();
    if (!g.defined()) continue;
    if (!(g.shape() == p.tensor.shape()) || g.dtype() != p.tensor.dtype()) {
      throw std::invalid_argument(fmt::format("{}: gradient {} for parameter '{}' {}", name_, g.describe(),
                                              p.name, p.tensor.describe()));
    }
    // The update writes parameters through restrict pointers while it reads gradients: a gradient that
    // is some parameter's storage is copied first.
    for (const Param& q : params_) {
      if (g.shares_storage_with(q.tensor)) {
        g = g.clone();
        break;
      }
    }
    work.push_back(Work{&p, g});
  }
  return work;
}

// ---------------------------------------------------------------- groups and learning rates

const std::vector<nn::NamedTensor>& Optimizer::params(std::size_t group) const { return groups_.at(group); }

double Optimizer::lr(std::size_t group) const {
  if (group >= groups_.size()) {
    throw std::out_of_range(fmt::format("{}: group {} of {}", name_, group, groups_.size()));
  }
  return group_lr_value(group);
}

void Optimizer::set_lr(std::size_t group, double lr) {
  if (group >= groups_.size()) {
    throw std::out_of_range(fmt::format("{}: group {} of {}", name_, group, groups_.size()));
  }
  OptionCheck(name_).non_negative("lr", lr);
  if (Optimizer* wrapped = inner()) return wrapped->set_lr(group, lr);
  group_lr(group) = lr;
  lr_changed(group);
}

double& Optimizer::lr_ref(std::size_t group) {
  if (Optimizer* wrapped = inner()) return wrapped->lr_ref(group);
  return group_lr(group);
}

// ---------------------------------------------------------------- the evaluation point

void Optimizer::refuse_while_evaluating(std::string_view what) const {
  if (evaluating_) {
    throw std::logic_error(fmt::format("{}: {} while the parameters hold the evaluation point: call train() first",
                                       name_, what));
  }
}

void Optimizer::eval() {
  if (evaluating_) return;
  swap_eval_point();
  evaluating_ = true;
}

void Optimizer::train() {
  if (!evaluating_) return;
  swap_eval_point();
  evaluating_ = false;
}

void Optimizer::swap_eval_point() {
  std::optional<std::size_t> index = eval_state();
  if (!index) {
    if (Optimizer* wrapped = inner()) evaluating_ ? wrapped->train() : wrapped->eval();
    return;
  }
  for (const Param& p : params_) {
    ParamState* s = find_state(p);
    if (!s) continue;  // never updated: the evaluation point is the parameter itself
    ag::Tensor w = p.tensor, point = s->tensors.at(*index);
    detail::dispatch(w.dtype(), [&]<class T>() { std::swap_ranges(w.data<T>(), w.data<T>() + w.numel(), point.data<T>()); });
  }
}

void Optimizer::set_lr(double lr) {
  for (std::size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

// ---------------------------------------------------------------- state

Optimizer::ParamState& Optimizer::state_for(const Param& param) {
  auto found = state_.find(param.tensor.id());
  if (found != state_.end()) return found->second;
  ParamState s;
  for (std::size_t i = 0, n = tensor_state_names().size(); i < n; ++i) {
    s.tensors.push_back(ag::Tensor::zeros(tensor_state_shape(i, param), param.tensor.dtype()));
  }
  s.scalars.assign(scalar_state_names().size(), 0.0);
  init_state(s, param);
  return state_.emplace(param.tensor.id(), std::move(s)).first->second;
}

Optimizer::ParamState* Optimizer::find_state(const Param& param) {
  auto found = state_.find(param.tensor.id());
  return found == state_.end() ? nullptr : &found->second;
}

const Optimizer::ParamState* Optimizer::find_state(const Param& param) const {
  auto found = state_.find(param.tensor.id());
  return found == state_.end() ? nullptr : &found->second;
}

namespace {
ag::Tensor f64_scalar(double value) { return ag::Tensor::scalar(value, ag::DType::f64); }
}  // namespace

std::vector<nn::NamedTensor> Optimizer::state() const {
  refuse_while_evaluating("state()");
  std::vector<nn::NamedTensor> out;
  out.emplace_back("optimizer/" + name_, f64_scalar(1.0));
  out.emplace_back("global/step", f64_scalar(static_cast<double>(step_count_)));
  out.emplace_back("global/params_with_state", f64_scalar(static_cast<double>(state_.size())));
  for (const GlobalScalar& s : const_cast<Optimizer*>(this)->global_scalars()) {
    out.emplace_back("global/" + s.name, f64_scalar(*s.value));
  }
  for (std::size_t g = 0; g < groups_.size() && !inner(); ++g) {
    out.emplace_back(fmt::format("group/{}/lr", g), f64_scalar(group_lr_value(g)));
  }
  std::vector<std::string> tensor_names = tensor_state_names();
  std::vector<std::string> scalar_names = scalar_state_names();
  for (const Param& p : params_) {
    auto found = state_.find(p.tensor.id());
    if (found == state_.end()) continue;
    const ParamState& s = found->second;
    for (std::size_t i = 0; i < tensor_names.size(); ++i) {
      out.emplace_back("state/" + p.name + "/" + tensor_names[i], s.tensors[i].clone());
    }
    for (std::size_t i = 0; i < scalar_names.size(); ++i) {
      out.emplace_back("state/" + p.name + "/" + scalar_names[i], f64_scalar(s.scalars[i]));
    }
  }
  if (const Optimizer* wrapped = inner()) {
    for (auto& [entry, tensor] : wrapped->state()) out.emplace_back("inner/" + entry, std::move(tensor));
  }
  return out;
}

namespace {

/// "state/<param>/<key>" -> {param, key} (a parameter's name may itself hold '/'); nullopt otherwise.
std::optional<std::pair<std::string, std::string>> split_state_entry(const std::string& entry) {
  if (!entry.starts_with("state/")) return std::nullopt;
  std::size_t slash = entry.rfind('/');
  if (slash <= 6) return std::nullopt;
  return std::pair{entry.substr(6, slash - 6), entry.substr(slash + 1)};
}

/// The first tensor of each name.
std::unordered_map<std::string, const ag::Tensor*> by_name(const std::vector<nn::NamedTensor>& entries) {
  std::unordered_map<std::string, const ag::Tensor*> index;
  for (const auto& [name, tensor] : entries) index.try_emplace(name, &tensor);
  return index;
}

/// The parameters that `entries` hold state for ("state/<param>/...").
std::unordered_set<std::string> params_with_state(const std::vector<nn::NamedTensor>& entries) {
  std::unordered_set<std::string> saved;
  for (const auto& [entry, tensor] : entries) {
    if (auto split = split_state_entry(entry)) saved.insert(split->first);
  }
  return saved;
}

/// Why `tensor` breaks `rule` (its first bad element and how many are bad), or "".
std::string value_problem(const ag::Tensor& tensor, StateRule rule) {
  using Rule = StateRule;
  const std::vector<double> values = tensor.to_vector();
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    bool ok = std::isfinite(v) && (rule == Rule::finite || v >= 0) &&
              (rule != Rule::count || (v == std::floor(v) && v <= 9e15));
    if (!ok && bad++ == 0) first = i;
  }
  if (bad == 0) return {};
  const char* requirement = rule == Rule::count      ? "a count (an integer >= 0)"
                            : rule == Rule::non_negative ? "finite and >= 0"
                                                         : "finite";
  return fmt::format("{} at element {} ({} of {} values are not {})", values[first], first, bad, values.size(),
                     requirement);
}

nn::EntrySpec scalar_spec(std::string name) { return {std::move(name), ag::Shape{}, ag::DType::f64, "expected"}; }

/// Entries without the prefix "inner/" (first) and those with it, the prefix taken off (second).
std::pair<std::vector<nn::NamedTensor>, std::vector<nn::NamedTensor>> split_inner(
    const std::vector<nn::NamedTensor>& entries) {
  std::pair<std::vector<nn::NamedTensor>, std::vector<nn::NamedTensor>> out;
  for (const auto& [name, tensor] : entries) {
    if (name.starts_with("inner/")) {
      out.second.emplace_back(name.substr(6), tensor);
    } else {
      out.first.emplace_back(name, tensor);
    }
  }
  return out;
}

}  // namespace

void Optimizer::load_state(const std::vector<nn::NamedTensor>& entries) {
  refuse_while_evaluating("load_state()");
  nn::throw_if_problems(fmt::format("{}: cannot load the optimiser state", name_), state_problems(entries));
  replace_state(entries);
}

std::vector<std::string> Optimizer::state_problems(const std::vector<nn::NamedTensor>& entries) {
  Optimizer* wrapped = inner();
  auto [own, inner_entries] = wrapped ? split_inner(entries) : std::pair{entries, std::vector<nn::NamedTensor>{}};
  nn::ReportTerms terms{.source = "the state",
                        .target = "expected",
                        .unexpected = [this](const std::string& entry) { return unexpected_entry(entry); }};
  std::vector<std::string> problems = nn::mismatches(own, expected_state(own), terms);
  std::vector<std::string> values = value_problems(own);
  problems.insert(problems.end(), values.begin(), values.end());
  if (wrapped) {
    for (const std::string& problem : wrapped->state_problems(inner_entries)) problems.push_back("inner: " + problem);
  }
  return problems;
}

std::vector<nn::EntrySpec> Optimizer::expected_state(const std::vector<nn::NamedTensor>& entries) const {
  std::vector<nn::EntrySpec> specs{scalar_spec("optimizer/" + name_), scalar_spec("global/step"),
                                   scalar_spec("global/params_with_state")};
  for (const GlobalScalar& s : const_cast<Optimizer*>(this)->global_scalars()) {
    specs.push_back(scalar_spec("global/" + s.name));
  }
  for (std::size_t g = 0; g < groups_.size() && !inner(); ++g) {
    specs.push_back(scalar_spec(fmt::format("group/{}/lr", g)));
  }
  // A parameter's state is all or nothing: one entry of it asks for all of them.
  const std::unordered_set<std::string> saved = params_with_state(entries);
  const std::vector<std::string> tensor_names = tensor_state_names();
  for (const Param& p : params_) {
    if (!saved.contains(p.name)) continue;
    for (std::size_t i = 0; i < tensor_names.size(); ++i) {
      specs.push_back({"state/" + p.name + "/" + tensor_names[i], tensor_state_shape(i, p), p.tensor.dtype(),
                       "for the parameter"});
    }
    for (const std::string& key : scalar_state_names()) specs.push_back(scalar_spec("state/" + p.name + "/" + key));
  }
  return specs;
}

std::string Optimizer::unexpected_entry(const std::string& entry) const {
  if (entry.starts_with("optimizer/")) {
    return fmt::format("the state was saved by '{}', not '{}'", entry.substr(10), name_);
  }
  if (entry.starts_with("group/")) {
    if (inner()) return fmt::format("unexpected ({}'s learning rates are its inner optimiser's)", name_);
    return fmt::format("unexpected (this optimiser has {} group(s))", groups_.size());
  }
  if (entry.starts_with("inner/")) return fmt::format("{} wraps no other optimiser", name_);
  if (auto split = split_state_entry(entry)) {
    const std::string& pname = split->first;
    const std::string& key = split->second;
    bool known = std::any_of(params_.begin(), params_.end(), [&](const Param& p) { return p.name == pname; });
    if (!known) return fmt::format("no parameter named '{}' in this optimiser", pname);
    return fmt::format("'{}' is not part of {}'s state", key, name_);
  }
  return "unexpected entry";
}

std::vector<std::string> Optimizer::value_problems(const std::vector<nn::NamedTensor>& entries) {
  // Only the scalars that passed the shape check (a float64 scalar) are looked at here.
  const auto index = by_name(entries);
  auto value_of = [&](const std::string& entry) -> std::optional<double> {
    auto found = index.find(entry);
    if (found == index.end() || !found->second->defined() || found->second->rank() != 0 ||
        found->second->dtype() != ag::DType::f64) {
      return std::nullopt;
    }
    return found->second->item();
  };
  std::vector<std::string> problems;
  if (auto step = value_of("global/step"); step && (*step < 0 || *step != std::floor(*step) || *step > 9e15)) {
    problems.push_back(fmt::format("global/step: not a step count: {}", *step));
  }
  for (std::size_t g = 0; g < groups_.size() && !inner(); ++g) {
    std::string entry = fmt::format("group/{}/lr", g);
    if (auto lr = value_of(entry); lr && !(*lr >= 0 && std::isfinite(*lr))) {
      problems.push_back(fmt::format("{}: not a learning rate: {}", entry, *lr));
    }
  }
  for (const GlobalScalar& s : global_scalars()) {
    std::string entry = "global/" + s.name;
    if (auto v = value_of(entry); v && !(*v >= s.min && *v <= s.max)) {
      problems.push_back(fmt::format("{}: {} is outside [{}, {}]", entry, *v, s.min, s.max));
    }
  }
  if (auto count = value_of("global/params_with_state")) {
    std::string problem = missing_states(entries, *count);
    if (!problem.empty()) problems.push_back(problem);
  }
  for (const auto& [entry, tensor] : entries) {
    auto split = split_state_entry(entry);
    if (!split || !tensor.defined()) continue;
    std::string problem = value_problem(tensor, state_rule(split->second));
    if (!problem.empty()) problems.push_back(entry + ": " + problem);
  }
  return problems;
}

std::string Optimizer::missing_states(const std::vector<nn::NamedTensor>& entries, double count) const {
  std::unordered_set<std::string> saved;
  for (const std::string& name : params_with_state(entries)) {
    if (std::any_of(params_.begin(), params_.end(), [&](const Param& p) { return p.name == name; })) saved.insert(name);
  }
  if (count == static_cast<double>(saved.size())) return {};
  std::string without;
  for (const Param& p : params_) {
    if (!saved.contains(p.name)) without += (without.empty() ? "" : ", ") + p.name;
  }
  return fmt::format("global/params_with_state: the state says {} parameter(s) have state, it holds state for {}{}",
                     count, saved.size(), without.empty() ? "" : " (none for: " + without + ")");
}

StateRule Optimizer::state_rule(const std::string& key) const {
  static const std::unordered_set<std::string> non_negative{"exp_avg_sq", "max_exp_avg_sq", "sum_sq",    "square_avg",
                                                             "acc_delta",  "exp_inf",        "exp_avg_var", "step_size",
                                                             "eta",        "weight_sum"};
  if (key == "step" || key == "count") return StateRule::count;
  return non_negative.contains(key) ? StateRule::non_negative : StateRule::finite;
}

void Optimizer::replace_state(const std::vector<nn::NamedTensor>& all_entries) {
  // Everything fits. The new per-parameter states first (the only part that allocates), then the swap.
  Optimizer* wrapped = inner();
  auto [entries, inner_entries] =
      wrapped ? split_inner(all_entries) : std::pair{all_entries, std::vector<nn::NamedTensor>{}};
  const auto index = by_name(entries);
  const std::unordered_set<std::string> saved = params_with_state(entries);
  std::unordered_map<const ag::TensorImpl*, ParamState> states;
  for (const Param& p : params_) {
    if (!saved.contains(p.name)) continue;
    const std::string prefix = "state/" + p.name + "/";
    ParamState s;
    for (const std::string& key : tensor_state_names()) s.tensors.push_back(index.at(prefix + key)->clone());
    for (const std::string& key : scalar_state_names()) s.scalars.push_back(index.at(prefix + key)->item());
    states.emplace(p.tensor.id(), std::move(s));
  }
  for (const GlobalScalar& s : global_scalars()) *s.value = index.at("global/" + s.name)->item();
  step_count_ = static_cast<std::int64_t>(index.at("global/step")->item());
  for (std::size_t g = 0; g < groups_.size() && !wrapped; ++g) {
    group_lr(g) = index.at(fmt::format("group/{}/lr", g))->item();
  }
  state_ = std::move(states);
  if (wrapped) wrapped->replace_state(inner_entries);
}

// ---------------------------------------------------------------- kernel helpers

namespace detail {

std::string group_where(const std::string& name, std::size_t group, std::size_t group_count) {
  return group_count > 1 ? fmt::format("{} (group {})", name, group) : name;
}

Decay decay(double lr, double weight_decay, WeightDecay mode) {
  if (mode == WeightDecay::decoupled) return Decay{0.0, 1.0 - lr * weight_decay};
  return Decay{weight_decay, 1.0};
}

}  // namespace detail

}  // namespace optim
