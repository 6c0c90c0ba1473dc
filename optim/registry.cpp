#include "optim/registry.hpp"

#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

namespace optim {

config::Registry<OptimizerEntry>& optimizers() {
  static config::Registry<OptimizerEntry> registry("optimizer");
  return registry;
}

config::Registry<ScheduleEntry>& schedules() {
  static config::Registry<ScheduleEntry> registry("schedule");
  return registry;
}

std::unique_ptr<Optimizer> make_optimizer(const config::Spec& spec, std::vector<GroupSpec> groups) {
  return optimizers().at(spec.name).make(spec, std::move(groups));
}

std::unique_ptr<Optimizer> make_optimizer(const config::Spec& spec, std::vector<nn::NamedTensor> params) {
  std::vector<GroupSpec> groups;
  groups.push_back({std::move(params), {}});
  return make_optimizer(spec, std::move(groups));
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view spec, std::vector<nn::NamedTensor> params) {
  return make_optimizer(config::parse_spec(spec), std::move(params));
}

config::Spec resolve_optimizer(const config::Spec& spec) {
  return {spec.name, optimizers().at(spec.name).resolve(spec)};
}

std::optional<std::string> option_of(const config::Spec& spec, std::string_view option) {
  if (const std::string* value = spec.find(option)) return *value;
  const std::string* inner = spec.find("inner");
  if (!inner || !inner->ends_with(')')) return std::nullopt;
  return option_of(config::parse_spec(*inner), option);
}

namespace detail {

namespace {
/// An entry's function: `fn` of the registration's options. One type for every method.
template <class Fn>
struct Bound {
  std::shared_ptr<const config::SharedOptions> options;
  Fn fn;
  template <class... Args>
  auto operator()(const config::Spec& spec, Args&&... args) const {
    return fn(*options, spec, std::forward<Args>(args)...);
  }
};
}  // namespace

void add_optimizer(std::string name, std::string summary, std::shared_ptr<const config::SharedOptions> options,
                   MakeFn make, ResolveFn resolve) {
  OptimizerEntry entry;
  entry.name = std::move(name);
  entry.summary = std::move(summary);
  entry.options = options->describe();
  entry.make = Bound<MakeFn>{options, make};
  entry.resolve = Bound<ResolveFn>{std::move(options), resolve};
  optimizers().add(std::move(entry));
}

namespace {
/// The same value, written the same way or as the same number ("0.1" and "1e-1").
bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  try {
    std::size_t na = 0, nb = 0;
    double x = std::stod(a, &na), y = std::stod(b, &nb);
    return na == a.size() && nb == b.size() && x == y;
  } catch (const std::exception&) {
    return false;
  }
}
}  // namespace

config::Spec pass_to_inner(const config::Spec& spec, const config::detail::FieldTable& own_keys, config::Spec& inner,
                           const std::string& where) {
  if (const std::string* text = spec.find("inner")) inner = config::parse_spec(*text);
  config::Spec own{spec.name, {}};
  for (const auto& [key, value] : spec.args) {
    if (key == "inner") continue;
    if (own_keys.has(key)) {
      own.args.emplace_back(key, value);
      continue;
    }
    const std::string* there = inner.find(key);
    if (there && !same_value(*there, value)) {
      throw config::SpecError(fmt::format("{}: {}={} conflicts with {}={} in its inner optimiser {}", where, key, value,
                                          key, *there, inner.text()));
    }
    inner.set(key, value);
  }
  return own;
}

}  // namespace detail

// ---- schedules: warm-up, common to all

namespace {

struct Warmup {
  double epochs = 0;
  std::size_t steps = 0;  // > 0: replaces epochs
  double start = 0.1;
};

config::OptionTable<Warmup> warmup_table() {
  config::OptionTable<Warmup> table;
  table.real("warmup", &Warmup::epochs, config::Range::at_least(0), "epochs of linear warm-up before the schedule")
      .count("warmup_steps", &Warmup::steps, 0, static_cast<std::size_t>(1e12), "the same in steps (replaces warmup)")
      .real("warmup_start", &Warmup::start, config::Range::closed(0, 1), "warm-up's first rate, as a fraction");
  return table;
}

/// Splits a schedule spec into its own keys and the warm-up keys.
std::pair<config::Spec, config::Spec> split_warmup(const config::Spec& spec) {
  config::OptionTable<Warmup> table = warmup_table();
  config::Spec own{spec.name, {}}, warmup{spec.name, {}};
  for (const auto& arg : spec.args) (table.has(arg.first) ? warmup : own).args.push_back(arg);
  return {own, warmup};
}

}  // namespace

std::unique_ptr<Schedule> make_schedule(const config::Spec& spec, const ScheduleContext& context) {
  auto [own, warmup_spec] = split_warmup(spec);
  std::unique_ptr<Schedule> schedule = schedules().at(spec.name).make(own, context);
  Warmup warmup = warmup_table().apply({}, warmup_spec, spec.name + " schedule");
  double steps = warmup.steps > 0 ? static_cast<double>(warmup.steps)
                                  : std::round(warmup.epochs * static_cast<double>(context.steps_per_epoch));
  if (steps <= 0) return schedule;
  return std::make_unique<WarmupLR>(std::shared_ptr<const Schedule>(std::move(schedule)), steps, warmup.start);
}

config::Spec resolve_schedule(const config::Spec& spec) {
  auto [own, warmup_spec] = split_warmup(spec);
  config::Spec out{spec.name, schedules().at(spec.name).resolve(own)};
  for (const auto& kv : warmup_table().values(warmup_table().apply({}, warmup_spec, spec.name + " schedule"))) {
    out.args.push_back(kv);
  }
  return out;
}

}  // namespace optim
