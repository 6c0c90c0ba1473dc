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

/// Where the Debian package dataset-fashion-mnist installs Fashion-MNIST.
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

}  // namespace data
