#include "examples/common/targets.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "data/file.hpp"

namespace examples::lab {

namespace fs = std::filesystem;

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

std::optional<TargetTime> time_to_target(const RunResult& result, double target, std::size_t steps_per_epoch,
                                         bool on_splits) {
  if (on_splits) {
    for (const EvalMetrics& m : result.evaluations) {
      if (m.validation_acc >= target) return TargetTime{m.step, m.seconds, m.epoch};
    }
    return std::nullopt;
  }
  double seconds = 0;
  for (const EpochMetrics& m : result.epochs) {
    seconds += m.seconds;
    if (m.partial) break;
    if (m.test_acc >= target) return TargetTime{m.epoch * steps_per_epoch, seconds, static_cast<double>(m.epoch)};
  }
  return std::nullopt;
}

std::size_t TargetContext::steps_at(std::size_t batch_size) const {
  for (const auto& [batch, steps] : steps_per_epoch) {
    if (batch == batch_size) return steps;
  }
  throw std::logic_error(fmt::format("time to target: no steps per epoch for batch size {}", batch_size));
}

std::string TargetContext::metric() const { return on_splits ? "validation_acc" : eval_name + "_acc"; }

double median(std::vector<double> values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

namespace {

std::string number_cell(double value, const char* format) {
  return std::isfinite(value) ? fmt::format(fmt::runtime(format), value) : std::string();
}

std::vector<config::Spec> specs_of(const std::vector<RunRecord>& records) {
  std::vector<config::Spec> specs;
  for (const RunRecord& r : records) specs.push_back(r.point.optimizer);
  return specs;
}

}  // namespace

std::string targets_csv(const std::vector<RunRecord>& records, const TargetContext& context) {
  const std::vector<std::string> keys = hyper_keys(specs_of(records));
  std::string text = point_header(keys) + ",batch_size,seed,metric,target,reached,step,seconds,epoch\n";
  for (const RunRecord& r : records) {
    if (r.result.interrupted && !r.result.diverged) continue;
    const std::string point = point_cells(r.point.optimizer, keys);
    for (double target : context.targets) {
      std::optional<TargetTime> t =
          time_to_target(r.result, target, context.steps_at(r.point.batch_size), context.on_splits);
      text += fmt::format("{},{},{},{},{:g},{}", point, r.point.batch_size, r.seed, context.metric(), target, t ? 1 : 0);
      text += t ? fmt::format(",{},{:.4f},{:.6g}\n", t->step, t->seconds, t->epoch) : std::string(",,,\n");
    }
  }
  return text;
}

std::string targets_markdown(const std::vector<RunRecord>& records, const TargetContext& context) {
  const auto groups = group(records);
  std::vector<GridPoint> points;
  for (const auto& [point, runs] : groups) points.push_back(point);
  const bool show_batch = batch_varies(points);
  const std::vector<std::string> varying = varying_keys(specs_of(records));
  std::string text = fmt::format("| configuration | target ({}) | reached | median steps | median seconds | median epochs |\n"
                                 "|---|---:|---:|---:|---:|---:|\n", context.metric());
  for (const auto& [point, runs] : groups) {
    for (double target : context.targets) {
      std::vector<double> steps, seconds, epochs;
      for (const RunRecord* r : runs) {
        if (r->result.interrupted && !r->result.diverged) continue;
        std::optional<TargetTime> t = time_to_target(r->result, target, context.steps_at(point.batch_size), context.on_splits);
        steps.push_back(t ? static_cast<double>(t->step) : kInf);
        seconds.push_back(t ? t->seconds : kInf);
        epochs.push_back(t ? t->epoch : kInf);
      }
      const auto reached = std::count_if(seconds.begin(), seconds.end(), [](double s) { return std::isfinite(s); });
      auto shown = [](double value, const char* format) {
        return std::isnan(value) ? std::string("—") : std::isinf(value) ? std::string("never") : fmt::format(fmt::runtime(format), value);
      };
      text += fmt::format("| {} | {:g} % | {} of {} | {} | {} | {} |\n", point_label(point, varying, show_batch),
                          100 * target, reached, seconds.size(), shown(median(steps), "{:.0f}"),
                          shown(median(seconds), "{:.2f}"), shown(median(epochs), "{:.2f}"));
    }
  }
  return text;
}

// ---------------------------------------------------------------- reading a lab's targets.csv

namespace {

/// The path of a lab output's targets.csv: DIR/targets.csv, else the protocol's DIR/seeds/targets.csv.
std::string targets_file(const std::string& dir) {
  const fs::path direct = fs::path(dir) / "targets.csv", seeds = fs::path(dir) / "seeds" / "targets.csv";
  return fs::exists(direct) || !fs::exists(seeds) ? direct.string() : seeds.string();
}

/// A place in a targets.csv, for messages: "<file>:<line>: column <name>: ".
struct Cell {
  const std::string& file;
  std::size_t line;
  std::string column;
  [[noreturn]] void fail(const std::string& text, const std::string& what) const {
    throw std::runtime_error(fmt::format("{}:{}: column {}: '{}' {}", file, line, column, text, what));
  }
};

double number_in(const std::string& text, const Cell& cell) {
  try {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  cell.fail(text, "is not a number");
}

/// A time (steps or seconds) or a target accuracy: finite, >= 0, at most `max`, a whole number if `whole`.
double measure_in(const std::string& text, const Cell& cell, double max, bool whole, const char* what) {
  const double value = number_in(text, cell);
  if (!std::isfinite(value) || value < 0 || value > max || (whole && value != std::floor(value))) {
    cell.fail(text, fmt::format("is not {}", what));
  }
  return value;
}

/// A submission: the configuration's spec without its learning rate (the rate is its tuning).
std::string submission_of(const std::string& spec_text, const std::string& file, std::size_t line) {
  try {
    config::Spec spec = config::parse_spec(spec_text);
    spec.erase("lr");
    return spec.text();
  } catch (const std::exception& error) {
    throw std::runtime_error(fmt::format("{}:{}: column spec: {}", file, line, error.what()));
  }
}

/// The columns read_problem_times reads, by their index in the header.
struct Columns {
  std::size_t spec, batch, metric, target, reached, time;
  std::string time_name;
};

Columns columns_of(const std::vector<std::string>& header, const std::string& file, bool by_steps) {
  auto column = [&](const std::string& name) {
    auto found = std::find(header.begin(), header.end(), name);
    if (found == header.end()) throw std::runtime_error(fmt::format("{}: no column '{}' in its header", file, name));
    return static_cast<std::size_t>(found - header.begin());
  };
  const std::string time = by_steps ? "step" : "seconds";
  return {column("spec"), column("batch_size"), column("metric"), column("target"), column("reached"), column(time), time};
}

/// One row of a targets.csv, checked: a run's time to one target (+inf when it never reached it).
struct TargetRow {
  double target = 0;
  std::string metric, configuration;  // configuration: "spec\nbatch size"
  double time = kInf;
};

TargetRow read_row(const std::vector<std::string>& cells, const Columns& c, const std::string& file, std::size_t line) {
  TargetRow row;
  row.target = measure_in(cells[c.target], {file, line, "target"}, 1, false, "an accuracy in [0, 1]");
  row.metric = cells[c.metric];
  if (row.metric.empty()) throw std::runtime_error(fmt::format("{}:{}: column metric: empty", file, line));
  const char* batch = "a batch size (a whole number, at least 1)";
  if (measure_in(cells[c.batch], {file, line, "batch_size"}, 1e15, true, batch) < 1) {
    Cell{file, line, "batch_size"}.fail(cells[c.batch], std::string("is not ") + batch);
  }
  const std::string& reached = cells[c.reached];
  if (reached != "0" && reached != "1") Cell{file, line, "reached"}.fail(reached, "is neither 0 nor 1");
  const std::string& time = cells[c.time];
  if ((reached == "1") == time.empty()) {
    throw std::runtime_error(fmt::format("{}:{}: reached is {} but column {} is {}", file, line, reached, c.time_name,
                                         time.empty() ? "empty" : "'" + time + "'"));
  }
  if (!time.empty()) {
    const bool steps = c.time_name == "step";
    row.time = measure_in(time, {file, line, c.time_name}, std::numeric_limits<double>::max(), steps,
                          steps ? "a step count (a whole number, at least 0)" : "a time in seconds (finite, at least 0)");
  }
  row.configuration = cells[c.spec] + "\n" + cells[c.batch];
  return row;
}

/// Each submission's best configuration's median time, in the order the configurations first appear.
void set_times(ProblemTimes& problem, const std::vector<std::pair<std::string, std::string>>& order,
               std::map<std::string, std::vector<double>>& configuration_times) {
  for (const auto& run : order) {
    const std::string& configuration = run.first;
    const std::string& submission = run.second;
    const double t = median(configuration_times[configuration]);
    auto known = std::find_if(problem.times.begin(), problem.times.end(), [&](const auto& e) { return e.first == submission; });
    if (known == problem.times.end()) {
      problem.times.emplace_back(submission, t);
    } else {
      known->second = std::min(known->second, t);  // the submission's best configuration
    }
  }
}

}  // namespace

ProblemTimes read_problem_times(const std::string& dir, bool by_steps) {
  const std::string file = targets_file(dir);
  std::istringstream lines(data::read_regular_file(file, "a lab's times to target"));
  std::string line;
  if (!std::getline(lines, line)) throw std::runtime_error(file + ": empty (no header)");
  const std::vector<std::string> header = csv_cells(line);
  const Columns columns = columns_of(header, file, by_steps);
  ProblemTimes problem{dir, "", std::numeric_limits<double>::quiet_NaN(), {}};
  std::map<std::string, std::vector<double>> configuration_times;  // "spec\nbatch" -> a time per seed
  std::vector<std::pair<std::string, std::string>> order;           // (configuration, submission), first seen
  for (std::size_t number = 2; std::getline(lines, line); ++number) {
    if (line.empty()) continue;
    const std::vector<std::string> cells = csv_cells(line);
    if (cells.size() != header.size()) {
      throw std::runtime_error(fmt::format("{}:{}: {} cells, the header has {}", file, number, cells.size(), header.size()));
    }
    const TargetRow row = read_row(cells, columns, file, number);
    if (std::isnan(problem.target)) {
      problem.target = row.target;
      problem.metric = row.metric;
    }
    if (row.target != problem.target) continue;  // another of the grid's targets: the first is the problem's
    if (row.metric != problem.metric) {
      throw std::runtime_error(fmt::format("{}:{}: column metric: '{}', but the rows before time '{}'", file, number,
                                           row.metric, problem.metric));
    }
    const std::string submission = submission_of(cells[columns.spec], file, number);
    if (!configuration_times.contains(row.configuration)) order.emplace_back(row.configuration, submission);
    configuration_times[row.configuration].push_back(row.time);
  }
  if (order.empty()) {
    throw std::runtime_error(file + ": no runs with a target (a function problem has none: a function has no accuracy)");
  }
  set_times(problem, order, configuration_times);
  return problem;
}

// ---------------------------------------------------------------- performance profiles

std::vector<Profile> performance_profiles(const std::vector<ProblemTimes>& problems, double tau_max) {
  if (problems.empty()) throw std::invalid_argument("performance profiles: no problems");
  if (!(tau_max > 1)) throw std::invalid_argument(fmt::format("performance profiles: tau_max must exceed 1, got {:g}", tau_max));
  std::vector<Profile> profiles;
  for (const ProblemTimes& p : problems) {
    for (const auto& entry : p.times) {
      const std::string& submission = entry.first;
      if (std::none_of(profiles.begin(), profiles.end(), [&](const Profile& q) { return q.submission == submission; })) {
        profiles.push_back({submission, {}, 0});
      }
    }
  }
  for (const ProblemTimes& p : problems) {
    double best = kInf;
    for (const auto& [submission, time] : p.times) best = std::min(best, time);
    for (Profile& profile : profiles) {
      auto entry = std::find_if(p.times.begin(), p.times.end(), [&](const auto& e) { return e.first == profile.submission; });
      const double time = entry == p.times.end() ? kInf : entry->second;
      // Reached in no time (a target met before the first step) is the best there is.
      profile.ratios.push_back(!std::isfinite(time) ? kInf : best <= 0 ? (time <= 0 ? 1.0 : kInf) : time / best);
    }
  }
  // ∫_1^τ_max [r ≤ τ] dτ = τ_max - r for r ≤ τ_max (r ≥ 1): the integral of the step function, exactly.
  for (Profile& profile : profiles) {
    double area = 0;
    for (double r : profile.ratios) area += r <= tau_max ? tau_max - r : 0.0;
    profile.score = area / (static_cast<double>(problems.size()) * (tau_max - 1));
  }
  std::stable_sort(profiles.begin(), profiles.end(), [](const Profile& a, const Profile& b) { return a.score > b.score; });
  return profiles;
}

double profile_at(const Profile& profile, double tau) {
  if (profile.ratios.empty()) return 0;
  const auto within = std::count_if(profile.ratios.begin(), profile.ratios.end(), [tau](double r) { return r <= tau; });
  return static_cast<double>(within) / static_cast<double>(profile.ratios.size());
}

std::vector<std::string> submission_labels(const std::vector<Profile>& profiles) {
  std::vector<config::Spec> specs;
  for (const Profile& p : profiles) specs.push_back(config::parse_spec(p.submission));
  std::vector<std::string> labels;
  for (const config::Spec& spec : specs) {
    std::vector<config::Spec> namesakes;
    for (const config::Spec& other : specs) {
      if (other.name == spec.name) namesakes.push_back(other);
    }
    std::string label = spec.name;
    for (const std::string& key : varying_keys(namesakes)) {
      if (std::optional<std::string> value = hyper_value(spec, key)) label += " " + key + "=" + *value;
    }
    labels.push_back(label);
  }
  return labels;
}

std::string profiles_csv(const std::vector<ProblemTimes>& problems, const std::vector<Profile>& profiles) {
  std::string text = "submission,score";
  for (const ProblemTimes& p : problems) text += ",ratio " + csv_text_cell(p.problem);
  text += "\n";
  for (const Profile& profile : profiles) {
    text += csv_text_cell(profile.submission) + fmt::format(",{:.6f}", profile.score);
    for (double r : profile.ratios) text += std::isinf(r) ? std::string(",inf") : fmt::format(",{:.6g}", r);
    text += "\n";
  }
  return text;
}

std::string profiles_markdown(const std::vector<ProblemTimes>& problems, const std::vector<Profile>& profiles,
                              bool by_steps, double tau_max) {
  const char* unit = by_steps ? "steps" : "seconds";
  std::string text = fmt::format(
      "# Performance profiles\n\nTime to target in {0}: per problem and submission (an optimiser spec without its "
      "learning rate), its best configuration's median over the seeds. Ratio: the time over the fastest "
      "submission's on that problem. Score: 1/(τ_max - 1) ∫_1^τ_max ρ(τ) dτ with τ_max = {1:g} (1: fastest "
      "everywhere; 0: never within {1:g}× of the fastest).\n\n| problem | metric | target |\n|---|---|---:|\n",
      unit, tau_max);
  for (const ProblemTimes& p : problems) text += fmt::format("| {} | {} | {:g} % |\n", p.problem, p.metric, 100 * p.target);
  text += "\n| submission | score";
  std::string rule = "|---|---:";
  for (const ProblemTimes& p : problems) {
    text += fmt::format(" | {} ({})", p.problem, unit);
    rule += "|---:";
  }
  text += " |\n" + rule + "|\n";
  const std::vector<std::string> labels = submission_labels(profiles);
  for (std::size_t s = 0; s < profiles.size(); ++s) {
    const Profile& profile = profiles[s];
    text += fmt::format("| {} | {:.3f}", labels[s], profile.score);
    for (std::size_t i = 0; i < problems.size(); ++i) {
      auto entry = std::find_if(problems[i].times.begin(), problems[i].times.end(),
                                [&](const auto& e) { return e.first == profile.submission; });
      const double time = entry == problems[i].times.end() ? kInf : entry->second;
      text += std::isinf(time) ? std::string(" | never")
                               : fmt::format(" | {} (×{:.2f})", number_cell(time, by_steps ? "{:.0f}" : "{:.3g}"),
                                             profile.ratios[i]);
    }
    text += " |\n";
  }
  text += "\nThe submissions' resolved specs (every option written out) are in profiles.csv.\n";
  return text;
}

namespace {

/// profiles.dat: a block per submission: the step function ρ(τ) on [1, tau_max] as (τ, ρ) corners.
std::string profile_data(const std::vector<Profile>& profiles, double tau_max) {
  std::string data;
  for (const Profile& profile : profiles) {
    data += "# " + profile.submission + "\n# tau rho\n";
    std::vector<double> corners{1.0};
    for (double r : profile.ratios) {
      if (r <= tau_max) corners.push_back(r);
    }
    std::sort(corners.begin(), corners.end());
    corners.push_back(tau_max);
    for (double tau : corners) data += fmt::format("{:.9g} {:.9g}\n", tau, profile_at(profile, tau));
    data += "\n\n";
  }
  return data;
}

std::string profile_script(const std::string& terminal, const std::string& output, const std::vector<Profile>& profiles,
                           const std::vector<std::string>& colours, bool by_steps, double tau_max) {
  const std::vector<std::string> labels = submission_labels(profiles);
  std::string script = fmt::format(
      "{}\nset output {}\nset title 'Performance profiles: time to target ({})'\nset xrange [1:{:g}]\n"
      "set yrange [-0.02:1.02]\nset xlabel 'τ: time over the fastest submission''s'\nset ylabel 'ρ(τ): fraction of problems'\n"
      "set grid lc rgb '#d0d0d0'\nset key below horizontal Left reverse samplen 2.5\nplot \\\n",
      terminal, gnuplot_string(output), by_steps ? "steps" : "training seconds", tau_max);
  for (std::size_t i = 0; i < profiles.size(); ++i) {
    script += fmt::format("  'profiles.dat' index {} using 1:2 with steps lw 2.5 lc rgb '{}' title {}{}\n", i, colours[i],
                          gnuplot_string(fmt::format("{} (score {:.3f})", labels[i], profiles[i].score)),
                          i + 1 < profiles.size() ? ", \\" : "");
  }
  return script + "unset output\n";
}

}  // namespace

PlotOutcome write_profile_plot(const std::string& out_dir, const std::string& gnuplot,
                               const std::vector<Profile>& profiles, bool by_steps, double tau_max) {
  const fs::path out(out_dir);
  write_text((out / "profiles.dat").string(), profile_data(profiles, tau_max));
  std::vector<std::string> families;
  for (const Profile& p : profiles) families.push_back(config::parse_spec(p.submission).name);
  const std::vector<std::string> colours = family_colours(families);
  return render_figure(
      out_dir, gnuplot, "profiles", 1000, 620, "# Re-render with `gnuplot profiles.gp` in this directory.\n",
      [&](const std::string& terminal, const std::string& output) {
        return profile_script(terminal, output, profiles, colours, by_steps, tau_max);
      },
      "no profile plot");
}

}  // namespace examples::lab
