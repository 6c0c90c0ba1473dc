// Reader for the IDX files of the MNIST family (MNIST, Fashion-MNIST).
//
// An IDX file is a 4-byte big-endian magic number 0x0000TTRR (TT = element type, 0x08 for
// unsigned bytes; RR = number of dimensions), RR big-endian uint32 extents, then the elements in
// row-major order. Files may be plain or gzip-compressed; compression is detected from the
// content (magic bytes 1f 8b), not the file name.
//
// Every check failure throws std::runtime_error whose message starts with the file path and
// says exactly what is wrong, because a bad download otherwise surfaces much later as a
// training run that silently learns nothing. The reading is exact for plain and gzip'd files alike:
// only regular files are read (a directory, a FIFO, a device is refused before reading, I/O errors
// carry strerror); the size must match the header exactly (truncated data, trailing bytes and
// garbage after the gzip stream are refused); a gzip'd file is decompressed as a stream held to the
// size its header declares, so a header that declares more than the file holds costs no memory for
// the missing data; and nothing (file or decompressed data) may exceed 1 GiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "data/pixels.hpp"

namespace data {

/// Magic numbers of the two IDX layouts used by MNIST: unsigned bytes, 3 and 1 dimensions.
inline constexpr std::uint32_t kIdxImagesMagic = 0x00000803;
inline constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;

/// The images of an IDX file: the pixel bytes, read as floats in [0, 1] (data/pixels.hpp).
struct IdxImages {
  std::size_t count = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;
  Pixels pixels;  // count x rows x cols, row-major
};

/// Reads an IDX image file (magic 0x00000803, extents N, rows, cols), plain or gzip'd.
/// Throws std::runtime_error if the file is missing, is not an IDX image file, has an image size
/// of zero, or its size does not match the header exactly (truncated or trailing bytes).
IdxImages read_idx_images(const std::string& path);

/// What an IDX image file's header declares, read from its first bytes only (decompressing no more
/// of a gzip'd file than the header needs). Throws std::runtime_error like read_idx_images.
struct IdxGeometry {
  std::size_t count = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;
};
IdxGeometry read_idx_image_geometry(const std::string& path);

/// Reads an IDX label file (magic 0x00000801, extent N), plain or gzip'd. If `class_count` is
/// given, every label must be below it. Throws std::runtime_error like read_idx_images.
std::vector<std::int32_t> read_idx_labels(const std::string& path,
                                          std::optional<std::size_t> class_count = std::nullopt);

/// The same readers over a file's bytes already in memory (plain or gzip'd); `source` names them in
/// errors. For tests and fuzzing.
IdxImages parse_idx_images(std::span<const unsigned char> file, const std::string& source);
std::vector<std::int32_t> parse_idx_labels(std::span<const unsigned char> file, const std::string& source,
                                           std::optional<std::size_t> class_count = std::nullopt);

}  // namespace data
