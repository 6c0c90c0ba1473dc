// Pixels kept as the bytes the IDX files hold, read as floats in [0, 1].
//
// A data set of bytes takes a quarter of the memory of the same data set of floats; the float values are made
// one batch at a time (data::DataLoader). Read through this class, the bytes look like the vector of floats a
// data set used to hold: size(), operator[], begin()/end() give floats (byte / 255, so 255 is exactly 1.0F),
// and resize() and assign() work as on a vector. bytes() is the vector of bytes itself.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <utility>
#include <vector>

namespace data {

/// A pixel byte as the float a model sees: byte / 255 (a division, so that 255 maps to exactly 1.0F).
inline float pixel_value(std::uint8_t byte) { return static_cast<float>(byte) / 255.0F; }

/// Random access over pixel bytes, yielding floats by value (a C++20 random-access iterator; for C++17
/// algorithms an input iterator, as its elements are not references).
class PixelIterator {
 public:
  using iterator_concept = std::random_access_iterator_tag;
  using iterator_category = std::input_iterator_tag;
  using value_type = float;
  using difference_type = std::ptrdiff_t;
  using reference = float;
  using pointer = void;

  PixelIterator() = default;
  explicit PixelIterator(const std::uint8_t* at) : at_(at) {}

  float operator*() const { return pixel_value(*at_); }
  float operator[](difference_type n) const { return pixel_value(at_[n]); }
  PixelIterator& operator++() { ++at_; return *this; }
  PixelIterator operator++(int) { return PixelIterator(at_++); }
  PixelIterator& operator--() { --at_; return *this; }
  PixelIterator operator--(int) { return PixelIterator(at_--); }
  PixelIterator& operator+=(difference_type n) { at_ += n; return *this; }
  PixelIterator& operator-=(difference_type n) { at_ -= n; return *this; }
  friend PixelIterator operator+(PixelIterator it, difference_type n) { return it += n; }
  friend PixelIterator operator+(difference_type n, PixelIterator it) { return it += n; }
  friend PixelIterator operator-(PixelIterator it, difference_type n) { return it -= n; }
  friend difference_type operator-(PixelIterator a, PixelIterator b) { return a.at_ - b.at_; }
  friend bool operator==(PixelIterator a, PixelIterator b) { return a.at_ == b.at_; }
  friend auto operator<=>(PixelIterator a, PixelIterator b) { return a.at_ <=> b.at_; }

  /// The byte under the iterator.
  const std::uint8_t* byte() const { return at_; }

 private:
  const std::uint8_t* at_ = nullptr;
};

/// Consecutive pixels (one image's), as floats: begin()/end(), size() and operator[].
class PixelView {
 public:
  PixelView(PixelIterator first, PixelIterator last) : first_(first), last_(last) {}
  PixelIterator begin() const { return first_; }
  PixelIterator end() const { return last_; }
  std::size_t size() const { return static_cast<std::size_t>(last_ - first_); }
  bool empty() const { return first_ == last_; }
  float operator[](std::size_t index) const { return first_[static_cast<std::ptrdiff_t>(index)]; }

 private:
  PixelIterator first_, last_;
};

class Pixels {
 public:
  using value_type = float;
  using iterator = PixelIterator;
  using const_iterator = PixelIterator;
  using size_type = std::size_t;

  Pixels() = default;
  explicit Pixels(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}

  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  float operator[](std::size_t index) const { return pixel_value(bytes_[index]); }
  iterator begin() const { return iterator(bytes_.data()); }
  iterator end() const { return iterator(bytes_.data() + bytes_.size()); }
  /// `count` pixels from `first`, as floats.
  PixelView view(std::size_t first, std::size_t count) const { return {begin() + offset(first), begin() + offset(first + count)}; }

  /// As a vector's: new pixels are 0.
  void resize(std::size_t count) { bytes_.resize(count); }
  void clear() { bytes_.clear(); }
  /// The pixels between two iterators of any Pixels (this one's included), copied.
  void assign(iterator first, iterator last) { bytes_ = std::vector<std::uint8_t>(first.byte(), last.byte()); }

  /// out[i] = pixel `first + i` as a float, for `count` pixels.
  void to_floats(std::size_t first, std::size_t count, float* out) const {
    const std::uint8_t* in = bytes_.data() + first;
    for (std::size_t i = 0; i < count; ++i) out[i] = pixel_value(in[i]);
  }

  std::vector<std::uint8_t>& bytes() { return bytes_; }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  static std::ptrdiff_t offset(std::size_t n) { return static_cast<std::ptrdiff_t>(n); }
  std::vector<std::uint8_t> bytes_;
};

}  // namespace data
