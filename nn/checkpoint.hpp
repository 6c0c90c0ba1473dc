// Checkpoints: named tensors in a documented binary format, written atomically.
//
// Format (all integers little-endian):
//   magic "TGCKPT\0\1" (8 bytes), u32 version = 1, u32 entry count
//   per entry: u32 name length, name bytes (UTF-8), u8 dtype (0 = f32, 1 = f64), u8 rank,
//              rank x u64 extents, the elements (row-major, little-endian)
//   u64 FNV-1a 64 checksum of every byte before it.
// A write goes to a unique "<path>.tmp.XXXXXX" beside it, is fsync'd, then renamed over <path>: a crash leaves
// either the old file or the new one, never half of one.
#pragma once

#include <string>
#include <vector>

#include "nn/module.hpp"

namespace nn {

/// Writes `entries` to `path` atomically. Throws std::runtime_error naming the path on I/O failure.
void save_tensors(const std::string& path, const std::vector<NamedTensor>& entries);
/// Reads every entry; throws std::runtime_error naming the path and the problem (bad magic, version,
/// truncation, checksum mismatch, ...).
std::vector<NamedTensor> load_tensors(const std::string& path);

/// Copies each named tensor into `targets` (same names, shapes and dtypes, in place). Throws
/// std::runtime_error listing every missing, unexpected or mismatched name ("fc1.weight: shape [128, 784]
/// in the file, [64, 784] in the model").
void assign_tensors(const std::vector<NamedTensor>& source, const std::vector<NamedTensor>& targets,
                    const std::string& what);

/// A module's named parameters: save, and load in place with every name and shape checked.
void save_module(const std::string& path, const Module& module);
void load_module(const std::string& path, Module& module);

}  // namespace nn
