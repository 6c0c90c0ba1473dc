#include "optim/average.hpp"

#include <algorithm>

#include "optim/registry.hpp"

namespace optim {

void WeightAverage::after_step() {
  if (!averages(step_count() + 1)) return;
  for (const Param& p : all_params()) {
    ParamState& s = state_for(p);
    ag::Tensor w = p.tensor, average = s.tensors[0];
    const double n = s.scalars[0];
    detail::dispatch(w.dtype(), [&]<class T>() {
      const T* __restrict x = w.data<T>();
      T* __restrict a = average.data<T>();
      if (n == 0.0) {
        std::copy_n(x, w.numel(), a);
        return;
      }
      const T c = T(weight(n));
      for (std::size_t i = 0, size = w.numel(); i < size; ++i) a[i] += c * (x[i] - a[i]);
    });
    s.scalars[0] = n + 1.0;
  }
}

EMA::EMA(std::unique_ptr<Optimizer> inner, const EMAOptions& options)
    : WeightAverage("ema", std::move(inner)), options_(options) {
  options_.check(OptionCheck(name()));
}

SWA::SWA(std::unique_ptr<Optimizer> inner, const SWAOptions& options)
    : WeightAverage("swa", std::move(inner)), options_(options) {
  options_.check(OptionCheck(name()));
}

bool SWA::averages(std::int64_t step) const {
  const auto start = static_cast<std::int64_t>(options_.start), every = static_cast<std::int64_t>(options_.every);
  return step > start && (step - start) % every == 0;
}

namespace {
const RegisterWrapper<EMA, EMAOptions> ema_registration{
    "ema", "an exponential moving average of the weights, a <- a + (1 - decay)(w - a), evaluated in their place",
    wrapper_options<EMAOptions>().real("decay", &EMAOptions::decay, config::Range::unit(), "the average's decay"),
    EMAOptions{}};

const RegisterWrapper<SWA, SWAOptions> swa_registration{
    "swa", "stochastic weight averaging: the mean of the weights after `start` steps, evaluated in their place "
           "(Izmailov et al. 2018)",
    wrapper_options<SWAOptions>()
        .count("start", &SWAOptions::start, 0, static_cast<std::size_t>(1e15), "steps before the averaging starts")
        .count("every", &SWAOptions::every, 1, static_cast<std::size_t>(1e15), "steps between two averaged ones"),
    SWAOptions{}};
}  // namespace

}  // namespace optim
