#include "optim/amsgrad.hpp"

namespace optim {

AMSGrad::AMSGrad(std::vector<nn::NamedTensor> params, const AMSGradOptions& options)
    : AMSGrad(one_group(std::move(params)), options) {}

AMSGrad::AMSGrad(std::vector<ParamGroup<AMSGradOptions>> groups, const AMSGradOptions& defaults)
    : AdamFamily("amsgrad", std::move(groups), defaults, Numerator::momentum, SecondMoment::max_of_raw) {}

}  // namespace optim
