// Mini-batches over an in-memory Dataset, from online (batch size 1) to full batch.
//
// Two ways to iterate, both one epoch at a time:
//
//   data::DataLoader loader(train, {.batch_size = 64, .seed = 42});
//   for (int epoch = 0; epoch < 10; ++epoch) {
//     for (const data::Batch& batch : loader) { ... }   // each range-for is a new epoch
//   }
//
//   loader.begin_epoch();                               // or, explicitly:
//   data::Batch batch;
//   while (loader.next(batch)) { ... }
//
// The data set keeps its pixels as bytes; each batch's floats (byte / 255) are made when it is drawn,
// straight into the batch tensor.
//
// Shuffling is deterministic: the loader owns an ag::Generator seeded from the options, and
// every epoch permutes the sample order with it, so the same seed gives the same sequence of
// epochs run after run, and different seeds give different ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

#include "autograd/tensor.hpp"
#include "data/dataset.hpp"

namespace data {

/// One mini-batch. `images` is a fresh tensor per batch (safe to keep, e.g. on the tape).
struct Batch {
  ag::Tensor images;                 // f32 (B, features), or (B, 1, rows, cols) with image_shape
  std::vector<std::int32_t> labels;  // B class indices
  std::size_t size() const { return labels.size(); }
};

struct LoaderOptions {
  /// Samples per batch: 1 is online learning, the data set's size is full batch.
  std::size_t batch_size = 64;
  /// Visit the samples in a new random order every epoch (else in data set order).
  bool shuffle = true;
  /// Skip the last batch of an epoch when it would be smaller than batch_size.
  bool drop_last = false;
  /// Shape images (B, 1, rows, cols) for convolutions instead of (B, features).
  bool image_shape = false;
  /// Seed of the shuffling generator.
  std::uint64_t seed = 0;
};

/// Batches an epoch of `samples` samples takes under `options` (the last one partial unless drop_last).
std::size_t batches_per_epoch(std::size_t samples, const LoaderOptions& options);

class DataLoader {
 public:
  /// The loader refers to `dataset`, which must outlive it. Throws std::invalid_argument for a
  /// batch size of 0, an empty data set, or drop_last with a batch size larger than the data set
  /// (no batch would ever be produced).
  DataLoader(const Dataset& dataset, LoaderOptions options);
  /// A temporary data set would dangle.
  DataLoader(Dataset&& dataset, LoaderOptions options) = delete;

  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return options_; }
  /// Batches per epoch (the last one may be partial unless drop_last).
  std::size_t num_batches() const;
  /// Number of epochs begun so far.
  std::size_t epoch() const { return epoch_; }
  /// Sample indices of the current epoch, in visiting order.
  const std::vector<std::size_t>& order() const { return order_; }

  /// Starts a new epoch: reshuffles (if shuffle) and rewinds to the first batch.
  void begin_epoch();
  /// Fills `batch` with the next batch of the current epoch, reusing its label storage; returns
  /// false (leaving `batch` untouched) once the epoch is exhausted. Begins the first epoch if
  /// none was begun.
  bool next(Batch& batch);

  /// Input iterator over the batches of one epoch; see begin().
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = const Batch*;
    using reference = const Batch&;

    Iterator() = default;
    const Batch& operator*() const { return batch_; }
    const Batch* operator->() const { return &batch_; }
    Iterator& operator++() {
      has_batch_ = loader_->next(batch_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) { return !it.has_batch_; }

   private:
    friend class DataLoader;
    explicit Iterator(DataLoader* loader) : loader_(loader) { ++*this; }
    DataLoader* loader_ = nullptr;
    Batch batch_;
    bool has_batch_ = false;
  };

  /// Begins a new epoch (see begin_epoch) and returns an iterator at its first batch.
  Iterator begin() {
    begin_epoch();
    return Iterator(this);
  }
  std::default_sentinel_t end() const { return {}; }

 private:
  const Dataset* dataset_;
  LoaderOptions options_;
  ag::Generator generator_;
  std::vector<std::size_t> order_;
  std::size_t cursor_ = 0;  // position in order_ of the next batch's first sample
  std::size_t epoch_ = 0;
};

}  // namespace data
