#include "optim/wrapper.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/tape.hpp"

namespace optim {

namespace {
std::vector<std::vector<nn::NamedTensor>> groups_of(const Optimizer* optimizer) {
  if (!optimizer) throw std::invalid_argument("a wrapper needs an optimiser to wrap");
  std::vector<std::vector<nn::NamedTensor>> groups;
  for (std::size_t g = 0; g < optimizer->group_count(); ++g) groups.push_back(optimizer->params(g));
  return groups;
}
}  // namespace

Wrapper::Wrapper(std::string name, std::unique_ptr<Optimizer> inner)
    : Optimizer(std::move(name), groups_of(inner.get())), inner_(std::move(inner)) {
  // A wrapper acts on the gradients or between steps; an update applied inside backward passes it by.
  if (inner_->updates_in_backward()) {
    throw std::invalid_argument(fmt::format("{}: the inner optimiser {} updates inside backward (in_backward=true); "
                                            "a wrapper needs its gradients and steps",
                                            this->name(), inner_->name()));
  }
}

void Wrapper::update() {
  inner_->step();
  after_step();
}

double Wrapper::closure_step(const Closure& closure) {
  double loss = inner_->step(closure);
  ag::NoGradGuard no_grad;
  after_step();
  return loss;
}

double Wrapper::loss_fn_step(const LossFn& loss_fn) {
  double loss = inner_->step(loss_fn);
  ag::NoGradGuard no_grad;
  after_step();
  return loss;
}

void Wrapper::require_gradient_steps() const {
  if (inner_->needs_closure()) {
    throw std::invalid_argument(fmt::format("{}: its inner optimiser must step from the gradients alone; {} needs the "
                                            "loss itself",
                                            name(), inner_->name()));
  }
}

}  // namespace optim
