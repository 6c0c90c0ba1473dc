#include "analysis/ggn.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "analysis/detail/tape_guard.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

namespace analysis {

GgnOperator::GgnOperator(const LogitsFn& logits_fn, std::vector<ag::Tensor> params)
    : layout_(std::move(params), "ggn_vp") {
  layout_.require_grad("ggn_vp");
  detail::ReleaseTapeOnThrow release;
  {
    ag::EnableGradGuard recording(true);
    logits_ = logits_fn();
  }
  if (!logits_.defined() || logits_.rank() != 2 || logits_.dim(0) == 0 || logits_.dim(1) == 0) {
    throw std::invalid_argument(fmt::format("ggn_vp: the logits must be (B, K) with B, K >= 1, not {}",
                                            logits_.defined() ? logits_.describe() : "undefined"));
  }
  if (!logits_.requires_grad()) throw std::invalid_argument("ggn_vp: the logits do not depend on any of the parameters");
  batch_ = logits_.dim(0);
  classes_ = logits_.dim(1);
  // w(u) = J^T u = d<z, u>/dp, recorded once; its value (u = 0) is never used, only its derivative in u.
  // (u enters through a product on the tape: grad's seeds are detached.)
  dummy_ = ag::Tensor::zeros(logits_.shape(), logits_.dtype());
  dummy_.set_requires_grad();
  ag::Tensor projection;
  {
    ag::EnableGradGuard recording(true);
    projection = ag::sum(ag::mul(logits_, dummy_));
  }
  jtu_ = ag::grad({projection}, layout_.params(), {}, {.create_graph = true});
  for (std::size_t k = 0; k < jtu_.size(); ++k) {
    if (jtu_[k].requires_grad()) live_.push_back(k);
  }
  {
    ag::NoGradGuard no_grad;
    probabilities_ = ag::softmax(logits_.detach(), 1).to_vector();
  }
  release.dismiss();
}

GgnOperator::~GgnOperator() { ag::release_tape(); }

std::vector<double> GgnOperator::jvp(const std::vector<double>& v) const {
  std::vector<ag::Tensor> pieces = layout_.unflatten(v), outputs, seeds;
  for (std::size_t k : live_) {
    outputs.push_back(jtu_[k]);
    seeds.push_back(pieces[k].to(jtu_[k].dtype()));
  }
  return ag::grad(outputs, {dummy_}, seeds, {.retain_graph = true})[0].to_vector();
}

std::vector<double> GgnOperator::apply(const std::vector<double>& v) const {
  check_vector(v, "ggn_vp");
  if (live_.empty()) return std::vector<double>(size(), 0.0);
  // s_i = H_i (J v)_i / B = p_i * (r_i - <p_i, r_i>) / B, per sample.
  std::vector<double> s = jvp(v);
  const double scale = 1.0 / static_cast<double>(batch_);
  for (std::size_t i = 0; i < batch_; ++i) {
    const double* p = probabilities_.data() + i * classes_;
    double* r = s.data() + i * classes_;
    double mean = 0;
    for (std::size_t k = 0; k < classes_; ++k) mean += p[k] * r[k];
    for (std::size_t k = 0; k < classes_; ++k) r[k] = p[k] * (r[k] - mean) * scale;
  }
  ag::Tensor seed = ag::Tensor::from_data(logits_.shape(), std::span<const double>(s)).to(logits_.dtype());
  std::vector<ag::Tensor> gv = ag::grad({logits_}, layout_.params(), {seed}, {.retain_graph = true});
  return layout_.flatten(gv, "ggn_vp");
}

std::vector<ag::Tensor> ggn_vp(const LogitsFn& logits_fn, const std::vector<ag::Tensor>& params,
                               const std::vector<ag::Tensor>& v) {
  ParamLayout layout(params, "ggn_vp");
  std::vector<double> flat = layout.flatten(v, "ggn_vp");
  GgnOperator op(logits_fn, params);
  return layout.unflatten(op.apply(flat));
}

}  // namespace analysis
