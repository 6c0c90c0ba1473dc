#include "optim/adam.hpp"

namespace optim {

Adam::Adam(std::vector<nn::NamedTensor> params, const AdamOptions& options)
    : Adam(one_group(std::move(params)), options) {}

Adam::Adam(std::vector<ParamGroup<AdamOptions>> groups, const AdamOptions& defaults)
    : AdamFamily("adam", std::move(groups), defaults, Numerator::momentum, SecondMoment::average) {}

}  // namespace optim
