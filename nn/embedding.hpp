// A lookup table of learnt vectors: indices (any shape of rank <= 3) -> indices.shape + (dim).
#pragma once

#include <string>

#include "autograd/tensor.hpp"
#include "nn/module.hpp"

namespace nn {

/// embedding(indices, weight) with weight (num_embeddings, dim) registered as "weight", initialised N(0, 1)
/// as PyTorch's. Indices are a tensor of whole numbers in [0, num_embeddings) (see ag::embedding).
class Embedding : public Module {
 public:
  Embedding(std::size_t num_embeddings, std::size_t dim, ag::Generator* gen = nullptr,
            ag::DType dtype = ag::DType::f32);
  ag::Tensor forward(const ag::Tensor& indices) override;
  std::string type_name() const override;
  /// Handle to the registered weight (shared storage).
  ag::Tensor weight() const { return weight_; }

 private:
  std::size_t num_embeddings_, dim_;
  ag::Tensor weight_;
};

}  // namespace nn
