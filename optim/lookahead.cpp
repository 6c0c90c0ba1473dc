#include "optim/lookahead.hpp"

#include <algorithm>

#include "optim/registry.hpp"

namespace optim {

Lookahead::Lookahead(std::unique_ptr<Optimizer> inner, const LookaheadOptions& options)
    : Wrapper("lookahead", std::move(inner)), options_(options) {
  options_.check(OptionCheck(name()));
  for (const Param& p : all_params()) state_for(p);  // φ_0 = θ_0
}

void Lookahead::init_state(ParamState& state, const Param& param) {
  detail::dispatch(param.tensor.dtype(), [&]<class T>() {
    std::copy_n(param.tensor.data<T>(), param.tensor.numel(), state.tensors[0].data<T>());
  });
}

void Lookahead::after_step() {
  if ((step_count() + 1) % static_cast<std::int64_t>(options_.k) != 0) return;
  for (const Param& p : all_params()) {
    ag::Tensor slow = state_for(p).tensors[0], w = p.tensor;
    detail::dispatch(w.dtype(), [&]<class T>() {
      T* __restrict fast = w.data<T>();
      T* __restrict phi = slow.data<T>();
      const T alpha = T(options_.alpha);
      for (std::size_t i = 0, n = w.numel(); i < n; ++i) {
        phi[i] += alpha * (fast[i] - phi[i]);
        fast[i] = phi[i];
      }
    });
  }
}

namespace {
const RegisterWrapper<Lookahead, LookaheadOptions> lookahead_registration{
    "lookahead", "Lookahead: k inner steps, then φ <- φ + α (θ - φ), θ <- φ (Zhang et al. 2019)",
    wrapper_options<LookaheadOptions>()
        .count("k", &LookaheadOptions::k, 1, 1000000, "inner steps between synchronisations")
        .real("alpha", &LookaheadOptions::alpha, config::Range{0.0, 1.0, true, false}, "α, the slow weights' step"),
    LookaheadOptions{}};
}  // namespace

}  // namespace optim
