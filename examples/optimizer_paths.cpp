// The picture every optimiser tutorial shows, from the real optimiser objects: the paths of several
// optimisers on a 2-D test function (problems/functions.hpp), drawn over its contour map.
//
//   optimizer_paths --function rosenbrock                         # the function's own choice of optimisers
//   optimizer_paths --function beale --optimizers 'adam(lr=0.05)' 'lion(lr=0.01)' --steps 500
//   optimizer_paths --list-functions
// Writes, in --out: paths.csv (optimizer, step, x, y, f), grid.dat (log10(1 + f - min) on a 200 x 200 grid
// of the view), paths.dat, plot.gp and paths.png.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "config/spec.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/preflight.hpp"
#include "autograd/tensor.hpp"
#include "optim/optimizer.hpp"
#include "optim/registry.hpp"
#include "problems/functions.hpp"

namespace {

namespace fs = std::filesystem;
namespace lab = examples::lab;

struct Settings {
  std::string function = "rosenbrock";
  std::vector<std::string> optimizers;
  std::size_t steps = 300;
  std::vector<double> start;
  std::uint64_t seed = 0;
  std::string out = "paths-out", gnuplot = "gnuplot";
  bool no_plots = false;
};

struct Path {
  std::string label;
  std::vector<problems::PathPoint> points;
};

/// log10(1 + f - lowest) over a 200 x 200 grid of the view: rows of "x y z", a blank line between rows.
std::string grid_data(const problems::TestFunction& function) {
  constexpr int n = 200;
  const auto [x0, x1, y0, y1] = function.view;
  std::vector<double> values;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      values.push_back(problems::value_at(function, x0 + (x1 - x0) * j / (n - 1), y0 + (y1 - y0) * i / (n - 1)));
    }
  }
  const double lowest = *std::min_element(values.begin(), values.end());
  std::string text;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      text += fmt::format("{:.6g} {:.6g} {:.6g}\n", x0 + (x1 - x0) * j / (n - 1), y0 + (y1 - y0) * i / (n - 1),
                          std::log10(1 + values[static_cast<std::size_t>(i * n + j)] - lowest));
    }
    text += "\n";
  }
  return text;
}

std::string paths_csv(const std::vector<Path>& paths) {
  std::string text = "optimizer,step,x,y,f\n";
  for (const Path& p : paths) {
    for (std::size_t k = 0; k < p.points.size(); ++k) {
      text += fmt::format("\"{}\",{},{:.12g},{:.12g},{:.12g}\n", p.label, k, p.points[k].x, p.points[k].y, p.points[k].f);
    }
  }
  return text;
}

/// The paths for gnuplot: "x y" rows, one block (index) per path.
std::string paths_dat(const std::vector<Path>& paths) {
  std::string text;
  for (const Path& p : paths) {
    for (const problems::PathPoint& point : p.points) text += fmt::format("{:.9g} {:.9g}\n", point.x, point.y);
    text += "\n\n";
  }
  return text;
}

std::string plot_script(const problems::TestFunction& function, const std::vector<Path>& paths,
                        const std::string& terminal, std::size_t steps) {
  const auto [x0, x1, y0, y1] = function.view;
  std::string script = lab::terminal_line(terminal, 1000, 800) + "\nset output 'paths.png'\n";
  script += fmt::format("set xrange [{}:{}]\nset yrange [{}:{}]\nset size ratio -1\n", x0, x1, y0, y1);
  script += fmt::format("set title {}\n", lab::gnuplot_string(fmt::format("{}: {} steps from ({:g}, {:g})", function.name,
                                                                           steps, paths[0].points[0].x, paths[0].points[0].y)));
  script += "set contour base\nset cntrparam levels 20\nunset surface\nset view map\nset table 'contours.dat'\n"
            "splot 'grid.dat' using 1:2:3 with lines\nunset table\nunset contour\n";
  script += "set palette defined (0 '#ffffff', 1 '#dfe8f5', 2 '#9fb8dc')\nunset colorbox\n"
            "set key below box opaque\n";
  script += "plot 'grid.dat' using 1:2:3 with image notitle, \\\n  'contours.dat' using 1:2 with lines lc rgb '#8899aa' "
            "lw 0.6 notitle";
  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  for (std::size_t i = 0; i < paths.size(); ++i) {
    script += fmt::format(", \\\n  'paths.dat' index {} using 1:2 with linespoints lw 2 pt 7 ps 0.4 lc rgb '{}' title {}", i,
                          colours[i % 8], lab::gnuplot_string(paths[i].label));
  }
  if (function.minimum) {
    script += fmt::format(", \\\n  '+' using ({}):({}) every ::0::0 with points pt 3 ps 2 lc rgb 'black' title 'minimum'",
                          (*function.minimum)[0], (*function.minimum)[1]);
  }
  return script + "\n";
}

void declare_flags(CLI::App& app, Settings& s) {
  app.add_option("--function", s.function, "the test function (see --list-functions)")->capture_default_str();
  app.add_option("--optimizers", s.optimizers,
                 "optimiser specs, space-separated (default: the function's own choice; see --list-optimizers of "
                 "the training programs)");
  examples::count_option(app.add_option("--steps", s.steps, "steps of each optimiser"), 1, 1'000'000)->capture_default_str();
  examples::add_list(app, "--start", s.start, "the starting point x,y (default: the function's)");
  examples::count_option(app.add_option("--seed", s.seed, "seed of a noisy function's noise"))->capture_default_str();
  examples::path_option(app.add_option("--out", s.out, "output directory"))->capture_default_str();
  CLI::Option* gnuplot = app.add_option("--gnuplot", s.gnuplot, "the gnuplot program that draws paths.png")->capture_default_str();
  app.add_flag("--no-plots", s.no_plots, "write the data files only")->excludes(gnuplot);  // a flag that would do nothing
  app.add_flag_callback(
      "--list-functions",
      [] {
        std::fputs(config::help_text(config::infos(problems::test_functions())).c_str(), stdout);
        throw CLI::Success();
      },
      "list the test functions and exit");
}

/// The function and the optimisers' specs asked for (resolved, beside the text given, which labels the
/// paths), checked before any step: a FlagError or SpecError.
std::vector<std::pair<std::string, config::Spec>> checked_optimizers(const problems::TestFunction& function,
                                                                     const Settings& s) {
  if (!s.start.empty() && s.start.size() != 2) {
    throw examples::FlagError(fmt::format("--start: two coordinates x,y, got {}", s.start.size()));
  }
  for (double coordinate : s.start) {
    if (!std::isfinite(coordinate)) {
      throw examples::FlagError(fmt::format("--start: {} is not a finite number (the point x,y the paths start from)",
                                            coordinate));
    }
  }
  std::vector<std::pair<std::string, config::Spec>> specs;
  for (const std::string& text : s.optimizers.empty() ? function.default_optimizers : s.optimizers) {
    specs.emplace_back(text, optim::resolve_optimizer(config::parse_spec(text)));
    // Built once over stand-ins of x and y, as the path builds it: a spec that resolves but cannot be built
    // (sam(inner=lbfgs)) is refused with the flags.
    ag::Tensor x = ag::Tensor::scalar(0.0, ag::DType::f64).set_requires_grad();
    ag::Tensor y = ag::Tensor::scalar(0.0, ag::DType::f64).set_requires_grad();
    optim::make_optimizer(specs.back().second, std::vector<nn::NamedTensor>{{"x", x}, {"y", y}});
  }
  return specs;
}

int run(const Settings& s, const std::vector<std::pair<std::string, config::Spec>>& specs,
        const problems::TestFunction& function) {
  const std::array<double, 2> start = s.start.empty() ? function.start : std::array<double, 2>{s.start[0], s.start[1]};
  std::vector<Path> paths;
  for (const auto& [label, spec] : specs) {
    paths.push_back({label, problems::optimizer_path(function, spec, s.steps, start, s.seed)});
    const problems::PathPoint& end = paths.back().points.back();
    std::string left = paths.back().points.size() < s.steps + 1
                           ? fmt::format(" (left the finite numbers after step {})", paths.back().points.size() - 1)
                           : "";
    fmt::print("{:<34} ends at ({:.6g}, {:.6g}), f = {:.6g}{}\n", label, end.x, end.y, end.f, left);
  }
  const fs::path out(s.out);
  lab::write_text((out / "paths.csv").string(), paths_csv(paths));
  lab::write_text((out / "paths.dat").string(), paths_dat(paths));
  lab::write_text((out / "grid.dat").string(), grid_data(function));
  fmt::print("wrote {0}/paths.csv, {0}/paths.dat, {0}/grid.dat\n", s.out);
  std::fflush(stdout);
  if (s.no_plots) return 0;
  std::string why;
  std::string terminal = lab::png_terminal(s.gnuplot, &why);
  if (!terminal.empty()) {
    lab::write_text((out / "plot.gp").string(), plot_script(function, paths, terminal, s.steps));
    why = lab::run_gnuplot(s.gnuplot, s.out, "plot.gp");
  }
  if (!why.empty()) {
    fmt::print(stderr, "optimizer_paths: warning: no plot: {}\n", why);
    return 0;
  }
  fmt::print("wrote {}/paths.png\n", s.out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Paths of optimisers on a 2-D test function, over its contour map.", "optimizer_paths");
  Settings s;
  declare_flags(app, s);
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;
  std::vector<std::pair<std::string, config::Spec>> specs;
  const problems::TestFunction* function = nullptr;
  if (int code = examples::checked("optimizer_paths", [&] {
        function = &problems::test_functions().at(s.function);
        if (app.count("--seed") > 0 && !function->noisy) {
          throw examples::FlagError(fmt::format("--seed: {} is not noisy: the seed would change nothing (the noisy "
                                                "functions are in --list-functions)", s.function));
        }
        specs = checked_optimizers(*function, s);
        examples::prepare_output_dir("--out", s.out, {"paths.csv", "paths.dat", "grid.dat", "plot.gp"});
        return 0;
      });
      code != 0) {
    return code;
  }
  try {
    return run(s, specs, *function);
  } catch (const std::exception& error) {
    examples::report_error("optimizer_paths", error.what());
    return 1;
  }
}
