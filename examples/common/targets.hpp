// Time to target and performance profiles, as AlgoPerf measures training algorithms (Dahl et al. 2023,
// "Benchmarking Neural Network Training Algorithms"; the profiles are Dolan & Moré's, 2002):
//   time to target   when a run first reaches a target accuracy: its step, its training seconds (evaluations
//                    excluded) and its epoch; read on the validation set when the grid evaluates DeepOBS's splits
//                    (--problem, --eval-every), else on the evaluation set at each epoch's end;
//   the lab          writes OUT/targets.csv (a row per run and target) and a time-to-target table in summary.md
//                    (per configuration: the runs that reach each target, the median steps and seconds);
//   profiles         over test problems (one lab output each), a submission (an optimiser spec without its
//                    learning rate: the rate is its tuning) takes on each problem the time of its best
//                    configuration, the median over the seeds (a run that never reaches the target counts +inf);
//                    r(p, s) = t(p, s) / min_s' t(p, s'), ρ_s(τ) = |{p : r(p, s) ≤ τ}| / |P|, and the score
//                    B_s = 1/(τ_max - 1) ∫_1^τ_max ρ_s(τ) dτ (τ_max = 4, as AlgoPerf), 1 for a submission
//                    fastest on every problem, 0 for one never within τ_max of the fastest.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "examples/common/lab.hpp"

namespace examples::lab {

/// When a run first reached its target.
struct TargetTime {
  std::size_t step = 0;
  double seconds = 0;  // training time so far, evaluations excluded
  double epoch = 0;
};

/// The first evaluation of `result` whose accuracy reaches `target`: its evaluations' validation accuracy when
/// the grid evaluates DeepOBS's splits (`on_splits`), else its epochs' ends (steps_per_epoch steps each) on the
/// evaluation set; nullopt when none does (a run that failed before its first evaluation never reaches it).
std::optional<TargetTime> time_to_target(const RunResult& result, double target, std::size_t steps_per_epoch,
                                         bool on_splits);

/// What the lab's target outputs need besides the runs.
struct TargetContext {
  std::vector<double> targets;
  std::string eval_name = "test";
  bool on_splits = false;  // the grid evaluates DeepOBS's splits (--problem, --eval-every)
  /// Steps an epoch takes at each batch size of the grid (examples::steps_per_epoch).
  std::vector<std::pair<std::size_t, std::size_t>> steps_per_epoch;
  std::size_t steps_at(std::size_t batch_size) const;
  /// The accuracy every run of the grid is timed on: "validation_acc" on DeepOBS's splits, else
  /// "<eval_name>_acc" (the evaluation set: "test", or "validation" under --validation) — the grid's, not a
  /// run's, so that a run that failed before its first evaluation is timed on the same metric as the others.
  std::string metric() const;
};

/// targets.csv: a row per run and target: the configuration (point_header), batch_size, seed, metric, target,
/// reached (0 or 1), step, seconds and epoch (empty when not reached). Interrupted runs are left out.
std::string targets_csv(const std::vector<RunRecord>& records, const TargetContext& context);

/// The time-to-target table (Markdown): per configuration and target, the runs that reach it (k of n) and the
/// median over the runs of the steps and seconds (a run that never reaches it counts +inf: "never" when at least
/// half do not).
std::string targets_markdown(const std::vector<RunRecord>& records, const TargetContext& context);

/// The median of `values` (+inf entries allowed; the mean of the middle two for an even count); NaN when empty.
double median(std::vector<double> values);

// ---- performance profiles

/// One test problem's times to its target, by submission.
struct ProblemTimes {
  std::string problem;  // the lab output's directory, as given
  std::string metric;   // the accuracy timed ("validation_acc", ...)
  double target = 0;
  std::vector<std::pair<std::string, double>> times;  // submission -> time (+inf: never), first-seen order
};

/// Reads `dir`/targets.csv (else `dir`/seeds/targets.csv, the protocol's second phase) for its first target
/// (the first of the grid's --targets): per submission, its best configuration's median time in steps
/// (by_steps) or training seconds. std::runtime_error naming the file, the line and what is wrong.
ProblemTimes read_problem_times(const std::string& dir, bool by_steps);

struct Profile {
  std::string submission;
  std::vector<double> ratios;  // by problem: time / the fastest submission's (+inf: never reached)
  double score = 0;            // 1/(τ_max - 1) ∫_1^τ_max ρ(τ) dτ
};

/// Every submission's profile over the problems (a submission absent from a problem never reached it there).
/// std::invalid_argument for no problems or tau_max <= 1.
std::vector<Profile> performance_profiles(const std::vector<ProblemTimes>& problems, double tau_max = 4);
/// ρ(τ): the fraction of the problems whose ratio is at most τ.
double profile_at(const Profile& profile, double tau);

/// Short names of the submissions: each one's optimiser and the options in which it differs from the other
/// submissions of that optimiser ("momentum", "adam beta2=0.99").
std::vector<std::string> submission_labels(const std::vector<Profile>& profiles);

/// profiles.csv: a row per submission: its score and its ratio on every problem ("inf" when never reached).
std::string profiles_csv(const std::vector<ProblemTimes>& problems, const std::vector<Profile>& profiles);
/// profiles.md: the problems with their targets, then the submissions by score with their times and ratios.
std::string profiles_markdown(const std::vector<ProblemTimes>& problems, const std::vector<Profile>& profiles,
                              bool by_steps, double tau_max);
/// profiles.png / .pdf: ρ(τ) of every submission for τ in [1, tau_max] (profiles.dat and profiles.gp beside).
PlotOutcome write_profile_plot(const std::string& out_dir, const std::string& gnuplot,
                               const std::vector<Profile>& profiles, bool by_steps, double tau_max);

}  // namespace examples::lab
