#include "autograd/blas.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <stdexcept>

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
  int threads = 1;
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

int to_int(std::size_t value) { return static_cast<int>(value); }

}  // namespace

void set_blas_threads(int threads) {
  OpenBlas& lib = openblas();
  lib.threads = threads < 1 ? 1 : threads;
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
  openblas().sgemm(kRowMajor, transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans, to_int(m), to_int(n),
                   to_int(k), alpha, a, to_int(lda), b, to_int(ldb), beta, c, to_int(ldc));
}

void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
          std::size_t ldc) {
  openblas().dgemm(kRowMajor, transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans, to_int(m), to_int(n),
                   to_int(k), alpha, a, to_int(lda), b, to_int(ldb), beta, c, to_int(ldc));
}

}  // namespace detail
}  // namespace ag
