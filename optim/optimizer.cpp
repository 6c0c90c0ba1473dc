#include "optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <map>
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

Optimizer::Optimizer(std::string name, const std::vector<std::vector<nn::NamedTensor>>& groups)
    : name_(std::move(name)), groups_(groups) {
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
  double loss = closure_step(closure);
  ++step_count_;
  return loss;
}

double Optimizer::step(const LossFn& loss_fn) {
  if (!loss_fn) throw std::invalid_argument(fmt::format("{}: step(loss_fn) with an empty function", name_));
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
  group_lr(group) = lr;
  lr_changed(group);
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
    s.tensors.push_back(ag::Tensor::zeros_like(param.tensor));
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
  std::vector<nn::NamedTensor> out;
  out.emplace_back("optimizer/" + name_, f64_scalar(1.0));
  out.emplace_back("global/step", f64_scalar(static_cast<double>(step_count_)));
  for (std::size_t g = 0; g < groups_.size(); ++g) {
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
  return out;
}

void Optimizer::load_state(const std::vector<nn::NamedTensor>& entries) {
  std::vector<std::string> problems;
  std::vector<std::string> tensor_names = tensor_state_names();
  std::vector<std::string> scalar_names = scalar_state_names();
  std::map<std::string, const Param*> by_name;
  for (const Param& p : params_) by_name[p.name] = &p;

  auto index_of = [](const std::vector<std::string>& names, const std::string& key) -> std::ptrdiff_t {
    auto it = std::find(names.begin(), names.end(), key);
    return it == names.end() ? -1 : it - names.begin();
  };
  auto scalar_value = [&](const std::string& entry, const ag::Tensor& t, double& out) {
    if (!t.defined() || t.numel() != 1 || t.dtype() != ag::DType::f64) {
      problems.push_back(fmt::format("{}: expected a float64 scalar, got {}", entry,
                                     t.defined() ? t.describe() : std::string("an undefined tensor")));
      return false;
    }
    out = t.item();
    return true;
  };

  bool tagged = false;
  bool have_step = false;
  double step = 0;
  std::vector<std::optional<double>> lrs(groups_.size());
  // The new per-parameter states, with flags of what was filled.
  struct Loaded {
    ParamState s;
    std::vector<bool> tensor_set, scalar_set;
  };
  std::map<std::string, Loaded> loaded;
  std::unordered_set<std::string> seen;

  for (const auto& [entry, tensor] : entries) {
    if (!seen.insert(entry).second) {
      problems.push_back(fmt::format("{}: appears twice", entry));
      continue;
    }
    if (entry.rfind("optimizer/", 0) == 0) {
      std::string saved_by = entry.substr(10);
      if (saved_by != name_) {
        problems.push_back(fmt::format("{}: the state was saved by '{}', not '{}'", entry, saved_by, name_));
      }
      tagged = true;
    } else if (entry == "global/step") {
      have_step = scalar_value(entry, tensor, step);
      if (have_step && (step < 0 || step != std::floor(step) || step > 9e15)) {
        problems.push_back(fmt::format("{}: not a step count: {}", entry, step));
      }
    } else if (entry.rfind("group/", 0) == 0) {
      std::string rest = entry.substr(6);
      std::size_t slash = rest.find('/');
      std::size_t g = 0;
      bool ok = slash != std::string::npos && rest.substr(slash) == "/lr" && slash > 0 &&
                std::all_of(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(slash),
                            [](char c) { return c >= '0' && c <= '9'; });
      if (ok) {
        // At most 9 digits: std::stoul of a longer run could overflow (a crafted file).
        ok = slash <= 9 && (g = std::stoul(rest.substr(0, slash))) < groups_.size();
      }
      if (!ok) {
        problems.push_back(fmt::format("{}: unexpected (this optimiser has {} group(s))", entry, groups_.size()));
        continue;
      }
      double value = 0;
      if (scalar_value(entry, tensor, value)) {
        if (!(value >= 0) || !std::isfinite(value)) {
          problems.push_back(fmt::format("{}: not a learning rate: {}", entry, value));
        } else {
          lrs[g] = value;
        }
      }
    } else if (entry.rfind("state/", 0) == 0) {
      std::size_t slash = entry.rfind('/');
      std::string pname = entry.substr(6, slash > 6 ? slash - 6 : 0);
      std::string key = entry.substr(slash + 1);
      auto param = by_name.find(pname);
      if (slash <= 6 || param == by_name.end()) {
        problems.push_back(fmt::format("{}: no parameter named '{}' in this optimiser", entry, pname));
        continue;
      }
      std::ptrdiff_t ti = index_of(tensor_names, key), si = index_of(scalar_names, key);
      if (ti < 0 && si < 0) {
        problems.push_back(fmt::format("{}: '{}' is not part of {}'s state", entry, key, name_));
        continue;
      }
      Loaded& l = loaded[pname];
      if (l.tensor_set.empty() && l.scalar_set.empty()) {
        l.s.tensors.resize(tensor_names.size());
        l.s.scalars.assign(scalar_names.size(), 0.0);
        l.tensor_set.assign(tensor_names.size(), false);
        l.scalar_set.assign(scalar_names.size(), false);
      }
      if (ti >= 0) {
        const ag::Tensor& p = param->second->tensor;
        if (!tensor.defined() || !(tensor.shape() == p.shape()) || tensor.dtype() != p.dtype()) {
          problems.push_back(fmt::format("{}: {} in the state, {} for the parameter", entry,
                                         tensor.defined() ? tensor.describe() : std::string("undefined"),
                                         p.describe()));
          continue;
        }
        l.s.tensors[static_cast<std::size_t>(ti)] = tensor.clone();
        l.tensor_set[static_cast<std::size_t>(ti)] = true;
      } else {
        double value = 0;
        if (scalar_value(entry, tensor, value)) {
          l.s.scalars[static_cast<std::size_t>(si)] = value;
          l.scalar_set[static_cast<std::size_t>(si)] = true;
        }
      }
    } else {
      problems.push_back(fmt::format("{}: unexpected entry", entry));
    }
  }

  if (!tagged) problems.push_back(fmt::format("optimizer/{}: missing", name_));
  if (!have_step && !seen.contains("global/step")) problems.push_back("global/step: missing");
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    std::string entry = fmt::format("group/{}/lr", g);
    if (!lrs[g] && !seen.contains(entry)) problems.push_back(entry + ": missing");
  }
  for (const auto& [pname, l] : loaded) {
    for (std::size_t i = 0; i < tensor_names.size(); ++i) {
      std::string entry = "state/" + pname + "/" + tensor_names[i];
      if (!l.tensor_set[i] && !seen.contains(entry)) problems.push_back(entry + ": missing");
    }
    for (std::size_t i = 0; i < scalar_names.size(); ++i) {
      std::string entry = "state/" + pname + "/" + scalar_names[i];
      if (!l.scalar_set[i] && !seen.contains(entry)) problems.push_back(entry + ": missing");
    }
  }

  if (!problems.empty()) {
    std::string message = fmt::format("{}: cannot load the optimiser state ({} problem{}):", name_,
                                      problems.size(), problems.size() == 1 ? "" : "s");
    for (const std::string& p : problems) message += "\n  " + p;
    throw std::runtime_error(message);
  }

  // Everything fits: replace (the per-parameter scalars, e.g. per-tensor learning rates, as saved).
  state_.clear();
  for (auto& [pname, l] : loaded) state_.emplace(by_name.at(pname)->tensor.id(), std::move(l.s));
  step_count_ = static_cast<std::int64_t>(step);
  for (std::size_t g = 0; g < groups_.size(); ++g) group_lr(g) = *lrs[g];
}

// ---------------------------------------------------------------- kernel helpers

namespace detail {

Decay decay(double lr, double weight_decay, WeightDecay mode) {
  if (mode == WeightDecay::decoupled) return Decay{0.0, 1.0 - lr * weight_decay};
  return Decay{weight_decay, 1.0};
}

}  // namespace detail

}  // namespace optim
