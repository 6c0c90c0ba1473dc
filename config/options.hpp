// Option tables: the hyper-parameters of a registered method, bound to the fields of its options struct,
// each with its key, its help line and its allowed values. One table answers every question about them:
// applying a spec's keys (refusing unknown keys and values out of range, naming the method, the key and
// what is allowed), the help text, and the fully resolved values a run prints and the lab writes out.
//
//   config::OptionTable<AdamOptions> table;
//   table.real("lr", &AdamOptions::lr, config::Range::at_least(0), "learning rate")
//        .real("beta2", &AdamOptions::beta2, config::Range::unit(), "second-moment decay");
//   AdamOptions o = table.apply(AdamOptions{}, config::parse_spec("adam(beta2=0.99)"), "adam");
#pragma once

#include <cstddef>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "config/spec.hpp"

namespace config {

/// One option, for help texts and tables.
struct OptionInfo {
  std::string key;
  std::string value;    // its default (or resolved) value
  std::string allowed;  // "[0, 1)", ">= 0", "false | true", "list of integers >= 1"
  std::string help;
};

/// Allowed values of a real option: an interval, each end open or closed.
struct Range {
  double low = -std::numeric_limits<double>::infinity();
  double high = std::numeric_limits<double>::infinity();
  bool low_open = false, high_open = false;

  static Range any() { return {}; }
  static Range at_least(double low) { return {low, std::numeric_limits<double>::infinity(), false, false}; }
  static Range positive() { return {0.0, std::numeric_limits<double>::infinity(), true, false}; }
  /// [0, 1): decay rates, momenta.
  static Range unit() { return {0.0, 1.0, false, true}; }
  static Range closed(double low, double high) { return {low, high, false, false}; }
  /// False for NaN and infinities too.
  bool contains(double value) const;
  std::string text() const;
};

/// The shortest text that reads back as exactly `value` ("0.001", "1e-08").
std::string format_real(double value);

// Value parsers: each throws SpecError "<where>: <key> must be <allowed>, got '<value>'".
double parse_real(std::string_view where, std::string_view key, const std::string& value, const Range& range);
std::size_t parse_count(std::string_view where, std::string_view key, const std::string& value, std::size_t low,
                        std::size_t high);
bool parse_bool(std::string_view where, std::string_view key, const std::string& value);
/// "[128,64]" (or "128" alone) -> {128, 64}; every element >= 1.
std::vector<std::size_t> parse_counts(std::string_view where, std::string_view key, const std::string& value);
std::string format_counts(const std::vector<std::size_t>& values);
/// "[1, 10], integer", or ">= 1, integer" without an upper bound.
std::string count_range_text(std::size_t low, std::size_t high);
/// "<where>: <key>: <what>".
std::string fmt_where(std::string_view where, std::string_view key, std::string_view what);
/// The SpecError for a key the table does not have, listing the ones it has.
[[noreturn]] void unknown_key(std::string_view where, std::string_view key, const std::vector<std::string>& keys);
/// The SpecError for a value outside a list of names.
[[noreturn]] void bad_choice(std::string_view where, std::string_view key, const std::string& value,
                             const std::string& allowed);

namespace detail {

/// The untyped core of OptionTable: each option is a field at a byte offset of the options struct, of a
/// kind that says how to parse and print it. One copy of this code serves every options struct (the
/// typed table only turns member pointers into offsets), which keeps the registrations cheap to compile.
/// So an options struct must be default-constructible (offsets are measured on one), and a choice is an
/// enumeration.
class FieldTable {
 public:
  enum class Kind { real, count, flag, counts, spec, choice };
  struct Field {
    std::string key, help;
    Kind kind = Kind::real;
    std::size_t offset = 0;
    Range range{};                                         // real
    std::size_t low = 0, high = 0;                         // count
    std::size_t enum_size = 0;                             // choice: sizeof the enumeration
    std::vector<std::pair<std::string, long long>> names;  // choice: name -> underlying value
  };

  /// A new field; the caller fills in the kind's own members (range, low and high).
  Field& add(Kind kind, std::string_view key, std::string_view help, std::size_t offset);
  void add_choice(std::string_view key, std::string_view help, std::size_t offset, std::size_t enum_size,
                  std::vector<std::pair<std::string, long long>> names);
  /// Sets the field `key` of the struct at `options` from its text; SpecError as OptionTable::apply.
  void apply(void* options, const Spec& spec, std::string_view where) const;
  std::vector<OptionInfo> describe(const void* options) const;
  std::vector<std::pair<std::string, std::string>> values(const void* options) const;
  bool has(std::string_view key) const;

 private:
  const Field& find(std::string_view key, std::string_view where) const;
  static void set(const Field& field, void* options, const std::string& value, std::string_view where);
  static std::string get(const Field& field, const void* options);
  /// "[0, 1)", "true | false", ...: the allowed values as help texts show them.
  static std::string allowed(const Field& field);

  std::vector<Field> fields_;
};

}  // namespace detail

template <class Options>
class OptionTable {
  using Kind = detail::FieldTable::Kind;
  using Field = detail::FieldTable::Field;

 public:
  OptionTable& real(std::string_view key, double Options::*field, Range range, std::string_view help) {
    fields_.add(Kind::real, key, help, offset(field)).range = range;
    return *this;
  }
  OptionTable& count(std::string_view key, std::size_t Options::*field, std::size_t low, std::size_t high,
                     std::string_view help) {
    Field& f = fields_.add(Kind::count, key, help, offset(field));
    f.low = low;
    f.high = high;
    return *this;
  }
  OptionTable& flag(std::string_view key, bool Options::*field, std::string_view help) {
    fields_.add(Kind::flag, key, help, offset(field));
    return *this;
  }
  OptionTable& counts(std::string_view key, std::vector<std::size_t> Options::*field, std::string_view help) {
    fields_.add(Kind::counts, key, help, offset(field));
    return *this;
  }
  /// A spec as the value (a wrapper's inner optimiser): "adam(lr=1e-3)"; only its syntax is checked here.
  OptionTable& spec(std::string_view key, Spec Options::*field, std::string_view help) {
    fields_.add(Kind::spec, key, help, offset(field));
    return *this;
  }
  /// An enumeration, given by name: choice("eps_placement", &O::eps_placement, {{"outside", ...}, ...}).
  /// The field may be a base struct's.
  template <class E, class Owner>
    requires std::is_base_of_v<Owner, Options>
  OptionTable& choice(std::string_view key, E Owner::*field,
                      std::initializer_list<std::pair<std::string_view, E>> names, std::string_view help) {
    static_assert(std::is_enum_v<E>, "choice() takes an enumeration");
    std::vector<std::pair<std::string, long long>> values;
    values.reserve(names.size());
    for (const auto& [name, value] : names) {
      values.emplace_back(name, static_cast<long long>(static_cast<std::underlying_type_t<E>>(value)));
    }
    fields_.add_choice(key, help, offset(static_cast<E Options::*>(field)), sizeof(E), std::move(values));
    return *this;
  }

  /// `base` with every key of `spec` applied (spec.name is not looked at). SpecError for an unknown key
  /// or a value outside its allowed set, naming `where` (the method), the key and what is allowed.
  Options apply(Options base, const Spec& spec, std::string_view where) const {
    fields_.apply(&base, spec, where);
    return base;
  }
  /// Each option with its value in `options`.
  std::vector<OptionInfo> describe(const Options& options) const { return fields_.describe(&options); }
  /// Every key = value of `options`, in table order.
  std::vector<std::pair<std::string, std::string>> values(const Options& options) const {
    return fields_.values(&options);
  }
  bool has(std::string_view key) const { return fields_.has(key); }
  /// The untyped table (what non-template code reads).
  const detail::FieldTable& fields() const { return fields_; }

 private:
  /// Where `member` lies in an Options (measured on one default-constructed Options, made once).
  template <class T>
  static std::size_t offset(T Options::*member) {
    const Options& one = probe();
    return static_cast<std::size_t>(reinterpret_cast<const char*>(&(one.*member)) -
                                    reinterpret_cast<const char*>(&one));
  }
  static const Options& probe() {
    static const Options one{};
    return one;
  }

  detail::FieldTable fields_;
};

}  // namespace config
