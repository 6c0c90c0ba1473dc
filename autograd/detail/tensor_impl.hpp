// What a Tensor handle points to. Internal to the library (ops and the tape), not for users.
#pragma once

#include <cstdint>
#include <memory>

#include "autograd/in_backward.hpp"
#include "autograd/shape.hpp"
#include "autograd/tensor.hpp"

namespace ag {

/// A 64-byte aligned block of elements. Freed blocks go to a per-thread cache keyed by size, so a
/// training loop whose shapes repeat allocates nothing after its first step.
class Storage {
 public:
  explicit Storage(std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_;
  std::size_t bytes_;
};

struct TensorImpl {
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<Storage> storage;
  /// Where this tensor's elements start in `storage`, in elements: 0 except for views (narrow).
  std::size_t offset = 0;
  bool requires_grad = false;
  Tensor grad;
  /// Position of the node that produced this tensor on the tape of generation `tape_generation`;
  /// -1 for leaves.
  std::int64_t node = -1;
  std::uint64_t tape_generation = 0;
  /// An optimiser's update applied inside backward (autograd/in_backward.hpp), and the number of nodes of
  /// the tape of generation `uses_generation` that take this leaf.
  std::shared_ptr<const InBackwardUpdate> in_backward;
  std::uint64_t uses_generation = 0;
  unsigned uses = 0;
};

namespace detail {
/// New tensor with fresh, uninitialised storage. Errors (a size that overflows, memory that cannot be had)
/// start with `op`.
Tensor make_tensor(const Shape& shape, DType dtype, const char* op = "tensor");
/// New handle sharing `storage` with another shape (same numel).
Tensor alias(const Tensor& source, const Shape& shape);
/// New handle on the `shape.numel()` contiguous elements of `source`'s storage that start `offset` elements
/// after `source`'s first: a view (writes through either handle are seen by both).
Tensor view(const Tensor& source, const Shape& shape, std::size_t offset);
}  // namespace detail

}  // namespace ag
