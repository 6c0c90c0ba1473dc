#include "examples/common/preflight.hpp"

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "data/file.hpp"
#include "data/loader.hpp"

namespace examples {

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
  data::write_file_atomically(path, kept, "the log");
}

void prepare_output_dir(const std::string& flag, const std::string& dir, const std::vector<std::string>& files) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw std::runtime_error(fmt::format("{} {}: cannot create the directory: {}", flag, dir, error.message()));
  for (const std::string& file : files) {
    data::check_writable((std::filesystem::path(dir) / file).string(), fmt::format("{} {}: the output", flag, dir));
  }
}

}  // namespace examples
