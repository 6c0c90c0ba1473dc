#include "data/idx.hpp"

#include <zlib.h>

#include <cerrno>
#include <limits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace data {
namespace {

/// A file's bytes after decompression, and whether it was gzip'd (for error messages).
struct FileContents {
  std::vector<unsigned char> bytes;
  bool gzipped = false;
};

[[noreturn]] void fail(const std::string& path, std::string_view problem) {
  throw std::runtime_error(fmt::format("{}: {}", path, problem));
}

bool starts_with_gzip_magic(std::ifstream& file) {
  unsigned char magic[2] = {0, 0};
  file.read(reinterpret_cast<char*>(magic), 2);
  const bool is_gzip = file.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  file.clear();
  file.seekg(0);
  return is_gzip;
}

std::vector<unsigned char> read_plain(const std::string& path, std::ifstream& file) {
  file.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(file.tellg());
  file.seekg(0);
  std::vector<unsigned char> bytes(size);
  if (!file.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    fail(path, fmt::format("read error after {} of {} bytes", file.gcount(), size));
  }
  return bytes;
}

std::vector<unsigned char> read_gzip(const std::string& path) {
  struct GzCloser {
    void operator()(gzFile_s* file) const { gzclose(file); }
  };
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (!file) fail(path, fmt::format("cannot open as gzip: {}", std::strerror(errno)));
  // A large internal buffer: the default 8 KiB makes decompressing MNIST several times slower.
  gzbuffer(file.get(), 1U << 17);

  std::vector<unsigned char> bytes;
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  // MNIST's largest file is 47 MB; a bound keeps a malicious or broken archive from exhausting memory.
  constexpr std::size_t kMaxDecompressed = std::size_t{1} << 30;
  for (;;) {
    const std::size_t used = bytes.size();
    if (used > kMaxDecompressed) {
      fail(path, fmt::format("decompresses to more than {} bytes, far beyond any IDX data set", kMaxDecompressed));
    }
    bytes.resize(used + kChunk);
    const int got = gzread(file.get(), bytes.data() + used, static_cast<unsigned>(kChunk));
    bytes.resize(used + static_cast<std::size_t>(got > 0 ? got : 0));
    if (got <= 0) break;
  }
  // gzread reports a stream that ends early (Z_BUF_ERROR) only through gzerror, not -1.
  int error_code = Z_OK;
  const char* error_text = gzerror(file.get(), &error_code);
  if (error_code == Z_BUF_ERROR) {
    fail(path, fmt::format("gzip stream is truncated after {} decompressed bytes (zlib: {})",
                           bytes.size(), error_text));
  }
  if (error_code != Z_OK) {
    fail(path, fmt::format("gzip stream is corrupt (zlib: {})", error_text));
  }
  return bytes;
}

FileContents read_contents(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ignored;
    if (!std::filesystem::exists(path, ignored)) fail(path, "no such file");
    fail(path, fmt::format("cannot open: {}", std::strerror(errno)));
  }
  if (std::filesystem::is_directory(path)) fail(path, "is a directory, not an IDX file");
  if (starts_with_gzip_magic(file)) {
    file.close();
    return {read_gzip(path), true};
  }
  return {read_plain(path, file), false};
}

std::uint32_t read_big_endian_u32(std::span<const unsigned char> bytes, std::size_t offset) {
  return (std::uint32_t{bytes[offset]} << 24) | (std::uint32_t{bytes[offset + 1]} << 16) |
         (std::uint32_t{bytes[offset + 2]} << 8) | std::uint32_t{bytes[offset + 3]};
}

std::string join_extents(const std::vector<std::size_t>& extents) {
  return fmt::format("{}", fmt::join(extents, " x "));
}

/// Checks magic number, dimension count and exact file size; returns the extents. The elements
/// follow the header, at byte 4 + 4 x rank.
std::vector<std::size_t> check_idx_layout(const std::string& path, const FileContents& contents,
                                          std::uint32_t expected_magic, std::string_view kind) {
  const std::span<const unsigned char> bytes(contents.bytes);
  const std::string_view has = contents.gzipped ? "decompressed file has" : "file has";
  const std::size_t expected_rank = expected_magic & 0xffU;

  if (bytes.size() < 4) {
    fail(path, fmt::format("{} {} bytes, too short for an IDX magic number (truncated)", has,
                           bytes.size()));
  }
  const std::uint32_t magic = read_big_endian_u32(bytes, 0);
  if ((magic >> 8) != (expected_magic >> 8)) {
    fail(path, fmt::format("bad magic number {:#010x}, expected {:#010x} ({}); not an IDX file "
                           "of unsigned bytes",
                           magic, expected_magic, kind));
  }
  const std::size_t rank = magic & 0xffU;
  if (rank != expected_rank) {
    fail(path, fmt::format("IDX file has {} dimension{} (magic {:#010x}), expected {} for {} "
                           "(magic {:#010x})",
                           rank, rank == 1 ? "" : "s", magic, expected_rank, kind,
                           expected_magic));
  }

  const std::size_t header_bytes = 4 + 4 * rank;
  if (bytes.size() < header_bytes) {
    fail(path, fmt::format("{} {} bytes, too short for the {}-byte header of a {}-dimensional "
                           "IDX file (truncated)",
                           has, bytes.size(), header_bytes, rank));
  }
  std::vector<std::size_t> extents(rank);
  std::size_t element_count = 1;
  for (std::size_t axis = 0; axis < rank; ++axis) {
    extents[axis] = read_big_endian_u32(bytes, 4 + 4 * axis);
    constexpr std::size_t kMaxSize = std::numeric_limits<std::size_t>::max();
    if (extents[axis] != 0 && element_count > kMaxSize / extents[axis]) {
      fail(path, fmt::format("header extents {} overflow the address space",
                             join_extents(extents)));
    }
    element_count *= extents[axis];
  }

  const std::size_t expected_size = header_bytes + element_count;
  if (bytes.size() != expected_size) {
    const std::string what_is_wrong =
        bytes.size() < expected_size
            ? std::string("truncated")
            : fmt::format("{} trailing bytes", bytes.size() - expected_size);
    fail(path, fmt::format("expected {} bytes from header ({}), {} {} ({})", expected_size,
                           join_extents(extents), has, bytes.size(), what_is_wrong));
  }
  return extents;
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  const FileContents contents = read_contents(path);
  const std::vector<std::size_t> extents =
      check_idx_layout(path, contents, kIdxImagesMagic, "images: N x rows x cols");
  IdxImages images;
  images.count = extents[0];
  images.rows = extents[1];
  images.cols = extents[2];
  if (images.rows == 0 || images.cols == 0) {
    fail(path, fmt::format("image size is {} x {}; images need at least one pixel", images.rows,
                           images.cols));
  }

  const std::span<const unsigned char> pixels = std::span(contents.bytes).subspan(16);
  images.pixels.resize(pixels.size());
  // Division rather than a reciprocal multiply so that 255 maps to exactly 1.0F.
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    images.pixels[i] = static_cast<float>(pixels[i]) / 255.0F;
  }
  return images;
}

std::vector<std::int32_t> read_idx_labels(const std::string& path,
                                          std::optional<std::size_t> class_count) {
  const FileContents contents = read_contents(path);
  check_idx_layout(path, contents, kIdxLabelsMagic, "labels: N");
  const std::span<const unsigned char> values = std::span(contents.bytes).subspan(8);

  std::vector<std::int32_t> labels(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (class_count && values[i] >= *class_count) {
      fail(path, fmt::format("label {} at index {} is out of range (expected < {})", values[i], i,
                             *class_count));
    }
    labels[i] = values[i];
  }
  return labels;
}

}  // namespace data
