// Trackers: what a run measures while it trains, every step or every K steps, into a per-step CSV
// (--track SPEC ... --track-log FILE). Registered by name with their options, like the optimisers:
//
//   grad-norm(every=1)                          ‖g‖ of the step's gradient, all parameters together
//   update-norm(every=1)                        ‖Δw‖ of the step, in all and per parameter tensor
//   sharpness(every=100,samples=1000,steps=20)  λ_max of the training loss's Hessian on the first `samples`
//                                               training images (Lanczos, analysis/spectrum.hpp)
//   trace(every=100,samples=1000,probes=10)     tr(H) on the same images by Hutchinson, with its standard error
//   noise-scale(every=100,samples=1000)         B_simple = tr(Σ)/|G|² from per-sample gradients on the same images
//                                               (one sweep for an nn::Sequential the per-sample rules cover; any
//                                               other model, a program's own Module class, sample by sample)
//
// Each tracker's time is kept apart from the step's, so its overhead can be reported as a fraction.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"
#include "config/registry.hpp"
#include "config/spec.hpp"
#include "data/dataset.hpp"
#include "nn/loss.hpp"
#include "examples/common/row_log.hpp"
#include "nn/module.hpp"

namespace examples {

/// What a tracker sees after a step.
struct TrackStep {
  nn::Module& model;
  std::size_t step = 0;
  /// The parameters' values before the step (only for trackers that ask for them).
  const std::vector<ag::Tensor>& before;
  /// The run's loss (--loss), the one whose curvature is measured.
  nn::ClassifierLoss loss = nn::ClassifierLoss::cross_entropy;
};

class Tracker {
 public:
  virtual ~Tracker() = default;
  /// The CSV columns this tracker writes, for `model`.
  virtual std::vector<std::string> columns(const nn::Module& model) const = 0;
  /// One value per column for this step, or none (an empty vector) in a step it does not measure: its cells
  /// are left empty then, and a NaN it measured is written "nan".
  virtual std::vector<double> measure(const TrackStep& step) = 0;
  /// True if measure() needs the parameters before the step (TrackStep::before).
  virtual bool needs_weights_before() const { return false; }
  /// False if this tracker cannot measure a run trained with `loss` (checked before training).
  virtual bool takes_loss(nn::ClassifierLoss) const { return true; }
  /// True if measure() reads the parameters' .grad() (which an optimiser updating inside backward,
  /// sgd(in_backward=true), leaves empty for the weights it updates: checked before training).
  virtual bool reads_gradients() const { return false; }
};

/// What a tracker is made from: the spec, the training set, and whether the model takes images.
struct TrackerEntry : config::EntryInfo {
  std::function<std::unique_ptr<Tracker>(const config::Spec&, const data::Dataset&, bool images)> make;
  std::function<std::vector<std::pair<std::string, std::string>>(const config::Spec&)> resolve;
};

config::Registry<TrackerEntry>& trackers();

/// A run's trackers and their CSV: "step,epoch,loss,<each tracker's columns>", a row per step.
class TrackLog {
 public:
  TrackLog() = default;
  /// Makes the trackers of `specs` (resolved) and opens `path` (checked writable first). A resumed run
  /// (`resumed_step` > 0) cuts the file back to that step and appends. std::runtime_error naming the file,
  /// a tracker that cannot measure `loss`, or one that reads gradients when `gradients_kept` is false (an
  /// optimiser that updates inside backward), before the file is touched.
  TrackLog(const std::vector<config::Spec>& specs, const std::string& path, const nn::Module& model,
           const data::Dataset& train, bool images, std::size_t resumed_step,
           nn::ClassifierLoss loss = nn::ClassifierLoss::cross_entropy, bool gradients_kept = true);
  bool active() const { return !trackers_.empty(); }
  /// Before a step: keeps the weights if a tracker needs them.
  void before_step(const nn::Module& model);
  /// After step `step`: a row of every tracker's values. Throws std::runtime_error if the file cannot be written.
  void after_step(nn::Module& model, std::size_t step, std::size_t epoch, double loss);
  /// Seconds spent measuring, in all and by tracker spec.
  double seconds() const;
  std::vector<std::pair<std::string, double>> seconds_by_tracker() const;

 private:
  struct Entry {
    std::string spec;
    std::unique_ptr<Tracker> tracker;
    std::size_t columns = 0;
    double seconds = 0;
  };
  std::vector<Entry> trackers_;
  nn::ClassifierLoss loss_ = nn::ClassifierLoss::cross_entropy;
  std::vector<ag::Tensor> before_;
  std::string path_;
  RowLog file_;
};

/// The spec with every option written out; config::SpecError for an unknown name, key or value.
config::Spec resolve_tracker(const config::Spec& spec);

}  // namespace examples
