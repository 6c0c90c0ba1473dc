// libFuzzer target: the IDX reader (data::parse_idx_images and parse_idx_labels) on any bytes, plain or gzip'd.
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>

#include "data/idx.hpp"

// A refusal is a std::runtime_error naming the problem; anything else escaping (std::bad_alloc, a logic
// error) or any memory or undefined-behaviour error is a finding.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const unsigned char> bytes(data, size);
  try {
    data::IdxImages images = data::parse_idx_images(bytes, "input");
    if (images.pixels.size() != images.count * images.rows * images.cols) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  try {
    (void)data::parse_idx_labels(bytes, "input", 10);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
