#include "examples/common/lab.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/blas.hpp"
#include "optim/factory.hpp"

namespace examples::lab {

namespace fs = std::filesystem;

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

std::vector<GridPoint> grid_points(const LabConfig& config) {
  std::vector<GridPoint> points;
  for (const std::string& optimizer : config.optimizers) {
    std::vector<double> lrs = config.lrs;
    if (lrs.empty()) lrs.push_back(optim::default_lr(optimizer));
    for (double lr : lrs) {
      for (std::size_t batch : config.batch_sizes) points.push_back({optimizer, lr, batch});
    }
  }
  return points;
}

namespace {

/// The records of each point, points in first-seen order.
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

/// First epoch whose test accuracy reaches `threshold`, or 0.
std::size_t first_epoch_reaching(const RunResult& result, double threshold) {
  for (const EpochMetrics& m : result.epochs) {
    if (m.test_acc >= threshold) return m.epoch;
  }
  return 0;
}

}  // namespace

std::vector<Summary> summarise(const std::vector<RunRecord>& records, const std::vector<double>& thresholds) {
  std::vector<Summary> summaries;
  for (const auto& [point, runs] : group(records)) {
    Summary s;
    s.point = point;
    s.runs = runs.size();
    s.thresholds = thresholds;
    std::vector<double> final_acc, best_acc, final_loss, seconds;
    std::vector<std::vector<double>> reached(thresholds.size());
    for (const RunRecord* run : runs) {
      const RunResult& r = run->result;
      if (r.diverged || r.epochs.empty()) {
        s.diverged += r.diverged ? 1 : 0;
        continue;
      }
      final_acc.push_back(r.epochs.back().test_acc);
      best_acc.push_back(r.best_test_acc);
      final_loss.push_back(r.epochs.back().train_loss);
      seconds.push_back(r.seconds);
      for (std::size_t t = 0; t < thresholds.size(); ++t) {
        std::size_t epoch = first_epoch_reaching(r, thresholds[t]);
        if (epoch > 0) reached[t].push_back(static_cast<double>(epoch));
      }
    }
    s.final_test_acc = stat_of(final_acc);
    s.best_test_acc = stat_of(best_acc);
    s.final_train_loss = stat_of(final_loss);
    s.seconds = stat_of(seconds);
    for (const auto& epochs : reached) s.epochs_to.push_back(stat_of(epochs));
    summaries.push_back(std::move(s));
  }
  return summaries;
}

std::string point_label(const GridPoint& point, bool show_lr, bool show_batch) {
  std::string label = point.optimizer;
  if (show_lr) label += fmt::format(" lr={:g}", point.lr);
  if (show_batch) label += fmt::format(" batch={}", point.batch_size);
  return label;
}

// ---------------------------------------------------------------- writers

namespace {

std::string csv_row(const GridPoint& point, std::uint64_t seed, const EpochMetrics& m) {
  return fmt::format("{},{:g},{},{},{},{:.9g},{:.6f},{:.9g},{:.6f},{:.6g},{:.4f}\n", point.optimizer, point.lr,
                     point.batch_size, seed, m.epoch, m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.lr,
                     m.seconds);
}

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

std::string threshold_name(double threshold) { return fmt::format("{:g}", 100 * threshold); }

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

}  // namespace

std::string curves_csv_header() {
  return "optimizer,lr,batch_size,seed,epoch,train_loss,train_acc,test_loss,test_acc,lr_now,seconds\n";
}

std::string curves_csv_rows(const RunRecord& record) {
  std::string rows;
  for (const EpochMetrics& m : record.result.epochs) rows += csv_row(record.point, record.seed, m);
  return rows;
}

std::string runs_csv(const std::vector<RunRecord>& records) {
  std::string text = "optimizer,lr,batch_size,seed,epochs,final_test_acc,best_test_acc,final_train_loss,seconds,diverged,divergence\n";
  for (const RunRecord& r : records) {
    const RunResult& res = r.result;
    bool has = !res.epochs.empty();
    text += fmt::format("{},{:g},{},{},{},{},{},{},{:.3f},{},{}\n", r.point.optimizer, r.point.lr, r.point.batch_size,
                        r.seed, has ? res.epochs.back().epoch : 0, has ? cell(res.epochs.back().test_acc, "{:.6f}") : "",
                        cell(res.best_test_acc, "{:.6f}"), has ? cell(res.epochs.back().train_loss) : "", res.seconds,
                        res.diverged ? 1 : 0, res.diverged ? csv_quote(res.divergence) : "");
  }
  return text;
}

std::string summary_csv(const std::vector<Summary>& summaries) {
  std::string text =
      "optimizer,lr,batch_size,runs,diverged,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,"
      "best_test_acc_std,final_train_loss_mean,final_train_loss_std";
  std::vector<double> thresholds = summaries.empty() ? std::vector<double>{} : summaries.front().thresholds;
  for (double t : thresholds) {
    std::string name = threshold_name(t);
    text += fmt::format(",epochs_to_{0}_mean,epochs_to_{0}_std,reached_{0}", name);
  }
  text += ",seconds_mean,seconds_std\n";
  for (const Summary& s : summaries) {
    text += fmt::format("{},{:g},{},{},{},{},{},{},{},{},{}", s.point.optimizer, s.point.lr, s.point.batch_size, s.runs,
                        s.diverged, cell(s.final_test_acc.mean), cell(s.final_test_acc.std),
                        cell(s.best_test_acc.mean), cell(s.best_test_acc.std), cell(s.final_train_loss.mean),
                        cell(s.final_train_loss.std));
    for (const Stat& e : s.epochs_to) text += fmt::format(",{},{},{}", cell(e.mean), cell(e.std), e.n);
    text += fmt::format(",{},{}\n", cell(s.seconds.mean, "{:.3f}"), cell(s.seconds.std, "{:.3f}"));
  }
  return text;
}

std::string summary_markdown(const std::vector<Summary>& summaries, const std::string& eval_name) {
  std::vector<double> thresholds = summaries.empty() ? std::vector<double>{} : summaries.front().thresholds;
  std::string header = fmt::format("| optimizer | lr | batch | runs | final {0} acc (%) | best {0} acc (%) | final train loss",
                                   eval_name);
  std::string rule = "|---|---:|---:|---:|---:|---:|---:";
  for (double t : thresholds) {
    header += fmt::format(" | epochs to {} %", threshold_name(t));
    rule += "|---:";
  }
  header += " | seconds | diverged |\n";
  rule += "|---:|---:|\n";
  std::string text = header + rule;
  for (const Summary& s : summaries) {
    std::size_t completed = s.runs - s.diverged;
    std::string name = s.diverged > 0 ? fmt::format("{} ⚠", s.point.optimizer) : s.point.optimizer;
    text += fmt::format("| {} | {:g} | {} | {} | {} | {} | {}", name, s.point.lr, s.point.batch_size, s.runs,
                        pm(s.final_test_acc, 100, 2), pm(s.best_test_acc, 100, 2), pm_general(s.final_train_loss));
    for (const Stat& e : s.epochs_to) text += " | " + epochs_cell(e, completed);
    text += fmt::format(" | {} | {} |\n", pm(s.seconds, 1, 1),
                        s.diverged == 0 ? std::string("0") : fmt::format("**{} of {}**", s.diverged, s.runs));
  }
  return text;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path));
  out << text;
  out.close();
  if (!out) throw std::runtime_error(fmt::format("error writing {}", path));
}

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
    std::string probe = fmt::format("{} -e {} >/dev/null 2>&1", program, shell_quote(fmt::format("set terminal {}", terminal)));
    if (exit_status(std::system(probe.c_str())) == 0) return terminal;
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

namespace {

const char* const kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Band {
  double mean = 0, lo = 0, hi = 0;
};

/// mean +- std; for a log axis the lower edge stays positive (the smallest run's value when mean - std <= 0).
Band band_of(const std::vector<double>& values, bool positive) {
  Stat s = stat_of(values);
  Band b{s.mean, s.mean - s.std, s.mean + s.std};
  if (positive && b.lo <= 0) {
    double smallest = *std::min_element(values.begin(), values.end());
    b.lo = smallest > 0 ? smallest : s.mean * 1e-3;
  }
  return b;
}

struct Curve {
  std::string label;
  std::size_t runs = 0;
  std::string rows;  // the block of bands.dat
};

}  // namespace

PlotOutcome write_plots(const LabConfig& config, const std::vector<RunRecord>& records, const std::string& context,
                        const std::string& eval_name) {
  PlotOutcome outcome;
  std::vector<GridPoint> points = grid_points(config);
  bool vary_lr = false, vary_batch = false;
  for (const GridPoint& p : points) {
    vary_lr = vary_lr || p.lr != points.front().lr;
    vary_batch = vary_batch || p.batch_size != points.front().batch_size;
  }
  // The constant parts of the configuration go into the title instead of every key entry.
  std::string constant;
  if (!points.empty() && !vary_lr) constant += fmt::format(", lr {:g}", points.front().lr);
  if (!points.empty() && !vary_batch) constant += fmt::format(", batch {}", points.front().batch_size);

  std::vector<Curve> curves;
  std::size_t max_epoch = 0;
  for (const auto& [point, runs] : group(records)) {
    std::vector<const RunResult*> completed;
    for (const RunRecord* r : runs) {
      if (!r->result.diverged && !r->result.epochs.empty()) completed.push_back(&r->result);
    }
    if (completed.empty()) continue;  // nothing to draw: every run diverged
    Curve curve;
    curve.label = point_label(point, vary_lr, vary_batch);
    curve.runs = completed.size();
    if (completed.size() < runs.size()) curve.label += fmt::format(" ({} of {} diverged)", runs.size() - completed.size(), runs.size());
    std::size_t epochs = 0;
    for (const RunResult* r : completed) epochs = std::max(epochs, r->epochs.size());
    max_epoch = std::max(max_epoch, epochs);
    curve.rows = fmt::format("# {0}\n# epoch runs train_loss lo hi {1}_loss lo hi {1}_acc% lo hi\n", curve.label, eval_name);
    for (std::size_t e = 0; e < epochs; ++e) {
      std::vector<double> train_loss, test_loss, test_acc;
      std::size_t epoch = 0;
      for (const RunResult* r : completed) {
        if (e >= r->epochs.size()) continue;
        epoch = r->epochs[e].epoch;
        train_loss.push_back(r->epochs[e].train_loss);
        test_loss.push_back(r->epochs[e].test_loss);
        test_acc.push_back(100 * r->epochs[e].test_acc);
      }
      Band a = band_of(train_loss, true), b = band_of(test_loss, true), c = band_of(test_acc, false);
      curve.rows += fmt::format("{} {} {:.9g} {:.9g} {:.9g} {:.9g} {:.9g} {:.9g} {:.6f} {:.6f} {:.6f}\n", epoch,
                                train_loss.size(), a.mean, a.lo, a.hi, b.mean, b.lo, b.hi, c.mean, c.lo, c.hi);
    }
    curves.push_back(std::move(curve));
  }
  if (curves.empty()) {
    outcome.message = "no plots: no run completed an epoch without diverging";
    return outcome;
  }

  std::string data;
  for (const Curve& c : curves) data += c.rows + "\n\n";
  write_text((fs::path(config.out_dir) / "bands.dat").string(), data);

  std::string why;
  std::string terminal = png_terminal(config.gnuplot, &why);
  bool cairo = terminal == "pngcairo";
  std::string pm_sign = cairo ? "±" : "+/-";
  std::size_t seeds = config.seeds.size();
  std::string spread = seeds > 1 ? fmt::format("mean {} 1 std over {} seeds", pm_sign, seeds) : "one seed";

  struct Figure {
    const char* file;
    std::string title, ylabel;
    int column;  // the mean's column; lo and hi follow
    bool log_y;
    const char* key;
  };
  const Figure figures[] = {
      {"loss.png", "Training loss per epoch", "training loss (cross-entropy, mean over the epoch's batches)", 3, true,
       "top right"},
      {"test_loss.png", fmt::format("{} loss per epoch", eval_name == "test" ? "Test" : "Validation"),
       fmt::format("{} loss (cross-entropy)", eval_name), 6, true, "top right"},
      {"accuracy.png", fmt::format("{} accuracy per epoch", eval_name == "test" ? "Test" : "Validation"),
       fmt::format("{} accuracy (%)", eval_name), 9, false, "bottom right"},
  };

  std::string script = fmt::format(
      "# Written by compare_optimizers: re-render with `gnuplot plot.gp` in this directory.\n"
      "# bands.dat holds one block per configuration (index 0, 1, ...): epoch, runs, then mean, mean - std and\n"
      "# mean + std of the training loss, the {0} loss and the {0} accuracy (%), over the seeds.\n",
      eval_name);
  const bool key_outside = curves.size() > 3;
  const int width = key_outside ? 1350 : 1100;
  script += (terminal.empty() ? terminal_line("pngcairo", width, 700) : terminal_line(terminal, width, 700)) + "\n";
  script += "set grid lc rgb '#d0d0d0'\nset border lc rgb '#404040'\nset style fill transparent solid 0.18 noborder\n";
  script += "set xlabel 'epoch'\n";
  if (max_epoch <= 1) {
    script += "set xrange [0.5:1.5]\nset xtics 1\n";
  } else {
    script += fmt::format("set xrange [1:{}]\n", max_epoch);
    if (max_epoch <= 30) script += "set xtics 1\n";
  }
  // Labelled ticks at 1, 2 and 5 times the powers of ten (a loss rarely spans more than two decades).
  std::string log_tics = "set ytics (";
  for (int decade = -8; decade <= 3; ++decade) {
    for (int m : {1, 2, 5}) log_tics += fmt::format("{}{}e{}", decade == -8 && m == 1 ? "" : ", ", m, decade);
  }
  log_tics += ")\n";
  for (const Figure& f : figures) {
    script += fmt::format("\nset output {}\n", gnuplot_string(f.file));
    script += fmt::format("set title {} . \"\\n\" . {}\n",
                          gnuplot_string(fmt::format("{}: {}{}", f.title, spread, constant)), gnuplot_string(context));
    script += fmt::format("set ylabel {}\n", gnuplot_string(f.ylabel));
    script += f.log_y ? "set logscale y\nset mytics 10\nset grid ytics mytics\n" + log_tics
                      : "unset logscale y\nset ytics autofreq\nset mytics default\nset grid ytics nomytics\n";
    script += "set format y '%g'\nset autoscale yfix\nset offsets 0, 0, graph 0.04, graph 0.04\n";
    // A few curves: the key inside; more: outside, so that it never hides a line.
    script += fmt::format("set key {} box opaque Left reverse samplen 2.5 spacing 1.1 width 1\n",
                          key_outside ? "outside right top" : f.key);
    script += "plot \\\n";
    for (std::size_t i = 0; i < curves.size(); ++i) {
      const char* colour = kColours[i % std::size(kColours)];
      std::size_t dash = 1 + i / std::size(kColours);
      script += fmt::format("  'bands.dat' index {} using 1:{}:{} with filledcurves lc rgb '{}' notitle, \\\n", i,
                            f.column + 1, f.column + 2, colour);
      script += fmt::format("  'bands.dat' index {} using 1:{} with linespoints lw 2 pt 7 ps 0.7 dt {} lc rgb '{}' title {}{}\n",
                            i, f.column, dash, colour, gnuplot_string(curves[i].label),
                            i + 1 < curves.size() ? ", \\" : "");
    }
  }
  script += "\nunset output\n";
  write_text((fs::path(config.out_dir) / "plot.gp").string(), script);

  if (terminal.empty()) {
    outcome.message = fmt::format("no plots: {}; bands.dat and plot.gp are in {} for later", why, config.out_dir);
    return outcome;
  }
  std::string error = run_gnuplot(config.gnuplot, config.out_dir, "plot.gp");
  if (!error.empty()) {
    outcome.message = "no plots: " + error;
    return outcome;
  }
  for (const Figure& f : figures) outcome.files.push_back((fs::path(config.out_dir) / f.file).string());
  outcome.written = true;
  return outcome;
}

// ---------------------------------------------------------------- flags

void add_lab_flags(FlagSet& flags) {
  flags.add("model", "mlp", "the model: logreg, mlp or cnn");
  flags.add("hidden", "128,64", "mlp: hidden layer widths, comma-separated (001's network: 512,512)");
  flags.add("optimizers", "adam,rmsprop",
            "optimisers to compare, comma-separated: sgd, momentum, nesterov, nesterov-lookahead, adagrad, rmsprop, "
            "adam, nadam, amsgrad, namsgrad, sgd-hd, adam-hd (newton with --model logreg)");
  flags.add("lrs", "", "learning rates, comma-separated (default: each optimiser's own default)");
  flags.add("batch-sizes", "1024", "batch sizes, comma-separated");
  flags.add("seeds", "0,1,2,3,4", "seeds, comma-separated: every configuration runs once per seed");
  flags.add("targets", "0.97,0.98", "test accuracies whose first epoch the table reports, comma-separated");
  flags.add("out", "lab-out", "output directory (curves.csv, runs.csv, summary.csv, summary.md, *.png)");
  flags.add("gnuplot", "gnuplot", "the gnuplot program that draws the PNGs");
  flags.add_switch("no-plots", "write the CSV and Markdown files only");
  flags.add_switch("quiet", "one line per run instead of one per epoch");
  add_run_flags(flags);
}

LabConfig lab_config_from_flags(const FlagSet& flags) {
  LabConfig lab;
  std::string model = flags.text("model");
  if (model != "logreg" && model != "mlp" && model != "cnn") {
    throw FlagError(fmt::format("--model: unknown '{}' (logreg, mlp or cnn)", model));
  }
  if (model != "mlp" && flags.given("hidden")) throw FlagError("--hidden: only for --model mlp");

  lab.base.model = model;
  if (model == "mlp") read_hidden_flag(flags, lab.base);
  read_run_flags(flags, lab.base);

  lab.optimizers = flags.texts("optimizers");
  if (lab.optimizers.empty()) throw FlagError("--optimizers: at least one optimiser");
  for (const std::string& name : lab.optimizers) check_optimizer_name("optimizers", name, model);
  lab.lrs = flags.numbers("lrs");
  for (double lr : lab.lrs) {
    if (lr <= 0) throw FlagError(fmt::format("--lrs: learning rates must be positive, got {:g}", lr));
  }
  lab.batch_sizes = flags.counts("batch-sizes");
  if (lab.batch_sizes.empty()) throw FlagError("--batch-sizes: at least one batch size");
  lab.seeds.clear();
  for (double seed : flags.numbers("seeds")) {
    if (seed < 0 || seed != std::floor(seed) || seed > 9007199254740992.0) {
      throw FlagError(fmt::format("--seeds: '{:g}' is not a non-negative integer", seed));
    }
    lab.seeds.push_back(static_cast<std::uint64_t>(seed));
  }
  if (lab.seeds.empty()) throw FlagError("--seeds: at least one seed");
  lab.thresholds = flags.numbers("targets");
  for (double t : lab.thresholds) {
    if (t <= 0 || t > 1) throw FlagError(fmt::format("--targets: accuracies in (0, 1], got {:g}", t));
  }
  lab.out_dir = flags.text("out");
  if (lab.out_dir.empty()) throw FlagError("--out: needs a directory");
  lab.gnuplot = flags.text("gnuplot");
  lab.plots = !flags.on("no-plots");
  lab.epoch_lines = !flags.on("quiet");
  return lab;
}

// ---------------------------------------------------------------- the program

namespace {

std::string model_description(const RunConfig& c, std::size_t features) {
  if (c.model == "logreg") return fmt::format("linear + softmax {}-{}", features, data::kMnistClasses);
  if (c.model == "cnn") return "CNN conv3x3x8-pool-conv3x3x8-pool-fc128-10";
  std::string widths = fmt::format("{}", features);
  for (std::size_t h : c.hidden) widths += fmt::format("-{}", h);
  return fmt::format("MLP {}-{}", widths, data::kMnistClasses);
}

std::string list_of(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

}  // namespace

LabResult run_lab(const LabConfig& config, const Datasets& datasets, std::FILE* log) {
  fs::create_directories(config.out_dir);
  const fs::path out(config.out_dir);
  std::ofstream curves(out / "curves.csv", std::ios::trunc);
  if (!curves) throw std::runtime_error(fmt::format("cannot write {}", (out / "curves.csv").string()));
  curves << curves_csv_header();

  LabResult lab;
  std::vector<GridPoint> points = grid_points(config);
  std::size_t total = points.size() * config.seeds.size(), index = 0;
  for (const GridPoint& point : points) {
    for (std::uint64_t seed : config.seeds) {
      ++index;
      RunConfig run = config.base;
      run.optimizer = point.optimizer;
      run.lr = point.lr;
      run.batch_size = point.batch_size;
      run.seed = seed;
      run.log_path.clear();
      run.save_path.clear();
      run.resume_path.clear();
      if (log) {
        fmt::print(log, "run {}/{}: {} lr={:g} batch={} seed={}\n", index, total, point.optimizer, point.lr,
                   point.batch_size, seed);
        std::fflush(log);
      }
      RunResult result;
      try {
        result = train(run, datasets, [&](const EpochMetrics& m) {
          curves << csv_row(point, seed, m);
          curves.flush();
          if (log && config.epoch_lines) {
            fmt::print(log,
                       "  epoch {:>3} train_loss={:.4f} train_acc={:.4f} {}_loss={:.4f} {}_acc={:.4f} seconds={:.2f}\n",
                       m.epoch, m.train_loss, m.train_acc, datasets.test_name, m.test_loss, datasets.test_name,
                       m.test_acc, m.seconds);
            std::fflush(log);
          }
        });
      } catch (const std::exception& error) {
        // One failing run (say, Newton meeting a non-finite Hessian) must not lose the grid's other runs:
        // it is counted with the diverged ones.
        result.diverged = true;
        result.divergence = fmt::format("failed: {}", error.what());
      }
      if (log) {
        if (result.diverged) {
          fmt::print(log, "  {}\n", result.divergence);
        } else {
          fmt::print(log, "  {}\n", result.final_line());
        }
        std::fflush(log);
      }
      lab.records.push_back({point, seed, std::move(result)});
    }
  }
  curves.close();

  lab.summaries = summarise(lab.records, config.thresholds);
  lab.markdown = summary_markdown(lab.summaries, datasets.test_name);
  const RunConfig& b = config.base;
  std::string context = fmt::format("{}, init {}, {} ({} train / {} {}), {} epoch{}{}", model_description(b, datasets.train.features()),
                                    b.init, b.dataset, datasets.train.size(), datasets.test.size(), datasets.test_name,
                                    b.epochs, b.epochs == 1 ? "" : "s", b.schedule != "constant" ? ", schedule " + b.schedule : "");
  if (b.weight_decay > 0) context += fmt::format(", weight decay {:g}", b.weight_decay);
  std::string seeds;
  for (std::uint64_t s : config.seeds) seeds += (seeds.empty() ? "" : ", ") + std::to_string(s);
  std::string markdown = fmt::format(
      "# compare_optimizers\n\n{}; seeds {}; BLAS threads {}.\n\n{}\n"
      "Mean ± sample standard deviation over the seeds. Accuracies are on the {} set ({} images) after the last "
      "epoch (final) and at the best epoch (best); the training loss is the mean cross-entropy over the last "
      "epoch's batches. \"Epochs to X %\" is the first epoch whose {} accuracy reaches X %, averaged over the runs "
      "that reach it ((k/n) when only k of the n completed runs do, \"never\" when none does). Seconds: training "
      "time per run, evaluation excluded. Diverged runs (⚠: a non-finite loss) are counted and left out of the "
      "means.\n",
      context, seeds, b.threads, lab.markdown, datasets.test_name, datasets.test.size(), datasets.test_name);
  write_text((out / "summary.md").string(), markdown);
  write_text((out / "summary.csv").string(), summary_csv(lab.summaries));
  write_text((out / "runs.csv").string(), runs_csv(lab.records));
  if (config.plots) {
    lab.plots = write_plots(config, lab.records, context, datasets.test_name);
  } else {
    lab.plots.message = "plots skipped (--no-plots)";
  }
  return lab;
}

int lab_main(int argc, const char* const* argv) {
  FlagSet flags(argv[0],
                "The optimiser-comparison lab: trains every optimiser x learning rate x batch size x seed of a grid "
                "on one model and data set,\nthen writes per-epoch curves, a mean +- std table and PNG plots.\n"
                "001's experiment: --model mlp --hidden 512,512 --init normal --optimizers adam,rmsprop --lrs 1e-3 "
                "--batch-sizes 1024 --epochs 10");
  add_lab_flags(flags);
  LabConfig config;
  Datasets datasets;
  try {
    flags.parse(argc, argv);
    if (flags.help_requested()) {
      fmt::print("{}", flags.usage());
      return 0;
    }
    config = lab_config_from_flags(flags);
    datasets = load_datasets(config.base);
  } catch (const std::exception& error) {
    fmt::print(stderr, "{}: {}\n", argv[0], error.what());
    return 2;
  }
  try {
    const RunConfig& b = config.base;
    auto model = build_model(b, datasets.train.features(), data::kMnistClasses);
    std::string lrs;
    for (double lr : config.lrs) lrs += fmt::format("{}{:g}", lrs.empty() ? "" : ",", lr);
    std::string batches, seeds;
    for (std::size_t s : config.batch_sizes) batches += fmt::format("{}{}", batches.empty() ? "" : ",", s);
    for (std::uint64_t s : config.seeds) seeds += fmt::format("{}{}", seeds.empty() ? "" : ",", s);
    fmt::print("# {} ({} parameters, init {}) on {} ({} train, {} {}), {} epoch{}, schedule {}\n",
               model_description(b, datasets.train.features()), model->parameter_count(), b.init, b.dataset,
               datasets.train.size(), datasets.test.size(), datasets.test_name, b.epochs, b.epochs == 1 ? "" : "s",
               b.schedule);
    fmt::print("# grid: optimizers {} x lrs {} x batch sizes {} x seeds {} = {} runs; output in {}\n",
               list_of(config.optimizers), lrs.empty() ? "default" : lrs, batches, seeds,
               grid_points(config).size() * config.seeds.size(), config.out_dir);
    ag::set_blas_threads(b.threads);
    fmt::print("# BLAS: {}\n", ag::blas_info());
    std::fflush(stdout);
    LabResult lab = run_lab(config, datasets, stdout);
    fmt::print("\n{}\n", lab.markdown);
    fs::path out(config.out_dir);
    fmt::print("wrote {}, {}, {}, {}\n", (out / "curves.csv").string(), (out / "runs.csv").string(),
               (out / "summary.csv").string(), (out / "summary.md").string());
    if (lab.plots.written) {
      std::string files;
      for (const std::string& f : lab.plots.files) files += (files.empty() ? "" : ", ") + f;
      fmt::print("wrote {}\n", files);
    } else {
      fmt::print(stderr, "{}: warning: {}\n", argv[0], lab.plots.message);
      fmt::print("warning: {}\n", lab.plots.message);
    }
    return 0;
  } catch (const std::exception& error) {
    fmt::print(stderr, "{}: {}\n", argv[0], error.what());
    return 1;
  }
}

}  // namespace examples::lab
