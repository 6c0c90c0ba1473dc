// Checks a run makes before it spends any work: that its output files can be written where asked, that the
// model takes the data's images, and, on resume, that the log holds each finished epoch once.
#pragma once

#include <cstddef>
#include <string>

#include "data/dataset.hpp"
#include "nn/module.hpp"

namespace examples {

/// `path` (a result file: "the checkpoint", "the log") can be written: it is not empty, it is a regular file
/// if it exists (not a directory, device, FIFO, socket or symlink: the write would replace it), and its
/// folder exists and is writable. std::runtime_error naming the file, what it is and strerror otherwise.
void check_output_path(const std::string& path, const std::string& what);

/// One sample of `dataset` through `model` (no recording, evaluation mode): std::runtime_error naming the
/// data set and its image size if the model cannot take it, before a whole epoch is trained.
void probe_model(nn::Module& model, const data::Dataset& dataset, bool image_shape, const std::string& name);

/// Cuts the per-epoch CSV log at `path` back to `header` (its first line, with its newline) and the rows of
/// epochs 1..`epochs` (a resumed run appends from there: after a crash, the epochs trained after the
/// checkpoint may be in it already). Written to a temporary and renamed over the log; std::runtime_error
/// naming the file and strerror.
void cut_log(const std::string& path, std::size_t epochs, const std::string& header);

}  // namespace examples
