// Reshape and flatten: same storage, new shape.
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

Tensor reshape(const Tensor& x, const Shape& shape) {
  detail::check_defined("reshape", x);
  std::optional<std::size_t> count = shape.checked_numel();
  if (count != x.numel()) {
    detail::fail("reshape", "{} has {} elements, {} has {}", x.shape().str(), x.numel(), shape.str(),
                 count ? fmt::format("{}", *count) : "more than 64 bits count");
  }
  Tensor out = detail::alias(x, shape);
  return record("reshape", out, {x}, [source = x.shape()](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{reshape(g, source)};
  });
}

Tensor flatten(const Tensor& x, std::size_t start_axis) {
  detail::check_defined("flatten", x);
  if (start_axis >= x.rank()) {
    detail::fail("flatten", "start axis {} for a tensor of shape {}", start_axis, x.shape().str());
  }
  Shape shape;
  std::size_t folded = 1;
  for (std::size_t d = 0; d < x.rank(); ++d) {
    if (d < start_axis) {
      shape.push_back(x.dim(d));
    } else {
      folded *= x.dim(d);
    }
  }
  shape.push_back(folded);
  return reshape(x, shape);
}

}  // namespace ag
