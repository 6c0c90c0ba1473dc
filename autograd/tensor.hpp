// The tensor handle. Light header: xtensor stays in the .cpp files (see autograd/detail/xt.hpp).
//
// A Tensor is a cheap-to-copy handle to shared, contiguous, row-major storage of float32 or
// float64 elements, with up to six dimensions (ag::kMaxRank). Copies share data; `clone()` copies it.
// Ops that record on the tape (autograd/tape.hpp) are declared in autograd/ops.hpp.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "autograd/generator.hpp"
#include "autograd/shape.hpp"

namespace ag {

/// Thrown when a tensor's storage cannot be allocated: a std::bad_alloc whose what() names the op, the
/// dtype, the shape and the bytes asked for ("zeros: cannot allocate f32[1099511627776], 4 TiB: out of memory").
/// Shapes whose element or byte count overflows never get this far: they throw std::invalid_argument.
class AllocationError : public std::bad_alloc {
 public:
  explicit AllocationError(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

struct TensorImpl;

class Tensor {
 public:
  /// An undefined tensor (e.g. the gradient of a tensor nobody differentiated yet).
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories ----
  // Each throws std::invalid_argument naming itself and the shape if the element or byte count overflows,
  // and AllocationError if the memory cannot be had.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);  // uninitialised
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32);
  /// Copies `values` (numel must match the shape).
  static Tensor from_data(const Shape& shape, std::span<const float> values);
  static Tensor from_data(const Shape& shape, std::span<const double> values);
  static Tensor from_data(const Shape& shape, std::initializer_list<double> values,
                          DType dtype = DType::f32);
  /// Normal(mean, stddev) and uniform [low, high) samples from a seeded generator.
  static Tensor randn(const Shape& shape, Generator& gen, double mean = 0.0, double stddev = 1.0,
                      DType dtype = DType::f32);
  static Tensor uniform(const Shape& shape, Generator& gen, double low, double high,
                        DType dtype = DType::f32);
  static Tensor zeros_like(const Tensor& other);
  static Tensor ones_like(const Tensor& other);

  // ---- description ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  std::size_t rank() const { return shape().rank(); }
  std::size_t dim(std::size_t axis) const;
  std::size_t numel() const;
  DType dtype() const;
  /// "f32[200, 784]".
  std::string describe() const;
  /// The values in nested brackets, NumPy style, then the description; axes longer than 6 show their first
  /// and last 3 entries around "...".
  std::string str() const;

  // ---- data ----
  /// Raw element pointer; throws if T does not match the dtype.
  template <class T>
  T* data();
  template <class T>
  const T* data() const;
  /// The single value of a one-element tensor, as double.
  double item() const;
  /// Element `flat_index` in row-major order, as double (for tests and printing).
  double at(std::size_t flat_index) const;
  /// All elements, as double, in row-major order.
  std::vector<double> to_vector() const;
  /// Copies the data; the copy is a leaf that does not require grad.
  Tensor clone() const;
  /// Same data, converted; a detached leaf.
  Tensor to(DType dtype) const;
  /// Same storage, cut from the tape: a leaf that does not require grad.
  Tensor detach() const;
  /// Overwrites every element in place (no tape record).
  void fill_(double value);
  /// Copies `src` (same shape and dtype) into this tensor's storage in place (no tape record).
  void copy_(const Tensor& src);

  // ---- gradients ----
  bool requires_grad() const;
  /// Marks a leaf as a parameter whose gradient is accumulated by backward.
  Tensor& set_requires_grad(bool enabled = true);
  /// True unless this tensor was produced by an op recorded on the tape.
  bool is_leaf() const;
  /// Accumulated gradient (undefined until a backward reaches this leaf).
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  /// Forgets the accumulated gradient.
  void zero_grad();

  /// Identity of the underlying tensor (shared by copies of the handle).
  const TensorImpl* id() const { return impl_.get(); }
  /// True if both handles refer to the same storage.
  bool shares_storage_with(const Tensor& other) const;
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

/// Writes `tensor.str()`.
std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

}  // namespace ag
