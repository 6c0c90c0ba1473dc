// libFuzzer target: the checkpoint reader (nn::parse_tensors) on any bytes, as they are and with the checksum made valid.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "nn/checkpoint.hpp"

namespace {

/// The bytes with their last 8 replaced by the FNV-1a 64 of the others, so that mutations reach the parser
/// behind the checksum.
std::string with_valid_checksum(std::string bytes) {
  std::uint64_t hash = 14695981039346656037ull;
  for (std::size_t i = 0; i + 8 < bytes.size(); ++i) {
    hash ^= static_cast<unsigned char>(bytes[i]);
    hash *= 1099511628211ull;
  }
  std::memcpy(bytes.data() + bytes.size() - 8, &hash, 8);
  return bytes;
}

void parse(const std::string& bytes) {
  try {
    for (const auto& [name, tensor] : nn::parse_tensors(bytes, "input")) {
      // Every tensor's elements must lie within what was read: touch the last one.
      if (tensor.numel() > 0) (void)tensor.at(tensor.numel() - 1);
    }
  } catch (const std::runtime_error&) {
  }
}

}  // namespace

// A refusal is a std::runtime_error naming the problem; anything else escaping (std::bad_alloc, a logic
// error) or any memory or undefined-behaviour error is a finding.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  parse(bytes);
  if (size >= 8) parse(with_valid_checksum(bytes));
  return 0;
}
