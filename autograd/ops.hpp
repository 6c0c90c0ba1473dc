// Differentiable ops. Each is implemented with its backward right beside it, one file per family:
//   autograd/ops/elementwise.cpp  arithmetic with NumPy broadcasting, exp/log/sqrt/abs/pow;
//                                 selection and clamping: where, maximum, minimum, clamp
//   autograd/ops/activation.cpp   relu, leaky_relu, elu, gelu, softplus, silu, log_sigmoid, hardtanh,
//                                 sigmoid, tanh, softmax, log_softmax
//   autograd/ops/reduce.cpp       sum / mean / max / logsumexp, sum_to (undoes broadcasting), broadcast_to
//   autograd/ops/linalg.cpp       matmul (BLAS, transpose flags), transpose
//   autograd/ops/shape.cpp        reshape, flatten
//   autograd/ops/loss.cpp         cross_entropy, nll_loss, mse_loss
//   autograd/ops/conv.cpp         conv2d, conv2d_max_pool2d
//   autograd/ops/pool.cpp         max_pool2d, avg_pool2d, adaptive_avg_pool2d
//   autograd/ops/norm.cpp         batch_norm, layer_norm
//   autograd/ops/index.cpp        cat, stack, narrow, index_select, gather, embedding
//   autograd/ops/dropout.cpp      dropout
// (and, below, their section: min, argmax, var, std, prod in reduce.cpp; eq ... ge in elementwise.cpp)
// Every op checks its inputs and throws std::invalid_argument naming the op and the shapes; a shape whose
// element or byte count would overflow is refused the same way, and memory that cannot be had throws
// ag::AllocationError (a std::bad_alloc naming the op, the shape and the bytes).
// NaN propagates: wherever a NaN input contributes to an output, the output is NaN (max, max_pool2d,
// softmax, log_softmax and cross_entropy included: no comparison drops it), and backward every derivative
// that depends on the NaN's value is NaN. A linear op (add, matmul) passes the incoming gradient on as it
// is; a selection (max, min, max_pool2d, maximum, minimum) routes it to the NaN element, which it selected;
// relu, as PyTorch, passes the gradient through at a NaN input (its forward gives NaN). leaky_relu, elu,
// hardtanh and clamp do not follow PyTorch there (it passes or zeroes the gradient at a NaN): their gradient
// at a NaN is NaN. The comparison masks and where's unselected branch are the exceptions (below).
// Binary ops need equal dtypes. Backward formulas use these same ops, so they can be differentiated
// again (see BackwardOptions::create_graph).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "autograd/tape.hpp"
#include "autograd/tensor.hpp"

namespace ag {

// ---------------------------------------------------------------- elementwise (broadcasting)
// Shapes broadcast as in NumPy: aligned from the right, extents equal or 1.
// d(a+b) = (g, g); d(a-b) = (g, -g); d(a*b) = (g*b, g*a); d(a/b) = (g/b, -g*a/b^2),
// each summed back to its input's shape (sum_to).
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);  // a - s
Tensor sub(double s, const Tensor& a);  // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);  // a / s
Tensor div(double s, const Tensor& a);  // s / a
Tensor neg(const Tensor& a);
/// d(x^p)/dx = p x^(p-1).
Tensor pow(const Tensor& x, double exponent);
/// d(e^x) = e^x (saved output).
Tensor exp(const Tensor& x);
/// d(ln x) = 1/x.
Tensor log(const Tensor& x);
/// d(sqrt x) = 1 / (2 sqrt x) (saved output).
Tensor sqrt(const Tensor& x);
/// d|x| = sign(x) (0 at 0, NaN at NaN).
Tensor abs(const Tensor& x);
/// Not differentiable (zero gradient): 1 where x > 0, 0 where x <= 0, NaN where x is NaN.
Tensor step(const Tensor& x);
/// Not differentiable (zero gradient): -1, 0 or 1, and NaN for NaN (as NumPy; PyTorch gives 0).
Tensor sign(const Tensor& x);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(const Tensor& a, double s);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(const Tensor& a, double s);
Tensor operator/(double s, const Tensor& a);

/// Shape that `a` and `b` broadcast to; throws naming `op` if they do not.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// ---------------------------------------------------------------- selection and clamping
/// out = cond != 0 ? a : b elementwise, the three broadcast together (NumPy). `cond` is a mask tensor (any
/// dtype; a NaN counts as nonzero) and gets no gradient. d = (where(cond, g, 0), where(cond, 0, g)), each
/// summed back to its input's shape: an unselected NaN or infinity reaches neither the output nor a gradient.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// Elementwise larger of a and b, broadcasting; NaN if either is NaN. d = (g * w, g * (1 - w)) with
/// w = 1 where a > b, 0 where a < b, 1/2 on ties (PyTorch's split), summed back to each input's shape.
/// At a NaN the NaN operand takes the whole gradient (as max; PyTorch gives it to both operands).
Tensor maximum(const Tensor& a, const Tensor& b);
/// Elementwise smaller of a and b; as maximum with the comparison reversed (ties split 1/2 each).
Tensor minimum(const Tensor& a, const Tensor& b);
/// min(max(x, lo), hi); NaN stays NaN. d = g where lo <= x <= hi (bounds inclusive, as PyTorch), 0 outside,
/// NaN at a NaN. Refuses lo > hi or a NaN bound, naming x's shape.
Tensor clamp(const Tensor& x, double lo, double hi);

// ---------------------------------------------------------------- activations
/// relu(x) = max(x, 0), NaN for NaN; d = g where x > 0 or x is NaN, else 0 (PyTorch's threshold_backward).
Tensor relu(const Tensor& x);
/// x where x > 0, else negative_slope * x. d = g where x > 0, g * negative_slope where x <= 0 (at exactly 0
/// the slope is negative_slope, as PyTorch), NaN at a NaN.
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
/// x where x > 0, else alpha (e^x - 1). d = g where x > 0, g * (y + alpha) = g alpha e^x where x <= 0 (at 0:
/// alpha, as PyTorch).
Tensor elu(const Tensor& x, double alpha = 1.0);
/// Exact: x Phi(x), Phi the standard normal CDF = erfc(-x / sqrt 2) / 2; d = g (Phi(x) + x phi(x)),
/// phi(x) = e^(-x^2/2) / sqrt(2 pi). approximate = true is PyTorch's approximate='tanh':
/// y = x (1 + tanh u) / 2, u = sqrt(2/pi) (x + 0.044715 x^3); d = g ((1 + t)/2 + x (1 - t^2) u' / 2), t = tanh u.
Tensor gelu(const Tensor& x, bool approximate = false);
/// PyTorch's: log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (at beta x = threshold the log
/// form). d = g sigmoid(beta x), g where beta x > threshold. beta must be positive.
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
/// x sigmoid(x); d = g s (1 + x (1 - s)), s = sigmoid(x).
Tensor silu(const Tensor& x);
/// log sigmoid(x) = -softplus(-x), computed stably: min(x, 0) - log(1 + e^-|x|) (log_sigmoid(-1000) = -1000).
/// d = g sigmoid(-x).
Tensor log_sigmoid(const Tensor& x);
/// clamp(x, min, max). d = g where min < x < max, 0 outside and at exactly min or max (PyTorch's
/// hardtanh_backward: bounds exclusive, unlike clamp's), NaN at a NaN. Refuses min > max.
Tensor hardtanh(const Tensor& x, double min = -1.0, double max = 1.0);
/// s = 1/(1+e^-x); d = g * s (1 - s) (saved output).
Tensor sigmoid(const Tensor& x);
/// t = tanh x; d = g * (1 - t^2) (saved output).
Tensor tanh(const Tensor& x);
/// y = softmax along `axis` (default last); d = y * (g - sum(g * y, axis)).
Tensor softmax(const Tensor& x, int axis = -1);
/// y = x - logsumexp(x, axis); d = g - softmax(x) * sum(g, axis).
Tensor log_softmax(const Tensor& x, int axis = -1);

// ---------------------------------------------------------------- reductions
/// Sum of every element: a scalar (rank 0). d = g broadcast to x's shape.
Tensor sum(const Tensor& x);
/// Sum over `axis` (negative counts from the end); keepdims keeps it with extent 1.
Tensor sum(const Tensor& x, int axis, bool keepdims = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int axis, bool keepdims = false);
/// Maximum; the gradient goes to the first maximal element (as PyTorch's max over an axis). A NaN is the
/// maximum (the first NaN takes the gradient).
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, int axis, bool keepdims = false);
/// log(sum(exp(x), axis)), computed max-shifted (no overflow); a row of -inf gives -inf and a +inf gives +inf,
/// as PyTorch; a NaN gives NaN. d = g * softmax(x, axis) = g e^(x - y) (NaN for a row of -inf, as PyTorch).
Tensor logsumexp(const Tensor& x, int axis, bool keepdims = false);
/// The one helper that undoes broadcasting: sums `x` down to `shape` (which must broadcast to
/// x's shape). d = g broadcast back to x's shape.
Tensor sum_to(const Tensor& x, const Shape& shape);
/// Repeats `x` to `shape` by NumPy broadcasting. d = sum_to(g, x's shape).
Tensor broadcast_to(const Tensor& x, const Shape& shape);

// ---------------------------------------------------------------- linear algebra
/// C = op(A) op(B) for 2-D A, B, where op transposes when its flag is set (no copy: BLAS flags).
/// d = (g op(B)^T, op(A)^T g), expressed back in A's and B's own layouts.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);
/// y = x W + b for x (B, in), W (in, out), b (out) or undefined: one GEMM into an output pre-filled with
/// the bias, one tape node. d = (g W^T, x^T g, sum of g over the batch).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
/// 2-D transpose (a copy). d = transpose(g).
Tensor transpose(const Tensor& x);

// ---------------------------------------------------------------- shape
/// Same elements, new shape (numel must match; shares storage). d = reshape(g, x's shape).
Tensor reshape(const Tensor& x, const Shape& shape);
/// Keeps axes before `start_axis` and folds the rest into one: (N, C, H, W) -> (N, C*H*W).
Tensor flatten(const Tensor& x, std::size_t start_axis = 1);

// ---------------------------------------------------------------- convolution and pooling (NCHW)
/// (height, width) of a window, stride, padding or output size.
using Size2 = std::array<std::size_t, 2>;
/// Cross-correlation, as in every framework's "convolution":
///   y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x[n, c, i*stride + p - pad, j*stride + q - pad]
/// x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out) or undefined; y (N, C_out, H_out, W_out)
/// with H_out = (H + 2 pad - kH) / stride + 1. dL/dw is the correlation of x with dL/dy; dL/dx is the
/// full convolution of dL/dy with the flipped kernel; dL/db sums dL/dy over N, H_out, W_out.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::size_t stride = 1,
              std::size_t padding = 0);
/// As torch.nn.functional.conv2d(x, w, b, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g):
///   y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x[n, G C_in/g + c, i sh + p dh - ph, j sw + q dw - pw]
/// where G = o / (C_out/g) is output channel o's group.
/// x (N, C_in, H, W), weight (C_out, C_in / g, kH, kW) (C_in and C_out divisible by g; g = C_in is depthwise),
/// H_out = (H + 2 ph - dh (kH - 1) - 1) / sh + 1, W_out likewise. Equal strides and paddings on both axes,
/// dilation 1 and one group go to the fast kernels above; everything else to im2col + GEMM per group, whose
/// backward ops (dx, dw: the same correlations with the dilation and groups) differentiate each other, to any order.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
              Size2 dilation = {1, 1}, std::size_t groups = 1);
/// max_pool2d(conv2d(x, weight, bias, stride, padding), 2) in one op, or with relu max_pool2d(relu(conv2d(...)),
/// 2) (= relu of the pooled maxima): the same values and gradients, of every order, bit for bit. Where the
/// fast stride-1 kernel applies, each image's convolution is pooled while it is still in cache and never
/// stored whole; the first-order backward unpools each image's gradient straight into the weight and input
/// gradients' work, too. Shapes: x (N, C_in, H, W) -> (N, C_out, H_out / 2,
/// W_out / 2). nn::Sequential uses it for Conv2d [ReLU] MaxPool2d(2).
Tensor conv2d_max_pool2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::size_t stride = 1,
                         std::size_t padding = 0, bool relu = false);
/// Max over kernel x kernel windows moved by `stride` (0 means stride = kernel); x (N, C, H, W).
/// The backward routes each gradient to the element that was the maximum (argmax saved by forward): the first
/// maximum of the window in row-major order, or, if the window holds a NaN, the last NaN (as PyTorch).
/// `padding` (at most half the kernel, as PyTorch) pads with -inf: a padded position never wins, and
/// H_out = (H + 2 padding - kernel) / stride + 1. Rectangular windows: the Size2 overload below.
Tensor max_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0);

// ---------------------------------------------------------------- losses
enum class Reduction { mean, sum, none };

/// Class labels for a batch, one per row of the logits, each in [0, classes).
using Labels = std::span<const std::int32_t>;

/// Fused, numerically stable softmax cross-entropy from logits (B, K) and integer labels:
///   loss_i = logsumexp(z_i) - z_i[y_i];  d loss / d z = (softmax(z) - onehot(y)) / B  (for mean).
/// Reduction::none returns the (B) per-sample losses.
Tensor cross_entropy(const Tensor& logits, Labels labels, Reduction reduction = Reduction::mean);
/// Negative log-likelihood of log-probabilities (B, K): loss_i = -logp_i[y_i].
Tensor nll_loss(const Tensor& log_probs, Labels labels, Reduction reduction = Reduction::mean);
/// Mean squared error: mean((pred - target)^2); d/dpred = 2 (pred - target) / numel.
Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction reduction = Reduction::mean);
/// Dense one-hot matrix (B, classes) of labels (no gradient).
Tensor one_hot(Labels labels, std::size_t classes, DType dtype = DType::f32);

// ---------------------------------------------------------------- normalisation (autograd/ops/norm.cpp)
// Both normalise a group of M elements by its mean μ and biased variance: x̂ = (x - μ) σ⁻¹, σ⁻¹ = 1/sqrt(var + eps),
// then y = x̂ γ + β (γ = weight, β = bias; either may be undefined: 1 and 0). With ĝ = g γ,
//   dx = σ⁻¹/M (M ĝ - Σĝ - x̂ Σ ĝx̂),   dγ = Σ g x̂,   dβ = Σ g.
// The forward and the first-order backward are fused loops; differentiated again (create_graph) the backward
// is the same formula in differentiable ops, so gradients of every order are exact. A NaN makes its whole group
// NaN, forward and backward.

/// Batch normalisation (Ioffe & Szegedy 2015) of x (N, C), (N, C, L) or (N, C, H, W), per channel c over the
/// M = N L (or N H W) elements of the channel. weight, bias, running_mean, running_var: (C) or undefined.
/// training: the batch's statistics (M >= 2); running_mean and running_var, if given, are updated in place and
/// not recorded, as PyTorch: r <- (1 - momentum) r + momentum s, s the batch mean and the unbiased variance
/// (var M / (M - 1)). eval (training = false): normalises by the running statistics (required), dx = ĝ σ⁻¹.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);
/// Layer normalisation (Ba, Kiros & Hinton 2016) over the trailing axes of x given by normalized_shape (each
/// row of D = normalized_shape.numel() elements is a group); weight and bias of normalized_shape or undefined.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);

// ---------------------------------------------------------------- indexing, more reductions, pooling
// Indices are tensors of whole numbers in any dtype (the Tensor type holds f32 and f64 only; f32 holds every
// integer up to 2^24 exactly). An index that is not a whole number in range is refused, naming the op, the
// value, its position and the shapes. Indices get no gradient.

/// Joins tensors of one dtype and rank along `axis`; every other extent must match. Any number of inputs
/// (more than 32 are joined in groups: a node has at most 32 inputs). d = narrow(g, axis, offset_i, extent_i).
Tensor cat(const std::vector<Tensor>& tensors, int axis = 0);
/// Joins tensors of one shape along a new axis at `axis` (in [-(rank + 1), rank]); the result has rank + 1 <=
/// kMaxRank axes. Reshapes then cat: d = the slices of g.
Tensor stack(const std::vector<Tensor>& tensors, int axis = 0);
/// The `length` entries from `start` along `axis`. A view sharing x's storage (as PyTorch's) when the entries
/// are contiguous — every axis before `axis` of extent 1 (rows of a matrix, samples of a batch), or the whole
/// axis —, else a copy: writes into x (an optimiser's step) show through a view, never through a copy.
/// d = g placed back among zeros, written as cat(zeros, g, zeros): narrow and cat differentiate each other,
/// to any order.
Tensor narrow(const Tensor& x, int axis, std::size_t start, std::size_t length);
/// out[..., k, ...] = x[..., index[k], ...] along `axis`; index 0-D or 1-D, repeats allowed. out has x's shape
/// with extent index.numel() at `axis`. d = index_add: g's entries summed into zeros at their indices (a repeated
/// index sums its gradients, as PyTorch).
Tensor index_select(const Tensor& x, int axis, const Tensor& index);
/// PyTorch's gather: out[i][j][k] = x[index[i][j][k]][j][k] for axis 0 (likewise for the others); index has x's
/// rank and extents <= x's off the axis; out has index's shape. d = scatter_add of g into zeros of x's shape.
Tensor gather(const Tensor& x, int axis, const Tensor& index);
/// Rows of weight (num_embeddings, dim) picked by indices (rank <= 3): out has shape indices.shape + (dim).
/// = reshape(index_select(weight, 0, indices)); d weight = index_add of g's rows (dense; no padding_idx,
/// max_norm or sparse gradient).
Tensor embedding(const Tensor& indices, const Tensor& weight);

/// Smallest element, as max with the comparison reversed: the gradient goes to the first minimal element of
/// each slice (PyTorch's min over an axis; over everything, PyTorch splits ties evenly, here the first takes
/// all, as max). A NaN is the minimum (the first NaN takes the gradient).
Tensor min(const Tensor& x);
Tensor min(const Tensor& x, int axis, bool keepdims = false);
/// Index of the first maximum (minimum) along `axis`, or in the flattened tensor (a scalar), as PyTorch; a NaN
/// counts as the maximum (and as the minimum for argmin): the first NaN's index. The indices are of x's dtype
/// and not differentiable (no tape record); f32 refuses extents beyond 2^24. Refuses an empty extent.
Tensor argmax(const Tensor& x);
Tensor argmax(const Tensor& x, int axis, bool keepdims = false);
Tensor argmin(const Tensor& x);
Tensor argmin(const Tensor& x, int axis, bool keepdims = false);
/// Variance along `axis`: sum((x - mean)^2) / (N - correction), correction 1 = Bessel's (PyTorch's default).
/// d = g * 2 (x - mean) / (N - correction). N - correction <= 0 divides by 0 as PyTorch: NaN (or inf).
/// Composed of mean, sub, mul and sum: differentiable to any order. Refuses an empty axis, correction < 0.
Tensor var(const Tensor& x, int axis, double correction = 1.0, bool keepdims = false);
/// sqrt(var(x, axis, correction)); d = g (x - mean) / ((N - correction) std): NaN where std = 0 (as PyTorch).
/// Call it qualified, ag::std (as torch::std): after `using namespace ag`, a bare std( is ambiguous.
Tensor std(const Tensor& x, int axis, double correction = 1.0, bool keepdims = false);
/// Product along `axis` (the empty product is 1), or of every element (a scalar). Built as the product of the
/// two halves' products (mul of narrows, recursively): exact at zeros (d x_i = g * prod_{j != i} x_j, no
/// division by x), differentiable to any order, at the cost of ~2N tape nodes and N log N copies.
Tensor prod(const Tensor& x);
Tensor prod(const Tensor& x, int axis, bool keepdims = false);

/// Comparison masks, NumPy broadcasting: 1 where the relation holds, else 0, in a's dtype; no gradient (no
/// tape record). An exception to the NaN rule, as IEEE, NumPy and PyTorch: a NaN compares false, so
/// eq/lt/le/gt/ge give 0 and ne gives 1. The double overloads compare with a scalar.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double s);
Tensor ne(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);
Tensor le(const Tensor& a, double s);
Tensor gt(const Tensor& a, double s);
Tensor ge(const Tensor& a, double s);

/// max_pool2d with a kernel, stride (0 = the kernel's) and padding per direction.
Tensor max_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding = {0, 0});
/// Mean over kh x kw windows moved by `stride` (0 = the kernel's), x (N, C, H, W) zero-padded by `padding` (at
/// most half the kernel): y[n, c, i, j] = sum of the window / (kh kw), padded zeros counted (PyTorch's
/// count_include_pad=True, ceil_mode=False). H_out = (H + 2 padding - kh) / stride + 1. Linear: d spreads
/// g / (kh kw) over each window (overlaps add), and that spread's own derivative is the pooling again.
Tensor avg_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0);
Tensor avg_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding = {0, 0});
/// Mean over the bins that cut (H, W) into output (oh, ow), as PyTorch: output row i covers input rows
/// [floor(i H / oh), ceil((i + 1) H / oh)), divided by the bin's own area. Output 1 (or {1, 1}) is global average
/// pooling, (N, C, H, W) -> (N, C, 1, 1). Linear: d spreads g / area over each bin. Refuses an empty plane
/// and a zero output size.
Tensor adaptive_avg_pool2d(const Tensor& x, std::size_t output_size);
Tensor adaptive_avg_pool2d(const Tensor& x, Size2 output_size);

/// Inverted dropout, as PyTorch's functional dropout: in training, each element is kept with probability
/// 1 - p and scaled by 1 / (1 - p), else zeroed (p = 1 zeroes all); not training (or p = 0), x itself.
/// = mul(x, mask), the mask drawn from `gen`, one uniform01() < 1 - p per element in row-major order (the
/// masks nn::Dropout draws from a generator of the same seed). d = g * mask. Refuses p outside [0, 1].
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

}  // namespace ag
