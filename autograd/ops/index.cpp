// Joining, slicing and indexing along an axis: cat, stack, narrow, index_select, gather, embedding.
// Each moves elements without arithmetic, so each backward is the adjoint move, itself an op of this file:
//   cat(xs)                  d = narrow(g) for each input
//   narrow(x)                d = cat(zeros, g, zeros)
//   index_select(x, idx)     d = index_add(g, idx) into zeros      d(index_add) = index_select(G, idx)
//   gather(x, idx)           d = scatter_add(g, idx) into zeros    d(scatter_add) = gather(G, idx)
// so derivatives of any order are exact. Indices are read once, checked, and shared by the backward nodes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/detail/axis.hpp"
#include "autograd/detail/broadcast.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::AxisSplit;
using detail::dispatch;
using detail::fail;
using detail::split_at;
using detail::with_extent;

namespace {

using Indices = std::shared_ptr<const std::vector<std::size_t>>;

/// The whole numbers held by `index`, each in [0, extent): the extent of axis `axis` of x.
Indices read_indices(const char* op, const Tensor& index, const Tensor& x, std::size_t axis) {
  detail::check_defined(op, index);
  std::size_t extent = x.dim(axis);
  auto values = std::make_shared<std::vector<std::size_t>>(index.numel());
  for (std::size_t k = 0; k < values->size(); ++k) {
    double v = index.at(k);
    if (!(v >= 0.0 && v < static_cast<double>(extent) && v == std::floor(v))) {
      fail(op, "index {} at position {} of {} is not a whole number in [0, {}) (axis {} of {})", v, k,
           index.describe(), extent, axis, x.describe());
    }
    (*values)[k] = static_cast<std::size_t>(v);
  }
  return values;
}

/// Records a node with any number of inputs (record() takes a braced list).
Tensor record_inputs(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  bool needed = is_recording() && std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) {
                  return t.requires_grad();
                });
  return needed ? detail::append_node(op, std::move(out), inputs, std::move(backward)) : out;
}

/// Tensors to join: at least one, all defined, of one dtype.
void check_joinable(const char* op, const std::vector<Tensor>& tensors) {
  if (tensors.empty()) fail(op, "of no tensors");
  for (const Tensor& t : tensors) {
    detail::check_defined(op, t);
    if (t.dtype() != tensors[0].dtype()) fail(op, "dtypes differ: {} and {}", tensors[0].describe(), t.describe());
  }
}

/// g placed at [start, start + g's extent) along axis a among zeros of `shape`: narrow's adjoint.
Tensor pad_along(const Tensor& g, const Shape& shape, std::size_t a, std::size_t start) {
  std::size_t after = shape[a] - start - g.dim(a);
  std::vector<Tensor> parts;
  if (start > 0) parts.push_back(Tensor::zeros(with_extent(shape, a, start), g.dtype()));
  parts.push_back(g);
  if (after > 0) parts.push_back(Tensor::zeros(with_extent(shape, a, after), g.dtype()));
  return parts.size() == 1 ? g : cat(parts, static_cast<int>(a));
}

Tensor index_add(const Tensor& g, const Shape& shape, std::size_t a, const Indices& index);

/// out[o, k, i] = x[o, index[k], i] around axis a.
Tensor select_rows(const Tensor& x, std::size_t a, const Indices& index) {
  AxisSplit s = split_at(x.shape(), a);
  std::size_t m = index->size();
  Tensor out = detail::make_tensor(with_extent(x.shape(), a, m), x.dtype(), "index_select");
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for (std::size_t o = 0; o < s.outer; ++o) {
      for (std::size_t k = 0; k < m; ++k) {
        std::copy_n(px + (o * s.extent + (*index)[k]) * s.inner, s.inner, po + (o * m + k) * s.inner);
      }
    }
  });
  return record("index_select", out, {x}, [shape = x.shape(), a, index](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{index_add(g, shape, a, index)};
  });
}

/// Zeros of `shape` with g[o, k, i] added at [o, index[k], i]: select_rows' adjoint.
Tensor index_add(const Tensor& g, const Shape& shape, std::size_t a, const Indices& index) {
  AxisSplit s = split_at(shape, a);
  std::size_t m = index->size();
  Tensor out = detail::make_tensor(shape, g.dtype(), "index_select_backward");
  out.fill_(0.0);
  dispatch(g.dtype(), [&]<class T>() {
    const T* pg = g.data<T>();
    T* po = out.data<T>();
    for (std::size_t o = 0; o < s.outer; ++o) {
      for (std::size_t k = 0; k < m; ++k) {
        const T* __restrict from = pg + (o * m + k) * s.inner;
        T* __restrict to = po + (o * s.extent + (*index)[k]) * s.inner;
        for (std::size_t i = 0; i < s.inner; ++i) to[i] += from[i];
      }
    }
  });
  return record("index_select_backward", out, {g}, [a, index](const Tensor& gg, NeedsGrad) {
    return std::vector<Tensor>{select_rows(gg, a, index)};
  });
}

/// A gather: x's shape, the index's shape (the output's), the axis and the index values.
struct GatherSite {
  Shape x_shape, index_shape;
  std::size_t axis;
  Indices index;
};

/// Calls visit(o, at) for every position o (row-major) of the index, with `at` the flat position in x it reads:
/// the position itself with its coordinate on the axis replaced by the index value.
template <class Visit>
void for_each_gathered(const GatherSite& site, Visit visit) {
  detail::Index stride = detail::broadcast_strides(site.x_shape, site.x_shape);
  std::size_t axis = site.axis + kMaxRank - site.x_shape.rank();
  detail::for_each_position(site.index_shape, [&](std::size_t o, const detail::Index& position) {
    std::size_t at = 0;
    for (std::size_t d = 0; d < kMaxRank; ++d) at += (d == axis ? (*site.index)[o] : position[d]) * stride[d];
    visit(o, at);
  });
}

Tensor scatter_add(const Tensor& g, const GatherSite& site);

Tensor gather_at(const Tensor& x, const GatherSite& site) {
  Tensor out = detail::make_tensor(site.index_shape, x.dtype(), "gather");
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for_each_gathered(site, [&](std::size_t o, std::size_t at) { po[o] = px[at]; });
  });
  return record("gather", out, {x}, [site](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{scatter_add(g, site)};
  });
}

/// Zeros of x's shape with g[o] added where gather read output o: gather's adjoint.
Tensor scatter_add(const Tensor& g, const GatherSite& site) {
  Tensor out = detail::make_tensor(site.x_shape, g.dtype(), "gather_backward");
  out.fill_(0.0);
  dispatch(g.dtype(), [&]<class T>() {
    const T* pg = g.data<T>();
    T* po = out.data<T>();
    for_each_gathered(site, [&](std::size_t o, std::size_t at) { po[at] += pg[o]; });
  });
  return record("gather_backward", out, {g}, [site](const Tensor& gg, NeedsGrad) {
    return std::vector<Tensor>{gather_at(gg, site)};
  });
}

}  // namespace

// ---------------------------------------------------------------- cat, stack and narrow

Tensor cat(const std::vector<Tensor>& tensors, int axis) {
  check_joinable("cat", tensors);
  const Tensor& first = tensors[0];
  if (first.rank() == 0) fail("cat", "a zero-dimensional tensor {} cannot be joined", first.describe());
  std::size_t a = detail::normalise_axis("cat", axis, first), total = 0;
  for (const Tensor& t : tensors) {
    bool same = t.rank() == first.rank();
    for (std::size_t d = 0; same && d < t.rank(); ++d) same = d == a || t.dim(d) == first.dim(d);
    if (!same) fail("cat", "along axis {}, {} does not match {}", a, t.describe(), first.describe());
    if (t.dim(a) > SIZE_MAX - total) fail("cat", "along axis {}, the extents overflow ({})", a, t.describe());
    total += t.dim(a);
  }
  if (tensors.size() > 32) {  // a node has at most 32 inputs: join groups of 32, then the groups
    std::vector<Tensor> groups;
    for (std::size_t i = 0; i < tensors.size(); i += 32) {
      auto end = tensors.begin() + static_cast<std::ptrdiff_t>(std::min(i + 32, tensors.size()));
      groups.push_back(cat(std::vector<Tensor>(tensors.begin() + static_cast<std::ptrdiff_t>(i), end), axis));
    }
    return cat(groups, axis);
  }
  Tensor out = detail::make_tensor(with_extent(first.shape(), a, total), first.dtype(), "cat");
  std::vector<std::size_t> offsets, extents;
  AxisSplit so = split_at(out.shape(), a);
  dispatch(first.dtype(), [&]<class T>() {
    T* po = out.data<T>();
    std::size_t offset = 0;
    for (const Tensor& t : tensors) {
      std::size_t block = t.dim(a) * so.inner;
      for (std::size_t o = 0; o < so.outer; ++o) {
        std::copy_n(t.data<T>() + o * block, block, po + (o * so.extent + offset) * so.inner);
      }
      offsets.push_back(offset);
      extents.push_back(t.dim(a));
      offset += t.dim(a);
    }
  });
  return record_inputs("cat", out, tensors, [offsets, extents, a](const Tensor& g, NeedsGrad needs) {
    std::vector<Tensor> grads(offsets.size());
    for (std::size_t i = 0; i < offsets.size(); ++i) {
      if (needs[i]) grads[i] = narrow(g, static_cast<int>(a), offsets[i], extents[i]);
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int axis) {
  check_joinable("stack", tensors);
  const Shape& shape = tensors[0].shape();
  for (const Tensor& t : tensors) {
    if (!(t.shape() == shape)) fail("stack", "{} does not match {}", t.describe(), tensors[0].describe());
  }
  int rank = static_cast<int>(shape.rank());
  if (shape.rank() >= kMaxRank) {
    fail("stack", "tensors {} would make a tensor of more than {} axes", tensors[0].describe(), kMaxRank);
  }
  int a = axis < 0 ? axis + rank + 1 : axis;
  if (a < 0 || a > rank) fail("stack", "axis {} out of range for stacking tensors of shape {}", axis, shape.str());
  Shape lifted;
  for (int d = 0; d <= rank; ++d) lifted.push_back(d == a ? 1 : shape[static_cast<std::size_t>(d < a ? d : d - 1)]);
  std::vector<Tensor> parts;
  for (const Tensor& t : tensors) parts.push_back(reshape(t, lifted));
  return cat(parts, a);
}

Tensor narrow(const Tensor& x, int axis, std::size_t start, std::size_t length) {
  detail::check_defined("narrow", x);
  std::size_t a = detail::normalise_axis("narrow", axis, x);
  AxisSplit s = split_at(x.shape(), a);
  if (start > s.extent || length > s.extent - start) {
    fail("narrow", "{} entries from {} do not fit in axis {} of {}", length, start, a, x.describe());
  }
  Shape shape = with_extent(x.shape(), a, length);
  Tensor out;
  if (s.outer == 1 || length == s.extent) {
    out = detail::view(x, shape, start * s.inner);  // contiguous: a view, no copy
  } else {
    out = detail::make_tensor(shape, x.dtype(), "narrow");
    dispatch(x.dtype(), [&]<class T>() {
      for (std::size_t o = 0; o < s.outer; ++o) {
        std::copy_n(x.data<T>() + (o * s.extent + start) * s.inner, length * s.inner,
                    out.data<T>() + o * length * s.inner);
      }
    });
  }
  return record("narrow", out, {x}, [shape = x.shape(), a, start](const Tensor& g, NeedsGrad) {
    return std::vector<Tensor>{pad_along(g, shape, a, start)};
  });
}

// ---------------------------------------------------------------- index_select, gather and embedding

Tensor index_select(const Tensor& x, int axis, const Tensor& index) {
  detail::check_defined("index_select", x);
  std::size_t a = detail::normalise_axis("index_select", axis, x);
  detail::check_defined("index_select", index);
  if (index.rank() > 1) fail("index_select", "index {} must be 0-D or 1-D (input {})", index.describe(), x.describe());
  return select_rows(x, a, read_indices("index_select", index, x, a));
}

Tensor gather(const Tensor& x, int axis, const Tensor& index) {
  detail::check_defined("gather", x);
  std::size_t a = detail::normalise_axis("gather", axis, x);
  detail::check_defined("gather", index);
  bool fits = index.rank() == x.rank();
  for (std::size_t d = 0; fits && d < x.rank(); ++d) fits = d == a || index.dim(d) <= x.dim(d);
  if (!fits) {
    fail("gather", "index {} must have the rank of the input {} and no larger extent off axis {}", index.describe(),
         x.describe(), a);
  }
  return gather_at(x, GatherSite{x.shape(), index.shape(), a, read_indices("gather", index, x, a)});
}

Tensor embedding(const Tensor& indices, const Tensor& weight) {
  detail::check_defined("embedding", indices);
  detail::check_defined("embedding", weight);
  if (weight.rank() != 2) fail("embedding", "weight must be 2-D (num_embeddings, dim), got {}", weight.describe());
  if (indices.rank() >= kMaxRank) {
    fail("embedding", "indices {} would make an output of more than {} axes", indices.describe(), kMaxRank);
  }
  Shape shape = indices.shape();
  shape.push_back(weight.dim(1));
  return reshape(select_rows(weight, 0, read_indices("embedding", indices, weight, 0)), shape);
}

}  // namespace ag
