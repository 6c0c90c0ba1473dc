#include "optim/nesterov.hpp"

#include "optim/registry.hpp"

namespace optim {

Nesterov::Nesterov(std::vector<nn::NamedTensor> params, const NesterovOptions& options)
    : Nesterov(one_group(std::move(params)), options) {}

Nesterov::Nesterov(std::vector<ParamGroup<NesterovOptions>> groups, const NesterovOptions& defaults)
    : Momentum("nesterov", std::move(groups), defaults, true) {}

namespace {
const RegisterOptimizer<Nesterov, NesterovOptions> nesterov_registration{
    "nesterov", "Nesterov momentum, reparameterised: w <- w - (γ v + lr g) (Sutskever et al. 2013; 004 Prop. 3.9)",
    momentum_options<NesterovOptions>().flag("lr_inside", &NesterovOptions::lr_inside,
                                             "true: v <- γ v + lr g; false: v <- γ v + g, w <- w - lr (g + γ v)")};
}  // namespace

}  // namespace optim
