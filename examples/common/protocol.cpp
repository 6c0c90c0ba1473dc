#include "examples/common/protocol.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/blas.hpp"
#include "config/options.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/mpi_grid.hpp"
#include "optim/registry.hpp"
#include "problems/test_problems.hpp"

namespace examples::lab {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- flags

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw FlagError(message);
}

/// A number of --lr-grid; FlagError naming the part that is not one.
double grid_number(const std::string& text, const std::string& part, const std::string& whole) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  require(used == text.size() && !text.empty(),
          fmt::format("--lr-grid {}: {} '{}' is not a number (the form is LO:HI:N, e.g. 1e-5:1e2:36)", whole, part, text));
  return value;
}

}  // namespace

std::vector<double> parse_lr_grid(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t colon; (colon = text.find(':', start)) != std::string::npos; start = colon + 1) {
    parts.push_back(text.substr(start, colon - start));
  }
  parts.push_back(text.substr(start));
  require(parts.size() == 3, fmt::format("--lr-grid {}: the form is LO:HI:N, e.g. 1e-5:1e2:36", text));
  const double lo = grid_number(parts[0], "LO", text), hi = grid_number(parts[1], "HI", text);
  const double n = grid_number(parts[2], "N", text);
  require(lo > 0 && std::isfinite(lo) && std::isfinite(hi) && hi >= lo,
          fmt::format("--lr-grid {}: needs 0 < LO <= HI, both finite", text));
  require(n >= 1 && n <= 10000 && n == std::floor(n), fmt::format("--lr-grid {}: N must be a whole number in [1, 10000]", text));
  require(n > 1 || lo == hi, fmt::format("--lr-grid {}: one point needs LO = HI", text));
  const std::size_t points = static_cast<std::size_t>(n);
  std::vector<double> lrs;
  const double a = std::log10(lo), b = std::log10(hi), last = static_cast<double>(points - 1);
  for (std::size_t i = 0; i < points; ++i) {
    const double k = static_cast<double>(i);
    const double exponent = points == 1 ? a : (a * (last - k) + b * k) / last;  // exact for whole powers of ten
    // Ten significant digits, so that a spec reads lr=1.584893192e-05; the ends exactly as given.
    lrs.push_back(i == 0 ? lo : i + 1 == points ? hi : std::stod(fmt::format("{:.10g}", std::pow(10.0, exponent))));
  }
  require(std::adjacent_find(lrs.begin(), lrs.end()) == lrs.end() || points == 1,
          fmt::format("--lr-grid {}: LO = HI gives the same rate {} times", text, points));
  return lrs;
}

const std::vector<std::string>& selection_names() {
  static const std::vector<std::string> names{"final-accuracy", "best-accuracy", "final-loss", "best-loss"};
  return names;
}

Selection parse_selection(const std::string& text) {
  const auto& names = selection_names();
  auto found = std::find(names.begin(), names.end(), text);
  require(found != names.end(), fmt::format("--select {}: one of final-accuracy, best-accuracy, final-loss, best-loss", text));
  return {.best = text.starts_with("best"), .loss = text.ends_with("loss")};
}

void add_protocol_flags(CLI::App& app, ProtocolFlagValues& values) {
  app.add_flag("--protocol", values.on,
               "DeepOBS's tuning protocol: every optimiser (a spec without lr=) over --lr-grid with seed 0 into OUT/tune, "
               "the rate with the best --select validation metric chosen, then that setting with --protocol-seeds seeds "
               "into OUT/seeds; writes OUT/sensitivity.csv, sensitivity.png and performance.md");
  app.add_option("--lr-grid", values.lr_grid, "with --protocol: LO:HI:N, N learning rates log-spaced from LO to HI")
      ->capture_default_str();
  count_option(app.add_option("--protocol-seeds", values.seeds, "with --protocol: the chosen setting's seeds, 0 .. N-1"),
               1, 1000)
      ->capture_default_str();
  app.add_option("--select", values.select,
                 "with --protocol: the validation metric a rate is chosen on: final-accuracy (DeepOBS's), "
                 "best-accuracy, final-loss or best-loss")
      ->check(CLI::IsMember(selection_names()))
      ->capture_default_str();
}

namespace {

/// Each optimiser the texts name (a grid over keys other than lr gives one per point), with its settings.
void add_optimisers(const std::vector<std::string>& texts, const std::function<config::Spec(const std::string&)>& resolve,
                    ProtocolConfig& protocol) {
  for (const std::string& text : texts) {
    for (const std::string& one : config::split_specs(text)) {
      for (const config::Spec& base : config::expand_grid(one)) {
        if (std::optional<std::string> lr = optim::option_of(base, "lr")) {
          throw FlagError(fmt::format("--protocol tunes the learning rate, but {} sets lr={} itself; leave lr= out",
                                      base.text(), *lr));
        }
        protocol.names.push_back(base.text());
        protocol.settings.push_back(expand_optimizers({base.text()}, protocol.lrs, resolve));
      }
    }
  }
}

}  // namespace

void apply_protocol(const ProtocolFlagValues& values, const CLI::App& app, const std::vector<std::string>& texts,
                    const std::function<config::Spec(const std::string&)>& resolve, LabConfig& lab) {
  if (!values.on) {
    for (const char* flag : {"--lr-grid", "--protocol-seeds", "--select"}) {
      require(app.count(flag) == 0, fmt::format("{}: only with --protocol", flag));
    }
    return;
  }
  for (auto [flag, instead] : {std::pair{"--lrs", "--lr-grid"}, {"--seeds", "--protocol-seeds"}}) {
    require(app.count(flag) == 0, fmt::format("{}: not with --protocol (it takes {})", flag, instead));
  }
  require(lab.batch_sizes.size() == 1, "--batch-sizes: --protocol tunes the learning rate at one batch size");
  require(lab.base.validation == 0, "--validation: --protocol holds out DeepOBS's validation set itself");
  require(lab.base.epochs > 0, "--epochs 0: --protocol chooses each optimiser's rate by the validation metric its "
                               "runs reach in training; give at least 1 epoch");
  ProtocolConfig& protocol = lab.protocol;
  protocol.enabled = true;
  protocol.lrs = parse_lr_grid(values.lr_grid);
  protocol.seeds = values.seeds;
  protocol.select = values.select;
  if (!lab.base.problem.empty()) {
    const std::string& why = problems::test_problems().at(lab.base.problem).untunable;
    require(why.empty(), fmt::format("--protocol on {}: {}; train it in a grid (--optimizers with rates) instead",
                                     lab.base.problem, why));
  }
  if (is_function_problem(lab.base)) {  // a function has no accuracy: its rates are chosen on the validation loss
    require(app.count("--select") == 0 || parse_selection(values.select).loss,
            fmt::format("--select {}: {} is a function problem, without an accuracy (final-loss or best-loss)",
                        values.select, lab.base.problem));
    if (app.count("--select") == 0) protocol.select = "final-loss";
  }
  parse_selection(protocol.select);
  add_optimisers(texts, resolve, protocol);
  lab.optimizers.clear();
  for (const auto& settings : protocol.settings) {
    for (const config::Spec& spec : settings) {
      require(std::find(lab.optimizers.begin(), lab.optimizers.end(), spec) == lab.optimizers.end(),
              fmt::format("--protocol: {} is given twice (the same optimiser twice)", spec.text()));
      lab.optimizers.push_back(spec);
    }
  }
  lab.seeds = {0};
  lab.base.evaluation_splits = true;  // the validation set the choice is made on
}

// ---------------------------------------------------------------- metrics and the choice

RunMetrics metrics_of(const RunResult& result) {
  RunMetrics m;
  if (result.diverged || result.evaluations.empty()) return m;
  const EvalMetrics& last = result.evaluations.back();
  m.final_validation_loss = last.validation_loss, m.final_validation_acc = last.validation_acc;
  m.final_test_loss = last.test_loss, m.final_test_acc = last.test_acc;
  m.best_validation_loss = m.best_test_loss = std::numeric_limits<double>::infinity();
  m.best_validation_acc = m.best_test_acc = -std::numeric_limits<double>::infinity();
  for (const EvalMetrics& e : result.evaluations) {
    m.best_validation_loss = std::min(m.best_validation_loss, e.validation_loss);
    m.best_validation_acc = std::max(m.best_validation_acc, e.validation_acc);
    m.best_test_loss = std::min(m.best_test_loss, e.test_loss);
    m.best_test_acc = std::max(m.best_test_acc, e.test_acc);
  }
  if (std::isnan(last.validation_acc)) m.best_validation_acc = m.best_test_acc = last.validation_acc;  // none
  return m;
}

double selected_metric(const RunMetrics& m, Selection selection) {
  if (selection.loss) return selection.best ? m.best_validation_loss : m.final_validation_loss;
  return selection.best ? m.best_validation_acc : m.final_validation_acc;
}

std::vector<std::optional<std::size_t>> choose(const std::vector<SensitivityRow>& rows, std::size_t optimisers,
                                               Selection selection) {
  std::vector<std::optional<std::size_t>> chosen(optimisers);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const SensitivityRow& row = rows[i];
    const double value = selected_metric(row.metrics, selection);
    if (row.diverged || !std::isfinite(value)) continue;
    std::optional<std::size_t>& best = chosen.at(row.optimiser);
    if (!best) {
      best = i;
      continue;
    }
    const double current = selected_metric(rows[*best].metrics, selection);
    if (selection.loss ? value < current : value > current) best = i;  // strictly better: ties keep the first
  }
  return chosen;
}

// ---------------------------------------------------------------- tables

namespace {

std::string number_cell(double value) { return std::isnan(value) ? std::string() : fmt::format("{:.9g}", value); }

double lr_of(const config::Spec& spec) {
  std::optional<std::string> lr = optim::option_of(spec, "lr");
  if (!lr) throw std::logic_error(fmt::format("the protocol's setting {} has no lr", spec.text()));
  return std::stod(*lr);
}

const char* const kNone = "—";

std::string pm(const Stat& s, double scale, int decimals) {
  if (s.n == 0) return kNone;
  return fmt::format("{:.{}f} ± {:.{}f}", scale * s.mean, decimals, scale * s.std, decimals);
}

}  // namespace

std::string sensitivity_csv(const std::vector<SensitivityRow>& rows, const std::vector<std::string>& names) {
  std::string text =
      "optimizer,spec,lr,diverged,final_validation_loss,final_validation_acc,best_validation_loss,"
      "best_validation_acc,chosen\n";
  for (const SensitivityRow& r : rows) {
    const RunMetrics& m = r.metrics;
    text += fmt::format("{},{},{:.9g},{},{},{},{},{},{}\n", csv_text_cell(names.at(r.optimiser)),
                        csv_text_cell(r.setting.text()), r.lr, r.diverged ? 1 : 0, number_cell(m.final_validation_loss),
                        number_cell(m.final_validation_acc), number_cell(m.best_validation_loss),
                        number_cell(m.best_validation_acc), r.chosen ? 1 : 0);
  }
  return text;
}

std::string performance_csv(const std::vector<PerformanceRow>& rows) {
  std::string text =
      "optimizer,spec,lr,runs,diverged,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,best_test_acc_std,"
      "final_test_loss_mean,final_test_loss_std,best_test_loss_mean,best_test_loss_std\n";
  for (const PerformanceRow& r : rows) {
    text += fmt::format("{},{},{:.9g},{},{},{},{},{},{},{},{},{},{}\n", csv_text_cell(r.optimiser),
                        csv_text_cell(r.setting.text()), r.lr, r.runs, r.diverged, number_cell(r.final_test_acc.mean),
                        number_cell(r.final_test_acc.std), number_cell(r.best_test_acc.mean),
                        number_cell(r.best_test_acc.std), number_cell(r.final_test_loss.mean),
                        number_cell(r.final_test_loss.std), number_cell(r.best_test_loss.mean),
                        number_cell(r.best_test_loss.std));
  }
  return text;
}

std::string performance_markdown(const std::vector<PerformanceRow>& rows, bool accuracy) {
  // Without accuracy (a function problem's runs), its columns are left out.
  std::string text = accuracy ? "| optimizer | chosen lr | runs | final test acc (%) | best test acc (%) | final test "
                                "loss | best test loss | diverged |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
                              : "| optimizer | chosen lr | runs | final test loss | best test loss | diverged |\n"
                                "|---|---:|---:|---:|---:|---:|\n";
  for (const PerformanceRow& r : rows) {
    const std::string accuracies =
        accuracy ? fmt::format(" {} | {} |", pm(r.final_test_acc, 100, 2), pm(r.best_test_acc, 100, 2)) : "";
    text += fmt::format("| {} | {:.4g} | {} |{} {} | {} | {} |\n", r.optimiser, r.lr, r.runs, accuracies,
                        pm(r.final_test_loss, 1, 4), pm(r.best_test_loss, 1, 4), r.diverged);
  }
  return text;
}

// ---------------------------------------------------------------- the two phases

namespace {

/// Phase 1's runs in the order of the optimisers and their rates (a run the grid did not reach: diverged).
std::vector<SensitivityRow> sensitivity_of(const ProtocolConfig& protocol, const std::vector<RunRecord>& records) {
  std::vector<SensitivityRow> rows;
  for (std::size_t i = 0; i < protocol.settings.size(); ++i) {
    for (const config::Spec& setting : protocol.settings[i]) {
      SensitivityRow row;
      row.optimiser = i, row.setting = setting, row.lr = lr_of(setting);
      auto found = std::find_if(records.begin(), records.end(), [&](const RunRecord& r) { return r.point.optimizer == setting; });
      row.diverged = found == records.end() || found->result.diverged;
      if (found != records.end()) row.metrics = metrics_of(found->result);
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

PerformanceRow performance_of(const std::string& name, const config::Spec& setting, const std::vector<RunRecord>& records) {
  PerformanceRow row;
  row.optimiser = name, row.setting = setting, row.lr = lr_of(setting);
  std::vector<double> final_acc, best_acc, final_loss, best_loss;
  for (const RunRecord& r : records) {
    if (!(r.point.optimizer == setting) || (r.result.interrupted && !r.result.diverged)) continue;
    ++row.runs;
    const RunMetrics m = metrics_of(r.result);
    if (r.result.diverged || std::isnan(m.final_test_loss)) {  // NaN: no evaluation to report
      ++row.diverged;
      continue;
    }
    final_acc.push_back(m.final_test_acc);
    best_acc.push_back(m.best_test_acc);
    final_loss.push_back(m.final_test_loss);
    best_loss.push_back(m.best_test_loss);
  }
  row.final_test_acc = stat_of(final_acc);
  row.best_test_acc = stat_of(best_acc);
  row.final_test_loss = stat_of(final_loss);
  row.best_test_loss = stat_of(best_loss);
  return row;
}

/// Phase 2's grid: the chosen settings with seeds 0 .. N-1, into OUT/seeds.
LabConfig seeds_phase(const LabConfig& lab, const std::vector<config::Spec>& chosen_settings) {
  LabConfig phase = lab;
  phase.out_dir = (fs::path(lab.out_dir) / "seeds").string();
  phase.earlier_store = (fs::path(lab.out_dir) / "tune" / "runs").string();  // seed 0 of a chosen setting ran there
  phase.optimizers = chosen_settings;
  phase.seeds.clear();
  for (std::size_t s = 0; s < lab.protocol.seeds; ++s) phase.seeds.push_back(s);
  return phase;
}

/// Under MPI the choice is rank 0's (it alone has phase 1's results): it sends, for each optimiser, the position of
/// its chosen setting in ProtocolConfig::settings (kNoChoice: none), after a first value saying whether phase 2 runs
/// (0: stop, interrupted). Every rank returns the chosen settings, or nullopt to stop. One rank: no message.
constexpr std::size_t kNoChoice = static_cast<std::size_t>(-1);

std::optional<std::vector<config::Spec>> agree_on_choice(const ProtocolConfig& protocol, bool go,
                                                         const std::vector<SensitivityRow>& rows,
                                                         const std::vector<std::optional<std::size_t>>& chosen) {
  std::vector<std::size_t> message{go ? 1u : 0u};
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    if (!chosen[i]) {
      message.push_back(kNoChoice);
      continue;
    }
    const std::vector<config::Spec>& settings = protocol.settings[rows[*chosen[i]].optimiser];
    message.push_back(static_cast<std::size_t>(
        std::find(settings.begin(), settings.end(), rows[*chosen[i]].setting) - settings.begin()));
  }
  message = mpi::broadcast_from_rank0(std::move(message));
  if (message.empty() || message[0] == 0) return std::nullopt;
  std::vector<config::Spec> settings;
  for (std::size_t i = 1; i < message.size(); ++i) {
    if (message[i] != kNoChoice) settings.push_back(protocol.settings.at(i - 1).at(message[i]));
  }
  return settings;
}

void say(std::FILE* log, const std::string& text) {
  if (!log) return;
  fmt::print(log, "{}\n", text);
  std::fflush(log);
}

/// The choice on `log`, and an error when no optimiser has a run to choose.
void report_choice(const ProtocolConfig& protocol, const std::vector<SensitivityRow>& rows,
                   const std::vector<std::optional<std::size_t>>& chosen, std::FILE* log) {
  const Selection selection = parse_selection(protocol.select);
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    say(log, chosen[i] ? fmt::format("# protocol: {} chooses lr={:g} ({} validation {} {:.6g})", protocol.names[i],
                                     rows[*chosen[i]].lr, selection.best ? "best" : "final",
                                     selection.loss ? "loss" : "accuracy", selected_metric(rows[*chosen[i]].metrics, selection))
                       : fmt::format("# protocol: {}: every rate of the grid diverged; it has no phase 2", protocol.names[i]));
  }
  if (std::none_of(chosen.begin(), chosen.end(), [](const auto& c) { return c.has_value(); })) {
    throw std::runtime_error("--protocol: no optimiser has a run to choose: every run of phase 1 diverged or failed "
                             "(tune/runs.csv says how); phase 2 is not run");
  }
}

/// The study in a line: the problem (or model and data), batch size, epochs.
std::string context_line(const LabConfig& lab) {
  const RunConfig& b = lab.base;
  const std::string what = b.problem.empty() ? fmt::format("{} on {}", b.model.text(), b.dataset) : b.problem;
  return fmt::format("{}, batch {}, {} epoch{}", what, lab.batch_sizes.front(), b.epochs, b.epochs == 1 ? "" : "s");
}

/// performance.md: what was run and chosen how, then the table.
std::string performance_document(const LabConfig& lab, const std::vector<PerformanceRow>& rows) {
  const ProtocolConfig& p = lab.protocol;
  return fmt::format(
      "# {} --protocol: {}\n\n"
      "Phase 1 (tune/): each optimiser at {} learning rates log-spaced over {:g} … {:g}, seed 0; the rate with the best "
      "{} validation {} is chosen (sensitivity.csv, sensitivity.png). Phase 2 (seeds/): the chosen setting with seeds "
      "0 … {}. Test {} on DeepOBS's splits' test set: final is the last evaluation, best the best one; "
      "mean ± sample standard deviation over the runs that did not diverge.\n\n{}",
      lab.program, context_line(lab), p.lrs.size(), p.lrs.front(),
      p.lrs.back(), parse_selection(p.select).best ? "best" : "final", parse_selection(p.select).loss ? "loss" : "accuracy",
      p.seeds - 1, is_function_problem(lab.base) ? "loss (a function has no accuracy)" : "accuracy and loss",
      performance_markdown(rows, !is_function_problem(lab.base))) +
         baselines_section(lab.base);
}

}  // namespace

ProtocolResult run_protocol(const LabConfig& lab, const Datasets& datasets, std::FILE* log) {
  const ProtocolConfig& protocol = lab.protocol;
  const fs::path out(lab.out_dir);
  ProtocolResult result;
  if (lab.rank == 0) {  // a table there says the protocol finished: none until this one has
    for (const char* name : {"performance.csv", "performance.md"}) fs::remove(out / name);
  }
  LabConfig tuning = lab;
  tuning.out_dir = (out / "tune").string();
  tuning.plots = false;  // a curve per rate would bury each other: sensitivity.png is phase 1's figure
  say(log, fmt::format("# protocol, phase 1: {} optimiser(s) x {} learning rates, seed 0, into {}", protocol.names.size(),
                       protocol.lrs.size(), tuning.out_dir));
  result.tuning = run_lab(tuning, datasets, log);
  if (lab.rank != 0) {  // its share of both phases: rank 0 chooses and reports
    if (std::optional<std::vector<config::Spec>> settings = agree_on_choice(protocol, false, {}, {})) {
      run_lab(seeds_phase(lab, *settings), datasets, nullptr);
    }
    return result;
  }
  if ((result.interrupted = result.tuning.interrupted)) {
    agree_on_choice(protocol, false, {}, {});
    return result;
  }
  if (const std::string failures = failures_of(result.tuning); !failures.empty()) {
    // The choice would be made without them: a failure is not a property of the rate, as a divergence is.
    throw std::runtime_error(fmt::format("--protocol: phase 1: {}; phase 2 is not run, as the choice would be made "
                                         "without the failed run(s): the same command runs them again (the other "
                                         "runs are kept in {}; a failure that repeats is a fault to fix, or an "
                                         "optimiser to leave out)", failures, (out / "tune" / "runs").string()));
  }

  result.sensitivity = sensitivity_of(protocol, result.tuning.records);
  result.chosen = choose(result.sensitivity, protocol.names.size(), parse_selection(protocol.select));
  for (const auto& index : result.chosen) {
    if (index) result.sensitivity[*index].chosen = true;
  }
  write_text((out / "sensitivity.csv").string(), sensitivity_csv(result.sensitivity, protocol.names));
  if (lab.plots) {
    result.plot = write_sensitivity_plot(lab, result.sensitivity, result.chosen);
  } else {
    result.plot.message = "plots skipped (--no-plots)";
  }
  report_choice(protocol, result.sensitivity, result.chosen, log);

  const LabConfig seeds =
      seeds_phase(lab, agree_on_choice(protocol, true, result.sensitivity, result.chosen).value());
  say(log, fmt::format("# protocol, phase 2: the chosen setting(s) x {} seeds, into {}", protocol.seeds, seeds.out_dir));
  result.seeds = run_lab(seeds, datasets, log);
  if ((result.interrupted = result.seeds.interrupted)) return result;  // no table of a phase cut short
  for (const auto& index : result.chosen) {
    if (!index) continue;
    const SensitivityRow& row = result.sensitivity[*index];
    result.performance.push_back(performance_of(protocol.names[row.optimiser], row.setting, result.seeds.records));
  }
  write_text((out / "performance.csv").string(), performance_csv(result.performance));
  write_text((out / "performance.md").string(), performance_document(lab, result.performance));
  return result;
}

// ---------------------------------------------------------------- the sensitivity plot

namespace {

/// sensitivity.dat: a block per optimiser (index i): rate, the selection's metric (accuracy in %), and the metric
/// again on the chosen row alone (NaN elsewhere: gnuplot skips it), for the circle. Diverged runs are left out.
std::string sensitivity_data(const std::vector<SensitivityRow>& rows, std::size_t optimisers, Selection selection) {
  const double scale = selection.loss ? 1.0 : 100.0;
  std::string data;
  for (std::size_t i = 0; i < optimisers; ++i) {
    data += fmt::format("# optimiser {}\n# lr metric chosen\n", i);
    for (const SensitivityRow& r : rows) {
      const double value = selected_metric(r.metrics, selection);
      if (r.optimiser != i || r.diverged || !std::isfinite(value)) continue;
      data += fmt::format("{:.9g} {:.9g} {}\n", r.lr, scale * value, r.chosen ? fmt::format("{:.9g}", scale * value) : "NaN");
    }
    data += "\n\n";
  }
  return data;
}

/// The y axis of the plot: linear for accuracies; for losses logarithmic where every value is positive (a noisy
/// function's may not be), and cut at 100 times the lowest, so that a rate whose loss grew a hundred orders of
/// magnitude without overflowing does not flatten the others (its line leaves the top).
std::string y_axis(const std::vector<SensitivityRow>& rows, Selection selection) {
  if (!selection.loss) return "unset logscale y\n";
  double lowest = std::numeric_limits<double>::infinity(), highest = -lowest;
  for (const SensitivityRow& r : rows) {
    const double value = selected_metric(r.metrics, selection);
    if (r.diverged || !std::isfinite(value)) continue;
    lowest = std::min(lowest, value), highest = std::max(highest, value);
  }
  if (!(lowest > 0)) return "unset logscale y\n";
  return highest > 100 * lowest ? fmt::format("set logscale y\nset yrange [{:.9g}:{:.9g}]\n", lowest / 1.5, 100 * lowest)
                                : "set logscale y\n";
}

/// The plot's script for one terminal and output file.
std::string sensitivity_script(const std::string& terminal, const std::string& output, const LabConfig& lab,
                               const std::vector<SensitivityRow>& rows, const std::vector<std::string>& titles,
                               const std::vector<std::string>& colours) {
  const Selection selection = parse_selection(lab.protocol.select);
  const std::string metric = fmt::format("{} validation {}", selection.best ? "best" : "final",
                                         selection.loss ? "loss" : "accuracy (%)");
  // Two title lines: a gnuplot string expression, "\n" joining them.
  const std::string title = gnuplot_string("Learning-rate sensitivity: " + metric) + " . \"\\n\" . " +
                            gnuplot_string(context_line(lab));
  std::string script = fmt::format(
      "{}\nset output {}\nset title {}\nset logscale x\nset format x '%.0e'\nset xrange [{:.9g}:{:.9g}]\n"
      "set xlabel 'learning rate (phase 1: seed 0; circled: the chosen rate)'\nset ylabel {}\n{}"
      "set grid lc rgb '#d0d0d0'\nset key below horizontal Left reverse samplen 2.5\nplot \\\n",
      terminal, gnuplot_string(output), title, lab.protocol.lrs.front() / 1.5, lab.protocol.lrs.back() * 1.5,
      gnuplot_string(metric), y_axis(rows, selection));
  for (std::size_t i = 0; i < titles.size(); ++i) {
    script += fmt::format("  'sensitivity.dat' index {0} using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc rgb '{1}' title {2}, \\\n"
                          "  'sensitivity.dat' index {0} using 1:3 with points pt 6 ps 3 lw 2 lc rgb '{1}' notitle{3}\n",
                          i, colours[i], gnuplot_string(titles[i]), i + 1 < titles.size() ? ", \\" : "");
  }
  return script + "unset output\n";
}

}  // namespace

PlotOutcome write_sensitivity_plot(const LabConfig& lab, const std::vector<SensitivityRow>& rows,
                                   const std::vector<std::optional<std::size_t>>& chosen) {
  const ProtocolConfig& p = lab.protocol;
  const fs::path out(lab.out_dir);
  write_text((out / "sensitivity.dat").string(), sensitivity_data(rows, p.names.size(), parse_selection(p.select)));
  std::vector<std::string> titles, families;
  for (std::size_t i = 0; i < p.names.size(); ++i) {
    titles.push_back(chosen[i] ? fmt::format("{} (chosen lr {:.3g})", p.names[i], rows[*chosen[i]].lr)
                               : p.names[i] + " (every rate diverged)");
    families.push_back(p.settings[i].front().name);
  }
  const std::vector<std::string> colours = family_colours(families);
  return render_figure(
      lab.out_dir, lab.gnuplot, "sensitivity", 1000, 560,
      "# Written by " + lab.program + ": re-render with `gnuplot sensitivity.gp` in this directory.\n",
      [&](const std::string& terminal, const std::string& output) {
        return sensitivity_script(terminal, output, lab, rows, titles, colours);
      },
      "no sensitivity plot");
}

// ---------------------------------------------------------------- the program

int protocol_main(const LabConfig& lab, const Datasets& datasets) {
  const ProtocolConfig& p = lab.protocol;
  fmt::print("# protocol: {} optimiser(s) x {} learning rates ({:g} ... {:g}) at seed 0, then the chosen setting x {} "
             "seeds = {} runs; chosen by the validation set's {}; output in {}\n",
             p.names.size(), p.lrs.size(), p.lrs.front(), p.lrs.back(), p.seeds,
             p.names.size() * (p.lrs.size() + p.seeds), p.select, lab.out_dir);
  ag::set_blas_threads(lab.base.threads);  // --threads, as every run of the lab: the same bits run after run
  fmt::print("# BLAS: {}\n", ag::blas_info());
  if (is_function_problem(lab.base)) fmt::print("# {}\n", kNoCheckpointsNote);
  if (lab.ranks > 1) {
    fmt::print("# MPI: {} ranks share both phases, one run at a time each; rank 0 chooses and writes the outputs\n",
               lab.ranks);
  }
  std::fflush(stdout);
  watch_interrupts();
  ProtocolResult result = run_protocol(lab, datasets, stdout);
  const fs::path out(lab.out_dir);
  if (result.interrupted) {
    fmt::print("interrupted: the protocol stops here; the same command resumes it\n");
    return 130;
  }
  fmt::print("\n{}\nwrote {}, {}, {}\n", performance_markdown(result.performance, !is_function_problem(lab.base)), (out / "sensitivity.csv").string(),
             (out / "performance.csv").string(), (out / "performance.md").string());
  if (result.plot.written) {
    fmt::print("wrote {}\n", fmt::join(result.plot.files, ", "));
  } else if (lab.plots) {
    fmt::print(stderr, "{}: warning: {}\n", lab.program, result.plot.message);
  }
  const std::string failures = failures_of(result.seeds);
  if (failures.empty()) return 0;
  fmt::print(stderr, "{}: phase 2: {} (seeds/runs.csv)\n", lab.program, failures);
  return 1;
}

}  // namespace examples::lab
