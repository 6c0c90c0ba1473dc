// Reader for the IDX files of the MNIST family (MNIST, Fashion-MNIST).
//
// An IDX file is a 4-byte big-endian magic number 0x0000TTRR (TT = element type, 0x08 for
// unsigned bytes; RR = number of dimensions), RR big-endian uint32 extents, then the elements in
// row-major order. Files may be plain or gzip-compressed; compression is detected from the
// content (magic bytes 1f 8b), not the file name.
//
// Every check failure throws std::runtime_error whose message starts with the file path and
// says exactly what is wrong, because a bad download otherwise surfaces much later as a
// training run that silently learns nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace data {

/// Magic numbers of the two IDX layouts used by MNIST: unsigned bytes, 3 and 1 dimensions.
inline constexpr std::uint32_t kIdxImagesMagic = 0x00000803;
inline constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;

/// The images of an IDX file, pixels scaled from 0..255 to [0, 1].
struct IdxImages {
  std::size_t count = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<float> pixels;  // count x rows x cols, row-major
};

/// Reads an IDX image file (magic 0x00000803, extents N, rows, cols), plain or gzip'd.
/// Throws std::runtime_error if the file is missing, is not an IDX image file, has an image size
/// of zero, or its size does not match the header exactly (truncated or trailing bytes).
IdxImages read_idx_images(const std::string& path);

/// Reads an IDX label file (magic 0x00000801, extent N), plain or gzip'd. If `class_count` is
/// given, every label must be below it. Throws std::runtime_error like read_idx_images.
std::vector<std::int32_t> read_idx_labels(const std::string& path,
                                          std::optional<std::size_t> class_count = std::nullopt);

}  // namespace data
