// The numerical validation of 002 §2.2 on its network, 784-300-100-100-10 (ReLU, softmax cross-entropy), in
// float64: train briefly (002: one epoch of SGD, lr 0.1, batch 10), then compare the tape's gradient of the loss
// on one sample with finite differences of the same loss, for a seeded sample of weights and biases drawn from
// every layer:
//   forward   (L(w + h) - L(w)) / h           error O(h)   + round-off O(eps / h)
//   backward  (L(w) - L(w - h)) / h           error O(h)   + round-off O(eps / h)
//   central   (L(w + h) - L(w - h)) / 2h      error O(h^2) + round-off O(eps / h)
// with ag::gradcheck's relative error |a - n| / max(|a|, |n|), at several step sizes h. Per scheme and step it
// reports the mean, median and max relative error and their distribution (a histogram of log10 relative
// errors), as 002's Figures 4 and 5 do.
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
// differences vanish too.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>

#include <fmt/format.h>

#include "autograd/blas.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "examples/common/flags.hpp"
#include "examples/common/lab.hpp"
#include "nn/nn.hpp"
#include "optim/factory.hpp"

namespace {

namespace fs = std::filesystem;
using examples::FlagError;
using Clock = std::chrono::steady_clock;

const char* const kSchemes[] = {"forward", "backward", "central"};
constexpr int kLowestDecade = -14;  // histogram bins: exact 0, below 1e-14, one per decade, 1e-1 and above
constexpr int kHighestDecade = -1;

struct Element {
  std::size_t param = 0, index = 0;
  double analytic = 0;
  // [step][scheme]
  std::vector<std::array<double, 3>> numeric, relative;
};

double relative_error(double a, double n) {
  double scale = std::max(std::abs(a), std::abs(n));
  return scale > 0 ? std::abs(a - n) / scale : 0.0;
}

/// The histogram bin of a relative error: 0 for exact, 1 for below 1e-14, then one per decade.
std::size_t bin_of(double rel) {
  if (rel == 0) return 0;
  int decade = static_cast<int>(std::floor(std::log10(rel)));
  if (decade < kLowestDecade) return 1;
  decade = std::min(decade, kHighestDecade);
  return static_cast<std::size_t>(2 + decade - kLowestDecade);
}
constexpr std::size_t kBins = 2 + kHighestDecade - kLowestDecade + 1;

std::string bin_name(std::size_t bin) {
  if (bin == 0) return "0";
  if (bin == 1) return fmt::format("<1e{}", kLowestDecade);
  int decade = static_cast<int>(bin) - 2 + kLowestDecade;
  return decade == kHighestDecade ? fmt::format(">=1e{}", decade) : fmt::format("1e{}", decade);
}

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

ag::Tensor images_f64(const data::Dataset& set, const std::vector<std::size_t>& indices) {
  std::vector<double> values;
  values.reserve(indices.size() * set.features());
  for (std::size_t i : indices) {
    for (float v : set.image(i)) values.push_back(v);
  }
  return ag::Tensor::from_data(ag::Shape{indices.size(), set.features()}, std::span<const double>(values));
}

double accuracy(nn::Module& model, const data::Dataset& set) {
  ag::NoGradGuard no_grad;
  std::size_t correct = 0;
  for (std::size_t start = 0; start < set.size(); start += 1000) {
    std::vector<std::size_t> idx;
    for (std::size_t i = start; i < std::min(set.size(), start + 1000); ++i) idx.push_back(i);
    ag::Tensor logits = model.forward(images_f64(set, idx));
    const double* z = logits.data<double>();
    for (std::size_t r = 0; r < idx.size(); ++r) {
      const double* row = z + r * 10;
      correct += static_cast<std::int32_t>(std::max_element(row, row + 10) - row) == set.labels[idx[r]];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(set.size());
}

double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

int run(int argc, const char* const* argv) {
  examples::FlagSet flags(argv[0],
                          "Gradient validation of 002 §2.2: the tape's gradient of a float64 784-300-100-100-10 MLP against "
                          "forward, backward\nand central differences, for a sample of weights, at several step sizes.");
  flags.add("hidden", "300,100,100", "hidden layer widths (002's network: 300,100,100)")
      .add("init", "default", "initialiser (see mnist_mlp --help)")
      .add("train-steps", "", "SGD steps before the check (default: one epoch, as 002; 0: check the initial weights)")
      .add("lr", "0.1", "SGD learning rate of the training")
      .add("batch-size", "10", "batch size of the training")
      .add("samples", "200", "parameter elements to check, split evenly over the weights and biases of every layer")
      .add("zero-samples", "20", "extra elements whose analytic gradient is zero (their differences should be too)")
      .add("steps", "1e-2,1e-4,1e-6,1e-8", "finite-difference step sizes h, comma-separated")
      .add("check-batch", "1", "training samples in the loss that is differentiated (002: one)")
      .add("min-loss", "1", "draw the checked samples among those whose loss is at least this (0: any sample)")
      .add("seed", "0", "seed of the weights, the shuffling, the checked sample and the sampled elements")
      .add("dataset", "mnist", "mnist or fashion")
      .add("data", "", "directory of the IDX files (default: data/mnist)")
      .add("threads", "1", "BLAS threads")
      .add("out", "gradcheck-out", "output directory: elements.csv, summary.csv, histogram.csv, PNGs")
      .add("gnuplot", "gnuplot", "the gnuplot program that draws the PNGs")
      .add_switch("no-plots", "write the CSV files only");
  std::vector<std::size_t> hidden;
  std::vector<double> steps;
  std::size_t samples = 0, zero_samples = 0, check_batch = 0, batch_size = 0, seed = 0, train_steps = 0;
  bool steps_given = false;
  double lr = 0, min_loss = 0;
  int threads = 1;
  data::Dataset train, test;
  try {
    flags.parse(argc, argv);
    if (flags.help_requested()) {
      fmt::print("{}", flags.usage());
      return 0;
    }
    hidden = flags.counts("hidden");
    nn::parse_init(flags.text("init"));
    steps_given = flags.given("train-steps");
    if (steps_given) train_steps = flags.count("train-steps");
    lr = flags.number("lr");
    if (lr <= 0) throw FlagError("--lr: must be positive");
    batch_size = flags.count("batch-size");
    if (batch_size == 0) throw FlagError("--batch-size: must be at least 1");
    samples = flags.count("samples");
    if (samples == 0) throw FlagError("--samples: must be at least 1");
    zero_samples = flags.count("zero-samples");
    steps = flags.numbers("steps");
    if (steps.empty()) throw FlagError("--steps: at least one step size");
    for (double h : steps) {
      if (h <= 0) throw FlagError(fmt::format("--steps: step sizes must be positive, got {:g}", h));
    }
    check_batch = flags.count("check-batch");
    if (check_batch == 0) throw FlagError("--check-batch: must be at least 1");
    min_loss = flags.number("min-loss");
    if (min_loss < 0) throw FlagError("--min-loss: must be non-negative");
    seed = flags.count("seed");
    threads = static_cast<int>(flags.count("threads"));
    if (threads < 1 || threads > 256) throw FlagError("--threads: between 1 and 256");
    train = data::load_dataset(flags.text("dataset"), data::Split::train, flags.text("data"));
    test = data::load_dataset(flags.text("dataset"), data::Split::test, flags.text("data"));
  } catch (const std::exception& error) {
    fmt::print(stderr, "{}: {}\n", argv[0], error.what());
    return 2;
  }
  ag::set_blas_threads(threads);
  if (!steps_given) train_steps = (train.size() + batch_size - 1) / batch_size;

  // The network, in float64.
  ag::Generator gen(seed);
  nn::Init init = nn::parse_init(flags.text("init"));
  auto model = std::make_shared<nn::Sequential>();
  std::size_t width = train.features();
  std::string widths = fmt::format("{}", width);
  for (std::size_t h : hidden) {
    model->add(std::make_shared<nn::Linear>(width, h, init, true, &gen, ag::DType::f64));
    model->add(std::make_shared<nn::ReLU>());
    width = h;
    widths += fmt::format("-{}", h);
  }
  model->add(std::make_shared<nn::Linear>(width, data::kMnistClasses, init, true, &gen, ag::DType::f64));
  widths += fmt::format("-{}", data::kMnistClasses);
  std::vector<nn::NamedTensor> params = model->named_parameters();
  fmt::print("# gradcheck_report: MLP {} (float64, {} parameters, init {}) on {}\n", widths, model->parameter_count(),
             flags.text("init"), flags.text("dataset"));

  // Training: plain SGD, as 002.
  auto start = Clock::now();
  double recent_loss = 0;
  std::size_t recent = 0;
  if (train_steps > 0) {
    auto sgd = optim::make_optimizer("sgd", params, lr);
    data::DataLoader loader(train, {.batch_size = batch_size, .shuffle = true, .seed = seed});
    std::size_t step = 0;
    data::Batch batch;
    std::size_t window = std::min<std::size_t>(1000, train_steps);
    while (step < train_steps) {
      if (!loader.next(batch)) {
        loader.begin_epoch();
        continue;
      }
      ag::Tensor x = batch.images.to(ag::DType::f64);
      double loss = sgd->step(optim::Optimizer::LossFn([&] { return ag::cross_entropy(model->forward(x), batch.labels); }));
      ++step;
      if (!std::isfinite(loss)) {
        fmt::print(stderr, "{}: training diverged at step {} (loss {}); use a smaller --lr or a larger --batch-size\n",
                   argv[0], step, loss);
        return 3;
      }
      if (step + window > train_steps) {
        recent_loss += loss;
        ++recent;
      }
    }
  }
  double train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  double test_acc = accuracy(*model, test);
  if (train_steps > 0) {
    fmt::print("# trained {} SGD steps (lr {:g}, batch {}; {:.2f} epochs) in {:.1f} s: mean loss of the last {} steps "
               "{:.4f}, test accuracy {:.2f} %\n",
               train_steps, lr, batch_size, static_cast<double>(train_steps * batch_size) / static_cast<double>(train.size()),
               train_seconds, recent, recent_loss / static_cast<double>(std::max<std::size_t>(recent, 1)), 100 * test_acc);
  } else {
    fmt::print("# no training (--train-steps 0): checking the initial weights; test accuracy {:.2f} %\n", 100 * test_acc);
  }

  // The checked loss: mean cross-entropy on `check_batch` training samples drawn by the seed.
  std::vector<std::size_t> all;
  {
    ag::NoGradGuard no_grad;
    for (std::size_t start = 0; start < train.size(); start += 1000) {
      std::vector<std::size_t> idx;
      for (std::size_t i = start; i < std::min(train.size(), start + 1000); ++i) idx.push_back(i);
      std::vector<std::int32_t> y;
      for (std::size_t i : idx) y.push_back(train.labels[i]);
      ag::Tensor losses = ag::cross_entropy(model->forward(images_f64(train, idx)), y, ag::Reduction::none);
      for (std::size_t r = 0; r < idx.size(); ++r) {
        if (losses.at(r) >= min_loss) all.push_back(idx[r]);
      }
    }
  }
  if (all.size() < check_batch) {
    fmt::print(stderr, "{}: only {} training samples have a loss of at least {:g}; lower --min-loss\n", argv[0],
               all.size(), min_loss);
    return 2;
  }
  fmt::print("# {} of {} training samples have a loss of at least {:g} (--min-loss)\n", all.size(), train.size(),
             min_loss);
  ag::Generator pick(seed + 0x9e3779b97f4a7c15ULL);
  std::vector<std::size_t> chosen = draw(all, check_batch, pick);
  ag::Tensor x = images_f64(train, chosen);
  std::vector<std::int32_t> labels;
  for (std::size_t i : chosen) labels.push_back(train.labels[i]);
  auto loss_value = [&] {
    ag::NoGradGuard no_grad;
    return ag::cross_entropy(model->forward(x), labels).item();
  };
  model->zero_grad();
  ag::Tensor loss = ag::cross_entropy(model->forward(x), labels);
  ag::backward(loss);
  double centre = loss.item();
  std::string chosen_text;
  for (std::size_t i = 0; i < std::min<std::size_t>(chosen.size(), 5); ++i) {
    chosen_text += fmt::format("{}{}", i ? "," : "", chosen[i]);
  }
  fmt::print("# checked loss: cross-entropy on {} training sample(s) (index {}{}), L = {:.6g}\n", chosen.size(),
             chosen_text, chosen.size() > 5 ? ",..." : "", centre);

  // The sample of elements: an even share of every parameter tensor, among its non-zero gradients.
  std::vector<std::vector<std::size_t>> nonzero(params.size()), zero;
  std::vector<std::pair<std::size_t, std::size_t>> zero_pool;
  std::vector<std::size_t> nonzero_sizes;
  std::size_t total_elements = 0;
  for (std::size_t p = 0; p < params.size(); ++p) {
    ag::Tensor g = params[p].second.grad();
    const double* gd = g.data<double>();
    for (std::size_t e = 0; e < g.numel(); ++e) {
      if (gd[e] != 0) {
        nonzero[p].push_back(e);
      } else {
        zero_pool.push_back({p, e});
      }
    }
    nonzero_sizes.push_back(nonzero[p].size());
    total_elements += g.numel();
  }
  std::vector<std::size_t> quota = quotas(nonzero_sizes, samples);
  std::vector<Element> elements;
  for (std::size_t p = 0; p < params.size(); ++p) {
    const double* gd = params[p].second.grad().data<double>();
    for (std::size_t e : draw(nonzero[p], quota[p], pick)) elements.push_back({p, e, gd[e], {}, {}});
  }
  std::size_t checked_nonzero = elements.size();
  for (auto [p, e] : draw(zero_pool, zero_samples, pick)) elements.push_back({p, e, 0.0, {}, {}});
  std::string per_tensor;
  for (std::size_t p = 0; p < params.size(); ++p) {
    per_tensor += fmt::format("{}{} {}/{}", p ? ", " : "", params[p].first, quota[p], nonzero[p].size());
  }
  fmt::print("# {} of {} parameter elements have a non-zero gradient on this sample; checked {} of them ({}), "
             "plus {} zero-gradient elements\n",
             total_elements - zero_pool.size(), total_elements, checked_nonzero, per_tensor,
             elements.size() - checked_nonzero);

  // Finite differences, perturbing the element in place and restoring it exactly.
  for (Element& el : elements) {
    double* w = params[el.param].second.data<double>();
    double original = w[el.index];
    for (double h : steps) {
      w[el.index] = original + h;
      double plus = loss_value();
      w[el.index] = original - h;
      double minus = loss_value();
      w[el.index] = original;
      std::array<double, 3> numeric{(plus - centre) / h, (centre - minus) / h, (plus - minus) / (2 * h)};
      std::array<double, 3> rel{};
      for (int s = 0; s < 3; ++s) rel[s] = relative_error(el.analytic, numeric[s]);
      el.numeric.push_back(numeric);
      el.relative.push_back(rel);
    }
  }
  if (loss_value() != centre) {
    fmt::print(stderr, "{}: internal error: the loss changed after the perturbations were undone\n", argv[0]);
    return 1;
  }

  // Statistics per scheme and step, over the non-zero elements.
  struct Row {
    std::string scheme;
    double h = 0, mean = 0, med = 0, max = 0;
    std::size_t n = 0;
    std::array<std::size_t, kBins> histogram{};
  };
  std::vector<Row> rows;
  for (int s = 0; s < 3; ++s) {
    for (std::size_t k = 0; k < steps.size(); ++k) {
      Row row;
      row.scheme = kSchemes[s];
      row.h = steps[k];
      std::vector<double> rel;
      for (std::size_t i = 0; i < checked_nonzero; ++i) rel.push_back(elements[i].relative[k][s]);
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

  fmt::print("\nRelative error |analytic - numeric| / max(|analytic|, |numeric|) over the {} checked elements:\n\n",
             checked_nonzero);
  fmt::print("| scheme | h | mean | mean (%) | median | max |\n|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    fmt::print("| {} | {:g} | {:.3e} | {:.3e} | {:.3e} | {:.3e} |\n", r.scheme, r.h, r.mean, 100 * r.mean, r.med, r.max);
  }
  fmt::print("\nDistribution of the relative errors (count per decade: column 1e-k counts errors in [1e-k, 1e-k+1)):\n\n");
  std::string header = "| scheme | h |", rule = "|---|---:|";
  for (std::size_t b = 0; b < kBins; ++b) {
    header += fmt::format(" {} |", bin_name(b));
    rule += "---:|";
  }
  fmt::print("{}\n{}\n", header, rule);
  for (const Row& r : rows) {
    std::string line = fmt::format("| {} | {:g} |", r.scheme, r.h);
    for (std::size_t count : r.histogram) line += count ? fmt::format(" {} |", count) : " · |";
    fmt::print("{}\n", line);
  }

  // The zero-gradient elements: their differences should vanish.
  if (elements.size() > checked_nonzero) {
    double largest = 0;
    std::size_t exact = 0;
    for (std::size_t i = checked_nonzero; i < elements.size(); ++i) {
      bool all_zero = true;
      for (const auto& numeric : elements[i].numeric) {
        for (double n : numeric) {
          largest = std::max(largest, std::abs(n));
          all_zero = all_zero && n == 0;
        }
      }
      exact += all_zero;
    }
    fmt::print("\nZero-gradient elements: {} checked; every difference is exactly 0 for {} of them; the largest "
               "|numeric| is {:.3g}.\n",
               elements.size() - checked_nonzero, exact, largest);
  }
  for (const Row& r : rows) {
    if (r.scheme == "central" && r.h == 1e-8) {
      fmt::print("\n002 §2.2 reports a mean relative error below 3e-4 % for central differences at h = 1e-8; here "
                 "{:.3g} %.\n", 100 * r.mean);
    }
  }
  for (const char* scheme : kSchemes) {
    const Row* best = nullptr;
    for (const Row& r : rows) {
      if (r.scheme == scheme && (!best || r.mean < best->mean)) best = &r;
    }
    fmt::print("best step for {}: h = {:g} (mean relative error {:.2e})\n", scheme, best->h, best->mean);
  }

  // Files.
  std::string out = flags.text("out");
  try {
    fs::create_directories(out);
    std::string csv = "param,index,analytic,h,forward,backward,central,rel_forward,rel_backward,rel_central\n";
    for (const Element& el : elements) {
      for (std::size_t k = 0; k < steps.size(); ++k) {
        csv += fmt::format("{},{},{:.17g},{:g},{:.17g},{:.17g},{:.17g},{:.6e},{:.6e},{:.6e}\n", params[el.param].first,
                           el.index, el.analytic, steps[k], el.numeric[k][0], el.numeric[k][1], el.numeric[k][2],
                           el.relative[k][0], el.relative[k][1], el.relative[k][2]);
      }
    }
    examples::lab::write_text((fs::path(out) / "elements.csv").string(), csv);
    std::string summary = "scheme,h,n,mean_rel,mean_rel_percent,median_rel,max_rel\n";
    std::string histogram = "scheme,h,bin,low,high,count\n";
    for (const Row& r : rows) {
      summary += fmt::format("{},{:g},{},{:.6e},{:.6e},{:.6e},{:.6e}\n", r.scheme, r.h, r.n, r.mean, 100 * r.mean, r.med, r.max);
      for (std::size_t b = 0; b < kBins; ++b) {
        double low = b == 0 ? 0 : b == 1 ? 0 : std::pow(10.0, static_cast<int>(b) - 2 + kLowestDecade);
        double high = b == 0 ? 0 : b == 1 ? std::pow(10.0, kLowestDecade)
                             : (static_cast<int>(b) - 2 + kLowestDecade == kHighestDecade ? INFINITY
                                                                                            : 10 * low);
        histogram += fmt::format("{},{:g},{},{:g},{:g},{}\n", r.scheme, r.h, bin_name(b), low, high, r.histogram[b]);
      }
    }
    examples::lab::write_text((fs::path(out) / "summary.csv").string(), summary);
    examples::lab::write_text((fs::path(out) / "histogram.csv").string(), histogram);
    fmt::print("\nwrote {0}/elements.csv, {0}/summary.csv, {0}/histogram.csv\n", out);

    if (!flags.on("no-plots")) {
      // errors.dat: h, then mean and median per scheme; hist.dat: one block per step, log10 bin centre and counts.
      std::string errors = "# h forward_mean forward_median backward_mean backward_median central_mean central_median\n";
      for (std::size_t k = 0; k < steps.size(); ++k) {
        errors += fmt::format("{:g}", steps[k]);
        for (int s = 0; s < 3; ++s) {
          const Row& r = rows[s * steps.size() + k];
          errors += fmt::format(" {:.6e} {:.6e}", r.mean, r.med);
        }
        errors += "\n";
      }
      std::string hist;
      for (std::size_t k = 0; k < steps.size(); ++k) {
        hist += fmt::format("# h = {:g}: log10(relative error) bin centre, count forward, backward, central\n", steps[k]);
        for (std::size_t b = 1; b < kBins; ++b) {
          double centre_bin = static_cast<int>(b) - 2 + kLowestDecade + 0.5;
          hist += fmt::format("{}", centre_bin);
          for (int s = 0; s < 3; ++s) hist += fmt::format(" {}", rows[s * steps.size() + k].histogram[b]);
          hist += "\n";
        }
        hist += "\n\n";
      }
      examples::lab::write_text((fs::path(out) / "errors.dat").string(), errors);
      examples::lab::write_text((fs::path(out) / "hist.dat").string(), hist);
      examples::lab::write_text((fs::path(out) / "reference.dat").string(), "# 002 §2.2: h, mean relative error\n1e-8 3e-6\n");
      std::string why;
      std::string terminal = examples::lab::png_terminal(flags.text("gnuplot"), &why);
      std::string context = fmt::format("MLP {}, float64, after {} SGD steps (lr {:g}, batch {}); {} elements, loss on {} sample(s)",
                                        widths, train_steps, lr, batch_size, checked_nonzero, chosen.size());
      std::size_t cols = steps.size() > 1 ? 2 : 1, rows_n = (steps.size() + cols - 1) / cols;
      std::string script = "# Written by gradcheck_report: re-render with `gnuplot plot.gp` in this directory.\n";
      script += (terminal.empty() ? examples::lab::terminal_line("pngcairo", 1000, 650)
                                  : examples::lab::terminal_line(terminal, 1000, 650)) + "\n";
      script += "set grid lc rgb '#d0d0d0'\nset output 'errors.png'\n";
      script += fmt::format("set title 'Relative error of the finite differences against the step h (mean and median)' . \"\\n\" . {}\n",
                            examples::lab::gnuplot_string(context));
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
      int height = 350 * static_cast<int>(rows_n) + 80;
      script += fmt::format("\n{}\n", examples::lab::terminal_line(terminal.empty() ? "pngcairo" : terminal, 1000, height));
      script += "set output 'histogram.png'\nunset logscale\nset format x '%g'\nset format y '%g'\n"
                "set style fill transparent solid 0.3\nset xlabel 'log10(relative error)'\nset ylabel 'elements'\n"
                "set key top left box opaque Left reverse\nset yrange [0:*]\nset offsets 0, 0, graph 0.1, 0\n";
      script += fmt::format("set multiplot layout {},{} title 'Distribution of the relative errors' . \"\\n\" . {}\n", rows_n,
                            cols, examples::lab::gnuplot_string(context));
      for (std::size_t k = 0; k < steps.size(); ++k) {
        script += fmt::format("set title 'h = {:g}'\n", steps[k]);
        script += fmt::format("set xrange [{}:{}]\n", kLowestDecade - 1, kHighestDecade + 1);
        script += fmt::format(
            "plot 'hist.dat' index {0} using 1:2 with boxes lc rgb '#1f77b4' title 'forward', \\\n"
            "     'hist.dat' index {0} using 1:3 with boxes lc rgb '#ff7f0e' title 'backward', \\\n"
            "     'hist.dat' index {0} using 1:4 with boxes lc rgb '#2ca02c' title 'central'\n",
            k);
      }
      script += "unset multiplot\nunset output\n";
      examples::lab::write_text((fs::path(out) / "plot.gp").string(), script);
      if (terminal.empty()) {
        fmt::print(stderr, "{}: warning: no plots: {}\n", argv[0], why);
      } else if (std::string error = examples::lab::run_gnuplot(flags.text("gnuplot"), out, "plot.gp"); !error.empty()) {
        fmt::print(stderr, "{}: warning: no plots: {}\n", argv[0], error);
      } else {
        fmt::print("wrote {0}/errors.png, {0}/histogram.png\n", out);
      }
    }
  } catch (const std::exception& error) {
    fmt::print(stderr, "{}: {}\n", argv[0], error.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
