#include "autograd/shape.hpp"

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

std::size_t Shape::numel() const {
  std::size_t n = 1;
  for (std::size_t extent : *this) n *= extent;
  return n;
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
