#include "examples/common/lab.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/mpi_grid.hpp"
#include "examples/common/preflight.hpp"
#include "examples/common/protocol.hpp"
#include "examples/common/resume.hpp"
#include "examples/common/targets.hpp"
#include "examples/common/workers.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "autograd/blas.hpp"
#include "data/file.hpp"
#include "config/options.hpp"
#include "nn/models.hpp"
#include "optim/registry.hpp"
#include "problems/test_problems.hpp"

namespace examples::lab {

namespace {
/// A failure to write the lab's own output: it stops the grid (a failing run does not).
struct OutputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

namespace fs = std::filesystem;

// ---------------------------------------------------------------- the grid

std::vector<GridPoint> grid_points(const LabConfig& config) {
  std::vector<GridPoint> points;
  for (const config::Spec& optimizer : config.optimizers) {
    for (std::size_t batch : config.batch_sizes) points.push_back({optimizer, batch});
  }
  return points;
}

/// The specs the texts write, each bracketed grid expanded: "sgd adam(beta2=[0.99,0.999])" is three.
std::vector<config::Spec> written_specs(const std::vector<std::string>& texts) {
  std::vector<config::Spec> specs;
  for (const std::string& text : texts) {
    for (const std::string& one : config::split_specs(text)) {
      for (config::Spec& spec : config::expand_grid(one)) specs.push_back(std::move(spec));
    }
  }
  return specs;
}

std::vector<config::Spec> expand_optimizers(const std::vector<std::string>& texts, const std::vector<double>& lrs,
                                            const std::function<config::Spec(const std::string&)>& resolve) {
  std::vector<config::Spec> specs;
  auto add = [&](const config::Spec& spec) {
    config::Spec resolved = resolve(spec.text());
    if (std::find(specs.begin(), specs.end(), resolved) != specs.end()) {
      throw config::SpecError(fmt::format("{} is given twice (the same run twice)", resolved.text()));
    }
    specs.push_back(std::move(resolved));
  };
  for (config::Spec spec : written_specs(texts)) {
    if (optim::option_of(spec, "lr") || lrs.empty()) {
      add(spec);  // the spec's own lr wins over --lrs
      continue;
    }
    for (double lr : lrs) add(spec.set("lr", config::format_real(lr)));
  }
  return specs;
}

std::optional<std::string> hyper_value(const config::Spec& spec, const std::string& key) {
  for (auto& [k, v] : spec.flat_args()) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::vector<std::string> hyper_keys(const std::vector<config::Spec>& specs) {
  std::vector<std::string> keys;
  for (const config::Spec& spec : specs) {
    for (const auto& arg : spec.flat_args()) {
      if (std::find(keys.begin(), keys.end(), arg.first) == keys.end()) keys.push_back(arg.first);
    }
  }
  return keys;
}

std::vector<std::string> varying_keys(const std::vector<config::Spec>& specs) {
  std::vector<std::string> varying;
  for (const std::string& key : hyper_keys(specs)) {
    std::optional<std::string> first;
    for (const config::Spec& spec : specs) {
      std::optional<std::string> value = hyper_value(spec, key);
      if (!value) continue;
      if (!first) first = value;
      if (*value != *first) {
        varying.push_back(key);
        break;
      }
    }
  }
  return varying;
}

namespace {

std::vector<config::Spec> specs_of(const std::vector<GridPoint>& points) {
  std::vector<config::Spec> specs;
  for (const GridPoint& p : points) specs.push_back(p.optimizer);
  return specs;
}

}  // namespace

bool batch_varies(const std::vector<GridPoint>& points) {
  for (const GridPoint& p : points) {
    if (p.batch_size != points.front().batch_size) return true;
  }
  return false;
}

std::string point_label(const GridPoint& point, const std::vector<std::string>& varying, bool show_batch) {
  std::string label = point.optimizer.name;
  for (const std::string& key : varying) {
    if (std::optional<std::string> value = hyper_value(point.optimizer, key)) label += fmt::format(" {}={}", key, *value);
  }
  if (show_batch) label += fmt::format(" batch={}", point.batch_size);
  return label;
}

// ---------------------------------------------------------------- aggregation

Stat stat_of(const std::vector<double>& values) {
  Stat s;
  s.n = values.size();
  if (values.empty()) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (double v : values) squares += (v - s.mean) * (v - s.mean);
  s.std = values.size() > 1 ? std::sqrt(squares / static_cast<double>(values.size() - 1)) : 0.0;
  return s;
}

std::vector<std::pair<GridPoint, std::vector<const RunRecord*>>> group(const std::vector<RunRecord>& records) {
  std::vector<std::pair<GridPoint, std::vector<const RunRecord*>>> groups;
  for (const RunRecord& record : records) {
    auto found = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == record.point; });
    if (found == groups.end()) {
      groups.push_back({record.point, {}});
      found = std::prev(groups.end());
    }
    found->second.push_back(&record);
  }
  return groups;
}

namespace {

/// First epoch whose test accuracy reaches `threshold`, or 0.
std::size_t first_epoch_reaching(const RunResult& result, double threshold) {
  for (const EpochMetrics& m : result.epochs) {
    if (m.test_acc >= threshold) return m.epoch;
  }
  return 0;
}

Summary summary_of(const GridPoint& point, const std::vector<const RunRecord*>& runs,
                   const std::vector<double>& thresholds) {
  Summary s;
  s.point = point;
  s.thresholds = thresholds;
  std::vector<double> final_acc, best_acc, final_loss, seconds, final_test_loss, best_test_loss;
  std::vector<std::vector<double>> reached(thresholds.size());
  for (const RunRecord* run : runs) {
    const RunResult& r = run->result;
    if (r.interrupted && !r.diverged) continue;  // cut short by Ctrl-C: not a run of the grid's length
    ++s.runs;
    if (r.diverged || r.epochs.empty()) {
      s.diverged += r.diverged ? 1 : 0;
      continue;
    }
    final_acc.push_back(r.epochs.back().test_acc);
    best_acc.push_back(r.best_test_acc);
    final_loss.push_back(r.epochs.back().train_loss);
    final_test_loss.push_back(r.epochs.back().test_loss);
    best_test_loss.push_back(std::min_element(r.epochs.begin(), r.epochs.end(), [](const auto& a, const auto& b) {
                               return a.test_loss < b.test_loss;
                             })->test_loss);
    seconds.push_back(r.seconds);
    for (std::size_t t = 0; t < thresholds.size(); ++t) {
      std::size_t epoch = first_epoch_reaching(r, thresholds[t]);
      if (epoch > 0) reached[t].push_back(static_cast<double>(epoch));
    }
  }
  s.final_test_acc = stat_of(final_acc);
  s.best_test_acc = stat_of(best_acc);
  s.final_train_loss = stat_of(final_loss);
  s.final_test_loss = stat_of(final_test_loss);
  s.best_test_loss = stat_of(best_test_loss);
  s.seconds = stat_of(seconds);
  for (const auto& epochs : reached) s.epochs_to.push_back(stat_of(epochs));
  return s;
}

}  // namespace

std::vector<Summary> summarise(const std::vector<RunRecord>& records, const std::vector<double>& thresholds) {
  std::vector<Summary> summaries;
  for (const auto& [point, runs] : group(records)) {
    Summary s = summary_of(point, runs, thresholds);
    if (s.runs > 0) summaries.push_back(std::move(s));
  }
  return summaries;
}

// ---------------------------------------------------------------- writers

namespace {

/// "" for NaN (a CSV cell with no value).
std::string cell(double value, const char* format = "{:.9g}") {
  return std::isnan(value) ? std::string() : fmt::format(fmt::runtime(format), value);
}

std::string csv_quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

/// A text cell, quoted when it needs to be.
std::string text_cell(const std::string& text) {
  return text.find_first_of(",\"\n") == std::string::npos ? text : csv_quote(text);
}

}  // namespace

std::string baselines_section(const RunConfig& base) {
  if (base.problem.empty()) return "";
  const std::string section = problems::baselines_markdown(problems::test_problems().at(base.problem), base.epochs);
  return section.empty() ? "" : "\n" + section;
}

std::string csv_text_cell(const std::string& text) { return text_cell(text); }

std::vector<std::string> csv_cells(const std::string& line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      cells.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      cells.emplace_back();
    } else {
      cells.back() += c;
    }
  }
  return cells;
}

std::string point_header(const std::vector<std::string>& keys) {
  std::string text = "optimizer,spec";
  for (const std::string& key : keys) text += "," + key;
  return text;
}

std::string point_cells(const config::Spec& spec, const std::vector<std::string>& keys) {
  std::string text = text_cell(spec.name) + "," + text_cell(spec.text());
  for (const std::string& key : keys) {
    std::optional<std::string> value = hyper_value(spec, key);
    text += "," + (value ? text_cell(*value) : std::string());
  }
  return text;
}

namespace {

std::string threshold_name(double threshold) { return fmt::format("{:g}", 100 * threshold); }

}  // namespace

std::string curves_csv_header(const std::vector<std::string>& keys) {
  return point_header(keys) + ",batch_size,seed,epoch,train_loss,train_acc,test_loss,test_acc,lr_now,seconds\n";
}

std::string curves_csv_rows(const RunRecord& record, const std::vector<std::string>& keys) {
  std::string rows;
  std::string point = point_cells(record.point.optimizer, keys);
  for (const EpochMetrics& m : record.result.epochs) {
    rows += fmt::format("{},{},{},{},{:.9g},{},{:.9g},{},{:.6g},{:.4f}\n", point, record.point.batch_size,
                        record.seed, m.epoch, m.train_loss, cell(m.train_acc, "{:.6f}"), m.test_loss,
                        cell(m.test_acc, "{:.6f}"), m.lr, m.seconds);
  }
  return rows;
}

std::string runs_csv(const std::vector<RunRecord>& records) {
  std::vector<config::Spec> specs;
  for (const RunRecord& r : records) specs.push_back(r.point.optimizer);
  std::vector<std::string> keys = hyper_keys(specs);
  std::string text = point_header(keys) +
                     ",batch_size,seed,epochs,steps,final_test_acc,best_test_acc,final_train_loss,seconds,diverged,"
                     "interrupted,divergence\n";
  for (const RunRecord& r : records) {
    const RunResult& res = r.result;
    bool has = !res.epochs.empty();
    text += fmt::format("{},{},{},{},{},{},{},{},{:.3f},{},{},{}\n", point_cells(r.point.optimizer, keys),
                        r.point.batch_size, r.seed, has ? res.epochs.back().epoch : 0, res.steps,
                        has ? cell(res.epochs.back().test_acc, "{:.6f}") : "", has ? cell(res.best_test_acc, "{:.6f}") : "",
                        has ? cell(res.epochs.back().train_loss) : "", res.seconds, res.diverged ? 1 : 0,
                        res.interrupted ? 1 : 0, res.diverged ? csv_quote(res.divergence) : "");
  }
  return text;
}

std::string summary_csv(const std::vector<Summary>& summaries) {
  std::vector<GridPoint> points;
  for (const Summary& s : summaries) points.push_back(s.point);
  std::vector<std::string> keys = hyper_keys(specs_of(points));
  std::string text = point_header(keys) +
                     ",batch_size,runs,diverged,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,"
                     "best_test_acc_std,final_train_loss_mean,final_train_loss_std,final_test_loss_mean,"
                     "final_test_loss_std,best_test_loss_mean,best_test_loss_std";
  std::vector<double> thresholds = summaries.empty() ? std::vector<double>{} : summaries.front().thresholds;
  for (double t : thresholds) text += fmt::format(",epochs_to_{0}_mean,epochs_to_{0}_std,reached_{0}", threshold_name(t));
  text += ",seconds_mean,seconds_std\n";
  for (const Summary& s : summaries) {
    text += fmt::format("{},{},{},{},{},{},{},{},{},{}", point_cells(s.point.optimizer, keys), s.point.batch_size,
                        s.runs, s.diverged, cell(s.final_test_acc.mean), cell(s.final_test_acc.std),
                        cell(s.best_test_acc.mean), cell(s.best_test_acc.std), cell(s.final_train_loss.mean),
                        cell(s.final_train_loss.std));
    text += fmt::format(",{},{},{},{}", cell(s.final_test_loss.mean), cell(s.final_test_loss.std),
                        cell(s.best_test_loss.mean), cell(s.best_test_loss.std));
    for (const Stat& e : s.epochs_to) text += fmt::format(",{},{},{}", cell(e.mean), cell(e.std), e.n);
    text += fmt::format(",{},{}\n", cell(s.seconds.mean, "{:.3f}"), cell(s.seconds.std, "{:.3f}"));
  }
  return text;
}

namespace {

// Markdown cells. "—" marks a value that does not exist (no run to average).
const char* const kNone = "—";

std::string pm(const Stat& s, double scale, int decimals) {
  if (s.n == 0) return kNone;
  return fmt::format("{:.{}f} ± {:.{}f}", scale * s.mean, decimals, scale * s.std, decimals);
}

std::string pm_general(const Stat& s) {
  if (s.n == 0) return kNone;
  return fmt::format("{:.4g} ± {:.2g}", s.mean, s.std);
}

std::string epochs_cell(const Stat& s, std::size_t completed) {
  if (completed == 0) return kNone;
  if (s.n == 0) return "never";
  std::string text = fmt::format("{:.1f} ± {:.1f}", s.mean, s.std);
  if (s.n < completed) text += fmt::format(" ({}/{})", s.n, completed);
  return text;
}

std::string markdown_header(const std::vector<std::string>& varying, bool show_batch,
                            const std::vector<double>& thresholds, const std::string& eval_name, bool accuracy) {
  std::string header = "| optimizer", rule = "|---";
  for (const std::string& key : varying) {
    header += " | " + key;
    rule += "|---:";
  }
  if (show_batch) {
    header += " | batch";
    rule += "|---:";
  }
  header += fmt::format(" | runs | final {0} {1} | best {0} {1} | final train loss", eval_name,
                        accuracy ? "acc (%)" : "loss");
  rule += "|---:|---:|---:|---:";
  for (double t : thresholds) {
    header += fmt::format(" | epochs to {} %", threshold_name(t));
    rule += "|---:";
  }
  return header + " | seconds | diverged |\n" + rule + "|---:|---:|\n";
}

}  // namespace

std::string summary_markdown(const std::vector<Summary>& summaries, const std::string& eval_name, bool accuracy) {
  std::vector<GridPoint> points;
  for (const Summary& s : summaries) points.push_back(s.point);
  const std::vector<std::string> varying = varying_keys(specs_of(points));
  const bool show_batch = !points.empty() && batch_varies(points);
  std::vector<double> thresholds = summaries.empty() ? std::vector<double>{} : summaries.front().thresholds;
  std::string text = markdown_header(varying, show_batch, thresholds, eval_name, accuracy);
  for (const Summary& s : summaries) {
    std::size_t completed = s.runs - s.diverged;
    text += "| " + s.point.optimizer.name + (s.diverged > 0 ? " ⚠" : "");
    for (const std::string& key : varying) {
      std::optional<std::string> value = hyper_value(s.point.optimizer, key);
      text += " | " + (value ? *value : std::string(kNone));
    }
    if (show_batch) text += fmt::format(" | {}", s.point.batch_size);
    text += fmt::format(" | {} | {} | {} | {}", s.runs,
                        accuracy ? pm(s.final_test_acc, 100, 2) : pm_general(s.final_test_loss),
                        accuracy ? pm(s.best_test_acc, 100, 2) : pm_general(s.best_test_loss),
                        pm_general(s.final_train_loss));
    for (const Stat& e : s.epochs_to) text += " | " + epochs_cell(e, completed);
    text += fmt::format(" | {} | {} |\n", pm(s.seconds, 1, 1),
                        s.diverged == 0 ? std::string("0") : fmt::format("**{} of {}**", s.diverged, s.runs));
  }
  return text;
}

void write_text(const std::string& path, const std::string& text) { data::write_file_atomically(path, text, ""); }

// ---------------------------------------------------------------- gnuplot

namespace {

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

int exit_status(int status) {
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

bool gnuplot_has_terminal(const std::string& gnuplot, const std::string& terminal) {
  std::string probe = fmt::format("{} -e {} >/dev/null 2>&1", shell_quote(gnuplot),
                                  shell_quote(fmt::format("set terminal {}", terminal)));
  return exit_status(std::system(probe.c_str())) == 0;
}

std::string png_terminal(const std::string& gnuplot, std::string* why) {
  std::string program = shell_quote(gnuplot);
  int found = exit_status(std::system((program + " --version >/dev/null 2>&1").c_str()));
  if (found != 0) {
    if (why) {
      *why = found == 127 ? fmt::format("gnuplot not found ('{}'; install the Debian package gnuplot-nox)", gnuplot)
                          : fmt::format("'{} --version' failed (exit status {})", gnuplot, found);
    }
    return "";
  }
  for (const char* terminal : {"pngcairo", "png"}) {
    if (gnuplot_has_terminal(gnuplot, terminal)) return terminal;
  }
  if (why) *why = fmt::format("'{}' has neither the pngcairo nor the png terminal", gnuplot);
  return "";
}

std::string terminal_line(const std::string& terminal, int width, int height) {
  if (terminal == "pngcairo") {
    return fmt::format("set terminal pngcairo size {},{} noenhanced font 'Sans,11' linewidth 1", width, height);
  }
  return fmt::format("set terminal png truecolor size {},{} noenhanced", width, height);
}

std::string gnuplot_string(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';  // '' is a quote inside a single-quoted gnuplot string
    out += c;
  }
  return out + "'";
}

std::string run_gnuplot(const std::string& gnuplot, const std::string& dir, const std::string& script) {
  std::string command = fmt::format("cd {} && {} {} >gnuplot.log 2>&1", shell_quote(dir), shell_quote(gnuplot),
                                    shell_quote(script));
  int status = exit_status(std::system(command.c_str()));
  if (status == 0) return "";
  std::ifstream log(fs::path(dir) / "gnuplot.log");
  std::string output((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  if (output.size() > 2000) output = output.substr(0, 2000) + "...";
  return fmt::format("gnuplot exited with status {} running {}/{}:\n{}", status, dir, script, output);
}

// ---------------------------------------------------------------- flags

namespace {

std::string joined(const std::vector<std::string>& items, const std::string& separator = ", ") {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

template <class T>
std::string joined_numbers(const std::vector<T>& values) {
  std::vector<std::string> items;
  for (const T& v : values) items.push_back(fmt::format("{}", v));
  return joined(items, ",");
}

}  // namespace

LabFlags::LabFlags(CLI::App& app, LabProgram program)
    : app_(app), program_(std::move(program)),
      run_(app, {.with_model = true, .with_optimizer = false, .default_batch_size = 1024, .single_run = false}) {
  app.add_option("--optimizers", optimizers_,
                 "optimiser specs to compare, space- or comma-separated, e.g. 'momentum(lr=0.1,momentum=0.9)' adam; "
                 "a bracketed list is a grid over that key: 'adam(beta2=[0.99,0.999])' (default: " +
                     joined(program_.default_optimizers, " ") + "; see --list-optimizers)");
  app.add_option("--grid", grid_, "more specs, as --optimizers: 'adam(lr=[1e-4,3e-4,1e-3],beta2=[0.99,0.999])'");
  add_list(app, "--lrs", lrs_, "learning rates, comma-separated: one point each for every spec without lr= "
                               "(default: the spec's lr, else the optimiser's own)");
  add_list(app, "--batch-sizes", batch_sizes_, "batch sizes, comma-separated")->default_str(joined_numbers(batch_sizes_));
  add_list(app, "--seeds", seeds_, "seeds, comma-separated: every configuration runs once per seed")
      ->default_str(joined_numbers(seeds_));
  add_list(app, "--targets", targets_, "target accuracies, comma-separated: the table reports the first epoch whose test accuracy reaches each; "
           "targets.csv and summary.md's time to target, the first step (validation accuracy under --problem or "
           "--eval-every)")
      ->default_str(joined_numbers(targets_));
  path_option(app.add_option("--out", out_, "output directory (curves.csv, runs.csv, summary.csv, summary.md, targets.csv, *.png)"))
      ->capture_default_str();
  CLI::Option* gnuplot = app.add_option("--gnuplot", gnuplot_, "the gnuplot program that draws the PNGs")->capture_default_str();
  app.add_flag("--no-plots", no_plots_, "write the CSV and Markdown files only")->excludes(gnuplot);
  app.add_option("--x-axis", x_axis_, "the figure's x axis: epochs, steps or seconds (training time)")
      ->check(CLI::IsMember({"epochs", "steps", "seconds"}))
      ->capture_default_str();
  app.add_flag("--quiet", quiet_, "one line per run instead of one per epoch");
  app.add_flag("--fresh", fresh_, "run every run anew: take nothing from the runs stored in OUT/runs by an earlier "
                                  "grid (by default finished runs are reused and unfinished ones resumed)");
  jobs_ = std::max(1u, std::thread::hardware_concurrency());
  count_option(app.add_option("--jobs", jobs_,
                              "runs at once, each in a worker process (default: the core count; 1: one after another, "
                              "with a line per epoch); the results are the same bits"),
               1, 1024)
      ->capture_default_str();
  add_protocol_flags(app, protocol_);
}

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw FlagError(message);
}

/// A list flag whose values must differ: the same seed twice would run the same run twice.
template <class T>
void require_distinct(const std::vector<T>& values, const std::string& flag) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      require(values[i] != values[j], fmt::format("{}: {} is given twice", flag, values[i]));
    }
  }
}

/// The resolved specs of the --optimizers and --grid texts, each error prefixed with its flag.
std::vector<config::Spec> grid_specs(const std::string& flag, const std::vector<std::string>& texts,
                                     const std::vector<double>& lrs, const RunFlags& run) {
  try {
    return expand_optimizers(texts, lrs, [&](const std::string& t) { return run.optimizer_spec(t); });
  } catch (const config::SpecError& error) {
    throw config::SpecError(fmt::format("{}: {}", flag, error.what()));
  }
}

/// Whether a spec of `texts` has no lr= of its own, so that --lrs gives it rates.
bool takes_lrs(const std::vector<std::string>& texts) {
  const std::vector<config::Spec> specs = written_specs(texts);
  return std::any_of(specs.begin(), specs.end(), [](const config::Spec& spec) { return !optim::option_of(spec, "lr"); });
}

}  // namespace

std::string flags_identity(const CLI::App& app) {
  static const std::vector<std::string> left_out{"optimizers", "grid", "lrs", "batch-sizes", "seeds", "targets",
                                                 "out", "gnuplot", "no-plots", "quiet", "jobs", "fresh", "data",
                                                 "no-progress", "markdown", "help", "protocol", "lr-grid",
                                                 "protocol-seeds", "select"};
  // The flags of the runs stored before this rule: written with their defaults, as those runs' identities are.
  static const std::vector<std::string> always{
      "model", "problem", "hidden", "schedule", "lr-final", "lr-epochs", "lr-tau", "lr-step", "lr-gamma", "warmup",
      "lr-per-epoch", "batch-size", "seed", "log", "save", "save-every", "resume", "epochs", "init", "weight-decay",
      "decoupled", "no-bias-decay", "threads", "max-loss", "loss", "track", "track-log", "detect-anomaly",
      "eval-every", "eval-log", "dataset", "validation", "train-subset", "x-axis"};
  auto in = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  std::string kept;
  std::istringstream lines(app.config_to_str(true, false));
  for (std::string line; std::getline(lines, line);) {
    std::string name = line.substr(0, line.find('='));
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (in(left_out, name) || name.starts_with("list-")) continue;
    const CLI::Option* option = app.get_option_no_throw("--" + name);  // none: a positional (kept, as given)
    if (!in(always, name) && option && option->count() == 0) continue;  // a newer flag, not given: as before it
    kept += (kept.empty() ? "" : "; ") + line;
  }
  return kept;
}

LabConfig LabFlags::config() const {
  // One run's flags whose lab counterparts are lists (or which a grid of runs cannot share).
  for (auto [flag, instead] : {std::pair{"--batch-size", "--batch-sizes"}, {"--seed", "--seeds"}, {"--log", "--out"},
                               {"--save", "--out"}, {"--save-every", "--out"}, {"--resume", "--out"},
                               {"--track-log", "--out (track-run<k>.csv)"}, {"--eval-log", "--out (eval-run<k>.csv)"}}) {
    require(app_.count(flag) == 0, fmt::format("{}: not a lab flag (the lab takes {})", flag, instead));
  }
  LabConfig lab;
  lab.base = run_.config();
  lab.program = program_.name;
  for (double lr : lrs_) require(lr > 0 && std::isfinite(lr), fmt::format("--lrs: learning rates must be positive, got {:g}", lr));
  const bool given = app_.count("--optimizers") + app_.count("--grid") > 0;
  std::vector<std::string> texts = given ? optimizers_ : program_.default_optimizers;
  lab.optimizers = grid_specs(given ? "--optimizers" : program_.name, texts, lrs_, run_);
  for (const config::Spec& spec : grid_specs("--grid", grid_, lrs_, run_)) {
    require(std::find(lab.optimizers.begin(), lab.optimizers.end(), spec) == lab.optimizers.end(),
            fmt::format("--grid: {} is given by --optimizers too", spec.text()));
    lab.optimizers.push_back(spec);
  }
  require(!lab.optimizers.empty(), "--optimizers: at least one optimiser spec");
  require(lrs_.empty() || takes_lrs(texts) || takes_lrs(grid_),
          "--lrs gives rates to the specs without lr=, and every spec here has its own (drop --lrs, or lr= from a "
          "spec)");
  require_distinct(batch_sizes_, "--batch-sizes");
  require_distinct(seeds_, "--seeds");
  require_distinct(targets_, "--targets");
  // A test problem's own batch size unless --batch-sizes is given.
  const bool problem_batch = !lab.base.problem.empty() && app_.count("--batch-sizes") == 0;
  lab.batch_sizes = problem_batch ? std::vector<std::size_t>{lab.base.batch_size} : batch_sizes_;
  require(!lab.batch_sizes.empty(), "--batch-sizes: at least one batch size");
  for (std::size_t b : lab.batch_sizes) {
    require(b >= 1 && b <= kMaxBatchSize, fmt::format("--batch-sizes: each in [1, {}], got {}", kMaxBatchSize, b));
  }
  lab.seeds = seeds_;
  require(!lab.seeds.empty(), "--seeds: at least one seed");
  lab.thresholds = targets_;
  for (double t : lab.thresholds) require(t > 0 && t <= 1, fmt::format("--targets: accuracies in (0, 1], got {:g}", t));
  if (is_function_problem(lab.base)) {  // targets are accuracies, and a function has none
    require(app_.count("--targets") == 0,
            fmt::format("--targets: accuracies to reach, and {} is a function problem, without one", lab.base.problem));
    lab.thresholds.clear();
  }
  lab.out_dir = out_;
  require(!lab.out_dir.empty(), "--out: needs a directory");
  lab.gnuplot = gnuplot_;
  lab.plots = !no_plots_;
  lab.x_axis = x_axis_;
  lab.epoch_lines = !quiet_;
  lab.jobs = jobs_;
  lab.resume = !fresh_;
  texts.insert(texts.end(), grid_.begin(), grid_.end());
  apply_protocol(protocol_, app_, texts, [&](const std::string& t) { return run_.optimizer_spec(t); }, lab);
  lab.flags_identity = flags_identity(app_);
  return lab;
}

// ---------------------------------------------------------------- running the grid

namespace {

/// The second title line and the first of summary.md: model, data, epochs, schedule.
std::string context_of(const LabConfig& config, const Datasets& datasets) {
  const RunConfig& b = config.base;
  std::string context =
      is_function_problem(b)
          ? fmt::format("{} (its loss a function of fixed noise), {} epoch{}", b.problem, b.epochs, b.epochs == 1 ? "" : "s")
          : fmt::format("{}, init {}, {} ({} train / {} {}), {} epoch{}", b.model.text(), b.init, b.dataset,
                        datasets.train.size(), datasets.test.size(), datasets.test_name, b.epochs,
                        b.epochs == 1 ? "" : "s");
  if (!is_constant_schedule(b.schedule)) {
    context += fmt::format(", schedule {} ({})", b.schedule.text(), b.lr_per_epoch ? "per epoch" : "per step");
  }
  if (b.no_bias_decay) context += ", no weight decay on biases";
  if (b.loss != nn::ClassifierLoss::cross_entropy) context += ", loss " + nn::classifier_loss_name(b.loss);
  return context;
}

void print_epoch(std::FILE* log, const EpochMetrics& m, const std::string& eval) {
  if (std::isnan(m.test_acc)) {  // a function problem: losses only
    fmt::print(log, "  epoch {:>3}{} train_loss={:.6g} {}_loss={:.6g} lr={:.4g} seconds={:.3f}\n", m.epoch,
               m.partial ? " (interrupted)" : "", m.train_loss, eval, m.test_loss, m.lr, m.seconds);
    std::fflush(log);
    return;
  }
  fmt::print(log, "  epoch {:>3}{} train_loss={:.4f} train_acc={:.4f} {}_loss={:.4f} {}_acc={:.4f} lr={:.4g} seconds={:.2f}\n",
             m.epoch, m.partial ? " (interrupted)" : "", m.train_loss, m.train_acc, eval, m.test_loss, eval, m.test_acc,
             m.lr, m.seconds);
  std::fflush(log);
}

/// The grid's runs in order, each one's identity, and the store that keeps them (unless --fresh).
struct Grid {
  Grid(const LabConfig& config, const Datasets& datasets);
  GridPoint point(std::size_t index) const { return points[index / seeds.size()]; }
  std::uint64_t seed(std::size_t index) const { return seeds[index % seeds.size()]; }

  std::vector<GridPoint> points;
  std::vector<std::uint64_t> seeds;
  std::size_t total = 0;
  std::vector<std::string> identities;  // by run index, when resuming
  std::optional<RunStore> store;
  std::optional<RunStore> earlier;  // LabConfig::earlier_store
};

/// The run of a point and seed: the lab's base config with its optimiser, batch size and seed, writing no log
/// or checkpoint of its own (the store keeps its checkpoints), its trackers into track-run<k>.csv.
RunConfig run_config(const LabConfig& config, const GridPoint& point, std::uint64_t seed, std::size_t index) {
  RunConfig run = config.base;
  run.optimizer = point.optimizer;
  run.batch_size = point.batch_size;
  run.seed = seed;
  run.log_path.clear();
  run.save_path.clear();
  run.save_every_steps = 0;
  run.resume_path.clear();
  run.track_log = (fs::path(config.out_dir) / fmt::format("track-run{}.csv", index + 1)).string();  // run k of the log
  run.eval_log = (fs::path(config.out_dir) / fmt::format("eval-run{}.csv", index + 1)).string();
  return run;
}

Grid::Grid(const LabConfig& config, const Datasets& datasets)
    : points(grid_points(config)), seeds(config.seeds), total(points.size() * seeds.size()) {
  if (!config.resume) return;
  store.emplace((fs::path(config.out_dir) / "runs").string());
  if (!config.earlier_store.empty() && fs::is_directory(config.earlier_store)) earlier.emplace(config.earlier_store);
  const std::string fingerprint =
      is_function_problem(config.base) ? function_fingerprint(config.base) : data_fingerprint(datasets);
  for (std::size_t index = 0; index < total; ++index) {
    identities.push_back(run_identity(run_config(config, point(index), seed(index), index), fingerprint,
                                      config.flags_identity));
  }
}

/// What resumes a grid stopped by Ctrl-C: the same command, from the store (unless --fresh kept none).
std::string resume_hint(const LabConfig& config) {
  if (!config.resume) return "it ran with --fresh, storing nothing: the same command starts it over";
  const std::string runs = (fs::path(config.out_dir) / "runs").string();
  if (is_function_problem(config.base)) {
    return fmt::format("the same command resumes it ({} keeps the finished runs; {})", runs, kNoCheckpointsNote);
  }
  return fmt::format("the same command resumes it ({} keeps the finished runs and the interrupted ones' checkpoints)",
                     runs);
}

/// A run cut short by Ctrl-C (not one that diverged first): no result of the grid's length.
bool cut_short(const RunResult& result) { return result.interrupted && !result.diverged; }

/// A run's line in the log: its final metrics, why it diverged or failed, or where Ctrl-C stopped it.
std::string outcome_line(const RunResult& result, const std::string& eval) {
  if (result.diverged) return result.divergence;
  if (!cut_short(result)) return result.final_line(eval);
  const auto whole =
      std::count_if(result.epochs.begin(), result.epochs.end(), [](const EpochMetrics& m) { return !m.partial; });
  return fmt::format("interrupted after step {}, {} whole epoch(s): not a result", result.steps, whole);
}

/// The grid's last line when Ctrl-C stopped it.
std::string interrupted_line(const LabConfig& config, const std::vector<RunRecord>& records, std::size_t total) {
  const auto stopped = static_cast<std::size_t>(
      std::count_if(records.begin(), records.end(), [](const RunRecord& r) { return cut_short(r.result); }));
  return fmt::format("interrupted: the grid stops with {} of {} runs finished{}; {}", records.size() - stopped, total,
                     stopped == 0 ? "" : fmt::format(" and {} interrupted", stopped), resume_hint(config));
}

/// Run `index` of the grid; its epochs go to `progress` as they come. A run that throws is recorded as diverged.
/// Its epochs and outcome are said on `log`, if given; else (a worker) the run store's notes alone (resumed,
/// or started over) on `notes`, if given, naming the run, as they come among the other runs' lines.
RunRecord run_point(const LabConfig& config, const Datasets& datasets, const Grid& grid, std::size_t index,
                    std::ofstream& progress, const std::vector<std::string>& keys, std::FILE* log,
                    std::FILE* notes = nullptr) {
  const GridPoint point = grid.point(index);
  const std::uint64_t seed = grid.seed(index);
  RunRecord record{point, seed, {}};
  const RunConfig run = run_config(config, point, seed, index);
  const EpochCallback on_epoch = [&](const EpochMetrics& m) {
    RunRecord one{point, seed, {}};
    one.result.epochs.push_back(m);
    progress << curves_csv_rows(one, keys);
    progress.flush();
    if (!progress) {
      throw OutputError(fmt::format("writing {} failed: {}", config.out_dir + "/curves.partial.csv", std::strerror(errno)));
    }
    if (log && config.epoch_lines) print_epoch(log, m, datasets.test_name);
  };
  try {
    record.result = grid.store ? grid.store->train(run, grid.identities[index], datasets, on_epoch, log ? log : notes,
                                                   log ? "" : fmt::format("run {}/{}: ", index + 1, grid.total))
                               : train(run, datasets, on_epoch);
  } catch (const OutputError&) {
    throw;  // the lab's own output: nothing more can be recorded
  } catch (const StoreError&) {
    throw;  // the same: the store is the lab's
  } catch (const std::exception& error) {
    // One failing run (say, Newton meeting a non-finite Hessian) must not lose the grid's other runs:
    // it is counted with the diverged ones.
    record.result.diverged = true;
    record.result.failed = true;
    record.result.divergence = fmt::format("failed: {}", error.what());
  }
  if (log) {
    fmt::print(log, "  {}\n", outcome_line(record.result, datasets.test_name));
    std::fflush(log);
  }
  return record;
}

constexpr const char* kTargetsNote =
    "\nThe first evaluation reaching each target accuracy (the validation set's when the runs evaluate DeepOBS's "
    "splits, else the evaluation set's at each epoch's end): the median over the runs of its step, its training "
    "seconds and its epoch; a run that never reaches it counts as infinitely slow (\"never\": at least half do "
    "not). Every run's times are in targets.csv; `performance_profiles` compares them across problems.\n";

std::string markdown_document(const LabConfig& config, const Datasets& datasets, const std::string& table,
                              bool interrupted) {
  std::vector<std::string> specs;
  for (const config::Spec& s : config.optimizers) specs.push_back("`" + s.text() + "`");
  std::vector<std::string> seeds;
  for (std::uint64_t s : config.seeds) seeds.push_back(std::to_string(s));
  const std::string& eval = datasets.test_name;
  const std::string measures =
      is_function_problem(config.base)
          ? fmt::format("Losses are the function's: on the {} set's fixed draws after the last epoch (final) and at "
                        "the lowest epoch (best); the training loss is the mean over the last epoch's batches (the "
                        "draws' noise included). A function has no accuracy, hence no target accuracies.",
                        eval)
          : fmt::format("Accuracies are on the {} set ({} images) after the last epoch (final) and at the best epoch "
                        "(best); the training loss is the mean cross-entropy over the last epoch's batches. \"Epochs "
                        "to X %\" is the first epoch whose {} accuracy reaches X %, averaged over the runs that reach "
                        "it ((k/n) when only k of the n completed runs do, \"never\" when none does).",
                        eval, datasets.test.size(), eval);
  return fmt::format(
      "# {}\n\n{}; seeds {}; BLAS threads {}.\n\nOptimisers (resolved): {}.\n\n{}{}\n"
      "Mean ± sample standard deviation over the seeds. {} Seconds: training time per run, evaluation excluded. "
      "Diverged runs (⚠: a non-finite loss) are counted and left out of the means.\n",
      config.program, context_of(config, datasets), joined(seeds), config.base.threads, joined(specs),
      interrupted ? fmt::format("**Interrupted (Ctrl-C or SIGTERM): the grid stopped early; the table holds the runs completed; "
                                "{}.**\n\n", resume_hint(config))
                  : "",
      table, measures);
}

/// Steps an epoch takes at each batch size of the grid (examples::steps_per_epoch), in the grid's order.
std::vector<std::pair<std::size_t, std::size_t>> steps_by_batch_size(const LabConfig& config, const Datasets& datasets) {
  std::vector<std::pair<std::size_t, std::size_t>> steps;
  for (std::size_t batch : config.batch_sizes) {
    RunConfig run = config.base;
    run.batch_size = batch;
    steps.emplace_back(batch, steps_per_epoch(run, datasets.train));
  }
  return steps;
}

/// Every batch size takes at least one step an epoch: a test problem drops an epoch's last partial batch, so one
/// larger than the training set (after --train-subset) would train nothing. FlagError naming it, before any run.
void check_batch_sizes(const LabConfig& config, const Datasets& datasets) {
  for (const auto& [batch, steps] : steps_by_batch_size(config, datasets)) {
    // A function problem's batches are drawn when its run starts, --epochs 0 too.
    const bool function = is_function_problem(config.base);
    if ((config.base.epochs > 0 || function) && steps == 0) {
      const std::string what =
          function ? fmt::format("{} training draws of {}", function_training_rows(config.base), config.base.problem)
                   : fmt::format("{} training images", datasets.train.size());
      throw FlagError(fmt::format("batch size {}: the {} hold no whole batch, and a test problem drops an epoch's "
                                  "last partial batch (as DeepOBS): no step would be taken",
                                  batch, what));
    }
  }
}

/// What targets.csv and the time-to-target table need: the targets, the evaluation set, each batch size's steps.
TargetContext target_context(const LabConfig& config, const Datasets& datasets) {
  return {config.thresholds, datasets.test_name, config.base.evaluation_splits, steps_by_batch_size(config, datasets)};
}

/// summary.md, summary.csv, runs.csv, targets.csv and the plots.
void write_outputs(const LabConfig& config, const Datasets& datasets, LabResult& lab) {
  const fs::path out(config.out_dir);
  lab.summaries = summarise(lab.records, config.thresholds);
  lab.markdown = summary_markdown(lab.summaries, datasets.test_name, !is_function_problem(config.base));
  const TargetContext targets = target_context(config, datasets);
  const std::string time_to_target =
      config.thresholds.empty() ? "" : "\n## Time to target\n\n" + targets_markdown(lab.records, targets) + kTargetsNote;
  write_text((out / "summary.md").string(), markdown_document(config, datasets, lab.markdown, lab.interrupted) +
                                                time_to_target + baselines_section(config.base));
  write_text((out / "summary.csv").string(), summary_csv(lab.summaries));
  write_text((out / "runs.csv").string(), runs_csv(lab.records));
  write_text((out / "targets.csv").string(), targets_csv(lab.records, targets));
  if (config.plots) {
    lab.plots = write_plots(config, lab.records, context_of(config, datasets), datasets.test_name);
  } else {
    lab.plots.message = "plots skipped (--no-plots)";
  }
}

/// The grid's epochs as they come, in curves.partial.csv beside the outputs (to watch a long grid): the
/// finished curves.csv is written whole at the end, so that it is never half-written.
std::ofstream open_progress(const fs::path& path, const std::vector<std::string>& keys) {
  std::ofstream progress(path, std::ios::trunc);
  if (!progress) throw OutputError(fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
  progress << curves_csv_header(keys);
  return progress;
}

}  // namespace

namespace {

void print_launch(std::FILE* log, std::size_t index, std::size_t total, const GridPoint& point, std::uint64_t seed) {
  if (!log) return;
  fmt::print(log, "run {}/{}: {} batch={} seed={}\n", index + 1, total, point.optimizer.text(), point.batch_size, seed);
  std::fflush(log);
}

/// The records of the grid's finished runs, by run index.
using Done = std::vector<std::optional<RunRecord>>;

/// A run that ended elsewhere (a worker, a rank, the store): its rows into the progress file, a line on `log`.
void note_result(const LabConfig& config, const RunRecord& record, std::size_t index, const std::string& where,
                 const std::vector<std::string>& keys, std::ofstream& progress, std::FILE* log) {
  progress << curves_csv_rows(record, keys);
  progress.flush();
  if (!progress) throw OutputError(fmt::format("writing {} failed: {}", config.out_dir + "/curves.partial.csv", std::strerror(errno)));
  if (log) {
    fmt::print(log, "  run {}{}: {}\n", index + 1, where, outcome_line(record.result, evaluation_set_name(config.base)));
    std::fflush(log);
  }
}

/// The runs whose results the store holds (resume.hpp) into `done`; the others' indices, in order.
std::vector<std::size_t> take_stored(const LabConfig& config, const Grid& grid, Done& done,
                                     const std::vector<std::string>& keys, std::ofstream& progress, std::FILE* log) {
  std::vector<std::size_t> pending;
  for (std::size_t index = 0; index < grid.total; ++index) {
    std::optional<RunResult> stored = grid.store ? grid.store->finished(grid.identities[index], log) : std::nullopt;
    if (!stored && grid.earlier && (stored = grid.earlier->finished(grid.identities[index]))) {
      grid.store->finish(grid.identities[index], *stored);  // kept with this grid's runs from now on
    }
    if (!stored) {
      pending.push_back(index);
      continue;
    }
    done[index] = RunRecord{grid.point(index), grid.seed(index), std::move(*stored)};
    if (config.base.evaluation_splits) {  // its evaluation log, as training it writes one (phase 1's seed 0 has none here)
      std::string text = eval_csv_header();
      for (const EvalMetrics& m : done[index]->result.evaluations) text += eval_csv_row(m);
      write_text(run_config(config, grid.point(index), grid.seed(index), index).eval_log, text);
    }
    note_result(config, *done[index], index, " (finished earlier, from the store)", keys, progress, config.epoch_lines ? log : nullptr);
  }
  if (grid.store && log) {
    const std::size_t others = grid.store->others(grid.identities);
    fmt::print(log, "# {}: {} of {} runs finished earlier, taken from there{}\n", grid.store->dir(),
               grid.total - pending.size(), grid.total,
               others == 0 ? "" : fmt::format("; {} stored run(s) of other configurations (another command, or "
                                              "changed flags) ignored", others));
    std::fflush(log);
  }
  return pending;
}

/// The runs `pending` one after another, in this process; stops at an interrupted run.
void run_serially(const LabConfig& config, const Datasets& datasets, const Grid& grid,
                  const std::vector<std::size_t>& pending, const std::vector<std::string>& keys,
                  std::ofstream& progress, std::FILE* log, LabResult& lab, Done& done) {
  for (std::size_t index : pending) {
    if (lab.interrupted) break;
    print_launch(log, index, grid.total, grid.point(index), grid.seed(index));
    done[index] = run_point(config, datasets, grid, index, progress, keys, log);
    lab.interrupted = done[index]->result.interrupted;
  }
}

/// What a worker hands back instead of a result when the store cannot be written.
const std::string kStoreFailure = "store failure: ";

/// The runs `pending` in `config.jobs` worker processes at once.
void run_in_workers(const LabConfig& config, const Datasets& datasets, const Grid& grid,
                    const std::vector<std::size_t>& pending, const std::vector<std::string>& keys,
                    std::ofstream& progress, std::FILE* log, LabResult& lab, Done& done) {
  WorkerPool pool(config.out_dir);
  std::size_t next = 0;
  while (next < pending.size() || pool.running() > 0) {
    while (pool.running() < config.jobs && next < pending.size() && !interrupt_flag() && !lab.interrupted) {
      const std::size_t index = pending[next++];
      print_launch(log, index, grid.total, grid.point(index), grid.seed(index));
      pool.launch(index, [&config, &datasets, &grid, &keys, index, log] {
        std::ofstream nowhere("/dev/null");  // the lab writes the progress file, from the results
        try {
          return result_text(run_point(config, datasets, grid, index, nowhere, keys, nullptr, log).result);
        } catch (const StoreError& error) {
          return kStoreFailure + error.what();  // not the run's failure: the lab stops
        }
      });
    }
    if (pool.running() == 0) break;
    WorkerPool::Finished finished = pool.wait_one(interrupt_flag());
    if (finished.ok && finished.text.starts_with(kStoreFailure)) throw StoreError(finished.text.substr(kStoreFailure.size()));
    RunRecord record{grid.point(finished.index), grid.seed(finished.index), {}};
    if (finished.ok) {
      record.result = parse_result(finished.text);
    } else if (finished.signal == SIGINT && interrupt_flag()) {
      record.result.interrupted = true;  // Ctrl-C ended it: its checkpoint, if any, waits in the store
    } else {
      record.result.diverged = record.result.failed = true;
      record.result.divergence = "failed: " + finished.failure;
    }
    note_result(config, record, finished.index, "", keys, progress, log);
    lab.interrupted = lab.interrupted || record.result.interrupted;
    done[finished.index] = std::move(record);
  }
  lab.interrupted = lab.interrupted || interrupt_flag() != 0;  // also when no run was under way to say so
}

/// The runs `pending` shared among the MPI ranks (mpi_grid.hpp), one at a time on each; on rank 0 their records.
void run_on_ranks(const LabConfig& config, const Datasets& datasets, const Grid& grid,
                  const std::vector<std::size_t>& pending, const std::vector<std::string>& keys,
                  std::ofstream& progress, std::FILE* log, Done& done) {
  auto describe = [&](std::size_t index) {
    return fmt::format("{} batch={} seed={}", grid.point(index).optimizer.text(), grid.point(index).batch_size, grid.seed(index));
  };
  auto run = [&](std::size_t index) {
    if (config.rank == 0) print_launch(log, index, grid.total, grid.point(index), grid.seed(index));
    std::ofstream nowhere("/dev/null");  // rank 0 writes the progress file, from the gathered results
    return run_point(config, datasets, grid, index, nowhere, keys, config.rank == 0 ? log : nullptr).result;
  };
  for (mpi::Gathered& gathered : mpi::share_runs(pending, run, describe, config.program)) {
    RunRecord record{grid.point(gathered.index), grid.seed(gathered.index), std::move(gathered.result)};
    if (record.result.failed) record.result.divergence += fmt::format(" (on rank {})", gathered.rank);
    // The store on rank 0 holds every finished run, whether or not the ranks share a file system.
    if (grid.store && !record.result.interrupted && !record.result.failed) {
      grid.store->finish(grid.identities[gathered.index], record.result);
    }
    note_result(config, record, gathered.index, fmt::format(" (rank {})", gathered.rank), keys, progress, log);
    done[gathered.index] = std::move(record);
  }
}

}  // namespace

LabResult run_lab(const LabConfig& config, const Datasets& datasets, std::FILE* log) {
  const std::vector<std::string> keys = hyper_keys(config.optimizers);
  const Grid grid(config, datasets);
  if (config.rank != 0) {  // its share of the runs, for rank 0 to write
    std::ofstream nowhere("/dev/null");
    Done none;
    run_on_ranks(config, datasets, grid, {}, keys, nowhere, nullptr, none);
    return {};
  }
  fs::create_directories(config.out_dir);
  const fs::path progress_path = fs::path(config.out_dir) / "curves.partial.csv";
  std::ofstream progress = open_progress(progress_path, keys);

  LabResult lab;
  Done done(grid.total);
  const std::vector<std::size_t> pending = take_stored(config, grid, done, keys, progress, log);
  if (config.ranks > 1) {
    run_on_ranks(config, datasets, grid, pending, keys, progress, log, done);
  } else if (config.jobs > 1) {
    run_in_workers(config, datasets, grid, pending, keys, progress, log, lab, done);
  } else {
    run_serially(config, datasets, grid, pending, keys, progress, log, lab, done);
  }
  for (std::optional<RunRecord>& record : done) {
    if (record) lab.records.push_back(std::move(*record));
  }
  if (lab.interrupted && log) fmt::print(log, "{}\n", interrupted_line(config, lab.records, grid.total));
  progress.close();
  std::string curves = curves_csv_header(keys);
  for (const RunRecord& record : lab.records) curves += curves_csv_rows(record, keys);
  write_text((fs::path(config.out_dir) / "curves.csv").string(), curves);
  fs::remove(progress_path);
  write_outputs(config, datasets, lab);
  return lab;
}

// ---------------------------------------------------------------- the program

namespace {

void print_plan(const LabConfig& config, const Datasets& datasets) {
  const RunConfig& b = config.base;
  std::size_t parameters = 0;
  if (is_function_problem(b)) {
    parameters = problems::test_problems().at(b.problem).parameters;
  } else {
    RunConfig sized = b;
    sized.images = nn::models().at(b.model.name).images;
    parameters = build_model(sized, datasets.train)->parameter_count();
  }
  fmt::print("# {} ({} parameters)\n", context_of(config, datasets), parameters);
  if (is_function_problem(b)) {
    fmt::print("# {}\n", kNoCheckpointsNote);
  }
  fmt::print("# grid: {} optimiser spec{} x batch sizes {} x seeds {} = {} runs; output in {}\n", config.optimizers.size(),
             config.optimizers.size() == 1 ? "" : "s", joined_numbers(config.batch_sizes), joined_numbers(config.seeds),
             grid_points(config).size() * config.seeds.size(), config.out_dir);
  for (const config::Spec& spec : config.optimizers) fmt::print("#   {}\n", spec.text());
  ag::set_blas_threads(b.threads);
  fmt::print("# BLAS: {}\n", ag::blas_info());
  if (config.ranks > 1) fmt::print("# MPI: {} ranks share the grid, one run at a time each; rank 0 writes the outputs\n", config.ranks);
  std::fflush(stdout);
}

/// Runs the grid and reports: 0; 1 if a run failed (threw); 130 when Ctrl-C stopped it.
int run_and_report(const LabConfig& config, const Datasets& datasets) {
  print_plan(config, datasets);
  watch_interrupts();
  LabResult lab = run_lab(config, datasets, stdout);
  fmt::print("\n{}\n", lab.markdown);
  fs::path out(config.out_dir);
  fmt::print("wrote {}, {}, {}, {}\n", (out / "curves.csv").string(), (out / "runs.csv").string(),
             (out / "summary.csv").string(), (out / "summary.md").string());
  if (lab.plots.written) {
    fmt::print("wrote {}\n", joined(lab.plots.files));
  } else if (config.plots) {
    fmt::print(stderr, "{}: warning: {}\n", config.program, lab.plots.message);
    fmt::print("warning: {}\n", lab.plots.message);
  }
  std::fflush(stdout);
  if (lab.interrupted) {
    fmt::print(stderr, "{}: interrupted; {}\n", config.program, resume_hint(config));
    return 130;
  }
  const std::string failures = failures_of(lab);
  if (failures.empty()) return 0;
  fmt::print(stderr, "{}: {}\n", config.program, failures);
  return 1;
}

}  // namespace

std::string failures_of(const LabResult& lab) {
  auto failed = [](const RunRecord& r) { return r.result.failed; };
  const auto count = std::count_if(lab.records.begin(), lab.records.end(), failed);
  if (count == 0) return "";
  const RunRecord& first = *std::find_if(lab.records.begin(), lab.records.end(), failed);
  return fmt::format("{} of {} runs failed; the first ({}, seed {}): {}", count, lab.records.size(),
                     first.point.optimizer.text(), first.seed, first.result.divergence);
}

int lab_main(int argc, const char* const* argv, LabProgram program) {
  std::optional<mpi::Session> session;  // MPI_Init under mpirun (every rank parses the same flags), nothing otherwise
  try {
    session.emplace();
  } catch (const std::exception& error) {
    report_error(program.name, error.what());
    return 2;
  }
  CLI::App app{program.summary, program.name};
  LabFlags flags(app, program);
  if (int code = parse(app, argc, argv); code >= 0) return code;
  LabConfig config;
  Datasets datasets;
  // Bad flags and specs are refused before the data is read; bad data exits 2 as well.
  int code = checked(program.name, [&] {
    config = flags.config();
    config.rank = session->rank();
    config.ranks = session->size();
    if (config.rank == 0 && config.protocol.enabled) {
      prepare_output_dir("--out", config.out_dir, {"sensitivity.csv", "performance.csv", "performance.md"});
    } else if (config.rank == 0) {
      prepare_output_dir("--out", config.out_dir, {"curves.partial.csv", "curves.csv", "runs.csv", "summary.csv", "summary.md", "targets.csv"});
    }
    datasets = load_datasets(config.base);
    check_batch_sizes(config, datasets);
    return 0;
  });
  code = mpi::agree(code);  // under mpirun: all ranks go on, or none
  if (code != 0) return code;
  try {
    if (config.rank != 0) {  // its share of the grid (of both phases of the protocol); rank 0 reports
      ag::set_blas_threads(config.base.threads);
      if (config.protocol.enabled) {
        run_protocol(config, datasets, nullptr);
      } else {
        run_lab(config, datasets, nullptr);
      }
      return 0;
    }
    return config.protocol.enabled ? protocol_main(config, datasets) : run_and_report(config, datasets);
  } catch (const std::exception& error) {
    if (config.ranks > 1) mpi::abort_all(program.name, error.what());  // never leave the other ranks waiting
    report_error(program.name, error.what());
    return 1;
  }
}

}  // namespace examples::lab
