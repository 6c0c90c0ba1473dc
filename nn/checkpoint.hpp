// Checkpoints: named tensors in a documented binary format, written atomically.
//
// Format (all integers little-endian):
//   magic "TGCKPT\0\1" (8 bytes), u32 version = 1, u32 entry count
//   per entry: u32 name length, name bytes (UTF-8), u8 dtype (0 = f32, 1 = f64), u8 rank,
//              rank x u64 extents, the elements (row-major, little-endian)
//   u64 FNV-1a 64 checksum of every byte before it.
// A write goes to a unique "<path>.tmp.XXXXXX" beside it, is fsync'd, then renamed over <path>: a crash leaves
// either the old file or the new one, never half of one (data::write_file_atomically). A path that exists and
// is not a regular file (a device, a FIFO, a directory, a symbolic link) is never replaced, and temporaries
// left by killed writers are removed at the next save of the same path.
// A read refuses what is not a regular file before reading it, reads no more than the file's real size, and
// checks every declared size (extents whose product overflows, a tensor larger than the rest of the file)
// before allocating anything.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "nn/module.hpp"

namespace nn {

/// Writes `entries` to `path` atomically. Throws std::runtime_error naming the path, the operation and
/// strerror on I/O failure, or what the path is if it is not a regular file; std::invalid_argument (naming
/// them) for undefined tensors or a name given twice.
void save_tensors(const std::string& path, const std::vector<NamedTensor>& entries);
/// Reads every entry; throws std::runtime_error naming the path and the problem (not a regular file, an I/O
/// error with strerror, bad magic, version, truncation, checksum mismatch, a name stored twice, a shape
/// whose size overflows or exceeds the file, ...).
std::vector<NamedTensor> load_tensors(const std::string& path);

/// The bytes save_tensors writes, and their reading back as load_tensors does (`source` names them in
/// errors): for tests, fuzzing, and checkpoints kept elsewhere than in files.
std::string serialize_tensors(const std::vector<NamedTensor>& entries, const std::string& source);
std::vector<NamedTensor> parse_tensors(std::string_view bytes, const std::string& source);

// ---- the mismatch report, shared by module checkpoints and optimiser states

/// What one named entry must be.
struct EntrySpec {
  std::string name;
  ag::Shape shape;
  ag::DType dtype = ag::DType::f32;
  /// How the report qualifies the expected side of a mismatch; empty: ReportTerms::target.
  std::string target{};
};

/// The specs of existing tensors (their names, shapes and dtypes).
std::vector<EntrySpec> specs_of(const std::vector<NamedTensor>& tensors);

/// The words of a mismatch report; the defaults give the checkpoint's lines
///   "fc1.weight: f32[784, 128] in the file, f32[784, 64] in the model"
///   "fc1.weight: missing from the file"       "fc3.bias: in the file, not in the model"
///   "fc1.bias: appears 2 times in the file"
struct ReportTerms {
  std::string source = "the file";
  std::string target = "in the model";
  /// The problem of an entry of the source that no spec names; unset: "in <source>, not <target>".
  std::function<std::string(const std::string& name)> unexpected{};
};

/// Compares named entries with what is expected of them, by name (order does not matter): one line
/// "<name>: <problem>" for every name the source holds more than once, every expected name it lacks,
/// every entry whose shape or dtype differs, and every entry nobody expects, in that order. Empty: all fit.
/// Throws std::invalid_argument if `expected` names an entry twice.
std::vector<std::string> mismatches(const std::vector<NamedTensor>& source, const std::vector<EntrySpec>& expected,
                                    const ReportTerms& terms = {});

/// Throws std::runtime_error "<heading> (N problem(s)):\n  <line>\n  <line>..." unless `problems` is empty.
void throw_if_problems(const std::string& heading, const std::vector<std::string>& problems);

/// Copies each named tensor into `targets` (same names, shapes and dtypes, in place). Nothing is written
/// unless all fit: throws std::runtime_error with the mismatch report ("checkpoint does not match the
/// model (1 problem):\n  fc1.weight: f32[784, 128] in the file, f32[784, 64] in the model"); `what`
/// names the targets.
void assign_tensors(const std::vector<NamedTensor>& source, const std::vector<NamedTensor>& targets,
                    const std::string& what);

/// A module's state_dict() (its named parameters, then its buffers such as "bn1.running_mean"): save, and
/// load in place with every name and shape checked. A buffer missing from the file, or in the file but not
/// in the model, is refused like a parameter ("bn1.running_var: missing from the file"); a file written
/// before buffers existed loads into any model that has none.
void save_module(const std::string& path, const Module& module);
void load_module(const std::string& path, Module& module);

}  // namespace nn
