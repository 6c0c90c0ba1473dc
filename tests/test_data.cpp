// Tests of data/: the IDX reader on good and malformed files written here (gzip'd ones as exact as plain
// ones, files that are not regular, headers that declare more than the file holds), the MNIST and
// Fashion-MNIST loaders and the geometry of their splits, the validation split, and the mini-batch loader.
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "data/file.hpp"
#include "data/idx.hpp"
#include "data/loader.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

namespace {

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tapegrad-test-data-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void append_big_endian_u32(Bytes& bytes, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    bytes.push_back(static_cast<unsigned char>(value >> shift));
  }
}

/// An IDX file: magic, extents, then `payload` as the elements (however many there are).
Bytes idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& extents,
                const Bytes& payload) {
  Bytes bytes;
  append_big_endian_u32(bytes, magic);
  for (const std::uint32_t extent : extents) append_big_endian_u32(bytes, extent);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  return bytes;
}

/// `count` pixel values cycling through 0..255 with a stride, so images are not constant.
Bytes pixel_pattern(std::size_t count) {
  Bytes pixels(count);
  for (std::size_t i = 0; i < count; ++i) pixels[i] = static_cast<unsigned char>((i * 37) % 256);
  return pixels;
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  REQUIRE(file.good());
}

void write_gzip_file(const std::string& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

Bytes read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

/// The message of the exception of type E that `action` throws ("" and a test failure if none).
template <class E = std::runtime_error>
std::string thrown_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const E& error) {
    return error.what();
  }
  FAIL_CHECK("expected an exception, none was thrown");
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Two small, valid files shared by many tests: 3 images of 2 x 3 pixels and their labels.
constexpr std::uint32_t kCount = 3, kRows = 2, kCols = 3;
const Bytes kPixels = {0, 255, 51, 102, 1, 254, 10, 20, 30, 40, 50, 60, 128, 127, 0, 0, 0, 255};
const Bytes kLabels = {7, 0, 9};

Bytes good_images() { return idx_bytes(data::kIdxImagesMagic, {kCount, kRows, kCols}, kPixels); }
Bytes good_labels() { return idx_bytes(data::kIdxLabelsMagic, {kCount}, kLabels); }

/// A synthetic data set of `size` (at most 256) samples of 2 x 2 pixels whose label is the sample
/// index and whose pixel bytes all equal it, so a batch shows which samples it holds and that rows
/// and labels stayed together.
data::Dataset indexed_dataset(std::size_t size) {
  data::Dataset dataset;
  dataset.rows = 2;
  dataset.cols = 2;
  for (std::size_t i = 0; i < size; ++i) {
    dataset.labels.push_back(static_cast<std::int32_t>(i));
    dataset.images.bytes().insert(dataset.images.bytes().end(), dataset.features(), static_cast<std::uint8_t>(i));
  }
  return dataset;
}

/// Runs one epoch with next(); checks every batch and returns the labels in visiting order.
std::vector<std::int32_t> run_epoch(data::DataLoader& loader) {
  const data::Dataset& dataset = loader.dataset();
  const std::size_t batch_size = loader.options().batch_size;
  std::vector<std::int32_t> visited;
  std::size_t batches = 0;
  loader.begin_epoch();
  data::Batch batch;
  while (loader.next(batch)) {
    ++batches;
    const std::size_t expected_size = std::min(batch_size, dataset.size() - visited.size());
    REQUIRE(batch.size() == expected_size);
    REQUIRE(batch.images.dtype() == ag::DType::f32);
    REQUIRE(batch.images.shape() == ag::Shape{expected_size, dataset.features()});
    const float* pixels = batch.images.data<float>();
    for (std::size_t row = 0; row < batch.size(); ++row) {
      for (std::size_t feature = 0; feature < dataset.features(); ++feature) {
        REQUIRE(pixels[row * dataset.features() + feature] ==
                data::pixel_value(static_cast<std::uint8_t>(batch.labels[row])));
      }
    }
    visited.insert(visited.end(), batch.labels.begin(), batch.labels.end());
  }
  CHECK(batches == loader.num_batches());
  CHECK_FALSE(loader.next(batch));  // stays exhausted until the next epoch
  return visited;
}

std::vector<std::vector<std::int32_t>> epoch_orders(std::uint64_t seed, int epochs) {
  const data::Dataset dataset = indexed_dataset(50);
  data::DataLoader loader(dataset, {.batch_size = 8, .seed = seed});
  std::vector<std::vector<std::int32_t>> orders;
  for (int epoch = 0; epoch < epochs; ++epoch) orders.push_back(run_epoch(loader));
  return orders;
}

}  // namespace

// ---------------------------------------------------------------------------------- IDX files

TEST_CASE("IDX images: a good file reads with pixels scaled to [0, 1]") {
  TempDir dir;
  const std::string path = dir.file("images");
  write_file(path, good_images());
  const data::IdxImages images = data::read_idx_images(path);
  CHECK(images.count == kCount);
  CHECK(images.rows == kRows);
  CHECK(images.cols == kCols);
  REQUIRE(images.pixels.size() == kPixels.size());
  for (std::size_t i = 0; i < kPixels.size(); ++i) {
    CHECK(images.pixels[i] == doctest::Approx(kPixels[i] / 255.0).epsilon(1e-7));
  }
  CHECK(images.pixels[0] == 0.0F);
  CHECK(images.pixels[1] == 1.0F);  // 255 maps to exactly 1
  CHECK(*std::ranges::min_element(images.pixels) >= 0.0F);
  CHECK(*std::ranges::max_element(images.pixels) <= 1.0F);
}

TEST_CASE("IDX labels: a good file reads, with an optional class bound") {
  TempDir dir;
  const std::string path = dir.file("labels");
  write_file(path, good_labels());
  CHECK(data::read_idx_labels(path) == std::vector<std::int32_t>{7, 0, 9});
  CHECK(data::read_idx_labels(path, 10) == std::vector<std::int32_t>{7, 0, 9});

  const std::string message = thrown_message([&] { data::read_idx_labels(path, 9); });
  CHECK_MESSAGE(contains(message, path + ": label 9 at index 2 is out of range (expected < 9)"),
                message);
}

TEST_CASE("IDX: a nonexistent file is named in the error") {
  TempDir dir;
  const std::string path = dir.file("no-such-file");
  for (const std::string& message :
       {thrown_message([&] { data::read_idx_images(path); }),
        thrown_message([&] { data::read_idx_labels(path); })}) {
    CHECK_MESSAGE(message == path + ": no such file", message);
  }
}

TEST_CASE("IDX: a bad magic number is reported with its value") {
  TempDir dir;
  const std::string path = dir.file("bad-magic");
  write_file(path, idx_bytes(0x12345678, {kCount, kRows, kCols}, kPixels));
  const std::string message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(contains(message, path + ": bad magic number 0x12345678, expected 0x00000803"),
                message);

  // A text file is not an IDX file either.
  write_file(path, Bytes{'h', 'e', 'l', 'l', 'o', '\n', 'w', 'o', 'r', 'l', 'd', '\n'});
  const std::string text_message = thrown_message([&] { data::read_idx_labels(path); });
  CHECK_MESSAGE(contains(text_message, "bad magic number 0x68656c6c, expected 0x00000801"),
                text_message);
}

TEST_CASE("IDX: a wrong dimension count is reported") {
  TempDir dir;
  const std::string labels_path = dir.file("labels");
  write_file(labels_path, good_labels());
  const std::string message = thrown_message([&] { data::read_idx_images(labels_path); });
  CHECK_MESSAGE(contains(message, labels_path + ": IDX file has 1 dimension (magic 0x00000801), "
                                                "expected 3 for images"),
                message);

  const std::string images_path = dir.file("images");
  write_file(images_path, good_images());
  const std::string reverse_message = thrown_message([&] { data::read_idx_labels(images_path); });
  CHECK_MESSAGE(contains(reverse_message, images_path + ": IDX file has 3 dimensions (magic "
                                                        "0x00000803), expected 1 for labels"),
                reverse_message);

  const std::string four_d_path = dir.file("four-d");
  write_file(four_d_path, idx_bytes(0x00000804, {kCount, 1, kRows, kCols}, kPixels));
  const std::string four_d_message = thrown_message([&] { data::read_idx_images(four_d_path); });
  CHECK_MESSAGE(contains(four_d_message, "has 4 dimensions"), four_d_message);
}

TEST_CASE("IDX: a truncated file states expected and actual sizes") {
  TempDir dir;
  const std::string path = dir.file("train-images-idx3-ubyte");
  Bytes truncated = good_images();
  truncated.resize(truncated.size() - 5);
  write_file(path, truncated);
  const std::string message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(message == path + ": expected 34 bytes from header (3 x 2 x 3), file has 29 "
                                  "(truncated)",
                message);

  // Cut inside the header.
  truncated.resize(10);
  write_file(path, truncated);
  const std::string header_message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(contains(header_message, path + ": file has 10 bytes, too short for the 16-byte "
                                                "header"),
                header_message);
  CHECK_MESSAGE(contains(header_message, "truncated"), header_message);

  // Empty.
  write_file(path, Bytes{});
  const std::string empty_message = thrown_message([&] { data::read_idx_labels(path); });
  CHECK_MESSAGE(contains(empty_message, path + ": file has 0 bytes, too short"), empty_message);
}

TEST_CASE("IDX: trailing bytes are reported") {
  TempDir dir;
  const std::string path = dir.file("labels");
  Bytes with_trailing = good_labels();
  with_trailing.insert(with_trailing.end(), {1, 2, 3, 4});
  write_file(path, with_trailing);
  const std::string message = thrown_message([&] { data::read_idx_labels(path); });
  CHECK_MESSAGE(message == path + ": expected 11 bytes from header (3), file has 15 (4 trailing "
                                  "bytes)",
                message);
}

TEST_CASE("IDX: images of zero pixels are rejected") {
  TempDir dir;
  const std::string path = dir.file("images");
  write_file(path, idx_bytes(data::kIdxImagesMagic, {5, 0, 28}, {}));
  const std::string message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(contains(message, path + ": image size is 0 x 28"), message);
}

TEST_CASE("IDX: gzip'd files are detected by content and read like plain ones") {
  TempDir dir;
  // No .gz suffix on purpose: detection is by the magic bytes 1f 8b.
  const std::string images_path = dir.file("images");
  const std::string labels_path = dir.file("labels.gz");
  write_gzip_file(images_path, good_images());
  write_gzip_file(labels_path, good_labels());
  REQUIRE(read_file(images_path).at(0) == 0x1f);

  const data::IdxImages images = data::read_idx_images(images_path);
  CHECK(images.count == kCount);
  CHECK(images.rows == kRows);
  CHECK(images.cols == kCols);
  CHECK(images.pixels[1] == 1.0F);
  CHECK(images.pixels[2] == doctest::Approx(0.2));
  CHECK(data::read_idx_labels(labels_path, 10) == std::vector<std::int32_t>{7, 0, 9});
}

TEST_CASE("IDX: a truncated gzip stream or gzip'd truncated file is reported") {
  TempDir dir;
  // Enough incompressible-ish data that cutting the compressed file in half cuts the stream.
  constexpr std::uint32_t kManyImages = 50;
  const Bytes images = idx_bytes(data::kIdxImagesMagic, {kManyImages, 28, 28},
                                 pixel_pattern(std::size_t{kManyImages} * 28 * 28));
  const std::string whole_path = dir.file("whole.gz");
  write_gzip_file(whole_path, images);
  CHECK(data::read_idx_images(whole_path).count == kManyImages);

  Bytes compressed = read_file(whole_path);
  compressed.resize(compressed.size() / 2);
  const std::string cut_path = dir.file("cut.gz");
  write_file(cut_path, compressed);
  const std::string stream_message = thrown_message([&] { data::read_idx_images(cut_path); });
  CHECK_MESSAGE(contains(stream_message, cut_path + ": gzip stream is truncated"), stream_message);

  // A complete gzip stream whose content is a truncated IDX file.
  Bytes short_images = good_images();
  short_images.pop_back();
  const std::string short_path = dir.file("short.gz");
  write_gzip_file(short_path, short_images);
  const std::string content_message = thrown_message([&] { data::read_idx_images(short_path); });
  CHECK_MESSAGE(content_message == short_path + ": expected 34 bytes from header (3 x 2 x 3), "
                                                "decompressed file has 33 (truncated)",
                content_message);
}

TEST_CASE("IDX pair: image and label counts must match") {
  TempDir dir;
  const std::string images_path = dir.file("images");
  const std::string labels_path = dir.file("labels");
  write_file(images_path, good_images());
  write_file(labels_path, idx_bytes(data::kIdxLabelsMagic, {4}, {1, 2, 3, 4}));
  const std::string message =
      thrown_message([&] { data::load_idx_dataset(images_path, labels_path); });
  CHECK_MESSAGE(contains(message, images_path + " has 3 images but " + labels_path +
                                      " has 4 labels"),
                message);

  write_file(labels_path, good_labels());
  const data::Dataset dataset = data::load_idx_dataset(images_path, labels_path);
  CHECK(dataset.size() == kCount);
  CHECK(dataset.rows == kRows);
  CHECK(dataset.cols == kCols);
  CHECK(dataset.features() == kRows * kCols);
  CHECK(dataset.images.size() == kPixels.size());
  CHECK(dataset.image(1)[0] == doctest::Approx(10 / 255.0));

  // Labels out of range for the ten MNIST classes.
  write_file(labels_path, idx_bytes(data::kIdxLabelsMagic, {3}, {1, 10, 3}));
  const std::string range_message =
      thrown_message([&] { data::load_idx_dataset(images_path, labels_path); });
  CHECK_MESSAGE(contains(range_message, "label 10 at index 1 is out of range (expected < 10)"),
                range_message);
}

TEST_CASE("IDX: gzip'd files are as exact as plain ones: trailing garbage and trailing data are refused") {
  TempDir dir;
  const std::string path = dir.file("images.gz");
  write_gzip_file(path, good_images());
  const Bytes compressed = read_file(path);

  // Garbage after the gzip stream (zlib's gzread ignores it silently).
  Bytes garbage = compressed;
  garbage.insert(garbage.end(), {'j', 'u', 'n', 'k', 0, 0, 0});
  write_file(path, garbage);
  std::string message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(message == path + ": 7 bytes of trailing garbage after the gzip stream", message);

  // Zeros after it are garbage too.
  Bytes zeros = compressed;
  zeros.insert(zeros.end(), 100, 0);
  write_file(path, zeros);
  CHECK(contains(thrown_message([&] { data::read_idx_images(path); }), "100 bytes of trailing garbage"));

  // Bytes beyond the header's size inside the stream.
  Bytes long_images = good_images();
  long_images.insert(long_images.end(), {1, 2, 3});
  write_gzip_file(path, long_images);
  message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(message == path + ": expected 34 bytes from header (3 x 2 x 3), decompressed file has 37 (3 "
                                  "trailing bytes)",
                message);

  // Concatenated gzip members are one gzip file (RFC 1952), as gzip itself reads them.
  const Bytes images = good_images();
  write_gzip_file(dir.file("first"), Bytes(images.begin(), images.begin() + 20));
  write_gzip_file(dir.file("second"), Bytes(images.begin() + 20, images.end()));
  Bytes joined = read_file(dir.file("first"));
  const Bytes second = read_file(dir.file("second"));
  joined.insert(joined.end(), second.begin(), second.end());
  write_file(path, joined);
  CHECK(data::read_idx_images(path).pixels.size() == kPixels.size());

  // A corrupted byte in the stream.
  Bytes corrupt = compressed;
  corrupt[corrupt.size() - 6] ^= 0xff;  // inside the CRC-32 / length trailer
  write_file(path, corrupt);
  CHECK(contains(thrown_message([&] { data::read_idx_images(path); }), "gzip stream is corrupt"));
}

TEST_CASE("IDX: a declared count larger than the file holds is refused without allocating for it") {
  TempDir dir;
  const std::string path = dir.file("images.gz");
  // 401,240 images of 28 x 28 declared (315 MB), three images' worth of pixels present.
  write_gzip_file(path, idx_bytes(data::kIdxImagesMagic, {401240, 28, 28}, pixel_pattern(3 * 784)));
  const std::string message = thrown_message([&] { data::read_idx_images(path); });
  CHECK_MESSAGE(contains(message, path + ": header declares 401240 x 28 x 28 (314572176 bytes), more than a gzip "
                                         "file of "),
                message);
  CHECK_MESSAGE(contains(message, "the file is truncated or its header is wrong"), message);

  // Declaring more than any IDX file may hold (1 GiB) is refused from the header alone.
  write_gzip_file(path, idx_bytes(data::kIdxImagesMagic, {0xffffffff, 0xffffffff, 0xffffffff}, {}));
  CHECK(contains(thrown_message([&] { data::read_idx_images(path); }),
                 "header declares 4294967295 x 4294967295 x 4294967295 elements, more than the 1073741824 bytes"));
  write_file(path, idx_bytes(data::kIdxImagesMagic, {2000000, 28, 28}, {}));
  CHECK(contains(thrown_message([&] { data::read_idx_images(path); }), "more than the 1073741824 bytes"));
}

TEST_CASE("IDX: 100,000 black images gzip'd to 100 KiB cost their bytes, not five times them") {
  // Found by fuzzing: a 299 KiB gzip'd file of 401,240 black images took 1.5 GiB, the decompressed bytes
  // plus a float copy. Now the bytes are the data set (floats are made per batch) and the buffer grows
  // to exactly the declared size.
  TempDir dir;
  const std::string path = dir.file("black.gz");
  constexpr std::uint32_t kImages = 100000;
  {
    gzFile file = gzopen(path.c_str(), "wb");
    REQUIRE(file != nullptr);
    const Bytes header = idx_bytes(data::kIdxImagesMagic, {kImages, 28, 28}, {});
    REQUIRE(gzwrite(file, header.data(), static_cast<unsigned>(header.size())) == 16);
    const Bytes zeros(784 * 1000, 0);
    for (std::uint32_t i = 0; i < kImages / 1000; ++i) {
      REQUIRE(gzwrite(file, zeros.data(), static_cast<unsigned>(zeros.size())) == static_cast<int>(zeros.size()));
    }
    REQUIRE(gzclose(file) == Z_OK);
  }
  CHECK(fs::file_size(path) < 200 * 1024);
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  const data::IdxImages images = data::read_idx_images(path);
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  REQUIRE(images.pixels.size() == std::size_t{kImages} * 784);
  const long data_kib = static_cast<long>(images.pixels.size() / 1024);
  INFO("peak grew by " << after.ru_maxrss - before.ru_maxrss << " KiB for " << data_kib << " KiB of pixels");
  CHECK(after.ru_maxrss - before.ru_maxrss < data_kib * 3 / 2);
}

TEST_CASE("IDX: what is not a regular file is refused before reading, and I/O errors carry strerror") {
  TempDir dir;
  std::string message = thrown_message([&] { data::read_idx_images(dir.file("")); });
  CHECK_MESSAGE(contains(message, "is a directory, not a regular file: refusing to read it"), message);
  message = thrown_message([] { data::read_idx_labels("/dev/zero"); });
  CHECK_MESSAGE(message == "/dev/zero: is a character device, not a regular file: refusing to read it", message);
  const std::string fifo = dir.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  message = thrown_message([&] { data::read_idx_images(fifo); });  // would block for ever if opened blocking
  CHECK_MESSAGE(contains(message, "is a FIFO"), message);
  const std::string locked = dir.file("unreadable");
  write_file(locked, good_labels());
  fs::permissions(locked, fs::perms::none);
  const std::string denied = locked + ": cannot open: Permission denied";
  if (::access(locked.c_str(), R_OK) != 0) {
    message = thrown_message([&] { data::read_idx_labels(locked); });
    CHECK_MESSAGE(message == denied, message);
    return;
  }
  // Root reads anything: the reader runs in a child that has become nobody (65534, no other groups), the
  // directory open to it, so that the file's own permissions refuse it.
  fs::permissions(fs::path(locked).parent_path(), fs::perms::others_exec, fs::perm_options::add);
  std::fflush(stdout);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    if (::access(locked.c_str(), R_OK) == 0) ::_exit(2);
    ::_exit(thrown_message([&] { data::read_idx_labels(locked); }) == denied ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) {  // a sandbox that maps no other user (a user namespace) or has no CAP_SETUID
    WARN_MESSAGE(false, "cannot become another user here: the permission-denied message is not checked");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);  // 1: another message; 2: nobody can read it
}

TEST_CASE("IDX: the header of an image file alone, plain or gzip'd") {
  TempDir dir;
  write_file(dir.file("plain"), good_images());
  write_gzip_file(dir.file("packed"), good_images());
  for (const char* name : {"plain", "packed"}) {
    const data::IdxGeometry geometry = data::read_idx_image_geometry(dir.file(name));
    CHECK(geometry.count == kCount);
    CHECK(geometry.rows == kRows);
    CHECK(geometry.cols == kCols);
  }
  write_file(dir.file("labels"), good_labels());
  CHECK(contains(thrown_message([&] { data::read_idx_image_geometry(dir.file("labels")); }), "has 1 dimension"));
}

TEST_CASE("MNIST layout: training and test images of another geometry with the same pixel count are refused") {
  TempDir dir;
  // 2 x 3 against 3 x 2: six pixels each, as 56 x 14 against 28 x 28.
  write_file(dir.file("train-images-idx3-ubyte"), good_images());
  write_file(dir.file("train-labels-idx1-ubyte"), good_labels());
  write_gzip_file(dir.file("t10k-images-idx3-ubyte.gz"),
                  idx_bytes(data::kIdxImagesMagic, {kCount, kCols, kRows}, kPixels));
  write_file(dir.file("t10k-labels-idx1-ubyte"), good_labels());
  const std::string directory = dir.file("");
  for (data::Split split : {data::Split::train, data::Split::test}) {
    const std::string message = thrown_message([&] { data::load_mnist(directory, split); });
    CHECK_MESSAGE(contains(message, dir.file("train-images-idx3-ubyte")), message);
    CHECK_MESSAGE(contains(message, dir.file("t10k-images-idx3-ubyte.gz")), message);
    CHECK_MESSAGE(contains(message, "images of 2 x 3"), message);
    CHECK_MESSAGE(contains(message, "images of 3 x 2"), message);
  }
  // The same geometry loads; a broken other split is left to its own loading to report.
  write_gzip_file(dir.file("t10k-images-idx3-ubyte.gz"), good_images());
  CHECK(data::load_mnist(directory, data::Split::test).rows == kRows);
  write_file(dir.file("t10k-images-idx3-ubyte.gz"), Bytes{1, 2, 3});
  CHECK(data::load_mnist(directory, data::Split::train).size() == kCount);

  // Data sets in memory: the same check, for any pair.
  data::Dataset train = indexed_dataset(2), test = indexed_dataset(2);
  CHECK_NOTHROW(data::check_same_geometry(train, test));
  test.rows = 4;
  test.cols = 1;
  const std::string message = thrown_message([&] { data::check_same_geometry(train, test, "validation"); });
  CHECK_MESSAGE(contains(message, "the training images are 2 x 2 but the validation images 4 x 1"), message);
}

// ----------------------------------------------------------------------------------- data sets

TEST_CASE("load_mnist finds plain and gzip'd files, and says how to get missing ones") {
  TempDir dir;
  write_file(dir.file("train-images-idx3-ubyte"), good_images());
  write_gzip_file(dir.file("train-labels-idx1-ubyte.gz"), good_labels());
  const std::string directory = dir.file("");
  const data::Dataset train = data::load_mnist(directory, data::Split::train);
  CHECK(train.size() == kCount);
  CHECK(train.labels == std::vector<std::int32_t>{7, 0, 9});

  const std::string message =
      thrown_message([&] { data::load_mnist(directory, data::Split::test); });
  CHECK_MESSAGE(contains(message, "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
                                  "not found in"),
                message);
  CHECK_MESSAGE(contains(message, "scripts/fetch-mnist.sh"), message);

  const std::string fashion_message =
      thrown_message([&] { data::load_fashion_mnist(data::Split::test, directory); });
  CHECK_MESSAGE(contains(fashion_message, "dataset-fashion-mnist"), fashion_message);

  CHECK(data::load_dataset("mnist", data::Split::train, directory).size() == kCount);
  const std::string name_message = thrown_message<std::invalid_argument>(
      [&] { data::load_dataset("cifar", data::Split::train, directory); });
  CHECK_MESSAGE(contains(name_message, "unknown data set 'cifar'"), name_message);
}

TEST_CASE("load_mnist names what is in the way of a data file, and a --data that is not a directory") {
  TempDir dir;
  const std::string directory = dir.file("");
  // A directory where the images file should be: named, with what it is, not "not found".
  fs::create_directories(dir.file("train-images-idx3-ubyte"));
  write_gzip_file(dir.file("train-labels-idx1-ubyte.gz"), good_labels());
  std::string message = thrown_message([&] { data::load_mnist(directory, data::Split::train); });
  CHECK_MESSAGE(contains(message, dir.file("train-images-idx3-ubyte") + " is a directory, not an IDX file"), message);
  CHECK_MESSAGE(!contains(message, "not found"), message);
  // A symbolic link to nothing: where it points.
  fs::remove(dir.file("train-images-idx3-ubyte"));
  fs::create_symlink(dir.file("gone"), dir.file("train-images-idx3-ubyte"));
  message = thrown_message([&] { data::load_mnist(directory, data::Split::train); });
  CHECK_MESSAGE(contains(message, dir.file("train-images-idx3-ubyte") + " is a symbolic link to nothing (" +
                                      dir.file("gone") + ")"),
                message);
  // The directory given is a regular file, or nothing.
  write_file(dir.file("not-a-dir"), good_images());
  message = thrown_message([&] { data::load_mnist(dir.file("not-a-dir"), data::Split::train); });
  CHECK_MESSAGE(contains(message, "MNIST: " + dir.file("not-a-dir") + " is a regular file, not a directory"), message);
  message = thrown_message([&] { data::load_mnist(dir.file("nowhere"), data::Split::train); });
  CHECK_MESSAGE(contains(message, "not found in " + dir.file("nowhere") + " (no such directory)"), message);
  CHECK_MESSAGE(contains(message, "scripts/fetch-mnist.sh"), message);
  // A file under a "directory" that is a regular file: the OS's reason, with the path.
  message = thrown_message([&] { data::load_mnist(dir.file("not-a-dir") + "/sub", data::Split::train); });
  CHECK_MESSAGE(contains(message, dir.file("not-a-dir") + "/sub"), message);
  CHECK_MESSAGE(contains(message, "Not a directory"), message);
}

TEST_CASE("default_mnist_dir: $TAPEGRAD_MNIST_DIR, else ./data/mnist, else an error saying how to fix it") {
  const char* saved = std::getenv("TAPEGRAD_MNIST_DIR");
  const std::string saved_value = saved != nullptr ? saved : "";
  const fs::path saved_cwd = fs::current_path();
  const fs::path scratch = fs::temp_directory_path() / ("tapegrad_mnist_dir_" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  fs::current_path(scratch);
  unsetenv("TAPEGRAD_MNIST_DIR");
  const std::string expected = "TAPEGRAD_MNIST_DIR is not set and " + (scratch / "data" / "mnist").string() +
                               " does not exist";
  CHECK_THROWS_WITH_AS(data::default_mnist_dir(), doctest::Contains(expected.c_str()), std::runtime_error);
  CHECK_THROWS_WITH_AS(data::default_mnist_dir(), doctest::Contains("--data DIR"), std::runtime_error);
  fs::create_directories(scratch / "data" / "mnist");
  CHECK(fs::path(data::default_mnist_dir()) == scratch / "data" / "mnist");  // never the build tree
  setenv("TAPEGRAD_MNIST_DIR", "/somewhere/else", 1);
  CHECK(data::default_mnist_dir() == "/somewhere/else");
  setenv("TAPEGRAD_MNIST_DIR", "", 1);  // empty counts as unset
  CHECK(fs::path(data::default_mnist_dir()) == scratch / "data" / "mnist");
  fs::current_path(saved_cwd);
  fs::remove_all(scratch);
  if (saved != nullptr) {
    setenv("TAPEGRAD_MNIST_DIR", saved_value.c_str(), 1);
  } else {
    unsetenv("TAPEGRAD_MNIST_DIR");
  }
}

TEST_CASE("Pixels: bytes read as floats in [0, 1], through the interface of a vector of floats") {
  data::Pixels pixels(std::vector<std::uint8_t>{0, 51, 255, 128});
  CHECK(pixels.size() == 4);
  CHECK(pixels[0] == 0.0F);
  CHECK(pixels[1] == 0.2F);
  CHECK(pixels[2] == 1.0F);  // exactly
  CHECK(std::vector<float>(pixels.begin(), pixels.end()) ==
        std::vector<float>{0.0F, 0.2F, 1.0F, 128.0F / 255.0F});
  std::vector<float> copied;
  copied.assign(pixels.begin() + 1, pixels.begin() + 3);  // as code written for a vector of floats does
  CHECK(copied == std::vector<float>{0.2F, 1.0F});
  data::Pixels part;
  part.assign(pixels.begin() + 2, pixels.end());
  CHECK(part.bytes() == std::vector<std::uint8_t>{255, 128});
  pixels.assign(pixels.begin() + 1, pixels.begin() + 2);  // from itself
  CHECK(pixels.bytes() == std::vector<std::uint8_t>{51});
  pixels.resize(3);
  CHECK(pixels.bytes() == std::vector<std::uint8_t>{51, 0, 0});
  float out[2];
  part.to_floats(0, 2, out);
  CHECK(out[0] == 1.0F);
  CHECK(out[1] == 128.0F / 255.0F);
  const data::PixelView view = part.view(1, 1);
  CHECK(view.size() == 1);
  CHECK(view[0] == 128.0F / 255.0F);
  float total = 0;
  for (float v : view) total += v;  // range-for over one image, as the programs do
  CHECK(total == 128.0F / 255.0F);
  static_assert(std::random_access_iterator<data::PixelIterator>);
}

TEST_CASE("split_train_validation takes the last samples as validation") {
  const data::Dataset dataset = indexed_dataset(10);
  const auto [train, validation] = data::split_train_validation(dataset, 3);
  CHECK(train.size() == 7);
  CHECK(validation.size() == 3);
  CHECK(train.labels == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6});
  CHECK(validation.labels == std::vector<std::int32_t>{7, 8, 9});
  CHECK(train.images.size() == 7 * dataset.features());
  CHECK(validation.images.size() == 3 * dataset.features());
  CHECK(validation.image(0)[0] == data::pixel_value(7));
  CHECK(validation.rows == dataset.rows);
  CHECK(validation.cols == dataset.cols);

  CHECK(data::split_train_validation(dataset, 0).second.size() == 0);
  CHECK(data::split_train_validation(dataset, 10).first.size() == 0);
  const std::string message = thrown_message<std::invalid_argument>(
      [&] { data::split_train_validation(dataset, 11); });
  CHECK_MESSAGE(contains(message, "validation size 11 exceeds the 10 samples"), message);
}

// -------------------------------------------------------------------------------------- loader

TEST_CASE("DataLoader visits every sample exactly once per epoch") {
  constexpr std::size_t kSize = 100;
  const data::Dataset dataset = indexed_dataset(kSize);
  std::vector<std::int32_t> all(kSize);
  std::iota(all.begin(), all.end(), 0);

  for (const std::size_t batch_size : {std::size_t{1}, std::size_t{7}, std::size_t{64}, kSize}) {
    for (const bool drop_last : {false, true}) {
      CAPTURE(batch_size);
      CAPTURE(drop_last);
      data::DataLoader loader(dataset, {.batch_size = batch_size, .drop_last = drop_last,
                                        .seed = 3});
      const std::size_t full_batches = kSize / batch_size;
      CHECK(loader.num_batches() ==
            (drop_last || kSize % batch_size == 0 ? full_batches : full_batches + 1));
      for (int epoch = 0; epoch < 3; ++epoch) {
        std::vector<std::int32_t> visited = run_epoch(loader);
        if (drop_last) {
          CHECK(visited.size() == full_batches * batch_size);
          std::sort(visited.begin(), visited.end());
          CHECK(std::adjacent_find(visited.begin(), visited.end()) == visited.end());
        } else {
          std::sort(visited.begin(), visited.end());
          CHECK(visited == all);
        }
      }
      CHECK(loader.epoch() == 3);
    }
  }
}

TEST_CASE("DataLoader reshuffles every epoch, and without shuffle keeps data set order") {
  const data::Dataset dataset = indexed_dataset(100);
  data::DataLoader shuffled(dataset, {.batch_size = 10, .seed = 1});
  const std::vector<std::int32_t> first = run_epoch(shuffled);
  const std::vector<std::int32_t> second = run_epoch(shuffled);
  CHECK(first != second);
  CHECK_FALSE(std::is_sorted(first.begin(), first.end()));

  data::DataLoader in_order(dataset, {.batch_size = 10, .shuffle = false});
  std::vector<std::int32_t> all(100);
  std::iota(all.begin(), all.end(), 0);
  CHECK(run_epoch(in_order) == all);
  CHECK(run_epoch(in_order) == all);
}

TEST_CASE("DataLoader: same seed gives the same orders, a different seed different ones") {
  const auto orders = epoch_orders(42, 3);
  CHECK(epoch_orders(42, 3) == orders);
  const auto other_orders = epoch_orders(43, 3);
  for (std::size_t epoch = 0; epoch < orders.size(); ++epoch) {
    CHECK(other_orders[epoch] != orders[epoch]);
  }
}

TEST_CASE("DataLoader: range-for runs one epoch per loop, with image-shaped batches on request") {
  const data::Dataset dataset = indexed_dataset(20);
  data::DataLoader loader(dataset, {.batch_size = 8, .image_shape = true, .seed = 5});
  for (int epoch = 1; epoch <= 2; ++epoch) {
    std::vector<std::size_t> sizes;
    std::vector<std::int32_t> visited;
    for (const data::Batch& batch : loader) {
      sizes.push_back(batch.size());
      CHECK(batch.images.shape() == ag::Shape{batch.size(), 1, 2, 2});
      visited.insert(visited.end(), batch.labels.begin(), batch.labels.end());
    }
    CHECK(loader.epoch() == static_cast<std::size_t>(epoch));
    CHECK(sizes == std::vector<std::size_t>{8, 8, 4});
    CHECK(std::vector<std::size_t>(loader.order().begin(), loader.order().end()) ==
          std::vector<std::size_t>(visited.begin(), visited.end()));
  }
}

TEST_CASE("DataLoader: batch tensors are independent of each other") {
  const data::Dataset dataset = indexed_dataset(4);
  data::DataLoader loader(dataset, {.batch_size = 2, .shuffle = false});
  data::Batch first;
  data::Batch second;
  REQUIRE(loader.next(first));  // begins the first epoch implicitly
  REQUIRE(loader.next(second));
  CHECK_FALSE(first.images.shares_storage_with(second.images));
  CHECK(first.images.at(0) == 0.0);
  CHECK(second.images.at(0) == data::pixel_value(2));
}

TEST_CASE("DataLoader: invalid batch sizes are rejected with a clear message") {
  const data::Dataset dataset = indexed_dataset(10);
  const std::string zero_message = thrown_message<std::invalid_argument>(
      [&] { data::DataLoader(dataset, {.batch_size = 0}); });
  CHECK_MESSAGE(contains(zero_message, "batch_size must be at least 1"), zero_message);

  const std::string too_large_message = thrown_message<std::invalid_argument>(
      [&] { data::DataLoader(dataset, {.batch_size = 11, .drop_last = true}); });
  CHECK_MESSAGE(contains(too_large_message, "batch_size 11 exceeds the 10 samples"),
                too_large_message);
  CHECK_MESSAGE(contains(too_large_message, "no batch would ever be produced"), too_large_message);

  // Without drop_last a batch size beyond the data set is simply full batch.
  data::DataLoader full(dataset, {.batch_size = 11});
  CHECK(full.num_batches() == 1);
  CHECK(run_epoch(full).size() == 10);

  const data::Dataset empty = indexed_dataset(0);
  const std::string empty_message = thrown_message<std::invalid_argument>(
      [&] { data::DataLoader(empty, {.batch_size = 1}); });
  CHECK_MESSAGE(contains(empty_message, "empty"), empty_message);
}

// ------------------------------------------------------------------------------- the real data

TEST_CASE("MNIST: the real files load as 60000 + 10000 images of 28 x 28") {
  const std::string dir = data::default_mnist_dir();
  data::Dataset train;
  data::Dataset test;
  try {
    train = data::load_mnist(dir, data::Split::train);
    test = data::load_mnist(dir, data::Split::test);
  } catch (const std::exception& error) {
    FAIL("the project needs the real MNIST files in " << dir << "; run scripts/fetch-mnist.sh ("
                                                      << std::string(error.what()) << ")");
  }
  CHECK(train.size() == 60000);
  CHECK(test.size() == 10000);
  for (const data::Dataset* dataset : {&train, &test}) {
    CHECK(dataset->rows == 28);
    CHECK(dataset->cols == 28);
    CHECK(dataset->images.size() == dataset->size() * 784);
    CHECK(*std::ranges::min_element(dataset->images) == 0.0F);
    CHECK(*std::ranges::max_element(dataset->images) == 1.0F);
  }

  // Label histograms of the original distribution.
  const auto histogram = [](const data::Dataset& dataset) {
    std::array<std::size_t, 10> counts{};
    for (const std::int32_t label : dataset.labels) ++counts.at(static_cast<std::size_t>(label));
    return counts;
  };
  const std::array<std::size_t, 10> train_counts = histogram(train);
  const std::array<std::size_t, 10> test_counts = histogram(test);
  CHECK(std::accumulate(train_counts.begin(), train_counts.end(), std::size_t{0}) == 60000);
  CHECK(std::accumulate(test_counts.begin(), test_counts.end(), std::size_t{0}) == 10000);
  CHECK(train_counts ==
        std::array<std::size_t, 10>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949});
  CHECK(test_counts ==
        std::array<std::size_t, 10>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009});
  CHECK(std::vector<std::int32_t>(train.labels.begin(), train.labels.begin() + 5) ==
        std::vector<std::int32_t>{5, 0, 4, 1, 9});
  CHECK(std::vector<std::int32_t>(test.labels.begin(), test.labels.begin() + 5) ==
        std::vector<std::int32_t>{7, 2, 1, 0, 4});

  const auto [fit, validation] = data::split_train_validation(train, 10000);
  CHECK(fit.size() == 50000);
  CHECK(validation.size() == 10000);
  CHECK(validation.labels.front() == train.labels[50000]);
  CHECK(validation.labels.back() == train.labels.back());
}

namespace {
std::set<std::int32_t> labels_of(const data::Dataset& d) { return {d.labels.begin(), d.labels.end()}; }
}  // namespace

TEST_CASE("evaluation splits: validation held out, train-eval drawn from the rest, both fixed by the seed") {
  const data::Dataset all = indexed_dataset(1000);  // labels 0..999, pixels the label mod 256;
  const data::EvaluationSplits a = data::split_for_evaluation(all, 200, 300, 42);
  CHECK(a.train.size() == 800);
  CHECK(a.validation.size() == 200);
  CHECK(a.train_eval.size() == 300);
  const std::set<std::int32_t> train = labels_of(a.train), validation = labels_of(a.validation);
  const std::set<std::int32_t> train_eval = labels_of(a.train_eval);
  CHECK(train.size() == 800);  // no sample twice
  for (std::int32_t i : validation) CHECK(train.count(i) == 0);
  for (std::int32_t i : train_eval) CHECK(train.count(i) == 1);
  CHECK(train.size() + validation.size() == 1000);
  // The pixels travel with their labels.
  for (std::size_t i = 0; i < a.validation.size(); ++i) {
    CHECK(a.validation.images.bytes()[4 * i] == static_cast<std::uint8_t>(a.validation.labels[i] % 256));
  }
  // Drawn at random (not the last 200), fixed by the seed.
  CHECK(*validation.begin() < 800);
  const data::EvaluationSplits again = data::split_for_evaluation(all, 200, 300, 42);
  CHECK(again.validation.labels == a.validation.labels);
  CHECK(again.train_eval.labels == a.train_eval.labels);
  CHECK(data::split_for_evaluation(all, 200, 300, 43).validation.labels != a.validation.labels);
  CHECK_THROWS_WITH_AS(data::split_for_evaluation(all, 800, 201),
                       doctest::Contains("800 validation and 201 train-eval samples out of 1000"),
                       std::invalid_argument);
  CHECK_THROWS_AS(data::split_for_evaluation(all, 1000, 0), std::invalid_argument);
}

TEST_CASE("Fashion-MNIST: the Debian package's files load, 10 balanced classes") {
  const std::string dir = data::default_fashion_mnist_dir();
  REQUIRE_MESSAGE(fs::exists(dir), "Fashion-MNIST is not in ", dir, " (scripts/setup.sh installs dataset-fashion-mnist)");
  const data::Dataset test = data::load_dataset("fashion", data::Split::test);
  CHECK(test.size() == 10000);
  CHECK(test.rows == 28);
  CHECK(test.cols == 28);
  std::array<std::size_t, 10> counts{};
  for (const std::int32_t label : test.labels) ++counts.at(static_cast<std::size_t>(label));
  for (const std::size_t count : counts) CHECK(count == 1000);
  CHECK(data::load_fashion_mnist(data::Split::train).size() == 60000);
}

TEST_CASE("write_file_atomically: a full disk leaves the old file whole and no temporary; new files get the umask's mode") {
  TempDir dir;
  const std::string path = dir.file("result.csv");
  data::write_file_atomically(path, "old,content\n", "the result");
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((info.st_mode & 0777) == (0666 & ~mask));  // as a file open(2) creates, not mkstemp's 0600

  // Files may not grow past 100 bytes: a write of 1000 fails as on a full disk (EFBIG in place of ENOSPC).
  // In a child, so that the limit does not outlive the check.
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit files{100, 100};
    ::setrlimit(RLIMIT_FSIZE, &files);
    int code = 0;
    try {
      data::write_file_atomically(path, std::string(1000, 'x'), "the result");
      code = 10;  // no error: wrong
    } catch (const std::runtime_error& error) {
      const std::string message = error.what();
      if (message.find("the result " + path) != 0) code = 11;
      if (message.find("write failed after") == std::string::npos) code = 12;
      if (message.find("File too large") == std::string::npos) code = 13;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(content == "old,content\n");
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) ++files;
  CHECK(files == 1);
}
