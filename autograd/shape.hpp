// Shape and element type of a tensor. Light header: no xtensor here.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace ag {

/// Tensors have at most six dimensions (images are (N, C, H, W); a batch of those stacked is rank 5).
inline constexpr std::size_t kMaxRank = 6;

/// Element type. float32 is the default; float64 is for gradient checks.
enum class DType { f32, f64 };

std::string_view dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

/// A tensor's extents, stored inline (no heap allocation) because every op builds one.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::size_t> dims);
  template <class It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<std::size_t>(*first));
  }

  std::size_t rank() const { return rank_; }
  std::size_t size() const { return rank_; }
  bool empty() const { return rank_ == 0; }
  std::size_t operator[](std::size_t axis) const { return dims_[axis]; }
  std::size_t& operator[](std::size_t axis) { return dims_[axis]; }
  const std::size_t* begin() const { return dims_.data(); }
  const std::size_t* end() const { return dims_.data() + rank_; }
  std::size_t back() const { return dims_[rank_ - 1]; }

  /// Appends an axis; throws std::invalid_argument beyond kMaxRank.
  void push_back(std::size_t extent);
  /// Product of the extents (1 for a scalar). Throws std::invalid_argument naming the shape if the
  /// product overflows size_t, so that no wrapped-around count is ever used.
  std::size_t numel() const;
  /// The product of the extents, or nullopt if it overflows size_t.
  std::optional<std::size_t> checked_numel() const;
  /// "[200, 784]".
  std::string str() const;

  friend bool operator==(const Shape& a, const Shape& b);

 private:
  std::array<std::size_t, kMaxRank> dims_{};
  std::size_t rank_ = 0;
};

/// The bytes of a tensor of `shape` and `dtype`. Throws std::invalid_argument "<op>: ..." naming the shape if
/// the element count or the byte count overflows (more than PTRDIFF_MAX bytes: no allocator can serve it).
std::size_t storage_bytes(const char* op, const Shape& shape, DType dtype);

}  // namespace ag
