#include "optim/sam.hpp"

#include <algorithm>
#include <cmath>

#include "autograd/tape.hpp"
#include "optim/registry.hpp"

namespace optim {

SAM::SAM(std::unique_ptr<Optimizer> inner, const SAMOptions& options)
    : Wrapper("sam", std::move(inner)), options_(options) {
  options_.check(OptionCheck(name()));
  require_gradient_steps();
}

std::vector<std::pair<ag::Tensor, ag::Tensor>> SAM::perturb() {
  const std::vector<Work> work = inner_gradients();
  const bool adaptive = options_.adaptive;
  double sum = 0.0;
  for (const Work& item : work) {
    detail::dispatch(item.grad.dtype(), [&]<class T>() {
      const T* g = item.grad.data<T>();
      const T* w = item.param->tensor.data<T>();
      for (std::size_t i = 0, n = item.grad.numel(); i < n; ++i) {
        const double t = adaptive ? std::abs(double(w[i])) * double(g[i]) : double(g[i]);
        sum += t * t;
      }
    });
  }
  const double scale = options_.rho / (std::sqrt(sum) + 1e-12);
  std::vector<std::pair<ag::Tensor, ag::Tensor>> before;
  for (const Work& item : work) {
    ag::Tensor w = item.param->tensor;
    before.emplace_back(w, w.clone());
    detail::dispatch(w.dtype(), [&]<class T>() {
      T* x = w.data<T>();
      const T* g = item.grad.data<T>();
      for (std::size_t i = 0, n = w.numel(); i < n; ++i) {
        const double t = adaptive ? double(x[i]) * double(x[i]) : 1.0;
        x[i] = static_cast<T>(x[i] + t * double(g[i]) * scale);
      }
    });
  }
  return before;
}

double SAM::closure_step(const Closure& closure) {
  const double loss = closure();
  std::vector<std::pair<ag::Tensor, ag::Tensor>> before;
  {
    ag::NoGradGuard no_grad;
    before = perturb();
  }
  closure();
  ag::NoGradGuard no_grad;
  for (auto& pair : before) {
    ag::Tensor& w = pair.first;
    const ag::Tensor& saved = pair.second;
    detail::dispatch(w.dtype(), [&]<class T>() { std::copy_n(saved.template data<T>(), w.numel(), w.template data<T>()); });
  }
  Wrapper::update();
  return loss;
}

namespace {
const RegisterWrapper<SAM, SAMOptions> sam_registration{
    "sam", "sharpness-aware minimisation: the inner step from ∇L(w + ρ g/‖g‖) (Foret et al. 2021; ASAM adaptive)",
    wrapper_options<SAMOptions>()
        .real("rho", &SAMOptions::rho, config::Range::positive(), "ρ, the radius of the ascent step")
        .flag("adaptive", &SAMOptions::adaptive, "ASAM: scale the ascent by |w| (Kwon et al. 2021)"),
    SAMOptions{}};
}  // namespace

}  // namespace optim
