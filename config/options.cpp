#include "config/options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

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
  if (error == std::errc::result_out_of_range && ptr == end) {  // "1e999": read as strtod does (inf; 0 below)
    value = std::strtod(std::string(begin, end).c_str(), nullptr);
    return true;
  }
  return begin != end && error == std::errc() && ptr == end;
}
}  // namespace

double parse_real(std::string_view where, std::string_view key, const std::string& value, const Range& range) {
  double number = 0;
  const bool read = read_double(value, number);
  if (!read || !range.contains(number)) {
    std::string allowed = range.text();
    if (allowed[0] == '[' || allowed[0] == '(') allowed = "in " + allowed;
    if (read && !std::isfinite(number) && !allowed.starts_with("any")) allowed = "a finite number " + allowed;
    bad_value(where, key, value, allowed);
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

// ---- the untyped option table

namespace detail {
namespace {

/// The field of type T at `offset` in the options struct at `options` (a T lives there: the offset was
/// measured on a member of that type).
template <class T>
T& field_at(void* options, std::size_t offset) {
  return *std::launder(reinterpret_cast<T*>(static_cast<char*>(options) + offset));
}
template <class T>
const T& field_at(const void* options, std::size_t offset) {
  return *std::launder(reinterpret_cast<const T*>(static_cast<const char*>(options) + offset));
}

/// An enumeration's value, stored in its own width (its bytes copied: an enumeration may not be accessed as
/// an integer type).
template <class Int>
void store_enum_as(void* options, std::size_t offset, long long value) {
  const auto narrow = static_cast<Int>(value);
  std::memcpy(static_cast<char*>(options) + offset, &narrow, sizeof narrow);
}
void store_enum(const FieldTable::Field& field, void* options, long long value) {
  switch (field.enum_size) {
    case 1: return store_enum_as<std::int8_t>(options, field.offset, value);
    case 2: return store_enum_as<std::int16_t>(options, field.offset, value);
    case 4: return store_enum_as<std::int32_t>(options, field.offset, value);
    default: return store_enum_as<std::int64_t>(options, field.offset, value);
  }
}
/// Whether the enumeration holds `value` (compared in its own width, so that signedness does not matter).
template <class Int>
bool enum_is_as(const void* options, std::size_t offset, long long value) {
  Int held;
  std::memcpy(&held, static_cast<const char*>(options) + offset, sizeof held);
  return held == static_cast<Int>(value);
}
bool enum_is(const FieldTable::Field& field, const void* options, long long value) {
  switch (field.enum_size) {
    case 1: return enum_is_as<std::int8_t>(options, field.offset, value);
    case 2: return enum_is_as<std::int16_t>(options, field.offset, value);
    case 4: return enum_is_as<std::int32_t>(options, field.offset, value);
    default: return enum_is_as<std::int64_t>(options, field.offset, value);
  }
}

}  // namespace

FieldTable::Field& FieldTable::add(Kind kind, std::string_view key, std::string_view help, std::size_t offset) {
  Field& f = fields_.emplace_back();
  f.key = key;
  f.help = help;
  f.kind = kind;
  f.offset = offset;
  return f;
}

void FieldTable::add_choice(std::string_view key, std::string_view help, std::size_t offset, std::size_t enum_size,
                            std::vector<std::pair<std::string, long long>> names) {
  Field& f = add(Kind::choice, key, help, offset);
  f.enum_size = enum_size;
  f.names = std::move(names);
}

std::string FieldTable::allowed(const Field& f) {
  switch (f.kind) {
    case Kind::real: return f.range.text();
    case Kind::count: return count_range_text(f.low, f.high);
    case Kind::flag: return "true | false";
    case Kind::counts: return "[n1,n2,...], integers >= 1";
    case Kind::spec: return "a spec, name(key=value, ...)";
    case Kind::choice: break;
  }
  std::string names;
  for (const auto& [name, value] : f.names) names += (names.empty() ? "" : " | ") + name;
  return names;
}

void FieldTable::set(const Field& f, void* o, const std::string& v, std::string_view where) {
  switch (f.kind) {
    case Kind::real: field_at<double>(o, f.offset) = parse_real(where, f.key, v, f.range); return;
    case Kind::count: field_at<std::size_t>(o, f.offset) = parse_count(where, f.key, v, f.low, f.high); return;
    case Kind::flag: field_at<bool>(o, f.offset) = parse_bool(where, f.key, v); return;
    case Kind::counts: field_at<std::vector<std::size_t>>(o, f.offset) = parse_counts(where, f.key, v); return;
    case Kind::spec:
      try {
        field_at<Spec>(o, f.offset) = parse_spec(v);
      } catch (const SpecError& e) {
        throw SpecError(fmt_where(where, f.key, e.what()));
      }
      return;
    case Kind::choice:
      for (const auto& [name, value] : f.names) {
        if (name == v) return store_enum(f, o, value);
      }
      bad_choice(where, f.key, v, allowed(f));
  }
}

std::string FieldTable::get(const Field& f, const void* o) {
  switch (f.kind) {
    case Kind::real: return format_real(field_at<double>(o, f.offset));
    case Kind::count: return std::to_string(field_at<std::size_t>(o, f.offset));
    case Kind::flag: return field_at<bool>(o, f.offset) ? "true" : "false";
    case Kind::counts: return format_counts(field_at<std::vector<std::size_t>>(o, f.offset));
    case Kind::spec: return field_at<Spec>(o, f.offset).text();
    case Kind::choice:
      for (const auto& [name, value] : f.names) {
        if (enum_is(f, o, value)) return name;
      }
      return "?";
  }
  return "?";
}

void FieldTable::apply(void* options, const Spec& spec, std::string_view where) const {
  for (const auto& [key, value] : spec.args) set(find(key, where), options, value, where);
}

std::vector<OptionInfo> FieldTable::describe(const void* options) const {
  std::vector<OptionInfo> infos;
  for (const Field& f : fields_) infos.push_back({f.key, get(f, options), allowed(f), f.help});
  return infos;
}

std::vector<std::pair<std::string, std::string>> FieldTable::values(const void* options) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Field& f : fields_) out.emplace_back(f.key, get(f, options));
  return out;
}

bool FieldTable::has(std::string_view key) const {
  return std::any_of(fields_.begin(), fields_.end(), [&](const Field& f) { return f.key == key; });
}

const FieldTable::Field& FieldTable::find(std::string_view key, std::string_view where) const {
  std::vector<std::string> keys;
  for (const Field& f : fields_) {
    if (f.key == key) return f;
    keys.push_back(f.key);
  }
  unknown_key(where, key, keys);
}

}  // namespace detail

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
