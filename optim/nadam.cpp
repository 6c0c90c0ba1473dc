#include "optim/nadam.hpp"

namespace optim {

Nadam::Nadam(std::vector<nn::NamedTensor> params, const NadamOptions& options)
    : Nadam(one_group(std::move(params)), options) {}

Nadam::Nadam(std::vector<ParamGroup<NadamOptions>> groups, const NadamOptions& defaults)
    : AdamFamily("nadam", std::move(groups), defaults, Numerator::nesterov, SecondMoment::average) {}

}  // namespace optim
