#include "optim/nesterov.hpp"

namespace optim {

Nesterov::Nesterov(std::vector<nn::NamedTensor> params, const NesterovOptions& options)
    : Nesterov(one_group(std::move(params)), options) {}

Nesterov::Nesterov(std::vector<ParamGroup<NesterovOptions>> groups, const NesterovOptions& defaults)
    : Momentum("nesterov", std::move(groups), defaults, true) {}

}  // namespace optim
