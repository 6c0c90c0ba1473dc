// Checks a run makes before it spends any work: that the model takes the data's images, and, on resume,
// that the log holds each finished epoch once. (Output paths: data::check_writable, data/file.hpp.)
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "nn/module.hpp"

namespace examples {

struct RunConfig;

/// One sample of `dataset` through `model` (no recording, evaluation mode): std::runtime_error naming the
/// data set and its image size if the model cannot take it, before a whole epoch is trained.
void probe_model(nn::Module& model, const data::Dataset& dataset, bool image_shape, const std::string& name);

/// Cuts the per-epoch CSV log at `path` back to `header` (its first line, with its newline) and the rows of
/// epochs 1..`epochs` (a resumed run appends from there: after a crash, the epochs trained after the
/// checkpoint may be in it already). Written atomically (data::write_file_atomically); std::runtime_error
/// naming the file and strerror, or naming both headers when the file's is another (another run's columns).
void cut_log(const std::string& path, std::size_t epochs, const std::string& header);

/// Creates the output directory `dir` (given by `flag`) and checks that each of `files` can be written in it
/// (data::check_writable), before any work: std::runtime_error "<flag> <dir>: ..." with strerror.
void prepare_output_dir(const std::string& flag, const std::string& dir, const std::vector<std::string>& files);

/// An output of a run and the flag that names it.
struct OutputFile {
  std::string flag;  // "--log"
  std::string path;
};

/// Refuses two `outputs` that are one file (compared after normalising: absolute, symbolic links of the parts
/// that exist resolved; or hard links of one existing file), which would clobber each other: std::runtime_error
/// naming both flags and the path.
void check_distinct_outputs(const std::vector<OutputFile>& outputs);
/// The same for a run's outputs: --log, --save, --track-log (with --track) and --eval-log (with the evaluation
/// splits), and --resume's checkpoint, which only --save may name (a run saving where it resumed from).
void check_distinct_outputs(const RunConfig& config);

}  // namespace examples
