#include "optim/clip.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/tape.hpp"
#include "optim/registry.hpp"

namespace optim {

double grad_norm(const std::vector<ag::Tensor>& params) {
  double sum = 0.0;
  for (const ag::Tensor& p : params) {
    ag::Tensor g = p.grad();
    if (!g.defined()) continue;
    detail::dispatch(g.dtype(), [&]<class T>() {
      const T* x = g.data<T>();
      for (std::size_t i = 0, n = g.numel(); i < n; ++i) sum += double(x[i]) * double(x[i]);
    });
  }
  return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<ag::Tensor>& params, double max_norm) {
  if (!(max_norm > 0.0) || !std::isfinite(max_norm)) {
    throw std::invalid_argument(fmt::format("clip_grad_norm: max_norm must be > 0 and finite, got {}", max_norm));
  }
  ag::NoGradGuard no_grad;
  const double norm = grad_norm(params);
  const double scale = max_norm / (norm + 1e-6);
  if (scale >= 1.0) return norm;  // also false for NaN: NaN goes on into the gradients
  for (ag::Tensor p : params) {
    ag::Tensor g = p.grad();
    if (!g.defined()) continue;
    ag::Tensor clipped = g.clone();
    detail::dispatch(g.dtype(), [&]<class T>() {
      T* x = clipped.data<T>();
      for (std::size_t i = 0, n = clipped.numel(); i < n; ++i) x[i] = static_cast<T>(x[i] * scale);
    });
    p.set_grad(clipped);
  }
  return norm;
}

Clip::Clip(std::unique_ptr<Optimizer> inner, const ClipOptions& options)
    : Wrapper("clip", std::move(inner)), options_(options) {
  options_.check(OptionCheck(name()));
  for (const Param& p : all_params()) tensors_.push_back(p.tensor);
}

void Clip::clip() { last_norm_ = clip_grad_norm(tensors_, options_.max_norm); }

void Clip::update() {
  clip();
  Wrapper::update();
}

double Clip::closure_step(const Closure& closure) {
  return Wrapper::closure_step([&] {
    double loss = closure();
    clip();
    return loss;
  });
}

double Clip::loss_fn_step(const LossFn& loss_fn) { return closure_step(closure_from(loss_fn)); }

namespace {
const RegisterWrapper<Clip, ClipOptions> registration{
    "clip", "gradient clipping by the global norm, g <- g min(1, max_norm / (‖g‖ + 1e-6)), around any method",
    wrapper_options<ClipOptions>().real("max_norm", &ClipOptions::max_norm, config::Range::positive(),
                                        "the largest global norm of the gradients"),
    ClipOptions{}};
}  // namespace

}  // namespace optim
