#include "autograd/blas.hpp"

#include <dlfcn.h>

#include <array>
#include <climits>
#include <utility>
#include <cstdlib>
#include <stdexcept>

#include <xsimd/xsimd.hpp>

#include <fmt/format.h>

namespace ag {

namespace {

// The CBLAS constants (cblas.h is not included: its declarations would clash with our own pointers).
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using DgemmFn = void (*)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*,
                         int);

struct OpenBlas {
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  void (*set_num_threads)(int) = nullptr;
  char* (*get_corename)() = nullptr;
  char* (*get_config)() = nullptr;
  int threads = 1;  // what set_blas_threads asked for
  int active = 1;   // what OpenBLAS is set to now (use_threads_for)
};

const char* core_type_for_this_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}

template <class Fn>
Fn symbol(void* handle, const char* name) {
  void* address = dlsym(handle, name);
  if (!address) throw std::runtime_error(fmt::format("OpenBLAS ({}): symbol {} not found", TAPEGRAD_OPENBLAS_LIBRARY, name));
  return reinterpret_cast<Fn>(address);
}

OpenBlas load() {
  if (const char* core = core_type_for_this_cpu()) setenv("OPENBLAS_CORETYPE", core, /*overwrite=*/0);
  // One thread unless asked: OpenBLAS's idle threads spin and compete with the caller's.
  setenv("OPENBLAS_NUM_THREADS", "1", /*overwrite=*/0);
  void* handle = dlopen(TAPEGRAD_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    throw std::runtime_error(fmt::format("cannot load OpenBLAS from {}: {}", TAPEGRAD_OPENBLAS_LIBRARY, dlerror()));
  }
  OpenBlas lib;
  lib.sgemm = symbol<SgemmFn>(handle, "cblas_sgemm");
  lib.dgemm = symbol<DgemmFn>(handle, "cblas_dgemm");
  lib.set_num_threads = symbol<void (*)(int)>(handle, "openblas_set_num_threads");
  lib.get_corename = symbol<char* (*)()>(handle, "openblas_get_corename");
  lib.get_config = symbol<char* (*)()>(handle, "openblas_get_config");
  lib.set_num_threads(1);
  return lib;
}

OpenBlas& openblas() {
  static OpenBlas lib = load();
  return lib;
}

/// OpenBLAS's sizes are 32-bit ints: a larger one is refused rather than truncated into a wrong product.
int to_int(std::size_t value) {
  if (value > static_cast<std::size_t>(INT_MAX)) {
    throw std::invalid_argument(
        fmt::format("gemm: extent or stride {} exceeds OpenBLAS's 32-bit limit {}", value, INT_MAX));
  }
  return static_cast<int>(value);
}

// ---------------------------------------------------------------- few-row products
// For C = alpha A B + beta C with A of at most kSmallRows rows (online and small mini-batches), OpenBLAS packs
// all of B on every call, which costs more than the product. This kernel streams B once instead: each
// k-th row of B is loaded in SIMD batches and multiplied into kRows x (batches) accumulators that stay in
// registers, one template instance per row count.

constexpr std::size_t kSmallRows = 16;

/// Columns [column, column + kBatches * width) of C; the first `skip` of them are left untouched (the
/// overlapping last block of a row whose width is not a multiple of the batch).
template <class T, std::size_t kRows, std::size_t kBatches>
void few_rows_block(std::size_t k, T alpha, const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c,
                    std::size_t ldc, std::size_t column, std::size_t skip = 0) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t width = Batch::size;
  std::array<std::array<Batch, kBatches>, kRows> acc;
  for (auto& row : acc) row.fill(Batch(T(0)));
  for (std::size_t p = 0; p < k; ++p) {
    std::array<Batch, kBatches> bp;
    for (std::size_t j = 0; j < kBatches; ++j) bp[j] = Batch::load_unaligned(b + p * ldb + column + j * width);
    for (std::size_t i = 0; i < kRows; ++i) {
      Batch ai(a[i * lda + p]);
      for (std::size_t j = 0; j < kBatches; ++j) acc[i][j] = xsimd::fma(ai, bp[j], acc[i][j]);
    }
  }
  for (std::size_t i = 0; i < kRows; ++i) {
    for (std::size_t j = 0; j < kBatches; ++j) {
      T* out = c + i * ldc + column + j * width;
      Batch result = Batch(alpha) * acc[i][j];
      if (beta != T(0)) result = xsimd::fma(Batch(beta), Batch::load_unaligned(out), result);
      if (skip == 0) {
        result.store_unaligned(out);
      } else {
        alignas(64) std::array<T, width> lanes;
        result.store_aligned(lanes.data());
        for (std::size_t lane = skip; lane < width; ++lane) out[lane] = lanes[lane];
      }
    }
  }
}

template <class T, std::size_t kRows>
void few_rows(std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta,
              T* c, std::size_t ldc) {
  constexpr std::size_t width = xsimd::batch<T>::size;
  // Two batches of columns per pass while the accumulators fit in the 32 vector registers.
  constexpr std::size_t batches = kRows <= 8 ? 2 : 1;
  std::size_t column = 0;
  for (; column + batches * width <= n; column += batches * width) {
    few_rows_block<T, kRows, batches>(k, alpha, a, lda, b, ldb, beta, c, ldc, column);
  }
  for (; column + width <= n; column += width) few_rows_block<T, kRows, 1>(k, alpha, a, lda, b, ldb, beta, c, ldc, column);
  if (column < n) {
    // The last block overlaps the one before it (n >= width); only its new columns are written.
    std::size_t start = n - width;
    few_rows_block<T, kRows, 1>(k, alpha, a, lda, b, ldb, beta, c, ldc, start, column - start);
  }
}

template <class T, std::size_t... kRows>
constexpr auto few_rows_table(std::index_sequence<kRows...>) {
  using Fn = void (*)(std::size_t, std::size_t, T, const T*, std::size_t, const T*, std::size_t, T, T*, std::size_t);
  return std::array<Fn, sizeof...(kRows)>{few_rows<T, kRows + 1>...};
}

// ---------------------------------------------------------------- rank-one weight gradients
// dW = x^T dz at batch 1: C[m x n] = alpha a^T b + beta C with k = 1. OpenBLAS packs both operands of what
// is an outer product; here each row of C is written once, in one pass (W3's backward: 46 us a step through
// sgemm, 21 us with this and the kernel below). At batch 10 OpenBLAS is faster than a register-blocked sum
// of outer products (W4's backward: 98 us against 124 us), so only k = 1 comes here.

template <class T>
void rank_one(std::size_t m, std::size_t n, T alpha, const T* a, const T* b, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    T* __restrict ci = c + i * ldc;
    const T* __restrict bi = b;
    const T s = alpha * a[i];
    // BLAS's convention: beta = 0 overwrites C (a NaN there does not survive).
    if (beta == T(0)) {
      for (std::size_t j = 0; j < n; ++j) ci[j] = s * bi[j];
    } else {
      for (std::size_t j = 0; j < n; ++j) ci[j] = beta * ci[j] + s * bi[j];
    }
  }
}

// ---------------------------------------------------------------- one row times B transposed
// dX = dZ W^T at batch 1: c[1 x n] = alpha a B^T + beta c with B stored n x k. Each row of B (a row of W) is
// read once and dotted with a, which stays in L1; OpenBLAS's sgemm packs B first. (At batch 10 OpenBLAS is
// as fast: measured, W4's backward took 97 us a step through sgemm and 103 us with a ten-row version of this.)

template <class T>
void row_times_transposed(std::size_t n, std::size_t k, T alpha, const T* a, const T* b, std::size_t ldb, T beta, T* c) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t width = Batch::size;
  const std::size_t vector_end = k - k % width;
  for (std::size_t j = 0; j < n; ++j) {
    const T* bj = b + j * ldb;
    // Two accumulators: the FMA's latency, not the loads, would bound one.
    Batch acc0(T(0)), acc1(T(0));
    std::size_t p = 0;
    for (; p + 2 * width <= vector_end; p += 2 * width) {
      acc0 = xsimd::fma(Batch::load_unaligned(a + p), Batch::load_unaligned(bj + p), acc0);
      acc1 = xsimd::fma(Batch::load_unaligned(a + p + width), Batch::load_unaligned(bj + p + width), acc1);
    }
    if (p < vector_end) acc0 = xsimd::fma(Batch::load_unaligned(a + p), Batch::load_unaligned(bj + p), acc0);
    T sum = xsimd::hadd(acc0 + acc1);
    for (p = vector_end; p < k; ++p) sum += a[p] * bj[p];
    // BLAS's convention: beta = 0 overwrites C.
    c[j] = beta == T(0) ? alpha * sum : alpha * sum + beta * c[j];
  }
}

/// True if one of the small-side kernels took the product: at most kSmallRows rows of A, one row of A times
/// B transposed, or an outer product (A transposed, k = 1). One row times B is a vector-matrix product,
/// which OpenBLAS 0.3.21's sgemm does not hand to its gemv: it packs all of B (W3's forward: 63 us a step
/// through sgemm, 21 us in few_rows).
template <class T>
bool try_few_rows(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                  std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t width = xsimd::batch<T>::size;
  if (m == 0 || n == 0 || k == 0) return false;
  if (!transpose_a && !transpose_b && m <= kSmallRows && n >= 4 * width) {
    static constexpr auto table = few_rows_table<T>(std::make_index_sequence<kSmallRows>{});
    table[m - 1](n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return true;
  }
  if (!transpose_a && transpose_b && m == 1 && k >= 4 * width) {
    row_times_transposed(n, k, alpha, a, b, ldb, beta, c);
    return true;
  }
  if (transpose_a && !transpose_b && k == 1) {
    rank_one(m, n, alpha, a, b, beta, c, ldc);
    return true;
  }
  return false;
}

/// Below this many floating-point operations (2 m n k) a product runs on the calling thread alone, whatever
/// set_blas_threads asked: handing a small product to OpenBLAS's threads costs more than it saves (measured on
/// 784-300-100-100-10 at batch 10, whose largest product is 4.7 MFLOP: an epoch took 1.17 s on one thread and
/// 2.25-2.48 s on two, every call paying the threads' hand-off).
constexpr double kThreadedFlops = 16e6;

/// OpenBLAS set to the threads this product deserves (a call only when that changes).
void use_threads_for(std::size_t m, std::size_t n, std::size_t k) {
  OpenBlas& lib = openblas();
  if (lib.threads == 1) return;
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int wanted = flops >= kThreadedFlops ? lib.threads : 1;
  if (wanted == lib.active) return;
  lib.set_num_threads(wanted);
  lib.active = wanted;
}

}  // namespace

void set_blas_threads(int threads) {
  OpenBlas& lib = openblas();
  lib.threads = threads < 1 ? 1 : threads;
  lib.active = lib.threads;
  lib.set_num_threads(lib.threads);
}

int blas_threads() { return openblas().threads; }

std::string blas_info() {
  OpenBlas& lib = openblas();
  return fmt::format("{} [{}], {} thread(s)", lib.get_config(), lib.get_corename(), lib.threads);
}

namespace detail {

void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc) {
  if (try_few_rows(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  use_threads_for(m, n, k);
  openblas().sgemm(kRowMajor, transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans, to_int(m), to_int(n),
                   to_int(k), alpha, a, to_int(lda), b, to_int(ldb), beta, c, to_int(ldc));
}

void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
          std::size_t ldc) {
  if (try_few_rows(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  use_threads_for(m, n, k);
  openblas().dgemm(kRowMajor, transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans, to_int(m), to_int(n),
                   to_int(k), alpha, a, to_int(lda), b, to_int(ldb), beta, c, to_int(ldc));
}

}  // namespace detail
}  // namespace ag
