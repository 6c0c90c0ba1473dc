// The lab's figure: one multi-panel plot per study (training loss, evaluation loss, accuracy side by side, one
// shared key below them), mean ± 1 std bands over the seeds, one colour family per optimiser (its
// configurations in shades of one hue, light to dark in grid order), x in epochs, steps or seconds; written as
// curves.png and curves.pdf (or .svg) from bands.dat and plot.gp.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "examples/common/lab.hpp"

namespace examples::lab {

namespace fs = std::filesystem;

namespace {

/// What the runs measured, for the panels: a function problem's runs have no accuracy, and its losses may be
/// negative (a noisy 2-D function's training loss), which a log axis cannot show, or span many decades.
struct Measured {
  bool accuracy = true, positive_train_loss = true, positive_test_loss = true;
  double lowest = std::numeric_limits<double>::infinity(), highest = 0;  // of the positive finite losses
};

Measured measured_in(const std::vector<RunRecord>& records, bool accuracy) {
  Measured m;
  m.accuracy = accuracy;
  for (const RunRecord& r : records) {
    for (const EpochMetrics& e : r.result.epochs) {
      m.positive_train_loss = m.positive_train_loss && !(e.train_loss <= 0);
      m.positive_test_loss = m.positive_test_loss && !(e.test_loss <= 0);
      for (double loss : {e.train_loss, e.test_loss}) {
        if (loss > 0 && std::isfinite(loss)) m.lowest = std::min(m.lowest, loss), m.highest = std::max(m.highest, loss);
      }
    }
  }
  return m;
}

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
  std::string label, optimizer;
  std::size_t runs = 0;
  std::string rows;  // the block of bands.dat
};

/// Steps a run had taken at the end of its epoch e (0-based): its steps spread evenly over its epochs.
double steps_at(const RunResult& r, std::size_t e) {
  return std::round(static_cast<double>(r.steps) * static_cast<double>(e + 1) / static_cast<double>(r.epochs.size()));
}

/// One line of bands.dat: epoch e (0-based) over the runs that reached it.
std::string band_row(const std::vector<const RunResult*>& completed, std::size_t e, const Measured& measured) {
  std::vector<double> steps, seconds, train_loss, test_loss, test_acc;
  std::size_t epoch = 0;
  for (const RunResult* r : completed) {
    if (e >= r->epochs.size()) continue;
    epoch = r->epochs[e].epoch;
    double elapsed = 0;
    for (std::size_t k = 0; k <= e; ++k) elapsed += r->epochs[k].seconds;
    steps.push_back(steps_at(*r, e));
    seconds.push_back(elapsed);
    train_loss.push_back(r->epochs[e].train_loss);
    test_loss.push_back(r->epochs[e].test_loss);
    test_acc.push_back(100 * r->epochs[e].test_acc);
  }
  Band a = band_of(train_loss, measured.positive_train_loss), b = band_of(test_loss, measured.positive_test_loss),
       c = band_of(test_acc, false);
  const std::string accuracy = measured.accuracy ? fmt::format(" {:.6f} {:.6f} {:.6f}", c.mean, c.lo, c.hi) : "";
  return fmt::format("{} {} {:.9g} {:.6g} {:.9g} {:.9g} {:.9g} {:.9g} {:.9g} {:.9g}{}\n", epoch, train_loss.size(),
                     stat_of(steps).mean, stat_of(seconds).mean, a.mean, a.lo, a.hi, b.mean, b.lo, b.hi, accuracy);
}

/// One curve per point with a completed run: mean +- std per epoch over its completed runs.
std::vector<Curve> curves_of(const std::vector<RunRecord>& records, const std::vector<std::string>& varying,
                             bool vary_batch, const std::string& eval_name, const Measured& measured) {
  std::vector<Curve> curves;
  for (const auto& [point, runs] : group(records)) {
    std::vector<const RunResult*> completed;
    for (const RunRecord* r : runs) {
      if (!r->result.diverged && !r->result.epochs.empty()) completed.push_back(&r->result);
    }
    if (completed.empty()) continue;  // nothing to draw: every run diverged
    Curve curve;
    curve.label = point_label(point, varying, vary_batch);
    curve.optimizer = point.optimizer.name;
    curve.runs = completed.size();
    if (completed.size() < runs.size()) {
      curve.label += fmt::format(" ({} of {} diverged)", runs.size() - completed.size(), runs.size());
    }
    std::size_t epochs = 0;
    for (const RunResult* r : completed) epochs = std::max(epochs, r->epochs.size());
    curve.rows = fmt::format("# {0}\n# epoch runs steps seconds train_loss lo hi {1}_loss lo hi{2}\n", curve.label,
                             eval_name, measured.accuracy ? fmt::format(" {}_acc% lo hi", eval_name) : "");
    for (std::size_t e = 0; e < epochs; ++e) curve.rows += band_row(completed, e, measured);
    curves.push_back(std::move(curve));
  }
  return curves;
}

/// "#rrggbb" of a colour given by hue (degrees), saturation and lightness in [0, 1].
std::string hsl(double hue, double saturation, double lightness) {
  double c = (1 - std::abs(2 * lightness - 1)) * saturation;
  double h = std::fmod(hue, 360.0) / 60.0;
  double x = c * (1 - std::abs(std::fmod(h, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  if (h < 1) r = c, g = x;
  else if (h < 2) r = x, g = c;
  else if (h < 3) g = c, b = x;
  else if (h < 4) g = x, b = c;
  else if (h < 5) r = x, b = c;
  else r = c, b = x;
  double m = lightness - c / 2;
  auto byte = [&](double v) { return static_cast<int>(std::lround(255 * std::clamp(v + m, 0.0, 1.0))); };
  return fmt::format("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b));
}

}  // namespace

std::vector<std::string> family_colours(const std::vector<std::string>& optimizers) {
  // Hues far apart, in the order of the usual ten-colour cycle (blue, orange, green, red, purple, ...).
  static const double kHues[] = {210, 30, 120, 355, 275, 185, 320, 60, 15, 240};
  std::vector<std::string> names;  // the families, first-seen order
  for (const std::string& name : optimizers) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::vector<std::string> colours;
  for (std::size_t i = 0; i < optimizers.size(); ++i) {
    std::size_t family = std::find(names.begin(), names.end(), optimizers[i]) - names.begin();
    std::size_t members = std::count(optimizers.begin(), optimizers.end(), optimizers[i]);
    std::size_t rank = std::count(optimizers.begin(), optimizers.begin() + static_cast<std::ptrdiff_t>(i), optimizers[i]);
    double hue = kHues[family % std::size(kHues)];
    double saturation = family < std::size(kHues) ? 0.75 : 0.35;  // an eleventh family: greyer shades
    double lightness = members == 1 ? 0.42 : 0.68 - 0.43 * static_cast<double>(rank) / static_cast<double>(members - 1);
    colours.push_back(hsl(hue, saturation, lightness));
  }
  return colours;
}

namespace {

struct Panel {
  std::string title, ylabel;
  int column;  // the mean's column in bands.dat; lo and hi follow
  bool log_y;
};

std::vector<Panel> panels_for(const std::string& eval_name, const Measured& measured) {
  std::string Eval = eval_name == "test" ? "Test" : "Validation";
  if (!measured.accuracy) {  // a function problem: its two losses
    return {{"Training loss", "training loss (the function, batch noise)", 5, measured.positive_train_loss},
            {Eval + " loss", eval_name + " loss (the function)", 8, measured.positive_test_loss}};
  }
  return {{"Training loss", "training loss (cross-entropy)", 5, true},
          {Eval + " loss", eval_name + " loss (cross-entropy)", 8, true},
          {Eval + " accuracy", eval_name + " accuracy (%)", 11, false}};
}

/// Labelled ticks over the losses' decades: at 1, 2 and 5 times the powers of ten when they span at most six
/// (a cross-entropy rarely spans more than two), else at powers of ten, every k-th so that about eight are labelled
/// (a function's loss can grow by a hundred decades before it overflows).
std::string log_tics(const Measured& measured) {
  int first = -8, last = 3;
  if (measured.highest > 0) {
    first = static_cast<int>(std::floor(std::log10(measured.lowest)));
    last = static_cast<int>(std::ceil(std::log10(measured.highest)));
  }
  const int span = last - first, every = span <= 6 ? 1 : (span + 7) / 8;
  std::string tics;
  for (int decade = first; decade <= last; decade += every) {
    for (int m : {1, 2, 5}) {
      if (m == 1 || span <= 6) tics += fmt::format("{}{}e{}", tics.empty() ? "" : ", ", m, decade);
    }
  }
  return "set ytics (" + tics + ")\n";
}

/// The x axis: its bands.dat column and label.
struct XAxis {
  int column;
  std::string label;
  std::size_t max = 0;  // the last epoch
};

XAxis x_axis_of(const std::string& name, std::size_t max_epoch) {
  if (name == "steps") return {3, "steps", max_epoch};
  if (name == "seconds") return {4, "training seconds (evaluation excluded)", max_epoch};
  return {1, "epoch", max_epoch};
}

/// One panel of the multiplot (no key: the key has a strip of its own).
std::string panel_script(const Panel& p, const XAxis& x, const std::vector<Curve>& curves,
                         const std::vector<std::string>& colours, const Measured& measured) {
  std::string script = fmt::format("set title {}\nset ylabel {}\nset xlabel {}\n", gnuplot_string(p.title),
                                   gnuplot_string(p.ylabel), gnuplot_string(x.label));
  script += p.log_y ? "set logscale y\nset mytics 10\n" + log_tics(measured)
                    : "unset logscale y\nset ytics autofreq\nset mytics default\n";
  script += "set format y '%g'\nset autoscale yfix\nset offsets 0, 0, graph 0.04, graph 0.04\nunset key\nplot \\\n";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    script += fmt::format("  'bands.dat' index {} using {}:{}:{} with filledcurves lc rgb '{}' notitle, \\\n", i,
                          x.column, p.column + 1, p.column + 2, colours[i]);
    script += fmt::format("  'bands.dat' index {} using {}:{} with linespoints lw 2 pt {} ps 0.6 lc rgb '{}' notitle{}\n",
                          i, x.column, p.column, 5 + 2 * (i % 4), colours[i], i + 1 < curves.size() ? ", \\" : "");
  }
  return script;
}

/// The key alone, in a strip across the bottom `height` of the canvas (a panel's key could only be as wide as
/// its panel): empty axes whose lines carry the curves' titles.
std::string key_script(const std::vector<Curve>& curves, const std::vector<std::string>& colours, double height,
                       std::size_t columns) {
  std::string script = fmt::format(
      "set origin 0, 0\nset size 1, {:.3f}\nunset title\nunset xlabel\nunset ylabel\nunset border\nunset tics\n"
      "unset grid\nunset logscale\nset xrange [0:1]\nset yrange [0:1]\nset lmargin 0\nset rmargin 0\n"
      "set tmargin 0\nset bmargin 0\nset key center center horizontal maxcols {} Left reverse samplen 2.5 "
      "spacing 1.1 width 2\nplot \\\n",
      height, columns);
  for (std::size_t i = 0; i < curves.size(); ++i) {
    script += fmt::format("  NaN with linespoints lw 2 pt {} ps 0.6 lc rgb '{}' title {}{}\n", 5 + 2 * (i % 4),
                          colours[i], gnuplot_string(curves[i].label), i + 1 < curves.size() ? ", \\" : "");
  }
  return script;
}

/// The whole figure on one terminal: its panels side by side, their shared title above, the key below.
std::string figure_script(const std::string& terminal_line, const std::string& output, const std::string& title,
                          const std::vector<Panel>& panels, const XAxis& x, const std::vector<Curve>& curves,
                          const std::vector<std::string>& colours, double key_fraction, std::size_t key_columns,
                          const Measured& measured) {
  std::string script = fmt::format("\n{}\nset output {}\n", terminal_line, gnuplot_string(output));
  // `title` is a gnuplot string expression (two lines joined by "\n").
  script += "set grid lc rgb '#d0d0d0'\nset border lc rgb '#404040'\nset style fill transparent solid 0.28 noborder\n";
  script += x.column == 1 && x.max <= 30 ? "set xtics 1\n" : "set xtics autofreq\n";
  // Margins and gaps as fractions of the width: two panels (a function problem's) are on a narrower canvas.
  const bool two = panels.size() == 2;
  script += fmt::format("set multiplot layout 1,{} title {} margins {}, 0.99, {:.3f}, 0.86 spacing {}, 0\n",
                        panels.size(), title, two ? 0.08 : 0.06, key_fraction, two ? 0.1 : 0.07);
  for (const Panel& p : panels) script += panel_script(p, x, curves, colours, measured);
  script += key_script(curves, colours, key_fraction - 0.07, key_columns);
  return script + "unset multiplot\nunset output\n";
}

/// The parts of the grid every curve shares, for the title: ", lr 0.001, batch 1024".
std::string constant_parts(const std::vector<GridPoint>& points, const std::vector<std::string>& varying) {
  std::string constant;
  if (points.empty()) return constant;
  bool lr_varies = std::find(varying.begin(), varying.end(), "lr") != varying.end();
  if (const std::string* lr = points.front().optimizer.find("lr"); lr && !lr_varies) constant += ", lr " + *lr;
  if (!batch_varies(points)) constant += fmt::format(", batch {}", points.front().batch_size);
  return constant;
}

/// The vector terminal this gnuplot has, with the file name it writes ("" when neither pdfcairo nor svg).
std::pair<std::string, std::string> vector_terminal(const std::string& gnuplot, int width, int height) {
  if (gnuplot_has_terminal(gnuplot, "pdfcairo")) {
    return {fmt::format("set terminal pdfcairo size {:.2f}in,{:.2f}in noenhanced font 'Sans,8'", width / 110.0,
                        height / 110.0),
            "curves.pdf"};
  }
  if (gnuplot_has_terminal(gnuplot, "svg")) {
    return {fmt::format("set terminal svg size {},{} noenhanced font 'Sans,11'", width, height), "curves.svg"};
  }
  return {"", ""};
}

}  // namespace

PlotOutcome render_figure(const std::string& dir, const std::string& gnuplot, const std::string& name, int width,
                          int height, const std::string& header,
                          const std::function<std::string(const std::string&, const std::string&)>& script,
                          const std::string& what) {
  PlotOutcome outcome;
  std::string why;
  const std::string terminal = png_terminal(gnuplot, &why);
  std::string text = header + script(terminal_line(terminal.empty() ? "pngcairo" : terminal, width, height), name + ".png");
  const bool pdf = !terminal.empty() && gnuplot_has_terminal(gnuplot, "pdfcairo");
  if (pdf) {
    text += script(fmt::format("set terminal pdfcairo size {:.1f}in,{:.1f}in noenhanced font 'Sans,8'", width / 110.0,
                               height / 110.0),
                   name + ".pdf");
  }
  write_text((fs::path(dir) / (name + ".gp")).string(), text);
  if (terminal.empty()) {
    outcome.message = fmt::format("{}: {}; {}.gp is in {} for later", what, why, name, dir);
    return outcome;
  }
  if (std::string error = run_gnuplot(gnuplot, dir, name + ".gp"); !error.empty()) {
    outcome.message = what + ": " + error;
    return outcome;
  }
  outcome.files.push_back((fs::path(dir) / (name + ".png")).string());
  if (pdf) outcome.files.push_back((fs::path(dir) / (name + ".pdf")).string());
  outcome.written = true;
  return outcome;
}

PlotOutcome write_plots(const LabConfig& config, const std::vector<RunRecord>& records, const std::string& context,
                        const std::string& eval_name) {
  PlotOutcome outcome;
  std::vector<GridPoint> points = grid_points(config);
  std::vector<std::string> varying = varying_keys(config.optimizers);
  const Measured measured = measured_in(records, !is_function_problem(config.base));
  std::vector<Curve> curves =
      curves_of(records, varying, !points.empty() && batch_varies(points), eval_name, measured);
  if (curves.empty()) {
    outcome.message = "no plots: no run completed an epoch without diverging";
    return outcome;
  }
  std::string data;
  std::vector<std::string> optimizers;
  for (const Curve& c : curves) {
    data += c.rows + "\n\n";
    optimizers.push_back(c.optimizer);
  }
  write_text((fs::path(config.out_dir) / "bands.dat").string(), data);

  std::string why;
  std::string terminal = png_terminal(config.gnuplot, &why);
  std::string pm_sign = terminal == "pngcairo" ? "±" : "+/-";
  std::size_t seeds = config.seeds.size();
  std::string title = gnuplot_string((seeds > 1 ? fmt::format("mean {} 1 std over {} seeds", pm_sign, seeds) : "one seed") +
                                     constant_parts(points, varying)) +
                      " . \"\\n\" . " + gnuplot_string(context);
  const std::size_t columns = std::min<std::size_t>(curves.size(), 4);
  const std::size_t rows = (curves.size() + columns - 1) / columns;
  const int width = measured.accuracy ? 1500 : 1100, height = 520 + 24 * static_cast<int>(rows);
  const double key_fraction = (24.0 * static_cast<double>(rows) + 75.0) / height;
  std::vector<std::string> colours = family_colours(optimizers);
  std::vector<Panel> panels = panels_for(eval_name, measured);
  std::size_t max_epoch = 0;
  for (const RunRecord& r : records) {
    if (!r.result.epochs.empty()) max_epoch = std::max(max_epoch, r.result.epochs.back().epoch);
  }
  XAxis x = x_axis_of(config.x_axis, max_epoch);
  std::string script = fmt::format(
      "# Written by {0}: re-render with `gnuplot plot.gp` in this directory.\n"
      "# bands.dat holds one block per configuration (index 0, 1, ...): epoch, runs, steps, training seconds,\n"
      "# then mean, mean - std and mean + std of the training loss, the {1} loss{2}.\n",
      config.program, eval_name, measured.accuracy ? fmt::format(" and the {} accuracy (%)", eval_name) : "");
  script += figure_script(terminal_line(terminal.empty() ? "pngcairo" : terminal, width, height), "curves.png", title,
                          panels, x, curves, colours, key_fraction, columns, measured);
  auto [vector_line, vector_file] = terminal.empty() ? std::pair<std::string, std::string>{}
                                                     : vector_terminal(config.gnuplot, width, height);
  if (!vector_line.empty()) {
    script += figure_script(vector_line, vector_file, title, panels, x, curves, colours, key_fraction, columns, measured);
  }
  write_text((fs::path(config.out_dir) / "plot.gp").string(), script);

  if (terminal.empty()) {
    outcome.message = fmt::format("no plots: {}; bands.dat and plot.gp are in {} for later", why, config.out_dir);
    return outcome;
  }
  if (std::string error = run_gnuplot(config.gnuplot, config.out_dir, "plot.gp"); !error.empty()) {
    outcome.message = "no plots: " + error;
    return outcome;
  }
  outcome.files.push_back((fs::path(config.out_dir) / "curves.png").string());
  if (!vector_file.empty()) outcome.files.push_back((fs::path(config.out_dir) / vector_file).string());
  outcome.written = true;
  return outcome;
}

}  // namespace examples::lab
