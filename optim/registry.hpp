// Optimisers and learning-rate schedules by name: each method registers itself, in its own .cpp (or in a
// user's program), with a one-line summary and the table of its options. The programs, the lab, --help and
// the README's tables read these registries; nothing else lists the methods.
//
//   auto opt = optim::make_optimizer("adam(lr=3e-4,beta2=0.99)", model->named_parameters());
//   // "no weight decay on biases": a second group with its own keys
//   auto opt = optim::make_optimizer(config::parse_spec("sgd(lr=0.1,weight_decay=5e-4)"),
//                                    {{weights}, {biases, config::parse_spec("_(weight_decay=0)")}});
//   optim::resolve_optimizer(config::parse_spec("adam(lr=3e-4)")).text()
//     // "adam(lr=0.0003,weight_decay=0,decoupled=false,beta1=0.9,beta2=0.999,eps=1e-08,eps_placement=outside)"
//
// Registering a method M with options struct O (which has lr, weight_decay, weight_decay_mode and check(),
// see optimizer.hpp) and a constructor M(std::vector<ParamGroup<O>>, const O& defaults):
//   static const optim::RegisterOptimizer<M, O> registration{
//       "name", "one line: what it is (reference)",
//       optim::common_options<O>().real("beta", &O::beta, config::Range::unit(), "decay of ...")};
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/options.hpp"
#include "config/registry.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"

namespace optim {

/// Parameters that share options, and the keys that differ from the optimiser's spec for them.
struct GroupSpec {
  std::vector<nn::NamedTensor> params;
  config::Spec overrides{};  // only its args are read
};

struct OptimizerEntry : config::EntryInfo {
  /// Builds the method from its spec (every key checked) over the groups.
  std::function<std::unique_ptr<Optimizer>(const config::Spec&, std::vector<GroupSpec>)> make;
  /// Every option's value under the spec: the spec's keys, then the defaults.
  std::function<std::vector<std::pair<std::string, std::string>>(const config::Spec&)> resolve;
};

config::Registry<OptimizerEntry>& optimizers();

/// A method by spec, over one group or several. config::SpecError for an unknown name, an unknown key or
/// a value out of range (naming the method, the key and what is allowed).
std::unique_ptr<Optimizer> make_optimizer(const config::Spec& spec, std::vector<GroupSpec> groups);
std::unique_ptr<Optimizer> make_optimizer(const config::Spec& spec, std::vector<nn::NamedTensor> params);
std::unique_ptr<Optimizer> make_optimizer(std::string_view spec, std::vector<nn::NamedTensor> params);
/// The spec with every option written out, defaults included (the name's registration decides the order).
config::Spec resolve_optimizer(const config::Spec& spec);

/// lr, weight_decay and decoupled: the options every method has.
template <class O>
config::OptionTable<O> common_options() {
  config::OptionTable<O> table;
  table.real("lr", &O::lr, config::Range::at_least(0), "learning rate")
      .real("weight_decay", &O::weight_decay, config::Range::at_least(0), "weight decay λ")
      .choice("decoupled", &O::weight_decay_mode,
              {{"false", WeightDecay::coupled}, {"true", WeightDecay::decoupled}},
              "false: L2, g + λw (torch's weight_decay); true: w <- (1 - lr λ) w, as AdamW");
  return table;
}

/// eps and where it goes.
template <class O>
config::OptionTable<O>& eps_options(config::OptionTable<O>& table) {
  return table.real("eps", &O::eps, config::Range::positive(), "ε of the denominator")
      .choice("eps_placement", &O::eps_placement, {{"outside", Eps::outside_sqrt}, {"inside", Eps::inside_sqrt}},
              "g / (sqrt(v) + ε) or g / sqrt(v + ε)");
}

/// momentum γ (momentum, nesterov, nesterov-lookahead).
template <class O>
config::OptionTable<O> momentum_options() {
  return common_options<O>().real("momentum", &O::momentum, config::Range::unit(), "γ, the velocity's decay");
}

/// β1, β2, ε (the Adam family).
template <class O>
config::OptionTable<O> adam_options() {
  config::OptionTable<O> table = common_options<O>();
  table.real("beta1", &O::beta1, config::Range::unit(), "β1, first-moment decay")
      .real("beta2", &O::beta2, config::Range::unit(), "β2, second-moment decay");
  return eps_options(table);
}

/// hyper_lr β and the scope of α (hypergradient methods).
template <class O, class Scope>
config::OptionTable<O>& hyper_options(config::OptionTable<O>& table, Scope global, Scope per_tensor) {
  return table.real("hyper_lr", &O::hyper_lr, config::Range::at_least(0), "β, the hypergradient step")
      .choice("scope", &O::scope, {{"global", global}, {"per_tensor", per_tensor}}, "one α, or one per tensor");
}

namespace detail {

/// What an entry's functions are: plain functions of the registration's shared options (config::OptionsOf<O>,
/// passed untyped), so that every method shares one std::function type and the code per method is just
/// these two functions.
using MakeFn = std::unique_ptr<Optimizer> (*)(const config::SharedOptions& options, const config::Spec& spec,
                                              std::vector<GroupSpec> groups);
using ResolveFn = std::vector<std::pair<std::string, std::string>> (*)(const config::SharedOptions& options,
                                                                       const config::Spec& spec);
/// Adds the entry `name`, its options described at their defaults, whose make and resolve call `make` and
/// `resolve` with `options`.
void add_optimizer(std::string name, std::string summary, std::shared_ptr<const config::SharedOptions> options,
                   MakeFn make, ResolveFn resolve);

/// The spec's options, and each group's with its own keys applied on top; builds M over the groups.
template <class M, class O>
std::unique_ptr<Optimizer> make_method(const config::SharedOptions& shared, const config::Spec& spec,
                                       std::vector<GroupSpec> groups) {
  const auto& options = config::options_of<O>(shared);
  const O base = options.apply(spec);
  std::vector<ParamGroup<O>> param_groups(groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    param_groups[g].params = std::move(groups[g].params);
    const std::string where = group_where(options.where, g, groups.size());
    param_groups[g].options = options.table.apply(base, groups[g].overrides, where);
  }
  return std::make_unique<M>(std::move(param_groups), base);
}

template <class O>
std::vector<std::pair<std::string, std::string>> resolve_method(const config::SharedOptions& shared,
                                                                const config::Spec& spec) {
  const auto& options = config::options_of<O>(shared);
  return options.table.values(options.apply(spec));
}

}  // namespace detail

/// Registers method M (options O) at static initialisation; `defaults` are the registered defaults.
/// Registration runs once: [[gnu::cold]] here and on OptimizerWith's constructor has them compiled for size.
template <class M, class O>
struct RegisterOptimizer {
  [[gnu::cold]] RegisterOptimizer(std::string name, std::string summary, config::OptionTable<O> table,
                                  O defaults = {}) {
    defaults.check(OptionCheck(name));
    auto options = config::share_options(std::move(table), std::move(defaults), name);
    detail::add_optimizer(std::move(name), std::move(summary), std::move(options), &detail::make_method<M, O>,
                          &detail::resolve_method<O>);
  }
};

/// A wrapper's options begin with the optimiser it wraps: `inner`, a spec (wrapper.hpp).
template <class O>
config::OptionTable<O> wrapper_options() {
  config::OptionTable<O> table;
  table.spec("inner", &O::inner, "the optimiser it wraps (a spec); keys the wrapper lacks go to it");
  return table;
}

/// `option` of `spec`, or of its inner spec if the spec is a wrapper's without it (recursively); nullopt
/// if none names it. option_of(lookahead(inner=sgd(lr=0.1)), "lr") -> "0.1".
std::optional<std::string> option_of(const config::Spec& spec, std::string_view option);

namespace detail {
/// Moves the keys of `spec` that the wrapper's table `own` lacks into `inner` (SpecError naming `where` if
/// `inner` has one of them with another value); returns the spec of the rest.
config::Spec pass_to_inner(const config::Spec& spec, const config::detail::FieldTable& own, config::Spec& inner,
                           const std::string& where);

/// A wrapper's options under `spec`: its own keys applied, the others passed to its inner spec.
template <class O>
O wrapper_options_under(const config::OptionsOf<O>& own, const config::Spec& spec) {
  O o = own.defaults;
  config::Spec rest = pass_to_inner(spec, own.table.fields(), o.inner, own.where);
  o = own.table.apply(o, rest, own.where);
  o.check(OptionCheck(own.where));
  return o;
}

template <class M, class O>
std::unique_ptr<Optimizer> make_wrapper(const config::SharedOptions& shared, const config::Spec& spec,
                                        std::vector<GroupSpec> groups) {
  O o = wrapper_options_under(config::options_of<O>(shared), spec);
  return std::make_unique<M>(make_optimizer(o.inner, std::move(groups)), o);
}

template <class O>
std::vector<std::pair<std::string, std::string>> resolve_wrapper(const config::SharedOptions& shared,
                                                                 const config::Spec& spec) {
  const auto& own = config::options_of<O>(shared);
  O o = wrapper_options_under(own, spec);
  o.inner = resolve_optimizer(o.inner);
  return own.table.values(o);
}
}  // namespace detail

/// Registers wrapper M (wrapper.hpp) whose options struct O has `config::Spec inner` and check(); M is built
/// as M(make_optimizer(inner, groups), options). The table starts from wrapper_options<O>(); the spec's keys
/// the table lacks go to the inner spec (and a parameter group's keys go to the inner optimiser's groups).
template <class M, class O>
struct RegisterWrapper {
  [[gnu::cold]] RegisterWrapper(std::string name, std::string summary, config::OptionTable<O> table, O defaults) {
    defaults.check(OptionCheck(name));
    auto own = config::share_options(std::move(table), std::move(defaults), name);
    detail::add_optimizer(std::move(name), std::move(summary), std::move(own), &detail::make_wrapper<M, O>,
                          &detail::resolve_wrapper<O>);
  }
};

// ---- schedules

/// What a schedule needs from the run: the base rate and how many steps an epoch and the run have.
/// Options given in epochs are turned into steps with steps_per_epoch; a schedule is a function of the step.
struct ScheduleContext {
  double base_lr = 0.01;
  std::size_t steps_per_epoch = 1;
  std::size_t total_steps = 1;  // the run's last step (a resumed run counts the earlier ones too)
};

struct ScheduleEntry : config::EntryInfo {
  std::function<std::unique_ptr<Schedule>(const config::Spec&, const ScheduleContext&)> make;
  std::function<std::vector<std::pair<std::string, std::string>>(const config::Spec&)> resolve;
};

config::Registry<ScheduleEntry>& schedules();

/// A schedule by spec: "linear(final=1e-5)", "cosine(epochs=30)", "step(every=10,gamma=0.1)". Every
/// schedule also takes warmup (epochs) or warmup_steps, and warmup_start (the first step's fraction of
/// the rate): a linear ramp before the schedule (WarmupLR).
std::unique_ptr<Schedule> make_schedule(const config::Spec& spec, const ScheduleContext& context);
config::Spec resolve_schedule(const config::Spec& spec);

/// Registers a schedule whose options struct is O: `build(options, context)` makes it.
template <class O>
struct RegisterSchedule {
  using Build = std::function<std::unique_ptr<Schedule>(const O&, const ScheduleContext&)>;
  [[gnu::cold]] RegisterSchedule(std::string name, std::string summary, config::OptionTable<O> table, Build build,
                                 O defaults = {}) {
    std::string where = name + " schedule";
    schedules().add(config::entry_with_options<ScheduleEntry>(std::move(name), std::move(summary), std::move(table),
                                                              defaults, where, std::move(build)));
  }
};

}  // namespace optim
