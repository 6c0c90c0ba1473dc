#include "optim/amsgrad.hpp"

#include "optim/registry.hpp"

namespace optim {

AMSGrad::AMSGrad(std::vector<nn::NamedTensor> params, const AMSGradOptions& options)
    : AMSGrad(one_group(std::move(params)), options) {}

AMSGrad::AMSGrad(std::vector<ParamGroup<AMSGradOptions>> groups, const AMSGradOptions& defaults)
    : AdamFamily("amsgrad", std::move(groups), defaults, Numerator::momentum, SecondMoment::max_of_raw) {}

namespace {
const RegisterOptimizer<AMSGrad, AMSGradOptions> amsgrad_registration{
    "amsgrad", "AMSGrad: Adam with the running maximum of v (Reddi et al. 2018; 000 §4.6)",
    adam_options<AMSGradOptions>().flag("bias_correction", &AMSGradOptions::bias_correction, "divide m and v by 1 - β^t (Reddi et al. do not)")};
}  // namespace

}  // namespace optim
