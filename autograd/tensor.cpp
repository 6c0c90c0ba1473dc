#include "autograd/tensor.hpp"

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>

#include "autograd/detail/tensor_impl.hpp"

namespace ag {

// ---------------------------------------------------------------- storage with a block cache

namespace {

constexpr std::size_t kAlignment = 64;
// Blocks kept per size: enough for the tensors of a training step. The total is bounded too, so that a
// process that goes through many shapes (a grid of batch sizes, full-batch steps) cannot hoard memory.
constexpr std::size_t kCachedBlocksPerSize = 64;
constexpr std::size_t kMaxCachedBytes = std::size_t{256} << 20;

// False once this thread's cache is destroyed: tensors that outlive it (statics) free directly.
thread_local bool block_cache_alive = false;

struct BlockCache {
  std::unordered_map<std::size_t, std::vector<void*>> free_blocks;
  std::size_t cached_bytes = 0;
  BlockCache() { block_cache_alive = true; }
  ~BlockCache() {
    block_cache_alive = false;
    for (auto& [bytes, blocks] : free_blocks) {
      for (void* block : blocks) std::free(block);
    }
  }
};

BlockCache& block_cache() {
  thread_local BlockCache cache;
  return cache;
}

std::size_t rounded(std::size_t bytes) {
  std::size_t size = bytes == 0 ? kAlignment : bytes;
  return (size + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace

Storage::Storage(std::size_t bytes) : bytes_(bytes) {
  std::size_t size = rounded(bytes);
  BlockCache& cache = block_cache();
  auto& blocks = cache.free_blocks[size];
  if (!blocks.empty()) {
    data_ = blocks.back();
    blocks.pop_back();
    cache.cached_bytes -= size;
    return;
  }
  data_ = std::aligned_alloc(kAlignment, size);
  if (data_ == nullptr) throw std::bad_alloc();
}

Storage::~Storage() {
  if (!block_cache_alive) {
    std::free(data_);
    return;
  }
  BlockCache& cache = block_cache();
  std::size_t size = rounded(bytes_);
  auto& blocks = cache.free_blocks[size];
  if (blocks.size() < kCachedBlocksPerSize && cache.cached_bytes + size <= kMaxCachedBytes) {
    blocks.push_back(data_);
    cache.cached_bytes += size;
  } else {
    std::free(data_);
  }
}

// ---------------------------------------------------------------- construction

namespace detail {

namespace {

/// "4 TiB", "1.5 GiB", "12 bytes".
std::string human_bytes(std::size_t bytes) {
  constexpr const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} bytes", bytes) : fmt::format("{:.3g} {}", value, units[unit]);
}

}  // namespace

Tensor make_tensor(const Shape& shape, DType dtype, const char* op) {
  std::size_t bytes = storage_bytes(op, shape, dtype);
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  try {
    impl->storage = std::make_shared<Storage>(bytes);
  } catch (const std::bad_alloc&) {
    throw AllocationError(fmt::format("{}: cannot allocate {}{}, {} ({} bytes): out of memory", op,
                                      dtype_name(dtype), shape.str(), human_bytes(bytes), bytes));
  }
  return Tensor(std::move(impl));
}

Tensor alias(const Tensor& source, const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = source.dtype();
  impl->storage = source.impl()->storage;
  impl->offset = source.impl()->offset;
  return Tensor(std::move(impl));
}

Tensor view(const Tensor& source, const Shape& shape, std::size_t offset) {
  Tensor out = alias(source, shape);
  out.impl()->offset += offset;
  return out;
}

}  // namespace detail

namespace {

template <class Fill>
Tensor generate(const char* op, const Shape& shape, DType dtype, Fill&& fill) {
  Tensor t = detail::make_tensor(shape, dtype, op);
  std::size_t n = t.numel();
  if (dtype == DType::f64) {
    double* out = t.data<double>();
    for (std::size_t i = 0; i < n; ++i) out[i] = fill(i);
  } else {
    float* out = t.data<float>();
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(fill(i));
  }
  return t;
}

const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) throw std::logic_error("tensor: use of an undefined tensor");
  return *impl;
}

void check_numel(const Shape& shape, std::size_t count) {
  std::optional<std::size_t> n = shape.checked_numel();
  if (n != count) {
    throw std::invalid_argument(fmt::format("from_data: shape {} holds {} elements but {} values were given",
                                            shape.str(), n ? fmt::format("{}", *n) : "more than 2^64", count));
  }
}

}  // namespace

namespace {

Tensor filled(const char* op, const Shape& shape, double value, DType dtype) {
  Tensor t = detail::make_tensor(shape, dtype, op);
  t.fill_(value);
  return t;
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype) { return detail::make_tensor(shape, dtype, "empty"); }

Tensor Tensor::zeros(const Shape& shape, DType dtype) { return filled("zeros", shape, 0.0, dtype); }

Tensor Tensor::ones(const Shape& shape, DType dtype) { return filled("ones", shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) { return filled("full", shape, value, dtype); }

Tensor Tensor::scalar(double value, DType dtype) { return filled("scalar", Shape{}, value, dtype); }

Tensor Tensor::from_data(const Shape& shape, std::span<const float> values) {
  check_numel(shape, values.size());
  Tensor t = detail::make_tensor(shape, DType::f32, "from_data");
  if (!values.empty()) std::memcpy(t.data<float>(), values.data(), values.size_bytes());
  return t;
}

Tensor Tensor::from_data(const Shape& shape, std::span<const double> values) {
  check_numel(shape, values.size());
  Tensor t = detail::make_tensor(shape, DType::f64, "from_data");
  if (!values.empty()) std::memcpy(t.data<double>(), values.data(), values.size_bytes());
  return t;
}

Tensor Tensor::from_data(const Shape& shape, std::initializer_list<double> values, DType dtype) {
  check_numel(shape, values.size());
  const double* source = values.begin();
  return generate("from_data", shape, dtype, [&](std::size_t i) { return source[i]; });
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, double mean, double stddev, DType dtype) {
  return generate("randn", shape, dtype, [&](std::size_t) { return mean + stddev * gen.normal(); });
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, double low, double high, DType dtype) {
  if (!(low < high)) {
    throw std::invalid_argument(fmt::format("uniform: need low < high, got [{}, {})", low, high));
  }
  return generate("uniform", shape, dtype, [&](std::size_t) { return low + (high - low) * gen.uniform01(); });
}

Tensor Tensor::zeros_like(const Tensor& other) { return filled("zeros_like", other.shape(), 0.0, other.dtype()); }
Tensor Tensor::ones_like(const Tensor& other) { return filled("ones_like", other.shape(), 1.0, other.dtype()); }

// ---------------------------------------------------------------- description and data

const Shape& Tensor::shape() const { return checked(impl_).shape; }

std::size_t Tensor::dim(std::size_t axis) const {
  const Shape& s = shape();
  if (axis >= s.rank()) {
    throw std::out_of_range(fmt::format("dim: axis {} of a tensor of shape {}", axis, s.str()));
  }
  return s[axis];
}

std::size_t Tensor::numel() const { return shape().numel(); }

DType Tensor::dtype() const { return checked(impl_).dtype; }

std::string Tensor::describe() const {
  if (!impl_) return "undefined";
  return fmt::format("{}{}", dtype_name(impl_->dtype), impl_->shape.str());
}

namespace {

constexpr std::size_t kPrintEdge = 3;  // entries shown at each end of a long axis

void print_axis(std::string& out, const Tensor& t, std::size_t axis, std::size_t offset, std::size_t stride) {
  const Shape& shape = t.shape();
  std::size_t extent = shape[axis];
  std::size_t inner = stride / extent;
  out += '[';
  for (std::size_t i = 0; i < extent; ++i) {
    if (extent > 2 * kPrintEdge && i == kPrintEdge) {
      out += axis + 1 == shape.rank() ? "..., " : "...,\n" + std::string(axis + 1, ' ');
      i = extent - kPrintEdge;
    }
    if (axis + 1 == shape.rank()) {
      out += fmt::format("{:.6g}", t.at(offset + i));
    } else {
      print_axis(out, t, axis + 1, offset + i * inner, inner);
    }
    if (i + 1 < extent) out += axis + 1 == shape.rank() ? ", " : ",\n" + std::string(axis + 1, ' ');
  }
  out += ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!impl_) return "undefined";
  std::string out;
  if (rank() == 0) {
    out = fmt::format("{:.6g}", at(0));
  } else {
    print_axis(out, *this, 0, 0, numel());
  }
  return out + " " + describe() + (requires_grad() ? " requires_grad" : "");
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.str(); }

namespace {
/// The first byte of a tensor's elements (its storage plus its view offset).
std::byte* first_byte(const TensorImpl& impl) {
  return static_cast<std::byte*>(impl.storage->data()) + impl.offset * dtype_size(impl.dtype);
}
}  // namespace

template <class T>
T* Tensor::data() {
  const TensorImpl& impl = checked(impl_);
  constexpr DType wanted = std::is_same_v<T, double> ? DType::f64 : DType::f32;
  if (impl.dtype != wanted) {
    throw std::invalid_argument(fmt::format("data: tensor {} accessed as {}", describe(), dtype_name(wanted)));
  }
  return static_cast<T*>(impl.storage->data()) + impl.offset;
}

template <class T>
const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

template float* Tensor::data<float>();
template double* Tensor::data<double>();
template const float* Tensor::data<float>() const;
template const double* Tensor::data<double>() const;

double Tensor::at(std::size_t flat_index) const {
  if (flat_index >= numel()) {
    throw std::out_of_range(fmt::format("at: index {} in a tensor of {} elements", flat_index, numel()));
  }
  return dtype() == DType::f64 ? data<double>()[flat_index] : static_cast<double>(data<float>()[flat_index]);
}

double Tensor::item() const {
  if (numel() != 1) {
    throw std::invalid_argument(fmt::format("item: tensor {} has {} elements, not one", describe(), numel()));
  }
  return at(0);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> values(numel());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = at(i);
  return values;
}

Tensor Tensor::clone() const {
  Tensor copy = detail::make_tensor(shape(), dtype(), "clone");
  std::memcpy(first_byte(*copy.impl_), first_byte(*impl_), numel() * dtype_size(dtype()));
  return copy;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return clone();
  if (target == DType::f64) {
    const float* source = data<float>();
    return generate("to", shape(), target, [&](std::size_t i) { return static_cast<double>(source[i]); });
  }
  const double* source = data<double>();
  return generate("to", shape(), target, [&](std::size_t i) { return source[i]; });
}

Tensor Tensor::detach() const { return detail::alias(*this, shape()); }

void Tensor::fill_(double value) {
  std::size_t n = numel();
  if (dtype() == DType::f64) {
    std::fill_n(data<double>(), n, value);
  } else {
    std::fill_n(data<float>(), n, static_cast<float>(value));
  }
}

void Tensor::copy_(const Tensor& src) {
  if (!(src.shape() == shape()) || src.dtype() != dtype()) {
    throw std::invalid_argument(fmt::format("copy_: source {} into {}", src.describe(), describe()));
  }
  // memmove: views of one storage (narrow) may overlap.
  if (first_byte(*impl_) != first_byte(*src.impl_)) {
    std::memmove(first_byte(*impl_), first_byte(*src.impl_), numel() * dtype_size(dtype()));
  }
}

bool Tensor::shares_storage_with(const Tensor& other) const {
  return impl_ && other.impl_ && impl_->storage == other.impl_->storage;
}

// ---------------------------------------------------------------- gradients

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool enabled) {
  TensorImpl& impl = const_cast<TensorImpl&>(checked(impl_));
  if (impl.node >= 0 && !enabled) {
    throw std::logic_error("set_requires_grad: an op's output cannot stop requiring grad; use detach()");
  }
  impl.requires_grad = enabled;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_).node < 0; }

Tensor Tensor::grad() const { return checked(impl_).grad; }

void Tensor::set_grad(const Tensor& grad) {
  TensorImpl& impl = const_cast<TensorImpl&>(checked(impl_));
  if (grad.defined() && (!(grad.shape() == impl.shape) || grad.dtype() != impl.dtype)) {
    throw std::invalid_argument(fmt::format("set_grad: gradient {} for tensor {}", grad.describe(), describe()));
  }
  impl.grad = grad;
}

void Tensor::zero_grad() { const_cast<TensorImpl&>(checked(impl_)).grad = Tensor(); }

}  // namespace ag
