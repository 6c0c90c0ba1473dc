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
#include "examples/common/training.hpp"

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
    std::string first;
    // Another run's columns (another --track set, or another program's log at this path) would be kept under
    // this header, relabelled: refused. A header cut short (killed while writing it: no newline, nothing after)
    // is this one's; a shorter header with rows after it is another run's (one tracker fewer).
    const bool read = static_cast<bool>(std::getline(in, first));
    const bool cut_short = in.eof() && header.starts_with(first);
    if (read && !first.empty() && first + "\n" != header && !cut_short) {
      throw std::runtime_error(fmt::format("{}: its columns are '{}', this run's are '{}': it is not this run's log "
                                           "(give the path the run was started with)", path, first,
                                           header.substr(0, header.size() - 1)));
    }
    in.clear();
    in.seekg(0);
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

namespace {

/// `path` made absolute and normal, with the symbolic links of its existing parts resolved.
std::filesystem::path normalised(const std::string& path) {
  std::error_code error;
  std::filesystem::path absolute = std::filesystem::absolute(path, error);
  if (error) absolute = path;
  // weakly_canonical leaves a relative path relative when no part of it exists: made absolute first.
  std::filesystem::path canonical = std::filesystem::weakly_canonical(absolute, error);
  return error ? absolute.lexically_normal() : canonical;
}

}  // namespace

void check_distinct_outputs(const std::vector<OutputFile>& outputs) {
  std::vector<std::filesystem::path> paths;
  for (const OutputFile& output : outputs) paths.push_back(normalised(output.path));
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      std::error_code error;  // two names of one existing file (a hard link) are one file too
      if (paths[i] != paths[j] && !std::filesystem::equivalent(paths[i], paths[j], error)) continue;
      const std::string given = outputs[i].path == outputs[j].path
                                    ? outputs[i].path
                                    : fmt::format("{} and {}", outputs[j].path, outputs[i].path);
      throw std::runtime_error(fmt::format("{} and {} both name {} ({}): one would overwrite the other; give each "
                                           "its own file",
                                           outputs[j].flag, outputs[i].flag, paths[i].string(), given));
    }
  }
}

void check_distinct_outputs(const RunConfig& config) {
  std::vector<OutputFile> outputs;
  if (!config.resume_path.empty()) outputs.push_back({"--resume", config.resume_path});
  if (!config.log_path.empty()) outputs.push_back({"--log", config.log_path});
  if (!config.track.empty() && !config.track_log.empty()) outputs.push_back({"--track-log", config.track_log});
  if (config.evaluation_splits && !config.eval_log.empty()) outputs.push_back({"--eval-log", config.eval_log});
  check_distinct_outputs(outputs);  // --resume against every output but --save
  if (!config.save_path.empty()) {
    if (!outputs.empty() && outputs.front().flag == "--resume") outputs.erase(outputs.begin());
    outputs.push_back({"--save", config.save_path});
    check_distinct_outputs(outputs);
  }
}

}  // namespace examples
