// The optimiser-comparison lab (compare_optimizers): a grid of optimisers x learning rates x batch sizes x
// seeds trained in one process with examples::train, then aggregated over the seeds and written out as
//   curves.csv   one row per run per epoch
//   runs.csv     one row per run: final metrics, divergence
//   summary.csv  one row per optimiser x lr x batch size: mean and std over the seeds
//   summary.md   the same as a Markdown table
//   loss.png, test_loss.png, accuracy.png   per-epoch curves, one line per configuration with a +-1 std band
//                (bands.dat + plot.gp: re-render with `gnuplot plot.gp` inside the output directory)
// like the figures of 000 (Figures 9-16) and 001 (Figures 6-9, mean +- std over 5 runs).
//
// Aggregation rules (summarise): the standard deviation is the sample one (divisor n - 1; 0 for a single run).
// Diverged runs (RunResult::diverged) are counted and left out of every mean. "Epochs to 97 %" is the first
// epoch whose test accuracy reaches 0.97, averaged over the runs that reach it; the count of those runs is
// kept (k of n), and a configuration none of whose runs reaches it reports "never".
#pragma once

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "examples/common/flags.hpp"
#include "examples/common/training.hpp"

namespace examples::lab {

/// Mean and sample standard deviation of n values (NaN when n = 0; std 0 when n = 1).
struct Stat {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  std::size_t n = 0;
};
Stat stat_of(const std::vector<double>& values);

struct LabConfig {
  /// Model, data and schedule settings shared by every run (its optimizer, lr, batch_size and seed are
  /// replaced by the grid's).
  RunConfig base;
  std::vector<std::string> optimizers{"adam", "rmsprop"};
  std::vector<double> lrs;  // empty: each optimiser's default learning rate
  std::vector<std::size_t> batch_sizes{1024};
  std::vector<std::uint64_t> seeds{0, 1, 2, 3, 4};
  std::vector<double> thresholds{0.97, 0.98};  // test accuracies whose first epoch is reported
  std::string out_dir = "lab-out";
  std::string gnuplot = "gnuplot";  // the program to run
  bool plots = true;
  bool epoch_lines = true;  // print every epoch of every run (else one line per run)
};

/// One configuration of the grid; lr is resolved (never 0).
struct GridPoint {
  std::string optimizer;
  double lr = 0;
  std::size_t batch_size = 0;
  bool operator==(const GridPoint&) const = default;
};

/// The grid in run order: optimizers, then lrs, then batch sizes.
std::vector<GridPoint> grid_points(const LabConfig& config);

struct RunRecord {
  GridPoint point;
  std::uint64_t seed = 0;
  RunResult result;
};

struct Summary {
  GridPoint point;
  std::size_t runs = 0, diverged = 0;
  Stat final_test_acc, best_test_acc, final_train_loss, seconds;
  std::vector<double> thresholds;
  std::vector<Stat> epochs_to;  // per threshold, over the runs that reach it (n of them)
};

/// Groups the records by grid point (in first-seen order) and aggregates over the seeds.
std::vector<Summary> summarise(const std::vector<RunRecord>& records, const std::vector<double>& thresholds = {0.97, 0.98});

/// A short label of a point: the optimiser, plus lr and batch size when the grid varies them.
std::string point_label(const GridPoint& point, bool show_lr, bool show_batch);

// ---- writers (each returns the text; write_text puts it in a file)
std::string curves_csv_header();
std::string curves_csv_rows(const RunRecord& record);
std::string runs_csv(const std::vector<RunRecord>& records);
std::string summary_csv(const std::vector<Summary>& summaries);
/// The Markdown table; eval_name is "test" or "validation".
std::string summary_markdown(const std::vector<Summary>& summaries, const std::string& eval_name = "test");
/// Writes (truncates) a file; throws std::runtime_error naming it on failure.
void write_text(const std::string& path, const std::string& text);

// ---- gnuplot
/// The PNG terminal this gnuplot offers ("pngcairo", else "png"), or "" when gnuplot cannot be run or has
/// neither; `why` then says which.
std::string png_terminal(const std::string& gnuplot, std::string* why = nullptr);
/// The terminal line for a PNG of width x height pixels.
std::string terminal_line(const std::string& terminal, int width, int height);
/// `text` as a single-quoted gnuplot string.
std::string gnuplot_string(const std::string& text);
/// Runs `gnuplot script` in `dir` (its output goes to dir/gnuplot.log); "" on success, else what went wrong.
std::string run_gnuplot(const std::string& gnuplot, const std::string& dir, const std::string& script);

struct PlotOutcome {
  bool written = false;
  std::string message;  // why not, when not written
  std::vector<std::string> files;  // the PNGs written
};

/// Writes bands.dat and plot.gp into config.out_dir and runs gnuplot on them. `context` is the second title
/// line (model, data set, epochs).
PlotOutcome write_plots(const LabConfig& config, const std::vector<RunRecord>& records, const std::string& context,
                        const std::string& eval_name = "test");

// ---- the program
void add_lab_flags(FlagSet& flags);
/// The lab the flags describe; throws FlagError for bad values (the shared training flags are checked by
/// config_from_flags).
LabConfig lab_config_from_flags(const FlagSet& flags);

struct LabResult {
  std::vector<RunRecord> records;
  std::vector<Summary> summaries;
  std::string markdown;
  PlotOutcome plots;
};

/// Runs the grid and writes every output into config.out_dir (created if needed). Progress goes to `log`
/// (nullptr: silent).
LabResult run_lab(const LabConfig& config, const Datasets& datasets, std::FILE* log = nullptr);

/// main() of compare_optimizers. Exit codes: 0 done (plots skipped with a warning when gnuplot is missing),
/// 2 bad flags or data, 1 anything else (an unwritable output directory, ...).
int lab_main(int argc, const char* const* argv);

}  // namespace examples::lab
