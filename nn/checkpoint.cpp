#include "nn/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

namespace nn {

static_assert(std::endian::native == std::endian::little, "checkpoints are written little-endian");

namespace {

constexpr char kMagic[8] = {'T', 'G', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr std::uint32_t kVersion = 1;
// Bounds on header fields, so a corrupted length cannot make the reader allocate wildly.
constexpr std::uint32_t kMaxNameLength = 4096;
constexpr std::uint32_t kMaxEntries = 1u << 20;

std::uint64_t fnv1a(const std::string& bytes) {
  std::uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

template <class T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

class Reader {
 public:
  Reader(const std::string& bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  template <class T>
  T get(const char* what) {
    T value;
    need(sizeof(T), what);
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  const char* take(std::size_t count, const char* what) {
    need(count, what);
    const char* start = bytes_.data() + at_;
    at_ += count;
    return start;
  }
  std::size_t position() const { return at_; }
  [[noreturn]] void fail(const std::string& message) const {
    throw std::runtime_error(fmt::format("checkpoint {}: {} (at byte {})", path_, message, at_));
  }

 private:
  void need(std::size_t count, const char* what) {
    if (count > bytes_.size() - at_) {
      fail(fmt::format("truncated: {} needs {} bytes, {} remain", what, count, bytes_.size() - at_));
    }
  }
  const std::string& bytes_;
  const std::string& path_;
  std::size_t at_ = 0;
};

}  // namespace

void save_tensors(const std::string& path, const std::vector<NamedTensor>& entries) {
  std::string bytes(kMagic, sizeof(kMagic));
  put(bytes, kVersion);
  put(bytes, static_cast<std::uint32_t>(entries.size()));
  std::unordered_set<std::string> names;
  for (const auto& [name, tensor] : entries) {
    if (!tensor.defined()) throw std::invalid_argument(fmt::format("save_tensors: '{}' is undefined", name));
    if (!names.insert(name).second) {
      throw std::invalid_argument(fmt::format("save_tensors: '{}' is given twice ({})", name, path));
    }
    put(bytes, static_cast<std::uint32_t>(name.size()));
    bytes += name;
    put(bytes, static_cast<std::uint8_t>(tensor.dtype() == ag::DType::f64 ? 1 : 0));
    put(bytes, static_cast<std::uint8_t>(tensor.rank()));
    for (std::size_t extent : tensor.shape()) put(bytes, static_cast<std::uint64_t>(extent));
    std::size_t size = tensor.numel() * ag::dtype_size(tensor.dtype());
    const char* data = tensor.dtype() == ag::DType::f64 ? reinterpret_cast<const char*>(tensor.data<double>())
                                                        : reinterpret_cast<const char*>(tensor.data<float>());
    bytes.append(data, size);
  }
  put(bytes, fnv1a(bytes));

  // A unique temporary name beside the target (same file system, so rename is atomic), so that two
  // writers of one path never write into the same temporary file.
  std::string temporary = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(temporary.data());
  if (fd < 0) throw std::runtime_error(fmt::format("checkpoint {}: cannot create {}: {}", path, temporary, std::strerror(errno)));
  bool written = true;
  for (std::size_t done = 0; written && done < bytes.size();) {
    ssize_t count = ::write(fd, bytes.data() + done, bytes.size() - done);
    written = count > 0;
    done += written ? static_cast<std::size_t>(count) : 0;
  }
  written = ::fsync(fd) == 0 && written;
  written = ::close(fd) == 0 && written;
  if (!written || std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::string reason = std::strerror(errno);
    std::remove(temporary.c_str());
    throw std::runtime_error(fmt::format("checkpoint {}: write failed: {}", path, reason));
  }
  // Make the rename itself durable.
  std::string directory = std::filesystem::path(path).parent_path().string();
  int dir_fd = ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

std::vector<NamedTensor> load_tensors(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error(fmt::format("checkpoint {}: cannot open: {}", path, std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  Reader reader(bytes, path);
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    reader.fail("not a checkpoint (bad magic)");
  }
  reader.take(sizeof(kMagic), "magic");
  if (bytes.size() < sizeof(kMagic) + 16) reader.fail("truncated: shorter than a header and checksum");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != fnv1a(bytes.substr(0, bytes.size() - 8))) {
    reader.fail("checksum mismatch: the file is corrupted or truncated");
  }
  auto version = reader.get<std::uint32_t>("version");
  if (version != kVersion) reader.fail(fmt::format("version {} is not supported (this build reads {})", version, kVersion));
  auto count = reader.get<std::uint32_t>("entry count");
  if (count > kMaxEntries) reader.fail(fmt::format("implausible entry count {}", count));
  std::vector<NamedTensor> entries;
  std::unordered_set<std::string> names;
  for (std::uint32_t e = 0; e < count; ++e) {
    auto length = reader.get<std::uint32_t>("name length");
    if (length > kMaxNameLength) reader.fail(fmt::format("entry {}: implausible name length {}", e, length));
    std::string name(reader.take(length, "name"), length);
    if (!names.insert(name).second) reader.fail(fmt::format("entry {}: '{}' is stored twice", e, name));
    auto dtype_code = reader.get<std::uint8_t>("dtype");
    if (dtype_code > 1) reader.fail(fmt::format("'{}': unknown dtype code {}", name, dtype_code));
    auto rank = reader.get<std::uint8_t>("rank");
    if (rank > ag::kMaxRank) reader.fail(fmt::format("'{}': rank {} exceeds {}", name, rank, ag::kMaxRank));
    ag::Shape shape;
    for (std::uint8_t d = 0; d < rank; ++d) shape.push_back(static_cast<std::size_t>(reader.get<std::uint64_t>("extent")));
    ag::DType dtype = dtype_code == 1 ? ag::DType::f64 : ag::DType::f32;
    std::size_t size = shape.numel() * ag::dtype_size(dtype);
    if (size > bytes.size()) reader.fail(fmt::format("'{}': shape {} is larger than the file", name, shape.str()));
    const char* data = reader.take(size, "tensor data");
    ag::Tensor tensor = ag::Tensor::empty(shape, dtype);
    if (dtype == ag::DType::f64) {
      std::memcpy(tensor.data<double>(), data, size);
    } else {
      std::memcpy(tensor.data<float>(), data, size);
    }
    entries.emplace_back(std::move(name), std::move(tensor));
  }
  if (reader.position() != bytes.size() - 8) reader.fail("trailing bytes after the last entry");
  return entries;
}

std::vector<EntrySpec> specs_of(const std::vector<NamedTensor>& tensors) {
  std::vector<EntrySpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw std::invalid_argument(fmt::format("specs_of: '{}' is undefined", name));
    specs.push_back(EntrySpec{name, tensor.shape(), tensor.dtype()});
  }
  return specs;
}

namespace {

/// The entries of a source by name: the first tensor of each name and how often the name occurs, with
/// the names in order of first appearance.
struct SourceIndex {
  struct Occurrence {
    const ag::Tensor* tensor;
    std::size_t count;
  };
  std::unordered_map<std::string, Occurrence> by_name;
  std::vector<std::string> order;

  explicit SourceIndex(const std::vector<NamedTensor>& source) {
    for (const auto& [name, tensor] : source) {
      auto [it, fresh] = by_name.try_emplace(name, Occurrence{&tensor, 0});
      if (fresh) order.push_back(name);
      ++it->second.count;
    }
  }
};

/// "<name>: f32[2] in the file, f64[3] in the model", or empty if the entry fits its spec.
std::string mismatch(const EntrySpec& spec, const ag::Tensor& stored, const ReportTerms& terms) {
  if (stored.defined() && stored.shape() == spec.shape && stored.dtype() == spec.dtype) return {};
  return fmt::format("{}: {} in {}, {}{} {}", spec.name, stored.defined() ? stored.describe() : "an undefined tensor",
                     terms.source, ag::dtype_name(spec.dtype), spec.shape.str(),
                     spec.target.empty() ? terms.target : spec.target);
}

}  // namespace

std::vector<std::string> mismatches(const std::vector<NamedTensor>& source, const std::vector<EntrySpec>& expected,
                                    const ReportTerms& terms) {
  const SourceIndex index(source);
  std::vector<std::string> problems;
  for (const std::string& name : index.order) {
    std::size_t count = index.by_name.at(name).count;
    if (count > 1) problems.push_back(fmt::format("{}: appears {} times in {}", name, count, terms.source));
  }
  std::unordered_set<std::string> named;
  for (const EntrySpec& spec : expected) {
    if (!named.insert(spec.name).second) {
      throw std::invalid_argument(fmt::format("mismatches: '{}' is expected twice", spec.name));
    }
    auto found = index.by_name.find(spec.name);
    if (found == index.by_name.end()) {
      problems.push_back(fmt::format("{}: missing from {}", spec.name, terms.source));
    } else if (std::string line = mismatch(spec, *found->second.tensor, terms); !line.empty()) {
      problems.push_back(std::move(line));
    }
  }
  for (const std::string& name : index.order) {
    if (named.contains(name)) continue;
    problems.push_back(name + ": " + (terms.unexpected ? terms.unexpected(name)
                                                       : fmt::format("in {}, not {}", terms.source, terms.target)));
  }
  return problems;
}

void throw_if_problems(const std::string& heading, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string message =
      fmt::format("{} ({} problem{}):", heading, problems.size(), problems.size() == 1 ? "" : "s");
  for (const std::string& line : problems) message += "\n  " + line;
  throw std::runtime_error(message);
}

void assign_tensors(const std::vector<NamedTensor>& source, const std::vector<NamedTensor>& targets,
                    const std::string& what) {
  throw_if_problems(fmt::format("checkpoint does not match the {}", what),
                    mismatches(source, specs_of(targets), {.target = "in the " + what}));
  const SourceIndex index(source);
  for (const auto& [name, target] : targets) {
    ag::Tensor destination = target;
    destination.copy_(*index.by_name.at(name).tensor);
  }
}

void save_module(const std::string& path, const Module& module) { save_tensors(path, module.named_parameters()); }

void load_module(const std::string& path, Module& module) {
  assign_tensors(load_tensors(path), module.named_parameters(), "model");
}

}  // namespace nn
