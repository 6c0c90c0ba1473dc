// DeepOBS's tuning protocol (Schneider, Balles & Hennig 2019, its "suggested protocol"), run by the lab with
// --protocol:
//   phase 1 (OUT/tune)   every optimiser at every learning rate of a log grid (--lr-grid, default 36 points over
//                        1e-5 ... 1e2), one seed (0);
//   the choice           per optimiser, the rate whose run has the best validation metric (--select, default the
//                        final validation accuracy, as DeepOBS's analyzer: mode 'final', metric 'valid_accuracies');
//                        a diverged run is never chosen, a failed one (it threw) stops the protocol before
//                        phase 2; a tie goes to the smaller rate;
//   phase 2 (OUT/seeds)  each optimiser's chosen setting with seeds 0 ... N-1 (--protocol-seeds, default 10).
// Each phase is a grid of the lab (run_lab: its workers, its run store, so a killed protocol started again with the
// same command takes its finished runs from OUT/tune/runs and OUT/seeds/runs), with the lab's outputs in its
// folder: the learning curves with bands over the seeds are OUT/seeds/curves.png. Into OUT itself:
//   sensitivity.csv        one row per phase-1 run: optimiser, rate, diverged, final and best validation loss and
//                          accuracy, and whether it was chosen
//   sensitivity.png/.pdf   the selection metric against the rate (log x), one line per optimiser, the chosen
//                          rate circled (sensitivity.dat and sensitivity.gp: re-render with gnuplot)
//   performance.csv/.md    per optimiser: the chosen rate, and over phase 2's seeds the final and best test
//                          accuracy and loss, mean ± sample std
// Metrics come from the runs' evaluations on DeepOBS's splits (RunResult::evaluations; the protocol turns the
// splits on, evaluated at each epoch's end unless --eval-every K): "final" is the last evaluation, "best" the best
// one. Under MPI (`mpirun -np N compare_optimizers --protocol ...`) both phases are shared among the ranks, and
// rank 0, which gathers phase 1, sends its choice to every rank before phase 2.
#pragma once

#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "examples/common/lab.hpp"

namespace CLI {
class App;
}

namespace examples::lab {

/// "LO:HI:N": N rates spaced evenly in log from LO to HI, both included (N = 1: LO alone). FlagError naming
/// --lr-grid and what is wrong.
std::vector<double> parse_lr_grid(const std::string& text);

/// What a setting is chosen on: the final or the best validation accuracy (highest wins) or loss (lowest wins).
struct Selection {
  bool best = false;  // the best evaluation of the run, else its last
  bool loss = false;  // the validation loss, else the accuracy
};
/// "final-accuracy", "best-accuracy", "final-loss" or "best-loss"; FlagError naming --select otherwise.
Selection parse_selection(const std::string& text);
/// The names parse_selection takes, in that order.
const std::vector<std::string>& selection_names();

/// Declares --protocol, --lr-grid, --protocol-seeds and --select on the lab's app.
void add_protocol_flags(CLI::App& app, ProtocolFlagValues& values);

/// With --protocol, fills lab.protocol from the flags and the optimiser texts (each a spec without lr=, possibly
/// a grid over its other keys: one optimiser per point), and makes lab phase 1's grid (optimizers: every setting;
/// seeds: {0}; the evaluation splits on). Without it, refuses the protocol's other flags. FlagError or
/// config::SpecError naming the flag.
void apply_protocol(const ProtocolFlagValues& values, const CLI::App& app, const std::vector<std::string>& texts,
                    const std::function<config::Spec(const std::string&)>& resolve, LabConfig& lab);

/// A run's metrics from its evaluations (NaN when it has none, or diverged).
struct RunMetrics {
  static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  double final_validation_loss = nan, final_validation_acc = nan, best_validation_loss = nan,
         best_validation_acc = nan;
  double final_test_loss = nan, final_test_acc = nan, best_test_loss = nan, best_test_acc = nan;
};
RunMetrics metrics_of(const RunResult& result);
/// The selection's metric of those (NaN when the run has none).
double selected_metric(const RunMetrics& metrics, Selection selection);

/// One phase-1 run as sensitivity.csv holds it.
struct SensitivityRow {
  std::size_t optimiser = 0;  // index into ProtocolConfig::names
  config::Spec setting;
  double lr = 0;
  bool diverged = false;      // diverged or failed (or missing: interrupted before it ran)
  RunMetrics metrics;
  bool chosen = false;
};

/// The index into `rows` of each optimiser's chosen run (nullopt when every run of it diverged): the best of
/// selected_metric, ties to the first (the smaller rate).
std::vector<std::optional<std::size_t>> choose(const std::vector<SensitivityRow>& rows, std::size_t optimisers,
                                               Selection selection);

/// One optimiser in phase 2, as performance.csv holds it.
struct PerformanceRow {
  std::string optimiser;
  config::Spec setting;
  double lr = 0;
  std::size_t runs = 0, diverged = 0;
  Stat final_test_acc, best_test_acc, final_test_loss, best_test_loss;  // over the runs that did not diverge
};

std::string sensitivity_csv(const std::vector<SensitivityRow>& rows, const std::vector<std::string>& names);
std::string performance_csv(const std::vector<PerformanceRow>& rows);
std::string performance_markdown(const std::vector<PerformanceRow>& rows, bool accuracy = true);

struct ProtocolResult {
  LabResult tuning, seeds;                 // the two phases' grids
  std::vector<SensitivityRow> sensitivity;
  std::vector<std::optional<std::size_t>> chosen;  // per optimiser, into sensitivity
  std::vector<PerformanceRow> performance;
  PlotOutcome plot;                        // sensitivity.png
  bool interrupted = false;
};

/// Both phases and every output above into lab.out_dir; progress on `log` (nullptr: silent). Stops after
/// phase 1 when it was interrupted; std::runtime_error there when one of its runs failed (threw: the choice
/// would be made without it; the same command runs it again) or no optimiser has a run to choose. performance.*
/// are removed first and written only when phase 2 finished.
ProtocolResult run_protocol(const LabConfig& lab, const Datasets& datasets, std::FILE* log);

/// The sensitivity plot (lab_plots' conventions: gnuplot, PNG and PDF or SVG) into out_dir.
PlotOutcome write_sensitivity_plot(const LabConfig& lab, const std::vector<SensitivityRow>& rows,
                                   const std::vector<std::optional<std::size_t>>& chosen);

/// The program's part: the plan, both phases, the table; exit 0, 1 (a run failed, or nothing to choose) or 130.
int protocol_main(const LabConfig& lab, const Datasets& datasets);

}  // namespace examples::lab
