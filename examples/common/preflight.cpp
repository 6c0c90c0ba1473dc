#include "examples/common/preflight.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/loader.hpp"

namespace examples {

namespace fs = std::filesystem;

namespace {
std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}
}  // namespace

void check_output_path(const std::string& path, const std::string& what) {
  if (path.empty()) throw std::runtime_error(fmt::format("{}: an empty path", what));
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISREG(info.st_mode)) {
      throw std::runtime_error(fmt::format("{} {}: is {}; refusing to replace it", what, path, kind_of(info.st_mode)));
    }
  } else if (errno != ENOENT) {
    throw std::runtime_error(fmt::format("{} {}: cannot stat it: {}", what, path, std::strerror(errno)));
  }
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  if (::access(folder.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error(
        fmt::format("{} {}: cannot write in its folder {}: {}", what, path, folder.string(), std::strerror(errno)));
  }
}

void probe_model(nn::Module& model, const data::Dataset& dataset, bool image_shape, const std::string& name) {
  if (dataset.size() == 0) throw std::runtime_error(fmt::format("the {} set is empty", name));
  ag::NoGradGuard no_grad;
  model.eval();
  try {
    data::DataLoader loader(dataset, {.batch_size = 1, .shuffle = false, .image_shape = image_shape});
    data::Batch batch;
    loader.next(batch);
    ag::cross_entropy(model.forward(batch.images), batch.labels);
  } catch (const std::exception& error) {
    model.train();
    throw std::runtime_error(fmt::format("the model cannot take the {} images ({}x{}): {}", name, dataset.rows,
                                         dataset.cols, error.what()));
  }
  model.train();
}

void cut_log(const std::string& path, std::size_t epochs, const std::string& header) {
  // The header, then the rows of finished epochs (a row starts with its epoch). A log killed before its
  // header reached the disk, or a new --log path, starts from the header alone.
  std::string kept = header;
  std::ifstream in(path);
  if (in) {
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line + "\n" != header && std::strtoull(line.c_str(), nullptr, 10) <= epochs &&
          std::isdigit(static_cast<unsigned char>(line[0]))) {
        kept += line + "\n";
      }
    }
    if (in.bad()) throw std::runtime_error(fmt::format("reading the log {} failed: {}", path, std::strerror(errno)));
    in.close();
  }
  const std::string temporary = path + ".cut";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) {
      int error = errno;
      std::remove(temporary.c_str());
      throw std::runtime_error(fmt::format("writing {} failed: {}", temporary, std::strerror(error)));
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    int error = errno;
    std::remove(temporary.c_str());
    throw std::runtime_error(fmt::format("cannot replace the log {}: {}", path, std::strerror(error)));
  }
}

}  // namespace examples
