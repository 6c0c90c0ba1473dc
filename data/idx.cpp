#include "data/idx.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "data/file.hpp"

namespace data {
namespace {

// MNIST's largest file is 47 MB; a bound keeps a malicious or broken file (or a gzip bomb) from exhausting
// memory. It applies to the file and to what it decompresses to.
constexpr std::size_t kMaxBytes = std::size_t{1} << 30;

[[noreturn]] void fail(const std::string& path, std::string_view problem) {
  throw std::runtime_error(fmt::format("{}: {}", path, problem));
}

std::uint32_t read_big_endian_u32(std::span<const unsigned char> bytes, std::size_t offset) {
  return (std::uint32_t{bytes[offset]} << 24) | (std::uint32_t{bytes[offset + 1]} << 16) |
         (std::uint32_t{bytes[offset + 2]} << 8) | std::uint32_t{bytes[offset + 3]};
}

std::string join_extents(const std::vector<std::size_t>& extents) {
  return fmt::format("{}", fmt::join(extents, " x "));
}

bool is_gzip(std::span<const unsigned char> bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

// ---------------------------------------------------------------- the header

/// What an IDX file must be; `kind` says it in words ("images: N x rows x cols").
struct Expected {
  std::uint32_t magic;
  std::string_view kind;
};

/// What a header declares: the extents, and the size of the whole file they imply.
struct Layout {
  std::vector<std::size_t> extents;
  std::size_t header_bytes = 0;
  std::size_t total_bytes = 0;
};

/// How the messages name the data: "file has" or "decompressed file has".
std::string_view has_words(bool gzipped) { return gzipped ? "decompressed file has" : "file has"; }

/// Checks the magic number and the dimension count in the first 4 bytes; returns the header's size.
std::size_t check_magic(const std::string& path, std::span<const unsigned char> bytes, const Expected& expected,
                        bool gzipped) {
  const std::size_t expected_rank = expected.magic & 0xffU;
  if (bytes.size() < 4) {
    fail(path, fmt::format("{} {} bytes, too short for an IDX magic number (truncated)", has_words(gzipped),
                           bytes.size()));
  }
  const std::uint32_t magic = read_big_endian_u32(bytes, 0);
  if ((magic >> 8) != (expected.magic >> 8)) {
    fail(path, fmt::format("bad magic number {:#010x}, expected {:#010x} ({}); not an IDX file of unsigned bytes",
                           magic, expected.magic, expected.kind));
  }
  const std::size_t rank = magic & 0xffU;
  if (rank != expected_rank) {
    fail(path, fmt::format("IDX file has {} dimension{} (magic {:#010x}), expected {} for {} (magic {:#010x})", rank,
                           rank == 1 ? "" : "s", magic, expected_rank, expected.kind, expected.magic));
  }
  return 4 + 4 * rank;
}

/// Reads the extents of a header whose bytes have all arrived, and the file size they imply (at most kMaxBytes:
/// a header declaring more is refused here, before anything is allocated for its data).
Layout read_layout(const std::string& path, std::span<const unsigned char> bytes, std::size_t header_bytes) {
  Layout layout;
  layout.header_bytes = header_bytes;
  std::size_t element_count = 1;
  bool overflow = false;
  for (std::size_t offset = 4; offset < header_bytes; offset += 4) {
    layout.extents.push_back(read_big_endian_u32(bytes, offset));
    overflow = overflow || __builtin_mul_overflow(element_count, layout.extents.back(), &element_count);
  }
  if (overflow || element_count > kMaxBytes - header_bytes) {
    fail(path, fmt::format("header declares {} elements, more than the {} bytes an IDX file may hold here",
                           join_extents(layout.extents), kMaxBytes));
  }
  layout.total_bytes = header_bytes + element_count;
  return layout;
}

/// The layout of a complete header at the start of `bytes`, which must hold it.
Layout header_layout(const std::string& path, std::span<const unsigned char> bytes, const Expected& expected,
                     bool gzipped) {
  const std::size_t header_bytes = check_magic(path, bytes, expected, gzipped);
  if (bytes.size() < header_bytes) {
    fail(path, fmt::format("{} {} bytes, too short for the {}-byte header of a {}-dimensional IDX file (truncated)",
                           has_words(gzipped), bytes.size(), header_bytes, (header_bytes - 4) / 4));
  }
  return read_layout(path, bytes, header_bytes);
}

/// The size check, exact as for a plain file: neither truncated nor with trailing bytes.
void check_size(const std::string& path, const Layout& layout, std::size_t actual, bool gzipped) {
  if (actual == layout.total_bytes) return;
  const std::string what_is_wrong = actual < layout.total_bytes
                                        ? std::string("truncated")
                                        : fmt::format("{} trailing bytes", actual - layout.total_bytes);
  fail(path, fmt::format("expected {} bytes from header ({}), {} {} ({})", layout.total_bytes,
                         join_extents(layout.extents), has_words(gzipped), actual, what_is_wrong));
}

// ---------------------------------------------------------------- gzip

/// deflate cannot compress better than 1032 to 1 (a 258-byte match in one bit), so a gzip file of n bytes
/// decompresses to at most 1032 n bytes.
constexpr std::size_t kMaxDeflateRatio = 1032;

/// Collects decompressed bytes, holding them to what the header declares once it has arrived. A declared size
/// more than the compressed file could hold is refused at once; otherwise that size is reserved (address space
/// only: pages are touched as data arrives, so a header that lies costs no memory for the data it lacks, and
/// the buffer is never copied to grow), and bytes past it are counted, not kept.
class Collector {
 public:
  Collector(const std::string& path, const Expected& expected, std::size_t compressed_bytes)
      : path_(path), expected_(expected), compressed_(compressed_bytes) {}

  void add(const unsigned char* data, std::size_t count) {
    seen_ += count;
    if (seen_ > kMaxBytes) fail(path_, fmt::format("decompresses to more than {} bytes", kMaxBytes));
    if (layout_) {
      std::size_t room = layout_->total_bytes - std::min(layout_->total_bytes, bytes_.size());
      bytes_.insert(bytes_.end(), data, data + std::min(count, room));
      return;
    }
    bytes_.insert(bytes_.end(), data, data + count);
    if (bytes_.size() >= 4) header_ = check_magic(path_, bytes_, expected_, true);
    if (header_ > 0 && bytes_.size() >= header_) start_data(read_layout(path_, bytes_, header_));
  }

  /// The whole decompressed file, checked against its header.
  std::vector<unsigned char> finish() {
    Layout layout = layout_ ? *layout_ : header_layout(path_, bytes_, expected_, true);
    check_size(path_, layout, seen_, true);
    return std::move(bytes_);
  }

 private:
  void start_data(const Layout& layout) {
    const std::size_t most = kMaxDeflateRatio * compressed_;
    if (layout.total_bytes > most) {
      fail(path_, fmt::format("header declares {} ({} bytes), more than a gzip file of {} bytes can hold (at most "
                              "{}); the file is truncated or its header is wrong",
                              join_extents(layout.extents), layout.total_bytes, compressed_, most));
    }
    try {
      bytes_.reserve(layout.total_bytes);
    } catch (const std::bad_alloc&) {
      fail(path_, fmt::format("cannot allocate the {} bytes its header declares ({}): out of memory",
                              layout.total_bytes, join_extents(layout.extents)));
    }
    layout_ = layout;
  }

  const std::string& path_;
  Expected expected_;
  std::size_t compressed_;
  std::vector<unsigned char> bytes_;
  std::size_t seen_ = 0;
  std::size_t header_ = 0;
  std::optional<Layout> layout_;
};

class Inflater {
 public:
  explicit Inflater(const std::string& path) : path_(path) {
    if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) fail(path, "cannot start zlib's inflate");
  }
  ~Inflater() { inflateEnd(&stream_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  /// Decompresses every gzip member of `file` into `sink`; anything after the last member is refused.
  void run(std::span<const unsigned char> file, Collector& sink) {
    stream_.next_in = const_cast<unsigned char*>(file.data());
    std::size_t left = file.size();
    for (;;) {
      int status = step(left, sink);
      if (status != Z_STREAM_END) continue;
      if (left == 0 && stream_.avail_in == 0) return;
      std::span<const unsigned char> rest(stream_.next_in, stream_.avail_in + left);
      if (!is_gzip(rest)) {
        fail(path_, fmt::format("{} bytes of trailing garbage after the gzip stream", rest.size()));
      }
      inflateReset(&stream_);  // another member follows (concatenated gzip files)
    }
  }

 private:
  /// One call of inflate, feeding input in pieces of at most 1 GiB (avail_in is 32 bits).
  int step(std::size_t& left, Collector& sink) {
    if (stream_.avail_in == 0 && left > 0) {
      stream_.avail_in = static_cast<uInt>(std::min<std::size_t>(left, kMaxBytes));
      left -= stream_.avail_in;
    }
    stream_.next_out = buffer_;
    stream_.avail_out = sizeof(buffer_);
    int status = inflate(&stream_, Z_NO_FLUSH);
    sink.add(buffer_, sizeof(buffer_) - stream_.avail_out);
    if (status == Z_STREAM_END || status == Z_OK) return status;
    // With fresh output room every call, no progress means no input: the stream ended early.
    if (status == Z_BUF_ERROR) {
      fail(path_, fmt::format("gzip stream is truncated after {} compressed bytes", stream_.total_in));
    }
    fail(path_, fmt::format("gzip stream is corrupt (zlib: {})", stream_.msg ? stream_.msg : zError(status)));
  }

  const std::string& path_;
  z_stream stream_{};
  unsigned char buffer_[1 << 16];
};

/// The first `want` decompressed bytes of a gzip'd file (fewer if it holds fewer), for a header.
std::vector<unsigned char> gunzip_start(const std::string& path, std::span<const unsigned char> file,
                                        std::size_t want) {
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail(path, "cannot start zlib's inflate");
  std::vector<unsigned char> out(want);
  stream.next_in = const_cast<unsigned char*>(file.data());
  stream.avail_in = static_cast<uInt>(std::min<std::size_t>(file.size(), kMaxBytes));
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(want);
  int status = Z_OK;
  while (status == Z_OK && stream.avail_out > 0) status = inflate(&stream, Z_NO_FLUSH);
  std::string error = stream.msg ? stream.msg : zError(status);
  inflateEnd(&stream);
  if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
    fail(path, fmt::format("gzip stream is corrupt (zlib: {})", error));
  }
  out.resize(want - stream.avail_out);
  return out;
}

// ---------------------------------------------------------------- a file's contents

/// The IDX file held in `file` (plain, or gzip'd as told by its first bytes), checked header-exact: its
/// bytes (the file itself, or what it decompresses to) and the header's layout.
struct Contents {
  std::vector<unsigned char> bytes;
  Layout layout;
};

Contents contents_of(std::vector<unsigned char> file, const std::string& path, const Expected& expected) {
  if (is_gzip(file)) {
    Collector collector(path, expected, file.size());
    Inflater(path).run(file, collector);
    file = std::vector<unsigned char>();  // the compressed bytes go before the decompressed ones are checked
    std::vector<unsigned char> bytes = collector.finish();
    Layout layout = header_layout(path, bytes, expected, true);
    return {std::move(bytes), std::move(layout)};
  }
  Layout layout = header_layout(path, file, expected, false);
  check_size(path, layout, file.size(), false);
  return {std::move(file), std::move(layout)};
}

/// The bytes of the file at `path`: a regular file of at most kMaxBytes, or an error naming it and why.
std::vector<unsigned char> read_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 && errno == ENOENT) fail(path, "no such file");
  return read_regular_bytes(path, "", kMaxBytes);
}

/// The first `count` bytes of the file at `path`, refused like read_file.
std::string read_file_start(const std::string& path, std::size_t count) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 && errno == ENOENT) fail(path, "no such file");
  return read_regular_file_start(path, "", count);
}

std::span<const unsigned char> as_bytes(std::string_view text) {
  return {reinterpret_cast<const unsigned char*>(text.data()), text.size()};
}

const Expected kImages{kIdxImagesMagic, "images: N x rows x cols"};
const Expected kLabels{kIdxLabelsMagic, "labels: N"};

/// The images of a file's bytes, which become the pixels (the header cut off in place: no copy).
IdxImages images_of(std::vector<unsigned char> file, const std::string& source) {
  Contents contents = contents_of(std::move(file), source, kImages);
  IdxImages images;
  images.count = contents.layout.extents[0];
  images.rows = contents.layout.extents[1];
  images.cols = contents.layout.extents[2];
  if (images.rows == 0 || images.cols == 0) {
    fail(source, fmt::format("image size is {} x {}; images need at least one pixel", images.rows, images.cols));
  }
  const auto header = static_cast<std::ptrdiff_t>(contents.layout.header_bytes);
  contents.bytes.erase(contents.bytes.begin(), contents.bytes.begin() + header);
  images.pixels = Pixels(std::move(contents.bytes));
  return images;
}

std::vector<std::int32_t> labels_of(std::vector<unsigned char> file, const std::string& source,
                                    std::optional<std::size_t> class_count) {
  const Contents contents = contents_of(std::move(file), source, kLabels);
  const std::span<const unsigned char> values = std::span(contents.bytes).subspan(contents.layout.header_bytes);
  std::vector<std::int32_t> labels(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (class_count && values[i] >= *class_count) {
      fail(source, fmt::format("label {} at index {} is out of range (expected < {})", values[i], i, *class_count));
    }
    labels[i] = values[i];
  }
  return labels;
}

}  // namespace

IdxImages parse_idx_images(std::span<const unsigned char> file, const std::string& source) {
  return images_of(std::vector<unsigned char>(file.begin(), file.end()), source);
}

std::vector<std::int32_t> parse_idx_labels(std::span<const unsigned char> file, const std::string& source,
                                           std::optional<std::size_t> class_count) {
  return labels_of(std::vector<unsigned char>(file.begin(), file.end()), source, class_count);
}

IdxImages read_idx_images(const std::string& path) { return images_of(read_file(path), path); }

std::vector<std::int32_t> read_idx_labels(const std::string& path, std::optional<std::size_t> class_count) {
  return labels_of(read_file(path), path, class_count);
}

IdxGeometry read_idx_image_geometry(const std::string& path) {
  // 64 KiB of a gzip'd file hold its gzip header (10 bytes, plus a file name if stored) and the IDX header.
  const std::string start = read_file_start(path, std::size_t{1} << 16);
  std::span<const unsigned char> bytes = as_bytes(start);
  std::vector<unsigned char> decompressed;
  const bool gzipped = is_gzip(bytes);
  if (gzipped) {
    decompressed = gunzip_start(path, bytes, 16);
    bytes = decompressed;
  }
  const Layout layout = header_layout(path, bytes, kImages, gzipped);
  return {layout.extents[0], layout.extents[1], layout.extents[2]};
}

}  // namespace data
