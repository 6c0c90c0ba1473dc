#include "nn/checkpoint.hpp"

#include <bit>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "data/file.hpp"

namespace nn {

static_assert(std::endian::native == std::endian::little, "checkpoints are written little-endian");

namespace {

constexpr char kMagic[8] = {'T', 'G', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr std::uint32_t kVersion = 1;
// Bounds on header fields, so a corrupted length cannot make the reader allocate wildly.
constexpr std::uint32_t kMaxNameLength = 4096;
constexpr std::uint32_t kMaxEntries = 1u << 20;
constexpr std::size_t kChecksumBytes = 8;

std::uint64_t fnv1a(std::string_view bytes) {
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

const char* bytes_of(const ag::Tensor& tensor) {
  return tensor.dtype() == ag::DType::f64 ? reinterpret_cast<const char*>(tensor.data<double>())
                                          : reinterpret_cast<const char*>(tensor.data<float>());
}

void* elements_of(ag::Tensor& tensor) {
  return tensor.dtype() == ag::DType::f64 ? static_cast<void*>(tensor.data<double>())
                                          : static_cast<void*>(tensor.data<float>());
}

class Reader {
 public:
  Reader(std::string_view bytes, const std::string& source) : bytes_(bytes), source_(source) {}
  template <class T>
  T get(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }
  const char* take(std::size_t count, const char* what) {
    if (count > remaining()) fail(fmt::format("truncated: {} needs {} bytes, {} remain", what, count, remaining()));
    const char* start = bytes_.data() + at_;
    at_ += count;
    return start;
  }
  /// Bytes left before the checksum.
  std::size_t remaining() const { return bytes_.size() - kChecksumBytes - at_; }
  [[noreturn]] void fail(const std::string& message) const {
    throw std::runtime_error(fmt::format("checkpoint {}: {} (at byte {})", source_, message, at_));
  }

 private:
  std::string_view bytes_;
  const std::string& source_;
  std::size_t at_ = 0;
};

/// Checks the magic, the checksum and the version, and returns the entry count.
std::uint32_t read_header(Reader& reader, std::string_view bytes) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    reader.fail("not a checkpoint (bad magic)");
  }
  if (bytes.size() < sizeof(kMagic) + 8 + kChecksumBytes) reader.fail("truncated: shorter than a header and checksum");
  reader.take(sizeof(kMagic), "magic");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - kChecksumBytes, kChecksumBytes);
  if (stored != fnv1a(bytes.substr(0, bytes.size() - kChecksumBytes))) {
    reader.fail("checksum mismatch: the file is corrupted or truncated");
  }
  auto version = reader.get<std::uint32_t>("version");
  if (version != kVersion) reader.fail(fmt::format("version {} is not supported (this build reads {})", version, kVersion));
  auto count = reader.get<std::uint32_t>("entry count");
  if (count > kMaxEntries) reader.fail(fmt::format("implausible entry count {}", count));
  return count;
}

/// One entry's shape and dtype, then its elements; every size is checked before the tensor is allocated.
ag::Tensor read_tensor(Reader& reader, const std::string& name) {
  auto dtype_code = reader.get<std::uint8_t>("dtype");
  if (dtype_code > 1) reader.fail(fmt::format("'{}': unknown dtype code {}", name, dtype_code));
  auto rank = reader.get<std::uint8_t>("rank");
  if (rank > ag::kMaxRank) reader.fail(fmt::format("'{}': rank {} exceeds {}", name, rank, ag::kMaxRank));
  ag::Shape shape;
  for (std::uint8_t d = 0; d < rank; ++d) shape.push_back(static_cast<std::size_t>(reader.get<std::uint64_t>("extent")));
  ag::DType dtype = dtype_code == 1 ? ag::DType::f64 : ag::DType::f32;
  std::optional<std::size_t> count = shape.checked_numel();
  std::size_t size = 0;
  if (!count || __builtin_mul_overflow(*count, ag::dtype_size(dtype), &size)) {
    reader.fail(fmt::format("'{}': shape {} has more bytes than 64 bits count", name, shape.str()));
  }
  if (size > reader.remaining()) {
    reader.fail(fmt::format("'{}': shape {} needs {} bytes, but only {} remain in the file", name, shape.str(), size,
                            reader.remaining()));
  }
  const char* data = reader.take(size, "tensor data");
  ag::Tensor tensor = ag::Tensor::empty(shape, dtype);
  if (size > 0) std::memcpy(elements_of(tensor), data, size);
  return tensor;
}

}  // namespace

std::string serialize_tensors(const std::vector<NamedTensor>& entries, const std::string& source) {
  // The reader's bounds: a file it would refuse is not written.
  if (entries.size() > kMaxEntries) {
    throw std::invalid_argument(fmt::format("save_tensors: {} entries, more than the {} a checkpoint holds ({})",
                                            entries.size(), kMaxEntries, source));
  }
  std::string bytes(kMagic, sizeof(kMagic));
  put(bytes, kVersion);
  put(bytes, static_cast<std::uint32_t>(entries.size()));
  std::unordered_set<std::string> names;
  for (const auto& [name, tensor] : entries) {
    if (!tensor.defined()) throw std::invalid_argument(fmt::format("save_tensors: '{}' is undefined", name));
    if (!names.insert(name).second) {
      throw std::invalid_argument(fmt::format("save_tensors: '{}' is given twice ({})", name, source));
    }
    if (name.size() > kMaxNameLength) {
      throw std::invalid_argument(fmt::format("save_tensors: the name '{}...' is {} bytes, more than {} ({})",
                                              name.substr(0, 40), name.size(), kMaxNameLength, source));
    }
    put(bytes, static_cast<std::uint32_t>(name.size()));
    bytes += name;
    put(bytes, static_cast<std::uint8_t>(tensor.dtype() == ag::DType::f64 ? 1 : 0));
    put(bytes, static_cast<std::uint8_t>(tensor.rank()));
    for (std::size_t extent : tensor.shape()) put(bytes, static_cast<std::uint64_t>(extent));
    bytes.append(bytes_of(tensor), tensor.numel() * ag::dtype_size(tensor.dtype()));
  }
  put(bytes, fnv1a(bytes));
  return bytes;
}

std::vector<NamedTensor> parse_tensors(std::string_view bytes, const std::string& source) {
  Reader reader(bytes, source);
  std::uint32_t count = read_header(reader, bytes);
  std::vector<NamedTensor> entries;
  std::unordered_set<std::string> names;
  for (std::uint32_t e = 0; e < count; ++e) {
    auto length = reader.get<std::uint32_t>("name length");
    if (length > kMaxNameLength) reader.fail(fmt::format("entry {}: implausible name length {}", e, length));
    std::string name(reader.take(length, "name"), length);
    if (!names.insert(name).second) reader.fail(fmt::format("entry {}: '{}' is stored twice", e, name));
    ag::Tensor tensor = read_tensor(reader, name);
    entries.emplace_back(std::move(name), std::move(tensor));
  }
  if (reader.remaining() != 0) reader.fail("trailing bytes after the last entry");
  return entries;
}

void save_tensors(const std::string& path, const std::vector<NamedTensor>& entries) {
  data::check_replaceable(path, "checkpoint");  // before the work of serialising
  data::write_file_atomically(path, serialize_tensors(entries, path), "checkpoint");
}

std::vector<NamedTensor> load_tensors(const std::string& path) {
  // The magic first: a wrong path to a large file is refused before all of it is read.
  const std::string start = data::read_regular_file_start(path, "checkpoint", sizeof(kMagic));
  if (start.size() < sizeof(kMagic) || std::memcmp(start.data(), kMagic, sizeof(kMagic)) != 0) {
    Reader(start, path).fail("not a checkpoint (bad magic)");
  }
  return parse_tensors(data::read_regular_file(path, "checkpoint"), path);
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

void save_module(const std::string& path, const Module& module) { save_tensors(path, module.state_dict()); }

void load_module(const std::string& path, Module& module) {
  assign_tensors(load_tensors(path), module.state_dict(), "model");
}

}  // namespace nn
