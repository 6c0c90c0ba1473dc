#include "optim/registry.hpp"

#include <cmath>

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
