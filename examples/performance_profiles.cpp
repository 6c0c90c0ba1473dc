// Performance profiles across test problems, as AlgoPerf scores training algorithms (examples/common/targets.hpp):
// each argument is a lab output (compare_optimizers --out DIR, or a --protocol output: its seeds/ phase), one test
// problem each, timed to the first of that grid's --targets. For example, three optimisers on two problems:
//
//   compare_optimizers --problem mnist_mlp --optimizers 'sgd(lr=0.1)' 'sgd(lr=0.01,momentum=0.9)' adam
//       --epochs 5 --seeds 0,1,2 --targets 0.97 --out mlp
//   compare_optimizers --problem fmnist_2c2d --optimizers 'sgd(lr=0.1)' 'sgd(lr=0.01,momentum=0.9)' adam
//       --epochs 5 --seeds 0,1,2 --targets 0.88 --out 2c2d
//   performance_profiles mlp 2c2d --out profiles
//
// writes profiles/profiles.md (the times, ratios and scores), profiles.csv and profiles.png/.pdf (ρ(τ)).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <stdexcept>

#include "examples/common/cli.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/preflight.hpp"
#include "examples/common/targets.hpp"

namespace lab = examples::lab;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"Performance profiles over test problems: per problem, each submission's (an optimiser spec without "
               "its learning rate) time to target, its ratio to the fastest, ρ(τ) and the integrated score.",
               "performance_profiles"};
  std::vector<std::string> dirs;
  std::string out = "profiles", by = "seconds", gnuplot = "gnuplot";
  double tau_max = 4;
  bool no_plots = false;
  app.add_option("outputs", dirs, "the lab outputs, one per problem (each holds targets.csv, or seeds/targets.csv)")
      ->required();
  examples::path_option(app.add_option("--out", out, "output directory (profiles.md, profiles.csv, profiles.png)")
                            ->capture_default_str());
  app.add_option("--by", by, "time in training seconds (AlgoPerf's) or in steps")
      ->check(CLI::IsMember({"seconds", "steps"}))
      ->capture_default_str();
  app.add_option("--tau-max", tau_max, "the ratios the profile and its score span: [1, tau-max] (AlgoPerf: 4)")
      ->check(examples::number_from(1, false))
      ->capture_default_str();
  CLI::Option* gnuplot_option =
      app.add_option("--gnuplot", gnuplot, "the gnuplot program that draws the figure")->capture_default_str();
  app.add_flag("--no-plots", no_plots, "write the CSV and Markdown files only")->excludes(gnuplot_option);
  if (int code = examples::parse(app, argc, argv); code >= 0) return code;

  std::vector<lab::ProblemTimes> problems;
  std::vector<lab::Profile> profiles;
  const bool by_steps = by == "steps";
  int code = examples::checked(app.get_name(), [&] {
    for (std::size_t i = 0; i < dirs.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (fs::weakly_canonical(dirs[i]) == fs::weakly_canonical(dirs[j])) {
          throw std::invalid_argument(fmt::format("{} and {} are the same lab output: each problem counts once",
                                                  dirs[j], dirs[i]));
        }
      }
    }
    for (const std::string& dir : dirs) problems.push_back(lab::read_problem_times(dir, by_steps));
    profiles = lab::performance_profiles(problems, tau_max);
    examples::prepare_output_dir("--out", out, {"profiles.md", "profiles.csv", "profiles.dat", "profiles.gp"});
    return 0;
  });
  if (code != 0) return code;
  try {
    const std::string markdown = lab::profiles_markdown(problems, profiles, by_steps, tau_max);
    lab::write_text(out + "/profiles.md", markdown);
    lab::write_text(out + "/profiles.csv", lab::profiles_csv(problems, profiles));
    fmt::print("{}\nwrote {}/profiles.md, {}/profiles.csv\n", markdown, out, out);
    if (no_plots) return 0;
    lab::PlotOutcome plot = lab::write_profile_plot(out, gnuplot, profiles, by_steps, tau_max);
    if (!plot.written) {
      fmt::print(stderr, "performance_profiles: warning: {}\n", plot.message);
      return 0;
    }
    for (const std::string& file : plot.files) fmt::print("wrote {}\n", file);
    return 0;
  } catch (const std::exception& error) {
    examples::report_error("performance_profiles", error.what());
    return 1;
  }
}
