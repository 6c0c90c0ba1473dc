// In-memory image classification data sets (MNIST, Fashion-MNIST) and their standard splits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/pixels.hpp"

namespace data {

/// Images with one class label each, held as plain vectors (no tensors) so that a data set can
/// be split, inspected and batched without touching the autograd tape. The pixels are the files'
/// bytes (a quarter of the memory of floats), read as floats in [0, 1] (data/pixels.hpp); the
/// DataLoader makes the floats of one batch at a time.
struct Dataset {
  Pixels images;                      // size() x features(), row-major, pixels in [0, 1]
  std::vector<std::int32_t> labels;   // size() entries
  std::size_t rows = 0;               // image height
  std::size_t cols = 0;               // image width

  std::size_t size() const { return labels.size(); }
  std::size_t features() const { return rows * cols; }
  /// The pixels of sample `index`, features() values.
  PixelView image(std::size_t index) const { return images.view(index * features(), features()); }
};

enum class Split { train, test };

/// MNIST and Fashion-MNIST both have ten classes.
inline constexpr std::size_t kMnistClasses = 10;

/// Loads a pair of IDX files (see data/idx.hpp). Labels must be below `class_count`, and both
/// files must hold the same number of samples; otherwise throws std::runtime_error.
Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                         std::size_t class_count = kMnistClasses);

/// Where MNIST lives: $TAPEGRAD_MNIST_DIR if set and non-empty, else data/mnist under the current
/// directory if there is one (where scripts/fetch-mnist.sh puts it: run from the repository root), as
/// an absolute path. Otherwise throws std::runtime_error saying where it looked and how to fix it
/// (set TAPEGRAD_MNIST_DIR, or pass --data DIR to the programs).
std::string default_mnist_dir();

/// Where Fashion-MNIST lives: $TAPEGRAD_FASHION_MNIST_DIR if set and non-empty, else where the Debian
/// package dataset-fashion-mnist installs it (/usr/share/datasets/fashion-mnist).
std::string default_fashion_mnist_dir();

/// Loads the MNIST split from `dir`, which holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
/// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each either plain or with a .gz suffix.
/// If a file is missing, the error says to run scripts/fetch-mnist.sh. If the other split's images
/// are there and differ in geometry (rows x cols) from this split's, throws std::runtime_error
/// naming both files (only that file's header is read).
Dataset load_mnist(const std::string& dir, Split split);

/// Loads the Fashion-MNIST split (same file names and layout as MNIST, usually gzip'd).
Dataset load_fashion_mnist(Split split, const std::string& dir = default_fashion_mnist_dir());

/// Loads a data set by name: "mnist", or "fashion" (also "fashion-mnist"). An empty `dir` means
/// the data set's default directory. Throws std::invalid_argument for an unknown name.
Dataset load_dataset(std::string_view name, Split split, const std::string& dir = {});

/// Throws std::runtime_error naming both geometries unless `train` and `test` have images of the same
/// rows x cols (the same pixel count is not enough: 56 x 14 is not 28 x 28).
void check_same_geometry(const Dataset& train, const Dataset& test, std::string_view test_name = "test");

/// Splits off the LAST `validation_size` samples as a validation set, the convention for MNIST's
/// 60,000 training images (50,000 train + 10,000 validation). Returns {train, validation}.
/// Throws std::invalid_argument if `validation_size` exceeds the data set.
std::pair<Dataset, Dataset> split_train_validation(const Dataset& dataset,
                                                   std::size_t validation_size);

/// DeepOBS's evaluation splits of a training set (Schneider et al. 2019): `validation_size` samples drawn at
/// random are held out as the validation set, and `train_eval_size` samples drawn from the rest form the
/// train-eval set, a fixed subset of the training data on which the training loss is measured as the test
/// loss is. `train` is the rest, in its original order; train_eval is part of it, validation is not. The
/// draws depend on `seed` alone (not on a run's seed: every run of a study meets the same sets).
struct EvaluationSplits {
  Dataset train, train_eval, validation;
};
inline constexpr std::size_t kDeepObsSplitSize = 10000;  // DeepOBS's validation and train-eval sizes
inline constexpr std::uint64_t kDeepObsSplitSeed = 42;
/// Throws std::invalid_argument naming the sizes unless validation_size + train_eval_size <= dataset.size()
/// and the training part keeps at least one sample.
EvaluationSplits split_for_evaluation(const Dataset& dataset, std::size_t validation_size = kDeepObsSplitSize,
                                      std::size_t train_eval_size = kDeepObsSplitSize,
                                      std::uint64_t seed = kDeepObsSplitSeed);

}  // namespace data
