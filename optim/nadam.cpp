#include "optim/nadam.hpp"

#include "optim/registry.hpp"

namespace optim {

Nadam::Nadam(std::vector<nn::NamedTensor> params, const NadamOptions& options)
    : Nadam(one_group(std::move(params)), options) {}

Nadam::Nadam(std::vector<ParamGroup<NadamOptions>> groups, const NadamOptions& defaults)
    : AdamFamily("nadam", std::move(groups), defaults, Numerator::nesterov, SecondMoment::average) {}

namespace {
const RegisterOptimizer<Nadam, NadamOptions> registration{
    "nadam", "Nadam: Adam with a Nesterov numerator (Dozat 2016; 000 §4.7); lr 2e-3 as Dozat",
    adam_options<NadamOptions>(), NadamOptions{.lr = 2e-3}};
}  // namespace

}  // namespace optim
