#include "optim/sgd_schedule_free.hpp"

namespace optim {

namespace {
template <class T>
void sgd_schedule_free_kernel(T* __restrict y, const T* __restrict g, T* __restrict z, T* __restrict x,
                              std::size_t n, T lr, T c, T beta, T decay) {
  for (std::size_t i = 0; i < n; ++i) detail::schedule_free_move(y[i], z[i], x[i], g[i] + decay * y[i], lr, c, beta);
}
}  // namespace

SGDScheduleFree::SGDScheduleFree(std::vector<nn::NamedTensor> params, const SGDScheduleFreeOptions& options)
    : SGDScheduleFree(one_group(std::move(params)), options) {}

SGDScheduleFree::SGDScheduleFree(std::vector<ParamGroup<SGDScheduleFreeOptions>> groups,
                                 const SGDScheduleFreeOptions& defaults)
    : ScheduleFree("sgd-schedule-free", std::move(groups), defaults) {}

void SGDScheduleFree::update() {
  for (const Work& item : gradients()) {
    const SGDScheduleFreeOptions& o = options(item.param->group);
    ag::Tensor y = item.param->tensor;
    ParamState& state = state_for(*item.param);
    const Step step = advance(state, o);
    detail::dispatch(y.dtype(), [&]<class T>() {
      sgd_schedule_free_kernel<T>(y.data<T>(), item.grad.data<T>(), state.tensors[0].data<T>(),
                                  state.tensors[1].data<T>(), y.numel(), T(step.lr), T(step.c), T(o.momentum),
                                  T(o.weight_decay));
    });
  }
}

namespace {
config::OptionTable<SGDScheduleFreeOptions> sgd_schedule_free_table() {
  config::OptionTable<SGDScheduleFreeOptions> table = common_options<SGDScheduleFreeOptions>();
  table.real("momentum", &SGDScheduleFreeOptions::momentum, config::Range::unit(),
             "β: y = (1 - β) z + β x, where gradients are taken");
  return detail::schedule_free_options(table);
}

const RegisterOptimizer<SGDScheduleFree, SGDScheduleFreeOptions> sgd_schedule_free_registration{
    "sgd-schedule-free", "schedule-free SGD: gradient steps on z, evaluated at x, their running average; no "
                         "schedule, warmup only (Defazio et al. 2024)",
    sgd_schedule_free_table()};
}  // namespace

}  // namespace optim
