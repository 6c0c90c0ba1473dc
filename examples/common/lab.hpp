// The optimiser-comparison lab (compare_optimizers): a grid of optimiser specs x batch sizes x seeds trained
// in one process with examples::train, then aggregated over the seeds and written out as
//   curves.csv   one row per run per epoch
//   runs.csv     one row per run: final metrics, divergence
//   summary.csv  one row per optimiser spec x batch size: mean and std over the seeds
//   summary.md   the same as a Markdown table, and the time-to-target table (targets.hpp)
//   targets.csv  one row per run and target accuracy: when the run first reached it (step, seconds, epoch)
//   curves.png, curves.pdf (or .svg)   one figure, three panels (training loss, evaluation loss, accuracy), one
//                line per configuration with a +-1 std band, one colour family per optimiser, x in epochs,
//                steps or seconds (--x-axis); bands.dat + plot.gp: re-render with `gnuplot plot.gp` there
// like the figures of 000 (Figures 9-16) and 001 (Figures 6-9, mean +- std over 5 runs).
// With --protocol the lab runs DeepOBS's tuning protocol instead: two such grids, a learning-rate sweep and the
// chosen settings over seeds, with a sensitivity plot and a performance table (protocol.hpp).
//
// The grid's optimisers are specs (config/spec.hpp), each resolved by the registry (every option written
// out): `--optimizers 'momentum(lr=0.1,momentum=0.9)' adam`, and bracketed lists are grids over their keys:
// `--grid 'adam(lr=[1e-4,1e-3],beta2=[0.99,0.999])'` is four points. `--lrs a,b` gives one point per rate
// to every spec that sets no lr itself. The CSVs carry one column per hyper-parameter key (the union over
// the grid, first-seen order; empty where a method lacks the key) besides `optimizer` and `spec`; the
// Markdown table and the plots' labels show the keys whose values vary across the grid.
//
// Aggregation rules (summarise): the standard deviation is the sample one (divisor n - 1; 0 for a single run).
// Diverged runs (RunResult::diverged, or a run that threw) are counted and left out of every mean; a run
// cut short by Ctrl-C is written to runs.csv and curves.csv but left out of the summary. "Epochs to 97 %" is
// the first epoch whose test accuracy reaches 0.97, averaged over the runs that reach it; the count of those
// runs is kept (k of n), and a configuration none of whose runs reaches it reports "never".
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "config/spec.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/training.hpp"

namespace examples::lab {

/// Mean and sample standard deviation of n values (NaN when n = 0; std 0 when n = 1).
struct Stat {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  std::size_t n = 0;
};
Stat stat_of(const std::vector<double>& values);

/// DeepOBS's tuning protocol (protocol.hpp), set by --protocol: the optimisers it tunes, each with its settings.
struct ProtocolConfig {
  bool enabled = false;
  std::vector<double> lrs;                // phase 1's learning rates (--lr-grid)
  std::size_t seeds = 10;                 // phase 2's seeds: 0 .. seeds - 1 (--protocol-seeds); phase 1 runs seed 0
  std::string select = "final-accuracy";  // the validation metric a setting is chosen on (--select)
  std::vector<std::string> names;         // each optimiser as given, without lr: "adam", "momentum(momentum=0.9)"
  std::vector<std::vector<config::Spec>> settings;  // each optimiser's resolved specs, one per rate of lrs
};

/// The protocol's flags as CLI11 fills them (add_protocol_flags, protocol.hpp).
struct ProtocolFlagValues {
  bool on = false;
  std::string lr_grid = "1e-5:1e2:36", select = "final-accuracy";
  std::size_t seeds = 10;
};

struct LabConfig {
  /// Model, data and schedule settings shared by every run (its optimizer, batch_size and seed are
  /// replaced by the grid's).
  RunConfig base;
  /// The grid's optimisers, each fully resolved (lr included): the expansion of the user's specs.
  std::vector<config::Spec> optimizers;
  std::vector<std::size_t> batch_sizes{1024};
  std::vector<std::uint64_t> seeds{0, 1, 2, 3, 4};
  std::vector<double> thresholds{0.97, 0.98};  // test accuracies whose first epoch is reported
  std::string out_dir = "lab-out";
  std::string gnuplot = "gnuplot";  // the program to run
  std::string program = "compare_optimizers";
  bool plots = true;
  std::string x_axis = "epochs";  // the figure's x: epochs, steps or seconds (training time)
  bool epoch_lines = true;  // print every epoch of every run (else one line per run)
  /// Runs at once, each in a worker process of its own (fork); 1: one after another in this process. The
  /// results are the same bits either way (every run is seeded and single-threaded unless --threads).
  std::size_t jobs = 1;
  /// Keep every run's state in out_dir/runs and take finished runs from there, resume unfinished ones from
  /// their checkpoints (resume.hpp); false (--fresh): run everything anew, storing nothing.
  bool resume = true;
  /// With resume: the run store of an earlier grid (the protocol's phase 1, for phase 2's seed 0) whose finished
  /// runs of this grid's identities are taken too, and copied into this grid's store.
  std::string earlier_store;
  /// The lab's flags shared by every run (LabFlags: all but the grid's lists and where the outputs go), part
  /// of each run's identity in the store: a run of another command is not taken for this one's.
  std::string flags_identity;
  /// This process's MPI rank and the number of ranks (mpi_grid.hpp): with more than one the grid is shared
  /// among them and rank 0 alone writes the outputs; jobs is then ignored (one run at a time per rank).
  int rank = 0, ranks = 1;
  /// With --protocol: optimizers are phase 1's settings and seeds {0}; protocol.hpp runs both phases.
  ProtocolConfig protocol;
};

/// One configuration of the grid: a resolved optimiser spec and a batch size.
struct GridPoint {
  config::Spec optimizer;
  std::size_t batch_size = 0;
  bool operator==(const GridPoint&) const = default;
};

/// The grid in run order: optimisers, then batch sizes.
std::vector<GridPoint> grid_points(const LabConfig& config);

/// The user's spec texts (each possibly a list "a,b" and holding bracketed grids) expanded and resolved:
/// a spec without lr= gives one point per entry of `lrs` (none: the method's default). `resolve` writes
/// every option out (RunFlags::optimizer_spec). config::SpecError for bad specs and for a spec given twice.
std::vector<config::Spec> expand_optimizers(const std::vector<std::string>& texts, const std::vector<double>& lrs,
                                            const std::function<config::Spec(const std::string&)>& resolve);

/// The hyper-parameter keys of the specs, their union in first-seen order. A wrapper's inner spec is
/// flattened (config::Spec::flat_args): "inner" is its name, "inner.lr" its rate.
std::vector<std::string> hyper_keys(const std::vector<config::Spec>& specs);
/// The value of one of those keys in `spec`, or nullopt.
std::optional<std::string> hyper_value(const config::Spec& spec, const std::string& key);
/// The keys two of the specs give different values (keys only one method has, at one value, do not vary).
std::vector<std::string> varying_keys(const std::vector<config::Spec>& specs);

struct RunRecord {
  GridPoint point;
  std::uint64_t seed = 0;
  RunResult result;
};

struct Summary {
  GridPoint point;
  std::size_t runs = 0, diverged = 0;
  Stat final_test_acc, best_test_acc, final_train_loss, seconds;
  Stat final_test_loss, best_test_loss;  // the evaluation set's loss after the last epoch, and its lowest
  std::vector<double> thresholds;
  std::vector<Stat> epochs_to;  // per threshold, over the runs that reach it (n of them)
};

/// The records of each point, points in first-seen order.
std::vector<std::pair<GridPoint, std::vector<const RunRecord*>>> group(const std::vector<RunRecord>& records);
/// Whether the points have more than one batch size.
bool batch_varies(const std::vector<GridPoint>& points);

/// Groups the records by grid point (in first-seen order) and aggregates over the seeds.
std::vector<Summary> summarise(const std::vector<RunRecord>& records, const std::vector<double>& thresholds = {0.97, 0.98});

/// A short label of a point: the optimiser's name, its values of the `varying` keys, and the batch size
/// when show_batch: "adam lr=0.001 beta2=0.99".
std::string point_label(const GridPoint& point, const std::vector<std::string>& varying, bool show_batch);

// ---- writers (each returns the text; write_text puts it in a file). `keys`: hyper_keys of the grid.
/// The CSVs' first columns, naming a configuration: "optimizer,spec,<keys>".
std::string point_header(const std::vector<std::string>& keys);
/// A spec's cells under point_header(keys): its name, its resolved spec, its value of every key (empty: none).
std::string point_cells(const config::Spec& spec, const std::vector<std::string>& keys);
std::string curves_csv_header(const std::vector<std::string>& keys);
std::string curves_csv_rows(const RunRecord& record, const std::vector<std::string>& keys);
std::string runs_csv(const std::vector<RunRecord>& records);
std::string summary_csv(const std::vector<Summary>& summaries);
/// The Markdown table; eval_name is "test" or "validation". Without `accuracy` (a function problem's runs) the
/// runs are tabled by their evaluation loss, final and lowest, instead.
std::string summary_markdown(const std::vector<Summary>& summaries, const std::string& eval_name = "test",
                             bool accuracy = true);
/// The published baselines of the runs' test problem (problems::baselines_markdown), after a blank line; "" when
/// the runs are of no problem, or of one without baselines.
std::string baselines_section(const RunConfig& base);
/// A CSV text cell, quoted when it holds a comma, a quote or a newline.
std::string csv_text_cell(const std::string& text);
/// The cells of one CSV line (a double-quoted cell may hold commas, and "" for a quote): csv_text_cell undone.
std::vector<std::string> csv_cells(const std::string& line);
/// Writes (truncates) a file; throws std::runtime_error naming it on failure.
void write_text(const std::string& path, const std::string& text);

// ---- gnuplot
/// The PNG terminal this gnuplot offers ("pngcairo", else "png"), or "" when gnuplot cannot be run or has
/// neither; `why` then says which.
std::string png_terminal(const std::string& gnuplot, std::string* why = nullptr);
/// Whether `gnuplot` runs and has the terminal `terminal` (pngcairo, pdfcairo, svg, ...).
bool gnuplot_has_terminal(const std::string& gnuplot, const std::string& terminal);
/// The terminal line for a PNG of width x height pixels.
std::string terminal_line(const std::string& terminal, int width, int height);
/// `text` as a single-quoted gnuplot string.
std::string gnuplot_string(const std::string& text);
/// Runs `gnuplot script` in `dir` (its output goes to dir/gnuplot.log); "" on success, else what went wrong.
std::string run_gnuplot(const std::string& gnuplot, const std::string& dir, const std::string& script);

struct PlotOutcome {
  bool written = false;
  std::string message;  // why not, when not written
  std::vector<std::string> files;  // the figures written
};

/// A figure in PNG and, where gnuplot has pdfcairo, PDF: writes `name`.gp into `dir` (`header`, then
/// `script(terminal line, output file)` once per format) and runs gnuplot on it. The PNG is width x height pixels,
/// the PDF the same at 110 pixels an inch. Not written: `what` and why ("no sensitivity plot: ...").
PlotOutcome render_figure(const std::string& dir, const std::string& gnuplot, const std::string& name, int width,
                          int height, const std::string& header,
                          const std::function<std::string(const std::string&, const std::string&)>& script,
                          const std::string& what);

/// One colour per curve: a hue per optimiser name (first-seen order), its curves in shades of it from light to
/// dark in their order. `optimizers`: each curve's optimiser name.
std::vector<std::string> family_colours(const std::vector<std::string>& optimizers);

/// Writes bands.dat and plot.gp into config.out_dir and runs gnuplot on them (lab_plots.cpp). `context` is the second title
/// line (model, data set, epochs).
PlotOutcome write_plots(const LabConfig& config, const std::vector<RunRecord>& records, const std::string& context,
                        const std::string& eval_name = "test");

// ---- the program

/// What a program running the lab sets: its name, its --help summary and the optimisers it compares by
/// default (a user's program registers its own and names it here).
struct LabProgram {
  std::string name = "compare_optimizers";
  std::string summary =
      "The optimiser-comparison lab: trains every optimiser spec x batch size x seed of a grid on one model and "
      "data set, then writes per-epoch curves, a mean +- std table and PNG plots.\n"
      "001's experiment (the widths of the tutorial it follows: 001 gives none): --model mlp --hidden 512,512 "
      "--init normal --optimizers adam rmsprop --lrs 1e-3 --batch-sizes 1024 --epochs 10";
  std::vector<std::string> default_optimizers{"adam", "rmsprop"};
};

/// The lab's flags on an app: the shared ones (RunFlags, with --model) and the grid's.
class LabFlags {
 public:
  LabFlags(CLI::App& app, LabProgram program = {});
  /// The lab the parsed flags describe; FlagError or config::SpecError for bad values.
  LabConfig config() const;

 private:
  CLI::App& app_;
  LabProgram program_;
  RunFlags run_;
  std::vector<std::string> optimizers_, grid_;
  std::vector<double> lrs_, targets_{0.97, 0.98};
  std::vector<std::size_t> batch_sizes_{1024};
  std::vector<std::uint64_t> seeds_{0, 1, 2, 3, 4};
  std::string out_ = "lab-out", gnuplot_ = "gnuplot", x_axis_ = "epochs";
  bool no_plots_ = false, quiet_ = false, fresh_ = false;
  std::size_t jobs_ = 1;
  ProtocolFlagValues protocol_;
};

struct LabResult {
  std::vector<RunRecord> records;
  std::vector<Summary> summaries;
  std::string markdown;
  PlotOutcome plots;
  bool interrupted = false;  // Ctrl-C stopped a run: the grid stopped there
};

/// Runs the grid and writes every output into config.out_dir (created if needed). Progress goes to `log`
/// (nullptr: silent). A run that throws is recorded as failed (counted with the diverged ones in the
/// tables) and the grid goes on; the program then exits 1. A run interrupted by Ctrl-C stops the grid
/// (what was collected is written).
LabResult run_lab(const LabConfig& config, const Datasets& datasets, std::FILE* log = nullptr);

/// The flags every run of a grid shares, "name=value; ...", for LabConfig::flags_identity: the app's
/// configuration without the grid's lists (each run's identity has its own spec, batch size and seed), the
/// outputs and how progress is shown. The flags the lab had when runs were first stored are written with their
/// values or defaults (the stored runs' identities); a flag added since only when given, so that adding a flag
/// keeps every stored run.
std::string flags_identity(const CLI::App& app);

/// "" when no run of the grid failed, else "k of n runs failed; the first (<spec>, seed s): failed: <why>".
std::string failures_of(const LabResult& lab);

/// main() of the lab. Exit codes: 0 done (plots skipped with a warning when gnuplot is missing), 2 bad
/// flags or data (before any run), 130 interrupted, 1 anything else (an unwritable output directory, ...).
int lab_main(int argc, const char* const* argv, LabProgram program = {});

}  // namespace examples::lab
