#include "analysis/per_sample.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <typeinfo>
#include <vector>

#include <fmt/format.h>

#include "analysis/detail/tape_guard.hpp"
#include "autograd/blas.hpp"
#include "autograd/detail/op_common.hpp"
#include "autograd/tape.hpp"
#include "nn/norm.hpp"

namespace analysis {

using ag::Tensor;

namespace {

// ---------------------------------------------------------------- the forward, layer by layer

/// A Linear or Conv2d layer as the forward met it: a = its input, z = its output (on the tape).
struct Site {
  std::string prefix;  // "0.", "3.1."
  bool conv = false;
  Tensor weight, bias;
  std::size_t stride = 1, pad = 0;
  Tensor input, output;
};

/// `m` as exactly a T, else nullptr: a subclass may change forward, which the sweep would not follow.
template <class T>
T* exactly(nn::Module& m) {
  return typeid(m) == typeid(T) ? static_cast<T*>(&m) : nullptr;
}

/// Parameter-free modules that act on each sample alone (exact types, as above).
bool per_sample_module(const nn::Module& m) {
  const std::type_info& t = typeid(m);
  return t == typeid(nn::ReLU) || t == typeid(nn::LeakyReLU) || t == typeid(nn::ELU) || t == typeid(nn::GELU) ||
         t == typeid(nn::SiLU) || t == typeid(nn::Softplus) || t == typeid(nn::Sigmoid) || t == typeid(nn::Tanh) ||
         t == typeid(nn::Flatten) || t == typeid(nn::MaxPool2d) || t == typeid(nn::Dropout);
}

/// z = layer(a) with the parameters detached: the sweep needs dL/dz and dL/da only. A first layer's z is
/// made a leaf that requires grad, so that ag::grad can reach it.
Tensor run_site(Site& site, const Tensor& a) {
  Tensor w = site.weight.detach(), b = site.bias.defined() ? site.bias.detach() : Tensor();
  Tensor z = site.conv ? ag::conv2d(a, w, b, site.stride, site.pad) : ag::linear(a, w, b);
  if (!z.requires_grad()) {
    z = z.detach();
    z.set_requires_grad();
  }
  site.input = a.detach();
  site.output = z;
  return z;
}

void check_rank(const char* op, const std::string& path, const nn::Module& layer, const Tensor& a, std::size_t rank,
                const char* layout) {
  if (a.rank() != rank) {
    throw std::invalid_argument(
        fmt::format("{}: module '{}' ({}) takes {}, got {}", op, path, layer.type_name(), layout, a.describe()));
  }
}

/// Whether the layer's parameters are trained (a site), frozen (run as any layer), or half of each (refused).
bool trained_layer(const char* op, const std::string& path, const nn::Module& layer, const Tensor& weight,
                   const Tensor& bias) {
  const bool w = weight.requires_grad(), b = bias.defined() && bias.requires_grad();
  if (bias.defined() && w != b) {
    throw std::invalid_argument(fmt::format(
        "{}: module '{}' ({}) has its {} frozen and its {} not: the sweep takes a layer whole (both trained or both "
        "frozen); per_sample_sq_norms_by_sample takes any",
        op, path, layer.type_name(), w ? "bias" : "weight", w ? "weight" : "bias"));
  }
  return w;
}

/// Runs the model's children in order, recording every trained Linear and Conv2d layer met as a site.
Tensor forward(const char* op, nn::Sequential& model, const std::string& prefix, Tensor a, std::vector<Site>& sites) {
  for (const auto& [name, child] : model.children()) {
    const std::string path = prefix + name;
    if (auto* seq = exactly<nn::Sequential>(*child)) {
      a = forward(op, *seq, path + ".", a, sites);
    } else if (auto* linear = exactly<nn::Linear>(*child)) {
      check_rank(op, path, *linear, a, 2, "(B, features)");
      if (!trained_layer(op, path, *linear, linear->weight(), linear->bias())) {
        a = (*child)(a);
        continue;
      }
      sites.push_back(Site{path + ".", false, linear->weight(), linear->bias(), 1, 0, {}, {}});
      a = run_site(sites.back(), a);
    } else if (auto* conv = exactly<nn::Conv2d>(*child)) {
      check_rank(op, path, *conv, a, 4, "(B, C, H, W)");
      const nn::Conv2dOptions& o = conv->options();
      if (o.groups != 1 || o.dilation != ag::Size2{1, 1} || o.kernel[0] != o.kernel[1] || o.stride[0] != o.stride[1] ||
          o.padding[0] != o.padding[1]) {
        throw std::invalid_argument(fmt::format(
            "{}: module '{}' ({}) is not supported: per-sample gradients take Conv2d layers with a square kernel, "
            "one stride and one padding for both axes, dilation 1 and one group",
            op, path, conv->type_name()));
      }
      if (!trained_layer(op, path, *conv, conv->weight(), conv->bias())) {
        a = (*child)(a);
        continue;
      }
      sites.push_back(Site{path + ".", true, conv->weight(), conv->bias(), conv->stride(), conv->padding(), {}, {}});
      a = run_site(sites.back(), a);
    } else if (per_sample_module(*child)) {
      a = (*child)(a);
    } else {
      throw std::invalid_argument(fmt::format(
          "{}: module '{}' ({}) is not supported: only Linear, Conv2d and layers that act on each sample alone, "
          "of exactly these types (a subclass may change forward; per_sample_sq_norms_by_sample takes any)",
          op, path, child->type_name()));
    }
  }
  return a;
}

// ---------------------------------------------------------------- per-sample kernels

/// sum_i p[i]^2 in double, in eight independent partial sums (a single running sum is one add per latency).
template <class T>
double sum_squares(const T* p, std::size_t count) {
  double part[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) part[k] += double(p[i + k]) * double(p[i + k]);
  }
  for (; i < count; ++i) part[0] += double(p[i]) * double(p[i]);
  double total = 0;
  for (double v : part) total += v;
  return total;
}

/// g_n(W)[i, o] = a[n, i] dz[n, o] into (B, in out); g_n(b) = dz[n] into (B, out).
template <class T>
void linear_grads(const Tensor& a, const Tensor& dz, Tensor& gw, Tensor* gb) {
  const std::size_t batch = a.dim(0), in = a.dim(1), out = dz.dim(1);
  const T* pa = a.data<T>();
  const T* pdz = dz.data<T>();
  T* pw = gw.data<T>();
  for (std::size_t n = 0; n < batch; ++n) {
    const T* d = pdz + n * out;
    for (std::size_t i = 0; i < in; ++i) {
      const T ai = pa[n * in + i];
      T* __restrict row = pw + (n * in + i) * out;
      for (std::size_t o = 0; o < out; ++o) row[o] = ai * d[o];
    }
  }
  if (gb) std::copy(pdz, pdz + batch * out, gb->data<T>());
}

/// The geometry of one sample's correlation: x (c, h, w), kernel k x k, output (co, ho, wo).
struct ConvShape {
  std::size_t c, h, w, k, co, ho, wo, stride, pad;
  std::size_t taps() const { return c * k * k; }
  std::size_t pixels() const { return ho * wo; }
};

/// cols[(ch, p, q)][(i, j)] = x[ch, i s + p - pad, j s + q - pad], 0 outside the image (K x P, row-major).
template <class T>
void unfold(const T* x, const ConvShape& g, T* cols) {
  for (std::size_t ch = 0; ch < g.c; ++ch) {
    for (std::size_t p = 0; p < g.k; ++p) {
      for (std::size_t q = 0; q < g.k; ++q, cols += g.pixels()) {
        for (std::size_t i = 0; i < g.ho; ++i) {
          const std::size_t r = i * g.stride + p;  // row in the padded image
          for (std::size_t j = 0; j < g.wo; ++j) {
            const std::size_t col = j * g.stride + q;
            const bool inside = r >= g.pad && r - g.pad < g.h && col >= g.pad && col - g.pad < g.w;
            cols[i * g.wo + j] = inside ? x[(ch * g.h + r - g.pad) * g.w + col - g.pad] : T(0);
          }
        }
      }
    }
  }
}

/// One sample's g_n(W) = dz[n] (co x P) . cols^T (P x K) into w (co x K) and, if b is given, g_n(b)[o] = sum of
/// dz[n, o] into b (co). `cols` holds K x P elements.
template <class T>
void conv_sample(const T* x, const T* dz, const ConvShape& g, T* cols, T* w, T* b) {
  unfold(x, g, cols);
  ag::detail::gemm(false, true, g.co, g.taps(), g.pixels(), T(1), dz, g.pixels(), cols, g.pixels(), T(0), w,
                   g.taps());
  if (!b) return;
  for (std::size_t o = 0; o < g.co; ++o) {
    T sum = 0;
    for (std::size_t t = 0; t < g.pixels(); ++t) sum += dz[o * g.pixels() + t];
    b[o] = sum;
  }
}

/// Every sample's conv_sample into the rows of gw (B, co K) and gb (B, co).
template <class T>
void conv_grads(const Tensor& a, const Tensor& dz, const ConvShape& g, Tensor& gw, Tensor* gb) {
  const std::size_t batch = a.dim(0), in_size = g.c * g.h * g.w, out_size = g.co * g.pixels();
  std::vector<T> cols(g.taps() * g.pixels());
  for (std::size_t n = 0; n < batch; ++n) {
    conv_sample(a.data<T>() + n * in_size, dz.data<T>() + n * out_size, g, cols.data(),
                gw.data<T>() + n * g.co * g.taps(), gb ? gb->data<T>() + n * g.co : nullptr);
  }
}

/// ||g_n(W)||^2 = ||a[n]||^2 ||dz[n]||^2 (+ ||dz[n]||^2 for the bias) into sq; gw = a^T dz, gb = dz summed over n.
template <class T>
void linear_sq_norms(const Tensor& a, const Tensor& dz, std::vector<double>& sq, Tensor& gw, Tensor* gb) {
  const std::size_t batch = a.dim(0), in = a.dim(1), out = dz.dim(1);
  const T* pa = a.data<T>();
  const T* pdz = dz.data<T>();
  for (std::size_t n = 0; n < batch; ++n) {
    const double nd = sum_squares(pdz + n * out, out);
    sq[n] += sum_squares(pa + n * in, in) * nd + (gb ? nd : 0.0);
  }
  ag::detail::gemm(true, false, in, out, batch, T(1), pa, in, pdz, out, T(0), gw.data<T>(), out);
  if (!gb) return;
  T* pb = gb->data<T>();
  for (std::size_t n = 0; n < batch; ++n) {
    for (std::size_t o = 0; o < out; ++o) pb[o] += pdz[n * out + o];
  }
}

/// Each sample's conv_sample in turn into one buffer: its squared norm into sq, its sum into gw and gb.
template <class T>
void conv_sq_norms(const Tensor& a, const Tensor& dz, const ConvShape& g, std::vector<double>& sq, Tensor& gw,
                   Tensor* gb) {
  const std::size_t batch = a.dim(0), in_size = g.c * g.h * g.w, out_size = g.co * g.pixels();
  std::vector<T> cols(g.taps() * g.pixels()), w(g.co * g.taps()), b(g.co);
  for (std::size_t n = 0; n < batch; ++n) {
    conv_sample(a.data<T>() + n * in_size, dz.data<T>() + n * out_size, g, cols.data(), w.data(),
                gb ? b.data() : nullptr);
    sq[n] += sum_squares(w.data(), w.size()) + (gb ? sum_squares(b.data(), g.co) : 0.0);
    for (std::size_t i = 0; i < w.size(); ++i) gw.data<T>()[i] += w[i];
    for (std::size_t o = 0; gb && o < g.co; ++o) gb->data<T>()[o] += b[o];
  }
}

ConvShape conv_shape(const Site& site, const Tensor& dz) {
  const Tensor& a = site.input;
  return ConvShape{a.dim(1), a.dim(2), a.dim(3), site.weight.dim(2), dz.dim(1), dz.dim(2), dz.dim(3),
                   site.stride, site.pad};
}

/// Appends the site's per-sample weight (and bias) gradients to out.grads.
void site_grads(const Site& site, const Tensor& dz, PerSampleGradients& out) {
  const std::size_t batch = site.input.dim(0);
  const ag::DType dtype = site.weight.dtype();
  Tensor gw = Tensor::empty(ag::Shape{batch, site.weight.numel()}, dtype), gb;
  if (site.bias.defined()) gb = Tensor::empty(ag::Shape{batch, site.bias.numel()}, dtype);
  Tensor* pgb = gb.defined() ? &gb : nullptr;
  ag::detail::dispatch(dtype, [&]<class T>() {
    if (site.conv) {
      conv_grads<T>(site.input, dz, conv_shape(site, dz), gw, pgb);
    } else {
      linear_grads<T>(site.input, dz, gw, pgb);
    }
  });
  out.grads.push_back(gw);
  if (pgb) out.grads.push_back(gb);
}

/// Adds the site's per-sample squared norms to out.sq_norms and appends its batch gradients to out.gradient.
void site_sq_norms(const Site& site, const Tensor& dz, PerSampleSqNorms& out) {
  const ag::DType dtype = site.weight.dtype();
  Tensor gw = Tensor::zeros(site.weight.shape(), dtype), gb;
  if (site.bias.defined()) gb = Tensor::zeros(site.bias.shape(), dtype);
  Tensor* pgb = gb.defined() ? &gb : nullptr;
  ag::detail::dispatch(dtype, [&]<class T>() {
    if (site.conv) {
      conv_sq_norms<T>(site.input, dz, conv_shape(site, dz), out.sq_norms, gw, pgb);
    } else {
      linear_sq_norms<T>(site.input, dz, out.sq_norms, gw, pgb);
    }
  });
  out.gradient.push_back(gw);
  if (pgb) out.gradient.push_back(gb);
}

void check_batch(const char* op, const Tensor& x, ag::Labels labels, ag::Reduction reduction) {
  if (!x.defined() || x.rank() == 0 || x.dim(0) == 0) {
    throw std::invalid_argument(fmt::format("{}: the input must be a non-empty batch (B, ...), not {}", op,
                                            x.defined() ? x.describe() : "undefined"));
  }
  if (labels.size() != x.dim(0)) {
    throw std::invalid_argument(
        fmt::format("{}: {} labels for the batch of {} samples {}", op, labels.size(), x.dim(0), x.describe()));
  }
  if (reduction == ag::Reduction::none) {
    throw std::invalid_argument(fmt::format("{}: the reduction must be sum or mean, not none", op));
  }
}

// ---------------------------------------------------------------- statistics

void check_samples(const PerSampleBatch& g, const char* op) {
  if (g.batch < 2) throw std::invalid_argument(fmt::format("{}: needs B >= 2 samples, got {}", op, g.batch));
}

/// Each grads[k] must be (B, numel(params[k])), of the parameter's dtype.
void check_rows(const PerSampleGradients& g, const char* op) {
  if (g.grads.size() != g.params.size()) {
    throw std::invalid_argument(fmt::format("{}: {} gradients for {} parameters", op, g.grads.size(), g.params.size()));
  }
  for (std::size_t k = 0; k < g.grads.size(); ++k) {
    const Tensor& rows = g.grads[k];
    if (!rows.defined() || !(rows.shape() == ag::Shape{g.batch, g.params[k].numel()}) ||
        rows.dtype() != g.params[k].dtype()) {
      throw std::invalid_argument(fmt::format("{}: the per-sample gradients of '{}' are {}, not {}[{}, {}]", op,
                                              k < g.names.size() ? g.names[k] : std::to_string(k),
                                              rows.defined() ? rows.describe() : "undefined",
                                              ag::dtype_name(g.params[k].dtype()), g.batch, g.params[k].numel()));
    }
  }
}

/// Per column j of the (B, P) rows of g_n: the mean and the unbiased variance of u_n = g_n / s, taken on g_n
/// row by row and scaled at the end (by 1/s and 1/s^2).
struct Moments {
  std::vector<double> mean, variance;
};
Moments column_moments(const Tensor& rows, std::size_t batch, double scale) {
  const std::size_t width = rows.numel() / batch;
  Moments m{std::vector<double>(width, 0.0), std::vector<double>(width, 0.0)};
  ag::detail::dispatch(rows.dtype(), [&]<class T>() {
    const T* p = rows.data<T>();
    double* __restrict mean = m.mean.data();
    double* __restrict var = m.variance.data();
    for (std::size_t n = 0; n < batch; ++n) {
      for (std::size_t j = 0; j < width; ++j) mean[j] += p[n * width + j];
    }
    for (std::size_t j = 0; j < width; ++j) mean[j] /= static_cast<double>(batch);
    for (std::size_t n = 0; n < batch; ++n) {
      for (std::size_t j = 0; j < width; ++j) {
        const double d = p[n * width + j] - mean[j];
        var[j] += d * d;
      }
    }
  });
  const double to_var = 1.0 / (static_cast<double>(batch - 1) * scale * scale);
  for (double& v : m.mean) v /= scale;
  for (double& v : m.variance) v *= to_var;
  return m;
}

/// The forward and the one backward sweep both entry points share: every site with its dL/dz.
struct Sweep {
  std::vector<Site> sites;
  std::vector<Tensor> dz;
  std::size_t batch = 0;
  double scale = 1.0, loss = 0.0;
};

Sweep sweep(const char* op, nn::Sequential& model, const Tensor& x, ag::Labels labels, ag::Reduction reduction) {
  check_batch(op, x, labels, reduction);
  if (!exactly<nn::Sequential>(model)) {
    throw std::invalid_argument(fmt::format("{}: the model ({}) is a subclass of Sequential, whose forward may differ "
                                            "from its children's in turn; per_sample_sq_norms_by_sample takes any",
                                            op, model.type_name()));
  }
  detail::ReleaseTapeOnThrow release;
  Sweep out;
  Tensor loss;
  {
    ag::EnableGradGuard recording(true);
    loss = ag::cross_entropy(forward(op, model, "", x, out.sites), labels, reduction);
  }
  out.batch = x.dim(0);
  out.scale = reduction == ag::Reduction::mean ? 1.0 / static_cast<double>(out.batch) : 1.0;
  out.loss = loss.item();
  std::vector<Tensor> outputs;
  for (const Site& site : out.sites) outputs.push_back(site.output);
  if (outputs.empty()) return out;  // the tape is released on the way out
  out.dz = ag::grad({loss}, outputs);  // releases the tape
  release.dismiss();
  return out;
}

/// The sweep's batch, scale and loss, and its sites' parameters by name, weight then bias.
void describe(const Sweep& s, PerSampleBatch& out) {
  out.batch = s.batch;
  out.scale = s.scale;
  out.loss = s.loss;
  for (const Site& site : s.sites) {
    out.names.push_back(site.prefix + "weight");
    out.params.push_back(site.weight);
    if (!site.bias.defined()) continue;
    out.names.push_back(site.prefix + "bias");
    out.params.push_back(site.bias);
  }
}

}  // namespace

// ---------------------------------------------------------------- PerSampleGradients

Tensor PerSampleGradients::sample(std::size_t k, std::size_t n) const {
  if (k >= grads.size() || n >= batch) {
    throw std::out_of_range(fmt::format("PerSampleGradients::sample: parameter {} of {}, sample {} of {}", k,
                                        grads.size(), n, batch));
  }
  const std::size_t width = params[k].numel();
  std::vector<double> row(width);
  for (std::size_t j = 0; j < width; ++j) row[j] = grads[k].at(n * width + j);
  return Tensor::from_data(params[k].shape(), std::span<const double>(row)).to(params[k].dtype());
}

std::vector<Tensor> PerSampleGradients::total() const {
  ag::NoGradGuard no_grad;
  std::vector<Tensor> out;
  for (std::size_t k = 0; k < grads.size(); ++k) out.push_back(ag::reshape(ag::sum(grads[k], 0), params[k].shape()));
  return out;
}

// ---------------------------------------------------------------- per-sample gradients

PerSampleGradients per_sample_gradients(nn::Sequential& model, const Tensor& x, ag::Labels labels,
                                        ag::Reduction reduction) {
  Sweep s = sweep("per_sample_gradients", model, x, labels, reduction);
  PerSampleGradients out;
  describe(s, out);
  for (std::size_t l = 0; l < s.sites.size(); ++l) site_grads(s.sites[l], s.dz[l], out);
  return out;
}

PerSampleSqNorms per_sample_sq_norms(nn::Sequential& model, const Tensor& x, ag::Labels labels,
                                     ag::Reduction reduction) {
  Sweep s = sweep("per_sample_sq_norms", model, x, labels, reduction);
  PerSampleSqNorms out;
  describe(s, out);
  out.sq_norms.assign(s.batch, 0.0);
  for (std::size_t l = 0; l < s.sites.size(); ++l) site_sq_norms(s.sites[l], s.dz[l], out);
  return out;
}

PerSampleSqNorms per_sample_sq_norms_by_sample(nn::Module& model, const Tensor& x, ag::Labels labels,
                                               ag::Reduction reduction) {
  const char* what = "per_sample_sq_norms_by_sample";
  if (reduction == ag::Reduction::none) throw std::invalid_argument(fmt::format("{}: Reduction::none", what));
  if (x.shape().empty() || x.shape()[0] == 0) throw std::invalid_argument(fmt::format("{}: an empty batch", what));
  const std::size_t batch = x.shape()[0];
  if (labels.size() != batch) {
    throw std::invalid_argument(fmt::format("{}: {} labels for a batch of {}", what, labels.size(), batch));
  }
  for (const nn::BatchNorm* bn : nn::batch_norm_layers(model)) {
    if (bn->is_training()) {  // one sample at a time: its statistics, and B updates of the running ones
      throw std::invalid_argument(fmt::format(
          "{}: the model has a batch norm in training mode ({}), which would normalise each sample by itself and "
          "update its running statistics B times: put the model in evaluation mode (model.eval())",
          what, bn->type_name()));
    }
  }
  PerSampleSqNorms out;
  for (const auto& [name, param] : model.named_parameters()) {
    if (!param.requires_grad()) continue;
    out.names.push_back(name);
    out.params.push_back(param);
  }
  out.batch = batch;
  out.scale = reduction == ag::Reduction::mean ? 1.0 / static_cast<double>(batch) : 1.0;
  out.sq_norms.assign(batch, 0.0);
  std::vector<std::vector<double>> total(out.params.size());
  for (std::size_t k = 0; k < out.params.size(); ++k) total[k].assign(out.params[k].numel(), 0.0);
  detail::ReleaseTapeOnThrow release;
  for (std::size_t n = 0; n < batch; ++n) {
    const Tensor loss = ag::cross_entropy(model(ag::narrow(x, 0, n, 1)), labels.subspan(n, 1), ag::Reduction::sum);
    out.loss += out.scale * loss.item();
    const std::vector<Tensor> grads = ag::grad({loss}, out.params);  // .grad untouched; releases the tape
    for (std::size_t k = 0; k < grads.size(); ++k) {
      const std::vector<double> g = grads[k].to_vector();
      for (std::size_t i = 0; i < g.size(); ++i) {
        out.sq_norms[n] += out.scale * out.scale * g[i] * g[i];
        total[k][i] += out.scale * g[i];
      }
    }
  }
  release.dismiss();
  for (std::size_t k = 0; k < total.size(); ++k) {
    out.gradient.push_back(
        Tensor::from_data(out.params[k].shape(), std::span<const double>(total[k])).to(out.params[k].dtype()));
  }
  return out;
}

// ---------------------------------------------------------------- statistics

std::vector<double> per_sample_norms(const PerSampleGradients& g) {
  check_rows(g, "per_sample_norms");
  std::vector<double> sq(g.batch, 0.0);
  for (const Tensor& rows : g.grads) {
    const std::size_t width = g.batch ? rows.numel() / g.batch : 0;
    ag::detail::dispatch(rows.dtype(), [&]<class T>() {
      const T* p = rows.data<T>();
      for (std::size_t n = 0; n < g.batch; ++n) sq[n] += sum_squares(p + n * width, width);
    });
  }
  for (double& v : sq) v = std::sqrt(v);
  return sq;
}

GradientVariance gradient_variance(const PerSampleGradients& g) {
  check_samples(g, "gradient_variance");
  check_rows(g, "gradient_variance");
  GradientVariance out;
  for (std::size_t k = 0; k < g.grads.size(); ++k) {
    const std::vector<double> var = column_moments(g.grads[k], g.batch, g.scale).variance;
    for (double v : var) out.trace += v;
    out.variance.push_back(Tensor::from_data(g.params[k].shape(), std::span<const double>(var)).to(g.params[k].dtype()));
  }
  return out;
}

NoiseScale noise_scale(const PerSampleGradients& g) {
  check_samples(g, "noise_scale");
  check_rows(g, "noise_scale");
  double mean_sq = 0, trace = 0;
  for (const Tensor& grads : g.grads) {
    const Moments m = column_moments(grads, g.batch, g.scale);
    for (double v : m.mean) mean_sq += v * v;
    for (double v : m.variance) trace += v;
  }
  const double gradient_sq = mean_sq - trace / static_cast<double>(g.batch);
  return {gradient_sq, trace, trace / gradient_sq};
}

NoiseScale noise_scale(const PerSampleSqNorms& s) {
  check_samples(s, "noise_scale");
  if (s.sq_norms.size() != s.batch || s.gradient.size() != s.params.size()) {
    throw std::invalid_argument(fmt::format("noise_scale: {} squared norms for a batch of {}, {} gradients for {} "
                                            "parameters", s.sq_norms.size(), s.batch, s.gradient.size(), s.params.size()));
  }
  for (std::size_t k = 0; k < s.params.size(); ++k) {
    if (!s.gradient[k].defined() || s.gradient[k].numel() != s.params[k].numel()) {
      throw std::invalid_argument(fmt::format("noise_scale: the gradient of parameter {} is {}, the parameter {}", k,
                                              s.gradient[k].defined() ? s.gradient[k].describe() : "undefined",
                                              s.params[k].describe()));
    }
  }
  const double batch = static_cast<double>(s.batch);
  double small = 0, big = 0;
  for (double v : s.sq_norms) small += v;
  for (const Tensor& t : s.gradient) {
    for (double v : t.to_vector()) big += v * v;
  }
  if (std::isnan(small) || std::isnan(big)) {  // NaN weights or data: the estimate is NaN, as from the gradients
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {nan, nan, nan};
  }
  return noise_scale(small / (s.scale * s.scale * batch), 1, big / (s.scale * s.scale * batch * batch), s.batch);
}

NoiseScale noise_scale(double small_sq_norm, std::size_t b_small, double big_sq_norm, std::size_t b_big) {
  if (b_small == 0 || b_small >= b_big) {
    throw std::invalid_argument(
        fmt::format("noise_scale: the batch sizes must satisfy 0 < B_small < B_big, got {} and {}", b_small, b_big));
  }
  if (!(small_sq_norm >= 0) || !(big_sq_norm >= 0) || std::isinf(small_sq_norm) || std::isinf(big_sq_norm)) {
    throw std::invalid_argument(fmt::format(
        "noise_scale: the squared norms must be finite and non-negative, got {} (B = {}) and {} (B = {})",
        small_sq_norm, b_small, big_sq_norm, b_big));
  }
  const double small = static_cast<double>(b_small), big = static_cast<double>(b_big);
  const double gradient_sq = (big * big_sq_norm - small * small_sq_norm) / (big - small);
  const double trace = (small_sq_norm - big_sq_norm) / (1.0 / small - 1.0 / big);
  return {gradient_sq, trace, trace / gradient_sq};
}

}  // namespace analysis
