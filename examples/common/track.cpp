#include "examples/common/track.hpp"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "analysis/hessian.hpp"
#include "analysis/per_sample.hpp"
#include "analysis/spectrum.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/file.hpp"
#include "data/loader.hpp"
#include "examples/common/preflight.hpp"
#include "nn/layers.hpp"
#include "nn/loss.hpp"

namespace examples {

config::Registry<TrackerEntry>& trackers() {
  static config::Registry<TrackerEntry> registry("tracker");
  return registry;
}

config::Spec resolve_tracker(const config::Spec& spec) {
  config::Spec resolved{spec.name, {}};
  for (auto& [key, value] : trackers().at(spec.name).resolve(spec)) resolved.args.emplace_back(key, value);
  return resolved;
}

namespace {

template <class O>
void register_tracker(std::string name, std::string summary, config::OptionTable<O> table,
                      std::function<std::unique_ptr<Tracker>(const O&, const data::Dataset&, bool)> build) {
  std::string where = name;
  trackers().add(config::entry_with_options<TrackerEntry>(std::move(name), std::move(summary), std::move(table), O{},
                                                          where, std::move(build)));
}

bool due(std::size_t step, std::size_t every) { return step % every == 0; }

double squared_norm(const ag::Tensor& t) {
  auto sum_of_squares = [&](const auto* v) {
    double sum = 0;
    for (std::size_t i = 0, n = t.numel(); i < n; ++i) sum += static_cast<double>(v[i]) * v[i];
    return sum;
  };
  return t.dtype() == ag::DType::f64 ? sum_of_squares(t.data<double>()) : sum_of_squares(t.data<float>());
}

// ---- grad-norm

struct EveryOptions {
  std::size_t every = 1;
};

config::OptionTable<EveryOptions> every_table(std::string help) {
  return config::OptionTable<EveryOptions>().count("every", &EveryOptions::every, 1, 1'000'000'000, std::move(help));
}

class GradNorm : public Tracker {
 public:
  explicit GradNorm(std::size_t every) : every_(every) {}
  std::vector<std::string> columns(const nn::Module&) const override { return {"grad_norm"}; }
  bool reads_gradients() const override { return true; }
  std::vector<double> measure(const TrackStep& s) override {
    if (!due(s.step, every_)) return {};
    double sum = 0;
    for (const ag::Tensor& p : s.model.parameters()) {
      if (p.grad().defined()) sum += squared_norm(p.grad());
    }
    return {std::sqrt(sum)};
  }

 private:
  std::size_t every_;
};

// ---- update-norm

class UpdateNorm : public Tracker {
 public:
  explicit UpdateNorm(std::size_t every) : every_(every) {}
  std::vector<std::string> columns(const nn::Module& model) const override {
    std::vector<std::string> names{"update_norm"};
    for (const auto& [name, p] : model.named_parameters()) names.push_back("update_norm/" + name);
    return names;
  }
  bool needs_weights_before() const override { return true; }
  std::vector<double> measure(const TrackStep& s) override {
    std::vector<ag::Tensor> now = s.model.parameters();
    if (!due(s.step, every_)) return {};
    std::vector<double> values{0};
    ag::NoGradGuard no_grad;
    for (std::size_t k = 0; k < now.size(); ++k) {
      double squared = squared_norm(ag::sub(now[k], s.before[k]));
      values[0] += squared;
      values.push_back(std::sqrt(squared));
    }
    values[0] = std::sqrt(values[0]);
    return values;
  }

 private:
  std::size_t every_;
};

// ---- sharpness and trace: the Hessian of the training loss on a fixed subset

struct CurvatureOptions {
  std::size_t every = 100, samples = 1000, steps = 20, probes = 10;
};

/// The first `samples` training images, loaded once.
data::Batch first_samples(const data::Dataset& train, bool images, std::size_t samples) {
  data::DataLoader loader(train, {.batch_size = std::min(samples, train.size()), .shuffle = false, .image_shape = images});
  data::Batch batch;
  loader.next(batch);
  return batch;
}

/// `use(model)` with the model in evaluation mode (dropout off), restored after.
template <class Use>
auto in_eval_mode(nn::Module& model, Use use) {
  struct Restore {
    nn::Module& m;
    bool training;
    ~Restore() { m.train(training); }
  } restore{model, model.is_training()};
  model.eval();
  return use();
}

/// The first `samples` training images, once, and the Hessian of the mean cross-entropy on them.
class SubsetHessian {
 public:
  SubsetHessian(const data::Dataset& train, bool images, std::size_t samples)
      : batch_(first_samples(train, images, samples)) {}
  /// The Hessian operator of the model's `loss` (in evaluation mode), alive while `use` runs.
  template <class Use>
  auto with_operator(nn::Module& model, nn::ClassifierLoss loss, Use use) {
    return in_eval_mode(model, [&] {
      analysis::HessianOperator op([&] { return nn::classifier_loss(loss, model(batch_.images), batch_.labels); },
                                   model.parameters());
      return use(op);
    });
  }

 private:
  data::Batch batch_;
};

class Sharpness : public Tracker {
 public:
  Sharpness(const CurvatureOptions& o, const data::Dataset& train, bool images)
      : options_(o), subset_(train, images, o.samples) {}
  std::vector<std::string> columns(const nn::Module&) const override { return {"sharpness"}; }
  std::vector<double> measure(const TrackStep& s) override {
    if (!due(s.step, options_.every)) return {};
    return subset_.with_operator(s.model, s.loss, [&](const analysis::HessianOperator& op) {
      analysis::Eigenpairs top = analysis::lanczos_eigenpairs(op, 1, {.steps = options_.steps, .seed = s.step});
      return std::vector<double>{top.values.at(0)};
    });
  }

 private:
  CurvatureOptions options_;
  SubsetHessian subset_;
};

class Trace : public Tracker {
 public:
  Trace(const CurvatureOptions& o, const data::Dataset& train, bool images) : options_(o), subset_(train, images, o.samples) {}
  std::vector<std::string> columns(const nn::Module&) const override { return {"trace", "trace_se"}; }
  std::vector<double> measure(const TrackStep& s) override {
    if (!due(s.step, options_.every)) return {};
    return subset_.with_operator(s.model, s.loss, [&](const analysis::HessianOperator& op) {
      analysis::TraceEstimate t = analysis::hutchinson_trace(op, options_.probes, s.step);
      return std::vector<double>{t.estimate, t.standard_error};
    });
  }

 private:
  CurvatureOptions options_;
  SubsetHessian subset_;
};

// ---- noise-scale: McCandlish et al.'s B_simple from per-sample gradients on a fixed subset

class NoiseScale : public Tracker {
 public:
  NoiseScale(const CurvatureOptions& o, const data::Dataset& train, bool images)
      : options_(o), batch_(first_samples(train, images, o.samples)) {}
  std::vector<std::string> columns(const nn::Module&) const override { return {"noise_scale", "grad_sq", "trace_cov"}; }
  /// Per-sample gradients are of the cross-entropy (analysis/per_sample.hpp).
  bool takes_loss(nn::ClassifierLoss loss) const override { return loss == nn::ClassifierLoss::cross_entropy; }
  std::vector<double> measure(const TrackStep& s) override {
    if (!due(s.step, options_.every)) return {};
    return in_eval_mode(s.model, [&] {
      analysis::NoiseScale b = analysis::noise_scale(per_sample(s.model));
      return std::vector<double>{b.simple, b.gradient_sq, b.trace};
    });
  }

 private:
  /// One sweep for an nn::Sequential of the layers the per-sample rules know; any other model (a user's own
  /// Module class, a layer without a rule) sample by sample, B times the cost.
  /// (A Sequential the rules refuse is known after its first measurement: later ones go sample by sample at once.)
  analysis::PerSampleSqNorms per_sample(nn::Module& model) {
    auto* sequential = dynamic_cast<nn::Sequential*>(&model);
    if (sequential && one_sweep_) {
      try {
        return analysis::per_sample_sq_norms(*sequential, batch_.images, batch_.labels);
      } catch (const std::invalid_argument&) {  // a module the one-sweep rules do not cover
        one_sweep_ = false;
      }
    }
    return analysis::per_sample_sq_norms_by_sample(model, batch_.images, batch_.labels);
  }

  CurvatureOptions options_;
  data::Batch batch_;
  bool one_sweep_ = true;
};

config::OptionTable<CurvatureOptions> curvature_table(bool lanczos) {
  config::OptionTable<CurvatureOptions> table;
  table.count("every", &CurvatureOptions::every, 1, 1'000'000'000, "measure every this many steps")
      .count("samples", &CurvatureOptions::samples, 1, 1'000'000, "the first this many training images");
  if (lanczos) {
    table.count("steps", &CurvatureOptions::steps, 1, 1000, "Lanczos steps (products of H)");
  } else {
    table.count("probes", &CurvatureOptions::probes, 2, 100000, "Rademacher probes (products of H)");
  }
  return table;
}

const bool registered = [] {
  register_tracker<EveryOptions>("grad-norm", "the norm of the step's gradient, all parameters together",
                                 every_table("measure every this many steps"),
                                 [](const EveryOptions& o, const data::Dataset&, bool) {
                                   return std::make_unique<GradNorm>(o.every);
                                 });
  register_tracker<EveryOptions>("update-norm", "the norm of the step's change of the weights, in all and per tensor",
                                 every_table("measure every this many steps"),
                                 [](const EveryOptions& o, const data::Dataset&, bool) {
                                   return std::make_unique<UpdateNorm>(o.every);
                                 });
  register_tracker<CurvatureOptions>(
      "sharpness", "the largest Hessian eigenvalue of the training loss on a fixed subset (Lanczos)",
      curvature_table(true), [](const CurvatureOptions& o, const data::Dataset& train, bool images) {
        return std::make_unique<Sharpness>(o, train, images);
      });
  register_tracker<CurvatureOptions>(
      "trace", "the Hessian's trace on a fixed subset (Hutchinson), with its standard error",
      curvature_table(false), [](const CurvatureOptions& o, const data::Dataset& train, bool images) {
        return std::make_unique<Trace>(o, train, images);
      });
  register_tracker<CurvatureOptions>(
      "noise-scale", "the simple gradient noise scale tr(Σ)/|G|² (McCandlish et al. 2018) from per-sample gradients "
      "on a fixed subset",
      config::OptionTable<CurvatureOptions>()
          .count("every", &CurvatureOptions::every, 1, 1'000'000'000, "measure every this many steps")
          .count("samples", &CurvatureOptions::samples, 2, 1'000'000, "the first this many training images"),
      [](const CurvatureOptions& o, const data::Dataset& train, bool images) {
        return std::make_unique<NoiseScale>(o, train, images);
      });
  return true;
}();

}  // namespace

TrackLog::TrackLog(const std::vector<config::Spec>& specs, const std::string& path, const nn::Module& model,
                   const data::Dataset& train, bool images, std::size_t resumed_step, nn::ClassifierLoss loss,
                   bool gradients_kept)
    : loss_(loss), path_(path) {
  if (specs.empty()) return;
  std::string header = "step,epoch,loss";
  for (const config::Spec& spec : specs) {
    trackers_.push_back({spec.text(), trackers().at(spec.name).make(spec, train, images), 0, 0});
    if (!trackers_.back().tracker->takes_loss(loss)) {
      throw std::runtime_error(fmt::format("--track {}: cannot measure a run trained with --loss {}", spec.text(),
                                           nn::classifier_loss_name(loss)));
    }
    if (!gradients_kept && trackers_.back().tracker->reads_gradients()) {
      throw std::runtime_error(fmt::format("--track {}: the optimiser updates weights inside backward "
                                           "(in_backward=true) and keeps no gradient of them to measure",
                                           spec.text()));
    }
    const std::vector<std::string> columns = trackers_.back().tracker->columns(model);
    for (const std::string& column : columns) header += "," + column;
    trackers_.back().columns = columns.size();
  }
  header += "\n";
  data::check_writable(path, "the track log");
  if (resumed_step > 0) cut_log(path, resumed_step, header);
  file_ = RowLog(path, "the track log", resumed_step > 0, header);
}

void TrackLog::before_step(const nn::Module& model) {
  before_.clear();
  for (const Entry& e : trackers_) {
    if (!e.tracker->needs_weights_before()) continue;
    for (const ag::Tensor& p : model.parameters()) before_.push_back(p.clone());
    return;
  }
}

void TrackLog::after_step(nn::Module& model, std::size_t step, std::size_t epoch, double loss) {
  std::string row = fmt::format("{},{},{:.9g}", step, epoch, loss);
  for (Entry& e : trackers_) {
    auto start = std::chrono::steady_clock::now();
    std::vector<double> values = e.tracker->measure({model, step, before_, loss_});
    e.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (values.empty()) {
      row.append(e.columns, ',');  // not measured in this step
      continue;
    }
    if (values.size() != e.columns) {
      throw std::logic_error(fmt::format("--track {}: {} values for its {} columns", e.spec, values.size(), e.columns));
    }
    for (double v : values) row += std::isnan(v) ? std::string(",nan") : fmt::format(",{:.9g}", v);  // not -nan
  }
  file_.append(row + "\n");
}

double TrackLog::seconds() const {
  double total = 0;
  for (const Entry& e : trackers_) total += e.seconds;
  return total;
}

std::vector<std::pair<std::string, double>> TrackLog::seconds_by_tracker() const {
  std::vector<std::pair<std::string, double>> out;
  for (const Entry& e : trackers_) out.emplace_back(e.spec, e.seconds);
  return out;
}

}  // namespace examples
