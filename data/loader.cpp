#include "data/loader.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace data {

namespace {
/// Asks for the cache lines of [first, first + count) ahead of their use.
void prefetch(const std::uint8_t* first, std::size_t count) {
  constexpr std::uintptr_t kLine = 64;
  const auto begin = reinterpret_cast<std::uintptr_t>(first) & ~(kLine - 1);
  const auto end = reinterpret_cast<std::uintptr_t>(first + count);
  for (std::uintptr_t line = begin; line < end; line += kLine) __builtin_prefetch(reinterpret_cast<const void*>(line));
}
}  // namespace

DataLoader::DataLoader(const Dataset& dataset, LoaderOptions options)
    : dataset_(&dataset), options_(options), generator_(options.seed) {
  if (options_.batch_size == 0) {
    throw std::invalid_argument("DataLoader: batch_size must be at least 1");
  }
  if (dataset.size() == 0) {
    throw std::invalid_argument("DataLoader: the data set is empty");
  }
  if (dataset.images.size() != dataset.size() * dataset.features()) {
    throw std::invalid_argument(fmt::format(
        "DataLoader: the data set has {} labels and {} image values, expected {} x {} = {}",
        dataset.size(), dataset.images.size(), dataset.size(), dataset.features(),
        dataset.size() * dataset.features()));
  }
  if (options_.drop_last && options_.batch_size > dataset.size()) {
    throw std::invalid_argument(fmt::format(
        "DataLoader: batch_size {} exceeds the {} samples of the data set and drop_last is set, "
        "so no batch would ever be produced",
        options_.batch_size, dataset.size()));
  }
  order_.resize(dataset.size());
  std::iota(order_.begin(), order_.end(), std::size_t{0});
}

std::size_t batches_per_epoch(std::size_t samples, const LoaderOptions& options) {
  const std::size_t batch_size = options.batch_size;
  return options.drop_last ? samples / batch_size : (samples + batch_size - 1) / batch_size;
}

std::size_t DataLoader::num_batches() const { return batches_per_epoch(dataset_->size(), options_); }

void DataLoader::begin_epoch() {
  if (options_.shuffle) {
    // Fisher-Yates with the generator's own integer draw: std::shuffle's result depends on the
    // standard library's distribution, which would make the order differ between toolchains.
    for (std::size_t i = order_.size() - 1; i > 0; --i) {
      std::swap(order_[i], order_[generator_.below(i + 1)]);
    }
  }
  cursor_ = 0;
  ++epoch_;
}

bool DataLoader::next(Batch& batch) {
  if (epoch_ == 0) begin_epoch();
  const std::size_t remaining = order_.size() - cursor_;
  const std::size_t batch_size = std::min(options_.batch_size, remaining);
  if (batch_size == 0 || (options_.drop_last && batch_size < options_.batch_size)) return false;

  const Dataset& dataset = *dataset_;
  const std::size_t features = dataset.features();
  const ag::Shape shape = options_.image_shape
                              ? ag::Shape{batch_size, 1, dataset.rows, dataset.cols}
                              : ag::Shape{batch_size, features};
  // Pixel bytes become floats straight in the new tensor's storage: one pass per sample, no staging.
  batch.images = ag::Tensor::empty(shape, ag::DType::f32);
  float* destination = batch.images.data<float>();
  batch.labels.resize(batch_size);
  const std::uint8_t* bytes = dataset.images.bytes().data();
  for (std::size_t row = 0; row < batch_size; ++row) {
    // The samples are scattered over the data set: the next one's bytes are fetched while this one converts.
    if (row + 1 < batch_size) prefetch(bytes + order_[cursor_ + row + 1] * features, features);
    const std::size_t sample = order_[cursor_ + row];
    dataset.images.to_floats(sample * features, features, destination + row * features);
    batch.labels[row] = dataset.labels[sample];
  }
  cursor_ += batch_size;
  return true;
}

}  // namespace data
