#include "autograd/in_backward.hpp"

#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/blas.hpp"
#include "autograd/detail/tensor_impl.hpp"
#include "autograd/detail/op_common.hpp"

namespace ag {

void set_update_in_backward(const Tensor& param, std::shared_ptr<const InBackwardUpdate> rule) {
  if (!param.defined()) throw std::invalid_argument("set_update_in_backward: undefined tensor");
  TensorImpl& impl = *param.impl();
  if (impl.node >= 0) {
    throw std::invalid_argument(fmt::format("set_update_in_backward: {} is not a leaf (an op made it)", param.describe()));
  }
  impl.in_backward = std::move(rule);
  // Uses recorded before the rule was set were not counted: no update inside this tape's backward.
  impl.uses_generation = 0;
  impl.uses = 0;
}

void remove_update_in_backward(const Tensor& param, const InBackwardUpdate* rule) {
  if (param.defined() && param.impl()->in_backward.get() == rule) param.impl()->in_backward.reset();
}

namespace detail {

bool update_in_backward(const Tensor& weight, const Tensor& x, const Tensor& g) {
  // Under anomaly detection every gradient is handed on, so that it is checked.
  if (!fusing_updates() || detecting_anomalies()) return false;
  TensorImpl& w = *weight.impl();
  if (!w.in_backward || w.node >= 0 || w.grad.defined() || tape_uses(weight) != 1) return false;
  if (w.storage.use_count() != 1) return false;  // a view or an alias would see the update early
  const std::optional<LinearUpdate> c = w.in_backward->coefficients();
  // beta = 0 would overwrite W (BLAS's convention) where the step multiplies it: a NaN would not survive.
  if (!c || c->beta == 0.0) return false;
  const std::size_t batch = x.dim(0), in = x.dim(1), out = g.dim(1);
  Tensor target = weight;  // written in place
  dispatch(weight.dtype(), [&]<class T>() {
    gemm(true, false, in, out, batch, T(c->alpha), x.data<T>(), in, g.data<T>(), out, T(c->beta), target.data<T>(), out);
  });
  return true;
}

}  // namespace detail

}  // namespace ag
