// Training a function problem (quadratic_deep, two_d_*) as train() trains a model: the optimiser and the
// schedule by spec, DeepOBS's shuffled batches, evaluation on its three sets off the clock, divergence and
// Ctrl-C. A run takes well under a second, so it keeps no checkpoint: an interrupted one starts over.
#include <chrono>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/blas.hpp"
#include "data/file.hpp"
#include "examples/common/training.hpp"
#include "examples/common/row_log.hpp"
#include "nn/loss.hpp"
#include "optim/registry.hpp"
#include "optim/schedule.hpp"
#include "problems/test_problems.hpp"

namespace examples {

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

class FunctionTrainer {
 public:
  FunctionTrainer(const RunConfig& config, const problems::TestProblem& problem)
      : config_(config), problem_(problem.make_function()),
        batches_(problem_, problem.name, config.batch_size, config.seed),
        optimizer_(optim::make_optimizer(config.optimizer, problem_.parameters)) {
    for (const auto& [path, what] : {std::pair{config.save_path, "checkpoints"}, {config.resume_path, "resuming"},
                                     {config.log_path, "an epoch log"}}) {
      if (!path.empty()) {
        throw std::invalid_argument(fmt::format("test problem '{}' is a function problem: no {} ({}; a run takes "
                                                "under a second, and its evaluations go to the evaluation log)",
                                                problem.name, what, path));
      }
    }
    scheduler_ = make_scheduler(config, *optimizer_, batches_.per_epoch(), config.epochs);
    if (!config.eval_log.empty()) {
      data::check_writable(config.eval_log, "the evaluation log");
      eval_log_ = RowLog(config.eval_log, "the evaluation log", false, eval_csv_header());
    }
  }

  RunResult run(const EpochCallback& on_epoch) {
    ag::DetectAnomalyGuard detect(config_.detect_anomaly || ag::detecting_anomalies());
    result_.best_test_acc = kNaN;  // a function has no accuracy
    const EvalMetrics start = evaluate();
    if (config_.epochs == 0) {
      result_.epochs.push_back({.epoch = 0, .train_loss = start.train_eval_loss, .train_acc = kNaN,
                                .test_loss = start.test_loss, .test_acc = kNaN, .lr = optimizer_->lr()});
      result_.interrupted = interrupt_flag() != 0;
      return result_;
    }
    for (std::size_t epoch = 1; epoch <= config_.epochs; ++epoch) {
      EpochMetrics metrics = train_epoch(epoch);
      if (result_.diverged) break;
      if (!metrics.partial && scheduler_ && config_.lr_per_epoch) scheduler_->step();
      const EvalMetrics end = config_.eval_every == 0 && !metrics.partial ? evaluate() : evaluate_test_only();
      metrics.test_loss = end.test_loss;
      metrics.weight_norm = nn::weight_norm(problem_.parameters);
      result_.epochs.push_back(metrics);
      if (on_epoch) on_epoch(metrics);
      if (interrupt_flag() != 0) {
        result_.interrupted = true;
        break;
      }
    }
    return result_;
  }

 private:
  /// Training seconds so far: the finished epochs', and the running epoch's without its evaluations.
  double training_clock() const {
    if (!in_epoch_) return result_.seconds;
    return result_.seconds + seconds_since(epoch_start_) - (result_.evaluation_seconds - excluded_at_epoch_start_);
  }

  EpochMetrics train_epoch(std::size_t epoch) {
    epoch_start_ = Clock::now();
    excluded_at_epoch_start_ = result_.evaluation_seconds;
    in_epoch_ = true;
    batches_.begin_epoch();
    double loss_sum = 0;
    std::size_t steps = 0;
    for (at_batch_ = 0; at_batch_ < batches_.per_epoch();) {
      const ag::Tensor rows = batches_.batch(at_batch_);
      double loss = 0;
      try {
        ag::AnomalyScope at(ag::detecting_anomalies() ? fmt::format("step {} (batch {} of epoch {})", step_ + 1,
                                                                    at_batch_ + 1, epoch) : std::string());
        loss = optimizer_->step(optim::Optimizer::LossFn([&] { return problem_.loss(rows); }));
      } catch (const ag::AnomalyError& error) {
        diverge(fmt::format("diverged: {}; stopping", error.what()));
        break;
      } catch (const optim::NumericalBreakdown& error) {
        diverge(breakdown_message(error.what(), place(epoch, step_ + 1, at_batch_ + 1)));
        break;
      }
      ++step_, ++at_batch_, ++steps;
      loss_sum += loss;
      if (!std::isfinite(loss) || (config_.max_loss > 0 && loss > config_.max_loss)) {
        diverge(divergence_message(loss, config_.max_loss, place(epoch, step_, at_batch_)));
        break;
      }
      // The loss was of the parameters before the update (a few hundred numbers: checked every step).
      if (std::string why = weights_divergence(problem_.parameters, place(epoch, step_, at_batch_)); !why.empty()) {
        diverge(std::move(why));
        break;
      }
      if (scheduler_ && !config_.lr_per_epoch) scheduler_->step();
      if (config_.eval_every > 0 && step_ % config_.eval_every == 0) evaluate();
      if (interrupt_flag() != 0) break;
    }
    const double seconds = training_clock() - result_.seconds;
    in_epoch_ = false;
    result_.seconds += seconds;
    result_.steps = step_;
    return {.epoch = epoch, .train_loss = loss_sum / static_cast<double>(std::max<std::size_t>(steps, 1)),
            .train_acc = kNaN, .test_acc = kNaN, .lr = optimizer_->lr(), .seconds = seconds,
            .partial = at_batch_ < batches_.per_epoch()};
  }

  StepPlace place(std::size_t epoch, std::size_t step, std::size_t batch) const {
    return {.step = step, .batch = batch, .epoch = epoch, .lr = optimizer_->lr(), .batch_size = config_.batch_size};
  }

  void diverge(std::string why) {
    result_.diverged = true;
    result_.divergence = std::move(why);
    result_.steps = step_;
  }

  /// The three sets' mean losses at the optimiser's evaluation point, recorded and logged, off the clock.
  EvalMetrics evaluate() {
    const auto start = Clock::now();
    EvalMetrics m{.step = step_, .seconds = training_clock(), .train_eval_acc = kNaN, .validation_acc = kNaN,
                  .test_acc = kNaN, .lr = optimizer_->lr()};
    m.epoch = static_cast<double>(step_) / static_cast<double>(batches_.per_epoch());
    {
      optim::EvalScope at(*optimizer_);
      m.train_eval_loss = problem_.mean_loss(problem_.train);
      m.validation_loss = problem_.mean_loss(problem_.validation);
      m.test_loss = problem_.mean_loss(problem_.test);
    }
    result_.evaluations.push_back(m);
    if (config_.on_evaluation) config_.on_evaluation(m);
    if (eval_log_.is_open()) eval_log_.append(eval_csv_row(m));
    result_.evaluation_seconds += seconds_since(start);
    return m;
  }

  /// The test set's loss alone (an epoch's end when the evaluations are every K steps, or cut short).
  EvalMetrics evaluate_test_only() {
    const auto start = Clock::now();
    EvalMetrics m;
    {
      optim::EvalScope at(*optimizer_);
      m.test_loss = problem_.mean_loss(problem_.test);
    }
    result_.evaluation_seconds += seconds_since(start);
    return m;
  }

  const RunConfig& config_;
  problems::FunctionProblem problem_;
  problems::FunctionBatches batches_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::LRScheduler> scheduler_;
  RowLog eval_log_;
  std::size_t step_ = 0, at_batch_ = 0;
  Clock::time_point epoch_start_;
  double excluded_at_epoch_start_ = 0;  // evaluation seconds when the running epoch began
  bool in_epoch_ = false;
  RunResult result_;
};

}  // namespace

bool is_function_problem(const RunConfig& config) {
  return !config.problem.empty() && problems::test_problems().at(config.problem).is_function();
}

RunResult fit_function(const RunConfig& config, const EpochCallback& on_epoch) {
  if (!is_function_problem(config)) {
    throw std::invalid_argument(fmt::format("fit_function: '{}' is not a function problem", config.problem));
  }
  ag::set_blas_threads(config.threads);
  return FunctionTrainer(config, problems::test_problems().at(config.problem)).run(on_epoch);
}

std::size_t function_training_rows(const RunConfig& config) {
  const problems::FunctionProblem p = problems::test_problems().at(config.problem).make_function();
  return p.rows(p.train);
}

std::size_t function_steps_per_epoch(const RunConfig& config) {
  return config.batch_size == 0 ? 0 : function_training_rows(config) / config.batch_size;
}

}  // namespace examples
