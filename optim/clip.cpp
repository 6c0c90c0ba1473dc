#include "optim/clip.hpp"

#include "optim/registry.hpp"

namespace optim {

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
const RegisterWrapper<Clip, ClipOptions> clip_registration{
    "clip", "gradient clipping by the global norm, g <- g min(1, max_norm / (‖g‖ + 1e-6)), around any method",
    wrapper_options<ClipOptions>().real("max_norm", &ClipOptions::max_norm, config::Range::positive(),
                                        "the largest global norm of the gradients"),
    ClipOptions{}};
}  // namespace

}  // namespace optim
