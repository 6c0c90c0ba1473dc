// The LAPACK routines xtensor-blas calls (analysis/dense.cpp), taken from the OpenBLAS that
// autograd/blas.cpp loads at run time.
//
// Linking LAPACK would load OpenBLAS when the program starts, before blas.cpp has chosen its kernels
// (OPENBLAS_CORETYPE): every GEMM of the library could fall back to the slow generic ones. So the
// library defines the Fortran symbols itself, hidden (they bind xtensor-blas's calls inside
// libtapegrad and are never exported), each forwarding to OpenBLAS's own, looked up once after
// blas.cpp has loaded it.
#include <dlfcn.h>

#include <stdexcept>

#include <fmt/format.h>

#include "autograd/blas.hpp"

namespace {

/// OpenBLAS's symbol `name`, with OpenBLAS loaded and configured by autograd/blas.cpp first.
template <class Fn>
Fn lapack_symbol(const char* name) {
  ag::blas_threads();  // loads OpenBLAS, with its kernels chosen, if nothing has yet
  void* handle = dlopen(TAPEGRAD_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!handle) {
    throw std::runtime_error(fmt::format("LAPACK: OpenBLAS ({}) is not loaded: {}", TAPEGRAD_OPENBLAS_LIBRARY, dlerror()));
  }
  void* address = dlsym(handle, name);
  dlclose(handle);  // drops the reference RTLD_NOLOAD took; blas.cpp keeps its own
  if (!address) throw std::runtime_error(fmt::format("LAPACK: symbol {} not found in {}", name, TAPEGRAD_OPENBLAS_LIBRARY));
  return reinterpret_cast<Fn>(address);
}

}  // namespace

#define TAPEGRAD_LAPACK_HIDDEN extern "C" __attribute__((visibility("hidden")))

TAPEGRAD_LAPACK_HIDDEN void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
                                    double* w, double* work, const int* lwork, int* iwork, const int* liwork,
                                    int* info) {
  using Fn = void (*)(const char*, const char*, const int*, double*, const int*, double*, double*, const int*, int*,
                      const int*, int*);
  static const Fn fn = lapack_symbol<Fn>("dsyevd_");
  fn(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info);
}

TAPEGRAD_LAPACK_HIDDEN void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info) {
  using Fn = void (*)(const char*, const int*, double*, const int*, int*);
  static const Fn fn = lapack_symbol<Fn>("dpotrf_");
  fn(uplo, n, a, lda, info);
}

TAPEGRAD_LAPACK_HIDDEN void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda,
                                    double* b, const int* ldb, int* info) {
  using Fn = void (*)(const char*, const int*, const int*, const double*, const int*, double*, const int*, int*);
  static const Fn fn = lapack_symbol<Fn>("dpotrs_");
  fn(uplo, n, nrhs, a, lda, b, ldb, info);
}
