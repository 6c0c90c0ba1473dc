// Per-sample gradients in one backward sweep, their norms and variance, and the gradient noise scale.
//
// For a batch of B samples with losses l_n and L = sum_n l_n (Reduction::sum) or L = (1/B) sum_n l_n
// (Reduction::mean), the per-sample gradient of a parameter is
//   g_n = s grad l_n,   s = 1 (sum) or 1/B (mean),   so that sum_n g_n = dL/dp, the batch gradient
// (BackPACK's BatchGrad scaling: Dangel, Kunstner and Hennig, "BackPACK: Packing more into backprop", 2020).
//
// One forward keeps each Linear or Conv2d layer's input a_l and output z_l; one ag::grad gives
// dz_l = dL/dz_l for every layer at once; then, sample by sample,
//   Linear (W stored (in, out)):  g_n(W) = a_l[n]^T dz_l[n]   (outer product, in x out),  g_n(b) = dz_l[n]
//   Conv2d:                       g_n(W) = dz_l[n] . unfold(a_l[n])^T   (C_out x C_in k k),
//                                 g_n(b) = dz_l[n] summed over the output pixels,
// with unfold (im2col) taking the layer's stride and padding: one GEMM per sample. The parameters enter the
// forward detached, so the sweep forms no batch weight gradient. This is exact because every supported
// layer acts on each sample alone: dz_l[n] depends on sample n only.
//
// The statistics are of the per-example gradients u_n = grad l_n = g_n / s, whose mean G and covariance
// Sigma (over the data distribution) define the simple gradient noise scale (McCandlish, Kaplan, Amodei et
// al., "An Empirical Model of Large-Batch Training", 2018, Appendix A):
//   B_simple = tr(Sigma) / |G|^2.
// From the norms of batch gradients at two sizes B_small < B_big, E|G_B|^2 = |G|^2 + tr(Sigma)/B gives the
// unbiased estimates
//   |G|^2    ~ (B_big |G_Bbig|^2 - B_small |G_Bsmall|^2) / (B_big - B_small)
//   tr(Sigma) ~ (|G_Bsmall|^2 - |G_Bbig|^2) / (1/B_small - 1/B_big).
// From one batch's per-sample gradients, this with B_small = 1 (|G_1|^2 averaged over the B samples) and
// B_big = B is the same as
//   tr(Sigma) ~ sum_n |u_n - u_bar|^2 / (B - 1),   |G|^2 ~ |u_bar|^2 - tr(Sigma) / B.
// Both estimates are unbiased, their ratio is not; when |G|^2 is small against tr(Sigma)/B the estimate of
// |G|^2 can be zero or negative, and B_simple with it (McCandlish et al. average the two numerators over
// many steps before dividing).
//
// The tape: per_sample_gradients and per_sample_sq_norms record on this thread's tape and release it whole
// before returning (autograd/tape.hpp), as analysis/hessian.hpp's one-shot functions do.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "autograd/ops.hpp"
#include "autograd/tensor.hpp"
#include "nn/layers.hpp"

namespace analysis {

/// What every per-sample result of one batch holds besides its numbers.
struct PerSampleBatch {
  /// Parameter names as nn::Module::named_parameters() gives them ("0.weight", "0.bias", "2.weight", ...).
  std::vector<std::string> names;
  /// The parameters themselves, in the same order.
  std::vector<ag::Tensor> params;
  std::size_t batch = 0;
  /// s in g_n = s grad l_n: 1 for Reduction::sum, 1/B for Reduction::mean.
  double scale = 1.0;
  /// The batch loss L.
  double loss = 0.0;
};

/// One batch's per-sample gradients.
struct PerSampleGradients : PerSampleBatch {
  /// grads[k] is (B, numel(params[k])): row n is g_n of parameter k, in the parameter's row-major order
  /// (flat, whatever the parameter's rank: reshape a row to the parameter's shape with sample()). Dtype of the parameter.
  std::vector<ag::Tensor> grads;

  /// g_n of parameter k, in the parameter's shape (a copy). Throws std::out_of_range naming k or n.
  ag::Tensor sample(std::size_t k, std::size_t n) const;
  /// sum_n g_n = dL/dp for each parameter, in its shape.
  std::vector<ag::Tensor> total() const;
};

/// Per-sample gradients of every Linear and Conv2d parameter of `model` for the loss
/// ag::cross_entropy(model(x), labels, reduction), in one forward and one backward sweep (see the top of
/// this file). x is (B, ...) as the first layer takes it, labels has B entries.
/// The model's children may be Linear, Conv2d, Flatten, MaxPool2d, Dropout, the elementwise activations
/// (ReLU, LeakyReLU, ELU, GELU, SiLU, Softplus, Sigmoid, Tanh) and nested Sequentials of these (Dropout in
/// training: the gradients for this forward's masks), of exactly these types (a subclass may change forward);
/// a Conv2d with one group, dilation 1 and the same kernel, stride and padding on both axes. A layer whose
/// parameters do not require grad (frozen) is run and left out of the parameters. Throws
/// std::invalid_argument naming the module (path and type) of any other kind (Softmax may mix the samples of
/// a batch) or a layer half frozen, a labels count that is not B, Reduction::none, or an empty batch.
PerSampleGradients per_sample_gradients(nn::Sequential& model, const ag::Tensor& x, ag::Labels labels,
                                        ag::Reduction reduction = ag::Reduction::mean);

/// Per-sample squared norms and the batch gradient of one batch, without storing the g_n (BackPACK's
/// BatchL2Grad), from the same forward and sweep as per_sample_gradients:
///   Linear  ||g_n(W)||^2 = ||a_l[n]||^2 ||dz_l[n]||^2,  ||g_n(b)||^2 = ||dz_l[n]||^2   (O(B (in + out)) work)
///   Conv2d  each sample's g_n formed in turn in one scratch buffer (unfold and one GEMM, as above).
struct PerSampleSqNorms : PerSampleBatch {
  /// dL/dp = sum_n g_n, one tensor per parameter in its shape and dtype.
  std::vector<ag::Tensor> gradient;
  /// ||g_n||^2 over all parameters together, n = 0..B-1 (g_n scaled by s, as stored by per_sample_gradients).
  std::vector<double> sq_norms;
};
/// Arguments, supported modules and errors as per_sample_gradients.
PerSampleSqNorms per_sample_sq_norms(nn::Sequential& model, const ag::Tensor& x, ag::Labels labels,
                                     ag::Reduction reduction = ag::Reduction::mean);

/// The same for any module (its parameters that require grad, by name), by B separate forward and backward
/// sweeps of one sample each (ag::grad: no parameter's .grad is touched): B times the cost of a batch's sweep, for
/// models the one-sweep rules above do not cover (a user's own Module class). Throws std::invalid_argument for a
/// labels count that is not B, Reduction::none, an empty batch, or a batch norm in training mode (a sample alone
/// would be normalised by its own statistics, and the running ones updated B times).
PerSampleSqNorms per_sample_sq_norms_by_sample(nn::Module& model, const ag::Tensor& x, ag::Labels labels,
                                               ag::Reduction reduction = ag::Reduction::mean);

/// The statistics below throw std::invalid_argument naming the parameter whose grads[k] is not
/// (B, numel(params[k])) of the parameter's dtype.

/// ||g_n|| over all parameters together, n = 0..B-1, as the gradients are stored (scaled by s).
std::vector<double> per_sample_norms(const PerSampleGradients& g);

/// The elementwise variance of the per-example gradients u_n = g_n / s, unbiased:
///   var = sum_n (u_n - u_bar)^2 / (B - 1),
/// one tensor per parameter in its shape and dtype, and its total over all parameters, tr(Sigma).
struct GradientVariance {
  std::vector<ag::Tensor> variance;
  double trace = 0.0;
};
/// Throws std::invalid_argument if B < 2.
GradientVariance gradient_variance(const PerSampleGradients& g);

/// Estimates of |G|^2, tr(Sigma) and B_simple = trace / gradient_sq (see the top of this file).
struct NoiseScale {
  double gradient_sq = 0.0;
  double trace = 0.0;
  double simple = 0.0;
};
/// From one batch's per-sample gradients. Throws std::invalid_argument if B < 2.
NoiseScale noise_scale(const PerSampleGradients& g);
/// From per-sample squared norms: the two-batch estimator with |G_1|^2 = sum_n ||g_n||^2 / (s^2 B) and
/// |G_B|^2 = ||dL/dp||^2 / (s B)^2, the same estimate as from the per-sample gradients themselves (NaN when
/// a norm is). Throws std::invalid_argument if B < 2, or the norms or gradients do not fit the batch and
/// parameters.
NoiseScale noise_scale(const PerSampleSqNorms& s);
/// From |G_Bsmall|^2 and |G_Bbig|^2, the squared norms of the mean per-example gradient over batches of
/// b_small and b_big samples. Throws std::invalid_argument unless 0 < b_small < b_big and both norms are
/// finite and non-negative.
NoiseScale noise_scale(double small_sq_norm, std::size_t b_small, double big_sq_norm, std::size_t b_big);

}  // namespace analysis
