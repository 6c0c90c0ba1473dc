// Thin wrappers over OpenBLAS. The only translation unit that sees <cblas.h> is blas.cpp.
#pragma once

#include <cstddef>

namespace ag {

/// Threads OpenBLAS may use (default: 1; the workloads here are too small for two to pay off).
void set_blas_threads(int threads);
int blas_threads();

namespace detail {
/// C[M x N] = alpha * op(A) op(B) + beta * C, row-major, op = transpose when the flag is set.
/// lda/ldb/ldc are the row strides of A, B and C as stored.
void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc);
void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
          std::size_t ldc);
}  // namespace detail

}  // namespace ag
