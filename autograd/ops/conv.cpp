// conv2d (NCHW cross-correlation) and the two ops its backward is written with.
//
// Shapes: x (N, Ci, H, W), w (Co, Ci, kH, kW), y (N, Co, Ho, Wo), K = Ci kH kW taps per output.
// Two kernels, raw pointers, scratch reused across calls (thread-local), chosen by use_direct:
//   direct  (stride 1, an image's planes fit in L2; both W2 layers): the zero-padded image is read as one
//           flat row of width Wp = W + 2 pad, so tap (c, p, q) is a constant offset; xsimd vectors of
//           outputs, register-blocked over 8 output channels (weights broadcast from memory). Columns
//           j >= Wo of each flat row are computed and dropped. dx is the same kernel run on dy with the
//           flipped kernel; dw blocks 8 channels x 3 taps of vector partial sums.
//   im2col  (stride > 1, padding >= kernel, large images): per image, cols[K x P] for a chunk of P output
//           pixels, then W[Co x K] . cols (BLAS, transpose flags, beta = 1 to accumulate dw), chunks
//           sized to stay in cache; dx through Wᵀ . dy into cols, then col2im (scatter-add).
// Strides or paddings that differ per axis, dilation and groups take a third, general path (at the end of
// the file): a dilated im2col per group + GEMM, with backward ops of its own.
// All three ops are bilinear; each one's adjoints are the other two (G = the upstream gradient):
//   y  = conv2d(x, w)             dx  = input_grad(G, w)      dw  = weight_grad(x, G)
//   dx = input_grad(dy, w)        ddy = conv2d(G, w)          dw  = weight_grad(G, dy)
//   dw = weight_grad(x, dy)       dx  = input_grad(dy, G)     ddy = conv2d(x, G)
// conv2d_max_pool2d runs the direct kernel with 2x2 max pooling (and relu) as its epilogue
// (autograd/detail/pool.hpp), each image's output pooled from the staging rows; its first-order backward
// unpools each image's gradient into the weight gradient's staging planes and the input gradient's padded
// planes. While a graph is being built (and for the bias alone), its backward is relu's and max_pool2d's
// ops, then conv2d's.
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "autograd/blas.hpp"
#include "autograd/detail/conv.hpp"
#include "autograd/detail/pool.hpp"
#include "autograd/detail/relu.hpp"
#include "autograd/detail/tensor_impl.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/ops.hpp"

namespace ag {

using detail::dispatch;
using detail::fail;

namespace {

// ---------------------------------------------------------------- geometry and checks

struct ConvGeometry {
  std::size_t n, ci, h, w;  // input
  std::size_t co, kh, kw;   // kernel
  std::size_t stride, pad;
  std::size_t ho, wo;  // output
  std::size_t taps() const { return ci * kh * kw; }
  std::size_t in_plane() const { return h * w; }
  std::size_t out_plane() const { return ho * wo; }
  Shape x_shape() const { return Shape{n, ci, h, w}; }
  Shape w_shape() const { return Shape{co, ci, kh, kw}; }
  Shape y_shape() const { return Shape{n, co, ho, wo}; }
};

/// Padding and stride below 2^62 keep every index formula of the kernels (i s + p - pad, pad + s, ...) inside
/// 64 bits for any input that fits in memory; beyond, no output could be computed anyway.
constexpr std::size_t kMaxPadOrStride = std::size_t{1} << 62;

/// Validates an (input shape, weight shape) pair and derives the output extents; errors name `op` and both shapes.
ConvGeometry make_geometry(const char* op, const Shape& x, const Shape& w, std::size_t stride, std::size_t pad) {
  if (x.rank() != 4) fail(op, "input must be 4-D (N, C, H, W), got {}", x.str());
  if (w.rank() != 4) fail(op, "weight must be 4-D (C_out, C_in, kH, kW), got {}", w.str());
  if (x[1] != w[1]) {
    fail(op, "input {} has {} channels but weight {} expects {}", x.str(), x[1], w.str(), w[1]);
  }
  if (stride == 0) fail(op, "stride must be positive (input {}, weight {})", x.str(), w.str());
  if (pad >= kMaxPadOrStride || stride >= kMaxPadOrStride) {
    fail(op, "padding {} and stride {} must be below 2^62 (input {}, weight {})", pad, stride, x.str(), w.str());
  }
  if (w[2] == 0 || w[3] == 0) fail(op, "empty kernel in weight {}", w.str());
  std::size_t hp = x[2] + 2 * pad, wp = x[3] + 2 * pad;
  if (w[2] > hp || w[3] > wp) {
    fail(op, "kernel {}x{} of weight {} is larger than the padded input {}x{} (input {}, padding {})", w[2], w[3],
         w.str(), hp, wp, x.str(), pad);
  }
  ConvGeometry g{x[0], x[1], x[2], x[3], w[0], w[2], w[3], stride, pad, 0, 0};
  g.ho = (hp - g.kh) / stride + 1;
  g.wo = (wp - g.kw) / stride + 1;
  if (!g.y_shape().checked_numel()) {
    fail(op, "output {} of input {}, weight {}, stride {}, padding {} has more elements than 64 bits count",
         g.y_shape().str(), x.str(), w.str(), stride, pad);
  }
  return g;
}

/// The direct kernel needs stride 1 and padding < kernel (its input gradient is a correlation padded by
/// k - 1 - pad). It re-reads an image's padded planes once per 8 output channels, so it is used while they
/// and the staged output planes stay in L2; beyond that, im2col + GEMM, whose chunks are cache-sized.
/// On the W2 shapes it is ~3x faster than im2col + GEMM for 8 -> 8 channels too (see bench/conv_kernels.cpp).
bool use_direct(const ConvGeometry& g, std::size_t element_size) {
  constexpr std::size_t l2_budget = std::size_t(1) << 20;
  if (g.stride != 1 || g.pad >= g.kh || g.pad >= g.kw) return false;
  std::optional<std::size_t> staged = Shape{g.ci + g.co, g.h + 2 * g.pad, g.w + 2 * g.pad}.checked_numel();
  return staged && *staged <= l2_budget / element_size;
}

// ---------------------------------------------------------------- scratch

/// Scratch memory on cache-line boundaries: the direct kernels' loads at whole-vector offsets then never
/// straddle two lines (512-bit vectors are a line each).
template <class T>
using Aligned = std::vector<T, xsimd::aligned_allocator<T, 64>>;

template <class T>
struct Scratch {
  Aligned<T> padded;   // zero-padded input planes
  Aligned<T> staged;   // direct: flat output rows; weight grad: padded dy planes
  Aligned<T> cols;     // im2col columns; the fused pooling backward's masked gradient
  Aligned<T> kernel;   // flipped weights; vector accumulators of the weight gradient
  std::vector<std::size_t> offsets;
};

template <class T>
Scratch<T>& scratch() {
  thread_local Scratch<T> instance;
  return instance;
}

/// The buffer's data, grown to `count` elements; an allocation failure names the scratch and its size.
template <class T, class Allocator>
T* sized(std::vector<T, Allocator>& buffer, std::size_t count) {
  if (buffer.size() >= count) return buffer.data();
  try {
    buffer.resize(count);
  } catch (const std::exception&) {  // std::bad_alloc, or std::length_error beyond max_size()
    throw AllocationError(fmt::format("conv2d: cannot allocate a scratch buffer of {} elements of {} bytes: out of memory",
                                      count, sizeof(T)));
  }
  return buffer.data();
}

// ---------------------------------------------------------------- direct kernel (stride 1)

/// A stride-1 correlation seen on zero-padded planes of width wp: output (i, j) sits at flat position
/// t = i wp + j and tap (c, p, q) reads padded position t + c plane + p wp + q.
struct FlatLayout {
  std::size_t hp, wp;    // padded input extents
  std::size_t ho, wo;    // output extents
  std::size_t length;    // ho * wp, rounded up to whole vectors
  std::size_t plane;     // stride between padded planes (with slack for the rounded tail)

  template <class T>
  static FlatLayout make(std::size_t h, std::size_t w, std::size_t kh, std::size_t kw, std::size_t ph,
                         std::size_t pw) {
    constexpr std::size_t v = xsimd::batch<T>::size;
    FlatLayout f;
    f.hp = h + 2 * ph;
    f.wp = w + 2 * pw;
    f.ho = f.hp - kh + 1;
    f.wo = f.wp - kw + 1;
    f.length = (f.ho * f.wp + v - 1) / v * v;
    // Largest read: (length - 1) + (kh - 1) wp + kw - 1 < hp wp + v + kw.
    f.plane = (f.hp * f.wp + v + kw + v - 1) / v * v;
    return f;
  }
};

/// Copies r bytes, 0 < r < 64, as two fixed-size copies that overlap (each one vector move): exact, with no
/// masked store (slow on some cores) and nothing read or written outside the r bytes.
inline void copy_tail(const char* src, std::size_t r, char* dst) {
  auto two = [&]<std::size_t k>() {
    std::memcpy(dst, src, k);
    std::memcpy(dst + r - k, src + r - k, k);
  };
  if (r >= 32) return two.template operator()<32>();
  if (r >= 16) return two.template operator()<16>();
  if (r >= 8) return two.template operator()<8>();
  if (r >= 4) return two.template operator()<4>();
  for (std::size_t b = 0; b < r; ++b) dst[b] = src[b];
}

/// Copies exactly n elements: whole vectors, then the tail (rows here are a few vectors long: 14 or 28
/// floats on MNIST, so the tail is most of the work).
template <class T>
inline void copy_row(const T* __restrict src, std::size_t n, T* __restrict dst) {
  using B = xsimd::batch<T>;
  constexpr std::size_t v = B::size;
  std::size_t j = 0;
  for (; j + v <= n; j += v) B::load_unaligned(src + j).store_unaligned(dst + j);
  if (j < n) {
    copy_tail(reinterpret_cast<const char*>(src + j), (n - j) * sizeof(T), reinterpret_cast<char*>(dst + j));
  }
}

/// Copies n elements in whole vectors, the last one running up to v - 1 elements past src + n and dst + n,
/// unless that would pass `dst_end` (then exactly). For rows written in increasing order into one tensor,
/// where the spill lands on the next row before it is written; `src` must have the slack readable. Faster
/// than an exact tail when the destination is not in cache (an output of megabytes).
template <class T>
inline void copy_row_spill(const T* src, std::size_t n, T* dst, const T* dst_end) {
  using B = xsimd::batch<T>;
  constexpr std::size_t v = B::size;
  if ((n + v - 1) / v * v > static_cast<std::size_t>(dst_end - dst)) return copy_row(src, n, dst);
  for (std::size_t j = 0; j < n; j += v) B::load_unaligned(src + j).store_unaligned(dst + j);
}

/// Copies `planes` planes of h x w into the interiors of padded planes (ph rows, pw columns of border each
/// side). The borders and tails are zeroed once per call by the caller and never written here, so they stay
/// zero from image to image.
template <class T>
void copy_interiors(const T* src, std::size_t planes, std::size_t h, std::size_t w, std::size_t ph, std::size_t pw,
                    const FlatLayout& f, T* dst) {
  for (std::size_t c = 0; c < planes; ++c) {
    T* plane = dst + c * f.plane + ph * f.wp + pw;
    for (std::size_t i = 0; i < h; ++i) copy_row(src + (c * h + i) * w, w, plane + i * f.wp);
  }
}

/// out[b][t] = bias[b] + sum_tap w[b][tap] in[t + offsets[tap]] for OB output channels, t in [0, length).
template <class T, int OB>
void direct_block(const T* __restrict in, const std::size_t* offsets, std::size_t taps, const T* w, const T* bias,
                  std::size_t length, T* __restrict out) {
  using B = xsimd::batch<T>;
  constexpr std::size_t v = B::size;
  for (std::size_t t = 0; t < length; t += v) {
    B acc[OB];
    for (int b = 0; b < OB; ++b) acc[b] = B(bias ? bias[b] : T(0));
    for (std::size_t tap = 0; tap < taps; ++tap) {
      B xv = B::load_unaligned(in + t + offsets[tap]);
      for (int b = 0; b < OB; ++b) acc[b] = xsimd::fma(B(w[b * taps + tap]), xv, acc[b]);
    }
    for (int b = 0; b < OB; ++b) acc[b].store_unaligned(out + b * length + t);
  }
}

/// One image: the correlation of the padded planes `in` with w (co, taps) + bias, up to 8 output channels at
/// a time into the flat rows of `staged` (8 length + v elements), each block handed to emit(o, count):
/// channels [o, o + count) sit at staged + b length, rows f.wp apart.
template <class T, class Emit>
void direct_image(const T* in, const FlatLayout& f, const std::size_t* offsets, std::size_t taps, const T* w,
                  std::size_t co, const T* bias, T* staged, Emit emit) {
  std::size_t o = 0;
  auto run = [&]<int OB>() {
    direct_block<T, OB>(in, offsets, taps, w + o * taps, bias ? bias + o : nullptr, f.length, staged);
    emit(o, std::size_t{OB});
    o += OB;
  };
  while (co - o >= 8) run.template operator()<8>();
  while (co - o >= 4) run.template operator()<4>();
  while (co - o >= 1) run.template operator()<1>();
}

template <class T>
std::size_t* tap_offsets(std::size_t channels, std::size_t kh, std::size_t kw, const FlatLayout& f) {
  std::size_t* off = sized(scratch<T>().offsets, channels * kh * kw);
  for (std::size_t c = 0; c < channels; ++c) {
    for (std::size_t p = 0; p < kh; ++p) {
      for (std::size_t q = 0; q < kw; ++q) off[(c * kh + p) * kw + q] = c * f.plane + p * f.wp + q;
    }
  }
  return off;
}

/// Stride-1 correlation of n images of `channels` planes h x w with w (co, channels, kh, kw), padding
/// (ph, pw), image by image: load(img, padded, f) writes image img into the interiors of the padded planes
/// (f.plane apart, rows f.wp apart, the interior at row ph, column pw; the borders are zero and must stay
/// so), and emit(img, o, count, staged, f) takes each block of output channels as direct_image hands it over.
template <class T, class Load, class Emit>
void direct_correlate_with(std::size_t n, std::size_t channels, std::size_t h, std::size_t w, const T* weight,
                           std::size_t co, std::size_t kh, std::size_t kw, std::size_t ph, std::size_t pw,
                           const T* bias, Load load, Emit emit) {
  Scratch<T>& s = scratch<T>();
  FlatLayout f = FlatLayout::make<T>(h, w, kh, kw, ph, pw);
  std::size_t taps = channels * kh * kw;
  const std::size_t* offsets = tap_offsets<T>(channels, kh, kw, f);
  T* padded = sized(s.padded, channels * f.plane);
  T* staged = sized(s.staged, 8 * f.length + xsimd::batch<T>::size);
  std::fill_n(padded, channels * f.plane, T(0));
  for (std::size_t img = 0; img < n; ++img) {
    load(img, padded, f);
    direct_image(padded, f, offsets, taps, weight, co, bias, staged,
                 [&](std::size_t o, std::size_t count) { emit(img, o, count, staged, f); });
  }
}

/// direct_correlate_with's loader for images x (n, channels, h, w): their rows copied into the interiors.
template <class T>
auto interiors_of(const T* x, std::size_t channels, std::size_t h, std::size_t w, std::size_t ph, std::size_t pw) {
  return [=](std::size_t img, T* padded, const FlatLayout& f) {
    copy_interiors(x + img * channels * h * w, channels, h, w, ph, pw, f, padded);
  };
}

/// direct_correlate_with into y (n, co, ho, wo). The staged rows are read up to v - 1 past their end (the
/// staging buffer has that slack); y's rows are written whole vectors at a time up to its end.
template <class T, class Load>
void direct_correlate_into(std::size_t n, std::size_t channels, std::size_t h, std::size_t w, const T* weight,
                           std::size_t co, std::size_t kh, std::size_t kw, std::size_t ph, std::size_t pw,
                           const T* bias, Load load, T* y) {
  FlatLayout f = FlatLayout::make<T>(h, w, kh, kw, ph, pw);
  const T* y_end = y + n * co * f.ho * f.wo;
  direct_correlate_with(n, channels, h, w, weight, co, kh, kw, ph, pw, bias, load,
                        [&](std::size_t img, std::size_t o, std::size_t count, const T* staged, const FlatLayout& fl) {
                          for (std::size_t b = 0; b < count; ++b) {
                            const T* src = staged + b * fl.length;
                            T* dst = y + (img * co + o + b) * fl.ho * fl.wo;
                            for (std::size_t i = 0; i < fl.ho; ++i) {
                              copy_row_spill(src + i * fl.wp, fl.wo, dst + i * fl.wo, y_end);
                            }
                          }
                        });
}

template <class T>
void direct_correlate(const T* x, std::size_t n, std::size_t channels, std::size_t h, std::size_t w,
                      const T* weight, std::size_t co, std::size_t kh, std::size_t kw, std::size_t ph, std::size_t pw,
                      const T* bias, T* y) {
  direct_correlate_into(n, channels, h, w, weight, co, kh, kw, ph, pw, bias, interiors_of(x, channels, h, w, ph, pw),
                        y);
}

/// acc[b][k] += sum_t dy[b][t] in[t + offsets[k]] for OB channels and TB taps, as vector partial sums.
template <class T, int OB, int TB>
void direct_weight_block(const T* __restrict in, const std::size_t* offsets, const T* __restrict dy,
                         std::size_t length, T* acc, std::size_t taps) {
  using B = xsimd::batch<T>;
  constexpr std::size_t v = B::size;
  B sum[OB][TB];
  for (int b = 0; b < OB; ++b) {
    for (int k = 0; k < TB; ++k) sum[b][k] = B(T(0));
  }
  for (std::size_t t = 0; t < length; t += v) {
    B xv[TB];
    for (int k = 0; k < TB; ++k) xv[k] = B::load_unaligned(in + t + offsets[k]);
    for (int b = 0; b < OB; ++b) {
      B dv = B::load_unaligned(dy + b * length + t);
      for (int k = 0; k < TB; ++k) sum[b][k] = xsimd::fma(dv, xv[k], sum[b][k]);
    }
  }
  for (int b = 0; b < OB; ++b) {
    for (int k = 0; k < TB; ++k) {
      T* slot = acc + (b * taps + k) * v;
      (B::load_unaligned(slot) + sum[b][k]).store_unaligned(slot);
    }
  }
}

/// dw (co, ci, kh, kw) = sum over images of the correlation of x with dy, stride 1; and, if db is given,
/// db (co) = sum of dy over N, Ho, Wo, taken from the staged planes while they are in cache. dy comes image
/// by image from stage(img, staged, f), which writes its co planes (f.length apart) in the flat layout:
/// rows of width f.wp, only columns j < wo of rows i < ho (the rest stays zero).
template <class T, class Stage>
void direct_weight_grad_with(const T* x, const ConvGeometry& g, T* dw, T* db, Stage stage) {
  using B = xsimd::batch<T>;
  Scratch<T>& s = scratch<T>();
  FlatLayout f = FlatLayout::make<T>(g.h, g.w, g.kh, g.kw, g.pad, g.pad);
  std::size_t taps = g.taps();
  const std::size_t* offsets = tap_offsets<T>(g.ci, g.kh, g.kw, f);
  T* padded = sized(s.padded, g.ci * f.plane);
  constexpr std::size_t v = B::size;
  T* staged = sized(s.staged, g.co * f.length + v);
  // Vector partial sums for every (o, tap), reduced once at the end.
  T* acc = sized(s.kernel, g.co * taps * v);
  std::fill_n(acc, g.co * taps * v, T(0));
  if (db) std::fill_n(db, g.co, T(0));
  // Borders, columns j >= wo of the staged rows and the tails are zeroed here once and never written after.
  std::fill_n(padded, g.ci * f.plane, T(0));
  std::fill_n(staged, g.co * f.length + v, T(0));
  for (std::size_t img = 0; img < g.n; ++img) {
    copy_interiors(x + img * g.ci * g.in_plane(), g.ci, g.h, g.w, g.pad, g.pad, f, padded);
    stage(img, staged, f);
    for (std::size_t o = 0; o < g.co && db; ++o) {
      const T* plane = staged + o * f.length;
      B total(T(0));
      for (std::size_t t = 0; t < f.length; t += v) total += B::load_unaligned(plane + t);
      db[o] += xsimd::hadd(total);
    }
    std::size_t o = 0;
    auto channels = [&]<int OB>() {
      std::size_t k = 0;
      for (; k + 3 <= taps; k += 3) {
        direct_weight_block<T, OB, 3>(padded, offsets + k, staged + o * f.length, f.length, acc + (o * taps + k) * v,
                                      taps);
      }
      for (; k < taps; ++k) {
        direct_weight_block<T, OB, 1>(padded, offsets + k, staged + o * f.length, f.length, acc + (o * taps + k) * v,
                                      taps);
      }
      o += OB;
    };
    while (g.co - o >= 8) channels.template operator()<8>();
    while (g.co - o >= 4) channels.template operator()<4>();
    while (g.co - o >= 1) channels.template operator()<1>();
  }
  for (std::size_t i = 0; i < g.co * taps; ++i) dw[i] = xsimd::hadd(B::load_unaligned(acc + i * v));
}

/// direct_weight_grad_with for dy (n, co, ho, wo), its rows copied into the flat layout.
template <class T>
void direct_weight_grad(const T* x, const T* dy, const ConvGeometry& g, T* dw, T* db) {
  direct_weight_grad_with(x, g, dw, db, [&](std::size_t img, T* staged, const FlatLayout& f) {
    const T* dy_img = dy + img * g.co * g.out_plane();
    for (std::size_t o = 0; o < g.co; ++o) {
      for (std::size_t i = 0; i < g.ho; ++i) {
        copy_row(dy_img + (o * g.ho + i) * g.wo, g.wo, staged + o * f.length + i * f.wp);
      }
    }
  });
}

/// dx = full convolution of dy with the kernel: the stride-1 correlation of dy, padded by k - 1 - pad, with
/// the kernel flipped 180 degrees and its channel axes swapped; dy's images come from load (as
/// direct_correlate_with's).
template <class T, class Load>
void direct_input_grad_with(const T* weight, const ConvGeometry& g, T* dx, Load load) {
  T* flipped = sized(scratch<T>().kernel, g.co * g.taps());
  for (std::size_t o = 0; o < g.co; ++o) {
    for (std::size_t c = 0; c < g.ci; ++c) {
      for (std::size_t p = 0; p < g.kh; ++p) {
        for (std::size_t q = 0; q < g.kw; ++q) {
          flipped[((c * g.co + o) * g.kh + p) * g.kw + q] =
              weight[((o * g.ci + c) * g.kh + (g.kh - 1 - p)) * g.kw + (g.kw - 1 - q)];
        }
      }
    }
  }
  direct_correlate_into(g.n, g.co, g.ho, g.wo, flipped, g.ci, g.kh, g.kw, g.kh - 1 - g.pad, g.kw - 1 - g.pad,
                        static_cast<const T*>(nullptr), load, dx);
}

/// direct_input_grad_with for dy (n, co, ho, wo), its rows copied into the padded planes.
template <class T>
void direct_input_grad(const T* dy, const T* weight, const ConvGeometry& g, T* dx) {
  direct_input_grad_with(weight, g, dx, interiors_of(dy, g.co, g.ho, g.wo, g.kh - 1 - g.pad, g.kw - 1 - g.pad));
}

// ---------------------------------------------------------------- im2col + GEMM

/// Output rows per chunk: cols[K x rows Wo] of about 64k elements (fits L2), at least one row.
std::size_t chunk_rows(const ConvGeometry& g) {
  constexpr std::size_t budget = 1 << 16;
  std::size_t row = 0;
  if (__builtin_mul_overflow(g.taps(), g.wo, &row)) return 1;
  return std::clamp<std::size_t>(budget / std::max<std::size_t>(1, row), 1, g.ho);
}

/// Elements of cols for `rows` output rows: K x rows x Wo, refused (naming the sizes) if it overflows.
std::size_t cols_elements(const ConvGeometry& g, std::size_t rows) {
  std::optional<std::size_t> count = Shape{g.taps(), rows, g.wo}.checked_numel();
  if (!count) fail("conv2d", "im2col columns of {} x {} x {} elements overflow 64 bits", g.taps(), rows, g.wo);
  return *count;
}

/// For output column j, input column j s + q - pad is inside [0, w) for j in [lo, hi).
inline void valid_range(std::size_t q, const ConvGeometry& g, std::size_t& lo, std::size_t& hi) {
  // j s + q >= pad  <=>  j >= ceil((pad - q) / s)
  lo = q >= g.pad ? 0 : (g.pad - q + g.stride - 1) / g.stride;
  // j s + q - pad < w  <=>  j s < w + pad - q
  hi = q >= g.w + g.pad ? 0 : std::min(g.wo, (g.w + g.pad - q + g.stride - 1) / g.stride);
  lo = std::min(lo, hi);
}

/// cols[(c, p, q)][(i - r0) wo + j] = x[c, i s + p - pad, j s + q - pad] (0 outside), rows i in [r0, r1).
template <class T>
void im2col(const T* x, const ConvGeometry& g, std::size_t r0, std::size_t r1, T* cols) {
  std::size_t width = (r1 - r0) * g.wo;
  for (std::size_t c = 0; c < g.ci; ++c) {
    const T* plane = x + c * g.in_plane();
    for (std::size_t p = 0; p < g.kh; ++p) {
      for (std::size_t q = 0; q < g.kw; ++q) {
        T* row = cols + ((c * g.kh + p) * g.kw + q) * width;
        std::size_t lo, hi;
        valid_range(q, g, lo, hi);
        for (std::size_t i = r0; i < r1; ++i, row += g.wo) {
          std::size_t in_i = i * g.stride + p;
          if (in_i < g.pad || in_i - g.pad >= g.h) {
            std::fill_n(row, g.wo, T(0));
            continue;
          }
          // Output column j reads input column j s + q - pad, which is >= 0 for j >= lo.
          const T* src = plane + (in_i - g.pad) * g.w;
          std::fill_n(row, lo, T(0));
          if (g.stride == 1) {
            if (hi > lo) std::memcpy(row + lo, src + lo + q - g.pad, (hi - lo) * sizeof(T));
          } else {
            for (std::size_t j = lo; j < hi; ++j) row[j] = src[j * g.stride + q - g.pad];
          }
          std::fill(row + hi, row + g.wo, T(0));
        }
      }
    }
  }
}

/// The adjoint of im2col: dx[c, i s + p - pad, j s + q - pad] += cols[(c, p, q)][(i - r0) wo + j].
template <class T>
void col2im(const T* cols, const ConvGeometry& g, std::size_t r0, std::size_t r1, T* dx) {
  std::size_t width = (r1 - r0) * g.wo;
  for (std::size_t c = 0; c < g.ci; ++c) {
    T* plane = dx + c * g.in_plane();
    for (std::size_t p = 0; p < g.kh; ++p) {
      for (std::size_t q = 0; q < g.kw; ++q) {
        const T* row = cols + ((c * g.kh + p) * g.kw + q) * width;
        std::size_t lo, hi;
        valid_range(q, g, lo, hi);
        for (std::size_t i = r0; i < r1; ++i, row += g.wo) {
          std::size_t in_i = i * g.stride + p;
          if (in_i < g.pad || in_i - g.pad >= g.h) continue;
          T* dst = plane + (in_i - g.pad) * g.w;
          for (std::size_t j = lo; j < hi; ++j) dst[j * g.stride + q - g.pad] += row[j];
        }
      }
    }
  }
}

template <class T>
void gemm_forward(const T* x, const T* weight, const T* bias, const ConvGeometry& g, T* y) {
  std::size_t k = g.taps(), rows = chunk_rows(g);
  T* cols = sized(scratch<T>().cols, cols_elements(g, rows));
  for (std::size_t img = 0; img < g.n; ++img) {
    const T* x_img = x + img * g.ci * g.in_plane();
    T* y_img = y + img * g.co * g.out_plane();
    for (std::size_t r0 = 0; r0 < g.ho; r0 += rows) {
      std::size_t r1 = std::min(g.ho, r0 + rows), width = (r1 - r0) * g.wo;
      im2col(x_img, g, r0, r1, cols);
      // y_img[:, r0 wo : r1 wo] = W[Co x K] . cols[K x width]
      detail::gemm(false, false, g.co, width, k, T(1), weight, k, cols, width, T(0), y_img + r0 * g.wo,
                   g.out_plane());
    }
    if (bias) {
      for (std::size_t o = 0; o < g.co; ++o) {
        T* __restrict plane = y_img + o * g.out_plane();
        for (std::size_t i = 0; i < g.out_plane(); ++i) plane[i] += bias[o];
      }
    }
  }
}

template <class T>
void gemm_weight_grad(const T* x, const T* dy, const ConvGeometry& g, T* dw) {
  std::size_t k = g.taps(), rows = chunk_rows(g);
  T* cols = sized(scratch<T>().cols, cols_elements(g, rows));
  std::fill_n(dw, g.co * k, T(0));
  for (std::size_t img = 0; img < g.n; ++img) {
    const T* x_img = x + img * g.ci * g.in_plane();
    const T* dy_img = dy + img * g.co * g.out_plane();
    for (std::size_t r0 = 0; r0 < g.ho; r0 += rows) {
      std::size_t r1 = std::min(g.ho, r0 + rows), width = (r1 - r0) * g.wo;
      im2col(x_img, g, r0, r1, cols);
      // dW[Co x K] += dY_img[Co x width] . cols[K x width]^T
      detail::gemm(false, true, g.co, k, width, T(1), dy_img + r0 * g.wo, g.out_plane(), cols, width, T(1), dw, k);
    }
  }
}

template <class T>
void gemm_input_grad(const T* dy, const T* weight, const ConvGeometry& g, T* dx) {
  std::size_t k = g.taps(), rows = chunk_rows(g);
  T* cols = sized(scratch<T>().cols, cols_elements(g, rows));
  std::fill_n(dx, g.n * g.ci * g.in_plane(), T(0));
  for (std::size_t img = 0; img < g.n; ++img) {
    const T* dy_img = dy + img * g.co * g.out_plane();
    T* dx_img = dx + img * g.ci * g.in_plane();
    for (std::size_t r0 = 0; r0 < g.ho; r0 += rows) {
      std::size_t r1 = std::min(g.ho, r0 + rows), width = (r1 - r0) * g.wo;
      // cols[K x width] = W[Co x K]^T . dY_img[Co x width], then scattered back onto the image.
      detail::gemm(true, false, k, width, g.co, T(1), weight, k, dy_img + r0 * g.wo, g.out_plane(), T(0), cols,
                   width);
      col2im(cols, g, r0, r1, dx_img);
    }
  }
}

// ---------------------------------------------------------------- kernels by dtype

Tensor forward_kernel(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvGeometry& g) {
  Tensor y = detail::make_tensor(g.y_shape(), x.dtype(), "conv2d");
  dispatch(x.dtype(), [&]<class T>() {
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    if (y.numel() == 0) return;
    if (g.taps() == 0) {  // no input channels: the bias alone
      for (std::size_t i = 0; i < y.numel(); ++i) y.data<T>()[i] = pb ? pb[(i / g.out_plane()) % g.co] : T(0);
    } else if (use_direct(g, sizeof(T))) {
      direct_correlate(x.data<T>(), g.n, g.ci, g.h, g.w, weight.data<T>(), g.co, g.kh, g.kw, g.pad, g.pad, pb,
                       y.data<T>());
    } else {
      gemm_forward(x.data<T>(), weight.data<T>(), pb, g, y.data<T>());
    }
  });
  return y;
}

Tensor input_grad_kernel(const Tensor& dy, const Tensor& weight, const ConvGeometry& g) {
  Tensor dx = detail::make_tensor(g.x_shape(), dy.dtype(), "conv2d_input_grad");
  dispatch(dy.dtype(), [&]<class T>() {
    if (dx.numel() == 0) return;
    if (g.co == 0 || g.out_plane() == 0) {
      dx.fill_(0.0);
    } else if (use_direct(g, sizeof(T))) {
      direct_input_grad(dy.data<T>(), weight.data<T>(), g, dx.data<T>());
    } else {
      gemm_input_grad(dy.data<T>(), weight.data<T>(), g, dx.data<T>());
    }
  });
  return dx;
}

/// db[o] = sum of dy over N, Ho, Wo.
template <class T>
void bias_grad(const T* dy, const ConvGeometry& g, T* db) {
  using B = xsimd::batch<T>;
  constexpr std::size_t v = B::size;
  std::size_t plane = g.out_plane(), whole = plane / v * v;
  std::fill_n(db, g.co, T(0));
  for (std::size_t img = 0; img < g.n; ++img) {
    for (std::size_t o = 0; o < g.co; ++o) {
      const T* src = dy + (img * g.co + o) * plane;
      B acc(T(0));
      for (std::size_t i = 0; i < whole; i += v) acc += B::load_unaligned(src + i);
      T total = xsimd::hadd(acc);
      for (std::size_t i = whole; i < plane; ++i) total += src[i];
      db[o] += total;
    }
  }
}

/// dw, and db too when `db` is given (first order: one pass over dy for both).
Tensor weight_grad_kernel(const Tensor& x, const Tensor& dy, const ConvGeometry& g, Tensor* db = nullptr) {
  Tensor dw = detail::make_tensor(g.w_shape(), x.dtype(), "conv2d_weight_grad");
  if (db) *db = detail::make_tensor(Shape{g.co}, x.dtype(), "conv2d_weight_grad");
  dispatch(x.dtype(), [&]<class T>() {
    T* pdb = db ? db->data<T>() : nullptr;
    if (g.n == 0 || g.out_plane() == 0 || dw.numel() == 0) {
      dw.fill_(0.0);
      if (pdb) bias_grad(dy.data<T>(), g, pdb);
    } else if (use_direct(g, sizeof(T))) {
      direct_weight_grad(x.data<T>(), dy.data<T>(), g, dw.data<T>(), pdb);
    } else {
      gemm_weight_grad(x.data<T>(), dy.data<T>(), g, dw.data<T>());
      if (pdb) bias_grad(dy.data<T>(), g, pdb);
    }
  });
  return dw;
}

Tensor bias_grad_kernel(const Tensor& dy, const ConvGeometry& g) {
  Tensor db = detail::make_tensor(Shape{g.co}, dy.dtype(), "conv2d_bias_grad");
  dispatch(dy.dtype(), [&]<class T>() { bias_grad(dy.data<T>(), g, db.data<T>()); });
  return db;
}

// ---------------------------------------------------------------- the two backward ops

void check_grad_shape(const char* op, const Tensor& dy, const Shape& y_shape) {
  if (!(dy.shape() == y_shape)) {
    fail(op, "output gradient {} does not match the convolution's output shape {}", dy.describe(), y_shape.str());
  }
}

Tensor conv2d_weight_grad(const Tensor& x, const Tensor& dy, const Shape& w_shape, std::size_t stride,
                          std::size_t pad);

/// dx = d/dx <dy, conv2d(x, w)>, of shape x_shape.
Tensor conv2d_input_grad(const Tensor& dy, const Tensor& weight, const Shape& x_shape, std::size_t stride,
                         std::size_t pad) {
  detail::check_binary("conv2d_input_grad", dy, weight);
  ConvGeometry g = make_geometry("conv2d_input_grad", x_shape, weight.shape(), stride, pad);
  check_grad_shape("conv2d_input_grad", dy, g.y_shape());
  Tensor dx = input_grad_kernel(dy, weight, g);
  return record("conv2d_input_grad", dx, {dy, weight}, [dy, weight, stride, pad](const Tensor& gx, NeedsGrad needs) {
    // <G, input_grad(dy, w)> = <conv2d(G, w), dy> = <weight_grad(G, dy), w>.
    Tensor d_dy, d_w;
    if (needs[0]) d_dy = conv2d(gx, weight, Tensor(), stride, pad);
    if (needs[1]) d_w = conv2d_weight_grad(gx, dy, weight.shape(), stride, pad);
    return std::vector<Tensor>{d_dy, d_w};
  });
}

/// dw = d/dw <dy, conv2d(x, w)>, of shape w_shape (summed over the batch).
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& dy, const Shape& w_shape, std::size_t stride,
                          std::size_t pad) {
  detail::check_binary("conv2d_weight_grad", x, dy);
  ConvGeometry g = make_geometry("conv2d_weight_grad", x.shape(), w_shape, stride, pad);
  check_grad_shape("conv2d_weight_grad", dy, g.y_shape());
  Tensor dw = weight_grad_kernel(x, dy, g);
  return record("conv2d_weight_grad", dw, {x, dy}, [x, dy, stride, pad](const Tensor& gw, NeedsGrad needs) {
    // <G, weight_grad(x, dy)> = <conv2d(x, G), dy> = <input_grad(dy, G), x>.
    Tensor d_x, d_dy;
    if (needs[0]) d_x = conv2d_input_grad(dy, gw, x.shape(), stride, pad);
    if (needs[1]) d_dy = conv2d(x, gw, Tensor(), stride, pad);
    return std::vector<Tensor>{d_x, d_dy};
  });
}

// ---------------------------------------------------------------- the general path
// Rectangular strides and paddings, dilation and groups (everything the fast kernels above do not take):
// per image, group and cache-sized chunk of output rows, cols[K x P] by a dilated im2col (K = C/g kH kW taps,
// P the chunk's outputs), then W_g[O/g x K] . cols by BLAS. The same three bilinear ops as above, each one's
// adjoints the other two.

/// Strides, paddings and dilations per direction (rows, columns), and the number of groups.
struct Conv2dParams {
  Size2 stride, padding, dilation;
  std::size_t groups;
};

struct GeneralGeometry {
  std::size_t n, ci, h, w;      // input
  std::size_t co, kh, kw;       // kernel
  std::size_t sh, sw, ph, pw, dh, dw, groups;
  std::size_t ho, wo;           // output
  std::size_t cig() const { return ci / groups; }
  std::size_t cog() const { return co / groups; }
  std::size_t taps() const { return cig() * kh * kw; }  // per group
  std::size_t in_plane() const { return h * w; }
  std::size_t out_plane() const { return ho * wo; }
  Shape x_shape() const { return Shape{n, ci, h, w}; }
  Shape w_shape() const { return Shape{co, cig(), kh, kw}; }
  Shape y_shape() const { return Shape{n, co, ho, wo}; }
};

/// Validates an (input shape, weight shape) pair under `p` and derives the output extents; every sum and
/// product of the output-size formula is overflow-checked; errors name `op` and both shapes.
GeneralGeometry make_general_geometry(const char* op, const Shape& x, const Shape& w, const Conv2dParams& p) {
  if (x.rank() != 4) fail(op, "input must be 4-D (N, C, H, W), got {}", x.str());
  if (w.rank() != 4) fail(op, "weight must be 4-D (C_out, C_in / groups, kH, kW), got {}", w.str());
  if (p.groups == 0) fail(op, "groups must be positive (input {}, weight {})", x.str(), w.str());
  if (x[1] % p.groups != 0 || w[0] % p.groups != 0) {
    fail(op, "input channels {} and output channels {} must both be divisible by groups {} (input {}, weight {})",
         x[1], w[0], p.groups, x.str(), w.str());
  }
  if (x[1] / p.groups != w[1]) {
    fail(op, "input {} has {} channels, {} per group of {}, but weight {} expects {}", x.str(), x[1],
         x[1] / p.groups, p.groups, w.str(), w[1]);
  }
  if (w[2] == 0 || w[3] == 0) fail(op, "empty kernel in weight {}", w.str());
  GeneralGeometry g{};
  g.n = x[0], g.ci = x[1], g.h = x[2], g.w = x[3], g.co = w[0], g.kh = w[2], g.kw = w[3], g.groups = p.groups;
  std::size_t hp = 0, wp = 0;
  for (std::size_t d : {0, 1}) {
    if (p.stride[d] == 0 || p.dilation[d] == 0) {
      fail(op, "stride {}x{} and dilation {}x{} must be positive (input {}, weight {})", p.stride[0], p.stride[1],
           p.dilation[0], p.dilation[1], x.str(), w.str());
    }
    if (p.stride[d] >= kMaxPadOrStride || p.padding[d] >= kMaxPadOrStride || p.dilation[d] >= kMaxPadOrStride) {
      fail(op, "padding {}x{}, stride {}x{} and dilation {}x{} must be below 2^62 (input {}, weight {})", p.padding[0],
           p.padding[1], p.stride[0], p.stride[1], p.dilation[0], p.dilation[1], x.str(), w.str());
    }
    // The dilated kernel spans dilation (k - 1) + 1 input positions; the padded input, extent + 2 padding.
    std::size_t k = w[2 + d], span = 0, padded = 0;
    if (__builtin_mul_overflow(p.dilation[d], k - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
        __builtin_add_overflow(x[2 + d], 2 * p.padding[d], &padded)) {
      fail(op, "kernel {}x{} dilated by {}x{} or input {} padded by {}x{} overflows 64 bits (weight {})", w[2], w[3],
           p.dilation[0], p.dilation[1], x.str(), p.padding[0], p.padding[1], w.str());
    }
    if (span > padded) {
      fail(op, "kernel {}x{} of weight {} dilated by {}x{} spans {} {}, more than the padded input's {} (input {}, "
           "padding {}x{})", w[2], w[3], w.str(), p.dilation[0], p.dilation[1], span, d == 0 ? "rows" : "columns",
           padded, x.str(), p.padding[0], p.padding[1]);
    }
    (d == 0 ? g.ho : g.wo) = (padded - span) / p.stride[d] + 1;
    (d == 0 ? hp : wp) = padded;
  }
  g.sh = p.stride[0], g.sw = p.stride[1], g.ph = p.padding[0], g.pw = p.padding[1];
  g.dh = p.dilation[0], g.dw = p.dilation[1];
  if (!g.y_shape().checked_numel()) {
    fail(op, "output {} of input {}, weight {}, stride {}x{}, padding {}x{}, dilation {}x{} has more elements than "
         "64 bits count", g.y_shape().str(), x.str(), w.str(), g.sh, g.sw, g.ph, g.pw, g.dh, g.dw);
  }
  if (!Shape{g.taps(), g.out_plane()}.checked_numel()) {
    fail(op, "im2col columns of {} x {} elements overflow 64 bits (input {}, weight {})", g.taps(), g.out_plane(),
         x.str(), w.str());
  }
  return g;
}

/// cols[(c, p, q)][(i - r0) wo + j] = x[c, i sh + p dh - ph, j sw + q dw - pw] (0 outside), output rows i in
/// [r0, r1), for the cig channels of one group of one image, `x` at the group's first channel.
template <class T>
void im2col_dilated(const T* x, const GeneralGeometry& g, std::size_t r0, std::size_t r1, T* cols) {
  std::size_t width = (r1 - r0) * g.wo;
  for (std::size_t c = 0; c < g.cig(); ++c) {
    const T* plane = x + c * g.in_plane();
    for (std::size_t p = 0; p < g.kh; ++p) {
      for (std::size_t q = 0; q < g.kw; ++q) {
        T* out = cols + ((c * g.kh + p) * g.kw + q) * width;
        for (std::size_t i = r0; i < r1; ++i, out += g.wo) {
          std::size_t r = i * g.sh + p * g.dh;  // in the padded input
          if (r < g.ph || r - g.ph >= g.h) {
            std::fill_n(out, g.wo, T(0));
            continue;
          }
          const T* src = plane + (r - g.ph) * g.w;
          for (std::size_t j = 0; j < g.wo; ++j) {
            std::size_t s = j * g.sw + q * g.dw;
            out[j] = s < g.pw || s - g.pw >= g.w ? T(0) : src[s - g.pw];
          }
        }
      }
    }
  }
}

/// The adjoint of im2col_dilated: dx[c, i sh + p dh - ph, j sw + q dw - pw] += cols[(c, p, q)][(i - r0) wo + j].
template <class T>
void col2im_dilated(const T* cols, const GeneralGeometry& g, std::size_t r0, std::size_t r1, T* dx) {
  std::size_t width = (r1 - r0) * g.wo;
  for (std::size_t c = 0; c < g.cig(); ++c) {
    T* plane = dx + c * g.in_plane();
    for (std::size_t p = 0; p < g.kh; ++p) {
      for (std::size_t q = 0; q < g.kw; ++q) {
        const T* in = cols + ((c * g.kh + p) * g.kw + q) * width;
        for (std::size_t i = r0; i < r1; ++i, in += g.wo) {
          std::size_t r = i * g.sh + p * g.dh;
          if (r < g.ph || r - g.ph >= g.h) continue;
          T* dst = plane + (r - g.ph) * g.w;
          for (std::size_t j = 0; j < g.wo; ++j) {
            std::size_t s = j * g.sw + q * g.dw;
            if (s >= g.pw && s - g.pw < g.w) dst[s - g.pw] += in[j];
          }
        }
      }
    }
  }
}

/// Output rows per chunk: cols[K x rows Wo] of about 64k elements (as chunk_rows above), at least one row.
std::size_t general_chunk_rows(const GeneralGeometry& g) {
  constexpr std::size_t budget = 1 << 16;
  return std::clamp<std::size_t>(budget / std::max<std::size_t>(1, g.taps() * g.wo), 1, g.ho);
}

/// Calls f(x_group, y_chunk, group, r0, r1, width) for every image, group and chunk of output rows [r0, r1):
/// x_group at the group's first input channel, y_chunk at row r0 of the group's first output channel (rows of
/// the group's channels out_plane apart), width = (r1 - r0) wo. The columns' size: taps() x rows x wo (checked
/// by make_general_geometry, rows <= ho).
template <class X, class Y, class F>
void for_each_chunk(const GeneralGeometry& g, X* x, Y* y, F&& f) {
  std::size_t rows = general_chunk_rows(g);
  for (std::size_t img = 0; img < g.n; ++img) {
    for (std::size_t grp = 0; grp < g.groups; ++grp) {
      X* xg = x + (img * g.ci + grp * g.cig()) * g.in_plane();
      Y* yg = y + (img * g.co + grp * g.cog()) * g.out_plane();
      for (std::size_t r0 = 0; r0 < g.ho; r0 += rows) {
        std::size_t r1 = std::min(g.ho, r0 + rows);
        f(xg, yg + r0 * g.wo, grp, r0, r1, (r1 - r0) * g.wo);
      }
    }
  }
}

/// Whether a GEMM has anything to multiply: an empty group, kernel or output plane leaves the zero (or bias) fill.
bool gemm_nonempty(const GeneralGeometry& g) { return g.taps() > 0 && g.cog() > 0 && g.out_plane() > 0; }

template <class T>
T* general_cols(const GeneralGeometry& g) {
  return sized(scratch<T>().cols, g.taps() * general_chunk_rows(g) * g.wo);
}

Tensor general_forward_kernel(const Tensor& x, const Tensor& weight, const Tensor& bias, const GeneralGeometry& g) {
  Tensor y = detail::make_tensor(g.y_shape(), x.dtype(), "conv2d");
  dispatch(x.dtype(), [&]<class T>() {
    T* py = y.data<T>();
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    for (std::size_t i = 0; i < y.numel(); ++i) py[i] = pb ? pb[(i / g.out_plane()) % g.co] : T(0);
    if (y.numel() == 0 || !gemm_nonempty(g)) return;
    T* cols = general_cols<T>(g);
    const T* pw = weight.data<T>();
    for_each_chunk(g, x.data<T>(), py, [&](const T* xg, T* yc, std::size_t grp, std::size_t r0, std::size_t r1,
                                           std::size_t width) {
      im2col_dilated(xg, g, r0, r1, cols);
      // y_g[O/g x width] += W_g[O/g x K] . cols[K x width]
      detail::gemm(false, false, g.cog(), width, g.taps(), T(1), pw + grp * g.cog() * g.taps(), g.taps(), cols, width,
                   T(1), yc, g.out_plane());
    });
  });
  return y;
}

Tensor general_input_grad_kernel(const Tensor& dy, const Tensor& weight, const GeneralGeometry& g) {
  Tensor dx = detail::make_tensor(g.x_shape(), dy.dtype(), "conv2d_input_grad");
  dx.fill_(0.0);
  dispatch(dy.dtype(), [&]<class T>() {
    if (dx.numel() == 0 || !gemm_nonempty(g)) return;
    T* cols = general_cols<T>(g);
    const T* pw = weight.data<T>();
    for_each_chunk(g, dx.data<T>(), dy.data<T>(), [&](T* dxg, const T* dyc, std::size_t grp, std::size_t r0,
                                                      std::size_t r1, std::size_t width) {
      // cols[K x width] = W_g[O/g x K]^T . dy_g[O/g x width], scattered back onto the group's planes.
      detail::gemm(true, false, g.taps(), width, g.cog(), T(1), pw + grp * g.cog() * g.taps(), g.taps(), dyc,
                   g.out_plane(), T(0), cols, width);
      col2im_dilated(cols, g, r0, r1, dxg);
    });
  });
  return dx;
}

Tensor general_weight_grad_kernel(const Tensor& x, const Tensor& dy, const GeneralGeometry& g) {
  Tensor dw = detail::make_tensor(g.w_shape(), x.dtype(), "conv2d_weight_grad");
  dw.fill_(0.0);
  dispatch(x.dtype(), [&]<class T>() {
    if (dw.numel() == 0 || g.n == 0 || !gemm_nonempty(g)) return;
    T* cols = general_cols<T>(g);
    T* pdw = dw.data<T>();
    for_each_chunk(g, x.data<T>(), dy.data<T>(), [&](const T* xg, const T* dyc, std::size_t grp, std::size_t r0,
                                                     std::size_t r1, std::size_t width) {
      im2col_dilated(xg, g, r0, r1, cols);
      // dW_g[O/g x K] += dy_g[O/g x width] . cols[K x width]^T
      detail::gemm(false, true, g.cog(), g.taps(), width, T(1), dyc, g.out_plane(), cols, width, T(1),
                   pdw + grp * g.cog() * g.taps(), g.taps());
    });
  });
  return dw;
}

Tensor general_weight_grad(const Tensor& x, const Tensor& dy, const Shape& w_shape, const Conv2dParams& p);

/// dx = d/dx <dy, conv2d(x, w)> on the general path, of shape x_shape.
Tensor general_input_grad(const Tensor& dy, const Tensor& weight, const Shape& x_shape, const Conv2dParams& p) {
  detail::check_binary("conv2d_input_grad", dy, weight);
  GeneralGeometry g = make_general_geometry("conv2d_input_grad", x_shape, weight.shape(), p);
  check_grad_shape("conv2d_input_grad", dy, g.y_shape());
  Tensor dx = general_input_grad_kernel(dy, weight, g);
  return record("conv2d_input_grad", dx, {dy, weight}, [dy, weight, p](const Tensor& gx, NeedsGrad needs) {
    // <G, input_grad(dy, w)> = <conv2d(G, w), dy> = <weight_grad(G, dy), w>.
    Tensor d_dy, d_w;
    if (needs[0]) d_dy = detail::conv2d_general(gx, weight, Tensor(), p.stride, p.padding, p.dilation, p.groups);
    if (needs[1]) d_w = general_weight_grad(gx, dy, weight.shape(), p);
    return std::vector<Tensor>{d_dy, d_w};
  });
}

/// dw = d/dw <dy, conv2d(x, w)> on the general path, of shape w_shape (summed over the batch).
Tensor general_weight_grad(const Tensor& x, const Tensor& dy, const Shape& w_shape, const Conv2dParams& p) {
  detail::check_binary("conv2d_weight_grad", x, dy);
  GeneralGeometry g = make_general_geometry("conv2d_weight_grad", x.shape(), w_shape, p);
  check_grad_shape("conv2d_weight_grad", dy, g.y_shape());
  Tensor dw = general_weight_grad_kernel(x, dy, g);
  return record("conv2d_weight_grad", dw, {x, dy}, [x, dy, p](const Tensor& gw, NeedsGrad needs) {
    // <G, weight_grad(x, dy)> = <conv2d(x, G), dy> = <input_grad(dy, G), x>.
    Tensor d_x, d_dy;
    if (needs[0]) d_x = general_input_grad(dy, gw, x.shape(), p);
    if (needs[1]) d_dy = detail::conv2d_general(x, gw, Tensor(), p.stride, p.padding, p.dilation, p.groups);
    return std::vector<Tensor>{d_x, d_dy};
  });
}

}  // namespace

// ---------------------------------------------------------------- conv2d

namespace {

/// A bias must be undefined, or 1-D with C_out elements of the input's dtype.
void check_bias(const Tensor& x, const Tensor& weight, const Tensor& bias, std::size_t co) {
  if (!bias.defined()) return;
  if (bias.dtype() != x.dtype()) fail("conv2d", "dtypes differ: input {} and bias {}", x.describe(), bias.describe());
  if (bias.rank() != 1 || bias.dim(0) != co) {
    fail("conv2d", "bias {} must be 1-D with {} elements (weight {})", bias.describe(), co, weight.describe());
  }
}

/// Records y as op `op` with inputs (x, weight, bias), or (x, weight) without a bias; `backward` gives three
/// gradients.
template <class F>
Tensor record_conv(const char* op, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                   F backward) {
  if (bias.defined()) return record(op, y, {x, weight, bias}, backward);
  return record(op, y, {x, weight}, [backward](const Tensor& gy, NeedsGrad needs) {
    std::vector<Tensor> grads = backward(gy, needs);
    grads.pop_back();
    return grads;
  });
}

/// conv2d's gradients (x, weight, bias) from the upstream gradient gy of y = conv2d(x, weight, bias).
std::vector<Tensor> conv2d_grads(const Tensor& x, const Tensor& weight, const ConvGeometry& g, const Tensor& gy,
                                 NeedsGrad needs) {
  std::vector<Tensor> grads(3);
  if (needs[0]) grads[0] = conv2d_input_grad(gy, weight, x.shape(), g.stride, g.pad);
  if (is_recording()) {
    // create_graph: differentiable ops, so the gradients are on the tape too.
    if (needs[1]) grads[1] = conv2d_weight_grad(x, gy, weight.shape(), g.stride, g.pad);
    if (needs[2]) grads[2] = reshape(sum_to(gy, Shape{1, g.co, 1, 1}), Shape{g.co});
  } else if (needs[1]) {
    grads[1] = weight_grad_kernel(x, gy, g, needs[2] ? &grads[2] : nullptr);
  } else if (needs[2]) {
    grads[2] = bias_grad_kernel(gy, g);
  }
  return grads;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::size_t stride, std::size_t padding) {
  detail::check_binary("conv2d", x, weight);
  ConvGeometry g = make_geometry("conv2d", x.shape(), weight.shape(), stride, padding);
  check_bias(x, weight, bias, g.co);
  Tensor y = forward_kernel(x, weight, bias, g);
  return record_conv("conv2d", y, x, weight, bias, [x, weight, g](const Tensor& gy, NeedsGrad needs) {
    return conv2d_grads(x, weight, g, gy, needs);
  });
}

namespace {

/// What conv2d_max_pool2d's backward keeps: the op's operands, the convolution's geometry, the pooling's
/// indices and, with relu, the op's output (relu passes the gradient where it is > 0 or NaN).
struct ConvPool {
  Tensor x, weight;
  ConvGeometry g;
  std::shared_ptr<Storage> index;
  Tensor y;  // defined with relu
  std::size_t pooled_plane() const { return (g.ho / 2) * (g.wo / 2); }
  std::size_t per_image() const { return g.co * pooled_plane(); }
  const std::uint32_t* at() const { return static_cast<const std::uint32_t*>(index->data()); }
};

/// The pooling's indices as max_pool2d(relu(z), 2) would have saved them: where the output is relu's 0 (the
/// window's maximum <= 0), relu(z) is four +0s there and the first, top-left, wins the tie. Only a graph's
/// gradients can tell (a gradient of inf or NaN times relu's 0 lands on the routed element).
std::shared_ptr<Storage> relu_routing(const ConvPool& c) {
  const std::size_t wo2 = c.g.wo / 2, outputs = c.y.numel();
  std::shared_ptr<Storage> index = detail::pool_index_block(outputs, "conv2d_max_pool2d");
  auto* at = static_cast<std::uint32_t*>(index->data());
  const std::uint32_t* from = c.at();
  dispatch(c.y.dtype(), [&]<class T>() {
    const T* py = c.y.data<T>();
    for (std::size_t k = 0; k < outputs; ++k) {
      const std::size_t in_plane = k % c.pooled_plane(), i = in_plane / wo2, j = in_plane % wo2;
      at[k] = py[k] <= T(0) ? static_cast<std::uint32_t>(2 * i * c.g.wo + 2 * j) : from[k];
    }
  });
  return index;
}

/// First order: each image's pooled gradient gp (masked by relu's when `mask`, into the im2col scratch,
/// which the direct kernels leave alone) is unpooled straight into the weight gradient's staging planes,
/// never into a tensor of the convolution's size. Returns (undefined, dw if needed, db if needed).
std::vector<Tensor> conv_pool_weight_grads(const ConvPool& c, const Tensor& gp, NeedsGrad needs, bool mask) {
  const ConvGeometry& g = c.g;
  std::vector<Tensor> grads(3);
  Tensor dw = detail::make_tensor(g.w_shape(), c.x.dtype(), "conv2d_max_pool2d");
  if (needs[2]) grads[2] = detail::make_tensor(Shape{g.co}, c.x.dtype(), "conv2d_max_pool2d");
  const std::uint32_t* at = c.at();
  const std::size_t per_image = c.per_image();
  dispatch(c.x.dtype(), [&]<class T>() {
    const T* pg = gp.data<T>();
    const T* py = mask && c.y.defined() ? c.y.data<T>() : nullptr;
    T* masked = py ? sized(scratch<T>().cols, per_image) : nullptr;
    direct_weight_grad_with(c.x.data<T>(), g, dw.data<T>(), needs[2] ? grads[2].data<T>() : nullptr,
                            [&](std::size_t img, T* staged, const FlatLayout& f) {
                              const T* grad = pg + img * per_image;
                              if (py) {
                                detail::threshold_at_zero(py + img * per_image, grad, masked, per_image);
                                grad = masked;
                              }
                              detail::max_unpool2x2_planes(grad, at + img * per_image,
                                                           {g.co, g.ho, g.wo, f.wp, f.length}, staged);
                            });
  });
  if (needs[1]) grads[1] = dw;
  return grads;
}

/// First order with an input gradient: relu's mask applied to the pooled gradient, then each image's
/// unpooled into the input-gradient kernel's padded planes and (for dw, db) into the weight gradient's
/// staging planes: the convolution's gradient is never a tensor.
std::vector<Tensor> conv_pool_input_grads(const ConvPool& c, const Tensor& gp, NeedsGrad needs) {
  const ConvGeometry& g = c.g;
  const Tensor gz = c.y.defined() ? detail::relu_backward(gp, c.y) : gp;
  std::vector<Tensor> grads = needs[1] ? conv_pool_weight_grads(c, gz, needs, false) : std::vector<Tensor>(3);
  grads[0] = detail::make_tensor(g.x_shape(), c.x.dtype(), "conv2d_max_pool2d");
  const std::uint32_t* at = c.at();
  const std::size_t per_image = c.per_image();
  dispatch(c.x.dtype(), [&]<class T>() {
    const T* pg = gz.data<T>();
    direct_input_grad_with(c.weight.data<T>(), g, grads[0].data<T>(), [&](std::size_t img, T* padded, const FlatLayout& f) {
      const std::size_t first = img * per_image;
      detail::max_unpool2x2_planes(pg + first, at + first, {g.co, g.ho, g.wo, f.wp, f.plane},
                                   padded + (g.kh - 1 - g.pad) * f.wp + (g.kw - 1 - g.pad));
    });
  });
  return grads;
}

std::vector<Tensor> conv_pool_grads(const ConvPool& c, const Tensor& gp, NeedsGrad needs) {
  if (!is_recording() && !needs[0] && needs[1]) return conv_pool_weight_grads(c, gp, needs, true);
  if (!is_recording() && needs[0] && (needs[1] || !needs[2])) return conv_pool_input_grads(c, gp, needs);
  if (!needs[0] && !needs[1] && !needs[2]) return std::vector<Tensor>(3);
  // The ops one by one (the bias alone too: conv2d's own sum of its gradient, bit for bit).
  const bool relu = c.y.defined();
  Tensor gz = relu ? detail::relu_backward(gp, c.y) : gp;
  std::shared_ptr<Storage> index = relu && is_recording() ? relu_routing(c) : c.index;
  return conv2d_grads(c.x, c.weight, c.g, detail::max_pool2x2_backward(gz, c.g.y_shape(), index), needs);
}

}  // namespace

Tensor conv2d_max_pool2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::size_t stride,
                         std::size_t padding, bool relu) {
  static constexpr const char* op = "conv2d_max_pool2d";
  detail::check_binary(op, x, weight);
  ConvGeometry g = make_geometry(op, x.shape(), weight.shape(), stride, padding);
  check_bias(x, weight, bias, g.co);
  if (g.n == 0 || g.co == 0 || g.taps() == 0 || g.ho < 2 || g.wo < 2 || g.out_plane() > UINT32_MAX ||
      !use_direct(g, dtype_size(x.dtype()))) {
    Tensor pooled = max_pool2d(conv2d(x, weight, bias, stride, padding), 2);  // also the errors of a window too large
    return relu ? ag::relu(pooled) : pooled;
  }
  ConvPool c{x, weight, g, detail::pool_index_block(g.n * g.co * (g.ho / 2) * (g.wo / 2), op), Tensor()};
  Tensor y = detail::make_tensor(Shape{g.n, g.co, g.ho / 2, g.wo / 2}, x.dtype(), op);
  auto* at = static_cast<std::uint32_t*>(c.index->data());
  dispatch(x.dtype(), [&]<class T>() {
    T* py = y.data<T>();
    direct_correlate_with(g.n, g.ci, g.h, g.w, weight.data<T>(), g.co, g.kh, g.kw, g.pad, g.pad,
                          bias.defined() ? bias.data<T>() : nullptr, interiors_of(x.data<T>(), g.ci, g.h, g.w, g.pad, g.pad),
                          [&](std::size_t img, std::size_t o, std::size_t count, const T* staged, const FlatLayout& f) {
                            const std::size_t first = (img * g.co + o) * c.pooled_plane();
                            detail::max_pool2x2_planes(staged, {count, f.ho, f.wo, f.wp, f.length}, py + first,
                                                       at + first);
                            if (relu) detail::relu_kernel(py + first, py + first, count * c.pooled_plane());
                          });
  });
  if (relu) c.y = y;
  return record_conv(op, y, x, weight, bias,
                     [c = std::move(c)](const Tensor& gp, NeedsGrad needs) { return conv_pool_grads(c, gp, needs); });
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding, Size2 dilation,
              std::size_t groups) {
  if (stride[0] == stride[1] && padding[0] == padding[1] && dilation == Size2{1, 1} && groups == 1) {
    return conv2d(x, weight, bias, stride[0], padding[0]);  // the fast kernels
  }
  return detail::conv2d_general(x, weight, bias, stride, padding, dilation, groups);
}

namespace detail {

Tensor conv2d_general(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding,
                      Size2 dilation, std::size_t groups) {
  check_binary("conv2d", x, weight);
  Conv2dParams p{stride, padding, dilation, groups};
  GeneralGeometry g = make_general_geometry("conv2d", x.shape(), weight.shape(), p);
  check_bias(x, weight, bias, g.co);
  Tensor y = general_forward_kernel(x, weight, bias, g);
  // The backward ops are differentiable whether or not a graph is being built (im2col + GEMM either way).
  return record_conv("conv2d", y, x, weight, bias, [x, weight, p, co = g.co](const Tensor& gy, NeedsGrad needs) {
    std::vector<Tensor> grads(3);
    if (needs[0]) grads[0] = general_input_grad(gy, weight, x.shape(), p);
    if (needs[1]) grads[1] = general_weight_grad(x, gy, weight.shape(), p);
    if (needs[2]) grads[2] = reshape(sum_to(gy, Shape{1, co, 1, 1}), Shape{co});
    return grads;
  });
}

}  // namespace detail

}  // namespace ag
