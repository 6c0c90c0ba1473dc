// OpenBLAS, loaded and configured by the library itself.
//
// OpenBLAS picks its kernels once, when it is loaded. On virtual machines its CPU detection can fail
// and fall back to decades-old SSE3 kernels ("Prescott"), about 3x slower on these workloads. So the
// library loads OpenBLAS on first use (from the path CMake found with BLA_VENDOR=OpenBLAS) after
// choosing OPENBLAS_CORETYPE from the CPU's own feature flags (SkylakeX for AVX-512, Haswell for AVX2),
// unless the user already set it. The only translation unit that calls BLAS is blas.cpp.
#pragma once

#include <cstddef>
#include <string>

namespace ag {

/// Threads OpenBLAS may use (default: 1). With more than one, each product decides: one of at least 16 MFLOP
/// (2 m n k) runs on `threads` threads, a smaller one on the calling thread alone (the threads' hand-off costs more
/// than it saves there), so that more threads never slow a small-batch run down. Set it, and train, from one thread.
void set_blas_threads(int threads);
int blas_threads();
/// "OpenBLAS 0.3.21 ... SkylakeX, 1 thread(s)": what is running, for logs and benchmarks.
std::string blas_info();

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
