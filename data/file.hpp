// Whole-file reads and atomic writes that refuse what is not a regular file and name every failure.
//
// Used by the checkpoints (nn/checkpoint.hpp) and the IDX reader (data/idx.hpp), and open to the programs for
// their own result files. Every error is a std::runtime_error "<what> <path>: <operation>: <strerror>" (or
// "<path>: ..." when `what` is empty), so a message always says which file, what was being done, and why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace data {

/// What a path is, in words: "a regular file", "a directory", "a FIFO", "a character device", "a block device",
/// "a socket", "a symbolic link"; for a path that does not exist, "nothing". Does not follow a final symbolic
/// link. Throws std::runtime_error (naming the path and strerror) if it cannot be told.
std::string file_type(const std::string& path);

/// Reads all of `path`, which must be a regular file (a symbolic link to one is followed) of at most
/// `max_bytes`. A directory, a FIFO, a device or a socket is refused before a byte is read (a FIFO is opened
/// non-blocking, so this never blocks), and so is a larger file: a read is bounded by the file's real size.
std::string read_regular_file(const std::string& path, std::string_view what,
                              std::size_t max_bytes = SIZE_MAX);
/// The same, as bytes.
std::vector<std::uint8_t> read_regular_bytes(const std::string& path, std::string_view what,
                                             std::size_t max_bytes = SIZE_MAX);

/// The first `count` bytes of the regular file `path` (all of it if shorter), refused like read_regular_file.
std::string read_regular_file_start(const std::string& path, std::string_view what, std::size_t count);

/// Refuses, naming what is there, a `path` that exists and is not a regular file (a device node, a FIFO, a
/// directory, a symbolic link, a socket): a save must never replace one of those.
void check_replaceable(const std::string& path, std::string_view what);

/// Checks, before any work is done, that `path` can be written as write_file_atomically writes it: the path
/// is replaceable (check_replaceable) and a temporary can be created beside it (it is created, then removed).
void check_writable(const std::string& path, std::string_view what);

/// Writes `bytes` to `path` atomically: into a temporary "<path>.tmp.XXXXXX" in the same directory, which is
/// written, fsync'd and closed (each step checked), then renamed over `path`; then the directory is fsync'd.
/// A failure leaves `path` as it was and no temporary behind. Refuses a `path` that is not replaceable.
/// Temporaries of the same path left by writers that were killed (ones no live writer holds locked) are
/// removed first, so killed runs never accumulate them.
void write_file_atomically(const std::string& path, std::string_view bytes, std::string_view what);

}  // namespace data
