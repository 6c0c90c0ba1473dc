#include "nn/embedding.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "nn/init.hpp"

namespace nn {

Embedding::Embedding(std::size_t num_embeddings, std::size_t dim, ag::Generator* gen, ag::DType dtype)
    : num_embeddings_(num_embeddings), dim_(dim) {
  if (num_embeddings == 0 || dim == 0) {
    throw std::invalid_argument(fmt::format("Embedding: sizes must be positive ({} x {})", num_embeddings, dim));
  }
  weight_ = ag::Tensor::empty(ag::Shape{num_embeddings, dim}, dtype);
  normal_(weight_, gen ? *gen : default_generator(), 0.0, 1.0);
  register_parameter("weight", weight_);
}

ag::Tensor Embedding::forward(const ag::Tensor& indices) { return ag::embedding(indices, weight_); }

std::string Embedding::type_name() const { return fmt::format("Embedding({}, {})", num_embeddings_, dim_); }

}  // namespace nn
