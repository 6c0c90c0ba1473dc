#include "config/options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace config {

bool Range::contains(double value) const {
  if (!std::isfinite(value)) return false;
  bool above = low_open ? value > low : value >= low;
  bool below = high_open ? value < high : value <= high;
  return above && below;
}

std::string Range::text() const {
  bool no_low = std::isinf(low), no_high = std::isinf(high);
  if (no_low && no_high) return "any finite number";
  if (no_high) return fmt::format("{} {}", low_open ? ">" : ">=", format_real(low));
  if (no_low) return fmt::format("{} {}", high_open ? "<" : "<=", format_real(high));
  return fmt::format("{}{}, {}{}", low_open ? "(" : "[", format_real(low), format_real(high), high_open ? ")" : "]");
}

std::string format_real(double value) { return fmt::format("{}", value); }

namespace {
[[noreturn]] void bad_value(std::string_view where, std::string_view key, const std::string& value,
                            const std::string& allowed) {
  throw SpecError(fmt::format("{}: {} must be {}, got '{}'", where, key, allowed, value));
}

bool read_double(const std::string& text, double& value) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (text.size() > 1 && text[0] == '+' && text[1] != '-') ++begin;  // from_chars takes no '+'
  auto [ptr, error] = std::from_chars(begin, end, value);
  return begin != end && error == std::errc() && ptr == end;
}
}  // namespace

double parse_real(std::string_view where, std::string_view key, const std::string& value, const Range& range) {
  double number = 0;
  if (!read_double(value, number) || !range.contains(number)) {
    std::string allowed = range.text();
    bad_value(where, key, value, allowed[0] == '[' || allowed[0] == '(' ? "in " + allowed : allowed);
  }
  return number;
}

std::size_t parse_count(std::string_view where, std::string_view key, const std::string& value, std::size_t low,
                        std::size_t high) {
  double number = 0;
  bool ok = read_double(value, number) && std::isfinite(number) && number == std::floor(number) &&
            number >= static_cast<double>(low) && number <= static_cast<double>(high) && number <= 1e15;
  if (!ok) {
    bad_value(where, key, value,
              high == std::numeric_limits<std::size_t>::max() ? fmt::format("an integer >= {}", low)
                                                              : fmt::format("an integer in [{}, {}]", low, high));
  }
  return static_cast<std::size_t>(number);
}

bool parse_bool(std::string_view where, std::string_view key, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes" || value == "on") return true;
  if (value == "false" || value == "0" || value == "no" || value == "off") return false;
  bad_value(where, key, value, "true or false");
}

std::vector<std::size_t> parse_counts(std::string_view where, std::string_view key, const std::string& value) {
  std::vector<std::size_t> out;
  for (const std::string& item : list_items(value)) out.push_back(parse_count(where, key, item, 1, 1u << 30));
  return out;
}

std::string count_range_text(std::size_t low, std::size_t high) {
  if (high == std::numeric_limits<std::size_t>::max()) return fmt::format(">= {}, integer", low);
  return fmt::format("[{}, {}], integer", low, high);
}

std::string format_counts(const std::vector<std::size_t>& values) { return fmt::format("[{}]", fmt::join(values, ",")); }

void unknown_key(std::string_view where, std::string_view key, const std::vector<std::string>& keys) {
  throw SpecError(fmt::format("{}: unknown option '{}' (options: {})", where, key,
                              keys.empty() ? std::string("none") : fmt::format("{}", fmt::join(keys, ", "))));
}

std::string fmt_where(std::string_view where, std::string_view key, std::string_view what) {
  return fmt::format("{}: {}: {}", where, key, what);
}

void bad_choice(std::string_view where, std::string_view key, const std::string& value, const std::string& allowed) {
  bad_value(where, key, value, "one of " + allowed);
}

}  // namespace config

// ---- registry texts (registry.hpp)
#include "config/registry.hpp"

namespace config {

std::string help_text(const std::vector<const EntryInfo*>& entries) {
  // Columns as wide as their longest entry (at least the usual widths).
  std::size_t name_width = 20, key_width = 16;
  for (const EntryInfo* e : entries) {
    name_width = std::max(name_width, e->name.size());
    for (const OptionInfo& o : e->options) key_width = std::max(key_width, o.key.size());
  }
  std::string out;
  for (const EntryInfo* e : entries) {
    out += fmt::format("  {:<{}} {}\n", e->name, name_width, e->summary);
    for (const OptionInfo& o : e->options) {
      out += fmt::format("      {:<{}} {:<10} {} ({})\n", o.key, key_width, o.value, o.help, o.allowed);
    }
  }
  return out;
}

std::string markdown_table(const std::vector<const EntryInfo*>& entries) {
  std::string out = "| name | what it is | options (defaults) |\n|---|---|---|\n";
  for (const EntryInfo* e : entries) {
    std::string options;
    for (const OptionInfo& o : e->options) options += fmt::format("{}`{}={}`", options.empty() ? "" : ", ", o.key, o.value);
    out += fmt::format("| `{}` | {} | {} |\n", e->name, e->summary, options.empty() ? "—" : options);
  }
  return out;
}

}  // namespace config
