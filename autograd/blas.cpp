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

/// True if the few-row kernel took the product (no transposes, at most kSmallRows rows, a wide enough B).
template <class T>
bool try_few_rows(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                  std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t width = xsimd::batch<T>::size;
  // One row is a matrix-vector product, which OpenBLAS already streams well.
  if (transpose_a || transpose_b || m < 2 || m > kSmallRows || n < 4 * width || k == 0) return false;
  static constexpr auto table = few_rows_table<T>(std::make_index_sequence<kSmallRows>{});
  table[m - 1](n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return true;
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
