// Averages of the weights, kept beside any optimiser and used for evaluation (eval() puts the average into
// the parameters, train() puts the weights back; optimizer.hpp). After an inner step that is averaged, with
// w the parameters and a the average (n: steps averaged so far; the first one copies, a = w):
//   ema  a <- a + (1 - decay)(w - a)          (exponential moving average; torch's AveragedModel with
//                                               get_ema_multi_avg_fn, Polyak averaging with a forgetting rate)
//   swa  a <- a + (w - a) / (n + 1)            (Izmailov et al. 2018, "Averaging Weights Leads to Wider
//                                               Optima": the equal-weight mean; torch.optim.swa_utils)
// ema averages every step; swa averages the steps after the first `start` ones, every `every` steps (SWA's
// usual form: from an epoch on, once per epoch — in steps here). Models with batch-norm statistics need them
// recomputed for the average: nn::update_bn (nn/norm.hpp),
// which the programs run before every evaluation at the average.
// State per parameter: "average" (a) and "count" (n).
#pragma once

#include <cstddef>
#include <memory>

#include "optim/wrapper.hpp"

namespace optim {

struct EMAOptions {
  config::Spec inner{"adam", {}};
  double decay = 0.999;
  void check(const OptionCheck& c) const { c.unit_interval("decay", decay); }
};

struct SWAOptions {
  config::Spec inner{"momentum", {}};
  std::size_t start = 0;
  std::size_t every = 1;
  void check(const OptionCheck& c) const {
    if (every < 1) c.fail("every", ">= 1", static_cast<double>(every));
  }
};

/// What ema and swa share: the average, its count, the evaluation point.
class WeightAverage : public Wrapper {
 protected:
  using Wrapper::Wrapper;
  /// Whether step number `step` (1, 2, ...) is averaged, and the weight of w in a <- a + weight (w - a)
  /// when n steps are in the average already (n >= 1).
  virtual bool averages(std::int64_t step) const = 0;
  virtual double weight(double n) const = 0;

  void after_step() override;
  std::vector<std::string> tensor_state_names() const override { return {"average"}; }
  std::vector<std::string> scalar_state_names() const override { return {"count"}; }
  std::optional<std::size_t> eval_state() const override { return 0; }
};

class EMA : public WeightAverage {
 public:
  EMA(std::unique_ptr<Optimizer> inner, const EMAOptions& options);

 protected:
  bool averages(std::int64_t) const override { return true; }
  double weight(double) const override { return 1.0 - options_.decay; }

 private:
  EMAOptions options_;
};

class SWA : public WeightAverage {
 public:
  SWA(std::unique_ptr<Optimizer> inner, const SWAOptions& options);

 protected:
  bool averages(std::int64_t step) const override;
  double weight(double n) const override { return 1.0 / (n + 1.0); }

 private:
  SWAOptions options_;
};

}  // namespace optim
