#include "optim/adam.hpp"

#include "optim/registry.hpp"

namespace optim {

Adam::Adam(std::vector<nn::NamedTensor> params, const AdamOptions& options)
    : Adam(one_group(std::move(params)), options) {}

Adam::Adam(std::vector<ParamGroup<AdamOptions>> groups, const AdamOptions& defaults)
    : AdamFamily("adam", std::move(groups), defaults, Numerator::momentum, SecondMoment::average) {}

namespace {
const RegisterOptimizer<Adam, AdamOptions> adam_registration{
    "adam", "Adam: bias-corrected first and second moments (Kingma & Ba 2015; 000 §4.5, 001 §4.2)",
    adam_options<AdamOptions>()};
}  // namespace

}  // namespace optim
