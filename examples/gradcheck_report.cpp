// The numerical validation of 002 §2.2 on its network, 784-300-100-100-10 (ReLU, softmax cross-entropy), in
// float64: train briefly (002: one epoch of SGD, lr 0.1, batch 10), then compare the tape's gradient of the loss
// on one sample with finite differences of the same loss, for a seeded sample of weights and biases drawn from
// every layer:
//   forward   (L(w + h) - L(w)) / h           error O(h)   + round-off O(eps / h)
//   backward  (L(w) - L(w - h)) / h           error O(h)   + round-off O(eps / h)
//   central   (L(w + h) - L(w - h)) / 2h      error O(h^2) + round-off O(eps / h)
// at several step sizes h. The differences and the relative error |a - n| / max(|a|, |n|) are the library's
// (ag::gradcheck_elements, ag::relative_error, autograd/gradcheck.hpp), applied to the loss written as a function
// of the network's parameters. Per scheme and step the report gives the mean, median and max relative error and
// their distribution (a histogram of log10 relative errors), as 002's Figures 4 and 5 do.
//
// 002 reports a mean relative error below 3e-4 % (3e-6) for central differences at h = 1e-8. In float64 the
// best step is much larger than that: truncation falls as h (h^2 for central) while round-off in L grows as
// eps / h, so the error against h is the classic V, lowest near h ~ 1e-8 for forward / backward (sqrt(eps)) and
// h ~ 1e-5 for central (eps^(1/3)); at h = 1e-8 central is already on the round-off side.
//
// Which sample is checked matters more than anything else. A sample the network already classifies with
// confidence has a loss of ~1e-6 and gradients of the same order, while L itself carries a round-off of
// ~eps * |logits| ~ 1e-15: its finite differences at h = 1e-8 are mostly noise (relative errors ~10 %). The
// checked samples are therefore drawn among those the trained network has not learned yet, with a loss of at
// least --min-loss (default 1, i.e. p(correct class) <= 0.37); --min-loss 0 draws among all of them. 002 does
// not say which sample it used.
//
// Elements whose gradient on the checked sample is exactly zero (weights of a zero pixel, units behind a dead
// ReLU: most of the first layer on one MNIST image) tell nothing about the error, so the sample is drawn among
// the non-zero ones; a separate handful of zero-gradient elements (--zero-samples) checks that their finite
// differences vanish too. Asking for more elements than there are (--samples, --zero-samples) is refused.
//
// Outputs, in --out: elements.csv (every element, step and scheme), summary.csv, histogram.csv, and unless
// --no-plots errors.png and histogram.png (errors.dat, hist.dat, reference.dat, plot.gp: re-render with
// `gnuplot plot.gp` there). Exit codes: 0 done, 2 bad flags or data, 3 training diverged, 1 anything else.
#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "autograd/blas.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"
#include "examples/common/list_flag.hpp"
#include "examples/common/preflight.hpp"
#include "nn/nn.hpp"
#include "optim/sgd.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ag::DifferenceScheme;

constexpr std::array<DifferenceScheme, 3> kSchemes{DifferenceScheme::forward, DifferenceScheme::backward,
                                                   DifferenceScheme::central};
constexpr int kLowestDecade = -14;  // histogram bins: exact 0, below 1e-14, one per decade, 1e-1 and above
constexpr int kHighestDecade = -1;
constexpr std::size_t kBins = 2 + kHighestDecade - kLowestDecade + 1;

// ---------------------------------------------------------------- the command line

struct Settings {
  std::vector<std::size_t> hidden{300, 100, 100};
  std::string init = "default";
  std::size_t train_steps = 0;  // 0 with train_steps_given false: one epoch
  bool train_steps_given = false;
  double lr = 0.1;
  std::size_t batch_size = 10, samples = 200, zero_samples = 20, check_batch = 1;
  std::vector<double> steps{1e-2, 1e-4, 1e-6, 1e-8};
  double min_loss = 1;
  std::uint64_t seed = 0;
  std::string dataset = "mnist", data, out = "gradcheck-out", gnuplot = "gnuplot";
  int threads = 1;
  bool no_plots = false;
};

/// CLI11 check of an initialiser's name, with nn::parse_init's message.
CLI::Validator initialiser_name() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          nn::parse_init(text);
          return {};
        } catch (const std::exception& error) {
          return error.what();
        }
      },
      "");
}

void declare_flags(CLI::App& app, Settings& s) {
  examples::add_list(app, "--hidden", s.hidden, "hidden layer widths, comma-separated (002's network: 300,100,100)",
                     examples::whole_number(1))->default_str("300,100,100");
  app.add_option("--init", s.init, "initialiser (see mnist_mlp --help)")
      ->check(initialiser_name())->type_name("NAME")->capture_default_str();
  examples::count_option(app.add_option("--train-steps", s.train_steps,
                                        "SGD steps before the check (default: one epoch, as 002; 0: check the initial "
                                        "weights)"));
  app.add_option("--lr", s.lr, "SGD learning rate of the training")->check(examples::positive())->capture_default_str();
  examples::count_option(app.add_option("--batch-size", s.batch_size, "batch size of the training"), 1)
      ->capture_default_str();
  examples::count_option(app.add_option("--samples", s.samples,
                                        "parameter elements to check, split evenly over the weights and biases of "
                                        "every layer (at most those with a non-zero gradient)"),
                         1)
      ->capture_default_str();
  examples::count_option(app.add_option("--zero-samples", s.zero_samples,
                                        "extra elements whose analytic gradient is zero (their differences should be "
                                        "too)"))
      ->capture_default_str();
  examples::add_list(app, "--steps", s.steps, "finite-difference step sizes h, comma-separated", examples::positive())
      ->default_str("1e-2,1e-4,1e-6,1e-8");
  examples::count_option(app.add_option("--check-batch", s.check_batch,
                                        "training samples in the loss that is differentiated (002: one)"),
                         1)
      ->capture_default_str();
  app.add_option("--min-loss", s.min_loss, "draw the checked samples among those whose loss is at least this (0: any sample)")
      ->check(examples::positive(true))->capture_default_str();
  examples::count_option(app.add_option("--seed", s.seed,
                                        "seed of the weights, the shuffling, the checked sample and the sampled "
                                        "elements"))
      ->capture_default_str();
  app.add_option("--dataset", s.dataset, "mnist or fashion")->capture_default_str();
  examples::path_option(app.add_option("--data", s.data, "directory of the IDX files (default: the data set's; for MNIST $TAPEGRAD_MNIST_DIR, else ./data/mnist)"));
  app.add_option("--threads", s.threads, "BLAS threads")->check(CLI::Range(1, 256))->capture_default_str();
  examples::path_option(app.add_option("--out", s.out, "output directory: elements.csv, summary.csv, histogram.csv, PNGs"))
      ->capture_default_str();
  CLI::Option* gnuplot = app.add_option("--gnuplot", s.gnuplot, "the gnuplot program that draws the PNGs")->capture_default_str();
  app.add_flag("--no-plots", s.no_plots, "write the CSV files only")->excludes(gnuplot);
}

struct Parsed {
  int exit_code = -1;  // -1: go on; 0: --help (message is the usage); 2: a bad flag (message says which)
  std::string message;
  Settings settings;
};

Parsed parse_flags(int argc, const char* const* argv) {
  Parsed parsed;
  CLI::App app("Gradient validation of 002 §2.2: the tape's gradient of a float64 784-300-100-100-10 MLP against "
               "forward, backward\nand central differences, for a sample of weights, at several step sizes.",
               "gradcheck_report");
  declare_flags(app, parsed.settings);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return {0, app.help(), {}};
  } catch (const CLI::ParseError& error) {
    return {2, fmt::format("{} (see --help)", error.what()), {}};
  }
  parsed.settings.train_steps_given = app.count("--train-steps") > 0;
  return parsed;
}

constexpr std::size_t kMaxTrainEpochs = 100;

/// What the data and the network allow of the counts asked for: "" if all is well, else why not.
std::string check_counts(const Settings& s, std::size_t train_size, std::size_t parameter_count) {
  // 002 checks after one epoch; a hundred is far past where the check says anything new, and a bound keeps
  // a mistyped count (1e15) from running for ever.
  const std::size_t epoch_steps = (train_size + s.batch_size - 1) / s.batch_size;
  if (s.train_steps > kMaxTrainEpochs * epoch_steps) {
    return fmt::format("--train-steps {}: more than {} epochs ({} steps at --batch-size {} on {} training samples)",
                       s.train_steps, kMaxTrainEpochs, kMaxTrainEpochs * epoch_steps, s.batch_size, train_size);
  }
  if (s.check_batch > train_size) {
    return fmt::format("--check-batch {}: more than the {} training samples", s.check_batch, train_size);
  }
  if (s.samples > parameter_count) {
    return fmt::format("--samples {}: more than the network's {} parameter elements", s.samples, parameter_count);
  }
  if (s.zero_samples > parameter_count) {
    return fmt::format("--zero-samples {}: more than the network's {} parameter elements", s.zero_samples,
                       parameter_count);
  }
  return {};
}

// ---------------------------------------------------------------- sampling

/// `count` distinct entries of `pool`, drawn with `gen` (partial Fisher-Yates); all of them when fewer.
template <class T>
std::vector<T> draw(std::vector<T> pool, std::size_t count, ag::Generator& gen) {
  count = std::min(count, pool.size());
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t j = i + static_cast<std::size_t>(gen.below(pool.size() - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(count);
  return pool;
}

/// Splits `total` over pools of the given sizes as evenly as the sizes allow.
std::vector<std::size_t> quotas(const std::vector<std::size_t>& sizes, std::size_t total) {
  std::vector<std::size_t> quota(sizes.size(), 0);
  std::size_t left = total;
  while (left > 0) {
    std::vector<std::size_t> open;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (quota[i] < sizes[i]) open.push_back(i);
    }
    if (open.empty()) break;
    std::size_t share = std::max<std::size_t>(1, left / open.size());
    for (std::size_t i : open) {
      std::size_t take = std::min({share, sizes[i] - quota[i], left});
      quota[i] += take;
      left -= take;
      if (left == 0) break;
    }
  }
  return quota;
}

// ---------------------------------------------------------------- the network, its training, its loss

ag::Tensor images_f64(const data::Dataset& set, const std::vector<std::size_t>& indices) {
  std::vector<double> values;
  values.reserve(indices.size() * set.features());
  for (std::size_t i : indices) {
    for (float v : set.image(i)) values.push_back(v);
  }
  return ag::Tensor::from_data(ag::Shape{indices.size(), set.features()}, std::span<const double>(values));
}

std::vector<std::int32_t> labels_of(const data::Dataset& set, const std::vector<std::size_t>& indices) {
  std::vector<std::int32_t> labels;
  for (std::size_t i : indices) labels.push_back(set.labels[i]);
  return labels;
}

/// The indices [start, start + 1000) of the data set, cut at its end: the evaluation chunks.
std::vector<std::size_t> chunk(const data::Dataset& set, std::size_t start) {
  std::vector<std::size_t> indices;
  for (std::size_t i = start; i < std::min(set.size(), start + 1000); ++i) indices.push_back(i);
  return indices;
}

/// 002's network in float64: Linear-ReLU-...-Linear, `in` -> hidden widths -> the ten classes.
std::shared_ptr<nn::Sequential> make_network(std::size_t in, const Settings& s, ag::Generator& gen) {
  nn::Init init = nn::parse_init(s.init);
  auto model = std::make_shared<nn::Sequential>();
  std::size_t width = in;
  for (std::size_t h : s.hidden) {
    model->add(std::make_shared<nn::Linear>(width, h, init, true, &gen, ag::DType::f64));
    model->add(std::make_shared<nn::ReLU>());
    width = h;
  }
  model->add(std::make_shared<nn::Linear>(width, data::kMnistClasses, init, true, &gen, ag::DType::f64));
  return model;
}

std::string widths_of(std::size_t in, const std::vector<std::size_t>& hidden) {
  std::string widths = fmt::format("{}", in);
  for (std::size_t h : hidden) widths += fmt::format("-{}", h);
  return widths + fmt::format("-{}", data::kMnistClasses);
}

/// The network's loss as a function of its parameters (weight and bias of each layer, in the order of
/// named_parameters): the function ag::gradcheck_elements differentiates. The same ops as the modules'
/// forward (nn::Linear is ag::linear), which run() checks bit for bit.
ag::Tensor network_loss(const std::vector<ag::Tensor>& p, const ag::Tensor& x, const std::vector<std::int32_t>& labels) {
  ag::Tensor h = x;
  for (std::size_t layer = 0; layer + 1 < p.size(); layer += 2) {
    h = ag::linear(h, p[layer], p[layer + 1]);
    if (layer + 2 < p.size()) h = ag::relu(h);
  }
  return ag::cross_entropy(h, labels);
}

struct Training {
  std::size_t steps = 0, recent = 0, diverged_at = 0;  // diverged_at: the step whose loss was not finite, or 0
  double seconds = 0, recent_loss = 0, diverged_loss = 0;
};

/// Plain SGD, as 002; the mean loss over the last (up to) 1000 steps.
Training train_briefly(nn::Module& model, const data::Dataset& train, const Settings& s, std::size_t steps) {
  Training t;
  t.steps = steps;
  auto start = Clock::now();
  optim::SGD sgd(model.named_parameters(), {.lr = s.lr});
  data::DataLoader loader(train, {.batch_size = s.batch_size, .shuffle = true, .seed = s.seed});
  data::Batch batch;
  std::size_t window = std::min<std::size_t>(1000, steps), step = 0;
  while (step < steps) {
    if (!loader.next(batch)) {
      loader.begin_epoch();
      continue;
    }
    ag::Tensor x = batch.images.to(ag::DType::f64);
    double loss = sgd.step(optim::Optimizer::LossFn([&] { return ag::cross_entropy(model.forward(x), batch.labels); }));
    ++step;
    if (!std::isfinite(loss)) {
      t.diverged_at = step;
      t.diverged_loss = loss;
      return t;
    }
    if (step + window > steps) {
      t.recent_loss += loss;
      ++t.recent;
    }
  }
  t.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return t;
}

double accuracy(nn::Module& model, const data::Dataset& set) {
  ag::NoGradGuard no_grad;
  std::size_t correct = 0;
  for (std::size_t start = 0; start < set.size(); start += 1000) {
    std::vector<std::size_t> idx = chunk(set, start);
    ag::Tensor logits = model.forward(images_f64(set, idx));
    const double* z = logits.data<double>();
    for (std::size_t r = 0; r < idx.size(); ++r) {
      const double* row = z + r * 10;
      correct += static_cast<std::int32_t>(std::max_element(row, row + 10) - row) == set.labels[idx[r]];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(set.size());
}

/// The training samples whose loss under the model is at least `min_loss`, in data set order.
std::vector<std::size_t> unlearned_samples(nn::Module& model, const data::Dataset& train, double min_loss) {
  ag::NoGradGuard no_grad;
  std::vector<std::size_t> found;
  for (std::size_t start = 0; start < train.size(); start += 1000) {
    std::vector<std::size_t> idx = chunk(train, start);
    ag::Tensor losses =
        ag::cross_entropy(model.forward(images_f64(train, idx)), labels_of(train, idx), ag::Reduction::none);
    for (std::size_t r = 0; r < idx.size(); ++r) {
      if (losses.at(r) >= min_loss) found.push_back(idx[r]);
    }
  }
  return found;
}

// ---------------------------------------------------------------- the elements checked

/// The parameter elements split by their gradient on the checked loss: the non-zero ones per tensor, the
/// zero ones all together.
struct GradientPools {
  std::vector<std::vector<std::size_t>> nonzero;
  std::vector<ag::ElementIndex> zero;
  std::size_t total = 0, nonzero_total = 0;
};

GradientPools split_by_gradient(const std::vector<ag::Tensor>& gradients) {
  GradientPools pools;
  pools.nonzero.resize(gradients.size());
  for (std::size_t p = 0; p < gradients.size(); ++p) {
    const double* g = gradients[p].data<double>();
    for (std::size_t e = 0; e < gradients[p].numel(); ++e) {
      if (g[e] != 0) {
        pools.nonzero[p].push_back(e);
      } else {
        pools.zero.push_back({p, e});
      }
    }
    pools.total += gradients[p].numel();
    pools.nonzero_total += pools.nonzero[p].size();
  }
  return pools;
}

struct ElementSample {
  std::vector<ag::ElementIndex> elements;  // the non-zero ones first
  std::size_t nonzero = 0;
  std::vector<std::size_t> quota;  // per parameter tensor
};

/// An even share of `samples` over every parameter tensor among its non-zero gradients, then
/// `zero_samples` zero-gradient elements.
ElementSample choose_elements(const GradientPools& pools, std::size_t samples, std::size_t zero_samples,
                              ag::Generator& pick) {
  ElementSample sample;
  std::vector<std::size_t> sizes;
  for (const auto& pool : pools.nonzero) sizes.push_back(pool.size());
  sample.quota = quotas(sizes, samples);
  for (std::size_t p = 0; p < pools.nonzero.size(); ++p) {
    for (std::size_t e : draw(pools.nonzero[p], sample.quota[p], pick)) sample.elements.push_back({p, e});
  }
  sample.nonzero = sample.elements.size();
  for (const ag::ElementIndex& e : draw(pools.zero, zero_samples, pick)) sample.elements.push_back(e);
  return sample;
}

// ---------------------------------------------------------------- statistics

/// The histogram bin of a relative error: 0 for exact, 1 for below 1e-14, then one per decade.
std::size_t bin_of(double rel) {
  if (rel == 0) return 0;
  int decade = static_cast<int>(std::floor(std::log10(rel)));
  if (decade < kLowestDecade) return 1;
  decade = std::min(decade, kHighestDecade);
  return static_cast<std::size_t>(2 + decade - kLowestDecade);
}

int decade_of(std::size_t bin) { return static_cast<int>(bin) - 2 + kLowestDecade; }

std::string bin_name(std::size_t bin) {
  if (bin == 0) return "0";
  if (bin == 1) return fmt::format("<1e{}", kLowestDecade);
  int decade = decade_of(bin);
  return decade == kHighestDecade ? fmt::format(">=1e{}", decade) : fmt::format("1e{}", decade);
}

double bin_low(std::size_t bin) { return bin < 2 ? 0 : std::pow(10.0, decade_of(bin)); }

double bin_high(std::size_t bin) {
  if (bin == 0) return 0;
  if (bin == 1) return std::pow(10.0, kLowestDecade);
  return decade_of(bin) == kHighestDecade ? INFINITY : 10 * bin_low(bin);
}

double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/// The relative errors of one scheme at one step, over the checked non-zero elements.
struct Row {
  DifferenceScheme scheme = DifferenceScheme::central;
  double h = 0, mean = 0, med = 0, max = 0;
  std::size_t n = 0;
  std::array<std::size_t, kBins> histogram{};
};

/// One row per scheme and step, scheme-major: the row of scheme s at step k is rows[s * steps + k].
std::vector<Row> summarise(std::span<const ag::ElementCheck> checks, const std::vector<double>& steps) {
  std::vector<Row> rows;
  for (DifferenceScheme scheme : kSchemes) {
    for (std::size_t k = 0; k < steps.size(); ++k) {
      Row row{.scheme = scheme, .h = steps[k]};
      std::vector<double> rel;
      for (const ag::ElementCheck& check : checks) rel.push_back(check.relative_error(k, scheme));
      row.n = rel.size();
      for (double r : rel) {
        row.mean += r;
        row.max = std::max(row.max, r);
        ++row.histogram[bin_of(r)];
      }
      row.mean /= static_cast<double>(std::max<std::size_t>(rel.size(), 1));
      row.med = median(rel);
      rows.push_back(row);
    }
  }
  return rows;
}

// ---------------------------------------------------------------- the printed report

void print_error_table(const std::vector<Row>& rows, std::size_t checked) {
  fmt::print("\nRelative error |analytic - numeric| / max(|analytic|, |numeric|) over the {} checked elements:\n\n",
             checked);
  fmt::print("| scheme | h | mean | mean (%) | median | max |\n|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    fmt::print("| {} | {:g} | {:.3e} | {:.3e} | {:.3e} | {:.3e} |\n", ag::to_string(r.scheme), r.h, r.mean,
               100 * r.mean, r.med, r.max);
  }
}

void print_histogram_table(const std::vector<Row>& rows) {
  fmt::print("\nDistribution of the relative errors (count per decade: column 1e-k counts errors in [1e-k, 1e-k+1)):\n\n");
  std::string header = "| scheme | h |", rule = "|---|---:|";
  for (std::size_t b = 0; b < kBins; ++b) {
    header += fmt::format(" {} |", bin_name(b));
    rule += "---:|";
  }
  fmt::print("{}\n{}\n", header, rule);
  for (const Row& r : rows) {
    std::string line = fmt::format("| {} | {:g} |", ag::to_string(r.scheme), r.h);
    for (std::size_t count : r.histogram) line += count ? fmt::format(" {} |", count) : " · |";
    fmt::print("{}\n", line);
  }
}

/// The zero-gradient elements: their differences should vanish.
void print_zero_elements(std::span<const ag::ElementCheck> zero) {
  if (zero.empty()) return;
  double largest = 0;
  std::size_t exact = 0;
  for (const ag::ElementCheck& check : zero) {
    bool all_zero = true;
    for (const ag::Differences& d : check.numeric) {
      for (DifferenceScheme scheme : kSchemes) {
        largest = std::max(largest, std::abs(d[scheme]));
        all_zero = all_zero && d[scheme] == 0;
      }
    }
    exact += all_zero;
  }
  fmt::print("\nZero-gradient elements: {} checked; every difference is exactly 0 for {} of them; the largest "
             "|numeric| is {:.3g}.\n",
             zero.size(), exact, largest);
}

/// 002's figure beside ours, and the best step of each scheme.
void print_comparison(const std::vector<Row>& rows) {
  for (const Row& r : rows) {
    if (r.scheme == DifferenceScheme::central && r.h == 1e-8) {
      fmt::print("\n002 §2.2 reports a mean relative error below 3e-4 % for central differences at h = 1e-8; here "
                 "{:.3g} %.\n", 100 * r.mean);
    }
  }
  for (DifferenceScheme scheme : kSchemes) {
    const Row* best = nullptr;
    for (const Row& r : rows) {
      if (r.scheme == scheme && (!best || r.mean < best->mean)) best = &r;
    }
    fmt::print("best step for {}: h = {:g} (mean relative error {:.2e})\n", ag::to_string(scheme), best->h, best->mean);
  }
}

// ---------------------------------------------------------------- files

std::string elements_csv(const std::vector<ag::ElementCheck>& checks, const std::vector<nn::NamedTensor>& params) {
  std::string csv = "param,index,analytic,h,forward,backward,central,rel_forward,rel_backward,rel_central\n";
  for (const ag::ElementCheck& c : checks) {
    for (std::size_t k = 0; k < c.numeric.size(); ++k) {
      const ag::Differences& d = c.numeric[k];
      csv += fmt::format("{},{},{:.17g},{:g},{:.17g},{:.17g},{:.17g},{:.6e},{:.6e},{:.6e}\n",
                         params[c.element.input].first, c.element.index, c.analytic, d.h, d.forward, d.backward,
                         d.central, c.relative_error(k, DifferenceScheme::forward),
                         c.relative_error(k, DifferenceScheme::backward), c.relative_error(k, DifferenceScheme::central));
    }
  }
  return csv;
}

std::string summary_csv(const std::vector<Row>& rows) {
  std::string csv = "scheme,h,n,mean_rel,mean_rel_percent,median_rel,max_rel\n";
  for (const Row& r : rows) {
    csv += fmt::format("{},{:g},{},{:.6e},{:.6e},{:.6e},{:.6e}\n", ag::to_string(r.scheme), r.h, r.n, r.mean,
                       100 * r.mean, r.med, r.max);
  }
  return csv;
}

std::string histogram_csv(const std::vector<Row>& rows) {
  std::string csv = "scheme,h,bin,low,high,count\n";
  for (const Row& r : rows) {
    for (std::size_t b = 0; b < kBins; ++b) {
      csv += fmt::format("{},{:g},{},{:g},{:g},{}\n", ag::to_string(r.scheme), r.h, bin_name(b), bin_low(b),
                         bin_high(b), r.histogram[b]);
    }
  }
  return csv;
}

/// errors.dat: h, then the mean and median of each scheme.
std::string errors_dat(const std::vector<Row>& rows, const std::vector<double>& steps) {
  std::string dat = "# h forward_mean forward_median backward_mean backward_median central_mean central_median\n";
  for (std::size_t k = 0; k < steps.size(); ++k) {
    dat += fmt::format("{:g}", steps[k]);
    for (std::size_t s = 0; s < kSchemes.size(); ++s) {
      const Row& r = rows[s * steps.size() + k];
      dat += fmt::format(" {:.6e} {:.6e}", r.mean, r.med);
    }
    dat += "\n";
  }
  return dat;
}

/// hist.dat: one block per step; the log10 bin centre, then the count of each scheme.
std::string hist_dat(const std::vector<Row>& rows, const std::vector<double>& steps) {
  std::string dat;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    dat += fmt::format("# h = {:g}: log10(relative error) bin centre, count forward, backward, central\n", steps[k]);
    for (std::size_t b = 1; b < kBins; ++b) {
      dat += fmt::format("{}", decade_of(b) + 0.5);
      for (std::size_t s = 0; s < kSchemes.size(); ++s) dat += fmt::format(" {}", rows[s * steps.size() + k].histogram[b]);
      dat += "\n";
    }
    dat += "\n\n";
  }
  return dat;
}

/// plot.gp: errors.png (mean and median error against h, 002's figure as a point) and histogram.png (one
/// panel per step). `context` is the titles' second line.
std::string plot_script(const std::string& terminal, const std::string& context, const std::vector<double>& steps) {
  namespace lab = examples::lab;
  std::string term = terminal.empty() ? "pngcairo" : terminal;
  std::size_t cols = steps.size() > 1 ? 2 : 1, rows = (steps.size() + cols - 1) / cols;
  std::string script = "# Written by gradcheck_report: re-render with `gnuplot plot.gp` in this directory.\n";
  script += lab::terminal_line(term, 1000, 650) + "\n";
  script += "set grid lc rgb '#d0d0d0'\nset output 'errors.png'\n";
  script += fmt::format("set title 'Relative error of the finite differences against the step h (mean and median)' . \"\\n\" . {}\n",
                        lab::gnuplot_string(context));
  script += "set logscale xy\nset format x '1e%T'\nset format y '1e%T'\nset xlabel 'step h'\n"
            "set ylabel 'relative error |a - n| / max(|a|, |n|)'\nset key below box Left reverse maxrows 3 width 2 spacing 1.1\nset bmargin 9\n";
  script += "plot 'errors.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#1f77b4' title 'forward (mean)', \\\n"
            "     'errors.dat' using 1:3 with linespoints lw 1 dt 2 pt 6 lc rgb '#1f77b4' title 'forward (median)', \\\n"
            "     'errors.dat' using 1:4 with linespoints lw 2 pt 5 lc rgb '#ff7f0e' title 'backward (mean)', \\\n"
            "     'errors.dat' using 1:5 with linespoints lw 1 dt 2 pt 4 lc rgb '#ff7f0e' title 'backward (median)', \\\n"
            "     'errors.dat' using 1:6 with linespoints lw 2 pt 9 lc rgb '#2ca02c' title 'central (mean)', \\\n"
            "     'errors.dat' using 1:7 with linespoints lw 1 dt 2 pt 8 lc rgb '#2ca02c' title 'central (median)', \\\n"
            "     'reference.dat' using 1:2 with points pt 3 ps 2 lw 2 lc rgb 'black' "
            "title \"002: central, h = 1e-8, mean < 3e-4 %\"\n";
  script += fmt::format("\n{}\n", lab::terminal_line(term, 1000, 350 * static_cast<int>(rows) + 80));
  script += "set output 'histogram.png'\nunset logscale\nset format x '%g'\nset format y '%g'\n"
            "set style fill transparent solid 0.3\nset xlabel 'log10(relative error)'\nset ylabel 'elements'\n"
            "set key top left box opaque Left reverse\nset yrange [0:*]\nset offsets 0, 0, graph 0.1, 0\n";
  script += fmt::format("set multiplot layout {},{} title 'Distribution of the relative errors' . \"\\n\" . {}\n", rows,
                        cols, lab::gnuplot_string(context));
  for (std::size_t k = 0; k < steps.size(); ++k) {
    script += fmt::format("set title 'h = {:g}'\n", steps[k]);
    script += fmt::format("set xrange [{}:{}]\n", kLowestDecade - 1, kHighestDecade + 1);
    script += fmt::format("plot 'hist.dat' index {0} using 1:2 with boxes lc rgb '#1f77b4' title 'forward', \\\n"
                          "     'hist.dat' index {0} using 1:3 with boxes lc rgb '#ff7f0e' title 'backward', \\\n"
                          "     'hist.dat' index {0} using 1:4 with boxes lc rgb '#2ca02c' title 'central'\n",
                          k);
  }
  return script + "unset multiplot\nunset output\n";
}

/// Writes the plots' data and script into `out` and runs gnuplot; a missing gnuplot is a warning.
void write_plots(const Settings& s, const std::vector<Row>& rows, const std::string& context) {
  namespace lab = examples::lab;
  lab::write_text((fs::path(s.out) / "errors.dat").string(), errors_dat(rows, s.steps));
  lab::write_text((fs::path(s.out) / "hist.dat").string(), hist_dat(rows, s.steps));
  lab::write_text((fs::path(s.out) / "reference.dat").string(), "# 002 §2.2: h, mean relative error\n1e-8 3e-6\n");
  std::string why;
  std::string terminal = lab::png_terminal(s.gnuplot, &why);
  lab::write_text((fs::path(s.out) / "plot.gp").string(), plot_script(terminal, context, s.steps));
  if (terminal.empty()) {
    fmt::print(stderr, "gradcheck_report: warning: no plots: {}\n", why);
  } else if (std::string error = lab::run_gnuplot(s.gnuplot, s.out, "plot.gp"); !error.empty()) {
    fmt::print(stderr, "gradcheck_report: warning: no plots: {}\n", error);
  } else {
    fmt::print("wrote {0}/errors.png, {0}/histogram.png\n", s.out);
  }
}

/// The CSV files, then the plots unless --no-plots; throws std::runtime_error naming a file it cannot write.
void write_outputs(const Settings& s, const std::vector<ag::ElementCheck>& checks,
                   const std::vector<nn::NamedTensor>& params, const std::vector<Row>& rows, const std::string& context) {
  namespace lab = examples::lab;
  fs::create_directories(s.out);
  lab::write_text((fs::path(s.out) / "elements.csv").string(), elements_csv(checks, params));
  lab::write_text((fs::path(s.out) / "summary.csv").string(), summary_csv(rows));
  lab::write_text((fs::path(s.out) / "histogram.csv").string(), histogram_csv(rows));
  fmt::print("\nwrote {0}/elements.csv, {0}/summary.csv, {0}/histogram.csv\n", s.out);
  if (!s.no_plots) write_plots(s, rows, context);
}

// ---------------------------------------------------------------- the program

/// The checked loss: the mean cross-entropy on a few training samples, as a function of the parameters.
struct CheckedLoss {
  std::vector<std::size_t> chosen;
  ag::Tensor x;
  std::vector<std::int32_t> labels;
  ag::TensorFunction of_parameters() const {
    return [x = x, labels = labels](const std::vector<ag::Tensor>& p) { return network_loss(p, x, labels); };
  }
};

CheckedLoss checked_loss(const data::Dataset& train, const std::vector<std::size_t>& candidates, std::size_t count,
                         ag::Generator& pick) {
  CheckedLoss loss;
  loss.chosen = draw(candidates, count, pick);
  loss.x = images_f64(train, loss.chosen);
  loss.labels = labels_of(train, loss.chosen);
  return loss;
}

void print_training(const Training& t, const Settings& s, std::size_t train_size, double test_acc) {
  if (t.steps == 0) {
    fmt::print("# no training (--train-steps 0): checking the initial weights; test accuracy {:.2f} %\n", 100 * test_acc);
    return;
  }
  fmt::print("# trained {} SGD steps (lr {:g}, batch {}; {:.2f} epochs) in {:.1f} s: mean loss of the last {} steps "
             "{:.4f}, test accuracy {:.2f} %\n",
             t.steps, s.lr, s.batch_size, static_cast<double>(t.steps * s.batch_size) / static_cast<double>(train_size),
             t.seconds, t.recent, t.recent_loss / static_cast<double>(std::max<std::size_t>(t.recent, 1)), 100 * test_acc);
}

void print_checked_loss(const CheckedLoss& loss, double value) {
  std::string text;
  for (std::size_t i = 0; i < std::min<std::size_t>(loss.chosen.size(), 5); ++i) {
    text += fmt::format("{}{}", i ? "," : "", loss.chosen[i]);
  }
  fmt::print("# checked loss: cross-entropy on {} training sample(s) (index {}{}), L = {:.6g}\n", loss.chosen.size(),
             text, loss.chosen.size() > 5 ? ",..." : "", value);
}

void print_sample(const ElementSample& sample, const GradientPools& pools, const std::vector<nn::NamedTensor>& params) {
  std::string per_tensor;
  for (std::size_t p = 0; p < params.size(); ++p) {
    per_tensor += fmt::format("{}{} {}/{}", p ? ", " : "", params[p].first, sample.quota[p], pools.nonzero[p].size());
  }
  fmt::print("# {} of {} parameter elements have a non-zero gradient on this sample; checked {} of them ({}), "
             "plus {} zero-gradient elements\n",
             pools.nonzero_total, pools.total, sample.nonzero, per_tensor, sample.elements.size() - sample.nonzero);
}

/// What the sample of elements cannot give: "" if --samples and --zero-samples fit, else why not.
std::string check_pools(const Settings& s, const GradientPools& pools) {
  if (s.samples > pools.nonzero_total) {
    return fmt::format("--samples {}: only {} parameter elements have a non-zero gradient on the checked sample",
                       s.samples, pools.nonzero_total);
  }
  if (s.zero_samples > pools.zero.size()) {
    return fmt::format("--zero-samples {}: only {} parameter elements have a zero gradient on the checked sample",
                       s.zero_samples, pools.zero.size());
  }
  return {};
}

int fail(int code, const std::string& message) {
  examples::report_error("gradcheck_report", message);
  return code;
}

/// After the flags: train, choose the loss and the elements, measure, summarise, write.
int report(const Settings& s, const data::Dataset& train, const data::Dataset& test) {
  ag::Generator gen(s.seed);
  auto model = make_network(train.features(), s, gen);
  std::vector<nn::NamedTensor> params = model->named_parameters();
  if (std::string why = check_counts(s, train.size(), model->parameter_count()); !why.empty()) return fail(2, why);
  std::string widths = widths_of(train.features(), s.hidden);
  fmt::print("# gradcheck_report: MLP {} (float64, {} parameters, init {}) on {}\n", widths, model->parameter_count(),
             s.init, s.dataset);

  std::size_t steps = s.train_steps_given ? s.train_steps : (train.size() + s.batch_size - 1) / s.batch_size;
  Training training = train_briefly(*model, train, s, steps);
  if (training.diverged_at) {
    return fail(3, fmt::format("training diverged at step {} (loss {}); use a smaller --lr or a larger --batch-size",
                               training.diverged_at, training.diverged_loss));
  }
  print_training(training, s, train.size(), accuracy(*model, test));

  std::vector<std::size_t> candidates = unlearned_samples(*model, train, s.min_loss);
  if (candidates.size() < s.check_batch) {
    return fail(2, fmt::format("only {} training samples have a loss of at least {:g}; lower --min-loss",
                               candidates.size(), s.min_loss));
  }
  fmt::print("# {} of {} training samples have a loss of at least {:g} (--min-loss)\n", candidates.size(),
             train.size(), s.min_loss);
  ag::Generator pick(s.seed + 0x9e3779b97f4a7c15ULL);
  CheckedLoss loss = checked_loss(train, candidates, s.check_batch, pick);
  ag::TensorFunction f = loss.of_parameters();
  std::vector<ag::Tensor> weights = model->parameters();
  ag::Tensor value = f(weights);
  std::vector<ag::Tensor> gradients = ag::grad({value}, weights);
  {
    ag::NoGradGuard no_grad;
    if (ag::cross_entropy(model->forward(loss.x), loss.labels).item() != value.item()) {
      return fail(1, "internal error: the loss written as a function of the parameters differs from the network's");
    }
  }
  print_checked_loss(loss, value.item());

  GradientPools pools = split_by_gradient(gradients);
  if (std::string why = check_pools(s, pools); !why.empty()) return fail(2, why);
  ElementSample sample = choose_elements(pools, s.samples, s.zero_samples, pick);
  print_sample(sample, pools, params);

  std::vector<ag::ElementCheck> checks = ag::gradcheck_elements(f, weights, sample.elements, s.steps);
  std::span<const ag::ElementCheck> nonzero(checks.data(), sample.nonzero);
  std::vector<Row> rows = summarise(nonzero, s.steps);
  print_error_table(rows, sample.nonzero);
  print_histogram_table(rows);
  print_zero_elements(std::span<const ag::ElementCheck>(checks).subspan(sample.nonzero));
  print_comparison(rows);

  std::string context = fmt::format("MLP {}, float64, after {} SGD steps (lr {:g}, batch {}); {} elements, loss on {} sample(s)",
                                    widths, steps, s.lr, s.batch_size, sample.nonzero, loss.chosen.size());
  write_outputs(s, checks, params, rows, context);
  return 0;
}

int run(int argc, const char* const* argv) {
  examples::guard_output("gradcheck_report");
  Parsed parsed = parse_flags(argc, argv);
  if (parsed.exit_code == 0) std::fputs(parsed.message.c_str(), stdout);
  if (parsed.exit_code >= 0) return parsed.exit_code == 0 ? 0 : fail(parsed.exit_code, parsed.message);
  const Settings& s = parsed.settings;
  data::Dataset train, test;
  try {
    examples::prepare_output_dir("--out", s.out, {"elements.csv", "summary.csv", "histogram.csv"});
    train = data::load_dataset(s.dataset, data::Split::train, s.data);
    test = data::load_dataset(s.dataset, data::Split::test, s.data);
  } catch (const std::exception& error) {
    return fail(2, error.what());
  }
  ag::set_blas_threads(s.threads);
  try {
    return report(s, train, test);
  } catch (const std::bad_alloc& error) {
    std::string widths;
    for (std::size_t w : s.hidden) widths += (widths.empty() ? "" : ",") + std::to_string(w);
    return fail(2, fmt::format("out of memory: the network of --hidden {} does not fit in this machine's memory ({})",
                               widths, error.what()));
  } catch (const std::exception& error) {
    return fail(1, error.what());
  }
}

}  // namespace

// tests/test_gradcheck_report.cpp compiles this file without its main().
#ifndef GRADCHECK_REPORT_NO_MAIN
int main(int argc, char** argv) { return run(argc, argv); }
#endif
