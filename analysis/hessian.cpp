#include "analysis/hessian.hpp"

#include <unistd.h>

#include <span>
#include <stdexcept>

#include <fmt/format.h>

#include "analysis/detail/tape_guard.hpp"
#include "autograd/tape.hpp"

namespace analysis {

// ---------------------------------------------------------------- the flat vector

ParamLayout::ParamLayout(std::vector<ag::Tensor> params, const char* op) : params_(std::move(params)) {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].defined()) throw std::invalid_argument(fmt::format("{}: parameter {} is undefined", op, k));
    offsets_.push_back(size_);
    size_ += params_[k].numel();
  }
}

void ParamLayout::require_grad(const char* op) const {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].requires_grad()) {
      throw std::invalid_argument(fmt::format("{}: parameter {} ({}) does not require grad", op, k, params_[k].describe()));
    }
  }
}

std::vector<double> ParamLayout::flatten(const std::vector<ag::Tensor>& tensors, const char* op) const {
  if (tensors.size() != params_.size()) {
    throw std::invalid_argument(
        fmt::format("{}: {} tensors given for {} parameters", op, tensors.size(), params_.size()));
  }
  std::vector<double> flat;
  flat.reserve(size_);
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    if (!tensors[k].defined() || !(tensors[k].shape() == params_[k].shape())) {
      throw std::invalid_argument(fmt::format("{}: v[{}] is {} but parameter {} is {}", op, k,
                                              tensors[k].defined() ? tensors[k].describe() : "undefined", k,
                                              params_[k].describe()));
    }
    std::vector<double> values = tensors[k].to_vector();
    flat.insert(flat.end(), values.begin(), values.end());
  }
  return flat;
}

std::vector<ag::Tensor> ParamLayout::unflatten(const std::vector<double>& flat) const {
  if (flat.size() != size_) {
    throw std::invalid_argument(fmt::format("ParamLayout::unflatten: {} values for {} parameters of {} elements",
                                            flat.size(), params_.size(), size_));
  }
  std::vector<ag::Tensor> out;
  for (std::size_t k = 0; k < params_.size(); ++k) {
    std::span<const double> part(flat.data() + offsets_[k], params_[k].numel());
    ag::Tensor t = ag::Tensor::from_data(params_[k].shape(), part);
    out.push_back(params_[k].dtype() == ag::DType::f64 ? t : t.to(params_[k].dtype()));
  }
  return out;
}

void LinearOperator::check_vector(const std::vector<double>& v, const char* op) const {
  if (v.size() != size()) {
    throw std::invalid_argument(fmt::format("{}: the vector has {} entries, the operator is {} x {}", op, v.size(),
                                            size(), size()));
  }
}

MatrixOperator::MatrixOperator(std::vector<double> matrix, std::size_t n) : matrix_(std::move(matrix)), n_(n) {
  if (matrix_.size() != n * n) {
    throw std::invalid_argument(
        fmt::format("MatrixOperator: {} entries for a {} x {} matrix", matrix_.size(), n, n));
  }
}

std::vector<double> MatrixOperator::apply(const std::vector<double>& v) const {
  check_vector(v, "MatrixOperator::apply");
  std::vector<double> out(n_, 0.0);
  for (std::size_t i = 0; i < n_; ++i) {
    double s = 0;
    for (std::size_t j = 0; j < n_; ++j) s += matrix_[i * n_ + j] * v[j];
    out[i] = s;
  }
  return out;
}

std::vector<double> FunctionOperator::apply(const std::vector<double>& v) const {
  check_vector(v, "FunctionOperator::apply");
  std::vector<double> out = apply_(v);
  if (out.size() != n_) {
    throw std::runtime_error(fmt::format("FunctionOperator: the product has {} entries, not {}", out.size(), n_));
  }
  return out;
}

// ---------------------------------------------------------------- one batch

HessianOperator::HessianOperator(const LossFn& loss_fn, std::vector<ag::Tensor> params)
    : layout_(std::move(params), "hvp") {
  layout_.require_grad("hvp");
  detail::ReleaseTapeOnThrow release;
  ag::Tensor loss;
  {
    ag::EnableGradGuard recording(true);
    loss = loss_fn();
  }
  if (!loss.defined() || loss.numel() != 1) {
    throw std::invalid_argument(fmt::format("hvp: the loss function must return a one-element tensor, not {}",
                                            loss.defined() ? loss.describe() : "an undefined one"));
  }
  if (!loss.requires_grad()) {
    throw std::invalid_argument("hvp: the loss does not depend on any of the parameters");
  }
  loss_ = loss.item();
  grads_ = ag::grad({loss}, layout_.params(), {}, {.create_graph = true});
  gradient_ = layout_.flatten(grads_, "hvp");
  for (std::size_t k = 0; k < grads_.size(); ++k) {
    if (grads_[k].requires_grad()) live_.push_back(k);
  }
  release.dismiss();
}

HessianOperator::~HessianOperator() { ag::release_tape(); }

std::vector<double> HessianOperator::apply(const std::vector<double>& v) const {
  check_vector(v, "hvp");
  if (live_.empty()) return std::vector<double>(size(), 0.0);  // the loss is linear in the parameters
  std::vector<ag::Tensor> pieces = layout_.unflatten(v), outputs, seeds;
  for (std::size_t k : live_) {
    outputs.push_back(grads_[k]);
    seeds.push_back(pieces[k].to(grads_[k].dtype()));
  }
  std::vector<ag::Tensor> hv = ag::grad(outputs, layout_.params(), seeds, {.retain_graph = true});
  return layout_.flatten(hv, "hvp");
}

// ---------------------------------------------------------------- a data set in chunks

ChunkedHessianOperator::ChunkedHessianOperator(ChunkFn chunk_fn, std::size_t chunks, std::vector<ag::Tensor> params)
    : chunk_fn_(std::move(chunk_fn)), chunks_(chunks), layout_(std::move(params), "hvp") {
  if (chunks_ == 0) throw std::invalid_argument("hvp: a data set of 0 chunks");
}

std::vector<double> ChunkedHessianOperator::apply(const std::vector<double>& v) const {
  check_vector(v, "hvp");
  std::vector<double> sum(size(), 0.0);
  std::size_t total = 0;
  for (std::size_t c = 0; c < chunks_; ++c) {
    std::size_t count = 0;
    HessianOperator chunk_hessian(
        [&] {
          Chunk chunk = chunk_fn_(c);
          count = chunk.count;
          return chunk.loss;
        },
        layout_.params());
    if (count == 0) throw std::invalid_argument(fmt::format("hvp: chunk {} of {} has no samples", c, chunks_));
    std::vector<double> hv = chunk_hessian.apply(v);
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += static_cast<double>(count) * hv[i];
    total += count;
  }
  for (double& x : sum) x /= static_cast<double>(total);
  return sum;
}

// ---------------------------------------------------------------- one-shot forms

std::vector<ag::Tensor> hvp(const LossFn& loss_fn, const std::vector<ag::Tensor>& params,
                            const std::vector<ag::Tensor>& v) {
  ParamLayout layout(params, "hvp");
  std::vector<double> flat = layout.flatten(v, "hvp");  // before any work: a wrong v is named at once
  HessianOperator op(loss_fn, params);
  return layout.unflatten(op.apply(flat));
}

std::vector<ag::Tensor> hvp(const ChunkFn& chunk_fn, std::size_t chunks, const std::vector<ag::Tensor>& params,
                            const std::vector<ag::Tensor>& v) {
  ParamLayout layout(params, "hvp");
  std::vector<double> flat = layout.flatten(v, "hvp");
  ChunkedHessianOperator op(chunk_fn, chunks, params);
  return layout.unflatten(op.apply(flat));
}

std::vector<double> dense(const LinearOperator& op) {
  const std::size_t n = op.size();
  // n^2 doubles, checked against the machine's memory before the first product (a model's Hessian is
  // easily terabytes: an out-of-memory kill, or a bare bad_alloc, would say nothing).
  const double bytes = 8.0 * static_cast<double>(n) * static_cast<double>(n);
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (memory > 0 && bytes > memory) {
    throw std::invalid_argument(fmt::format("dense: a {} x {} matrix needs {:.1f} GB, more than this machine's {:.1f} "
                                            "GB of memory (Lanczos or power iteration need only products)",
                                            n, n, bytes / 1e9, memory / 1e9));
  }
  std::vector<double> a(n * n), e(n, 0.0);
  for (std::size_t j = 0; j < n; ++j) {
    e[j] = 1.0;
    std::vector<double> column = op.apply(e);
    e[j] = 0.0;
    for (std::size_t i = 0; i < n; ++i) a[i * n + j] = column[i];
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < i; ++j) a[i * n + j] = a[j * n + i] = 0.5 * (a[i * n + j] + a[j * n + i]);
  }
  return a;
}

std::vector<double> hessian(const LossFn& f, const std::vector<ag::Tensor>& x) {
  HessianOperator op(f, x);
  return dense(op);
}

}  // namespace analysis
