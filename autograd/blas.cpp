#include "autograd/blas.hpp"

#include <cblas.h>

namespace ag {

namespace {
// OpenBLAS starts with one thread per core; the project's default is one (see set_blas_threads).
int& configured_threads() {
  static int threads = [] {
    openblas_set_num_threads(1);
    return 1;
  }();
  return threads;
}
}  // namespace

void set_blas_threads(int threads) {
  configured_threads() = threads < 1 ? 1 : threads;
  openblas_set_num_threads(configured_threads());
}

int blas_threads() { return configured_threads(); }

namespace detail {

void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc) {
  configured_threads();
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
          std::size_t ldc) {
  configured_threads();
  cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace detail
}  // namespace ag
