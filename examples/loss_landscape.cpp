// The loss landscape of a small MLP on MNIST (analysis/landscape.hpp): trains 784-64-10 with Adam for a few
// epochs, then draws the loss on a subset of the training images along the line from the initial to the
// final weights, and on a plane through the final weights along two random filter-normalised directions
// (Li et al., "Visualizing the Loss Landscape of Neural Nets", 2018), and the training path (the weights
// every 20 steps) on its top two principal directions, over the loss on that plane.
//
//   loss_landscape                                     3 epochs on 10,000 images, landscape on 2,000
//   loss_landscape --grid 41 --range 0.5 --seed 3 --out landscape-out
// Writes, in --out: interpolation.csv (alpha, loss), surface.csv (a, b, loss), trajectory.csv (point, x, y: the
// weights every 20 steps, then the final ones),
// surface.dat, plane.dat and trajectory.dat (for gnuplot), the gnuplot scripts, interpolation.png, surface.png and
// trajectory.png.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "analysis/landscape.hpp"
#include "autograd/ops.hpp"
#include "data/dataset.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/preflight.hpp"
#include "nn/nn.hpp"
#include "optim/adam.hpp"

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

/// Trains; returns the flat weights every `every` steps, the initial and final ones included.
std::vector<std::vector<double>> train(nn::Module& model, const Batch& data, const Settings& s, std::size_t every) {
  optim::Adam adam(model.named_parameters(), {.lr = 1e-3});
  const analysis::ParamLayout layout(model.parameters(), "loss_landscape");
  std::vector<std::vector<double>> path{layout.flatten(layout.params(), "loss_landscape")};
  std::size_t steps = 0;
  const std::size_t n = data.labels.size();
  for (std::size_t epoch = 1; epoch <= s.epochs; ++epoch) {
    double sum = 0;
    for (std::size_t start = 0; start < n; start += s.batch) {
      const std::size_t size = std::min(s.batch, n - start);
      std::span<const std::int32_t> labels(data.labels.data() + start, size);
      adam.zero_grad();
      ag::Tensor loss = ag::cross_entropy(model(ag::narrow(data.x, 0, start, size)), labels);
      sum += loss.item() * static_cast<double>(size);
      ag::backward(loss);
      adam.step();
      if (++steps % every == 0) path.push_back(layout.flatten(layout.params(), "loss_landscape"));
    }
    fmt::print("epoch {}: training loss {:.4f}\n", epoch, sum / static_cast<double>(n));
  }
  if (steps % every != 0) path.push_back(layout.flatten(layout.params(), "loss_landscape"));
  return path;
}

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

/// A filled contour plot of `data` (a grid_dat file) into `png`, with `extra` plot items after it; equal units
/// on both axes if `square`.
std::string contour_script(const std::string& terminal, const std::string& data, const std::string& png,
                           const std::string& title, const std::string& extra, bool square) {
  std::string script = lab::terminal_line(terminal, 800, 700) + "\nset output '" + png + "'\n";
  script += "set title " + lab::gnuplot_string(title) + (square ? "\nset size ratio -1" : "") +
            "\nset autoscale fix\nset key below\n";
  script += "set contour base\nset cntrparam levels incremental 0, 0.1, 10\nunset surface\nset view map\n"
            "set table 'contours-" + data + "'\nsplot '" + data + "' using 1:2:3 with lines\nunset table\nunset contour\n"
            "set palette defined (0 '#1a3a6b', 1 '#3f7fbf', 2 '#a6cde8', 3 '#ffffff')\nset cblabel 'loss'\n"
            "plot '" + data + "' using 1:2:3 with image notitle, 'contours-" + data + "' using 1:2 with lines lc rgb "
            "'#333333' lw 0.6 notitle, '+' using (0):(0) every ::0::0 with points pt 1 ps 2 lw 2 lc rgb '#d62728' "
            "title 'final weights'" + extra + "\n";
  return script;
}

std::string line_script(const std::string& terminal) {
  std::string line = lab::terminal_line(terminal, 900, 600) + "\nset output 'interpolation.png'\n";
  line += "set datafile separator ','\nset key off\nset grid\nset xlabel 'alpha (0: initial weights, 1: final)'\n"
          "set ylabel 'training loss'\nset title 'loss along (1 - alpha) theta_0 + alpha theta_1'\n"
          "plot 'interpolation.csv' using 1:2 skip 1 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4'\n";
  return line;
}

/// interpolation.png, surface.png and trajectory.png from the data files, with gnuplot (a warning if it cannot).
void write_plots(const Settings& s, const analysis::TrajectoryPca& pca) {
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
    for (const char* script : {"interpolation.gp", "surface.gp", "trajectory.gp"}) {
      if (why.empty()) why = lab::run_gnuplot(s.gnuplot, s.out, script);
    }
  }
  if (!why.empty()) {
    fmt::print(stderr, "loss_landscape: warning: no plot: {}\n", why);
    return;
  }
  fmt::print("wrote {0}/interpolation.png, {0}/surface.png, {0}/trajectory.png\n", s.out);
}

int run(const Settings& s) {
  const data::Dataset train_set = data::load_mnist(s.data.empty() ? data::default_mnist_dir() : s.data, data::Split::train);
  const Batch train_data = first_images(train_set, s.train_size), eval = first_images(train_set, s.subset);
  ag::Generator gen(s.seed);
  std::shared_ptr<nn::Sequential> model = nn::make_mlp(train_set.features(), {s.hidden}, data::kMnistClasses,
                                                       nn::Init::default_uniform, &gen);
  std::vector<ag::Tensor> params = model->parameters(), initial;
  for (const ag::Tensor& p : params) initial.push_back(p.clone());
  const std::vector<std::vector<double>> path = train(*model, train_data, s, 20);
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
  const auto [x0, x1] = std::minmax_element(pca.x.begin(), pca.x.end());
  const auto [y0, y1] = std::minmax_element(pca.y.begin(), pca.y.end());
  const double mx = 0.2 * (*x1 - *x0) + 1e-3, my = 0.2 * (*y1 - *y0) + 1e-3;
  const analysis::Surface plane =
      analysis::loss_surface(loss, params, analysis::linspace(*x0 - mx, *x1 + mx, s.grid),
                             analysis::linspace(*y0 - my, *y1 + my, s.grid), pca.direction_x, pca.direction_y);
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
  std::fflush(stdout);
  if (!s.no_plots) write_plots(s, pca);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Loss landscapes of a small MLP on MNIST: initial -> final, and a filter-normalised 2-D slice.",
               "loss_landscape");
  Settings s;
  app.add_option("--epochs", s.epochs, "training epochs (Adam, lr 1e-3)")->check(CLI::Range(0, 1000))->capture_default_str();
  app.add_option("--train-size", s.train_size, "training images")->check(CLI::Range(1, 60000))->capture_default_str();
  app.add_option("--subset", s.subset, "images the landscape's loss is taken on")->check(CLI::Range(1, 60000))->capture_default_str();
  app.add_option("--hidden", s.hidden, "hidden units")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--grid", s.grid, "points per axis of the 2-D slice")->check(CLI::Range(2, 1001))->capture_default_str();
  app.add_option("--range", s.range, "the slice covers [-range, range]^2")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--alpha-min", s.alpha_min, "first alpha of the 1-D curve")->capture_default_str();
  app.add_option("--alpha-max", s.alpha_max, "last alpha of the 1-D curve")->capture_default_str();
  app.add_option("--alphas", s.alphas, "points of the 1-D curve")->check(CLI::Range(2, 100001))->capture_default_str();
  app.add_option("--seed", s.seed, "seed of the initial weights and the directions")->capture_default_str();
  examples::path_option(app.add_option("--data", s.data, "the MNIST directory (default: $TAPEGRAD_MNIST_DIR or data/mnist)"));
  examples::path_option(app.add_option("--out", s.out, "output directory"))->capture_default_str();
  app.add_option("--gnuplot", s.gnuplot, "the gnuplot program that draws the PNGs")->capture_default_str();
  app.add_flag("--no-plots", s.no_plots, "write the data files only");
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;
  return examples::checked("loss_landscape", [&] {
    examples::prepare_output_dir("--out", s.out,
                                 {"interpolation.csv", "surface.csv", "surface.dat", "trajectory.csv", "plane.dat", "trajectory.dat", "interpolation.gp",
                                  "surface.gp", "trajectory.gp"});
    return run(s);
  });
}
