// Hessian-vector products on the tape, and the dense Hessian.
//
// The parameters p_1, ..., p_m (tensors of any shapes and dtypes) are taken together as one flat vector
// of n = sum numel(p_k) doubles, p_1's elements first in row-major order (ParamLayout). A LinearOperator
// is a symmetric n x n matrix known only through its products A v; the spectral instruments
// (analysis/spectrum.hpp) take any.
//
// H v by double backward (Pearlmutter, "Fast exact multiplication by the Hessian", 1994):
//   g = dL/dp   (ag::grad with create_graph: the gradient is itself on the tape)
//   H v = d<g, v>/dp   (ag::grad of g, seeded with v)
// One product costs about two backward sweeps; the forward and the first backward are shared by every
// product of a HessianOperator. Over a data set cut into chunks c of n_c samples, each returning its
// mean loss L_c, the loss is the mean over all N = sum n_c samples, L = sum n_c L_c / N, so
//   H v = sum_c n_c H_c v / N.
// Only one chunk's graph is held at a time.
//
// The tape is per thread and released whole (autograd/tape.hpp): a HessianOperator holds its loss and
// gradient on the tape and releases the tape when it is destroyed; the one-shot functions release it
// before they return. So one operator at a time per thread: while a HessianOperator (or GgnOperator)
// lives, do not backward, release the tape, or use another operator or one-shot function.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "autograd/tensor.hpp"

namespace analysis {

/// Returns the loss (one element) on the tape; no backward.
using LossFn = std::function<ag::Tensor()>;

/// One chunk of a data set: the mean loss over its `count` samples, on the tape.
struct Chunk {
  ag::Tensor loss;
  std::size_t count = 0;
};
/// Returns chunk `index` (0 <= index < chunks).
using ChunkFn = std::function<Chunk(std::size_t index)>;

/// Where each parameter sits in the flat vector: parameter k at [offset(k), offset(k) + numel).
class ParamLayout {
 public:
  ParamLayout() = default;
  /// `op` names the caller in errors (an undefined parameter).
  ParamLayout(std::vector<ag::Tensor> params, const char* op);
  std::size_t size() const { return size_; }
  const std::vector<ag::Tensor>& params() const { return params_; }
  std::size_t offset(std::size_t k) const { return offsets_[k]; }
  /// Throws std::invalid_argument naming `op` and the first parameter that does not require grad.
  void require_grad(const char* op) const;
  /// The tensors' elements, one after the other, as doubles. Throws std::invalid_argument naming `op` and
  /// the first tensor whose count or shape differs from its parameter's.
  std::vector<double> flatten(const std::vector<ag::Tensor>& tensors, const char* op) const;
  /// One tensor per parameter, of its shape and dtype, from n flat values (not on the tape). Throws
  /// std::invalid_argument if `flat` does not hold size() values.
  std::vector<ag::Tensor> unflatten(const std::vector<double>& flat) const;

 private:
  std::vector<ag::Tensor> params_;
  std::vector<std::size_t> offsets_;
  std::size_t size_ = 0;
};

/// A symmetric n x n matrix known through its products.
class LinearOperator {
 public:
  virtual ~LinearOperator() = default;
  virtual std::size_t size() const = 0;
  /// A v for v of size() entries.
  virtual std::vector<double> apply(const std::vector<double>& v) const = 0;

 protected:
  /// Throws std::invalid_argument naming `op` if v does not have size() entries.
  void check_vector(const std::vector<double>& v, const char* op) const;
};

/// A dense row-major n x n matrix as an operator (tests, small problems).
class MatrixOperator : public LinearOperator {
 public:
  MatrixOperator(std::vector<double> matrix, std::size_t n);
  std::size_t size() const override { return n_; }
  std::vector<double> apply(const std::vector<double>& v) const override;

 private:
  std::vector<double> matrix_;
  std::size_t n_;
};

/// Any product function as an operator.
class FunctionOperator : public LinearOperator {
 public:
  using Apply = std::function<std::vector<double>(const std::vector<double>&)>;
  FunctionOperator(std::size_t n, Apply apply) : n_(n), apply_(std::move(apply)) {}
  std::size_t size() const override { return n_; }
  std::vector<double> apply(const std::vector<double>& v) const override;

 private:
  std::size_t n_;
  Apply apply_;
};

/// The Hessian of one loss with respect to `params`, for one batch. The constructor runs the loss
/// function once (recording even under a NoGradGuard) and keeps the gradient on the tape; each apply()
/// is one double backward through it. The destructor releases this thread's tape.
class HessianOperator : public LinearOperator {
 public:
  /// Throws std::invalid_argument if a parameter does not require grad, or the loss is not one element or
  /// does not depend on the parameters.
  HessianOperator(const LossFn& loss_fn, std::vector<ag::Tensor> params);
  ~HessianOperator() override;
  HessianOperator(const HessianOperator&) = delete;
  HessianOperator& operator=(const HessianOperator&) = delete;

  std::size_t size() const override { return layout_.size(); }
  std::vector<double> apply(const std::vector<double>& v) const override;
  const ParamLayout& layout() const { return layout_; }
  double loss() const { return loss_; }
  /// dL/dp, flat.
  const std::vector<double>& gradient() const { return gradient_; }

 private:
  ParamLayout layout_;
  std::vector<ag::Tensor> grads_;  // on the tape
  std::vector<std::size_t> live_;  // the gradients that still depend on the parameters
  std::vector<double> gradient_;
  double loss_ = 0;
};

/// The Hessian of the mean loss over a data set of `chunks` chunks (see the top of this file). Each
/// apply() runs every chunk's loss function again, one HessianOperator at a time.
class ChunkedHessianOperator : public LinearOperator {
 public:
  /// Throws std::invalid_argument if there are no chunks (the chunks themselves are checked when applied).
  ChunkedHessianOperator(ChunkFn chunk_fn, std::size_t chunks, std::vector<ag::Tensor> params);
  std::size_t size() const override { return layout_.size(); }
  /// Throws std::invalid_argument naming the chunk that has no samples.
  std::vector<double> apply(const std::vector<double>& v) const override;
  const ParamLayout& layout() const { return layout_; }

 private:
  ChunkFn chunk_fn_;
  std::size_t chunks_;
  ParamLayout layout_;
};

/// H v for one batch: `v` holds one tensor per parameter, of its shape (any dtype); the result too, in
/// the parameters' dtypes. Throws std::invalid_argument naming the first v[k] of the wrong shape.
std::vector<ag::Tensor> hvp(const LossFn& loss_fn, const std::vector<ag::Tensor>& params,
                            const std::vector<ag::Tensor>& v);
/// H v of the mean loss over a whole data set, chunk by chunk.
std::vector<ag::Tensor> hvp(const ChunkFn& chunk_fn, std::size_t chunks, const std::vector<ag::Tensor>& params,
                            const std::vector<ag::Tensor>& v);

/// The operator as a dense row-major n x n matrix, one product per column, symmetrised ((A + A^T) / 2).
/// Throws std::invalid_argument, before any product, when n^2 doubles exceed the machine's memory.
std::vector<double> dense(const LinearOperator& op);
/// The full Hessian of f (one element, on the tape, computed from the tensors `x`, which must require
/// grad) with respect to x, flat over x's tensors: n x n, row-major, n products.
std::vector<double> hessian(const LossFn& f, const std::vector<ag::Tensor>& x);

}  // namespace analysis
