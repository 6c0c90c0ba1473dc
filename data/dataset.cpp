#include "data/dataset.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/tensor.hpp"
#include "data/idx.hpp"

namespace data {
namespace {

namespace fs = std::filesystem;

/// The images and labels file names of a split, shared by MNIST and Fashion-MNIST.
struct SplitFileNames {
  std::string images;
  std::string labels;
};

SplitFileNames file_names(Split split) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  return {prefix + "-images-idx3-ubyte", prefix + "-labels-idx1-ubyte"};
}

/// A file type in words, for a message: "a directory", "a FIFO", ...
std::string type_words(fs::file_type type) {
  switch (type) {
    case fs::file_type::regular: return "a regular file";
    case fs::file_type::directory: return "a directory";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::symlink: return "a symbolic link";
    default: return "a file of unknown type";
  }
}

/// Where a data file of a split is: its path, or what is in the way (something that is not a regular file, or
/// a path that cannot be looked at, and why); both empty when neither it nor its .gz is there.
struct Found {
  std::string path;
  std::string problem;
};

/// `dir/name` if it is there, else `dir/name.gz`; symbolic links followed.
Found find_plain_or_gzip(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {name, name + ".gz"}) {
    const fs::path path = fs::path(dir) / candidate;
    std::error_code error;
    const fs::file_status status = fs::status(path, error);
    if (status.type() == fs::file_type::regular) return {path.string(), {}};
    if (status.type() == fs::file_type::not_found) {
      std::error_code link_error;
      if (fs::is_symlink(fs::symlink_status(path, link_error))) {
        return {{}, fmt::format("{} is a symbolic link to nothing ({})", path.string(),
                                fs::read_symlink(path, link_error).string())};
      }
      continue;
    }
    if (error) return {{}, fmt::format("cannot look at {}: {}", path.string(), error.message())};
    return {{}, fmt::format("{} is {}, not an IDX file", path.string(), type_words(status.type()))};
  }
  return {};
}

/// Why `dir` cannot hold a data set (it is not a directory, or cannot be looked at); empty if it can, or if it
/// does not exist (the files are then reported missing).
std::string directory_problem(const std::string& dir) {
  std::error_code error;
  const fs::file_status status = fs::status(dir, error);
  if (status.type() == fs::file_type::directory) return {};
  if (status.type() == fs::file_type::not_found && error != std::errc::not_a_directory) return {};
  if (error) return fmt::format("cannot look at the data directory {}: {}", dir, error.message());
  return fmt::format("{} is {}, not a directory (the directory holding the IDX files is wanted)", dir,
                     type_words(status.type()));
}

/// Refuses a split whose images differ in geometry from the other split's in the same directory (56 x 14
/// against 28 x 28 has the same pixel count, which a model that flattens would silently accept). Only the
/// other file's header is read; if it is missing or unreadable, loading that split will say so.
void check_against_other_split(const std::string& images_path, const Dataset& dataset, const std::string& dir,
                               Split split) {
  const SplitFileNames other_names = file_names(split == Split::train ? Split::test : Split::train);
  const std::string other_path = find_plain_or_gzip(dir, other_names.images).path;
  if (other_path.empty()) return;
  IdxGeometry other;
  try {
    other = read_idx_image_geometry(other_path);
  } catch (const std::runtime_error&) {
    return;
  }
  if (other.rows != dataset.rows || other.cols != dataset.cols) {
    throw std::runtime_error(fmt::format("{} holds images of {} x {} but {} holds images of {} x {}; the "
                                         "training and test splits must have one geometry",
                                         images_path, dataset.rows, dataset.cols, other_path, other.rows,
                                         other.cols));
  }
}

/// Loads a split of an MNIST-layout directory; `how_to_get_it` completes the error message
/// when files are missing.
Dataset load_mnist_layout(const std::string& dir, Split split, std::string_view dataset_name,
                          std::string_view how_to_get_it) {
  if (std::string problem = directory_problem(dir); !problem.empty()) {
    throw std::runtime_error(fmt::format("{}: {}; {}", dataset_name, problem, how_to_get_it));
  }
  const SplitFileNames names = file_names(split);
  const Found images = find_plain_or_gzip(dir, names.images), labels = find_plain_or_gzip(dir, names.labels);
  for (const Found* found : {&images, &labels}) {
    if (!found->problem.empty()) throw std::runtime_error(fmt::format("{}: {}", dataset_name, found->problem));
  }
  const std::string& images_path = images.path;
  const std::string& labels_path = labels.path;
  if (images_path.empty() || labels_path.empty()) {
    std::vector<std::string> missing;
    if (images_path.empty()) missing.push_back(names.images + "[.gz]");
    if (labels_path.empty()) missing.push_back(names.labels + "[.gz]");
    std::error_code error;
    const char* absent = fs::exists(dir, error) ? "" : " (no such directory)";
    throw std::runtime_error(fmt::format("{}: {} not found in {}{}; {}", dataset_name,
                                         fmt::join(missing, " and "), dir, absent, how_to_get_it));
  }
  Dataset dataset = load_idx_dataset(images_path, labels_path, kMnistClasses);
  check_against_other_split(images_path, dataset, dir, split);
  return dataset;
}

/// A data set holding the samples `indices` of `dataset`, in that order.
Dataset gather(const Dataset& dataset, const std::vector<std::size_t>& indices) {
  Dataset part;
  part.rows = dataset.rows;
  part.cols = dataset.cols;
  const std::size_t features = dataset.features();
  const std::vector<std::uint8_t>& bytes = dataset.images.bytes();
  std::vector<std::uint8_t>& out = part.images.bytes();
  out.reserve(indices.size() * features);
  part.labels.reserve(indices.size());
  for (std::size_t i : indices) {
    const auto begin = bytes.begin() + static_cast<std::ptrdiff_t>(i * features);
    out.insert(out.end(), begin, begin + static_cast<std::ptrdiff_t>(features));
    part.labels.push_back(dataset.labels[i]);
  }
  return part;
}

/// A data set holding samples [first, first + count) of `dataset`.
Dataset slice(const Dataset& dataset, std::size_t first, std::size_t count) {
  Dataset part;
  part.rows = dataset.rows;
  part.cols = dataset.cols;
  const PixelView pixels = dataset.images.view(first * dataset.features(), count * dataset.features());
  part.images.assign(pixels.begin(), pixels.end());
  const auto begin = static_cast<std::ptrdiff_t>(first);
  const auto end = static_cast<std::ptrdiff_t>(first + count);
  part.labels.assign(dataset.labels.begin() + begin, dataset.labels.begin() + end);
  return part;
}

}  // namespace

Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                         std::size_t class_count) {
  IdxImages images = read_idx_images(images_path);
  std::vector<std::int32_t> labels = read_idx_labels(labels_path, class_count);
  if (images.count != labels.size()) {
    throw std::runtime_error(fmt::format("{} has {} images but {} has {} labels; the files do "
                                         "not belong together",
                                         images_path, images.count, labels_path, labels.size()));
  }
  Dataset dataset;
  dataset.images = std::move(images.pixels);
  dataset.labels = std::move(labels);
  dataset.rows = images.rows;
  dataset.cols = images.cols;
  return dataset;
}

std::string default_mnist_dir() {
  const char* from_environment = std::getenv("TAPEGRAD_MNIST_DIR");
  if (from_environment != nullptr && *from_environment != '\0') return from_environment;
  std::error_code error;
  const fs::path relative = fs::path("data") / "mnist";
  fs::path here = fs::absolute(relative, error);
  if (error) here = relative;
  if (fs::is_directory(relative, error)) return here.string();
  throw std::runtime_error(fmt::format(
      "MNIST: no data directory: TAPEGRAD_MNIST_DIR is not set and {} does not exist; set "
      "TAPEGRAD_MNIST_DIR to the directory holding the MNIST files, or pass --data DIR "
      "(scripts/fetch-mnist.sh downloads MNIST into <repository>/data/mnist)",
      here.string()));
}

std::string default_fashion_mnist_dir() {
  const char* from_environment = std::getenv("TAPEGRAD_FASHION_MNIST_DIR");
  if (from_environment != nullptr && *from_environment != '\0') return from_environment;
  return "/usr/share/datasets/fashion-mnist";
}

Dataset load_mnist(const std::string& dir, Split split) {
  return load_mnist_layout(dir, split, "MNIST",
                           "run scripts/fetch-mnist.sh to download MNIST (or point "
                           "TAPEGRAD_MNIST_DIR at a directory holding it)");
}

Dataset load_fashion_mnist(Split split, const std::string& dir) {
  return load_mnist_layout(dir, split, "Fashion-MNIST",
                           "install the Debian package dataset-fashion-mnist (apt-get install "
                           "dataset-fashion-mnist; scripts/fetch-mnist.sh fashion checks it), or point "
                           "TAPEGRAD_FASHION_MNIST_DIR at a directory holding it");
}

Dataset load_dataset(std::string_view name, Split split, const std::string& dir) {
  if (name == "mnist") return load_mnist(dir.empty() ? default_mnist_dir() : dir, split);
  if (name == "fashion" || name == "fashion-mnist") {
    return load_fashion_mnist(split, dir.empty() ? default_fashion_mnist_dir() : dir);
  }
  throw std::invalid_argument(
      fmt::format("unknown data set '{}' (expected \"mnist\" or \"fashion\")", name));
}

void check_same_geometry(const Dataset& train, const Dataset& test, std::string_view test_name) {
  if (train.rows == test.rows && train.cols == test.cols) return;
  throw std::runtime_error(fmt::format("the training images are {} x {} but the {} images {} x {}; a model "
                                       "is built for one geometry",
                                       train.rows, train.cols, test_name, test.rows, test.cols));
}

std::pair<Dataset, Dataset> split_train_validation(const Dataset& dataset,
                                                   std::size_t validation_size) {
  if (validation_size > dataset.size()) {
    throw std::invalid_argument(fmt::format("validation size {} exceeds the {} samples of the "
                                            "data set",
                                            validation_size, dataset.size()));
  }
  const std::size_t train_size = dataset.size() - validation_size;
  return {slice(dataset, 0, train_size), slice(dataset, train_size, validation_size)};
}

EvaluationSplits split_for_evaluation(const Dataset& dataset, std::size_t validation_size,
                                      std::size_t train_eval_size, std::uint64_t seed) {
  if (validation_size >= dataset.size() || train_eval_size > dataset.size() - validation_size) {
    throw std::invalid_argument(fmt::format("evaluation splits: {} validation and {} train-eval samples out of {} "
                                            "(the validation set must leave training samples, and the train-eval "
                                            "set is drawn from those)",
                                            validation_size, train_eval_size, dataset.size()));
  }
  std::vector<std::size_t> order(dataset.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  ag::Generator gen(seed);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.below(i)]);
  std::vector<std::size_t> validation(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(validation_size));
  std::vector<std::size_t> rest(order.begin() + static_cast<std::ptrdiff_t>(validation_size), order.end());
  std::vector<std::size_t> train_eval(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(train_eval_size));
  std::sort(validation.begin(), validation.end());
  std::sort(rest.begin(), rest.end());
  std::sort(train_eval.begin(), train_eval.end());
  return {gather(dataset, rest), gather(dataset, train_eval), gather(dataset, validation)};
}

}  // namespace data
