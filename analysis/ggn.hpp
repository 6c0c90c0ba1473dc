// Generalised Gauss-Newton products for softmax cross-entropy (Schraudolph, "Fast curvature
// matrix-vector products for second-order gradient descent", 2002; Martens, "New insights and
// perspectives on the natural gradient method", 2020, §9).
//
// For logits z (B, K) of a network with parameters p, J_i = dz_i/dp (K x n) and the mean loss
// L = (1/B) sum_i CE(z_i, y_i), the Hessian splits as H = G + sum_i,k (dL/dz_ik) d^2 z_ik/dp^2 with
//   G v = (1/B) sum_i J_i^T H_i J_i v,   H_i = d^2 CE / dz_i^2 = diag(p_i) - p_i p_i^T,   p_i = softmax(z_i).
// G is positive semi-definite, does not depend on the labels, and for cross-entropy equals the Fisher
// information of the model's predictive distribution. When z is linear in p, G = H.
//
// J v comes from two vector-Jacobian products (the R-op by double backward): with u a dummy (B, K) that
// requires grad, w(u) = J^T u = d<z, u>/dp is recorded once (create_graph), and J v = d<w(u), v>/du. Then
// G v = J^T (H J v), one more vector-Jacobian product. The tape rules of analysis/hessian.hpp apply.
#pragma once

#include <functional>
#include <vector>

#include "analysis/hessian.hpp"
#include "autograd/tensor.hpp"

namespace analysis {

/// Returns the logits (B, K) on the tape, for the loss ag::cross_entropy(logits, labels) with mean reduction.
using LogitsFn = std::function<ag::Tensor()>;

/// G of one batch. The constructor runs the logits function once (recording even under a NoGradGuard)
/// and records J^T u; each apply() is two backward sweeps. The destructor releases this thread's tape.
class GgnOperator : public LinearOperator {
 public:
  /// Throws std::invalid_argument if a parameter does not require grad, or the logits are not (B, K)
  /// with B, K >= 1, or do not depend on the parameters.
  GgnOperator(const LogitsFn& logits_fn, std::vector<ag::Tensor> params);
  ~GgnOperator() override;
  GgnOperator(const GgnOperator&) = delete;
  GgnOperator& operator=(const GgnOperator&) = delete;

  std::size_t size() const override { return layout_.size(); }
  std::vector<double> apply(const std::vector<double>& v) const override;
  const ParamLayout& layout() const { return layout_; }
  /// softmax(z), (B, K), row-major.
  const std::vector<double>& probabilities() const { return probabilities_; }

 private:
  /// J v, (B, K) row-major.
  std::vector<double> jvp(const std::vector<double>& v) const;

  ParamLayout layout_;
  ag::Tensor logits_, dummy_;     // z and u, on the tape
  std::vector<ag::Tensor> jtu_;   // J^T u, on the tape
  std::vector<std::size_t> live_;  // the parameters z depends on
  std::vector<double> probabilities_;
  std::size_t batch_ = 0, classes_ = 0;
};

/// G v for one batch; `v` and the result as for hvp (analysis/hessian.hpp).
std::vector<ag::Tensor> ggn_vp(const LogitsFn& logits_fn, const std::vector<ag::Tensor>& params,
                               const std::vector<ag::Tensor>& v);

}  // namespace analysis
