#include "optim/namsgrad.hpp"

namespace optim {

NAMSGrad::NAMSGrad(std::vector<nn::NamedTensor> params, const NAMSGradOptions& options)
    : NAMSGrad(one_group(std::move(params)), options) {}

NAMSGrad::NAMSGrad(std::vector<ParamGroup<NAMSGradOptions>> groups, const NAMSGradOptions& defaults)
    : AdamFamily("namsgrad", std::move(groups), defaults, Numerator::nesterov, SecondMoment::max_of_corrected) {}

}  // namespace optim
