// The loss landscape of a small MLP on MNIST (analysis/landscape.hpp): trains 784-64-10 with Adam for a few
// epochs, then draws the loss on a subset of the training images along the line from the initial to the
// final weights, and on a plane through the final weights along two random filter-normalised directions
// (Li et al., "Visualizing the Loss Landscape of Neural Nets", 2018), and the training path (the weights
// every 20 steps) on its top two principal directions, over the loss on that plane. Every optimiser of
// --optimizers trains from the same initial weights on the same batches; their paths are projected together on
// the top two principal directions of all their points, measured from the shared start, and drawn over the loss
// on that plane (contours and a 3-D surface). The first optimiser's final weights are the ones of the 1-D curve,
// the random slice and the single-path PCA plane.
//
//   loss_landscape                                     3 epochs on 10,000 images, landscape on 2,000
//   loss_landscape --grid 41 --range 0.5 --seed 3 --out landscape-out
//   loss_landscape --optimizers 'adam(lr=1e-3)' 'momentum(lr=0.05)' 'lion(lr=1e-4)'
//   loss_landscape --spectrum      also the Hessian's spectral density at the final weights (SLQ, as PyHessian)
//   loss_landscape --spectrum --curvature both    and the generalised Gauss-Newton matrix's beside it
// Writes, in --out: interpolation.csv (alpha, loss), surface.csv (a, b, loss), trajectory.csv (point, x, y: the
// weights every 20 steps, then the final ones), paths.csv (optimizer, point, step, x, y, plane_loss: every
// optimiser's weights every 20 steps on the shared plane),
// surface.dat, plane.dat, trajectory.dat, paths-plane.dat and paths.dat (for gnuplot), the gnuplot scripts,
// interpolation.png, surface.png, trajectory.png, paths.png (contours) and paths-surface.png (3-D); with
// --spectrum, spectrum.csv (eigenvalue, density; ggn-spectrum.csv for the GGN) and spectrum.png/.pdf.
#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "analysis/ggn.hpp"
#include "analysis/landscape.hpp"
#include "analysis/spectrum.hpp"
#include "autograd/ops.hpp"
#include "data/dataset.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/preflight.hpp"
#include "nn/nn.hpp"
#include "optim/optimizer.hpp"
#include "optim/registry.hpp"

namespace {

namespace fs = std::filesystem;
namespace lab = examples::lab;

struct Settings {
  std::size_t epochs = 3, train_size = 10000, subset = 2000, hidden = 64, batch = 100;
  std::size_t grid = 21, alphas = 41;
  double range = 1.0, alpha_min = -0.5, alpha_max = 1.5;
  std::uint64_t seed = 0;
  std::string data, out = "landscape-out", gnuplot = "gnuplot";
  bool no_plots = false;
  std::vector<std::string> optimizers{"adam(lr=1e-3)", "sgd(lr=0.1)", "rmsprop(lr=1e-3)"};
  bool spectrum = false;
  std::size_t spectrum_probes = 4, spectrum_steps = 80;
  std::string curvature = "hessian";
};

/// Weights are saved every this many steps (and at the end).
constexpr std::size_t kEvery = 20;

/// The largest --range and |alpha|: the weights of the slice and of the line are float32, and the loss of the
/// MLP grows with the square of the scale, so that far beyond this it overflows (to inf, then NaN).
constexpr double kMaxScale = 1e6;

/// One optimiser's run: its spec as given (the label), and its flat weights every kEvery steps from the start.
struct Run {
  std::string label;
  config::Spec spec;
  std::vector<std::vector<double>> path;
  std::size_t steps = 0;
};

/// The first `count` images (count x 784, f32) and their labels.
struct Batch {
  ag::Tensor x;
  std::vector<std::int32_t> labels;
};

Batch first_images(const data::Dataset& d, std::size_t count) {
  count = std::min(count, d.size());
  std::vector<float> pixels(d.images.begin(), d.images.begin() + static_cast<std::ptrdiff_t>(count * d.features()));
  return {ag::Tensor::from_data({count, d.features()}, std::span<const float>(pixels)),
          std::vector<std::int32_t>(d.labels.begin(), d.labels.begin() + static_cast<std::ptrdiff_t>(count))};
}

/// An optimiser's run that diverged: nothing of the study is written.
struct Diverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Whether every value of the flat weights is finite.
bool finite(const std::vector<double>& flat) {
  return std::all_of(flat.begin(), flat.end(), [](double v) { return std::isfinite(v); });
}

/// Trains `run.spec` from the model's current weights, on the batches in order; fills run.path with the flat
/// weights every kEvery steps, the initial and final ones included. Diverged at a non-finite loss or weights.
void train(nn::Module& model, const Batch& data, const Settings& s, Run& run) {
  std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer(run.spec, model.named_parameters());
  const analysis::ParamLayout layout(model.parameters(), "loss_landscape");
  run.path = {layout.flatten(layout.params(), "loss_landscape")};
  const std::size_t n = data.labels.size();
  for (std::size_t epoch = 1; epoch <= s.epochs; ++epoch) {
    double sum = 0;
    for (std::size_t start = 0; start < n; start += s.batch) {
      const std::size_t size = std::min(s.batch, n - start);
      std::span<const std::int32_t> labels(data.labels.data() + start, size);
      opt->zero_grad();
      ag::Tensor loss = ag::cross_entropy(model(ag::narrow(data.x, 0, start, size)), labels);
      if (!std::isfinite(loss.item())) {
        throw Diverged(fmt::format("'{}' diverged: the training loss became {} at step {} (epoch {})", run.label,
                                   loss.item(), run.steps + 1, epoch));
      }
      sum += loss.item() * static_cast<double>(size);
      ag::backward(loss);
      opt->step();
      if (++run.steps % kEvery == 0) run.path.push_back(layout.flatten(layout.params(), "loss_landscape"));
    }
    fmt::print("{}: epoch {}: training loss {:.4f}\n", run.label, epoch, sum / static_cast<double>(n));
  }
  if (run.steps % kEvery != 0) run.path.push_back(layout.flatten(layout.params(), "loss_landscape"));
  if (!finite(run.path.back())) {
    throw Diverged(fmt::format("'{}' diverged: its last update made the weights non-finite (step {})", run.label,
                               run.steps));
  }
}

/// Writes flat values into the parameters (not recorded).
void set_params(const std::vector<ag::Tensor>& params, const std::vector<double>& flat) {
  const analysis::ParamLayout layout(params, "loss_landscape");
  const std::vector<ag::Tensor> values = layout.unflatten(flat);
  ag::NoGradGuard no_grad;
  for (std::size_t k = 0; k < params.size(); ++k) {
    ag::Tensor p = params[k];
    p.copy_(values[k]);
  }
}

/// Every optimiser of --optimizers trained from the model's current weights; the model is left with the first
/// one's final weights.
std::vector<Run> train_all(nn::Module& model, const Batch& data, const Settings& s) {
  std::vector<Run> runs;
  for (const std::string& text : s.optimizers) {
    runs.push_back({text, optim::resolve_optimizer(config::parse_spec(text)), {}, 0});
  }
  const std::vector<ag::Tensor> params = model.parameters();
  for (Run& run : runs) {
    if (&run != &runs.front()) set_params(params, runs.front().path.front());
    train(model, data, s, run);
  }
  set_params(params, runs.front().path.back());
  return runs;
}

const std::array<const char*, 8> kColours = {"#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                             "#e377c2", "#17becf", "#8c564b", "#bcbd22"};

/// Rows "x y loss" of a surface, a blank line after each row of the grid (gnuplot's grid format).
std::string grid_dat(const analysis::Surface& surface) {
  std::string dat;
  for (std::size_t i = 0; i < surface.ys.size(); ++i) {
    for (std::size_t j = 0; j < surface.xs.size(); ++j) {
      dat += fmt::format("{:.6g} {:.6g} {:.9g}\n", surface.xs[j], surface.ys[i], surface.at(i, j));
    }
    dat += "\n";
  }
  return dat;
}

/// A filled contour plot of `data` (a grid_dat file) into `png`, the origin marked as `origin`, with `extra`
/// plot items after it; equal units on both axes if `square`.
std::string contour_script(const std::string& terminal, const std::string& data, const std::string& png,
                           const std::string& title, const std::string& extra, bool square,
                           const std::string& origin = "final weights") {
  std::string script = lab::terminal_line(terminal, 800, 700) + "\nset output '" + png + "'\n";
  script += "set title " + lab::gnuplot_string(title) + (square ? "\nset size ratio -1" : "") +
            "\nset autoscale fix\nset key below\n";
  script += "set contour base\nset cntrparam levels incremental 0, 0.1, 10\nunset surface\nset view map\n"
            "set table 'contours-" + data + "'\nsplot '" + data + "' using 1:2:3 with lines\nunset table\nunset contour\n"
            "set palette defined (0 '#1a3a6b', 1 '#3f7fbf', 2 '#a6cde8', 3 '#ffffff')\nset cblabel 'loss'\n"
            "plot '" + data + "' using 1:2:3 with image notitle, 'contours-" + data + "' using 1:2 with lines lc rgb "
            "'#333333' lw 0.6 notitle, '+' using (0):(0) every ::0::0 with points pt 1 ps 2 lw 2 lc rgb '#d62728' "
            "title " + lab::gnuplot_string(origin) + extra + "\n";
  return script;
}

/// The paths over the shared plane's loss as a 3-D surface (each path drawn on the surface, at the plane's loss).
std::string surface_3d_script(const std::string& terminal, const std::vector<Run>& runs, const std::string& title) {
  std::string script = lab::terminal_line(terminal, 1000, 760) + "\nset output 'paths-surface.png'\n";
  script += "set title " + lab::gnuplot_string(title) + "\nset key top left\nset view 60, 30\nset autoscale fix\n"
            "set xlabel 'PC 1'\nset ylabel 'PC 2'\nset zlabel 'loss' rotate\nset pm3d at s noborder\n"
            "set palette defined (0 '#1a3a6b', 1 '#3f7fbf', 2 '#a6cde8', 3 '#ffffff')\nset cblabel 'loss'\n"
            "splot 'paths-plane.dat' using 1:2:3 with pm3d fillcolor palette notitle";
  // Each path a little above the surface, so that the surface does not hide it.
  for (std::size_t k = 0; k < runs.size(); ++k) {
    script += fmt::format(", 'paths.dat' index {} using 1:2:($3 + 0.03) with linespoints pt 7 ps 0.5 lw 2.5 lc rgb '{}' title {}", k,
                          kColours[k % kColours.size()], lab::gnuplot_string(runs[k].label));
  }
  return script + "\n";
}

/// The contour plot's items for the paths of paths.dat, one colour each.
std::string path_items(const std::vector<Run>& runs) {
  std::string items;
  for (std::size_t k = 0; k < runs.size(); ++k) {
    items += fmt::format(", 'paths.dat' index {} using 1:2 with linespoints pt 7 ps 0.5 lw 2 lc rgb '{}' title {}", k,
                         kColours[k % kColours.size()], lab::gnuplot_string(runs[k].label));
  }
  return items;
}

std::string line_script(const std::string& terminal) {
  std::string line = lab::terminal_line(terminal, 900, 600) + "\nset output 'interpolation.png'\n";
  line += "set datafile separator ','\nset key off\nset grid\nset xlabel 'alpha (0: initial weights, 1: final)'\n"
          "set ylabel 'training loss'\nset title 'loss along (1 - alpha) theta_0 + alpha theta_1'\n"
          "plot 'interpolation.csv' using 1:2 skip 1 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4'\n";
  return line;
}

/// The optimisers' paths on the top two principal directions of all their points (measured from the shared
/// start), and the loss on that plane: on the grid around the paths, and at each projected point.
struct SharedPlane {
  analysis::TrajectoriesPca pca;
  analysis::Surface surface;
  std::vector<std::vector<double>> plane_loss;  // [run][point]
};

/// [min - 20 %, max + 20 %] of every value given, in `grid` points.
std::vector<double> padded_axis(const std::vector<std::vector<double>>& values, std::size_t grid) {
  double low = values.at(0).at(0), high = low;
  for (const std::vector<double>& v : values) {
    for (double x : v) {
      low = std::min(low, x);
      high = std::max(high, x);
    }
  }
  const double margin = 0.2 * (high - low) + 1e-3;
  return analysis::linspace(low - margin, high + margin, grid);
}

/// The plane through the runs' shared start; the parameters are left as they were.
SharedPlane shared_plane(const analysis::LossFn& loss, const std::vector<ag::Tensor>& params, const std::vector<Run>& runs,
                         std::size_t grid) {
  std::vector<std::vector<std::vector<double>>> paths;
  for (const Run& run : runs) paths.push_back(run.path);
  const std::vector<double>& start = runs.front().path.front();
  SharedPlane out{analysis::trajectories_pca(paths, start), {}, {}};
  const analysis::TrajectoriesPca& pca = out.pca;
  const std::vector<double> now = analysis::ParamLayout(params, "loss_landscape").flatten(params, "loss_landscape");
  set_params(params, start);
  out.surface = analysis::loss_surface(loss, params, padded_axis(pca.x, grid), padded_axis(pca.y, grid), pca.direction_x,
                                       pca.direction_y);
  for (std::size_t k = 0; k < runs.size(); ++k) {
    out.plane_loss.emplace_back();
    for (std::size_t i = 0; i < pca.x[k].size(); ++i) {
      out.plane_loss[k].push_back(
          analysis::loss_surface(loss, params, {pca.x[k][i]}, {pca.y[k][i]}, pca.direction_x, pca.direction_y).losses[0]);
    }
  }
  set_params(params, now);
  return out;
}

/// paths.csv, paths.dat and paths-plane.dat; prints where each run ends on the plane.
void write_shared_plane(const Settings& s, const std::vector<Run>& runs, const SharedPlane& plane) {
  std::string csv = "optimizer,point,step,x,y,plane_loss\n", dat;
  for (std::size_t k = 0; k < runs.size(); ++k) {
    const std::vector<double>&x = plane.pca.x[k], &y = plane.pca.y[k], &loss = plane.plane_loss[k];
    for (std::size_t i = 0; i < x.size(); ++i) {
      csv += fmt::format("\"{}\",{},{},{:.9g},{:.9g},{:.9g}\n", runs[k].label, i,
                         std::min(i * kEvery, runs[k].steps), x[i], y[i], loss[i]);
      dat += fmt::format("{:.9g} {:.9g} {:.9g}\n", x[i], y[i], loss[i]);
    }
    dat += "\n\n";
    fmt::print("{}: {} steps, ends at ({:.4g}, {:.4g}) on the shared plane, plane loss {:.4f}\n", runs[k].label,
               runs[k].steps, x.back(), y.back(), loss.back());
  }
  const fs::path out(s.out);
  lab::write_text((out / "paths.csv").string(), csv);
  lab::write_text((out / "paths.dat").string(), dat);
  lab::write_text((out / "paths-plane.dat").string(), grid_dat(plane.surface));
  fmt::print("the {} paths' shared PCA plane: explained variance {:.4f} + {:.4f}\n", runs.size(),
             plane.pca.explained_variance_ratio[0], plane.pca.explained_variance_ratio[1]);
}

/// interpolation.png, surface.png, trajectory.png, paths.png and paths-surface.png from the data files, with
/// gnuplot (a warning if it cannot).
void write_plots(const Settings& s, const analysis::TrajectoryPca& pca, const std::vector<Run>& runs,
                 const SharedPlane& plane) {
  const fs::path out(s.out);
  std::string why;
  const std::string terminal = lab::png_terminal(s.gnuplot, &why);
  if (!terminal.empty()) {
    lab::write_text((out / "interpolation.gp").string(), line_script(terminal));
    lab::write_text((out / "surface.gp").string(),
                    contour_script(terminal, "surface.dat", "surface.png",
                                   fmt::format("loss around the final weights, filter-normalised directions (seed {})", s.seed), "",
                                   true));
    lab::write_text((out / "trajectory.gp").string(),
                    contour_script(terminal, "plane.dat", "trajectory.png",
                                   fmt::format("the training path on its PCA plane ({:.1f}% + {:.1f}% of its variance)",
                                               100 * pca.explained_variance_ratio[0], 100 * pca.explained_variance_ratio[1]),
                                   ", 'trajectory.dat' using 1:2 with linespoints pt 7 ps 0.6 lw 2 "
                                   "lc rgb '#ff7f0e' title 'every 20 steps'",
                                   false));
    const std::string title = fmt::format("{} optimisers from one start, on the PCA plane of their paths ({:.1f}% + {:.1f}%)",
                                          runs.size(), 100 * plane.pca.explained_variance_ratio[0],
                                          100 * plane.pca.explained_variance_ratio[1]);
    lab::write_text((out / "paths.gp").string(),
                    contour_script(terminal, "paths-plane.dat", "paths.png", title, path_items(runs), false, "start"));
    lab::write_text((out / "paths-surface.gp").string(), surface_3d_script(terminal, runs, title));
    for (const char* script : {"interpolation.gp", "surface.gp", "trajectory.gp", "paths.gp", "paths-surface.gp"}) {
      if (why.empty()) why = lab::run_gnuplot(s.gnuplot, s.out, script);
    }
  }
  if (!why.empty()) {
    fmt::print(stderr, "loss_landscape: warning: no plot: {}\n", why);
    return;
  }
  fmt::print("wrote {0}/interpolation.png, {0}/surface.png, {0}/trajectory.png, {0}/paths.png, {0}/paths-surface.png\n",
             s.out);
}

/// One curvature matrix's spectrum: its density by stochastic Lanczos quadrature (as PyHessian), its top eigenvalue
/// (Lanczos) and trace (Hutchinson, 100 probes).
struct Spectrum {
  std::string name;  // "Hessian" or "GGN"
  analysis::SpectralDensity density;
  double top = 0;
  analysis::TraceEstimate trace;
};

Spectrum spectrum_of(const std::string& name, const analysis::LinearOperator& op, const Settings& s) {
  return {name, analysis::spectral_density(op, {.probes = s.spectrum_probes, .steps = s.spectrum_steps, .seed = s.seed}),
          analysis::lanczos_eigenpairs(op, 1, {.seed = s.seed}).values.at(0), analysis::hutchinson_trace(op, 100, s.seed)};
}

/// "<name> of n parameters: top eigenvalue ..., trace ... (Hutchinson), ... (SLQ); quadrature nodes in [lo, hi]".
std::string spectrum_line(const Spectrum& sp) {
  double low = sp.density.nodes[0][0], high = low;
  for (const std::vector<double>& nodes : sp.density.nodes) {
    for (double node : nodes) {
      low = std::min(low, node);
      high = std::max(high, node);
    }
  }
  return fmt::format("{} of {} parameters: top eigenvalue {:.4f} (Lanczos), trace {:.2f} +- {:.2f} (Hutchinson, 100 "
                     "probes), {:.2f} (SLQ); quadrature nodes in [{:.4f}, {:.4f}]",
                     sp.name, sp.density.dimension, sp.top, sp.trace.estimate, sp.trace.standard_error,
                     sp.density.trace_estimate(), low, high);
}

/// The spectra's figure: each density on a log scale (the GGN, positive semi-definite, beside the Hessian).
std::string spectrum_script(const std::vector<Spectrum>& spectra, const std::vector<std::string>& files,
                            const Settings& s, const std::string& terminal, const std::string& output) {
  std::string title = fmt::format("Spectral density at the trained weights, SLQ ({} probes x {} Lanczos steps)",
                                  s.spectrum_probes, s.spectrum_steps);
  std::string script = terminal + "\nset output " + lab::gnuplot_string(output) +
                       "\nset logscale y\nset format y '%.0e'\nset yrange [1e-8:*]\nset grid\nset key top right\n"
                       "set xlabel 'eigenvalue'\nset ylabel 'density (log scale)'\nset title " +
                       lab::gnuplot_string(title) + "\nplot ";
  const char* colours[] = {"#1f77b4", "#d62728"};
  for (std::size_t i = 0; i < spectra.size(); ++i) {
    script += fmt::format("'{}' using 1:2 with lines lw 2 lc rgb '{}' title {}{}", files[i], colours[i % 2],
                          lab::gnuplot_string(fmt::format("{}: top eigenvalue {:.3g}, trace {:.3g}", spectra[i].name,
                                                          spectra[i].top, spectra[i].trace.estimate)),
                          i + 1 < spectra.size() ? ", " : "\n");
  }
  return script + "unset output\n";
}

/// The spectral densities at the trained weights (--curvature: the Hessian, the generalised Gauss-Newton matrix
/// G = J^T H_z J, or both): spectrum.csv / ggn-spectrum.csv (eigenvalue, density) and, unless --no-plots,
/// spectrum.png and .pdf (the densities on a log scale, as PyHessian's figure).
void write_spectrum(const Settings& s, const analysis::LossFn& loss, const analysis::LogitsFn& logits,
                    const std::vector<ag::Tensor>& params) {
  std::vector<Spectrum> spectra;
  std::vector<std::string> files;
  if (s.curvature != "ggn") {
    spectra.push_back(spectrum_of("Hessian", analysis::HessianOperator(loss, params), s));
    files.push_back("spectrum");
  }
  if (s.curvature != "hessian") {
    spectra.push_back(spectrum_of("GGN", analysis::GgnOperator(logits, params), s));
    files.push_back("ggn-spectrum");
  }
  const fs::path out(s.out);
  for (std::size_t i = 0; i < spectra.size(); ++i) {
    const analysis::SpectralDensity& rho = spectra[i].density;
    std::string csv = "eigenvalue,density\n", dat;
    for (std::size_t k = 0; k < rho.grid.size(); ++k) {
      csv += fmt::format("{:.9g},{:.9g}\n", rho.grid[k], rho.density[k]);
      dat += fmt::format("{:.9g} {:.9g}\n", rho.grid[k], std::max(rho.density[k], 1e-300));
    }
    lab::write_text((out / (files[i] + ".csv")).string(), csv);
    lab::write_text((out / (files[i] + ".dat")).string(), dat);
    fmt::print("{}\nwrote {}/{}.csv\n", spectrum_line(spectra[i]), s.out, files[i]);
  }
  if (s.no_plots) return;
  std::vector<std::string> data_files;
  for (const std::string& f : files) data_files.push_back(f + ".dat");
  const lab::PlotOutcome plot = lab::render_figure(
      s.out, s.gnuplot, "spectrum", 900, 600, "# Re-render with `gnuplot spectrum.gp` in this directory.\n",
      [&](const std::string& terminal, const std::string& output) {
        return spectrum_script(spectra, data_files, s, terminal, output);
      },
      "no plot");
  if (!plot.written) {
    fmt::print(stderr, "loss_landscape: warning: {}\n", plot.message);
    return;
  }
  for (const std::string& file : plot.files) fmt::print("wrote {}\n", file);
}

/// Whether `spec` steps from the gradients alone, as train() steps it (step() after backward), found by building
/// it over a stand-in parameter: Optimizer::step() throws std::logic_error for a method that needs the loss itself.
bool steps_from_gradients(const config::Spec& spec) {
  ag::Tensor stand_in = ag::Tensor::zeros({1}).set_requires_grad();
  std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer(spec, std::vector<nn::NamedTensor>{{"w", stand_in}});
  try {
    opt->step();
    return true;
  } catch (const std::logic_error&) {
    return false;
  }
}

/// The flags that no work can fix, refused before the data is read: FlagError or config::SpecError.
void check_settings(const Settings& s) {
  if (!(s.range > 0) || !std::isfinite(s.range)) {
    throw examples::FlagError(fmt::format("--range: a positive finite number, got {}", s.range));
  }
  if (s.range > kMaxScale) {
    throw examples::FlagError(fmt::format("--range: at most {:g}, got {:g}: the slice's weights are float32, and the "
                                          "loss overflows to inf and NaN far beyond it",
                                          kMaxScale, s.range));
  }
  if (!std::isfinite(s.alpha_min) || !std::isfinite(s.alpha_max) || !(s.alpha_min < s.alpha_max)) {
    throw examples::FlagError(fmt::format("--alpha-min {} and --alpha-max {}: two finite numbers, the first below "
                                          "the second", s.alpha_min, s.alpha_max));
  }
  if (std::max(std::abs(s.alpha_min), std::abs(s.alpha_max)) > kMaxScale) {
    throw examples::FlagError(fmt::format("--alpha-min {:g} and --alpha-max {:g}: each at most {:g} in magnitude: the "
                                          "line's weights are float32, and the loss overflows to inf and NaN far "
                                          "beyond it",
                                          s.alpha_min, s.alpha_max, kMaxScale));
  }
  for (const std::string& text : s.optimizers) {
    if (steps_from_gradients(optim::resolve_optimizer(config::parse_spec(text)))) continue;
    throw examples::FlagError(fmt::format(
        "--optimizers: '{}' needs the loss itself, not only a batch's gradients (L-BFGS's line search, SAM's ascent "
        "step, Nesterov look-ahead and Newton's curvature evaluate it away from the current weights, and so do "
        "wrappers around them); loss_landscape steps each optimiser once per batch from its gradients: give "
        "optimisers that step from the gradients alone, such as sgd, momentum, adam or rmsprop",
        text));
  }
}

int run(const Settings& s) {
  const data::Dataset train_set = data::load_mnist(s.data.empty() ? data::default_mnist_dir() : s.data, data::Split::train);
  const Batch train_data = first_images(train_set, s.train_size), eval = first_images(train_set, s.subset);
  ag::Generator gen(s.seed);
  std::shared_ptr<nn::Sequential> model = nn::make_mlp(train_set.features(), {s.hidden}, data::kMnistClasses,
                                                       nn::Init::default_uniform, &gen);
  std::vector<ag::Tensor> params = model->parameters(), initial;
  for (const ag::Tensor& p : params) initial.push_back(p.clone());
  std::vector<Run> runs;
  try {
    runs = train_all(*model, train_data, s);
  } catch (const Diverged& diverged) {
    fmt::print(stderr, "loss_landscape: {}; nothing is written (a lower rate?)\n", diverged.what());
    return 3;
  }
  const std::vector<std::vector<double>>& path = runs.front().path;
  std::vector<ag::Tensor> trained;
  for (const ag::Tensor& p : params) trained.push_back(p.clone());

  const analysis::LossFn loss = [&] { return ag::cross_entropy((*model)(eval.x), eval.labels); };
  const std::vector<double> alphas = analysis::linspace(s.alpha_min, s.alpha_max, s.alphas);
  const std::vector<double> line = analysis::interpolate_loss(loss, params, initial, trained, alphas);
  const std::vector<double> axis = analysis::linspace(-s.range, s.range, s.grid);
  const analysis::Surface surface = analysis::random_loss_surface(loss, params, axis, axis, {.seed = s.seed});

  std::string csv = "alpha,loss\n";
  for (std::size_t k = 0; k < alphas.size(); ++k) csv += fmt::format("{:.6g},{:.9g}\n", alphas[k], line[k]);
  std::string surface_csv = "a,b,loss\n";
  for (std::size_t i = 0; i < axis.size(); ++i) {
    for (std::size_t j = 0; j < axis.size(); ++j) {
      surface_csv += fmt::format("{:.6g},{:.6g},{:.9g}\n", axis[j], axis[i], surface.at(i, j));
    }
  }
  // The trajectory on its PCA plane, over the loss on that plane around the final weights.
  const analysis::TrajectoryPca pca = analysis::trajectory_pca(path);
  const analysis::Surface plane = analysis::loss_surface(loss, params, padded_axis({pca.x}, s.grid),
                                                         padded_axis({pca.y}, s.grid), pca.direction_x, pca.direction_y);
  std::string pca_csv = "point,x,y\n", pca_dat;
  for (std::size_t k = 0; k < path.size(); ++k) {
    pca_csv += fmt::format("{},{:.9g},{:.9g}\n", k, pca.x[k], pca.y[k]);
    pca_dat += fmt::format("{:.9g} {:.9g}\n", pca.x[k], pca.y[k]);
  }
  const fs::path out(s.out);
  lab::write_text((out / "interpolation.csv").string(), csv);
  lab::write_text((out / "surface.csv").string(), surface_csv);
  lab::write_text((out / "surface.dat").string(), grid_dat(surface));
  lab::write_text((out / "trajectory.csv").string(), pca_csv);
  lab::write_text((out / "plane.dat").string(), grid_dat(plane));
  lab::write_text((out / "trajectory.dat").string(), pca_dat);
  const auto [low, high] = std::minmax_element(surface.losses.begin(), surface.losses.end());
  const std::vector<double> ends = analysis::interpolate_loss(loss, params, initial, trained, {0.0, 1.0});
  fmt::print("loss on {} images: initial {:.4f}, final {:.4f}; along the line {:.4f} .. {:.4f}; on the {} x {} slice "
             "in [{:g}, {:g}]^2: {:.4f} .. {:.4f}\n",
             eval.labels.size(), ends[0], ends[1], *std::min_element(line.begin(), line.end()),
             *std::max_element(line.begin(), line.end()), s.grid, s.grid, -s.range, s.range, *low, *high);
  fmt::print("trajectory of {} points: explained variance {:.4f} + {:.4f}\n", path.size(),
             pca.explained_variance_ratio[0], pca.explained_variance_ratio[1]);
  fmt::print("wrote {0}/interpolation.csv, {0}/surface.csv, {0}/surface.dat, {0}/trajectory.csv, {0}/plane.dat\n", s.out);
  const SharedPlane shared = shared_plane(loss, params, runs, s.grid);
  write_shared_plane(s, runs, shared);
  fmt::print("wrote {0}/paths.csv, {0}/paths.dat, {0}/paths-plane.dat\n", s.out);
  std::fflush(stdout);
  if (!s.no_plots) write_plots(s, pca, runs, shared);
  if (s.spectrum) write_spectrum(s, loss, [&] { return (*model)(eval.x); }, params);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Loss landscapes of a small MLP on MNIST: initial -> final, a filter-normalised 2-D slice, and several "
               "optimisers' paths on one PCA plane; its Hessian's spectral density with --spectrum.",
               "loss_landscape");
  Settings s;
  examples::count_option(app.add_option("--epochs", s.epochs, "training epochs (Adam, lr 1e-3)"), 1, 1000)->capture_default_str();
  examples::count_option(app.add_option("--train-size", s.train_size, "training images"), 1, 60000)->capture_default_str();
  examples::count_option(app.add_option("--subset", s.subset, "images the landscape's loss is taken on"), 1, 60000)->capture_default_str();
  examples::count_option(app.add_option("--hidden", s.hidden, "hidden units"), 1, 4096)->capture_default_str();
  examples::count_option(app.add_option("--grid", s.grid, "points per axis of the 2-D slice"), 2, 1001)->capture_default_str();
  app.add_option("--range", s.range, "the slice covers [-range, range]^2")->capture_default_str();
  app.add_option("--alpha-min", s.alpha_min, "first alpha of the 1-D curve")->capture_default_str();
  app.add_option("--alpha-max", s.alpha_max, "last alpha of the 1-D curve")->capture_default_str();
  examples::count_option(app.add_option("--alphas", s.alphas, "points of the 1-D curve"), 2, 100001)->capture_default_str();
  examples::count_option(app.add_option("--seed", s.seed, "seed of the initial weights and the directions"))->capture_default_str();
  examples::path_option(app.add_option("--data", s.data, "the MNIST directory (default: $TAPEGRAD_MNIST_DIR or data/mnist)"));
  examples::path_option(app.add_option("--out", s.out, "output directory"))->capture_default_str();
  CLI::Option* gnuplot = app.add_option("--gnuplot", s.gnuplot, "the gnuplot program that draws the PNGs")->capture_default_str();
  app.add_flag("--no-plots", s.no_plots, "write the data files only")->excludes(gnuplot);  // a flag that would do nothing
  app.add_option("--optimizers", s.optimizers,
                 "optimiser specs, space-separated, each trained from the same start; the first one's weights make the "
                 "1-D curve, the slice and trajectory.png")
      ->capture_default_str();
  CLI::Option* spectrum = app.add_flag("--spectrum", s.spectrum,
               "also the Hessian's spectral density at the first optimiser's final weights (stochastic Lanczos "
               "quadrature), its top eigenvalue and trace: spectrum.csv, spectrum.png");
  app.add_option("--curvature", s.curvature,
                 "--spectrum: of the Hessian, of the generalised Gauss-Newton matrix G = J^T H_z J (the Fisher, for the "
                 "cross-entropy: positive semi-definite), or both in one figure")
      ->check(CLI::IsMember({"hessian", "ggn", "both"}))
      ->capture_default_str()
      ->needs(spectrum);
  examples::count_option(app.add_option("--spectrum-probes", s.spectrum_probes, "--spectrum: random probes"), 1, 1000)
      ->capture_default_str()
      ->needs(spectrum);
  examples::count_option(app.add_option("--spectrum-steps", s.spectrum_steps, "--spectrum: Lanczos steps per probe"), 2,
                         10000)
      ->capture_default_str()
      ->needs(spectrum);
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;
  return examples::checked("loss_landscape", [&] {
    check_settings(s);
    examples::prepare_output_dir("--out", s.out,
                                 {"interpolation.csv", "surface.csv", "surface.dat", "trajectory.csv", "plane.dat", "trajectory.dat", "interpolation.gp",
                                  "surface.gp", "trajectory.gp", "paths.csv", "paths.dat", "paths-plane.dat", "paths.gp",
                                  "paths-surface.gp", "spectrum.csv", "spectrum.dat", "spectrum.gp", "ggn-spectrum.csv",
                                  "ggn-spectrum.dat"});
    return run(s);
  });
}
