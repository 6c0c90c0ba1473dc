#include "autograd/shape.hpp"

#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

namespace ag {

std::string_view dtype_name(DType dtype) { return dtype == DType::f64 ? "f64" : "f32"; }
std::size_t dtype_size(DType dtype) { return dtype == DType::f64 ? sizeof(double) : sizeof(float); }

Shape::Shape(std::initializer_list<std::size_t> dims) {
  for (std::size_t extent : dims) push_back(extent);
}

void Shape::push_back(std::size_t extent) {
  if (rank_ == kMaxRank) {
    throw std::invalid_argument(fmt::format("shape: at most {} dimensions are supported", kMaxRank));
  }
  dims_[rank_++] = extent;
}

std::optional<std::size_t> Shape::checked_numel() const {
  std::size_t n = 1;
  for (std::size_t extent : *this) {
    if (__builtin_mul_overflow(n, extent, &n)) return std::nullopt;
  }
  return n;
}

std::size_t Shape::numel() const {
  std::optional<std::size_t> n = checked_numel();
  if (!n) throw std::invalid_argument(fmt::format("shape {}: the element count overflows 64 bits", str()));
  return *n;
}

std::size_t storage_bytes(const char* op, const Shape& shape, DType dtype) {
  std::optional<std::size_t> n = shape.checked_numel();
  if (!n) throw std::invalid_argument(fmt::format("{}: shape {} has more elements than 64 bits count", op, shape.str()));
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(*n, dtype_size(dtype), &bytes) || bytes > static_cast<std::size_t>(PTRDIFF_MAX)) {
    throw std::invalid_argument(fmt::format("{}: {}{} would need {} x {} bytes, more than any address space holds",
                                            op, dtype_name(dtype), shape.str(), *n, dtype_size(dtype)));
  }
  return bytes;
}

std::string Shape::str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (std::size_t i = 0; i < a.rank_; ++i) {
    if (a.dims_[i] != b.dims_[i]) return false;
  }
  return true;
}

}  // namespace ag
