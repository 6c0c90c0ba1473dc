#include "optim/namsgrad.hpp"

#include "optim/registry.hpp"

namespace optim {

NAMSGrad::NAMSGrad(std::vector<nn::NamedTensor> params, const NAMSGradOptions& options)
    : NAMSGrad(one_group(std::move(params)), options) {}

NAMSGrad::NAMSGrad(std::vector<ParamGroup<NAMSGradOptions>> groups, const NAMSGradOptions& defaults)
    : AdamFamily("namsgrad", std::move(groups), defaults, Numerator::nesterov, SecondMoment::max_of_corrected) {}

namespace {
const RegisterOptimizer<NAMSGrad, NAMSGradOptions> namsgrad_registration{
    "namsgrad", "NAMSGrad: AMSGrad with the Nadam numerator (000 §4.8)",
    adam_options<NAMSGradOptions>().flag("bias_correction", &NAMSGradOptions::bias_correction, "divide m and v by 1 - β^t")};
}  // namespace

}  // namespace optim
