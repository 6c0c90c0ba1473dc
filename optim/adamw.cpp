#include "optim/adamw.hpp"

#include "optim/registry.hpp"

namespace optim {

AdamW::AdamW(std::vector<nn::NamedTensor> params, const AdamOptions& options)
    : AdamW(one_group(std::move(params)), options) {}

AdamW::AdamW(std::vector<ParamGroup<AdamOptions>> groups, const AdamOptions& defaults)
    : AdamFamily("adamw", std::move(groups), defaults, Numerator::momentum, SecondMoment::average) {}

namespace {
const RegisterOptimizer<AdamW, AdamOptions> adamw_registration{
    "adamw", "AdamW: Adam with decoupled weight decay, λ = 1e-2 by default (Loshchilov & Hutter 2019; torch.optim.AdamW)",
    adam_options<AdamOptions>(), AdamW::default_options()};
}  // namespace

}  // namespace optim
