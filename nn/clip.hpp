// Gradient clipping, between backward and the optimiser's step (torch.nn.utils.clip_grad_norm_ and
// clip_grad_value_):
//
//   ag::backward(loss);
//   nn::clip_grad_norm(model.parameters(), 1.0);
//   optimizer.step();
//
// The optimiser wrapper "clip" (optim/clip.hpp) calls clip_grad_norm at each of its inner optimiser's steps,
// closure calls included; the programs' --clip-grad-norm X wraps their optimiser in it. Gradients are
// replaced by clipped copies, never written in place (they may share storage); parameters without a
// gradient are skipped. A NaN propagates, as in torch.
#pragma once

#include <vector>

#include "autograd/tensor.hpp"

namespace nn {

/// N = sqrt(Σ ‖g‖²) over the gradients of `params` (norm_type 2).
double grad_norm(const std::vector<ag::Tensor>& params);
/// g <- g c with c = max_norm / (N + 1e-6) (torch's 1e-6) if c < 1 (Pascanu et al. 2013); returns N, the norm
/// before clipping. A NaN anywhere makes N and every clipped gradient NaN. std::invalid_argument unless
/// max_norm is positive and finite.
double clip_grad_norm(const std::vector<ag::Tensor>& params, double max_norm);
/// g <- clamp(g, -clip, clip) elementwise (a NaN stays NaN). std::invalid_argument unless clip is positive
/// and finite.
void clip_grad_value(const std::vector<ag::Tensor>& params, double clip);

}  // namespace nn
