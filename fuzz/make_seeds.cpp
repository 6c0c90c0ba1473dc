// Writes the seed corpus of the fuzz targets: small valid IDX files (plain and gzip'd) and checkpoints.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw std::runtime_error("make_seeds: cannot write " + path.string());
}

std::string gzipped(const std::string& bytes) {
  z_stream stream{};
  if (deflateInit2(&stream, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("make_seeds: deflateInit2 failed");
  }
  std::string out(deflateBound(&stream, bytes.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("make_seeds: deflate failed");
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

/// An IDX file of unsigned bytes: magic 0x000008RR, big-endian extents, then the elements (i * 37 mod 256).
std::string idx(const std::vector<std::uint32_t>& extents) {
  std::string bytes{'\0', '\0', '\x08', static_cast<char>(extents.size())};
  std::size_t count = 1;
  for (std::uint32_t extent : extents) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>(extent >> shift);
    count *= extent;
  }
  for (std::size_t i = 0; i < count; ++i) bytes += static_cast<char>(i * 37 % 10);
  return bytes;
}

void idx_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const std::string images = idx({3, 2, 3}), labels = idx({3}), square = idx({2, 4, 4}), none = idx({0, 28, 28});
  write(dir / "images", images);
  write(dir / "images.gz", gzipped(images));
  write(dir / "labels", labels);
  write(dir / "labels.gz", gzipped(labels));
  write(dir / "square.gz", gzipped(square));
  write(dir / "none", none);
}

void checkpoint_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  ag::Tensor weight = ag::Tensor::full(ag::Shape{2, 3}, 0.5), bias = ag::Tensor::full(ag::Shape{3}, -1.0, ag::DType::f64);
  write(dir / "empty", nn::serialize_tensors({}, "seed"));
  write(dir / "one", nn::serialize_tensors({{"w", weight}}, "seed"));
  write(dir / "two", nn::serialize_tensors({{"fc.weight", weight}, {"fc.bias", bias}}, "seed"));
  write(dir / "ranks", nn::serialize_tensors({{"s", ag::Tensor::scalar(2.0)},
                                              {"img", ag::Tensor::ones(ag::Shape{1, 1, 2, 2})},
                                              {"none", ag::Tensor::zeros(ag::Shape{0, 4})}},
                                             "seed"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR (writes DIR/idx and DIR/checkpoint)\n");
    return 2;
  }
  try {
    idx_seeds(fs::path(argv[1]) / "idx");
    checkpoint_seeds(fs::path(argv[1]) / "checkpoint");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
